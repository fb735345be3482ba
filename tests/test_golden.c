/* The engine against golden files of the independent numpy reference
 * (tests/reference/, regenerate with tests/reference/make_golden.py):
 * every expert's output, and the states after 1, 2 and 3 steps, on the
 * host path and on the batched path (PoCL here). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include"core/lattice_internal.h"
#include "test_support.h"

#define GOLDEN MOELAT_TEST_DATA_DIR "/golden/"

typedef struct golden_case {
    const char *name;
    double tol; /* max abs difference */
} golden_case;

static moelat_lattice *load_case(const char *name, moelat_mode mode) {
    char path[1024], err[1024];
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 1, 1, 1);
    snprintf(path, sizeof path, GOLDEN "%s/config.json", name);
    if (moelat_config_load_json(path, &cfg, err, sizeof err) != MOELAT_OK)
        fail_msg("%s", err);
    cfg.mode = mode;
    moelat_lattice *lat = ts_lattice(&cfg);
    snprintf(path, sizeof path, GOLDEN "%s/weights.safetensors", name);
    assert_int_equal(moelat_load_weights(lat, path), MOELAT_OK);
    snprintf(path, sizeof path, GOLDEN "%s/states.npy", name);
    if (moelat_load_states(lat, path) != MOELAT_OK)
        fail_msg("%s", moelat_last_error(lat));
    snprintf(path, sizeof path, GOLDEN "%s/ext.npy", name);
    size_t ne = (size_t)lat->X * lat->Y * MOELAT_EXT_SIZE;
    float *ext = ts_read_npy(path, ne);
    assert_int_equal(moelat_set_external_input(lat, ext, ne), MOELAT_OK);
    free(ext);
    return lat;
}

static void check_experts(const golden_case *gc) {
    moelat_lattice *lat = load_case(gc->name, MOELAT_MODE_PERCELL);
    size_t n = lat->N * (size_t)lat->S;
    ml_chunk whole = {{0, 0, 0}, {lat->X, lat->Y, lat->Z}, (int32_t)lat->N};
    float *out = malloc(n * sizeof(float));
    for (int k = 0; k < MOELAT_BANDS; k++) {
        char path[1024];
        snprintf(path, sizeof path, GOLDEN "%s/expert_%s.npy", gc->name, moelat_band_name(k));
        float *ref = ts_read_npy(path, n);
        assert_int_equal(ml_percell_expert_chunk(lat, k, &whole, lat->states, out), 0);
        double max, mean;
        ts_diff(out, ref, n, &max, &mean);
        printf("# %s expert %-10s max abs diff %.3e mean %.3e\n", gc->name, moelat_band_name(k), max, mean);
        assert_true(max <= gc->tol);
        free(ref);
    }
    free(out);
    moelat_lattice_destroy(lat);
}

static void check_steps(const golden_case *gc, moelat_mode mode) {
    moelat_lattice *lat = load_case(gc->name, mode);
    size_t n = lat->N * (size_t)lat->S;
    float *got = malloc(n * sizeof(float));
    for (int s = 1; s <= 3; s++) {
        if (moelat_step(lat, 1) != MOELAT_OK)
            fail_msg("%s", moelat_last_error(lat));
        char path[1024];
        snprintf(path, sizeof path, GOLDEN "%s/step%d.npy", gc->name, s);
        float *ref = ts_read_npy(path, n);
        assert_int_equal(moelat_get_states(lat, got, n), MOELAT_OK);
        double max, mean;
        ts_diff(got, ref, n, &max, &mean);
        printf("# %s %s step %d: max abs diff %.3e mean %.3e\n", gc->name,
               mode == MOELAT_MODE_BATCH ? "batch" : "percell", s, max, mean);
        assert_true(max <= gc->tol);
        free(ref);
    }
    free(got);
    moelat_lattice_destroy(lat);
}

static const golden_case cases[] = {
    {"debug_9x8x7", 1e-5},
    {"debug_9x8x7_lipschitz", 1e-2},
    {"experiment_6x5x4", 1e-5},
};

static void test_experts(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_experts(&cases[i]);
}

static void test_steps_percell(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_steps(&cases[i], MOELAT_MODE_PERCELL);
}

static void test_steps_batch(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_steps(&cases[i], MOELAT_MODE_BATCH);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_experts),
        cmocka_unit_test(test_steps_percell),
        cmocka_unit_test(test_steps_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
