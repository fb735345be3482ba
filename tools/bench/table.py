#!/usr/bin/python3
"""Prints `moelat-engine bench --csv` files as the Markdown table of
tools/bench/RESULTS.md (one row per case, the files in the order given).

usage: tools/bench/table.py BENCH.csv [MORE.csv ...]
"""
import csv
import sys

COLS = "| preset | dims | per-cell ms | batch ms | speedup | MCUPS | GFLOP/s | peak | aggr | pre | local | func | dist | gate | func peak |"
KERNELS = ["aggregate_ms", "precompute_ms", "local_ms", "functional_ms", "distant_ms", "gate_ms"]


def ms(v):
    """Three significant figures, no exponent."""
    v = float(v)
    return f"{v:.3f}" if v < 10 else f"{v:.4g}" if v < 1e4 else f"{v:.0f}"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(COLS)
    print("|" + "---|" * (COLS.count("|") - 1))
    for path in sys.argv[1:]:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                # A per-cell time of 0 means not timed (--percell-cells 0).
                timed = float(r["percell_ms"]) > 0
                pc = ("~" if r["percell_estimated"] == "1" else "") + ms(r["percell_ms"]) if timed else ""
                speedup = f'{float(r["speedup"]):.1f}x' if timed else ""
                # The engine's default is two queues; name any other count
                # (CSV files before the column have none).
                q = int(r.get("queues") or 2)
                preset = r["preset"] + (f", {q} queue{'s' if q > 1 else ''}" if q != 2 else "")
                cells = [preset, r["dims"], pc, ms(r["batch_ms"]), speedup,
                         f'{float(r["mcups"]):.2f}', ms(r["gflops"]),
                         f'{100 * float(r["peak_fraction"]):.2f}%']
                cells += [ms(r[k]) for k in KERNELS]
                cells.append(f'{100 * float(r.get("functional_peak_fraction") or 0):.2f}%')
                print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
