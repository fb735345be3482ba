/* The optimizer on the OpenCL device (backend/opencl/optim_cl.c,
 * kernels_cl/moelat_optim.cl) against the host's (optim.c) on fresh random
 * weights and gradients: several steps of AdamW and SGD, with and without
 * clipping and weight decay, under a warm-up then cosine schedule. The
 * mini-batch gradient is summed on the device from per-sample buffers.
 * Weights, moments and the gradient norm must be equal bit for bit on a
 * device that divides and takes sqrt correctly rounded (PoCL does). The
 * seed is printed; MOELAT_TEST_SEED repeats a run. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "backend/opencl/optim_cl.h"
#include "moelat/optim.h"

#define N 10007 /* not a multiple of the norm's blocks */
#define STEPS 8
#define SAMPLES 3

static uint64_t rng;

static float uniform(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static mlcl_context ctx;
static int have_ctx;

static int setup(void **state) {
    (void)state;
    const char *env = getenv("MOELAT_TEST_SEED");
    rng = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u + 1;
    if (!rng)
        rng = 1;
    printf("seed %llu (MOELAT_TEST_SEED repeats it)\n", (unsigned long long)rng);
    mlcl_device_info dev;
    char err[4096];
    if (mlcl_select_device(NULL, &dev, err, sizeof err) || mlcl_context_create(&dev, 1, 0, &ctx, err, sizeof err)) {
        printf("no OpenCL device: %s\n", err);
        return 0;
    }
    have_ctx = 1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (have_ctx)
        mlcl_context_release(&ctx);
    return 0;
}

/* The first index where a and b differ in their bits, or -1. */
static long first_diff(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            return (long)i;
    return -1;
}

static void check_equal(const char *what, int step, const float *host, const float *dev) {
    long i = first_diff(host, dev, N);
    if (i >= 0)
        fail_msg("step %d: %s[%ld] host %.9g, device %.9g", step, what, i, host[i], dev[i]);
}

/* gscale: the gradients' size (large ones make clipping bite). */
static void run(const moelat_optimizer_config *cfg, float gscale) {
    if (!have_ctx)
        skip();
    moelat_optimizer *opt = NULL;
    ml_optim_cl *dev = NULL;
    char err[8192];
    if (moelat_optimizer_create(cfg, N, &opt, err, sizeof err) != MOELAT_OK)
        fail_msg("%s", err);
    if (ml_optim_cl_create(&ctx, ctx.queues[0], cfg->kind, N, &dev, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_true(dev->exact); /* else the comparison below needs a tolerance */
    float *p = malloc(N * sizeof(float)), *g = malloc(N * sizeof(float)), *samples = malloc(SAMPLES * N * sizeof(float));
    float *out = malloc(N * sizeof(float)), *hm = malloc(N * sizeof(float)), *hv = malloc(N * sizeof(float));
    assert_true(p && g && samples && out && hm && hv);
    for (size_t i = 0; i < N; i++)
        p[i] = uniform();
    assert_int_equal(ml_optim_cl_write(dev, ML_OPT_W, p), CL_SUCCESS);
    cl_int rc;
    cl_mem sbuf[SAMPLES];
    for (int s = 0; s < SAMPLES; s++) {
        sbuf[s] = clCreateBuffer(ctx.context, CL_MEM_READ_WRITE, N * sizeof(float), NULL, &rc);
        assert_int_equal(rc, CL_SUCCESS);
    }
    int clipped = 0;
    for (int t = 1; t <= STEPS; t++) {
        /* The mini-batch: SAMPLES gradients summed in float, in order. */
        memset(g, 0, N * sizeof(float));
        for (int s = 0; s < SAMPLES; s++) {
            float *x = samples + (size_t)s * N;
            for (size_t i = 0; i < N; i++) {
                x[i] = uniform() * gscale * (i % 97 == 0 ? 100.0f : 1.0f);
                g[i] += x[i];
            }
            assert_int_equal(clEnqueueWriteBuffer(ctx.queues[0], sbuf[s], CL_TRUE, 0, N * sizeof(float), x, 0,
                                                  NULL, NULL), CL_SUCCESS);
        }
        double hnorm = 0, dnorm = 0;
        assert_int_equal(moelat_optimizer_step(opt, p, g, &hnorm), MOELAT_OK);
        assert_int_equal(ml_optim_cl_zero_grad(dev), CL_SUCCESS);
        for (int s = 0; s < SAMPLES; s++)
            assert_int_equal(ml_optim_cl_add_grad(dev, sbuf[s]), CL_SUCCESS);
        assert_int_equal(ml_optim_cl_read(dev, ML_OPT_G, out), CL_SUCCESS);
        check_equal("gradient sum", t, g, out);
        assert_int_equal(ml_optim_cl_norm(dev, &dnorm), CL_SUCCESS);
        if (memcmp(&hnorm, &dnorm, sizeof hnorm) != 0)
            fail_msg("step %d: gradient norm host %.17g, device %.17g", t, hnorm, dnorm);
        float clip = ml_optim_clip_factor(cfg, dnorm);
        clipped += clip < 1;
        ml_optim_scalars sc;
        ml_optim_scalars_of(cfg, (uint64_t)t, &sc);
        assert_int_equal(ml_optim_cl_update(dev, &sc, clip), CL_SUCCESS);
        assert_int_equal(ml_optim_cl_read(dev, ML_OPT_W, out), CL_SUCCESS);
        check_equal("weight", t, p, out);
        assert_int_equal(moelat_optimizer_get_state(opt, NULL, hm, hv), MOELAT_OK);
        assert_int_equal(ml_optim_cl_read(dev, ML_OPT_M, out), CL_SUCCESS);
        check_equal(cfg->kind == MOELAT_OPT_ADAMW ? "exp_avg" : "momentum_buffer", t, hm, out);
        if (cfg->kind == MOELAT_OPT_ADAMW) {
            assert_int_equal(ml_optim_cl_read(dev, ML_OPT_V, out), CL_SUCCESS);
            check_equal("exp_avg_sq", t, hv, out);
        }
    }
    /* Clipping either bit on every step or on none, as the case meant. */
    assert_int_equal(clipped, cfg->clip_norm > 0 ? STEPS : 0);
    for (int s = 0; s < SAMPLES; s++)
        clReleaseMemObject(sbuf[s]);
    ml_optim_cl_destroy(dev);
    moelat_optimizer_destroy(opt);
    free(p); free(g); free(samples); free(out); free(hm); free(hv);
}

static void schedule(moelat_optimizer_config *c) {
    c->lr = 3e-3;
    c->warmup_steps = 3;
    c->total_steps = STEPS + 2;
    c->min_lr = 1e-4;
}

static void test_adamw_decay_clip(void **state) {
    (void)state;
    moelat_optimizer_config c;
    moelat_optimizer_defaults(&c, MOELAT_OPT_ADAMW);
    schedule(&c);
    c.weight_decay = 0.05;
    c.clip_norm = 1.0;
    run(&c, 0.5f);
}

static void test_adamw_plain(void **state) {
    (void)state;
    moelat_optimizer_config c;
    moelat_optimizer_defaults(&c, MOELAT_OPT_ADAMW);
    schedule(&c);
    c.weight_decay = 0;
    c.beta1 = 0.8;
    c.eps = 1e-6;
    run(&c, 1e-3f);
}

static void test_sgd_momentum_decay_clip(void **state) {
    (void)state;
    moelat_optimizer_config c;
    moelat_optimizer_defaults(&c, MOELAT_OPT_SGD);
    schedule(&c);
    c.weight_decay = 0.01;
    c.clip_norm = 0.5;
    run(&c, 0.5f);
}

static void test_sgd_plain(void **state) {
    (void)state;
    moelat_optimizer_config c;
    moelat_optimizer_defaults(&c, MOELAT_OPT_SGD);
    schedule(&c);
    c.weight_decay = 0;
    c.momentum = 0;
    run(&c, 0.1f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_decay_clip),
        cmocka_unit_test(test_adamw_plain),
        cmocka_unit_test(test_sgd_momentum_decay_clip),
        cmocka_unit_test(test_sgd_plain),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
