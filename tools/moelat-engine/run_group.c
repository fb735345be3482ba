/* moelat-engine run --devices LIST|all: one slab per device in this
 * process (moelat_group). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "run_checks.h"
#include "run_slabs.h"

#define MAX_DEVICES 64

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* "all" or a comma list of device specs (index or name substring). */
static int parse_devices(const char *s, char specs[][128], int max) {
    if (strcmp(s, "all") == 0) {
        char err[1024];
        int n = moelat_device_count(err, sizeof err);
        if (n < 0) {
            fprintf(stderr, "moelat-engine run: --devices all: %s\n", err);
            return -1;
        }
        if (n == 0) {
            fprintf(stderr, "moelat-engine run: --devices all: no OpenCL device found\n");
            return -1;
        }
        n = n > max ? max : n;
        for (int i = 0; i < n; i++)
            snprintf(specs[i], 128, "%d", i);
        return n;
    }
    int n = 0;
    const char *p = s;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= 128 || n >= max) {
            fprintf(stderr, "moelat-engine run: --devices wants 'all' or a comma list of at most %d devices, got '%s'\n",
                    max, s);
            return -1;
        }
        memcpy(specs[n], p, len);
        specs[n++][len] = '\0';
        p += len;
        if (*p == ',' && *++p == '\0') {
            fprintf(stderr, "moelat-engine run: --devices '%s' ends with a comma\n", s);
            return -1;
        }
    }
    if (n == 0)
        fprintf(stderr, "moelat-engine run: --devices is empty\n");
    /* Checked now, whatever the mode: a per-cell run never opens its
     * devices, and a spec naming none would otherwise pass unnoticed. */
    for (int i = 0; i < n; i++)
        if (run_check_device(specs[i]) != 0)
            return -1;
    return n > 0 ? n : -1;
}

static int save_checkpoint(moelat_group *g, const run_opts *o) {
    if (moelat_group_save_checkpoint(g, o->ckpt_dir) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: %s\n", moelat_group_last_error(g));
        return -1;
    }
    if (!o->json && !o->quiet)
        fprintf(stderr, "moelat-engine run: checkpoint at step %llu saved to %s\n",
                (unsigned long long)moelat_group_step_count(g), o->ckpt_dir);
    return 0;
}

#define GFAIL(what)                                                                      \
    do {                                                                                 \
        fprintf(stderr, "moelat-engine run: %s%s\n", what, moelat_group_last_error(g)); \
        goto done;                                                                       \
    } while (0)

int run_group(const moelat_config *cfg, const run_opts *o) {
    static char specs[MAX_DEVICES][128];
    const char *ptr[MAX_DEVICES];
    int n = parse_devices(o->devices, specs, MAX_DEVICES);
    if (n < 0)
        return 2;
    double w[MAX_DEVICES];
    if (o->slab_weights && slab_parse_weights(o->slab_weights, w, MAX_DEVICES) != n) {
        fprintf(stderr, "moelat-engine run: --slab-weights wants %d positive numbers, got '%s'\n", n,
                o->slab_weights);
        return 2;
    }
    for (int i = 0; i < n; i++)
        ptr[i] = specs[i];
    moelat_group *g = NULL;
    char err[2048];
    if (moelat_group_create(cfg, ptr, n, &g, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: %s\n", err);
        return 1;
    }
    int rc = 1;
    double *step_ms = calloc((size_t)(o->steps > 0 ? o->steps : 1), sizeof *step_ms);
    moelat_slab_info *info = calloc((size_t)n, sizeof *info);
    moelat_report *rep = calloc((size_t)n, sizeof *rep);
    float *face = NULL;
    if (!step_ms || !info || !rep) {
        fprintf(stderr, "moelat-engine run: out of memory\n");
        goto done;
    }
    if (o->slab_weights && moelat_group_set_split(g, w) != MOELAT_OK)
        GFAIL("--slab-weights: ");
    if (o->weights && moelat_group_load_weights(g, o->weights) != MOELAT_OK)
        GFAIL("");
    if (o->resume &&
        moelat_group_resume_checkpoint(g, o->resume, o->weights ? MOELAT_RESUME_KEEP_WEIGHTS : 0) != MOELAT_OK)
        GFAIL("");
    if (o->state && moelat_group_load_states(g, o->state) != MOELAT_OK)
        GFAIL("");
    if (o->input) {
        size_t cnt;
        float *ext = slab_read_input(cfg, o->input, &cnt);
        if (!ext)
            goto done;
        moelat_status st = moelat_group_set_external_input(g, ext, cnt);
        free(ext);
        if (st != MOELAT_OK)
            GFAIL("");
    }
    if (o->save_weights && moelat_group_save_weights(g, o->save_weights) != MOELAT_OK)
        GFAIL("");
    /* A resume into its own directory need not save the step it read. */
    uint64_t last_ckpt = o->resume && o->ckpt_dir && strcmp(o->resume, o->ckpt_dir) == 0
                             ? moelat_group_step_count(g)
                             : UINT64_MAX;
    int ckpt_failed = 0;
    double t0 = now_ms();
    for (long long s = 0; s < o->steps; s++) {
        double ts = now_ms();
        moelat_status st = moelat_group_step(g, 1);
        step_ms[s] = now_ms() - ts;
        if (st != MOELAT_OK) {
            fprintf(stderr, "moelat-engine run: %s\n", moelat_group_last_error(g));
            if (o->save_state && moelat_group_save_states(g, o->save_state) == MOELAT_OK)
                fprintf(stderr, "moelat-engine run: states at the failing step saved to %s\n", o->save_state);
            goto done;
        }
        if (o->ckpt_every && moelat_group_step_count(g) % (uint64_t)o->ckpt_every == 0) {
            if (save_checkpoint(g, o) != 0) {
                ckpt_failed = 1; /* the other outputs are still saved below */
                break;
            }
            last_ckpt = moelat_group_step_count(g);
        }
    }
    double total_s = (now_ms() - t0) * 1e-3;
    /* Every output is attempted even when another failed (run_checks.h). */
    run_saves sv = {0};
    if (ckpt_failed)
        run_saves_note(&sv, "checkpoint", o->ckpt_dir, "");
    else if (o->ckpt_dir && last_ckpt != moelat_group_step_count(g))
        run_saves_note(&sv, "checkpoint", o->ckpt_dir, save_checkpoint(g, o) == 0 ? NULL : "");
    if (o->save_state)
        run_saves_note(&sv, "--save-state", o->save_state,
                       moelat_group_save_states(g, o->save_state) == MOELAT_OK ? NULL
                                                                              : moelat_group_last_error(g));
    if (o->save_outputs) {
        size_t cnt = (size_t)cfg->dims[0] * cfg->dims[1] * (size_t)cfg->state_size;
        face = malloc(cnt * sizeof *face);
        if (!face)
            run_saves_note(&sv, "--save-outputs", o->save_outputs, "out of memory");
        else if (moelat_group_get_outputs(g, face, cnt) != MOELAT_OK)
            run_saves_note(&sv, "--save-outputs", o->save_outputs, moelat_group_last_error(g));
        else
            run_saves_note(&sv, "--save-outputs", o->save_outputs,
                           slab_write_outputs(cfg, face, o->save_outputs) == 0 ? NULL : "");
    }
    if (run_saves_report(&sv) != 0)
        goto done;
    for (int i = 0; i < n; i++) {
        moelat_slab_info_init(&info[i]);
        moelat_report_init(&rep[i]);
        moelat_group_slab_info(g, i, &info[i]);
        moelat_get_report(moelat_group_lattice(g, i), &rep[i]);
    }
    slab_print_result(o->json, cfg, "devices", moelat_get_mode(moelat_group_lattice(g, 0)), o->steps, total_s,
                      slab_median(step_ms, o->steps), moelat_lattice_halo_depth(moelat_group_lattice(g, 0)), info,
                      rep, n);
    rc = 0;
done:
    free(face);
    free(step_ms);
    free(info);
    free(rep);
    moelat_group_destroy(g);
    return rc;
}
