/* The local expert's tensor layout and hidden sizes, shared by its forward
 * (local_expert.c) and its backward (local_backward.c). */
#ifndef MOELAT_LOCAL_EXPERT_H
#define MOELAT_LOCAL_EXPERT_H

#include "moelat/expert_abi.h"

/* Declaration order of the tensors (the engine stores them in this order). */
enum {
    L_AGG0_W, L_AGG0_B, /* neighbor_aggregator.0: S -> h1 */
    L_AGG2_W, L_AGG2_B, /* neighbor_aggregator.2: h1 -> h2 */
    L_SP0_W, L_SP0_B,   /* state_processor.0: S + h2 -> ph */
    L_SP2_W, L_SP2_B,   /* state_processor.2: ph -> S */
    L_ALPHA, L_BETA,
    L_NORM_G, L_NORM_B, /* normalization over S */
    L_N_TENSORS
};

#define H1(d) ((d)->hidden[0])
#define H2(d) ((d)->hidden[1])
#define PH(d) ((d)->hidden[2])

/* The "moelat.backward.host/1" extension (local_backward.c). */
const moelat_backward_host *local_backward_host(void);

#endif
