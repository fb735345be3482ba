/* Residency of the states, input and weights (residency.h). */
#include "core/residency.h"

#include "backend/backend.h"
#include"core/lattice_internal.h"

void ml_residency_init(ml_residency *r) {
    r->states = ML_ON_HOST;
    r->input = ML_ON_HOST;
    r->weights = ML_ON_HOST;
}

moelat_status ml_res_host_states(moelat_lattice *lat) {
    if (lat->res.states != ML_ON_DEVICE)
        return MOELAT_OK;
    moelat_status st = lat->backend.ops->sync_states(lat->backend.ctx, lat->states);
    if (st == MOELAT_OK)
        lat->res.states = ML_ON_BOTH;
    return st;
}

void ml_res_host_wrote_states(moelat_lattice *lat) { lat->res.states = ML_ON_HOST; }

void ml_res_host_wrote_input(moelat_lattice *lat) {
    lat->res.input = ML_ON_HOST;
    lat->input_gen++;
}

moelat_status ml_res_host_wrote_weights(moelat_lattice *lat) {
    lat->res.weights = ML_ON_HOST;
    lat->weights_gen++;
    if (!lat->backend.ops)
        return MOELAT_OK;
    moelat_status st = lat->backend.ops->upload_weights(lat->backend.ctx);
    if (st == MOELAT_OK)
        lat->res.weights = ML_ON_BOTH;
    return st;
}

moelat_status ml_res_host_weights(moelat_lattice *lat) {
    if (lat->res.weights != ML_ON_DEVICE)
        return MOELAT_OK;
    moelat_status st = lat->backend.ops->sync_weights(lat->backend.ctx);
    if (st == MOELAT_OK)
        lat->res.weights = ML_ON_BOTH;
    return st;
}

moelat_status ml_res_weights_will_change(moelat_lattice *lat) {
    return lat->grad_weights_change ? lat->grad_weights_change(lat) : MOELAT_OK;
}

void ml_res_device_wrote_weights(moelat_lattice *lat) {
    lat->res.weights = ML_ON_DEVICE;
    lat->weights_gen++;
}

moelat_status ml_res_device_inputs(moelat_lattice *lat) {
    const ml_backend_ops *ops = lat->backend.ops;
    moelat_status st = MOELAT_OK;
    if (lat->res.states == ML_ON_HOST) {
        if ((st = ops->upload_states(lat->backend.ctx, lat->states)) != MOELAT_OK)
            return st;
        lat->res.states = ML_ON_BOTH;
    }
    if (lat->res.input == ML_ON_HOST) {
        if ((st = ops->upload_input(lat->backend.ctx, lat->ext)) != MOELAT_OK)
            return st;
        lat->res.input = ML_ON_BOTH;
    }
    return ml_res_device_weights(lat);
}

moelat_status ml_res_device_weights(moelat_lattice *lat) {
    if (lat->res.weights != ML_ON_HOST)
        return MOELAT_OK;
    moelat_status st = lat->backend.ops->upload_weights(lat->backend.ctx);
    if (st == MOELAT_OK)
        lat->res.weights = ML_ON_BOTH;
    return st;
}

int ml_res_weights_on_device(const moelat_lattice *lat) { return lat->res.weights != ML_ON_HOST; }

int ml_res_weights_on_device_only(const moelat_lattice *lat) { return lat->res.weights == ML_ON_DEVICE; }

void ml_res_device_wrote_states(moelat_lattice *lat) { lat->res.states = ML_ON_DEVICE; }

void ml_res_device_opened(moelat_lattice *lat) {
    /* The host holds the only copies; the device's are uploaded on use. */
    ml_residency_init(&lat->res);
}

void ml_res_device_closed(moelat_lattice *lat) { ml_residency_init(&lat->res); }

int ml_res_states_on_device_only(const moelat_lattice *lat) { return lat->res.states == ML_ON_DEVICE; }
