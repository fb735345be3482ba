/*
 * Exact gradients of T lattice steps (reverse mode).
 *
 * moelat_grad_record runs T steps from the lattice's current states and
 * keeps the states every k steps; moelat_grad_backward takes dL/ds_T of any
 * loss the caller computes from moelat_grad_final_states and returns dL/dW
 * for every weight, dL/ds_0 and dL/d(external input). States between
 * checkpoints are recomputed, so memory is O(N*S*(T/k + k)). The lattice
 * itself is not changed (its states, step counter and report are put
 * back; a recording's own weights and input are used in its backward even
 * when the lattice holds others by then).
 *
 * Where it runs (moelat_grad_path says which, and why):
 *  - On the lattice's OpenCL device, when its mode is batch or auto, the
 *    device is up, every band's expert has the device backward
 *    ("moelat.backward.cl/1") and tuning grad_device is on (the default):
 *    the recorded steps are the lattice's own batched float32 steps, and
 *    the reverse steps run batched in float32, chunk by chunk (runs of
 *    whole rows of X cells, sized from device memory). A chunk whose device launches fail is redone on the host,
 *    logged and counted (moelat_grad_chunks); a failure the device reports
 *    later makes the whole sweep run again on the host. Weight gradients
 *    are summed in a fixed order without float atomics: two runs on the
 *    same device and settings give identical bits.
 *  - On the host otherwise (mode percell, or tuning grad_device=off): the
 *    float64 instantiation of the per-cell host path (MODEL.md's function
 *    evaluated in double, from the lattice's float32 states, weights and
 *    input) and its exact adjoint, the reference the device is tested
 *    against (1e-4 relative per tensor). Its weight gradients are reduced
 *    over fixed blocks of rows: bitwise identical for a given thread count.
 *
 * Requirements: every band that has neighbours is served by an expert with
 * the host backward extension ("moelat.backward.host/1"); CNF mode euler
 * (lipschitz is refused: its state-dependent step size is not
 * differentiated). k does not change the gradients.
 *
 * Errors leave their message in moelat_last_error() of the lattice.
 */
#ifndef MOELAT_GRAD_H
#define MOELAT_GRAD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "moelat/api.h"
#include "moelat/moelat.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moelat_grad moelat_grad;

typedef struct moelat_grad_options {
    uint32_t struct_size;
    int32_t checkpoint_every; /* k >= 1; 0 = automatic from memory_budget */
    uint64_t memory_budget;   /* bytes; 0 = half the physical memory */
} moelat_grad_options;

/* Layout 1, the smallest struct_size moelat_grad_record accepts (fields
 * are only appended; the library reads those within struct_size). */
#define MOELAT_GRAD_OPTIONS_SIZE_V1 (offsetof(moelat_grad_options, memory_budget) + sizeof(uint64_t))
#define MOELAT_GRAD_OPTIONS_INIT {.struct_size = (uint32_t)sizeof(moelat_grad_options)}
/* The defaults (every field 0) in the caller's own layout: prefer it, or
 * MOELAT_GRAD_OPTIONS_INIT, to moelat_grad_options_default, which writes
 * the library's layout and so suits only callers built with this header. */
static inline void moelat_grad_options_init(moelat_grad_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->struct_size = (uint32_t)sizeof *opt;
}
MOELAT_API void moelat_grad_options_default(moelat_grad_options *opt);

/* Bytes a gradient of steps steps with checkpoints every k needs. */
MOELAT_API uint64_t moelat_grad_memory(moelat_lattice *lat, int steps, int k);

/* Records steps >= 1 steps from the lattice's current states. Refuses,
 * before any work, a lattice whose expert lacks a backward (naming band
 * and plugin), CNF mode lipschitz, and a run that does not fit the
 * memory budget (with the estimate and a k that fits). */
MOELAT_API moelat_status moelat_grad_record(moelat_lattice *lat, int steps, const moelat_grad_options *opt,
                                 moelat_grad **out);
/* Ends a recording (its memory is kept by the lattice for the next one).
 * Safe after the lattice was destroyed: a recording that outlives its
 * lattice refuses every other call with MOELAT_ERR_INVALID. */
MOELAT_API void moelat_grad_destroy(moelat_grad *g);
/* The message of the recording's last refusal (its lattice's last error,
 * or why an orphaned recording refuses). */
MOELAT_API const char *moelat_grad_last_error(const moelat_grad *g);

/* The lattice's gradient engine: what lasts between recordings (per-thread
 * workspaces, accumulators, the device backward's programs and buffers) is
 * built by the first recording and rebuilt only when the lattice's device
 * changes. builds counts those builds, recording_allocs the recordings
 * that needed new memory (one of the last length is reused): a training
 * loop's counts stop growing after its first sample. */
MOELAT_API moelat_status moelat_grad_engine_counts(moelat_lattice *lat, uint64_t *builds,
                                                   uint64_t *recording_allocs);

MOELAT_API int moelat_grad_steps(const moelat_grad *g);
/* Where the backward runs: "device <name> (chunks, slots)" or "host
 * (<why>)"; after a device failure, "host (after a device failure: ...)". */
MOELAT_API const char *moelat_grad_path(const moelat_grad *g);
/* The last sweep's backward chunk-steps on the device and on the host (a
 * chunk whose device launches failed is redone on the host, logged and
 * counted there), and the last reason one moved ("" when none did). */
MOELAT_API void moelat_grad_chunks(const moelat_grad *g, long *device, long *host, const char **last_fallback);
MOELAT_API int moelat_grad_checkpoint_every(const moelat_grad *g);

/* s_T of the recorded run: N x S, cell-major as moelat_get_states (on the
 * device path, the float32 steps' values). */
MOELAT_API moelat_status moelat_grad_final_states(moelat_grad *g, float *dst, size_t count);
MOELAT_API moelat_status moelat_grad_final_states_f64(moelat_grad *g, double *dst, size_t count);

/* Reverses the T steps from dL/ds_T (N x S); may be called again with
 * another dL/ds_T (the gradients are replaced). A non-finite entry is
 * refused. */
MOELAT_API moelat_status moelat_grad_backward(moelat_grad *g, const float *dstate, size_t count);
MOELAT_API moelat_status moelat_grad_backward_f64(moelat_grad *g, const double *dstate, size_t count);

/* dL/dW, all weights as one flat array in moelat_get_weights's order
 * (count = moelat_weights_count). */
MOELAT_API moelat_status moelat_grad_weights(moelat_grad *g, float *dst, size_t count);
MOELAT_API moelat_status moelat_grad_weights_f64(moelat_grad *g, double *dst, size_t count);
/* dL/dW of one tensor by its weights-file name ("local_expert.alpha");
 * count must be the tensor's element count. */
MOELAT_API moelat_status moelat_grad_tensor(moelat_grad *g, const char *name, float *dst, size_t count);
/* Writes dL/dW as a safetensors file (float32) under the weights' names
 * and shapes, atomically. */
MOELAT_API moelat_status moelat_grad_save_weights(moelat_grad *g, const char *path);
/* dL/ds_0: N x S. */
MOELAT_API moelat_status moelat_grad_states(moelat_grad *g, float *dst, size_t count);
MOELAT_API moelat_status moelat_grad_states_f64(moelat_grad *g, double *dst, size_t count);
/* dL/d(external input): X x Y x MOELAT_EXT_SIZE (also when none was set:
 * the gradient at zero input). */
MOELAT_API moelat_status moelat_grad_input(moelat_grad *g, float *dst, size_t count);
MOELAT_API moelat_status moelat_grad_input_f64(moelat_grad *g, double *dst, size_t count);

#ifdef __cplusplus
}
#endif

#endif /* MOELAT_GRAD_H */
