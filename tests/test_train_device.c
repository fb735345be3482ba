/* The trainer's optimizer on the OpenCL device (train_optim.c): with the
 * backward on the device, the device optimizer takes the steps (the
 * summary says so) and gives the same weights, bit for bit, as the host
 * optimizer (params.host_optimizer) after several mini-batches of AdamW
 * (clipping, weight decay, warm-up and cosine) and of SGD with momentum;
 * a checkpoint saved from the device optimizer (its moments read back)
 * resumes, in a new trainer on a new lattice, bitwise into the straight
 * run's weights. The device-resident mini-batch (dL/dW summed on the
 * device, the backward's weights copied there) equals the host-summed one
 * bit for bit, and refuses a non-finite sum as the host's check would. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moelat/grad.h"
#include "moelat/train.h"
#include "test_support.h"

#define X 5
#define Y 4
#define Z 3
#define B 14

static moelat_lattice *lattice_tuned(const char *tuning) {
    moelat_config cfg;
    ts_config(&cfg, "debug", X, Y, Z);
    cfg.mode = MOELAT_MODE_BATCH;
    cfg.seed = 4;
    size_t at = strlen(cfg.tuning);
    snprintf(cfg.tuning + at, sizeof cfg.tuning - at, "%s%s", at && *tuning ? "," : "", tuning);
    return ts_lattice(&cfg);
}

static moelat_lattice *lattice(void) { return lattice_tuned(""); }

static moelat_dataset *dataset(uint64_t seed) { return ts_dataset(B, X, Y, Z, 24, 0, seed); }

static void adamw_params(moelat_train_params *p) {
    moelat_train_params_default(p);
    p->epochs = 2;
    p->batch_size = 3;
    p->val_fraction = 0.15;
    p->seed = 5;
    p->cosine = 1;
    p->optimizer.lr = 3e-3;
    p->optimizer.warmup_steps = 2;
    p->optimizer.weight_decay = 0.02;
    p->optimizer.clip_norm = 0.05; /* below the gradients' norms here: it bites */
}

static float *weights(moelat_lattice *lat) {
    size_t n = moelat_weights_count(lat);
    float *w = malloc(n * sizeof(float));
    assert_non_null(w);
    assert_int_equal(moelat_get_weights(lat, w, n), MOELAT_OK);
    return w;
}

static void expect_optimizer(moelat_trainer *t, const char *where) {
    moelat_train_summary s = MOELAT_TRAIN_SUMMARY_INIT;
    assert_int_equal(moelat_trainer_summary(t, &s), MOELAT_OK);
    if (strncmp(s.optimizer, where, strlen(where)) != 0)
        fail_msg("optimizer '%s', expected '%s...' (backward: %s)", s.optimizer, where, s.backward);
    printf("# %s; backward %s\n", s.optimizer, s.backward);
}

/* Fits p with the host and with the device optimizer: the same bits. */
static void device_equals_host(const moelat_train_params *p) {
    moelat_dataset *ds = dataset(71);
    moelat_lattice *a = lattice(), *b = lattice();
    moelat_train_params ph = *p;
    ph.host_optimizer = 1;
    moelat_trainer *th = ts_trainer(a, &ph, ds), *td = ts_trainer(b, p, ds);
    if (moelat_trainer_fit(th) != MOELAT_OK)
        fail_msg("%s", moelat_trainer_last_error(th));
    if (moelat_trainer_fit(td) != MOELAT_OK)
        fail_msg("%s", moelat_trainer_last_error(td));
    expect_optimizer(th, "host (train parameter host_optimizer)");
    expect_optimizer(td, "device");
    float *wh = weights(a), *wd = weights(b), *w0 = NULL;
    size_t n = moelat_weights_count(a);
    moelat_lattice *fresh = lattice();
    w0 = weights(fresh);
    size_t moved = 0;
    for (size_t i = 0; i < n; i++) {
        moved += memcmp(&wh[i], &w0[i], sizeof(float)) != 0;
        if (memcmp(&wh[i], &wd[i], sizeof(float)) != 0)
            fail_msg("weight %zu of %zu: host optimizer %.9g, device %.9g", i, n, wh[i], wd[i]);
    }
    assert_true(moved > n / 2); /* the steps changed the weights */
    printf("# %zu weights after %d mini-batches: device = host bit for bit (%zu moved)\n", n,
           (int)moelat_trainer_history(td, 0, NULL), moved);
    free(wh);
    free(wd);
    free(w0);
    moelat_trainer_destroy(th);
    moelat_trainer_destroy(td);
    moelat_lattice_destroy(a);
    moelat_lattice_destroy(b);
    moelat_lattice_destroy(fresh);
    moelat_dataset_destroy(ds);
}

static void adamw_device_equals_host(void **st) {
    (void)st;
    moelat_train_params p;
    adamw_params(&p);
    device_equals_host(&p);
}

static void sgd_device_equals_host(void **st) {
    (void)st;
    moelat_train_params p;
    adamw_params(&p);
    moelat_optimizer_defaults(&p.optimizer, MOELAT_OPT_SGD);
    p.optimizer.lr = 1e-2;
    p.optimizer.weight_decay = 0.01;
    p.optimizer.warmup_steps = 1;
    device_equals_host(&p);
}

/* Straight fit against epoch, save, resume in a new trainer, fit; all on
 * the device optimizer. */
static void device_resume_is_bitwise(void **st) {
    (void)st;
    moelat_dataset *ds = dataset(83);
    moelat_train_params p;
    adamw_params(&p);
    p.epochs = 3;
    moelat_lattice *a = lattice(), *b = lattice(), *c = lattice();
    moelat_trainer *ta = ts_trainer(a, &p, ds), *tb = ts_trainer(b, &p, ds);
    assert_int_equal(moelat_trainer_fit(ta), MOELAT_OK);
    char *dir = ts_tmpdir();
    assert_int_equal(moelat_trainer_epoch(tb), MOELAT_OK);
    expect_optimizer(tb, "device");
    if (moelat_trainer_save(tb, dir) != MOELAT_OK)
        fail_msg("%s", moelat_trainer_last_error(tb));
    moelat_trainer *tc = ts_trainer(c, &p, ds);
    if (moelat_trainer_resume(tc, dir) != MOELAT_OK)
        fail_msg("%s", moelat_trainer_last_error(tc));
    assert_int_equal(moelat_trainer_fit(tc), MOELAT_OK);
    expect_optimizer(tc, "device");
    float *wa = weights(a), *wc = weights(c);
    size_t n = moelat_weights_count(a);
    for (size_t i = 0; i < n; i++)
        if (memcmp(&wa[i], &wc[i], sizeof(float)) != 0)
            fail_msg("weight %zu: straight %.9g, resumed %.9g", i, wa[i], wc[i]);
    /* And the trainer that saved goes on bitwise too (its moments stayed
     * on the device). */
    assert_int_equal(moelat_trainer_fit(tb), MOELAT_OK);
    float *wb = weights(b);
    assert_memory_equal(wa, wb, n * sizeof(float));
    printf("# device optimizer: epoch, save, resume, fit = the straight fit, bit for bit\n");
    free(wa);
    free(wb);
    free(wc);
    moelat_trainer_destroy(ta);
    moelat_trainer_destroy(tb);
    moelat_trainer_destroy(tc);
    moelat_lattice_destroy(a);
    moelat_lattice_destroy(b);
    moelat_lattice_destroy(c);
    moelat_dataset_destroy(ds);
    ts_rmtree(dir);
}

/* The device-resident mini-batch (each sample's dL/dW added into the
 * device optimizer's gradient sum, the backward's weights copied from the
 * forward's buffers) against the host-summed one (MOELAT_HOST_GRAD_SUM=1:
 * each sample's dL/dW read back, summed in float on the host in sample
 * order, uploaded), both with the device optimizer: the device adds the
 * same floats in the same order, so the weights agree bit for bit. */
static void fit_weights(const moelat_train_params *p, const moelat_dataset *ds, int host_sum, float **w,
                        const char *where) {
    if (host_sum)
        setenv("MOELAT_HOST_GRAD_SUM", "1", 1);
    moelat_lattice *lat = lattice();
    moelat_trainer *t = ts_trainer(lat, p, ds);
    moelat_status st = moelat_trainer_fit(t);
    unsetenv("MOELAT_HOST_GRAD_SUM");
    if (st != MOELAT_OK)
        fail_msg("%s", moelat_trainer_last_error(t));
    moelat_train_summary s = MOELAT_TRAIN_SUMMARY_INIT;
    assert_int_equal(moelat_trainer_summary(t, &s), MOELAT_OK);
    if (!strstr(s.optimizer, where))
        fail_msg("optimizer '%s', expected '...%s...'", s.optimizer, where);
    printf("# %s\n", s.optimizer);
    *w = weights(lat);
    moelat_trainer_destroy(t);
    moelat_lattice_destroy(lat);
}

static void device_sum_equals_host_sum(void **st) {
    (void)st;
    moelat_dataset *ds = dataset(97);
    moelat_train_params p;
    adamw_params(&p);
    p.epochs = 3;
    float *wd, *wh;
    fit_weights(&p, ds, 0, &wd, "device (the backward ran on the device; the mini-batch's gradient summed there)");
    fit_weights(&p, ds, 1, &wh, "device (the backward ran on the device; gradient summed on the host");
    moelat_lattice *fresh = lattice();
    size_t n = moelat_weights_count(fresh), moved = 0;
    float *w0 = weights(fresh);
    for (size_t i = 0; i < n; i++) {
        moved += memcmp(&wd[i], &w0[i], sizeof(float)) != 0;
        if (memcmp(&wd[i], &wh[i], sizeof(float)) != 0)
            fail_msg("weight %zu of %zu: summed on the device %.9g, on the host %.9g", i, n, wd[i], wh[i]);
    }
    assert_true(moved > n / 2);
    printf("# %zu weights after 3 epochs of 4 mini-batches: device-resident sum = host sum bit for bit (%zu "
           "moved)\n", n, moved);
    free(wd);
    free(wh);
    free(w0);
    moelat_lattice_destroy(fresh);
    moelat_dataset_destroy(ds);
}

/* A loss whose dL/ds_T is huge: the float gradients overflow. */
static moelat_status huge_loss(void *user, const float *s, size_t count, const float *tg, float *d, double *loss) {
    (void)user;
    (void)s;
    (void)tg;
    *loss = 1.0;
    for (size_t i = 0; d && i < count; i++)
        d[i] = 3e38f;
    return MOELAT_OK;
}

/* A non-finite gradient summed on the device: the step refuses, naming
 * the weight, and leaves the weights and the step counter as they were. */
static void device_sum_refuses_nonfinite(void **st) {
    (void)st;
    moelat_dataset *ds = dataset(101);
    moelat_train_params p;
    adamw_params(&p);
    moelat_lattice *lat = lattice();
    moelat_trainer *t = ts_trainer(lat, &p, ds);
    int64_t ids[3] = {0, 1, 2};
    assert_int_equal(moelat_trainer_batch(t, ids, 3, NULL), MOELAT_OK); /* the device optimizer open */
    moelat_train_summary s = MOELAT_TRAIN_SUMMARY_INIT;
    assert_int_equal(moelat_trainer_summary(t, &s), MOELAT_OK);
    assert_non_null(strstr(s.optimizer, "summed there"));
    moelat_trainer_destroy(t);
    float *before = weights(lat);
    p.loss = MOELAT_LOSS_CALLBACK;
    p.loss_fn = huge_loss;
    t = ts_trainer(lat, &p, ds);
    moelat_status got = moelat_trainer_batch(t, ids, 3, NULL);
    const char *err = moelat_trainer_last_error(t);
    printf("# %s\n", err);
    assert_int_equal(got, MOELAT_ERR_NONFINITE);
    assert_non_null(strstr(err, "the summed gradient of weight"));
    assert_non_null(strstr(err, "summed on the device"));
    assert_non_null(strstr(err, "nothing updated"));
    assert_int_equal(moelat_trainer_summary(t, &s), MOELAT_OK);
    assert_int_equal(s.optimizer_steps, 0);
    float *after = weights(lat);
    assert_memory_equal(before, after, moelat_weights_count(lat) * sizeof(float));
    free(before);
    free(after);
    moelat_trainer_destroy(t);
    moelat_lattice_destroy(lat);
    moelat_dataset_destroy(ds);
}

/* dL/dW of a recording made by the public API on weights that only the
 * device holds (after a device fit: the recording takes them lazily, its
 * sweep copies them on the device) equals that of the same weights set
 * from the host; a host chunk in that sweep reads them back first. */
static void grad_weights(moelat_lattice *lat, int host_chunk, float *dw) {
    size_t ns = moelat_cell_count(lat) * (size_t)moelat_state_size(lat), ne = (size_t)X * Y * MOELAT_EXT_SIZE;
    float *s0 = malloc(ns * sizeof(float)), *ext = malloc(ne * sizeof(float)), *d = malloc(ns * sizeof(float));
    assert_true(s0 && ext && d);
    ts_random(s0, ns, 0.5, 7);
    ts_random(ext, ne, 1.0, 8);
    ts_random(d, ns, 0.1, 9);
    assert_int_equal(moelat_set_states(lat, s0, ns), MOELAT_OK);
    assert_int_equal(moelat_set_external_input(lat, ext, ne), MOELAT_OK);
    moelat_grad *g = NULL;
    if (moelat_grad_record(lat, 2, NULL, &g) != MOELAT_OK)
        fail_msg("%s", moelat_last_error(lat));
    if (moelat_grad_backward(g, d, ns) != MOELAT_OK)
        fail_msg("%s", moelat_grad_last_error(g));
    assert_int_equal(moelat_grad_weights(g, dw, moelat_weights_count(lat)), MOELAT_OK);
    long dev = 0, host = 0;
    moelat_grad_chunks(g, &dev, &host, NULL);
    assert_true(strncmp(moelat_grad_path(g), "device", 6) == 0);
    assert_true(host_chunk ? host > 0 : host == 0);
    moelat_grad_destroy(g);
    free(s0);
    free(ext);
    free(d);
}

static void record_on_device_weights(void **st) {
    (void)st;
    moelat_dataset *ds = dataset(103);
    moelat_train_params p;
    adamw_params(&p);
    p.epochs = 1;
    for (int host_chunk = 0; host_chunk < 2; host_chunk++) {
        /* grad_host_chunk=0: chunk 0's rows on the host (the trainer sums
         * those gradients on the host) */
        const char *tuning = host_chunk ? "grad_host_chunk=0" : "";
        moelat_lattice *a = lattice_tuned(tuning), *b = lattice_tuned(tuning);
        moelat_trainer *t = ts_trainer(a, &p, ds);
        assert_int_equal(moelat_trainer_fit(t), MOELAT_OK);
        size_t n = moelat_weights_count(a);
        float *da = malloc(n * sizeof(float)), *db = malloc(n * sizeof(float));
        assert_true(da && db);
        grad_weights(a, host_chunk, da); /* the weights only on the device until here */
        float *w = weights(a);
        assert_int_equal(moelat_set_weights(b, w, n), MOELAT_OK);
        grad_weights(b, host_chunk, db);
        for (size_t i = 0; i < n; i++)
            if (memcmp(&da[i], &db[i], sizeof(float)) != 0)
                fail_msg("dL/dW %zu: device-held weights %.9g, host-set %.9g (host chunk %d)", i, da[i], db[i],
                         host_chunk);
        printf("# dL/dW of a recording on device-held weights = host-set weights%s\n",
               host_chunk ? " (chunk 0 on the host)" : "");
        free(da);
        free(db);
        free(w);
        moelat_trainer_destroy(t);
        moelat_lattice_destroy(a);
        moelat_lattice_destroy(b);
    }
    moelat_dataset_destroy(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(adamw_device_equals_host),
        cmocka_unit_test(sgd_device_equals_host),
        cmocka_unit_test(device_resume_is_bitwise),
        cmocka_unit_test(device_sum_equals_host_sum),
        cmocka_unit_test(device_sum_refuses_nonfinite),
        cmocka_unit_test(record_on_device_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
