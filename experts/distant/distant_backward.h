/* The distant expert's "moelat.backward.host/1" and "moelat.backward.cl/1"
 * extensions (distant_backward.c). */
#ifndef MOELAT_DISTANT_BACKWARD_H
#define MOELAT_DISTANT_BACKWARD_H

#ifndef __OPENCL_VERSION__
#include "moelat/expert_abi.h"

const moelat_backward_host *distant_backward_host(void);
const moelat_backward_cl *distant_backward_cl(void);
#endif

#endif
