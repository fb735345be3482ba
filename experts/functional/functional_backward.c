/* The functional expert and its exact adjoint, written once for the host
 * in float64 ("moelat.backward.host/1") and the device in float32 (the
 * same text as OpenCL C after moelat/backward_portable.h:
 * "moelat.backward.cl/1"). The forward is functional_host_cell's function;
 * the backward recomputes it per cell, keeping every edge's
 * intermediates, then reverses it. */
#ifndef __OPENCL_VERSION__
#include <math.h>

#include "backward_math.h"
#include "cnf_backward.h"
#include "functional_expert.h"
#endif

typedef struct fn_fwd {
    MLB_G mlb_real *zmc;      /* count x hd: message layer 0 before GELU */
    MLB_G mlb_real *cdf;      /* count x hd: GELU's Phi of zmc (GELU = zmc Phi) */
    MLB_G mlb_real *hid;      /* count x hd: GELU(zmc), message layer 2's input */
    MLB_G mlb_real *msg;      /* count x md: m_j */
    MLB_G mlb_real *ta;       /* count x md: tanh of attention layer 0 */
    MLB_G mlb_real *a;        /* count: softmax of e_j */
    MLB_G mlb_real *act, *mean;     /* S */
    MLB_G mlb_real *xa;       /* 2S: [x, act] */
    MLB_G mlb_real *zg, *hg;  /* S/2 */
    MLB_G mlb_real *gl; /* 1: the gate's logit (the backward reuses it for its adjoint) */
    mlb_real g;
    MLB_G mlb_real *M;        /* md */
    MLB_G mlb_real *xu;       /* S + md + E: [x, M, ext] */
    MLB_G mlb_real *xu2;      /* S + md + E: [rr x, M, ext] */
    MLB_G mlb_real *z, *sr, *tc, *gnn, *cnf; /* S */
    MLB_G mlb_real *rin;      /* 2S: [(1 - g) gnn, g cnf] */
    MLB_G mlb_real *pre, *xhat, *y; /* S: before the norm, normalised, after it */
    mlb_real inv;
    MLB_G mlb_real *px;       /* hd: message layer 0's x columns and bias, once per cell */
    MLB_G mlb_real *pa;       /* md: attention layer 0's x columns and bias */
    MLB_G mlb_real *work;     /* 2S + hd: per-edge inputs; then the CNF's scratch */
} fn_fwd;

static size_t fn_work_doubles(const moelat_expert_dims *d) {
    size_t hd = (size_t)HD(d), md = (size_t)MD(d);
    size_t edge = 2 * (hd + md + hd + md); /* hid, dta, dhid and the sums of the last two */
    size_t cnf = cnf_grad_doubles(d->state_size, ODE_H(d), d->cnf_steps);
    return edge > cnf ? edge : cnf;
}

/* The per-edge arrays of the forward, for n edges (with lanes, each
 * edge's rows its lane's). The backward reuses them for the edges'
 * adjoints (fn_bwd_edges). */
static void fn_layout_edges(const moelat_expert_dims *d, int n, fn_fwd *w, MLB_G mlb_real **at) {
    int hd = HD(d), md = MD(d);
    w->zmc = bm_take(at, (size_t)n * hd);
    w->cdf = bm_take(at, (size_t)n * hd);
    w->hid = bm_take(at, (size_t)n * hd);
    w->msg = bm_take(at, (size_t)n * md);
    w->ta = bm_take(at, (size_t)n * md);
    w->a = bm_take(at, n);
}

/* The per-cell arrays of the forward. */
static void fn_layout_cell(const moelat_expert_dims *d, fn_fwd *w, MLB_G mlb_real **at) {
    int S = d->state_size, E = d->ext_size, hd = HD(d), md = MD(d), U = S + md + E;
    w->act = bm_take(at, S);
    w->mean = bm_take(at, S);
    w->xa = bm_take(at, 2 * (size_t)S);
    w->zg = bm_take(at, S / 2);
    w->hg = bm_take(at, S / 2);
    w->gl = bm_take(at, 1);
    w->M = bm_take(at, md);
    w->xu = bm_take(at, U);
    w->xu2 = bm_take(at, U);
    w->z = bm_take(at, S);
    w->sr = bm_take(at, S);
    w->tc = bm_take(at, S);
    w->gnn = bm_take(at, S);
    w->cnf = bm_take(at, S);
    w->rin = bm_take(at, 2 * (size_t)S);
    w->pre = bm_take(at, S);
    w->xhat = bm_take(at, S);
    w->y = bm_take(at, S);
    w->px = bm_take(at, hd);
    w->pa = bm_take(at, md);
    w->work = bm_take(at, fn_work_doubles(d));
}

/* act = mean_j |n_j| and mean = mean_j n_j of c's neighbours. */
static void fn_fwd_means(const moelat_grad_cell *c, fn_fwd *w) {
    int S = c->dims->state_size, n = c->count;
    bm_zero(w->act, (size_t)S);
    bm_zero(w->mean, (size_t)S);
#if BM_LANES > 1
    BM_FOR(s, S) /* each value's sums in neighbour order */
        for (int j = 0; j < n; j++) {
            mlb_real v = c->neighbours[(size_t)j * S + s];
            w->act[s] += fabs(v);
            w->mean[s] += v;
        }
#else
    for (int j = 0; j < n; j++)
        for (int s = 0; s < S; s++) {
            mlb_real v = c->neighbours[(size_t)j * S + s];
            w->act[s] += fabs(v);
            w->mean[s] += v;
        }
#endif
    BM_FOR(s, S) {
        w->act[s] /= n;
        w->mean[s] /= n;
    }
    BM_SYNC;
}

/* From act: the gate g; and the edge layers' x columns with their biases,
 * the same for every edge of the cell (px, pa). */
static void fn_fwd_gate(const moelat_grad_cell *c, fn_fwd *w) {
    const moelat_expert_dims *d = c->dims;
    MLB_G const mlb_real *const *t = c->tensors;
    int S = d->state_size, hd = HD(d), md = MD(d);
    MLB_G const mlb_real *x = c->x;
    bm_copy(w->xa, x, (size_t)S);
    bm_copy(w->xa + S, w->act, (size_t)S);
    bm_dense(t[F_G0_W], t[F_G0_B], w->xa, 2 * S, w->zg, S / 2);
    BM_FOR(i, S / 2)
        w->hg[i] = bm_gelu(w->zg[i]);
    BM_SYNC;
    bm_dense(t[F_G2_W], t[F_G2_B], w->hg, S / 2, w->gl, 1);
    w->g = bm_sigmoid(w->gl[0]);

    /* The edge layers read [n_j, x] and [m_j, x]: their x columns and bias
     * are the same for every edge, so they are computed once per cell (as
     * the batched forward does), and per edge only the n_j or m_j columns. */
    bm_dense_part(t[F_MC0_W] + S, 2 * S, t[F_MC0_B], x, S, w->px, hd);
    bm_dense_part(t[F_AT0_W] + md, md + S, t[F_AT0_B], x, S, w->pa, md);
}

/* Every edge's message and attention logit, their softmax and M. With
 * lanes, lane by edge: an edge's layers are one lane's work, its rows of
 * the per-edge arrays that lane's alone. */
static void fn_fwd_edges(const moelat_grad_cell *c, fn_fwd *w) {
    const moelat_expert_dims *d = c->dims;
    MLB_G const mlb_real *const *t = c->tensors;
    int S = d->state_size, hd = HD(d), md = MD(d), n = c->count;
    BM_FOR(j, n) {
        MLB_G mlb_real *zm = w->zmc + (size_t)j * hd, *m = w->msg + (size_t)j * md, *ta = w->ta + (size_t)j * md;
        MLB_G mlb_real *cdf = w->cdf + (size_t)j * hd, *hid = w->hid + (size_t)j * hd;
        if (c->nproj) /* the engine's W n_j of every cell (MOELAT_BACKWARD_CL_PROJECTED) */
            for (int i = 0; i < hd; i++)
                zm[i] = w->px[i] + c->nproj[(size_t)j * hd + i];
        else
            bm_dense_part_1(t[F_MC0_W], 2 * S, w->px, c->neighbours + (size_t)j * S, S, zm, hd);
        for (int i = 0; i < hd; i++) {
            cdf[i] = bm_gelu_cdf(zm[i]);
            hid[i] = zm[i] * cdf[i];
        }
        bm_dense_part_1(t[F_MC2_W], hd, t[F_MC2_B], hid, hd, m, md);
        bm_dense_part_1(t[F_AT0_W], md + S, w->pa, m, md, ta, md);
        for (int i = 0; i < md; i++)
            ta[i] = tanh(ta[i]);
        bm_dense_part_1(t[F_AT2_W], md, t[F_AT2_B], ta, md, &w->a[j], 1);
    }
    BM_SYNC;
    bm_softmax(w->a, n);
    bm_zero(w->M, (size_t)md);
    bm_outer_sum(w->a, 1, w->msg, md, n, 1, md, w->M, md);
}

/* From M: the GRU, the CNF, the result layer; out when not NULL. */
static void fn_fwd_tail(const moelat_grad_cell *c, fn_fwd *w, MLB_G mlb_real *out) {
    const moelat_expert_dims *d = c->dims;
    MLB_G const mlb_real *const *t = c->tensors;
    int S = d->state_size, E = d->ext_size, md = MD(d), U = S + md + E;
    MLB_G const mlb_real *x = c->x;
    bm_copy(w->xu, x, (size_t)S);
    bm_copy(w->xu + S, w->M, (size_t)md);
    BM_FOR(i, E)
        w->xu[S + md + i] = c->ext ? c->ext[i] : MLB_C(0.0);
    BM_SYNC;
    bm_copy(w->xu2, w->xu, (size_t)U);
    bm_dense(t[F_UG_W], t[F_UG_B], w->xu, U, w->z, S);
    bm_dense(t[F_RG_W], t[F_RG_B], w->xu, U, w->sr, S);
    BM_FOR(s, S) {
        w->z[s] = bm_sigmoid(w->z[s]);
        w->sr[s] = bm_sigmoid(w->sr[s]);
        w->xu2[s] = w->sr[s] * x[s];
    }
    BM_SYNC;
    bm_dense(t[F_CN_W], t[F_CN_B], w->xu2, U, w->tc, S);
    BM_FOR(s, S) {
        w->tc[s] = tanh(w->tc[s]);
        w->gnn[s] = (MLB_C(1.0) - w->z[s]) * x[s] + w->z[s] * w->tc[s];
    }
    BM_SYNC;
    /* w->work keeps the CNF's intermediates for cnf_f64_backward. */
    cnf_f64_run(t + F_CNF, S, ODE_H(d), d->cnf_steps, x, w->mean, w->cnf, w->work);
    BM_FOR(s, S) {
        w->rin[s] = (MLB_C(1.0) - w->g) * w->gnn[s];
        w->rin[S + s] = w->g * w->cnf[s];
    }
    BM_SYNC;
    bm_dense(t[F_RP0_W], t[F_RP0_B], w->rin, 2 * S, w->pre, S);
    w->inv = bm_layernorm(w->pre, S, t[F_RP1_G], t[F_RP1_B], w->xhat, w->y);
    if (out)
        BM_FOR(s, S)
            out[s] = bm_gelu(w->y[s]);
    BM_SYNC;
}

static void fn_forward(const moelat_grad_cell *c, fn_fwd *w, MLB_G mlb_real **at, MLB_G mlb_real *out) {
    fn_layout_edges(c->dims, c->count, w, at);
    fn_layout_cell(c->dims, w, at);
    fn_fwd_means(c, w);
    fn_fwd_gate(c, w);
    fn_fwd_edges(c, w);
    fn_fwd_tail(c, w, out);
}

/* The backward's per-cell vectors; dg is dL/dg. */
typedef struct fn_bwd {
    MLB_G mlb_real *dM, *du, *dxu, *dcnf, *dgnn, *dy, *dact, *dmean, *tmp, *drin, *dhg;
    mlb_real dg;
} fn_bwd;

static void fn_bwd_layout_cell(const moelat_expert_dims *d, fn_bwd *b, MLB_G mlb_real **at) {
    int S = d->state_size, E = d->ext_size, md = MD(d), U = S + md + E;
    b->dM = bm_take(at, md);
    b->du = bm_take(at, U);
    b->dxu = bm_take(at, U);
    b->dcnf = bm_take(at, S);
    b->dgnn = bm_take(at, S);
    b->dy = bm_take(at, S);
    b->dact = bm_take(at, S);
    b->dmean = bm_take(at, S);
    b->tmp = bm_take(at, S);
    b->drin = bm_take(at, 2 * (size_t)S);
    b->dhg = bm_take(at, S);
}

/* The reverse of fn_fwd_tail: from dout to dL/dM (b->dM), dL/dg (b->dg),
 * dL/dmean (b->dmean, not yet divided by the count); adds to dx, dext and
 * the per-cell layers' weight gradients. */
static void fn_bwd_tail(const moelat_grad_cell *c, const fn_fwd *wp, fn_bwd *b) {
    const moelat_expert_dims *d = c->dims;
    MLB_G const mlb_real *const *t = c->tensors;
    MLB_G mlb_real *const *dt = c->dtensors;
    int S = d->state_size, E = d->ext_size, md = MD(d), U = S + md + E;
    MLB_G const mlb_real *x = c->x;
    MLB_G mlb_real *dx = c->dx;
    fn_fwd w = *wp;
    MLB_G mlb_real *dM = b->dM, *du = b->du, *dxu = b->dxu, *dcnf = b->dcnf, *dgnn = b->dgnn, *dy = b->dy;
    MLB_G mlb_real *dmean = b->dmean, *tmp = b->tmp, *drin = b->drin;

    /* out = GELU(y), y = LN(pre), pre = RP0 rin */
    BM_FOR(s, S)
        dy[s] = c->dout[s] * bm_gelu_grad(w.y[s]);
    BM_SYNC;
    bm_zero(tmp, S);
    bm_layernorm_bwd(w.xhat, w.inv, S, t[F_RP1_G], dy, tmp, dt[F_RP1_G], dt[F_RP1_B], dgnn);
    bm_zero(drin, 2 * (size_t)S);
    bm_dense_bwd(t[F_RP0_W], w.rin, tmp, 2 * S, S, drin, dt[F_RP0_W], dt[F_RP0_B]);
    mlb_real dg = MLB_C(0.0);
    for (int s = 0; s < S; s++)
        dg += -w.gnn[s] * drin[s] + w.cnf[s] * drin[S + s];
    b->dg = dg;
    BM_FOR(s, S) {
        dgnn[s] = (MLB_C(1.0) - w.g) * drin[s];
        dcnf[s] = w.g * drin[S + s];
    }
    BM_SYNC;

    /* cnf = CNF(x, mean) */
    bm_zero(dmean, S);
    cnf_f64_backward(t + F_CNF, S, ODE_H(d), d->cnf_steps, dcnf, dx, dmean, dt + F_CNF, w.work);

    /* gnn = (1 - z) x + z tanh(cand), cand = CN [rr x, u], z = sig(UG xu), rr = sig(RG xu) */
    MLB_G mlb_real *dcand = tmp, *dz = dcnf, *drr = dy; /* dcnf and dy are spent */
    BM_FOR(s, S) {
        dx[s] += (MLB_C(1.0) - w.z[s]) * dgnn[s];
        dz[s] = dgnn[s] * (w.tc[s] - x[s]) * w.z[s] * (MLB_C(1.0) - w.z[s]);
        dcand[s] = dgnn[s] * w.z[s] * (MLB_C(1.0) - w.tc[s] * w.tc[s]);
    }
    BM_SYNC;
    bm_zero(du, U);
    bm_dense_bwd(t[F_CN_W], w.xu2, dcand, U, S, du, dt[F_CN_W], dt[F_CN_B]);
    BM_FOR(s, S) {
        dx[s] += du[s] * w.sr[s];
        drr[s] = du[s] * x[s] * w.sr[s] * (MLB_C(1.0) - w.sr[s]);
        du[s] = MLB_C(0.0); /* du now collects dL/d[x, M, ext] of xu */
    }
    BM_SYNC;
    bm_zero(dxu, U);
    bm_dense_bwd(t[F_UG_W], w.xu, dz, U, S, dxu, dt[F_UG_W], dt[F_UG_B]);
    bm_dense_bwd(t[F_RG_W], w.xu, drr, U, S, dxu, dt[F_RG_W], dt[F_RG_B]);
    BM_FOR(s, S)
        dx[s] += dxu[s];
    BM_FOR(i, md)
        dM[i] = du[S + i] + dxu[S + i];
    if (c->dext)
        BM_FOR(i, E)
            c->dext[i] += du[S + md + i] + dxu[S + md + i];
    BM_SYNC;
}

/* The reverse of fn_fwd_edges (and of the edge layers' x columns): adds
 * to dx, dneighbours and the edge layers' weight gradients. da and dmsg
 * hold count and count x md values. The edges' adjoints replace their
 * forward rows (dL/d tanh-input over ta, dL/d zmc over hid, and GELU(zmc)
 * moves over cdf): first every edge alone (lane by edge), then each weight
 * element's terms over the edges in edge order (lane by element), the
 * order the host's one loop over edges takes. */
static void fn_bwd_edges(const moelat_grad_cell *c, const fn_fwd *wp, const fn_bwd *b, MLB_G mlb_real *da,
                         MLB_G mlb_real *dmsg) {
    const moelat_expert_dims *d = c->dims;
    MLB_G const mlb_real *const *t = c->tensors;
    MLB_G mlb_real *const *dt = c->dtensors;
    int S = d->state_size, hd = HD(d), md = MD(d), n = c->count;
    MLB_G const mlb_real *x = c->x;
    MLB_G mlb_real *dx = c->dx;
    fn_fwd w = *wp;
    MLB_G const mlb_real *dM = b->dM;
    /* M = sum_j a_j m_j, a = softmax(e) */
    BM_FOR(j, n) {
        mlb_real acc = MLB_C(0.0);
        for (int i = 0; i < md; i++) {
            dmsg[(size_t)j * md + i] = w.a[j] * dM[i];
            acc += dM[i] * w.msg[(size_t)j * md + i];
        }
        da[j] = acc;
    }
    BM_SYNC;
    bm_softmax_bwd(w.a, da, n, da);
#if BM_LANES > 1
    /* e_j = AT2 tanh(AT0 [m_j, x]): AT2's gradients read ta, which the
     * edges' pass below replaces. */
    bm_outer_sum(da, 1, w.ta, md, n, 1, md, dt[F_AT2_W], md);
    bm_item_sum(da, 1, n, 1, dt[F_AT2_B]);
    MLB_G const mlb_real *A2 = t[F_AT2_W], *W2 = t[F_MC2_W];
    BM_FOR(j, n) {
        MLB_G mlb_real *dta = w.ta + (size_t)j * md, *dm = dmsg + (size_t)j * md;
        MLB_G mlb_real *zm = w.zmc + (size_t)j * hd, *cdf = w.cdf + (size_t)j * hd;
        MLB_G mlb_real *dhid = w.hid + (size_t)j * hd; /* GELU(zmc) is in cdf's place from here on */
        const mlb_real g = da[j];
        for (int i = 0; i < md; i++) {
            const mlb_real v = g != MLB_C(0.0) ? MLB_C(0.0) + A2[i] * g : MLB_C(0.0);
            dta[i] = v * (MLB_C(1.0) - dta[i] * dta[i]);
        }
        bm_dense_part_bwd_in_1(t[F_AT0_W], md + S, dta, md, md, dm);
        /* m_j = MC2 GELU(MC0 [n_j, x]) */
        for (int i = 0; i < hd; i++)
            dhid[i] = MLB_C(0.0);
        bm_dense_part_bwd_in_1(W2, hd, dm, hd, md, dhid);
        for (int i = 0; i < hd; i++) {
            const mlb_real v = zm[i], p = cdf[i];
            cdf[i] = v * p;
            dhid[i] *= bm_gelu_grad_cdf(v, p);
        }
        if (c->dproj) /* the engine applies MC0's n_j columns once per neighbour */
            for (int i = 0; i < hd; i++)
                c->dproj[(size_t)j * hd + i] += dhid[i];
        else
            bm_dense_part_bwd_in_1(t[F_MC0_W], 2 * S, dhid, S, hd, c->dneighbours + (size_t)j * S);
    }
    BM_SYNC;
    /* Per element, over the edges: AT0's m columns, MC2, MC0's n columns;
     * and the sums of dta and dhid for the x columns and biases, which
     * are the same for every edge and so are taken once per cell. */
    MLB_G mlb_real *sta = w.work, *shid = sta + md;
    bm_outer_sum(w.ta, md, w.msg, md, n, md, md, dt[F_AT0_W], md + S);
    bm_outer_sum(dmsg, md, w.cdf, hd, n, md, hd, dt[F_MC2_W], hd);
    bm_item_sum(dmsg, md, n, md, dt[F_MC2_B]);
    if (!c->dproj)
        bm_outer_sum(w.hid, hd, c->neighbours, S, n, hd, S, dt[F_MC0_W], 2 * S);
    bm_zero(sta, (size_t)md);
    bm_zero(shid, (size_t)hd);
    bm_item_sum(w.ta, md, n, md, sta);
    bm_item_sum(w.hid, hd, n, hd, shid);
    bm_dense_part_bwd(t[F_AT0_W] + md, md + S, x, sta, S, md, dx, dt[F_AT0_W] + md, dt[F_AT0_B]);
    bm_dense_part_bwd(t[F_MC0_W] + S, 2 * S, x, shid, S, hd, dx, dt[F_MC0_W] + S, dt[F_MC0_B]);
#else /* one lane: edge by edge, each layer's adjoint at once */
    /* Per edge only the m_j and n_j columns; the x columns' and the biases'
     * adjoints take the sums over edges of dta and dhid, once per cell. */
    MLB_G mlb_real *hid = w.work, *dta = hid + hd, *dhid = dta + md, *sta = dhid + hd, *shid = sta + md;
    bm_zero(sta, md);
    bm_zero(shid, hd);
    for (int j = 0; j < n; j++) {
        MLB_G const mlb_real *zm = w.zmc + (size_t)j * hd, *m = w.msg + (size_t)j * md, *ta = w.ta + (size_t)j * md;
        MLB_G mlb_real *dm = dmsg + (size_t)j * md, *dn = c->dneighbours + (size_t)j * S;
        /* e_j = AT2 tanh(AT0 [m_j, x]) */
        bm_zero(dta, md);
        bm_dense_bwd(t[F_AT2_W], ta, &da[j], md, 1, dta, dt[F_AT2_W], dt[F_AT2_B]);
        for (int i = 0; i < md; i++) {
            dta[i] *= MLB_C(1.0) - ta[i] * ta[i];
            sta[i] += dta[i];
        }
        bm_dense_part_bwd(t[F_AT0_W], md + S, m, dta, md, md, dm, dt[F_AT0_W], 0);
        /* m_j = MC2 GELU(MC0 [n_j, x]) */
        MLB_G const mlb_real *cdf = w.cdf + (size_t)j * hd;
        for (int i = 0; i < hd; i++)
            hid[i] = zm[i] * cdf[i];
        bm_zero(dhid, hd);
        bm_dense_bwd(t[F_MC2_W], hid, dm, hd, md, dhid, dt[F_MC2_W], dt[F_MC2_B]);
        for (int i = 0; i < hd; i++) {
            dhid[i] *= bm_gelu_grad_cdf(zm[i], cdf[i]);
            shid[i] += dhid[i];
        }
        if (c->dproj)
            for (int i = 0; i < hd; i++)
                c->dproj[(size_t)j * hd + i] += dhid[i];
        else
            bm_dense_part_bwd(t[F_MC0_W], 2 * S, c->neighbours + (size_t)j * S, dhid, S, hd, dn, dt[F_MC0_W], 0);
    }
    bm_dense_part_bwd(t[F_AT0_W] + md, md + S, x, sta, S, md, dx, dt[F_AT0_W] + md, dt[F_AT0_B]);
    bm_dense_part_bwd(t[F_MC0_W] + S, 2 * S, x, shid, S, hd, dx, dt[F_MC0_W] + S, dt[F_MC0_B]);
#endif
}

/* The reverse of fn_fwd_gate's g from b->dg: adds to dx and the gate's
 * weight gradients; b->dact = dL/dact and b->dmean, both divided by the
 * neighbour count (what every neighbour receives, with act's sign). The
 * forward's gl is spent. */
static void fn_bwd_gate(const moelat_grad_cell *c, const fn_fwd *wp, fn_bwd *b) {
    const moelat_expert_dims *d = c->dims;
    MLB_G const mlb_real *const *t = c->tensors;
    MLB_G mlb_real *const *dt = c->dtensors;
    int S = d->state_size, n = c->count;
    MLB_G mlb_real *dx = c->dx;
    fn_fwd w = *wp;
    MLB_G mlb_real *dhg = b->dhg, *drin = b->drin, *dact = b->dact, *dmean = b->dmean;
    /* g = sig(G2 GELU(G0 [x, act])) */
    MLB_G mlb_real *dgl = w.gl; /* the logit is spent */
    BM_ONE dgl[0] = b->dg * w.g * (MLB_C(1.0) - w.g);
    BM_SYNC;
    bm_zero(dhg, S / 2);
    bm_dense_bwd(t[F_G2_W], w.hg, dgl, S / 2, 1, dhg, dt[F_G2_W], dt[F_G2_B]);
    BM_FOR(i, S / 2)
        dhg[i] *= bm_gelu_grad(w.zg[i]);
    BM_SYNC;
    bm_zero(drin, 2 * (size_t)S);
    bm_dense_bwd(t[F_G0_W], w.xa, dhg, 2 * S, S / 2, drin, dt[F_G0_W], dt[F_G0_B]);
    /* act = mean |n_j| (d|v|/dv = sign v, 0 at 0), mean = mean n_j: the
     * divisions by n once per channel */
    BM_FOR(s, S) {
        dx[s] += drin[s];
        dact[s] = drin[S + s];
        dact[s] /= n;
        dmean[s] /= n;
    }
    BM_SYNC;
}

static int fn_backward_cell(const moelat_grad_cell *c) {
    const moelat_expert_dims *d = c->dims;
    int S = d->state_size, md = MD(d), n = c->count;
    MLB_G mlb_real *at = c->scratch;
    fn_fwd w;
    fn_forward(c, &w, &at, c->out);
    MLB_G mlb_real *da = bm_take(&at, n), *dmsg = bm_take(&at, (size_t)n * md);
    fn_bwd b;
    fn_bwd_layout_cell(d, &b, &at);
    fn_bwd_tail(c, &w, &b);
    fn_bwd_edges(c, &w, &b, da, dmsg);
    fn_bwd_gate(c, &w, &b);
    if (c->dabs) { /* the engine adds them to every neighbour's adjoint */
        BM_FOR(s, S) {
            c->dabs[s] += b.dact[s];
            c->dmean[s] += b.dmean[s];
        }
        BM_SYNC;
        return MOELAT_EXPERT_OK;
    }
    BM_FOR(j, n) { /* lane by neighbour */
        MLB_G const mlb_real *nb = c->neighbours + (size_t)j * S;
        MLB_G mlb_real *dn = c->dneighbours + (size_t)j * S;
        for (int s = 0; s < S; s++) {
            mlb_real sg = nb[s] > 0 ? MLB_C(1.0) : (nb[s] < 0 ? -MLB_C(1.0) : MLB_C(0.0));
            dn[s] += b.dact[s] * sg + b.dmean[s];
        }
    }
    BM_SYNC;
    return MOELAT_EXPERT_OK;
}

#ifndef __OPENCL_VERSION__
static size_t fn_fwd_doubles(const moelat_expert_dims *d, int n) {
    size_t S = (size_t)d->state_size, E = (size_t)d->ext_size;
    size_t hd = (size_t)HD(d), md = (size_t)MD(d);
    return (size_t)n * (3 * hd + 2 * md + 1) + 2 * S + 2 * S + S + 1 + md + 2 * (S + md + E) +
           5 * S + 2 * S + 3 * S + hd + md;
}

static size_t fn_scratch_doubles(const moelat_expert_dims *d, int max_neighbours) {
    size_t S = (size_t)d->state_size, E = (size_t)d->ext_size, md = (size_t)MD(d);
    /* backward: da, dmsg (count x md), dM, du, dxu, dcnf, dgnn, drin, dy, dact, dmean, dxa, dhg */
    size_t bwd = (size_t)max_neighbours * (1 + md) + md + 2 * (S + md + E) + 6 * S + 2 * S + S;
    return fn_fwd_doubles(d, max_neighbours) + fn_work_doubles(d) + bwd;
}

static int fn_host_cell_f64(const moelat_grad_cell *c) {
    MLB_G mlb_real *at = c->scratch;
    fn_fwd w;
    fn_forward(c, &w, &at, c->out);
    return MOELAT_EXPERT_OK;
}

static int fn_grad_validate(const moelat_expert_dims *d, char *err, size_t errlen) {
    return cnf_grad_validate(d->cnf_mode, err, errlen);
}

static const moelat_backward_host g_backward = {
    .struct_size = sizeof(moelat_backward_host),
    .validate = fn_grad_validate,
    .scratch_doubles = fn_scratch_doubles,
    .host_cell_f64 = fn_host_cell_f64,
    .backward_cell = fn_backward_cell,
};

const moelat_backward_host *functional_backward_host(void) { return &g_backward; }

/* The same backward_cell as OpenCL C: backward_math, the CNF and this file. */
extern const char *const functional_bwd_cl_parts[];

/* The message layer's n_j columns: MC0 reads [n_j, x]. */
static size_t fn_proj_rows(const moelat_expert_dims *d) { return (size_t)HD(d); }

static const moelat_backward_cl g_backward_cl = {
    .struct_size = sizeof(moelat_backward_cl),
    .flags = MOELAT_BACKWARD_CL_COOPERATIVE | MOELAT_BACKWARD_CL_PROJECTED,
    .source_parts = functional_bwd_cl_parts,
    .backward_fn = "fn_backward_cell",
    .scratch_floats = fn_scratch_doubles,
    .proj_tensor = F_MC0_W,
    .proj_col = 0,
    .proj_rows = fn_proj_rows,
};

const moelat_backward_cl *functional_backward_cl(void) { return &g_backward_cl; }
#endif
