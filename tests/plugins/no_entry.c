/* Test plugin: a shared object exporting something, but not the entry. */
#include "moelat/expert_abi.h"

MOELAT_EXPORT int moelat_expert_entry_misspelt(void);

MOELAT_EXPORT int moelat_expert_entry_misspelt(void) {
    return 42;
}
