/* Box chunks: the unit of scheduling for both paths. */
#include <stdlib.h>

#include "core/chunks.h"

static int32_t div_up(int32_t a, int32_t b) { return (a + b - 1) / b; }

/* Boxes of at most size[] over planes [z0, z1), written to out when it
 * is not NULL; returns how many. */
static long boxes(const int32_t dims[3], const int32_t size[3], int32_t z0, int32_t z1, ml_chunk *out) {
    int32_t span[3] = {dims[0], dims[1], z1 - z0};
    int32_t cs[3], nc[3];
    for (int a = 0; a < 3; a++) {
        cs[a] = size[a] < 1 ? 1 : (size[a] > span[a] ? span[a] : size[a]);
        nc[a] = div_up(span[a], cs[a]);
    }
    long k = 0;
    for (int z = 0; z < nc[2]; z++)
        for (int y = 0; y < nc[1]; y++)
            for (int x = 0; x < nc[0]; x++, k++) {
                if (!out)
                    continue;
                int32_t o[3] = {x * cs[0], y * cs[1], z * cs[2]};
                for (int a = 0; a < 3; a++) {
                    out[k].origin[a] = o[a] + (a == 2 ? z0 : 0);
                    out[k].extent[a] = (o[a] + cs[a] > span[a] ? span[a] - o[a] : cs[a]);
                }
                out[k].n_cells = out[k].extent[0] * out[k].extent[1] * out[k].extent[2];
            }
    return k;
}

int ml_chunks_make(const int32_t dims[3], const int32_t size[3], ml_chunk **out, int *n) {
    return ml_chunks_make_range(dims, size, 0, dims[2], 0, out, n);
}

int ml_chunks_make_range(const int32_t dims[3], const int32_t size[3], int32_t z0, int32_t z1, int32_t halo,
                         ml_chunk **out, int *n) {
    /* Only planes [z0, z1) get chunks: a slab owner steps its own planes
     * and leaves the others to their owners. The planes a neighbouring
     * slab reads ([z0, z0 + halo) when there is a slab below, [z1 - halo,
     * z1) when there is one above) get chunks of their own, so that a step
     * can finish them first and send them while the interior runs. */
    int32_t cut[4];
    int n_cut = 0;
    cut[n_cut++] = z0;
    if (halo > 0 && z0 > 0 && z0 + halo < z1)
        cut[n_cut++] = z0 + halo;
    if (halo > 0 && z1 < dims[2] && z1 - halo > cut[n_cut - 1])
        cut[n_cut++] = z1 - halo;
    cut[n_cut++] = z1;
    long total = 0;
    for (int i = 0; i + 1 < n_cut; i++)
        total += boxes(dims, size, cut[i], cut[i + 1], NULL);
    ml_chunk *c = malloc((size_t)total * sizeof *c);
    if (!c)
        return -1;
    long k = 0;
    for (int i = 0; i + 1 < n_cut; i++)
        k += boxes(dims, size, cut[i], cut[i + 1], c + k);
    *out = c;
    *n = (int)total;
    return 0;
}

void ml_chunks_default_size(const int32_t dims[3], int S, uint64_t device_mem, int32_t size[3]) {
    /* Whole xy planes, as many z layers as keep a chunk's scratch (about
     * 12 floats of S per cell for aggregates and expert outputs) within an
     * eighth of device memory. On a device, one chunk when it fits: two
     * chunks for the queues to overlap measured slower
     * (tools/bench/NOTES.md item 16). The host path keeps at least 2 along
     * z when the lattice has the depth, so that a mixed step (auto mode)
     * can split them. */
    size[0] = dims[0];
    size[1] = dims[1];
    uint64_t plane = (uint64_t)dims[0] * dims[1];
    uint64_t bytes_per_plane = plane * (uint64_t)S * 12u * sizeof(float);
    uint64_t budget = device_mem ? device_mem / 8 : (uint64_t)1 << 30;
    int32_t layers = (int32_t)(budget / (bytes_per_plane ? bytes_per_plane : 1));
    if (layers < 1)
        layers = 1;
    int32_t half = (dims[2] + 1) / 2;
    if (!device_mem && layers > half)
        layers = half;
    if (layers > dims[2])
        layers = dims[2];
    size[2] = layers;
}
