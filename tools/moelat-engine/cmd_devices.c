/* moelat-engine devices: every OpenCL device the engine can use, as a
 * table or as JSON. */
#include "moelat/inspect.h"
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: moelat-engine devices [--json]\n"
               "Lists the OpenCL devices; the index or a part of the name selects one\n"
               "(--device, MOELAT_DEVICE).\n"
               "  --json   print a JSON array instead of a table\n");
}

/* Bytes as a short human figure, e.g. "15.5 GiB". */
static const char *human_bytes(uint64_t b, char *buf, size_t len) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)b);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

static int print_json(const moelat_device_info *d, int n) {
    json_t *arr = json_array();
    if (!arr)
        return -1;
    for (int i = 0; i < n; i++) {
        json_t *o = json_pack(
            "{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:b}",
            "index", d[i].index, "platform", d[i].platform_name, "platform_version",
            d[i].platform_version, "name", d[i].name, "vendor", d[i].vendor, "type", d[i].type,
            "version", d[i].version, "driver_version", d[i].driver_version, "compute_units",
            (json_int_t)d[i].compute_units, "global_mem_bytes", (json_int_t)d[i].global_mem_bytes,
            "max_alloc_bytes", (json_int_t)d[i].max_alloc_bytes, "local_mem_bytes",
            (json_int_t)d[i].local_mem_bytes, "max_work_group_size",
            (json_int_t)d[i].max_work_group_size, "fp64", d[i].fp64, "fp16", d[i].fp16);
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            return -1;
        }
    }
    char *text = json_dumps(arr, JSON_INDENT(2));
    json_decref(arr);
    if (!text)
        return -1;
    puts(text);
    free(text);
    return 0;
}

#define N_COLS 12
#define CELL 272

static void print_table(const moelat_device_info *d, int n) {
    static const char *head[N_COLS] = {"#",      "PLATFORM",   "NAME",      "TYPE",
                                       "VERSION", "DRIVER",    "CUS",       "GLOBAL MEM",
                                       "MAX ALLOC", "LOCAL MEM", "FP64",    "FP16"};
    /* Cells are formatted first so that each column is as wide as its
     * widest cell. */
    char(*cell)[N_COLS][CELL] = calloc((size_t)n, sizeof *cell);
    if (!cell) {
        fprintf(stderr, "moelat-engine devices: out of memory\n");
        return;
    }
    size_t width[N_COLS];
    for (int c = 0; c < N_COLS; c++)
        width[c] = strlen(head[c]);
    for (int i = 0; i < n; i++) {
        char *r[N_COLS];
        for (int c = 0; c < N_COLS; c++)
            r[c] = cell[i][c];
        snprintf(r[0], CELL, "%d", d[i].index);
        snprintf(r[1], CELL, "%s", d[i].platform_name);
        snprintf(r[2], CELL, "%s", d[i].name);
        snprintf(r[3], CELL, "%s", d[i].type);
        snprintf(r[4], CELL, "%s", d[i].version);
        snprintf(r[5], CELL, "%s", d[i].driver_version);
        snprintf(r[6], CELL, "%u", (unsigned)d[i].compute_units);
        human_bytes(d[i].global_mem_bytes, r[7], CELL);
        human_bytes(d[i].max_alloc_bytes, r[8], CELL);
        human_bytes(d[i].local_mem_bytes, r[9], CELL);
        snprintf(r[10], CELL, "%s", d[i].fp64 ? "yes" : "no");
        snprintf(r[11], CELL, "%s", d[i].fp16 ? "yes" : "no");
        for (int c = 0; c < N_COLS; c++)
            if (strlen(r[c]) > width[c])
                width[c] = strlen(r[c]);
    }
    /* The last column is not padded: no trailing blanks. */
    for (int c = 0; c < N_COLS; c++)
        printf("%-*s%s", c + 1 < N_COLS ? (int)width[c] : 0, head[c],
               c + 1 < N_COLS ? "  " : "\n");
    for (int i = 0; i < n; i++)
        for (int c = 0; c < N_COLS; c++)
            printf("%-*s%s", c + 1 < N_COLS ? (int)width[c] : 0, cell[i][c],
                   c + 1 < N_COLS ? "  " : "\n");
    free(cell);
}

int cmd_devices(int argc, char **argv) {
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "moelat-engine devices: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    moelat_device_info *devs = NULL;
    int n = 0;
    char err[1024];
    if (moelat_list_devices(&devs, &n, sizeof *devs, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine devices: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (json) {
        if (print_json(devs, n)) {
            fprintf(stderr, "moelat-engine devices: cannot build the JSON output\n");
            rc = 1;
        }
    } else if (n == 0) {
        printf("no OpenCL devices found\n");
    } else {
        print_table(devs, n);
    }
    free(devs);
    return rc;
}
