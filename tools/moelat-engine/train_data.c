/* Loading and making the data of `moelat-engine train` (train_data.h). */
#include "train_data.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "moelat/moelat.h"
#include "moelat/util.h"

const float *train_input(const train_data *d, int64_t b) {
    return d->inputs + (size_t)b * (size_t)(d->Y * d->X * MOELAT_EXT_SIZE);
}
const float *train_target(const train_data *d, int64_t b) { return d->targets + (size_t)b * (size_t)(d->Y * d->X * d->S); }

void train_data_free(train_data *d) {
    free(d->inputs);
    free(d->targets);
    memset(d, 0, sizeof *d);
}

static int first_nonfinite(const float *v, size_t n, size_t *at) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            *at = i;
            return 1;
        }
    return 0;
}

static int read4(const char *dir, const char *name, float **data, int64_t shape[4], char *err, size_t errlen) {
    char path[4096];
    int ndim = 0;
    int64_t sh[8];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (moelat_npy_load(path, data, &ndim, sh, err, errlen) != MOELAT_OK)
        return -1;
    if (ndim != 4) {
        snprintf(err, errlen, "%s: %d dimensions, expected 4", path, ndim);
        free(*data);
        *data = NULL;
        return -1;
    }
    memcpy(shape, sh, 4 * sizeof shape[0]);
    return 0;
}

int train_data_load(const char *dir, int X, int Y, int S, train_data *d, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    int64_t si[4], st[4];
    if (read4(dir, "inputs.npy", &d->inputs, si, err, errlen) != 0)
        return -1;
    if (read4(dir, "targets.npy", &d->targets, st, err, errlen) != 0) {
        train_data_free(d);
        return -1;
    }
    const char *bad = NULL;
    char why[256] = "";
    if (si[0] < 1) {
        bad = "inputs.npy";
        snprintf(why, sizeof why, "holds no sample");
    } else if (si[1] != Y || si[2] != X || si[3] != MOELAT_EXT_SIZE) {
        bad = "inputs.npy";
        snprintf(why, sizeof why, "shape (%lld, %lld, %lld, %lld), the lattice needs (B, %d, %d, %d)",
                 (long long)si[0], (long long)si[1], (long long)si[2], (long long)si[3], Y, X, MOELAT_EXT_SIZE);
    } else if (st[1] != Y || st[2] != X || st[3] != S) {
        bad = "targets.npy";
        snprintf(why, sizeof why, "shape (%lld, %lld, %lld, %lld), the lattice needs (B, %d, %d, %d)",
                 (long long)st[0], (long long)st[1], (long long)st[2], (long long)st[3], Y, X, S);
    } else if (st[0] != si[0]) {
        bad = "targets.npy";
        snprintf(why, sizeof why, "%lld samples but inputs.npy has %lld", (long long)st[0], (long long)si[0]);
    }
    if (bad) {
        snprintf(err, errlen, "%s/%s: %s", dir, bad, why);
        train_data_free(d);
        return -1;
    }
    d->B = si[0];
    d->Y = Y;
    d->X = X;
    d->S = S;
    size_t at;
    size_t per_in = (size_t)Y * X * MOELAT_EXT_SIZE, per_t = (size_t)Y * X * S;
    if (first_nonfinite(d->inputs, (size_t)d->B * per_in, &at)) {
        snprintf(err, errlen, "%s/inputs.npy: sample %zu holds %g at (y %zu, x %zu, e %zu)", dir, at / per_in,
                 d->inputs[at], at % per_in / ((size_t)X * MOELAT_EXT_SIZE), at % ((size_t)X * MOELAT_EXT_SIZE) / MOELAT_EXT_SIZE,
                 at % MOELAT_EXT_SIZE);
        train_data_free(d);
        return -1;
    }
    if (first_nonfinite(d->targets, (size_t)d->B * per_t, &at)) {
        snprintf(err, errlen, "%s/targets.npy: sample %zu holds %g at (y %zu, x %zu, s %zu)", dir, at / per_t,
                 d->targets[at], at % per_t / ((size_t)X * S), at % ((size_t)X * S) / (size_t)S, at % (size_t)S);
        train_data_free(d);
        return -1;
    }
    return 0;
}

/* splitmix64, then Box-Muller: a small generator of our own so that the
 * data depend on the seed alone. */
static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double normal(uint64_t *s) {
    double u1 = ((next_u64(s) >> 11) + 1.0) / 9007199254740993.0, u2 = (next_u64(s) >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

int train_data_make(const char *dir, int64_t B, int X, int Y, int S, uint64_t seed, char *err, size_t errlen) {
    if (B < 1 || B > 1000000) {
        snprintf(err, errlen, "--samples %lld is outside [1, 1000000]", (long long)B);
        return -1;
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create the directory: %s", dir, strerror(errno));
        return -1;
    }
    size_t per_in = (size_t)Y * X * MOELAT_EXT_SIZE, per_t = (size_t)Y * X * S;
    float *in = malloc((size_t)B * per_in * sizeof(float)), *tg = malloc((size_t)B * per_t * sizeof(float));
    float *pattern = malloc((size_t)S * sizeof(float));
    int rc = -1;
    if (!in || !tg || !pattern) {
        snprintf(err, errlen, "out of memory for %lld samples", (long long)B);
        goto out;
    }
    uint64_t s = seed ^ 0x7261696e64617461ull;
    for (int c = 0; c < S; c++)
        pattern[c] = (float)normal(&s);
    for (size_t i = 0; i < (size_t)B * per_in; i++)
        in[i] = (float)normal(&s);
    for (int64_t b = 0; b < B; b++)
        for (size_t cell = 0; cell < (size_t)X * Y; cell++)
            for (int c = 0; c < S; c++)
                tg[(size_t)b * per_t + cell * (size_t)S + (size_t)c] =
                    pattern[c] + 0.5f * tanhf(in[(size_t)b * per_in + cell * MOELAT_EXT_SIZE + (size_t)(c % MOELAT_EXT_SIZE)]);
    char path[4096];
    int64_t shi[4] = {B, Y, X, MOELAT_EXT_SIZE}, sht[4] = {B, Y, X, S};
    snprintf(path, sizeof path, "%s/inputs.npy", dir);
    if (moelat_npy_write(path, in, 4, shi, err, errlen) != MOELAT_OK)
        goto out;
    snprintf(path, sizeof path, "%s/targets.npy", dir);
    if (moelat_npy_write(path, tg, 4, sht, err, errlen) != MOELAT_OK)
        goto out;
    rc = 0;
out:
    free(in);
    free(tg);
    free(pattern);
    return rc;
}
