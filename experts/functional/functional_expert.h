/* The functional expert's tensor layout and hidden sizes, shared by its
 * forward (functional_expert.c) and its backward (functional_backward.c);
 * plain C and OpenCL C alike (the device backward is built from it). */
#ifndef MOELAT_FUNCTIONAL_EXPERT_H
#define MOELAT_FUNCTIONAL_EXPERT_H

#ifndef __OPENCL_VERSION__
#include "cnf_host.h"
#include "moelat/expert_abi.h"
#else
/* OpenCL C (the device backward): the text of cnf_tensors.h comes first. */
#endif

/* Declaration order of the tensors; functional.cl's FN_* indices match. */
enum {
    F_G0_W, F_G0_B,   /* adaptive_gating.gating_network.0: 2S -> S/2 */
    F_G2_W, F_G2_B,   /* adaptive_gating.gating_network.2: S/2 -> 1 */
    F_MC0_W, F_MC0_B, /* message_creator.0: [n_j, x] 2S -> hd */
    F_MC2_W, F_MC2_B, /* message_creator.2: hd -> md */
    F_AT0_W, F_AT0_B, /* attention_network.0: [m_j, x] md + S -> md */
    F_AT2_W, F_AT2_B, /* attention_network.2: md -> 1 */
    F_UG_W, F_UG_B,   /* state_updater.update_gate: S + md + E -> S */
    F_RG_W, F_RG_B,   /* state_updater.reset_gate */
    F_CN_W, F_CN_B,   /* state_updater.candidate_network */
    F_CNF,            /* cnf_component.*: CNF_N_TENSORS tensors */
    F_RP0_W = F_CNF + CNF_N_TENSORS, F_RP0_B, /* result_processor.0: 2S -> S */
    F_RP1_G, F_RP1_B, /* result_processor.1: LayerNorm over S */
    F_N_TENSORS
};

#define HD(d) ((d)->hidden[0])
#define MD(d) ((d)->hidden[1])
#define ODE_H(d) ((d)->hidden[2])

#ifndef __OPENCL_VERSION__
/* The "moelat.backward.host/1" and "moelat.backward.cl/1" extensions
 * (functional_backward.c). */
const moelat_backward_host *functional_backward_host(void);
const moelat_backward_cl *functional_backward_cl(void);
#endif

#endif
