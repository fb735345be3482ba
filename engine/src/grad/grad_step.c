/* One lattice step of the host path in float64, and its adjoint (grad.h).
 *
 * Forward: for every cell gather each band's neighbours, nu, the gate and
 * each expert's host_cell_f64; x' = x + sum_k w_k E_k (E_k = 0 for an empty
 * band), exactly the per-cell path (percell.c) in double.
 *
 * Backward, for every cell with dL/dx' = g: dE_k = w_k g, dw_k = g . E_k;
 * each expert's backward_cell gives dL/dx, dL/dn_j (scattered to the
 * neighbour cells it was gathered from) and its weights' gradient; the
 * gate's adjoint gives dL/dx and dL/dnu, which reaches every neighbour as
 * dnu / (number of neighbours); and the residual passes g to dL/dx. Cells
 * scatter into their block's own buffers, summed in block order. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/gate.h"
#include "grad/grad.h"

struct ml_grad_ws {
    double *nb[MOELAT_BANDS], *dnb[MOELAT_BANDS]; /* count x S */
    size_t *idx[MOELAT_BANDS];                    /* gathered cells */
    double *escr[MOELAT_BANDS];
    double *eout[MOELAT_BANDS];                   /* S */
    double *dE, *nu, *dnu, *dext_junk;
    double *gate;
};

static void ws_free(ml_grad_ws *w) {
    for (int k = 0; k < MOELAT_BANDS; k++) {
        free(w->nb[k]);
        free(w->dnb[k]);
        free(w->idx[k]);
        free(w->escr[k]);
        free(w->eout[k]);
    }
    free(w->dE);
    free(w->nu);
    free(w->dnu);
    free(w->dext_junk);
    free(w->gate);
}

void ml_grad_ws_free(ml_grad_engine *e) {
    for (int t = 0; t < e->n_ws; t++)
        ws_free(&e->ws[t]);
    free(e->ws);
    e->ws = NULL;
    e->n_ws = 0;
}

int ml_grad_ws_create(ml_grad_engine *e) {
    moelat_lattice *lat = e->lat;
    int n = ml_pool_size(lat->pool), S = lat->S;
    e->ws = calloc((size_t)n, sizeof *e->ws);
    if (!e->ws)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory for gradient workspaces"), -1;
    e->n_ws = n;
    for (int t = 0; t < n; t++) {
        ml_grad_ws *w = &e->ws[t];
        int ok = 1;
        for (int k = 0; k < MOELAT_BANDS; k++) {
            size_t cnt = (size_t)(lat->stencil.count[k] > 0 ? lat->stencil.count[k] : 1);
            size_t sd = e->bwd[k] ? e->bwd[k]->scratch_doubles(&lat->expert[k].dims, (int)cnt) : 1;
            w->nb[k] = malloc(cnt * (size_t)S * sizeof(double));
            w->dnb[k] = malloc(cnt * (size_t)S * sizeof(double));
            w->idx[k] = malloc(cnt * sizeof(size_t));
            w->escr[k] = malloc((sd ? sd : 1) * sizeof(double));
            w->eout[k] = malloc((size_t)S * sizeof(double));
            ok = ok && w->nb[k] && w->dnb[k] && w->idx[k] && w->escr[k] && w->eout[k];
        }
        w->dE = malloc((size_t)S * sizeof(double));
        w->nu = malloc((size_t)S * sizeof(double));
        w->dnu = malloc((size_t)S * sizeof(double));
        w->dext_junk = malloc((size_t)(lat->E > 0 ? lat->E : 1) * sizeof(double));
        w->gate = malloc(ml_gate_f64_doubles(S, lat->gate_hidden) * sizeof(double));
        if (!ok || !w->dE || !w->nu || !w->dnu || !w->dext_junk || !w->gate) {
            ml_grad_ws_free(e);
            return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory for gradient workspaces"), -1;
        }
    }
    return 0;
}

/* Gathers band k's in-lattice neighbours of cell (x, y, z) from st into
 * w->nb[k] and their cell indices into w->idx[k]; returns the count. */
static int gather(const moelat_lattice *lat, ml_grad_ws *w, int k, int x, int y, int z,
                  const double *st) {
    const int S = lat->S;
    int c = ml_stencil_neighbours(&lat->stencil, k, lat->X, lat->Y, lat->Z, x, y, z, w->idx[k]);
    for (int j = 0; j < c; j++)
        memcpy(w->nb[k] + (size_t)j * S, st + w->idx[k][j] * S, (size_t)S * sizeof(double));
    return c;
}

/* Per cell, the part the forward and backward share: neighbours, nu, the
 * gate's weights. Returns the total neighbour count. */
static int cell_prologue(moelat_grad *g, ml_grad_ws *w, int x, int y, int z, const double *st,
                         int count[MOELAT_BANDS], double gw[MOELAT_BANDS]) {
    moelat_lattice *lat = g->lat;
    const int S = lat->S;
    size_t i = (size_t)x + (size_t)lat->X * ((size_t)y + (size_t)lat->Y * z);
    int total = 0;
    memset(w->nu, 0, (size_t)S * sizeof(double));
    for (int k = 0; k < MOELAT_BANDS; k++) {
        count[k] = gather(lat, w, k, x, y, z, st);
        for (int j = 0; j < count[k]; j++)
            for (int s = 0; s < S; s++)
                w->nu[s] += w->nb[k][(size_t)j * S + s];
        total += count[k];
    }
    if (total > 0)
        for (int s = 0; s < S; s++)
            w->nu[s] /= total;
    ml_gate_f64(g->w.tensor[MOELAT_BANDS], S, lat->gate_hidden, st + i * S, w->nu, gw, w->gate);
    return total;
}

static const double *cell_ext(const moelat_grad *g, int x, int y, int z, const double *zeros) {
    if (z != 0)
        return zeros;
    return g->ext + ((size_t)x + (size_t)g->lat->X * y) * g->lat->E;
}

static moelat_grad_cell grad_cell(moelat_grad *g, ml_grad_ws *w, int k, int x, int y, int z,
                                  const double *st, int count, const double *zeros) {
    const moelat_lattice *lat = g->lat;
    size_t i = (size_t)x + (size_t)lat->X * ((size_t)y + (size_t)lat->Y * z);
    return (moelat_grad_cell){
        .struct_size = sizeof(moelat_grad_cell),
        .dims = &lat->expert[k].dims,
        .tensors = g->w.tensor[k],
        .x = st + i * lat->S,
        .neighbours = w->nb[k],
        .count = count,
        .ext = cell_ext(g, x, y, z, zeros),
        .cell = {x, y, z},
        .out = w->eout[k],
        .scratch = w->escr[k],
    };
}

/* ---- forward ---- */

typedef struct fwd_ctx {
    moelat_grad *g;
    const double *cur;
    double *next;
    size_t *fail;   /* per row: the first failing cell, or SIZE_MAX */
    int *fail_band; /* per row: its band, -1 for a non-finite state */
} fwd_ctx;

static void fwd_row(void *vctx, int r, int worker) {
    fwd_ctx *ctx = vctx;
    moelat_grad *g = ctx->g;
    moelat_lattice *lat = g->lat;
    ml_grad_ws *w = &g->eng->ws[worker];
    const int S = lat->S, y = r % lat->Y, z = r / lat->Y;
    double zeros[MOELAT_EXT_SIZE] = {0};
    ctx->fail[r] = SIZE_MAX;
    for (int x = 0; x < lat->X; x++) {
        size_t i = (size_t)x + (size_t)lat->X * ((size_t)y + (size_t)lat->Y * z);
        int count[MOELAT_BANDS];
        double gw[MOELAT_BANDS];
        cell_prologue(g, w, x, y, z, ctx->cur, count, gw);
        double *out = ctx->next + i * S;
        memcpy(out, ctx->cur + i * S, (size_t)S * sizeof(double));
        for (int k = 0; k < MOELAT_BANDS; k++) {
            if (count[k] == 0)
                continue;
            moelat_grad_cell c = grad_cell(g, w, k, x, y, z, ctx->cur, count[k], zeros);
            if (g->eng->bwd[k]->host_cell_f64(&c) != MOELAT_EXPERT_OK) {
                ctx->fail[r] = i;
                ctx->fail_band[r] = k;
                return;
            }
            for (int s = 0; s < S; s++)
                out[s] += gw[k] * w->eout[k][s];
        }
        for (int s = 0; s < S; s++)
            if (!isfinite(out[s])) {
                ctx->fail[r] = i;
                ctx->fail_band[r] = -1;
                return;
            }
    }
}

moelat_status ml_grad_step_f64(moelat_grad *g, const double *cur, double *next, int step) {
    moelat_lattice *lat = g->lat;
    moelat_status wst = ml_grad_host_weights(g);
    if (wst != MOELAT_OK)
        return wst;
    int rows = lat->Y * lat->Z;
    size_t *fail = malloc((size_t)rows * sizeof *fail);
    int *band = calloc((size_t)rows, sizeof *band);
    if (!fail || !band) {
        free(fail);
        free(band);
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
    }
    fwd_ctx ctx = {g, cur, next, fail, band};
    ml_pool_run(lat->pool, rows, fwd_row, &ctx);
    int first = -1;
    for (int r = 0; r < rows; r++)
        if (fail[r] != SIZE_MAX && (first < 0 || fail[r] < fail[first]))
            first = r;
    moelat_status rc = MOELAT_OK;
    if (first >= 0) {
        size_t i = fail[first];
        int x = (int)(i % (size_t)lat->X), y = (int)(i / (size_t)lat->X % (size_t)lat->Y);
        int z = (int)(i / ((size_t)lat->X * lat->Y));
        if (band[first] < 0)
            rc = ml_fail(lat, MOELAT_ERR_NONFINITE,
                    "float64 step %d: non-finite state at cell (%d, %d, %d)", step + 1, x, y, z);
        else
            rc = ml_fail(lat, MOELAT_ERR_PLUGIN, "float64 step %d: expert '%s' (band %s) failed at cell (%d, %d, %d)",
                    step + 1, lat->expert[band[first]].desc->name, moelat_band_name(band[first]), x, y, z);
    }
    free(fail);
    free(band);
    return rc;
}

/* ---- backward ---- */

typedef struct bwd_ctx {
    moelat_grad *g;
    const double *cur, *g_in;
    int row0, rows; /* rows [row0, row0 + rows) */
    int *failed;    /* per block: band + 1 of a failed expert, or 0 */
} bwd_ctx;

static void bwd_block(void *vctx, int b, int worker) {
    bwd_ctx *ctx = vctx;
    moelat_grad *g = ctx->g;
    moelat_lattice *lat = g->lat;
    ml_grad_ws *w = &g->eng->ws[worker];
    ml_grad_acc *acc = &g->eng->acc[b];
    const int S = lat->S, E = lat->E, gh = lat->gate_hidden;
    double zeros[MOELAT_EXT_SIZE] = {0};
    int r0 = ctx->row0 + (int)((int64_t)ctx->rows * b / g->eng->n_blocks);
    int r1 = ctx->row0 + (int)((int64_t)ctx->rows * (b + 1) / g->eng->n_blocks);
    memset(acc->dstate, 0, g->NS * sizeof(double));
    memset(acc->dweights, 0, g->w.count * sizeof(double));
    memset(acc->dext, 0, (size_t)lat->X * lat->Y * E * sizeof(double));
    ctx->failed[b] = 0;
    for (int r = r0; r < r1; r++) {
        int y = r % lat->Y, z = r / lat->Y;
        for (int x = 0; x < lat->X; x++) {
            size_t i = (size_t)x + (size_t)lat->X * ((size_t)y + (size_t)lat->Y * z);
            const double *gi = ctx->g_in + i * S;
            double *dxi = acc->dstate + i * S;
            int count[MOELAT_BANDS];
            double gw[MOELAT_BANDS], dw[MOELAT_BANDS] = {0, 0, 0};
            int total = cell_prologue(g, w, x, y, z, ctx->cur, count, gw);
            for (int k = 0; k < MOELAT_BANDS; k++) {
                if (count[k] == 0)
                    continue;
                for (int s = 0; s < S; s++)
                    w->dE[s] = gw[k] * gi[s];
                memset(w->dnb[k], 0, (size_t)count[k] * S * sizeof(double));
                moelat_grad_cell c = grad_cell(g, w, k, x, y, z, ctx->cur, count[k], zeros);
                c.dout = w->dE;
                c.dx = dxi;
                c.dneighbours = w->dnb[k];
                c.dext = z == 0 ? acc->dext + ((size_t)x + (size_t)lat->X * y) * E : w->dext_junk;
                c.dtensors = acc->dtensor[k];
                if (g->eng->bwd[k]->backward_cell(&c) != MOELAT_EXPERT_OK) {
                    ctx->failed[b] = k + 1;
                    return;
                }
                double d = 0.0;
                for (int s = 0; s < S; s++)
                    d += gi[s] * w->eout[k][s];
                dw[k] = d;
            }
            memset(w->dnu, 0, (size_t)S * sizeof(double));
            ml_gate_f64_bwd(g->w.tensor[MOELAT_BANDS], acc->dtensor[MOELAT_BANDS], S, gh, gw, dw, dxi,
                            w->dnu, w->gate);
            for (int k = 0; k < MOELAT_BANDS; k++)
                for (int j = 0; j < count[k]; j++) {
                    double *dn = acc->dstate + w->idx[k][j] * S;
                    const double *de = w->dnb[k] + (size_t)j * S;
                    for (int s = 0; s < S; s++)
                        dn[s] += de[s] + w->dnu[s] / total;
                }
        }
    }
}

moelat_status ml_grad_step_bwd_rows(moelat_grad *g, const double *cur, const double *g_in, int row0, int row1,
                                    double *dstate) {
    moelat_lattice *lat = g->lat;
    moelat_status wst = ml_grad_host_weights(g); /* a host chunk of a device sweep, or a host sweep */
    if (wst != MOELAT_OK)
        return wst;
    int *failed = calloc((size_t)g->eng->n_blocks, sizeof *failed);
    if (!failed)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
    bwd_ctx ctx = {g, cur, g_in, row0, row1 - row0, failed};
    ml_pool_run(lat->pool, g->eng->n_blocks, bwd_block, &ctx);
    for (int b = 0; b < g->eng->n_blocks; b++)
        if (failed[b]) {
            int k = failed[b] - 1;
            free(failed);
            return ml_fail(lat, MOELAT_ERR_PLUGIN, "backward of expert '%s' (band %s) failed",
                           lat->expert[k].desc->name, moelat_band_name(k));
        }
    free(failed);
    /* Fixed-order reduction: block 0, 1, ... added to what dstate holds. */
    for (size_t v = 0; v < g->NS; v++) {
        double s = dstate[v];
        for (int b = 0; b < g->eng->n_blocks; b++)
            s += g->eng->acc[b].dstate[v];
        dstate[v] = s;
    }
    for (size_t v = 0; v < g->w.count; v++) {
        double s = 0.0;
        for (int b = 0; b < g->eng->n_blocks; b++)
            s += g->eng->acc[b].dweights[v];
        g->dweights[v] += s;
    }
    size_t ne = (size_t)lat->X * lat->Y * lat->E;
    for (size_t v = 0; v < ne; v++) {
        double s = 0.0;
        for (int b = 0; b < g->eng->n_blocks; b++)
            s += g->eng->acc[b].dext[v];
        g->dext[v] += s;
    }
    return MOELAT_OK;
}

/* The residual's g first, then block 0, 1, ... */
moelat_status ml_grad_step_bwd(moelat_grad *g, const double *cur, const double *g_in, double *g_out) {
    memcpy(g_out, g_in, g->NS * sizeof *g_out);
    return ml_grad_step_bwd_rows(g, cur, g_in, 0, g->lat->Y * g->lat->Z, g_out);
}
