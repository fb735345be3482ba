/* The local expert's forward (docs/MODEL.md), written once: compiled with
 * the float32 host path (local_expert.c, MLB_HOST_FLOAT32: the per-cell
 * host_cell), the float64 one (local_backward.c: host_cell_f64 and the
 * forward that backward_cell reverses) and, as OpenCL C, the device
 * backward (moelat/backward_portable.h; this file is one of the expert's
 * backward parts). Each unit includes backward_math.h (its instantiation)
 * and local_expert.h first. */
#ifndef MOELAT_LOCAL_FORWARD_H
#define MOELAT_LOCAL_FORWARD_H

/* Forward values the backward reads. */
typedef struct local_fwd {
    MLB_G mlb_real *a;        /* count: attention weights */
    MLB_G mlb_real *agg;      /* S */
    MLB_G mlb_real *z1, *h1;  /* h1 */
    MLB_G mlb_real *f;        /* h2 */
    MLB_G mlb_real *xf;       /* S + h2: [x, f] */
    MLB_G mlb_real *z2, *hid2;/* ph */
    MLB_G mlb_real *p, *xhat, *q; /* S: pre-norm, normalised, LN(p) */
    mlb_real inv;
} local_fwd;

#ifndef __OPENCL_VERSION__
/* Values of scratch local_forward takes for n neighbours. */
static inline size_t local_fwd_values(const moelat_expert_dims *d, int n) {
    int S = d->state_size;
    return (size_t)n + (size_t)(S + 2 * H1(d) + H2(d) + S + H2(d) + 2 * PH(d) + 3 * S);
}
#endif

/* out = alpha x + beta LN(p) for the cell x with its n neighbours (n x S)
 * and tensors t, out may be NULL; the intermediates go to w, in scratch
 * taken from *at (local_fwd_values). */
static void local_forward(const moelat_expert_dims *d, MLB_G const mlb_tensor *const *t, MLB_G const mlb_real *x,
                          MLB_G const mlb_real *nbrs, int n, local_fwd *w, MLB_G mlb_real **at,
                          MLB_G mlb_real *out) {
    int S = d->state_size, h1 = H1(d), h2 = H2(d), ph = PH(d);
    w->a = bm_take(at, n);
    w->agg = bm_take(at, S);
    w->z1 = bm_take(at, h1);
    w->h1 = bm_take(at, h1);
    w->f = bm_take(at, h2);
    w->xf = bm_take(at, S + h2);
    w->z2 = bm_take(at, ph);
    w->hid2 = bm_take(at, ph);
    w->p = bm_take(at, S);
    w->xhat = bm_take(at, S);
    w->q = bm_take(at, S);

    BM_FOR(j, n) {
        MLB_G const mlb_real *nb = nbrs + (size_t)j * S;
        mlb_real dot = MLB_C(0.0);
        for (int s = 0; s < S; s++)
            dot += nb[s] * x[s];
        w->a[j] = dot;
    }
    BM_SYNC;
    bm_softmax(w->a, n);
    bm_zero(w->agg, (size_t)S);
    bm_outer_sum(w->a, 1, nbrs, S, n, 1, S, w->agg, S);
    bm_dense(t[L_AGG0_W], t[L_AGG0_B], w->agg, S, w->z1, h1);
    BM_FOR(i, h1)
        w->h1[i] = bm_gelu(w->z1[i]);
    BM_SYNC;
    bm_dense(t[L_AGG2_W], t[L_AGG2_B], w->h1, h1, w->f, h2);
    bm_copy(w->xf, x, (size_t)S);
    bm_copy(w->xf + S, w->f, (size_t)h2);
    bm_dense(t[L_SP0_W], t[L_SP0_B], w->xf, S + h2, w->z2, ph);
    BM_FOR(i, ph)
        w->hid2[i] = bm_gelu(w->z2[i]);
    BM_SYNC;
    bm_dense(t[L_SP2_W], t[L_SP2_B], w->hid2, ph, w->p, S);
    w->inv = bm_layernorm(w->p, S, t[L_NORM_G], t[L_NORM_B], w->xhat, w->q);
    mlb_real alpha = t[L_ALPHA][0], beta = t[L_BETA][0];
    if (out)
        BM_FOR(s, S)
            out[s] = alpha * x[s] + beta * w->q[s];
    BM_SYNC;
}

#endif
