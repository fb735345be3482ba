/* What `run` checks before the first step: every output path, the memory
 * the lattice will take, the devices named. Each prints its own message
 * ("moelat-engine run: ...") and returns -1 on a refusal. */
#ifndef MOELAT_RUN_CHECKS_H
#define MOELAT_RUN_CHECKS_H

#include <stdint.h>

#include "moelat/moelat.h"

/* A file a save will replace (moelat_file_check_output's rules) or, with is_dir, a
 * checkpoint directory that must be, or be creatable as, a writable
 * directory. opt names the option in the message. */
int run_check_output(const char *opt, const char *path, int is_dir);

/* Estimates the host memory (states, stencil, per-thread workspaces, and
 * the host side of device buffers) and, in batch mode, the device memory of
 * cfg's lattice; refuses one that does not fit with the estimate and the
 * largest cubic lattice that does. verbose: also say what a large run
 * (over 1 GiB) will take. */
int run_check_memory(const moelat_config *cfg, int verbose);

/* Every spec of a --devices list names a device that exists. */
int run_check_device(const char *spec);

/* Human-readable bytes ("2.6 GB"), in buf. */
const char *run_bytes(double b, char *buf, unsigned len);

/* The outputs of a run: each save is attempted and noted; the report
 * lists what was and was not written when one failed. */
typedef struct run_saves {
    int n, failed;
    const char *what[8], *path[8];
    int ok[8];
} run_saves;
/* err NULL: written; "" failed with its message already printed; else the
 * message, printed here. */
void run_saves_note(run_saves *s, const char *what, const char *path, const char *err);
/* 0 when everything noted was written; else prints the summary, -1. */
int run_saves_report(const run_saves *s);

#endif
