/* Data-parallel `train` under mpirun: every rank trains its own lattice on
 * its part of each mini-batch, and the gradients are summed over the ranks
 * in rank order (an all-gather), so every rank takes the same optimizer
 * step and two runs on the same ranks give the same bits. Rank 0 alone
 * writes files and prints. mpi_run.c has the MPI version, mpi_stub.c the
 * one-rank one. */
#ifndef MOELAT_TRAIN_RANKS_H
#define MOELAT_TRAIN_RANKS_H

#include "moelat/train.h"

/* Joins the ranks when started by mpirun and sets p's rank, ranks and
 * reduce; returns this rank (0 on one), or -1 after printing why. */
int train_ranks_begin(moelat_train_params *p);
/* Leaves them: rc 0 waits for every rank; a failure (rc != 0) on several
 * ranks aborts them all, so that none waits for one that stopped. */
void train_ranks_end(int rc);

#endif
