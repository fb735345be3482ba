/* An application built against an INSTALLED moelat (pkg-config or
 * find_package), run by tests/sdk_install.sh. It serves the local band with
 * the out-of-tree "diffusion" expert found in argv[1], steps the same random
 * lattice per cell and batched, and fails unless both agree, the states
 * moved, and the report names the plugin. Prints MOELAT_VERSION first so the
 * script can match it against the package's version. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <moelat/moelat.h>

#define STEPS 2

static moelat_lattice *make(const char *plugin_dir, moelat_mode mode) {
    moelat_config cfg = MOELAT_CONFIG_INIT;
    char err[1024];
    if (moelat_config_preset("debug", &cfg, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "consumer: preset: %s\n", err);
        return NULL;
    }
    cfg.dims[0] = 9;
    cfg.dims[1] = 8;
    cfg.dims[2] = 7;
    cfg.mode = mode;
    snprintf(cfg.expert[0], sizeof cfg.expert[0], "diffusion");
    snprintf(cfg.plugin_paths[0], sizeof cfg.plugin_paths[0], "%s", plugin_dir);
    cfg.n_plugin_paths = 1;
    moelat_lattice *lat = NULL;
    if (moelat_lattice_create(&cfg, &lat, err, sizeof err) != MOELAT_OK) {
        fprintf(stderr, "consumer: creating the %s lattice: %s\n",
                mode == MOELAT_MODE_BATCH ? "batch" : "per-cell", err);
        return NULL;
    }
    return lat;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PLUGIN_DIR\n", argv[0]);
        return 2;
    }
    printf("%s\n", MOELAT_VERSION);
    moelat_lattice *host = make(argv[1], MOELAT_MODE_PERCELL);
    moelat_lattice *dev = host ? make(argv[1], MOELAT_MODE_BATCH) : NULL;
    if (!dev)
        return 1;
    size_t n = moelat_cell_count(host) * (size_t)moelat_state_size(host);
    float *init = malloc(n * sizeof *init), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    if (!init || !a || !b)
        return 1;
    srand((unsigned)time(NULL));
    for (size_t i = 0; i < n; i++)
        init[i] = ((float)rand() / (float)RAND_MAX - 0.5f) * 0.4f;
    int rc = 0;
    if (moelat_set_states(host, init, n) != MOELAT_OK || moelat_set_states(dev, init, n) != MOELAT_OK ||
        moelat_step(host, STEPS) != MOELAT_OK || moelat_step(dev, STEPS) != MOELAT_OK ||
        moelat_get_states(host, a, n) != MOELAT_OK || moelat_get_states(dev, b, n) != MOELAT_OK) {
        fprintf(stderr, "consumer: %s / %s\n", moelat_last_error(host), moelat_last_error(dev));
        rc = 1;
    }
    double max_diff = 0, moved = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        max_diff = d > max_diff || isnan(d) ? d : max_diff;
        moved += fabs((double)a[i] - init[i]);
    }
    moelat_report rep = MOELAT_REPORT_INIT;
    if (rc == 0 && moelat_get_report(dev, &rep) != MOELAT_OK)
        rc = 1;
    if (rc == 0 && !(max_diff <= 1e-4)) {
        fprintf(stderr, "consumer: batch and per-cell differ by %g\n", max_diff);
        rc = 1;
    }
    if (rc == 0 && !(moved > 1e-3 * (double)n)) {
        fprintf(stderr, "consumer: the states did not move (sum |delta| %g)\n", moved);
        rc = 1;
    }
    if (rc == 0 && (strcmp(rep.expert_name[0], "diffusion") != 0 || rep.batch_chunks == 0)) {
        fprintf(stderr, "consumer: report names '%s' for local with %llu batch chunks\n",
                rep.expert_name[0], (unsigned long long)rep.batch_chunks);
        rc = 1;
    }
    if (rc == 0)
        printf("consumer ok: %s, batch vs per-cell max diff %.3g\n", moelat_device_name(dev), max_diff);
    free(init);
    free(a);
    free(b);
    moelat_lattice_destroy(dev);
    moelat_lattice_destroy(host);
    return rc;
}
