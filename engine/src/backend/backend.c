/* Opening a device backend over a lattice's view, the fallback list the
 * backends hand to the scheduler, and the view's error sink (backend.h). */
#include "backend/backend.h"

#include <stdarg.h>
#include <stdio.h>

void ml_fallbacks_add(ml_fallbacks *fb, const char *reason) {
    if (fb->n < ML_MAX_STEP_FALLBACKS)
        snprintf(fb->reason[fb->n], sizeof fb->reason[fb->n], "%s", reason);
    fb->n++;
}

moelat_status ml_view_fail(const ml_backend_view *v, moelat_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->err, v->err_size, fmt, ap);
    va_end(ap);
    return status;
}

moelat_status ml_backend_open(const ml_backend_view *view, ml_fallbacks *fb, ml_backend *be) {
    if (be->ops)
        return MOELAT_OK;
    /* The one device backend so far; a CPU-kernel backend would be chosen
     * here (by the view's device, say). */
    const ml_backend_ops *ops = &ml_backend_cl_ops;
    void *ctx = NULL;
    moelat_status st = ops->create(view, fb, &ctx);
    if (st != MOELAT_OK)
        return st;
    be->ops = ops;
    be->ctx = ctx;
    return MOELAT_OK;
}

void ml_backend_close(ml_backend *be) {
    if (!be->ops)
        return;
    be->ops->destroy(be->ctx);
    be->ops = NULL;
    be->ctx = NULL;
}
