#include "base/rng.h"

#include <math.h>

uint64_t ml_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t ml_fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

void ml_rng_seed(ml_rng *r, uint64_t seed) { r->state = seed; }

static double to_unit(uint64_t v) { return (double)(v >> 40) * (1.0 / 16777216.0); }

double ml_rng_uniform(ml_rng *r) { return to_unit(ml_splitmix64(&r->state)); }

double ml_rng_uniform_at(uint64_t seed, uint64_t n) {
    /* splitmix64 is a counter plus a mixer, so position n is direct. */
    uint64_t s = seed + n * 0x9E3779B97F4A7C15ull;
    return to_unit(ml_splitmix64(&s));
}

void ml_rng_normal_fill(uint64_t seed, uint64_t first_value, float *out, uint64_t n, double sigma) {
    uint64_t key = seed ^ 0x5354415445ull;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t c = first_value + k;
        double u1 = ml_rng_uniform_at(key, 2 * c);
        double u2 = ml_rng_uniform_at(key, 2 * c + 1);
        /* 1 - u1 lies in (0, 1], so the log is finite. */
        double g = sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
        out[k] = (float)(sigma * g);
    }
}
