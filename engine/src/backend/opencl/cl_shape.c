#include"backend/opencl/cl_shape.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

/* Cells per work-item for rows of row_cells cells: the fewest lane-slots
 * weighted by their cost. A 16-wide work-item cost 0.64 of two 8-wide ones
 * on PoCL with AVX-512 (functional kernel at debug 15^3, 15.7 -> 10.1
 * CPU ms per step; tools/bench/NOTES.md item 48), but a row of 8 cells leaves
 * half of its lanes idle. */
static int cells_per_item(const mlcl_device_info *dev, int row_cells) {
    cl_uint native = 0;
    cl_int err = clGetDeviceInfo(dev->device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof native, &native, NULL);
    if (err != CL_SUCCESS) {
        ML_WARN("batch", "querying the native float vector width: %s; 8 cells per work-item", mlcl_error_name(err));
        return 8;
    }
    if (native < 16 || row_cells < 1)
        return 8;
    double cost8 = (double)((row_cells + 7) / 8 * 8), cost16 = 0.64 * (double)((row_cells + 15) / 16 * 16);
    return cost16 < cost8 ? 16 : 8;
}

void ml_cl_shape_choose(const mlcl_device_info *dev, int row_cells, const ml_tuning *t, ml_cl_shape *sh) {
    const char *cl_options = t->cl_options;
    int cpu = t->cl_shape >= 0 ? t->cl_shape : strcmp(dev->type, "CPU") == 0;
    sh->cpu = cpu;
    sh->shared_cores = strcmp(dev->type, "CPU") == 0;
    sh->option[0] = '\0';
    const char *v = cl_options ? strstr(cl_options, "MLC_V=") : NULL;
    if (v) {
        /* the kernels' own rule: 4 and 16 as given, anything else 8 */
        int n = atoi(v + 6);
        sh->cells_per_item = n == 4 || n == 16 ? n : 8;
    } else {
        sh->cells_per_item = cpu ? cells_per_item(dev, row_cells) : 8;
        if (cpu)
            snprintf(sh->option, sizeof sh->option, "-D MLC_V=%d", sh->cells_per_item);
    }
    sh->gate = cpu ? "ml_gate_combine_cpu" : "ml_gate_combine";
    if (cpu)
        ML_INFO("batch", "CPU-shaped step kernels, %d cells per work-item%s", sh->cells_per_item,
                t->cl_shape >= 0 ? " (tuning cl_shape)" : "");
    else
        ML_INFO("batch", "work-group step kernels%s", t->cl_shape >= 0 ? " (tuning cl_shape)" : "");
}

char *ml_cl_shape_step_source(const ml_cl_shape *sh) {
    const char *parts[3] = {mlcl_embedded_source("moelat_step.cl"), mlcl_embedded_source("moelat_cpu_math.cl"),
                            mlcl_embedded_source("moelat_step_cpu.cl")};
    return mlcl_join_sources(parts, sh->cpu ? 3 : 1);
}

int ml_cl_shape_agg_vector(const ml_cl_shape *sh, int S) {
    if (sh->cpu && S % 8 == 0)
        return 8;
    return S % 4 == 0 ? 4 : 1;
}

void ml_cl_shape_gate_size(const ml_cl_shape *sh, const ml_chunk *c, int work_group, int gate_cells,
                           size_t *global, size_t *local) {
    if (sh->cpu) {
        size_t v = (size_t)sh->cells_per_item;
        *global = ((size_t)c->extent[0] + v - 1) / v * (size_t)c->extent[1] * (size_t)c->extent[2];
        *local = 1;
    } else {
        *local = (size_t)work_group;
        *global = (size_t)((c->n_cells + gate_cells - 1) / gate_cells) * *local;
    }
}
