/* Expert plugin loader (see plugin_loader.h). A plugin is untrusted input:
 * every failure becomes a message naming the file and the reason, the
 * handle is closed, and the remaining files still load. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include "base/environment.h"
#include"base/file_util.h"
#include"plugin/plugin_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define NAME_MAX_LEN 63
#define HIDDEN_NAME_MAX_LEN 31

#ifdef MOELAT_EXPERTS_BUILD_DIR
static const char *g_build_dir = MOELAT_EXPERTS_BUILD_DIR;
#else
static const char *g_build_dir = NULL;
#endif
#ifdef MOELAT_PLUGIN_INSTALL_DIR
static const char *g_install_dir = MOELAT_PLUGIN_INSTALL_DIR;
#else
static const char *g_install_dir = NULL;
#endif

/* The installed experts are the ones beside the libmoelat that is running,
 * <its directory>/moelat/experts, found at run time so that a prefix can be
 * installed or moved elsewhere than configured. A library with no such
 * directory beside it is the build tree's and uses the compiled-in paths;
 * an installed one never looks into the build tree, which may be stale. */
static char g_lib_experts[PATH_MAX];
static int g_lib_installed;
static pthread_once_t g_lib_once = PTHREAD_ONCE_INIT;

static void locate_library(void) {
    Dl_info info;
    /* Any address inside libmoelat names the file it was loaded from. */
    if (dladdr(g_lib_experts, &info) == 0 || !info.dli_fname)
        return;
    char *real = realpath(info.dli_fname, NULL);
    char *slash = real ? strrchr(real, '/') : NULL;
    if (slash) {
        *slash = '\0';
        int n = snprintf(g_lib_experts, sizeof g_lib_experts, "%s/moelat/experts", real);
        struct stat st;
        g_lib_installed = n > 0 && (size_t)n < sizeof g_lib_experts &&
                          stat(g_lib_experts, &st) == 0 && S_ISDIR(st.st_mode);
    }
    free(real);
}

const char *ml_plugin_build_dir(void) {
    pthread_once(&g_lib_once, locate_library);
    return g_lib_installed ? NULL : g_build_dir;
}

const char *ml_plugin_install_dir(void) {
    pthread_once(&g_lib_once, locate_library);
    return g_lib_installed ? g_lib_experts : g_install_dir;
}

/* A plugin's strings end up in terminal output: show at most max
 * characters and replace control bytes so a hostile name stays one line. */
static void printable_max(const char *s, char *out, size_t cap, size_t max) {
    size_t n = 0;
    for (; s[n] && n + 4 < cap && n < max; n++) {
        unsigned char c = (unsigned char)s[n];
        out[n] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (s[n] && n + 4 < cap) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

static void printable(const char *s, char *out, size_t cap) { printable_max(s, out, cap, 64); }

static int is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static int is_ident_char(char c) {
    return is_name_char(c) || (c >= 'A' && c <= 'Z');
}

static int check_name(const char *name, char *err, size_t errlen) {
    char shown[80];
    if (!name || !name[0]) {
        ml_errf(err, errlen, "descriptor has no name");
        return -1;
    }
    size_t len = strnlen(name, NAME_MAX_LEN + 1);
    printable(name, shown, sizeof shown);
    if (len > NAME_MAX_LEN) {
        ml_errf(err, errlen, "expert name \"%s\" is longer than %d characters", shown,
                NAME_MAX_LEN);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_name_char(name[i])) {
            ml_errf(err, errlen, "invalid expert name \"%s\": only [a-z0-9_] allowed", shown);
            return -1;
        }
    }
    return 0;
}

/* Hidden names become -D MOELAT_H_<name> on the OpenCL build line. */
static int check_hidden(const moelat_expert_descriptor *d, char *err, size_t errlen) {
    for (int i = 0; i < MOELAT_MAX_HIDDEN; i++) {
        const char *h = d->hidden_names[i];
        if (!h)
            return 0;
        size_t len = strnlen(h, HIDDEN_NAME_MAX_LEN + 1);
        int ok = len > 0 && len <= HIDDEN_NAME_MAX_LEN;
        for (size_t k = 0; ok && k < len; k++)
            ok = is_ident_char(h[k]);
        if (!ok) {
            char shown[80];
            printable(h, shown, sizeof shown);
            ml_errf(err, errlen,
                    "hidden_names[%d] \"%s\" is not an identifier of 1..%d characters", i,
                    shown, HIDDEN_NAME_MAX_LEN);
            return -1;
        }
        if (d->hidden_defaults[i] <= 0) {
            ml_errf(err, errlen, "hidden size \"%s\" has default %d (must be > 0)", h,
                    (int)d->hidden_defaults[i]);
            return -1;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(d->hidden_names[j], h) == 0) {
                ml_errf(err, errlen, "hidden size \"%s\" is declared twice", h);
                return -1;
            }
        }
    }
    if (d->hidden_names[MOELAT_MAX_HIDDEN]) {
        ml_errf(err, errlen, "more than %d hidden_names (the list must end with NULL)",
                MOELAT_MAX_HIDDEN);
        return -1;
    }
    return 0;
}

/* The OpenCL path is all or nothing: a kernel source with no way to run it,
 * or an enqueue with no source, would only fail later at step time. */
static int check_opencl(const moelat_expert_descriptor *d, char *err, size_t errlen) {
    int src = d->cl_source != NULL;
    if (src && (!d->cl_prepare || !d->cl_enqueue)) {
        ml_errf(err, errlen, "inconsistent OpenCL fields: cl_source is set but %s is NULL",
                !d->cl_prepare ? "cl_prepare" : "cl_enqueue");
        return -1;
    }
    if (!src && (d->cl_prepare || d->cl_enqueue || d->cl_step_begin || d->cl_release)) {
        const char *which = d->cl_prepare      ? "cl_prepare"
                            : d->cl_enqueue    ? "cl_enqueue"
                            : d->cl_step_begin ? "cl_step_begin"
                                               : "cl_release";
        ml_errf(err, errlen, "inconsistent OpenCL fields: %s is set but cl_source is NULL",
                which);
        return -1;
    }
    return 0;
}

int ml_plugin_validate_descriptor(const moelat_expert_descriptor *d, char *err,
                                  size_t errlen) {
    if (!d) {
        ml_errf(err, errlen, "no descriptor");
        return -1;
    }
    if (d->abi_major != MOELAT_EXPERT_ABI_MAJOR) {
        ml_errf(err, errlen, "expert ABI major version %u, engine expects %d",
                (unsigned)d->abi_major, MOELAT_EXPERT_ABI_MAJOR);
        return -1;
    }
    /* Checked before any field past the header is read: a shorter struct
     * may end before them. */
    if (d->struct_size < MOELAT_EXPERT_DESCRIPTOR_SIZE_1_0) {
        ml_errf(err, errlen,
                "descriptor struct_size %u is smaller than the ABI 1.0 descriptor (%zu bytes)",
                (unsigned)d->struct_size, (size_t)MOELAT_EXPERT_DESCRIPTOR_SIZE_1_0);
        return -1;
    }
    if (check_name(d->name, err, errlen) != 0)
        return -1;
    if (!d->version) {
        ml_errf(err, errlen, "expert \"%s\": version is NULL", d->name);
        return -1;
    }
    if (!d->description) {
        ml_errf(err, errlen, "expert \"%s\": description is NULL", d->name);
        return -1;
    }
    if (!d->tensors) {
        ml_errf(err, errlen, "expert \"%s\": tensors() is NULL", d->name);
        return -1;
    }
    if (!d->host_cell) {
        ml_errf(err, errlen, "expert \"%s\": host_cell is NULL (the host path is required)",
                d->name);
        return -1;
    }
    char sub[400];
    if (check_hidden(d, sub, sizeof sub) != 0 || check_opencl(d, sub, sizeof sub) != 0) {
        ml_errf(err, errlen, "expert \"%s\": %s", d->name, sub);
        return -1;
    }
    return 0;
}

void ml_plugin_default_dims(const moelat_expert_descriptor *desc, moelat_expert_dims *dims) {
    memset(dims, 0, sizeof *dims);
    dims->struct_size = sizeof *dims;
    dims->state_size = 24;
    dims->ext_size = 16;
    dims->cnf_steps = 3;
    dims->cnf_mode = 0;
    for (int i = 0; desc && i < MOELAT_MAX_HIDDEN && desc->hidden_names[i]; i++)
        dims->hidden[i] = desc->hidden_defaults[i];
}

/* Calls the plugin's entry: MOELAT_EXPERT_ENTRY2 when exported (1.4, with
 * an error message out-parameter), else MOELAT_EXPERT_ENTRY. NULL with the
 * reason in err; the plugin's own message, if any, is quoted and freed. */
static const moelat_expert_descriptor *call_entry(void *h, char *err, size_t errlen) {
    const moelat_host_services *host = ml_host_services();
    dlerror();
    void *sym2 = dlsym(h, MOELAT_EXPERT_ENTRY2_NAME);
    if (sym2) {
        /* POSIX guarantees dlsym results convert to function pointers. */
        moelat_expert_entry2_fn entry2;
        memcpy(&entry2, &sym2, sizeof entry2);
        char *msg = NULL;
        const moelat_expert_descriptor *d = entry2(host, &msg);
        if (!d) {
            char shown[240] = "";
            if (msg)
                printable_max(msg, shown, sizeof shown, 200);
            ml_errf(err, errlen, "entry %s failed: %s", MOELAT_EXPERT_ENTRY2_NAME,
                    msg ? shown : "(no message)");
        }
        host->free(msg); /* a plugin may set it on success too */
        return d;
    }
    dlerror();
    void *sym = dlsym(h, MOELAT_EXPERT_ENTRY_NAME);
    if (!sym) {
        ml_errf(err, errlen, "no entry symbol %s", MOELAT_EXPERT_ENTRY_NAME);
        return NULL;
    }
    moelat_expert_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const moelat_expert_descriptor *d = entry(host);
    if (!d)
        ml_errf(err, errlen, "entry %s returned NULL", MOELAT_EXPERT_ENTRY_NAME);
    return d;
}

const void *ml_plugin_extension(const moelat_expert_descriptor *d, const char *id) {
    /* A plugin before 1.4 had a reserved slot here, which it should have
     * zeroed but the engine never trusted: read it only from 1.4 on. */
    if (!d || !id || d->abi_minor < 4 ||
        d->struct_size < offsetof(moelat_expert_descriptor, get_extension) + sizeof d->get_extension ||
        !d->get_extension)
        return NULL;
    return d->get_extension(id);
}

/* Loads without composing the file name into the reason. */
int ml_plugin_load_reason(const char *path, ml_plugin *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (strlen(path) >= sizeof out->path) {
        ml_errf(err, errlen, "path longer than %zu bytes", sizeof out->path - 1);
        return -1;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        ml_errf(err, errlen, "cannot open: %s", strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        ml_errf(err, errlen, "not a regular file");
        return -1;
    }
    dlerror();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        ml_errf(err, errlen, "not a shared object or cannot be opened: %s",
                why ? why : "unknown dlopen error");
        return -1;
    }
    const moelat_expert_descriptor *d = call_entry(h, err, errlen);
    if (!d) {
        dlclose(h);
        return -1;
    }
    if (ml_plugin_validate_descriptor(d, err, errlen) != 0) {
        dlclose(h);
        return -1;
    }
    snprintf(out->path, sizeof out->path, "%s", path);
    out->handle = h;
    out->desc = d;
    return 0;
}

int ml_plugin_load_file(const char *path, ml_plugin *out, char *err, size_t errlen) {
    if (!path || !out) {
        ml_errf(err, errlen, "ml_plugin_load_file: no path or output");
        return -1;
    }
    char reason[1024];
    if (ml_plugin_load_reason(path, out, reason, sizeof reason) != 0) {
        ml_errf(err, errlen, "%s: %s", path, reason);
        return -1;
    }
    return 0;
}

/* ---- discovery ---------------------------------------------------------- */

typedef struct seen_list {
    char **paths;
    int n, cap;
} seen_list;

/* Returns 1 if the file was already reached (by its real path). */
static int seen_before(seen_list *seen, const char *path) {
    char *real = realpath(path, NULL);
    if (!real)
        return 0;
    for (int i = 0; i < seen->n; i++) {
        if (strcmp(seen->paths[i], real) == 0) {
            free(real);
            return 1;
        }
    }
    if (seen->n == seen->cap) {
        int cap = seen->cap ? seen->cap * 2 : 16;
        char **p = realloc(seen->paths, (size_t)cap * sizeof *p);
        if (!p) {
            free(real);
            return 0;
        }
        seen->paths = p;
        seen->cap = cap;
    }
    seen->paths[seen->n++] = real;
    return 0;
}

static void seen_free(seen_list *seen) {
    for (int i = 0; i < seen->n; i++)
        free(seen->paths[i]);
    free(seen->paths);
}

/* Bounded copy; long paths and reasons are cut, not overflowed. */
static void copy_cut(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void add_error(ml_plugin_set *set, const char *path, const char *reason) {
    ml_plugin_error *e = realloc(set->errors, (size_t)(set->n_errors + 1) * sizeof *e);
    if (!e)
        return;
    set->errors = e;
    ml_plugin_error *last = &e[set->n_errors++];
    copy_cut(last->path, sizeof last->path, path);
    copy_cut(last->reason, sizeof last->reason, reason);
}

static void add_file(ml_plugin_set *set, seen_list *seen, const char *path) {
    if (seen_before(seen, path))
        return;
    ml_plugin p;
    char reason[1024];
    if (ml_plugin_load_reason(path, &p, reason, sizeof reason) != 0) {
        add_error(set, path, reason);
        return;
    }
    const ml_plugin *first = ml_plugin_find(set, p.desc->name);
    if (first) {
        ml_errf(reason, sizeof reason, "duplicate expert name \"%s\" (already loaded from %s)",
                p.desc->name, first->path);
        add_error(set, path, reason);
        dlclose(p.handle);
        return;
    }
    ml_plugin *grown = realloc(set->plugins, (size_t)(set->n_plugins + 1) * sizeof *grown);
    if (!grown) {
        add_error(set, path, "out of memory");
        dlclose(p.handle);
        return;
    }
    set->plugins = grown;
    set->plugins[set->n_plugins++] = p;
}

static int ends_with_so(const char *name) {
    size_t n = strlen(name);
    return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

static int so_filter(const struct dirent *e) {
    return e->d_name[0] != '.' && ends_with_so(e->d_name);
}

static void add_dir(ml_plugin_set *set, seen_list *seen, const char *dir) {
    struct dirent **list = NULL;
    int n = scandir(dir, &list, so_filter, alphasort);
    if (n < 0) {
        char reason[300];
        snprintf(reason, sizeof reason, "cannot read directory: %s", strerror(errno));
        add_error(set, dir, reason);
        return;
    }
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX];
        int len = snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
        struct stat st;
        if (len < 0 || (size_t)len >= sizeof path)
            add_error(set, list[i]->d_name, "path too long");
        else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            ; /* a directory named *.so is not a plugin; not worth a complaint */
        else
            add_file(set, seen, path);
        free(list[i]);
    }
    free(list);
}

/* required: the user named this path, so a missing one is reported;
 * compiled-in defaults are skipped quietly when absent. */
static void add_path(ml_plugin_set *set, seen_list *seen, const char *path, int required) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (required) {
            char reason[300];
            snprintf(reason, sizeof reason, "cannot open: %s", strerror(errno));
            add_error(set, path, reason);
        }
        return;
    }
    if (S_ISDIR(st.st_mode))
        add_dir(set, seen, path);
    else
        add_file(set, seen, path);
}

static void add_env_paths(ml_plugin_set *set, seen_list *seen) {
    const char *env = ml_env_plugin_path();
    if (!env)
        return;
    const char *p = env;
    while (*p) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0 && len < PATH_MAX) {
            char path[PATH_MAX];
            memcpy(path, p, len);
            path[len] = '\0';
            add_path(set, seen, path, 1);
        }
        p += len;
        if (*p == ':')
            p++;
    }
}

void ml_plugin_discover(const char *const *extra_paths, int n_extra, ml_plugin_set *set) {
    memset(set, 0, sizeof *set);
    seen_list seen = {0};
    for (int i = 0; extra_paths && i < n_extra; i++)
        if (extra_paths[i] && extra_paths[i][0])
            add_path(set, &seen, extra_paths[i], 1);
    add_env_paths(set, &seen);
    if (ml_plugin_build_dir())
        add_path(set, &seen, ml_plugin_build_dir(), 0);
    if (ml_plugin_install_dir())
        add_path(set, &seen, ml_plugin_install_dir(), 0);
    seen_free(&seen);
}

const ml_plugin *ml_plugin_find(const ml_plugin_set *set, const char *name) {
    if (!set || !name)
        return NULL;
    for (int i = 0; i < set->n_plugins; i++)
        if (strcmp(set->plugins[i].desc->name, name) == 0)
            return &set->plugins[i];
    return NULL;
}

void ml_plugin_set_free(ml_plugin_set *set) {
    if (!set)
        return;
    for (int i = 0; i < set->n_plugins; i++)
        if (set->plugins[i].handle)
            dlclose(set->plugins[i].handle);
    free(set->plugins);
    free(set->errors);
    memset(set, 0, sizeof *set);
}

