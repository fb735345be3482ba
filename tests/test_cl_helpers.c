/* Accuracy of the helpers' own special functions (moelat_helpers.cl), run
 * on the OpenCL device against the C library in double precision:
 * ml_erf (a rational fit, used by every GELU of every kernel), ml_gelu
 * and ml_tanh, on a dense grid, fresh random points and special values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include"backend/opencl/cl_runtime.h"

static const char *EVAL_KERNEL =
    "__kernel void eval(__global const float *x, __global float *e, __global float *g,\n"
    "                   __global float *t, int n) {\n"
    "    int i = (int)get_global_id(0);\n"
    "    if (i >= n)\n"
    "        return;\n"
    "    e[i] = ml_erf(x[i]);\n"
    "    g[i] = ml_gelu(x[i]);\n"
    "    t[i] = ml_tanh(x[i]);\n"
    "}\n";

/* Absolute error bounds (the fit's is 3.5e-7 in float32; tanh's one exp
 * and one division give about 3e-7 near 0). GELU(v) = v (1 + erf) / 2
 * carries erf's error times |v| / 2 plus float rounding of the result. */
#define ERF_TOL 5e-7
#define TANH_TOL 5e-7

typedef struct results {
    float *x, *e, *g, *t;
    int n;
} results;

/* Evaluates the three helpers at x[0..n) on the device. */
static void run_helpers(results *r) {
    mlcl_device_info dev;
    mlcl_context ctx;
    char err[16384];
    if (mlcl_select_device(NULL, &dev, err, sizeof err) || mlcl_context_create(&dev, 1, 1, &ctx, err, sizeof err))
        fail_msg("%s", err);
    const char *helpers = mlcl_embedded_source("moelat_helpers.cl");
    assert_non_null(helpers);
    size_t len = strlen(helpers) + strlen(EVAL_KERNEL) + 2;
    char *src = malloc(len);
    assert_non_null(src);
    snprintf(src, len, "%s\n%s", helpers, EVAL_KERNEL);
    cl_program prog = NULL;
    if (mlcl_build_program(&ctx, "helper accuracy", src, "-cl-std=CL1.2", &prog, err, sizeof err))
        fail_msg("%s", err);
    free(src);
    cl_int rc;
    cl_kernel k = clCreateKernel(prog, "eval", &rc);
    assert_int_equal(rc, CL_SUCCESS);
    size_t bytes = (size_t)r->n * sizeof(float);
    cl_mem bx = clCreateBuffer(ctx.context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, r->x, &rc);
    assert_int_equal(rc, CL_SUCCESS);
    cl_mem out[3];
    for (int i = 0; i < 3; i++) {
        out[i] = clCreateBuffer(ctx.context, CL_MEM_WRITE_ONLY, bytes, NULL, &rc);
        assert_int_equal(rc, CL_SUCCESS);
    }
    assert_int_equal(clSetKernelArg(k, 0, sizeof bx, &bx), CL_SUCCESS);
    for (int i = 0; i < 3; i++)
        assert_int_equal(clSetKernelArg(k, (cl_uint)(1 + i), sizeof out[i], &out[i]), CL_SUCCESS);
    assert_int_equal(clSetKernelArg(k, 4, sizeof r->n, &r->n), CL_SUCCESS);
    size_t local = 64, global = ((size_t)r->n + local - 1) / local * local;
    assert_int_equal(mlcl_enqueue_kernel(ctx.queues[0], k, 1, &global, &local, 0, NULL, NULL), CL_SUCCESS);
    float *dst[3] = {r->e, r->g, r->t};
    for (int i = 0; i < 3; i++)
        assert_int_equal(clEnqueueReadBuffer(ctx.queues[0], out[i], CL_TRUE, 0, bytes, dst[i], 0, NULL, NULL),
                         CL_SUCCESS);
    for (int i = 0; i < 3; i++)
        clReleaseMemObject(out[i]);
    clReleaseMemObject(bx);
    clReleaseKernel(k);
    clReleaseProgram(prog);
    mlcl_context_release(&ctx);
}

static double gelu_ref(double v) { return 0.5 * v * (1.0 + erf(v / sqrt(2.0))); }

/* A dense grid over [-10, 10] (beyond the fit's clamp at 3.925 on both
 * sides), fresh random points, and the values at the edges of float. */
static void test_accuracy(void **state) {
    (void)state;
    const int grid = 200001, random = 50000;
    const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-8f, 3.925f, -3.925f, 3.93f, 20.0f, -20.0f,
                             1e30f, -1e30f, INFINITY, -INFINITY};
    const int n_special = (int)(sizeof special / sizeof special[0]);
    results r = {.n = grid + random + n_special};
    r.x = malloc((size_t)r.n * sizeof(float));
    r.e = malloc((size_t)r.n * sizeof(float));
    r.g = malloc((size_t)r.n * sizeof(float));
    r.t = malloc((size_t)r.n * sizeof(float));
    assert_true(r.x && r.e && r.g && r.t);
    for (int i = 0; i < grid; i++)
        r.x[i] = (float)(-10.0 + 20.0 * i / (grid - 1));
    for (int i = 0; i < random; i++)
        r.x[grid + i] = (float)(12.0 * ((double)rand() / RAND_MAX - 0.5));
    memcpy(r.x + grid + random, special, sizeof special);
    run_helpers(&r);
    double worst_e = 0, worst_t = 0, worst_g = 0;
    int at_e = 0, at_t = 0, at_g = 0;
    for (int i = 0; i < r.n; i++) {
        double x = r.x[i];
        double de = fabs(r.e[i] - erf(x)), dt = fabs(r.t[i] - tanh(x));
        double gr = isinf(x) ? (x > 0 ? x : 0.0) : gelu_ref(x);
        /* GELU: erf's error times |x| / 2, plus 2 ulp of the result. */
        double dg = isinf(x) ? (r.g[i] == gr || (x < 0 && isnan(r.g[i])) ? 0 : INFINITY)
                             : fabs(r.g[i] - gr) / (ERF_TOL * 0.5 * fabs(x) + 2.4e-7 * fabs(gr) + 1e-38);
        if (!(de <= worst_e))
            worst_e = de, at_e = i;
        if (!(dt <= worst_t))
            worst_t = dt, at_t = i;
        if (!(dg <= worst_g))
            worst_g = dg, at_g = i;
    }
    printf("ml_erf max abs error %.3g at x = %.9g; ml_tanh %.3g at %.9g; ml_gelu %.3g of its bound at %.9g\n",
           worst_e, r.x[at_e], worst_t, r.x[at_t], worst_g, r.x[at_g]);
    assert_true(worst_e <= ERF_TOL);
    assert_true(worst_t <= TANH_TOL);
    assert_true(worst_g <= 1.0);
    free(r.x);
    free(r.e);
    free(r.g);
    free(r.t);
}

/* A NaN state must stay NaN through every activation: the step's finite
 * check is what catches it. */
static void test_nan_propagates(void **state) {
    (void)state;
    float x[2] = {NAN, -NAN}, e[2], g[2], t[2];
    results r = {.x = x, .e = e, .g = g, .t = t, .n = 2};
    run_helpers(&r);
    for (int i = 0; i < 2; i++) {
        assert_true(isnan(g[i]));
        assert_true(isnan(t[i]));
    }
}

int main(void) {
    unsigned seed = (unsigned)time(NULL);
    printf("seed %u\n", seed);
    srand(seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_nan_propagates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
