# The built-in expert plugins (experts/): descriptors, tensor layouts and
# parameter counts, host function against the golden files, and the OpenCL
# path against the host function (chunked and whole-lattice) on PoCL.
moelat_test(test_experts SOURCES test_experts.c test_support.c LIBS ${CMAKE_DL_LIBS} PkgConfig::JANSSON m
            LABELS experts TIMEOUT 300)
target_compile_definitions(test_experts PRIVATE
  MOELAT_EXPERTS_DIR="${MOELAT_EXPERTS_BUILD_DIR}"
  MOELAT_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
  CL_TARGET_OPENCL_VERSION=120)
add_dependencies(test_experts moelat_expert_local moelat_expert_functional moelat_expert_distant)
# The same on PoCL with the work-group kernels (the GPU default; PoCL's CPU
# device runs the CPU-shaped ones unless the tuning says cl_shape=gpu: the
# test passes MOELAT_TEST_TUNING as moelat_cl_setup.tuning).
add_test(NAME test_experts_gpu_shape COMMAND test_experts)
set_tests_properties(test_experts_gpu_shape PROPERTIES LABELS experts TIMEOUT 300
  ENVIRONMENT "MOELAT_TEST_TUNING=cl_shape=gpu;XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache;POCL_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/pocl-cache")

# The expert kernels under oclgrind (API use, out-of-bounds, data races,
# uninitialised reads) on a 4x4x3 lattice in two chunks, one process per
# test. Two workarounds for oclgrind 21.10's --uninitialized plugin:
#  - -O0: on some optimised kernels (a private array filled from a global
#    address computed with a product of two runtime ints) the plugin itself
#    segfaults;
#  - one process per test: once a buffer written by one kernel is released
#    and a new one takes its place in the same context, the plugin reports
#    the new buffer's (written, correct) contents as uninitialised.
find_program(OCLGRIND_EXE oclgrind)
if(OCLGRIND_EXE)
  set(_og_script [=[
rc=0
for t in test_cl_errors test_cl_local test_cl_functional_euler test_cl_functional_lipschitz test_cl_distant_euler test_cl_distant_lipschitz; do
  log=$(mktemp)
  MOELAT_EXPERTS_FILTER=$t "$0" --log "$log" --build-options -O0 --check-api --data-races --uninitialized "$1" || rc=1
  if [ -s "$log" ]; then echo "oclgrind reported ($t):"; head -60 "$log"; rc=1; fi
  rm -f "$log"
done
exit $rc
]=])
  add_test(NAME test_experts_oclgrind
           COMMAND sh -c "${_og_script}" ${OCLGRIND_EXE} $<TARGET_FILE:test_experts>)
  set_tests_properties(test_experts_oclgrind PROPERTIES LABELS "experts;oclgrind" TIMEOUT 300
    ENVIRONMENT "MOELAT_EXPERTS_SMALL=1;POCL_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/pocl-cache")
endif()

# Every expert against the host (debug 9x8x7, then experiment 11x10x9,
# whose chunks are not multiples of 3 cells) with the tuning string
# `tune` ("key=value,...", --tune; the experts get it as
# moelat_cl_setup.tuning); `expect` must appear in the log before both
# checks pass, showing the setting took effect. The work-group kernels
# these knobs tune are forced by MOELAT_CL_SHAPE=gpu, which the CLI turns
# into the tuning key cl_shape=gpu (PoCL's CPU device would run the
# CPU-shaped ones).
function(moelat_expert_variant_test name tune expect)
  add_test(NAME ${name}
           COMMAND sh -c "$0 check --preset debug --dims 9x8x7 --steps 2 --experts --tune $1 && $0 check --preset experiment --dims 11x10x9 --steps 1 --experts --tune $1"
                   $<TARGET_FILE:moelat-engine> ${tune})
  set_tests_properties(${name} PROPERTIES LABELS experts TIMEOUT 600
    PASS_REGULAR_EXPRESSION "${expect}.*check passed.*check passed"
    ENVIRONMENT "MOELAT_CL_SHAPE=gpu;MOELAT_LOG=info;XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache")
endfunction()

# Several chunk cells per work-group (the tuning knob; by default the
# kernel chooses from S and the device's local memory).
moelat_expert_variant_test(functional_cells functional_cells=3 "3 chunk cells per work-group \\(functional_cells\\)")
# The functional expert in two kernels (edges, then tails) at both
# presets, and fused in one at both (by default it splits up to S = 64:
# both; fused above, as at the optimized preset).
moelat_expert_variant_test(functional_split functional_split=on "edges and tails in two kernels \\(functional_split\\)")
moelat_expert_variant_test(functional_fused functional_split=0 "functional: one kernel \\(functional_split\\)")
# Four cells side by side per functional_edges work-group (a build option)
# with the masked lane index it needs (on NVIDIA by default; forced here)
# at experiment 11x10x9 (990 cells: the last group has a tail).
add_test(NAME functional_edge_cells
         COMMAND $<TARGET_FILE:moelat-engine> check --preset experiment --dims 11x10x9 --steps 1 --experts)
set_tests_properties(functional_edge_cells PROPERTIES LABELS experts TIMEOUT 600
  PASS_REGULAR_EXPRESSION "functional_edges: 4 chunk cells per work-group.*check passed"
  ENVIRONMENT "MOELAT_CL_SHAPE=gpu;MOELAT_CL_OPTIONS=-DML_LANE_MASK=1 -DFN_EDGE_CELLS=4;MOELAT_LOG=info;XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache")
# The functional edge walk's tensor-core form (functional_mma.cl, on NVIDIA
# sm_80+ by default) with its warp votes, shuffles and mma emulated in
# local memory: its fragment layouts and 3xTF32 split on any device, at
# experiment 11x10x9 (hd 32, md 16) in two kernels and fused (four cells
# per group). The optimized preset's shapes (hd 64, md 32) took PoCL over
# 15 minutes to build and run emulated; the H200's checks cover them.
add_test(NAME functional_mma_emulated
         COMMAND sh -c "$0 check --preset experiment --dims 11x10x9 --steps 1 --experts && $0 check --preset experiment --dims 11x10x9 --steps 1 --experts --tune functional_split=0"
                 $<TARGET_FILE:moelat-engine>)
set_tests_properties(functional_mma_emulated PROPERTIES LABELS experts TIMEOUT 900
  PASS_REGULAR_EXPRESSION "edge walk on tensor cores.*check passed.*one kernel.*edge walk on tensor cores.*check passed"
  ENVIRONMENT "MOELAT_CL_SHAPE=gpu;MOELAT_CL_OPTIONS=-DFN_MMA=1 -DFN_MMA_EMULATE=1;MOELAT_LOG=info;XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache")
# The projections through CLBlast's SGEMM (the default on GPUs only).
moelat_expert_variant_test(functional_clblast functional_gemm=clblast "projections: CLBlast SGEMM")
# Two cells per distant work-group (its knob; by default 4 at S >= 48,
# which the experiment preset runs everywhere, and 1 below).
moelat_expert_variant_test(distant_cells "distant_cells=2" "2 chunk cells per work-group \\(distant_cells\\)")
# Cells per local work-group: two by the knob at debug, then the default 4
# at experiment with a radius that populates the local band (990 cells:
# the last group has a tail).
add_test(NAME local_cells
         COMMAND sh -c "$0 check --preset debug --dims 9x8x7 --steps 2 --experts --tune local_cells=2 && $0 check --preset experiment --dims 11x10x9 --radius-ratio 0.5 --steps 1 --experts"
                 $<TARGET_FILE:moelat-engine>)
set_tests_properties(local_cells PROPERTIES LABELS experts TIMEOUT 600
  PASS_REGULAR_EXPRESSION "local_expert: 2 chunk cells per work-group \\(local_cells\\).*check passed.*local_expert: 4 chunk cells per work-group.*check passed"
  ENVIRONMENT "MOELAT_CL_SHAPE=gpu;MOELAT_LOG=info;XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache")

# The gate for 1 and 2 cells per work-group (MOELAT_GATE_CELLS) at debug
# 9x7x7 (441 cells: the last group has a tail), and its default 4 at
# experiment (990 cells): every stage against the host.
add_test(NAME gate_cells
         COMMAND sh -c "MOELAT_GATE_CELLS=1 $0 check --preset debug --dims 9x7x7 --steps 2 --experts && MOELAT_GATE_CELLS=2 $0 check --preset debug --dims 9x7x7 --steps 2 --experts && $0 check --preset experiment --dims 11x10x9 --steps 1 --experts"
                 $<TARGET_FILE:moelat-engine>)
set_tests_properties(gate_cells PROPERTIES LABELS experts TIMEOUT 600
  PASS_REGULAR_EXPRESSION "gate: 1 cell per work-group.*check passed.*gate: 2 cells per work-group.*check passed.*gate: 4 cells per work-group.*check passed"
  ENVIRONMENT "MOELAT_CL_SHAPE=gpu;MOELAT_LOG=info;XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache")

# Aggregation with one and with sixteen state values per work-item
# (MOELAT_AGG_VECTOR; four by default, which every other test runs):
# aggregates, experts and the gate against the host.
add_test(NAME aggregate_vectors
         COMMAND sh -c "MOELAT_AGG_VECTOR=1 $0 check --preset debug --dims 9x8x7 --steps 1 --experts && MOELAT_AGG_VECTOR=16 $0 check --preset experiment --dims 11x10x9 --steps 1 --experts"
                 $<TARGET_FILE:moelat-engine>)
set_tests_properties(aggregate_vectors PROPERTIES LABELS experts TIMEOUT 600
  PASS_REGULAR_EXPRESSION "1 state value per work-item.*gate and update on chunk 0.*check passed.*16 state values per work-item.*gate and update on chunk 0.*check passed"
  ENVIRONMENT "MOELAT_CL_SHAPE=gpu;MOELAT_LOG=info;XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache")
