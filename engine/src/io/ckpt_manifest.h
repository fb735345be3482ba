/* The checkpoint manifest (manifest.json, see checkpoint.c): building it,
 * parsing it from bytes and the checksums that make any edit of it or of
 * the files it names detectable. Apart from checkpoint.c so that the
 * parser can be fuzzed on its own (tests/fuzz/fuzz_manifest.c). */
#ifndef MOELAT_CKPT_MANIFEST_H
#define MOELAT_CKPT_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define CKPT_FORMAT "moelat-checkpoint"
/* 2: the config and weights files carry checksums of their bytes and the
 * manifest one of its own content. */
#define CKPT_VERSION 2
#define CKPT_MANIFEST "manifest.json"

typedef struct ckpt_manifest {
    uint64_t step;
    uint64_t gen;
    uint64_t seed;
    uint64_t weights_digest;
    char config[256], weights[256], states[256], input[256]; /* input "" = none */
    uint64_t states_xxh, input_xxh;     /* of the float data */
    uint64_t config_xxh, weights_xxh;   /* of the files' bytes */
    int64_t states_shape[4], input_shape[3];
} ckpt_manifest;

/* The manifest as JSON, with its "manifest_xxh64" self-checksum; NULL when
 * out of memory. engine is the version string recorded. */
json_t *ckpt_manifest_json(const ckpt_manifest *m, const char *engine);
/* The same with one more key (a training checkpoint's "train"), which the
 * self-checksum covers; value is borrowed. key NULL: none. */
json_t *ckpt_manifest_json_ex(const ckpt_manifest *m, const char *engine, const char *key, json_t *value);

/* Parses and verifies a manifest's bytes; name prefixes every message
 * ("<name>: key 'step' is not ..."). 0 on success. */
int ckpt_manifest_parse(const char *text, size_t len, const char *name, ckpt_manifest *m,
                        char *err, size_t errlen);
/* The same, and *value (when key and value are given) receives a new
 * reference to key's value once the checksum holds, or NULL when the
 * manifest has no such key. */
int ckpt_manifest_parse_ex(const char *text, size_t len, const char *name, ckpt_manifest *m,
                           const char *key, json_t **value, char *err, size_t errlen);

/* "%016" PRIx64 of a checksum. */
void ckpt_hex(char out[17], uint64_t v);

#endif
