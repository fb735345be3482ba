#include "io_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

char g_dir[256];
static uint64_t g_rng;

uint64_t rnd(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int io_fixture_setup(const char *test_name, const char *tag) {
    const char *env = getenv("MOELAT_TEST_SEED");
    g_rng = env ? strtoull(env, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    fprintf(stderr, "%s: MOELAT_TEST_SEED=%llu\n", test_name, (unsigned long long)g_rng);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/moelat_%s_XXXXXX", tmp ? tmp : "/tmp", tag);
    return mkdtemp(g_dir) ? 0 : -1;
}

int io_fixture_teardown(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", g_dir, g_dir);
    return system(cmd) == 0 ? 0 : -1;
}
