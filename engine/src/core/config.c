/* Config presets, JSON merging and validation (see moelat.h and
 * config_parse.h). A JSON file is merged into a copy of the config, which is
 * validated as a whole before it replaces the caller's: a failed load never
 * leaves a half-applied config behind. */
#include"base/file_util.h"
#include "core/abi.h"
#include"core/config_parse.h"
#include "core/tuning.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Upper bounds that keep every size product of the engine (weights are
 * up to (2S) x H floats, states N x S) far from integer overflow. */
#define ML_MAX_SIZE 65536
#define ML_MAX_DIM (1 << 20)
#define ML_MAX_QUEUES 16

static const char *const band_names[MOELAT_BANDS] = {"local", "functional", "distant"};

const char *moelat_band_name(int band) {
    if (band < 0 || band >= MOELAT_BANDS)
        return "invalid";
    return band_names[band];
}

typedef struct preset_def {
    const char *name;
    int32_t dim, state_size;
    double radius_ratio;
    int32_t h1, h2, ph, hd, md, ode_hidden, gate_hidden;
} preset_def;

/* MODEL.md, "Presets". */
static const preset_def presets[] = {
    {"debug", 15, 24, 0.3, 12, 12, 12, 12, 8, 48, 24},
    {"experiment", 40, 64, 0.2, 32, 16, 64, 32, 16, 32, 64},
    {"optimized", 100, 128, 0.2, 64, 32, 128, 64, 32, 64, 128},
};

moelat_status moelat_config_preset(const char *name, moelat_config *cfg, char *err,
                                   size_t errlen) {
    const preset_def *p = NULL;
    for (size_t i = 0; name && i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(name, presets[i].name) == 0)
            p = &presets[i];
    if (!p) {
        ml_errf(err, errlen, "unknown preset '%s' (expected debug, experiment or optimized)",
             name ? name : "(null)");
        return MOELAT_ERR_INVALID;
    }
    if (!cfg) {
        ml_errf(err, errlen, "preset '%s': no config to fill", name);
        return MOELAT_ERR_INVALID;
    }
    size_t n = ml_abi_size(ML_ABI_CONFIG, cfg->struct_size, err, errlen);
    if (!n)
        return MOELAT_ERR_INVALID;
    moelat_config *user = cfg, full;
    cfg = &full;
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = (uint32_t)sizeof *cfg;
    snprintf(cfg->preset, sizeof cfg->preset, "%s", p->name);
    for (int i = 0; i < 3; i++)
        cfg->dims[i] = p->dim;
    cfg->state_size = p->state_size;
    cfg->radius_ratio = p->radius_ratio;
    cfg->band_ratio[0] = 0.4;
    cfg->band_ratio[1] = 0.8;
    cfg->band_ratio[2] = 0.99;
    const struct {
        const char *n;
        int32_t v;
    } hs[] = {{"h1", p->h1}, {"h2", p->h2}, {"ph", p->ph}, {"hd", p->hd},
              {"md", p->md}, {"ode_hidden", p->ode_hidden}, {"gate_hidden", p->gate_hidden}};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        moelat_config_set_hidden(cfg, hs[i].n, hs[i].v);
    for (int b = 0; b < MOELAT_BANDS; b++)
        snprintf(cfg->expert[b], sizeof cfg->expert[b], "%s", band_names[b]);
    cfg->cnf_mode = MOELAT_CNF_EULER;
    cfg->cnf_steps = 3;
    cfg->seed = 1234;
    cfg->mode = MOELAT_MODE_AUTO; /* batched wherever a device passes the upgrade check */
    ml_abi_export(user, cfg, n);
    return MOELAT_OK;
}

static int valid_hidden_name(const char *name) {
    if (!name)
        return 0;
    size_t n = strnlen(name, sizeof(((moelat_hidden_size *)0)->name));
    if (n == 0 || n >= sizeof(((moelat_hidden_size *)0)->name))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

static int hidden_count(const moelat_config *cfg) {
    int n = cfg->n_hidden;
    int cap = (int)(sizeof cfg->hidden / sizeof cfg->hidden[0]);
    return n < 0 ? 0 : n > cap ? cap : n;
}

int32_t moelat_config_hidden(const moelat_config *cfg, const char *name, int32_t fallback) {
    if (!cfg || !name)
        return fallback;
    for (int i = 0; i < hidden_count(cfg); i++)
        if (strncmp(cfg->hidden[i].name, name, sizeof cfg->hidden[i].name) == 0)
            return cfg->hidden[i].value;
    return fallback;
}

moelat_status moelat_config_set_hidden(moelat_config *cfg, const char *name, int32_t value) {
    /* The hidden sizes are fields of layout 1: changed in place. */
    if (!cfg || !ml_abi_size(ML_ABI_CONFIG, cfg->struct_size, NULL, 0) || !valid_hidden_name(name) || value < 1)
        return MOELAT_ERR_INVALID;
    int n = hidden_count(cfg);
    for (int i = 0; i < n; i++) {
        if (strncmp(cfg->hidden[i].name, name, sizeof cfg->hidden[i].name) == 0) {
            cfg->hidden[i].value = value;
            return MOELAT_OK;
        }
    }
    if (n >= (int)(sizeof cfg->hidden / sizeof cfg->hidden[0]))
        return MOELAT_ERR_INVALID;
    snprintf(cfg->hidden[n].name, sizeof cfg->hidden[n].name, "%s", name);
    cfg->hidden[n].value = value;
    cfg->n_hidden = n + 1;
    return MOELAT_OK;
}

double moelat_config_radius(const moelat_config *cfg) {
    if (!cfg)
        return 1.0;
    int32_t m = cfg->dims[0];
    if (cfg->dims[1] > m)
        m = cfg->dims[1];
    if (cfg->dims[2] > m)
        m = cfg->dims[2];
    double r = (double)m * cfg->radius_ratio;
    if (!(r >= 1.0)) /* also catches NaN */
        r = 1.0;
    if (r > 100.0)
        r = 100.0;
    return r;
}

int ml_parse_dims(const char *s, int32_t out[3], char *err, size_t errlen) {
    int32_t v[3];
    const char *p = s;
    if (!s) {
        ml_errf(err, errlen, "expected XxYxZ, got nothing");
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        if (i > 0) {
            if (*p != 'x' && *p != 'X')
                goto bad;
            p++;
        }
        if (*p < '0' || *p > '9')
            goto bad;
        long long x = 0;
        while (*p >= '0' && *p <= '9') {
            x = x * 10 + (*p++ - '0');
            if (x > ML_MAX_DIM) {
                ml_errf(err, errlen, "'%.64s': dimension larger than %d", s, ML_MAX_DIM);
                return -1;
            }
        }
        if (x < 1)
            goto bad;
        v[i] = (int32_t)x;
    }
    if (*p != '\0')
        goto bad;
    memcpy(out, v, sizeof v);
    return 0;
bad:
    ml_errf(err, errlen, "expected XxYxZ with three positive integers (e.g. 15x15x15), got '%.64s'",
         s);
    return -1;
}

static int terminated(const char *s, size_t cap) { return strnlen(s, cap) < cap; }

int ml_config_validate(const moelat_config *cfg, char *err, size_t errlen) {
    if (!cfg) {
        ml_errf(err, errlen, "no config");
        return -1;
    }
    if (!terminated(cfg->preset, sizeof cfg->preset) ||
        !terminated(cfg->device, sizeof cfg->device) || !terminated(cfg->tuning, sizeof cfg->tuning)) {
        ml_errf(err, errlen, "config: preset, device name or tuning string is not terminated");
        return -1;
    }
    ml_tuning tuning;
    char why[512];
    if (ml_tuning_parse(cfg->tuning, &tuning, why, sizeof why) != 0) {
        ml_errf(err, errlen, "config: %s", why);
        return -1;
    }
    static const char axis[3] = {'X', 'Y', 'Z'};
    for (int i = 0; i < 3; i++) {
        if (cfg->dims[i] < 1 || cfg->dims[i] > ML_MAX_DIM) {
            ml_errf(err, errlen, "config: dims %c = %d out of range (1 to %d)", axis[i],
                 (int)cfg->dims[i], ML_MAX_DIM);
            return -1;
        }
    }
    const uint64_t n_cells = (uint64_t)cfg->dims[0] * (uint64_t)cfg->dims[1] *
                             (uint64_t)cfg->dims[2];
    if (n_cells > INT32_MAX) {
        ml_errf(err, errlen, "config: %dx%dx%d lattice has more than %d cells", (int)cfg->dims[0],
             (int)cfg->dims[1], (int)cfg->dims[2], INT32_MAX);
        return -1;
    }
    const int32_t S = cfg->state_size;
    if (S < 1 || S > ML_MAX_SIZE) {
        ml_errf(err, errlen, "config: state_size %d out of range (1 to %d)", (int)S, ML_MAX_SIZE);
        return -1;
    }
    if (S % 2 != 0) {
        ml_errf(err, errlen, "config: state_size %d must be even (the functional gate uses S/2)",
             (int)S);
        return -1;
    }
    if (n_cells * (uint64_t)S > SIZE_MAX / sizeof(float) / 4) {
        ml_errf(err, errlen, "config: %llu cells x state_size %d does not fit in memory",
             (unsigned long long)n_cells, (int)S);
        return -1;
    }
    if (!(cfg->radius_ratio >= ML_RADIUS_RATIO_MIN && cfg->radius_ratio <= ML_RADIUS_RATIO_MAX)) {
        ml_errf(err, errlen, "config: radius_ratio %g out of range (%g to %g)", cfg->radius_ratio,
                ML_RADIUS_RATIO_MIN, ML_RADIUS_RATIO_MAX);
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        double b = cfg->band_ratio[i];
        if (!(b >= ML_BAND_RATIO_MIN && b <= ML_BAND_RATIO_MAX) ||
            (i > 0 && !(b > cfg->band_ratio[i - 1]))) {
            ml_errf(err, errlen,
                 "config: band_ratios %g, %g, %g must be strictly increasing, each from %g to %g",
                 cfg->band_ratio[0], cfg->band_ratio[1], cfg->band_ratio[2], ML_BAND_RATIO_MIN,
                 ML_BAND_RATIO_MAX);
            return -1;
        }
    }
    if (cfg->n_hidden < 0 || cfg->n_hidden > (int)(sizeof cfg->hidden / sizeof cfg->hidden[0])) {
        ml_errf(err, errlen, "config: n_hidden %d out of range (0 to %zu)", (int)cfg->n_hidden,
             sizeof cfg->hidden / sizeof cfg->hidden[0]);
        return -1;
    }
    for (int i = 0; i < cfg->n_hidden; i++) {
        const moelat_hidden_size *h = &cfg->hidden[i];
        if (!valid_hidden_name(h->name)) {
            ml_errf(err, errlen, "config: hidden size %d has an invalid name (want [a-z0-9_]+, < 32)",
                 i);
            return -1;
        }
        if (h->value < 1 || h->value > ML_MAX_SIZE) {
            ml_errf(err, errlen, "config: hidden size %s = %d out of range (1 to %d)", h->name,
                 (int)h->value, ML_MAX_SIZE);
            return -1;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(cfg->hidden[j].name, h->name) == 0) {
                ml_errf(err, errlen, "config: hidden size %s is listed twice", h->name);
                return -1;
            }
        }
    }
    const int32_t H = moelat_config_hidden(cfg, "ode_hidden", 0);
    if (H != 0) {
        if (H % 2 != 0) {
            ml_errf(err, errlen, "config: ode_hidden %d must be even (the ODE network uses H/2)",
                 (int)H);
            return -1;
        }
        if (H / 4 > S) {
            ml_errf(err, errlen,
                 "config: floor(ode_hidden/4) = %d exceeds state_size %d (the time embedding "
                 "fills the first floor(H/4) state entries)",
                 (int)(H / 4), (int)S);
            return -1;
        }
    }
    for (int b = 0; b < MOELAT_BANDS; b++) {
        if (!terminated(cfg->expert[b], sizeof cfg->expert[b]) || !cfg->expert[b][0]) {
            ml_errf(err, errlen, "config: expert for band %s is empty or not terminated",
                 band_names[b]);
            return -1;
        }
    }
    if (cfg->cnf_mode != MOELAT_CNF_EULER && cfg->cnf_mode != MOELAT_CNF_LIPSCHITZ) {
        ml_errf(err, errlen, "config: cnf_mode %d is neither euler (0) nor lipschitz (1)",
             (int)cfg->cnf_mode);
        return -1;
    }
    if (cfg->cnf_steps < 1 || cfg->cnf_steps > ML_MAX_CNF_STEPS) {
        ml_errf(err, errlen, "config: cnf_steps %d out of range (1 to %d)", (int)cfg->cnf_steps,
                ML_MAX_CNF_STEPS);
        return -1;
    }
    if (cfg->threads < 0 || cfg->threads > ML_MAX_THREADS) {
        ml_errf(err, errlen, "config: threads %d out of range (0 = all cores, up to %d)",
                (int)cfg->threads, ML_MAX_THREADS);
        return -1;
    }
    if (cfg->mode < MOELAT_MODE_PERCELL || cfg->mode > MOELAT_MODE_AUTO) {
        ml_errf(err, errlen, "config: mode %d is not percell (0), batch (1) or auto (2)",
             (int)cfg->mode);
        return -1;
    }
    if (cfg->batch_threshold < 0) {
        ml_errf(err, errlen, "config: batch_threshold %d must be >= 0", (int)cfg->batch_threshold);
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        if (cfg->chunk[i] < 0 || cfg->chunk[i] > ML_MAX_DIM) {
            ml_errf(err, errlen, "config: chunk %c = %d out of range (0 = default, up to %d)",
                 axis[i], (int)cfg->chunk[i], ML_MAX_DIM);
            return -1;
        }
    }
    if (cfg->queues < 0 || cfg->queues > ML_MAX_QUEUES) {
        ml_errf(err, errlen, "config: queues %d out of range (0 = default, 1 to %d)",
             (int)cfg->queues, ML_MAX_QUEUES);
        return -1;
    }
    if (cfg->profile != 0 && cfg->profile != 1) {
        ml_errf(err, errlen, "config: profile %d must be 0 or 1", (int)cfg->profile);
        return -1;
    }
    if (cfg->n_plugin_paths < 0 || cfg->n_plugin_paths > MOELAT_MAX_PLUGIN_PATHS) {
        ml_errf(err, errlen, "config: n_plugin_paths %d out of range (0 to %d)",
             (int)cfg->n_plugin_paths, MOELAT_MAX_PLUGIN_PATHS);
        return -1;
    }
    for (int i = 0; i < cfg->n_plugin_paths; i++) {
        if (!terminated(cfg->plugin_paths[i], sizeof cfg->plugin_paths[i]) ||
            !cfg->plugin_paths[i][0]) {
            ml_errf(err, errlen, "config: plugin path %d is empty or not terminated", i);
            return -1;
        }
    }
    return 0;
}

/* ---- JSON ---- */

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "something else";
}

/* A key handler fills msg with what was expected when it returns -1. */
typedef int (*key_fn)(json_t *v, moelat_config *c, char *msg, size_t len);

static int get_int(json_t *v, long long lo, long long hi, int32_t *out, char *msg, size_t len,
                   const char *what) {
    if (!json_is_integer(v)) {
        ml_errf(msg, len, "expected %s, found %s", what, json_type_name(v));
        return -1;
    }
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        ml_errf(msg, len, "expected %s (range %lld to %lld), found %lld", what, lo, hi, x);
        return -1;
    }
    *out = (int32_t)x;
    return 0;
}

static int get_triple(json_t *v, int32_t out[3], char *msg, size_t len) {
    if (json_is_string(v))
        return ml_parse_dims(json_string_value(v), out, msg, len);
    int32_t t[3];
    if (!json_is_array(v) || json_array_size(v) != 3) {
        if (json_is_array(v))
            ml_errf(msg, len, "expected [X, Y, Z] or \"XxYxZ\", found an array of %zu",
                 json_array_size(v));
        else
            ml_errf(msg, len, "expected [X, Y, Z] or \"XxYxZ\", found %s", json_type_name(v));
        return -1;
    }
    for (int i = 0; i < 3; i++)
        if (get_int(json_array_get(v, (size_t)i), 1, ML_MAX_DIM, &t[i], msg, len,
                    "[X, Y, Z] of positive integers") != 0)
            return -1;
    memcpy(out, t, sizeof t);
    return 0;
}

static int k_dims(json_t *v, moelat_config *c, char *msg, size_t len) {
    return get_triple(v, c->dims, msg, len);
}

static int k_chunk(json_t *v, moelat_config *c, char *msg, size_t len) {
    return get_triple(v, c->chunk, msg, len);
}

static int k_state_size(json_t *v, moelat_config *c, char *msg, size_t len) {
    return get_int(v, 1, ML_MAX_SIZE, &c->state_size, msg, len, "an integer >= 1");
}

static int k_radius_ratio(json_t *v, moelat_config *c, char *msg, size_t len) {
    if (!json_is_number(v)) {
        ml_errf(msg, len, "expected a number > 0, found %s", json_type_name(v));
        return -1;
    }
    double x = json_number_value(v);
    if (!(x >= ML_RADIUS_RATIO_MIN && x <= ML_RADIUS_RATIO_MAX)) {
        ml_errf(msg, len, "expected a number from %g to %g, found %g", ML_RADIUS_RATIO_MIN,
                ML_RADIUS_RATIO_MAX, x);
        return -1;
    }
    c->radius_ratio = x;
    return 0;
}

static int k_band_ratios(json_t *v, moelat_config *c, char *msg, size_t len) {
    double b[3];
    if (!json_is_array(v) || json_array_size(v) != 3) {
        if (json_is_array(v))
            ml_errf(msg, len, "expected an array of 3 numbers, found an array of %zu",
                 json_array_size(v));
        else
            ml_errf(msg, len, "expected an array of 3 numbers, found %s", json_type_name(v));
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        json_t *e = json_array_get(v, (size_t)i);
        if (!json_is_number(e)) {
            ml_errf(msg, len, "expected an array of 3 numbers, found %s at index %d",
                 json_type_name(e), i);
            return -1;
        }
        b[i] = json_number_value(e);
        if (!(b[i] >= ML_BAND_RATIO_MIN && b[i] <= ML_BAND_RATIO_MAX)) {
            ml_errf(msg, len, "ratio %g at index %d out of range (%g to %g)", b[i], i,
                    ML_BAND_RATIO_MIN, ML_BAND_RATIO_MAX);
            return -1;
        }
        if (i > 0 && !(b[i] > b[i - 1])) {
            ml_errf(msg, len, "ratios must be > 0 and strictly increasing (local < functional < "
                           "distant)");
            return -1;
        }
    }
    memcpy(c->band_ratio, b, sizeof b);
    return 0;
}

static int k_hidden(json_t *v, moelat_config *c, char *msg, size_t len) {
    if (!json_is_object(v)) {
        ml_errf(msg, len, "expected an object of name: size, found %s", json_type_name(v));
        return -1;
    }
    const char *name;
    json_t *val;
    json_object_foreach(v, name, val) {
        if (!valid_hidden_name(name)) {
            ml_errf(msg, len, "hidden size name '%.40s' must match [a-z0-9_]+ and be < 32 chars",
                 name);
            return -1;
        }
        int32_t x;
        char m[160];
        if (get_int(val, 1, ML_MAX_SIZE, &x, m, sizeof m, "a positive integer") != 0) {
            ml_errf(msg, len, "'%s': %s", name, m);
            return -1;
        }
        if (moelat_config_set_hidden(c, name, x) != MOELAT_OK) {
            ml_errf(msg, len, "too many hidden sizes (at most %zu)",
                 sizeof c->hidden / sizeof c->hidden[0]);
            return -1;
        }
    }
    return 0;
}

static int copy_string(json_t *v, char *dst, size_t cap, char *msg, size_t len, const char *what) {
    if (!json_is_string(v)) {
        ml_errf(msg, len, "expected %s, found %s", what, json_type_name(v));
        return -1;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n >= cap || strlen(s) != n) {
        ml_errf(msg, len, "%s must be shorter than %zu bytes, without NUL", what, cap);
        return -1;
    }
    memcpy(dst, s, n + 1);
    return 0;
}

static int k_experts(json_t *v, moelat_config *c, char *msg, size_t len) {
    if (!json_is_object(v)) {
        ml_errf(msg, len, "expected an object of band: plugin name, found %s", json_type_name(v));
        return -1;
    }
    const char *band;
    json_t *val;
    json_object_foreach(v, band, val) {
        int b = -1;
        for (int i = 0; i < MOELAT_BANDS; i++)
            if (strcmp(band, band_names[i]) == 0)
                b = i;
        if (b < 0) {
            ml_errf(msg, len, "unknown band '%.40s' (expected local, functional or distant)", band);
            return -1;
        }
        char m[160];
        if (copy_string(val, c->expert[b], sizeof c->expert[b], m, sizeof m,
                        "a plugin name string") != 0) {
            ml_errf(msg, len, "'%s': %s", band, m);
            return -1;
        }
        if (!c->expert[b][0]) {
            ml_errf(msg, len, "'%s': empty plugin name", band);
            return -1;
        }
    }
    return 0;
}

static int pick(json_t *v, const char *const *names, int n, int32_t *out, char *msg, size_t len,
                const char *what) {
    if (json_is_string(v)) {
        for (int i = 0; i < n; i++) {
            if (strcmp(json_string_value(v), names[i]) == 0) {
                *out = i;
                return 0;
            }
        }
        ml_errf(msg, len, "expected %s, found \"%.40s\"", what, json_string_value(v));
        return -1;
    }
    ml_errf(msg, len, "expected %s, found %s", what, json_type_name(v));
    return -1;
}

static int k_cnf_mode(json_t *v, moelat_config *c, char *msg, size_t len) {
    static const char *const n[] = {"euler", "lipschitz"};
    return pick(v, n, 2, &c->cnf_mode, msg, len, "\"euler\" or \"lipschitz\"");
}

static int k_mode(json_t *v, moelat_config *c, char *msg, size_t len) {
    static const char *const n[] = {"percell", "batch", "auto"};
    return pick(v, n, 3, &c->mode, msg, len, "\"percell\", \"batch\" or \"auto\"");
}

static int k_cnf_steps(json_t *v, moelat_config *c, char *msg, size_t len) {
    return get_int(v, 1, ML_MAX_CNF_STEPS, &c->cnf_steps, msg, len, "an integer");
}

static int k_seed(json_t *v, moelat_config *c, char *msg, size_t len) {
    if (!json_is_integer(v)) {
        ml_errf(msg, len, "expected a non-negative integer, found %s", json_type_name(v));
        return -1;
    }
    if (json_integer_value(v) < 0) {
        ml_errf(msg, len, "expected a non-negative integer (0 to %lld), found %lld", (long long)INT64_MAX,
             (long long)json_integer_value(v));
        return -1;
    }
    c->seed = (uint64_t)json_integer_value(v);
    return 0;
}

static int k_threads(json_t *v, moelat_config *c, char *msg, size_t len) {
    return get_int(v, 0, ML_MAX_THREADS, &c->threads, msg, len,
                   "an integer (0 = all cores)");
}

static int k_batch_threshold(json_t *v, moelat_config *c, char *msg, size_t len) {
    return get_int(v, 0, INT32_MAX, &c->batch_threshold, msg, len, "an integer >= 0");
}

static int k_queues(json_t *v, moelat_config *c, char *msg, size_t len) {
    return get_int(v, 1, ML_MAX_QUEUES, &c->queues, msg, len, "an integer from 1 to 16");
}

static int k_profile(json_t *v, moelat_config *c, char *msg, size_t len) {
    if (!json_is_boolean(v)) {
        ml_errf(msg, len, "expected true or false, found %s", json_type_name(v));
        return -1;
    }
    c->profile = json_is_true(v) ? 1 : 0;
    return 0;
}

static int k_device(json_t *v, moelat_config *c, char *msg, size_t len) {
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0) {
            ml_errf(msg, len, "a device index must be >= 0, found %lld",
                 (long long)json_integer_value(v));
            return -1;
        }
        snprintf(c->device, sizeof c->device, "%lld", (long long)json_integer_value(v));
        return 0;
    }
    return copy_string(v, c->device, sizeof c->device, msg, len,
                       "a device name string or an integer index");
}

static int k_plugin_paths(json_t *v, moelat_config *c, char *msg, size_t len) {
    if (!json_is_array(v)) {
        ml_errf(msg, len, "expected an array of strings, found %s", json_type_name(v));
        return -1;
    }
    size_t n = json_array_size(v);
    if (n > MOELAT_MAX_PLUGIN_PATHS) {
        ml_errf(msg, len, "%zu paths given, at most %d allowed", n, MOELAT_MAX_PLUGIN_PATHS);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char m[160];
        if (copy_string(json_array_get(v, i), c->plugin_paths[i], sizeof c->plugin_paths[i], m,
                        sizeof m, "a path string") != 0) {
            ml_errf(msg, len, "entry %zu: %s", i, m);
            return -1;
        }
        if (!c->plugin_paths[i][0]) {
            ml_errf(msg, len, "entry %zu: empty path", i);
            return -1;
        }
    }
    c->n_plugin_paths = (int32_t)n;
    return 0;
}

static int k_tuning(json_t *v, moelat_config *c, char *msg, size_t len) {
    return copy_string(v, c->tuning, sizeof c->tuning, msg, len, "a string \"key=value,...\"");
}

static const struct {
    const char *key;
    key_fn fn;
} keys[] = {
    {"dims", k_dims},
    {"state_size", k_state_size},
    {"radius_ratio", k_radius_ratio},
    {"band_ratios", k_band_ratios},
    {"hidden", k_hidden},
    {"experts", k_experts},
    {"cnf_mode", k_cnf_mode},
    {"cnf_steps", k_cnf_steps},
    {"seed", k_seed},
    {"threads", k_threads},
    {"mode", k_mode},
    {"batch_threshold", k_batch_threshold},
    {"chunk", k_chunk},
    {"queues", k_queues},
    {"profile", k_profile},
    {"device", k_device},
    {"plugin_paths", k_plugin_paths},
    {"tuning", k_tuning},
};

static moelat_status merge_object(json_t *root, const char *name, moelat_config *cfg, char *err,
                                  size_t errlen) {
    moelat_config work = *cfg;
    char msg[512];
    json_t *preset = json_object_get(root, "preset");
    if (preset) {
        if (!json_is_string(preset)) {
            ml_errf(err, errlen, "%s: key 'preset': expected a string, found %s", name,
                 json_type_name(preset));
            return MOELAT_ERR_INVALID;
        }
        if (moelat_config_preset(json_string_value(preset), &work, msg, sizeof msg) != MOELAT_OK) {
            ml_errf(err, errlen, "%s: key 'preset': %s", name, msg);
            return MOELAT_ERR_INVALID;
        }
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "preset") == 0)
            continue;
        key_fn fn = NULL;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (strcmp(key, keys[i].key) == 0)
                fn = keys[i].fn;
        if (!fn) {
            ml_errf(err, errlen,
                 "%s: unknown key '%.64s' (known: preset, dims, state_size, radius_ratio, "
                 "band_ratios, hidden, experts, cnf_mode, cnf_steps, seed, threads, mode, "
                 "batch_threshold, chunk, queues, profile, device, plugin_paths, tuning)",
                 name, key);
            return MOELAT_ERR_INVALID;
        }
        if (fn(val, &work, msg, sizeof msg) != 0) {
            ml_errf(err, errlen, "%s: key '%s': %s", name, key, msg);
            return MOELAT_ERR_INVALID;
        }
    }
    if (ml_config_validate(&work, msg, sizeof msg) != 0) {
        ml_errf(err, errlen, "%s: %s", name, msg);
        return MOELAT_ERR_INVALID;
    }
    *cfg = work;
    return MOELAT_OK;
}

moelat_status ml_config_load_string(const char *text, size_t len, const char *name,
                                    moelat_config *cfg, char *err, size_t errlen) {
    if (!name)
        name = "<config>";
    if (!cfg || (!text && len)) {
        ml_errf(err, errlen, "%s: no config or no text", name);
        return MOELAT_ERR_INVALID;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text ? text : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        ml_errf(err, errlen, "%s:%d:%d: JSON syntax error: %s", name, jerr.line, jerr.column,
             jerr.text);
        return MOELAT_ERR_FORMAT;
    }
    moelat_status st;
    if (!json_is_object(root)) {
        ml_errf(err, errlen, "%s: a config must be a JSON object, found %s", name,
             json_type_name(root));
        st = MOELAT_ERR_FORMAT;
    } else {
        st = merge_object(root, name, cfg, err, errlen);
    }
    json_decref(root);
    return st;
}

moelat_status moelat_config_load_json(const char *path, moelat_config *cfg, char *err,
                                      size_t errlen) {
    if (!path) {
        ml_errf(err, errlen, "config: no file name");
        return MOELAT_ERR_INVALID;
    }
    size_t size;
    FILE *fp = ml_open_regular(path, &size, err, errlen);
    if (!fp)
        return MOELAT_ERR_IO;
    char *buf = malloc(size ? size : 1);
    if (!buf) {
        ml_errf(err, errlen, "%s: out of memory reading %zu bytes", path, size);
        fclose(fp);
        return MOELAT_ERR_NOMEM;
    }
    size_t got = fread(buf, 1, size, fp);
    int bad = ferror(fp) || got != size;
    fclose(fp);
    if (bad) {
        ml_errf(err, errlen, "%s: read error", path);
        free(buf);
        return MOELAT_ERR_IO;
    }
    /* Merged in the library's layout, then written back within the
     * caller's struct_size (a key past it is refused). */
    moelat_config full;
    moelat_status s = ml_config_import(&full, cfg, err, errlen);
    if (s == MOELAT_OK)
        s = ml_config_load_string(buf, size, path, &full, err, errlen);
    if (s == MOELAT_OK && (s = ml_config_export(cfg, &full, err, errlen)) != MOELAT_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", err ? err : "");
        ml_errf(err, errlen, "%s: %s", path, why);
    }
    free(buf);
    return s;
}
