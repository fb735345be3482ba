/* The scheduler: what runs where in a step.
 *
 * It owns the lattice's mode (per cell on the host, batched on the
 * device, or auto: batched when a device passes the upgrade's sample
 * check, the default), places each chunk (the batch adapter: a chunk goes
 * to the device unless it is below the batch threshold), runs the host chunks on the thread pool while the
 * device works, keeps the report's counts and times, records fallbacks,
 * and ends each step's plane deliveries. The device is reached only
 * through the backend's ops (backend.h); where the states live, only
 * through residency.h. ARCHITECTURE.md draws the whole step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include"core/lattice_internal.h"
#include "base/log.h"

/* The batch adapter: 1 when chunk c goes to the device this step. Auto
 * mode decided when it opened the device, from the upgrade check's sample
 * of cells: a device that agrees with the host takes every chunk the
 * threshold lets through. (Timing the host on a whole chunk cost a slow
 * first step, and on every measured device, PoCL on 2 cores included, the
 * batched path is the faster one: tools/bench/RESULTS.md.) */
static int chunk_wants_device(const moelat_lattice *lat, const ml_chunk *c) {
    return c->n_cells >= lat->batch_threshold;
}

static void record_fallbacks(moelat_lattice *lat, const ml_fallbacks *fb) {
    for (int i = 0; i < fb->n; i++)
        ml_stats_fallback(lat, fb->reason[i < ML_MAX_STEP_FALLBACKS ? i : ML_MAX_STEP_FALLBACKS - 1]);
}

static void record_device_times(moelat_lattice *lat, const ml_step *st) {
    ml_stats *s = &lat->stats;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        s->expert_device_ms[k] += st->device_ms[k];
        s->expert_calls[k] += st->expert_calls[k];
    }
    s->aggregate_device_ms += st->device_ms[ML_TIME_AGGREGATE];
    s->gate_device_ms += st->device_ms[ML_TIME_GATE];
    s->precompute_device_ms += st->device_ms[ML_TIME_PRECOMPUTE];
}

static void record_host(moelat_lattice *lat, const int *ids, int n, double ms) {
    lat->stats.percell_chunks += (uint64_t)n;
    for (int i = 0; i < n; i++)
        lat->stats.percell_cells += (uint64_t)lat->chunks[ids[i]].n_cells;
    lat->stats.percell_ms += ms;
}

/* One step with a device: the device chunks through the backend, the
 * others on the host meanwhile; the new states end up on the device. */
static moelat_status step_device(moelat_lattice *lat) {
    const ml_backend_ops *ops = lat->backend.ops;
    void *ctx = lat->backend.ctx;
    moelat_status s = ml_res_device_inputs(lat);
    if (s != MOELAT_OK)
        return s;
    ml_step st;
    memset(&st, 0, sizeof st);
    st.dev = malloc((size_t)lat->n_chunks * sizeof *st.dev);
    st.host = malloc((size_t)lat->n_chunks * sizeof *st.host);
    if (!st.dev || !st.host) {
        s = ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
        goto out;
    }
    st.ranges = lat->deliver;
    st.n_ranges = lat->n_deliver;
    st.host_next = lat->next;
    for (int c = 0; c < lat->n_chunks; c++) {
        if (chunk_wants_device(lat, &lat->chunks[c]))
            st.dev[st.n_dev++] = c;
        else
            st.host[st.n_host++] = c;
    }
    /* The host needs the old states for host chunks and host experts. */
    if ((st.n_host > 0 || ops->host_experts(ctx)) &&
        ((s = ml_res_host_states(lat)) != MOELAT_OK || (s = ml_res_host_weights(lat)) != MOELAT_OK))
        goto out;
    double t0 = ml_now_ms();
    if ((s = ops->begin_step(ctx, &st)) != MOELAT_OK || (s = ops->enqueue(ctx, &st)) != MOELAT_OK)
        goto out;
    /* Host chunks run while the device works. */
    double th = ml_now_ms();
    moelat_status hs = MOELAT_OK;
    if (st.n_host > 0) {
        hs = ml_percell_run(lat, st.host, st.n_host, lat->states, lat->next);
        if (hs == MOELAT_OK)
            record_host(lat, st.host, st.n_host, ml_now_ms() - th);
    }
    double host_ms = ml_now_ms() - th;
    s = ops->finish(ctx, &st, hs == MOELAT_OK);
    if (hs != MOELAT_OK)
        s = hs; /* the host part's own error, not the cleanup's */
    double total = ml_now_ms() - t0;
    record_device_times(lat, &st);
    if (st.swapped) {
        ml_res_device_wrote_states(lat);
        if (st.n_dev > 0) {
            lat->stats.batch_chunks += (uint64_t)st.n_dev;
            for (int i = 0; i < st.n_dev; i++)
                lat->stats.batch_cells += (uint64_t)lat->chunks[st.dev[i]].n_cells;
            lat->stats.batch_ms += st.n_host > 0 ? (total > host_ms ? total - host_ms : total) : total;
            if (st.route)
                ml_route_add_chunks(lat, st.route, st.dev, st.n_dev);
        }
    }
out:
    lat->stats.planes_early += st.planes_early;
    record_fallbacks(lat, &st.fb);
    free(st.dev);
    free(st.host);
    return s;
}

/* One step on the host: every chunk per cell. */
static moelat_status step_host(moelat_lattice *lat) {
    moelat_status s = ml_res_host_states(lat);
    if (s == MOELAT_OK)
        s = ml_res_host_weights(lat);
    if (s != MOELAT_OK)
        return s;
    int *ids = malloc((size_t)lat->n_chunks * sizeof *ids);
    if (!ids)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
    for (int c = 0; c < lat->n_chunks; c++)
        ids[c] = c;
    double t0 = ml_now_ms();
    s = ml_percell_run(lat, ids, lat->n_chunks, lat->states, lat->next);
    double dt = ml_now_ms() - t0;
    free(ids);
    if (s != MOELAT_OK)
        return s;
    lat->stats.percell_chunks += (uint64_t)lat->n_chunks;
    lat->stats.percell_cells += (size_t)lat->X * lat->Y * (size_t)(lat->active_z1 - lat->active_z0);
    lat->stats.percell_ms += dt;
    float *t = lat->states;
    lat->states = lat->next;
    lat->next = t;
    ml_res_host_wrote_states(lat);
    return MOELAT_OK;
}

moelat_status moelat_step(moelat_lattice *lat, int n) {
    if (n < 0)
        return ml_fail(lat, MOELAT_ERR_INVALID, "step count %d is negative", n);
    for (int i = 0; i < n; i++) {
        moelat_status st = lat->backend.ops && lat->mode != MOELAT_MODE_PERCELL ? step_device(lat) : step_host(lat);
        st = ml_finish_deliveries(lat, st);
        if (st != MOELAT_OK) {
            char why[sizeof lat->err];
            snprintf(why, sizeof why, "%s", lat->err);
            if (st == MOELAT_ERR_NONFINITE)
                /* Neither path swaps in a failed step's output. */
                return ml_fail(lat, st, "step %llu: %s is not finite; the states kept are step %llu's, the last finite",
                               (unsigned long long)lat->step_count + 1, why, (unsigned long long)lat->step_count);
            return ml_fail(lat, st, "step %llu: %s", (unsigned long long)lat->step_count + 1, why);
        }
        lat->step_count++;
        lat->stats.steps++;
    }
    return MOELAT_OK;
}

moelat_status ml_step_uncounted(moelat_lattice *lat, uint64_t as_step) {
    uint64_t count = lat->step_count;
    ml_stats stats = lat->stats;
    lat->step_count = as_step;
    moelat_status st = moelat_step(lat, 1);
    lat->step_count = count;
    lat->stats = stats;
    return st;
}

moelat_status moelat_set_mode(moelat_lattice *lat, moelat_mode mode) {
    if (mode != MOELAT_MODE_PERCELL && mode != MOELAT_MODE_BATCH && mode != MOELAT_MODE_AUTO)
        return ml_fail(lat, MOELAT_ERR_INVALID, "unknown mode %d", (int)mode);
    if (mode == MOELAT_MODE_PERCELL) {
        moelat_status st = ml_res_host_states(lat);
        if (st != MOELAT_OK)
            return st;
        lat->mode = mode;
        snprintf(lat->path_why, sizeof lat->path_why, "mode percell asked for");
        return MOELAT_OK;
    }
    if (!lat->backend.ops) {
        moelat_status st = moelat_upgrade_to_batch(lat);
        if (st != MOELAT_OK) {
            if (mode == MOELAT_MODE_AUTO) {
                /* Logged once, by the fallback's first sighting. */
                snprintf(lat->path_why, sizeof lat->path_why, "no device for the batched path: %.200s", lat->err);
                ml_stats_fallback(lat, lat->err);
                lat->mode = MOELAT_MODE_AUTO;
                return MOELAT_OK;
            }
            return st;
        }
    }
    lat->mode = mode;
    return MOELAT_OK;
}

/* Closes a device that failed to come up; the host's copies stay current. */
static moelat_status give_up_device(moelat_lattice *lat, moelat_status st) {
    ml_lattice_close_device(lat);
    ml_res_device_closed(lat);
    return st;
}

moelat_status moelat_upgrade_to_batch(moelat_lattice *lat) {
    if (lat->backend.ops)
        return MOELAT_OK;
    moelat_status st = ml_res_host_states(lat);
    if (st != MOELAT_OK)
        return st;
    ml_fallbacks fb;
    memset(&fb, 0, sizeof fb);
    st = ml_lattice_open_device(lat, &fb);
    if (st != MOELAT_OK)
        return st;
    record_fallbacks(lat, &fb);
    ml_res_device_opened(lat);
    if ((st = ml_res_host_wrote_weights(lat)) != MOELAT_OK)
        return give_up_device(lat, st);
    /* Check a sample of cells against the per-cell path before enabling.
     * upgrade_check=off skips it, for diagnosing a disagreement with
     * `moelat-engine check --experts`. */
    if (!lat->tuning.upgrade_check) {
        ML_WARN("batch", "tuning upgrade_check=off: batch mode enabled without the sample check");
        snprintf(lat->path_why, sizeof lat->path_why, "device %.200s, upgrade check off (tuning)", lat->device_name);
        return MOELAT_OK;
    }
    if ((st = ml_verify_sample(lat)) != MOELAT_OK)
        return give_up_device(lat, st);
    snprintf(lat->path_why, sizeof lat->path_why, "device %.200s passed the upgrade check", lat->device_name);
    return MOELAT_OK;
}
