/* .npy: random round trips, the three header versions, headers written by
 * other tools (key order, quotes, Python 2 longs), every rejected case with
 * its message, npy_read_expect, and files exchanged with numpy itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "io_fixture.h"

#include "io/npy.h"

static int setup(void **state) {
    (void)state;
    return io_fixture_setup("test_npy", "npy");
}

static int teardown(void **state) {
    (void)state;
    return io_fixture_teardown();
}

static void random_floats(float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)rnd();
        memcpy(&v[i], &u, 4);
    }
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (len)
        assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static unsigned char *read_bytes(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

/* A .npy file of version major.0 with the given dict text (written as is,
 * plus a newline) followed by ndata random bytes. */
static void write_npy_raw(const char *path, int major, const char *dict, size_t ndata) {
    size_t dl = strlen(dict) + 1;
    size_t pre = major == 1 ? 10 : 12;
    size_t total = pre + dl + ndata;
    unsigned char *b = malloc(total);
    assert_non_null(b);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    b[8] = (unsigned char)(dl & 0xff);
    b[9] = (unsigned char)((dl >> 8) & 0xff);
    if (major != 1) {
        b[10] = (unsigned char)((dl >> 16) & 0xff);
        b[11] = 0;
    }
    memcpy(b + pre, dict, dl - 1);
    b[pre + dl - 1] = '\n';
    for (size_t i = 0; i < ndata; i++)
        b[pre + dl + i] = (unsigned char)rnd();
    write_bytes(path, b, total);
    free(b);
}

static void test_round_trip(void **state) {
    (void)state;
    char path[300], err[512] = "";
    snprintf(path, sizeof path, "%s/rt.npy", g_dir);
    for (int rep = 0; rep < 25; rep++) {
        int ndim = (int)(rnd() % 6);
        int64_t shape[8];
        size_t numel = 1;
        for (int d = 0; d < ndim; d++) {
            shape[d] = (int64_t)(rnd() % 7);
            numel *= (size_t)shape[d];
        }
        float *v = malloc((numel + 1) * sizeof(float));
        random_floats(v, numel);
        assert_int_equal(npy_write(path, v, ndim, shape, err, sizeof err), 0);

        size_t len;
        unsigned char *raw = read_bytes(path, &len);
        assert_memory_equal(raw, "\x93NUMPY\x01\x00", 8);
        size_t hl = raw[8] | ((size_t)raw[9] << 8);
        assert_int_equal((10 + hl) % 64, 0);
        assert_int_equal(raw[10 + hl - 1], '\n');
        assert_int_equal(len, 10 + hl + numel * 4);
        free(raw);

        float *got = NULL;
        int gnd = -1;
        int64_t gshape[8];
        if (npy_read(path, &got, &gnd, gshape, err, sizeof err) != 0)
            fail_msg("%s", err);
        assert_int_equal(gnd, ndim);
        if (ndim)
            assert_memory_equal(gshape, shape, sizeof(int64_t) * (size_t)ndim);
        if (numel)
            assert_memory_equal(got, v, numel * sizeof(float));
        free(got);

        /* npy_read_expect reads states and inputs: random bits that include
         * a NaN or Inf must be refused, naming the element. */
        size_t bad = numel;
        for (size_t k = 0; k < numel && bad == numel; k++)
            if (!isfinite(v[k]))
                bad = k;
        float *dst = malloc((numel + 1) * sizeof(float));
        int rc = npy_read_expect(path, dst, ndim, shape, err, sizeof err);
        if (bad < numel) {
            char flat[64];
            snprintf(flat, sizeof flat, "(flat index %zu)", bad);
            assert_int_not_equal(rc, 0);
            assert_non_null(strstr(err, flat));
            assert_non_null(strstr(err, "non-finite"));
        } else if (rc != 0) {
            fail_msg("%s", err);
        } else if (numel) {
            assert_memory_equal(dst, v, numel * sizeof(float));
        }
        free(dst);
        free(v);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q '\\.tmp\\.'", g_dir);
    assert_int_not_equal(system(cmd), 0);
}

/* Versions 2.0 and 3.0, reordered keys, double quotes, trailing commas,
 * spaces and Python 2 longs are all valid headers. */
static void test_header_variants(void **state) {
    (void)state;
    static const struct {
        int major;
        const char *dict;
        int ndim;
        int64_t shape[3];
    } cases[] = {
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 2, {2, 3}},
        {2, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 1, {4}},
        {3, "{'shape': (1, 2, 2), 'fortran_order': False, 'descr': '<f4'}", 3, {1, 2, 2}},
        {1, "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(3L,2L)}", 2, {3, 2}},
        {1, "  { 'fortran_order' : False , 'descr' : '<f4' , 'shape' : ( 5 , ) , }   ", 1, {5}},
        {2, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}", 0, {0}},
        {1, "{'descr': '=f4', 'fortran_order': False, 'shape': (2,)}", 1, {2}},
    };
    char path[300], err[512] = "";
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        snprintf(path, sizeof path, "%s/var%zu.npy", g_dir, c);
        size_t numel = 1;
        for (int d = 0; d < cases[c].ndim; d++)
            numel *= (size_t)cases[c].shape[d];
        write_npy_raw(path, cases[c].major, cases[c].dict, numel * 4);
        float *got = NULL;
        int nd;
        int64_t sh[8];
        if (npy_read(path, &got, &nd, sh, err, sizeof err) != 0)
            fail_msg("case %zu: %s", c, err);
        assert_int_equal(nd, cases[c].ndim);
        for (int d = 0; d < nd; d++)
            assert_int_equal(sh[d], cases[c].shape[d]);
        size_t len;
        unsigned char *raw = read_bytes(path, &len);
        assert_memory_equal(got, raw + len - numel * 4, numel * 4);
        free(raw);
        free(got);
    }
}

static void expect_bad(const char *path, const char *f1, const char *f2) {
    float *got = (float *)&got;
    int nd;
    int64_t sh[8];
    char err[512] = "";
    if (npy_read(path, &got, &nd, sh, err, sizeof err) == 0) {
        free(got);
        fail_msg("%s accepted (expected '%s')", path, f1);
    }
    assert_null(got);
    if (strncmp(err, path, strlen(path)) != 0)
        fail_msg("message does not start with the path: %s", err);
    if (!strstr(err, f1) || (f2 && !strstr(err, f2)))
        fail_msg("message '%s' lacks '%s' / '%s'", err, f1, f2 ? f2 : "");
}

static void test_rejected(void **state) {
    (void)state;
    static const struct {
        int major;
        const char *dict;
        size_t ndata;
        const char *f1, *f2;
    } cases[] = {
        {1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, "big-endian", "'>f4'"},
        {1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16, "'<f8'", "'<f4'"},
        {1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", 2, "'|u1'", "float32"},
        {1, "{'descr': '|f4', 'fortran_order': False, 'shape': (2,), }", 8, "'|f4'", NULL},
        {1, "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", 4, "'<f2'", NULL},
        {1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, "fortran_order",
         "C-order"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20, "truncated",
         "(2, 3)"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 12, "4 unexpected bytes",
         NULL},
        {1, "{'descr': '<f4', 'shape': (2,), }", 8, "no 'fortran_order'", NULL},
        {1, "{'descr': '<f4', 'fortran_order': False}", 8, "no 'shape'", NULL},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8,
         "unexpected key 'x'", NULL},
        {1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8,
         "twice", NULL},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", 8, "'shape'", "tuple"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", 0, "negative", NULL},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,)}", 0, "'shape'", NULL},
        {1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", 8, "fortran_order", NULL},
        {1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", 8,
         "structured", NULL},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", 4,
         "more than 8 dimensions", NULL},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } junk", 8,
         "after the .npy header", NULL},
        {1, "{'descr' '<f4'}", 0, "malformed", NULL},
        {1, "descr", 0, "not a dict", NULL},
        {3, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, "
            "99999999999), }", 8, "truncated", NULL},
    };
    char path[300];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        snprintf(path, sizeof path, "%s/bad%zu.npy", g_dir, c);
        write_npy_raw(path, cases[c].major, cases[c].dict, cases[c].ndata);
        expect_bad(path, cases[c].f1, cases[c].f2);
    }
}

static void test_bad_prefix(void **state) {
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/prefix.npy", g_dir);
    write_bytes(path, "\x93NUMPX\x01\x00\x10\x00{}", 12);
    expect_bad(path, "bad magic", NULL);
    write_bytes(path, "\x93NUM", 4);
    expect_bad(path, "bad magic", NULL);
    write_bytes(path, "", 0);
    expect_bad(path, "bad magic", NULL);
    write_bytes(path, "\x93NUMPY\x04\x00\x10\x00{}", 12);
    expect_bad(path, "version 4.0", NULL);
    write_bytes(path, "\x93NUMPY\x01\x01\x10\x00{}", 12);
    expect_bad(path, "version 1.1", NULL);
    write_bytes(path, "\x93NUMPY\x01\x00\x40\x00{'descr'", 17);
    expect_bad(path, "truncated .npy header", NULL);
    write_bytes(path, "\x93NUMPY\x02\x00\x40\x00", 10);
    expect_bad(path, "truncated .npy header", NULL);

    /* A good file cut anywhere in its data. */
    float v[12];
    random_floats(v, 12);
    int64_t shape[2] = {3, 4};
    char err[512];
    assert_int_equal(npy_write(path, v, 2, shape, err, sizeof err), 0);
    size_t len;
    unsigned char *raw = read_bytes(path, &len);
    write_bytes(path, raw, len - 1 - (size_t)(rnd() % 40));
    free(raw);
    expect_bad(path, "truncated", "(3, 4)");

    char missing[300];
    snprintf(missing, sizeof missing, "%s/missing.npy", g_dir);
    expect_bad(missing, "cannot open", NULL);
    expect_bad(g_dir, "not a regular file", NULL);
}

static void test_read_expect(void **state) {
    (void)state;
    char path[300], err[512] = "";
    snprintf(path, sizeof path, "%s/expect.npy", g_dir);
    float v[24], dst[24];
    random_floats(v, 24);
    int64_t shape[3] = {2, 3, 4};
    assert_int_equal(npy_write(path, v, 3, shape, err, sizeof err), 0);

    int64_t wrong[3] = {2, 4, 3};
    assert_int_not_equal(npy_read_expect(path, dst, 3, wrong, err, sizeof err), 0);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "(2, 4, 3)"));
    assert_non_null(strstr(err, "(2, 3, 4)"));
    assert_int_not_equal(npy_read_expect(path, dst, 2, wrong, err, sizeof err), 0);
    assert_non_null(strstr(err, "(2, 4)"));

    write_npy_raw(path, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3, 4), }",
                  24 * 8);
    assert_int_not_equal(npy_read_expect(path, dst, 3, shape, err, sizeof err), 0);
    assert_non_null(strstr(err, "'<f8'"));
    assert_non_null(strstr(err, "'<f4'"));
    assert_non_null(strstr(err, "(2, 3, 4)"));

    write_npy_raw(path, 2, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }",
                  24 * 4);
    assert_int_not_equal(npy_read_expect(path, dst, 3, shape, err, sizeof err), 0);
    assert_non_null(strstr(err, "Fortran"));

    write_npy_raw(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }",
                  24 * 4 - 4);
    assert_int_not_equal(npy_read_expect(path, dst, 3, shape, err, sizeof err), 0);
    assert_non_null(strstr(err, "truncated"));
}

static void test_write_errors(void **state) {
    (void)state;
    char path[300], err[512];
    snprintf(path, sizeof path, "%s/w.npy", g_dir);
    float v[4];
    random_floats(v, 4);
    int64_t shape[9] = {1, 1, 1, 1, 1, 1, 1, 1, 4};
    assert_int_not_equal(npy_write(path, v, 9, shape, err, sizeof err), 0);
    int64_t neg[1] = {-4};
    assert_int_not_equal(npy_write(path, v, 1, neg, err, sizeof err), 0);
    assert_non_null(strstr(err, "negative"));
    snprintf(path, sizeof path, "%s/nodir/w.npy", g_dir);
    int64_t s4[1] = {4};
    assert_int_not_equal(npy_write(path, v, 1, s4, err, sizeof err), 0);
    assert_non_null(strstr(err, path));
}

/* Files exchanged with numpy both ways, when numpy is available. */
static void test_numpy_interop(void **state) {
    (void)state;
    if (system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "numpy not available; skipping\n");
        skip();
    }
    char a[300], b[300], cmd[2048], err[512] = "";
    snprintf(a, sizeof a, "%s/ours.npy", g_dir);
    snprintf(b, sizeof b, "%s/theirs.npy", g_dir);
    int64_t shape[4] = {2 + (int64_t)(rnd() % 3), 3, 1 + (int64_t)(rnd() % 4), 5};
    size_t n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        v[i] = (float)((double)(rnd() >> 11) / 9007199254740992.0 * 20.0 - 10.0);
    assert_int_equal(npy_write(a, v, 4, shape, err, sizeof err), 0);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np; d='%s'; "
             "x=np.load('%s'); assert x.dtype==np.float32 and x.shape==(%lld,%lld,%lld,%lld), x; "
             "np.save('%s', x * np.float32(2)); "
             "np.save(d+'/be.npy', x.astype('>f4')); "
             "np.save(d+'/f8.npy', x.astype(np.float64)); "
             "np.save(d+'/fo.npy', np.asfortranarray(x)); "
             "np.lib.format.write_array(open(d+'/v2.npy','wb'), x, version=(2,0))\"",
             g_dir, a, (long long)shape[0], (long long)shape[1], (long long)shape[2],
             (long long)shape[3], b);
    assert_int_equal(system(cmd), 0);

    float *got = malloc(n * sizeof(float));
    if (npy_read_expect(b, got, 4, shape, err, sizeof err) != 0)
        fail_msg("%s", err);
    for (size_t i = 0; i < n; i++) {
        float want = v[i] * 2.0f;
        assert_memory_equal(&got[i], &want, 4);
    }
    char p[300];
    snprintf(p, sizeof p, "%s/v2.npy", g_dir);
    if (npy_read_expect(p, got, 4, shape, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_memory_equal(got, v, n * sizeof(float));
    snprintf(p, sizeof p, "%s/be.npy", g_dir);
    expect_bad(p, "big-endian", NULL);
    snprintf(p, sizeof p, "%s/f8.npy", g_dir);
    expect_bad(p, "'<f8'", NULL);
    snprintf(p, sizeof p, "%s/fo.npy", g_dir);
    expect_bad(p, "fortran_order", NULL);
    free(got);
    free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_header_variants),
        cmocka_unit_test(test_rejected),     cmocka_unit_test(test_bad_prefix),
        cmocka_unit_test(test_read_expect),  cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_numpy_interop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
