/* Functional expert, batched: one work-group of MOELAT_WG lanes per cell.
 *
 * functional_project runs once per step over the whole lattice, one
 * work-item per (cell, output): the per-cell projections of every state
 * n_i, in three planes of the proj buffer (so that a neighbour's row is
 * hd contiguous floats):
 *   Pn [N][hd] = W_n n_i + b     (n_j columns of message_creator.0)
 *   Px [N][hd] = W_x n_i         (its x columns)
 *   Pa [N][md] = A_x n_i + a_b   (x columns of attention_network.0)
 * An edge then costs only the add, GELU and the two small layers.
 *
 * functional_output does everything else for one chunk cell in one kernel,
 * its vectors in __local memory (large private arrays miscompute on
 * NVIDIA's OpenCL, see tools/bench/NOTES.md):
 *   1. messages and attention, lanes over edges in tiles of MOELAT_WG: each
 *      lane forms its edge's m_j (md floats, private) and logit e_j with
 *      the small weights staged in local memory (every edge reads them);
 *      an online softmax across tiles; M accumulated from a local tile of
 *      w_j m_j by lanes over (output, slice of the tile's edges);
 *   2. gate g and the GRU, split-row dense layers (ml_wg_dense_cat_split:
 *      8 lanes per weight row, coalesced reads);
 *   3. the CNF (cnf_wg_integrate) and the result layer.
 * The message phase's local arrays and those of phases 2-3 share memory.
 * Tensor indices match functional_expert.c's enum. */

#define FN_S MOELAT_S
#define FN_E MOELAT_E
#define FN_HD MOELAT_H_hd
#define FN_MD MOELAT_H_md

#define FN_G0_W 0
#define FN_G0_B 1
#define FN_G2_W 2
#define FN_G2_B 3
#define FN_MC0_W 4
#define FN_MC0_B 5
#define FN_MC2_W 6
#define FN_MC2_B 7
#define FN_AT0_W 8
#define FN_AT0_B 9
#define FN_AT2_W 10
#define FN_AT2_B 11
#define FN_UG_W 12
#define FN_UG_B 13
#define FN_RG_W 14
#define FN_RG_B 15
#define FN_CN_W 16
#define FN_CN_B 17
#define FN_CNF 18
#define FN_RP0_W 32
#define FN_RP0_B 33
#define FN_RP1_G 34
#define FN_RP1_B 35
#define FN_P(i) (P + toff[i])

/* Projection floats per cell (all three planes). */
#define FN_PW (2 * FN_HD + FN_MD)

/* Sizes rounded up to 4 floats: every local region starts 16-byte aligned,
 * so that runs of 4 weights can load as one 128-bit access. */
#define FN_A4(n) (((n) + 3) / 4 * 4)
#define FN_MAX(a, b) ((a) > (b) ? (a) : (b))

/* m_j of a lane lives in registers when md is small; beyond 32 floats it
 * lives in the lane's row of the local tile instead (private arrays stay
 * small), which needs a row for every lane. */
#if FN_MD <= 32
#define FN_M_PRIVATE 1
#else
#define FN_M_PRIVATE 0
#endif

/* The tile of w_j m_j: rows of md + 1 floats (an odd stride when md is a
 * power of two: a lane writing its row and lanes reading one column hit
 * distinct banks). At most FN_TILE_CAP floats, so the optimized preset
 * (WG 128, md 32) stays near 22 KB of local memory in all: the tile then
 * holds half the lanes' edges and is summed in two passes. */
#define FN_TS (FN_MD + 1)
#define FN_TILE_CAP 2176
#if !FN_M_PRIVATE || MOELAT_WG * FN_TS <= FN_TILE_CAP || MOELAT_WG < 2
#define FN_TROWS MOELAT_WG
#elif (MOELAT_WG / 2) * FN_TS <= FN_TILE_CAP || MOELAT_WG < 4
#define FN_TROWS (MOELAT_WG / 2)
#elif (MOELAT_WG / 4) * FN_TS <= FN_TILE_CAP || MOELAT_WG < 8
#define FN_TROWS (MOELAT_WG / 4)
#else
#define FN_TROWS (MOELAT_WG / 8)
#endif
#define FN_NPASS (MOELAT_WG / FN_TROWS)
/* Accumulating lanes: lane l sums output l % md over the tile rows
 * part, part + NP, ... with part = l / md (NP slices of the edges). When md
 * exceeds the lanes, a lane owns outputs l, l + WG, ... (NACC of them). */
#define FN_NP (MOELAT_WG >= FN_MD ? MOELAT_WG / FN_MD : 1)
#define FN_NACC ((FN_MD + MOELAT_WG - 1) / MOELAT_WG)

/* Local layout in floats. Persistent: red, x, M, ext. */
#define FN_O_RED 0
#define FN_O_X (FN_O_RED + FN_A4(MOELAT_WG))
#define FN_O_M (FN_O_X + FN_A4(FN_S))
#define FN_O_EXT (FN_O_M + FN_A4(FN_MD))
#define FN_O_U (FN_O_EXT + FN_A4(FN_E))
/* Phase 1 (messages), from FN_O_U: W2t = message_creator.2's weight
 * transposed to [hd][md] (a lane's step i reads md consecutive floats),
 * Am = attention_network.0's m columns [md][md], W_x x, A_x x + a_b, the
 * message bias, attention_network.2's weights, the tile. */
#define FN_O_W2T FN_O_U
#define FN_O_AM (FN_O_W2T + FN_A4(FN_HD * FN_MD))
#define FN_O_QX (FN_O_AM + FN_A4(FN_MD * FN_MD))
#define FN_O_QA (FN_O_QX + FN_A4(FN_HD))
#define FN_O_MB (FN_O_QA + FN_A4(FN_MD))
#define FN_O_A2 (FN_O_MB + FN_A4(FN_MD))
#define FN_O_TILE (FN_O_A2 + FN_A4(FN_MD))
/* The tile also holds the NP partial sums of M at the end. */
#define FN_TILE_N FN_MAX(FN_TROWS * FN_TS, FN_NP * FN_MD)
#define FN_END1 (FN_O_TILE + FN_A4(FN_TILE_N))
/* Phases 2-3, from FN_O_U: act, gate hidden, z, rr (then rr * x), cand
 * (then the result layer's output), rin = [(1 - g) gnn, g cnf], the CNF's
 * v and neighbour mean, its work. */
#define FN_O_ACT FN_O_U
#define FN_O_HG (FN_O_ACT + FN_A4(FN_S))
#define FN_O_Z (FN_O_HG + FN_A4(FN_S / 2))
#define FN_O_RR (FN_O_Z + FN_A4(FN_S))
#define FN_O_CAND (FN_O_RR + FN_A4(FN_S))
#define FN_O_RIN (FN_O_CAND + FN_A4(FN_S))
#define FN_O_V (FN_O_RIN + FN_A4(2 * FN_S))
#define FN_O_MEAN (FN_O_V + FN_A4(FN_S))
#define FN_O_WORK (FN_O_MEAN + FN_A4(FN_S))
/* Partial sums of the split-row dense layers (widest: S outputs). */
#define FN_O_DPART (FN_O_WORK + FN_A4(CNF_WG_WORK))
#define FN_END2 (FN_O_DPART + FN_A4(ML_DENSE_PART(FN_S)))
#define FN_LOCAL FN_MAX(FN_END1, FN_END2)

__kernel void functional_project(__global const float *states, int n_total,
                                 __global const float *P, __global const int *toff,
                                 __global float *proj) {
    size_t id = get_global_id(0);
    size_t i = id / FN_PW;
    int o = (int)(id % FN_PW);
    if (i >= (size_t)n_total)
        return;
    __global const float *n = states + i * FN_S;
    __global const float *row;
    __global float *dst;
    float acc;
    if (o < FN_HD) { /* Pn */
        row = FN_P(FN_MC0_W) + (size_t)o * (2 * FN_S);
        acc = FN_P(FN_MC0_B)[o];
        dst = proj + i * FN_HD + o;
    } else if (o < 2 * FN_HD) { /* Px */
        o -= FN_HD;
        row = FN_P(FN_MC0_W) + (size_t)o * (2 * FN_S) + FN_S;
        acc = 0.0f;
        dst = proj + (size_t)n_total * FN_HD + i * FN_HD + o;
    } else { /* Pa */
        o -= 2 * FN_HD;
        row = FN_P(FN_AT0_W) + (size_t)o * (FN_MD + FN_S) + FN_MD;
        acc = FN_P(FN_AT0_B)[o];
        dst = proj + (size_t)n_total * (2 * FN_HD) + i * FN_MD + o;
    }
    for (int s = 0; s < FN_S; s++)
        acc = fma(row[s], n[s], acc);
    *dst = acc;
}

#if FN_M_PRIVATE
#define FN_M(o) m[o]
#else
#define FN_M(o) tile[lane * FN_TS + (o)]
#endif

/* One step of an edge's message layer: hidden unit i with pre-activation v
 * feeds all md outputs. */
#define FN_MSG_STEP(i, v)                                                  \
    do {                                                                   \
        float h_ = ml_gelu(v);                                             \
        __local const float *w_ = W2t + (i) * FN_MD;                       \
        for (int o_ = 0; o_ < FN_MD; o_++)                                 \
            FN_M(o_) = fma(w_[o_], h_, FN_M(o_));                          \
    } while (0)

/* The whole expert, one chunk cell per work-group; writes chunk->out (the
 * name says so; the tests look it up). The required size lets the compiler
 * budget registers for exactly MOELAT_WG lanes. */
__attribute__((reqd_work_group_size(MOELAT_WG, 1, 1)))
__kernel void functional_output(
    __global const float *states, __global const int4 *offsets, int n_offsets, int4 dims,
    int4 origin, int4 extent, int n_cells, __global const int *band_count,
    __global const float *band_mean, __global const float *band_absmean,
    __global const float *ext, int has_ext, __global const float *proj, __global const float *P,
    __global const int *toff, __global float *out) {
    __local float lm[FN_LOCAL] __attribute__((aligned(16)));
    __local float *red = lm + FN_O_RED;
    __local float *x = lm + FN_O_X;
    __local float *M = lm + FN_O_M;
    __local float *ex = lm + FN_O_EXT;
    int lane = ml_lane();
    int c = (int)get_group_id(0);
    /* An empty band (the expert is not run) writes zeros. The cell still
     * goes through every barrier with no edges (no lane returns early: a
     * return before barriers is fragile in work-group compilers such as
     * PoCL's, even when the whole group takes it); global = n_cells x WG,
     * so c < n_cells. */
    __global float *o = out + (size_t)c * FN_S;
    bool empty = band_count[c] <= 0;
    if (empty)
        n_offsets = 0;
    int4 cell = ml_chunk_cell(c, origin, extent);
    int ci = ml_cell_index(dims, cell);
    int n_total = dims.x * dims.y * dims.z;

    /* ---- 1. messages and attention ---- */
    __local float *W2t = lm + FN_O_W2T;
    __local float *Am = lm + FN_O_AM;
    __local float *qx = lm + FN_O_QX;
    __local float *qa = lm + FN_O_QA;
    __local float *mb = lm + FN_O_MB;
    __local float *a2 = lm + FN_O_A2;
    __local float *tile = lm + FN_O_TILE;
    {
        __global const float *xg = states + (size_t)ci * FN_S;
        for (int s = lane; s < FN_S; s += MOELAT_WG)
            x[s] = xg[s];
        bool on_face = has_ext && cell.z == 0;
        for (int i = lane; i < FN_E; i += MOELAT_WG)
            ex[i] = on_face ? ext[(size_t)(cell.x + dims.x * cell.y) * FN_E + i] : 0.0f;
        __global const float *px = proj + (size_t)n_total * FN_HD + (size_t)ci * FN_HD;
        __global const float *pa = proj + (size_t)n_total * (2 * FN_HD) + (size_t)ci * FN_MD;
        for (int i = lane; i < FN_HD; i += MOELAT_WG)
            qx[i] = px[i];
        for (int i = lane; i < FN_MD; i += MOELAT_WG) {
            qa[i] = pa[i];
            mb[i] = FN_P(FN_MC2_B)[i];
            a2[i] = FN_P(FN_AT2_W)[i];
        }
        /* Weights read in their storage order (coalesced), written
         * transposed; once per cell against hundreds of edges. */
        __global const float *W2 = FN_P(FN_MC2_W);
        for (int t = lane; t < FN_HD * FN_MD; t += MOELAT_WG)
            W2t[(t % FN_HD) * FN_MD + t / FN_HD] = W2[t];
        __global const float *A = FN_P(FN_AT0_W);
        for (int t = lane; t < FN_MD * FN_MD; t += MOELAT_WG)
            Am[t] = A[(size_t)(t / FN_MD) * (FN_MD + FN_S) + t % FN_MD];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float e0 = FN_P(FN_AT2_B)[0];
    __global const float *projn = proj;
    float run_max = -INFINITY; /* the same in every lane */
    float psum = 0.0f;         /* this lane's share of the softmax denominator */
    float acc[FN_NACC];
    for (int a = 0; a < FN_NACC; a++)
        acc[a] = 0.0f;
#if FN_M_PRIVATE
    float m[FN_MD];
#endif
    for (int base = 0; base < n_offsets; base += MOELAT_WG) {
#if !FN_M_PRIVATE
        /* m_j is formed in the tile rows: the previous tile's sums must be
         * read first. */
        barrier(CLK_LOCAL_MEM_FENCE);
#endif
        int k = base + lane;
        int j = k < n_offsets ? ml_neighbour_index(dims, cell, offsets[k]) : -1;
        float e = -INFINITY;
        if (j >= 0) {
            /* m_j = L(hd->md)(GELU(Pn_j + W_x x)) */
            for (int q = 0; q < FN_MD; q++)
                FN_M(q) = mb[q];
            __global const float *pj = projn + (size_t)j * FN_HD;
#if FN_HD % 4 == 0
            /* Rows of hd floats start 16-byte aligned: 128-bit loads. */
            __global const float4 *pj4 = (__global const float4 *)pj;
            __local const float4 *qx4 = (__local const float4 *)qx;
            for (int i4 = 0; i4 < FN_HD / 4; i4++) {
                float4 v = pj4[i4] + qx4[i4];
                FN_MSG_STEP(4 * i4 + 0, v.x);
                FN_MSG_STEP(4 * i4 + 1, v.y);
                FN_MSG_STEP(4 * i4 + 2, v.z);
                FN_MSG_STEP(4 * i4 + 3, v.w);
            }
#else
            for (int i = 0; i < FN_HD; i++)
                FN_MSG_STEP(i, pj[i] + qx[i]);
#endif
            /* e_j = L(md->1)(tanh(A_m m_j + A_x x + a_b)) */
            e = e0;
            for (int q = 0; q < FN_MD; q++) {
                __local const float *row = Am + q * FN_MD;
                float t = qa[q];
                for (int r = 0; r < FN_MD; r++)
                    t = fma(row[r], FN_M(r), t);
                e = fma(a2[q], tanh(t), e);
            }
        }
        /* Online softmax: the tile's logits join a running maximum common
         * to all lanes. */
        float tmax = ml_wg_max(e, red);
        float nm = fmax(run_max, tmax);
        /* 0 on the first tile with a neighbour; 1 while none was seen (the
         * tile then adds zeros). No lane skips the barriers below. */
        float scale = nm == -INFINITY ? 1.0f : exp(run_max - nm);
        float w = j >= 0 ? exp(e - nm) : 0.0f;
        psum = psum * scale + w;
        run_max = nm;
        for (int p = 0; p < FN_NPASS; p++) {
            int row = lane - p * FN_TROWS;
            if (row >= 0 && row < FN_TROWS) {
                /* Written as 0 for a lane without an edge: its m is unset. */
                for (int q = 0; q < FN_MD; q++)
                    tile[row * FN_TS + q] = j >= 0 ? w * FN_M(q) : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int a = 0; a < FN_NACC; a++) {
                int idx = lane + a * MOELAT_WG;
                int q = idx % FN_MD, part = idx / FN_MD;
                if (part < FN_NP) {
                    float s = 0.0f;
                    for (int r = part; r < FN_TROWS; r += FN_NP)
                        s += tile[r * FN_TS + q];
                    acc[a] = (p == 0 ? acc[a] * scale : acc[a]) + s;
                }
            }
            /* The next pass overwrites the tile; the next tile's ml_wg_max
             * starts with a barrier. */
            if (p + 1 < FN_NPASS)
                barrier(CLK_LOCAL_MEM_FENCE);
        }
    }
    {
        float total = ml_wg_sum(psum, red); /* barriers: the tile is free */
        for (int a = 0; a < FN_NACC; a++) {
            int idx = lane + a * MOELAT_WG;
            if (idx / FN_MD < FN_NP)
                tile[idx] = acc[a]; /* [part][md] */
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        float inv = total > 0.0f ? 1.0f / total : 0.0f;
        for (int q = lane; q < FN_MD; q += MOELAT_WG) {
            float s = 0.0f;
            for (int p = 0; p < FN_NP; p++)
                s += tile[p * FN_MD + q];
            M[q] = s * inv;
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* M complete; phase 1's memory is free */
    }

    /* ---- 2. gate and GRU ---- */
    __local float *act = lm + FN_O_ACT;
    __local float *hg = lm + FN_O_HG;
    __local float *z = lm + FN_O_Z;
    __local float *rr = lm + FN_O_RR;
    __local float *cand = lm + FN_O_CAND;
    __local float *rin = lm + FN_O_RIN;
    __local float *v = lm + FN_O_V;
    __local float *mean = lm + FN_O_MEAN;
    __local float *work = lm + FN_O_WORK;
    __local float *dpart = lm + FN_O_DPART;
    for (int s = lane; s < FN_S; s += MOELAT_WG) {
        act[s] = band_absmean[(size_t)c * FN_S + s];
        mean[s] = band_mean[(size_t)c * FN_S + s];
        v[s] = x[s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    /* g = sigma(L(S/2->1)(GELU(L(2S->S/2)([x, act])))) */
    ml_wg_dense_cat_split(FN_P(FN_G0_W), FN_P(FN_G0_B), x, FN_S, act, FN_S, act, 0, hg, FN_S / 2,
                          ML_ACT_GELU, dpart);
    float gpart = 0.0f;
    for (int i = lane; i < FN_S / 2; i += MOELAT_WG)
        gpart = fma(FN_P(FN_G2_W)[i], hg[i], gpart);
    float g = ml_sigmoid(FN_P(FN_G2_B)[0] + ml_wg_sum(gpart, red));
    /* z, rr from [x, M, ext]; cand from [rr * x, M, ext]. */
    ml_wg_dense_cat_split(FN_P(FN_UG_W), FN_P(FN_UG_B), x, FN_S, M, FN_MD, ex, FN_E, z, FN_S,
                          ML_ACT_SIGMOID, dpart);
    ml_wg_dense_cat_split(FN_P(FN_RG_W), FN_P(FN_RG_B), x, FN_S, M, FN_MD, ex, FN_E, rr, FN_S,
                          ML_ACT_SIGMOID, dpart);
    for (int s = lane; s < FN_S; s += MOELAT_WG)
        rr[s] *= x[s];
    barrier(CLK_LOCAL_MEM_FENCE);
    ml_wg_dense_cat_split(FN_P(FN_CN_W), FN_P(FN_CN_B), rr, FN_S, M, FN_MD, ex, FN_E, cand, FN_S,
                          ML_ACT_TANH, dpart);
    for (int s = lane; s < FN_S; s += MOELAT_WG)
        rin[s] = (1.0f - g) * ((1.0f - z[s]) * x[s] + z[s] * cand[s]);

    /* ---- 3. CNF and E_F = GELU(LN(L(2S->S)([(1 - g) gnn, g cnf]))) ---- */
    barrier(CLK_LOCAL_MEM_FENCE);
    cnf_wg_integrate(P, toff, FN_CNF, v, mean, work, red);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = lane; s < FN_S; s += MOELAT_WG)
        rin[FN_S + s] = g * v[s];
    barrier(CLK_LOCAL_MEM_FENCE);
    ml_wg_dense_split(FN_P(FN_RP0_W), FN_P(FN_RP0_B), rin, 2 * FN_S, cand, FN_S, ML_ACT_NONE, dpart);
    ml_wg_layernorm(cand, FN_S, FN_P(FN_RP1_G), FN_P(FN_RP1_B), red);
    for (int s = lane; s < FN_S; s += MOELAT_WG)
        o[s] = empty ? 0.0f : ml_gelu(cand[s]);
}
