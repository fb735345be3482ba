/* moelat-engine: command-line front end of libmoelat. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "moelat/moelat.h"

typedef struct subcommand {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} subcommand;

static const subcommand commands[] = {
    {"run", cmd_run, "step a lattice (default: debug preset 15x15x15, 10 steps)"},
    {"check", cmd_check, "compare batch and per-cell results step by step"},
    {"bench", cmd_bench, "time per-cell and batch steps"},
    {"grad", cmd_grad, "exact gradients of 0.5 |s_T - target|^2 (host, float64)"},
    {"train", cmd_train, "train the weights on input and target faces (AdamW, SGD)"},
    {"devices", cmd_devices, "list OpenCL platforms and devices"},
    {"plugins", cmd_plugins, "list expert plugins, or check one (--check FILE)"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: moelat-engine <command> [options]\n"
                 "       moelat-engine --help | --version\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'moelat-engine <command> --help' for its options.\n"
                 "With no command, 'run' is assumed.\n");
}

int main(int argc, char **argv) {
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("moelat-engine %s\n", MOELAT_VERSION);
        return 0;
    }
    if (argc < 2 || argv[1][0] == '-') {
        /* No subcommand: run with whatever options follow. */
        char *run_argv[256];
        int n = 0;
        run_argv[n++] = "run";
        for (int i = 1; i < argc && n < 255; i++)
            run_argv[n++] = argv[i];
        run_argv[n] = NULL;
        return cmd_run(n, run_argv);
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "moelat-engine: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
