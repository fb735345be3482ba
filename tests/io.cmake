# File formats (safetensors, .npy), atomic writes and the config.
moelat_test(test_atomic SOURCES test_atomic.c io_fixture.c LABELS io TIMEOUT 60)
moelat_test(test_safetensors SOURCES test_safetensors.c io_fixture.c LABELS io TIMEOUT 60)
moelat_test(test_npy SOURCES test_npy.c io_fixture.c LABELS io TIMEOUT 60)
moelat_test(test_config SOURCES test_config.c io_fixture.c LABELS io TIMEOUT 60 LIBS m)

include(${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz.cmake)
