/* Fault injection through the wrappers, from the API and from
 * MOELAT_FAULT, and the live-buffer count. */
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

static mlcl_context g_ctx;
static cl_kernel g_kernel;
static cl_program g_prog;
static int g_env_alloc, g_env_enqueue;

static const char *k_fill =
    "__kernel void fill(__global float *y, float v) { y[get_global_id(0)] = v; }\n";

static int setup(void **state) {
    (void)state;
    mlcl_device_info dev;
    char err[8192];
    if (mlcl_select_device(NULL, &dev, err, sizeof err) ||
        mlcl_context_create(&dev, 1, 1, &g_ctx, err, sizeof err) ||
        (g_ctx.no_kernel_cache = 1, 0) || /* a cached binary would skip the build fault */
        mlcl_build_program(&g_ctx, "fill", k_fill, "", &g_prog, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    cl_int rc;
    g_kernel = clCreateKernel(g_prog, "fill", &rc);
    return rc == CL_SUCCESS ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    clReleaseKernel(g_kernel);
    clReleaseProgram(g_prog);
    mlcl_context_release(&g_ctx);
    return 0;
}

/* Makes `attempts` allocations: the nth must fail as injected (0: none),
 * every other must succeed, and the live count must follow. */
static void expect_alloc_fault_at(int nth, int attempts) {
    long live0 = mlcl_live_buffers();
    cl_mem bufs[16];
    assert_true(attempts <= 16);
    for (int i = 1; i <= attempts; i++) {
        cl_int rc = CL_SUCCESS;
        size_t size = 64 + (size_t)(rand() % 4096);
        bufs[i - 1] = mlcl_create_buffer(&g_ctx, CL_MEM_READ_WRITE, size, NULL, &rc);
        if (i == nth) {
            assert_null(bufs[i - 1]);
            assert_int_equal(rc, CL_MEM_OBJECT_ALLOCATION_FAILURE);
        } else {
            assert_non_null(bufs[i - 1]);
            assert_int_equal(rc, CL_SUCCESS);
        }
    }
    int made = attempts - (nth >= 1 && nth <= attempts);
    assert_int_equal(mlcl_live_buffers(), live0 + made);
    for (int i = 0; i < attempts; i++)
        mlcl_release_buffer(bufs[i]);
    assert_int_equal(mlcl_live_buffers(), live0);
}

static cl_int run_fill(cl_mem buf, size_t n, float v, cl_event *ev) {
    assert_int_equal(clSetKernelArg(g_kernel, 0, sizeof buf, &buf), CL_SUCCESS);
    assert_int_equal(clSetKernelArg(g_kernel, 1, sizeof v, &v), CL_SUCCESS);
    return mlcl_enqueue_kernel(g_ctx.queues[0], g_kernel, 1, &n, NULL, 0, NULL, ev);
}

/* MOELAT_FAULT was set by main before anything used the layer. */
static void test_env_faults(void **state) {
    (void)state;
    expect_alloc_fault_at(g_env_alloc, g_env_alloc + 2);
    cl_int rc;
    cl_mem b = mlcl_create_buffer(&g_ctx, CL_MEM_READ_WRITE, 4096, NULL, &rc);
    assert_int_equal(rc, CL_SUCCESS);
    for (int i = 1; i <= g_env_enqueue + 1; i++) {
        cl_event ev = (cl_event)1;
        cl_int r = run_fill(b, 1024, (float)i, &ev);
        if (i == g_env_enqueue) {
            assert_int_equal(r, CL_OUT_OF_RESOURCES);
            assert_null(ev);
        } else {
            assert_int_equal(r, CL_SUCCESS);
            clReleaseEvent(ev);
        }
    }
    assert_int_equal(clFinish(g_ctx.queues[0]), CL_SUCCESS);
    mlcl_release_buffer(b);
}

static void test_inject_alloc(void **state) {
    (void)state;
    int nth = 1 + rand() % 5;
    mlcl_fault_inject(MLCL_FAULT_ALLOC, nth);
    expect_alloc_fault_at(nth, nth + 3);
    /* Once only: the next run has no fault. */
    expect_alloc_fault_at(0, 4);
}

static void test_inject_clear(void **state) {
    (void)state;
    mlcl_fault_inject(MLCL_FAULT_ALLOC, 2);
    mlcl_fault_inject(MLCL_FAULT_ALLOC, 0);
    expect_alloc_fault_at(0, 4);
    mlcl_fault_inject(MLCL_FAULT_ALLOC, 1);
    mlcl_fault_inject(MLCL_FAULT_ENQUEUE, 1);
    mlcl_fault_inject(MLCL_FAULT_NONE, 0);
    expect_alloc_fault_at(0, 2);
}

static void test_inject_enqueue(void **state) {
    (void)state;
    enum { N = 513 };
    cl_int rc;
    cl_mem b = mlcl_create_buffer(&g_ctx, CL_MEM_READ_WRITE, N * sizeof(float), NULL, &rc);
    assert_int_equal(rc, CL_SUCCESS);
    int nth = 1 + rand() % 3;
    mlcl_fault_inject(MLCL_FAULT_ENQUEUE, nth);
    float last = 0.0f;
    for (int i = 1; i <= nth + 1; i++) {
        float v = (float)rand() / (float)RAND_MAX;
        cl_int r = run_fill(b, N, v, NULL);
        if (i == nth) {
            assert_int_equal(r, CL_OUT_OF_RESOURCES);
        } else {
            assert_int_equal(r, CL_SUCCESS);
            last = v;
        }
    }
    /* The failed enqueue really did not run: the buffer holds the last
     * successful fill (the last call always succeeds). */
    float out[N];
    assert_int_equal(clEnqueueReadBuffer(g_ctx.queues[0], b, CL_TRUE, 0, sizeof out, out, 0,
                                         NULL, NULL),
                     CL_SUCCESS);
    for (int i = 0; i < N; i++)
        assert_float_equal(out[i], last, 0.0f);
    mlcl_release_buffer(b);
}

static void test_inject_build(void **state) {
    (void)state;
    int nth = 1 + rand() % 2;
    mlcl_fault_inject(MLCL_FAULT_BUILD, nth);
    for (int i = 1; i <= nth + 1; i++) {
        cl_program p = NULL;
        char err[8192] = "";
        int rc = mlcl_build_program(&g_ctx, "fill-again", k_fill, "-DX=1", &p, err, sizeof err);
        if (i == nth) {
            assert_int_equal(rc, -1);
            assert_null(p);
            assert_non_null(strstr(err, "injected"));
            assert_non_null(strstr(err, "fill-again"));
            assert_non_null(strstr(err, g_ctx.info.name));
            assert_non_null(strstr(err, "-DX=1"));
        } else {
            if (rc)
                fail_msg("%s", err);
            clReleaseProgram(p);
        }
    }
}

static void test_release_null(void **state) {
    (void)state;
    long live = mlcl_live_buffers();
    mlcl_release_buffer(NULL);
    assert_int_equal(mlcl_live_buffers(), live);
    cl_int rc = CL_SUCCESS;
    assert_null(mlcl_create_buffer(NULL, CL_MEM_READ_WRITE, 16, NULL, &rc));
    assert_int_equal(rc, CL_INVALID_CONTEXT);
    /* A real driver error is passed through and counts nothing. */
    assert_null(mlcl_create_buffer(&g_ctx, CL_MEM_READ_WRITE, 0, NULL, &rc));
    assert_int_equal(rc, CL_INVALID_BUFFER_SIZE);
    assert_int_equal(mlcl_live_buffers(), live);
}

int main(void) {
    unsigned seed = (unsigned)time(NULL);
    printf("seed %u\n", seed);
    srand(seed);
    g_env_alloc = 1 + rand() % 4;
    g_env_enqueue = 1 + rand() % 3;
    char env[64];
    snprintf(env, sizeof env, "alloc:%d,enqueue:%d", g_env_alloc, g_env_enqueue);
    setenv("MOELAT_FAULT", env, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_faults),    cmocka_unit_test(test_inject_alloc),
        cmocka_unit_test(test_inject_clear),  cmocka_unit_test(test_inject_enqueue),
        cmocka_unit_test(test_inject_build),  cmocka_unit_test(test_release_null),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
