/* Local expert, batched: one work-group of MOELAT_WG lanes per chunk cell
 * (work-group id = chunk cell). Tensor order is local_expert.c's enum.
 *
 * Attention: the band's stencil offsets are walked in tiles of MOELAT_WG
 * neighbours. In a tile, groups of LOC_G lanes share one neighbour's dot
 * product n_j . x, each lane reading a strided share of the row, so that a
 * group reads a contiguous run of the row (coalesced; one lane per
 * neighbour would touch a different cache line per lane). The tile's max
 * and an online softmax rescale (running max, per-lane partial sums with
 * the common max) carry across tiles, so the neighbour count (0 .. tens of
 * thousands) never sizes a buffer. agg[s] += w_j n_j[s] then runs with
 * lanes over s: consecutive lanes read consecutive floats of a neighbour.
 * The MLP tail runs with lanes over outputs (ml_wg_dense_cat); every vector
 * of the cell lives in __local memory, private arrays stay scalar. */

#define LOC_S MOELAT_S
#define LOC_H1 MOELAT_H_h1
#define LOC_H2 MOELAT_H_h2
#define LOC_PH MOELAT_H_ph
#define LOC_WG MOELAT_WG
#define LOC_P(i) (P + toff[i])

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

/* The fixed lane count lets the compiler size registers for it. */
__attribute__((reqd_work_group_size(MOELAT_WG, 1, 1)))
__kernel void local_expert(__global const float *states, __global const int4 *offsets,
                           int n_offsets, int4 dims, int4 origin, int4 extent, int n_cells,
                           __global const int *band_count, __global const float *P,
                           __global const int *toff, __global float *out) {
    __local LOC_VEC xv[LOC_R];        /* the cell's state x (as float: xl) */
    __local float agg[LOC_S];         /* attention-weighted sum of the n_j */
    __local float hid1[LOC_H1];
    __local float fvec[LOC_H2];
    __local float hid2[LOC_PH];
    __local float pvec[LOC_S];
    __local float red[LOC_WG];        /* reduction scratch of ml_wg_* */
    __local float wts[LOC_WG];        /* softmax numerators of the tile */
    __local int nidx[LOC_WG];         /* the tile's neighbour indices, -1: none */
    __local float part[LOC_WG * LOC_PSTRIDE];
    __local float *xl = (__local float *)xv;

    const int lane = ml_lane();
    const int c = (int)get_group_id(0);
    /* Every lane runs every barrier: an empty band (count 0) or a group past
     * the chunk (never enqueued; a guard) only shortens the tile loop to
     * zero trips and masks the final write, so no barrier sits under a
     * condition (PoCL's pthread device corrupted its heap when the whole
     * body, barriers included, sat under a work-group-uniform branch). */
    const int in_chunk = c < n_cells;
    const int count = in_chunk ? band_count[c] : 0;
    const int n_walk = count > 0 ? n_offsets : 0;
    const int4 cell = ml_chunk_cell(in_chunk ? c : 0, origin, extent);
    __global const float *xg = states + (size_t)ml_cell_index(dims, cell) * LOC_S;
    for (int s = lane; s < LOC_S; s += LOC_WG)
        agg[s] = 0.0f;
    ml_wg_load(xl, xg, LOC_S); /* barrier: x visible to every lane */

    const int g = lane % LOC_G;   /* share of the row in the dot passes */
    const int sub = lane / LOC_G; /* neighbour of the pass */
    float run_max = -INFINITY;    /* uniform: every lane computes it alike */
    float lane_sum = 0.0f;        /* this lane's numerators, scaled to run_max */
    for (int base = 0; base < n_walk; base += LOC_WG) {
        const int tile_n = min(LOC_WG, n_walk - base);
        /* The previous tile's axpy may still read nidx and wts. */
        barrier(CLK_LOCAL_MEM_FENCE);
        nidx[lane] = lane < tile_n ? ml_neighbour_index(dims, cell, offsets[base + lane]) : -1;
        barrier(CLK_LOCAL_MEM_FENCE);

        /* Dots: pass p gives neighbour p * LOC_NPP + sub to this lane's
         * group; its lanes read row elements g, g + LOC_G, ... */
        for (int u = sub; u < tile_n; u += LOC_NPP) {
            const int j = nidx[u];
            float d = 0.0f;
            if (j >= 0) {
                __global const LOC_VEC *row = (__global const LOC_VEC *)(states + (size_t)j * LOC_S);
                LOC_VEC acc = (LOC_VEC)(0.0f);
                for (int q = g; q < LOC_R; q += LOC_G)
                    acc = fma(row[q], xv[q], acc);
                d = LOC_HSUM(acc);
            }
            part[u * LOC_PSTRIDE + g] = d;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        const int valid = nidx[lane] >= 0;
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
        wts[lane] = w; /* ml_wg_max's barriers: the last tile's reads are done */
        barrier(CLK_LOCAL_MEM_FENCE);

        /* agg = scale * agg + sum_u w_u n_u: lanes over s, coalesced.
         * Each lane owns its agg entries, so no barrier guards them. */
        for (int s = lane; s < LOC_S; s += LOC_WG) {
            float acc = agg[s] * scale;
            for (int u = 0; u < tile_n; u++) {
                const int j = nidx[u];
                if (j >= 0)
                    acc = fma(wts[u], states[(size_t)j * LOC_S + s], acc);
            }
            agg[s] = acc;
        }
    }
    /* No neighbour: the sum is 0 and agg stays 0; the tail below then runs
     * on zeros (wasted, but barrier-safe) and the write is masked. */
    const float total = ml_wg_sum(lane_sum, red);
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    for (int s = lane; s < LOC_S; s += LOC_WG)
        agg[s] *= inv;
    barrier(CLK_LOCAL_MEM_FENCE); /* the dense layers read all of agg */

    ml_wg_dense(LOC_P(0), LOC_P(1), agg, LOC_S, hid1, LOC_H1, ML_ACT_GELU);
    ml_wg_dense(LOC_P(2), LOC_P(3), hid1, LOC_H1, fvec, LOC_H2, ML_ACT_NONE);
    ml_wg_dense_cat(LOC_P(4), LOC_P(5), xl, LOC_S, fvec, LOC_H2, xl, 0, hid2, LOC_PH,
                    ML_ACT_GELU);
    ml_wg_dense(LOC_P(6), LOC_P(7), hid2, LOC_PH, pvec, LOC_S, ML_ACT_NONE);
    ml_wg_layernorm(pvec, LOC_S, LOC_P(10), LOC_P(11), red);
    const float alpha = LOC_P(8)[0], beta = LOC_P(9)[0];
    if (in_chunk) {
        __global float *o = out + (size_t)c * LOC_S;
        for (int s = lane; s < LOC_S; s += LOC_WG)
            o[s] = count > 0 ? alpha * xl[s] + beta * pvec[s] : 0.0f;
    }
}
