/* The engine extension "moelat.cl.build/1" (expert_abi.h): an expert that
 * compiles a tuning knob into its kernels builds its program again, with
 * the engine's helpers and build options plus a -D of its own, through the
 * same cached path as the engine's programs. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include"backend/opencl/cl_runtime.h"
#include"plugin/host_ext.h"
#include "core/tuning.h"
#include "base/log.h"

/* The device's identity as the kernel cache keys it: the listing entry of
 * setup->device. */
static int find_device(cl_device_id device, mlcl_device_info *out) {
    mlcl_device_info *devs = NULL;
    int n = 0;
    char err[512];
    if (mlcl_list_devices(&devs, &n, err, sizeof err) != 0) {
        ML_ERROR("plugins", "moelat.cl.build: %s", err);
        return -1;
    }
    int found = -1;
    for (int i = 0; i < n && found < 0; i++)
        if (devs[i].device == device)
            found = i;
    if (found >= 0)
        *out = devs[found];
    else
        ML_ERROR("plugins", "moelat.cl.build: the expert's device is not among the OpenCL devices");
    free(devs);
    return found >= 0 ? 0 : -1;
}

/* The options setup->program was built with (the engine's -D MOELAT_*). */
static char *program_options(const moelat_cl_setup *setup) {
    size_t len = 0;
    cl_int rc = clGetProgramBuildInfo(setup->program, setup->device, CL_PROGRAM_BUILD_OPTIONS, 0,
                                      NULL, &len);
    char *opts = rc == CL_SUCCESS ? malloc(len + 1) : NULL;
    if (opts)
        rc = clGetProgramBuildInfo(setup->program, setup->device, CL_PROGRAM_BUILD_OPTIONS, len,
                                   opts, NULL);
    if (rc != CL_SUCCESS || !opts) {
        ML_ERROR("plugins", "moelat.cl.build: reading the expert program's options: %s",
                 rc != CL_SUCCESS ? mlcl_error_name(rc) : "out of memory");
        free(opts);
        return NULL;
    }
    opts[len] = '\0';
    return opts;
}

static int build(const moelat_cl_setup *setup, const char *source, const char *extra_options,
                 struct _cl_program **program) {
    if (!setup || !setup->program || !source || !program) {
        ML_ERROR("plugins", "moelat.cl.build: no setup, program, source or output");
        return MOELAT_EXPERT_ERROR;
    }
    *program = NULL;
    mlcl_context ctx;
    memset(&ctx, 0, sizeof ctx);
    if (find_device(setup->device, &ctx.info) != 0)
        return MOELAT_EXPERT_ERROR;
    ctx.context = setup->context;
    /* The lattice's kernel_cache knob holds for this build too. */
    ml_tuning tuning;
    char why[256];
    if (setup->struct_size >= offsetof(moelat_cl_setup, tuning) + sizeof setup->tuning &&
        ml_tuning_parse(setup->tuning, &tuning, why, sizeof why) == 0)
        ctx.no_kernel_cache = !tuning.kernel_cache;
    char *base = program_options(setup);
    const char *extra = extra_options ? extra_options : "";
    size_t olen = (base ? strlen(base) : 0) + strlen(extra) + 2;
    char *opts = base ? malloc(olen) : NULL;
    int rc = MOELAT_EXPERT_ERROR;
    if (opts) {
        snprintf(opts, olen, "%s %s", base, extra);
        char err[8192];
        cl_program out = NULL;
        if (mlcl_build_with_helpers(&ctx, "expert (tuned)", source, opts, &out, err, sizeof err) == 0) {
            *program = out;
            rc = MOELAT_EXPERT_OK;
        } else {
            ML_ERROR("plugins", "%s", err);
        }
    } else if (base) {
        ML_ERROR("plugins", "moelat.cl.build: out of host memory");
    }
    free(opts);
    free(base);
    return rc;
}

static const moelat_ext_cl_build g_cl_build = {
    .struct_size = sizeof g_cl_build,
    .build = build,
};

const void *ml_host_extension(const char *id) {
    if (id && strcmp(id, MOELAT_EXT_CL_BUILD) == 0)
        return &g_cl_build;
    return NULL;
}
