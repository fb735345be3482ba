/* moelat/inspect.h, the lattice half: the stencil, the neighbour gather,
 * one chunk stage by stage and the cost estimates, for `check` and
 * `bench`. Thin: each call reads the lattice through the same internal
 * functions the step uses, so what a tool compares is what runs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gate.h"
#include"core/lattice_internal.h"
#include "moelat/inspect.h"

static int bad_band(int band) { return band < 0 || band >= MOELAT_BANDS; }

int32_t moelat_stencil_count(const moelat_lattice *lat, int band) {
    if (!lat || bad_band(band))
        return -1;
    return lat->stencil.count[band];
}

moelat_status moelat_stencil_offset(const moelat_lattice *lat, int band, int32_t j, int32_t d[3]) {
    if (!lat || bad_band(band) || !d || j < 0 || j >= lat->stencil.count[band])
        return MOELAT_ERR_INVALID;
    const ml_offset *o = &lat->stencil.band[band][j];
    d[0] = o->dx;
    d[1] = o->dy;
    d[2] = o->dz;
    return MOELAT_OK;
}

int32_t moelat_band_sums(const moelat_lattice *lat, int band, const int32_t cell[3], const float *states,
                         double *sum, double *abs_sum) {
    if (!lat || bad_band(band) || !cell || !states)
        return -1;
    const int32_t x = cell[0], y = cell[1], z = cell[2];
    if (x < 0 || y < 0 || z < 0 || x >= lat->X || y >= lat->Y || z >= lat->Z)
        return -1;
    int32_t count = 0;
    for (int j = 0; j < lat->stencil.count[band]; j++) {
        const ml_offset *o = &lat->stencil.band[band][j];
        int nx = x + o->dx, ny = y + o->dy, nz = z + o->dz;
        if (nx < 0 || ny < 0 || nz < 0 || nx >= lat->X || ny >= lat->Y || nz >= lat->Z)
            continue;
        const float *v = states + ((size_t)nx + (size_t)lat->X * ((size_t)ny + (size_t)lat->Y * nz)) * lat->S;
        for (int q = 0; q < lat->S; q++) {
            if (sum)
                sum[q] += v[q];
            if (abs_sum)
                abs_sum[q] += fabs(v[q]);
        }
        count++;
    }
    return count;
}

int32_t moelat_chunk_count(const moelat_lattice *lat) { return lat ? lat->n_chunks : 0; }

moelat_status moelat_chunk_box(const moelat_lattice *lat, int32_t chunk, int32_t origin[3], int32_t extent[3]) {
    if (!lat || chunk < 0 || chunk >= lat->n_chunks || !origin || !extent)
        return MOELAT_ERR_INVALID;
    memcpy(origin, lat->chunks[chunk].origin, 3 * sizeof *origin);
    memcpy(extent, lat->chunks[chunk].extent, 3 * sizeof *extent);
    return MOELAT_OK;
}

const char *moelat_expert_name(const moelat_lattice *lat, int band) {
    if (!lat || bad_band(band) || !lat->expert[band].desc)
        return NULL;
    return lat->expert[band].desc->name;
}

int moelat_expert_on_device(const moelat_lattice *lat, int band) {
    return lat && !bad_band(band) && ml_batch_expert_on_device(lat, band);
}

int moelat_absmean_bands(const moelat_lattice *lat) { return lat ? ml_batch_absmean_bands(lat) : 0; }

int moelat_batch_queues(const moelat_lattice *lat) { return lat ? ml_batch_queues(lat) : 0; }

moelat_status moelat_device_stages(moelat_lattice *lat, int32_t chunk, float *const out[MOELAT_BANDS],
                                   float *const mean[MOELAT_BANDS], float *const absmean[MOELAT_BANDS],
                                   float *gated) {
    if (!lat)
        return MOELAT_ERR_INVALID;
    if (chunk < 0 || chunk >= lat->n_chunks || !out || !mean || !absmean)
        return ml_fail(lat, MOELAT_ERR_INVALID, "moelat_device_stages: chunk %d of %d or an output missing",
                       (int)chunk, lat->n_chunks);
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (!out[k] || !mean[k] || !absmean[k])
            return ml_fail(lat, MOELAT_ERR_INVALID, "moelat_device_stages: band %d's outputs missing", k);
    if (!lat->backend.ops)
        return ml_fail(lat, MOELAT_ERR_INVALID, "moelat_device_stages: the lattice is not in batch mode");
    return ml_batch_expert_outputs(lat, chunk, out, mean, absmean, gated);
}

moelat_status moelat_host_expert(moelat_lattice *lat, int band, const int32_t origin[3], const int32_t extent[3],
                                 const float *states, float *out) {
    if (!lat)
        return MOELAT_ERR_INVALID;
    if (bad_band(band) || !origin || !extent || !states || !out)
        return ml_fail(lat, MOELAT_ERR_INVALID, "moelat_host_expert: band %d, box or buffer missing", band);
    const int32_t dims[3] = {lat->X, lat->Y, lat->Z};
    ml_chunk c = {.n_cells = 1};
    for (int a = 0; a < 3; a++) {
        if (extent[a] < 1 || origin[a] < 0 || origin[a] > dims[a] - extent[a])
            return ml_fail(lat, MOELAT_ERR_INVALID,
                           "moelat_host_expert: box origin %d extent %d leaves the lattice (%d) on axis %d",
                           (int)origin[a], (int)extent[a], (int)dims[a], a);
        c.origin[a] = origin[a];
        c.extent[a] = extent[a];
        c.n_cells *= extent[a];
    }
    if (ml_percell_expert_chunk(lat, band, &c, states, out) != 0)
        return MOELAT_ERR_PLUGIN; /* lat->err names the expert */
    return MOELAT_OK;
}

moelat_status moelat_host_gate(moelat_lattice *lat, const float *x, const float *nu, float w[MOELAT_BANDS]) {
    if (!lat)
        return MOELAT_ERR_INVALID;
    if (!x || !nu || !w)
        return ml_fail(lat, MOELAT_ERR_INVALID, "moelat_host_gate: x, nu or w missing");
    float *scratch = malloc((size_t)(3 * lat->S + lat->gate_hidden) * sizeof *scratch);
    if (!scratch)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "moelat_host_gate: out of memory");
    ml_gate_host(&lat->gate, lat->S, lat->gate_hidden, x, nu, w, scratch);
    free(scratch);
    return MOELAT_OK;
}

double moelat_flops_per_cell(const moelat_lattice *lat, double part[5]) {
    return lat ? ml_flops_per_cell(lat, part) : 0.0;
}

double moelat_host_time_sample(moelat_lattice *lat, size_t max_cells, int *sampled) {
    int dummy = 0;
    return lat ? ml_percell_time_sample(lat, max_cells, sampled ? sampled : &dummy) : -1.0;
}
