/* The OpenCL backend's optimizer (backend.h's ml_optim_ops): optim_cl.c's
 * buffers hold the lattice's weights flat, in the view's block order; an
 * update copies the forward's parameter buffers (per-expert params[k],
 * then the gate) into that range on the device, updates it, and copies it
 * back, so the weights never cross to the host. ml_cl_sync_weights reads
 * them back when the host asks (residency.c). */
#include <stdio.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "backend/opencl/backend_cl.h"
#include "backend/opencl/optim_cl.h"
#include "base/log.h"

/* The view's blocks in flat order: count, with buffer, host block. */
static int blocks_of(ml_cl_backend *b, cl_mem buf[MOELAT_BANDS + 1], const ml_param_block *blk[MOELAT_BANDS + 1]) {
    for (int k = 0; k < MOELAT_BANDS; k++) {
        buf[k] = b->params[k];
        blk[k] = b->v->expert[k].params;
    }
    buf[MOELAT_BANDS] = b->gate;
    blk[MOELAT_BANDS] = b->v->gate;
    return MOELAT_BANDS + 1;
}

static size_t weights_count(ml_cl_backend *b) {
    cl_mem buf[MOELAT_BANDS + 1];
    const ml_param_block *blk[MOELAT_BANDS + 1];
    size_t n = 0;
    for (int k = 0, nb = blocks_of(b, buf, blk); k < nb; k++)
        n += blk[k]->n_floats;
    return n;
}

void ml_cl_optim_release(ml_cl_backend *b) {
    ml_optim_cl_destroy(b->optim);
    b->optim = NULL;
    b->optim_owner = NULL;
}

moelat_status ml_cl_sync_weights(void *ctx) {
    ml_cl_backend *b = ctx;
    cl_mem buf[MOELAT_BANDS + 1];
    const ml_param_block *blk[MOELAT_BANDS + 1];
    cl_int rc = CL_SUCCESS;
    ML_DEBUG("train", "reading the device optimizer's weights back (%zu floats)", weights_count(b));
    for (int k = 0, nb = blocks_of(b, buf, blk); k < nb && rc == CL_SUCCESS; k++)
        if (blk[k]->n_floats)
            rc = clEnqueueReadBuffer(b->ctx.queues[0], buf[k], CL_TRUE, 0, blk[k]->n_floats * sizeof(float),
                                     blk[k]->data, 0, NULL, NULL);
    return ml_cl_check(b, rc, "reading the device optimizer's weights back");
}

static moelat_status cl_open(void *ctx, const void *owner, int kind, int *fresh) {
    ml_cl_backend *b = ctx;
    *fresh = 0;
    if (b->optim && b->optim->kind == kind && b->optim_owner == owner)
        return MOELAT_OK;
    ml_cl_optim_release(b);
    char why[4096];
    if (ml_optim_cl_create(&b->ctx, b->ctx.queues[0], kind, weights_count(b), &b->optim, why, sizeof why) != 0)
        return ml_view_fail(b->v, MOELAT_ERR_DEVICE, "the device optimizer on %s: %s", b->ctx.info.name, why);
    b->optim_owner = owner;
    *fresh = 1;
    return MOELAT_OK;
}

static moelat_status cl_state(void *ctx, float *m, float *v, int write) {
    ml_cl_backend *b = ctx;
    ml_optim_cl *o = b->optim;
    cl_int rc = write ? ml_optim_cl_write(o, ML_OPT_M, m) : ml_optim_cl_read(o, ML_OPT_M, m);
    if (rc == CL_SUCCESS && o->v)
        rc = write ? ml_optim_cl_write(o, ML_OPT_V, v) : ml_optim_cl_read(o, ML_OPT_V, v);
    return ml_cl_check(b, rc, write ? "uploading the optimizer's moments" : "reading the optimizer's moments back");
}

static moelat_status cl_norm(void *ctx, const float *grad, double *norm) {
    ml_cl_backend *b = ctx;
    cl_int rc = grad ? ml_optim_cl_write(b->optim, ML_OPT_G, grad) : CL_SUCCESS;
    if (rc != CL_SUCCESS)
        return ml_cl_check(b, rc, "uploading the mini-batch's gradient");
    return ml_cl_check(b, ml_optim_cl_norm(b->optim, norm), "the gradient's norm on the device");
}

static moelat_status cl_grad_sum(void *ctx, float *dst) {
    ml_cl_backend *b = ctx;
    if (!b->optim)
        return ml_view_fail(b->v, MOELAT_ERR_DEVICE, "the device optimizer is not open on %s", b->ctx.info.name);
    if (dst)
        return ml_cl_check(b, ml_optim_cl_read(b->optim, ML_OPT_G, dst),
                           "reading the device's mini-batch gradient sum back");
    return ml_cl_check(b, ml_optim_cl_zero_grad(b->optim), "zeroing the device's mini-batch gradient sum");
}

/* The forward's parameter buffers into the optimizer's range (to = 1) or
 * back out of it. */
static cl_int copy_blocks(ml_cl_backend *b, int to) {
    cl_mem buf[MOELAT_BANDS + 1];
    const ml_param_block *blk[MOELAT_BANDS + 1];
    cl_int rc = CL_SUCCESS;
    size_t at = 0;
    for (int k = 0, nb = blocks_of(b, buf, blk); k < nb && rc == CL_SUCCESS; k++) {
        size_t bytes = blk[k]->n_floats * sizeof(float);
        if (bytes)
            rc = to ? clEnqueueCopyBuffer(b->ctx.queues[0], buf[k], b->optim->w, 0, at, bytes, 0, NULL, NULL)
                    : clEnqueueCopyBuffer(b->ctx.queues[0], b->optim->w, buf[k], at, 0, bytes, 0, NULL, NULL);
        at += bytes;
    }
    return rc;
}

static moelat_status cl_update(void *ctx, const ml_optim_scalars *s, float clip) {
    ml_cl_backend *b = ctx;
    cl_int rc = copy_blocks(b, 1);
    if (rc != CL_SUCCESS)
        return ml_cl_check(b, rc, "copying the weights into the device optimizer");
    if ((rc = ml_optim_cl_update(b->optim, s, clip)) != CL_SUCCESS)
        return ml_cl_check(b, rc, s->kind == MOELAT_OPT_ADAMW ? "the AdamW update on the device"
                                                                : "the SGD update on the device");
    if ((rc = copy_blocks(b, 0)) == CL_SUCCESS)
        rc = clFinish(b->ctx.queues[0]);
    return ml_cl_check(b, rc, "copying the updated weights to the forward's buffers");
}

const ml_optim_ops ml_cl_optim_ops = {
    .open = cl_open,
    .state = cl_state,
    .norm = cl_norm,
    .grad_sum = cl_grad_sum,
    .update = cl_update,
};
