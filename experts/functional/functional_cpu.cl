/* Functional expert, CPU-shaped (cpu_math.cl, cnf_cpu.cl): work-item w
 * computes chunk cells w MLC_V .. w MLC_V + MLC_V - 1, one per vector
 * lane, the whole expert in one kernel. It reads the per-step
 * projections of functional.cl (proj: a row [W_n n_i | W_x n_i | A_x n_i]
 * per cell, then C = A_m W_2 and c = A_m b_2) and computes the same
 * function as functional_output:
 *   h_j = GELU(Pn_j + W_x x + b), e_j = a_2 . tanh(C h_j + c + A_x x + a_b) + a_2b,
 *   M = W_2 (sum_j softmax_j(e_j) h_j) + b_2,
 * the softmax online per lane. The lanes walk the band's offsets
 * together (one stencil for every cell); a lane whose neighbour is
 * outside the lattice takes no weight for that offset. Same arguments as
 * functional_output; enqueued with ceil(n_cells / MLC_V) work-items. */

/* The lanes' h_j rows: lane l reads row idx[l] of proj (a gather). */
inline void fnc_edge_h(__global const float *proj, const int *idx, const mlc_f *qx, mlc_f *h) {
    for (int i = 0; i < FN_HD; i++) {
        float t[MLC_V];
        for (int l = 0; l < MLC_V; l++)
            t[l] = proj[(size_t)idx[l] * FN_PW + i];
        h[i] = mlc_gelu(mlc_vload(0, t) + qx[i]);
    }
}

__kernel void functional_cpu(__global const float *states, __global const int4 *offsets, int n_offsets, int4 dims,
                             int4 origin, int4 extent, int n_cells, __global const int *band_count,
                             __global const float *band_mean, __global const float *band_absmean,
                             __global const float *ext, int has_ext, __global const float *proj,
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

    /* ---- 1. edges ---- */
    __global const float *consts = proj + (size_t)dims.x * dims.y * dims.z * FN_PW;
    mlc_f qx[FN_HD], dq[FN_MD];
    {
        mlc_f pr[FN_PW];
        mlc_gather(proj, ci, FN_PW, FN_PW, pr);
        __global const float *b0 = FN_P(FN_MC0_B), *ab = FN_P(FN_AT0_B);
        for (int i = 0; i < FN_HD; i++)
            qx[i] = pr[FN_HD + i] + b0[i];
        for (int q = 0; q < FN_MD; q++)
            dq[q] = pr[2 * FN_HD + q] + (consts[FN_MD * FN_HD + q] + ab[q]);
    }
    __global const float *C = consts, *a2 = FN_P(FN_AT2_W);
    const float e0 = FN_P(FN_AT2_B)[0];
    mlc_f lmax = -1e30f, lsum = 0.0f, hb[FN_HD];
    for (int i = 0; i < FN_HD; i++)
        hb[i] = 0.0f;
    for (int k = 0; k < n_offsets; k++) {
        const int4 o = offsets[k];
        mlc_i nx = cx + o.x, ny = cy + o.y, nz = cz + o.z;
        mlc_i valid = kv & (nx >= 0) & (nx < dims.x) & (ny >= 0) & (ny < dims.y) & (nz >= 0) & (nz < dims.z);
        if (!any(valid))
            continue;
        int idx[MLC_V];
        mlc_vstore(select(cidx, nx + dims.x * (ny + dims.y * nz), valid), 0, idx);
        mlc_f h[FN_HD];
        fnc_edge_h(proj, idx, qx, h);
        mlc_f e = e0;
        for (int q = 0; q < FN_MD; q++) {
            __global const float *cr = C + q * FN_HD;
            mlc_f t = dq[q];
            for (int i = 0; i < FN_HD; i++)
                t = fma(cr[i], h[i], t);
            e = fma(a2[q], mlc_tanh(t), e);
        }
        /* Online softmax per lane; a lane without this neighbour keeps its sums. */
        mlc_f nm = select(lmax, fmax(lmax, e), valid);
        mlc_f sc = mlc_exp(lmax - nm);
        mlc_f wt = select((mlc_f)0.0f, mlc_exp(e - nm), valid);
        lmax = nm;
        lsum = fma(lsum, sc, wt);
        for (int i = 0; i < FN_HD; i++)
            hb[i] = fma(wt, h[i], hb[i] * sc);
    }
    mlc_f inv = select((mlc_f)0.0f, 1.0f / lsum, lsum > 0.0f);
    for (int i = 0; i < FN_HD; i++)
        hb[i] *= inv;
    mlc_f M[FN_MD];
    mlc_dense(FN_P(FN_MC2_W), FN_P(FN_MC2_B), hb, FN_HD, M, FN_MD, MLC_ACT_NONE);

    /* ---- 2. gate g and the GRU-like update ---- */
    mlc_f x[FN_S], a[FN_S];
    mlc_gather(states, ci, FN_S, FN_S, x);
    mlc_gather(band_absmean, cc, FN_S, FN_S, a);
    mlc_f ex[FN_E > 0 ? FN_E : 1];
    {
        int on_face[MLC_V], ei[MLC_V];
        mlc_vstore(cz == 0, 0, on_face);
        mlc_vstore(cx + dims.x * cy, 0, ei);
        for (int i = 0; i < FN_E; i++) {
            float t[MLC_V];
            for (int l = 0; l < MLC_V; l++)
                t[l] = has_ext && on_face[l] ? ext[(size_t)ei[l] * FN_E + i] : 0.0f;
            ex[i] = mlc_vload(0, t);
        }
    }
    mlc_f g;
    {
        mlc_f hg[FN_S / 2];
        mlc_dense3(FN_P(FN_G0_W), FN_P(FN_G0_B), x, FN_S, a, FN_S, a, 0, hg, FN_S / 2, MLC_ACT_GELU);
        mlc_dense(FN_P(FN_G2_W), FN_P(FN_G2_B), hg, FN_S / 2, &g, 1, MLC_ACT_SIGMOID);
    }
    mlc_f z[FN_S], r[FN_S], rin[2 * FN_S];
    mlc_dense3(FN_P(FN_UG_W), FN_P(FN_UG_B), x, FN_S, M, FN_MD, ex, FN_E, z, FN_S, MLC_ACT_SIGMOID);
    mlc_dense3(FN_P(FN_RG_W), FN_P(FN_RG_B), x, FN_S, M, FN_MD, ex, FN_E, r, FN_S, MLC_ACT_SIGMOID);
    for (int s = 0; s < FN_S; s++)
        r[s] *= x[s];
    mlc_dense3(FN_P(FN_CN_W), FN_P(FN_CN_B), r, FN_S, M, FN_MD, ex, FN_E, rin, FN_S, MLC_ACT_TANH);
    for (int s = 0; s < FN_S; s++)
        rin[s] = (1.0f - g) * fma(z[s], rin[s] - x[s], x[s]);

    /* ---- 3. CNF and E_F = GELU(LN(L(2S->S)([(1 - g) gnn, g cnf]))) ---- */
    mlc_gather(band_mean, cc, FN_S, FN_S, a);
    for (int s = 0; s < FN_S; s++)
        a[s] = select((mlc_f)0.0f, a[s], kv);
    cnfc_integrate(P, toff, FN_CNF, x, a);
    for (int s = 0; s < FN_S; s++)
        rin[FN_S + s] = g * x[s];
    mlc_dense(FN_P(FN_RP0_W), FN_P(FN_RP0_B), rin, 2 * FN_S, z, FN_S, MLC_ACT_NONE);
    mlc_layernorm(z, FN_S, FN_P(FN_RP1_G), FN_P(FN_RP1_B));
    for (int s = 0; s < FN_S; s++)
        z[s] = mlc_gelu(z[s]);
    mlc_store_cells(out, FN_S, FN_S, z, w, n_cells, keep);
}
