/* The local expert's exact adjoint, written once for the host in float64
 * (the "moelat.backward.host/1" extension) and the device in float32 (the
 * same text as OpenCL C after moelat/backward_portable.h:
 * "moelat.backward.cl/1"). The forward is local_forward.h's, the text
 * host_cell runs in float; the backward recomputes it per cell, then
 * reverses it. */
#ifndef __OPENCL_VERSION__
#include "backward_math.h"
#include "local_expert.h"
#include "local_forward.h"
#endif

static int local_backward_cell(const moelat_grad_cell *c) {
    const moelat_expert_dims *d = c->dims;
    MLB_G const mlb_real *const *t = c->tensors;
    MLB_G mlb_real *const *dt = c->dtensors;
    int S = d->state_size, h1 = H1(d), h2 = H2(d), ph = PH(d), n = c->count;
    MLB_G const mlb_real *x = c->x, *g = c->dout;
    MLB_G mlb_real *at = c->scratch;
    local_fwd w;
    local_forward(d, t, x, c->neighbours, n, &w, &at, c->out);
    MLB_G mlb_real *da = bm_take(&at, n), *dagg = bm_take(&at, S), *dh1 = bm_take(&at, h1);
    MLB_G mlb_real *dxf = bm_take(&at, S + h2), *dhid2 = bm_take(&at, ph), *dp = bm_take(&at, S);
    MLB_G mlb_real *lnw = bm_take(&at, S);

    /* out = alpha x + beta q */
    mlb_real alpha = t[L_ALPHA][0], beta = t[L_BETA][0], sa = MLB_C(0.0), sb = MLB_C(0.0);
    for (int s = 0; s < S; s++) {
        sa += g[s] * x[s];
        sb += g[s] * w.q[s];
    }
    BM_FOR(s, S) {
        c->dx[s] += alpha * g[s];
        lnw[s] = beta * g[s]; /* dL/dq, held in lnw until the norm's adjoint */
    }
    BM_ONE {
        dt[L_ALPHA][0] += sa;
        dt[L_BETA][0] += sb;
    }
    BM_SYNC;
    bm_zero(dp, (size_t)S);
    bm_copy(dagg, lnw, (size_t)S); /* dagg as a temporary copy of dL/dq */
    bm_layernorm_bwd(w.xhat, w.inv, S, t[L_NORM_G], dagg, dp, dt[L_NORM_G], dt[L_NORM_B], lnw);

    bm_zero(dhid2, (size_t)ph);
    bm_dense_bwd(t[L_SP2_W], w.hid2, dp, ph, S, dhid2, dt[L_SP2_W], dt[L_SP2_B]);
    BM_FOR(i, ph)
        dhid2[i] *= bm_gelu_grad(w.z2[i]);
    BM_SYNC;
    bm_zero(dxf, (size_t)(S + h2));
    bm_dense_bwd(t[L_SP0_W], w.xf, dhid2, S + h2, ph, dxf, dt[L_SP0_W], dt[L_SP0_B]);
    BM_FOR(s, S)
        c->dx[s] += dxf[s];
    BM_SYNC;
    bm_zero(dh1, (size_t)h1);
    bm_dense_bwd(t[L_AGG2_W], w.h1, dxf + S, h1, h2, dh1, dt[L_AGG2_W], dt[L_AGG2_B]);
    BM_FOR(i, h1)
        dh1[i] *= bm_gelu_grad(w.z1[i]);
    BM_SYNC;
    bm_zero(dagg, (size_t)S);
    bm_dense_bwd(t[L_AGG0_W], w.agg, dh1, S, h1, dagg, dt[L_AGG0_W], dt[L_AGG0_B]);

    /* agg = sum_j a_j n_j; a = softmax(n_j . x) */
    BM_FOR(j, n) { /* lane by neighbour: its row of dneighbours */
        MLB_G const mlb_real *nb = c->neighbours + (size_t)j * S;
        MLB_G mlb_real *dn = c->dneighbours + (size_t)j * S;
        mlb_real acc = MLB_C(0.0);
        for (int s = 0; s < S; s++) {
            dn[s] += w.a[j] * dagg[s];
            acc += dagg[s] * nb[s];
        }
        da[j] = acc;
    }
    BM_SYNC;
    bm_softmax_bwd(w.a, da, n, da);
    BM_FOR(j, n) {
        MLB_G mlb_real *dn = c->dneighbours + (size_t)j * S;
        for (int s = 0; s < S; s++)
            dn[s] += da[j] * x[s];
    }
    BM_SYNC;
    bm_outer_sum(da, 1, c->neighbours, S, n, 1, S, c->dx, S);
    return MOELAT_EXPERT_OK;
}

#ifndef __OPENCL_VERSION__
static size_t local_scratch_doubles(const moelat_expert_dims *d, int max_neighbours) {
    int S = d->state_size;
    /* forward + backward work: da, dagg, dh1, dxf, dhid2, dp, LN work */
    return local_fwd_values(d, max_neighbours) + (size_t)max_neighbours +
           (size_t)(S + H1(d) + S + H2(d) + PH(d) + S + S);
}

static int local_host_cell_f64(const moelat_grad_cell *c) {
    MLB_G mlb_real *at = c->scratch;
    local_fwd w;
    local_forward(c->dims, c->tensors, c->x, c->neighbours, c->count, &w, &at, c->out);
    return MOELAT_EXPERT_OK;
}

static const moelat_backward_host g_backward = {
    .struct_size = sizeof(moelat_backward_host),
    .validate = NULL,
    .scratch_doubles = local_scratch_doubles,
    .host_cell_f64 = local_host_cell_f64,
    .backward_cell = local_backward_cell,
};

const moelat_backward_host *local_backward_host(void) { return &g_backward; }

/* The same backward_cell as OpenCL C: backward_math and this file. */
extern const char *const local_bwd_cl_parts[];

static const moelat_backward_cl g_backward_cl = {
    .struct_size = sizeof(moelat_backward_cl),
    .flags = MOELAT_BACKWARD_CL_COOPERATIVE,
    .source_parts = local_bwd_cl_parts,
    .backward_fn = "local_backward_cell",
    .scratch_floats = local_scratch_doubles,
};

const moelat_backward_cl *local_backward_cl(void) { return &g_backward_cl; }
#endif
