/* Helpers shared by the model tests. */
#ifndef MOELAT_TEST_SUPPORT_H
#define MOELAT_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "moelat/moelat.h"
#include "moelat/train.h"

/* A config from a preset with dims and plugin search restricted to the
 * build tree, and ts_tuning() as its tuning; fails the test on error. */
void ts_config(moelat_config *cfg, const char *preset, int X, int Y, int Z);
/* The tuning string ("key=value,...", what --tune gives the CLI) for the
 * lattices and expert setups a test creates in-process: the test-only
 * variable MOELAT_TEST_TUNING, or "". The library reads no tuning from the
 * environment, so a ctest entry that wants, say, the work-group kernels on
 * PoCL sets MOELAT_TEST_TUNING=cl_shape=gpu. */
const char *ts_tuning(void);
/* Creates a lattice or fails the test with the engine's message. */
moelat_lattice *ts_lattice(const moelat_config *cfg);
/* Fills n floats with N(0, sigma^2) from a per-call random seed (logged). */
void ts_random(float *v, size_t n, double sigma, uint64_t seed);
/* A fresh seed from the clock and pid, printed so a failure can be redone
 * (MOELAT_TEST_SEED overrides it). */
uint64_t ts_seed(void);
/* max |a - b| and mean |a - b|; NaN anywhere gives INFINITY. */
void ts_diff(const float *a, const float *b, size_t n, double *max, double *mean);
/* Reads a float32 .npy file of known element count into a new buffer. */
float *ts_read_npy(const char *path, size_t expect_count);
/* Randomises every weight: each tensor element times U(0.5, 1.5) plus
 * U(-0.05, 0.05), so tests never run on the init constants. */
void ts_perturb_weights(moelat_lattice *lat, uint64_t seed, const char *tmpdir);
/* Fresh random inputs from seed: weights perturbed (ts_perturb_weights),
 * states N(0, 0.5) (seed + 1) and the input face N(0, 0.5) (seed + 2). */
void ts_randomize(moelat_lattice *lat, uint64_t seed);
/* The same with a chosen strength: times U(1 - a/2, 1 + a/2) plus
 * U(-a/20, a/20); a = 1 is ts_perturb_weights. */
void ts_perturb_weights_by(moelat_lattice *lat, uint64_t seed, const char *tmpdir, double a);
/* B training samples for an X x Y x Z lattice of S state values: inputs
 * N(0, 1) from seed, targets N(0, 0.25) from seed + 1, of the output face
 * or, with all_cells, of every cell. Fails the test on error. */
moelat_dataset *ts_dataset(int B, int X, int Y, int Z, int S, int all_cells, uint64_t seed);
/* A trainer on lat with params p and, when ds is not NULL, its data;
 * fails the test with the engine's message. */
moelat_trainer *ts_trainer(moelat_lattice *lat, const moelat_train_params *p, const moelat_dataset *ds);
/* A new temporary directory (mkdtemp). */
char *ts_tmpdir(void);
/* Removes ts_tmpdir's directory with everything in it and frees dir. */
void ts_rmtree(char *dir);

#endif
