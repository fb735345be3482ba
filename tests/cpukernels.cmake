# The CPU-shaped kernels (kernels_cl/moelat_cpu_math.cl, *_cpu.cl) and the
# work-group ones, each forced on PoCL by the tuning key cl_shape (the
# CLI's MOELAT_CL_SHAPE below), against the host path; then the CPU-shaped ones under oclgrind at a small size.
moelat_test(test_cpu_shape SOURCES test_cpu_shape.c test_support.c LABELS "batch;experts" TIMEOUT 900)

# oclgrind (API use, out-of-bounds accesses, data races) on one step of
# the CPU-shaped kernels: 6x5x4 with every band populated, two chunks.
# oclgrind's device is not of CPU type, so the shape is forced.
find_program(OCLGRIND_EXE oclgrind)
if(OCLGRIND_EXE)
  set(_cpu_og_script [=[
log=$(mktemp)
MOELAT_CL_SHAPE=cpu MOELAT_NO_KERNEL_CACHE=1 MOELAT_LOG=info "$0" --log "$log" --check-api --data-races \
    "$1" check --dims 6x5x4 --radius-ratio 0.9 --chunk 3x5x4 --steps 1 --threads 1 --experts
rc=$?
if [ -s "$log" ]; then echo "oclgrind reported problems:"; head -60 "$log"; rc=1; fi
rm -f "$log"
exit $rc
]=])
  add_test(NAME cpu_shape_oclgrind
           COMMAND sh -c "${_cpu_og_script}" ${OCLGRIND_EXE} $<TARGET_FILE:moelat-engine>)
  set_tests_properties(cpu_shape_oclgrind PROPERTIES LABELS "batch;oclgrind" TIMEOUT 900
    PASS_REGULAR_EXPRESSION "CPU-shaped step kernels.*CPU-shaped kernels.*CPU-shaped kernels.*CPU-shaped kernels.*check passed")
endif()
