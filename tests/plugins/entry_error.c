/* Test plugin: its 1.4 entry fails with a message (allocated with the
 * host's alloc), which the loader must print with the file name; its 1.0
 * entry, which a 1.4 engine must not call, would load fine. */
#include <string.h>

#include "moelat/expert_abi.h"

void tp_base(moelat_expert_descriptor *d, const char *name);

static moelat_expert_descriptor desc;

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY2(const moelat_host_services *host,
                                                                  char **err_msg) {
    static const char text[] = "licence file /nonexistent/licence.txt not found\n(second line)";
    *err_msg = host->alloc(sizeof text);
    if (*err_msg)
        memcpy(*err_msg, text, sizeof text);
    return NULL;
}

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    (void)host;
    tp_base(&desc, "test_entry_error");
    return &desc;
}
