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

#if MOELAT_CNF_MODE == 1
/* The lipschitz mode needs d = f(t, v + eps) - f(t, v) with eps ~ 1e-4:
 * subtracting two float evaluations of f leaves three digits. Instead the
 * difference is carried through every layer next to the value (linear
 * layers map it exactly, LayerNorm and GELU have cancellation-free
 * difference forms), which is the same quantity to float rounding. */

/* u += du under LayerNorm: u becomes LN(u), du becomes LN(u + du) - LN(u). */
inline void cnf_layernorm_pair(float *u, float *du, int n, __global const float *g,
                               __global const float *b) {
    float mean = 0.0f, dmean = 0.0f;
    for (int i = 0; i < n; i++) {
        mean += u[i];
        dmean += du[i];
    }
    mean /= (float)n;
    dmean /= (float)n;
    float var = 0.0f, dvar = 0.0f;
    for (int i = 0; i < n; i++) {
        float c = u[i] - mean, dc = du[i] - dmean;
        var += c * c;
        dvar += (2.0f * c + dc) * dc;  /* (c + dc)^2 - c^2 */
    }
    var /= (float)n;
    dvar /= (float)n;
    float ra = sqrt(var + 1e-5f), rb = sqrt(var + dvar + 1e-5f);
    float inv = 1.0f / ra, inv2 = 1.0f / rb;
    float dinv = -dvar / (ra * rb * (ra + rb));  /* inv2 - inv */
    for (int i = 0; i < n; i++) {
        float c = u[i] - mean, dc = du[i] - dmean;
        du[i] = g[i] * (dc * inv2 + c * dinv);
        u[i] = c * inv * g[i] + b[i];
    }
}

/* a becomes GELU(a), da becomes GELU(a + da) - GELU(a). */
inline void cnf_gelu_pair(float *a, float *da) {
    float x = *a * 0.70710678118654752f, h = *da * 0.70710678118654752f;
    float e1 = erf(x + h);
    float derf;
    if (fabs(h) < 1e-2f) {
        /* erf(x + h) - erf(x) = 2/sqrt(pi) * integral of exp(-t^2) over
         * [x, x + h]; two-point Gauss-Legendre is exact to O(h^5). */
        float mid = x + 0.5f * h, hw = 0.28867513459481287f * h;
        float t1 = mid - hw, t2 = mid + hw;
        derf = h * 0.56418958354775629f * (exp(-t1 * t1) + exp(-t2 * t2));
    } else {
        derf = e1 - erf(x);
    }
    /* GELU(a + da) - GELU(a) = (da (1 + erf(x + h)) + a (erf(x + h) - erf(x))) / 2 */
    *da = 0.5f * (*da * (1.0f + e1) + *a * derf);
    *a = ml_gelu(*a);
}

/* f(t, v) into f and f(t, v + dv) - f(t, v) into df. */
inline void cnf_eval_f_pair(__global const float *P, __global const int *toff, int base,
                            float time, const float *v, const float *dv, const float *m, float *f,
                            float *df) {
    float in[2 * CNF_S], din[2 * CNF_S];
    float h[CNF_H], dh[CNF_H];
    float h2[CNF_H / 2], dh2[CNF_H / 2];
    for (int i = 0; i < CNF_S; i++) {
        in[i] = v[i];
        in[CNF_S + i] = m[i];
        din[i] = dv[i];
        din[CNF_S + i] = 0.0f;
    }
    cnf_layernorm_pair(in, din, 2 * CNF_S, CNF_P(CNF_T_IN_G), CNF_P(CNF_T_IN_B));
    ml_dense(CNF_P(CNF_T_W0), CNF_P(CNF_T_B0), in, 2 * CNF_S, h, CNF_H);
    ml_dense(CNF_P(CNF_T_W0), 0, din, 2 * CNF_S, dh, CNF_H);
    for (int i = 0; i < CNF_H; i++)
        cnf_gelu_pair(&h[i], &dh[i]);
    ml_dense(CNF_P(CNF_T_W3), CNF_P(CNF_T_B3), h, CNF_H, h2, CNF_H / 2);
    ml_dense(CNF_P(CNF_T_W3), 0, dh, CNF_H, dh2, CNF_H / 2);
    for (int i = 0; i < CNF_H / 2; i++)
        cnf_gelu_pair(&h2[i], &dh2[i]);
    ml_dense(CNF_P(CNF_T_W5), CNF_P(CNF_T_B5), h2, CNF_H / 2, f, CNF_S);
    ml_dense(CNF_P(CNF_T_W5), 0, dh2, CNF_H / 2, df, CNF_S);
    __global const float *tw = CNF_P(CNF_T_TIME_W);
    for (int i = 0; i < CNF_H / 4; i++)
        f[i] = fma(tw[i], time, f[i]);
    cnf_layernorm_pair(f, df, CNF_S, CNF_P(CNF_T_OUT_G), CNF_P(CNF_T_OUT_B));
    float damping = fabs(CNF_P(CNF_T_GAMMA)[0]);
    for (int i = 0; i < CNF_S; i++) {
        f[i] -= damping * v[i];
        df[i] -= damping * dv[i];
    }
}
#endif

/* v_K from v_0 = x with neighbour mean m, into out (MOELAT_CNF_STEPS steps,
 * MOELAT_CNF_MODE 0 euler or 1 lipschitz). */
inline void cnf_integrate(__global const float *P, __global const int *toff, int base,
                          const float *x, const float *m, float *out) {
    float f[CNF_S];
    for (int s = 0; s < CNF_S; s++)
        out[s] = x[s];
    for (int k = 0; k < MOELAT_CNF_STEPS; k++) {
        float time = (float)k / (float)MOELAT_CNF_STEPS;
#if MOELAT_CNF_MODE == 1
        float eps[CNF_S], df[CNF_S];
        for (int s = 0; s < CNF_S; s++)
            eps[s] = (s % 2) ? -1e-4f : 1e-4f;
        cnf_eval_f_pair(P, toff, base, time, out, eps, m, f, df);
        float num = 0.0f;
        for (int s = 0; s < CNF_S; s++)
            num = fma(df[s], df[s], num);
        float lk = sqrt(num) / (1e-4f * sqrt((float)CNF_S) + 1e-8f);
        float lambda = clamp(CNF_P(CNF_T_LAMBDA)[0], 0.1f, 1.0f);
        float dt = clamp(lambda / (lk + 1e-6f), 0.001f, 0.5f);
#else
        cnf_eval_f(P, toff, base, time, out, m, f);
        float dt = 1.0f / (float)MOELAT_CNF_STEPS;
#endif
        for (int s = 0; s < CNF_S; s++)
            out[s] = fma(dt, f[s], out[s]);
    }
}

#endif
