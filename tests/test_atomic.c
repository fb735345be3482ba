/* Atomic file writes: content arrives whole, no temporary file is left
 * behind, and every failure (abort, temp file gone, target a directory,
 * missing or read-only directory) leaves the previous file intact. Only
 * regular files are replaced; symlinks are written through. */
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

#include"base/atomic_file.h"

static int setup(void **state) {
    (void)state;
    return io_fixture_setup("test_atomic", "atomic");
}

static int teardown(void **state) {
    (void)state;
    return io_fixture_teardown();
}

static unsigned char *random_bytes(size_t n) {
    unsigned char *b = malloc(n + 1);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)rnd();
    return b;
}

static void assert_file_is(const char *path, const unsigned char *data, size_t len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    unsigned char *b = malloc(len + 16);
    size_t got = fread(b, 1, len + 16, fp);
    fclose(fp);
    assert_int_equal(got, len);
    if (len)
        assert_memory_equal(b, data, len);
    free(b);
}

static int count_temp_files(const char *dir) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -c '\\.tmp\\.'", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

static void test_write_and_replace(void **state) {
    (void)state;
    char path[300], err[512] = "";
    snprintf(path, sizeof path, "%s/data.bin", g_dir);
    for (int rep = 0; rep < 5; rep++) {
        size_t n = (size_t)(rnd() % 200000);
        unsigned char *b = random_bytes(n);
        if (atomic_write_file(path, b, n, err, sizeof err) != 0)
            fail_msg("%s", err);
        assert_file_is(path, b, n);
        assert_int_equal(count_temp_files(g_dir), 0);
        free(b);
    }
}

static void test_temp_names(void **state) {
    (void)state;
    char path[300], err[512];
    snprintf(path, sizeof path, "%s/named.bin", g_dir);
    atomic_file a, b;
    assert_int_equal(atomic_open(&a, path, err, sizeof err), 0);
    assert_int_equal(atomic_open(&b, path, err, sizeof err), 0);
    char prefix[400];
    snprintf(prefix, sizeof prefix, "%s.tmp.%ld.", path, (long)getpid());
    assert_int_equal(strncmp(a.tmp_path, prefix, strlen(prefix)), 0);
    assert_int_equal(strncmp(b.tmp_path, prefix, strlen(prefix)), 0);
    assert_string_not_equal(a.tmp_path, b.tmp_path);
    assert_int_equal(access(a.tmp_path, F_OK), 0);
    /* Nothing is visible under the final name before the commit. */
    assert_int_not_equal(access(path, F_OK), 0);
    unsigned char *x = random_bytes(100);
    assert_int_equal(fwrite(x, 1, 100, b.fp), 100);
    atomic_abort(&a);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(atomic_commit(&b, err, sizeof err), 0);
    assert_file_is(path, x, 100);
    assert_int_equal(count_temp_files(g_dir), 0);
    free(x);
}

static void test_abort_keeps_previous(void **state) {
    (void)state;
    char path[300], err[512];
    snprintf(path, sizeof path, "%s/keep.bin", g_dir);
    unsigned char *old = random_bytes(1000), *neu = random_bytes(3000);
    assert_int_equal(atomic_write_file(path, old, 1000, err, sizeof err), 0);
    atomic_file af;
    assert_int_equal(atomic_open(&af, path, err, sizeof err), 0);
    assert_int_equal(fwrite(neu, 1, 3000, af.fp), 3000);
    atomic_abort(&af);
    assert_file_is(path, old, 1000);
    assert_int_equal(count_temp_files(g_dir), 0);
    free(old);
    free(neu);
}

/* The temp file vanishes before the rename: the commit must fail and the
 * old content stay. */
static void test_failed_commit_keeps_previous(void **state) {
    (void)state;
    char path[300], err[512] = "";
    snprintf(path, sizeof path, "%s/commit.bin", g_dir);
    unsigned char *old = random_bytes(777), *neu = random_bytes(555);
    assert_int_equal(atomic_write_file(path, old, 777, err, sizeof err), 0);
    atomic_file af;
    assert_int_equal(atomic_open(&af, path, err, sizeof err), 0);
    assert_int_equal(fwrite(neu, 1, 555, af.fp), 555);
    assert_int_equal(unlink(af.tmp_path), 0);
    assert_int_not_equal(atomic_commit(&af, err, sizeof err), 0);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "rename"));
    assert_file_is(path, old, 777);
    assert_int_equal(count_temp_files(g_dir), 0);
    free(old);
    free(neu);
}

/* The target is a non-empty directory: rename fails, the temp file is
 * removed and the directory is untouched. */
static void test_target_is_directory(void **state) {
    (void)state;
    char path[300], inner[340], err[512] = "";
    snprintf(path, sizeof path, "%s/adir", g_dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(inner, sizeof inner, "%s/inside", path);
    unsigned char *old = random_bytes(64), *neu = random_bytes(64);
    assert_int_equal(atomic_write_file(inner, old, 64, err, sizeof err), 0);
    assert_int_not_equal(atomic_write_file(path, neu, 64, err, sizeof err), 0);
    assert_non_null(strstr(err, path));
    assert_file_is(inner, old, 64);
    assert_int_equal(count_temp_files(g_dir), 0);
    free(old);
    free(neu);
}

static void test_missing_directory(void **state) {
    (void)state;
    char path[300], err[512] = "";
    snprintf(path, sizeof path, "%s/no/such/dir/file.bin", g_dir);
    unsigned char *b = random_bytes(10);
    assert_int_not_equal(atomic_write_file(path, b, 10, err, sizeof err), 0);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file"));
    assert_int_not_equal(atomic_write_file("", b, 10, err, sizeof err), 0);
    free(b);
}

/* A read-only directory refuses the temp file (not for root, who may
 * write anyway: then the test is skipped). */
static void test_readonly_directory(void **state) {
    (void)state;
    if (geteuid() == 0) {
        fprintf(stderr, "running as root: permissions are not enforced; skipping\n");
        skip();
    }
    char dir[300], path[340], err[512] = "";
    snprintf(dir, sizeof dir, "%s/ro", g_dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/f.bin", dir);
    unsigned char *old = random_bytes(99), *neu = random_bytes(42);
    assert_int_equal(atomic_write_file(path, old, 99, err, sizeof err), 0);
    assert_int_equal(chmod(dir, 0555), 0);
    assert_int_not_equal(atomic_write_file(path, neu, 42, err, sizeof err), 0);
    assert_non_null(strstr(err, path));
    assert_int_equal(chmod(dir, 0755), 0);
    assert_file_is(path, old, 99);
    assert_int_equal(count_temp_files(dir), 0);
    free(old);
    free(neu);
}

/* A FIFO or a read-only file at the target is refused by type and left
 * as it was; so is a FIFO behind a symlink. */
static void test_special_targets(void **state) {
    (void)state;
    char fifo[300], ro[300], link[300], err[1024] = "";
    snprintf(fifo, sizeof fifo, "%s/fifo", g_dir);
    snprintf(ro, sizeof ro, "%s/ro.bin", g_dir);
    snprintf(link, sizeof link, "%s/to-fifo", g_dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(symlink("fifo", link), 0);
    unsigned char *old = random_bytes(33), *neu = random_bytes(77);
    assert_int_equal(atomic_write_file(ro, old, 33, err, sizeof err), 0);
    assert_int_equal(chmod(ro, 0444), 0);

    assert_int_not_equal(atomic_write_file(fifo, neu, 77, err, sizeof err), 0);
    assert_non_null(strstr(err, "is a FIFO"));
    assert_int_not_equal(atomic_write_file(link, neu, 77, err, sizeof err), 0);
    assert_non_null(strstr(err, "is a FIFO"));
    assert_non_null(strstr(err, "symbolic link"));
    struct stat st;
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));

    assert_int_not_equal(atomic_write_file(ro, neu, 77, err, sizeof err), 0);
    assert_non_null(strstr(err, "read-only (mode 0444)"));
    assert_file_is(ro, old, 33);
    assert_int_equal(stat(ro, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0444);
    assert_int_equal(count_temp_files(g_dir), 0);
    chmod(ro, 0644);
    free(old);
    free(neu);
}

/* A symlink (relative, into a subdirectory) stays a link; its target gets
 * the new content and keeps its mode. */
static void test_symlink_written_through(void **state) {
    (void)state;
    char sub[300], target[300], link[300], err[1024] = "";
    snprintf(sub, sizeof sub, "%s/store", g_dir);
    snprintf(target, sizeof target, "%s/store/data.bin", g_dir);
    snprintf(link, sizeof link, "%s/link.bin", g_dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    unsigned char *old = random_bytes(20), *neu = random_bytes(50);
    assert_int_equal(atomic_write_file(target, old, 20, err, sizeof err), 0);
    assert_int_equal(chmod(target, 0600), 0);
    assert_int_equal(symlink("store/data.bin", link), 0);
    assert_int_equal(atomic_write_file(link, neu, 50, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_file_is(target, neu, 50);
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(count_temp_files(sub), 0);
    /* A dangling link: the save creates the file it names. */
    unlink(target);
    assert_int_equal(atomic_write_file(link, old, 20, err, sizeof err), 0);
    assert_file_is(target, old, 20);
    free(old);
    free(neu);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_and_replace),
        cmocka_unit_test(test_temp_names),
        cmocka_unit_test(test_abort_keeps_previous),
        cmocka_unit_test(test_failed_commit_keeps_previous),
        cmocka_unit_test(test_target_is_directory),
        cmocka_unit_test(test_missing_directory),
        cmocka_unit_test(test_readonly_directory),
        cmocka_unit_test(test_special_targets),
        cmocka_unit_test(test_symlink_written_through),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
