#include "backward_math.h"

#include <math.h>
#include <string.h>

double bm_gelu(double v) { return 0.5 * v * (1.0 + erf(v * 0.70710678118654752440)); }

double bm_gelu_grad(double v) {
    /* Phi(v) + v phi(v) */
    return 0.5 * (1.0 + erf(v * 0.70710678118654752440)) + v * 0.39894228040143267794 * exp(-0.5 * v * v);
}

double bm_sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }

void bm_dense(const double *W, const double *b, const double *in, int nin, double *out, int nout) {
    for (int o = 0; o < nout; o++) {
        double acc = b ? b[o] : 0.0;
        const double *row = W + (size_t)o * nin;
        for (int i = 0; i < nin; i++)
            acc += row[i] * in[i];
        out[o] = acc;
    }
}

void bm_dense_bwd(const double *W, const double *in, const double *dout, int nin, int nout,
                  double *din, double *dW, double *db) {
    for (int o = 0; o < nout; o++) {
        double g = dout[o];
        if (g == 0.0)
            continue; /* adds nothing anywhere */
        const double *row = W + (size_t)o * nin;
        if (din)
            for (int i = 0; i < nin; i++)
                din[i] += row[i] * g;
        if (dW) {
            double *drow = dW + (size_t)o * nin;
            for (int i = 0; i < nin; i++)
                drow[i] += g * in[i];
        }
        if (db)
            db[o] += g;
    }
}

double bm_layernorm(const double *v, int n, const double *gain, const double *bias, double *xhat,
                    double *out) {
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < n; i++)
        mean += v[i];
    mean /= n;
    for (int i = 0; i < n; i++)
        var += (v[i] - mean) * (v[i] - mean);
    var /= n; /* biased, as PyTorch's LayerNorm */
    double inv = 1.0 / sqrt(var + 1e-5);
    for (int i = 0; i < n; i++) {
        xhat[i] = (v[i] - mean) * inv;
        out[i] = xhat[i] * gain[i] + bias[i];
    }
    return inv;
}

void bm_layernorm_bwd(const double *xhat, double inv, int n, const double *gain, const double *dout,
                      double *dv, double *dgain, double *dbias, double *work) {
    double *dxh = work;
    double m1 = 0.0, m2 = 0.0;
    for (int i = 0; i < n; i++) {
        dxh[i] = dout[i] * gain[i];
        m1 += dxh[i];
        m2 += dxh[i] * xhat[i];
        if (dgain)
            dgain[i] += dout[i] * xhat[i];
        if (dbias)
            dbias[i] += dout[i];
    }
    m1 /= n;
    m2 /= n;
    if (dv)
        for (int i = 0; i < n; i++)
            dv[i] += inv * (dxh[i] - m1 - xhat[i] * m2);
}

void bm_softmax(double *v, int n) {
    double mx = v[0];
    for (int i = 1; i < n; i++)
        mx = v[i] > mx ? v[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        v[i] = exp(v[i] - mx);
        sum += v[i];
    }
    for (int i = 0; i < n; i++)
        v[i] /= sum;
}

void bm_softmax_bwd(const double *a, const double *da, int n, double *dz) {
    double dot = 0.0;
    for (int i = 0; i < n; i++)
        dot += a[i] * da[i];
    for (int i = 0; i < n; i++)
        dz[i] = a[i] * (da[i] - dot);
}
