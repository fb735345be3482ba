# libFuzzer targets for the readers of untrusted input (config JSON,
# safetensors, .npy, the checkpoint manifest). They compile the reader sources themselves, so that
# exactly that code carries the fuzzer's coverage and the sanitizers.
#   cmake -DCMAKE_C_COMPILER=clang -DMOELAT_FUZZ=ON ...
#   ./tests/fuzz_npy -max_total_time=60 <corpus copy> <seeds>/npy
# Each target also gets a ctest that replays its seed corpus once.
option(MOELAT_FUZZ "Build the libFuzzer targets (needs clang)" OFF)

if(MOELAT_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(WARNING "MOELAT_FUZZ needs clang (configure with -DCMAKE_C_COMPILER=clang); "
                    "the fuzz targets are not built")
  else()
    set(MOELAT_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
    set(MOELAT_FUZZ_ENGINE ${CMAKE_CURRENT_LIST_DIR}/../../engine)
    set(MOELAT_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
                          -fno-omit-frame-pointer)

    function(moelat_fuzzer name corpus)
      set(srcs ${MOELAT_FUZZ_DIR}/${name}.c)
      foreach(s ${ARGN})
        list(APPEND srcs ${MOELAT_FUZZ_ENGINE}/src/${s})
      endforeach()
      add_executable(${name} ${srcs})
      target_include_directories(${name} PRIVATE ${MOELAT_FUZZ_ENGINE}/src
                                                 ${MOELAT_FUZZ_ENGINE}/include)
      target_compile_options(${name} PRIVATE ${MOELAT_FUZZ_FLAGS})
      target_link_options(${name} PRIVATE ${MOELAT_FUZZ_FLAGS})
      target_link_libraries(${name} PRIVATE PkgConfig::JANSSON m)
      add_test(NAME ${name}_corpus
               COMMAND ${name} -runs=0 ${MOELAT_FUZZ_DIR}/corpus/${corpus})
      set_tests_properties(${name}_corpus PROPERTIES LABELS "io;fuzz" TIMEOUT 120)
    endfunction()

    moelat_fuzzer(fuzz_config config core/config.c core/tuning.c core/abi.c base/file_util.c)
    moelat_fuzzer(fuzz_safetensors safetensors io/safetensors.c base/atomic_file.c base/environment.c
                   base/file_util.c)
    moelat_fuzzer(fuzz_npy npy io/npy.c base/atomic_file.c base/environment.c base/file_util.c)
    moelat_fuzzer(fuzz_manifest manifest io/ckpt_manifest.c base/file_util.c)
    target_link_libraries(fuzz_manifest PRIVATE PkgConfig::XXHASH)
  endif()
endif()
