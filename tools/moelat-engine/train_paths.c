/* Output paths of train and grad, checked before any work (train_paths.h). */
#include "train_paths.h"

#include <stdio.h>

#include "moelat/util.h"

int train_check_output(const char *cmd, const char *opt, const char *path, int is_dir) {
    char err[1200];
    moelat_status st = is_dir ? moelat_file_check_output_dir(path, "manifest.json", err, sizeof err)
                              : moelat_file_check_output(path, err, sizeof err);
    if (st != MOELAT_OK) {
        fprintf(stderr, "moelat-engine %s: %s %s: %s\n", cmd, opt, path, err);
        return -1;
    }
    return 0;
}
