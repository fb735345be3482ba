# Data-parallel training under mpirun on 2 ranks (tests/train_mpi.sh).
if(MOELAT_MPI)
  find_program(MOELAT_TRAIN_MPIRUN NAMES mpirun mpiexec HINTS ${MPI_C_COMPILER_DIR})
  find_program(MOELAT_TRAIN_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
  if(MOELAT_TRAIN_MPIRUN AND MOELAT_TRAIN_PYTHON3)
    add_test(NAME train_mpi
             COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/train_mpi.sh $<TARGET_FILE:moelat-engine> ${MOELAT_TRAIN_MPIRUN}
                     ${MOELAT_TRAIN_PYTHON3})
    set_tests_properties(train_mpi PROPERTIES LABELS "train;scale" TIMEOUT 300 PASS_REGULAR_EXPRESSION "PASS"
      ENVIRONMENT "XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache;POCL_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/pocl-cache")
  endif()
endif()
