/* The CNF block of MODEL.md on the device: one work-item integrates one
 * cell. Shared by the functional and distant experts (each is its own
 * program, so these names only need to be unique within one of them).
 * Sizes come from the build options: MOELAT_S and MOELAT_H_ode_hidden.
 * Tensor order is cnf_host.h's enum cnf_tensor, from index `base` of toff. */
#ifndef MOELAT_CNF_CL
#define MOELAT_CNF_CL

#define CNF_S MOELAT_S
#define CNF_H MOELAT_H_ode_hidden

#define CNF_T_W0 0
#define CNF_T_B0 1
#define CNF_T_W3 2
#define CNF_T_B3 3
#define CNF_T_W5 4
#define CNF_T_B5 5
#define CNF_T_TIME_W 6
#define CNF_T_GAMMA 7
#define CNF_T_IN_G 8
#define CNF_T_IN_B 9
#define CNF_T_OUT_G 10
#define CNF_T_OUT_B 11
#define CNF_T_LAMBDA 13

#define CNF_P(i) (P + toff[base + (i)])

/* f(t, v) into f. */
inline void cnf_eval_f(__global const float *P, __global const int *toff, int base, float time,
                       const float *v, const float *m, float *f) {
    float in[2 * CNF_S];
    float h[CNF_H];
    float h2[CNF_H / 2];
    for (int i = 0; i < CNF_S; i++) {
        in[i] = v[i];
        in[CNF_S + i] = m[i];
    }
    ml_layernorm(in, 2 * CNF_S, CNF_P(CNF_T_IN_G), CNF_P(CNF_T_IN_B));
    ml_dense(CNF_P(CNF_T_W0), CNF_P(CNF_T_B0), in, 2 * CNF_S, h, CNF_H);
    for (int i = 0; i < CNF_H; i++)
        h[i] = ml_gelu(h[i]);
    ml_dense(CNF_P(CNF_T_W3), CNF_P(CNF_T_B3), h, CNF_H, h2, CNF_H / 2);
    for (int i = 0; i < CNF_H / 2; i++)
        h2[i] = ml_gelu(h2[i]);
    ml_dense(CNF_P(CNF_T_W5), CNF_P(CNF_T_B5), h2, CNF_H / 2, f, CNF_S);
    __global const float *tw = CNF_P(CNF_T_TIME_W);
    for (int i = 0; i < CNF_H / 4; i++)
        f[i] = fma(tw[i], time, f[i]);
    ml_layernorm(f, CNF_S, CNF_P(CNF_T_OUT_G), CNF_P(CNF_T_OUT_B));
    float damping = fabs(CNF_P(CNF_T_GAMMA)[0]);
    for (int i = 0; i < CNF_S; i++)
        f[i] -= damping * v[i];
}

/* v_K from v_0 = x with neighbour mean m, into out (MOELAT_CNF_STEPS steps,
 * MOELAT_CNF_MODE 0 euler or 1 lipschitz). */
inline void cnf_integrate(__global const float *P, __global const int *toff, int base,
                          const float *x, const float *m, float *out) {
    float f[CNF_S];
    for (int s = 0; s < CNF_S; s++)
        out[s] = x[s];
    for (int k = 0; k < MOELAT_CNF_STEPS; k++) {
        float time = (float)k / (float)MOELAT_CNF_STEPS;
        cnf_eval_f(P, toff, base, time, out, m, f);
        float dt = 1.0f / (float)MOELAT_CNF_STEPS;
#if MOELAT_CNF_MODE == 1
        {
            float ve[CNF_S];
            float fe[CNF_S];
            for (int s = 0; s < CNF_S; s++)
                ve[s] = out[s] + ((s % 2) ? -1e-4f : 1e-4f);
            cnf_eval_f(P, toff, base, time, ve, m, fe);
            float num = 0.0f;
            for (int s = 0; s < CNF_S; s++)
                num += (fe[s] - f[s]) * (fe[s] - f[s]);
            float lk = sqrt(num) / (1e-4f * sqrt((float)CNF_S) + 1e-8f);
            float lambda = clamp(CNF_P(CNF_T_LAMBDA)[0], 0.1f, 1.0f);
            dt = clamp(lambda / (lk + 1e-6f), 0.001f, 0.5f);
        }
#endif
        for (int s = 0; s < CNF_S; s++)
            out[s] = fma(dt, f[s], out[s]);
    }
}

#endif
