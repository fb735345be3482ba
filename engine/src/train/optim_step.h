/* One optimizer step's scalars and the gradient norm's summation order,
 * shared by the host optimizer (optim.c) and the device one
 * (backend/opencl/optim_cl.c), so that both compute the same float32
 * values: whatever is done in double on the host per step (schedule, bias
 * corrections, the clip coefficient) is done here once and handed to
 * either side already rounded to float. */
#ifndef MOELAT_OPTIM_STEP_H
#define MOELAT_OPTIM_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "moelat/optim.h"

/* The gradient's sum of squares is taken in ML_NORM_BLOCKS contiguous
 * blocks of ml_norm_block(n) values each (the last shorter), each summed in
 * index order, the block sums then added in block order: one order for the
 * host and for a device that sums the blocks in parallel. */
#define ML_NORM_BLOCKS 256
size_t ml_norm_block(size_t n);

/* The float32 operands of step t (1-based) of AdamW or SGD, as optim.c's
 * updates use them. */
typedef struct ml_optim_scalars {
    int32_t kind;     /* moelat_optimizer_kind */
    double lr;        /* the schedule's rate for this step */
    /* AdamW */
    float decay;      /* 1 - lr * weight_decay */
    float b1, b2, one_b1, one_b2;
    float neg_step_size; /* -(lr / (1 - beta1^t)) */
    float bc2_sqrt;   /* sqrt(1 - beta2^t) */
    float eps;
    /* SGD */
    float wd, mom, neg_lr;
    int32_t first;    /* t == 1: the momentum buffer starts as the gradient */
} ml_optim_scalars;

void ml_optim_scalars_of(const moelat_optimizer_config *c, uint64_t t, ml_optim_scalars *s);

/* The clip factor for a gradient of global norm `norm`: 1 when clipping is
 * off or not needed (no scaling then), else clip_norm / (norm + 1e-6) as
 * float (clip_grad_norm_). */
float ml_optim_clip_factor(const moelat_optimizer_config *c, double norm);

/* For a step taken elsewhere (the device): the scalars of the next step,
 * and the step counter advanced as moelat_optimizer_step would; the host
 * moments are not touched (the caller keeps them elsewhere). */
void ml_optimizer_advance(moelat_optimizer *opt, ml_optim_scalars *s);

#endif
