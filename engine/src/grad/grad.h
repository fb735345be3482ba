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

struct moelat_grad {
    moelat_lattice *lat;
    int steps, every;         /* T and k */
    int n_ckpt;               /* ceil(T / k) */
    size_t NS;                /* N x S */
    const moelat_backward_host *bwd[MOELAT_BANDS]; /* NULL for a band with no neighbour anywhere */
    ml_grad_weights w;
    double *ext;              /* X x Y x E (zeros when the lattice has none) */
    double *ckpt;             /* n_ckpt x NS: s_0, s_k, s_2k, ... */
    double *seg;              /* every x NS: one segment's states, recomputed */
    double *final;            /* NS: s_T */
    double *g, *g_prev;       /* NS: dL/ds_t while reversing */
    int n_blocks;             /* backward row blocks: the thread count */
    ml_grad_acc *acc;         /* n_blocks */
    ml_grad_ws *ws;           /* one per pool worker */
    int n_ws;
    double *dweights;         /* results: dL/dW (flat), dL/ds_0 is g, dL/dext */
    double *dext;
    int recorded, reversed;
    const ml_backward_ops *dev_ops; /* the device's backward (backend.h), or NULL (host) */
    void *dev;                /* its state, owned by dev_ops */
    char path[384];           /* where the backward runs, and why */
    long chunks_device, chunks_host; /* backward chunk-steps of the last sweep, by place */
    char fallback[256];       /* the last reason a chunk moved to the host */
    /* The device's forward steps (grad.c's forward_step): a float copy of
     * one state and the lattice's own states, step counter and report,
     * put back after. */
    float *fwd_tmp;
    const double *fwd_held;   /* the recorded state the lattice holds now, or NULL */
    uint64_t saved_step_count;
    ml_stats saved_stats;
};

/* Allocates per-thread workspaces (g->ws); 0 or -1 with lat->err set. */
int ml_grad_ws_create(moelat_grad *g);
void ml_grad_ws_free(moelat_grad *g);

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
