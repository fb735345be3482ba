#define MLB_HOST_FLOAT32 1 /* ec_*'s math: backward_math's text in float32 */
#include "expert_common.h"

#include "backward_math.h"

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const moelat_host_services *g_host;
static const char *g_name = "expert";
static char *g_cl_source;

void ec_init(const moelat_host_services *host, const char *expert_name) {
    /* A services table too old to hold log is treated as absent. */
    if (host && host->struct_size < offsetof(moelat_host_services, log) + sizeof(host->log))
        host = NULL;
    g_host = host;
    if (expert_name)
        g_name = expert_name;
}

const char *ec_expert_name(void) { return g_name; }

void ec_log(int level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_host && g_host->log)
        g_host->log(level, g_name, "%s", msg);
    else
        fprintf(stderr, "[%s] %s\n", g_name, msg);
}

const char *ec_join_cl_parts_after(const char *first, const char *const *parts) {
    if (g_cl_source)
        return g_cl_source;
    size_t len = first ? strlen(first) + 1 : 0;
    for (int i = 0; parts[i]; i++)
        len += strlen(parts[i]) + 1;
    char *s = malloc(len + 1);
    if (!s) {
        ec_log(MOELAT_LOG_ERROR, "out of memory joining the OpenCL source");
        return NULL;
    }
    size_t at = 0;
    for (int i = first ? -1 : 0; i < 0 || parts[i]; i++) {
        const char *part = i < 0 ? first : parts[i];
        size_t l = strlen(part);
        memcpy(s + at, part, l);
        at += l;
        s[at++] = '\n'; /* a part without a final newline must not glue to the next */
    }
    s[at] = '\0';
    g_cl_source = s;
    return s;
}

const char *ec_join_cl_parts(const char *const *parts) { return ec_join_cl_parts_after(NULL, parts); }

const char *ec_tuning(const moelat_cl_setup *setup) {
    if (!setup || setup->struct_size < offsetof(moelat_cl_setup, tuning) + sizeof setup->tuning ||
        !setup->tuning)
        return "";
    return setup->tuning;
}

/* [b, e) without the spaces at both ends. */
static void trim(const char **b, const char **e) {
    while (*b < *e && (**b == ' ' || **b == '\t'))
        (*b)++;
    while (*e > *b && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
        (*e)--;
}

/* The end of the entry at p: the first comma not escaped by a backslash
 * (inside a value '\,' is a comma and '\\' a backslash, as the engine
 * parses it), or the string's end. */
static const char *entry_end(const char *p) {
    while (*p && *p != ',')
        p += p[0] == '\\' && (p[1] == ',' || p[1] == '\\') ? 2 : 1;
    return p;
}

int ec_tuning_value(const char *tuning, const char *key, char *buf, size_t cap) {
    int found = 0;
    size_t klen = strlen(key);
    for (const char *p = tuning ? tuning : ""; *p;) {
        const char *end = entry_end(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *kb = p, *ke = eq ? eq : end;
        trim(&kb, &ke);
        if (eq && (size_t)(ke - kb) == klen && memcmp(kb, key, klen) == 0) {
            const char *vb = eq + 1, *ve = end;
            trim(&vb, &ve);
            size_t n = 0;
            for (const char *v = vb; v < ve; v++) {
                if (v[0] == '\\' && v + 1 < ve && (v[1] == ',' || v[1] == '\\'))
                    v++;
                if (n + 1 < cap)
                    buf[n++] = *v;
            }
            if (cap > 0)
                buf[n] = '\0';
            found = 1; /* keep going: a later setting wins */
        }
        p = *end ? end + 1 : end;
    }
    return found;
}

int ec_cells_knob(const char *tuning, const char *key, int max, int pow2) {
    char v[32];
    if (!ec_tuning_value(tuning, key, v, sizeof v) || !v[0])
        return 0;
    char *end;
    long cells = strtol(v, &end, 10);
    if (*end || cells < 1 || cells > max || (pow2 && (cells & (cells - 1)) != 0)) {
        ec_log(MOELAT_LOG_WARN, "tuning %s=%s is not %s from 1 to %d: ignored (the kernel chooses)", key, v,
               pow2 ? "a power of two" : "a whole number", max);
        return 0;
    }
    return (int)cells;
}

int ec_switch_knob(const char *tuning, const char *key) {
    char v[32];
    if (!ec_tuning_value(tuning, key, v, sizeof v) || !v[0])
        return -1;
    if (strcmp(v, "1") == 0 || strcmp(v, "on") == 0)
        return 1;
    if (strcmp(v, "0") == 0 || strcmp(v, "off") == 0)
        return 0;
    ec_log(MOELAT_LOG_WARN, "tuning %s=%s is none of 0, 1, on, off: ignored (the kernel chooses)", key, v);
    return -1;
}

cl_program ec_cl_tuned_program(const moelat_cl_setup *setup, const char *source, const char *options) {
    const void *ext = NULL;
    if (options && options[0] && g_host &&
        g_host->struct_size >= offsetof(moelat_host_services, get_extension) + sizeof g_host->get_extension &&
        g_host->get_extension)
        ext = g_host->get_extension(MOELAT_EXT_CL_BUILD);
    const moelat_ext_cl_build *cb = ext;
    if (cb && cb->struct_size < offsetof(moelat_ext_cl_build, build) + sizeof cb->build)
        cb = NULL;
    if (!options || !options[0] || !cb) {
        if (options && options[0])
            ec_log(MOELAT_LOG_WARN, "the engine cannot rebuild the program (no %s): tuning '%s' ignored",
                   MOELAT_EXT_CL_BUILD, options);
        cl_int err = clRetainProgram(setup->program);
        if (err != CL_SUCCESS) {
            ec_cl_fail(err, "cl_prepare: clRetainProgram");
            return NULL;
        }
        return setup->program;
    }
    cl_program prog = NULL;
    if (cb->build(setup, source, options, &prog) != MOELAT_EXPERT_OK || !prog) {
        ec_log(MOELAT_LOG_ERROR, "cl_prepare: building with tuning '%s' failed", options);
        return NULL;
    }
    return prog;
}

/* Frees the joined source when the plugin is unloaded (dlclose), so leak
 * checkers see no lost block. */
__attribute__((destructor)) static void ec_free_cl_source(void) {
    free(g_cl_source);
    g_cl_source = NULL;
}

/* ---- host math: backward_math's text, compiled here in float32 ---- */

float ec_gelu(float v) { return bm_gelu(v); }

float ec_sigmoid(float v) { return bm_sigmoid(v); }

void ec_dense(const float *W, const float *b, const float *in, int nin, float *out, int nout) {
    bm_dense(W, b, in, nin, out, nout);
}

void ec_layernorm(float *v, int n, const float *gain, const float *bias) {
    (void)bm_layernorm(v, n, gain, bias, v, v);
}

void ec_softmax(float *v, int n) { bm_softmax(v, n); }

/* ---- tensor specs ---- */

static moelat_tensor_spec *spec_next(ec_specs *s) {
    int i = s->n++;
    if (!s->out || i >= s->cap)
        return NULL;
    moelat_tensor_spec *t = &s->out[i];
    memset(t, 0, sizeof *t);
    return t;
}

static void spec_name(moelat_tensor_spec *t, const char *name, const char *suffix) {
    snprintf(t->suffix, sizeof t->suffix, "%s%s", name, suffix);
}

static void spec_uniform(ec_specs *s, const char *name, const char *suffix, int ndim, int d0,
                         int d1, int fan_in) {
    moelat_tensor_spec *t = spec_next(s);
    if (!t)
        return;
    spec_name(t, name, suffix);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->init = MOELAT_INIT_UNIFORM_FAN_IN;
    t->fan_in = fan_in;
}

static void spec_const(ec_specs *s, const char *name, const char *suffix, int ndim, int d0,
                       float value) {
    moelat_tensor_spec *t = spec_next(s);
    if (!t)
        return;
    spec_name(t, name, suffix);
    t->ndim = ndim;
    t->shape[0] = ndim > 0 ? d0 : 0;
    t->init = MOELAT_INIT_CONST;
    t->value = value;
}

void ec_spec_linear(ec_specs *s, const char *name, int in, int out) {
    spec_uniform(s, name, ".weight", 2, out, in, in);
    spec_uniform(s, name, ".bias", 1, out, 0, in);
}

void ec_spec_linear_nobias(ec_specs *s, const char *name, int in, int out) {
    spec_uniform(s, name, "", 2, out, in, in);
}

void ec_spec_layernorm(ec_specs *s, const char *name, int n) {
    spec_const(s, name, ".weight", 1, n, 1.0f);
    spec_const(s, name, ".bias", 1, n, 0.0f);
}

void ec_spec_scalar(ec_specs *s, const char *name, float value) {
    spec_const(s, name, "", 0, 0, value);
}

size_t ec_spec_numel(const moelat_tensor_spec *spec) {
    size_t n = 1;
    for (int d = 0; d < spec->ndim; d++)
        n *= (size_t)spec->shape[d];
    return n;
}

/* ---- OpenCL plumbing ---- */

const char *ec_cl_error_name(cl_int err) {
    switch (err) {
#define EC_CASE(e) \
    case e:        \
        return #e;
        EC_CASE(CL_SUCCESS)
        EC_CASE(CL_DEVICE_NOT_FOUND)
        EC_CASE(CL_DEVICE_NOT_AVAILABLE)
        EC_CASE(CL_COMPILER_NOT_AVAILABLE)
        EC_CASE(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        EC_CASE(CL_OUT_OF_RESOURCES)
        EC_CASE(CL_OUT_OF_HOST_MEMORY)
        EC_CASE(CL_PROFILING_INFO_NOT_AVAILABLE)
        EC_CASE(CL_MEM_COPY_OVERLAP)
        EC_CASE(CL_IMAGE_FORMAT_MISMATCH)
        EC_CASE(CL_IMAGE_FORMAT_NOT_SUPPORTED)
        EC_CASE(CL_BUILD_PROGRAM_FAILURE)
        EC_CASE(CL_MAP_FAILURE)
        EC_CASE(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        EC_CASE(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        EC_CASE(CL_COMPILE_PROGRAM_FAILURE)
        EC_CASE(CL_LINKER_NOT_AVAILABLE)
        EC_CASE(CL_LINK_PROGRAM_FAILURE)
        EC_CASE(CL_DEVICE_PARTITION_FAILED)
        EC_CASE(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
        EC_CASE(CL_INVALID_VALUE)
        EC_CASE(CL_INVALID_DEVICE_TYPE)
        EC_CASE(CL_INVALID_PLATFORM)
        EC_CASE(CL_INVALID_DEVICE)
        EC_CASE(CL_INVALID_CONTEXT)
        EC_CASE(CL_INVALID_QUEUE_PROPERTIES)
        EC_CASE(CL_INVALID_COMMAND_QUEUE)
        EC_CASE(CL_INVALID_HOST_PTR)
        EC_CASE(CL_INVALID_MEM_OBJECT)
        EC_CASE(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
        EC_CASE(CL_INVALID_IMAGE_SIZE)
        EC_CASE(CL_INVALID_SAMPLER)
        EC_CASE(CL_INVALID_BINARY)
        EC_CASE(CL_INVALID_BUILD_OPTIONS)
        EC_CASE(CL_INVALID_PROGRAM)
        EC_CASE(CL_INVALID_PROGRAM_EXECUTABLE)
        EC_CASE(CL_INVALID_KERNEL_NAME)
        EC_CASE(CL_INVALID_KERNEL_DEFINITION)
        EC_CASE(CL_INVALID_KERNEL)
        EC_CASE(CL_INVALID_ARG_INDEX)
        EC_CASE(CL_INVALID_ARG_VALUE)
        EC_CASE(CL_INVALID_ARG_SIZE)
        EC_CASE(CL_INVALID_KERNEL_ARGS)
        EC_CASE(CL_INVALID_WORK_DIMENSION)
        EC_CASE(CL_INVALID_WORK_GROUP_SIZE)
        EC_CASE(CL_INVALID_WORK_ITEM_SIZE)
        EC_CASE(CL_INVALID_GLOBAL_OFFSET)
        EC_CASE(CL_INVALID_EVENT_WAIT_LIST)
        EC_CASE(CL_INVALID_EVENT)
        EC_CASE(CL_INVALID_OPERATION)
        EC_CASE(CL_INVALID_GL_OBJECT)
        EC_CASE(CL_INVALID_BUFFER_SIZE)
        EC_CASE(CL_INVALID_MIP_LEVEL)
        EC_CASE(CL_INVALID_GLOBAL_WORK_SIZE)
        EC_CASE(CL_INVALID_PROPERTY)
        EC_CASE(CL_INVALID_IMAGE_DESCRIPTOR)
        EC_CASE(CL_INVALID_COMPILER_OPTIONS)
        EC_CASE(CL_INVALID_LINKER_OPTIONS)
        EC_CASE(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef EC_CASE
    default:
        return "CL_UNKNOWN_ERROR";
    }
}

int ec_cl_fail(cl_int err, const char *what) {
    ec_log(MOELAT_LOG_ERROR, "%s: %s (%d)", what, ec_cl_error_name(err), (int)err);
    return MOELAT_EXPERT_ERROR;
}

cl_kernel ec_cl_kernel(cl_program program, const char *name) {
    cl_int err = CL_SUCCESS;
    cl_kernel k = clCreateKernel(program, name, &err);
    if (err != CL_SUCCESS || !k) {
        char what[160];
        snprintf(what, sizeof what, "creating kernel %s", name);
        ec_cl_fail(err, what);
        return NULL;
    }
    return k;
}

int ec_cl_set_args(cl_kernel k, const char *kname, const ec_arg *args, int n) {
    for (int i = 0; i < n; i++) {
        cl_int err = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].value);
        if (err != CL_SUCCESS) {
            char what[160];
            snprintf(what, sizeof what, "kernel %s: setting argument %d", kname, i);
            return ec_cl_fail(err, what);
        }
    }
    return MOELAT_EXPERT_OK;
}

/* The work-group size: at most 64 (one cell per work-item, private-heavy
 * kernels), at most what the kernel allows on this device, a power of two. */
static size_t pick_local_size(cl_kernel k, cl_command_queue q) {
    cl_device_id dev = NULL;
    size_t kmax = 0;
    if (clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof dev, &dev, NULL) != CL_SUCCESS ||
        clGetKernelWorkGroupInfo(k, dev, CL_KERNEL_WORK_GROUP_SIZE, sizeof kmax, &kmax, NULL) !=
            CL_SUCCESS)
        return 0;
    size_t local = 64;
    while (local > kmax)
        local /= 2;
    return local;
}

int ec_cl_enqueue_items(cl_command_queue q, cl_kernel k, const char *kname, size_t n_items,
                        cl_uint num_wait, const cl_event *wait, cl_event *ev) {
    if (ev)
        *ev = NULL;
    if (n_items == 0) {
        /* Nothing to compute, but the caller still expects ordering after
         * its wait list: a marker gives that. */
        cl_int err = clEnqueueMarkerWithWaitList(q, num_wait, num_wait ? wait : NULL, ev);
        if (err != CL_SUCCESS) {
            char what[160];
            snprintf(what, sizeof what, "kernel %s: enqueueing a marker", kname);
            return ec_cl_fail(err, what);
        }
        return MOELAT_EXPERT_OK;
    }
    size_t local = pick_local_size(k, q);
    size_t global = n_items;
    if (local > 0)
        global = (n_items + local - 1) / local * local;
    cl_int err = clEnqueueNDRangeKernel(q, k, 1, NULL, &global, local > 0 ? &local : NULL,
                                        num_wait, num_wait ? wait : NULL, ev);
    if (err != CL_SUCCESS) {
        char what[160];
        snprintf(what, sizeof what, "kernel %s: enqueueing %zu work-items", kname, global);
        return ec_cl_fail(err, what);
    }
    return MOELAT_EXPERT_OK;
}

cl_mem ec_cl_offsets_buffer(cl_context ctx, const uint64_t *offsets, int n) {
    if (n <= 0 || !offsets) {
        ec_log(MOELAT_LOG_ERROR, "no tensor offsets given");
        return NULL;
    }
    cl_int *vals = malloc((size_t)n * sizeof *vals);
    if (!vals) {
        ec_log(MOELAT_LOG_ERROR, "out of memory for %d tensor offsets", n);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (offsets[i] > (uint64_t)INT_MAX) {
            ec_log(MOELAT_LOG_ERROR, "tensor %d offset %llu exceeds the int range of the kernels",
                   i, (unsigned long long)offsets[i]);
            free(vals);
            return NULL;
        }
        vals[i] = (cl_int)offsets[i];
    }
    cl_int err = CL_SUCCESS;
    cl_mem buf = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                (size_t)n * sizeof *vals, vals, &err);
    free(vals);
    if (err != CL_SUCCESS || !buf) {
        ec_cl_fail(err, "creating the tensor offset buffer");
        return NULL;
    }
    return buf;
}

int ec_cl_work_group(const moelat_cl_setup *setup) {
    int wg = 64;
    if (setup->struct_size >= offsetof(moelat_cl_setup, work_group) + sizeof setup->work_group &&
        setup->work_group != 0)
        wg = (int)setup->work_group;
    if (wg < 1 || (wg & (wg - 1)) != 0) {
        ec_log(MOELAT_LOG_ERROR, "cl_prepare: work-group size %d is not a power of two", wg);
        return -1;
    }
    return wg;
}

int ec_cl_check_fit(cl_kernel k, const char *kname, cl_device_id dev, size_t wg) {
    char what[160];
    size_t kmax = 0;
    cl_ulong kmem = 0, dmem = 0;
    cl_int err = clGetKernelWorkGroupInfo(k, dev, CL_KERNEL_WORK_GROUP_SIZE, sizeof kmax, &kmax, NULL);
    if (err != CL_SUCCESS) {
        snprintf(what, sizeof what, "cl_prepare: kernel %s: CL_KERNEL_WORK_GROUP_SIZE", kname);
        return ec_cl_fail(err, what);
    }
    if (kmax < wg) {
        ec_log(MOELAT_LOG_ERROR, "cl_prepare: kernel %s allows %zu work-items per group on this device, it needs %zu",
               kname, kmax, wg);
        return MOELAT_EXPERT_ERROR;
    }
    err = clGetKernelWorkGroupInfo(k, dev, CL_KERNEL_LOCAL_MEM_SIZE, sizeof kmem, &kmem, NULL);
    if (err != CL_SUCCESS) {
        snprintf(what, sizeof what, "cl_prepare: kernel %s: CL_KERNEL_LOCAL_MEM_SIZE", kname);
        return ec_cl_fail(err, what);
    }
    err = clGetDeviceInfo(dev, CL_DEVICE_LOCAL_MEM_SIZE, sizeof dmem, &dmem, NULL);
    if (err != CL_SUCCESS)
        return ec_cl_fail(err, "cl_prepare: CL_DEVICE_LOCAL_MEM_SIZE");
    if (dmem > 0 && kmem > dmem) {
        ec_log(MOELAT_LOG_ERROR, "cl_prepare: kernel %s needs %llu bytes of local memory, the device has %llu",
               kname, (unsigned long long)kmem, (unsigned long long)dmem);
        return MOELAT_EXPERT_ERROR;
    }
    return MOELAT_EXPERT_OK;
}

/* The first dimension of kname's reqd_work_group_size, 1..max; 0 on failure (logged). */
size_t ec_cl_compiled_size(cl_program program, cl_device_id dev, const char *kname, size_t max) {
    cl_kernel k = ec_cl_kernel(program, kname);
    if (!k)
        return 0;
    size_t size[3] = {0, 0, 0};
    cl_int err = clGetKernelWorkGroupInfo(k, dev, CL_KERNEL_COMPILE_WORK_GROUP_SIZE, sizeof size, size, NULL);
    clReleaseKernel(k);
    char what[160];
    if (err != CL_SUCCESS) {
        snprintf(what, sizeof what, "cl_prepare: CL_KERNEL_COMPILE_WORK_GROUP_SIZE of %s", kname);
        ec_cl_fail(err, what);
        return 0;
    }
    if (size[0] < 1 || size[0] > max) {
        ec_log(MOELAT_LOG_ERROR, "cl_prepare: %s reports %zu, not 1..%zu", kname, size[0], max);
        return 0;
    }
    return size[0];
}

size_t ec_cl_cells_per_group(cl_program program, cl_device_id dev, const char *kname, size_t max, const char *who,
                             const char *knob, int knob_set) {
    size_t cells = ec_cl_compiled_size(program, dev, kname, max);
    if (cells)
        ec_log(MOELAT_LOG_INFO, "%s: %zu chunk cells per work-group%s%s%s", who, cells, knob_set ? " (" : "",
               knob_set ? knob : "", knob_set ? ")" : "");
    return cells;
}
