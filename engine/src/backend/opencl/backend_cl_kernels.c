/* Arguments and launch sizes of the engine's kernels (moelat_step.cl) and
 * the calls that hand a chunk to an expert. */
#include "backend/opencl/backend_cl.h"
#include "core/gate.h"

#define SET_ARG(k, i, v)                                                        \
    do {                                                                        \
        cl_int _e = clSetKernelArg(k, i, sizeof(v), &(v));                      \
        if (_e != CL_SUCCESS)                                                   \
            return _e;                                                          \
    } while (0)

static cl_int set_aggregate_args(ml_cl_backend *b, const ml_chunk *c, ml_chunk_set *s) {
    const ml_backend_view *v = b->v;
    cl_kernel k = b->k_aggregate;
    cl_int4 dims = {{v->X, v->Y, v->Z, 0}};
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
        cl_int cnt = v->stencil->count[band];
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

static cl_int set_gate_args(ml_cl_backend *b, const ml_chunk *c, ml_chunk_set *s, cl_mem next) {
    const ml_backend_view *v = b->v;
    cl_kernel k = b->k_gate;
    cl_int4 dims = {{v->X, v->Y, v->Z, 0}};
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
        cl_int off = (cl_int)v->gate->offsets[t];
        SET_ARG(k, a++, off);
    }
    SET_ARG(k, a++, b->check);
    SET_ARG(k, a++, b->route); /* routing statistics */
    return CL_SUCCESS;
}

/* Global size of the one-work-item-per-(cell, s) kernels: items rounded up
 * to whole work-groups of MOELAT_WG (the kernels return past the end). */
static size_t round_to_wg(const ml_cl_backend *b, size_t items) {
    size_t wg = (size_t)b->work_group;
    return (items + wg - 1) / wg * wg;
}

/* One work-item per cell and b->agg_vector state values. */
cl_int ml_cl_enqueue_aggregate(ml_cl_backend *b, const ml_chunk *c, ml_chunk_set *s, cl_command_queue q,
                               cl_uint n_wait, const cl_event *wait, cl_event *done) {
    cl_int e = set_aggregate_args(b, c, s);
    if (e != CL_SUCCESS)
        return e;
    size_t local = (size_t)b->work_group;
    size_t global = round_to_wg(b, (size_t)c->n_cells * (size_t)(b->v->S / b->agg_vector));
    return mlcl_enqueue_kernel(q, b->k_aggregate, 1, &global, &local, n_wait, wait, done);
}

/* The gate and update of chunk c into next: one work-group per gate_cells
 * cells (the last may hold fewer), or CPU-shaped (cl_shape.h). */
cl_int ml_cl_enqueue_gate(ml_cl_backend *b, const ml_chunk *c, ml_chunk_set *s, cl_mem next, cl_command_queue q,
                          cl_uint n_wait, const cl_event *wait, cl_event *done) {
    cl_int e = set_gate_args(b, c, s, next);
    if (e != CL_SUCCESS)
        return e;
    size_t global, local;
    ml_cl_shape_gate_size(&b->shape, c, b->work_group, b->gate_cells, &global, &local);
    return mlcl_enqueue_kernel(q, b->k_gate, 1, &global, &local, n_wait, wait, done);
}

/* The row prefix sums of the current states (nothing, *done NULL, when
 * every band is summed directly). */
cl_int ml_cl_enqueue_prefix(ml_cl_backend *b, cl_command_queue q, cl_uint n_wait, const cl_event *wait,
                            cl_event *done) {
    const ml_backend_view *v = b->v;
    if (!b->prefix[0]) {
        *done = NULL;
        return CL_SUCCESS;
    }
    cl_kernel k = b->k_prefix;
    cl_int4 dims = {{v->X, v->Y, v->Z, 0}};
    /* Only the planes the active ones read (a slab and its halos): the
     * other planes of a slab owner's lattice are never aggregated. */
    int32_t h = b->prefix_halo;
    int32_t z0 = v->active_z0 > h ? v->active_z0 - h : 0;
    int32_t z1 = v->active_z1 + h < v->Z ? v->active_z1 + h : v->Z;
    cl_int2 rows = {{z0 * v->Y, z1 * v->Y}};
    size_t local = (size_t)b->work_group;
    size_t global = round_to_wg(b, (size_t)(rows.s[1] - rows.s[0]) * v->S);
    int a = 0;
    SET_ARG(k, a++, b->states[b->cur]);
    SET_ARG(k, a++, dims);
    SET_ARG(k, a++, rows);
    SET_ARG(k, a++, b->prefix[0]);
    SET_ARG(k, a++, b->prefix[1]);
    return mlcl_enqueue_kernel(q, k, 1, &global, &local, n_wait, wait, done);
}

moelat_cl_chunk ml_cl_chunk_call(const ml_cl_backend *b, int k, const ml_chunk *c, const ml_chunk_set *s,
                                 cl_command_queue q, const cl_event *wait, int n_wait, cl_event *done,
                                 cl_event *first) {
    moelat_cl_chunk ch = {
        .struct_size = sizeof ch,
        .queue = q,
        .states = b->states[b->cur],
        .ext = b->ext,
        .offsets = b->offsets[k],
        .n_offsets = b->v->stencil->count[k],
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

int ml_cl_expert_step_begin(ml_cl_backend *b, int k, cl_command_queue q, cl_event *done) {
    moelat_cl_step st = {
        .struct_size = sizeof st,
        .queue = q,
        .states = b->states[b->cur],
        .num_wait = 0,
        .wait = NULL,
        .done = done,
    };
    return b->v->expert[k].desc->cl_step_begin(b->expert_state[k], &st);
}
