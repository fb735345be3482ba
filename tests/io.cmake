# File formats (safetensors, .npy), atomic writes and the config.
moelat_test(test_atomic SOURCES test_atomic.c LABELS io TIMEOUT 60)
moelat_test(test_safetensors SOURCES test_safetensors.c LABELS io TIMEOUT 60)
moelat_test(test_npy SOURCES test_npy.c LABELS io TIMEOUT 60)
moelat_test(test_config SOURCES test_config.c LABELS io TIMEOUT 60 LIBS m)

include(${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz.cmake)
