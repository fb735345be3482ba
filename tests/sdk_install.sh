#!/bin/sh
# The plugin SDK as an author meets it: install the build into a fresh
# prefix, build the plugins of plugins/ as separate CMake projects against
# that prefix only, and drive the INSTALLED moelat-engine with them.
#
# usage: sdk_install.sh SOURCE_DIR BUILD_DIR WORK_DIR C_COMPILER GENERATOR [CONFIG]
set -eu

SRC=$1
BUILD=$2
WORK=$3
CC_BIN=$4
GEN=$5
CONFIG=${6:-}
CMAKE=${CMAKE:-cmake} # ctest passes the cmake that configured the build
APP_FLAGS=${MOELAT_SDK_APP_FLAGS:-} # e.g. sanitizers the installed library needs

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
step() { echo "== $*"; }

rm -rf "$WORK"
mkdir -p "$WORK"
PREFIX=$WORK/prefix
# Nothing from the caller's environment may point the engine at plugins or
# caches: the installed tree must stand on its own.
unset MOELAT_PLUGIN_PATH MOELAT_LOG
export XDG_CACHE_HOME="$WORK/cache"
export POCL_CACHE_DIR="$WORK/pocl-cache"

step "install into $PREFIX"
if [ -n "$CONFIG" ]; then
    "$CMAKE" --install "$BUILD" --prefix "$PREFIX" --config "$CONFIG" >"$WORK/install.log"
else
    "$CMAKE" --install "$BUILD" --prefix "$PREFIX" >"$WORK/install.log"
fi
for f in bin/moelat-engine include/moelat/moelat.h include/moelat/expert_abi.h \
    share/moelat/kernels_cl/moelat_helpers.cl share/moelat/plugins/template/CMakeLists.txt; do
    [ -f "$PREFIX/$f" ] || fail "$f not installed"
done
LIBDIR=$(dirname "$(find "$PREFIX" -name 'libmoelat.so.*.*' | head -n 1)")
[ -d "$LIBDIR" ] || fail "libmoelat not installed"
[ -L "$LIBDIR/libmoelat.so" ] || fail "no libmoelat.so link in $LIBDIR"
[ -f "$LIBDIR/cmake/moelat/moelatConfig.cmake" ] || fail "no CMake package in $LIBDIR/cmake/moelat"
[ -f "$LIBDIR/pkgconfig/moelat.pc" ] || fail "no moelat.pc in $LIBDIR/pkgconfig"
ENGINE=$PREFIX/bin/moelat-engine

step "the installed engine runs with no LD_LIBRARY_PATH and finds its own experts"
env -u LD_LIBRARY_PATH "$ENGINE" plugins >"$WORK/builtin.txt" 2>"$WORK/builtin.err" ||
    fail "installed moelat-engine plugins failed: $(cat "$WORK/builtin.err")"
cat "$WORK/builtin.txt"
for e in local functional distant; do
    grep -q "^$e .*$LIBDIR/moelat/experts/moelat_expert_$e.so" "$WORK/builtin.txt" ||
        fail "built-in expert $e not listed from $LIBDIR/moelat/experts"
done
[ ! -s "$WORK/builtin.err" ] || fail "plugin errors: $(cat "$WORK/builtin.err")"

# Each plugin project is configured against the prefix alone.
build_plugin() { # name source_dir
    step "build $1 out of tree"
    "$CMAKE" -S "$2" -B "$WORK/build-$1" -G "$GEN" -DCMAKE_C_COMPILER="$CC_BIN" \
        -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release >"$WORK/build-$1.log" 2>&1 ||
        { cat "$WORK/build-$1.log"; fail "configuring $1"; }
    "$CMAKE" --build "$WORK/build-$1" >>"$WORK/build-$1.log" 2>&1 ||
        { cat "$WORK/build-$1.log"; fail "building $1"; }
    if grep -q "warning:" "$WORK/build-$1.log"; then
        cat "$WORK/build-$1.log"
        fail "$1 builds with warnings"
    fi
}
build_plugin example "$SRC/plugins/example"
build_plugin hostonly "$SRC/plugins/hostonly"
# The template as an author gets it: the copy inside the prefix.
build_plugin template "$PREFIX/share/moelat/plugins/template"
EX=$WORK/build-example/experts
HO=$WORK/build-hostonly/experts
TP=$WORK/build-template/experts

step "only the entry symbol is exported"
for so in "$EX/moelat_expert_diffusion.so" "$HO/moelat_expert_diffusion_host.so" \
    "$TP/moelat_expert_my_expert.so"; do
    [ -f "$so" ] || fail "$so not built"
    if command -v nm >/dev/null 2>&1; then
        syms=$(nm -D --defined-only "$so" | awk '$2 == "T" || $2 == "D" || $2 == "R" {print $3}')
        [ "$syms" = "moelat_expert_entry" ] || fail "$so exports: $syms"
    fi
    "$ENGINE" plugins --check "$so" || fail "plugins --check $so"
done

step "plugins --plugin-path lists diffusion with its OpenCL path"
"$ENGINE" plugins --plugin-path "$EX" >"$WORK/list.txt"
cat "$WORK/list.txt"
grep -q "^diffusion .* yes .*$EX/moelat_expert_diffusion.so" "$WORK/list.txt" ||
    fail "diffusion not listed with an OpenCL path"

step "run with diffusion on the local band"
"$ENGINE" run --expert local=diffusion --plugin-path "$EX" --dims 9x8x7 --steps 2 --quiet ||
    fail "run --expert local=diffusion"

step "grad with diffusion on the local band (its host backward)"
"$ENGINE" run --expert local=diffusion --plugin-path "$EX" --dims 9x8x7 --steps 1 --quiet \
    --save-state "$WORK/grad-target.npy" >/dev/null || fail "run --save-state for grad"
"$ENGINE" grad --expert local=diffusion --plugin-path "$EX" --dims 9x8x7 --steps 2 \
    --target "$WORK/grad-target.npy" --save-grads "$WORK/grad.safetensors" --json >"$WORK/grad.json" ||
    fail "grad --expert local=diffusion"
grep -q '"loss"' "$WORK/grad.json" || fail "grad printed no loss"
grep -q 'local_expert.diffusion.weight' "$WORK/grad.safetensors" || fail "no dL/dD in the gradients"

step "check: diffusion on the distant band, batch vs per-cell, each expert first"
"$ENGINE" check --experts --expert distant=diffusion --plugin-path "$EX" --dims 9x8x7 \
    --steps 2 >"$WORK/check-diffusion.txt" 2>"$WORK/check-diffusion.err" ||
    { cat "$WORK/check-diffusion.txt" "$WORK/check-diffusion.err"; fail "check with diffusion"; }
cat "$WORK/check-diffusion.txt"
grep -q "expert diffusion .*(distant).* ok" "$WORK/check-diffusion.txt" ||
    fail "check did not compare diffusion on its own"
if grep -q "falling back" "$WORK/check-diffusion.err"; then
    cat "$WORK/check-diffusion.err"
    fail "diffusion fell back to the host"
fi

step "check: the template on the local band with a configured hidden size"
echo '{"hidden": {"my_hidden": 5}}' >"$WORK/hidden.json"
"$ENGINE" check --experts --config "$WORK/hidden.json" --expert local=my_expert \
    --plugin-path "$TP" --dims 9x8x7 --steps 2 >"$WORK/check-template.txt" 2>&1 ||
    { cat "$WORK/check-template.txt"; fail "check with my_expert"; }
"$ENGINE" run --config "$WORK/hidden.json" --expert local=my_expert --plugin-path "$TP" \
    --dims 9x8x7 --steps 1 --quiet --save-weights "$WORK/template.safetensors" >/dev/null ||
    fail "run with my_expert"
# safetensors: 8-byte header length, then the JSON header naming each tensor.
grep -a -q '"local_expert.in_proj.weight": *{[^}]*"shape": *\[ *5, *24 *\]' \
    "$WORK/template.safetensors" || fail "my_hidden = 5 did not reach the tensor shapes"

step "check: host-only diffusion_host on the functional band"
"$ENGINE" check --expert functional=diffusion_host --plugin-path "$HO" --dims 9x8x7 \
    --steps 2 >"$WORK/check-host.txt" 2>"$WORK/check-host.err" ||
    { cat "$WORK/check-host.txt" "$WORK/check-host.err"; fail "check with diffusion_host"; }
cat "$WORK/check-host.txt" "$WORK/check-host.err"
grep -q "expert 'diffusion_host' has no OpenCL path: band functional runs on the host" \
    "$WORK/check-host.err" || fail "no fallback reason naming diffusion_host"

step "run --mode batch --json reports the host band"
"$ENGINE" run --mode batch --json --expert functional=diffusion_host --plugin-path "$HO" \
    --dims 9x8x7 --steps 2 >"$WORK/run-host.json" 2>/dev/null || fail "run --json with diffusion_host"
for pattern in '"mode": "batch"' '"name": "diffusion_host"' \
    "expert 'diffusion_host' has no OpenCL path"; do
    grep -q "$pattern" "$WORK/run-host.json" || { cat "$WORK/run-host.json"; fail "run --json lacks $pattern"; }
done

step "an application against the package: pkg-config and find_package(moelat)"
PKG_CONFIG_PATH=$LIBDIR/pkgconfig
export PKG_CONFIG_PATH
pcver=$(pkg-config --modversion moelat) || fail "pkg-config cannot read moelat.pc"
# shellcheck disable=SC2046 # the flags are words
"$CC_BIN" -std=c11 $APP_FLAGS -o "$WORK/consumer-pc" "$SRC/tests/test_sdk_consumer.c" \
    $(pkg-config --cflags --libs moelat) -lm -Wl,-rpath,"$LIBDIR" || fail "compiling with pkg-config"
out=$("$WORK/consumer-pc" "$EX") || fail "consumer (pkg-config) failed"
echo "$out"
[ "$(echo "$out" | head -n 1)" = "$pcver" ] || fail "moelat.pc says $pcver, the header $(echo "$out" | head -n 1)"
mkdir -p "$WORK/consumer"
cat >"$WORK/consumer/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.20)
project(moelat_consumer LANGUAGES C)
find_package(moelat $pcver EXACT REQUIRED)
add_executable(consumer "$SRC/tests/test_sdk_consumer.c")
target_link_libraries(consumer PRIVATE moelat::moelat m)
EOF
"$CMAKE" -S "$WORK/consumer" -B "$WORK/build-consumer" -G "$GEN" -DCMAKE_C_COMPILER="$CC_BIN" \
    -DCMAKE_C_FLAGS="$APP_FLAGS" -DCMAKE_PREFIX_PATH="$PREFIX" >"$WORK/build-consumer.log" 2>&1 &&
    "$CMAKE" --build "$WORK/build-consumer" >>"$WORK/build-consumer.log" 2>&1 ||
    { cat "$WORK/build-consumer.log"; fail "building the find_package consumer"; }
"$WORK/build-consumer/consumer" "$EX" || fail "consumer (find_package) failed"

step "a plugin project installs beside the built-in experts"
"$CMAKE" --install "$WORK/build-hostonly" >/dev/null || fail "installing diffusion_host"
"$ENGINE" plugins >"$WORK/list-installed.txt" 2>&1
grep -q "^diffusion_host .*$LIBDIR/moelat/experts/" "$WORK/list-installed.txt" ||
    { cat "$WORK/list-installed.txt"; fail "installed diffusion_host not found"; }

step "the prefix still works after being moved"
mv "$PREFIX" "$WORK/moved"
"$WORK/moved/bin/moelat-engine" plugins >"$WORK/list-moved.txt" 2>&1 ||
    { cat "$WORK/list-moved.txt"; fail "moved engine"; }
n=$(grep -c "$WORK/moved/.*/moelat/experts/" "$WORK/list-moved.txt" || true)
[ "$n" -eq 4 ] || { cat "$WORK/list-moved.txt"; fail "moved engine lists $n experts from the moved prefix, want 4"; }
mv "$WORK/moved" "$PREFIX"

echo "sdk: all checks passed"
