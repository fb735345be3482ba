/* "diffusion_host": the example diffusion expert, E = D * (mean_j n_j - x)
 * with D learnable [S] (safetensors "<band>_expert.diffusion.weight",
 * init 0.1), as a host-only plugin. Everything OpenCL in the descriptor is
 * NULL; the engine evaluates this band per cell on the host, also in batch
 * mode. A host-only plugin includes no OpenCL header: expert_abi.h declares
 * the handles it would need as opaque struct tags. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <moelat/expert_abi.h>

#define EXPERT_NAME "diffusion_host"

enum { T_D, N_TENSORS };

static int validate(const moelat_expert_dims *d, char *err, size_t errlen) {
    if (d->state_size < 1) {
        snprintf(err, errlen, EXPERT_NAME ": state size %d must be >= 1", (int)d->state_size);
        return MOELAT_EXPERT_UNSUPPORTED;
    }
    return MOELAT_EXPERT_OK;
}

static int tensors(const moelat_expert_dims *d, moelat_tensor_spec *out, int cap) {
    if (d->state_size < 1)
        return -1;
    if (cap >= 1) {
        memset(&out[0], 0, sizeof out[0]);
        snprintf(out[0].suffix, sizeof out[0].suffix, "diffusion.weight");
        out[0].ndim = 1;
        out[0].shape[0] = d->state_size;
        out[0].init = MOELAT_INIT_CONST;
        out[0].value = 0.1f;
    }
    return N_TENSORS;
}

/* The band mean goes to scratch (S floats), then out = D * (mean - x). */
static size_t scratch_floats(const moelat_expert_dims *d, int max_neighbours) {
    (void)max_neighbours;
    return (size_t)d->state_size;
}

static int host_cell(const moelat_host_cell *c) {
    const int S = c->dims->state_size;
    const float *D = c->tensors[T_D];
    float *mean = c->scratch;
    memset(mean, 0, (size_t)S * sizeof *mean);
    for (int j = 0; j < c->count; j++)
        for (int s = 0; s < S; s++)
            mean[s] += c->neighbours[(size_t)j * S + s];
    const float inv = 1.0f / (float)c->count;
    for (int s = 0; s < S; s++)
        c->out[s] = D[s] * (mean[s] * inv - c->x[s]);
    return MOELAT_EXPERT_OK;
}

static const moelat_expert_descriptor g_desc = {
    .abi_major = MOELAT_EXPERT_ABI_MAJOR,
    .abi_minor = MOELAT_EXPERT_ABI_MINOR,
    .struct_size = sizeof(moelat_expert_descriptor),
    .name = EXPERT_NAME,
    .version = "1.0.0",
    .description = "diffusion towards the band mean, host only: D * (mean_j n_j - x)",
    .hidden_names = {NULL},
    .validate = validate,
    .tensors = tensors,
    .host_scratch_floats = scratch_floats,
    .host_cell = host_cell,
    /* cl_source, cl_prepare, cl_step_begin, cl_enqueue, cl_release and
     * cl_scratch_floats stay NULL: all or nothing, the loader checks. */
};

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    (void)host; /* nothing to log */
    return &g_desc;
}
