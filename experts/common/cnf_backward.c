#ifndef __OPENCL_VERSION__
#include "cnf_backward.h"

#include <math.h>
#include <stdio.h>

#include "backward_math.h"

int cnf_grad_validate(int mode, char *err, size_t errlen) {
    if (mode != 0) {
        snprintf(err, errlen,
                 "gradients of CNF mode lipschitz are not available (its step size depends on "
                 "the state through a finite difference); use cnf mode euler");
        return -1;
    }
    return 0;
}
#endif

/* Intermediates of one evaluation of f(t, v), kept for its adjoint. */
typedef struct cnf_fwd {
    MLB_G mlb_real *in, *xin;  /* [v, m] and its normalised values: 2S each */
    MLB_G mlb_real *a0, *h;    /* H */
    MLB_G mlb_real *a3, *h2;   /* H/2 */
    MLB_G mlb_real *pre, *xout;/* S */
    mlb_real inv_in, inv_out;
} cnf_fwd;

static size_t fwd_doubles(int S, int H) { return (size_t)(6 * S + 3 * H); }
static size_t bwd_work_doubles(int S, int H) { return (size_t)(2 * S + H + H / 2 + S + 4 * S); }

size_t cnf_grad_doubles(int S, int H, int K) {
    return fwd_doubles(S, H) + bwd_work_doubles(S, H) + (size_t)(K + 1) * S + 3 * (size_t)S;
}

static void fwd_layout(cnf_fwd *w, int S, int H, MLB_G mlb_real **at) {
    w->in = bm_take(at, 2 * (size_t)S);
    w->xin = bm_take(at, 2 * (size_t)S);
    w->a0 = bm_take(at, H);
    w->h = bm_take(at, H);
    w->a3 = bm_take(at, H / 2);
    w->h2 = bm_take(at, H / 2);
    w->pre = bm_take(at, S);
    w->xout = bm_take(at, S);
}

/* f(time, v) into f (S), keeping intermediates in w. */
static void cnf_f(MLB_G const mlb_real *const *t, int S, int H, mlb_real time, MLB_G const mlb_real *v,
                  MLB_G const mlb_real *m, MLB_G mlb_real *f, cnf_fwd *w) {
    bm_copy(w->in, v, (size_t)S);
    bm_copy(w->in + S, m, (size_t)S);
    w->inv_in = bm_layernorm(w->in, 2 * S, t[CNF_IN_G], t[CNF_IN_B], w->xin, w->in);
    bm_dense(t[CNF_W0], t[CNF_B0], w->in, 2 * S, w->a0, H);
    for (int i = 0; i < H; i++)
        w->h[i] = bm_gelu(w->a0[i]);
    bm_dense(t[CNF_W3], t[CNF_B3], w->h, H, w->a3, H / 2);
    for (int i = 0; i < H / 2; i++)
        w->h2[i] = bm_gelu(w->a3[i]);
    bm_dense(t[CNF_W5], t[CNF_B5], w->h2, H / 2, w->pre, S);
    for (int i = 0; i < H / 4; i++)
        w->pre[i] += t[CNF_TIME_W][i] * time;
    w->inv_out = bm_layernorm(w->pre, S, t[CNF_OUT_G], t[CNF_OUT_B], w->xout, f);
    mlb_real damping = fabs(t[CNF_GAMMA][0]);
    for (int i = 0; i < S; i++)
        f[i] -= damping * v[i];
}

/* Adjoint of cnf_f (w from the forward at the same v) for df. */
static void cnf_f_bwd(MLB_G const mlb_real *const *t, MLB_G mlb_real *const *dt, int S, int H, mlb_real time,
                      MLB_G const mlb_real *v, const cnf_fwd *w, MLB_G const mlb_real *df, MLB_G mlb_real *dv, MLB_G mlb_real *dm,
                      MLB_G mlb_real *work) {
    MLB_G mlb_real *din = work;          /* 2S */
    MLB_G mlb_real *dh = din + 2 * S;    /* H */
    MLB_G mlb_real *dh2 = dh + H;        /* H/2 */
    MLB_G mlb_real *dpre = dh2 + H / 2;  /* S */
    MLB_G mlb_real *lnw = dpre + S;      /* 2S */
    MLB_G mlb_real *dc = lnw + 2 * S;    /* 2S */
    mlb_real gamma = t[CNF_GAMMA][0];
    mlb_real damping = fabs(gamma), dv_dot = MLB_C(0.0);
    for (int i = 0; i < S; i++) {
        dv[i] -= damping * df[i];
        dv_dot += df[i] * v[i];
    }
    /* d|gamma| / d gamma = sign(gamma) (0 at 0). */
    dt[CNF_GAMMA][0] -= (gamma > 0 ? MLB_C(1.0) : (gamma < 0 ? -MLB_C(1.0) : MLB_C(0.0))) * dv_dot;
    bm_zero(dpre, (size_t)S);
    bm_layernorm_bwd(w->xout, w->inv_out, S, t[CNF_OUT_G], df, dpre, dt[CNF_OUT_G], dt[CNF_OUT_B], lnw);
    for (int i = 0; i < H / 4; i++)
        dt[CNF_TIME_W][i] += dpre[i] * time;
    bm_zero(dh2, (size_t)(H / 2));
    bm_dense_bwd(t[CNF_W5], w->h2, dpre, H / 2, S, dh2, dt[CNF_W5], dt[CNF_B5]);
    for (int i = 0; i < H / 2; i++)
        dh2[i] *= bm_gelu_grad(w->a3[i]);
    bm_zero(dh, (size_t)H);
    bm_dense_bwd(t[CNF_W3], w->h, dh2, H, H / 2, dh, dt[CNF_W3], dt[CNF_B3]);
    for (int i = 0; i < H; i++)
        dh[i] *= bm_gelu_grad(w->a0[i]);
    bm_zero(din, 2 * (size_t)S);
    bm_dense_bwd(t[CNF_W0], w->in, dh, 2 * S, H, din, dt[CNF_W0], dt[CNF_B0]);
    /* din is dL/d LN_in(...): back through the input norm into [v, m]. */
    bm_zero(dc, 2 * (size_t)S);
    bm_layernorm_bwd(w->xin, w->inv_in, 2 * S, t[CNF_IN_G], din, dc, dt[CNF_IN_G], dt[CNF_IN_B], lnw);
    for (int i = 0; i < S; i++) {
        dv[i] += dc[i];
        dm[i] += dc[S + i];
    }
}

void cnf_f64_run(MLB_G const mlb_real *const *t, int S, int H, int K, MLB_G const mlb_real *x, MLB_G const mlb_real *m,
                 MLB_G mlb_real *out, MLB_G mlb_real *scratch) {
    MLB_G mlb_real *at = scratch;
    cnf_fwd w;
    fwd_layout(&w, S, H, &at);
    MLB_G mlb_real *f = bm_take(&at, S);
    bm_copy(out, x, (size_t)S);
    for (int k = 0; k < K; k++) {
        cnf_f(t, S, H, (mlb_real)k / K, out, m, f, &w);
        for (int s = 0; s < S; s++)
            out[s] += (MLB_C(1.0) / K) * f[s];
    }
}

void cnf_f64_backward(MLB_G const mlb_real *const *t, int S, int H, int K, MLB_G const mlb_real *x,
                      MLB_G const mlb_real *m, MLB_G const mlb_real *dout, MLB_G mlb_real *dx, MLB_G mlb_real *dm,
                      MLB_G mlb_real *const *dt, MLB_G mlb_real *scratch) {
    MLB_G mlb_real *at = scratch;
    cnf_fwd w;
    fwd_layout(&w, S, H, &at);
    MLB_G mlb_real *work = bm_take(&at, bwd_work_doubles(S, H));
    MLB_G mlb_real *v = bm_take(&at, (size_t)(K + 1) * S); /* v_0 .. v_K */
    MLB_G mlb_real *f = bm_take(&at, S);
    MLB_G mlb_real *dv = bm_take(&at, S), *df = bm_take(&at, S);
    const mlb_real dt_k = MLB_C(1.0) / K;

    bm_copy(v, x, (size_t)S);
    for (int k = 0; k < K; k++) {
        cnf_f(t, S, H, (mlb_real)k / K, v + (size_t)k * S, m, f, &w);
        for (int s = 0; s < S; s++)
            v[(size_t)(k + 1) * S + s] = v[(size_t)k * S + s] + dt_k * f[s];
    }
    /* v_{k+1} = v_k + dt f(t_k, v_k): dv_k = dv_{k+1} + dt J_k^T dv_{k+1}. */
    bm_copy(dv, dout, (size_t)S);
    for (int k = K - 1; k >= 0; k--) {
        MLB_G const mlb_real *vk = v + (size_t)k * S;
        cnf_f(t, S, H, (mlb_real)k / K, vk, m, f, &w); /* intermediates at v_k */
        for (int s = 0; s < S; s++)
            df[s] = dt_k * dv[s];
        cnf_f_bwd(t, dt, S, H, (mlb_real)k / K, vk, &w, df, dv, dm, work);
    }
    for (int s = 0; s < S; s++)
        dx[s] += dv[s];
}
