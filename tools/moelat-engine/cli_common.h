/* Options shared by run, check and bench: how a lattice is described. */
#ifndef MOELAT_CLI_COMMON_H
#define MOELAT_CLI_COMMON_H

#include "moelat/moelat.h"

typedef struct cli_model_opts {
    const char *preset;       /* --preset */
    const char *config_path;  /* --config */
    const char *dims;         /* --dims XxYxZ */
    const char *chunk;        /* --chunk XxYxZ */
    const char *device;       /* --device */
    const char *mode;         /* --mode */
    const char *cnf_mode;     /* --cnf-mode */
    const char *experts[MOELAT_BANDS * 2]; /* --expert BAND=NAME */
    int n_experts;
    const char *plugin_paths[MOELAT_MAX_PLUGIN_PATHS];
    int n_plugin_paths;
    long long seed;           /* -1 = unset */
    int threads, batch_threshold, queues; /* -1 = unset */
    int profile;              /* --profile: 1, else unset */
    double radius_ratio;      /* <= 0 = unset */
    const char *tune[16];     /* --tune key=value,... (repeatable) */
    int n_tune;
} cli_model_opts;

void cli_model_opts_init(cli_model_opts *o);

/* If argv[*i] is a model option, consumes it (and its value) and returns 1;
 * returns -1 on a missing or bad value (message printed), 0 otherwise. */
int cli_model_opt(cli_model_opts *o, int argc, char **argv, int *i, const char *cmd);

/* Builds the config: preset (default debug), then the config file, then the
 * other options. Prints the reason and returns -1 on error. */
/* Gives --threads to a CPU OpenCL runtime as well: sets PoCL's thread
 * count variables to threads (> 0) where the user left them unset. Call
 * before the process's first OpenCL call; cli_build_config does. */
void cli_cpu_runtime_threads(int threads);

int cli_build_config(const cli_model_opts *o, moelat_config *cfg, const char *cmd);

/* Sets cfg->tuning to the MOELAT_* tuning variables, then cfg's own
 * tuning (the config file's), then every --tune (cli_tuning.c). Prints
 * the reason and returns -1 on error. */
int cli_merge_tuning(const cli_model_opts *o, moelat_config *cfg, const char *cmd);

/* Help text for the shared options. */
extern const char *const cli_model_help;

/* Bounds of run's --steps and --checkpoint-every. */
#define RUN_MAX_STEPS 100000000LL

/* Parses an integer in [lo, hi] into *out; otherwise prints "moelat-engine
 * <cmd>: <opt> wants an integer from lo to hi, got '<s>'" and returns -1. */
int cli_parse_range(const char *s, long long lo, long long hi, long long *out, const char *cmd,
                    const char *opt);

/* Parses a positive integer; returns -1 if s is not one. */
long long cli_parse_int(const char *s);

/* "percell", "batch", "auto" -> mode, or -1. */
int cli_parse_mode(const char *s);
const char *cli_mode_name(int mode);

#endif
