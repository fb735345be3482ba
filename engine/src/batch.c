/* The batched device path and the per-chunk batch adapter.
 *
 * States stay on the device in two buffers (Jacobi double buffering). A
 * step first resets the finite check and computes the row prefix sums of
 * the whole lattice (queue 0), then enqueues, for every device chunk:
 *   aggregate (queue q) -> each expert (queues q+1.., concurrently) -> gate
 *   and combine into the other buffer (queue q, waiting on the experts; it
 *   also counts non-finite cells, read back once at the end of the step)
 * with events for the dependencies, after each expert's once-per-step
 * precomputation. Chunks below the batch threshold, and chunks whose device
 * work fails, run per cell on the host in the same step; their results are
 * written into the device buffer so the step's output is whole. An expert
 * without a device path (or whose program does not build) is evaluated on
 * the host for the device chunks and its outputs uploaded before the gate.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_runtime.h"
#include "gate.h"
#include "host_ext.h"
#include "lattice_internal.h"
#include "log.h"
#include "early_reads.h"
#include "run_table.h"

#define MAX_SETS 8 /* chunk scratch sets in flight */

/* Device scratch of one chunk in flight. */
typedef struct chunk_set {
    cl_mem mean[MOELAT_BANDS], absmean[MOELAT_BANDS], count[MOELAT_BANDS];
    cl_mem out[MOELAT_BANDS];
    cl_mem scratch[MOELAT_BANDS]; /* experts' own per-chunk scratch, or NULL */
    cl_mem nu;
    cl_event last; /* gate event of the chunk that used the set last */
} chunk_set;

struct ml_batch {
    mlcl_context ctx;
    cl_program program;
    cl_kernel k_prefix, k_aggregate, k_gate;
    cl_program expert_program[MOELAT_BANDS];
    void *expert_state[MOELAT_BANDS];
    int expert_on_device[MOELAT_BANDS];
    cl_mem states[2];
    int cur;
    cl_mem ext;
    cl_mem offsets[MOELAT_BANDS];
    cl_mem params[MOELAT_BANDS];
    cl_mem gate;
    cl_mem check; /* the gate's finite check: {cells, lowest cell} */
    /* Aggregation by row prefix sums (see moelat_step.cl): the run table
     * built from the stencil, and the prefix sums of n and |n|, N*S floats
     * each. direct: bit k when band k is summed neighbour by neighbour (all
     * bands when the prefix buffers could not be had). */
    cl_mem rows, segs, prefix[2];
    int n_rows, direct;
    int absmask; /* bit k when band k's mean of |n_j| is computed (its expert reads it) */
    int32_t prefix_halo; /* planes beyond the active ones the prefix pass covers */
    cl_event step_start; /* this step's check reset and prefix, NULL outside a step */
    chunk_set sets[MAX_SETS];
    int n_sets;
    int max_chunk_cells;
    int work_group; /* lanes per cell of the work-group kernels (MOELAT_WG) */
    int agg_vector; /* state values per work-item of ml_aggregate (ML_AGG_V) */
    int gate_cells; /* chunk cells per work-group of ml_gate_combine (ML_GATE_T) */
    moelat_status last_status;
    float *host_expert_out; /* max_chunk_cells x S, for host-evaluated experts */
    const moelat_expert_descriptor *desc[MOELAT_BANDS]; /* to release expert_state */
};

/* State values per work-item of ml_aggregate (moelat_step.cl's ML_AGG_V):
 * a float4 when S allows, or MOELAT_AGG_VECTOR (a tuning knob: 1, 4, 8 or
 * 16 dividing S; tools/bench/NOTES.md items 21-22). */
static int aggregate_vector(const moelat_lattice *lat) {
    const char *env = getenv("MOELAT_AGG_VECTOR");
    if (env && *env) {
        int v = atoi(env);
        if ((v == 1 || v == 4 || v == 8 || v == 16) && lat->S % v == 0)
            return v;
        ML_WARN("batch", "MOELAT_AGG_VECTOR=%s is not 1, 4, 8 or 16 dividing the state size %d: ignored", env,
                lat->S);
    }
    return lat->S % 4 == 0 ? 4 : 1;
}

/* Bands whose mean of |n_j| the aggregation computes: those whose expert
 * does not declare MOELAT_CL_NO_ABSMEAN (MOELAT_AGG_ABSMEAN=all: every
 * band, as before the flag, for timing and tests). */
static int absmean_bands(const moelat_lattice *lat) {
    const char *env = getenv("MOELAT_AGG_ABSMEAN");
    int mask = 0;
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (!(lat->expert[k].desc->cl_flags & MOELAT_CL_NO_ABSMEAN))
            mask |= 1 << k;
    if (env && strcmp(env, "all") == 0)
        return (1 << MOELAT_BANDS) - 1;
    if (env && *env)
        ML_WARN("batch", "MOELAT_AGG_ABSMEAN=%s is not 'all': ignored", env);
    return mask;
}

static int cl_check(moelat_lattice *lat, cl_int rc, const char *what) {
    if (rc == CL_SUCCESS)
        return 0;
    ml_fail(lat, MOELAT_ERR_DEVICE, "%s on %s failed: %s", what, lat->device_name,
            mlcl_error_name(rc));
    if (lat->batch)
        lat->batch->last_status = MOELAT_ERR_DEVICE;
    return -1;
}

static void release_sets(ml_batch *b) {
    for (int i = 0; i < b->n_sets; i++) {
        chunk_set *s = &b->sets[i];
        for (int k = 0; k < MOELAT_BANDS; k++) {
            mlcl_release_buffer(s->mean[k]);
            mlcl_release_buffer(s->absmean[k]);
            mlcl_release_buffer(s->count[k]);
            mlcl_release_buffer(s->out[k]);
            mlcl_release_buffer(s->scratch[k]);
        }
        mlcl_release_buffer(s->nu);
        if (s->last)
            clReleaseEvent(s->last);
        memset(s, 0, sizeof *s);
    }
    b->n_sets = 0;
}

void ml_batch_destroy(ml_batch *b) {
    if (!b)
        return;
    for (int q = 0; q < b->ctx.n_queues; q++)
        if (b->ctx.queues[q])
            clFinish(b->ctx.queues[q]);
    release_sets(b);
    for (int k = 0; k < MOELAT_BANDS; k++) {
        if (b->expert_state[k] && b->desc[k] && b->desc[k]->cl_release)
            b->desc[k]->cl_release(b->expert_state[k]);
        b->expert_state[k] = NULL;
        mlcl_release_buffer(b->offsets[k]);
        mlcl_release_buffer(b->params[k]);
    }
    for (int i = 0; i < 2; i++)
        mlcl_release_buffer(b->states[i]);
    mlcl_release_buffer(b->ext);
    mlcl_release_buffer(b->gate);
    mlcl_release_buffer(b->check);
    mlcl_release_buffer(b->rows);
    mlcl_release_buffer(b->segs);
    for (int i = 0; i < 2; i++)
        mlcl_release_buffer(b->prefix[i]);
    if (b->step_start)
        clReleaseEvent(b->step_start);
    if (b->k_prefix)
        clReleaseKernel(b->k_prefix);
    if (b->k_aggregate)
        clReleaseKernel(b->k_aggregate);
    if (b->k_gate)
        clReleaseKernel(b->k_gate);
    if (b->program)
        clReleaseProgram(b->program);
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (b->expert_program[k])
            clReleaseProgram(b->expert_program[k]);
    free(b->host_expert_out);
    mlcl_context_release(&b->ctx);
    free(b);
}


static int alloc_sets(moelat_lattice *lat, ml_batch *b, int max_cells) {
    cl_int rc = CL_SUCCESS;
    size_t fl = (size_t)max_cells * lat->S * sizeof(float);
    size_t in = (size_t)max_cells * sizeof(cl_int);
    int want = lat->n_chunks < MAX_SETS ? lat->n_chunks : MAX_SETS;
    if (want < 1)
        want = 1;
    for (int i = 0; i < want; i++) {
        chunk_set *s = &b->sets[i];
        b->n_sets = i + 1;
        for (int k = 0; k < MOELAT_BANDS && rc == CL_SUCCESS; k++) {
            s->mean[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, fl, NULL, &rc);
            if (rc == CL_SUCCESS)
                s->absmean[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, fl, NULL, &rc);
            if (rc == CL_SUCCESS)
                s->count[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, in, NULL, &rc);
            if (rc == CL_SUCCESS)
                s->out[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, fl, NULL, &rc);
            const moelat_expert_descriptor *d = lat->expert[k].desc;
            size_t per_cell = d->cl_scratch_floats ? d->cl_scratch_floats(&lat->expert[k].dims) : 0;
            if (rc == CL_SUCCESS && per_cell > 0)
                s->scratch[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE,
                                                   (size_t)max_cells * per_cell * sizeof(float), NULL, &rc);
        }
        if (rc == CL_SUCCESS)
            s->nu = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, fl, NULL, &rc);
        if (rc != CL_SUCCESS) {
            /* Fewer sets still work; none does not. */
            ml_fail(lat, MOELAT_ERR_DEVICE, "allocating chunk buffers for %d cells failed: %s",
                    max_cells, mlcl_error_name(rc));
            if (i == 0) {
                release_sets(b);
                return -1;
            }
            for (int k = 0; k < MOELAT_BANDS; k++) {
                mlcl_release_buffer(s->mean[k]);
                mlcl_release_buffer(s->absmean[k]);
                mlcl_release_buffer(s->count[k]);
                mlcl_release_buffer(s->out[k]);
                mlcl_release_buffer(s->scratch[k]);
            }
            mlcl_release_buffer(s->nu);
            memset(s, 0, sizeof *s);
            b->n_sets = i;
            break;
        }
    }
    return 0;
}

/* Lanes per cell: enough for the state's S values in one pass, at least a
 * warp/wavefront-sized 32, at most 128 and what the device allows.
 * MOELAT_WORK_GROUP (a tuning knob: a power of two from 32 to 256)
 * replaces the first choice. */
static int work_group_size(int S, size_t device_max) {
    int wg = 32;
    while (wg < S && wg < 128)
        wg *= 2;
    const char *env = getenv("MOELAT_WORK_GROUP");
    if (env && *env) {
        int v = atoi(env);
        if (v >= 32 && v <= 256 && (v & (v - 1)) == 0)
            wg = v;
        else
            ML_WARN("batch", "MOELAT_WORK_GROUP=%s is not a power of two from 32 to 256: ignored", env);
    }
    while (device_max > 0 && (size_t)wg > device_max && wg > 1)
        wg /= 2;
    return wg;
}

static int max_chunk_cells(const moelat_lattice *lat) {
    int m = 1;
    for (int c = 0; c < lat->n_chunks; c++)
        if (lat->chunks[c].n_cells > m)
            m = lat->chunks[c].n_cells;
    return m;
}

/* The masked lane index (moelat_helpers.cl's ML_LANE_MASK) on NVIDIA's
 * OpenCL from 64 lanes, where with functional_edges' addressing it took
 * the experiment 40^3 step (64 lanes) from 9.50 to 8.74 ms on the H200
 * (tools/bench/NOTES.md item 42); at 32 lanes (debug) it is untimed.
 * Off elsewhere: PoCL 3.1 computes some kernels wrong with it (the CNF at
 * 32 lanes, the functional expert at 3 cells per group), other drivers
 * are unmeasured. MOELAT_CL_OPTIONS naming ML_LANE_MASK decides instead. */
static const char *lane_mask_option(const mlcl_device_info *dev, int work_group, const char *extra) {
    if (extra && strstr(extra, "ML_LANE_MASK"))
        return "";
    return work_group >= 64 && strstr(dev->vendor, "NVIDIA") ? "-D ML_LANE_MASK=1" : "";
}

/* Builds one expert's program and device state; on failure the expert is
 * evaluated on the host (the reason is logged and counted). */
static void prepare_expert(moelat_lattice *lat, ml_batch *b, int k) {
    const ml_expert_slot *e = &lat->expert[k];
    const moelat_expert_descriptor *d = e->desc;
    char reason[512];
    b->expert_on_device[k] = 0;
    b->desc[k] = d;
    if (!d->cl_source || !d->cl_enqueue || !d->cl_prepare) {
        snprintf(reason, sizeof reason, "expert '%s' has no OpenCL path: band %s runs on the host",
                 d->name, moelat_band_name(k));
        ml_stats_fallback(lat, reason);
        return;
    }
    const char *helpers = mlcl_embedded_source("moelat_helpers.cl");
    size_t len = strlen(helpers) + strlen(d->cl_source) + 2;
    char *src = malloc(len);
    char *opts = malloc(4096);
    if (!src || !opts) {
        free(src);
        free(opts);
        ml_stats_fallback(lat, "out of host memory building an expert program");
        return;
    }
    snprintf(src, len, "%s\n%s", helpers, d->cl_source);
    /* MOELAT_CL_OPTIONS: extra compiler options for every program. */
    const char *extra = getenv("MOELAT_CL_OPTIONS");
    int pos = snprintf(opts, 4096,
                       "-cl-std=CL1.2 -D MOELAT_S=%d -D MOELAT_E=%d -D MOELAT_CNF_STEPS=%d -D MOELAT_CNF_MODE=%d "
                       "-D MOELAT_WG=%d -D MOELAT_LOCAL_MEM=%llu %s",
                       lat->S, lat->E, e->dims.cnf_steps, e->dims.cnf_mode, b->work_group,
                       (unsigned long long)b->ctx.info.local_mem_bytes,
                       lane_mask_option(&b->ctx.info, b->work_group, extra));
    for (int h = 0; h < MOELAT_MAX_HIDDEN && d->hidden_names[h] && pos < 4000; h++)
        pos += snprintf(opts + pos, (size_t)(4096 - pos), " -D MOELAT_H_%s=%d", d->hidden_names[h],
                        e->dims.hidden[h]);
    if (extra && pos < 4000)
        snprintf(opts + pos, (size_t)(4096 - pos), " %s", extra);
    char name[128], err[8192];
    snprintf(name, sizeof name, "expert_%s", d->name);
    int rc = mlcl_build_program(&b->ctx, name, src, opts, &b->expert_program[k], err, sizeof err);
    free(src);
    free(opts);
    if (rc != 0) {
        ML_ERROR("batch", "%s", err);
        snprintf(reason, sizeof reason, "program of expert '%s' failed to build: band %s runs on the host",
                 d->name, moelat_band_name(k));
        ml_stats_fallback(lat, reason);
        return;
    }
    moelat_cl_setup setup = {
        .struct_size = sizeof setup,
        .context = b->ctx.context,
        .device = b->ctx.info.device,
        .program = b->expert_program[k],
        .dims = &e->dims,
        .params = b->params[k],
        .tensor_offsets = e->params.offsets,
        .n_tensors = e->params.n_tensors,
        .lattice = {lat->X, lat->Y, lat->Z},
        .max_chunk_cells = b->max_chunk_cells,
        .work_group = b->work_group,
        .tuning = ml_expert_tuning(),
    };
    if (d->cl_prepare(&setup, &b->expert_state[k]) != MOELAT_EXPERT_OK) {
        b->expert_state[k] = NULL;
        snprintf(reason, sizeof reason, "expert '%s' failed to prepare its device state: band %s runs on the host",
                 d->name, moelat_band_name(k));
        ml_stats_fallback(lat, reason);
        return;
    }
    b->expert_on_device[k] = 1;
}

static int upload_stencil(moelat_lattice *lat, ml_batch *b) {
    for (int k = 0; k < MOELAT_BANDS; k++) {
        cl_int rc;
        size_t n = (size_t)(lat->stencil.count[k] > 0 ? lat->stencil.count[k] : 1);
        b->offsets[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                           n * sizeof(ml_offset),
                                           lat->stencil.count[k] > 0 ? (void *)lat->stencil.band[k]
                                                                     : (void *)&(ml_offset){0, 0, 0, 0},
                                           &rc);
        if (cl_check(lat, rc, "uploading the stencil"))
            return -1;
    }
    return 0;
}

/* Everything aggregation by prefix sums needs, after the chunk buffers so
 * that those get the memory first. Any failure leaves every band summed
 * neighbour by neighbour, which is slower but the same function. */
static void setup_prefix(moelat_lattice *lat, ml_batch *b) {
    size_t bytes = lat->N * (size_t)lat->S * sizeof(float);
    cl_int *rows = NULL, *segs = NULL;
    int n_rows = 0, n_segs = 0, direct = 0;
    cl_int rc = CL_SUCCESS;
    const char *why = NULL;
    b->direct = (1 << MOELAT_BANDS) - 1;
    b->n_rows = 0;
    b->prefix_halo = moelat_lattice_halo_depth(lat);
    /* Two state buffers and two prefix buffers must fit. */
    if (4 * (cl_ulong)bytes > b->ctx.info.global_mem_bytes || (cl_ulong)bytes > b->ctx.info.max_alloc_bytes) {
        why = "the prefix buffers do not fit in device memory";
        goto out;
    }
    if (ml_run_table_build(&lat->stencil, &rows, &n_rows, &segs, &n_segs, &direct) != 0) {
        why = "out of host memory building the run table";
        goto out;
    }
    b->rows = mlcl_create_buffer(&b->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                 (size_t)(n_rows > 0 ? n_rows : 1) * 4 * sizeof(cl_int),
                                 n_rows > 0 ? (void *)rows : (void *)(cl_int[4]){0, 0, 0, 0}, &rc);
    if (rc == CL_SUCCESS)
        b->segs = mlcl_create_buffer(&b->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                     (size_t)(n_segs > 0 ? n_segs : 1) * 2 * sizeof(cl_int),
                                     n_segs > 0 ? (void *)segs : (void *)(cl_int[2]){0, -1}, &rc);
    for (int i = 0; i < 2 && rc == CL_SUCCESS; i++)
        b->prefix[i] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, bytes, NULL, &rc);
    if (rc != CL_SUCCESS) {
        why = mlcl_error_name(rc);
        goto out;
    }
    b->direct = direct;
    b->n_rows = n_rows;
    if (direct)
        ML_WARN("batch", "bands with mask %d are summed neighbour by neighbour: the run table cannot express them",
                direct);
    ML_DEBUG("batch", "aggregation by row prefix sums: %d rows, %d endpoints", n_rows, n_segs);
out:
    free(rows);
    free(segs);
    if (why) {
        mlcl_release_buffer(b->rows);
        mlcl_release_buffer(b->segs);
        for (int i = 0; i < 2; i++)
            mlcl_release_buffer(b->prefix[i]);
        b->rows = b->segs = b->prefix[0] = b->prefix[1] = NULL;
        ML_WARN("batch", "aggregation sums every neighbour (%s)", why);
    }
}

static int create_params(moelat_lattice *lat, ml_batch *b) {
    cl_int rc;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        size_t n = lat->expert[k].params.n_floats;
        b->params[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_ONLY, (n ? n : 1) * sizeof(float), NULL, &rc);
        if (cl_check(lat, rc, "allocating expert parameters"))
            return -1;
    }
    b->gate = mlcl_create_buffer(&b->ctx, CL_MEM_READ_ONLY, lat->gate.n_floats * sizeof(float), NULL, &rc);
    return cl_check(lat, rc, "allocating gate parameters");
}

int ml_batch_upload_weights(moelat_lattice *lat) {
    ml_batch *b = lat->batch;
    if (!b)
        return 0;
    cl_command_queue q = b->ctx.queues[0];
    for (int k = 0; k < MOELAT_BANDS; k++) {
        size_t n = lat->expert[k].params.n_floats;
        if (n && cl_check(lat, clEnqueueWriteBuffer(q, b->params[k], CL_TRUE, 0, n * sizeof(float),
                                                    lat->expert[k].params.data, 0, NULL, NULL),
                          "uploading expert parameters"))
            return -1;
    }
    return cl_check(lat, clEnqueueWriteBuffer(q, b->gate, CL_TRUE, 0, lat->gate.n_floats * sizeof(float),
                                              lat->gate.data, 0, NULL, NULL),
                    "uploading gate parameters");
}

/* The gate's cells per work-group to ask the kernel for (it halves them
 * where its local arrays would not fit): 4, which halved the kernel's time
 * at S = 24, 64 and 128 on the H200 (tools/bench/NOTES.md item 35);
 * MOELAT_GATE_CELLS = 1, 2 or 4 chooses. */
static int gate_cells_wanted(void) {
    int t = 4;
    const char *env = getenv("MOELAT_GATE_CELLS");
    if (env && *env) {
        if (strcmp(env, "1") == 0 || strcmp(env, "2") == 0 || strcmp(env, "4") == 0)
            t = atoi(env);
        else
            ML_WARN("batch", "MOELAT_GATE_CELLS=%s is not 1, 2 or 4: ignored", env);
    }
    return t;
}

static int build_engine_program(moelat_lattice *lat, ml_batch *b) {
    const char *helpers = mlcl_embedded_source("moelat_helpers.cl");
    const char *step = mlcl_embedded_source("moelat_step.cl");
    if (!helpers || !step)
        return ml_fail(lat, MOELAT_ERR_DEVICE, "kernel sources are missing from this build"), -1;
    size_t len = strlen(helpers) + strlen(step) + 2;
    char *src = malloc(len);
    if (!src)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory"), -1;
    snprintf(src, len, "%s\n%s", helpers, step);
    char opts[1024];
    const char *extra = getenv("MOELAT_CL_OPTIONS");
    const char *lane_mask = lane_mask_option(&b->ctx.info, b->work_group, extra);
    b->agg_vector = aggregate_vector(lat);
    b->absmask = absmean_bands(lat);
    ML_INFO("batch", "aggregation: %d state value%s per work-item", b->agg_vector, b->agg_vector > 1 ? "s" : "");
    snprintf(opts, sizeof opts,
             "-cl-std=CL1.2 -D MOELAT_S=%d -D MOELAT_GH=%d -D MOELAT_WG=%d -D ML_AGG_V=%d -D ML_GATE_CELLS=%d "
             "-D MOELAT_LOCAL_MEM=%llu %s %s",
             lat->S, lat->gate_hidden, b->work_group, b->agg_vector, gate_cells_wanted(),
             (unsigned long long)b->ctx.info.local_mem_bytes, lane_mask, extra ? extra : "");
    if (*lane_mask)
        ML_INFO("batch", "lane index masked to its range (ML_LANE_MASK, on NVIDIA)");
    int rc = mlcl_build_program(&b->ctx, "moelat_step.cl", src, opts, &b->program, lat->err, sizeof lat->err);
    free(src);
    if (rc != 0)
        return -1;
    cl_int e1, e2, e3;
    b->k_prefix = clCreateKernel(b->program, "ml_row_prefix", &e1);
    b->k_aggregate = clCreateKernel(b->program, "ml_aggregate", &e2);
    b->k_gate = clCreateKernel(b->program, "ml_gate_combine", &e3);
    if (cl_check(lat, e1, "creating kernel ml_row_prefix") || cl_check(lat, e2, "creating kernel ml_aggregate") ||
        cl_check(lat, e3, "creating kernel ml_gate_combine"))
        return -1;
    /* The kernel may have lowered the cells per group to fit local memory. */
    cl_kernel probe = clCreateKernel(b->program, "ml_gate_cells_per_group", &e1);
    if (cl_check(lat, e1, "creating kernel ml_gate_cells_per_group"))
        return -1;
    size_t wg[3] = {0, 0, 0};
    e1 = clGetKernelWorkGroupInfo(probe, b->ctx.info.device, CL_KERNEL_COMPILE_WORK_GROUP_SIZE, sizeof wg, wg, NULL);
    clReleaseKernel(probe);
    if (cl_check(lat, e1, "reading the gate's cells per work-group (ml_gate_cells_per_group)"))
        return -1;
    b->gate_cells = wg[0] >= 1 ? (int)wg[0] : 1;
    ML_INFO("batch", "gate: %d cell%s per work-group", b->gate_cells, b->gate_cells > 1 ? "s" : "");
    return 0;
}

int ml_batch_create(moelat_lattice *lat, ml_batch **out) {
    *out = NULL;
    ml_batch *b = calloc(1, sizeof *b);
    if (!b)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory"), -1;
    char err[4096];
    mlcl_device_info dev;
    if (mlcl_select_device(lat->cfg.device, &dev, err, sizeof err) != 0) {
        ml_fail(lat, MOELAT_ERR_DEVICE, "%s", err);
        free(b);
        return -1;
    }
    int nq = lat->cfg.queues > 0 ? lat->cfg.queues : 2;
    if (nq > MLCL_MAX_QUEUES)
        nq = MLCL_MAX_QUEUES;
    if (mlcl_context_create(&dev, nq, lat->cfg.profile, &b->ctx, err, sizeof err) != 0) {
        ml_fail(lat, MOELAT_ERR_DEVICE, "%s", err);
        free(b);
        return -1;
    }
    snprintf(lat->device_name, sizeof lat->device_name, "%s", dev.name);
    b->last_status = MOELAT_ERR_DEVICE;
    b->work_group = work_group_size(lat->S, dev.max_work_group_size);

    /* Default chunks from the device's memory unless the user chose them. */
    if (!(lat->cfg.chunk[0] > 0 && lat->cfg.chunk[1] > 0 && lat->cfg.chunk[2] > 0)) {
        int32_t size[3];
        ml_chunks_default_size(lat->cfg.dims, lat->S, dev.global_mem_bytes, size);
        if (memcmp(size, lat->chunk_size, sizeof size) != 0)
            ml_lattice_rechunk(lat, size, lat->active_z0, lat->active_z1); /* on failure the old chunks stay */
    }
    cl_int rc;
    size_t bytes = lat->N * (size_t)lat->S * sizeof(float);
    /* States stay whole on the device (two buffers); say so plainly when
     * they cannot, rather than with the driver's error code. */
    if ((cl_ulong)bytes > dev.max_alloc_bytes || 2 * (cl_ulong)bytes > dev.global_mem_bytes) {
        ml_fail(lat, MOELAT_ERR_DEVICE,
                "states of %zu bytes exceed what %s holds (largest buffer %llu bytes, memory %llu bytes, two state "
                "buffers needed); use --mode percell or a smaller lattice",
                bytes, dev.name, (unsigned long long)dev.max_alloc_bytes, (unsigned long long)dev.global_mem_bytes);
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        b->states[i] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, bytes, NULL, &rc);
        if (rc != CL_SUCCESS) {
            ml_fail(lat, MOELAT_ERR_DEVICE, "allocating %zu bytes of states on %s failed: %s", bytes,
                    dev.name, mlcl_error_name(rc));
            goto fail;
        }
    }
    b->ext = mlcl_create_buffer(&b->ctx, CL_MEM_READ_ONLY, (size_t)lat->X * lat->Y * lat->E * sizeof(float), NULL, &rc);
    if (cl_check(lat, rc, "allocating the external input"))
        goto fail;
    b->check = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, 2 * sizeof(cl_int), NULL, &rc);
    if (cl_check(lat, rc, "allocating the finite check"))
        goto fail;
    if (upload_stencil(lat, b) || create_params(lat, b) || build_engine_program(lat, b))
        goto fail;

    /* On an allocation failure halve the chunks and retry. */
    for (;;) {
        b->max_chunk_cells = max_chunk_cells(lat);
        if (alloc_sets(lat, b, b->max_chunk_cells) == 0)
            break;
        int32_t size[3];
        memcpy(size, lat->chunk_size, sizeof size);
        int axis = size[2] > 1 ? 2 : size[1] > 1 ? 1 : 0;
        if (size[axis] <= 1)
            goto fail;
        size[axis] = (size[axis] + 1) / 2;
        ML_WARN("batch", "%s; retrying with chunks of %dx%dx%d", lat->err, size[0], size[1], size[2]);
        if (ml_lattice_rechunk(lat, size, lat->active_z0, lat->active_z1) != 0)
            goto fail;
    }
    b->host_expert_out = malloc((size_t)b->max_chunk_cells * lat->S * sizeof(float));
    if (!b->host_expert_out) {
        ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    setup_prefix(lat, b);
    lat->batch = b; /* prepare_expert uploads nothing, but logs through lat */
    for (int k = 0; k < MOELAT_BANDS; k++)
        prepare_expert(lat, b, k);
    lat->batch = NULL;
    ML_INFO("batch", "device %s, %d queues, %d chunks of up to %d cells (%dx%dx%d)", dev.name, nq,
            lat->n_chunks, b->max_chunk_cells, lat->chunk_size[0], lat->chunk_size[1], lat->chunk_size[2]);
    *out = b;
    return 0;
fail:
    ml_batch_destroy(b);
    return -1;
}

moelat_status ml_batch_last_status(const moelat_lattice *lat) {
    return lat->batch ? lat->batch->last_status : MOELAT_ERR_DEVICE;
}

int ml_batch_sync_to_host(moelat_lattice *lat) {
    ml_batch *b = lat->batch;
    if (!b || !lat->device_owns_states)
        return 0;
    if (cl_check(lat, clEnqueueReadBuffer(b->ctx.queues[0], b->states[b->cur], CL_TRUE, 0,
                                          lat->N * (size_t)lat->S * sizeof(float), lat->states, 0, NULL, NULL),
                 "reading states back"))
        return -1;
    lat->device_owns_states = 0;
    return 0;
}

int ml_batch_planes_io(moelat_lattice *lat, size_t offset, size_t count, float *dst, const float *src) {
    ml_batch *b = lat->batch;
    if (!b)
        return ml_fail(lat, MOELAT_ERR_DEVICE, "batch mode is not enabled"), -1;
    cl_command_queue q = b->ctx.queues[0];
    size_t off = offset * sizeof(float), bytes = count * sizeof(float);
    cl_int e = dst ? clEnqueueReadBuffer(q, b->states[b->cur], CL_TRUE, off, bytes, dst, 0, NULL, NULL)
                   : clEnqueueWriteBuffer(q, b->states[b->cur], CL_TRUE, off, bytes, src, 0, NULL, NULL);
    return cl_check(lat, e, dst ? "reading state planes" : "writing state planes");
}

static int upload_if_stale(moelat_lattice *lat, ml_batch *b) {
    cl_command_queue q = b->ctx.queues[0];
    if (lat->device_stale) {
        if (cl_check(lat, clEnqueueWriteBuffer(q, b->states[b->cur], CL_TRUE, 0,
                                               lat->N * (size_t)lat->S * sizeof(float), lat->states, 0, NULL, NULL),
                     "uploading states"))
            return -1;
        lat->device_stale = 0;
    }
    if (lat->ext_stale) {
        if (cl_check(lat, clEnqueueWriteBuffer(q, b->ext, CL_TRUE, 0, (size_t)lat->X * lat->Y * lat->E * sizeof(float),
                                               lat->ext, 0, NULL, NULL),
                     "uploading the external input"))
            return -1;
        lat->ext_stale = 0;
    }
    return 0;
}

#define SET_ARG(k, i, v)                                                        \
    do {                                                                        \
        cl_int _e = clSetKernelArg(k, i, sizeof(v), &(v));                      \
        if (_e != CL_SUCCESS)                                                   \
            return _e;                                                          \
    } while (0)

static cl_int set_aggregate_args(ml_batch *b, const moelat_lattice *lat, const ml_chunk *c, chunk_set *s) {
    cl_kernel k = b->k_aggregate;
    cl_int4 dims = {{lat->X, lat->Y, lat->Z, 0}};
    cl_int4 origin = {{c->origin[0], c->origin[1], c->origin[2], 0}};
    cl_int4 extent = {{c->extent[0], c->extent[1], c->extent[2], 0}};
    cl_int n = c->n_cells;
    cl_int n_rows = b->n_rows, direct = b->direct, absmask = b->absmask;
    /* Without the prefix buffers every band is direct and the table args
     * are never read; any buffer does for them. */
    cl_mem pre_n = b->prefix[0] ? b->prefix[0] : b->states[b->cur];
    cl_mem pre_a = b->prefix[1] ? b->prefix[1] : b->states[b->cur];
    cl_mem rows = b->rows ? b->rows : b->offsets[0];
    cl_mem segs = b->segs ? b->segs : b->offsets[0];
    int a = 0;
    SET_ARG(k, a++, b->states[b->cur]);
    SET_ARG(k, a++, pre_n);
    SET_ARG(k, a++, pre_a);
    SET_ARG(k, a++, rows);
    SET_ARG(k, a++, n_rows);
    SET_ARG(k, a++, segs);
    SET_ARG(k, a++, dims);
    SET_ARG(k, a++, origin);
    SET_ARG(k, a++, extent);
    SET_ARG(k, a++, n);
    SET_ARG(k, a++, direct);
    SET_ARG(k, a++, absmask);
    for (int band = 0; band < MOELAT_BANDS; band++) {
        cl_int cnt = lat->stencil.count[band];
        SET_ARG(k, a++, b->offsets[band]);
        SET_ARG(k, a++, cnt);
    }
    for (int band = 0; band < MOELAT_BANDS; band++)
        SET_ARG(k, a++, s->mean[band]);
    for (int band = 0; band < MOELAT_BANDS; band++)
        SET_ARG(k, a++, s->absmean[band]);
    for (int band = 0; band < MOELAT_BANDS; band++)
        SET_ARG(k, a++, s->count[band]);
    SET_ARG(k, a++, s->nu);
    return CL_SUCCESS;
}

static cl_int set_gate_args(ml_batch *b, const moelat_lattice *lat, const ml_chunk *c, chunk_set *s,
                            cl_mem next) {
    cl_kernel k = b->k_gate;
    cl_int4 dims = {{lat->X, lat->Y, lat->Z, 0}};
    cl_int4 origin = {{c->origin[0], c->origin[1], c->origin[2], 0}};
    cl_int4 extent = {{c->extent[0], c->extent[1], c->extent[2], 0}};
    cl_int n = c->n_cells;
    int a = 0;
    SET_ARG(k, a++, b->states[b->cur]);
    SET_ARG(k, a++, next);
    SET_ARG(k, a++, dims);
    SET_ARG(k, a++, origin);
    SET_ARG(k, a++, extent);
    SET_ARG(k, a++, n);
    SET_ARG(k, a++, s->nu);
    for (int band = 0; band < MOELAT_BANDS; band++)
        SET_ARG(k, a++, s->out[band]);
    for (int band = 0; band < MOELAT_BANDS; band++)
        SET_ARG(k, a++, s->count[band]);
    SET_ARG(k, a++, b->gate);
    for (int t = 0; t < GATE_N_TENSORS; t++) {
        cl_int off = (cl_int)lat->gate.offsets[t];
        SET_ARG(k, a++, off);
    }
    SET_ARG(k, a++, b->check);
    return CL_SUCCESS;
}

/* Global size of the one-work-item-per-(cell, s) kernels: items rounded up
 * to whole work-groups of MOELAT_WG (the kernels return past the end). */
static size_t round_to_wg(const ml_batch *b, size_t items) {
    size_t wg = (size_t)b->work_group;
    return (items + wg - 1) / wg * wg;
}

/* Sets the arguments of chunk c's aggregation and enqueues it on q: one
 * work-item per cell and b->agg_vector state values. */
static cl_int enqueue_aggregate(ml_batch *b, const moelat_lattice *lat, const ml_chunk *c, chunk_set *s,
                                cl_command_queue q, cl_uint n_wait, const cl_event *wait, cl_event *done) {
    cl_int e = set_aggregate_args(b, lat, c, s);
    if (e != CL_SUCCESS)
        return e;
    size_t local = (size_t)b->work_group;
    size_t global = round_to_wg(b, (size_t)c->n_cells * (size_t)(lat->S / b->agg_vector));
    return mlcl_enqueue_kernel(q, b->k_aggregate, 1, &global, &local, n_wait, wait, done);
}

/* Sets the arguments of chunk c's gate and update (into next) and
 * enqueues it on q: one work-group per gate_cells cells (the last may hold fewer). */
static cl_int enqueue_gate(ml_batch *b, const moelat_lattice *lat, const ml_chunk *c, chunk_set *s, cl_mem next,
                           cl_command_queue q, cl_uint n_wait, const cl_event *wait, cl_event *done) {
    cl_int e = set_gate_args(b, lat, c, s, next);
    if (e != CL_SUCCESS)
        return e;
    size_t local = (size_t)b->work_group;
    size_t global = (size_t)((c->n_cells + b->gate_cells - 1) / b->gate_cells) * local;
    return mlcl_enqueue_kernel(q, b->k_gate, 1, &global, &local, n_wait, wait, done);
}

/* Enqueues the row prefix sums of the current states on q (nothing when
 * every band is summed directly). */
static cl_int enqueue_prefix(ml_batch *b, const moelat_lattice *lat, cl_command_queue q, cl_uint n_wait,
                             const cl_event *wait, cl_event *done) {
    if (!b->prefix[0]) {
        *done = NULL;
        return CL_SUCCESS;
    }
    cl_kernel k = b->k_prefix;
    cl_int4 dims = {{lat->X, lat->Y, lat->Z, 0}};
    /* Only the planes the active ones read (a slab and its halos): the
     * other planes of a slab owner's lattice are never aggregated. */
    int32_t h = b->prefix_halo;
    int32_t z0 = lat->active_z0 > h ? lat->active_z0 - h : 0;
    int32_t z1 = lat->active_z1 + h < lat->Z ? lat->active_z1 + h : lat->Z;
    cl_int2 rows = {{z0 * lat->Y, z1 * lat->Y}};
    size_t local = (size_t)b->work_group;
    size_t global = round_to_wg(b, (size_t)(rows.s[1] - rows.s[0]) * lat->S);
    int a = 0;
    SET_ARG(k, a++, b->states[b->cur]);
    SET_ARG(k, a++, dims);
    SET_ARG(k, a++, rows);
    SET_ARG(k, a++, b->prefix[0]);
    SET_ARG(k, a++, b->prefix[1]);
    return mlcl_enqueue_kernel(q, k, 1, &global, &local, n_wait, wait, done);
}

/* Events of one step, released at its end. */
typedef struct step_events {
    cl_event *ev;
    cl_event *first; /* an expert's first command when it reported one, else NULL */
    int *kind; /* 0..2 expert band, 3 aggregate, 4 gate, 5 precompute */
    int n, cap;
} step_events;

/* Keeps ev (and first, its expert's first command, when not NULL) for the
 * step's accounting; the caller keeps its own references. */
static void keep_span(step_events *se, cl_event first, cl_event ev, int kind) {
    if (!ev)
        return;
    if (se->n == se->cap) {
        int cap = se->cap ? se->cap * 2 : 64;
        cl_event *e = realloc(se->ev, (size_t)cap * sizeof *e);
        if (e)
            se->ev = e;
        cl_event *f = e ? realloc(se->first, (size_t)cap * sizeof *f) : NULL;
        if (f)
            se->first = f;
        int *k = f ? realloc(se->kind, (size_t)cap * sizeof *k) : NULL;
        if (!k)
            return; /* losing a profiling record is harmless; nothing was retained yet */
        se->kind = k;
        se->cap = cap;
    }
    clRetainEvent(ev);
    if (first)
        clRetainEvent(first);
    se->ev[se->n] = ev;
    se->first[se->n] = first;
    se->kind[se->n++] = kind;
}

static void keep_event(step_events *se, cl_event ev, int kind) { keep_span(se, NULL, ev, kind); }

static void account_events(moelat_lattice *lat, step_events *se) {
    for (int i = 0; i < se->n; i++) {
        double ms = se->first[i] ? mlcl_span_ms(se->first[i], se->ev[i]) : mlcl_event_ms(se->ev[i]);
        if (se->first[i])
            clReleaseEvent(se->first[i]);
        int k = se->kind[i];
        if (k < MOELAT_BANDS) {
            lat->stats.expert_device_ms[k] += ms;
            lat->stats.expert_calls[k]++;
        } else if (k == 3) {
            lat->stats.aggregate_device_ms += ms;
        } else if (k == 4) {
            lat->stats.gate_device_ms += ms;
        } else {
            lat->stats.precompute_device_ms += ms;
        }
        clReleaseEvent(se->ev[i]);
    }
    free(se->ev);
    free(se->first);
    free(se->kind);
    memset(se, 0, sizeof *se);
}

/* Evaluates band k's expert on the host for every cell of chunk c and
 * writes the outputs into the chunk set's out[k] (a device expert's job). */
static int host_expert_chunk(moelat_lattice *lat, ml_batch *b, int k, const ml_chunk *c, chunk_set *s,
                             cl_command_queue q, cl_event wait, cl_event *done) {
    if (ml_percell_expert_chunk(lat, k, c, lat->states, b->host_expert_out) != 0)
        return -2; /* the expert itself failed: no device fallback helps */
    cl_int rc = clEnqueueWriteBuffer(q, s->out[k], CL_FALSE, 0, (size_t)c->n_cells * lat->S * sizeof(float),
                                     b->host_expert_out, wait ? 1 : 0, wait ? &wait : NULL, done);
    if (rc == CL_SUCCESS)
        rc = clWaitForEvents(1, done); /* host_expert_out is reused by the next chunk */
    return cl_check(lat, rc, "uploading host expert outputs");
}

/* The call that hands chunk c, with its scratch set s, to band k's expert. */
static moelat_cl_chunk chunk_call(const moelat_lattice *lat, const ml_batch *b, int k, const ml_chunk *c,
                                  const chunk_set *s, cl_command_queue q, const cl_event *wait, int n_wait,
                                  cl_event *done, cl_event *first) {
    moelat_cl_chunk ch = {
        .struct_size = sizeof ch,
        .queue = q,
        .states = b->states[b->cur],
        .ext = b->ext,
        .offsets = b->offsets[k],
        .n_offsets = lat->stencil.count[k],
        .origin = {c->origin[0], c->origin[1], c->origin[2]},
        .extent = {c->extent[0], c->extent[1], c->extent[2]},
        .n_cells = c->n_cells,
        .band_mean = s->mean[k],
        .band_absmean = s->absmean[k],
        .band_count = s->count[k],
        .out = s->out[k],
        .scratch = s->scratch[k],
        .num_wait = (uint32_t)n_wait,
        .wait = (const struct _cl_event *const *)wait,
        .done = done,
        .first = first,
    };
    return ch;
}

/* Enqueues chunk c. Returns 0; -1 when its device work could not be
 * enqueued (lat->err says why; nothing of it writes the next buffer); -2
 * when an expert evaluated on the host failed (the step cannot go on). */
static int enqueue_chunk(moelat_lattice *lat, ml_batch *b, int ci, int qi, cl_event *pre, int n_pre,
                         step_events *se) {
    const ml_chunk *c = &lat->chunks[ci];
    chunk_set *s = &b->sets[ci % b->n_sets];
    int nq = b->ctx.n_queues;
    cl_command_queue q = b->ctx.queues[qi % nq];
    cl_event agg = NULL, gate = NULL, ex[MOELAT_BANDS] = {NULL, NULL, NULL};
    cl_event ex_first[MOELAT_BANDS] = {NULL, NULL, NULL}; /* set by experts of several commands */
    int rc = -1;
    cl_int e;

    /* The set's previous chunk must be done with it, and the step's check
     * reset and prefix sums must be done (they are on queue 0). */
    cl_event wait_agg[2];
    cl_uint n_wait_agg = 0;
    if (s->last)
        wait_agg[n_wait_agg++] = s->last;
    if (b->step_start)
        wait_agg[n_wait_agg++] = b->step_start;
    e = enqueue_aggregate(b, lat, c, s, q, n_wait_agg, n_wait_agg ? wait_agg : NULL, &agg);
    if (cl_check(lat, e, "enqueueing ml_aggregate"))
        goto out;
    keep_event(se, agg, 3);

    for (int k = 0; k < MOELAT_BANDS; k++) {
        cl_command_queue qk = b->ctx.queues[(qi + 1 + k) % nq];
        if (!b->expert_on_device[k]) {
            int hr = host_expert_chunk(lat, b, k, c, s, qk, agg, &ex[k]);
            if (hr != 0) {
                rc = hr;
                goto out;
            }
            continue;
        }
        cl_event waits[1 + MOELAT_BANDS];
        int nw = 0;
        waits[nw++] = agg;
        for (int p = 0; p < n_pre; p++)
            if (pre[p])
                waits[nw++] = pre[p];
        moelat_cl_chunk ch = chunk_call(lat, b, k, c, s, qk, waits, nw, &ex[k], &ex_first[k]);
        if (mlcl_fault_hit(MLCL_FAULT_ENQUEUE)) {
            ml_fail(lat, MOELAT_ERR_DEVICE, "expert '%s' enqueue failed: CL_OUT_OF_RESOURCES (injected)",
                    lat->expert[k].desc->name);
            goto out;
        }
        if (lat->expert[k].desc->cl_enqueue(b->expert_state[k], &ch) != MOELAT_EXPERT_OK) {
            ml_fail(lat, MOELAT_ERR_DEVICE, "expert '%s' failed to enqueue chunk %d", lat->expert[k].desc->name, ci);
            goto out;
        }
        keep_span(se, ex_first[k], ex[k], k);
    }
    cl_event waits[MOELAT_BANDS];
    int nw = 0;
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (ex[k])
            waits[nw++] = ex[k];
    e = enqueue_gate(b, lat, c, s, b->states[1 - b->cur], q, (cl_uint)nw, nw ? waits : NULL, &gate);
    if (cl_check(lat, e, "enqueueing ml_gate_combine"))
        goto out;
    keep_event(se, gate, 4);
    if (s->last)
        clReleaseEvent(s->last);
    s->last = gate;
    gate = NULL;
    rc = 0;
out:
    if (agg)
        clReleaseEvent(agg);
    for (int k = 0; k < MOELAT_BANDS; k++) {
        if (ex[k])
            clReleaseEvent(ex[k]);
        if (ex_first[k])
            clReleaseEvent(ex_first[k]);
    }
    if (gate)
        clReleaseEvent(gate);
    return rc;
}

/* Writes host-computed chunks of lat->next into the device's next buffer. */
static int upload_host_chunks(moelat_lattice *lat, ml_batch *b, const int *ids, int n) {
    cl_command_queue q = b->ctx.queues[0];
    size_t row = (size_t)lat->X * lat->S * sizeof(float);
    size_t slice = row * (size_t)lat->Y;
    for (int i = 0; i < n; i++) {
        const ml_chunk *c = &lat->chunks[ids[i]];
        size_t origin[3] = {(size_t)c->origin[0] * lat->S * sizeof(float), (size_t)c->origin[1], (size_t)c->origin[2]};
        size_t region[3] = {(size_t)c->extent[0] * lat->S * sizeof(float), (size_t)c->extent[1], (size_t)c->extent[2]};
        cl_int e = clEnqueueWriteBufferRect(q, b->states[1 - b->cur], CL_FALSE, origin, origin, region, row, slice,
                                            row, slice, lat->next, 0, NULL, NULL);
        if (cl_check(lat, e, "uploading host chunks"))
            return -1;
    }
    return cl_check(lat, clFinish(q), "uploading host chunks");
}

/* The values the finite check starts a step from: no cell, lowest INT_MAX.
 * Static: the write that uses them is non-blocking. */
static const cl_int check_init[2] = {0, INT_MAX};

/* Starts a step's device work on queue 0: resets the gate's finite check,
 * then the row prefix sums of the current states. b->step_start is the
 * event every chunk's aggregation waits for. */
static int begin_device_step(moelat_lattice *lat, ml_batch *b, step_events *se) {
    cl_command_queue q = b->ctx.queues[0];
    cl_event reset = NULL, prefix = NULL;
    cl_int e = clEnqueueWriteBuffer(q, b->check, CL_FALSE, 0, sizeof check_init, check_init, 0, NULL, &reset);
    if (cl_check(lat, e, "resetting the finite check"))
        return -1;
    e = enqueue_prefix(b, lat, q, 1, &reset, &prefix);
    if (cl_check(lat, e, "enqueueing ml_row_prefix")) {
        clReleaseEvent(reset);
        return -1;
    }
    if (prefix) {
        clReleaseEvent(reset);
        keep_event(se, prefix, 3); /* counted as aggregation */
        b->step_start = prefix;
    } else {
        b->step_start = reset;
    }
    return 0;
}

/* Reads the finite check the device chunks' gates filled (host chunks
 * stop on a non-finite value themselves). A blocking read after the
 * step's clFinish: a non-blocking read enqueued with the step into
 * ordinary memory cost ~70 us more per step on NVIDIA (the driver stages
 * it), and into pinned memory it gained nothing (tools/bench/NOTES.md
 * item 23). */
static int check_finite(moelat_lattice *lat, ml_batch *b) {
    cl_command_queue q = b->ctx.queues[0];
    cl_int res[2];
    cl_int e = clEnqueueReadBuffer(q, b->check, CL_TRUE, 0, sizeof res, res, 0, NULL, NULL);
    if (cl_check(lat, e, "checking states for NaN and Inf"))
        return -1;
    if (res[0] > 0) {
        size_t i = (size_t)res[1];
        ml_fail(lat, MOELAT_ERR_NONFINITE, "%d cells hold non-finite states, the first at cell (%d, %d, %d)", res[0],
                (int)(i % (size_t)lat->X), (int)((i / (size_t)lat->X) % (size_t)lat->Y),
                (int)(i / ((size_t)lat->X * lat->Y)));
        b->last_status = MOELAT_ERR_NONFINITE;
        return -1;
    }
    return 0;
}

/* Which chunks go to the device this step. */
static int chunk_wants_device(const moelat_lattice *lat, const ml_chunk *c) {
    if (c->n_cells < lat->batch_threshold)
        return 0;
    if (lat->mode == MOELAT_MODE_AUTO) {
        const ml_stats *s = &lat->stats;
        double dev = s->batch_ms > 0 ? (double)s->batch_cells / s->batch_ms : 0;
        double host = s->percell_ms > 0 ? (double)s->percell_cells / s->percell_ms : 0;
        /* Measure both paths first; then keep the faster. */
        if (dev > 0 && host > 0)
            return dev >= host;
        if (dev > 0 && s->percell_chunks == 0 && lat->stats.steps >= 1)
            return c != &lat->chunks[lat->n_chunks - 1]; /* time the host on one chunk */
    }
    return 1;
}

int ml_batch_step(moelat_lattice *lat) {
    ml_batch *b = lat->batch;
    b->last_status = MOELAT_ERR_DEVICE;
    if (upload_if_stale(lat, b) != 0)
        return -1;
    int *host_ids = malloc((size_t)lat->n_chunks * sizeof *host_ids);
    int *dev_ids = malloc((size_t)lat->n_chunks * sizeof *dev_ids);
    if (!host_ids || !dev_ids) {
        free(host_ids);
        free(dev_ids);
        ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
        return -1;
    }
    int n_host = 0, n_dev = 0;
    for (int c = 0; c < lat->n_chunks; c++) {
        if (chunk_wants_device(lat, &lat->chunks[c]))
            dev_ids[n_dev++] = c;
        else
            host_ids[n_host++] = c;
    }
    ml_early_reads early;
    if (ml_early_reads_plan(lat, dev_ids, n_dev, host_ids, n_host, &early) != 0)
        for (int r = 0; r < ML_MAX_DELIVER; r++)
            early.blocked[r] = 1; /* out of memory: read after the step */
    int host_expert = 0;
    for (int k = 0; k < MOELAT_BANDS; k++)
        host_expert |= !b->expert_on_device[k];
    /* The host needs the old states for host chunks and host experts. */
    if ((n_host > 0 || host_expert) && ml_batch_sync_to_host(lat) != 0)
        goto fail;

    double t0 = ml_now_ms();
    step_events se = {0};
    cl_event pre[MOELAT_BANDS] = {NULL, NULL, NULL};
    int rc = 0;
    int started = 0; /* the gates' finite check was reset this step */
    if (n_dev > 0) {
        if (begin_device_step(lat, b, &se) == 0) {
            started = 1;
        } else {
            /* No device chunk can aggregate without it: this step they
             * all run on the host. */
            ml_stats_fallback(lat, lat->err);
            for (int i = 0; i < n_dev; i++)
                host_ids[n_host++] = dev_ids[i];
            n_dev = 0;
            if (ml_batch_sync_to_host(lat) != 0)
                goto fail;
        }
    }
    if (n_dev > 0) {
        for (int k = 0; k < MOELAT_BANDS; k++) {
            if (!b->expert_on_device[k] || !lat->expert[k].desc->cl_step_begin)
                continue;
            moelat_cl_step st = {
                .struct_size = sizeof st,
                .queue = b->ctx.queues[(1 + k) % b->ctx.n_queues],
                .states = b->states[b->cur],
                .num_wait = 0,
                .wait = NULL,
                .done = &pre[k],
            };
            if (lat->expert[k].desc->cl_step_begin(b->expert_state[k], &st) != MOELAT_EXPERT_OK) {
                /* Without its precomputation the expert cannot run: host. */
                char reason[256];
                snprintf(reason, sizeof reason, "expert '%s' failed its per-step precomputation: band %s runs on the host",
                         lat->expert[k].desc->name, moelat_band_name(k));
                ml_stats_fallback(lat, reason);
                b->expert_on_device[k] = 0;
                if (ml_batch_sync_to_host(lat) != 0)
                    goto fail;
                continue;
            }
            keep_event(&se, pre[k], 5);
        }
    }
    for (int i = 0; i < n_dev; i++) {
        int er = enqueue_chunk(lat, b, dev_ids[i], i, pre, MOELAT_BANDS, &se);
        if (er == -2) {
            for (int q = 0; q < b->ctx.n_queues; q++)
                clFinish(b->ctx.queues[q]);
            for (int k = 0; k < MOELAT_BANDS; k++)
                if (pre[k])
                    clReleaseEvent(pre[k]);
            account_events(lat, &se);
            b->last_status = strstr(lat->err, "non-finite") ? MOELAT_ERR_NONFINITE : MOELAT_ERR_PLUGIN;
            goto fail;
        }
        if (er != 0) {
            /* Its device work failed: this chunk runs on the host. Work of
             * it already enqueued may still use the chunk's scratch set:
             * drain the queues before another chunk reuses it. */
            ml_stats_fallback(lat, lat->err);
            for (int q = 0; q < b->ctx.n_queues; q++)
                clFinish(b->ctx.queues[q]);
            if (ml_batch_sync_to_host(lat) != 0)
                goto fail;
            /* Move it to the host list; the last device chunk takes its
             * slot and is enqueued next. */
            ml_early_reads_chunk_on_host(lat, &early, dev_ids[i]);
            host_ids[n_host++] = dev_ids[i];
            dev_ids[i--] = dev_ids[--n_dev];
            continue;
        }
        ml_early_reads_chunk_done(lat, &early, dev_ids[i], b->sets[dev_ids[i] % b->n_sets].last, b->ctx.transfer,
                                  b->states[1 - b->cur]);
    }
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (pre[k])
            clReleaseEvent(pre[k]);
    for (int q = 0; q < b->ctx.n_queues; q++)
        clFlush(b->ctx.queues[q]);

    /* Host chunks run while the device works. */
    double th = ml_now_ms();
    if (n_host > 0) {
        rc = ml_percell_run(lat, host_ids, n_host, lat->states, lat->next);
        if (rc == 0) {
            double dt = ml_now_ms() - th;
            lat->stats.percell_chunks += (uint64_t)n_host;
            for (int i = 0; i < n_host; i++)
                lat->stats.percell_cells += (uint64_t)lat->chunks[host_ids[i]].n_cells;
            lat->stats.percell_ms += dt;
        }
    }
    double host_ms = ml_now_ms() - th;
    ml_early_reads_wait(lat, &early);
    for (int q = 0; q < b->ctx.n_queues; q++)
        if (cl_check(lat, clFinish(b->ctx.queues[q]), "finishing the step"))
            rc = -1;
    if (rc == 0 && n_host > 0 && upload_host_chunks(lat, b, host_ids, n_host) != 0)
        rc = -1;
    double total = ml_now_ms() - t0;
    account_events(lat, &se);
    if (rc != 0) {
        /* The host part failed (an expert's error or NaN), or a device call. */
        b->last_status = strstr(lat->err, "non-finite") ? MOELAT_ERR_NONFINITE
                         : strstr(lat->err, "expert '")  ? MOELAT_ERR_PLUGIN
                                                         : MOELAT_ERR_DEVICE;
        goto fail;
    }
    if (n_dev > 0) {
        lat->stats.batch_chunks += (uint64_t)n_dev;
        for (int i = 0; i < n_dev; i++)
            lat->stats.batch_cells += (uint64_t)lat->chunks[dev_ids[i]].n_cells;
        lat->stats.batch_ms += n_host > 0 ? (total > host_ms ? total - host_ms : total) : total;
    }
    if (b->step_start) {
        clReleaseEvent(b->step_start);
        b->step_start = NULL;
    }
    if (started && check_finite(lat, b) != 0) {
        /* Keep the failing step's states visible to the caller. */
        b->cur = 1 - b->cur;
        lat->device_owns_states = 1;
        goto fail;
    }
    ml_early_reads_end(lat, &early, b->ctx.transfer);
    b->cur = 1 - b->cur;
    lat->device_owns_states = 1;
    free(host_ids);
    free(dev_ids);
    return 0;
fail:
    ml_early_reads_end(lat, &early, b->ctx.transfer);
    if (b->step_start) {
        /* Its work may still run; the event only loses our reference. */
        clReleaseEvent(b->step_start);
        b->step_start = NULL;
    }
    free(host_ids);
    free(dev_ids);
    return -1;
}

moelat_status ml_batch_verify_sample(moelat_lattice *lat) {
    /* One device step of the whole lattice into the other buffer, compared
     * on a sample of cells with the per-cell path; states are untouched. */
    ml_batch *b = lat->batch;
    size_t N = lat->N;
    int S = lat->S;
    enum { SAMPLE = 64 };
    size_t cells[SAMPLE];
    int n = 0;
    /* Sample the active planes only: a slab owner's step writes no others. */
    size_t plane = (size_t)lat->X * lat->Y;
    size_t lo = plane * (size_t)lat->active_z0, hi = plane * (size_t)lat->active_z1;
    size_t step = (hi - lo) / (SAMPLE - 2) + 1;
    cells[n++] = lo;
    cells[n++] = hi - 1;
    for (size_t i = lo + step / 2; i < hi && n < SAMPLE; i += step)
        cells[n++] = i;
    float *host = malloc((size_t)n * S * sizeof(float));
    float *dev = malloc(N * (size_t)S * sizeof(float));
    if (!host || !dev) {
        free(host);
        free(dev);
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
    }
    moelat_status st = MOELAT_OK;
    if (ml_percell_cells(lat, cells, n, lat->states, host) != 0) {
        st = MOELAT_ERR_PLUGIN;
        goto out;
    }
    moelat_mode saved_mode = lat->mode;
    ml_stats saved_stats = lat->stats;
    lat->mode = MOELAT_MODE_BATCH;
    int thr = lat->batch_threshold;
    lat->batch_threshold = 0;
    lat->batch = b;
    int n_deliver = lat->n_deliver; /* the caller's next step delivers, not this one */
    lat->n_deliver = 0;
    int rc = ml_batch_step(lat);
    lat->n_deliver = n_deliver;
    lat->batch_threshold = thr;
    lat->mode = saved_mode;
    lat->stats = saved_stats;
    if (rc != 0) {
        st = ml_batch_last_status(lat);
        goto out;
    }
    /* The step swapped buffers: read the result, then swap back. */
    if (cl_check(lat, clEnqueueReadBuffer(b->ctx.queues[0], b->states[b->cur], CL_TRUE, 0, N * (size_t)S * sizeof(float),
                                          dev, 0, NULL, NULL),
                 "reading the check step")) {
        st = MOELAT_ERR_DEVICE;
        goto out;
    }
    b->cur = 1 - b->cur;
    lat->device_owns_states = 0;
    double tol = lat->cfg.cnf_mode == MOELAT_CNF_LIPSCHITZ ? 1e-2 : 1e-4;
    double worst = 0;
    size_t worst_cell = 0;
    for (int k = 0; k < n; k++)
        for (int s = 0; s < S; s++) {
            double ref = host[(size_t)k * S + s];
            double d = fabs((double)dev[cells[k] * S + s] - ref) / (1.0 + fabs(ref));
            if (!(d <= worst)) {
                worst = d;
                worst_cell = cells[k];
            }
        }
    if (!(worst <= tol)) {
        st = ml_fail(lat, MOELAT_ERR_MISMATCH,
                     "batch path disagrees with the per-cell path on %s: relative difference %.3g at cell %zu (tolerance %.0e); batch mode not enabled",
                     lat->device_name, worst, worst_cell, tol);
    } else {
        ML_INFO("batch", "upgrade check on %d cells: max relative difference %.3g", n, worst);
    }
out:
    free(host);
    free(dev);
    return st;
}

struct mlcl_context *ml_batch_context(moelat_lattice *lat) { return lat->batch ? &lat->batch->ctx : NULL; }

/* The gate and update of chunk c on q from the outputs and aggregates in
 * s, into the next-states buffer (which the next step overwrites; the
 * current states stay current), read back as n_cells x S in chunk order. */
static int gate_chunk_output(moelat_lattice *lat, ml_batch *b, const ml_chunk *c, chunk_set *s,
                             cl_command_queue q, float *gated) {
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (!b->expert_on_device[k])
            return ml_fail(lat, MOELAT_ERR_DEVICE, "the gate needs every expert on the device ('%s' is not)",
                           lat->expert[k].desc->name),
                   -1;
    cl_mem next = b->states[1 - b->cur];
    cl_int e = enqueue_gate(b, lat, c, s, next, q, 0, NULL, NULL);
    if (cl_check(lat, e, "enqueueing ml_gate_combine"))
        return -1;
    /* The chunk's planes, then its box out of them. */
    const size_t S = (size_t)lat->S, plane = (size_t)lat->X * lat->Y * S;
    float *planes = malloc(plane * (size_t)c->extent[2] * sizeof(float));
    if (!planes)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory reading the gate's states"), -1;
    e = clEnqueueReadBuffer(q, next, CL_TRUE, plane * (size_t)c->origin[2] * sizeof(float),
                            plane * (size_t)c->extent[2] * sizeof(float), planes, 0, NULL, NULL);
    if (e == CL_SUCCESS)
        for (int ci = 0; ci < c->n_cells; ci++) {
            int xyz[3];
            ml_chunk_cell_xyz(c, ci, xyz);
            size_t at = (size_t)xyz[0] + (size_t)lat->X * ((size_t)xyz[1] + (size_t)lat->Y * (xyz[2] - c->origin[2]));
            memcpy(gated + (size_t)ci * S, planes + at * S, S * sizeof(float));
        }
    free(planes);
    return cl_check(lat, e, "reading the gate's states") ? -1 : 0;
}

int ml_batch_expert_outputs(moelat_lattice *lat, int chunk, float *const out[MOELAT_BANDS],
                            float *const mean[MOELAT_BANDS], float *const absmean[MOELAT_BANDS], float *gated) {
    /* Aggregation and each expert of one chunk on the device, from the
     * current states, and the gate when asked: for checking them one by
     * one. */
    ml_batch *b = lat->batch;
    if (!b)
        return ml_fail(lat, MOELAT_ERR_DEVICE, "batch mode is not enabled"), -1;
    if (upload_if_stale(lat, b) != 0)
        return -1;
    const ml_chunk *c = &lat->chunks[chunk];
    chunk_set *s = &b->sets[chunk % b->n_sets];
    cl_command_queue q = b->ctx.queues[0];
    cl_event pre[MOELAT_BANDS] = {NULL, NULL, NULL};
    for (int k = 0; k < MOELAT_BANDS; k++) {
        if (!b->expert_on_device[k] || !lat->expert[k].desc->cl_step_begin)
            continue;
        moelat_cl_step st = {.struct_size = sizeof st, .queue = q, .states = b->states[b->cur], .done = &pre[k]};
        if (lat->expert[k].desc->cl_step_begin(b->expert_state[k], &st) != MOELAT_EXPERT_OK)
            return ml_fail(lat, MOELAT_ERR_DEVICE, "expert '%s' failed its precomputation", lat->expert[k].desc->name), -1;
        if (pre[k])
            clReleaseEvent(pre[k]);
    }
    cl_event prefix = NULL;
    cl_int e = enqueue_prefix(b, lat, q, 0, NULL, &prefix);
    if (prefix)
        clReleaseEvent(prefix); /* q is in order: the aggregation follows it */
    if (cl_check(lat, e, "enqueueing ml_row_prefix"))
        return -1;
    e = enqueue_aggregate(b, lat, c, s, q, 0, NULL, NULL);
    if (cl_check(lat, e, "enqueueing ml_aggregate"))
        return -1;
    size_t bytes = (size_t)c->n_cells * lat->S * sizeof(float);
    for (int k = 0; k < MOELAT_BANDS; k++) {
        e = clEnqueueReadBuffer(q, s->mean[k], CL_TRUE, 0, bytes, mean[k], 0, NULL, NULL);
        if (e == CL_SUCCESS && (b->absmask >> k & 1))
            e = clEnqueueReadBuffer(q, s->absmean[k], CL_TRUE, 0, bytes, absmean[k], 0, NULL, NULL);
        else if (e == CL_SUCCESS)
            for (size_t i = 0; i < bytes / sizeof(float); i++)
                absmean[k][i] = NAN; /* not computed: its expert does not read it */
        if (cl_check(lat, e, "reading band aggregates"))
            return -1;
    }
    for (int k = 0; k < MOELAT_BANDS; k++) {
        if (!b->expert_on_device[k]) {
            memset(out[k], 0, (size_t)c->n_cells * lat->S * sizeof(float));
            continue;
        }
        cl_event done = NULL, first = NULL;
        moelat_cl_chunk ch = chunk_call(lat, b, k, c, s, q, NULL, 0, &done, &first);
        int rc = lat->expert[k].desc->cl_enqueue(b->expert_state[k], &ch);
        if (first)
            clReleaseEvent(first);
        if (rc != MOELAT_EXPERT_OK)
            return ml_fail(lat, MOELAT_ERR_DEVICE, "expert '%s' failed to enqueue", lat->expert[k].desc->name), -1;
        if (done)
            clReleaseEvent(done);
        e = clEnqueueReadBuffer(q, s->out[k], CL_TRUE, 0, (size_t)c->n_cells * lat->S * sizeof(float), out[k], 0,
                                NULL, NULL);
        if (cl_check(lat, e, "reading expert outputs"))
            return -1;
    }
    return gated ? gate_chunk_output(lat, b, c, s, q, gated) : 0;
}

int ml_batch_expert_on_device(const moelat_lattice *lat, int band) {
    return lat->batch && lat->batch->expert_on_device[band];
}

int ml_batch_queues(const moelat_lattice *lat) { return lat->batch ? lat->batch->ctx.n_queues : 0; }

int ml_batch_absmean_bands(const moelat_lattice *lat) { return lat->batch ? lat->batch->absmask : 0; }
