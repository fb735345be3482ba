/* moelat/inspect.h and moelat/util.h, the half outside a lattice: OpenCL
 * devices, the peak measurement, plugin discovery and the readers tools
 * share, as public calls over the internal ones. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include"backend/opencl/cl_runtime.h"
#include "core/abi.h"
#include"core/config_parse.h"
#include "moelat/inspect.h"
#include "moelat/util.h"
#include"base/atomic_file.h"
#include "io/npy.h"
#include"plugin/plugin_loader.h"

static void copy_info(const mlcl_device_info *s, moelat_device_info *d) {
    memset(d, 0, sizeof *d);
    d->struct_size = (uint32_t)sizeof *d;
    d->index = s->index;
    snprintf(d->platform_name, sizeof d->platform_name, "%s", s->platform_name);
    snprintf(d->platform_version, sizeof d->platform_version, "%s", s->platform_version);
    snprintf(d->name, sizeof d->name, "%s", s->name);
    snprintf(d->vendor, sizeof d->vendor, "%s", s->vendor);
    snprintf(d->type, sizeof d->type, "%s", s->type);
    snprintf(d->version, sizeof d->version, "%s", s->version);
    snprintf(d->driver_version, sizeof d->driver_version, "%s", s->driver_version);
    d->compute_units = s->compute_units;
    d->global_mem_bytes = s->global_mem_bytes;
    d->max_alloc_bytes = s->max_alloc_bytes;
    d->local_mem_bytes = s->local_mem_bytes;
    d->max_work_group_size = s->max_work_group_size;
    d->fp64 = s->fp64;
    d->fp16 = s->fp16;
}

moelat_status moelat_select_device(const char *spec, moelat_device_info *out, char *err, size_t errlen) {
    mlcl_device_info dev;
    if (!out) {
        snprintf(err, errlen, "moelat_select_device: no output");
        return MOELAT_ERR_INVALID;
    }
    size_t size = ml_abi_size(ML_ABI_DEVICE_INFO, out->struct_size, err, errlen);
    if (!size)
        return MOELAT_ERR_INVALID;
    if (mlcl_select_device(spec, &dev, err, errlen) != 0)
        return MOELAT_ERR_DEVICE;
    moelat_device_info full;
    copy_info(&dev, &full);
    ml_abi_export(out, &full, size);
    return MOELAT_OK;
}

moelat_status moelat_list_devices(moelat_device_info **out, int *count, uint32_t struct_size, char *err,
                                  size_t errlen) {
    if (!out || !count) {
        snprintf(err, errlen, "moelat_list_devices: no output");
        return MOELAT_ERR_INVALID;
    }
    *out = NULL;
    *count = 0;
    /* Elements of the caller's size, so that its d[i] finds element i. */
    size_t size = ml_abi_size(ML_ABI_DEVICE_INFO, struct_size, err, errlen);
    if (!size)
        return MOELAT_ERR_INVALID;
    mlcl_device_info *devs = NULL;
    int n = 0;
    if (mlcl_list_devices(&devs, &n, err, errlen) != 0)
        return MOELAT_ERR_DEVICE;
    unsigned char *d = calloc((size_t)(n > 0 ? n : 1), struct_size);
    if (!d) {
        free(devs);
        snprintf(err, errlen, "moelat_list_devices: out of memory");
        return MOELAT_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        moelat_device_info full;
        copy_info(&devs[i], &full);
        unsigned char *e = d + (size_t)i * struct_size;
        memcpy(e, &struct_size, sizeof struct_size);
        ml_abi_export(e, &full, size);
    }
    free(devs);
    *out = (moelat_device_info *)d;
    *count = n;
    return MOELAT_OK;
}

double moelat_device_peak_gflops(const char *device, char *err, size_t errlen) {
    mlcl_device_info dev;
    if (mlcl_select_device(device, &dev, err, errlen) != 0)
        return -1.0;
    mlcl_context ctx;
    if (mlcl_context_create(&dev, 1, 1, &ctx, err, errlen) != 0)
        return -1.0;
    double peak = mlcl_peak_gflops(&ctx, err, errlen);
    mlcl_context_release(&ctx);
    return peak > 0 ? peak : 0.0;
}

/* ---- plugins ---- */

struct moelat_plugin_set {
    ml_plugin_set set;
};

moelat_plugin_set *moelat_plugins_discover(const char *const *paths, int n_paths) {
    moelat_plugin_set *s = malloc(sizeof *s);
    if (s)
        ml_plugin_discover(paths, n_paths, &s->set);
    return s;
}

void moelat_plugins_free(moelat_plugin_set *set) {
    if (!set)
        return;
    ml_plugin_set_free(&set->set);
    free(set);
}

int moelat_plugins_count(const moelat_plugin_set *set) { return set ? set->set.n_plugins : 0; }

static int in_range(int i, int n) { return i >= 0 && i < n; }

const moelat_expert_descriptor *moelat_plugins_descriptor(const moelat_plugin_set *set, int i) {
    return set && in_range(i, set->set.n_plugins) ? set->set.plugins[i].desc : NULL;
}

const char *moelat_plugins_path(const moelat_plugin_set *set, int i) {
    return set && in_range(i, set->set.n_plugins) ? set->set.plugins[i].path : NULL;
}

int moelat_plugins_error_count(const moelat_plugin_set *set) { return set ? set->set.n_errors : 0; }

const char *moelat_plugins_error_path(const moelat_plugin_set *set, int i) {
    return set && in_range(i, set->set.n_errors) ? set->set.errors[i].path : NULL;
}

const char *moelat_plugins_error_reason(const moelat_plugin_set *set, int i) {
    return set && in_range(i, set->set.n_errors) ? set->set.errors[i].reason : NULL;
}

const char *moelat_plugins_build_dir(void) { return ml_plugin_build_dir(); }

const char *moelat_plugins_install_dir(void) { return ml_plugin_install_dir(); }

int moelat_plugin_check(const char *path, char *report, size_t len) {
    return ml_plugin_check_isolated(path, report, len);
}

/* ---- util.h ---- */

moelat_status moelat_parse_dims(const char *s, int32_t out[3], char *err, size_t errlen) {
    return ml_parse_dims(s, out, err, errlen) == 0 ? MOELAT_OK : MOELAT_ERR_INVALID;
}

moelat_status moelat_config_validate(const moelat_config *cfg, char *err, size_t errlen) {
    moelat_config full;
    if (ml_config_import(&full, cfg, err, errlen) != MOELAT_OK)
        return MOELAT_ERR_INVALID;
    return ml_config_validate(&full, err, errlen) == 0 ? MOELAT_OK : MOELAT_ERR_INVALID;
}

moelat_status moelat_npy_read(const char *path, float *dst, int ndim, const int64_t *expect, char *err,
                              size_t errlen) {
    return npy_read_expect(path, dst, ndim, expect, err, errlen) == 0 ? MOELAT_OK : MOELAT_ERR_IO;
}

moelat_status moelat_npy_write(const char *path, const float *data, int ndim, const int64_t *shape, char *err,
                               size_t errlen) {
    return npy_write(path, data, ndim, shape, err, errlen) == 0 ? MOELAT_OK : MOELAT_ERR_IO;
}

moelat_status moelat_npy_load(const char *path, float **data, int *ndim, int64_t shape[8], char *err,
                              size_t errlen) {
    *data = NULL;
    return npy_read(path, data, ndim, shape, err, errlen) == 0 ? MOELAT_OK : MOELAT_ERR_IO;
}

moelat_status moelat_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen) {
    return atomic_write_file(path, data, len, err, errlen) == 0 ? MOELAT_OK : MOELAT_ERR_IO;
}
