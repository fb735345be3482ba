# The versioned public structs from callers built against older layouts,
# and the queries bindings use (test_abi_structs.c says what). Linked
# against the shared libmoelat, as a program using the library is.
add_executable(test_abi_structs test_abi_structs.c)
target_link_libraries(test_abi_structs PRIVATE moelat PkgConfig::CMOCKA)
add_test(NAME test_abi_structs COMMAND test_abi_structs)
set_tests_properties(test_abi_structs PROPERTIES LABELS sdk TIMEOUT 120
  ENVIRONMENT "XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache;POCL_CACHE_DIR=${CMAKE_CURRENT_BINARY_DIR}/pocl-cache")

# The library's soname carries its ABI version (MOELAT_ABI_VERSION).
add_test(NAME abi_soname
  COMMAND sh -c "so=$(objdump -p \"$0\" | awk '/SONAME/ {print $2}'); echo \"$so\"; [ \"$so\" = libmoelat.so.$1 ]"
          $<TARGET_FILE:moelat> 1)
set_tests_properties(abi_soname PROPERTIES LABELS sdk TIMEOUT 30)
