/* Device listing and selection, contexts and event timing on the machine's
 * OpenCL devices (PoCL on CI). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include"backend/opencl/cl_runtime.h"

static mlcl_device_info *g_devs;

static int has_nocase(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return 1;
    return 0;
}
static int g_n;

static int setup(void **state) {
    (void)state;
    char err[1024];
    if (mlcl_list_devices(&g_devs, &g_n, err, sizeof err)) {
        fprintf(stderr, "listing devices: %s\n", err);
        return -1;
    }
    if (g_n == 0) {
        fprintf(stderr, "no OpenCL device: these tests need one (PoCL)\n");
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    free(g_devs);
    return 0;
}

static void test_listing_fields(void **state) {
    (void)state;
    int saw_pocl = 0;
    for (int i = 0; i < g_n; i++) {
        const mlcl_device_info *d = &g_devs[i];
        assert_int_equal(d->index, i);
        assert_non_null(d->device);
        assert_non_null(d->platform);
        assert_true(strlen(d->name) > 0);
        assert_true(strlen(d->platform_name) > 0);
        assert_int_equal(strncmp(d->version, "OpenCL ", 7), 0);
        assert_int_equal(strncmp(d->platform_version, "OpenCL ", 7), 0);
        assert_true(strlen(d->driver_version) > 0);
        assert_true(strcmp(d->type, "GPU") == 0 || strcmp(d->type, "CPU") == 0 ||
                    strcmp(d->type, "ACCELERATOR") == 0 || strcmp(d->type, "OTHER") == 0);
        assert_true(d->compute_units >= 1);
        assert_true(d->global_mem_bytes >= (cl_ulong)64 << 20);
        assert_true(d->max_alloc_bytes >= (cl_ulong)1 << 20);
        assert_true(d->max_alloc_bytes <= d->global_mem_bytes);
        assert_true(d->local_mem_bytes >= 1024);
        assert_true(d->max_work_group_size >= 1);
        assert_true(d->fp64 == 0 || d->fp64 == 1);
        assert_true(d->fp16 == 0 || d->fp16 == 1);
        if (strstr(d->platform_name, "Portable Computing Language")) {
            saw_pocl = 1;
            assert_string_equal(d->type, "CPU");
            /* PoCL's CPU device does doubles. */
            assert_int_equal(d->fp64, 1);
        }
    }
    if (!saw_pocl)
        fprintf(stderr, "note: no PoCL device here; checked the devices that exist\n");
}

static void test_select_default(void **state) {
    (void)state;
    unsetenv("MOELAT_DEVICE");
    mlcl_device_info d;
    char err[2048];
    assert_int_equal(mlcl_select_device(NULL, &d, err, sizeof err), 0);
    int want = 0;
    for (int i = 0; i < g_n; i++)
        if (strcmp(g_devs[i].type, "GPU") == 0) {
            want = i;
            break;
        }
    assert_int_equal(d.index, want);
    assert_ptr_equal(d.device, g_devs[want].device);
    assert_int_equal(mlcl_select_device("", &d, err, sizeof err), 0);
    assert_int_equal(d.index, want);
}

static void test_select_index(void **state) {
    (void)state;
    unsetenv("MOELAT_DEVICE");
    int i = rand() % g_n;
    char spec[16];
    snprintf(spec, sizeof spec, "%d", i);
    mlcl_device_info d;
    char err[2048];
    assert_int_equal(mlcl_select_device(spec, &d, err, sizeof err), 0);
    assert_int_equal(d.index, i);
    assert_string_equal(d.name, g_devs[i].name);
}

/* The error must list every device as "  <i>: <name> (<platform>, <type>)". */
static void assert_lists_devices(const char *err) {
    for (int i = 0; i < g_n; i++) {
        char line[700];
        snprintf(line, sizeof line, "\n  %d: %s (%s, %s)", i, g_devs[i].name,
                 g_devs[i].platform_name, g_devs[i].type);
        assert_non_null(strstr(err, line));
    }
}

static void test_select_index_out_of_range(void **state) {
    (void)state;
    unsetenv("MOELAT_DEVICE");
    char spec[16];
    snprintf(spec, sizeof spec, "%d", g_n + rand() % 50);
    mlcl_device_info d;
    char err[4096] = "";
    assert_int_equal(mlcl_select_device(spec, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, spec));
    assert_non_null(strstr(err, "out of range"));
    assert_lists_devices(err);
}

static void test_select_name_substring(void **state) {
    (void)state;
    unsetenv("MOELAT_DEVICE");
    int i = rand() % g_n;
    const char *name = g_devs[i].name;
    size_t len = strlen(name);
    size_t start = (size_t)rand() % len;
    size_t n = 1 + (size_t)rand() % (len - start);
    if (n > 12)
        n = 12;
    char spec[16];
    memcpy(spec, name + start, n);
    spec[n] = '\0';
    /* Flip the case of the letters: matching ignores case. */
    for (size_t k = 0; k < n; k++)
        spec[k] = (char)(isupper((unsigned char)spec[k]) ? tolower((unsigned char)spec[k])
                                                         : toupper((unsigned char)spec[k]));
    int all_digits = 1;
    for (size_t k = 0; k < n; k++)
        all_digits &= isdigit((unsigned char)spec[k]) != 0;
    if (all_digits) /* would be read as an index */
        snprintf(spec, sizeof spec, "%.8s", name);
    mlcl_device_info d;
    char err[2048];
    assert_int_equal(mlcl_select_device(spec, &d, err, sizeof err), 0);
    /* The first device whose name holds it, which may come before i. */
    assert_true(d.index <= i);
    assert_true(has_nocase(d.name, spec));
    for (int k = 0; k < d.index; k++)
        assert_false(has_nocase(g_devs[k].name, spec));
}

static void test_select_no_match(void **state) {
    (void)state;
    unsetenv("MOELAT_DEVICE");
    char spec[64];
    snprintf(spec, sizeof spec, "no-such-device-%08x", (unsigned)rand());
    mlcl_device_info d;
    char err[4096] = "";
    assert_int_equal(mlcl_select_device(spec, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, spec));
    assert_lists_devices(err);
}

static void test_select_env(void **state) {
    (void)state;
    mlcl_device_info d;
    char err[4096] = "";
    int i = rand() % g_n;
    char spec[16];
    snprintf(spec, sizeof spec, "%d", i);
    setenv("MOELAT_DEVICE", spec, 1);
    assert_int_equal(mlcl_select_device(NULL, &d, err, sizeof err), 0);
    assert_int_equal(d.index, i);

    char bad[64];
    snprintf(bad, sizeof bad, "nothing-like-this-%08x", (unsigned)rand());
    setenv("MOELAT_DEVICE", bad, 1);
    assert_int_equal(mlcl_select_device("", &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "MOELAT_DEVICE"));
    assert_non_null(strstr(err, bad));
    assert_lists_devices(err);
    /* An explicit spec wins over the environment. */
    assert_int_equal(mlcl_select_device(spec, &d, err, sizeof err), 0);
    assert_int_equal(d.index, i);
    unsetenv("MOELAT_DEVICE");
}

static void test_context_queues(void **state) {
    (void)state;
    mlcl_context ctx;
    char err[1024];
    assert_int_equal(mlcl_context_create(&g_devs[0], 0, 1, &ctx, err, sizeof err), -1);
    assert_non_null(strstr(err, g_devs[0].name));
    assert_int_equal(mlcl_context_create(&g_devs[0], MLCL_MAX_QUEUES + 1, 1, &ctx, err, sizeof err),
                     -1);
    int nq = 1 + rand() % 4;
    assert_int_equal(mlcl_context_create(&g_devs[0], nq, 1, &ctx, err, sizeof err), 0);
    assert_int_equal(ctx.n_queues, nq);
    for (int q = 0; q < nq; q++) {
        cl_command_queue_properties props = 0;
        assert_int_equal(clGetCommandQueueInfo(ctx.queues[q], CL_QUEUE_PROPERTIES, sizeof props,
                                               &props, NULL),
                         CL_SUCCESS);
        assert_true(props & CL_QUEUE_PROFILING_ENABLE);
        assert_false(props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE);
    }
    assert_null(ctx.queues[nq]);
    mlcl_context_release(&ctx);
    assert_null(ctx.context);
    mlcl_context_release(&ctx); /* twice is harmless */
}

static const char *k_axpy =
    "__kernel void axpy(float a, __global const float *x, __global const float *y,\n"
    "                   __global float *out, int n) {\n"
    "    int i = get_global_id(0);\n"
    "    if (i < n) out[i] = a * x[i] + y[i];\n"
    "}\n";

/* A real kernel run on random data: result and profiled time. */
static void test_run_and_time(void **state) {
    (void)state;
    setenv("MOELAT_NO_KERNEL_CACHE", "1", 1);
    mlcl_context ctx;
    char err[8192];
    assert_int_equal(mlcl_context_create(&g_devs[0], 2, 1, &ctx, err, sizeof err), 0);
    cl_program prog = NULL;
    int rc = mlcl_build_program(&ctx, "axpy", k_axpy, "-cl-std=CL1.2", &prog, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    cl_int cr;
    cl_kernel k = clCreateKernel(prog, "axpy", &cr);
    assert_int_equal(cr, CL_SUCCESS);

    int n = 1000 + rand() % 5000;
    float a = (float)rand() / (float)RAND_MAX * 4.0f - 2.0f;
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n),
          *out = malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) {
        x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        y[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    }
    long live0 = mlcl_live_buffers();
    size_t bytes = sizeof(float) * (size_t)n;
    cl_mem bx = mlcl_create_buffer(&ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, x, &cr);
    assert_int_equal(cr, CL_SUCCESS);
    cl_mem by = mlcl_create_buffer(&ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, y, &cr);
    assert_int_equal(cr, CL_SUCCESS);
    cl_mem bo = mlcl_create_buffer(&ctx, CL_MEM_WRITE_ONLY, bytes, NULL, &cr);
    assert_int_equal(cr, CL_SUCCESS);
    assert_int_equal(mlcl_live_buffers(), live0 + 3);
    assert_int_equal(clSetKernelArg(k, 0, sizeof a, &a), CL_SUCCESS);
    assert_int_equal(clSetKernelArg(k, 1, sizeof bx, &bx), CL_SUCCESS);
    assert_int_equal(clSetKernelArg(k, 2, sizeof by, &by), CL_SUCCESS);
    assert_int_equal(clSetKernelArg(k, 3, sizeof bo, &bo), CL_SUCCESS);
    assert_int_equal(clSetKernelArg(k, 4, sizeof n, &n), CL_SUCCESS);
    size_t global = (size_t)n;
    cl_event ev = NULL;
    cl_command_queue q = ctx.queues[1];
    assert_int_equal(mlcl_enqueue_kernel(q, k, 1, &global, NULL, 0, NULL, &ev), CL_SUCCESS);
    assert_int_equal(clEnqueueReadBuffer(q, bo, CL_TRUE, 0, bytes, out, 1, &ev, NULL),
                     CL_SUCCESS);
    for (int i = 0; i < n; i++)
        assert_float_equal(out[i], a * x[i] + y[i], 1e-6f);
    double ms = mlcl_event_ms(ev);
    assert_true(ms >= 0.0 && ms < 10000.0);
    assert_true(isfinite(ms));
    assert_true(mlcl_event_ms(NULL) == 0.0);
    clReleaseEvent(ev);
    mlcl_release_buffer(bx);
    mlcl_release_buffer(by);
    mlcl_release_buffer(bo);
    assert_int_equal(mlcl_live_buffers(), live0);
    clReleaseKernel(k);
    clReleaseProgram(prog);
    mlcl_context_release(&ctx);
    free(x);
    free(y);
    free(out);
    unsetenv("MOELAT_NO_KERNEL_CACHE");
}

static void test_embedded_source(void **state) {
    (void)state;
    const char *s = mlcl_embedded_source("moelat_helpers.cl");
    assert_non_null(s);
    assert_non_null(strstr(s, "ml_gelu"));
    assert_null(mlcl_embedded_source("no_such_file.cl"));
    assert_null(mlcl_embedded_source(NULL));
    assert_null(mlcl_embedded_source(""));
}

int main(void) {
    unsigned seed = (unsigned)time(NULL);
    printf("seed %u\n", seed);
    srand(seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listing_fields),
        cmocka_unit_test(test_select_default),
        cmocka_unit_test(test_select_index),
        cmocka_unit_test(test_select_index_out_of_range),
        cmocka_unit_test(test_select_name_substring),
        cmocka_unit_test(test_select_no_match),
        cmocka_unit_test(test_select_env),
        cmocka_unit_test(test_context_queues),
        cmocka_unit_test(test_run_and_time),
        cmocka_unit_test(test_embedded_source),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
