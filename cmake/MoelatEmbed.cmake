# moelat_embed_sources(OUTPUT <file.c> SYMBOL <name> FILES <f>...)
# Generates a C file that holds each file's text as a string and a table
#   const struct ml_embedded_file { const char *name; const char *text; } <name>[];
#   const int <name>_count;
# keyed by the file's base name. Kernel sources are embedded this way, so
# the engine and its experts need no files at run time.
set(_MOELAT_EMBED_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/embed_script.cmake)

# With CONCAT it instead generates
#   const char *const <name>_parts[];   (NULL-terminated, in FILES order)
# for a plugin that joins several files into its one OpenCL source.
function(moelat_embed_sources)
  cmake_parse_arguments(E "CONCAT" "OUTPUT;SYMBOL" "FILES" ${ARGN})
  set(concat_arg -DCONCAT=OFF)
  if(E_CONCAT)
    set(concat_arg -DCONCAT=ON)
  endif()
  set(abs_files)
  foreach(f ${E_FILES})
    get_filename_component(a ${f} ABSOLUTE)
    list(APPEND abs_files ${a})
  endforeach()
  string(REPLACE ";" "|" files_arg "${abs_files}")
  add_custom_command(
    OUTPUT ${E_OUTPUT}
    COMMAND ${CMAKE_COMMAND} -DOUTPUT=${E_OUTPUT} -DSYMBOL=${E_SYMBOL} "-DFILES=${files_arg}" ${concat_arg}
            -P ${_MOELAT_EMBED_SCRIPT}
    DEPENDS ${abs_files} ${_MOELAT_EMBED_SCRIPT}
    COMMENT "Embedding ${E_SYMBOL}"
    VERBATIM)
endfunction()
