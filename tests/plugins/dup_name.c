/* Test plugin: a second expert named test_good (built as test_good_dup.so, so that
 * it sorts after good.so in a directory scan). */
#include "moelat/expert_abi.h"

void tp_base(moelat_expert_descriptor *d, const char *name);

static moelat_expert_descriptor desc;

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    (void)host;
    tp_base(&desc, "test_good");
    desc.description = "duplicate of test_good";
    return &desc;
}
