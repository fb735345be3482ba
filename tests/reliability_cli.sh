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
# and the training classes of issue 33 (train and grad; registered by
# tests/train.cmake):
#   train_options     optimizer options keep their values whatever their
#                     order around --optimizer
#   train_outputs     every output path of train and grad is checked before
#                     any work
#   train_fifo        FIFOs among train's inputs and checkpoint files are
#                     refused, not waited on
#   train_checkpoint  an edited training checkpoint is refused, naming what
#                     is wrong (also when its self-checksum was forged)
#   train_resume      a resume with other data or result-changing options
#                     is refused, naming each difference
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


# The training classes: 8 samples of the synthetic task on 5x4x3 (debug,
# per cell: the float64 host path, fast), 6 of them training in 3
# mini-batches of 2.
train_setup() {
    tdims="--dims 5x4x3 --seed $seed --threads 2"
    tm="$tdims --mode percell --quiet"
    tr="--epochs 2 --batch-size 2 --val-fraction 0.25 --lr 3e-3"
    run 0 train --make-data "$tmp/d" --samples 8 $tdims
}
# forge DIR PYTHON: edits DIR's manifest as PYTHON says (m: the manifest
# as a dict, t: its "train" object, d: the directory) and writes it back
# with its self-checksum recomputed as the engine computes it (XXH64 of
# the keys-sorted compact form without "manifest_xxh64"), so that only
# the range and consistency checks can catch the edit.
forge() {
    $py - "$1" <<PY
import json, os, sys
d = sys.argv[1]
M64 = (1 << 64) - 1
P1, P2, P3, P4, P5 = 11400714785074694791, 14029467366897019727, 1609587929392839161, 9650029242287828579, 2870177450012600261
def rotl(x, r): return ((x << r) | (x >> (64 - r))) & M64
def rnd(a, v): return (rotl((a + v * P2) & M64, 31) * P1) & M64
def merge(h, v): return (((h ^ rnd(0, v)) * P1) + P4) & M64
def u(b, i, n): return int.from_bytes(b[i:i + n], "little")
def xxh64(b):
    n, i = len(b), 0
    if n >= 32:
        v = [(P1 + P2) & M64, P2, 0, (-P1) & M64]
        while i + 32 <= n:
            v = [rnd(v[k], u(b, i + 8 * k, 8)) for k in range(4)]
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M64
        for x in v:
            h = merge(h, x)
    else:
        h = P5
    h = (h + n) & M64
    while i + 8 <= n:
        h = (rotl(h ^ rnd(0, u(b, i, 8)), 27) * P1 + P4) & M64
        i += 8
    if i + 4 <= n:
        h = (rotl(h ^ ((u(b, i, 4) * P1) & M64), 23) * P2 + P3) & M64
        i += 4
    while i < n:
        h = (rotl(h ^ ((b[i] * P5) & M64), 11) * P1) & M64
        i += 1
    h = ((h ^ (h >> 33)) * P2) & M64
    h = ((h ^ (h >> 29)) * P3) & M64
    return h ^ (h >> 32)
def real(x):  # jansson's "%.17g", with ".0" where needed and a bare exponent
    s = "%.17g" % x
    if "." not in s and "e" not in s:
        s += ".0"
    if "e" in s:
        a, e = s.split("e")
        s = a + "e" + ("-" if e[0] == "-" else "") + (e.lstrip("+-").lstrip("0") or "0")
    return s
def canon(v):
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k) + ":" + canon(v[k]) for k in sorted(v)) + "}"
    if isinstance(v, list):
        return "[" + ",".join(canon(x) for x in v) + "]"
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float):
        return real(v)
    return json.dumps(v)
path = os.path.join(d, "manifest.json")
m = json.load(open(path))
said = m.pop("manifest_xxh64")
assert "%016x" % xxh64(canon(m).encode()) == said, "forge: the canonical form differs from the engine's"
t = m["train"]
$2
m["manifest_xxh64"] = "%016x" % xxh64(canon(m).encode())
open(path, "w").write(json.dumps(m, indent=2))
PY
}

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
    # 1.8 TB per cell (two state copies; the batched path keeps a third):
    # refused before any allocation, with the estimate and what fits.
    run nonzero run --preset optimized --dims 1200x1200x1200 --steps 1 --mode percell --quiet
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
train_options)
    train_setup
    # opt NAME VALUE OPTIONS...: the run's checkpoint must record VALUE
    # for the optimizer setting NAME.
    opt() {
        oname=$1 ovalue=$2
        shift 2
        rm -rf "$tmp/ck"
        run 0 train --data "$tmp/d" $tm --epochs 1 --batch-size 6 --val-fraction 0.25 --checkpoint-dir "$tmp/ck" "$@"
        $py - "$tmp/ck/manifest.json" "$oname" "$ovalue" "$*" <<'PY' || fail "$oname: $*"
import json, sys
o = json.load(open(sys.argv[1]))["train"]["options"]["optimizer"]
got, want = o[sys.argv[2]], float(sys.argv[3])
assert got == want, "%s: %s recorded %r, given %r" % (sys.argv[4], sys.argv[2], got, want)
PY
        echo "  $*: $oname $ovalue"
    }
    for order in before after; do
        for spec in "momentum 0.5 sgd" "clip_norm 0.7 sgd" "warmup_steps 3 sgd" "clip_norm 0.7 adamw" \
                    "warmup_steps 3 adamw" "beta1 0.8 adamw" "beta2 0.99 adamw" "eps 1e-06 adamw" \
                    "min_lr 1e-05 adamw" "lr 0.002 sgd" "weight_decay 0.001 sgd"; do
            set -- $spec
            flag=--$(echo "$1" | sed -e 's/_steps$//' -e 's/_/-/g')
            if [ $order = before ]; then
                opt "$1" "$2" "$flag" "$2" --optimizer "$3"
            else
                opt "$1" "$2" --optimizer "$3" "$flag" "$2"
            fi
        done
    done
    # The defaults of the optimizer chosen where nothing was given; the
    # last --optimizer wins.
    opt momentum 0.9 --optimizer sgd
    opt momentum 0 --momentum 0 --optimizer adamw --optimizer sgd
    opt beta1 0.9 --optimizer sgd --optimizer adamw
    ;;
train_outputs)
    train_setup
    # refused OPTION TEXT ARGS...: refused before any training (the witness
    # --loss-csv, or for a bad --loss-csv the checkpoint directory, stays
    # unwritten), naming the option and TEXT.
    refused() {
        o=$1 text=$2
        shift 2
        rm -rf "$tmp/w.csv" "$tmp/wck"
        witness="--loss-csv $tmp/w.csv"
        [ "$o" != --loss-csv ] || witness="--checkpoint-dir $tmp/wck"
        run nonzero train --data "$tmp/d" $tm $tr $witness "$@"
        says "$o"
        says "$text"
        [ ! -e "$tmp/w.csv" ] && [ ! -e "$tmp/wck" ] || fail "trained before refusing: $*"
        echo "  $*: $(head -c 200 "$tmp/err")"
    }
    mkfifo "$tmp/fifo"
    mkdir "$tmp/dir" "$tmp/ro_dir"
    printf 'keep' >"$tmp/ro.safetensors"
    chmod 444 "$tmp/ro.safetensors"
    printf 'x' >"$tmp/plain"
    refused --save-weights "is a directory" --save-weights "$tmp/dir"
    refused --save-weights "is a FIFO" --save-weights "$tmp/fifo"
    refused --save-weights "read-only (mode 0444)" --save-weights "$tmp/ro.safetensors"
    refused --save-weights "No such file or directory" --save-weights "$tmp/no/dir/w.safetensors"
    refused --loss-csv "is a FIFO" --loss-csv "$tmp/fifo"
    refused --loss-csv "No such file or directory" --loss-csv "$tmp/no/l.csv"
    refused --loss-png "is a directory" --loss-png "$tmp/dir"
    refused --checkpoint-dir "is a regular file, not a directory" --checkpoint-dir "$tmp/plain"
    refused --checkpoint-dir "is a regular file, not a directory" --checkpoint-dir "$tmp/plain/ck"
    mkdir "$tmp/fck"
    mkfifo "$tmp/fck/manifest.json"
    refused --checkpoint-dir "is a FIFO" --checkpoint-dir "$tmp/fck"
    if [ "$(id -u)" -eq 0 ]; then
        mknod "$tmp/null" c 1 3
        refused --save-weights "is a character device" --save-weights "$tmp/null"
        [ -c "$tmp/null" ] || fail "the character device was replaced"
    else
        chmod 555 "$tmp/ro_dir"
        refused --checkpoint-dir "is not writable" --checkpoint-dir "$tmp/ro_dir/ck"
        refused --save-weights "not writable" --save-weights "$tmp/ro_dir/w.safetensors"
    fi
    [ "$(cat "$tmp/ro.safetensors")" = keep ] || fail "the read-only file was replaced"
    # A checkpoint directory whose parents are missing is created, as run's is.
    run 0 train --data "$tmp/d" $tm $tr --checkpoint-dir "$tmp/new/a/ck"
    [ -s "$tmp/new/a/ck/manifest.json" ] || fail "no checkpoint in the new directory"
    # grad: a bad output anywhere refuses the whole run before any work.
    run 0 run $mod --mode percell --steps 0 --save-state "$tmp/target.npy"
    for bad in "--save-state-grad $tmp/no/dir/x.npy" "--save-input-grad $tmp/fifo" "--save-grads $tmp/dir"; do
        rm -f "$tmp/g.safetensors"
        run nonzero grad $mod --target "$tmp/target.npy" --save-grads "$tmp/g.safetensors" $bad
        says "${bad%% *}"
        [ ! -e "$tmp/g.safetensors" ] || fail "grad wrote --save-grads before refusing $bad"
        [ ! -s "$tmp/out" ] || fail "grad computed before refusing $bad: $(cat "$tmp/out")"
        echo "  grad $bad: $(head -c 200 "$tmp/err")"
    done
    ;;
train_fifo)
    train_setup
    mkfifo "$tmp/p"
    mkdir "$tmp/fd"
    cp "$tmp/d/targets.npy" "$tmp/fd/targets.npy"
    mkfifo "$tmp/fd/inputs.npy"
    run nonzero train --data "$tmp/fd" $tm $tr
    says "is a FIFO, not a regular file"
    for o in --state --weights; do
        run nonzero train --data "$tmp/d" $tm $tr $o "$tmp/p"
        says "is a FIFO, not a regular file"
    done
    run 0 train --data "$tmp/d" $tm $tr --checkpoint-dir "$tmp/ck"
    # A FIFO among the checkpoint's files, or named train.json (the
    # earlier layout's manifest) beside them: never waited on.
    for f in manifest.json config- weights- states- optimizer- train.json; do
        rm -rf "$tmp/c2"
        cp -r "$tmp/ck" "$tmp/c2"
        name=$(cd "$tmp/c2" && ls | grep "^$f" | head -n 1)
        [ -n "$name" ] || name=$f
        rm -f "$tmp/c2/$name"
        mkfifo "$tmp/c2/$name"
        if [ $f = train.json ]; then
            run 0 train --data "$tmp/d" $tm $tr --resume "$tmp/c2"
            run 0 train --data "$tmp/d" $tm $tr --checkpoint-dir "$tmp/c2"
        else
            run nonzero train --data "$tmp/d" $tm $tr --resume "$tmp/c2"
            says "is a FIFO"
            run nonzero train --data "$tmp/d" $tm $tr --resume "$tmp/c2" --checkpoint-dir "$tmp/c2"
            says "is a FIFO"
        fi
        echo "  $name: $(head -c 200 "$tmp/err")"
    done
    ;;
train_checkpoint)
    train_setup
    run 0 train --data "$tmp/d" $tm $tr --checkpoint-dir "$tmp/early" --stop-after 2
    run 0 train --data "$tmp/d" $tdims --mode percell --quiet --seed $((seed + 1)) $tr --checkpoint-dir "$tmp/other" \
        --stop-after 4
    run 0 train --data "$tmp/d" $tm $tr --checkpoint-dir "$tmp/ck" --stop-after 4
    run 0 train --data "$tmp/d" $tm $tr --resume "$tmp/ck" --save-weights "$tmp/good.safetensors"
    # edit HOW NAME TEXT PYTHON: a copy of the checkpoint edited by PYTHON,
    # resumed: must fail, saying TEXT. HOW plain: PYTHON sees d (the copy),
    # early, other (two more checkpoints), m (the manifest), t (its
    # "train"), mf(dir) (a manifest) and save() (writes m back as it is);
    # HOW forged: PYTHON edits m and t, and the manifest's self-checksum is
    # recomputed (forge), so only the range and consistency checks remain.
    edit() {
        rm -rf "$tmp/ed"
        cp -r "$tmp/ck" "$tmp/ed"
        if [ "$1" = forged ]; then
            forge "$tmp/ed" "$4"
        else
            printf '%s\n' "$4" >"$tmp/edit.py"
            $py - "$tmp/ed" "$tmp/early" "$tmp/other" "$tmp/edit.py" <<'PY'
import json, os, shutil, sys
d, early, other = sys.argv[1:4]
m = json.load(open(os.path.join(d, "manifest.json")))
t = m["train"]
def save():
    json.dump(m, open(os.path.join(d, "manifest.json"), "w"), indent=2)
def mf(where):
    return json.load(open(os.path.join(where, "manifest.json")))
exec(open(sys.argv[4]).read())
PY
        fi
        run nonzero train --data "$tmp/d" $tm $tr --resume "$tmp/ed"
        says "$3"
        echo "  $2 ($1): $(head -c 300 "$tmp/err")"
    }
    edited="the manifest was edited"
    edit plain "batch" "$edited" 't["batch"] += 1; save()'
    edit plain "epoch" "$edited" 't["epoch"] = 5; save()'
    edit plain "optimizer step" "$edited" 't["optimizer_step"] += 1; save()'
    edit plain "samples" "$edited" 't["samples"] += 2; save()'
    edit plain "a loss" "$edited" 't["history"]["train"][1][3] *= 0.5; save()'
    edit plain "a duplicate key" "duplicate object key" \
        'p = os.path.join(d, "manifest.json"); s = open(p).read(); open(p, "w").write(s.replace("\"train\": {", "\"train\": {\"epoch\": 0,", 1))'
    edit forged "batch" "key 'train.batch' is 4, outside [0, 3]" 't["batch"] = 4'
    edit forged "epoch past --epochs" "key 'train.epoch' is 3, past this run's 2 epochs" 't["epoch"] = 3'
    edit forged "epoch INT64_MAX" "key 'train.epoch' is 9223372036854775807, past" 't["epoch"] = 2**63 - 1'
    edit forged "epoch 2^32+1" "key 'train.epoch' is 4294967297, past" 't["epoch"] = 2**32 + 1'
    edit forged "epoch 2^64" "too big" 't["epoch"] = 2**64'
    edit forged "optimizer step" "key 'train.optimizer_step' is 5" 't["optimizer_step"] += 1'
    edit forged "samples" "key 'train.samples' is 10" 't["samples"] += 2'
    edit forged "a dropped point" "key 'train.history.train' holds 3 points" 't["history"]["train"].pop()'
    edit forged "a NaN loss" "key 'train.history.train' point 1" 't["history"]["train"][1][3] = None'
    edit forged "a validation point" "key 'train.history.validation' point 1" 't["history"]["validation"][1][2] += 1'
    edit forged "a negative count" "not a non-negative integer" 't["extra_steps"] = -1'
    edit forged "a run checkpoint" "not a training checkpoint" 'del m["train"]'
    edit plain "moments from an earlier position" "manifest says" \
        'shutil.copy(os.path.join(early, mf(early)["train"]["optimizer_state"]["file"]), os.path.join(d, t["optimizer_state"]["file"]))'
    edit plain "moments of another seed" "manifest says" \
        'shutil.copy(os.path.join(other, mf(other)["train"]["optimizer_state"]["file"]), os.path.join(d, t["optimizer_state"]["file"]))'
    edit plain "a flipped moment" "manifest says" \
        'p = os.path.join(d, t["optimizer_state"]["file"]); b = bytearray(open(p, "rb").read()); b[-5] ^= 0x40; open(p, "wb").write(b)'
    edit plain "weights" "manifest says" \
        'p = os.path.join(d, m["weights"]); b = bytearray(open(p, "rb").read()); b[-5] ^= 1; open(p, "wb").write(b)'
    # The untouched checkpoint still resumes, to the same weights.
    run 0 train --data "$tmp/d" $tm $tr --resume "$tmp/ck" --save-weights "$tmp/again.safetensors"
    cmp -s "$tmp/good.safetensors" "$tmp/again.safetensors" || fail "the untouched checkpoint resumed differently"
    ;;
train_resume)
    train_setup
    run 0 train --make-data "$tmp/d2" --samples 8 $tdims --seed $((seed + 1))
    run 0 train --make-data "$tmp/d6" --samples 6 $tdims
    run 0 run $mod --dims 5x4x3 --mode percell --steps 0 --save-state "$tmp/s.npy"
    run 0 train --data "$tmp/d" $tm $tr --checkpoint-dir "$tmp/ck" --stop-after 4
    # other WHAT TEXT ARGS...: resuming with ARGS (after the run's own) is
    # refused, naming TEXT.
    other() {
        item=$1 text=$2
        shift 2
        run nonzero train --data "$tmp/d" $tm $tr --resume "$tmp/ck" "$@"
        says "$text"
        echo "  $item: $(head -c 300 "$tmp/err")"
    }
    other "another data set" "checkpoint data set 8 samples" --data "$tmp/d2"
    other "fewer samples" "this run 6 samples" --data "$tmp/d6"
    other "batch size" "checkpoint batch size 2, this run 3" --batch-size 3
    other "steps" "checkpoint steps per sample 2, this run 3" --steps 3
    other "validation fraction" "checkpoint validation fraction 0.25, this run 0.5" --val-fraction 0.5
    other "seed" "checkpoint shuffle seed $seed, this run $((seed + 1))" --seed $((seed + 1))
    other "radius ratio" "checkpoint radius ratio" --radius-ratio 0.77
    other "mode" "checkpoint mode percell, this run auto" --mode auto
    other "initial states" "checkpoint initial states" --state "$tmp/s.npy"
    other "an optimizer setting" "optimizer setting 'lr'" --lr 1e-3
    other "fewer epochs than done" "past this run's 1 epochs" --epochs 1
    # Every difference at once.
    other "three at once" "checkpoint steps per sample 2, this run 3; checkpoint batch size 2, this run 3" \
        --batch-size 3 --steps 3 --mode auto
    says "checkpoint mode percell, this run auto"
    # More epochs continue the same run.
    run 0 train --data "$tmp/d" $tm $tr --resume "$tmp/ck" --epochs 3
    ;;
*)
    fail "unknown class '$what'"
    ;;
esac
echo "reliability_cli $what: ok"
