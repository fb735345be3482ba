/* train's use of the engine's reverse mode (train_grad.h). */
#include "train_grad.h"

#include <stdio.h>

int tg_supported(moelat_lattice *lat, char *err, size_t errlen) {
    (void)lat;
    snprintf(err, errlen, "gradients are not available in this build");
    return -1;
}

int tg_record(moelat_lattice *lat, int T, int k, char *err, size_t errlen) {
    (void)lat, (void)T, (void)k;
    snprintf(err, errlen, "gradients are not available in this build");
    return -1;
}

int tg_backward(moelat_lattice *lat, const float *dstates, size_t n_states, float *dweights, size_t n_weights,
                char *err, size_t errlen) {
    (void)lat, (void)dstates, (void)n_states, (void)dweights, (void)n_weights;
    snprintf(err, errlen, "gradients are not available in this build");
    return -1;
}
