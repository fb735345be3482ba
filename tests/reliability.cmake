# Reliability: checkpoints and resume, writers killed mid-write,
# inputs at the edges of what the engine accepts.
moelat_test(test_checkpoint SOURCES test_checkpoint.c test_support.c LABELS reliability TIMEOUT 300)
moelat_test(test_atomic_kill SOURCES test_atomic_kill.c test_support.c LABELS "reliability;io" TIMEOUT 120)
moelat_test(test_edges SOURCES test_edges.c test_support.c LABELS reliability TIMEOUT 300)
# Non-finite steps: both paths stop alike and keep the last finite states.
add_test(NAME cli_nonfinite COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cli_nonfinite.sh $<TARGET_FILE:moelat-engine>)
set_tests_properties(cli_nonfinite PROPERTIES LABELS "cli;reliability" TIMEOUT 600)
