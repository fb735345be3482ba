/* What the group and MPI runners share: option parsing, the input and
 * output faces, the result in text or JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli_common.h"
#include "moelat/util.h"
#include "report_print.h"
#include "run_slabs.h"

int slab_parse_weights(const char *s, double *w, int max) {
    int n = 0;
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || !(v > 0) || v > 1e300 || n >= max || (*end && *end != ','))
            return -1;
        w[n++] = v;
        s = *end ? end + 1 : end;
    }
    return n;
}

float *slab_read_input(const moelat_config *cfg, const char *path, size_t *n) {
    int64_t shape[3] = {cfg->dims[1], cfg->dims[0], MOELAT_EXT_SIZE};
    *n = (size_t)cfg->dims[0] * cfg->dims[1] * MOELAT_EXT_SIZE;
    float *buf = malloc(*n * sizeof(float));
    char err[1024];
    if (!buf) {
        fprintf(stderr, "moelat-engine run: out of memory\n");
        return NULL;
    }
    if (moelat_npy_read(path, buf, 3, shape, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: --input: %s\n", err);
        free(buf);
        return NULL;
    }
    return buf;
}

int slab_write_outputs(const moelat_config *cfg, const float *face, const char *path) {
    int64_t shape[3] = {cfg->dims[1], cfg->dims[0], cfg->state_size};
    char err[1024];
    if (moelat_npy_write(path, face, 3, shape, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: %s\n", err);
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double slab_median(double *v, long long n) {
    /* The first step includes warm-up (and balancing): skip it. */
    if (n <= 0)
        return 0;
    long long first = n > 1 ? 1 : 0;
    qsort(v + first, (size_t)(n - first), sizeof *v, cmp_double);
    return v[first + (n - first) / 2];
}

void slab_print_result(int json, const moelat_config *cfg, const char *kind, int mode, long long steps,
                       double total_s, double median_ms, int32_t halo, const moelat_slab_info *info,
                       const moelat_report *rep, int n) {
    size_t N = (size_t)cfg->dims[0] * cfg->dims[1] * (size_t)cfg->dims[2];
    double mean = steps > 0 ? total_s * 1e3 / (double)steps : 0;
    double cps = median_ms > 0 ? (double)N / (median_ms * 1e-3) : 0;
    if (json) {
        json_t *slabs = json_array();
        for (int i = 0; i < n; i++) {
            const moelat_slab_info *s = &info[i];
            double k = s->steps ? (double)s->steps : 1;
            json_array_append_new(
                slabs, json_pack("{s:i, s:s, s:[i,i], s:I, s:I, s:f, s:f, s:f, s:o}", "index", i, "device", s->device,
                                 "planes", s->z0, s->z1, "cells",
                                 (json_int_t)((size_t)cfg->dims[0] * cfg->dims[1] * (size_t)(s->z1 - s->z0)),
                                 "steps_timed", (json_int_t)s->steps, "ms_per_step", s->step_ms / k,
                                 "halo_ms_per_step", s->halo_ms / k, "cells_per_ms", s->cells_per_ms, "report",
                                 report_to_json(&rep[i])));
        }
        json_t *o = json_pack("{s:s, s:[i,i,i], s:i, s:I, s:I, s:f, s:f, s:f, s:s, s:i, s:i, s:o}", "preset",
                              cfg->preset, "dims", cfg->dims[0], cfg->dims[1], cfg->dims[2], "state_size",
                              cfg->state_size, "steps", (json_int_t)steps, "cells", (json_int_t)N, "ms_per_step",
                              median_ms, "mean_ms_per_step", mean, "cells_per_second", cps, "mode",
                              cli_mode_name(mode), "halo_depth", halo, kind, n, "slabs", slabs);
        char *s = json_dumps(o, JSON_INDENT(2));
        if (s)
            puts(s);
        free(s);
        json_decref(o);
        return;
    }
    printf("moelat-engine run: preset %s, %dx%dx%d cells (N=%zu, S=%d), mode %s, %d %s, halo %d planes\n",
           cfg->preset, cfg->dims[0], cfg->dims[1], cfg->dims[2], N, cfg->state_size, cli_mode_name(mode), n, kind,
           halo);
    printf("%lld steps in %.3f s: %.3f ms/step (median), %.3f ms/step (mean), %.3g cells/s\n", steps, total_s,
           median_ms, mean, cps);
    printf("%-5s %-40s %-10s %10s %12s %12s %12s\n", "slab", "device", "planes", "cells", "ms/step", "halo ms/step",
           "cells/ms");
    for (int i = 0; i < n; i++) {
        const moelat_slab_info *s = &info[i];
        double k = s->steps ? (double)s->steps : 1;
        char planes[32];
        snprintf(planes, sizeof planes, "[%d,%d)", s->z0, s->z1);
        printf("%-5d %-40.40s %-10s %10zu %12.3f %12.3f %12.1f\n", i, s->device, planes,
               (size_t)cfg->dims[0] * cfg->dims[1] * (size_t)(s->z1 - s->z0), s->step_ms / k, s->halo_ms / k,
               s->cells_per_ms);
    }
}
