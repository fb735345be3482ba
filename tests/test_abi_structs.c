/* The versioned public structs (moelat.h, "Versioned structs") from a
 * caller built against older layouts: the structs below are the layouts
 * moelat_config and moelat_report had before they grew (config without
 * tuning; report without the routing statistics, and without the path),
 * with struct_size first. The library must fill them, read them and write
 * nothing past their end (a canary follows each); sizes below the first
 * layout or above the library's are refused naming the struct. Also the
 * queries bindings use (moelat_struct_size, moelat_status_name,
 * moelat_version) and the tuning string's escapes. Linked against the
 * shared libmoelat: the public surface only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moelat/group.h"
#include "moelat/inspect.h"
#include "moelat/moelat.h"
#include "moelat/util.h"

/* ---- The older layouts, as a caller compiled against them has them ---- */

typedef struct config_v1 {
    uint32_t struct_size;
    char preset[32];
    int32_t dims[3];
    int32_t state_size;
    double radius_ratio;
    double band_ratio[3];
    moelat_hidden_size hidden[16];
    int32_t n_hidden;
    char expert[MOELAT_BANDS][64];
    int32_t cnf_mode;
    int32_t cnf_steps;
    uint64_t seed;
    int32_t threads;
    int32_t mode;
    int32_t batch_threshold;
    int32_t chunk[3];
    int32_t queues;
    int32_t profile;
    char device[128];
    char plugin_paths[MOELAT_MAX_PLUGIN_PATHS][512];
    int32_t n_plugin_paths;
} config_v1;

#define REPORT_V1_FIELDS                                                                                   \
    uint32_t struct_size;                                                                                  \
    uint64_t steps;                                                                                        \
    uint64_t total_chunks_processed;                                                                       \
    uint64_t batch_chunks;                                                                                 \
    uint64_t percell_chunks;                                                                               \
    moelat_path_stats batch_stats;                                                                         \
    moelat_path_stats percell_stats;                                                                       \
    double speedup;                                                                                        \
    char expert_name[MOELAT_BANDS][64];                                                                    \
    uint64_t expert_calls[MOELAT_BANDS];                                                                   \
    double expert_device_ms[MOELAT_BANDS];                                                                 \
    double aggregate_device_ms;                                                                            \
    double gate_device_ms;                                                                                 \
    double precompute_device_ms;                                                                           \
    int32_t profiled;                                                                                      \
    uint64_t fallbacks;                                                                                    \
    int32_t n_fallback_reasons;                                                                            \
    char fallback_reason[MOELAT_MAX_FALLBACK_REASONS][256];                                                \
    uint64_t fallback_count[MOELAT_MAX_FALLBACK_REASONS];

typedef struct report_v1 {
    REPORT_V1_FIELDS
} report_v1;

typedef struct report_v2 {
    REPORT_V1_FIELDS
    uint64_t routed_cells;
    double gate_weight_mean[MOELAT_BANDS];
    double gate_top_share[MOELAT_BANDS];
} report_v2;

typedef struct report_v3 {
    REPORT_V1_FIELDS
    uint64_t routed_cells;
    double gate_weight_mean[MOELAT_BANDS];
    double gate_top_share[MOELAT_BANDS];
    char path[16];
    char path_reason[256];
} report_v3;

#define CANARY 0xC5
#define CANARY_BYTES 4096

/* A struct followed by a canary, filled with a pattern the library would
 * not write. */
#define GUARDED(type)                                                                                      \
    struct {                                                                                               \
        type s;                                                                                            \
        unsigned char canary[CANARY_BYTES];                                                                \
    }

static void assert_canary(const unsigned char *c, const char *what) {
    for (size_t i = 0; i < CANARY_BYTES; i++)
        if (c[i] != CANARY)
            fail_msg("%s: byte %zu past the caller's struct was written (0x%02x)", what, i, c[i]);
}

static void small_config(moelat_config *cfg) {
    char err[512];
    assert_int_equal(moelat_config_preset("debug", cfg, err, sizeof err), MOELAT_OK);
    cfg->dims[0] = 6;
    cfg->dims[1] = 5;
    cfg->dims[2] = 4;
    cfg->threads = 1;
    cfg->mode = MOELAT_MODE_PERCELL;
}

/* The old layouts' ends are where the current struct's later fields start. */
static void test_layouts_are_prefixes(void **state) {
    (void)state;
    assert_int_equal(offsetof(moelat_config, tuning), offsetof(config_v1, n_plugin_paths) + sizeof(int32_t));
    assert_true(sizeof(config_v1) >= MOELAT_CONFIG_SIZE_V1);
    assert_int_equal(sizeof(report_v1), MOELAT_REPORT_SIZE_V1);
    assert_int_equal(sizeof(report_v2), MOELAT_REPORT_SIZE_V2);
    assert_true(sizeof(report_v3) >= MOELAT_REPORT_SIZE_V3);
    assert_int_equal(offsetof(report_v3, path_reason), offsetof(moelat_report, path_reason));
    assert_int_equal(offsetof(report_v2, routed_cells), offsetof(moelat_report, routed_cells));
    assert_int_equal(offsetof(config_v1, device), offsetof(moelat_config, device));
}

static void test_old_config(void **state) {
    (void)state;
    char err[1024];
    GUARDED(config_v1) g;
    memset(&g, CANARY, sizeof g);
    g.s.struct_size = sizeof g.s;
    moelat_config *cfg = (moelat_config *)&g.s;
    small_config(cfg);
    assert_canary(g.canary, "moelat_config_preset on layout 1");
    assert_string_equal(g.s.preset, "debug");
    assert_int_equal(g.s.state_size, 24);
    assert_int_equal(g.s.struct_size, sizeof g.s);
    assert_int_equal(moelat_config_set_hidden(cfg, "h1", 10), MOELAT_OK);
    assert_int_equal(moelat_config_hidden(cfg, "h1", 0), 10);
    assert_int_equal(moelat_config_validate(cfg, err, sizeof err), MOELAT_OK);

    /* A JSON file merges within layout 1; a key past it is refused. */
    char dir[] = "/tmp/moelat-abi-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/c.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"dims\": [6, 5, 3], \"seed\": 99}", f);
    fclose(f);
    assert_int_equal(moelat_config_load_json(path, cfg, err, sizeof err), MOELAT_OK);
    assert_int_equal(g.s.dims[2], 3);
    assert_int_equal(g.s.seed, 99);
    assert_canary(g.canary, "moelat_config_load_json on layout 1");
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"tuning\": \"gate_cells=2\"}", f);
    fclose(f);
    config_v1 before = g.s;
    assert_int_equal(moelat_config_load_json(path, cfg, err, sizeof err), MOELAT_ERR_INVALID);
    assert_non_null(strstr(err, "moelat_config"));
    assert_non_null(strstr(err, "'tuning'"));
    assert_memory_equal(&before, &g.s, sizeof before);
    assert_canary(g.canary, "refused moelat_config_load_json on layout 1");

    /* A lattice from it: the later field (tuning) is at its default. */
    moelat_lattice *lat = NULL;
    assert_int_equal(moelat_lattice_create(cfg, &lat, err, sizeof err), MOELAT_OK);
    const moelat_config *in = moelat_lattice_config(lat);
    assert_int_equal(in->struct_size, sizeof(moelat_config));
    assert_string_equal(in->tuning, "");
    assert_int_equal(in->dims[2], 3);
    assert_int_equal(moelat_config_hidden(in, "h1", 0), 10);

    /* A checkpoint's config read back into layout 1. */
    assert_int_equal(moelat_step(lat, 1), MOELAT_OK);
    snprintf(path, sizeof path, "%s/ck", dir);
    assert_int_equal(moelat_save_checkpoint(lat, path), MOELAT_OK);
    GUARDED(config_v1) h;
    memset(&h, CANARY, sizeof h);
    h.s.struct_size = sizeof h.s;
    small_config((moelat_config *)&h.s);
    uint64_t step = 0;
    assert_int_equal(moelat_checkpoint_config(path, (moelat_config *)&h.s, &step, err, sizeof err), MOELAT_OK);
    assert_int_equal(step, 1);
    assert_int_equal(h.s.dims[2], 3);
    assert_int_equal(h.s.seed, 99);
    assert_canary(h.canary, "moelat_checkpoint_config on layout 1");
    moelat_lattice_destroy(lat);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_old_reports(void **state) {
    (void)state;
    char err[1024];
    moelat_config cfg = MOELAT_CONFIG_INIT;
    small_config(&cfg);
    moelat_lattice *lat = NULL;
    assert_int_equal(moelat_lattice_create(&cfg, &lat, err, sizeof err), MOELAT_OK);
    assert_int_equal(moelat_step(lat, 2), MOELAT_OK);
    moelat_report full = MOELAT_REPORT_INIT;
    assert_int_equal(moelat_get_report(lat, &full), MOELAT_OK);
    assert_int_equal(full.steps, 2);
    assert_string_equal(full.path, "percell");

    GUARDED(report_v1) a;
    memset(&a, CANARY, sizeof a);
    a.s.struct_size = sizeof a.s;
    assert_int_equal(moelat_get_report(lat, (moelat_report *)&a.s), MOELAT_OK);
    assert_canary(a.canary, "moelat_get_report into layout 1");
    assert_int_equal(a.s.struct_size, sizeof a.s);
    assert_memory_equal((const char *)&a.s + 4, (const char *)&full + 4, sizeof a.s - 4);

    GUARDED(report_v2) b;
    memset(&b, CANARY, sizeof b);
    b.s.struct_size = sizeof b.s;
    assert_int_equal(moelat_get_report(lat, (moelat_report *)&b.s), MOELAT_OK);
    assert_canary(b.canary, "moelat_get_report into layout 2");
    assert_memory_equal((const char *)&b.s + 4, (const char *)&full + 4, sizeof b.s - 4);
    assert_int_equal(b.s.routed_cells, 2 * 6 * 5 * 4);

    /* Layout 3 (up to the path): the gradient engine's counts are not
     * written into it. */
    GUARDED(report_v3) d;
    memset(&d, CANARY, sizeof d);
    d.s.struct_size = sizeof d.s;
    assert_int_equal(moelat_get_report(lat, (moelat_report *)&d.s), MOELAT_OK);
    assert_canary(d.canary, "moelat_get_report into layout 3");
    assert_string_equal(d.s.path, "percell");
    assert_memory_equal((const char *)&d.s + 4, (const char *)&full + 4, MOELAT_REPORT_SIZE_V3 - 4);

    /* Between two layouts: only the smaller one's fields are written. */
    GUARDED(report_v2) c;
    memset(&c, CANARY, sizeof c);
    c.s.struct_size = sizeof(report_v1) + 8;
    assert_int_equal(moelat_get_report(lat, (moelat_report *)&c.s), MOELAT_OK);
    const unsigned char *tail = (const unsigned char *)&c.s + sizeof(report_v1);
    for (size_t i = 0; i < sizeof c.s - sizeof(report_v1); i++)
        assert_int_equal(tail[i], CANARY);
    moelat_lattice_destroy(lat);
}

/* Sizes below the first layout or above the library's are refused, naming
 * the struct, and nothing is written. */
static void test_refused_sizes(void **state) {
    (void)state;
    char err[1024];
    moelat_config cfg = MOELAT_CONFIG_INIT;
    small_config(&cfg);
    moelat_lattice *lat = NULL;
    assert_int_equal(moelat_lattice_create(&cfg, &lat, err, sizeof err), MOELAT_OK);

    const uint32_t bad_report[] = {0, 4, (uint32_t)MOELAT_REPORT_SIZE_V1 - 1, (uint32_t)sizeof(moelat_report) + 8};
    for (size_t i = 0; i < sizeof bad_report / sizeof bad_report[0]; i++) {
        moelat_report r;
        memset(&r, CANARY, sizeof r);
        r.struct_size = bad_report[i];
        assert_int_equal(moelat_get_report(lat, &r), MOELAT_ERR_INVALID);
        assert_non_null(strstr(moelat_last_error(lat), "moelat_report"));
        assert_non_null(strstr(moelat_last_error(lat), "struct_size"));
        assert_int_equal(r.struct_size, bad_report[i]);
        const unsigned char *b = (const unsigned char *)&r;
        for (size_t k = sizeof r.struct_size; k < sizeof r; k++)
            assert_int_equal(b[k], CANARY);
    }

    const uint32_t bad_config[] = {0, (uint32_t)MOELAT_CONFIG_SIZE_V1 - 8, (uint32_t)sizeof(moelat_config) + 4,
                                   0xC5C5C5C5u};
    for (size_t i = 0; i < sizeof bad_config / sizeof bad_config[0]; i++) {
        moelat_config c = MOELAT_CONFIG_INIT;
        small_config(&c);
        c.struct_size = bad_config[i];
        moelat_config before = c;
        err[0] = '\0';
        assert_int_equal(moelat_config_preset("debug", &c, err, sizeof err), MOELAT_ERR_INVALID);
        assert_non_null(strstr(err, "moelat_config: struct_size"));
        assert_memory_equal(&before, &c, sizeof c);
        err[0] = '\0';
        moelat_lattice *l2 = NULL;
        assert_int_equal(moelat_lattice_create(&c, &l2, err, sizeof err), MOELAT_ERR_INVALID);
        assert_null(l2);
        assert_non_null(strstr(err, "moelat_config: struct_size"));
        assert_int_equal(moelat_config_validate(&c, err, sizeof err), MOELAT_ERR_INVALID);
        assert_int_equal(moelat_config_set_hidden(&c, "h1", 3), MOELAT_ERR_INVALID);
    }
    /* The message says how to set it, or that the header is newer. */
    moelat_config c = MOELAT_CONFIG_INIT;
    c.struct_size = 0;
    moelat_config_preset("debug", &c, err, sizeof err);
    assert_non_null(strstr(err, "moelat_config_init"));
    c.struct_size = sizeof c + 4;
    moelat_config_preset("debug", &c, err, sizeof err);
    assert_non_null(strstr(err, "newer"));

    moelat_device_info d;
    memset(&d, CANARY, sizeof d);
    d.struct_size = 2;
    assert_int_equal(moelat_select_device(NULL, &d, err, sizeof err), MOELAT_ERR_INVALID);
    assert_non_null(strstr(err, "moelat_device_info"));
    moelat_device_info *list = NULL;
    int n = -1;
    assert_int_equal(moelat_list_devices(&list, &n, sizeof(moelat_device_info) + 16, err, sizeof err),
                     MOELAT_ERR_INVALID);
    assert_null(list);
    assert_non_null(strstr(err, "moelat_device_info"));
    moelat_lattice_destroy(lat);
}

/* moelat_list_devices lays its array out in the caller's element size. */
static void test_device_list(void **state) {
    (void)state;
    char err[1024];
    moelat_device_info *list = NULL;
    int n = 0;
    if (moelat_list_devices(&list, &n, sizeof *list, err, sizeof err) != MOELAT_OK || n == 0) {
        free(list);
        skip();
    }
    for (int i = 0; i < n; i++) {
        assert_int_equal(list[i].struct_size, sizeof *list);
        assert_int_equal(list[i].index, i);
    }
    moelat_device_info one = MOELAT_DEVICE_INFO_INIT;
    assert_int_equal(moelat_select_device("0", &one, err, sizeof err), MOELAT_OK);
    assert_string_equal(one.name, list[0].name);
    free(list);
}

static void test_slab_info(void **state) {
    (void)state;
    char err[1024];
    moelat_config cfg = MOELAT_CONFIG_INIT;
    small_config(&cfg);
    moelat_device_info one = MOELAT_DEVICE_INFO_INIT;
    if (moelat_select_device("0", &one, err, sizeof err) != MOELAT_OK)
        skip();
    const char *devices[] = {"0", "0"};
    moelat_group *g = NULL;
    assert_int_equal(moelat_group_create(&cfg, devices, 2, &g, err, sizeof err), MOELAT_OK);
    GUARDED(moelat_slab_info) s;
    memset(&s, CANARY, sizeof s);
    moelat_slab_info_init(&s.s);
    assert_int_equal(moelat_group_slab_info(g, 1, &s.s), MOELAT_OK);
    assert_canary(s.canary, "moelat_group_slab_info");
    assert_int_equal(s.s.z1, 4);
    assert_int_equal(s.s.struct_size, sizeof s.s);
    s.s.struct_size = 3;
    assert_int_equal(moelat_group_slab_info(g, 1, &s.s), MOELAT_ERR_INVALID);
    assert_non_null(strstr(moelat_group_last_error(g), "moelat_slab_info"));
    moelat_group_destroy(g);
}

static void test_queries(void **state) {
    (void)state;
    assert_int_equal(moelat_struct_size("moelat_config"), sizeof(moelat_config));
    assert_int_equal(moelat_struct_size("moelat_report"), sizeof(moelat_report));
    assert_int_equal(moelat_struct_size("moelat_device_info"), sizeof(moelat_device_info));
    assert_int_equal(moelat_struct_size("moelat_slab_info"), sizeof(moelat_slab_info));
    assert_int_equal(moelat_struct_size("moelat_path_stats"), sizeof(moelat_path_stats));
    assert_int_equal(moelat_struct_size("moelat_hidden_size"), sizeof(moelat_hidden_size));
    assert_int_equal(moelat_struct_size("moelat_nothing"), 0);
    assert_int_equal(moelat_struct_size(NULL), 0);
    static const struct {
        int status;
        const char *name;
    } want[] = {{MOELAT_OK, "MOELAT_OK"},
                {MOELAT_ERR_INVALID, "MOELAT_ERR_INVALID"},
                {MOELAT_ERR_IO, "MOELAT_ERR_IO"},
                {MOELAT_ERR_FORMAT, "MOELAT_ERR_FORMAT"},
                {MOELAT_ERR_NOMEM, "MOELAT_ERR_NOMEM"},
                {MOELAT_ERR_DEVICE, "MOELAT_ERR_DEVICE"},
                {MOELAT_ERR_PLUGIN, "MOELAT_ERR_PLUGIN"},
                {MOELAT_ERR_NONFINITE, "MOELAT_ERR_NONFINITE"},
                {MOELAT_ERR_MISMATCH, "MOELAT_ERR_MISMATCH"}};
    int n = (int)(sizeof want / sizeof want[0]);
    for (int i = 0; i < n; i++)
        assert_string_equal(moelat_status_name(want[i].status), want[i].name);
    assert_null(moelat_status_name(n));
    assert_null(moelat_status_name(-1));
    const char *v = moelat_version();
    printf("# %s\n", v);
    assert_non_null(strstr(v, MOELAT_VERSION));
    char abi[64];
    snprintf(abi, sizeof abi, "ABI %d (libmoelat.so.%d)", MOELAT_ABI_VERSION, MOELAT_ABI_VERSION);
    assert_non_null(strstr(v, abi));
    assert_non_null(strstr(v, "struct_size"));
}

/* A value is one value: commas and backslashes in it are escaped, and the
 * text after an escaped comma never becomes a key of its own. */
static void test_tuning_escapes(void **state) {
    (void)state;
    char t[512] = "", v[512], err[512];
    assert_int_equal(moelat_tuning_append(t, sizeof t, "cl_options", "-DX=1,upgrade_check=off"), MOELAT_OK);
    assert_string_equal(t, "cl_options=-DX=1\\,upgrade_check=off");
    assert_int_equal(moelat_tuning_append(t, sizeof t, "gate_cells", "2"), MOELAT_OK);
    assert_int_equal(moelat_tuning_check(t, err, sizeof err), MOELAT_OK);
    assert_int_equal(moelat_tuning_value(t, "upgrade_check", v, sizeof v), 0);
    assert_int_equal(moelat_tuning_value(t, "cl_options", v, sizeof v), 1);
    assert_string_equal(v, "-DX=1,upgrade_check=off");
    assert_int_equal(moelat_tuning_value(t, "gate_cells", v, sizeof v), 1);
    assert_string_equal(v, "2");

    char u[512] = "";
    assert_int_equal(moelat_tuning_append(u, sizeof u, "cl_options", "-DA=1,-DB=2 -I C:\\dir\\"), MOELAT_OK);
    assert_int_equal(moelat_tuning_check(u, err, sizeof err), MOELAT_OK);
    assert_int_equal(moelat_tuning_value(u, "cl_options", v, sizeof v), 1);
    assert_string_equal(v, "-DA=1,-DB=2 -I C:\\dir\\");
    /* Unescaped, the comma still separates entries, as before. */
    assert_int_equal(moelat_tuning_check("cl_options=-DA=1,-DB=2", err, sizeof err), MOELAT_ERR_INVALID);
    assert_non_null(strstr(err, "-DB"));
    /* A later setting wins; a lone backslash is itself. */
    assert_int_equal(moelat_tuning_value("gate_cells=1,gate_cells=4", "gate_cells", v, sizeof v), 1);
    assert_string_equal(v, "4");
    assert_int_equal(moelat_tuning_value("cl_options=a\\b", "cl_options", v, sizeof v), 1);
    assert_string_equal(v, "a\\b");
    /* What does not fit, or is no key, is refused and leaves buf alone. */
    char small[24] = "gate_cells=2";
    assert_int_equal(moelat_tuning_append(small, sizeof small, "cl_options", "-DLONG=1"), MOELAT_ERR_INVALID);
    assert_string_equal(small, "gate_cells=2");
    assert_int_equal(moelat_tuning_append(small, sizeof small, "a=b", "1"), MOELAT_ERR_INVALID);
    assert_int_equal(moelat_tuning_append(small, sizeof small, "", "1"), MOELAT_ERR_INVALID);
    assert_string_equal(small, "gate_cells=2");

    /* A lattice takes the escaped value whole. */
    moelat_config cfg = MOELAT_CONFIG_INIT;
    small_config(&cfg);
    snprintf(cfg.tuning, sizeof cfg.tuning, "%s", t);
    moelat_lattice *lat = NULL;
    assert_int_equal(moelat_lattice_create(&cfg, &lat, err, sizeof err), MOELAT_OK);
    moelat_lattice_destroy(lat);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts_are_prefixes), cmocka_unit_test(test_old_config),
        cmocka_unit_test(test_old_reports),          cmocka_unit_test(test_refused_sizes),
        cmocka_unit_test(test_device_list),          cmocka_unit_test(test_slab_info),
        cmocka_unit_test(test_queries),              cmocka_unit_test(test_tuning_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
