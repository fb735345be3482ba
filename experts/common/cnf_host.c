#include "cnf_host.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void cnf_spec(ec_specs *s, const char *prefix, int S, int H) {
    char name[96];
#define CNF_NAME(suffix) (snprintf(name, sizeof name, "%s%s", prefix, suffix), name)
    ec_spec_linear(s, CNF_NAME("neural_ode.ode_network.0"), 2 * S, H);
    ec_spec_linear(s, CNF_NAME("neural_ode.ode_network.3"), H, H / 2);
    ec_spec_linear(s, CNF_NAME("neural_ode.ode_network.5"), H / 2, S);
    ec_spec_linear_nobias(s, CNF_NAME("neural_ode.time_embedding.weight"), 1, H / 4);
    ec_spec_scalar(s, CNF_NAME("neural_ode.damping_strength"), 0.1f);
    ec_spec_layernorm(s, CNF_NAME("neural_ode.input_norm"), 2 * S);
    ec_spec_layernorm(s, CNF_NAME("neural_ode.output_norm"), S);
    ec_spec_scalar(s, CNF_NAME("solver.base_dt"), 0.1f);
    ec_spec_scalar(s, CNF_NAME("solver.lipschitz_factor"), 0.8f);
#undef CNF_NAME
}

int cnf_validate(int S, int H, int K, int mode, char *err, size_t errlen) {
    if (H < 2 || H % 2 != 0) {
        snprintf(err, errlen, "ODE hidden size %d must be even and >= 2 (H/2 is a layer width)", H);
        return -1;
    }
    if (H / 4 > S) {
        snprintf(err, errlen, "time embedding width floor(H/4) = %d exceeds the state size %d",
                 H / 4, S);
        return -1;
    }
    if (K < 1) {
        snprintf(err, errlen, "CNF steps %d must be >= 1", K);
        return -1;
    }
    if (mode != 0 && mode != 1) {
        snprintf(err, errlen, "CNF mode %d is neither 0 (euler) nor 1 (lipschitz)", mode);
        return -1;
    }
    return 0;
}

size_t cnf_scratch_floats(int S, int H) {
    return (size_t)(2 * S + H + H / 2 + 3 * S);
}

/* f(t, v) of MODEL.md into f (S values); work holds 2S + H + H/2 floats. */
static void cnf_f(const float *const *t, int S, int H, float time, const float *v, const float *m,
                  float *f, float *work) {
    float *in = work;          /* [v, m], 2S */
    float *h = in + 2 * S;     /* H */
    float *h2 = h + H;         /* H/2 */

    memcpy(in, v, (size_t)S * sizeof *in);
    memcpy(in + S, m, (size_t)S * sizeof *in);
    ec_layernorm(in, 2 * S, t[CNF_IN_G], t[CNF_IN_B]);
    ec_dense(t[CNF_W0], t[CNF_B0], in, 2 * S, h, H);
    for (int i = 0; i < H; i++)
        h[i] = ec_gelu(h[i]);
    ec_dense(t[CNF_W3], t[CNF_B3], h, H, h2, H / 2);
    for (int i = 0; i < H / 2; i++)
        h2[i] = ec_gelu(h2[i]);
    ec_dense(t[CNF_W5], t[CNF_B5], h2, H / 2, f, S);
    /* pad_S(T t): the time embedding fills the first floor(H/4) entries. */
    for (int i = 0; i < H / 4; i++)
        f[i] += t[CNF_TIME_W][i] * time;
    ec_layernorm(f, S, t[CNF_OUT_G], t[CNF_OUT_B]);
    float damping = fabsf(t[CNF_GAMMA][0]);
    for (int i = 0; i < S; i++)
        f[i] -= damping * v[i];
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

void cnf_host_run(const float *const *t, int S, int H, int K, int mode, const float *x,
                  const float *m, float *out, float *scratch) {
    float *work = scratch;                 /* 2S + H + H/2 */
    float *f = work + 2 * S + H + H / 2;   /* S */
    float *ve = f + S;                     /* v + eps, S */
    float *fe = ve + S;                    /* f(t, v + eps), S */
    float *v = out;

    memcpy(v, x, (size_t)S * sizeof *v);
    for (int k = 0; k < K; k++) {
        float time = (float)k / (float)K;
        cnf_f(t, S, H, time, v, m, f, work);
        float dt = 1.0f / (float)K;
        if (mode == 1) {
            /* Finite-difference Lipschitz estimate along eps_s = 1e-4 (-1)^s. */
            for (int s = 0; s < S; s++)
                ve[s] = v[s] + ((s % 2) ? -1e-4f : 1e-4f);
            cnf_f(t, S, H, time, ve, m, fe, work);
            float num = 0.0f;
            for (int s = 0; s < S; s++)
                num += (fe[s] - f[s]) * (fe[s] - f[s]);
            float eps_norm = 1e-4f * sqrtf((float)S);
            float lk = sqrtf(num) / (eps_norm + 1e-8f);
            float lambda = clampf(t[CNF_LAMBDA][0], 0.1f, 1.0f);
            dt = clampf(lambda / (lk + 1e-6f), 0.001f, 0.5f);
        }
        for (int s = 0; s < S; s++)
            v[s] += dt * f[s];
    }
}
