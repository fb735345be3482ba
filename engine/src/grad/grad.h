/* Exact gradients on the host: the float64 instantiation of the host path
 * (forward) and its adjoint, step by step, with states checkpointed every
 * k steps and recomputed in between (grad.c). Internal declarations; the
 * public API is moelat/grad.h. */
#ifndef MOELAT_GRAD_INTERNAL_H
#define MOELAT_GRAD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include"core/lattice_internal.h"
#include "moelat/grad.h"

/* ---- the gate in float64 (grad_gate.c) ---- */

/* Doubles of scratch of ml_gate_f64 + ml_gate_f64_bwd (the forward's
 * values live at its start and are read by the backward); the device
 * version (float) needs as many floats. */
size_t ml_gate_f64_doubles(int S, int gh);
/* w[MOELAT_BANDS] = softmax(L(GELU(L([LN_g(x), nu])))) in double; t: the
 * gate block's GATE_N_TENSORS tensors. The same text is OpenCL C with
 * float and __global arrays (moelat_grad_gate_cl_parts, embedded.h). */
void ml_gate_f64(const double *const *t, int S, int gh, const double *x, const double *nu, double *w,
                 double *scratch);
/* Adjoint for dw (scratch from ml_gate_f64 on the same x, nu): dx += ,
 * dnu += , dt[i] += . */
void ml_gate_f64_bwd(const double *const *t, double *const *dt, int S, int gh, const double *w,
                     const double *dw, double *dx, double *dnu, double *scratch);

/* ---- one step forward and backward in float64 (grad_step.c) ---- */

/* A view of all weights in double, in the blocks' order (local,
 * functional, distant, gate; moelat_get_weights's order). */
typedef struct ml_grad_weights {
    double *flat;                          /* every weight */
    size_t count;
    const double **tensor[MOELAT_BANDS + 1]; /* per block, per tensor: into flat */
} ml_grad_weights;

/* Per-thread buffers of the step functions. */
typedef struct ml_grad_ws ml_grad_ws;

/* Accumulators of one block of rows in a backward step. */
typedef struct ml_grad_acc {
    double *dstate;  /* N x S: += dL/d s_t from this block's cells */
    double *dweights;/* every weight, flat order */
    double *dext;    /* X x Y x E */
    double **dtensor[MOELAT_BANDS + 1]; /* per block, per tensor: into dweights */
} ml_grad_acc;

/* The gradient engine of one lattice (lat->grad): what lasts from one
 * recording to the next, built with the lattice's first recording and
 * kept until the lattice is destroyed. The host half (backward
 * extensions, per-thread workspaces, per-block accumulators) depends only
 * on the lattice's experts, threads and weights' layout, which never
 * change; the device half (programs, kernels, device buffers) on the
 * backend it was built on, and is dropped when that backend closes
 * (ml_grad_engine_detach) and rebuilt on the next one. */
typedef struct ml_grad_engine {
    moelat_lattice *lat;
    const moelat_backward_host *bwd[MOELAT_BANDS]; /* NULL for a band with no neighbour anywhere */
    size_t w_count;           /* every weight */
    int n_blocks;             /* backward row blocks: the thread count */
    ml_grad_acc *acc;         /* n_blocks */
    ml_grad_ws *ws;           /* one per pool worker */
    int n_ws;
    const ml_backward_ops *dev_ops; /* the device's backward (backend.h), or NULL */
    void *dev;                /* its state, owned by dev_ops */
    const void *dev_for;      /* the backend context dev was tried on */
    char dev_why[384];        /* where the device backward runs, or why it does not */
    float *swap;              /* weights_count + X Y E floats: the lattice's own weights
                                 and input while a recording's are swapped in */
    uint64_t lat_w_gen, lat_ext_gen; /* the lattice's generations while swapped out */
    int lat_has_ext;
    struct moelat_grad *tapes;/* live recordings, linked through next */
    struct moelat_grad *spare;/* a destroyed recording kept for the next one */
    struct moelat_grad *dw_tape; /* the live recording whose dL/dW only the device half holds (its
                                    dw_on_device), read back before another sweep or a close */
} ml_grad_engine;

/* One recording (a tape): the run's own inputs, its checkpointed states,
 * s_T, and the adjoints of its last backward. Cheap next to the engine;
 * after moelat_grad_destroy the engine keeps one for reuse. A recording
 * whose lattice was destroyed is orphaned (lat NULL): every call but
 * destroy fails with err saying so. */
struct moelat_grad {
    moelat_lattice *lat;
    ml_grad_engine *eng;
    struct moelat_grad *next; /* the engine's list of live recordings */
    int steps, every;         /* T and k */
    int n_ckpt;               /* ceil(T / k) */
    size_t NS;                /* N x S */
    ml_grad_weights w;        /* the recording's weights in double */
    double *ext;              /* X x Y x E (zeros when the lattice has none) */
    float *f_w, *f_ext;       /* the same as the lattice held them (float32), for device steps */
    int has_ext;
    uint64_t w_gen, ext_gen;  /* the lattice's weights and input generations they were */
    double *ckpt;             /* n_ckpt x NS: s_0, s_k, s_2k, ... */
    double *seg;              /* every x NS: one segment's states, recomputed */
    double *final;            /* NS: s_T */
    double *g, *g_prev;       /* NS: dL/ds_t while reversing */
    double *dstate_in;        /* NS: moelat_grad_backward's dL/ds_T in double */
    double *dweights;         /* results: dL/dW (flat), dL/ds_0 is g, dL/dext */
    double *dext;
    int recorded, reversed;
    int on_device;            /* this recording's steps run on the engine's device */
    int w_host;               /* w.flat and f_w hold the recording's weights (else only the lattice's
                                 device does, generation w_gen: ml_grad_host_weights reads them) */
    int sum_on_device;        /* the trainer's request: a device sweep's dL/dW goes into the device
                                 optimizer's gradient sum (ml_grad_sum_on_device) */
    int dw_on_device;         /* it went there: dweights lacks it until ml_grad_host_dweights */
    char path[384];           /* where the backward runs, and why */
    long chunks_device, chunks_host; /* backward chunk-steps of the last sweep, by place */
    char fallback[256];       /* the last reason a chunk moved to the host */
    char err[512];            /* an orphaned recording's refusal */
    /* The device's forward steps (grad.c's forward_step): a float copy of
     * one state, and the lattice's own states, put back after. */
    float *fwd_tmp;
    const double *fwd_held;   /* the recorded state the lattice holds now, or NULL */
    int swapped_w, swapped_ext; /* the recording's weights / input are swapped into the lattice */
};

/* The recording's weights in w.flat and f_w, read from the lattice (back
 * from the device, where only it holds them) when the recording did not
 * take them: every host use of them (float64 steps, host chunks, an upload)
 * calls this first. MOELAT_OK, or why not with lat->err set. */
moelat_status ml_grad_host_weights(moelat_grad *g);
/* A live recording that took no weights takes them now, before the
 * lattice's change (installed as lat->grad_weights_change). */
moelat_status ml_grad_engine_pin_weights(moelat_lattice *lat);
/* on: the next device sweeps of g add dL/dW into the lattice's device
 * optimizer's gradient sum (open, this trainer's) instead of reading it
 * back; afterwards ml_grad_summed_on_device(g) says whether the last one
 * did (a host sweep or host chunks read it back as before). */
void ml_grad_sum_on_device(moelat_grad *g, int on);
int ml_grad_summed_on_device(const moelat_grad *g);
/* g->dweights complete: dL/dW read back from the device when the last
 * sweep left it there. */
moelat_status ml_grad_host_dweights(moelat_grad *g);

/* Drops the engine's device half (whole = 0: the backend is closing) or
 * the whole engine, orphaning its live recordings (whole = 1: the lattice
 * is being destroyed). Installed as lat->grad_detach. */
void ml_grad_engine_detach(moelat_lattice *lat, int whole);

/* The lattice's engine, built on first use (grad_engine.c). */
moelat_status ml_grad_engine_get(moelat_lattice *lat, ml_grad_engine **out);
/* Where recording g runs: the engine's device backward (built on first use
 * per backend) or the host; sets g->on_device and g->path. */
void ml_grad_engine_choose_path(ml_grad_engine *e, moelat_grad *g);
/* A recording of steps steps with checkpoints every k: the engine's spare
 * when it has that shape, else a new one; linked into e->tapes. */
moelat_status ml_grad_tape_get(ml_grad_engine *e, int steps, int every, moelat_grad **out);

/* Allocates per-thread workspaces (e->ws); 0 or -1 with lat->err set. */
int ml_grad_ws_create(ml_grad_engine *e);
void ml_grad_ws_free(ml_grad_engine *e);

/* next = one float64 step from cur. MOELAT_OK, or the failure's status
 * with lat->err set (step, from 0, names the step in the message). */
moelat_status ml_grad_step_f64(moelat_grad *g, const double *cur, double *next, int step);

/* MOELAT_OK or a failure's status: dL/d s_t into g_out from s_t (cur) and dL/d s_{t+1} (g_in), adding the
 * weights' and the input's gradients into g->dweights and g->dext. Rows
 * are cut into g->n_blocks fixed blocks, each accumulating alone, summed
 * in block order: the result does not depend on scheduling. */
moelat_status ml_grad_step_bwd(moelat_grad *g, const double *cur, const double *g_in, double *g_out);

/* Rows [row0, row1) (row = y + Y z) of one backward step on the host:
 * adds their cells' contributions to dL/d s_t into dstate (N x S; the
 * residual is not included) and to the weights' and the input's gradients
 * into g->dweights and g->dext. ml_grad_step_bwd is this over every row. */
moelat_status ml_grad_step_bwd_rows(moelat_grad *g, const double *cur, const double *g_in, int row0, int row1,
                                    double *dstate);

/* Bytes a gradient of T steps with checkpoints every k needs. */
uint64_t ml_grad_bytes(const moelat_lattice *lat, int steps, int k, int n_blocks);

/* Runs the recorded T steps again in float64 from g->ckpt's s_0, the
 * weights g->w.flat and the input g->ext, refilling the checkpoints and
 * s_T (moelat_grad_record calls it once); a finite-difference test calls
 * it after changing one of those inputs. */
moelat_status ml_grad_forward(moelat_grad *g);

#endif
