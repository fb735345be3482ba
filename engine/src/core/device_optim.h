/* The lattice's device optimizer, as the trainer reaches it: the
 * backend's optimizer ops (backend.h's ml_optim_ops) with the weights'
 * residency kept here. */
#ifndef MOELAT_DEVICE_OPTIM_H
#define MOELAT_DEVICE_OPTIM_H

#include "moelat/moelat.h"
#include "train/optim_step.h"

/* 1 when the lattice's device can run the optimizer. */
int ml_dev_optim_available(const moelat_lattice *lat);
/* Opens it for owner (see ml_optim_ops.open). */
moelat_status ml_dev_optim_open(moelat_lattice *lat, const void *owner, int kind, int *fresh);
/* The moments to (write = 0) or from (write = 1) the host. */
moelat_status ml_dev_optim_state(moelat_lattice *lat, float *m, float *v, int write);
/* The mini-batch's gradient sum uploaded (grad NULL: already summed on
 * the device) and its global norm. */
moelat_status ml_dev_optim_norm(moelat_lattice *lat, const float *grad, double *norm);
/* The device's gradient sum zeroed (dst NULL) or read back into dst. */
moelat_status ml_dev_optim_grad_sum(moelat_lattice *lat, float *dst);
/* One update on the device: the weights uploaded first when the host's
 * are newer, and only on the device after it (read back on demand). */
moelat_status ml_dev_optim_update(moelat_lattice *lat, const ml_optim_scalars *s, float clip);

#endif
