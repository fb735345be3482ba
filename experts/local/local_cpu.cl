/* Local expert, CPU-shaped (cpu_math.cl): work-item w computes chunk
 * cells w MLC_V .. w MLC_V + MLC_V - 1, one per vector lane. The lanes
 * walk the band's offsets together (one stencil for every cell): each
 * neighbour row n_j is gathered once into a private array, its score
 * n_j . x and the online softmax (running max per lane) update the
 * weighted sum agg in the same pass, so the neighbour count never sizes
 * a buffer. Then the MLPs of MODEL.md with each weight read once for the
 * lanes. Tensor order is local_expert.c's enum. Same arguments as
 * local_expert; enqueued with ceil(n_cells / MLC_V) work-items. */
__kernel void local_cpu(__global const float *states, __global const int4 *offsets, int n_offsets, int4 dims,
                        int4 origin, int4 extent, int n_cells, __global const int *band_count,
                        __global const float *P, __global const int *toff, __global float *out) {
    const int w = (int)get_global_id(0);
    if (w * MLC_V >= n_cells)
        return;
    mlc_i c = mlc_chunk_cells(w, n_cells), cx, cy, cz;
    mlc_cell_xyz(c, origin, extent, &cx, &cy, &cz);
    const mlc_i cidx = cx + dims.x * (cy + dims.y * cz);
    int ci[MLC_V], cc[MLC_V], keep[MLC_V];
    mlc_vstore(cidx, 0, ci);
    mlc_vstore(c, 0, cc);
    for (int l = 0; l < MLC_V; l++)
        keep[l] = band_count[cc[l]] > 0;
    const mlc_i kv = mlc_vload(0, keep) != 0;
    mlc_f x[LOC_S], agg[LOC_S];
    mlc_gather(states, ci, LOC_S, LOC_S, x);
    for (int s = 0; s < LOC_S; s++)
        agg[s] = 0.0f;
    mlc_f lmax = -1e30f, lsum = 0.0f;
    for (int k = 0; k < n_offsets; k++) {
        const int4 o = offsets[k];
        mlc_i nx = cx + o.x, ny = cy + o.y, nz = cz + o.z;
        mlc_i valid = kv & (nx >= 0) & (nx < dims.x) & (ny >= 0) & (ny < dims.y) & (nz >= 0) & (nz < dims.z);
        if (!any(valid))
            continue;
        int idx[MLC_V];
        mlc_vstore(select(cidx, nx + dims.x * (ny + dims.y * nz), valid), 0, idx);
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
    mlc_store_cells(out, LOC_S, LOC_S, p, w, n_cells, keep);
}
