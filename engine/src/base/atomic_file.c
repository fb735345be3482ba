/* Atomic replacement of a file (see atomic_file.h). The temporary name
 * carries the pid and a process-wide counter so that concurrent writers,
 * in this process or another, never share a temporary file. */
#include"base/atomic_file.h"
#include "base/environment.h"
#include"base/file_util.h"

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

/* Follows symlinks from path to the name a save must replace: the link is
 * kept and its target replaced, so that a link into shared storage stays a
 * link. A dangling link resolves to the name it points at, which the save
 * then creates. */
static int resolve_target(const char *path, char *out, size_t len, char *err, size_t errlen) {
    if (strlen(path) >= len) {
        snprintf(err, errlen, "%.200s...: file name too long", path);
        return -1;
    }
    snprintf(out, len, "%s", path);
    for (int hops = 0;; hops++) {
        struct stat st;
        if (lstat(out, &st) != 0 || !S_ISLNK(st.st_mode))
            return 0;
        if (hops == 40) {
            set_err(err, errlen, path, "cannot resolve symbolic link", ELOOP);
            return -1;
        }
        char link[4096];
        ssize_t n = readlink(out, link, sizeof link - 1);
        if (n < 0) {
            set_err(err, errlen, path, "cannot read symbolic link", errno);
            return -1;
        }
        link[n] = '\0';
        char next[4096];
        const char *slash = strrchr(out, '/');
        int w;
        if (link[0] == '/' || !slash)
            w = snprintf(next, sizeof next, "%s", link);
        else
            w = snprintf(next, sizeof next, "%.*s/%s", (int)(slash - out), out, link);
        if (w < 0 || (size_t)w >= len) {
            snprintf(err, errlen, "%.200s: symbolic link target name too long", path);
            return -1;
        }
        memcpy(out, next, (size_t)w + 1);
    }
}

/* The directory part of path ("." when there is none). */
static void dir_of(const char *path, char *dir, size_t len) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, len, ".");
    else if (slash == path)
        snprintf(dir, len, "/");
    else
        snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

/* Checks that a save may replace target (already resolved): nothing there,
 * or a regular file we may write. *mode gets the existing file's
 * permissions (0 when there is none) so that the replacement keeps them. */
static int check_target(const char *path, const char *target, unsigned *mode, char *err,
                        size_t errlen) {
    struct stat st;
    *mode = 0;
    if (stat(target, &st) == 0) {
        const char *via = strcmp(path, target) != 0 ? " (the target of symbolic link " : "";
        if (!S_ISREG(st.st_mode)) {
            snprintf(err, errlen, "%s%s%s%s is %s, not a regular file: refusing to replace it",
                     target, via, *via ? path : "", *via ? ")" : "",
                     ml_file_type_name(st.st_mode));
            return -1;
        }
        /* access() says yes to root for any file: the mode bits say what
         * its owner meant. */
        if (access(target, W_OK) != 0 || (st.st_mode & 0222) == 0) {
            snprintf(err, errlen,
                     "%s%s%s%s is read-only (mode %04o): refusing to replace it; make it "
                     "writable or choose another name",
                     target, via, *via ? path : "", *via ? ")" : "",
                     (unsigned)(st.st_mode & 07777));
            return -1;
        }
        *mode = (unsigned)(st.st_mode & 07777);
    } else if (errno != ENOENT) {
        set_err(err, errlen, target, "cannot inspect", errno);
        return -1;
    }
    char dir[4096];
    dir_of(target, dir, sizeof dir);
    if (stat(dir, &st) != 0) {
        snprintf(err, errlen, "%s: directory %s: %s", path, dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: %s is %s, not a directory", path, dir,
                 ml_file_type_name(st.st_mode));
        return -1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "%s: directory %s is not writable: %s", path, dir, strerror(errno));
        return -1;
    }
    return 0;
}

int atomic_check_target(const char *path, char *err, size_t errlen) {
    char dummy[2];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    if (!path || !*path) {
        snprintf(err, errlen, "empty file name");
        return -1;
    }
    char target[4096];
    unsigned mode;
    if (resolve_target(path, target, sizeof target - 32, err, errlen) != 0)
        return -1;
    return check_target(path, target, &mode, err, errlen);
}

int atomic_open(atomic_file *af, const char *path, char *err, size_t errlen) {
    char dummy[2];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    memset(af, 0, sizeof *af);
    if (!path || !*path) {
        snprintf(err, errlen, "empty file name");
        return -1;
    }
    /* Room for ".tmp.<pid>.<counter>" (at most 1 + 3 + 1 + 10 + 1 + 10). */
    if (resolve_target(path, af->final_path, sizeof af->final_path - 32, err, errlen) != 0)
        return -1;
    unsigned mode;
    if (check_target(path, af->final_path, &mode, err, errlen) != 0)
        return -1;
    unsigned counter = atomic_fetch_add(&g_tmp_counter, 1u);
    int w = snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp.%ld.%u", af->final_path,
                     (long)getpid(), counter);
    if (w < 0 || (size_t)w >= sizeof af->tmp_path) {
        snprintf(err, errlen, "%.200s...: file name too long", path);
        return -1;
    }

    int fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        set_err(err, errlen, path, "cannot create temporary file", errno);
        af->tmp_path[0] = '\0';
        return -1;
    }
    /* The replacement keeps the permissions of the file it replaces. */
    if (mode && fchmod(fd, mode) != 0) {
        int e = errno;
        close(fd);
        unlink(af->tmp_path);
        af->tmp_path[0] = '\0';
        set_err(err, errlen, path, "cannot set the permissions of the temporary file", e);
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
