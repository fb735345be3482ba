#!/usr/bin/env python3
"""A model of one optimized-preset step (S = 128, r = 20) on a 1000^3
lattice split over G GPUs, from measured one-GPU figures (RESULTS.md).

    tools/bench/scaling_model.py [--step-ms 2783] [--agg-ms 441] [--link-gbs 6]
                                 [--net-gbs 50] [--mem-gib 80] [--gpus 8,64,512]

Work is counted, not guessed: the expert part of a step is proportional
to the number of (cell, in-lattice neighbour) pairs, which the model
counts exactly from the radius-20 stencil for the 100^3 lattice the time
was measured on and for each GPU's part of the 1000^3 lattice; the
aggregation (prefix sums, the same per cell whatever the lattice) is
proportional to the cells a GPU sums over, its halo planes included.
The exchange moves each GPU's halo (states of the cells within r of its
part) once per step at the given bandwidth: --link-gbs for GPUs of one
host (the engine stages planes through the host; 6 GB/s is what the
2-GPU H200 runs moved before the exchange overlapped the step), --net-gbs
between hosts (one 400 Gb/s NIC per GPU). Memory: the two state buffers
of the part and its halo (chunk buffers are bounded separately).

Two decompositions: z-slabs (what `run --devices` and MPI ranks do now)
and cubic blocks (not built): slabs thinner than the halo (G > 1000 /
(2 r)) redo the halo's prefix sums and move two halo slabs per step
whatever G is; blocks keep the halo a thin shell."""
import argparse
import math


def stencil(r):
    """|dx|, |dy|, |dz| of each offset with 0 < |d| <= 0.99 r (every band
    of docs/MODEL.md), one entry per signed offset."""
    R = int(math.floor(0.99 * r))
    out = []
    for dz in range(-R, R + 1):
        for dy in range(-R, R + 1):
            for dx in range(-R, R + 1):
                d2 = dx * dx + dy * dy + dz * dz
                if 0 < d2 <= (0.99 * r) ** 2:
                    out.append((abs(dx), abs(dy), abs(dz)))
    return out


def pairs_box(offs, nx, ny, nz, lx, ly, lz, x0=0, y0=0, z0=0):
    """(cell, neighbour) pairs with the cell in the box [x0, x0+nx) x ...
    of an lx x ly x lz lattice and the neighbour anywhere in the lattice."""
    def count_1d(n, L, a, d):
        """Cells c in [a, a + n) with c + d in [0, L), plus those with c - d."""
        plus = max(0, min(a + n, L - d) - max(a, 0))
        minus = max(0, min(a + n, L) - max(a, d))
        return plus + minus
    # Each signed offset appears once among the entries of its |d|: the
    # mean over the two directions of each axis, summed over the entries,
    # is the exact count over the signed offsets.
    total = 0
    for dx, dy, dz in offs:
        total += count_1d(nx, lx, x0, dx) / 2 * count_1d(ny, ly, y0, dy) / 2 * count_1d(nz, lz, z0, dz) / 2
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--step-ms", type=float, default=2783.0, help="one-GPU 100^3 step, ms")
    ap.add_argument("--agg-ms", type=float, default=441.0, help="its aggregation, ms")
    ap.add_argument("--link-gbs", type=float, default=6.0)
    ap.add_argument("--net-gbs", type=float, default=50.0)
    ap.add_argument("--gpus-per-host", type=int, default=8)
    ap.add_argument("--mem-gib", type=float, default=80.0)
    ap.add_argument("--gpus", default="8,64,512")
    ap.add_argument("--n", type=int, default=1000)
    a = ap.parse_args()
    r, S, n = 20, 128, a.n
    offs = stencil(r)
    h = int(math.floor(0.99 * r))
    per_cell_bytes = S * 4
    p100 = pairs_box(offs, 100, 100, 100, 100, 100, 100)
    t_pair = (a.step_ms - a.agg_ms) / p100           # ms per (cell, neighbour) pair
    t_agg = a.agg_ms / 100 ** 3                       # ms per cell summed
    print(f"stencil: {len(offs)} offsets (r = {r}, halo {h} planes); 100^3: {p100 / 1e6:.0f} M pairs, "
          f"{p100 / 1e6:.1f} per cell on average against {len(offs)} inside")
    print(f"from the measured step: {t_pair * 1e9:.1f} ps per pair, {t_agg * 1e6:.0f} ns per cell summed\n")
    print("| GPUs | split | part (cells) | compute ms | halo GB/step | exchange ms | step ms | "
          "memory GiB/GPU | fits | efficiency |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    one = pairs_box(offs, n, n, n, n, n, n) * t_pair + n ** 3 * t_agg  # one (imaginary) GPU
    for G in [int(g) for g in a.gpus.split(",")]:
        bw = a.link_gbs if G <= a.gpus_per_host else a.net_gbs
        # z-slabs: the middle slab (full neighbourhoods) sets the pace
        t = n / G
        z0 = int(n / 2 - t / 2)
        pairs = pairs_box(offs, n, n, max(1, round(t)), n, n, n, 0, 0, z0) * (t / max(1, round(t)))
        halo_cells = 2 * min(h, n) * n * n
        comp = pairs * t_pair + (t * n * n + halo_cells) * t_agg
        gb = halo_cells * per_cell_bytes / 1e9
        ex = gb / bw * 1e3
        mem = (t * n * n + halo_cells) * per_cell_bytes * 2 / 2 ** 30
        step = comp + ex
        print(f"| {G} | z-slabs of {t:.1f} planes | {t * n * n / 1e6:.1f} M | {comp:.0f} | {gb:.1f} | {ex:.0f} | "
              f"{step:.0f} | {mem:.0f} | {'yes' if mem <= a.mem_gib else 'no'} | {one / G / step * 100:.0f}% |")
        # cubic blocks of b^3 (G a cube)
        k = round(G ** (1 / 3))
        if k ** 3 == G:
            b = n / k
            c0 = int(n / 2 - b / 2)
            bi = max(1, round(b))
            pairs = pairs_box(offs, bi, bi, bi, n, n, n, c0, c0, c0) * (b / bi) ** 3
            halo_cells = (b + 2 * h) ** 3 - b ** 3
            comp = pairs * t_pair + (b + 2 * h) ** 3 * t_agg
            gb = halo_cells * per_cell_bytes / 1e9
            ex = gb / bw * 1e3
            mem = (b + 2 * h) ** 3 * per_cell_bytes * 2 / 2 ** 30
            step = comp + ex
            print(f"| {G} | blocks of {b:.0f}^3 (not built) | {b ** 3 / 1e6:.1f} M | {comp:.0f} | {gb:.1f} | "
                  f"{ex:.0f} | {step:.0f} | {mem:.0f} | {'yes' if mem <= a.mem_gib else 'no'} | "
                  f"{one / G / step * 100:.0f}% |")
    print(f"\n(one GPU's worth of the whole 1000^3 step, for the efficiency column: {one / 1e3:.0f} s)")


if __name__ == "__main__":
    main()
