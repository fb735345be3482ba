"""The performance report as `moelat-engine run --json`'s "report" dict
(tools/moelat-engine/report_print.c writes the same keys)."""
from . import _lib


def _path(p):
    return {
        "chunks": int(p.chunks),
        "avg_time_ms": p.avg_time_ms,
        "avg_cells": p.avg_cells,
        "avg_cells_per_ms": p.avg_cells_per_ms,
        "total_cells": int(p.total_cells),
        "total_time_ms": p.total_time_ms,
    }


def report_dict(r):
    bands = [_lib.band_name(k).decode() for k in range(_lib.BANDS)]
    names = [r.expert_name[k].value.decode() for k in range(_lib.BANDS)]
    return {
        "path": r.path.decode("utf-8", "replace"),
        "path_reason": r.path_reason.decode("utf-8", "replace"),
        "steps": int(r.steps),
        "grad_builds": int(r.grad_builds),
        "grad_recording_allocs": int(r.grad_recording_allocs),
        "total_chunks_processed": int(r.total_chunks_processed),
        "batch_chunks": int(r.batch_chunks),
        "percell_chunks": int(r.percell_chunks),
        "batch_stats": _path(r.batch_stats),
        "percell_stats": _path(r.percell_stats),
        "speedup": r.speedup,
        "experts": [
            {"band": bands[k], "name": names[k], "calls": int(r.expert_calls[k]), "device_ms": r.expert_device_ms[k]}
            for k in range(_lib.BANDS)
        ],
        "profiled": bool(r.profiled),
        "device_split_ms": {
            "aggregate": r.aggregate_device_ms,
            "precompute": r.precompute_device_ms,
            "experts": sum(r.expert_device_ms[k] for k in range(_lib.BANDS)),
            "gate": r.gate_device_ms,
        },
        "fallbacks": int(r.fallbacks),
        "fallback_reasons": [
            {"reason": r.fallback_reason[i].value.decode("utf-8", "replace"), "count": int(r.fallback_count[i])}
            for i in range(r.n_fallback_reasons)
        ],
        "routed_cells": int(r.routed_cells),
        "routing": [
            {
                "band": bands[k],
                "name": names[k],
                "mean_gate_weight": r.gate_weight_mean[k],
                "top_share": r.gate_top_share[k],
            }
            for k in range(_lib.BANDS)
        ],
    }
