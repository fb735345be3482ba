/* The distant expert's "moelat.backward.host/1" extension. */
#ifndef MOELAT_DISTANT_BACKWARD_H
#define MOELAT_DISTANT_BACKWARD_H

#include "moelat/expert_abi.h"

const moelat_backward_host *distant_backward_host(void);

#endif
