/* Device discovery and selection, contexts with their command queues
 * (profiling on request), and event timing. */
#include"backend/opencl/cl_runtime.h"
#include "base/environment.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The ICD loader returns this instead of CL_SUCCESS with zero platforms. */
#define MLCL_PLATFORM_NOT_FOUND_KHR (-1001)

static int info_string(cl_device_id dev, cl_device_info what, const char *label, char *buf,
                       size_t len, char *err, size_t errlen) {
    cl_int rc = clGetDeviceInfo(dev, what, len, buf, NULL);
    if (rc == CL_INVALID_VALUE) {
        /* Longer than our field: keep the first len - 1 bytes. */
        size_t need = 0;
        rc = clGetDeviceInfo(dev, what, 0, NULL, &need);
        if (rc == CL_SUCCESS) {
            char *tmp = malloc(need + 1);
            if (!tmp)
                return mlcl_fail(err, errlen, CL_OUT_OF_HOST_MEMORY, "reading %s", label);
            rc = clGetDeviceInfo(dev, what, need, tmp, NULL);
            if (rc == CL_SUCCESS) {
                tmp[need] = '\0';
                snprintf(buf, len, "%s", tmp);
            }
            free(tmp);
        }
    }
    if (rc != CL_SUCCESS)
        return mlcl_fail(err, errlen, rc, "clGetDeviceInfo(%s)", label);
    buf[len - 1] = '\0';
    return 0;
}

#define INFO_SCALAR(dev, what, var, label)                                                    \
    do {                                                                                      \
        cl_int rc_ = clGetDeviceInfo(dev, what, sizeof(var), &(var), NULL);                   \
        if (rc_ != CL_SUCCESS)                                                                \
            return mlcl_fail(err, errlen, rc_, "clGetDeviceInfo(%s)", label);                 \
    } while (0)

/* Whole-token match in a space-separated extension list. */
static int has_extension(const char *list, const char *ext) {
    size_t n = strlen(ext);
    for (const char *p = list; (p = strstr(p, ext)) != NULL; p += n) {
        int starts = p == list || p[-1] == ' ';
        int ends = p[n] == '\0' || p[n] == ' ';
        if (starts && ends)
            return 1;
    }
    return 0;
}

static const char *type_name(cl_device_type t) {
    if (t & CL_DEVICE_TYPE_GPU)
        return "GPU";
    if (t & CL_DEVICE_TYPE_CPU)
        return "CPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR)
        return "ACCELERATOR";
    return "OTHER";
}

/* cl_nv_device_attribute_query's enums (cl_ext.h names them
 * CL_DEVICE_COMPUTE_CAPABILITY_*_NV; not every header set has them). */
#define ML_CL_DEVICE_CC_MAJOR_NV 0x4000
#define ML_CL_DEVICE_CC_MINOR_NV 0x4001

static int fill_device(cl_platform_id plat, cl_device_id dev, const char *plat_name,
                       const char *plat_version, mlcl_device_info *d, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    d->platform = plat;
    d->device = dev;
    snprintf(d->platform_name, sizeof d->platform_name, "%s", plat_name);
    snprintf(d->platform_version, sizeof d->platform_version, "%s", plat_version);
    if (info_string(dev, CL_DEVICE_NAME, "CL_DEVICE_NAME", d->name, sizeof d->name, err,
                    errlen) ||
        info_string(dev, CL_DEVICE_VENDOR, "CL_DEVICE_VENDOR", d->vendor, sizeof d->vendor,
                    err, errlen) ||
        info_string(dev, CL_DEVICE_VERSION, "CL_DEVICE_VERSION", d->version,
                    sizeof d->version, err, errlen) ||
        info_string(dev, CL_DRIVER_VERSION, "CL_DRIVER_VERSION", d->driver_version,
                    sizeof d->driver_version, err, errlen))
        return -1;
    cl_device_type type = 0;
    INFO_SCALAR(dev, CL_DEVICE_TYPE, type, "CL_DEVICE_TYPE");
    snprintf(d->type, sizeof d->type, "%s", type_name(type));
    INFO_SCALAR(dev, CL_DEVICE_MAX_COMPUTE_UNITS, d->compute_units, "CL_DEVICE_MAX_COMPUTE_UNITS");
    INFO_SCALAR(dev, CL_DEVICE_GLOBAL_MEM_SIZE, d->global_mem_bytes, "CL_DEVICE_GLOBAL_MEM_SIZE");
    INFO_SCALAR(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, d->max_alloc_bytes,
                "CL_DEVICE_MAX_MEM_ALLOC_SIZE");
    INFO_SCALAR(dev, CL_DEVICE_LOCAL_MEM_SIZE, d->local_mem_bytes, "CL_DEVICE_LOCAL_MEM_SIZE");
    INFO_SCALAR(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, d->max_work_group_size,
                "CL_DEVICE_MAX_WORK_GROUP_SIZE");

    size_t ext_len = 0;
    cl_int rc = clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_len);
    if (rc != CL_SUCCESS)
        return mlcl_fail(err, errlen, rc, "clGetDeviceInfo(CL_DEVICE_EXTENSIONS) on '%s'",
                         d->name);
    char *ext = malloc(ext_len + 1);
    if (!ext)
        return mlcl_fail(err, errlen, CL_OUT_OF_HOST_MEMORY, "reading extensions of '%s'",
                         d->name);
    rc = clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, ext_len, ext, NULL);
    if (rc != CL_SUCCESS) {
        free(ext);
        return mlcl_fail(err, errlen, rc, "clGetDeviceInfo(CL_DEVICE_EXTENSIONS) on '%s'",
                         d->name);
    }
    ext[ext_len] = '\0';
    /* Some drivers support doubles in core OpenCL and no longer list the
     * extension, so the FP config counts too; it may be unsupported as a
     * query on old drivers, which then means no. */
    cl_device_fp_config dcfg = 0;
    if (clGetDeviceInfo(dev, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof dcfg, &dcfg, NULL) !=
        CL_SUCCESS)
        dcfg = 0;
    d->fp64 = has_extension(ext, "cl_khr_fp64") || dcfg != 0;
    d->fp16 = has_extension(ext, "cl_khr_fp16");
    /* NVIDIA's compute capability, which programs see as MOELAT_NV_SM
     * (kernels that use the tensor cores through inline PTX need sm_80+).
     * A driver that lists the extension but fails the query is taken as
     * no capability: those kernels keep their portable form. */
    if (has_extension(ext, "cl_nv_device_attribute_query")) {
        cl_uint major = 0, minor = 0;
        if (clGetDeviceInfo(dev, ML_CL_DEVICE_CC_MAJOR_NV, sizeof major, &major, NULL) == CL_SUCCESS &&
            clGetDeviceInfo(dev, ML_CL_DEVICE_CC_MINOR_NV, sizeof minor, &minor, NULL) == CL_SUCCESS)
            d->nv_sm = (int)(major * 10 + minor);
    }
    free(ext);
    return 0;
}

static int platform_string(cl_platform_id p, cl_platform_info what, const char *label, char *buf,
                           size_t len, char *err, size_t errlen) {
    size_t need = 0;
    cl_int rc = clGetPlatformInfo(p, what, 0, NULL, &need);
    if (rc != CL_SUCCESS)
        return mlcl_fail(err, errlen, rc, "clGetPlatformInfo(%s)", label);
    char *tmp = malloc(need + 1);
    if (!tmp)
        return mlcl_fail(err, errlen, CL_OUT_OF_HOST_MEMORY, "reading %s", label);
    rc = clGetPlatformInfo(p, what, need, tmp, NULL);
    if (rc == CL_SUCCESS) {
        tmp[need] = '\0';
        snprintf(buf, len, "%s", tmp);
    }
    free(tmp);
    if (rc != CL_SUCCESS)
        return mlcl_fail(err, errlen, rc, "clGetPlatformInfo(%s)", label);
    return 0;
}

int mlcl_list_devices(mlcl_device_info **out, int *count, char *err, size_t errlen) {
    *out = NULL;
    *count = 0;
    cl_uint n_plat = 0;
    cl_int rc = clGetPlatformIDs(0, NULL, &n_plat);
    if (rc == MLCL_PLATFORM_NOT_FOUND_KHR || (rc == CL_SUCCESS && n_plat == 0))
        return 0;
    if (rc != CL_SUCCESS)
        return mlcl_fail(err, errlen, rc, "clGetPlatformIDs");
    cl_platform_id *plats = calloc(n_plat, sizeof *plats);
    if (!plats)
        return mlcl_fail(err, errlen, CL_OUT_OF_HOST_MEMORY, "listing platforms");
    rc = clGetPlatformIDs(n_plat, plats, NULL);
    if (rc != CL_SUCCESS) {
        free(plats);
        return mlcl_fail(err, errlen, rc, "clGetPlatformIDs");
    }

    mlcl_device_info *list = NULL;
    int n = 0;
    for (cl_uint p = 0; p < n_plat; p++) {
        char pname[128], pver[128];
        if (platform_string(plats[p], CL_PLATFORM_NAME, "CL_PLATFORM_NAME", pname, sizeof pname,
                            err, errlen) ||
            platform_string(plats[p], CL_PLATFORM_VERSION, "CL_PLATFORM_VERSION", pver,
                            sizeof pver, err, errlen))
            goto fail;
        cl_uint n_dev = 0;
        rc = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n_dev);
        /* A platform without devices is not an error, just empty. */
        if (rc == CL_DEVICE_NOT_FOUND || (rc == CL_SUCCESS && n_dev == 0))
            continue;
        if (rc != CL_SUCCESS) {
            mlcl_fail(err, errlen, rc, "clGetDeviceIDs on platform '%s'", pname);
            goto fail;
        }
        cl_device_id *devs = calloc(n_dev, sizeof *devs);
        mlcl_device_info *grown = realloc(list, (size_t)(n + (int)n_dev) * sizeof *list);
        if (!devs || !grown) {
            free(devs);
            if (grown)
                list = grown;
            mlcl_fail(err, errlen, CL_OUT_OF_HOST_MEMORY, "listing devices of '%s'", pname);
            goto fail;
        }
        list = grown;
        rc = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, n_dev, devs, NULL);
        if (rc != CL_SUCCESS) {
            free(devs);
            mlcl_fail(err, errlen, rc, "clGetDeviceIDs on platform '%s'", pname);
            goto fail;
        }
        for (cl_uint d = 0; d < n_dev; d++) {
            if (fill_device(plats[p], devs[d], pname, pver, &list[n], err, errlen)) {
                free(devs);
                goto fail;
            }
            list[n].index = n;
            n++;
        }
        free(devs);
    }
    free(plats);
    *out = list;
    *count = n;
    return 0;
fail:
    free(plats);
    free(list);
    return -1;
}

/* "  0: <name> (<platform>, <type>)" per device, after a first line. */
static void list_into(char *err, size_t errlen, const mlcl_device_info *devs, int n) {
    size_t used = strlen(err);
    int w = snprintf(err + used, errlen - used, "; devices:");
    for (int i = 0; i < n && w >= 0 && (used += (size_t)w) < errlen; i++)
        w = snprintf(err + used, errlen - used, "\n  %d: %s (%s, %s)", devs[i].index,
                     devs[i].name, devs[i].platform_name, devs[i].type);
}

static int parse_index(const char *s, long *out) {
    if (!*s)
        return 0;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    char *end = NULL;
    *out = strtol(s, &end, 10);
    return *end == '\0';
}

static int contains_nocase(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

int mlcl_select_device(const char *spec, mlcl_device_info *out, char *err, size_t errlen) {
    mlcl_device_info *devs = NULL;
    int n = 0;
    if (mlcl_list_devices(&devs, &n, err, errlen))
        return -1;
    if (n == 0) {
        snprintf(err, errlen, "no OpenCL device found (no platform or no device installed)");
        return -1;
    }
    const char *origin = "device";
    if (!spec || !*spec) {
        const char *env = ml_env_device();
        if (env && *env) {
            spec = env;
            origin = "MOELAT_DEVICE";
        }
    }
    int pick = -1;
    if (!spec || !*spec) {
        pick = 0;
        for (int i = 0; i < n; i++)
            if (strcmp(devs[i].type, "GPU") == 0) {
                pick = i;
                break;
            }
    } else {
        long idx = -1;
        if (parse_index(spec, &idx)) {
            if (idx >= 0 && idx < n) {
                pick = (int)idx;
            } else {
                snprintf(err, errlen, "%s index %s is out of range (%d device%s)", origin, spec,
                         n, n == 1 ? "" : "s");
                list_into(err, errlen, devs, n);
            }
        } else {
            for (int i = 0; i < n && pick < 0; i++)
                if (contains_nocase(devs[i].name, spec))
                    pick = i;
            if (pick < 0) {
                snprintf(err, errlen, "%s '%s' matches no device name", origin, spec);
                list_into(err, errlen, devs, n);
            }
        }
    }
    if (pick >= 0)
        *out = devs[pick];
    free(devs);
    return pick >= 0 ? 0 : -1;
}

/* clCreateCommandQueue is deprecated from OpenCL 2.0 on, but it is the one
 * call that exists on every version, NVIDIA's 3.0 and PoCL included. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
static cl_command_queue create_queue(cl_context c, cl_device_id d, int profile, cl_int *rc) {
    return clCreateCommandQueue(c, d, profile ? CL_QUEUE_PROFILING_ENABLE : 0, rc);
}
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

int mlcl_context_create(const mlcl_device_info *dev, int n_queues, int profile, mlcl_context *ctx, char *err,
                        size_t errlen) {
    memset(ctx, 0, sizeof *ctx);
    if (n_queues < 1 || n_queues > MLCL_MAX_QUEUES) {
        snprintf(err, errlen, "context on '%s': %d queues requested, must be 1..%d", dev->name,
                 n_queues, MLCL_MAX_QUEUES);
        return -1;
    }
    ctx->info = *dev;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)dev->platform,
                                     0};
    cl_int rc = CL_SUCCESS;
    ctx->context = clCreateContext(props, 1, &dev->device, NULL, NULL, &rc);
    if (!ctx->context || rc != CL_SUCCESS) {
        ctx->context = NULL;
        return mlcl_fail(err, errlen, rc, "clCreateContext on '%s'", dev->name);
    }
    for (int i = 0; i < n_queues; i++) {
        ctx->queues[i] = create_queue(ctx->context, dev->device, profile, &rc);
        if (!ctx->queues[i] || rc != CL_SUCCESS) {
            ctx->queues[i] = NULL;
            mlcl_context_release(ctx);
            return mlcl_fail(err, errlen, rc, "clCreateCommandQueue %d of %d on '%s'", i + 1,
                             n_queues, dev->name);
        }
        ctx->n_queues = i + 1;
    }
    ctx->transfer = create_queue(ctx->context, dev->device, profile, &rc);
    if (!ctx->transfer || rc != CL_SUCCESS) {
        ctx->transfer = NULL;
        mlcl_context_release(ctx);
        return mlcl_fail(err, errlen, rc, "clCreateCommandQueue (transfers) on '%s'", dev->name);
    }
    return 0;
}

void mlcl_context_release(mlcl_context *ctx) {
    if (!ctx)
        return;
    for (int i = 0; i < MLCL_MAX_QUEUES; i++) {
        if (ctx->queues[i]) {
            clFinish(ctx->queues[i]);
            clReleaseCommandQueue(ctx->queues[i]);
            ctx->queues[i] = NULL;
        }
    }
    ctx->n_queues = 0;
    if (ctx->transfer) {
        clFinish(ctx->transfer);
        clReleaseCommandQueue(ctx->transfer);
        ctx->transfer = NULL;
    }
    if (ctx->context) {
        clReleaseContext(ctx->context);
        ctx->context = NULL;
    }
}

double mlcl_span_ms(cl_event first, cl_event last) {
    if (!first || !last)
        return 0.0;
    cl_ulong start = 0, end = 0;
    if (clGetEventProfilingInfo(first, CL_PROFILING_COMMAND_START, sizeof start, &start, NULL) !=
            CL_SUCCESS ||
        clGetEventProfilingInfo(last, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL) !=
            CL_SUCCESS ||
        end < start)
        return 0.0;
    return (double)(end - start) * 1e-6;
}

double mlcl_event_ms(cl_event ev) { return mlcl_span_ms(ev, ev); }
