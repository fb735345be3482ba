/* The local expert's tensor layout and hidden sizes, shared by its forward
 * (local_expert.c) and its backward (local_backward.c); plain C and OpenCL
 * C alike (the device backward is built from it). */
#ifndef MOELAT_LOCAL_EXPERT_H
#define MOELAT_LOCAL_EXPERT_H

#ifndef __OPENCL_VERSION__
#include "moelat/expert_abi.h"
#endif

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

#ifndef __OPENCL_VERSION__
/* The "moelat.backward.host/1" and "moelat.backward.cl/1" extensions
 * (local_backward.c). */
const moelat_backward_host *local_backward_host(void);
const moelat_backward_cl *local_backward_cl(void);
#endif

#endif
