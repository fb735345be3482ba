/* The OpenCL backend's tuning choices: what the tuning string asks for,
 * else the defaults the measurements in tools/bench/NOTES.md chose. */
#include <string.h>

#include "backend/opencl/backend_cl.h"
#include "base/log.h"

/* State values per work-item of ml_aggregate (moelat_step.cl's ML_AGG_V):
 * a float4 when S allows, or the tuning's agg_vector when it divides S
 * (tools/bench/NOTES.md items 21-22). */
int ml_cl_aggregate_vector(const ml_backend_view *v) {
    int n = v->tuning->agg_vector;
    if (n > 0) {
        if (v->S % n == 0)
            return n;
        ML_WARN("batch", "tuning agg_vector=%d does not divide the state size %d: ignored", n, v->S);
    }
    return v->S % 4 == 0 ? 4 : 1;
}

/* Bands whose mean of |n_j| the aggregation computes: those whose expert
 * does not declare MOELAT_CL_NO_ABSMEAN (tuning agg_absmean=all: every
 * band, as before the flag, for timing and tests). */
int ml_cl_absmean_bands(const ml_backend_view *v) {
    if (v->tuning->agg_absmean_all)
        return (1 << MOELAT_BANDS) - 1;
    int mask = 0;
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (!(v->expert[k].desc->cl_flags & MOELAT_CL_NO_ABSMEAN))
            mask |= 1 << k;
    return mask;
}

/* Lanes per cell: enough for the state's S values in one pass, at least a
 * warp/wavefront-sized 32, at most 128 and what the device allows. The
 * tuning's work_group (a power of two from 32 to 256) replaces the first
 * choice. */
int ml_cl_work_group(int S, int wanted, size_t device_max) {
    int wg = 32;
    while (wg < S && wg < 128)
        wg *= 2;
    if (wanted > 0)
        wg = wanted;
    while (device_max > 0 && (size_t)wg > device_max && wg > 1)
        wg /= 2;
    return wg;
}

/* The gate's cells per work-group to ask the kernel for (it halves them
 * where its local arrays would not fit): 4 (tools/bench/NOTES.md item 35
 * has the measurements), or the tuning's gate_cells. */
int ml_cl_gate_cells_wanted(const ml_backend_view *v) {
    return v->tuning->gate_cells > 0 ? v->tuning->gate_cells : 4;
}

/* The masked lane index (moelat_helpers.cl's ML_LANE_MASK) on NVIDIA's
 * OpenCL from 64 lanes (tools/bench/NOTES.md item 42 has the timings).
 * Off elsewhere: PoCL 3.1 computes some kernels wrong with it (the CNF at
 * 32 lanes, the functional expert at 3 cells per group), other drivers
 * are unmeasured. cl_options naming ML_LANE_MASK decides instead. */
const char *ml_cl_lane_mask_option(const mlcl_device_info *dev, int work_group, const char *extra) {
    if (extra && strstr(extra, "ML_LANE_MASK"))
        return "";
    return work_group >= 64 && strstr(dev->vendor, "NVIDIA") ? "-D ML_LANE_MASK=1" : "";
}
