/* The run table of aggregation by row prefix sums: see run_table.h. */
#include"core/run_table.h"

#include <stdlib.h>
#include <string.h>

/* Appends one int2 (endpoint dx, band) to the growing segment list. */
static int push_seg(int32_t **segs, int *n, int *cap, int dx, int band) {
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 256;
        int32_t *p = realloc(*segs, (size_t)c * 2 * sizeof *p);
        if (!p)
            return -1;
        *segs = p;
        *cap = c;
    }
    (*segs)[2 * *n] = dx;
    (*segs)[2 * *n + 1] = band;
    (*n)++;
    return 0;
}

/* Offsets are placed in a cube by band; each (dy, dz) line holding any
 * becomes a row. */
int ml_run_table_build(const ml_stencil *st, int32_t **rows, int *n_rows, int32_t **segs, int *n_segs,
                       int *direct) {
    *rows = *segs = NULL;
    *n_rows = *n_segs = 0;
    *direct = 0;
    int h = 0;
    for (int k = 0; k < MOELAT_BANDS; k++)
        for (int j = 0; j < st->count[k]; j++) {
            const ml_offset *o = &st->band[k][j];
            int m = abs(o->dx) > abs(o->dy) ? abs(o->dx) : abs(o->dy);
            if (abs(o->dz) > m)
                m = abs(o->dz);
            if (m > h)
                h = m;
        }
    size_t side = (size_t)(2 * h + 1);
    signed char *grid = malloc(side * side * side);
    if (!grid)
        return -1;
    for (int pass = 0; pass < 2; pass++) {
        memset(grid, -1, side * side * side);
        for (int k = 0; k < MOELAT_BANDS; k++) {
            if (*direct & (1 << k))
                continue;
            for (int j = 0; j < st->count[k]; j++) {
                const ml_offset *o = &st->band[k][j];
                size_t at = ((size_t)(o->dz + h) * side + (size_t)(o->dy + h)) * side + (size_t)(o->dx + h);
                if (grid[at] >= 0)
                    *direct |= (1 << k) | (1 << grid[at]);
                grid[at] = (signed char)k;
            }
        }
        if (*direct == 0)
            break; /* else fill again without the bands now summed directly */
    }
    int cap_rows = 0, cap_segs = 0;
    long covered[MOELAT_BANDS] = {0, 0, 0};
    int rc = 0;
    for (int dz = -h; dz <= h && rc == 0; dz++)
        for (int dy = -h; dy <= h && rc == 0; dy++) {
            const signed char *line = grid + ((size_t)(dz + h) * side + (size_t)(dy + h)) * side;
            int lo = 0, hi = (int)side - 1;
            while (lo <= hi && line[lo] < 0)
                lo++;
            while (hi >= lo && line[hi] < 0)
                hi--;
            if (lo > hi)
                continue;
            if (*n_rows == cap_rows) {
                int c = cap_rows ? cap_rows * 2 : 64;
                int32_t *p = realloc(*rows, (size_t)c * 4 * sizeof *p);
                if (!p) {
                    rc = -1;
                    break;
                }
                *rows = p;
                cap_rows = c;
            }
            int32_t *r = *rows + 4 * *n_rows;
            r[0] = dy;
            r[1] = dz;
            r[2] = *n_segs;
            rc = push_seg(segs, n_segs, &cap_segs, lo - 1 - h, -1);
            for (int x = lo; x <= hi && rc == 0; x++) {
                if (line[x] >= 0)
                    covered[line[x]]++;
                if (x == hi || line[x + 1] != line[x])
                    rc = push_seg(segs, n_segs, &cap_segs, x - h, line[x]);
            }
            r[3] = *n_segs;
            (*n_rows)++;
        }
    free(grid);
    if (rc != 0) {
        free(*rows);
        free(*segs);
        *rows = *segs = NULL;
        return -1;
    }
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (!(*direct & (1 << k)) && covered[k] != st->count[k])
            *direct |= 1 << k; /* cannot happen; never trust it silently */
    return 0;
}

