/* moelat-engine train: fit the lattice's weights to a data set of input
 * faces and target output faces (train_loop.c), or make the synthetic
 * data set (train_data.c). */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "cli_common.h"
#include "loss_plot.h"
#include "moelat/util.h"
#include "train_data.h"
#include "train_loop.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: moelat-engine train --data DIR [options]\n"
            "       moelat-engine train --make-data DIR [--samples B] [model options]\n\n"
            "Trains the lattice's weights: each sample sets the external input of the z=0 face,\n"
            "runs --steps steps from the initial states and is scored by the mean squared error\n"
            "of the output face z=Z-1 against its target. DIR holds inputs.npy (B, Y, X, 16) and\n"
            "targets.npy (B, Y, X, S). Gradients are exact (the engine's reverse mode), summed\n"
            "over a mini-batch; one optimizer step per mini-batch; a validation pass per epoch.\n\n"
            "options:\n%s"
            "  --data DIR             the data set\n"
            "  --make-data DIR        write the synthetic task there and exit: random input faces,\n"
            "                         targets that carry each input's pattern to the output face\n"
            "  --samples B            samples of --make-data (default 96)\n"
            "  --steps T              lattice steps per sample (default 2)\n"
            "  --grad-checkpoint-every K  record the states every K steps and recompute in between\n"
            "                         (default: automatic from the memory)\n"
            "  --epochs E             passes over the training samples (default 10)\n"
            "  --batch-size N         samples per optimizer step (default 8)\n"
            "  --val-fraction F       the last ceil(B*F) samples validate (default 0.2, [0, 0.9])\n"
            "  --optimizer adamw|sgd  (default adamw)\n"
            "  --lr X                 peak learning rate (default 1e-4)\n"
            "  --weight-decay X       (default 1e-5; AdamW: decoupled)\n"
            "  --beta1 X, --beta2 X, --eps X   AdamW (defaults 0.9, 0.999, 1e-8)\n"
            "  --momentum X           SGD (default 0.9)\n"
            "  --clip-norm X          clip gradients to this global L2 norm (default off)\n"
            "  --warmup N             linear warm-up over N optimizer steps (default 0)\n"
            "  --cosine               cosine decay to --min-lr over the whole run\n"
            "  --min-lr X             (default 0)\n"
            "  --state FILE           initial states of every sample (.npy (Z, Y, X, S); default zeros)\n"
            "  --weights FILE         initial weights (safetensors; default: the seeded init)\n"
            "  --save-weights FILE    the trained weights (safetensors)\n"
            "  --loss-csv FILE        the loss history: kind,epoch,batch,samples,loss,lr\n"
            "  --loss-png FILE        the loss curve as a PNG\n"
            "  --checkpoint-dir DIR   save weights, optimizer state and history there at each\n"
            "                         epoch's end (and every --checkpoint-every mini-batches)\n"
            "  --checkpoint-every N   mini-batches between checkpoints\n"
            "  --resume DIR           continue the run checkpointed in DIR (same data and options);\n"
            "                         ends with bitwise the weights of an uninterrupted run\n"
            "  --stop-after N         stop after N optimizer steps (with a checkpoint when\n"
            "                         --checkpoint-dir is given)\n"
            "  --json                 print a JSON summary\n"
            "  --quiet                no progress bar\n"
            "  --help                 this text\n",
            cli_model_help);
}

/* Options of train beyond the model's. */
typedef struct train_cli {
    const char *data, *make_data, *state, *weights, *save_weights, *loss_csv, *loss_png;
    long long samples;
    int json, quiet, cosine;
    train_options o;
} train_cli;

static int parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Returns 1 when argv[*i] was a train option, 0 if not, -1 on a bad value. */
static int train_opt(train_cli *c, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    static const struct {
        const char *name;
        size_t offset;
    } paths[] = {
        {"--data", offsetof(train_cli, data)},           {"--make-data", offsetof(train_cli, make_data)},
        {"--state", offsetof(train_cli, state)},         {"--weights", offsetof(train_cli, weights)},
        {"--save-weights", offsetof(train_cli, save_weights)}, {"--loss-csv", offsetof(train_cli, loss_csv)},
        {"--loss-png", offsetof(train_cli, loss_png)},   {"--checkpoint-dir", offsetof(train_cli, o.checkpoint_dir)},
        {"--resume", offsetof(train_cli, o.resume_dir)},
    };
    static const struct {
        const char *name;
        size_t offset;
        double lo, hi;
    } reals[] = {
        {"--lr", offsetof(train_cli, o.opt.lr), 1e-12, 10},
        {"--weight-decay", offsetof(train_cli, o.opt.weight_decay), 0, 1},
        {"--beta1", offsetof(train_cli, o.opt.beta1), 0, 0.999999},
        {"--beta2", offsetof(train_cli, o.opt.beta2), 0, 0.999999999},
        {"--eps", offsetof(train_cli, o.opt.eps), 1e-30, 1},
        {"--momentum", offsetof(train_cli, o.opt.momentum), 0, 0.999999},
        {"--clip-norm", offsetof(train_cli, o.opt.clip_norm), 0, 1e30},
        {"--min-lr", offsetof(train_cli, o.opt.min_lr), 0, 10},
        {"--val-fraction", offsetof(train_cli, o.val_fraction), 0, 0.9},
    };
    static const struct {
        const char *name;
        size_t offset;
        long long lo, hi;
    } ints[] = {
        {"--steps", offsetof(train_cli, o.steps), 1, 100000},
        {"--grad-checkpoint-every", offsetof(train_cli, o.checkpoint_every_k), 1, 100000},
        {"--epochs", offsetof(train_cli, o.epochs), 1, 1000000},
        {"--batch-size", offsetof(train_cli, o.batch_size), 1, 1000000},
        {"--checkpoint-every", offsetof(train_cli, o.checkpoint_every), 1, 1000000000},
        {"--stop-after", offsetof(train_cli, o.stop_after), 1, 1000000000},
        {"--warmup", offsetof(train_cli, o.opt.warmup_steps), 0, 1000000000},
    };
    char *base = (char *)c;
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++)
        if (strcmp(a, paths[k].name) == 0) {
            if (*i + 1 >= argc || !argv[*i + 1][0]) {
                fprintf(stderr, "moelat-engine train: option %s needs a non-empty value\n", a);
                return -1;
            }
            *(const char **)(base + paths[k].offset) = argv[++*i];
            return 1;
        }
    for (size_t k = 0; k < sizeof reals / sizeof reals[0]; k++)
        if (strcmp(a, reals[k].name) == 0) {
            if (*i + 1 >= argc || parse_double(argv[*i + 1], reals[k].lo, reals[k].hi,
                                               (double *)(base + reals[k].offset)) != 0) {
                fprintf(stderr, "moelat-engine train: option %s wants a number in [%g, %g]%s%s%s\n", a, reals[k].lo,
                        reals[k].hi, *i + 1 < argc ? ", got '" : "", *i + 1 < argc ? argv[*i + 1] : "",
                        *i + 1 < argc ? "'" : "");
                return -1;
            }
            ++*i;
            return 1;
        }
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
        if (strcmp(a, ints[k].name) == 0) {
            long long v = *i + 1 < argc ? cli_parse_int(argv[*i + 1]) : -1;
            if (v < ints[k].lo || v > ints[k].hi) {
                fprintf(stderr, "moelat-engine train: option %s wants an integer in [%lld, %lld]%s%s%s\n", a,
                        ints[k].lo, ints[k].hi, *i + 1 < argc ? ", got '" : "", *i + 1 < argc ? argv[*i + 1] : "",
                        *i + 1 < argc ? "'" : "");
                return -1;
            }
            if (strcmp(a, "--warmup") == 0)
                c->o.opt.warmup_steps = v;
            else
                *(int *)(base + ints[k].offset) = (int)v;
            ++*i;
            return 1;
        }
    if (strcmp(a, "--samples") == 0) {
        c->samples = *i + 1 < argc ? cli_parse_int(argv[*i + 1]) : -1;
        if (c->samples < 1 || c->samples > 1000000) {
            fprintf(stderr, "moelat-engine train: option --samples wants an integer in [1, 1000000]\n");
            return -1;
        }
        ++*i;
        return 1;
    }
    if (strcmp(a, "--optimizer") == 0) {
        const char *v = *i + 1 < argc ? argv[*i + 1] : "";
        if (strcmp(v, "adamw") != 0 && strcmp(v, "sgd") != 0) {
            fprintf(stderr, "moelat-engine train: option --optimizer wants adamw or sgd, got '%s'\n", v);
            return -1;
        }
        double lr = c->o.opt.lr, wd = c->o.opt.weight_decay;
        moelat_optimizer_defaults(&c->o.opt, strcmp(v, "sgd") == 0 ? MOELAT_OPT_SGD : MOELAT_OPT_ADAMW);
        c->o.opt.lr = lr;
        c->o.opt.weight_decay = wd;
        ++*i;
        return 1;
    }
    int *flag = strcmp(a, "--json") == 0 ? &c->json : strcmp(a, "--quiet") == 0 ? &c->quiet
                : strcmp(a, "--cosine") == 0 ? &c->cosine : NULL;
    if (flag) {
        *flag = 1;
        return 1;
    }
    return 0;
}

/* The directory of an output file exists and is writable: checked before
 * any work so that a long run does not end in a failed save. */
static int output_dir_ok(const char *opt, const char *path) {
    char *copy = strdup(path);
    if (!copy)
        return -1;
    const char *dir = dirname(copy);
    int ok = access(dir, W_OK | X_OK) == 0;
    if (!ok)
        fprintf(stderr, "moelat-engine train: %s %s: its directory %s is not writable: %s\n", opt, path, dir,
                strerror(errno));
    free(copy);
    return ok ? 0 : -1;
}

static int write_csv(const char *path, const train_result *r) {
    size_t cap = 64 + (size_t)(r->n_train + r->n_val) * 96, len = 0;
    char *buf = malloc(cap), err[1024];
    if (!buf) {
        fprintf(stderr, "moelat-engine train: --loss-csv: out of memory\n");
        return -1;
    }
    len += (size_t)snprintf(buf + len, cap - len, "kind,epoch,batch,samples,loss,lr\n");
    /* Interleaved by samples seen: each validation row after the batches it follows. */
    int v = 0;
    for (int t = 0; t <= r->n_train; t++) {
        for (; v < r->n_val && (t == r->n_train || r->val[v].samples < r->train[t].samples); v++)
            len += (size_t)snprintf(buf + len, cap - len, "val,%d,,%llu,%.9g,%.9g\n", r->val[v].epoch,
                                    (unsigned long long)r->val[v].samples, r->val[v].loss, r->val[v].lr);
        if (t < r->n_train)
            len += (size_t)snprintf(buf + len, cap - len, "train,%d,%d,%llu,%.9g,%.9g\n", r->train[t].epoch + 1,
                                    r->train[t].batch + 1, (unsigned long long)r->train[t].samples, r->train[t].loss,
                                    r->train[t].lr);
    }
    int rc = moelat_write_file_atomic(path, buf, len, err, sizeof err) == MOELAT_OK ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "moelat-engine train: --loss-csv: %s\n", err);
    free(buf);
    return rc;
}

static int write_png(const char *path, const train_result *r) {
    double *tx = malloc((size_t)(r->n_train + 1) * sizeof(double)), *ty = malloc((size_t)(r->n_train + 1) * sizeof(double));
    double *vx = malloc((size_t)(r->n_val + 1) * sizeof(double)), *vy = malloc((size_t)(r->n_val + 1) * sizeof(double));
    int rc = -1;
    char err[1024];
    if (tx && ty && vx && vy) {
        for (int i = 0; i < r->n_train; i++)
            tx[i] = (double)r->train[i].samples, ty[i] = r->train[i].loss;
        for (int i = 0; i < r->n_val; i++)
            vx[i] = (double)r->val[i].samples, vy[i] = r->val[i].loss;
        rc = loss_plot_write(path, "moelat-engine train", tx, ty, r->n_train, vx, vy, r->n_val, err, sizeof err);
        if (rc != 0)
            fprintf(stderr, "moelat-engine train: --loss-png: %s\n", err);
    }
    free(tx);
    free(ty);
    free(vx);
    free(vy);
    return rc;
}

static int make_data(const train_cli *c, const moelat_config *cfg) {
    char err[1024];
    if (train_data_make(c->make_data, c->samples, cfg->dims[0], cfg->dims[1], cfg->state_size, cfg->seed, err,
                        sizeof err) != 0) {
        fprintf(stderr, "moelat-engine train: --make-data: %s\n", err);
        return 1;
    }
    printf("moelat-engine train: %lld samples of the synthetic task for a %dx%dx%d lattice (S = %d) in %s\n",
           c->samples, cfg->dims[0], cfg->dims[1], cfg->dims[2], cfg->state_size, c->make_data);
    return 0;
}

static float *load_state(moelat_lattice *lat, const char *path) {
    const moelat_config *cfg = moelat_lattice_config(lat);
    int64_t shape[4] = {cfg->dims[2], cfg->dims[1], cfg->dims[0], moelat_state_size(lat)};
    size_t n = moelat_cell_count(lat) * (size_t)moelat_state_size(lat);
    float *s = malloc(n * sizeof(float));
    char err[1024];
    if (!s || moelat_npy_read(path, s, 4, shape, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine train: --state: %s\n", s ? err : "out of memory");
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(s[i])) {
            fprintf(stderr, "moelat-engine train: --state %s: value %zu (cell %zu, channel %zu) is %g\n", path, i,
                    i / (size_t)moelat_state_size(lat), i % (size_t)moelat_state_size(lat), s[i]);
            free(s);
            return NULL;
        }
    return s;
}

static void print_summary(const train_cli *c, const train_result *r, const train_data *d) {
    double first = r->n_val ? r->val[0].loss : NAN, last = r->n_val ? r->val[r->n_val - 1].loss : NAN;
    double best = INFINITY;
    for (int i = 0; i < r->n_val; i++)
        best = fmin(best, r->val[i].loss);
    if (c->json) {
        json_t *o = json_pack("{s:I, s:I, s:I, s:i, s:i, s:I, s:f, s:f, s:f, s:f, s:f, s:b, s:s}", "samples",
                              (json_int_t)d->B, "train_samples", (json_int_t)r->train_samples, "val_samples",
                              (json_int_t)r->val_samples, "epochs", c->o.epochs, "steps", c->o.steps,
                              "optimizer_steps", (json_int_t)r->optimizer_steps, "initial_val_loss", first,
                              "final_val_loss", last, "best_val_loss", best, "seconds", r->seconds,
                              "samples_per_s", r->samples_per_s, "stopped_early", r->stopped_early, "backward",
                              r->backward);
        char *s = json_dumps(o, JSON_REAL_PRECISION(9));
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    } else {
        printf("trained %llu optimizer steps in %.1f s (%.1f samples/s); validation loss %.4g -> %.4g (best %.4g)%s\n",
               (unsigned long long)r->optimizer_steps, r->seconds, r->samples_per_s, first, last, best,
               r->stopped_early ? "; stopped early (--stop-after)" : "");
        if (r->backward[0])
            printf("backward: %s\n", r->backward);
    }
}

int cmd_train(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    train_cli c = {.samples = 96};
    c.o.steps = 2;
    c.o.epochs = 10;
    c.o.batch_size = 8;
    c.o.val_fraction = 0.2;
    moelat_optimizer_defaults(&c.o.opt, MOELAT_OPT_ADAMW);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        int r = cli_model_opt(&mo, argc, argv, &i, "train");
        if (r == 0)
            r = train_opt(&c, argc, argv, &i);
        if (r < 0)
            return 2;
        if (r == 0) {
            fprintf(stderr, "moelat-engine train: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!c.data == !c.make_data) {
        fprintf(stderr, "moelat-engine train: give exactly one of --data DIR and --make-data DIR (see --help)\n");
        return 2;
    }
    moelat_config cfg;
    if (cli_build_config(&mo, &cfg, "train") != 0)
        return 2;
    if (c.make_data)
        return make_data(&c, &cfg);
#ifndef MOELAT_HAVE_CAIRO
    if (c.loss_png) {
        fprintf(stderr, "moelat-engine train: --loss-png: this moelat-engine was built without cairo "
                        "(Debian: libcairo2-dev)\n");
        return 2;
    }
#endif
    const char *outs[][2] = {{"--save-weights", c.save_weights}, {"--loss-csv", c.loss_csv}, {"--loss-png", c.loss_png}};
    for (size_t k = 0; k < 3; k++)
        if (outs[k][1] && output_dir_ok(outs[k][0], outs[k][1]) != 0)
            return 1;
    char err[2048];
    moelat_lattice *lat = NULL;
    if (moelat_lattice_create(&cfg, &lat, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine train: %s\n", err);
        return 1;
    }
    train_data d = {0};
    train_result r = {0};
    float *init = NULL;
    int rc = 1;
    if (train_data_load(c.data, cfg.dims[0], cfg.dims[1], cfg.state_size, &d, err, sizeof err) != 0) {
        fprintf(stderr, "moelat-engine train: --data: %s\n", err);
        goto out;
    }
    if (c.weights && moelat_load_weights(lat, c.weights) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine train: --weights: %s\n", moelat_last_error(lat));
        goto out;
    }
    if (c.state && !(init = load_state(lat, c.state)))
        goto out;
    c.o.init_states = init;
    c.o.shuffle_seed = cfg.seed;
    c.o.progress = !c.quiet && !c.json && isatty(STDERR_FILENO);
    if (c.cosine) {
        int64_t n_train = d.B - (int64_t)ceil((double)d.B * c.o.val_fraction);
        c.o.opt.total_steps = (int64_t)c.o.epochs * ((n_train + c.o.batch_size - 1) / c.o.batch_size);
    }
    if (train_run(lat, &d, &c.o, &r) != 0) {
        fprintf(stderr, "moelat-engine train: %s\n", r.failure);
        rc = 1;
    } else {
        rc = 0;
    }
    /* Whatever the outcome, the history and the weights reached are saved. */
    if (c.loss_csv && write_csv(c.loss_csv, &r) != 0)
        rc = 1;
    if (c.loss_png && write_png(c.loss_png, &r) != 0)
        rc = 1;
    if (rc == 0 && c.save_weights && moelat_save_weights(lat, c.save_weights) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine train: --save-weights: %s\n", moelat_last_error(lat));
        rc = 1;
    }
    if (rc == 0)
        print_summary(&c, &r, &d);
out:
    train_result_free(&r);
    train_data_free(&d);
    free(init);
    moelat_lattice_destroy(lat);
    return rc;
}
