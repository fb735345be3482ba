"""get_batch_performance() has run --json's report keys, routing included."""
import json
import subprocess

import pytest

import moelat
from moelat import bench


def shape(v):
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return type(v).__name__ if not isinstance(v, (int, float)) or isinstance(v, bool) else "number"


def test_report_keys_match_run_json(make_lattice):
    lat = make_lattice(mode="batch")
    lat.forward(steps=1)
    mine = lat.get_batch_performance()
    engine = bench.find_engine()
    proc = subprocess.run([engine, "run", "--dims", "9x8x7", "--steps", "1", "--mode", "batch", "--threads", "2",
                           "--json", "--quiet"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout)["report"]
    mine["fallback_reasons"] = theirs["fallback_reasons"] = []
    assert shape(mine) == shape(theirs)
    assert len(mine["routing"]) == 3 and mine["routed_cells"] == theirs["routed_cells"] == lat.num_cells


def test_bench_table_format():
    fake = {"device": "dev", "rows": [
        {"dims": "8x8x8", "percell_ms": 10.0, "batch_ms": 2.0, "speedup": 5.0, "percell_estimated": False},
        {"dims": "30x30x30", "percell_ms": 900.0, "batch_ms": 30.0, "speedup": 30.0, "percell_estimated": True}]}
    text = bench.format_table(fake)
    assert "8x8x8" in text and "5.0x" in text and "~" in text.splitlines()[3]


def test_bench_runs_the_c_benchmark():
    result = bench.run_bench(["--steps", "1", "--percell-cells", "64", "--threads", "2"], cases="debug:8x8x8")
    assert [r["dims"] for r in result["rows"]] == ["8x8x8"]
    assert result["rows"][0]["batch_ms"] > 0 and result["rows"][0]["percell_ms"] > 0
    assert moelat.LIBRARY_PATH
