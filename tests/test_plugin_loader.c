/* Plugin loader: every failure names the file and the reason, a directory
 * scan survives bad files, duplicates keep the first, MOELAT_PLUGIN_PATH,
 * the isolated check survives a crashing plugin, and the `plugins` CLI. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include"plugin/plugin_loader.h"

#define PDIR MOELAT_TEST_PLUGIN_DIR
#define IDIR MOELAT_TEST_ISOLATED_DIR
#define ADIR MOELAT_TEST_ABI_DIR

typedef struct bad_case {
    const char *file;
    const char *fragment;
} bad_case;

/* One bad file per failure the loader must name. */
static const bad_case bad_cases[] = {
    {"not_a_so.so", "not a shared object or cannot be opened"},
    {"no_entry.so", "no entry symbol moelat_expert_entry"},
    {"null_descriptor.so", "entry moelat_expert_entry returned NULL"},
    {"abi_major.so", "expert ABI major version 2, engine expects 1"},
    {"bad_name.so", "invalid expert name \"Bad Name!\""},
    {"no_host.so", "host_cell is NULL"},
    {"cl_inconsistent.so", "inconsistent OpenCL fields: cl_source is set but cl_enqueue is NULL"},
    /* The 1.4 entry's message, on one line (its newline shown as '?'). */
    {"entry_error.so",
     "entry moelat_expert_entry2 failed: licence file /nonexistent/licence.txt not found?(second line)"},
};
#define N_BAD ((int)(sizeof bad_cases / sizeof bad_cases[0]))

static unsigned g_seed;

static float frand(void) {
    return (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
}

static const char *in_dir(const char *dir, const char *file) {
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", dir, file);
    return b;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static const ml_plugin_error *error_for(const ml_plugin_set *set, const char *file) {
    char tail[300];
    snprintf(tail, sizeof tail, "/%s", file);
    for (int i = 0; i < set->n_errors; i++)
        if (ends_with(set->errors[i].path, tail))
            return &set->errors[i];
    return NULL;
}

static int count_errors_under(const ml_plugin_set *set, const char *dir) {
    int n = 0;
    for (int i = 0; i < set->n_errors; i++)
        if (strncmp(set->errors[i].path, dir, strlen(dir)) == 0)
            n++;
    return n;
}

static int count_named(const ml_plugin_set *set, const char *name) {
    int n = 0;
    for (int i = 0; i < set->n_plugins; i++)
        if (strcmp(set->plugins[i].desc->name, name) == 0)
            n++;
    return n;
}

static void assert_contains(const char *haystack, const char *needle) {
    if (!strstr(haystack, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, haystack);
}

/* ---- single files -------------------------------------------------------- */

static void test_good_loads_and_runs(void **state) {
    (void)state;
    ml_plugin p;
    char err[1024] = "";
    int rc = ml_plugin_load_file(in_dir(PDIR, "good.so"), &p, err, sizeof err);
    if (rc != 0)
        fail_msg("good.so: %s", err);
    assert_string_equal(p.desc->name, "test_good");
    assert_non_null(p.handle);

    moelat_expert_dims dims;
    ml_plugin_default_dims(p.desc, &dims);
    assert_int_equal(dims.state_size, 24);
    assert_int_equal(dims.ext_size, 16);
    assert_int_equal(dims.hidden[0], 4);
    moelat_tensor_spec spec;
    assert_int_equal(p.desc->tensors(&dims, &spec, 1), 1);
    assert_int_equal(spec.shape[0], 24);

    float x[24], out[24], nb[3 * 24], ext[16];
    for (int i = 0; i < 24; i++) {
        x[i] = frand();
        out[i] = 1e30f;
    }
    for (int i = 0; i < 3 * 24; i++)
        nb[i] = frand();
    for (int i = 0; i < 16; i++)
        ext[i] = frand();
    const float *tensors[1] = {x};
    moelat_host_cell cell = {.struct_size = sizeof cell, .dims = &dims, .tensors = tensors,
                             .x = x, .neighbours = nb, .count = 3, .ext = ext,
                             .out = out};
    assert_int_equal(p.desc->host_cell(&cell), MOELAT_EXPERT_OK);
    assert_memory_equal(out, x, sizeof x);
    dlclose(p.handle);
}

static void test_each_bad_file_named(void **state) {
    (void)state;
    for (int i = 0; i < N_BAD; i++) {
        ml_plugin p;
        char err[1024] = "";
        const char *path = in_dir(PDIR, bad_cases[i].file);
        assert_int_equal(ml_plugin_load_file(path, &p, err, sizeof err), -1);
        assert_contains(err, path);
        assert_contains(err, bad_cases[i].fragment);
    }
    ml_plugin p;
    char err[1024] = "";
    const char *missing = in_dir(PDIR, "does_not_exist.so");
    assert_int_equal(ml_plugin_load_file(missing, &p, err, sizeof err), -1);
    assert_contains(err, missing);
    assert_contains(err, "cannot open");
}

/* ---- descriptor rules, on an in-memory copy of good.so's descriptor ------ */

static int fake_prepare(const moelat_cl_setup *s, void **st) {
    (void)s;
    *st = NULL;
    return 0;
}
static int fake_enqueue(void *st, const moelat_cl_chunk *c) {
    (void)st;
    (void)c;
    return 0;
}

static void expect_invalid(const moelat_expert_descriptor *d, const char *fragment) {
    char err[512] = "";
    assert_int_equal(ml_plugin_validate_descriptor(d, err, sizeof err), -1);
    assert_contains(err, fragment);
}

static void test_validation_rules(void **state) {
    (void)state;
    ml_plugin p;
    char err[1024] = "";
    assert_int_equal(ml_plugin_load_file(in_dir(PDIR, "good.so"), &p, err, sizeof err), 0);
    const moelat_expert_descriptor base = *p.desc;
    moelat_expert_descriptor d;
    assert_int_equal(ml_plugin_validate_descriptor(&base, err, sizeof err), 0);

    d = base;
    d.struct_size = (uint32_t)offsetof(moelat_expert_descriptor, reserved);
    expect_invalid(&d, "smaller than the ABI 1.0 descriptor");
    /* The bound is the frozen 1.0 size, whatever sizeof is now. */
    d.struct_size = (uint32_t)MOELAT_EXPERT_DESCRIPTOR_SIZE_1_0 - 1 - (uint32_t)(rand() % 8);
    expect_invalid(&d, "smaller than the ABI 1.0 descriptor (352 bytes)");
    d.struct_size = (uint32_t)MOELAT_EXPERT_DESCRIPTOR_SIZE_1_0;
    d.abi_minor = 0;
    assert_int_equal(ml_plugin_validate_descriptor(&d, err, sizeof err), 0);
    d.struct_size += 8 * (1 + (uint32_t)(rand() % 32));
    d.abi_minor = MOELAT_EXPERT_ABI_MINOR + 1 + (uint32_t)(rand() % 100);
    assert_int_equal(ml_plugin_validate_descriptor(&d, err, sizeof err), 0);
    d = base;
    d.abi_major = 0;
    expect_invalid(&d, "expert ABI major version 0, engine expects 1");
    d = base;
    d.name = NULL;
    expect_invalid(&d, "no name");
    d = base;
    d.version = NULL;
    expect_invalid(&d, "version is NULL");
    d = base;
    d.description = NULL;
    expect_invalid(&d, "description is NULL");
    d = base;
    d.tensors = NULL;
    expect_invalid(&d, "tensors() is NULL");

    char name[80];
    memset(name, 'a', sizeof name);
    name[63] = '\0';
    d = base;
    d.name = name;
    assert_int_equal(ml_plugin_validate_descriptor(&d, err, sizeof err), 0);
    name[63] = 'a';
    name[64] = '\0';
    expect_invalid(&d, "longer than 63");

    d = base;
    for (int i = 0; i <= MOELAT_MAX_HIDDEN; i++) {
        static const char *hn[] = {"h0", "h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8"};
        d.hidden_names[i] = hn[i];
        if (i < MOELAT_MAX_HIDDEN)
            d.hidden_defaults[i] = 1 + rand() % 64;
    }
    expect_invalid(&d, "more than 8 hidden_names");
    d.hidden_names[MOELAT_MAX_HIDDEN] = NULL;
    assert_int_equal(ml_plugin_validate_descriptor(&d, err, sizeof err), 0);

    d = base;
    d.cl_prepare = fake_prepare;
    d.cl_enqueue = fake_enqueue;
    expect_invalid(&d, "cl_prepare is set but cl_source is NULL");
    d.cl_source = "__kernel void k(void) {}";
    assert_int_equal(ml_plugin_validate_descriptor(&d, err, sizeof err), 0);
    d.cl_prepare = NULL;
    expect_invalid(&d, "cl_source is set but cl_prepare is NULL");
    dlclose(p.handle);
}

/* Random names against the rule [a-z0-9_]{1,63}. */
static void test_random_names(void **state) {
    (void)state;
    static const char alphabet[] = "abcxyz0189_ABZ !-.\t/";
    ml_plugin p;
    char err[1024] = "";
    assert_int_equal(ml_plugin_load_file(in_dir(PDIR, "good.so"), &p, err, sizeof err), 0);
    moelat_expert_descriptor d = *p.desc;
    int n_valid = 0, n_invalid = 0;
    for (int t = 0; t < 500; t++) {
        char name[80];
        int len = 1 + rand() % 70;
        /* Mostly valid characters, so both verdicts occur often. */
        for (int i = 0; i < len; i++)
            name[i] = rand() % 8 ? alphabet[rand() % 11] : alphabet[rand() % (sizeof alphabet - 1)];
        name[len] = '\0';
        int expect = len <= 63;
        for (int i = 0; i < len; i++)
            expect &= (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
                      name[i] == '_';
        d.name = name;
        int got = ml_plugin_validate_descriptor(&d, err, sizeof err) == 0;
        if (got != expect)
            fail_msg("name \"%s\": validator says %d, rule says %d (seed %u)", name, got, expect,
                     g_seed);
        if (expect)
            n_valid++;
        else
            n_invalid++;
    }
    assert_true(n_valid > 20 && n_invalid > 20);
    dlclose(p.handle);
}

static void test_host_services(void **state) {
    (void)state;
    const moelat_host_services *h = ml_host_services();
    assert_non_null(h);
    assert_int_equal(h->struct_size, sizeof *h);
    assert_non_null(h->log);
    size_t n = 16 + (size_t)(rand() % 1000);
    float *buf = h->alloc(n * sizeof(float));
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = frand();
    h->free(buf);
    /* Debug is below the default level: exercises the path, prints nothing. */
    h->log(MOELAT_LOG_DEBUG, "test_good", "value %d", rand());
    /* 1.4: the engine's extensions by id, NULL for any other id. */
    assert_non_null(h->get_extension);
    const moelat_ext_cl_build *cb = h->get_extension(MOELAT_EXT_CL_BUILD);
    assert_non_null(cb);
    assert_true(cb->struct_size >= offsetof(moelat_ext_cl_build, build) + sizeof cb->build);
    assert_non_null(cb->build);
    char id[64];
    snprintf(id, sizeof id, "moelat.cl.build/%d", 2 + rand() % 50);
    assert_null(h->get_extension(id));
    assert_null(h->get_extension("moelat.cl.build"));
    assert_null(h->get_extension(""));
    assert_null(h->get_extension(NULL));
}

/* ---- ABI minors and extensions ------------------------------------------- */

static void test_abi_minors(void **state) {
    (void)state;
    ml_plugin p;
    char err[1024] = "";
    /* 1.0, the frozen size, a junk value in today's get_extension slot:
     * loads, and the slot is never called (it would crash). */
    if (ml_plugin_load_file(in_dir(ADIR, "abi_1_0.so"), &p, err, sizeof err) != 0)
        fail_msg("abi_1_0.so: %s", err);
    assert_int_equal(p.desc->abi_minor, 0);
    assert_int_equal(p.desc->struct_size, MOELAT_EXPERT_DESCRIPTOR_SIZE_1_0);
    assert_non_null(p.desc->get_extension);
    assert_null(ml_plugin_extension(p.desc, "test.greeting/1"));
    dlclose(p.handle);

    /* A newer minor with a longer descriptor loads. */
    if (ml_plugin_load_file(in_dir(ADIR, "abi_newer.so"), &p, err, sizeof err) != 0)
        fail_msg("abi_newer.so: %s", err);
    assert_int_equal(p.desc->abi_minor, MOELAT_EXPERT_ABI_MINOR + 5);
    assert_true(p.desc->struct_size > sizeof(moelat_expert_descriptor));
    assert_null(ml_plugin_extension(p.desc, "test.greeting/1"));
    dlclose(p.handle);

    char report[2048];
    char want[64];
    snprintf(want, sizeof want, "ABI %d.%d", MOELAT_EXPERT_ABI_MAJOR, MOELAT_EXPERT_ABI_MINOR + 5);
    assert_int_equal(ml_plugin_check_isolated(in_dir(ADIR, "abi_newer.so"), report, sizeof report), 0);
    assert_contains(report, want);
    assert_int_equal(ml_plugin_check_isolated(in_dir(ADIR, "abi_1_0.so"), report, sizeof report), 0);
    assert_contains(report, "ABI 1.0");
}

typedef struct test_greeting {
    uint32_t struct_size;
    const char *text;
} test_greeting;

static void test_extensions(void **state) {
    (void)state;
    ml_plugin p;
    char err[1024] = "";
    /* Its 1.4 entry fails, with a message, unless the host table answers
     * moelat.cl.build/1 and refuses an unknown id. */
    if (ml_plugin_load_file(in_dir(ADIR, "extension.so"), &p, err, sizeof err) != 0)
        fail_msg("extension.so: %s", err);
    assert_string_equal(p.desc->name, "test_extension");
    const test_greeting *g = ml_plugin_extension(p.desc, "test.greeting/1");
    assert_non_null(g);
    assert_int_equal(g->struct_size, sizeof *g);
    assert_string_equal(g->text, "hello from test_extension");
    assert_null(ml_plugin_extension(p.desc, "test.greeting/2"));
    assert_null(ml_plugin_extension(p.desc, NULL));
    assert_null(ml_plugin_extension(NULL, "test.greeting/1"));
    /* The same descriptor as a 1.3 plugin would declare it: not asked. */
    moelat_expert_descriptor old = *p.desc;
    old.abi_minor = 3;
    assert_null(ml_plugin_extension(&old, "test.greeting/1"));
    dlclose(p.handle);

    /* The failing 1.4 entry's message is in the reason, with the file. */
    assert_int_equal(ml_plugin_load_file(in_dir(PDIR, "entry_error.so"), &p, err, sizeof err), -1);
    assert_contains(err, in_dir(PDIR, "entry_error.so"));
    assert_contains(err, "licence file /nonexistent/licence.txt not found");
}

/* ---- discovery ----------------------------------------------------------- */

static void check_mixed_dir_result(const ml_plugin_set *set) {
    const ml_plugin *good = ml_plugin_find(set, "test_good");
    assert_non_null(good);
    assert_string_equal(good->path, in_dir(PDIR, "good.so"));
    assert_int_equal(count_named(set, "test_good"), 1);
    for (int i = 0; i < N_BAD; i++) {
        const ml_plugin_error *e = error_for(set, bad_cases[i].file);
        if (!e)
            fail_msg("no error recorded for %s", bad_cases[i].file);
        assert_string_equal(e->path, in_dir(PDIR, bad_cases[i].file));
        assert_contains(e->reason, bad_cases[i].fragment);
    }
    const ml_plugin_error *dup = error_for(set, "test_good_dup.so");
    assert_non_null(dup);
    assert_contains(dup->reason, "duplicate expert name \"test_good\"");
    assert_contains(dup->reason, in_dir(PDIR, "good.so"));
    assert_null(error_for(set, "good.so"));
    assert_int_equal(count_errors_under(set, PDIR), N_BAD + 1);
    for (int i = 0; i < set->n_plugins; i++)
        if (strncmp(set->plugins[i].path, PDIR, strlen(PDIR)) == 0)
            assert_string_equal(set->plugins[i].desc->name, "test_good");
}

static void test_dir_scan_survives_bad_files(void **state) {
    (void)state;
    unsetenv("MOELAT_PLUGIN_PATH");
    const char *paths[] = {PDIR};
    ml_plugin_set set;
    ml_plugin_discover(paths, 1, &set);
    check_mixed_dir_result(&set);
    /* The crasher's directory is never scanned. */
    for (int i = 0; i < set.n_errors; i++)
        assert_null(strstr(set.errors[i].path, IDIR));
    ml_plugin_set_free(&set);
    assert_int_equal(set.n_plugins, 0);
}

static void test_duplicate_keeps_first(void **state) {
    (void)state;
    unsetenv("MOELAT_PLUGIN_PATH");
    const char *good = in_dir(PDIR, "good.so"), *dup = in_dir(PDIR, "test_good_dup.so");
    const char *order1[] = {good, dup}, *order2[] = {dup, good};
    ml_plugin_set set;

    ml_plugin_discover(order1, 2, &set);
    assert_string_equal(ml_plugin_find(&set, "test_good")->path, good);
    assert_string_equal(ml_plugin_find(&set, "test_good")->desc->description,
                        "test plugin: copies x to out");
    assert_non_null(error_for(&set, "test_good_dup.so"));
    assert_null(error_for(&set, "good.so"));
    ml_plugin_set_free(&set);

    ml_plugin_discover(order2, 2, &set);
    assert_string_equal(ml_plugin_find(&set, "test_good")->path, dup);
    assert_string_equal(ml_plugin_find(&set, "test_good")->desc->description,
                        "duplicate of test_good");
    const ml_plugin_error *e = error_for(&set, "good.so");
    assert_non_null(e);
    assert_contains(e->reason, "duplicate expert name \"test_good\"");
    ml_plugin_set_free(&set);
}

static void test_plugin_path_env(void **state) {
    (void)state;
    char env[2048];
    ml_plugin_set set;

    /* Empty entries are ignored. */
    snprintf(env, sizeof env, "::%s::", PDIR);
    setenv("MOELAT_PLUGIN_PATH", env, 1);
    ml_plugin_discover(NULL, 0, &set);
    check_mixed_dir_result(&set);
    ml_plugin_set_free(&set);

    /* Caller paths come before the environment. */
    setenv("MOELAT_PLUGIN_PATH", in_dir(PDIR, "good.so"), 1);
    const char *dup[] = {in_dir(PDIR, "test_good_dup.so")};
    ml_plugin_discover(dup, 1, &set);
    assert_string_equal(ml_plugin_find(&set, "test_good")->path, dup[0]);
    assert_non_null(error_for(&set, "good.so"));
    ml_plugin_set_free(&set);

    /* The same files reached three ways (directory, file, directory with a
     * detour through "..") load once, silently. */
    char detour[1200];
    snprintf(detour, sizeof detour, "%s/../%s", PDIR, strrchr(PDIR, '/') + 1);
    snprintf(env, sizeof env, "%s:%s", detour, in_dir(PDIR, "good.so"));
    setenv("MOELAT_PLUGIN_PATH", env, 1);
    const char *dir[] = {PDIR};
    ml_plugin_discover(dir, 1, &set);
    check_mixed_dir_result(&set);
    for (int i = 0; i < set.n_errors; i++)
        assert_null(strstr(set.errors[i].path, ".."));
    ml_plugin_set_free(&set);

    /* A named path that does not exist is reported. */
    setenv("MOELAT_PLUGIN_PATH", in_dir(PDIR, "no_such_dir"), 1);
    ml_plugin_discover(NULL, 0, &set);
    const ml_plugin_error *e = error_for(&set, "no_such_dir");
    assert_non_null(e);
    assert_contains(e->reason, "cannot open");
    ml_plugin_set_free(&set);
    unsetenv("MOELAT_PLUGIN_PATH");
}

/* ---- isolated check ------------------------------------------------------ */

static void test_isolated_check(void **state) {
    (void)state;
    char report[2048];
    const char *crash = in_dir(IDIR, "crash_on_load.so");
    assert_int_equal(ml_plugin_check_isolated(crash, report, sizeof report), -1);
    assert_contains(report, crash);
    assert_contains(report, "crashed while loading: signal SIGSEGV");

    /* Still here: check a good and a bad file after the crash. */
    assert_int_equal(ml_plugin_check_isolated(in_dir(PDIR, "good.so"), report, sizeof report),
                     0);
    assert_contains(report, "test_good");
    assert_contains(report, "1 tensors, 24 parameters");
    assert_int_equal(ml_plugin_check_isolated(in_dir(PDIR, "bad_name.so"), report,
                                              sizeof report),
                     -1);
    assert_contains(report, "bad_name.so");
    assert_contains(report, "invalid expert name");
}

static void test_isolated_check_timeout(void **state) {
    (void)state;
    char report[2048];
    int ms = 200 + rand() % 200;
    char expect[64];
    snprintf(expect, sizeof expect, "did not finish within %d ms while loading", ms);
    const char *hang = in_dir(IDIR, "hang.so");
    assert_int_equal(ml_plugin_check_isolated_timeout(hang, ms, report, sizeof report), -1);
    assert_contains(report, hang);
    assert_contains(report, expect);
}

/* ---- the CLI ------------------------------------------------------------- */

typedef struct cli_result {
    int code;
    char *out;
    char *err;
} cli_result;

static char *slurp_fd(int fd) {
    lseek(fd, 0, SEEK_SET);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
    return buf;
}

static int temp_fd(void) {
    char name[] = "/tmp/moelat_plugins_cli_XXXXXX";
    int fd = mkstemp(name);
    assert_true(fd >= 0);
    unlink(name);
    return fd;
}

/* Runs moelat-engine with args (NULL-terminated) and no MOELAT_PLUGIN_PATH. */
static cli_result run_cli(const char *first, ...) {
    const char *argv[32];
    int argc = 0;
    argv[argc++] = MOELAT_ENGINE_EXE;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;

    int out = temp_fd(), err = temp_fd();
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out, 1);
        dup2(err, 2);
        unsetenv("MOELAT_PLUGIN_PATH");
        execv(MOELAT_ENGINE_EXE, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    cli_result r = {.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                    .out = slurp_fd(out),
                    .err = slurp_fd(err)};
    return r;
}

static void cli_free(cli_result *r) {
    free(r->out);
    free(r->err);
}

static void test_cli_check(void **state) {
    (void)state;
    cli_result r = run_cli("plugins", "--check", in_dir(IDIR, "crash_on_load.so"), NULL);
    assert_int_equal(r.code, 1);
    assert_contains(r.err, "crashed while loading: signal SIGSEGV");
    cli_free(&r);

    r = run_cli("plugins", "--check", in_dir(PDIR, "good.so"), NULL);
    assert_int_equal(r.code, 0);
    assert_contains(r.out, "ok: ");
    assert_contains(r.out, "test_good");
    cli_free(&r);

    r = run_cli("plugins", "--check", in_dir(PDIR, "abi_major.so"), NULL);
    assert_int_equal(r.code, 1);
    assert_contains(r.err, "abi_major.so: expert ABI major version 2, engine expects 1");
    cli_free(&r);
}

static void test_cli_usage_errors(void **state) {
    (void)state;
    cli_result r = run_cli("plugins", "--frobnicate", NULL);
    assert_int_equal(r.code, 2);
    assert_contains(r.err, "unknown option '--frobnicate'");
    assert_contains(r.err, "usage:");
    cli_free(&r);

    r = run_cli("plugins", "--check", NULL);
    assert_int_equal(r.code, 2);
    cli_free(&r);

    r = run_cli("plugins", "--help", NULL);
    assert_int_equal(r.code, 0);
    assert_contains(r.out, "--plugin-path");
    cli_free(&r);
}

static void test_cli_table_and_errors(void **state) {
    (void)state;
    cli_result r = run_cli("plugins", "--plugin-path", PDIR, NULL);
    assert_int_equal(r.code, 0);
    assert_contains(r.out, "NAME");
    assert_contains(r.out, "test_good");
    assert_contains(r.out, in_dir(PDIR, "good.so"));
    for (int i = 0; i < N_BAD; i++) {
        char head[1200];
        snprintf(head, sizeof head, "error: %s: ", in_dir(PDIR, bad_cases[i].file));
        const char *line = strstr(r.err, head);
        if (!line)
            fail_msg("no line \"%s\" in stderr: %s", head, r.err);
        const char *eol = strchr(line, '\n');
        const char *frag = strstr(line, bad_cases[i].fragment);
        if (!frag || (eol && frag > eol))
            fail_msg("\"%s\" not on the line of %s", bad_cases[i].fragment, bad_cases[i].file);
    }
    cli_free(&r);
}

static json_t *find_entry(json_t *arr, const char *name) {
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "name")), name) == 0)
            return e;
    }
    return NULL;
}

static void test_cli_json(void **state) {
    (void)state;
    cli_result r = run_cli("plugins", "--json", "--plugin-path", PDIR, NULL);
    assert_int_equal(r.code, 0);
    json_error_t jerr;
    json_t *arr = json_loads(r.out, 0, &jerr);
    if (!arr)
        fail_msg("plugins --json: %s: %s", jerr.text, r.out);
    assert_true(json_is_array(arr));
    json_t *g = find_entry(arr, "test_good");
    assert_non_null(g);
    char abi[32];
    snprintf(abi, sizeof abi, "%d.%d", MOELAT_EXPERT_ABI_MAJOR, MOELAT_EXPERT_ABI_MINOR);
    assert_string_equal(json_string_value(json_object_get(g, "abi")), abi);
    assert_string_equal(json_string_value(json_object_get(g, "version")), "0.0.1");
    assert_string_equal(json_string_value(json_object_get(g, "path")), in_dir(PDIR, "good.so"));
    assert_true(json_is_false(json_object_get(g, "opencl")));
    json_t *hidden = json_object_get(g, "hidden");
    assert_int_equal(json_array_size(hidden), 1);
    assert_string_equal(json_string_value(json_array_get(hidden, 0)), "h");
    assert_contains(r.err, "error: ");
    json_decref(arr);
    cli_free(&r);
}

static void test_cli_lists_builtins(void **state) {
    (void)state;
    static const char *builtins[] = {"local", "functional", "distant"};
    int present = 0;
    for (int i = 0; i < 3; i++) {
        char file[256];
        struct stat st;
        snprintf(file, sizeof file, "moelat_expert_%s.so", builtins[i]);
        present += stat(in_dir(MOELAT_TEST_EXPERTS_DIR, file), &st) == 0;
    }
    if (present < 3) {
        print_message("built-in experts not built yet in %s\n", MOELAT_TEST_EXPERTS_DIR);
        skip();
    }
    cli_result r = run_cli("plugins", "--json", NULL);
    assert_int_equal(r.code, 0);
    json_t *arr = json_loads(r.out, 0, NULL);
    assert_non_null(arr);
    for (int i = 0; i < 3; i++) {
        json_t *e = find_entry(arr, builtins[i]);
        if (!e)
            fail_msg("built-in expert \"%s\" not listed; stderr: %s", builtins[i], r.err);
        assert_true(ends_with(json_string_value(json_object_get(e, "path")), ".so"));
    }
    json_decref(arr);
    cli_free(&r);

    /* Their default hidden sizes are the debug preset's (docs/MODEL.md, S = 24):
     * the isolated check counts the parameters the original modules have. */
    static const long long debug_params[] = {1262, 10605, 4287};
    for (int i = 0; i < 3; i++) {
        char file[256], expect[64];
        snprintf(file, sizeof file, "moelat_expert_%s.so", builtins[i]);
        snprintf(expect, sizeof expect, " %lld parameters at S=24", debug_params[i]);
        r = run_cli("plugins", "--check", in_dir(MOELAT_TEST_EXPERTS_DIR, file), NULL);
        if (r.code != 0)
            fail_msg("plugins --check %s: exit %d: %s", file, r.code, r.err);
        assert_contains(r.out, expect);
        cli_free(&r);
    }
}

int main(void) {
    g_seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(g_seed);
    printf("test_plugin_loader seed %u\n", g_seed);
    unsetenv("MOELAT_PLUGIN_PATH");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_loads_and_runs),
        cmocka_unit_test(test_each_bad_file_named),
        cmocka_unit_test(test_validation_rules),
        cmocka_unit_test(test_random_names),
        cmocka_unit_test(test_host_services),
        cmocka_unit_test(test_abi_minors),
        cmocka_unit_test(test_extensions),
        cmocka_unit_test(test_dir_scan_survives_bad_files),
        cmocka_unit_test(test_duplicate_keeps_first),
        cmocka_unit_test(test_plugin_path_env),
        cmocka_unit_test(test_isolated_check),
        cmocka_unit_test(test_isolated_check_timeout),
        cmocka_unit_test(test_cli_check),
        cmocka_unit_test(test_cli_usage_errors),
        cmocka_unit_test(test_cli_table_and_errors),
        cmocka_unit_test(test_cli_json),
        cmocka_unit_test(test_cli_lists_builtins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
