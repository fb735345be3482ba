#!/usr/bin/env python3
"""Plots `moelat-engine bench --csv` output.

usage: tools/bench/plot.py BENCH.csv [OUTDIR]

Writes OUTDIR/speedup.png (batch over per-cell speedup against lattice
size, for the rows that timed the per-cell path) and OUTDIR/kernels.png
(each case's device kernel time split by kernel, in percent, with its
ms per step above the bar and its queue count under it: one linear
scale for cases 10^4 apart). With two queues kernels overlap and a
kernel's span includes waiting behind the other queue's, so the split
of a one-queue run (`bench --queues 1`) is the one to read. Needs Debian's python3-matplotlib.
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
    labels = []
    for r in rows:
        label = f'{r["preset"]}\n{r["dims"]}'
        if r.get("queues"):  # CSV files before the column have none
            label += f'\n{r["queues"]} q'
        while label in labels:  # the same case again
            label += "'"
        labels.append(label)

    fig, ax = plt.subplots(figsize=(6, 4))
    timed = [r for r in rows if float(r["speedup"]) > 0]
    cells = [int(r["cells"]) for r in timed]
    ax.loglog(cells, [float(r["speedup"]) for r in timed], "o-")
    for c, r in zip(cells, timed):
        ax.annotate(f'{r["preset"]} {r["dims"]}', (c, float(r["speedup"])), fontsize=7)
    ax.set_xlabel("cells")
    ax.set_ylabel("speedup, batch over per-cell")
    ax.set_title(device)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "speedup.png"), dpi=120)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    totals = [sum(float(r[k]) for k in KERNELS) or 1.0 for r in rows]
    bottom = [0.0] * len(rows)
    for k in KERNELS:
        vals = [100.0 * float(r[k]) / t for r, t in zip(rows, totals)]
        ax.bar(labels, vals, bottom=bottom, label=k.replace("_ms", ""))
        bottom = [b + v for b, v in zip(bottom, vals)]
    for i, r in enumerate(rows):
        ax.annotate(f'{float(r["batch_ms"]):.4g} ms', (i, 101), ha="center", fontsize=7)
    ax.set_ylim(0, 110)
    ax.set_ylabel("share of device kernel time, %")
    ax.set_title(f"{device}: kernels per step (ms per step above)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(os.path.join(out, "kernels.png"), dpi=120)


if __name__ == "__main__":
    main()
