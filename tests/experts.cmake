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
