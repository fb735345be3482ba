/* The isolated plugin check (`moelat-engine plugins --check`): loads a
 * plugin in a forked child so that the caller survives a crash or a hang,
 * then reports what the child saw. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include"base/file_util.h"
#include"plugin/plugin_loader.h"

#define CHECK_TIMEOUT_MS 10000

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
            ml_errf(err, errlen, "tensor %d: suffix empty or not terminated", i);
            return -1;
        }
        if (t->ndim < 0 || t->ndim > MOELAT_MAX_DIMS) {
            ml_errf(err, errlen, "tensor \"%s\": ndim %d out of range 0..%d", t->suffix,
                    (int)t->ndim, MOELAT_MAX_DIMS);
            return -1;
        }
        for (int k = 0; k < t->ndim; k++) {
            if (t->shape[k] <= 0) {
                ml_errf(err, errlen, "tensor \"%s\": shape[%d] = %d", t->suffix, k,
                        (int)t->shape[k]);
                return -1;
            }
        }
        if (t->init != MOELAT_INIT_UNIFORM_FAN_IN && t->init != MOELAT_INIT_CONST) {
            ml_errf(err, errlen, "tensor \"%s\": unknown init %d", t->suffix, (int)t->init);
            return -1;
        }
        if (t->init == MOELAT_INIT_UNIFORM_FAN_IN && t->fan_in <= 0) {
            ml_errf(err, errlen, "tensor \"%s\": fan_in %d", t->suffix, (int)t->fan_in);
            return -1;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(specs[j].suffix, t->suffix) == 0) {
                ml_errf(err, errlen, "tensor \"%s\" declared twice", t->suffix);
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
    if (ml_plugin_load_reason(path, &p, err, sizeof err) != 0) {
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
        ml_errf(report, len, "no file given");
        return -1;
    }
    int fds[2];
    if (pipe(fds) != 0) {
        ml_errf(report, len, "%s: cannot create a pipe: %s", path, strerror(errno));
        return -1;
    }
    fflush(NULL); /* or the child's exit would repeat buffered output */
    pid_t pid = fork();
    if (pid < 0) {
        ml_errf(report, len, "%s: cannot fork: %s", path, strerror(errno));
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
            ml_errf(report, len, "%s: waitpid failed: %s", path, strerror(errno));
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
        ml_errf(report, len, "%s: did not finish within %d ms while %s; killed", path, ms,
                phase);
        return -1;
    }
    if (WIFSIGNALED(status)) {
        char buf[32];
        ml_errf(report, len, "%s: crashed while %s: signal %s", path, phase,
                signal_name(WTERMSIG(status), buf, sizeof buf));
        return -1;
    }
    if (verdict[0]) {
        ml_errf(report, len, "%s: %s", path, verdict);
        return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
    }
    ml_errf(report, len, "%s: exited with code %d while %s", path,
            WIFEXITED(status) ? WEXITSTATUS(status) : -1, phase);
    return -1;
}

int ml_plugin_check_isolated(const char *path, char *report, size_t len) {
    return ml_plugin_check_isolated_timeout(path, CHECK_TIMEOUT_MS, report, len);
}
