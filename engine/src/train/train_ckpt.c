/* Training checkpoints (moelat/train.h): a run checkpoint (io/checkpoint.h)
 * of the lattice's weights with the initial states as its states, plus
 * the optimizer's moments in optimizer-0-<gen>.safetensors and, under the
 * manifest's key "train", everything else a resumed run needs or must
 * agree with. The manifest's self-checksum covers that key; its
 * optimizer_state entry carries the moments file's checksum. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <jansson.h>

#include "base/atomic_file.h"
#include "base/file_util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "train/train_ckpt.h"
#include "moelat/util.h"

#define TRAIN_KEY "train"
#define TRAIN_FORMAT "moelat-train"
#define TRAIN_VERSION 1

static const char *mode_name(int32_t m) {
    return m == MOELAT_MODE_PERCELL ? "percell" : m == MOELAT_MODE_BATCH ? "batch" : m == MOELAT_MODE_AUTO ? "auto" : "?";
}

/* The optimizer settings as stored and compared. */
static json_t *opt_json(const moelat_optimizer_config *c) {
    return json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:f}", "kind",
                     c->kind == MOELAT_OPT_SGD ? "sgd" : "adamw", "lr", c->lr, "weight_decay", c->weight_decay, "beta1",
                     c->beta1, "beta2", c->beta2, "eps", c->eps, "momentum", c->momentum, "clip_norm", c->clip_norm,
                     "warmup_steps", (json_int_t)c->warmup_steps, "total_steps", (json_int_t)c->total_steps, "min_lr",
                     c->min_lr);
}

static json_t *real_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *points_json(const ml_train_history *h) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < h->n; i++) {
        const moelat_train_point *p = &h->v[i];
        json_t *e = json_pack("[i, i, I, o, o]", p->epoch, p->batch, (json_int_t)p->samples, real_or_null(p->loss),
                              real_or_null(p->lr));
        if (!e || json_array_append_new(a, e) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static uint64_t states_xxh(const moelat_trainer *t) { return XXH64(t->states0, t->N * t->S * sizeof(float), 0); }

static json_t *train_json(const moelat_trainer *t, const char *oname, uint64_t oxxh) {
    char ox[17], fp[17], seed[24];
    ckpt_hex(ox, oxxh);
    ckpt_hex(fp, t->ds ? t->ds->fingerprint : 0);
    snprintf(seed, sizeof seed, "%" PRIu64, t->p.seed);
    return json_pack("{s:s, s:i, s:{s:s, s:s}, s:I, s:I, s:i, s:i, s:I, s:{s:I, s:s},"
                     " s:{s:i, s:i, s:f, s:s, s:i, s:s, s:s, s:o}, s:{s:o, s:o}}",
                     "format", TRAIN_FORMAT, "version", TRAIN_VERSION, "optimizer_state", "file", oname, "xxh64", ox,
                     "optimizer_step", (json_int_t)moelat_optimizer_steps(t->opt), "extra_steps",
                     (json_int_t)t->extra_steps, "epoch", t->epoch, "batch", t->batch, "samples",
                     (json_int_t)t->samples, "data", "samples", (json_int_t)(t->ds ? t->ds->B : 0), "fingerprint", fp,
                     "options", "steps", t->p.steps, "batch_size", t->p.batch_size, "val_fraction", t->p.val_fraction,
                     "seed", seed, "epochs", t->p.epochs, "loss", ml_train_loss_name(t->p.loss), "mode",
                     mode_name(moelat_lattice_config(t->lat)->mode), "optimizer", opt_json(&t->opt_cfg), "history",
                     "train", points_json(&t->train), "validation", points_json(&t->val));
}

moelat_status moelat_trainer_save(moelat_trainer *t, const char *dir) {
    if (!t)
        return MOELAT_ERR_INVALID;
    if (!dir || !*dir)
        return ml_train_fail(t, MOELAT_ERR_INVALID, "checkpoint: no directory given");
    char err[1200], oname[64], path[4200];
    uint64_t gen, oxxh;
    if (ckpt_begin(dir, &gen, err, sizeof err) != 0)
        return ml_train_fail(t, MOELAT_ERR_IO, "checkpoint %s: %s", dir, err);
    snprintf(oname, sizeof oname, "optimizer-0-%" PRIu64 ".safetensors", gen);
    if (snprintf(path, sizeof path, "%s/%s", dir, oname) >= (int)sizeof path)
        return ml_train_fail(t, MOELAT_ERR_INVALID, "checkpoint: directory name too long");
    moelat_status st = ml_train_host_moments(t);
    if (st != MOELAT_OK)
        return st;
    st = moelat_optimizer_save(t->opt, path, err, sizeof err);
    if (st != MOELAT_OK)
        return ml_train_fail(t, st, "checkpoint: %s", err);
    if (ckpt_file_xxh(path, &oxxh, err, sizeof err) != 0)
        return ml_train_fail(t, MOELAT_ERR_IO, "checkpoint: %s", err);
    json_t *tj = train_json(t, oname, oxxh);
    if (!tj)
        return ml_train_fail(t, MOELAT_ERR_NOMEM, "checkpoint: out of memory for the manifest");
    ckpt_save_opts o = {.states = t->states0, .no_input = 1, .set_step = 1, .step = 0, .key = TRAIN_KEY,
                        .value = tj, .keep = oname};
    st = ckpt_save_gen(t->lat, dir, gen, &o);
    json_decref(tj);
    if (st != MOELAT_OK)
        return ml_train_fail(t, st, "%s", moelat_last_error(t->lat));
    return MOELAT_OK;
}

moelat_status ml_train_check_dir(moelat_trainer *t, const char *dir) {
    char err[1200];
    moelat_status st = moelat_file_check_output_dir(dir, CKPT_MANIFEST, err, sizeof err);
    return st == MOELAT_OK ? MOELAT_OK : ml_train_fail(t, st, "checkpoint directory %s: %s", dir, err);
}

/* ---- Reading ---------------------------------------------------------- */

/* What the "train" key holds. */
typedef struct ck_train {
    const char *oname, *loss, *mode;
    uint64_t oxxh, fingerprint, seed;
    int64_t opt_step, extra_steps, epoch, batch, samples, data_samples, steps, batch_size, epochs;
    double val_fraction;
    json_t *optimizer, *train, *val;
} ck_train;

/* Sets why to "key 'train.<key>' ..." and returns -1. */
static int bad(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    return -1;
}

static int get_int(json_t *o, const char *key, const char *path, int64_t *out, char *why, size_t len) {
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return bad(why, len, "key 'train.%s%s' is not a non-negative integer", path, key);
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static int get_str(json_t *o, const char *key, const char *path, const char **out, char *why, size_t len) {
    *out = json_string_value(json_object_get(o, key));
    return *out ? 0 : bad(why, len, "key 'train.%s%s' is not a string", path, key);
}

static int get_u64(json_t *o, const char *key, const char *path, int hex, uint64_t *out, char *why, size_t len) {
    const char *s;
    if (get_str(o, key, path, &s, why, len) != 0)
        return -1;
    char *end;
    errno = 0;
    *out = strtoull(s, &end, hex ? 16 : 10);
    if (!*s || *end || errno || s[0] == '-' || s[0] == '+' || s[0] == ' ' || (hex && strlen(s) != 16))
        return bad(why, len, "key 'train.%s%s' is not %s", path, key, hex ? "16 hex digits" : "a decimal string");
    return 0;
}

static int parse_train(json_t *tr, ck_train *c, char *why, size_t len) {
    memset(c, 0, sizeof *c);
    json_t *ver = json_object_get(tr, "version");
    const char *fmt = json_string_value(json_object_get(tr, "format"));
    if (!json_is_object(tr))
        return bad(why, len, "key 'train' is not an object");
    if (!fmt || strcmp(fmt, TRAIN_FORMAT) != 0 || !json_is_integer(ver) || json_integer_value(ver) != TRAIN_VERSION)
        return bad(why, len, "key 'train': not format '" TRAIN_FORMAT "' version %d", TRAIN_VERSION);
    json_t *os = json_object_get(tr, "optimizer_state"), *data = json_object_get(tr, "data");
    json_t *opts = json_object_get(tr, "options"), *hist = json_object_get(tr, "history");
    if (!json_is_object(os) || !json_is_object(data) || !json_is_object(opts) || !json_is_object(hist))
        return bad(why, len, "keys 'train.optimizer_state', 'train.data', 'train.options' and 'train.history' "
                             "must be objects");
    json_t *vf = json_object_get(opts, "val_fraction");
    if (get_str(os, "file", "optimizer_state.", &c->oname, why, len) != 0 ||
        get_u64(os, "xxh64", "optimizer_state.", 1, &c->oxxh, why, len) != 0 ||
        get_int(tr, "optimizer_step", "", &c->opt_step, why, len) != 0 ||
        get_int(tr, "extra_steps", "", &c->extra_steps, why, len) != 0 ||
        get_int(tr, "epoch", "", &c->epoch, why, len) != 0 || get_int(tr, "batch", "", &c->batch, why, len) != 0 ||
        get_int(tr, "samples", "", &c->samples, why, len) != 0 ||
        get_int(data, "samples", "data.", &c->data_samples, why, len) != 0 ||
        get_u64(data, "fingerprint", "data.", 1, &c->fingerprint, why, len) != 0 ||
        get_int(opts, "steps", "options.", &c->steps, why, len) != 0 ||
        get_int(opts, "batch_size", "options.", &c->batch_size, why, len) != 0 ||
        get_int(opts, "epochs", "options.", &c->epochs, why, len) != 0 ||
        get_u64(opts, "seed", "options.", 0, &c->seed, why, len) != 0 ||
        get_str(opts, "loss", "options.", &c->loss, why, len) != 0 ||
        get_str(opts, "mode", "options.", &c->mode, why, len) != 0)
        return -1;
    if (!json_is_real(vf))
        return bad(why, len, "key 'train.options.val_fraction' is not a number");
    c->val_fraction = json_real_value(vf);
    const char *o = c->oname;
    if (!*o || strchr(o, '/') || o[0] == '.' || strlen(o) > 200)
        return bad(why, len, "key 'train.optimizer_state.file' is not a file name in the directory");
    c->optimizer = json_object_get(opts, "optimizer");
    c->train = json_object_get(hist, "train");
    c->val = json_object_get(hist, "validation");
    if (!json_is_object(c->optimizer))
        return bad(why, len, "key 'train.options.optimizer' is not an object");
    if (!json_is_array(c->train) || !json_is_array(c->val))
        return bad(why, len, "keys 'train.history.train' and 'train.history.validation' must be arrays");
    return 0;
}

/* Appends "checkpoint <what> <a>, this run <b>". */
static void differ(char *out, size_t len, int *n, const char *what, const char *a, const char *b) {
    size_t pos = strlen(out);
    if (pos < len)
        snprintf(out + pos, len - pos, "%scheckpoint %s %s, this run %s", *n ? "; " : "", what, a, b);
    (*n)++;
}

static void differ_i(char *out, size_t len, int *n, const char *what, int64_t a, int64_t b) {
    char x[32], y[32];
    snprintf(x, sizeof x, "%lld", (long long)a);
    snprintf(y, sizeof y, "%lld", (long long)b);
    differ(out, len, n, what, x, y);
}

/* The optimizer settings that differ, in the words of the CLI's message. */
static void optimizer_diff(json_t *stored, const moelat_optimizer_config *cfg, char *out, size_t len, int *n) {
    json_t *now = opt_json(cfg);
    const char *key;
    json_t *val;
    json_object_foreach(now, key, val) {
        json_t *old = json_object_get(stored, key);
        if (old && json_equal(old, val))
            continue;
        char *a = old ? json_dumps(old, JSON_ENCODE_ANY) : NULL, *b = json_dumps(val, JSON_ENCODE_ANY);
        size_t pos = strlen(out);
        if (pos < len)
            snprintf(out + pos, len - pos, "%soptimizer setting '%s' is %s in the checkpoint, %s in this run",
                     *n ? "; " : "", key, a ? a : "missing", b ? b : "?");
        (*n)++;
        free(a);
        free(b);
    }
    json_decref(now);
}

/* Everything the checkpoint's run and this one must share. */
static int differences(moelat_trainer *t, const char *dir, const ckpt_manifest *m, const ck_train *c, char *out,
                       size_t len, char *err, size_t errlen) {
    int n = 0;
    out[0] = '\0';
    const moelat_dataset *ds = t->ds;
    if (c->data_samples != ds->B || c->fingerprint != ds->fingerprint) {
        char a[96], b[96];
        snprintf(a, sizeof a, "%lld samples (fingerprint %016" PRIx64 ")", (long long)c->data_samples,
                 c->fingerprint);
        snprintf(b, sizeof b, "%lld samples (fingerprint %016" PRIx64 ")", (long long)ds->B, ds->fingerprint);
        differ(out, len, &n, "data set", a, b);
    }
    if (c->steps != t->p.steps)
        differ_i(out, len, &n, "steps per sample", c->steps, t->p.steps);
    if (c->batch_size != t->p.batch_size)
        differ_i(out, len, &n, "batch size", c->batch_size, t->p.batch_size);
    if (c->val_fraction != t->p.val_fraction) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%.17g", c->val_fraction);
        snprintf(b, sizeof b, "%.17g", t->p.val_fraction);
        differ(out, len, &n, "validation fraction", a, b);
    }
    if (c->seed != t->p.seed) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%" PRIu64, c->seed);
        snprintf(b, sizeof b, "%" PRIu64, t->p.seed);
        differ(out, len, &n, "shuffle seed", a, b);
    }
    if (strcmp(c->loss, ml_train_loss_name(t->p.loss)) != 0)
        differ(out, len, &n, "loss", c->loss, ml_train_loss_name(t->p.loss));
    const char *mode = mode_name(moelat_lattice_config(t->lat)->mode);
    if (strcmp(c->mode, mode) != 0)
        differ(out, len, &n, "mode", c->mode, mode);
    uint64_t sx = states_xxh(t);
    if (sx != m->states_xxh) {
        char a[40], b[40];
        snprintf(a, sizeof a, "(checksum %016" PRIx64 ")", m->states_xxh);
        snprintf(b, sizeof b, "(checksum %016" PRIx64 ")", sx);
        differ(out, len, &n, "initial states", a, b);
    }
    optimizer_diff(c->optimizer, &t->opt_cfg, out, len, &n);
    size_t pos = strlen(out);
    int k = ckpt_config_diff(dir, m, moelat_lattice_config(t->lat), out + pos, len > pos ? len - pos : 0, err,
                             errlen);
    if (k < 0)
        return -1;
    if (k > 0 && n > 0 && pos + 2 < len) { /* join the two lists */
        memmove(out + pos + 2, out + pos, strlen(out + pos) + 1);
        memcpy(out + pos, "; ", 2);
    }
    return n + k;
}

/* A history point [epoch, batch, samples, loss, lr]; loss may be null
 * (NaN) only where allowed. */
static int get_point(json_t *e, int null_loss, moelat_train_point *p) {
    json_t *loss = json_array_get(e, 3), *lr = json_array_get(e, 4);
    for (size_t i = 0; i < 3; i++)
        if (!json_is_integer(json_array_get(e, i)))
            return -1;
    if (!json_is_array(e) || json_array_size(e) != 5 || !json_is_real(lr) || !(json_real_value(lr) >= 0) ||
        !isfinite(json_real_value(lr)))
        return -1;
    if (json_is_null(loss) ? !null_loss : !json_is_real(loss) || !(json_real_value(loss) >= 0) ||
                                              !isfinite(json_real_value(loss)))
        return -1;
    json_int_t ep = json_integer_value(json_array_get(e, 0)), b = json_integer_value(json_array_get(e, 1));
    json_int_t s = json_integer_value(json_array_get(e, 2));
    if (ep < 0 || ep > INT32_MAX || b < -1 || b > INT32_MAX || s < 0)
        return -1;
    *p = (moelat_train_point){(int32_t)ep, (int32_t)b, (uint64_t)s, json_is_null(loss) ? NAN : json_real_value(loss),
                              json_real_value(lr)};
    return 0;
}

/* The position, step counter and history against each other and against
 * this run's data and options (which equal the checkpoint's by now). */
static int check_progress(const moelat_trainer *t, const ck_train *c, ml_train_history *th, ml_train_history *vh,
                          char *why, size_t len) {
    int64_t nb = t->nb;
    if (c->epoch > t->p.epochs || (c->epoch == t->p.epochs && c->batch > 0))
        return bad(why, len, "key 'train.epoch' is %lld%s, past this run's %d epochs", (long long)c->epoch,
                   c->epoch == t->p.epochs ? " (a mini-batch into it)" : "", t->p.epochs);
    if (c->batch > nb)
        return bad(why, len, "key 'train.batch' is %lld, outside [0, %lld] (mini-batches per epoch)",
                   (long long)c->batch, (long long)nb);
    uint64_t want = ml_train_samples_at(t, c->epoch, c->batch);
    if ((uint64_t)c->samples != want)
        return bad(why, len, "key 'train.samples' is %lld, but epoch %lld, batch %lld means %llu", (long long)c->samples,
                   (long long)c->epoch, (long long)c->batch, (unsigned long long)want);
    int64_t steps = c->epoch * nb + c->batch;
    if (c->opt_step != steps + c->extra_steps)
        return bad(why, len, "key 'train.optimizer_step' is %lld, but the position means %lld (and %lld more steps)",
                   (long long)c->opt_step, (long long)steps, (long long)c->extra_steps);
    if ((int64_t)json_array_size(c->train) != steps)
        return bad(why, len, "key 'train.history.train' holds %zu points, the position means %lld",
                   json_array_size(c->train), (long long)steps);
    size_t nv = json_array_size(c->val);
    if (!(nv == (size_t)c->epoch + 1 || (nv == 0 && steps == 0)))
        return bad(why, len, "key 'train.history.validation' holds %zu points, the position means %lld", nv,
                   (long long)c->epoch + 1);
    for (int64_t i = 0; i < steps; i++) {
        moelat_train_point p;
        if (get_point(json_array_get(c->train, (size_t)i), 0, &p) != 0 || p.epoch != i / nb || p.batch != i % nb ||
            p.samples != ml_train_samples_at(t, p.epoch, p.batch + 1))
            return bad(why, len, "key 'train.history.train' point %lld is not [epoch %lld, batch %lld, samples %llu, "
                       "a finite loss >= 0, a finite rate >= 0]", (long long)i, (long long)(i / nb),
                       (long long)(i % nb), (unsigned long long)ml_train_samples_at(t, i / nb, i % nb + 1));
        if (ml_train_history_add(th, p) != 0)
            return bad(why, len, "out of memory for the loss history");
    }
    for (size_t j = 0; j < nv; j++) {
        moelat_train_point p;
        if (get_point(json_array_get(c->val, j), t->n_val == 0, &p) != 0 || p.epoch != (int32_t)j || p.batch != -1 ||
            p.samples != ml_train_samples_at(t, (int64_t)j, 0) || (t->n_val == 0) != isnan(p.loss))
            return bad(why, len, "key 'train.history.validation' point %zu is not [%zu, -1, %llu, %s, a finite rate "
                       ">= 0]", j, j, (unsigned long long)ml_train_samples_at(t, (int64_t)j, 0),
                       t->n_val ? "a finite loss >= 0" : "null (no validation samples)");
        if (ml_train_history_add(vh, p) != 0)
            return bad(why, len, "out of memory for the loss history");
    }
    return 0;
}

/* The moments file: its bytes against the manifest's checksum, then its
 * tensors into a new optimizer of this run's settings. */
static moelat_status load_moments(moelat_trainer *t, const char *dir, const ck_train *c, moelat_optimizer **out) {
    char path[4200], err[1200];
    snprintf(path, sizeof path, "%s/%s", dir, c->oname);
    size_t len;
    char *bytes = ml_read_regular(path, &len, err, sizeof err);
    if (!bytes)
        return ml_train_fail(t, MOELAT_ERR_IO, "resume: %s", err);
    uint64_t h = XXH64(bytes, len, 0);
    moelat_status st = MOELAT_OK;
    st_file f = {0};
    if (h != c->oxxh) {
        st = ml_train_fail(t, MOELAT_ERR_FORMAT,
                           "resume: %s: checksum %016" PRIx64 ", manifest says %016" PRIx64
                           " (the file was changed, damaged or replaced)", path, h, c->oxxh);
    } else if (st_read_mem(bytes, len, path, &f, err, sizeof err) != 0) {
        st = ml_train_fail(t, MOELAT_ERR_FORMAT, "resume: %s", err);
    } else {
        int adamw = t->opt_cfg.kind == MOELAT_OPT_ADAMW;
        const char *mname = adamw ? "exp_avg" : "momentum_buffer";
        const st_tensor *m = st_find(&f, mname), *v = adamw ? st_find(&f, "exp_avg_sq") : NULL;
        if (!m || m->numel != t->n_weights || (adamw && (!v || v->numel != t->n_weights)) ||
            f.n_tensors != (adamw ? 2 : 1)) {
            st = ml_train_fail(t, MOELAT_ERR_FORMAT, "resume: %s: expected exactly the %s tensor%s '%s'%s of %zu values",
                               path, adamw ? "AdamW" : "SGD", adamw ? "s" : "", mname,
                               adamw ? " and 'exp_avg_sq'" : "", t->n_weights);
        } else if ((st = moelat_optimizer_create(&t->opt_cfg, t->n_weights, out, err, sizeof err)) != MOELAT_OK) {
            ml_train_fail(t, st, "resume: %s", err);
        } else if ((st = moelat_optimizer_set_state(*out, (uint64_t)c->opt_step, m->data, v ? v->data : NULL)) !=
                   MOELAT_OK) {
            ml_train_fail(t, st, "resume: %s: %s", path, moelat_optimizer_last_error(*out));
            moelat_optimizer_destroy(*out);
            *out = NULL;
        }
    }
    st_free(&f);
    free(bytes);
    return st;
}

moelat_status moelat_trainer_resume(moelat_trainer *t, const char *dir) {
    if (!t)
        return MOELAT_ERR_INVALID;
    if (!dir || !*dir)
        return ml_train_fail(t, MOELAT_ERR_INVALID, "resume: no directory given");
    if (!t->ds)
        return ml_train_fail(t, MOELAT_ERR_INVALID, "resume: set the data set first (moelat_trainer_set_data)");
    char man[4200], err[1200], why[1500];
    snprintf(man, sizeof man, "%s/%s", dir, CKPT_MANIFEST);
    ckpt_manifest m;
    json_t *tr = NULL;
    if (ckpt_read(dir, &m, TRAIN_KEY, &tr, err, sizeof err) != 0)
        return ml_train_fail(t, MOELAT_ERR_FORMAT, "resume: %s", err);
    ck_train c;
    ml_train_history th = {0}, vh = {0};
    moelat_optimizer *opt = NULL;
    moelat_status st = MOELAT_ERR_FORMAT;
    char *diff = malloc(4096);
    if (!diff) {
        st = ml_train_fail(t, MOELAT_ERR_NOMEM, "resume: out of memory");
        goto out;
    }
    if (!tr) {
        ml_train_fail(t, st, "resume: %s: not a training checkpoint (no key '" TRAIN_KEY "')", man);
        goto out;
    }
    if (parse_train(tr, &c, why, sizeof why) != 0) {
        ml_train_fail(t, st, "resume: %s: %s", man, why);
        goto out;
    }
    if (m.step != 0 || m.input[0]) {
        ml_train_fail(t, st, "resume: %s: a training checkpoint records step 0 and no input (step %" PRIu64 ", input %s)",
                      man, m.step, m.input[0] ? m.input : "none");
        goto out;
    }
    int nd = differences(t, dir, &m, &c, diff, 4096, err, sizeof err);
    if (nd < 0) {
        ml_train_fail(t, st, "resume: %s", err);
        goto out;
    }
    if (nd > 0) {
        st = ml_train_fail(t, MOELAT_ERR_INVALID, "cannot resume from %s: %s", dir, diff);
        goto out;
    }
    if (check_progress(t, &c, &th, &vh, why, sizeof why) != 0) {
        ml_train_fail(t, st, "resume: %s: %s", man, why);
        goto out;
    }
    if ((st = load_moments(t, dir, &c, &opt)) != MOELAT_OK)
        goto out;
    /* Last, the lattice: its own checks (config, checksums, weights digest)
     * and, on success, the checkpoint's weights. */
    if ((st = moelat_resume_checkpoint_ex(t->lat, dir, 0)) != MOELAT_OK) {
        ml_train_fail(t, st, "resume: %s", moelat_last_error(t->lat));
        goto out;
    }
    if (moelat_weights_digest(t->lat) != m.weights_digest) {
        st = ml_train_fail(t, MOELAT_ERR_FORMAT, "resume: %s changed while it was read", dir);
        goto out;
    }
    moelat_optimizer_destroy(t->opt);
    t->opt = opt;
    t->moments = ML_MOMENTS_HOST; /* the device's are uploaded before its next step */
    opt = NULL;
    free(t->train.v);
    free(t->val.v);
    t->train = th;
    t->val = vh;
    th = vh = (ml_train_history){0};
    t->epoch = (int32_t)c.epoch;
    t->batch = (int32_t)c.batch;
    t->samples = (uint64_t)c.samples;
    t->extra_steps = (uint64_t)c.extra_steps;
    t->err[0] = '\0';
    st = MOELAT_OK;
out:
    moelat_optimizer_destroy(opt);
    free(th.v);
    free(vh.v);
    free(diff);
    json_decref(tr);
    return st;
}
