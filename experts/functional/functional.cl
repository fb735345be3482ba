/* Functional expert, batched. functional_project runs once per step over
 * the whole lattice: P_i = W_n n_i + b, with W_n the n_j columns of
 * message_creator.0. Per chunk, three passes with small private footprints
 * (large per-work-item arrays miscompute on NVIDIA's OpenCL at S = 64):
 * functional_messages (attention message M), functional_gru (gate and GRU)
 * and functional_output (CNF and result layer), through the chunk scratch. Tensor indices match functional_expert.c's enum. */

#define FN_S MOELAT_S
#define FN_E MOELAT_E
#define FN_HD MOELAT_H_hd
#define FN_MD MOELAT_H_md
#define FN_U (FN_S + FN_MD + FN_E)

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

/* Per-cell projections of every state n_i (once per step, whole lattice),
 * FN_PW floats per cell: [W_n n_i + b | W_x n_i | A_x n_i + a_b], with W_n
 * and W_x the neighbour and self columns of message_creator.0 and A_x the
 * self columns of attention_network.0. An edge then only adds and maps. */
#define FN_PW (2 * FN_HD + FN_MD)
/* Chunk scratch of one cell: [M (md) | (1 - g) gnn (S) | g]. */
#define FN_SCR (FN_MD + FN_S + 1)

__kernel void functional_project(__global const float *states, int n_total,
                                 __global const float *P, __global const int *toff,
                                 __global float *proj) {
    int i = (int)get_global_id(0);
    if (i >= n_total)
        return;
    __global const float *n = states + (size_t)i * FN_S;
    __global float *pr = proj + (size_t)i * FN_PW;
    __global const float *W = FN_P(FN_MC0_W);
    __global const float *b = FN_P(FN_MC0_B);
    for (int o = 0; o < FN_HD; o++) {
        __global const float *row = W + (size_t)o * (2 * FN_S);
        float pn = b[o], px = 0.0f;
        for (int s = 0; s < FN_S; s++) {
            pn = fma(row[s], n[s], pn);
            px = fma(row[FN_S + s], n[s], px);
        }
        pr[o] = pn;
        pr[FN_HD + o] = px;
    }
    __global const float *A = FN_P(FN_AT0_W);
    __global const float *ab = FN_P(FN_AT0_B);
    for (int o = 0; o < FN_MD; o++) {
        __global const float *row = A + (size_t)o * (FN_MD + FN_S) + FN_MD;
        float acc = ab[o];
        for (int s = 0; s < FN_S; s++)
            acc = fma(row[s], n[s], acc);
        pr[2 * FN_HD + o] = acc;
    }
}

/* Pass 1: the attention-weighted message M of every chunk cell (md floats
 * into the chunk's scratch), one pass over its band with an online softmax
 * of the attention logits. Split from pass 2 so that each kernel keeps a
 * small private footprint. */
__kernel void functional_messages(__global const float *states, __global const int4 *offsets,
                                  int n_offsets, int4 dims, int4 origin, int4 extent, int n_cells,
                                  __global const int *band_count, __global const float *proj,
                                  __global const float *P, __global const int *toff,
                                  __global float *msg) {
    int c = (int)get_global_id(0);
    if (c >= n_cells || band_count[c] <= 0)
        return;
    int4 cell = ml_chunk_cell(c, origin, extent);
    __global const float *self = proj + (size_t)ml_cell_index(dims, cell) * FN_PW;
    float qx[FN_HD]; /* W_x x */
    float qa[FN_MD]; /* A_x x + a_b */
    float M[FN_MD];
    for (int i = 0; i < FN_HD; i++)
        qx[i] = self[FN_HD + i];
    for (int i = 0; i < FN_MD; i++) {
        qa[i] = self[2 * FN_HD + i];
        M[i] = 0.0f;
    }
    __global const float *A = FN_P(FN_AT0_W);
    float run_max = -INFINITY, run_sum = 0.0f;
    for (int k = 0; k < n_offsets; k++) {
        int j = ml_neighbour_index(dims, cell, offsets[k]);
        if (j < 0)
            continue;
        __global const float *pj = proj + (size_t)j * FN_PW;
        float hid[FN_HD];
        for (int i = 0; i < FN_HD; i++)
            hid[i] = ml_gelu(pj[i] + qx[i]);
        float m[FN_MD];
        ml_dense(FN_P(FN_MC2_W), FN_P(FN_MC2_B), hid, FN_HD, m, FN_MD);
        float e = FN_P(FN_AT2_B)[0];
        __global const float *A2 = FN_P(FN_AT2_W);
        for (int i = 0; i < FN_MD; i++) {
            __global const float *row = A + (size_t)i * (FN_MD + FN_S);
            float acc = qa[i];
            for (int q = 0; q < FN_MD; q++)
                acc = fma(row[q], m[q], acc);
            e = fma(A2[i], tanh(acc), e);
        }
        if (e > run_max) {
            float scale = exp(run_max - e); /* 0 on the first neighbour */
            run_sum *= scale;
            for (int i = 0; i < FN_MD; i++)
                M[i] *= scale;
            run_max = e;
        }
        float w = exp(e - run_max);
        run_sum += w;
        for (int i = 0; i < FN_MD; i++)
            M[i] = fma(w, m[i], M[i]);
    }
    float inv = 1.0f / run_sum;
    __global float *out = msg + (size_t)c * FN_SCR;
    for (int i = 0; i < FN_MD; i++)
        out[i] = M[i] * inv;
}

/* Pass 2: the gate g and the GRU-like update from u = [M, ext]; writes
 * (1 - g) gnn and g into the cell's scratch. */
__kernel void functional_gru(__global const float *states, __global const float *ext, int has_ext,
                             int4 dims, int4 origin, int4 extent, int n_cells,
                             __global const int *band_count, __global const float *band_absmean,
                             __global const float *P, __global const int *toff,
                             __global float *scratch) {
    int c = (int)get_global_id(0);
    if (c >= n_cells || band_count[c] <= 0)
        return;
    int4 cell = ml_chunk_cell(c, origin, extent);
    __global const float *xg = states + (size_t)ml_cell_index(dims, cell) * FN_S;
    __global float *scr = scratch + (size_t)c * FN_SCR;

    /* Gate g from [x, act], act = mean |n_j|. */
    __global const float *act = band_absmean + (size_t)c * FN_S;
    __global const float *G = FN_P(FN_G0_W);
    __global const float *gb = FN_P(FN_G0_B);
    __global const float *G2 = FN_P(FN_G2_W);
    float logit = FN_P(FN_G2_B)[0];
    for (int i = 0; i < FN_S / 2; i++) {
        __global const float *row = G + (size_t)i * (2 * FN_S);
        float acc = gb[i];
        for (int s = 0; s < FN_S; s++)
            acc = fma(row[s], xg[s], acc);
        for (int s = 0; s < FN_S; s++)
            acc = fma(row[FN_S + s], act[s], acc);
        logit = fma(G2[i], ml_gelu(acc), logit);
    }
    float g = ml_sigmoid(logit);

    float xu[FN_U];
    for (int s = 0; s < FN_S; s++)
        xu[s] = xg[s];
    for (int i = 0; i < FN_MD; i++)
        xu[FN_S + i] = scr[i];
    bool on_face = has_ext && cell.z == 0;
    for (int i = 0; i < FN_E; i++)
        xu[FN_S + FN_MD + i] = on_face ? ext[(size_t)(cell.x + dims.x * cell.y) * FN_E + i] : 0.0f;
    float z[FN_S], t[FN_S];
    ml_dense(FN_P(FN_UG_W), FN_P(FN_UG_B), xu, FN_U, z, FN_S);
    ml_dense(FN_P(FN_RG_W), FN_P(FN_RG_B), xu, FN_U, t, FN_S); /* rr before the sigmoid */
    for (int s = 0; s < FN_S; s++)
        xu[s] = ml_sigmoid(t[s]) * xg[s];
    ml_dense(FN_P(FN_CN_W), FN_P(FN_CN_B), xu, FN_U, t, FN_S); /* cand before tanh */
    for (int s = 0; s < FN_S; s++) {
        float zs = ml_sigmoid(z[s]);
        scr[FN_MD + s] = (1.0f - g) * ((1.0f - zs) * xg[s] + zs * tanh(t[s]));
    }
    scr[FN_MD + FN_S] = g;
}

/* Pass 3: the CNF and the result layer
 *   E_F = GELU(LN(L(2S->S)([(1 - g) gnn, g cnf]))). */
__kernel void functional_output(__global const float *states, int4 dims, int4 origin, int4 extent,
                                int n_cells, __global const int *band_count,
                                __global const float *band_mean, __global const float *scratch,
                                __global const float *P, __global const int *toff,
                                __global float *out) {
    int c = (int)get_global_id(0);
    if (c >= n_cells)
        return;
    __global float *o = out + (size_t)c * FN_S;
    if (band_count[c] <= 0) {
        for (int s = 0; s < FN_S; s++)
            o[s] = 0.0f;
        return;
    }
    int4 cell = ml_chunk_cell(c, origin, extent);
    __global const float *xg = states + (size_t)ml_cell_index(dims, cell) * FN_S;
    __global const float *scr = scratch + (size_t)c * FN_SCR;
    float x[FN_S], mean[FN_S], cnf[FN_S];
    for (int s = 0; s < FN_S; s++) {
        x[s] = xg[s];
        mean[s] = band_mean[(size_t)c * FN_S + s];
    }
    cnf_integrate(P, toff, FN_CNF, x, mean, cnf);
    float g = scr[FN_MD + FN_S];
    /* x is free now: the result layer's output goes there. */
    __global const float *W = FN_P(FN_RP0_W);
    __global const float *b = FN_P(FN_RP0_B);
    for (int i = 0; i < FN_S; i++) {
        __global const float *row = W + (size_t)i * (2 * FN_S);
        float acc = b[i];
        for (int s = 0; s < FN_S; s++)
            acc = fma(row[s], scr[FN_MD + s], acc);
        for (int s = 0; s < FN_S; s++)
            acc = fma(row[FN_S + s], g * cnf[s], acc);
        x[i] = acc;
    }
    ml_layernorm(x, FN_S, FN_P(FN_RP1_G), FN_P(FN_RP1_B));
    for (int s = 0; s < FN_S; s++)
        o[s] = ml_gelu(x[s]);
}
