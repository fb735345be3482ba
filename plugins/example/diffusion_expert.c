/* The "diffusion" expert: relaxes a cell towards the mean of its band,
 *
 *     E = D * (mean_j n_j - x)            (elementwise over the S values)
 *
 * with a learnable per-component coefficient vector D, safetensors name
 * "<band>_expert.diffusion.weight", shape [S], initialised to 0.1. Served
 * on a band it adds a discrete Laplacian-like smoothing over that band's
 * neighbours whose rate the gate and D decide; D = 0 switches it off.
 *
 * Host path: the mean over the neighbours handed in. OpenCL path: one
 * work-item per (cell, value) reading the engine's band_mean, so the
 * plugin never walks the stencil itself. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moelat/expert_abi.h>

#include "diffusion.h" /* T_D, N_TENSORS; the backward */

/* moelat_add_expert() embeds diffusion.cl under this name. */
extern const char diffusion_cl_source[];

#define EXPERT_NAME "diffusion"
#define D_INIT 0.1f

static const moelat_host_services *g_host;

static void say(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(int level, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_host && g_host->log)
        g_host->log(level, EXPERT_NAME, "%s", msg);
    else
        fprintf(stderr, "[" EXPERT_NAME "] %s\n", msg);
}

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
        out[0].value = D_INIT;
    }
    return N_TENSORS;
}

static int host_cell(const moelat_host_cell *c) {
    const int S = c->dims->state_size;
    const float *D = c->tensors[T_D];
    /* The mean accumulates in out itself: no scratch needed. */
    for (int s = 0; s < S; s++)
        c->out[s] = 0.0f;
    for (int j = 0; j < c->count; j++) {
        const float *n = c->neighbours + (size_t)j * S;
        for (int s = 0; s < S; s++)
            c->out[s] += n[s];
    }
    const float inv = 1.0f / (float)c->count;
    for (int s = 0; s < S; s++)
        c->out[s] = D[s] * (c->out[s] * inv - c->x[s]);
    return MOELAT_EXPERT_OK;
}

/* ---- Gradients ----
 * diffusion_backward.c: the host backward ("moelat.backward.host/1") and
 * the same text as OpenCL C for the engine's device backward
 * ("moelat.backward.cl/1"). */
static const void *get_extension(const char *id) { return diffusion_backward_extension(id); }

/* ---- OpenCL path ---- */

/* The errors a plugin's own calls can return, by name (the engine reports
 * build failures itself, with the build log). */
static const char *cl_error_name(cl_int e) {
#define ERR(c) {c, #c}
    static const struct {
        cl_int code;
        const char *name;
    } names[] = {
        ERR(CL_OUT_OF_RESOURCES),         ERR(CL_OUT_OF_HOST_MEMORY),
        ERR(CL_MEM_OBJECT_ALLOCATION_FAILURE), ERR(CL_INVALID_VALUE),
        ERR(CL_INVALID_CONTEXT),          ERR(CL_INVALID_COMMAND_QUEUE),
        ERR(CL_INVALID_HOST_PTR),         ERR(CL_INVALID_MEM_OBJECT),
        ERR(CL_INVALID_BUFFER_SIZE),      ERR(CL_INVALID_PROGRAM),
        ERR(CL_INVALID_PROGRAM_EXECUTABLE), ERR(CL_INVALID_KERNEL_NAME),
        ERR(CL_INVALID_KERNEL_DEFINITION), ERR(CL_INVALID_KERNEL),
        ERR(CL_INVALID_ARG_INDEX),        ERR(CL_INVALID_ARG_VALUE),
        ERR(CL_INVALID_ARG_SIZE),         ERR(CL_INVALID_KERNEL_ARGS),
        ERR(CL_INVALID_WORK_DIMENSION),   ERR(CL_INVALID_WORK_GROUP_SIZE),
        ERR(CL_INVALID_WORK_ITEM_SIZE),   ERR(CL_INVALID_GLOBAL_OFFSET),
        ERR(CL_INVALID_GLOBAL_WORK_SIZE), ERR(CL_INVALID_EVENT_WAIT_LIST),
        ERR(CL_INVALID_EVENT),            ERR(CL_INVALID_OPERATION),
    };
#undef ERR
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].code == e)
            return names[i].name;
    return "unknown OpenCL error";
}

static int cl_fail(cl_int e, const char *what) {
    say(MOELAT_LOG_ERROR, "%s: %s (%d)", what, cl_error_name(e), (int)e);
    return MOELAT_EXPERT_ERROR;
}

typedef struct cl_state {
    cl_kernel kernel;
    cl_mem params;   /* the engine's; not released here */
    cl_int d_offset; /* of D in params, in floats */
    cl_int4 lattice;
    int S;
} cl_state;

static void cl_release(void *p) {
    cl_state *st = p;
    if (!st)
        return;
    if (st->kernel)
        clReleaseKernel(st->kernel);
    free(st);
}

static int cl_prepare(const moelat_cl_setup *setup, void **state) {
    *state = NULL;
    if (setup->n_tensors != N_TENSORS) {
        say(MOELAT_LOG_ERROR, "cl_prepare: %d tensors given, %d expected", (int)setup->n_tensors,
            N_TENSORS);
        return MOELAT_EXPERT_ERROR;
    }
    if (setup->tensor_offsets[T_D] > (uint64_t)CL_INT_MAX) {
        say(MOELAT_LOG_ERROR, "cl_prepare: tensor diffusion.weight at offset %llu exceeds an int",
            (unsigned long long)setup->tensor_offsets[T_D]);
        return MOELAT_EXPERT_ERROR;
    }
    cl_state *st = calloc(1, sizeof *st);
    if (!st) {
        say(MOELAT_LOG_ERROR, "cl_prepare: out of memory");
        return MOELAT_EXPERT_ERROR;
    }
    cl_int err = CL_SUCCESS;
    st->kernel = clCreateKernel(setup->program, "diffusion_expert", &err);
    if (err != CL_SUCCESS) {
        st->kernel = NULL;
        cl_release(st);
        return cl_fail(err, "creating kernel diffusion_expert");
    }
    st->params = setup->params;
    st->S = setup->dims->state_size;
    st->d_offset = (cl_int)setup->tensor_offsets[T_D];
    st->lattice = (cl_int4){{setup->lattice[0], setup->lattice[1], setup->lattice[2], 0}};
    *state = st;
    return MOELAT_EXPERT_OK;
}

static int cl_enqueue(void *p, const moelat_cl_chunk *ch) {
    cl_state *st = p;
    cl_int4 origin = {{ch->origin[0], ch->origin[1], ch->origin[2], 0}};
    cl_int4 extent = {{ch->extent[0], ch->extent[1], ch->extent[2], 0}};
    cl_int n_cells = ch->n_cells;
    cl_mem states = ch->states, mean = ch->band_mean, count = ch->band_count, out = ch->out;
    const struct {
        size_t size;
        const void *value;
    } args[] = {
        {sizeof states, &states}, {sizeof st->lattice, &st->lattice}, {sizeof origin, &origin},
        {sizeof extent, &extent}, {sizeof n_cells, &n_cells},         {sizeof mean, &mean},
        {sizeof count, &count},   {sizeof st->params, &st->params},   {sizeof st->d_offset, &st->d_offset},
        {sizeof out, &out},
    };
    for (cl_uint i = 0; i < sizeof args / sizeof args[0]; i++) {
        cl_int err = clSetKernelArg(st->kernel, i, args[i].size, args[i].value);
        if (err != CL_SUCCESS) {
            char what[80];
            snprintf(what, sizeof what, "kernel diffusion_expert: argument %u", (unsigned)i);
            return cl_fail(err, what);
        }
    }
    /* The kernel ignores ids past the last value, so the global size can be
     * rounded up to a multiple that every device schedules well. */
    size_t global = ((size_t)ch->n_cells * (size_t)st->S + 63) / 64 * 64;
    cl_event ev = NULL;
    cl_int err;
    if (global == 0) /* still order after the wait list, as the engine expects */
        err = clEnqueueMarkerWithWaitList(ch->queue, ch->num_wait,
                                          ch->num_wait ? (const cl_event *)ch->wait : NULL, &ev);
    else
        err = clEnqueueNDRangeKernel(ch->queue, st->kernel, 1, NULL, &global, NULL, ch->num_wait,
                                     ch->num_wait ? (const cl_event *)ch->wait : NULL, &ev);
    if (err != CL_SUCCESS)
        return cl_fail(err, "enqueueing kernel diffusion_expert");
    if (ch->done)
        *ch->done = ev;
    else
        clReleaseEvent(ev);
    return MOELAT_EXPERT_OK;
}

static const moelat_expert_descriptor g_desc = {
    .abi_major = MOELAT_EXPERT_ABI_MAJOR,
    .abi_minor = MOELAT_EXPERT_ABI_MINOR,
    .struct_size = sizeof(moelat_expert_descriptor),
    .name = EXPERT_NAME,
    .version = "1.0.0",
    .description = "diffusion towards the band mean: D * (mean_j n_j - x), D learnable [S]",
    .hidden_names = {NULL}, /* no hidden sizes */
    .validate = validate,
    .tensors = tensors,
    .init_params = NULL, /* the spec's const init is enough */
    .host_scratch_floats = NULL,
    .host_cell = host_cell,
    .cl_source = diffusion_cl_source,
    .cl_prepare = cl_prepare,
    .cl_step_begin = NULL,
    .cl_enqueue = cl_enqueue,
    .cl_release = cl_release,
    .cl_scratch_floats = NULL,
    .cl_flags = MOELAT_CL_NO_ABSMEAN, /* the kernel reads the band mean only */
    .get_extension = get_extension,   /* since ABI 1.4: the backward */
};

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    /* A services table too short to hold log is treated as absent. */
    if (host && host->struct_size >= offsetof(moelat_host_services, log) + sizeof host->log)
        g_host = host;
    return &g_desc;
}
