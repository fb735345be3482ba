/* Guarded like a header: a device program that holds both the gate's and
 * an expert's backward (each with backward_math first) defines these once;
 * a host unit that compiles the per-cell forward's copies includes it from
 * backward_math.h. */
#ifndef MOELAT_BACKWARD_MATH_C
#define MOELAT_BACKWARD_MATH_C

#ifndef __OPENCL_VERSION__
#include "backward_math.h"

#include <math.h>
#endif

/* bm_erf (backward_math.h): on the device, the rational fit of the
 * engine's forward kernels (moelat_helpers.cl's ml_erf, which the engine
 * puts in every program it builds), so the backward differentiates the
 * function the device's steps computed, without a library call per value
 * (the library's erf and exp were about a quarter of the backward on
 * PoCL). The host keeps the C library's erf (erff in float32). */

/* GELU, 0.5 v (1 + erf(v / sqrt 2)): the C text of every host GELU (the
 * experts' ec_gelu and float paths, the engine's gate, the float64
 * backward). The device's is moelat_helpers.cl's ml_gelu, the same
 * expression with ml_erf. */
BM_API mlb_real bm_gelu(mlb_real v) {
#ifdef __OPENCL_VERSION__
    return ml_gelu(v);
#else
    return MLB_C(0.5) * v * (MLB_C(1.0) + bm_erf(v * MLB_C(0.70710678118654752440)));
#endif
}

BM_API mlb_real bm_gelu_cdf(mlb_real v) {
    return MLB_C(0.5) * (MLB_C(1.0) + bm_erf(v * MLB_C(0.70710678118654752440)));
}

/* Phi(v) + v phi(v), with Phi(v) given. */
BM_API mlb_real bm_gelu_grad_cdf(mlb_real v, mlb_real cdf) {
    return cdf + v * MLB_C(0.39894228040143267794) * bm_exp(-MLB_C(0.5) * v * v);
}

BM_API mlb_real bm_gelu_grad(mlb_real v) { return bm_gelu_grad_cdf(v, bm_gelu_cdf(v)); }

BM_API mlb_real bm_sigmoid(mlb_real v) { return MLB_C(1.0) / (MLB_C(1.0) + bm_exp(-v)); }

#if defined(MLB_DENSE_FMA) || defined(MLB_DENSE_CHAIN)
/* The per-cell host forward's sums: one chain per output from its bias, in
 * input order (fused multiply-adds in float32, as the device's forward
 * kernels; plain ones for the CNF's double). */
#ifdef MLB_DENSE_FMA
#define BM_MAC(w, x, acc) bm_fma(w, x, acc)
#else
#define BM_MAC(w, x, acc) ((acc) + (w) * (x))
#endif
static inline mlb_real bm_row_chain(MLB_G const mlb_tensor *row, mlb_real acc, MLB_G const mlb_real *in, int nin) {
    for (int i = 0; i < nin; i++)
        acc = BM_MAC(row[i], in[i], acc);
    return acc;
}
#undef BM_MAC
#define BM_ROW(row, bias, in, nin) bm_row_chain(row, bias, in, nin)
#else
/* Each output's sum in eight interleaved partial sums over the inputs
 * (lane l takes inputs l, l + 8, ...), added pairwise at the end: the
 * lanes are contiguous loads, so a compiler turns them into one vector
 * multiply-add per eight inputs, and no add waits on the one before.
 * The tree that adds the lanes is written out for eight. */
#define BM_ROW_LANES 8
static inline mlb_real bm_row_dot(MLB_G const mlb_tensor *row, MLB_G const mlb_real *in, int nin) {
    const int body = nin - nin % BM_ROW_LANES;
    mlb_real lane[BM_ROW_LANES];
    for (int l = 0; l < BM_ROW_LANES; l++)
        lane[l] = MLB_C(0.0);
    for (int i = 0; i < body; i += BM_ROW_LANES)
        for (int l = 0; l < BM_ROW_LANES; l++)
            lane[l] += row[i + l] * in[i + l];
    for (int i = body; i < nin; i++)
        lane[i - body] += row[i] * in[i];
    return ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
}
#define BM_ROW(row, bias, in, nin) ((bias) + bm_row_dot(row, in, nin))
#endif

BM_API void bm_dense_part(MLB_G const mlb_tensor *W, int ld, MLB_G const mlb_tensor *b, MLB_G const mlb_real *in,
                          int nin, MLB_G mlb_real *out, int nout) {
    BM_FOR(o, nout)
        out[o] = BM_ROW(W + (size_t)o * ld, b ? (mlb_real)b[o] : MLB_C(0.0), in, nin);
    BM_SYNC;
}

BM_API void bm_dense_part_1(MLB_G const mlb_tensor *W, int ld, MLB_G const mlb_real *b, MLB_G const mlb_real *in,
                            int nin, MLB_G mlb_real *out, int nout) {
    for (int o = 0; o < nout; o++)
        out[o] = BM_ROW(W + (size_t)o * ld, b ? b[o] : MLB_C(0.0), in, nin);
}
#undef BM_ROW

BM_API void bm_dense(MLB_G const mlb_tensor *W, MLB_G const mlb_tensor *b, MLB_G const mlb_real *in, int nin,
                     MLB_G mlb_real *out, int nout) {
    bm_dense_part(W, nin, b, in, nin, out, nout);
}

BM_API void bm_dense_part_bwd_in_1(MLB_G const mlb_tensor *W, int ld, MLB_G const mlb_real *dout, int nin, int nout,
                                   MLB_G mlb_real *din) {
    for (int o = 0; o < nout; o++) {
        mlb_real g = dout[o];
        if (g == MLB_C(0.0))
            continue;
        MLB_G const mlb_tensor *row = W + (size_t)o * ld;
        for (int i = 0; i < nin; i++)
            din[i] += row[i] * g;
    }
}

/* Every element takes its terms in output order, skipping outputs whose
 * adjoint is 0 (they add nothing); with lanes, din is split by input and
 * dW by element, each element's order unchanged. */
BM_API void bm_dense_part_bwd(MLB_G const mlb_tensor *W, int ld, MLB_G const mlb_real *in, MLB_G const mlb_real *dout,
                              int nin, int nout, MLB_G mlb_real *din, MLB_G mlb_real *dW, MLB_G mlb_real *db) {
#if BM_LANES > 1
    if (din)
        BM_FOR(i, nin) {
            mlb_real acc = din[i];
            for (int o = 0; o < nout; o++) {
                const mlb_real g = dout[o];
                if (g != MLB_C(0.0))
                    acc += W[(size_t)o * ld + i] * g;
            }
            din[i] = acc;
        }
    if (dW)
        BM_FOR(e, nout * nin) {
            const int o = e / nin, i = e - o * nin;
            const mlb_real g = dout[o];
            if (g != MLB_C(0.0))
                dW[(size_t)o * ld + i] += g * in[i];
        }
    if (db)
        BM_FOR(o, nout) {
            if (dout[o] != MLB_C(0.0))
                db[o] += dout[o];
        }
    BM_SYNC;
#else
    if (din)
        bm_dense_part_bwd_in_1(W, ld, dout, nin, nout, din);
    for (int o = 0; o < nout; o++) {
        mlb_real g = dout[o];
        if (g == MLB_C(0.0))
            continue; /* adds nothing anywhere */
        if (dW) {
            MLB_G mlb_real *drow = dW + (size_t)o * ld;
            for (int i = 0; i < nin; i++)
                drow[i] += g * in[i];
        }
        if (db)
            db[o] += g;
    }
#endif
}

BM_API void bm_dense_bwd(MLB_G const mlb_tensor *W, MLB_G const mlb_real *in, MLB_G const mlb_real *dout,
                         int nin, int nout, MLB_G mlb_real *din, MLB_G mlb_real *dW, MLB_G mlb_real *db) {
    bm_dense_part_bwd(W, nin, in, dout, nin, nout, din, dW, db);
}

BM_API void bm_outer_sum(MLB_G const mlb_real *a, int lda, MLB_G const mlb_real *b, int ldb, int n, int rows,
                         int cols, MLB_G mlb_real *dW, int ld) {
#if BM_LANES > 1
    BM_FOR(e, rows * cols) {
        const int r = e / cols, q = e - r * cols;
        mlb_real acc = dW[(size_t)r * ld + q];
        for (int j = 0; j < n; j++) {
            const mlb_real g = a[(size_t)j * lda + r];
            if (g != MLB_C(0.0))
                acc += g * b[(size_t)j * ldb + q];
        }
        dW[(size_t)r * ld + q] = acc;
    }
    BM_SYNC;
#else
    for (int r = 0; r < rows; r++) {
        MLB_G mlb_real *drow = dW + (size_t)r * ld;
        for (int j = 0; j < n; j++) {
            const mlb_real g = a[(size_t)j * lda + r];
            if (g == MLB_C(0.0))
                continue;
            MLB_G const mlb_real *bj = b + (size_t)j * ldb;
            for (int q = 0; q < cols; q++)
                drow[q] += g * bj[q];
        }
    }
#endif
}

BM_API void bm_item_sum(MLB_G const mlb_real *a, int lda, int n, int rows, MLB_G mlb_real *out) {
#if BM_LANES > 1
    BM_FOR(r, rows) {
        mlb_real acc = out[r];
        for (int j = 0; j < n; j++)
            acc += a[(size_t)j * lda + r];
        out[r] = acc;
    }
    BM_SYNC;
#else
    for (int j = 0; j < n; j++)
        for (int r = 0; r < rows; r++)
            out[r] += a[(size_t)j * lda + r];
#endif
}

/* out may alias v: every lane reads v for the moments before any writes. */
BM_API mlb_real bm_layernorm(MLB_G const mlb_real *v, int n, MLB_G const mlb_tensor *gain,
                             MLB_G const mlb_tensor *bias, MLB_G mlb_real *xhat, MLB_G mlb_real *out) {
    mlb_real mean = MLB_C(0.0), var = MLB_C(0.0);
    for (int i = 0; i < n; i++)
        mean += v[i];
    mean /= n;
    for (int i = 0; i < n; i++)
        var += (v[i] - mean) * (v[i] - mean);
    var /= n; /* biased, as PyTorch's LayerNorm */
    mlb_real inv = MLB_C(1.0) / bm_sqrt(var + MLB_C(1e-5));
    BM_SYNC;
    BM_FOR(i, n) {
        xhat[i] = (v[i] - mean) * inv;
        out[i] = xhat[i] * gain[i] + bias[i];
    }
    BM_SYNC;
    return inv;
}

BM_API void bm_layernorm_bwd(MLB_G const mlb_real *xhat, mlb_real inv, int n, MLB_G const mlb_tensor *gain,
                             MLB_G const mlb_real *dout, MLB_G mlb_real *dv, MLB_G mlb_real *dgain,
                             MLB_G mlb_real *dbias, MLB_G mlb_real *work) {
    MLB_G mlb_real *dxh = work;
    BM_FOR(i, n) {
        dxh[i] = dout[i] * gain[i];
        if (dgain)
            dgain[i] += dout[i] * xhat[i];
        if (dbias)
            dbias[i] += dout[i];
    }
    BM_SYNC;
    mlb_real m1 = MLB_C(0.0), m2 = MLB_C(0.0);
    for (int i = 0; i < n; i++) {
        m1 += dxh[i];
        m2 += dxh[i] * xhat[i];
    }
    m1 /= n;
    m2 /= n;
    if (dv)
        BM_FOR(i, n)
            dv[i] += inv * (dxh[i] - m1 - xhat[i] * m2);
    BM_SYNC;
}

BM_API void bm_softmax(MLB_G mlb_real *v, int n) {
    mlb_real mx = v[0];
    for (int i = 1; i < n; i++)
        mx = v[i] > mx ? v[i] : mx;
    BM_SYNC;
    BM_FOR(i, n)
        v[i] = bm_exp(v[i] - mx);
    BM_SYNC;
    mlb_real sum = MLB_C(0.0);
    for (int i = 0; i < n; i++)
        sum += v[i];
    BM_SYNC;
    BM_FOR(i, n)
        v[i] /= sum;
    BM_SYNC;
}

/* dz may alias da. */
BM_API void bm_softmax_bwd(MLB_G const mlb_real *a, MLB_G const mlb_real *da, int n, MLB_G mlb_real *dz) {
    mlb_real dot = MLB_C(0.0);
    for (int i = 0; i < n; i++)
        dot += a[i] * da[i];
    BM_SYNC;
    BM_FOR(i, n)
        dz[i] = a[i] * (da[i] - dot);
    BM_SYNC;
}

BM_API void bm_zero(MLB_G mlb_real *v, size_t n) {
    BM_FOR(i, n)
        v[i] = MLB_C(0.0);
    BM_SYNC;
}

BM_API void bm_copy(MLB_G mlb_real *dst, MLB_G const mlb_real *src, size_t n) {
    BM_FOR(i, n)
        dst[i] = src[i];
    BM_SYNC;
}

#endif /* MOELAT_BACKWARD_MATH_C */
