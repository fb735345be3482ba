#!/usr/bin/env python3
"""Plots `moelat-engine bench --csv` output.

usage: tools/bench/plot.py BENCH.csv [OUTDIR]

Writes OUTDIR/speedup.png (batch over per-cell speedup against lattice
size) and OUTDIR/kernels.png (device ms per step per kernel, stacked, per
case). Needs Debian's python3-matplotlib.
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KERNELS = ["aggregate_ms", "precompute_ms", "local_ms", "functional_ms", "distant_ms", "gate_ms"]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[2] if len(sys.argv) > 2 else "."
    os.makedirs(out, exist_ok=True)
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{sys.argv[1]}: no rows")
    device = rows[0]["device"]
    labels = [f'{r["preset"]}\n{r["dims"]}' for r in rows]

    fig, ax = plt.subplots(figsize=(6, 4))
    cells = [int(r["cells"]) for r in rows]
    ax.loglog(cells, [float(r["speedup"]) for r in rows], "o-")
    for c, r in zip(cells, rows):
        ax.annotate(f'{r["preset"]} {r["dims"]}', (c, float(r["speedup"])), fontsize=7)
    ax.set_xlabel("cells")
    ax.set_ylabel("speedup, batch over per-cell")
    ax.set_title(device)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "speedup.png"), dpi=120)

    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = [0.0] * len(rows)
    for k in KERNELS:
        vals = [float(r[k]) for r in rows]
        ax.bar(labels, vals, bottom=bottom, label=k.replace("_ms", ""))
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("device ms per step")
    ax.set_yscale("log")
    ax.set_title(device)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "kernels.png"), dpi=120)


if __name__ == "__main__":
    main()
