/* Output paths of train and grad, checked before any work (train_paths.h). */
#include "train_paths.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moelat/util.h"

int train_check_output(const char *cmd, const char *opt, const char *path, int is_dir) {
    char err[1200];
    if (!is_dir) {
        if (moelat_file_check_output(path, err, sizeof err) != MOELAT_OK) {
            fprintf(stderr, "moelat-engine %s: %s %s: %s\n", cmd, opt, path, err);
            return -1;
        }
        return 0;
    }
    char p[4096];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) {
        fprintf(stderr, "moelat-engine %s: %s: directory name too long\n", cmd, opt);
        return -1;
    }
    for (int first = 1;; first = 0) {
        struct stat st;
        if (stat(p, &st) == 0) {
            if (!S_ISDIR(st.st_mode)) {
                fprintf(stderr, "moelat-engine %s: %s %s: %s is %s, not a directory\n", cmd, opt, path, p,
                        moelat_file_type_name(st.st_mode));
                return -1;
            }
            if (access(p, W_OK | X_OK) != 0) {
                fprintf(stderr, "moelat-engine %s: %s %s: directory %s is not writable: %s\n", cmd, opt, path, p,
                        strerror(errno));
                return -1;
            }
            char man[4200];
            snprintf(man, sizeof man, "%s/manifest.json", p);
            if (first && moelat_file_check_output(man, err, sizeof err) != MOELAT_OK) {
                fprintf(stderr, "moelat-engine %s: %s %s: %s\n", cmd, opt, path, err);
                return -1;
            }
            return 0;
        }
        /* ENOTDIR: a file on the way, reported when the walk reaches it. */
        if (errno != ENOENT && errno != ENOTDIR) {
            fprintf(stderr, "moelat-engine %s: %s %s: cannot inspect %s: %s\n", cmd, opt, path, p, strerror(errno));
            return -1;
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
