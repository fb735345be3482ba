/* moelat_group: one lattice per device, each stepping its slab of z planes
 * on its own host thread, halos exchanged through one host buffer.
 *
 * A step is two parallel passes (a thread per slab, joined after each):
 * every slab writes the halo planes it was sent last step (from the shared
 * buffer) into its lattice; then every slab steps, and the step delivers
 * the planes other slabs need into the buffer (moelat_lattice_deliver_planes:
 * on a device they are read while the slab's interior chunks still run).
 * Owners write disjoint plane ranges, and nobody reads the buffer during
 * the pass that writes it, so it needs no lock. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include"backend/opencl/cl_runtime.h"
#include"core/lattice_internal.h"
#include "core/abi.h"
#include "moelat/group.h"
#include "io/npy.h"

typedef struct slab {
    moelat_lattice *lat;
    moelat_group *g;
    int index;
    moelat_status st;   /* of the last pass */
    double last_ms;     /* step time of the last pass */
    moelat_slab_info info;
} slab;

struct moelat_group {
    int n;
    slab *slabs;
    int32_t *z0, *z1;
    int32_t X, Y, Z, S, halo;
    size_t plane;        /* floats per plane */
    float *buf;          /* N x S: halo planes in transit */
    int halos_pending;   /* buf holds halos not yet written to the slabs */
    int balance;         /* automatic balancing still to do */
    uint64_t steps;
    char err[2048];
};

static moelat_status gfail(moelat_group *g, moelat_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static moelat_status gfail(moelat_group *g, moelat_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
    return st;
}

const char *moelat_group_last_error(const moelat_group *g) { return g ? g->err : "no group"; }
int moelat_group_size(const moelat_group *g) { return g->n; }
uint64_t moelat_group_step_count(const moelat_group *g) { return moelat_step_count(g->slabs[0].lat); }
moelat_lattice *moelat_group_lattice(moelat_group *g, int i) { return i >= 0 && i < g->n ? g->slabs[i].lat : NULL; }
void moelat_group_set_balance(moelat_group *g, int on) { g->balance = on != 0; }

int moelat_device_count(char *err, size_t errlen) {
    mlcl_device_info *devs = NULL;
    int n = 0;
    if (mlcl_list_devices(&devs, &n, err, errlen) != 0)
        return -1;
    free(devs);
    return n;
}

/* Fails naming slab i, its device and planes, with its lattice's message. */
static moelat_status slab_fail(moelat_group *g, int i, moelat_status st) {
    slab *s = &g->slabs[i];
    return gfail(g, st, "device %d (%s, planes [%d, %d)): %s", i, moelat_device_name(s->lat), g->z0[i], g->z1[i],
                 moelat_last_error(s->lat));
}

/* Applies z0/z1 to every slab; every slab must hold the whole lattice's
 * current states (as after set_states), since its halos change. */
static moelat_status apply_split(moelat_group *g) {
    for (int i = 0; i < g->n; i++) {
        slab *s = &g->slabs[i];
        moelat_status st = moelat_lattice_set_active_planes(s->lat, g->z0[i], g->z1[i]);
        if (st != MOELAT_OK)
            return slab_fail(g, i, st);
        memset(&s->info, 0, sizeof s->info);
        s->info.z0 = g->z0[i];
        s->info.z1 = g->z1[i];
        snprintf(s->info.device, sizeof s->info.device, "%s", moelat_device_name(s->lat));
    }
    g->halos_pending = 0;
    return MOELAT_OK;
}

moelat_status moelat_group_create(const moelat_config *cfg, const char *const *devices, int n, moelat_group **out,
                                  char *err, size_t errlen) {
    *out = NULL;
    if (n < 1 || !devices) {
        snprintf(err, errlen, "a group needs at least one device, got %d", n);
        return MOELAT_ERR_INVALID;
    }
    /* The caller's config in the library's layout. */
    moelat_config c;
    if (ml_config_import(&c, cfg, err, errlen) != MOELAT_OK)
        return MOELAT_ERR_INVALID;
    cfg = &c;
    moelat_group *g = calloc(1, sizeof *g);
    if (!g || !(g->slabs = calloc((size_t)n, sizeof *g->slabs)) || !(g->z0 = calloc((size_t)n, sizeof *g->z0)) ||
        !(g->z1 = calloc((size_t)n, sizeof *g->z1))) {
        moelat_group_destroy(g);
        snprintf(err, errlen, "out of memory");
        return MOELAT_ERR_NOMEM;
    }
    g->n = n;
    g->X = cfg->dims[0];
    g->Y = cfg->dims[1];
    g->Z = cfg->dims[2];
    g->S = cfg->state_size;
    g->balance = 1;
    moelat_status st = moelat_slab_split(g->Z, n, NULL, g->z0, g->z1, err, errlen);
    if (st != MOELAT_OK) {
        moelat_group_destroy(g);
        return st;
    }
    if (c.threads <= 0) {
        /* The slabs step at once: share the cores rather than oversubscribe. */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        c.threads = cores > n ? (int32_t)(cores / n) : 1;
    }
    for (int i = 0; i < n; i++) {
        snprintf(c.device, sizeof c.device, "%s", devices[i]);
        char why[2048];
        st = moelat_lattice_create(&c, &g->slabs[i].lat, why, sizeof why);
        if (st != MOELAT_OK) {
            snprintf(err, errlen, "device %d ('%s'): %s", i, devices[i], why);
            moelat_group_destroy(g);
            return st;
        }
        g->slabs[i].g = g;
        g->slabs[i].index = i;
    }
    g->halo = moelat_lattice_halo_depth(g->slabs[0].lat);
    g->plane = (size_t)g->X * g->Y * (size_t)g->S;
    g->buf = calloc(g->plane * (size_t)g->Z, sizeof(float));
    if (!g->buf) {
        snprintf(err, errlen, "out of memory for the halo buffer (%zu floats)", g->plane * (size_t)g->Z);
        moelat_group_destroy(g);
        return MOELAT_ERR_NOMEM;
    }
    /* Every lattice starts from the same seeded states; the split only
     * restricts what each one steps. */
    if ((st = apply_split(g)) != MOELAT_OK) {
        snprintf(err, errlen, "%s", g->err);
        moelat_group_destroy(g);
        return st;
    }
    *out = g;
    return MOELAT_OK;
}

void moelat_group_destroy(moelat_group *g) {
    if (!g)
        return;
    for (int i = 0; g->slabs && i < g->n; i++)
        moelat_lattice_destroy(g->slabs[i].lat);
    free(g->slabs);
    free(g->z0);
    free(g->z1);
    free(g->buf);
    free(g);
}

/* Pass 1 of a step, one thread per slab: write the halo planes other
 * slabs left in the buffer last step into this slab's lattice. */
static void *slab_take_halos(void *arg) {
    slab *s = arg;
    moelat_group *g = s->g;
    int i = s->index;
    double t0 = ml_now_ms();
    s->st = MOELAT_OK;
    for (int j = 0; j < g->n && g->halos_pending; j++) {
        int32_t lo, hi;
        if (!moelat_slab_halo(g->z0, g->z1, j, i, g->halo, &lo, &hi))
            continue;
        s->st = moelat_lattice_set_planes(s->lat, lo, hi, g->buf + (size_t)lo * g->plane,
                                          (size_t)(hi - lo) * g->plane);
        if (s->st != MOELAT_OK)
            break;
    }
    s->info.halo_ms += ml_now_ms() - t0;
    s->info.step_ms += ml_now_ms() - t0;
    return NULL;
}

/* Pass 2: step, delivering the planes other slabs need into the buffer.
 * A separate pass, because a slab that finishes early would otherwise
 * overwrite planes another slab is still taking as last step's halo. The
 * delivery is part of the step's time (on a device it overlaps the
 * interior chunks); halo_ms counts pass 1's writes. */
static void *slab_step(void *arg) {
    slab *s = arg;
    moelat_group *g = s->g;
    int i = s->index;
    double t0 = ml_now_ms();
    s->st = MOELAT_OK;
    int32_t lo[2], hi[2];
    int n_sends = moelat_slab_sends(g->z0, g->z1, g->n, i, g->halo, lo, hi);
    for (int k = 0; k < n_sends && s->st == MOELAT_OK; k++)
        s->st = moelat_lattice_deliver_planes(s->lat, lo[k], hi[k], g->buf + (size_t)lo[k] * g->plane,
                                              (size_t)(hi[k] - lo[k]) * g->plane, NULL, NULL);
    s->st = s->st == MOELAT_OK ? moelat_step(s->lat, 1) : ml_finish_deliveries(s->lat, s->st);
    s->last_ms = ml_now_ms() - t0;
    if (s->st != MOELAT_OK)
        return NULL;
    s->info.steps++;
    s->info.step_ms += ml_now_ms() - t0;
    double cells = (double)g->X * g->Y * (double)(g->z1[i] - g->z0[i]);
    s->info.cells_per_ms = s->last_ms > 0 ? cells / s->last_ms : 0;
    return NULL;
}

/* Runs fn for every slab at once and waits for all; 0, or the index + 1
 * of the first slab that failed. */
static int parallel(moelat_group *g, void *(*fn)(void *), int *nomem) {
    pthread_t *th = calloc((size_t)g->n, sizeof *th);
    int *started = calloc((size_t)g->n, sizeof *started);
    *nomem = !th || !started;
    if (*nomem) {
        free(th);
        free(started);
        return 0;
    }
    /* Slab 0 runs on the calling thread. */
    for (int i = 1; i < g->n; i++)
        started[i] = pthread_create(&th[i], NULL, fn, &g->slabs[i]) == 0;
    fn(&g->slabs[0]);
    for (int i = 1; i < g->n; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            fn(&g->slabs[i]); /* no thread: run it here, serially */
    }
    free(th);
    free(started);
    for (int i = 0; i < g->n; i++)
        if (g->slabs[i].st != MOELAT_OK)
            return i + 1;
    return 0;
}

static moelat_status one_step(moelat_group *g) {
    int nomem = 0, bad = 0;
    if (g->halos_pending && (bad = parallel(g, slab_take_halos, &nomem)) == 0 && !nomem)
        g->halos_pending = 0;
    if (!bad && !nomem) {
        bad = parallel(g, slab_step, &nomem);
        g->halos_pending = 1;
    }
    if (nomem)
        return gfail(g, MOELAT_ERR_NOMEM, "out of memory");
    if (bad)
        return slab_fail(g, bad - 1, g->slabs[bad - 1].st);
    g->steps++;
    return MOELAT_OK;
}

/* Gathers every slab's own planes into dst (N x S). */
static moelat_status gather(moelat_group *g, float *dst) {
    for (int i = 0; i < g->n; i++) {
        moelat_status st = moelat_lattice_get_planes(g->slabs[i].lat, g->z0[i], g->z1[i],
                                                     dst + (size_t)g->z0[i] * g->plane,
                                                     (size_t)(g->z1[i] - g->z0[i]) * g->plane);
        if (st != MOELAT_OK)
            return slab_fail(g, i, st);
    }
    return MOELAT_OK;
}

static moelat_status resplit(moelat_group *g, const double *weight) {
    int32_t *z0 = malloc((size_t)g->n * sizeof *z0), *z1 = malloc((size_t)g->n * sizeof *z1);
    if (!z0 || !z1) {
        free(z0);
        free(z1);
        return gfail(g, MOELAT_ERR_NOMEM, "out of memory");
    }
    char why[512];
    moelat_status st = moelat_slab_split(g->Z, g->n, weight, z0, z1, why, sizeof why);
    if (st != MOELAT_OK) {
        free(z0);
        free(z1);
        return gfail(g, st, "%s", why);
    }
    /* Whole states to every slab, so the new halos are valid. */
    if ((st = gather(g, g->buf)) == MOELAT_OK) {
        for (int i = 0; i < g->n && st == MOELAT_OK; i++)
            if ((st = moelat_set_states(g->slabs[i].lat, g->buf, g->plane * (size_t)g->Z)) != MOELAT_OK)
                slab_fail(g, i, st);
    }
    if (st == MOELAT_OK) {
        memcpy(g->z0, z0, (size_t)g->n * sizeof *z0);
        memcpy(g->z1, z1, (size_t)g->n * sizeof *z1);
        st = apply_split(g);
    }
    free(z0);
    free(z1);
    return st;
}

moelat_status moelat_group_set_split(moelat_group *g, const double *weight) {
    g->balance = 0;
    return resplit(g, weight);
}

/* After the first step: re-split by measured cells/ms when the slabs'
 * rates differ by more than 10%. */
static moelat_status maybe_balance(moelat_group *g) {
    g->balance = 0;
    if (g->n < 2)
        return MOELAT_OK;
    double *w = malloc((size_t)g->n * sizeof *w), lo = 0, hi = 0;
    if (!w)
        return gfail(g, MOELAT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->n; i++) {
        w[i] = g->slabs[i].info.cells_per_ms;
        lo = i == 0 || w[i] < lo ? w[i] : lo;
        hi = i == 0 || w[i] > hi ? w[i] : hi;
    }
    moelat_status st = MOELAT_OK;
    if (lo > 0 && hi > 1.1 * lo)
        st = resplit(g, w);
    free(w);
    return st;
}

moelat_status moelat_group_step(moelat_group *g, int n) {
    if (n < 0)
        return gfail(g, MOELAT_ERR_INVALID, "step count %d is negative", n);
    for (int k = 0; k < n; k++) {
        moelat_status st = one_step(g);
        if (st == MOELAT_OK && g->balance)
            st = maybe_balance(g);
        if (st != MOELAT_OK)
            return st;
    }
    return MOELAT_OK;
}

moelat_status moelat_group_get_states(moelat_group *g, float *dst, size_t count) {
    if (count != g->plane * (size_t)g->Z)
        return gfail(g, MOELAT_ERR_INVALID, "states buffer holds %zu floats, expected %zu", count,
                     g->plane * (size_t)g->Z);
    return gather(g, dst);
}

moelat_status moelat_group_set_states(moelat_group *g, const float *src, size_t count) {
    for (int i = 0; i < g->n; i++) {
        moelat_status st = moelat_set_states(g->slabs[i].lat, src, count);
        if (st != MOELAT_OK)
            return slab_fail(g, i, st);
    }
    g->halos_pending = 0; /* every slab holds every plane now */
    return MOELAT_OK;
}

moelat_status moelat_group_set_external_input(moelat_group *g, const float *ext, size_t count) {
    for (int i = 0; i < g->n; i++) {
        moelat_status st = moelat_set_external_input(g->slabs[i].lat, ext, count);
        if (st != MOELAT_OK)
            return slab_fail(g, i, st);
    }
    return MOELAT_OK;
}

moelat_status moelat_group_load_weights(moelat_group *g, const char *path) {
    /* The file is read once; the other slabs get its values. */
    moelat_lattice *l0 = g->slabs[0].lat;
    moelat_status st = moelat_load_weights(l0, path);
    if (st != MOELAT_OK)
        return gfail(g, st, "%s", moelat_last_error(l0));
    size_t n = moelat_weights_count(l0);
    float *w = malloc((n ? n : 1) * sizeof *w);
    if (!w)
        return gfail(g, MOELAT_ERR_NOMEM, "out of memory for %zu weights", n);
    st = moelat_get_weights(l0, w, n);
    for (int i = 1; i < g->n && st == MOELAT_OK; i++)
        if ((st = moelat_set_weights(g->slabs[i].lat, w, n)) != MOELAT_OK)
            slab_fail(g, i, st);
    free(w);
    return st;
}

moelat_status moelat_group_save_weights(moelat_group *g, const char *path) {
    moelat_status st = moelat_save_weights(g->slabs[0].lat, path);
    return st == MOELAT_OK ? st : gfail(g, st, "%s", moelat_last_error(g->slabs[0].lat));
}

moelat_status moelat_group_load_states(moelat_group *g, const char *path) {
    moelat_lattice *l0 = g->slabs[0].lat;
    moelat_status st = moelat_load_states(l0, path);
    if (st != MOELAT_OK)
        return gfail(g, st, "%s", moelat_last_error(l0));
    /* l0 now holds every plane on the host: hand them to the others. */
    if ((st = moelat_get_states(l0, g->buf, g->plane * (size_t)g->Z)) != MOELAT_OK)
        return slab_fail(g, 0, st);
    return moelat_group_set_states(g, g->buf, g->plane * (size_t)g->Z);
}

moelat_status moelat_group_save_states(moelat_group *g, const char *path) {
    size_t n = g->plane * (size_t)g->Z;
    float *all = malloc(n * sizeof *all);
    if (!all)
        return gfail(g, MOELAT_ERR_NOMEM, "out of memory");
    moelat_status st = gather(g, all);
    if (st == MOELAT_OK) {
        int64_t shape[4] = {g->Z, g->Y, g->X, g->S};
        if (npy_write(path, all, 4, shape, g->err, sizeof g->err) != 0)
            st = MOELAT_ERR_IO;
    }
    free(all);
    return st;
}

moelat_status moelat_group_save_checkpoint(moelat_group *g, const char *dir) {
    /* Slab 0's lattice is made whole with the other slabs' planes (its
     * planes outside its slab are halos or never read, so this changes no
     * result) and saved as one lattice. g->buf may hold pending halos: not
     * used. */
    int32_t most = 1;
    for (int i = 1; i < g->n; i++)
        most = g->z1[i] - g->z0[i] > most ? g->z1[i] - g->z0[i] : most;
    float *planes = malloc((size_t)most * g->plane * sizeof *planes);
    if (!planes)
        return gfail(g, MOELAT_ERR_NOMEM, "checkpoint: out of memory");
    moelat_lattice *l0 = g->slabs[0].lat;
    moelat_status st = MOELAT_OK;
    for (int i = 1; i < g->n && st == MOELAT_OK; i++) {
        size_t count = (size_t)(g->z1[i] - g->z0[i]) * g->plane;
        if ((st = moelat_lattice_get_planes(g->slabs[i].lat, g->z0[i], g->z1[i], planes, count)) != MOELAT_OK)
            slab_fail(g, i, st);
        else if ((st = moelat_lattice_set_planes(l0, g->z0[i], g->z1[i], planes, count)) != MOELAT_OK)
            slab_fail(g, 0, st);
    }
    free(planes);
    if (st == MOELAT_OK && (st = moelat_save_checkpoint(l0, dir)) != MOELAT_OK)
        gfail(g, st, "%s", moelat_last_error(l0));
    return st;
}

moelat_status moelat_group_resume_checkpoint(moelat_group *g, const char *dir, unsigned flags) {
    for (int i = 0; i < g->n; i++) {
        moelat_status st = moelat_resume_checkpoint_ex(g->slabs[i].lat, dir, flags);
        if (st != MOELAT_OK)
            return gfail(g, st, "%s", moelat_last_error(g->slabs[i].lat));
    }
    g->halos_pending = 0; /* every slab holds every plane of the checkpoint */
    return MOELAT_OK;
}

moelat_status moelat_group_get_outputs(moelat_group *g, float *dst, size_t count) {
    /* The output face z = Z-1 belongs to the last slab. */
    moelat_lattice *last = g->slabs[g->n - 1].lat;
    if (count != g->plane)
        return gfail(g, MOELAT_ERR_INVALID, "outputs buffer holds %zu floats, expected %zu", count, g->plane);
    moelat_status st = moelat_lattice_get_planes(last, g->Z - 1, g->Z, dst, count);
    return st == MOELAT_OK ? st : slab_fail(g, g->n - 1, st);
}

moelat_status moelat_group_slab_info(const moelat_group *g, int i, moelat_slab_info *info) {
    if (i < 0 || i >= g->n)
        return gfail((moelat_group *)g, MOELAT_ERR_INVALID, "slab %d of %d", i, g->n);
    char why[256];
    size_t n = info ? ml_abi_size(ML_ABI_SLAB_INFO, info->struct_size, why, sizeof why) : 0;
    if (!n)
        return gfail((moelat_group *)g, MOELAT_ERR_INVALID, "%s", info ? why : "moelat_group_slab_info: no info");
    ml_abi_export(info, &g->slabs[i].info, n);
    return MOELAT_OK;
}
