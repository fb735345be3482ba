/* Atomic replacement of a file (see atomic_file.h). The temporary name
 * carries the pid and a process-wide counter so that concurrent writers,
 * in this process or another, never share a temporary file. */
#include "atomic_file.h"
#include "environment.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_uint g_tmp_counter;

static void set_err(char *err, size_t errlen, const char *path, const char *what, int e) {
    if (err && errlen)
        snprintf(err, errlen, "%s: %s: %s", path, what, strerror(e));
}

/* The directory entry made by rename() is durable only once the directory
 * itself is synced. Some file systems cannot fsync a directory (EINVAL);
 * nothing more can be done there, so that is not an error. */
static int sync_parent_dir(const char *path, char *err, size_t errlen) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir)
            n = sizeof dir - 1;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        set_err(err, errlen, path, "cannot open its directory to sync it", errno);
        return -1;
    }
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL && e != ENOTSUP) {
        set_err(err, errlen, path, "cannot sync its directory", e);
        return -1;
    }
    return 0;
}

/* Test-only hook (tests/test_atomic_kill.c, tests/test_checkpoint.c):
 * MOELAT_TEST_KILL_BEFORE_RENAME=<substring> kills the process once a file
 * whose final name contains it is complete and synced but not yet renamed,
 * the last moment a crash can hit a write. Mid-write kills need no hook
 * (the tests use RLIMIT_FSIZE). */
static void kill_hook(const char *final_path) {
    const char *k = ml_env_test_kill_before_rename();
    if (k && *k && strstr(final_path, k))
        raise(SIGKILL);
}

int atomic_open(atomic_file *af, const char *path, char *err, size_t errlen) {
    memset(af, 0, sizeof *af);
    if (!path || !*path) {
        if (err && errlen)
            snprintf(err, errlen, "atomic write: empty file name");
        return -1;
    }
    size_t plen = strlen(path);
    /* Room for ".tmp.<pid>.<counter>" (at most 1 + 3 + 1 + 10 + 1 + 10). */
    if (plen + 32 >= sizeof af->tmp_path) {
        if (err && errlen)
            snprintf(err, errlen, "%.200s...: file name too long", path);
        return -1;
    }
    memcpy(af->final_path, path, plen + 1);
    unsigned counter = atomic_fetch_add(&g_tmp_counter, 1u);
    snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp.%ld.%u", path, (long)getpid(), counter);

    int fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        set_err(err, errlen, path, "cannot create temporary file", errno);
        af->tmp_path[0] = '\0';
        return -1;
    }
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        int e = errno;
        close(fd);
        unlink(af->tmp_path);
        af->tmp_path[0] = '\0';
        set_err(err, errlen, path, "cannot open temporary file", e);
        return -1;
    }
    return 0;
}

void atomic_abort(atomic_file *af) {
    if (af->fp) {
        fclose(af->fp);
        af->fp = NULL;
    }
    if (af->tmp_path[0]) {
        unlink(af->tmp_path);
        af->tmp_path[0] = '\0';
    }
}

int atomic_commit(atomic_file *af, char *err, size_t errlen) {
    if (!af->fp || !af->tmp_path[0]) {
        if (err && errlen)
            snprintf(err, errlen, "%s: atomic write was not open", af->final_path);
        atomic_abort(af);
        return -1;
    }
    /* ferror catches a failed fwrite whose return value the caller ignored. */
    if (ferror(af->fp)) {
        if (err && errlen)
            snprintf(err, errlen, "%s: write error on temporary file %s", af->final_path,
                     af->tmp_path);
        atomic_abort(af);
        return -1;
    }
    if (fflush(af->fp) != 0) {
        set_err(err, errlen, af->final_path, "cannot flush temporary file", errno);
        atomic_abort(af);
        return -1;
    }
    if (fsync(fileno(af->fp)) != 0) {
        set_err(err, errlen, af->final_path, "cannot sync temporary file", errno);
        atomic_abort(af);
        return -1;
    }
    kill_hook(af->final_path);
    FILE *fp = af->fp;
    af->fp = NULL;
    if (fclose(fp) != 0) {
        set_err(err, errlen, af->final_path, "cannot close temporary file", errno);
        atomic_abort(af);
        return -1;
    }
    if (rename(af->tmp_path, af->final_path) != 0) {
        set_err(err, errlen, af->final_path, "cannot rename temporary file over it", errno);
        atomic_abort(af);
        return -1;
    }
    af->tmp_path[0] = '\0';
    return sync_parent_dir(af->final_path, err, errlen);
}

int atomic_write_file(const char *path, const void *data, size_t len, char *err, size_t errlen) {
    atomic_file af;
    if (atomic_open(&af, path, err, errlen) != 0)
        return -1;
    if (len > 0 && fwrite(data, 1, len, af.fp) != len) {
        set_err(err, errlen, path, "cannot write temporary file", errno);
        atomic_abort(&af);
        return -1;
    }
    return atomic_commit(&af, err, errlen);
}

int atomic_finish(atomic_file *af, int write_failed, const char *path, char *err, size_t errlen) {
    if (write_failed) {
        int e = errno; /* before anything else can change it */
        snprintf(err, errlen, "%s: cannot write temporary file %s: %s", path, af->tmp_path, strerror(e));
        atomic_abort(af);
        return -1;
    }
    return atomic_commit(af, err, errlen);
}
