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
#include "base/log.h"

void moelat_grad_options_default(moelat_grad_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->struct_size = sizeof *opt;
}

static size_t weights_total(moelat_lattice *lat) {
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int n = ml_param_blocks(lat, blocks);
    size_t c = 0;
    for (int b = 0; b < n; b++)
        c += blocks[b]->n_floats;
    return c;
}

uint64_t ml_grad_bytes(const moelat_lattice *lat, int steps, int k, int n_blocks) {
    moelat_lattice *l = (moelat_lattice *)lat;
    uint64_t ns = (uint64_t)lat->N * (uint64_t)lat->S;
    uint64_t n_ckpt = ((uint64_t)steps + (uint64_t)k - 1) / (uint64_t)k;
    /* checkpoints, one segment, s_T, two adjoint buffers, and per block an
     * N x S scatter buffer; weights: the double copy, the result and one
     * accumulator per block. */
    uint64_t states = ns * (n_ckpt + (uint64_t)k + 3 + (uint64_t)n_blocks);
    uint64_t weights = (uint64_t)weights_total(l) * (2 + (uint64_t)n_blocks);
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

/* Every band with neighbours needs an expert with the host backward. */
static moelat_status find_backwards(moelat_grad *g) {
    moelat_lattice *lat = g->lat;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        g->bwd[k] = NULL;
        if (lat->stencil.count[k] == 0)
            continue; /* never run: nothing to differentiate */
        const moelat_expert_descriptor *d = lat->expert[k].desc;
        const size_t need = offsetof(moelat_expert_descriptor, get_extension) + sizeof d->get_extension;
        const moelat_backward_host *b = NULL;
        if (d->struct_size >= need && d->abi_minor >= 4 && d->get_extension)
            b = d->get_extension(MOELAT_EXT_BACKWARD_HOST);
        if (!b || b->struct_size < offsetof(moelat_backward_host, reserved) || !b->scratch_doubles ||
            !b->host_cell_f64 || !b->backward_cell)
            return ml_fail(lat, MOELAT_ERR_PLUGIN,
                           "band %s: expert '%s' (%s) has no host backward (extension %s), so "
                           "gradients cannot be computed",
                           moelat_band_name(k), d->name, lat->expert[k].path, MOELAT_EXT_BACKWARD_HOST);
        char why[512] = "";
        if (b->validate && b->validate(&lat->expert[k].dims, why, sizeof why) != 0)
            return ml_fail(lat, MOELAT_ERR_INVALID, "band %s: expert '%s': %s", moelat_band_name(k), d->name,
                           why[0] ? why : "refuses gradients of this configuration");
        g->bwd[k] = b;
    }
    return MOELAT_OK;
}

void moelat_grad_destroy(moelat_grad *g) {
    if (!g)
        return;
    if (g->dev_ops)
        g->dev_ops->close(g);
    free(g->fwd_tmp);
    ml_grad_ws_free(g);
    for (int b = 0; g->acc && b < g->n_blocks; b++) {
        free(g->acc[b].dstate);
        free(g->acc[b].dweights);
        free(g->acc[b].dext);
        for (int k = 0; k <= MOELAT_BANDS; k++)
            free(g->acc[b].dtensor[k]);
    }
    free(g->acc);
    for (int k = 0; k <= MOELAT_BANDS; k++)
        free(g->w.tensor[k]);
    free(g->w.flat);
    free(g->ext);
    free(g->ckpt);
    free(g->seg);
    free(g->final);
    free(g->g);
    free(g->g_prev);
    free(g->dweights);
    free(g->dext);
    free(g);
}

/* Per block, pointers to each tensor inside a flat array. */
static int tensor_views(moelat_lattice *lat, double *flat, double **out[MOELAT_BANDS + 1]) {
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int n = ml_param_blocks(lat, blocks);
    size_t base = 0;
    for (int b = 0; b < n; b++) {
        out[b] = calloc((size_t)(blocks[b]->n_tensors ? blocks[b]->n_tensors : 1), sizeof(double *));
        if (!out[b])
            return -1;
        for (int t = 0; t < blocks[b]->n_tensors; t++)
            out[b][t] = flat + base + blocks[b]->offsets[t];
        base += blocks[b]->n_floats;
    }
    return 0;
}

static moelat_status alloc_all(moelat_grad *g) {
    moelat_lattice *lat = g->lat;
    size_t ne = (size_t)lat->X * lat->Y * lat->E;
    g->w.count = weights_total(lat);
    g->w.flat = malloc((g->w.count ? g->w.count : 1) * sizeof(double));
    g->ext = calloc(ne ? ne : 1, sizeof(double));
    g->ckpt = malloc((size_t)g->n_ckpt * g->NS * sizeof(double));
    g->seg = malloc((size_t)g->every * g->NS * sizeof(double));
    g->final = malloc(g->NS * sizeof(double));
    g->g = malloc(g->NS * sizeof(double));
    g->g_prev = malloc(g->NS * sizeof(double));
    g->dweights = calloc(g->w.count ? g->w.count : 1, sizeof(double));
    g->dext = calloc(ne ? ne : 1, sizeof(double));
    g->acc = calloc((size_t)g->n_blocks, sizeof *g->acc);
    if (!g->w.flat || !g->ext || !g->ckpt || !g->seg || !g->final || !g->g || !g->g_prev || !g->dweights ||
        !g->dext || !g->acc)
        return MOELAT_ERR_NOMEM;
    double **views[MOELAT_BANDS + 1];
    if (tensor_views(lat, g->w.flat, views) != 0)
        return MOELAT_ERR_NOMEM;
    for (int b = 0; b <= MOELAT_BANDS; b++)
        g->w.tensor[b] = (const double **)views[b];
    for (int b = 0; b < g->n_blocks; b++) {
        ml_grad_acc *a = &g->acc[b];
        a->dstate = malloc(g->NS * sizeof(double));
        a->dweights = malloc((g->w.count ? g->w.count : 1) * sizeof(double));
        a->dext = malloc((ne ? ne : 1) * sizeof(double));
        if (!a->dstate || !a->dweights || !a->dext || tensor_views(lat, a->dweights, a->dtensor) != 0)
            return MOELAT_ERR_NOMEM;
    }
    return MOELAT_OK;
}

/* The device's backward when the lattice computes batched and its
 * backend has one; otherwise g->path says why the host runs it. */
static void open_device(moelat_grad *g) {
    moelat_lattice *lat = g->lat;
    g->dev_ops = NULL;
    g->dev = NULL;
    if (lat->mode == MOELAT_MODE_PERCELL) {
        snprintf(g->path, sizeof g->path, "host (mode percell)");
        return;
    }
    if (!lat->tuning.grad_device) {
        snprintf(g->path, sizeof g->path, "host (tuning grad_device=off)");
        return;
    }
    if (!lat->backend.ops && moelat_upgrade_to_batch(lat) != MOELAT_OK) {
        snprintf(g->path, sizeof g->path, "host (no device: %.300s)", lat->err);
        ML_INFO("grad", "backward on the host: %s", g->path);
        return;
    }
    const ml_backward_ops *ops = lat->backend.ops ? lat->backend.ops->backward : NULL;
    if (!ops) {
        snprintf(g->path, sizeof g->path, "host (the device backend has no backward)");
        return;
    }
    if (ops->open(lat->backend.ctx, g) == 0)
        g->dev_ops = ops;
}

/* One forward step of the recorded run: the lattice's own batched step
 * (float32, on its device) when the backward runs there, else the float64
 * host step. The device's step leaves the lattice as it found it: its
 * states, step counter and report are restored by the caller's
 * device_forward_end. */
static moelat_status forward_step(moelat_grad *g, const double *cur, double *next, int t) {
    if (!g->dev)
        return ml_grad_step_f64(g, cur, next, t);
    moelat_lattice *lat = g->lat;
    float *f = g->fwd_tmp;
    lat->step_count = g->saved_step_count + (uint64_t)t;
    moelat_status st = MOELAT_OK;
    if (cur != g->fwd_held) { /* else the lattice holds cur already: the last step's output */
        for (size_t v = 0; v < g->NS; v++)
            f[v] = (float)cur[v];
        st = moelat_set_states(lat, f, g->NS);
    }
    g->fwd_held = NULL;
    if (st == MOELAT_OK)
        st = moelat_step(lat, 1);
    if (st == MOELAT_OK)
        st = moelat_get_states(lat, f, g->NS);
    if (st != MOELAT_OK)
        return st;
    for (size_t v = 0; v < g->NS; v++)
        next[v] = f[v];
    g->fwd_held = next;
    return MOELAT_OK;
}

/* Around forward_step's device steps: the lattice's states, step counter
 * and statistics saved, then put back. */
static moelat_status device_forward_begin(moelat_grad *g) {
    if (!g->dev)
        return MOELAT_OK;
    moelat_lattice *lat = g->lat;
    if (!g->fwd_tmp && !(g->fwd_tmp = malloc(2 * g->NS * sizeof(float))))
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
    g->saved_step_count = lat->step_count;
    g->saved_stats = lat->stats;
    g->fwd_held = NULL;
    return moelat_get_states(lat, g->fwd_tmp + g->NS, g->NS);
}

static moelat_status device_forward_end(moelat_grad *g, moelat_status st) {
    if (!g->dev)
        return st;
    moelat_lattice *lat = g->lat;
    char why[sizeof lat->err];
    snprintf(why, sizeof why, "%s", lat->err);
    g->fwd_held = NULL;
    moelat_status back = moelat_set_states(lat, g->fwd_tmp + g->NS, g->NS);
    lat->step_count = g->saved_step_count;
    lat->stats = g->saved_stats;
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
        return st0;
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

moelat_status moelat_grad_record(moelat_lattice *lat, int steps, const moelat_grad_options *opt,
                                 moelat_grad **out) {
    if (!out)
        return MOELAT_ERR_INVALID;
    *out = NULL;
    if (!lat)
        return MOELAT_ERR_INVALID;
    if (steps < 1)
        return ml_fail(lat, MOELAT_ERR_INVALID, "gradients need at least 1 step, not %d", steps);
    if (opt && opt->struct_size < sizeof *opt)
        return ml_fail(lat, MOELAT_ERR_INVALID, "moelat_grad_options: struct_size %u, expected %zu",
                       opt->struct_size, sizeof *opt);
    if (opt && opt->checkpoint_every < 0)
        return ml_fail(lat, MOELAT_ERR_INVALID, "checkpoint interval %d must be >= 1 (0: automatic)",
                       opt->checkpoint_every);
    if (lat->active_z0 != 0 || lat->active_z1 != lat->Z)
        return ml_fail(lat, MOELAT_ERR_INVALID,
                       "gradients differentiate the whole lattice, but only planes [%d, %d) of %d are "
                       "active (a slab owner); set every plane active first",
                       (int)lat->active_z0, (int)lat->active_z1, (int)lat->Z);
    moelat_grad *g = calloc(1, sizeof *g);
    if (!g)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
    g->lat = lat;
    g->steps = steps;
    g->NS = lat->N * (size_t)lat->S;
    g->n_blocks = ml_pool_size(lat->pool);
    moelat_status st = find_backwards(g);
    if (st != MOELAT_OK) {
        moelat_grad_destroy(g);
        return st;
    }
    g->every = choose_k(lat, steps, opt, g->n_blocks);
    if (g->every < 1) {
        moelat_grad_destroy(g);
        return MOELAT_ERR_NOMEM;
    }
    g->n_ckpt = (steps + g->every - 1) / g->every;
    if (alloc_all(g) != MOELAT_OK || ml_grad_ws_create(g) != 0) {
        moelat_grad_destroy(g);
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory for the gradient buffers");
    }
    /* Inputs of the float64 run: the lattice's float32 values. */
    float *tmp = malloc((g->NS > g->w.count ? g->NS : g->w.count) * sizeof(float) + sizeof(float));
    if (!tmp) {
        moelat_grad_destroy(g);
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
    }
    if ((st = moelat_get_weights(lat, tmp, g->w.count)) == MOELAT_OK) {
        for (size_t v = 0; v < g->w.count; v++)
            g->w.flat[v] = tmp[v];
        st = moelat_get_states(lat, tmp, g->NS);
    }
    if (st == MOELAT_OK) {
        for (size_t v = 0; v < g->NS; v++)
            g->ckpt[v] = tmp[v];
        if (lat->has_ext)
            for (size_t v = 0; v < (size_t)lat->X * lat->Y * lat->E; v++)
                g->ext[v] = lat->ext[v];
        open_device(g);
        st = ml_grad_forward(g);
    }
    free(tmp);
    if (st != MOELAT_OK) {
        moelat_grad_destroy(g);
        return st;
    }
    *out = g;
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

/* One reverse sweep from dL/ds_T, on the device when g->dev is set. */
static moelat_status sweep(moelat_grad *g, const double *dstate) {
    moelat_lattice *lat = g->lat;
    memcpy(g->g, dstate, g->NS * sizeof *dstate);
    memset(g->dweights, 0, (g->w.count ? g->w.count : 1) * sizeof(double));
    size_t ne = (size_t)lat->X * lat->Y * lat->E;
    memset(g->dext, 0, (ne ? ne : 1) * sizeof(double));
    g->reversed = 0;
    g->chunks_device = g->chunks_host = 0;
    moelat_status st = MOELAT_OK;
    if (g->dev && (st = g->dev_ops->begin(g)) != MOELAT_OK) {
        snprintf(g->fallback, sizeof g->fallback, "%.250s", lat->err);
        g->dev_ops->close(g);
        return MOELAT_ERR_DEVICE;
    }
    for (int c = g->n_ckpt - 1; c >= 0; c--) {
        int t0 = c * g->every, t1 = t0 + g->every < g->steps ? t0 + g->every : g->steps;
        /* Recompute s_{t0 .. t1-1} from the checkpoint: the same float64
         * steps as the recording, so bitwise the same states for any k. */
        memcpy(g->seg, g->ckpt + (size_t)c * g->NS, g->NS * sizeof(double));
        if (t1 - t0 > 1 && (st = device_forward_begin(g)) != MOELAT_OK)
            return st;
        for (int t = t0 + 1; t < t1; t++)
            if ((st = forward_step(g, g->seg + (size_t)(t - 1 - t0) * g->NS, g->seg + (size_t)(t - t0) * g->NS,
                                   t - 1)) != MOELAT_OK)
                break;
        if (t1 - t0 > 1 && (st = device_forward_end(g, st)) != MOELAT_OK)
            return st;
        for (int t = t1 - 1; t >= t0; t--) {
            const double *cur = g->seg + (size_t)(t - t0) * g->NS;
            st = g->dev ? g->dev_ops->step(g, cur, g->g, g->g_prev) : ml_grad_step_bwd(g, cur, g->g, g->g_prev);
            if (st != MOELAT_OK)
                return st;
            double *swap = g->g;
            g->g = g->g_prev;
            g->g_prev = swap;
        }
    }
    if (g->dev && (st = g->dev_ops->end(g)) != MOELAT_OK) {
        snprintf(g->fallback, sizeof g->fallback, "%.250s", lat->err);
        return MOELAT_ERR_DEVICE;
    }
    g->reversed = 1;
    return MOELAT_OK;
}

moelat_status moelat_grad_backward_f64(moelat_grad *g, const double *dstate, size_t count) {
    if (!g)
        return MOELAT_ERR_INVALID;
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
    for (;;) {
        moelat_status st = sweep(g, dstate);
        if (st == MOELAT_ERR_DEVICE && !g->dev) {
            /* The device failed past a chunk's fallback and was closed:
             * the whole sweep again on the host. */
            snprintf(g->path, sizeof g->path, "host (after a device failure: %.300s)", g->fallback);
            continue;
        }
        return st;
    }
}

moelat_status moelat_grad_backward(moelat_grad *g, const float *dstate, size_t count) {
    if (!g)
        return MOELAT_ERR_INVALID;
    if (!dstate || count != g->NS)
        return ml_fail(g->lat, MOELAT_ERR_INVALID, "dL/ds_T: %zu values given, the lattice has %zu (N x S)",
                       count, g->NS);
    double *d = malloc(count * sizeof *d);
    if (!d)
        return ml_fail(g->lat, MOELAT_ERR_NOMEM, "out of memory");
    for (size_t v = 0; v < count; v++)
        d[v] = dstate[v];
    moelat_status st = moelat_grad_backward_f64(g, d, count);
    free(d);
    return st;
}
