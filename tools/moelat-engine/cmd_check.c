/* moelat-engine check: the same steps in per-cell and batch mode, from the
 * same weights and states, compared after every step. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_common.h"
#include "moelat/inspect.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: moelat-engine check [options]\n\n"
            "Runs the same steps per cell (host) and batched (device) and prints the max and mean\n"
            "absolute difference of the states after each step. Exits 1 over tolerance.\n\n"
            "options:\n%s"
            "  --steps N              steps (default 5)\n"
            "  --weights FILE         load weights (safetensors) into both\n"
            "  --state FILE           load initial states (.npy) into both\n"
            "  --max-tol T            largest allowed max abs difference (default 1e-4; 1e-2 lipschitz)\n"
            "  --mean-tol T           largest allowed mean abs difference (default 1e-5; 1e-3 lipschitz)\n"
            "  --experts              first compare the band aggregates, each expert's output and the\n"
            "                         gate on the first chunk\n"
            "  --json                 print {\"steps\": [...], \"pass\": bool, \"device\": ...}\n"
            "  --help                 this text\n",
            cli_model_help);
}

/* The first error of the run, kept for --json: a failed check still prints
 * one JSON object on stdout, with the reason. */
static char g_first_err[2048];

static void check_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void check_err(const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "moelat-engine check: %s", msg);
    if (!g_first_err[0]) {
        size_t n = strlen(msg);
        while (n && msg[n - 1] == '\n')
            msg[--n] = '\0';
        snprintf(g_first_err, sizeof g_first_err, "%s", msg);
    }
}

/* {"pass": false, "error": ...} on stdout. */
static void print_json_failure(const char *why) {
    json_t *o = json_pack("{s:b, s:s}", "pass", 0, "error", why && *why ? why : "failed (see stderr)");
    char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    if (s)
        puts(s);
    free(s);
    json_decref(o);
}

static moelat_lattice *make(const moelat_config *base, int mode) {
    moelat_config cfg = *base;
    cfg.mode = mode;
    char err[2048];
    moelat_lattice *lat = NULL;
    if (moelat_lattice_create(&cfg, &lat, err, sizeof err) != MOELAT_OK) {
        check_err("%s\n", err);
        return NULL;
    }
    return lat;
}

static int load_both(moelat_lattice *a, moelat_lattice *b, const char *weights, const char *state) {
    moelat_lattice *l[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        if (weights && moelat_load_weights(l[i], weights) != MOELAT_OK) {
            check_err("%s\n", moelat_last_error(l[i]));
            return -1;
        }
        if (state && moelat_load_states(l[i], state) != MOELAT_OK) {
            check_err("%s\n", moelat_last_error(l[i]));
            return -1;
        }
    }
    return 0;
}

/* Lattice coordinates of chunk cell ci (x fastest, as in moelat_cl_chunk). */
static void chunk_cell(const int32_t origin[3], const int32_t extent[3], int ci, int32_t xyz[3]) {
    xyz[0] = origin[0] + ci % extent[0];
    xyz[1] = origin[1] + (ci / extent[0]) % extent[1];
    xyz[2] = origin[2] + ci / (extent[0] * extent[1]);
}

static size_t cell_index(const moelat_config *cfg, const int32_t xyz[3]) {
    return (size_t)xyz[0] + (size_t)cfg->dims[0] * ((size_t)xyz[1] + (size_t)cfg->dims[1] * xyz[2]);
}

/* The device's gate and update on its own expert outputs d against the
 * host gate on the same outputs, with the band counts (cnt, BANDS per
 * cell) and nu (S per cell) from the host states: pins a disagreement the
 * experts do not explain to the gate. */
static int compare_gate(moelat_lattice *host, const int32_t origin[3], const int32_t extent[3], int n_cells,
                        const float *states, float *const d[MOELAT_BANDS], const float *gated, const int *cnt,
                        const float *nu, double tol, int *pass, int json) {
    const int S = moelat_state_size(host);
    const moelat_config *cfg = moelat_lattice_config(host);
    double max = 0;
    int worst = 0;
    for (int ci = 0; ci < n_cells; ci++) {
        int32_t xyz[3];
        chunk_cell(origin, extent, ci, xyz);
        const float *xs = states + cell_index(cfg, xyz) * S;
        float w[MOELAT_BANDS];
        if (moelat_host_gate(host, xs, nu + (size_t)ci * S, w) != MOELAT_OK) {
            check_err("%s\n", moelat_last_error(host));
            return -1;
        }
        for (int q = 0; q < S; q++) {
            double xn = xs[q];
            for (int k = 0; k < MOELAT_BANDS; k++)
                if (cnt[ci * MOELAT_BANDS + k] > 0)
                    xn += (double)w[k] * d[k][(size_t)ci * S + q];
            double e = fabs(xn - gated[(size_t)ci * S + q]);
            if (!(e <= max)) {
                max = e;
                worst = ci;
            }
        }
    }
    int ok = max <= tol;
    *pass &= ok;
    if (!json)
        printf("  gate and update on chunk 0 (the device's expert outputs): max abs diff %.3e (cell %d of the chunk) %s\n",
               max, worst, ok ? "ok" : "OVER TOLERANCE");
    return 0;
}

/* Each expert alone on the first chunk: device output against the host
 * function, so a disagreement is pinned to one expert; then the gate. */
static int compare_experts(moelat_lattice *host, moelat_lattice *dev, double tol, int *pass, int json) {
    int32_t origin[3], extent[3];
    if (moelat_chunk_box(dev, 0, origin, extent) != MOELAT_OK) {
        check_err("the lattice has no chunk\n");
        return -1;
    }
    const int n_cells = extent[0] * extent[1] * extent[2];
    const int S = moelat_state_size(host);
    size_t n = (size_t)n_cells * S;
    size_t n_all = moelat_cell_count(host) * (size_t)S;
    float *states = malloc(n_all * sizeof *states);
    float *d[MOELAT_BANDS], *dm[MOELAT_BANDS], *da[MOELAT_BANDS], *h = malloc(n * sizeof(float));
    int all_on_device = 1;
    for (int k = 0; k < MOELAT_BANDS; k++)
        all_on_device &= moelat_expert_on_device(dev, k);
    float *gated = all_on_device ? malloc(n * sizeof(float)) : NULL;
    int rc = h && states && (gated || !all_on_device) ? 0 : -1;
    for (int k = 0; k < MOELAT_BANDS; k++) {
        d[k] = malloc(n * sizeof(float));
        dm[k] = malloc(n * sizeof(float));
        da[k] = malloc(n * sizeof(float));
        if (!d[k] || !dm[k] || !da[k])
            rc = -1;
    }
    if (rc == 0 && moelat_get_states(host, states, n_all) != MOELAT_OK) {
        check_err("%s\n", moelat_last_error(host));
        rc = -1;
    }
    if (rc == 0 && moelat_device_stages(dev, 0, d, dm, da, gated) != MOELAT_OK) {
        check_err("%s\n", moelat_last_error(dev));
        rc = -1;
    }
    /* The band aggregates the experts are handed, against the host's
     * neighbour sums, which also give the gate's band counts and nu (the
     * mean over all bands). */
    int *cnt = malloc((size_t)n_cells * MOELAT_BANDS * sizeof *cnt);
    float *nu = malloc(n * sizeof *nu);
    double *sm = malloc((size_t)S * sizeof *sm), *sa = malloc((size_t)S * sizeof *sa);
    double *all = malloc((size_t)S * sizeof *all);
    if (rc == 0 && (!cnt || !nu || !sm || !sa || !all)) {
        check_err("out of memory\n");
        rc = -1;
    }
    double max_m[MOELAT_BANDS] = {0, 0, 0}, max_a[MOELAT_BANDS] = {0, 0, 0};
    const int absmask = moelat_absmean_bands(dev);
    for (int ci = 0; ci < n_cells && rc == 0; ci++) {
        int32_t xyz[3];
        int total = 0;
        chunk_cell(origin, extent, ci, xyz);
        memset(all, 0, (size_t)S * sizeof *all);
        for (int k = 0; k < MOELAT_BANDS; k++) {
            memset(sm, 0, (size_t)S * sizeof *sm);
            memset(sa, 0, (size_t)S * sizeof *sa);
            int m = cnt[ci * MOELAT_BANDS + k] = moelat_band_sums(host, k, xyz, states, sm, sa);
            total += m;
            for (int q = 0; q < S && m; q++) {
                all[q] += sm[q];
                double em = fabs(sm[q] / m - dm[k][(size_t)ci * S + q]);
                max_m[k] = !(em <= max_m[k]) ? em : max_m[k]; /* NaN counts as the largest */
                if (absmask >> k & 1) {
                    double ea = fabs(sa[q] / m - da[k][(size_t)ci * S + q]);
                    max_a[k] = !(ea <= max_a[k]) ? ea : max_a[k];
                }
            }
        }
        for (int q = 0; q < S; q++)
            nu[(size_t)ci * S + q] = total ? (float)(all[q] / total) : 0.0f;
    }
    free(sm);
    free(sa);
    free(all);
    for (int k = 0; k < MOELAT_BANDS && rc == 0; k++) {
        int ok = max_m[k] <= tol && max_a[k] <= tol;
        *pass &= ok;
        char abs_diff[64] = "not computed (its expert does not read it)";
        if (absmask >> k & 1)
            snprintf(abs_diff, sizeof abs_diff, "max abs diff %.3e", max_a[k]);
        if (!json)
            printf("  band %-10s aggregates on chunk 0: mean max abs diff %.3e, mean|n| %s %s\n", moelat_band_name(k),
                   max_m[k], abs_diff, ok ? "ok" : "OVER TOLERANCE");
    }
    for (int k = 0; k < MOELAT_BANDS && rc == 0; k++) {
        if (!moelat_expert_on_device(dev, k)) {
            if (!json)
                printf("  expert %-10s (%s): evaluated on the host in batch mode (no device path), not compared\n",
                       moelat_expert_name(dev, k), moelat_band_name(k));
            continue;
        }
        if (moelat_host_expert(host, k, origin, extent, states, h) != MOELAT_OK) {
            check_err("%s\n", moelat_last_error(host));
            rc = -1;
            break;
        }
        double max = 0;
        size_t worst = 0;
        for (size_t i = 0; i < n; i++) {
            double e = fabs((double)h[i] - d[k][i]);
            if (!(e <= max)) {
                max = e;
                worst = i;
            }
        }
        int ok = max <= tol;
        *pass &= ok;
        if (!json)
            printf("  expert %-10s (%s) on chunk 0: max abs diff %.3e (cell %zu of the chunk, host %.6g, device %.6g) %s\n",
                   moelat_expert_name(dev, k), moelat_band_name(k), max, worst / (size_t)S, h[worst], d[k][worst],
                   ok ? "ok" : "OVER TOLERANCE");
    }
    if (rc == 0 && gated)
        rc = compare_gate(host, origin, extent, n_cells, states, d, gated, cnt, nu, tol, pass, json);
    else if (rc == 0 && !json)
        printf("  gate and update: not compared (an expert runs on the host in batch mode)\n");
    for (int k = 0; k < MOELAT_BANDS; k++) {
        free(d[k]);
        free(dm[k]);
        free(da[k]);
    }
    free(h);
    free(gated);
    free(cnt);
    free(nu);
    free(states);
    return rc;
}

int cmd_check(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    long long steps = 5;
    const char *weights = NULL, *state = NULL;
    double max_tol = -1, mean_tol = -1;
    int json = 0, experts = 0;
    for (int i = 1; i < argc; i++) {
        int r = cli_model_opt(&mo, argc, argv, &i, "check");
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        const char *a = argv[i];
        if ((strcmp(a, "--weights") == 0 || strcmp(a, "--state") == 0 || strcmp(a, "--steps") == 0 ||
             strcmp(a, "--max-tol") == 0 || strcmp(a, "--mean-tol") == 0) &&
            i + 1 >= argc) {
            check_err("option %s needs a value\n", a);
            return 2;
        }
        if ((strcmp(a, "--weights") == 0 || strcmp(a, "--state") == 0) && !argv[i + 1][0]) {
            check_err("option %s needs a file name, got an empty string\n", a);
            return 2;
        }
        if (strcmp(a, "--weights") == 0) {
            weights = argv[++i];
        } else if (strcmp(a, "--state") == 0) {
            state = argv[++i];
        } else if (strcmp(a, "--steps") == 0) {
            steps = cli_parse_int(argv[++i]);
            if (steps < 1) {
                check_err("--steps wants a positive integer, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--max-tol") == 0 || strcmp(a, "--mean-tol") == 0) {
            char *end;
            double v = strtod(argv[++i], &end);
            if (*end || !(v >= 0)) {
                check_err("%s wants a non-negative number, got '%s'\n", a, argv[i]);
                return 2;
            }
            *(strcmp(a, "--max-tol") == 0 ? &max_tol : &mean_tol) = v;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--experts") == 0) {
            experts = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            check_err("unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    moelat_config cfg = MOELAT_CONFIG_INIT;
    if (cli_build_config(&mo, &cfg, "check") != 0) {
        if (json)
            print_json_failure("invalid model options (the reason is on stderr)");
        return 2;
    }
    int lipschitz = cfg.cnf_mode == MOELAT_CNF_LIPSCHITZ;
    if (max_tol < 0)
        max_tol = lipschitz ? 1e-2 : 1e-4;
    if (mean_tol < 0)
        mean_tol = lipschitz ? 1e-3 : 1e-5;

    int rc = 1, json_printed = 0;
    moelat_lattice *host = make(&cfg, MOELAT_MODE_PERCELL);
    moelat_lattice *dev = host ? make(&cfg, MOELAT_MODE_BATCH) : NULL;
    size_t n = host ? moelat_cell_count(host) * (size_t)moelat_state_size(host) : 0;
    float *a = n ? malloc(n * sizeof(float)) : NULL;
    float *b = n ? malloc(n * sizeof(float)) : NULL;
    json_t *rows = json_array();
    if (!dev || !a || !b || load_both(host, dev, weights, state) != 0)
        goto done;
    if (!json)
        printf("check: %s %dx%dx%d, per-cell (host) vs batch (%s), tolerance max %.1e mean %.1e\n", cfg.preset,
               cfg.dims[0], cfg.dims[1], cfg.dims[2], moelat_device_name(dev), max_tol, mean_tol);
    int pass = 1;
    if (experts && compare_experts(host, dev, max_tol, &pass, json) != 0)
        goto done;
    for (long long s = 1; s <= steps; s++) {
        moelat_lattice *l[2] = {host, dev};
        for (int i = 0; i < 2; i++)
            if (moelat_step(l[i], 1) != MOELAT_OK) {
                check_err("%s mode: %s\n", i ? "batch" : "percell", moelat_last_error(l[i]));
                goto done;
            }
        if (moelat_get_states(host, a, n) != MOELAT_OK || moelat_get_states(dev, b, n) != MOELAT_OK) {
            check_err("reading states failed\n");
            goto done;
        }
        double max = 0, sum = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)a[i] - (double)b[i]);
            if (!(d <= max))
                max = d; /* NaN counts as the largest */
            sum += d;
        }
        double mean = sum / (double)n;
        int ok = max <= max_tol && mean <= mean_tol;
        pass &= ok;
        json_array_append_new(rows, json_pack("{s:I, s:f, s:f}", "step", (json_int_t)s, "max_abs_diff", max,
                                              "mean_abs_diff", mean));
        if (!json)
            printf("  step %3lld  max abs diff %.3e  mean abs diff %.3e  %s\n", s, max, mean, ok ? "ok" : "OVER TOLERANCE");
    }
    json_printed = json;
    if (json) {
        json_t *o = json_pack("{s:O, s:b, s:s, s:f, s:f}", "steps", rows, "pass", pass, "device",
                              moelat_device_name(dev), "max_tol", max_tol, "mean_tol", mean_tol);
        char *s = json_dumps(o, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("check %s\n", pass ? "passed" : "FAILED");
    }
    rc = pass ? 0 : 1;
done:
    if (json && !json_printed)
        print_json_failure(g_first_err);
    json_decref(rows);
    free(a);
    free(b);
    moelat_lattice_destroy(host);
    moelat_lattice_destroy(dev);
    return rc;
}
