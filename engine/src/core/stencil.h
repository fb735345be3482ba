/* The neighbourhood stencil: one list of integer offsets per band, shared
 * by every cell and clipped at the lattice boundary when used. Offsets
 * depend only on the radius and the band ratios (docs/MODEL.md), so no cell ever
 * stores a neighbour list. */
#ifndef MOELAT_STENCIL_H
#define MOELAT_STENCIL_H

#include <stddef.h>
#include <stdint.h>

#include "moelat/moelat.h"

typedef struct ml_offset {
    int32_t dx, dy, dz, pad; /* laid out as an OpenCL int4 */
} ml_offset;

typedef struct ml_stencil {
    ml_offset *band[MOELAT_BANDS];
    int32_t count[MOELAT_BANDS]; /* interior neighbour count of each band */
    double radius;
} ml_stencil;

/* Builds the stencil of radius r with the band edges ratio[k] * r. */
int ml_stencil_build(double r, const double ratio[MOELAT_BANDS], ml_stencil *st);
void ml_stencil_free(ml_stencil *st);

/* The neighbours of cell (x, y, z) in band k that lie inside an X x Y x Z
 * lattice, in stencil order: their cell indices (x + X (y + Y z)) into idx,
 * which has room for st->count[k]; returns how many. The one gather of
 * the host path (percell.c) and the float64 gradient step (grad_step.c). */
int ml_stencil_neighbours(const ml_stencil *st, int k, int X, int Y, int Z, int x, int y, int z, size_t *idx);

/* Band of an offset, or -1 when it is no neighbour (d = 0 or d > ratio[2] r). */
int ml_offset_band(int dx, int dy, int dz, double r, const double ratio[MOELAT_BANDS]);

#endif
