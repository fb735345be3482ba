/* Gradients through T steps (moelat/grad.h): the float64 forward with
 * states checkpointed every k steps, the reverse sweep segment by segment
 * (each segment's states recomputed from its checkpoint), the memory
 * estimate and the choice of k, and the accessors. The step functions are
 * grad_step.c's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "grad/grad.h"
#include "core/residency.h"

void moelat_grad_options_default(moelat_grad_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->struct_size = sizeof *opt;
}

uint64_t ml_grad_bytes(const moelat_lattice *lat, int steps, int k, int n_blocks) {
    moelat_lattice *l = (moelat_lattice *)lat;
    uint64_t ns = (uint64_t)lat->N * (uint64_t)lat->S;
    uint64_t n_ckpt = ((uint64_t)steps + (uint64_t)k - 1) / (uint64_t)k;
    /* checkpoints, one segment, s_T, two adjoint buffers, and per block an
     * N x S scatter buffer; weights: the double copy, the result and one
     * accumulator per block. */
    uint64_t states = ns * (n_ckpt + (uint64_t)k + 3 + (uint64_t)n_blocks);
    uint64_t weights = (uint64_t)moelat_weights_count(l) * (2 + (uint64_t)n_blocks);
    uint64_t ext = (uint64_t)lat->X * lat->Y * lat->E * (2 + (uint64_t)n_blocks);
    return 8 * (states + weights + ext);
}

uint64_t moelat_grad_memory(moelat_lattice *lat, int steps, int k) {
    if (!lat || steps < 1 || k < 1)
        return 0;
    return ml_grad_bytes(lat, steps, k, ml_pool_size(lat->pool));
}

static uint64_t default_budget(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || size <= 0)
        return (uint64_t)4 << 30;
    return (uint64_t)pages * (uint64_t)size / 2;
}

/* The k with the least memory (about sqrt(T)). */
static int least_memory_k(moelat_lattice *lat, int steps, int nb) {
    int best = 1;
    for (int k = 1; k <= steps; k++)
        if (ml_grad_bytes(lat, steps, k, nb) < ml_grad_bytes(lat, steps, best, nb))
            best = k;
    return best;
}

static double mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

/* k from the options and the budget, or -1 with the refusal in lat->err. */
static int choose_k(moelat_lattice *lat, int steps, const moelat_grad_options *opt, int nb) {
    uint64_t budget = opt && opt->memory_budget ? opt->memory_budget : default_budget();
    int want = opt ? opt->checkpoint_every : 0;
    int kmin = least_memory_k(lat, steps, nb);
    uint64_t least = ml_grad_bytes(lat, steps, kmin, nb);
    if (want > 0) {
        int k = want > steps ? steps : want;
        uint64_t need = ml_grad_bytes(lat, steps, k, nb);
        if (need <= budget)
            return k;
        if (least <= budget)
            ml_fail(lat, MOELAT_ERR_NOMEM,
                    "gradients of %d steps with a checkpoint every %d steps need %.1f MiB, over the "
                    "memory budget of %.1f MiB; a checkpoint every %d steps needs %.1f MiB and fits",
                    steps, k, mib(need), mib(budget), kmin, mib(least));
        else
            ml_fail(lat, MOELAT_ERR_NOMEM,
                    "gradients of %d steps need %.1f MiB with a checkpoint every %d steps, over the "
                    "memory budget of %.1f MiB, and no checkpoint interval fits (the least is %.1f MiB, "
                    "every %d steps)", steps, mib(need), k, mib(budget), mib(least), kmin);
        return -1;
    }
    /* Automatic: every state kept (no recomputation) when it fits. */
    if (ml_grad_bytes(lat, steps, 1, nb) <= budget)
        return 1;
    if (least <= budget)
        return kmin;
    ml_fail(lat, MOELAT_ERR_NOMEM,
            "gradients of %d steps need at least %.1f MiB (a checkpoint every %d steps), over the "
            "memory budget of %.1f MiB", steps, mib(least), kmin, mib(budget));
    return -1;
}

/* One forward step of the recorded run: the lattice's own batched step
 * (float32, on its device) when the backward runs there, else the float64
 * host step. A device step is one the lattice does not count
 * (ml_step_uncounted); the lattice's states, and the weights and input
 * swapped in for it, are put back by device_forward_end. */
static moelat_status forward_step(moelat_grad *g, const double *cur, double *next, int t) {
    if (!g->on_device)
        return ml_grad_step_f64(g, cur, next, t);
    moelat_lattice *lat = g->lat;
    float *f = g->fwd_tmp;
    moelat_status st = MOELAT_OK;
    if (cur != g->fwd_held) { /* else the lattice holds cur already: the last step's output */
        for (size_t v = 0; v < g->NS; v++)
            f[v] = (float)cur[v];
        st = moelat_set_states(lat, f, g->NS);
    }
    g->fwd_held = NULL;
    if (st == MOELAT_OK)
        st = ml_step_uncounted(lat, lat->step_count + (uint64_t)t);
    if (st == MOELAT_OK)
        st = moelat_get_states(lat, f, g->NS);
    if (st != MOELAT_OK)
        return st;
    for (size_t v = 0; v < g->NS; v++)
        next[v] = f[v];
    g->fwd_held = next;
    return MOELAT_OK;
}

/* Before device steps: the lattice's states saved, and the recording's own
 * weights and input swapped in where the lattice holds others now (another
 * sample set, an optimizer step since the recording). */
static moelat_status device_forward_begin(moelat_grad *g) {
    if (!g->on_device)
        return MOELAT_OK;
    moelat_lattice *lat = g->lat;
    ml_grad_engine *e = g->eng;
    size_t ne = (size_t)lat->X * lat->Y * lat->E;
    g->fwd_held = NULL;
    moelat_status st = moelat_get_states(lat, g->fwd_tmp + g->NS, g->NS);
    if (st == MOELAT_OK && lat->weights_gen != g->w_gen) {
        if ((st = ml_grad_host_weights(g)) != MOELAT_OK)
            return st;
        e->lat_w_gen = lat->weights_gen;
        if ((st = moelat_get_weights(lat, e->swap, e->w_count)) == MOELAT_OK) {
            g->swapped_w = 1;
            st = moelat_set_weights(lat, g->f_w, e->w_count);
        }
    }
    if (st == MOELAT_OK && lat->input_gen != g->ext_gen) {
        e->lat_ext_gen = lat->input_gen;
        e->lat_has_ext = lat->has_ext;
        memcpy(e->swap + e->w_count, lat->ext, ne * sizeof(float));
        g->swapped_ext = 1;
        st = moelat_set_external_input(lat, g->has_ext ? g->f_ext : NULL, ne);
    }
    return st;
}

/* After them: the lattice's states, weights and input as they were, and
 * their generations too (their values are the same). */
static moelat_status device_forward_end(moelat_grad *g, moelat_status st) {
    if (!g->on_device)
        return st;
    moelat_lattice *lat = g->lat;
    ml_grad_engine *e = g->eng;
    size_t ne = (size_t)lat->X * lat->Y * lat->E;
    char why[sizeof lat->err];
    snprintf(why, sizeof why, "%s", lat->err);
    g->fwd_held = NULL;
    moelat_status back = moelat_set_states(lat, g->fwd_tmp + g->NS, g->NS);
    if (g->swapped_w) {
        moelat_status b = moelat_set_weights(lat, e->swap, e->w_count);
        back = back != MOELAT_OK ? back : b;
        lat->weights_gen = e->lat_w_gen;
        g->swapped_w = 0;
    }
    if (g->swapped_ext) {
        moelat_status b = moelat_set_external_input(lat, e->lat_has_ext ? e->swap + e->w_count : NULL, ne);
        back = back != MOELAT_OK ? back : b;
        lat->input_gen = e->lat_ext_gen;
        g->swapped_ext = 0;
    }
    if (st != MOELAT_OK) {
        snprintf(lat->err, sizeof lat->err, "%s", why);
        return st;
    }
    return back;
}

moelat_status ml_grad_forward(moelat_grad *g) {
    const double *cur = g->ckpt;
    int alt = 0;
    g->recorded = 0;
    moelat_status st0 = device_forward_begin(g);
    if (st0 != MOELAT_OK)
        return device_forward_end(g, st0);
    for (int t = 0; t < g->steps; t++) {
        /* s_{t+1} goes to s_T, its checkpoint, or one of two segment
         * slots in turn (k >= 2 there, so the segment has both). */
        double *next;
        if (t + 1 == g->steps)
            next = g->final;
        else if ((t + 1) % g->every == 0)
            next = g->ckpt + (size_t)((t + 1) / g->every) * g->NS;
        else {
            next = g->seg + (size_t)alt * g->NS;
            alt ^= 1;
        }
        moelat_status st = forward_step(g, cur, next, t);
        if (st != MOELAT_OK)
            return device_forward_end(g, st);
        cur = next;
    }
    moelat_status st = device_forward_end(g, MOELAT_OK);
    if (st != MOELAT_OK)
        return st;
    g->recorded = 1;
    g->reversed = 0;
    return MOELAT_OK;
}

moelat_status ml_grad_host_weights(moelat_grad *g) {
    if (g->w_host)
        return MOELAT_OK;
    moelat_lattice *lat = g->lat;
    if (lat->weights_gen != g->w_gen)
        return ml_fail(lat, MOELAT_ERR_INVALID, "the gradient recording's weights are lost: the lattice's "
                       "changed (generation %llu, the recording's %llu) before they were copied",
                       (unsigned long long)lat->weights_gen, (unsigned long long)g->w_gen);
    moelat_status st = moelat_get_weights(lat, g->f_w, g->w.count);
    if (st != MOELAT_OK)
        return st;
    for (size_t v = 0; v < g->w.count; v++)
        g->w.flat[v] = g->f_w[v];
    g->w_host = 1;
    return MOELAT_OK;
}

/* The recording's inputs: the lattice's float32 weights, states and input
 * now, kept as they are (for device steps) and in double (for the host's).
 * Weights that only the device holds (after the device optimizer) stay
 * there until a host use needs them (ml_grad_host_weights; the lattice
 * calls ml_grad_engine_pin_weights before it changes them); a device sweep
 * copies them on the device (grad_cl.c). */
static moelat_status take_inputs(moelat_grad *g) {
    moelat_lattice *lat = g->lat;
    size_t ne = (size_t)lat->X * lat->Y * lat->E;
    g->w_gen = lat->weights_gen;
    g->w_host = 0;
    moelat_status st = ml_res_weights_on_device_only(lat) ? MOELAT_OK : ml_grad_host_weights(g);
    if (st == MOELAT_OK)
        st = moelat_get_states(lat, g->fwd_tmp, g->NS);
    if (st != MOELAT_OK)
        return st;
    for (size_t v = 0; v < g->NS; v++)
        g->ckpt[v] = g->fwd_tmp[v];
    g->has_ext = lat->has_ext;
    for (size_t v = 0; v < ne; v++) {
        g->f_ext[v] = lat->has_ext ? lat->ext[v] : 0.0f;
        g->ext[v] = g->f_ext[v];
    }
    g->ext_gen = lat->input_gen;
    return MOELAT_OK;
}

moelat_status moelat_grad_record(moelat_lattice *lat, int steps, const moelat_grad_options *opt,
                                 moelat_grad **out) {
    if (!out)
        return MOELAT_ERR_INVALID;
    *out = NULL;
    if (!lat)
        return MOELAT_ERR_INVALID;
    if (steps < 1)
        return ml_fail(lat, MOELAT_ERR_INVALID, "gradients need at least 1 step, not %d", steps);
    if (opt && (opt->struct_size < MOELAT_GRAD_OPTIONS_SIZE_V1 || opt->struct_size > sizeof *opt))
        return ml_fail(lat, MOELAT_ERR_INVALID,
                       "moelat_grad_options: struct_size %u is outside [%zu, %zu] (set it with "
                       "MOELAT_GRAD_OPTIONS_INIT or moelat_grad_options_init())",
                       opt->struct_size, (size_t)MOELAT_GRAD_OPTIONS_SIZE_V1, sizeof *opt);
    if (opt && opt->checkpoint_every < 0)
        return ml_fail(lat, MOELAT_ERR_INVALID, "checkpoint interval %d must be >= 1 (0: automatic)",
                       opt->checkpoint_every);
    if (lat->active_z0 != 0 || lat->active_z1 != lat->Z)
        return ml_fail(lat, MOELAT_ERR_INVALID,
                       "gradients differentiate the whole lattice, but only planes [%d, %d) of %d are "
                       "active (a slab owner); set every plane active first",
                       (int)lat->active_z0, (int)lat->active_z1, (int)lat->Z);
    ml_grad_engine *e = NULL;
    moelat_status st = ml_grad_engine_get(lat, &e);
    if (st != MOELAT_OK)
        return st;
    int every = choose_k(lat, steps, opt, e->n_blocks);
    if (every < 1)
        return MOELAT_ERR_NOMEM;
    moelat_grad *g = NULL;
    if ((st = ml_grad_tape_get(e, steps, every, &g)) != MOELAT_OK)
        return st;
    if ((st = take_inputs(g)) == MOELAT_OK) {
        ml_grad_engine_choose_path(e, g);
        st = ml_grad_forward(g);
    }
    if (st != MOELAT_OK) {
        moelat_grad_destroy(g);
        return st;
    }
    *out = g;
    return MOELAT_OK;
}

void ml_grad_sum_on_device(moelat_grad *g, int on) { g->sum_on_device = on; }
int ml_grad_summed_on_device(const moelat_grad *g) { return g->dw_on_device; }

moelat_status ml_grad_host_dweights(moelat_grad *g) {
    if (!g->dw_on_device)
        return MOELAT_OK;
    ml_grad_engine *e = g->eng;
    moelat_status st = e->dev && e->dw_tape == g && e->dev_ops->read_dw
                           ? e->dev_ops->read_dw(g)
                           : ml_fail(g->lat, MOELAT_ERR_DEVICE, "dL/dW of this recording was left on the device, "
                                     "which no longer holds it");
    if (st != MOELAT_OK)
        return st;
    g->dw_on_device = 0;
    e->dw_tape = NULL;
    return MOELAT_OK;
}

int moelat_grad_steps(const moelat_grad *g) { return g ? g->steps : 0; }
const char *moelat_grad_path(const moelat_grad *g) { return g ? g->path : ""; }
void moelat_grad_chunks(const moelat_grad *g, long *device, long *host, const char **last_fallback) {
    if (device)
        *device = g ? g->chunks_device : 0;
    if (host)
        *host = g ? g->chunks_host : 0;
    if (last_fallback)
        *last_fallback = g ? g->fallback : "";
}
int moelat_grad_checkpoint_every(const moelat_grad *g) { return g ? g->every : 0; }
const char *moelat_grad_last_error(const moelat_grad *g) {
    if (!g)
        return "no gradient recording given";
    return g->lat ? g->lat->err : g->err;
}

/* One reverse sweep from dL/ds_T, on the device when g->on_device. */
static moelat_status sweep(moelat_grad *g, const double *dstate) {
    moelat_lattice *lat = g->lat;
    const ml_backward_ops *ops = g->eng->dev_ops;
    memcpy(g->g, dstate, g->NS * sizeof *dstate);
    memset(g->dweights, 0, (g->w.count ? g->w.count : 1) * sizeof(double));
    size_t ne = (size_t)lat->X * lat->Y * lat->E;
    memset(g->dext, 0, (ne ? ne : 1) * sizeof(double));
    g->reversed = 0;
    g->chunks_device = g->chunks_host = 0;
    moelat_status st = MOELAT_OK;
    ml_grad_engine *e = g->eng;
    if (e->dw_tape == g) { /* this sweep replaces it */
        e->dw_tape = NULL;
        g->dw_on_device = 0;
    } else if (e->dw_tape && (st = ml_grad_host_dweights(e->dw_tape)) != MOELAT_OK) {
        return st; /* another recording's, which this sweep would overwrite */
    }
    g->dw_on_device = 0;
    if (g->on_device && (st = ops->begin(g)) != MOELAT_OK) {
        snprintf(g->fallback, sizeof g->fallback, "%.250s", lat->err);
        snprintf(g->eng->dev_why, sizeof g->eng->dev_why, "host (after a device failure: %.300s)", g->fallback);
        ops->close(g->eng);
        return MOELAT_ERR_DEVICE;
    }
    for (int c = g->n_ckpt - 1; c >= 0; c--) {
        int t0 = c * g->every, t1 = t0 + g->every < g->steps ? t0 + g->every : g->steps;
        /* Recompute s_{t0 .. t1-1} from the checkpoint with the recording's
         * own weights and input: the same steps as the recording, so
         * bitwise the same states for any k. */
        memcpy(g->seg, g->ckpt + (size_t)c * g->NS, g->NS * sizeof(double));
        if (t1 - t0 > 1) {
            st = device_forward_begin(g);
            for (int t = t0 + 1; st == MOELAT_OK && t < t1; t++)
                st = forward_step(g, g->seg + (size_t)(t - 1 - t0) * g->NS, g->seg + (size_t)(t - t0) * g->NS,
                                  t - 1);
            if ((st = device_forward_end(g, st)) != MOELAT_OK)
                return st;
        }
        for (int t = t1 - 1; t >= t0; t--) {
            const double *cur = g->seg + (size_t)(t - t0) * g->NS;
            st = g->on_device ? ops->step(g, cur, g->g, g->g_prev) : ml_grad_step_bwd(g, cur, g->g, g->g_prev);
            if (st != MOELAT_OK)
                return st;
            double *swap = g->g;
            g->g = g->g_prev;
            g->g_prev = swap;
        }
    }
    if (g->on_device && (st = ops->end(g)) != MOELAT_OK) {
        snprintf(g->fallback, sizeof g->fallback, "%.250s", lat->err);
        return MOELAT_ERR_DEVICE;
    }
    if (g->dw_on_device)
        e->dw_tape = g;
    g->reversed = 1;
    return MOELAT_OK;
}

/* An orphaned recording refuses every call but destroy. */
#define REQUIRE_LATTICE(g)                                                                                          \
    do {                                                                                                           \
        if (!(g))                                                                                                  \
            return MOELAT_ERR_INVALID;                                                                             \
        if (!(g)->lat)                                                                                             \
            return MOELAT_ERR_INVALID;                                                                             \
    } while (0)

moelat_status moelat_grad_backward_f64(moelat_grad *g, const double *dstate, size_t count) {
    REQUIRE_LATTICE(g);
    moelat_lattice *lat = g->lat;
    if (!dstate || count != g->NS)
        return ml_fail(lat, MOELAT_ERR_INVALID, "dL/ds_T: %zu values given, the lattice has %zu (N x S)",
                       count, g->NS);
    if (!g->recorded)
        return ml_fail(lat, MOELAT_ERR_INVALID, "no recorded run to reverse");
    for (size_t v = 0; v < count; v++)
        if (!isfinite(dstate[v]))
            return ml_fail(lat, MOELAT_ERR_NONFINITE, "dL/ds_T is not finite at value %zu (cell %zu, channel %zu)",
                           v, v / (size_t)lat->S, v % (size_t)lat->S);
    if (g->on_device && !g->eng->dev) {
        /* The lattice's device closed (or failed) since the recording. */
        g->on_device = 0;
        snprintf(g->path, sizeof g->path, "host (the device backward closed since the recording: %.250s)",
                 g->eng->dev_why);
    }
    for (;;) {
        int was_device = g->on_device;
        moelat_status st = sweep(g, dstate);
        if (st == MOELAT_ERR_DEVICE && was_device && !g->eng->dev) {
            /* The device failed past a chunk's fallback and was closed:
             * the whole sweep again on the host. */
            g->on_device = 0;
            snprintf(g->path, sizeof g->path, "host (after a device failure: %.300s)", g->fallback);
            continue;
        }
        return st;
    }
}

moelat_status moelat_grad_backward(moelat_grad *g, const float *dstate, size_t count) {
    REQUIRE_LATTICE(g);
    if (!dstate || count != g->NS)
        return ml_fail(g->lat, MOELAT_ERR_INVALID, "dL/ds_T: %zu values given, the lattice has %zu (N x S)",
                       count, g->NS);
    for (size_t v = 0; v < count; v++)
        g->dstate_in[v] = dstate[v];
    return moelat_grad_backward_f64(g, g->dstate_in, count);
}
