/* Functional expert, batched. functional_project runs once per step over
 * the whole lattice: P_i = W_n n_i + b, with W_n the n_j columns of
 * message_creator.0. functional_expert then runs one work-item per chunk
 * cell, one pass over its band with an online softmax of the attention
 * logits. Tensor indices match functional_expert.c's enum. */

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

__kernel void functional_project(__global const float *states, int n_total,
                                 __global const float *P, __global const int *toff,
                                 __global float *proj) {
    int i = (int)get_global_id(0);
    if (i >= n_total)
        return;
    __global const float *n = states + (size_t)i * FN_S;
    __global const float *W = FN_P(FN_MC0_W);
    __global const float *b = FN_P(FN_MC0_B);
    for (int o = 0; o < FN_HD; o++) {
        __global const float *row = W + (size_t)o * (2 * FN_S);
        float acc = b[o];
        for (int s = 0; s < FN_S; s++)
            acc = fma(row[s], n[s], acc);
        proj[(size_t)i * FN_HD + o] = acc;
    }
}

__kernel void functional_expert(__global const float *states, __global const float *ext,
                                int has_ext, __global const int4 *offsets, int n_offsets,
                                int4 dims, int4 origin, int4 extent, int n_cells,
                                __global const int *band_count, __global const float *band_mean,
                                __global const float *band_absmean, __global const float *proj,
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
    float x[FN_S];
    for (int s = 0; s < FN_S; s++)
        x[s] = xg[s];

    /* Gate g from [x, act]. */
    float g;
    {
        float act[FN_S];
        for (int s = 0; s < FN_S; s++)
            act[s] = band_absmean[(size_t)c * FN_S + s];
        float hg[FN_S / 2];
        __global const float *b0 = FN_P(FN_G0_B);
        for (int i = 0; i < FN_S / 2; i++)
            hg[i] = b0[i];
        ml_dense_slice_acc(FN_P(FN_G0_W), 2 * FN_S, 0, x, FN_S, hg, FN_S / 2);
        ml_dense_slice_acc(FN_P(FN_G0_W), 2 * FN_S, FN_S, act, FN_S, hg, FN_S / 2);
        for (int i = 0; i < FN_S / 2; i++)
            hg[i] = ml_gelu(hg[i]);
        float logit;
        ml_dense(FN_P(FN_G2_W), FN_P(FN_G2_B), hg, FN_S / 2, &logit, 1);
        g = ml_sigmoid(logit);
    }

    /* Attention-weighted messages M, one pass over the band. */
    float M[FN_MD];
    {
        float qx[FN_HD];  /* x columns of message_creator.0 (bias is in proj) */
        float qa[FN_MD];  /* x columns of attention_network.0, plus its bias */
        for (int i = 0; i < FN_HD; i++)
            qx[i] = 0.0f;
        ml_dense_slice_acc(FN_P(FN_MC0_W), 2 * FN_S, FN_S, x, FN_S, qx, FN_HD);
        __global const float *ab = FN_P(FN_AT0_B);
        for (int i = 0; i < FN_MD; i++) {
            qa[i] = ab[i];
            M[i] = 0.0f;
        }
        ml_dense_slice_acc(FN_P(FN_AT0_W), FN_MD + FN_S, FN_MD, x, FN_S, qa, FN_MD);

        float run_max = -INFINITY, run_sum = 0.0f;
        for (int k = 0; k < n_offsets; k++) {
            int j = ml_neighbour_index(dims, cell, offsets[k]);
            if (j < 0)
                continue;
            __global const float *pj = proj + (size_t)j * FN_HD;
            float hid[FN_HD];
            for (int i = 0; i < FN_HD; i++)
                hid[i] = ml_gelu(pj[i] + qx[i]);
            float m[FN_MD];
            ml_dense(FN_P(FN_MC2_W), FN_P(FN_MC2_B), hid, FN_HD, m, FN_MD);
            float ta[FN_MD];
            for (int i = 0; i < FN_MD; i++)
                ta[i] = qa[i];
            ml_dense_slice_acc(FN_P(FN_AT0_W), FN_MD + FN_S, 0, m, FN_MD, ta, FN_MD);
            for (int i = 0; i < FN_MD; i++)
                ta[i] = tanh(ta[i]);
            float e;
            ml_dense(FN_P(FN_AT2_W), FN_P(FN_AT2_B), ta, FN_MD, &e, 1);
            if (e > run_max) {
                float scale = exp(run_max - e);
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
        for (int i = 0; i < FN_MD; i++)
            M[i] *= inv;
    }

    /* GRU-like update from u = [M, ext]. */
    float gnn[FN_S];
    {
        float xu[FN_U];
        for (int s = 0; s < FN_S; s++)
            xu[s] = x[s];
        for (int i = 0; i < FN_MD; i++)
            xu[FN_S + i] = M[i];
        bool on_face = has_ext && cell.z == 0;
        for (int i = 0; i < FN_E; i++)
            xu[FN_S + FN_MD + i] =
                on_face ? ext[(size_t)(cell.x + dims.x * cell.y) * FN_E + i] : 0.0f;
        float z[FN_S], rr[FN_S];
        ml_dense(FN_P(FN_UG_W), FN_P(FN_UG_B), xu, FN_U, z, FN_S);
        ml_dense(FN_P(FN_RG_W), FN_P(FN_RG_B), xu, FN_U, rr, FN_S);
        for (int s = 0; s < FN_S; s++) {
            z[s] = ml_sigmoid(z[s]);
            xu[s] = ml_sigmoid(rr[s]) * x[s];
        }
        float cand[FN_S];
        ml_dense(FN_P(FN_CN_W), FN_P(FN_CN_B), xu, FN_U, cand, FN_S);
        for (int s = 0; s < FN_S; s++)
            gnn[s] = (1.0f - z[s]) * x[s] + z[s] * tanh(cand[s]);
    }

    float cnf[FN_S];
    {
        float mean[FN_S];
        for (int s = 0; s < FN_S; s++)
            mean[s] = band_mean[(size_t)c * FN_S + s];
        cnf_integrate(P, toff, FN_CNF, x, mean, cnf);
    }

    float mix[2 * FN_S];
    for (int s = 0; s < FN_S; s++) {
        mix[s] = (1.0f - g) * gnn[s];
        mix[FN_S + s] = g * cnf[s];
    }
    float r[FN_S];
    ml_dense(FN_P(FN_RP0_W), FN_P(FN_RP0_B), mix, 2 * FN_S, r, FN_S);
    ml_layernorm(r, FN_S, FN_P(FN_RP1_G), FN_P(FN_RP1_B));
    for (int s = 0; s < FN_S; s++)
        o[s] = ml_gelu(r[s]);
}
