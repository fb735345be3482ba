/* libFuzzer target: config JSON merging and "XxYxZ" parsing. A merge that
 * succeeds must give a config that passes validation; one that fails must
 * leave the config untouched. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include"core/config_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    moelat_config cfg = MOELAT_CONFIG_INIT, before = MOELAT_CONFIG_INIT;
    char err[1024];
    if (moelat_config_preset("debug", &cfg, err, sizeof err) != MOELAT_OK)
        __builtin_trap();
    before = cfg;
    moelat_status st =
        ml_config_load_string((const char *)data, size, "fuzz-input", &cfg, err, sizeof err);
    if (st == MOELAT_OK) {
        if (ml_config_validate(&cfg, err, sizeof err) != 0)
            __builtin_trap();
        double r = moelat_config_radius(&cfg);
        if (!(r >= 1.0 && r <= 100.0))
            __builtin_trap();
    } else {
        if (memcmp(&cfg, &before, sizeof cfg) != 0 || strncmp(err, "fuzz-input", 10) != 0)
            __builtin_trap();
    }

    char s[64];
    size_t n = size < sizeof s - 1 ? size : sizeof s - 1;
    memcpy(s, data, n);
    s[n] = '\0';
    int32_t dims[3] = {0, 0, 0};
    if (ml_parse_dims(s, dims, err, sizeof err) == 0 && (dims[0] < 1 || dims[1] < 1 || dims[2] < 1))
        __builtin_trap();
    return 0;
}
