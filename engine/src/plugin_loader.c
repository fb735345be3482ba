/* Expert plugin loader (see plugin_loader.h). A plugin is untrusted input:
 * every failure becomes a message naming the file and the reason, the
 * handle is closed, and the remaining files still load. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include "environment.h"
#include "plugin_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NAME_MAX_LEN 63
#define HIDDEN_NAME_MAX_LEN 31
#define CHECK_TIMEOUT_MS 10000

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

static void fmt_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fmt_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A plugin's strings end up in terminal output: show at most 64
 * characters and replace control bytes so a hostile name stays one line. */
static void printable(const char *s, char *out, size_t cap) {
    size_t n = 0;
    for (; s[n] && n + 4 < cap && n < 64; n++) {
        unsigned char c = (unsigned char)s[n];
        out[n] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (s[n] && n + 4 < cap) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

static int is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static int is_ident_char(char c) {
    return is_name_char(c) || (c >= 'A' && c <= 'Z');
}

static int check_name(const char *name, char *err, size_t errlen) {
    char shown[80];
    if (!name || !name[0]) {
        fmt_err(err, errlen, "descriptor has no name");
        return -1;
    }
    size_t len = strnlen(name, NAME_MAX_LEN + 1);
    printable(name, shown, sizeof shown);
    if (len > NAME_MAX_LEN) {
        fmt_err(err, errlen, "expert name \"%s\" is longer than %d characters", shown,
                NAME_MAX_LEN);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_name_char(name[i])) {
            fmt_err(err, errlen, "invalid expert name \"%s\": only [a-z0-9_] allowed", shown);
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
            fmt_err(err, errlen,
                    "hidden_names[%d] \"%s\" is not an identifier of 1..%d characters", i,
                    shown, HIDDEN_NAME_MAX_LEN);
            return -1;
        }
        if (d->hidden_defaults[i] <= 0) {
            fmt_err(err, errlen, "hidden size \"%s\" has default %d (must be > 0)", h,
                    (int)d->hidden_defaults[i]);
            return -1;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(d->hidden_names[j], h) == 0) {
                fmt_err(err, errlen, "hidden size \"%s\" is declared twice", h);
                return -1;
            }
        }
    }
    if (d->hidden_names[MOELAT_MAX_HIDDEN]) {
        fmt_err(err, errlen, "more than %d hidden_names (the list must end with NULL)",
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
        fmt_err(err, errlen, "inconsistent OpenCL fields: cl_source is set but %s is NULL",
                !d->cl_prepare ? "cl_prepare" : "cl_enqueue");
        return -1;
    }
    if (!src && (d->cl_prepare || d->cl_enqueue || d->cl_step_begin || d->cl_release)) {
        const char *which = d->cl_prepare      ? "cl_prepare"
                            : d->cl_enqueue    ? "cl_enqueue"
                            : d->cl_step_begin ? "cl_step_begin"
                                               : "cl_release";
        fmt_err(err, errlen, "inconsistent OpenCL fields: %s is set but cl_source is NULL",
                which);
        return -1;
    }
    return 0;
}

int ml_plugin_validate_descriptor(const moelat_expert_descriptor *d, char *err,
                                  size_t errlen) {
    if (!d) {
        fmt_err(err, errlen, "no descriptor");
        return -1;
    }
    if (d->abi_major != MOELAT_EXPERT_ABI_MAJOR) {
        fmt_err(err, errlen, "expert ABI major version %u, engine expects %d",
                (unsigned)d->abi_major, MOELAT_EXPERT_ABI_MAJOR);
        return -1;
    }
    /* Checked before any field past the header is read: a shorter struct
     * may end before them. */
    if (d->struct_size < sizeof(moelat_expert_descriptor)) {
        fmt_err(err, errlen,
                "descriptor struct_size %u is smaller than the ABI 1.0 descriptor (%zu bytes)",
                (unsigned)d->struct_size, sizeof(moelat_expert_descriptor));
        return -1;
    }
    if (check_name(d->name, err, errlen) != 0)
        return -1;
    if (!d->version) {
        fmt_err(err, errlen, "expert \"%s\": version is NULL", d->name);
        return -1;
    }
    if (!d->description) {
        fmt_err(err, errlen, "expert \"%s\": description is NULL", d->name);
        return -1;
    }
    if (!d->tensors) {
        fmt_err(err, errlen, "expert \"%s\": tensors() is NULL", d->name);
        return -1;
    }
    if (!d->host_cell) {
        fmt_err(err, errlen, "expert \"%s\": host_cell is NULL (the host path is required)",
                d->name);
        return -1;
    }
    char sub[400];
    if (check_hidden(d, sub, sizeof sub) != 0 || check_opencl(d, sub, sizeof sub) != 0) {
        fmt_err(err, errlen, "expert \"%s\": %s", d->name, sub);
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

/* Loads without composing the file name into the reason. */
static int load_reason(const char *path, ml_plugin *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (strlen(path) >= sizeof out->path) {
        fmt_err(err, errlen, "path longer than %zu bytes", sizeof out->path - 1);
        return -1;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        fmt_err(err, errlen, "cannot open: %s", strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        fmt_err(err, errlen, "not a regular file");
        return -1;
    }
    dlerror();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        fmt_err(err, errlen, "not a shared object or cannot be opened: %s",
                why ? why : "unknown dlopen error");
        return -1;
    }
    dlerror();
    void *sym = dlsym(h, MOELAT_EXPERT_ENTRY_NAME);
    if (!sym) {
        fmt_err(err, errlen, "no entry symbol %s", MOELAT_EXPERT_ENTRY_NAME);
        dlclose(h);
        return -1;
    }
    /* POSIX guarantees dlsym results convert to function pointers. */
    moelat_expert_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const moelat_expert_descriptor *d = entry(ml_host_services());
    if (!d) {
        fmt_err(err, errlen, "entry %s returned NULL", MOELAT_EXPERT_ENTRY_NAME);
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
        fmt_err(err, errlen, "ml_plugin_load_file: no path or output");
        return -1;
    }
    char reason[1024];
    if (load_reason(path, out, reason, sizeof reason) != 0) {
        fmt_err(err, errlen, "%s: %s", path, reason);
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
    if (load_reason(path, &p, reason, sizeof reason) != 0) {
        add_error(set, path, reason);
        return;
    }
    const ml_plugin *first = ml_plugin_find(set, p.desc->name);
    if (first) {
        fmt_err(reason, sizeof reason, "duplicate expert name \"%s\" (already loaded from %s)",
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

/* ---- isolated check ----------------------------------------------------- */

static const char *signal_name(int sig, char *buf, size_t cap) {
    static const struct {
        int sig;
        const char *name;
    } names[] = {
        {SIGSEGV, "SIGSEGV"}, {SIGBUS, "SIGBUS"},   {SIGABRT, "SIGABRT"}, {SIGFPE, "SIGFPE"},
        {SIGILL, "SIGILL"},   {SIGKILL, "SIGKILL"}, {SIGTERM, "SIGTERM"}, {SIGTRAP, "SIGTRAP"},
        {SIGSYS, "SIGSYS"},   {SIGPIPE, "SIGPIPE"}, {SIGINT, "SIGINT"},   {SIGHUP, "SIGHUP"},
        {SIGQUIT, "SIGQUIT"}, {SIGALRM, "SIGALRM"}, {SIGXCPU, "SIGXCPU"}, {SIGXFSZ, "SIGXFSZ"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].sig == sig)
            return names[i].name;
    snprintf(buf, cap, "signal %d", sig);
    return buf;
}

/* The child speaks in lines: "phase <what>" before each risky step, then
 * one "ok <summary>" or "error <reason>". */
static void child_say(int fd, const char *kind, const char *text) {
    char line[2048];
    int n = snprintf(line, sizeof line, "%s %s\n", kind, text);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = (int)sizeof line - 1;
    const char *p = line;
    while (n > 0) {
        ssize_t w = write(fd, p, (size_t)n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (int)w;
    }
}

static int check_specs(const moelat_tensor_spec *specs, int n, char *err, size_t errlen) {
    for (int i = 0; i < n; i++) {
        const moelat_tensor_spec *t = &specs[i];
        if (strnlen(t->suffix, sizeof t->suffix) == sizeof t->suffix || !t->suffix[0]) {
            fmt_err(err, errlen, "tensor %d: suffix empty or not terminated", i);
            return -1;
        }
        if (t->ndim < 0 || t->ndim > MOELAT_MAX_DIMS) {
            fmt_err(err, errlen, "tensor \"%s\": ndim %d out of range 0..%d", t->suffix,
                    (int)t->ndim, MOELAT_MAX_DIMS);
            return -1;
        }
        for (int k = 0; k < t->ndim; k++) {
            if (t->shape[k] <= 0) {
                fmt_err(err, errlen, "tensor \"%s\": shape[%d] = %d", t->suffix, k,
                        (int)t->shape[k]);
                return -1;
            }
        }
        if (t->init != MOELAT_INIT_UNIFORM_FAN_IN && t->init != MOELAT_INIT_CONST) {
            fmt_err(err, errlen, "tensor \"%s\": unknown init %d", t->suffix, (int)t->init);
            return -1;
        }
        if (t->init == MOELAT_INIT_UNIFORM_FAN_IN && t->fan_in <= 0) {
            fmt_err(err, errlen, "tensor \"%s\": fan_in %d", t->suffix, (int)t->fan_in);
            return -1;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(specs[j].suffix, t->suffix) == 0) {
                fmt_err(err, errlen, "tensor \"%s\" declared twice", t->suffix);
                return -1;
            }
        }
    }
    return 0;
}

static int child_check(int fd, const char *path) {
    ml_plugin p;
    char err[1024];
    child_say(fd, "phase", "loading");
    if (load_reason(path, &p, err, sizeof err) != 0) {
        child_say(fd, "error", err);
        return 1;
    }
    const moelat_expert_descriptor *d = p.desc;
    moelat_expert_dims dims;
    ml_plugin_default_dims(d, &dims);
    if (d->validate) {
        child_say(fd, "phase", "calling validate()");
        err[0] = '\0';
        if (d->validate(&dims, err, sizeof err) != MOELAT_EXPERT_OK) {
            char msg[1200];
            snprintf(msg, sizeof msg, "expert \"%s\" rejects the default dims: %s", d->name,
                     err[0] ? err : "(no reason given)");
            child_say(fd, "error", msg);
            return 1;
        }
    }
    child_say(fd, "phase", "calling tensors()");
    int n = d->tensors(&dims, NULL, 0);
    if (n < 0) {
        snprintf(err, sizeof err, "expert \"%s\": tensors() returned %d on the default dims",
                 d->name, n);
        child_say(fd, "error", err);
        return 1;
    }
    moelat_tensor_spec *specs = calloc((size_t)n + 1, sizeof *specs);
    if (!specs) {
        child_say(fd, "error", "out of memory");
        return 1;
    }
    int m = d->tensors(&dims, specs, n);
    char sub[600];
    if (m != n) {
        snprintf(err, sizeof err, "expert \"%s\": tensors() counted %d but wrote %d", d->name,
                 n, m);
        child_say(fd, "error", err);
        return 1;
    }
    if (check_specs(specs, n, sub, sizeof sub) != 0) {
        snprintf(err, sizeof err, "expert \"%s\": %s", d->name, sub);
        child_say(fd, "error", err);
        return 1;
    }
    long long params = 0;
    for (int i = 0; i < n; i++) {
        long long c = 1;
        for (int k = 0; k < specs[i].ndim; k++)
            c *= specs[i].shape[k];
        params += c;
    }
    free(specs);
    snprintf(err, sizeof err, "%s %s: ABI %u.%u, %d tensors, %lld parameters at S=24, %s",
             d->name, d->version, (unsigned)d->abi_major, (unsigned)d->abi_minor, n, params,
             d->cl_source ? "OpenCL path" : "host path only");
    child_say(fd, "ok", err);
    return 0;
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads what the child wrote; remembers the last phase and the verdict. */
static void parse_child(int fd, char *phase, size_t phase_cap, char *verdict, size_t vcap,
                        int *ok) {
    char buf[8192];
    size_t used = 0;
    for (;;) {
        ssize_t r = read(fd, buf + used, sizeof buf - 1 - used);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        used += (size_t)r;
        if (used == sizeof buf - 1)
            break;
    }
    buf[used] = '\0';
    for (char *line = buf; *line;) {
        char *nl = strchr(line, '\n');
        if (!nl)
            break; /* a partial line: the child died while writing it */
        *nl = '\0';
        if (strncmp(line, "phase ", 6) == 0) {
            snprintf(phase, phase_cap, "%s", line + 6);
        } else if (strncmp(line, "ok ", 3) == 0) {
            snprintf(verdict, vcap, "%s", line + 3);
            *ok = 1;
        } else if (strncmp(line, "error ", 6) == 0) {
            snprintf(verdict, vcap, "%s", line + 6);
            *ok = 0;
        }
        line = nl + 1;
    }
}

int ml_plugin_check_isolated_timeout(const char *path, int timeout_ms, char *report,
                                     size_t len) {
    if (!path) {
        fmt_err(report, len, "no file given");
        return -1;
    }
    int fds[2];
    if (pipe(fds) != 0) {
        fmt_err(report, len, "%s: cannot create a pipe: %s", path, strerror(errno));
        return -1;
    }
    fflush(NULL); /* or the child's exit would repeat buffered output */
    pid_t pid = fork();
    if (pid < 0) {
        fmt_err(report, len, "%s: cannot fork: %s", path, strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        /* The crash is the expected outcome here: no core file, and the
         * default action so the parent sees the signal itself. */
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
        for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
            signal(fatal[i], SIG_DFL);
        int rc = child_check(fds[1], path);
        close(fds[1]);
        _exit(rc);
    }
    close(fds[1]);
    int status = 0, timed_out = 0;
    long long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : CHECK_TIMEOUT_MS);
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            fmt_err(report, len, "%s: waitpid failed: %s", path, strerror(errno));
            close(fds[0]);
            return -1;
        }
        if (now_ms() >= deadline) {
            timed_out = 1;
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        struct timespec nap = {0, 5 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    /* A grandchild may still hold the write end: never block on it. */
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    char phase[128] = "starting", verdict[1500] = "";
    int ok = 0;
    parse_child(fds[0], phase, sizeof phase, verdict, sizeof verdict, &ok);
    close(fds[0]);

    if (timed_out) {
        int ms = timeout_ms > 0 ? timeout_ms : CHECK_TIMEOUT_MS;
        fmt_err(report, len, "%s: did not finish within %d ms while %s; killed", path, ms,
                phase);
        return -1;
    }
    if (WIFSIGNALED(status)) {
        char buf[32];
        fmt_err(report, len, "%s: crashed while %s: signal %s", path, phase,
                signal_name(WTERMSIG(status), buf, sizeof buf));
        return -1;
    }
    if (verdict[0]) {
        fmt_err(report, len, "%s: %s", path, verdict);
        return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
    }
    fmt_err(report, len, "%s: exited with code %d while %s", path,
            WIFEXITED(status) ? WEXITSTATUS(status) : -1, phase);
    return -1;
}

int ml_plugin_check_isolated(const char *path, char *report, size_t len) {
    return ml_plugin_check_isolated_timeout(path, CHECK_TIMEOUT_MS, report, len);
}
