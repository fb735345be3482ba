/* Test plugin: written against a newer minor than the engine's, with a
 * descriptor longer than the engine's (fields appended later): it must
 * load, and the engine must read none of the appended fields. */
#include <stdint.h>

#include "moelat/expert_abi.h"

void tp_base(moelat_expert_descriptor *d, const char *name);

static struct {
    moelat_expert_descriptor d;
    void *appended[6]; /* what a later minor might add */
} big;

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    (void)host;
    tp_base(&big.d, "test_abi_newer");
    big.d.abi_minor = MOELAT_EXPERT_ABI_MINOR + 5;
    big.d.struct_size = (uint32_t)sizeof big;
    for (int i = 0; i < 6; i++)
        big.appended[i] = (void *)(uintptr_t)(0xdead0000u + (unsigned)i);
    return &big.d;
}
