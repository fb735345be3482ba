/* Slabs: the planner, the active-plane API and moelat_group on the host
 * path (devices are exercised by scale_cli.sh). A slab owner must compute
 * exactly the full lattice's values on its planes, and nothing else. */
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
#include "moelat/group.h"
#include "test_support.h"

static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_split_and_halo(void **state) {
    (void)state;
    uint64_t s = ts_seed() | 1;
    for (int t = 0; t < 2000; t++) {
        int32_t Z = 1 + (int32_t)(rnd(&s) % 40);
        int n = 1 + (int)(rnd(&s) % 12);
        double w[12];
        for (int i = 0; i < n; i++)
            w[i] = 0.05 + (double)(rnd(&s) % 1000) / 100.0;
        int32_t z0[12], z1[12];
        char err[256];
        moelat_status st = moelat_slab_split(Z, n, w, z0, z1, err, sizeof err);
        if (Z < n) {
            assert_int_equal(st, MOELAT_ERR_INVALID);
            continue;
        }
        assert_int_equal(st, MOELAT_OK);
        for (int i = 0; i < n; i++) {
            assert_int_equal(z0[i], i ? z1[i - 1] : 0);
            assert_true(z1[i] > z0[i]);
        }
        assert_int_equal(z1[n - 1], Z);
        /* Each consumer's halo planes come from exactly one owner, and
         * together they are its whole clipped halo. */
        int32_t h = (int32_t)(rnd(&s) % 6);
        for (int j = 0; j < n; j++) {
            int got[40] = {0};
            for (int i = 0; i < n; i++) {
                int32_t lo, hi;
                if (!moelat_slab_halo(z0, z1, i, j, h, &lo, &hi))
                    continue;
                assert_true(lo >= z0[i] && hi <= z1[i] && lo < hi);
                for (int32_t z = lo; z < hi; z++)
                    got[z]++;
            }
            for (int32_t z = 0; z < Z; z++) {
                int want = (z >= z0[j] - h && z < z0[j]) || (z >= z1[j] && z < z1[j] + h);
                assert_int_equal(got[z], want);
            }
        }
    }
    double bad[2] = {1, 0};
    int32_t z0[2], z1[2];
    char err[256];
    assert_int_equal(moelat_slab_split(5, 2, bad, z0, z1, err, sizeof err), MOELAT_ERR_INVALID);
    assert_non_null(strstr(err, "slab 1"));
}

/* mode < 0: the config's default. */
static moelat_lattice *make_mode(uint64_t seed, int mode) {
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7); /* r = 2.7: every band populated, halo 2 */
    cfg.seed = seed;
    cfg.threads = 2;
    if (mode >= 0)
        cfg.mode = (moelat_mode)mode;
    return ts_lattice(&cfg);
}

static moelat_lattice *make(uint64_t seed) { return make_mode(seed, -1); }

/* n random states (sigma 0.3) drawn from seed + 1, set into lat; the
 * caller frees them. */
static float *set_random_states(moelat_lattice *lat, uint64_t seed, size_t n) {
    float *init = malloc(n * sizeof *init);
    assert_non_null(init);
    ts_random(init, n, 0.3, seed + 1);
    assert_int_equal(moelat_set_states(lat, init, n), MOELAT_OK);
    return init;
}

static void test_active_planes(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_lattice *ref = make(seed), *part = make(seed);
    size_t plane = 9 * 8 * (size_t)moelat_state_size(ref), n = plane * 7;
    float *init = set_random_states(ref, seed, n), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(moelat_set_states(part, init, n), MOELAT_OK);
    /* The halo depth is the stencil's largest |dz|: 2 at r = 2.7. */
    assert_int_equal(moelat_lattice_halo_depth(ref), 2);

    int32_t z0 = 2 + (int32_t)(seed % 2), z1 = z0 + 2 + (int32_t)(seed % 3);
    assert_int_equal(moelat_lattice_set_active_planes(part, z0, z1), MOELAT_OK);
    assert_int_equal(moelat_step(ref, 1), MOELAT_OK);
    assert_int_equal(moelat_step(part, 1), MOELAT_OK);
    assert_int_equal(moelat_get_states(ref, a, n), MOELAT_OK);
    size_t cnt = plane * (size_t)(z1 - z0);
    assert_int_equal(moelat_lattice_get_planes(part, z0, z1, b, cnt), MOELAT_OK);
    assert_memory_equal(a + plane * (size_t)z0, b, cnt * sizeof(float));
    /* Planes outside the slab were not computed. */
    assert_int_equal(moelat_lattice_get_planes(part, 0, 1, b, plane), MOELAT_OK);
    assert_true(memcmp(a, b, plane * sizeof(float)) != 0);

    /* set_planes then get_planes round-trips. */
    assert_int_equal(moelat_lattice_set_planes(part, 0, 2, init, 2 * plane), MOELAT_OK);
    assert_int_equal(moelat_lattice_get_planes(part, 0, 2, b, 2 * plane), MOELAT_OK);
    assert_memory_equal(init, b, 2 * plane * sizeof(float));

    /* Bad ranges and sizes are errors that name the range. */
    assert_int_equal(moelat_lattice_set_active_planes(part, 3, 3), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_lattice_set_active_planes(part, -1, 2), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_lattice_set_active_planes(part, 0, 8), MOELAT_ERR_INVALID);
    assert_non_null(strstr(moelat_last_error(part), "[0, 8)"));
    assert_int_equal(moelat_lattice_get_planes(part, 0, 2, b, plane), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_lattice_set_planes(part, 5, 9, b, 4 * plane), MOELAT_ERR_INVALID);

    /* Flat weights carry a lattice's weights to another. */
    moelat_lattice *other = make(seed + 99);
    char *dir = ts_tmpdir();
    ts_perturb_weights(ref, seed + 2, dir);
    free(dir);
    size_t nw = moelat_weights_count(ref);
    float *w = malloc(nw * sizeof *w);
    assert_non_null(w);
    assert_int_equal(moelat_get_weights(ref, w, nw), MOELAT_OK);
    assert_true(moelat_weights_digest(other) != moelat_weights_digest(ref));
    assert_int_equal(moelat_set_weights(other, w, nw), MOELAT_OK);
    assert_true(moelat_weights_digest(other) == moelat_weights_digest(ref));
    assert_int_equal(moelat_set_weights(other, w, nw - 1), MOELAT_ERR_INVALID);
    free(w);
    moelat_lattice_destroy(other);
    free(init);
    free(a);
    free(b);
    moelat_lattice_destroy(ref);
    moelat_lattice_destroy(part);
}

/* A group of n host slabs (thin ones included) against one lattice. */
static void group_vs_single(int n, int uneven) {
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    cfg.seed = seed;
    cfg.threads = 1;
    cfg.mode = MOELAT_MODE_PERCELL;
    moelat_lattice *ref = ts_lattice(&cfg);
    char *dir = ts_tmpdir();
    ts_perturb_weights(ref, seed + 3, dir);
    char wpath[1024];
    snprintf(wpath, sizeof wpath, "%s/w.safetensors", dir);
    assert_int_equal(moelat_save_weights(ref, wpath), MOELAT_OK);
    size_t N = moelat_cell_count(ref), S = (size_t)moelat_state_size(ref), cnt = N * S;
    float *init = malloc(cnt * sizeof *init), *a = malloc(cnt * sizeof *a), *b = malloc(cnt * sizeof *b);
    float *ext = malloc(9 * 8 * MOELAT_EXT_SIZE * sizeof *ext);
    assert_non_null(init);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(ext);
    ts_random(init, cnt, 0.3, seed + 4);
    ts_random(ext, 9 * 8 * MOELAT_EXT_SIZE, 1.0, seed + 5);
    assert_int_equal(moelat_set_states(ref, init, cnt), MOELAT_OK);
    assert_int_equal(moelat_set_external_input(ref, ext, 9 * 8 * MOELAT_EXT_SIZE), MOELAT_OK);

    const char *devs[4] = {"0", "0", "0", "0"};
    moelat_group *g = NULL;
    char err[2048];
    assert_int_equal(moelat_group_create(&cfg, devs, n, &g, err, sizeof err), MOELAT_OK);
    assert_int_equal(moelat_group_load_weights(g, wpath), MOELAT_OK);
    assert_int_equal(moelat_group_set_states(g, init, cnt), MOELAT_OK);
    assert_int_equal(moelat_group_set_external_input(g, ext, 9 * 8 * MOELAT_EXT_SIZE), MOELAT_OK);
    if (uneven) {
        double w[4] = {1 + (double)(seed % 5), 1, 3, 0.5};
        assert_int_equal(moelat_group_set_split(g, w), MOELAT_OK);
    }
    assert_int_equal(moelat_step(ref, 3), MOELAT_OK);
    assert_int_equal(moelat_group_step(g, 3), MOELAT_OK);
    assert_int_equal(moelat_group_step_count(g), 3);
    assert_int_equal(moelat_get_states(ref, a, cnt), MOELAT_OK);
    assert_int_equal(moelat_group_get_states(g, b, cnt), MOELAT_OK);
    assert_memory_equal(a, b, cnt * sizeof(float));
    /* Every slab stepped only its planes: together, each cell once a step. */
    uint64_t cells = 0;
    for (int i = 0; i < n; i++) {
        moelat_slab_info info = MOELAT_SLAB_INFO_INIT;
        assert_int_equal(moelat_group_slab_info(g, i, &info), MOELAT_OK);
        moelat_report rep = MOELAT_REPORT_INIT;
        moelat_get_report(moelat_group_lattice(g, i), &rep);
        /* With automatic balancing the split may change after step 1. */
        if (uneven)
            assert_int_equal(rep.percell_stats.total_cells, 3 * 9 * 8 * (uint64_t)(info.z1 - info.z0));
        cells += rep.percell_stats.total_cells;
    }
    assert_int_equal(cells, 3 * N);
    assert_int_equal(moelat_group_get_states(g, b, cnt - 1), MOELAT_ERR_INVALID);
    moelat_group_destroy(g);
    moelat_lattice_destroy(ref);
    free(init);
    free(a);
    free(b);
    free(ext);
    free(dir);
}

/* A delivery's ready callback: what dst held when it was called. */
typedef struct delivery {
    const float *dst;
    float *seen;
    size_t n;
    int calls;
} delivery;

static void delivered(void *arg) {
    delivery *d = arg;
    memcpy(d->seen, d->dst, d->n * sizeof(float));
    d->calls++;
}

/* Planes a step delivers (moelat_lattice_deliver_planes) equal the new
 * states read after it, on the host and on the device, and were in dst
 * when ready was called (once per request); on the device the planes of a
 * slab's own halo chunks arrive during the step. */
static void deliver_case(moelat_mode mode) {
    uint64_t seed = ts_seed();
    moelat_lattice *lat = make_mode(seed, mode);
    size_t plane = 9 * 8 * (size_t)moelat_state_size(lat), n = plane * 7;
    float *init = set_random_states(lat, seed, n), *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
    assert_non_null(got);
    assert_non_null(want);
    /* Slab [2, 6) of 7: it sends [2, 4) down and [4, 6) up, each its own
     * chunk; [0, 1) is not its own (stale planes, delivered after). */
    assert_int_equal(moelat_lattice_set_active_planes(lat, 2, 6), MOELAT_OK);
    int32_t z0[3] = {0, 2, 6}, z1[3] = {2, 6, 7}, lo[2], hi[2];
    assert_int_equal(moelat_slab_sends(z0, z1, 3, 1, 2, lo, hi), 1); /* [2, 4) and [4, 6) meet */
    assert_true(lo[0] == 2 && hi[0] == 6);
    int32_t w0[3] = {0, 1, 6}, w1[3] = {1, 6, 7};
    assert_int_equal(moelat_slab_sends(w0, w1, 3, 1, 2, lo, hi), 2);
    assert_true(lo[0] == 1 && hi[0] == 3 && lo[1] == 4 && hi[1] == 6);
    assert_int_equal(moelat_slab_sends(w0, w1, 3, 0, 2, lo, hi), 1); /* to slab 1 only */
    assert_true(lo[0] == 0 && hi[0] == 1);
    float *seen = malloc(n * sizeof *seen);
    assert_non_null(seen);
    for (int step = 0; step < 2; step++) {
        memset(got, 0xff, n * sizeof *got);
        delivery d[3] = {{got + 2 * plane, seen + 2 * plane, 2 * plane, 0},
                         {got + 4 * plane, seen + 4 * plane, 2 * plane, 0},
                         {got, seen, plane, 0}};
        assert_int_equal(moelat_lattice_deliver_planes(lat, 2, 4, got + 2 * plane, 2 * plane, delivered, &d[0]),
                         MOELAT_OK);
        assert_int_equal(moelat_lattice_deliver_planes(lat, 4, 6, got + 4 * plane, 2 * plane, delivered, &d[1]),
                         MOELAT_OK);
        assert_int_equal(moelat_lattice_deliver_planes(lat, 0, 1, got, plane, delivered, &d[2]), MOELAT_OK);
        assert_int_equal(moelat_step(lat, 1), MOELAT_OK);
        assert_int_equal(moelat_lattice_get_planes(lat, 0, 7, want, n), MOELAT_OK);
        assert_memory_equal(got + 2 * plane, want + 2 * plane, 4 * plane * sizeof(float));
        assert_memory_equal(got, want, plane * sizeof(float));
        for (int k = 0; k < 3; k++)
            assert_int_equal(d[k].calls, 1);
        assert_memory_equal(seen + 2 * plane, want + 2 * plane, 4 * plane * sizeof(float));
        assert_memory_equal(seen, want, plane * sizeof(float));
    }
    free(seen);
    if (mode == MOELAT_MODE_BATCH) {
        printf("# %llu planes delivered during their steps\n", (unsigned long long)lat->stats.planes_early);
        assert_int_equal(lat->stats.planes_early, 2 * 4);
    } else {
        assert_int_equal(lat->stats.planes_early, 0);
    }
    /* A request holds for one step only; bad requests name the problem. */
    assert_int_equal(moelat_lattice_deliver_planes(lat, 0, 1, NULL, plane, NULL, NULL), MOELAT_ERR_INVALID);
    assert_non_null(strstr(moelat_last_error(lat), "no buffer"));
    assert_int_equal(moelat_lattice_deliver_planes(lat, 0, 2, got, plane, NULL, NULL), MOELAT_ERR_INVALID);
    for (int i = 0; i < ML_MAX_DELIVER; i++)
        assert_int_equal(moelat_lattice_deliver_planes(lat, 0, 1, got, plane, NULL, NULL), MOELAT_OK);
    assert_int_equal(moelat_lattice_deliver_planes(lat, 0, 1, got, plane, NULL, NULL), MOELAT_ERR_INVALID);
    assert_non_null(strstr(moelat_last_error(lat), "at most"));
    moelat_lattice_destroy(lat);
    free(init);
    free(got);
    free(want);
}

static void test_deliver_host(void **state) {
    (void)state;
    deliver_case(MOELAT_MODE_PERCELL);
}

static void test_deliver_device(void **state) {
    (void)state;
    deliver_case(MOELAT_MODE_BATCH);
}

static void test_group_two(void **state) {
    (void)state;
    group_vs_single(2, 0);
}

static void test_group_thin_slabs(void **state) {
    (void)state;
    /* 4 slabs of 7 planes with a halo of 2: some slabs are thinner than
     * the halo, so a consumer reads planes of two owners on one side. */
    group_vs_single(4, 1);
}

static void test_group_errors(void **state) {
    (void)state;
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 3);
    cfg.mode = MOELAT_MODE_PERCELL;
    const char *devs[4] = {"0", "0", "0", "0"};
    moelat_group *g = NULL;
    char err[2048];
    assert_int_equal(moelat_group_create(&cfg, devs, 4, &g, err, sizeof err), MOELAT_ERR_INVALID);
    assert_null(g);
    assert_non_null(strstr(err, "3 planes into 4 slabs"));
    assert_int_equal(moelat_group_create(&cfg, devs, 0, &g, err, sizeof err), MOELAT_ERR_INVALID);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_and_halo), cmocka_unit_test(test_active_planes),
        cmocka_unit_test(test_group_two),      cmocka_unit_test(test_group_thin_slabs),
        cmocka_unit_test(test_group_errors),   cmocka_unit_test(test_deliver_host),
        cmocka_unit_test(test_deliver_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
