/* The trainer's state, shared by train.c (the loop), train_ckpt.c (its
 * checkpoints) and train_data.c (data sets). */
#ifndef MOELAT_TRAIN_INTERNAL_H
#define MOELAT_TRAIN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "moelat/grad.h"
#include "moelat/optim.h"
#include "moelat/train.h"

#define ML_DS_MAX_DIM 7

struct moelat_dataset {
    int64_t B;
    int in_ndim, tg_ndim;                  /* per sample */
    int64_t in_shape[ML_DS_MAX_DIM], tg_shape[ML_DS_MAX_DIM];
    size_t in_size, tg_size;               /* floats per sample */
    float *inputs, *targets;
    char in_name[1024], tg_name[1024];     /* files, or "inputs"/"targets" */
    uint64_t fingerprint;
};

typedef struct ml_train_history {
    moelat_train_point *v;
    size_t n, cap;
} ml_train_history;

struct moelat_trainer {
    moelat_lattice *lat;
    moelat_train_params p;
    char checkpoint_dir[4096];
    moelat_optimizer_config opt_cfg; /* in effect (cosine's total_steps) */
    moelat_optimizer *opt;
    const moelat_dataset *ds;
    int64_t n_train, n_val;
    int32_t nb;                     /* mini-batches per epoch */
    size_t N, S, n_weights, face;   /* face: values of the output face */
    float *states0;                 /* N x S initial states */
    int have_states0;               /* set by the caller (else zeros) */
    float *sT, *dstates, *g, *gsum, *w, *out;
    double *red;                    /* n_weights + 2: params.reduce's values */
    int64_t *order;
    moelat_grad *rec;               /* the current recording */
    /* Position: epoch, next mini-batch (nb: the epoch's validation is
     * pending), training samples seen. */
    int32_t epoch, batch;
    uint64_t samples;
    uint64_t extra_steps;           /* optimizer steps of moelat_trainer_batch */
    ml_train_history train, val;
    double seconds;
    uint64_t samples_timed;
    int stopped_early;
    char backward[384];
    /* Where the optimizer's moments are newest: the host's t->opt, or the
     * lattice's device optimizer (train_optim.c). */
    int moments;                    /* ml_train_moments */
    /* Where this mini-batch's gradient sum is: nowhere yet, t->gsum, or
     * the device optimizer's gradient buffer (each sample's device
     * backward added its dL/dW there: train_optim.c). */
    int sum_where;                  /* ml_train_sum */
    int64_t batch_first;            /* the mini-batch's first sample, for messages */
    char rec_path[384];             /* where the mini-batch's last backward ran */
    char optimizer[256];            /* where the last step ran and why */
    char err[2048];
};

enum ml_train_moments { ML_MOMENTS_HOST = 0, ML_MOMENTS_DEVICE = 1, ML_MOMENTS_BOTH = 2 };
enum ml_train_sum { ML_SUM_NONE = 0, ML_SUM_HOST = 1, ML_SUM_DEVICE = 2 };

/* Before sample rec's backward: 1 when its dL/dW should go into the device
 * optimizer's gradient sum (opened, and zeroed for the mini-batch's first
 * such sample), 0 when it comes to the host; *st a failure. */
int ml_train_sum_on_device(moelat_trainer *t, moelat_status *st);
/* The device's gradient sum brought into t->gsum (sum_where becomes
 * ML_SUM_HOST), before a sample summed on the host or a host step. */
moelat_status ml_train_host_sum(moelat_trainer *t);

/* One optimizer step of t->gsum on t->lat's weights, on the device or the
 * host (train_optim.c), which it logs when that changes. */
moelat_status ml_train_optimizer_step(moelat_trainer *t);
/* t->opt's moments current (read back from the device when newer there),
 * before a checkpoint saves them. */
moelat_status ml_train_host_moments(moelat_trainer *t);

/* printf into t->err; returns status. */
moelat_status ml_train_fail(moelat_trainer *t, moelat_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ml_train_history_add(ml_train_history *h, moelat_train_point p);
/* Training samples seen after epoch e's first b mini-batches. */
uint64_t ml_train_samples_at(const moelat_trainer *t, int64_t e, int64_t b);
/* The JSON name of a loss kind. */
const char *ml_train_loss_name(int32_t kind);

#endif
