/* The batched path (PoCL in CI) against the per-cell path: pure batch,
 * mixed host/device steps, and injected device faults. */
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

#include"backend/opencl/cl_runtime.h"
#include"core/lattice_internal.h"
#include "test_support.h"

typedef struct run {
    float *states;
    moelat_report report;
} run;

/* Runs `steps` steps from random states and perturbed weights (both from
 * seed) in the given mode, recording states after each step in out[s]. */
static void run_case(const moelat_config *base, moelat_mode mode, uint64_t seed, int steps, float **out,
                     moelat_report *rep) {
    /* States drawn as the engine's init draws them, N(0, 0.1^2), from a
     * fresh seed; the 1e-5 bounds below are for that scale (states grow
     * with steps, and so does float32 rounding). */
    moelat_config cfg = *base;
    cfg.mode = mode;
    moelat_lattice *lat = ts_lattice(&cfg);
    char *dir = ts_tmpdir();
    /* Milder than ts_perturb_weights: with strongly perturbed weights the
     * states grow several-fold per step and five steps of float32 rounding
     * reach the 1e-5 bound (the golden tests cover strong weights). */
    ts_perturb_weights_by(lat, seed, dir, 0.4);
    rmdir(dir);
    free(dir);
    size_t n = moelat_cell_count(lat) * (size_t)moelat_state_size(lat);
    float *init = malloc(n * sizeof(float));
    ts_random(init, n, 0.1, seed);
    assert_int_equal(moelat_set_states(lat, init, n), MOELAT_OK);
    size_t ne = (size_t)cfg.dims[0] * cfg.dims[1] * MOELAT_EXT_SIZE;
    float *ext = malloc(ne * sizeof(float));
    ts_random(ext, ne, 1.0, seed + 1);
    assert_int_equal(moelat_set_external_input(lat, ext, ne), MOELAT_OK);
    for (int s = 0; s < steps; s++) {
        if (moelat_step(lat, 1) != MOELAT_OK)
            fail_msg("%s", moelat_last_error(lat));
        out[s] = malloc(n * sizeof(float));
        assert_int_equal(moelat_get_states(lat, out[s], n), MOELAT_OK);
    }
    if (rep)
        moelat_get_report(lat, rep);
    free(init);
    free(ext);
    moelat_lattice_destroy(lat);
}

static void free_run(float **s, int n) {
    for (int i = 0; i < n; i++)
        free(s[i]);
}

/* Batch vs per-cell after 1 and 5 steps: max abs < 1e-5, mean < 1e-6. */
static void compare_debug(int X, int Y, int Z) {
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", X, Y, Z);
    float *h[5], *d[5];
    moelat_report rep = MOELAT_REPORT_INIT;
    run_case(&cfg, MOELAT_MODE_PERCELL, seed, 5, h, NULL);
    run_case(&cfg, MOELAT_MODE_BATCH, seed, 5, d, &rep);
    assert_true(rep.batch_chunks > 0);
    assert_int_equal(rep.fallbacks, 0);
    size_t n = (size_t)X * Y * Z * 24;
    int check[2] = {0, 4};
    for (int i = 0; i < 2; i++) {
        double max, mean;
        ts_diff(h[check[i]], d[check[i]], n, &max, &mean);
        printf("# debug %dx%dx%d after %d steps: max abs diff %.3e, mean %.3e\n", X, Y, Z, check[i] + 1, max, mean);
        assert_true(max < 1e-5);
        assert_true(mean < 1e-6);
    }
    free_run(h, 5);
    free_run(d, 5);
}

static void test_debug_8x8x8(void **state) {
    (void)state;
    compare_debug(8, 8, 8);
}

static void test_debug_9x8x7(void **state) {
    (void)state;
    compare_debug(9, 8, 7);
}

static void test_experiment_12(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "experiment", 12, 12, 12);
    float *h[1], *d[1];
    run_case(&cfg, MOELAT_MODE_PERCELL, seed, 1, h, NULL);
    run_case(&cfg, MOELAT_MODE_BATCH, seed, 1, d, NULL);
    size_t n = (size_t)12 * 12 * 12 * 64;
    double worst = 0, worst_ref = 0;
    for (size_t i = 0; i < n; i++) {
        /* Relative to the value, or to 0.01 for values closer to zero than
         * that: near zero a float32 sum of O(1) terms is only good to an
         * absolute ~1e-7, which no relative bound can express. */
        double rel = fabs((double)h[0][i] - d[0][i]) / fmax(fabs((double)h[0][i]), 1e-2);
        if (!(rel <= worst)) {
            worst = rel;
            worst_ref = h[0][i];
        }
    }
    printf("# experiment 12^3: max relative diff %.3e (at a value of %.3e)\n", worst, worst_ref);
    assert_true(worst < 1e-4);
    free_run(h, 1);
    free_run(d, 1);
}

/* Kernel times only when asked for: the default queues record none, and a
 * profiled lattice times every kernel of the step; both step alike. */
static void test_profile(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 7, 6, 5);
    float *plain[1], *timed[1];
    moelat_report rep = MOELAT_REPORT_INIT;
    run_case(&cfg, MOELAT_MODE_BATCH, seed, 1, plain, &rep);
    assert_true(rep.batch_chunks > 0);
    assert_int_equal(rep.profiled, 0);
    assert_true(rep.aggregate_device_ms == 0 && rep.gate_device_ms == 0);
    for (int k = 0; k < MOELAT_BANDS; k++)
        assert_true(rep.expert_device_ms[k] == 0);
    cfg.profile = 1;
    run_case(&cfg, MOELAT_MODE_BATCH, seed, 1, timed, &rep);
    assert_int_equal(rep.profiled, 1);
    assert_true(rep.aggregate_device_ms > 0 && rep.gate_device_ms > 0);
    for (int k = 0; k < MOELAT_BANDS; k++)
        assert_true(rep.expert_device_ms[k] > 0);
    size_t n = (size_t)7 * 6 * 5 * 24;
    assert_memory_equal(plain[0], timed[0], n * sizeof(float));
    free_run(plain, 1);
    free_run(timed, 1);
}

/* A NaN state in batch mode: the gate's finite check stops the step and
 * names the first cell that went non-finite, the lowest of the NaN cell
 * and every cell that has it as a neighbour in some band (its aggregates,
 * hence nu and the gate, are NaN), found from the stencil; the per-cell
 * path stops with the same message, and both keep the step-0 states. */
static void nonfinite_batch(const char *tuning) {
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 7, 7);
    snprintf(cfg.tuning, sizeof cfg.tuning, "%s", tuning);
    cfg.mode = MOELAT_MODE_BATCH;
    const int X = 9, Y = 7, Z = 7, bx = 4, by = 3, bz = 2;
    size_t n = (size_t)X * Y * Z * 24;
    float *x = malloc(n * sizeof(float));
    assert_non_null(x);
    ts_random(x, n, 0.1, ts_seed());
    x[(size_t)(bx + X * (by + Y * bz)) * 24 + 7] = NAN;
    moelat_lattice *lat = ts_lattice(&cfg);
    int count = 0, first = -1;
    for (int i = 0; i < X * Y * Z; i++) {
        int cx = i % X, cy = i / X % Y, cz = i / (X * Y), hit = cx == bx && cy == by && cz == bz;
        for (int k = 0; k < MOELAT_BANDS && !hit; k++)
            for (int j = 0; j < lat->stencil.count[k] && !hit; j++) {
                const ml_offset *o = &lat->stencil.band[k][j];
                hit = cx + o->dx == bx && cy + o->dy == by && cz + o->dz == bz;
            }
        count += hit;
        if (hit && first < 0)
            first = i;
    }
    assert_true(count > 1);
    char want[160];
    snprintf(want, sizeof want, "step 1: first non-finite cell (%d, %d, %d): ", first % X, first / X % Y,
             first / (X * Y));
    assert_int_equal(moelat_set_states(lat, x, n), MOELAT_OK);
    assert_int_equal(moelat_step(lat, 1), MOELAT_ERR_NONFINITE);
    printf("# %s\n", moelat_last_error(lat));
    assert_non_null(strstr(moelat_last_error(lat), want));
    assert_int_equal(moelat_step_count(lat), 0);
    float *kept = malloc(n * sizeof(float));
    assert_non_null(kept);
    assert_int_equal(moelat_get_states(lat, kept, n), MOELAT_OK);
    assert_memory_equal(kept, x, n * sizeof(float));

    cfg.mode = MOELAT_MODE_PERCELL;
    moelat_lattice *host = ts_lattice(&cfg);
    assert_int_equal(moelat_set_states(host, x, n), MOELAT_OK);
    assert_int_equal(moelat_step(host, 1), MOELAT_ERR_NONFINITE);
    assert_string_equal(moelat_last_error(host), moelat_last_error(lat));
    assert_int_equal(moelat_get_states(host, kept, n), MOELAT_OK);
    assert_memory_equal(kept, x, n * sizeof(float));
    moelat_lattice_destroy(host);
    moelat_lattice_destroy(lat);
    free(kept);
    free(x);
}

/* With the gate for 1, 2 and 4 cells per work-group (441 cells: the last
 * group holds a tail); the first cell comes from its finite
 * check (kernels_cl/moelat_step.cl). */
static void test_nonfinite_batch(void **state) {
    (void)state;
    const char *cells[] = {"gate_cells=1", "gate_cells=2", "gate_cells=4"};
    for (int i = 0; i < 3; i++) {
        printf("# %s\n", cells[i]);
        nonfinite_batch(cells[i]);
    }
}

/* Some chunks on the host, some on the device: same as both pure modes. */
static void test_mixed_step(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    cfg.chunk[0] = 9;
    cfg.chunk[1] = 8;
    cfg.chunk[2] = 2; /* chunks of 144, 144, 144 and 72 cells */
    cfg.batch_threshold = 100;
    float *h[2], *d[2], *m[2];
    moelat_report rep = MOELAT_REPORT_INIT;
    run_case(&cfg, MOELAT_MODE_PERCELL, seed, 2, h, NULL);
    run_case(&cfg, MOELAT_MODE_BATCH, seed, 2, m, &rep);
    assert_int_equal(rep.batch_chunks, 6);
    assert_int_equal(rep.percell_chunks, 2);
    cfg.batch_threshold = 1;
    run_case(&cfg, MOELAT_MODE_BATCH, seed, 2, d, NULL);
    size_t n = (size_t)9 * 8 * 7 * 24;
    double max, mean;
    ts_diff(m[1], h[1], n, &max, &mean);
    assert_true(max < 1e-5);
    ts_diff(m[1], d[1], n, &max, &mean);
    assert_true(max < 1e-5);
    /* The host chunk (z = 6) is bitwise the per-cell result after step 1. */
    size_t face = 9 * 8 * 24;
    assert_memory_equal(m[0] + 6 * face, h[0] + 6 * face, face * sizeof(float));
    free_run(h, 2);
    free_run(d, 2);
    free_run(m, 2);
}

/* Runs debug 9x8x7 in two chunks per step, per-cell and then batched with
 * the n-th kernel enqueue failing; the result must be exact, with one
 * fallback whose reason holds `reason` and the chunk counts given. */
static void enqueue_fault_case(int n, const char *reason, int percell_chunks, int batch_chunks) {
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    cfg.chunk[0] = 9;
    cfg.chunk[1] = 8;
    cfg.chunk[2] = 4;
    float *h[2], *d[2];
    moelat_report rep = MOELAT_REPORT_INIT;
    long live = mlcl_live_buffers();
    run_case(&cfg, MOELAT_MODE_PERCELL, seed, 2, h, NULL);
    mlcl_fault_inject(MLCL_FAULT_ENQUEUE, n);
    run_case(&cfg, MOELAT_MODE_BATCH, seed, 2, d, &rep);
    mlcl_fault_inject(MLCL_FAULT_NONE, 0);
    assert_int_equal(rep.fallbacks, 1);
    assert_int_equal(rep.percell_chunks, percell_chunks);
    if (batch_chunks >= 0)
        assert_int_equal(rep.batch_chunks, batch_chunks);
    assert_non_null(strstr(rep.fallback_reason[0], reason));
    double max, mean;
    ts_diff(h[1], d[1], (size_t)9 * 8 * 7 * 24, &max, &mean);
    assert_true(max < 1e-5);
    assert_int_equal(mlcl_live_buffers(), live);
    free_run(h, 2);
    free_run(d, 2);
}

/* An enqueue that fails sends its chunk to the host: exact result, and
 * the fallback is counted with its reason. Enqueues before the faulty
 * one: the upgrade check's step (11: the row prefix sums, then aggregate,
 * 3 experts and gate per chunk), then step 1's prefix sums and chunk 0's
 * aggregate. */
static void test_enqueue_fault(void **state) {
    (void)state;
    enqueue_fault_case(14, "CL_OUT_OF_RESOURCES", 1, -1);
}

/* A row prefix enqueue that fails (step 1's, the 12th) sends the step's
 * device chunks to the host: exact result, one fallback with its reason. */
static void test_prefix_fault(void **state) {
    (void)state;
    enqueue_fault_case(12, "ml_row_prefix", 2, 2);
}

/* An allocation that fails halves the chunks and retries. */
static void test_alloc_fault(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    cfg.chunk[0] = 9;
    cfg.chunk[1] = 8;
    cfg.chunk[2] = 4;
    float *h[1], *d[1];
    long live = mlcl_live_buffers();
    run_case(&cfg, MOELAT_MODE_PERCELL, seed, 1, h, NULL);
    /* 11 buffers come before the first chunk buffer (states x2, input,
     * check, 3 stencils, 3 expert parameter blocks, gate). */
    mlcl_fault_inject(MLCL_FAULT_ALLOC, 12);
    run_case(&cfg, MOELAT_MODE_BATCH, seed, 1, d, NULL);
    mlcl_fault_inject(MLCL_FAULT_NONE, 0);
    double max, mean;
    ts_diff(h[0], d[0], (size_t)9 * 8 * 7 * 24, &max, &mean);
    assert_true(max < 1e-5);
    assert_int_equal(mlcl_live_buffers(), live);
    free_run(h, 1);
    free_run(d, 1);
}

/* One state +Inf: the device's band aggregates are non-finite exactly
 * where a host sum over the neighbours is (the cells whose band holds it)
 * and agree elsewhere. Along the Inf's row every later prefix sum is Inf,
 * so an aggregation that trusted prefix differences there would turn
 * cells beyond its reach into NaN. With all_abs the mean of |n_j| of every
 * band is computed (MOELAT_AGG_ABSMEAN=all), else only the functional
 * band's (local and distant declare MOELAT_CL_NO_ABSMEAN): the |n| prefix
 * reads then skip the endpoints of other bands' runs. */
static void inf_reach(int all_abs) {
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7); /* r = 2.7: every band populated */
    snprintf(cfg.tuning, sizeof cfg.tuning, "%s", all_abs ? "agg_absmean=all" : "");
    cfg.mode = MOELAT_MODE_BATCH;
    moelat_lattice *lat = ts_lattice(&cfg);
    const int S = 24;
    size_t n = moelat_cell_count(lat) * (size_t)S;
    float *x = malloc(n * sizeof(float));
    ts_random(x, n, 0.1, ts_seed());
    x[(size_t)(1 + 9 * (3 + 8 * 3)) * S + 5] = INFINITY; /* cell (1, 3, 3) */
    assert_int_equal(moelat_set_states(lat, x, n), MOELAT_OK);
    assert_int_equal(lat->n_chunks, 1);
    float *out[MOELAT_BANDS], *mean[MOELAT_BANDS], *absmean[MOELAT_BANDS];
    for (int k = 0; k < MOELAT_BANDS; k++) {
        out[k] = malloc(n * sizeof(float));
        mean[k] = malloc(n * sizeof(float));
        absmean[k] = malloc(n * sizeof(float));
    }
    assert_int_equal(ml_batch_expert_outputs(lat, 0, out, mean, absmean, NULL), 0);
    const int absmask = ml_batch_absmean_bands(lat);
    assert_int_equal(absmask, all_abs ? 7 : 2);
    size_t bad = 0, far = 0;
    double max = 0;
    for (int k = 0; k < MOELAT_BANDS; k++)
        for (size_t c = 0; c < n / S; c++) {
            int cx = (int)(c % 9), cy = (int)(c / 9 % 8), cz = (int)(c / 72);
            double sum[24] = {0}, asum[24] = {0};
            int cnt = 0;
            for (int j = 0; j < lat->stencil.count[k]; j++) {
                const ml_offset *o = &lat->stencil.band[k][j];
                int nx = cx + o->dx, ny = cy + o->dy, nz = cz + o->dz;
                if (nx < 0 || ny < 0 || nz < 0 || nx >= 9 || ny >= 8 || nz >= 7)
                    continue;
                for (int q = 0; q < S; q++) {
                    float v = x[((size_t)nx + 9 * ((size_t)ny + 8 * (size_t)nz)) * S + q];
                    sum[q] += v;
                    asum[q] += fabsf(v);
                }
                cnt++;
            }
            for (int q = 0; q < S && cnt > 0; q++) {
                double hm = sum[q] / cnt, ha = asum[q] / cnt;
                float dm = mean[k][c * S + q], da = absmean[k][c * S + q];
                if (!(absmask >> k & 1)) {
                    assert_true(isnan(da)); /* not computed */
                    da = (float)ha;
                }
                if (!isfinite(hm) != !isfinite(dm) || !isfinite(ha) != !isfinite(da))
                    fail_msg("band %d, value %d of cell (%d, %d, %d): host %g %g, device %g %g", k, q, cx, cy, cz,
                             hm, ha, dm, da);
                if (!isfinite(hm)) {
                    bad++;
                    continue;
                }
                max = fmax(max, fmax(fabs(hm - dm), fabs(ha - da)));
                far += cx >= 5 && cy == 3 && cz == 3; /* the Inf's row, beyond its reach */
            }
        }
    printf("# %zu band means non-finite on both sides, the finite ones within %.3g (%zu beyond the Inf on its row)\n",
           bad, max, far);
    assert_true(bad > 0 && far > 0);
    assert_true(max < 1e-6);
    for (int k = 0; k < MOELAT_BANDS; k++) {
        free(out[k]);
        free(mean[k]);
        free(absmean[k]);
    }
    free(x);
    moelat_lattice_destroy(lat);
}

static void test_inf_reach(void **state) {
    (void)state;
    inf_reach(0);
    inf_reach(1);
}

/* A program that fails to build: every band runs on the host, exactly. */
static void test_build_fault(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    float *h[1], *d[1];
    moelat_report rep = MOELAT_REPORT_INIT;
    run_case(&cfg, MOELAT_MODE_PERCELL, seed, 1, h, NULL);
    snprintf(cfg.tuning, sizeof cfg.tuning, "kernel_cache=off");
    mlcl_fault_inject(MLCL_FAULT_BUILD, 2); /* the first expert's program */
    run_case(&cfg, MOELAT_MODE_BATCH, seed, 1, d, &rep);
    mlcl_fault_inject(MLCL_FAULT_NONE, 0);
    assert_true(rep.fallbacks >= 1);
    assert_non_null(strstr(rep.fallback_reason[0], "failed to build"));
    double max, mean;
    ts_diff(h[0], d[0], (size_t)9 * 8 * 7 * 24, &max, &mean);
    assert_true(max < 1e-5);
    free_run(h, 1);
    free_run(d, 1);
}

/* Switching modes between steps keeps one trajectory. */
static void test_mode_switch(void **state) {
    (void)state;
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    moelat_lattice *a = ts_lattice(&cfg), *b = ts_lattice(&cfg);
    assert_int_equal(moelat_step(a, 3), MOELAT_OK);
    assert_int_equal(moelat_set_mode(b, MOELAT_MODE_BATCH), MOELAT_OK);
    assert_int_equal(moelat_step(b, 1), MOELAT_OK);
    assert_int_equal(moelat_set_mode(b, MOELAT_MODE_PERCELL), MOELAT_OK);
    assert_int_equal(moelat_step(b, 1), MOELAT_OK);
    assert_int_equal(moelat_set_mode(b, MOELAT_MODE_BATCH), MOELAT_OK);
    assert_int_equal(moelat_step(b, 1), MOELAT_OK);
    size_t n = moelat_cell_count(a) * 24;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    assert_int_equal(moelat_get_states(a, x, n), MOELAT_OK);
    assert_int_equal(moelat_get_states(b, y, n), MOELAT_OK);
    double max, mean;
    ts_diff(x, y, n, &max, &mean);
    assert_true(max < 1e-5);
    assert_string_not_equal(moelat_device_name(b), "host");
    free(x);
    free(y);
    moelat_lattice_destroy(a);
    moelat_lattice_destroy(b);
}

/* Where the states live, through every way in and out: the upgrade check
 * leaves the states and the report untouched; planes written while only
 * the device holds the newest states, new states and a new input reach
 * the next device step; the same calls on the host give the same states. */
static void test_residency(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    moelat_lattice *h = ts_lattice(&cfg), *d = ts_lattice(&cfg);
    const size_t n = moelat_cell_count(d) * 24, plane = (size_t)9 * 8 * 24, ne = (size_t)9 * 8 * MOELAT_EXT_SIZE;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *z = malloc(n * sizeof(float));
    float *p = malloc(2 * plane * sizeof(float)), *q = malloc(2 * plane * sizeof(float));
    float *ext = malloc(ne * sizeof(float));
    ts_random(x, n, 0.1, seed);
    ts_random(p, 2 * plane, 0.1, seed + 1);
    ts_random(ext, ne, 1.0, seed + 2);
    moelat_lattice *both[2] = {h, d};
    for (int i = 0; i < 2; i++)
        assert_int_equal(moelat_set_states(both[i], x, n), MOELAT_OK);
    assert_int_equal(moelat_set_mode(d, MOELAT_MODE_BATCH), MOELAT_OK);
    moelat_report rep = MOELAT_REPORT_INIT;
    moelat_get_report(d, &rep);
    assert_int_equal(rep.steps, 0);
    assert_int_equal(rep.batch_chunks, 0);
    assert_int_equal(rep.percell_chunks, 0);
    assert_int_equal(rep.fallbacks, 0);
    assert_int_equal(moelat_get_states(d, y, n), MOELAT_OK);
    assert_memory_equal(x, y, n * sizeof(float));
    for (int i = 0; i < 2; i++) {
        moelat_lattice *l = both[i];
        assert_int_equal(moelat_step(l, 1), MOELAT_OK);
        /* Planes 2 and 3 replaced while the device holds the newest states. */
        assert_int_equal(moelat_lattice_set_planes(l, 2, 4, p, 2 * plane), MOELAT_OK);
        assert_int_equal(moelat_lattice_get_planes(l, 2, 4, q, 2 * plane), MOELAT_OK);
        assert_memory_equal(p, q, 2 * plane * sizeof(float));
        assert_int_equal(moelat_set_external_input(l, ext, ne), MOELAT_OK);
        assert_int_equal(moelat_step(l, 1), MOELAT_OK);
    }
    assert_int_equal(moelat_get_states(h, y, n), MOELAT_OK);
    assert_int_equal(moelat_get_states(d, z, n), MOELAT_OK);
    double max, mean;
    ts_diff(y, z, n, &max, &mean);
    assert_true(max < 1e-5);
    /* New states after a device step are what the next read sees. */
    assert_int_equal(moelat_set_states(d, x, n), MOELAT_OK);
    assert_int_equal(moelat_get_states(d, z, n), MOELAT_OK);
    assert_memory_equal(x, z, n * sizeof(float));
    moelat_get_report(d, &rep);
    assert_int_equal(rep.steps, 2);
    free(x);
    free(y);
    free(z);
    free(p);
    free(q);
    free(ext);
    moelat_lattice_destroy(h);
    moelat_lattice_destroy(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_debug_8x8x8),   cmocka_unit_test(test_debug_9x8x7),
        cmocka_unit_test(test_experiment_12), cmocka_unit_test(test_mixed_step),
        cmocka_unit_test(test_enqueue_fault), cmocka_unit_test(test_prefix_fault), cmocka_unit_test(test_alloc_fault),
        cmocka_unit_test(test_build_fault),   cmocka_unit_test(test_mode_switch),
        cmocka_unit_test(test_inf_reach),     cmocka_unit_test(test_profile),
        cmocka_unit_test(test_nonfinite_batch), cmocka_unit_test(test_residency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
