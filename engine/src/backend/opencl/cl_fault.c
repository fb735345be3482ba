/* Test-only fault injection and the wrappers through which the engine
 * creates buffers and enqueues kernels, so that tests can make those calls
 * fail on demand and count buffers that were never released. */
#include"backend/opencl/cl_runtime.h"
#include "base/environment.h"

#include "base/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define N_KINDS 4

/* Calls left until the injected failure; 0 means none armed. */
static atomic_int g_countdown[N_KINDS];
static atomic_long g_live_buffers;
static pthread_once_t g_env_once = PTHREAD_ONCE_INIT;

static void parse_env(void) {
    const char *env = ml_env_test_fault();
    if (!env || !*env)
        return;
    static const char *names[N_KINDS] = {NULL, "alloc", "enqueue", "build"};
    const char *p = env;
    while (*p) {
        size_t len = strcspn(p, ",");
        const char *colon = memchr(p, ':', len);
        int kind = 0;
        if (colon)
            for (int k = 1; k < N_KINDS; k++)
                if (strlen(names[k]) == (size_t)(colon - p) &&
                    strncasecmp(p, names[k], (size_t)(colon - p)) == 0)
                    kind = k;
        char *end = NULL;
        long nth = colon ? strtol(colon + 1, &end, 10) : -1;
        if (kind == 0 || end != p + len || nth < 0 || nth > 1000000000L)
            ML_WARN("cl", "MOELAT_FAULT: ignoring '%.*s' (expected alloc:N, enqueue:N or "
                          "build:N)", (int)len, p);
        else
            atomic_store(&g_countdown[kind], (int)nth);
        p += len;
        if (*p == ',')
            p++;
    }
}

void mlcl_fault_inject(mlcl_fault_kind kind, int nth) {
    /* Reading the environment first keeps it from overriding this call. */
    pthread_once(&g_env_once, parse_env);
    if (nth < 0)
        nth = 0;
    if (kind == MLCL_FAULT_NONE) {
        for (int k = 0; k < N_KINDS; k++)
            atomic_store(&g_countdown[k], 0);
        return;
    }
    if ((int)kind > 0 && (int)kind < N_KINDS)
        atomic_store(&g_countdown[kind], nth);
}

int mlcl_fault_hit(mlcl_fault_kind kind) {
    pthread_once(&g_env_once, parse_env);
    if ((int)kind <= 0 || (int)kind >= N_KINDS)
        return 0;
    atomic_int *c = &g_countdown[kind];
    int v = atomic_load(c);
    while (v > 0) {
        if (atomic_compare_exchange_weak(c, &v, v - 1))
            return v == 1;
    }
    return 0;
}

cl_mem mlcl_create_buffer(mlcl_context *ctx, cl_mem_flags flags, size_t size, void *host_ptr,
                          cl_int *err) {
    cl_int dummy;
    if (!err)
        err = &dummy;
    if (!ctx || !ctx->context) {
        *err = CL_INVALID_CONTEXT;
        return NULL;
    }
    if (mlcl_fault_hit(MLCL_FAULT_ALLOC)) {
        *err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
        return NULL;
    }
    cl_mem m = clCreateBuffer(ctx->context, flags, size, host_ptr, err);
    if (m && *err == CL_SUCCESS)
        atomic_fetch_add(&g_live_buffers, 1);
    return m;
}

void mlcl_release_buffer(cl_mem buf) {
    if (!buf)
        return;
    atomic_fetch_sub(&g_live_buffers, 1);
    cl_int rc = clReleaseMemObject(buf);
    if (rc != CL_SUCCESS)
        ML_WARN("cl", "clReleaseMemObject failed: %s", mlcl_error_name(rc));
}

long mlcl_live_buffers(void) { return atomic_load(&g_live_buffers); }

cl_int mlcl_enqueue_kernel(cl_command_queue q, cl_kernel k, cl_uint dim, const size_t *global,
                           const size_t *local, cl_uint nwait, const cl_event *wait,
                           cl_event *ev) {
    if (mlcl_fault_hit(MLCL_FAULT_ENQUEUE)) {
        if (ev)
            *ev = NULL;
        return CL_OUT_OF_RESOURCES;
    }
    return clEnqueueNDRangeKernel(q, k, dim, NULL, global, local, nwait, wait, ev);
}
