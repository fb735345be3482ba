/* Stencil: interior counts per band equal MODEL.md's, and cells at the
 * boundary see fewer neighbours. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stencil.h"

static const double ratios[3] = {0.4, 0.8, 0.99};

static void expect_counts(double r, int l, int f, int d) {
    ml_stencil st;
    assert_int_equal(ml_stencil_build(r, ratios, &st), 0);
    assert_int_equal(st.count[0], l);
    assert_int_equal(st.count[1], f);
    assert_int_equal(st.count[2], d);
    ml_stencil_free(&st);
}

static void test_interior_counts(void **state) {
    (void)state;
    expect_counts(4.5, 26, 152, 186);
    expect_counts(8.0, 146, 898, 1058);
    expect_counts(20.0, 2102, 14974, 15454);
    expect_counts(2.7, 6, 26, 48); /* debug at 9x8x7 */
}

static int clipped(const ml_stencil *st, int band, int x, int y, int z, int X, int Y, int Z) {
    int n = 0;
    for (int j = 0; j < st->count[band]; j++) {
        int nx = x + st->band[band][j].dx, ny = y + st->band[band][j].dy, nz = z + st->band[band][j].dz;
        n += nx >= 0 && ny >= 0 && nz >= 0 && nx < X && ny < Y && nz < Z;
    }
    return n;
}

static void test_boundary_has_fewer(void **state) {
    (void)state;
    ml_stencil st;
    assert_int_equal(ml_stencil_build(4.5, ratios, &st), 0);
    for (int k = 0; k < 3; k++) {
        int interior = clipped(&st, k, 10, 10, 10, 21, 21, 21);
        assert_int_equal(interior, st.count[k]);
        int corner = clipped(&st, k, 0, 0, 0, 21, 21, 21);
        int face = clipped(&st, k, 10, 10, 0, 21, 21, 21);
        assert_true(corner < face);
        assert_true(face < interior);
    }
    ml_stencil_free(&st);
}

static void test_band_edges(void **state) {
    (void)state;
    /* d = 2 against r = 5: 0.4 r = 2 is functional (inclusive lower edge);
     * d = 4 = 0.8 r is still functional; d = 4.95 = 0.99 r is distant. */
    assert_int_equal(ml_offset_band(2, 0, 0, 5.0, ratios), 1);
    assert_int_equal(ml_offset_band(1, 1, 1, 5.0, ratios), 0);
    assert_int_equal(ml_offset_band(4, 0, 0, 5.0, ratios), 1);
    assert_int_equal(ml_offset_band(4, 2, 2, 5.0, ratios), 2);
    assert_int_equal(ml_offset_band(5, 0, 0, 5.0, ratios), -1);
    assert_int_equal(ml_offset_band(0, 0, 0, 5.0, ratios), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interior_counts),
        cmocka_unit_test(test_boundary_has_fewer),
        cmocka_unit_test(test_band_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
