/* The run table of aggregation by row prefix sums (moelat_step.cl's
 * ml_aggregate): for each row offset (dy, dz) of the stencil, the dx
 * endpoints where a run of one band ends, so that a band's sum over the
 * row is a difference of two prefix sums along x. Host code only. */
#ifndef MOELAT_RUN_TABLE_H
#define MOELAT_RUN_TABLE_H

#include <stdint.h>

#include "core/stencil.h"

/* The run table of aggregation by row prefix sums (moelat_step.cl), built
 * from the stencil itself so that every offset keeps the band the
 * reference gave it. Offsets are placed in a cube by band; each (dy, dz)
 * line holding any becomes a row (dy, dz, first, end) whose segs are its
 * starting endpoint and then one endpoint per run of equal band (gaps -1).
 * A run may be any contiguous dx range: for this stencil they are the
 * symmetric ones ([-hi, hi], or [-hi, -lo] and [lo, hi]), but nothing
 * depends on it. A band the table cannot express exactly (an offset listed
 * twice, in one band or in two) is summed neighbour by neighbour: its bit
 * in *direct. Each band's run lengths are checked against its count.
 * Returns 0, or -1 when out of memory (*rows and *segs are then NULL). */
int ml_run_table_build(const ml_stencil *st, int32_t **rows, int *n_rows, int32_t **segs, int *n_segs,
                       int *direct);

#endif
