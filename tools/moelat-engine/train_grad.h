/* What `train` needs of the engine's reverse mode (moelat/grad.h), in one
 * place: T recorded steps from the current states, their final states,
 * then dL/dW from dL/ds_T. */
#ifndef MOELAT_TRAIN_GRAD_H
#define MOELAT_TRAIN_GRAD_H

#include <stddef.h>

#include "moelat/moelat.h"

/* Runs T steps from the lattice's states (states recorded every k; 0:
 * automatic) and writes s_T (N x S) to final. 0, or -1 with err set: a
 * band whose expert has no backward, a CNF mode without one, too little
 * memory. */
int tg_forward(moelat_lattice *lat, int T, int k, float *final, size_t count, char *err, size_t errlen);
/* dL/dW (moelat_get_weights order) of the last tg_forward from dL/ds_T. */
int tg_backward(moelat_lattice *lat, const float *dstates, size_t n_states, float *dweights, size_t n_weights,
                char *err, size_t errlen);
/* Where the last recording's backward runs (moelat_grad_path), or "". */
const char *tg_path(void);
/* Drops what tg_forward kept. */
void tg_release(void);

#endif
