/* Which shape of the engine's step kernels a device runs: the work-group
 * kernels (GPU-shaped, moelat_step.cl) or, on CPU devices, the gate of
 * moelat_step_cpu.cl (several cells per work-item, one per vector lane)
 * and a wider aggregation vector. The experts choose their own kernels
 * the same way (experts/common/cpu_shape.c), from the same tuning key
 * cl_shape=gpu|cpu (moelat_config.tuning; the CLI maps MOELAT_CL_SHAPE
 * to it). */
#ifndef MOELAT_CL_SHAPE_H
#define MOELAT_CL_SHAPE_H

#include <stddef.h>

#include "backend/opencl/cl_runtime.h"
#include "core/chunks.h"
#include "core/tuning.h"

typedef struct ml_cl_shape {
    int cpu;              /* 1: the CPU-shaped gate and aggregation vector */
    int cells_per_item;   /* moelat_cpu_math.cl's MLC_V */
    char option[32];      /* the build option that sets it ("" when cl_options does) */
    const char *gate;     /* the gate kernel's name */
    /* 1 when the device computes on the host's cores (CL_DEVICE_TYPE_CPU,
     * whatever the shape): the runtime's threads and the engine's host
     * pool then take turns instead of running at once, which on the same
     * cores would only slow both (batch.c waits for the device before
     * running host chunks). */
    int shared_cores;
} ml_cl_shape;

/* By device type (CL_DEVICE_TYPE_CPU: CPU-shaped), unless the tuning key
 * cl_shape (t->cl_shape) says gpu or cpu; logs the choice. CPU-shaped,
 * the cells per work-item follow the chunk rows (row_cells cells long; a
 * work-item holds cells of one row): 16 where the device's native float vector is 16 wide and
 * that wastes no more lanes than it saves instructions, else 8 (see
 * cl_shape.c). -DMLC_V=n in t->cl_options (the compiler options every
 * program gets) decides instead. */
void ml_cl_shape_choose(const mlcl_device_info *dev, int row_cells, const ml_tuning *t, ml_cl_shape *sh);

/* The engine's program source after the helpers: moelat_step.cl and,
 * CPU-shaped, moelat_cpu_math.cl and moelat_step_cpu.cl, joined
 * (malloc'd), or NULL when a part is missing or out of memory. */
char *ml_cl_shape_step_source(const ml_cl_shape *sh);

/* ml_aggregate's state values per work-item unless tuned: 4 when S allows
 * on GPUs; on CPUs 8 when S allows (one AVX vector per endpoint read,
 * tools/bench/NOTES.md), else 4 or 1. */
int ml_cl_shape_agg_vector(const ml_cl_shape *sh, int S);

/* The gate's launch for chunk c: CPU-shaped, mlc_items(extent) work-items
 * of one per group; else one group of work_group lanes per gate_cells cells. */
void ml_cl_shape_gate_size(const ml_cl_shape *sh, const ml_chunk *c, int work_group, int gate_cells,
                           size_t *global, size_t *local);

#endif
