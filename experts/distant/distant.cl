/* Distant expert, batched: one work-item per chunk cell integrates the CNF
 * (cnf.cl) from the cell's state with the engine-computed band mean. */

__kernel void distant_expert(__global const float *states, int4 dims, int4 origin, int4 extent,
                             int n_cells, __global const int *band_count,
                             __global const float *band_mean, __global const float *P,
                             __global const int *toff, __global float *out) {
    int c = (int)get_global_id(0);
    if (c >= n_cells)
        return;
    __global float *o = out + (size_t)c * MOELAT_S;
    if (band_count[c] <= 0) {
        for (int s = 0; s < MOELAT_S; s++)
            o[s] = 0.0f;
        return;
    }
    int4 cell = ml_chunk_cell(c, origin, extent);
    __global const float *xg = states + (size_t)ml_cell_index(dims, cell) * MOELAT_S;
    __global const float *mg = band_mean + (size_t)c * MOELAT_S;
    float x[MOELAT_S], m[MOELAT_S], v[MOELAT_S];
    for (int s = 0; s < MOELAT_S; s++) {
        x[s] = xg[s];
        m[s] = mg[s];
    }
    cnf_integrate(P, toff, 0, x, m, v);
    for (int s = 0; s < MOELAT_S; s++)
        o[s] = v[s];
}
