/* The seam between the scheduler (step.c: what runs where) and a device
 * (how it runs there): an ops table with a context pointer, in the manner
 * of ggml's backends. The OpenCL backend (backend_cl*.c) implements it; a
 * CPU-kernel backend would fill another table and plug in at
 * ml_backend_open (backend.c); the backward pass plugs in through the
 * table's backward ops. The lattice never sees a backend's context, and a
 * backend never sees the lattice: it gets a narrow view of it
 * (ml_backend_view: dims, stencil, parameter blocks, chunks, tuning, an
 * error sink and the few calls back into core it needs), which core
 * (core/device.c) fills and keeps current for as long as the backend is
 * open.
 *
 * A device step, as the scheduler drives it:
 *   begin_step(st)  inputs current on the device, the step's shared work
 *                   (a prefix pass, experts' per-step precomputation);
 *   enqueue(st)     the chunks of st->dev, in order, without waiting; a
 *                   chunk the device cannot take moves to st->host;
 *   ... the scheduler runs st->host's chunks on the host meanwhile ...
 *   finish(st)      waits, writes the host chunks' results into the
 *                   device's next states, checks them, makes them current.
 * Every op returns a moelat_status with the view's error sink set where
 * it failed. */
#ifndef MOELAT_BACKEND_H
#define MOELAT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/chunks.h"
#include "core/params.h"
#include "core/stencil.h"
#include "core/tuning.h"
#include "moelat/expert_abi.h"
#include "moelat/moelat.h"

/* Most distinct reasons one step (or a backend's creation) reports. */
#define ML_MAX_STEP_FALLBACKS 8

/* Work that moved from the device to the host, and why: the scheduler
 * counts it in the report (ml_stats_fallback). */
typedef struct ml_fallbacks {
    int n; /* fallbacks; those past the last slot share its reason */
    char reason[ML_MAX_STEP_FALLBACKS][256];
} ml_fallbacks;

/* Adds a fallback and its reason. */
void ml_fallbacks_add(ml_fallbacks *fb, const char *reason);

/* Most plane ranges one step delivers (moelat_lattice_deliver_planes). */
#define ML_MAX_DELIVER 4

/* Planes a step delivers to the caller, as planes.c keeps the requests;
 * a backend that reads them while the step runs sets done. */
typedef struct ml_plane_delivery {
    int32_t z0, z1;
    float *dst;
    moelat_planes_ready ready;
    void *arg;
    int done; /* dst holds the planes and ready was called */
} ml_plane_delivery;

/* A band's expert as a backend serves it. */
typedef struct ml_view_expert {
    const moelat_expert_descriptor *desc;
    const moelat_expert_dims *dims;
    const ml_param_block *params; /* prefix "<band>_expert." */
} ml_view_expert;

/* What a backend sees of its lattice. Core fills it before it opens the
 * backend and keeps it current while the backend is open (the chunk
 * fields change when core rechunks); the backend keeps the pointer until
 * destroy, reads it, and writes back only through its sinks and calls. */
typedef struct ml_backend_view {
    int32_t X, Y, Z, S, E; /* cells x fastest, S floats each; E: the input's floats per cell */
    size_t N;
    int32_t gate_hidden;
    const ml_stencil *stencil;
    int32_t halo; /* the stencil's largest |dz| (moelat_lattice_halo_depth) */
    ml_view_expert expert[MOELAT_BANDS];
    const ml_param_block *gate;
    const ml_tuning *tuning; /* the config's tuning, parsed */
    const char *tuning_text; /* and as written: experts read their own keys */
    /* Device selection (moelat_config). */
    const char *device; /* index or name substring; "" = the default */
    int queues;         /* command queues; 0 = the default */
    int profile;        /* 1: time every kernel */
    /* The chunks a step covers: boxes of at most chunk_size over the
     * active planes [active_z0, active_z1). chunks_fixed: the config chose
     * the box, which a backend keeps. */
    const ml_chunk *chunks;
    int n_chunks;
    int32_t chunk_size[3];
    int chunks_fixed;
    int32_t active_z0, active_z1;
    /* Sinks: the lattice's error message (ml_view_fail) and the name of
     * the device the backend opened. */
    char *err;
    size_t err_size;
    char *device_name;
    size_t device_name_size;
    /* Calls back into core; core is their first argument. */
    void *core;
    /* New chunks of at most size[] over the active planes (the chunk
     * fields above follow); MOELAT_ERR_NOMEM keeps the old ones. */
    moelat_status (*rechunk)(void *core, const int32_t size[3]);
    /* The host's copy of the current states made current: a chunk or an
     * expert moved to the host during a device step. */
    moelat_status (*host_states)(void *core);
    /* Band k's expert on the host for every cell of chunk c, from the
     * host's current states: out gets n_cells x S in chunk order. */
    moelat_status (*host_expert)(void *core, int band, const ml_chunk *c, float *out);
    /* The message of a step's first non-finite cell and its first
     * non-finite stage (band k's expert output, or -1: the combine), worded
     * as the host path words it; returns MOELAT_ERR_NONFINITE. */
    moelat_status (*nonfinite)(void *core, size_t cell, int band);
} ml_backend_view;

/* Writes the message into the view's error sink and returns status. */
moelat_status ml_view_fail(const ml_backend_view *v, moelat_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* What a device time was spent on (the report's device times). */
typedef enum ml_time_kind {
    ML_TIME_LOCAL = 0, /* the three bands' experts, by band index */
    ML_TIME_FUNCTIONAL = 1,
    ML_TIME_DISTANT = 2,
    ML_TIME_AGGREGATE = 3, /* the aggregation and its prefix pass */
    ML_TIME_GATE = 4,
    ML_TIME_PRECOMPUTE = 5, /* experts' once-per-step work */
    ML_TIME_KINDS
} ml_time_kind;

/* One step as the scheduler hands it to a backend. */
typedef struct ml_step {
    int *dev, n_dev;   /* chunk ids the device computes (begin_step may reorder them) */
    int *host, n_host; /* chunk ids the host computes; room for every chunk */
    /* The plane ranges this step delivers (ranges[0..n_ranges), planes.c's
     * requests). */
    ml_plane_delivery *ranges;
    int n_ranges;
    /* The host chunks' results (N x S, lattice order), which finish writes
     * into the device's next states. */
    const float *host_next;
    int swapped;       /* set by finish: the step's states became current */
    uint64_t planes_early; /* set by finish: planes delivered while the step ran */
    /* Set by finish: the gate's weights (N x MOELAT_BANDS, lattice order),
     * valid for the device chunks, for the routing statistics; or NULL. */
    const float *route;
    ml_fallbacks fb;
    /* Device time per kind (when the device times its work) and expert
     * calls per band, for the report. */
    double device_ms[ML_TIME_KINDS];
    uint64_t expert_calls[MOELAT_BANDS];
} ml_step;

struct moelat_grad;
struct ml_grad_engine;

/* A backend's batched backward (grad.h): the reverse sweep's steps on the
 * device, driven by grad.c as the scheduler drives a forward step. Every
 * op reaches its own state through g->eng->dev. */
typedef struct ml_backward_ops {
    /* Builds the backward for the lattice's gradient engine e on the
     * backend ctx, once (its programs, kernels and buffers last for every
     * recording): 0 with e->dev set, or -1 with e->dev_why saying why the
     * host runs it. close releases it. */
    int (*open)(void *ctx, struct ml_grad_engine *e);
    void (*close)(struct ml_grad_engine *e);
    /* A sweep's start (the recording's weights and input and dL/ds_T
     * (g->g) uploaded, totals zeroed), one reverse step from state cur
     * (the adjoint stays on the device between steps; g_in / g_out are
     * the host's buffers, used only when a chunk the device fails is
     * redone on the host), and its end (dL/ds_0 into g->g, the weights'
     * and input's gradients added into g's). MOELAT_ERR_DEVICE, with g->eng->dev closed,
     * when the device failed past a chunk: the caller redoes the sweep. */
    moelat_status (*begin)(struct moelat_grad *g);
    moelat_status (*step)(struct moelat_grad *g, const double *cur, const double *g_in, double *g_out);
    moelat_status (*end)(struct moelat_grad *g);
    /* The weight gradient that end left on the device (g->dw_on_device:
     * added into the device optimizer's gradient sum instead of read)
     * added into g->dweights now; the caller knows the device's buffer
     * still holds g's (grad_engine.c's e->dw_tape). */
    moelat_status (*read_dw)(struct moelat_grad *g);
} ml_backward_ops;

/* A backend's inspection of one chunk, stage by stage (moelat/inspect.h:
 * `check --experts`, `bench`, the tests), which core's ml_batch_* reach. */
typedef struct ml_inspect_ops {
    /* Each expert's device output for chunk (n_cells x S per band, chunk
     * order) from the device's current states, and the band aggregates
     * (mean, and absmean of the bands in absmean_bands, else NaN); with
     * gated non-NULL (and every expert on the device) also the gate and
     * update, the chunk's next states. The current states stay current. */
    moelat_status (*expert_outputs)(void *ctx, int chunk, float *const out[MOELAT_BANDS],
                                    float *const mean[MOELAT_BANDS], float *const absmean[MOELAT_BANDS],
                                    float *gated);
    /* 1 when band k's expert runs on the device. */
    int (*expert_on_device)(const void *ctx, int band);
    /* Command queues of the device. */
    int (*queues)(const void *ctx);
    /* Bit k when the aggregation computes band k's mean of |n_j|. */
    int (*absmean_bands)(const void *ctx);
} ml_inspect_ops;

struct ml_optim_scalars;

/* A backend's optimizer (train.c's device path): AdamW or SGD over the
 * view's parameter blocks, flat in their order (experts', then the
 * gate's), with its moments on the device. Opened once per trainer
 * (owner): *fresh says its moments are zero (new, or another owner's
 * were replaced), so that the trainer uploads its own. */
typedef struct ml_optim_ops {
    moelat_status (*open)(void *ctx, const void *owner, int kind, int *fresh);
    /* The moments from (write) or to the host; v unused for SGD. */
    moelat_status (*state)(void *ctx, float *m, float *v, int write);
    /* The mini-batch's gradient (n floats, the host's sum) uploaded, and
     * its global L2 norm; grad NULL: the sum already on the device (the
     * device backward's, added by grad_sum's). */
    moelat_status (*norm)(void *ctx, const float *grad, double *norm);
    /* The device's gradient sum: zeroed (dst NULL), or read into dst (n
     * floats). The device backward adds into it when asked (grad.h's
     * ml_grad_sum_on_device). */
    moelat_status (*grad_sum)(void *ctx, float *dst);
    /* clip, then one update of the device's weights (current there) by s. */
    moelat_status (*update)(void *ctx, const struct ml_optim_scalars *s, float clip);
} ml_optim_ops;

typedef struct ml_backend_ops {
    const char *name;
    /* Sets up the device for the lattice that view shows (the view lasts
     * until destroy); a band whose expert cannot run there is reported in
     * fb and runs on the host. */
    moelat_status (*create)(const ml_backend_view *view, ml_fallbacks *fb, void **ctx);
    void (*destroy)(void *ctx);
    /* The current states: host -> device, device -> host. */
    moelat_status (*upload_states)(void *ctx, const float *states);
    moelat_status (*sync_states)(void *ctx, float *states);
    /* The external input of the z = 0 face (X x Y x E floats). */
    moelat_status (*upload_input)(void *ctx, const float *ext);
    /* Every parameter block of the view (experts', then the gate's). */
    moelat_status (*upload_weights)(void *ctx);
    /* And back into the view's blocks (after the device optimizer). */
    moelat_status (*sync_weights)(void *ctx);
    /* count floats at offset of the current states to dst (src NULL) or
     * from src (dst NULL). */
    moelat_status (*planes)(void *ctx, size_t offset, size_t count, float *dst, const float *src);
    /* 1 when some band is evaluated on the host during a device step (it
     * reads the host's copy of the current states). */
    int (*host_experts)(void *ctx);
    moelat_status (*begin_step)(void *ctx, ml_step *st);
    moelat_status (*enqueue)(void *ctx, ml_step *st);
    /* host_ok: the host chunks ran (their results are in st->host_next). */
    moelat_status (*finish)(void *ctx, ml_step *st, int host_ok);
    /* The backward, or NULL where the backend has none. */
    const ml_backward_ops *backward;
    /* The inspection, or NULL where the backend has none. */
    const ml_inspect_ops *inspect;
    /* The optimizer, or NULL where the backend has none. */
    const ml_optim_ops *optim;
} ml_backend_ops;

/* A lattice's device: NULL ops while it has none. */
typedef struct ml_backend {
    const ml_backend_ops *ops;
    void *ctx;
} ml_backend;

/* The OpenCL backend (backend_cl.c) and its backward (grad_cl.c). */
extern const ml_backend_ops ml_backend_cl_ops;
extern const ml_backward_ops ml_backward_cl_ops;

/* Opens a device backend (the OpenCL backend today) over view into *be;
 * view must outlive it. */
moelat_status ml_backend_open(const ml_backend_view *view, ml_fallbacks *fb, ml_backend *be);
/* Closes it (nothing when none is open). */
void ml_backend_close(ml_backend *be);

#endif
