/* The choice between the work-group (GPU-shaped) kernels and the
 * CPU-shaped ones of the built-in experts, and the launch of the latter. */
#ifndef MOELAT_CPU_SHAPE_H
#define MOELAT_CPU_SHAPE_H

#include "expert_common.h"

/* 1 when this expert should run its CPU-shaped kernels on setup's device:
 * a CL_DEVICE_TYPE_CPU device and euler integration (the CNF's CPU form
 * has no lipschitz mode), unless the tuning key cl_shape (setup->tuning,
 * read through ec_tuning_value) says gpu (work-group kernels everywhere)
 * or cpu (CPU-shaped on any device, still euler only). Logs the choice. 0 also when the device cannot be
 * queried (the work-group kernels are the default). */
int ec_cpu_shaped(const moelat_cl_setup *setup);

/* Cells per work-item the program was built for (moelat_cpu_math.cl's MLC_V,
 * read from its mlc_cells_per_item kernel); 0 after logging. */
size_t ec_cpu_cells_per_item(const moelat_cl_setup *setup);

/* Enqueues a CPU-shaped kernel over n_cells cells, one work-item per
 * work-group (a CPU runtime runs the groups on its threads; nothing is
 * shared): with extent (a chunk box), cells_per_item cells of one chunk
 * row per work-item (moelat_cpu_math.cl's mlc_items: ceil(extent[0] /
 * cells_per_item) extent[1] extent[2]); with extent NULL, consecutive
 * cells (ceil(n_cells / cells_per_item)). n_cells 0 enqueues a marker
 * after the wait list. */
int ec_cpu_enqueue_cells(cl_command_queue q, cl_kernel k, const char *kname, const int32_t *extent, size_t n_cells,
                         size_t cells_per_item, cl_uint num_wait, const cl_event *wait, cl_event *ev);

#endif
