/* safetensors reader and writer (float32). The reader trusts nothing in the
 * file: every offset and size is checked against the bytes actually present
 * before any copy, following the rules of the reference (Python/Rust)
 * implementation: tensors must tile the data section exactly, in any order. */
#include"base/file_util.h"
#include "io/safetensors.h"

#include"base/atomic_file.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ST_MAX_DIMS 8
#define ST_NAME_MAX ((int)sizeof(((st_tensor *)0)->name))

static uint64_t load_le64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

/* One header entry after its own checks, before the cross-entry checks. */
typedef struct st_entry {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end;
    size_t numel;
} st_entry;

static int cmp_entry(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void format_shape(char *buf, size_t len, const int64_t *shape, int ndim) {
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
}

static int parse_entry(const char *path, const char *key, json_t *val, uint64_t data_len,
                       st_entry *e, char *err, size_t errlen) {
    memset(e, 0, sizeof *e);
    e->name = key;
    if ((int)strlen(key) >= ST_NAME_MAX) {
        ml_errf(err, errlen, "%s: tensor '%.60s...': name longer than %d bytes", path, key,
             ST_NAME_MAX - 1);
        return -1;
    }
    if (!json_is_object(val)) {
        ml_errf(err, errlen, "%s: tensor '%s': header entry is not a JSON object", path, key);
        return -1;
    }
    json_t *dtype = json_object_get(val, "dtype");
    json_t *shape = json_object_get(val, "shape");
    json_t *offs = json_object_get(val, "data_offsets");
    if (!dtype || !shape || !offs) {
        ml_errf(err, errlen, "%s: tensor '%s': entry has no \"%s\"", path, key,
             !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
        return -1;
    }
    if (!json_is_string(dtype)) {
        ml_errf(err, errlen, "%s: tensor '%s': \"dtype\" is not a string", path, key);
        return -1;
    }
    if (strcmp(json_string_value(dtype), "F32") != 0) {
        ml_errf(err, errlen, "%s: tensor '%s' has dtype %.32s, only F32 is supported", path, key,
             json_string_value(dtype));
        return -1;
    }
    if (!json_is_array(shape)) {
        ml_errf(err, errlen, "%s: tensor '%s': \"shape\" is not an array", path, key);
        return -1;
    }
    size_t nd = json_array_size(shape);
    if (nd > ST_MAX_DIMS) {
        ml_errf(err, errlen, "%s: tensor '%s' has %zu dimensions, at most %d are supported", path,
             key, nd, ST_MAX_DIMS);
        return -1;
    }
    e->ndim = (int)nd;
    /* numel only needs to be exact while it can still match the data
     * section; past that it saturates and the size check below fails. */
    uint64_t numel = 1;
    const uint64_t cap = (data_len / 4) + 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d)) {
            ml_errf(err, errlen, "%s: tensor '%s': shape entry %zu is not an integer", path, key, i);
            return -1;
        }
        json_int_t v = json_integer_value(d);
        if (v < 0) {
            ml_errf(err, errlen, "%s: tensor '%s': negative dimension %lld at shape index %zu", path,
                 key, (long long)v, i);
            return -1;
        }
        e->shape[i] = (int64_t)v;
        if (numel != 0 && (uint64_t)v > cap / numel + 1)
            numel = cap;
        else
            numel = numel * (uint64_t)v > cap ? cap : numel * (uint64_t)v;
    }
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !json_is_integer(json_array_get(offs, 0)) || !json_is_integer(json_array_get(offs, 1))) {
        ml_errf(err, errlen, "%s: tensor '%s': \"data_offsets\" is not an array of 2 integers", path,
             key);
        return -1;
    }
    json_int_t b = json_integer_value(json_array_get(offs, 0));
    json_int_t en = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || en < 0 || b > en) {
        ml_errf(err, errlen, "%s: tensor '%s': invalid data_offsets [%lld, %lld]", path, key,
             (long long)b, (long long)en);
        return -1;
    }
    if ((uint64_t)en > data_len) {
        ml_errf(err, errlen,
             "%s: tensor '%s': data_offsets [%lld, %lld] out of range (data section has %" PRIu64
             " bytes)",
             path, key, (long long)b, (long long)en, data_len);
        return -1;
    }
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    if (numel >= cap || numel * 4 != e->end - e->begin) {
        char sh[200];
        format_shape(sh, sizeof sh, e->shape, e->ndim);
        ml_errf(err, errlen,
             "%s: tensor '%s': shape %s does not match data_offsets [%lld, %lld] (%" PRIu64
             " bytes, 4 per F32 value)",
             path, key, sh, (long long)b, (long long)en, e->end - e->begin);
        return -1;
    }
    e->numel = (size_t)numel;
    return 0;
}

/* Tensors sorted by offset must follow each other with no gap and no
 * overlap and end exactly at the end of the file. */
static int check_tiling(const char *path, st_entry *ents, int n, uint64_t data_len, char *err,
                        size_t errlen) {
    qsort(ents, (size_t)n, sizeof *ents, cmp_entry);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        if (ents[i].begin < pos) {
            ml_errf(err, errlen,
                 "%s: tensor '%s' (data_offsets [%" PRIu64 ", %" PRIu64
                 "]) overlaps tensor '%s' (data_offsets [%" PRIu64 ", %" PRIu64 "])",
                 path, ents[i].name, ents[i].begin, ents[i].end, ents[i - 1].name,
                 ents[i - 1].begin, ents[i - 1].end);
            return -1;
        }
        if (ents[i].begin > pos) {
            ml_errf(err, errlen,
                 "%s: data bytes [%" PRIu64 ", %" PRIu64 ") belong to no tensor (before tensor '%s')",
                 path, pos, ents[i].begin, ents[i].name);
            return -1;
        }
        pos = ents[i].end;
    }
    if (pos != data_len) {
        ml_errf(err, errlen,
             "%s: tensor data covers %" PRIu64 " bytes but the data section has %" PRIu64 " bytes",
             path, pos, data_len);
        return -1;
    }
    return 0;
}

static int check_metadata(const char *path, json_t *val, char *err, size_t errlen) {
    const char *k;
    json_t *v;
    if (!json_is_object(val)) {
        ml_errf(err, errlen, "%s: \"__metadata__\" is not a JSON object", path);
        return -1;
    }
    json_object_foreach(val, k, v) {
        if (!json_is_string(v)) {
            ml_errf(err, errlen, "%s: \"__metadata__\" key '%s' is not a string", path, k);
            return -1;
        }
    }
    return 0;
}

int st_read_mem(const void *buf, size_t len, const char *name, st_file *out, char *err,
                size_t errlen) {
    const unsigned char *p = buf;
    memset(out, 0, sizeof *out);
    if (!name)
        name = "<memory>";
    if (len < 8) {
        ml_errf(err, errlen, "%s: file too short for a safetensors header (%zu bytes, need 8)", name,
             len);
        return -1;
    }
    uint64_t hlen = load_le64(p);
    if (hlen > (uint64_t)(len - 8)) {
        ml_errf(err, errlen,
             "%s: header length %" PRIu64 " exceeds the file (%zu bytes after the length field)",
             name, hlen, len - 8);
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_duplicate_key)
            ml_errf(err, errlen, "%s: duplicate tensor name in header (%s)", name, jerr.text);
        else
            ml_errf(err, errlen, "%s: header is not valid JSON: %s (at header byte %d)", name,
                 jerr.text, jerr.position);
        return -1;
    }
    if (!json_is_object(root)) {
        ml_errf(err, errlen, "%s: header is not a JSON object", name);
        json_decref(root);
        return -1;
    }

    const uint64_t data_len = (uint64_t)(len - 8) - hlen;
    const unsigned char *data = p + 8 + hlen;
    size_t n_keys = json_object_size(root);
    st_entry *ents = calloc(n_keys ? n_keys : 1, sizeof *ents);
    if (!ents) {
        ml_errf(err, errlen, "%s: out of memory for %zu header entries", name, n_keys);
        json_decref(root);
        return -1;
    }
    int n = 0;
    const char *key;
    json_t *val;
    int rc = 0;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            rc = check_metadata(name, val, err, errlen);
        } else {
            rc = parse_entry(name, key, val, data_len, &ents[n], err, errlen);
            n++;
        }
        if (rc != 0)
            break;
    }
    if (rc == 0)
        rc = check_tiling(name, ents, n, data_len, err, errlen);

    st_tensor *ts = NULL;
    if (rc == 0) {
        ts = calloc(n ? (size_t)n : 1, sizeof *ts);
        if (!ts) {
            ml_errf(err, errlen, "%s: out of memory for %d tensors", name, n);
            rc = -1;
        }
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        st_tensor *t = &ts[i];
        snprintf(t->name, sizeof t->name, "%s", ents[i].name);
        t->ndim = ents[i].ndim;
        memcpy(t->shape, ents[i].shape, sizeof t->shape);
        t->numel = ents[i].numel;
        /* Never a NULL data pointer, so callers can copy 0 values safely. */
        t->data = malloc(t->numel ? t->numel * sizeof(float) : sizeof(float));
        if (!t->data) {
            ml_errf(err, errlen, "%s: tensor '%s': out of memory for %zu values", name, t->name,
                 t->numel);
            rc = -1;
            break;
        }
        if (t->numel) {
            memcpy(t->data, data + ents[i].begin, t->numel * sizeof(float));
            if (ml_host_is_big_endian())
                ml_swap32(t->data, t->numel);
        }
    }
    free(ents);
    json_decref(root);
    out->tensors = ts;
    out->n_tensors = ts ? n : 0;
    if (rc != 0) {
        st_free(out);
        return -1;
    }
    return 0;
}

/* Reads a whole regular file into memory. */
static int read_whole_file(const char *path, unsigned char **buf, size_t *len, char *err,
                           size_t errlen) {
    size_t size;
    FILE *fp = ml_open_regular(path, &size, err, errlen);
    if (!fp)
        return -1;
    unsigned char *b = malloc(size ? size : 1);
    if (!b) {
        ml_errf(err, errlen, "%s: out of memory reading %zu bytes", path, size);
        fclose(fp);
        return -1;
    }
    size_t got = fread(b, 1, size, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad || got != size) {
        ml_errf(err, errlen, "%s: read error (%zu of %zu bytes)", path, got, size);
        free(b);
        return -1;
    }
    *buf = b;
    *len = size;
    return 0;
}

int st_read(const char *path, st_file *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    unsigned char *buf;
    size_t len;
    if (read_whole_file(path, &buf, &len, err, errlen) != 0)
        return -2;
    int rc = st_read_mem(buf, len, path, out, err, errlen);
    free(buf);
    return rc;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    if (!f || !name)
        return NULL;
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

void st_free(st_file *f) {
    if (!f)
        return;
    for (int i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].data);
    free(f->tensors);
    f->tensors = NULL;
    f->n_tensors = 0;
}

/* Growable text buffer for the header. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap <= b->len + (size_t)n + 8)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

static int check_tensor_for_write(const char *path, const st_tensor *ts, int n, int i, char *err,
                                  size_t errlen) {
    const st_tensor *t = &ts[i];
    size_t nl = strnlen(t->name, sizeof t->name);
    if (nl == 0 || nl == sizeof t->name) {
        ml_errf(err, errlen, "%s: tensor %d: name is empty or not terminated", path, i);
        return -1;
    }
    if (strcmp(t->name, "__metadata__") == 0) {
        ml_errf(err, errlen, "%s: tensor %d: \"__metadata__\" is reserved", path, i);
        return -1;
    }
    for (size_t k = 0; k < nl; k++) {
        if ((unsigned char)t->name[k] < 0x20 || (unsigned char)t->name[k] >= 0x7f) {
            ml_errf(err, errlen, "%s: tensor '%s': name must be printable ASCII", path, t->name);
            return -1;
        }
    }
    for (int j = 0; j < i; j++) {
        if (strcmp(ts[j].name, t->name) == 0) {
            ml_errf(err, errlen, "%s: duplicate tensor name '%s'", path, t->name);
            return -1;
        }
    }
    if (t->ndim < 0 || t->ndim > ST_MAX_DIMS) {
        ml_errf(err, errlen, "%s: tensor '%s': %d dimensions (0 to %d allowed)", path, t->name,
             t->ndim, ST_MAX_DIMS);
        return -1;
    }
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0) {
            ml_errf(err, errlen, "%s: tensor '%s': negative dimension %" PRId64, path, t->name,
                 t->shape[d]);
            return -1;
        }
        if (t->shape[d] != 0 && numel > SIZE_MAX / 4 / (uint64_t)t->shape[d]) {
            ml_errf(err, errlen, "%s: tensor '%s': shape too large", path, t->name);
            return -1;
        }
        numel *= (size_t)t->shape[d];
    }
    if (numel != t->numel) {
        char sh[200];
        format_shape(sh, sizeof sh, t->shape, t->ndim);
        ml_errf(err, errlen, "%s: tensor '%s': shape %s holds %zu values but numel is %zu", path,
             t->name, sh, numel, t->numel);
        return -1;
    }
    if (numel && !t->data) {
        ml_errf(err, errlen, "%s: tensor '%s': no data", path, t->name);
        return -1;
    }
    (void)n;
    return 0;
}

static int write_le_floats(FILE *fp, const float *v, size_t count) {
    if (count == 0)
        return 0;
    if (!ml_host_is_big_endian())
        return fwrite(v, sizeof(float), count, fp) == count ? 0 : -1;
    float tmp[1024];
    while (count) {
        size_t k = count < 1024 ? count : 1024;
        memcpy(tmp, v, k * sizeof(float));
        ml_swap32(tmp, k);
        if (fwrite(tmp, sizeof(float), k, fp) != k)
            return -1;
        v += k;
        count -= k;
    }
    return 0;
}

int st_write(const char *path, const st_tensor *tensors, int n, char *err, size_t errlen) {
    if (n < 0 || (n > 0 && !tensors)) {
        ml_errf(err, errlen, "%s: invalid tensor list (%d tensors)", path ? path : "(null)", n);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (check_tensor_for_write(path, tensors, n, i, err, errlen) != 0)
            return -1;

    sbuf h = {0};
    uint64_t off = 0;
    sb_add(&h, "{");
    for (int i = 0; i < n; i++) {
        const st_tensor *t = &tensors[i];
        sb_add(&h, "%s\"", i ? "," : "");
        for (const char *c = t->name; *c; c++)
            sb_add(&h, (*c == '"' || *c == '\\') ? "\\%c" : "%c", *c);
        sb_add(&h, "\":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++)
            sb_add(&h, "%s%" PRId64, d ? "," : "", t->shape[d]);
        uint64_t end = off + (uint64_t)t->numel * 4;
        sb_add(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, end);
        off = end;
    }
    sb_add(&h, "}");
    /* The reference writer pads with spaces so the data starts 8-aligned. */
    while (!h.oom && h.len % 8 != 0)
        sb_add(&h, " ");
    if (h.oom) {
        free(h.s);
        ml_errf(err, errlen, "%s: out of memory building the header", path);
        return -1;
    }

    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (unsigned char)(((uint64_t)h.len >> (8 * i)) & 0xff);
    atomic_file af;
    if (atomic_open(&af, path, err, errlen) != 0) {
        free(h.s);
        return -1;
    }
    int bad = fwrite(lenbuf, 1, 8, af.fp) != 8 || fwrite(h.s, 1, h.len, af.fp) != h.len;
    free(h.s);
    for (int i = 0; !bad && i < n; i++)
        bad = write_le_floats(af.fp, tensors[i].data, tensors[i].numel) != 0;
    return atomic_finish(&af, bad, path, err, errlen);
}
