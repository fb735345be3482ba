/* Training data of `moelat-engine train`: a directory holding inputs.npy
 * (B, Y, X, 16), the external input of the z = 0 face per sample, and
 * targets.npy (B, Y, X, S), the wanted output face z = Z-1. */
#ifndef MOELAT_TRAIN_DATA_H
#define MOELAT_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

typedef struct train_data {
    int64_t B, Y, X, S;
    float *inputs;  /* B x Y x X x 16 */
    float *targets; /* B x Y x X x S */
} train_data;

/* Reads DIR/inputs.npy and DIR/targets.npy and checks them against the
 * lattice (X, Y, S): every mismatch is named ("targets.npy: shape (8, 6, 6,
 * 24) but inputs.npy has 10 samples"); no sample, or a non-finite value
 * (file, sample, index), is an error. Returns 0, or -1 with err set. */
int train_data_load(const char *dir, int X, int Y, int S, train_data *d, char *err, size_t errlen);
void train_data_free(train_data *d);

const float *train_input(const train_data *d, int64_t b);
const float *train_target(const train_data *d, int64_t b);

/* The synthetic task: B samples of random input faces (N(0, 1) from seed)
 * and targets that carry each input's pattern to the output face:
 * target[y][x][s] = P[s] + 0.5 * tanh(input[y][x][s mod 16]), with P a
 * fixed per-channel pattern (N(0, 1) from the seed). Learning P is the
 * bulk of the first fall of the loss; the input-dependent half needs the
 * input to travel through the lattice. Writes DIR/inputs.npy and
 * DIR/targets.npy (DIR is created). Returns 0, or -1 with err set. */
int train_data_make(const char *dir, int64_t B, int X, int Y, int S, uint64_t seed, char *err, size_t errlen);

#endif
