/* Helpers shared by the built-in experts: the host math of docs/MODEL.md (the
 * readable reference), tensor-spec builders, and the OpenCL plumbing of the
 * batched path. Each plugin links its own copy, so the state kept here
 * (host services, expert name) is per plugin. */
#ifndef MOELAT_EXPERT_COMMON_H
#define MOELAT_EXPERT_COMMON_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <stdarg.h>
#include <stddef.h>

#include "moelat/expert_abi.h"

/* ---- plugin identity and logging ---- */

/* Remembers the engine's services (may be NULL: messages go to stderr) and
 * the expert's name, which every message carries as its module. */
void ec_init(const moelat_host_services *host, const char *expert_name);
const char *ec_expert_name(void);
void ec_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Joins a NULL-terminated list of source parts into one string, once; the
 * result lives as long as the plugin is loaded. NULL on allocation failure. */
const char *ec_join_cl_parts(const char *const *parts);
/* The same with one line (a #define of a tuning knob, say) in front. */
const char *ec_join_cl_parts_after(const char *first, const char *const *parts);

/* ---- tuning knobs (moelat_cl_setup.tuning, ABI 1.4) ---- */

/* The lattice's tuning string, "key=value,..."; "" when the engine is
 * older than 1.4 (struct_size does not cover the field) or gave NULL. */
const char *ec_tuning(const moelat_cl_setup *setup);

/* Copies the value of key in tuning (the last one when repeated; spaces
 * around keys and values ignored; '\,' and '\\' inside a value unescaped
 * to a comma and a backslash) into buf; 1 when present, else 0. */
int ec_tuning_value(const char *tuning, const char *key, char *buf, size_t cap);

/* A cells-per-work-group knob: its value when it is from 1 to max (and a
 * power of two if pow2), else 0 ("the kernel chooses"; a set but invalid
 * value is logged). */
int ec_cells_knob(const char *tuning, const char *key, int max, int pow2);

/* An on/off knob: 1 for 1 or on, 0 for 0 or off, else -1 ("the kernel
 * chooses"; a set but invalid value is logged). */
int ec_switch_knob(const char *tuning, const char *key);

/* ---- host math (float32, as the device computes it) ----
 * engine/sdk/backward_math.c's functions in float32 (MLB_HOST_FLOAT32):
 * a unit that defines it before including backward_math.h gets the same
 * ones as bm_*, for a forward written once for this path and float64. */

float ec_gelu(float v);    /* exact erf form */
float ec_sigmoid(float v);

/* out[o] = b[o] + sum_i W[o][i] in[i]; W is [nout][nin] (PyTorch's
 * Linear); b may be NULL. */
void ec_dense(const float *W, const float *b, const float *in, int nin, float *out, int nout);

/* In-place LayerNorm over n values, eps 1e-5. */
void ec_layernorm(float *v, int n, const float *gain, const float *bias);

/* In-place softmax over n values (max-subtracted). */
void ec_softmax(float *v, int n);

/* ---- tensor specs ---- */

/* Collects specs in declaration order. Specs beyond cap are only counted,
 * so the same code answers the "how many" call (cap 0). */
typedef struct ec_specs {
    moelat_tensor_spec *out;
    int cap;
    int n;
} ec_specs;

/* "<name>.weight" [out, in] and "<name>.bias" [out], both U(fan_in = in). */
void ec_spec_linear(ec_specs *s, const char *name, int in, int out);
/* A bias-free Linear: "<name>" [out, in], U(fan_in = in). */
void ec_spec_linear_nobias(ec_specs *s, const char *name, int in, int out);
/* "<name>.weight" [n] = 1 and "<name>.bias" [n] = 0. */
void ec_spec_layernorm(ec_specs *s, const char *name, int n);
/* A learnable scalar (ndim 0) with its initial value. */
void ec_spec_scalar(ec_specs *s, const char *name, float value);

/* Number of floats of one spec. */
size_t ec_spec_numel(const moelat_tensor_spec *spec);

/* ---- OpenCL plumbing ---- */

const char *ec_cl_error_name(cl_int err);

/* Creates a kernel; NULL after logging "<expert>: kernel <name>: <error>". */
cl_kernel ec_cl_kernel(cl_program program, const char *name);

/* One kernel argument: size and address of the value. */
typedef struct ec_arg {
    size_t size;
    const void *value;
} ec_arg;
#define EC_ARG(v) ((ec_arg){sizeof(v), &(v)})
/* A __global pointer argument that may be NULL. */
#define EC_ARG_MEM(m) ((ec_arg){sizeof(cl_mem), &(m)})

/* Sets args[0..n) in order; logs the failing argument's index. */
int ec_cl_set_args(cl_kernel k, const char *kname, const ec_arg *args, int n);

/* Enqueues k over n_items work-items (the kernel returns for ids >= n_items:
 * the global size is rounded up to a work-group size the kernel accepts).
 * ev may be NULL. Returns MOELAT_EXPERT_OK or logs and returns ERROR. */
int ec_cl_enqueue_items(cl_command_queue q, cl_kernel k, const char *kname, size_t n_items,
                        cl_uint num_wait, const cl_event *wait, cl_event *ev);

/* A read-only buffer holding every tensor's offset as int (kernels index
 * the params buffer with it). NULL after logging. */
cl_mem ec_cl_offsets_buffer(cl_context ctx, const uint64_t *offsets, int n);

/* Logs a CL failure of this expert: "<what>: <CL error name>". */
int ec_cl_fail(cl_int err, const char *what);

/* Lanes per cell the program was built for: setup->work_group (ABI 1.1);
 * an older engine, or 0, built it without -D MOELAT_WG, which leaves the
 * helpers' default of 64. Logs and returns -1 unless a power of two. */
int ec_cl_work_group(const moelat_cl_setup *setup);

/* Dimension 0 of kname's required work-group size (the way a kernel
 * source tells the host a compile-time choice), checked to lie in
 * 1..max; 0 (logged) when the kernel is missing or reports another. */
size_t ec_cl_compiled_size(cl_program program, cl_device_id dev, const char *kname, size_t max);

/* A kernel that runs exactly wg lanes per group: checks, at prepare time,
 * that this device can launch it (work-group size and local memory of the
 * built kernel), so that a misfit falls back to the host instead of
 * failing at every enqueue. Logs what does not fit. */
int ec_cl_check_fit(cl_kernel k, const char *kname, cl_device_id dev, size_t wg);

/* The program the expert's kernels come from, with a reference the caller
 * releases: setup->program when options is NULL or "", else the expert's
 * source built again by the engine (extension "moelat.cl.build/1") with
 * options (the -D of a tuning knob) added to the engine's. NULL after
 * logging; an engine without the extension gets setup->program and a
 * warning that the knob is ignored. */
cl_program ec_cl_tuned_program(const moelat_cl_setup *setup, const char *source, const char *options);

/* Chunk cells per work-group the program chose: the first dimension of
 * the reqd_work_group_size of kname (a kernel that never runs declares
 * it), 1..max, logged as "<who>: N chunk cells per work-group", with
 * " (<knob>)" when the tuning knob set it. 0 on failure (logged). */
size_t ec_cl_cells_per_group(cl_program program, cl_device_id dev, const char *kname, size_t max, const char *who,
                             const char *knob, int knob_set);

#endif
