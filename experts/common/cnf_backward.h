/* The CNF block of MODEL.md with its exact adjoint (euler mode: dt_k =
 * 1/K), in mlb_real: float64 on the host, float32 as OpenCL C
 * (moelat/backward_portable.h). Lipschitz mode is refused for gradients:
 * its step size depends on the state through a finite difference and
 * clamps, and this pass does not differentiate it. */
#ifndef MOELAT_CNF_BACKWARD_H
#define MOELAT_CNF_BACKWARD_H

#ifndef __OPENCL_VERSION__
#include <stddef.h>

#include "backward_math.h"
#include "cnf_tensors.h" /* enum cnf_tensor */

/* 0, or -1 with a reason when gradients of this mode are not available. */
int cnf_grad_validate(int mode, char *err, size_t errlen);
#endif

/* Values of scratch of cnf_f64_run and cnf_f64_backward. */
size_t cnf_grad_doubles(int S, int H, int K);

/* out = v_K from v_0 = x with neighbour mean m (euler); t: the block's
 * CNF_N_TENSORS tensors. out may not alias x or m. Every intermediate
 * stays in scratch for cnf_f64_backward. */
void cnf_f64_run(MLB_G const mlb_real *const *t, int S, int H, int K, MLB_G const mlb_real *x,
                 MLB_G const mlb_real *m, MLB_G mlb_real *out, MLB_G mlb_real *scratch);

/* Adjoint for dout = dL/dv_K: dx += , dm += , dt[i] += (dt: the block's
 * tensor gradients). scratch must hold cnf_f64_run's intermediates of the
 * same cell, untouched since. */
void cnf_f64_backward(MLB_G const mlb_real *const *t, int S, int H, int K, MLB_G const mlb_real *dout,
                      MLB_G mlb_real *dx, MLB_G mlb_real *dm, MLB_G mlb_real *const *dt,
                      MLB_G mlb_real *scratch);

#endif
