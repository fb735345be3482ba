/* The engine's seeded generator (documented, so results are reproducible
 * across machines and thread counts).
 *
 *  - splitmix64: state += 0x9E3779B97F4A7C15, then the usual xor-shift
 *    multiply finaliser; one 64-bit output per call.
 *  - uniform in [0, 1): the top 24 bits of an output times 2^-24.
 *  - A weight tensor's stream is seeded with seed ^ fnv1a64(full tensor
 *    name), so adding a tensor never shifts another's values.
 *  - An initial state value (cell i, component s) is N(0, 0.1^2) by
 *    Box-Muller from the two uniforms of counter 2*(i*S + s) and
 *    2*(i*S + s) + 1 of the stream seeded with seed ^ 0x5354415445 ("STATE").
 */
#ifndef MOELAT_RNG_H
#define MOELAT_RNG_H

#include <stdint.h>

typedef struct ml_rng {
    uint64_t state;
} ml_rng;

uint64_t ml_splitmix64(uint64_t *state);
uint64_t ml_fnv1a64(const char *s);
void ml_rng_seed(ml_rng *r, uint64_t seed);
/* Uniform in [0, 1). */
double ml_rng_uniform(ml_rng *r);
/* Value of the counter-based uniform stream at position n. */
double ml_rng_uniform_at(uint64_t seed, uint64_t n);
/* Fills n floats with N(0, sigma^2) for cells first_value.. of a lattice. */
void ml_rng_normal_fill(uint64_t seed, uint64_t first_value, float *out, uint64_t n, double sigma);

#endif
