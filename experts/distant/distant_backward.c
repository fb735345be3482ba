/* The distant expert in float64 and its exact adjoint (the
 * "moelat.backward.host/1" extension): E_D = CNF(x, mean_j n_j). */
#include <string.h>

#include "cnf_backward.h"
#include "distant_backward.h"

#define ODE_H(d) ((d)->hidden[0])

static size_t ds_scratch_doubles(const moelat_expert_dims *d, int max_neighbours) {
    (void)max_neighbours;
    int S = d->state_size;
    return 2 * (size_t)S + cnf_grad_doubles(S, ODE_H(d), d->cnf_steps);
}

static void band_mean(const moelat_grad_cell *c, double *m) {
    int S = c->dims->state_size;
    memset(m, 0, (size_t)S * sizeof *m);
    for (int j = 0; j < c->count; j++)
        for (int s = 0; s < S; s++)
            m[s] += c->neighbours[(size_t)j * S + s];
    for (int s = 0; s < S; s++)
        m[s] /= c->count;
}

static int ds_host_cell_f64(const moelat_grad_cell *c) {
    const moelat_expert_dims *d = c->dims;
    int S = d->state_size;
    double *m = c->scratch;
    band_mean(c, m);
    cnf_f64_run(c->tensors, S, ODE_H(d), d->cnf_steps, c->x, m, c->out, m + 2 * S);
    return MOELAT_EXPERT_OK;
}

static int ds_backward_cell(const moelat_grad_cell *c) {
    const moelat_expert_dims *d = c->dims;
    int S = d->state_size;
    double *m = c->scratch, *dm = m + S;
    band_mean(c, m);
    if (c->out)
        cnf_f64_run(c->tensors, S, ODE_H(d), d->cnf_steps, c->x, m, c->out, m + 2 * S);
    memset(dm, 0, (size_t)S * sizeof *dm);
    cnf_f64_backward(c->tensors, S, ODE_H(d), d->cnf_steps, c->x, m, c->dout, c->dx, dm, c->dtensors,
                     m + 2 * S);
    /* The mean's adjoint: each neighbour gets dm / count. */
    for (int j = 0; j < c->count; j++)
        for (int s = 0; s < S; s++)
            c->dneighbours[(size_t)j * S + s] += dm[s] / c->count;
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
