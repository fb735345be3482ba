/*
 * libmoelat public API: a 3D lattice of cells whose update is a mixture of
 * experts (see docs/MODEL.md). Handles are opaque; every call that can fail
 * returns a moelat_status with a message (see "Errors" below). There is no
 * global mutable state: lattices are independent.
 *
 * Errors, one convention for every part of the library (lattice, config,
 * gradients, optimizer, groups, training):
 *  - A call that can fail returns a moelat_status: MOELAT_OK (0) or one of
 *    the MOELAT_ERR_* below; moelat_status_name() gives its name.
 *  - Its message names what failed (the argument, file, key, tensor or
 *    struct and the value it refused). A call on an object keeps it on the
 *    object until that object's next failing call: moelat_last_error(lat)
 *    for a lattice and the moelat_grad recorded from it (grad.h),
 *    moelat_optimizer_last_error(opt) (optim.h), moelat_group_last_error(g)
 *    (group.h), moelat_trainer_last_error(t) (train.h); each object type
 *    added later has a *_last_error of its own.
 *    A call that creates an object or works without one (moelat_*_create,
 *    moelat_config_*, moelat_checkpoint_config, ...) writes it into the
 *    caller's err buffer of errlen bytes (always NUL-terminated, cut to fit;
 *    err may be NULL), since there is no object to hold it.
 *  - A failed call changes none of its outputs, nor the object, unless its
 *    comment says otherwise (moelat_step keeps the failing step's states).
 *
 * Versioned structs: every struct a caller allocates and passes in
 * (moelat_config, moelat_report here, moelat_device_info in inspect.h,
 * moelat_slab_info in group.h, moelat_grad_options in grad.h, the
 * trainer's in train.h) begins with
 * uint32_t struct_size, the size of the struct as the caller was compiled.
 * Set it with the struct's *_INIT initializer or *_init() function (both
 * are in the headers, so the size is the caller's own; the library
 * functions moelat_grad_options_default and moelat_train_params_default set
 * the size of the library's own layout). The library reads
 * and writes only the fields that lie wholly within struct_size: a program
 * built against an older, smaller layout keeps working with a newer
 * library, which leaves the fields it added at their defaults. A
 * struct_size below the first versioned layout (MOELAT_*_SIZE_V1) or above
 * the library's own layout (moelat_struct_size()) is refused with
 * MOELAT_ERR_INVALID naming the struct. Fields are only ever appended.
 */
#ifndef MOELAT_H
#define MOELAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "moelat/api.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOELAT_VERSION "0.1.0"
/* The library's ABI version: its soversion (libmoelat.so.1). 1: versioned
 * public structs (struct_size first), moelat_list_devices' element size,
 * escaped commas in tuning values (moelat_version() says more). */
#define MOELAT_ABI_VERSION 1
#define MOELAT_BANDS 3     /* local, functional, distant */
#define MOELAT_EXT_SIZE 16 /* external inputs per cell of the input face */
#define MOELAT_MAX_PLUGIN_PATHS 8

typedef enum moelat_status {
    MOELAT_OK = 0,
    MOELAT_ERR_INVALID = 1,   /* bad argument or config */
    MOELAT_ERR_IO = 2,        /* a file could not be read or written */
    MOELAT_ERR_FORMAT = 3,    /* a file is malformed */
    MOELAT_ERR_NOMEM = 4,
    MOELAT_ERR_DEVICE = 5,    /* OpenCL failure */
    MOELAT_ERR_PLUGIN = 6,    /* an expert could not be loaded or failed */
    MOELAT_ERR_NONFINITE = 7, /* a state became NaN or Inf */
    MOELAT_ERR_MISMATCH = 8   /* batch and per-cell results disagree */
} moelat_status;

/* "MOELAT_OK", "MOELAT_ERR_INVALID", ... for a status, or NULL for a
 * number that is none (statuses are numbered from 0 without gaps, so
 * counting up until NULL lists them all). */
MOELAT_API const char *moelat_status_name(int status);

/* The library's version, ABI version and what changed in that ABI, as one
 * line: "moelat 0.1.0, ABI 1 (libmoelat.so.1): ...". */
MOELAT_API const char *moelat_version(void);

/* The size in bytes of a public struct as this library lays it out, by its
 * C name ("moelat_config", "moelat_report", "moelat_device_info",
 * "moelat_slab_info", "moelat_grad_options", "moelat_hidden_size",
 * "moelat_path_stats"); 0 for a name it does not know. Bindings that mirror
 * the structs (python/moelat/_lib.py) compare their sizes with these. */
MOELAT_API uint32_t moelat_struct_size(const char *name);

typedef enum moelat_mode {
    MOELAT_MODE_PERCELL = 0,
    MOELAT_MODE_BATCH = 1,
    MOELAT_MODE_AUTO = 2
} moelat_mode;

typedef enum moelat_cnf_mode { MOELAT_CNF_EULER = 0, MOELAT_CNF_LIPSCHITZ = 1 } moelat_cnf_mode;

typedef struct moelat_hidden_size {
    char name[32];
    int32_t value;
} moelat_hidden_size;

/* Model and execution settings. Start from MOELAT_CONFIG_INIT or
 * moelat_config_init() (struct_size), fill with moelat_config_preset(),
 * then override fields or merge a JSON file with moelat_config_load_json(). */
typedef struct moelat_config {
    uint32_t struct_size;         /* sizeof(moelat_config) of the caller */
    char preset[32];
    int32_t dims[3];              /* X, Y, Z */
    int32_t state_size;           /* S */
    double radius_ratio;
    double band_ratio[3];         /* local, functional, distant edges (x r) */
    moelat_hidden_size hidden[16];/* named hidden sizes: h1 h2 ph hd md ode_hidden gate_hidden ... */
    int32_t n_hidden;
    char expert[MOELAT_BANDS][64];/* plugin name serving each band */
    int32_t cnf_mode;             /* moelat_cnf_mode */
    int32_t cnf_steps;
    uint64_t seed;

    /* execution */
    int32_t threads;              /* host threads; 0 = all cores */
    int32_t mode;                 /* moelat_mode; default auto: batched when a
                                     device passes the upgrade check, else
                                     per cell (the report says which, why) */
    int32_t batch_threshold;      /* fewest cells for a chunk to go to the device; 0 = default */
    int32_t chunk[3];             /* chunk box; 0 = default */
    int32_t queues;               /* OpenCL command queues; 0 = default */
    int32_t profile;              /* 1: time every device kernel (the report's
                                     device times); 0 (default): no profiling
                                     events, faster small steps */
    char device[128];             /* index or name substring; "" = MOELAT_DEVICE or default */
    char plugin_paths[MOELAT_MAX_PLUGIN_PATHS][512]; /* searched before the defaults */
    int32_t n_plugin_paths;
    /* Tuning knobs, "key=value,..." (README's table: agg_vector,
     * cl_options, upgrade_check, the experts' functional_gemm, ...).
     * "" = every default; an unknown key or a bad value fails validation. A comma or a
     * backslash inside a value is written '\,' or '\\'
     * (moelat_tuning_append in util.h does it). Layout 2. */
    char tuning[512];
} moelat_config;

/* Layout 1, the smallest struct_size accepted: up to n_plugin_paths
 * (without tuning, which then stays ""). */
#define MOELAT_CONFIG_SIZE_V1 offsetof(moelat_config, tuning)
#define MOELAT_CONFIG_INIT {.struct_size = (uint32_t)sizeof(moelat_config)}

/* Zeroes cfg and sets its struct_size: the first call on a config. */
static inline void moelat_config_init(moelat_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = (uint32_t)sizeof *cfg;
}

/* Names of the bands, index 0..2. */
MOELAT_API const char *moelat_band_name(int band);

/* Fills cfg with a preset: "debug", "experiment" or "optimized" (every
 * field within cfg->struct_size, which must be set: moelat_config_init). */
MOELAT_API moelat_status moelat_config_preset(const char *name, moelat_config *cfg,
                                   char *err, size_t errlen);
/* Merges a JSON config file into cfg ("preset" first, then other keys).
 * A key whose field lies past cfg->struct_size is refused. */
MOELAT_API moelat_status moelat_config_load_json(const char *path, moelat_config *cfg,
                                      char *err, size_t errlen);
/* Looks up a named hidden size; returns fallback when absent. This and
 * moelat_config_radius read only fields of layout 1 and, having no status
 * to return, do not check struct_size. */
MOELAT_API int32_t moelat_config_hidden(const moelat_config *cfg, const char *name, int32_t fallback);
/* Sets (adds or replaces) a named hidden size. */
MOELAT_API moelat_status moelat_config_set_hidden(moelat_config *cfg, const char *name, int32_t value);
/* Radius r of cfg's lattice. */
MOELAT_API double moelat_config_radius(const moelat_config *cfg);

/* ---- Logging ----------------------------------------------------------
 * The engine logs per module ("batch", "plugins", "kernel_cache", "cl",
 * "cl_build", an expert's name, ...) at levels 0 error, 1 warn, 2 info,
 * 3 debug (enum moelat_log_level of expert_abi.h). Which messages pass is set
 * by MOELAT_LOG (see README) and moelat_set_log_level. Both settings are
 * process-wide, as the log itself is. */

/* Receives each message that passes the filter: module, level (0..3) and the
 * formatted message without a trailing newline. It may be called from any
 * thread the engine runs (a worker, a device thread), concurrently. */
typedef void (*moelat_log_callback)(void *arg, const char *module, int level, const char *message);

/* Sends messages to fn (with arg) instead of stderr; NULL restores stderr.
 * A message already being delivered may still reach the previous callback. */
MOELAT_API void moelat_set_log_callback(moelat_log_callback fn, void *arg);

/* Sets the most verbose level that passes for module (NULL or "": the
 * default of modules without a setting of their own); -1 silences it.
 * Overrides MOELAT_LOG for that module. MOELAT_ERR_INVALID for a level
 * outside -1..3 or a module name of 32 characters or more, and when 32
 * modules have settings already. */
MOELAT_API moelat_status moelat_set_log_level(const char *module, int level);

typedef struct moelat_lattice moelat_lattice;

/* Creates a lattice: loads the experts, builds the stencil, initialises
 * weights and states from cfg->seed. On failure *out is NULL and err holds
 * the reason. Fields past cfg->struct_size take their defaults. */
MOELAT_API moelat_status moelat_lattice_create(const moelat_config *cfg, moelat_lattice **out,
                                    char *err, size_t errlen);
MOELAT_API void moelat_lattice_destroy(moelat_lattice *lat);
MOELAT_API const char *moelat_last_error(const moelat_lattice *lat);
/* The lattice's config in the library's layout (its struct_size says how
 * large); a caller built against a smaller layout reads its own fields. */
MOELAT_API const moelat_config *moelat_lattice_config(const moelat_lattice *lat);

MOELAT_API size_t moelat_cell_count(const moelat_lattice *lat);
MOELAT_API int32_t moelat_state_size(const moelat_lattice *lat);
/* Steps run so far. */
MOELAT_API uint64_t moelat_step_count(const moelat_lattice *lat);

/* Runs n synchronous steps. After each step the states are checked for NaN
 * and Inf; MOELAT_ERR_NONFINITE stops the run (states keep the bad step). */
MOELAT_API moelat_status moelat_step(moelat_lattice *lat, int n);

/* States: N x S floats, cell-major, i = x + X*(y + Y*z). */
MOELAT_API moelat_status moelat_get_states(moelat_lattice *lat, float *dst, size_t count);
MOELAT_API moelat_status moelat_set_states(moelat_lattice *lat, const float *src, size_t count);
/* External input of the z = 0 face: X x Y x MOELAT_EXT_SIZE floats, or
 * NULL to clear it. */
MOELAT_API moelat_status moelat_set_external_input(moelat_lattice *lat, const float *ext, size_t count);
/* Output face z = Z-1: X x Y x S floats. */
MOELAT_API moelat_status moelat_get_outputs(moelat_lattice *lat, float *dst, size_t count);

/* Files: weights as safetensors, states as .npy (float32, (Z, Y, X, S)). */
MOELAT_API moelat_status moelat_load_weights(moelat_lattice *lat, const char *path);
MOELAT_API moelat_status moelat_save_weights(moelat_lattice *lat, const char *path);
MOELAT_API moelat_status moelat_load_states(moelat_lattice *lat, const char *path);
MOELAT_API moelat_status moelat_save_states(moelat_lattice *lat, const char *path);

/* Execution mode, may change between any two steps. */
MOELAT_API moelat_status moelat_set_mode(moelat_lattice *lat, moelat_mode mode);
MOELAT_API moelat_mode moelat_get_mode(const moelat_lattice *lat);
/* Builds kernels, uploads weights and checks a sample of cells against the
 * per-cell path; enables batch mode only when they agree. */
MOELAT_API moelat_status moelat_upgrade_to_batch(moelat_lattice *lat);
/* Name of the OpenCL device in use, or "host" when none. */
MOELAT_API const char *moelat_device_name(const moelat_lattice *lat);

typedef struct moelat_path_stats {
    uint64_t chunks;
    uint64_t total_cells;
    double total_time_ms;
    double avg_time_ms;
    double avg_cells;
    double avg_cells_per_ms;
} moelat_path_stats;

#define MOELAT_MAX_FALLBACK_REASONS 8

typedef struct moelat_report {
    uint32_t struct_size;                 /* sizeof(moelat_report) of the caller */
    uint64_t steps;
    uint64_t total_chunks_processed;
    uint64_t batch_chunks;
    uint64_t percell_chunks;
    moelat_path_stats batch_stats;
    moelat_path_stats percell_stats;
    double speedup;                       /* batch cells/ms over per-cell cells/ms; 0 if unknown */
    char expert_name[MOELAT_BANDS][64];
    uint64_t expert_calls[MOELAT_BANDS];  /* device enqueues */
    double expert_device_ms[MOELAT_BANDS];/* from profiling events */
    double aggregate_device_ms;           /* neighbour aggregation */
    double gate_device_ms;                /* gate and combine */
    double precompute_device_ms;          /* per-step precomputation */
    int32_t profiled;                     /* 1 when the device times above were
                                             measured (config profile = 1) */
    uint64_t fallbacks;
    int32_t n_fallback_reasons;
    char fallback_reason[MOELAT_MAX_FALLBACK_REASONS][256];
    uint64_t fallback_count[MOELAT_MAX_FALLBACK_REASONS];
    /* Layout 2 from here. Routing statistics over the cell updates since the last reset (both
     * paths): the gate's softmax weight of each band averaged over cells and
     * steps, and the share of cell updates in which that band's weight is
     * the largest (ties go to the lower band). Both sum to 1 when
     * routed_cells > 0. An empty band's weight counts as the gate computed
     * it (MODEL.md: the softmax runs over all bands). */
    uint64_t routed_cells;                /* cell updates counted */
    double gate_weight_mean[MOELAT_BANDS];
    double gate_top_share[MOELAT_BANDS];
    /* Layout 3 from here. Which path the steps ran on: "batch", "percell", "mixed" (chunks on
     * both) or "none" (no step yet), and why the mode chose it ("device
     * NAME passed the upgrade check", "no OpenCL device: ...", "mode
     * percell asked for"). */
    char path[16];
    char path_reason[256];
    /* Layout 4 from here. The gradient engine (moelat/grad.h): how often
     * what lasts between recordings was built (its host half, and its
     * device half per device), and how many recordings needed new memory.
     * Neither grows after a training loop's first sample. */
    uint64_t grad_builds;
    uint64_t grad_recording_allocs;
} moelat_report;

/* Layout 1, the smallest struct_size accepted: up to fallback_count;
 * layout 2 adds the routing statistics, layout 3 the path, layout 4 the
 * gradient engine's counts. */
#define MOELAT_REPORT_SIZE_V1 offsetof(moelat_report, routed_cells)
#define MOELAT_REPORT_SIZE_V2 offsetof(moelat_report, path)
#define MOELAT_REPORT_SIZE_V3 offsetof(moelat_report, grad_builds)
#define MOELAT_REPORT_INIT {.struct_size = (uint32_t)sizeof(moelat_report)}

static inline void moelat_report_init(moelat_report *r) {
    memset(r, 0, sizeof *r);
    r->struct_size = (uint32_t)sizeof *r;
}

/* Fills the fields of report within report->struct_size (set it first:
 * MOELAT_REPORT_INIT or moelat_report_init); nothing past it is written. */
MOELAT_API moelat_status moelat_get_report(const moelat_lattice *lat, moelat_report *report);
MOELAT_API void moelat_reset_report(moelat_lattice *lat);

/* ---- Checkpoints ----------------------------------------------------
 * A checkpoint directory holds everything a run needs to continue
 * bit-exactly: the states (.npy), the external input when one is set
 * (.npy), the weights (safetensors), the model config (JSON in the format of
 * moelat_config_load_json, model keys only) and manifest.json, which names
 * those files with the step counter, the weights digest and checksums.
 * Every file is written atomically and the data files carry a generation
 * number in their names, so an interrupted save leaves the previous
 * checkpoint intact: the manifest is written last, and files it no longer
 * names are removed only after it is in place. One writer per directory. */

/* Saves the lattice at its current step into dir (created if missing). */
MOELAT_API moelat_status moelat_save_checkpoint(moelat_lattice *lat, const char *dir);

/* Loads a checkpoint into a lattice created with the same model config:
 * states, external input, step counter and the checkpoint's weights. Every
 * model field (preset, dims, state size, radius ratio, band ratios, hidden
 * sizes, experts, cnf mode and steps, seed) must match; otherwise
 * MOELAT_ERR_INVALID names each difference ("checkpoint dims 9x8x7, this
 * run 10x8x7"). Files that fail their checksum are MOELAT_ERR_FORMAT. On
 * any error the lattice is unchanged. */
MOELAT_API moelat_status moelat_resume_checkpoint(moelat_lattice *lat, const char *dir);

/* Flags of moelat_resume_checkpoint_ex. */
#define MOELAT_RESUME_KEEP_WEIGHTS 1u /* keep the lattice's weights; refuse
                                         unless their digest is the checkpoint's */

MOELAT_API moelat_status moelat_resume_checkpoint_ex(moelat_lattice *lat, const char *dir, unsigned flags);

/* Reads a checkpoint's model config into cfg (model fields replaced,
 * execution fields kept; cfg->struct_size set) and its step into *step (may be NULL), so that a
 * caller can create the matching lattice before resuming. */
MOELAT_API moelat_status moelat_checkpoint_config(const char *dir, moelat_config *cfg, uint64_t *step,
                                       char *err, size_t errlen);

/* Digest of the lattice's weights (FNV-1a over every value), as stored in
 * a checkpoint's manifest. */
MOELAT_API uint64_t moelat_weights_digest(moelat_lattice *lat);

/* ---- Slabs: several devices, MPI ranks ----------------------------
 * A slab owner holds a whole lattice (same config and weights, so the
 * boundaries and the z = 0 input face stay global) but steps only its own
 * planes. Halo planes, those within moelat_lattice_halo_depth() of the
 * slab, must be copied in from their owners before every step; planes
 * farther away are never read. moelat_group (group.h) does all of this. */

/* Steps update only the cells with z0 <= z < z1 (0 <= z0 < z1 <= Z; the
 * default is every plane). The other planes are not updated: after a step
 * they hold stale or zero values, and moelat_get_states(),
 * moelat_get_outputs() and moelat_save_states() return them as they are. */
MOELAT_API moelat_status moelat_lattice_set_active_planes(moelat_lattice *lat, int32_t z0, int32_t z1);
MOELAT_API void moelat_lattice_active_planes(const moelat_lattice *lat, int32_t *z0, int32_t *z1);
/* The states of planes [z0, z1): count = (z1 - z0) * X * Y * S floats,
 * cell-major as moelat_get_states (planes are contiguous), read from or
 * written to wherever the newest states live (host or device). */
MOELAT_API moelat_status moelat_lattice_get_planes(moelat_lattice *lat, int32_t z0, int32_t z1, float *dst, size_t count);
MOELAT_API moelat_status moelat_lattice_set_planes(moelat_lattice *lat, int32_t z0, int32_t z1, const float *src,
                                        size_t count);
/* Asks the next step (the first of the next moelat_step call) to copy
 * planes [z0, z1) of the states it computes into dst (count as for
 * moelat_lattice_get_planes) before it returns: the planes a slab owner
 * sends its neighbours. On a device the copy runs as soon as the chunks
 * that write those planes are done, while the rest of the step runs (a
 * slab's halo planes have chunks of their own, enqueued first); otherwise
 * at the step's end. ready (may be NULL) is then called with arg, once,
 * on the thread running moelat_step and before it returns: as soon as dst
 * holds the planes, so that a caller stepping on another thread can send
 * them on while the step goes on (the MPI runner does). A failed step
 * still calls it, with dst unspecified: moelat_step's status says which.
 * Up to 4 requests per step. */
typedef void (*moelat_planes_ready)(void *arg);
MOELAT_API moelat_status moelat_lattice_deliver_planes(moelat_lattice *lat, int32_t z0, int32_t z1, float *dst, size_t count,
                                            moelat_planes_ready ready, void *arg);
/* Halo depth: the largest |dz| of any stencil offset (at most
 * ceil(0.99 r)). A cell's update reads planes z - h .. z + h only. */
MOELAT_API int32_t moelat_lattice_halo_depth(const moelat_lattice *lat);

/* All weights as one flat float array, in the order of the weights file's
 * blocks (local, functional, distant, gate), each in tensor order: for
 * sending weights between processes without a file. */
MOELAT_API size_t moelat_weights_count(moelat_lattice *lat);
MOELAT_API moelat_status moelat_get_weights(moelat_lattice *lat, float *dst, size_t count);
MOELAT_API moelat_status moelat_set_weights(moelat_lattice *lat, const float *src, size_t count);

#ifdef __cplusplus
}
#endif

#endif /* MOELAT_H */
