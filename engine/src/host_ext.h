/* Engine extensions that plugins reach through
 * moelat_host_services.get_extension (expert_abi.h). */
#ifndef MOELAT_HOST_EXT_H
#define MOELAT_HOST_EXT_H

#include "moelat/expert_abi.h"

/* The extension named id, or NULL for an id the engine does not know. */
const void *ml_host_extension(const char *id);

/* The tuning string experts receive (moelat_cl_setup.tuning): for now the
 * environment variable MOELAT_TUNE ("key=value,..."), else "". A stand-in
 * until moelat_config carries the lattice's tuning string. */
const char *ml_expert_tuning(void);

#endif
