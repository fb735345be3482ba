#!/bin/sh
# One small batched step of every kernel (engine and built-in experts) under
# oclgrind, which checks API use, out-of-bounds accesses and data races.
# Fails when oclgrind reports anything. (--uninitialized is left out:
# Debian's oclgrind 21.10 crashes with it on the first kernel launch.)
# usage: oclgrind_step.sh <moelat-engine>
set -u
engine=$1
log=$(mktemp /tmp/moelat-oclgrind-XXXXXX.log)
trap 'rm -f "$log"' EXIT
# Every band populated: 5x4x3 with r = 4.5. No cache: kernels must be built
# (and so checked) by oclgrind itself. The functional projections use the
# expert's own GEMM kernel: CLBlast's kernels under Debian's oclgrind
# corrupted the host's heap on larger lattices (34x9x2), so they are left
# out here (functional_clblast checks that path on PoCL).
oclgrind --log "$log" --check-api --data-races \
    "$engine" check --dims 5x4x3 --radius-ratio 0.9 --steps 1 --threads 1 --tune kernel_cache=off,functional_gemm=kernel
rc=$?
if [ -s "$log" ]; then
    echo "oclgrind reported problems:"
    head -50 "$log"
    exit 1
fi
exit $rc
