/*
 * Training a lattice's weights: data sets, the trainer, its checkpoints.
 *
 * A data set holds B samples. Sample b is an input face, the external
 * input of the z = 0 plane ((Y, X, 16) floats), and a target whose shape
 * the loss decides. The trainer runs each sample T steps from the initial
 * states (zeros, or moelat_trainer_set_initial_states) with the sample's
 * input face, through moelat/grad.h's recording forward; the loss of s_T
 * gives dL/ds_T, the reverse sweep dL/dW. Gradients are summed over a
 * mini-batch in sample order and one optimizer step (moelat/optim.h)
 * follows each mini-batch. The last ceil(B * val_fraction) samples (at
 * most B - 1) validate: their mean loss, with the lattice's plain forward
 * steps, before the first epoch and after each.
 *
 * Order: epoch e visits the training samples in a Fisher-Yates shuffle
 * drawn from (seed, e), so a resumed run sees the same mini-batches; a
 * trainer resumed from a checkpoint of a run ends with bitwise the weights
 * of the uninterrupted run (same device and thread count).
 *
 * Checkpoints are run checkpoints (moelat.h): a directory whose
 * manifest.json names every file with its checksum and carries its own,
 * each file written atomically and the manifest last. A training
 * checkpoint stores the weights, the initial states (as the states, step
 * 0, no input: moelat_resume_checkpoint on it gives the trained lattice at
 * the start of a sample), the optimizer's moments (one more file) and,
 * under the manifest's key "train", the optimizer step, the position in
 * the data, the loss history, every option that changes the result and a
 * fingerprint of the data set. Resuming refuses a checkpoint whose files
 * or manifest were edited, whose position or history is out of range or
 * inconsistent, or whose data set, options, lattice config or initial
 * states differ from the trainer's, naming each difference.
 *
 * Errors (moelat.h's convention): functions return a moelat_status; the
 * message is in moelat_trainer_last_error, or for the calls that create
 * an object (moelat_trainer_create, moelat_dataset_load, ...) in the
 * caller's err buffer. moelat_train_params and moelat_train_summary are
 * versioned structs (struct_size first; moelat_train_params_default and
 * MOELAT_TRAIN_SUMMARY_INIT set it).
 */
#ifndef MOELAT_TRAIN_H
#define MOELAT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "moelat/api.h"
#include "moelat/moelat.h"
#include "moelat/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Data sets ------------------------------------------------------ */

typedef struct moelat_dataset moelat_dataset;

/* Reads two float32 .npy files (opened without blocking; regular files
 * only) whose first dimension is the sample count B >= 1, the same in
 * both: inputs (B, Y, X, 16) and targets (B, ...). A non-finite value is
 * refused naming the file, the sample and its index. */
MOELAT_API moelat_status moelat_dataset_load(const char *inputs_npy, const char *targets_npy, moelat_dataset **out,
                                             char *err, size_t errlen);
/* A data set from memory (copied): samples x prod(input_shape) inputs,
 * samples x prod(target_shape) targets, each shape of ndim <= 7 sizes
 * per sample. */
MOELAT_API moelat_status moelat_dataset_create(int64_t samples, int input_ndim, const int64_t *input_shape,
                                               const float *inputs, int target_ndim, const int64_t *target_shape,
                                               const float *targets, moelat_dataset **out, char *err, size_t errlen);
MOELAT_API void moelat_dataset_destroy(moelat_dataset *ds);
MOELAT_API int64_t moelat_dataset_samples(const moelat_dataset *ds);
/* One sample's shape (which 0: inputs, 1: targets) into shape[0..ndim);
 * returns ndim (0 for a bad argument). */
MOELAT_API int moelat_dataset_shape(const moelat_dataset *ds, int which, int64_t shape[7]);
MOELAT_API const float *moelat_dataset_input(const moelat_dataset *ds, int64_t sample);
MOELAT_API const float *moelat_dataset_target(const moelat_dataset *ds, int64_t sample);
/* XXH64 over the sample count, both shapes and every value: what a
 * training checkpoint records of its data. */
MOELAT_API uint64_t moelat_dataset_fingerprint(const moelat_dataset *ds);

/* ---- Losses --------------------------------------------------------- */

typedef enum moelat_loss_kind {
    /* Mean over the output face (z = Z-1: Y x X x S values) of
     * (s_T - target)^2, squared errors in float32 summed in double;
     * targets (B, Y, X, S). */
    MOELAT_LOSS_OUTPUT_FACE_MSE = 0,
    /* The same over every cell: targets (B, Z, Y, X, S). */
    MOELAT_LOSS_ALL_CELLS_MSE = 1,
    /* The caller's loss_fn; targets of any shape (B, ...). */
    MOELAT_LOSS_CALLBACK = 2
} moelat_loss_kind;

/* s_T holds count = N x S floats (cell-major, as moelat_get_states);
 * target is the sample's target. Writes *loss and, when dL_ds_T is not
 * NULL, dL/ds_T (count floats); dL_ds_T is NULL on validation, where only
 * the loss is wanted. A status other than MOELAT_OK stops the work. */
typedef moelat_status (*moelat_loss_fn)(void *user, const float *s_T, size_t count, const float *target,
                                        float *dL_ds_T, double *loss);

/* ---- Progress ------------------------------------------------------- */

typedef enum moelat_train_event_kind {
    MOELAT_TRAIN_EVENT_BATCH = 0,      /* a mini-batch of fit/epoch is done */
    MOELAT_TRAIN_EVENT_VALIDATION = 1, /* a validation pass is done */
    MOELAT_TRAIN_EVENT_BACKWARD = 2    /* the first recording: where the gradients run */
} moelat_train_event_kind;

typedef struct moelat_train_event {
    int32_t kind;          /* moelat_train_event_kind */
    int32_t epoch;         /* batch: its epoch (0-based); validation: epochs done */
    int32_t batch;         /* batch: mini-batches done in the epoch (1-based) */
    int32_t batches;       /* mini-batches per epoch */
    uint64_t samples;      /* training samples seen */
    uint64_t optimizer_step;
    double loss;           /* the mini-batch's mean loss, or the validation loss */
    double lr;             /* the batch's learning rate, or the next one */
    double seconds;        /* since this fit/epoch call began */
    uint64_t samples_here; /* training samples of this fit/epoch call */
    const char *backward;  /* MOELAT_TRAIN_EVENT_BACKWARD: moelat_grad_path */
} moelat_train_event;

typedef void (*moelat_train_progress_fn)(void *user, const moelat_train_event *ev);

/* ---- Parameters ----------------------------------------------------- */

typedef struct moelat_train_params {
    uint32_t struct_size;           /* sizeof(moelat_train_params) */
    int32_t steps;                  /* T: lattice steps per sample, 1..100000 (default 2) */
    int32_t grad_checkpoint_every;  /* states recorded every k steps; 0 = automatic (moelat_grad_options) */
    uint64_t memory_budget;         /* bytes a recording may take; 0 = half the physical memory */
    int32_t loss;                   /* moelat_loss_kind (default MOELAT_LOSS_OUTPUT_FACE_MSE) */
    moelat_loss_fn loss_fn;         /* MOELAT_LOSS_CALLBACK's */
    void *loss_user;
    moelat_optimizer_config optimizer; /* default: moelat_optimizer_defaults(AdamW) */
    int32_t cosine;                 /* 1: optimizer.total_steps = epochs x mini-batches per epoch
                                       (cosine decay over the whole fit), set with the data */
    int32_t batch_size;             /* samples per optimizer step, 1..1000000 (default 8) */
    int32_t epochs;                 /* passes of fit, 1..1000000 (default 10) */
    double val_fraction;            /* [0, 0.9] (default 0.2) */
    uint64_t seed;                  /* the shuffle's (default 0) */
    const char *checkpoint_dir;     /* fit and epoch save there (copied; NULL: never) ... */
    int32_t checkpoint_every;       /* ... every this many optimizer steps, 0: at each epoch's end only */
    uint64_t stop_after;            /* > 0: fit stops once this many optimizer steps are done
                                       (with a checkpoint when checkpoint_dir is set) */
    moelat_train_progress_fn progress; /* may be NULL */
    void *progress_user;
    /* Data parallelism over ranks (MPI processes or any others, each with
     * its own lattice, the same weights, data and parameters): every
     * mini-batch is cut into `ranks` contiguous parts, this trainer runs
     * part `rank` of it, and reduce sums `count` doubles over all ranks in
     * place (the gradients, the loss and a failure flag), giving every rank
     * the same result; each rank then takes the same optimizer step.
     * Summing in a fixed order (say, an all-gather and a sum in rank
     * order) makes two runs on the same ranks identical to the bit.
     * Validation runs on every rank whole. ranks 0 or 1: one rank. */
    int32_t rank, ranks;
    moelat_status (*reduce)(void *user, double *values, size_t count);
    void *reduce_user;
    /* The optimizer runs on the device (its weights and moments stay
     * there) when the mini-batch's backward ran on the device and there is
     * one rank; on the host otherwise. 1 (or the environment's
     * MOELAT_HOST_OPTIMIZER=1) keeps it on the host. Both give the same
     * bits (kernels_cl/moelat_optim.cl). Layout 2. */
    int32_t host_optimizer;
} moelat_train_params;

/* Layout 1, the smallest struct_size accepted (before host_optimizer). */
#define MOELAT_TRAIN_PARAMS_SIZE_V1 offsetof(moelat_train_params, host_optimizer)
#define MOELAT_TRAIN_PARAMS_SIZE_V2 sizeof(moelat_train_params)

/* The defaults above, struct_size set. */
MOELAT_API void moelat_train_params_default(moelat_train_params *p);

/* A point of the loss history. */
typedef struct moelat_train_point {
    int32_t epoch;    /* training: the batch's epoch (0-based); validation: epochs done */
    int32_t batch;    /* training: the mini-batch (0-based); validation: -1 */
    uint64_t samples; /* training samples seen when measured */
    double loss;      /* NaN for validation without validation samples */
    double lr;        /* the step's learning rate; validation: the next step's */
} moelat_train_point;

typedef struct moelat_train_summary {
    uint32_t struct_size;           /* set by the caller: sizeof(moelat_train_summary) */
    int64_t samples, train_samples, val_samples;
    int32_t batches;                /* mini-batches per epoch */
    int32_t epoch, batch;           /* the position: next mini-batch */
    uint64_t samples_seen;          /* training samples seen, resumed ones included */
    uint64_t optimizer_steps;
    double seconds;                 /* in fit/epoch calls of this trainer */
    double samples_per_s;           /* over those calls */
    int32_t stopped_early;          /* the last fit stopped at stop_after */
    double initial_val_loss, final_val_loss, best_val_loss; /* NaN when none */
    char backward[384];             /* moelat_grad_path of the first recording, "" before */
    char optimizer[256];            /* where the last optimizer step ran and why: "device (...)" or
                                       "host (...)"; "" before. Layout 2. */
} moelat_train_summary;

#define MOELAT_TRAIN_SUMMARY_SIZE_V1 offsetof(moelat_train_summary, optimizer)
#define MOELAT_TRAIN_SUMMARY_SIZE_V2 sizeof(moelat_train_summary)
#define MOELAT_TRAIN_SUMMARY_INIT {.struct_size = (uint32_t)sizeof(moelat_train_summary)}

/* ---- The trainer ---------------------------------------------------- */

typedef struct moelat_trainer moelat_trainer;

/* A trainer of lat's weights (lat must outlive it). Every parameter is
 * range-checked; on failure *out is NULL and err names the parameter and
 * its range. */
MOELAT_API moelat_status moelat_trainer_create(moelat_lattice *lat, const moelat_train_params *params,
                                               moelat_trainer **out, char *err, size_t errlen);
MOELAT_API void moelat_trainer_destroy(moelat_trainer *t);
MOELAT_API const char *moelat_trainer_last_error(const moelat_trainer *t);

/* The data (borrowed: keep ds alive while the trainer uses it). Its
 * shapes are checked against the lattice and the loss, naming the file
 * ("targets.npy: shape (8, 6, 6, 23), the lattice needs (B, 6, 6, 24)").
 * With params.cosine, sets the schedule's length (before the first
 * optimizer step only). */
MOELAT_API moelat_status moelat_trainer_set_data(moelat_trainer *t, const moelat_dataset *ds);
/* Every sample's initial states (N x S, copied), NULL for zeros. */
MOELAT_API moelat_status moelat_trainer_set_initial_states(moelat_trainer *t, const float *states, size_t count);

/* Trains from the current position to params.epochs (or stop_after): a
 * validation pass first when none was made, then each epoch (the rest of
 * the current one first). A non-finite loss or gradient stops it naming
 * the optimizer step, epoch, batch and sample; the weights are those of
 * the last completed step, the last good checkpoint is kept. */
MOELAT_API moelat_status moelat_trainer_fit(moelat_trainer *t);
/* The rest of the current epoch (whatever params.epochs), its validation
 * pass and its checkpoint. */
MOELAT_API moelat_status moelat_trainer_epoch(moelat_trainer *t);
/* One optimizer step over the given samples (gradients summed in the
 * given order); *mean_loss (may be NULL) their mean loss. Neither the
 * position nor the history moves. */
MOELAT_API moelat_status moelat_trainer_batch(moelat_trainer *t, const int64_t *samples, size_t n,
                                              double *mean_loss);
/* The mean loss over the given samples with the lattice's plain forward
 * steps; samples NULL: the validation samples (NaN when there are none). */
MOELAT_API moelat_status moelat_trainer_evaluate(moelat_trainer *t, const int64_t *samples, size_t n,
                                                 double *mean_loss);

/* Saves a training checkpoint of the current state into dir (created). */
MOELAT_API moelat_status moelat_trainer_save(moelat_trainer *t, const char *dir);
/* Continues from dir's checkpoint: weights, optimizer moments and step,
 * position, history. Needs the data set first. On any refusal the
 * trainer and the lattice are unchanged. */
MOELAT_API moelat_status moelat_trainer_resume(moelat_trainer *t, const char *dir);

/* The history: training points (validation 0) or validation points;
 * *points stays valid until the trainer next trains or resumes. */
MOELAT_API size_t moelat_trainer_history(const moelat_trainer *t, int validation, const moelat_train_point **points);
/* Fills the fields within out->struct_size (MOELAT_TRAIN_SUMMARY_INIT). */
MOELAT_API moelat_status moelat_trainer_summary(const moelat_trainer *t, moelat_train_summary *out);
/* The optimizer settings in effect (with cosine's total_steps once the
 * data are set). */
MOELAT_API moelat_status moelat_trainer_optimizer_config(const moelat_trainer *t, moelat_optimizer_config *out);

#ifdef __cplusplus
}
#endif

#endif /* MOELAT_TRAIN_H */
