/* `moelat-engine devices`: the table and --json agree with
 * mlcl_list_devices(); bad options are usage errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include"backend/opencl/cl_runtime.h"

/* Runs the CLI with args; stdout into *out (malloc'd), exit status back. */
static int run_cli(const char *args, char **out) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' devices %s 2>/dev/null", MOELAT_ENGINE_EXE, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    int st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_json_matches_listing(void **state) {
    (void)state;
    mlcl_device_info *devs = NULL;
    int n = 0;
    char err[1024];
    assert_int_equal(mlcl_list_devices(&devs, &n, err, sizeof err), 0);
    assert_true(n > 0);
    char *out;
    assert_int_equal(run_cli("--json", &out), 0);
    json_error_t jerr;
    json_t *arr = json_loads(out, 0, &jerr);
    if (!arr)
        fail_msg("--json output is not JSON (%s): %s", jerr.text, out);
    assert_true(json_is_array(arr));
    assert_int_equal((int)json_array_size(arr), n);
    for (int i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, (size_t)i);
        assert_int_equal(json_integer_value(json_object_get(o, "index")), i);
        assert_string_equal(json_string_value(json_object_get(o, "name")), devs[i].name);
        assert_string_equal(json_string_value(json_object_get(o, "platform")),
                            devs[i].platform_name);
        assert_string_equal(json_string_value(json_object_get(o, "vendor")), devs[i].vendor);
        assert_string_equal(json_string_value(json_object_get(o, "type")), devs[i].type);
        assert_string_equal(json_string_value(json_object_get(o, "version")), devs[i].version);
        assert_string_equal(json_string_value(json_object_get(o, "driver_version")),
                            devs[i].driver_version);
        assert_int_equal(json_integer_value(json_object_get(o, "compute_units")),
                         devs[i].compute_units);
        assert_int_equal(json_integer_value(json_object_get(o, "global_mem_bytes")),
                         devs[i].global_mem_bytes);
        assert_int_equal(json_integer_value(json_object_get(o, "max_alloc_bytes")),
                         devs[i].max_alloc_bytes);
        assert_int_equal(json_integer_value(json_object_get(o, "local_mem_bytes")),
                         devs[i].local_mem_bytes);
        assert_true(json_is_boolean(json_object_get(o, "fp64")));
        assert_int_equal(json_is_true(json_object_get(o, "fp64")), devs[i].fp64);
        assert_true(json_is_boolean(json_object_get(o, "fp16")));
        assert_int_equal(json_is_true(json_object_get(o, "fp16")), devs[i].fp16);
    }
    json_decref(arr);
    free(out);
    free(devs);
}

static void test_table(void **state) {
    (void)state;
    mlcl_device_info *devs = NULL;
    int n = 0;
    char err[1024];
    assert_int_equal(mlcl_list_devices(&devs, &n, err, sizeof err), 0);
    char *out;
    assert_int_equal(run_cli("", &out), 0);
    assert_non_null(strstr(out, "NAME"));
    assert_non_null(strstr(out, "FP64"));
    /* One header line and one line per device. */
    int lines = 0;
    for (const char *p = out; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, n + 1);
    for (int i = 0; i < n; i++) {
        assert_non_null(strstr(out, devs[i].name));
        assert_non_null(strstr(out, devs[i].driver_version));
    }
    free(out);
    free(devs);
}

static void test_options(void **state) {
    (void)state;
    char *out;
    char bad[64];
    snprintf(bad, sizeof bad, "--no-such-option-%d", rand() % 1000);
    assert_int_equal(run_cli(bad, &out), 2);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(run_cli("--help", &out), 0);
    assert_non_null(strstr(out, "usage"));
    free(out);
}

int main(void) {
    unsigned seed = (unsigned)time(NULL);
    printf("seed %u\n", seed);
    srand(seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_matches_listing),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
