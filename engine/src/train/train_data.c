/* Data sets of moelat/train.h: two float32 arrays with the sample count
 * first, checked for finiteness, with a fingerprint of their content. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/file_util.h"
#include "io/npy.h"
#include "train/train_internal.h"

/* At most 2^40 floats per array (4 TiB): products below overflow nothing. */
#define MAX_VALUES ((uint64_t)1 << 40)

void moelat_dataset_destroy(moelat_dataset *ds) {
    if (!ds)
        return;
    free(ds->inputs);
    free(ds->targets);
    free(ds);
}

int64_t moelat_dataset_samples(const moelat_dataset *ds) { return ds ? ds->B : 0; }

int moelat_dataset_shape(const moelat_dataset *ds, int which, int64_t shape[7]) {
    if (!ds || (which != 0 && which != 1) || !shape)
        return 0;
    int n = which ? ds->tg_ndim : ds->in_ndim;
    memcpy(shape, which ? ds->tg_shape : ds->in_shape, (size_t)n * sizeof shape[0]);
    return n;
}

const float *moelat_dataset_input(const moelat_dataset *ds, int64_t b) {
    return ds && b >= 0 && b < ds->B ? ds->inputs + (size_t)b * ds->in_size : NULL;
}

const float *moelat_dataset_target(const moelat_dataset *ds, int64_t b) {
    return ds && b >= 0 && b < ds->B ? ds->targets + (size_t)b * ds->tg_size : NULL;
}

uint64_t moelat_dataset_fingerprint(const moelat_dataset *ds) { return ds ? ds->fingerprint : 0; }

static uint64_t fingerprint(const moelat_dataset *ds) {
    XXH64_state_t *s = XXH64_createState();
    if (!s)
        return 0;
    int64_t head[2 + 2 * ML_DS_MAX_DIM] = {ds->B, (int64_t)ds->in_ndim * 16 + ds->tg_ndim};
    memcpy(head + 2, ds->in_shape, sizeof ds->in_shape);
    memcpy(head + 2 + ML_DS_MAX_DIM, ds->tg_shape, sizeof ds->tg_shape);
    XXH64_reset(s, 0);
    XXH64_update(s, head, sizeof head);
    XXH64_update(s, ds->inputs, (size_t)ds->B * ds->in_size * sizeof(float));
    XXH64_update(s, ds->targets, (size_t)ds->B * ds->tg_size * sizeof(float));
    uint64_t h = XXH64_digest(s);
    XXH64_freeState(s);
    return h;
}

/* The per-sample index of flat element i as "(a, b, c)". */
static void index_text(char *out, size_t len, size_t i, int ndim, const int64_t *shape) {
    size_t idx[ML_DS_MAX_DIM];
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = i % (size_t)shape[d];
        i /= (size_t)shape[d];
    }
    size_t pos = (size_t)snprintf(out, len, "(");
    for (int d = 0; d < ndim && pos < len; d++)
        pos += (size_t)snprintf(out + pos, len - pos, "%s%zu", d ? ", " : "", idx[d]);
    if (pos < len)
        snprintf(out + pos, len - pos, ")");
}

static int check_finite(const float *v, int64_t B, size_t per, const char *name, int ndim, const int64_t *shape,
                        char *err, size_t errlen) {
    size_t n = (size_t)B * per;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            char at[256];
            index_text(at, sizeof at, i % per, ndim, shape);
            ml_errf(err, errlen, "%s: sample %zu holds %g at %s", name, i / per, v[i], at);
            return -1;
        }
    return 0;
}

/* Takes ownership of inputs and targets (full arrays with B first). */
static moelat_status build(int64_t B, int in_ndim, const int64_t *in_shape, float *inputs, int tg_ndim,
                           const int64_t *tg_shape, float *targets, const char *in_name, const char *tg_name,
                           moelat_dataset **out, char *err, size_t errlen) {
    *out = NULL;
    moelat_status st = MOELAT_ERR_FORMAT;
    moelat_dataset *ds = NULL;
    const char *bad = NULL;
    if (in_ndim < 1 || in_ndim > ML_DS_MAX_DIM)
        bad = in_name;
    else if (tg_ndim < 0 || tg_ndim > ML_DS_MAX_DIM)
        bad = tg_name;
    if (bad) {
        ml_errf(err, errlen, "%s: a sample must have 1 to %d dimensions", bad, ML_DS_MAX_DIM);
        goto fail;
    }
    if (B < 1) {
        ml_errf(err, errlen, "%s: holds no sample", in_name);
        goto fail;
    }
    size_t in_size = 1, tg_size = 1;
    for (int d = 0; d < in_ndim; d++)
        in_size *= (size_t)in_shape[d];
    for (int d = 0; d < tg_ndim; d++)
        tg_size *= (size_t)tg_shape[d];
    if (in_size == 0 || tg_size == 0) {
        ml_errf(err, errlen, "%s: a sample holds no value", in_size == 0 ? in_name : tg_name);
        goto fail;
    }
    if (check_finite(inputs, B, in_size, in_name, in_ndim, in_shape, err, errlen) != 0 ||
        check_finite(targets, B, tg_size, tg_name, tg_ndim, tg_shape, err, errlen) != 0)
        goto fail;
    ds = calloc(1, sizeof *ds);
    if (!ds) {
        ml_errf(err, errlen, "out of memory");
        st = MOELAT_ERR_NOMEM;
        goto fail;
    }
    ds->B = B;
    ds->in_ndim = in_ndim;
    ds->tg_ndim = tg_ndim;
    memcpy(ds->in_shape, in_shape, (size_t)in_ndim * sizeof in_shape[0]);
    memcpy(ds->tg_shape, tg_shape, (size_t)tg_ndim * sizeof tg_shape[0]);
    ds->in_size = in_size;
    ds->tg_size = tg_size;
    ds->inputs = inputs;
    ds->targets = targets;
    snprintf(ds->in_name, sizeof ds->in_name, "%s", in_name);
    snprintf(ds->tg_name, sizeof ds->tg_name, "%s", tg_name);
    ds->fingerprint = fingerprint(ds);
    *out = ds;
    return MOELAT_OK;
fail:
    free(inputs);
    free(targets);
    return st;
}

moelat_status moelat_dataset_load(const char *inputs_npy, const char *targets_npy, moelat_dataset **out,
                                  char *err, size_t errlen) {
    if (!out)
        return MOELAT_ERR_INVALID;
    *out = NULL;
    if (!inputs_npy || !targets_npy) {
        ml_errf(err, errlen, "moelat_dataset_load: no file name");
        return MOELAT_ERR_INVALID;
    }
    float *in = NULL, *tg = NULL;
    int ni = 0, nt = 0;
    int64_t si[8], st[8];
    int rc = npy_read(inputs_npy, &in, &ni, si, err, errlen);
    if (rc != 0)
        return MOELAT_ERR_IO;
    if (npy_read(targets_npy, &tg, &nt, st, err, errlen) != 0) {
        free(in);
        return MOELAT_ERR_IO;
    }
    const char *bad = ni < 2 ? inputs_npy : nt < 1 ? targets_npy : NULL;
    if (bad) {
        ml_errf(err, errlen, "%s: %d dimensions; the samples' count comes first, then each sample's shape", bad,
                bad == inputs_npy ? ni : nt);
        free(in);
        free(tg);
        return MOELAT_ERR_FORMAT;
    }
    if (si[0] >= 1 && st[0] != si[0]) {
        ml_errf(err, errlen, "%s: %lld samples but %s has %lld", targets_npy, (long long)st[0], inputs_npy,
                (long long)si[0]);
        free(in);
        free(tg);
        return MOELAT_ERR_FORMAT;
    }
    return build(si[0], ni - 1, si + 1, in, nt - 1, st + 1, tg, inputs_npy, targets_npy, out, err, errlen);
}

moelat_status moelat_dataset_create(int64_t samples, int input_ndim, const int64_t *input_shape,
                                    const float *inputs, int target_ndim, const int64_t *target_shape,
                                    const float *targets, moelat_dataset **out, char *err, size_t errlen) {
    if (!out)
        return MOELAT_ERR_INVALID;
    *out = NULL;
    if (!input_shape || !target_shape || !inputs || !targets || samples < 1 || (uint64_t)samples > MAX_VALUES ||
        input_ndim < 1 || input_ndim > ML_DS_MAX_DIM || target_ndim < 0 || target_ndim > ML_DS_MAX_DIM) {
        ml_errf(err, errlen, "moelat_dataset_create: samples %lld (from 1), dimensions %d and %d (1 to %d), "
                "and every array are required", (long long)samples, input_ndim, target_ndim, ML_DS_MAX_DIM);
        return MOELAT_ERR_INVALID;
    }
    size_t ni = (size_t)samples, nt = (size_t)samples;
    for (int d = 0; d < input_ndim; d++) {
        if (input_shape[d] < 1 || (uint64_t)input_shape[d] > MAX_VALUES / ni) {
            ml_errf(err, errlen, "moelat_dataset_create: input size %lld of dimension %d (the arrays may hold 2^40 values)", (long long)input_shape[d], d);
            return MOELAT_ERR_INVALID;
        }
        ni *= (size_t)input_shape[d];
    }
    for (int d = 0; d < target_ndim; d++) {
        if (target_shape[d] < 1 || (uint64_t)target_shape[d] > MAX_VALUES / nt) {
            ml_errf(err, errlen, "moelat_dataset_create: target size %lld of dimension %d (the arrays may hold 2^40 values)",
                    (long long)target_shape[d], d);
            return MOELAT_ERR_INVALID;
        }
        nt *= (size_t)target_shape[d];
    }
    float *a = malloc(ni * sizeof(float)), *b = malloc(nt * sizeof(float));
    if (!a || !b) {
        free(a);
        free(b);
        ml_errf(err, errlen, "moelat_dataset_create: out of memory for %lld samples", (long long)samples);
        return MOELAT_ERR_NOMEM;
    }
    memcpy(a, inputs, ni * sizeof(float));
    memcpy(b, targets, nt * sizeof(float));
    return build(samples, input_ndim, input_shape, a, target_ndim, target_shape, b, "inputs", "targets", out, err,
                 errlen);
}
