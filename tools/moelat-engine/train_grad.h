/* What `train` needs of the engine's reverse mode (moelat/grad.h), in one
 * place: record T steps from the current states, then dL/dW from dL/ds_T. */
#ifndef MOELAT_TRAIN_GRAD_H
#define MOELAT_TRAIN_GRAD_H

#include <stddef.h>

#include "moelat/moelat.h"

/* 0 when lat can compute gradients; -1 with the reason (a band whose
 * expert has no backward, a CNF mode without one). */
int tg_supported(moelat_lattice *lat, char *err, size_t errlen);
/* Runs T steps from the current states, recording every k (0: automatic). */
int tg_record(moelat_lattice *lat, int T, int k, char *err, size_t errlen);
/* dL/dW (n_weights floats, moelat_get_weights order) from dL/ds_T. */
int tg_backward(moelat_lattice *lat, const float *dstates, size_t n_states, float *dweights, size_t n_weights,
                char *err, size_t errlen);

#endif
