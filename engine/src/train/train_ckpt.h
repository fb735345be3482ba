/* The trainer's checkpoints (train_ckpt.c): moelat_trainer_save and
 * moelat_trainer_resume, and the check fit makes of its directory. */
#ifndef MOELAT_TRAIN_CKPT_H
#define MOELAT_TRAIN_CKPT_H

#include "train/train_internal.h"

/* dir is, or can be created as, a directory a checkpoint can be saved in
 * (its manifest, if any, a regular writable file): checked before any
 * work. */
moelat_status ml_train_check_dir(moelat_trainer *t, const char *dir);

#endif
