#!/bin/sh
# CPU time per step of each PoCL kernel, from perf's cpu-clock samples of
# the engine's process (its own threads and PoCL's; a virtual machine
# without a cycle counter has nothing finer): the time the kernels held
# a core, which other processes on a shared machine disturb far less
# than wall time (on a loaded 2-core machine wall time varies
# several-fold). Two cores' worth of it per step is the wall time an
# idle 2-core machine would approach.
# usage: pocl_cputime.sh <moelat-engine> STEPS [run options...]
# e.g.   pocl_cputime.sh build/tools/moelat-engine 20 --dims 15x15x15 --queues 1
# Prints "kernel  CPU ms/step" per kernel (PoCL names a kernel's library
# <kernel>.so) and the process total (set-up included).
set -eu
engine=$1
steps=$2
shift 2
data=$(mktemp /tmp/moelat-cycles-XXXXXX.data)
trap 'rm -f "$data"' EXIT
period=250000 # ns of CPU time per sample
perf record -q -e cpu-clock:u -c $period -o "$data" "$engine" run --mode batch --steps "$steps" "$@" >/dev/null
perf report -q -i "$data" --no-children --sort dso -F sample,dso 2>/dev/null |
    awk -v p=$period -v s="$steps" '
        { n = $1; d = $2; total += n; if (d ~ /\.so$/ && d !~ /^lib/ && d !~ /^ld-linux/) { sub(/\.so$/, "", d); k[d] += n } }
        END {
            for (d in k) printf "%-28s %9.3f CPU ms/step\n", d, k[d] * p / s / 1e6
            printf "%-28s %9.3f CPU ms/step (whole process, set-up included)\n", "total", total * p / s / 1e6
        }' | sort -k2 -n -r
