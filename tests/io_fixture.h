/* Fixture shared by the file-format tests: a seeded generator (seed from
 * MOELAT_TEST_SEED, else the clock and pid, printed) and a temporary
 * directory created by the group setup and removed by its teardown. */
#ifndef MOELAT_IO_FIXTURE_H
#define MOELAT_IO_FIXTURE_H

#include <stdint.h>

extern char g_dir[256];

/* splitmix64 over the fixture's seed. */
uint64_t rnd(void);
/* Seeds the generator (naming the test in the printed seed) and creates
 * $TMPDIR/moelat_<tag>_XXXXXX in g_dir. Returns 0 or -1. */
int io_fixture_setup(const char *test_name, const char *tag);
/* Removes g_dir, write-protected entries included. Returns 0 or -1. */
int io_fixture_teardown(void);

#endif
