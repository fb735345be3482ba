/* Building blocks of the backward: each forward helper of MODEL.md's math
 * with its adjoint, in mlb_real (double on the host, float on the device:
 * moelat/backward_portable.h). Adjoints ADD into their outputs (d*
 * arguments), so that gradients accumulate across uses of a value; a NULL
 * output is skipped. Shared by the built-in experts' backward and by the
 * engine's gate, on the host and (as OpenCL C) on the device. */
#ifndef MOELAT_BACKWARD_MATH_H
#define MOELAT_BACKWARD_MATH_H

#ifndef __OPENCL_VERSION__
#include <stddef.h>

#include "moelat/backward_portable.h"
#endif

mlb_real bm_gelu(mlb_real v);       /* exact erf form */
mlb_real bm_gelu_grad(mlb_real v);  /* d GELU / d v */
/* GELU's Phi(v) (GELU(v) = v Phi(v)), and d GELU / d v from v and Phi(v):
 * a forward that keeps Phi spares its backward the erf. */
mlb_real bm_gelu_cdf(mlb_real v);
mlb_real bm_gelu_grad_cdf(mlb_real v, mlb_real cdf);
mlb_real bm_sigmoid(mlb_real v);

/* out[o] = b[o] + sum_i W[o][i] in[i]; W is [nout][nin]; b may be NULL. */
void bm_dense(MLB_G const mlb_real *W, MLB_G const mlb_real *b, MLB_G const mlb_real *in, int nin,
              MLB_G mlb_real *out, int nout);
/* Adjoint of bm_dense for dout: din += W^T dout, dW += dout in^T,
 * db += dout. */
void bm_dense_bwd(MLB_G const mlb_real *W, MLB_G const mlb_real *in, MLB_G const mlb_real *dout,
                  int nin, int nout, MLB_G mlb_real *din, MLB_G mlb_real *dW, MLB_G mlb_real *db);

/* The same over columns [c, c + nin) of a wider matrix: W points at column
 * c of row 0 and rows are ld apart (dW likewise). With base for b, a layer
 * whose input is [u, v] splits into a part computed once (v's columns and
 * the bias) and a part per u: out = base + W[:, u] u. */
void bm_dense_part(MLB_G const mlb_real *W, int ld, MLB_G const mlb_real *b, MLB_G const mlb_real *in, int nin,
                   MLB_G mlb_real *out, int nout);
void bm_dense_part_bwd(MLB_G const mlb_real *W, int ld, MLB_G const mlb_real *in, MLB_G const mlb_real *dout,
                       int nin, int nout, MLB_G mlb_real *din, MLB_G mlb_real *dW, MLB_G mlb_real *db);

/* LayerNorm of v (n values, eps 1e-5) into out (may alias v); keeps the
 * normalised values in xhat (n) and returns 1/sqrt(var + eps). */
mlb_real bm_layernorm(MLB_G const mlb_real *v, int n, MLB_G const mlb_real *gain,
                      MLB_G const mlb_real *bias, MLB_G mlb_real *xhat, MLB_G mlb_real *out);
/* Adjoint: dv += d LN / d v^T dout, dgain += dout xhat, dbias += dout.
 * work holds n values. */
void bm_layernorm_bwd(MLB_G const mlb_real *xhat, mlb_real inv, int n, MLB_G const mlb_real *gain,
                      MLB_G const mlb_real *dout, MLB_G mlb_real *dv, MLB_G mlb_real *dgain,
                      MLB_G mlb_real *dbias, MLB_G mlb_real *work);

/* In-place softmax (max-subtracted). */
void bm_softmax(MLB_G mlb_real *v, int n);
/* Adjoint of a = softmax(z) for da: dz = a (da - a . da) (written, not added). */
void bm_softmax_bwd(MLB_G const mlb_real *a, MLB_G const mlb_real *da, int n, MLB_G mlb_real *dz);

/* v[0..n) = 0, and dst[0..n) = src[0..n) (memset/memcpy, which OpenCL C
 * lacks). */
void bm_zero(MLB_G mlb_real *v, size_t n);
void bm_copy(MLB_G mlb_real *dst, MLB_G const mlb_real *src, size_t n);

/* Hands out consecutive pieces of a scratch buffer. */
static inline MLB_G mlb_real *bm_take(MLB_G mlb_real **at, size_t n) {
    MLB_G mlb_real *p = *at;
    *at += n;
    return p;
}

#endif
