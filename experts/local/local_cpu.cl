/* Local expert, CPU-shaped (moelat_cpu_math.cl): work-item w computes
 * MLC_V cells of a chunk row (mlc_row_cells), one per vector lane. The
 * lanes walk the band's offsets together (one stencil for every cell);
 * their neighbours at one offset are consecutive cells of one row, read
 * as one contiguous vector per state value from a feature-major copy of
 * the states (local_transpose_cpu, once per step: value s of cell i at
 * st[s LOC_NP + LOC_PAD + i]; a gather per value from the cell-major
 * states cost more than the rest of the edge). Each neighbour's score
 * n_j . x and the online softmax (running max per lane) update the
 * weighted sum agg in the same pass, so the neighbour count never sizes
 * a buffer; a lane whose neighbour lies outside the lattice reads a
 * finite value or the zero padding and takes no weight. Then the MLPs of
 * MODEL.md with each weight read once for the lanes. Tensor order is
 * local_expert.c's enum. local_expert's arguments and the copy; enqueued
 * with mlc_items(extent) work-items. */

/* Padding of each value's row: offsets reach at most 100 cells along x
 * (r <= 100), and a row's last work-item MLC_V - 1 past its end. */
#define LOC_PAD 128
#define LOC_NP(n) ((n) + 2 * LOC_PAD)

/* Never run: its required size tells the host LOC_PAD. */
__attribute__((reqd_work_group_size(LOC_PAD, 1, 1))) __kernel void local_cpu_pad(void) {}

/* The feature-major copy, MLC_V consecutive cells per work-item
 * (ceil(n_total / MLC_V) of them); the first also zeroes the padding. */
__kernel void local_transpose_cpu(__global const float *states, int n_total, __global float *st) {
    const int w = (int)get_global_id(0);
    const int i0 = w * MLC_V;
    if (i0 >= n_total)
        return;
    const size_t np = LOC_NP((size_t)n_total);
    if (w == 0)
        for (int s = 0; s < LOC_S; s++)
            for (int p = 0; p < LOC_PAD; p++)
                st[s * np + p] = st[s * np + LOC_PAD + n_total + p] = 0.0f;
    int ci[MLC_V];
    for (int l = 0; l < MLC_V; l++)
        ci[l] = min(i0 + l, n_total - 1);
    for (int s = 0; s < LOC_S; s++) {
        float t[MLC_V];
        for (int l = 0; l < MLC_V; l++)
            t[l] = states[(size_t)ci[l] * LOC_S + s];
        __global float *dst = st + s * np + LOC_PAD + i0;
        if (i0 + MLC_V <= n_total)
            mlc_vstore(mlc_vload(0, t), 0, dst);
        else
            for (int l = 0; i0 + l < n_total; l++)
                dst[l] = t[l];
    }
}

__kernel void local_cpu(__global const float *states, __global const int4 *offsets, int n_offsets, int4 dims,
                        int4 origin, int4 extent, int n_cells, __global const int *band_count,
                        __global const float *P, __global const int *toff, __global float *out,
                        __global const float *stt) {
    const int w = (int)get_global_id(0);
    if (w >= mlc_items(extent) || n_cells <= 0)
        return;
    mlc_lanes L;
    mlc_lanes_of(w, dims, origin, extent, band_count, &L);
    const int *ci = L.ci;
    const int n_total = dims.x * dims.y * dims.z;
    const size_t np = LOC_NP((size_t)n_total);
    __global const float *pt = stt + LOC_PAD; /* value s of cell i: pt[s np + i] */
    mlc_f x[LOC_S], agg[LOC_S];
    mlc_gather(states, ci, LOC_S, LOC_S, x);
    for (int s = 0; s < LOC_S; s++)
        agg[s] = 0.0f;
    mlc_f lmax = -1e30f, lsum = 0.0f;
    for (int k = 0; k < n_offsets; k++) {
        const int4 o = offsets[k];
        const int ny = L.cy + o.y, nz = L.cz + o.z;
        if (ny < 0 || ny >= dims.y || nz < 0 || nz >= dims.z)
            continue;
        const mlc_i nx = L.cx + o.x, valid = L.kv & (nx >= 0) & (nx < dims.x);
        if (!any(valid))
            continue;
        /* lane l's neighbour: j0 + l (lane 0 always lies in the chunk) */
        const int j0 = L.ci[0] + o.x + dims.x * (o.y + dims.y * o.z);
        if (j0 < -LOC_PAD || j0 + MLC_V > n_total + LOC_PAD)
            continue; /* never: offsets stay within 100 cells */
        mlc_f n[LOC_S], dot = 0.0f;
        for (int s = 0; s < LOC_S; s++)
            n[s] = mlc_vload(0, pt + s * np + j0);
        for (int s = 0; s < LOC_S; s++)
            dot = fma(n[s], x[s], dot);
        mlc_f nm = select(lmax, fmax(lmax, dot), valid);
        mlc_f sc = mlc_exp(lmax - nm);
        mlc_f wt = select((mlc_f)0.0f, mlc_exp(dot - nm), valid);
        lmax = nm;
        lsum = fma(lsum, sc, wt);
        for (int s = 0; s < LOC_S; s++)
            agg[s] = fma(wt, n[s], agg[s] * sc);
    }
    mlc_f inv = select((mlc_f)0.0f, 1.0f / lsum, lsum > 0.0f);
    for (int s = 0; s < LOC_S; s++)
        agg[s] *= inv;
    mlc_f h1[LOC_H1], f[LOC_H2], h2[LOC_PH], p[LOC_S];
    mlc_dense(LOC_P(0), LOC_P(1), agg, LOC_S, h1, LOC_H1, MLC_ACT_GELU);
    mlc_dense(LOC_P(2), LOC_P(3), h1, LOC_H1, f, LOC_H2, MLC_ACT_NONE);
    mlc_dense3(LOC_P(4), LOC_P(5), x, LOC_S, f, LOC_H2, f, 0, h2, LOC_PH, MLC_ACT_GELU);
    mlc_dense(LOC_P(6), LOC_P(7), h2, LOC_PH, p, LOC_S, MLC_ACT_NONE);
    mlc_layernorm(p, LOC_S, LOC_P(10), LOC_P(11));
    const float alpha = LOC_P(8)[0], beta = LOC_P(9)[0];
    for (int s = 0; s < LOC_S; s++)
        p[s] = fma(alpha, x[s], beta * p[s]);
    mlc_store_cells(out, LOC_S, LOC_S, p, L.cc, L.store, L.keep);
}
