#define MLB_HOST_FLOAT32 1 /* this unit's backward_math is float32 (the gate's GELU, LayerNorm, softmax) */
#include "core/gate.h"

#include <stdio.h>
#include <string.h>

#include "backward_math.h"

#include "moelat/moelat.h"

static void spec(moelat_tensor_spec *s, const char *suffix, int ndim, int d0, int d1, int init,
                 int fan_in, float value) {
    memset(s, 0, sizeof *s);
    snprintf(s->suffix, sizeof s->suffix, "%s", suffix);
    s->ndim = ndim;
    s->shape[0] = d0;
    s->shape[1] = d1;
    s->init = init;
    s->fan_in = fan_in;
    s->value = value;
}

void ml_gate_specs(int S, int gh, moelat_tensor_spec *specs) {
    const int K = MOELAT_BANDS;
    spec(&specs[GATE_W0], "gating_network.0.weight", 2, gh, 2 * S, MOELAT_INIT_UNIFORM_FAN_IN, 2 * S, 0);
    spec(&specs[GATE_B0], "gating_network.0.bias", 1, gh, 0, MOELAT_INIT_UNIFORM_FAN_IN, 2 * S, 0);
    spec(&specs[GATE_W2], "gating_network.2.weight", 2, K, gh, MOELAT_INIT_UNIFORM_FAN_IN, gh, 0);
    spec(&specs[GATE_B2], "gating_network.2.bias", 1, K, 0, MOELAT_INIT_UNIFORM_FAN_IN, gh, 0);
    spec(&specs[GATE_LN_W], "context_norm.weight", 1, S, 0, MOELAT_INIT_CONST, 0, 1.0f);
    spec(&specs[GATE_LN_B], "context_norm.bias", 1, S, 0, MOELAT_INIT_CONST, 0, 0.0f);
}

void ml_gate_host(const ml_param_block *gate, int S, int gh, const float *x, const float *nu,
                  float *w, float *scratch) {
    float *in = scratch;          /* [LN_g(x), nu]: 2S */
    float *hidden = scratch + 2 * S; /* gh */
    float *xhat = hidden + gh;    /* S */
    const float *const *t = (const float *const *)gate->tensors;

    (void)bm_layernorm(x, S, t[GATE_LN_W], t[GATE_LN_B], xhat, in);
    for (int s = 0; s < S; s++)
        in[S + s] = nu[s];
    for (int o = 0; o < gh; o++) {
        float acc = t[GATE_B0][o];
        for (int i = 0; i < 2 * S; i++)
            acc += t[GATE_W0][o * 2 * S + i] * in[i];
        hidden[o] = bm_gelu(acc);
    }
    for (int k = 0; k < MOELAT_BANDS; k++) {
        float acc = t[GATE_B2][k];
        for (int i = 0; i < gh; i++)
            acc += t[GATE_W2][k * gh + i] * hidden[i];
        w[k] = acc;
    }
    bm_softmax(w, MOELAT_BANDS);
}
