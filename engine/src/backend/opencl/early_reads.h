/* Early reads of delivered planes (moelat_lattice_deliver_planes) during
 * a batched step: the device chunks that write a requested plane range are
 * enqueued first, and once the last of them is, the range is read on the
 * transfer queue while the rest of the step runs; the step's thread waits
 * for that read (and calls the range's ready) before it waits for the
 * rest. The OpenCL backend (backend_cl_step.c) drives it; the functions
 * say when to call them. */
#ifndef MOELAT_EARLY_READS_H
#define MOELAT_EARLY_READS_H

#include "backend/backend.h"
#include "backend/opencl/cl_runtime.h"

/* One step's early reads: for each requested range, the gate events of
 * the device chunks that write its planes and the read that waits for
 * them. */
typedef struct ml_early_reads {
    const ml_backend_view *v;     /* the lattice's chunks, dims and active planes */
    const char *device;           /* the device's name, for warnings */
    ml_plane_delivery *range;     /* the step's deliveries */
    int n;                        /* ranges served: the step's first n deliveries */
    int need[ML_MAX_DELIVER];     /* device chunks writing range r */
    int blocked[ML_MAX_DELIVER];  /* a host chunk writes some of it */
    int got[ML_MAX_DELIVER];
    int enqueued[ML_MAX_DELIVER];
    cl_event *wait[ML_MAX_DELIVER];
    cl_event read[ML_MAX_DELIVER];
} ml_early_reads;

/* Before the step: orders the device chunks that write the step's first
 * st->n_ranges deliveries first (st->dev, stably) and counts what each
 * range waits for. 0, or -1 when out of memory (then mark every range
 * blocked: read after the step). */
int ml_early_reads_plan(const ml_backend_view *v, const char *device, ml_step *st, ml_early_reads *er);
/* Chunk ci's gate (done) was enqueued; next is the buffer the step writes. */
void ml_early_reads_chunk_done(ml_early_reads *er, int ci, cl_event done, cl_command_queue transfer, cl_mem next);
/* Chunk ci moved to the host: the ranges it writes are read after the step. */
void ml_early_reads_chunk_on_host(ml_early_reads *er, int ci);
/* Mid-step, on the step's thread: waits for each early read, hands its
 * planes over and adds them to *planes. */
void ml_early_reads_wait(ml_early_reads *er, uint64_t *planes);
/* At the step's end, failed or not: no read may write after it; releases
 * everything. */
void ml_early_reads_end(ml_early_reads *er, cl_command_queue transfer);

#endif
