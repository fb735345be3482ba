/* The lattice object behind the public handle, shared by the files that
 * implement one part of a step: lattice.c (API, states, files), percell.c
 * (host path), batch.c (device path), adapter.c (which chunk runs where),
 * report.c (performance report). */
#ifndef MOELAT_LATTICE_INTERNAL_H
#define MOELAT_LATTICE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "moelat/moelat.h"
#include "params.h"
#include "plugin_loader.h"
#include "stencil.h"

/* Most plane ranges one step delivers (moelat_lattice_deliver_planes). */
#define ML_MAX_DELIVER 4

/* One expert serving one band. */
typedef struct ml_expert_slot {
    const moelat_expert_descriptor *desc;
    char path[1024];
    moelat_expert_dims dims;
    ml_param_block params;     /* prefix "<band>_expert." */
    size_t scratch_floats;     /* for the band's largest neighbourhood */
} ml_expert_slot;

/* A box of cells: [origin, origin + extent). */
typedef struct ml_chunk {
    int32_t origin[3];
    int32_t extent[3];
    int32_t n_cells;
} ml_chunk;

/* Lattice coordinates of chunk cell ci (x fastest, as the kernels'
 * ml_chunk_cell). */
static inline void ml_chunk_cell_xyz(const ml_chunk *c, int ci, int xyz[3]) {
    xyz[0] = c->origin[0] + ci % c->extent[0];
    xyz[1] = c->origin[1] + (ci / c->extent[0]) % c->extent[1];
    xyz[2] = c->origin[2] + ci / (c->extent[0] * c->extent[1]);
}

typedef struct ml_thread_pool ml_thread_pool;
typedef struct ml_batch ml_batch;

/* Routing statistics: sums of the gate's weights and counts of the band
 * with the largest weight over the cell updates counted. */
typedef struct ml_route_acc {
    uint64_t cells;
    double weight_sum[MOELAT_BANDS];
    uint64_t top_count[MOELAT_BANDS];
} ml_route_acc;

/* Timing and counts accumulated by the paths; turned into moelat_report. */
typedef struct ml_stats {
    uint64_t steps;
    uint64_t batch_chunks, percell_chunks;
    uint64_t batch_cells, percell_cells;
    double batch_ms, percell_ms;   /* wall time attributed to each path */
    uint64_t expert_calls[MOELAT_BANDS];
    double expert_device_ms[MOELAT_BANDS];
    double aggregate_device_ms, gate_device_ms, precompute_device_ms;
    uint64_t fallbacks;
    uint64_t planes_early; /* planes delivered while their step still ran */
    int n_reasons;
    char reason[MOELAT_MAX_FALLBACK_REASONS][256];
    uint64_t reason_count[MOELAT_MAX_FALLBACK_REASONS];
    ml_route_acc route;
} ml_stats;

struct moelat_lattice {
    moelat_config cfg;
    char err[2048];

    int32_t X, Y, Z, S, E;
    size_t N;
    int32_t gate_hidden;
    ml_stencil stencil;

    ml_plugin_set plugins;
    ml_expert_slot expert[MOELAT_BANDS];
    ml_param_block gate;

    float *states;      /* N x S, host copy (valid unless device_owns_states) */
    float *next;        /* N x S, the step's output on the host */
    float *ext;         /* X x Y x E of the z = 0 face */
    int has_ext;

    uint64_t step_count;
    int n_threads;
    ml_thread_pool *pool;

    ml_chunk *chunks;   /* cover the active planes only */
    int n_chunks;
    int32_t active_z0, active_z1; /* planes a step updates (planes.c) */
    /* Planes the next step delivers to the caller (planes.c); done: the
     * batch path read them during the step. */
    struct {
        int32_t z0, z1;
        float *dst;
        moelat_planes_ready ready;
        void *arg;
        int done; /* dst holds the planes and ready was called */
    } deliver[ML_MAX_DELIVER];
    int n_deliver;
    int32_t chunk_size[3];

    moelat_mode mode;
    int batch_threshold;
    ml_batch *batch;          /* device state, NULL until batch is enabled */
    int device_owns_states;   /* the newest states live only on the device */
    int device_stale;         /* the device copy of the states is older than the host's */
    int ext_stale;            /* likewise for the external input */
    char device_name[256];

    ml_stats stats;

    struct ml_percell_ws *ws; /* per-worker scratch of the host path */
    int n_ws;
};

/* Sets lat->err and returns status. */
moelat_status ml_fail(moelat_lattice *lat, moelat_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* External input of a cell (E floats), or NULL off the input face / unset. */
const float *ml_cell_ext(const moelat_lattice *lat, int x, int y, int z);

/* Blocks of the weights file in order: local, functional, distant, gate. */
int ml_param_blocks(moelat_lattice *lat, ml_param_block **blocks);

/* Ends a step's plane deliveries (planes.c): copies those the step did
 * not read early; returns step, or the copy's error. */
moelat_status ml_finish_deliveries(moelat_lattice *lat, moelat_status step);

/* Chunks (chunks.c): cuts the lattice into boxes of at most size[]. */
int ml_chunks_make(const int32_t dims[3], const int32_t size[3], ml_chunk **out, int *n);
/* Chunks of the planes [z0, z1) only (the active planes of a slab), the
 * halo planes its neighbours read in chunks of their own (chunks.c). */
int ml_chunks_make_range(const int32_t dims[3], const int32_t size[3], int32_t z0, int32_t z1, int32_t halo,
                         ml_chunk **out, int *n);

/* Replaces the lattice's chunks by boxes of size[] over planes [z0, z1)
 * (ml_chunks_make_range with its halo depth) and keeps size as its chunk
 * box (planes.c). 0, or -1 when out of memory (nothing changed). */
int ml_lattice_rechunk(moelat_lattice *lat, const int32_t size[3], int32_t z0, int32_t z1);
/* The default chunk box for a lattice (device memory in bytes, 0 = host). */
void ml_chunks_default_size(const int32_t dims[3], int S, uint64_t device_mem, int32_t size[3]);

/* Thread pool (thread_pool.c): runs fn(ctx, i, worker) for i in [0, n). */
ml_thread_pool *ml_pool_create(int n_threads);
void ml_pool_destroy(ml_thread_pool *pool);
int ml_pool_size(const ml_thread_pool *pool);
void ml_pool_run(ml_thread_pool *pool, int n, void (*fn)(void *ctx, int i, int worker), void *ctx);

/* Host path (percell.c): computes next[] for the listed chunks from states[].
 * Returns 0, or -1 with lat->err set (an expert failed or produced NaN). */
int ml_percell_run(moelat_lattice *lat, const int *chunk_ids, int n, const float *states,
                   float *next);
void ml_percell_free(moelat_lattice *lat);
/* Band k's expert alone on the host for every cell of a chunk: out holds
 * n_cells x S in chunk order (zeros where the band is empty). */
int ml_percell_expert_chunk(moelat_lattice *lat, int band, const ml_chunk *chunk, const float *states,
                            float *out);
/* Host path for single cells (used by the batch upgrade check). */
int ml_percell_cells(moelat_lattice *lat, const size_t *cells, int n, const float *states,
                     float *out);

/* Device path (batch.c). */
int ml_batch_create(moelat_lattice *lat, ml_batch **out);
void ml_batch_destroy(ml_batch *b);
/* Runs one step on the device for the chunks with use_device[c] != 0, the
 * others on the host; leaves the result in lat->states. */
int ml_batch_step(moelat_lattice *lat);
/* Status of the last failed ml_batch_step (lat->err holds the message). */
moelat_status ml_batch_last_status(const moelat_lattice *lat);
/* Copies device states to lat->states when the device owns them. */
int ml_batch_sync_to_host(moelat_lattice *lat);
/* Uploads every parameter block to the device. */
int ml_batch_upload_weights(moelat_lattice *lat);
/* Each expert's device output for one chunk (n_cells x S per band, chunk
 * order) from the current states, without the gate; with gated non-NULL
 * (and every expert on the device) also the gate and update on those
 * outputs, the chunk's next states (n_cells x S, chunk order). The
 * current states stay current. absmean of a band outside
 * ml_batch_absmean_bands is NaN (not computed). */
int ml_batch_expert_outputs(moelat_lattice *lat, int chunk, float *const out[MOELAT_BANDS],
                            float *const mean[MOELAT_BANDS], float *const absmean[MOELAT_BANDS], float *gated);
/* 1 when band k's expert runs on the device (it has an OpenCL path that
 * built and prepared), 0 when the host evaluates it. */
int ml_batch_expert_on_device(const moelat_lattice *lat, int band);
/* Command queues of the batch path (0 before it is set up). */
int ml_batch_queues(const moelat_lattice *lat);
/* Bit k when the aggregation computes band k's mean of |n_j| (its expert
 * does not declare MOELAT_CL_NO_ABSMEAN). */
int ml_batch_absmean_bands(const moelat_lattice *lat);
/* Runs a sample of cells on both paths; MOELAT_ERR_MISMATCH if they disagree. */
moelat_status ml_batch_verify_sample(moelat_lattice *lat);

/* Copies count floats at offset (in floats) of the device's current state
 * buffer to dst (src NULL) or from src (dst NULL): plane reads and writes
 * of a slab owner while the device owns the states. */
int ml_batch_planes_io(moelat_lattice *lat, size_t offset, size_t count, float *dst, const float *src);

/* Monotonic clock in milliseconds. */
double ml_now_ms(void);

/* Useful FLOPs per cell update (flops.c documents the formula); part[5]
 * (aggregation, local, functional, distant, gate) may be NULL. */
double ml_flops_per_cell(const moelat_lattice *lat, double part[5]);

/* The device context of the batched path, or NULL. */
struct mlcl_context *ml_batch_context(moelat_lattice *lat);

/* Times the host path on rows of cells spread over the lattice (at most
 * max_cells cells) and returns the extrapolated ms per step; *sampled is
 * set to 1 when only a sample ran. States are not changed. */
double ml_percell_time_sample(moelat_lattice *lat, size_t max_cells, int *sampled);

/* Report (report.c). */
void ml_stats_fallback(moelat_lattice *lat, const char *reason);
/* Adds n cells' gate weights (w[i*MOELAT_BANDS + k]) to a routing
 * accumulator; ml_route_merge adds one accumulator to another. */
void ml_route_add(ml_route_acc *a, const float *w, size_t n);
void ml_route_merge(ml_route_acc *dst, const ml_route_acc *src);
/* Adds the cells of the listed chunks to lat->stats.route from w, the
 * lattice's N x MOELAT_BANDS gate weights (cell-major). */
void ml_route_add_chunks(moelat_lattice *lat, const float *w, const int *chunk_ids, int n);

#endif
