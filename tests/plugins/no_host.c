/* Test plugin: no host_cell, which is required. */
#include "moelat/expert_abi.h"

void tp_base(moelat_expert_descriptor *d, const char *name);

static moelat_expert_descriptor desc;

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    (void)host;
    tp_base(&desc, "test_no_host");
    desc.host_cell = 0;
    return &desc;
}
