/* diffusion expert, batched: one work-item per (chunk cell, state value).
 * The band mean is the engine's chunk->band_mean, so the kernel never walks
 * the stencil. MOELAT_S and the ml_* helpers come from the engine. */

__kernel void diffusion_expert(__global const float *states, int4 dims, int4 origin,
                               int4 extent, int n_cells, __global const float *band_mean,
                               __global const int *band_count, __global const float *params,
                               int d_offset, __global float *out) {
    size_t i = get_global_id(0);
    if (i >= (size_t)n_cells * MOELAT_S)
        return;
    int c = (int)(i / MOELAT_S), s = (int)(i % MOELAT_S);
    float e = 0.0f;
    if (band_count[c] > 0) {
        int4 cell = ml_chunk_cell(c, origin, extent);
        float x = states[(size_t)ml_cell_index(dims, cell) * MOELAT_S + s];
        e = params[d_offset + s] * (band_mean[i] - x);
    }
    out[i] = e;
}
