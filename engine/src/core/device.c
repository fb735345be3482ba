/* The lattice's device, as core sees it: the narrow view its backend gets
 * (backend.h's ml_backend_view), filled from the lattice and kept current
 * here; the calls back into core that the view carries; opening and
 * closing the backend; and the inspection queries that reach the
 * backend's inspect ops. Nothing else hands the lattice to a backend. */
#include <stddef.h>

#include "base/log.h"
#include "core/lattice_internal.h"

/* The view's calls: core's side of a device step. */
static moelat_status view_rechunk(void *core, const int32_t size[3]) {
    moelat_lattice *lat = core;
    return ml_lattice_rechunk(lat, size, lat->active_z0, lat->active_z1);
}

static moelat_status view_host_states(void *core) { return ml_res_host_states(core); }

static moelat_status view_host_expert(void *core, int band, const ml_chunk *c, float *out) {
    moelat_lattice *lat = core;
    return ml_percell_expert_chunk(lat, band, c, lat->states, out);
}

static moelat_status view_nonfinite(void *core, size_t cell, int band) { return ml_fail_nonfinite(core, cell, band); }

void ml_lattice_view_update(moelat_lattice *lat) {
    ml_backend_view *v = &lat->view;
    v->X = lat->X;
    v->Y = lat->Y;
    v->Z = lat->Z;
    v->S = lat->S;
    v->E = lat->E;
    v->N = lat->N;
    v->gate_hidden = lat->gate_hidden;
    v->stencil = &lat->stencil;
    v->halo = moelat_lattice_halo_depth(lat);
    for (int k = 0; k < MOELAT_BANDS; k++) {
        v->expert[k].desc = lat->expert[k].desc;
        v->expert[k].dims = &lat->expert[k].dims;
        v->expert[k].params = &lat->expert[k].params;
    }
    v->gate = &lat->gate;
    v->tuning = &lat->tuning;
    v->tuning_text = lat->cfg.tuning;
    v->device = lat->cfg.device;
    v->queues = lat->cfg.queues;
    v->profile = lat->cfg.profile;
    v->chunks = lat->chunks;
    v->n_chunks = lat->n_chunks;
    for (int a = 0; a < 3; a++)
        v->chunk_size[a] = lat->chunk_size[a];
    v->chunks_fixed = lat->cfg.chunk[0] > 0 && lat->cfg.chunk[1] > 0 && lat->cfg.chunk[2] > 0;
    v->active_z0 = lat->active_z0;
    v->active_z1 = lat->active_z1;
    v->err = lat->err;
    v->err_size = sizeof lat->err;
    v->device_name = lat->device_name;
    v->device_name_size = sizeof lat->device_name;
    v->core = lat;
    v->rechunk = view_rechunk;
    v->host_states = view_host_states;
    v->host_expert = view_host_expert;
    v->nonfinite = view_nonfinite;
}

moelat_status ml_lattice_open_device(moelat_lattice *lat, ml_fallbacks *fb) {
    if (lat->backend.ops)
        return MOELAT_OK;
    ml_lattice_view_update(lat);
    return ml_backend_open(&lat->view, fb, &lat->backend);
}

void ml_lattice_close_device(moelat_lattice *lat) {
    if (!lat->backend.ops)
        return;
    if (lat->grad_detach) /* the gradient engine's device half goes first */
        lat->grad_detach(lat, 0);
    /* Weights only the device holds (its optimizer's) come back first. */
    if (ml_res_host_weights(lat) != MOELAT_OK)
        ML_WARN("device", "closing the device: reading its weights back failed (%s); the host keeps those of "
                "before the last device optimizer step", lat->err);
    ml_backend_close(&lat->backend);
}

static const ml_inspect_ops *inspect_ops(const moelat_lattice *lat) {
    return lat->backend.ops ? lat->backend.ops->inspect : NULL;
}

moelat_status ml_batch_expert_outputs(moelat_lattice *lat, int chunk, float *const out[MOELAT_BANDS],
                                      float *const mean[MOELAT_BANDS], float *const absmean[MOELAT_BANDS],
                                      float *gated) {
    const ml_inspect_ops *in = inspect_ops(lat);
    if (!in)
        return ml_fail(lat, MOELAT_ERR_DEVICE, "batch mode is not enabled");
    moelat_status st = ml_res_device_inputs(lat);
    if (st != MOELAT_OK)
        return st;
    return in->expert_outputs(lat->backend.ctx, chunk, out, mean, absmean, gated);
}

int ml_batch_expert_on_device(const moelat_lattice *lat, int band) {
    const ml_inspect_ops *in = inspect_ops(lat);
    return in && in->expert_on_device(lat->backend.ctx, band);
}

int ml_batch_queues(const moelat_lattice *lat) {
    const ml_inspect_ops *in = inspect_ops(lat);
    return in ? in->queues(lat->backend.ctx) : 0;
}

int ml_batch_absmean_bands(const moelat_lattice *lat) {
    const ml_inspect_ops *in = inspect_ops(lat);
    return in ? in->absmean_bands(lat->backend.ctx) : 0;
}
