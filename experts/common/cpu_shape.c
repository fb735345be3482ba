#include "cpu_shape.h"

#include <stdio.h>
#include <string.h>

int ec_cpu_shaped(const moelat_cl_setup *setup) {
    /* the engine rejects any other value at creation (tuning.c); a host
     * that does not gets a warning and the default */
    char shape[16];
    int forced = ec_tuning_value(ec_tuning(setup), "cl_shape", shape, sizeof shape) && shape[0];
    int want = -1; /* -1: by device type */
    if (forced && strcmp(shape, "gpu") == 0)
        want = 0;
    else if (forced && strcmp(shape, "cpu") == 0)
        want = 1;
    else if (forced) {
        ec_log(MOELAT_LOG_WARN, "tuning cl_shape=%s is neither gpu nor cpu: ignored", shape);
        forced = 0;
    }
    if (want < 0) {
        cl_device_type type = 0;
        cl_int err = clGetDeviceInfo(setup->device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
        if (err != CL_SUCCESS) {
            ec_log(MOELAT_LOG_WARN, "querying the device type: %s: work-group kernels", ec_cl_error_name(err));
            return 0;
        }
        want = (type & CL_DEVICE_TYPE_CPU) != 0;
    }
    if (want && setup->dims->cnf_mode != 0) {
        ec_log(MOELAT_LOG_INFO, "CPU-shaped kernels integrate euler only: work-group kernels for lipschitz");
        want = 0;
    }
    ec_log(MOELAT_LOG_INFO, "%s kernels%s", want ? "CPU-shaped" : "work-group", forced ? " (tuning cl_shape)" : "");
    return want;
}

size_t ec_cpu_cells_per_item(const moelat_cl_setup *setup) {
    return ec_cl_compiled_size(setup->program, setup->device, "mlc_cells_per_item", 64);
}

int ec_cpu_enqueue_cells(cl_command_queue q, cl_kernel k, const char *kname, const int32_t *extent, size_t n_cells,
                         size_t cells_per_item, cl_uint num_wait, const cl_event *wait, cl_event *ev) {
    if (n_cells == 0 || cells_per_item == 0)
        return ec_cl_enqueue_items(q, k, kname, 0, num_wait, wait, ev);
    size_t global = extent ? ((size_t)extent[0] + cells_per_item - 1) / cells_per_item * (size_t)extent[1] *
                                 (size_t)extent[2]
                           : (n_cells + cells_per_item - 1) / cells_per_item;
    size_t local = 1;
    cl_int err = clEnqueueNDRangeKernel(q, k, 1, NULL, &global, &local, num_wait, num_wait ? wait : NULL, ev);
    if (err != CL_SUCCESS) {
        char what[160];
        snprintf(what, sizeof what, "kernel %s: enqueueing %zu work-items of %zu cells", kname, global,
                 cells_per_item);
        return ec_cl_fail(err, what);
    }
    return MOELAT_EXPERT_OK;
}
