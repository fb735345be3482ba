/* safetensors reading and writing (float32 only, which is all the engine
 * stores). Format: 8-byte little-endian header length, a JSON header
 * {"name": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}, ...,
 *  "__metadata__": {...}}, then the data. */
#ifndef MOELAT_SAFETENSORS_H
#define MOELAT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_tensor {
    char name[192];
    int ndim;
    int64_t shape[8];
    float *data;     /* numel floats; owned by the st_file */
    size_t numel;
} st_tensor;

typedef struct st_file {
    st_tensor *tensors;
    int n_tensors;
} st_file;

/* Reads a whole file. Every malformed case (truncated, header not JSON,
 * dtype other than F32, offsets out of range or overlapping, shape not
 * matching the byte count, duplicate names) is an error whose message
 * names the file and, where it applies, the tensor. Returns 0, -1 for
 * such a file, or -2 when it could not be read at all. */
int st_read(const char *path, st_file *out, char *err, size_t errlen);
/* Same checks on a file already in memory; `name` stands for the path in
 * messages. st_read uses it, and so does the fuzzer. */
int st_read_mem(const void *buf, size_t len, const char *name, st_file *out, char *err,
                size_t errlen);
const st_tensor *st_find(const st_file *f, const char *name);
void st_free(st_file *f);

/* Writes tensors in the given order; the write is atomic (temporary file in
 * the same directory, fsync, rename). Returns 0 or -1. */
int st_write(const char *path, const st_tensor *tensors, int n, char *err, size_t errlen);

#endif
