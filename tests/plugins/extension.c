/* Test plugin: answers one extension on its descriptor, and checks the
 * engine's host table answers "moelat.cl.build/1" and nothing unknown
 * (failing through the 1.4 entry with a message when it does not). */
#include <string.h>

#include "moelat/expert_abi.h"

void tp_base(moelat_expert_descriptor *d, const char *name);

typedef struct test_greeting {
    uint32_t struct_size;
    const char *text;
} test_greeting;

static const test_greeting g_greeting = {sizeof g_greeting, "hello from test_extension"};

static const void *get_extension(const char *id) {
    return id && strcmp(id, "test.greeting/1") == 0 ? &g_greeting : NULL;
}

static moelat_expert_descriptor desc;

static char *message(const moelat_host_services *host, const char *text) {
    char *m = host->alloc(strlen(text) + 1);
    if (m)
        strcpy(m, text);
    return m;
}

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY2(const moelat_host_services *host,
                                                                  char **err_msg) {
    if (!host->get_extension || !host->get_extension(MOELAT_EXT_CL_BUILD)) {
        *err_msg = message(host, "the engine does not answer moelat.cl.build/1");
        return NULL;
    }
    if (host->get_extension("test.no_such_extension/1")) {
        *err_msg = message(host, "the engine answers an unknown extension id");
        return NULL;
    }
    tp_base(&desc, "test_extension");
    desc.get_extension = get_extension;
    return &desc;
}

/* For engines before 1.4: no host extensions to check. */
MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    (void)host;
    tp_base(&desc, "test_extension");
    desc.get_extension = get_extension;
    return &desc;
}
