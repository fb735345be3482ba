# Experts that fail or produce NaN: the run stops, names the expert and the
# first cell, and leaves the states as they were before the step.
set(MOELAT_MISBEHAVE_DIR ${CMAKE_CURRENT_BINARY_DIR}/plugins_misbehave)
foreach(kind nan fail)
  set(target moelat_test_plugin_misbehave_${kind})
  add_library(${target} MODULE ${CMAKE_CURRENT_SOURCE_DIR}/plugins/misbehave.c
                               ${CMAKE_CURRENT_SOURCE_DIR}/plugins/tp_common.c)
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/engine/include)
  if(kind STREQUAL "fail")
    target_compile_definitions(${target} PRIVATE MISBEHAVE_FAIL)
  endif()
  set_target_properties(${target} PROPERTIES PREFIX "" SUFFIX ".so" OUTPUT_NAME test_${kind}
    C_VISIBILITY_PRESET hidden LIBRARY_OUTPUT_DIRECTORY ${MOELAT_MISBEHAVE_DIR})
  list(APPEND MOELAT_MISBEHAVE_TARGETS ${target})
endforeach()
moelat_test(test_misbehave SOURCES test_misbehave.c test_support.c LABELS reliability)
target_compile_definitions(test_misbehave PRIVATE MOELAT_MISBEHAVE_DIR="${MOELAT_MISBEHAVE_DIR}")
add_dependencies(test_misbehave ${MOELAT_MISBEHAVE_TARGETS})
