/*
 * Looking inside a lattice and its surroundings: what `moelat-engine check`,
 * `bench`, `devices` and `plugins` need beyond the lattice API, for tools
 * and tests. None of it is needed to step a lattice; answers describe the
 * engine as it is built now and may change between minor versions.
 */
#ifndef MOELAT_INSPECT_H
#define MOELAT_INSPECT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "moelat/expert_abi.h"
#include "moelat/moelat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The stencil and the neighbour gather (docs/MODEL.md) ------------- */

/* Offsets of band k (interior count: a cell near a face has fewer in the
 * lattice). -1 for a bad band. */
MOELAT_API int32_t moelat_stencil_count(const moelat_lattice *lat, int band);
/* Offset j of band k as (dx, dy, dz). */
MOELAT_API moelat_status moelat_stencil_offset(const moelat_lattice *lat, int band, int32_t j, int32_t d[3]);

/* Band k's neighbours of cell (x, y, z) in states (N x S, as
 * moelat_get_states writes them): adds the sum of their states to sum and
 * of their absolute values to abs_sum (S doubles each; either may be
 * NULL) and returns how many lie in the lattice, or -1 on a bad argument. */
MOELAT_API int32_t moelat_band_sums(const moelat_lattice *lat, int band, const int32_t cell[3],
                                    const float *states, double *sum, double *abs_sum);

/* ---- One chunk, stage by stage (`check --experts`) -------------------- */

/* Box chunks of the lattice's cover: count, and chunk i's origin and
 * extent. Chunk cell c lies at origin + (c % ex, (c / ex) % ey,
 * c / (ex ey)), as in moelat_cl_chunk. */
MOELAT_API int32_t moelat_chunk_count(const moelat_lattice *lat);
MOELAT_API moelat_status moelat_chunk_box(const moelat_lattice *lat, int32_t chunk, int32_t origin[3],
                                          int32_t extent[3]);

/* The name of band k's expert, or NULL. */
MOELAT_API const char *moelat_expert_name(const moelat_lattice *lat, int band);

/* A batch-mode lattice's device: 1 when band k's expert runs there (its
 * OpenCL path built and prepared), else 0. */
MOELAT_API int moelat_expert_on_device(const moelat_lattice *lat, int band);
/* Bit k set when the device aggregation computes band k's mean of |n_j|. */
MOELAT_API int moelat_absmean_bands(const moelat_lattice *lat);
/* Command queues of the batched path (0 before it is set up). */
MOELAT_API int moelat_batch_queues(const moelat_lattice *lat);

/* Runs the device's stages on one chunk from the current states, without
 * stepping: per band the expert output, mean and mean of |n_j| (n_cells x S
 * each, chunk order; NaN where not computed, see moelat_absmean_bands),
 * and when gated is not NULL (and every expert is on the device) the
 * gated update. A batch-mode lattice only. */
MOELAT_API moelat_status moelat_device_stages(moelat_lattice *lat, int32_t chunk, float *const out[MOELAT_BANDS],
                                              float *const mean[MOELAT_BANDS],
                                              float *const absmean[MOELAT_BANDS], float *gated);

/* Band k's expert alone on the host for every cell of the box [origin,
 * origin + extent) (any box of the lattice, such as another lattice's
 * chunk), from states (N x S): out holds the box's cells x S in chunk
 * order, zeros where the band is empty. */
MOELAT_API moelat_status moelat_host_expert(moelat_lattice *lat, int band, const int32_t origin[3],
                                            const int32_t extent[3], const float *states, float *out);

/* The host gate of one cell: w[MOELAT_BANDS] from its state x and nu, the
 * mean of its neighbours over all bands (S floats each). */
MOELAT_API moelat_status moelat_host_gate(moelat_lattice *lat, const float *x, const float *nu,
                                          float w[MOELAT_BANDS]);

/* ---- Costs (`bench`) -------------------------------------------------- */

/* Useful FLOPs per cell update; part[5] (may be NULL) splits them into
 * aggregation, the three experts and the gate. */
MOELAT_API double moelat_flops_per_cell(const moelat_lattice *lat, double part[5]);
/* Times the host path on rows of cells spread over the lattice (at most
 * max_cells) and returns the extrapolated ms per step; *sampled is 1 when
 * only a sample ran. States are not changed. */
MOELAT_API double moelat_host_time_sample(moelat_lattice *lat, size_t max_cells, int *sampled);

/* ---- OpenCL devices --------------------------------------------------- */

typedef struct moelat_device_info {
    uint32_t struct_size; /* sizeof(moelat_device_info) of the caller */
    int index; /* across all platforms, in listing order */
    char platform_name[128];
    char platform_version[128];
    char name[256];
    char vendor[128];
    char type[16]; /* "GPU", "CPU", "ACCELERATOR", "OTHER" */
    char version[128];
    char driver_version[128];
    uint32_t compute_units;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;
    uint64_t local_mem_bytes;
    size_t max_work_group_size;
    int fp64;
    int fp16;
} moelat_device_info;

/* Layout 1 is the whole struct above. */
#define MOELAT_DEVICE_INFO_SIZE_V1 sizeof(moelat_device_info)
#define MOELAT_DEVICE_INFO_INIT {.struct_size = (uint32_t)sizeof(moelat_device_info)}

static inline void moelat_device_info_init(moelat_device_info *d) {
    memset(d, 0, sizeof *d);
    d->struct_size = (uint32_t)sizeof *d;
}

/* Every OpenCL device, in a malloc'd array the caller frees with free().
 * Each element is struct_size bytes, the caller's sizeof(moelat_device_info)
 * (so that indexing the array works whichever layout the caller has), and
 * has its struct_size set. */
MOELAT_API moelat_status moelat_list_devices(moelat_device_info **out, int *count, uint32_t struct_size, char *err,
                                             size_t errlen);
/* The device a lattice would take for spec (an index or a case-insensitive
 * name substring; NULL or "" means $MOELAT_DEVICE, else the first GPU,
 * else the first device); the error lists the devices that exist. out's
 * struct_size must be set (moelat_device_info_init). */
MOELAT_API moelat_status moelat_select_device(const char *spec, moelat_device_info *out, char *err, size_t errlen);
/* Measured peak single-precision GFLOP/s of a device (index or name
 * substring; NULL or "" as moelat_lattice_create chooses); -1 when the
 * device cannot be opened and 0 when the measurement fails, with the
 * reason in err. */
MOELAT_API double moelat_device_peak_gflops(const char *device, char *err, size_t errlen);

/* ---- Expert plugins --------------------------------------------------- */

typedef struct moelat_plugin_set moelat_plugin_set;

/* Loads every plugin along the search order (paths first, then
 * MOELAT_PLUGIN_PATH, the build tree's and the installed experts); files
 * that fail are listed with the reason. NULL only when out of memory. */
MOELAT_API moelat_plugin_set *moelat_plugins_discover(const char *const *paths, int n_paths);
MOELAT_API void moelat_plugins_free(moelat_plugin_set *set);
MOELAT_API int moelat_plugins_count(const moelat_plugin_set *set);
MOELAT_API const moelat_expert_descriptor *moelat_plugins_descriptor(const moelat_plugin_set *set, int i);
MOELAT_API const char *moelat_plugins_path(const moelat_plugin_set *set, int i);
MOELAT_API int moelat_plugins_error_count(const moelat_plugin_set *set);
MOELAT_API const char *moelat_plugins_error_path(const moelat_plugin_set *set, int i);
MOELAT_API const char *moelat_plugins_error_reason(const moelat_plugin_set *set, int i);

/* The build tree's experts directory (NULL for an installed library) and
 * the installed one. */
MOELAT_API const char *moelat_plugins_build_dir(void);
MOELAT_API const char *moelat_plugins_install_dir(void);

/* Loads path in a child process, validates it and calls tensors(): 0 with
 * a summary in report, or -1 with the reason (a crash, a timeout, an
 * invalid descriptor). */
MOELAT_API int moelat_plugin_check(const char *path, char *report, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* MOELAT_INSPECT_H */
