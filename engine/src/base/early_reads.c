/* Early reads of delivered planes during a batched step: see
 * early_reads.h. */
#include"base/early_reads.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"

static int chunk_meets(const ml_chunk *c, int32_t z0, int32_t z1) {
    return c->origin[2] < z1 && c->origin[2] + c->extent[2] > z0;
}

static int chunk_meets_any(const moelat_lattice *lat, int n_ranges, const ml_chunk *c) {
    for (int r = 0; r < n_ranges; r++)
        if (chunk_meets(c, lat->deliver[r].z0, lat->deliver[r].z1))
            return 1;
    return 0;
}

/* Orders the device chunks that write delivered planes first (stably) and
 * counts what each range waits for. 0, or -1 when out of memory (then no
 * range is read early). */
int ml_early_reads_plan(moelat_lattice *lat, int n_ranges, int *dev_ids, int n_dev, const int *host_ids,
                        int n_host, ml_early_reads *er) {
    memset(er, 0, sizeof *er);
    er->n = n_ranges;
    for (int r = 0; r < er->n; r++)
        lat->deliver[r].done = 0;
    if (er->n == 0 || n_dev == 0)
        return 0;
    int *order = malloc((size_t)n_dev * sizeof *order);
    if (!order)
        return -1;
    int k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n_dev; i++)
            if (chunk_meets_any(lat, er->n, &lat->chunks[dev_ids[i]]) == (pass == 0))
                order[k++] = dev_ids[i];
    memcpy(dev_ids, order, (size_t)n_dev * sizeof *order);
    free(order);
    for (int r = 0; r < er->n; r++) {
        int32_t z0 = lat->deliver[r].z0, z1 = lat->deliver[r].z1;
        er->blocked[r] = z0 < lat->active_z0 || z1 > lat->active_z1;
        for (int i = 0; i < n_host; i++)
            er->blocked[r] |= chunk_meets(&lat->chunks[host_ids[i]], z0, z1);
        for (int i = 0; i < n_dev; i++)
            er->need[r] += chunk_meets(&lat->chunks[dev_ids[i]], z0, z1);
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
void ml_early_reads_chunk_done(moelat_lattice *lat, ml_early_reads *er, int ci, cl_event done,
                               cl_command_queue transfer, cl_mem next) {
    const ml_chunk *c = &lat->chunks[ci];
    size_t plane = (size_t)lat->X * lat->Y * (size_t)lat->S;
    for (int r = 0; r < er->n; r++) {
        if (!er->wait[r] || er->blocked[r] || !chunk_meets(c, lat->deliver[r].z0, lat->deliver[r].z1))
            continue;
        if (clRetainEvent(done) != CL_SUCCESS) {
            er->blocked[r] = 1; /* read at the step's end instead */
            continue;
        }
        er->wait[r][er->got[r]++] = done;
        if (er->got[r] < er->need[r])
            continue;
        size_t off = plane * (size_t)lat->deliver[r].z0 * sizeof(float);
        size_t bytes = plane * (size_t)(lat->deliver[r].z1 - lat->deliver[r].z0) * sizeof(float);
        cl_int e = clEnqueueReadBuffer(transfer, next, CL_FALSE, off, bytes,
                                       lat->deliver[r].dst, (cl_uint)er->got[r], er->wait[r], &er->read[r]);
        if (e == CL_SUCCESS) {
            er->enqueued[r] = 1;
            clFlush(transfer);
        } else {
            ML_WARN("batch", "reading planes [%d, %d) early on %s failed (%s): read after the step",
                    lat->deliver[r].z0, lat->deliver[r].z1, lat->device_name, mlcl_error_name(e));
        }
    }
}

/* A chunk that moved to the host blocks the ranges it writes. */
void ml_early_reads_chunk_on_host(const moelat_lattice *lat, ml_early_reads *er, int ci) {
    for (int r = 0; r < er->n; r++)
        if (chunk_meets(&lat->chunks[ci], lat->deliver[r].z0, lat->deliver[r].z1))
            er->blocked[r] = 1;
}

/* Mid-step, on the step's thread: waits for each early read and hands its
 * planes over (done, and the range's ready called) while the device still
 * runs the other chunks. A read that failed is left to the step's end. */
void ml_early_reads_wait(moelat_lattice *lat, ml_early_reads *er) {
    for (int r = 0; r < er->n; r++) {
        if (!er->enqueued[r] || lat->deliver[r].done)
            continue;
        if (clWaitForEvents(1, &er->read[r]) != CL_SUCCESS) {
            ML_WARN("batch", "reading planes [%d, %d) early on %s failed: read after the step", lat->deliver[r].z0,
                    lat->deliver[r].z1, lat->device_name);
            continue;
        }
        lat->deliver[r].done = 1;
        lat->stats.planes_early += (uint64_t)(lat->deliver[r].z1 - lat->deliver[r].z0);
        if (lat->deliver[r].ready)
            lat->deliver[r].ready(lat->deliver[r].arg);
    }
}

/* Ends the early reads: none may still write its buffer after the step
 * returns (a failed step may not have waited for them). Releases
 * everything. */
void ml_early_reads_end(moelat_lattice *lat, ml_early_reads *er, cl_command_queue transfer) {
    int any = 0; /* a read the step's thread did not wait for */
    for (int r = 0; r < ML_MAX_DELIVER; r++)
        any |= er->enqueued[r] && !(r < er->n && lat->deliver[r].done);
    if (any && clFinish(transfer) != CL_SUCCESS)
        ML_WARN("batch", "finishing the early plane reads on %s failed", lat->device_name);
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

