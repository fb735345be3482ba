/* Parameter counts of every expert and the gate, per preset, equal
 * docs/MODEL.md's table; the weights file holds exactly those tensors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include"core/lattice_internal.h"
#include "test_support.h"

static void expect_preset(const char *preset, size_t local, size_t functional, size_t distant, size_t gate) {
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, preset, 4, 4, 4); /* small lattice: counts do not depend on dims */
    cfg.threads = 1;
    moelat_lattice *lat = ts_lattice(&cfg);
    assert_int_equal(lat->expert[0].params.n_floats, local);
    assert_int_equal(lat->expert[1].params.n_floats, functional);
    assert_int_equal(lat->expert[2].params.n_floats, distant);
    assert_int_equal(lat->gate.n_floats, gate);
    moelat_lattice_destroy(lat);
}

static void test_counts(void **state) {
    (void)state;
    expect_preset("debug", 1262, 10605, 4287, 1299);
    expect_preset("experiment", 12082, 43277, 6139, 8579);
    expect_preset("optimized", 47714, 164885, 23539, 33539);
}

static void test_names_match_golden(void **state) {
    (void)state;
    /* The golden weights come from the independent reference with the
     * PyTorch names: loading them proves the names and shapes match. */
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    moelat_lattice *lat = ts_lattice(&cfg);
    assert_int_equal(moelat_load_weights(lat, MOELAT_TEST_DATA_DIR "/golden/debug_9x8x7/weights.safetensors"), MOELAT_OK);
    moelat_lattice_destroy(lat);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_names_match_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
