#!/bin/sh
# Strong and weak scaling of `moelat-engine run --devices` on one host:
#   tools/bench/scaling.sh ENGINE NDEVICES [PRESET] [XxYxZ] [STEPS]
# Strong: the same lattice (default optimized 100x100x100) on 1, 2, 4, ...
# up to NDEVICES devices. Weak: Z grows with the device count (100^3 per
# device) and the radius ratio shrinks with it, so that the radius (ratio x
# largest side) and the work per cell stay those of one device. Each row is the median ms/step of STEPS timed steps (default 4;
# the first step's throughput re-sizes the slabs, the median skips it) and
# the slowest slab's halo exchange ms/step. Prints a Markdown table.
set -eu
engine=$1
ndev=$2
preset=${3:-optimized}
dims=${4:-100x100x100}
steps=${5:-4}
x=${dims%%x*}
rest=${dims#*x}
y=${rest%%x*}
z=${rest#*x}

# Timing runs: the batch path's sample check against the host (seconds per
# cell at radius 20, minutes per run) is skipped; `gpu_run.sh check` and
# the equality tests cover correctness.
export MOELAT_NO_UPGRADE_CHECK=1

# Top-level ms_per_step and the largest halo_ms_per_step of --json.
field() { sed -n "s/^  \"ms_per_step\": \([0-9.e+-]*\).*/\1/p" "$1" | head -1 | awk '{printf "%.1f", $1}'; }
halo() { sed -n 's/.*"halo_ms_per_step": \([0-9.e+-]*\).*/\1/p' "$1" | sort -g | tail -1 | awk '{printf "%.2f", $1}'; }
devname() { sed -n 's/^ *"device": "\(.*\)",$/\1/p' "$1" | head -1; }

# The preset's radius ratio (engine/src/core/config.c).
case "$preset" in debug) ratio=0.3 ;; *) ratio=0.2 ;; esac

run() { # devices dims [extra run options] -> json file
    list=0
    i=1
    while [ "$i" -lt "$1" ]; do list="$list,$i"; i=$((i + 1)); done
    out=$(mktemp)
    n_run=$1
    d_run=$2
    shift 2
    "$engine" run --preset "$preset" --dims "$d_run" --mode batch --devices "$list" \
        --steps "$steps" --json --quiet "$@" >"$out" || { echo "scaling: run on $n_run device(s), $d_run failed" >&2; exit 1; }
    echo "$out"
}

base=""
n=1
while [ "$n" -le "$ndev" ]; do
    f=$(run "$n" "$dims")
    ms=$(field "$f")
    if [ -z "$base" ]; then
        base=$ms
        echo "device 0: $(devname "$f"); $preset preset, $steps steps per run"
        echo
        echo "| scaling | devices | dims | ms/step | speedup / efficiency | max halo ms/step |"
        echo "|---|---|---|---|---|---|"
    fi
    echo "| strong | $n | $dims | $ms | $(awk -v a="$base" -v b="$ms" 'BEGIN{printf "%.2fx", a / b}') | $(halo "$f") |"
    rm -f "$f"
    n=$((n * 2))
done
wbase=""
n=1
while [ "$n" -le "$ndev" ]; do
    d="${x}x${y}x$((z * n))"
    if [ "$n" -eq 1 ]; then # the same run as strong scaling's first row
        wbase=$base
        echo "| weak | 1 | $d | $base | 100% | 0.00 |"
        n=2
        continue
    fi
    f=$(run "$n" "$d" --radius-ratio "$(awk -v r="$ratio" -v x="$x" -v y="$y" -v z="$z" -v n="$n" \
        'function mx(a, b) { return a > b ? a : b } BEGIN { printf "%.9g", r * mx(mx(x, y), z) / mx(mx(x, y), z * n) }')")
    ms=$(field "$f")
    [ -n "$wbase" ] || wbase=$ms
    echo "| weak | $n | $d | $ms | $(awk -v a="$wbase" -v b="$ms" 'BEGIN{printf "%.0f%%", 100 * a / b}') | $(halo "$f") |"
    rm -f "$f"
    n=$((n * 2))
done
