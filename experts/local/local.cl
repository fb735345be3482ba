/* Local expert, batched: one work-group of MOELAT_WG lanes per LOC_T chunk
 * cells (work-group g holds chunk cells g LOC_T .. g LOC_T + LOC_T - 1).
 * Tensor order is local_expert.c's enum. The attention runs cell by cell;
 * the MLP tail runs for the LOC_T cells at once, each weight read once for
 * them (ml_wg_dense_cells).
 *
 * Attention: the band's stencil offsets are walked in tiles of LOC_TILE
 * neighbours (MOELAT_WG, or fewer when S is large: the tile's rows share
 * 32 KB of __local memory with the cell's vectors, below). In a tile,
 * groups of LOC_G lanes share one neighbour's dot product n_j . x, each
 * lane reading a strided share of the row, so that a group reads a
 * contiguous run of the row (coalesced; one lane per neighbour would touch
 * a different cache line per lane). The group also stores the row it read
 * into the tile in __local memory (zeros for a missing neighbour), so each
 * neighbour row is read from global memory once. The tile's max and an
 * online softmax rescale (running max, per-lane partial sums with the
 * common max) carry across tiles, so the neighbour count (0 .. tens of
 * thousands) never sizes a buffer. agg[s] += w_j n_j[s] then runs from the
 * tile with lanes over s: consecutive lanes read consecutive floats of a
 * row (no bank conflicts; the group stores are 128 contiguous bytes per
 * quarter warp). The MLP tail runs with 8 lanes per weight row
 * (ml_wg_dense_split, or ml_wg_dense_cells for LOC_T cells); every vector
 * of the cells lives in __local memory, private arrays stay small. */

#define LOC_S MOELAT_S
#define LOC_H1 MOELAT_H_h1
#define LOC_H2 MOELAT_H_h2
#define LOC_PH MOELAT_H_ph
#define LOC_WG MOELAT_WG
#define LOC_P(i) (P + toff[i])
#define LOC_MAX2(a, b) ((a) > (b) ? (a) : (b))
/* The widest layer of the MLP tail. */
#define LOC_MAXOUT LOC_MAX2(LOC_MAX2(LOC_H1, LOC_H2), LOC_MAX2(LOC_PH, LOC_S))

/* Lanes per neighbour in the dot products: 8 lanes x float4 = 128 bytes,
 * one cache line per group and load. MOELAT_WG is a power of two (32..128
 * from the engine); a device that allows fewer lanes gets smaller groups. */
#if MOELAT_WG >= 8
#define LOC_G 8
#else
#define LOC_G MOELAT_WG
#endif
#define LOC_NPP (LOC_WG / LOC_G) /* neighbours per pass */

/* Partial dots of a tile, [neighbour][LOC_G + 1]: the pad keeps the group
 * writes and the per-neighbour reads free of bank conflicts. */
#define LOC_PSTRIDE (LOC_G + 1)

/* Neighbour rows staged per tile. The kernel's whole __local footprint
 * stays within LOC_LOCAL_FLOATS (32 KB: OpenCL's least
 * CL_DEVICE_LOCAL_MEM_SIZE, and oclgrind's), so the kernel fits every
 * device up to S of about 1900: the vectors of the cell (LOC_FIXED, with a
 * margin for alignment) come first, then as many rows of S floats (with
 * their weight, index and partial dots) as fit, at most MOELAT_WG (one
 * score per lane), rounded down to whole dot passes, at least 1.
 * Presets at MOELAT_WG 128 and one cell per group: optimized (S = 128) 48
 * rows, 24 KB of tile; experiment (S = 64) 96 rows; debug (S = 24) 128
 * (fewer rows with LOC_T cells' vectors, below). */
#ifndef LOC_LOCAL_FLOATS
#define LOC_LOCAL_FLOATS 8192
#endif
/* The vectors of T cells (x, agg, p, the hidden layers), the reduction
 * scratch, the T cells' LayerNorm statistics and a margin. */
#define LOC_FIXED_T(T) ((T) * (3 * LOC_S + LOC_H1 + LOC_H2 + LOC_PH) + LOC_WG + ((T) > 1 ? 3 * (T) : 0) + 64)
#define LOC_PER_ROW (LOC_S + 2 + LOC_PSTRIDE)
#define LOC_ROWS_T(T) ((LOC_LOCAL_FLOATS - LOC_FIXED_T(T)) / LOC_PER_ROW)

/* Cells per work-group: LOC_CELLS from the plugin (tuning key local_cells, 0
 * when unset), else 4 for S >= 48 and 1 below; kept only when a whole
 * dot pass of rows still fits and the row tile can hold the T cells'
 * partial sums of the tail's layers (it is their scratch), else 2 if that
 * fits (optimized, S = 128), else 1. */
#define LOC_FITS(T) (LOC_ROWS_T(T) >= LOC_NPP && LOC_ROWS_T(T) / LOC_NPP * LOC_NPP * LOC_S >= (T) * ML_DENSE_PART(LOC_MAXOUT))
#if defined(LOC_CELLS) && LOC_CELLS > 0
#define LOC_T_WANT LOC_CELLS
#elif LOC_S >= 48
#define LOC_T_WANT 4
#else
#define LOC_T_WANT 1
#endif
#if LOC_T_WANT > 1 && LOC_FITS(LOC_T_WANT)
#define LOC_T LOC_T_WANT
#elif LOC_T_WANT > 2 && LOC_FITS(2)
#define LOC_T 2
#else
#define LOC_T 1
#endif
#define LOC_FIXED LOC_FIXED_T(LOC_T)

/* Never run: its required work-group size tells the host LOC_T. */
__attribute__((reqd_work_group_size(LOC_T, 1, 1))) __kernel void local_cells_per_group(void) {}
#if LOC_FIXED + LOC_PER_ROW >= LOC_LOCAL_FLOATS
#define LOC_TILE 1
#elif (LOC_LOCAL_FLOATS - LOC_FIXED) / LOC_PER_ROW >= LOC_WG
#define LOC_TILE LOC_WG
#elif (LOC_LOCAL_FLOATS - LOC_FIXED) / LOC_PER_ROW >= LOC_NPP
#define LOC_TILE ((LOC_LOCAL_FLOATS - LOC_FIXED) / LOC_PER_ROW / LOC_NPP * LOC_NPP)
#else
#define LOC_TILE ((LOC_LOCAL_FLOATS - LOC_FIXED) / LOC_PER_ROW)
#endif
/* Passes over a tile in the dot products; fixed trip counts let the
 * compiler unroll them and keep a lane's row loads in flight together. */
#define LOC_PASSES ((LOC_TILE + LOC_NPP - 1) / LOC_NPP)

/* Rows are read as float4 when S allows it (16-byte aligned rows: the
 * buffer is aligned and every row starts at a multiple of 16 bytes). */
#if (LOC_S % 4) == 0
#define LOC_VEC float4
#define LOC_R (LOC_S / 4)
#define LOC_HSUM(v) (((v).x + (v).y) + ((v).z + (v).w))
#else
#define LOC_VEC float
#define LOC_R LOC_S
#define LOC_HSUM(v) (v)
#endif
#define LOC_QN ((LOC_R + LOC_G - 1) / LOC_G) /* row loads per lane and neighbour */

/* The fixed lane count lets the compiler size registers for it. */
__attribute__((reqd_work_group_size(MOELAT_WG, 1, 1)))
__kernel void local_expert(__global const float *states, __global const int4 *offsets,
                           int n_offsets, int4 dims, int4 origin, int4 extent, int n_cells,
                           __global const int *band_count, __global const float *P,
                           __global const int *toff, __global float *out) {
    __local LOC_VEC xv[LOC_T * LOC_R]; /* the cells' states x (as float: xs) */
    __local float agg[LOC_T * LOC_S];  /* attention-weighted sums of the n_j */
    __local float hid1[LOC_T * LOC_H1];
    __local float fvec[LOC_T * LOC_H2];
    __local float hid2[LOC_T * LOC_PH];
    __local float pvec[LOC_T * LOC_S];
    __local float red[LOC_WG];        /* reduction scratch of ml_wg_* */
    __local float wts[LOC_TILE];      /* softmax numerators of the tile */
    __local int nidx[LOC_TILE];       /* the tile's neighbour indices, -1: none */
    __local float part[LOC_TILE * LOC_PSTRIDE];
    __local LOC_VEC tile[LOC_TILE * LOC_R]; /* the tile's rows, [u][s] */
    __local float *tl = (__local float *)tile;
    __local float *xs = (__local float *)xv;
#if LOC_T > 1
    __local float st[3 * LOC_T];      /* the cells' LayerNorm statistics */
#endif

    const int lane = ml_lane();
    const int c0 = (int)get_group_id(0) * LOC_T;
    const int g = lane % LOC_G;   /* share of the row in the dot passes */
    const int sub = lane / LOC_G; /* neighbour of the pass */
    /* Every lane runs every barrier: an empty band (count 0) or a cell past
     * the chunk (the last group's tail) only shortens the tile loop to zero
     * trips and masks the final write, so no barrier sits under a condition
     * (PoCL's pthread device corrupted its heap when the whole body,
     * barriers included, sat under a work-group-uniform branch). */
    for (int ct = 0; ct < LOC_T; ct++) {
        const int c = c0 + ct;
        const int in_chunk = c < n_cells;
        const int count = in_chunk ? band_count[c] : 0;
#ifdef LOC_TIME_NO_ATTENTION /* a timing switch (NOTES item 36): the tail alone */
        const int n_walk = 0;
#else
        const int n_walk = count > 0 ? n_offsets : 0;
#endif
        const int4 cell = ml_chunk_cell(in_chunk ? c : 0, origin, extent);
        __global const float *xg = states + (size_t)ml_cell_index(dims, cell) * LOC_S;
        __local LOC_VEC *x4 = xv + ct * LOC_R;
        __local float *xl = xs + ct * LOC_S;
        __local float *ag = agg + ct * LOC_S;
        for (int s = lane; s < LOC_S; s += LOC_WG)
            ag[s] = 0.0f;
        ml_wg_load(xl, xg, LOC_S); /* barrier: x visible to every lane */

        float run_max = -INFINITY;    /* uniform: every lane computes it alike */
        float lane_sum = 0.0f;        /* this lane's numerators, scaled to run_max */
        for (int base = 0; base < n_walk; base += LOC_TILE) {
            const int tile_n = min(LOC_TILE, n_walk - base);
            /* The previous tile's axpy may still read nidx, wts and tile. */
            barrier(CLK_LOCAL_MEM_FENCE);
            if (lane < LOC_TILE)
                nidx[lane] = lane < tile_n ? ml_neighbour_index(dims, cell, offsets[base + lane]) : -1;
            barrier(CLK_LOCAL_MEM_FENCE);

            /* Dots: pass p gives neighbour p * LOC_NPP + sub to this lane's
             * group; its lanes read row elements g, g + LOC_G, ... and store
             * them to the tile. A missing neighbour's row is stored as zeros,
             * so the axpy needs no test (its weight is 0 as well). */
#pragma unroll
            for (int p = 0; p < LOC_PASSES; p++) {
                const int u = p * LOC_NPP + sub;
                if (u < tile_n) {
                    const int j = nidx[u];
                    __global const LOC_VEC *row = (__global const LOC_VEC *)(states + (size_t)max(j, 0) * LOC_S);
                    __local LOC_VEC *trow = tile + u * LOC_R;
                    LOC_VEC acc = (LOC_VEC)(0.0f);
#pragma unroll
                    for (int k = 0; k < LOC_QN; k++) {
                        const int q = g + k * LOC_G;
                        if (q < LOC_R) {
                            const LOC_VEC v = j >= 0 ? row[q] : (LOC_VEC)(0.0f);
                            trow[q] = v;
                            acc = fma(v, x4[q], acc);
                        }
                    }
                    part[u * LOC_PSTRIDE + g] = j >= 0 ? LOC_HSUM(acc) : 0.0f;
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            const int valid = lane < LOC_TILE && nidx[lane] >= 0;
            float score = -INFINITY;
            if (valid) {
                score = 0.0f;
                for (int k = 0; k < LOC_G; k++)
                    score += part[lane * LOC_PSTRIDE + k];
            }

            /* Online softmax: rescale what was summed so far to the new max.
             * A tile without neighbours leaves the max at -inf; exp is then
             * never taken of -inf - -inf (NaN). */
            const float new_max = fmax(run_max, ml_wg_max(score, red));
            const float scale = run_max == -INFINITY ? 0.0f : exp(run_max - new_max);
            run_max = new_max;
            const float w = valid ? exp(score - new_max) : 0.0f;
            lane_sum = fma(lane_sum, scale, w);
            if (lane < LOC_TILE)
                wts[lane] = w; /* ml_wg_max's barriers: the last tile's reads are done */
            barrier(CLK_LOCAL_MEM_FENCE);

            /* agg = scale * agg + sum_u w_u n_u from the tile: lanes over s,
             * the weights read four at a time. Each lane owns its agg entries,
             * so no barrier guards them. */
            for (int s = lane; s < LOC_S; s += LOC_WG) {
                float acc = ag[s] * scale;
                int u = 0;
                for (; u + 4 <= tile_n; u += 4) {
                    const float4 w4 = vload4(0, wts + u);
                    acc = fma(w4.x, tl[u * LOC_S + s], acc);
                    acc = fma(w4.y, tl[(u + 1) * LOC_S + s], acc);
                    acc = fma(w4.z, tl[(u + 2) * LOC_S + s], acc);
                    acc = fma(w4.w, tl[(u + 3) * LOC_S + s], acc);
                }
                for (; u < tile_n; u++)
                    acc = fma(wts[u], tl[u * LOC_S + s], acc);
                ag[s] = acc;
            }
        }
        /* No neighbour: the sum is 0 and agg stays 0; the tail below then
         * runs on zeros (wasted, but barrier-safe) and the write is masked. */
        const float total = ml_wg_sum(lane_sum, red);
        const float inv = total > 0.0f ? 1.0f / total : 0.0f;
        for (int s = lane; s < LOC_S; s += LOC_WG)
            ag[s] *= inv;
        barrier(CLK_LOCAL_MEM_FENCE); /* the dense layers read all of agg */
    }

    /* The MLP tail: split-row dense layers (coalesced weight reads) with
     * the free row tile as their scratch when it is large enough (LOC_T > 1
     * is only chosen when it is). */
#if LOC_T > 1
    ml_wg_dense_cells(LOC_P(0), LOC_P(1), agg, LOC_S, LOC_S, agg, 0, 0, agg, 0, 0, hid1, LOC_H1, LOC_H1,
                      ML_ACT_GELU, LOC_T, tl);
    ml_wg_dense_cells(LOC_P(2), LOC_P(3), hid1, LOC_H1, LOC_H1, hid1, 0, 0, hid1, 0, 0, fvec, LOC_H2, LOC_H2,
                      ML_ACT_NONE, LOC_T, tl);
    ml_wg_dense_cells(LOC_P(4), LOC_P(5), xs, LOC_S, LOC_S, fvec, LOC_H2, LOC_H2, fvec, 0, 0, hid2, LOC_PH, LOC_PH,
                      ML_ACT_GELU, LOC_T, tl);
    ml_wg_dense_cells(LOC_P(6), LOC_P(7), hid2, LOC_PH, LOC_PH, hid2, 0, 0, hid2, 0, 0, pvec, LOC_S, LOC_S,
                      ML_ACT_NONE, LOC_T, tl);
    ml_wg_layernorm_cells(pvec, LOC_S, LOC_T, LOC_P(10), LOC_P(11), red, st);
#elif LOC_TILE * LOC_S >= ML_DENSE_PART(LOC_MAXOUT)
    ml_wg_dense_split(LOC_P(0), LOC_P(1), agg, LOC_S, hid1, LOC_H1, ML_ACT_GELU, tl);
    ml_wg_dense_split(LOC_P(2), LOC_P(3), hid1, LOC_H1, fvec, LOC_H2, ML_ACT_NONE, tl);
    ml_wg_dense_cat_split(LOC_P(4), LOC_P(5), xs, LOC_S, fvec, LOC_H2, xs, 0, hid2, LOC_PH,
                          ML_ACT_GELU, tl);
    ml_wg_dense_split(LOC_P(6), LOC_P(7), hid2, LOC_PH, pvec, LOC_S, ML_ACT_NONE, tl);
    ml_wg_layernorm(pvec, LOC_S, LOC_P(10), LOC_P(11), red);
#else
    ml_wg_dense(LOC_P(0), LOC_P(1), agg, LOC_S, hid1, LOC_H1, ML_ACT_GELU);
    ml_wg_dense(LOC_P(2), LOC_P(3), hid1, LOC_H1, fvec, LOC_H2, ML_ACT_NONE);
    ml_wg_dense_cat(LOC_P(4), LOC_P(5), xs, LOC_S, fvec, LOC_H2, xs, 0, hid2, LOC_PH,
                    ML_ACT_GELU);
    ml_wg_dense(LOC_P(6), LOC_P(7), hid2, LOC_PH, pvec, LOC_S, ML_ACT_NONE);
    ml_wg_layernorm(pvec, LOC_S, LOC_P(10), LOC_P(11), red);
#endif
    const float alpha = LOC_P(8)[0], beta = LOC_P(9)[0];
    for (int q = lane; q < LOC_T * LOC_S; q += LOC_WG) {
        const int c = c0 + q / LOC_S;
        if (c < n_cells)
            out[(size_t)c * LOC_S + q % LOC_S] = band_count[c] > 0 ? alpha * xs[q] + beta * pvec[q] : 0.0f;
    }
}
