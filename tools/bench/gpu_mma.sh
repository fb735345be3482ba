#!/bin/sh
# The functional expert's tensor-core edge walk (experts/functional/
# functional_mma.cl) on the lent NVIDIA GPU, in one call (.device carried,
# .device/opencl-env.sh sourced first):
#   tools/bench/gpu_mma.sh [steps at 100^3, default 2; 0 skips 100^3]
# 1. gpu_run.sh check with the engine's log: the batch path against the
#    host at debug 15^3, experiment 24^3, optimized 16^3 (per expert), and
#    the log line saying which edge walk the functional kernel compiled.
# 2. Registers and spills of the functional kernels from NVIDIA's build log.
# 3. Experiment 40^3 on one queue (kernel times without overlap): tensor
#    cores, the FP32 walk (-DFN_MMA=0), tensor cores again (the spread);
#    then optimized 100^3 on the default queues, both walks.
# Output: $OUT/check.txt, regs.txt, v40/variants.txt, v100/variants.txt.
set -u
cd "$(dirname "$0")/../.."
G=tools/bench/gpu_run.sh
T=${OUT:-/tmp/gpu_mma}
mkdir -p "$T/v40" "$T/v100"
B=${MOELAT_GPU_BUILD:-/tmp/moelat-build}
MOELAT_LOG=info OUT=$T sh "$G" check >/dev/null 2>&1
grep -E "edge walk|check passed|check FAILED|error|differ" "$T/check.txt" | grep -v "^moelat info \[batch\]"
# 40^3 is timed when the tensor-core walk was built; 100^3 only when
# every check passed.
passed=$(grep -c "check passed" "$T/check.txt")
if ! grep -q "edge walk on tensor cores" "$T/check.txt"; then
    echo "gpu_mma: the functional kernel did not build the tensor-core walk; no timings" >&2
    grep -iE "error|build" "$T/check.txt" | head -40 >&2
    exit 1
fi
[ "$passed" -ge 3 ] || echo "gpu_mma: $passed of 3 checks passed: 100^3 not timed" >&2
MOELAT_NO_KERNEL_CACHE=1 MOELAT_LOG=cl_build=debug MOELAT_CL_OPTIONS=-cl-nv-verbose \
    "$B/tools/moelat-engine" bench --cases experiment:24x24x24,optimized:20x20x20 --steps 1 --percell-cells 0 2>&1 |
    grep -iE "program '|entry function|registers|spill|stack frame" >"$T/regs.txt"
grep -A2 "functional_\(edges\|output\)" "$T/regs.txt" | grep -E "functional_|Used" | head -12
OUT=$T/v40 sh "$G" variants "--cases experiment:40x40x40 --queues 1 --percell-cells 0 --steps 10" \
    X=1 MOELAT_CL_OPTIONS=-DFN_MMA=0 X=2
steps=${1:-2}
if [ "$steps" -gt 0 ] && [ "$passed" -ge 3 ]; then
    OUT=$T/v100 sh "$G" variants "--cases optimized:100x100x100 --percell-cells 0 --steps $steps" \
        X=1 MOELAT_CL_OPTIONS=-DFN_MMA=0
fi
