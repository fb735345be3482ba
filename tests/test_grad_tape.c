/* A gradient recording against later changes of its lattice, and the
 * gradient engine's lifetime:
 *  - a recording's backward uses its own run's input and weights: changing
 *    the lattice's input and weights, or recording another sample, between
 *    the recording and its backward changes no bit of its gradients, on the
 *    host (mode percell) and on the device (mode batch, PoCL here), with
 *    checkpoints every 1, 2 and T steps (k = 2 and T make the backward
 *    recompute states, which is where the lattice's own values leaked in);
 *  - the engine is built once: a loop of record, backward, destroy
 *    allocates and builds nothing after its first sample;
 *  - a recording that outlives its lattice refuses cleanly (run under ASan
 *    in CI: no use after free), and destroying it afterwards is safe.
 * Inputs are fresh random states, input face and weights on debug 9x8x7,
 * where every band has neighbours. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "grad/grad.h"
#include "test_support.h"

#define T_STEPS 3

typedef struct grads {
    double *dw, *ds, *de;
    size_t nw, ns, ne;
} grads;

static moelat_lattice *random_lattice(moelat_mode mode, uint64_t seed) {
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    cfg.mode = mode;
    cfg.seed = seed;
    moelat_lattice *lat = ts_lattice(&cfg);
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (lat->stencil.count[k] == 0)
            fail_msg("debug 9x8x7: band %s is empty", moelat_band_name(k));
    ts_randomize(lat, seed);
    return lat;
}

static void set_random_input(moelat_lattice *lat, uint64_t seed) {
    size_t ne = (size_t)lat->X * (size_t)lat->Y * MOELAT_EXT_SIZE;
    float *e = malloc(ne * sizeof *e);
    ts_random(e, ne, 0.5, seed);
    assert_int_equal(moelat_set_external_input(lat, e, ne), MOELAT_OK);
    free(e);
}

static void shift_weights(moelat_lattice *lat, uint64_t seed) {
    size_t nw = moelat_weights_count(lat);
    float *w = malloc(nw * sizeof *w), *d = malloc(nw * sizeof *d);
    assert_int_equal(moelat_get_weights(lat, w, nw), MOELAT_OK);
    ts_random(d, nw, 0.05, seed);
    for (size_t v = 0; v < nw; v++)
        w[v] += d[v];
    assert_int_equal(moelat_set_weights(lat, w, nw), MOELAT_OK);
    free(w);
    free(d);
}

static moelat_grad *record(moelat_lattice *lat, int k) {
    moelat_grad_options opt;
    moelat_grad_options_default(&opt);
    opt.checkpoint_every = k;
    moelat_grad *g = NULL;
    if (moelat_grad_record(lat, T_STEPS, &opt, &g) != MOELAT_OK)
        fail_msg("record: %s", moelat_last_error(lat));
    assert_int_equal(moelat_grad_checkpoint_every(g), k);
    return g;
}

static grads reverse(moelat_lattice *lat, moelat_grad *g, uint64_t cseed) {
    grads r;
    r.nw = moelat_weights_count(lat);
    r.ns = g->NS;
    r.ne = (size_t)lat->X * lat->Y * lat->E;
    r.dw = malloc(r.nw * sizeof(double));
    r.ds = malloc(r.ns * sizeof(double));
    r.de = malloc(r.ne * sizeof(double));
    float *cf = malloc(r.ns * sizeof *cf);
    ts_random(cf, r.ns, 1.0, cseed);
    if (moelat_grad_backward(g, cf, r.ns) != MOELAT_OK)
        fail_msg("backward: %s", moelat_grad_last_error(g));
    free(cf);
    assert_int_equal(moelat_grad_weights_f64(g, r.dw, r.nw), MOELAT_OK);
    assert_int_equal(moelat_grad_states_f64(g, r.ds, r.ns), MOELAT_OK);
    assert_int_equal(moelat_grad_input_f64(g, r.de, r.ne), MOELAT_OK);
    return r;
}

static void grads_free(grads *r) {
    free(r->dw);
    free(r->ds);
    free(r->de);
}

/* Largest |a - b| / max|b| over one result. */
static double rel_max(const double *a, const double *b, size_t n) {
    double d = 0.0, m = 0.0;
    for (size_t v = 0; v < n; v++) {
        d = fmax(d, fabs(a[v] - b[v]));
        m = fmax(m, fabs(b[v]));
    }
    return m > 0 ? d / m : d;
}

static double worst(const grads *a, const grads *b) {
    return fmax(rel_max(a->dw, b->dw, a->nw), fmax(rel_max(a->ds, b->ds, a->ns), rel_max(a->de, b->de, a->ne)));
}

static void assert_same_bits(const grads *a, const grads *b, const char *what) {
    if (memcmp(a->dw, b->dw, a->nw * sizeof(double)) || memcmp(a->ds, b->ds, a->ns * sizeof(double)) ||
        memcmp(a->de, b->de, a->ne * sizeof(double)))
        fail_msg("%s: the gradients changed (worst %.3g relative)", what, worst(a, b));
}

/* One path: for k = 1, 2, T the gradient of a recording is the same after
 * the lattice's input and weights changed and after another sample was
 * recorded, and the same for every k (to float32 rounding on the device,
 * whose recomputed steps are the recording's own). */
static void keeps_inputs(moelat_mode mode, const char *path_prefix, double k_tol) {
    uint64_t seed = ts_seed();
    const int ks[3] = {1, 2, T_STEPS};
    grads first = {0};
    for (int i = 0; i < 3; i++) {
        moelat_lattice *lat = random_lattice(mode, seed);
        moelat_grad *g = record(lat, ks[i]);
        if (strncmp(moelat_grad_path(g), path_prefix, strlen(path_prefix)) != 0)
            fail_msg("k=%d: backward runs on '%s', expected '%s...'", ks[i], moelat_grad_path(g), path_prefix);
        grads ref = reverse(lat, g, seed + 7);

        /* Another sample recorded (the usual idiom: several forwards, then
         * their backwards), then the lattice's input and weights changed. */
        set_random_input(lat, seed + 11);
        moelat_grad *other = record(lat, ks[i]);
        grads other_r = reverse(lat, other, seed + 7);
        assert_true(worst(&other_r, &ref) > 1e-6); /* the test can fail: the input matters */
        shift_weights(lat, seed + 13);
        set_random_input(lat, seed + 17);

        grads again = reverse(lat, g, seed + 7);
        char what[96];
        snprintf(what, sizeof what, "%s k=%d after another input, weights and recording", path_prefix, ks[i]);
        assert_same_bits(&again, &ref, what);
        if (i == 0)
            first = ref;
        else {
            double w = worst(&ref, &first);
            if (w > k_tol)
                fail_msg("%s: k=%d differs from k=1 by %.3g relative (bound %.1g)", path_prefix, ks[i], w, k_tol);
            grads_free(&ref);
        }
        grads_free(&again);
        grads_free(&other_r);
        moelat_grad_destroy(other);
        moelat_grad_destroy(g);
        moelat_lattice_destroy(lat);
    }
    grads_free(&first);
}

static void test_host_recording_keeps_its_inputs(void **state) {
    (void)state;
    keeps_inputs(MOELAT_MODE_PERCELL, "host", 0.0);
}

static void test_device_recording_keeps_its_inputs(void **state) {
    (void)state;
    /* Every k recomputes with the same float32 device steps from the same
     * float32 states: equal to k = 1 up to the host sums' order. */
    keeps_inputs(MOELAT_MODE_BATCH, "device", 1e-6);
}

/* A training loop's shape: after the first sample nothing is built or
 * allocated. */
static void test_engine_built_once(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_lattice *lat = random_lattice(MOELAT_MODE_BATCH, seed);
    uint64_t builds0 = 0, allocs0 = 0, builds = 0, allocs = 0;
    for (int s = 0; s < 4; s++) {
        set_random_input(lat, seed + 100 + (uint64_t)s);
        moelat_grad *g = record(lat, 2);
        grads r = reverse(lat, g, seed + 200 + (uint64_t)s);
        grads_free(&r);
        moelat_grad_destroy(g);
        shift_weights(lat, seed + 300 + (uint64_t)s); /* an optimizer step */
        assert_int_equal(moelat_grad_engine_counts(lat, &builds, &allocs), MOELAT_OK);
        if (s == 0) {
            builds0 = builds;
            allocs0 = allocs;
            assert_int_equal(builds0, 2); /* the host half and the device half */
            assert_int_equal(allocs0, 1);
        }
    }
    assert_int_equal(builds, builds0);
    assert_int_equal(allocs, allocs0);
    moelat_report r = MOELAT_REPORT_INIT;
    assert_int_equal(moelat_get_report(lat, &r), MOELAT_OK);
    assert_int_equal(r.grad_builds, builds0);
    assert_int_equal(r.grad_recording_allocs, allocs0);
    assert_int_equal(r.steps, 0); /* recorded steps are not the lattice's */
    moelat_lattice_destroy(lat);
}

/* Destroying the lattice first orphans its recordings: they refuse, and
 * can still be destroyed. */
static void test_recording_outlives_lattice(void **state) {
    (void)state;
    const moelat_mode modes[2] = {MOELAT_MODE_PERCELL, MOELAT_MODE_BATCH};
    for (int m = 0; m < 2; m++) {
        moelat_lattice *lat = random_lattice(modes[m], ts_seed());
        moelat_grad *g = record(lat, 2);
        moelat_grad *g2 = record(lat, 1);
        size_t ns = g->NS, nw = moelat_weights_count(lat);
        moelat_grad_destroy(g2); /* kept as the engine's spare: freed with the lattice */
        moelat_lattice_destroy(lat);
        float *c = calloc(ns, sizeof *c), *w = calloc(nw, sizeof *w);
        c[0] = 1.0f;
        assert_int_equal(moelat_grad_backward(g, c, ns), MOELAT_ERR_INVALID);
        assert_non_null(strstr(moelat_grad_last_error(g), "destroyed"));
        assert_int_equal(moelat_grad_weights(g, w, nw), MOELAT_ERR_INVALID);
        assert_int_equal(moelat_grad_final_states(g, c, ns), MOELAT_ERR_INVALID);
        assert_int_equal(moelat_grad_save_weights(g, "/nonexistent/x.safetensors"), MOELAT_ERR_INVALID);
        moelat_grad_destroy(g);
        free(c);
        free(w);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_recording_keeps_its_inputs),
        cmocka_unit_test(test_device_recording_keeps_its_inputs),
        cmocka_unit_test(test_engine_built_once),
        cmocka_unit_test(test_recording_outlives_lattice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
