/* `moelat-engine plugins`: lists the experts the engine would find, with
 * every file that failed to load, or checks files in a throwaway process. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "moelat/inspect.h"

#define MAX_ARGS_PATHS 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: moelat-engine plugins [--plugin-path PATH]... [--json]\n"
            "       moelat-engine plugins --check FILE [--check FILE]... [--json]\n"
            "\n"
            "Lists the expert plugins found along the search order: --plugin-path\n"
            "entries (files or directories), MOELAT_PLUGIN_PATH (colon-separated),\n"
            "the build tree's experts (%s),\n"
            "then the installed ones (%s).\n"
            "Files that fail to load are reported on stderr as \"error: <path>: <reason>\".\n"
            "\n"
            "  --plugin-path PATH  search PATH first (repeatable)\n"
            "  --json              print a JSON array instead of a table\n"
            "  --check FILE        load FILE in a child process, validate it and call\n"
            "                      tensors(); a crash is reported, not suffered;\n"
            "                      exit status 1 if any checked file fails\n"
            "  --help              this text\n",
            moelat_plugins_build_dir() ? moelat_plugins_build_dir() : "none",
            moelat_plugins_install_dir() ? moelat_plugins_install_dir() : "none");
}

static int cell_width(const char *s, int w) {
    int n = (int)strlen(s);
    return n > w ? n : w;
}

static void print_table(const moelat_plugin_set *set) {
    int wn = 4, wv = 7, wp = 4;
    const int n = moelat_plugins_count(set);
    for (int i = 0; i < n; i++) {
        const moelat_expert_descriptor *d = moelat_plugins_descriptor(set, i);
        wn = cell_width(d->name, wn);
        wv = cell_width(d->version, wv);
        wp = cell_width(moelat_plugins_path(set, i), wp);
    }
    printf("%-*s  %-*s  %-5s  %-6s  %-*s  %s\n", wn, "NAME", wv, "VERSION", "ABI", "OPENCL", wp,
           "PATH", "DESCRIPTION");
    for (int i = 0; i < n; i++) {
        const moelat_expert_descriptor *d = moelat_plugins_descriptor(set, i);
        char abi[24];
        snprintf(abi, sizeof abi, "%u.%u", (unsigned)d->abi_major, (unsigned)d->abi_minor);
        printf("%-*s  %-*s  %-5s  %-6s  %-*s  %s\n", wn, d->name, wv, d->version, abi,
               d->cl_source ? "yes" : "no", wp, moelat_plugins_path(set, i), d->description);
    }
}

static int print_json(const moelat_plugin_set *set) {
    json_t *arr = json_array();
    if (!arr)
        return -1;
    for (int i = 0; i < moelat_plugins_count(set); i++) {
        const moelat_expert_descriptor *d = moelat_plugins_descriptor(set, i);
        char abi[24];
        snprintf(abi, sizeof abi, "%u.%u", (unsigned)d->abi_major, (unsigned)d->abi_minor);
        json_t *hidden = json_array();
        for (int k = 0; k < MOELAT_MAX_HIDDEN && d->hidden_names[k]; k++)
            json_array_append_new(hidden, json_string(d->hidden_names[k]));
        /* json_string rejects invalid UTF-8; a plugin's prose could be. */
        json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:b, s:o, s:o}", "name", d->name,
                                "version", d->version, "abi", abi, "path",
                                moelat_plugins_path(set, i), "opencl", d->cl_source != NULL,
                                "description",
                                json_stringn_nocheck(d->description, strlen(d->description)),
                                "hidden", hidden);
        if (!obj) {
            fprintf(stderr, "error: %s: cannot describe expert \"%s\" in JSON\n",
                    moelat_plugins_path(set, i), d->name);
            continue;
        }
        json_array_append_new(arr, obj);
    }
    char *text = json_dumps(arr, JSON_INDENT(2));
    json_decref(arr);
    if (!text)
        return -1;
    printf("%s\n", text);
    free(text);
    return 0;
}

static int run_checks(char **files, int n, int as_json) {
    int failed = 0;
    json_t *arr = as_json ? json_array() : NULL;
    for (int i = 0; i < n; i++) {
        char report[2048];
        int rc = moelat_plugin_check(files[i], report, sizeof report);
        if (rc != 0)
            failed = 1;
        if (arr) {
            json_array_append_new(arr, json_pack("{s:s, s:b, s:o}", "path", files[i], "ok",
                                                 rc == 0, "report",
                                                 json_stringn_nocheck(report, strlen(report))));
        } else if (rc == 0) {
            printf("ok: %s\n", report);
        } else {
            fprintf(stderr, "error: %s\n", report);
        }
    }
    if (arr) {
        char *text = json_dumps(arr, JSON_INDENT(2));
        json_decref(arr);
        if (text) {
            printf("%s\n", text);
            free(text);
        }
    }
    return failed ? 1 : 0;
}

int cmd_plugins(int argc, char **argv) {
    const char *paths[MAX_ARGS_PATHS] = {0};
    char *checks[MAX_ARGS_PATHS] = {0};
    int n_paths = 0, n_checks = 0, as_json = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        int is_path = 0, is_check = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            as_json = 1;
            continue;
        } else if (strcmp(a, "--plugin-path") == 0 || strcmp(a, "--check") == 0) {
            is_path = a[2] == 'p';
            is_check = !is_path;
            if (i + 1 >= argc) {
                fprintf(stderr, "moelat-engine plugins: %s needs a value\n", a);
                usage(stderr);
                return 2;
            }
            val = argv[++i];
        } else if (strncmp(a, "--plugin-path=", 14) == 0) {
            is_path = 1;
            val = a + 14;
        } else if (strncmp(a, "--check=", 8) == 0) {
            is_check = 1;
            val = a + 8;
        } else {
            fprintf(stderr, "moelat-engine plugins: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if ((is_path && n_paths == MAX_ARGS_PATHS) || (is_check && n_checks == MAX_ARGS_PATHS)) {
            fprintf(stderr, "moelat-engine plugins: at most %d %s options\n", MAX_ARGS_PATHS,
                    is_path ? "--plugin-path" : "--check");
            return 2;
        }
        if (is_path)
            paths[n_paths++] = val;
        else
            checks[n_checks++] = (char *)val;
    }

    if (n_checks > 0)
        return run_checks(checks, n_checks, as_json);

    moelat_plugin_set *set = moelat_plugins_discover(paths, n_paths);
    if (!set) {
        fprintf(stderr, "moelat-engine plugins: out of memory\n");
        return 1;
    }
    int rc = 0;
    if (as_json) {
        if (print_json(set) != 0) {
            fprintf(stderr, "moelat-engine plugins: cannot write JSON\n");
            rc = 1;
        }
    } else {
        print_table(set);
    }
    fflush(stdout);
    for (int i = 0; i < moelat_plugins_error_count(set); i++)
        fprintf(stderr, "error: %s: %s\n", moelat_plugins_error_path(set, i), moelat_plugins_error_reason(set, i));
    moelat_plugins_free(set);
    return rc;
}
