/* The gate block's tensors, in declaration order. Plain C and OpenCL C
 * alike: the device backward reads it too (grad_gate.c). */
#ifndef MOELAT_GATE_TENSORS_H
#define MOELAT_GATE_TENSORS_H

enum { GATE_W0, GATE_B0, GATE_W2, GATE_B2, GATE_LN_W, GATE_LN_B, GATE_N_TENSORS };

#if defined(__OPENCL_VERSION__) && !defined(MOELAT_BANDS)
#define MOELAT_BANDS 3 /* as moelat/moelat.h */
#endif

#endif
