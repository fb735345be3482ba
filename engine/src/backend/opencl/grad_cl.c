/* The OpenCL backend's batched backward (ml_backward_cl_ops, the
 * backward ops of backend.h, which grad.c drives): per
 * backward step, the lattice is cut into chunks of whole rows of X cells
 * (a row is one (y, z); a chunk may end mid-plane, so one plane's edge
 * adjoints need not fit the device);
 * each chunk runs the gate forward, every band's expert backward (the
 * expert's "moelat.backward.cl/1" source, the same text as its host
 * backward), the gate's adjoint and the gather of neighbour adjoints
 * (kernels_cl/moelat_backward*.cl), into chunk-private buffers that one
 * commit launch adds to the totals. A chunk whose launches fail is redone
 * on the host (logged, counted in g->chunks_host); a failure the queue
 * reports later makes the caller redo the sweep on the host.
 *
 * Weight gradients are summed without float atomics: each slot owns one
 * row of slot_dw and takes its cells in a fixed order, and the commit sums
 * the rows in slot order. A slot is one work-item, or, on a GPU, a
 * work-group of lanes that runs one cell's backward together, each output
 * element of each phase one lane's (engine/sdk/backward_math.h): the gate
 * always, an expert's band when it declares MOELAT_BACKWARD_CL_COOPERATIVE.
 * With the same device, slots, lanes and chunk rows, two runs give the
 * same bits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/grad_cl.h"
#include "backend/opencl/optim_cl.h"
#include "base/log.h"
#include "core/gate.h"
#include "core/residency.h"

#define BWD_LOG "grad"

static const char *const part_names[P_PARTS] = {"fills", "gate forward", "local", "functional", "distant",
                                                "gate", "gather", "commit", "accumulate", "projection"};


static void release(ml_grad_cl *c) {
    if (!c)
        return;
    if (c->q)
        clFinish(c->q);
    cl_kernel ks[] = {c->band[0], c->band[1], c->band[2], c->gate_fwd,    c->gate,        c->gather,
                      c->commit,  c->accumulate, c->project, c->gather_proj, c->proj_dw};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        if (ks[i])
            clReleaseKernel(ks[i]);
    for (int k = 0; k <= MOELAT_BANDS; k++)
        if (c->prog[k])
            clReleaseProgram(c->prog[k]);
    cl_mem ms[] = {c->state, c->gin, c->dacc, c->weights, c->ext, c->off_all, c->slot_dw, c->slot_work,
                   c->dchunk, c->dw_gate, c->gate_w, c->dnu, c->dext_chunk, c->dw, c->dext, c->status,
                   c->pinfo, c->proj, c->Q};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        mlcl_release_buffer(ms[i]);
    for (int k = 0; k < MOELAT_BANDS; k++) {
        mlcl_release_buffer(c->dims[k]);
        mlcl_release_buffer(c->offsets[k]);
        mlcl_release_buffer(c->dedge[k]);
    }
    for (int k = 0; k <= MOELAT_BANDS; k++)
        mlcl_release_buffer(c->toff[k]);
    for (size_t i = 0; i < c->n_events; i++)
        if (c->events[i].ev)
            clReleaseEvent(c->events[i].ev);
    free(c->events);
    free(c->tmp);
    free(c->hostacc);
    free(c->host_chunks);
    free(c);
}

static void cl_close(ml_grad_engine *e) {
    release(e->dev);
    e->dev = NULL;
}

/* A device failure past a chunk's fallback: the device half is closed and
 * the lattice's later recordings run on the host until its backend is
 * opened again. */
static void give_up(moelat_grad *g) {
    snprintf(g->eng->dev_why, sizeof g->eng->dev_why, "host (after a device failure: %.300s)", g->fallback);
    cl_close(g->eng);
}

static cl_mem buffer(ml_grad_cl *c, size_t bytes, const void *init, int *ok) {
    cl_int rc = CL_SUCCESS;
    if (!*ok)
        return NULL;
    cl_mem m = mlcl_create_buffer(&c->b->ctx, CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0),
                                  bytes ? bytes : 4, (void *)init, &rc);
    if (rc != CL_SUCCESS || !m)
        *ok = 0;
    return m;
}

static int max_i(int a, int b) { return a > b ? a : b; }

/* Slots, rows per chunk and the buffers; 0, or -1 with why. */
static int allocate(ml_grad_engine *e, ml_grad_cl *c) {
    moelat_lattice *lat = e->lat;
    const mlcl_device_info *dev = &c->b->ctx.info;
    const int S = lat->S, E = lat->E, XY = lat->X * lat->Y;
    int n_all = 0, halo = 0;
    uint64_t edge_vectors = 0, max_edge = 0; /* S-vectors of neighbour adjoints per cell: all bands, the largest */
    for (int k = 0; k < MOELAT_BANDS; k++) {
        uint64_t v = c->mean_only >> k & 1 ? 1 : (uint64_t)lat->stencil.count[k];
        if (c->proj_info[4 * k] > 0) /* [dabs, dmean, dproj per entry] */
            v = (2 * (uint64_t)S + (uint64_t)lat->stencil.count[k] * (uint64_t)c->proj_info[4 * k] + S - 1) / S;
        edge_vectors += v;
        max_edge = v > max_edge ? v : max_edge;
        n_all += lat->stencil.count[k];
        for (int j = 0; j < lat->stencil.count[k]; j++) {
            int dz = lat->stencil.band[k][j].dz;
            halo = max_i(halo, dz < 0 ? -dz : dz);
        }
    }
    c->n_all = n_all;
    c->halo = halo;
    /* Device memory for the chunk buffers: a quarter of it, at most. */
    uint64_t budget = dev->global_mem_bytes / 4;
    const int n_rows = lat->Y * lat->Z;
    uint64_t per_row = (uint64_t)lat->X * (edge_vectors + 8) * (uint64_t)S * 4u;
    uint64_t rows = lat->tuning.grad_rows;
    if (rows == 0) {
        rows = budget / 2 / (per_row ? per_row : 1);
        uint64_t by_alloc = dev->max_alloc_bytes / ((uint64_t)lat->X * (max_edge ? max_edge : 1) * S * 4u);
        rows = rows > by_alloc ? by_alloc : rows;
        if (rows > (uint64_t)lat->Y) /* whole planes when more than one fits */
            rows -= rows % (uint64_t)lat->Y;
    }
    rows = rows < 1 ? 1 : rows > (uint64_t)n_rows ? (uint64_t)n_rows : rows;
    c->rows = (int)rows;
    c->n_chunks = (n_rows + c->rows - 1) / c->rows;
    const int max_cells = c->rows * lat->X;
    /* A chunk's rows touch at most rows / Y + 2 planes; its neighbours'
     * adjoints reach halo planes further each way. */
    const int spanned = c->rows / lat->Y + 2 + 2 * halo;
    const int max_targets = (spanned < lat->Z ? spanned : lat->Z) * XY;

    c->slot_floats = c->scratch[MOELAT_BANDS] + 3 * S + 6;
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (c->on[k]) {
            const int cnt = lat->stencil.count[k], P = c->proj_info[4 * k];
            /* neighbours (and their adjoints unless projected), out, dout, dx, dext, zeros; projected:
             * nproj, dproj, dabs, dmean */
            c->slot_floats = max_i(c->slot_floats, c->scratch[k] + (P ? 1 : 2) * cnt * S + 3 * S + 2 * E +
                                                       (P ? 2 * cnt * P + 2 * S : 0));
        }
    int slots = lat->tuning.grad_slots;
    if (slots <= 0 && c->coop > 1) /* work-groups: enough to fill the device a few times over */
        slots = (int)dev->compute_units * 32;
    else if (slots <= 0)
        slots = strcmp(dev->type, "GPU") == 0 ? 65536 : (int)dev->compute_units * 4;
    uint64_t per_slot = ((uint64_t)c->n_weights + (uint64_t)c->slot_floats) * 4u;
    if (lat->tuning.grad_slots <= 0 && (uint64_t)slots * per_slot > budget / 2)
        slots = (int)(budget / 2 / per_slot);
    slots = slots < 1 ? 1 : slots > max_cells ? max_cells : slots;
    c->n_slots = slots;
    ML_INFO(BWD_LOG, "%d slots of %d work floats and %zu weight gradients: %.1f MiB", slots, c->slot_floats,
            c->n_weights, (double)slots * (double)per_slot / 1048576.0);

    int ok = 1;
    size_t ns = lat->N * (size_t)S * sizeof(float), ne = (size_t)XY * (E ? E : 1) * sizeof(float);
    c->state = buffer(c, ns, NULL, &ok);
    c->gin = buffer(c, ns, NULL, &ok);
    c->dacc = buffer(c, ns, NULL, &ok);
    c->weights = buffer(c, c->n_weights * sizeof(float), NULL, &ok);
    c->ext = buffer(c, ne, NULL, &ok);
    c->dw = buffer(c, c->n_weights * sizeof(float), NULL, &ok);
    c->dext = buffer(c, ne, NULL, &ok);
    c->dext_chunk = buffer(c, ne, NULL, &ok);
    c->slot_dw = buffer(c, (size_t)slots * c->n_weights * sizeof(float), NULL, &ok);
    c->slot_work = buffer(c, (size_t)slots * (size_t)c->slot_floats * sizeof(float), NULL, &ok);
    c->dchunk = buffer(c, (size_t)max_targets * S * sizeof(float), NULL, &ok);
    c->dw_gate = buffer(c, (size_t)max_cells * 3 * sizeof(float), NULL, &ok);
    c->gate_w = buffer(c, (size_t)max_cells * 3 * sizeof(float), NULL, &ok);
    c->dnu = buffer(c, (size_t)max_cells * S * sizeof(float), NULL, &ok);
    c->status = buffer(c, sizeof(cl_int), NULL, &ok);
    c->pinfo = buffer(c, sizeof c->proj_info, c->proj_info, &ok);
    c->proj = buffer(c, c->q_stride ? lat->N * (size_t)c->q_stride * sizeof(float) : 4, NULL, &ok);
    c->Q = buffer(c, c->q_stride ? (size_t)max_targets * (size_t)c->q_stride * sizeof(float) : 4, NULL, &ok);
    ml_offset *all = malloc((size_t)(n_all ? n_all : 1) * sizeof *all);
    if (!all)
        return -1;
    int at = 0;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        int cnt = lat->stencil.count[k];
        memcpy(all + at, lat->stencil.band[k], (size_t)cnt * sizeof *all);
        at += cnt;
        c->offsets[k] = buffer(c, (size_t)(cnt ? cnt : 1) * sizeof(ml_offset), cnt ? lat->stencil.band[k] : NULL, &ok);
        size_t per_cell = (size_t)S * (c->mean_only >> k & 1 ? 1u : (size_t)cnt); /* floats per cell */
        if (c->proj_info[4 * k] > 0)
            per_cell = 2 * (size_t)S + (size_t)cnt * (size_t)c->proj_info[4 * k];
        c->dedge[k] = buffer(c, c->on[k] ? (size_t)max_cells * per_cell * sizeof(float) : 4, NULL, &ok);
        const moelat_expert_dims *d = &lat->expert[k].dims;
        cl_int di[2 + MOELAT_MAX_HIDDEN + 2];
        di[0] = d->state_size;
        di[1] = d->ext_size;
        for (int h = 0; h < MOELAT_MAX_HIDDEN; h++)
            di[2 + h] = d->hidden[h];
        di[2 + MOELAT_MAX_HIDDEN] = d->cnf_steps;
        di[3 + MOELAT_MAX_HIDDEN] = d->cnf_mode;
        c->dims[k] = buffer(c, sizeof di, di, &ok);
    }
    c->off_all = buffer(c, (size_t)(n_all ? n_all : 1) * sizeof(ml_offset), n_all ? all : NULL, &ok);
    free(all);
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int nb = ml_param_blocks(lat, blocks);
    size_t block_base = 0;
    for (int k = 0; k < nb && k <= MOELAT_BANDS; block_base += blocks[k]->n_floats, k++) {
        cl_int *off = malloc((size_t)(blocks[k]->n_tensors ? blocks[k]->n_tensors : 1) * sizeof *off);
        if (!off)
            return -1;
        for (int t = 0; t < blocks[k]->n_tensors; t++)
            off[t] = (cl_int)(block_base + blocks[k]->offsets[t]);
        c->toff[k] = buffer(c, (size_t)(blocks[k]->n_tensors ? blocks[k]->n_tensors : 1) * sizeof *off,
                            blocks[k]->n_tensors ? off : NULL, &ok);
        free(off);
    }
    size_t tmpn = lat->N * (size_t)S > c->n_weights ? lat->N * (size_t)S : c->n_weights;
    c->tmp = malloc((tmpn + XY * (size_t)(E ? E : 1)) * sizeof(float));
    c->hostacc = malloc(lat->N * (size_t)S * sizeof(double));
    c->host_chunks = malloc((size_t)c->n_chunks * sizeof *c->host_chunks);
    return ok && c->tmp && c->hostacc && c->host_chunks ? 0 : -1;
}

static int cl_open(void *ctx, ml_grad_engine *e) {
    moelat_lattice *lat = e->lat;
    ml_cl_backend *b = ctx;
    const moelat_backward_cl *x[MOELAT_BANDS] = {NULL, NULL, NULL};
    ml_grad_cl *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(e->dev_why, sizeof e->dev_why, "host (out of memory)");
        return -1;
    }
    c->b = b;
    c->q = b->ctx.queues[0];
    cl_command_queue_properties props = 0;
    c->profiling = clGetCommandQueueInfo(c->q, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL) == CL_SUCCESS &&
                   (props & CL_QUEUE_PROFILING_ENABLE);
    c->cpu = strcmp(b->ctx.info.type, "CPU") == 0;
    c->n_weights = e->w_count;
    c->scratch[MOELAT_BANDS] = (int)ml_gate_f64_doubles(lat->S, lat->gate_hidden);
    c->coop = ml_grad_cl_lanes_per_slot(c, lat);
    c->lanes_of[MOELAT_BANDS] = c->coop;
    ml_param_block *blocks[MOELAT_BANDS + 1];
    ml_param_blocks(lat, blocks);
    size_t w_base = 0; /* band k's first weight in the flat vector */
    for (int k = 0; k < MOELAT_BANDS; w_base += blocks[k]->n_floats, k++) {
        c->on[k] = lat->stencil.count[k] > 0;
        if (!c->on[k])
            continue;
        if (!(x[k] = ml_grad_cl_backward_of(lat, k))) {
            snprintf(e->dev_why, sizeof e->dev_why, "host (band %s: expert '%s' has no device backward, extension %s)",
                     moelat_band_name(k), lat->expert[k].desc->name, MOELAT_EXT_BACKWARD_CL);
            ML_INFO(BWD_LOG, "backward on the host: %s", e->dev_why);
            release(c);
            return -1;
        }
        c->scratch[k] = (int)x[k]->scratch_floats(&lat->expert[k].dims, lat->stencil.count[k]);
        c->lanes[k] = ml_grad_cl_band_lanes(c, lat, k, x[k]);
        if (x[k]->flags & MOELAT_BACKWARD_CL_MEAN_ONLY)
            c->mean_only |= 1 << k;
        c->lanes_of[k] = x[k]->flags & MOELAT_BACKWARD_CL_COOPERATIVE ? c->coop : 1;
        int w_off = 0, ld = 0, P = ml_grad_cl_projection(lat, k, x[k], w_base, &w_off, &ld);
        if (P > 0) {
            cl_int *pi = c->proj_info + 4 * k;
            pi[0] = P;
            pi[1] = w_off;
            pi[2] = ld;
            pi[3] = c->q_stride;
            c->q_stride += P;
        }
    }
    char why[8192] = "";
    if (allocate(e, c) != 0)
        snprintf(why, sizeof why, "allocating the backward's device buffers failed");
    else
        ml_grad_cl_build(e, c, x, why, sizeof why);
    if (why[0]) {
        snprintf(e->dev_why, sizeof e->dev_why, "host (device backward unavailable: %.300s)", why);
        ML_WARN(BWD_LOG, "backward on the host: the device backward is unavailable: %s", why);
        release(c);
        return -1;
    }
    e->dev = c;
    char groups[160] = "";
    for (int k = 0, at = 0; k < MOELAT_BANDS; k++)
        if (c->lanes[k] > 0 && at < (int)sizeof groups)
            at += snprintf(groups + at, sizeof groups - (size_t)at, ", %s in work-groups of %d", moelat_band_name(k),
                           c->lanes[k]);
    int coop_used = 0;
    for (int k = 0; k <= MOELAT_BANDS; k++)
        coop_used |= (k == MOELAT_BANDS || c->on[k]) && c->lanes_of[k] > 1;
    char lanes[96] = "";
    if (coop_used) {
        int at = snprintf(lanes, sizeof lanes, ", %d lanes:", c->coop);
        for (int k = 0; k <= MOELAT_BANDS; k++)
            if ((k == MOELAT_BANDS || c->on[k]) && c->lanes_of[k] > 1 && at < (int)sizeof lanes)
                at += snprintf(lanes + at, sizeof lanes - (size_t)at, " %s",
                               k == MOELAT_BANDS ? "gate" : moelat_band_name(k));
    }
    char projected[96] = "";
    for (int k = 0, at = 0; k < MOELAT_BANDS; k++)
        if (c->proj_info[4 * k] > 0 && at < (int)sizeof projected)
            at += snprintf(projected + at, sizeof projected - (size_t)at, ", %s projected", moelat_band_name(k));
    snprintf(e->dev_why, sizeof e->dev_why, "device %.200s (%d chunk%s of %d row%s, %d slots%s%s%s)",
             lat->device_name, c->n_chunks, c->n_chunks == 1 ? "" : "s", c->rows, c->rows == 1 ? "" : "s",
             c->n_slots, lanes, groups, projected);
    ML_INFO(BWD_LOG, "backward on %s", e->dev_why);
    return 0;
}

/* Where a command's event goes: NULL unless profiling (then a slot of
 * c->events for part; NULL too when the list cannot grow: a lost record). */
static cl_event *event_for(ml_grad_cl *c, int part) {
    if (!c->profiling)
        return NULL;
    if (c->n_events == c->cap_events) {
        size_t cap = c->cap_events ? 2 * c->cap_events : 256;
        prof_event *e = realloc(c->events, cap * sizeof *e);
        if (!e)
            return NULL;
        c->events = e;
        c->cap_events = cap;
    }
    c->events[c->n_events].part = part;
    c->events[c->n_events].ev = NULL;
    return &c->events[c->n_events++].ev;
}

/* Logs the sweep's device time by part (after the queue finished) and
 * forgets the events. */
static void log_profile(ml_grad_cl *c) {
    if (!c->profiling)
        return;
    double ms[P_PARTS] = {0};
    for (size_t i = 0; i < c->n_events; i++) {
        cl_ulong t0 = 0, t1 = 0;
        cl_event ev = c->events[i].ev;
        if (ev && clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL) == CL_SUCCESS &&
            clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) == CL_SUCCESS && t1 > t0)
            ms[c->events[i].part] += (double)(t1 - t0) * 1e-6;
        if (ev)
            clReleaseEvent(ev);
    }
    char line[512];
    int at = snprintf(line, sizeof line, "device backward, kernel ms over the sweep (%zu commands):", c->n_events);
    for (int p = 0; p < P_PARTS && at < (int)sizeof line; p++)
        if (ms[p] > 0)
            at += snprintf(line + at, sizeof line - (size_t)at, " %s %.3f", part_names[p], ms[p]);
    ML_INFO(BWD_LOG, "%s", line);
    c->n_events = 0;
}

static cl_int fill(ml_grad_cl *c, cl_mem m, size_t bytes) {
    const float zero = 0.0f;
    return clEnqueueFillBuffer(c->q, m, &zero, sizeof zero, 0, bytes, 0, NULL, event_for(c, P_FILL));
}

static cl_int write_doubles(ml_grad_cl *c, cl_mem m, const double *src, size_t n) {
    for (size_t v = 0; v < n; v++)
        c->tmp[v] = (float)src[v];
    return clEnqueueWriteBuffer(c->q, m, CL_TRUE, 0, n * sizeof(float), c->tmp, 0, NULL, NULL);
}

/* The recording's weights into c->weights from the forward's parameter
 * buffers (the view's blocks in flat order: each expert's, then the
 * gate's), without the host, when the device holds them: the lattice's
 * weights current there (after the device optimizer only there) and still
 * the recording's (same generation). *copied = 0 otherwise (the host's
 * copy goes up instead). */
static cl_int device_weights(ml_grad_cl *c, moelat_grad *g, int *copied) {
    moelat_lattice *lat = g->lat;
    ml_cl_backend *b = c->b;
    *copied = 0;
    if (!ml_res_weights_on_device(lat) || lat->weights_gen != g->w_gen || lat->backend.ctx != (void *)b)
        return CL_SUCCESS;
    cl_mem buf[MOELAT_BANDS + 1];
    const ml_param_block *blk[MOELAT_BANDS + 1];
    size_t total = 0;
    for (int k = 0; k <= MOELAT_BANDS; k++) {
        buf[k] = k < MOELAT_BANDS ? b->params[k] : b->gate;
        blk[k] = k < MOELAT_BANDS ? b->v->expert[k].params : b->v->gate;
        if (!blk[k] || (blk[k]->n_floats && !buf[k]))
            return CL_SUCCESS; /* a block the device does not hold */
        total += blk[k]->n_floats;
    }
    if (total != c->n_weights)
        return CL_SUCCESS;
    cl_int rc = CL_SUCCESS;
    size_t at = 0;
    for (int k = 0; k <= MOELAT_BANDS && rc == CL_SUCCESS; k++) {
        size_t bytes = blk[k]->n_floats * sizeof(float);
        if (bytes)
            rc = clEnqueueCopyBuffer(c->q, buf[k], c->weights, 0, at, bytes, 0, NULL, NULL);
        at += bytes;
    }
    *copied = rc == CL_SUCCESS;
    return rc;
}

static moelat_status cl_begin(moelat_grad *g) {
    ml_grad_cl *c = g->eng->dev;
    moelat_lattice *lat = g->lat;
    size_t ne = (size_t)lat->X * lat->Y * lat->E;
    int copied = 0;
    cl_int rc = device_weights(c, g, &copied);
    if (rc != CL_SUCCESS)
        return ml_cl_check(c->b, rc, "copying the weights from the forward's buffers into the device backward's");
    moelat_status st = copied ? MOELAT_OK : ml_grad_host_weights(g);
    if (st != MOELAT_OK)
        return st;
    c->sweep_copied = copied;
    c->weights_copied += copied;
    c->weights_uploaded += !copied;
    if (!copied)
        rc = write_doubles(c, c->weights, g->w.flat, c->n_weights);
    if (rc == CL_SUCCESS && ne)
        rc = write_doubles(c, c->ext, g->ext, ne);
    if (rc == CL_SUCCESS) /* dL/ds_T: from here on the adjoint lives in c->gin */
        rc = write_doubles(c, c->gin, g->g, g->NS);
    if (rc == CL_SUCCESS)
        rc = fill(c, c->dw, c->n_weights * sizeof(float));
    if (rc == CL_SUCCESS)
        rc = fill(c, c->dext, (ne ? ne : 1) * sizeof(float));
    if (rc == CL_SUCCESS) {
        cl_int zero = 0;
        rc = clEnqueueWriteBuffer(c->q, c->status, CL_TRUE, 0, sizeof zero, &zero, 0, NULL, NULL);
    }
    g->chunks_device = g->chunks_host = 0;
    g->fallback[0] = '\0';
    return ml_cl_check(c->b, rc, "starting the device backward");
}

#define ARG(k, i, v) (rc == CL_SUCCESS ? (rc = clSetKernelArg((k), (i), sizeof(v), &(v))) : rc)

static cl_int launch(ml_grad_cl *c, cl_kernel k, size_t global, int part) {
    return mlcl_enqueue_kernel(c->q, k, 1, &global, NULL, 0, NULL, event_for(c, part));
}

/* The slot kernels: each work-item walks its own cells, with loops whose
 * trip counts differ per cell. A CPU runtime would pack a work-group's
 * items into vector lanes and run the group on one thread; groups of one
 * item spread the slots over the threads instead. */
static cl_int launch_slots(ml_grad_cl *c, cl_kernel k, size_t slots, int lanes, int part) {
    const size_t one = 1, local = (size_t)lanes, global = slots * local;
    if (lanes > 1)
        return mlcl_enqueue_kernel(c->q, k, 1, &global, &local, 0, NULL, event_for(c, part));
    return mlcl_enqueue_kernel(c->q, k, 1, &global, c->cpu ? &one : NULL, 0, NULL, event_for(c, part));
}

/* Enqueues the chunk of rows [r0, r1) with its commit. */
static cl_int enqueue_chunk(moelat_grad *g, ml_grad_cl *c, int r0, int r1) {
    moelat_lattice *lat = g->lat;
    const cl_int X = lat->X, Y = lat->Y, Z = lat->Z, S = lat->S, XY = lat->X * lat->Y;
    const cl_int c0 = r0 * X, n_cells = (r1 - r0) * X;
    const int z0 = r0 / Y, z1 = (r1 - 1) / Y + 1; /* the planes it touches */
    const int tz0 = z0 - c->halo > 0 ? z0 - c->halo : 0, tz1 = z1 + c->halo < Z ? z1 + c->halo : Z;
    const cl_int t0 = tz0 * XY, n_targets = (tz1 - tz0) * XY;
    const cl_int slots = c->n_slots, slot_floats = c->slot_floats, nw = (cl_int)c->n_weights;
    const cl_int ne = XY * lat->E, n_all = c->n_all;
    cl_int rc = fill(c, c->slot_dw, (size_t)slots * c->n_weights * sizeof(float));
    if (rc == CL_SUCCESS)
        rc = fill(c, c->dchunk, (size_t)n_targets * S * sizeof(float));
    if (rc == CL_SUCCESS)
        rc = fill(c, c->dext_chunk, (size_t)(ne ? ne : 1) * sizeof(float));
    if (rc == CL_SUCCESS)
        rc = fill(c, c->dw_gate, (size_t)n_cells * 3 * sizeof(float));
    cl_kernel k = c->gate_fwd;
    cl_int gscr = c->scratch[MOELAT_BANDS];
    ARG(k, 0, c->state); ARG(k, 1, c->weights); ARG(k, 2, c->toff[MOELAT_BANDS]); ARG(k, 3, c->off_all);
    ARG(k, 4, n_all); ARG(k, 5, X); ARG(k, 6, Y); ARG(k, 7, Z); ARG(k, 8, S); ARG(k, 9, c0);
    ARG(k, 10, n_cells); ARG(k, 11, slots); ARG(k, 12, slot_floats); ARG(k, 13, gscr);
    ARG(k, 14, c->slot_work); ARG(k, 15, c->gate_w);
    if (rc == CL_SUCCESS)
        rc = launch_slots(c, k, (size_t)slots, c->lanes_of[MOELAT_BANDS], P_GATE_FWD);
    for (cl_int band = 0; band < MOELAT_BANDS; band++) {
        if (!c->on[band])
            continue;
        k = c->band[band];
        cl_int n_off = lat->stencil.count[band], scr = c->scratch[band];
        ARG(k, 0, c->state); ARG(k, 1, c->gin); ARG(k, 2, c->gate_w); ARG(k, 3, c->weights);
        ARG(k, 4, c->toff[band]); ARG(k, 5, c->dims[band]); ARG(k, 6, c->ext); ARG(k, 7, c->offsets[band]);
        ARG(k, 8, n_off); ARG(k, 9, X); ARG(k, 10, Y); ARG(k, 11, Z); ARG(k, 12, c0); ARG(k, 13, n_cells);
        ARG(k, 14, t0); ARG(k, 15, slots); ARG(k, 16, slot_floats); ARG(k, 17, scr); ARG(k, 18, nw);
        ARG(k, 19, band); ARG(k, 20, c->slot_dw); ARG(k, 21, c->slot_work); ARG(k, 22, c->dchunk);
        ARG(k, 23, c->dedge[band]); ARG(k, 24, c->dw_gate); ARG(k, 25, c->dext_chunk); ARG(k, 26, c->status);
        cl_int q_stride = c->q_stride, qoff = c->proj_info[4 * band + 3];
        ARG(k, 27, c->proj); ARG(k, 28, q_stride); ARG(k, 29, qoff);
        if (c->lanes[band] > 0) {
            /* The expert's kernel: a work-group per slot row, at most one per cell. */
            const cl_int groups = slots < n_cells ? slots : n_cells;
            const size_t local = (size_t)c->lanes[band], global = (size_t)groups * local;
            ARG(k, 15, groups);
            if (rc == CL_SUCCESS)
                rc = mlcl_enqueue_kernel(c->q, k, 1, &global, &local, 0, NULL, event_for(c, P_BAND + band));
        } else if (rc == CL_SUCCESS) {
            rc = launch_slots(c, k, (size_t)slots, c->lanes_of[band], P_BAND + band);
        }
    }
    k = c->gate;
    ARG(k, 0, c->state); ARG(k, 1, c->weights); ARG(k, 2, c->toff[MOELAT_BANDS]); ARG(k, 3, c->off_all);
    ARG(k, 4, n_all); ARG(k, 5, X); ARG(k, 6, Y); ARG(k, 7, Z); ARG(k, 8, S); ARG(k, 9, c0);
    ARG(k, 10, n_cells); ARG(k, 11, t0); ARG(k, 12, slots); ARG(k, 13, slot_floats); ARG(k, 14, gscr);
    ARG(k, 15, nw); ARG(k, 16, c->dw_gate); ARG(k, 17, c->slot_dw); ARG(k, 18, c->slot_work);
    ARG(k, 19, c->dchunk); ARG(k, 20, c->dnu);
    if (rc == CL_SUCCESS)
        rc = launch_slots(c, k, (size_t)slots, c->lanes_of[MOELAT_BANDS], P_GATE);
    cl_int n[MOELAT_BANDS], q_stride = c->q_stride;
    for (int b = 0; b < MOELAT_BANDS; b++)
        n[b] = c->on[b] ? lat->stencil.count[b] : 0;
    if (q_stride > 0) {
        /* Projected bands: per target the sums of dproj (Q), then W_p's
         * weight gradient from them (into slot row 0, before the commit). */
        k = c->gather_proj;
        for (int b = 0; b < MOELAT_BANDS; b++) {
            ARG(k, 3 * b, c->dedge[b]);
            ARG(k, 3 * b + 1, c->offsets[b]);
            ARG(k, 3 * b + 2, n[b]);
        }
        ARG(k, 9, c->pinfo); ARG(k, 10, q_stride); ARG(k, 11, X); ARG(k, 12, Y); ARG(k, 13, Z); ARG(k, 14, S);
        ARG(k, 15, c0); ARG(k, 16, n_cells); ARG(k, 17, t0); ARG(k, 18, n_targets); ARG(k, 19, c->Q);
        if (rc == CL_SUCCESS)
            rc = launch(c, k, (size_t)n_targets * (c->cpu ? 1 : (size_t)q_stride), P_PROJECT);
        k = c->proj_dw;
        ARG(k, 0, c->Q); ARG(k, 1, c->pinfo); ARG(k, 2, q_stride); ARG(k, 3, c->state); ARG(k, 4, S);
        ARG(k, 5, t0); ARG(k, 6, n_targets); ARG(k, 7, c->slot_dw);
        if (rc == CL_SUCCESS)
            rc = launch(c, k, (size_t)q_stride * (size_t)S, P_PROJECT);
    }
    k = c->gather;
    for (int b = 0; b < MOELAT_BANDS; b++) {
        ARG(k, 3 * b, c->dedge[b]);
        ARG(k, 3 * b + 1, c->offsets[b]);
        ARG(k, 3 * b + 2, n[b]);
    }
    cl_int mean_only = c->mean_only;
    ARG(k, 9, mean_only); ARG(k, 10, c->dnu); ARG(k, 11, c->off_all); ARG(k, 12, n_all); ARG(k, 13, X);
    ARG(k, 14, Y); ARG(k, 15, Z); ARG(k, 16, S); ARG(k, 17, c0); ARG(k, 18, n_cells); ARG(k, 19, t0);
    ARG(k, 20, n_targets); ARG(k, 21, c->dchunk); ARG(k, 22, c->pinfo); ARG(k, 23, q_stride); ARG(k, 24, c->Q);
    ARG(k, 25, c->weights); ARG(k, 26, c->state);
    if (rc == CL_SUCCESS)
        rc = launch(c, k, c->cpu ? (size_t)n_targets : (size_t)n_targets * S, P_GATHER);
    k = c->commit;
    cl_int n_vals = n_targets * S;
    ARG(k, 0, c->slot_dw); ARG(k, 1, slots); ARG(k, 2, nw); ARG(k, 3, c->dw); ARG(k, 4, c->dchunk);
    ARG(k, 5, t0); ARG(k, 6, S); ARG(k, 7, n_vals); ARG(k, 8, c->dacc); ARG(k, 9, c->dext_chunk);
    ARG(k, 10, ne); ARG(k, 11, c->dext);
    if (rc == CL_SUCCESS)
        rc = launch(c, k, (size_t)nw + (size_t)n_vals + (size_t)ne, P_COMMIT);
    return rc;
}

/* Chunk ch's rows [r0, r1); row y + Y z holds cells X (y + Y z) on. */
static void chunk_rows(const ml_grad_cl *c, const moelat_lattice *lat, int ch, int *r0, int *r1) {
    const int n_rows = lat->Y * lat->Z;
    *r0 = ch * c->rows;
    *r1 = *r0 + c->rows < n_rows ? *r0 + c->rows : n_rows;
}

/* One reverse step: the state s_t is uploaded, the adjoint dL/ds_{t+1}
 * is already on the device (c->gin) and becomes dL/ds_t there (gin +=
 * dacc); nothing is read back unless a chunk runs on the host, whose rows
 * need the adjoint on the host. Failures a kernel reports through
 * c->status are read once, at the sweep's end. g_in and g_out, the host's
 * adjoint buffers, are used only for such host chunks. */
static moelat_status cl_step(moelat_grad *g, const double *cur, const double *g_in, double *g_out) {
    (void)g_in;
    ml_grad_cl *c = g->eng->dev;
    moelat_lattice *lat = g->lat;
    const size_t NS = g->NS;
    cl_int rc = write_doubles(c, c->state, cur, NS);
    if (rc == CL_SUCCESS)
        rc = fill(c, c->dacc, NS * sizeof(float));
    if (rc == CL_SUCCESS && c->q_stride > 0) { /* W_p n of every cell, for every chunk of the step */
        cl_kernel k = c->project;
        cl_int q_stride = c->q_stride, S = lat->S, N = (cl_int)lat->N;
        ARG(k, 0, c->state); ARG(k, 1, c->weights); ARG(k, 2, c->pinfo); ARG(k, 3, q_stride); ARG(k, 4, S);
        ARG(k, 5, N); ARG(k, 6, c->proj);
        if (rc == CL_SUCCESS)
            rc = launch(c, k, lat->N * (size_t)q_stride, P_PROJECT);
    }
    if (rc != CL_SUCCESS) {
        snprintf(g->fallback, sizeof g->fallback, "uploading a backward step: %s", mlcl_error_name(rc));
        give_up(g);
        return ml_fail(lat, MOELAT_ERR_DEVICE, "uploading a backward step failed: %s", mlcl_error_name(rc));
    }
    int *host = c->host_chunks, n_host = 0;
    for (int ch = 0; ch < c->n_chunks; ch++) {
        int r0, r1;
        chunk_rows(c, lat, ch, &r0, &r1);
        if (ch == lat->tuning.grad_host_chunk) {
            snprintf(g->fallback, sizeof g->fallback, "chunk %d (rows %d-%d): tuning grad_host_chunk", ch, r0,
                     r1 - 1);
        } else {
            cl_int e = enqueue_chunk(g, c, r0, r1);
            if (e == CL_SUCCESS) {
                g->chunks_device++;
                continue;
            }
            snprintf(g->fallback, sizeof g->fallback, "chunk %d (rows %d-%d): %s on %.150s", ch, r0, r1 - 1,
                     mlcl_error_name(e), lat->device_name);
            ML_WARN(BWD_LOG, "device backward of %s failed; the host redoes it", g->fallback);
        }
        host[n_host++] = ch;
        g->chunks_host++;
    }
    if (n_host == 0) {
        cl_kernel k = c->accumulate;
        cl_int n = (cl_int)NS;
        ARG(k, 0, c->gin); ARG(k, 1, c->dacc); ARG(k, 2, n);
        if (rc == CL_SUCCESS)
            rc = launch(c, k, NS, P_ACCUMULATE);
        if (rc == CL_SUCCESS)
            return MOELAT_OK;
    } else {
        /* The host's rows need dL/ds_{t+1}: the adjoint and the device's
         * part come back, the host adds its rows, the sum goes up again. */
        float *dev_part = c->tmp;
        double *gin = g_out; /* dL/ds_{t+1} in double, then overwritten by dL/ds_t */
        rc = clEnqueueReadBuffer(c->q, c->gin, CL_TRUE, 0, NS * sizeof(float), dev_part, 0, NULL, NULL);
        if (rc == CL_SUCCESS) {
            for (size_t v = 0; v < NS; v++)
                gin[v] = dev_part[v];
            rc = clEnqueueReadBuffer(c->q, c->dacc, CL_TRUE, 0, NS * sizeof(float), dev_part, 0, NULL, NULL);
        }
        if (rc == CL_SUCCESS) {
            memset(c->hostacc, 0, NS * sizeof(double));
            for (int h = 0; h < n_host; h++) {
                int r0, r1;
                chunk_rows(c, lat, host[h], &r0, &r1);
                moelat_status st = ml_grad_step_bwd_rows(g, cur, gin, r0, r1, c->hostacc);
                if (st != MOELAT_OK)
                    return st;
            }
            for (size_t v = 0; v < NS; v++)
                g_out[v] = gin[v] + c->hostacc[v] + (double)dev_part[v];
            rc = write_doubles(c, c->gin, g_out, NS);
        }
        if (rc == CL_SUCCESS)
            return MOELAT_OK;
    }
    snprintf(g->fallback, sizeof g->fallback, "the device backward failed (%s)", mlcl_error_name(rc));
    ML_WARN(BWD_LOG, "%s; the sweep is redone on the host", g->fallback);
    give_up(g);
    return ml_fail(lat, MOELAT_ERR_DEVICE, "device backward failed");
}

/* dL/dW from the device into c->tmp, then added into g->dweights. */
static cl_int read_dw(ml_grad_cl *c) {
    return clEnqueueReadBuffer(c->q, c->dw, CL_TRUE, 0, c->n_weights * sizeof(float), c->tmp, 0, NULL, NULL);
}

static void add_dw(moelat_grad *g, const ml_grad_cl *c) {
    for (size_t v = 0; v < c->n_weights; v++)
        g->dweights[v] += c->tmp[v];
}

static moelat_status cl_end(moelat_grad *g) {
    ml_grad_cl *c = g->eng->dev;
    moelat_lattice *lat = g->lat;
    size_t ne = (size_t)lat->X * lat->Y * lat->E;
    float *ext = c->tmp + (c->n_weights > g->NS ? c->n_weights : g->NS);
    cl_int bad = 0;
    cl_int rc = clEnqueueReadBuffer(c->q, c->status, CL_TRUE, 0, sizeof bad, &bad, 0, NULL, NULL);
    if (rc == CL_SUCCESS && bad) {
        snprintf(g->fallback, sizeof g->fallback, "the device backward failed (an expert's backward_fn "
                                                  "returned an error)");
        ML_WARN(BWD_LOG, "%s; the sweep is redone on the host", g->fallback);
        give_up(g);
        return ml_fail(lat, MOELAT_ERR_DEVICE, "device backward failed");
    }
    /* dL/ds_0 */
    if (rc == CL_SUCCESS)
        rc = clEnqueueReadBuffer(c->q, c->gin, CL_TRUE, 0, g->NS * sizeof(float), c->tmp, 0, NULL, NULL);
    if (rc == CL_SUCCESS)
        for (size_t v = 0; v < g->NS; v++)
            g->g[v] = c->tmp[v];
    if (rc == CL_SUCCESS && ne)
        rc = clEnqueueReadBuffer(c->q, c->dext, CL_TRUE, 0, ne * sizeof(float), ext, 0, NULL, NULL);
    /* dL/dW: into the device optimizer's gradient sum when the trainer
     * asked and the whole sweep ran here (host chunks' parts are in
     * g->dweights), else read back. Last, so that a failure before it
     * (the sweep redone on the host) has added nothing. */
    ml_optim_cl *o = c->b->optim;
    int keep = g->sum_on_device && g->chunks_host == 0 && o && o->n == c->n_weights;
    if (rc == CL_SUCCESS && keep)
        rc = ml_optim_cl_add_grad(o, c->dw);
    else if (rc == CL_SUCCESS)
        rc = read_dw(c);
    if (rc == CL_SUCCESS)
        log_profile(c);
    if (rc != CL_SUCCESS) {
        snprintf(g->fallback, sizeof g->fallback, "reading the gradients: %s", mlcl_error_name(rc));
        give_up(g);
        return ml_fail(lat, MOELAT_ERR_DEVICE, "reading the device backward's gradients failed: %s",
                       mlcl_error_name(rc));
    }
    g->dw_on_device = keep;
    c->dw_summed += keep;
    c->dw_read += !keep;
    ML_DEBUG(BWD_LOG, "sweep's end: weights %s, dL/dW %s (so far: weights copied on the device %lu, uploaded "
             "%lu; dL/dW summed on the device %lu, read back %lu)",
             c->sweep_copied ? "copied on the device" : "uploaded", keep ? "summed on the device" : "read back",
             c->weights_copied, c->weights_uploaded, c->dw_summed, c->dw_read);
    if (!keep)
        add_dw(g, c);
    for (size_t v = 0; v < ne; v++)
        g->dext[v] += ext[v];
    return MOELAT_OK;
}

/* dL/dW left on the device by cl_end, read when asked after all. */
static moelat_status cl_read_dw(moelat_grad *g) {
    ml_grad_cl *c = g->eng->dev;
    cl_int rc = read_dw(c);
    if (rc != CL_SUCCESS)
        return ml_cl_check(c->b, rc, "reading the device backward's weight gradient back");
    add_dw(g, c);
    c->dw_read++;
    return MOELAT_OK;
}

const ml_backward_ops ml_backward_cl_ops = {
    .open = cl_open,
    .close = cl_close,
    .begin = cl_begin,
    .step = cl_step,
    .end = cl_end,
    .read_dw = cl_read_dw,
};
