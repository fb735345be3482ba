/* Program building: from the embedded sources or the caller's text, through
 * the binary cache when it is on. */
#include"backend/opencl/cl_runtime.h"

#include "core/embedded.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mlcl_embedded_source(const char *name) {
    if (!name)
        return NULL;
    for (int i = 0; i < ml_kernels_cl_count && ml_kernels_cl[i].name; i++)
        if (strcmp(ml_kernels_cl[i].name, name) == 0)
            return ml_kernels_cl[i].text;
    return NULL;
}

/* malloc'd build log of prog on dev, or a note saying why there is none. */
static char *build_log(cl_program prog, cl_device_id dev) {
    size_t n = 0;
    cl_int rc = clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
    char *log = NULL;
    if (rc == CL_SUCCESS && (log = malloc(n + 1)) != NULL) {
        rc = clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, n, log, NULL);
        if (rc == CL_SUCCESS) {
            log[n] = '\0';
            return log;
        }
        free(log);
    }
    log = malloc(96);
    if (log)
        snprintf(log, 96, "(no build log: clGetProgramBuildInfo failed: %s)",
                 rc == CL_SUCCESS ? "CL_OUT_OF_HOST_MEMORY" : mlcl_error_name(rc));
    return log;
}

static int build_failed(char *err, size_t errlen, const mlcl_context *ctx, const char *name,
                        const char *options, cl_int rc, const char *log) {
    snprintf(err, errlen,
             "building program '%s' for device '%s' with options '%s' failed: %s\n"
             "build log:\n%s",
             name, ctx->info.name, options, mlcl_error_name(rc), log ? log : "(none)");
    return -1;
}

static int build_from_source(mlcl_context *ctx, const char *name, const char *source,
                             const char *options, cl_program *out, char *err, size_t errlen) {
    cl_int rc = CL_SUCCESS;
    size_t len = strlen(source);
    cl_program prog = clCreateProgramWithSource(ctx->context, 1, &source, &len, &rc);
    if (!prog || rc != CL_SUCCESS)
        return mlcl_fail(err, errlen, rc, "clCreateProgramWithSource for program '%s' on '%s'",
                         name, ctx->info.name);
    rc = clBuildProgram(prog, 1, &ctx->info.device, options, NULL, NULL);
    if (rc != CL_SUCCESS) {
        char *log = build_log(prog, ctx->info.device);
        build_failed(err, errlen, ctx, name, options, rc, log);
        free(log);
        clReleaseProgram(prog);
        return -1;
    }
    /* A successful build's log (compiler warnings; with NVIDIA's
     * -cl-nv-verbose in MOELAT_CL_OPTIONS, each kernel's registers and
     * spills) at debug level, when there is one. */
    if (ml_log_enabled(MOELAT_LOG_DEBUG, "cl_build")) {
        char *log = build_log(prog, ctx->info.device);
        if (log && strspn(log, " \t\r\n") < strlen(log)) {
            ML_DEBUG("cl_build", "program '%s' on '%s' with options '%s': build log follows", name,
                     ctx->info.name, options);
            /* Line by line: one message holds at most 2 KB (log.c), and a
             * program of several kernels logs more than that (NVIDIA's
             * -cl-nv-verbose report of the functional expert's kernels was
             * cut before the edge kernel's registers). */
            for (char *line = log, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                    *next++ = '\0';
                if (*line)
                    ML_DEBUG("cl_build", "  %s", line);
            }
        }
        free(log);
    }
    *out = prog;
    return 0;
}

/* The program's one binary, malloc'd; NULL (logged) if the driver has none. */
static unsigned char *program_binary(cl_program prog, const char *name, size_t *len) {
    size_t n = 0;
    cl_int rc = clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof n, &n, NULL);
    if (rc != CL_SUCCESS || n == 0) {
        ML_DEBUG("kernel_cache", "program '%s': no binary to cache (%s, %zu bytes)", name,
                 mlcl_error_name(rc), n);
        return NULL;
    }
    unsigned char *bin = malloc(n);
    if (!bin)
        return NULL;
    unsigned char *ptrs[1] = {bin};
    rc = clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof ptrs, ptrs, NULL);
    if (rc != CL_SUCCESS) {
        ML_WARN("kernel_cache", "program '%s': reading its binary failed: %s", name,
                mlcl_error_name(rc));
        free(bin);
        return NULL;
    }
    *len = n;
    return bin;
}

/* 0 with *out built from the cached binary, -1 when the driver refused it
 * (already counted and warned). */
static int build_from_binary(mlcl_context *ctx, const char *path, const char *options,
                             const unsigned char *bin, size_t len, cl_program *out) {
    cl_int status = CL_SUCCESS, rc = CL_SUCCESS;
    cl_program prog = clCreateProgramWithBinary(ctx->context, 1, &ctx->info.device, &len, &bin,
                                                &status, &rc);
    char why[160];
    if (!prog || rc != CL_SUCCESS || status != CL_SUCCESS) {
        snprintf(why, sizeof why, "driver refused the binary: %s",
                 mlcl_error_name(rc != CL_SUCCESS ? rc : status));
        if (prog)
            clReleaseProgram(prog);
        mlcl_cache_count_rejected(path, why);
        return -1;
    }
    rc = clBuildProgram(prog, 1, &ctx->info.device, options, NULL, NULL);
    if (rc != CL_SUCCESS) {
        snprintf(why, sizeof why, "building the cached binary failed: %s", mlcl_error_name(rc));
        clReleaseProgram(prog);
        mlcl_cache_count_rejected(path, why);
        return -1;
    }
    *out = prog;
    return 0;
}

static int build_program(mlcl_context *ctx, const char *program_name, const char *source,
                         const char *options, cl_program *out, char *err, size_t errlen) {
    const char *name = program_name ? program_name : "(unnamed)";
    options = options ? options : "";
    *out = NULL;
    if (!ctx || !ctx->context) {
        snprintf(err, errlen, "building program '%s': no OpenCL context", name);
        return -1;
    }
    if (!source) {
        snprintf(err, errlen, "building program '%s' for device '%s': no source", name,
                 ctx->info.name);
        return -1;
    }
    if (mlcl_fault_hit(MLCL_FAULT_BUILD)) {
        snprintf(err, errlen,
                 "building program '%s' for device '%s' with options '%s' failed: "
                 "CL_BUILD_PROGRAM_FAILURE\nbuild log:\ninjected build fault (MOELAT_FAULT)",
                 name, ctx->info.name, options);
        return -1;
    }

    char path[4096];
    int cached = !ctx->no_kernel_cache && mlcl_cache_entry_path(&ctx->info, source, options, path, sizeof path) == 0;
    if (cached) {
        unsigned char *bin = NULL;
        size_t len = 0;
        if (mlcl_cache_read(path, &bin, &len) == 1) {
            int ok = build_from_binary(ctx, path, options, bin, len, out) == 0;
            free(bin);
            if (ok) {
                mlcl_cache_count_hit();
                ML_DEBUG("kernel_cache", "program '%s': hit %s", name, path);
                return 0;
            }
        }
        mlcl_cache_count_miss();
        ML_DEBUG("kernel_cache", "program '%s': miss %s", name, path);
    }

    if (build_from_source(ctx, name, source, options, out, err, errlen))
        return -1;
    if (cached) {
        size_t len = 0;
        unsigned char *bin = program_binary(*out, name, &len);
        if (bin) {
            mlcl_cache_write(path, bin, len);
            free(bin);
        }
    }
    return 0;
}

/* Every program sees the device's NVIDIA compute capability as
 * MOELAT_NV_SM (10 major + minor) where the driver reports one, so that
 * kernel sources can choose a tensor-core form (inline PTX) on sm_80 and
 * later and keep their portable form elsewhere. Part of the options, so
 * also of the binary cache's key; options that name it already (set by
 * hand, or a rebuild from a built program's options) are left as they
 * are. */
int mlcl_build_program(mlcl_context *ctx, const char *program_name, const char *source,
                       const char *options, cl_program *out, char *err, size_t errlen) {
    /* A program rebuilt from another's options (host_cl_build.c) has it. */
    if (!ctx || ctx->info.nv_sm <= 0 || (options && strstr(options, "MOELAT_NV_SM")))
        return build_program(ctx, program_name, source, options, out, err, errlen);
    options = options ? options : "";
    size_t len = strlen(options) + 40;
    char *opts = malloc(len);
    if (!opts) {
        *out = NULL;
        snprintf(err, errlen, "building program '%s': out of host memory", program_name ? program_name : "(unnamed)");
        return -1;
    }
    snprintf(opts, len, "%s -D MOELAT_NV_SM=%d", options, ctx->info.nv_sm);
    int rc = build_program(ctx, program_name, source, opts, out, err, errlen);
    free(opts);
    return rc;
}

int mlcl_build_with_helpers(mlcl_context *ctx, const char *program_name, const char *source, const char *options,
                            cl_program *out, char *err, size_t errlen) {
    const char *name = program_name ? program_name : "(unnamed)";
    const char *helpers = mlcl_embedded_source("moelat_helpers.cl");
    *out = NULL;
    if (!helpers || !source) {
        snprintf(err, errlen, "building program '%s': %s", name,
                 helpers ? "no source" : "moelat_helpers.cl is missing from this build");
        return -1;
    }
    size_t len = strlen(helpers) + strlen(source) + 2;
    char *src = malloc(len);
    if (!src) {
        snprintf(err, errlen, "building program '%s': out of host memory", name);
        return -1;
    }
    snprintf(src, len, "%s\n%s", helpers, source);
    int rc = mlcl_build_program(ctx, name, src, options, out, err, errlen);
    free(src);
    return rc;
}

char *mlcl_join_sources(const char *const *parts, size_t n) {
    size_t len = 1;
    for (size_t i = 0; i < n; i++) {
        if (!parts[i])
            return NULL;
        len += strlen(parts[i]) + 1;
    }
    char *src = malloc(len);
    if (!src)
        return NULL;
    char *at = src;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        memcpy(at, parts[i], l);
        at += l;
        *at++ = '\n';
    }
    *at = '\0';
    return src;
}
