/* What `train` and `grad` check of their output paths before any work:
 * the rules `run` follows (README, "Files and limits"). */
#ifndef MOELAT_TRAIN_PATHS_H
#define MOELAT_TRAIN_PATHS_H

/* A file a save will replace (moelat_file_check_output: a regular,
 * writable file or a new name in a writable directory) or, with is_dir, a
 * checkpoint directory: one that exists, or whose nearest existing parent
 * is, a writable directory (the save creates the rest), whose
 * manifest.json, if any, a save may replace. Prints "moelat-engine <cmd>:
 * <opt> <path>: <why>" and returns -1 on a refusal. */
int train_check_output(const char *cmd, const char *opt, const char *path, int is_dir);

#endif
