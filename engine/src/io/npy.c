/* .npy reader and writer for float32 C-order arrays. The header is a Python
 * dict literal; it is parsed here by a small strict parser instead of being
 * pattern-matched, so reordered keys, trailing commas, either quote style
 * and Python 2 "3L" integers are read, and anything else is reported. The
 * file reader streams the data straight into its destination (state files
 * can be hundreds of MB); the header logic is shared with npy_read_mem. */
#include"base/file_util.h"
#include "io/npy.h"

#include"base/atomic_file.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_MAX_DIMS 8
#define NPY_ALIGN 64

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

typedef struct npy_info {
    size_t data_offset; /* prefix + header */
    char descr[32];
    int fortran;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    uint64_t nbytes;    /* numel * 4, saturated at UINT64_MAX */
} npy_info;

static void format_shape(char *buf, size_t len, const int64_t *shape, int ndim) {
    size_t used = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (ndim == 1 && used < len)
        used += (size_t)snprintf(buf + used, len - used, ",");
    if (used < len)
        snprintf(buf + used, len - used, ")");
}

/* Decodes the magic, version and header length from the first bytes.
 * Returns the prefix size (10 or 12), or -1. */
static int parse_prefix(const unsigned char *p, size_t avail, const char *name, size_t *hlen,
                        char *err, size_t errlen) {
    if (avail < 10 || memcmp(p, npy_magic, 6) != 0) {
        ml_errf(err, errlen, "%s: not a .npy file (bad magic, expected \\x93NUMPY)", name);
        return -1;
    }
    int major = p[6], minor = p[7];
    if (major < 1 || major > 3 || minor != 0) {
        ml_errf(err, errlen, "%s: unsupported .npy format version %d.%d (expected 1.0, 2.0 or 3.0)",
             name, major, minor);
        return -1;
    }
    if (major == 1) {
        *hlen = (size_t)p[8] | ((size_t)p[9] << 8);
        return 10;
    }
    if (avail < 12) {
        ml_errf(err, errlen, "%s: truncated .npy header", name);
        return -1;
    }
    *hlen = (size_t)p[8] | ((size_t)p[9] << 8) | ((size_t)p[10] << 16) | ((size_t)p[11] << 24);
    return 12;
}

/* Cursor over the header text. */
typedef struct cur {
    const char *s, *end;
} cur;

static void skip_ws(cur *c) {
    while (c->s < c->end && (*c->s == ' ' || *c->s == '\t' || *c->s == '\n' || *c->s == '\r'))
        c->s++;
}

static int eat(cur *c, char ch) {
    skip_ws(c);
    if (c->s < c->end && *c->s == ch) {
        c->s++;
        return 1;
    }
    return 0;
}

/* A Python string literal without escapes (none occur in valid headers). */
static int parse_str(cur *c, char *out, size_t outlen) {
    skip_ws(c);
    if (c->s >= c->end || (*c->s != '\'' && *c->s != '"'))
        return -1;
    char q = *c->s++;
    size_t n = 0;
    while (c->s < c->end && *c->s != q) {
        if (*c->s == '\\' || *c->s == '\n' || *c->s == '\0')
            return -1;
        if (n + 1 < outlen)
            out[n] = *c->s;
        n++;
        c->s++;
    }
    if (c->s >= c->end)
        return -1;
    c->s++;
    if (n + 1 > outlen)
        return -2;
    out[n] = '\0';
    return 0;
}

static int parse_word(cur *c, const char *w) {
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->s) >= n && memcmp(c->s, w, n) == 0) {
        c->s += n;
        return 1;
    }
    return 0;
}

static int parse_shape(cur *c, npy_info *info, const char *name, char *err, size_t errlen) {
    if (!eat(c, '(')) {
        ml_errf(err, errlen, "%s: header 'shape' is not a tuple", name);
        return -1;
    }
    info->ndim = 0;
    for (;;) {
        if (eat(c, ')'))
            return 0;
        skip_ws(c);
        if (c->s < c->end && *c->s == '-') {
            ml_errf(err, errlen, "%s: header 'shape' has a negative dimension", name);
            return -1;
        }
        if (c->s >= c->end || *c->s < '0' || *c->s > '9') {
            ml_errf(err, errlen, "%s: header 'shape' holds something other than integers", name);
            return -1;
        }
        int64_t v = 0;
        while (c->s < c->end && *c->s >= '0' && *c->s <= '9') {
            if (v > (INT64_MAX - 9) / 10) {
                ml_errf(err, errlen, "%s: header 'shape' has a dimension too large", name);
                return -1;
            }
            v = v * 10 + (*c->s++ - '0');
        }
        if (c->s < c->end && *c->s == 'L')
            c->s++;
        if (info->ndim == NPY_MAX_DIMS) {
            ml_errf(err, errlen, "%s: array has more than %d dimensions", name, NPY_MAX_DIMS);
            return -1;
        }
        info->shape[info->ndim++] = v;
        if (eat(c, ','))
            continue;
        /* "(3)" is the integer 3 in Python, not a 1-tuple. */
        if (info->ndim > 1 && eat(c, ')'))
            return 0;
        ml_errf(err, errlen, "%s: header 'shape' is not a valid tuple", name);
        return -1;
    }
}

static int parse_dict(const char *text, size_t len, const char *name, npy_info *info, char *err,
                      size_t errlen) {
    cur c = {text, text + len};
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0;
    if (!eat(&c, '{')) {
        ml_errf(err, errlen, "%s: .npy header is not a dict literal", name);
        return -1;
    }
    for (;;) {
        if (eat(&c, '}'))
            break;
        char key[32];
        if (parse_str(&c, key, sizeof key) != 0 || !eat(&c, ':')) {
            ml_errf(err, errlen, "%s: malformed .npy header dict", name);
            return -1;
        }
        int *seen;
        if (strcmp(key, "descr") == 0) {
            seen = &seen_descr;
            int r = parse_str(&c, info->descr, sizeof info->descr);
            if (r == -2) {
                ml_errf(err, errlen, "%s: dtype descr is too long to be float32", name);
                return -1;
            }
            if (r != 0) {
                ml_errf(err, errlen,
                     "%s: header 'descr' is not a plain dtype string (structured dtypes are "
                     "not supported; expected '<f4')",
                     name);
                return -1;
            }
        } else if (strcmp(key, "fortran_order") == 0) {
            seen = &seen_fortran;
            if (parse_word(&c, "True")) {
                info->fortran = 1;
            } else if (parse_word(&c, "False")) {
                info->fortran = 0;
            } else {
                ml_errf(err, errlen, "%s: header 'fortran_order' is neither True nor False", name);
                return -1;
            }
        } else if (strcmp(key, "shape") == 0) {
            seen = &seen_shape;
            if (parse_shape(&c, info, name, err, errlen) != 0)
                return -1;
        } else {
            ml_errf(err, errlen, "%s: unexpected key '%s' in .npy header", name, key);
            return -1;
        }
        if (*seen) {
            ml_errf(err, errlen, "%s: key '%s' appears twice in .npy header", name, key);
            return -1;
        }
        *seen = 1;
        if (eat(&c, ','))
            continue;
        if (eat(&c, '}'))
            break;
        ml_errf(err, errlen, "%s: malformed .npy header dict", name);
        return -1;
    }
    skip_ws(&c);
    if (c.s != c.end) {
        ml_errf(err, errlen, "%s: unexpected text after the .npy header dict", name);
        return -1;
    }
    if (!seen_descr || !seen_fortran || !seen_shape) {
        ml_errf(err, errlen, "%s: .npy header has no '%s'", name,
             !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");
        return -1;
    }
    uint64_t nb = 4;
    for (int i = 0; i < info->ndim; i++) {
        uint64_t d = (uint64_t)info->shape[i];
        if (d == 0) {
            nb = 0;
        } else if (nb != UINT64_MAX) {
            nb = nb > UINT64_MAX / d ? UINT64_MAX : nb * d;
        }
    }
    info->nbytes = nb;
    return 0;
}

/* p holds the prefix and at least hlen header bytes when avail allows. */
static int parse_header(const unsigned char *p, size_t avail, const char *name, npy_info *info,
                        char *err, size_t errlen) {
    memset(info, 0, sizeof *info);
    size_t hlen;
    int pre = parse_prefix(p, avail, name, &hlen, err, errlen);
    if (pre < 0)
        return -1;
    if (hlen > avail - (size_t)pre) {
        ml_errf(err, errlen, "%s: truncated .npy header (%zu bytes announced, %zu present)", name,
             hlen, avail - (size_t)pre);
        return -1;
    }
    info->data_offset = (size_t)pre + hlen;
    return parse_dict((const char *)p + pre, hlen, name, info, err, errlen);
}

static int dtype_ok(const npy_info *info) {
    if (strcmp(info->descr, "<f4") == 0)
        return 1;
    return strcmp(info->descr, "=f4") == 0 && !ml_host_is_big_endian();
}

static int check_dtype(const npy_info *info, const char *name, char *err, size_t errlen) {
    if (info->descr[0] == '>' && strcmp(info->descr + 1, "f4") == 0) {
        ml_errf(err, errlen,
             "%s: dtype '%s' is big-endian float32; only little-endian '<f4' is supported",
             name, info->descr);
        return -1;
    }
    if (!dtype_ok(info)) {
        ml_errf(err, errlen, "%s: dtype '%s' found, expected float32 '<f4'", name, info->descr);
        return -1;
    }
    if (info->fortran) {
        ml_errf(err, errlen, "%s: fortran_order is True; only C-order arrays are supported", name);
        return -1;
    }
    return 0;
}

static int check_size(const npy_info *info, uint64_t data_bytes, const char *name, char *err,
                      size_t errlen) {
    if (data_bytes == info->nbytes)
        return 0;
    char sh[200];
    format_shape(sh, sizeof sh, info->shape, info->ndim);
    if (info->nbytes == UINT64_MAX)
        ml_errf(err, errlen, "%s: truncated data: shape %s is larger than any file (file has %" PRIu64
             " data bytes)", name, sh, data_bytes);
    else if (data_bytes < info->nbytes)
        ml_errf(err, errlen, "%s: truncated data: shape %s needs %" PRIu64 " bytes, file has %" PRIu64,
             name, sh, info->nbytes, data_bytes);
    else
        ml_errf(err, errlen, "%s: %" PRIu64 " unexpected bytes after the data of shape %s", name,
             data_bytes - info->nbytes, sh);
    return -1;
}

static float *alloc_data(const npy_info *info, const char *name, char *err, size_t errlen) {
    if (info->nbytes > SIZE_MAX) {
        ml_errf(err, errlen, "%s: array too large", name);
        return NULL;
    }
    float *d = malloc(info->nbytes ? (size_t)info->nbytes : sizeof(float));
    if (!d)
        ml_errf(err, errlen, "%s: out of memory for %" PRIu64 " bytes", name, info->nbytes);
    return d;
}

int npy_read_mem(const void *buf, size_t len, const char *name, float **data, int *ndim,
                 int64_t shape[8], char *err, size_t errlen) {
    npy_info info;
    *data = NULL;
    if (!name)
        name = "<memory>";
    if (parse_header(buf, len, name, &info, err, errlen) != 0 ||
        check_dtype(&info, name, err, errlen) != 0 ||
        check_size(&info, len - info.data_offset, name, err, errlen) != 0)
        return -1;
    float *d = alloc_data(&info, name, err, errlen);
    if (!d)
        return -1;
    if (info.nbytes) {
        memcpy(d, (const unsigned char *)buf + info.data_offset, (size_t)info.nbytes);
        if (ml_host_is_big_endian())
            ml_swap32(d, (size_t)info.nbytes / 4);
    }
    *data = d;
    *ndim = info.ndim;
    memcpy(shape, info.shape, sizeof info.shape);
    return 0;
}

/* Opens a file and parses its header; *size gets the file size. */
static FILE *open_npy(const char *path, npy_info *info, uint64_t *size, char *err, size_t errlen) {
    size_t file_size;
    FILE *fp = ml_open_regular(path, &file_size, err, errlen);
    if (!fp)
        return NULL;
    *size = (uint64_t)file_size;
    unsigned char pre[12];
    size_t got = fread(pre, 1, sizeof pre, fp);
    size_t hlen;
    int plen = parse_prefix(pre, got, path, &hlen, err, errlen);
    if (plen < 0) {
        fclose(fp);
        return NULL;
    }
    size_t total = (size_t)plen + hlen;
    if (total > *size) {
        ml_errf(err, errlen, "%s: truncated .npy header (%zu bytes announced, file has %" PRIu64 ")",
             path, hlen, *size);
        fclose(fp);
        return NULL;
    }
    unsigned char *h = malloc(total);
    if (!h) {
        ml_errf(err, errlen, "%s: out of memory for the header", path);
        fclose(fp);
        return NULL;
    }
    if (fseek(fp, 0, SEEK_SET) != 0 || fread(h, 1, total, fp) != total) {
        ml_errf(err, errlen, "%s: read error in the header", path);
        free(h);
        fclose(fp);
        return NULL;
    }
    int rc = parse_header(h, total, path, info, err, errlen);
    free(h);
    if (rc != 0) {
        fclose(fp);
        return NULL;
    }
    return fp;
}

static int read_payload(FILE *fp, const npy_info *info, float *dst, const char *path, char *err,
                        size_t errlen) {
    size_t nb = (size_t)info->nbytes;
    if (nb && fread(dst, 1, nb, fp) != nb) {
        ml_errf(err, errlen, "%s: read error in the data", path);
        return -1;
    }
    if (ml_host_is_big_endian())
        ml_swap32(dst, nb / 4);
    return 0;
}

int npy_read(const char *path, float **data, int *ndim, int64_t shape[8], char *err,
             size_t errlen) {
    npy_info info;
    uint64_t size;
    *data = NULL;
    FILE *fp = open_npy(path, &info, &size, err, errlen);
    if (!fp)
        return -1;
    float *d = NULL;
    int rc = check_dtype(&info, path, err, errlen);
    if (rc == 0)
        rc = check_size(&info, size - info.data_offset, path, err, errlen);
    if (rc == 0 && !(d = alloc_data(&info, path, err, errlen)))
        rc = -1;
    if (rc == 0)
        rc = read_payload(fp, &info, d, path, err, errlen);
    fclose(fp);
    if (rc != 0) {
        free(d);
        return -1;
    }
    *data = d;
    *ndim = info.ndim;
    memcpy(shape, info.shape, sizeof info.shape);
    return 0;
}

/* States and inputs feed every later step: a NaN or Inf loaded would only
 * show up steps later at some neighbour, so it is refused here with the
 * file and the element's index. */
static int check_finite(const float *v, int ndim, const int64_t *shape, const char *path,
                        char *err, size_t errlen) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    for (size_t k = 0; k < n; k++) {
        if (isfinite(v[k]))
            continue;
        int64_t idx[NPY_MAX_DIMS];
        size_t rest = k;
        for (int i = ndim - 1; i >= 0; i--) {
            idx[i] = shape[i] ? (int64_t)(rest % (size_t)shape[i]) : 0;
            rest = shape[i] ? rest / (size_t)shape[i] : 0;
        }
        char at[200];
        format_shape(at, sizeof at, idx, ndim);
        ml_errf(err, errlen,
                "%s: element %s (flat index %zu) is %s: non-finite values are refused at load", path,
                at, k, isnan(v[k]) ? "NaN" : v[k] > 0 ? "+Inf" : "-Inf");
        return -1;
    }
    return 0;
}

int npy_read_expect(const char *path, float *dst, int ndim, const int64_t *expect, char *err,
                    size_t errlen) {
    if (ndim < 0 || ndim > NPY_MAX_DIMS || (ndim > 0 && !expect)) {
        ml_errf(err, errlen, "%s: invalid expected shape (%d dimensions)", path, ndim);
        return -1;
    }
    npy_info info;
    uint64_t size;
    FILE *fp = open_npy(path, &info, &size, err, errlen);
    if (!fp)
        return -1;
    int same = info.ndim == ndim && !info.fortran && dtype_ok(&info);
    for (int i = 0; same && i < ndim; i++)
        same = info.shape[i] == expect[i];
    if (!same) {
        char want[200], got[200];
        format_shape(want, sizeof want, expect, ndim);
        format_shape(got, sizeof got, info.shape, info.ndim);
        ml_errf(err, errlen,
             "%s: expected float32 '<f4' C-order array of shape %s, found dtype '%s'%s shape %s",
             path, want, info.descr, info.fortran ? " (Fortran order)" : "", got);
        fclose(fp);
        return -1;
    }
    int rc = check_size(&info, size - info.data_offset, path, err, errlen);
    if (rc == 0)
        rc = read_payload(fp, &info, dst, path, err, errlen);
    fclose(fp);
    if (rc == 0)
        rc = check_finite(dst, ndim, expect, path, err, errlen);
    return rc;
}

int npy_write(const char *path, const float *data, int ndim, const int64_t *shape, char *err,
              size_t errlen) {
    if (ndim < 0 || ndim > NPY_MAX_DIMS || (ndim > 0 && !shape)) {
        ml_errf(err, errlen, "%s: cannot write an array of %d dimensions (0 to %d)", path, ndim,
             NPY_MAX_DIMS);
        return -1;
    }
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            ml_errf(err, errlen, "%s: negative dimension %" PRId64 " at index %d", path, shape[i], i);
            return -1;
        }
        if (shape[i] && numel > SIZE_MAX / 4 / (uint64_t)shape[i]) {
            ml_errf(err, errlen, "%s: array too large", path);
            return -1;
        }
        numel *= (size_t)shape[i];
    }
    if (numel && !data) {
        ml_errf(err, errlen, "%s: no data to write", path);
        return -1;
    }
    char sh[200];
    format_shape(sh, sizeof sh, shape, ndim);
    /* Prefix (10) + dict + spaces + '\n' is a multiple of 64, as numpy
     * writes it, so the data can be memory-mapped aligned. */
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
                     sh);
    size_t total = 10 + (size_t)n + 1;
    size_t padded = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    size_t hlen = padded - 10;
    memset(hdr + n, ' ', hlen - 1 - (size_t)n);
    hdr[hlen - 1] = '\n';

    unsigned char pre[10];
    memcpy(pre, npy_magic, 6);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (unsigned char)(hlen & 0xff);
    pre[9] = (unsigned char)(hlen >> 8);

    atomic_file af;
    if (atomic_open(&af, path, err, errlen) != 0)
        return -1;
    int bad = fwrite(pre, 1, 10, af.fp) != 10 || fwrite(hdr, 1, hlen, af.fp) != hlen;
    if (!bad && numel) {
        if (!ml_host_is_big_endian()) {
            bad = fwrite(data, sizeof(float), numel, af.fp) != numel;
        } else {
            float tmp[1024];
            for (size_t i = 0; !bad && i < numel; i += 1024) {
                size_t k = numel - i < 1024 ? numel - i : 1024;
                memcpy(tmp, data + i, k * sizeof(float));
                ml_swap32(tmp, k);
                bad = fwrite(tmp, sizeof(float), k, af.fp) != k;
            }
        }
    }
    return atomic_finish(&af, bad, path, err, errlen);
}
