/* The functional expert (docs/MODEL.md, "The functional expert"): an adaptive gate
 * between a message-passing GRU-like update (with the cell's external
 * inputs) and a CNF block, mixed by a linear, LayerNorm and GELU. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnf_host.h"
#include "cpu_shape.h"
#include "expert_common.h" /* before CLBlast's header: sets the OpenCL version */

#include <clblast_c.h>

extern const char *const functional_cl_parts[];

#include "functional_expert.h"

static int functional_validate(const moelat_expert_dims *d, char *err, size_t errlen) {
    if (!d || d->state_size < 2 || d->state_size % 2 != 0) {
        snprintf(err, errlen, "functional: state size %d must be even and >= 2 (S/2 is a width)",
                 d ? d->state_size : 0);
        return -1;
    }
    if (d->ext_size < 0) {
        snprintf(err, errlen, "functional: external input size %d is negative", d->ext_size);
        return -1;
    }
    if (HD(d) < 1 || MD(d) < 1) {
        snprintf(err, errlen, "functional: hidden sizes hd %d, md %d must be >= 1", HD(d), MD(d));
        return -1;
    }
    char why[200];
    if (cnf_validate(d->state_size, ODE_H(d), d->cnf_steps, d->cnf_mode, why, sizeof why)) {
        snprintf(err, errlen, "functional: %s", why);
        return -1;
    }
    return 0;
}

static int functional_tensors(const moelat_expert_dims *d, moelat_tensor_spec *out, int cap) {
    char err[256];
    if (functional_validate(d, err, sizeof err) != 0)
        return -1;
    int S = d->state_size, E = d->ext_size, hd = HD(d), md = MD(d);
    ec_specs s = {out, cap, 0};
    ec_spec_linear(&s, "adaptive_gating.gating_network.0", 2 * S, S / 2);
    ec_spec_linear(&s, "adaptive_gating.gating_network.2", S / 2, 1);
    ec_spec_linear(&s, "gnn_component.message_network.message_creator.0", 2 * S, hd);
    ec_spec_linear(&s, "gnn_component.message_network.message_creator.2", hd, md);
    ec_spec_linear(&s, "gnn_component.aggregator.attention_network.0", md + S, md);
    ec_spec_linear(&s, "gnn_component.aggregator.attention_network.2", md, 1);
    ec_spec_linear(&s, "gnn_component.state_updater.update_gate", S + md + E, S);
    ec_spec_linear(&s, "gnn_component.state_updater.reset_gate", S + md + E, S);
    ec_spec_linear(&s, "gnn_component.state_updater.candidate_network", S + md + E, S);
    cnf_spec(&s, "cnf_component.", S, ODE_H(d));
    ec_spec_linear(&s, "result_processor.0", 2 * S, S);
    ec_spec_layernorm(&s, "result_processor.1", S);
    return s.n;
}

static size_t functional_scratch(const moelat_expert_dims *d, int max_neighbours) {
    size_t S = (size_t)d->state_size, E = (size_t)d->ext_size;
    size_t hd = (size_t)HD(d), md = (size_t)MD(d);
    size_t per_edge = md + 1;                    /* m_j and e_j */
    size_t fixed = 3 * S                         /* act, mean, cnf */
                   + 2 * S                       /* concatenated inputs up to 2S */
                   + S / 2 + hd + md + md        /* hidden layers, M */
                   + (S + md + E)                /* [x, M, ext] */
                   + 4 * S;                      /* z, rr, cand, gnn */
    return (size_t)max_neighbours * per_edge + fixed +
           cnf_scratch_floats(d->state_size, ODE_H(d));
}

/* Hands out consecutive pieces of the scratch buffer. */
static float *take(float **at, size_t n) {
    float *p = *at;
    *at += n;
    return p;
}

static void concat2(float *dst, const float *a, int na, const float *b, int nb) {
    memcpy(dst, a, (size_t)na * sizeof *dst);
    memcpy(dst + na, b, (size_t)nb * sizeof *dst);
}

static int functional_host_cell(const moelat_host_cell *c) {
    const moelat_expert_dims *d = c->dims;
    const float *const *t = c->tensors;
    int S = d->state_size, E = d->ext_size, hd = HD(d), md = MD(d), n = c->count;
    const float *x = c->x;
    float *at = c->scratch;
    float *msg = take(&at, (size_t)n * md); /* m_j, count x md */
    float *e = take(&at, (size_t)n);
    float *act = take(&at, S), *mean = take(&at, S), *cnf = take(&at, S);
    float *in = take(&at, 2 * (size_t)S);
    float *hg = take(&at, S / 2), *hid = take(&at, hd), *ta = take(&at, md), *M = take(&at, md);
    float *xu = take(&at, (size_t)(S + md + E));
    float *z = take(&at, S), *rr = take(&at, S), *cand = take(&at, S), *gnn = take(&at, S);
    float *cnf_work = at;

    /* act = mean |n_j|, and the neighbour mean for the CNF. */
    memset(act, 0, (size_t)S * sizeof *act);
    memset(mean, 0, (size_t)S * sizeof *mean);
    for (int j = 0; j < n; j++)
        for (int s = 0; s < S; s++) {
            float v = c->neighbours[(size_t)j * S + s];
            act[s] += fabsf(v);
            mean[s] += v;
        }
    for (int s = 0; s < S; s++) {
        act[s] /= (float)n;
        mean[s] /= (float)n;
    }

    /* g = sigma(L(S/2->1)(GELU(L(2S->S/2)([x, act])))) */
    concat2(in, x, S, act, S);
    ec_dense(t[F_G0_W], t[F_G0_B], in, 2 * S, hg, S / 2);
    for (int i = 0; i < S / 2; i++)
        hg[i] = ec_gelu(hg[i]);
    float g_logit;
    ec_dense(t[F_G2_W], t[F_G2_B], hg, S / 2, &g_logit, 1);
    float g = ec_sigmoid(g_logit);

    /* Messages m_j and their attention logits e_j. */
    for (int j = 0; j < n; j++) {
        float *m = msg + (size_t)j * md;
        concat2(in, c->neighbours + (size_t)j * S, S, x, S);
        ec_dense(t[F_MC0_W], t[F_MC0_B], in, 2 * S, hid, hd);
        for (int i = 0; i < hd; i++)
            hid[i] = ec_gelu(hid[i]);
        ec_dense(t[F_MC2_W], t[F_MC2_B], hid, hd, m, md);
        concat2(in, m, md, x, S);
        ec_dense(t[F_AT0_W], t[F_AT0_B], in, md + S, ta, md);
        for (int i = 0; i < md; i++)
            ta[i] = tanhf(ta[i]);
        ec_dense(t[F_AT2_W], t[F_AT2_B], ta, md, &e[j], 1);
    }
    ec_softmax(e, n);
    memset(M, 0, (size_t)md * sizeof *M);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < md; i++)
            M[i] += e[j] * msg[(size_t)j * md + i];

    /* GRU-like update from u = [M, ext]; z and rr both read [x, u]. */
    memcpy(xu, x, (size_t)S * sizeof *xu);
    memcpy(xu + S, M, (size_t)md * sizeof *xu);
    for (int i = 0; i < E; i++)
        xu[S + md + i] = c->ext ? c->ext[i] : 0.0f;
    ec_dense(t[F_UG_W], t[F_UG_B], xu, S + md + E, z, S);
    ec_dense(t[F_RG_W], t[F_RG_B], xu, S + md + E, rr, S);
    for (int s = 0; s < S; s++) {
        z[s] = ec_sigmoid(z[s]);
        xu[s] = ec_sigmoid(rr[s]) * x[s]; /* now [rr * x, u] */
    }
    ec_dense(t[F_CN_W], t[F_CN_B], xu, S + md + E, cand, S);
    for (int s = 0; s < S; s++)
        gnn[s] = (1.0f - z[s]) * x[s] + z[s] * tanhf(cand[s]);

    cnf_host_run(t + F_CNF, S, ODE_H(d), d->cnf_steps, d->cnf_mode, x, mean, cnf, cnf_work);

    /* E_F = GELU(LN(L(2S->S)([(1 - g) gnn, g cnf]))) */
    for (int s = 0; s < S; s++) {
        in[s] = (1.0f - g) * gnn[s];
        in[S + s] = g * cnf[s];
    }
    ec_dense(t[F_RP0_W], t[F_RP0_B], in, 2 * S, c->out, S);
    ec_layernorm(c->out, S, t[F_RP1_G], t[F_RP1_B]);
    for (int s = 0; s < S; s++)
        c->out[s] = ec_gelu(c->out[s]);
    return MOELAT_EXPERT_OK;
}

/* ---- OpenCL path ----
 * cl_step_begin computes the per-cell projections of functional.cl
 * (W_n n_i, W_x n_i, A_x n_i) once per cell of the lattice, as one SGEMM
 * states x Wp^T, and the step's constants C = A_m W_2 and A_m b_2; an edge
 * then needs only its W_n n_j row and one md x hd layer (the same
 * function, see functional.cl). The SGEMM is CLBlast's on GPUs (about 14x
 * functional_project's speed on the H200 at 40^3, tools/bench/NOTES.md)
 * and functional_project on other devices, where CLBlast's kernels cost
 * more to build than they save; the tuning key functional_gemm=clblast|kernel
 * chooses. cl_enqueue runs functional_output (one work-group of
 * work_group lanes per cells_per_group chunk cells, everything of those
 * cells in one kernel) or, where the kernel source splits it
 * (functional.cl's FN_SPLIT), functional_edges (edge_cells cells per
 * work-group side by side, work_group lanes each; M into the chunk's
 * scratch) then functional_tails (cells_per_group cells per work-group). */

typedef struct functional_cl_state {
    cl_kernel prepare;  /* functional_prepare: constants and packed weights */
    cl_kernel project;  /* functional_project: the SGEMM without CLBlast */
    cl_kernel cell;     /* functional_output: the whole expert */
    cl_kernel edges;    /* functional_edges and functional_tails: the */
    cl_kernel tails;    /* expert in two kernels (split), else NULL */
    cl_mem params;
    cl_mem toff;
    cl_mem proj;        /* N x (2 hd + md), then md x (hd + 1) */
    cl_mem wp;          /* (2 hd + md) x S: the packed projection weights */
    size_t wp_cols;     /* S */
    int clblast;        /* the SGEMM runs on CLBlast */
    cl_event proj_done; /* the last projection, retained; NULL before any step */
    cl_int4 lattice;
    cl_int n_total;
    size_t work_group;  /* lanes per cell: the program's MOELAT_WG */
    size_t proj_per_cell; /* functional.cl's FN_PW = 2 hd + md */
    size_t proj_consts;   /* functional.cl's FN_CONSTS = md (hd + 1) */
    size_t cells_per_group; /* functional.cl's FN_T */
    int split;              /* functional.cl's FN_SPLIT */
    size_t edge_cells;      /* functional.cl's FN_EC: cells per functional_edges group */
    size_t cells_per_item;  /* functional_cpu's cells (moelat_cpu_math.cl's MLC_V); 0: work-group kernels */
    cl_int proj_rows;       /* rows of proj before the constants: n_total, or
                             * functional_cpu.cl's FNC_NP(n_total) feature-major */
    cl_program program;     /* setup->program, or its build with the tuning knobs */
} functional_cl_state;

/* Tuning knobs (the lattice's tuning string, read by cl_prepare; the
 * program is then built again with them, see ec_cl_tuned_program):
 *  - functional_cells: chunk cells per work-group of functional_output, or
 *    of functional_tails when split (functional.cl's FN_T; 1..16, compiled
 *    in as FN_CELLS), else chosen by the kernel source from S and the
 *    device's local memory;
 *  - functional_split: one kernel or two (0/1/on/off, compiled in as
 *    FN_SPLIT_KNOB), else chosen by the kernel source from S (two up to
 *    S = 64; it must agree with split_default);
 *  - functional_gemm: clblast or kernel for the per-step projections,
 *    else CLBlast on GPUs only. */
static int split_default(const moelat_expert_dims *d) { return d->state_size <= 64; }

/* Defined below; cl_prepare rebuilds its cl_source for a tuning knob. */
static moelat_expert_descriptor g_desc;

static int use_clblast(const char *tuning, cl_device_id dev) {
    char v[32];
    if (ec_tuning_value(tuning, "functional_gemm", v, sizeof v) && v[0]) {
        if (strcmp(v, "clblast") == 0)
            return 1;
        if (strcmp(v, "kernel") == 0)
            return 0;
        ec_log(MOELAT_LOG_WARN, "tuning functional_gemm=%s is neither clblast nor kernel: ignored", v);
    }
    cl_device_type type = 0;
    if (clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL) != CL_SUCCESS)
        return 0;
    return (type & CL_DEVICE_TYPE_GPU) != 0;
}

static void functional_cl_release(void *p) {
    functional_cl_state *st = p;
    if (!st)
        return;
    if (st->proj_done)
        clReleaseEvent(st->proj_done);
    if (st->prepare)
        clReleaseKernel(st->prepare);
    if (st->project)
        clReleaseKernel(st->project);
    if (st->wp)
        clReleaseMemObject(st->wp);
    if (st->cell)
        clReleaseKernel(st->cell);
    if (st->edges)
        clReleaseKernel(st->edges);
    if (st->tails)
        clReleaseKernel(st->tails);
    if (st->proj)
        clReleaseMemObject(st->proj);
    if (st->toff)
        clReleaseMemObject(st->toff);
    if (st->program)
        clReleaseProgram(st->program);
    free(st);
}

static int functional_cl_buffers(const moelat_cl_setup *setup, functional_cl_state *st, void **state);

static int functional_cl_prepare(const moelat_cl_setup *setup, void **state) {
    *state = NULL;
    if (setup->n_tensors != F_N_TENSORS) {
        ec_log(MOELAT_LOG_ERROR, "cl_prepare: %d tensors given, %d expected", setup->n_tensors,
               F_N_TENSORS);
        return MOELAT_EXPERT_ERROR;
    }
    long long n = (long long)setup->lattice[0] * setup->lattice[1] * setup->lattice[2];
    if (n <= 0 || n > 0x7fffffffLL) {
        ec_log(MOELAT_LOG_ERROR, "cl_prepare: lattice %dx%dx%d is empty or too large",
               setup->lattice[0], setup->lattice[1], setup->lattice[2]);
        return MOELAT_EXPERT_ERROR;
    }
    int wg = ec_cl_work_group(setup);
    if (wg < 0)
        return MOELAT_EXPERT_ERROR;
    functional_cl_state *st = calloc(1, sizeof *st);
    if (!st) {
        ec_log(MOELAT_LOG_ERROR, "cl_prepare: out of memory");
        return MOELAT_EXPERT_ERROR;
    }
    st->params = setup->params;
    st->lattice = (cl_int4){{setup->lattice[0], setup->lattice[1], setup->lattice[2], 0}};
    st->n_total = (cl_int)n;
    st->work_group = (size_t)wg;
    /* On CPU devices functional_cpu (cpu_shape.h) in place of the
     * work-group kernels; the per-step projections are the same. */
    if (ec_cpu_shaped(setup)) {
        st->cells_per_item = ec_cpu_cells_per_item(setup);
        st->prepare = st->cells_per_item ? ec_cl_kernel(setup->program, "functional_prepare") : NULL;
        st->project = st->prepare ? ec_cl_kernel(setup->program, "functional_project_cpu") : NULL;
        st->cell = st->project ? ec_cl_kernel(setup->program, "functional_cpu") : NULL;
        size_t pad = st->cell ? ec_cl_compiled_size(setup->program, setup->device, "functional_cpu_pad", 1024) : 0;
        if (!pad || n + 2 * (long long)pad > 0x7fffffffLL) {
            if (pad)
                ec_log(MOELAT_LOG_ERROR, "cl_prepare: lattice of %lld cells too large for functional_cpu", n);
            functional_cl_release(st);
            return MOELAT_EXPERT_ERROR;
        }
        st->proj_rows = (cl_int)(n + 2 * (long long)pad);
        return functional_cl_buffers(setup, st, state);
    }
    st->proj_rows = st->n_total;
    const char *tuning = ec_tuning(setup);
    int knob_split = ec_switch_knob(tuning, "functional_split");
    int knob_cells = ec_cells_knob(tuning, "functional_cells", 16, 0);
    int planned = knob_split >= 0 ? knob_split : split_default(setup->dims);
    char knobs[96] = "";
    if (knob_split >= 0 || knob_cells > 0)
        snprintf(knobs, sizeof knobs, "-D FN_SPLIT_KNOB=%d -D FN_CELLS=%d", knob_split, knob_cells);
    st->program = ec_cl_tuned_program(setup, g_desc.cl_source, knobs);
    if (!st->program) {
        functional_cl_release(st);
        return MOELAT_EXPERT_ERROR;
    }
    cl_program prog = st->program;
    /* The cells per group are the tails kernel's when the expert is split. */
    const char *grouped = planned ? "functional_tails" : "functional_output";
    st->cells_per_group = ec_cl_cells_per_group(prog, setup->device, "functional_cells_per_group", 16, grouped,
                                                "functional_cells", knob_cells > 0);
    if (!st->cells_per_group) {
        functional_cl_release(st);
        return MOELAT_EXPERT_ERROR;
    }
    size_t kernels = ec_cl_compiled_size(prog, setup->device, "functional_kernel_count", 2);
    st->split = kernels == 2;
    if (!kernels || st->split != planned) {
        if (kernels)
            ec_log(MOELAT_LOG_ERROR, "cl_prepare: the kernel source runs %zu kernels, the host planned %d",
                   kernels, planned + 1);
        functional_cl_release(st);
        return MOELAT_EXPERT_ERROR;
    }
    /* The edge walk's form is the kernel source's choice (functional.cl's
     * FN_MMA: tensor cores on NVIDIA sm_80+): logged, nothing to plan. */
    size_t walk = ec_cl_compiled_size(prog, setup->device, "functional_edge_walk_form", 2);
    ec_log(MOELAT_LOG_INFO, "functional: %s%s, edge walk %s", st->split ? "edges and tails in two kernels" : "one kernel",
           knob_split >= 0 ? " (functional_split)" : "", walk == 2 ? "on tensor cores (TF32, 3 products)" : "in FP32");
    st->prepare = ec_cl_kernel(prog, "functional_prepare");
    st->project = st->prepare ? ec_cl_kernel(prog, "functional_project") : NULL;
    st->cell = st->project ? ec_cl_kernel(prog, "functional_output") : NULL;
    if (st->cell && st->split) {
        st->edges = ec_cl_kernel(prog, "functional_edges");
        st->tails = st->edges ? ec_cl_kernel(prog, "functional_tails") : NULL;
    }
    if (st->tails) {
        st->edge_cells = ec_cl_compiled_size(prog, setup->device, "functional_edge_cells_per_group", 16);
        if (st->edge_cells > 1)
            ec_log(MOELAT_LOG_INFO, "functional_edges: %zu chunk cells per work-group", st->edge_cells);
    }
    if (!st->cell || (st->split && (!st->tails || !st->edge_cells)) ||
        (st->split ? ec_cl_check_fit(st->edges, "functional_edges", setup->device,
                                     st->work_group * st->edge_cells) ||
                         ec_cl_check_fit(st->tails, "functional_tails", setup->device, st->work_group)
                   : ec_cl_check_fit(st->cell, "functional_output", setup->device, st->work_group)) !=
            MOELAT_EXPERT_OK) {
        functional_cl_release(st);
        return MOELAT_EXPERT_ERROR;
    }
    return functional_cl_buffers(setup, st, state);
}

/* The rest of cl_prepare for either kernel shape: the tensor offsets, the
 * projection buffers and functional_prepare's arguments; *state = st on
 * success, st released on failure. */
static int functional_cl_buffers(const moelat_cl_setup *setup, functional_cl_state *st, void **state) {
    long long n = st->proj_rows;
    st->toff = ec_cl_offsets_buffer(setup->context, setup->tensor_offsets, setup->n_tensors);
    if (!st->toff) {
        functional_cl_release(st);
        return MOELAT_EXPERT_ERROR;
    }
    cl_int err = CL_SUCCESS;
    /* functional.cl's FN_PW floats per cell (two hd projections and one md)
     * and FN_CONSTS for the step. */
    st->proj_per_cell = (size_t)(2 * HD(setup->dims) + MD(setup->dims));
    st->proj_consts = (size_t)MD(setup->dims) * (size_t)(HD(setup->dims) + 1);
    size_t bytes = ((size_t)n * st->proj_per_cell + st->proj_consts) * sizeof(float);
    st->proj = clCreateBuffer(setup->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    size_t wbytes = st->proj_per_cell * (size_t)setup->dims->state_size * sizeof(float);
    if (err == CL_SUCCESS)
        st->wp = clCreateBuffer(setup->context, CL_MEM_READ_WRITE, wbytes, NULL, &err);
    if (err != CL_SUCCESS || !st->proj || !st->wp) {
        char what[160];
        snprintf(what, sizeof what, "creating the %zu-byte projection buffers", bytes + wbytes);
        ec_cl_fail(err, what);
        functional_cl_release(st);
        return MOELAT_EXPERT_ERROR;
    }
    st->wp_cols = (size_t)setup->dims->state_size;
    /* functional_prepare's arguments never change: set once. */
    ec_arg pargs[] = {EC_ARG_MEM(st->params), EC_ARG_MEM(st->toff), EC_ARG(st->proj_rows), EC_ARG_MEM(st->proj),
                      EC_ARG_MEM(st->wp)};
    if (ec_cl_set_args(st->prepare, "functional_prepare", pargs, (int)(sizeof pargs / sizeof pargs[0]))) {
        functional_cl_release(st);
        return MOELAT_EXPERT_ERROR;
    }
    /* The feature-major layout of the CPU-shaped kernel is functional_project_cpu's. */
    st->clblast = !st->cells_per_item && use_clblast(ec_tuning(setup), setup->device);
    ec_log(MOELAT_LOG_INFO, "per-step projections: %s",
           st->clblast ? "CLBlast SGEMM" : st->cells_per_item ? "functional_project_cpu" : "functional_project");
    *state = st;
    return MOELAT_EXPERT_OK;
}

/* Once per step: functional_prepare (the constants and Wp), then the
 * projections of every cell, proj = states x Wp^T: CLBlast's SGEMM, or
 * functional_project (one work-item per value). The queue is in order. */
static int functional_cl_step_begin(void *p, const moelat_cl_step *step) {
    functional_cl_state *st = p;
    if (step->done)
        *step->done = NULL;
    cl_mem states = step->states;
    size_t S = st->wp_cols;
    cl_event ev = NULL;
    if (ec_cl_enqueue_items(step->queue, st->prepare, "functional_prepare",
                            st->proj_consts + st->proj_per_cell * S, step->num_wait, (const cl_event *)step->wait,
                            NULL))
        return MOELAT_EXPERT_ERROR;
    if (st->clblast) {
        cl_command_queue q = step->queue;
        CLBlastStatusCode cs = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes,
                                            (size_t)st->n_total, st->proj_per_cell, S, 1.0f, states, 0, S, st->wp, 0,
                                            S, 0.0f, st->proj, 0, st->proj_per_cell, &q, &ev);
        if (cs != CLBlastSuccess) {
            ec_log(MOELAT_LOG_WARN,
                   "CLBlast SGEMM of the projections failed (status %d): functional_project computes them "
                   "from now on",
                   (int)cs);
            st->clblast = 0;
            ev = NULL;
        }
    }
    if (!st->clblast) {
        ec_arg args[] = {EC_ARG_MEM(states), EC_ARG(st->n_total), EC_ARG_MEM(st->wp), EC_ARG_MEM(st->proj)};
        const char *kname = st->cells_per_item ? "functional_project_cpu" : "functional_project";
        if (ec_cl_set_args(st->project, kname, args, (int)(sizeof args / sizeof args[0])) ||
            (st->cells_per_item
                 ? ec_cpu_enqueue_cells(step->queue, st->project, kname, NULL, (size_t)st->n_total, st->cells_per_item, 0,
                                        NULL, &ev)
                 : ec_cl_enqueue_items(step->queue, st->project, kname, (size_t)st->n_total * st->proj_per_cell, 0,
                                       NULL, &ev)))
            return MOELAT_EXPERT_ERROR;
    }
    if (st->proj_done)
        clReleaseEvent(st->proj_done);
    st->proj_done = ev;
    if (step->done) {
        /* One reference for the caller, one kept to order this step's chunks. */
        cl_int err = clRetainEvent(ev);
        if (err != CL_SUCCESS)
            return ec_cl_fail(err, "kernel functional_project: retaining its event");
        *step->done = ev;
    }
    return MOELAT_EXPERT_OK;
}

static int functional_cl_enqueue(void *p, const moelat_cl_chunk *ch) {
    functional_cl_state *st = p;
    if (ch->done)
        *ch->done = NULL;
    if (!st->proj_done) {
        ec_log(MOELAT_LOG_ERROR, "kernel functional_expert: cl_enqueue before cl_step_begin "
                                 "(the per-cell projections are not computed)");
        return MOELAT_EXPERT_ERROR;
    }
    cl_int4 origin = {{ch->origin[0], ch->origin[1], ch->origin[2], 0}};
    cl_int4 extent = {{ch->extent[0], ch->extent[1], ch->extent[2], 0}};
    cl_int n_offsets = ch->n_offsets, n_cells = ch->n_cells, has_ext = ch->ext != NULL;
    cl_mem states = ch->states, ext = ch->ext, offsets = ch->offsets, count = ch->band_count;
    cl_mem mean = ch->band_mean, absmean = ch->band_absmean, out = ch->out;
    if (st->split && n_cells > 0 && !ch->scratch) {
        ec_log(MOELAT_LOG_ERROR, "kernel functional_edges: the chunk has no scratch for its M vectors");
        return MOELAT_EXPERT_ERROR;
    }
    cl_mem scratch = ch->scratch;
    int rc = MOELAT_EXPERT_OK;
    if (n_cells > 0) {
        if (st->split) {
            ec_arg eargs[] = {EC_ARG_MEM(states), EC_ARG_MEM(offsets),  EC_ARG(n_offsets),     EC_ARG(st->lattice),
                              EC_ARG(origin),     EC_ARG(extent),       EC_ARG(n_cells),       EC_ARG_MEM(count),
                              EC_ARG_MEM(st->proj), EC_ARG_MEM(st->params), EC_ARG_MEM(st->toff), EC_ARG_MEM(scratch)};
            ec_arg targs[] = {EC_ARG_MEM(states), EC_ARG(st->lattice), EC_ARG(origin),      EC_ARG(extent),
                              EC_ARG(n_cells),    EC_ARG_MEM(count),   EC_ARG_MEM(mean),    EC_ARG_MEM(absmean),
                              EC_ARG_MEM(ext),    EC_ARG(has_ext),     EC_ARG_MEM(scratch), EC_ARG_MEM(st->params),
                              EC_ARG_MEM(st->toff), EC_ARG_MEM(out)};
            rc = ec_cl_set_args(st->edges, "functional_edges", eargs, (int)(sizeof eargs / sizeof eargs[0])) ||
                 ec_cl_set_args(st->tails, "functional_tails", targs, (int)(sizeof targs / sizeof targs[0]));
        } else {
            ec_arg args[] = {EC_ARG_MEM(states),   EC_ARG_MEM(offsets),    EC_ARG(n_offsets),
                             EC_ARG(st->lattice),  EC_ARG(origin),         EC_ARG(extent),
                             EC_ARG(n_cells),      EC_ARG_MEM(count),      EC_ARG_MEM(mean),
                             EC_ARG_MEM(absmean),  EC_ARG_MEM(ext),        EC_ARG(has_ext),
                             EC_ARG_MEM(st->proj), EC_ARG_MEM(st->params), EC_ARG_MEM(st->toff),
                             EC_ARG_MEM(out)};
            rc = ec_cl_set_args(st->cell, st->cells_per_item ? "functional_cpu" : "functional_output", args, (int)(sizeof args / sizeof args[0]));
        }
        if (rc)
            return MOELAT_EXPERT_ERROR;
    }

    /* The chunk waits on its own list and on this step's projections. */
    cl_event small[16];
    cl_event *wait = small;
    cl_uint n_wait = ch->num_wait + 1;
    if (n_wait > 16 && !(wait = malloc(n_wait * sizeof *wait))) {
        ec_log(MOELAT_LOG_ERROR, "kernel functional_output: out of memory for %u wait events", n_wait);
        return MOELAT_EXPERT_ERROR;
    }
    for (cl_uint i = 0; i < ch->num_wait; i++)
        wait[i] = (cl_event)ch->wait[i];
    wait[ch->num_wait] = st->proj_done;

    cl_event ev = NULL, edges_ev = NULL;
    if (n_cells <= 0) {
        /* Nothing to compute; a marker keeps the ordering after the wait list. */
        rc = ec_cl_enqueue_items(ch->queue, st->cell, "functional_output", 0, n_wait, wait,
                                 ch->done ? &ev : NULL);
    } else if (st->cells_per_item) {
        rc = ec_cpu_enqueue_cells(ch->queue, st->cell, "functional_cpu", ch->extent, (size_t)n_cells, st->cells_per_item,
                                  n_wait, wait, ch->done ? &ev : NULL);
    } else if (st->split) {
        /* functional_edges: one work-group per edge_cells chunk cells
         * (work_group lanes each); then functional_tails: one per
         * cells_per_group cells, after it. */
        size_t local = st->work_group * st->edge_cells;
        size_t global = ((size_t)n_cells + st->edge_cells - 1) / st->edge_cells * local;
        cl_int err = clEnqueueNDRangeKernel(ch->queue, st->edges, 1, NULL, &global, &local, n_wait, wait,
                                            &edges_ev);
        if (err != CL_SUCCESS) {
            char what[160];
            snprintf(what, sizeof what, "kernel functional_edges: enqueueing %d cells x %zu lanes", (int)n_cells,
                     local);
            rc = ec_cl_fail(err, what);
        } else {
            local = st->work_group;
            global = ((size_t)n_cells + st->cells_per_group - 1) / st->cells_per_group * local;
            err = clEnqueueNDRangeKernel(ch->queue, st->tails, 1, NULL, &global, &local, 1, &edges_ev,
                                         ch->done ? &ev : NULL);
            if (err != CL_SUCCESS) {
                char what[160];
                snprintf(what, sizeof what, "kernel functional_tails: enqueueing %d cells x %zu lanes",
                         (int)n_cells, local);
                rc = ec_cl_fail(err, what);
            }
        }
    } else {
        /* One work-group of work_group lanes per cells_per_group chunk
         * cells: the kernel takes its cells from the group id and is
         * compiled for this size. */
        size_t local = st->work_group;
        size_t groups = ((size_t)n_cells + st->cells_per_group - 1) / st->cells_per_group;
        size_t global = groups * local;
        cl_int err = clEnqueueNDRangeKernel(ch->queue, st->cell, 1, NULL, &global, &local, n_wait,
                                            wait, ch->done ? &ev : NULL);
        if (err != CL_SUCCESS) {
            char what[160];
            snprintf(what, sizeof what, "kernel functional_output: enqueueing %d cells x %zu lanes",
                     (int)n_cells, local);
            rc = ec_cl_fail(err, what);
        }
    }
    if (wait != small)
        free(wait);
    if (ch->done)
        *ch->done = ev;
    /* The first of two commands goes to the engine's profiling (ABI 1.3),
     * which releases it; else it is released here. */
    if (edges_ev) {
        if (rc == MOELAT_EXPERT_OK && ch->struct_size >= offsetof(moelat_cl_chunk, first) + sizeof ch->first &&
            ch->first)
            *ch->first = edges_ev;
        else
            clReleaseEvent(edges_ev);
    }
    return rc;
}

/* Device scratch per chunk cell: M (md floats) between the two kernels. */
/* M between the two kernels when split. The tuning string that may split
 * the expert reaches cl_prepare only, after the engine sized the scratch:
 * reserved at every S. */
static size_t functional_cl_scratch(const moelat_expert_dims *d) { return (size_t)MD(d); }

/* Optional extensions: the host backward ("moelat.backward.host/1") and
 * the same backward as OpenCL C ("moelat.backward.cl/1"). */
static const void *functional_get_extension(const char *id) {
    if (id && strcmp(id, MOELAT_EXT_BACKWARD_HOST) == 0)
        return functional_backward_host();
    if (id && strcmp(id, MOELAT_EXT_BACKWARD_CL) == 0)
        return functional_backward_cl();
    return NULL;
}

static moelat_expert_descriptor g_desc = {
    .abi_major = MOELAT_EXPERT_ABI_MAJOR,
    .abi_minor = MOELAT_EXPERT_ABI_MINOR,
    .struct_size = sizeof(moelat_expert_descriptor),
    .name = "functional",
    .version = "1.0.0",
    .description = "gated mix of attention message passing (with external inputs) and a CNF",
    .hidden_names = {"hd", "md", "ode_hidden", NULL},
    .hidden_defaults = {12, 8, 48},
    .validate = functional_validate,
    .tensors = functional_tensors,
    .init_params = NULL,
    .host_scratch_floats = functional_scratch,
    .host_cell = functional_host_cell,
    .cl_source = NULL,
    .cl_prepare = functional_cl_prepare,
    .cl_step_begin = functional_cl_step_begin,
    .cl_enqueue = functional_cl_enqueue,
    .cl_release = functional_cl_release,
    .get_extension = functional_get_extension,
    .cl_scratch_floats = functional_cl_scratch, /* M between the two kernels when split */
};

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    ec_init(host, g_desc.name);
    if (!g_desc.cl_source)
        g_desc.cl_source = ec_join_cl_parts(functional_cl_parts);
    return &g_desc;
}
