#!/bin/sh
# moelat-engine run over slabs gives the single-device states bitwise:
#   devices  two PoCL CPU devices in one process (POCL_DEVICES="pthread
#            pthread"), --devices 0,1 and --devices all, uneven slabs;
#   mpi      mpirun with 2 and 3 ranks.
# Both --mode batch and --mode percell, a fresh seed and input each run, on
# 9x8x7 (debug, r = 2.7: every band populated, halo 2 planes, so 3 ranks
# have slabs thinner than the halo).
# Debian's python3 (with numpy), not whatever python3 comes first.
# usage: scale_cli.sh ENGINE devices|mpi [MPIRUN]
set -eu
engine=$1
what=$2
mpirun=${3:-mpirun}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
seed=${MOELAT_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "scale_cli: seed $seed (MOELAT_TEST_SEED=$seed redoes it)"
export POCL_DEVICES="pthread pthread"
model="--preset debug --dims 9x8x7 --seed $seed --steps 3 --threads 1 --quiet"
fail() { echo "scale_cli: FAIL: $*"; exit 1; }

# An external input from the seed, so the z = 0 face's input is exercised.
/usr/bin/python3 - "$tmp/in.npy" "$seed" <<'PY'
import sys, numpy as np
np.save(sys.argv[1], np.random.default_rng(int(sys.argv[2])).normal(size=(8, 9, 16)).astype(np.float32))
PY

# PoCL must really expose two devices, or --devices 0,1 proves nothing.
n=$("$engine" devices --json | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" -ge 2 ] || fail "POCL_DEVICES='$POCL_DEVICES' gave $n OpenCL devices, expected 2"

for mode in batch percell; do
    "$engine" run $model --mode "$mode" --input "$tmp/in.npy" --save-state "$tmp/one.npy" \
        --save-outputs "$tmp/one_out.npy" >/dev/null || fail "single run ($mode)"
    if [ "$what" = devices ]; then
        set -- "--devices 0,1" "--devices all --slab-weights 1,4" "--devices 1,0,1 --slab-weights 3,1,2"
    else
        # Open MPI's own allocations are not ours to check for leaks.
        export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
        set -- "2" "3"
    fi
    for v in "$@"; do
        rm -f "$tmp/many.npy" "$tmp/many_out.npy"
        if [ "$what" = devices ]; then
            # shellcheck disable=SC2086
            "$engine" run $model --mode "$mode" $v --input "$tmp/in.npy" --save-state "$tmp/many.npy" \
                --save-outputs "$tmp/many_out.npy" --json >"$tmp/many.json" || fail "$v ($mode)"
        else
            # shellcheck disable=SC2086
            "$mpirun" --oversubscribe --allow-run-as-root -n "$v" "$engine" run $model --mode "$mode" \
                --input "$tmp/in.npy" --save-state "$tmp/many.npy" --save-outputs "$tmp/many_out.npy" \
                --json >"$tmp/many.json" || fail "mpirun -n $v ($mode)"
        fi
        cmp "$tmp/one.npy" "$tmp/many.npy" || fail "states differ: $v ($mode)"
        cmp "$tmp/one_out.npy" "$tmp/many_out.npy" || fail "outputs differ: $v ($mode)"
        # The JSON names one slab per device or rank, covering every plane.
        /usr/bin/python3 - "$tmp/many.json" <<'PY' || fail "JSON of $v ($mode)"
import json, sys
o = json.load(open(sys.argv[1]))
p = [s["planes"] for s in o["slabs"]]
assert p[0][0] == 0 and p[-1][1] == 7 and all(a[1] == b[0] for a, b in zip(p, p[1:])), p
assert o["ms_per_step"] > 0 and all("halo_ms_per_step" in s for s in o["slabs"]), o
PY
        echo "scale_cli: $what $v, $mode: same states"
    done
    # Checkpoints over slabs are single-lattice checkpoints: 2 steps over
    # slabs with one every step, then the third step resumed over slabs (3
    # ranks under MPI: another split) and on one device.
    if [ "$what" = devices ]; then
        save_on="$engine run --devices 0,1"
        resume_on="$engine run --devices 0,1"
    else
        save_on="$mpirun --oversubscribe --allow-run-as-root -n 2 $engine run"
        resume_on="$mpirun --oversubscribe --allow-run-as-root -n 3 $engine run"
    fi
    rm -rf "$tmp/ck"
    # shellcheck disable=SC2086
    $save_on $model --mode "$mode" --steps 2 --input "$tmp/in.npy" --checkpoint-every 1 \
        --checkpoint-dir "$tmp/ck" >/dev/null || fail "checkpoint over slabs ($mode)"
    resumed="--preset debug --dims 9x8x7 --seed $seed --threads 1 --quiet --steps 1"
    for on in "$resume_on" "$engine run"; do
        rm -f "$tmp/res.npy"
        # shellcheck disable=SC2086
        $on $resumed --mode "$mode" --resume "$tmp/ck" --save-state "$tmp/res.npy" >/dev/null ||
            fail "resume: $on ($mode)"
        cmp "$tmp/one.npy" "$tmp/res.npy" || fail "resumed states differ: $on ($mode)"
    done
    echo "scale_cli: $what checkpoint and resume, $mode: same states"
done
