/*
 * Backward code written once, compiled twice: as C for the host backward
 * (float64, "moelat.backward.host/1") and as OpenCL C for the device
 * backward (float32, "moelat.backward.cl/1"). Include this header first in
 * such a file; the engine prepends it to the OpenCL source it builds.
 *
 * Write every array as `MLB_G mlb_real *` (MLB_G is __global on the
 * device, nothing on the host), scalars as mlb_real, floating constants
 * as MLB_C(0.5), and wrap what only the host has (the extension table,
 * size functions, memset/memcpy, function pointers) in
 * `#ifndef __OPENCL_VERSION__`. On the host mlb_real is double and
 * moelat_grad_cell is expert_abi.h's; on the device the same names are
 * defined below with float and __global pointers, so one function body
 * reads `c->x[s]`, `c->tensors[T][o]` and `c->dx[s] += ...` on both.
 */
#ifndef MOELAT_BACKWARD_PORTABLE_H
#define MOELAT_BACKWARD_PORTABLE_H

#ifdef __OPENCL_VERSION__

typedef float mlb_real;
#define MLB_G __global
#define MLB_C(x) x##f

#define MOELAT_MAX_HIDDEN 8
#define MOELAT_EXPERT_OK 0
#define MOELAT_EXPERT_ERROR 1

/* The same fields as expert_abi.h's, filled by the engine's kernel. */
typedef struct moelat_expert_dims {
    uint struct_size;
    int state_size;
    int ext_size;
    int hidden[MOELAT_MAX_HIDDEN];
    int cnf_steps;
    int cnf_mode;
} moelat_expert_dims;

typedef struct moelat_grad_cell {
    const moelat_expert_dims *dims;
    __global const float *const *tensors; /* one pointer per tensor */
    __global const float *x;
    __global const float *neighbours;     /* count x S */
    int count;
    __global const float *ext;
    int cell[3];
    __global float *out;                  /* S (may be 0 in backward) */
    __global const float *dout;
    __global float *dx;
    __global float *dneighbours;          /* count x S */
    __global float *dext;
    __global float *const *dtensors;
    __global float *scratch;
    __global const float *nproj;          /* count x P (MOELAT_BACKWARD_CL_PROJECTED), or 0 */
    __global float *dproj;                /* count x P */
    __global float *dabs;                 /* S */
    __global float *dmean;                /* S */
} moelat_grad_cell;

#else /* the host */

#include <stddef.h>

#include "moelat/expert_abi.h"

typedef double mlb_real;
#define MLB_G
#define MLB_C(x) x

#endif

/* Lanes: on the device, the engine may run one cell's backward on a
 * work-group of ML_BWD_LANES work-items instead of one, every lane calling
 * backward_fn with the same cell (an expert opts in with
 * MOELAT_BACKWARD_CL_COOPERATIVE). The engine's backward_math functions
 * (engine/sdk/backward_math.h) then split their outputs over the lanes and
 * end with BM_SYNC, and a backward text written for lanes follows three
 * rules:
 *   - write shared arrays (scratch, the cell's d* arrays) only in
 *     BM_FOR loops (element i belongs to lane i % BM_LANES) or BM_ONE
 *     blocks, and end each such phase with BM_SYNC before anything reads
 *     what it wrote or overwrites what it read;
 *   - a scalar (a dot product, a norm) is computed by every lane alike,
 *     from arrays no lane is writing;
 *   - every lane takes the same branches and loops (they depend only on
 *     sizes and on values every lane computed alike).
 * On the host, and on the device with one lane, BM_FOR is a plain loop,
 * BM_ONE always true and BM_SYNC nothing: one text, the same arithmetic
 * per element in every instantiation. */
#if defined(__OPENCL_VERSION__) && defined(ML_BWD_LANES) && ML_BWD_LANES > 1
#define BM_LANES ML_BWD_LANES
#define BM_LANE ((int)get_local_id(0))
#define BM_SYNC barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)
#else
#define BM_LANES 1
#define BM_LANE 0
#define BM_SYNC ((void)0)
#endif
#define BM_FOR(i, n) for (int i = BM_LANE; i < (int)(n); i += BM_LANES)
#define BM_ONE if (BM_LANE == 0)

#endif /* MOELAT_BACKWARD_PORTABLE_H */
