/* The gradient engine of a lattice and the memory of its recordings
 * (grad.h): built once with the lattice's first recording, its device half
 * rebuilt only when the lattice's backend changes; recordings are taken
 * from it and given back to it, one kept for reuse, so a training loop of
 * record, backward, destroy allocates and builds nothing after its first
 * sample. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "grad/grad.h"

static size_t weights_total(moelat_lattice *lat) {
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int n = ml_param_blocks(lat, blocks);
    size_t c = 0;
    for (int b = 0; b < n; b++)
        c += blocks[b]->n_floats;
    return c;
}

/* Every band with neighbours needs an expert with the host backward. */
static moelat_status find_backwards(ml_grad_engine *e) {
    moelat_lattice *lat = e->lat;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        e->bwd[k] = NULL;
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
        e->bwd[k] = b;
    }
    return MOELAT_OK;
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

static void free_views(double **views[MOELAT_BANDS + 1]) {
    for (int k = 0; k <= MOELAT_BANDS; k++) {
        free(views[k]);
        views[k] = NULL;
    }
}

static void engine_free(ml_grad_engine *e) {
    if (!e)
        return;
    if (e->dev && e->dev_ops)
        e->dev_ops->close(e);
    ml_grad_ws_free(e);
    for (int b = 0; e->acc && b < e->n_blocks; b++) {
        free(e->acc[b].dstate);
        free(e->acc[b].dweights);
        free(e->acc[b].dext);
        free_views(e->acc[b].dtensor);
    }
    free(e->acc);
    free(e->swap);
    free(e);
}

static void tape_free(moelat_grad *g) {
    free_views((double ***)g->w.tensor);
    free(g->w.flat);
    free(g->ext);
    free(g->f_w);
    free(g->f_ext);
    free(g->ckpt);
    free(g->seg);
    free(g->final);
    free(g->g);
    free(g->g_prev);
    free(g->dstate_in);
    free(g->dweights);
    free(g->dext);
    free(g->fwd_tmp);
    free(g);
}

static void unlink_tape(ml_grad_engine *e, moelat_grad *g) {
    for (moelat_grad **p = &e->tapes; *p; p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            break;
        }
    g->next = NULL;
}

void ml_grad_engine_detach(moelat_lattice *lat, int whole) {
    ml_grad_engine *e = lat->grad;
    if (!e)
        return;
    if (e->dw_tape && !whole && ml_grad_host_dweights(e->dw_tape) != MOELAT_OK) {
        ML_WARN("grad", "closing the device backward: a recording's dL/dW could not be read back (%s); its "
                "gradients are withdrawn", lat->err);
        e->dw_tape->reversed = 0;
    }
    if (e->dw_tape) {
        e->dw_tape->dw_on_device = 0;
        e->dw_tape = NULL;
    }
    if (e->dev && e->dev_ops)
        e->dev_ops->close(e);
    e->dev = NULL;
    e->dev_for = NULL; /* the next backend is tried afresh */
    if (!whole)
        return;
    for (moelat_grad *g = e->tapes, *next; g; g = next) {
        next = g->next;
        g->lat = NULL;
        g->eng = NULL;
        g->next = NULL;
        snprintf(g->err, sizeof g->err, "this gradient recording's lattice was destroyed; only "
                                        "moelat_grad_destroy may be called on it");
    }
    if (e->spare)
        tape_free(e->spare);
    engine_free(e);
    lat->grad = NULL;
    lat->grad_detach = NULL;
    lat->grad_weights_change = NULL;
}

moelat_status ml_grad_engine_pin_weights(moelat_lattice *lat) {
    ml_grad_engine *e = lat->grad;
    for (moelat_grad *g = e ? e->tapes : NULL; g; g = g->next)
        if (!g->w_host && g->w_gen == lat->weights_gen) {
            moelat_status st = ml_grad_host_weights(g);
            if (st != MOELAT_OK)
                return st;
        }
    return MOELAT_OK;
}

moelat_status ml_grad_engine_get(moelat_lattice *lat, ml_grad_engine **out) {
    if (lat->grad) {
        *out = lat->grad;
        return MOELAT_OK;
    }
    ml_grad_engine *e = calloc(1, sizeof *e);
    if (!e)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
    e->lat = lat;
    e->w_count = weights_total(lat);
    e->n_blocks = ml_pool_size(lat->pool);
    moelat_status st = find_backwards(e);
    if (st != MOELAT_OK) {
        engine_free(e);
        return st;
    }
    size_t ns = lat->N * (size_t)lat->S, ne = (size_t)lat->X * lat->Y * lat->E;
    e->acc = calloc((size_t)e->n_blocks, sizeof *e->acc);
    e->swap = malloc((e->w_count + ne + 1) * sizeof(float));
    int ok = e->acc && e->swap;
    for (int b = 0; ok && b < e->n_blocks; b++) {
        ml_grad_acc *a = &e->acc[b];
        a->dstate = malloc(ns * sizeof(double));
        a->dweights = malloc((e->w_count ? e->w_count : 1) * sizeof(double));
        a->dext = malloc((ne ? ne : 1) * sizeof(double));
        ok = a->dstate && a->dweights && a->dext && tensor_views(lat, a->dweights, a->dtensor) == 0;
    }
    if (!ok || ml_grad_ws_create(e) != 0) {
        engine_free(e);
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory for the gradient engine");
    }
    lat->grad_counts.builds++;
    lat->grad = e;
    lat->grad_detach = ml_grad_engine_detach;
    lat->grad_weights_change = ml_grad_engine_pin_weights;
    *out = e;
    return MOELAT_OK;
}

void ml_grad_engine_choose_path(ml_grad_engine *e, moelat_grad *g) {
    moelat_lattice *lat = e->lat;
    g->on_device = 0;
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
    if (e->dev_for != lat->backend.ctx) {
        /* First recording on this backend: its programs and buffers are
         * built now, once. */
        e->dev_for = lat->backend.ctx;
        e->dev_ops = ops;
        if (ops->open(lat->backend.ctx, e) == 0)
            lat->grad_counts.builds++;
    }
    snprintf(g->path, sizeof g->path, "%s", e->dev_why);
    g->on_device = e->dev != NULL;
}

/* The recording's own buffers; 0 or -1 (out of memory). */
static int tape_alloc(ml_grad_engine *e, moelat_grad *g) {
    moelat_lattice *lat = e->lat;
    size_t ne = (size_t)lat->X * lat->Y * lat->E, nw = e->w_count ? e->w_count : 1;
    g->w.count = e->w_count;
    g->w.flat = malloc(nw * sizeof(double));
    g->ext = calloc(ne ? ne : 1, sizeof(double));
    g->f_w = malloc(nw * sizeof(float));
    g->f_ext = calloc(ne ? ne : 1, sizeof(float));
    g->ckpt = malloc((size_t)g->n_ckpt * g->NS * sizeof(double));
    g->seg = malloc((size_t)g->every * g->NS * sizeof(double));
    g->final = malloc(g->NS * sizeof(double));
    g->g = malloc(g->NS * sizeof(double));
    g->g_prev = malloc(g->NS * sizeof(double));
    g->dstate_in = malloc(g->NS * sizeof(double));
    g->dweights = calloc(nw, sizeof(double));
    g->dext = calloc(ne ? ne : 1, sizeof(double));
    g->fwd_tmp = malloc(2 * g->NS * sizeof(float));
    if (!g->w.flat || !g->ext || !g->f_w || !g->f_ext || !g->ckpt || !g->seg || !g->final || !g->g ||
        !g->g_prev || !g->dstate_in || !g->dweights || !g->dext || !g->fwd_tmp)
        return -1;
    double **views[MOELAT_BANDS + 1] = {NULL};
    if (tensor_views(lat, g->w.flat, views) != 0) {
        free_views(views);
        return -1;
    }
    for (int b = 0; b <= MOELAT_BANDS; b++)
        g->w.tensor[b] = (const double **)views[b];
    return 0;
}

moelat_status ml_grad_tape_get(ml_grad_engine *e, int steps, int every, moelat_grad **out) {
    moelat_lattice *lat = e->lat;
    moelat_grad *g = e->spare;
    e->spare = NULL;
    if (g && (g->steps != steps || g->every != every)) {
        tape_free(g);
        g = NULL;
    }
    if (!g) {
        if (!(g = calloc(1, sizeof *g)))
            return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
        g->steps = steps;
        g->every = every;
        g->n_ckpt = (steps + every - 1) / every;
        g->NS = lat->N * (size_t)lat->S;
        if (tape_alloc(e, g) != 0) {
            tape_free(g);
            return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory for the gradient buffers");
        }
        lat->grad_counts.recording_allocs++;
    }
    g->lat = lat;
    g->eng = e;
    g->recorded = g->reversed = 0;
    g->chunks_device = g->chunks_host = 0;
    g->fallback[0] = g->err[0] = '\0';
    g->fwd_held = NULL;
    g->swapped_w = g->swapped_ext = 0;
    g->w_host = g->sum_on_device = g->dw_on_device = 0;
    g->next = e->tapes;
    e->tapes = g;
    *out = g;
    return MOELAT_OK;
}

void moelat_grad_destroy(moelat_grad *g) {
    if (!g)
        return;
    ml_grad_engine *e = g->eng;
    if (!e) { /* orphaned: its lattice is gone */
        tape_free(g);
        return;
    }
    unlink_tape(e, g);
    if (e->dw_tape == g)
        e->dw_tape = NULL;
    g->dw_on_device = 0;
    if (e->spare)
        tape_free(e->spare);
    e->spare = g; /* the next recording of the same length reuses it */
}

moelat_status moelat_grad_engine_counts(moelat_lattice *lat, uint64_t *builds, uint64_t *recording_allocs) {
    if (!lat)
        return MOELAT_ERR_INVALID;
    if (builds)
        *builds = lat->grad_counts.builds;
    if (recording_allocs)
        *recording_allocs = lat->grad_counts.recording_allocs;
    return MOELAT_OK;
}
