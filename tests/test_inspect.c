/* moelat/inspect.h through the public API only: the stencil's interior
 * counts and offsets, the neighbour sums of random cells against a naive
 * gather over those offsets, the host expert on a box, the host gate, and
 * clear refusals of bad arguments. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "moelat/inspect.h"
#include "moelat/moelat.h"
#include "test_support.h"

static void test_stencil_and_sums(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    srand((unsigned)seed);
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7); /* r = 2.7: 6 / 26 / 48 interior neighbours */
    moelat_lattice *lat = ts_lattice(&cfg);
    const int32_t want[MOELAT_BANDS] = {6, 26, 48};
    const int S = moelat_state_size(lat);
    const size_t N = moelat_cell_count(lat);
    float *states = malloc(N * (size_t)S * sizeof *states);
    assert_non_null(states);
    ts_random(states, N * (size_t)S, 1.0, seed);
    double *sum = calloc((size_t)S, sizeof *sum), *abs_sum = calloc((size_t)S, sizeof *abs_sum);
    double *ref = calloc((size_t)S, sizeof *ref), *ref_abs = calloc((size_t)S, sizeof *ref_abs);
    for (int k = 0; k < MOELAT_BANDS; k++) {
        assert_int_equal(moelat_stencil_count(lat, k), want[k]);
        for (int trial = 0; trial < 20; trial++) {
            int32_t cell[3] = {rand() % 9, rand() % 8, rand() % 7};
            memset(sum, 0, (size_t)S * sizeof *sum);
            memset(abs_sum, 0, (size_t)S * sizeof *abs_sum);
            memset(ref, 0, (size_t)S * sizeof *ref);
            memset(ref_abs, 0, (size_t)S * sizeof *ref_abs);
            int32_t count = moelat_band_sums(lat, k, cell, states, sum, abs_sum);
            int32_t naive = 0;
            for (int32_t j = 0; j < want[k]; j++) {
                int32_t d[3];
                assert_int_equal(moelat_stencil_offset(lat, k, j, d), MOELAT_OK);
                int32_t x = cell[0] + d[0], y = cell[1] + d[1], z = cell[2] + d[2];
                if (x < 0 || y < 0 || z < 0 || x >= 9 || y >= 8 || z >= 7)
                    continue;
                const float *v = states + ((size_t)x + 9 * ((size_t)y + 8 * (size_t)z)) * S;
                for (int q = 0; q < S; q++) {
                    ref[q] += v[q];
                    ref_abs[q] += fabs(v[q]);
                }
                naive++;
            }
            assert_int_equal(count, naive);
            for (int q = 0; q < S; q++) {
                assert_true(fabs(sum[q] - ref[q]) <= 1e-9 * (1 + fabs(ref[q])));
                assert_true(fabs(abs_sum[q] - ref_abs[q]) <= 1e-9 * (1 + ref_abs[q]));
            }
        }
    }
    /* A corner has fewer neighbours than the interior. */
    int32_t corner[3] = {0, 0, 0};
    assert_true(moelat_band_sums(lat, 2, corner, states, NULL, NULL) < want[2]);

    /* Bad arguments are refused, not read. */
    int32_t d[3], outside[3] = {9, 0, 0};
    assert_int_equal(moelat_stencil_count(lat, 3), -1);
    assert_int_equal(moelat_stencil_count(NULL, 0), -1);
    assert_int_equal(moelat_stencil_offset(lat, 0, want[0], d), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_stencil_offset(lat, -1, 0, d), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_band_sums(lat, 0, outside, states, sum, NULL), -1);
    assert_int_equal(moelat_band_sums(lat, 0, corner, NULL, sum, NULL), -1);
    free(sum);
    free(abs_sum);
    free(ref);
    free(ref_abs);
    free(states);
    moelat_lattice_destroy(lat);
}

/* The host expert on a box equals the same box as chunk cells of a
 * smaller box inside it; the gate's weights are a softmax. */
static void test_host_expert_and_gate(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    srand((unsigned)seed);
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    moelat_lattice *lat = ts_lattice(&cfg);
    const int S = moelat_state_size(lat);
    const size_t N = moelat_cell_count(lat);
    float *states = malloc(N * (size_t)S * sizeof *states);
    ts_random(states, N * (size_t)S, 0.5, seed + 1);
    const int32_t origin[3] = {1, 2, 1}, extent[3] = {5, 3, 4}, inner_o[3] = {2, 3, 2}, inner_e[3] = {2, 1, 3};
    const int n = extent[0] * extent[1] * extent[2], m = inner_e[0] * inner_e[1] * inner_e[2];
    float *big = malloc((size_t)n * S * sizeof *big), *small = malloc((size_t)m * S * sizeof *small);
    for (int k = 0; k < MOELAT_BANDS; k++) {
        assert_int_equal(moelat_host_expert(lat, k, origin, extent, states, big), MOELAT_OK);
        assert_int_equal(moelat_host_expert(lat, k, inner_o, inner_e, states, small), MOELAT_OK);
        for (int c = 0; c < m; c++) {
            int x = inner_o[0] + c % inner_e[0] - origin[0];
            int y = inner_o[1] + (c / inner_e[0]) % inner_e[1] - origin[1];
            int z = inner_o[2] + c / (inner_e[0] * inner_e[1]) - origin[2];
            int cb = x + extent[0] * (y + extent[1] * z);
            assert_memory_equal(small + (size_t)c * S, big + (size_t)cb * S, (size_t)S * sizeof(float));
        }
    }
    const int32_t off[3] = {5, 0, 0};
    assert_int_equal(moelat_host_expert(lat, 0, off, extent, states, big), MOELAT_ERR_INVALID);
    assert_non_null(strstr(moelat_last_error(lat), "leaves the lattice"));

    float w[MOELAT_BANDS], nu[64];
    assert_true(S <= 64);
    ts_random(nu, (size_t)S, 0.5, seed + 2);
    assert_int_equal(moelat_host_gate(lat, states, nu, w), MOELAT_OK);
    double total = 0;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        assert_true(w[k] > 0 && w[k] < 1);
        total += w[k];
    }
    assert_true(fabs(total - 1) < 1e-5);
    assert_int_equal(moelat_host_gate(lat, NULL, nu, w), MOELAT_ERR_INVALID);

    /* A per-cell lattice has no device stages. */
    float *o[MOELAT_BANDS] = {big, big, big};
    assert_int_equal(moelat_device_stages(lat, 0, o, o, o, NULL), MOELAT_ERR_INVALID);
    assert_non_null(strstr(moelat_last_error(lat), "not in batch mode"));
    assert_int_equal(moelat_expert_on_device(lat, 0), 0);
    assert_string_equal(moelat_expert_name(lat, 1), "functional");
    assert_null(moelat_expert_name(lat, 3));
    free(big);
    free(small);
    free(states);
    moelat_lattice_destroy(lat);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stencil_and_sums),
        cmocka_unit_test(test_host_expert_and_gate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
