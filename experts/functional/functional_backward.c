/* The functional expert in float64 and its exact adjoint (the
 * "moelat.backward.host/1" extension). The forward is
 * functional_host_cell's function; the backward recomputes it per cell,
 * keeping every edge's intermediates, then reverses it. */
#include <math.h>
#include <string.h>

#include "backward_math.h"
#include "cnf_backward.h"
#include "functional_expert.h"

typedef struct fn_fwd {
    double *zmc;      /* count x hd: message layer 0 before GELU */
    double *msg;      /* count x md: m_j */
    double *ta;       /* count x md: tanh of attention layer 0 */
    double *a;        /* count: softmax of e_j */
    double *act, *mean;     /* S */
    double *xa;       /* 2S: [x, act] */
    double *zg, *hg;  /* S/2 */
    double g;
    double *M;        /* md */
    double *xu;       /* S + md + E: [x, M, ext] */
    double *xu2;      /* S + md + E: [rr x, M, ext] */
    double *z, *sr, *tc, *gnn, *cnf; /* S */
    double *rin;      /* 2S: [(1 - g) gnn, g cnf] */
    double *pre, *xhat, *y; /* S: before the norm, normalised, after it */
    double inv;
    double *work;     /* 2S + hd: per-edge inputs; then the CNF's scratch */
} fn_fwd;

static size_t fn_fwd_doubles(const moelat_expert_dims *d, int n) {
    size_t S = (size_t)d->state_size, E = (size_t)d->ext_size;
    size_t hd = (size_t)HD(d), md = (size_t)MD(d);
    return (size_t)n * (hd + 2 * md + 1) + 2 * S + 2 * S + S + md + 2 * (S + md + E) + 5 * S +
           2 * S + 3 * S;
}

static size_t fn_work_doubles(const moelat_expert_dims *d) {
    size_t S = (size_t)d->state_size, hd = (size_t)HD(d), md = (size_t)MD(d);
    size_t in = 2 * S > S + md ? 2 * S : S + md; /* an edge layer's input */
    size_t edge = in + hd + md + in + hd;         /* inputs and their adjoints */
    size_t cnf = cnf_grad_doubles(d->state_size, ODE_H(d), d->cnf_steps);
    return edge > cnf ? edge : cnf;
}

static size_t fn_scratch_doubles(const moelat_expert_dims *d, int max_neighbours) {
    size_t S = (size_t)d->state_size, E = (size_t)d->ext_size, md = (size_t)MD(d);
    /* backward: da, dmsg (count x md), dM, du, dxu, dcnf, dgnn, drin, dy, dact, dmean, dxa, dhg */
    size_t bwd = (size_t)max_neighbours * (1 + md) + md + 2 * (S + md + E) + 6 * S + 2 * S + S;
    return fn_fwd_doubles(d, max_neighbours) + fn_work_doubles(d) + bwd;
}

static void fn_forward(const moelat_grad_cell *c, fn_fwd *w, double **at, double *out) {
    const moelat_expert_dims *d = c->dims;
    const double *const *t = c->tensors;
    int S = d->state_size, E = d->ext_size, hd = HD(d), md = MD(d), n = c->count, U = S + md + E;
    const double *x = c->x;
    w->zmc = bm_take(at, (size_t)n * hd);
    w->msg = bm_take(at, (size_t)n * md);
    w->ta = bm_take(at, (size_t)n * md);
    w->a = bm_take(at, n);
    w->act = bm_take(at, S);
    w->mean = bm_take(at, S);
    w->xa = bm_take(at, 2 * (size_t)S);
    w->zg = bm_take(at, S / 2);
    w->hg = bm_take(at, S / 2);
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
    w->work = bm_take(at, fn_work_doubles(d));

    memset(w->act, 0, (size_t)S * sizeof *w->act);
    memset(w->mean, 0, (size_t)S * sizeof *w->mean);
    for (int j = 0; j < n; j++)
        for (int s = 0; s < S; s++) {
            double v = c->neighbours[(size_t)j * S + s];
            w->act[s] += fabs(v);
            w->mean[s] += v;
        }
    for (int s = 0; s < S; s++) {
        w->act[s] /= n;
        w->mean[s] /= n;
    }
    memcpy(w->xa, x, (size_t)S * sizeof *x);
    memcpy(w->xa + S, w->act, (size_t)S * sizeof *x);
    bm_dense(t[F_G0_W], t[F_G0_B], w->xa, 2 * S, w->zg, S / 2);
    for (int i = 0; i < S / 2; i++)
        w->hg[i] = bm_gelu(w->zg[i]);
    double gl;
    bm_dense(t[F_G2_W], t[F_G2_B], w->hg, S / 2, &gl, 1);
    w->g = bm_sigmoid(gl);

    int in_w = 2 * S > S + md ? 2 * S : S + md;
    double *in = w->work, *hid = in + in_w;
    for (int j = 0; j < n; j++) {
        double *zm = w->zmc + (size_t)j * hd, *m = w->msg + (size_t)j * md, *ta = w->ta + (size_t)j * md;
        memcpy(in, c->neighbours + (size_t)j * S, (size_t)S * sizeof *in);
        memcpy(in + S, x, (size_t)S * sizeof *in);
        bm_dense(t[F_MC0_W], t[F_MC0_B], in, 2 * S, zm, hd);
        for (int i = 0; i < hd; i++)
            hid[i] = bm_gelu(zm[i]);
        bm_dense(t[F_MC2_W], t[F_MC2_B], hid, hd, m, md);
        memcpy(in, m, (size_t)md * sizeof *in);
        memcpy(in + md, x, (size_t)S * sizeof *in);
        bm_dense(t[F_AT0_W], t[F_AT0_B], in, md + S, ta, md);
        for (int i = 0; i < md; i++)
            ta[i] = tanh(ta[i]);
        bm_dense(t[F_AT2_W], t[F_AT2_B], ta, md, &w->a[j], 1);
    }
    bm_softmax(w->a, n);
    memset(w->M, 0, (size_t)md * sizeof *w->M);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < md; i++)
            w->M[i] += w->a[j] * w->msg[(size_t)j * md + i];

    memcpy(w->xu, x, (size_t)S * sizeof *x);
    memcpy(w->xu + S, w->M, (size_t)md * sizeof *x);
    for (int i = 0; i < E; i++)
        w->xu[S + md + i] = c->ext ? c->ext[i] : 0.0;
    memcpy(w->xu2, w->xu, (size_t)U * sizeof *x);
    bm_dense(t[F_UG_W], t[F_UG_B], w->xu, U, w->z, S);
    bm_dense(t[F_RG_W], t[F_RG_B], w->xu, U, w->sr, S);
    for (int s = 0; s < S; s++) {
        w->z[s] = bm_sigmoid(w->z[s]);
        w->sr[s] = bm_sigmoid(w->sr[s]);
        w->xu2[s] = w->sr[s] * x[s];
    }
    bm_dense(t[F_CN_W], t[F_CN_B], w->xu2, U, w->tc, S);
    for (int s = 0; s < S; s++) {
        w->tc[s] = tanh(w->tc[s]);
        w->gnn[s] = (1.0 - w->z[s]) * x[s] + w->z[s] * w->tc[s];
    }
    cnf_f64_run(t + F_CNF, S, ODE_H(d), d->cnf_steps, x, w->mean, w->cnf, w->work);
    for (int s = 0; s < S; s++) {
        w->rin[s] = (1.0 - w->g) * w->gnn[s];
        w->rin[S + s] = w->g * w->cnf[s];
    }
    bm_dense(t[F_RP0_W], t[F_RP0_B], w->rin, 2 * S, w->pre, S);
    w->inv = bm_layernorm(w->pre, S, t[F_RP1_G], t[F_RP1_B], w->xhat, w->y);
    if (out)
        for (int s = 0; s < S; s++)
            out[s] = bm_gelu(w->y[s]);
}

static int fn_host_cell_f64(const moelat_grad_cell *c) {
    double *at = c->scratch;
    fn_fwd w;
    fn_forward(c, &w, &at, c->out);
    return MOELAT_EXPERT_OK;
}

static void zero(double *v, size_t n) { memset(v, 0, n * sizeof *v); }

static int fn_backward_cell(const moelat_grad_cell *c) {
    const moelat_expert_dims *d = c->dims;
    const double *const *t = c->tensors;
    double *const *dt = c->dtensors;
    int S = d->state_size, E = d->ext_size, hd = HD(d), md = MD(d), n = c->count, U = S + md + E;
    const double *x = c->x;
    double *dx = c->dx;
    double *at = c->scratch;
    fn_fwd w;
    fn_forward(c, &w, &at, c->out);
    double *da = bm_take(&at, n), *dmsg = bm_take(&at, (size_t)n * md), *dM = bm_take(&at, md);
    double *du = bm_take(&at, U), *dxu = bm_take(&at, U);
    double *dcnf = bm_take(&at, S), *dgnn = bm_take(&at, S), *dy = bm_take(&at, S);
    double *dact = bm_take(&at, S), *dmean = bm_take(&at, S), *tmp = bm_take(&at, S);
    double *drin = bm_take(&at, 2 * (size_t)S), *dhg = bm_take(&at, S);

    /* out = GELU(y), y = LN(pre), pre = RP0 rin */
    for (int s = 0; s < S; s++)
        dy[s] = c->dout[s] * bm_gelu_grad(w.y[s]);
    zero(tmp, S);
    bm_layernorm_bwd(w.xhat, w.inv, S, t[F_RP1_G], dy, tmp, dt[F_RP1_G], dt[F_RP1_B], dgnn);
    zero(drin, 2 * (size_t)S);
    bm_dense_bwd(t[F_RP0_W], w.rin, tmp, 2 * S, S, drin, dt[F_RP0_W], dt[F_RP0_B]);
    double dg = 0.0;
    for (int s = 0; s < S; s++) {
        dgnn[s] = (1.0 - w.g) * drin[s];
        dcnf[s] = w.g * drin[S + s];
        dg += -w.gnn[s] * drin[s] + w.cnf[s] * drin[S + s];
    }

    /* cnf = CNF(x, mean) */
    zero(dmean, S);
    cnf_f64_backward(t + F_CNF, S, ODE_H(d), d->cnf_steps, x, w.mean, dcnf, dx, dmean, dt + F_CNF, w.work);

    /* gnn = (1 - z) x + z tanh(cand), cand = CN [rr x, u], z = sig(UG xu), rr = sig(RG xu) */
    double *dcand = tmp, *dz = dcnf, *drr = dy; /* dcnf and dy are spent */
    for (int s = 0; s < S; s++) {
        dx[s] += (1.0 - w.z[s]) * dgnn[s];
        dz[s] = dgnn[s] * (w.tc[s] - x[s]) * w.z[s] * (1.0 - w.z[s]);
        dcand[s] = dgnn[s] * w.z[s] * (1.0 - w.tc[s] * w.tc[s]);
    }
    zero(du, U);
    bm_dense_bwd(t[F_CN_W], w.xu2, dcand, U, S, du, dt[F_CN_W], dt[F_CN_B]);
    for (int s = 0; s < S; s++) {
        dx[s] += du[s] * w.sr[s];
        drr[s] = du[s] * x[s] * w.sr[s] * (1.0 - w.sr[s]);
        du[s] = 0.0; /* du now collects dL/d[x, M, ext] of xu */
    }
    zero(dxu, U);
    bm_dense_bwd(t[F_UG_W], w.xu, dz, U, S, dxu, dt[F_UG_W], dt[F_UG_B]);
    bm_dense_bwd(t[F_RG_W], w.xu, drr, U, S, dxu, dt[F_RG_W], dt[F_RG_B]);
    for (int s = 0; s < S; s++)
        dx[s] += dxu[s];
    for (int i = 0; i < md; i++)
        dM[i] = du[S + i] + dxu[S + i];
    for (int i = 0; i < E; i++)
        if (c->dext)
            c->dext[i] += du[S + md + i] + dxu[S + md + i];

    /* M = sum_j a_j m_j, a = softmax(e) */
    for (int j = 0; j < n; j++) {
        double acc = 0.0;
        for (int i = 0; i < md; i++) {
            dmsg[(size_t)j * md + i] = w.a[j] * dM[i];
            acc += dM[i] * w.msg[(size_t)j * md + i];
        }
        da[j] = acc;
    }
    bm_softmax_bwd(w.a, da, n, da);
    int in_w = 2 * S > S + md ? 2 * S : S + md;
    double *in = w.work, *hid = in + in_w, *dta = hid + hd, *din = dta + md, *dhid = din + in_w;
    for (int j = 0; j < n; j++) {
        const double *zm = w.zmc + (size_t)j * hd, *m = w.msg + (size_t)j * md, *ta = w.ta + (size_t)j * md;
        double *dm = dmsg + (size_t)j * md, *dn = c->dneighbours + (size_t)j * S;
        /* e_j = AT2 tanh(AT0 [m_j, x]) */
        zero(dta, md);
        bm_dense_bwd(t[F_AT2_W], ta, &da[j], md, 1, dta, dt[F_AT2_W], dt[F_AT2_B]);
        for (int i = 0; i < md; i++)
            dta[i] *= 1.0 - ta[i] * ta[i];
        memcpy(in, m, (size_t)md * sizeof *in);
        memcpy(in + md, x, (size_t)S * sizeof *in);
        zero(din, md + S);
        bm_dense_bwd(t[F_AT0_W], in, dta, md + S, md, din, dt[F_AT0_W], dt[F_AT0_B]);
        for (int i = 0; i < md; i++)
            dm[i] += din[i];
        for (int s = 0; s < S; s++)
            dx[s] += din[md + s];
        /* m_j = MC2 GELU(MC0 [n_j, x]) */
        for (int i = 0; i < hd; i++)
            hid[i] = bm_gelu(zm[i]);
        zero(dhid, hd);
        bm_dense_bwd(t[F_MC2_W], hid, dm, hd, md, dhid, dt[F_MC2_W], dt[F_MC2_B]);
        for (int i = 0; i < hd; i++)
            dhid[i] *= bm_gelu_grad(zm[i]);
        memcpy(in, c->neighbours + (size_t)j * S, (size_t)S * sizeof *in);
        memcpy(in + S, x, (size_t)S * sizeof *in);
        zero(din, 2 * (size_t)S);
        bm_dense_bwd(t[F_MC0_W], in, dhid, 2 * S, hd, din, dt[F_MC0_W], dt[F_MC0_B]);
        for (int s = 0; s < S; s++) {
            dn[s] += din[s];
            dx[s] += din[S + s];
        }
    }

    /* g = sig(G2 GELU(G0 [x, act])) */
    double dgl = dg * w.g * (1.0 - w.g);
    zero(dhg, S / 2);
    bm_dense_bwd(t[F_G2_W], w.hg, &dgl, S / 2, 1, dhg, dt[F_G2_W], dt[F_G2_B]);
    for (int i = 0; i < S / 2; i++)
        dhg[i] *= bm_gelu_grad(w.zg[i]);
    zero(drin, 2 * (size_t)S);
    bm_dense_bwd(t[F_G0_W], w.xa, dhg, 2 * S, S / 2, drin, dt[F_G0_W], dt[F_G0_B]);
    for (int s = 0; s < S; s++) {
        dx[s] += drin[s];
        dact[s] = drin[S + s];
    }
    /* act = mean |n_j| (d|v|/dv = sign v, 0 at 0), mean = mean n_j */
    for (int j = 0; j < n; j++) {
        const double *nb = c->neighbours + (size_t)j * S;
        double *dn = c->dneighbours + (size_t)j * S;
        for (int s = 0; s < S; s++) {
            double sg = nb[s] > 0 ? 1.0 : (nb[s] < 0 ? -1.0 : 0.0);
            dn[s] += (dact[s] * sg + dmean[s]) / n;
        }
    }
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
