/* Checks before work (see run_checks.h). They run before the lattice is
 * created, so that a bad output path or a lattice that cannot fit is
 * reported at once instead of after hours of stepping or a failed malloc. */
#include "run_checks.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moelat/inspect.h"
#include "moelat/util.h"

const char *run_bytes(double b, char *buf, unsigned len) {
    static const char *const unit[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    int u = 0;
    while (b >= 1000 && u < 5) {
        b /= 1000;
        u++;
    }
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
    return buf;
}

int run_check_output(const char *opt, const char *path, int is_dir) {
    char err[1200];
    moelat_status st = is_dir ? moelat_file_check_output_dir(path, NULL, err, sizeof err)
                              : moelat_file_check_output(path, err, sizeof err);
    if (st != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: %s %s: %s\n", opt, path, err);
        return -1;
    }
    return 0;
}

typedef struct mem_estimate {
    double states, stencil, workspaces, host_mirror, total; /* host bytes */
    double device;                                          /* batch mode only */
} mem_estimate;

static int n_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Mirrors what the engine allocates (lattice_internal.h): current and next
 * states, the z = 0 input face, the stencil's three offset lists (sized
 * for the whole cube of half-width ceil(distant ratio * r)), and per thread
 * the neighbour rows of every band; in batch or auto mode a host copy of
 * the states and, on the device, both state buffers, the input face and the
 * stencil. Weights are small next to these and are left out. */
static void estimate(const moelat_config *c, mem_estimate *e) {
    double N = (double)c->dims[0] * c->dims[1] * c->dims[2], S = c->state_size;
    double r = moelat_config_radius(c);
    double h = ceil(c->band_ratio[2] * r), cube = pow(2 * h + 1, 3);
    int threads = c->threads > 0 ? c->threads : n_cores();
    double face = (double)c->dims[0] * c->dims[1] * MOELAT_EXT_SIZE * 4;
    e->states = 2 * N * S * 4 + face;
    e->stencil = 3 * cube * 16;
    /* Neighbour rows: one per offset within the distant radius (a ball,
     * bounded by the cube). */
    double ball = 4.19 * pow(h + 1, 3);
    e->workspaces = threads * ((ball < cube ? ball : cube) * S * 4 + 8 * S * 4);
    e->host_mirror = c->mode != MOELAT_MODE_PERCELL ? N * S * 4 : 0;
    e->total = e->states + e->stencil + e->workspaces + e->host_mirror;
    e->device = c->mode != MOELAT_MODE_PERCELL ? 2 * N * S * 4 + face + e->stencil : 0;
}

/* MemAvailable, else physical memory; no more than RLIMIT_AS/RLIMIT_DATA. */
static double host_available(void) {
    double avail = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
                avail = (double)kb * 1024;
        fclose(f);
    }
    if (avail <= 0) {
        long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
        avail = pages > 0 && size > 0 ? (double)pages * (double)size : INFINITY;
    }
    int res[2] = {RLIMIT_AS, RLIMIT_DATA};
    for (int i = 0; i < 2; i++) {
        struct rlimit rl;
        if (getrlimit(res[i], &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            (double)rl.rlim_cur < avail)
            avail = (double)rl.rlim_cur;
    }
    return avail;
}

/* The largest n whose n x n x n lattice (cfg otherwise) fits: host (and,
 * when dev_limit > 0, device) estimate within the limits. 0 if none. */
static int largest_cube(const moelat_config *cfg, double host_limit, double dev_limit) {
    moelat_config c = *cfg;
    int lo = 0, hi = 1290; /* 1290^3 > INT32_MAX cells, the engine's limit */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        c.dims[0] = c.dims[1] = c.dims[2] = mid;
        mem_estimate e;
        estimate(&c, &e);
        if (e.total <= host_limit && (dev_limit <= 0 || e.device <= dev_limit))
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

int run_check_memory(const moelat_config *cfg, int verbose) {
    mem_estimate e;
    estimate(cfg, &e);
    double host = host_available(), dev = 0;
    char devname[256] = "";
    if (cfg->mode == MOELAT_MODE_BATCH) {
        moelat_device_info d = MOELAT_DEVICE_INFO_INIT;
        char err[1024];
        if (moelat_select_device(cfg->device, &d, err, sizeof err) == MOELAT_OK) {
            dev = (double)d.global_mem_bytes;
            snprintf(devname, sizeof devname, "%s", d.name);
        }
    }
    char a[32], b[32], s1[32], s2[32], s3[32];
    int fits_host = e.total <= host, fits_dev = dev <= 0 || e.device <= dev;
    if (fits_host && fits_dev) {
        if (verbose && e.total > 1073741824.0)
            fprintf(stderr, "moelat-engine run: %dx%dx%d lattice: about %s of host memory (%s "
                            "available)\n",
                    cfg->dims[0], cfg->dims[1], cfg->dims[2], run_bytes(e.total, a, sizeof a),
                    run_bytes(host, b, sizeof b));
        return 0;
    }
    int n = largest_cube(cfg, host, dev);
    char fit[96];
    if (n > 0)
        snprintf(fit, sizeof fit, "the largest cubic lattice that fits is %dx%dx%d", n, n, n);
    else
        snprintf(fit, sizeof fit, "no lattice of this state size fits");
    if (!fits_host)
        fprintf(stderr,
                "moelat-engine run: a %dx%dx%d lattice (preset %s, state size %d) needs about %s "
                "of host memory (states %s, stencil %s, thread workspaces %s), but %s is "
                "available: refused before allocating; %s\n",
                cfg->dims[0], cfg->dims[1], cfg->dims[2], cfg->preset, cfg->state_size,
                run_bytes(e.total, a, sizeof a), run_bytes(e.states + e.host_mirror, s1, sizeof s1),
                run_bytes(e.stencil, s2, sizeof s2), run_bytes(e.workspaces, s3, sizeof s3),
                run_bytes(host, b, sizeof b), fit);
    else
        fprintf(stderr,
                "moelat-engine run: a %dx%dx%d lattice needs about %s of memory on device %s, "
                "which has %s: refused before allocating; %s\n",
                cfg->dims[0], cfg->dims[1], cfg->dims[2], run_bytes(e.device, a, sizeof a),
                devname, run_bytes(dev, b, sizeof b), fit);
    return -1;
}

int run_check_device(const char *spec) {
    moelat_device_info d = MOELAT_DEVICE_INFO_INIT;
    char err[2048];
    if (moelat_select_device(spec, &d, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: --devices: '%s': %s\n", spec, err);
        return -1;
    }
    return 0;
}

void run_saves_note(run_saves *s, const char *what, const char *path, const char *err) {
    if (err && *err)
        fprintf(stderr, "moelat-engine run: %s\n", err);
    if (s->n >= 8)
        return;
    s->what[s->n] = what;
    s->path[s->n] = path;
    s->ok[s->n] = !err;
    s->failed |= err != NULL;
    s->n++;
}

int run_saves_report(const run_saves *s) {
    if (!s->failed)
        return 0;
    for (int pass = 1; pass >= 0; pass--) {
        int any = 0;
        fprintf(stderr, "moelat-engine run: %s:", pass ? "written" : "NOT written");
        for (int i = 0; i < s->n; i++)
            if (s->ok[i] == pass) {
                fprintf(stderr, "%s %s %s", any ? "," : "", s->what[i], s->path[i]);
                any = 1;
            }
        fprintf(stderr, "%s\n", any ? "" : " nothing");
    }
    return -1;
}
