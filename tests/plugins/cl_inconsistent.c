/* Test plugin: cl_source and cl_prepare set, but no cl_enqueue. */
#include "moelat/expert_abi.h"

void tp_base(moelat_expert_descriptor *d, const char *name);

static moelat_expert_descriptor desc;

static int prepare(const moelat_cl_setup *setup, void **state) {
    (void)setup;
    *state = 0;
    return MOELAT_EXPERT_OK;
}

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    (void)host;
    tp_base(&desc, "test_cl_inconsistent");
    desc.cl_source = "__kernel void k(void) {}\n";
    desc.cl_prepare = prepare;
    return &desc;
}
