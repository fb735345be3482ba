#!/bin/sh
# moelat-engine's tuning: --tune, the config's "tuning" and the MOELAT_*
# tuning variables merge into one string (--tune over the file over the
# environment); a bad key or value fails before anything runs, naming it;
# MOELAT_NO_UPGRADE_CHECK and MOELAT_NO_KERNEL_CACHE read 0/1/on/off the
# same way as their keys.
# usage: cli_tune.sh ENGINE
set -u
engine=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
seed=${MOELAT_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "cli_tune: seed $seed (MOELAT_TEST_SEED=$seed redoes it)"
model="--preset debug --dims 9x8x7 --seed $seed --steps 1 --threads 1 --quiet"
fail() { echo "cli_tune: FAIL: $*"; exit 1; }
unset MOELAT_AGG_VECTOR MOELAT_AGG_ABSMEAN MOELAT_WORK_GROUP MOELAT_GATE_CELLS MOELAT_CL_OPTIONS \
      MOELAT_NO_KERNEL_CACHE MOELAT_NO_UPGRADE_CHECK MOELAT_FUNCTIONAL_GEMM MOELAT_FUNCTIONAL_CELLS \
      MOELAT_FUNCTIONAL_SPLIT MOELAT_DISTANT_CELLS MOELAT_LOCAL_CELLS MOELAT_CL_SHAPE \
      MOELAT_GRAD_DEVICE MOELAT_GRAD_SLOTS MOELAT_GRAD_ROWS MOELAT_GRAD_HOST_CHUNK

# expect_fail WHAT FRAGMENT CMD...: CMD exits non-zero, its stderr names FRAGMENT.
expect_fail() {
    what=$1 frag=$2
    shift 2
    if "$@" >"$tmp/out" 2>"$tmp/err"; then fail "$what: accepted"; fi
    grep -qF -- "$frag" "$tmp/err" || fail "$what: stderr lacks '$frag': $(cat "$tmp/err")"
}

for cmd in run check bench; do
    args=$model
    [ "$cmd" = check ] && args="--preset debug --dims 9x8x7 --steps 1"
    [ "$cmd" = bench ] && args="--cases debug:9x8x7 --steps 1 --percell-cells 0"
    expect_fail "$cmd --tune bogus" "unknown key 'bogus'" "$engine" $cmd $args --tune bogus=1
    grep -qF "local_cells" "$tmp/err" || fail "$cmd: the known keys are not listed"
done
expect_fail "bad --tune value" "gate_cells=3" "$engine" run $model --tune gate_cells=3
expect_fail "bad environment value" "gate_cells=3" env MOELAT_GATE_CELLS=3 "$engine" run $model
expect_fail "bad shape" "cl_shape=tpu: expected 'gpu' or 'cpu'" env MOELAT_CL_SHAPE=tpu "$engine" run $model
expect_fail "bad --tune shape" "cl_shape=TPU" "$engine" run $model --tune cl_shape=TPU
expect_fail "bad switch" "MOELAT_NO_KERNEL_CACHE=maybe" env MOELAT_NO_KERNEL_CACHE=maybe "$engine" run $model
# --tune and the config file win over the environment: its bad value is not read.
env MOELAT_GATE_CELLS=3 "$engine" run $model --tune gate_cells=2 >/dev/null 2>"$tmp/err" ||
    fail "--tune did not win over MOELAT_GATE_CELLS: $(cat "$tmp/err")"
echo '{"tuning": "gate_cells=1,agg_absmean=all"}' >"$tmp/c.json"
env MOELAT_GATE_CELLS=3 "$engine" run $model --config "$tmp/c.json" >/dev/null 2>"$tmp/err" ||
    fail "the config's tuning did not win over MOELAT_GATE_CELLS: $(cat "$tmp/err")"
echo '{"tuning": "gate_cells=9"}' >"$tmp/bad.json"
expect_fail "bad config tuning" "gate_cells=9" "$engine" run $model --config "$tmp/bad.json"

# A tuning variable is one value, its own key's: a comma in it never starts
# another key, and its errors name the variable.
MOELAT_CL_OPTIONS='-DX=1,upgrade_check=off' MOELAT_LOG=warn "$engine" run $model --mode batch \
    >/dev/null 2>"$tmp/err" || fail "MOELAT_CL_OPTIONS with a comma: $(cat "$tmp/err")"
grep -q "upgrade_check=off" "$tmp/err" && fail "a comma in MOELAT_CL_OPTIONS turned the upgrade check off"
MOELAT_CL_OPTIONS='-DA=1,-DB=2' "$engine" run $model --mode batch >/dev/null 2>"$tmp/err" ||
    fail "MOELAT_CL_OPTIONS='-DA=1,-DB=2' was not taken as one value: $(cat "$tmp/err")"
expect_fail "comma in a switch variable" "MOELAT_GATE_CELLS=2,upgrade_check=off" \
    env MOELAT_GATE_CELLS=2,upgrade_check=off "$engine" run $model
expect_fail "bad environment value names its variable" "MOELAT_GATE_CELLS=3" env MOELAT_GATE_CELLS=3 "$engine" run $model
long=$(head -c 300 /dev/zero | tr '\0' 'x')
expect_fail "cl_options over 255 bytes" "MOELAT_CL_OPTIONS=-Dxxxx" env MOELAT_CL_OPTIONS="-D$long" "$engine" run $model
grep -qF "at most 255 characters" "$tmp/err" || fail "the cl_options limit is not given: $(cat "$tmp/err")"
expect_fail "over-long variable" "MOELAT_CL_OPTIONS: its value (602 bytes) exceeds" \
    env MOELAT_CL_OPTIONS="-D$long$long" "$engine" run $model
# Over the string's 511 bytes with --tune: the message names the variables merged.
mid=$(head -c 240 /dev/zero | tr '\0' 'y')
many=$(for i in 1 2 3 4 5 6 7 8 9 10 11 12; do printf 'functional_gemm=kernel,'; done)
expect_fail "environment and --tune together too long" "the tuning of MOELAT_CL_OPTIONS, the config and --tune exceeds 511 bytes" \
    env MOELAT_CL_OPTIONS="-D$mid" "$engine" run $model --tune "${many}gate_cells=2"
# A --tune or config value escapes its commas itself.
"$engine" run $model --mode batch --tune 'cl_options=-DX=1\,upgrade_check=off' >/dev/null 2>"$tmp/err" ||
    fail "--tune with an escaped comma: $(cat "$tmp/err")"

# upgrade_check: MOELAT_NO_UPGRADE_CHECK=1 and --tune upgrade_check=off skip
# the sample check (a warning says so); =0 and on keep it.
for case in "1 -" "on -" "0 keep" "off keep"; do
    v=${case% *} want=${case#* }
    MOELAT_NO_UPGRADE_CHECK=$v MOELAT_LOG=warn "$engine" run $model --mode batch >/dev/null 2>"$tmp/err" ||
        fail "MOELAT_NO_UPGRADE_CHECK=$v: $(cat "$tmp/err")"
    if grep -q "upgrade_check=off" "$tmp/err"; then got=-; else got=keep; fi
    [ "$got" = "$want" ] || fail "MOELAT_NO_UPGRADE_CHECK=$v: check skipped '$got', expected '$want'"
done
MOELAT_LOG=warn "$engine" run $model --mode batch --tune upgrade_check=0 >/dev/null 2>"$tmp/err" || fail "upgrade_check=0"
grep -q "upgrade_check=off" "$tmp/err" || fail "--tune upgrade_check=0 did not skip the check"

# kernel_cache: with it off nothing is written to the cache directory.
mkdir "$tmp/cache"
XDG_CACHE_HOME=$tmp/cache MOELAT_NO_KERNEL_CACHE=1 "$engine" run $model --mode batch --tune upgrade_check=off \
    >/dev/null 2>&1 || fail "kernel_cache=off run"
[ -z "$(ls -A "$tmp/cache")" ] || fail "MOELAT_NO_KERNEL_CACHE=1 still wrote $(ls -R "$tmp/cache")"
XDG_CACHE_HOME=$tmp/cache MOELAT_NO_KERNEL_CACHE=0 "$engine" run $model --mode batch --tune upgrade_check=off \
    >/dev/null 2>&1 || fail "kernel_cache=on run"
[ -n "$(ls -A "$tmp/cache/moelat" 2>/dev/null)" ] || fail "MOELAT_NO_KERNEL_CACHE=0 wrote no cache entry"
echo "cli_tune: ok"
