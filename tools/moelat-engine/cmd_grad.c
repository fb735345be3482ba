/* moelat-engine grad: L = 0.5 * sum (s_T - target)^2 after T steps and its
 * exact gradients (moelat/grad.h): dL/dW, dL/ds_0, dL/d input. Every
 * input and output path is checked before any work, every result computed
 * before the first file is written; each file is written atomically. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "cli_common.h"
#include "moelat/grad.h"
#include "moelat/util.h"
#include "train_paths.h"

#define CMD "moelat-engine grad"

static void usage(FILE *out) {
    fprintf(out,
            "usage: moelat-engine grad --target FILE.npy [options]\n\n"
            "Runs T steps of the host path in float64 from the initial states, computes\n"
            "L = 0.5 * sum over every cell and channel of (s_T - target)^2 and its exact\n"
            "gradients by reverse mode, and prints L. States are recorded every k steps and\n"
            "recomputed in between (memory O(N*S*(T/k + k))). Needs CNF mode euler and experts\n"
            "with a backward (the built-in ones have it). The reverse steps run batched on the\n"
            "OpenCL device (float32) with --mode batch or auto (the default), per chunk on the\n"
            "host where the device fails; --mode percell (or --tune grad_device=off) keeps\n"
            "them on the host in float64. The line 'backward:' says which.\n\n"
            "options:\n%s"
            "  --target FILE          the target states (.npy, float32, (Z, Y, X, S)); required\n"
            "  --steps T              steps (default 1)\n"
            "  --weights FILE         load weights (safetensors)\n"
            "  --state FILE           initial states (.npy, float32, (Z, Y, X, S))\n"
            "  --input FILE           external input of the z=0 face (.npy, float32, (Y, X, 16))\n"
            "  --checkpoint-every K   record the states every K steps (default: every step when\n"
            "                         that fits the memory budget, else about sqrt(T))\n"
            "  --memory-budget MIB    memory the gradient may use (default: half the RAM)\n"
            "  --save-grads FILE      dL/dW (safetensors, float32, the weights' names and shapes)\n"
            "  --save-state-grad FILE dL/ds_0 (.npy, (Z, Y, X, S))\n"
            "  --save-input-grad FILE dL/d input (.npy, (Y, X, 16))\n"
            "  --json                 print one JSON object\n"
            "  --help                 this text\n",
            cli_model_help);
}

static int read_npy(const char *opt, const char *path, float *dst, int ndim, const int64_t *shape) {
    char err[1024];
    if (moelat_npy_read(path, dst, ndim, shape, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, CMD ": %s: %s\n", opt, err);
        return -1;
    }
    return 0;
}

typedef struct grad_args {
    const char *target, *weights, *state, *input, *save_grads, *save_state, *save_input;
    long long steps, every, budget_mib;
    int json;
} grad_args;

static int parse(int argc, char **argv, cli_model_opts *mo, grad_args *a) {
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int r = cli_model_opt(mo, argc, argv, &i, "grad");
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        const char **file = strcmp(o, "--target") == 0            ? &a->target
                            : strcmp(o, "--weights") == 0         ? &a->weights
                            : strcmp(o, "--state") == 0           ? &a->state
                            : strcmp(o, "--input") == 0           ? &a->input
                            : strcmp(o, "--save-grads") == 0      ? &a->save_grads
                            : strcmp(o, "--save-state-grad") == 0 ? &a->save_state
                            : strcmp(o, "--save-input-grad") == 0 ? &a->save_input
                                                                  : NULL;
        long long *num = strcmp(o, "--steps") == 0              ? &a->steps
                         : strcmp(o, "--checkpoint-every") == 0 ? &a->every
                         : strcmp(o, "--memory-budget") == 0    ? &a->budget_mib
                                                                : NULL;
        if ((file || num) && i + 1 >= argc) {
            fprintf(stderr, CMD ": %s needs a value\n", o);
            return 2;
        }
        if (file) {
            *file = argv[++i];
        } else if (num) {
            *num = cli_parse_int(argv[++i]);
            if (*num < 1 || *num > 1000000000) {
                fprintf(stderr, CMD ": %s wants a positive integer, got '%s'\n", o, argv[i]);
                return 2;
            }
        } else if (strcmp(o, "--json") == 0) {
            a->json = 1;
        } else if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, CMD ": unknown option '%s' (see --help)\n", o);
            return 2;
        }
    }
    if (!a->target) {
        fprintf(stderr, CMD ": --target FILE.npy is required (the states' shape (Z, Y, X, S))\n");
        return 2;
    }
    return -1; /* go on */
}

/* Loads the lattice's inputs; 0 or -1 (message printed). */
static int load_inputs(moelat_lattice *lat, const grad_args *a) {
    if (a->weights && moelat_load_weights(lat, a->weights) != MOELAT_OK) {
        fprintf(stderr, CMD ": --weights: %s\n", moelat_last_error(lat));
        return -1;
    }
    if (a->state && moelat_load_states(lat, a->state) != MOELAT_OK) {
        fprintf(stderr, CMD ": --state: %s\n", moelat_last_error(lat));
        return -1;
    }
    if (a->input) {
        const moelat_config *c = moelat_lattice_config(lat);
        int64_t shape[3] = {c->dims[1], c->dims[0], MOELAT_EXT_SIZE};
        size_t n = (size_t)c->dims[0] * c->dims[1] * MOELAT_EXT_SIZE;
        float *buf = malloc(n * sizeof *buf);
        int rc = buf ? read_npy("--input", a->input, buf, 3, shape) : -1;
        if (rc == 0 && moelat_set_external_input(lat, buf, n) != MOELAT_OK) {
            fprintf(stderr, CMD ": --input: %s\n", moelat_last_error(lat));
            rc = -1;
        }
        free(buf);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* The loss and dL/ds_T = s_T - target; -1 (printed) when L is not finite. */
static int loss_and_seed(const float *target, const double *sT, double *d, size_t n, int S, const int32_t dims[3],
                         double *L) {
    double acc = 0.0;
    for (size_t v = 0; v < n; v++) {
        d[v] = sT[v] - (double)target[v];
        acc += 0.5 * d[v] * d[v];
    }
    if (isfinite(acc)) {
        *L = acc;
        return 0;
    }
    for (size_t v = 0; v < n; v++)
        if (!isfinite(d[v])) {
            size_t i = v / (size_t)S;
            fprintf(stderr, CMD ": the loss is not finite: %s is %g at cell (x %zu, y %zu, z %zu), channel %zu; "
                    "nothing written\n",
                    isfinite(target[v]) ? "s_T - target" : "the target", isfinite(target[v]) ? d[v] : target[v],
                    i % (size_t)dims[0], i / (size_t)dims[0] % (size_t)dims[1],
                    i / ((size_t)dims[0] * (size_t)dims[1]), v % (size_t)S);
            return -1;
        }
    fprintf(stderr, CMD ": the loss overflows (%g); nothing written\n", acc);
    return -1;
}

static int write_outputs(moelat_grad *g, moelat_lattice *lat, const grad_args *a) {
    const moelat_config *c = moelat_lattice_config(lat);
    int S = moelat_state_size(lat);
    char err[1024];
    if (a->save_grads && moelat_grad_save_weights(g, a->save_grads) != MOELAT_OK) {
        fprintf(stderr, CMD ": --save-grads: %s\n", moelat_last_error(lat));
        return -1;
    }
    if (a->save_state) {
        size_t n = moelat_cell_count(lat) * (size_t)S;
        int64_t shape[4] = {c->dims[2], c->dims[1], c->dims[0], S};
        float *buf = malloc(n * sizeof *buf);
        int rc = buf && moelat_grad_states(g, buf, n) == MOELAT_OK ? 0 : -1;
        if (rc == 0 && moelat_npy_write(a->save_state, buf, 4, shape, err, sizeof err) != MOELAT_OK) {
            fprintf(stderr, CMD ": --save-state-grad: %s\n", err);
            rc = -2;
        }
        free(buf);
        if (rc == -1)
            fprintf(stderr, CMD ": --save-state-grad: %s\n", buf ? moelat_last_error(lat) : "out of memory");
        if (rc)
            return -1;
    }
    if (a->save_input) {
        size_t n = (size_t)c->dims[0] * c->dims[1] * MOELAT_EXT_SIZE;
        int64_t shape[3] = {c->dims[1], c->dims[0], MOELAT_EXT_SIZE};
        float *buf = malloc(n * sizeof *buf);
        int rc = buf && moelat_grad_input(g, buf, n) == MOELAT_OK ? 0 : -1;
        if (rc == 0 && moelat_npy_write(a->save_input, buf, 3, shape, err, sizeof err) != MOELAT_OK) {
            fprintf(stderr, CMD ": --save-input-grad: %s\n", err);
            rc = -2;
        }
        free(buf);
        if (rc == -1)
            fprintf(stderr, CMD ": --save-input-grad: %s\n", buf ? moelat_last_error(lat) : "out of memory");
        if (rc)
            return -1;
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int cmd_grad(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    grad_args a = {0};
    a.steps = 1;
    int pr = parse(argc, argv, &mo, &a);
    if (pr >= 0)
        return pr;
    moelat_config cfg;
    if (cli_build_config(&mo, &cfg, "grad") != 0)
        return 2;
    char err[2048];
    const char *outs[][2] = {{"--save-grads", a.save_grads}, {"--save-state-grad", a.save_state},
                             {"--save-input-grad", a.save_input}};
    for (size_t k = 0; k < 3; k++)
        if (outs[k][1] && train_check_output("grad", outs[k][0], outs[k][1], 0) != 0)
            return 1;
    const char *ins[][2] = {{"--target", a.target}, {"--weights", a.weights}, {"--state", a.state},
                            {"--input", a.input}};
    for (size_t k = 0; k < 4; k++)
        if (ins[k][1] && moelat_file_check_input(ins[k][1], err, sizeof err) != MOELAT_OK) {
            fprintf(stderr, CMD ": %s: %s\n", ins[k][0], err);
            return 1;
        }
    moelat_lattice *lat = NULL;
    if (moelat_lattice_create(&cfg, &lat, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, CMD ": %s\n", err);
        return 1;
    }
    const int S = moelat_state_size(lat);
    const size_t n = moelat_cell_count(lat) * (size_t)S;
    float *target = malloc(n * sizeof *target);
    double *sT = malloc(n * sizeof *sT), *d = malloc(n * sizeof *d);
    moelat_grad *g = NULL;
    int rc = 1;
    double L = 0.0, t0 = now_s();
    int64_t shape[4] = {cfg.dims[2], cfg.dims[1], cfg.dims[0], S};
    if (!target || !sT || !d) {
        fprintf(stderr, CMD ": out of memory\n");
        goto done;
    }
    /* Cheap checks first: the target's file, shape and dtype. */
    if (read_npy("--target", a.target, target, 4, shape) != 0 || load_inputs(lat, &a) != 0)
        goto done;
    moelat_grad_options opt;
    moelat_grad_options_default(&opt);
    opt.checkpoint_every = (int32_t)a.every;
    opt.memory_budget = (uint64_t)a.budget_mib << 20;
    if (moelat_grad_record(lat, (int)a.steps, &opt, &g) != MOELAT_OK) {
        fprintf(stderr, CMD ": %s\n", moelat_last_error(lat));
        goto done;
    }
    if (moelat_grad_final_states_f64(g, sT, n) != MOELAT_OK || loss_and_seed(target, sT, d, n, S, cfg.dims, &L) != 0)
        goto done;
    if (moelat_grad_backward_f64(g, d, n) != MOELAT_OK) {
        fprintf(stderr, CMD ": %s\n", moelat_last_error(lat));
        goto done;
    }
    if (write_outputs(g, lat, &a) != 0)
        goto done;
    double secs = now_s() - t0;
    long on_dev = 0, on_host = 0;
    const char *fb = NULL;
    moelat_grad_chunks(g, &on_dev, &on_host, &fb);
    if (a.json) {
        json_t *o = json_pack("{s:f, s:I, s:i, s:I, s:i, s:I, s:f, s:s, s:I, s:I, s:s}", "loss", L, "steps",
                              (json_int_t)a.steps, "checkpoint_every", moelat_grad_checkpoint_every(g), "cells",
                              (json_int_t)moelat_cell_count(lat), "state_size", S, "weights",
                              (json_int_t)moelat_weights_count(lat), "seconds", secs, "backward",
                              moelat_grad_path(g), "chunks_device", (json_int_t)on_dev, "chunks_host",
                              (json_int_t)on_host, "fallback", fb);
        char *txt = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
        if (txt)
            printf("%s\n", txt);
        free(txt);
        json_decref(o);
    } else {
        printf("loss %.10g  (%lld steps, states recorded every %d, %.2f s)\n", L, a.steps,
               moelat_grad_checkpoint_every(g), secs);
        printf("backward: %s\n", moelat_grad_path(g));
        if (on_host && on_dev)
            printf("backward: %ld chunk-steps redone on the host (last: %s)\n", on_host, fb);
    }
    rc = 0;
done:
    moelat_grad_destroy(g);
    moelat_lattice_destroy(lat);
    free(target);
    free(sT);
    free(d);
    return rc;
}
