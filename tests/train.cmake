# Training: the optimizers against PyTorch trajectories.
moelat_test(test_optim SOURCES test_optim.c test_support.c LABELS train TIMEOUT 60 LIBS m)
# The optimizer on the OpenCL device against optim.c, bit for bit.
moelat_test(test_optim_cl SOURCES test_optim_cl.c LABELS "train;cl" TIMEOUT 120)
# moelat-engine train: the loss falls 10x on the synthetic task, a resumed
# run is bitwise the uninterrupted one, misuse is refused.
find_program(MOELAT_TRAIN_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
add_test(NAME train_cli COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/train_cli.sh $<TARGET_FILE:moelat-engine>
                                   ${MOELAT_TRAIN_PYTHON})
set_tests_properties(train_cli PROPERTIES LABELS train TIMEOUT 600 PASS_REGULAR_EXPRESSION "PASS"
  ENVIRONMENT "XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache;POCL_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/pocl-cache")
# The library's trainer (moelat/train.h): callback loss, save/resume, refusals.
moelat_test(test_train SOURCES test_train.c test_support.c LABELS train TIMEOUT 120)
# The trainer's device optimizer against its host one, and its checkpoints.
moelat_test(test_train_device SOURCES test_train_device.c test_support.c LABELS "train;cl" TIMEOUT 300)
# The training classes of issue 33 (tests/reliability_cli.sh's header).
foreach(class train_options train_outputs train_fifo train_checkpoint train_resume)
  add_test(NAME reliability_cli_${class}
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/reliability_cli.sh $<TARGET_FILE:moelat-engine> ${class})
  set_tests_properties(reliability_cli_${class} PROPERTIES LABELS "train;reliability" TIMEOUT 600
    ENVIRONMENT "XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache;POCL_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/pocl-cache")
endforeach()
