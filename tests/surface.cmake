# The closed library surface: libmoelat exports only moelat_* (everything
# else is built with hidden visibility; see engine/include/moelat/api.h).
find_program(NM_EXE nm)
if(NM_EXE)
  add_test(NAME library_exports
    COMMAND sh -c "syms=$(\"$0\" -D --defined-only \"$1\" | awk '{print $NF}') || exit 1; \
n=$(printf '%s\\n' \"$syms\" | grep -c '^moelat_'); \
other=$(printf '%s\\n' \"$syms\" | grep -v '^moelat_'); \
if [ -n \"$other\" ]; then echo \"exported besides moelat_*:\"; echo \"$other\"; exit 1; fi; \
if [ \"$n\" -lt 50 ]; then echo \"only $n moelat_* symbols exported\"; exit 1; fi; \
echo \"$n symbols, all moelat_*\""
            ${NM_EXE} $<TARGET_FILE:moelat>)
  set_tests_properties(library_exports PROPERTIES LABELS sdk TIMEOUT 30)
endif()

# moelat/inspect.h through the public API.
moelat_test(test_inspect SOURCES test_inspect.c test_support.c LABELS sdk TIMEOUT 120)
