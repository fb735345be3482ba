/* moelat/util.h's file checks: the rules of the engine's own loaders
 * (file_util.c) and saves (atomic_file.c), for tools that check their
 * paths before any work. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

moelat_status moelat_file_check_output_dir(const char *dir, const char *manifest, char *err, size_t errlen) {
    char p[4096];
    if (!dir || snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) {
        snprintf(err, errlen, "directory name missing or too long");
        return MOELAT_ERR_INVALID;
    }
    /* The directory, or the nearest ancestor that exists: a save creates
     * the rest. */
    for (int first = 1;; first = 0) {
        struct stat st;
        if (stat(p, &st) == 0) {
            if (!S_ISDIR(st.st_mode)) {
                snprintf(err, errlen, "%s is %s, not a directory", p, ml_file_type_name(st.st_mode));
                return MOELAT_ERR_IO;
            }
            if (access(p, W_OK | X_OK) != 0) {
                snprintf(err, errlen, "directory %s is not writable: %s", p, strerror(errno));
                return MOELAT_ERR_IO;
            }
            if (first && manifest) {
                char man[4200];
                snprintf(man, sizeof man, "%s/%s", p, manifest);
                if (atomic_check_target(man, err, errlen) != 0)
                    return MOELAT_ERR_IO;
            }
            return MOELAT_OK;
        }
        /* ENOTDIR: a file on the way, reported when the walk reaches it. */
        if (errno != ENOENT && errno != ENOTDIR) {
            snprintf(err, errlen, "cannot inspect %s: %s", p, strerror(errno));
            return MOELAT_ERR_IO;
        }
        char *slash = strrchr(p, '/');
        while (slash && slash > p && slash[1] == '\0') { /* trailing slashes */
            *slash = '\0';
            slash = strrchr(p, '/');
        }
        if (!slash)
            snprintf(p, sizeof p, ".");
        else if (slash == p)
            p[1] = '\0';
        else
            *slash = '\0';
    }
}

const char *moelat_file_type_name(unsigned mode) { return ml_file_type_name(mode); }
