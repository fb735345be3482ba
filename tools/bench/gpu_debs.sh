#!/bin/sh
# On the development machine: downloads the Debian packages moelat's build
# needs beyond OpenCL and CLBlast (jansson, xxhash), which the lent GPU
# machine lacks and cannot fetch, into .device/extra/ (the folder that
# travels to it; gpu_run.sh unpacks them there).
#   tools/bench/gpu_debs.sh
set -eu
cd "$(dirname "$0")/../.."
mkdir -p .device/extra
cd .device/extra
apt-get download libjansson4 libjansson-dev libxxhash0 libxxhash-dev
ls
