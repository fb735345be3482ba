/* Expert plugin loader: dlopen(RTLD_NOW | RTLD_LOCAL), entry symbol,
 * ABI and descriptor validation, duplicate names.
 *
 * Search order: paths given by the caller (files or directories), then
 * MOELAT_PLUGIN_PATH (colon-separated), then the build tree's experts
 * directory, then the installed plugin directory. In a directory every file
 * named *.so is tried; a bad file is reported and the others still load. */
#ifndef MOELAT_PLUGIN_LOADER_H
#define MOELAT_PLUGIN_LOADER_H

#include <stddef.h>

#include "moelat/expert_abi.h"

typedef struct ml_plugin {
    char path[1024];
    void *handle;
    const moelat_expert_descriptor *desc;
} ml_plugin;

typedef struct ml_plugin_error {
    char path[1024];
    char reason[512];
} ml_plugin_error;

typedef struct ml_plugin_set {
    ml_plugin *plugins;
    int n_plugins;
    ml_plugin_error *errors; /* files that failed, with the reason */
    int n_errors;
} ml_plugin_set;

/* The services table handed to every plugin (logging through log.c). */
const moelat_host_services *ml_host_services(void);

/* Loads one file. Returns 0, or -1 with a reason naming the file: not a
 * shared object, no entry symbol, ABI major mismatch (both versions named),
 * descriptor fails validation (which field). */
int ml_plugin_load_file(const char *path, ml_plugin *out, char *err, size_t errlen);

/* Loads every plugin found along the search order; extra_paths may be NULL.
 * A duplicate expert name keeps the first and records an error for the
 * second. Never fails as a whole: see set->errors. */
void ml_plugin_discover(const char *const *extra_paths, int n_extra, ml_plugin_set *set);

/* ml_plugin_load_file without the file name in the reason. */
int ml_plugin_load_reason(const char *path, ml_plugin *out, char *err, size_t errlen);

/* The plugin's extension named id (descriptor get_extension), or NULL: also
 * for plugins before ABI 1.4, whose slot there was reserved. */
const void *ml_plugin_extension(const moelat_expert_descriptor *desc, const char *id);

const ml_plugin *ml_plugin_find(const ml_plugin_set *set, const char *name);
void ml_plugin_set_free(ml_plugin_set *set);

/* Directories searched after the caller's and MOELAT_PLUGIN_PATH: the build
 * tree's experts (only for the build tree's libmoelat) and the experts
 * directory beside the running libmoelat (else the configured one). */
const char *ml_plugin_build_dir(void);
const char *ml_plugin_install_dir(void);

/* Checks a descriptor as the loader does (ABI major, struct_size, name,
 * strings, required functions, hidden names, OpenCL fields). Returns 0, or
 * -1 with the reason (not naming the file) in err. */
int ml_plugin_validate_descriptor(const moelat_expert_descriptor *desc, char *err,
                                  size_t errlen);

/* Default dims for a descriptor: S = 24, E = 16, its hidden defaults,
 * 3 euler CNF steps. */
void ml_plugin_default_dims(const moelat_expert_descriptor *desc, moelat_expert_dims *dims);

/* Loads path in a forked child, validates the descriptor and calls
 * tensors() on the default dims; the caller survives a crashing plugin.
 * Returns 0 with a summary in report, or -1 with the reason ("crashed while
 * loading: signal SIGSEGV", a validation error, a timeout). */
int ml_plugin_check_isolated(const char *path, char *report, size_t len);
/* The same with an explicit time limit (the default is 10 s). */
int ml_plugin_check_isolated_timeout(const char *path, int timeout_ms, char *report,
                                     size_t len);

#endif
