/* Local expert, CPU-shaped (moelat_cpu_math.cl): work-item w computes chunk
 * cells w MLC_V .. w MLC_V + MLC_V - 1, one per vector lane. The lanes
 * walk the band's offsets together (one stencil for every cell): each
 * neighbour row n_j is gathered once into a private array, its score
 * n_j . x and the online softmax (running max per lane) update the
 * weighted sum agg in the same pass, so the neighbour count never sizes
 * a buffer. Then the MLPs of MODEL.md with each weight read once for the
 * lanes. Tensor order is local_expert.c's enum. Same arguments as
 * local_expert; enqueued with mlc_items(extent) work-items. */
__kernel void local_cpu(__global const float *states, __global const int4 *offsets, int n_offsets, int4 dims,
                        int4 origin, int4 extent, int n_cells, __global const int *band_count,
                        __global const float *P, __global const int *toff, __global float *out) {
    const int w = (int)get_global_id(0);
    if (w >= mlc_items(extent) || n_cells <= 0)
        return;
    mlc_lanes L;
    mlc_lanes_of(w, dims, origin, extent, band_count, &L);
    const int *ci = L.ci;
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
        int idx[MLC_V];
        mlc_vstore(select(L.cidx, nx + dims.x * (ny + dims.y * nz), valid), 0, idx);
        mlc_f n[LOC_S], dot = 0.0f;
        mlc_gather(states, idx, LOC_S, LOC_S, n);
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
