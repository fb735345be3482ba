/* Early reads of delivered planes (moelat_lattice_deliver_planes) during
 * a batched step: the device chunks that write a requested plane range are
 * enqueued first, and once the last of them is, the range is read on the
 * transfer queue while the rest of the step runs; the step's thread waits
 * for that read (and calls the range's ready) before it waits for the
 * rest. the OpenCL backend (backend_cl_step.c) drives it; the functions say when to call them. */
#ifndef MOELAT_EARLY_READS_H
#define MOELAT_EARLY_READS_H

#include"backend/opencl/cl_runtime.h"
#include"core/lattice_internal.h"

/* One step's early reads: for each requested range, the gate events of
 * the device chunks that write its planes and the read that waits for
 * them. */
typedef struct ml_early_reads {
    int n;                        /* ranges served: the lattice's first n deliveries */
    int need[ML_MAX_DELIVER];     /* device chunks writing range r */
    int blocked[ML_MAX_DELIVER];  /* a host chunk writes some of it */
    int got[ML_MAX_DELIVER];
    int enqueued[ML_MAX_DELIVER];
    cl_event *wait[ML_MAX_DELIVER];
    cl_event read[ML_MAX_DELIVER];
} ml_early_reads;

/* Before the step: orders the device chunks that write the first n_ranges
 * delivered ranges first (dev_ids, stably) and counts what each range
 * waits for. 0, or -1 when out of memory (then mark every range blocked:
 * read after the step). */
int ml_early_reads_plan(moelat_lattice *lat, int n_ranges, int *dev_ids, int n_dev, const int *host_ids,
                        int n_host, ml_early_reads *er);
/* Chunk ci's gate (done) was enqueued; next is the buffer the step writes. */
void ml_early_reads_chunk_done(moelat_lattice *lat, ml_early_reads *er, int ci, cl_event done,
                               cl_command_queue transfer, cl_mem next);
/* Chunk ci moved to the host: the ranges it writes are read after the step. */
void ml_early_reads_chunk_on_host(const moelat_lattice *lat, ml_early_reads *er, int ci);
/* Mid-step, on the step's thread: waits for each early read, hands its
 * planes over. */
void ml_early_reads_wait(moelat_lattice *lat, ml_early_reads *er);
/* At the step's end, failed or not: no read may write after it; releases
 * everything. */
void ml_early_reads_end(moelat_lattice *lat, ml_early_reads *er, cl_command_queue transfer);

#endif
