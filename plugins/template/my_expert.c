/* my_expert: the template of a moelat expert plugin. Copy, rename, replace
 * the math. It computes, for a cell with state x and band mean m,
 *
 *     E = W2 tanh(W1 (m - x) + b1) + b2          W1: [h][S], W2: [S][h]
 *
 * with h the hidden size "my_hidden" (config: "hidden": {"my_hidden": 16}).
 * The host function is the reference; the OpenCL path must compute the same
 * values (moelat-engine check compares them). See plugins/README.md. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moelat/expert_abi.h>

#define EXPERT_NAME "my_expert"

/* my_expert.cl, embedded by moelat_add_expert(my_expert ... CL my_expert.cl). */
extern const char my_expert_cl_source[];

/* Declaration order of the tensors: the engine stores them in this order,
 * host_cell sees them as cell->tensors[i], kernels at P + toff[i]. */
enum { T_W1, T_B1, T_W2, T_B2, N_TENSORS };

#define HID(d) ((d)->hidden[0]) /* hidden_names[0] is "my_hidden" */

static const moelat_host_services *g_host;

static void say(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Messages go through the engine's log (MOELAT_LOG=my_expert=debug shows
 * debug ones), or to stderr when the engine lent no logger. */
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

/* ---- shape: validate and tensors ---- */

static int validate(const moelat_expert_dims *d, char *err, size_t errlen) {
    if (d->state_size < 1 || HID(d) < 1) {
        snprintf(err, errlen, EXPERT_NAME ": S = %d and my_hidden = %d must be >= 1",
                 (int)d->state_size, (int)HID(d));
        return MOELAT_EXPERT_UNSUPPORTED;
    }
    return MOELAT_EXPERT_OK;
}

/* A Linear in -> out as PyTorch stores it: "<name>.weight" [out][in] and
 * "<name>.bias" [out], both U(-1/sqrt(in), 1/sqrt(in)). */
static void spec_linear(moelat_tensor_spec *out, int cap, int *n, const char *name, int in,
                        int nout) {
    for (int part = 0; part < 2; part++, (*n)++) {
        if (*n >= cap)
            continue; /* the counting call (cap 0) only counts */
        moelat_tensor_spec *t = &out[*n];
        memset(t, 0, sizeof *t);
        snprintf(t->suffix, sizeof t->suffix, "%s.%s", name, part == 0 ? "weight" : "bias");
        t->ndim = part == 0 ? 2 : 1;
        t->shape[0] = nout;
        t->shape[1] = part == 0 ? in : 0;
        t->init = MOELAT_INIT_UNIFORM_FAN_IN;
        t->fan_in = in;
    }
}

static int tensors(const moelat_expert_dims *d, moelat_tensor_spec *out, int cap) {
    char err[160];
    if (validate(d, err, sizeof err) != MOELAT_EXPERT_OK)
        return -1;
    int n = 0;
    /* In safetensors these are "<band>_expert.in_proj.weight" and so on. */
    spec_linear(out, cap, &n, "in_proj", d->state_size, HID(d));
    spec_linear(out, cap, &n, "out_proj", HID(d), d->state_size);
    return n;
}

/* ---- host path: the reference ---- */

/* Host scratch: d = m - x (S floats), then the hidden vector (h floats). */
static size_t host_scratch_floats(const moelat_expert_dims *d, int max_neighbours) {
    (void)max_neighbours; /* an attention expert would need one float per neighbour */
    return (size_t)d->state_size + (size_t)HID(d);
}

static int host_cell(const moelat_host_cell *c) {
    const int S = c->dims->state_size, H = HID(c->dims);
    const float *const *t = c->tensors;
    float *diff = c->scratch, *hid = c->scratch + S;

    /* The band mean (the device path reads the engine's), minus x. */
    memset(diff, 0, (size_t)S * sizeof *diff);
    for (int j = 0; j < c->count; j++)
        for (int s = 0; s < S; s++)
            diff[s] += c->neighbours[(size_t)j * S + s];
    for (int s = 0; s < S; s++)
        diff[s] = diff[s] / (float)c->count - c->x[s];

    for (int k = 0; k < H; k++) {
        float acc = t[T_B1][k];
        for (int s = 0; s < S; s++)
            acc = fmaf(t[T_W1][(size_t)k * S + s], diff[s], acc);
        hid[k] = tanhf(acc);
    }
    for (int s = 0; s < S; s++) {
        float acc = t[T_B2][s];
        for (int k = 0; k < H; k++)
            acc = fmaf(t[T_W2][(size_t)s * H + k], hid[k], acc);
        c->out[s] = acc;
    }
    return MOELAT_EXPERT_OK;
}

/* ---- OpenCL path (optional: set all cl_* fields, or none) ---- */

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
    cl_mem params; /* the engine's buffer of every tensor; not ours to release */
    cl_mem toff;   /* tensor offsets as ints, for the kernel */
    cl_int4 lattice;
} cl_state;

static void cl_release(void *p) {
    cl_state *st = p;
    if (!st)
        return;
    if (st->kernel)
        clReleaseKernel(st->kernel);
    if (st->toff)
        clReleaseMemObject(st->toff);
    free(st);
}

/* Once per lattice and device, after the engine built the program. */
static int cl_prepare(const moelat_cl_setup *setup, void **state) {
    *state = NULL;
    if (setup->n_tensors != N_TENSORS) {
        say(MOELAT_LOG_ERROR, "cl_prepare: %d tensors given, %d expected", (int)setup->n_tensors,
            N_TENSORS);
        return MOELAT_EXPERT_ERROR;
    }
    cl_int toff[N_TENSORS];
    for (int i = 0; i < N_TENSORS; i++) {
        if (setup->tensor_offsets[i] > (uint64_t)INT_MAX) {
            say(MOELAT_LOG_ERROR, "cl_prepare: tensor %d offset exceeds an int", i);
            return MOELAT_EXPERT_ERROR;
        }
        toff[i] = (cl_int)setup->tensor_offsets[i];
    }
    cl_state *st = calloc(1, sizeof *st);
    if (!st) {
        say(MOELAT_LOG_ERROR, "cl_prepare: out of memory");
        return MOELAT_EXPERT_ERROR;
    }
    cl_int err = CL_SUCCESS;
    st->kernel = clCreateKernel(setup->program, "my_expert", &err);
    if (err != CL_SUCCESS) {
        st->kernel = NULL;
        cl_release(st);
        return cl_fail(err, "creating kernel my_expert");
    }
    st->toff = clCreateBuffer(setup->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                              sizeof toff, toff, &err);
    if (err != CL_SUCCESS) {
        st->toff = NULL;
        cl_release(st);
        return cl_fail(err, "creating the tensor offset buffer");
    }
    st->params = setup->params;
    st->lattice = (cl_int4){{setup->lattice[0], setup->lattice[1], setup->lattice[2], 0}};
    *state = st;
    return MOELAT_EXPERT_OK;
}

/* Per chunk: enqueue after chunk->wait, write chunk->out, hand back the last
 * event in *chunk->done. Never block (no clFinish, no blocking reads). */
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
        {sizeof count, &count},   {sizeof st->params, &st->params},   {sizeof st->toff, &st->toff},
        {sizeof out, &out},
    };
    for (cl_uint i = 0; i < sizeof args / sizeof args[0]; i++) {
        cl_int err = clSetKernelArg(st->kernel, i, args[i].size, args[i].value);
        if (err != CL_SUCCESS) {
            char what[64];
            snprintf(what, sizeof what, "kernel my_expert: argument %u", (unsigned)i);
            return cl_fail(err, what);
        }
    }
    size_t global = ((size_t)ch->n_cells + 63) / 64 * 64; /* the kernel skips the extra ids */
    const cl_event *wait = ch->num_wait ? (const cl_event *)ch->wait : NULL;
    cl_event ev = NULL;
    cl_int err = global == 0
                     ? clEnqueueMarkerWithWaitList(ch->queue, ch->num_wait, wait, &ev)
                     : clEnqueueNDRangeKernel(ch->queue, st->kernel, 1, NULL, &global, NULL,
                                              ch->num_wait, wait, &ev);
    if (err != CL_SUCCESS)
        return cl_fail(err, "enqueueing kernel my_expert");
    if (ch->done)
        *ch->done = ev; /* the engine releases it */
    else
        clReleaseEvent(ev);
    return MOELAT_EXPERT_OK;
}

/* ---- the descriptor ---- */

static const moelat_expert_descriptor g_desc = {
    /* The ABI this plugin was compiled against; the loader refuses another
     * major version. Always these two macros and sizeof. */
    .abi_major = MOELAT_EXPERT_ABI_MAJOR,
    .abi_minor = MOELAT_EXPERT_ABI_MINOR,
    .struct_size = sizeof(moelat_expert_descriptor),

    /* Unique across every plugin the engine finds, [a-z0-9_], at most 63
     * characters: what --expert BAND=NAME and the config's "experts" name. */
    .name = EXPERT_NAME,
    .version = "0.1.0",   /* free text, shown by `moelat-engine plugins` */
    .description = "template: W2 tanh(W1 (mean_j n_j - x) + b1) + b2",

    /* Hidden sizes read from the config's "hidden" object by these names,
     * with these defaults; they arrive in dims->hidden[i] and as
     * -D MOELAT_H_<name> in the kernel. Names are shared with the built-in
     * experts (h1, h2, ph, hd, md, ode_hidden, ...): pick your own. Lowercase
     * [a-z0-9_], since the config accepts no other names. */
    .hidden_names = {"my_hidden", NULL},
    .hidden_defaults = {8},

    /* Optional: refuse dims you cannot serve, with a reason. */
    .validate = validate,
    /* Required: the learnable tensors, in declaration order. */
    .tensors = tensors,
    /* Optional: NULL applies each spec's init with the engine's seeded
     * generator; set it only for an init the specs cannot express. */
    .init_params = NULL,
    /* Optional: floats of cell->scratch that host_cell needs. */
    .host_scratch_floats = host_scratch_floats,
    /* Required: one cell on the host, the reference of every path. */
    .host_cell = host_cell,

    /* The OpenCL path: OpenCL C 1.2 source plus the functions that run it.
     * All NULL makes a host-only expert (its band then runs per cell on the
     * host, also in batch mode). */
    .cl_source = my_expert_cl_source,
    .cl_prepare = cl_prepare,
    .cl_step_begin = NULL,     /* optional: once per step, whole-lattice precomputation */
    .cl_enqueue = cl_enqueue,
    .cl_release = cl_release,
    .cl_scratch_floats = NULL, /* optional: device scratch per chunk cell */
    .cl_flags = 0,             /* MOELAT_CL_NO_ABSMEAN if the kernel never reads
                                  band_absmean: the engine then skips that sum */
    /* reserved[]: left zero. */
};

/* The one exported symbol. Called once per dlopen; host stays valid until
 * the plugin is unloaded. Keep it cheap and side-effect free: it also runs
 * for `moelat-engine plugins`. */
MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    /* A services table too short to hold log is treated as absent. */
    if (host && host->struct_size >= offsetof(moelat_host_services, log) + sizeof host->log)
        g_host = host;
    return &g_desc;
}
