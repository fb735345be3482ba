/* Distant expert, batched: one work-group of MOELAT_WG lanes per chunk cell
 * integrates the CNF (cnf.cl, cnf_wg_integrate) from the cell's state with
 * the engine-computed band mean. Enqueued with global = n_cells * MOELAT_WG,
 * local = MOELAT_WG: work-group c is chunk cell c. */

__kernel void distant_expert(__global const float *states, int4 dims, int4 origin, int4 extent,
                             int n_cells, __global const int *band_count,
                             __global const float *band_mean, __global const float *P,
                             __global const int *toff, __global float *out) {
    __local float v[MOELAT_S], m[MOELAT_S];
    __local float work[CNF_WG_WORK];
    __local float red[MOELAT_WG];
    (void)n_cells; /* the NDRange has exactly n_cells groups */
    int c = (int)get_group_id(0), l = ml_lane();
    __global float *o = out + (size_t)c * MOELAT_S;
    int4 cell = ml_chunk_cell(c, origin, extent);
    __global const float *xg = states + (size_t)ml_cell_index(dims, cell) * MOELAT_S;
    __global const float *mg = band_mean + (size_t)c * MOELAT_S;
    /* A cell without distant neighbours still runs the block and writes
     * zeros: no lane may leave before a barrier. (A group-uniform return
     * would be legal OpenCL, but with one here PoCL 3.1's work-item loops
     * corrupted the heap.) Such cells are rare: edges of small lattices. */
    int empty = band_count[c] <= 0;
    /* Lanes over s: consecutive lanes read consecutive floats. */
    for (int s = l; s < MOELAT_S; s += MOELAT_WG) {
        v[s] = xg[s];
        m[s] = empty ? 0.0f : mg[s]; /* an empty band's mean may be anything */
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    cnf_wg_integrate(P, toff, 0, v, m, work, red);
    for (int s = l; s < MOELAT_S; s += MOELAT_WG)
        o[s] = empty ? 0.0f : v[s];
}
