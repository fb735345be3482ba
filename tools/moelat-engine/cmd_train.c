/* moelat-engine train: fit the lattice's weights to a data set of input
 * faces and target output faces with the library's trainer
 * (moelat/train.h), or make the synthetic data set (train_data.c). Here:
 * the options, the progress bar, the summary, the CSV and the PNG. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "train_ranks.h"
#include "cli_common.h"
#include "loss_plot.h"
#include "moelat/train.h"
#include "moelat/util.h"
#include "train_data.h"
#include "train_paths.h"

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
    const char *data, *make_data, *state, *weights, *save_weights, *loss_csv, *loss_png, *checkpoint_dir, *resume;
    long long samples;
    int32_t json, quiet;
    moelat_train_params p;
    /* The optimizer: its kind, and the values given for it (bit k of
     * og_given: the option of opt_field k), applied over the kind's
     * defaults once every option is read, so their order does not matter. */
    int32_t kind;
    moelat_optimizer_config og;
    uint32_t og_given;
} train_cli;

/* The optimizer's options, by bit of og_given. */
enum { OG_LR, OG_WD, OG_BETA1, OG_BETA2, OG_EPS, OG_MOMENTUM, OG_CLIP, OG_MIN_LR, OG_WARMUP };

static void apply_optimizer(train_cli *c) {
    moelat_optimizer_config *o = &c->p.optimizer;
    const moelat_optimizer_config *g = &c->og;
    moelat_optimizer_defaults(o, (moelat_optimizer_kind)c->kind);
#define TAKE(bit, field)                                                                                             \
    if (c->og_given & (1u << (bit)))                                                                                 \
    o->field = g->field
    TAKE(OG_LR, lr);
    TAKE(OG_WD, weight_decay);
    TAKE(OG_BETA1, beta1);
    TAKE(OG_BETA2, beta2);
    TAKE(OG_EPS, eps);
    TAKE(OG_MOMENTUM, momentum);
    TAKE(OG_CLIP, clip_norm);
    TAKE(OG_MIN_LR, min_lr);
    TAKE(OG_WARMUP, warmup_steps);
#undef TAKE
}

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
        {"--loss-png", offsetof(train_cli, loss_png)},   {"--checkpoint-dir", offsetof(train_cli, checkpoint_dir)},
        {"--resume", offsetof(train_cli, resume)},
    };
    static const struct {
        const char *name;
        size_t offset;
        double lo, hi;
        int og_bit; /* -1: not the optimizer's */
    } reals[] = {
        {"--lr", offsetof(train_cli, og.lr), 1e-12, 10, OG_LR},
        {"--weight-decay", offsetof(train_cli, og.weight_decay), 0, 1, OG_WD},
        {"--beta1", offsetof(train_cli, og.beta1), 0, 0.999999, OG_BETA1},
        {"--beta2", offsetof(train_cli, og.beta2), 0, 0.999999999, OG_BETA2},
        {"--eps", offsetof(train_cli, og.eps), 1e-30, 1, OG_EPS},
        {"--momentum", offsetof(train_cli, og.momentum), 0, 0.999999, OG_MOMENTUM},
        {"--clip-norm", offsetof(train_cli, og.clip_norm), 0, 1e30, OG_CLIP},
        {"--min-lr", offsetof(train_cli, og.min_lr), 0, 10, OG_MIN_LR},
        {"--val-fraction", offsetof(train_cli, p.val_fraction), 0, 0.9, -1},
    };
    /* size: of the field (4 or 8 bytes, signed or not as its range says). */
    static const struct {
        const char *name;
        size_t offset, size;
        long long lo, hi;
    } ints[] = {
        {"--steps", offsetof(train_cli, p.steps), 4, 1, 100000},
        {"--grad-checkpoint-every", offsetof(train_cli, p.grad_checkpoint_every), 4, 1, 100000},
        {"--epochs", offsetof(train_cli, p.epochs), 4, 1, 1000000},
        {"--batch-size", offsetof(train_cli, p.batch_size), 4, 1, 1000000},
        {"--checkpoint-every", offsetof(train_cli, p.checkpoint_every), 4, 1, 1000000000},
        {"--stop-after", offsetof(train_cli, p.stop_after), 8, 1, 1000000000},
        {"--warmup", offsetof(train_cli, og.warmup_steps), 8, 0, 1000000000},
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
            if (reals[k].og_bit >= 0)
                c->og_given |= 1u << reals[k].og_bit;
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
            if (ints[k].size == 8) {
                int64_t v64 = v; /* stop_after's uint64_t holds the same bits for v >= 0 */
                memcpy(base + ints[k].offset, &v64, sizeof v64);
                if (ints[k].offset == offsetof(train_cli, og.warmup_steps))
                    c->og_given |= 1u << OG_WARMUP;
            } else {
                int32_t v32 = (int32_t)v;
                memcpy(base + ints[k].offset, &v32, sizeof v32);
            }
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
        c->kind = strcmp(v, "sgd") == 0 ? MOELAT_OPT_SGD : MOELAT_OPT_ADAMW;
        ++*i;
        return 1;
    }
    int32_t *flag = strcmp(a, "--json") == 0 ? &c->json : strcmp(a, "--quiet") == 0 ? &c->quiet
                    : strcmp(a, "--cosine") == 0 ? &c->p.cosine : NULL;
    if (flag) {
        *flag = 1;
        return 1;
    }
    return 0;
}

static int write_csv(const char *path, const moelat_trainer *t) {
    const moelat_train_point *tr, *va;
    size_t nt = moelat_trainer_history(t, 0, &tr), nv = moelat_trainer_history(t, 1, &va);
    size_t cap = 64 + (nt + nv) * 96, len = 0;
    char *buf = malloc(cap), err[1024];
    if (!buf) {
        fprintf(stderr, "moelat-engine train: --loss-csv: out of memory\n");
        return -1;
    }
    len += (size_t)snprintf(buf + len, cap - len, "kind,epoch,batch,samples,loss,lr\n");
    /* Interleaved by samples seen: each validation row after the batches it follows. */
    size_t v = 0;
    for (size_t i = 0; i <= nt; i++) {
        for (; v < nv && (i == nt || va[v].samples < tr[i].samples); v++)
            len += (size_t)snprintf(buf + len, cap - len, "val,%d,,%llu,%.9g,%.9g\n", va[v].epoch,
                                    (unsigned long long)va[v].samples, va[v].loss, va[v].lr);
        if (i < nt)
            len += (size_t)snprintf(buf + len, cap - len, "train,%d,%d,%llu,%.9g,%.9g\n", tr[i].epoch + 1,
                                    tr[i].batch + 1, (unsigned long long)tr[i].samples, tr[i].loss, tr[i].lr);
    }
    int rc = moelat_write_file_atomic(path, buf, len, err, sizeof err) == MOELAT_OK ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "moelat-engine train: --loss-csv: %s\n", err);
    free(buf);
    return rc;
}

static int write_png(const char *path, const moelat_trainer *t) {
    const moelat_train_point *tr, *va;
    size_t nt = moelat_trainer_history(t, 0, &tr), nv = moelat_trainer_history(t, 1, &va);
    double *tx = malloc((nt + 1) * sizeof(double)), *ty = malloc((nt + 1) * sizeof(double));
    double *vx = malloc((nv + 1) * sizeof(double)), *vy = malloc((nv + 1) * sizeof(double));
    int rc = -1;
    char err[1024];
    if (tx && ty && vx && vy) {
        for (size_t i = 0; i < nt; i++)
            tx[i] = (double)tr[i].samples, ty[i] = tr[i].loss;
        for (size_t i = 0; i < nv; i++)
            vx[i] = (double)va[i].samples, vy[i] = va[i].loss;
        rc = loss_plot_write(path, "moelat-engine train", tx, ty, (int)nt, vx, vy, (int)nv, err, sizeof err);
        if (rc != 0)
            fprintf(stderr, "moelat-engine train: --loss-png: %s\n", err);
    } else {
        fprintf(stderr, "moelat-engine train: --loss-png: out of memory\n");
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
    return s;
}

/* A number, or null where it is not finite (JSON has no NaN). */
static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static void print_summary(const train_cli *c, const moelat_train_summary *s) {
    if (c->json) {
        json_t *o = json_pack("{s:I, s:I, s:I, s:i, s:i, s:I, s:o, s:o, s:o, s:o, s:o, s:b, s:s, s:s}", "samples",
                              (json_int_t)s->samples, "train_samples", (json_int_t)s->train_samples, "val_samples",
                              (json_int_t)s->val_samples, "epochs", c->p.epochs, "steps", c->p.steps,
                              "optimizer_steps", (json_int_t)s->optimizer_steps, "initial_val_loss",
                              num(s->initial_val_loss), "final_val_loss", num(s->final_val_loss), "best_val_loss",
                              num(s->best_val_loss), "seconds", num(s->seconds), "samples_per_s",
                              num(s->samples_per_s), "stopped_early", s->stopped_early, "backward", s->backward,
                              "optimizer", s->optimizer);
        char *txt = o ? json_dumps(o, JSON_REAL_PRECISION(9)) : NULL;
        if (!txt) /* only out of memory */
            fprintf(stderr, "moelat-engine train: --json: out of memory\n");
        else
            printf("%s\n", txt);
        free(txt);
        json_decref(o);
    } else {
        printf("trained %llu optimizer steps in %.1f s (%.1f samples/s); validation loss %.4g -> %.4g (best %.4g)%s\n",
               (unsigned long long)s->optimizer_steps, s->seconds, s->samples_per_s, s->initial_val_loss,
               s->final_val_loss, s->best_val_loss, s->stopped_early ? "; stopped early (--stop-after)" : "");
        if (s->backward[0])
            printf("backward: %s\n", s->backward);
    }
}

/* The progress bar on stderr, fed by the trainer's events. */
typedef struct progress_bar {
    int on, epochs;
    double running; /* the epoch's training loss, smoothed */
} progress_bar;

static void on_event(void *user, const moelat_train_event *ev) {
    progress_bar *b = user;
    if (ev->kind == MOELAT_TRAIN_EVENT_BACKWARD) {
        if (b->on)
            fprintf(stderr, "backward: %s\n", ev->backward);
    } else if (ev->kind == MOELAT_TRAIN_EVENT_BATCH) {
        b->running = isfinite(b->running) ? 0.9 * b->running + 0.1 * ev->loss : ev->loss;
        if (!b->on)
            return;
        int width = 24, fill = ev->batches ? (ev->batch * width) / ev->batches : width;
        fprintf(stderr, "\repoch %d/%d [", ev->epoch + 1, b->epochs);
        for (int i = 0; i < width; i++)
            fputc(i < fill ? '#' : '.', stderr);
        fprintf(stderr, "] batch %d/%d  loss %.4g  %.1f samples/s   ", ev->batch, ev->batches, b->running,
                ev->seconds > 0 ? (double)ev->samples_here / ev->seconds : 0.0);
        fflush(stderr);
    } else if (ev->kind == MOELAT_TRAIN_EVENT_VALIDATION && ev->epoch > 0) {
        if (b->on)
            fprintf(stderr, "\repoch %d/%d: training loss %.4g, validation loss %.4g%30s\n", ev->epoch, b->epochs,
                    b->running, ev->loss, "");
        b->running = NAN;
    }
}

/* The data set DIR/inputs.npy, DIR/targets.npy. */
static moelat_dataset *load_data(const char *dir) {
    char in[4200], tg[4200], err[2048];
    snprintf(in, sizeof in, "%s/inputs.npy", dir);
    snprintf(tg, sizeof tg, "%s/targets.npy", dir);
    moelat_dataset *ds = NULL;
    if (moelat_dataset_load(in, tg, &ds, err, sizeof err) != MOELAT_OK)
        fprintf(stderr, "moelat-engine train: --data: %s\n", err);
    return ds;
}

int cmd_train(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    train_cli c = {.samples = 96};
    moelat_train_params_default(&c.p);
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
    apply_optimizer(&c);
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
    /* Every output before any work (a long run must not end in a failed
     * save), and the inputs read later. */
    const char *outs[][2] = {{"--save-weights", c.save_weights}, {"--loss-csv", c.loss_csv},
                             {"--loss-png", c.loss_png}, {"--checkpoint-dir", c.checkpoint_dir}};
    for (size_t k = 0; k < 4; k++)
        if (outs[k][1] && train_check_output("train", outs[k][0], outs[k][1], k == 3) != 0)
            return 1;
    char err[2048];
    const char *ins[][2] = {{"--state", c.state}, {"--weights", c.weights}};
    for (size_t k = 0; k < 2; k++)
        if (ins[k][1] && moelat_file_check_input(ins[k][1], err, sizeof err) != MOELAT_OK) {
            fprintf(stderr, "moelat-engine train: %s: %s\n", ins[k][0], err);
            return 1;
        }
    moelat_dataset *ds = load_data(c.data);
    if (!ds)
        return 1;
    moelat_lattice *lat = NULL;
    moelat_trainer *t = NULL;
    float *init = NULL;
    int rc = 1, rank = 0;
    if (moelat_lattice_create(&cfg, &lat, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine train: %s\n", err);
        goto out;
    }
    progress_bar bar = {.on = !c.quiet && !c.json && isatty(STDERR_FILENO), .epochs = c.p.epochs, .running = NAN};
    c.p.seed = cfg.seed;
    c.p.checkpoint_dir = c.checkpoint_dir;
    c.p.progress = on_event;
    c.p.progress_user = &bar;
    /* Under mpirun each rank trains on its part of every mini-batch; rank
     * 0 alone saves checkpoints and writes and prints the results. */
    if ((rank = train_ranks_begin(&c.p)) < 0)
        goto out;
    if (rank > 0) {
        c.p.checkpoint_dir = NULL;
        c.loss_csv = c.loss_png = c.save_weights = NULL;
        bar.on = 0;
    }
    if (moelat_trainer_create(lat, &c.p, &t, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine train: %s\n", err);
        goto out;
    }
    if (moelat_trainer_set_data(t, ds) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine train: --data: %s\n", moelat_trainer_last_error(t));
        goto out;
    }
    if (c.weights && moelat_load_weights(lat, c.weights) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine train: --weights: %s\n", moelat_last_error(lat));
        goto out;
    }
    if (c.state && (!(init = load_state(lat, c.state)) ||
                    moelat_trainer_set_initial_states(t, init, moelat_cell_count(lat) * (size_t)moelat_state_size(lat)) !=
                        MOELAT_OK)) {
        if (init)
            fprintf(stderr, "moelat-engine train: --state %s: %s\n", c.state, moelat_trainer_last_error(t));
        goto out;
    }
    if (c.resume && moelat_trainer_resume(t, c.resume) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine train: %s\n", moelat_trainer_last_error(t));
        goto out;
    }
    if (moelat_trainer_fit(t) != MOELAT_OK) {
        if (bar.on)
            fputc('\n', stderr);
        fprintf(stderr, "moelat-engine train: %s\n", moelat_trainer_last_error(t));
        rc = 1;
    } else {
        rc = 0;
    }
    /* Whatever the outcome, the history and the weights reached are saved. */
    if (c.loss_csv && write_csv(c.loss_csv, t) != 0)
        rc = 1;
    if (c.loss_png && write_png(c.loss_png, t) != 0)
        rc = 1;
    if (rc == 0 && c.save_weights && moelat_save_weights(lat, c.save_weights) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine train: --save-weights: %s\n", moelat_last_error(lat));
        rc = 1;
    }
    moelat_train_summary sum = MOELAT_TRAIN_SUMMARY_INIT;
    if (rc == 0 && rank == 0 && moelat_trainer_summary(t, &sum) == MOELAT_OK)
        print_summary(&c, &sum);
out:
    train_ranks_end(rc);
    moelat_trainer_destroy(t);
    moelat_lattice_destroy(lat);
    moelat_dataset_destroy(ds);
    free(init);
    return rc;
}
