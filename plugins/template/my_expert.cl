/* my_expert, batched: one work-item per chunk cell.
 *
 * The engine builds this file after kernels_cl/moelat_helpers.cl (ml_gelu,
 * ml_sigmoid, ml_dense, ml_chunk_cell, ml_cell_index, ...) with
 *   -cl-std=CL1.2 -D MOELAT_S=<S> -D MOELAT_E=<E> -D MOELAT_CNF_STEPS=<K>
 *   -D MOELAT_CNF_MODE=<0|1> -D MOELAT_H_my_hidden=<h>
 *   -D MOELAT_WG=<lanes per work-group> -D MOELAT_LOCAL_MEM=<bytes>
 * so sizes are compile-time constants. Keep private arrays small (hidden
 * sized, not S sized) and stream S-long vectors through global memory. */

#define H MOELAT_H_my_hidden

__kernel void my_expert(__global const float *states, int4 dims, int4 origin, int4 extent,
                        int n_cells, __global const float *band_mean,
                        __global const int *band_count, __global const float *P,
                        __global const int *toff, __global float *out) {
    int c = (int)get_global_id(0);
    if (c >= n_cells)
        return;
    __global float *o = out + (size_t)c * MOELAT_S;
    if (band_count[c] <= 0) { /* no neighbour in the band: E = 0 */
        for (int s = 0; s < MOELAT_S; s++)
            o[s] = 0.0f;
        return;
    }
    int4 cell = ml_chunk_cell(c, origin, extent);
    __global const float *x = states + (size_t)ml_cell_index(dims, cell) * MOELAT_S;
    __global const float *m = band_mean + (size_t)c * MOELAT_S;

    /* hid = tanh(W1 (m - x) + b1): tensors 0 and 1 */
    __global const float *W1 = P + toff[0], *b1 = P + toff[1];
    float hid[H];
    for (int k = 0; k < H; k++) {
        float acc = b1[k];
        for (int s = 0; s < MOELAT_S; s++)
            acc = fma(W1[k * MOELAT_S + s], m[s] - x[s], acc);
        hid[k] = tanh(acc);
    }
    /* E = W2 hid + b2: tensors 2 and 3, written straight to out */
    __global const float *W2 = P + toff[2], *b2 = P + toff[3];
    for (int s = 0; s < MOELAT_S; s++) {
        float acc = b2[s];
        for (int k = 0; k < H; k++)
            acc = fma(W2[s * H + k], hid[k], acc);
        o[s] = acc;
    }
}
