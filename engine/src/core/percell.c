/* The per-cell host path: the readable reference of a step.
 *
 * For every cell: gather each band's neighbours (stencil offsets clipped at
 * the boundary) into one contiguous array, compute nu, call each expert's
 * host function on its band, run the gate and combine:
 *   x' = x + sum_k w_k E_k   (E_k = 0 for an empty band).
 * Work items are rows of cells (one y, z of one chunk) spread over the
 * thread pool; a cell's result never depends on the thread. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gate.h"
#include"core/lattice_internal.h"

typedef struct ml_percell_ws {
    float *nbr[MOELAT_BANDS];     /* gathered neighbours, count x S */
    size_t *idx[MOELAT_BANDS];    /* their cells */
    float *expert_scratch[MOELAT_BANDS];
    float *expert_out;            /* S */
    float *nu;                    /* S */
    float *gate_scratch;
    ml_route_acc route;           /* routing statistics of this worker's cells */
} ml_percell_ws;

static void ws_free(ml_percell_ws *w) {
    for (int k = 0; k < MOELAT_BANDS; k++) {
        free(w->nbr[k]);
        free(w->idx[k]);
        free(w->expert_scratch[k]);
    }
    free(w->expert_out);
    free(w->nu);
    free(w->gate_scratch);
}

static int ensure_workspaces(moelat_lattice *lat) {
    int n = ml_pool_size(lat->pool);
    if (lat->ws && lat->n_ws >= n)
        return 0;
    ml_percell_ws *ws = calloc((size_t)n, sizeof *ws);
    if (!ws)
        return -1;
    int S = lat->S;
    for (int t = 0; t < n; t++) {
        int ok = 1;
        for (int k = 0; k < MOELAT_BANDS; k++) {
            size_t cnt = (size_t)(lat->stencil.count[k] > 0 ? lat->stencil.count[k] : 1);
            ws[t].nbr[k] = malloc(cnt * (size_t)S * sizeof(float));
            ws[t].idx[k] = malloc(cnt * sizeof(size_t));
            size_t sf = lat->expert[k].scratch_floats;
            ws[t].expert_scratch[k] = malloc((sf ? sf : 1) * sizeof(float));
            ok = ok && ws[t].nbr[k] && ws[t].idx[k] && ws[t].expert_scratch[k];
        }
        ws[t].expert_out = malloc((size_t)S * sizeof(float));
        ws[t].nu = malloc((size_t)S * sizeof(float));
        ws[t].gate_scratch = malloc((size_t)(3 * S + lat->gate_hidden) * sizeof(float));
        if (!ok || !ws[t].expert_out || !ws[t].nu || !ws[t].gate_scratch) {
            for (int u = 0; u <= t; u++)
                ws_free(&ws[u]);
            free(ws);
            return -1;
        }
    }
    if (lat->ws) {
        for (int t = 0; t < lat->n_ws; t++)
            ws_free(&lat->ws[t]);
        free(lat->ws);
    }
    lat->ws = ws;
    lat->n_ws = n;
    return 0;
}

void ml_percell_free(moelat_lattice *lat) {
    if (!lat->ws)
        return;
    for (int t = 0; t < lat->n_ws; t++)
        ws_free(&lat->ws[t]);
    free(lat->ws);
    lat->ws = NULL;
    lat->n_ws = 0;
}

/* The first failure of a run, kept as the lowest cell index so the report
 * is the same for any thread count. */
typedef struct cell_failure {
    size_t cell;
    int band;       /* -1: the combined state is non-finite */
    int status;     /* expert status, or 0 */
} cell_failure;

/* Copies the in-lattice neighbours of cell (x, y, z) in band k into
 * w->nbr[k], contiguously; returns how many there are. */
static int gather_band(const moelat_lattice *lat, ml_percell_ws *w, int k, int x, int y, int z,
                       const float *states) {
    const int S = lat->S;
    int c = ml_stencil_neighbours(&lat->stencil, k, lat->X, lat->Y, lat->Z, x, y, z, w->idx[k]);
    for (int j = 0; j < c; j++)
        memcpy(w->nbr[k] + (size_t)j * S, states + w->idx[k][j] * S, (size_t)S * sizeof(float));
    return c;
}

/* Runs band k's host function on the gathered neighbours (count >= 1) of
 * cell i = (x, y, z) into out. Returns 0, or 1 with *fail filled when the
 * expert fails or writes a non-finite value. */
static int run_expert(const moelat_lattice *lat, ml_percell_ws *w, int k, int x, int y, int z,
                      const float *states, int count, float *out, cell_failure *fail) {
    static const float zero_ext[MOELAT_EXT_SIZE];
    const int S = lat->S;
    const size_t i = (size_t)x + (size_t)lat->X * ((size_t)y + (size_t)lat->Y * z);
    const ml_expert_slot *e = &lat->expert[k];
    const float *ext = ml_cell_ext(lat, x, y, z);
    moelat_host_cell hc = {
        .struct_size = sizeof hc,
        .dims = &e->dims,
        .tensors = (const float *const *)e->params.tensors,
        .x = states + i * S,
        .neighbours = w->nbr[k],
        .count = count,
        .ext = ext ? ext : zero_ext,
        .cell = {x, y, z},
        .out = out,
        .scratch = w->expert_scratch[k],
    };
    int st = e->desc->host_cell(&hc);
    int finite = 1;
    for (int s = 0; s < S && finite; s++)
        finite = isfinite(out[s]);
    if (st != MOELAT_EXPERT_OK || !finite) {
        *fail = (cell_failure){i, k, st};
        return 1;
    }
    return 0;
}

/* Computes the new state of cell (x, y, z) into out. Returns 0, or 1 with
 * *fail filled when an expert fails or a value is not finite. */
static int update_cell(moelat_lattice *lat, ml_percell_ws *w, int x, int y, int z,
                       const float *states, float *out, cell_failure *fail) {
    const int S = lat->S;
    const size_t i = (size_t)x + (size_t)lat->X * ((size_t)y + (size_t)lat->Y * z);
    const float *xs = states + i * S;
    int count[MOELAT_BANDS];
    int total = 0;

    for (int s = 0; s < S; s++)
        w->nu[s] = 0.0f;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        int c = gather_band(lat, w, k, x, y, z, states);
        for (int j = 0; j < c; j++)
            for (int s = 0; s < S; s++)
                w->nu[s] += w->nbr[k][(size_t)j * S + s];
        count[k] = c;
        total += c;
    }
    if (total > 0)
        for (int s = 0; s < S; s++)
            w->nu[s] /= (float)total;

    float gw[MOELAT_BANDS];
    ml_gate_host(&lat->gate, S, lat->gate_hidden, xs, w->nu, gw, w->gate_scratch);
    ml_route_add(&w->route, gw, 1); /* routing statistics */

    for (int s = 0; s < S; s++)
        out[s] = xs[s];
    for (int k = 0; k < MOELAT_BANDS; k++) {
        if (count[k] == 0)
            continue; /* E_k = 0: the expert is not run */
        if (run_expert(lat, w, k, x, y, z, states, count[k], w->expert_out, fail))
            return 1;
        for (int s = 0; s < S; s++)
            out[s] += gw[k] * w->expert_out[s];
    }
    for (int s = 0; s < S; s++)
        if (!isfinite(out[s])) {
            *fail = (cell_failure){i, -1, 0};
            return 1;
        }
    return 0;
}

typedef struct row_item {
    int chunk;
    int y, z; /* lattice coordinates of the row */
} row_item;

typedef struct run_ctx {
    moelat_lattice *lat;
    const row_item *rows;
    const float *states;
    float *next;
    cell_failure *fail;  /* one per worker */
    int *failed;         /* one per worker */
} run_ctx;

static void run_row(void *vctx, int r, int worker) {
    run_ctx *ctx = vctx;
    moelat_lattice *lat = ctx->lat;
    const ml_chunk *c = &lat->chunks[ctx->rows[r].chunk];
    int y = ctx->rows[r].y, z = ctx->rows[r].z;
    ml_percell_ws *w = &lat->ws[worker];
    for (int x = c->origin[0]; x < c->origin[0] + c->extent[0]; x++) {
        size_t i = (size_t)x + (size_t)lat->X * ((size_t)y + (size_t)lat->Y * z);
        cell_failure f;
        if (update_cell(lat, w, x, y, z, ctx->states, ctx->next + i * lat->S, &f)) {
            if (!ctx->failed[worker] || f.cell < ctx->fail[worker].cell)
                ctx->fail[worker] = f;
            ctx->failed[worker] = 1;
            return;
        }
    }
}

moelat_status ml_fail_nonfinite(moelat_lattice *lat, size_t cell, int band) {
    int x = (int)(cell % (size_t)lat->X);
    int y = (int)((cell / (size_t)lat->X) % (size_t)lat->Y);
    int z = (int)(cell / ((size_t)lat->X * lat->Y));
    if (band < 0)
        return ml_fail(lat, MOELAT_ERR_NONFINITE,
                       "first non-finite cell (%d, %d, %d): its new state x + sum_k w_k E_k (the combine)", x, y,
                       z);
    return ml_fail(lat, MOELAT_ERR_NONFINITE, "first non-finite cell (%d, %d, %d): expert '%s' (band %s) output",
                   x, y, z, lat->expert[band].desc->name, moelat_band_name(band));
}

static moelat_status report_failure(moelat_lattice *lat, const cell_failure *f) {
    if (f->band >= 0 && f->status != MOELAT_EXPERT_OK) {
        int x = (int)(f->cell % (size_t)lat->X);
        int y = (int)((f->cell / (size_t)lat->X) % (size_t)lat->Y);
        int z = (int)(f->cell / ((size_t)lat->X * lat->Y));
        return ml_fail(lat, MOELAT_ERR_PLUGIN, "expert '%s' (band %s) failed with status %d at cell (%d, %d, %d)",
                       lat->expert[f->band].desc->name, moelat_band_name(f->band), f->status, x, y, z);
    }
    return ml_fail_nonfinite(lat, f->cell, f->band);
}

moelat_status ml_percell_run(moelat_lattice *lat, const int *chunk_ids, int n, const float *states,
                             float *next) {
    if (ensure_workspaces(lat) != 0)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory for per-cell workspaces");
    size_t n_rows = 0;
    for (int k = 0; k < n; k++)
        n_rows += (size_t)lat->chunks[chunk_ids[k]].extent[1] * lat->chunks[chunk_ids[k]].extent[2];
    row_item *rows = malloc((n_rows ? n_rows : 1) * sizeof *rows);
    int nw = ml_pool_size(lat->pool);
    cell_failure *fail = calloc((size_t)nw, sizeof *fail);
    int *failed = calloc((size_t)nw, sizeof *failed);
    if (!rows || !fail || !failed) {
        free(rows);
        free(fail);
        free(failed);
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory for per-cell rows");
    }
    size_t r = 0;
    for (int k = 0; k < n; k++) {
        const ml_chunk *c = &lat->chunks[chunk_ids[k]];
        for (int z = c->origin[2]; z < c->origin[2] + c->extent[2]; z++)
            for (int y = c->origin[1]; y < c->origin[1] + c->extent[1]; y++)
                rows[r++] = (row_item){chunk_ids[k], y, z};
    }
    run_ctx ctx = {lat, rows, states, next, fail, failed};
    for (int t = 0; t < lat->n_ws; t++) /* routing statistics */
        memset(&lat->ws[t].route, 0, sizeof lat->ws[t].route);
    ml_pool_run(lat->pool, (int)n_rows, run_row, &ctx);

    moelat_status rc = MOELAT_OK;
    const cell_failure *first = NULL;
    for (int t = 0; t < nw; t++)
        if (failed[t] && (!first || fail[t].cell < first->cell))
            first = &fail[t];
    if (first)
        rc = report_failure(lat, first);
    for (int t = 0; t < lat->n_ws && !first; t++) /* routing statistics of a completed run */
        ml_route_merge(&lat->stats.route, &lat->ws[t].route);
    free(rows);
    free(fail);
    free(failed);
    return rc;
}

moelat_status ml_percell_cells(moelat_lattice *lat, const size_t *cells, int n, const float *states,
                              float *out) {
    if (ensure_workspaces(lat) != 0)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory for per-cell workspaces");
    for (int k = 0; k < n; k++) {
        size_t i = cells[k];
        int x = (int)(i % (size_t)lat->X);
        int y = (int)((i / (size_t)lat->X) % (size_t)lat->Y);
        int z = (int)(i / ((size_t)lat->X * lat->Y));
        cell_failure f;
        if (update_cell(lat, &lat->ws[0], x, y, z, states, out + (size_t)k * lat->S, &f))
            return report_failure(lat, &f);
    }
    return MOELAT_OK;
}

typedef struct expert_chunk_ctx {
    moelat_lattice *lat;
    int band;
    const ml_chunk *chunk;
    const float *states;
    float *out;
    cell_failure *fail;
    int *failed;
} expert_chunk_ctx;

/* One row (y, z) of a chunk: band k's expert output for each cell, or zeros
 * where the band is empty. */
static void expert_row(void *vctx, int r, int worker) {
    expert_chunk_ctx *ctx = vctx;
    moelat_lattice *lat = ctx->lat;
    const ml_chunk *c = ctx->chunk;
    const int S = lat->S, k = ctx->band;
    int ly = r % c->extent[1], lz = r / c->extent[1];
    int y = c->origin[1] + ly, z = c->origin[2] + lz;
    ml_percell_ws *w = &lat->ws[worker];
    for (int lx = 0; lx < c->extent[0]; lx++) {
        int x = c->origin[0] + lx;
        size_t ci = (size_t)lx + (size_t)c->extent[0] * ((size_t)ly + (size_t)c->extent[1] * lz);
        float *out = ctx->out + ci * S;
        int cnt = gather_band(lat, w, k, x, y, z, ctx->states);
        if (cnt == 0) {
            memset(out, 0, (size_t)S * sizeof(float));
            continue;
        }
        cell_failure f;
        if (run_expert(lat, w, k, x, y, z, ctx->states, cnt, out, &f)) {
            if (!ctx->failed[worker] || f.cell < ctx->fail[worker].cell)
                ctx->fail[worker] = f;
            ctx->failed[worker] = 1;
            return;
        }
    }
}

moelat_status ml_percell_expert_chunk(moelat_lattice *lat, int band, const ml_chunk *chunk, const float *states,
                                     float *out) {
    if (ensure_workspaces(lat) != 0)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory for per-cell workspaces");
    int nw = ml_pool_size(lat->pool);
    cell_failure *fail = calloc((size_t)nw, sizeof *fail);
    int *failed = calloc((size_t)nw, sizeof *failed);
    if (!fail || !failed) {
        free(fail);
        free(failed);
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
    }
    expert_chunk_ctx ctx = {lat, band, chunk, states, out, fail, failed};
    ml_pool_run(lat->pool, chunk->extent[1] * chunk->extent[2], expert_row, &ctx);
    const cell_failure *first = NULL;
    for (int t = 0; t < nw; t++)
        if (failed[t] && (!first || fail[t].cell < first->cell))
            first = &fail[t];
    moelat_status rc = first ? report_failure(lat, first) : MOELAT_OK;
    free(fail);
    free(failed);
    return rc;
}

double ml_percell_time_sample(moelat_lattice *lat, size_t max_cells, int *sampled) {
    if (ensure_workspaces(lat) != 0)
        return -1;
    size_t total_rows = (size_t)lat->Y * lat->Z;
    size_t want = max_cells / (size_t)lat->X;
    if (want < 1)
        want = 1;
    size_t stride = want >= total_rows ? 1 : total_rows / want;
    size_t n_rows = (total_rows + stride - 1) / stride;
    row_item *rows = malloc(n_rows * sizeof *rows);
    int nw = ml_pool_size(lat->pool);
    cell_failure *fail = calloc((size_t)nw, sizeof *fail);
    int *failed = calloc((size_t)nw, sizeof *failed);
    ml_chunk whole = {{0, 0, 0}, {lat->X, lat->Y, lat->Z}, (int32_t)lat->N};
    ml_chunk *saved = lat->chunks;
    if (!rows || !fail || !failed) {
        free(rows);
        free(fail);
        free(failed);
        return -1;
    }
    /* Rows index one whole-lattice chunk while the sample runs. */
    lat->chunks = &whole;
    size_t k = 0;
    for (size_t r = 0; r < total_rows && k < n_rows; r += stride)
        rows[k++] = (row_item){0, (int)(r % (size_t)lat->Y), (int)(r / (size_t)lat->Y)};
    run_ctx ctx = {lat, rows, lat->states, lat->next, fail, failed};
    double t0 = ml_now_ms();
    ml_pool_run(lat->pool, (int)k, run_row, &ctx);
    double ms = ml_now_ms() - t0;
    lat->chunks = saved;
    free(rows);
    free(fail);
    free(failed);
    *sampled = k < total_rows;
    return ms * (double)total_rows / (double)k;
}
