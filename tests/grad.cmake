# Exact host gradients: finite differences, checkpointing, refusals, the CLI.
moelat_test(test_grad SOURCES test_grad.c test_support.c LABELS grad TIMEOUT 1200)
add_dependencies(test_grad moelat_test_plugin_good)
find_program(MOELAT_GRAD_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(MOELAT_GRAD_PYTHON3)
  add_test(NAME grad_cli
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/grad_cli.sh $<TARGET_FILE:moelat-engine>
                   ${MOELAT_GRAD_PYTHON3} ${CMAKE_CURRENT_BINARY_DIR}/plugins_mixed/good.so)
  set_tests_properties(grad_cli PROPERTIES LABELS "grad;cli" TIMEOUT 300
                       PASS_REGULAR_EXPRESSION "PASS")
endif()
