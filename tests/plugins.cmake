# Plugin loader and `moelat-engine plugins` tests.
#
# Test plugins are built into test-only directories, never into
# ${MOELAT_EXPERTS_BUILD_DIR}:
#   plugins_mixed/     good.so, test_good_dup.so and one bad file per failure
#                      case: a directory scan must load the good one and
#                      report each of the others;
#   plugins_isolated/  plugins that crash or hang when loaded, for the
#                      isolated check only (no scan visits this directory);
#   plugins_abi/       valid plugins of other ABI minors (1.0 with a junk
#                      slot, a newer minor with a longer descriptor) and one
#                      answering an extension.
set(MOELAT_TEST_PLUGIN_DIR ${CMAKE_CURRENT_BINARY_DIR}/plugins_mixed)
set(MOELAT_TEST_ISOLATED_DIR ${CMAKE_CURRENT_BINARY_DIR}/plugins_isolated)
set(MOELAT_TEST_ABI_DIR ${CMAKE_CURRENT_BINARY_DIR}/plugins_abi)
set(MOELAT_TEST_PLUGIN_TARGETS "")

function(moelat_add_test_plugin source dir output_name)
  set(target moelat_test_plugin_${source})
  add_library(${target} MODULE ${CMAKE_CURRENT_SOURCE_DIR}/plugins/${source}.c
                               ${CMAKE_CURRENT_SOURCE_DIR}/plugins/tp_common.c)
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/engine/include)
  set_target_properties(${target} PROPERTIES
    PREFIX "" SUFFIX ".so" OUTPUT_NAME ${output_name}
    C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY ${dir})
  set(MOELAT_TEST_PLUGIN_TARGETS ${MOELAT_TEST_PLUGIN_TARGETS} ${target} PARENT_SCOPE)
endfunction()

foreach(p good abi_major bad_name cl_inconsistent no_entry no_host null_descriptor entry_error)
  moelat_add_test_plugin(${p} ${MOELAT_TEST_PLUGIN_DIR} ${p})
endforeach()
foreach(p abi_1_0 abi_newer extension)
  moelat_add_test_plugin(${p} ${MOELAT_TEST_ABI_DIR} ${p})
endforeach()
moelat_add_test_plugin(dup_name ${MOELAT_TEST_PLUGIN_DIR} test_good_dup)
moelat_add_test_plugin(crash_on_load ${MOELAT_TEST_ISOLATED_DIR} crash_on_load)
moelat_add_test_plugin(hang ${MOELAT_TEST_ISOLATED_DIR} hang)
# Under MOELAT_SANITIZE, UBSan would stop the NULL store with an exit code;
# the test wants the real SIGSEGV.
target_compile_options(moelat_test_plugin_crash_on_load PRIVATE -fno-sanitize=all)

# A text file under a .so name: dlopen must refuse it.
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/plugins/not_a_so.txt
               ${MOELAT_TEST_PLUGIN_DIR}/not_a_so.so COPYONLY)

moelat_test(test_plugin_loader SOURCES test_plugin_loader.c
            LIBS PkgConfig::JANSSON ${CMAKE_DL_LIBS}
            LABELS plugins TIMEOUT 120)
target_compile_definitions(test_plugin_loader PRIVATE
  MOELAT_TEST_PLUGIN_DIR="${MOELAT_TEST_PLUGIN_DIR}"
  MOELAT_TEST_ISOLATED_DIR="${MOELAT_TEST_ISOLATED_DIR}"
  MOELAT_TEST_ABI_DIR="${MOELAT_TEST_ABI_DIR}"
  MOELAT_TEST_EXPERTS_DIR="${MOELAT_EXPERTS_BUILD_DIR}")
add_dependencies(test_plugin_loader ${MOELAT_TEST_PLUGIN_TARGETS})
