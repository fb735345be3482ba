#!/bin/sh
# moelat-engine against what a careless or hostile user gives it, one class
# of defect per run (the classes of issue 27; the README's "Files and
# limits" states the rules):
#   saves        special, read-only and symlinked save targets
#   checkpoint   every kind of edit to a saved checkpoint is refused
#   fifo         FIFOs as inputs or checkpoint files are refused, not waited on
#   outputs      bad output paths refused before stepping; a save failing
#                after stepping still leaves the other outputs written
#   bounds       out-of-range config and option values, too many threads,
#                unknown devices, a lattice larger than memory
#   nonfinite    NaN/Inf in states, input and weights refused at load
#   messages     missing and empty option values, check --json on failure
# Fresh seed and inputs each run on 9x8x7 (debug, r = 2.7: every band
# populated). Debian's python3 (with numpy) writes and edits the files.
# usage: reliability_cli.sh ENGINE CLASS
set -eu
engine=$1
what=$2
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
seed=${MOELAT_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "reliability_cli $what: seed $seed (MOELAT_TEST_SEED=$seed redoes it)"
mod="--preset debug --dims 9x8x7 --seed $seed --threads 2"
model="$mod --quiet"
py=/usr/bin/python3
fail() { echo "reliability_cli $what: FAIL: $*"; exit 1; }

# run EXPECT ARGS...: runs the engine (never more than 60 s: a hang is a
# failure, not a stuck CI), output in $tmp/out and $tmp/err; EXPECT is 0
# or "nonzero".
run() {
    want=$1
    shift
    set +e
    timeout 60 "$engine" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    set -e
    [ "$rc" -ne 124 ] || fail "hung (killed after 60 s): $*"
    if [ "$want" = 0 ]; then
        [ "$rc" -eq 0 ] || fail "exit $rc, expected 0: $* -- $(cat "$tmp/err")"
    else
        [ "$rc" -ne 0 ] || fail "exit 0, expected a refusal: $*"
        [ "$rc" -lt 128 ] || fail "died of signal $((rc - 128)): $* -- $(cat "$tmp/err")"
    fi
}
# says TEXT: stderr contains TEXT.
says() { grep -qF -- "$1" "$tmp/err" || fail "stderr lacks '$1': $(cat "$tmp/err")"; }

# A random external input (Y, X, 16), finite.
$py - "$tmp/in.npy" "$seed" <<'PY'
import sys, numpy as np
np.save(sys.argv[1], np.random.default_rng(int(sys.argv[2])).normal(size=(8, 9, 16)).astype(np.float32))
PY

case $what in
saves)
    # The reference: a save to a plain new name.
    run 0 run $model --steps 1 --input "$tmp/in.npy" --save-state "$tmp/ref.npy"
    mkfifo "$tmp/fifo"
    mkdir "$tmp/dir"
    run nonzero run $model --steps 0 --save-outputs "$tmp/fifo"
    says "is a FIFO, not a regular file"
    [ -p "$tmp/fifo" ] || fail "the FIFO was replaced"
    run nonzero run $model --steps 0 --save-state "$tmp/dir"
    says "is a directory, not a regular file"
    if [ "$(id -u)" -eq 0 ]; then
        mknod "$tmp/null" c 1 3
        run nonzero run $model --steps 0 --save-weights "$tmp/null"
        says "is a character device"
        [ -c "$tmp/null" ] || fail "the character device was replaced"
    fi
    # Read-only: refused, left as it was.
    printf 'keep' >"$tmp/ro.npy"
    chmod 444 "$tmp/ro.npy"
    run nonzero run $model --steps 0 --save-state "$tmp/ro.npy"
    says "read-only (mode 0444)"
    [ "$(cat "$tmp/ro.npy")" = keep ] || fail "the read-only file was replaced"
    [ "$(stat -c %a "$tmp/ro.npy")" = 444 ] || fail "the read-only file's mode changed"
    # A symlink (relative, into another directory) is written through: the
    # link stays, its target gets the data; a mode of 0600 is kept.
    mkdir "$tmp/store"
    printf 'old' >"$tmp/store/s.npy"
    chmod 600 "$tmp/store/s.npy"
    ln -s store/s.npy "$tmp/link.npy"
    run 0 run $model --steps 1 --input "$tmp/in.npy" --save-state "$tmp/link.npy"
    [ -L "$tmp/link.npy" ] || fail "the symlink was replaced by a file"
    cmp -s "$tmp/store/s.npy" "$tmp/ref.npy" || fail "the symlink's target does not hold the states"
    [ "$(stat -c %a "$tmp/store/s.npy")" = 600 ] || fail "the target's mode changed"
    [ -z "$(ls "$tmp" | grep '\.tmp\.' || true)$(ls "$tmp/store" | grep '\.tmp\.' || true)" ] ||
        fail "temporary files left behind"
    ;;
checkpoint)
    run 0 run $model --steps 3 --input "$tmp/in.npy" --checkpoint-dir "$tmp/ck"
    run 0 run $model --seed $((seed + 1)) --steps 2 --checkpoint-dir "$tmp/other"
    run 0 run --resume "$tmp/ck" --steps 2 --quiet --threads 2 --save-state "$tmp/good.npy"
    # edit NAME PYTHON: a copy of the checkpoint edited by PYTHON (d: its
    # directory, m: the manifest as a dict, cfg: the config file's name;
    # save() writes m back), then resumed: must be refused, naming a file.
    edit() {
        rm -rf "$tmp/ed"
        cp -r "$tmp/ck" "$tmp/ed"
        $py - "$tmp/ed" "$tmp/other" <<PY
import json, os, re, shutil, sys
d, other = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(d, "manifest.json")))
cfg = os.path.join(d, m["config"])
def save():
    json.dump(m, open(os.path.join(d, "manifest.json"), "w"), indent=2)
def sub(path, old, new):
    t = open(path).read()
    assert re.search(old, t), (old, t)
    open(path, "w").write(re.sub(old, new, t, count=1))
$2
PY
        run nonzero run --resume "$tmp/ed" --steps 2 --quiet --threads 2 --save-state "$tmp/bad.npy"
        grep -qE "ed/(manifest.json|config-|weights-|states-|input-)" "$tmp/err" ||
            fail "$1: the refusal names no file: $(cat "$tmp/err")"
        echo "  $1: $(head -c 300 "$tmp/err")"
    }
    edit "cnf mode" 'sub(cfg, r"\"euler\"", "\"lipschitz\"")'
    edit "cnf steps" 'sub(cfg, r"\"cnf_steps\": 3", "\"cnf_steps\": 4")'
    edit "radius digit" 'sub(cfg, r"(\"radius_ratio\": 0\.)(\d)", lambda x: x.group(1) + str((int(x.group(2)) + 1) % 10))'
    edit "band ratio digit" 'sub(cfg, r"(\"band_ratios\": \[\s*0\.)(\d)", lambda x: x.group(1) + str((int(x.group(2)) + 1) % 10))'
    edit "other checkpoint's config" 'shutil.copy(os.path.join(other, json.load(open(os.path.join(other, "manifest.json")))["config"]), cfg)'
    edit "input set to null" 'm["input"] = None; save()'
    edit "step counter" 'm["step"] += 1; save()'
    edit "weights file" 'p = os.path.join(d, m["weights"]); b = bytearray(open(p, "rb").read()); b[-3] ^= 1; open(p, "wb").write(b)'
    # The untouched checkpoint still resumes, and to the same states.
    run 0 run --resume "$tmp/ck" --steps 2 --quiet --threads 2 --save-state "$tmp/again.npy"
    cmp -s "$tmp/good.npy" "$tmp/again.npy" || fail "the untouched checkpoint resumed differently"
    ;;
fifo)
    mkfifo "$tmp/p"
    for opt in --state --weights --input --config; do
        run nonzero run $model --steps 1 $opt "$tmp/p"
        says "is a FIFO, not a regular file"
    done
    run 0 run $model --steps 1 --input "$tmp/in.npy" --checkpoint-dir "$tmp/ck"
    for f in manifest.json config- weights- states- input-; do
        rm -rf "$tmp/c2"
        cp -r "$tmp/ck" "$tmp/c2"
        name=$(cd "$tmp/c2" && ls | grep "^$f" | head -n 1)
        rm "$tmp/c2/$name"
        mkfifo "$tmp/c2/$name"
        run nonzero run --resume "$tmp/c2" --steps 1 --quiet
        says "is a FIFO"
    done
    ;;
outputs)
    # A bad path is refused before any step: nothing printed on stdout,
    # nothing written to the checkpoint directory.
    run nonzero run $model --steps 5 --save-state /nonexistent/s.npy --checkpoint-dir "$tmp/ck"
    says "--save-state /nonexistent/s.npy"
    [ ! -s "$tmp/out" ] || fail "stepped before refusing: $(cat "$tmp/out")"
    [ ! -e "$tmp/ck" ] || fail "the checkpoint directory was made before the refusal"
    printf 'x' >"$tmp/plain"
    run nonzero run $model --steps 5 --checkpoint-dir "$tmp/plain/ck"
    says "is a regular file, not a directory"
    # A save that fails after stepping (files over 24 KiB fail with EFBIG:
    # the states and the checkpoint's states) must not lose the output
    # face (7 KiB), and the message must say what was written.
    (
        trap '' XFSZ
        ulimit -f 24
        set +e
        timeout 60 "$engine" run $model --steps 2 --save-state "$tmp/s.npy" --checkpoint-dir "$tmp/ck2" \
            --save-outputs "$tmp/o.npy" >"$tmp/out" 2>"$tmp/err"
        echo $? >"$tmp/rc"
    )
    [ "$(cat "$tmp/rc")" -ne 0 ] || fail "a failed save exited 0"
    says "NOT written: --save-state $tmp/s.npy, checkpoint $tmp/ck2"
    says "written: --save-outputs $tmp/o.npy"
    $py -c "import numpy as np, sys; a = np.load(sys.argv[1]); assert a.shape == (8, 9, 24) and np.isfinite(a).all()" \
        "$tmp/o.npy" || fail "the output face was not saved"
    [ ! -e "$tmp/s.npy" ] || fail "a partial states file was left"
    ;;
bounds)
    for br in '[0.4, 0.8, 3e9]' '[0.4, 0.8, 1e300]' '[1e-320, 0.8, 1.0]'; do
        echo "{\"band_ratios\": $br}" >"$tmp/c.json"
        run nonzero run $model --steps 1 --config "$tmp/c.json"
        says "out of range (1e-06 to 4)"
    done
    echo '{"cnf_steps": 2147483647}' >"$tmp/c.json"
    run nonzero run $model --steps 1 --config "$tmp/c.json"
    says "range 1 to 1000"
    for r in 1e308 1e-320; do
        run nonzero run $model --steps 1 --radius-ratio $r
        says "from 1e-06 to 100"
    done
    run nonzero run $model --steps 1 --threads 100000
    says "from 0 to 1024"
    # Far more threads than cores: capped with a warning, and it runs.
    run 0 run $model --steps 1 --threads 1000
    says "warning: 1000 threads on"
    run nonzero run $model --steps 1 --mode percell --devices 7,x
    says "--devices: '7'"
    run nonzero run $model --steps 1 --mode percell --devices 0,x_no_such_device_x
    says "x_no_such_device_x"
    # 1.8 TB: refused before any allocation, with the estimate and what fits.
    run nonzero run --preset optimized --dims 1200x1200x1200 --steps 1 --quiet
    says "needs about 1.8 TB of host memory"
    says "the largest cubic lattice that fits is"
    ;;
nonfinite)
    run 0 run $model --steps 0 --save-state "$tmp/s.npy" --save-weights "$tmp/w.safetensors"
    $py - "$tmp" "$seed" <<'PY'
import sys, numpy as np, json, struct
d, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
s = np.load(d + "/s.npy")
z, y, x, q = (int(rng.integers(n)) for n in s.shape)
s[z, y, x, q] = np.nan
np.save(d + "/nan.npy", s)
open(d + "/nan_at", "w").write("element (%d, %d, %d, %d)" % (z, y, x, q))
i = np.load(d + "/in.npy")
i[int(rng.integers(8)), int(rng.integers(9)), int(rng.integers(16))] = -np.inf
np.save(d + "/inf.npy", i)
# A NaN at a random element of a random tensor of the weights.
b = bytearray(open(d + "/w.safetensors", "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
name = sorted(k for k in h if k != "__metadata__")[int(rng.integers(len(h) - ("__metadata__" in h)))]
a, e = h[name]["data_offsets"]
k = int(rng.integers((e - a) // 4))
b[8 + n + a + 4 * k:8 + n + a + 4 * k + 4] = struct.pack("<f", float("nan"))
open(d + "/nanw.safetensors", "wb").write(b)
open(d + "/nanw_at", "w").write("tensor '%s' element" % name)
PY
    run nonzero run $model --steps 0 --state "$tmp/nan.npy"
    says "$tmp/nan.npy: $(cat "$tmp/nan_at")"
    says "is NaN"
    run nonzero run $model --steps 0 --input "$tmp/inf.npy"
    says "$tmp/inf.npy: element"
    says "is -Inf"
    run nonzero run $model --steps 0 --weights "$tmp/nanw.safetensors"
    says "$tmp/nanw.safetensors: $(cat "$tmp/nanw_at")"
    ;;
messages)
    run nonzero run $model --steps
    says "option --steps needs a value"
    run nonzero run $model --checkpoint-every
    says "option --checkpoint-every needs a value"
    for opt in --weights --state --input --save-state --save-outputs --save-weights --checkpoint-dir --config; do
        run nonzero run $model --steps 1 $opt ""
        says "option $opt needs a"
        says "empty string"
    done
    printf 'not a npy file at all' >"$tmp/bad.npy"
    run nonzero check $mod --steps 1 --json --state "$tmp/bad.npy"
    $py -c "import json, sys; o = json.load(open(sys.argv[1])); assert o['pass'] is False and 'bad.npy' in o['error'], o" \
        "$tmp/out" || fail "check --json printed no JSON failure: $(cat "$tmp/out")"
    ;;
*)
    fail "unknown class '$what'"
    ;;
esac
echo "reliability_cli $what: ok"
