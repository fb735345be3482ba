/* train's use of the engine's reverse mode (train_grad.h). One recording
 * is alive at a time: train runs its samples one after another. */
#include "train_grad.h"

#include <stdio.h>

#include "moelat/grad.h"

static moelat_grad *current;

void tg_release(void) {
    moelat_grad_destroy(current);
    current = NULL;
}

int tg_forward(moelat_lattice *lat, int T, int k, float *final, size_t count, char *err, size_t errlen) {
    tg_release();
    moelat_grad_options opt;
    moelat_grad_options_default(&opt);
    opt.checkpoint_every = k;
    if (moelat_grad_record(lat, T, &opt, &current) != MOELAT_OK ||
        moelat_grad_final_states(current, final, count) != MOELAT_OK) {
        snprintf(err, errlen, "%s", moelat_last_error(lat));
        tg_release();
        return -1;
    }
    return 0;
}

int tg_backward(moelat_lattice *lat, const float *dstates, size_t n_states, float *dweights, size_t n_weights,
                char *err, size_t errlen) {
    if (!current) {
        snprintf(err, errlen, "no recorded steps to reverse");
        return -1;
    }
    if (moelat_grad_backward(current, dstates, n_states) != MOELAT_OK ||
        moelat_grad_weights(current, dweights, n_weights) != MOELAT_OK) {
        snprintf(err, errlen, "%s", moelat_last_error(lat));
        return -1;
    }
    return 0;
}

const char *tg_path(void) { return current ? moelat_grad_path(current) : ""; }
