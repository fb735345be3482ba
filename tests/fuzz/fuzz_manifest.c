/* libFuzzer target: the checkpoint manifest parser on arbitrary bytes. A
 * parse fails with a message naming the input, or yields plain file names
 * inside the directory, and then writing the manifest back and parsing it
 * again gives the same fields (so the self-checksum is computed the same
 * way on both sides). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include"io/ckpt_manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int plain_name(const char *s, int may_be_empty) {
    if (!*s)
        return may_be_empty;
    return !strchr(s, '/') && s[0] != '.';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ckpt_manifest m, again;
    char err[1024];
    if (ckpt_manifest_parse((const char *)data, size, "fuzz-input", &m, err, sizeof err) != 0) {
        if (strncmp(err, "fuzz-input", 10) != 0)
            __builtin_trap();
        return 0;
    }
    if (!plain_name(m.config, 0) || !plain_name(m.weights, 0) || !plain_name(m.states, 0) ||
        !plain_name(m.input, 1))
        __builtin_trap();
    json_t *o = ckpt_manifest_json(&m, "fuzz");
    char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    json_decref(o);
    if (!text)
        return 0; /* out of memory */
    if (ckpt_manifest_parse(text, strlen(text), "fuzz-again", &again, err, sizeof err) != 0)
        __builtin_trap();
    free(text);
    /* The generation is written but not read back (it only orders saves). */
    again.gen = m.gen;
    if (memcmp(&m, &again, sizeof m) != 0)
        __builtin_trap();
    return 0;
}
