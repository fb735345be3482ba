/* The local expert (docs/MODEL.md, "The local expert"): attention over the local band
 * by unscaled dot products with the cell's state, two small MLPs and a
 * residual mix alpha x + beta LN(p). */
#define MLB_HOST_FLOAT32 1 /* this unit's backward_math is float32: host_cell's */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backward_math.h"
#include "cpu_shape.h"
#include "expert_common.h"
#include "local_expert.h"
#include "local_forward.h"

extern const char *const local_cl_parts[];

static int local_validate(const moelat_expert_dims *d, char *err, size_t errlen) {
    if (!d || d->state_size < 1) {
        snprintf(err, errlen, "local: state size must be >= 1");
        return -1;
    }
    if (H1(d) < 1 || H2(d) < 1 || PH(d) < 1) {
        snprintf(err, errlen, "local: hidden sizes h1 %d, h2 %d, ph %d must be >= 1", H1(d),
                 H2(d), PH(d));
        return -1;
    }
    return 0;
}

static int local_tensors(const moelat_expert_dims *d, moelat_tensor_spec *out, int cap) {
    char err[128];
    if (local_validate(d, err, sizeof err) != 0)
        return -1;
    int S = d->state_size;
    ec_specs s = {out, cap, 0};
    ec_spec_linear(&s, "neighbor_aggregator.0", S, H1(d));
    ec_spec_linear(&s, "neighbor_aggregator.2", H1(d), H2(d));
    ec_spec_linear(&s, "state_processor.0", S + H2(d), PH(d));
    ec_spec_linear(&s, "state_processor.2", PH(d), S);
    ec_spec_scalar(&s, "alpha", 0.1f);
    ec_spec_scalar(&s, "beta", 0.9f);
    ec_spec_layernorm(&s, "normalization", S);
    return s.n;
}

static size_t local_scratch(const moelat_expert_dims *d, int max_neighbours) {
    return local_fwd_values(d, max_neighbours);
}

/* The float32 per-cell path: local_forward.h's forward, compiled here in
 * float (the float64 backward compiles the same text). */
static int local_host_cell(const moelat_host_cell *c) {
    float *at = c->scratch;
    local_fwd w;
    local_forward(c->dims, c->tensors, c->x, c->neighbours, c->count, &w, &at, c->out);
    return MOELAT_EXPERT_OK;
}

/* ---- OpenCL path ----
 * One work-group of work_group lanes per cells_per_group chunk cells
 * (local.cl's LOC_T: the tuning key local_cells = 1, 2 or 4, compiled in as
 * LOC_CELLS when cl_prepare builds the program again, else the kernel's rule). */

/* Defined below; cl_prepare rebuilds its cl_source for a tuning knob. */
static moelat_expert_descriptor g_desc;

typedef struct local_cl_state {
    cl_program program; /* setup->program, or its build with the tuning knob */
    cl_kernel kernel;
    cl_mem params;
    cl_mem toff;
    cl_int4 lattice;
    size_t work_group; /* lanes per group: the program's MOELAT_WG */
    size_t cells_per_group; /* local.cl's LOC_T */
    size_t cells_per_item;  /* local_cpu's cells (moelat_cpu_math.cl's MLC_V); 0: work-group kernel */
    /* CPU-shaped only: local_transpose_cpu and its feature-major copy of
     * the states (S rows of local_cpu.cl's LOC_NP(n_total) floats). */
    cl_kernel transpose;
    cl_mem states_t;
    cl_int n_total;
} local_cl_state;

static void local_cl_release(void *p) {
    local_cl_state *st = p;
    if (!st)
        return;
    if (st->kernel)
        clReleaseKernel(st->kernel);
    if (st->transpose)
        clReleaseKernel(st->transpose);
    if (st->states_t)
        clReleaseMemObject(st->states_t);
    if (st->program)
        clReleaseProgram(st->program);
    if (st->toff)
        clReleaseMemObject(st->toff);
    free(st);
}

/* Lanes per cell. The kernel declares reqd_work_group_size(MOELAT_WG), so
 * the built program itself says which MOELAT_WG it was compiled with: that
 * is the size every launch must use. setup->work_group (ABI 1.1) must agree
 * when given; a caller without it (ABI 1.0, or a test building the program
 * without -D MOELAT_WG, when the helpers' default applies) still gets the
 * right size. */
static int local_cl_lanes(cl_kernel k, const moelat_cl_setup *setup, size_t *lanes) {
    size_t reqd[3] = {0, 0, 0};
    cl_int err = clGetKernelWorkGroupInfo(k, setup->device, CL_KERNEL_COMPILE_WORK_GROUP_SIZE,
                                          sizeof reqd, reqd, NULL);
    if (err != CL_SUCCESS)
        return ec_cl_fail(err, "cl_prepare: kernel local_expert: CL_KERNEL_COMPILE_WORK_GROUP_SIZE");
    if (reqd[0] < 1 || (reqd[0] & (reqd[0] - 1)) != 0) {
        ec_log(MOELAT_LOG_ERROR,
               "cl_prepare: kernel local_expert was compiled for %zu lanes, not a power of two",
               reqd[0]);
        return MOELAT_EXPERT_ERROR;
    }
    int has_wg = setup->struct_size >= offsetof(moelat_cl_setup, work_group) + sizeof setup->work_group;
    if (has_wg && setup->work_group != 0 && (size_t)setup->work_group != reqd[0]) {
        ec_log(MOELAT_LOG_ERROR,
               "cl_prepare: work_group %d differs from the program's MOELAT_WG %zu",
               (int)setup->work_group, reqd[0]);
        return MOELAT_EXPERT_ERROR;
    }
    *lanes = reqd[0];
    return MOELAT_EXPERT_OK;
}

static int local_cl_prepare(const moelat_cl_setup *setup, void **state) {
    *state = NULL;
    if (setup->n_tensors != L_N_TENSORS) {
        ec_log(MOELAT_LOG_ERROR, "cl_prepare: %d tensors given, %d expected", setup->n_tensors,
               L_N_TENSORS);
        return MOELAT_EXPERT_ERROR;
    }
    local_cl_state *st = calloc(1, sizeof *st);
    if (!st) {
        ec_log(MOELAT_LOG_ERROR, "cl_prepare: out of memory");
        return MOELAT_EXPERT_ERROR;
    }
    st->params = setup->params;
    st->lattice = (cl_int4){{setup->lattice[0], setup->lattice[1], setup->lattice[2], 0}};
    /* The CPU-shaped kernel on CPU devices (cpu_shape.h), else the work-group one. */
    if (ec_cpu_shaped(setup)) {
        st->cells_per_item = ec_cpu_cells_per_item(setup);
        st->kernel = st->cells_per_item ? ec_cl_kernel(setup->program, "local_cpu") : NULL;
        st->transpose = st->kernel ? ec_cl_kernel(setup->program, "local_transpose_cpu") : NULL;
        size_t pad = st->transpose ? ec_cl_compiled_size(setup->program, setup->device, "local_cpu_pad", 1024) : 0;
        long long n = (long long)setup->lattice[0] * setup->lattice[1] * setup->lattice[2];
        st->n_total = (cl_int)n;
        st->toff = pad ? ec_cl_offsets_buffer(setup->context, setup->tensor_offsets, setup->n_tensors) : NULL;
        if (!st->toff || n <= 0 || n + 2 * (long long)pad > 0x7fffffffLL) {
            if (st->toff)
                ec_log(MOELAT_LOG_ERROR, "cl_prepare: lattice of %lld cells empty or too large for local_cpu", n);
            local_cl_release(st);
            return MOELAT_EXPERT_ERROR;
        }
        cl_int err = CL_SUCCESS;
        size_t bytes = (size_t)(n + 2 * (long long)pad) * (size_t)setup->dims->state_size * sizeof(float);
        st->states_t = clCreateBuffer(setup->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS || !st->states_t) {
            char what[128];
            snprintf(what, sizeof what, "creating the %zu-byte feature-major states", bytes);
            ec_cl_fail(err, what);
            local_cl_release(st);
            return MOELAT_EXPERT_ERROR;
        }
        *state = st;
        return MOELAT_EXPERT_OK;
    }
    /* The local_cells knob is compiled in as LOC_CELLS. */
    int cells = ec_cells_knob(ec_tuning(setup), "local_cells", 4, 1);
    char knob[48] = "";
    if (cells > 0)
        snprintf(knob, sizeof knob, "-D LOC_CELLS=%d", cells);
    st->program = ec_cl_tuned_program(setup, g_desc.cl_source, knob);
    st->kernel = st->program ? ec_cl_kernel(st->program, "local_expert") : NULL;
    if (!st->kernel || local_cl_lanes(st->kernel, setup, &st->work_group) != MOELAT_EXPERT_OK ||
        ec_cl_check_fit(st->kernel, "local_expert", setup->device, st->work_group) != MOELAT_EXPERT_OK) {
        local_cl_release(st);
        return MOELAT_EXPERT_ERROR;
    }
    st->toff = ec_cl_offsets_buffer(setup->context, setup->tensor_offsets, setup->n_tensors);
    st->cells_per_group = ec_cl_cells_per_group(st->program, setup->device, "local_cells_per_group", 4, "local_expert",
                                                "local_cells", cells > 0);
    if (!st->toff || !st->cells_per_group) {
        local_cl_release(st);
        return MOELAT_EXPERT_ERROR;
    }
    *state = st;
    return MOELAT_EXPERT_OK;
}

static int local_cl_enqueue(void *p, const moelat_cl_chunk *ch) {
    local_cl_state *st = p;
    cl_int4 origin = {{ch->origin[0], ch->origin[1], ch->origin[2], 0}};
    cl_int4 extent = {{ch->extent[0], ch->extent[1], ch->extent[2], 0}};
    cl_int n_offsets = ch->n_offsets, n_cells = ch->n_cells;
    cl_mem states = ch->states, offsets = ch->offsets, count = ch->band_count, out = ch->out;
    cl_event ev = NULL;
    if (ch->done)
        *ch->done = NULL;
    if (n_cells <= 0) {
        /* ec_cl_enqueue_items orders an empty chunk after its wait list
         * with a marker. */
        int rc = ec_cl_enqueue_items(ch->queue, st->kernel, "local_expert", 0, ch->num_wait,
                                     (const cl_event *)ch->wait, ch->done ? &ev : NULL);
        if (ch->done)
            *ch->done = ev;
        return rc;
    }
    ec_arg args[] = {EC_ARG_MEM(states), EC_ARG_MEM(offsets), EC_ARG(n_offsets),
                     EC_ARG(st->lattice), EC_ARG(origin),     EC_ARG(extent),
                     EC_ARG(n_cells),     EC_ARG_MEM(count),  EC_ARG_MEM(st->params),
                     EC_ARG_MEM(st->toff), EC_ARG_MEM(out)};
    const char *kname = st->cells_per_item ? "local_cpu" : "local_expert";
    if (ec_cl_set_args(st->kernel, kname, args, (int)(sizeof args / sizeof args[0])))
        return MOELAT_EXPERT_ERROR;
    if (st->cells_per_item) {
        /* after local_expert's eleven: the feature-major copy */
        cl_int err = clSetKernelArg(st->kernel, 11, sizeof(cl_mem), &st->states_t);
        if (err != CL_SUCCESS)
            return ec_cl_fail(err, "kernel local_cpu: setting argument 11");
        int rc = ec_cpu_enqueue_cells(ch->queue, st->kernel, kname, ch->extent, (size_t)n_cells, st->cells_per_item,
                                      ch->num_wait, (const cl_event *)ch->wait, ch->done ? &ev : NULL);
        if (ch->done)
            *ch->done = ev;
        return rc;
    }
    /* One work-group of work_group lanes per cells_per_group chunk cells:
     * the kernel takes its cells from the group id and is compiled for
     * exactly this size. */
    size_t local = st->work_group;
    size_t global = ((size_t)n_cells + st->cells_per_group - 1) / st->cells_per_group * local;
    cl_int err = clEnqueueNDRangeKernel(ch->queue, st->kernel, 1, NULL, &global, &local,
                                        ch->num_wait, ch->num_wait ? (const cl_event *)ch->wait : NULL,
                                        ch->done ? &ev : NULL);
    if (err != CL_SUCCESS) {
        char what[160];
        snprintf(what, sizeof what, "kernel local_expert: enqueueing %d cells x %zu lanes",
                 (int)n_cells, local);
        return ec_cl_fail(err, what);
    }
    if (ch->done)
        *ch->done = ev;
    return MOELAT_EXPERT_OK;
}

/* Once per step, CPU-shaped only: the feature-major copy of the states
 * that local_cpu reads (the engine orders the chunks after *done). */
static int local_cl_step_begin(void *p, const moelat_cl_step *step) {
    local_cl_state *st = p;
    if (step->done)
        *step->done = NULL;
    if (!st->cells_per_item)
        return MOELAT_EXPERT_OK;
    cl_mem states = step->states;
    ec_arg args[] = {EC_ARG_MEM(states), EC_ARG(st->n_total), EC_ARG_MEM(st->states_t)};
    if (ec_cl_set_args(st->transpose, "local_transpose_cpu", args, 3))
        return MOELAT_EXPERT_ERROR;
    return ec_cpu_enqueue_cells(step->queue, st->transpose, "local_transpose_cpu", NULL, (size_t)st->n_total,
                                st->cells_per_item, step->num_wait, (const cl_event *)step->wait, step->done);
}

/* Optional extensions: the host backward ("moelat.backward.host/1") and
 * the same backward as OpenCL C ("moelat.backward.cl/1"). */
static const void *local_get_extension(const char *id) {
    if (id && strcmp(id, MOELAT_EXT_BACKWARD_HOST) == 0)
        return local_backward_host();
    if (id && strcmp(id, MOELAT_EXT_BACKWARD_CL) == 0)
        return local_backward_cl();
    return NULL;
}

static moelat_expert_descriptor g_desc = {
    .abi_major = MOELAT_EXPERT_ABI_MAJOR,
    .abi_minor = MOELAT_EXPERT_ABI_MINOR,
    .struct_size = sizeof(moelat_expert_descriptor),
    .name = "local",
    .version = "1.0.0",
    .description = "dot-product attention over the local band, MLPs, alpha x + beta LN(p)",
    .hidden_names = {"h1", "h2", "ph", NULL},
    .hidden_defaults = {12, 12, 12},
    .validate = local_validate,
    .tensors = local_tensors,
    .init_params = NULL,
    .host_scratch_floats = local_scratch,
    .host_cell = local_host_cell,
    .cl_source = NULL,
    .cl_prepare = local_cl_prepare,
    .cl_step_begin = local_cl_step_begin, /* the CPU-shaped kernel's copy of the states */
    .cl_enqueue = local_cl_enqueue,
    .cl_release = local_cl_release,
    .cl_flags = MOELAT_CL_NO_ABSMEAN, /* the attention reads the neighbours themselves */
    .get_extension = local_get_extension,
};

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    ec_init(host, g_desc.name);
    if (!g_desc.cl_source) /* 1, 2 or 4: a power of two dividing the work-group (ml_wg_seg_sum) */
        g_desc.cl_source = ec_join_cl_parts(local_cl_parts);
    return &g_desc;
}
