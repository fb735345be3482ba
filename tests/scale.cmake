# Scale-out: slabs over several devices (moelat_group) and MPI ranks.
moelat_test(test_slabs SOURCES test_slabs.c test_support.c LABELS scale TIMEOUT 300)
add_test(NAME scale_devices
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/scale_cli.sh $<TARGET_FILE:moelat-engine> devices)
set_tests_properties(scale_devices PROPERTIES LABELS scale TIMEOUT 300
  ENVIRONMENT "XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache;POCL_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/pocl-cache")
if(MOELAT_MPI)
  find_program(MOELAT_MPIRUN NAMES mpirun mpiexec HINTS ${MPI_C_COMPILER_DIR})
  if(MOELAT_MPIRUN)
    add_test(NAME scale_mpi
             COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/scale_cli.sh $<TARGET_FILE:moelat-engine> mpi ${MOELAT_MPIRUN})
    set_tests_properties(scale_mpi PROPERTIES LABELS scale TIMEOUT 300
      ENVIRONMENT "XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache;POCL_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/pocl-cache")
  else()
    message(WARNING "MOELAT_MPI is on but mpirun was not found: the MPI test is not registered")
  endif()
endif()
