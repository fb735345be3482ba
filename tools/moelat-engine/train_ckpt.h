/* Checkpoints of `moelat-engine train`: the lattice's weights, the
 * optimizer's moments and step counter, the position in the data (epoch,
 * next mini-batch) and the loss history, so that a resumed run ends with
 * bitwise the weights of an uninterrupted one. A directory holds
 * weights.<g>.safetensors, optimizer.<g>.safetensors and train.json (the
 * manifest naming them, written last); each file is written atomically
 * and files of older generations are removed only after the manifest is
 * in place, so an interrupted save leaves the previous checkpoint whole. */
#ifndef MOELAT_TRAIN_CKPT_H
#define MOELAT_TRAIN_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "moelat/moelat.h"
#include "moelat/optim.h"
#include "train_loop.h"

typedef struct train_ckpt_pos {
    int epoch;         /* epoch to continue in */
    int batch;         /* its next mini-batch */
    uint64_t samples;  /* training samples seen */
} train_ckpt_pos;

int train_ckpt_save(const char *dir, moelat_lattice *lat, const moelat_optimizer *opt,
                    const moelat_optimizer_config *cfg, const train_ckpt_pos *pos,
                    const train_result *r, char *err, size_t errlen);
/* Loads weights, optimizer state, position and history. The optimizer
 * must have been created with the checkpoint's settings: any that differs
 * is named. */
int train_ckpt_load(const char *dir, moelat_lattice *lat, moelat_optimizer *opt,
                    const moelat_optimizer_config *cfg, train_ckpt_pos *pos,
                    train_result *r, char *err, size_t errlen);

#endif
