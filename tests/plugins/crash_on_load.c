/* Test plugin: the entry function dereferences NULL. Only the isolated
 * check may load it, so it lives in a directory no scan visits. */
#include <stddef.h>

#include "moelat/expert_abi.h"

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    /* Both volatile: the compiler must neither see the NULL (and emit a trap
     * instead) nor drop the store. */
    volatile int *volatile p = NULL;
    *p = host ? 1 : 2;
    return NULL;
}
