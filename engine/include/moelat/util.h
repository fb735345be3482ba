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
 * creating anything (struct_size included); the first problem goes to err. */
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

/* ---- Tuning strings ("key=value,...", moelat_config.tuning) ----------
 * A value runs to the next comma that is not escaped: inside a value '\,'
 * stands for a comma and '\\' for a backslash (any other backslash is
 * itself). A key given twice takes its last value. */

/* Checks a tuning string as moelat_lattice_create does: every key known,
 * every value in range; the first problem goes to err. */
MOELAT_API moelat_status moelat_tuning_check(const char *tuning, char *err, size_t errlen);
/* Appends key=value to the tuning string in buf (cap bytes, holding a
 * string), with a comma before it when buf is not empty and the value's
 * commas and backslashes escaped, so that the whole value, and nothing
 * else, is key's. MOELAT_ERR_INVALID (buf unchanged) when it does not fit
 * or key is empty or holds '=', ',' or '\'. */
MOELAT_API moelat_status moelat_tuning_append(char *buf, size_t cap, const char *key, const char *value);
/* The value of key in tuning (its last setting), unescaped, into buf (cap
 * bytes, cut to fit): 1 when tuning sets key, else 0 (buf ""). */
MOELAT_API int moelat_tuning_value(const char *tuning, const char *key, char *buf, size_t cap);

/* Ranges of the config's numeric values, checked when a config file or
 * option is parsed and by moelat_config_validate (README, "Files and
 * limits"). The radius is clamped to [1, 100] cells by the model, so a
 * ratio outside these bounds could only be clamped; the band ratios bound
 * the stencil's half-width, ceil(distant ratio * r), to 400 cells. */
#define MOELAT_RADIUS_RATIO_MIN 1e-6
#define MOELAT_RADIUS_RATIO_MAX 100.0
#define MOELAT_BAND_RATIO_MIN 1e-6
#define MOELAT_BAND_RATIO_MAX 4.0
#define MOELAT_MAX_CNF_STEPS 1000
#define MOELAT_MAX_THREADS 1024

/* Whether path can be read as an input, as every loader reads one: opened
 * without blocking (a FIFO never hangs), it must be a regular file. */
MOELAT_API moelat_status moelat_file_check_input(const char *path, char *err, size_t errlen);
/* Whether a save to path would be allowed, writing nothing: saves replace
 * only regular files (a device, FIFO, socket or directory is refused with
 * its type named), refuse read-only ones, write symlinks through to their
 * target, and need a writable directory. */
MOELAT_API moelat_status moelat_file_check_output(const char *path, char *err, size_t errlen);
/* Whether saves into directory dir would be allowed, writing nothing: dir,
 * or the nearest ancestor that exists (a save creates the rest), must be a
 * writable directory; when dir exists and manifest is not NULL, dir/manifest
 * must pass moelat_file_check_output. */
MOELAT_API moelat_status moelat_file_check_output_dir(const char *dir, const char *manifest, char *err,
                                                      size_t errlen);
/* "a FIFO", "a directory", ... for a stat st_mode. */
MOELAT_API const char *moelat_file_type_name(unsigned mode);

#ifdef __cplusplus
}
#endif

#endif /* MOELAT_UTIL_H */
