# The engine's OpenCL layer (engine/src/cl_*.c): error names, devices,
# program building with the binary cache, the helpers' special functions,
# fault injection, `devices` CLI.
moelat_test(test_cl_errors SOURCES test_cl_errors.c LABELS cl TIMEOUT 60)
moelat_test(test_cl_devices SOURCES test_cl_devices.c LABELS cl TIMEOUT 120)
moelat_test(test_cl_build SOURCES test_cl_build.c LABELS cl TIMEOUT 180 LIBS PkgConfig::XXHASH)
moelat_test(test_cl_helpers SOURCES test_cl_helpers.c LABELS cl TIMEOUT 120)
moelat_test(test_cl_fault SOURCES test_cl_fault.c LABELS cl TIMEOUT 120)
moelat_test(test_cl_cli_devices SOURCES test_cl_cli_devices.c LABELS cl TIMEOUT 60
            LIBS PkgConfig::JANSSON)
