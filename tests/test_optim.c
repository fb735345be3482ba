/* Optimizers (moelat/optim.h) against trajectories computed once by
 * PyTorch (tests/reference/make_optim_fixture.py): the same gradients,
 * step by step, must give the same parameters to float32 rounding. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moelat/optim.h"
#include "test_support.h"

#define T 12
#define N 37

static float *fixture(const char *name, size_t count) {
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/optim/%s.npy", MOELAT_TEST_DATA_DIR, name);
    return ts_read_npy(path, count);
}

/* Replays the fixture's gradients and compares each step's parameters;
 * the bound is relative to the parameter (floor 1e-2): float32 rounding
 * in a different operation order stays far below it, a wrong bias
 * correction, decay or schedule does not (they move parameters by
 * lr = 1e-2 per step). */
static void replay(const char *name, const moelat_optimizer_config *cfg) {
    float *p = fixture("p0", N), *g = fixture("grads", (size_t)T * N), *want = fixture(name, (size_t)T * N);
    moelat_optimizer *opt = NULL;
    char err[256];
    moelat_status cs = moelat_optimizer_create(cfg, N, &opt, err, sizeof err);
    if (cs != MOELAT_OK)
        fail_msg("%s", err);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        assert_int_equal(moelat_optimizer_step(opt, p, g + (size_t)t * N, NULL), MOELAT_OK);
        for (int i = 0; i < N; i++) {
            double w = want[(size_t)t * N + i];
            double rel = fabs(p[i] - w) / fmax(fabs(w), 1e-2);
            worst = fmax(worst, rel);
        }
    }
    printf("%s: %d steps, worst relative difference to PyTorch %.3g\n", name, T, worst);
    assert_true(worst < 1e-5);
    assert_int_equal(moelat_optimizer_steps(opt), T);
    moelat_optimizer_destroy(opt);
    free(p);
    free(g);
    free(want);
}

static void adamw_matches_torch(void **st) {
    (void)st;
    moelat_optimizer_config c;
    moelat_optimizer_defaults(&c, MOELAT_OPT_ADAMW);
    c.lr = 1e-2;
    c.weight_decay = 1e-2;
    replay("adamw", &c);
}

static void adamw_clip_matches_torch(void **st) {
    (void)st;
    moelat_optimizer_config c;
    moelat_optimizer_defaults(&c, MOELAT_OPT_ADAMW);
    c.lr = 1e-2;
    c.weight_decay = 1e-2;
    c.clip_norm = 0.5;
    replay("adamw_clip", &c);
}

static void adamw_cosine_matches_torch(void **st) {
    (void)st;
    moelat_optimizer_config c;
    moelat_optimizer_defaults(&c, MOELAT_OPT_ADAMW);
    c.lr = 1e-2;
    c.weight_decay = 1e-2;
    c.warmup_steps = 3;
    c.total_steps = 12;
    c.min_lr = 1e-3;
    replay("adamw_cos", &c);
}

static void sgd_matches_torch(void **st) {
    (void)st;
    moelat_optimizer_config c;
    moelat_optimizer_defaults(&c, MOELAT_OPT_SGD);
    c.lr = 5e-2;
    c.momentum = 0.9;
    c.weight_decay = 1e-3;
    replay("sgd", &c);
}

/* Stopping after k steps, moving the state into a new optimizer and going
 * on gives bitwise the parameters of the uninterrupted run. */
static void state_round_trip_is_exact(void **st) {
    (void)st;
    moelat_optimizer_config c;
    moelat_optimizer_defaults(&c, MOELAT_OPT_ADAMW);
    c.lr = 1e-2;
    c.warmup_steps = 2;
    c.total_steps = 10;
    float *p0 = fixture("p0", N), *g = fixture("grads", (size_t)T * N);
    float a[N], b[N], m[N], v[N];
    memcpy(a, p0, sizeof a);
    memcpy(b, p0, sizeof b);
    moelat_optimizer *o1, *o2, *o3;
    char err[256];
    assert_int_equal(moelat_optimizer_create(&c, N, &o1, err, sizeof err), MOELAT_OK);
    assert_int_equal(moelat_optimizer_create(&c, N, &o2, err, sizeof err), MOELAT_OK);
    assert_int_equal(moelat_optimizer_create(&c, N, &o3, err, sizeof err), MOELAT_OK);
    for (int t = 0; t < T; t++)
        moelat_optimizer_step(o1, a, g + (size_t)t * N, NULL);
    for (int t = 0; t < 5; t++)
        moelat_optimizer_step(o2, b, g + (size_t)t * N, NULL);
    uint64_t step;
    assert_int_equal(moelat_optimizer_get_state(o2, &step, m, v), MOELAT_OK);
    assert_int_equal(step, 5);
    assert_int_equal(moelat_optimizer_set_state(o3, step, m, v), MOELAT_OK);
    for (int t = 5; t < T; t++)
        moelat_optimizer_step(o3, b, g + (size_t)t * N, NULL);
    assert_memory_equal(a, b, sizeof a);
    moelat_optimizer_destroy(o1);
    moelat_optimizer_destroy(o2);
    moelat_optimizer_destroy(o3);
    free(p0);
    free(g);
}

/* The schedule: linear warm-up, cosine to min_lr, then held. */
static void schedule_shape(void **st) {
    (void)st;
    moelat_optimizer_config c;
    moelat_optimizer_defaults(&c, MOELAT_OPT_SGD);
    c.lr = 1.0;
    c.momentum = 0;
    c.weight_decay = 0;
    c.warmup_steps = 4;
    c.total_steps = 8;
    c.min_lr = 0.1;
    moelat_optimizer *o;
    char err[256];
    assert_int_equal(moelat_optimizer_create(&c, 1, &o, err, sizeof err), MOELAT_OK);
    const double want[] = {0.25, 0.5, 0.75, 1.0, 0.1 + 0.45 * (1 + cos(M_PI * 0.25)), 0.55,
                           0.1 + 0.45 * (1 + cos(M_PI * 0.75)), 0.1, 0.1};
    float p = 0, gr = -1;
    for (int t = 0; t < 9; t++) {
        assert_true(fabs(moelat_optimizer_next_lr(o) - want[t]) < 1e-12);
        float before = p;
        moelat_optimizer_step(o, &p, &gr, NULL);
        assert_true(fabs((p - before) - want[t]) < 1e-6);
    }
    moelat_optimizer_destroy(o);
}

/* Bad settings name the field and its range; a non-finite gradient
 * changes nothing. */
static void misuse(void **st) {
    (void)st;
    moelat_optimizer_config c;
    moelat_optimizer *o = NULL;
    char err[256];
    moelat_optimizer_defaults(&c, MOELAT_OPT_ADAMW);
    c.beta2 = 1.0;
    assert_int_equal(moelat_optimizer_create(&c, 4, &o, err, sizeof err), MOELAT_ERR_INVALID);
    assert_null(o);
    assert_non_null(strstr(err, "beta2"));
    moelat_optimizer_defaults(&c, MOELAT_OPT_ADAMW);
    c.lr = NAN;
    assert_int_equal(moelat_optimizer_create(&c, 4, &o, err, sizeof err), MOELAT_ERR_INVALID);
    assert_non_null(strstr(err, "lr"));
    moelat_optimizer_defaults(&c, MOELAT_OPT_ADAMW);
    assert_int_equal(moelat_optimizer_create(&c, 0, &o, err, sizeof err), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_optimizer_create(&c, 4, &o, err, sizeof err), MOELAT_OK);
    float p[4] = {1, 2, 3, 4}, g[4] = {0.1f, NAN, 0.2f, 0.3f}, keep[4];
    memcpy(keep, p, sizeof p);
    assert_int_equal(moelat_optimizer_step(o, p, g, NULL), MOELAT_ERR_NONFINITE);
    assert_memory_equal(p, keep, sizeof p);
    assert_int_equal(moelat_optimizer_steps(o), 0);
    assert_non_null(strstr(moelat_optimizer_last_error(o), "norm"));
    moelat_optimizer_destroy(o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(adamw_matches_torch),      cmocka_unit_test(adamw_clip_matches_torch),
        cmocka_unit_test(adamw_cosine_matches_torch), cmocka_unit_test(sgd_matches_torch),
        cmocka_unit_test(state_round_trip_is_exact), cmocka_unit_test(schedule_shape),
        cmocka_unit_test(misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
