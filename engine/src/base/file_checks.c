/* moelat/util.h's file checks: the rules of the engine's own loaders
 * (file_util.c) and saves (atomic_file.c), for tools that check their
 * paths before any work. */
#include <stdio.h>

#include"base/atomic_file.h"
#include"base/file_util.h"
#include "moelat/util.h"

moelat_status moelat_file_check_input(const char *path, char *err, size_t errlen) {
    size_t size;
    FILE *fp = ml_open_regular(path, &size, err, errlen);
    if (!fp)
        return MOELAT_ERR_IO;
    fclose(fp);
    return MOELAT_OK;
}

moelat_status moelat_file_check_output(const char *path, char *err, size_t errlen) {
    return atomic_check_target(path, err, errlen) == 0 ? MOELAT_OK : MOELAT_ERR_IO;
}

const char *moelat_file_type_name(unsigned mode) { return ml_file_type_name(mode); }
