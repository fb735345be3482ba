/* The engine's gate kernel shaped for CPU devices (after moelat_helpers.cl,
 * moelat_step.cl and moelat_cpu_math.cl): work-item w computes MLC_V
 * cells of a chunk row (mlc_row_cells), one per vector lane, with each
 * gate weight read once for them; no barriers, no local memory. The same
 * function and arguments as ml_gate_combine (moelat_step.cl); the host
 * enqueues mlc_items(extent) work-items (engine/src/backend/opencl/cl_shape.c). */
__kernel void ml_gate_combine_cpu(__global const float *states, __global float *next, int4 dims, int4 origin,
                                  int4 extent, int n_cells, __global const float *nu, __global const float *out0,
                                  __global const float *out1, __global const float *out2,
                                  __global const int *cnt0, __global const int *cnt1, __global const int *cnt2,
                                  __global const float *gate, int g_w0, int g_b0, int g_w2, int g_b2, int g_ln_w,
                                  int g_ln_b, __global int *check, __global float *route) {
    const int w = (int)get_global_id(0);
    if (w >= mlc_items(extent) || n_cells <= 0)
        return;
    mlc_lanes L;
    mlc_lanes_of(w, dims, origin, extent, cnt0, &L); /* keep: unused here */
    mlc_f x[MOELAT_S], in[2 * MOELAT_S], h[MOELAT_GH], z[3];
    mlc_gather(states, L.ci, MOELAT_S, MOELAT_S, x);
    for (int s = 0; s < MOELAT_S; s++)
        in[s] = x[s];
    mlc_layernorm(in, MOELAT_S, gate + g_ln_w, gate + g_ln_b);
    mlc_gather(nu, L.cc, MOELAT_S, MOELAT_S, in + MOELAT_S);
    mlc_dense(gate + g_w0, gate + g_b0, in, 2 * MOELAT_S, h, MOELAT_GH, MLC_ACT_GELU);
    mlc_dense(gate + g_w2, gate + g_b2, h, MOELAT_GH, z, 3, MLC_ACT_NONE);
    /* softmax over the bands with the built-in exp (three per cell) */
    float t0[MLC_V], t1[MLC_V], t2[MLC_V];
    mlc_vstore(z[0], 0, t0);
    mlc_vstore(z[1], 0, t1);
    mlc_vstore(z[2], 0, t2);
    for (int l = 0; l < MLC_V; l++) {
        if (!L.store[l])
            continue;
        const int cc = L.cc[l];
        const size_t i = (size_t)L.ci[l], base = (size_t)cc * MOELAT_S;
        float m = fmax(t0[l], fmax(t1[l], t2[l]));
        float e0 = exp(t0[l] - m), e1 = exp(t1[l] - m), e2 = exp(t2[l] - m);
        float total = e0 + e1 + e2;
        /* routing statistics: the cell's three gate weights (lattice order) */
        route[i * 3] = e0 / total;
        route[i * 3 + 1] = e1 / total;
        route[i * 3 + 2] = e2 / total;
        /* An empty band's expert did not run: its E_k is zero, and its
         * output buffer (stale or NaN) is never read. */
        float w0 = cnt0[cc] > 0 ? e0 / total : 0.0f;
        float w1 = cnt1[cc] > 0 ? e1 / total : 0.0f;
        float w2 = cnt2[cc] > 0 ? e2 / total : 0.0f;
        __global const float *xs = states + i * MOELAT_S;
        const int ran0 = cnt0[cc] > 0, ran1 = cnt1[cc] > 0, ran2 = cnt2[cc] > 0;
        int stage = ML_CHECK_STAGES; /* the finite check per stage, as ml_gate_combine's */
        for (int s = 0; s < MOELAT_S; s++) {
            float r = xs[s];
            if (w0 != 0.0f)
                r += w0 * out0[base + s];
            if (w1 != 0.0f)
                r += w1 * out1[base + s];
            if (w2 != 0.0f)
                r += w2 * out2[base + s];
            next[i * MOELAT_S + s] = r;
            stage = ml_check_stage(stage, ran0 ? out0[base + s] : 0.0f, ran1 ? out1[base + s] : 0.0f,
                                   ran2 ? out2[base + s] : 0.0f, r);
        }
        if (stage < ML_CHECK_STAGES) {
            atomic_inc(&check[0]);
            atomic_min(&check[1], (int)i);
            atomic_min(&check[2 + stage], (int)i);
        }
    }
}
