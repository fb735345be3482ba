/* Optimizers of moelat/optim.h. The arithmetic follows PyTorch's single-
 * tensor CPU path operation by operation (each tensor operation rounds to
 * float32, Python scalars enter as float32), so that a trajectory matches
 * torch.optim.AdamW's to float32 rounding; tests/test_optim.c holds one
 * computed by PyTorch. */
#include "moelat/optim.h"
#include "train/optim_step.h"

#include"base/file_util.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct moelat_optimizer {
    moelat_optimizer_config cfg;
    size_t n;
    uint64_t step;
    float *m; /* AdamW exp_avg, or SGD momentum buffer */
    float *v; /* AdamW exp_avg_sq */
    float *g; /* the step's gradient after weight decay and clipping */
    char err[256];
};

void moelat_optimizer_defaults(moelat_optimizer_config *cfg, moelat_optimizer_kind kind) {
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->lr = 1e-4;
    cfg->weight_decay = 1e-5;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->momentum = kind == MOELAT_OPT_SGD ? 0.9 : 0.0;
}

/* Writes the message and returns MOELAT_ERR_INVALID. */
#define fail(err, errlen, ...) (ml_errf((err), (errlen), __VA_ARGS__), MOELAT_ERR_INVALID)

/* Checks lo <= v < hi (hi_open) or lo <= v <= hi, and finiteness. */
static int in_range(double v, double lo, double hi, int hi_open) {
    return isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi);
}

static moelat_status validate(const moelat_optimizer_config *c, char *err, size_t errlen) {
    if (c->kind != MOELAT_OPT_ADAMW && c->kind != MOELAT_OPT_SGD)
        return fail(err, errlen, "optimizer: kind %d is neither AdamW (0) nor SGD (1)", (int)c->kind);
    if (!in_range(c->lr, 0, 10, 0) || c->lr <= 0)
        return fail(err, errlen, "optimizer: lr %g is outside (0, 10]", c->lr);
    if (!in_range(c->weight_decay, 0, 1, 0))
        return fail(err, errlen, "optimizer: weight_decay %g is outside [0, 1]", c->weight_decay);
    if (c->kind == MOELAT_OPT_ADAMW) {
        if (!in_range(c->beta1, 0, 1, 1))
            return fail(err, errlen, "optimizer: beta1 %g is outside [0, 1)", c->beta1);
        if (!in_range(c->beta2, 0, 1, 1))
            return fail(err, errlen, "optimizer: beta2 %g is outside [0, 1)", c->beta2);
        if (!in_range(c->eps, 0, 1, 0) || c->eps <= 0)
            return fail(err, errlen, "optimizer: eps %g is outside (0, 1]", c->eps);
    } else if (!in_range(c->momentum, 0, 1, 1)) {
        return fail(err, errlen, "optimizer: momentum %g is outside [0, 1)", c->momentum);
    }
    if (!in_range(c->clip_norm, 0, 1e30, 0))
        return fail(err, errlen, "optimizer: clip_norm %g is outside [0, 1e30] (0 = off)", c->clip_norm);
    if (c->warmup_steps < 0 || c->total_steps < 0)
        return fail(err, errlen, "optimizer: warmup_steps %lld and total_steps %lld must be >= 0",
                    (long long)c->warmup_steps, (long long)c->total_steps);
    if (!in_range(c->min_lr, 0, c->lr, 0))
        return fail(err, errlen, "optimizer: min_lr %g is outside [0, lr = %g]", c->min_lr, c->lr);
    return MOELAT_OK;
}

moelat_status moelat_optimizer_create(const moelat_optimizer_config *cfg, size_t n_params,
                                      moelat_optimizer **out, char *err, size_t errlen) {
    *out = NULL;
    moelat_status st = validate(cfg, err, errlen);
    if (st != MOELAT_OK)
        return st;
    if (n_params == 0)
        return fail(err, errlen, "optimizer: no parameters to optimize");
    moelat_optimizer *o = calloc(1, sizeof *o);
    if (o) {
        o->m = calloc(n_params, sizeof(float));
        o->v = cfg->kind == MOELAT_OPT_ADAMW ? calloc(n_params, sizeof(float)) : NULL;
        o->g = malloc(n_params * sizeof(float));
    }
    if (!o || !o->m || !o->g || (cfg->kind == MOELAT_OPT_ADAMW && !o->v)) {
        moelat_optimizer_destroy(o);
        if (err && errlen)
            snprintf(err, errlen, "optimizer: out of memory for the state of %zu parameters (%zu bytes)",
                     n_params, n_params * 3 * sizeof(float));
        return MOELAT_ERR_NOMEM;
    }
    o->cfg = *cfg;
    o->n = n_params;
    *out = o;
    return MOELAT_OK;
}

void moelat_optimizer_destroy(moelat_optimizer *opt) {
    if (!opt)
        return;
    free(opt->m);
    free(opt->v);
    free(opt->g);
    free(opt);
}

const char *moelat_optimizer_last_error(const moelat_optimizer *opt) { return opt ? opt->err : ""; }

/* The learning rate of step t (1-based). */
static double schedule(const moelat_optimizer_config *c, uint64_t t) {
    if (c->warmup_steps > 0 && t <= (uint64_t)c->warmup_steps)
        return c->lr * (double)t / (double)c->warmup_steps;
    if (c->total_steps > c->warmup_steps) {
        double progress = (double)(t - (uint64_t)c->warmup_steps) / (double)(c->total_steps - c->warmup_steps);
        if (progress > 1)
            progress = 1;
        return c->min_lr + 0.5 * (c->lr - c->min_lr) * (1 + cos(M_PI * progress));
    }
    return c->lr;
}

double moelat_optimizer_next_lr(const moelat_optimizer *opt) { return schedule(&opt->cfg, opt->step + 1); }
uint64_t moelat_optimizer_steps(const moelat_optimizer *opt) { return opt->step; }
size_t moelat_optimizer_param_count(const moelat_optimizer *opt) { return opt->n; }

size_t ml_norm_block(size_t n) { return (n + ML_NORM_BLOCKS - 1) / ML_NORM_BLOCKS; }

/* The global L2 norm, summed in double in ml_norm_block's order (the
 * device's too: deterministic, and the same on both). */
static double global_norm(const float *g, size_t n) {
    size_t blk = ml_norm_block(n);
    double s = 0;
    for (size_t b0 = 0; b0 < n; b0 += blk) {
        double part = 0;
        for (size_t i = b0; i < n && i < b0 + blk; i++)
            part += (double)g[i] * g[i];
        s += part;
    }
    return sqrt(s);
}

void ml_optim_scalars_of(const moelat_optimizer_config *c, uint64_t t, ml_optim_scalars *s) {
    double lr = schedule(c, t);
    memset(s, 0, sizeof *s);
    s->kind = c->kind;
    s->lr = lr;
    s->decay = (float)(1.0 - lr * c->weight_decay);
    s->b1 = (float)c->beta1;
    s->b2 = (float)c->beta2;
    s->one_b1 = (float)(1.0 - c->beta1);
    s->one_b2 = (float)(1.0 - c->beta2);
    double bc1 = 1.0 - pow(c->beta1, (double)t);
    double bc2 = 1.0 - pow(c->beta2, (double)t);
    s->neg_step_size = -(float)(lr / bc1);
    s->bc2_sqrt = (float)sqrt(bc2);
    s->eps = (float)c->eps;
    s->wd = (float)c->weight_decay;
    s->mom = (float)c->momentum;
    s->neg_lr = (float)-lr;
    s->first = t == 1;
}

float ml_optim_clip_factor(const moelat_optimizer_config *c, double norm) {
    if (c->clip_norm <= 0)
        return 1.0f;
    /* clip_grad_norm_: coefficient max_norm / (norm + 1e-6), clamped at 1. */
    double coef = c->clip_norm / (norm + 1e-6);
    return coef < 1 ? (float)coef : 1.0f;
}

void ml_optimizer_advance(moelat_optimizer *opt, ml_optim_scalars *s) {
    ml_optim_scalars_of(&opt->cfg, opt->step + 1, s);
    opt->step++;
}

/* The updates: each line one float32 operation of PyTorch's, in its
 * order (kernels_cl/moelat_optim.cl repeats them for the device). */
static void adamw_update(moelat_optimizer *o, float *p, const ml_optim_scalars *s) {
    for (size_t i = 0; i < o->n; i++) {
        float g = o->g[i];
        p[i] = p[i] * s->decay;
        float m = o->m[i] * s->b1;
        m = m + s->one_b1 * g;
        float v = o->v[i] * s->b2;
        v = v + s->one_b2 * (g * g);
        o->m[i] = m;
        o->v[i] = v;
        float denom = sqrtf(v) / s->bc2_sqrt + s->eps;
        p[i] = p[i] + s->neg_step_size * (m / denom);
    }
}

static void sgd_update(moelat_optimizer *o, float *p, const ml_optim_scalars *s) {
    for (size_t i = 0; i < o->n; i++) {
        float d = o->g[i];
        if (s->wd != 0)
            d = d + s->wd * p[i];
        if (s->mom != 0) {
            d = s->first ? d : o->m[i] * s->mom + d;
            o->m[i] = d;
        }
        p[i] = p[i] + s->neg_lr * d;
    }
}

moelat_status moelat_optimizer_step(moelat_optimizer *opt, float *params, const float *grads, double *grad_norm) {
    if (!opt || !params || !grads)
        return MOELAT_ERR_INVALID;
    double norm = global_norm(grads, opt->n);
    if (grad_norm)
        *grad_norm = norm;
    if (!isfinite(norm)) {
        snprintf(opt->err, sizeof opt->err, "optimizer: the gradient's norm is %g at step %llu; nothing updated",
                 norm, (unsigned long long)opt->step + 1);
        return MOELAT_ERR_NONFINITE;
    }
    memcpy(opt->g, grads, opt->n * sizeof(float));
    float cf = ml_optim_clip_factor(&opt->cfg, norm);
    if (cf < 1)
        for (size_t i = 0; i < opt->n; i++)
            opt->g[i] *= cf;
    ml_optim_scalars s;
    ml_optimizer_advance(opt, &s);
    if (opt->cfg.kind == MOELAT_OPT_ADAMW)
        adamw_update(opt, params, &s);
    else
        sgd_update(opt, params, &s);
    return MOELAT_OK;
}

moelat_status moelat_optimizer_get_state(const moelat_optimizer *opt, uint64_t *step, float *m, float *v) {
    if (!opt)
        return MOELAT_ERR_INVALID;
    if (step)
        *step = opt->step;
    if (m)
        memcpy(m, opt->m, opt->n * sizeof(float));
    if (v) {
        if (opt->v)
            memcpy(v, opt->v, opt->n * sizeof(float));
        else
            memset(v, 0, opt->n * sizeof(float));
    }
    return MOELAT_OK;
}

moelat_status moelat_optimizer_set_state(moelat_optimizer *opt, uint64_t step, const float *m, const float *v) {
    if (!opt || !m || (opt->v && !v))
        return MOELAT_ERR_INVALID;
    for (size_t i = 0; i < opt->n; i++)
        if (!isfinite(m[i]) || (opt->v && (!isfinite(v[i]) || v[i] < 0))) {
            snprintf(opt->err, sizeof opt->err, "optimizer state: %s[%zu] = %g is not a valid moment",
                     !isfinite(m[i]) ? "m" : "v", i, !isfinite(m[i]) ? m[i] : v[i]);
            return MOELAT_ERR_FORMAT;
        }
    opt->step = step;
    memcpy(opt->m, m, opt->n * sizeof(float));
    if (opt->v)
        memcpy(opt->v, v, opt->n * sizeof(float));
    return MOELAT_OK;
}

moelat_status moelat_optimizer_save(const moelat_optimizer *opt, const char *path, char *err, size_t errlen) {
    int adamw = opt->cfg.kind == MOELAT_OPT_ADAMW;
    st_tensor t[2] = {{.ndim = 1, .shape = {(int64_t)opt->n}, .data = opt->m, .numel = opt->n},
                      {.name = "exp_avg_sq", .ndim = 1, .shape = {(int64_t)opt->n}, .data = opt->v, .numel = opt->n}};
    snprintf(t[0].name, sizeof t[0].name, "%s", adamw ? "exp_avg" : "momentum_buffer");
    return st_write(path, t, adamw ? 2 : 1, err, errlen) == 0 ? MOELAT_OK : MOELAT_ERR_IO;
}

moelat_status moelat_optimizer_load(moelat_optimizer *opt, const char *path, uint64_t step, char *err, size_t errlen) {
    st_file f = {0};
    if (st_read(path, &f, err, errlen) != 0)
        return MOELAT_ERR_FORMAT;
    int adamw = opt->cfg.kind == MOELAT_OPT_ADAMW;
    const char *mname = adamw ? "exp_avg" : "momentum_buffer";
    const st_tensor *m = st_find(&f, mname), *v = adamw ? st_find(&f, "exp_avg_sq") : NULL;
    moelat_status st = MOELAT_OK;
    if (!m || m->numel != opt->n || (adamw && (!v || v->numel != opt->n))) {
        snprintf(err, errlen, "%s: expected the %s tensor%s '%s'%s of %zu values", path, adamw ? "AdamW" : "SGD",
                 adamw ? "s" : "", mname, adamw ? " and 'exp_avg_sq'" : "", opt->n);
        st = MOELAT_ERR_FORMAT;
    } else if ((st = moelat_optimizer_set_state(opt, step, m->data, v ? v->data : NULL)) != MOELAT_OK) {
        snprintf(err, errlen, "%s: %s", path, opt->err);
    }
    st_free(&f);
    return st;
}
