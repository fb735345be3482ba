#!/bin/sh
# moelat-engine grad: a good run's outputs (names, shapes, non-zero
# gradients) and its misuse (target of the wrong dtype or shape, NaN in the
# loss, a plugin without backward, lipschitz mode, over the memory budget,
# a bad output path): a clear error, a non-zero exit and no file written.
# usage: grad_cli.sh ENGINE PYTHON3 TEST_PLUGIN_SO
set -u
ENGINE=$1 PY=$2 NOBWD=$3
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
SEED=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
echo "seed $SEED"
"$PY" - "$T" "$SEED" <<'PYEOF' || fail "python could not write the inputs"
import sys, numpy as np
d, seed = sys.argv[1], int(sys.argv[2])
r = np.random.default_rng(seed)
shape = (7, 8, 9, 24)                       # (Z, Y, X, S) of debug 9x8x7
np.save(d + "/target.npy", (0.3 * r.standard_normal(shape)).astype(np.float32))
np.save(d + "/state.npy", (0.5 * r.standard_normal(shape)).astype(np.float32))
np.save(d + "/input.npy", r.standard_normal((8, 9, 16)).astype(np.float32))
np.save(d + "/t64.npy", r.standard_normal(shape))
np.save(d + "/tshape.npy", r.standard_normal((7, 8, 9, 23)).astype(np.float32))
bad = r.standard_normal(shape).astype(np.float32); bad[3, 2, 1, 5] = np.nan
np.save(d + "/tnan.npy", bad)
PYEOF
COMMON="--dims 9x8x7 --threads 2 --state $T/state.npy --input $T/input.npy"
OUTS="--save-grads $T/out/g.safetensors --save-state-grad $T/out/ds.npy --save-input-grad $T/out/di.npy"
mkdir "$T/out"

# misuse: each refused, naming the problem, with nothing written
expect_refusal() { # name pattern args...
    name=$1 pat=$2; shift 2
    "$ENGINE" grad $COMMON $OUTS "$@" >"$T/o" 2>"$T/e" && fail "$name: exit 0"
    grep -q -- "$pat" "$T/e" || { cat "$T/e"; fail "$name: no '$pat' in the message"; }
    [ -z "$(ls "$T/out")" ] || fail "$name: files written: $(ls "$T/out")"
    echo "ok: $name: $(head -c 300 "$T/e")"
}
expect_refusal "float64 target" "'<f8'" --target "$T/t64.npy"
expect_refusal "target shape" "(7, 8, 9, 23)" --target "$T/tshape.npy"
expect_refusal "NaN in the loss" "non-finite\\|not finite" --target "$T/tnan.npy"
expect_refusal "plugin without backward" "band distant: expert 'test_good'" --target "$T/target.npy" \
    --plugin-path "$NOBWD" --expert distant=test_good
expect_refusal "lipschitz" "lipschitz" --target "$T/target.npy" --cnf-mode lipschitz
expect_refusal "memory budget" "MiB" --target "$T/target.npy" --steps 30 --checkpoint-every 1 --memory-budget 1
expect_refusal "no target" "required"
# Output paths are checked before any work: nothing computed, nothing written.
mkfifo "$T/fifo"
expect_refusal "--save-state-grad in a missing directory" "--save-state-grad.*no/dir/x.npy" \
    --target "$T/target.npy" --save-state-grad "$T/no/dir/x.npy"
expect_refusal "--save-input-grad a FIFO" "is a FIFO" --target "$T/target.npy" --save-input-grad "$T/fifo"
expect_refusal "--save-grads a directory" "is a directory" --target "$T/target.npy" --save-grads "$T"

# a good run: the files have the weights' names and shapes
"$ENGINE" run --dims 9x8x7 --steps 0 --save-weights "$T/w.safetensors" >/dev/null 2>&1 ||
    "$ENGINE" run --dims 9x8x7 --steps 1 --save-weights "$T/w.safetensors" >/dev/null || fail "run --save-weights"
"$ENGINE" grad $COMMON $OUTS --target "$T/target.npy" --steps 2 --checkpoint-every 1 --json >"$T/j" ||
    fail "grad: exit $?"
grep -q '"loss"' "$T/j" || fail "no loss in $(cat "$T/j")"
"$PY" - "$T" <<'PYEOF' || fail "outputs"
import sys, json, struct, numpy as np
d = sys.argv[1]
def header(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return h, b[8 + n:]
w, _ = header(d + "/w.safetensors")
g, data = header(d + "/out/g.safetensors")
assert set(w) == set(g), "names differ"
for k in w:
    assert g[k]["shape"] == w[k]["shape"] and g[k]["dtype"] == "F32", k
alpha = g["local_expert.alpha"]["data_offsets"]
assert np.frombuffer(data[alpha[0]:alpha[1]], np.float32)[0] != 0, "dL/dalpha is 0"
ds, di = np.load(d + "/out/ds.npy"), np.load(d + "/out/di.npy")
assert ds.shape == (7, 8, 9, 24) and ds.dtype == np.float32, ds.shape
assert di.shape == (8, 9, 16) and di.dtype == np.float32, di.shape
assert np.isfinite(ds).all() and np.count_nonzero(ds) > ds.size // 2
assert np.count_nonzero(di) > di.size // 2
loss = json.load(open(d + "/j"))["loss"]
assert loss > 0
print("ok: outputs, loss", loss)
PYEOF
echo PASS
