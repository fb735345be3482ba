/* Measured FP32 peak of a device (kernels_cl/moelat_peak.cl), cached per
 * device and driver in the kernel cache directory, so bench runs it once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include"base/atomic_file.h"
#include"backend/opencl/cl_runtime.h"
#include "base/log.h"

#define PEAK_ITERS 512
#define FLOPS_PER_ITEM (PEAK_ITERS * 8.0 * 4.0 * 2.0)

static void cache_path(const mlcl_device_info *d, char *path, size_t len) {
    char dir[2048];
    if (!mlcl_cache_dir(dir, sizeof dir)) {
        path[0] = '\0';
        return;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    const char *parts[3] = {d->name, d->driver_version, d->platform_version};
    for (int p = 0; p < 3; p++)
        for (const char *s = parts[p]; *s; s++) {
            h ^= (unsigned char)*s;
            h *= 0x100000001b3ull;
        }
    snprintf(path, len, "%s/peak-%016llx.txt", dir, (unsigned long long)h);
}

static double measure(mlcl_context *ctx, char *err, size_t errlen) {
    const char *src = mlcl_embedded_source("moelat_peak.cl");
    cl_program prog;
    char opts[64];
    snprintf(opts, sizeof opts, "-D ML_PEAK_ITERS=%d", PEAK_ITERS);
    if (!src || mlcl_build_program(ctx, "moelat_peak.cl", src, opts, &prog, err, errlen) != 0)
        return -1;
    cl_int rc;
    cl_kernel k = clCreateKernel(prog, "ml_peak_fma", &rc);
    size_t items = (size_t)ctx->info.compute_units * 2048;
    if (items > ((size_t)1 << 22))
        items = (size_t)1 << 22;
    cl_mem out = rc == CL_SUCCESS ? clCreateBuffer(ctx->context, CL_MEM_WRITE_ONLY, items * sizeof(float), NULL, &rc) : NULL;
    float a = 0.999f, b = 1e-3f;
    double best = -1;
    if (rc == CL_SUCCESS)
        rc = clSetKernelArg(k, 0, sizeof out, &out);
    if (rc == CL_SUCCESS)
        rc = clSetKernelArg(k, 1, sizeof a, &a);
    if (rc == CL_SUCCESS)
        rc = clSetKernelArg(k, 2, sizeof b, &b);
    for (int rep = 0; rep < 6 && rc == CL_SUCCESS; rep++) {
        cl_event ev;
        rc = clEnqueueNDRangeKernel(ctx->queues[0], k, 1, NULL, &items, NULL, 0, NULL, &ev);
        if (rc != CL_SUCCESS)
            break;
        rc = clWaitForEvents(1, &ev);
        double ms = mlcl_event_ms(ev);
        clReleaseEvent(ev);
        double gflops = ms > 0 ? FLOPS_PER_ITEM * (double)items / (ms * 1e6) : -1;
        if (rep > 0 && gflops > best) /* the first run warms up */
            best = gflops;
    }
    if (rc != CL_SUCCESS)
        mlcl_fail(err, errlen, rc, "peak FMA kernel on %s", ctx->info.name);
    if (out)
        clReleaseMemObject(out);
    if (k)
        clReleaseKernel(k);
    clReleaseProgram(prog);
    return rc == CL_SUCCESS ? best : -1;
}

double mlcl_peak_gflops(mlcl_context *ctx, char *err, size_t errlen) {
    char path[4096];
    cache_path(&ctx->info, path, sizeof path);
    if (path[0] && !ctx->no_kernel_cache) {
        FILE *f = fopen(path, "r");
        double v;
        if (f) {
            int ok = fscanf(f, "%lf", &v) == 1 && v > 0;
            fclose(f);
            if (ok)
                return v;
        }
    }
    double v = measure(ctx, err, errlen);
    if (v > 0 && path[0]) {
        char text[64], werr[512];
        int n = snprintf(text, sizeof text, "%.1f\n", v);
        if (atomic_write_file(path, text, (size_t)n, werr, sizeof werr) != 0)
            ML_WARN("bench", "could not cache the peak figure: %s", werr);
    }
    return v;
}
