/* safetensors: random round trips, scalars, files laid out as the Python
 * library writes them, and every malformed case the reader must reject,
 * built byte by byte in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "io_fixture.h"

#include "io/safetensors.h"

static int setup(void **state) {
    (void)state;
    return io_fixture_setup("test_safetensors", "st");
}

static int teardown(void **state) {
    (void)state;
    return io_fixture_teardown();
}

static void path_of(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "%s/%s", g_dir, name);
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

/* Writes <len><header><data> where data is `ndata` random bytes. */
static void write_st(const char *path, const char *header, size_t ndata) {
    size_t hl = strlen(header);
    size_t total = 8 + hl + ndata;
    unsigned char *b = malloc(total);
    assert_non_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(((uint64_t)hl >> (8 * i)) & 0xff);
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < ndata; i++)
        b[8 + hl + i] = (unsigned char)rnd();
    write_bytes(path, b, total);
    free(b);
}

static int count_temp_files(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -c '\\.tmp\\.'", g_dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

static void random_floats(float *v, size_t n) {
    /* Raw random bit patterns (NaN payloads included) check that the
     * data is copied, never converted. */
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)rnd();
        memcpy(&v[i], &u, 4);
    }
}

static void test_round_trip(void **state) {
    (void)state;
    char path[300];
    path_of(path, sizeof path, "rt.safetensors");
    for (int rep = 0; rep < 20; rep++) {
        int n = 1 + (int)(rnd() % 7);
        st_tensor ts[8];
        memset(ts, 0, sizeof ts);
        for (int i = 0; i < n; i++) {
            snprintf(ts[i].name, sizeof ts[i].name, "m%d.layer_%llu.weight", i,
                     (unsigned long long)(rnd() % 1000));
            ts[i].ndim = (int)(rnd() % 5);
            ts[i].numel = 1;
            for (int d = 0; d < ts[i].ndim; d++) {
                ts[i].shape[d] = (int64_t)(rnd() % 6);
                ts[i].numel *= (size_t)ts[i].shape[d];
            }
            ts[i].data = malloc((ts[i].numel + 1) * sizeof(float));
            random_floats(ts[i].data, ts[i].numel);
        }
        char err[512] = "";
        assert_int_equal(st_write(path, ts, n, err, sizeof err), 0);
        assert_int_equal(count_temp_files(), 0);

        size_t len;
        unsigned char *raw = read_bytes(path, &len);
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--)
            hl = (hl << 8) | raw[i];
        assert_int_equal(hl % 8, 0);
        assert_true(8 + hl <= len);
        assert_int_equal(raw[8], '{');
        free(raw);

        st_file f;
        if (st_read(path, &f, err, sizeof err) != 0)
            fail_msg("%s", err);
        assert_int_equal(f.n_tensors, n);
        for (int i = 0; i < n; i++) {
            const st_tensor *t = &f.tensors[i];
            assert_string_equal(t->name, ts[i].name); /* order kept */
            assert_int_equal(t->ndim, ts[i].ndim);
            assert_memory_equal(t->shape, ts[i].shape, sizeof(int64_t) * (size_t)t->ndim);
            assert_int_equal(t->numel, ts[i].numel);
            assert_non_null(t->data);
            if (t->numel)
                assert_memory_equal(t->data, ts[i].data, t->numel * sizeof(float));
            assert_ptr_equal(st_find(&f, ts[i].name), t);
        }
        assert_null(st_find(&f, "no.such.tensor"));
        st_free(&f);
        assert_int_equal(f.n_tensors, 0);
        for (int i = 0; i < n; i++)
            free(ts[i].data);
    }
}

static void test_scalar(void **state) {
    (void)state;
    char path[300], err[512] = "";
    path_of(path, sizeof path, "scalar.safetensors");
    float v = (float)(rnd() % 100000) / 1000.0f + 0.5f;
    st_tensor t = {.name = "local_expert.alpha", .ndim = 0, .data = &v, .numel = 1};
    assert_int_equal(st_write(path, &t, 1, err, sizeof err), 0);
    size_t len;
    unsigned char *raw = read_bytes(path, &len);
    assert_non_null(strstr((char *)raw + 8, "\"shape\":[]"));
    free(raw);
    st_file f;
    assert_int_equal(st_read(path, &f, err, sizeof err), 0);
    assert_int_equal(f.n_tensors, 1);
    assert_int_equal(f.tensors[0].ndim, 0);
    assert_int_equal(f.tensors[0].numel, 1);
    assert_memory_equal(f.tensors[0].data, &v, 4);
    st_free(&f);
}

/* The layout of the Python library: keys in its own order, a metadata
 * entry, offsets not in header order, header padded with spaces. */
static void test_python_layout(void **state) {
    (void)state;
    char path[300], err[512] = "";
    path_of(path, sizeof path, "py.safetensors");
    float a[6], b[2], c;
    random_floats(a, 6);
    random_floats(b, 2);
    random_floats(&c, 1);
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "{\"__metadata__\":{\"format\":\"pt\"},"
                     "\"b.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]},"
                     "\"a.weight\":{\"data_offsets\":[0,24],\"shape\":[2,3],\"dtype\":\"F32\"},"
                     "\"c\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[32,36]}}");
    while (n % 8)
        hdr[n++] = ' ';
    hdr[n] = '\0';
    unsigned char buf[1024];
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(((uint64_t)n >> (8 * i)) & 0xff);
    memcpy(buf + 8, hdr, (size_t)n);
    memcpy(buf + 8 + n, a, 24);
    memcpy(buf + 8 + n + 24, b, 8);
    memcpy(buf + 8 + n + 32, &c, 4);
    write_bytes(path, buf, 8 + (size_t)n + 36);

    st_file f;
    if (st_read(path, &f, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(f.n_tensors, 3);
    /* File order (by offset), not header order. */
    assert_string_equal(f.tensors[0].name, "a.weight");
    assert_string_equal(f.tensors[1].name, "b.bias");
    const st_tensor *ta = st_find(&f, "a.weight"), *tb = st_find(&f, "b.bias"),
                    *tc = st_find(&f, "c");
    assert_non_null(ta);
    assert_non_null(tb);
    assert_non_null(tc);
    assert_int_equal(ta->ndim, 2);
    assert_int_equal(ta->shape[0], 2);
    assert_int_equal(ta->shape[1], 3);
    assert_memory_equal(ta->data, a, 24);
    assert_memory_equal(tb->data, b, 8);
    assert_int_equal(tc->ndim, 0);
    assert_memory_equal(tc->data, &c, 4);
    st_free(&f);
}

/* If the Python safetensors package is present (it is optional; put it on
 * PYTHONPATH), files go both ways between it and us. */
static void test_python_library(void **state) {
    (void)state;
    if (system("/usr/bin/python3 -c 'import safetensors.numpy' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "python3 safetensors not installed; skipping\n");
        skip();
    }
    char path[300], cmd[1024], err[512] = "";
    path_of(path, sizeof path, "lib.safetensors");
    unsigned long long seed = rnd() % 1000000;
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np, safetensors.numpy as s; "
             "r=np.random.default_rng(%llu); "
             "s.save_file({'w': r.standard_normal((3,5)).astype(np.float32), "
             "'z': np.array(r.standard_normal(), dtype=np.float32), "
             "'v': r.standard_normal(7).astype(np.float32)}, '%s')\"",
             seed, path);
    assert_int_equal(system(cmd), 0);
    st_file f;
    if (st_read(path, &f, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(f.n_tensors, 3);
    assert_int_equal(st_find(&f, "w")->numel, 15);
    assert_int_equal(st_find(&f, "z")->ndim, 0);
    assert_int_equal(st_find(&f, "v")->shape[0], 7);
    st_free(&f);

    /* The other way: the library loads our file and saves it again. */
    char ours[300], back[300];
    path_of(ours, sizeof ours, "ours.safetensors");
    path_of(back, sizeof back, "back.safetensors");
    float w[12], z;
    random_floats(w, 12);
    random_floats(&z, 1);
    st_tensor ts[2] = {{.name = "layer.weight", .ndim = 2, .shape = {4, 3}, .data = w,
                        .numel = 12},
                       {.name = "gamma", .ndim = 0, .data = &z, .numel = 1}};
    assert_int_equal(st_write(ours, ts, 2, err, sizeof err), 0);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import safetensors.numpy as s; d=s.load_file('%s'); "
             "assert d['layer.weight'].shape==(4,3) and d['gamma'].shape==(), d; "
             "s.save_file(d, '%s')\"",
             ours, back);
    assert_int_equal(system(cmd), 0);
    if (st_read(back, &f, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_memory_equal(st_find(&f, "layer.weight")->data, w, sizeof w);
    assert_memory_equal(st_find(&f, "gamma")->data, &z, 4);
    st_free(&f);
}

typedef struct bad_case {
    const char *header;  /* NULL: raw bytes below */
    size_t ndata;
    const char *frag1, *frag2;
} bad_case;

#define E(name, dtype, shape, offs)                                                           \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

static const bad_case bad_cases[] = {
    {"not json at all", 0, "not valid JSON", NULL},
    {"{\"a\":", 0, "not valid JSON", NULL},
    {"[1,2,3]", 0, "not a JSON object", NULL},
    {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a'", "\"dtype\""},
    {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'a'", "\"shape\""},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'a'", "\"data_offsets\""},
    {"{\"a\":[1]}", 0, "tensor 'a'", "not a JSON object"},
    {"{" E("w", "F16", "[2]", "[0,4]") "}", 4, "tensor 'w' has dtype F16", "F32"},
    {"{" E("w", "BF16", "[2]", "[0,4]") "}", 4, "dtype BF16", NULL},
    {"{" E("n", "F32", "[2,-3]", "[0,8]") "}", 8, "tensor 'n'", "negative dimension -3"},
    {"{" E("n", "F32", "[2.5]", "[0,8]") "}", 8, "tensor 'n'", "not an integer"},
    {"{" E("n", "F32", "3", "[0,12]") "}", 12, "tensor 'n'", "\"shape\" is not an array"},
    {"{" E("n", "F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "tensor 'n'", "9 dimensions"},
    {"{" E("o", "F32", "[2]", "[0,12]") "}", 8, "tensor 'o'", "out of range"},
    {"{" E("o", "F32", "[2]", "[8,0]") "}", 8, "tensor 'o'", "invalid data_offsets"},
    {"{" E("o", "F32", "[2]", "[-8,0]") "}", 8, "tensor 'o'", "invalid data_offsets"},
    {"{" E("o", "F32", "[2]", "[0]") "}", 8, "tensor 'o'", "2 integers"},
    {"{" E("s", "F32", "[2,2]", "[0,12]") "}", 16, "tensor 's'", "does not match"},
    {"{" E("s", "F32", "[4611686018427387904,4]", "[0,16]") "}", 16, "tensor 's'",
     "does not match"},
    {"{" E("x", "F32", "[2]", "[0,8]") "," E("y", "F32", "[2]", "[4,12]") "}", 12, "overlaps",
     "'x'"},
    {"{" E("x", "F32", "[1]", "[0,4]") "," E("y", "F32", "[1]", "[8,12]") "}", 12,
     "belong to no tensor", "'y'"},
    {"{" E("x", "F32", "[2]", "[0,8]") "}", 12, "covers 8 bytes", "12 bytes"},
    {"{" E("d", "F32", "[1]", "[0,4]") "," E("d", "F32", "[1]", "[4,8]") "}", 8,
     "duplicate tensor name", "\"d\""},
    {"{\"__metadata__\":[1]," E("x", "F32", "[1]", "[0,4]") "}", 4, "__metadata__", NULL},
    {"{\"__metadata__\":{\"k\":3}," E("x", "F32", "[1]", "[0,4]") "}", 4, "__metadata__",
     "'k'"},
};

static void check_bad(const char *path, const char *f1, const char *f2) {
    st_file f;
    char err[512] = "";
    f.n_tensors = 12345;
    int rc = st_read(path, &f, err, sizeof err);
    if (rc == 0) {
        st_free(&f);
        fail_msg("%s was accepted (expected '%s')", path, f1);
    }
    assert_int_equal(f.n_tensors, 0);
    assert_null(f.tensors);
    if (strncmp(err, path, strlen(path)) != 0)
        fail_msg("message does not start with the path: %s", err);
    if (!strstr(err, f1) || (f2 && !strstr(err, f2)))
        fail_msg("message '%s' lacks '%s' / '%s'", err, f1, f2 ? f2 : "");
}

static void test_malformed(void **state) {
    (void)state;
    char path[300];
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        snprintf(path, sizeof path, "%s/bad%zu.safetensors", g_dir, i);
        write_st(path, bad_cases[i].header, bad_cases[i].ndata);
        check_bad(path, bad_cases[i].frag1, bad_cases[i].frag2);
    }
}

static void test_truncated(void **state) {
    (void)state;
    char path[300];
    path_of(path, sizeof path, "short.safetensors");
    unsigned char b[5] = {1, 2, 3, 4, 5};
    write_bytes(path, b, sizeof b);
    check_bad(path, "too short", "5 bytes");
    write_bytes(path, b, 0);
    check_bad(path, "too short", "0 bytes");

    /* Header length far beyond the file. */
    unsigned char h[16] = {0};
    h[0] = 0xff;
    h[1] = 0x10;
    memcpy(h + 8, "{}      ", 8);
    write_bytes(path, h, sizeof h);
    check_bad(path, "header length 4351", "exceeds the file");
    memset(h, 0xff, 8);
    write_bytes(path, h, sizeof h);
    check_bad(path, "exceeds the file", NULL);

    /* A valid file cut short in its data. */
    float v[4];
    random_floats(v, 4);
    st_tensor t = {.name = "w", .ndim = 1, .shape = {4}, .data = v, .numel = 4};
    char err[512];
    assert_int_equal(st_write(path, &t, 1, err, sizeof err), 0);
    size_t len;
    unsigned char *raw = read_bytes(path, &len);
    write_bytes(path, raw, len - 1 - (size_t)(rnd() % 4));
    free(raw);
    check_bad(path, "tensor 'w'", "out of range");

    char missing[300];
    path_of(missing, sizeof missing, "missing.safetensors");
    check_bad(missing, "cannot open", NULL);
}

static void test_empty_file_set(void **state) {
    (void)state;
    char path[300], err[512] = "";
    path_of(path, sizeof path, "empty.safetensors");
    assert_int_equal(st_write(path, NULL, 0, err, sizeof err), 0);
    st_file f;
    assert_int_equal(st_read(path, &f, err, sizeof err), 0);
    assert_int_equal(f.n_tensors, 0);
    st_free(&f);
}

static void test_write_errors(void **state) {
    (void)state;
    char path[300], err[512];
    path_of(path, sizeof path, "w.safetensors");
    float v[6];
    random_floats(v, 6);
    st_tensor ts[2] = {{.name = "a", .ndim = 1, .shape = {6}, .data = v, .numel = 6},
                       {.name = "a", .ndim = 1, .shape = {6}, .data = v, .numel = 6}};
    assert_int_not_equal(st_write(path, ts, 2, err, sizeof err), 0);
    assert_non_null(strstr(err, "duplicate tensor name 'a'"));

    ts[1].shape[0] = 5;
    snprintf(ts[1].name, sizeof ts[1].name, "b");
    assert_int_not_equal(st_write(path, ts, 2, err, sizeof err), 0);
    assert_non_null(strstr(err, "tensor 'b'"));
    assert_non_null(strstr(err, "numel"));

    ts[1].shape[0] = 6;
    ts[1].ndim = 9;
    assert_int_not_equal(st_write(path, ts, 2, err, sizeof err), 0);
    assert_non_null(strstr(err, "dimensions"));
    ts[1].ndim = 1;

    /* Previous file survives a failed write, and no temp file is left. */
    assert_int_equal(st_write(path, ts, 1, err, sizeof err), 0);
    size_t l0;
    unsigned char *before = read_bytes(path, &l0);
    snprintf(ts[1].name, sizeof ts[1].name, "a");
    assert_int_not_equal(st_write(path, ts, 2, err, sizeof err), 0);
    size_t l1;
    unsigned char *after = read_bytes(path, &l1);
    assert_int_equal(l0, l1);
    assert_memory_equal(before, after, l0);
    free(before);
    free(after);
    assert_int_equal(count_temp_files(), 0);

    char nodir[300];
    path_of(nodir, sizeof nodir, "no/such/dir/x.safetensors");
    assert_int_not_equal(st_write(nodir, ts, 1, err, sizeof err), 0);
    assert_non_null(strstr(err, nodir));
}

/* Names that need JSON escaping survive the round trip. */
static void test_escaped_names(void **state) {
    (void)state;
    char path[300], err[512] = "";
    path_of(path, sizeof path, "esc.safetensors");
    float v[2];
    random_floats(v, 2);
    st_tensor ts[2] = {{.name = "quote\"d", .ndim = 1, .shape = {1}, .data = v, .numel = 1},
                       {.name = "back\\slash", .ndim = 1, .shape = {1}, .data = v + 1,
                        .numel = 1}};
    assert_int_equal(st_write(path, ts, 2, err, sizeof err), 0);
    st_file f;
    if (st_read(path, &f, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_non_null(st_find(&f, "quote\"d"));
    assert_memory_equal(st_find(&f, "back\\slash")->data, v + 1, 4);
    st_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_scalar),
        cmocka_unit_test(test_python_layout),   cmocka_unit_test(test_python_library),
        cmocka_unit_test(test_malformed),       cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_empty_file_set),  cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_escaped_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
