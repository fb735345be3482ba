#include "test_support.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include"core/lattice_internal.h"
#include "io/npy.h"
#include "base/rng.h"
#include "io/safetensors.h"

void ts_config(moelat_config *cfg, const char *preset, int X, int Y, int Z) {
    char err[512];
    moelat_config_init(cfg);
    if (moelat_config_preset(preset, cfg, err, sizeof err) != MOELAT_OK)
        fail_msg("preset %s: %s", preset, err);
    cfg->dims[0] = X;
    cfg->dims[1] = Y;
    cfg->dims[2] = Z;
    cfg->threads = 2;
    /* The library's default is auto (batched where a device passes); the
     * tests ask for the path they exercise, per cell unless they say. */
    cfg->mode = MOELAT_MODE_PERCELL;
    const char *tuning = ts_tuning();
    if (strlen(tuning) >= sizeof cfg->tuning)
        fail_msg("MOELAT_TEST_TUNING exceeds %zu bytes", sizeof cfg->tuning - 1);
    snprintf(cfg->tuning, sizeof cfg->tuning, "%s", tuning);
}

const char *ts_tuning(void) {
    const char *t = getenv("MOELAT_TEST_TUNING");
    return t ? t : "";
}

moelat_lattice *ts_lattice(const moelat_config *cfg) {
    char err[2048];
    moelat_lattice *lat = NULL;
    moelat_status st = moelat_lattice_create(cfg, &lat, err, sizeof err);
    if (st != MOELAT_OK)
        fail_msg("lattice_create: %s", err);
    return lat;
}

uint64_t ts_seed(void) {
    const char *env = getenv("MOELAT_TEST_SEED");
    uint64_t s;
    if (env) {
        s = strtoull(env, NULL, 10);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
    }
    printf("# random seed %llu (MOELAT_TEST_SEED to repeat)\n", (unsigned long long)s);
    return s;
}

void ts_random(float *v, size_t n, double sigma, uint64_t seed) {
    ml_rng_normal_fill(seed, 0, v, n, sigma);
}

void ts_diff(const float *a, const float *b, size_t n, double *max, double *mean) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) {
            *max = *mean = INFINITY;
            return;
        }
        if (d > m)
            m = d;
        s += d;
    }
    *max = m;
    *mean = n ? s / (double)n : 0;
}

float *ts_read_npy(const char *path, size_t expect_count) {
    float *data = NULL;
    int ndim;
    int64_t shape[8];
    char err[1024];
    if (npy_read(path, &data, &ndim, shape, err, sizeof err) != 0)
        fail_msg("%s", err);
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= (size_t)shape[d];
    if (n != expect_count)
        fail_msg("%s: %zu elements, expected %zu", path, n, expect_count);
    return data;
}

char *ts_tmpdir(void) {
    char *t = strdup("/tmp/moelat-test-XXXXXX");
    if (!mkdtemp(t))
        fail_msg("mkdtemp failed");
    return t;
}

void ts_rmtree(char *dir) {
    char cmd[2100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(dir);
}

void ts_randomize(moelat_lattice *lat, uint64_t seed) {
    char *dir = ts_tmpdir();
    ts_perturb_weights(lat, seed, dir);
    rmdir(dir);
    free(dir);
    size_t n = moelat_cell_count(lat) * (size_t)moelat_state_size(lat);
    size_t ne = (size_t)lat->X * (size_t)lat->Y * MOELAT_EXT_SIZE;
    float *s = malloc(n * sizeof *s), *e = malloc(ne * sizeof *e);
    ts_random(s, n, 0.5, seed + 1);
    ts_random(e, ne, 0.5, seed + 2);
    assert_int_equal(moelat_set_states(lat, s, n), MOELAT_OK);
    assert_int_equal(moelat_set_external_input(lat, e, ne), MOELAT_OK);
    free(s);
    free(e);
}

void ts_perturb_weights(moelat_lattice *lat, uint64_t seed, const char *tmpdir) {
    ts_perturb_weights_by(lat, seed, tmpdir, 1.0);
}

void ts_perturb_weights_by(moelat_lattice *lat, uint64_t seed, const char *tmpdir, double a) {
    char path[1024], err[1024];
    snprintf(path, sizeof path, "%s/perturb.safetensors", tmpdir);
    if (moelat_save_weights(lat, path) != MOELAT_OK)
        fail_msg("%s", moelat_last_error(lat));
    st_file f;
    if (st_read(path, &f, err, sizeof err) != 0)
        fail_msg("%s", err);
    ml_rng r;
    ml_rng_seed(&r, seed);
    for (int t = 0; t < f.n_tensors; t++)
        for (size_t i = 0; i < f.tensors[t].numel; i++) {
            double u = ml_rng_uniform(&r), g = ml_rng_uniform(&r) - 0.5;
            f.tensors[t].data[i] = (float)(f.tensors[t].data[i] * (1.0 + a * (u - 0.5)) + 0.1 * a * g);
        }
    if (st_write(path, f.tensors, f.n_tensors, err, sizeof err) != 0)
        fail_msg("%s", err);
    st_free(&f);
    if (moelat_load_weights(lat, path) != MOELAT_OK)
        fail_msg("%s", moelat_last_error(lat));
    unlink(path);
}

moelat_dataset *ts_dataset(int B, int X, int Y, int Z, int S, int all_cells, uint64_t seed) {
    int64_t in_shape[3] = {Y, X, MOELAT_EXT_SIZE}, face[3] = {Y, X, S}, all[4] = {Z, Y, X, S};
    size_t ni = (size_t)B * Y * X * MOELAT_EXT_SIZE, nt = (size_t)B * (all_cells ? Z : 1) * Y * X * S;
    float *in = malloc(ni * sizeof(float)), *tg = malloc(nt * sizeof(float));
    assert_non_null(in);
    assert_non_null(tg);
    ts_random(in, ni, 1.0, seed);
    ts_random(tg, nt, 0.5, seed + 1);
    moelat_dataset *ds = NULL;
    char err[512];
    if (moelat_dataset_create(B, 3, in_shape, in, all_cells ? 4 : 3, all_cells ? all : face, tg, &ds, err,
                              sizeof err) != MOELAT_OK)
        fail_msg("%s", err);
    free(in);
    free(tg);
    return ds;
}

moelat_trainer *ts_trainer(moelat_lattice *lat, const moelat_train_params *p, const moelat_dataset *ds) {
    moelat_trainer *t = NULL;
    char err[512];
    if (moelat_trainer_create(lat, p, &t, err, sizeof err) != MOELAT_OK)
        fail_msg("%s", err);
    if (ds && moelat_trainer_set_data(t, ds) != MOELAT_OK)
        fail_msg("%s", moelat_trainer_last_error(t));
    return t;
}
