/* Training checkpoints (train_ckpt.h). */
#include "train_ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "moelat/util.h"

#define FORMAT "moelat-train-checkpoint/1"

/* The optimizer settings as a JSON object, to store and to compare. */
static json_t *opt_json(const moelat_optimizer_config *c) {
    return json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:f}", "kind",
                     c->kind == MOELAT_OPT_SGD ? "sgd" : "adamw", "lr", c->lr, "weight_decay", c->weight_decay, "beta1",
                     c->beta1, "beta2", c->beta2, "eps", c->eps, "momentum", c->momentum, "clip_norm", c->clip_norm,
                     "warmup_steps", (json_int_t)c->warmup_steps, "total_steps", (json_int_t)c->total_steps, "min_lr",
                     c->min_lr);
}

static json_t *points_json(const train_point *p, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_pack("[i, i, I, f, f]", p[i].epoch, p[i].batch, (json_int_t)p[i].samples,
                                           p[i].loss, p[i].lr));
    return a;
}

static int points_load(json_t *a, train_point **v, int *n, int *cap) {
    if (!json_is_array(a))
        return -1;
    size_t len = json_array_size(a);
    *v = len ? malloc(len * sizeof **v) : NULL;
    if (len && !*v)
        return -1;
    for (size_t i = 0; i < len; i++) {
        json_int_t e, b, s;
        double loss, lr;
        if (json_unpack(json_array_get(a, i), "[I, I, I, F, F]", &e, &b, &s, &loss, &lr) != 0)
            return -1;
        (*v)[i] = (train_point){(int32_t)e, (int32_t)b, (uint64_t)s, loss, lr};
    }
    *n = *cap = (int)len;
    return 0;
}

/* Generation of the manifest in dir, or 0 when there is none. */
static uint64_t current_generation(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/train.json", dir);
    json_t *m = json_load_file(path, 0, NULL);
    json_int_t g = 0;
    if (m)
        json_unpack(m, "{s:I}", "generation", &g);
    json_decref(m);
    return (uint64_t)g;
}

/* Removes weights.<g>.* and optimizer.<g>.* files of other generations. */
static void remove_stale(const char *dir, uint64_t keep) {
    DIR *dp = opendir(dir);
    if (!dp)
        return;
    struct dirent *de;
    char keep_w[64], keep_o[64], path[4400];
    snprintf(keep_w, sizeof keep_w, "weights.%" PRIu64 ".safetensors", keep);
    snprintf(keep_o, sizeof keep_o, "optimizer.%" PRIu64 ".safetensors", keep);
    while ((de = readdir(dp)) != NULL) {
        const char *n = de->d_name;
        if ((strncmp(n, "weights.", 8) == 0 || strncmp(n, "optimizer.", 10) == 0) &&
            strstr(n, ".safetensors") && strcmp(n, keep_w) != 0 && strcmp(n, keep_o) != 0) {
            snprintf(path, sizeof path, "%s/%s", dir, n);
            unlink(path);
        }
    }
    closedir(dp);
}

int train_ckpt_save(const char *dir, moelat_lattice *lat, const moelat_optimizer *opt,
                    const moelat_optimizer_config *cfg, const train_ckpt_pos *pos, const train_result *r, char *err,
                    size_t errlen) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "checkpoint %s: cannot create the directory: %s", dir, strerror(errno));
        return -1;
    }
    uint64_t gen = current_generation(dir) + 1;
    char wname[64], oname[64], path[4200];
    snprintf(wname, sizeof wname, "weights.%" PRIu64 ".safetensors", gen);
    snprintf(oname, sizeof oname, "optimizer.%" PRIu64 ".safetensors", gen);
    snprintf(path, sizeof path, "%s/%s", dir, wname);
    if (moelat_save_weights(lat, path) != MOELAT_OK) {
        snprintf(err, errlen, "checkpoint: %s", moelat_last_error(lat));
        return -1;
    }
    uint64_t step = moelat_optimizer_steps(opt);
    int rc = -1;
    json_t *man = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, oname);
    if (moelat_optimizer_save(opt, path, err, errlen) != MOELAT_OK)
        goto out;
    char digest[17];
    snprintf(digest, sizeof digest, "%016" PRIx64, moelat_weights_digest(lat));
    man = json_pack("{s:s, s:I, s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:o, s:{s:o, s:o}}", "format", FORMAT,
                    "generation", (json_int_t)gen, "weights", wname, "optimizer_state", oname, "weights_digest", digest,
                    "epoch", pos->epoch, "batch", pos->batch, "samples", (json_int_t)pos->samples, "optimizer_step",
                    (json_int_t)step, "optimizer", opt_json(cfg), "history", "train", points_json(r->train, r->n_train),
                    "validation", points_json(r->val, r->n_val));
    char *text = man ? json_dumps(man, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) : NULL;
    if (!text) {
        snprintf(err, errlen, "checkpoint: out of memory for the manifest");
        goto out;
    }
    snprintf(path, sizeof path, "%s/train.json", dir);
    rc = moelat_write_file_atomic(path, text, strlen(text), err, errlen) == MOELAT_OK ? 0 : -1;
    free(text);
    if (rc == 0)
        remove_stale(dir, gen);
out:
    json_decref(man);
    return rc;
}

/* Names the first optimizer setting that differs from the checkpoint's. */
static int same_settings(json_t *stored, const moelat_optimizer_config *cfg, char *err, size_t errlen) {
    json_t *now = opt_json(cfg);
    const char *key;
    json_t *val;
    int ok = 1;
    json_object_foreach(now, key, val) {
        json_t *old = json_object_get(stored, key);
        if (!old || !json_equal(old, val)) {
            char *a = old ? json_dumps(old, JSON_ENCODE_ANY) : NULL, *b = json_dumps(val, JSON_ENCODE_ANY);
            snprintf(err, errlen, "optimizer setting '%s' is %s in the checkpoint, %s in this run", key,
                     a ? a : "missing", b ? b : "?");
            free(a);
            free(b);
            ok = 0;
            break;
        }
    }
    json_decref(now);
    return ok;
}

int train_ckpt_load(const char *dir, moelat_lattice *lat, moelat_optimizer *opt,
                    const moelat_optimizer_config *cfg, train_ckpt_pos *pos, train_result *r, char *err,
                    size_t errlen) {
    char path[4200], why[1024] = "";
    snprintf(path, sizeof path, "%s/train.json", dir);
    json_error_t je;
    json_t *man = json_load_file(path, 0, &je);
    if (!man) {
        snprintf(err, errlen, "resume: %s: %s", path, je.text);
        return -1;
    }
    const char *format = NULL, *wname = NULL, *oname = NULL, *digest = NULL;
    json_int_t epoch, batch, samples, step;
    json_t *settings = NULL, *train = NULL, *val = NULL;
    int rc = -1;
    if (json_unpack_ex(man, &je, 0, "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:{s:o, s:o}}", "format", &format,
                       "weights", &wname, "optimizer_state", &oname, "weights_digest", &digest, "epoch", &epoch,
                       "batch", &batch, "samples", &samples, "optimizer_step", &step, "optimizer", &settings,
                       "history", "train", &train, "validation", &val) != 0) {
        snprintf(why, sizeof why, "%s", je.text);
    } else if (strcmp(format, FORMAT) != 0) {
        snprintf(why, sizeof why, "format '%s', expected '%s'", format, FORMAT);
    } else if (strchr(wname, '/') || strchr(oname, '/')) {
        snprintf(why, sizeof why, "file names must not contain '/'");
    } else if (epoch < 0 || batch < 0 || samples < 0 || step < 0) {
        snprintf(why, sizeof why, "a negative epoch, batch, sample or step count");
    } else if (!same_settings(settings, cfg, why, sizeof why)) {
        /* why names the setting */
    }
    if (why[0]) {
        snprintf(err, errlen, "resume: %s: %s", path, why);
        goto out;
    }
    snprintf(path, sizeof path, "%s/%s", dir, wname);
    if (moelat_load_weights(lat, path) != MOELAT_OK) {
        snprintf(err, errlen, "resume: %s", moelat_last_error(lat));
        goto out;
    }
    char now[17];
    snprintf(now, sizeof now, "%016" PRIx64, moelat_weights_digest(lat));
    if (strcmp(now, digest) != 0) {
        snprintf(err, errlen, "resume: %s: weights digest %s, the manifest records %s", path, now, digest);
        goto out;
    }
    snprintf(path, sizeof path, "%s/%s", dir, oname);
    if (moelat_optimizer_load(opt, path, (uint64_t)step, err, errlen) != MOELAT_OK)
        goto out;
    train_result_free(r);
    if (points_load(train, &r->train, &r->n_train, &r->cap_train) != 0 ||
        points_load(val, &r->val, &r->n_val, &r->cap_val) != 0) {
        snprintf(err, errlen, "resume: %s/train.json: the loss history is malformed", dir);
        goto out;
    }
    pos->epoch = (int)epoch;
    pos->batch = (int)batch;
    pos->samples = (uint64_t)samples;
    rc = 0;
out:
    json_decref(man);
    return rc;
}
