/* The host path (percell.c): the readable reference of a step. Every call
 * returns a moelat_status with the lattice's error set where it failed
 * (MOELAT_ERR_NONFINITE, MOELAT_ERR_PLUGIN for an expert's error,
 * MOELAT_ERR_NOMEM). */
#ifndef MOELAT_PERCELL_H
#define MOELAT_PERCELL_H

#include <stddef.h>

#include "core/chunks.h"
#include "moelat/moelat.h"

/* next[] for the listed chunks from states[]. */
moelat_status ml_percell_run(moelat_lattice *lat, const int *chunk_ids, int n, const float *states, float *next);
void ml_percell_free(moelat_lattice *lat);
/* The message of a step's first non-finite cell (lowest lattice index)
 * and the first stage of it that is not finite, in the order a cell is
 * computed: band 0..2's expert output, then (band -1) the combined state.
 * Both paths report through it, so they say the same thing. */
moelat_status ml_fail_nonfinite(moelat_lattice *lat, size_t cell, int band);
/* Band k's expert alone on the host for every cell of a chunk: out holds
 * n_cells x S in chunk order (zeros where the band is empty). */
moelat_status ml_percell_expert_chunk(moelat_lattice *lat, int band, const ml_chunk *chunk, const float *states,
                                      float *out);
/* The step's update of single cells (the batch path's sample check). */
moelat_status ml_percell_cells(moelat_lattice *lat, const size_t *cells, int n, const float *states, float *out);
/* Times the host path on rows of cells spread over the lattice (at most
 * max_cells cells) and returns the extrapolated ms per step; *sampled is
 * set to 1 when only a sample ran. States are not changed. */
double ml_percell_time_sample(moelat_lattice *lat, size_t max_cells, int *sampled);

#endif
