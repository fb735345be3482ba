/* A device step of the OpenCL backend: begin_step, enqueue, finish.
 *
 * begin_step resets the gates' finite check and computes the row prefix
 * sums of the whole lattice (queue 0), then each expert's once-per-step
 * precomputation. enqueue then, for every device chunk:
 *   aggregate (queue q) -> each expert (queues q+1.., concurrently) -> gate
 *   and combine into the other buffer (queue q, waiting on the experts; it
 *   also counts non-finite cells, read back once in finish)
 * with events for the dependencies. An expert without a device path (or
 * whose program did not build) is evaluated on the host for the device
 * chunks and its outputs uploaded before the gate. finish waits, writes
 * the host chunks' results into the next buffer so that the step's output
 * is whole, reads the finite check and swaps the buffers. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/backend_cl.h"

/* Keeps ev (and first, its expert's first command, when not NULL) for the
 * step's accounting; the caller keeps its own references. */
static void keep_span(ml_step_events *se, cl_event first, cl_event ev, ml_time_kind kind) {
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
        ml_time_kind *k = f ? realloc(se->kind, (size_t)cap * sizeof *k) : NULL;
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

static void keep_event(ml_step_events *se, cl_event ev, ml_time_kind kind) { keep_span(se, NULL, ev, kind); }

/* The kept events' times into the step's report; releases them. */
static void account_events(ml_step_events *se, ml_step *st) {
    for (int i = 0; i < se->n; i++) {
        double ms = se->first[i] ? mlcl_span_ms(se->first[i], se->ev[i]) : mlcl_event_ms(se->ev[i]);
        if (se->first[i])
            clReleaseEvent(se->first[i]);
        ml_time_kind k = se->kind[i];
        st->device_ms[k] += ms;
        if ((int)k < MOELAT_BANDS)
            st->expert_calls[k]++;
        clReleaseEvent(se->ev[i]);
    }
    free(se->ev);
    free(se->first);
    free(se->kind);
    memset(se, 0, sizeof *se);
}

static void release_pre(ml_cl_backend *b) {
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (b->pre[k]) {
            clReleaseEvent(b->pre[k]);
            b->pre[k] = NULL;
        }
}

static void finish_queues(ml_cl_backend *b) {
    for (int q = 0; q < b->ctx.n_queues; q++)
        clFinish(b->ctx.queues[q]);
}

/* Ends a step that failed: nothing of it may still run or be referenced. */
static void abort_step(ml_cl_backend *b, ml_step *st) {
    release_pre(b);
    account_events(&b->se, st);
    ml_early_reads_end(&b->early, b->ctx.transfer);
    if (b->step_start) {
        /* Its work may still run; the event only loses our reference. */
        clReleaseEvent(b->step_start);
        b->step_start = NULL;
    }
}

/* Evaluates band k's expert on the host for every cell of chunk c and
 * writes the outputs into the chunk set's out[k] (a device expert's job).
 * MOELAT_ERR_DEVICE: the upload failed; another status: the expert did. */
static moelat_status host_expert_chunk(ml_cl_backend *b, int k, const ml_chunk *c, ml_chunk_set *s,
                                       cl_command_queue q, cl_event wait, cl_event *done, int *expert_failed) {
    const ml_backend_view *v = b->v;
    moelat_status st = v->host_expert(v->core, k, c, b->host_expert_out);
    if (st != MOELAT_OK) {
        *expert_failed = 1; /* no device fallback helps */
        return st;
    }
    cl_int rc = clEnqueueWriteBuffer(q, s->out[k], CL_FALSE, 0, (size_t)c->n_cells * v->S * sizeof(float),
                                     b->host_expert_out, wait ? 1 : 0, wait ? &wait : NULL, done);
    if (rc == CL_SUCCESS)
        rc = clWaitForEvents(1, done); /* host_expert_out is reused by the next chunk */
    return ml_cl_check(b, rc, "uploading host expert outputs");
}

/* Enqueues chunk ci on queue slot qi. MOELAT_OK; or a status with
 * *expert_failed 0 when its device work could not be enqueued (the view's
 * error says why; nothing of it writes the next buffer), 1 when an expert
 * evaluated on the host failed (the step cannot go on). */
static moelat_status enqueue_chunk(ml_cl_backend *b, int ci, int qi, int *expert_failed) {
    const ml_backend_view *v = b->v;
    const ml_chunk *c = &v->chunks[ci];
    ml_chunk_set *s = &b->sets[ci % b->n_sets];
    int nq = b->ctx.n_queues;
    cl_command_queue q = b->ctx.queues[qi % nq];
    cl_event agg = NULL, gate = NULL, ex[MOELAT_BANDS] = {NULL, NULL, NULL};
    cl_event ex_first[MOELAT_BANDS] = {NULL, NULL, NULL}; /* set by experts of several commands */
    moelat_status rc = MOELAT_ERR_DEVICE;
    *expert_failed = 0;

    /* The set's previous chunk must be done with it, and the step's check
     * reset and prefix sums must be done (they are on queue 0). */
    cl_event wait_agg[2];
    cl_uint n_wait_agg = 0;
    if (s->last)
        wait_agg[n_wait_agg++] = s->last;
    if (b->step_start)
        wait_agg[n_wait_agg++] = b->step_start;
    cl_int e = ml_cl_enqueue_aggregate(b, c, s, q, n_wait_agg, n_wait_agg ? wait_agg : NULL, &agg);
    if (ml_cl_check(b, e, "enqueueing ml_aggregate") != MOELAT_OK)
        goto out;
    keep_event(&b->se, agg, ML_TIME_AGGREGATE);

    for (int k = 0; k < MOELAT_BANDS; k++) {
        cl_command_queue qk = b->ctx.queues[(qi + 1 + k) % nq];
        if (!b->expert_on_device[k]) {
            moelat_status hr = host_expert_chunk(b, k, c, s, qk, agg, &ex[k], expert_failed);
            if (hr != MOELAT_OK) {
                rc = hr;
                goto out;
            }
            continue;
        }
        cl_event waits[1 + MOELAT_BANDS];
        int nw = 0;
        waits[nw++] = agg;
        for (int p = 0; p < MOELAT_BANDS; p++)
            if (b->pre[p])
                waits[nw++] = b->pre[p];
        moelat_cl_chunk ch = ml_cl_chunk_call(b, k, c, s, qk, waits, nw, &ex[k], &ex_first[k]);
        if (mlcl_fault_hit(MLCL_FAULT_ENQUEUE)) {
            ml_view_fail(v, MOELAT_ERR_DEVICE, "expert '%s' enqueue failed: CL_OUT_OF_RESOURCES (injected)",
                         v->expert[k].desc->name);
            goto out;
        }
        if (v->expert[k].desc->cl_enqueue(b->expert_state[k], &ch) != MOELAT_EXPERT_OK) {
            ml_view_fail(v, MOELAT_ERR_DEVICE, "expert '%s' failed to enqueue chunk %d", v->expert[k].desc->name, ci);
            goto out;
        }
        keep_span(&b->se, ex_first[k], ex[k], (ml_time_kind)k);
    }
    cl_event waits[MOELAT_BANDS];
    int nw = 0;
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (ex[k])
            waits[nw++] = ex[k];
    e = ml_cl_enqueue_gate(b, c, s, b->states[1 - b->cur], q, (cl_uint)nw, nw ? waits : NULL, &gate);
    if (ml_cl_check(b, e, "enqueueing ml_gate_combine") != MOELAT_OK)
        goto out;
    keep_event(&b->se, gate, ML_TIME_GATE);
    if (s->last)
        clReleaseEvent(s->last);
    s->last = gate;
    gate = NULL;
    rc = MOELAT_OK;
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

/* Writes the host chunks' results (st->host_next) into the device's next
 * buffer. */
static moelat_status upload_host_chunks(ml_cl_backend *b, const ml_step *st) {
    const ml_backend_view *v = b->v;
    cl_command_queue q = b->ctx.queues[0];
    size_t row = (size_t)v->X * v->S * sizeof(float);
    size_t slice = row * (size_t)v->Y;
    for (int i = 0; i < st->n_host; i++) {
        const ml_chunk *c = &v->chunks[st->host[i]];
        size_t origin[3] = {(size_t)c->origin[0] * v->S * sizeof(float), (size_t)c->origin[1], (size_t)c->origin[2]};
        size_t region[3] = {(size_t)c->extent[0] * v->S * sizeof(float), (size_t)c->extent[1], (size_t)c->extent[2]};
        cl_int e = clEnqueueWriteBufferRect(q, b->states[1 - b->cur], CL_FALSE, origin, origin, region, row, slice,
                                            row, slice, st->host_next, 0, NULL, NULL);
        if (ml_cl_check(b, e, "uploading host chunks") != MOELAT_OK)
            return MOELAT_ERR_DEVICE;
    }
    return ml_cl_check(b, clFinish(q), "uploading host chunks");
}

/* The values the finite check starts a step from: no cell, and INT_MAX
 * as the lowest cell overall and per stage (kernels_cl/moelat_step.cl:
 * each expert's output, then the combine). Static: the write that uses
 * them is non-blocking. */
static const cl_int check_init[ML_CL_CHECK_INTS] = {0, INT_MAX, INT_MAX, INT_MAX, INT_MAX, INT_MAX};

/* Starts a step's device work on queue 0: resets the gate's finite check,
 * then the row prefix sums of the current states. b->step_start is the
 * event every chunk's aggregation waits for. */
static moelat_status start_device_step(ml_cl_backend *b) {
    cl_command_queue q = b->ctx.queues[0];
    cl_event reset = NULL, prefix = NULL;
    cl_int e = clEnqueueWriteBuffer(q, b->check, CL_FALSE, 0, sizeof check_init, check_init, 0, NULL, &reset);
    if (ml_cl_check(b, e, "resetting the finite check") != MOELAT_OK)
        return MOELAT_ERR_DEVICE;
    e = ml_cl_enqueue_prefix(b, q, 1, &reset, &prefix);
    if (ml_cl_check(b, e, "enqueueing ml_row_prefix") != MOELAT_OK) {
        clReleaseEvent(reset);
        return MOELAT_ERR_DEVICE;
    }
    if (prefix) {
        clReleaseEvent(reset);
        keep_event(&b->se, prefix, ML_TIME_AGGREGATE); /* counted as aggregation */
        b->step_start = prefix;
    } else {
        b->step_start = reset;
    }
    return MOELAT_OK;
}

/* Reads the finite check the device chunks' gates filled (host chunks
 * stop on a non-finite value themselves). A blocking read after the
 * step's clFinish: tools/bench/NOTES.md item 23 measured the
 * alternatives. */
static moelat_status check_finite(ml_cl_backend *b) {
    cl_int res[ML_CL_CHECK_INTS];
    cl_int e = clEnqueueReadBuffer(b->ctx.queues[0], b->check, CL_TRUE, 0, sizeof res, res, 0, NULL, NULL);
    if (ml_cl_check(b, e, "checking states for NaN and Inf") != MOELAT_OK)
        return MOELAT_ERR_DEVICE;
    if (res[0] == 0)
        return MOELAT_OK;
    /* The first stage of the first cell, as the host path would meet it. */
    int band = -1;
    for (int k = 0; k < MOELAT_BANDS && band < 0; k++)
        if (res[2 + k] == res[1])
            band = k;
    return b->v->nonfinite(b->v->core, (size_t)res[1], band);
}

/* Moves every device chunk of st to its host list. */
static void all_to_host(ml_step *st) {
    for (int i = 0; i < st->n_dev; i++)
        st->host[st->n_host++] = st->dev[i];
    st->n_dev = 0;
}

moelat_status ml_cl_begin_step(void *ctx, ml_step *st) {
    ml_cl_backend *b = ctx;
    const ml_backend_view *v = b->v;
    b->started = 0;
    memset(&b->se, 0, sizeof b->se);
    if (ml_early_reads_plan(v, b->ctx.info.name, st, &b->early) != 0)
        for (int r = 0; r < ML_MAX_DELIVER; r++)
            b->early.blocked[r] = 1; /* out of memory: read after the step */
    if (st->n_dev == 0)
        return MOELAT_OK;
    if (start_device_step(b) != MOELAT_OK) {
        /* No device chunk can aggregate without it: this step they all
         * run on the host. */
        ml_fallbacks_add(&st->fb, v->err);
        all_to_host(st);
        moelat_status s = v->host_states(v->core);
        if (s != MOELAT_OK)
            abort_step(b, st);
        return s;
    }
    b->started = 1;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        if (!b->expert_on_device[k] || !v->expert[k].desc->cl_step_begin)
            continue;
        cl_command_queue q = b->ctx.queues[(1 + k) % b->ctx.n_queues];
        if (ml_cl_expert_step_begin(b, k, q, &b->pre[k]) != MOELAT_EXPERT_OK) {
            /* Without its precomputation the expert cannot run: host. */
            char reason[256];
            snprintf(reason, sizeof reason, "expert '%s' failed its per-step precomputation: band %s runs on the host",
                     v->expert[k].desc->name, moelat_band_name(k));
            ml_fallbacks_add(&st->fb, reason);
            b->expert_on_device[k] = 0;
            moelat_status s = v->host_states(v->core);
            if (s != MOELAT_OK) {
                abort_step(b, st);
                return s;
            }
            continue;
        }
        keep_event(&b->se, b->pre[k], ML_TIME_PRECOMPUTE);
    }
    return MOELAT_OK;
}

moelat_status ml_cl_enqueue(void *ctx, ml_step *st) {
    ml_cl_backend *b = ctx;
    const ml_backend_view *v = b->v;
    for (int i = 0; i < st->n_dev; i++) {
        int expert_failed = 0;
        moelat_status er = enqueue_chunk(b, st->dev[i], i, &expert_failed);
        if (er == MOELAT_OK) {
            ml_early_reads_chunk_done(&b->early, st->dev[i], b->sets[st->dev[i] % b->n_sets].last, b->ctx.transfer,
                                      b->states[1 - b->cur]);
            continue;
        }
        if (expert_failed) {
            finish_queues(b);
            abort_step(b, st);
            return er;
        }
        /* Its device work failed: this chunk runs on the host. Work of it
         * already enqueued may still use the chunk's scratch set: drain
         * the queues before another chunk reuses it. */
        ml_fallbacks_add(&st->fb, v->err);
        finish_queues(b);
        moelat_status s = v->host_states(v->core);
        if (s != MOELAT_OK) {
            abort_step(b, st);
            return s;
        }
        /* Move it to the host list; the last device chunk takes its slot
         * and is enqueued next. */
        ml_early_reads_chunk_on_host(&b->early, st->dev[i]);
        st->host[st->n_host++] = st->dev[i];
        st->dev[i--] = st->dev[--st->n_dev];
    }
    release_pre(b);
    for (int q = 0; q < b->ctx.n_queues; q++)
        clFlush(b->ctx.queues[q]);
    /* Host chunks run while the device works, unless the device computes
     * on the host's own cores (a CPU runtime): then its threads finish
     * here and the host pool runs after them, one pool busy at a time
     * (cl_shape.h). */
    if (st->n_host > 0 && b->shape.shared_cores)
        for (int q = 0; q < b->ctx.n_queues; q++)
            if (ml_cl_check(b, clFinish(b->ctx.queues[q]), "finishing the device's chunks before the host's") !=
                MOELAT_OK)
                return MOELAT_ERR_DEVICE;
    return MOELAT_OK;
}

moelat_status ml_cl_finish(void *ctx, ml_step *st, int host_ok) {
    ml_cl_backend *b = ctx;
    const ml_backend_view *v = b->v;
    moelat_status rc = MOELAT_OK;
    ml_early_reads_wait(&b->early, &st->planes_early);
    for (int q = 0; q < b->ctx.n_queues; q++)
        if (ml_cl_check(b, clFinish(b->ctx.queues[q]), "finishing the step") != MOELAT_OK)
            rc = MOELAT_ERR_DEVICE;
    if (rc == MOELAT_OK && host_ok && st->n_host > 0)
        rc = upload_host_chunks(b, st);
    if (rc != MOELAT_OK || !host_ok) {
        abort_step(b, st);
        return rc;
    }
    account_events(&b->se, st);
    if (b->step_start) {
        clReleaseEvent(b->step_start);
        b->step_start = NULL;
    }
    /* Routing statistics: the device chunks' gate weights, read on queue 0
     * ahead of the finite check's blocking read (which waits for it). */
    cl_int route_e = CL_SUCCESS;
    if (b->started) {
        size_t at = (size_t)v->X * v->Y * (size_t)v->active_z0 * MOELAT_BANDS;
        size_t n = (size_t)v->X * v->Y * (size_t)(v->active_z1 - v->active_z0) * MOELAT_BANDS;
        route_e = clEnqueueReadBuffer(b->ctx.queues[0], b->route, CL_FALSE, at * sizeof(float), n * sizeof(float),
                                      b->route_host + at, 0, NULL, NULL);
        rc = check_finite(b);
        if (rc == MOELAT_OK && ml_cl_check(b, route_e, "reading the gate weights") == MOELAT_OK)
            st->route = b->route_host;
        else if (rc == MOELAT_OK)
            rc = MOELAT_ERR_DEVICE;
    }
    ml_early_reads_end(&b->early, b->ctx.transfer);
    /* A failing finite check keeps the last finite states current, as the
     * host path does: the failed step's output is not swapped in. */
    if (rc == MOELAT_OK) {
        b->cur = 1 - b->cur;
        st->swapped = 1;
    }
    return rc;
}
