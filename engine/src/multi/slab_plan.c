/* The slab planner: z ranges in proportion to throughput, and which planes
 * each slab owes each other as halo. Shared by the group and MPI. */
#include <stdio.h>

#include "moelat/group.h"

moelat_status moelat_slab_split(int32_t Z, int n, const double *weight, int32_t *z0, int32_t *z1, char *err,
                                size_t errlen) {
    if (n < 1 || Z < n) {
        snprintf(err, errlen, "cannot split %d planes into %d slabs of at least one plane", Z, n);
        return MOELAT_ERR_INVALID;
    }
    double total = 0;
    for (int i = 0; i < n; i++) {
        double w = weight ? weight[i] : 1.0;
        if (!(w > 0) || w > 1e300) {
            snprintf(err, errlen, "slab %d has weight %g; weights must be positive and finite", i, w);
            return MOELAT_ERR_INVALID;
        }
        total += w;
    }
    /* Cumulative rounding keeps the total exact; the clamps keep every
     * slab at least one plane thick. */
    double acc = 0;
    int32_t prev = 0;
    for (int i = 0; i < n; i++) {
        acc += weight ? weight[i] : 1.0;
        int32_t b = i == n - 1 ? Z : (int32_t)(Z * (acc / total) + 0.5);
        if (b < prev + 1)
            b = prev + 1;
        if (b > Z - (n - 1 - i))
            b = Z - (n - 1 - i);
        z0[i] = prev;
        z1[i] = b;
        prev = b;
    }
    return MOELAT_OK;
}

int moelat_slab_halo(const int32_t *z0, const int32_t *z1, int owner, int consumer, int32_t h, int32_t *lo,
                     int32_t *hi) {
    *lo = *hi = 0;
    if (owner == consumer || h <= 0)
        return 0;
    /* The owner's slab is wholly below or wholly above the consumer's. */
    int32_t a, b;
    if (z1[owner] <= z0[consumer]) {
        a = z0[consumer] - h;
        b = z0[consumer];
    } else {
        a = z1[consumer];
        b = z1[consumer] + h;
    }
    if (a < z0[owner])
        a = z0[owner];
    if (b > z1[owner])
        b = z1[owner];
    if (a >= b)
        return 0;
    *lo = a;
    *hi = b;
    return 1;
}

int moelat_slab_sends(const int32_t *z0, const int32_t *z1, int n, int owner, int32_t h, int32_t lo[2],
                      int32_t hi[2]) {
    /* Ranges sent down all start at z0[owner] and those sent up all end at
     * z1[owner], so each side's union is one range. */
    int32_t down = z0[owner], up = z1[owner];
    for (int j = 0; j < n; j++) {
        int32_t a, b;
        if (!moelat_slab_halo(z0, z1, owner, j, h, &a, &b))
            continue;
        if (j < owner && b > down)
            down = b;
        if (j > owner && a < up)
            up = a;
    }
    int k = 0;
    if (down > z0[owner] && up < z1[owner] && down >= up) {
        lo[k] = z0[owner];
        hi[k++] = z1[owner];
        return k;
    }
    if (down > z0[owner]) {
        lo[k] = z0[owner];
        hi[k++] = down;
    }
    if (up < z1[owner]) {
        lo[k] = up;
        hi[k++] = z1[owner];
    }
    return k;
}
