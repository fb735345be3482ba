/* --threads for the CPU OpenCL runtime too (cli_common.h). PoCL sizes its
 * thread pool from environment variables it reads once, when its platform
 * is first initialised: POCL_MAX_PTHREAD_COUNT (the pthread device of
 * PoCL 1.x-3.x, Debian's 3.1 among them) and POCL_CPU_MAX_CU_NUM (the
 * 'cpu' device of PoCL 4 and later). A value the user set wins. */
#include <stdio.h>
#include <stdlib.h>

#include "cli_common.h"

void cli_cpu_runtime_threads(int threads) {
    if (threads <= 0)
        return;
    static const char *const vars[] = {"POCL_MAX_PTHREAD_COUNT", "POCL_CPU_MAX_CU_NUM"};
    char value[16];
    snprintf(value, sizeof value, "%d", threads);
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *set = getenv(vars[i]);
        if (!set || !*set)
            setenv(vars[i], value, 1);
    }
}
