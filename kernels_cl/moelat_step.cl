/* The engine's own kernels of one batched step (after moelat_helpers.cl):
 *   ml_aggregate     per-band mean of n_j and of |n_j|, counts, and nu
 *   ml_gate_combine  the gate and x' = x + sum_k w_k E_k
 *   ml_check_finite  counts non-finite cells of a state buffer
 * Compile-time: MOELAT_S (state size), MOELAT_GH (gate hidden size).
 * One work-item per chunk cell; chunk cell c is ml_chunk_cell(c, ...). */

/* Values of S handled at once by ml_aggregate: its private sums stay small
 * whatever S is. */
#define ML_AGG_BLOCK 32

__kernel void ml_aggregate(__global const float *states, int4 dims, int4 origin, int4 extent,
                           int n_cells,
                           __global const int4 *off0, int n0,
                           __global const int4 *off1, int n1,
                           __global const int4 *off2, int n2,
                           __global float *mean0, __global float *mean1, __global float *mean2,
                           __global float *abs0, __global float *abs1, __global float *abs2,
                           __global int *cnt0, __global int *cnt1, __global int *cnt2,
                           __global float *nu) {
    int c = get_global_id(0);
    if (c >= n_cells)
        return;
    int4 cell = ml_chunk_cell(c, origin, extent);
    int counts[3] = {0, 0, 0};
    for (int s0 = 0; s0 < MOELAT_S; s0 += ML_AGG_BLOCK) {
        int len = min(ML_AGG_BLOCK, MOELAT_S - s0);
        float total[ML_AGG_BLOCK];
        for (int s = 0; s < ML_AGG_BLOCK; s++)
            total[s] = 0.0f;
        for (int k = 0; k < 3; k++) {
            __global const int4 *offsets = k == 0 ? off0 : k == 1 ? off1 : off2;
            int n_offsets = k == 0 ? n0 : k == 1 ? n1 : n2;
            __global float *means = k == 0 ? mean0 : k == 1 ? mean1 : mean2;
            __global float *abss = k == 0 ? abs0 : k == 1 ? abs1 : abs2;
            float sum[ML_AGG_BLOCK], abs_sum[ML_AGG_BLOCK];
            for (int s = 0; s < ML_AGG_BLOCK; s++) {
                sum[s] = 0.0f;
                abs_sum[s] = 0.0f;
            }
            int count = 0;
            for (int j = 0; j < n_offsets; j++) {
                int n = ml_neighbour_index(dims, cell, offsets[j]);
                if (n < 0)
                    continue;
                __global const float *v = states + (size_t)n * MOELAT_S + s0;
                for (int s = 0; s < len; s++) {
                    float a = v[s];
                    sum[s] += a;
                    abs_sum[s] += fabs(a);
                }
                count++;
            }
            float inv = count > 0 ? 1.0f / (float)count : 0.0f;
            for (int s = 0; s < len; s++) {
                means[(size_t)c * MOELAT_S + s0 + s] = sum[s] * inv;
                abss[(size_t)c * MOELAT_S + s0 + s] = abs_sum[s] * inv;
                total[s] += sum[s];
            }
            counts[k] = count;
        }
        int all = counts[0] + counts[1] + counts[2];
        float inv_all = all > 0 ? 1.0f / (float)all : 0.0f;
        for (int s = 0; s < len; s++)
            nu[(size_t)c * MOELAT_S + s0 + s] = total[s] * inv_all;
    }
    cnt0[c] = counts[0];
    cnt1[c] = counts[1];
    cnt2[c] = counts[2];
}

/* Gate tensors live in one buffer; g_* are their offsets in floats.
 * The gate is streamed: LayerNorm statistics first, then each hidden unit
 * is formed, passed through GELU and folded into the K logits at once, so
 * no per-work-item array of S or gh values is needed (NVIDIA's OpenCL
 * compiler miscomputes some kernels with large private arrays). */
__kernel void ml_gate_combine(__global const float *states, __global float *next, int4 dims,
                              int4 origin, int4 extent, int n_cells, __global const float *nu,
                              __global const float *out0, __global const float *out1,
                              __global const float *out2, __global const int *cnt0,
                              __global const int *cnt1, __global const int *cnt2,
                              __global const float *gate, int g_w0, int g_b0, int g_w2, int g_b2,
                              int g_ln_w, int g_ln_b) {
    int c = get_global_id(0);
    if (c >= n_cells)
        return;
    int4 cell = ml_chunk_cell(c, origin, extent);
    size_t i = (size_t)ml_cell_index(dims, cell);
    __global const float *x = states + i * MOELAT_S;
    __global const float *v = nu + (size_t)c * MOELAT_S;
    float mean = 0.0f;
    for (int s = 0; s < MOELAT_S; s++)
        mean += x[s];
    mean /= (float)MOELAT_S;
    float var = 0.0f;
    for (int s = 0; s < MOELAT_S; s++) {
        float d = x[s] - mean;
        var += d * d;
    }
    var /= (float)MOELAT_S;
    float inv = 1.0f / sqrt(var + 1e-5f);
    __global const float *lw = gate + g_ln_w, *lb = gate + g_ln_b;
    __global const float *W0 = gate + g_w0, *b0 = gate + g_b0;
    __global const float *W2 = gate + g_w2, *b2 = gate + g_b2;
    float w[3] = {b2[0], b2[1], b2[2]};
    for (int h = 0; h < MOELAT_GH; h++) {
        __global const float *row = W0 + (size_t)h * (2 * MOELAT_S);
        float acc = b0[h];
        for (int s = 0; s < MOELAT_S; s++)
            acc = fma(row[s], (x[s] - mean) * inv * lw[s] + lb[s], acc);
        for (int s = 0; s < MOELAT_S; s++)
            acc = fma(row[MOELAT_S + s], v[s], acc);
        float a = ml_gelu(acc);
        for (int k = 0; k < 3; k++)
            w[k] = fma(W2[k * MOELAT_GH + h], a, w[k]);
    }
    float m = fmax(w[0], fmax(w[1], w[2]));
    float sum = 0.0f;
    for (int k = 0; k < 3; k++) {
        w[k] = exp(w[k] - m);
        sum += w[k];
    }
    /* An empty band's expert did not run: its E_k is zero. */
    float w0 = cnt0[c] > 0 ? w[0] / sum : 0.0f;
    float w1 = cnt1[c] > 0 ? w[1] / sum : 0.0f;
    float w2 = cnt2[c] > 0 ? w[2] / sum : 0.0f;
    __global float *o = next + i * MOELAT_S;
    size_t base = (size_t)c * MOELAT_S;
    for (int s = 0; s < MOELAT_S; s++) {
        float r = x[s];
        if (w0 != 0.0f)
            r += w0 * out0[base + s];
        if (w1 != 0.0f)
            r += w1 * out1[base + s];
        if (w2 != 0.0f)
            r += w2 * out2[base + s];
        o[s] = r;
    }
}

/* result[0]: number of cells with a non-finite value; result[1]: the lowest
 * such cell index (initialise to INT_MAX). */
__kernel void ml_check_finite(__global const float *states, int n_cells, __global int *result) {
    int c = get_global_id(0);
    if (c >= n_cells)
        return;
    __global const float *v = states + (size_t)c * MOELAT_S;
    for (int s = 0; s < MOELAT_S; s++)
        if (!isfinite(v[s])) {
            atomic_inc(&result[0]);
            atomic_min(&result[1], c);
            return;
        }
}
