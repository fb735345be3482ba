/* Checkpoints: 10 steps equal 5 steps, a checkpoint, a resume and 5 more,
 * bit for bit (host path and batch path); a save killed at any file leaves
 * the previous checkpoint resumable; a killed CLI run resumes; every
 * refusal (other model fields, other weights, damaged files) says what
 * differs and leaves the lattice alone. */
#include <dirent.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_support.h"

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    if (d)
        closedir(d);
    return n;
}

/* A lattice with perturbed weights, random states and a random external
 * input, all from seed: two calls with one seed give the same lattice. */
static moelat_lattice *make_lattice(const moelat_config *cfg, uint64_t seed) {
    moelat_lattice *lat = ts_lattice(cfg);
    char *dir = ts_tmpdir();
    ts_perturb_weights(lat, seed, dir);
    rmdir(dir);
    free(dir);
    size_t n = moelat_cell_count(lat) * (size_t)moelat_state_size(lat);
    float *v = malloc(n * sizeof(float));
    ts_random(v, n, 0.1, seed + 7);
    assert_int_equal(moelat_set_states(lat, v, n), MOELAT_OK);
    free(v);
    size_t ne = (size_t)cfg->dims[0] * cfg->dims[1] * MOELAT_EXT_SIZE;
    float *ext = malloc(ne * sizeof(float));
    ts_random(ext, ne, 1.0, seed + 8);
    assert_int_equal(moelat_set_external_input(lat, ext, ne), MOELAT_OK);
    free(ext);
    return lat;
}

static float *states_of(moelat_lattice *lat) {
    size_t n = moelat_cell_count(lat) * (size_t)moelat_state_size(lat);
    float *v = malloc(n * sizeof(float));
    assert_int_equal(moelat_get_states(lat, v, n), MOELAT_OK);
    return v;
}

static void step_ok(moelat_lattice *lat, int n) {
    if (moelat_step(lat, n) != MOELAT_OK)
        fail_msg("%s", moelat_last_error(lat));
}

/* 10 steps straight against 5 + checkpoint + resume in a fresh lattice + 5. */
static void resume_case(moelat_mode mode) {
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    cfg.seed = seed % 1000003;
    cfg.mode = mode;
    char *dir = ts_tmpdir();

    moelat_lattice *a = make_lattice(&cfg, seed);
    step_ok(a, 10);
    float *ref = states_of(a);

    moelat_lattice *b = make_lattice(&cfg, seed);
    step_ok(b, 5);
    float *mid = states_of(b);
    if (moelat_save_checkpoint(b, dir) != MOELAT_OK)
        fail_msg("%s", moelat_last_error(b));
    /* The saving lattice goes on unchanged by the save. */
    step_ok(b, 5);
    float *b10 = states_of(b);

    /* A lattice from the seed alone: other weights, states and no input
     * until the resume brings the checkpoint's. */
    moelat_lattice *c = ts_lattice(&cfg);
    assert_int_not_equal(moelat_weights_digest(c), moelat_weights_digest(b));
    if (moelat_resume_checkpoint(c, dir) != MOELAT_OK)
        fail_msg("%s", moelat_last_error(c));
    assert_int_equal(moelat_step_count(c), 5);
    assert_int_equal(moelat_weights_digest(c), moelat_weights_digest(b));
    float *c5 = states_of(c);
    size_t n = moelat_cell_count(c) * 24;
    assert_memory_equal(c5, mid, n * sizeof(float));
    step_ok(c, 5);
    assert_int_equal(moelat_step_count(c), 10);
    float *c10 = states_of(c);
    assert_memory_not_equal(c10, mid, n * sizeof(float));
    assert_memory_equal(b10, ref, n * sizeof(float));
    assert_memory_equal(c10, ref, n * sizeof(float));
    printf("# %s: 10 steps == 5 + checkpoint + resume + 5, bitwise (%zu floats)\n",
           mode == MOELAT_MODE_BATCH ? "batch" : "per-cell", n);
    if (mode == MOELAT_MODE_BATCH) {
        moelat_report rep = MOELAT_REPORT_INIT;
        moelat_get_report(c, &rep);
        assert_true(rep.batch_chunks > 0);
        assert_int_equal(rep.fallbacks, 0);
    }
    free(ref);
    free(mid);
    free(b10);
    free(c5);
    free(c10);
    moelat_lattice_destroy(a);
    moelat_lattice_destroy(b);
    moelat_lattice_destroy(c);
    rm_tree(dir);
    free(dir);
}

static void test_resume_bitexact_host(void **state) {
    (void)state;
    resume_case(MOELAT_MODE_PERCELL);
}

static void test_resume_bitexact_batch(void **state) {
    (void)state;
    resume_case(MOELAT_MODE_BATCH);
}

/* A lattice whose config differs from the checkpoint's in one field must
 * be refused with `want` in the message, and be left as it was. */
static void expect_refusal(const moelat_config *cfg, const char *dir, const char *want) {
    char err[2048];
    moelat_lattice *lat = NULL;
    if (moelat_lattice_create(cfg, &lat, err, sizeof err) != MOELAT_OK)
        fail_msg("lattice for refusal case '%s': %s", want, err);
    float *before = states_of(lat);
    uint64_t digest = moelat_weights_digest(lat);
    moelat_status st = moelat_resume_checkpoint(lat, dir);
    printf("# refused: %s\n", moelat_last_error(lat));
    assert_int_equal(st, MOELAT_ERR_INVALID);
    if (!strstr(moelat_last_error(lat), want))
        fail_msg("message '%s' lacks '%s'", moelat_last_error(lat), want);
    float *after = states_of(lat);
    assert_memory_equal(before, after, moelat_cell_count(lat) * (size_t)moelat_state_size(lat) * sizeof(float));
    assert_int_equal(moelat_weights_digest(lat), digest);
    assert_int_equal(moelat_step_count(lat), 0);
    free(before);
    free(after);
    moelat_lattice_destroy(lat);
}

static void test_refusals(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    cfg.seed = 42;
    char *dir = ts_tmpdir();
    moelat_lattice *b = make_lattice(&cfg, seed);
    step_ok(b, 2);
    assert_int_equal(moelat_save_checkpoint(b, dir), MOELAT_OK);

    moelat_config c = cfg;
    c.dims[0] = 10;
    expect_refusal(&c, dir, "checkpoint dims 9x8x7, this run 10x8x7");
    ts_config(&c, "experiment", 9, 8, 7);
    c.seed = 42;
    expect_refusal(&c, dir, "checkpoint preset debug, this run experiment");
    expect_refusal(&c, dir, "checkpoint state size 24, this run 64");
    c = cfg;
    moelat_config_set_hidden(&c, "h1", 16);
    expect_refusal(&c, dir, "checkpoint hidden size h1 12, this run 16");
    c = cfg;
    moelat_config_set_hidden(&c, "extra_width", 5);
    expect_refusal(&c, dir, "checkpoint hidden size extra_width unset, this run 5");
    c = cfg;
    c.radius_ratio = 0.35;
    expect_refusal(&c, dir, "checkpoint radius ratio 0.3, this run 0.35");
    c = cfg;
    c.band_ratio[2] = 0.95;
    expect_refusal(&c, dir, "checkpoint band ratios 0.4/0.8/0.99, this run 0.4/0.8/0.95");
    c = cfg;
    c.cnf_mode = MOELAT_CNF_LIPSCHITZ;
    expect_refusal(&c, dir, "checkpoint cnf mode euler, this run lipschitz");
    c = cfg;
    c.cnf_steps = 4;
    expect_refusal(&c, dir, "checkpoint cnf steps 3, this run 4");
    c = cfg;
    c.seed = 43;
    expect_refusal(&c, dir, "checkpoint seed 42, this run 43");
    /* Several fields: every one is named. */
    c = cfg;
    c.dims[2] = 6;
    c.seed = 1;
    expect_refusal(&c, dir, "checkpoint dims 9x8x7, this run 9x8x6; checkpoint seed 42, this run 1");

    /* Other weights kept by the caller: refused, naming both digests. */
    moelat_lattice *l = ts_lattice(&cfg);
    assert_int_equal(moelat_resume_checkpoint_ex(l, dir, MOELAT_RESUME_KEEP_WEIGHTS), MOELAT_ERR_INVALID);
    char want[128];
    snprintf(want, sizeof want, "checkpoint weights digest %016" PRIx64 ", this run %016" PRIx64,
             moelat_weights_digest(b), moelat_weights_digest(l));
    if (!strstr(moelat_last_error(l), want))
        fail_msg("message '%s' lacks '%s'", moelat_last_error(l), want);
    assert_int_equal(moelat_step_count(l), 0);
    assert_int_equal(moelat_resume_checkpoint_ex(l, dir, 2), MOELAT_ERR_INVALID);
    moelat_lattice_destroy(l);
    /* The same weights kept: accepted. */
    l = make_lattice(&cfg, seed);
    assert_int_equal(moelat_resume_checkpoint_ex(l, dir, MOELAT_RESUME_KEEP_WEIGHTS), MOELAT_OK);
    assert_int_equal(moelat_step_count(l), 2);
    moelat_lattice_destroy(l);
    moelat_lattice_destroy(b);
    rm_tree(dir);
    free(dir);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Damaged or missing files: MOELAT_ERR_FORMAT naming the file, lattice
 * unchanged. */
static void test_damaged(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    char *dir = ts_tmpdir();
    moelat_lattice *b = make_lattice(&cfg, seed);
    moelat_lattice *l = ts_lattice(&cfg);
    uint64_t digest = moelat_weights_digest(l);

    /* No checkpoint yet (empty directory), and no directory at all. */
    assert_int_equal(moelat_resume_checkpoint(l, dir), MOELAT_ERR_FORMAT);
    assert_non_null(strstr(moelat_last_error(l), "no complete checkpoint"));
    assert_int_equal(moelat_resume_checkpoint(l, "/nonexistent/moelat-ckpt"), MOELAT_ERR_FORMAT);
    assert_non_null(strstr(moelat_last_error(l), "not a directory"));

    assert_int_equal(moelat_save_checkpoint(b, dir), MOELAT_OK);
    char path[4096], states_name[256] = "";
    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "states-", 7) == 0)
            snprintf(states_name, sizeof states_name, "%s", e->d_name);
    closedir(d);
    assert_true(states_name[0]);

    /* One flipped bit in the data of the states file. */
    snprintf(path, sizeof path, "%s/%s", dir, states_name);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, -100, SEEK_END);
    int ch = fgetc(f);
    fseek(f, -100, SEEK_END);
    fputc(ch ^ 0x10, f);
    fclose(f);
    assert_int_equal(moelat_resume_checkpoint(l, dir), MOELAT_ERR_FORMAT);
    printf("# damaged states: %s\n", moelat_last_error(l));
    assert_non_null(strstr(moelat_last_error(l), "checksum"));
    assert_non_null(strstr(moelat_last_error(l), states_name));

    /* Truncated states file. */
    assert_int_equal(truncate(path, 1000), 0);
    assert_int_equal(moelat_resume_checkpoint(l, dir), MOELAT_ERR_FORMAT);
    printf("# truncated states: %s\n", moelat_last_error(l));
    assert_non_null(strstr(moelat_last_error(l), states_name));

    /* Manifests that are not one, or point outside the directory. */
    assert_int_equal(moelat_save_checkpoint(b, dir), MOELAT_OK);
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    write_text(path, "{\"format\": \"something-else\"}");
    assert_int_equal(moelat_resume_checkpoint(l, dir), MOELAT_ERR_FORMAT);
    assert_non_null(strstr(moelat_last_error(l), "not a moelat checkpoint"));
    write_text(path, "{\"format\": \"moelat-checkpoint\", \"version\": 2, \"step\": 1, \"seed\": \"1\","
                     " \"weights_digest\": \"0000000000000000\", \"config\": \"../etc/passwd\"}");
    assert_int_equal(moelat_resume_checkpoint(l, dir), MOELAT_ERR_FORMAT);
    assert_non_null(strstr(moelat_last_error(l), "key 'config'"));
    write_text(path, "{not json");
    assert_int_equal(moelat_resume_checkpoint(l, dir), MOELAT_ERR_FORMAT);
    assert_non_null(strstr(moelat_last_error(l), "manifest.json"));

    assert_int_equal(moelat_step_count(l), 0);
    assert_int_equal(moelat_weights_digest(l), digest);
    moelat_lattice_destroy(l);
    moelat_lattice_destroy(b);
    rm_tree(dir);
    free(dir);
}

/* A child saves at step 3, steps to 5 and dies while saving again, at each
 * file of the checkpoint in turn; the directory must resume at step 3. */
static void test_killed_save(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    moelat_lattice *r = make_lattice(&cfg, seed);
    step_ok(r, 3);
    float *ref3 = states_of(r);
    step_ok(r, 2);
    float *ref5 = states_of(r);
    size_t bytes = moelat_cell_count(r) * 24 * sizeof(float);
    moelat_lattice_destroy(r);

    /* "" with a byte limit: killed inside the states file's data. */
    const char *at[] = {"states-", "input-", "weights-", "config-", "manifest.json", ""};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        char *dir = ts_tmpdir();
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            moelat_lattice *lat = make_lattice(&cfg, seed);
            if (moelat_step(lat, 3) != MOELAT_OK || moelat_save_checkpoint(lat, dir) != MOELAT_OK ||
                moelat_step(lat, 2) != MOELAT_OK)
                _exit(3);
            struct rlimit core = {0, 0};
            setrlimit(RLIMIT_CORE, &core);
            if (at[i][0]) {
                setenv("MOELAT_TEST_KILL_BEFORE_RENAME", at[i], 1);
            } else {
                struct rlimit fs = {(rlim_t)bytes / 2, (rlim_t)bytes / 2};
                signal(SIGXFSZ, SIG_DFL);
                setrlimit(RLIMIT_FSIZE, &fs);
            }
            moelat_save_checkpoint(lat, dir);
            _exit(4); /* not killed */
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("save killed at '%s': the child was not killed (status 0x%x)", at[i], status);

        moelat_lattice *c = ts_lattice(&cfg);
        if (moelat_resume_checkpoint(c, dir) != MOELAT_OK)
            fail_msg("after a save killed at '%s': %s", at[i], moelat_last_error(c));
        assert_int_equal(moelat_step_count(c), 3);
        float *s = states_of(c);
        assert_memory_equal(s, ref3, bytes);
        free(s);
        step_ok(c, 2);
        s = states_of(c);
        assert_memory_equal(s, ref5, bytes);
        free(s);
        /* The next save completes and removes what the killed one left. */
        assert_int_equal(moelat_save_checkpoint(c, dir), MOELAT_OK);
        assert_int_equal(count_files(dir, "states-"), 1);
        assert_int_equal(count_files(dir, "input-"), 1);
        assert_int_equal(count_files(dir, "weights-"), 1);
        assert_int_equal(count_files(dir, "config-"), 1);
        assert_int_equal(count_files(dir, "manifest.json"), 1);
        printf("# save killed at %s: resumed at step 3, bitwise\n", at[i][0] ? at[i] : "half the states");
        moelat_lattice_destroy(c);
        rm_tree(dir);
        free(dir);
    }
    free(ref3);
    free(ref5);
}

/* Step 0, repeated saves, no external input, the user's own files. */
static void test_save_details(void **state) {
    (void)state;
    uint64_t seed = ts_seed();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    ts_config(&cfg, "debug", 9, 8, 7);
    char *dir = ts_tmpdir();
    char sub[2048];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    moelat_lattice *b = make_lattice(&cfg, seed);
    assert_int_equal(moelat_set_external_input(b, NULL, 0), MOELAT_OK);
    assert_int_equal(moelat_save_checkpoint(b, sub), MOELAT_OK); /* creates a/b */
    char notes[4096];
    snprintf(notes, sizeof notes, "%s/notes.txt", sub);
    write_text(notes, "mine");
    assert_int_equal(moelat_save_checkpoint(b, sub), MOELAT_OK);
    assert_int_equal(moelat_save_checkpoint(b, sub), MOELAT_OK);
    assert_int_equal(count_files(sub, "states-"), 1);
    assert_int_equal(count_files(sub, "input-"), 0);
    assert_int_equal(count_files(sub, "notes.txt"), 1);
    moelat_config got = MOELAT_CONFIG_INIT;
    uint64_t step = 99;
    char err[1024];
    ts_config(&got, "experiment", 3, 3, 3);
    got.threads = 1;
    assert_int_equal(moelat_checkpoint_config(sub, &got, &step, err, sizeof err), MOELAT_OK);
    assert_int_equal(step, 0);
    assert_string_equal(got.preset, "debug");
    assert_int_equal(got.dims[0], 9);
    assert_int_equal(got.state_size, 24);
    assert_int_equal(got.threads, 1); /* execution fields kept */

    /* An input set on the resumed lattice is cleared by a checkpoint that
     * has none. */
    moelat_lattice *c = make_lattice(&cfg, seed + 1);
    assert_int_equal(moelat_resume_checkpoint(c, sub), MOELAT_OK);
    step_ok(c, 1);
    step_ok(b, 1);
    float *x = states_of(b), *y = states_of(c);
    assert_memory_equal(x, y, moelat_cell_count(b) * 24 * sizeof(float));
    free(x);
    free(y);
    assert_int_equal(moelat_save_checkpoint(b, ""), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_save_checkpoint(b, notes), MOELAT_ERR_IO); /* a file, not a directory */
    printf("# save into a file: %s\n", moelat_last_error(b));
    moelat_lattice_destroy(b);
    moelat_lattice_destroy(c);
    unlink(notes);
    rm_tree(sub);
    snprintf(sub, sizeof sub, "%s/a", dir);
    rmdir(sub);
    rmdir(dir);
    free(dir);
}

/* --- the CLI ------------------------------------------------------------ */

static int run_cmd(const char *args, const char *errfile) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>%s", MOELAT_ENGINE_EXE, args, errfile);
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void expect_cli(const char *args, const char *errfile, int code, const char *want) {
    int rc = run_cmd(args, errfile);
    char *msg = slurp(errfile);
    printf("# run %s -> %d: %s", args, rc, msg ? msg : "");
    if (rc != code || (want && (!msg || !strstr(msg, want))))
        fail_msg("run %s: exit %d (want %d), stderr '%s' (want '%s')", args, rc, code, msg ? msg : "",
                 want ? want : "");
    free(msg);
}

/* Kills a checkpointing run with SIGKILL, resumes it, and compares with an
 * uninterrupted run of as many steps. */
static void test_cli_killed_run(void **state) {
    (void)state;
    char *dir = ts_tmpdir();
    char ck[1024], errf[1024], out[1024], ref[1024], args[8192];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    snprintf(errf, sizeof errf, "%s/stderr", dir);
    snprintf(out, sizeof out, "%s/out.npy", dir);
    snprintf(ref, sizeof ref, "%s/ref.npy", dir);
    const char *model = "--dims 9x8x7 --seed 77 --threads 2 --quiet";

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *argv[] = {(char *)MOELAT_ENGINE_EXE, "run", "--dims", "9x8x7", "--seed", "77", "--threads",
                        "2", "--quiet", "--steps", "100000", "--checkpoint-every", "3",
                        "--checkpoint-dir", ck, NULL};
        freopen("/dev/null", "w", stdout);
        execv(MOELAT_ENGINE_EXE, argv);
        _exit(127);
    }
    /* Until a checkpoint past step 6 exists; then kill wherever it is. */
    uint64_t step = 0;
    moelat_config got = MOELAT_CONFIG_INIT;
    char err[1024];
    for (int tries = 0; tries < 1200; tries++) {
        ts_config(&got, "debug", 1, 1, 1);
        if (moelat_checkpoint_config(ck, &got, &step, err, sizeof err) == MOELAT_OK && step >= 6)
            break;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(moelat_checkpoint_config(ck, &got, &step, err, sizeof err), MOELAT_OK);
    assert_true(step >= 6 && step % 3 == 0);
    printf("# killed the run; its last checkpoint is at step %llu\n", (unsigned long long)step);

    snprintf(args, sizeof args, "run --resume %s --steps 4 --threads 2 --quiet --save-state %s", ck, out);
    expect_cli(args, errf, 0, NULL);
    snprintf(args, sizeof args, "run %s --steps %llu --save-state %s", model, (unsigned long long)step + 4, ref);
    expect_cli(args, errf, 0, NULL);
    size_t n = 9 * 8 * 7 * 24;
    float *a = ts_read_npy(out, n), *b = ts_read_npy(ref, n);
    assert_memory_equal(a, b, n * sizeof(float));
    free(a);
    free(b);
    printf("# resumed run == uninterrupted run of %llu steps, bitwise\n", (unsigned long long)step + 4);

    /* Refusals from the command line. */
    snprintf(args, sizeof args, "run --resume %s --dims 10x8x7 --steps 1", ck);
    expect_cli(args, errf, 1, "checkpoint dims 9x8x7, this run 10x8x7");
    snprintf(args, sizeof args, "run --resume %s --preset experiment --steps 1", ck);
    expect_cli(args, errf, 1, "checkpoint preset debug, this run experiment");
    snprintf(args, sizeof args, "run --resume %s --seed 78 --steps 1", ck);
    expect_cli(args, errf, 1, "checkpoint seed 77, this run 78");
    char w[1024];
    snprintf(w, sizeof w, "%s/other.safetensors", dir);
    snprintf(args, sizeof args, "run --dims 9x8x7 --seed 5 --steps 0 --quiet --save-weights %s", w);
    expect_cli(args, errf, 0, NULL);
    snprintf(args, sizeof args, "run --resume %s --weights %s --steps 1", ck, w);
    expect_cli(args, errf, 1, "weights digest");
    snprintf(args, sizeof args, "run --resume %s --state %s --steps 1", ck, out);
    expect_cli(args, errf, 2, "--state and --resume");
    snprintf(args, sizeof args, "run --resume %s/nothing --steps 1", dir);
    expect_cli(args, errf, 2, "not a directory");
    expect_cli("run --checkpoint-every 2 --steps 1", errf, 2, "--checkpoint-dir");
    expect_cli("run --checkpoint-every 0 --steps 1", errf, 2, "an integer from 1 to");
    /* The checkpoint's own weights given explicitly: accepted. */
    snprintf(args, sizeof args, "run %s --steps 0 --save-weights %s", model, w);
    expect_cli(args, errf, 0, NULL);
    snprintf(args, sizeof args, "run --resume %s --weights %s --steps 1 --quiet", ck, w);
    expect_cli(args, errf, 0, NULL);

    rm_tree(ck);
    unlink(errf);
    unlink(out);
    unlink(ref);
    unlink(w);
    rmdir(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_bitexact_host),
        cmocka_unit_test(test_resume_bitexact_batch),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_damaged),
        cmocka_unit_test(test_killed_save),
        cmocka_unit_test(test_save_details),
        cmocka_unit_test(test_cli_killed_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
