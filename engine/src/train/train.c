/* The trainer of moelat/train.h: parameters, data, the per-sample forward
 * and backward, mini-batches, epochs and fit. Checkpoints are in
 * train_ckpt.c, data sets in train_data.c. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/file_util.h"
#include "grad/grad.h"
#include "train/train_ckpt.h"
#include "train/train_internal.h"

moelat_status ml_train_fail(moelat_trainer *t, moelat_status status, const char *fmt, ...) {
    char buf[sizeof t->err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(t->err, buf, sizeof buf);
    return status;
}

int ml_train_history_add(ml_train_history *h, moelat_train_point p) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        moelat_train_point *nv = realloc(h->v, nc * sizeof *nv);
        if (!nv)
            return -1;
        h->v = nv;
        h->cap = nc;
    }
    h->v[h->n++] = p;
    return 0;
}

const char *ml_train_loss_name(int32_t kind) {
    return kind == MOELAT_LOSS_OUTPUT_FACE_MSE ? "output_face_mse"
           : kind == MOELAT_LOSS_ALL_CELLS_MSE ? "all_cells_mse"
           : kind == MOELAT_LOSS_CALLBACK      ? "callback"
                                               : "?";
}

uint64_t ml_train_samples_at(const moelat_trainer *t, int64_t e, int64_t b) {
    int64_t in_epoch = b * (int64_t)t->p.batch_size;
    if (in_epoch > t->n_train)
        in_epoch = t->n_train;
    return (uint64_t)e * (uint64_t)t->n_train + (uint64_t)in_epoch;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void moelat_train_params_default(moelat_train_params *p) {
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->steps = 2;
    p->loss = MOELAT_LOSS_OUTPUT_FACE_MSE;
    moelat_optimizer_defaults(&p->optimizer, MOELAT_OPT_ADAMW);
    p->batch_size = 8;
    p->epochs = 10;
    p->val_fraction = 0.2;
}

/* The first parameter out of range, or NULL. */
static const char *check_params(const moelat_train_params *p, char *why, size_t len) {
    if (p->steps < 1 || p->steps > 100000)
        snprintf(why, len, "steps %d is outside [1, 100000]", p->steps);
    else if (p->grad_checkpoint_every < 0 || p->grad_checkpoint_every > 100000)
        snprintf(why, len, "grad_checkpoint_every %d is outside [0, 100000] (0 = automatic)",
                 p->grad_checkpoint_every);
    else if (p->loss < MOELAT_LOSS_OUTPUT_FACE_MSE || p->loss > MOELAT_LOSS_CALLBACK)
        snprintf(why, len, "loss %d is not a moelat_loss_kind", p->loss);
    else if (p->loss == MOELAT_LOSS_CALLBACK && !p->loss_fn)
        snprintf(why, len, "loss MOELAT_LOSS_CALLBACK needs loss_fn");
    else if (p->batch_size < 1 || p->batch_size > 1000000)
        snprintf(why, len, "batch_size %d is outside [1, 1000000]", p->batch_size);
    else if (p->epochs < 1 || p->epochs > 1000000)
        snprintf(why, len, "epochs %d is outside [1, 1000000]", p->epochs);
    else if (!(p->val_fraction >= 0 && p->val_fraction <= 0.9))
        snprintf(why, len, "val_fraction %g is outside [0, 0.9]", p->val_fraction);
    else if (p->checkpoint_every < 0)
        snprintf(why, len, "checkpoint_every %d is negative", p->checkpoint_every);
    else if (p->checkpoint_dir && (!*p->checkpoint_dir || strlen(p->checkpoint_dir) >= 4000))
        snprintf(why, len, "checkpoint_dir is empty or longer than 4000 bytes");
    else if (p->cosine != 0 && p->cosine != 1)
        snprintf(why, len, "cosine %d is neither 0 nor 1", p->cosine);
    else if (p->ranks < 0 || p->ranks > 1000000 || p->rank < 0 || p->rank >= (p->ranks > 1 ? p->ranks : 1))
        snprintf(why, len, "rank %d of %d ranks: ranks must be in [0, 1000000] and rank in [0, ranks)", p->rank,
                 p->ranks);
    else if (p->ranks > 1 && !p->reduce)
        snprintf(why, len, "%d ranks need a reduce function", p->ranks);
    else
        return NULL;
    return why;
}

void moelat_trainer_destroy(moelat_trainer *t) {
    if (!t)
        return;
    moelat_grad_destroy(t->rec);
    moelat_optimizer_destroy(t->opt);
    free(t->states0);
    free(t->sT);
    free(t->dstates);
    free(t->g);
    free(t->gsum);
    free(t->red);
    free(t->w);
    free(t->out);
    free(t->order);
    free(t->train.v);
    free(t->val.v);
    free(t);
}

const char *moelat_trainer_last_error(const moelat_trainer *t) { return t ? t->err : "no trainer"; }

moelat_status moelat_trainer_create(moelat_lattice *lat, const moelat_train_params *params, moelat_trainer **out,
                                    char *err, size_t errlen) {
    if (out)
        *out = NULL;
    if (!lat || !out || !params) {
        ml_errf(err, errlen, "moelat_trainer_create: %s", !lat ? "no lattice" : !out ? "no place for the trainer"
                                                                                   : "no parameters");
        return MOELAT_ERR_INVALID;
    }
    if (params->struct_size < MOELAT_TRAIN_PARAMS_SIZE_V1 || params->struct_size > sizeof *params) {
        ml_errf(err, errlen, "moelat_train_params: struct_size %u is outside [%zu, %zu] (moelat_train_params_default "
                "sets it)", params->struct_size, (size_t)MOELAT_TRAIN_PARAMS_SIZE_V1, sizeof *params);
        return MOELAT_ERR_INVALID;
    }
    char why[256];
    if (check_params(params, why, sizeof why)) {
        ml_errf(err, errlen, "training parameters: %s", why);
        return MOELAT_ERR_INVALID;
    }
    moelat_trainer *t = calloc(1, sizeof *t);
    if (!t) {
        ml_errf(err, errlen, "out of memory for the trainer");
        return MOELAT_ERR_NOMEM;
    }
    t->lat = lat;
    /* The caller's layout (struct_size) over the defaults of later fields. */
    moelat_train_params_default(&t->p);
    memcpy(&t->p, params, params->struct_size);
    if (params->checkpoint_dir)
        snprintf(t->checkpoint_dir, sizeof t->checkpoint_dir, "%s", params->checkpoint_dir);
    t->p.checkpoint_dir = params->checkpoint_dir ? t->checkpoint_dir : NULL;
    t->opt_cfg = params->optimizer;
    t->N = moelat_cell_count(lat);
    t->S = (size_t)moelat_state_size(lat);
    t->n_weights = moelat_weights_count(lat);
    const moelat_config *c = moelat_lattice_config(lat);
    t->face = (size_t)c->dims[0] * (size_t)c->dims[1] * t->S;
    size_t ns = t->N * t->S;
    t->states0 = calloc(ns, sizeof(float));
    t->sT = malloc(ns * sizeof(float));
    t->dstates = malloc(ns * sizeof(float));
    t->out = malloc(t->face * sizeof(float));
    t->g = malloc(t->n_weights * sizeof(float));
    t->gsum = malloc(t->n_weights * sizeof(float));
    t->w = malloc(t->n_weights * sizeof(float));
    t->red = malloc((t->n_weights + 2) * sizeof(double));
    if (!t->states0 || !t->sT || !t->dstates || !t->out || !t->g || !t->gsum || !t->w || !t->red) {
        ml_errf(err, errlen, "out of memory for the training buffers (%zu weights, %zu cells)", t->n_weights, t->N);
        moelat_trainer_destroy(t);
        return MOELAT_ERR_NOMEM;
    }
    moelat_status st = moelat_optimizer_create(&t->opt_cfg, t->n_weights, &t->opt, err, errlen);
    if (st != MOELAT_OK) {
        moelat_trainer_destroy(t);
        return st;
    }
    *out = t;
    return MOELAT_OK;
}

/* "(B, a, b, c)" of a data set's array. */
static void shape_text(char *out, size_t len, int64_t B, int ndim, const int64_t *shape) {
    size_t pos = (size_t)snprintf(out, len, "(%lld", (long long)B);
    for (int d = 0; d < ndim && pos < len; d++)
        pos += (size_t)snprintf(out + pos, len - pos, ", %lld", (long long)shape[d]);
    if (pos < len)
        snprintf(out + pos, len - pos, ")");
}

static int same_shape(int ndim, const int64_t *shape, int want_ndim, const int64_t *want) {
    return ndim == want_ndim && memcmp(shape, want, (size_t)ndim * sizeof *shape) == 0;
}

moelat_status moelat_trainer_set_data(moelat_trainer *t, const moelat_dataset *ds) {
    if (!t)
        return MOELAT_ERR_INVALID;
    if (!ds)
        return ml_train_fail(t, MOELAT_ERR_INVALID, "moelat_trainer_set_data: no data set");
    const moelat_config *c = moelat_lattice_config(t->lat);
    int64_t X = c->dims[0], Y = c->dims[1], Z = c->dims[2], S = (int64_t)t->S;
    int64_t want_in[3] = {Y, X, MOELAT_EXT_SIZE}, face[3] = {Y, X, S}, all[4] = {Z, Y, X, S};
    char have[256];
    if (!same_shape(ds->in_ndim, ds->in_shape, 3, want_in)) {
        shape_text(have, sizeof have, ds->B, ds->in_ndim, ds->in_shape);
        return ml_train_fail(t, MOELAT_ERR_INVALID, "%s: shape %s, the lattice needs (B, %lld, %lld, %d)",
                             ds->in_name, have, (long long)Y, (long long)X, MOELAT_EXT_SIZE);
    }
    if (t->p.loss == MOELAT_LOSS_OUTPUT_FACE_MSE && !same_shape(ds->tg_ndim, ds->tg_shape, 3, face)) {
        shape_text(have, sizeof have, ds->B, ds->tg_ndim, ds->tg_shape);
        return ml_train_fail(t, MOELAT_ERR_INVALID, "%s: shape %s, the lattice needs (B, %lld, %lld, %lld)",
                             ds->tg_name, have, (long long)Y, (long long)X, (long long)S);
    }
    if (t->p.loss == MOELAT_LOSS_ALL_CELLS_MSE && !same_shape(ds->tg_ndim, ds->tg_shape, 4, all)) {
        shape_text(have, sizeof have, ds->B, ds->tg_ndim, ds->tg_shape);
        return ml_train_fail(t, MOELAT_ERR_INVALID,
                             "%s: shape %s, the loss over all cells needs (B, %lld, %lld, %lld, %lld)", ds->tg_name,
                             have, (long long)Z, (long long)Y, (long long)X, (long long)S);
    }
    int64_t n_val = (int64_t)ceil((double)ds->B * t->p.val_fraction);
    if (n_val >= ds->B)
        n_val = ds->B - 1;
    int64_t n_train = ds->B - n_val;
    int64_t nb = (n_train + t->p.batch_size - 1) / t->p.batch_size;
    if (nb > INT32_MAX)
        return ml_train_fail(t, MOELAT_ERR_INVALID, "%lld mini-batches per epoch: at most %d", (long long)nb,
                             INT32_MAX);
    moelat_optimizer_config cfg = t->p.optimizer;
    if (t->p.cosine)
        cfg.total_steps = (int64_t)t->p.epochs * nb;
    if (memcmp(&cfg, &t->opt_cfg, sizeof cfg) != 0) {
        if (moelat_optimizer_steps(t->opt) > 0)
            return ml_train_fail(t, MOELAT_ERR_INVALID,
                                 "this data set changes the cosine schedule's length (%lld optimizer steps, "
                                 "was %lld) after training began",
                                 (long long)cfg.total_steps, (long long)t->opt_cfg.total_steps);
        char err[512];
        moelat_optimizer *o = NULL;
        moelat_status st = moelat_optimizer_create(&cfg, t->n_weights, &o, err, sizeof err);
        if (st != MOELAT_OK)
            return ml_train_fail(t, st, "%s", err);
        moelat_optimizer_destroy(t->opt);
        t->opt = o;
        t->moments = ML_MOMENTS_HOST;
        t->opt_cfg = cfg;
    }
    int64_t *order = realloc(t->order, (size_t)n_train * sizeof *order);
    if (!order)
        return ml_train_fail(t, MOELAT_ERR_NOMEM, "out of memory for %lld samples", (long long)n_train);
    t->order = order;
    t->ds = ds;
    t->n_val = n_val;
    t->n_train = n_train;
    t->nb = (int32_t)nb;
    return MOELAT_OK;
}

moelat_status moelat_trainer_set_initial_states(moelat_trainer *t, const float *states, size_t count) {
    if (!t)
        return MOELAT_ERR_INVALID;
    if (!states) {
        memset(t->states0, 0, t->N * t->S * sizeof(float));
        t->have_states0 = 0;
        return MOELAT_OK;
    }
    if (count != t->N * t->S)
        return ml_train_fail(t, MOELAT_ERR_INVALID, "initial states: %zu floats, the lattice has %zu (N x S)", count,
                             t->N * t->S);
    for (size_t i = 0; i < count; i++)
        if (!isfinite(states[i]))
            return ml_train_fail(t, MOELAT_ERR_NONFINITE, "initial states: value %zu (cell %zu, channel %zu) is %g",
                                 i, i / t->S, i % t->S, states[i]);
    memcpy(t->states0, states, count * sizeof(float));
    t->have_states0 = 1;
    return MOELAT_OK;
}

static void emit(moelat_trainer *t, moelat_train_event ev) {
    if (t->p.progress) {
        ev.batches = t->nb;
        ev.optimizer_step = moelat_optimizer_steps(t->opt);
        t->p.progress(t->p.progress_user, &ev);
    }
}

/* The recording forward from the initial states with sample b's input
 * face; s_T lands in t->sT. */
static moelat_status record(moelat_trainer *t) {
    moelat_grad_destroy(t->rec);
    t->rec = NULL;
    moelat_grad_options opt;
    moelat_grad_options_default(&opt);
    opt.checkpoint_every = t->p.grad_checkpoint_every;
    opt.memory_budget = t->p.memory_budget;
    moelat_status st = moelat_grad_record(t->lat, t->p.steps, &opt, &t->rec);
    if (st == MOELAT_OK)
        st = moelat_grad_final_states(t->rec, t->sT, t->N * t->S);
    if (st != MOELAT_OK) {
        ml_train_fail(t, st, "%s", moelat_last_error(t->lat));
        moelat_grad_destroy(t->rec);
        t->rec = NULL;
        return st;
    }
    if (!t->backward[0]) {
        snprintf(t->backward, sizeof t->backward, "%s", moelat_grad_path(t->rec));
        moelat_train_event ev = {.kind = MOELAT_TRAIN_EVENT_BACKWARD, .backward = t->backward};
        emit(t, ev);
    }
    return MOELAT_OK;
}

/* Runs sample b: *loss, and with grad dL/dW in t->g, or (*summed = 1)
 * added into the device optimizer's gradient sum. */
static moelat_status run_sample(moelat_trainer *t, int64_t b, int grad, double *loss, int *summed) {
    moelat_lattice *lat = t->lat;
    size_t ns = t->N * t->S, face_cells = t->face / t->S;
    if (moelat_set_states(lat, t->states0, ns) != MOELAT_OK ||
        moelat_set_external_input(lat, moelat_dataset_input(t->ds, b), face_cells * MOELAT_EXT_SIZE) != MOELAT_OK)
        return ml_train_fail(t, MOELAT_ERR_INVALID, "sample %lld: %s", (long long)b, moelat_last_error(lat));
    int face_loss = t->p.loss == MOELAT_LOSS_OUTPUT_FACE_MSE;
    const float *s;
    moelat_status st;
    *summed = 0;
    if (grad) {
        if ((st = record(t)) != MOELAT_OK)
            return st;
        s = face_loss ? t->sT + (t->N - face_cells) * t->S : t->sT; /* z = Z-1 is the last plane */
    } else {
        st = moelat_step(lat, t->p.steps);
        if (st == MOELAT_OK)
            st = face_loss ? moelat_get_outputs(lat, t->out, t->face) : moelat_get_states(lat, t->sT, ns);
        if (st != MOELAT_OK)
            return ml_train_fail(t, st, "sample %lld: %s", (long long)b, moelat_last_error(lat));
        s = face_loss ? t->out : t->sT;
    }
    const float *tg = moelat_dataset_target(t->ds, b);
    size_t count = face_loss ? t->face : ns;
    if (t->p.loss == MOELAT_LOSS_CALLBACK) {
        st = t->p.loss_fn(t->p.loss_user, t->sT, ns, tg, grad ? t->dstates : NULL, loss);
        if (st != MOELAT_OK)
            return ml_train_fail(t, st, "sample %lld: the loss callback returned status %d", (long long)b, (int)st);
    } else {
        /* Squared errors in float32, as a float32 model computes them (a
         * target beyond 1.8e19 of the state overflows them); summed in double. */
        double sum = 0;
        for (size_t i = 0; i < count; i++) {
            float e = s[i] - tg[i];
            sum += (double)(e * e);
        }
        *loss = sum / (double)count;
    }
    if (!isfinite(*loss))
        return ml_train_fail(t, MOELAT_ERR_NONFINITE, "sample %lld: the loss is %g after step %d", (long long)b,
                             *loss, t->p.steps);
    if (!grad)
        return MOELAT_OK;
    if (t->p.loss != MOELAT_LOSS_CALLBACK) {
        /* dL/ds_T: 2 (s - target) / count where the loss reads s, 0 elsewhere. */
        float *d = t->dstates;
        if (face_loss) {
            memset(t->dstates, 0, ns * sizeof(float));
            d = t->dstates + (t->N - face_cells) * t->S;
        }
        for (size_t i = 0; i < count; i++)
            d[i] = (float)(2.0 * ((double)s[i] - tg[i]) / (double)count);
    }
    int dev_sum = ml_train_sum_on_device(t, &st);
    if (st != MOELAT_OK)
        return st;
    ml_grad_sum_on_device(t->rec, dev_sum);
    st = moelat_grad_backward(t->rec, t->dstates, ns);
    snprintf(t->rec_path, sizeof t->rec_path, "%s", moelat_grad_path(t->rec));
    if (st == MOELAT_OK && ml_grad_summed_on_device(t->rec)) {
        /* dL/dW went into the device optimizer's sum; its norm, read
         * before the step, reveals a non-finite value (train_optim.c). */
        t->sum_where = ML_SUM_DEVICE;
        *summed = 1;
        return MOELAT_OK;
    }
    if (st == MOELAT_OK)
        st = moelat_grad_weights(t->rec, t->g, t->n_weights);
    /* The recording lives until the next one starts (record), its
     * mini-batch's optimizer step, or the trainer is destroyed. */
    if (st != MOELAT_OK)
        return ml_train_fail(t, st, "%s", moelat_last_error(lat));
    for (size_t k = 0; k < t->n_weights; k++)
        if (!isfinite(t->g[k]))
            return ml_train_fail(t, MOELAT_ERR_NONFINITE, "sample %lld: the gradient of weight %zu is %g",
                                 (long long)b, k, t->g[k]);
    return MOELAT_OK;
}

/* Sums this rank's gradients (gsum), loss sum and failure flag over every
 * rank (params.reduce). MOELAT_OK, this rank's own failure, or a refusal
 * naming another rank's; every rank calls it once per mini-batch, failed
 * or not, so that none waits for a rank that stopped. */
static moelat_status reduce_ranks(moelat_trainer *t, moelat_status mine, double *loss_sum) {
    size_t nw = t->n_weights;
    for (size_t k = 0; k < nw; k++)
        t->red[k] = mine == MOELAT_OK ? (double)t->gsum[k] : 0.0;
    t->red[nw] = *loss_sum;
    t->red[nw + 1] = mine == MOELAT_OK ? 0.0 : 1.0;
    moelat_status st = t->p.reduce(t->p.reduce_user, t->red, nw + 2);
    if (mine != MOELAT_OK)
        return mine;
    if (st != MOELAT_OK)
        return ml_train_fail(t, st, "summing the gradients over %d ranks failed (status %d)", t->p.ranks, (int)st);
    if (t->red[nw + 1] != 0.0)
        return ml_train_fail(t, MOELAT_ERR_INVALID, "%.0f other rank(s) failed in this mini-batch (their "
                             "messages say why)", t->red[nw + 1]);
    for (size_t k = 0; k < nw; k++)
        t->gsum[k] = (float)t->red[k];
    *loss_sum = t->red[nw];
    return MOELAT_OK;
}

/* One mini-batch: gradients summed over its samples (this rank's part of
 * them, then over the ranks), one optimizer step. */
static moelat_status run_batch(moelat_trainer *t, const int64_t *ids, size_t n, double *mean_loss) {
    memset(t->gsum, 0, t->n_weights * sizeof(float));
    t->sum_where = ML_SUM_NONE;
    t->batch_first = ids[0];
    double sum = 0;
    moelat_status st = MOELAT_OK;
    int ranks = t->p.ranks > 1 ? t->p.ranks : 1;
    size_t i0 = n * (size_t)t->p.rank / (size_t)ranks, i1 = n * ((size_t)t->p.rank + 1) / (size_t)ranks;
    for (size_t i = i0; i < i1 && st == MOELAT_OK; i++) {
        double l;
        int summed = 0;
        if ((st = run_sample(t, ids[i], 1, &l, &summed)) != MOELAT_OK)
            break;
        sum += l;
        if (summed)
            continue;
        /* A gradient on the host: the sum comes to the host (the device's
         * part first, so that the order of the float additions stays). */
        if ((st = ml_train_host_sum(t)) != MOELAT_OK)
            break;
        for (size_t k = 0; k < t->n_weights; k++)
            t->gsum[k] += t->g[k];
    }
    if (ranks > 1)
        st = reduce_ranks(t, st, &sum);
    /* The recording is done with: gone before the step, so that the
     * weights it left on the device need no copy when they change. */
    moelat_grad_destroy(t->rec);
    t->rec = NULL;
    if (st != MOELAT_OK)
        return st;
    *mean_loss = sum / (double)n;
    for (size_t k = 0; t->sum_where != ML_SUM_DEVICE && k < t->n_weights; k++)
        if (!isfinite(t->gsum[k]))
            return ml_train_fail(t, MOELAT_ERR_NONFINITE,
                                 "samples %lld.. of the batch: the summed gradient of weight %zu is %g",
                                 (long long)ids[0], k, t->gsum[k]);
    return ml_train_optimizer_step(t);
}

static moelat_status need_data(moelat_trainer *t) {
    return t->ds ? MOELAT_OK : ml_train_fail(t, MOELAT_ERR_INVALID, "no data set: call moelat_trainer_set_data first");
}

static moelat_status check_ids(moelat_trainer *t, const int64_t *ids, size_t n) {
    if (!ids || n == 0)
        return ml_train_fail(t, MOELAT_ERR_INVALID, "no samples given");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->ds->B)
            return ml_train_fail(t, MOELAT_ERR_INVALID, "sample %lld (entry %zu) is outside [0, %lld)",
                                 (long long)ids[i], i, (long long)t->ds->B);
    return MOELAT_OK;
}

moelat_status moelat_trainer_batch(moelat_trainer *t, const int64_t *samples, size_t n, double *mean_loss) {
    if (!t)
        return MOELAT_ERR_INVALID;
    moelat_status st = need_data(t);
    if (st == MOELAT_OK)
        st = check_ids(t, samples, n);
    double l;
    if (st == MOELAT_OK && (st = run_batch(t, samples, n, &l)) == MOELAT_OK) {
        t->extra_steps++;
        if (mean_loss)
            *mean_loss = l;
    }
    return st;
}

/* The mean loss of ids, or of the validation samples when ids is NULL. */
static moelat_status evaluate(moelat_trainer *t, const int64_t *ids, size_t n, double *mean) {
    size_t count = ids ? n : (size_t)t->n_val;
    double sum = 0;
    for (size_t i = 0; i < count; i++) {
        double l;
        int summed;
        moelat_status st = run_sample(t, ids ? ids[i] : t->n_train + (int64_t)i, 0, &l, &summed);
        if (st != MOELAT_OK)
            return st;
        sum += l;
    }
    *mean = count ? sum / (double)count : NAN;
    return MOELAT_OK;
}

moelat_status moelat_trainer_evaluate(moelat_trainer *t, const int64_t *samples, size_t n, double *mean_loss) {
    if (!t || !mean_loss)
        return t ? ml_train_fail(t, MOELAT_ERR_INVALID, "moelat_trainer_evaluate: no place for the loss")
                 : MOELAT_ERR_INVALID;
    moelat_status st = need_data(t);
    if (st == MOELAT_OK && samples)
        st = check_ids(t, samples, n);
    return st == MOELAT_OK ? evaluate(t, samples, n, mean_loss) : st;
}

/* A validation pass after `after` epochs, recorded in the history. */
static moelat_status validate(moelat_trainer *t, int32_t after) {
    double v;
    moelat_status st = evaluate(t, NULL, 0, &v);
    if (st != MOELAT_OK) {
        char tmp[sizeof t->err];
        memcpy(tmp, t->err, sizeof tmp);
        return ml_train_fail(t, st, "validation after epoch %d, %.1900s", after, tmp);
    }
    moelat_train_point p = {after, -1, t->samples, v, moelat_optimizer_next_lr(t->opt)};
    if (ml_train_history_add(&t->val, p) != 0)
        return ml_train_fail(t, MOELAT_ERR_NOMEM, "out of memory for the loss history");
    moelat_train_event ev = {.kind = MOELAT_TRAIN_EVENT_VALIDATION, .epoch = after, .samples = t->samples,
                             .loss = v, .lr = p.lr};
    emit(t, ev);
    return MOELAT_OK;
}

/* The order of the training samples in epoch e: a Fisher-Yates shuffle
 * from (seed, e), so that a resumed run sees the same batches. */
static void epoch_order(uint64_t seed, int e, int64_t n, int64_t *idx) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + (uint64_t)e + 1;
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        int64_t j = (int64_t)(s % (uint64_t)(i + 1));
        int64_t tmp = idx[i];
        idx[i] = idx[j];
        idx[j] = tmp;
    }
}

/* One call of fit or epoch: its clock and samples. */
typedef struct run_clock {
    double t0;
    uint64_t samples;
} run_clock;

static int stop_due(const moelat_trainer *t) {
    return t->p.stop_after > 0 && moelat_optimizer_steps(t->opt) >= t->p.stop_after;
}

/* The rest of epoch t->epoch, its validation and checkpoint. *stopped:
 * stop_after was reached (fit stops there). */
static moelat_status run_epoch(moelat_trainer *t, run_clock *clk, int may_stop, int *stopped) {
    int32_t e = t->epoch;
    moelat_status st;
    *stopped = 0;
    epoch_order(t->p.seed, e, t->n_train, t->order);
    const char *ck = t->p.checkpoint_dir;
    for (int32_t bi = t->batch; bi < t->nb; bi++) {
        int64_t first = (int64_t)bi * t->p.batch_size;
        int64_t n = t->n_train - first < t->p.batch_size ? t->n_train - first : t->p.batch_size;
        double lr = moelat_optimizer_next_lr(t->opt), loss;
        if ((st = run_batch(t, t->order + first, (size_t)n, &loss)) != MOELAT_OK) {
            char tmp[sizeof t->err];
            memcpy(tmp, t->err, sizeof tmp);
            return ml_train_fail(t, st, "optimizer step %llu (epoch %d, batch %d), %.1900s%s",
                                 (unsigned long long)moelat_optimizer_steps(t->opt) + 1, e + 1, bi + 1, tmp,
                                 ck ? "; the last good checkpoint is kept" : "");
        }
        t->samples += (uint64_t)n;
        t->batch = bi + 1;
        clk->samples += (uint64_t)n;
        moelat_train_point p = {e, bi, t->samples, loss, lr};
        if (ml_train_history_add(&t->train, p) != 0)
            return ml_train_fail(t, MOELAT_ERR_NOMEM, "out of memory for the loss history");
        moelat_train_event ev = {.kind = MOELAT_TRAIN_EVENT_BATCH, .epoch = e, .batch = bi + 1,
                                 .samples = t->samples, .loss = loss, .lr = lr,
                                 .seconds = now_s() - clk->t0, .samples_here = clk->samples};
        emit(t, ev);
        int last = bi + 1 == t->nb;
        if (ck && t->p.checkpoint_every > 0 && !last &&
            moelat_optimizer_steps(t->opt) % (uint64_t)t->p.checkpoint_every == 0 &&
            (st = moelat_trainer_save(t, ck)) != MOELAT_OK)
            return st;
        if (may_stop && stop_due(t) && !last) {
            *stopped = 1;
            return ck ? moelat_trainer_save(t, ck) : MOELAT_OK;
        }
    }
    if ((st = validate(t, e + 1)) != MOELAT_OK)
        return st;
    t->epoch = e + 1;
    t->batch = 0;
    if (ck && (st = moelat_trainer_save(t, ck)) != MOELAT_OK)
        return st;
    *stopped = may_stop && stop_due(t);
    return MOELAT_OK;
}

/* Before fit or epoch: data, a first validation pass when none was made,
 * and a checkpoint directory that a save can use. */
static moelat_status begin(moelat_trainer *t) {
    moelat_status st = need_data(t);
    if (st != MOELAT_OK)
        return st;
    if (t->p.checkpoint_dir && (st = ml_train_check_dir(t, t->p.checkpoint_dir)) != MOELAT_OK)
        return st;
    if (t->val.n == 0 && t->epoch == 0 && t->batch == 0)
        return validate(t, 0);
    return MOELAT_OK;
}

static void end(moelat_trainer *t, const run_clock *clk) {
    t->seconds += now_s() - clk->t0;
    t->samples_timed += clk->samples;
}

moelat_status moelat_trainer_epoch(moelat_trainer *t) {
    if (!t)
        return MOELAT_ERR_INVALID;
    moelat_status st = begin(t);
    if (st != MOELAT_OK)
        return st;
    run_clock clk = {now_s(), 0};
    int stopped;
    st = run_epoch(t, &clk, 0, &stopped);
    end(t, &clk);
    return st;
}

moelat_status moelat_trainer_fit(moelat_trainer *t) {
    if (!t)
        return MOELAT_ERR_INVALID;
    t->stopped_early = 0;
    moelat_status st = begin(t);
    if (st != MOELAT_OK)
        return st;
    run_clock clk = {now_s(), 0};
    int stopped = 0;
    while (st == MOELAT_OK && !stopped && t->epoch < t->p.epochs)
        st = run_epoch(t, &clk, 1, &stopped);
    /* Stopped with the last epoch done is simply done. */
    t->stopped_early = st == MOELAT_OK && stopped && t->epoch < t->p.epochs;
    end(t, &clk);
    return st;
}

size_t moelat_trainer_history(const moelat_trainer *t, int validation, const moelat_train_point **points) {
    if (!t) {
        if (points)
            *points = NULL;
        return 0;
    }
    const ml_train_history *h = validation ? &t->val : &t->train;
    if (points)
        *points = h->v;
    return h->n;
}

moelat_status moelat_trainer_summary(const moelat_trainer *t, moelat_train_summary *out) {
    if (!t || !out)
        return MOELAT_ERR_INVALID;
    if (out->struct_size < MOELAT_TRAIN_SUMMARY_SIZE_V1 || out->struct_size > sizeof *out)
        return ml_train_fail((moelat_trainer *)t, MOELAT_ERR_INVALID,
                             "moelat_train_summary: struct_size %u is outside [%zu, %zu] (MOELAT_TRAIN_SUMMARY_INIT)",
                             out->struct_size, (size_t)MOELAT_TRAIN_SUMMARY_SIZE_V1, sizeof *out);
    moelat_train_summary s;
    memset(&s, 0, sizeof s);
    s.struct_size = out->struct_size;
    s.samples = t->ds ? t->ds->B : 0;
    s.train_samples = t->n_train;
    s.val_samples = t->n_val;
    s.batches = t->nb;
    s.epoch = t->epoch;
    s.batch = t->batch;
    s.samples_seen = t->samples;
    s.optimizer_steps = moelat_optimizer_steps(t->opt);
    s.seconds = t->seconds;
    s.samples_per_s = t->seconds > 0 ? (double)t->samples_timed / t->seconds : 0;
    s.stopped_early = t->stopped_early;
    s.initial_val_loss = t->val.n ? t->val.v[0].loss : NAN;
    s.final_val_loss = t->val.n ? t->val.v[t->val.n - 1].loss : NAN;
    s.best_val_loss = NAN;
    for (size_t i = 0; i < t->val.n; i++)
        if (isfinite(t->val.v[i].loss) && (isnan(s.best_val_loss) || t->val.v[i].loss < s.best_val_loss))
            s.best_val_loss = t->val.v[i].loss;
    snprintf(s.backward, sizeof s.backward, "%s", t->backward);
    snprintf(s.optimizer, sizeof s.optimizer, "%s", t->optimizer);
    memcpy(out, &s, s.struct_size);
    return MOELAT_OK;
}

moelat_status moelat_trainer_optimizer_config(const moelat_trainer *t, moelat_optimizer_config *out) {
    if (!t || !out)
        return MOELAT_ERR_INVALID;
    *out = t->opt_cfg;
    return MOELAT_OK;
}
