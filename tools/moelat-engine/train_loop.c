/* The training loop (train_loop.h). */
#include "train_loop.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train_ckpt.h"
#include "train_grad.h"

void train_result_free(train_result *r) {
    free(r->train);
    free(r->val);
    r->train = r->val = NULL;
    r->n_train = r->n_val = r->cap_train = r->cap_val = 0;
}

static int add_point(train_point **v, int *n, int *cap, train_point p) {
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        train_point *nv = realloc(*v, (size_t)nc * sizeof *nv);
        if (!nv)
            return -1;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = p;
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Everything one run shares. */
typedef struct trainer {
    moelat_lattice *lat;
    const train_data *d;
    const train_options *o;
    train_result *r;
    size_t N, S, face;     /* cells, state size, output-face values */
    size_t n_weights;
    float *states0;        /* N x S initial states */
    float *out;            /* the output face */
    float *final;          /* N x S: s_T of the recording forward */
    float *dstates;        /* N x S: dL/ds_T */
    float *g, *gsum;       /* one sample's dL/dW, the batch's sum */
    float *w;              /* the weights */
    moelat_optimizer *opt;
    int said_backward;     /* the progress output named where the backward runs */
} trainer;

/* Runs sample b; *loss = mean over the output face of (s_T - target)^2.
 * With grad the steps run in the engine's recording forward (float64) and
 * t->g receives dL/dW. Returns 0, or -1 with r->failure set. */
static int run_sample(trainer *t, int64_t b, int grad, double *loss) {
    moelat_lattice *lat = t->lat;
    char *why = t->r->failure;
    size_t whylen = sizeof t->r->failure;
    size_t face_cells = t->face / t->S;
    if (moelat_set_states(lat, t->states0, t->N * t->S) != MOELAT_OK ||
        moelat_set_external_input(lat, train_input(t->d, b), face_cells * MOELAT_EXT_SIZE) != MOELAT_OK) {
        snprintf(why, whylen, "sample %lld: %s", (long long)b, moelat_last_error(lat));
        return -1;
    }
    const float *out;
    if (grad) {
        if (tg_forward(lat, t->o->steps, t->o->checkpoint_every_k, t->final, t->N * t->S, why, whylen) != 0)
            return -1;
        if (!t->said_backward) {
            snprintf(t->r->backward, sizeof t->r->backward, "%s", tg_path());
            if (t->o->progress)
                fprintf(stderr, "backward: %s\n", t->r->backward);
            t->said_backward = 1;
        }
        out = t->final + (t->N - face_cells) * t->S; /* z = Z-1 is the last plane */
    } else {
        if (moelat_step(lat, t->o->steps) != MOELAT_OK || moelat_get_outputs(lat, t->out, t->face) != MOELAT_OK) {
            snprintf(why, whylen, "sample %lld: %s", (long long)b, moelat_last_error(lat));
            return -1;
        }
        out = t->out;
    }
    const float *tg = train_target(t->d, b);
    /* Squared errors in float32, as a float32 model computes them (a
     * target beyond 1.8e19 of the state overflows them); summed in double. */
    double sum = 0;
    for (size_t i = 0; i < t->face; i++) {
        float e = out[i] - tg[i];
        sum += (double)(e * e);
    }
    *loss = sum / (double)t->face;
    if (!isfinite(*loss)) {
        snprintf(why, whylen, "sample %lld: the loss is %g after step %d", (long long)b, *loss, t->o->steps);
        return -1;
    }
    if (!grad)
        return 0;
    /* dL/ds_T: zero off the output face, 2 (s - target) / count on it. */
    memset(t->dstates, 0, t->N * t->S * sizeof(float));
    float *face = t->dstates + (t->N - face_cells) * t->S;
    for (size_t i = 0; i < t->face; i++)
        face[i] = (float)(2.0 * ((double)out[i] - tg[i]) / (double)t->face);
    if (tg_backward(lat, t->dstates, t->N * t->S, t->g, t->n_weights, why, whylen) != 0)
        return -1;
    for (size_t k = 0; k < t->n_weights; k++)
        if (!isfinite(t->g[k])) {
            snprintf(why, whylen, "sample %lld: the gradient of weight %zu is %g", (long long)b, k, t->g[k]);
            return -1;
        }
    return 0;
}

/* The mean loss over the validation samples; a failure names the pass. */
static int validate(trainer *t, int after_epoch, double *loss) {
    int64_t v0 = t->r->train_samples;
    double sum = 0;
    for (int64_t b = v0; b < t->d->B; b++) {
        double l;
        if (run_sample(t, b, 0, &l) != 0) {
            char tmp[sizeof t->r->failure];
            memcpy(tmp, t->r->failure, sizeof tmp);
            snprintf(t->r->failure, sizeof t->r->failure, "validation after epoch %d, %.900s", after_epoch, tmp);
            return -1;
        }
        sum += l;
    }
    *loss = t->r->val_samples ? sum / (double)t->r->val_samples : NAN;
    return 0;
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

static void progress(const trainer *t, int e, int bi, int nb, double running, double sps) {
    int width = 24, fill = nb ? (bi * width) / nb : width;
    fprintf(stderr, "\repoch %d/%d [", e + 1, t->o->epochs);
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] batch %d/%d  loss %.4g  %.1f samples/s   ", bi, nb, running, sps);
    fflush(stderr);
}

static int setup(trainer *t) {
    moelat_lattice *lat = t->lat;
    t->N = moelat_cell_count(lat);
    t->S = (size_t)moelat_state_size(lat);
    t->face = (size_t)(t->d->X * t->d->Y) * t->S;
    t->n_weights = moelat_weights_count(lat);
    t->states0 = calloc(t->N * t->S, sizeof(float));
    t->out = malloc(t->face * sizeof(float));
    t->dstates = malloc(t->N * t->S * sizeof(float));
    t->final = malloc(t->N * t->S * sizeof(float));
    t->g = malloc(t->n_weights * sizeof(float));
    t->gsum = malloc(t->n_weights * sizeof(float));
    t->w = malloc(t->n_weights * sizeof(float));
    if (!t->states0 || !t->out || !t->dstates || !t->final || !t->g || !t->gsum || !t->w) {
        snprintf(t->r->failure, sizeof t->r->failure, "out of memory for the training buffers (%zu weights, %zu cells)",
                 t->n_weights, t->N);
        return -1;
    }
    if (t->o->init_states)
        memcpy(t->states0, t->o->init_states, t->N * t->S * sizeof(float));
    char err[512];
    if (moelat_optimizer_create(&t->o->opt, t->n_weights, &t->opt, err, sizeof err) != MOELAT_OK) {
        snprintf(t->r->failure, sizeof t->r->failure, "%s", err);
        return -1;
    }
    return 0;
}

static void teardown(trainer *t) {
    free(t->states0);
    free(t->out);
    free(t->dstates);
    free(t->final);
    tg_release();
    free(t->g);
    free(t->gsum);
    free(t->w);
    moelat_optimizer_destroy(t->opt);
}

/* One mini-batch: gradients summed over its samples, one optimizer step. */
static int train_batch(trainer *t, const int64_t *ids, int n, double *mean_loss) {
    memset(t->gsum, 0, t->n_weights * sizeof(float));
    double sum = 0;
    for (int i = 0; i < n; i++) {
        double l;
        if (run_sample(t, ids[i], 1, &l) != 0)
            return -1;
        sum += l;
        for (size_t k = 0; k < t->n_weights; k++)
            t->gsum[k] += t->g[k];
    }
    *mean_loss = sum / n;
    for (size_t k = 0; k < t->n_weights; k++)
        if (!isfinite(t->gsum[k])) {
            snprintf(t->r->failure, sizeof t->r->failure,
                     "samples %lld.. of the batch: the summed gradient of weight %zu is %g", (long long)ids[0], k,
                     t->gsum[k]);
            return -1;
        }
    if (moelat_get_weights(t->lat, t->w, t->n_weights) != MOELAT_OK) {
        snprintf(t->r->failure, sizeof t->r->failure, "%s", moelat_last_error(t->lat));
        return -1;
    }
    if (moelat_optimizer_step(t->opt, t->w, t->gsum, NULL) != MOELAT_OK) {
        snprintf(t->r->failure, sizeof t->r->failure, "%s", moelat_optimizer_last_error(t->opt));
        return -1;
    }
    if (moelat_set_weights(t->lat, t->w, t->n_weights) != MOELAT_OK) {
        snprintf(t->r->failure, sizeof t->r->failure, "%s", moelat_last_error(t->lat));
        return -1;
    }
    return 0;
}

static int checkpoint(trainer *t, int epoch, int next_batch, uint64_t samples) {
    train_ckpt_pos pos = {epoch, next_batch, samples};
    return train_ckpt_save(t->o->checkpoint_dir, t->lat, t->opt, &t->o->opt, &pos, t->r, t->r->failure, sizeof t->r->failure);
}

int train_run(moelat_lattice *lat, const train_data *d, const train_options *o, train_result *r) {
    memset(r, 0, sizeof *r);
    trainer t = {.lat = lat, .d = d, .o = o, .r = r};
    int64_t n_val = (int64_t)ceil((double)d->B * o->val_fraction);
    if (n_val >= d->B)
        n_val = d->B - 1;
    r->val_samples = n_val;
    r->train_samples = d->B - n_val;
    int64_t *order = malloc((size_t)r->train_samples * sizeof *order);
    int rc = 1;
    if (!order) {
        snprintf(r->failure, sizeof r->failure, "out of memory");
        return 1;
    }
    if (setup(&t) != 0)
        goto out;
    int nb = (int)((r->train_samples + o->batch_size - 1) / o->batch_size);
    train_ckpt_pos pos = {0, 0, 0};
    if (o->resume_dir) {
        if (train_ckpt_load(o->resume_dir, lat, t.opt, &o->opt, &pos, r, r->failure, sizeof r->failure) != 0)
            goto out;
    } else {
        double v;
        if (validate(&t, 0, &v) != 0)
            goto out;
        train_point p = {0, -1, 0, v, moelat_optimizer_next_lr(t.opt)};
        if (add_point(&r->val, &r->n_val, &r->cap_val, p) != 0)
            goto oom;
    }
    double t0 = now_s();
    uint64_t samples = pos.samples, done_here = 0;
    for (int e = pos.epoch; e < o->epochs; e++) {
        epoch_order(o->shuffle_seed, e, r->train_samples, order);
        double running = NAN;
        for (int bi = e == pos.epoch ? pos.batch : 0; bi < nb; bi++) {
            int64_t first = (int64_t)bi * o->batch_size;
            int n = (int)(r->train_samples - first < o->batch_size ? r->train_samples - first : o->batch_size);
            double lr = moelat_optimizer_next_lr(t.opt), loss;
            if (train_batch(&t, order + first, n, &loss) != 0) {
                char tmp[sizeof r->failure];
                memcpy(tmp, r->failure, sizeof tmp);
                snprintf(r->failure, sizeof r->failure, "optimizer step %llu (epoch %d, batch %d), %.880s%s",
                         (unsigned long long)moelat_optimizer_steps(t.opt) + 1, e + 1, bi + 1, tmp,
                         o->checkpoint_dir ? "; the last good checkpoint is kept" : "");
                goto out;
            }
            samples += (uint64_t)n;
            done_here += (uint64_t)n;
            running = isfinite(running) ? 0.9 * running + 0.1 * loss : loss;
            train_point p = {e, bi, samples, loss, lr};
            if (add_point(&r->train, &r->n_train, &r->cap_train, p) != 0)
                goto oom;
            if (o->progress)
                progress(&t, e, bi + 1, nb, running, (double)done_here / (now_s() - t0));
            int last = bi + 1 == nb;
            if (o->checkpoint_dir && o->checkpoint_every > 0 && !last &&
                moelat_optimizer_steps(t.opt) % (uint64_t)o->checkpoint_every == 0 &&
                checkpoint(&t, e, bi + 1, samples) != 0)
                goto out;
            if (o->stop_after > 0 && moelat_optimizer_steps(t.opt) >= (uint64_t)o->stop_after && !last) {
                r->stopped_early = 1;
                if (o->checkpoint_dir && checkpoint(&t, e, bi + 1, samples) != 0)
                    goto out;
                goto done;
            }
        }
        double v;
        if (validate(&t, e + 1, &v) != 0)
            goto out;
        train_point p = {e + 1, -1, samples, v, moelat_optimizer_next_lr(t.opt)};
        if (add_point(&r->val, &r->n_val, &r->cap_val, p) != 0)
            goto oom;
        if (o->progress)
            fprintf(stderr, "\repoch %d/%d: training loss %.4g, validation loss %.4g%30s\n", e + 1, o->epochs,
                    running, v, "");
        if (o->checkpoint_dir && checkpoint(&t, e + 1, 0, samples) != 0)
            goto out;
        if (o->stop_after > 0 && moelat_optimizer_steps(t.opt) >= (uint64_t)o->stop_after && e + 1 < o->epochs) {
            r->stopped_early = 1;
            goto done;
        }
    }
done:
    r->seconds = now_s() - t0;
    r->samples_per_s = r->seconds > 0 ? (double)done_here / r->seconds : 0;
    r->optimizer_steps = moelat_optimizer_steps(t.opt);
    rc = 0;
    goto out;
oom:
    snprintf(r->failure, sizeof r->failure, "out of memory for the loss history");
out:
    if (o->progress && rc != 0)
        fputc('\n', stderr);
    teardown(&t);
    free(order);
    return rc;
}
