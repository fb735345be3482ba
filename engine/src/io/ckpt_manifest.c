/* Checkpoint manifest (see ckpt_manifest.h). The self-checksum is XXH64 of
 * the manifest's canonical form (keys sorted, compact, without the
 * "manifest_xxh64" key itself); since the manifest holds the checksums of
 * the config, weights, states and input, it covers all of them and the
 * step counter, seed and file names besides. */
#include"io/ckpt_manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include"base/file_util.h"

#define SELF_KEY "manifest_xxh64"

void ckpt_hex(char out[17], uint64_t v) { snprintf(out, 17, "%016" PRIx64, v); }

/* 0 and *h set, or -1 when out of memory. */
static int canonical_hash(json_t *o, uint64_t *h) {
    char *text = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    if (!text)
        return -1;
    *h = XXH64(text, strlen(text), 0);
    free(text);
    return 0;
}

static json_t *file_entry(const char *name, const int64_t *shape, int ndim, uint64_t xxh) {
    char hex[17];
    ckpt_hex(hex, xxh);
    json_t *s = json_array();
    for (int i = 0; s && i < ndim; i++)
        json_array_append_new(s, json_integer((json_int_t)shape[i]));
    return json_pack("{s:s, s:o, s:s}", "file", name, "shape", s, "xxh64", hex);
}

json_t *ckpt_manifest_json(const ckpt_manifest *m, const char *engine) {
    return ckpt_manifest_json_ex(m, engine, NULL, NULL);
}

json_t *ckpt_manifest_json_ex(const ckpt_manifest *m, const char *engine, const char *key, json_t *value) {
    char digest[17], seed[24], cfg_x[17], w_x[17];
    ckpt_hex(digest, m->weights_digest);
    ckpt_hex(cfg_x, m->config_xxh);
    ckpt_hex(w_x, m->weights_xxh);
    snprintf(seed, sizeof seed, "%" PRIu64, m->seed);
    json_t *o = json_pack(
        "{s:s, s:i, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o}", "format", CKPT_FORMAT,
        "version", CKPT_VERSION, "engine", engine, "step", (json_int_t)m->step, "generation",
        (json_int_t)m->gen, "seed", seed, "weights_digest", digest, "config", m->config,
        "config_xxh64", cfg_x, "weights", m->weights, "weights_xxh64", w_x, "states",
        file_entry(m->states, m->states_shape, 4, m->states_xxh), "input",
        m->input[0] ? file_entry(m->input, m->input_shape, 3, m->input_xxh) : json_null());
    uint64_t h;
    if (o && key && (!value || json_object_get(o, key) || json_object_set(o, key, value) != 0)) {
        json_decref(o);
        return NULL;
    }
    if (!o || canonical_hash(o, &h) != 0) {
        json_decref(o);
        return NULL;
    }
    char hex[17];
    ckpt_hex(hex, h);
    json_object_set_new(o, SELF_KEY, json_string(hex));
    return o;
}

/* A file name from the manifest: a plain name inside the directory. */
static int get_name(json_t *v, char *out, size_t len) {
    const char *s = json_string_value(v);
    if (!s || !*s || strchr(s, '/') || s[0] == '.' || strlen(s) >= len)
        return -1;
    snprintf(out, len, "%s", s);
    return 0;
}

static int get_hex(json_t *v, uint64_t *out) {
    const char *s = json_string_value(v);
    char *end;
    if (!s || strlen(s) != 16 || s[0] == '-' || s[0] == '+' || s[0] == ' ')
        return -1;
    errno = 0;
    *out = strtoull(s, &end, 16);
    return errno || *end ? -1 : 0;
}

/* {file, shape, xxh64}; the shape must have ndim non-negative entries. */
static int get_file_entry(json_t *v, char *name, size_t len, int ndim, int64_t *shape,
                          uint64_t *xxh) {
    if (!json_is_object(v))
        return -1;
    json_t *s = json_object_get(v, "shape");
    if (!json_is_array(s) || json_array_size(s) != (size_t)ndim)
        return -1;
    for (int i = 0; i < ndim; i++) {
        json_t *e = json_array_get(s, (size_t)i);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return -1;
        shape[i] = (int64_t)json_integer_value(e);
    }
    return get_name(json_object_get(v, "file"), name, len) != 0 ||
                   get_hex(json_object_get(v, "xxh64"), xxh) != 0
               ? -1
               : 0;
}

/* The fields, once the JSON is an object; returns the problem or NULL. */
static const char *read_fields(json_t *o, ckpt_manifest *m) {
    const char *fmt = json_string_value(json_object_get(o, "format"));
    json_t *ver = json_object_get(o, "version"), *step = json_object_get(o, "step");
    const char *seed = json_string_value(json_object_get(o, "seed"));
    json_t *input = json_object_get(o, "input");
    char *end = NULL;
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0)
        return "not a moelat checkpoint manifest (key 'format')";
    if (!json_is_integer(ver) || json_integer_value(ver) != CKPT_VERSION)
        return "unsupported checkpoint version (key 'version'; this engine reads 2, whose "
               "checksums cover every file and the manifest itself)";
    if (!json_is_integer(step) || json_integer_value(step) < 0)
        return "key 'step' is not a non-negative integer";
    if (!seed || !*seed || seed[0] == '-' || seed[0] == '+' || seed[0] == ' ' ||
        (errno = 0, m->seed = strtoull(seed, &end, 10), errno || *end))
        return "key 'seed' is not a decimal string";
    if (get_hex(json_object_get(o, "weights_digest"), &m->weights_digest) != 0)
        return "key 'weights_digest' is not 16 hex digits";
    if (get_name(json_object_get(o, "config"), m->config, sizeof m->config) != 0)
        return "key 'config' is not a file name in the directory";
    if (get_hex(json_object_get(o, "config_xxh64"), &m->config_xxh) != 0)
        return "key 'config_xxh64' is not 16 hex digits";
    if (get_name(json_object_get(o, "weights"), m->weights, sizeof m->weights) != 0)
        return "key 'weights' is not a file name in the directory";
    if (get_hex(json_object_get(o, "weights_xxh64"), &m->weights_xxh) != 0)
        return "key 'weights_xxh64' is not 16 hex digits";
    if (get_file_entry(json_object_get(o, "states"), m->states, sizeof m->states, 4,
                       m->states_shape, &m->states_xxh) != 0)
        return "key 'states' is not {file, shape (4 sizes), xxh64}";
    if (!input)
        return "key 'input' is missing (null when there is no input)";
    if (!json_is_null(input) && get_file_entry(input, m->input, sizeof m->input, 3,
                                               m->input_shape, &m->input_xxh) != 0)
        return "key 'input' is not null or {file, shape (3 sizes), xxh64}";
    m->step = (uint64_t)json_integer_value(step);
    return NULL;
}

int ckpt_manifest_parse(const char *text, size_t len, const char *name, ckpt_manifest *m,
                        char *err, size_t errlen) {
    return ckpt_manifest_parse_ex(text, len, name, m, NULL, NULL, err, errlen);
}

int ckpt_manifest_parse_ex(const char *text, size_t len, const char *name, ckpt_manifest *m,
                           const char *key, json_t **value, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (value)
        *value = NULL;
    json_error_t je;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        ml_errf(err, errlen, "%s:%d:%d: %s", name, je.line, je.column, je.text);
        return -1;
    }
    if (!json_is_object(o)) {
        ml_errf(err, errlen, "%s: a manifest is a JSON object, found %s", name,
                json_is_array(o) ? "an array" : "a scalar");
        json_decref(o);
        return -1;
    }
    const char *bad = read_fields(o, m);
    if (bad) {
        ml_errf(err, errlen, "%s: %s", name, bad);
        json_decref(o);
        return -1;
    }
    uint64_t said, h = 0;
    if (get_hex(json_object_get(o, SELF_KEY), &said) != 0) {
        ml_errf(err, errlen, "%s: key '" SELF_KEY "' is not 16 hex digits", name);
        json_decref(o);
        return -1;
    }
    json_object_del(o, SELF_KEY);
    int rc = canonical_hash(o, &h);
    json_t *got = rc == 0 && key && value && h == said ? json_object_get(o, key) : NULL;
    if (got)
        *value = json_incref(got);
    json_decref(o);
    if (rc != 0) {
        ml_errf(err, errlen, "%s: out of memory checking the manifest", name);
        return -1;
    }
    if (h != said) {
        char a[17], b[17];
        ckpt_hex(a, h);
        ckpt_hex(b, said);
        ml_errf(err, errlen,
                "%s: the manifest was edited: its content hashes to %s, its key '" SELF_KEY
                "' says %s (step %" PRIu64 ", config %s, input %s as it reads now)",
                name, a, b, m->step, m->config, m->input[0] ? m->input : "none");
        return -1;
    }
    return 0;
}
