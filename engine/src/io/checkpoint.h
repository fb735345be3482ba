/* The checkpoint writer and reader of checkpoint.c for savers that extend
 * a run checkpoint: a training checkpoint (train/train_ckpt.c) is a run
 * checkpoint whose manifest carries one more key, covered by the
 * manifest's self-checksum, and names one more data file of the same
 * generation. One format, one reader, one set of rules. */
#ifndef MOELAT_IO_CHECKPOINT_H
#define MOELAT_IO_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "io/ckpt_manifest.h"
#include "moelat/moelat.h"

typedef struct ckpt_save_opts {
    const float *states; /* N x S states stored instead of the lattice's; NULL: the lattice's */
    int no_input;        /* store no external input even when the lattice has one */
    int set_step;        /* record step instead of the lattice's step counter */
    uint64_t step;
    const char *key;     /* one more manifest key (NULL: none) ... */
    json_t *value;       /* ... and its value (borrowed) */
    const char *keep;    /* a data file of this generation the caller wrote (NULL: none) */
} ckpt_save_opts;

/* Creates dir and its missing parents; *gen is the generation the next
 * save into dir uses (above every data file's there). Data files are
 * named <kind>-<step>-<gen>.<ext> with kind config, weights, states,
 * input or optimizer; files of other generations are removed once a
 * manifest is in place. 0, or -1 with err set. */
int ckpt_begin(const char *dir, uint64_t *gen, char *err, size_t errlen);

/* Writes the lattice's files of generation gen, then the manifest (last),
 * then removes stale files. The message goes to the lattice. */
moelat_status ckpt_save_gen(moelat_lattice *lat, const char *dir, uint64_t gen, const ckpt_save_opts *o);

/* Reads dir's manifest without blocking on special files and verifies
 * its self-checksum; *value (when key is given) receives a new reference
 * to key's value, or NULL when there is none. 0, or -1 with err set. */
int ckpt_read(const char *dir, ckpt_manifest *m, const char *key, json_t **value, char *err, size_t errlen);

/* The checkpoint's model config (checksum checked) against cur: the
 * number of fields that differ, each appended to out as "checkpoint dims
 * 9x8x7, this run 10x8x7" ("; " between); -1 with err set when the config
 * file cannot be read or fails its checksum. */
int ckpt_config_diff(const char *dir, const ckpt_manifest *m, const moelat_config *cur, char *out, size_t len,
                     char *err, size_t errlen);

/* XXH64 of a whole regular file's bytes (opened without blocking). */
int ckpt_file_xxh(const char *path, uint64_t *h, char *err, size_t errlen);

#endif
