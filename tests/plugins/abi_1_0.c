/* Test plugin: an ABI 1.0 descriptor (minor 0, the frozen 1.0 size) whose
 * slot that 1.4 turned into get_extension holds a non-NULL value, as a
 * careless 1.0 plugin's reserved field might: the engine must load it and
 * never call that slot. */
#include <stdint.h>

#include "moelat/expert_abi.h"

void tp_base(moelat_expert_descriptor *d, const char *name);

static moelat_expert_descriptor desc;

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    (void)host;
    tp_base(&desc, "test_abi_1_0");
    desc.abi_minor = 0;
    desc.struct_size = (uint32_t)MOELAT_EXPERT_DESCRIPTOR_SIZE_1_0;
    /* Calling this would crash the test. */
    uintptr_t junk = 0x10;
    const void *(*slot)(const char *);
    _Static_assert(sizeof slot == sizeof junk, "function pointers are pointer-sized here");
    __builtin_memcpy(&slot, &junk, sizeof slot);
    desc.get_extension = slot;
    return &desc;
}
