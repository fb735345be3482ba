/* The trainer's optimizer step, on the device or on the host.
 *
 * On the device (core/device_optim.h, kernels_cl/moelat_optim.cl) the
 * mini-batch's gradient sum goes up, its norm comes back (the host decides
 * clipping, and the schedule's and bias corrections' scalars come from
 * optim_step.h as the host optimizer's do), and the update runs over the
 * forward's weight buffers; the weights and moments stay there, and the
 * host reads them only when asked (residency.c; ml_train_host_moments for
 * a checkpoint). The host optimizer (optim.c) keeps the step counter
 * either way, and runs the step itself for a host backward, several ranks
 * (their gradient sum is the host's), or when asked to
 * (params.host_optimizer, MOELAT_HOST_OPTIMIZER=1). Both give the same
 * bits, so switching between them mid-run changes nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/environment.h"
#include "base/log.h"
#include "core/device_optim.h"
#include "grad/grad.h"
#include "train/optim_step.h"
#include "train/train_internal.h"

/* A switch variable set to anything but "" or "0". */
static int env_on(const char *v) { return v && *v && strcmp(v, "0") != 0; }

/* Why the host runs the step whatever the backward does, or NULL. */
static const char *host_policy(const moelat_trainer *t, char *why, size_t len) {
    const char *env = ml_env_host_optimizer();
    if (t->p.host_optimizer)
        snprintf(why, len, "host (train parameter host_optimizer)");
    else if (env_on(env))
        snprintf(why, len, "host (MOELAT_HOST_OPTIMIZER=%.100s)", env);
    else if (t->p.ranks > 1)
        snprintf(why, len, "host (%d ranks: their gradient sum is the host's)", t->p.ranks);
    else
        return NULL;
    return why;
}

static int env_host_sum(void) { return env_on(ml_env_host_grad_sum()); }

/* Where this step runs: 1 on the device; why in t->optimizer, logged
 * when it changes. */
static int choose(moelat_trainer *t) {
    const char *path = t->rec_path;
    char why[sizeof t->optimizer];
    int dev = 0;
    if (host_policy(t, why, sizeof why)) {
        /* why says it */
    } else if (strncmp(path, "device", 6) != 0)
        snprintf(why, sizeof why, "host (the backward ran on the host)");
    else if (!ml_dev_optim_available(t->lat))
        snprintf(why, sizeof why, "host (the lattice's device has no optimizer)");
    else
        dev = snprintf(why, sizeof why, "device (the backward ran on the device; %s)",
                       t->sum_where == ML_SUM_DEVICE ? "the mini-batch's gradient summed there"
                       : env_host_sum()              ? "gradient summed on the host: MOELAT_HOST_GRAD_SUM"
                                                     : "gradient summed on the host") > 0;
    if (strcmp(why, t->optimizer) != 0) {
        ML_INFO("train", "optimizer step %llu on the %s", (unsigned long long)moelat_optimizer_steps(t->opt) + 1,
                why);
        memcpy(t->optimizer, why, sizeof why);
    }
    return dev;
}

/* The moments go through t->w and t->g, free between mini-batches. */
moelat_status ml_train_host_moments(moelat_trainer *t) {
    if (t->moments != ML_MOMENTS_DEVICE)
        return MOELAT_OK;
    moelat_status st = ml_dev_optim_state(t->lat, t->w, t->g, 0);
    if (st != MOELAT_OK)
        return ml_train_fail(t, st, "reading the optimizer's moments from the device: %s",
                             moelat_last_error(t->lat));
    if ((st = moelat_optimizer_set_state(t->opt, moelat_optimizer_steps(t->opt), t->w, t->g)) != MOELAT_OK)
        return ml_train_fail(t, st, "the device optimizer's %s", moelat_optimizer_last_error(t->opt));
    t->moments = ML_MOMENTS_BOTH;
    return MOELAT_OK;
}

static moelat_status host_step(moelat_trainer *t) {
    moelat_status st = ml_train_host_moments(t);
    if (st != MOELAT_OK)
        return st;
    if ((st = moelat_get_weights(t->lat, t->w, t->n_weights)) != MOELAT_OK)
        return ml_train_fail(t, st, "%s", moelat_last_error(t->lat));
    if ((st = moelat_optimizer_step(t->opt, t->w, t->gsum, NULL)) != MOELAT_OK)
        return ml_train_fail(t, st, "%s", moelat_optimizer_last_error(t->opt));
    t->moments = ML_MOMENTS_HOST;
    if ((st = moelat_set_weights(t->lat, t->w, t->n_weights)) != MOELAT_OK)
        return ml_train_fail(t, st, "%s", moelat_last_error(t->lat));
    return MOELAT_OK;
}

/* The device optimizer open for t, with t's moments there. Its buffers
 * are t->w and t->g's size; t->g is free here (between samples). */
static moelat_status device_open(moelat_trainer *t) {
    moelat_lattice *lat = t->lat;
    int fresh = 0;
    moelat_status st = ml_dev_optim_open(lat, t, t->opt_cfg.kind, &fresh);
    if (st == MOELAT_OK && fresh && t->moments == ML_MOMENTS_DEVICE)
        return ml_train_fail(t, MOELAT_ERR_DEVICE, "the device optimizer's moments were lost (its device was "
                             "closed after step %llu); resume from the last checkpoint",
                             (unsigned long long)moelat_optimizer_steps(t->opt));
    if (st == MOELAT_OK && (fresh || t->moments == ML_MOMENTS_HOST)) {
        if ((st = moelat_optimizer_get_state(t->opt, NULL, t->w, t->g)) == MOELAT_OK)
            st = ml_dev_optim_state(lat, t->w, t->g, 1);
        if (st == MOELAT_OK)
            t->moments = ML_MOMENTS_BOTH;
    }
    return st != MOELAT_OK ? ml_train_fail(t, st, "%s", moelat_last_error(lat)) : MOELAT_OK;
}

int ml_train_sum_on_device(moelat_trainer *t, moelat_status *st) {
    char why[256];
    *st = MOELAT_OK;
    if (t->sum_where == ML_SUM_HOST || host_policy(t, why, sizeof why) || env_host_sum() ||
        strncmp(moelat_grad_path(t->rec), "device", 6) != 0 || !ml_dev_optim_available(t->lat))
        return 0;
    if (t->sum_where == ML_SUM_DEVICE)
        return 1;
    /* The mini-batch's first sample summed there: the sum starts at 0. */
    if ((*st = device_open(t)) != MOELAT_OK)
        return 0;
    if ((*st = ml_dev_optim_grad_sum(t->lat, NULL)) != MOELAT_OK) {
        ml_train_fail(t, *st, "%s", moelat_last_error(t->lat));
        return 0;
    }
    return 1;
}

moelat_status ml_train_host_sum(moelat_trainer *t) {
    if (t->sum_where == ML_SUM_DEVICE) {
        moelat_status st = ml_dev_optim_grad_sum(t->lat, t->gsum);
        if (st != MOELAT_OK)
            return ml_train_fail(t, st, "%s", moelat_last_error(t->lat));
    }
    t->sum_where = ML_SUM_HOST;
    return MOELAT_OK;
}

/* A non-finite norm of the sum the device made: the first weight whose
 * summed gradient is not finite, as the host's check names it. */
static moelat_status refuse_device_sum(moelat_trainer *t, double norm) {
    unsigned long long step = (unsigned long long)moelat_optimizer_steps(t->opt) + 1;
    moelat_status st = ml_dev_optim_grad_sum(t->lat, t->gsum);
    for (size_t k = 0; st == MOELAT_OK && k < t->n_weights; k++)
        if (!isfinite(t->gsum[k]))
            return ml_train_fail(t, MOELAT_ERR_NONFINITE, "samples %lld.. of the batch: the summed gradient of "
                                 "weight %zu is %g (summed on the device; its norm is %g at step %llu); nothing "
                                 "updated", (long long)t->batch_first, k, t->gsum[k], norm, step);
    return ml_train_fail(t, MOELAT_ERR_NONFINITE, "samples %lld.. of the batch: the gradient's norm is %g at step "
                         "%llu (summed on the device); nothing updated", (long long)t->batch_first, norm, step);
}

static moelat_status device_step(moelat_trainer *t) {
    moelat_lattice *lat = t->lat;
    moelat_status st = device_open(t);
    if (st != MOELAT_OK)
        return st;
    double norm = 0;
    int on_device = t->sum_where == ML_SUM_DEVICE;
    if ((st = ml_dev_optim_norm(lat, on_device ? NULL : t->gsum, &norm)) != MOELAT_OK)
        return ml_train_fail(t, st, "%s", moelat_last_error(lat));
    if (!isfinite(norm) && on_device)
        return refuse_device_sum(t, norm);
    if (!isfinite(norm))
        return ml_train_fail(t, MOELAT_ERR_NONFINITE, "optimizer: the gradient's norm is %g at step %llu; nothing "
                             "updated", norm, (unsigned long long)moelat_optimizer_steps(t->opt) + 1);
    float clip = ml_optim_clip_factor(&t->opt_cfg, norm);
    ml_optim_scalars s;
    ml_optimizer_advance(t->opt, &s);
    t->moments = ML_MOMENTS_DEVICE; /* from here on, whatever the update did */
    if ((st = ml_dev_optim_update(lat, &s, clip)) != MOELAT_OK)
        return ml_train_fail(t, st, "%s", moelat_last_error(lat));
    return MOELAT_OK;
}

moelat_status ml_train_optimizer_step(moelat_trainer *t) {
    if (choose(t))
        return device_step(t);
    moelat_status st = ml_train_host_sum(t); /* a sum the device made, for the host's step */
    return st == MOELAT_OK ? host_step(t) : st;
}
