/* The engine's own kernels of one batched step (after moelat_helpers.cl):
 *   ml_aggregate     per-band mean of n_j and of |n_j|, counts, and nu
 *   ml_gate_combine  the gate and x' = x + sum_k w_k E_k
 *   ml_check_finite  counts non-finite cells of a state buffer
 * Compile-time: MOELAT_S (state size), MOELAT_GH (gate hidden size).
 * One work-item per chunk cell; chunk cell c is ml_chunk_cell(c, ...). */

/* Sums one band's neighbours of `cell` into sum and abs_sum (S each);
 * returns how many lie inside the lattice. */
inline int ml_band_sums(__global const float *states, int4 dims, int4 cell,
                        __global const int4 *offsets, int n_offsets, float *sum, float *abs_sum) {
    for (int s = 0; s < MOELAT_S; s++) {
        sum[s] = 0.0f;
        abs_sum[s] = 0.0f;
    }
    int count = 0;
    for (int j = 0; j < n_offsets; j++) {
        int n = ml_neighbour_index(dims, cell, offsets[j]);
        if (n < 0)
            continue;
        __global const float *v = states + (size_t)n * MOELAT_S;
        for (int s = 0; s < MOELAT_S; s++) {
            float a = v[s];
            sum[s] += a;
            abs_sum[s] += fabs(a);
        }
        count++;
    }
    return count;
}

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
    __global const int4 *offs[3] = {off0, off1, off2};
    int ns[3] = {n0, n1, n2};
    __global float *means[3] = {mean0, mean1, mean2};
    __global float *abss[3] = {abs0, abs1, abs2};
    __global int *cnts[3] = {cnt0, cnt1, cnt2};
    float sum[MOELAT_S], abs_sum[MOELAT_S], total[MOELAT_S];
    for (int s = 0; s < MOELAT_S; s++)
        total[s] = 0.0f;
    int all = 0;
    for (int k = 0; k < 3; k++) {
        int count = ml_band_sums(states, dims, cell, offs[k], ns[k], sum, abs_sum);
        float inv = count > 0 ? 1.0f / (float)count : 0.0f;
        for (int s = 0; s < MOELAT_S; s++) {
            means[k][(size_t)c * MOELAT_S + s] = sum[s] * inv;
            abss[k][(size_t)c * MOELAT_S + s] = abs_sum[s] * inv;
            total[s] += sum[s];
        }
        cnts[k][c] = count;
        all += count;
    }
    float inv_all = all > 0 ? 1.0f / (float)all : 0.0f;
    for (int s = 0; s < MOELAT_S; s++)
        nu[(size_t)c * MOELAT_S + s] = total[s] * inv_all;
}

/* Gate tensors live in one buffer; g_* are their offsets in floats. */
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
    float in[2 * MOELAT_S];
    for (int s = 0; s < MOELAT_S; s++) {
        in[s] = x[s];
        in[MOELAT_S + s] = nu[(size_t)c * MOELAT_S + s];
    }
    ml_layernorm(in, MOELAT_S, gate + g_ln_w, gate + g_ln_b);
    float hidden[MOELAT_GH];
    ml_dense(gate + g_w0, gate + g_b0, in, 2 * MOELAT_S, hidden, MOELAT_GH);
    for (int h = 0; h < MOELAT_GH; h++)
        hidden[h] = ml_gelu(hidden[h]);
    float w[3];
    ml_dense(gate + g_w2, gate + g_b2, hidden, MOELAT_GH, w, 3);
    float m = fmax(w[0], fmax(w[1], w[2]));
    float sum = 0.0f;
    for (int k = 0; k < 3; k++) {
        w[k] = exp(w[k] - m);
        sum += w[k];
    }
    for (int k = 0; k < 3; k++)
        w[k] /= sum;
    /* An empty band's expert did not run: its E_k is zero. */
    float w0 = cnt0[c] > 0 ? w[0] : 0.0f;
    float w1 = cnt1[c] > 0 ? w[1] : 0.0f;
    float w2 = cnt2[c] > 0 ? w[2] : 0.0f;
    __global float *o = next + i * MOELAT_S;
    size_t base = (size_t)c * MOELAT_S;
    for (int s = 0; s < MOELAT_S; s++) {
        float v = x[s];
        if (w0 != 0.0f)
            v += w0 * out0[base + s];
        if (w1 != 0.0f)
            v += w1 * out1[base + s];
        if (w2 != 0.0f)
            v += w2 * out2[base + s];
        o[s] = v;
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
