/* Functional expert, CPU-shaped (moelat_cpu_math.cl, cnf_cpu.cl): work-item w
 * computes MLC_V cells of a chunk row (mlc_row_cells), one per vector
 * lane, the whole expert in one kernel. It computes the same function as
 * functional_output (functional.cl's header) from the same per-step
 * projections, laid out feature-major here (functional_project_cpu):
 * feature f of cell i at proj[f FNC_NP + FNC_PAD + i], FNC_NP =
 * n_total + 2 FNC_PAD, then the step's constants C = A_m W_2 and
 * c = A_m b_2 (functional_prepare, given FNC_NP as its row count). The
 * lanes' neighbours at one offset are consecutive cells of one row, so
 * each feature of h_j is one contiguous vector load (a gather of rows
 * 2 hd + md floats apart ran at a tenth of the speed on PoCL); lanes
 * whose neighbour lies outside the lattice read a finite neighbour value
 * or the zero padding and take no weight:
 *   h_j = GELU(Pn_j + W_x x + b), e_j = a_2 . tanh(C h_j + c + A_x x + a_b) + a_2b,
 *   M = W_2 (sum_j softmax_j(e_j) h_j) + b_2,
 * the softmax online per lane. Same arguments as functional_output;
 * enqueued with mlc_items(extent) work-items. */

/* Padding of each feature row: a neighbour's x is at most 100 cells off
 * (r <= 100), and a row's last work-item reaches MLC_V - 1 past it. */
#define FNC_PAD 128
#define FNC_NP(n) ((n) + 2 * FNC_PAD)

/* Never run: its required size tells the host FNC_PAD. */
__attribute__((reqd_work_group_size(FNC_PAD, 1, 1))) __kernel void functional_cpu_pad(void) {}

/* proj (feature-major) = Wp states^T for MLC_V consecutive cells of the
 * lattice per work-item (ceil(n_total / MLC_V) of them); the first also
 * zeroes the padding. */
__kernel void functional_project_cpu(__global const float *states, int n_total, __global const float *wp,
                                     __global float *proj) {
    const int w = (int)get_global_id(0);
    const int i0 = w * MLC_V;
    if (i0 >= n_total)
        return;
    const size_t np = FNC_NP((size_t)n_total);
    if (w == 0)
        for (int f = 0; f < FN_PW; f++)
            for (int p = 0; p < FNC_PAD; p++)
                proj[f * np + p] = proj[f * np + FNC_PAD + n_total + p] = 0.0f;
    int ci[MLC_V];
    for (int l = 0; l < MLC_V; l++)
        ci[l] = min(i0 + l, n_total - 1);
    mlc_f x[FN_S];
    mlc_gather(states, ci, FN_S, FN_S, x);
    for (int f = 0; f < FN_PW; f++) {
        __global const float *row = wp + (size_t)f * FN_S;
        mlc_f acc = 0.0f;
        for (int s = 0; s < FN_S; s++)
            acc = fma(row[s], x[s], acc);
        __global float *dst = proj + f * np + FNC_PAD + i0;
        if (i0 + MLC_V <= n_total) {
            mlc_vstore(acc, 0, dst);
        } else {
            float t[MLC_V];
            mlc_vstore(acc, 0, t);
            for (int l = 0; i0 + l < n_total; l++)
                dst[l] = t[l];
        }
    }
}

__kernel void functional_cpu(__global const float *states, __global const int4 *offsets, int n_offsets, int4 dims,
                             int4 origin, int4 extent, int n_cells, __global const int *band_count,
                             __global const float *band_mean, __global const float *band_absmean,
                             __global const float *ext, int has_ext, __global const float *proj,
                             __global const float *P, __global const int *toff, __global float *out) {
    const int w = (int)get_global_id(0);
    if (w >= mlc_items(extent) || n_cells <= 0)
        return;
    mlc_lanes L;
    mlc_lanes_of(w, dims, origin, extent, band_count, &L);
    const int n_total = dims.x * dims.y * dims.z;
    const size_t np = FNC_NP((size_t)n_total);
    __global const float *pt = proj + FNC_PAD; /* feature f of cell i: pt[f np + i] */

    /* ---- 1. edges ---- */
    __global const float *consts = proj + np * FN_PW;
    mlc_f qx[FN_HD], dq[FN_MD];
    {
        /* the lanes' own cells are consecutive too */
        const int i0 = L.ci[0];
        __global const float *b0 = FN_P(FN_MC0_B), *ab = FN_P(FN_AT0_B);
        for (int i = 0; i < FN_HD; i++)
            qx[i] = mlc_vload(0, pt + (FN_HD + i) * np + i0) + b0[i];
        for (int q = 0; q < FN_MD; q++)
            dq[q] = mlc_vload(0, pt + (2 * FN_HD + q) * np + i0) + (consts[FN_MD * FN_HD + q] + ab[q]);
    }
    __global const float *C = consts, *a2 = FN_P(FN_AT2_W);
    const float e0 = FN_P(FN_AT2_B)[0];
    const int x0 = origin.x + (w % ((extent.x + MLC_V - 1) / MLC_V)) * MLC_V; /* lane 0's x */
    mlc_f lmax = -1e30f, lsum = 0.0f, hb[FN_HD];
    for (int i = 0; i < FN_HD; i++)
        hb[i] = 0.0f;
    for (int k = 0; k < n_offsets; k++) {
        const int4 o = offsets[k];
        const int ny = L.cy + o.y, nz = L.cz + o.z;
        if (ny < 0 || ny >= dims.y || nz < 0 || nz >= dims.z)
            continue;
        const mlc_i nx = L.cx + o.x, valid = L.kv & (nx >= 0) & (nx < dims.x);
        if (!any(valid))
            continue;
        const int j0 = x0 + o.x + dims.x * (ny + dims.y * nz); /* lane l's neighbour: j0 + l */
        if (j0 < -FNC_PAD || j0 + MLC_V > n_total + FNC_PAD)
            continue; /* never: offsets stay within 100 cells */
        mlc_f h[FN_HD];
        for (int i = 0; i < FN_HD; i++)
            h[i] = mlc_gelu(mlc_vload(0, pt + i * np + j0) + qx[i]);
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
    mlc_gather(states, L.ci, FN_S, FN_S, x);
    mlc_gather(band_absmean, L.cc, FN_S, FN_S, a);
    mlc_f ex[FN_E > 0 ? FN_E : 1];
    {
        int on_face[MLC_V], ei[MLC_V];
        for (int l = 0; l < MLC_V; l++) {
            on_face[l] = L.cz == 0;
            ei[l] = L.ci[l] % (dims.x * dims.y);
        }
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
    mlc_gather(band_mean, L.cc, FN_S, FN_S, a);
    for (int s = 0; s < FN_S; s++)
        a[s] = select((mlc_f)0.0f, a[s], L.kv);
    cnfc_integrate(P, toff, FN_CNF, x, a);
    for (int s = 0; s < FN_S; s++)
        rin[FN_S + s] = g * x[s];
    mlc_dense(FN_P(FN_RP0_W), FN_P(FN_RP0_B), rin, 2 * FN_S, z, FN_S, MLC_ACT_NONE);
    mlc_layernorm(z, FN_S, FN_P(FN_RP1_G), FN_P(FN_RP1_B));
    for (int s = 0; s < FN_S; s++)
        z[s] = mlc_gelu(z[s]);
    mlc_store_cells(out, FN_S, FN_S, z, L.cc, L.store, L.keep);
}
