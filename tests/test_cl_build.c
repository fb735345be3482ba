/* Program building and the kernel binary cache: build errors carry the
 * log, hits and misses, damaged entries, the off switch. Every test gets
 * its own XDG_CACHE_HOME. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include"backend/opencl/cl_runtime.h"

static mlcl_context g_ctx;
static char g_tmp[256];

static int setup(void **state) {
    (void)state;
    mlcl_device_info dev;
    char err[2048];
    if (mlcl_select_device(NULL, &dev, err, sizeof err) ||
        mlcl_context_create(&dev, 1, 1, &g_ctx, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mlcl_context_release(&g_ctx);
    return 0;
}

static void rm_tree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* A fresh cache home per test; the cache lives in <tmp>/moelat. */
static int fresh_cache(void **state) {
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/test_cl_build.XXXXXX");
    if (!mkdtemp(g_tmp))
        return -1;
    setenv("XDG_CACHE_HOME", g_tmp, 1);
    g_ctx.no_kernel_cache = 0;
    mlcl_cache_stats_reset();
    return 0;
}

static int drop_cache(void **state) {
    (void)state;
    rm_tree(g_tmp);
    return 0;
}

/* Runs fn with stderr going into a file; returns what was written there
 * (malloc'd). */
static char *capture_stderr(int (*fn)(void *), void *arg, int *rc) {
    char path[] = "/tmp/test_cl_build_stderr.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    *rc = fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)n + 1);
    assert_int_equal(pread(fd, text, (size_t)n, 0), n);
    close(fd);
    unlink(path);
    /* Show it anyway, so that a failing test tells what was logged. */
    fputs(text, stderr);
    return text;
}

/* A kernel with a random constant, so that nothing cached outside this test
 * (PoCL's own cache included) can stand in for the build. */
typedef struct build_job {
    char source[512];
    char options[64];
    float c;
    cl_program prog;
    char err[16384];
} build_job;

static void make_job(build_job *j) {
    memset(j, 0, sizeof *j);
    j->c = (float)(rand() % 100000) / 1000.0f + 0.5f;
    snprintf(j->source, sizeof j->source,
             "__kernel void scale(__global const float *x, __global float *y) {\n"
             "    size_t i = get_global_id(0);\n"
             "    y[i] = x[i] * %.3ff + OFFSET;\n"
             "}\n",
             j->c);
    snprintf(j->options, sizeof j->options, "-DOFFSET=%d.0f", rand() % 100);
}

static int do_build(void *arg) {
    build_job *j = arg;
    if (j->prog) {
        clReleaseProgram(j->prog);
        j->prog = NULL;
    }
    return mlcl_build_program(&g_ctx, "scale", j->source, j->options, &j->prog, j->err,
                              sizeof j->err);
}

/* The built program computes what the source says, on random input. */
static void check_program(build_job *j) {
    int off = atoi(j->options + strlen("-DOFFSET="));
    cl_int rc;
    cl_kernel k = clCreateKernel(j->prog, "scale", &rc);
    assert_int_equal(rc, CL_SUCCESS);
    enum { N = 257 };
    float x[N], y[N];
    for (int i = 0; i < N; i++)
        x[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
    cl_mem bx = mlcl_create_buffer(&g_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof x, x,
                                   &rc);
    assert_int_equal(rc, CL_SUCCESS);
    cl_mem by = mlcl_create_buffer(&g_ctx, CL_MEM_WRITE_ONLY, sizeof y, NULL, &rc);
    assert_int_equal(rc, CL_SUCCESS);
    assert_int_equal(clSetKernelArg(k, 0, sizeof bx, &bx), CL_SUCCESS);
    assert_int_equal(clSetKernelArg(k, 1, sizeof by, &by), CL_SUCCESS);
    size_t global = N;
    assert_int_equal(mlcl_enqueue_kernel(g_ctx.queues[0], k, 1, &global, NULL, 0, NULL, NULL),
                     CL_SUCCESS);
    assert_int_equal(clEnqueueReadBuffer(g_ctx.queues[0], by, CL_TRUE, 0, sizeof y, y, 0, NULL,
                                         NULL),
                     CL_SUCCESS);
    float c = strtof(strstr(j->source, "* ") + 2, NULL);
    for (int i = 0; i < N; i++)
        assert_float_equal(y[i], x[i] * c + (float)off, 1e-4f);
    mlcl_release_buffer(bx);
    mlcl_release_buffer(by);
    clReleaseKernel(k);
}

static void free_job(build_job *j) {
    if (j->prog)
        clReleaseProgram(j->prog);
    j->prog = NULL;
}

/* The one .bin in the cache directory. */
static void entry_path(char *out, size_t len) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/moelat", g_tmp);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".bin") == 0) {
            snprintf(out, len, "%s/%s", dir, e->d_name);
            found++;
        } else if (e->d_name[0] != '.') {
            fail_msg("stray file in the cache: %s", e->d_name);
        }
    }
    closedir(d);
    assert_int_equal(found, 1);
}

static void assert_stats(unsigned hits, unsigned misses, unsigned corrupt, unsigned stores) {
    mlcl_cache_stats s;
    mlcl_cache_stats_get(&s);
    assert_int_equal(s.hits, hits);
    assert_int_equal(s.misses, misses);
    assert_int_equal(s.corrupt, corrupt);
    assert_int_equal(s.stores, stores);
}

static void test_syntax_error_has_log(void **state) {
    (void)state;
    build_job j;
    make_job(&j);
    /* Break it: an operator with no right operand. */
    char *semi = strstr(j.source, "OFFSET;");
    memcpy(semi, "OFFSET+;", 8);
    int rc;
    free(capture_stderr(do_build, &j, &rc));
    assert_int_equal(rc, -1);
    assert_null(j.prog);
    assert_non_null(strstr(j.err, "'scale'"));
    assert_non_null(strstr(j.err, g_ctx.info.name));
    assert_non_null(strstr(j.err, j.options));
    assert_non_null(strstr(j.err, "CL_BUILD_PROGRAM_FAILURE"));
    const char *log = strstr(j.err, "build log:\n");
    assert_non_null(log);
    assert_non_null(strstr(log, "error"));
    /* Nothing is stored for a failed build. */
    mlcl_cache_stats s;
    mlcl_cache_stats_get(&s);
    assert_int_equal(s.stores, 0);
}

static void test_miss_then_hit(void **state) {
    (void)state;
    build_job j;
    make_job(&j);
    int rc;
    free(capture_stderr(do_build, &j, &rc));
    assert_int_equal(rc, 0);
    assert_stats(0, 1, 0, 1);
    char path[1024];
    entry_path(path, sizeof path);
    check_program(&j);

    free(capture_stderr(do_build, &j, &rc));
    assert_int_equal(rc, 0);
    assert_stats(1, 1, 0, 1);
    check_program(&j);

    /* Other options are another entry. */
    build_job k = j;
    k.prog = NULL;
    snprintf(k.options, sizeof k.options, "-DOFFSET=%d.0f", 100 + rand() % 100);
    free(capture_stderr(do_build, &k, &rc));
    assert_int_equal(rc, 0);
    assert_stats(1, 2, 0, 2);
    check_program(&k);
    free_job(&k);
    free_job(&j);
}

typedef enum { FLIP_PAYLOAD, FLIP_HEADER, TRUNCATE, FORGE } damage;

static void damage_entry(const char *path, damage how) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    assert_true(n > 32);
    unsigned char *b = malloc((size_t)n);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    long keep = n;
    switch (how) {
    case FLIP_PAYLOAD: {
        int flips = 1 + rand() % 4;
        for (int i = 0; i < flips; i++)
            b[32 + rand() % (n - 32)] ^= (unsigned char)(1 + rand() % 255);
        break;
    }
    case FLIP_HEADER:
        b[rand() % 8] ^= (unsigned char)(1 + rand() % 255);
        break;
    case TRUNCATE:
        keep = rand() % (n - 1);
        break;
    case FORGE: {
        /* A sound header around bytes the driver cannot load. */
        uint64_t len = (uint64_t)(n - 32);
        for (long i = 32; i < n; i++)
            b[i] = (unsigned char)rand();
        uint64_t h = XXH64(b + 32, (size_t)len, 0);
        for (int i = 0; i < 8; i++)
            b[24 + i] = (unsigned char)(h >> (8 * i));
        break;
    }
    }
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, (size_t)keep, f), (size_t)keep);
    fclose(f);
    free(b);
}

static void run_damage(damage how, const char *expect) {
    build_job j;
    make_job(&j);
    int rc;
    free(capture_stderr(do_build, &j, &rc));
    assert_int_equal(rc, 0);
    char path[1024];
    entry_path(path, sizeof path);
    damage_entry(path, how);

    char *log = capture_stderr(do_build, &j, &rc);
    if (rc)
        fail_msg("%s", j.err);
    assert_non_null(strstr(log, "kernel_cache"));
    assert_non_null(strstr(log, path));
    assert_non_null(strstr(log, expect));
    free(log);
    assert_stats(0, 2, 1, 2);
    check_program(&j);

    /* The entry was rewritten: the next build is a clean hit. */
    log = capture_stderr(do_build, &j, &rc);
    assert_int_equal(rc, 0);
    assert_null(strstr(log, "kernel_cache"));
    free(log);
    assert_stats(1, 2, 1, 2);
    check_program(&j);
    free_job(&j);
}

static void test_flipped_payload(void **state) {
    (void)state;
    run_damage(FLIP_PAYLOAD, "checksum");
}

static void test_flipped_magic(void **state) {
    (void)state;
    run_damage(FLIP_HEADER, "magic");
}

static void test_truncated(void **state) {
    (void)state;
    run_damage(TRUNCATE, "rejected");
}

static void test_driver_rejects(void **state) {
    (void)state;
    run_damage(FORGE, "rejected");
}

static void test_cache_off(void **state) {
    (void)state;
    g_ctx.no_kernel_cache = 1; /* tuning kernel_cache=off */
    build_job j;
    make_job(&j);
    int rc;
    for (int i = 0; i < 2; i++) {
        free(capture_stderr(do_build, &j, &rc));
        assert_int_equal(rc, 0);
        check_program(&j);
    }
    assert_stats(0, 0, 0, 0);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/moelat", g_tmp);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            assert_true(e->d_name[0] == '.');
        closedir(d);
    }
    free_job(&j);
    g_ctx.no_kernel_cache = 0;
}

/* A cache home that cannot hold a directory: a warning, and the build
 * still succeeds. */
static void test_unusable_dir(void **state) {
    (void)state;
    char file[512];
    snprintf(file, sizeof file, "%s/plain-file", g_tmp);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    setenv("XDG_CACHE_HOME", file, 1);
    build_job j;
    make_job(&j);
    int rc;
    char *log = capture_stderr(do_build, &j, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(log, "kernel_cache"));
    assert_non_null(strstr(log, file));
    free(log);
    check_program(&j);
    assert_stats(0, 0, 0, 0);
    free_job(&j);
}

/* The cache directory is made with its parents. */
static void test_creates_parents(void **state) {
    (void)state;
    char deep[512];
    snprintf(deep, sizeof deep, "%s/a%d/b/c", g_tmp, rand() % 1000);
    setenv("XDG_CACHE_HOME", deep, 1);
    build_job j;
    make_job(&j);
    int rc;
    free(capture_stderr(do_build, &j, &rc));
    assert_int_equal(rc, 0);
    assert_stats(0, 1, 0, 1);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/moelat", deep);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    free_job(&j);
}

static void test_embedded_helpers_build(void **state) {
    (void)state;
    const char *src = mlcl_embedded_source("moelat_helpers.cl");
    assert_non_null(src);
    cl_program p = NULL;
    char err[16384];
    if (mlcl_build_program(&g_ctx, "moelat_helpers.cl", src, "-cl-std=CL1.2", &p, err,
                           sizeof err))
        fail_msg("%s", err);
    clReleaseProgram(p);
}

/* The gate kernel's cells per work-group follow the device's local memory
 * (MOELAT_LOCAL_MEM): at S = 128 four cells need 27 KB, two 14 KB, one
 * 7 KB. For each limit the program says how many cells it chose
 * (ml_gate_cells_per_group) and ml_gate_combine's local footprint fits. */
static void test_gate_local_fit(void **state) {
    (void)state;
    const char *helpers = mlcl_embedded_source("moelat_helpers.cl");
    const char *step = mlcl_embedded_source("moelat_step.cl");
    assert_non_null(helpers);
    assert_non_null(step);
    size_t len = strlen(helpers) + strlen(step) + 2;
    char *src = malloc(len);
    assert_non_null(src);
    snprintf(src, len, "%s\n%s", helpers, step);
    const struct {
        unsigned long limit;
        size_t cells;
    } cases[] = {{1048576, 4}, {49152, 4}, {20000, 2}, {10000, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char opts[256], err[16384];
        snprintf(opts, sizeof opts,
                 "-cl-std=CL1.2 -D MOELAT_S=128 -D MOELAT_GH=128 -D MOELAT_WG=128 -D ML_AGG_V=4 "
                 "-D ML_GATE_CELLS=4 -D MOELAT_LOCAL_MEM=%lu",
                 cases[i].limit);
        cl_program p = NULL;
        if (mlcl_build_program(&g_ctx, "moelat_step.cl", src, opts, &p, err, sizeof err))
            fail_msg("%s", err);
        cl_int e1, e2;
        cl_kernel probe = clCreateKernel(p, "ml_gate_cells_per_group", &e1);
        cl_kernel gate = clCreateKernel(p, "ml_gate_combine", &e2);
        assert_int_equal(e1, CL_SUCCESS);
        assert_int_equal(e2, CL_SUCCESS);
        size_t wg[3] = {0, 0, 0};
        cl_ulong mem = 0;
        assert_int_equal(clGetKernelWorkGroupInfo(probe, g_ctx.info.device, CL_KERNEL_COMPILE_WORK_GROUP_SIZE,
                                                  sizeof wg, wg, NULL),
                         CL_SUCCESS);
        assert_int_equal(clGetKernelWorkGroupInfo(gate, g_ctx.info.device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof mem,
                                                  &mem, NULL),
                         CL_SUCCESS);
        printf("# MOELAT_LOCAL_MEM=%lu: %zu gate cells per work-group, %llu bytes of local memory\n",
               cases[i].limit, wg[0], (unsigned long long)mem);
        assert_int_equal(wg[0], cases[i].cells);
        assert_true(mem <= cases[i].limit);
        clReleaseKernel(gate);
        clReleaseKernel(probe);
        clReleaseProgram(p);
    }
    free(src);
}

static void test_bad_arguments(void **state) {
    (void)state;
    cl_program p = (cl_program)1;
    char err[512];
    assert_int_equal(mlcl_build_program(&g_ctx, "nothing", NULL, "", &p, err, sizeof err), -1);
    assert_null(p);
    assert_non_null(strstr(err, "nothing"));
    mlcl_context none;
    memset(&none, 0, sizeof none);
    assert_int_equal(mlcl_build_program(&none, "orphan", "x", "", &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "orphan"));
}

#define T(f) cmocka_unit_test_setup_teardown(f, fresh_cache, drop_cache)

int main(void) {
    unsigned seed = (unsigned)time(NULL);
    printf("seed %u\n", seed);
    srand(seed);
    const struct CMUnitTest tests[] = {
        T(test_syntax_error_has_log), T(test_miss_then_hit),   T(test_flipped_payload),
        T(test_flipped_magic),        T(test_truncated),       T(test_driver_rejects),
        T(test_cache_off),            T(test_unusable_dir),    T(test_creates_parents),
        T(test_embedded_helpers_build), T(test_gate_local_fit), T(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
