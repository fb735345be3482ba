/* The OpenCL backend's inspection ops (backend.h's ml_inspect_ops), for
 * `check --experts` and the tests: the aggregation, each expert and
 * (optionally) the gate of one chunk, read back one by one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/backend_cl.h"

/* The gate and update of chunk c on q from the outputs and aggregates in
 * s, into the next-states buffer (which the next step overwrites; the
 * current states stay current), read back as n_cells x S in chunk order. */
static moelat_status gate_chunk_output(ml_cl_backend *b, const ml_chunk *c, ml_chunk_set *s, cl_command_queue q,
                             float *gated) {
    const ml_backend_view *v = b->v;
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (!b->expert_on_device[k])
            return ml_view_fail(v, MOELAT_ERR_DEVICE, "the gate needs every expert on the device ('%s' is not)",
                                v->expert[k].desc->name);
    cl_mem next = b->states[1 - b->cur];
    cl_int e = ml_cl_enqueue_gate(b, c, s, next, q, 0, NULL, NULL);
    if (ml_cl_check(b, e, "enqueueing ml_gate_combine") != MOELAT_OK)
        return MOELAT_ERR_DEVICE;
    /* The chunk's planes, then its box out of them. */
    const size_t S = (size_t)v->S, plane = (size_t)v->X * v->Y * S;
    float *planes = malloc(plane * (size_t)c->extent[2] * sizeof(float));
    if (!planes)
        return ml_view_fail(v, MOELAT_ERR_NOMEM, "out of memory reading the gate's states");
    e = clEnqueueReadBuffer(q, next, CL_TRUE, plane * (size_t)c->origin[2] * sizeof(float),
                            plane * (size_t)c->extent[2] * sizeof(float), planes, 0, NULL, NULL);
    if (e == CL_SUCCESS)
        for (int ci = 0; ci < c->n_cells; ci++) {
            int xyz[3];
            ml_chunk_cell_xyz(c, ci, xyz);
            size_t at = (size_t)xyz[0] + (size_t)v->X * ((size_t)xyz[1] + (size_t)v->Y * (xyz[2] - c->origin[2]));
            memcpy(gated + (size_t)ci * S, planes + at * S, S * sizeof(float));
        }
    free(planes);
    return ml_cl_check(b, e, "reading the gate's states");
}

static moelat_status cl_expert_outputs(void *ctx, int chunk, float *const out[MOELAT_BANDS],
                                       float *const mean[MOELAT_BANDS], float *const absmean[MOELAT_BANDS],
                                       float *gated) {
    ml_cl_backend *b = ctx;
    const ml_backend_view *v = b->v;
    const ml_chunk *c = &v->chunks[chunk];
    ml_chunk_set *s = &b->sets[chunk % b->n_sets];
    cl_command_queue q = b->ctx.queues[0];
    for (int k = 0; k < MOELAT_BANDS; k++) {
        if (!b->expert_on_device[k] || !v->expert[k].desc->cl_step_begin)
            continue;
        cl_event done = NULL;
        if (ml_cl_expert_step_begin(b, k, q, &done) != MOELAT_EXPERT_OK)
            return ml_view_fail(v, MOELAT_ERR_DEVICE, "expert '%s' failed its precomputation",
                                v->expert[k].desc->name);
        if (done)
            clReleaseEvent(done);
    }
    cl_event prefix = NULL;
    cl_int e = ml_cl_enqueue_prefix(b, q, 0, NULL, &prefix);
    if (prefix)
        clReleaseEvent(prefix); /* q is in order: the aggregation follows it */
    if (ml_cl_check(b, e, "enqueueing ml_row_prefix") != MOELAT_OK)
        return MOELAT_ERR_DEVICE;
    e = ml_cl_enqueue_aggregate(b, c, s, q, 0, NULL, NULL);
    if (ml_cl_check(b, e, "enqueueing ml_aggregate") != MOELAT_OK)
        return MOELAT_ERR_DEVICE;
    size_t bytes = (size_t)c->n_cells * v->S * sizeof(float);
    for (int k = 0; k < MOELAT_BANDS; k++) {
        e = clEnqueueReadBuffer(q, s->mean[k], CL_TRUE, 0, bytes, mean[k], 0, NULL, NULL);
        if (e == CL_SUCCESS && (b->absmask >> k & 1))
            e = clEnqueueReadBuffer(q, s->absmean[k], CL_TRUE, 0, bytes, absmean[k], 0, NULL, NULL);
        else if (e == CL_SUCCESS)
            for (size_t i = 0; i < bytes / sizeof(float); i++)
                absmean[k][i] = NAN; /* not computed: its expert does not read it */
        if (ml_cl_check(b, e, "reading band aggregates") != MOELAT_OK)
            return MOELAT_ERR_DEVICE;
    }
    for (int k = 0; k < MOELAT_BANDS; k++) {
        if (!b->expert_on_device[k]) {
            memset(out[k], 0, bytes);
            continue;
        }
        cl_event done = NULL, first = NULL;
        moelat_cl_chunk ch = ml_cl_chunk_call(b, k, c, s, q, NULL, 0, &done, &first);
        int rc = v->expert[k].desc->cl_enqueue(b->expert_state[k], &ch);
        if (first)
            clReleaseEvent(first);
        if (rc != MOELAT_EXPERT_OK)
            return ml_view_fail(v, MOELAT_ERR_DEVICE, "expert '%s' failed to enqueue", v->expert[k].desc->name);
        if (done)
            clReleaseEvent(done);
        e = clEnqueueReadBuffer(q, s->out[k], CL_TRUE, 0, bytes, out[k], 0, NULL, NULL);
        if (ml_cl_check(b, e, "reading expert outputs") != MOELAT_OK)
            return MOELAT_ERR_DEVICE;
    }
    return gated ? gate_chunk_output(b, c, s, q, gated) : MOELAT_OK;
}

static int cl_expert_on_device(const void *ctx, int band) {
    const ml_cl_backend *b = ctx;
    return b->expert_on_device[band];
}

static int cl_queues(const void *ctx) {
    const ml_cl_backend *b = ctx;
    return b->ctx.n_queues;
}

static int cl_absmean_bands(const void *ctx) {
    const ml_cl_backend *b = ctx;
    return b->absmask;
}

const ml_inspect_ops ml_cl_inspect_ops = {
    .expert_outputs = cl_expert_outputs,
    .expert_on_device = cl_expert_on_device,
    .queues = cl_queues,
    .absmean_bands = cl_absmean_bands,
};
