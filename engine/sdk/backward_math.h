/* Building blocks of the backward: each forward helper of MODEL.md's math
 * with its adjoint, in mlb_real (double on the host, float on the device:
 * moelat/backward_portable.h). Adjoints ADD into their outputs (d*
 * arguments), so that gradients accumulate across uses of a value; a NULL
 * output is skipped. Shared by the built-in experts' backward and by the
 * engine's gate, on the host and (as OpenCL C) on the device.
 *
 * The same text also gives the per-cell host forward (moelat_host_cell,
 * float tensors), so that a forward is written once for that path and the
 * float64 one: a host translation unit defines one of these before its
 * first include of this header, and every function below becomes a static
 * inline copy in that unit (beside the float64 ones the plugin or engine
 * links):
 *   MLB_HOST_FLOAT32  mlb_real and the tensors are float, the math below
 *                     the float functions (expf, erff, ...), and bm_dense
 *                     one fma chain per output from its bias, in input
 *                     order (the float path's arithmetic: ec_dense,
 *                     ml_dense);
 *   MLB_HOST_F32_TENSORS  mlb_real is double, the tensors float, and
 *                     bm_dense one plain multiply-add chain per output from
 *                     its bias (the CNF's float path, which computes in
 *                     double: cnf_host.c).
 * A unit compiles one of the three; mlb_tensor is the tensors' element
 * type (mlb_real but under MLB_HOST_F32_TENSORS). A text meant for the
 * float32 instantiation too calls bm_exp, bm_erf, bm_sqrt, bm_fabs, bm_fma
 * and bm_tanh, the functions of mlb_real in each (exp of a float is double
 * in C; on the device, bm_erf is the forward kernels' ml_erf). */
#ifndef MOELAT_BACKWARD_MATH_H
#define MOELAT_BACKWARD_MATH_H

#ifndef __OPENCL_VERSION__
#include <stddef.h>
#include <math.h>
#if defined(MLB_HOST_FLOAT32)
typedef float mlb_real;
typedef float mlb_tensor;
#define MLB_G
#define MLB_C(x) x##f
#define MLB_DENSE_FMA 1
#define bm_exp expf
#define bm_erf erff
#define bm_sqrt sqrtf
#define bm_fabs fabsf
#define bm_fma fmaf
#define bm_tanh tanhf
#elif defined(MLB_HOST_F32_TENSORS)
typedef double mlb_real;
typedef float mlb_tensor;
#define MLB_G
#define MLB_C(x) x
#define MLB_DENSE_CHAIN 1
#else
#include "moelat/backward_portable.h"
#endif
#endif

#if defined(MLB_HOST_FLOAT32) || defined(MLB_HOST_F32_TENSORS)
#define BM_API static inline
#else /* the float64 host backward and the device */
#define BM_API
typedef mlb_real mlb_tensor;
#endif
#ifndef bm_exp /* double on the host, float (overloads) on the device */
#define bm_exp exp
#ifdef __OPENCL_VERSION__
#define bm_erf ml_erf
#else
#define bm_erf erf
#endif
#define bm_sqrt sqrt
#define bm_fabs fabs
#define bm_fma fma
#define bm_tanh tanh
#endif

/* Lanes (BM_FOR, BM_ONE, BM_SYNC): moelat/backward_portable.h; the
 * float32 host instantiations, which do not include it, run one lane. */
#ifndef BM_FOR
#define BM_LANES 1
#define BM_LANE 0
#define BM_SYNC ((void)0)
#define BM_FOR(i, n) for (int i = 0; i < (int)(n); i++)
#define BM_ONE if (1)
#endif

BM_API mlb_real bm_gelu(mlb_real v);       /* exact erf form: the one C GELU */
BM_API mlb_real bm_gelu_grad(mlb_real v);  /* d GELU / d v */
/* GELU's Phi(v) (GELU(v) = v Phi(v)), and d GELU / d v from v and Phi(v):
 * a forward that keeps Phi spares its backward the erf. */
BM_API mlb_real bm_gelu_cdf(mlb_real v);
BM_API mlb_real bm_gelu_grad_cdf(mlb_real v, mlb_real cdf);
BM_API mlb_real bm_sigmoid(mlb_real v);

/* out[o] = b[o] + sum_i W[o][i] in[i]; W is [nout][nin]; b may be NULL. */
BM_API void bm_dense(MLB_G const mlb_tensor *W, MLB_G const mlb_tensor *b, MLB_G const mlb_real *in, int nin,
                     MLB_G mlb_real *out, int nout);
/* Adjoint of bm_dense for dout: din += W^T dout, dW += dout in^T,
 * db += dout. */
BM_API void bm_dense_bwd(MLB_G const mlb_tensor *W, MLB_G const mlb_real *in, MLB_G const mlb_real *dout,
                         int nin, int nout, MLB_G mlb_real *din, MLB_G mlb_real *dW, MLB_G mlb_real *db);

/* The same over columns [c, c + nin) of a wider matrix: W points at column
 * c of row 0 and rows are ld apart (dW likewise). With base for b, a layer
 * whose input is [u, v] splits into a part computed once (v's columns and
 * the bias) and a part per u: out = base + W[:, u] u. */
BM_API void bm_dense_part(MLB_G const mlb_tensor *W, int ld, MLB_G const mlb_tensor *b, MLB_G const mlb_real *in,
                          int nin, MLB_G mlb_real *out, int nout);
BM_API void bm_dense_part_bwd(MLB_G const mlb_tensor *W, int ld, MLB_G const mlb_real *in,
                              MLB_G const mlb_real *dout, int nin, int nout, MLB_G mlb_real *din,
                              MLB_G mlb_real *dW, MLB_G mlb_real *db);

/* LayerNorm of v (n values, eps 1e-5) into out (may alias v, and xhat may
 * alias both); keeps the normalised values in xhat (n) and returns
 * 1/sqrt(var + eps). */
BM_API mlb_real bm_layernorm(MLB_G const mlb_real *v, int n, MLB_G const mlb_tensor *gain,
                             MLB_G const mlb_tensor *bias, MLB_G mlb_real *xhat, MLB_G mlb_real *out);
/* Adjoint: dv += d LN / d v^T dout, dgain += dout xhat, dbias += dout.
 * work holds n values. */
BM_API void bm_layernorm_bwd(MLB_G const mlb_real *xhat, mlb_real inv, int n, MLB_G const mlb_tensor *gain,
                             MLB_G const mlb_real *dout, MLB_G mlb_real *dv, MLB_G mlb_real *dgain,
                             MLB_G mlb_real *dbias, MLB_G mlb_real *work);

/* One lane's own copies, for work a lane does alone (one edge of a
 * cell): out = b + W[:, 0..nin) in with bm_dense_part's arithmetic, and
 * bm_dense_part_bwd's din alone (din += W^T dout), no lanes, no sync. */
BM_API void bm_dense_part_1(MLB_G const mlb_tensor *W, int ld, MLB_G const mlb_real *b, MLB_G const mlb_real *in,
                            int nin, MLB_G mlb_real *out, int nout);
BM_API void bm_dense_part_bwd_in_1(MLB_G const mlb_tensor *W, int ld, MLB_G const mlb_real *dout, int nin, int nout,
                                   MLB_G mlb_real *din);

/* Sums over n items (edges, neighbours) of outer products and of vectors,
 * each element's terms in item order: item j's vectors are a + j lda (and
 * b + j ldb).
 *   bm_outer_sum: dW[r][q] += sum_j a_j[r] b_j[q] (rows x cols, rows ld
 *                 apart; a term whose a_j[r] is 0 is skipped)
 *   bm_item_sum:  out[r] += sum_j a_j[r] (rows values)
 * With lanes, lane by element; with one, row by row with the columns
 * innermost (contiguous). */
BM_API void bm_outer_sum(MLB_G const mlb_real *a, int lda, MLB_G const mlb_real *b, int ldb, int n, int rows,
                         int cols, MLB_G mlb_real *dW, int ld);
BM_API void bm_item_sum(MLB_G const mlb_real *a, int lda, int n, int rows, MLB_G mlb_real *out);

/* In-place softmax (max-subtracted). */
BM_API void bm_softmax(MLB_G mlb_real *v, int n);
/* Adjoint of a = softmax(z) for da: dz = a (da - a . da) (written, not added). */
BM_API void bm_softmax_bwd(MLB_G const mlb_real *a, MLB_G const mlb_real *da, int n, MLB_G mlb_real *dz);

/* v[0..n) = 0, and dst[0..n) = src[0..n) (memset/memcpy, which OpenCL C
 * lacks). */
BM_API void bm_zero(MLB_G mlb_real *v, size_t n);
BM_API void bm_copy(MLB_G mlb_real *dst, MLB_G const mlb_real *src, size_t n);

/* Hands out consecutive pieces of a scratch buffer. */
static inline MLB_G mlb_real *bm_take(MLB_G mlb_real **at, size_t n) {
    MLB_G mlb_real *p = *at;
    *at += n;
    return p;
}

#if defined(MLB_HOST_FLOAT32) || defined(MLB_HOST_F32_TENSORS)
#include "backward_math.c" /* this unit's copies */
#endif

#endif
