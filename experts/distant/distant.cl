/* Distant expert, batched: one work-group of MOELAT_WG lanes per DS_T chunk
 * cells integrates the CNF (cnf.cl, cnf_wg_integrate_cells) from the
 * cells' states with the engine-computed band means. Enqueued with global
 * = ceil(n_cells / DS_T) * MOELAT_WG, local = MOELAT_WG: work-group g
 * holds chunk cells g DS_T .. g DS_T + DS_T - 1. */

/* Cells per work-group: DS_CELLS from the plugin (tuning key distant_cells, 0
 * when unset), else 4 for S >= 48 and 1 below (few cells, small layers);
 * each dense layer then reads its weights once for the cells. */
#if defined(DS_CELLS) && DS_CELLS > 0
#define DS_T DS_CELLS
#elif MOELAT_S >= 48
#define DS_T 4
#else
#define DS_T 1
#endif

/* Never run: its required work-group size tells the host DS_T. */
__attribute__((reqd_work_group_size(DS_T, 1, 1))) __kernel void distant_cells_per_group(void) {}

__kernel void distant_expert(__global const float *states, int4 dims, int4 origin, int4 extent,
                             int n_cells, __global const int *band_count,
                             __global const float *band_mean, __global const float *P,
                             __global const int *toff, __global float *out) {
    __local float v[DS_T * MOELAT_S], m[DS_T * MOELAT_S];
    __local float work[CNF_CELLS_WORK(DS_T)];
    __local float red[MOELAT_WG];
    const int c0 = (int)get_group_id(0) * DS_T, l = ml_lane();
    /* A cell past the chunk (the last group's tail) computes on a copy of
     * the last cell and writes nothing; a cell without distant neighbours
     * writes zeros. No lane leaves before a barrier (with a group-uniform
     * return PoCL 3.1's work-item loops corrupted the heap). */
    for (int q = l; q < DS_T * MOELAT_S; q += MOELAT_WG) {
        int c = min(c0 + q / MOELAT_S, n_cells - 1), s = q % MOELAT_S;
        int4 cell = ml_chunk_cell(c, origin, extent);
        v[q] = states[(size_t)ml_cell_index(dims, cell) * MOELAT_S + s];
        /* an empty band's mean may be anything */
        m[q] = band_count[c] <= 0 ? 0.0f : band_mean[(size_t)c * MOELAT_S + s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#if DS_T == 1
    cnf_wg_integrate(P, toff, 0, v, m, work, red); /* its two-round sums beat one segment */
#else
    cnf_wg_integrate_cells(P, toff, 0, v, m, DS_T, work, red);
#endif
    for (int q = l; q < DS_T * MOELAT_S; q += MOELAT_WG) {
        int c = c0 + q / MOELAT_S;
        if (c < n_cells)
            out[(size_t)c * MOELAT_S + q % MOELAT_S] = band_count[c] <= 0 ? 0.0f : v[q];
    }
}
