# Plugin SDK: install this build into a scratch prefix, build plugins/ as
# out-of-tree projects against it and drive the installed engine
# (tests/sdk_install.sh). Needs every target built, as ctest runs do.
set(_sdk_env "CMAKE=${CMAKE_COMMAND}")
if(MOELAT_SANITIZE)
  # An application linking a sanitized libmoelat must load the runtime first.
  list(APPEND _sdk_env "MOELAT_SDK_APP_FLAGS=-fsanitize=address,undefined")
endif()
add_test(NAME sdk_install
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/sdk_install.sh ${PROJECT_SOURCE_DIR} ${CMAKE_BINARY_DIR}
          ${CMAKE_CURRENT_BINARY_DIR}/sdk_work ${CMAKE_C_COMPILER} ${CMAKE_GENERATOR} $<CONFIG>)
set_tests_properties(sdk_install PROPERTIES TIMEOUT 300 LABELS "sdk;plugins"
  ENVIRONMENT "${_sdk_env}")
