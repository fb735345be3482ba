# The built-in expert plugins (experts/): descriptors, tensor layouts and
# parameter counts, host function against the golden files, and the OpenCL
# path against the host function (chunked and whole-lattice) on PoCL.
moelat_test(test_experts SOURCES test_experts.c LIBS ${CMAKE_DL_LIBS} PkgConfig::JANSSON m
            LABELS experts TIMEOUT 300)
target_compile_definitions(test_experts PRIVATE
  MOELAT_EXPERTS_DIR="${MOELAT_EXPERTS_BUILD_DIR}"
  MOELAT_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
  CL_TARGET_OPENCL_VERSION=120)
add_dependencies(test_experts moelat_expert_local moelat_expert_functional moelat_expert_distant)

# The expert kernels under oclgrind (API use, out-of-bounds, data races,
# uninitialised reads) on a 4x4x3 lattice in two chunks. -O0: oclgrind
# 21.10's --uninitialized plugin segfaults on some optimised kernels (a
# private array filled from a global address computed with a product of
# two runtime ints), a crash of the tool, not a report.
find_program(OCLGRIND_EXE oclgrind)
if(OCLGRIND_EXE)
  add_test(NAME test_experts_oclgrind
           COMMAND sh -c "log=$(mktemp); \"$0\" --log \"$log\" --build-options -O0 --check-api --data-races --uninitialized \"$1\"; rc=$?; if [ -s \"$log\" ]; then echo 'oclgrind reported:'; head -60 \"$log\"; rc=1; fi; rm -f \"$log\"; exit $rc"
                   ${OCLGRIND_EXE} $<TARGET_FILE:test_experts>)
  set_tests_properties(test_experts_oclgrind PROPERTIES LABELS "experts;oclgrind" TIMEOUT 300
    ENVIRONMENT "MOELAT_EXPERTS_SMALL=1;MOELAT_EXPERTS_FILTER=test_cl_*;POCL_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/pocl-cache")
endif()
