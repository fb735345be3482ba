/* Where the current states, the external input and the weights live: on
 * the host, on the device, or both (the same values in each). The only
 * owner of that knowledge: code that reads or writes one of them on one
 * side asks here first, and the copy happens here, through the backend. */
#ifndef MOELAT_RESIDENCY_H
#define MOELAT_RESIDENCY_H

#include "moelat/moelat.h"

typedef enum ml_where {
    ML_ON_HOST = 1,   /* the device's copy is older, or there is no device */
    ML_ON_DEVICE = 2, /* the host's copy is older */
    ML_ON_BOTH = 3,
} ml_where;

typedef struct ml_residency {
    ml_where states, input, weights;
} ml_residency;

/* A lattice without a device: everything on the host. */
void ml_residency_init(ml_residency *r);

/* The host's copy of the states current (read back when only the device
 * holds them). */
moelat_status ml_res_host_states(moelat_lattice *lat);
/* The host wrote the states, input or weights: the device's copy is old.
 * Weights are uploaded at once (a device error surfaces at the load). */
void ml_res_host_wrote_states(moelat_lattice *lat);
void ml_res_host_wrote_input(moelat_lattice *lat);
moelat_status ml_res_host_wrote_weights(moelat_lattice *lat);
/* The host's copy of the weights current (read back when only the device
 * holds them: after the device optimizer). */
moelat_status ml_res_host_weights(moelat_lattice *lat);
/* Before anyone writes the weights (host or device): a gradient recording
 * that took the lattice's weights lazily (only the device held them)
 * copies them now. MOELAT_OK, or the failure with lat->err set. */
moelat_status ml_res_weights_will_change(moelat_lattice *lat);
/* The device optimizer wrote the weights: only the device holds them. */
void ml_res_device_wrote_weights(moelat_lattice *lat);
/* The device's copy of the weights current (uploaded when only the host
 * has them). */
moelat_status ml_res_device_weights(moelat_lattice *lat);
/* 1 when the device's copy of the weights is current / the only current one. */
int ml_res_weights_on_device(const moelat_lattice *lat);
int ml_res_weights_on_device_only(const moelat_lattice *lat);
/* Before a device step: every input of it current on the device. */
moelat_status ml_res_device_inputs(moelat_lattice *lat);
/* A device step made new states that only the device holds. */
void ml_res_device_wrote_states(moelat_lattice *lat);
/* A device was just opened or closed: it holds nothing yet / any more. */
void ml_res_device_opened(moelat_lattice *lat);
void ml_res_device_closed(moelat_lattice *lat);
/* 1 when the newest states live only on the device. */
int ml_res_states_on_device_only(const moelat_lattice *lat);

#endif
