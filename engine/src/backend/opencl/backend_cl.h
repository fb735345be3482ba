/* The OpenCL backend's context, shared by its files only:
 *   backend_cl.c          create/destroy, buffers, uploads, plane I/O
 *   backend_cl_program.c  program builds (the engine's and the experts')
 *   backend_cl_tuning.c   choices of vector width, lanes, cells per group
 *   backend_cl_kernels.c  arguments and launches of the engine's kernels
 *   backend_cl_step.c     begin_step / enqueue / finish of a device step
 *   backend_cl_inspect.c  one chunk stage by stage (inspect.c's
 *                         moelat_device_stages, `check --experts`)
 *   early_reads.c         delivered planes read while the step runs
 * Nothing outside these files (and grad_cl.c, for the backward's context
 * and queue) reads this struct. The backend sees its lattice only through
 * the view it was created with (backend.h's ml_backend_view).
 *
 * States stay on the device in two buffers (Jacobi double buffering); a
 * step reads states[cur] and writes states[1 - cur]. */
#ifndef MOELAT_BACKEND_CL_H
#define MOELAT_BACKEND_CL_H

#include "backend/backend.h"
#include "backend/opencl/cl_runtime.h"
#include "backend/opencl/cl_shape.h"
#include "backend/opencl/early_reads.h"

#define ML_CL_MAX_SETS 8 /* chunk scratch sets in flight */
#define ML_CL_CHECK_INTS 6 /* the finite check: cells, lowest cell, lowest per stage (3 experts, combine) */

/* Device scratch of one chunk in flight. */
typedef struct ml_chunk_set {
    cl_mem mean[MOELAT_BANDS], absmean[MOELAT_BANDS], count[MOELAT_BANDS];
    cl_mem out[MOELAT_BANDS];
    cl_mem scratch[MOELAT_BANDS]; /* experts' own per-chunk scratch, or NULL */
    cl_mem nu;
    cl_event last; /* gate event of the chunk that used the set last */
} ml_chunk_set;

/* Events of one step, released at its end. */
typedef struct ml_step_events {
    cl_event *ev;
    cl_event *first; /* an expert's first command when it reported one, else NULL */
    ml_time_kind *kind;
    int n, cap;
} ml_step_events;

typedef struct ml_cl_backend {
    const ml_backend_view *v; /* the lattice as the backend sees it */
    mlcl_context ctx;
    cl_program program;
    cl_kernel k_prefix, k_aggregate, k_gate;
    cl_program expert_program[MOELAT_BANDS];
    void *expert_state[MOELAT_BANDS];
    int expert_on_device[MOELAT_BANDS];
    const moelat_expert_descriptor *desc[MOELAT_BANDS]; /* to release expert_state */
    cl_mem states[2];
    int cur;
    cl_mem ext;
    cl_mem offsets[MOELAT_BANDS];
    cl_mem params[MOELAT_BANDS];
    cl_mem gate;
    cl_mem check; /* the gate's finite check: {cells, lowest cell, lowest per stage x4} */
    cl_mem route;       /* routing statistics: the gate's N x 3 weights */
    float *route_host;  /* their host copy, read at the end of a step */
    /* Aggregation by row prefix sums (see moelat_step.cl): the run table
     * built from the stencil, and the prefix sums of n and |n|, N*S floats
     * each. direct: bit k when band k is summed neighbour by neighbour (all
     * bands when the prefix buffers could not be had). */
    cl_mem rows, segs, prefix[2];
    int n_rows, direct;
    int absmask; /* bit k when band k's mean of |n_j| is computed (its expert reads it) */
    int32_t prefix_halo; /* planes beyond the active ones the prefix pass covers */
    ml_chunk_set sets[ML_CL_MAX_SETS];
    int n_sets;
    int max_chunk_cells;
    int work_group; /* lanes per cell of the work-group kernels (MOELAT_WG) */
    int agg_vector; /* state values per work-item of ml_aggregate (ML_AGG_V) */
    int gate_cells; /* chunk cells per work-group of ml_gate_combine (ML_GATE_T) */
    ml_cl_shape shape; /* work-group or CPU-shaped step kernels (cl_shape.h) */
    float *host_expert_out; /* max_chunk_cells x S, for host-evaluated experts */
    /* The step in flight (between begin_step and finish). */
    cl_event step_start; /* its check reset and prefix, NULL outside a step */
    cl_event pre[MOELAT_BANDS]; /* experts' per-step precomputation */
    int started;         /* the gates' finite check was reset this step */
    ml_step_events se;
    ml_early_reads early;
    /* The optimizer on the device (backend_cl_optim.c), once a trainer
     * opened it, and that trainer. */
    struct ml_optim_cl *optim;
    const void *optim_owner;
} ml_cl_backend;

/* MOELAT_OK, or MOELAT_ERR_DEVICE with the view's error naming what
 * failed. */
moelat_status ml_cl_check(ml_cl_backend *b, cl_int rc, const char *what);

/* backend_cl_optim.c: the optimizer ops, the weights read back from the
 * device, and the optimizer's release (at destroy). */
extern const ml_optim_ops ml_cl_optim_ops;
moelat_status ml_cl_sync_weights(void *ctx);
void ml_cl_optim_release(ml_cl_backend *b);

/* One release for a chunk set's buffers and event. */
void ml_cl_release_set(ml_chunk_set *s);

/* backend_cl_tuning.c: the choices a build depends on. */
int ml_cl_aggregate_vector(const ml_backend_view *v);
int ml_cl_absmean_bands(const ml_backend_view *v);
int ml_cl_work_group(int S, int wanted, size_t device_max);
int ml_cl_gate_cells_wanted(const ml_backend_view *v);
const char *ml_cl_lane_mask_option(const mlcl_device_info *dev, int work_group, const char *extra);

/* backend_cl_program.c */
/* Builds moelat_helpers.cl followed by source with the options every
 * program shares (CL 1.2, MOELAT_S, MOELAT_WG, MOELAT_LOCAL_MEM, the lane
 * mask, the tuning's cl_options) and defines. 0, or -1 with err set. */
int ml_cl_build(ml_cl_backend *b, const char *name, const char *source, const char *defines, cl_program *out,
                char *err, size_t errlen);
/* The engine's program (moelat_step.cl) and its kernels. */
moelat_status ml_cl_build_engine(ml_cl_backend *b);
/* Builds band k's expert program and device state; on failure the band
 * runs on the host and fb says why. */
void ml_cl_prepare_expert(ml_cl_backend *b, int k, ml_fallbacks *fb);

/* backend_cl_kernels.c: the engine's kernels of one chunk (or the whole
 * lattice, for the prefix), enqueued on q after wait. */
cl_int ml_cl_enqueue_aggregate(ml_cl_backend *b, const ml_chunk *c, ml_chunk_set *s, cl_command_queue q,
                               cl_uint n_wait, const cl_event *wait, cl_event *done);
cl_int ml_cl_enqueue_gate(ml_cl_backend *b, const ml_chunk *c, ml_chunk_set *s, cl_mem next, cl_command_queue q,
                          cl_uint n_wait, const cl_event *wait, cl_event *done);
cl_int ml_cl_enqueue_prefix(ml_cl_backend *b, cl_command_queue q, cl_uint n_wait, const cl_event *wait,
                            cl_event *done);
/* The call that hands chunk c, with its scratch set s, to band k's expert. */
moelat_cl_chunk ml_cl_chunk_call(const ml_cl_backend *b, int k, const ml_chunk *c, const ml_chunk_set *s,
                                 cl_command_queue q, const cl_event *wait, int n_wait, cl_event *done,
                                 cl_event *first);
/* Runs band k's cl_step_begin on q (the per-step precomputation); done
 * may come back NULL. */
int ml_cl_expert_step_begin(ml_cl_backend *b, int k, cl_command_queue q, cl_event *done);

/* backend_cl_step.c: the ops of a device step. */
moelat_status ml_cl_begin_step(void *ctx, ml_step *st);
moelat_status ml_cl_enqueue(void *ctx, ml_step *st);
moelat_status ml_cl_finish(void *ctx, ml_step *st, int host_ok);

/* backend_cl_inspect.c: the inspection ops. */
extern const ml_inspect_ops ml_cl_inspect_ops;

#endif
