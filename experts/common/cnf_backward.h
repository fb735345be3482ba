/* The CNF block of MODEL.md in float64 with its exact adjoint (euler mode:
 * dt_k = 1/K). Lipschitz mode is refused for gradients: its step size
 * depends on the state through a finite difference and clamps, and this
 * pass does not differentiate it. */
#ifndef MOELAT_CNF_BACKWARD_H
#define MOELAT_CNF_BACKWARD_H

#include <stddef.h>

#include "cnf_host.h" /* enum cnf_tensor */

/* 0, or -1 with a reason when gradients of this mode are not available. */
int cnf_grad_validate(int mode, char *err, size_t errlen);

/* Doubles of scratch of cnf_f64_run and cnf_f64_backward. */
size_t cnf_grad_doubles(int S, int H, int K);

/* out = v_K from v_0 = x with neighbour mean m (euler); t: the block's
 * CNF_N_TENSORS tensors. out may not alias x or m. */
void cnf_f64_run(const double *const *t, int S, int H, int K, const double *x, const double *m,
                 double *out, double *scratch);

/* Adjoint for dout = dL/dv_K: dx += , dm += , dt[i] += (dt: the block's
 * tensor gradients). */
void cnf_f64_backward(const double *const *t, int S, int H, int K, const double *x,
                      const double *m, const double *dout, double *dx, double *dm,
                      double *const *dt, double *scratch);

#endif
