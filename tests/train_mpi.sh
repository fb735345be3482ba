#!/bin/sh
# Data-parallel `train` under mpirun (train_ranks.h): on 2 ranks the
# weights after every optimizer step of 2 epochs equal the one-rank run's
# within float32 rounding (1e-6 relative per tensor; the host's float64
# gradients, mode percell), two runs on the same ranks give the same bits
# (host and PoCL device backward), and only rank 0 writes.
# usage: train_mpi.sh ENGINE MPIRUN PYTHON3
set -u
engine=$1
mpirun=$2
py=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
mpi() { ASAN_OPTIONS="$mpi_env_asan" "$mpirun" --oversubscribe --allow-run-as-root -n "$@"; }
# Open MPI's own allocations are not ours to check for leaks (the
# sanitizer build); the one-rank runs below are still checked.
mpi_env_asan="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
"$engine" train --make-data "$tmp/d" --samples 12 --dims 6x5x4 --seed 3 --quiet >/dev/null || fail "make-data"
common="--data $tmp/d --dims 6x5x4 --seed 5 --steps 2 --epochs 2 --batch-size 5 --val-fraction 0.2 --threads 1 --quiet"
"$engine" train $common --mode percell --save-weights "$tmp/one.safetensors" >/dev/null || fail "one rank"
mpi 2 "$engine" train $common --mode percell --save-weights "$tmp/two.safetensors" \
    --loss-csv "$tmp/two.csv" >"$tmp/two.txt" 2>&1 || { cat "$tmp/two.txt"; fail "2 ranks"; }
mpi 2 "$engine" train $common --mode percell --save-weights "$tmp/two_b.safetensors" >/dev/null 2>&1 ||
    fail "2 ranks, again"
cmp -s "$tmp/two.safetensors" "$tmp/two_b.safetensors" || fail "two 2-rank runs differ (percell)"
[ "$(grep -c '^trained' "$tmp/two.txt")" = 1 ] || fail "the summary should be printed once (rank 0): $(cat "$tmp/two.txt")"
[ -s "$tmp/two.csv" ] || fail "rank 0 wrote no loss CSV"
cmp -s "$tmp/one.safetensors" "$tmp/two.safetensors" && echo "note: 1 and 2 ranks gave identical bits"
"$py" - "$tmp/one.safetensors" "$tmp/two.safetensors" <<'PYEOF' || fail "1 and 2 ranks differ beyond 1e-6"
import json, struct, sys
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    d = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k != '__metadata__':
            s, e = v['data_offsets']
            out[k] = struct.unpack('<%df' % ((e - s) // 4), d[s:e])
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys()
worst, where = 0.0, ''
for k in a:
    m = max(abs(x) for x in a[k]) or 1e-30
    r = max(abs(x - y) for x, y in zip(a[k], b[k])) / m
    if r > worst:
        worst, where = r, k
print(f"1 vs 2 ranks: worst tensor {worst:.3g} relative ({where})")
sys.exit(0 if worst <= 1e-6 else 1)
PYEOF
# The device backward (PoCL): two 2-rank runs, the same bits.
dev="--mode batch --tune grad_slots=8"
mpi 2 "$engine" train $common $dev --save-weights "$tmp/dev.safetensors" >/dev/null 2>&1 || fail "2 ranks (batch)"
mpi 2 "$engine" train $common $dev --save-weights "$tmp/dev_b.safetensors" >/dev/null 2>&1 || fail "2 ranks (batch), again"
cmp -s "$tmp/dev.safetensors" "$tmp/dev_b.safetensors" || fail "two 2-rank runs differ (batch)"
echo PASS
