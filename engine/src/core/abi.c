/* Versioned public structs, status names and the library's version
 * (moelat.h). Fields are only appended, so every layout of a struct is a
 * prefix of the next: a caller's struct_size picks how much of the
 * library's struct it holds. */
#include "core/abi.h"

#include <stdio.h>
#include <string.h>

#include "base/file_util.h"
#include "moelat/grad.h"
#include "moelat/optim.h"
#include "moelat/train.h"
#include "moelat/group.h"
#include "moelat/inspect.h"

typedef struct abi_layouts {
    const char *name;
    const char *init; /* how a caller sets struct_size */
    size_t size[4];   /* the end of each layout, ascending; the last is the library's */
    const char *added[4]; /* the first field of each layout after the first */
    int n;
} abi_layouts;

static const abi_layouts k_layouts[ML_ABI_COUNT] = {
    [ML_ABI_CONFIG] = {"moelat_config", "MOELAT_CONFIG_INIT or moelat_config_init()",
                       {MOELAT_CONFIG_SIZE_V1, sizeof(moelat_config)}, {NULL, "tuning"}, 2},
    [ML_ABI_REPORT] = {"moelat_report", "MOELAT_REPORT_INIT or moelat_report_init()",
                       {MOELAT_REPORT_SIZE_V1, MOELAT_REPORT_SIZE_V2, MOELAT_REPORT_SIZE_V3, sizeof(moelat_report)},
                       {NULL, "routed_cells", "path", "grad_builds"}, 4},
    [ML_ABI_DEVICE_INFO] = {"moelat_device_info", "MOELAT_DEVICE_INFO_INIT or moelat_device_info_init()",
                            {sizeof(moelat_device_info)}, {NULL}, 1},
    [ML_ABI_SLAB_INFO] = {"moelat_slab_info", "MOELAT_SLAB_INFO_INIT or moelat_slab_info_init()",
                          {sizeof(moelat_slab_info)}, {NULL}, 1},
};

size_t ml_abi_size(ml_abi_struct which, uint32_t struct_size, char *err, size_t errlen) {
    const abi_layouts *l = &k_layouts[which];
    if (struct_size < l->size[0]) {
        ml_errf(err, errlen,
                "%s: struct_size %u is below its first layout (%zu bytes): set it with %s before the call",
                l->name, (unsigned)struct_size, l->size[0], l->init);
        return 0;
    }
    if (struct_size > l->size[l->n - 1]) {
        ml_errf(err, errlen,
                "%s: struct_size %u is above this library's layout (%zu bytes): the caller was built "
                "against a newer moelat header than this libmoelat (%s)",
                l->name, (unsigned)struct_size, l->size[l->n - 1], moelat_version());
        return 0;
    }
    size_t n = l->size[0];
    for (int i = 1; i < l->n; i++)
        if (l->size[i] <= struct_size)
            n = l->size[i];
    return n;
}

void ml_abi_export(void *dst, const void *src, size_t n) {
    uint32_t keep;
    memcpy(&keep, dst, sizeof keep);
    memcpy(dst, src, n);
    memcpy(dst, &keep, sizeof keep);
}

moelat_status ml_config_import(moelat_config *full, const moelat_config *cfg, char *err, size_t errlen) {
    if (!cfg) {
        ml_errf(err, errlen, "moelat_config: no config");
        return MOELAT_ERR_INVALID;
    }
    size_t n = ml_abi_size(ML_ABI_CONFIG, cfg->struct_size, err, errlen);
    if (!n)
        return MOELAT_ERR_INVALID;
    memset(full, 0, sizeof *full);
    memcpy(full, cfg, n);
    full->struct_size = (uint32_t)sizeof *full;
    return MOELAT_OK;
}

moelat_status ml_config_export(moelat_config *cfg, const moelat_config *full, char *err, size_t errlen) {
    size_t n = ml_abi_size(ML_ABI_CONFIG, cfg->struct_size, err, errlen);
    if (!n)
        return MOELAT_ERR_INVALID;
    const abi_layouts *l = &k_layouts[ML_ABI_CONFIG];
    const unsigned char *p = (const unsigned char *)full;
    for (size_t i = n; i < sizeof *full; i++)
        if (p[i]) {
            const char *field = "a later field";
            for (int k = 1; k < l->n; k++)
                if (l->size[k - 1] <= i)
                    field = l->added[k];
            ml_errf(err, errlen, "moelat_config: struct_size %u ends before '%s', which this config sets",
                    (unsigned)cfg->struct_size, field);
            return MOELAT_ERR_INVALID;
        }
    ml_abi_export(cfg, full, n);
    return MOELAT_OK;
}

uint32_t moelat_struct_size(const char *name) {
    static const struct {
        const char *name;
        size_t size;
    } k_sizes[] = {
        {"moelat_config", sizeof(moelat_config)},
        {"moelat_report", sizeof(moelat_report)},
        {"moelat_device_info", sizeof(moelat_device_info)},
        {"moelat_slab_info", sizeof(moelat_slab_info)},
        {"moelat_grad_options", sizeof(moelat_grad_options)},
        {"moelat_hidden_size", sizeof(moelat_hidden_size)},
        {"moelat_path_stats", sizeof(moelat_path_stats)},
        {"moelat_optimizer_config", sizeof(moelat_optimizer_config)},
        {"moelat_train_params", sizeof(moelat_train_params)},
        {"moelat_train_summary", sizeof(moelat_train_summary)},
        {"moelat_train_point", sizeof(moelat_train_point)},
        {"moelat_train_event", sizeof(moelat_train_event)},
    };
    for (size_t i = 0; name && i < sizeof k_sizes / sizeof k_sizes[0]; i++)
        if (strcmp(name, k_sizes[i].name) == 0)
            return (uint32_t)k_sizes[i].size;
    return 0;
}

const char *moelat_status_name(int status) {
    static const char *const k_names[] = {
        [MOELAT_OK] = "MOELAT_OK",
        [MOELAT_ERR_INVALID] = "MOELAT_ERR_INVALID",
        [MOELAT_ERR_IO] = "MOELAT_ERR_IO",
        [MOELAT_ERR_FORMAT] = "MOELAT_ERR_FORMAT",
        [MOELAT_ERR_NOMEM] = "MOELAT_ERR_NOMEM",
        [MOELAT_ERR_DEVICE] = "MOELAT_ERR_DEVICE",
        [MOELAT_ERR_PLUGIN] = "MOELAT_ERR_PLUGIN",
        [MOELAT_ERR_NONFINITE] = "MOELAT_ERR_NONFINITE",
        [MOELAT_ERR_MISMATCH] = "MOELAT_ERR_MISMATCH",
    };
    if (status < 0 || (size_t)status >= sizeof k_names / sizeof k_names[0])
        return NULL;
    return k_names[status];
}

#define ML_STR2(x) #x
#define ML_STR(x) ML_STR2(x)

const char *moelat_version(void) {
    return "moelat " MOELAT_VERSION ", ABI " ML_STR(MOELAT_ABI_VERSION) " (libmoelat.so." ML_STR(
        MOELAT_ABI_VERSION) "): moelat_config, moelat_report, moelat_device_info and moelat_slab_info begin "
                            "with uint32_t struct_size (set by *_INIT or *_init()) and the library reads and "
                            "writes only the fields within it (a smaller, older layout keeps working); "
                            "moelat_list_devices takes the caller's element size; new moelat_version, "
                            "moelat_struct_size, moelat_status_name, moelat_tuning_check, moelat_tuning_append "
                            "and moelat_tuning_value; in tuning strings '\\,' and '\\\\' escape a comma and a "
                            "backslash inside a value. ABI 0: the unversioned structs.";
}
