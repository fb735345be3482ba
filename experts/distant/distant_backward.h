/* The distant expert's forward, E_D = CNF(x, mean_j n_j), written once for
 * its float32 host path (distant_expert.c, MLB_HOST_FLOAT32: the mean in
 * float, then cnf_host_run) and its float64 and device gradient
 * (distant_backward.c: cnf_f64_run); and the "moelat.backward.host/1" and
 * "moelat.backward.cl/1" extensions (distant_backward.c). Plain C and
 * OpenCL C alike (one of the expert's backward parts). */
#ifndef MOELAT_DISTANT_BACKWARD_H
#define MOELAT_DISTANT_BACKWARD_H

#ifndef __OPENCL_VERSION__
#include "moelat/expert_abi.h"

#include "backward_math.h"
#ifdef MLB_HOST_FLOAT32
#include "cnf_host.h"
#else
#include "cnf_backward.h"
#endif

const moelat_backward_host *distant_backward_host(void);
const moelat_backward_cl *distant_backward_cl(void);
#endif

#define ODE_H(d) ((d)->hidden[0])

/* out = CNF(x, m) with m = mean_j n_j (S values, written) over the count
 * neighbours nbrs (count x S); cnf: the CNF's scratch (cnf_scratch_floats
 * on the float path, which integrates in either mode; cnf_grad_doubles on
 * the gradient's, euler only, where it keeps every step for the adjoint). */
static inline void ds_forward(const moelat_expert_dims *d, MLB_G const mlb_tensor *const *t, MLB_G const mlb_real *x,
                              MLB_G const mlb_real *nbrs, int count, MLB_G mlb_real *m, MLB_G mlb_real *out,
                              MLB_G mlb_real *cnf) {
    int S = d->state_size;
    bm_zero(m, (size_t)S);
    bm_item_sum(nbrs, S, count, S, m);
    BM_FOR(s, S)
        m[s] /= count;
    BM_SYNC;
#ifdef MLB_HOST_FLOAT32
    cnf_host_run(t, S, ODE_H(d), d->cnf_steps, d->cnf_mode, x, m, out, cnf);
#else
    cnf_f64_run(t, S, ODE_H(d), d->cnf_steps, x, m, out, cnf);
#endif
}

#endif
