#!/bin/sh
# CPU cycles per step of each PoCL kernel, from perf samples of the user
# cycles of the engine's process (its own threads and PoCL's): a figure
# that other processes on a shared machine disturb far less than wall
# time, which on a loaded 2-core machine varies several-fold.
# usage: pocl_cycles.sh <moelat-engine> STEPS [run options...]
# e.g.   pocl_cycles.sh build/tools/moelat-engine 20 --dims 15x15x15 --queues 1
# Prints "kernel  Mcycles/step  ms/step at the nominal clock" per kernel
# (PoCL names a kernel's library <kernel>.so) and the process total.
set -eu
engine=$1
steps=$2
shift 2
data=$(mktemp /tmp/moelat-cycles-XXXXXX.data)
trap 'rm -f "$data"' EXIT
period=1000000
perf record -q -e cycles:u -c $period -o "$data" "$engine" run --mode batch --steps "$steps" "$@" >/dev/null
mhz=$(awk -F: '/cpu MHz/ {print $2; exit}' /proc/cpuinfo)
perf report -q -i "$data" --no-children --sort dso -F sample,dso 2>/dev/null |
    awk -v p=$period -v s="$steps" -v mhz="$mhz" '
        { n = $1; d = $2; total += n; if (d ~ /\.so$/ && d !~ /^lib/ && d !~ /^ld-linux/) { sub(/\.so$/, "", d); k[d] += n } }
        END {
            for (d in k) printf "%-28s %9.2f Mcycles/step %8.3f ms/step\n", d, k[d] * p / s / 1e6, k[d] * p / s / (mhz * 1e3)
            printf "%-28s %9.2f Mcycles/step %8.3f ms/step (whole process, set-up included)\n", "total", total * p / s / 1e6, total * p / s / (mhz * 1e3)
        }' | sort -k2 -n -r
