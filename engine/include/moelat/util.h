/*
 * Helpers of the engine's own readers that tools share: lattice sizes,
 * config checks and NumPy .npy files of float32.
 */
#ifndef MOELAT_UTIL_H
#define MOELAT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "moelat/moelat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parses "XxYxZ" (three positive integers, 'x' or 'X' between them). */
MOELAT_API moelat_status moelat_parse_dims(const char *s, int32_t out[3], char *err, size_t errlen);

/* Checks a complete config as moelat_lattice_create does, without
 * creating anything; the first problem goes to err. */
MOELAT_API moelat_status moelat_config_validate(const moelat_config *cfg, char *err, size_t errlen);

/* Reads a float32 C-order .npy file whose shape must equal expect (ndim
 * dimensions) into dst. */
MOELAT_API moelat_status moelat_npy_read(const char *path, float *dst, int ndim, const int64_t *expect, char *err,
                                         size_t errlen);
/* Writes a float32 C-order .npy file atomically (temporary file, fsync,
 * rename). */
MOELAT_API moelat_status moelat_npy_write(const char *path, const float *data, int ndim, const int64_t *shape,
                                          char *err, size_t errlen);

/* Reads a float32 C-order .npy file of any shape (at most 8 dimensions):
 * *data (free() it) holds the values, shape[0..*ndim) the shape. */
MOELAT_API moelat_status moelat_npy_load(const char *path, float **data, int *ndim, int64_t shape[8], char *err,
                                         size_t errlen);
/* Writes len bytes to path atomically (temporary file beside it, fsync,
 * rename), under the engine's rules for saves. */
MOELAT_API moelat_status moelat_write_file_atomic(const char *path, const void *data, size_t len, char *err,
                                                  size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* MOELAT_UTIL_H */
