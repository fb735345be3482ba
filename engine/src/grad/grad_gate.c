/* The gate of MODEL.md and its exact adjoint, written once for the host
 * backward in float64 (grad.h) and the device backward in float32 (the
 * same text as OpenCL C after moelat/backward_portable.h, backward_math
 * and gate_tensors.h: the engine's embedded moelat_grad_gate_cl_parts).
 * ml_gate_host is the float32 reference it follows. */
#ifndef __OPENCL_VERSION__
#include "backward_math.h"
#include "core/gate.h"
#include "grad/grad.h"

/* Forward values at the start of scratch, then the backward's work. */
size_t ml_gate_f64_doubles(int S, int gh) {
    return (size_t)(2 * S + S + 1 + 2 * gh)            /* in, xhat, inv, z0, h */
           + (size_t)(gh + 2 * S + S + MOELAT_BANDS); /* dh, din, LN work, dl */
}
#endif

void ml_gate_f64(MLB_G const mlb_real *const *t, int S, int gh, MLB_G const mlb_real *x,
                 MLB_G const mlb_real *nu, MLB_G mlb_real *w, MLB_G mlb_real *scratch) {
    MLB_G mlb_real *in = scratch, *xhat = in + 2 * S, *inv = xhat + S, *z0 = inv + 1, *h = z0 + gh;
    const mlb_real iv = bm_layernorm(x, S, t[GATE_LN_W], t[GATE_LN_B], xhat, in);
    BM_ONE *inv = iv;
    bm_copy(in + S, nu, (size_t)S);
    bm_dense(t[GATE_W0], t[GATE_B0], in, 2 * S, z0, gh);
    BM_FOR(i, gh)
        h[i] = bm_gelu(z0[i]);
    BM_SYNC;
    bm_dense(t[GATE_W2], t[GATE_B2], h, gh, w, MOELAT_BANDS);
    bm_softmax(w, MOELAT_BANDS);
}

void ml_gate_f64_bwd(MLB_G const mlb_real *const *t, MLB_G mlb_real *const *dt, int S, int gh,
                     MLB_G const mlb_real *w, MLB_G const mlb_real *dw, MLB_G mlb_real *dx,
                     MLB_G mlb_real *dnu, MLB_G mlb_real *scratch) {
    MLB_G mlb_real *in = scratch, *xhat = in + 2 * S, *inv = xhat + S, *z0 = inv + 1, *h = z0 + gh;
    MLB_G mlb_real *dh = h + gh, *din = dh + gh, *lnw = din + 2 * S, *dl = lnw + S;
    bm_softmax_bwd(w, dw, MOELAT_BANDS, dl);
    bm_zero(dh, (size_t)gh);
    bm_dense_bwd(t[GATE_W2], h, dl, gh, MOELAT_BANDS, dh, dt[GATE_W2], dt[GATE_B2]);
    BM_FOR(i, gh)
        dh[i] *= bm_gelu_grad(z0[i]);
    BM_SYNC;
    bm_zero(din, 2 * (size_t)S);
    bm_dense_bwd(t[GATE_W0], in, dh, 2 * S, gh, din, dt[GATE_W0], dt[GATE_B0]);
    BM_FOR(s, S)
        dnu[s] += din[S + s];
    BM_SYNC;
    bm_layernorm_bwd(xhat, *inv, S, t[GATE_LN_W], din, dx, dt[GATE_LN_W], dt[GATE_LN_B], lnw);
}
