/* The lattice object behind the public handle, shared by the files that
 * implement one part of it: lattice.c (API, states, files), step.c (the
 * scheduler: mode, which chunk runs where, host chunks, stats), percell.c
 * (host path), device.c (the device: the view its backend gets, opening
 * and closing it behind backend.h's ops table), residency.c (where
 * states, input and weights live), planes.c, report.c. No backend reads
 * it. ARCHITECTURE.md follows a step through them. */
#ifndef MOELAT_LATTICE_INTERNAL_H
#define MOELAT_LATTICE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "base/thread_pool.h"
#include "core/chunks.h"
#include "moelat/moelat.h"
#include "core/params.h"
#include "core/percell.h"
#include "core/residency.h"
#include"plugin/plugin_loader.h"
#include "core/stencil.h"
#include "core/tuning.h"

/* One expert serving one band. */
typedef struct ml_expert_slot {
    const moelat_expert_descriptor *desc;
    char path[1024];
    moelat_expert_dims dims;
    ml_param_block params;     /* prefix "<band>_expert." */
    size_t scratch_floats;     /* for the band's largest neighbourhood */
} ml_expert_slot;


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
    ml_tuning tuning;   /* cfg.tuning, parsed once at creation */
    char err[2048];

    int32_t X, Y, Z, S, E;
    size_t N;
    int32_t gate_hidden;
    ml_stencil stencil;

    ml_plugin_set plugins;
    ml_expert_slot expert[MOELAT_BANDS];
    ml_param_block gate;

    float *states;      /* N x S, the host's copy (current unless res.states says the device's is newer) */
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
    ml_plane_delivery deliver[ML_MAX_DELIVER];
    int n_deliver;
    int32_t chunk_size[3];

    moelat_mode mode;
    int batch_threshold;
    ml_backend backend;       /* the device; no ops until batch is enabled */
    ml_backend_view view;     /* what the backend sees of the lattice (device.c) */
    ml_residency res;         /* where the states, input and weights live */
    /* Bumped whenever the host writes the weights or the input: a gradient
     * recording compares them with its own to know whether the lattice
     * still holds its run's weights and input. */
    uint64_t weights_gen, input_gen;
    /* The gradient engine (grad/grad.h), built by the first recording, and
     * how it is told that the backend closes (whole = 0) or the lattice
     * goes (whole = 1); NULL while there is none. */
    struct ml_grad_engine *grad;
    /* Its builds and new recordings, for the report (written by grad/ only). */
    struct {
        uint64_t builds, recording_allocs;
    } grad_counts;
    void (*grad_detach)(moelat_lattice *lat, int whole);
    /* Called before the weights change (ml_res_weights_will_change): a
     * live recording that left its weights on the device copies them. */
    moelat_status (*grad_weights_change)(moelat_lattice *lat);
    char device_name[256];

    ml_stats stats;
    char path_why[256]; /* why the mode's path runs (moelat_report.path_reason) */

    struct ml_percell_ws *ws; /* per-worker scratch of the host path */
    int n_ws;
};

/* One step that the lattice does not count: its step counter and report
 * are as before (a failure's message names step as_step + 1). The
 * gradient engine's recorded steps are these (step.c). */
moelat_status ml_step_uncounted(moelat_lattice *lat, uint64_t as_step);

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


/* Replaces the lattice's chunks by boxes of size[] over planes [z0, z1)
 * (ml_chunks_make_range with its halo depth) and keeps size as its chunk
 * box (planes.c). MOELAT_ERR_NOMEM leaves everything as it was. */
moelat_status ml_lattice_rechunk(moelat_lattice *lat, const int32_t size[3], int32_t z0, int32_t z1);

/* The lattice's device (device.c): the view its backend gets, filled
 * from the lattice (again whenever its chunks or active planes change);
 * opening the backend over it (nothing when one is open); closing it (the
 * gradient engine's device half first; nothing when none is open). */
void ml_lattice_view_update(moelat_lattice *lat);
moelat_status ml_lattice_open_device(moelat_lattice *lat, ml_fallbacks *fb);
void ml_lattice_close_device(moelat_lattice *lat);

/* The backend's inspection (its inspect ops, through device.c), for
 * `check`, `bench` and the tests; every one is 0 / an error without a
 * device. */
/* Each expert's device output for one chunk (n_cells x S per band, chunk
 * order) from the current states, without the gate; with gated non-NULL
 * (and every expert on the device) also the gate and update on those
 * outputs, the chunk's next states (n_cells x S, chunk order). The
 * current states stay current. absmean of a band outside
 * ml_batch_absmean_bands is NaN (not computed). */
moelat_status ml_batch_expert_outputs(moelat_lattice *lat, int chunk, float *const out[MOELAT_BANDS],
                            float *const mean[MOELAT_BANDS], float *const absmean[MOELAT_BANDS], float *gated);
/* 1 when band k's expert runs on the device (it has an OpenCL path that
 * built and prepared), 0 when the host evaluates it. */
int ml_batch_expert_on_device(const moelat_lattice *lat, int band);
/* Command queues of the device (0 without one). */
int ml_batch_queues(const moelat_lattice *lat);
/* Bit k when the aggregation computes band k's mean of |n_j| (its expert
 * does not declare MOELAT_CL_NO_ABSMEAN). */
int ml_batch_absmean_bands(const moelat_lattice *lat);

/* The batch-vs-host sample check (verify.c): one device step of the
 * lattice from its current states, compared on a sample of cells with
 * the host path; MOELAT_ERR_MISMATCH if they disagree. The current states
 * stay current. */
moelat_status ml_verify_sample(moelat_lattice *lat);

/* Monotonic clock in milliseconds. */
double ml_now_ms(void);

/* Useful FLOPs per cell update (flops.c documents the formula); part[5]
 * (aggregation, local, functional, distant, gate) may be NULL. */
double ml_flops_per_cell(const moelat_lattice *lat, double part[5]);

/* Report (report.c): one fallback and its reason. */
void ml_stats_fallback(moelat_lattice *lat, const char *reason);
/* Adds n cells' gate weights (w[i*MOELAT_BANDS + k]) to a routing
 * accumulator; ml_route_merge adds one accumulator to another. */
void ml_route_add(ml_route_acc *a, const float *w, size_t n);
void ml_route_merge(ml_route_acc *dst, const ml_route_acc *src);
/* Adds the cells of the listed chunks to lat->stats.route from w, the
 * lattice's N x MOELAT_BANDS gate weights (cell-major). */
void ml_route_add_chunks(moelat_lattice *lat, const float *w, const int *chunk_ids, int n);

#endif
