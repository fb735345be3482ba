#include "cnf_host.h"

#include <math.h>
#include <stdint.h>
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

/* The host CNF runs in double: the lipschitz mode's finite difference with
 * eps = 1e-4 loses about four digits, which float32 cannot spare (docs/MODEL.md).
 * In double the reference stays exact to float rounding in both modes. */
static size_t cnf_doubles(int S, int H) {
    return (size_t)(2 * S + H + H / 2) /* f's work */ + 5 * (size_t)S /* v, f, ve, fe, m */;
}

size_t cnf_scratch_floats(int S, int H) {
    return 2 * cnf_doubles(S, H) + 2; /* + 2: room to align to a double */
}

static void dense_d(const float *W, const float *b, const double *in, int nin, double *out,
                    int nout) {
    for (int o = 0; o < nout; o++) {
        double acc = b ? b[o] : 0.0;
        const float *row = W + (size_t)o * nin;
        for (int i = 0; i < nin; i++)
            acc += (double)row[i] * in[i];
        out[o] = acc;
    }
}

static void layernorm_d(double *v, int n, const float *gain, const float *bias) {
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < n; i++)
        mean += v[i];
    mean /= n;
    for (int i = 0; i < n; i++)
        var += (v[i] - mean) * (v[i] - mean);
    var /= n;
    double inv = 1.0 / sqrt(var + 1e-5);
    for (int i = 0; i < n; i++)
        v[i] = (v[i] - mean) * inv * gain[i] + bias[i];
}

static double gelu_d(double v) { return 0.5 * v * (1.0 + erf(v * 0.70710678118654752440)); }

/* f(t, v) of docs/MODEL.md into f (S values); work holds 2S + H + H/2 doubles. */
static void cnf_f(const float *const *t, int S, int H, double time, const double *v,
                  const double *m, double *f, double *work) {
    double *in = work;      /* [v, m], 2S */
    double *h = in + 2 * S; /* H */
    double *h2 = h + H;     /* H/2 */

    memcpy(in, v, (size_t)S * sizeof *in);
    memcpy(in + S, m, (size_t)S * sizeof *in);
    layernorm_d(in, 2 * S, t[CNF_IN_G], t[CNF_IN_B]);
    dense_d(t[CNF_W0], t[CNF_B0], in, 2 * S, h, H);
    for (int i = 0; i < H; i++)
        h[i] = gelu_d(h[i]);
    dense_d(t[CNF_W3], t[CNF_B3], h, H, h2, H / 2);
    for (int i = 0; i < H / 2; i++)
        h2[i] = gelu_d(h2[i]);
    dense_d(t[CNF_W5], t[CNF_B5], h2, H / 2, f, S);
    /* pad_S(T t): the time embedding fills the first floor(H/4) entries. */
    for (int i = 0; i < H / 4; i++)
        f[i] += t[CNF_TIME_W][i] * time;
    layernorm_d(f, S, t[CNF_OUT_G], t[CNF_OUT_B]);
    double damping = fabs((double)t[CNF_GAMMA][0]);
    for (int i = 0; i < S; i++)
        f[i] -= damping * v[i];
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

void cnf_host_run(const float *const *t, int S, int H, int K, int mode, const float *x,
                  const float *m, float *out, float *scratch) {
    double *work = (double *)(((uintptr_t)scratch + 7) & ~(uintptr_t)7);
    double *v = work + 2 * S + H + H / 2;
    double *f = v + S, *ve = f + S, *fe = ve + S, *md = fe + S;

    for (int s = 0; s < S; s++) {
        v[s] = x[s];
        md[s] = m[s];
    }
    for (int k = 0; k < K; k++) {
        double time = (double)k / K;
        cnf_f(t, S, H, time, v, md, f, work);
        double dt = 1.0 / K;
        if (mode == 1) {
            /* Finite-difference Lipschitz estimate along eps_s = 1e-4 (-1)^s. */
            for (int s = 0; s < S; s++)
                ve[s] = v[s] + ((s % 2) ? -1e-4 : 1e-4);
            cnf_f(t, S, H, time, ve, md, fe, work);
            double num = 0.0;
            for (int s = 0; s < S; s++)
                num += (fe[s] - f[s]) * (fe[s] - f[s]);
            double lk = sqrt(num) / (1e-4 * sqrt((double)S) + 1e-8);
            double lambda = clampd(t[CNF_LAMBDA][0], 0.1, 1.0);
            dt = clampd(lambda / (lk + 1e-6), 0.001, 0.5);
        }
        for (int s = 0; s < S; s++)
            v[s] += dt * f[s];
    }
    for (int s = 0; s < S; s++)
        out[s] = (float)v[s];
}
