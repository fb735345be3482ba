/* Exact host gradients (moelat/grad.h) against central finite differences
 * of the float64 host forward, checkpointing's bitwise invariance, and the
 * refusals.
 *
 * Measure: rel(a, b) = |a - b| / max(|a|, |b|, FLOOR) with FLOOR = 1e-2,
 * where a is the backward's value and b the central finite difference of
 * the float64 forward (check_one says which steps); entries below the
 * floor are thus held to an absolute 1e-8. The floor sits above the
 * difference's own noise: L sums about 10^4 terms, its rounding is near
 * 4e-12, which a step of 1e-3 turns into about 3e-9 (measured). The loss is L = sum c . s_T
 * with a fresh random c (dL/ds_T = c). */
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
#include "base/rng.h"
#include "test_support.h"

#define FLOOR 1e-2
#define TOL 1e-6

/* Sign bits of the intermediate states s_1 .. s_{T-1} (checkpoints with
 * k = 1), which the next step reads through |n_j|. */
static void signs(const moelat_grad *g, unsigned char *out) {
    size_t n = (size_t)(g->steps - 1) * g->NS;
    const double *s = g->ckpt + g->NS;
    for (size_t v = 0; v < n; v++)
        out[v] = s[v] < 0;
}

/* dL/dp by central differences of step h (h0 scaled by max(1, |p|)),
 * Richardson-extrapolated from h and h/2: (4 D(h/2) - D(h)) / 3, error
 * O(h^4). L(p + h) - L(p - h) is summed as sum_v c_v (s+_v - s-_v): the
 * differences of final states are small, so the sum rounds relative to
 * them and not to L (ten times less noise than subtracting two L's,
 * measured on the experiment preset). NAN when an intermediate state
 * changes sign between p - h and p + h: the interval then holds a kink of
 * |n_j| and no difference over it estimates the derivative. */
static double fd_at(moelat_grad *g, const double *c, double *p, double h0, unsigned char *sp,
                    unsigned char *sm, double *fp) {
    double v = *p, h = h0 * (fabs(v) > 1.0 ? fabs(v) : 1.0), d[2];
    size_t n = (size_t)(g->steps - 1) * g->NS;
    int kink = 0;
    for (int r = 0; r < 2; r++, h /= 2) {
        *p = v + h;
        assert_int_equal(ml_grad_forward(g), MOELAT_OK);
        memcpy(fp, g->final, g->NS * sizeof *fp);
        signs(g, sp);
        *p = v - h;
        assert_int_equal(ml_grad_forward(g), MOELAT_OK);
        signs(g, sm);
        kink |= r == 0 && memcmp(sp, sm, n) != 0;
        if (kink)
            break;
        double dl = 0.0;
        for (size_t q = 0; q < g->NS; q++)
            dl += c[q] * (fp[q] - g->final[q]);
        d[r] = dl / (2 * h);
    }
    *p = v;
    return kink ? NAN : (4 * d[1] - d[0]) / 3;
}

static double rel(double a, double b) {
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    return fabs(a - b) / (m > FLOOR ? m : FLOOR);
}

typedef struct fd_stats {
    int n, narrow, skipped;
    double worst;
    char where[400];
} fd_stats;

/* The model has kinks (|n_j| in the functional expert's act, |gamma|): a
 * state value crossing zero within +-h bends L and spoils a difference
 * over that interval (seen: 2e-5 relative at h = 1e-3 with a crossing 5e-5
 * away). The step then shrinks along a ladder of half decades until no
 * intermediate state changes sign. Rounding noise grows as 1/h (about
 * 1e-9 absolute at h = 1e-4, 3e-8 at 1e-6 with L ~ 100), so the ladder
 * stops at 1e-4 unless narrow is set (the caller sets it for scalars,
 * whose gradients are large, and for entries drawn after many kinks:
 * a bias that moves every state changes some sign at 1e-4 nearly always).
 * An entry still past a kink is re-drawn when can_redraw (returns 1,
 * counted as skipped); otherwise the test fails. The entry is held to
 * TOL. */
static int check_one(fd_stats *st, moelat_grad *g, const double *c, double *p, double analytic,
                     const char *what, size_t idx, int narrow, int can_redraw) {
    static const double hs[] = {1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6};
    const int n_hs = (int)(sizeof hs / sizeof hs[0]);
    size_t n = (size_t)(g->steps - 1) * g->NS + 1;
    unsigned char *sp = malloc(n), *sm = malloc(n);
    double *fp = malloc(g->NS * sizeof *fp), num = NAN;
    int tier;
    for (tier = 0; tier < n_hs && isnan(num) && (hs[tier] >= 1e-4 || narrow); tier++)
        num = fd_at(g, c, p, hs[tier], sp, sm, fp);
    free(sp);
    free(sm);
    free(fp);
    if (isnan(num) && can_redraw) {
        st->skipped++;
        return 1;
    }
    if (isnan(num))
        fail_msg("%s[%zu]: a state changes sign within +-1e-6 of it", what, idx);
    double r = rel(analytic, num);
    st->n++;
    st->narrow += tier > 1;
    if (r > st->worst) {
        st->worst = r;
        snprintf(st->where, sizeof st->where, "%s[%zu]: backward %.10g, fd %.10g (h %.0e)", what, idx, analytic,
                 num, hs[tier - 1]);
    }
    if (r > TOL)
        print_error("%s[%zu]: backward %.12g vs finite difference %.12g (rel %.2e, h %.0e)\n", what, idx, analytic,
                    num, r, hs[tier - 1]);
    return 0;
}

static uint64_t rnd_u64(uint64_t *s) {
    *s += 0x9E3779B97F4A7C15ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A lattice with random weights, states (sigma 0.5) and external input. */
static const char *g_local_expert; /* a plugin for the local band, or NULL */

static moelat_lattice *random_lattice(const char *preset, int X, int Y, int Z, double ratio, uint64_t seed) {
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, preset, X, Y, Z);
    if (g_local_expert) {
        snprintf(cfg.plugin_paths[cfg.n_plugin_paths++], sizeof cfg.plugin_paths[0], "%s",
                 MOELAT_TEST_BINARY_DIR "/plugins_grad/moelat_expert_diffusion.so");
        snprintf(cfg.expert[0], sizeof cfg.expert[0], "%s", g_local_expert);
    }
    if (ratio > 0)
        cfg.radius_ratio = ratio;
    cfg.seed = seed;
    moelat_lattice *lat = ts_lattice(&cfg);
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (lat->stencil.count[k] == 0)
            fail_msg("%s %dx%dx%d: band %s is empty", preset, X, Y, Z, moelat_band_name(k));
    ts_randomize(lat, seed);
    return lat;
}

static double *random_c(size_t n, uint64_t seed) {
    float *f = malloc(n * sizeof *f);
    double *c = malloc(n * sizeof *c);
    ts_random(f, n, 1.0, seed);
    for (size_t v = 0; v < n; v++)
        c[v] = f[v];
    free(f);
    return c;
}

/* Backward against finite differences: per_tensor entries of every weight
 * tensor (random, distinct when the tensor has that many), n_state entries
 * of s_0 and n_ext of the input face. */
static void fd_check(const char *preset, int X, int Y, int Z, double ratio, int steps, int per_tensor,
                     int n_state, int n_ext) {
    uint64_t seed = ts_seed(), rs = seed;
    moelat_lattice *lat = random_lattice(preset, X, Y, Z, ratio, seed);
    moelat_grad_options opt;
    moelat_grad_options_default(&opt);
    opt.checkpoint_every = 1;
    moelat_grad *g = NULL;
    if (moelat_grad_record(lat, steps, &opt, &g) != MOELAT_OK)
        fail_msg("record: %s", moelat_last_error(lat));
    double *c = random_c(g->NS, seed + 3);
    assert_int_equal(moelat_grad_backward_f64(g, c, g->NS), MOELAT_OK);
    double *dw = malloc(g->w.count * sizeof *dw), *ds = malloc(g->NS * sizeof *ds);
    size_t ne = (size_t)X * Y * MOELAT_EXT_SIZE;
    double *de = malloc(ne * sizeof *de);
    assert_int_equal(moelat_grad_weights_f64(g, dw, g->w.count), MOELAT_OK);
    assert_int_equal(moelat_grad_states_f64(g, ds, g->NS), MOELAT_OK);
    assert_int_equal(moelat_grad_input_f64(g, de, ne), MOELAT_OK);

    fd_stats st = {0, 0, 0, 0.0, ""};
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int nb = ml_param_blocks(lat, blocks);
    size_t base = 0;
    int nonzero = 0;
    for (int b = 0; b < nb; b++) {
        for (int t = 0; t < blocks[b]->n_tensors; t++) {
            size_t numel = ml_spec_numel(&blocks[b]->specs[t]);
            char name[200];
            snprintf(name, sizeof name, "%s%s", blocks[b]->prefix, blocks[b]->specs[t].suffix);
            int m = per_tensor < (int)numel ? per_tensor : (int)numel;
            /* Entries with a kink within +-1e-4 are re-drawn; after 100
             * draws check_one goes down to steps whose rounding noise may
             * approach the tolerance for small gradients. */
            int redraw = numel > (size_t)per_tensor, draws = 0;
            for (int s = 0; s < m; s++) {
                size_t idx, at;
                do {
                    draws++;
                    idx = redraw ? rnd_u64(&rs) % numel : (size_t)s;
                    at = base + blocks[b]->offsets[t] + idx;
                } while (check_one(&st, g, c, &g->w.flat[at], dw[at], name, idx, !redraw || draws > 100,
                                   redraw && draws < 400));
                nonzero += dw[at] != 0.0;
            }
        }
        base += blocks[b]->n_floats;
    }
    for (int s = 0; s < n_state + n_ext; s++) {
        int is_state = s < n_state, draws = 0;
        size_t idx;
        double *p, d;
        do {
            draws++;
            idx = rnd_u64(&rs) % (is_state ? g->NS : ne);
            p = is_state ? &g->ckpt[idx] : &g->ext[idx];
            d = is_state ? ds[idx] : de[idx];
        } while (check_one(&st, g, c, p, d, is_state ? "dL/ds_0" : "dL/dext", idx, draws > 100, draws < 400));
    }
    print_message("%s %dx%dx%d, %d steps: %d entries checked (%d over a narrower step, %d re-drawn past a "
                  "kink), worst rel %.2e at %s\n",
                  preset, X, Y, Z, steps, st.n, st.narrow, st.skipped, st.worst, st.where);
    assert_true(nonzero > st.n / 2); /* the check is not vacuous */
    assert_true(st.worst <= TOL);
    free(dw);
    free(ds);
    free(de);
    free(c);
    moelat_grad_destroy(g);
    moelat_lattice_destroy(lat);
}

/* debug 9x8x7 (r = 2.7: 6 / 26 / 48 neighbours), 2 steps. */
static void test_fd_debug(void **state) {
    (void)state;
    fd_check("debug", 9, 8, 7, 0, 2, 2, 12, 12);
}

/* experiment at 7x6x5 with radius ratio 0.5 (r = 3.5: every band), 2 steps. */
static void test_fd_experiment(void **state) {
    (void)state;
    fd_check("experiment", 7, 6, 5, 0.5, 2, 1, 6, 6);
}

/* The SDK example expert's backward (plugins/example) on the local band. */
static void test_fd_sdk_example(void **state) {
    (void)state;
    g_local_expert = "diffusion";
    fd_check("debug", 9, 8, 7, 0, 2, 2, 4, 0);
    g_local_expert = NULL;
}

typedef struct grads {
    double *dw, *ds, *de;
    size_t nw, ns, ne;
    int every;
} grads;

static grads run_grads(moelat_lattice *lat, int steps, int every, const double *c) {
    grads r;
    moelat_grad_options opt;
    moelat_grad_options_default(&opt);
    opt.checkpoint_every = every;
    moelat_grad *g = NULL;
    if (moelat_grad_record(lat, steps, &opt, &g) != MOELAT_OK)
        fail_msg("record: %s", moelat_last_error(lat));
    r.nw = moelat_weights_count(lat);
    r.ns = g->NS;
    r.ne = (size_t)lat->X * lat->Y * lat->E;
    r.every = moelat_grad_checkpoint_every(g);
    r.dw = malloc(r.nw * sizeof(double));
    r.ds = malloc(r.ns * sizeof(double));
    r.de = malloc(r.ne * sizeof(double));
    assert_int_equal(moelat_grad_backward_f64(g, c, r.ns), MOELAT_OK);
    assert_int_equal(moelat_grad_weights_f64(g, r.dw, r.nw), MOELAT_OK);
    assert_int_equal(moelat_grad_states_f64(g, r.ds, r.ns), MOELAT_OK);
    assert_int_equal(moelat_grad_input_f64(g, r.de, r.ne), MOELAT_OK);
    moelat_grad_destroy(g);
    return r;
}

static void grads_free(grads *r) {
    free(r->dw);
    free(r->ds);
    free(r->de);
}

static void assert_same(const grads *a, const grads *b) {
    assert_memory_equal(a->dw, b->dw, a->nw * sizeof(double));
    assert_memory_equal(a->ds, b->ds, a->ns * sizeof(double));
    assert_memory_equal(a->de, b->de, a->ne * sizeof(double));
}

/* k = 1 (every state kept), k = 2 and k = T (all recomputed) give bitwise
 * identical gradients, and so does a second run. */
static void test_checkpoint_bitwise(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_lattice *lat = random_lattice("debug", 9, 8, 7, 0, seed);
    const int T = 3;
    double *c = random_c(moelat_cell_count(lat) * 24, seed + 3);
    grads k1 = run_grads(lat, T, 1, c), k2 = run_grads(lat, T, 2, c), kT = run_grads(lat, T, T, c);
    grads again = run_grads(lat, T, 1, c);
    assert_int_equal(k1.every, 1);
    assert_int_equal(kT.every, T);
    assert_same(&k1, &k2);
    assert_same(&k1, &kT);
    assert_same(&k1, &again);
    int nz = 0;
    for (size_t v = 0; v < k1.ne; v++)
        nz += k1.de[v] != 0.0;
    assert_true(nz > (int)(k1.ne / 2)); /* the input face's gradient is there */
    grads_free(&k1);
    grads_free(&k2);
    grads_free(&kT);
    grads_free(&again);
    free(c);
    moelat_lattice_destroy(lat);
}

/* The float API agrees with the double one; per-tensor reads match the
 * flat array; s_T is the float64 run's. */
static void test_api_reads(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_lattice *lat = random_lattice("debug", 9, 8, 7, 0, seed);
    moelat_grad *g = NULL;
    assert_int_equal(moelat_grad_record(lat, 1, NULL, &g), MOELAT_OK);
    assert_int_equal(moelat_grad_checkpoint_every(g), 1); /* fits: nothing recomputed */
    size_t ns = g->NS, nw = moelat_weights_count(lat);
    float *sT = malloc(ns * sizeof *sT), *f = malloc(ns * sizeof *f);
    assert_int_equal(moelat_grad_final_states(g, sT, ns), MOELAT_OK);
    /* The float32 step agrees with the float64 one to float rounding. */
    assert_int_equal(moelat_step(lat, 1), MOELAT_OK);
    assert_int_equal(moelat_get_states(lat, f, ns), MOELAT_OK);
    double mx, mean;
    ts_diff(sT, f, ns, &mx, &mean);
    assert_true(mx < 1e-4);
    /* reads before backward are refused */
    float *w = malloc(nw * sizeof *w);
    assert_int_equal(moelat_grad_weights(g, w, nw), MOELAT_ERR_INVALID);
    for (size_t v = 0; v < ns; v++)
        f[v] = sT[v];
    assert_int_equal(moelat_grad_backward(g, f, ns), MOELAT_OK);
    assert_int_equal(moelat_grad_weights(g, w, nw), MOELAT_OK);
    float alpha, beta[1];
    assert_int_equal(moelat_grad_tensor(g, "local_expert.alpha", &alpha, 1), MOELAT_OK);
    assert_int_equal(moelat_grad_tensor(g, "local_expert.beta", beta, 1), MOELAT_OK);
    assert_memory_equal(&alpha, &w[lat->expert[0].params.offsets[8]], sizeof alpha); /* local block first, alpha its 9th tensor */
    assert_true(alpha != 0.0f);
    size_t gate0 = nw - lat->gate.n_floats;
    float *gw0 = malloc((size_t)lat->gate_hidden * 48 * sizeof *gw0);
    assert_int_equal(moelat_grad_tensor(g, "gating_network.gating_network.0.weight", gw0,
                                        (size_t)lat->gate_hidden * 48), MOELAT_OK);
    assert_memory_equal(gw0, &w[gate0 + lat->gate.offsets[0]], (size_t)lat->gate_hidden * 48 * sizeof *gw0);
    /* misuse: unknown name, wrong count, NaN in dL/ds_T, wrong size */
    assert_int_equal(moelat_grad_tensor(g, "local_expert.nope", &alpha, 1), MOELAT_ERR_INVALID);
    assert_non_null(strstr(moelat_last_error(lat), "local_expert.nope"));
    assert_int_equal(moelat_grad_tensor(g, "local_expert.alpha", &alpha, 2), MOELAT_ERR_INVALID);
    f[17] = NAN;
    assert_int_equal(moelat_grad_backward(g, f, ns), MOELAT_ERR_NONFINITE);
    assert_non_null(strstr(moelat_last_error(lat), "not finite"));
    assert_int_equal(moelat_grad_backward(g, f, ns - 1), MOELAT_ERR_INVALID);
    free(gw0);
    free(w);
    free(sT);
    free(f);
    moelat_grad_destroy(g);
    moelat_lattice_destroy(lat);
}

/* A budget too small for k = 1 picks a k that fits; an explicit k over
 * budget is refused with the estimate and a k that fits; nothing fits:
 * refused with the least. */
static void test_memory_budget(void **state) {
    (void)state;
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    moelat_lattice *lat = ts_lattice(&cfg);
    const int T = 16;
    uint64_t m1 = moelat_grad_memory(lat, T, 1), m4 = moelat_grad_memory(lat, T, 4);
    assert_true(m4 < m1);
    moelat_grad_options opt;
    moelat_grad_options_default(&opt);
    opt.memory_budget = m4;
    moelat_grad *g = NULL;
    assert_int_equal(moelat_grad_record(lat, T, &opt, &g), MOELAT_OK);
    assert_int_equal(moelat_grad_checkpoint_every(g), 4);
    moelat_grad_destroy(g);
    opt.checkpoint_every = 1;
    assert_int_equal(moelat_grad_record(lat, T, &opt, &g), MOELAT_ERR_NOMEM);
    assert_null(g);
    const char *e = moelat_last_error(lat);
    assert_non_null(strstr(e, "MiB"));
    assert_non_null(strstr(e, "a checkpoint every 4 steps"));
    opt.memory_budget = m4 - 1;
    opt.checkpoint_every = 0;
    assert_int_equal(moelat_grad_record(lat, T, &opt, &g), MOELAT_ERR_NOMEM);
    assert_non_null(strstr(moelat_last_error(lat), "at least"));
    moelat_lattice_destroy(lat);
}

/* Lipschitz CNF mode is refused, naming the band and the mode. */
static void test_refuse_lipschitz(void **state) {
    (void)state;
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    cfg.cnf_mode = MOELAT_CNF_LIPSCHITZ;
    moelat_lattice *lat = ts_lattice(&cfg);
    moelat_grad *g = NULL;
    assert_int_equal(moelat_grad_record(lat, 1, NULL, &g), MOELAT_ERR_INVALID);
    assert_null(g);
    assert_non_null(strstr(moelat_last_error(lat), "band functional"));
    assert_non_null(strstr(moelat_last_error(lat), "lipschitz"));
    moelat_lattice_destroy(lat);
}

/* A slab owner (some planes inactive) is refused: the gradient is of the
 * whole lattice. */
static void test_refuse_slab(void **state) {
    (void)state;
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    moelat_lattice *lat = ts_lattice(&cfg);
    assert_int_equal(moelat_lattice_set_active_planes(lat, 0, 3), MOELAT_OK);
    moelat_grad *g = NULL;
    assert_int_equal(moelat_grad_record(lat, 1, NULL, &g), MOELAT_ERR_INVALID);
    assert_null(g);
    assert_non_null(strstr(moelat_last_error(lat), "planes [0, 3) of 7"));
    moelat_lattice_destroy(lat);
}

/* An expert without the backward extension: refused, naming band and plugin. */
static void test_refuse_no_backward(void **state) {
    (void)state;
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    snprintf(cfg.plugin_paths[cfg.n_plugin_paths++], sizeof cfg.plugin_paths[0], "%s",
             MOELAT_TEST_BINARY_DIR "/plugins_mixed/good.so");
    snprintf(cfg.expert[2], sizeof cfg.expert[2], "test_good");
    moelat_lattice *lat = ts_lattice(&cfg);
    moelat_grad *g = NULL;
    assert_int_equal(moelat_grad_record(lat, 1, NULL, &g), MOELAT_ERR_PLUGIN);
    assert_null(g);
    const char *e = moelat_last_error(lat);
    assert_non_null(strstr(e, "band distant"));
    assert_non_null(strstr(e, "test_good"));
    assert_non_null(strstr(e, "backward"));
    moelat_lattice_destroy(lat);
}

/* Every test starts with the built-in local expert: a test that fails
 * while it has the SDK example there (test_fd_sdk_example) must not turn
 * the next ones into failures of their own. */
static int builtin_local(void **state) {
    (void)state;
    g_local_expert = NULL;
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_fd_debug, builtin_local),
        cmocka_unit_test_setup(test_fd_experiment, builtin_local),
        cmocka_unit_test_setup(test_fd_sdk_example, builtin_local),
        cmocka_unit_test_setup(test_checkpoint_bitwise, builtin_local),
        cmocka_unit_test_setup(test_api_reads, builtin_local),
        cmocka_unit_test_setup(test_memory_budget, builtin_local),
        cmocka_unit_test_setup(test_refuse_lipschitz, builtin_local),
        cmocka_unit_test_setup(test_refuse_no_backward, builtin_local),
        cmocka_unit_test_setup(test_refuse_slab, builtin_local),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
