/* Checkpoints (see "Checkpoints" in moelat.h). Layout of a directory:
 *   manifest.json                 written last; names the files below
 *   config-<step>-<gen>.json      model config, loadable as a --config file
 *   weights-<step>-<gen>.safetensors
 *   states-<step>-<gen>.npy       (Z, Y, X, S)
 *   input-<step>-<gen>.npy        (Y, X, E), only when an input is set
 *   optimizer-<step>-<gen>.safetensors  a training checkpoint's (io/checkpoint.h)
 * <gen> grows with every save into the directory, so a save never replaces
 * a file the current manifest names: killed at any point, the directory
 * still holds the previous checkpoint, complete. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include"base/atomic_file.h"
#include"io/checkpoint.h"
#include"io/ckpt_manifest.h"
#include"base/file_util.h"
#include "core/abi.h"
#include"core/config_parse.h"
#include"core/lattice_internal.h"
#include "io/npy.h"

static const char *const file_kinds[] = {"config", "weights", "states", "input", "optimizer"};
#define N_KINDS 5

uint64_t moelat_weights_digest(moelat_lattice *lat) {
    /* After the device optimizer the host's copy is read back first; a
     * failed read leaves the lattice's error set and digests the old one. */
    (void)ml_res_host_weights(lat);
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int n = ml_param_blocks(lat, blocks);
    return ml_params_digest(blocks, n);
}

static int join(char *out, size_t len, const char *dir, const char *name) {
    int n = snprintf(out, len, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int mkdir_p(const char *dir, char *err, size_t errlen) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) {
        snprintf(err, errlen, "checkpoint directory name too long: %.200s...", dir);
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory %.900s: %s", tmp, strerror(errno));
            return -1;
        }
        *p = '/';
    }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create checkpoint directory %.900s: %s", tmp, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (stat(tmp, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "checkpoint directory %.900s: not a directory", tmp);
        return -1;
    }
    return 0;
}

/* Which of our file kinds a directory entry is, with its generation; -1
 * for anything else (the user's own files are never touched). */
static int parse_name(const char *name, uint64_t *gen) {
    for (int k = 0; k < N_KINDS; k++) {
        size_t n = strlen(file_kinds[k]);
        if (strncmp(name, file_kinds[k], n) != 0 || name[n] != '-')
            continue;
        unsigned long long step, g;
        int used = 0;
        if (sscanf(name + n + 1, "%llu-%llu%n", &step, &g, &used) == 2 && used > 0) {
            *gen = g;
            return k;
        }
    }
    return -1;
}

static uint64_t next_generation(const char *dir) {
    uint64_t max = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 1;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t g;
        if (parse_name(e->d_name, &g) >= 0 && g > max)
            max = g;
    }
    closedir(d);
    return max + 1;
}

/* After the new manifest is in place: drops data files it does not name
 * and temporary files left by interrupted saves. */
static void remove_stale(const char *dir, const ckpt_manifest *m, const char *keep) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        uint64_t g;
        int ours = parse_name(n, &g) >= 0 ||
                   strncmp(n, CKPT_MANIFEST ".tmp.", sizeof CKPT_MANIFEST ".tmp." - 1) == 0;
        if (!ours || strcmp(n, m->config) == 0 || strcmp(n, m->weights) == 0 ||
            strcmp(n, m->states) == 0 || (m->input[0] && strcmp(n, m->input) == 0) ||
            (keep && strcmp(n, keep) == 0))
            continue;
        char path[4096];
        if (join(path, sizeof path, dir, n) == 0)
            unlink(path);
    }
    closedir(d);
}

/* The model keys of cfg, in the format moelat_config_load_json reads. A
 * seed above INT64_MAX does not fit a JSON integer: the manifest's decimal
 * string is authoritative for the seed. */
static json_t *config_json(const moelat_config *c) {
    json_t *o = json_object();
    json_t *hidden = json_object(), *experts = json_object();
    for (int i = 0; i < c->n_hidden; i++)
        json_object_set_new(hidden, c->hidden[i].name, json_integer(c->hidden[i].value));
    for (int k = 0; k < MOELAT_BANDS; k++)
        json_object_set_new(experts, moelat_band_name(k), json_string(c->expert[k]));
    json_object_set_new(o, "preset", json_string(c->preset));
    json_object_set_new(o, "dims", json_pack("[i,i,i]", c->dims[0], c->dims[1], c->dims[2]));
    json_object_set_new(o, "state_size", json_integer(c->state_size));
    json_object_set_new(o, "radius_ratio", json_real(c->radius_ratio));
    json_object_set_new(o, "band_ratios",
                        json_pack("[f,f,f]", c->band_ratio[0], c->band_ratio[1], c->band_ratio[2]));
    json_object_set_new(o, "hidden", hidden);
    json_object_set_new(o, "experts", experts);
    json_object_set_new(o, "cnf_mode",
                        json_string(c->cnf_mode == MOELAT_CNF_LIPSCHITZ ? "lipschitz" : "euler"));
    json_object_set_new(o, "cnf_steps", json_integer(c->cnf_steps));
    if (c->seed <= (uint64_t)INT64_MAX)
        json_object_set_new(o, "seed", json_integer((json_int_t)c->seed));
    return o;
}

static void copy_model_fields(moelat_config *dst, const moelat_config *src) {
    memcpy(dst->preset, src->preset, sizeof dst->preset);
    memcpy(dst->dims, src->dims, sizeof dst->dims);
    dst->state_size = src->state_size;
    dst->radius_ratio = src->radius_ratio;
    memcpy(dst->band_ratio, src->band_ratio, sizeof dst->band_ratio);
    memcpy(dst->hidden, src->hidden, sizeof dst->hidden);
    dst->n_hidden = src->n_hidden;
    memcpy(dst->expert, src->expert, sizeof dst->expert);
    dst->cnf_mode = src->cnf_mode;
    dst->cnf_steps = src->cnf_steps;
    dst->seed = src->seed;
}

/* Appends "checkpoint <what> <a>, this run <b>" to out; counts in *n. */
static void differ(char *out, size_t len, int *n, const char *what, const char *a, const char *b) {
    size_t pos = strlen(out);
    if (pos < len)
        snprintf(out + pos, len - pos, "%scheckpoint %s %s, this run %s", *n ? "; " : "", what, a,
                 b);
    (*n)++;
}

/* Shortest form that reads back as the same double. */
static void fmt_double(char *s, size_t len, double v) {
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(s, len, "%.*g", prec, v);
        if (strtod(s, NULL) == v)
            return;
    }
}

static void fmt_dims(char *s, size_t len, const int32_t d[3]) {
    snprintf(s, len, "%dx%dx%d", d[0], d[1], d[2]);
}

/* Every model field of the checkpoint (ck) against the lattice's (cur). */
static int config_diff(const moelat_config *ck, const moelat_config *cur, char *out, size_t len) {
    char a[160], b[160];
    int n = 0;
    out[0] = '\0';
    if (strcmp(ck->preset, cur->preset) != 0)
        differ(out, len, &n, "preset", ck->preset, cur->preset);
    if (memcmp(ck->dims, cur->dims, sizeof ck->dims) != 0) {
        fmt_dims(a, sizeof a, ck->dims);
        fmt_dims(b, sizeof b, cur->dims);
        differ(out, len, &n, "dims", a, b);
    }
    if (ck->state_size != cur->state_size) {
        snprintf(a, sizeof a, "%d", ck->state_size);
        snprintf(b, sizeof b, "%d", cur->state_size);
        differ(out, len, &n, "state size", a, b);
    }
    /* Exact: the ratios decide the stencil. */
    if (ck->radius_ratio != cur->radius_ratio) {
        fmt_double(a, sizeof a, ck->radius_ratio);
        fmt_double(b, sizeof b, cur->radius_ratio);
        differ(out, len, &n, "radius ratio", a, b);
    }
    if (memcmp(ck->band_ratio, cur->band_ratio, sizeof ck->band_ratio) != 0) {
        char x[3][32], y[3][32];
        for (int i = 0; i < 3; i++) {
            fmt_double(x[i], sizeof x[i], ck->band_ratio[i]);
            fmt_double(y[i], sizeof y[i], cur->band_ratio[i]);
        }
        snprintf(a, sizeof a, "%s/%s/%s", x[0], x[1], x[2]);
        snprintf(b, sizeof b, "%s/%s/%s", y[0], y[1], y[2]);
        differ(out, len, &n, "band ratios", a, b);
    }
    /* Hidden sizes by name, over the names either side has. */
    for (int side = 0; side < 2; side++) {
        const moelat_config *p = side ? cur : ck;
        for (int i = 0; i < p->n_hidden; i++) {
            const char *name = p->hidden[i].name;
            int32_t x = moelat_config_hidden(ck, name, -1), y = moelat_config_hidden(cur, name, -1);
            if (x == y || (side && x >= 0)) /* names both have: reported once */
                continue;
            char what[64];
            snprintf(what, sizeof what, "hidden size %s", name);
            snprintf(a, sizeof a, x < 0 ? "unset" : "%d", x);
            snprintf(b, sizeof b, y < 0 ? "unset" : "%d", y);
            differ(out, len, &n, what, a, b);
        }
    }
    for (int k = 0; k < MOELAT_BANDS; k++)
        if (strcmp(ck->expert[k], cur->expert[k]) != 0) {
            char what[64];
            snprintf(what, sizeof what, "%s expert", moelat_band_name(k));
            differ(out, len, &n, what, ck->expert[k], cur->expert[k]);
        }
    if (ck->cnf_mode != cur->cnf_mode)
        differ(out, len, &n, "cnf mode", ck->cnf_mode == MOELAT_CNF_LIPSCHITZ ? "lipschitz" : "euler",
               cur->cnf_mode == MOELAT_CNF_LIPSCHITZ ? "lipschitz" : "euler");
    if (ck->cnf_steps != cur->cnf_steps) {
        snprintf(a, sizeof a, "%d", ck->cnf_steps);
        snprintf(b, sizeof b, "%d", cur->cnf_steps);
        differ(out, len, &n, "cnf steps", a, b);
    }
    if (ck->seed != cur->seed) {
        snprintf(a, sizeof a, "%" PRIu64, ck->seed);
        snprintf(b, sizeof b, "%" PRIu64, cur->seed);
        differ(out, len, &n, "seed", a, b);
    }
    return n;
}

static uint64_t xxh_floats(const float *v, size_t n) { return XXH64(v, n * sizeof(float), 0); }

/* Writes o (consumed) to path; *xxh, when given, gets the checksum of the
 * bytes written. */
static moelat_status write_json(moelat_lattice *lat, const char *path, json_t *o, uint64_t *xxh) {
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(o);
    if (!text)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "%s: out of memory formatting JSON", path);
    size_t len = strlen(text);
    if (xxh)
        *xxh = XXH64(text, len, 0);
    char err[1024];
    int rc = atomic_write_file(path, text, len, err, sizeof err);
    free(text);
    if (rc != 0)
        return ml_fail(lat, MOELAT_ERR_IO, "checkpoint: %s", err);
    return MOELAT_OK;
}

int ckpt_file_xxh(const char *path, uint64_t *h, char *err, size_t errlen) {
    size_t len;
    char *text = ml_read_regular(path, &len, err, errlen);
    if (!text)
        return -1;
    *h = XXH64(text, len, 0);
    free(text);
    return 0;
}

int ckpt_begin(const char *dir, uint64_t *gen, char *err, size_t errlen) {
    if (!dir || !*dir) {
        snprintf(err, errlen, "no directory given");
        return -1;
    }
    if (mkdir_p(dir, err, errlen) != 0)
        return -1;
    *gen = next_generation(dir);
    return 0;
}

moelat_status ckpt_save_gen(moelat_lattice *lat, const char *dir, uint64_t gen, const ckpt_save_opts *o) {
    static const ckpt_save_opts none;
    if (!o)
        o = &none;
    char err[1024];
    moelat_status synced = ml_res_host_states(lat);
    if (synced == MOELAT_OK)
        synced = ml_res_host_weights(lat);
    if (synced != MOELAT_OK)
        return synced;

    ckpt_manifest m;
    memset(&m, 0, sizeof m);
    m.step = o->set_step ? o->step : lat->step_count;
    m.gen = gen;
    m.seed = lat->cfg.seed;
    m.weights_digest = moelat_weights_digest(lat);
    unsigned long long st = (unsigned long long)m.step, g = (unsigned long long)m.gen;
    snprintf(m.config, sizeof m.config, "config-%llu-%llu.json", st, g);
    snprintf(m.weights, sizeof m.weights, "weights-%llu-%llu.safetensors", st, g);
    snprintf(m.states, sizeof m.states, "states-%llu-%llu.npy", st, g);
    if (lat->has_ext && !o->no_input)
        snprintf(m.input, sizeof m.input, "input-%llu-%llu.npy", st, g);

    const float *states = o->states ? o->states : lat->states;
    char path[4096];
    int64_t sshape[4] = {lat->Z, lat->Y, lat->X, lat->S};
    int64_t ishape[3] = {lat->Y, lat->X, lat->E};
    if (join(path, sizeof path, dir, m.states) != 0)
        return ml_fail(lat, MOELAT_ERR_INVALID, "checkpoint: directory name too long: %.200s", dir);
    if (npy_write(path, states, 4, sshape, err, sizeof err) != 0)
        return ml_fail(lat, MOELAT_ERR_IO, "checkpoint: %s", err);
    m.states_xxh = xxh_floats(states, lat->N * (size_t)lat->S);
    memcpy(m.states_shape, sshape, sizeof sshape);
    memcpy(m.input_shape, ishape, sizeof ishape);
    if (m.input[0]) {
        join(path, sizeof path, dir, m.input);
        if (npy_write(path, lat->ext, 3, ishape, err, sizeof err) != 0)
            return ml_fail(lat, MOELAT_ERR_IO, "checkpoint: %s", err);
        m.input_xxh = xxh_floats(lat->ext, (size_t)lat->X * lat->Y * lat->E);
    }
    join(path, sizeof path, dir, m.weights);
    moelat_status s = moelat_save_weights(lat, path);
    if (s != MOELAT_OK) {
        char why[sizeof lat->err];
        snprintf(why, sizeof why, "%s", lat->err);
        return ml_fail(lat, s, "checkpoint: %s", why);
    }
    if (ckpt_file_xxh(path, &m.weights_xxh, err, sizeof err) != 0)
        return ml_fail(lat, MOELAT_ERR_IO, "checkpoint: %s", err);
    join(path, sizeof path, dir, m.config);
    if ((s = write_json(lat, path, config_json(&lat->cfg), &m.config_xxh)) != MOELAT_OK)
        return s;

    json_t *man = ckpt_manifest_json_ex(&m, MOELAT_VERSION, o->key, o->value);
    if (!man)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "checkpoint: out of memory");
    join(path, sizeof path, dir, CKPT_MANIFEST);
    if ((s = write_json(lat, path, man, NULL)) != MOELAT_OK)
        return s;
    remove_stale(dir, &m, o->keep);
    return MOELAT_OK;
}

moelat_status moelat_save_checkpoint(moelat_lattice *lat, const char *dir) {
    if (!lat)
        return MOELAT_ERR_INVALID;
    if (!dir || !*dir)
        return ml_fail(lat, MOELAT_ERR_INVALID, "checkpoint: no directory given");
    char err[1024];
    uint64_t gen;
    if (ckpt_begin(dir, &gen, err, sizeof err) != 0)
        return ml_fail(lat, MOELAT_ERR_IO, "checkpoint: %s", err);
    return ckpt_save_gen(lat, dir, gen, NULL);
}

int ckpt_read(const char *dir, ckpt_manifest *m, const char *key, json_t **value, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (value)
        *value = NULL;
    char path[4096];
    if (!dir || join(path, sizeof path, dir, CKPT_MANIFEST) != 0) {
        snprintf(err, errlen, "checkpoint: bad directory name");
        return -1;
    }
    struct stat sb;
    errno = 0;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "checkpoint %s: not a directory%s%s", dir, errno ? ": " : "",
                 errno ? strerror(errno) : "");
        return -1;
    }
    if (lstat(path, &sb) != 0) {
        snprintf(err, errlen, "checkpoint %s: no %s (%s): no complete checkpoint was saved there",
                 dir, CKPT_MANIFEST, strerror(errno));
        return -1;
    }
    size_t len;
    char *text = ml_read_regular(path, &len, err, errlen);
    if (!text)
        return -1;
    int rc = ckpt_manifest_parse_ex(text, len, path, m, key, value, err, errlen);
    free(text);
    return rc;
}

static int read_manifest(const char *dir, ckpt_manifest *m, char *err, size_t errlen) {
    return ckpt_read(dir, m, NULL, NULL, err, errlen);
}

/* The checkpoint's model config over a copy of base. */
static moelat_status read_config(const char *dir, const ckpt_manifest *m, const moelat_config *base,
                                 moelat_config *out, char *err, size_t errlen) {
    char path[4096];
    if (join(path, sizeof path, dir, m->config) != 0) {
        snprintf(err, errlen, "checkpoint: bad directory name");
        return MOELAT_ERR_INVALID;
    }
    size_t len;
    char *text = ml_read_regular(path, &len, err, errlen);
    if (!text)
        return MOELAT_ERR_IO;
    uint64_t h = XXH64(text, len, 0);
    if (h != m->config_xxh) {
        char a[17], b[17];
        ckpt_hex(a, h);
        ckpt_hex(b, m->config_xxh);
        ml_errf(err, errlen,
                "%s: checksum %s, manifest says %s (the model config was edited or replaced "
                "since step %llu was saved)",
                path, a, b, (unsigned long long)m->step);
        free(text);
        return MOELAT_ERR_FORMAT;
    }
    moelat_config c = *base;
    moelat_status st = ml_config_load_string(text, len, path, &c, err, errlen);
    free(text);
    if (st != MOELAT_OK)
        return MOELAT_ERR_FORMAT;
    c.seed = m->seed;
    *out = *base;
    copy_model_fields(out, &c);
    return MOELAT_OK;
}

moelat_status moelat_checkpoint_config(const char *dir, moelat_config *cfg, uint64_t *step,
                                       char *err, size_t errlen) {
    char dummy[2];
    if (!err) {
        err = dummy;
        errlen = sizeof dummy;
    }
    ckpt_manifest m;
    if (!cfg) {
        snprintf(err, errlen, "checkpoint: no config to fill");
        return MOELAT_ERR_INVALID;
    }
    /* In the library's layout, written back within the caller's. */
    moelat_config full;
    if (ml_config_import(&full, cfg, err, errlen) != MOELAT_OK)
        return MOELAT_ERR_INVALID;
    if (read_manifest(dir, &m, err, errlen) != 0)
        return MOELAT_ERR_FORMAT;
    moelat_status st = read_config(dir, &m, &full, &full, err, errlen);
    if (st == MOELAT_OK)
        st = ml_config_export(cfg, &full, err, errlen);
    if (st == MOELAT_OK && step)
        *step = m.step;
    return st;
}

int ckpt_config_diff(const char *dir, const ckpt_manifest *m, const moelat_config *cur, char *out, size_t len,
                     char *err, size_t errlen) {
    moelat_config ck;
    if (read_config(dir, m, cur, &ck, err, errlen) != MOELAT_OK)
        return -1;
    return config_diff(&ck, cur, out, len);
}

/* Reads a float32 .npy of known shape and checks the manifest's checksum. */
static moelat_status read_checked(moelat_lattice *lat, const char *dir, const char *name,
                                  int ndim, const int64_t *shape, uint64_t xxh, float **out) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    char path[4096];
    join(path, sizeof path, dir, name);
    float *buf = malloc(n * sizeof(float));
    if (!buf)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "checkpoint: out of memory for %s", path);
    char err[1024];
    if (npy_read_expect(path, buf, ndim, shape, err, sizeof err) != 0) {
        free(buf);
        return ml_fail(lat, MOELAT_ERR_FORMAT, "checkpoint: %s", err);
    }
    uint64_t h = xxh_floats(buf, n);
    if (h != xxh) {
        free(buf);
        return ml_fail(lat, MOELAT_ERR_FORMAT,
                       "checkpoint: %s: checksum %016" PRIx64 ", manifest says %016" PRIx64
                       " (the file was changed or damaged)",
                       path, h, xxh);
    }
    *out = buf;
    return MOELAT_OK;
}

/* The weights file's bytes against the manifest, also when the lattice
 * keeps its own weights: a checkpoint is accepted whole or not at all. */
static moelat_status check_weights_file(moelat_lattice *lat, const char *dir,
                                        const ckpt_manifest *m) {
    char path[4096], err[1024];
    uint64_t h;
    join(path, sizeof path, dir, m->weights);
    if (ckpt_file_xxh(path, &h, err, sizeof err) != 0)
        return ml_fail(lat, MOELAT_ERR_FORMAT, "checkpoint: %s", err);
    if (h != m->weights_xxh) {
        char a[17], b[17];
        ckpt_hex(a, h);
        ckpt_hex(b, m->weights_xxh);
        return ml_fail(lat, MOELAT_ERR_FORMAT,
                       "checkpoint: %s: checksum %s, manifest says %s (the file was changed or "
                       "damaged)",
                       path, a, b);
    }
    return MOELAT_OK;
}

/* Loads the checkpoint's weights; on any failure the old ones are put back. */
static moelat_status load_weights(moelat_lattice *lat, const char *dir, const ckpt_manifest *m) {
    moelat_status pinned = ml_res_weights_will_change(lat);
    if (pinned != MOELAT_OK)
        return pinned;
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int nb = ml_param_blocks(lat, blocks);
    size_t total = 0;
    for (int b = 0; b < nb; b++)
        total += blocks[b]->n_floats;
    float *backup = malloc((total ? total : 1) * sizeof(float));
    if (!backup)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "checkpoint: out of memory");
    for (size_t b = 0, off = 0; b < (size_t)nb; off += blocks[b]->n_floats, b++)
        memcpy(backup + off, blocks[b]->data, blocks[b]->n_floats * sizeof(float));

    char path[4096];
    join(path, sizeof path, dir, m->weights);
    moelat_status st = MOELAT_OK;
    if (ml_params_load(path, blocks, nb, lat->err, sizeof lat->err) != 0) {
        char why[sizeof lat->err];
        snprintf(why, sizeof why, "%s", lat->err);
        st = ml_fail(lat, MOELAT_ERR_FORMAT, "checkpoint: %s", why);
    } else {
        uint64_t d = ml_params_digest(blocks, nb);
        if (d != m->weights_digest)
            st = ml_fail(lat, MOELAT_ERR_FORMAT,
                         "checkpoint: %s: weights digest %016" PRIx64 ", manifest says %016" PRIx64
                         " (the file was changed or damaged)",
                         path, d, m->weights_digest);
    }
    if (st != MOELAT_OK)
        for (size_t b = 0, off = 0; b < (size_t)nb; off += blocks[b]->n_floats, b++)
            memcpy(blocks[b]->data, backup + off, blocks[b]->n_floats * sizeof(float));
    free(backup);
    if (st == MOELAT_OK)
        st = ml_res_host_wrote_weights(lat);
    return st;
}

moelat_status moelat_resume_checkpoint_ex(moelat_lattice *lat, const char *dir, unsigned flags) {
    if (!lat)
        return MOELAT_ERR_INVALID;
    if (flags & ~MOELAT_RESUME_KEEP_WEIGHTS)
        return ml_fail(lat, MOELAT_ERR_INVALID, "checkpoint: unknown resume flags 0x%x", flags);
    ckpt_manifest m;
    char err[1024];
    if (read_manifest(dir, &m, err, sizeof err) != 0)
        return ml_fail(lat, MOELAT_ERR_FORMAT, "%s", err);
    moelat_config ck;
    moelat_status st = read_config(dir, &m, &lat->cfg, &ck, err, sizeof err);
    if (st != MOELAT_OK)
        return ml_fail(lat, st, "checkpoint: %s", err);
    char diff[1536];
    if (config_diff(&ck, &lat->cfg, diff, sizeof diff) > 0)
        return ml_fail(lat, MOELAT_ERR_INVALID, "cannot resume from %s: %s", dir, diff);
    if (flags & MOELAT_RESUME_KEEP_WEIGHTS) {
        uint64_t d = moelat_weights_digest(lat);
        if (d != m.weights_digest)
            return ml_fail(lat, MOELAT_ERR_INVALID,
                           "cannot resume from %s: checkpoint weights digest %016" PRIx64
                           ", this run %016" PRIx64 " (other weights)",
                           dir, m.weights_digest, d);
    }

    int64_t sshape[4] = {lat->Z, lat->Y, lat->X, lat->S};
    int64_t ishape[3] = {lat->Y, lat->X, lat->E};
    if ((st = check_weights_file(lat, dir, &m)) != MOELAT_OK)
        return st;
    float *states = NULL, *input = NULL;
    if ((st = read_checked(lat, dir, m.states, 4, sshape, m.states_xxh, &states)) != MOELAT_OK)
        return st;
    if (m.input[0] &&
        (st = read_checked(lat, dir, m.input, 3, ishape, m.input_xxh, &input)) != MOELAT_OK) {
        free(states);
        return st;
    }
    if (!(flags & MOELAT_RESUME_KEEP_WEIGHTS) && (st = load_weights(lat, dir, &m)) != MOELAT_OK) {
        free(states);
        free(input);
        return st;
    }
    st = moelat_set_states(lat, states, lat->N * (size_t)lat->S);
    if (st == MOELAT_OK)
        st = moelat_set_external_input(lat, input, input ? (size_t)lat->X * lat->Y * lat->E : 0);
    free(states);
    free(input);
    if (st == MOELAT_OK) {
        lat->step_count = m.step;
        lat->err[0] = '\0';
    }
    return st;
}

moelat_status moelat_resume_checkpoint(moelat_lattice *lat, const char *dir) {
    return moelat_resume_checkpoint_ex(lat, dir, 0);
}
