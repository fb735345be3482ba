/* Early reads of delivered planes during a batched step: see
 * early_reads.h. */
#include "backend/opencl/early_reads.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"

static int chunk_meets(const ml_chunk *c, int32_t z0, int32_t z1) {
    return c->origin[2] < z1 && c->origin[2] + c->extent[2] > z0;
}

static int chunk_meets_any(const ml_early_reads *er, const ml_chunk *c) {
    for (int r = 0; r < er->n; r++)
        if (chunk_meets(c, er->range[r].z0, er->range[r].z1))
            return 1;
    return 0;
}

/* Orders the device chunks that write delivered planes first (stably) and
 * counts what each range waits for. 0, or -1 when out of memory (then no
 * range is read early). */
int ml_early_reads_plan(const ml_backend_view *v, const char *device, ml_step *st, ml_early_reads *er) {
    memset(er, 0, sizeof *er);
    er->v = v;
    er->device = device;
    er->range = st->ranges;
    er->n = st->n_ranges;
    for (int r = 0; r < er->n; r++)
        er->range[r].done = 0;
    int *dev_ids = st->dev, n_dev = st->n_dev;
    if (er->n == 0 || n_dev == 0)
        return 0;
    int *order = malloc((size_t)n_dev * sizeof *order);
    if (!order)
        return -1;
    int k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n_dev; i++)
            if (chunk_meets_any(er, &v->chunks[dev_ids[i]]) == (pass == 0))
                order[k++] = dev_ids[i];
    memcpy(dev_ids, order, (size_t)n_dev * sizeof *order);
    free(order);
    for (int r = 0; r < er->n; r++) {
        int32_t z0 = er->range[r].z0, z1 = er->range[r].z1;
        er->blocked[r] = z0 < v->active_z0 || z1 > v->active_z1;
        for (int i = 0; i < st->n_host; i++)
            er->blocked[r] |= chunk_meets(&v->chunks[st->host[i]], z0, z1);
        for (int i = 0; i < n_dev; i++)
            er->need[r] += chunk_meets(&v->chunks[dev_ids[i]], z0, z1);
        if (er->blocked[r] || er->need[r] == 0)
            continue;
        er->wait[r] = calloc((size_t)er->need[r], sizeof(cl_event));
        if (!er->wait[r])
            return -1;
    }
    return 0;
}

/* Chunk ci's gate (done: its event) was enqueued: the ranges it completes
 * are read on the transfer queue from the buffer the step writes. */
void ml_early_reads_chunk_done(ml_early_reads *er, int ci, cl_event done, cl_command_queue transfer, cl_mem next) {
    const ml_backend_view *v = er->v;
    const ml_chunk *c = &v->chunks[ci];
    size_t plane = (size_t)v->X * v->Y * (size_t)v->S;
    for (int r = 0; r < er->n; r++) {
        ml_plane_delivery *d = &er->range[r];
        if (!er->wait[r] || er->blocked[r] || !chunk_meets(c, d->z0, d->z1))
            continue;
        if (clRetainEvent(done) != CL_SUCCESS) {
            er->blocked[r] = 1; /* read at the step's end instead */
            continue;
        }
        er->wait[r][er->got[r]++] = done;
        if (er->got[r] < er->need[r])
            continue;
        size_t off = plane * (size_t)d->z0 * sizeof(float);
        size_t bytes = plane * (size_t)(d->z1 - d->z0) * sizeof(float);
        cl_int e = clEnqueueReadBuffer(transfer, next, CL_FALSE, off, bytes, d->dst, (cl_uint)er->got[r],
                                       er->wait[r], &er->read[r]);
        if (e == CL_SUCCESS) {
            er->enqueued[r] = 1;
            clFlush(transfer);
        } else {
            ML_WARN("batch", "reading planes [%d, %d) early on %s failed (%s): read after the step", d->z0, d->z1,
                    er->device, mlcl_error_name(e));
        }
    }
}

/* A chunk that moved to the host blocks the ranges it writes. */
void ml_early_reads_chunk_on_host(ml_early_reads *er, int ci) {
    for (int r = 0; r < er->n; r++)
        if (chunk_meets(&er->v->chunks[ci], er->range[r].z0, er->range[r].z1))
            er->blocked[r] = 1;
}

/* Mid-step, on the step's thread: waits for each early read and hands its
 * planes over (done, and the range's ready called) while the device still
 * runs the other chunks. A read that failed is left to the step's end. */
void ml_early_reads_wait(ml_early_reads *er, uint64_t *planes) {
    for (int r = 0; r < er->n; r++) {
        ml_plane_delivery *d = &er->range[r];
        if (!er->enqueued[r] || d->done)
            continue;
        if (clWaitForEvents(1, &er->read[r]) != CL_SUCCESS) {
            ML_WARN("batch", "reading planes [%d, %d) early on %s failed: read after the step", d->z0, d->z1,
                    er->device);
            continue;
        }
        d->done = 1;
        *planes += (uint64_t)(d->z1 - d->z0);
        if (d->ready)
            d->ready(d->arg);
    }
}

/* Ends the early reads: none may still write its buffer after the step
 * returns (a failed step may not have waited for them). Releases
 * everything. */
void ml_early_reads_end(ml_early_reads *er, cl_command_queue transfer) {
    int any = 0; /* a read the step's thread did not wait for */
    for (int r = 0; r < ML_MAX_DELIVER; r++)
        any |= er->enqueued[r] && !(r < er->n && er->range[r].done);
    if (any && clFinish(transfer) != CL_SUCCESS)
        ML_WARN("batch", "finishing the early plane reads on %s failed", er->device);
    for (int r = 0; r < ML_MAX_DELIVER; r++) {
        for (int i = 0; i < er->got[r]; i++)
            clReleaseEvent(er->wait[r][i]);
        free(er->wait[r]);
        if (er->read[r])
            clReleaseEvent(er->read[r]);
        er->wait[r] = NULL;
        er->read[r] = NULL;
        er->got[r] = 0;
        er->enqueued[r] = 0;
    }
}
