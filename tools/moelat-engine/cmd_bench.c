/* moelat-engine bench: per-cell (host) against batched (device) steps over
 * a list of cases, with absolute rates and the fraction of the device's
 * measured FP32 peak. A benchmark, not a test: it prints, it never fails
 * on a slow figure. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_common.h"
#include "moelat/grad.h"
#include "moelat/inspect.h"
#include "moelat/util.h"

/* Monotonic clock in milliseconds. */
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

typedef struct bench_case {
    char preset[32];
    int32_t dims[3];
} bench_case;

typedef struct bench_row {
    bench_case c;
    double percell_ms, batch_ms, speedup, mcups, gflops, peak_fraction, flops_per_cell;
    double functional_flops_per_cell; /* the functional expert's share */
    double functional_peak_fraction;  /* its useful GFLOP/s over its kernels' device time, of peak */
    int percell_estimated;
    int queues; /* command queues the batch steps ran on */
    double agg_ms, pre_ms, gate_ms, expert_ms[MOELAT_BANDS]; /* device ms per step */
    /* --backward: one gradient step (record 1 step + backward), its two
     * parts, its ratio to batch_ms, and where the backward ran. */
    double grad_ms, grad_record_ms, grad_backward_ms, grad_ratio;
    char grad_path[384];
    int ok;
} bench_row;

static void usage(FILE *out) {
    fprintf(out,
            "usage: moelat-engine bench [options]\n\n"
            "Times per-cell steps (host, all threads; a sample of rows extrapolated for large\n"
            "lattices, marked '~') and batch steps (device) for each case, and prints ms/step,\n"
            "speedup, million cell updates per second, useful GFLOP/s (engine/src/core/flops.c) and\n"
            "the fraction of the device's measured FP32 peak. Batch steps are timed without\n"
            "profiling events; the device time per kernel comes from as many profiled steps.\n"
            "Default cases: debug 8^3, 15^3, 30^3, experiment 40^3, and on a GPU optimized 100^3.\n\n"
            "options:\n"
            "  --cases LIST           cases as PRESET:XxYxZ,... (e.g. debug:15x15x15,experiment:40x40x40)\n"
            "  --preset NAME          one case of this preset (its own dims unless --dims)\n"
            "  --dims XxYxZ           dims of that case\n"
            "  --steps N              timed batch steps per case (default 10)\n"
            "  --percell-cells N      largest per-cell sample in cells (default 20000; 0: no\n"
            "                         per-cell timing, speedup left 0)\n"
            "  --device SPEC          OpenCL device\n"
            "  --threads N            host threads\n"
            "  --queues Q             OpenCL queues\n"
            "  --chunk XxYxZ          chunk box\n"
            "  --tune KEY=VALUE,...   tuning knobs (README: tuning keys)\n"
            "  --backward             also time the gradient step (forward with recording +\n"
            "                         backward of 1 step, moelat/grad.h) and its ratio to a step\n"
            "  --json | --csv         machine-readable output\n"
            "  --help                 this text\n");
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static moelat_lattice *make(const bench_case *c, const cli_model_opts *mo, int mode, int profile) {
    cli_model_opts o = *mo;
    o.preset = c->preset;
    o.profile = profile;
    o.dims = NULL;
    o.mode = mode == MOELAT_MODE_BATCH ? "batch" : "percell";
    moelat_config cfg = MOELAT_CONFIG_INIT;
    if (cli_build_config(&o, &cfg, "bench") != 0)
        return NULL;
    memcpy(cfg.dims, c->dims, sizeof cfg.dims);
    char err[2048];
    moelat_lattice *lat = NULL;
    if (moelat_lattice_create(&cfg, &lat, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine bench: %s %dx%dx%d: %s\n", c->preset, c->dims[0], c->dims[1], c->dims[2], err);
        return NULL;
    }
    return lat;
}

/* Warm-up: one step (first launches, library kernels built on first use),
 * then steps until 300 ms have passed since it, so that a device that idled
 * (clocks down) is up to speed before small steps are timed (a large
 * lattice's second step alone takes that long, and then nothing more
 * runs). A hundred steps can carry a small lattice's states to Inf, so
 * after every 20 extra steps the states go back to those after the second
 * step, and one more untimed step takes their upload. Then `steps` timed
 * steps; ms (may be NULL) gets each one's wall time. Without memory for
 * the copy the warm-up is the two steps. */
static int batch_steps(moelat_lattice *dev, int steps, double *ms) {
    int rc = moelat_step(dev, 1);
    double t0 = now_ms();
    if (rc == MOELAT_OK)
        rc = moelat_step(dev, 1);
    size_t n = moelat_cell_count(dev) * (size_t)moelat_state_size(dev);
    float *init = rc == MOELAT_OK && now_ms() - t0 < 300.0 ? malloc(n * sizeof *init) : NULL;
    if (init) {
        rc = moelat_get_states(dev, init, n);
        while (rc == MOELAT_OK && now_ms() - t0 < 300.0) {
            for (int k = 0; k < 20 && rc == MOELAT_OK && now_ms() - t0 < 300.0; k++)
                rc = moelat_step(dev, 1);
            if (rc == MOELAT_OK)
                rc = moelat_set_states(dev, init, n);
        }
        if (rc == MOELAT_OK)
            rc = moelat_step(dev, 1); /* the upload of the restored states */
        free(init);
    }
    if (rc != MOELAT_OK) {
        fprintf(stderr, "moelat-engine bench: %s\n", moelat_last_error(dev));
        return -1;
    }
    moelat_reset_report(dev);
    for (int s = 0; s < steps; s++) {
        double start = now_ms();
        if (moelat_step(dev, 1) != MOELAT_OK) {
            fprintf(stderr, "moelat-engine bench: %s\n", moelat_last_error(dev));
            return -1;
        }
        if (ms)
            ms[s] = now_ms() - start;
    }
    return 0;
}

/* The gradient step of a batch lattice: record 1 step and reverse it from
 * a random dL/ds_1, three times; the median's parts. */
static int grad_step(const bench_case *c, const cli_model_opts *mo, bench_row *row) {
    moelat_lattice *lat = make(c, mo, MOELAT_MODE_BATCH, 0);
    if (!lat)
        return -1;
    size_t n = moelat_cell_count(lat) * (size_t)moelat_state_size(lat);
    float *d = malloc(n * sizeof *d);
    double t[3][3];
    int rc = d ? 0 : -1;
    for (size_t v = 0; d && v < n; v++)
        d[v] = (float)((double)((v * 2654435761u) % 2001u) / 1000.0 - 1.0);
    for (int r = 0; r < 3 && rc == 0; r++) {
        moelat_grad *g = NULL;
        double t0 = now_ms();
        if (moelat_grad_record(lat, 1, NULL, &g) != MOELAT_OK) {
            rc = -1;
            break;
        }
        double t1 = now_ms();
        if (moelat_grad_backward(g, d, n) != MOELAT_OK)
            rc = -1;
        double t2 = now_ms();
        t[r][0] = t2 - t0;
        t[r][1] = t1 - t0;
        t[r][2] = t2 - t1;
        snprintf(row->grad_path, sizeof row->grad_path, "%s", moelat_grad_path(g));
        moelat_grad_destroy(g);
    }
    if (rc != 0)
        fprintf(stderr, "moelat-engine bench: gradient step: %s\n", moelat_last_error(lat));
    else {
        int m = 0; /* the median run by total */
        for (int r = 0; r < 3; r++) {
            int below = 0;
            for (int q = 0; q < 3; q++)
                below += t[q][0] < t[r][0] || (t[q][0] == t[r][0] && q < r);
            if (below == 1)
                m = r;
        }
        row->grad_ms = t[m][0];
        row->grad_record_ms = t[m][1];
        row->grad_backward_ms = t[m][2];
        row->grad_ratio = row->batch_ms > 0 ? row->grad_ms / row->batch_ms : 0;
    }
    free(d);
    moelat_lattice_destroy(lat);
    return rc;
}

static int run_case(const bench_case *c, const cli_model_opts *mo, int steps, size_t sample_cells, double peak,
                    int backward, bench_row *row) {
    memset(row, 0, sizeof *row);
    row->c = *c;
    moelat_lattice *host = make(c, mo, MOELAT_MODE_PERCELL, 0);
    if (!host)
        return -1;
    double part[5];
    row->flops_per_cell = moelat_flops_per_cell(host, part);
    row->functional_flops_per_cell = part[2];
    /* Keep the host sample to about ten seconds at ~20 GFLOP/s. */
    double affordable = 2e11 / (row->flops_per_cell > 1 ? row->flops_per_cell : 1);
    if (sample_cells > 0 && (double)sample_cells > affordable)
        sample_cells = affordable < 64 ? 64 : (size_t)affordable;
    if (sample_cells > 0) {
        moelat_host_time_sample(host, sample_cells, &row->percell_estimated); /* warm-up */
        double t[3];
        for (int i = 0; i < 3; i++)
            t[i] = moelat_host_time_sample(host, sample_cells, &row->percell_estimated);
        qsort(t, 3, sizeof t[0], cmp);
        row->percell_ms = t[1];
    }
    moelat_lattice_destroy(host);

    /* Step times come from a lattice without profiling events (they cost
     * tens of microseconds per small step); the kernel split from a second,
     * profiled lattice running as many steps. */
    moelat_lattice *dev = make(c, mo, MOELAT_MODE_BATCH, 0);
    double *ms = malloc((size_t)steps * sizeof *ms);
    if (!dev || !ms || batch_steps(dev, steps, ms) != 0) {
        free(ms);
        moelat_lattice_destroy(dev);
        return -1;
    }
    qsort(ms, (size_t)steps, sizeof *ms, cmp);
    row->batch_ms = ms[steps / 2];
    row->queues = moelat_batch_queues(dev);
    free(ms);
    double N = (double)moelat_cell_count(dev);
    moelat_lattice_destroy(dev);

    dev = make(c, mo, MOELAT_MODE_BATCH, 1);
    if (!dev || batch_steps(dev, steps, NULL) != 0) {
        moelat_lattice_destroy(dev);
        return -1;
    }
    moelat_report r = MOELAT_REPORT_INIT;
    moelat_get_report(dev, &r);
    moelat_lattice_destroy(dev);
    double per = 1.0 / (double)steps;
    row->agg_ms = r.aggregate_device_ms * per;
    row->pre_ms = r.precompute_device_ms * per;
    row->gate_ms = r.gate_device_ms * per;
    for (int k = 0; k < MOELAT_BANDS; k++)
        row->expert_ms[k] = r.expert_device_ms[k] * per;
    row->speedup = row->batch_ms > 0 ? row->percell_ms / row->batch_ms : 0;
    row->mcups = N / (row->batch_ms * 1e3);
    row->gflops = row->flops_per_cell * N / (row->batch_ms * 1e6);
    row->peak_fraction = peak > 0 ? row->gflops / peak : 0;
    /* The functional expert's kernels: its per-step projection (the
     * precompute column) and its chunk kernel. With several queues the
     * events of concurrent kernels overlap and the fraction reads low;
     * --queues 1 gives the kernel's own figure. */
    double func_ms = row->pre_ms + row->expert_ms[1];
    row->functional_peak_fraction =
        peak > 0 && func_ms > 0 ? row->functional_flops_per_cell * N / (func_ms * 1e6) / peak : 0;
    if (backward && grad_step(c, mo, row) != 0)
        return -1;
    row->ok = 1;
    return 0;
}

int cmd_bench(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    const char *preset = NULL, *dims = NULL, *case_list = NULL;
    int steps = 10, json = 0, csv = 0, backward = 0;
    long long sample = 20000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (strcmp(a, "--preset") == 0 && has) {
            preset = argv[++i];
        } else if (strcmp(a, "--cases") == 0 && has) {
            case_list = argv[++i];
        } else if (strcmp(a, "--dims") == 0 && has) {
            dims = argv[++i];
        } else if (strcmp(a, "--steps") == 0 && has) {
            steps = (int)cli_parse_int(argv[++i]);
            if (steps < 1) {
                fprintf(stderr, "moelat-engine bench: --steps wants a positive integer\n");
                return 2;
            }
        } else if (strcmp(a, "--percell-cells") == 0 && has) {
            sample = cli_parse_int(argv[++i]);
            if (sample < 0) {
                fprintf(stderr, "moelat-engine bench: --percell-cells wants a non-negative integer\n");
                return 2;
            }
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--csv") == 0) {
            csv = 1;
        } else if (strcmp(a, "--backward") == 0) {
            backward = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            int r = (strcmp(a, "--device") == 0 || strcmp(a, "--threads") == 0 || strcmp(a, "--queues") == 0 ||
                     strcmp(a, "--chunk") == 0 || strcmp(a, "--tune") == 0)
                        ? cli_model_opt(&mo, argc, argv, &i, "bench")
                        : 0;
            if (r < 0)
                return 2;
            if (r == 0) {
                fprintf(stderr, "moelat-engine bench: unknown option '%s'\n\n", a);
                usage(stderr);
                return 2;
            }
        }
    }
    /* Before the first OpenCL call (the peak's): PoCL reads its thread count once. */
    cli_cpu_runtime_threads(mo.threads);
    /* The device and its peak. */
    char err[4096];
    moelat_device_info dev = MOELAT_DEVICE_INFO_INIT;
    if (moelat_select_device(mo.device, &dev, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "moelat-engine bench: %s\n", err);
        return 1;
    }
    double peak = moelat_device_peak_gflops(mo.device, err, sizeof err);
    if (peak < 0) {
        fprintf(stderr, "moelat-engine bench: %s\n", err);
        return 1;
    }
    if (peak <= 0)
        fprintf(stderr, "moelat-engine bench: peak measurement failed: %s\n", err);

    bench_case cases[8];
    int n = 0;
    if (case_list) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", case_list);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && n < 8; tok = strtok_r(NULL, ",", &save)) {
            char *colon = strchr(tok, ':');
            moelat_config cfg = MOELAT_CONFIG_INIT;
            if (colon)
                *colon = '\0';
            if (moelat_config_preset(tok, &cfg, err, sizeof err) != MOELAT_OK ||
                (colon && moelat_parse_dims(colon + 1, cfg.dims, err, sizeof err) != MOELAT_OK)) {
                fprintf(stderr, "moelat-engine bench: --cases: %s\n", err);
                return 2;
            }
            snprintf(cases[n].preset, sizeof cases[n].preset, "%s", tok);
            memcpy(cases[n].dims, cfg.dims, sizeof cfg.dims);
            n++;
        }
    } else if (preset || dims) {
        snprintf(cases[0].preset, sizeof cases[0].preset, "%s", preset ? preset : "debug");
        moelat_config cfg = MOELAT_CONFIG_INIT;
        if (moelat_config_preset(cases[0].preset, &cfg, err, sizeof err) != MOELAT_OK) {
            fprintf(stderr, "moelat-engine bench: %s\n", err);
            return 2;
        }
        memcpy(cases[0].dims, cfg.dims, sizeof cfg.dims);
        if (dims && moelat_parse_dims(dims, cases[0].dims, err, sizeof err) != MOELAT_OK) {
            fprintf(stderr, "moelat-engine bench: --dims: %s\n", err);
            return 2;
        }
        n = 1;
    } else {
        const bench_case defaults[] = {{"debug", {8, 8, 8}}, {"debug", {15, 15, 15}}, {"debug", {30, 30, 30}},
                                       {"experiment", {40, 40, 40}}, {"optimized", {100, 100, 100}}};
        for (int i = 0; i < 5; i++) {
            /* 100^3 optimized: two state buffers of 512 MB and its chunks, and
             * hours per step on a CPU device: GPUs only. */
            if (i == 4 && (strcmp(dev.type, "GPU") != 0 || dev.global_mem_bytes < (4ull << 30)))
                continue;
            cases[n++] = defaults[i];
        }
    }
    bench_row rows[8];
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (!json && !csv) {
            fprintf(stderr, "bench: %s %dx%dx%d ...\n", cases[i].preset, cases[i].dims[0], cases[i].dims[1],
                    cases[i].dims[2]);
        }
        if (run_case(&cases[i], &mo, steps, (size_t)sample, peak, backward, &rows[i]) != 0)
            failed++; /* reported; the other cases still run */
    }
    if (json) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++) {
            bench_row *r = &rows[i];
            if (!r->ok)
                continue;
            char d[64];
            snprintf(d, sizeof d, "%dx%dx%d", r->c.dims[0], r->c.dims[1], r->c.dims[2]);
            json_t *row = json_pack("{s:s, s:s, s:i, s:f, s:b, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:{s:f, s:f, s:f, s:f, s:f, s:f}}",
                               "preset", r->c.preset, "dims", d, "queues", r->queues, "percell_ms", r->percell_ms, "percell_estimated",
                               r->percell_estimated, "batch_ms", r->batch_ms, "speedup", r->speedup, "mcups",
                               r->mcups, "gflops", r->gflops, "peak_fraction", r->peak_fraction, "flops_per_cell",
                               r->flops_per_cell, "functional_peak_fraction", r->functional_peak_fraction,
                               "kernel_ms", "aggregate", r->agg_ms, "precompute", r->pre_ms,
                               "local", r->expert_ms[0], "functional", r->expert_ms[1], "distant", r->expert_ms[2],
                               "gate", r->gate_ms);
            if (backward && row)
                json_object_set_new(row, "backward",
                                    json_pack("{s:f, s:f, s:f, s:f, s:s}", "grad_ms", r->grad_ms, "record_ms",
                                              r->grad_record_ms, "backward_ms", r->grad_backward_ms, "ratio",
                                              r->grad_ratio, "path", r->grad_path));
            json_array_append_new(arr, row);
        }
        json_t *o = json_pack("{s:s, s:s, s:f, s:o}", "device", dev.name, "driver", dev.driver_version,
                              "peak_gflops", peak, "rows", arr);
        char *s = json_dumps(o, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(o);
    } else if (csv) {
        printf("device,preset,dims,cells,percell_ms,percell_estimated,batch_ms,speedup,mcups,gflops,peak_fraction,"
               "aggregate_ms,precompute_ms,local_ms,functional_ms,distant_ms,gate_ms,functional_peak_fraction,queues%s\n",
               backward ? ",grad_ms,grad_record_ms,grad_backward_ms,grad_ratio" : "");
        for (int i = 0; i < n; i++) {
            bench_row *r = &rows[i];
            if (!r->ok)
                continue;
            printf("\"%s\",%s,%dx%dx%d,%lld,%.4f,%d,%.4f,%.2f,%.3f,%.2f,%.5f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.5f,%d", dev.name,
                   r->c.preset, r->c.dims[0], r->c.dims[1], r->c.dims[2],
                   (long long)r->c.dims[0] * r->c.dims[1] * r->c.dims[2], r->percell_ms, r->percell_estimated,
                   r->batch_ms, r->speedup, r->mcups, r->gflops, r->peak_fraction, r->agg_ms, r->pre_ms,
                   r->expert_ms[0], r->expert_ms[1], r->expert_ms[2], r->gate_ms, r->functional_peak_fraction, r->queues);
            if (backward)
                printf(",%.4f,%.4f,%.4f,%.3f", r->grad_ms, r->grad_record_ms, r->grad_backward_ms, r->grad_ratio);
            printf("\n");
        }
    } else {
        printf("device: %s (driver %s), measured FP32 peak %.0f GFLOP/s\n", dev.name, dev.driver_version, peak);
        printf("%-10s %-11s %2s %12s %10s %9s %9s %9s %7s | device ms/step: %s\n", "preset", "dims", "q", "percell ms",
               "batch ms", "speedup", "MCUPS", "GFLOP/s", "peak", "aggr  pre  local  func  dist  gate | func peak");
        for (int i = 0; i < n; i++) {
            bench_row *r = &rows[i];
            if (!r->ok)
                continue;
            char d[32];
            snprintf(d, sizeof d, "%dx%dx%d", r->c.dims[0], r->c.dims[1], r->c.dims[2]);
            printf("%-10s %-11s %2d %c%11.3f %10.3f %8.1fx %9.2f %9.1f %6.2f%% | %.3f %.3f %.3f %.3f %.3f %.3f | %.2f%%\n",
                   r->c.preset, d, r->queues, r->percell_estimated ? '~' : ' ', r->percell_ms, r->batch_ms, r->speedup, r->mcups,
                   r->gflops, 100 * r->peak_fraction, r->agg_ms, r->pre_ms, r->expert_ms[0], r->expert_ms[1],
                   r->expert_ms[2], r->gate_ms, 100 * r->functional_peak_fraction);
        }
        if (backward) {
            printf("\ngradient step (record 1 step + backward), against one batch step:\n");
            printf("%-10s %-11s %10s %10s %12s %10s  %s\n", "preset", "dims", "grad ms", "record ms", "backward ms",
                   "grad/step", "backward on");
            for (int i = 0; i < n; i++) {
                bench_row *r = &rows[i];
                if (!r->ok)
                    continue;
                char d[32];
                snprintf(d, sizeof d, "%dx%dx%d", r->c.dims[0], r->c.dims[1], r->c.dims[2]);
                printf("%-10s %-11s %10.2f %10.2f %12.2f %9.1fx  %s\n", r->c.preset, d, r->grad_ms,
                       r->grad_record_ms, r->grad_backward_ms, r->grad_ratio, r->grad_path);
            }
        }
        printf("(batch ms: steps without profiling; device ms/step: as many steps of a profiled lattice)\n"
               "(q: command queues; with more than one, kernels overlap and a kernel's time includes waits)\n"
               "(~ per-cell time extrapolated from a sample of rows)\n");
    }
    return failed ? 1 : 0;
}
