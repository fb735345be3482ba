#include "core/params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "io/safetensors.h"

size_t ml_spec_numel(const moelat_tensor_spec *spec) {
    size_t n = 1;
    for (int d = 0; d < spec->ndim; d++)
        n *= (size_t)spec->shape[d];
    return n;
}

int ml_params_create(ml_param_block *b, const char *prefix, const moelat_tensor_spec *specs,
                     int n) {
    memset(b, 0, sizeof *b);
    snprintf(b->prefix, sizeof b->prefix, "%s", prefix);
    b->n_tensors = n;
    b->specs = calloc((size_t)(n > 0 ? n : 1), sizeof *b->specs);
    b->offsets = calloc((size_t)(n > 0 ? n : 1), sizeof *b->offsets);
    b->tensors = calloc((size_t)(n > 0 ? n : 1), sizeof *b->tensors);
    if (!b->specs || !b->offsets || !b->tensors) {
        ml_params_free(b);
        return -1;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        b->specs[i] = specs[i];
        b->offsets[i] = total;
        total += ml_spec_numel(&specs[i]);
    }
    b->n_floats = total;
    b->data = calloc(total > 0 ? total : 1, sizeof(float));
    if (!b->data) {
        ml_params_free(b);
        return -1;
    }
    for (int i = 0; i < n; i++)
        b->tensors[i] = b->data + b->offsets[i];
    return 0;
}

void ml_params_free(ml_param_block *b) {
    free(b->specs);
    free(b->offsets);
    free(b->tensors);
    free(b->data);
    memset(b, 0, sizeof *b);
}

static void full_name(const ml_param_block *b, int i, char *out, size_t len) {
    snprintf(out, len, "%s%s", b->prefix, b->specs[i].suffix);
}

void ml_params_init_default(ml_param_block *b, uint64_t seed) {
    for (int i = 0; i < b->n_tensors; i++) {
        const moelat_tensor_spec *sp = &b->specs[i];
        size_t n = ml_spec_numel(sp);
        float *t = b->tensors[i];
        if (sp->init == MOELAT_INIT_CONST) {
            for (size_t k = 0; k < n; k++)
                t[k] = sp->value;
            continue;
        }
        char name[256];
        full_name(b, i, name, sizeof name);
        ml_rng rng;
        ml_rng_seed(&rng, seed ^ ml_fnv1a64(name));
        double bound = 1.0 / sqrt((double)(sp->fan_in > 0 ? sp->fan_in : 1));
        for (size_t k = 0; k < n; k++)
            t[k] = (float)((2.0 * ml_rng_uniform(&rng) - 1.0) * bound);
    }
}

int ml_params_save(const char *path, ml_param_block *const *blocks, int n_blocks, char *err,
                   size_t errlen) {
    int total = 0;
    for (int b = 0; b < n_blocks; b++)
        total += blocks[b]->n_tensors;
    st_tensor *ts = calloc((size_t)(total > 0 ? total : 1), sizeof *ts);
    if (!ts) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    int k = 0;
    for (int b = 0; b < n_blocks; b++)
        for (int i = 0; i < blocks[b]->n_tensors; i++, k++) {
            const moelat_tensor_spec *sp = &blocks[b]->specs[i];
            full_name(blocks[b], i, ts[k].name, sizeof ts[k].name);
            ts[k].ndim = sp->ndim;
            for (int d = 0; d < sp->ndim; d++)
                ts[k].shape[d] = sp->shape[d];
            ts[k].data = blocks[b]->tensors[i];
            ts[k].numel = ml_spec_numel(sp);
        }
    int rc = st_write(path, ts, total, err, errlen);
    free(ts);
    return rc;
}

static int shape_matches(const st_tensor *t, const moelat_tensor_spec *sp) {
    if (sp->ndim == 0) /* a scalar is [] or [1] */
        return t->ndim == 0 || (t->ndim == 1 && t->shape[0] == 1);
    if (t->ndim != sp->ndim)
        return 0;
    for (int d = 0; d < sp->ndim; d++)
        if (t->shape[d] != sp->shape[d])
            return 0;
    return 1;
}

static void format_shape(const int64_t *shape, int ndim, char *out, size_t len) {
    size_t pos = (size_t)snprintf(out, len, "[");
    for (int d = 0; d < ndim && pos < len; d++)
        pos += (size_t)snprintf(out + pos, len - pos, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (pos < len)
        snprintf(out + pos, len - pos, "]");
}

/* Index of the first NaN or Inf in t, or t->numel when there is none. */
static size_t first_nonfinite(const st_tensor *t) {
    for (size_t k = 0; k < t->numel; k++)
        if (!isfinite(t->data[k]))
            return k;
    return t->numel;
}

/* The multi-index "(i, j, ...)" of flat index k in t. */
static void index_of(const st_tensor *t, size_t k, char *out, size_t len) {
    int64_t idx[MOELAT_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        size_t n = t->shape[d] > 0 ? (size_t)t->shape[d] : 1;
        idx[d] = (int64_t)(k % n);
        k /= n;
    }
    format_shape(idx, t->ndim, out, len);
}

moelat_status ml_params_load(const char *path, ml_param_block *const *blocks, int n_blocks, char *err,
                             size_t errlen) {
    st_file f;
    int rc = st_read(path, &f, err, errlen);
    if (rc != 0)
        return rc == -2 ? MOELAT_ERR_IO : MOELAT_ERR_FORMAT;
    int expected = 0;
    /* First pass: validate everything, so nothing is half-loaded. */
    for (int b = 0; b < n_blocks; b++) {
        for (int i = 0; i < blocks[b]->n_tensors; i++) {
            char name[256];
            full_name(blocks[b], i, name, sizeof name);
            const st_tensor *t = st_find(&f, name);
            const moelat_tensor_spec *sp = &blocks[b]->specs[i];
            if (!t) {
                snprintf(err, errlen, "%s: missing tensor '%s'", path, name);
                st_free(&f);
                return MOELAT_ERR_FORMAT;
            }
            if (!shape_matches(t, sp)) {
                char want[96], got[96];
                int64_t ws[MOELAT_MAX_DIMS];
                for (int d = 0; d < sp->ndim; d++)
                    ws[d] = sp->shape[d];
                format_shape(ws, sp->ndim, want, sizeof want);
                format_shape(t->shape, t->ndim, got, sizeof got);
                snprintf(err, errlen, "%s: tensor '%s' has shape %s, expected %s", path, name, got,
                         want);
                st_free(&f);
                return MOELAT_ERR_FORMAT;
            }
            size_t bad = first_nonfinite(t);
            if (bad < t->numel) {
                char at[96];
                index_of(t, bad, at, sizeof at);
                snprintf(err, errlen,
                         "%s: tensor '%s' element %s (flat index %zu) is %s: non-finite weights "
                         "are refused at load",
                         path, name, at, bad, isnan(t->data[bad]) ? "NaN" : "Inf");
                st_free(&f);
                return MOELAT_ERR_FORMAT;
            }
            expected++;
        }
    }
    if (f.n_tensors != expected) {
        for (int k = 0; k < f.n_tensors; k++) {
            int known = 0;
            for (int b = 0; b < n_blocks && !known; b++) {
                size_t pl = strlen(blocks[b]->prefix);
                if (strncmp(f.tensors[k].name, blocks[b]->prefix, pl) != 0)
                    continue;
                for (int i = 0; i < blocks[b]->n_tensors && !known; i++)
                    known = strcmp(f.tensors[k].name + pl, blocks[b]->specs[i].suffix) == 0;
            }
            if (!known) {
                snprintf(err, errlen, "%s: unexpected tensor '%s' (not part of this model)", path,
                         f.tensors[k].name);
                st_free(&f);
                return MOELAT_ERR_FORMAT;
            }
        }
    }
    for (int b = 0; b < n_blocks; b++)
        for (int i = 0; i < blocks[b]->n_tensors; i++) {
            char name[256];
            full_name(blocks[b], i, name, sizeof name);
            const st_tensor *t = st_find(&f, name);
            memcpy(blocks[b]->tensors[i], t->data, t->numel * sizeof(float));
        }
    st_free(&f);
    return MOELAT_OK;
}

uint64_t ml_params_digest(ml_param_block *const *blocks, int n_blocks) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int b = 0; b < n_blocks; b++) {
        const unsigned char *p = (const unsigned char *)blocks[b]->data;
        size_t n = blocks[b]->n_floats * sizeof(float);
        for (size_t i = 0; i < n; i++) {
            h ^= p[i];
            h *= 0x100000001b3ull;
        }
    }
    return h;
}
