#!/bin/sh
# Installs what moelat needs on Debian 12 (when missing; Open MPI too, so the
# build has the MPI runner and CI runs its tests) and builds it into
# build/. Safe to re-run: apt-get is skipped when every package is present,
# and the build is incremental.
set -eu
cd "$(dirname "$0")/../.."

PACKAGES="build-essential cmake ninja-build pkg-config ocl-icd-opencl-dev opencl-headers \
pocl-opencl-icd libclblast-dev libcmocka-dev libjansson-dev libxxhash-dev oclgrind clinfo \
python3 python3-numpy openmpi-bin libopenmpi-dev libcairo2-dev"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "moelat setup: installing$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

BUILD_DIR=${MOELAT_BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${MOELAT_CMAKE_ARGS:-}
fi
cmake --build "$BUILD_DIR" -j "$(nproc)"
