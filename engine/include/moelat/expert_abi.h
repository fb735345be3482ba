/*
 * moelat expert plugin ABI.
 *
 * This is the only header an expert author includes. A plugin is a shared
 * object that exports one symbol, MOELAT_EXPERT_ENTRY, returning a const
 * descriptor. The plugin never links against libmoelat: everything it may
 * need from the engine arrives through moelat_host_services.
 *
 * Versioning rules:
 *  - every struct starts with its own size (or sits behind a struct that
 *    does) and is only ever appended to; reserved fields stay zero;
 *  - a new field bumps MOELAT_EXPERT_ABI_MINOR: old plugins keep loading and
 *    the engine reads the new field only when struct_size covers it;
 *  - anything else bumps MOELAT_EXPERT_ABI_MAJOR, and the loader refuses a
 *    plugin whose major version differs from its own;
 *  - the loader accepts any descriptor at least MOELAT_EXPERT_DESCRIPTOR_SIZE_1_0
 *    bytes long (the frozen 1.0 size, never sizeof of the current struct),
 *    and reads a field added since only when both abi_minor and struct_size
 *    say the plugin has it;
 *  - new capabilities that need no field of their own are extensions: a
 *    string id ("<area>.<name>/<version>") answered by get_extension on the
 *    descriptor (the plugin's) or on moelat_host_services (the engine's).
 *
 * OpenCL handles are declared through the same struct tags as <CL/cl.h>, so
 * a host-only plugin needs no OpenCL headers and an OpenCL one may include
 * them and pass cl_mem and friends directly.
 */
#ifndef MOELAT_EXPERT_ABI_H
#define MOELAT_EXPERT_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOELAT_EXPERT_ABI_MAJOR 1
#define MOELAT_EXPERT_ABI_MINOR 5

/* Name of the exported entry function (see moelat_expert_entry_fn). */
#define MOELAT_EXPERT_ENTRY moelat_expert_entry
#define MOELAT_EXPERT_ENTRY_NAME "moelat_expert_entry"

#define MOELAT_MAX_HIDDEN 8  /* hidden sizes an expert may declare */
#define MOELAT_MAX_DIMS 4    /* dimensions of one tensor */

struct _cl_context;
struct _cl_device_id;
struct _cl_command_queue;
struct _cl_program;
struct _cl_mem;
struct _cl_event;

/* Return codes of every plugin function. */
enum moelat_expert_status {
    MOELAT_EXPERT_OK = 0,
    MOELAT_EXPERT_ERROR = 1,       /* failed; the message went to host->log */
    MOELAT_EXPERT_UNSUPPORTED = 2  /* this configuration is not supported */
};

enum moelat_log_level {
    MOELAT_LOG_ERROR = 0,
    MOELAT_LOG_WARN = 1,
    MOELAT_LOG_INFO = 2,
    MOELAT_LOG_DEBUG = 3
};

/* Services the engine lends a plugin; valid for the plugin's lifetime. */
typedef struct moelat_host_services {
    uint32_t struct_size;
    uint32_t reserved0;
    /* printf-style logging; module is the expert's name. */
    void (*log)(int level, const char *module, const char *fmt, ...);
    void *(*alloc)(size_t bytes);
    void (*free)(void *ptr);
    /* Since 1.4: an engine extension named id, or NULL. */
    const void *(*get_extension)(const char *id);
    void *reserved[7];
} moelat_host_services;

/* Model dimensions as the engine hands them to an expert. */
typedef struct moelat_expert_dims {
    uint32_t struct_size;
    int32_t state_size;                 /* S */
    int32_t ext_size;                   /* E: external inputs per cell */
    int32_t hidden[MOELAT_MAX_HIDDEN];  /* values of descriptor->hidden_names */
    int32_t cnf_steps;                  /* K of a CNF integration */
    int32_t cnf_mode;                   /* 0 euler, 1 lipschitz */
    int32_t reserved[8];
} moelat_expert_dims;

enum moelat_tensor_init {
    /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's Linear weight and bias */
    MOELAT_INIT_UNIFORM_FAN_IN = 0,
    /* every element equals value (LayerNorm weight 1 and bias 0, scalars) */
    MOELAT_INIT_CONST = 1
};

/* One learnable tensor. The engine names it "<band>_expert.<suffix>"
 * (band: local, functional or distant) in safetensors files. A scalar has
 * ndim 0. The engine stores an expert's tensors in declaration order. */
typedef struct moelat_tensor_spec {
    char suffix[112];
    int32_t ndim;
    int32_t shape[MOELAT_MAX_DIMS];
    int32_t init;      /* enum moelat_tensor_init */
    int32_t fan_in;    /* for MOELAT_INIT_UNIFORM_FAN_IN */
    float value;       /* for MOELAT_INIT_CONST */
    int32_t reserved[4];
} moelat_tensor_spec;

/* Everything the host function sees for one cell. */
typedef struct moelat_host_cell {
    uint32_t struct_size;
    const moelat_expert_dims *dims;
    const float *const *tensors; /* one pointer per tensor, declaration order */
    const float *x;              /* the cell's old state, S values */
    const float *neighbours;     /* count x S old states of this band */
    int32_t count;               /* >= 1: the engine skips empty bands */
    const float *ext;            /* E external inputs (zeros off the input face) */
    int32_t cell[3];             /* x, y, z */
    float *out;                  /* S values to write */
    float *scratch;              /* host_scratch_floats() floats */
} moelat_host_cell;

/* Device context of one expert on one OpenCL device. */
typedef struct moelat_cl_setup {
    uint32_t struct_size;
    struct _cl_context *context;
    struct _cl_device_id *device;
    struct _cl_program *program;   /* engine helpers + the plugin's cl_source, built */
    const moelat_expert_dims *dims;
    struct _cl_mem *params;        /* every tensor, concatenated, float32 */
    const uint64_t *tensor_offsets;/* offset of each tensor in params, in floats */
    int32_t n_tensors;
    int32_t lattice[3];            /* X, Y, Z */
    int32_t max_chunk_cells;       /* the largest chunk it will be handed */
    /* Since 1.1: lanes per cell, a power of two. The program was built with
     * -D MOELAT_WG=<work_group>, which the helpers' ml_wg_* functions use:
     * kernels calling them must be enqueued with this local size. */
    int32_t work_group;
    /* Since 1.4: the lattice's tuning string ("key=value,..."; never NULL).
     * An entry ends at the first comma not escaped by a backslash; inside a
     * value '\,' is a comma and '\\' a backslash (moelat/util.h). */
    const char *tuning;
} moelat_cl_setup;

/* Once per step, before any chunk: for per-cell precomputation over the
 * whole lattice (projections of every cell's state, say). */
typedef struct moelat_cl_step {
    uint32_t struct_size;
    struct _cl_command_queue *queue;
    struct _cl_mem *states;        /* old states, N x S, cell-major */
    uint32_t num_wait;
    const struct _cl_event *const *wait;
    struct _cl_event **done;       /* set to the last event enqueued, or NULL */
} moelat_cl_step;

/* One chunk of cells: a box [origin, origin + extent) of the lattice.
 * Chunk cell c is at origin + (c % ex, (c / ex) % ey, c / (ex * ey)). */
typedef struct moelat_cl_chunk {
    uint32_t struct_size;
    struct _cl_command_queue *queue;
    struct _cl_mem *states;       /* old states, N x S, cell-major */
    struct _cl_mem *ext;          /* X x Y x E inputs of the z = 0 face */
    struct _cl_mem *offsets;      /* cl_int4 (dx, dy, dz, 0) of this band */
    int32_t n_offsets;
    int32_t origin[3];
    int32_t extent[3];
    int32_t n_cells;              /* extent product */
    struct _cl_mem *band_mean;    /* n_cells x S: mean of n_j over the band */
    struct _cl_mem *band_absmean; /* n_cells x S: mean of |n_j| over the band */
    struct _cl_mem *band_count;   /* n_cells ints: neighbours in the band */
    struct _cl_mem *out;          /* n_cells x S: write the expert's output */
    uint32_t num_wait;
    const struct _cl_event *const *wait;
    struct _cl_event **done;      /* set to the last event enqueued */
    /* n_cells x cl_scratch_floats() floats that belong to this chunk until
     * its done event (chunks in flight never share one); NULL when the
     * expert asks for none. */
    struct _cl_mem *scratch;
    /* Since 1.3 (check struct_size; NULL when the engine does not time
     * experts): an expert that enqueues several commands may set *first
     * to a retained event of its first one, which the engine then
     * releases; profiling times the expert from that command's start to
     * done's end instead of done's command alone. */
    struct _cl_event **first;
} moelat_cl_chunk;

typedef struct moelat_expert_descriptor {
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t struct_size;
    uint32_t reserved0;

    const char *name;         /* unique, [a-z0-9_]+ */
    const char *version;
    const char *description;

    /* Hidden sizes the expert takes from the config, NULL-terminated, with
     * defaults used when the config names none. */
    const char *hidden_names[MOELAT_MAX_HIDDEN + 1];
    int32_t hidden_defaults[MOELAT_MAX_HIDDEN];

    /* Optional: reject dims the expert cannot serve; writes a reason. */
    int (*validate)(const moelat_expert_dims *dims, char *err, size_t errlen);

    /* Writes up to cap specs; returns the number of tensors (call with
     * cap 0 to count), or a negative value on error. */
    int (*tensors)(const moelat_expert_dims *dims, moelat_tensor_spec *out, int cap);

    /* Optional: custom init. NULL means the engine applies each spec's init
     * with its own seeded generator. */
    int (*init_params)(const moelat_expert_dims *dims, uint64_t seed,
                       float *const *tensors);

    /* Floats of scratch the host function needs for a band of at most
     * max_neighbours neighbours. */
    size_t (*host_scratch_floats)(const moelat_expert_dims *dims, int max_neighbours);

    /* The per-cell reference: required. Returns an enum moelat_expert_status. */
    int (*host_cell)(const moelat_host_cell *cell);

    /* Optional OpenCL path. cl_source is OpenCL C 1.2; the engine builds it
     * after its helpers (kernels_cl/moelat_helpers.cl) with -D MOELAT_S,
     * MOELAT_E, MOELAT_CNF_STEPS, MOELAT_CNF_MODE, MOELAT_H_<name> for each
     * hidden size, MOELAT_WG (moelat_cl_setup.work_group) and
     * MOELAT_LOCAL_MEM (the device's local memory in bytes; test it with
     * #ifdef, engines before it did not define it). cl_prepare creates kernels and buffers and returns them in
     * *state; cl_step_begin (optional) runs once per step; cl_enqueue writes
     * chunk->out for every chunk cell whose band count is > 0. */
    const char *cl_source;
    int (*cl_prepare)(const moelat_cl_setup *setup, void **state);
    int (*cl_step_begin)(void *state, const moelat_cl_step *step);
    int (*cl_enqueue)(void *state, const moelat_cl_chunk *chunk);
    void (*cl_release)(void *state);
    /* Optional: device scratch floats per chunk cell (moelat_cl_chunk's
     * scratch), for experts that split their work into several kernels. */
    size_t (*cl_scratch_floats)(const moelat_expert_dims *dims);

    /* Since 1.2 (in a slot that was reserved, so older plugins read 0):
     * MOELAT_CL_* flags of the OpenCL path. */
    uintptr_t cl_flags;
    /* Since 1.4 (a former reserved slot): the extension named id (e.g. "moelat.backward.host/1"), or NULL. */
    const void *(*get_extension)(const char *id);

    void *reserved[13];
} moelat_expert_descriptor;

/* The size of the 1.0 descriptor, frozen: the smallest struct_size the
 * loader accepts. The descriptor has kept this size since (1.2 and 1.4
 * used reserved slots); a later append makes sizeof larger, never this. */
#define MOELAT_EXPERT_DESCRIPTOR_SIZE_1_0 \
    (4 * sizeof(uint32_t) + 3 * sizeof(const char *) + \
     (MOELAT_MAX_HIDDEN + 1) * sizeof(const char *) + MOELAT_MAX_HIDDEN * sizeof(int32_t) + \
     10 * sizeof(void (*)(void)) + sizeof(const char *) + 15 * sizeof(void *))

/* cl_flags: the OpenCL path never reads moelat_cl_chunk.band_absmean, so the
 * engine may leave it unwritten (its aggregation then skips the |n_j| sums
 * of that band). Without the flag the engine fills it. */
#define MOELAT_CL_NO_ABSMEAN 1u

/* ---- Extension "moelat.backward.host/1": exact gradients on the host ----
 * An expert that can be differentiated returns a moelat_backward_host from
 * get_extension(MOELAT_EXT_BACKWARD_HOST). Everything is float64: the engine
 * hands the tensors, states and inputs in double, and the expert evaluates
 * its function in double (host_cell_f64, the same function as host_cell up
 * to rounding) and its exact adjoint (backward_cell). The engine uses the
 * first to run a float64 instantiation of the whole host path (the
 * trajectory it differentiates, and finite-difference tests) and the second
 * to reverse each step. Test a backward against central differences of
 * host_cell_f64 (plugins/README.md). */
#define MOELAT_EXT_BACKWARD_HOST "moelat.backward.host/1"

/* One cell of one band, in float64. The forward reads dims..cell and
 * writes out; the backward reads the same and dout, may write out (when
 * not NULL) and ADDS to dx, dneighbours, dext and dtensors, so that the
 * engine can accumulate over cells and steps. */
typedef struct moelat_grad_cell {
    uint32_t struct_size;
    const moelat_expert_dims *dims;
    const double *const *tensors; /* one pointer per tensor, declaration order */
    const double *x;              /* the cell's old state, S values */
    const double *neighbours;     /* count x S old states of this band */
    int32_t count;                /* >= 1: the engine skips empty bands */
    const double *ext;            /* E external inputs (zeros off the input face) */
    int32_t cell[3];              /* x, y, z */
    double *out;                  /* S: the expert's output (NULL allowed in backward) */
    const double *dout;           /* S: dL/d out (backward) */
    double *dx;                   /* S: += dL/d x */
    double *dneighbours;          /* count x S: += dL/d n_j, in the order of neighbours */
    double *dext;                 /* E: += dL/d ext */
    double *const *dtensors;      /* per tensor: += dL/d tensor */
    double *scratch;              /* scratch_doubles() doubles, 8-byte aligned */
    /* Since 1.5, only for an expert with MOELAT_BACKWARD_CL_PROJECTED and
     * only when the engine projects (nproj not NULL; the host never does,
     * and an expert must work with NULL too). Then backward_fn leaves
     * dneighbours alone and instead: reads nproj, each neighbour's map
     * W_p n_j (count x P, no bias), and ADDS dL/d(W_p n_j) to dproj
     * (count x P), and the parts of every neighbour's adjoint that its
     * mean and mean absolute value carry to dmean and dabs (S each, already
     * divided by count): the engine forms dL/dn_j = sign(n_j) dabs + dmean
     * + W_p^T dproj_j, and W_p's weight gradient, itself. */
    const double *nproj;
    double *dproj;
    double *dabs;
    double *dmean;
} moelat_grad_cell;

typedef struct moelat_backward_host {
    uint32_t struct_size;
    uint32_t reserved0;
    /* Optional: refuse dims whose gradient the expert cannot compute
     * (writes a reason naming what, e.g. a mode). */
    int (*validate)(const moelat_expert_dims *dims, char *err, size_t errlen);
    /* Doubles of scratch both functions need for at most max_neighbours. */
    size_t (*scratch_doubles)(const moelat_expert_dims *dims, int max_neighbours);
    /* Forward in float64. Returns an enum moelat_expert_status. */
    int (*host_cell_f64)(const moelat_grad_cell *cell);
    /* Reverse of host_cell_f64 for dout. Returns an enum moelat_expert_status. */
    int (*backward_cell)(const moelat_grad_cell *cell);
    void *reserved[4];
} moelat_backward_host;

/* ---- Extension "moelat.backward.cl/1": the same backward on the device ----
 * The OpenCL twin of moelat.backward.host/1, for the batched backward: the
 * engine builds, per band, moelat/backward_portable.h, then source_parts in
 * order, then its own kernel, which calls backward_fn once per cell with a
 * moelat_grad_cell whose arrays are float and __global (the device view in
 * backward_portable.h). backward_fn follows the host contract exactly:
 * recompute the forward, write out when not NULL, ADD to dx, dneighbours,
 * dext and dtensors. Write the body once with backward_portable.h and both
 * extensions come from the same text (the built-in experts do). A lattice
 * with an expert that lacks it runs its whole backward on the host
 * (moelat_grad_path says so, naming band and expert). */
#define MOELAT_EXT_BACKWARD_CL "moelat.backward.cl/1"

/* moelat_backward_cl.flags: the expert reads its neighbours only through
 * their mean, so backward_fn adds the same dL/dmean / count to every
 * dneighbours[j]. The engine then keeps one S-vector per cell instead of
 * one per neighbour (less memory; the gather reads less). */
#define MOELAT_BACKWARD_CL_MEAN_ONLY 1u
/* moelat_backward_cl.flags: backward_fn is written for lanes (the rules in
 * engine/sdk/backward_math.h: shared arrays written only in BM_FOR loops
 * or BM_ONE blocks, each phase ending in BM_SYNC). The engine may then run
 * one cell on a work-group of lanes (a GPU: 64 unless tuned, grad_lanes),
 * every lane calling backward_fn with the same cell; without the flag, one
 * work-item per cell. */
#define MOELAT_BACKWARD_CL_COOPERATIVE 2u
/* moelat_backward_cl.flags: every neighbour enters the expert through its
 * mean, its mean absolute value and one linear map W_p n_j: P = proj_rows
 * rows of tensor proj_tensor ([P][ld], row-major), columns proj_col ..
 * proj_col + S - 1 (the functional expert's message layer reads [n_j, x]:
 * W_p is its n_j half). The engine then computes W_p n once per cell for
 * the whole lattice instead of once per edge, hands backward_fn each
 * neighbour's W_p n_j (moelat_grad_cell.nproj), and takes back per edge
 * only dL/d(W_p n_j), P values instead of S, summed per neighbour before
 * W_p^T and W_p's weight gradient are applied once per cell: 3 S P
 * multiply-adds per edge fewer. */
#define MOELAT_BACKWARD_CL_PROJECTED 4u

typedef struct moelat_backward_cl {
    uint32_t struct_size;
    uint32_t flags;                  /* MOELAT_BACKWARD_CL_* (0: none) */
    const char *const *source_parts; /* NULL-terminated OpenCL C texts */
    const char *backward_fn;         /* int backward_fn(const moelat_grad_cell *c) */
    /* Floats of scratch backward_fn needs for at most max_neighbours. */
    size_t (*scratch_floats)(const moelat_expert_dims *dims, int max_neighbours);
    /* Optional (former reserved slots, so older plugins read NULL): a
     * kernel of source_parts that runs the band's backward with a
     * work-group of lanes per cell instead of the engine's one work-item
     * per cell (kernels_cl/moelat_backward_band.cl says what it must do).
     * The engine calls band_work_group(dims, max_lanes, local_mem_bytes)
     * for its lanes per group (a power of two up to max_lanes, fitting in
     * local_mem_bytes; 0 declines), builds the band's program with
     * -D ML_BWD_WG=<lanes>, and launches band_kernel with ml_bwd_band's
     * arguments, n_slots work-groups of that many lanes: work-group g owns
     * row g of slot_dw and takes cells g, g + n_slots, ... Should it not
     * build or not run at that many lanes, the engine's kernel serves the
     * band. */
    const char *band_kernel;
    int (*band_work_group)(const moelat_expert_dims *dims, int max_lanes, uint64_t local_mem_bytes);
    /* Since 1.5 (former reserved slots, so older plugins read 0), with
     * MOELAT_BACKWARD_CL_PROJECTED: W_p's tensor (declaration index), its
     * first column, and its row count P for dims. */
    int32_t proj_tensor;
    int32_t proj_col;
    size_t (*proj_rows)(const moelat_expert_dims *dims);
} moelat_backward_cl;

typedef const moelat_expert_descriptor *(*moelat_expert_entry_fn)(
    const moelat_host_services *host);

/* Since 1.4, optional: a plugin may also export MOELAT_EXPERT_ENTRY2, which
 * the engine then calls instead of MOELAT_EXPERT_ENTRY (keep exporting that
 * one too, for older engines). On failure it returns NULL and may set
 * *err_msg to a message allocated with host->alloc, which the engine
 * prints with the file name and frees with host->free (SQLite's pzErrMsg).
 * Plugins that export only MOELAT_EXPERT_ENTRY keep loading. */
#define MOELAT_EXPERT_ENTRY2 moelat_expert_entry2
#define MOELAT_EXPERT_ENTRY2_NAME "moelat_expert_entry2"
typedef const moelat_expert_descriptor *(*moelat_expert_entry2_fn)(
    const moelat_host_services *host, char **err_msg);

/* Engine extensions (moelat_host_services.get_extension). */

/* "moelat.cl.build/1": builds the engine's helpers followed by source with
 * the options setup->program was built with, then extra_options (-D of a
 * tuning knob, say), on setup's context and device. Returns
 * MOELAT_EXPERT_OK and a program the caller releases, or logs the build
 * log and returns MOELAT_EXPERT_ERROR. */
#define MOELAT_EXT_CL_BUILD "moelat.cl.build/1"
typedef struct moelat_ext_cl_build {
    uint32_t struct_size;
    int (*build)(const moelat_cl_setup *setup, const char *source, const char *extra_options,
                 struct _cl_program **program);
} moelat_ext_cl_build;

#if defined(_WIN32)
#define MOELAT_EXPORT __declspec(dllexport)
#else
#define MOELAT_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
}
#endif

#endif /* MOELAT_EXPERT_ABI_H */
