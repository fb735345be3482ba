/* The OpenCL backward's programs and kernels (grad_cl.c runs them): per
 * band the expert's "moelat.backward.cl/1" source with the engine's
 * ml_bwd_band (or the expert's own band kernel), then the engine's gate,
 * gather and commit kernels; and how many lanes each slot gets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/opencl/grad_cl.h"
#include "base/log.h"
#include "core/embedded.h"
#include "core/gate.h"

#define BWD_LOG "grad"

/* The device backward of band k's expert, or NULL. */
const moelat_backward_cl *ml_grad_cl_backward_of(const moelat_lattice *lat, int k) {
    const moelat_expert_descriptor *d = lat->expert[k].desc;
    const size_t need = offsetof(moelat_expert_descriptor, get_extension) + sizeof d->get_extension;
    if (d->struct_size < need || d->abi_minor < 4 || !d->get_extension)
        return NULL;
    const moelat_backward_cl *x = d->get_extension(MOELAT_EXT_BACKWARD_CL);
    if (!x || x->struct_size < offsetof(moelat_backward_cl, band_kernel) || !x->source_parts || !x->backward_fn ||
        !x->scratch_floats)
        return NULL;
    return x;
}

/* Lanes per work-group of band k's own band kernel, or 0 for the engine's
 * ml_bwd_band: the expert must name one (band_kernel, band_work_group),
 * and for now the lattice must ask for work-group kernels (tuning
 * cl_shape=gpu): PoCL runs the engine's kernel faster, and the
 * functional band kernel, right under oclgrind, gave NaN on PoCL for some
 * inputs (tools/bench/NOTES.md item 57); until a GPU run checks it, the
 * default stays the engine's kernel everywhere. */
int ml_grad_cl_band_lanes(const ml_grad_cl *c, const moelat_lattice *lat, int k, const moelat_backward_cl *x) {
    const size_t need = offsetof(moelat_backward_cl, band_work_group) + sizeof x->band_work_group;
    if (x->struct_size < need || !x->band_kernel || !x->band_work_group)
        return 0;
    if (lat->tuning.cl_shape != 0)
        return 0;
    const mlcl_device_info *dev = &c->b->ctx.info;
    int max = dev->max_work_group_size > 1024 ? 1024 : (int)dev->max_work_group_size;
    int lanes = x->band_work_group(&lat->expert[k].dims, max, (uint64_t)dev->local_mem_bytes);
    return lanes > 0 && lanes <= max && (lanes & (lanes - 1)) == 0 ? lanes : 0;
}

int ml_grad_cl_projection(moelat_lattice *lat, int k, const moelat_backward_cl *x, size_t w_base, int *w_off,
                          int *ld) {
    const moelat_expert_descriptor *d = lat->expert[k].desc;
    const size_t need = offsetof(moelat_backward_cl, proj_rows) + sizeof x->proj_rows;
    if (!(x->flags & MOELAT_BACKWARD_CL_PROJECTED) || d->abi_minor < 5 || x->struct_size < need || !x->proj_rows)
        return 0;
    if (!lat->tuning.grad_proj)
        return 0;
    ml_param_block *blocks[MOELAT_BANDS + 1];
    ml_param_blocks(lat, blocks);
    const ml_param_block *b = blocks[k];
    const int t = x->proj_tensor, S = lat->S;
    const size_t P = x->proj_rows(&lat->expert[k].dims);
    size_t size = 0;
    if (t >= 0 && t < b->n_tensors)
        size = (t + 1 < b->n_tensors ? b->offsets[t + 1] : b->n_floats) - b->offsets[t];
    if (P == 0 || P > 4096 || size == 0 || size % P != 0 || x->proj_col < 0 ||
        (size_t)x->proj_col + (size_t)S > size / P) {
        ML_WARN(BWD_LOG, "expert '%s' (band %s) declares a projection its tensors do not hold (tensor %d, column "
                "%d, %zu rows); its edges compute it instead", d->name, moelat_band_name(k), t, x->proj_col, P);
        return 0;
    }
    *ld = (int)(size / P);
    *w_off = (int)(w_base + b->offsets[t] + (size_t)x->proj_col);
    return (int)P;
}

/* prelude, the NULL-terminated parts, tail: one text, or NULL. */
static char *join(const char *prelude, const char *const *parts, const char *tail) {
    size_t n = 0;
    while (parts && parts[n])
        n++;
    const char **all = malloc((n + 2) * sizeof *all);
    if (!all)
        return NULL;
    all[0] = prelude;
    for (size_t i = 0; i < n; i++)
        all[1 + i] = parts[i];
    all[n + 1] = tail;
    char *s = mlcl_join_sources(all, n + 2);
    free(all);
    return s;
}

/* Whether kernel k runs work-groups of lanes on this device. */
static int fits_lanes(const ml_grad_cl *c, cl_kernel k, int lanes) {
    size_t wg = 0;
    return clGetKernelWorkGroupInfo(k, c->b->ctx.info.device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL) ==
               CL_SUCCESS &&
           wg >= (size_t)lanes;
}

/* Builds src and creates kernel `kernel` from it: 0; 1 (with why) when it
 * cannot run work-groups of lanes (released again); -1 with why. */
static int build_kernel(ml_grad_cl *c, const char *name, const char *src, const char *defines, const char *kernel,
                        cl_program *prog, cl_kernel *k, int lanes, char *why, size_t whylen) {
    cl_int e = CL_SUCCESS;
    if (ml_cl_build(c->b, name, src, defines, prog, why, whylen) != 0)
        return -1;
    *k = clCreateKernel(*prog, kernel, &e);
    if (e != CL_SUCCESS) {
        snprintf(why, whylen, "creating kernel %s of %s: %s", kernel, name, mlcl_error_name(e));
        return -1;
    }
    if (lanes > 1 && !fits_lanes(c, *k, lanes)) {
        snprintf(why, whylen, "kernel %s runs fewer than %d lanes per work-group here", kernel, lanes);
        clReleaseKernel(*k);
        clReleaseProgram(*prog);
        *k = NULL;
        *prog = NULL;
        return 1;
    }
    return 0;
}

/* Builds the programs and kernels; 0, or -1 with why. */
int ml_grad_cl_build(ml_grad_engine *eng, ml_grad_cl *c, const moelat_backward_cl *const x[MOELAT_BANDS], char *why,
                     size_t whylen) {
    moelat_lattice *lat = eng->lat;
    const char *prelude = moelat_backward_portable_cl_parts[0];
    const char *const *gate_parts = moelat_grad_gate_cl_parts;
    const char *band_src = mlcl_embedded_source("moelat_backward_band.cl");
    const char *engine_src = mlcl_embedded_source("moelat_backward.cl");
    if (!prelude || !gate_parts || !band_src || !engine_src) {
        snprintf(why, whylen, "the backward kernel sources are missing from this build");
        return -1;
    }
    char defines[384], name[160];
    cl_int e = CL_SUCCESS;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        if (!c->on[k])
            continue;
        char *src = join(prelude, x[k]->source_parts, band_src);
        if (!src)
            return snprintf(why, whylen, "out of memory"), -1;
        ml_param_block *blocks[MOELAT_BANDS + 1];
        ml_param_blocks(lat, blocks);
        const moelat_expert_dims *d = &lat->expert[k].dims;
        char dims[160];
        int at = snprintf(dims, sizeof dims, "%d,%d", d->state_size, d->ext_size);
        for (int h = 0; h < MOELAT_MAX_HIDDEN; h++)
            at += snprintf(dims + at, sizeof dims - (size_t)at, ",%d", d->hidden[h]);
        snprintf(dims + at, sizeof dims - (size_t)at, ",%d,%d", d->cnf_steps, d->cnf_mode);
        snprintf(name, sizeof name, "backward of expert '%s' (band %s)", lat->expert[k].desc->name,
                 moelat_band_name(k));
        char common[320], proj[32] = "";
        if (c->proj_info[4 * k] > 0)
            snprintf(proj, sizeof proj, " -D ML_PROJ=%d", (int)c->proj_info[4 * k]);
        snprintf(common, sizeof common, "-D ML_BWD_FN=%s -D ML_NT=%d -D ML_DIMS=%s%s%s", x[k]->backward_fn,
                 blocks[k]->n_tensors, dims, c->mean_only >> k & 1 ? " -D ML_MEAN_ONLY" : "", proj);
        int rc = -1;
        if (c->lanes[k] > 0) {
            /* With the expert's band kernel; should that not build or
             * not run at its lanes, the engine's kernel alone. */
            snprintf(defines, sizeof defines, "%s -D ML_BWD_WG=%d", common, c->lanes[k]);
            rc = ml_cl_build(c->b, name, src, defines, &c->prog[k], why, whylen);
            if (rc == 0)
                c->band[k] = clCreateKernel(c->prog[k], x[k]->band_kernel, &e);
            if (rc == 0 && (e != CL_SUCCESS || !fits_lanes(c, c->band[k], c->lanes[k]))) {
                snprintf(why, whylen, "kernel %s: %s", x[k]->band_kernel,
                         e != CL_SUCCESS ? mlcl_error_name(e) : "runs fewer lanes per work-group here");
                rc = -1;
            }
            if (rc != 0) {
                ML_WARN(BWD_LOG, "%s: its band kernel is unavailable; the engine's runs. Why, with the build "
                        "log:", name);
                /* Line by line: a build log is longer than one log message. */
                for (char *line = why, *end; line && *line; line = end ? end + 1 : NULL) {
                    end = strchr(line, '\n');
                    if (end)
                        *end = '\0';
                    ML_WARN(BWD_LOG, "  %s", line);
                }
                why[0] = '\0';
                if (c->band[k])
                    clReleaseKernel(c->band[k]);
                if (c->prog[k])
                    clReleaseProgram(c->prog[k]);
                c->band[k] = NULL;
                c->prog[k] = NULL;
                c->lanes[k] = 0;
            } else {
                ML_INFO(BWD_LOG, "%s: kernel %s, work-groups of %d lanes", name, x[k]->band_kernel, c->lanes[k]);
            }
        }
        if (rc != 0) {
            /* The engine's kernel at the band's lanes, or at one lane
             * where the device cannot run that many. */
            for (;;) {
                snprintf(defines, sizeof defines, "%s -D ML_BWD_LANES=%d", common, c->lanes_of[k]);
                rc = build_kernel(c, name, src, defines, "ml_bwd_band", &c->prog[k], &c->band[k], c->lanes_of[k],
                                  why, whylen);
                if (rc != 1)
                    break;
                ML_INFO(BWD_LOG, "%s: %s; one work-item per cell instead", name, why);
                why[0] = '\0';
                c->lanes_of[k] = 1;
            }
        }
        free(src);
        if (rc != 0)
            return -1;
    }
    char *src = join(prelude, gate_parts, engine_src);
    if (!src)
        return snprintf(why, whylen, "out of memory"), -1;
    enum { NK = 8 };
    const char *names[NK] = {"ml_bwd_gate_fwd", "ml_bwd_gate", c->cpu ? "ml_bwd_gather_cells" : "ml_bwd_gather",
                             "ml_bwd_commit", "ml_bwd_accumulate", "ml_bwd_project",
                             c->cpu ? "ml_bwd_gather_proj_cells" : "ml_bwd_gather_proj", "ml_bwd_proj_dw"};
    cl_kernel *ks[NK] = {&c->gate_fwd, &c->gate, &c->gather, &c->commit, &c->accumulate, &c->project,
                         &c->gather_proj, &c->proj_dw};
    int rc = -1;
    for (;;) {
        int *lanes = &c->lanes_of[MOELAT_BANDS];
        snprintf(defines, sizeof defines, "-D ML_GH=%d -D ML_BWD_LANES=%d", lat->gate_hidden, *lanes);
        rc = ml_cl_build(c->b, "moelat_backward.cl", src, defines, &c->prog[MOELAT_BANDS], why, whylen);
        for (int i = 0; rc == 0 && i < NK; i++) {
            *ks[i] = clCreateKernel(c->prog[MOELAT_BANDS], names[i], &e);
            if (e != CL_SUCCESS) {
                snprintf(why, whylen, "creating kernel %s: %s", names[i], mlcl_error_name(e));
                rc = -1;
            }
        }
        if (rc != 0 || *lanes == 1 || (fits_lanes(c, c->gate_fwd, *lanes) && fits_lanes(c, c->gate, *lanes)))
            break;
        ML_INFO(BWD_LOG, "the gate's backward cannot run at %d lanes on this device; one work-item per cell",
                *lanes);
        for (int i = 0; i < NK; i++)
            if (*ks[i])
                clReleaseKernel(*ks[i]);
        for (int i = 0; i < NK; i++)
            *ks[i] = NULL;
        clReleaseProgram(c->prog[MOELAT_BANDS]);
        c->prog[MOELAT_BANDS] = NULL;
        *lanes = 1;
    }
    free(src);
    return rc == 0 ? 0 : -1;
}

/* Lanes per slot for a backward written for lanes: tuning grad_lanes, else
 * 64 on a GPU (two warps on NVIDIA, a wavefront on AMD: each phase's
 * outputs, tens to hundreds per cell, spread over them; on an H100 64
 * lanes took the experiment 24^3 gradient step from 387 ms at 32 to 252,
 * debug 15^3 11.1 -> 10.8 ms, tools/bench/NOTES.md item 60) and 1 elsewhere
 * (a CPU runtime runs a work-item's loops in vector lanes; lanes there
 * would only add barriers). Never more than the device's work-group. */
int ml_grad_cl_lanes_per_slot(const ml_grad_cl *c, const moelat_lattice *lat) {
    int lanes = lat->tuning.grad_lanes > 0 ? lat->tuning.grad_lanes : c->cpu ? 1 : 64;
    /* PoCL 3.1's CPU devices run these barriers wrongly (gradients off by
     * up to 100%, where oclgrind and GPUs agree with the host): refused. */
    if (lanes > 1 && strstr(c->b->ctx.info.platform_name, "Portable Computing Language")) {
        ML_WARN(BWD_LOG, "grad_lanes=%d ignored on %s (PoCL computes wrong gradients with lanes): one lane",
                lanes, c->b->ctx.info.name);
        lanes = 1;
    }
    while (lanes > 1 && (size_t)lanes > c->b->ctx.info.max_work_group_size)
        lanes /= 2;
    return lanes;
}
