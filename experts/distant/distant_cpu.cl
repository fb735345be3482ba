/* Distant expert, CPU-shaped (cpu_math.cl, cnf_cpu.cl): work-item w
 * integrates the CNF for chunk cells w MLC_V .. w MLC_V + MLC_V - 1, one
 * per vector lane. Same arguments as distant_expert; enqueued with
 * ceil(n_cells / MLC_V) work-items. Cells without distant neighbours
 * write zeros (their lanes run on a zero mean). */
__kernel void distant_cpu(__global const float *states, int4 dims, int4 origin, int4 extent, int n_cells,
                          __global const int *band_count, __global const float *band_mean,
                          __global const float *P, __global const int *toff, __global float *out) {
    const int w = (int)get_global_id(0);
    if (w * MLC_V >= n_cells)
        return;
    mlc_i c = mlc_chunk_cells(w, n_cells), x, y, z;
    mlc_cell_xyz(c, origin, extent, &x, &y, &z);
    int ci[MLC_V], cc[MLC_V], keep[MLC_V];
    mlc_vstore(x + dims.x * (y + dims.y * z), 0, ci);
    mlc_vstore(c, 0, cc);
    for (int l = 0; l < MLC_V; l++)
        keep[l] = band_count[cc[l]] > 0;
    mlc_f v[MOELAT_S], m[MOELAT_S];
    mlc_gather(states, ci, MOELAT_S, MOELAT_S, v);
    mlc_gather(band_mean, cc, MOELAT_S, MOELAT_S, m);
    mlc_i kv = mlc_vload_i(0, keep) != 0;
    for (int s = 0; s < MOELAT_S; s++) /* an empty band's mean may be anything */
        m[s] = select((mlc_f)0.0f, m[s], kv);
    cnfc_integrate(P, toff, 0, v, m);
    mlc_store_cells(out, MOELAT_S, MOELAT_S, v, w, n_cells, keep);
}
