# The Python package's pytest tests (python/tests), run by Debian's python3
# on this build's library and plugins. Not registered in sanitizer builds:
# an ASan libmoelat cannot be loaded into an uninstrumented interpreter.
if(NOT MOELAT_SANITIZE)
  find_program(MOELAT_DEBIAN_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
  if(NOT MOELAT_DEBIAN_PYTHON)
    find_program(MOELAT_DEBIAN_PYTHON python3)
  endif()
  add_test(NAME python_pytest
           COMMAND ${MOELAT_DEBIAN_PYTHON} -m pytest -q -p no:cacheprovider ${PROJECT_SOURCE_DIR}/python/tests)
  set_tests_properties(python_pytest PROPERTIES TIMEOUT 600 LABELS "python"
    ENVIRONMENT "MOELAT_LIBRARY=$<TARGET_FILE:moelat>;MOELAT_ENGINE=$<TARGET_FILE:moelat-engine>;PYTHONPATH=${PROJECT_SOURCE_DIR}/python;XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache;POCL_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/pocl-cache;PYTHONDONTWRITEBYTECODE=1")
endif()

# The C side of what the Python package relies on: routing statistics on
# both paths and the log callback.
moelat_test(test_routing_log SOURCES test_routing_log.c test_support.c LABELS batch)
