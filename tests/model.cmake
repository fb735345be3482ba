# The model on the host and the batched path against it and the golden files.
moelat_test(test_stencil SOURCES test_stencil.c LABELS model)
moelat_test(test_model_params SOURCES test_model_params.c test_support.c LABELS model)
moelat_test(test_golden SOURCES test_golden.c test_support.c LABELS model TIMEOUT 600)
moelat_test(test_lattice SOURCES test_lattice.c test_support.c LABELS model)
moelat_test(test_batch SOURCES test_batch.c test_support.c LABELS batch TIMEOUT 900)
moelat_test(test_cli_run SOURCES test_cli_run.c test_support.c LABELS cli LIBS PkgConfig::JANSSON)
# The numpy reference checks itself (vectorised against a naive version).
# Debian's python3 with python3-numpy, not whatever python3 comes first.
find_program(MOELAT_SYSTEM_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(MOELAT_SYSTEM_PYTHON3)
  add_test(NAME reference_selfcheck
           COMMAND ${MOELAT_SYSTEM_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/reference/test_ref_selfcheck.py)
  set_tests_properties(reference_selfcheck PROPERTIES LABELS model TIMEOUT 300)
endif()

find_program(OCLGRIND_EXE oclgrind)
if(OCLGRIND_EXE)
  add_test(NAME oclgrind_step
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/oclgrind_step.sh $<TARGET_FILE:moelat-engine>)
  set_tests_properties(oclgrind_step PROPERTIES LABELS batch TIMEOUT 900)
else()
  message(WARNING "oclgrind not found: the kernel checking test is not registered")
endif()

# bench at a tiny size: a smoke test of the command and its JSON, untimed.
add_test(NAME bench_smoke
         COMMAND moelat-engine bench --preset debug --dims 6x5x4 --steps 1 --threads 2 --json)
set_tests_properties(bench_smoke PROPERTIES LABELS cli TIMEOUT 300
  PASS_REGULAR_EXPRESSION "\"peak_gflops\".*\"rows\".*\"queues\".*\"speedup\""
  ENVIRONMENT "XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache")
# bench --backward at a tiny size: the gradient step's JSON, on the device.
add_test(NAME bench_backward_smoke
         COMMAND moelat-engine bench --preset debug --dims 6x5x4 --steps 1 --threads 2 --percell-cells 0
                 --backward --json)
set_tests_properties(bench_backward_smoke PROPERTIES LABELS "cli;grad" TIMEOUT 300
  PASS_REGULAR_EXPRESSION "\"backward\".*\"grad_ms\".*\"ratio\".*\"path\": \"device"
  ENVIRONMENT "XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache")
# Tuning from --tune, the config and the environment (cli_tune.sh says what).
add_test(NAME cli_tune COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cli_tune.sh $<TARGET_FILE:moelat-engine>)
set_tests_properties(cli_tune PROPERTIES LABELS cli TIMEOUT 600
  ENVIRONMENT "POCL_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/pocl-cache")
