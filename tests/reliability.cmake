# Reliability: checkpoints and resume, writers killed mid-write,
# inputs at the edges of what the engine accepts.
moelat_test(test_checkpoint SOURCES test_checkpoint.c test_support.c LABELS reliability TIMEOUT 300)
moelat_test(test_atomic_kill SOURCES test_atomic_kill.c test_support.c LABELS "reliability;io" TIMEOUT 120)
moelat_test(test_edges SOURCES test_edges.c test_support.c LABELS reliability TIMEOUT 300)
# The CLI against special files, edited checkpoints, bad output paths,
# out-of-range values, non-finite inputs and malformed options: one test
# per class of issue 27 (see the script's header).
foreach(class saves checkpoint fifo outputs bounds nonfinite messages)
  add_test(NAME reliability_cli_${class}
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/reliability_cli.sh $<TARGET_FILE:moelat-engine> ${class})
  set_tests_properties(reliability_cli_${class} PROPERTIES LABELS reliability TIMEOUT 600
    ENVIRONMENT "XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache;POCL_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/pocl-cache")
endforeach()
