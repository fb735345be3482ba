/* libFuzzer target: the safetensors reader on arbitrary bytes. A read either
 * fails with a message naming the input or yields tensors that are
 * consistent (shape matches numel, names unique, data readable). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f;
    char err[512];
    if (st_read_mem(data, size, "fuzz-input", &f, err, sizeof err) != 0) {
        if (strncmp(err, "fuzz-input: ", 12) != 0)
            __builtin_trap();
        return 0;
    }
    size_t total = 0;
    uint32_t mix = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++)
            numel *= (size_t)t->shape[d];
        if (numel != t->numel || st_find(&f, t->name) != t || !t->data)
            __builtin_trap();
        for (size_t k = 0; k < t->numel; k++) {
            uint32_t u;
            memcpy(&u, &t->data[k], 4);
            mix ^= u;
        }
        total += t->numel * 4;
    }
    /* mix keeps the reads alive; the bits can be anything. */
    if (total + 8 > size || (mix == 0x9e3779b9u && total == 0))
        __builtin_trap();
    st_free(&f);
    return 0;
}
