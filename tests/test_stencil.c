/* Stencil: interior counts per band equal docs/MODEL.md's, cells at the
 * boundary see fewer neighbours, and the aggregation's run table lists
 * exactly the stencil's offsets, each in its band. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>

#include"core/run_table.h"
#include "core/stencil.h"

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

/* Expands the run table back into offsets (a cube of bands, -1 none) and
 * compares with the stencil: every offset once, in its band, nothing else. */
static void expect_table_is_stencil(double r, const double ratio[3]) {
    ml_stencil st;
    assert_int_equal(ml_stencil_build(r, ratio, &st), 0);
    int32_t *rows, *segs;
    int n_rows, n_segs, direct;
    assert_int_equal(ml_run_table_build(&st, &rows, &n_rows, &segs, &n_segs, &direct), 0);
    assert_int_equal(direct, 0);
    int h = (int)r + 1, side = 2 * h + 1;
    signed char *cube = malloc((size_t)side * side * side);
    assert_non_null(cube);
    for (int i = 0; i < side * side * side; i++)
        cube[i] = -1;
#define AT(dx, dy, dz) (((size_t)((dz) + h) * side + (size_t)((dy) + h)) * side + (size_t)((dx) + h))
    long listed = 0;
    for (int i = 0; i < n_rows; i++) {
        int dy = rows[4 * i], dz = rows[4 * i + 1], first = rows[4 * i + 2], end = rows[4 * i + 3];
        assert_true(first < end && end <= n_segs);
        int prev = segs[2 * first];
        assert_int_equal(segs[2 * first + 1], -1); /* a row starts with its starting endpoint */
        for (int j = first + 1; j < end; j++) {
            int dx = segs[2 * j], band = segs[2 * j + 1];
            assert_true(dx > prev);
            for (int x = prev + 1; x <= dx && band >= 0; x++) {
                assert_int_equal(cube[AT(x, dy, dz)], -1); /* listed once */
                cube[AT(x, dy, dz)] = (signed char)band;
                listed++;
            }
            prev = dx;
        }
    }
    long total = 0;
    for (int k = 0; k < 3; k++) {
        total += st.count[k];
        for (int j = 0; j < st.count[k]; j++) {
            const ml_offset *o = &st.band[k][j];
            assert_int_equal(cube[AT(o->dx, o->dy, o->dz)], k);
        }
    }
#undef AT
    assert_int_equal(listed, total);
    free(cube);
    free(rows);
    free(segs);
    ml_stencil_free(&st);
}

static void test_run_table(void **state) {
    (void)state;
    const double odd[3] = {0.3, 0.55, 0.9};
    const double radii[] = {1.0, 2.7, 4.5, 8.0, 20.0};
    for (size_t i = 0; i < sizeof radii / sizeof radii[0]; i++) {
        expect_table_is_stencil(radii[i], ratios);
        expect_table_is_stencil(radii[i], odd);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interior_counts),
        cmocka_unit_test(test_boundary_has_fewer),
        cmocka_unit_test(test_band_edges),
        cmocka_unit_test(test_run_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
