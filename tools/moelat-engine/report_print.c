#include "report_print.h"

static json_t *path_json(const moelat_path_stats *p) {
    return json_pack("{s:I, s:f, s:f, s:f, s:I, s:f}", "chunks", (json_int_t)p->chunks, "avg_time_ms",
                     p->avg_time_ms, "avg_cells", p->avg_cells, "avg_cells_per_ms", p->avg_cells_per_ms,
                     "total_cells", (json_int_t)p->total_cells, "total_time_ms", p->total_time_ms);
}

json_t *report_to_json(const moelat_report *r) {
    json_t *experts = json_array();
    for (int k = 0; k < MOELAT_BANDS; k++)
        json_array_append_new(experts, json_pack("{s:s, s:s, s:I, s:f}", "band", moelat_band_name(k),
                                                 "name", r->expert_name[k], "calls",
                                                 (json_int_t)r->expert_calls[k], "device_ms",
                                                 r->expert_device_ms[k]));
    json_t *reasons = json_array();
    for (int i = 0; i < r->n_fallback_reasons; i++)
        json_array_append_new(reasons, json_pack("{s:s, s:I}", "reason", r->fallback_reason[i], "count",
                                                 (json_int_t)r->fallback_count[i]));
    double experts_ms = 0;
    for (int k = 0; k < MOELAT_BANDS; k++)
        experts_ms += r->expert_device_ms[k];
    json_t *routing = json_array();
    for (int k = 0; k < MOELAT_BANDS; k++)
        json_array_append_new(routing, json_pack("{s:s, s:s, s:f, s:f}", "band", moelat_band_name(k), "name",
                                                 r->expert_name[k], "mean_gate_weight", r->gate_weight_mean[k],
                                                 "top_share", r->gate_top_share[k]));
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:o, s:f, s:o, s:b, s:{s:f, s:f, s:f, s:f}, s:I, s:o}",
                     "path", r->path, "path_reason", r->path_reason, "steps", (json_int_t)r->steps,
                     "total_chunks_processed",
                     (json_int_t)r->total_chunks_processed, "batch_chunks", (json_int_t)r->batch_chunks,
                     "percell_chunks", (json_int_t)r->percell_chunks, "batch_stats",
                     path_json(&r->batch_stats), "percell_stats", path_json(&r->percell_stats), "speedup",
                     r->speedup, "experts", experts, "profiled", r->profiled, "device_split_ms", "aggregate",
                     r->aggregate_device_ms, "precompute", r->precompute_device_ms, "experts", experts_ms,
                     "gate", r->gate_device_ms, "fallbacks", (json_int_t)r->fallbacks,
                     "fallback_reasons", reasons);
    json_object_set_new(o, "routed_cells", json_integer((json_int_t)r->routed_cells));
    json_object_set_new(o, "routing", routing);
    json_object_set_new(o, "grad_builds", json_integer((json_int_t)r->grad_builds));
    json_object_set_new(o, "grad_recording_allocs", json_integer((json_int_t)r->grad_recording_allocs));
    return o;
}

void report_print_table(FILE *out, const moelat_report *r) {
    fprintf(out, "performance report (%llu steps)\n", (unsigned long long)r->steps);
    fprintf(out, "  path: %s (%s)\n", r->path, r->path_reason);
    fprintf(out, "  %-8s %8s %12s %12s %14s %14s\n", "path", "chunks", "cells", "total ms", "avg cells/ms",
            "avg ms/chunk");
    const moelat_path_stats *p[2] = {&r->batch_stats, &r->percell_stats};
    const char *name[2] = {"batch", "percell"};
    for (int i = 0; i < 2; i++)
        fprintf(out, "  %-8s %8llu %12llu %12.3f %14.1f %14.4f\n", name[i], (unsigned long long)p[i]->chunks,
                (unsigned long long)p[i]->total_cells, p[i]->total_time_ms, p[i]->avg_cells_per_ms,
                p[i]->avg_time_ms);
    if (r->speedup > 0)
        fprintf(out, "  speedup (batch over per-cell, cells/ms): %.1fx\n", r->speedup);
    if (r->batch_chunks && !r->profiled) {
        fprintf(out, "  device time per kernel: not measured (--profile measures it)\n");
    } else if (r->batch_chunks) {
        fprintf(out, "  device time: aggregation %.3f ms, precompute %.3f ms, gate %.3f ms\n",
                r->aggregate_device_ms, r->precompute_device_ms, r->gate_device_ms);
        for (int k = 0; k < MOELAT_BANDS; k++)
            fprintf(out, "  expert %-12s (%s): %llu calls, %.3f ms device\n", r->expert_name[k],
                    moelat_band_name(k), (unsigned long long)r->expert_calls[k], r->expert_device_ms[k]);
    }
    if (r->routed_cells) {
        fprintf(out, "  routing over %llu cell updates: band, mean gate weight, share where largest\n",
                (unsigned long long)r->routed_cells);
        for (int k = 0; k < MOELAT_BANDS; k++)
            fprintf(out, "    %-10s %-12s %8.4f %8.4f\n", moelat_band_name(k), r->expert_name[k],
                    r->gate_weight_mean[k], r->gate_top_share[k]);
    }
    if (r->fallbacks) {
        fprintf(out, "  fallbacks to the host: %llu\n", (unsigned long long)r->fallbacks);
        for (int i = 0; i < r->n_fallback_reasons; i++)
            fprintf(out, "    %llu x %s\n", (unsigned long long)r->fallback_count[i], r->fallback_reason[i]);
    }
}
