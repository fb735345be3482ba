/* Performance report: turns the counters of both paths into moelat_report. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/abi.h"
#include"core/lattice_internal.h"
#include "base/log.h"

double ml_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

void ml_stats_fallback(moelat_lattice *lat, const char *reason) {
    ml_stats *s = &lat->stats;
    s->fallbacks++;
    for (int i = 0; i < s->n_reasons; i++)
        if (strcmp(s->reason[i], reason) == 0) {
            s->reason_count[i]++;
            return;
        }
    /* A reason is logged the first time it is seen, then only counted. */
    ML_WARN("batch", "falling back to the host: %s", reason);
    int i = s->n_reasons < MOELAT_MAX_FALLBACK_REASONS ? s->n_reasons++ : MOELAT_MAX_FALLBACK_REASONS - 1;
    snprintf(s->reason[i], sizeof s->reason[i], "%s", reason);
    s->reason_count[i] = 1;
}

void ml_route_add(ml_route_acc *a, const float *w, size_t n) {
    for (size_t i = 0; i < n; i++, w += MOELAT_BANDS) {
        int top = 0;
        for (int k = 0; k < MOELAT_BANDS; k++) {
            a->weight_sum[k] += (double)w[k];
            if (w[k] > w[top])
                top = k;
        }
        a->top_count[top]++;
    }
    a->cells += n;
}

void ml_route_merge(ml_route_acc *dst, const ml_route_acc *src) {
    dst->cells += src->cells;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        dst->weight_sum[k] += src->weight_sum[k];
        dst->top_count[k] += src->top_count[k];
    }
}

void ml_route_add_chunks(moelat_lattice *lat, const float *w, const int *chunk_ids, int n) {
    for (int c = 0; c < n; c++) {
        const ml_chunk *ch = &lat->chunks[chunk_ids[c]];
        /* Rows of a chunk are contiguous in x. */
        for (int z = ch->origin[2]; z < ch->origin[2] + ch->extent[2]; z++)
            for (int y = ch->origin[1]; y < ch->origin[1] + ch->extent[1]; y++) {
                size_t i = (size_t)ch->origin[0] + (size_t)lat->X * ((size_t)y + (size_t)lat->Y * z);
                ml_route_add(&lat->stats.route, w + i * MOELAT_BANDS, (size_t)ch->extent[0]);
            }
    }
}

static void path_stats(moelat_path_stats *p, uint64_t chunks, uint64_t cells, double ms) {
    p->chunks = chunks;
    p->total_cells = cells;
    p->total_time_ms = ms;
    p->avg_time_ms = chunks ? ms / (double)chunks : 0.0;
    p->avg_cells = chunks ? (double)cells / (double)chunks : 0.0;
    p->avg_cells_per_ms = ms > 0 ? (double)cells / ms : 0.0;
}

moelat_status moelat_get_report(const moelat_lattice *lat, moelat_report *user) {
    if (!user)
        return ml_fail((moelat_lattice *)lat, MOELAT_ERR_INVALID, "moelat_get_report: no report");
    char why[256];
    size_t n = ml_abi_size(ML_ABI_REPORT, user->struct_size, why, sizeof why);
    if (!n)
        return ml_fail((moelat_lattice *)lat, MOELAT_ERR_INVALID, "%s", why);
    /* Filled in the library's layout, then copied within the caller's. */
    moelat_report full, *r = &full;
    const ml_stats *s = &lat->stats;
    memset(r, 0, sizeof *r);
    r->steps = s->steps;
    r->batch_chunks = s->batch_chunks;
    r->percell_chunks = s->percell_chunks;
    r->total_chunks_processed = s->batch_chunks + s->percell_chunks;
    path_stats(&r->batch_stats, s->batch_chunks, s->batch_cells, s->batch_ms);
    path_stats(&r->percell_stats, s->percell_chunks, s->percell_cells, s->percell_ms);
    if (r->batch_stats.avg_cells_per_ms > 0 && r->percell_stats.avg_cells_per_ms > 0)
        r->speedup = r->batch_stats.avg_cells_per_ms / r->percell_stats.avg_cells_per_ms;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        snprintf(r->expert_name[k], sizeof r->expert_name[k], "%s",
                 lat->expert[k].desc ? lat->expert[k].desc->name : "");
        r->expert_calls[k] = s->expert_calls[k];
        r->expert_device_ms[k] = s->expert_device_ms[k];
    }
    r->aggregate_device_ms = s->aggregate_device_ms;
    r->gate_device_ms = s->gate_device_ms;
    r->precompute_device_ms = s->precompute_device_ms;
    r->profiled = lat->cfg.profile ? 1 : 0;
    r->fallbacks = s->fallbacks;
    r->n_fallback_reasons = s->n_reasons;
    for (int i = 0; i < s->n_reasons; i++) {
        snprintf(r->fallback_reason[i], sizeof r->fallback_reason[i], "%s", s->reason[i]);
        r->fallback_count[i] = s->reason_count[i];
    }
    r->routed_cells = s->route.cells;
    for (int k = 0; k < MOELAT_BANDS && s->route.cells; k++) {
        r->gate_weight_mean[k] = s->route.weight_sum[k] / (double)s->route.cells;
        r->gate_top_share[k] = (double)s->route.top_count[k] / (double)s->route.cells;
    }
    snprintf(r->path, sizeof r->path, "%s",
             s->batch_chunks && s->percell_chunks ? "mixed"
             : s->batch_chunks                    ? "batch"
             : s->percell_chunks                  ? "percell"
                                                  : "none");
    snprintf(r->path_reason, sizeof r->path_reason, "%s", lat->path_why);
    r->grad_builds = lat->grad_counts.builds;
    r->grad_recording_allocs = lat->grad_counts.recording_allocs;
    ml_abi_export(user, r, n);
    return MOELAT_OK;
}

void moelat_reset_report(moelat_lattice *lat) {
    /* Keeps the step count and the fallback reasons; clears the timings
     * and the routing statistics. */
    ml_stats *s = &lat->stats;
    uint64_t steps = s->steps;
    ml_stats keep = *s;
    memset(s, 0, sizeof *s);
    s->steps = steps;
    s->fallbacks = keep.fallbacks;
    s->n_reasons = keep.n_reasons;
    memcpy(s->reason, keep.reason, sizeof s->reason);
    memcpy(s->reason_count, keep.reason_count, sizeof s->reason_count);
}
