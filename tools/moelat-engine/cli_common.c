#include "cli_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moelat/util.h"

/* --threads above this many per core is capped (see cli_build_config). */
#define CLI_THREADS_PER_CORE 4

const char *const cli_model_help =
    "  --preset NAME          debug (default), experiment or optimized\n"
    "  --config FILE          JSON config merged over the preset\n"
    "  --dims XxYxZ           lattice dimensions (overrides the preset)\n"
    "  --seed N               seed of the initial weights and states\n"
    "  --radius-ratio R       neighbourhood radius as a fraction of the largest side\n"
    "  --cnf-mode MODE        euler (default) or lipschitz\n"
    "  --expert BAND=NAME     serve BAND (local, functional, distant) with plugin NAME\n"
    "  --plugin-path PATH     extra plugin file or directory (repeatable)\n"
    "  --threads N            host threads (default: all cores)\n"
    "  --device SPEC          OpenCL device: index or name substring (env MOELAT_DEVICE)\n"
    "  --mode MODE            percell, batch or auto (default auto: batched when a device\n"
    "                         passes the upgrade's sample check, else per cell, saying why)\n"
    "  --batch-threshold N    fewest cells for a chunk to go to the device\n"
    "  --chunk XxYxZ          chunk box size\n"
    "  --queues Q             OpenCL command queues (default 2)\n"
    "  --profile              time every device kernel (the report's device times)\n"
    "  --tune KEY=VALUE,...   tuning knobs (README: tuning keys; repeatable, wins over\n"
    "                         the config's \"tuning\" and the MOELAT_* tuning variables)\n";

void cli_model_opts_init(cli_model_opts *o) {
    memset(o, 0, sizeof *o);
    o->seed = -1;
    o->threads = o->batch_threshold = o->queues = -1;
    o->radius_ratio = -1;
}

int cli_parse_range(const char *s, long long lo, long long hi, long long *out, const char *cmd,
                    const char *opt) {
    char *end;
    errno = 0;
    long long v = s && *s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || errno || *end || v < lo || v > hi) {
        fprintf(stderr, "moelat-engine %s: %s wants an integer from %lld to %lld, got '%s'\n", cmd,
                opt, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

long long cli_parse_int(const char *s) {
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0)
        return -1;
    return v;
}

int cli_parse_mode(const char *s) {
    if (strcmp(s, "percell") == 0)
        return MOELAT_MODE_PERCELL;
    if (strcmp(s, "batch") == 0)
        return MOELAT_MODE_BATCH;
    if (strcmp(s, "auto") == 0)
        return MOELAT_MODE_AUTO;
    return -1;
}

const char *cli_mode_name(int mode) {
    return mode == MOELAT_MODE_BATCH ? "batch" : mode == MOELAT_MODE_AUTO ? "auto" : "percell";
}

static const char *value(int argc, char **argv, int *i, const char *cmd) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "moelat-engine %s: option %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    if (!argv[*i + 1][0]) {
        fprintf(stderr, "moelat-engine %s: option %s needs a value, got an empty string\n", cmd,
                argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_model_opt(cli_model_opts *o, int argc, char **argv, int *i, const char *cmd) {
    const char *a = argv[*i];
    const char *v;
#define STR_OPT(flag, field)                                   \
    if (strcmp(a, flag) == 0) {                                \
        if (!(v = value(argc, argv, i, cmd)))                  \
            return -1;                                         \
        o->field = v;                                          \
        return 1;                                              \
    }
#define INT_OPT(flag, field, lo, hi)                                                      \
    if (strcmp(a, flag) == 0) {                                                           \
        long long n;                                                                      \
        if (!(v = value(argc, argv, i, cmd)) || cli_parse_range(v, lo, hi, &n, cmd, flag)) \
            return -1;                                                                    \
        o->field = (int)n;                                                                \
        return 1;                                                                         \
    }
    STR_OPT("--preset", preset)
    STR_OPT("--config", config_path)
    STR_OPT("--dims", dims)
    STR_OPT("--chunk", chunk)
    STR_OPT("--device", device)
    STR_OPT("--mode", mode)
    STR_OPT("--cnf-mode", cnf_mode)
    INT_OPT("--threads", threads, 0, MOELAT_MAX_THREADS)
    INT_OPT("--batch-threshold", batch_threshold, 0, 2147483647LL)
    INT_OPT("--queues", queues, 1, 16)
#undef STR_OPT
#undef INT_OPT
    if (strcmp(a, "--tune") == 0) {
        if (!(v = value(argc, argv, i, cmd)))
            return -1;
        if (o->n_tune >= (int)(sizeof o->tune / sizeof o->tune[0])) {
            fprintf(stderr, "moelat-engine %s: too many --tune options\n", cmd);
            return -1;
        }
        o->tune[o->n_tune++] = v;
        return 1;
    }
    if (strcmp(a, "--profile") == 0) {
        o->profile = 1;
        return 1;
    }
    if (strcmp(a, "--seed") == 0) {
        if (!(v = value(argc, argv, i, cmd)))
            return -1;
        long long n;
        if (cli_parse_range(v, 0, INT64_MAX, &n, cmd, "--seed") != 0)
            return -1;
        o->seed = n;
        return 1;
    }
    if (strcmp(a, "--radius-ratio") == 0) {
        if (!(v = value(argc, argv, i, cmd)))
            return -1;
        char *end;
        o->radius_ratio = strtod(v, &end);
        if (!*v || *end || !(o->radius_ratio >= MOELAT_RADIUS_RATIO_MIN && o->radius_ratio <= MOELAT_RADIUS_RATIO_MAX)) {
            fprintf(stderr, "moelat-engine %s: --radius-ratio wants a number from %g to %g, got '%s'\n", cmd,
                    MOELAT_RADIUS_RATIO_MIN, MOELAT_RADIUS_RATIO_MAX, v);
            return -1;
        }
        return 1;
    }
    if (strcmp(a, "--expert") == 0) {
        if (!(v = value(argc, argv, i, cmd)))
            return -1;
        if (o->n_experts >= MOELAT_BANDS * 2) {
            fprintf(stderr, "moelat-engine %s: too many --expert options\n", cmd);
            return -1;
        }
        o->experts[o->n_experts++] = v;
        return 1;
    }
    if (strcmp(a, "--plugin-path") == 0) {
        if (!(v = value(argc, argv, i, cmd)))
            return -1;
        if (o->n_plugin_paths >= MOELAT_MAX_PLUGIN_PATHS) {
            fprintf(stderr, "moelat-engine %s: at most %d --plugin-path options\n", cmd,
                    MOELAT_MAX_PLUGIN_PATHS);
            return -1;
        }
        o->plugin_paths[o->n_plugin_paths++] = v;
        return 1;
    }
    return 0;
}

int cli_build_config(const cli_model_opts *o, moelat_config *cfg, const char *cmd) {
    char err[1024];
    moelat_config_init(cfg);
    if (moelat_config_preset(o->preset ? o->preset : "debug", cfg, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine %s: %s\n", cmd, err);
        return -1;
    }
    if (o->config_path) {
        if (moelat_config_load_json(o->config_path, cfg, err, sizeof err) != MOELAT_OK) {
            fprintf(stderr, "moelat-engine %s: %s\n", cmd, err);
            return -1;
        }
        if (o->preset && strcmp(o->preset, cfg->preset) != 0) {
            fprintf(stderr, "moelat-engine %s: --preset %s conflicts with preset '%s' in %s\n", cmd,
                    o->preset, cfg->preset, o->config_path);
            return -1;
        }
    }
    if (o->dims && moelat_parse_dims(o->dims, cfg->dims, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine %s: --dims: %s\n", cmd, err);
        return -1;
    }
    if (o->chunk && moelat_parse_dims(o->chunk, cfg->chunk, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine %s: --chunk: %s\n", cmd, err);
        return -1;
    }
    if (o->device)
        snprintf(cfg->device, sizeof cfg->device, "%s", o->device);
    if (o->mode) {
        int m = cli_parse_mode(o->mode);
        if (m < 0) {
            fprintf(stderr, "moelat-engine %s: --mode wants percell, batch or auto, got '%s'\n", cmd, o->mode);
            return -1;
        }
        cfg->mode = m;
    }
    if (o->cnf_mode) {
        if (strcmp(o->cnf_mode, "euler") == 0)
            cfg->cnf_mode = MOELAT_CNF_EULER;
        else if (strcmp(o->cnf_mode, "lipschitz") == 0)
            cfg->cnf_mode = MOELAT_CNF_LIPSCHITZ;
        else {
            fprintf(stderr, "moelat-engine %s: --cnf-mode wants euler or lipschitz, got '%s'\n", cmd, o->cnf_mode);
            return -1;
        }
    }
    for (int k = 0; k < o->n_experts; k++) {
        const char *eq = strchr(o->experts[k], '=');
        int band = -1;
        for (int b = 0; b < MOELAT_BANDS && eq; b++)
            if (strlen(moelat_band_name(b)) == (size_t)(eq - o->experts[k]) &&
                strncmp(o->experts[k], moelat_band_name(b), (size_t)(eq - o->experts[k])) == 0)
                band = b;
        if (band < 0 || !eq[1]) {
            fprintf(stderr, "moelat-engine %s: --expert wants BAND=NAME with BAND local, functional or distant, got '%s'\n",
                    cmd, o->experts[k]);
            return -1;
        }
        snprintf(cfg->expert[band], sizeof cfg->expert[band], "%s", eq + 1);
    }
    for (int k = 0; k < o->n_plugin_paths && cfg->n_plugin_paths < MOELAT_MAX_PLUGIN_PATHS; k++)
        snprintf(cfg->plugin_paths[cfg->n_plugin_paths++], sizeof cfg->plugin_paths[0], "%s", o->plugin_paths[k]);
    if (o->seed >= 0)
        cfg->seed = (uint64_t)o->seed;
    if (o->threads >= 0)
        cfg->threads = o->threads;
    /* Far more threads than cores only adds switching and memory (each has
     * its own workspace): capped, with a warning rather than a refusal. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores > 0 && cfg->threads > CLI_THREADS_PER_CORE * cores) {
        fprintf(stderr, "moelat-engine %s: warning: %d threads on %ld cores; using %ld (%d per core)\n",
                cmd, (int)cfg->threads, cores, CLI_THREADS_PER_CORE * cores, CLI_THREADS_PER_CORE);
        cfg->threads = (int32_t)(CLI_THREADS_PER_CORE * cores);
    }
    /* Before any OpenCL call: PoCL reads its thread count once. */
    cli_cpu_runtime_threads(cfg->threads > 0 && o->threads >= 0 ? (int)cfg->threads : o->threads);
    if (o->batch_threshold >= 0)
        cfg->batch_threshold = o->batch_threshold;
    if (o->queues >= 0)
        cfg->queues = o->queues;
    if (o->radius_ratio > 0)
        cfg->radius_ratio = o->radius_ratio;
    if (o->profile)
        cfg->profile = 1;
    if (cli_merge_tuning(o, cfg, cmd) != 0)
        return -1;
    if (moelat_config_validate(cfg, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine %s: %s\n", cmd, err);
        return -1;
    }
    return 0;
}
