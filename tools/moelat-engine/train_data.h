/* The synthetic data set of `moelat-engine train --make-data` (the
 * library reads data sets: moelat/train.h's moelat_dataset_load). */
#ifndef MOELAT_TRAIN_DATA_H
#define MOELAT_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

/* B samples of random input faces (N(0, 1) from seed) and targets that
 * carry each input's pattern to the output face:
 * target[y][x][s] = P[s] + 0.5 * tanh(input[y][x][s mod 16]), with P a
 * fixed per-channel pattern (N(0, 1) from the seed). Learning P is the
 * bulk of the first fall of the loss; the input-dependent half needs the
 * input to travel through the lattice. Writes DIR/inputs.npy (B, Y, X,
 * 16) and DIR/targets.npy (B, Y, X, S) (DIR is created). Returns 0, or -1
 * with err set. */
int train_data_make(const char *dir, int64_t B, int X, int Y, int S, uint64_t seed, char *err, size_t errlen);

#endif
