/* The CLI's tuning string: the documented MOELAT_* tuning variables that
 * neither the config file's "tuning" nor a --tune sets (each the whole
 * value of its own key, escaped: moelat_tuning_append), then the file's,
 * then every --tune, joined in that order so that the library (which lets
 * a later key win) takes --tune over the file over the environment. The library itself reads none of these
 * variables: a program linking libmoelat sets moelat_config.tuning. */
#include "cli_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moelat/util.h"

/* Each tuning variable and its key; the switches that say "no" invert. */
static const struct {
    const char *var, *key;
    int inverted;
} k_vars[] = {
    {"MOELAT_AGG_VECTOR", "agg_vector", 0},
    {"MOELAT_AGG_ABSMEAN", "agg_absmean", 0},
    {"MOELAT_WORK_GROUP", "work_group", 0},
    {"MOELAT_GATE_CELLS", "gate_cells", 0},
    {"MOELAT_CL_OPTIONS", "cl_options", 0},
    {"MOELAT_NO_KERNEL_CACHE", "kernel_cache", 1},
    {"MOELAT_NO_UPGRADE_CHECK", "upgrade_check", 1},
    {"MOELAT_FUNCTIONAL_GEMM", "functional_gemm", 0},
    {"MOELAT_FUNCTIONAL_CELLS", "functional_cells", 0},
    {"MOELAT_FUNCTIONAL_SPLIT", "functional_split", 0},
    {"MOELAT_DISTANT_CELLS", "distant_cells", 0},
    {"MOELAT_LOCAL_CELLS", "local_cells", 0},
    {"MOELAT_CL_SHAPE", "cl_shape", 0},
    {"MOELAT_GRAD_DEVICE", "grad_device", 0},
    {"MOELAT_GRAD_SLOTS", "grad_slots", 0},
    {"MOELAT_GRAD_LANES", "grad_lanes", 0},
    {"MOELAT_GRAD_ROWS", "grad_rows", 0},
    {"MOELAT_GRAD_HOST_CHUNK", "grad_host_chunk", 0},
    {"MOELAT_GRAD_PROJ", "grad_proj", 0},
};

/* Appends an entry ("key=value,..." already escaped) to buf, with a comma
 * when buf is not empty; -1 when it does not fit. */
static int append(char *buf, size_t cap, const char *item) {
    size_t at = strlen(buf);
    int n = snprintf(buf + at, cap - at, "%s%s", at ? "," : "", item);
    if (n < 0 || (size_t)n >= cap - at) {
        buf[at] = '\0';
        return -1;
    }
    return 0;
}

/* The key for an inverted switch's value: MOELAT_NO_X=1 means x=off. */
static const char *inverted_value(const char *v) {
    if (strcmp(v, "1") == 0 || strcmp(v, "on") == 0)
        return "off";
    if (strcmp(v, "0") == 0 || strcmp(v, "off") == 0)
        return "on";
    return NULL;
}

/* 1 when the config file or a --tune sets key: the environment's value
 * is then not even checked. */
static int set_explicitly(const cli_model_opts *o, const moelat_config *cfg, const char *key) {
    if (moelat_tuning_value(cfg->tuning, key, NULL, 0))
        return 1;
    for (int i = 0; i < o->n_tune; i++)
        if (moelat_tuning_value(o->tune[i], key, NULL, 0))
            return 1;
    return 0;
}

int cli_merge_tuning(const cli_model_opts *o, moelat_config *cfg, const char *cmd) {
    char merged[sizeof cfg->tuning] = "";
    char used[256] = ""; /* the variables merged, for the message when the whole is too long */
    for (size_t i = 0; i < sizeof k_vars / sizeof k_vars[0]; i++) {
        const char *var = k_vars[i].var, *v = getenv(var);
        if (!v || !*v || set_explicitly(o, cfg, k_vars[i].key))
            continue;
        const char *value = v;
        if (k_vars[i].inverted && !(value = inverted_value(v))) {
            fprintf(stderr, "moelat-engine %s: %s=%s: expected 0, 1, on or off\n", cmd, var, v);
            return -1;
        }
        /* A variable is one value, its own key's: a comma in it is part of
         * the value (escaped), never the start of another key. */
        char one[sizeof cfg->tuning] = "", why[1024];
        if (moelat_tuning_append(one, sizeof one, k_vars[i].key, value) != MOELAT_OK) {
            fprintf(stderr, "moelat-engine %s: %s: its value (%zu bytes) exceeds the tuning string's %zu bytes\n",
                    cmd, var, strlen(v), sizeof one - 1);
            return -1;
        }
        if (moelat_tuning_check(one, why, sizeof why) != MOELAT_OK) {
            fprintf(stderr, "moelat-engine %s: %s=%.300s: %s\n", cmd, var, v, why);
            return -1;
        }
        if (append(merged, sizeof merged, one) != 0) {
            fprintf(stderr,
                    "moelat-engine %s: %s (%zu bytes) does not fit in the tuning string (%zu bytes) after %s\n",
                    cmd, var, strlen(v), sizeof merged - 1, used);
            return -1;
        }
        snprintf(used + strlen(used), sizeof used - strlen(used), "%s%s", used[0] ? ", " : "", var);
    }
    if (cfg->tuning[0] && append(merged, sizeof merged, cfg->tuning) != 0)
        goto too_long;
    for (int i = 0; i < o->n_tune; i++)
        if (o->tune[i][0] && append(merged, sizeof merged, o->tune[i]) != 0)
            goto too_long;
    memcpy(cfg->tuning, merged, sizeof merged);
    return 0;
too_long:
    fprintf(stderr, "moelat-engine %s: the tuning of %s%sthe config and --tune exceeds %zu bytes\n", cmd,
            used[0] ? used : "", used[0] ? ", " : "", sizeof cfg->tuning - 1);
    return -1;
}
