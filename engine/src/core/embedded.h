/* Text files embedded at build time (cmake/MoelatEmbed.cmake). */
#ifndef MOELAT_EMBEDDED_H
#define MOELAT_EMBEDDED_H

struct ml_embedded_file {
    const char *name; /* base name, e.g. "moelat_helpers.cl" */
    const char *text;
};

/* The engine's kernels_cl/ sources, NULL-terminated. */
extern const struct ml_embedded_file ml_kernels_cl[];
extern const int ml_kernels_cl_count;

/* The device backward's shared texts, each NULL-terminated in build order.
 * moelat_backward_portable_cl_parts: the one text of
 * moelat/backward_portable.h, the prelude every backward program starts
 * with (moelat_backward_portable_cl names it). moelat_grad_gate_cl_parts:
 * what a kernel needs after the prelude to call ml_gate_f64 and
 * ml_gate_f64_bwd in float (backward_math.h, backward_math.c,
 * gate_tensors.h, grad_gate.c). An expert's source_parts also start with
 * backward_math; it is guarded (the .c too), so one program may hold the
 * gate and an expert's backward. */
extern const char *const moelat_backward_portable_cl_parts[];
#define moelat_backward_portable_cl (moelat_backward_portable_cl_parts[0])
extern const char *const moelat_grad_gate_cl_parts[];

#endif
