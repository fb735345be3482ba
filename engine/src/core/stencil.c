/* Stencil construction: classify every offset in the cube of half-width
 * ceil(ratio[2] * r) by its Euclidean length, in double precision. */
#include "core/stencil.h"

#include <math.h>
#include <stdlib.h>

int ml_offset_band(int dx, int dy, int dz, double r, const double ratio[MOELAT_BANDS]) {
    if (dx == 0 && dy == 0 && dz == 0)
        return -1;
    double d = sqrt((double)dx * dx + (double)dy * dy + (double)dz * dz);
    if (d < ratio[0] * r)
        return 0;
    if (d <= ratio[1] * r)
        return 1;
    if (d <= ratio[2] * r)
        return 2;
    return -1;
}

int ml_stencil_build(double r, const double ratio[MOELAT_BANDS], ml_stencil *st) {
    /* The config bounds keep the half-width at most 400; converting a
     * larger (or NaN) double to int would be undefined, so refuse it here
     * too for callers that bypass validation. */
    double hd = ceil(ratio[2] * r);
    for (int k = 0; k < MOELAT_BANDS; k++) {
        st->band[k] = NULL;
        st->count[k] = 0;
    }
    if (!(hd >= 0 && hd <= 4096))
        return -1;
    int h = (int)hd;
    size_t side = (size_t)(2 * h + 1);
    size_t cap = side * side * side;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        st->band[k] = malloc(cap * sizeof(ml_offset));
        st->count[k] = 0;
        if (!st->band[k]) {
            ml_stencil_free(st);
            return -1;
        }
    }
    st->radius = r;
    /* z outermost, x innermost: neighbours are visited in memory order. */
    for (int dz = -h; dz <= h; dz++)
        for (int dy = -h; dy <= h; dy++)
            for (int dx = -h; dx <= h; dx++) {
                int b = ml_offset_band(dx, dy, dz, r, ratio);
                if (b < 0)
                    continue;
                st->band[b][st->count[b]++] = (ml_offset){dx, dy, dz, 0};
            }
    return 0;
}

void ml_stencil_free(ml_stencil *st) {
    for (int k = 0; k < MOELAT_BANDS; k++) {
        free(st->band[k]);
        st->band[k] = NULL;
        st->count[k] = 0;
    }
}

int ml_stencil_neighbours(const ml_stencil *st, int k, int X, int Y, int Z, int x, int y, int z, size_t *idx) {
    const ml_offset *off = st->band[k];
    int c = 0;
    for (int j = 0; j < st->count[k]; j++) {
        int nx = x + off[j].dx, ny = y + off[j].dy, nz = z + off[j].dz;
        if (nx < 0 || ny < 0 || nz < 0 || nx >= X || ny >= Y || nz >= Z)
            continue;
        idx[c++] = (size_t)nx + (size_t)X * ((size_t)ny + (size_t)Y * nz);
    }
    return c;
}
