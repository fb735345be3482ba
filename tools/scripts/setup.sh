#!/bin/sh
# Installs what moelat needs on Debian 12 (when missing; Open MPI too, so the
# build has the MPI runner and CI runs its tests) and builds it into
# build/. Safe to re-run: apt-get is skipped when every package is present,
# and the build is incremental.
set -eu
cd "$(dirname "$0")/../.."

PACKAGES="build-essential cmake ninja-build pkg-config ocl-icd-opencl-dev opencl-headers \
pocl-opencl-icd libclblast-dev libcmocka-dev libjansson-dev libxxhash-dev oclgrind clinfo \
python3 python3-numpy python3-pytest openmpi-bin libopenmpi-dev libcairo2-dev"

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

# Python: Debian's python3 refuses a system-wide pip install, so the set-up
# makes the package in python/ visible instead: a one-line moelat.pth in
# the site directory Debian reserves for local packages
# (/usr/local/lib/python3.X/dist-packages, or MOELAT_PY_SITE) names
# python/, and python/moelat/_build_config.py (not tracked) names this
# build's library. Then `python3 -c "import moelat"` works from any
# directory with no environment to set; a virtualenv uses pip install
# ./python instead (python/README.md).
root=$(pwd)
py=${MOELAT_PYTHON:-/usr/bin/python3}
case "$BUILD_DIR" in /*) build_abs=$BUILD_DIR ;; *) build_abs=$root/$BUILD_DIR ;; esac
printf '# written by tools/scripts/setup.sh\nLIBRARY = %s\n' \
    "$(printf '%s' "$build_abs/engine/libmoelat.so" | "$py" -c 'import sys; print(repr(sys.stdin.read()))')" \
    > python/moelat/_build_config.py
site=${MOELAT_PY_SITE:-$("$py" -c 'import site; print(site.getsitepackages()[0])')}
SUDO=""
[ -w "$site" ] || [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO mkdir -p "$site"
printf '%s\n' "$root/python" | $SUDO tee "$site/moelat.pth" > /dev/null
