/* The synthetic data set of `moelat-engine train` (train_data.h). */
#include "train_data.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "moelat/moelat.h"
#include "moelat/util.h"

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
