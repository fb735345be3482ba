/* Test plugin: its entry returns NULL. */
#include "moelat/expert_abi.h"

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    (void)host;
    return 0;
}
