/* Reading a gradient run's results (moelat/grad.h): s_T, dL/dW (flat and
 * per tensor), dL/ds_0 and dL/d(external input), in float or double. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grad/grad.h"

static moelat_status check(moelat_grad *g, const void *dst, size_t count, size_t want, const char *what,
                           int need_backward) {
    if (!g || !g->lat) /* an orphaned recording: moelat_grad_last_error says so */
        return MOELAT_ERR_INVALID;
    if (!dst || count != want)
        return ml_fail(g->lat, MOELAT_ERR_INVALID, "%s: room for %zu values given, it has %zu", what, count,
                       want);
    if (need_backward && !g->reversed)
        return ml_fail(g->lat, MOELAT_ERR_INVALID, "%s: no gradients yet (call moelat_grad_backward first)",
                       what);
    if (need_backward == 2) /* dL/dW, which a trainer's sweep may have left on the device */
        return ml_grad_host_dweights(g);
    if (!need_backward && !g->recorded)
        return ml_fail(g->lat, MOELAT_ERR_INVALID, "%s: no recorded run", what);
    return MOELAT_OK;
}

static void to_float(float *dst, const double *src, size_t n) {
    for (size_t v = 0; v < n; v++)
        dst[v] = (float)src[v];
}

#define READERS(fname, what, src, want, need_bwd)                                            \
    moelat_status fname(moelat_grad *g, float *dst, size_t count) {                          \
        moelat_status st = check(g, dst, count, g && g->lat ? (want) : 0, what, need_bwd);             \
        if (st == MOELAT_OK)                                                                 \
            to_float(dst, (src), count);                                                     \
        return st;                                                                           \
    }                                                                                        \
    moelat_status fname##_f64(moelat_grad *g, double *dst, size_t count) {                   \
        moelat_status st = check(g, dst, count, g && g->lat ? (want) : 0, what, need_bwd);             \
        if (st == MOELAT_OK)                                                                 \
            memcpy(dst, (src), count * sizeof *dst);                                         \
        return st;                                                                           \
    }

#define EXT_COUNT ((size_t)g->lat->X * g->lat->Y * g->lat->E)
READERS(moelat_grad_final_states, "s_T", g->final, g->NS, 0)
READERS(moelat_grad_weights, "dL/dW", g->dweights, g->w.count, 2)
READERS(moelat_grad_states, "dL/ds_0", g->g, g->NS, 1)
READERS(moelat_grad_input, "dL/d input", g->dext, EXT_COUNT, 1)

moelat_status moelat_grad_tensor(moelat_grad *g, const char *name, float *dst, size_t count) {
    if (!g || !g->lat)
        return MOELAT_ERR_INVALID;
    if (!name)
        return ml_fail(g->lat, MOELAT_ERR_INVALID, "no tensor name given");
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int n = ml_param_blocks(g->lat, blocks);
    size_t base = 0;
    for (int b = 0; b < n; b++) {
        size_t plen = strlen(blocks[b]->prefix);
        if (strncmp(name, blocks[b]->prefix, plen) == 0)
            for (int t = 0; t < blocks[b]->n_tensors; t++)
                if (strcmp(name + plen, blocks[b]->specs[t].suffix) == 0) {
                    size_t numel = ml_spec_numel(&blocks[b]->specs[t]);
                    moelat_status st = check(g, dst, count, numel, name, 2);
                    if (st == MOELAT_OK)
                        to_float(dst, g->dweights + base + blocks[b]->offsets[t], numel);
                    return st;
                }
        base += blocks[b]->n_floats;
    }
    return ml_fail(g->lat, MOELAT_ERR_INVALID, "no weight tensor named '%s'", name);
}

moelat_status moelat_grad_save_weights(moelat_grad *g, const char *path) {
    if (!g || !g->lat)
        return MOELAT_ERR_INVALID;
    if (!path)
        return ml_fail(g->lat, MOELAT_ERR_INVALID, "no file name given for the weight gradients");
    if (!g->reversed)
        return ml_fail(g->lat, MOELAT_ERR_INVALID, "%s: no gradients yet (call moelat_grad_backward first)", path);
    moelat_status got = ml_grad_host_dweights(g);
    if (got != MOELAT_OK)
        return got;
    /* Blocks that share the weights' names and shapes, holding dL/dW. */
    ml_param_block *blocks[MOELAT_BANDS + 1], copy[MOELAT_BANDS + 1], *cp[MOELAT_BANDS + 1];
    int n = ml_param_blocks(g->lat, blocks);
    size_t n_tensors = 1;
    for (int b = 0; b < n; b++)
        n_tensors += (size_t)blocks[b]->n_tensors;
    float *data = malloc((g->w.count ? g->w.count : 1) * sizeof *data);
    float **views = calloc(n_tensors, sizeof *views);
    if (!data || !views) {
        free(data);
        free(views);
        return ml_fail(g->lat, MOELAT_ERR_NOMEM, "out of memory");
    }
    to_float(data, g->dweights, g->w.count);
    size_t base = 0, v = 0;
    for (int b = 0; b < n; b++) {
        copy[b] = *blocks[b];
        copy[b].data = data + base;
        copy[b].tensors = views + v;
        for (int t = 0; t < copy[b].n_tensors; t++)
            copy[b].tensors[t] = copy[b].data + copy[b].offsets[t];
        v += (size_t)copy[b].n_tensors;
        base += blocks[b]->n_floats;
        cp[b] = &copy[b];
    }
    int rc = ml_params_save(path, cp, n, g->lat->err, sizeof g->lat->err);
    free(data);
    free(views);
    return rc == 0 ? MOELAT_OK : MOELAT_ERR_IO;
}
