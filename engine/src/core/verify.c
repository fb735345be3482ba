/* The batch path's sample check: before a lattice enables its device, one
 * device step of its current states is compared with the host path on a
 * sample of cells. It drives the backend through its ops (backend.h) like
 * the scheduler does, but counts nothing in the report and serves no
 * plane delivery; afterwards the host's copy is the current one again. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include"core/lattice_internal.h"
#include "base/log.h"

enum { SAMPLE = 64 };

/* Sample cells of the active planes only: a slab owner's step writes no
 * others. Returns how many. */
static int sample_cells(const moelat_lattice *lat, size_t cells[SAMPLE]) {
    size_t plane = (size_t)lat->X * lat->Y;
    size_t lo = plane * (size_t)lat->active_z0, hi = plane * (size_t)lat->active_z1;
    size_t step = (hi - lo) / (SAMPLE - 2) + 1;
    int n = 0;
    cells[n++] = lo;
    cells[n++] = hi - 1;
    for (size_t i = lo + step / 2; i < hi && n < SAMPLE; i += step)
        cells[n++] = i;
    return n;
}

/* One device step of every chunk into dev (N x S), chunks the device
 * cannot take computed on the host as a real step would. */
static moelat_status device_step(moelat_lattice *lat, float *dev) {
    const ml_backend_ops *ops = lat->backend.ops;
    void *ctx = lat->backend.ctx;
    ml_step st;
    memset(&st, 0, sizeof st);
    st.dev = malloc((size_t)lat->n_chunks * sizeof *st.dev);
    st.host = malloc((size_t)lat->n_chunks * sizeof *st.host);
    st.host_next = lat->next;
    moelat_status s = st.dev && st.host ? ml_res_device_inputs(lat) : ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
    for (int c = 0; c < lat->n_chunks && s == MOELAT_OK; c++)
        st.dev[st.n_dev++] = c;
    if (s == MOELAT_OK)
        s = ops->begin_step(ctx, &st);
    if (s == MOELAT_OK)
        s = ops->enqueue(ctx, &st);
    if (s == MOELAT_OK) {
        moelat_status hs = st.n_host > 0 ? ml_percell_run(lat, st.host, st.n_host, lat->states, lat->next)
                                         : MOELAT_OK;
        s = ops->finish(ctx, &st, hs == MOELAT_OK);
        if (hs != MOELAT_OK)
            s = hs;
    }
    if (s == MOELAT_OK)
        s = ops->planes(ctx, 0, lat->N * (size_t)lat->S, dev, NULL);
    /* The device's current buffer may now hold the check's step: the host
     * copy (current before the check) is the truth again. */
    ml_res_host_wrote_states(lat);
    free(st.dev);
    free(st.host);
    return s;
}

moelat_status ml_verify_sample(moelat_lattice *lat) {
    const int S = lat->S;
    size_t cells[SAMPLE];
    int n = sample_cells(lat, cells);
    float *host = malloc((size_t)n * S * sizeof(float));
    float *dev = malloc(lat->N * (size_t)S * sizeof(float));
    moelat_status st = host && dev ? ml_percell_cells(lat, cells, n, lat->states, host)
                                   : ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
    if (st == MOELAT_OK)
        st = device_step(lat, dev);
    if (st == MOELAT_OK) {
        double tol = lat->cfg.cnf_mode == MOELAT_CNF_LIPSCHITZ ? 1e-2 : 1e-4;
        double worst = 0;
        size_t worst_cell = 0;
        for (int k = 0; k < n; k++)
            for (int s = 0; s < S; s++) {
                double ref = host[(size_t)k * S + s];
                double d = fabs((double)dev[cells[k] * S + s] - ref) / (1.0 + fabs(ref));
                if (!(d <= worst)) {
                    worst = d;
                    worst_cell = cells[k];
                }
            }
        if (!(worst <= tol))
            st = ml_fail(lat, MOELAT_ERR_MISMATCH,
                         "batch path disagrees with the per-cell path on %s: relative difference %.3g at cell %zu "
                         "(tolerance %.0e); batch mode not enabled",
                         lat->device_name, worst, worst_cell, tol);
        else
            ML_INFO("batch", "upgrade check on %d cells: max relative difference %.3g", n, worst);
    }
    free(host);
    free(dev);
    return st;
}
