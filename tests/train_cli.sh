#!/bin/sh
# moelat-engine train on the synthetic task: the validation loss falls at
# least 10x; a run interrupted mid-epoch and resumed from its checkpoint
# ends with bitwise the weights of the uninterrupted run; the CSV and PNG
# are written; misuse (mismatched shapes, an empty data set, a non-finite
# loss) is refused with a clear message, and the last good checkpoint is
# kept; a run killed while checkpointing resumes bit-exactly.
# usage: train_cli.sh ENGINE PYTHON3
set -u
ENGINE=$1 PY=$2
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
SEED=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
echo "seed $SEED"
MODEL="--dims 6x6x3 --seed $SEED --threads 2"

"$ENGINE" train --make-data "$T/carry" --samples 48 $MODEL || fail "--make-data"

# 1. The loss falls (fresh seed: data and initial weights).
"$ENGINE" train --data "$T/carry" $MODEL --epochs 8 --lr 1e-2 --json --loss-csv "$T/loss.csv" \
    --loss-png "$T/loss.png" >"$T/summary.json" || fail "training failed"
cat "$T/summary.json"
"$PY" - "$T" <<'PYEOF' || fail "the validation loss did not fall 10x, or the CSV/PNG are wrong"
import csv, json, sys
d = sys.argv[1]
s = json.load(open(d + "/summary.json"))
assert s["final_val_loss"] * 10 <= s["initial_val_loss"], s
rows = list(csv.DictReader(open(d + "/loss.csv")))
val = [float(r["loss"]) for r in rows if r["kind"] == "val"]
train = [r for r in rows if r["kind"] == "train"]
assert len(val) == 9 and abs(val[0] - s["initial_val_loss"]) < 1e-6 * val[0], val
assert len(train) == s["optimizer_steps"] == 40, (len(train), s["optimizer_steps"])
png = open(d + "/loss.png", "rb").read()
assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, len(png)
print("ok: validation loss %.4g -> %.4g" % (s["initial_val_loss"], s["final_val_loss"]))
PYEOF

# No validation samples: the summary is still the whole JSON object, with
# null for the losses it has none of.
"$ENGINE" train --data "$T/carry" $MODEL --mode percell --epochs 1 --batch-size 16 --val-fraction 0 --json \
    >"$T/v0.json" || fail "training without validation"
"$PY" - "$T/v0.json" <<'PYEOF' || fail "--json --val-fraction 0: $(cat "$T/v0.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["val_samples"] == 0 and s["train_samples"] == 48 and s["optimizer_steps"] == 3, s
assert s["final_val_loss"] is None and s["backward"].startswith("host"), s
PYEOF
echo "ok: --json --val-fraction 0: $(cat "$T/v0.json")"

# 2. Bit-exact resume: 2 epochs straight, against 7 optimizer steps (mid
# second epoch, after a checkpoint at the first epoch's end) then --resume.
RUN="--data $T/carry $MODEL --epochs 2 --lr 3e-3 --warmup 2 --cosine --quiet"
"$ENGINE" train $RUN --save-weights "$T/straight.safetensors" >/dev/null || fail "straight run"
"$ENGINE" train $RUN --checkpoint-dir "$T/ck" --stop-after 7 >/dev/null || fail "interrupted run"
grep -q '"optimizer_step": 7' "$T/ck/manifest.json" || fail "the checkpoint is not at optimizer step 7"
"$ENGINE" train $RUN --resume "$T/ck" --save-weights "$T/resumed.safetensors" --json >"$T/resumed.json" ||
    fail "resumed run"
cmp "$T/straight.safetensors" "$T/resumed.safetensors" || fail "resumed weights differ from the straight run's"
grep -q '"optimizer_steps": 10' "$T/resumed.json" || fail "the resumed run did not end at step 10"
echo "ok: resumed at step 7, bitwise the same weights after 10 steps"
"$ENGINE" train $RUN --resume "$T/ck" --lr 1e-3 >"$T/o" 2>"$T/e" && fail "resume with another lr: exit 0"
grep -q "optimizer setting 'lr'" "$T/e" || { cat "$T/e"; fail "no message naming lr"; }
echo "ok: $(cat "$T/e")"

# 3. Misuse.
"$PY" - "$T" <<'PYEOF' || fail "python could not write the misuse data"
import sys, numpy as np
d = sys.argv[1]
r = np.random.default_rng(1)
import os
for name in ("shape", "empty"):
    os.makedirs(f"{d}/{name}", exist_ok=True)
np.save(f"{d}/shape/inputs.npy", r.standard_normal((8, 6, 6, 16)).astype(np.float32))
np.save(f"{d}/shape/targets.npy", r.standard_normal((8, 6, 6, 23)).astype(np.float32))
np.save(f"{d}/empty/inputs.npy", np.zeros((0, 6, 6, 16), np.float32))
np.save(f"{d}/empty/targets.npy", np.zeros((0, 6, 6, 24), np.float32))
# Finite targets whose squared error overflows float32.
os.makedirs(f"{d}/huge", exist_ok=True)
np.save(f"{d}/huge/inputs.npy", np.load(f"{d}/carry/inputs.npy"))
np.save(f"{d}/huge/targets.npy", np.full(np.load(f"{d}/carry/targets.npy").shape, 3e38, np.float32))
PYEOF
expect_refusal() { # name pattern args...
    name=$1 pat=$2; shift 2
    "$ENGINE" train "$@" >"$T/o" 2>"$T/e" && fail "$name: exit 0"
    grep -q -- "$pat" "$T/e" || { cat "$T/e"; fail "$name: no '$pat' in the message"; }
    echo "ok: $name: $(head -c 300 "$T/e")"
}
expect_refusal "targets of another state size" "targets.npy: shape (8, 6, 6, 23)" --data "$T/shape" $MODEL
expect_refusal "an empty data set" "holds no sample" --data "$T/empty" $MODEL
expect_refusal "no data option" "exactly one of --data" $MODEL
expect_refusal "a bad learning rate" "option --lr wants a number" --data "$T/carry" $MODEL --lr -1
cp "$T/ck/manifest.json" "$T/manifest.before"
# A fresh run whose loss overflows at its first sample, pointed at the
# directory of the good checkpoint: it stops, and that checkpoint stays.
expect_refusal "a non-finite loss" "the loss is inf" --data "$T/huge" $MODEL --val-fraction 0 \
    --checkpoint-dir "$T/ck" --checkpoint-every 1
grep -q "sample" "$T/e" && grep -q "optimizer step 1 (epoch 1, batch 1)" "$T/e" && grep -q "last good checkpoint is kept" "$T/e" ||
    fail "the message does not name the sample, the step and the checkpoint"
cmp "$T/ck/manifest.json" "$T/manifest.before" || fail "the failed run replaced the last good checkpoint"
"$ENGINE" train $RUN --resume "$T/ck" --save-weights "$T/again.safetensors" >/dev/null || fail "resume after failure"
cmp "$T/straight.safetensors" "$T/again.safetensors" || fail "the kept checkpoint no longer resumes bit-exactly"
echo "ok: the kept checkpoint still resumes bit-exactly"
# 4. Killed (SIGKILL) while checkpointing: at each file of the third save
# (MOELAT_TEST_KILL_BEFORE_RENAME kills the process once that file is
# complete but not yet renamed), and at a moment of the kernel's choosing;
# the directory resumes to bitwise the uninterrupted run's weights.
KRUN="--data $T/carry $MODEL --mode percell --batch-size 8 --lr 3e-3 --quiet"
"$ENGINE" train $KRUN --epochs 2 --save-weights "$T/k2.safetensors" >/dev/null || fail "straight run of 2 epochs"
for f in optimizer-0-3. states-0-3. weights-0-3. config-0-3.; do
    rm -rf "$T/kck"
    MOELAT_TEST_KILL_BEFORE_RENAME=$f "$ENGINE" train $KRUN --epochs 2 --checkpoint-dir "$T/kck" \
        --checkpoint-every 1 >/dev/null 2>&1
    rc=$?
    [ $rc -eq 137 ] || fail "the run was not killed before renaming $f (exit $rc)"
    grep -q '"optimizer_step": 2,' "$T/kck/manifest.json" || fail "killed at $f: the checkpoint is not step 2's"
    "$ENGINE" train $KRUN --epochs 2 --resume "$T/kck" --save-weights "$T/kr.safetensors" >"$T/o" 2>"$T/e" ||
        { cat "$T/e"; fail "resume after a kill at $f"; }
    cmp -s "$T/k2.safetensors" "$T/kr.safetensors" || fail "killed at $f: the resumed weights differ"
    echo "ok: killed before renaming ${f}*: resumed from step 2, bitwise"
done
"$ENGINE" train $KRUN --epochs 50 --stop-after 16 --save-weights "$T/k16.safetensors" >/dev/null ||
    fail "straight run of 16 steps"
rm -rf "$T/kck"
"$ENGINE" train $KRUN --epochs 50 --stop-after 16 --checkpoint-dir "$T/kck" --checkpoint-every 1 >/dev/null 2>&1 &
pid=$!
i=0
until grep -Eq '"optimizer_step": ([3-9]|[1-9][0-9]+),' "$T/kck/manifest.json" 2>/dev/null || [ $i -ge 3000 ]; do
    sleep 0.01
    i=$((i + 1))
done
kill -9 $pid 2>/dev/null
wait $pid
rc=$?
[ $rc -eq 137 ] || fail "the run ended before it was killed (exit $rc)"
at=$(sed -n 's/.*"optimizer_step": \([0-9]*\),.*/\1/p' "$T/kck/manifest.json")
"$ENGINE" train $KRUN --epochs 50 --stop-after 16 --resume "$T/kck" --save-weights "$T/kr.safetensors" \
    >"$T/o" 2>"$T/e" || { cat "$T/e"; fail "resume after kill -9"; }
cmp -s "$T/k16.safetensors" "$T/kr.safetensors" || fail "killed at step $at: the resumed weights differ"
echo "ok: kill -9 during checkpointing (last checkpoint: step $at), resumed to step 16, bitwise"

# 5. The README's training example, as written (its directory moved here).
README=$(dirname "$0")/../README.md
sed -n '/<!-- train-example/,/<!-- \/train-example/p' "$README" | grep -v '<!--' |
    sed -e "s|build/tools/moelat-engine|\"$ENGINE\"|" -e "s|/tmp/moelat-carry|$T/readme|g" >"$T/readme.sh"
grep -q "train --data" "$T/readme.sh" || fail "no training example in the README"
sh "$T/readme.sh" >"$T/readme.out" 2>&1 || { cat "$T/readme.out"; fail "the README's training example failed"; }
tail -1 "$T/readme.out"
[ -s "$T/readme/loss.png" ] || fail "the README's example wrote no loss curve"
echo "ok: the README's training example"
echo "PASS"
