/* Opening a lattice's device backend, and the fallback list the backends
 * hand to the scheduler (backend.h). */
#include "backend/backend.h"

#include <stdio.h>

#include"core/lattice_internal.h"

void ml_fallbacks_add(ml_fallbacks *fb, const char *reason) {
    if (fb->n < ML_MAX_STEP_FALLBACKS)
        snprintf(fb->reason[fb->n], sizeof fb->reason[fb->n], "%s", reason);
    fb->n++;
}

moelat_status ml_backend_open(moelat_lattice *lat, ml_fallbacks *fb) {
    if (lat->backend.ops)
        return MOELAT_OK;
    /* The one device backend so far; a CPU-kernel backend would be chosen
     * here (by the config's device, say). */
    const ml_backend_ops *ops = &ml_backend_cl_ops;
    void *ctx = NULL;
    moelat_status st = ops->create(lat, fb, &ctx);
    if (st != MOELAT_OK)
        return st;
    lat->backend.ops = ops;
    lat->backend.ctx = ctx;
    return MOELAT_OK;
}

void ml_backend_close(moelat_lattice *lat) {
    if (!lat->backend.ops)
        return;
    if (lat->grad_detach) /* the gradient engine's device half goes first */
        lat->grad_detach(lat, 0);
    lat->backend.ops->destroy(lat->backend.ctx);
    lat->backend.ops = NULL;
    lat->backend.ctx = NULL;
}
