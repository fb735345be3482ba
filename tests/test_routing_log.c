/* Routing statistics of the report on both paths, and the log callback
 * with its per-module levels (moelat.h). PoCL in CI. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moelat/moelat.h"
#include "test_support.h"

/* Steps 9x8x7 (every band populated) from fresh random states in mode and
 * returns the report. */
static void routed(moelat_mode mode, uint64_t seed, int steps, moelat_report *rep) {
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    cfg.mode = mode;
    cfg.seed = seed;
    moelat_lattice *lat = ts_lattice(&cfg);
    size_t n = moelat_cell_count(lat) * (size_t)moelat_state_size(lat);
    float *init = malloc(n * sizeof(float));
    ts_random(init, n, 0.3, seed);
    assert_int_equal(moelat_set_states(lat, init, n), MOELAT_OK);
    if (moelat_step(lat, steps) != MOELAT_OK)
        fail_msg("%s", moelat_last_error(lat));
    assert_int_equal(moelat_get_report(lat, rep), MOELAT_OK);
    /* A reset clears them; the step count stays. */
    moelat_reset_report(lat);
    moelat_report after = MOELAT_REPORT_INIT;
    moelat_get_report(lat, &after);
    assert_int_equal(after.routed_cells, 0);
    assert_true(after.gate_weight_mean[0] == 0.0 && after.gate_top_share[2] == 0.0);
    free(init);
    moelat_lattice_destroy(lat);
}

static void test_routing_both_paths(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_report host = MOELAT_REPORT_INIT, dev = MOELAT_REPORT_INIT;
    routed(MOELAT_MODE_PERCELL, seed, 3, &host);
    routed(MOELAT_MODE_BATCH, seed, 3, &dev);
    assert_true(dev.batch_chunks > 0 && host.batch_chunks == 0);
    assert_int_equal(host.routed_cells, 3 * 9 * 8 * 7);
    assert_int_equal(dev.routed_cells, host.routed_cells);
    double wsum = 0, ssum = 0;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        printf("# band %d: weight %.8f / %.8f, top %.6f / %.6f\n", k, host.gate_weight_mean[k],
               dev.gate_weight_mean[k], host.gate_top_share[k], dev.gate_top_share[k]);
        wsum += host.gate_weight_mean[k];
        ssum += host.gate_top_share[k];
        assert_true(host.gate_weight_mean[k] > 0 && host.gate_weight_mean[k] < 1);
        assert_true(fabs(host.gate_weight_mean[k] - dev.gate_weight_mean[k]) < 1e-6);
        /* A near tie may fall either way in float32: two cell updates. */
        assert_true(fabs(host.gate_top_share[k] - dev.gate_top_share[k]) <= 2.0 / (double)host.routed_cells);
    }
    assert_true(fabs(wsum - 1.0) < 1e-6);
    assert_true(fabs(ssum - 1.0) < 1e-12);
}

typedef struct seen {
    int batch[4]; /* messages of module "batch" per level */
    int other;
    char last[256];
} seen;

static void on_log(void *arg, const char *module, int level, const char *message) {
    seen *s = arg;
    if (strcmp(module, "batch") == 0 && level >= 0 && level <= 3)
        s->batch[level]++;
    else
        s->other++;
    snprintf(s->last, sizeof s->last, "%s", message);
}

static int upgrade_and_count(seen *s) {
    memset(s, 0, sizeof *s);
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    cfg.seed = ts_seed();
    moelat_lattice *lat = ts_lattice(&cfg);
    moelat_status st = moelat_upgrade_to_batch(lat);
    moelat_lattice_destroy(lat);
    return st;
}

static void test_log_callback_levels(void **state) {
    (void)state;
    seen s;
    moelat_set_log_callback(on_log, &s);
    assert_int_equal(moelat_set_log_level("batch", 3), MOELAT_OK);
    assert_int_equal(upgrade_and_count(&s), MOELAT_OK);
    assert_true(s.batch[3] >= 1); /* "aggregation by row prefix sums" */
    assert_true(s.batch[2] >= 1); /* "upgrade check on ... cells" */
    assert_null(strchr(s.last, '\n'));

    assert_int_equal(moelat_set_log_level("batch", 1), MOELAT_OK);
    assert_int_equal(upgrade_and_count(&s), MOELAT_OK);
    assert_int_equal(s.batch[2] + s.batch[3], 0);

    assert_int_equal(moelat_set_log_level("batch", -1), MOELAT_OK);
    assert_int_equal(upgrade_and_count(&s), MOELAT_OK);
    assert_int_equal(s.batch[0] + s.batch[1] + s.batch[2] + s.batch[3], 0);

    /* Bad settings are refused and change nothing. */
    assert_int_equal(moelat_set_log_level("batch", 4), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_set_log_level("batch", -2), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_set_log_level("a_module_name_of_thirty_two_chars", 3), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_set_log_level("", 1), MOELAT_OK); /* the default */

    /* NULL restores stderr: the callback sees nothing more. */
    assert_int_equal(moelat_set_log_level("batch", 3), MOELAT_OK);
    moelat_set_log_callback(NULL, NULL);
    seen before = s;
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    moelat_lattice *lat = ts_lattice(&cfg);
    assert_int_equal(moelat_upgrade_to_batch(lat), MOELAT_OK);
    moelat_lattice_destroy(lat);
    assert_memory_equal(&before, &s, sizeof s);
    moelat_set_log_level("batch", 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing_both_paths),
        cmocka_unit_test(test_log_callback_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
