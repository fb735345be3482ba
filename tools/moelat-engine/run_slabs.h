/* moelat-engine run over slabs: several devices in one process
 * (run_group.c) or one MPI rank per device (mpi_run.c; mpi_stub.c when
 * built without MPI). cmd_run.c parses the options and hands over. */
#ifndef MOELAT_CLI_RUN_SLABS_H
#define MOELAT_CLI_RUN_SLABS_H

#include <stddef.h>

#include "moelat/group.h"

typedef struct run_opts {
    long long steps;
    const char *weights, *save_weights, *state, *save_state, *input, *save_outputs;
    const char *devices;      /* --devices LIST|all, or NULL */
    const char *slab_weights; /* --slab-weights W0,W1,..., or NULL (balance by throughput) */
    int json, quiet;
    /* Checkpoints (run_group only): --checkpoint-dir, --resume, and
     * --checkpoint-every (0: none but the last). */
    const char *ckpt_dir, *resume;
    long long ckpt_every;
} run_opts;

/* Runs on the devices of o->devices in this process. Returns the exit code. */
int run_group(const moelat_config *cfg, const run_opts *o);
/* 1 when this process was started by mpirun (OMPI_COMM_WORLD_SIZE or
 * PMI_SIZE set), whether or not this build has MPI. */
int run_mpi_launched(void);
/* Runs this rank's slab. Returns the exit code. */
int run_mpi(const moelat_config *cfg, const run_opts *o);

/* Shared by both: */
/* Parses "1,2.5,1" into n positive weights; returns n or -1. */
int slab_parse_weights(const char *s, double *w, int max);
/* Reads --input (.npy (Y, X, 16)) into a malloc'd buffer of *n floats. */
float *slab_read_input(const moelat_config *cfg, const char *path, size_t *n);
/* Writes the output face z = Z-1 (X*Y*S floats) as (Y, X, S). */
int slab_write_outputs(const moelat_config *cfg, const float *face, const char *path);
/* Median of v[first..n) (sorts it). */
double slab_median(double *v, long long n);
/* Prints the run's result: text, or one JSON object when json. kind is
 * "devices" or "ranks"; each slab's info and report. */
void slab_print_result(int json, const moelat_config *cfg, const char *kind, int mode, long long steps,
                       double total_s, double median_ms, int32_t halo, const moelat_slab_info *info,
                       const moelat_report *rep, int n);

#endif
