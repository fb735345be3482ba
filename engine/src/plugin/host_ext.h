/* Engine extensions that plugins reach through
 * moelat_host_services.get_extension (expert_abi.h). */
#ifndef MOELAT_HOST_EXT_H
#define MOELAT_HOST_EXT_H

#include "moelat/expert_abi.h"

/* The extension named id, or NULL for an id the engine does not know. */
const void *ml_host_extension(const char *id);

#endif
