/* The CNF block of MODEL.md: its forward, written once, and its exact
 * adjoint. The forward serves three instantiations: the float path's
 * cnf_host_run (cnf_host.c includes this file with
 * MLB_HOST_F32_TENSORS and CNF_FORWARD_ONLY: float tensors, double
 * arithmetic, both modes), the gradient's float64 cnf_f64_run and, as
 * OpenCL C, the device backward's (moelat/backward_portable.h). */
#ifndef __OPENCL_VERSION__
#include "cnf_backward.h"

#include <math.h>
#include <stdio.h>

#include "backward_math.h"

#ifndef CNF_FORWARD_ONLY
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
#endif

/* ---- the forward ---- */

/* Intermediates of one evaluation of f(t, v), kept for its adjoint: the
 * forward keeps one block per step, so the backward recomputes nothing. */
typedef struct cnf_fwd {
    MLB_G mlb_real *in, *xin;  /* [v, m] and its normalised values: 2S each */
    MLB_G mlb_real *a0, *h, *c0;  /* H: layer 0, its GELU, GELU's Phi */
    MLB_G mlb_real *a3, *h2, *c3; /* H/2: the same for layer 3 */
    MLB_G mlb_real *pre, *xout;/* S */
    MLB_G mlb_real *inv;       /* 2: the input and output norms' 1/sigma */
} cnf_fwd;

static size_t fwd_doubles(int S, int H) { return (size_t)(6 * S + 3 * H + 3 * (H / 2) + 2); }

/* Step k's block of intermediates. */
static void fwd_block(cnf_fwd *w, int S, int H, MLB_G mlb_real *scratch, int k) {
    MLB_G mlb_real *at = scratch + (size_t)k * fwd_doubles(S, H);
    w->in = bm_take(&at, 2 * (size_t)S);
    w->xin = bm_take(&at, 2 * (size_t)S);
    w->a0 = bm_take(&at, H);
    w->h = bm_take(&at, H);
    w->c0 = bm_take(&at, H);
    w->a3 = bm_take(&at, H / 2);
    w->h2 = bm_take(&at, H / 2);
    w->c3 = bm_take(&at, H / 2);
    w->pre = bm_take(&at, S);
    w->xout = bm_take(&at, S);
    w->inv = bm_take(&at, 2);
}

/* h = GELU(a) over n values. For the adjoint as a Phi(a) with Phi kept in
 * c (the same value as bm_gelu: the halving is exact), so that it needs no
 * second erf; the forward alone takes bm_gelu itself. */
static void cnf_gelu(MLB_G const mlb_real *a, MLB_G mlb_real *c, MLB_G mlb_real *h, int n) {
    BM_FOR(i, n) {
#ifdef CNF_FORWARD_ONLY
        (void)c;
        h[i] = bm_gelu(a[i]);
#else
        c[i] = bm_gelu_cdf(a[i]);
        h[i] = a[i] * c[i];
#endif
    }
    BM_SYNC;
}

/* f(time, v) into f (S), keeping intermediates in w. */
static void cnf_f(MLB_G const mlb_tensor *const *t, int S, int H, mlb_real time, MLB_G const mlb_real *v,
                  MLB_G const mlb_real *m, MLB_G mlb_real *f, const cnf_fwd *w) {
    bm_copy(w->in, v, (size_t)S);
    bm_copy(w->in + S, m, (size_t)S);
    const mlb_real inv_in = bm_layernorm(w->in, 2 * S, t[CNF_IN_G], t[CNF_IN_B], w->xin, w->in);
    bm_dense(t[CNF_W0], t[CNF_B0], w->in, 2 * S, w->a0, H);
    cnf_gelu(w->a0, w->c0, w->h, H);
    bm_dense(t[CNF_W3], t[CNF_B3], w->h, H, w->a3, H / 2);
    cnf_gelu(w->a3, w->c3, w->h2, H / 2);
    bm_dense(t[CNF_W5], t[CNF_B5], w->h2, H / 2, w->pre, S);
    /* pad_S(T t): the time embedding fills the first floor(H/4) entries. */
    BM_FOR(i, H / 4)
        w->pre[i] += t[CNF_TIME_W][i] * time;
    BM_SYNC;
    const mlb_real inv_out = bm_layernorm(w->pre, S, t[CNF_OUT_G], t[CNF_OUT_B], w->xout, f);
    BM_ONE {
        w->inv[0] = inv_in;
        w->inv[1] = inv_out;
    }
    mlb_real damping = bm_fabs(t[CNF_GAMMA][0]);
    BM_FOR(i, S)
        f[i] -= damping * v[i];
    BM_SYNC;
}

static mlb_real cnf_clamp(mlb_real v, mlb_real lo, mlb_real hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* The K steps from v_0 = v[0..S) with neighbour mean m: v_{k+1} = v_k +
 * dt_k f(k / K, v_k). keep: v holds v_0 .. v_K and blocks has one block of
 * intermediates per step (for the adjoint); else v is updated in place and
 * one block serves every evaluation. mode 1 (lipschitz, not with keep)
 * takes dt_k from a finite difference of f along eps_s = 1e-4 (-1)^s, with
 * ve and fe (S each) as its work; mode 0 (euler) dt_k = 1/K. f holds S. */
static void cnf_steps(MLB_G const mlb_tensor *const *t, int S, int H, int K, int mode, int keep,
                      MLB_G mlb_real *v, MLB_G const mlb_real *m, MLB_G mlb_real *f, MLB_G mlb_real *ve,
                      MLB_G mlb_real *fe, MLB_G mlb_real *blocks) {
    for (int k = 0; k < K; k++) {
        cnf_fwd w;
        fwd_block(&w, S, H, blocks, keep ? k : 0);
        MLB_G mlb_real *vk = keep ? v + (size_t)k * S : v, *vn = keep ? vk + S : v;
        mlb_real time = (mlb_real)k / K;
        cnf_f(t, S, H, time, vk, m, f, &w);
        mlb_real dt = MLB_C(1.0) / K;
        if (mode == 1) {
            BM_FOR(s, S)
                ve[s] = vk[s] + ((s % 2) ? -MLB_C(1e-4) : MLB_C(1e-4));
            BM_SYNC;
            cnf_f(t, S, H, time, ve, m, fe, &w);
            mlb_real num = MLB_C(0.0);
            for (int s = 0; s < S; s++)
                num += (fe[s] - f[s]) * (fe[s] - f[s]);
            mlb_real lk = bm_sqrt(num) / (MLB_C(1e-4) * bm_sqrt((mlb_real)S) + MLB_C(1e-8));
            mlb_real lambda = cnf_clamp(t[CNF_LAMBDA][0], MLB_C(0.1), MLB_C(1.0));
            dt = cnf_clamp(lambda / (lk + MLB_C(1e-6)), MLB_C(0.001), MLB_C(0.5));
        }
        BM_FOR(s, S)
            vn[s] = vk[s] + dt * f[s];
        BM_SYNC;
    }
}

#ifndef CNF_FORWARD_ONLY
/* ---- the adjoint (euler) ---- */

static size_t bwd_work_doubles(int S, int H) { return (size_t)(2 * S + H + H / 2 + S + 4 * S); }

/* Scratch: K forward blocks, v_0 .. v_K, f, the adjoint's work, dv, df. */
size_t cnf_grad_doubles(int S, int H, int K) {
    return (size_t)K * fwd_doubles(S, H) + (size_t)(K + 1) * S + (size_t)S + bwd_work_doubles(S, H) +
           2 * (size_t)S;
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
    mlb_real damping = bm_fabs(gamma), dv_dot = MLB_C(0.0);
    for (int i = 0; i < S; i++)
        dv_dot += df[i] * v[i];
    BM_FOR(i, S)
        dv[i] -= damping * df[i];
    /* d|gamma| / d gamma = sign(gamma) (0 at 0). */
    BM_ONE dt[CNF_GAMMA][0] -= (gamma > 0 ? MLB_C(1.0) : (gamma < 0 ? -MLB_C(1.0) : MLB_C(0.0))) * dv_dot;
    BM_SYNC;
    bm_zero(dpre, (size_t)S);
    bm_layernorm_bwd(w->xout, w->inv[1], S, t[CNF_OUT_G], df, dpre, dt[CNF_OUT_G], dt[CNF_OUT_B], lnw);
    BM_FOR(i, H / 4)
        dt[CNF_TIME_W][i] += dpre[i] * time;
    BM_SYNC;
    bm_zero(dh2, (size_t)(H / 2));
    bm_dense_bwd(t[CNF_W5], w->h2, dpre, H / 2, S, dh2, dt[CNF_W5], dt[CNF_B5]);
    BM_FOR(i, H / 2)
        dh2[i] *= bm_gelu_grad_cdf(w->a3[i], w->c3[i]);
    BM_SYNC;
    bm_zero(dh, (size_t)H);
    bm_dense_bwd(t[CNF_W3], w->h, dh2, H, H / 2, dh, dt[CNF_W3], dt[CNF_B3]);
    BM_FOR(i, H)
        dh[i] *= bm_gelu_grad_cdf(w->a0[i], w->c0[i]);
    BM_SYNC;
    bm_zero(din, 2 * (size_t)S);
    bm_dense_bwd(t[CNF_W0], w->in, dh, 2 * S, H, din, dt[CNF_W0], dt[CNF_B0]);
    /* din is dL/d LN_in(...): back through the input norm into [v, m]. */
    bm_zero(dc, 2 * (size_t)S);
    bm_layernorm_bwd(w->xin, w->inv[0], 2 * S, t[CNF_IN_G], din, dc, dt[CNF_IN_G], dt[CNF_IN_B], lnw);
    BM_FOR(i, S) {
        dv[i] += dc[i];
        dm[i] += dc[S + i];
    }
    BM_SYNC;
}

/* The states v_0 .. v_K after the K forward blocks. */
static MLB_G mlb_real *states_of(MLB_G mlb_real *scratch, int S, int H, int K) {
    return scratch + (size_t)K * fwd_doubles(S, H);
}

void cnf_f64_run(MLB_G const mlb_real *const *t, int S, int H, int K, MLB_G const mlb_real *x, MLB_G const mlb_real *m,
                 MLB_G mlb_real *out, MLB_G mlb_real *scratch) {
    MLB_G mlb_real *v = states_of(scratch, S, H, K), *f = v + (size_t)(K + 1) * S;
    bm_copy(v, x, (size_t)S);
    cnf_steps(t, S, H, K, 0, 1, v, m, f, 0, 0, scratch);
    bm_copy(out, v + (size_t)K * S, (size_t)S);
}

void cnf_f64_backward(MLB_G const mlb_real *const *t, int S, int H, int K, MLB_G const mlb_real *dout,
                      MLB_G mlb_real *dx, MLB_G mlb_real *dm, MLB_G mlb_real *const *dt, MLB_G mlb_real *scratch) {
    MLB_G mlb_real *v = states_of(scratch, S, H, K);
    MLB_G mlb_real *work = v + (size_t)(K + 2) * S; /* after v_0 .. v_K and f */
    MLB_G mlb_real *dv = work + bwd_work_doubles(S, H), *df = dv + S;
    const mlb_real dt_k = MLB_C(1.0) / K;
    /* v_{k+1} = v_k + dt f(t_k, v_k): dv_k = dv_{k+1} + dt J_k^T dv_{k+1}. */
    bm_copy(dv, dout, (size_t)S);
    for (int k = K - 1; k >= 0; k--) {
        cnf_fwd w;
        fwd_block(&w, S, H, scratch, k);
        BM_FOR(s, S)
            df[s] = dt_k * dv[s];
        BM_SYNC;
        cnf_f_bwd(t, dt, S, H, (mlb_real)k / K, v + (size_t)k * S, &w, df, dv, dm, work);
    }
    BM_FOR(s, S)
        dx[s] += dv[s];
    BM_SYNC;
}
#endif /* CNF_FORWARD_ONLY */
