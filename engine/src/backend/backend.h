/* The seam between the scheduler (step.c: what runs where) and a device
 * (how it runs there): an ops table with a context pointer, in the manner
 * of ggml's backends. The OpenCL backend (backend_cl*.c) implements it; a
 * CPU-kernel backend would fill another table and plug in at
 * ml_backend_open (backend.c); the backward pass plugs in through the
 * table's backward ops. The lattice never sees a backend's
 * context; only these ops and the queries below reach it.
 *
 * A device step, as the scheduler drives it:
 *   begin_step(st)  inputs current on the device, the step's shared work
 *                   (a prefix pass, experts' per-step precomputation);
 *   enqueue(st)     the chunks of st->dev, in order, without waiting; a
 *                   chunk the device cannot take moves to st->host;
 *   ... the scheduler runs st->host's chunks on the host meanwhile ...
 *   finish(st)      waits, writes the host chunks' results into the
 *                   device's next states, checks them, makes them current.
 * Every op returns a moelat_status with lat->err set where it failed. */
#ifndef MOELAT_BACKEND_H
#define MOELAT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

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
    int n_ranges;      /* the lattice's delivered plane ranges this step serves */
    int swapped;       /* set by finish: the step's states became current */
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
} ml_backward_ops;

typedef struct ml_backend_ops {
    const char *name;
    /* Sets up the device for lat; a band whose expert cannot run there is
     * reported in fb and runs on the host. */
    moelat_status (*create)(moelat_lattice *lat, ml_fallbacks *fb, void **ctx);
    void (*destroy)(void *ctx);
    /* The current states: host -> device, device -> host. */
    moelat_status (*upload_states)(void *ctx, const float *states);
    moelat_status (*sync_states)(void *ctx, float *states);
    /* The external input of the z = 0 face (X x Y x E floats). */
    moelat_status (*upload_input)(void *ctx, const float *ext);
    /* Every parameter block of the lattice. */
    moelat_status (*upload_weights)(void *ctx);
    /* count floats at offset of the current states to dst (src NULL) or
     * from src (dst NULL). */
    moelat_status (*planes)(void *ctx, size_t offset, size_t count, float *dst, const float *src);
    /* 1 when some band is evaluated on the host during a device step (it
     * reads the host's copy of the current states). */
    int (*host_experts)(void *ctx);
    moelat_status (*begin_step)(void *ctx, ml_step *st);
    moelat_status (*enqueue)(void *ctx, ml_step *st);
    /* host_ok: the host chunks ran (their results are in lat->next). */
    moelat_status (*finish)(void *ctx, ml_step *st, int host_ok);
    /* The backward, or NULL where the backend has none. */
    const ml_backward_ops *backward;
} ml_backend_ops;

/* A lattice's device: NULL ops while it has none. */
typedef struct ml_backend {
    const ml_backend_ops *ops;
    void *ctx;
} ml_backend;

/* The OpenCL backend (backend_cl.c) and its backward (grad_cl.c). */
extern const ml_backend_ops ml_backend_cl_ops;
extern const ml_backward_ops ml_backward_cl_ops;

/* Opens lat's device (the OpenCL backend today) into lat->backend. */
moelat_status ml_backend_open(moelat_lattice *lat, ml_fallbacks *fb);
/* Closes it (nothing when none is open). */
void ml_backend_close(moelat_lattice *lat);

#endif
