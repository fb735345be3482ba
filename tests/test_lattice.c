/* The public API on the host path: thread-count invariance, independent
 * lattices, weights and states files, argument errors, non-finite states. */
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

#include "test_support.h"

static float *run_with_threads(int threads, const float *init, uint64_t seed, int steps) {
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    cfg.threads = threads;
    cfg.seed = seed;
    moelat_lattice *lat = ts_lattice(&cfg);
    size_t n = moelat_cell_count(lat) * (size_t)moelat_state_size(lat);
    assert_int_equal(moelat_set_states(lat, init, n), MOELAT_OK);
    assert_int_equal(moelat_step(lat, steps), MOELAT_OK);
    float *out = malloc(n * sizeof(float));
    assert_int_equal(moelat_get_states(lat, out, n), MOELAT_OK);
    moelat_lattice_destroy(lat);
    return out;
}

static void test_thread_invariance(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    size_t n = 9 * 8 * 7 * 24;
    float *init = malloc(n * sizeof(float));
    ts_random(init, n, 0.5, seed);
    float *one = run_with_threads(1, init, seed, 2);
    float *two = run_with_threads(2, init, seed, 2);
    float *five = run_with_threads(5, init, seed, 2);
    assert_memory_equal(one, two, n * sizeof(float));
    assert_memory_equal(one, five, n * sizeof(float));
    assert_memory_not_equal(one, init, n * sizeof(float));
    free(init);
    free(one);
    free(two);
    free(five);
}

static void test_two_lattices(void **state) {
    (void)state;
    /* Interleaved stepping of two lattices gives what each gives alone. */
    moelat_config a = MOELAT_CONFIG_INIT, b = MOELAT_CONFIG_INIT;
    ts_config(&a, "debug", 9, 8, 7);
    ts_config(&b, "debug", 7, 6, 5);
    b.seed = 99;
    moelat_lattice *la = ts_lattice(&a), *lb = ts_lattice(&b);
    moelat_lattice *ra = ts_lattice(&a), *rb = ts_lattice(&b);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(moelat_step(la, 1), MOELAT_OK);
        assert_int_equal(moelat_step(lb, 1), MOELAT_OK);
    }
    assert_int_equal(moelat_step(ra, 2), MOELAT_OK);
    assert_int_equal(moelat_step(rb, 2), MOELAT_OK);
    size_t na = moelat_cell_count(la) * 24, nb = moelat_cell_count(lb) * 24;
    float *x = malloc(na * sizeof(float)), *y = malloc(na * sizeof(float));
    assert_int_equal(moelat_get_states(la, x, na), MOELAT_OK);
    assert_int_equal(moelat_get_states(ra, y, na), MOELAT_OK);
    assert_memory_equal(x, y, na * sizeof(float));
    free(x);
    free(y);
    x = malloc(nb * sizeof(float));
    y = malloc(nb * sizeof(float));
    assert_int_equal(moelat_get_states(lb, x, nb), MOELAT_OK);
    assert_int_equal(moelat_get_states(rb, y, nb), MOELAT_OK);
    assert_memory_equal(x, y, nb * sizeof(float));
    /* An error on one lattice leaves the other's message alone. */
    assert_int_equal(moelat_set_states(la, x, 3), MOELAT_ERR_INVALID);
    assert_non_null(strstr(moelat_last_error(la), "expected"));
    assert_string_equal(moelat_last_error(lb), "");
    free(x);
    free(y);
    moelat_lattice_destroy(la);
    moelat_lattice_destroy(lb);
    moelat_lattice_destroy(ra);
    moelat_lattice_destroy(rb);
}

static void test_weights_roundtrip(void **state) {
    (void)state;
    char *dir = ts_tmpdir();
    char wpath[1024], spath[1024];
    snprintf(wpath, sizeof wpath, "%s/w.safetensors", dir);
    snprintf(spath, sizeof spath, "%s/s.npy", dir);
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    cfg.seed = seed;
    moelat_lattice *a = ts_lattice(&cfg);
    ts_perturb_weights(a, seed, dir);
    assert_int_equal(moelat_save_weights(a, wpath), MOELAT_OK);
    assert_int_equal(moelat_save_states(a, spath), MOELAT_OK);
    cfg.seed = seed + 1; /* other init: everything must come from the files */
    moelat_lattice *b = ts_lattice(&cfg);
    assert_int_equal(moelat_load_weights(b, wpath), MOELAT_OK);
    assert_int_equal(moelat_load_states(b, spath), MOELAT_OK);
    assert_int_equal(moelat_step(a, 1), MOELAT_OK);
    assert_int_equal(moelat_step(b, 1), MOELAT_OK);
    size_t n = moelat_cell_count(a) * 24;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    assert_int_equal(moelat_get_states(a, x, n), MOELAT_OK);
    assert_int_equal(moelat_get_states(b, y, n), MOELAT_OK);
    assert_memory_equal(x, y, n * sizeof(float));

    /* A states file of another shape is refused and changes nothing. */
    moelat_config other = MOELAT_CONFIG_INIT;
    ts_config(&other, "debug", 7, 8, 9);
    moelat_lattice *c = ts_lattice(&other);
    assert_int_equal(moelat_save_states(c, spath), MOELAT_OK);
    assert_int_not_equal(moelat_load_states(b, spath), MOELAT_OK);
    assert_non_null(strstr(moelat_last_error(b), "expected"));
    assert_int_equal(moelat_get_states(b, x, n), MOELAT_OK);
    assert_memory_equal(x, y, n * sizeof(float));
    /* Weights of another preset are refused naming a tensor. */
    moelat_config exp = MOELAT_CONFIG_INIT;
    ts_config(&exp, "experiment", 4, 4, 4);
    moelat_lattice *e = ts_lattice(&exp);
    assert_int_equal(moelat_save_weights(e, wpath), MOELAT_OK);
    assert_int_not_equal(moelat_load_weights(b, wpath), MOELAT_OK);
    assert_non_null(strstr(moelat_last_error(b), "w.safetensors"));
    assert_non_null(strstr(moelat_last_error(b), "_expert.") ? strstr(moelat_last_error(b), "_expert.")
                                                           : strstr(moelat_last_error(b), "gating_network."));
    free(x);
    free(y);
    unlink(wpath);
    unlink(spath);
    rmdir(dir);
    free(dir);
    moelat_lattice_destroy(a);
    moelat_lattice_destroy(b);
    moelat_lattice_destroy(c);
    moelat_lattice_destroy(e);
}

static void test_outputs_and_input(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    moelat_lattice *a = ts_lattice(&cfg), *b = ts_lattice(&cfg);
    size_t ne = 9 * 8 * MOELAT_EXT_SIZE;
    float *ext = malloc(ne * sizeof(float));
    ts_random(ext, ne, 1.0, seed);
    assert_int_equal(moelat_set_external_input(a, ext, ne), MOELAT_OK);
    assert_int_equal(moelat_set_external_input(a, ext, ne - 1), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_step(a, 1), MOELAT_OK);
    assert_int_equal(moelat_step(b, 1), MOELAT_OK);
    size_t n = moelat_cell_count(a) * 24, face = 9 * 8 * 24;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    assert_int_equal(moelat_get_states(a, x, n), MOELAT_OK);
    assert_int_equal(moelat_get_states(b, y, n), MOELAT_OK);
    /* The input enters at z = 0 only (through the functional expert): the
     * first step changes the input face and nothing beyond the radius. */
    assert_memory_not_equal(x, y, face * sizeof(float));
    assert_memory_equal(x + 4 * face, y + 4 * face, face * sizeof(float));
    float *out = malloc(face * sizeof(float));
    assert_int_equal(moelat_get_outputs(a, out, face), MOELAT_OK);
    assert_memory_equal(out, x + 6 * face, face * sizeof(float));
    assert_int_equal(moelat_get_outputs(a, out, face + 1), MOELAT_ERR_INVALID);
    free(ext);
    free(x);
    free(y);
    free(out);
    moelat_lattice_destroy(a);
    moelat_lattice_destroy(b);
}

static void test_nonfinite_stops(void **state) {
    (void)state;
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    moelat_lattice *lat = ts_lattice(&cfg);
    size_t n = moelat_cell_count(lat) * 24;
    float *x = malloc(n * sizeof(float));
    assert_int_equal(moelat_get_states(lat, x, n), MOELAT_OK);
    x[(3 + 9 * (2 + 8 * 4)) * 24 + 5] = NAN;
    assert_int_equal(moelat_set_states(lat, x, n), MOELAT_OK);
    assert_int_not_equal(moelat_step(lat, 1), MOELAT_OK);
    assert_non_null(strstr(moelat_last_error(lat), "non-finite"));
    assert_non_null(strstr(moelat_last_error(lat), "step 1"));
    assert_int_equal(moelat_step_count(lat), 0);
    assert_int_equal(moelat_step(lat, 0), MOELAT_OK);
    assert_int_equal(moelat_step(lat, -1), MOELAT_ERR_INVALID);
    free(x);
    moelat_lattice_destroy(lat);
}

static void test_bad_config(void **state) {
    (void)state;
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    snprintf(cfg.expert[1], sizeof cfg.expert[1], "nosuchexpert");
    char err[2048];
    moelat_lattice *lat = (moelat_lattice *)1;
    assert_int_not_equal(moelat_lattice_create(&cfg, &lat, err, sizeof err), MOELAT_OK);
    assert_null(lat);
    assert_non_null(strstr(err, "nosuchexpert"));
    ts_config(&cfg, "debug", 0, 8, 7);
    assert_int_not_equal(moelat_lattice_create(&cfg, &lat, err, sizeof err), MOELAT_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_invariance),   cmocka_unit_test(test_two_lattices),
        cmocka_unit_test(test_weights_roundtrip),   cmocka_unit_test(test_outputs_and_input),
        cmocka_unit_test(test_nonfinite_stops),     cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
