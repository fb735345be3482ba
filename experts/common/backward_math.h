/* Float64 building blocks of the host backward: each forward helper of
 * MODEL.md's math with its adjoint. Adjoints ADD into their outputs (d*
 * arguments), so that gradients accumulate across uses of a value; a NULL
 * output is skipped. Shared by the built-in experts' backward and by the
 * engine's gate. */
#ifndef MOELAT_BACKWARD_MATH_H
#define MOELAT_BACKWARD_MATH_H

#include <stddef.h>

double bm_gelu(double v);       /* exact erf form */
double bm_gelu_grad(double v);  /* d GELU / d v */
double bm_sigmoid(double v);

/* out[o] = b[o] + sum_i W[o][i] in[i]; W is [nout][nin]; b may be NULL. */
void bm_dense(const double *W, const double *b, const double *in, int nin, double *out, int nout);
/* Adjoint of bm_dense for dout: din += W^T dout, dW += dout in^T,
 * db += dout. */
void bm_dense_bwd(const double *W, const double *in, const double *dout, int nin, int nout,
                  double *din, double *dW, double *db);

/* LayerNorm of v (n values, eps 1e-5) into out (may alias v); keeps the
 * normalised values in xhat (n) and returns 1/sqrt(var + eps). */
double bm_layernorm(const double *v, int n, const double *gain, const double *bias, double *xhat,
                    double *out);
/* Adjoint: dv += d LN / d v^T dout, dgain += dout xhat, dbias += dout.
 * work holds n doubles. */
void bm_layernorm_bwd(const double *xhat, double inv, int n, const double *gain, const double *dout,
                      double *dv, double *dgain, double *dbias, double *work);

/* In-place softmax (max-subtracted). */
void bm_softmax(double *v, int n);
/* Adjoint of a = softmax(z) for da: dz = a (da - a . da) (written, not added). */
void bm_softmax_bwd(const double *a, const double *da, int n, double *dz);

/* Hands out consecutive pieces of a scratch buffer. */
static inline double *bm_take(double **at, size_t n) {
    double *p = *at;
    *at += n;
    return p;
}

#endif
