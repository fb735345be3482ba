/* The training loop of `moelat-engine train`: mini-batches of samples,
 * each run T steps from the initial states with its input face and scored
 * by the mean squared error of the output face; gradients summed over the
 * batch, one optimizer step per batch, a validation pass per epoch,
 * checkpoints that resume bit-exactly. */
#ifndef MOELAT_TRAIN_LOOP_H
#define MOELAT_TRAIN_LOOP_H

#include <stdint.h>

#include "moelat/moelat.h"
#include "moelat/optim.h"
#include "train_data.h"

typedef struct train_options {
    int steps;               /* T per sample */
    int checkpoint_every_k;  /* gradient checkpointing: states recorded every k steps (0 = automatic) */
    int epochs;
    int batch_size;
    double val_fraction;     /* the last ceil(B * f) samples validate */
    uint64_t shuffle_seed;
    moelat_optimizer_config opt;
    const float *init_states; /* N x S, or NULL for zeros */
    const char *checkpoint_dir; /* NULL: none */
    int checkpoint_every;     /* mini-batches between checkpoints; 0: at each epoch's end */
    const char *resume_dir;   /* NULL: a fresh run */
    int stop_after;           /* > 0: stop after this many optimizer steps (tests interrupt a run so) */
    int progress;             /* a progress bar on stderr */
} train_options;

/* One point of a loss curve. */
typedef struct train_point {
    int32_t epoch, batch;  /* validation points: batch = -1 */
    uint64_t samples;      /* training samples seen when measured */
    double loss;
    double lr;
} train_point;

typedef struct train_result {
    train_point *train, *val; /* grown by the loop; free with train_result_free */
    int n_train, n_val, cap_train, cap_val;
    int64_t train_samples, val_samples;
    uint64_t optimizer_steps;
    double seconds;           /* this run's wall time (not counting resumed work) */
    double samples_per_s;
    int stopped_early;        /* stop_after reached */
    char failure[1024];       /* set when the loop stopped on an error */
    char backward[384];       /* where the gradients ran (moelat_grad_path) */
} train_result;

void train_result_free(train_result *r);

/* Trains lat's weights on d. Returns 0, or 1 with r->failure set (a NaN
 * loss names the epoch, batch, sample and step, and leaves the last good
 * checkpoint in place). */
int train_run(moelat_lattice *lat, const train_data *d, const train_options *o, train_result *r);

#endif
