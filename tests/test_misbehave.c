/* An expert whose host function fails or writes NaN: the step fails with
 * the expert's name and the cell, on the host path and in batch mode (where
 * a host-only expert is evaluated on the host), and the states are those of
 * before the step. The CLI exits non-zero and says the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "test_support.h"

static void run_case(const char *expert, moelat_mode mode, moelat_status want, const char *fragment) {
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    snprintf(cfg.plugin_paths[cfg.n_plugin_paths++], sizeof cfg.plugin_paths[0], "%s", MOELAT_MISBEHAVE_DIR);
    snprintf(cfg.expert[0], sizeof cfg.expert[0], "%s", expert);
    cfg.mode = MOELAT_MODE_PERCELL;
    moelat_lattice *lat = ts_lattice(&cfg);
    size_t n = moelat_cell_count(lat) * 24;
    float *before = malloc(n * sizeof(float)), *after = malloc(n * sizeof(float));
    ts_random(before, n, 0.1, ts_seed());
    assert_int_equal(moelat_set_states(lat, before, n), MOELAT_OK);
    if (mode != MOELAT_MODE_PERCELL) {
        /* The upgrade check runs the expert too and must refuse. */
        moelat_status st = moelat_set_mode(lat, mode);
        assert_int_equal(st, want);
        assert_non_null(strstr(moelat_last_error(lat), expert));
        /* Skip the check (tuning upgrade_check=off) to reach the step itself. */
        moelat_lattice_destroy(lat);
        snprintf(cfg.tuning, sizeof cfg.tuning, "upgrade_check=off");
        lat = ts_lattice(&cfg);
        assert_int_equal(moelat_set_states(lat, before, n), MOELAT_OK);
        assert_int_equal(moelat_set_mode(lat, mode), MOELAT_OK);
    }
    moelat_status st = moelat_step(lat, 1);
    printf("# %s, %s: %s\n", expert, mode == MOELAT_MODE_PERCELL ? "percell" : "batch", moelat_last_error(lat));
    assert_int_equal(st, want);
    assert_non_null(strstr(moelat_last_error(lat), expert));
    assert_non_null(strstr(moelat_last_error(lat), fragment));
    assert_non_null(strstr(moelat_last_error(lat), "(2, 1, 3)"));
    assert_int_equal(moelat_step_count(lat), 0);
    assert_int_equal(moelat_get_states(lat, after, n), MOELAT_OK);
    assert_memory_equal(before, after, n * sizeof(float));
    free(before);
    free(after);
    moelat_lattice_destroy(lat);
}

static void test_nan_percell(void **state) {
    (void)state;
    run_case("test_nan", MOELAT_MODE_PERCELL, MOELAT_ERR_NONFINITE, "non-finite");
}

static void test_fail_percell(void **state) {
    (void)state;
    run_case("test_fail", MOELAT_MODE_PERCELL, MOELAT_ERR_PLUGIN, "failed");
}

static void test_nan_batch(void **state) {
    (void)state;
    run_case("test_nan", MOELAT_MODE_BATCH, MOELAT_ERR_NONFINITE, "non-finite");
}

static void test_fail_batch(void **state) {
    (void)state;
    run_case("test_fail", MOELAT_MODE_BATCH, MOELAT_ERR_PLUGIN, "failed");
}

static void test_cli(void **state) {
    (void)state;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s run --dims 9x8x7 --steps 2 --expert local=test_nan --plugin-path %s 2>&1",
             MOELAT_ENGINE_EXE, MOELAT_MISBEHAVE_DIR);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[8192];
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = '\0';
    int status = pclose(p);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    assert_non_null(strstr(out, "test_nan"));
    assert_non_null(strstr(out, "step 1"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nan_percell), cmocka_unit_test(test_fail_percell),
        cmocka_unit_test(test_nan_batch),   cmocka_unit_test(test_fail_batch),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
