/* NumPy .npy reading and writing for float32 C-order arrays (format
 * versions 1.0 to 3.0 on read, 1.0 on write). */
#ifndef MOELAT_NPY_H
#define MOELAT_NPY_H

#include <stddef.h>
#include <stdint.h>

/* Reads a float32 array. On success *data is malloc'd, shape[0..*ndim) is
 * filled. Big-endian, other dtypes, Fortran order, a truncated file or a
 * bad header are errors naming the file and what was found. */
int npy_read(const char *path, float **data, int *ndim, int64_t shape[8], char *err,
             size_t errlen);
/* Same checks on a file already in memory; `name` stands for the path in
 * messages (used by the fuzzer; npy_read streams the data instead). */
int npy_read_mem(const void *buf, size_t len, const char *name, float **data, int *ndim,
                 int64_t shape[8], char *err, size_t errlen);

/* Reads and checks the shape against expect[0..ndim); the error message
 * gives both the expected and the found shape and dtype. A NaN or Inf in
 * the data is refused, naming the element (states and inputs are read
 * through here). */
int npy_read_expect(const char *path, float *dst, int ndim, const int64_t *expect, char *err,
                    size_t errlen);

/* Writes atomically (temporary file, fsync, rename). */
int npy_write(const char *path, const float *data, int ndim, const int64_t *shape, char *err,
              size_t errlen);

#endif
