/* Writers killed mid-write: a child process writes a large file through
 * each of the engine's writers (npy_write, st_write, atomic_write_file, the
 * kernel cache) and dies at a chosen byte (RLIMIT_FSIZE: the kernel sends
 * SIGXFSZ inside write(2)) or after the data is synced but before the
 * rename (the test hook MOELAT_TEST_KILL_BEFORE_RENAME, SIGKILL). The final
 * name must then hold the previous complete file, or not exist when there
 * was none; never a truncated one. */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include"base/atomic_file.h"
#include"backend/opencl/cl_runtime.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "test_support.h"

#define BIG_FLOATS (256 * 1024) /* 1 MiB: many write(2) calls past any stdio buffer */

typedef enum { W_NPY, W_ST, W_RAW, W_CACHE } writer;
static const char *const writer_names[] = {"npy_write", "st_write", "atomic_write_file",
                                           "mlcl_cache_write"};

static char *g_dir;

static int setup(void **state) {
    (void)state;
    g_dir = ts_tmpdir();
    return g_dir ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(g_dir);
    free(g_dir);
    return 0;
}

/* Writes n floats through writer w; returns 0 on success. */
static int write_with(writer w, const char *path, const float *v, size_t n) {
    char err[1024] = "";
    int rc = -1;
    if (w == W_NPY) {
        int64_t shape[2] = {(int64_t)(n / 4), 4};
        rc = npy_write(path, v, 2, shape, err, sizeof err);
    } else if (w == W_ST) {
        st_tensor t;
        memset(&t, 0, sizeof t);
        snprintf(t.name, sizeof t.name, "layer.weight");
        t.ndim = 1;
        t.shape[0] = (int64_t)n;
        t.data = (float *)v;
        t.numel = n;
        rc = st_write(path, &t, 1, err, sizeof err);
    } else if (w == W_RAW) {
        rc = atomic_write_file(path, v, n * sizeof(float), err, sizeof err);
    } else {
        mlcl_cache_write(path, (const unsigned char *)v, n * sizeof(float));
        rc = 0;
    }
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", writer_names[w], err);
    return rc;
}

/* Reads the file back through the matching reader; NULL if unreadable. */
static float *read_with(writer w, const char *path, size_t n) {
    char err[1024] = "";
    if (w == W_NPY) {
        float *d = NULL;
        int nd;
        int64_t shape[8];
        if (npy_read(path, &d, &nd, shape, err, sizeof err) != 0 || nd != 2 ||
            (size_t)(shape[0] * shape[1]) != n) {
            free(d);
            return NULL;
        }
        return d;
    }
    if (w == W_ST) {
        st_file f;
        if (st_read(path, &f, err, sizeof err) != 0)
            return NULL;
        const st_tensor *t = st_find(&f, "layer.weight");
        float *d = NULL;
        if (t && t->numel == n && (d = malloc(n * sizeof(float))))
            memcpy(d, t->data, n * sizeof(float));
        st_free(&f);
        return d;
    }
    if (w == W_CACHE) {
        unsigned char *p;
        size_t len;
        if (mlcl_cache_read(path, &p, &len) != 1 || len != n * sizeof(float)) {
            return NULL;
        }
        return (float *)p;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    float *d = malloc(n * sizeof(float) + 1);
    size_t got = fread(d, 1, n * sizeof(float) + 1, f);
    fclose(f);
    if (got != n * sizeof(float)) {
        free(d);
        return NULL;
    }
    return d;
}

static int count_tmp_files(const char *base, off_t *size) {
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int n = 0;
    size_t bl = strlen(base);
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, base, bl) == 0 && strstr(e->d_name + bl, ".tmp.")) {
            char p[4096];
            struct stat sb;
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            if (stat(p, &sb) == 0 && size)
                *size = sb.st_size;
            n++;
        }
    }
    closedir(d);
    return n;
}

static void remove_tmp_files(const char *base) {
    DIR *d = opendir(g_dir);
    struct dirent *e;
    size_t bl = strlen(base);
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, base, bl) == 0 && strstr(e->d_name + bl, ".tmp.")) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
}

/* Forks a writer of `big` that dies at byte `limit` (0: just before the
 * rename), then checks what the final name holds. */
static void kill_case(writer w, const float *prev, size_t n_prev, const float *big, off_t limit) {
    char base[64], path[4096];
    snprintf(base, sizeof base, "%s_%lld.bin", writer_names[w], (long long)limit);
    snprintf(path, sizeof path, "%s/%s", g_dir, base);
    unlink(path);
    if (prev)
        assert_int_equal(write_with(w, path, prev, n_prev), 0);

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit core = {0, 0};
        setrlimit(RLIMIT_CORE, &core);
        if (limit > 0) {
            struct rlimit fs = {(rlim_t)limit, (rlim_t)limit};
            /* The default action of SIGXFSZ (terminate) is the crash we want. */
            signal(SIGXFSZ, SIG_DFL);
            setrlimit(RLIMIT_FSIZE, &fs);
        } else {
            setenv("MOELAT_TEST_KILL_BEFORE_RENAME", base, 1);
        }
        write_with(w, path, big, BIG_FLOATS);
        _exit(0); /* reaching this means the kill did not happen */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status))
        fail_msg("%s limit %lld: the writer was not killed (status 0x%x)", writer_names[w],
                 (long long)limit, status);
    int want = limit > 0 ? SIGXFSZ : SIGKILL;
    assert_int_equal(WTERMSIG(status), want);

    /* The temporary file shows how far the write got. */
    off_t tmp_size = -1;
    assert_int_equal(count_tmp_files(base, &tmp_size), 1);
    if (limit > 0)
        assert_int_equal(tmp_size, limit);
    else
        assert_true(tmp_size >= (off_t)(BIG_FLOATS * sizeof(float)));
    remove_tmp_files(base);

    struct stat sb;
    if (!prev) {
        if (stat(path, &sb) == 0)
            fail_msg("%s limit %lld: %s exists after a killed first write", writer_names[w],
                     (long long)limit, path);
        return;
    }
    float *got = read_with(w, path, n_prev);
    if (!got)
        fail_msg("%s limit %lld: %s no longer holds the previous complete file", writer_names[w],
                 (long long)limit, path);
    assert_memory_equal(got, prev, n_prev * sizeof(float));
    free(got);
    printf("# %s killed at %s %lld: previous file intact\n", writer_names[w],
           limit > 0 ? "byte" : "rename", (long long)limit);
}

static void run_writer(writer w) {
    uint64_t seed = ts_seed();
    size_t n_prev = 1000;
    float *prev = malloc(n_prev * sizeof(float)), *big = malloc(BIG_FLOATS * sizeof(float));
    ts_random(prev, n_prev, 1.0, seed);
    ts_random(big, BIG_FLOATS, 1.0, seed + 1);
    /* Inside the first bytes (magic / length), inside the header, in the
     * data, near its end, and after everything but the rename. */
    off_t limits[] = {3, 40, 4096 + 17, (off_t)(BIG_FLOATS * sizeof(float)) / 2 + 5,
                      (off_t)(BIG_FLOATS * sizeof(float)) - 1, 0};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        kill_case(w, prev, n_prev, big, limits[i]);
        kill_case(w, NULL, 0, big, limits[i]);
    }
    /* Unkilled, the same write lands whole and leaves no temporary file. */
    char path[4096];
    snprintf(path, sizeof path, "%s/%s_whole.bin", g_dir, writer_names[w]);
    assert_int_equal(write_with(w, path, big, BIG_FLOATS), 0);
    float *got = read_with(w, path, BIG_FLOATS);
    assert_non_null(got);
    assert_memory_equal(got, big, BIG_FLOATS * sizeof(float));
    free(got);
    char base[128];
    snprintf(base, sizeof base, "%s_whole.bin", writer_names[w]);
    assert_int_equal(count_tmp_files(base, NULL), 0);
    free(prev);
    free(big);
}

static void test_kill_npy(void **state) {
    (void)state;
    run_writer(W_NPY);
}

static void test_kill_safetensors(void **state) {
    (void)state;
    run_writer(W_ST);
}

static void test_kill_raw(void **state) {
    (void)state;
    run_writer(W_RAW);
}

static void test_kill_kernel_cache(void **state) {
    (void)state;
    run_writer(W_CACHE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_npy),
        cmocka_unit_test(test_kill_safetensors),
        cmocka_unit_test(test_kill_raw),
        cmocka_unit_test(test_kill_kernel_cache),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
