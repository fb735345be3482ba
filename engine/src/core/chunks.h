/* Chunks: the boxes of cells a step is cut into (chunks.c). */
#ifndef MOELAT_CHUNKS_H
#define MOELAT_CHUNKS_H

#include <stdint.h>

/* A box of cells: [origin, origin + extent). */
typedef struct ml_chunk {
    int32_t origin[3];
    int32_t extent[3];
    int32_t n_cells;
} ml_chunk;

/* Lattice coordinates of chunk cell ci (x fastest, as the kernels'
 * ml_chunk_cell). */
static inline void ml_chunk_cell_xyz(const ml_chunk *c, int ci, int xyz[3]) {
    xyz[0] = c->origin[0] + ci % c->extent[0];
    xyz[1] = c->origin[1] + (ci / c->extent[0]) % c->extent[1];
    xyz[2] = c->origin[2] + ci / (c->extent[0] * c->extent[1]);
}

/* Cuts the lattice into boxes of at most size[]. */
int ml_chunks_make(const int32_t dims[3], const int32_t size[3], ml_chunk **out, int *n);
/* Chunks of the planes [z0, z1) only (the active planes of a slab), the
 * halo planes its neighbours read in chunks of their own. */
int ml_chunks_make_range(const int32_t dims[3], const int32_t size[3], int32_t z0, int32_t z1, int32_t halo,
                         ml_chunk **out, int *n);
/* The default chunk box for a lattice (device memory in bytes, 0 = host). */
void ml_chunks_default_size(const int32_t dims[3], int S, uint64_t device_mem, int32_t size[3]);

#endif
