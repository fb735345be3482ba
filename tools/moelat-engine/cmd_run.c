/* moelat-engine run: step a lattice and report timings. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "cli_common.h"
#include "moelat/util.h"
#include "report_print.h"
#include "run_checks.h"
#include "run_slabs.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: moelat-engine run [options]\n\n"
            "Steps a lattice (default: debug preset, 15x15x15, 10 steps) and prints the time per step.\n\n"
            "options:\n%s"
            "  --steps N              steps to run (default 10)\n"
            "  --weights FILE         load weights (safetensors)\n"
            "  --save-weights FILE    save the weights (safetensors)\n"
            "  --state FILE           load initial states (.npy, float32, (Z, Y, X, S))\n"
            "  --save-state FILE      save the final states (.npy); when a step fails, those of\n"
            "                         the last step that completed (finite)\n"
            "  --input FILE           external input of the z=0 face (.npy, float32, (Y, X, 16))\n"
            "  --save-outputs FILE    save the output face z=Z-1 (.npy, (Y, X, S))\n"
            "  --checkpoint-dir DIR   save a checkpoint there at the end of the run\n"
            "  --checkpoint-every N   also every N steps (step counter multiple of N)\n"
            "  --resume DIR           continue from the checkpoint in DIR, bit-exactly; --steps\n"
            "                         counts the additional steps. The model comes from the\n"
            "                         checkpoint; model options given must agree with it, and\n"
            "                         --weights must be the checkpoint's weights\n"
            "  --devices LIST|all     split the lattice into slabs of z planes, one per OpenCL device\n"
            "                         (indices or name substrings, e.g. 0,1; 'all'), stepped in\n"
            "                         parallel with halo planes exchanged every step; same result\n"
            "                         as one device. Slabs are re-sized by measured throughput\n"
            "                         after the first step unless --slab-weights is given\n"
            "  --slab-weights W,...   relative slab sizes, one per device or MPI rank\n"
            "  (under mpirun)         each rank steps one slab on device local-rank mod devices\n"
            "                         (or --device); rank 0 reads and writes every file.\n"
            "                         --devices is not available there; --resume needs the\n"
            "                         checkpoint directory visible to every rank\n"
            "  --json                 print one JSON object instead of text (with --devices or\n"
            "                         mpirun: each slab's planes, ms/step and halo ms/step)\n"
            "  --quiet                no progress bar\n"
            "  --help                 this text\n",
            cli_model_help);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void progress(int done, int total, double elapsed) {
    int width = 30, fill = total ? done * width / total : width;
    fprintf(stderr, "\r[");
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %d/%d steps  %.1f s", done, total, elapsed);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

/* --input: the z = 0 face's external input, (Y, X, E). */
static int load_input(moelat_lattice *lat, const char *path) {
    const moelat_config *c = moelat_lattice_config(lat);
    int64_t shape[3] = {c->dims[1], c->dims[0], MOELAT_EXT_SIZE};
    size_t n = (size_t)c->dims[0] * c->dims[1] * MOELAT_EXT_SIZE;
    float *buf = malloc(n * sizeof(float));
    char err[1024];
    int rc = -1;
    if (!buf)
        fprintf(stderr, "moelat-engine run: out of memory\n");
    else if (moelat_npy_read(path, buf, 3, shape, err, sizeof err) != MOELAT_OK)
        fprintf(stderr, "moelat-engine run: --input: %s\n", err);
    else if (moelat_set_external_input(lat, buf, n) != MOELAT_OK)
        fprintf(stderr, "moelat-engine run: %s\n", moelat_last_error(lat));
    else
        rc = 0;
    free(buf);
    return rc;
}

/* --save-outputs: the z = Z-1 face, (Y, X, S). */
static int save_output_face(moelat_lattice *lat, const char *path) {
    const moelat_config *c = moelat_lattice_config(lat);
    int S = moelat_state_size(lat);
    int64_t shape[3] = {c->dims[1], c->dims[0], S};
    size_t n = (size_t)c->dims[0] * c->dims[1] * (size_t)S;
    float *buf = malloc(n * sizeof(float));
    char err[1024];
    int rc = -1;
    if (!buf)
        fprintf(stderr, "moelat-engine run: out of memory\n");
    else if (moelat_get_outputs(lat, buf, n) != MOELAT_OK)
        fprintf(stderr, "moelat-engine run: %s\n", moelat_last_error(lat));
    else if (moelat_npy_write(path, buf, 3, shape, err, sizeof err) != MOELAT_OK)
        fprintf(stderr, "moelat-engine run: %s\n", err);
    else
        rc = 0;
    free(buf);
    return rc;
}

/* Model fields set explicitly (options or --config keys): with --resume,
 * the others come from the checkpoint, and these must agree with it. */
typedef struct explicit_fields {
    int preset, dims, state_size, radius_ratio, band_ratios, cnf_mode, cnf_steps, seed;
    int expert[MOELAT_BANDS];
    json_t *hidden; /* the config file's "hidden" object, or NULL */
    json_t *root;
} explicit_fields;

static int config_file_keys(const char *path, explicit_fields *x) {
    json_error_t je;
    /* Checked first: json_load_file would wait forever on a FIFO. */
    x->root = moelat_file_check_input(path, NULL, 0) == MOELAT_OK ? json_load_file(path, 0, &je) : NULL;
    if (!x->root || !json_is_object(x->root)) {
        /* cli_build_config reports the file's problem. */
        return 0;
    }
    x->preset |= json_object_get(x->root, "preset") != NULL;
    x->dims |= json_object_get(x->root, "dims") != NULL;
    x->state_size |= json_object_get(x->root, "state_size") != NULL;
    x->radius_ratio |= json_object_get(x->root, "radius_ratio") != NULL;
    x->band_ratios |= json_object_get(x->root, "band_ratios") != NULL;
    x->cnf_mode |= json_object_get(x->root, "cnf_mode") != NULL;
    x->cnf_steps |= json_object_get(x->root, "cnf_steps") != NULL;
    x->seed |= json_object_get(x->root, "seed") != NULL;
    json_t *e = json_object_get(x->root, "experts");
    for (int k = 0; k < MOELAT_BANDS && json_is_object(e); k++)
        x->expert[k] |= json_object_get(e, moelat_band_name(k)) != NULL;
    x->hidden = json_object_get(x->root, "hidden");
    return 0;
}

/* --resume: the config is the checkpoint's model with the explicit fields
 * from the command line and --config on top; execution fields as usual. */
static int resume_config(cli_model_opts *mo, const char *dir, moelat_config *cfg) {
    char err[2048];
    moelat_config ck = MOELAT_CONFIG_INIT;
    if (moelat_config_preset("debug", &ck, err, sizeof err) != MOELAT_OK ||
        moelat_checkpoint_config(dir, &ck, NULL, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: --resume: %s\n", err);
        return -1;
    }
    explicit_fields x;
    memset(&x, 0, sizeof x);
    if (mo->config_path)
        config_file_keys(mo->config_path, &x);
    x.preset |= mo->preset != NULL;
    x.dims |= mo->dims != NULL;
    x.radius_ratio |= mo->radius_ratio > 0;
    x.cnf_mode |= mo->cnf_mode != NULL;
    x.seed |= mo->seed >= 0;
    for (int j = 0; j < mo->n_experts; j++)
        for (int k = 0; k < MOELAT_BANDS; k++) {
            size_t n = strlen(moelat_band_name(k));
            if (strncmp(mo->experts[j], moelat_band_name(k), n) == 0 && mo->experts[j][n] == '=')
                x.expert[k] = 1;
        }
    /* The checkpoint's preset is the base unless one is named. */
    if (!x.preset)
        mo->preset = ck.preset;
    int rc = cli_build_config(mo, cfg, "run");
    if (!x.preset)
        mo->preset = NULL; /* pointed into ck */
    if (rc == 0) {
        if (!x.preset)
            memcpy(cfg->preset, ck.preset, sizeof cfg->preset);
        if (!x.dims)
            memcpy(cfg->dims, ck.dims, sizeof cfg->dims);
        if (!x.state_size)
            cfg->state_size = ck.state_size;
        if (!x.radius_ratio)
            cfg->radius_ratio = ck.radius_ratio;
        if (!x.band_ratios)
            memcpy(cfg->band_ratio, ck.band_ratio, sizeof cfg->band_ratio);
        if (!x.cnf_mode)
            cfg->cnf_mode = ck.cnf_mode;
        if (!x.cnf_steps)
            cfg->cnf_steps = ck.cnf_steps;
        if (!x.seed)
            cfg->seed = ck.seed;
        for (int k = 0; k < MOELAT_BANDS; k++)
            if (!x.expert[k])
                memcpy(cfg->expert[k], ck.expert[k], sizeof cfg->expert[k]);
        for (int i = 0; i < ck.n_hidden; i++)
            if (!x.hidden || !json_object_get(x.hidden, ck.hidden[i].name))
                moelat_config_set_hidden(cfg, ck.hidden[i].name, ck.hidden[i].value);
    }
    json_decref(x.root);
    return rc;
}

static int save_checkpoint(moelat_lattice *lat, const char *dir, int verbose) {
    if (moelat_save_checkpoint(lat, dir) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: %s\n", moelat_last_error(lat));
        return -1;
    }
    if (verbose)
        fprintf(stderr, "moelat-engine run: checkpoint at step %llu saved to %s\n",
                (unsigned long long)moelat_step_count(lat), dir);
    return 0;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int cmd_run(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    long long steps = 10;
    const char *weights = NULL, *save_weights = NULL, *state = NULL, *save_state = NULL;
    const char *input = NULL, *save_outputs = NULL;
    const char *ckpt_dir = NULL, *resume = NULL;
    long long ckpt_every = 0;
    int json = 0, quiet = 0;
    const char *devices = NULL, *slab_weights = NULL;
    for (int i = 1; i < argc; i++) {
        int r = cli_model_opt(&mo, argc, argv, &i, "run");
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        const char *a = argv[i];
        const char **file_opt = strcmp(a, "--weights") == 0        ? &weights
                                : strcmp(a, "--save-weights") == 0 ? &save_weights
                                : strcmp(a, "--state") == 0        ? &state
                                : strcmp(a, "--save-state") == 0   ? &save_state
                                : strcmp(a, "--input") == 0        ? &input
                                : strcmp(a, "--save-outputs") == 0 ? &save_outputs
                                : strcmp(a, "--checkpoint-dir") == 0 ? &ckpt_dir
                                : strcmp(a, "--resume") == 0       ? &resume
                                : strcmp(a, "--devices") == 0      ? &devices
                                : strcmp(a, "--slab-weights") == 0 ? &slab_weights
                                                                   : NULL;
        int is_num = strcmp(a, "--steps") == 0 || strcmp(a, "--checkpoint-every") == 0;
        if ((file_opt || is_num) && i + 1 >= argc) {
            fprintf(stderr, "moelat-engine run: option %s needs a value\n", a);
            return 2;
        }
        if (file_opt) {
            if (!argv[i + 1][0]) {
                fprintf(stderr, "moelat-engine run: option %s needs a %s, got an empty string\n", a,
                        file_opt == &devices || file_opt == &slab_weights ? "list" : "file name");
                return 2;
            }
            *file_opt = argv[++i];
        } else if (strcmp(a, "--steps") == 0) {
            if (cli_parse_range(argv[++i], 0, RUN_MAX_STEPS, &steps, "run", a) != 0)
                return 2;
        } else if (strcmp(a, "--checkpoint-every") == 0) {
            if (cli_parse_range(argv[++i], 1, RUN_MAX_STEPS, &ckpt_every, "run", a) != 0)
                return 2;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "moelat-engine run: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (resume && state) {
        fprintf(stderr, "moelat-engine run: --state and --resume both set the states; give one\n");
        return 2;
    }
    if (ckpt_every && !ckpt_dir)
        ckpt_dir = resume;
    if (ckpt_every && !ckpt_dir) {
        fprintf(stderr, "moelat-engine run: --checkpoint-every needs --checkpoint-dir (or --resume)\n");
        return 2;
    }
    moelat_config cfg = MOELAT_CONFIG_INIT;
    if (resume ? resume_config(&mo, resume, &cfg) != 0 : cli_build_config(&mo, &cfg, "run") != 0)
        return 2;
    /* Before any work: inputs must be regular files, outputs replaceable,
     * and the lattice must fit in memory. */
    const char *in_opt[] = {"--weights", "--state", "--input"};
    const char *in_path[] = {weights, state, input};
    for (int k = 0; k < 3; k++) {
        char err[1200];
        if (in_path[k] && moelat_file_check_input(in_path[k], err, sizeof err) != MOELAT_OK) {
            fprintf(stderr, "moelat-engine run: %s: %s\n", in_opt[k], err);
            return 1;
        }
    }
    if ((save_weights && run_check_output("--save-weights", save_weights, 0) != 0) ||
        (save_state && run_check_output("--save-state", save_state, 0) != 0) ||
        (save_outputs && run_check_output("--save-outputs", save_outputs, 0) != 0) ||
        (ckpt_dir && run_check_output(ckpt_dir == resume ? "--resume" : "--checkpoint-dir", ckpt_dir, 1) != 0))
        return 1;
    if (run_check_memory(&cfg, !json && !quiet) != 0)
        return 1;
    int mpi = run_mpi_launched();
    if (devices || slab_weights || mpi) {
        if (mpi && devices) {
            fprintf(stderr, "moelat-engine run: under mpirun each rank takes one device; use --device, not --devices\n");
            return 2;
        }
        run_opts ro = {steps, weights, save_weights, state, save_state, input, save_outputs,
                       devices ? devices : "0", slab_weights, json, quiet, ckpt_dir, resume, ckpt_every};
        if (!devices && !mpi && cfg.device[0])
            ro.devices = cfg.device;
        return mpi ? run_mpi(&cfg, &ro) : run_group(&cfg, &ro);
    }

    char err[2048];
    moelat_lattice *lat = NULL;
    if (moelat_lattice_create(&cfg, &lat, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: %s\n", err);
        return 1;
    }
    int rc = 1;
    size_t N = moelat_cell_count(lat);
    int S = moelat_state_size(lat);
    double *step_ms = calloc((size_t)(steps > 0 ? steps : 1), sizeof *step_ms);
    if (!step_ms)
        goto done;
    if (weights && moelat_load_weights(lat, weights) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: %s\n", moelat_last_error(lat));
        goto done;
    }
    if (resume &&
        moelat_resume_checkpoint_ex(lat, resume, weights ? MOELAT_RESUME_KEEP_WEIGHTS : 0) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: %s%s%s\n", moelat_last_error(lat), weights ? "; --weights " : "",
                weights && strstr(moelat_last_error(lat), "weights digest") ? weights : "");
        goto done;
    }
    if (state && moelat_load_states(lat, state) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: %s\n", moelat_last_error(lat));
        goto done;
    }
    if (input && load_input(lat, input) != 0)
        goto done;
    if (save_weights && moelat_save_weights(lat, save_weights) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: %s\n", moelat_last_error(lat));
        goto done;
    }

    int show_progress = !json && !quiet && isatty(STDERR_FILENO);
    /* A resume into its own directory need not save the step it read. */
    uint64_t last_ckpt = resume && ckpt_dir && strcmp(resume, ckpt_dir) == 0 ? moelat_step_count(lat)
                                                                             : UINT64_MAX;
    uint64_t first_step = moelat_step_count(lat);
    int n_ckpt = 0, ckpt_failed = 0;
    double t_start = now_s();
    long long done_steps = 0;
    moelat_status st = MOELAT_OK;
    for (; done_steps < steps; done_steps++) {
        double t0 = now_s();
        st = moelat_step(lat, 1);
        step_ms[done_steps] = (now_s() - t0) * 1e3;
        if (st != MOELAT_OK)
            break;
        if (ckpt_every && moelat_step_count(lat) % (uint64_t)ckpt_every == 0) {
            if (save_checkpoint(lat, ckpt_dir, !json && !quiet) != 0) {
                /* Stop stepping, but still save the other outputs below. */
                ckpt_failed = 1;
                break;
            }
            last_ckpt = moelat_step_count(lat);
            n_ckpt++;
        }
        double elapsed = now_s() - t_start;
        if (show_progress && (elapsed > 1.0 || done_steps + 1 == steps) && elapsed > 1.0)
            progress((int)done_steps + 1, (int)steps, elapsed);
    }
    double total_s = now_s() - t_start;
    if (st != MOELAT_OK) {
        fprintf(stderr, "moelat-engine run: %s\n", moelat_last_error(lat));
        if (save_state) {
            if (moelat_save_states(lat, save_state) == MOELAT_OK)
                fprintf(stderr, "moelat-engine run: states after step %llu, the last completed, saved to %s\n",
                        (unsigned long long)moelat_step_count(lat), save_state);
            else
                fprintf(stderr, "moelat-engine run: %s\n", moelat_last_error(lat));
        }
        goto done;
    }
    /* Each output is attempted even when another failed, so that one bad
     * path loses nothing else; the summary names what was written. */
    run_saves sv = {0};
    if (save_state)
        run_saves_note(&sv, "--save-state", save_state,
                       moelat_save_states(lat, save_state) == MOELAT_OK ? NULL : moelat_last_error(lat));
    if (ckpt_failed)
        run_saves_note(&sv, "checkpoint", ckpt_dir, "");
    else if (ckpt_dir && last_ckpt != moelat_step_count(lat)) {
        int ok = save_checkpoint(lat, ckpt_dir, !json && !quiet) == 0;
        run_saves_note(&sv, "checkpoint", ckpt_dir, ok ? NULL : "");
        if (ok) {
            last_ckpt = moelat_step_count(lat);
            n_ckpt++;
        }
    }
    if (save_outputs)
        run_saves_note(&sv, "--save-outputs", save_outputs, save_output_face(lat, save_outputs) == 0 ? NULL : "");
    if (run_saves_report(&sv) != 0)
        goto done;

    /* Median of the steps after the first, which includes warm-up work. */
    double median = 0, mean = steps > 0 ? total_s * 1e3 / (double)steps : 0;
    if (steps > 0) {
        long long first = steps > 1 ? 1 : 0;
        qsort(step_ms + first, (size_t)(steps - first), sizeof *step_ms, compare_double);
        median = step_ms[first + (steps - first) / 2];
    }
    double cps = median > 0 ? (double)N / (median * 1e-3) : 0;
    moelat_report rep = MOELAT_REPORT_INIT;
    moelat_get_report(lat, &rep);
    const moelat_config *c = moelat_lattice_config(lat);
    if (json) {
        json_t *o = json_pack("{s:s, s:[i,i,i], s:i, s:I, s:I, s:f, s:f, s:f, s:s, s:s, s:o}", "preset",
                              c->preset, "dims", c->dims[0], c->dims[1], c->dims[2], "state_size", S, "steps",
                              (json_int_t)steps, "cells", (json_int_t)N, "ms_per_step", median,
                              "mean_ms_per_step", mean, "cells_per_second", cps, "mode",
                              cli_mode_name(moelat_get_mode(lat)), "device", moelat_device_name(lat),
                              "report", report_to_json(&rep));
        json_object_set_new(o, "first_step", json_integer((json_int_t)first_step));
        json_object_set_new(o, "step_count", json_integer((json_int_t)moelat_step_count(lat)));
        if (ckpt_dir) {
            json_object_set_new(o, "checkpoints", json_integer(n_ckpt));
            json_object_set_new(o, "checkpoint_dir", json_string(ckpt_dir));
        }
        if (resume)
            json_object_set_new(o, "resumed_from", json_string(resume));
        char *s = json_dumps(o, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("moelat-engine run: preset %s, %dx%dx%d cells (N=%zu, S=%d), mode %s, device %s\n", c->preset,
               c->dims[0], c->dims[1], c->dims[2], N, S, cli_mode_name(moelat_get_mode(lat)),
               moelat_device_name(lat));
        printf("%lld steps in %.3f s: %.3f ms/step (median), %.3f ms/step (mean), %.3g cells/s\n", steps,
               total_s, median, mean, cps);
        report_print_table(stdout, &rep);
    }
    rc = 0;
done:
    free(step_ms);
    moelat_lattice_destroy(lat);
    return rc;
}
