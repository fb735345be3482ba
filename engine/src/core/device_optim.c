/* The lattice's device optimizer (device_optim.h). */
#include "core/device_optim.h"

#include "core/lattice_internal.h"
#include "core/residency.h"

static const ml_optim_ops *ops_of(const moelat_lattice *lat) {
    return lat->backend.ops ? lat->backend.ops->optim : NULL;
}

int ml_dev_optim_available(const moelat_lattice *lat) { return ops_of(lat) != NULL; }

static moelat_status none(moelat_lattice *lat) {
    return ml_fail(lat, MOELAT_ERR_DEVICE, "the lattice has no device optimizer (no device open, or its backend "
                   "has none)");
}

moelat_status ml_dev_optim_open(moelat_lattice *lat, const void *owner, int kind, int *fresh) {
    const ml_optim_ops *o = ops_of(lat);
    return o ? o->open(lat->backend.ctx, owner, kind, fresh) : none(lat);
}

moelat_status ml_dev_optim_state(moelat_lattice *lat, float *m, float *v, int write) {
    const ml_optim_ops *o = ops_of(lat);
    return o ? o->state(lat->backend.ctx, m, v, write) : none(lat);
}

moelat_status ml_dev_optim_norm(moelat_lattice *lat, const float *grad, double *norm) {
    const ml_optim_ops *o = ops_of(lat);
    return o ? o->norm(lat->backend.ctx, grad, norm) : none(lat);
}

moelat_status ml_dev_optim_grad_sum(moelat_lattice *lat, float *dst) {
    const ml_optim_ops *o = ops_of(lat);
    return o ? o->grad_sum(lat->backend.ctx, dst) : none(lat);
}

moelat_status ml_dev_optim_update(moelat_lattice *lat, const ml_optim_scalars *s, float clip) {
    const ml_optim_ops *o = ops_of(lat);
    if (!o)
        return none(lat);
    moelat_status st = ml_res_weights_will_change(lat);
    if (st != MOELAT_OK)
        return st;
    if ((st = ml_res_device_weights(lat)) != MOELAT_OK)
        return st;
    if ((st = o->update(lat->backend.ctx, s, clip)) != MOELAT_OK)
        return st;
    ml_res_device_wrote_weights(lat);
    return MOELAT_OK;
}
