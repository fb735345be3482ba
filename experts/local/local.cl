/* Local expert, batched: one work-item per chunk cell. The attention runs as
 * an online softmax (running max, rescaled sum) so the band's neighbours are
 * read in one pass straight from the state buffer. Tensor order is
 * local_expert.c's enum. */

#define LOC_S MOELAT_S
#define LOC_H1 MOELAT_H_h1
#define LOC_H2 MOELAT_H_h2
#define LOC_PH MOELAT_H_ph
#define LOC_P(i) (P + toff[i])

__kernel void local_expert(__global const float *states, __global const int4 *offsets,
                           int n_offsets, int4 dims, int4 origin, int4 extent, int n_cells,
                           __global const int *band_count, __global const float *P,
                           __global const int *toff, __global float *out) {
    int c = (int)get_global_id(0);
    if (c >= n_cells)
        return;
    __global float *o = out + (size_t)c * LOC_S;
    if (band_count[c] <= 0) {
        for (int s = 0; s < LOC_S; s++)
            o[s] = 0.0f;
        return;
    }
    int4 cell = ml_chunk_cell(c, origin, extent);
    __global const float *xg = states + (size_t)ml_cell_index(dims, cell) * LOC_S;
    float agg[LOC_S];
    for (int s = 0; s < LOC_S; s++)
        agg[s] = 0.0f;

    float run_max = -INFINITY, run_sum = 0.0f;
    for (int k = 0; k < n_offsets; k++) {
        int j = ml_neighbour_index(dims, cell, offsets[k]);
        if (j < 0)
            continue;
        __global const float *n = states + (size_t)j * LOC_S;
        float dot = 0.0f;
        for (int s = 0; s < LOC_S; s++)
            dot = fma(n[s], xg[s], dot);
        if (dot > run_max) {
            /* exp(-inf) = 0 on the first neighbour: sum and agg start at 0. */
            float scale = exp(run_max - dot);
            run_sum *= scale;
            for (int s = 0; s < LOC_S; s++)
                agg[s] *= scale;
            run_max = dot;
        }
        float w = exp(dot - run_max);
        run_sum += w;
        for (int s = 0; s < LOC_S; s++)
            agg[s] = fma(w, n[s], agg[s]);
    }
    float inv = 1.0f / run_sum;
    for (int s = 0; s < LOC_S; s++)
        agg[s] *= inv;

    /* The rest streams through global memory rather than private arrays
     * of S values (NVIDIA's OpenCL compiler miscomputes some kernels with
     * large private arrays): p goes to o, then LayerNorm runs in place. */
    float hid1[LOC_H1];
    ml_dense(LOC_P(0), LOC_P(1), agg, LOC_S, hid1, LOC_H1);
    for (int i = 0; i < LOC_H1; i++)
        hid1[i] = ml_gelu(hid1[i]);
    float f[LOC_H2];
    ml_dense(LOC_P(2), LOC_P(3), hid1, LOC_H1, f, LOC_H2);
    float hid2[LOC_PH];
    __global const float *W4 = LOC_P(4), *b4 = LOC_P(5);
    for (int o2 = 0; o2 < LOC_PH; o2++) {
        __global const float *row = W4 + (size_t)o2 * (LOC_S + LOC_H2);
        float acc = b4[o2];
        for (int s = 0; s < LOC_S; s++)
            acc = fma(row[s], xg[s], acc);
        for (int i = 0; i < LOC_H2; i++)
            acc = fma(row[LOC_S + i], f[i], acc);
        hid2[o2] = ml_gelu(acc);
    }
    __global const float *W6 = LOC_P(6), *b6 = LOC_P(7);
    float mean = 0.0f;
    for (int s = 0; s < LOC_S; s++) {
        __global const float *row = W6 + (size_t)s * LOC_PH;
        float acc = b6[s];
        for (int i = 0; i < LOC_PH; i++)
            acc = fma(row[i], hid2[i], acc);
        o[s] = acc;
        mean += acc;
    }
    mean /= (float)LOC_S;
    float var = 0.0f;
    for (int s = 0; s < LOC_S; s++) {
        float d = o[s] - mean;
        var += d * d;
    }
    var /= (float)LOC_S;
    float inv_std = 1.0f / sqrt(var + 1e-5f);
    __global const float *g = LOC_P(10), *b = LOC_P(11);
    float alpha = LOC_P(8)[0], beta = LOC_P(9)[0];
    for (int s = 0; s < LOC_S; s++)
        o[s] = alpha * xg[s] + beta * ((o[s] - mean) * inv_std * g[s] + b[s]);
}
