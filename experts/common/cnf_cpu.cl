/* The CNF block of MODEL.md, CPU-shaped (moelat_cpu_math.cl): the lanes' MLC_V
 * cells integrate at once, every vector a private array of features.
 * Euler mode only: with the lipschitz mode the experts keep their
 * work-group kernels (cnf.cl computes its finite difference from
 * differences, which this form does not reproduce). Tensor order is
 * cnf_host.h's enum cnf_tensor, from index base of toff. */
#ifndef MOELAT_CNF_CPU_CL
#define MOELAT_CNF_CPU_CL

#define CNFC_S MOELAT_S
#define CNFC_H MOELAT_H_ode_hidden
#define CNFC_P(i) (P + toff[base + (i)])

/* f(t, v) of MODEL.md for the lanes' cells into f. */
inline void cnfc_f(__global const float *P, __global const int *toff, int base, float time, const mlc_f *v,
                   const mlc_f *m, mlc_f *f) {
    mlc_f u[2 * CNFC_S], h[CNFC_H], h2[CNFC_H / 2];
    for (int s = 0; s < CNFC_S; s++) {
        u[s] = v[s];
        u[CNFC_S + s] = m[s];
    }
    mlc_layernorm(u, 2 * CNFC_S, CNFC_P(8), CNFC_P(9));
    mlc_dense(CNFC_P(0), CNFC_P(1), u, 2 * CNFC_S, h, CNFC_H, MLC_ACT_GELU);
    mlc_dense(CNFC_P(2), CNFC_P(3), h, CNFC_H, h2, CNFC_H / 2, MLC_ACT_GELU);
    mlc_dense(CNFC_P(4), CNFC_P(5), h2, CNFC_H / 2, f, CNFC_S, MLC_ACT_NONE);
    __global const float *tw = CNFC_P(6);
    for (int i = 0; i < CNFC_H / 4; i++)
        f[i] = fma(tw[i], time, f[i]);
    mlc_layernorm(f, CNFC_S, CNFC_P(10), CNFC_P(11));
    const float damping = fabs(CNFC_P(7)[0]);
    for (int s = 0; s < CNFC_S; s++)
        f[s] = fma(-damping, v[s], f[s]);
}

/* v <- the block's output v_K from v_0 = v and the neighbour means m. */
inline void cnfc_integrate(__global const float *P, __global const int *toff, int base, mlc_f *v,
                           const mlc_f *m) {
    mlc_f f[CNFC_S];
    for (int k = 0; k < MOELAT_CNF_STEPS; k++) {
        cnfc_f(P, toff, base, (float)k / MOELAT_CNF_STEPS, v, m, f);
        const float dt = 1.0f / MOELAT_CNF_STEPS;
        for (int s = 0; s < CNFC_S; s++)
            v[s] = fma(dt, f[s], v[s]);
    }
}

#endif
