#!/bin/sh
# Builds moelat on a machine with an NVIDIA GPU and its OpenCL driver (the
# lent GPU machine: OpenCL loader, headers and CLBlast unpacked by
# .device/opencl-env.sh), then runs what is asked:
#   tools/bench/gpu_run.sh devices | check | bench [extra bench args]
# Output goes to stdout and, when $OUT is set, to $OUT/<what>.txt.
set -eu
cd "$(dirname "$0")/../.."
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
*) echo "usage: gpu_run.sh devices|check|bench [args]" >&2; exit 2 ;;
esac
