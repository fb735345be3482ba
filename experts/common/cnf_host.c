/* The CNF's float path: its forward is cnf_backward.c's text, compiled here
 * with float tensors and double arithmetic (MLB_HOST_F32_TENSORS), without
 * the adjoint (CNF_FORWARD_ONLY). */
#define MLB_HOST_F32_TENSORS 1
#define CNF_FORWARD_ONLY 1
#include "cnf_backward.c"

#include "cnf_host.h"

#include <stdint.h>
#include <stdio.h>

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
    return fwd_doubles(S, H) /* f's intermediates */ + 5 * (size_t)S /* v, f, ve, fe, m */;
}

size_t cnf_scratch_floats(int S, int H) {
    return 2 * cnf_doubles(S, H) + 2; /* + 2: room to align to a double */
}

void cnf_host_run(const float *const *t, int S, int H, int K, int mode, const float *x,
                  const float *m, float *out, float *scratch) {
    double *work = (double *)(((uintptr_t)scratch + 7) & ~(uintptr_t)7);
    double *v = work + fwd_doubles(S, H);
    double *f = v + S, *ve = f + S, *fe = ve + S, *md = fe + S;

    for (int s = 0; s < S; s++) {
        v[s] = x[s];
        md[s] = m[s];
    }
    cnf_steps(t, S, H, K, mode, 0, v, md, f, ve, fe, work);
    for (int s = 0; s < S; s++)
        out[s] = (float)v[s];
}
