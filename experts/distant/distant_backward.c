/* The distant expert's exact adjoint, E_D = CNF(x, mean_j n_j), written
 * once for the host in float64 ("moelat.backward.host/1") and the device
 * in float32 (the same text as OpenCL C after moelat/backward_portable.h:
 * "moelat.backward.cl/1"); its forward is distant_backward.h's. */
#ifndef __OPENCL_VERSION__
#include "cnf_backward.h"
#include "distant_backward.h" /* ds_forward */
#endif

static int ds_backward_cell(const moelat_grad_cell *c) {
    const moelat_expert_dims *d = c->dims;
    int S = d->state_size;
    MLB_G mlb_real *m = c->scratch, *dm = m + S, *out = dm + S, *cnf = out + S;
    ds_forward(d, c->tensors, c->x, c->neighbours, c->count, m, c->out ? c->out : out, cnf);
    bm_zero(dm, (size_t)S);
    cnf_f64_backward(c->tensors, S, ODE_H(d), d->cnf_steps, c->dout, c->dx, dm, c->dtensors, cnf);
    /* The mean's adjoint: each neighbour gets dm / count (divided once). */
    BM_FOR(s, S)
        dm[s] /= c->count;
    BM_SYNC;
    BM_FOR(j, c->count) /* lane by neighbour */
        for (int s = 0; s < S; s++)
            c->dneighbours[(size_t)j * S + s] += dm[s];
    BM_SYNC;
    return MOELAT_EXPERT_OK;
}

#ifndef __OPENCL_VERSION__
static size_t ds_scratch_doubles(const moelat_expert_dims *d, int max_neighbours) {
    (void)max_neighbours;
    int S = d->state_size;
    return 3 * (size_t)S + cnf_grad_doubles(S, ODE_H(d), d->cnf_steps); /* m, dm, out, the CNF's */
}

static int ds_host_cell_f64(const moelat_grad_cell *c) {
    const moelat_expert_dims *d = c->dims;
    MLB_G mlb_real *m = c->scratch;
    ds_forward(d, c->tensors, c->x, c->neighbours, c->count, m, c->out, m + 3 * d->state_size);
    return MOELAT_EXPERT_OK;
}

static int ds_grad_validate(const moelat_expert_dims *d, char *err, size_t errlen) {
    return cnf_grad_validate(d->cnf_mode, err, errlen);
}

static const moelat_backward_host g_backward = {
    .struct_size = sizeof(moelat_backward_host),
    .validate = ds_grad_validate,
    .scratch_doubles = ds_scratch_doubles,
    .host_cell_f64 = ds_host_cell_f64,
    .backward_cell = ds_backward_cell,
};

const moelat_backward_host *distant_backward_host(void) { return &g_backward; }

/* The same backward_cell as OpenCL C: backward_math, the CNF and this file. */
extern const char *const distant_bwd_cl_parts[];

static const moelat_backward_cl g_backward_cl = {
    .struct_size = sizeof(moelat_backward_cl),
    /* CNF(x, mean n_j): n_j only through the mean; written for lanes */
    .flags = MOELAT_BACKWARD_CL_MEAN_ONLY | MOELAT_BACKWARD_CL_COOPERATIVE,
    .source_parts = distant_bwd_cl_parts,
    .backward_fn = "ds_backward_cell",
    .scratch_floats = ds_scratch_doubles,
};

const moelat_backward_cl *distant_backward_cl(void) { return &g_backward_cl; }
#endif
