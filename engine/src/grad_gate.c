/* The gate of MODEL.md in float64 and its exact adjoint, for the host
 * backward (grad.h). ml_gate_host is the float32 reference it follows. */
#include <string.h>

#include "backward_math.h"
#include "gate.h"
#include "grad.h"

/* Forward values at the start of scratch, then the backward's work. */
size_t ml_gate_f64_doubles(int S, int gh) {
    return (size_t)(2 * S + S + 1 + 2 * gh) /* in, xhat, inv, z0, h */
           + (size_t)(gh + 2 * S + S);      /* dh, din, LN work */
}

void ml_gate_f64(const double *const *t, int S, int gh, const double *x, const double *nu, double *w,
                 double *scratch) {
    double *in = scratch, *xhat = in + 2 * S, *inv = xhat + S, *z0 = inv + 1, *h = z0 + gh;
    *inv = bm_layernorm(x, S, t[GATE_LN_W], t[GATE_LN_B], xhat, in);
    memcpy(in + S, nu, (size_t)S * sizeof *nu);
    bm_dense(t[GATE_W0], t[GATE_B0], in, 2 * S, z0, gh);
    for (int i = 0; i < gh; i++)
        h[i] = bm_gelu(z0[i]);
    bm_dense(t[GATE_W2], t[GATE_B2], h, gh, w, MOELAT_BANDS);
    bm_softmax(w, MOELAT_BANDS);
}

void ml_gate_f64_bwd(const double *const *t, double *const *dt, int S, int gh, const double *w,
                     const double *dw, double *dx, double *dnu, double *scratch) {
    double *in = scratch, *xhat = in + 2 * S, *inv = xhat + S, *z0 = inv + 1, *h = z0 + gh;
    double *dh = h + gh, *din = dh + gh, *lnw = din + 2 * S;
    double dl[MOELAT_BANDS];
    bm_softmax_bwd(w, dw, MOELAT_BANDS, dl);
    memset(dh, 0, (size_t)gh * sizeof *dh);
    bm_dense_bwd(t[GATE_W2], h, dl, gh, MOELAT_BANDS, dh, dt[GATE_W2], dt[GATE_B2]);
    for (int i = 0; i < gh; i++)
        dh[i] *= bm_gelu_grad(z0[i]);
    memset(din, 0, 2 * (size_t)S * sizeof *din);
    bm_dense_bwd(t[GATE_W0], in, dh, 2 * S, gh, din, dt[GATE_W0], dt[GATE_B0]);
    for (int s = 0; s < S; s++)
        dnu[s] += din[S + s];
    bm_layernorm_bwd(xhat, *inv, S, t[GATE_LN_W], din, dx, dt[GATE_LN_W], dt[GATE_LN_B], lnw);
}
