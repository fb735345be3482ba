/* The gate (docs/MODEL.md, "Gate and update"): w = softmax over the bands of
 * L(gh->K)(GELU(L(2S->gh)([LN_g(x), nu]))). Its tensors are the block
 * "gating_network." of the weights file. */
#ifndef MOELAT_GATE_H
#define MOELAT_GATE_H

#include"core/gate_tensors.h" /* GATE_* tensor indices */
#include "core/params.h"

/* Fills specs[GATE_N_TENSORS] for state size S and gate hidden gh. */
void ml_gate_specs(int S, int gh, moelat_tensor_spec *specs);

/* Host gate for one cell: w[MOELAT_BANDS]. scratch holds 3*S + gh floats. */
void ml_gate_host(const ml_param_block *gate, int S, int gh, const float *x, const float *nu,
                  float *w, float *scratch);

#endif
