/* The two shapes of the batched kernels on PoCL against the per-cell host
 * path: the CPU-shaped ones (chosen on CPU devices, or by the tuning
 * key cl_shape=cpu) and the work-group ones (the GPU default, forced here
 * by cl_shape=gpu). Fresh random states, weights and external
 * input on lattices where every band is populated, in several chunks
 * whose rows are not multiples of the CPU kernels' cells per work-item.
 * The engine's log (captured from stderr) must name the shape that ran:
 * a test whose switch silently did nothing would compare a shape twice. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include"core/lattice_internal.h"
#include "test_support.h"

typedef struct shape_case {
    const char *preset;
    int dims[3];
    int chunk[3];
    double radius_ratio; /* 0: the preset's */
    int steps;
    double tol;          /* largest abs difference after any step */
} shape_case;

/* Steps c on a fresh lattice in mode with cl_shape=shape from seed's
 * states, weights and inputs; out[s] holds the states after step s + 1. With log non-NULL the
 * engine's stderr during creation and stepping is copied there. */
static void run_case(const shape_case *c, moelat_mode mode, const char *shape, uint64_t seed, float **out,
                     char *log, size_t cap, moelat_report *rep) {
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, c->preset, c->dims[0], c->dims[1], c->dims[2]);
    cfg.mode = mode;
    snprintf(cfg.tuning, sizeof cfg.tuning, "cl_shape=%s", shape);
    for (int i = 0; i < 3; i++)
        cfg.chunk[i] = c->chunk[i];
    if (c->radius_ratio > 0)
        cfg.radius_ratio = c->radius_ratio;
    FILE *cap_file = NULL;
    int saved = -1;
    if (log) {
        fflush(stderr);
        cap_file = tmpfile();
        assert_non_null(cap_file);
        saved = dup(2);
        assert_true(saved >= 0);
        assert_true(dup2(fileno(cap_file), 2) >= 0);
    }
    moelat_lattice *lat = ts_lattice(&cfg);
    char *dir = ts_tmpdir();
    ts_perturb_weights_by(lat, seed, dir, 0.4);
    rmdir(dir);
    free(dir);
    size_t n = moelat_cell_count(lat) * (size_t)moelat_state_size(lat);
    float *init = malloc(n * sizeof(float));
    assert_non_null(init);
    ts_random(init, n, 0.1, seed);
    assert_int_equal(moelat_set_states(lat, init, n), MOELAT_OK);
    size_t ne = (size_t)c->dims[0] * c->dims[1] * MOELAT_EXT_SIZE;
    float *ext = malloc(ne * sizeof(float));
    assert_non_null(ext);
    ts_random(ext, ne, 1.0, seed + 1);
    assert_int_equal(moelat_set_external_input(lat, ext, ne), MOELAT_OK);
    for (int s = 0; s < c->steps; s++) {
        if (moelat_step(lat, 1) != MOELAT_OK)
            fail_msg("%s", moelat_last_error(lat));
        out[s] = malloc(n * sizeof(float));
        assert_non_null(out[s]);
        assert_int_equal(moelat_get_states(lat, out[s], n), MOELAT_OK);
    }
    if (rep)
        moelat_get_report(lat, rep);
    moelat_lattice_destroy(lat);
    free(init);
    free(ext);
    if (log) {
        fflush(stderr);
        assert_true(dup2(saved, 2) >= 0);
        close(saved);
        rewind(cap_file);
        size_t got = fread(log, 1, cap - 1, cap_file);
        log[got] = '\0';
        fclose(cap_file);
        fputs(log, stderr); /* keep it in the test's output */
    }
}

static int count_of(const char *hay, const char *needle) {
    int k = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        k++;
    return k;
}

static void compare_shape(const shape_case *c, const char *shape) {
    uint64_t seed = ts_seed();
    float *h[8], *d[8];
    assert_true(c->steps <= 8);
    static char log[1 << 16];
    moelat_report rep = MOELAT_REPORT_INIT;
    run_case(c, MOELAT_MODE_PERCELL, shape, seed, h, NULL, 0, NULL);
    run_case(c, MOELAT_MODE_BATCH, shape, seed, d, log, sizeof log, &rep);
    int cpu = strcmp(shape, "cpu") == 0;
    /* The engine's step kernels and all three experts took the shape. */
    assert_non_null(strstr(log, cpu ? "CPU-shaped step kernels" : "work-group step kernels"));
    assert_int_equal(count_of(log, cpu ? "]: CPU-shaped kernels" : "]: work-group kernels"), 3);
    assert_int_equal(rep.fallbacks, 0);
    /* several chunks per step, all on the device */
    assert_true(rep.batch_chunks >= 2 * (uint64_t)c->steps);
    assert_int_equal(rep.percell_chunks, 0);
    size_t n = (size_t)c->dims[0] * c->dims[1] * c->dims[2] * (size_t)(strcmp(c->preset, "debug") == 0 ? 24 : 64);
    for (int s = 0; s < c->steps; s++) {
        double max, mean;
        ts_diff(h[s], d[s], n, &max, &mean);
        printf("# %s %dx%dx%d, %s-shaped, step %d: max abs diff %.3e, mean %.3e\n", c->preset, c->dims[0],
               c->dims[1], c->dims[2], shape, s + 1, max, mean);
        assert_true(max < c->tol);
        free(h[s]);
        free(d[s]);
    }
}

/* debug 9x8x7 (r = 2.7: 6 / 26 / 48 neighbours) in 2 x 2 chunks of rows
 * of 5 and 4 cells; 6x5x4 with r = 5.4 in two chunks of rows of 3. */
static const shape_case k_debug = {"debug", {9, 8, 7}, {5, 4, 7}, 0, 3, 1e-5};
static const shape_case k_small = {"debug", {6, 5, 4}, {3, 5, 4}, 0.9, 3, 1e-5};
/* experiment (S = 64, every hidden size different) 11x10x9, r = 0.4 x 11:
 * rows of 11 cells (one full work-item of 8 and a tail), two chunks. */
static const shape_case k_experiment = {"experiment", {11, 10, 9}, {11, 10, 5}, 0.4, 1, 1e-5};

static void test_cpu_debug(void **state) {
    (void)state;
    compare_shape(&k_debug, "cpu");
}
static void test_cpu_small(void **state) {
    (void)state;
    compare_shape(&k_small, "cpu");
}
static void test_cpu_experiment(void **state) {
    (void)state;
    compare_shape(&k_experiment, "cpu");
}
static void test_gpu_debug(void **state) {
    (void)state;
    compare_shape(&k_debug, "gpu");
}
static void test_gpu_small(void **state) {
    (void)state;
    compare_shape(&k_small, "gpu");
}

int main(void) {
    /* before the engine's first message: its filter is read once */
    setenv("MOELAT_LOG", "info", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_debug),      cmocka_unit_test(test_cpu_small), cmocka_unit_test(test_cpu_experiment),
        cmocka_unit_test(test_gpu_debug),      cmocka_unit_test(test_gpu_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
