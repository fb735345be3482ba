/* The public lattice API: creation (experts, stencil, weights, states),
 * stepping, states and inputs, files, mode switches. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/abi.h"
#include"core/config_parse.h"
#include "core/gate.h"
#include"core/lattice_internal.h"
#include "base/log.h"
#include "io/npy.h"
#include "base/rng.h"

moelat_status ml_fail(moelat_lattice *lat, moelat_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lat->err, sizeof lat->err, fmt, ap);
    va_end(ap);
    return status;
}

const char *moelat_last_error(const moelat_lattice *lat) { return lat ? lat->err : "no lattice"; }
const moelat_config *moelat_lattice_config(const moelat_lattice *lat) { return &lat->cfg; }
size_t moelat_cell_count(const moelat_lattice *lat) { return lat->N; }
int32_t moelat_state_size(const moelat_lattice *lat) { return lat->S; }
uint64_t moelat_step_count(const moelat_lattice *lat) { return lat->step_count; }
moelat_mode moelat_get_mode(const moelat_lattice *lat) { return lat->mode; }
const char *moelat_device_name(const moelat_lattice *lat) {
    return lat->backend.ops ? lat->device_name : "host";
}

const float *ml_cell_ext(const moelat_lattice *lat, int x, int y, int z) {
    if (z != 0 || !lat->has_ext)
        return NULL;
    return lat->ext + ((size_t)x + (size_t)lat->X * y) * lat->E;
}

int ml_param_blocks(moelat_lattice *lat, ml_param_block **blocks) {
    for (int k = 0; k < MOELAT_BANDS; k++)
        blocks[k] = &lat->expert[k].params;
    blocks[MOELAT_BANDS] = &lat->gate;
    return MOELAT_BANDS + 1;
}

/* Binds band k to the plugin named in the config and sets up its tensors. */
static moelat_status setup_expert(moelat_lattice *lat, int k, char *err, size_t errlen) {
    const char *want = lat->cfg.expert[k];
    const ml_plugin *p = ml_plugin_find(&lat->plugins, want);
    if (!p) {
        size_t pos = (size_t)snprintf(err, errlen, "no expert plugin named '%s' for band %s; loaded:",
                                      want, moelat_band_name(k));
        for (int i = 0; i < lat->plugins.n_plugins && pos < errlen; i++)
            pos += (size_t)snprintf(err + pos, errlen - pos, " %s", lat->plugins.plugins[i].desc->name);
        for (int i = 0; i < lat->plugins.n_errors && pos < errlen; i++)
            pos += (size_t)snprintf(err + pos, errlen - pos, "; failed: %s (%s)",
                                    lat->plugins.errors[i].path, lat->plugins.errors[i].reason);
        return MOELAT_ERR_PLUGIN;
    }
    ml_expert_slot *e = &lat->expert[k];
    e->desc = p->desc;
    snprintf(e->path, sizeof e->path, "%s", p->path);
    moelat_expert_dims *d = &e->dims;
    memset(d, 0, sizeof *d);
    d->struct_size = sizeof *d;
    d->state_size = lat->S;
    d->ext_size = lat->E;
    d->cnf_steps = lat->cfg.cnf_steps;
    d->cnf_mode = lat->cfg.cnf_mode;
    for (int h = 0; h < MOELAT_MAX_HIDDEN && p->desc->hidden_names[h]; h++)
        d->hidden[h] = moelat_config_hidden(&lat->cfg, p->desc->hidden_names[h],
                                            p->desc->hidden_defaults[h]);
    if (p->desc->validate) {
        char why[512] = "";
        if (p->desc->validate(d, why, sizeof why) != MOELAT_EXPERT_OK) {
            snprintf(err, errlen, "expert '%s' (band %s) rejects this configuration: %s",
                     p->desc->name, moelat_band_name(k), why);
            return MOELAT_ERR_INVALID;
        }
    }
    int n = p->desc->tensors(d, NULL, 0);
    moelat_tensor_spec *specs = calloc((size_t)(n > 0 ? n : 1), sizeof *specs);
    if (n < 0 || !specs || p->desc->tensors(d, specs, n) != n) {
        free(specs);
        snprintf(err, errlen, "expert '%s' (%s) failed to list its tensors", p->desc->name, p->path);
        return MOELAT_ERR_PLUGIN;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s_expert.", moelat_band_name(k));
    int rc = ml_params_create(&e->params, prefix, specs, n);
    free(specs);
    if (rc != 0) {
        snprintf(err, errlen, "out of memory for the tensors of expert '%s'", p->desc->name);
        return MOELAT_ERR_NOMEM;
    }
    if (p->desc->init_params) {
        if (p->desc->init_params(d, lat->cfg.seed, e->params.tensors) != MOELAT_EXPERT_OK) {
            snprintf(err, errlen, "expert '%s' failed to initialise its parameters", p->desc->name);
            return MOELAT_ERR_PLUGIN;
        }
    } else {
        ml_params_init_default(&e->params, lat->cfg.seed);
    }
    int max_nbr = lat->stencil.count[k] > 0 ? lat->stencil.count[k] : 1;
    e->scratch_floats = p->desc->host_scratch_floats ? p->desc->host_scratch_floats(d, max_nbr) : 0;
    return MOELAT_OK;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

moelat_status moelat_lattice_create(const moelat_config *user_cfg, moelat_lattice **out, char *err,
                                    size_t errlen) {
    *out = NULL;
    char dummy[2];
    if (!err) {
        err = dummy;
        errlen = sizeof dummy;
    }
    /* The caller's fields in the library's layout, later ones at their defaults. */
    moelat_config full;
    if (ml_config_import(&full, user_cfg, err, errlen) != MOELAT_OK)
        return MOELAT_ERR_INVALID;
    const moelat_config *cfg = &full;
    if (ml_config_validate(cfg, err, errlen) != 0)
        return MOELAT_ERR_INVALID;
    moelat_lattice *lat = calloc(1, sizeof *lat);
    if (!lat) {
        snprintf(err, errlen, "out of memory");
        return MOELAT_ERR_NOMEM;
    }
    lat->cfg = *cfg;
    ml_residency_init(&lat->res);
    if (ml_tuning_parse(cfg->tuning, &lat->tuning, err, errlen) != 0) {
        free(lat);
        return MOELAT_ERR_INVALID; /* ml_config_validate let it through: cannot happen */
    }
    lat->X = cfg->dims[0];
    lat->Y = cfg->dims[1];
    lat->Z = cfg->dims[2];
    lat->S = cfg->state_size;
    lat->E = MOELAT_EXT_SIZE;
    lat->N = (size_t)lat->X * lat->Y * lat->Z;
    lat->gate_hidden = moelat_config_hidden(cfg, "gate_hidden", lat->S);
    moelat_status st = MOELAT_OK;

    if (ml_stencil_build(moelat_config_radius(cfg), cfg->band_ratio, &lat->stencil) != 0) {
        snprintf(err, errlen, "out of memory for the stencil");
        st = MOELAT_ERR_NOMEM;
        goto fail;
    }
    const char *paths[MOELAT_MAX_PLUGIN_PATHS];
    for (int i = 0; i < cfg->n_plugin_paths; i++)
        paths[i] = cfg->plugin_paths[i];
    ml_plugin_discover(paths, cfg->n_plugin_paths, &lat->plugins);
    for (int i = 0; i < lat->plugins.n_errors; i++)
        ML_WARN("plugins", "%s: %s", lat->plugins.errors[i].path, lat->plugins.errors[i].reason);
    for (int k = 0; k < MOELAT_BANDS; k++)
        if ((st = setup_expert(lat, k, err, errlen)) != MOELAT_OK)
            goto fail;

    moelat_tensor_spec gate_specs[GATE_N_TENSORS];
    ml_gate_specs(lat->S, lat->gate_hidden, gate_specs);
    if (ml_params_create(&lat->gate, "gating_network.", gate_specs, GATE_N_TENSORS) != 0) {
        snprintf(err, errlen, "out of memory for the gate");
        st = MOELAT_ERR_NOMEM;
        goto fail;
    }
    ml_params_init_default(&lat->gate, cfg->seed);

    size_t nf = lat->N * (size_t)lat->S;
    lat->states = malloc(nf * sizeof(float));
    /* Zeroed: a slab owner's planes outside its slab are never written. */
    lat->next = calloc(nf, sizeof(float));
    lat->ext = calloc((size_t)lat->X * lat->Y * lat->E, sizeof(float));
    if (!lat->states || !lat->next || !lat->ext) {
        snprintf(err, errlen, "out of memory for %zu cells of %d values", lat->N, lat->S);
        st = MOELAT_ERR_NOMEM;
        goto fail;
    }
    ml_rng_normal_fill(cfg->seed, 0, lat->states, nf, 0.1);

    lat->n_threads = cfg->threads > 0 ? cfg->threads : default_threads();
    lat->pool = ml_pool_create(lat->n_threads);
    if (!lat->pool) {
        snprintf(err, errlen, "could not start %d host threads", lat->n_threads);
        st = MOELAT_ERR_NOMEM;
        goto fail;
    }
    if (cfg->chunk[0] > 0 && cfg->chunk[1] > 0 && cfg->chunk[2] > 0)
        memcpy(lat->chunk_size, cfg->chunk, sizeof lat->chunk_size);
    else
        ml_chunks_default_size(cfg->dims, lat->S, 0, lat->chunk_size);
    lat->active_z0 = 0;
    lat->active_z1 = lat->Z;
    if (ml_chunks_make(cfg->dims, lat->chunk_size, &lat->chunks, &lat->n_chunks) != 0) {
        snprintf(err, errlen, "out of memory for chunks");
        st = MOELAT_ERR_NOMEM;
        goto fail;
    }
    if (cfg->batch_threshold > 0) {
        lat->batch_threshold = cfg->batch_threshold;
    } else {
        int32_t m = lat->X > lat->Y ? lat->X : lat->Y;
        m = m > lat->Z ? m : lat->Z;
        lat->batch_threshold = m <= 10 ? 8 : (m <= 20 ? 4 : 2);
    }
    lat->mode = MOELAT_MODE_PERCELL;
    snprintf(lat->path_why, sizeof lat->path_why, "mode percell asked for");
    snprintf(lat->device_name, sizeof lat->device_name, "host");
    if (cfg->mode != MOELAT_MODE_PERCELL) {
        st = moelat_set_mode(lat, (moelat_mode)cfg->mode);
        if (st != MOELAT_OK) {
            snprintf(err, errlen, "%s", lat->err);
            goto fail;
        }
    }
    lat->err[0] = '\0';
    *out = lat;
    return MOELAT_OK;
fail:
    moelat_lattice_destroy(lat);
    return st;
}

void moelat_lattice_destroy(moelat_lattice *lat) {
    if (!lat)
        return;
    if (lat->grad_detach) /* live recordings are orphaned, not left dangling */
        lat->grad_detach(lat, 1);
    ml_lattice_close_device(lat);
    ml_percell_free(lat);
    if (lat->pool)
        ml_pool_destroy(lat->pool);
    for (int k = 0; k < MOELAT_BANDS; k++)
        ml_params_free(&lat->expert[k].params);
    ml_params_free(&lat->gate);
    ml_plugin_set_free(&lat->plugins);
    ml_stencil_free(&lat->stencil);
    free(lat->chunks);
    free(lat->states);
    free(lat->next);
    free(lat->ext);
    free(lat);
}

moelat_status moelat_get_states(moelat_lattice *lat, float *dst, size_t count) {
    if (count != lat->N * (size_t)lat->S)
        return ml_fail(lat, MOELAT_ERR_INVALID, "states buffer holds %zu floats, expected %zu (N=%zu x S=%d)",
                       count, lat->N * (size_t)lat->S, lat->N, lat->S);
    moelat_status st = ml_res_host_states(lat);
    if (st != MOELAT_OK)
        return st;
    memcpy(dst, lat->states, count * sizeof(float));
    return MOELAT_OK;
}

moelat_status moelat_set_states(moelat_lattice *lat, const float *src, size_t count) {
    if (count != lat->N * (size_t)lat->S)
        return ml_fail(lat, MOELAT_ERR_INVALID, "states buffer holds %zu floats, expected %zu (N=%zu x S=%d)",
                       count, lat->N * (size_t)lat->S, lat->N, lat->S);
    memcpy(lat->states, src, count * sizeof(float));
    ml_res_host_wrote_states(lat);
    return MOELAT_OK;
}

moelat_status moelat_set_external_input(moelat_lattice *lat, const float *ext, size_t count) {
    size_t want = (size_t)lat->X * lat->Y * lat->E;
    if (!ext) {
        memset(lat->ext, 0, want * sizeof(float));
        lat->has_ext = 0;
        ml_res_host_wrote_input(lat);
        return MOELAT_OK;
    }
    if (count != want)
        return ml_fail(lat, MOELAT_ERR_INVALID, "external input holds %zu floats, expected %zu (X=%d x Y=%d x E=%d)",
                       count, want, lat->X, lat->Y, lat->E);
    memcpy(lat->ext, ext, want * sizeof(float));
    lat->has_ext = 1;
    ml_res_host_wrote_input(lat);
    return MOELAT_OK;
}

moelat_status moelat_get_outputs(moelat_lattice *lat, float *dst, size_t count) {
    size_t face = (size_t)lat->X * lat->Y * lat->S;
    if (count != face)
        return ml_fail(lat, MOELAT_ERR_INVALID, "outputs buffer holds %zu floats, expected %zu (X=%d x Y=%d x S=%d)",
                       count, face, lat->X, lat->Y, lat->S);
    moelat_status st = ml_res_host_states(lat);
    if (st != MOELAT_OK)
        return st;
    memcpy(dst, lat->states + (size_t)(lat->Z - 1) * face, face * sizeof(float));
    return MOELAT_OK;
}

moelat_status moelat_load_weights(moelat_lattice *lat, const char *path) {
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int n = ml_param_blocks(lat, blocks);
    moelat_status st = ml_res_weights_will_change(lat);
    if (st == MOELAT_OK)
        st = ml_params_load(path, blocks, n, lat->err, sizeof lat->err);
    if (st != MOELAT_OK)
        return st;
    return ml_res_host_wrote_weights(lat);
}

moelat_status moelat_save_weights(moelat_lattice *lat, const char *path) {
    ml_param_block *blocks[MOELAT_BANDS + 1];
    int n = ml_param_blocks(lat, blocks);
    moelat_status st = ml_res_host_weights(lat);
    if (st != MOELAT_OK)
        return st;
    if (ml_params_save(path, blocks, n, lat->err, sizeof lat->err) != 0)
        return MOELAT_ERR_IO;
    return MOELAT_OK;
}

static void states_shape(const moelat_lattice *lat, int64_t shape[4]) {
    shape[0] = lat->Z;
    shape[1] = lat->Y;
    shape[2] = lat->X;
    shape[3] = lat->S;
}

moelat_status moelat_load_states(moelat_lattice *lat, const char *path) {
    int64_t shape[4];
    states_shape(lat, shape);
    float *tmp = malloc(lat->N * (size_t)lat->S * sizeof(float));
    if (!tmp)
        return ml_fail(lat, MOELAT_ERR_NOMEM, "out of memory");
    if (npy_read_expect(path, tmp, 4, shape, lat->err, sizeof lat->err) != 0) {
        free(tmp);
        return MOELAT_ERR_FORMAT;
    }
    moelat_status st = moelat_set_states(lat, tmp, lat->N * (size_t)lat->S);
    free(tmp);
    return st;
}

moelat_status moelat_save_states(moelat_lattice *lat, const char *path) {
    int64_t shape[4];
    states_shape(lat, shape);
    moelat_status st = ml_res_host_states(lat);
    if (st != MOELAT_OK)
        return st;
    if (npy_write(path, lat->states, 4, shape, lat->err, sizeof lat->err) != 0)
        return MOELAT_ERR_IO;
    return MOELAT_OK;
}
