/* Test plugin: the entry function never returns, for the isolated check's
 * time limit. Kept out of directory scans with crash_on_load. */
#include <time.h>

#include "moelat/expert_abi.h"

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    (void)host;
    for (;;) {
        struct timespec ts = {1, 0};
        nanosleep(&ts, 0);
    }
}
