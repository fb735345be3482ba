/* Small helpers shared by the file readers and writers (npy.c,
 * safetensors.c, config.c). */
#ifndef MOELAT_FILE_UTIL_H
#define MOELAT_FILE_UTIL_H

#include <stddef.h>
#include <stdio.h>

/* printf into err (when err is non-NULL and errlen > 0). */
void ml_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

int ml_host_is_big_endian(void);
/* Reverses the byte order of count 4-byte values in place. */
void ml_swap32(void *p, size_t count);

/* Opens a regular file for reading, without blocking on a FIFO; on failure
 * writes "<path>: cannot open: <reason>" or "<path>: is a FIFO, not a
 * regular file" into err and returns NULL. *size gets the file's size. */
FILE *ml_open_regular(const char *path, size_t *size, char *err, size_t errlen);
/* A whole regular file, NUL-terminated (malloc'd); NULL with err set. */
char *ml_read_regular(const char *path, size_t *len, char *err, size_t errlen);

/* "a directory", "a FIFO", ... for an st_mode. */
const char *ml_file_type_name(unsigned mode);

#endif
