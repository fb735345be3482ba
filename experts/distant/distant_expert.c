/* The distant expert (docs/MODEL.md, "The distant expert"): a CNF block integrated
 * from the cell's state with the distant band's neighbour mean fixed. */
#define MLB_HOST_FLOAT32 1 /* this unit's backward_math is float32: host_cell's */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnf_host.h"
#include "cpu_shape.h"
#include "distant_backward.h" /* ds_forward, ODE_H */
#include "expert_common.h"

extern const char *const distant_cl_parts[];

static int distant_validate(const moelat_expert_dims *d, char *err, size_t errlen) {
    if (!d || d->state_size < 1) {
        snprintf(err, errlen, "distant: state size must be >= 1");
        return -1;
    }
    char why[200];
    if (cnf_validate(d->state_size, ODE_H(d), d->cnf_steps, d->cnf_mode, why, sizeof why)) {
        snprintf(err, errlen, "distant: %s", why);
        return -1;
    }
    return 0;
}

static int distant_tensors(const moelat_expert_dims *d, moelat_tensor_spec *out, int cap) {
    char err[256];
    if (distant_validate(d, err, sizeof err) != 0)
        return -1;
    ec_specs s = {out, cap, 0};
    cnf_spec(&s, "", d->state_size, ODE_H(d));
    return s.n;
}

static size_t distant_scratch(const moelat_expert_dims *d, int max_neighbours) {
    (void)max_neighbours;
    return (size_t)d->state_size + cnf_scratch_floats(d->state_size, ODE_H(d));
}

/* The float32 per-cell path: distant_backward.h's forward, the mean in
 * float and the CNF in double (cnf_host_run). */
static int distant_host_cell(const moelat_host_cell *c) {
    float *m = c->scratch; /* mean_j n_j, S */
    ds_forward(c->dims, c->tensors, c->x, c->neighbours, c->count, m, c->out, m + c->dims->state_size);
    return MOELAT_EXPERT_OK;
}

/* ---- OpenCL path: the engine hands the band mean, so no neighbour is read ----
 * One work-group of work_group lanes per cells_per_group chunk cells
 * (distant.cl's DS_T: the tuning key distant_cells = 1, 2 or 4, compiled in as
 * DS_CELLS when cl_prepare builds the program again, else the kernel's rule). */

/* Defined below; cl_prepare rebuilds its cl_source for a tuning knob. */
static moelat_expert_descriptor g_desc;

typedef struct distant_cl_state {
    cl_program program; /* setup->program, or its build with the tuning knob */
    cl_kernel kernel;
    cl_mem params;
    cl_mem toff;
    cl_int4 lattice;
    size_t work_group; /* lanes per group: the program's MOELAT_WG */
    size_t cells_per_group; /* distant.cl's DS_T */
    size_t cells_per_item;  /* distant_cpu's cells (moelat_cpu_math.cl's MLC_V); 0: work-group kernel */
} distant_cl_state;

static void distant_cl_release(void *p) {
    distant_cl_state *st = p;
    if (!st)
        return;
    if (st->kernel)
        clReleaseKernel(st->kernel);
    if (st->program)
        clReleaseProgram(st->program);
    if (st->toff)
        clReleaseMemObject(st->toff);
    free(st);
}

static int distant_cl_prepare(const moelat_cl_setup *setup, void **state) {
    *state = NULL;
    if (setup->n_tensors != CNF_N_TENSORS) {
        ec_log(MOELAT_LOG_ERROR, "cl_prepare: %d tensors given, %d expected", setup->n_tensors,
               CNF_N_TENSORS);
        return MOELAT_EXPERT_ERROR;
    }
    int wg = ec_cl_work_group(setup);
    if (wg < 0)
        return MOELAT_EXPERT_ERROR;
    distant_cl_state *st = calloc(1, sizeof *st);
    if (!st) {
        ec_log(MOELAT_LOG_ERROR, "cl_prepare: out of memory");
        return MOELAT_EXPERT_ERROR;
    }
    st->params = setup->params;
    st->lattice = (cl_int4){{setup->lattice[0], setup->lattice[1], setup->lattice[2], 0}};
    /* The CPU-shaped kernel on CPU devices (cpu_shape.h), else the work-group one. */
    if (ec_cpu_shaped(setup)) {
        st->cells_per_item = ec_cpu_cells_per_item(setup);
        st->kernel = st->cells_per_item ? ec_cl_kernel(setup->program, "distant_cpu") : NULL;
        st->toff = st->kernel ? ec_cl_offsets_buffer(setup->context, setup->tensor_offsets, setup->n_tensors)
                              : NULL;
        if (!st->toff) {
            distant_cl_release(st);
            return MOELAT_EXPERT_ERROR;
        }
        *state = st;
        return MOELAT_EXPERT_OK;
    }
    /* The distant_cells knob is compiled in as DS_CELLS. */
    int cells = ec_cells_knob(ec_tuning(setup), "distant_cells", 4, 1);
    char knob[48] = "";
    if (cells > 0)
        snprintf(knob, sizeof knob, "-D DS_CELLS=%d", cells);
    st->program = ec_cl_tuned_program(setup, g_desc.cl_source, knob);
    st->kernel = st->program ? ec_cl_kernel(st->program, "distant_expert") : NULL;
    st->toff = st->kernel ? ec_cl_offsets_buffer(setup->context, setup->tensor_offsets,
                                                 setup->n_tensors)
                          : NULL;
    if (!st->toff) {
        distant_cl_release(st);
        return MOELAT_EXPERT_ERROR;
    }
    st->work_group = (size_t)wg;
    st->cells_per_group = ec_cl_cells_per_group(st->program, setup->device, "distant_cells_per_group", 4, "distant_expert",
                                                "distant_cells", cells > 0);
    if (!st->cells_per_group ||
        ec_cl_check_fit(st->kernel, "distant_expert", setup->device, st->work_group) != MOELAT_EXPERT_OK) {
        distant_cl_release(st);
        return MOELAT_EXPERT_ERROR;
    }
    *state = st;
    return MOELAT_EXPERT_OK;
}

static int distant_cl_enqueue(void *p, const moelat_cl_chunk *ch) {
    distant_cl_state *st = p;
    cl_int4 origin = {{ch->origin[0], ch->origin[1], ch->origin[2], 0}};
    cl_int4 extent = {{ch->extent[0], ch->extent[1], ch->extent[2], 0}};
    cl_int n_cells = ch->n_cells;
    cl_mem states = ch->states, count = ch->band_count, mean = ch->band_mean, out = ch->out;
    ec_arg args[] = {EC_ARG_MEM(states), EC_ARG(st->lattice),  EC_ARG(origin),
                     EC_ARG(extent),     EC_ARG(n_cells),      EC_ARG_MEM(count),
                     EC_ARG_MEM(mean),   EC_ARG_MEM(st->params), EC_ARG_MEM(st->toff),
                     EC_ARG_MEM(out)};
    const char *kname = st->cells_per_item ? "distant_cpu" : "distant_expert";
    if (ec_cl_set_args(st->kernel, kname, args, (int)(sizeof args / sizeof args[0])))
        return MOELAT_EXPERT_ERROR;
    cl_event ev = NULL;
    int rc = MOELAT_EXPERT_OK;
    if (st->cells_per_item) {
        rc = ec_cpu_enqueue_cells(ch->queue, st->kernel, kname, ch->extent, ch->n_cells > 0 ? (size_t)ch->n_cells : 0,
                                  st->cells_per_item, ch->num_wait, (const cl_event *)ch->wait,
                                  ch->done ? &ev : NULL);
    } else if (ch->n_cells <= 0) {
        /* Nothing to compute (an empty NDRange is an error), but the engine
         * still orders later work after this call's wait list. */
        rc = ec_cl_enqueue_items(ch->queue, st->kernel, "distant_expert", 0, ch->num_wait,
                                 (const cl_event *)ch->wait, ch->done ? &ev : NULL);
    } else {
        size_t local = st->work_group;
        size_t groups = ((size_t)ch->n_cells + st->cells_per_group - 1) / st->cells_per_group;
        size_t global = groups * local;
        cl_int err = clEnqueueNDRangeKernel(ch->queue, st->kernel, 1, NULL, &global, &local,
                                            ch->num_wait,
                                            ch->num_wait ? (const cl_event *)ch->wait : NULL,
                                            ch->done ? &ev : NULL);
        if (err != CL_SUCCESS) {
            char what[160];
            snprintf(what, sizeof what, "kernel distant_expert: enqueueing %d cells x %zu lanes",
                     ch->n_cells, local);
            rc = ec_cl_fail(err, what);
        }
    }
    if (ch->done)
        *ch->done = ev;
    return rc;
}

/* Optional extensions: the host backward ("moelat.backward.host/1") and
 * the same backward as OpenCL C ("moelat.backward.cl/1"). */
static const void *distant_get_extension(const char *id) {
    if (id && strcmp(id, MOELAT_EXT_BACKWARD_HOST) == 0)
        return distant_backward_host();
    if (id && strcmp(id, MOELAT_EXT_BACKWARD_CL) == 0)
        return distant_backward_cl();
    return NULL;
}

static moelat_expert_descriptor g_desc = {
    .abi_major = MOELAT_EXPERT_ABI_MAJOR,
    .abi_minor = MOELAT_EXPERT_ABI_MINOR,
    .struct_size = sizeof(moelat_expert_descriptor),
    .name = "distant",
    .version = "1.0.0",
    .description = "CNF block from the cell's state with the distant band's mean fixed",
    .hidden_names = {"ode_hidden", NULL},
    .hidden_defaults = {48},
    .validate = distant_validate,
    .tensors = distant_tensors,
    .init_params = NULL,
    .host_scratch_floats = distant_scratch,
    .host_cell = distant_host_cell,
    .cl_source = NULL,
    .cl_prepare = distant_cl_prepare,
    .cl_step_begin = NULL,
    .cl_enqueue = distant_cl_enqueue,
    .cl_release = distant_cl_release,
    .cl_flags = MOELAT_CL_NO_ABSMEAN, /* the CNF reads the band mean only */
    .get_extension = distant_get_extension,
};

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    ec_init(host, g_desc.name);
    if (!g_desc.cl_source) {
        /* at most cnf.cl's CNF_CELLS_MAX, a power of two (it divides the
         * work-group for the cells' segmented sums) */
        g_desc.cl_source = ec_join_cl_parts(distant_cl_parts);
    }
    return &g_desc;
}
