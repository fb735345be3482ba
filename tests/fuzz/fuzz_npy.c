/* libFuzzer target: the .npy reader on arbitrary bytes. A read either fails
 * with a message naming the input or yields exactly shape-product floats. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    float *v = NULL;
    int ndim = -1;
    int64_t shape[8];
    char err[512];
    if (npy_read_mem(data, size, "fuzz-input", &v, &ndim, shape, err, sizeof err) != 0) {
        if (v || strncmp(err, "fuzz-input: ", 12) != 0)
            __builtin_trap();
        return 0;
    }
    if (!v || ndim < 0 || ndim > 8)
        __builtin_trap();
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            __builtin_trap();
        numel *= (size_t)shape[d];
    }
    if (numel * 4 > size)
        __builtin_trap();
    /* The data must be exactly the file's last numel*4 bytes. */
    if (numel && memcmp(v, data + size - numel * 4, numel * 4) != 0)
        __builtin_trap();
    free(v);
    return 0;
}
