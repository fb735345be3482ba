/*
 * Optimizers over a flat float32 parameter vector: AdamW (as PyTorch's
 * torch.optim.AdamW: moments in float32, bias correction, decoupled weight
 * decay) and SGD with momentum (as torch.optim.SGD), with optional gradient
 * clipping by global L2 norm (as torch.nn.utils.clip_grad_norm_) and a
 * learning-rate schedule (constant, or linear warm-up then cosine decay).
 *
 * The parameter vector is whatever the caller optimizes; for a lattice it
 * is moelat_get_weights()'s flat array, whose gradient moelat_grad_weights()
 * returns in the same order. The optimizer holds only its own state (the
 * moments and the step counter), which moelat_optimizer_get_state() and
 * moelat_optimizer_set_state() move in and out so that a training run
 * resumes bit-exactly.
 */
#ifndef MOELAT_OPTIM_H
#define MOELAT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "moelat/api.h"
#include "moelat/moelat.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum moelat_optimizer_kind {
    MOELAT_OPT_ADAMW = 0,
    MOELAT_OPT_SGD = 1
} moelat_optimizer_kind;

typedef struct moelat_optimizer_config {
    int32_t kind;          /* moelat_optimizer_kind */
    double lr;             /* peak learning rate, > 0 */
    double weight_decay;   /* AdamW: decoupled (p -= lr*wd*p); SGD: added to the gradient */
    double beta1, beta2;   /* AdamW moment decays, in [0, 1) */
    double eps;            /* AdamW denominator term, > 0 */
    double momentum;       /* SGD, in [0, 1); 0 = plain SGD */
    double clip_norm;      /* > 0: scale gradients to at most this global L2 norm; 0 = off */
    /* Schedule: steps 1..warmup_steps ramp linearly from lr/warmup_steps to
     * lr; then, when total_steps > warmup_steps, cosine decay from lr to
     * min_lr at step total_steps (held there after). total_steps 0 keeps
     * lr after the warm-up. */
    int64_t warmup_steps;
    int64_t total_steps;
    double min_lr;
} moelat_optimizer_config;

/* PyTorch's AdamW defaults except the rate and decay the lattice was
 * trained with: lr 1e-4, weight decay 1e-5, betas (0.9, 0.999), eps 1e-8,
 * no clipping, constant rate. */
MOELAT_API void moelat_optimizer_defaults(moelat_optimizer_config *cfg, moelat_optimizer_kind kind);

typedef struct moelat_optimizer moelat_optimizer;

/* n_params floats are optimized. Every config value is range-checked; on
 * failure *out is NULL and err names the field and its range. */
MOELAT_API moelat_status moelat_optimizer_create(const moelat_optimizer_config *cfg, size_t n_params,
                                      moelat_optimizer **out, char *err, size_t errlen);
MOELAT_API void moelat_optimizer_destroy(moelat_optimizer *opt);
MOELAT_API const char *moelat_optimizer_last_error(const moelat_optimizer *opt);

/* One update of params (n_params floats) from grads (not changed). With
 * clipping the global norm is computed before the update and, when above
 * clip_norm, the gradient is scaled down as clip_grad_norm_ does. A
 * non-finite gradient norm is MOELAT_ERR_NONFINITE and leaves params and
 * the state unchanged. *grad_norm (may be NULL) receives the norm before
 * clipping. */
MOELAT_API moelat_status moelat_optimizer_step(moelat_optimizer *opt, float *params, const float *grads,
                                    double *grad_norm);

/* Steps taken so far, and the learning rate the next step will use. */
MOELAT_API uint64_t moelat_optimizer_steps(const moelat_optimizer *opt);
MOELAT_API double moelat_optimizer_next_lr(const moelat_optimizer *opt);

/* The state: step counter and moments (AdamW: exp_avg and exp_avg_sq;
 * SGD: the momentum buffer in m, v unused). Arrays hold n_params floats;
 * m or v may be NULL when not wanted. */
MOELAT_API size_t moelat_optimizer_param_count(const moelat_optimizer *opt);
MOELAT_API moelat_status moelat_optimizer_get_state(const moelat_optimizer *opt, uint64_t *step, float *m, float *v);
MOELAT_API moelat_status moelat_optimizer_set_state(moelat_optimizer *opt, uint64_t step, const float *m, const float *v);

/* The moments as a safetensors file (float32 [n_params] tensors
 * "exp_avg" and "exp_avg_sq" for AdamW, "momentum_buffer" for SGD),
 * written atomically. The step counter is the caller's to keep (a
 * training checkpoint's manifest holds it): load sets it to step. */
MOELAT_API moelat_status moelat_optimizer_save(const moelat_optimizer *opt, const char *path, char *err, size_t errlen);
MOELAT_API moelat_status moelat_optimizer_load(moelat_optimizer *opt, const char *path, uint64_t step, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* MOELAT_OPTIM_H */
