/* Program builds of the OpenCL backend, one path for the engine's program
 * and every expert's: the helpers prepended, the shared options first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/backend_cl.h"
#include "base/log.h"

int ml_cl_build(ml_cl_backend *b, const char *name, const char *source, const char *defines, cl_program *out,
                char *err, size_t errlen) {
    const ml_backend_view *v = b->v;
    char opts[4096];
    const char *extra = v->tuning->cl_options;
    const char *lane_mask = ml_cl_lane_mask_option(&b->ctx.info, b->work_group, extra);
    int n = snprintf(opts, sizeof opts,
                     "-cl-std=CL1.2 -D MOELAT_S=%d -D MOELAT_WG=%d -D MOELAT_LOCAL_MEM=%llu %s %s %s %s", v->S,
                     b->work_group, (unsigned long long)b->ctx.info.local_mem_bytes, defines, lane_mask,
                     b->shape.option, extra);
    if (n < 0 || (size_t)n >= sizeof opts) {
        snprintf(err, errlen, "building program '%s': compiler options exceed %zu bytes", name, sizeof opts);
        return -1;
    }
    return mlcl_build_with_helpers(&b->ctx, name, source, opts, out, err, errlen);
}

moelat_status ml_cl_build_engine(ml_cl_backend *b) {
    const ml_backend_view *v = b->v;
    /* CPU-shaped or work-group step kernels (cl_shape.h): the source and
     * the gate kernel's name follow. */
    ml_cl_shape_choose(&b->ctx.info, v->chunk_size[0] < v->X ? v->chunk_size[0] : v->X, v->tuning, &b->shape);
    char *step = ml_cl_shape_step_source(&b->shape);
    if (!step)
        return ml_view_fail(v, MOELAT_ERR_DEVICE, "kernel sources are missing from this build or out of memory");
    char defines[256];
    b->agg_vector = ml_cl_aggregate_vector(v);
    if (v->tuning->agg_vector <= 0)
        b->agg_vector = ml_cl_shape_agg_vector(&b->shape, v->S);
    b->absmask = ml_cl_absmean_bands(v);
    ML_INFO("batch", "aggregation: %d state value%s per work-item", b->agg_vector, b->agg_vector > 1 ? "s" : "");
    snprintf(defines, sizeof defines, "-D MOELAT_GH=%d -D ML_AGG_V=%d -D ML_GATE_CELLS=%d", v->gate_hidden,
             b->agg_vector, ml_cl_gate_cells_wanted(v));
    if (*ml_cl_lane_mask_option(&b->ctx.info, b->work_group, v->tuning->cl_options))
        ML_INFO("batch", "lane index masked to its range (ML_LANE_MASK, on NVIDIA)");
    int built = ml_cl_build(b, "moelat_step.cl", step, defines, &b->program, v->err, v->err_size);
    free(step);
    if (built != 0)
        return MOELAT_ERR_DEVICE;
    const char *const names[3] = {"ml_row_prefix", "ml_aggregate", b->shape.gate};
    cl_kernel *kernels[3] = {&b->k_prefix, &b->k_aggregate, &b->k_gate};
    char what[96];
    for (int i = 0; i < 3; i++) {
        cl_int e;
        *kernels[i] = clCreateKernel(b->program, names[i], &e);
        snprintf(what, sizeof what, "creating kernel %s", names[i]);
        if (ml_cl_check(b, e, what) != MOELAT_OK)
            return MOELAT_ERR_DEVICE;
    }
    /* The kernel may have lowered the cells per group to fit local memory. */
    cl_int e;
    cl_kernel probe = clCreateKernel(b->program, "ml_gate_cells_per_group", &e);
    if (ml_cl_check(b, e, "creating kernel ml_gate_cells_per_group") != MOELAT_OK)
        return MOELAT_ERR_DEVICE;
    size_t wg[3] = {0, 0, 0};
    e = clGetKernelWorkGroupInfo(probe, b->ctx.info.device, CL_KERNEL_COMPILE_WORK_GROUP_SIZE, sizeof wg, wg, NULL);
    clReleaseKernel(probe);
    if (ml_cl_check(b, e, "reading the gate's cells per work-group (ml_gate_cells_per_group)") != MOELAT_OK)
        return MOELAT_ERR_DEVICE;
    b->gate_cells = wg[0] >= 1 ? (int)wg[0] : 1;
    ML_INFO("batch", "gate: %d cell%s per work-group", b->gate_cells, b->gate_cells > 1 ? "s" : "");
    return MOELAT_OK;
}

/* Adds "<who> <what>: band <band> runs on the host" to fb. */
static void to_host(ml_fallbacks *fb, const char *who, const moelat_expert_descriptor *d, int k, const char *what) {
    char reason[256];
    snprintf(reason, sizeof reason, "%s '%s' %s: band %s runs on the host", who, d->name, what, moelat_band_name(k));
    ml_fallbacks_add(fb, reason);
}

void ml_cl_prepare_expert(ml_cl_backend *b, int k, ml_fallbacks *fb) {
    const ml_backend_view *v = b->v;
    const ml_view_expert *e = &v->expert[k];
    const moelat_expert_descriptor *d = e->desc;
    b->expert_on_device[k] = 0;
    b->desc[k] = d;
    if (!d->cl_source || !d->cl_enqueue || !d->cl_prepare) {
        to_host(fb, "expert", d, k, "has no OpenCL path");
        return;
    }
    char defines[1024];
    int pos = snprintf(defines, sizeof defines, "-D MOELAT_E=%d -D MOELAT_CNF_STEPS=%d -D MOELAT_CNF_MODE=%d",
                       v->E, e->dims->cnf_steps, e->dims->cnf_mode);
    for (int h = 0; h < MOELAT_MAX_HIDDEN && d->hidden_names[h] && pos < (int)sizeof defines - 100; h++)
        pos += snprintf(defines + pos, sizeof defines - (size_t)pos, " -D MOELAT_H_%s=%d", d->hidden_names[h],
                        e->dims->hidden[h]);
    char name[128], err[8192];
    snprintf(name, sizeof name, "expert_%s", d->name);
    if (ml_cl_build(b, name, d->cl_source, defines, &b->expert_program[k], err, sizeof err) != 0) {
        ML_ERROR("batch", "%s", err);
        to_host(fb, "program of expert", d, k, "failed to build");
        return;
    }
    moelat_cl_setup setup = {
        .struct_size = sizeof setup,
        .context = b->ctx.context,
        .device = b->ctx.info.device,
        .program = b->expert_program[k],
        .dims = e->dims,
        .params = b->params[k],
        .tensor_offsets = e->params->offsets,
        .n_tensors = e->params->n_tensors,
        .lattice = {v->X, v->Y, v->Z},
        .max_chunk_cells = b->max_chunk_cells,
        .work_group = b->work_group,
        .tuning = v->tuning_text,
    };
    if (d->cl_prepare(&setup, &b->expert_state[k]) != MOELAT_EXPERT_OK) {
        b->expert_state[k] = NULL;
        to_host(fb, "expert", d, k, "failed to prepare its device state");
        return;
    }
    b->expert_on_device[k] = 1;
}
