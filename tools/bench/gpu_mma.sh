#!/bin/bash
# The functional expert's tensor-core edge walk (experts/functional/
# functional_mma.cl) on the lent NVIDIA GPU, in one call (.device carried,
# .device/opencl-env.sh sourced first; bash for its arrays):
#   tools/bench/gpu_mma.sh [STEPS100 [OPTIONS ...]]
# STEPS100: timed steps at optimized 100^3 (default 2; 0 skips it).
# OPTIONS: build options of variants to time against the default, each one
# argument (e.g. "-DFN_MMA_TA=2 -DFN_MMA_FAST_GELU=1").
# 1. gpu_run.sh check with the engine's log (the batch path against the
#    host at debug 15^3, experiment 24^3, optimized 16^3 per expert, and
#    the line saying which edge walk the functional kernel compiled), then
#    experiment 24^3 and optimized 16^3 again for each variant.
# 2. The default at debug 15^3, 30^3 and experiment 40^3 on two queues
#    (bench.csv: RESULTS.md's rows, per-cell column not timed).
# 3. Experiment 40^3 on one queue (kernel times without overlap): the
#    default, each variant, the FP32 walk (-DFN_MMA=0), the default again
#    (its spread); then optimized 100^3 on two queues, the default and each
#    variant. Variants whose check failed are not timed.
# Output under $OUT: check.txt, bench.csv, v40/variants.txt,
# v100/variants.txt.
set -u
cd "$(dirname "$0")/../.."
G=tools/bench/gpu_run.sh
T=${OUT:-/tmp/gpu_mma}
mkdir -p "$T/v40" "$T/v100"
B=${MOELAT_GPU_BUILD:-/tmp/moelat-build}
E="$B/tools/moelat-engine"
steps=${1:-2}
[ $# -gt 0 ] && shift
MOELAT_LOG=info OUT=$T sh "$G" check >/dev/null 2>&1
if ! grep -q "edge walk on tensor cores" "$T/check.txt"; then
    echo "gpu_mma: the functional kernel did not build the tensor-core walk; no timings" >&2
    grep -iE "error|build" "$T/check.txt" | head -40 >&2
    exit 1
fi
passed=$(grep -c "check passed" "$T/check.txt")
echo "default: $passed of 3 checks passed"
# The variants that pass both checks, as MOELAT_CL_OPTIONS=... words.
ok=()
for o in "$@"; do
    if MOELAT_CL_OPTIONS="$o" "$E" check --preset experiment --dims 24x24x24 --steps 2 >>"$T/check.txt" 2>&1 &&
        MOELAT_CL_OPTIONS="$o" "$E" check --preset optimized --dims 16x16x16 --steps 1 --experts \
            >>"$T/check.txt" 2>&1; then
        echo "variant '$o': checks passed"
        ok+=("MOELAT_CL_OPTIONS=$o")
    else
        echo "variant '$o': check FAILED, not timed"
    fi
done
"$E" bench --cases debug:15x15x15,debug:30x30x30,experiment:40x40x40 --percell-cells 0 --steps 10 --csv \
    >"$T/bench.csv" 2>/dev/null
cat "$T/bench.csv"
OUT=$T/v40 sh "$G" variants "--cases experiment:40x40x40 --queues 1 --percell-cells 0 --steps 10" \
    X=1 "${ok[@]}" MOELAT_CL_OPTIONS=-DFN_MMA=0 X=2 | grep "^=== \|^experiment"
if [ "$steps" -gt 0 ] && [ "$passed" -ge 3 ]; then
    OUT=$T/v100 sh "$G" variants "--cases optimized:100x100x100 --percell-cells 0 --steps $steps" \
        X=1 "${ok[@]}" | grep "^=== \|^optimized"
fi
