/* ---- Gradients: the diffusion expert's backward, written once ----
 * The same function in double on the host (host_cell_f64) and its adjoint
 * (diffusion_backward_cell), which ADDS into dx, dneighbours and dtensors:
 *     dD += dout * (m - x),  dx += -D * dout,  dn_j += D * dout / count.
 * ext is not read, so dext gets nothing.
 *
 * This file is compiled twice: as C with the plugin (mlb_real = double:
 * "moelat.backward.host/1") and, embedded by moelat_add_expert's
 * BACKWARD_CL, as OpenCL C after moelat/backward_portable.h (mlb_real =
 * float, arrays __global: "moelat.backward.cl/1"), which the engine builds
 * for its batched device backward. Hence: arrays are `MLB_G mlb_real *`,
 * constants MLB_C(...), and what only the host has is inside
 * #ifndef __OPENCL_VERSION__. */
#ifndef __OPENCL_VERSION__
#include <stddef.h>
#include <string.h>

#include <moelat/backward_portable.h>

#include "diffusion.h"
#endif

static void band_mean(const moelat_grad_cell *c, MLB_G mlb_real *m) {
    const int S = c->dims->state_size;
    for (int s = 0; s < S; s++)
        m[s] = MLB_C(0.0);
    for (int j = 0; j < c->count; j++)
        for (int s = 0; s < S; s++)
            m[s] += c->neighbours[(size_t)j * S + s];
    for (int s = 0; s < S; s++)
        m[s] /= c->count;
}

static int diffusion_backward_cell(const moelat_grad_cell *c) {
    const int S = c->dims->state_size;
    MLB_G const mlb_real *D = c->tensors[T_D], *g = c->dout;
    MLB_G mlb_real *m = c->scratch, *dD = c->dtensors[T_D];
    band_mean(c, m);
    for (int s = 0; s < S; s++) {
        if (c->out)
            c->out[s] = D[s] * (m[s] - c->x[s]);
        dD[s] += g[s] * (m[s] - c->x[s]);
        c->dx[s] -= D[s] * g[s];
    }
    for (int j = 0; j < c->count; j++)
        for (int s = 0; s < S; s++)
            c->dneighbours[(size_t)j * S + s] += D[s] * g[s] / c->count;
    return MOELAT_EXPERT_OK;
}

#ifndef __OPENCL_VERSION__
/* Values of scratch (doubles on the host, floats on the device). */
static size_t grad_scratch(const moelat_expert_dims *d, int max_neighbours) {
    (void)max_neighbours;
    return (size_t)d->state_size; /* the band mean */
}

static int host_cell_f64(const moelat_grad_cell *c) {
    const int S = c->dims->state_size;
    const double *D = c->tensors[T_D];
    band_mean(c, c->scratch);
    for (int s = 0; s < S; s++)
        c->out[s] = D[s] * (c->scratch[s] - c->x[s]);
    return MOELAT_EXPERT_OK;
}

static const moelat_backward_host g_backward = {
    .struct_size = sizeof(moelat_backward_host),
    .validate = NULL, /* every configuration is differentiable */
    .scratch_doubles = grad_scratch,
    .host_cell_f64 = host_cell_f64,
    .backward_cell = diffusion_backward_cell,
};

/* moelat_add_expert(... BACKWARD_CL diffusion.h diffusion_backward.c)
 * embeds this file's text (after diffusion.h's) under this name. */
extern const char diffusion_backward_cl_source[];
static const char *const g_backward_cl_parts[] = {diffusion_backward_cl_source, NULL};

static const moelat_backward_cl g_backward_cl = {
    .struct_size = sizeof(moelat_backward_cl),
    /* E reads the neighbours only through their mean: every dneighbours
     * row is the same, and the engine may keep one per cell. */
    .flags = MOELAT_BACKWARD_CL_MEAN_ONLY,
    .source_parts = g_backward_cl_parts,
    .backward_fn = "diffusion_backward_cell",
    .scratch_floats = grad_scratch,
};

const void *diffusion_backward_extension(const char *id) {
    if (id && strcmp(id, MOELAT_EXT_BACKWARD_HOST) == 0)
        return &g_backward;
    if (id && strcmp(id, MOELAT_EXT_BACKWARD_CL) == 0)
        return &g_backward_cl;
    return NULL;
}
#endif
