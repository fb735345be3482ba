/* Error names, mlcl_fail and the cache directory rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include"backend/opencl/cl_runtime.h"

static void test_known_names(void **state) {
    (void)state;
    assert_string_equal(mlcl_error_name(CL_SUCCESS), "CL_SUCCESS");
    assert_string_equal(mlcl_error_name(CL_OUT_OF_RESOURCES), "CL_OUT_OF_RESOURCES");
    assert_string_equal(mlcl_error_name(-5), "CL_OUT_OF_RESOURCES");
    assert_string_equal(mlcl_error_name(CL_BUILD_PROGRAM_FAILURE), "CL_BUILD_PROGRAM_FAILURE");
    assert_string_equal(mlcl_error_name(CL_INVALID_KERNEL_ARGS), "CL_INVALID_KERNEL_ARGS");
    assert_string_equal(mlcl_error_name(-19), "CL_KERNEL_ARG_INFO_NOT_AVAILABLE");
    assert_string_equal(mlcl_error_name(-69), "CL_INVALID_PIPE_SIZE");
    assert_string_equal(mlcl_error_name(-70), "CL_INVALID_DEVICE_QUEUE");
    assert_string_equal(mlcl_error_name(-71), "CL_INVALID_SPEC_ID");
    assert_string_equal(mlcl_error_name(-72), "CL_MAX_SIZE_RESTRICTION_EXCEEDED");
    assert_string_equal(mlcl_error_name(-1001), "CL_PLATFORM_NOT_FOUND_KHR");
}

/* Every code from 0 down to -72 that OpenCL defines has its own name, and
 * the gap -20..-29 has none. */
static void test_every_defined_code(void **state) {
    (void)state;
    for (int c = 0; c >= -72; c--) {
        const char *n = mlcl_error_name(c);
        char copy[64];
        snprintf(copy, sizeof copy, "%s", n);
        int gap = c <= -20 && c >= -29;
        if (gap)
            assert_non_null(strstr(copy, "CL_UNKNOWN_ERROR"));
        else
            assert_null(strstr(copy, "UNKNOWN"));
        assert_int_equal(strncmp(copy, "CL_", 3), 0);
        /* Names are distinct: no other code gives the same one. */
        for (int d = c - 1; d >= -72 && !gap; d--)
            assert_string_not_equal(copy, mlcl_error_name(d));
    }
}

static void test_unknown_code(void **state) {
    (void)state;
    int code = -100000 - rand() % 100000;
    char want[64];
    snprintf(want, sizeof want, "CL_UNKNOWN_ERROR(%d)", code);
    assert_string_equal(mlcl_error_name(code), want);
    assert_string_equal(mlcl_error_name(1234), "CL_UNKNOWN_ERROR(1234)");
}

static void test_fail_format(void **state) {
    (void)state;
    char err[128];
    int k = rand() % 1000;
    assert_int_equal(mlcl_fail(err, sizeof err, CL_INVALID_VALUE, "clFoo(%d) on '%s'", k, "dev"),
                     -1);
    char want[128];
    snprintf(want, sizeof want, "clFoo(%d) on 'dev' failed: CL_INVALID_VALUE", k);
    assert_string_equal(err, want);
    /* A tiny buffer truncates instead of overflowing. */
    char small[8];
    memset(small, 'x', sizeof small);
    assert_int_equal(mlcl_fail(small, sizeof small, CL_OUT_OF_RESOURCES, "something"), -1);
    assert_int_equal(strlen(small), sizeof small - 1);
}

static void test_cache_dir(void **state) {
    (void)state;
    char buf[512];
    setenv("XDG_CACHE_HOME", "/tmp/xdg-test", 1);
    assert_string_equal(mlcl_cache_dir(buf, sizeof buf), "/tmp/xdg-test/moelat");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/tmp/home-test", 1);
    assert_string_equal(mlcl_cache_dir(buf, sizeof buf), "/tmp/home-test/.cache/moelat");
    unsetenv("HOME");
    assert_null(mlcl_cache_dir(buf, sizeof buf));
    setenv("XDG_CACHE_HOME", "/tmp/a-rather-long-cache-directory-name", 1);
    assert_null(mlcl_cache_dir(buf, 10));
}

int main(void) {
    unsigned seed = (unsigned)time(NULL);
    printf("seed %u\n", seed);
    srand(seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_names),
        cmocka_unit_test(test_every_defined_code),
        cmocka_unit_test(test_unknown_code),
        cmocka_unit_test(test_fail_format),
        cmocka_unit_test(test_cache_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
