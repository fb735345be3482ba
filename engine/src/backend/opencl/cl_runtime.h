/* The engine's OpenCL layer: device discovery and selection, one context
 * per device with Q in-order profiling queues, program building from the
 * embedded kernels_cl/ sources with an on-disk binary cache, and error
 * names. Everything returns an error message instead of printing it. */
#ifndef MOELAT_CL_RUNTIME_H
#define MOELAT_CL_RUNTIME_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stddef.h>
#include <stdint.h>

#define MLCL_MAX_QUEUES 16

/* One OpenCL device as listed by mlcl_list_devices(). */
typedef struct mlcl_device_info {
    int index;               /* across all platforms, in listing order */
    cl_platform_id platform;
    cl_device_id device;
    char platform_name[128];
    char platform_version[128];
    char name[256];
    char vendor[128];
    char type[16];           /* "GPU", "CPU", "ACCELERATOR", "OTHER" */
    char version[128];       /* CL_DEVICE_VERSION */
    char driver_version[128];
    cl_uint compute_units;
    cl_ulong global_mem_bytes;
    cl_ulong max_alloc_bytes;
    cl_ulong local_mem_bytes;
    size_t max_work_group_size;
    int fp64;
    int fp16;
    int nv_sm;               /* NVIDIA compute capability as 10 major + minor
                                (cl_nv_device_attribute_query), 0 elsewhere */
} mlcl_device_info;

/* Name of an OpenCL error code, e.g. "CL_OUT_OF_RESOURCES"; unknown codes
 * give "CL_UNKNOWN_ERROR(<n>)" in a static per-thread buffer. */
const char *mlcl_error_name(cl_int err);

/* Lists every device of every platform. *out is malloc'd (free it).
 * Returns 0, or -1 with err filled (no platform is not an error: count 0). */
int mlcl_list_devices(mlcl_device_info **out, int *count, char *err, size_t errlen);

/* Picks a device: spec is an index ("1") or a case-insensitive substring of
 * the device name; NULL or "" means $MOELAT_DEVICE, else the first GPU, else
 * the first device. An index out of range or a name matching nothing is an
 * error whose message lists the devices that exist. */
int mlcl_select_device(const char *spec, mlcl_device_info *out, char *err, size_t errlen);

/* A context on one device with nq in-order command queues, profiling on. */
typedef struct mlcl_context {
    mlcl_device_info info;
    cl_context context;
    cl_command_queue queues[MLCL_MAX_QUEUES];
    int n_queues;
    /* Reads that overlap the queues' kernels (planes a step delivers early:
     * moelat_lattice_deliver_planes). */
    cl_command_queue transfer;
    /* 1: programs are built from source every time, no binary cache is
     * read or written (tuning kernel_cache=off); 0 by default. */
    int no_kernel_cache;
} mlcl_context;

/* profile = 1: queues record kernel times (mlcl_event_ms); 0: they do not,
 * which saves tens of microseconds per step on small lattices. */
int mlcl_context_create(const mlcl_device_info *dev, int n_queues, int profile, mlcl_context *ctx,
                        char *err, size_t errlen);
void mlcl_context_release(mlcl_context *ctx);

/* Embedded kernels_cl/ sources, by file name ("moelat_helpers.cl"); NULL if
 * unknown. */
const char *mlcl_embedded_source(const char *name);
/* The n texts joined, each followed by a newline, in one allocation the
 * caller frees; NULL when one of them is NULL or memory is short. */
char *mlcl_join_sources(const char *const *parts, size_t n);

/* Builds a program from source for ctx's device with options. Uses the
 * binary cache unless ctx->no_kernel_cache (tuning kernel_cache=off). program_name names it in
 * messages. On failure the message names the device, the program and the
 * options, and holds the build log. */
int mlcl_build_program(mlcl_context *ctx, const char *program_name, const char *source,
                       const char *options, cl_program *out, char *err, size_t errlen);
/* The one build of an engine or expert program: moelat_helpers.cl, then
 * source, through mlcl_build_program (options are the caller's: the
 * OpenCL backend's shared ones, backend_cl_program.c). */
int mlcl_build_with_helpers(mlcl_context *ctx, const char *program_name, const char *source, const char *options,
                            cl_program *out, char *err, size_t errlen);

/* Directory of the kernel binary cache: $XDG_CACHE_HOME/moelat, else
 * ~/.cache/moelat. Writes into buf; returns buf, or NULL if neither is set. */
const char *mlcl_cache_dir(char *buf, size_t len);

/* Counters of cache use, for tests and the debug log. */
typedef struct mlcl_cache_stats {
    unsigned hits, misses, corrupt, stores;
} mlcl_cache_stats;
void mlcl_cache_stats_get(mlcl_cache_stats *s);

/* Measured FP32 peak of ctx's device in GFLOP/s (an FMA kernel, run once
 * per device and driver, then read from the cache directory); -1 on error. */
double mlcl_peak_gflops(mlcl_context *ctx, char *err, size_t errlen);

/* Duration of a completed profiled event, in milliseconds (0 on error). */
double mlcl_event_ms(cl_event ev);
/* From first's start to last's end (the commands of one expert), in ms. */
double mlcl_span_ms(cl_event first, cl_event last);

/* Formats "<what> failed: <CL name>" into err; returns -1. */
int mlcl_fail(char *err, size_t errlen, cl_int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Zeroes the cache counters (tests). */
void mlcl_cache_stats_reset(void);

/* Binary cache internals shared by cl_program.c and cl_cache.c.
 * mlcl_cache_entry_path() fills path with <dir>/<hex>.bin for this source,
 * options and device; it returns 0, or -1 when the cache is disabled
 * (MOELAT_NO_KERNEL_CACHE=1) or has no usable directory (warning logged). */
int mlcl_cache_entry_path(const mlcl_device_info *dev, const char *source, const char *options,
                          char *path, size_t len);
/* Reads and verifies an entry. Returns 1 with a malloc'd payload on a sound
 * entry, 0 when there is none, -1 (warning logged, counted corrupt) when it
 * is unreadable or fails its header or checksum. */
int mlcl_cache_read(const char *path, unsigned char **payload, size_t *len);
/* Writes an entry atomically; a failure is a warning. */
void mlcl_cache_write(const char *path, const unsigned char *payload, size_t len);
/* Counter bumps for the outcomes only cl_program.c sees. */
void mlcl_cache_count_hit(void);
void mlcl_cache_count_miss(void);
void mlcl_cache_count_rejected(const char *path, const char *why);

/* Test-only fault injection. mlcl_fault_inject(kind, n) makes the n-th next
 * call of that kind fail (1-based, once); n = 0 clears it, MLCL_FAULT_NONE
 * clears every kind. MOELAT_FAULT=alloc:3 (or enqueue:2, build:1, several
 * separated by commas) sets the same at first use. */
typedef enum {
    MLCL_FAULT_NONE,
    MLCL_FAULT_ALLOC,
    MLCL_FAULT_ENQUEUE,
    MLCL_FAULT_BUILD
} mlcl_fault_kind;
void mlcl_fault_inject(mlcl_fault_kind kind, int nth);
/* Consumes one call of that kind; 1 when this call must fail. */
int mlcl_fault_hit(mlcl_fault_kind kind);

/* The engine's own buffers go through these, so that alloc faults can be
 * injected and leaks counted. An injected fault returns NULL with
 * CL_MEM_OBJECT_ALLOCATION_FAILURE in *err. */
cl_mem mlcl_create_buffer(mlcl_context *ctx, cl_mem_flags flags, size_t size, void *host_ptr,
                          cl_int *err);
/* Releases a buffer from mlcl_create_buffer; NULL is fine. */
void mlcl_release_buffer(cl_mem buf);
/* Buffers created by mlcl_create_buffer and not yet released through
 * mlcl_release_buffer. */
long mlcl_live_buffers(void);

/* clEnqueueNDRangeKernel (no global offset); an injected fault returns
 * CL_OUT_OF_RESOURCES without enqueuing. */
cl_int mlcl_enqueue_kernel(cl_command_queue q, cl_kernel k, cl_uint dim, const size_t *global,
                           const size_t *local, cl_uint nwait, const cl_event *wait,
                           cl_event *ev);

#endif
