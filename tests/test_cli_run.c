/* moelat-engine run/check from the outside: exit codes, JSON, messages. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <math.h>

#include "io/npy.h"
#include "test_support.h"

/* Runs the engine with args; returns the exit code, stdout in *out. */
static int engine(const char *args, char **out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s 2>/tmp/moelat-cli-stderr-%d", MOELAT_ENGINE_EXE, args, (int)getpid());
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += r;
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    int status = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *last_stderr(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/moelat-cli-stderr-%d", (int)getpid());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_usage_errors(void **state) {
    (void)state;
    assert_int_equal(engine("frobnicate", NULL), 2);
    assert_int_equal(engine("run --no-such-option", NULL), 2);
    assert_int_equal(engine("run --dims 3x4", NULL), 2);
    assert_int_equal(engine("run --mode fast", NULL), 2);
    assert_int_equal(engine("check --steps", NULL), 2);
    assert_int_equal(engine("--help", NULL), 0);
    assert_int_equal(engine("run --help", NULL), 0);
    assert_int_equal(engine("--version", NULL), 0);
}

/* run --json with no --mode takes the default, auto: the batched path on
 * the device that passes the upgrade check (PoCL where there is no GPU),
 * and the report says so; --mode percell and a device that cannot be
 * opened give the host path, each with its reason. */
static void test_run_json(void **state) {
    (void)state;
    struct {
        const char *opts, *mode, *path, *why;
    } cases[] = {
        {"", "auto", "batch", "passed the upgrade check"},
        {"--mode percell", "percell", "percell", "mode percell asked for"},
        {"--device no-such-device", "auto", "percell", "no device for the batched path: "},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char args[512], *out;
        snprintf(args, sizeof args, "run --dims 6x5x4 --steps 2 --threads 2 --seed %llu --json %s",
                 (unsigned long long)(ts_seed() + c), cases[c].opts);
        assert_int_equal(engine(args, &out), 0);
        json_error_t e;
        json_t *o = json_loads(out, 0, &e);
        assert_non_null(o);
        assert_int_equal(json_integer_value(json_object_get(o, "steps")), 2);
        assert_int_equal(json_integer_value(json_object_get(o, "cells")), 120);
        assert_true(json_real_value(json_object_get(o, "ms_per_step")) > 0);
        assert_string_equal(json_string_value(json_object_get(o, "mode")), cases[c].mode);
        assert_non_null(json_object_get(o, "device"));
        json_t *rep = json_object_get(o, "report");
        const char *why = json_string_value(json_object_get(rep, "path_reason"));
        printf("# %s: path %s (%s)\n", args, json_string_value(json_object_get(rep, "path")), why);
        assert_string_equal(json_string_value(json_object_get(rep, "path")), cases[c].path);
        assert_non_null(why);
        assert_non_null(strstr(why, cases[c].why));
        /* Every chunk of both steps on the path named, none on the other. */
        int batch = strcmp(cases[c].path, "batch") == 0;
        assert_true(json_integer_value(json_object_get(rep, batch ? "batch_chunks" : "percell_chunks")) >= 2);
        assert_int_equal(json_integer_value(json_object_get(rep, batch ? "percell_chunks" : "batch_chunks")), 0);
        json_decref(o);
        free(out);
    }
    /* The text report names the path too: the README's first command. */
    char *out;
    assert_int_equal(engine("run --dims 7x6x5 --steps 2 --threads 2", &out), 0);
    assert_non_null(strstr(out, "ms/step"));
    assert_non_null(strstr(out, "  path: batch (device "));
    free(out);
}

static void test_run_experiment_percell(void **state) {
    (void)state;
    char *out;
    assert_int_equal(engine("run --preset experiment --dims 16x16x16 --steps 2 --mode percell", &out), 0);
    assert_non_null(strstr(out, "ms/step"));
    free(out);
}

static void test_bad_files(void **state) {
    (void)state;
    assert_int_equal(engine("run --dims 6x5x4 --steps 1 --weights /nonexistent/w.safetensors", NULL), 1);
    char *err = last_stderr();
    assert_non_null(strstr(err, "/nonexistent/w.safetensors"));
    free(err);
    assert_int_equal(engine("run --dims 6x5x4 --steps 1 --state /nonexistent/s.npy", NULL), 1);
    err = last_stderr();
    assert_non_null(strstr(err, "/nonexistent/s.npy"));
    free(err);
}

static void test_save_and_reload(void **state) {
    (void)state;
    char *dir = ts_tmpdir();
    char args[2048];
    snprintf(args, sizeof args,
             "run --dims 6x5x4 --steps 2 --seed 7 --save-weights %s/w.safetensors --save-state %s/a.npy", dir, dir);
    assert_int_equal(engine(args, NULL), 0);
    snprintf(args, sizeof args, "run --dims 6x5x4 --steps 0 --seed 7 --save-state %s/init.npy", dir);
    assert_int_equal(engine(args, NULL), 0);
    snprintf(args, sizeof args,
             "run --dims 6x5x4 --steps 2 --seed 8 --weights %s/w.safetensors --state %s/init.npy --save-state %s/b.npy",
             dir, dir, dir);
    assert_int_equal(engine(args, NULL), 0);
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s/a.npy", dir);
    snprintf(pb, sizeof pb, "%s/b.npy", dir);
    size_t n = 6 * 5 * 4 * 24;
    float *a = ts_read_npy(pa, n), *b = ts_read_npy(pb, n);
    assert_memory_equal(a, b, n * sizeof(float));
    free(a);
    free(b);
    free(dir);
}

static void test_nonfinite_run(void **state) {
    (void)state;
    /* A NaN in the initial states is refused at load, before any step,
     * naming the file and the element; nothing is saved. */
    char *dir = ts_tmpdir();
    char in[1024], out[1024], args[4096], err[512];
    snprintf(in, sizeof in, "%s/bad.npy", dir);
    snprintf(out, sizeof out, "%s/after.npy", dir);
    size_t n = 6 * 5 * 4 * 24;
    float *v = malloc(n * sizeof(float));
    ts_random(v, n, 0.1, ts_seed());
    v[(2 + 6 * (1 + 5 * 3)) * 24 + 7] = NAN;
    int64_t shape[4] = {4, 5, 6, 24};
    assert_int_equal(npy_write(in, v, 4, shape, err, sizeof err), 0);
    snprintf(args, sizeof args, "run --dims 6x5x4 --steps 3 --state %s --save-state %s", in, out);
    assert_int_equal(engine(args, NULL), 1);
    char *e = last_stderr();
    assert_non_null(strstr(e, "non-finite"));
    assert_non_null(strstr(e, in));
    assert_non_null(strstr(e, "element (3, 1, 2, 7)"));
    free(e);
    assert_int_not_equal(access(out, F_OK), 0);
    free(v);
    free(dir);
}

static void test_check_command(void **state) {
    (void)state;
    char *out;
    assert_int_equal(engine("check --dims 9x8x7 --steps 2 --json", &out), 0);
    json_error_t e;
    json_t *o = json_loads(out, 0, &e);
    assert_non_null(o);
    assert_true(json_is_true(json_object_get(o, "pass")));
    assert_int_equal(json_array_size(json_object_get(o, "steps")), 2);
    json_decref(o);
    free(out);
    /* A tolerance of zero cannot be met by two float32 paths. */
    assert_int_equal(engine("check --dims 9x8x7 --steps 1 --max-tol 0 --mean-tol 0", NULL), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_errors),     cmocka_unit_test(test_run_json),
        cmocka_unit_test(test_run_experiment_percell), cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_save_and_reload),  cmocka_unit_test(test_check_command),
        cmocka_unit_test(test_nonfinite_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
