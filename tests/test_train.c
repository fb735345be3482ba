/* The library's trainer (moelat/train.h) on a small lattice (debug 5x4x3,
 * per cell, so every run is the float64 host reference): a callback loss
 * that computes the output face's MSE gives bitwise the built-in loss's
 * weights; fit = epoch + save + resume in a new trainer, bitwise; the
 * all-cells loss lowers its loss; misuse (struct_size, shapes, indices,
 * resume before data, another data set or options) is refused with a
 * message naming it. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "moelat/train.h"
#include "test_support.h"

#define X 5
#define Y 4
#define Z 3
#define B 10

static uint64_t g_seed;

static moelat_lattice *lattice(void) {
    moelat_config cfg;
    ts_config(&cfg, "debug", X, Y, Z);
    cfg.seed = 3;
    return ts_lattice(&cfg);
}

/* B samples: random inputs, targets of the loss's shape. */
static moelat_dataset *dataset(int all_cells, uint64_t seed) { return ts_dataset(B, X, Y, Z, 24, all_cells, seed); }

static void params(moelat_train_params *p) {
    moelat_train_params_default(p);
    p->epochs = 2;
    p->batch_size = 3;
    p->optimizer.lr = 3e-3;
    p->seed = 9;
}

static float *weights(moelat_lattice *lat) {
    size_t n = moelat_weights_count(lat);
    float *w = malloc(n * sizeof(float));
    assert_non_null(w);
    assert_int_equal(moelat_get_weights(lat, w, n), MOELAT_OK);
    return w;
}

/* The output face's MSE as the engine computes it, through the callback. */
static moelat_status face_mse(void *user, const float *s, size_t count, const float *target, float *d, double *loss) {
    size_t face = *(size_t *)user, off = count - face;
    double sum = 0;
    for (size_t i = 0; i < face; i++) {
        float e = s[off + i] - target[i];
        sum += (double)(e * e);
    }
    *loss = sum / (double)face;
    if (d) {
        memset(d, 0, count * sizeof(float));
        for (size_t i = 0; i < face; i++)
            d[off + i] = (float)(2.0 * ((double)s[off + i] - target[i]) / (double)face);
    }
    return MOELAT_OK;
}

static void callback_matches_builtin(void **st) {
    (void)st;
    moelat_dataset *ds = dataset(0, g_seed);
    moelat_train_params p;
    params(&p);
    moelat_lattice *a = lattice(), *b = lattice();
    moelat_trainer *ta = ts_trainer(a, &p, ds);
    size_t face = (size_t)X * Y * 24;
    p.loss = MOELAT_LOSS_CALLBACK;
    p.loss_fn = face_mse;
    p.loss_user = &face;
    moelat_trainer *tb = ts_trainer(b, &p, ds);
    assert_int_equal(moelat_trainer_fit(ta), MOELAT_OK);
    assert_int_equal(moelat_trainer_fit(tb), MOELAT_OK);
    float *wa = weights(a), *wb = weights(b);
    assert_memory_equal(wa, wb, moelat_weights_count(a) * sizeof(float));
    const moelat_train_point *pa, *pb;
    size_t na = moelat_trainer_history(ta, 1, &pa), nb = moelat_trainer_history(tb, 1, &pb);
    assert_int_equal(na, 3);
    assert_int_equal(nb, 3);
    for (size_t i = 0; i < na; i++)
        assert_true(pa[i].loss == pb[i].loss);
    moelat_train_summary s = MOELAT_TRAIN_SUMMARY_INIT;
    assert_int_equal(moelat_trainer_summary(ta, &s), MOELAT_OK);
    assert_int_equal(s.optimizer_steps, 2 * 3); /* 8 training samples in batches of 3 */
    assert_int_equal(s.train_samples, 8);
    assert_int_equal(s.val_samples, 2);
    printf("# callback loss: bitwise the built-in loss's weights; validation %.4g -> %.4g\n", s.initial_val_loss,
           s.final_val_loss);
    free(wa);
    free(wb);
    moelat_trainer_destroy(ta);
    moelat_trainer_destroy(tb);
    moelat_lattice_destroy(a);
    moelat_lattice_destroy(b);
    moelat_dataset_destroy(ds);
}

static void resume_is_bitwise(void **st) {
    (void)st;
    moelat_dataset *ds = dataset(0, g_seed + 10);
    moelat_train_params p;
    params(&p);
    p.cosine = 1;
    p.optimizer.warmup_steps = 2;
    moelat_lattice *a = lattice(), *b = lattice(), *c = lattice();
    moelat_trainer *ta = ts_trainer(a, &p, ds), *tb = ts_trainer(b, &p, ds);
    assert_int_equal(moelat_trainer_fit(ta), MOELAT_OK);
    char *dir = ts_tmpdir();
    assert_int_equal(moelat_trainer_epoch(tb), MOELAT_OK);
    assert_int_equal(moelat_trainer_save(tb, dir), MOELAT_OK);
    moelat_trainer *tc = ts_trainer(c, &p, ds);
    if (moelat_trainer_resume(tc, dir) != MOELAT_OK)
        fail_msg("%s", moelat_trainer_last_error(tc));
    assert_int_equal(moelat_trainer_fit(tc), MOELAT_OK);
    float *wa = weights(a), *wc = weights(c);
    assert_memory_equal(wa, wc, moelat_weights_count(a) * sizeof(float));
    assert_int_equal(moelat_trainer_history(tc, 0, NULL), moelat_trainer_history(ta, 0, NULL));
    printf("# epoch, save, resume in a new trainer, fit: bitwise the straight fit\n");

    /* The checkpoint is a run checkpoint: the lattice resumes from it too. */
    moelat_lattice *d = lattice();
    assert_int_equal(moelat_resume_checkpoint(d, dir), MOELAT_OK);
    assert_int_equal(moelat_step_count(d), 0);

    /* Refusals, each naming what differs; the trainer is unchanged. */
    moelat_trainer *te = ts_trainer(d, &p, NULL);
    assert_int_equal(moelat_trainer_resume(te, dir), MOELAT_ERR_INVALID);
    assert_non_null(strstr(moelat_trainer_last_error(te), "set the data set first"));
    moelat_dataset *other = dataset(0, g_seed + 20);
    assert_int_equal(moelat_trainer_set_data(te, other), MOELAT_OK);
    assert_int_equal(moelat_trainer_resume(te, dir), MOELAT_ERR_INVALID);
    assert_non_null(strstr(moelat_trainer_last_error(te), "checkpoint data set 10 samples"));
    printf("# %s\n", moelat_trainer_last_error(te));
    moelat_trainer_destroy(te);
    p.batch_size = 4;
    p.seed = 10;
    te = ts_trainer(d, &p, ds);
    assert_int_equal(moelat_trainer_resume(te, dir), MOELAT_ERR_INVALID);
    assert_non_null(strstr(moelat_trainer_last_error(te), "checkpoint batch size 3, this run 4"));
    assert_non_null(strstr(moelat_trainer_last_error(te), "checkpoint shuffle seed 9, this run 10"));
    printf("# %s\n", moelat_trainer_last_error(te));
    moelat_train_summary s = MOELAT_TRAIN_SUMMARY_INIT;
    assert_int_equal(moelat_trainer_summary(te, &s), MOELAT_OK);
    assert_int_equal(s.optimizer_steps, 0);
    assert_int_equal(moelat_trainer_history(te, 0, NULL), 0);

    free(wa);
    free(wc);
    moelat_trainer_destroy(ta);
    moelat_trainer_destroy(tb);
    moelat_trainer_destroy(tc);
    moelat_trainer_destroy(te);
    moelat_lattice_destroy(a);
    moelat_lattice_destroy(b);
    moelat_lattice_destroy(c);
    moelat_lattice_destroy(d);
    moelat_dataset_destroy(ds);
    moelat_dataset_destroy(other);
    ts_rmtree(dir);
}

static void all_cells_and_batches(void **st) {
    (void)st;
    moelat_dataset *ds = dataset(1, g_seed + 30);
    moelat_train_params p;
    params(&p);
    p.loss = MOELAT_LOSS_ALL_CELLS_MSE;
    p.optimizer.lr = 1e-2;
    moelat_lattice *lat = lattice();
    moelat_trainer *t = ts_trainer(lat, &p, ds);
    int64_t ids[3] = {0, 1, 2};
    double before, after, l;
    assert_int_equal(moelat_trainer_evaluate(t, ids, 3, &before), MOELAT_OK);
    for (int i = 0; i < 8; i++)
        assert_int_equal(moelat_trainer_batch(t, ids, 3, &l), MOELAT_OK);
    assert_int_equal(moelat_trainer_evaluate(t, ids, 3, &after), MOELAT_OK);
    printf("# all cells: 8 steps on 3 samples, loss %.4g -> %.4g\n", before, after);
    assert_true(after < before);
    /* Position and history stay; a checkpoint records the extra steps. */
    moelat_train_summary s = MOELAT_TRAIN_SUMMARY_INIT;
    assert_int_equal(moelat_trainer_summary(t, &s), MOELAT_OK);
    assert_int_equal(s.optimizer_steps, 8);
    assert_int_equal(s.epoch, 0);
    assert_int_equal(moelat_trainer_history(t, 0, NULL), 0);
    char *dir = ts_tmpdir();
    assert_int_equal(moelat_trainer_save(t, dir), MOELAT_OK);
    moelat_lattice *lat2 = lattice();
    moelat_trainer *t2 = ts_trainer(lat2, &p, ds);
    if (moelat_trainer_resume(t2, dir) != MOELAT_OK)
        fail_msg("%s", moelat_trainer_last_error(t2));
    assert_int_equal(moelat_trainer_evaluate(t2, ids, 3, &l), MOELAT_OK);
    assert_true(l == after);
    /* Misuse. */
    int64_t bad[2] = {1, B};
    assert_int_equal(moelat_trainer_batch(t, bad, 2, &l), MOELAT_ERR_INVALID);
    assert_non_null(strstr(moelat_trainer_last_error(t), "sample 10 (entry 1) is outside [0, 10)"));
    moelat_dataset *face = dataset(0, g_seed);
    assert_int_equal(moelat_trainer_set_data(t, face), MOELAT_ERR_INVALID);
    assert_non_null(strstr(moelat_trainer_last_error(t), "targets: shape (10, 4, 5, 24), the loss over all cells"));
    moelat_train_params q;
    params(&q);
    q.struct_size = 8;
    char err[512];
    moelat_trainer *none = NULL;
    assert_int_equal(moelat_trainer_create(lat, &q, &none, err, sizeof err), MOELAT_ERR_INVALID);
    assert_null(none);
    assert_non_null(strstr(err, "moelat_train_params: struct_size 8"));
    params(&q);
    q.val_fraction = 0.95;
    assert_int_equal(moelat_trainer_create(lat, &q, &none, err, sizeof err), MOELAT_ERR_INVALID);
    assert_non_null(strstr(err, "val_fraction 0.95 is outside [0, 0.9]"));
    moelat_dataset_destroy(face);
    moelat_trainer_destroy(t);
    moelat_trainer_destroy(t2);
    moelat_lattice_destroy(lat);
    moelat_lattice_destroy(lat2);
    moelat_dataset_destroy(ds);
    ts_rmtree(dir);
}

int main(void) {
    g_seed = ts_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(callback_matches_builtin),
        cmocka_unit_test(resume_is_bitwise),
        cmocka_unit_test(all_cells_and_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
