/* The batched backward on the OpenCL device (grad_cl.c) against the host
 * backward (the float64 reference, itself checked against finite
 * differences in test_grad): every weight tensor, dL/ds_0 and dL/d input
 * within 1e-4 relative (norm-wise per tensor, floored at 1e-3 of the whole
 * gradient's norm), with several chunks, with a
 * chunk on the host, after an injected launch fault; and two device runs
 * give the same bits.
 *
 * Inputs are fresh random states (sigma 0.5), input face and weights on
 * lattices where every band has neighbours (debug 9x8x7: 6 / 26 / 48;
 * experiment 7x6x5 at r = 3.5). The loss is L = sum c . s_T with a random
 * c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include"backend/opencl/cl_runtime.h"
#include "grad/grad.h"
#include "test_support.h"

#define TOL 1e-4

typedef struct grads {
    double *dw, *ds, *de;
    size_t nw, ns, ne;
    char path[384];
    long dev, host;
    char fallback[256];
} grads;

/* A plugin for the local band (the SDK example, built by grad.cmake), or NULL. */
static const char *g_local_expert;

static moelat_lattice *random_lattice(const char *preset, int X, int Y, int Z, double ratio, moelat_mode mode,
                                      const char *tuning, uint64_t seed) {
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, preset, X, Y, Z);
    cfg.mode = mode;
    if (g_local_expert) {
        snprintf(cfg.plugin_paths[cfg.n_plugin_paths++], sizeof cfg.plugin_paths[0], "%s",
                 MOELAT_TEST_BINARY_DIR "/plugins_grad/moelat_expert_diffusion.so");
        snprintf(cfg.expert[0], sizeof cfg.expert[0], "%s", g_local_expert);
    }
    if (ratio > 0)
        cfg.radius_ratio = ratio;
    cfg.seed = seed;
    size_t at = strlen(cfg.tuning);
    snprintf(cfg.tuning + at, sizeof cfg.tuning - at, "%s%s", at ? "," : "", tuning);
    moelat_lattice *lat = ts_lattice(&cfg);
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (lat->stencil.count[k] == 0)
            fail_msg("%s %dx%dx%d: band %s is empty", preset, X, Y, Z, moelat_band_name(k));
    ts_randomize(lat, seed);
    return lat;
}

/* The backward of a recorded g from a random dL/ds_T (seed cseed). */
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
        fail_msg("backward: %s", moelat_last_error(lat));
    free(cf);
    assert_int_equal(moelat_grad_weights_f64(g, r.dw, r.nw), MOELAT_OK);
    assert_int_equal(moelat_grad_states_f64(g, r.ds, r.ns), MOELAT_OK);
    assert_int_equal(moelat_grad_input_f64(g, r.de, r.ne), MOELAT_OK);
    snprintf(r.path, sizeof r.path, "%s", moelat_grad_path(g));
    const char *fb = NULL;
    moelat_grad_chunks(g, &r.dev, &r.host, &fb);
    snprintf(r.fallback, sizeof r.fallback, "%s", fb);
    moelat_grad_destroy(g);
    return r;
}

static grads run(moelat_lattice *lat, int steps, uint64_t cseed) {
    moelat_grad *g = NULL;
    if (moelat_grad_record(lat, steps, NULL, &g) != MOELAT_OK)
        fail_msg("record: %s", moelat_last_error(lat));
    return reverse(lat, g, cseed);
}

static void grads_free(grads *r) {
    free(r->dw);
    free(r->ds);
    free(r->de);
}

static double norm(const double *b, size_t n) {
    double m = 0.0;
    for (size_t v = 0; v < n; v++)
        m += b[v] * b[v];
    return sqrt(m);
}

/* ||a - b|| / max(||b||, floor) over n values. */
static double rel_norm(const double *a, const double *b, size_t n, double floor) {
    double d = 0.0;
    for (size_t v = 0; v < n; v++)
        d += (a[v] - b[v]) * (a[v] - b[v]);
    double m = norm(b, n);
    return sqrt(d) / (m > floor ? m : floor);
}

/* Every tensor, dL/ds_0 and dL/dext of dev within TOL of host. */
static void assert_close(moelat_lattice *lat, const grads *dev, const grads *host, const char *what) {
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int nb = ml_param_blocks(lat, blocks);
    size_t base = 0;
    double worst = 0.0;
    char where[200] = "";
    int nonzero = 0, tensors = 0;
    /* A tensor whose gradient is far below the others' is a sum over
     * cells and steps that nearly cancels, which float32 cannot give to
     * 1e-4 of its own size: the attention logits' bias (exactly 0, as
     * softmax ignores a shift), and the scalars: the functional gate's
     * logit bias and the CNF dampings, measured at 1e-4 to 1e-3 of the
     * whole gradient's norm and off by up to 9e-4 of themselves (5e-9 of
     * the whole). So the floor is 1e-3 of the norm of every weight's
     * gradient: a tensor at least that large agrees to 1e-4 of itself, a
     * smaller one to 1e-7 of the whole. */
    const double floor = 1e-3 * norm(host->dw, host->nw);
    for (int b = 0; b < nb; b++) {
        for (int t = 0; t < blocks[b]->n_tensors; t++) {
            size_t at = base + blocks[b]->offsets[t], n = ml_spec_numel(&blocks[b]->specs[t]);
            double r = rel_norm(dev->dw + at, host->dw + at, n, floor);
            tensors++;
            for (size_t v = 0; v < n; v++)
                if (host->dw[at + v] != 0.0) {
                    nonzero++;
                    break;
                }
            if (r > worst) {
                worst = r;
                snprintf(where, sizeof where, "%s%s", blocks[b]->prefix, blocks[b]->specs[t].suffix);
            }
        }
        base += blocks[b]->n_floats;
    }
    double rs = rel_norm(dev->ds, host->ds, dev->ns, 1e-12), re = rel_norm(dev->de, host->de, dev->ne, 1e-12);
    print_message("%s: %d tensors, worst rel %.2e (%s); dL/ds_0 %.2e; dL/dext %.2e; path %s; chunk-steps "
                  "%ld device, %ld host\n",
                  what, tensors, worst, where, rs, re, dev->path, dev->dev, dev->host);
    /* Not vacuous: every tensor but the CNF blocks' two solver scalars
     * (base_dt and, in euler mode, lipschitz_factor: not read) has a gradient. */
    assert_true(nonzero >= tensors - 4);
    assert_true(worst <= TOL);
    assert_true(rs <= TOL);
    assert_true(re <= TOL);
}

/* Device (mode auto, tuning) against host (mode percell) on the same
 * inputs; returns the device's gradients for more checks. */
static grads compare(const char *preset, int X, int Y, int Z, double ratio, int steps, const char *tuning,
                     const char *what) {
    uint64_t seed = ts_seed();
    moelat_lattice *dl = random_lattice(preset, X, Y, Z, ratio, MOELAT_MODE_AUTO, tuning, seed);
    moelat_lattice *hl = random_lattice(preset, X, Y, Z, ratio, MOELAT_MODE_PERCELL, "", seed);
    grads d = run(dl, steps, seed + 3), h = run(hl, steps, seed + 3);
    if (strncmp(d.path, "device", 6) != 0)
        fail_msg("%s: the backward did not run on the device: %s", what, d.path);
    assert_true(strncmp(h.path, "host", 4) == 0);
    assert_close(dl, &d, &h, what);
    grads_free(&h);
    moelat_lattice_destroy(dl);
    moelat_lattice_destroy(hl);
    return d;
}

static void test_debug_chunks(void **state) {
    (void)state;
    grads d = compare("debug", 9, 8, 7, 0, 2, "grad_rows=14", "debug 9x8x7, 2 steps, 4 chunks of 14 rows (ending mid-plane)");
    assert_int_equal(d.dev, 2 * 4);
    assert_int_equal(d.host, 0);
    grads_free(&d);
}

static void test_debug_one_chunk(void **state) {
    (void)state;
    grads d = compare("debug", 9, 8, 7, 0, 3, "grad_slots=5", "debug 9x8x7, 3 steps, one chunk, 5 slots");
    assert_int_equal(d.host, 0);
    grads_free(&d);
}

static void test_experiment(void **state) {
    (void)state;
    grads d = compare("experiment", 7, 6, 5, 0.5, 2, "grad_rows=13", "experiment 7x6x5, 2 steps");
    grads_free(&d);
}

/* The SDK example on the local band: its backward_fn (written once with
 * backward_portable.h) and its MOELAT_BACKWARD_CL_MEAN_ONLY claim. */
/* The functional band projected (MOELAT_BACKWARD_CL_PROJECTED, the
 * default: W_p n once per cell, dL/d(W_p n_j) per edge, the neighbour
 * adjoints formed by the engine) and not (grad_proj=0: every edge computes
 * both), each against the host, over chunks whose targets overlap. */
static void test_projection(void **state) {
    (void)state;
    grads d = compare("debug", 9, 8, 7, 0, 2, "grad_rows=14", "debug 9x8x7, functional projected, 4 chunks");
    if (!strstr(d.path, "functional projected"))
        fail_msg("expected the functional band projected: %s", d.path);
    grads_free(&d);
    d = compare("experiment", 7, 6, 5, 0.5, 2, "grad_rows=13,grad_proj=0", "experiment 7x6x5, no projection");
    if (strstr(d.path, "projected"))
        fail_msg("grad_proj=0 still projects: %s", d.path);
    grads_free(&d);
}

static void test_sdk_example(void **state) {
    (void)state;
    g_local_expert = "diffusion";
    grads d = compare("debug", 9, 8, 7, 0, 2, "grad_rows=13", "debug 9x8x7 with the SDK example, 2 steps");
    g_local_expert = NULL;
    grads_free(&d);
}

/* Chunk 1 on the host, the others on the device, in one step. */
static void test_host_chunk_mix(void **state) {
    (void)state;
    grads d = compare("debug", 9, 8, 7, 0, 2, "grad_rows=14,grad_host_chunk=1", "debug 9x8x7, chunk 1 on the host");
    assert_int_equal(d.dev, 2 * 3);
    assert_int_equal(d.host, 2 * 1);
    assert_non_null(strstr(d.fallback, "grad_host_chunk"));
    grads_free(&d);
}

/* A launch fails: that chunk is redone on the host, named and counted,
 * and the gradients are still the host's. */
static void test_fault_falls_back(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_lattice *dl = random_lattice("debug", 9, 8, 7, 0, MOELAT_MODE_AUTO, "grad_rows=12", seed);
    moelat_lattice *hl = random_lattice("debug", 9, 8, 7, 0, MOELAT_MODE_PERCELL, "", seed);
    moelat_grad *g = NULL;
    assert_int_equal(moelat_grad_record(dl, 2, NULL, &g), MOELAT_OK);
    /* The next launches are the backward's (its recomputation, with k = 1,
     * has no forward steps): the third is chunk 0's band 1 in step 2. */
    mlcl_fault_inject(MLCL_FAULT_ENQUEUE, 3);
    grads d = reverse(dl, g, seed + 3);
    mlcl_fault_inject(MLCL_FAULT_NONE, 0);
    grads h = run(hl, 2, seed + 3);
    assert_int_equal(d.host, 1);
    assert_int_equal(d.dev, 2 * 5 - 1); /* 5 chunks of 12, 12, 12, 12, 8 rows */
    assert_non_null(strstr(d.fallback, "CL_OUT_OF_RESOURCES"));
    assert_close(dl, &d, &h, "debug 9x8x7 with a failed launch");
    grads_free(&d);
    grads_free(&h);
    moelat_lattice_destroy(dl);
    moelat_lattice_destroy(hl);
}

/* Two device runs: the same bits (no float atomics, fixed orders). */
static void test_bitwise_repeat(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_lattice *lat = random_lattice("debug", 9, 8, 7, 0, MOELAT_MODE_AUTO, "grad_rows=13", seed);
    grads a = run(lat, 2, seed + 3), b = run(lat, 2, seed + 3);
    assert_true(strncmp(a.path, "device", 6) == 0);
    assert_memory_equal(a.dw, b.dw, a.nw * sizeof(double));
    assert_memory_equal(a.ds, b.ds, a.ns * sizeof(double));
    assert_memory_equal(a.de, b.de, a.ne * sizeof(double));
    grads_free(&a);
    grads_free(&b);
    moelat_lattice_destroy(lat);
}

/* Slots of lanes (work-groups running one cell's backward together, the
 * GPU default; grad_lanes asks for them on a CPU device too): every band
 * and the gate on lanes, with more lanes than state values (debug, S =
 * 24, at 32), fewer (experiment, S = 64, at 8), chunks ending mid-plane,
 * few slots taking many cells each, a host chunk beside, the SDK
 * example's expert (not written for lanes) beside them, and the same
 * bits twice. */
static void assert_lanes(const grads *d, const char *which) {
    if (!strstr(d->path, which))
        fail_msg("expected '%s' in the backward's path: %s", which, d->path);
}

/* PoCL's CPU devices give wrong gradients from the lanes' barriers where
 * oclgrind (grad_oclgrind_lanes) agrees with the host: lanes are for GPUs
 * (the default there), and these tests run on other devices only. */
static int lanes_testable(void) {
    moelat_lattice *lat = random_lattice("debug", 9, 8, 7, 0, MOELAT_MODE_AUTO, "", 1);
    const char *dev = lat->device_name;
    int cpu = strstr(dev, "pthread") || strstr(dev, "cpu-") || strstr(dev, "CPU") || !dev[0];
    if (cpu)
        print_message("lanes tests skipped on CPU device '%s' (grad_oclgrind_lanes checks lanes)\n", dev);
    moelat_lattice_destroy(lat);
    return !cpu;
}

static void test_lanes_debug(void **state) {
    (void)state;
    if (!lanes_testable())
        skip();
    grads d = compare("debug", 9, 8, 7, 0, 2, "grad_lanes=32,grad_rows=14",
                      "debug 9x8x7, 32 lanes, 4 chunks of 14 rows");
    assert_lanes(&d, "32 lanes: local functional distant gate");
    assert_int_equal(d.dev, 2 * 4);
    grads_free(&d);
    d = compare("debug", 9, 8, 7, 0, 3, "grad_lanes=4,grad_slots=5,grad_rows=14,grad_host_chunk=2",
                "debug 9x8x7, 4 lanes, 5 slots, chunk 2 on the host");
    assert_lanes(&d, "4 lanes: local functional distant gate");
    assert_int_equal(d.host, 3);
    grads_free(&d);
}

static void test_lanes_experiment(void **state) {
    (void)state;
    if (!lanes_testable())
        skip();
    grads d = compare("experiment", 7, 6, 5, 0.5, 2, "grad_lanes=8,grad_rows=13", "experiment 7x6x5, 8 lanes");
    assert_lanes(&d, "8 lanes: local functional distant gate");
    grads_free(&d);
}

static void test_lanes_sdk_example(void **state) {
    (void)state;
    if (!lanes_testable())
        skip();
    g_local_expert = "diffusion";
    grads d = compare("debug", 9, 8, 7, 0, 2, "grad_lanes=16", "debug 9x8x7, 16 lanes, the SDK example's local band");
    g_local_expert = NULL;
    assert_lanes(&d, "16 lanes: functional distant gate");
    grads_free(&d);
}

static void test_lanes_repeat(void **state) {
    (void)state;
    if (!lanes_testable())
        skip();
    uint64_t seed = ts_seed();
    moelat_lattice *lat = random_lattice("debug", 9, 8, 7, 0, MOELAT_MODE_AUTO, "grad_lanes=8,grad_rows=13", seed);
    grads a = run(lat, 2, seed + 3), b = run(lat, 2, seed + 3);
    assert_lanes(&a, "8 lanes");
    assert_memory_equal(a.dw, b.dw, a.nw * sizeof(double));
    assert_memory_equal(a.ds, b.ds, a.ns * sizeof(double));
    assert_memory_equal(a.de, b.de, a.ne * sizeof(double));
    grads_free(&a);
    grads_free(&b);
    moelat_lattice_destroy(lat);
}

/* grad_device=off and mode percell keep the host, and say so. */
static void test_host_when_asked(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_lattice *lat = random_lattice("debug", 9, 8, 7, 0, MOELAT_MODE_AUTO, "grad_device=off", seed);
    grads a = run(lat, 1, seed + 3);
    assert_string_equal(a.path, "host (tuning grad_device=off)");
    grads_free(&a);
    moelat_lattice_destroy(lat);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_debug_chunks),
        cmocka_unit_test(test_debug_one_chunk),
        cmocka_unit_test(test_experiment),
        cmocka_unit_test(test_projection),
        cmocka_unit_test(test_sdk_example),
        cmocka_unit_test(test_host_chunk_mix),
        cmocka_unit_test(test_fault_falls_back),
        cmocka_unit_test(test_bitwise_repeat),
        cmocka_unit_test(test_host_when_asked),
        cmocka_unit_test(test_lanes_debug),
        cmocka_unit_test(test_lanes_experiment),
        cmocka_unit_test(test_lanes_sdk_example),
        cmocka_unit_test(test_lanes_repeat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
