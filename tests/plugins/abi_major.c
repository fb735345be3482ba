/* Test plugin: claims expert ABI major version 2. */
#include "moelat/expert_abi.h"

void tp_base(moelat_expert_descriptor *d, const char *name);

static moelat_expert_descriptor desc;

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    (void)host;
    tp_base(&desc, "test_abi_major");
    desc.abi_major = 2;
    return &desc;
}
