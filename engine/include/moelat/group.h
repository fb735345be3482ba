/*
 * Several devices in one process: a moelat_group splits the lattice into
 * slabs of z planes, one per device, steps them in parallel (one host
 * thread per device) and exchanges the halo planes between neighbouring
 * slabs through host memory after every step. The result is the single
 * lattice's (bitwise on identical devices): a cell's update depends only on
 * the old states of its neighbourhood, and every slab runs the same
 * kernels. The slab planner below is shared with the MPI runner.
 */
#ifndef MOELAT_GROUP_H
#define MOELAT_GROUP_H

#include "moelat/moelat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Slab planner ---------------------------------------------------- */

/* Splits Z planes into n slabs [z0[i], z1[i]) in order, in proportion to
 * weight[i] (> 0; NULL = equal), each at least one plane. Fails (message in
 * err) when Z < n or a weight is not positive. */
MOELAT_API moelat_status moelat_slab_split(int32_t Z, int n, const double *weight, int32_t *z0, int32_t *z1, char *err,
                                size_t errlen);

/* The planes [*lo, *hi) of slab `owner` that slab `consumer` reads as its
 * halo of depth h: owner's planes within [z0 - h, z0) or [z1, z1 + h) of
 * the consumer. Returns 1 when there are any, else 0. Slabs thinner than h
 * work: a consumer then takes planes from several owners on each side. */
MOELAT_API int moelat_slab_halo(const int32_t *z0, const int32_t *z1, int owner, int consumer, int32_t h, int32_t *lo,
                     int32_t *hi);

/* Every plane slab `owner` (of n) sends to any other slab: the union of
 * its moelat_slab_halo ranges, at most two ([z0, a) for the slabs below,
 * [b, z1) for those above), one when they meet. Returns how many; lo[],
 * hi[] hold them. */
MOELAT_API int moelat_slab_sends(const int32_t *z0, const int32_t *z1, int n, int owner, int32_t h, int32_t lo[2],
                      int32_t hi[2]);

/* ---- Group ----------------------------------------------------------- */

typedef struct moelat_group moelat_group;

/* One lattice per device spec (an index or name substring as
 * moelat_config.device; the same device may appear twice), each from cfg
 * with the same weights and states, split into equal slabs. With
 * cfg->threads 0 each lattice gets an equal share of the cores. */
MOELAT_API moelat_status moelat_group_create(const moelat_config *cfg, const char *const *devices, int n,
                                  moelat_group **out, char *err, size_t errlen);
MOELAT_API void moelat_group_destroy(moelat_group *g);
MOELAT_API const char *moelat_group_last_error(const moelat_group *g);
MOELAT_API int moelat_group_size(const moelat_group *g);
/* Number of OpenCL devices present (for "--devices all"), or -1 with err. */
MOELAT_API int moelat_device_count(char *err, size_t errlen);

/* Re-splits in proportion to weight[] (NULL = equal) and turns automatic
 * balancing off. States are carried over. */
MOELAT_API moelat_status moelat_group_set_split(moelat_group *g, const double *weight);
/* Automatic balancing (on by default): after the group's first step, when
 * the slabs' measured cells/ms differ by more than 10%, re-split in
 * proportion to them. The result never depends on the split. */
MOELAT_API void moelat_group_set_balance(moelat_group *g, int on);

/* Runs n steps. On a failure the message names the device and its slab;
 * the states are those of the failing step. */
MOELAT_API moelat_status moelat_group_step(moelat_group *g, int n);
MOELAT_API uint64_t moelat_group_step_count(const moelat_group *g);

/* Whole-lattice operations, as the moelat_lattice calls of the same names:
 * states are gathered from (or given to) every slab. */
MOELAT_API moelat_status moelat_group_get_states(moelat_group *g, float *dst, size_t count);
MOELAT_API moelat_status moelat_group_set_states(moelat_group *g, const float *src, size_t count);
MOELAT_API moelat_status moelat_group_set_external_input(moelat_group *g, const float *ext, size_t count);
MOELAT_API moelat_status moelat_group_load_weights(moelat_group *g, const char *path);
MOELAT_API moelat_status moelat_group_save_weights(moelat_group *g, const char *path);
MOELAT_API moelat_status moelat_group_load_states(moelat_group *g, const char *path);
MOELAT_API moelat_status moelat_group_save_states(moelat_group *g, const char *path);
MOELAT_API moelat_status moelat_group_get_outputs(moelat_group *g, float *dst, size_t count);
/* Checkpoints in the single-lattice format (moelat_save_checkpoint), so a
 * group's checkpoint resumes on one device and the other way round; flags
 * as moelat_resume_checkpoint_ex. */
MOELAT_API moelat_status moelat_group_save_checkpoint(moelat_group *g, const char *dir);
MOELAT_API moelat_status moelat_group_resume_checkpoint(moelat_group *g, const char *dir, unsigned flags);

typedef struct moelat_slab_info {
    uint32_t struct_size;   /* sizeof(moelat_slab_info) of the caller */
    int32_t z0, z1;         /* planes owned */
    char device[256];
    uint64_t steps;         /* steps timed (since the last split) */
    double step_ms;         /* total wall time of those steps on this slab */
    double halo_ms;         /* total time reading and writing halo planes */
    double cells_per_ms;    /* measured throughput of the last step */
} moelat_slab_info;

/* Layout 1 is the whole struct above. */
#define MOELAT_SLAB_INFO_SIZE_V1 sizeof(moelat_slab_info)
#define MOELAT_SLAB_INFO_INIT {.struct_size = (uint32_t)sizeof(moelat_slab_info)}

static inline void moelat_slab_info_init(moelat_slab_info *s) {
    memset(s, 0, sizeof *s);
    s->struct_size = (uint32_t)sizeof *s;
}

/* Slab i's planes, device and timings, within info->struct_size (set it
 * first: moelat_slab_info_init). */
MOELAT_API moelat_status moelat_group_slab_info(const moelat_group *g, int i, moelat_slab_info *info);
/* Slab i's lattice (its own report, device name, ...). */
MOELAT_API moelat_lattice *moelat_group_lattice(moelat_group *g, int i);

#ifdef __cplusplus
}
#endif

#endif /* MOELAT_GROUP_H */
