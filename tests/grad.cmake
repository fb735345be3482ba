# Exact host gradients: finite differences, checkpointing, refusals, the CLI.
moelat_test(test_grad SOURCES test_grad.c test_support.c LABELS grad TIMEOUT 1200)
add_dependencies(test_grad moelat_test_plugin_good moelat_test_diffusion)

# The SDK example expert (plugins/example) built in-tree, with the embedding
# step moelat_add_expert uses, for the finite-difference check of its
# backward. Test-only directory: no scan of the built-in experts sees it.
set(_diffusion_cl ${CMAKE_CURRENT_BINARY_DIR}/diffusion_cl_source.c)
add_custom_command(OUTPUT ${_diffusion_cl}
  COMMAND ${CMAKE_COMMAND} -DMOELAT_EMBED_OUTPUT=${_diffusion_cl} -DMOELAT_EMBED_SYMBOL=diffusion_cl_source
          -DMOELAT_EMBED_FILES=${PROJECT_SOURCE_DIR}/plugins/example/diffusion.cl
          -P ${PROJECT_SOURCE_DIR}/cmake/MoelatAddExpert.cmake
  DEPENDS ${PROJECT_SOURCE_DIR}/plugins/example/diffusion.cl VERBATIM)
set(_diffusion_bwd_cl ${CMAKE_CURRENT_BINARY_DIR}/diffusion_backward_cl_source.c)
set(_ex ${PROJECT_SOURCE_DIR}/plugins/example)
add_custom_command(OUTPUT ${_diffusion_bwd_cl}
  COMMAND ${CMAKE_COMMAND} -DMOELAT_EMBED_OUTPUT=${_diffusion_bwd_cl}
          -DMOELAT_EMBED_SYMBOL=diffusion_backward_cl_source
          "-DMOELAT_EMBED_FILES=${_ex}/diffusion.h|${_ex}/diffusion_backward.c"
          -P ${PROJECT_SOURCE_DIR}/cmake/MoelatAddExpert.cmake
  DEPENDS ${_ex}/diffusion.h ${_ex}/diffusion_backward.c VERBATIM)
add_library(moelat_test_diffusion MODULE ${_ex}/diffusion_expert.c ${_ex}/diffusion_backward.c ${_diffusion_cl}
            ${_diffusion_bwd_cl})
target_include_directories(moelat_test_diffusion PRIVATE ${PROJECT_SOURCE_DIR}/engine/include)
target_link_libraries(moelat_test_diffusion PRIVATE OpenCL::OpenCL m)
target_compile_definitions(moelat_test_diffusion PRIVATE CL_TARGET_OPENCL_VERSION=120)
set_target_properties(moelat_test_diffusion PROPERTIES
  PREFIX "" OUTPUT_NAME moelat_expert_diffusion C_VISIBILITY_PRESET hidden
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/plugins_grad)
find_program(MOELAT_GRAD_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(MOELAT_GRAD_PYTHON3)
  add_test(NAME grad_cli
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/grad_cli.sh $<TARGET_FILE:moelat-engine>
                   ${MOELAT_GRAD_PYTHON3} ${CMAKE_CURRENT_BINARY_DIR}/plugins_mixed/good.so)
  set_tests_properties(grad_cli PROPERTIES LABELS "grad;cli" TIMEOUT 300
                       PASS_REGULAR_EXPRESSION "PASS")
endif()

# The device backward (moelat.backward.cl/1: the same text as OpenCL C in
# float) against the host backward of each built-in expert, the SDK example
# and the gate.
moelat_test(test_backward_cl SOURCES test_backward_cl.c test_support.c LABELS "grad;cl" TIMEOUT 300)
add_dependencies(test_backward_cl moelat_expert_local moelat_expert_functional moelat_expert_distant
                 moelat_test_diffusion)

# The batched backward on the OpenCL device against the host backward.
moelat_test(test_grad_device SOURCES test_grad_device.c test_support.c LABELS grad TIMEOUT 900)
add_dependencies(test_grad_device moelat_test_diffusion)

# oclgrind (API use, out-of-bounds accesses, data races) on the backward
# kernels: one gradient step of 6x5x4 with every band populated, in three
# chunks of 7 rows (ending mid-plane) and 3 slots (so slots take several cells each).
# The functional band's own band kernel (cl_shape=gpu, opt-in) is not run
# here: with the GPU-shaped forward it took over 900 s in the sanitizer build.
find_program(OCLGRIND_EXE oclgrind)
if(OCLGRIND_EXE)
  set(_grad_og_script [=[
tmp=$(mktemp -d)
"$1" run --preset debug --dims 6x5x4 --radius-ratio 0.9 --steps 1 --mode percell --quiet --save-state "$tmp/t.npy" >/dev/null || exit 1
MOELAT_NO_KERNEL_CACHE=1 "$0" --log "$tmp/log" --check-api --data-races "$1" grad --preset debug --dims 6x5x4 \
    --radius-ratio 0.9 --steps 1 --threads 1 --target "$tmp/t.npy" --tune grad_rows=7,grad_slots=3
rc=$?
if [ -s "$tmp/log" ]; then echo "oclgrind reported problems:"; head -60 "$tmp/log"; rc=1; fi
rm -rf "$tmp"
exit $rc
]=])
  add_test(NAME grad_oclgrind
           COMMAND sh -c "${_grad_og_script}" ${OCLGRIND_EXE} $<TARGET_FILE:moelat-engine>)
  set_tests_properties(grad_oclgrind PROPERTIES LABELS "grad;oclgrind" TIMEOUT 900
    PASS_REGULAR_EXPRESSION "backward: device")

  # The same kernels with slots of 4 lanes (the GPU shape: every band and
  # the gate run one cell on a work-group, backward_math.h's lanes), under
  # oclgrind's race checks, and their gradients against the host's
  # (tools/bench/grad_compare.py, 1e-4 per tensor). PoCL's CPU devices
  # compute wrong gradients with lanes, oclgrind and GPUs do not: this is
  # where CI checks them.
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_Interpreter_FOUND)
    set(_grad_og_lanes_script [=[
tmp=$(mktemp -d)
A="--preset debug --dims 6x5x4 --radius-ratio 0.9 --steps 1 --threads 1 --target $tmp/t.npy"
"$1" run --preset debug --dims 6x5x4 --radius-ratio 0.9 --steps 1 --seed 11 --mode percell --quiet --save-state "$tmp/t.npy" >/dev/null || exit 1
"$1" grad $A --mode percell --save-grads "$tmp/g_percell.safetensors" --save-state-grad "$tmp/s_percell.npy" \
    --save-input-grad "$tmp/e_percell.npy" >/dev/null || exit 1
MOELAT_NO_KERNEL_CACHE=1 "$0" --log "$tmp/log" --check-api --data-races "$1" grad $A \
    --tune grad_rows=7,grad_slots=3,grad_lanes=4 --save-grads "$tmp/g_batch.safetensors" \
    --save-state-grad "$tmp/s_batch.npy" --save-input-grad "$tmp/e_batch.npy" || exit 1
rc=0
if [ -s "$tmp/log" ]; then echo "oclgrind reported problems:"; head -60 "$tmp/log"; rc=1; fi
"$2" "$3" "$tmp" || rc=1
rm -rf "$tmp"
exit $rc
]=])
    add_test(NAME grad_oclgrind_lanes
             COMMAND sh -c "${_grad_og_lanes_script}" ${OCLGRIND_EXE} $<TARGET_FILE:moelat-engine>
                     ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tools/bench/grad_compare.py)
    set_tests_properties(grad_oclgrind_lanes PROPERTIES LABELS "grad;oclgrind" TIMEOUT 900
      PASS_REGULAR_EXPRESSION "4 lanes: local functional distant gate.*gradients agree"
      FAIL_REGULAR_EXPRESSION "oclgrind reported problems|DISAGREE")
  endif()
endif()

# A recording against later changes of its lattice (input, weights, other
# recordings; checkpoints every 1, 2, T; host and device), the engine built
# once for a training loop, and a recording that outlives its lattice.
moelat_test(test_grad_tape SOURCES test_grad_tape.c test_support.c LABELS grad TIMEOUT 600)
