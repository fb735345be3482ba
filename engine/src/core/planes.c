/* Slabs of z planes: the calls a slab owner (one device of a group, one
 * MPI rank) needs to step only its own planes and to exchange halo planes
 * with its neighbours, and the flat weights a rank broadcasts. */
#include <stdlib.h>
#include <string.h>

#include"core/lattice_internal.h"

moelat_status moelat_lattice_set_active_planes(moelat_lattice *lat, int32_t z0, int32_t z1) {
    if (z0 < 0 || z1 > lat->Z || z0 >= z1)
        return ml_fail(lat, MOELAT_ERR_INVALID, "active planes [%d, %d) are not a non-empty range of [0, %d)", z0,
                       z1, lat->Z);
    /* The chunk box stays the one chosen for the device, so the batch
     * path's scratch sets (sized for its largest chunk) still fit. */
    moelat_status st = ml_lattice_rechunk(lat, lat->chunk_size, z0, z1);
    if (st != MOELAT_OK)
        return st;
    lat->active_z0 = z0;
    lat->active_z1 = z1;
    ml_lattice_view_update(lat);
    return MOELAT_OK;
}

moelat_status ml_lattice_rechunk(moelat_lattice *lat, const int32_t size[3], int32_t z0, int32_t z1) {
    ml_chunk *c;
    int n;
    if (ml_chunks_make_range(lat->cfg.dims, size, z0, z1, moelat_lattice_halo_depth(lat), &c, &n) != 0)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory for the chunks of planes [%d, %d)", z0, z1);
    free(lat->chunks);
    lat->chunks = c;
    lat->n_chunks = n;
    memmove(lat->chunk_size, size, sizeof lat->chunk_size); /* size may be lat->chunk_size */
    ml_lattice_view_update(lat); /* an open backend reads the new chunks */
    return MOELAT_OK;
}

void moelat_lattice_active_planes(const moelat_lattice *lat, int32_t *z0, int32_t *z1) {
    *z0 = lat->active_z0;
    *z1 = lat->active_z1;
}

int32_t moelat_lattice_halo_depth(const moelat_lattice *lat) {
    /* The stencil's own largest |dz|: exact, and never more than
     * ceil(0.99 r). */
    int32_t h = 0;
    for (int k = 0; k < MOELAT_BANDS; k++)
        for (int32_t i = 0; i < lat->stencil.count[k]; i++) {
            int32_t dz = lat->stencil.band[k][i].dz;
            dz = dz < 0 ? -dz : dz;
            h = dz > h ? dz : h;
        }
    return h;
}

/* Checks a plane range and its buffer size; sets *offset in floats. */
static moelat_status plane_range(moelat_lattice *lat, int32_t z0, int32_t z1, size_t count, size_t *offset,
                                 const char *what) {
    size_t plane = (size_t)lat->X * lat->Y * (size_t)lat->S;
    if (z0 < 0 || z1 > lat->Z || z0 > z1)
        return ml_fail(lat, MOELAT_ERR_INVALID, "%s: planes [%d, %d) are not a range of [0, %d)", what, z0, z1,
                       lat->Z);
    if (count != plane * (size_t)(z1 - z0))
        return ml_fail(lat, MOELAT_ERR_INVALID, "%s: buffer holds %zu floats, planes [%d, %d) are %zu", what, count,
                       z0, z1, plane * (size_t)(z1 - z0));
    *offset = plane * (size_t)z0;
    return MOELAT_OK;
}

/* Planes [z0, z1) to dst, or when write from src. Planes are contiguous
 * cell-major: one copy, on whichever side holds the newest states. */
static moelat_status planes_io(moelat_lattice *lat, int32_t z0, int32_t z1, size_t count, int write, float *dst,
                               const float *src, const char *what) {
    size_t off = 0;
    moelat_status st = plane_range(lat, z0, z1, count, &off, what);
    if (st != MOELAT_OK || count == 0)
        return st;
    if (ml_res_states_on_device_only(lat))
        return lat->backend.ops->planes(lat->backend.ctx, off, count, write ? NULL : dst, write ? src : NULL);
    if (write) {
        memcpy(lat->states + off, src, count * sizeof(float));
        ml_res_host_wrote_states(lat); /* the next device step uploads the host copy */
    } else {
        memcpy(dst, lat->states + off, count * sizeof(float));
    }
    return MOELAT_OK;
}

moelat_status moelat_lattice_get_planes(moelat_lattice *lat, int32_t z0, int32_t z1, float *dst, size_t count) {
    return planes_io(lat, z0, z1, count, 0, dst, NULL, "get planes");
}

moelat_status moelat_lattice_deliver_planes(moelat_lattice *lat, int32_t z0, int32_t z1, float *dst, size_t count,
                                            moelat_planes_ready ready, void *arg) {
    size_t off = 0;
    moelat_status st = plane_range(lat, z0, z1, count, &off, "deliver planes");
    if (st != MOELAT_OK || count == 0)
        return st;
    if (!dst)
        return ml_fail(lat, MOELAT_ERR_INVALID, "deliver planes: no buffer for planes [%d, %d)", z0, z1);
    if (lat->n_deliver == ML_MAX_DELIVER)
        return ml_fail(lat, MOELAT_ERR_INVALID, "deliver planes: at most %d ranges per step", ML_MAX_DELIVER);
    lat->deliver[lat->n_deliver].z0 = z0;
    lat->deliver[lat->n_deliver].z1 = z1;
    lat->deliver[lat->n_deliver].dst = dst;
    lat->deliver[lat->n_deliver].ready = ready;
    lat->deliver[lat->n_deliver].arg = arg;
    lat->deliver[lat->n_deliver].done = 0;
    lat->n_deliver++;
    return MOELAT_OK;
}

/* After a step: the requested planes the device did not read during it,
 * from wherever the new states live, and every ready not yet called
 * (also after a failed step); the requests end with the step. */
moelat_status ml_finish_deliveries(moelat_lattice *lat, moelat_status step) {
    moelat_status st = step;
    size_t plane = (size_t)lat->X * lat->Y * (size_t)lat->S;
    for (int i = 0; i < lat->n_deliver; i++) {
        if (lat->deliver[i].done)
            continue;
        if (st == MOELAT_OK)
            st = moelat_lattice_get_planes(lat, lat->deliver[i].z0, lat->deliver[i].z1, lat->deliver[i].dst,
                                           plane * (size_t)(lat->deliver[i].z1 - lat->deliver[i].z0));
        if (lat->deliver[i].ready)
            lat->deliver[i].ready(lat->deliver[i].arg);
    }
    lat->n_deliver = 0;
    return st;
}

moelat_status moelat_lattice_set_planes(moelat_lattice *lat, int32_t z0, int32_t z1, const float *src,
                                        size_t count) {
    return planes_io(lat, z0, z1, count, 1, NULL, src, "set planes");
}

size_t moelat_weights_count(moelat_lattice *lat) {
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int n = ml_param_blocks(lat, blocks);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += blocks[i]->n_floats;
    return total;
}

moelat_status moelat_get_weights(moelat_lattice *lat, float *dst, size_t count) {
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int n = ml_param_blocks(lat, blocks);
    if (count != moelat_weights_count(lat))
        return ml_fail(lat, MOELAT_ERR_INVALID, "weights buffer holds %zu floats, the lattice has %zu", count,
                       moelat_weights_count(lat));
    moelat_status st = ml_res_host_weights(lat);
    if (st != MOELAT_OK)
        return st;
    for (int i = 0; i < n; i++) {
        memcpy(dst, blocks[i]->data, blocks[i]->n_floats * sizeof(float));
        dst += blocks[i]->n_floats;
    }
    return MOELAT_OK;
}

moelat_status moelat_set_weights(moelat_lattice *lat, const float *src, size_t count) {
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int n = ml_param_blocks(lat, blocks);
    if (count != moelat_weights_count(lat))
        return ml_fail(lat, MOELAT_ERR_INVALID, "weights buffer holds %zu floats, the lattice has %zu", count,
                       moelat_weights_count(lat));
    moelat_status st = ml_res_weights_will_change(lat);
    if (st != MOELAT_OK)
        return st;
    for (int i = 0; i < n; i++) {
        memcpy(blocks[i]->data, src, blocks[i]->n_floats * sizeof(float));
        src += blocks[i]->n_floats;
    }
    return ml_res_host_wrote_weights(lat);
}
