/* The OpenCL backend: its ops table, device setup and teardown, and the
 * copies between host and device (backend_cl.h lists its other files). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/backend_cl.h"
#include "base/log.h"
#include "core/run_table.h"

moelat_status ml_cl_check(ml_cl_backend *b, cl_int rc, const char *what) {
    if (rc == CL_SUCCESS)
        return MOELAT_OK;
    return ml_view_fail(b->v, MOELAT_ERR_DEVICE, "%s on %s failed: %s", what, b->ctx.info.name, mlcl_error_name(rc));
}

void ml_cl_release_set(ml_chunk_set *s) {
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

static void release_sets(ml_cl_backend *b) {
    for (int i = 0; i < b->n_sets; i++)
        ml_cl_release_set(&b->sets[i]);
    b->n_sets = 0;
}

static void cl_destroy(void *ctx) {
    ml_cl_backend *b = ctx;
    if (!b)
        return;
    for (int q = 0; q < b->ctx.n_queues; q++)
        if (b->ctx.queues[q])
            clFinish(b->ctx.queues[q]);
    ml_cl_optim_release(b);
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
    mlcl_release_buffer(b->route);
    free(b->route_host);
    mlcl_release_buffer(b->rows);
    mlcl_release_buffer(b->segs);
    for (int i = 0; i < 2; i++)
        mlcl_release_buffer(b->prefix[i]);
    if (b->step_start)
        clReleaseEvent(b->step_start);
    cl_kernel kernels[3] = {b->k_prefix, b->k_aggregate, b->k_gate};
    for (int i = 0; i < 3; i++)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    if (b->program)
        clReleaseProgram(b->program);
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (b->expert_program[k])
            clReleaseProgram(b->expert_program[k]);
    free(b->host_expert_out);
    mlcl_context_release(&b->ctx);
    free(b);
}

static moelat_status alloc_sets(ml_cl_backend *b, int max_cells) {
    const ml_backend_view *v = b->v;
    cl_int rc = CL_SUCCESS;
    size_t fl = (size_t)max_cells * v->S * sizeof(float);
    size_t in = (size_t)max_cells * sizeof(cl_int);
    int want = v->n_chunks < ML_CL_MAX_SETS ? v->n_chunks : ML_CL_MAX_SETS;
    if (want < 1)
        want = 1;
    for (int i = 0; i < want; i++) {
        ml_chunk_set *s = &b->sets[i];
        b->n_sets = i + 1;
        for (int k = 0; k < MOELAT_BANDS && rc == CL_SUCCESS; k++) {
            s->mean[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, fl, NULL, &rc);
            if (rc == CL_SUCCESS)
                s->absmean[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, fl, NULL, &rc);
            if (rc == CL_SUCCESS)
                s->count[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, in, NULL, &rc);
            if (rc == CL_SUCCESS)
                s->out[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, fl, NULL, &rc);
            const moelat_expert_descriptor *d = v->expert[k].desc;
            size_t per_cell = d->cl_scratch_floats ? d->cl_scratch_floats(v->expert[k].dims) : 0;
            if (rc == CL_SUCCESS && per_cell > 0)
                s->scratch[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE,
                                                   (size_t)max_cells * per_cell * sizeof(float), NULL, &rc);
        }
        if (rc == CL_SUCCESS)
            s->nu = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, fl, NULL, &rc);
        if (rc != CL_SUCCESS) {
            /* Fewer sets still work; none does not. */
            ml_view_fail(v, MOELAT_ERR_DEVICE, "allocating chunk buffers for %d cells failed: %s", max_cells,
                         mlcl_error_name(rc));
            if (i == 0) {
                release_sets(b);
                return MOELAT_ERR_DEVICE;
            }
            ml_cl_release_set(s);
            b->n_sets = i;
            break;
        }
    }
    return MOELAT_OK;
}

static int max_chunk_cells(const ml_backend_view *v) {
    int m = 1;
    for (int c = 0; c < v->n_chunks; c++)
        if (v->chunks[c].n_cells > m)
            m = v->chunks[c].n_cells;
    return m;
}

static moelat_status upload_stencil(ml_cl_backend *b) {
    const ml_stencil *sten = b->v->stencil;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        cl_int rc;
        size_t n = (size_t)(sten->count[k] > 0 ? sten->count[k] : 1);
        b->offsets[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, n * sizeof(ml_offset),
                                           sten->count[k] > 0 ? (void *)sten->band[k]
                                                              : (void *)&(ml_offset){0, 0, 0, 0},
                                           &rc);
        if (ml_cl_check(b, rc, "uploading the stencil") != MOELAT_OK)
            return MOELAT_ERR_DEVICE;
    }
    return MOELAT_OK;
}

/* Everything aggregation by prefix sums needs, after the chunk buffers so
 * that those get the memory first. Any failure leaves every band summed
 * neighbour by neighbour, which is slower but the same function. */
static void setup_prefix(ml_cl_backend *b) {
    const ml_backend_view *v = b->v;
    size_t bytes = v->N * (size_t)v->S * sizeof(float);
    cl_int *rows = NULL, *segs = NULL;
    int n_rows = 0, n_segs = 0, direct = 0;
    cl_int rc = CL_SUCCESS;
    const char *why = NULL;
    b->direct = (1 << MOELAT_BANDS) - 1;
    b->n_rows = 0;
    b->prefix_halo = v->halo;
    /* Two state buffers and two prefix buffers must fit. */
    if (4 * (cl_ulong)bytes > b->ctx.info.global_mem_bytes || (cl_ulong)bytes > b->ctx.info.max_alloc_bytes) {
        why = "the prefix buffers do not fit in device memory";
        goto out;
    }
    if (ml_run_table_build(v->stencil, &rows, &n_rows, &segs, &n_segs, &direct) != 0) {
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

static moelat_status create_params(ml_cl_backend *b) {
    const ml_backend_view *v = b->v;
    cl_int rc;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        size_t n = v->expert[k].params->n_floats;
        b->params[k] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_ONLY, (n ? n : 1) * sizeof(float), NULL, &rc);
        if (ml_cl_check(b, rc, "allocating expert parameters") != MOELAT_OK)
            return MOELAT_ERR_DEVICE;
    }
    b->gate = mlcl_create_buffer(&b->ctx, CL_MEM_READ_ONLY, v->gate->n_floats * sizeof(float), NULL, &rc);
    return ml_cl_check(b, rc, "allocating gate parameters");
}

/* The device's state, input and check buffers: states stay whole on the
 * device (two buffers); say so plainly when they cannot, rather than with
 * the driver's error code. */
static moelat_status create_buffers(ml_cl_backend *b) {
    const ml_backend_view *v = b->v;
    const mlcl_device_info *dev = &b->ctx.info;
    cl_int rc;
    size_t bytes = v->N * (size_t)v->S * sizeof(float);
    if ((cl_ulong)bytes > dev->max_alloc_bytes || 2 * (cl_ulong)bytes > dev->global_mem_bytes)
        return ml_view_fail(v, MOELAT_ERR_DEVICE,
                            "states of %zu bytes exceed what %s holds (largest buffer %llu bytes, memory %llu bytes, "
                            "two state buffers needed); use --mode percell or a smaller lattice",
                            bytes, dev->name, (unsigned long long)dev->max_alloc_bytes,
                            (unsigned long long)dev->global_mem_bytes);
    for (int i = 0; i < 2; i++) {
        b->states[i] = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, bytes, NULL, &rc);
        if (rc != CL_SUCCESS)
            return ml_view_fail(v, MOELAT_ERR_DEVICE, "allocating %zu bytes of states on %s failed: %s", bytes,
                                dev->name, mlcl_error_name(rc));
    }
    b->ext = mlcl_create_buffer(&b->ctx, CL_MEM_READ_ONLY, (size_t)v->X * v->Y * v->E * sizeof(float), NULL, &rc);
    if (ml_cl_check(b, rc, "allocating the external input") != MOELAT_OK)
        return MOELAT_ERR_DEVICE;
    b->check = mlcl_create_buffer(&b->ctx, CL_MEM_READ_WRITE, ML_CL_CHECK_INTS * sizeof(cl_int), NULL, &rc);
    return ml_cl_check(b, rc, "allocating the finite check");
}

/* Routing statistics: the gate writes each cell's weights into route
 * (allocated after the chunk sets, whose allocation order the fault tests
 * count), read back at the end of every device step. */
static moelat_status create_route(ml_cl_backend *b) {
    const ml_backend_view *v = b->v;
    cl_int rc;
    b->route = mlcl_create_buffer(&b->ctx, CL_MEM_WRITE_ONLY, v->N * MOELAT_BANDS * sizeof(float), NULL, &rc);
    if (ml_cl_check(b, rc, "allocating the gate weights") != MOELAT_OK)
        return MOELAT_ERR_DEVICE;
    if (!(b->route_host = malloc(v->N * MOELAT_BANDS * sizeof(float))))
        return ml_view_fail(v, MOELAT_ERR_NOMEM, "out of memory for the gate weights");
    return MOELAT_OK;
}

/* The chunk scratch sets; on an allocation failure halve the chunks and
 * retry. */
static moelat_status create_sets(ml_cl_backend *b) {
    const ml_backend_view *v = b->v;
    for (;;) {
        b->max_chunk_cells = max_chunk_cells(v);
        if (alloc_sets(b, b->max_chunk_cells) == MOELAT_OK)
            return MOELAT_OK;
        int32_t size[3];
        memcpy(size, v->chunk_size, sizeof size);
        int axis = size[2] > 1 ? 2 : size[1] > 1 ? 1 : 0;
        if (size[axis] <= 1)
            return MOELAT_ERR_DEVICE;
        size[axis] = (size[axis] + 1) / 2;
        ML_WARN("batch", "%s; retrying with chunks of %dx%dx%d", v->err, size[0], size[1], size[2]);
        if (v->rechunk(v->core, size) != MOELAT_OK)
            return MOELAT_ERR_NOMEM;
    }
}

static moelat_status cl_create(const ml_backend_view *v, ml_fallbacks *fb, void **out) {
    *out = NULL;
    ml_cl_backend *b = calloc(1, sizeof *b);
    if (!b)
        return ml_view_fail(v, MOELAT_ERR_NOMEM, "out of memory");
    b->v = v;
    char err[4096];
    mlcl_device_info dev;
    if (mlcl_select_device(v->device, &dev, err, sizeof err) != 0) {
        free(b);
        return ml_view_fail(v, MOELAT_ERR_DEVICE, "%s", err);
    }
    int nq = v->queues > 0 ? v->queues : 2;
    if (nq > MLCL_MAX_QUEUES)
        nq = MLCL_MAX_QUEUES;
    if (mlcl_context_create(&dev, nq, v->profile, &b->ctx, err, sizeof err) != 0) {
        free(b);
        return ml_view_fail(v, MOELAT_ERR_DEVICE, "%s", err);
    }
    snprintf(v->device_name, v->device_name_size, "%s", dev.name);
    b->ctx.no_kernel_cache = !v->tuning->kernel_cache;
    b->work_group = ml_cl_work_group(v->S, v->tuning->work_group, dev.max_work_group_size);

    /* Default chunks from the device's memory unless the config chose them. */
    if (!v->chunks_fixed) {
        int32_t size[3];
        const int32_t dims[3] = {v->X, v->Y, v->Z};
        ml_chunks_default_size(dims, v->S, dev.global_mem_bytes, size);
        if (memcmp(size, v->chunk_size, sizeof size) != 0 && v->rechunk(v->core, size) != MOELAT_OK)
            ML_WARN("batch", "%s: keeping chunks of %dx%dx%d", v->err, v->chunk_size[0], v->chunk_size[1],
                    v->chunk_size[2]);
    }
    moelat_status st = create_buffers(b);
    if (st == MOELAT_OK)
        st = upload_stencil(b);
    if (st == MOELAT_OK)
        st = create_params(b);
    if (st == MOELAT_OK)
        st = ml_cl_build_engine(b);
    if (st == MOELAT_OK)
        st = create_sets(b);
    if (st == MOELAT_OK && !(b->host_expert_out = malloc((size_t)b->max_chunk_cells * v->S * sizeof(float))))
        st = ml_view_fail(v, MOELAT_ERR_NOMEM, "out of memory");
    if (st == MOELAT_OK)
        st = create_route(b);
    if (st != MOELAT_OK) {
        cl_destroy(b);
        return st;
    }
    setup_prefix(b);
    for (int k = 0; k < MOELAT_BANDS; k++)
        ml_cl_prepare_expert(b, k, fb);
    ML_INFO("batch", "device %s, %d queues, %d chunks of up to %d cells (%dx%dx%d)", dev.name, nq, v->n_chunks,
            b->max_chunk_cells, v->chunk_size[0], v->chunk_size[1], v->chunk_size[2]);
    *out = b;
    return MOELAT_OK;
}

static moelat_status write_buffer(ml_cl_backend *b, cl_mem buf, size_t off, size_t bytes, const void *src,
                                  const char *what) {
    return ml_cl_check(b, clEnqueueWriteBuffer(b->ctx.queues[0], buf, CL_TRUE, off, bytes, src, 0, NULL, NULL),
                       what);
}

static moelat_status cl_upload_states(void *ctx, const float *states) {
    ml_cl_backend *b = ctx;
    return write_buffer(b, b->states[b->cur], 0, b->v->N * (size_t)b->v->S * sizeof(float), states,
                        "uploading states");
}

static moelat_status cl_sync_states(void *ctx, float *states) {
    ml_cl_backend *b = ctx;
    return ml_cl_check(b,
                       clEnqueueReadBuffer(b->ctx.queues[0], b->states[b->cur], CL_TRUE, 0,
                                           b->v->N * (size_t)b->v->S * sizeof(float), states, 0, NULL, NULL),
                       "reading states back");
}

static moelat_status cl_upload_input(void *ctx, const float *ext) {
    ml_cl_backend *b = ctx;
    const ml_backend_view *v = b->v;
    return write_buffer(b, b->ext, 0, (size_t)v->X * v->Y * v->E * sizeof(float), ext,
                        "uploading the external input");
}

static moelat_status cl_upload_weights(void *ctx) {
    ml_cl_backend *b = ctx;
    const ml_backend_view *v = b->v;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        const ml_param_block *p = v->expert[k].params;
        if (p->n_floats && write_buffer(b, b->params[k], 0, p->n_floats * sizeof(float), p->data,
                                        "uploading expert parameters") != MOELAT_OK)
            return MOELAT_ERR_DEVICE;
    }
    return write_buffer(b, b->gate, 0, v->gate->n_floats * sizeof(float), v->gate->data,
                        "uploading gate parameters");
}

static moelat_status cl_planes(void *ctx, size_t offset, size_t count, float *dst, const float *src) {
    ml_cl_backend *b = ctx;
    cl_command_queue q = b->ctx.queues[0];
    size_t off = offset * sizeof(float), bytes = count * sizeof(float);
    cl_int e = dst ? clEnqueueReadBuffer(q, b->states[b->cur], CL_TRUE, off, bytes, dst, 0, NULL, NULL)
                   : clEnqueueWriteBuffer(q, b->states[b->cur], CL_TRUE, off, bytes, src, 0, NULL, NULL);
    return ml_cl_check(b, e, dst ? "reading state planes" : "writing state planes");
}

static int cl_host_experts(void *ctx) {
    const ml_cl_backend *b = ctx;
    int any = 0;
    for (int k = 0; k < MOELAT_BANDS; k++)
        any |= !b->expert_on_device[k];
    return any;
}

const ml_backend_ops ml_backend_cl_ops = {
    .name = "opencl",
    .create = cl_create,
    .destroy = cl_destroy,
    .upload_states = cl_upload_states,
    .sync_states = cl_sync_states,
    .upload_input = cl_upload_input,
    .upload_weights = cl_upload_weights,
    .sync_weights = ml_cl_sync_weights,
    .planes = cl_planes,
    .host_experts = cl_host_experts,
    .begin_step = ml_cl_begin_step,
    .enqueue = ml_cl_enqueue,
    .finish = ml_cl_finish,
    .backward = &ml_backward_cl_ops,
    .inspect = &ml_cl_inspect_ops,
    .optim = &ml_cl_optim_ops,
};
