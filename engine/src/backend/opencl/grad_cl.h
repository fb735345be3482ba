/* The OpenCL backend's batched backward, shared by grad_cl.c (the
 * sweep: buffers, launches, results) and grad_cl_build.c (programs,
 * kernels, lanes). */
#ifndef MOELAT_GRAD_CL_H
#define MOELAT_GRAD_CL_H

#include "backend/opencl/backend_cl.h"
#include "grad/grad.h"

/* With a profiling queue (--profile), the sweep's device time by part,
 * logged at its end (grad=info). */
enum { P_FILL, P_GATE_FWD, P_BAND, P_GATE = P_BAND + MOELAT_BANDS, P_GATHER, P_COMMIT, P_ACCUMULATE, P_PROJECT,
       P_PARTS };
typedef struct prof_event {
    int part;
    cl_event ev;
} prof_event;

typedef struct ml_grad_cl {
    ml_cl_backend *b;
    cl_command_queue q;
    cl_program prog[MOELAT_BANDS + 1]; /* bands, then the engine's */
    cl_kernel band[MOELAT_BANDS], gate_fwd, gate, gather, commit, accumulate, project, gather_proj, proj_dw;
    int on[MOELAT_BANDS];              /* band has neighbours somewhere */
    int lanes[MOELAT_BANDS];           /* > 0: band[k] is the expert's band_kernel with work-groups of that
                                        * many lanes; 0: the engine's ml_bwd_band */
    int scratch[MOELAT_BANDS + 1];     /* scratch floats per band, the gate's */
    int lanes_of[MOELAT_BANDS + 1];    /* lanes per slot of band k's ml_bwd_band, the gate's: 1 or c->coop */
    int coop;                          /* lanes per slot for backwards written for lanes */
    int slot_floats, n_slots, rows, n_chunks, halo, n_all;
    int cpu;                           /* the device is a CPU (launch_slots) */
    int mean_only;                     /* bit k: band k's expert is MOELAT_BACKWARD_CL_MEAN_ONLY */
    cl_int proj_info[4 * MOELAT_BANDS]; /* per band P (0: not projected), W_p's offset in the weights, its
                                        * row length, its first column of proj's rows (moelat_backward.cl) */
    int q_stride;                      /* columns of proj and Q: the projected bands' P summed */
    size_t n_weights;
    cl_mem state, gin, dacc, weights, ext, dims[MOELAT_BANDS], toff[MOELAT_BANDS + 1];
    cl_mem offsets[MOELAT_BANDS], off_all;
    cl_mem slot_dw, slot_work, dchunk, dedge[MOELAT_BANDS], dw_gate, gate_w, dnu, dext_chunk, dw, dext, status;
    cl_mem pinfo, proj, Q;             /* proj_info; N x q_stride: W_p n; targets x q_stride: sums of dproj */
    int profiling;                     /* the queue records event times */
    prof_event *events;                /* this sweep's, when profiling */
    size_t n_events, cap_events;
    float *tmp;     /* N x S, or the weights when larger */
    double *hostacc;/* N x S: the host chunks' part of a step */
    int *host_chunks; /* n_chunks: a step's chunks for the host */
    /* Sweeps whose weights came from the forward's buffers / the host, and
     * whose dL/dW went into the device optimizer's sum / to the host (a
     * later read_dw counts too): what crossed, logged at close. */
    unsigned long weights_copied, weights_uploaded, dw_summed, dw_read;
    int sweep_copied;  /* this sweep's weights came from the forward's buffers */
} ml_grad_cl;

/* Band k's device backward, or NULL when its expert has none. */
const moelat_backward_cl *ml_grad_cl_backward_of(const moelat_lattice *lat, int k);
/* Lanes per work-group of band k's own band kernel, or 0 for ml_bwd_band. */
int ml_grad_cl_band_lanes(const ml_grad_cl *c, const moelat_lattice *lat, int k, const moelat_backward_cl *x);
/* Band k's projection (MOELAT_BACKWARD_CL_PROJECTED) when the expert
 * declares one that fits its tensors and tuning grad_proj allows: P, with
 * W_p's offset in the flat weights (w_base: the band's first weight) and
 * row length in *w_off and *ld; 0 otherwise (logged when declared but
 * unusable). */
int ml_grad_cl_projection(moelat_lattice *lat, int k, const moelat_backward_cl *x, size_t w_base, int *w_off,
                          int *ld);
/* Lanes per slot for a backward written for lanes (1: one work-item). */
int ml_grad_cl_lanes_per_slot(const ml_grad_cl *c, const moelat_lattice *lat);
/* Builds c's programs and kernels; 0, or -1 with why. May lower
 * c->lanes_of[k] to 1 where the device cannot run that many lanes. */
int ml_grad_cl_build(ml_grad_engine *eng, ml_grad_cl *c, const moelat_backward_cl *const x[MOELAT_BANDS], char *why,
                     size_t whylen);

#endif
