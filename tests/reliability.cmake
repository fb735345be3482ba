# Reliability: checkpoints and resume, writers killed mid-write,
# inputs at the edges of what the engine accepts.
moelat_test(test_checkpoint SOURCES test_checkpoint.c test_support.c LABELS reliability TIMEOUT 300)
moelat_test(test_atomic_kill SOURCES test_atomic_kill.c test_support.c LABELS "reliability;io" TIMEOUT 120)
moelat_test(test_edges SOURCES test_edges.c test_support.c LABELS reliability TIMEOUT 300)
