#include "cl_shape.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

/* moelat_cpu_math.cl's default MLC_V (the engine builds without -DMLC_V
 * unless MOELAT_CL_OPTIONS sets it, which ml_cl_shape_choose reads). */
#define ML_CPU_CELLS 8

void ml_cl_shape_choose(const mlcl_device_info *dev, ml_cl_shape *sh) {
    const char *env = getenv("MOELAT_CL_SHAPE");
    int cpu = strcmp(dev->type, "CPU") == 0;
    if (env && strcmp(env, "gpu") == 0)
        cpu = 0;
    else if (env && strcmp(env, "cpu") == 0)
        cpu = 1;
    else if (env && *env)
        ML_WARN("batch", "MOELAT_CL_SHAPE=%s is neither gpu nor cpu: ignored", env);
    sh->cpu = cpu;
    sh->shared_cores = strcmp(dev->type, "CPU") == 0;
    sh->cells_per_item = ML_CPU_CELLS;
    const char *opts = getenv("MOELAT_CL_OPTIONS");
    const char *v = opts ? strstr(opts, "MLC_V=") : NULL;
    if (v) {
        int n = atoi(v + 6);
        if (n == 4 || n == 8 || n == 16)
            sh->cells_per_item = n;
    }
    sh->gate = cpu ? "ml_gate_combine_cpu" : "ml_gate_combine";
    ML_INFO("batch", "%s step kernels%s", cpu ? "CPU-shaped" : "work-group", env && *env ? " (MOELAT_CL_SHAPE)" : "");
}

char *ml_cl_shape_step_source(const ml_cl_shape *sh) {
    const char *parts[4] = {mlcl_embedded_source("moelat_helpers.cl"), mlcl_embedded_source("moelat_step.cl"),
                            NULL, NULL};
    int n = 2;
    if (sh->cpu) {
        parts[2] = mlcl_embedded_source("moelat_cpu_math.cl");
        parts[3] = mlcl_embedded_source("moelat_step_cpu.cl");
        n = 4;
    }
    size_t len = 1;
    for (int i = 0; i < n; i++) {
        if (!parts[i])
            return NULL;
        len += strlen(parts[i]) + 1;
    }
    char *src = malloc(len);
    if (!src)
        return NULL;
    char *at = src;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        memcpy(at, parts[i], l);
        at += l;
        *at++ = '\n';
    }
    *at = '\0';
    return src;
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
