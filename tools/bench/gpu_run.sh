#!/bin/sh
# Builds moelat on a machine with an NVIDIA GPU and its OpenCL driver (the
# lent GPU machine: OpenCL loader, headers and CLBlast unpacked by
# .device/opencl-env.sh), then runs what is asked:
#   tools/bench/gpu_run.sh devices | check | bench [extra bench args] | results
#   tools/bench/gpu_run.sh grad [extra bench args]   device vs host gradients, the gradient-step
#                                                    table, the backward by kernel, variants
#   tools/bench/gpu_run.sh variants "<bench args>" VAR=value [VAR=value ...]
# Output goes to stdout and, when $OUT is set, to $OUT/<what>.txt.
# `results` makes everything tools/bench/RESULTS.md holds, in order of
# cost: the checks, the default bench cases, experiment 40^3 on one queue
# (kernel times without overlap), optimized 100^3 (CSV files;
# tools/bench/table.py turns them into RESULTS.md's tables), and with two
# or more GPUs the scaling table (tools/bench/scaling.sh).
set -eu
cd "$(dirname "$0")/../.."
# Packages beyond OpenCL and CLBlast that the machine lacks (jansson,
# xxhash: tools/bench/gpu_debs.sh puts them in .device/extra), unpacked
# beside opencl-env.sh's, with their pkg-config files pointed there.
if ls .device/extra/*.deb >/dev/null 2>&1; then
    for f in .device/extra/*.deb; do dpkg -x "$f" /tmp/ocl; done
    sed -i 's|^prefix=/usr$|prefix=/tmp/ocl/usr|' /tmp/ocl/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc
    export PKG_CONFIG_PATH=/tmp/ocl/usr/lib/x86_64-linux-gnu/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
fi
B=${MOELAT_GPU_BUILD:-/tmp/moelat-build}
if [ ! -f "$B/build.ninja" ]; then
    cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOELAT_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$B" >/dev/null
E="$B/tools/moelat-engine"
out() { if [ -n "${OUT:-}" ]; then tee "$OUT/$1.txt"; else cat; fi; }
what=$1
shift
case "$what" in
devices) "$E" devices "$@" 2>&1 | out devices ;;
check)
    {
        "$E" check --preset debug --dims 15x15x15 --steps 5 "$@"
        "$E" check --preset experiment --dims 24x24x24 --steps 2 "$@"
        "$E" check --preset optimized --dims 16x16x16 --steps 1 --experts "$@"
    } 2>&1 | out check ;;
bench) "$E" bench "$@" 2>&1 | out bench ;;
results)
    T=${OUT:-.}
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$T/gpu.txt" 2>&1 || true
    # The lent machine's copy of the tree can carry a stale .git: the
    # caller names the commit it sent (MOELAT_COMMIT) when it can.
    echo "${MOELAT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}" >"$T/commit.txt"
    "$0" check >"$T/check.txt" 2>&1 || { echo "gpu_run: check failed, no figures" >&2; exit 1; }
    base="--steps 10 --threads $(nproc) --percell-cells 4000"
    # shellcheck disable=SC2086
    "$E" bench --cases debug:8x8x8,debug:15x15x15,debug:30x30x30,experiment:40x40x40 $base --csv >"$T/bench.csv"
    # shellcheck disable=SC2086
    "$E" bench --cases experiment:40x40x40 $base --queues 1 --csv >"$T/bench_q1.csv"
    # Per-cell at 100^3 costs minutes even sampled (seconds per cell): not timed.
    "$E" bench --cases optimized:100x100x100 --steps 3 --threads "$(nproc)" --percell-cells 0 --csv \
        >"$T/bench100.csv"
    ngpu=$("$E" devices --json | grep -c '"name"' || true)
    if [ "$ngpu" -ge 2 ]; then
        sh tools/bench/scaling.sh "$E" "$ngpu" optimized 100x100x100 4 >"$T/scaling.txt" 2>&1
    fi
    cat "$T"/*.txt "$T"/*.csv ;;
grad)
    # Issue 32's GPU half in one call (about 5 minutes on an H100): the
    # device backward against the host's (float64) on debug 9x8x7 and
    # experiment 7x6x5; RESULTS.md's gradient-step table on every bench
    # case (tools/bench/grad_table.sh, GRAD_LIMIT seconds each, default
    # 60; optimized 100^3 only when GRAD_CASES names it: more than 120 s a
    # gradient step at 2b29555); one reverse step by kernel (grad
    # --profile) at debug 15^3 and experiment 24^3; and the same-card
    # variants of the defaults (32 lanes, fewer slots, no projection).
    # Each part goes to $OUT as it ends, so a run cut short keeps its parts.
    set +e
    T=$(mktemp -d)
    R=${OUT:-$T}
    compare() { # preset dims [grad args]
        p=$1 d=$2
        shift 2
        "$E" run --preset "$p" --dims "$d" "$@" --steps 2 --seed 3 --mode percell --quiet --save-state "$T/t.npy" >/dev/null
        for m in percell batch; do
            "$E" grad --preset "$p" --dims "$d" "$@" --steps 2 --seed 5 --mode $m --target "$T/t.npy" \
                --save-grads "$T/g_$m.safetensors" --save-state-grad "$T/s_$m.npy" \
                --save-input-grad "$T/e_$m.npy" --tune grad_rows=16 2>&1 | grep "^backward"
        done
        echo "== $p $d: device against host"
        python3 tools/bench/grad_compare.py "$T" || true
    }
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$R/gpu.txt" 2>&1 || true
    { compare debug 9x8x7; compare experiment 7x6x5 --radius-ratio 0.5; } 2>&1 | out grad_compare
    cases=${GRAD_CASES:-debug:8x8x8,debug:15x15x15,debug:30x30x30,experiment:16x16x16,experiment:24x24x24,experiment:40x40x40}
    sh tools/bench/grad_table.sh "$E" "$cases" "${GRAD_LIMIT:-60}" "$@" 2>&1 | out grad_table
    for c in debug:15x15x15 experiment:24x24x24; do
        "$E" run --preset "${c%%:*}" --dims "${c#*:}" --steps 1 --seed 3 --quiet --save-state "$T/p.npy" >/dev/null
        echo "== ${c%%:*} ${c#*:}: one reverse step by kernel"
        MOELAT_LOG=grad=info "$E" grad --preset "${c%%:*}" --dims "${c#*:}" --steps 1 --target "$T/p.npy" \
            --profile 2>&1 | grep -E "kernel ms|slots of|^backward"
    done 2>&1 | out grad_profile
    for v in X=1 MOELAT_GRAD_LANES=32 MOELAT_GRAD_SLOTS=1056 MOELAT_GRAD_SLOTS=528 MOELAT_GRAD_PROJ=0; do
        echo "=== $v"
        env "$v" "$E" bench --backward --percell-cells 0 --steps 10 --cases debug:15x15x15,experiment:24x24x24 2>&1 |
            grep -E "^(debug|experiment) .*device"
    done 2>&1 | out grad_variants
    rm -rf "$T" ;;
variants)
    # One bench per environment setting, in one run on one card: the way
    # to time a change against its alternative (build-time switches go
    # through MOELAT_CL_OPTIONS=-DNAME=VALUE; X=1 for the plain tree).
    args=$1
    shift
    for v in "$@"; do
        echo "=== $v"
        # shellcheck disable=SC2086
        env "$v" "$E" bench $args 2>&1 | grep -v "^moelat warn"
    done | out variants ;;
*) echo "usage: gpu_run.sh devices|check|bench [args]|results|grad [args]|variants ARGS VAR=value..." >&2; exit 2 ;;
esac
