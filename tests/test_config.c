/* Config: the presets of docs/MODEL.md, JSON overrides with random values, every
 * kind of bad key or value (and that a failed load changes nothing), syntax
 * errors with line and column, "XxYxZ" parsing and whole-config checks. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "io_fixture.h"

#include"core/config_parse.h"
#include "moelat/moelat.h"

static int setup(void **state) {
    (void)state;
    return io_fixture_setup("test_config", "cfg");
}

static int teardown(void **state) {
    (void)state;
    return io_fixture_teardown();
}

static const char *write_json(const char *name, const char *text) {
    static char path[300];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
    return path;
}

static void preset_or_fail(const char *name, moelat_config *cfg) {
    char err[512];
    if (moelat_config_preset(name, cfg, err, sizeof err) != MOELAT_OK)
        fail_msg("%s", err);
}

static void test_presets(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int dim, S;
        double rr, r;
        int h[7];
    } want[] = {
        {"debug", 15, 24, 0.3, 4.5, {12, 12, 12, 12, 8, 48, 24}},
        {"experiment", 40, 64, 0.2, 8.0, {32, 16, 64, 32, 16, 32, 64}},
        {"optimized", 100, 128, 0.2, 20.0, {64, 32, 128, 64, 32, 64, 128}},
    };
    static const char *hn[7] = {"h1", "h2", "ph", "hd", "md", "ode_hidden", "gate_hidden"};
    for (int p = 0; p < 3; p++) {
        moelat_config c = MOELAT_CONFIG_INIT;
        memset(&c, 0xa5, sizeof c);
        c.struct_size = sizeof c;
        preset_or_fail(want[p].name, &c);
        assert_string_equal(c.preset, want[p].name);
        for (int i = 0; i < 3; i++)
            assert_int_equal(c.dims[i], want[p].dim);
        assert_int_equal(c.state_size, want[p].S);
        assert_true(c.radius_ratio == want[p].rr);
        assert_true(fabs(moelat_config_radius(&c) - want[p].r) < 1e-12);
        for (int i = 0; i < 7; i++)
            assert_int_equal(moelat_config_hidden(&c, hn[i], -1), want[p].h[i]);
        assert_int_equal(c.n_hidden, 7);
        assert_true(c.band_ratio[0] == 0.4 && c.band_ratio[1] == 0.8 && c.band_ratio[2] == 0.99);
        for (int b = 0; b < MOELAT_BANDS; b++)
            assert_string_equal(c.expert[b], moelat_band_name(b));
        assert_int_equal(c.cnf_mode, MOELAT_CNF_EULER);
        assert_int_equal(c.cnf_steps, 3);
        assert_int_equal(c.seed, 1234);
        assert_int_equal(c.threads, 0);
        assert_int_equal(c.mode, MOELAT_MODE_AUTO); /* batched where a device passes */
        assert_int_equal(c.batch_threshold, 0);
        assert_int_equal(c.chunk[0] | c.chunk[1] | c.chunk[2], 0);
        assert_int_equal(c.queues, 0);
        assert_int_equal(c.profile, 0);
        assert_string_equal(c.device, "");
        assert_int_equal(c.n_plugin_paths, 0);
        char err[512];
        if (ml_config_validate(&c, err, sizeof err) != 0)
            fail_msg("preset %s invalid: %s", want[p].name, err);
    }
    assert_string_equal(moelat_band_name(0), "local");
    assert_string_equal(moelat_band_name(1), "functional");
    assert_string_equal(moelat_band_name(2), "distant");
    assert_non_null(moelat_band_name(3));
    assert_non_null(moelat_band_name(-1));
}

static void test_unknown_preset(void **state) {
    (void)state;
    moelat_config c = MOELAT_CONFIG_INIT, copy = MOELAT_CONFIG_INIT;
    preset_or_fail("experiment", &c);
    copy = c;
    char err[512] = "";
    assert_int_equal(moelat_config_preset("huge", &c, err, sizeof err), MOELAT_ERR_INVALID);
    assert_non_null(strstr(err, "'huge'"));
    assert_non_null(strstr(err, "debug"));
    assert_non_null(strstr(err, "experiment"));
    assert_non_null(strstr(err, "optimized"));
    assert_memory_equal(&c, &copy, sizeof c);
    assert_int_equal(moelat_config_preset(NULL, &c, err, sizeof err), MOELAT_ERR_INVALID);
}

static void test_radius(void **state) {
    (void)state;
    moelat_config c = MOELAT_CONFIG_INIT;
    preset_or_fail("debug", &c);
    for (int rep = 0; rep < 50; rep++) {
        c.dims[0] = 1 + (int32_t)(rnd() % 2000);
        c.dims[1] = 1 + (int32_t)(rnd() % 2000);
        c.dims[2] = 1 + (int32_t)(rnd() % 2000);
        c.radius_ratio = (double)(rnd() % 1000) / 1000.0 + 0.001;
        int32_t m = c.dims[0];
        if (c.dims[1] > m)
            m = c.dims[1];
        if (c.dims[2] > m)
            m = c.dims[2];
        double r = m * c.radius_ratio;
        r = r < 1 ? 1 : r > 100 ? 100 : r;
        assert_true(moelat_config_radius(&c) == r);
    }
    c.radius_ratio = 0.3;
    c.dims[0] = 9;
    c.dims[1] = 8;
    c.dims[2] = 7;
    assert_true(fabs(moelat_config_radius(&c) - 2.7) < 1e-12);
    c.dims[0] = c.dims[1] = c.dims[2] = 2;
    assert_true(moelat_config_radius(&c) == 1.0);
    c.dims[0] = 5000;
    assert_true(moelat_config_radius(&c) == 100.0);
}

static void test_hidden_api(void **state) {
    (void)state;
    moelat_config c = MOELAT_CONFIG_INIT;
    preset_or_fail("debug", &c);
    int32_t v = 1 + (int32_t)(rnd() % 500);
    assert_int_equal(moelat_config_set_hidden(&c, "h1", v), MOELAT_OK);
    assert_int_equal(moelat_config_hidden(&c, "h1", -1), v);
    assert_int_equal(c.n_hidden, 7);
    assert_int_equal(moelat_config_hidden(&c, "nope", -7), -7);
    assert_int_equal(moelat_config_set_hidden(&c, "Bad", 3), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_config_set_hidden(&c, "", 3), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_config_set_hidden(&c, "ok", 0), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_config_set_hidden(&c, "abcdefghijklmnopqrstuvwxyz012345", 3),
                     MOELAT_ERR_INVALID);
    for (int i = 0; i < 9; i++) {
        char n[16];
        snprintf(n, sizeof n, "extra_%d", i);
        assert_int_equal(moelat_config_set_hidden(&c, n, 5 + i), MOELAT_OK);
    }
    assert_int_equal(c.n_hidden, 16);
    assert_int_equal(moelat_config_set_hidden(&c, "one_more", 3), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_config_set_hidden(&c, "extra_3", 99), MOELAT_OK);
    assert_int_equal(moelat_config_hidden(&c, "extra_3", 0), 99);
}

static void test_json_overrides(void **state) {
    (void)state;
    for (int rep = 0; rep < 10; rep++) {
        int X = 1 + (int)(rnd() % 60), Y = 1 + (int)(rnd() % 60), Z = 1 + (int)(rnd() % 60);
        int S = 2 * (8 + (int)(rnd() % 40));
        unsigned long long seed = rnd() >> 2;
        int threads = (int)(rnd() % 9), steps = 1 + (int)(rnd() % 9), q = 1 + (int)(rnd() % 16);
        int bt = (int)(rnd() % 100000), cx = 1 + (int)(rnd() % 20);
        int h1 = 1 + (int)(rnd() % 99), ode = 2 * (1 + (int)(rnd() % (2 * S)));
        double rr = 0.05 + (double)(rnd() % 100) / 100.0;
        char text[2048];
        snprintf(text, sizeof text,
                 "{\n"
                 "  \"dims\": [%d, %d, %d],\n  \"state_size\": %d,\n"
                 "  \"radius_ratio\": %.17g,\n  \"band_ratios\": [0.3, 0.6, 0.9],\n"
                 "  \"hidden\": {\"h1\": %d, \"ode_hidden\": %d, \"new_one\": 7},\n"
                 "  \"experts\": {\"distant\": \"my_plugin\"},\n"
                 "  \"cnf_mode\": \"lipschitz\", \"cnf_steps\": %d, \"seed\": %llu,\n"
                 "  \"threads\": %d, \"mode\": \"auto\", \"batch_threshold\": %d,\n"
                 "  \"chunk\": \"%dx4x5\", \"queues\": %d, \"device\": \"pocl\", \"profile\": true,\n"
                 "  \"plugin_paths\": [\"/a\", \"/b/c\"]\n}\n",
                 X, Y, Z, S, rr, h1, ode, steps, seed, threads, bt, cx, q);
        const char *path = write_json("over.json", text);
        moelat_config c = MOELAT_CONFIG_INIT;
        preset_or_fail(rep % 2 ? "experiment" : "debug", &c);
        char err[512];
        if (moelat_config_load_json(path, &c, err, sizeof err) != MOELAT_OK)
            fail_msg("%s\n%s", err, text);
        assert_int_equal(c.dims[0], X);
        assert_int_equal(c.dims[1], Y);
        assert_int_equal(c.dims[2], Z);
        assert_int_equal(c.state_size, S);
        assert_true(c.radius_ratio == rr);
        assert_true(c.band_ratio[0] == 0.3 && c.band_ratio[2] == 0.9);
        assert_int_equal(moelat_config_hidden(&c, "h1", 0), h1);
        assert_int_equal(moelat_config_hidden(&c, "ode_hidden", 0), ode);
        assert_int_equal(moelat_config_hidden(&c, "new_one", 0), 7);
        assert_int_equal(moelat_config_hidden(&c, "h2", 0), rep % 2 ? 16 : 12); /* kept */
        assert_string_equal(c.expert[2], "my_plugin");
        assert_string_equal(c.expert[0], "local");
        assert_int_equal(c.cnf_mode, MOELAT_CNF_LIPSCHITZ);
        assert_int_equal(c.cnf_steps, steps);
        assert_int_equal(c.seed, seed);
        assert_int_equal(c.threads, threads);
        assert_int_equal(c.mode, MOELAT_MODE_AUTO);
        assert_int_equal(c.batch_threshold, bt);
        assert_int_equal(c.chunk[0], cx);
        assert_int_equal(c.chunk[1], 4);
        assert_int_equal(c.chunk[2], 5);
        assert_int_equal(c.queues, q);
        assert_int_equal(c.profile, 1);
        assert_string_equal(c.device, "pocl");
        assert_int_equal(c.n_plugin_paths, 2);
        assert_string_equal(c.plugin_paths[1], "/b/c");
        assert_string_equal(c.preset, rep % 2 ? "experiment" : "debug");
    }
}

/* "preset" resets everything first, wherever it appears in the file. */
static void test_preset_first(void **state) {
    (void)state;
    int X = 1 + (int)(rnd() % 30);
    char text[256];
    snprintf(text, sizeof text,
             "{\"seed\": 77, \"dims\": \"%dx3x4\", \"device\": 2, \"preset\": \"optimized\"}", X);
    const char *path = write_json("preset.json", text);
    moelat_config c = MOELAT_CONFIG_INIT;
    preset_or_fail("debug", &c);
    c.threads = 5;
    char err[512];
    if (moelat_config_load_json(path, &c, err, sizeof err) != MOELAT_OK)
        fail_msg("%s", err);
    assert_string_equal(c.preset, "optimized");
    assert_int_equal(c.state_size, 128);
    assert_int_equal(c.dims[0], X);
    assert_int_equal(c.dims[1], 3);
    assert_int_equal(c.dims[2], 4);
    assert_int_equal(c.seed, 77);
    assert_string_equal(c.device, "2");
    assert_int_equal(c.threads, 0); /* reset by the preset */
    assert_int_equal(moelat_config_hidden(&c, "ph", 0), 128);
}

typedef struct bad_json {
    const char *text;
    moelat_status status;
    const char *f1, *f2;
} bad_json;

static const bad_json bad_jsons[] = {
    {"{\"dimz\": [1,2,3]}", MOELAT_ERR_INVALID, "unknown key 'dimz'", NULL},
    {"{\"dims\": [1,2]}", MOELAT_ERR_INVALID, "key 'dims'", "[X, Y, Z]"},
    {"{\"dims\": [1,0,2]}", MOELAT_ERR_INVALID, "key 'dims'", "found 0"},
    {"{\"dims\": \"4x4\"}", MOELAT_ERR_INVALID, "key 'dims'", "XxYxZ"},
    {"{\"dims\": 4}", MOELAT_ERR_INVALID, "key 'dims'", "an integer"},
    {"{\"state_size\": \"24\"}", MOELAT_ERR_INVALID, "key 'state_size'", "a string"},
    {"{\"state_size\": 0}", MOELAT_ERR_INVALID, "key 'state_size'", ">= 1"},
    {"{\"state_size\": 24.0}", MOELAT_ERR_INVALID, "key 'state_size'", "real"},
    {"{\"radius_ratio\": -0.5}", MOELAT_ERR_INVALID, "key 'radius_ratio'", "from 1e-06 to 100"},
    {"{\"radius_ratio\": true}", MOELAT_ERR_INVALID, "key 'radius_ratio'", "boolean"},
    {"{\"band_ratios\": [0.4, 0.4, 0.9]}", MOELAT_ERR_INVALID, "key 'band_ratios'",
     "increasing"},
    {"{\"band_ratios\": [0.4, 0.8]}", MOELAT_ERR_INVALID, "key 'band_ratios'", "3 numbers"},
    {"{\"band_ratios\": [0.4, \"x\", 0.9]}", MOELAT_ERR_INVALID, "key 'band_ratios'", "index 1"},
    {"{\"hidden\": {\"H1\": 4}}", MOELAT_ERR_INVALID, "key 'hidden'", "'H1'"},
    {"{\"hidden\": {\"h1\": 0}}", MOELAT_ERR_INVALID, "key 'hidden'", "'h1'"},
    {"{\"hidden\": [1]}", MOELAT_ERR_INVALID, "key 'hidden'", "an array"},
    {"{\"experts\": {\"far\": \"x\"}}", MOELAT_ERR_INVALID, "key 'experts'", "'far'"},
    {"{\"experts\": {\"local\": 3}}", MOELAT_ERR_INVALID, "key 'experts'", "'local'"},
    {"{\"experts\": {\"local\": \"\"}}", MOELAT_ERR_INVALID, "key 'experts'", "empty"},
    {"{\"cnf_mode\": \"rk4\"}", MOELAT_ERR_INVALID, "key 'cnf_mode'", "\"rk4\""},
    {"{\"cnf_steps\": 0}", MOELAT_ERR_INVALID, "key 'cnf_steps'", NULL},
    {"{\"seed\": -1}", MOELAT_ERR_INVALID, "key 'seed'", "non-negative"},
    {"{\"seed\": 1.5}", MOELAT_ERR_INVALID, "key 'seed'", "non-negative"},
    {"{\"threads\": -2}", MOELAT_ERR_INVALID, "key 'threads'", NULL},
    {"{\"threads\": 100000}", MOELAT_ERR_INVALID, "key 'threads'", "range 0 to 1024"},
    {"{\"cnf_steps\": 2147483647}", MOELAT_ERR_INVALID, "key 'cnf_steps'", "range 1 to 1000"},
    {"{\"band_ratios\": [0.4, 0.8, 3e9]}", MOELAT_ERR_INVALID, "key 'band_ratios'", "1e-06 to 4"},
    {"{\"radius_ratio\": 1e-320}", MOELAT_ERR_INVALID, "key 'radius_ratio'", "1e-06 to 100"},
    {"{\"mode\": \"gpu\"}", MOELAT_ERR_INVALID, "key 'mode'", "percell"},
    {"{\"mode\": 1}", MOELAT_ERR_INVALID, "key 'mode'", "an integer"},
    {"{\"batch_threshold\": -1}", MOELAT_ERR_INVALID, "key 'batch_threshold'", NULL},
    {"{\"chunk\": [8, 8, 0]}", MOELAT_ERR_INVALID, "key 'chunk'", NULL},
    {"{\"queues\": 17}", MOELAT_ERR_INVALID, "key 'queues'", "1 to 16"},
    {"{\"queues\": 0}", MOELAT_ERR_INVALID, "key 'queues'", NULL},
    {"{\"profile\": 1}", MOELAT_ERR_INVALID, "key 'profile'", "true or false"},
    {"{\"device\": -1}", MOELAT_ERR_INVALID, "key 'device'", NULL},
    {"{\"device\": [0]}", MOELAT_ERR_INVALID, "key 'device'", "an array"},
    {"{\"plugin_paths\": \"/x\"}", MOELAT_ERR_INVALID, "key 'plugin_paths'", "a string"},
    {"{\"plugin_paths\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}",
     MOELAT_ERR_INVALID, "key 'plugin_paths'", "at most 8"},
    {"{\"plugin_paths\": [\"a\", 1]}", MOELAT_ERR_INVALID, "key 'plugin_paths'", "entry 1"},
    {"{\"preset\": \"large\"}", MOELAT_ERR_INVALID, "key 'preset'", "'large'"},
    {"{\"preset\": 1}", MOELAT_ERR_INVALID, "key 'preset'", NULL},
    /* Valid keys whose combination is not a valid config. */
    {"{\"state_size\": 7}", MOELAT_ERR_INVALID, "state_size 7", "even"},
    {"{\"hidden\": {\"ode_hidden\": 200}}", MOELAT_ERR_INVALID, "floor(ode_hidden/4)", NULL},
    {"{\"hidden\": {\"ode_hidden\": 47}}", MOELAT_ERR_INVALID, "ode_hidden 47", "even"},
    /* Not an object at all. */
    {"[1, 2]", MOELAT_ERR_FORMAT, "JSON object", NULL},
    {"{\"seed\": 1, \"seed\": 2}", MOELAT_ERR_FORMAT, "duplicate", NULL},
};

static void test_bad_json(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_jsons / sizeof bad_jsons[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.json", i);
        const char *path = write_json(name, bad_jsons[i].text);
        moelat_config c = MOELAT_CONFIG_INIT, copy = MOELAT_CONFIG_INIT;
        preset_or_fail("debug", &c);
        c.seed = rnd();
        copy = c;
        char err[1024] = "";
        moelat_status st = moelat_config_load_json(path, &c, err, sizeof err);
        if (st != bad_jsons[i].status)
            fail_msg("%s: status %d, expected %d (%s)", bad_jsons[i].text, st,
                     bad_jsons[i].status, err);
        if (strncmp(err, path, strlen(path)) != 0)
            fail_msg("message does not start with the file: %s", err);
        if (!strstr(err, bad_jsons[i].f1) || (bad_jsons[i].f2 && !strstr(err, bad_jsons[i].f2)))
            fail_msg("%s: message '%s' lacks '%s' / '%s'", bad_jsons[i].text, err,
                     bad_jsons[i].f1, bad_jsons[i].f2 ? bad_jsons[i].f2 : "");
        assert_memory_equal(&c, &copy, sizeof c);
    }
}

static void test_syntax_error(void **state) {
    (void)state;
    int line = 2 + (int)(rnd() % 5);
    char text[256];
    strcpy(text, "{\n");
    for (int i = 2; i < line; i++)
        strcat(text, "\n");
    strcat(text, "  \"seed\": 12,,\n}\n");
    const char *path = write_json("syntax.json", text);
    moelat_config c = MOELAT_CONFIG_INIT, copy = MOELAT_CONFIG_INIT;
    preset_or_fail("debug", &c);
    copy = c;
    char err[512] = "", want[320];
    assert_int_equal(moelat_config_load_json(path, &c, err, sizeof err), MOELAT_ERR_FORMAT);
    snprintf(want, sizeof want, "%s:%d:14:", path, line);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("'%s' does not start with '%s'", err, want);
    assert_non_null(strstr(err, "syntax"));
    assert_memory_equal(&c, &copy, sizeof c);

    path = write_json("empty.json", "");
    assert_int_equal(moelat_config_load_json(path, &c, err, sizeof err), MOELAT_ERR_FORMAT);
    assert_non_null(strstr(err, path));

    char missing[300];
    snprintf(missing, sizeof missing, "%s/missing.json", g_dir);
    assert_int_equal(moelat_config_load_json(missing, &c, err, sizeof err), MOELAT_ERR_IO);
    assert_non_null(strstr(err, missing));
    assert_memory_equal(&c, &copy, sizeof c);
}

static void test_load_string(void **state) {
    (void)state;
    moelat_config c = MOELAT_CONFIG_INIT;
    preset_or_fail("debug", &c);
    char err[512];
    const char *t = "{\"seed\": 99, \"mode\": \"batch\"}";
    assert_int_equal(ml_config_load_string(t, strlen(t), "inline", &c, err, sizeof err),
                     MOELAT_OK);
    assert_int_equal(c.seed, 99);
    assert_int_equal(c.mode, MOELAT_MODE_BATCH);
    t = "{\"x\": 1}";
    assert_int_equal(ml_config_load_string(t, strlen(t), "inline", &c, err, sizeof err),
                     MOELAT_ERR_INVALID);
    assert_non_null(strstr(err, "inline: unknown key 'x'"));
}

static void test_parse_dims(void **state) {
    (void)state;
    for (int rep = 0; rep < 20; rep++) {
        int32_t v[3] = {1 + (int32_t)(rnd() % 1000), 1 + (int32_t)(rnd() % 1000),
                        1 + (int32_t)(rnd() % 1000)};
        char s[64];
        snprintf(s, sizeof s, "%d%c%d%c%d", v[0], rep % 2 ? 'x' : 'X', v[1], 'x', v[2]);
        int32_t out[3] = {0, 0, 0};
        char err[256];
        assert_int_equal(ml_parse_dims(s, out, err, sizeof err), 0);
        assert_memory_equal(out, v, sizeof v);
    }
    static const char *bad[] = {"", "15", "15x15", "15x15x", "x15x15", "15x15x15x15",
                                "15x0x15", "15x-1x15", "15 x15x15", "15x15x15 ", "axbxc",
                                "99999999999x1x1", "1.5x2x2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t out[3] = {7, 8, 9};
        char err[256] = "";
        if (ml_parse_dims(bad[i], out, err, sizeof err) == 0)
            fail_msg("'%s' accepted", bad[i]);
        assert_int_equal(out[0], 7);
        assert_true(strlen(err) > 0);
    }
    char err[256];
    int32_t out[3];
    assert_int_not_equal(ml_parse_dims(NULL, out, err, sizeof err), 0);
}

static void test_validate(void **state) {
    (void)state;
    moelat_config base = MOELAT_CONFIG_INIT, c = MOELAT_CONFIG_INIT;
    preset_or_fail("experiment", &base);
    char err[512];
    assert_int_equal(ml_config_validate(&base, err, sizeof err), 0);
#define BAD(stmt, frag)                                                                       \
    do {                                                                                      \
        c = base;                                                                             \
        stmt;                                                                                 \
        if (ml_config_validate(&c, err, sizeof err) == 0)                                     \
            fail_msg("accepted: %s", #stmt);                                                  \
        if (!strstr(err, frag))                                                               \
            fail_msg("%s: '%s' lacks '%s'", #stmt, err, frag);                                \
    } while (0)
    BAD(c.dims[1] = 0, "dims Y");
    BAD(c.state_size = 0, "state_size");
    BAD(c.state_size = 63, "even");
    BAD(c.state_size = 6, "floor(ode_hidden/4)"); /* H = 32: 8 > 6 */
    BAD(moelat_config_set_hidden(&c, "ode_hidden", 36); c.state_size = 8, "floor(ode_hidden/4)");
    BAD(moelat_config_set_hidden(&c, "ode_hidden", 33), "even");
    BAD(c.hidden[2].value = 0, c.hidden[2].name);
    BAD(strcpy(c.hidden[4].name, "h1"), "twice");
    BAD(c.n_hidden = 17, "n_hidden");
    BAD(c.radius_ratio = 0, "radius_ratio");
    BAD(c.radius_ratio = NAN, "radius_ratio");
    BAD(c.band_ratio[2] = 0.8, "band_ratios");
    BAD(c.expert[1][0] = '\0', "functional");
    BAD(c.cnf_mode = 2, "cnf_mode");
    BAD(c.cnf_steps = 0, "cnf_steps");
    BAD(c.threads = -1, "threads");
    BAD(c.mode = 3, "mode");
    BAD(c.batch_threshold = -1, "batch_threshold");
    BAD(c.chunk[2] = -1, "chunk Z");
    BAD(c.queues = 17, "queues");
    BAD(c.profile = 2, "profile");
    BAD(c.n_plugin_paths = 9, "n_plugin_paths");
    BAD(c.n_plugin_paths = 1, "plugin path 0");
    BAD(memset(c.device, 'a', sizeof c.device), "device");
    BAD((c.dims[0] = 2000, c.dims[1] = 2000, c.dims[2] = 2000), "cells");
#undef BAD
    /* ode_hidden = 4 S exactly is allowed. */
    c = base;
    c.state_size = 8;
    assert_int_equal(ml_config_validate(&c, err, sizeof err), 0);
}

/* The tuning string: every key with a random valid value, in a random
 * order, is accepted (switches as 0, 1, on or off); an unknown key names
 * every known one; a bad value or an entry without '=' names the entry;
 * the JSON key "tuning" takes a string only. */
static void test_tuning(void **state) {
    (void)state;
    moelat_config base = MOELAT_CONFIG_INIT, c = MOELAT_CONFIG_INIT;
    preset_or_fail("debug", &base);
    char err[1024];
    static const char *const sw[] = {"0", "1", "on", "off"};
    static const char *const v4[] = {"1", "4", "8", "16"};
    static const char *const c3[] = {"1", "2", "4"};
    srand((unsigned)time(NULL));
    for (int round = 0; round < 20; round++) {
        char items[12][96];
        snprintf(items[0], 96, "agg_vector=%s", v4[rand() % 4]);
        snprintf(items[1], 96, "agg_absmean=%s", rand() % 2 ? "all" : "declared");
        snprintf(items[2], 96, "work_group=%d", 32 << (rand() % 4));
        snprintf(items[3], 96, "gate_cells=%s", c3[rand() % 3]);
        snprintf(items[4], 96, "cl_options=-DX%d=1 -cl-mad-enable", rand() % 100);
        snprintf(items[5], 96, "kernel_cache=%s", sw[rand() % 4]);
        snprintf(items[6], 96, "upgrade_check=%s", sw[rand() % 4]);
        snprintf(items[7], 96, "functional_gemm=%s", rand() % 2 ? "clblast" : "kernel");
        snprintf(items[8], 96, "functional_cells=%d", 1 + rand() % 16);
        snprintf(items[9], 96, "functional_split=%s", sw[rand() % 4]);
        snprintf(items[10], 96, "distant_cells=%s", c3[rand() % 3]);
        snprintf(items[11], 96, "local_cells=%s", c3[rand() % 3]);
        int order[12];
        for (int i = 0; i < 12; i++)
            order[i] = i;
        for (int i = 11; i > 0; i--) {
            int j = rand() % (i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        c = base;
        size_t at = 0;
        for (int i = 0; i < 12; i++)
            at += (size_t)snprintf(c.tuning + at, sizeof c.tuning - at, "%s%s", i ? "," : "", items[order[i]]);
        if (ml_config_validate(&c, err, sizeof err) != 0)
            fail_msg("'%s' rejected: %s", c.tuning, err);
    }
    static const struct {
        const char *tuning, *frag;
    } bad[] = {
        {"agg_vector=3", "agg_vector=3"},       {"agg_vector=", "agg_vector"},
        {"agg_absmean=some", "agg_absmean"},    {"work_group=48", "work_group=48"},
        {"work_group=512", "work_group"},       {"gate_cells=3", "gate_cells=3"},
        {"kernel_cache=yes", "kernel_cache"},   {"upgrade_check=2", "upgrade_check"},
        {"functional_gemm=cublas", "functional_gemm"}, {"functional_cells=17", "functional_cells"},
        {"functional_split=true", "functional_split"}, {"distant_cells=8", "distant_cells"},
        {"local_cells=0", "local_cells"},       {"gate_cells", "not key=value"},
        {"=4", "not key=value"},                {"gate_cells=2,,bogus=1", "unknown key 'bogus'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = base;
        snprintf(c.tuning, sizeof c.tuning, "%s", bad[i].tuning);
        if (ml_config_validate(&c, err, sizeof err) == 0)
            fail_msg("accepted tuning '%s'", bad[i].tuning);
        if (!strstr(err, bad[i].frag) || !strstr(err, "tuning"))
            fail_msg("tuning '%s': '%s' lacks '%s'", bad[i].tuning, err, bad[i].frag);
    }
    /* The unknown key's message lists every key. */
    c = base;
    snprintf(c.tuning, sizeof c.tuning, "agg_vectors=4");
    assert_int_not_equal(ml_config_validate(&c, err, sizeof err), 0);
    static const char *const keys[] = {"agg_vector,", "agg_absmean", "work_group", "gate_cells", "cl_options",
                                       "kernel_cache", "upgrade_check", "functional_gemm", "functional_cells",
                                       "functional_split", "distant_cells", "local_cells"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strstr(err, keys[i]))
            fail_msg("'%s' lacks the key '%s'", err, keys[i]);
    /* JSON: a string is merged as is, anything else is refused. */
    c = base;
    const char *good = "{\"tuning\": \"gate_cells=2,kernel_cache=off\"}";
    assert_int_equal(ml_config_load_string(good, strlen(good), "inline", &c, err, sizeof err), MOELAT_OK);
    assert_string_equal(c.tuning, "gate_cells=2,kernel_cache=off");
    const char *num = "{\"tuning\": 4}";
    assert_int_equal(ml_config_load_string(num, strlen(num), "inline", &c, err, sizeof err), MOELAT_ERR_INVALID);
    assert_non_null(strstr(err, "key 'tuning'"));
    const char *badv = "{\"tuning\": \"gate_cells=5\"}";
    c = base;
    assert_int_equal(ml_config_load_string(badv, strlen(badv), "inline", &c, err, sizeof err), MOELAT_ERR_INVALID);
    assert_non_null(strstr(err, "gate_cells=5"));
    assert_string_equal(c.tuning, ""); /* unchanged on error */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),       cmocka_unit_test(test_unknown_preset),
        cmocka_unit_test(test_radius),        cmocka_unit_test(test_hidden_api),
        cmocka_unit_test(test_json_overrides), cmocka_unit_test(test_preset_first),
        cmocka_unit_test(test_bad_json),      cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_load_string),   cmocka_unit_test(test_parse_dims),
        cmocka_unit_test(test_validate),      cmocka_unit_test(test_tuning),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
