/* Distant expert, CPU-shaped (moelat_cpu_math.cl, cnf_cpu.cl): work-item w
 * integrates the CNF for MLC_V cells of a chunk row (mlc_row_cells), one
 * per vector lane. Same arguments as distant_expert; enqueued with
 * mlc_items(extent) work-items. Cells without distant neighbours write
 * zeros (their lanes run on a zero mean). */
__kernel void distant_cpu(__global const float *states, int4 dims, int4 origin, int4 extent, int n_cells,
                          __global const int *band_count, __global const float *band_mean,
                          __global const float *P, __global const int *toff, __global float *out) {
    const int w = (int)get_global_id(0);
    if (w >= mlc_items(extent) || n_cells <= 0)
        return;
    mlc_lanes L;
    mlc_lanes_of(w, dims, origin, extent, band_count, &L);
    mlc_f v[MOELAT_S], m[MOELAT_S];
    mlc_gather(states, L.ci, MOELAT_S, MOELAT_S, v);
    mlc_gather(band_mean, L.cc, MOELAT_S, MOELAT_S, m);
    for (int s = 0; s < MOELAT_S; s++) /* an empty band's mean may be anything */
        m[s] = select((mlc_f)0.0f, m[s], L.kv);
    cnfc_integrate(P, toff, 0, v, m);
    mlc_store_cells(out, MOELAT_S, MOELAT_S, v, L.cc, L.store, L.keep);
}
