/* The built-in experts (local, functional, distant), loaded straight from
 * their shared objects:
 *  - descriptor, tensor names/order/shapes/init and parameter totals per
 *    preset against docs/MODEL.md, and validate();
 *  - host function against the numpy reference's golden files;
 *  - OpenCL path (built here from the helpers + cl_source) against the host
 *    function on a random lattice, as one chunk and as several chunks. */
#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <CL/cl.h>
#include <jansson.h>

#include "moelat/expert_abi.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "test_support.h"

enum { B_LOCAL, B_FUNCTIONAL, B_DISTANT, N_BANDS };
static const char *const k_names[N_BANDS] = {"local", "functional", "distant"};

/* ---- random numbers (seed printed; MOELAT_TEST_SEED repeats a run) ---- */

static uint64_t g_rng;

static uint64_t rng_next(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_uniform(double lo, double hi) {
    return lo + (hi - lo) * ((double)(rng_next() >> 11) * 0x1.0p-53);
}

static double rng_normal(double sigma) {
    double u1 = rng_uniform(1e-300, 1.0), u2 = rng_uniform(0.0, 1.0);
    return sigma * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int setup_seed(void **state) {
    (void)state;
    const char *env = getenv("MOELAT_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10)
                        : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    printf("# random seed %llu (MOELAT_TEST_SEED to repeat)\n", (unsigned long long)seed);
    g_rng = seed;
    return 0;
}

/* ---- plugins ---- */

static char g_last_log[2048];

/* Every message since the last reset, one per line. */
static char g_all_log[16384];

static void test_log(int level, const char *module, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(g_last_log, sizeof g_last_log, "%s: %s", module, msg);
    size_t used = strlen(g_all_log);
    snprintf(g_all_log + used, sizeof g_all_log - used, "%s: %s\n", module, msg);
    if (level <= MOELAT_LOG_WARN)
        fprintf(stderr, "[log %s] %s\n", module, msg);
}

static const moelat_host_services g_host = {
    .struct_size = sizeof(moelat_host_services), .log = test_log, .alloc = malloc, .free = free};

static void *g_handles[N_BANDS];

static const moelat_expert_descriptor *plugin(int band) {
    char path[1024];
    snprintf(path, sizeof path, "%s/moelat_expert_%s.so", MOELAT_EXPERTS_DIR, k_names[band]);
    if (!g_handles[band]) {
        g_handles[band] = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!g_handles[band])
            fail_msg("dlopen %s: %s", path, dlerror());
    }
    moelat_expert_entry_fn entry =
        (moelat_expert_entry_fn)dlsym(g_handles[band], MOELAT_EXPERT_ENTRY_NAME);
    if (!entry)
        fail_msg("%s: no symbol %s", path, MOELAT_EXPERT_ENTRY_NAME);
    const moelat_expert_descriptor *d = entry(&g_host);
    if (!d)
        fail_msg("%s: entry returned NULL", path);
    return d;
}

static void cl_close(void);

static int teardown_plugins(void **state) {
    (void)state;
    cl_close();
    for (int b = 0; b < N_BANDS; b++)
        if (g_handles[b]) {
            dlclose(g_handles[b]);
            g_handles[b] = NULL;
        }
    return 0;
}

/* ---- presets (docs/MODEL.md's table) ---- */

typedef struct preset {
    const char *name;
    int S;
    int local[3];  /* h1, h2, ph */
    int hd, md, H;
    long params[N_BANDS];
} preset;

static const preset k_presets[] = {
    {"debug", 24, {12, 12, 12}, 12, 8, 48, {1262, 10605, 4287}},
    {"experiment", 64, {32, 16, 64}, 32, 16, 32, {12082, 43277, 6139}},
    {"optimized", 128, {64, 32, 128}, 64, 32, 64, {47714, 164885, 23539}},
};

static const preset *find_preset(const char *name) {
    for (size_t i = 0; i < sizeof k_presets / sizeof k_presets[0]; i++)
        if (strcmp(k_presets[i].name, name) == 0)
            return &k_presets[i];
    fail_msg("unknown preset %s", name);
    return NULL;
}

static moelat_expert_dims make_dims(int band, const preset *p, int mode) {
    moelat_expert_dims d;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.state_size = p->S;
    d.ext_size = 16;
    d.cnf_steps = 3;
    d.cnf_mode = mode;
    if (band == B_LOCAL) {
        d.hidden[0] = p->local[0];
        d.hidden[1] = p->local[1];
        d.hidden[2] = p->local[2];
    } else if (band == B_FUNCTIONAL) {
        d.hidden[0] = p->hd;
        d.hidden[1] = p->md;
        d.hidden[2] = p->H;
    } else {
        d.hidden[0] = p->H;
    }
    return d;
}

/* ---- tensors ---- */

typedef struct tensor_set {
    int n;
    moelat_tensor_spec *specs;
    uint64_t *offsets; /* in floats, declaration order */
    size_t total;
    float *data;       /* every tensor, concatenated */
    const float **ptrs;
} tensor_set;

static void tensors_alloc(const moelat_expert_descriptor *d, const moelat_expert_dims *dims,
                          tensor_set *t) {
    memset(t, 0, sizeof *t);
    t->n = d->tensors(dims, NULL, 0);
    assert_true(t->n > 0);
    t->specs = calloc((size_t)t->n, sizeof *t->specs);
    t->offsets = calloc((size_t)t->n, sizeof *t->offsets);
    t->ptrs = calloc((size_t)t->n, sizeof *t->ptrs);
    assert_int_equal(d->tensors(dims, t->specs, t->n), t->n);
    for (int i = 0; i < t->n; i++) {
        t->offsets[i] = t->total;
        size_t n = 1;
        for (int k = 0; k < t->specs[i].ndim; k++)
            n *= (size_t)t->specs[i].shape[k];
        t->total += n;
    }
    t->data = calloc(t->total, sizeof *t->data);
    for (int i = 0; i < t->n; i++)
        t->ptrs[i] = t->data + t->offsets[i];
}

static void tensors_free(tensor_set *t) {
    free(t->specs);
    free(t->offsets);
    free(t->ptrs);
    free(t->data);
    memset(t, 0, sizeof *t);
}

static size_t numel(const moelat_tensor_spec *s) {
    size_t n = 1;
    for (int k = 0; k < s->ndim; k++)
        n *= (size_t)s->shape[k];
    return n;
}

/* Random weights near the init scale; never the init constants, and a
 * random sign for gamma (the model takes |gamma|). */
static void tensors_randomize(tensor_set *t) {
    for (int i = 0; i < t->n; i++) {
        const moelat_tensor_spec *s = &t->specs[i];
        float *v = t->data + t->offsets[i];
        size_t n = numel(s);
        for (size_t k = 0; k < n; k++) {
            if (s->init == MOELAT_INIT_UNIFORM_FAN_IN) {
                double a = 1.2 / sqrt((double)s->fan_in);
                v[k] = (float)rng_uniform(-a, a);
            } else if (s->ndim > 0) {
                v[k] = s->value + (float)rng_normal(s->value != 0.0f ? 0.2 : 0.1);
            } else {
                v[k] = s->value * (float)rng_uniform(0.5, 1.5);
                if (strstr(s->suffix, "damping_strength") && rng_uniform(0, 1) < 0.5)
                    v[k] = -v[k];
            }
        }
    }
}

/* ---- descriptors, specs, counts ---- */

static void test_descriptors(void **state) {
    (void)state;
    static const char *const hidden[N_BANDS][4] = {
        {"h1", "h2", "ph", NULL}, {"hd", "md", "ode_hidden", NULL}, {"ode_hidden", NULL}};
    static const int defaults[N_BANDS][3] = {{12, 12, 12}, {12, 8, 48}, {48}};
    for (int b = 0; b < N_BANDS; b++) {
        const moelat_expert_descriptor *d = plugin(b);
        assert_int_equal(d->abi_major, MOELAT_EXPERT_ABI_MAJOR);
        assert_true(d->struct_size >= offsetof(moelat_expert_descriptor, cl_release) +
                                          sizeof(d->cl_release));
        assert_string_equal(d->name, k_names[b]);
        assert_non_null(d->version);
        assert_non_null(d->description);
        for (int i = 0; i < 4; i++) {
            if (!hidden[b][i]) {
                assert_null(d->hidden_names[i]);
                break;
            }
            assert_non_null(d->hidden_names[i]);
            assert_string_equal(d->hidden_names[i], hidden[b][i]);
            assert_int_equal(d->hidden_defaults[i], defaults[b][i]);
        }
        assert_non_null(d->validate);
        assert_non_null(d->tensors);
        assert_non_null(d->host_scratch_floats);
        assert_non_null(d->host_cell);
        assert_non_null(d->cl_source);
        assert_non_null(d->cl_prepare);
        assert_non_null(d->cl_enqueue);
        assert_non_null(d->cl_release);
        /* per-step work: the functional projections, the local expert's
         * feature-major states for its CPU-shaped kernel */
        assert_true(b == B_DISTANT ? d->cl_step_begin == NULL : d->cl_step_begin != NULL);
        /* Kernels carry the expert's name; the joined source has every part. */
        char kname[64];
        snprintf(kname, sizeof kname, b == B_FUNCTIONAL ? "__kernel void %s_output(" : "__kernel void %s_expert(",
                 k_names[b]);
        assert_non_null(strstr(d->cl_source, kname));
        /* and the CPU-shaped variant (chosen on CPU devices) */
        snprintf(kname, sizeof kname, "__kernel void %s_cpu(", k_names[b]);
        assert_non_null(strstr(d->cl_source, kname));
        if (b != B_LOCAL)
            assert_non_null(strstr(d->cl_source, "cnf_wg_integrate"));
        /* The entry is idempotent. */
        assert_ptr_equal(plugin(b), d);
    }
}

static const char *const k_cnf_names[] = {
    "neural_ode.ode_network.0.weight", "neural_ode.ode_network.0.bias",
    "neural_ode.ode_network.3.weight", "neural_ode.ode_network.3.bias",
    "neural_ode.ode_network.5.weight", "neural_ode.ode_network.5.bias",
    "neural_ode.time_embedding.weight", "neural_ode.damping_strength",
    "neural_ode.input_norm.weight", "neural_ode.input_norm.bias",
    "neural_ode.output_norm.weight", "neural_ode.output_norm.bias",
    "solver.base_dt", "solver.lipschitz_factor", NULL};

/* docs/MODEL.md's names, in the plugins' declaration order. */
static int expected_names(int band, char names[][112]) {
    static const char *const local[] = {
        "neighbor_aggregator.0.weight", "neighbor_aggregator.0.bias",
        "neighbor_aggregator.2.weight", "neighbor_aggregator.2.bias",
        "state_processor.0.weight", "state_processor.0.bias", "state_processor.2.weight",
        "state_processor.2.bias", "alpha", "beta", "normalization.weight",
        "normalization.bias", NULL};
    static const char *const func_head[] = {
        "adaptive_gating.gating_network.0.weight", "adaptive_gating.gating_network.0.bias",
        "adaptive_gating.gating_network.2.weight", "adaptive_gating.gating_network.2.bias",
        "gnn_component.message_network.message_creator.0.weight",
        "gnn_component.message_network.message_creator.0.bias",
        "gnn_component.message_network.message_creator.2.weight",
        "gnn_component.message_network.message_creator.2.bias",
        "gnn_component.aggregator.attention_network.0.weight",
        "gnn_component.aggregator.attention_network.0.bias",
        "gnn_component.aggregator.attention_network.2.weight",
        "gnn_component.aggregator.attention_network.2.bias",
        "gnn_component.state_updater.update_gate.weight",
        "gnn_component.state_updater.update_gate.bias",
        "gnn_component.state_updater.reset_gate.weight",
        "gnn_component.state_updater.reset_gate.bias",
        "gnn_component.state_updater.candidate_network.weight",
        "gnn_component.state_updater.candidate_network.bias", NULL};
    static const char *const func_tail[] = {"result_processor.0.weight", "result_processor.0.bias",
                                            "result_processor.1.weight", "result_processor.1.bias",
                                            NULL};
    int n = 0;
    if (band == B_LOCAL) {
        for (int i = 0; local[i]; i++)
            snprintf(names[n++], 112, "%s", local[i]);
    } else if (band == B_DISTANT) {
        for (int i = 0; k_cnf_names[i]; i++)
            snprintf(names[n++], 112, "%s", k_cnf_names[i]);
    } else {
        for (int i = 0; func_head[i]; i++)
            snprintf(names[n++], 112, "%s", func_head[i]);
        for (int i = 0; k_cnf_names[i]; i++)
            snprintf(names[n++], 112, "cnf_component.%s", k_cnf_names[i]);
        for (int i = 0; func_tail[i]; i++)
            snprintf(names[n++], 112, "%s", func_tail[i]);
    }
    return n;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static const moelat_tensor_spec *spec_named(const tensor_set *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->specs[i].suffix, name) == 0)
            return &t->specs[i];
    fail_msg("no tensor %s", name);
    return NULL;
}

static void assert_shape(const tensor_set *t, const char *name, int d0, int d1) {
    const moelat_tensor_spec *s = spec_named(t, name);
    int nd = d1 > 0 ? 2 : 1;
    if (s->ndim != nd || s->shape[0] != d0 || (nd == 2 && s->shape[1] != d1))
        fail_msg("%s: shape ndim %d [%d, %d], expected ndim %d [%d, %d]", name, s->ndim,
                 s->shape[0], s->shape[1], nd, d0, d1);
}

/* Init rules of docs/MODEL.md: Linear U(fan_in = in), LayerNorm 1/0, scalars. */
static void check_inits(const tensor_set *t) {
    for (int i = 0; i < t->n; i++) {
        const moelat_tensor_spec *s = &t->specs[i];
        const char *nm = s->suffix;
        if (s->ndim == 0) {
            float want = strcmp(nm, "alpha") == 0                      ? 0.1f
                         : strcmp(nm, "beta") == 0                     ? 0.9f
                         : ends_with(nm, "damping_strength")           ? 0.1f
                         : ends_with(nm, "solver.lipschitz_factor")    ? 0.8f
                         : ends_with(nm, "solver.base_dt")             ? 0.1f
                                                                       : NAN;
            if (s->init != MOELAT_INIT_CONST || s->value != want)
                fail_msg("%s: scalar init %d value %g, expected const %g", nm, s->init,
                         (double)s->value, (double)want);
        } else if (strstr(nm, "norm") || strstr(nm, "result_processor.1")) {
            float want = ends_with(nm, ".weight") ? 1.0f : 0.0f;
            assert_int_equal(s->ndim, 1);
            if (s->init != MOELAT_INIT_CONST || s->value != want)
                fail_msg("%s: LayerNorm init %d value %g", nm, s->init, (double)s->value);
        } else if (s->ndim == 2) {
            assert_int_equal(s->init, MOELAT_INIT_UNIFORM_FAN_IN);
            if (s->fan_in != s->shape[1])
                fail_msg("%s: fan_in %d, in features %d", nm, s->fan_in, s->shape[1]);
        } else {
            /* a Linear bias follows its weight */
            assert_true(i > 0 && ends_with(nm, ".bias"));
            const moelat_tensor_spec *w = &t->specs[i - 1];
            assert_int_equal(s->init, MOELAT_INIT_UNIFORM_FAN_IN);
            if (s->fan_in != w->shape[1] || s->shape[0] != w->shape[0])
                fail_msg("%s: fan_in %d / size %d, weight is [%d, %d]", nm, s->fan_in,
                         s->shape[0], w->shape[0], w->shape[1]);
        }
    }
}

static void test_tensor_layouts(void **state) {
    (void)state;
    for (size_t p = 0; p < sizeof k_presets / sizeof k_presets[0]; p++) {
        const preset *pr = &k_presets[p];
        int S = pr->S, E = 16;
        for (int b = 0; b < N_BANDS; b++) {
            const moelat_expert_descriptor *d = plugin(b);
            moelat_expert_dims dims = make_dims(b, pr, 0);
            char err[256] = "";
            if (d->validate(&dims, err, sizeof err) != 0)
                fail_msg("%s %s rejected: %s", k_names[b], pr->name, err);
            tensor_set t;
            tensors_alloc(d, &dims, &t);
            char names[64][112];
            int n = expected_names(b, names);
            assert_int_equal(t.n, n);
            for (int i = 0; i < n; i++)
                if (strcmp(t.specs[i].suffix, names[i]) != 0)
                    fail_msg("%s tensor %d is %s, expected %s", k_names[b], i,
                             t.specs[i].suffix, names[i]);
            if ((long)t.total != pr->params[b])
                fail_msg("%s %s: %zu parameters, docs/MODEL.md says %ld", k_names[b], pr->name,
                         t.total, pr->params[b]);
            check_inits(&t);
            /* A cap smaller than the count writes only cap specs. */
            moelat_tensor_spec two[3];
            memset(two, 0x5a, sizeof two);
            assert_int_equal(d->tensors(&dims, two, 2), n);
            assert_string_equal(two[1].suffix, names[1]);
            assert_int_equal((unsigned char)two[2].suffix[0], 0x5a);

            if (b == B_LOCAL) {
                assert_shape(&t, "neighbor_aggregator.0.weight", pr->local[0], S);
                assert_shape(&t, "state_processor.0.weight", pr->local[2], S + pr->local[1]);
            } else {
                const char *pre = b == B_FUNCTIONAL ? "cnf_component." : "";
                char nm[160];
                snprintf(nm, sizeof nm, "%sneural_ode.time_embedding.weight", pre);
                assert_shape(&t, nm, pr->H / 4, 1);
                snprintf(nm, sizeof nm, "%sneural_ode.input_norm.weight", pre);
                assert_shape(&t, nm, 2 * S, 0);
                snprintf(nm, sizeof nm, "%sneural_ode.ode_network.3.weight", pre);
                assert_shape(&t, nm, pr->H / 2, pr->H);
            }
            if (b == B_FUNCTIONAL) {
                assert_shape(&t, "gnn_component.message_network.message_creator.0.weight", pr->hd,
                             2 * S);
                assert_shape(&t, "gnn_component.aggregator.attention_network.0.weight", pr->md,
                             pr->md + S);
                assert_shape(&t, "gnn_component.state_updater.reset_gate.weight", S,
                             S + pr->md + E);
                assert_shape(&t, "adaptive_gating.gating_network.0.weight", S / 2, 2 * S);
            }
            tensors_free(&t);
        }
    }
}

static void expect_rejected(int band, moelat_expert_dims dims, const char *what) {
    const moelat_expert_descriptor *d = plugin(band);
    char err[256] = "";
    if (d->validate(&dims, err, sizeof err) == 0)
        fail_msg("%s accepted %s", k_names[band], what);
    assert_true(strlen(err) > 0);
    assert_non_null(strstr(err, k_names[band]));
    assert_true(d->tensors(&dims, NULL, 0) < 0);
}

static void test_validate(void **state) {
    (void)state;
    const preset *dbg = find_preset("debug");
    moelat_expert_dims d = make_dims(B_FUNCTIONAL, dbg, 0);
    d.state_size = 23;
    expect_rejected(B_FUNCTIONAL, d, "odd S");
    for (int b = B_FUNCTIONAL; b <= B_DISTANT; b++) {
        int hslot = b == B_FUNCTIONAL ? 2 : 0;
        d = make_dims(b, dbg, 0);
        d.hidden[hslot] = 49;
        expect_rejected(b, d, "odd H");
        d = make_dims(b, dbg, 0);
        d.hidden[hslot] = 4 * 24 + 4; /* floor(H/4) = 25 > S = 24 */
        expect_rejected(b, d, "floor(H/4) > S");
        d = make_dims(b, dbg, 0);
        d.cnf_mode = 2;
        expect_rejected(b, d, "unknown CNF mode");
        d = make_dims(b, dbg, 0);
        d.cnf_steps = 0;
        expect_rejected(b, d, "zero CNF steps");
        /* floor(H/4) == S is allowed */
        d = make_dims(b, dbg, 1);
        d.hidden[hslot] = 96;
        char err[256];
        assert_int_equal(plugin(b)->validate(&d, err, sizeof err), 0);
    }
    d = make_dims(B_LOCAL, dbg, 0);
    d.hidden[1] = 0;
    expect_rejected(B_LOCAL, d, "hidden size 0");
}

/* ---- lattice, stencils, host evaluation ---- */

typedef struct lattice {
    int X, Y, Z, N, S, E;
    float *states; /* N x S */
    float *ext;    /* X x Y x E, z = 0 face */
    cl_int4 *off[N_BANDS];
    int n_off[N_BANDS];
} lattice;

/* docs/MODEL.md's band rule, compared in double. */
static int band_of(int dx, int dy, int dz, double r) {
    double d = sqrt((double)(dx * dx + dy * dy + dz * dz));
    if (d < 0.4 * r)
        return B_LOCAL;
    if (d <= 0.8 * r)
        return B_FUNCTIONAL;
    if (d <= 0.99 * r)
        return B_DISTANT;
    return -1;
}

static void build_stencils(lattice *L, double r) {
    int R = (int)ceil(r);
    for (int b = 0; b < N_BANDS; b++) {
        L->off[b] = calloc((size_t)(2 * R + 1) * (2 * R + 1) * (2 * R + 1), sizeof(cl_int4));
        L->n_off[b] = 0;
    }
    for (int dz = -R; dz <= R; dz++)
        for (int dy = -R; dy <= R; dy++)
            for (int dx = -R; dx <= R; dx++) {
                if (!dx && !dy && !dz)
                    continue;
                int b = band_of(dx, dy, dz, r);
                if (b >= 0)
                    L->off[b][L->n_off[b]++] = (cl_int4){{dx, dy, dz, 0}};
            }
}

static void lattice_free(lattice *L) {
    free(L->states);
    free(L->ext);
    for (int b = 0; b < N_BANDS; b++)
        free(L->off[b]);
    memset(L, 0, sizeof *L);
}

/* Old states of cell (x, y, z)'s neighbours in band b, in stencil order. */
static int gather(const lattice *L, int b, int x, int y, int z, float *buf) {
    int n = 0;
    for (int k = 0; k < L->n_off[b]; k++) {
        int nx = x + L->off[b][k].s[0], ny = y + L->off[b][k].s[1], nz = z + L->off[b][k].s[2];
        if (nx < 0 || ny < 0 || nz < 0 || nx >= L->X || ny >= L->Y || nz >= L->Z)
            continue;
        memcpy(buf + (size_t)n * L->S, L->states + (size_t)(nx + L->X * (ny + L->Y * nz)) * L->S,
               (size_t)L->S * sizeof *buf);
        n++;
    }
    return n;
}

/* host_cell for every cell with a neighbour in band b; zeros elsewhere. */
static void host_all(int b, const moelat_expert_dims *dims, const tensor_set *t, const lattice *L,
                     float *out, int *counts) {
    const moelat_expert_descriptor *d = plugin(b);
    float *neigh = malloc((size_t)L->n_off[b] * L->S * sizeof *neigh + 1);
    size_t ns = d->host_scratch_floats(dims, L->n_off[b]);
    /* Guard floats after the scratch catch an undersized host_scratch_floats. */
    float *scratch = malloc((ns + 64) * sizeof *scratch);
    float *zeros = calloc((size_t)L->E + 1, sizeof *zeros);
    for (size_t k = 0; k < ns + 64; k++)
        scratch[k] = 1234.5f;
    for (int z = 0; z < L->Z; z++)
        for (int y = 0; y < L->Y; y++)
            for (int x = 0; x < L->X; x++) {
                int i = x + L->X * (y + L->Y * z);
                int n = gather(L, b, x, y, z, neigh);
                if (counts)
                    counts[i] = n;
                float *o = out + (size_t)i * L->S;
                if (n == 0) {
                    memset(o, 0, (size_t)L->S * sizeof *o);
                    continue;
                }
                moelat_host_cell c = {
                    .struct_size = sizeof c,
                    .dims = dims,
                    .tensors = t->ptrs,
                    .x = L->states + (size_t)i * L->S,
                    .neighbours = neigh,
                    .count = n,
                    .ext = z == 0 ? L->ext + (size_t)(x + L->X * y) * L->E : zeros,
                    .cell = {x, y, z},
                    .out = o,
                    .scratch = scratch,
                };
                assert_int_equal(d->host_cell(&c), MOELAT_EXPERT_OK);
            }
    for (size_t k = ns; k < ns + 64; k++)
        if (scratch[k] != 1234.5f)
            fail_msg("%s wrote past its %zu scratch floats", k_names[b], ns);
    free(neigh);
    free(scratch);
    free(zeros);
}

static void random_lattice(lattice *L, int X, int Y, int Z, int S, double r) {
    memset(L, 0, sizeof *L);
    L->X = X, L->Y = Y, L->Z = Z, L->S = S, L->E = 16;
    L->N = X * Y * Z;
    L->states = malloc((size_t)L->N * S * sizeof(float));
    L->ext = malloc((size_t)X * Y * L->E * sizeof(float));
    for (size_t k = 0; k < (size_t)L->N * S; k++)
        L->states[k] = (float)rng_normal(0.5);
    for (size_t k = 0; k < (size_t)X * Y * L->E; k++)
        L->ext[k] = (float)rng_normal(1.0);
    build_stencils(L, r);
}

static double max_abs_diff(const float *a, const float *b, size_t n, size_t *where) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d))
            d = INFINITY;
        if (d > m) {
            m = d;
            if (where)
                *where = i;
        }
    }
    return m;
}

/* ---- the OpenCL path ---- */

typedef struct clenv {
    cl_device_id dev;
    cl_context ctx;
    cl_command_queue q;
} clenv;

#define CL_OK(call)                                                        \
    do {                                                                   \
        cl_int e_ = (call);                                                \
        if (e_ != CL_SUCCESS)                                              \
            fail_msg("%s failed: OpenCL error %d", #call, (int)e_);        \
    } while (0)

static int clenv_open(clenv *e) {
    cl_platform_id plats[8];
    cl_uint np = 0;
    if (clGetPlatformIDs(8, plats, &np) != CL_SUCCESS || np == 0)
        return -1;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 1, &e->dev, &nd) == CL_SUCCESS && nd)
            break;
        if (p + 1 == np)
            return -1;
    }
    cl_int err;
    e->ctx = clCreateContext(NULL, 1, &e->dev, NULL, NULL, &err);
    CL_OK(err);
    e->q = clCreateCommandQueue(e->ctx, e->dev, 0, &err);
    CL_OK(err);
    return 0;
}

/* One context for the whole run: oclgrind restarts its --log file with
 * every new context, which would drop the reports of earlier tests. */
static clenv g_cl;
static int g_cl_state; /* 0 not tried, 1 open, -1 no device */

static const clenv *cl_get(void) {
    if (g_cl_state == 0)
        g_cl_state = clenv_open(&g_cl) == 0 ? 1 : -1;
    return g_cl_state == 1 ? &g_cl : NULL;
}

static void cl_close(void) {
    if (g_cl_state == 1) {
        clReleaseCommandQueue(g_cl.q);
        clReleaseContext(g_cl.ctx);
    }
    g_cl_state = 0;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* helpers + cl_source, with the options the engine passes (and extra,
 * appended). */
static cl_program build_program_with(const clenv *e, const moelat_expert_descriptor *d,
                                     const moelat_expert_dims *dims, const char *extra) {
    char *helpers = read_text(MOELAT_SOURCE_DIR "/kernels_cl/moelat_helpers.cl");
    size_t len = strlen(helpers) + strlen(d->cl_source) + 2;
    char *src = malloc(len);
    snprintf(src, len, "%s\n%s", helpers, d->cl_source);
    char opts[512];
    int at = snprintf(opts, sizeof opts,
                      "-cl-std=CL1.2 -D MOELAT_S=%d -D MOELAT_E=%d -D MOELAT_CNF_STEPS=%d "
                      "-D MOELAT_CNF_MODE=%d",
                      dims->state_size, dims->ext_size, dims->cnf_steps, dims->cnf_mode);
    for (int i = 0; d->hidden_names[i]; i++)
        at += snprintf(opts + at, sizeof opts - (size_t)at, " -D MOELAT_H_%s=%d",
                       d->hidden_names[i], dims->hidden[i]);
    snprintf(opts + at, sizeof opts - (size_t)at, " %s", extra);
    cl_int err;
    const char *srcs[1] = {src};
    cl_program prog = clCreateProgramWithSource(e->ctx, 1, srcs, NULL, &err);
    CL_OK(err);
    err = clBuildProgram(prog, 1, &e->dev, opts, NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[16384] = "";
        clGetProgramBuildInfo(prog, e->dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
        fail_msg("building %s with %s: error %d\n%s", d->name, opts, (int)err, log);
    }
    free(helpers);
    free(src);
    return prog;
}

static cl_program build_program(const clenv *e, const moelat_expert_descriptor *d,
                                const moelat_expert_dims *dims) {
    return build_program_with(e, d, dims, "");
}

static cl_mem make_buffer(const clenv *e, size_t bytes, const void *host) {
    cl_int err;
    cl_mem m = clCreateBuffer(e->ctx, CL_MEM_READ_WRITE | (host ? CL_MEM_COPY_HOST_PTR : 0),
                              bytes ? bytes : 4, (void *)host, &err);
    CL_OK(err);
    return m;
}

typedef struct box {
    int origin[3], extent[3];
} box;

/* Cells the test claims have an empty band, whatever their neighbours: the
 * kernel must write zeros there (it trusts band_count). */
static int forced_empty(int i) { return i % 7 == 3; }

/* Runs the expert's OpenCL path over the given chunks into out (N x S). */
static void cl_run(const clenv *e, int b, const moelat_expert_dims *dims, const tensor_set *t,
                   const lattice *L, const box *boxes, int n_boxes, float *out) {
    const moelat_expert_descriptor *d = plugin(b);
    cl_program prog = build_program(e, d, dims);
    int S = L->S;
    cl_mem params = make_buffer(e, t->total * sizeof(float), t->data);
    cl_mem states = make_buffer(e, (size_t)L->N * S * sizeof(float), L->states);
    cl_mem ext = make_buffer(e, (size_t)L->X * L->Y * L->E * sizeof(float), L->ext);
    cl_mem offs = make_buffer(e, (size_t)L->n_off[b] * sizeof(cl_int4), L->off[b]);

    moelat_cl_setup setup = {.struct_size = sizeof setup,
                             .tuning = ts_tuning(),
                             .context = e->ctx,
                             .device = e->dev,
                             .program = prog,
                             .dims = dims,
                             .params = params,
                             .tensor_offsets = t->offsets,
                             .n_tensors = t->n,
                             .lattice = {L->X, L->Y, L->Z},
                             .max_chunk_cells = L->N};
    void *st = NULL;
    g_all_log[0] = '\0';
    assert_int_equal(d->cl_prepare(&setup, &st), MOELAT_EXPERT_OK);
    assert_non_null(st);
    /* a shape forced by the tuning took effect (lipschitz keeps the
     * work-group kernels whatever it says) */
    if (strstr(setup.tuning, "cl_shape=") && !strstr(g_all_log, "kernels (tuning cl_shape)"))
        fail_msg("the tuning '%s' chose no shape:\n%s", setup.tuning, g_all_log);
    if (d->cl_step_begin) {
        cl_event done = NULL;
        moelat_cl_step step = {.struct_size = sizeof step, .queue = e->q, .states = states,
                               .done = &done};
        assert_int_equal(d->cl_step_begin(st, &step), MOELAT_EXPERT_OK);
        /* NULL when the expert enqueued nothing (the ABI allows it: the
         * local expert's work-group kernel needs no per-step work) */
        assert_true(done != NULL || b == B_LOCAL);
        if (done) {
            CL_OK(clWaitForEvents(1, &done));
            clReleaseEvent(done);
        }
    }

    float *neigh = malloc((size_t)L->n_off[b] * S * sizeof(float) + 1);
    for (int k = 0; k < n_boxes; k++) {
        const box *bx = &boxes[k];
        int nc = bx->extent[0] * bx->extent[1] * bx->extent[2];
        float *mean = calloc((size_t)nc * S, sizeof(float));
        float *absmean = calloc((size_t)nc * S, sizeof(float));
        float *res = malloc((size_t)nc * S * sizeof(float));
        cl_int *count = calloc((size_t)nc, sizeof(cl_int));
        for (int c = 0; c < nc; c++) {
            int x = bx->origin[0] + c % bx->extent[0];
            int y = bx->origin[1] + (c / bx->extent[0]) % bx->extent[1];
            int z = bx->origin[2] + c / (bx->extent[0] * bx->extent[1]);
            int n = gather(L, b, x, y, z, neigh);
            if (forced_empty(x + L->X * (y + L->Y * z)))
                n = 0;
            count[c] = n;
            for (int j = 0; j < n; j++)
                for (int s = 0; s < S; s++) {
                    float v = neigh[(size_t)j * S + s];
                    mean[(size_t)c * S + s] += v / (float)n;
                    absmean[(size_t)c * S + s] += fabsf(v) / (float)n;
                }
        }
        cl_mem bmean = make_buffer(e, (size_t)nc * S * sizeof(float), mean);
        cl_mem babs = make_buffer(e, (size_t)nc * S * sizeof(float), absmean);
        cl_mem bcount = make_buffer(e, (size_t)nc * sizeof(cl_int), count);
        cl_mem bout = make_buffer(e, (size_t)nc * S * sizeof(float), NULL);
        size_t scratch_per_cell = d->cl_scratch_floats ? d->cl_scratch_floats(dims) : 0;
        cl_mem bscratch = scratch_per_cell ? make_buffer(e, (size_t)nc * scratch_per_cell * sizeof(float), NULL) : NULL;
        /* NaN everywhere first: a cell the kernel skips shows up. The fill's
         * event is the chunk's wait list. */
        for (size_t q = 0; q < (size_t)nc * S; q++)
            res[q] = NAN;
        cl_event filled = NULL, done = NULL;
        CL_OK(clEnqueueWriteBuffer(e->q, bout, CL_FALSE, 0, (size_t)nc * S * sizeof(float), res,
                                   0, NULL, &filled));
        const cl_event waits[1] = {filled};
        moelat_cl_chunk ch = {.struct_size = sizeof ch,
                              .queue = e->q,
                              .states = states,
                              .ext = ext,
                              .offsets = offs,
                              .n_offsets = L->n_off[b],
                              .origin = {bx->origin[0], bx->origin[1], bx->origin[2]},
                              .extent = {bx->extent[0], bx->extent[1], bx->extent[2]},
                              .n_cells = nc,
                              .band_mean = bmean,
                              .band_absmean = babs,
                              .band_count = bcount,
                              .out = bout,
                              .scratch = bscratch,
                              .num_wait = 1,
                              .wait = (const struct _cl_event *const *)waits,
                              .done = &done};
        assert_int_equal(d->cl_enqueue(st, &ch), MOELAT_EXPERT_OK);
        assert_non_null(done);
        CL_OK(clEnqueueReadBuffer(e->q, bout, CL_TRUE, 0, (size_t)nc * S * sizeof(float), res, 1,
                                  &done, NULL));
        clReleaseEvent(done);
        clReleaseEvent(filled);
        for (int c = 0; c < nc; c++) {
            int x = bx->origin[0] + c % bx->extent[0];
            int y = bx->origin[1] + (c / bx->extent[0]) % bx->extent[1];
            int z = bx->origin[2] + c / (bx->extent[0] * bx->extent[1]);
            memcpy(out + (size_t)(x + L->X * (y + L->Y * z)) * S, res + (size_t)c * S,
                   (size_t)S * sizeof(float));
        }
        clReleaseMemObject(bmean);
        clReleaseMemObject(babs);
        clReleaseMemObject(bcount);
        clReleaseMemObject(bout);
        if (bscratch)
            clReleaseMemObject(bscratch);
        free(mean);
        free(absmean);
        free(res);
        free(count);
    }
    free(neigh);
    d->cl_release(st);
    clReleaseMemObject(params);
    clReleaseMemObject(states);
    clReleaseMemObject(ext);
    clReleaseMemObject(offs);
    clReleaseProgram(prog);
}

/* Host vs OpenCL on a random 9x8x7 debug lattice, r = 2.7 (6 / 26 / 48). */
static void check_cl_agreement(int b, int mode) {
    const clenv *e = cl_get();
    if (!e) {
        printf("# no OpenCL device: skipped\n");
        skip();
    }
    const preset *dbg = find_preset("debug");
    moelat_expert_dims dims = make_dims(b, dbg, mode);
    tensor_set t;
    tensors_alloc(plugin(b), &dims, &t);
    tensors_randomize(&t);
    /* MOELAT_EXPERTS_SMALL=1: a 4x4x3 lattice (corners still have every
     * band) and only the two-chunk run, for running the kernels under
     * oclgrind. */
    int small = getenv("MOELAT_EXPERTS_SMALL") != NULL;
    int X = small ? 4 : 9, Y = small ? 4 : 8, Z = small ? 3 : 7;
    lattice L;
    random_lattice(&L, X, Y, Z, dbg->S, 2.7);
    assert_int_equal(L.n_off[B_LOCAL], 6);
    assert_int_equal(L.n_off[B_FUNCTIONAL], 26);
    assert_int_equal(L.n_off[B_DISTANT], 48);

    size_t n = (size_t)L.N * L.S;
    float *host = malloc(n * sizeof *host), *dev = malloc(n * sizeof *dev);
    int *counts = malloc((size_t)L.N * sizeof *counts);
    host_all(b, &dims, &t, &L, host, counts);
    for (int i = 0; i < L.N; i++) {
        assert_true(counts[i] > 0); /* every band is populated on this shape */
        if (forced_empty(i))
            memset(host + (size_t)i * L.S, 0, (size_t)L.S * sizeof *host);
    }
    double biggest = 0.0;
    for (size_t k = 0; k < n; k++)
        biggest = fmax(biggest, fabs(host[k]));
    assert_true(biggest > 0.1); /* the outputs are not trivially small */

    /* One chunk; two along x (uneven); three: a z slab, then the rest
     * split along y (chunks whose origin is off the input face). */
    int hx = X / 2, hz = Z / 2, hy = (5 * Y) / 8;
    const box whole[1] = {{{0, 0, 0}, {X, Y, Z}}};
    const box halves_x[2] = {{{0, 0, 0}, {hx, Y, Z}}, {{hx, 0, 0}, {X - hx, Y, Z}}};
    const box split_zy[3] = {{{0, 0, 0}, {X, Y, hz}},
                             {{0, 0, hz}, {X, hy, Z - hz}},
                             {{0, hy, hz}, {X, Y - hy, Z - hz}}};
    const struct {
        const char *name;
        const box *boxes;
        int n;
    } runs[] = {{"one chunk", whole, 1}, {"two chunks (x)", halves_x, 2},
                {"three chunks (z, y)", split_zy, 3}};
    /* docs/MODEL.md suggests 1e-3 in lipschitz mode; the difference-carrying
     * evaluation of cnf.cl and the double host CNF keep it near 1e-6, so a
     * looser check would hide a regression. */
    double tol = mode == 1 ? 1e-4 : 1e-5;
    for (int r = small ? 1 : 0; r < (small ? 2 : 3); r++) {
        for (size_t k = 0; k < n; k++)
            dev[k] = NAN;
        cl_run(e, b, &dims, &t, &L, runs[r].boxes, runs[r].n, dev);
        size_t where = 0;
        double diff = max_abs_diff(host, dev, n, &where);
        printf("# %s %s, %s: max |host - cl| = %.3g (cell %zu)\n", k_names[b],
               mode ? "lipschitz" : "euler", runs[r].name, diff, where / (size_t)L.S);
        if (!(diff <= tol))
            fail_msg("%s %s: host and OpenCL differ by %.3g at cell %zu value %zu (host %g, cl "
                     "%g), tolerance %g",
                     k_names[b], runs[r].name, diff, where / (size_t)L.S, where % (size_t)L.S,
                     (double)host[where], (double)dev[where], tol);
        for (int i = 0; i < L.N; i++)
            if (forced_empty(i))
                for (int s = 0; s < L.S; s++)
                    assert_true(dev[(size_t)i * L.S + s] == 0.0f);
    }
    free(host);
    free(dev);
    free(counts);
    lattice_free(&L);
    tensors_free(&t);
}

static void test_cl_local(void **state) {
    (void)state;
    check_cl_agreement(B_LOCAL, 0);
}
static void test_cl_functional_euler(void **state) {
    (void)state;
    check_cl_agreement(B_FUNCTIONAL, 0);
}
static void test_cl_functional_lipschitz(void **state) {
    (void)state;
    check_cl_agreement(B_FUNCTIONAL, 1);
}
static void test_cl_distant_euler(void **state) {
    (void)state;
    check_cl_agreement(B_DISTANT, 0);
}
static void test_cl_distant_lipschitz(void **state) {
    (void)state;
    check_cl_agreement(B_DISTANT, 1);
}

/* The modes differ (lipschitz is not silently euler) and |gamma| is used. */
static void test_cnf_modes_differ(void **state) {
    (void)state;
    const preset *dbg = find_preset("debug");
    lattice L;
    random_lattice(&L, 5, 5, 5, dbg->S, 2.7);
    size_t n = (size_t)L.N * L.S;
    float *a = malloc(n * sizeof *a), *c = malloc(n * sizeof *c);
    moelat_expert_dims de = make_dims(B_DISTANT, dbg, 0), dl = make_dims(B_DISTANT, dbg, 1);
    tensor_set t;
    tensors_alloc(plugin(B_DISTANT), &de, &t);
    tensors_randomize(&t);
    host_all(B_DISTANT, &de, &t, &L, a, NULL);
    host_all(B_DISTANT, &dl, &t, &L, c, NULL);
    assert_true(max_abs_diff(a, c, n, NULL) > 1e-3);
    /* gamma enters as |gamma|: flipping its sign changes nothing */
    float *gamma = t.data + t.offsets[7];
    *gamma = -*gamma;
    host_all(B_DISTANT, &de, &t, &L, c, NULL);
    assert_true(max_abs_diff(a, c, n, NULL) == 0.0);
    free(a);
    free(c);
    tensors_free(&t);
    lattice_free(&L);
}

/* cl_prepare with a wrong tensor count, and functional's chunk before its
 * step: both refused with a message naming the expert. */
/* The functional kernel's cells per work-group follow the device's local
 * memory (MOELAT_LOCAL_MEM): at S = 192 and 128 lanes four cells need
 * more than 48 KB, so a 48 KB device gets fewer, and the kernel's local
 * footprint fits; with room to spare it keeps four. */
static void test_cl_functional_local_fit(void **state) {
    (void)state;
    const clenv *e = cl_get();
    if (!e)
        skip();
    const moelat_expert_descriptor *d = plugin(B_FUNCTIONAL);
    moelat_expert_dims dims = make_dims(B_FUNCTIONAL, find_preset("optimized"), 0);
    dims.state_size = 192;
    const struct {
        const char *opts;
        size_t max_cells, min_cells;
        cl_ulong limit;
    } cases[] = {
        {"-D MOELAT_WG=128 -D MOELAT_LOCAL_MEM=49152", 2, 1, 49152},
        {"-D MOELAT_WG=128 -D MOELAT_LOCAL_MEM=1048576", 4, 4, 1048576},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cl_program prog = build_program_with(e, d, &dims, cases[i].opts);
        cl_int err;
        cl_kernel cells = clCreateKernel(prog, "functional_cells_per_group", &err);
        CL_OK(err);
        size_t wg[3];
        CL_OK(clGetKernelWorkGroupInfo(cells, e->dev, CL_KERNEL_COMPILE_WORK_GROUP_SIZE, sizeof wg, wg, NULL));
        cl_kernel out = clCreateKernel(prog, "functional_output", &err);
        CL_OK(err);
        cl_ulong mem = 0;
        CL_OK(clGetKernelWorkGroupInfo(out, e->dev, CL_KERNEL_LOCAL_MEM_SIZE, sizeof mem, &mem, NULL));
        print_message("# %s: %zu cells per work-group, %llu bytes of local memory\n", cases[i].opts, wg[0],
                      (unsigned long long)mem);
        assert_in_range(wg[0], cases[i].min_cells, cases[i].max_cells);
        assert_true(mem <= cases[i].limit);
        clReleaseKernel(out);
        clReleaseKernel(cells);
        clReleaseProgram(prog);
    }
}

static void test_cl_errors(void **state) {
    (void)state;
    const clenv *e = cl_get();
    if (!e)
        skip();
    const preset *dbg = find_preset("debug");
    for (int b = 0; b < N_BANDS; b++) {
        const moelat_expert_descriptor *d = plugin(b);
        moelat_expert_dims dims = make_dims(b, dbg, 0);
        tensor_set t;
        tensors_alloc(d, &dims, &t);
        cl_program prog = build_program(e, d, &dims);
        cl_mem params = make_buffer(e, t.total * sizeof(float), t.data);
        moelat_cl_setup setup = {.struct_size = sizeof setup, .tuning = ts_tuning(), .context = e->ctx,
                                 .device = e->dev, .program = prog, .dims = &dims, .params = params,
                                 .tensor_offsets = t.offsets, .n_tensors = t.n - 1,
                                 .lattice = {3, 3, 3}, .max_chunk_cells = 27};
        void *st = (void *)&setup;
        g_last_log[0] = '\0';
        assert_int_equal(d->cl_prepare(&setup, &st), MOELAT_EXPERT_ERROR);
        assert_null(st);
        assert_non_null(strstr(g_last_log, k_names[b]));
        if (b == B_FUNCTIONAL) {
            setup.n_tensors = t.n;
            assert_int_equal(d->cl_prepare(&setup, &st), MOELAT_EXPERT_OK);
            cl_event done = (cl_event)&setup;
            moelat_cl_chunk ch = {.struct_size = sizeof ch, .queue = e->q, .n_cells = 1,
                                  .extent = {1, 1, 1}, .done = &done};
            g_last_log[0] = '\0';
            assert_int_equal(d->cl_enqueue(st, &ch), MOELAT_EXPERT_ERROR);
            assert_null(done);
            assert_non_null(strstr(g_last_log, "functional_expert"));
            d->cl_release(st);
        }
        clReleaseMemObject(params);
        clReleaseProgram(prog);
        tensors_free(&t);
    }
}

/* ---- tuning knobs (moelat_cl_setup.tuning, ABI 1.4) ---- */

/* A stand-in for the engine's "moelat.cl.build/1": records the options an
 * expert asks for and builds as the engine would. */
static const clenv *g_tune_env;
static const moelat_expert_dims *g_tune_dims;
static const moelat_expert_descriptor *g_tune_desc; /* not plugin(): its entry resets the host table */
static char g_tune_options[256];
static int g_tune_builds;

static int tune_build(const moelat_cl_setup *setup, const char *source, const char *extra,
                      struct _cl_program **program) {
    const moelat_expert_descriptor *d = g_tune_desc;
    assert_ptr_equal(source, d->cl_source);
    assert_ptr_equal(setup->dims, g_tune_dims);
    snprintf(g_tune_options, sizeof g_tune_options, "%s", extra);
    g_tune_builds++;
    *program = build_program_with(g_tune_env, d, g_tune_dims, extra);
    return MOELAT_EXPERT_OK;
}

static const moelat_ext_cl_build g_tune_ext = {sizeof g_tune_ext, tune_build};

static const void *tune_get_extension(const char *id) {
    return strcmp(id, MOELAT_EXT_CL_BUILD) == 0 ? &g_tune_ext : NULL;
}

static const moelat_host_services g_host_ext = {.struct_size = sizeof(moelat_host_services),
                                                .log = test_log,
                                                .alloc = malloc,
                                                .free = free,
                                                .get_extension = tune_get_extension};

/* Prepares the local expert with tuning (struct_size cut to size when
 * nonzero) and returns 1 when it succeeded; g_all_log holds its messages. */
static int tune_prepare(const moelat_expert_descriptor *d, moelat_cl_setup setup, const char *tuning,
                        uint32_t size) {
    /* The knob tunes the work-group kernel, which a CPU device (PoCL)
     * runs only when the tuning says cl_shape=gpu. */
    char with_shape[256];
    snprintf(with_shape, sizeof with_shape, "cl_shape=gpu,%s", tuning);
    setup.tuning = with_shape;
    if (size)
        setup.struct_size = size;
    g_all_log[0] = '\0';
    g_tune_options[0] = '\0';
    void *st = NULL;
    int ok = d->cl_prepare(&setup, &st) == MOELAT_EXPERT_OK;
    if (st)
        d->cl_release(st);
    return ok;
}

static void expect_log(const char *fragment) {
    if (!strstr(g_all_log, fragment))
        fail_msg("expected \"%s\" in the log:\n%s", fragment, g_all_log);
}

/* The local expert reads local_cells from the tuning string (spaces,
 * repeats: the last wins), asks the engine for a rebuild with the knob,
 * logs values it cannot use, ignores other keys, and reads no tuning from
 * an engine older than 1.4 or one without the build extension. */
static void test_cl_tuning(void **state) {
    (void)state;
    const clenv *e = cl_get();
    if (!e)
        skip();
    const moelat_expert_descriptor *d = plugin(B_LOCAL);
    moelat_expert_dims dims = make_dims(B_LOCAL, find_preset("debug"), 0);
    tensor_set t;
    tensors_alloc(d, &dims, &t);
    cl_program prog = build_program(e, d, &dims);
    cl_mem params = make_buffer(e, t.total * sizeof(float), t.data);
    const moelat_cl_setup base = {.struct_size = sizeof base, .context = e->ctx, .device = e->dev,
                                  .program = prog, .dims = &dims, .params = params,
                                  .tensor_offsets = t.offsets, .n_tensors = t.n,
                                  .lattice = {9, 8, 7}, .max_chunk_cells = 504};
    g_tune_env = e;
    g_tune_dims = &dims;
    g_tune_desc = d;
    g_tune_builds = 0;
    moelat_expert_entry_fn entry =
        (moelat_expert_entry_fn)dlsym(g_handles[B_LOCAL], MOELAT_EXPERT_ENTRY_NAME);
    assert_non_null(entry);
    assert_ptr_equal(entry(&g_host_ext), d);

    int cells = 1 << (rand() % 3); /* 1, 2 or 4 */
    char tuning[160];
    snprintf(tuning, sizeof tuning, "functional_cells=3, local_cells = %d ,distant_cells=2", cells);
    assert_true(tune_prepare(d, base, tuning, 0));
    char want[64];
    snprintf(want, sizeof want, "-D LOC_CELLS=%d", cells);
    assert_string_equal(g_tune_options, want);
    snprintf(want, sizeof want, "local_expert: %d chunk cells per work-group (local_cells)", cells);
    expect_log(want);
    assert_int_equal(g_tune_builds, 1);
    expect_log("work-group kernels (tuning cl_shape)");

    /* The last setting wins. */
    assert_true(tune_prepare(d, base, "local_cells=4,local_cells=2", 0));
    assert_string_equal(g_tune_options, "-D LOC_CELLS=2");

    /* Unusable values: logged, the kernel chooses, no rebuild. */
    static const char *bad[] = {"local_cells=3", "local_cells=8", "local_cells=0", "local_cells=2x",
                                "local_cells=-1"};
    const char *b = bad[rand() % 5];
    assert_true(tune_prepare(d, base, b, 0));
    expect_log("is not a power of two from 1 to 4: ignored (the kernel chooses)");
    assert_string_equal(g_tune_options, "");
    assert_null(strstr(g_all_log, "(local_cells)"));

    /* Another expert's key or none: no rebuild. */
    int builds = g_tune_builds;
    assert_true(tune_prepare(d, base, "distant_cells=2,local_cellsx=2,xlocal_cells=2", 0));
    assert_true(tune_prepare(d, base, "", 0));
    assert_int_equal(g_tune_builds, builds);

    /* A 1.3 engine's setup ends before tuning: never read (neither
     * local_cells nor cl_shape, so a CPU device keeps its CPU-shaped
     * kernel here). */
    assert_true(tune_prepare(d, base, "local_cells=2", (uint32_t)offsetof(moelat_cl_setup, tuning)));
    assert_int_equal(g_tune_builds, builds);
    assert_null(strstr(g_all_log, "(local_cells)"));
    assert_null(strstr(g_all_log, "(tuning cl_shape)"));

    /* An engine without the build extension: the knob is named and ignored. */
    assert_ptr_equal(entry(&g_host), d);
    assert_true(tune_prepare(d, base, "local_cells=2", 0));
    expect_log("the engine cannot rebuild the program (no moelat.cl.build/1): tuning '-D LOC_CELLS=2' ignored");
    assert_int_equal(g_tune_builds, builds);

    /* A cl_shape the engine would have rejected: named, and the device
     * type decides. */
    assert_ptr_equal(entry(&g_host_ext), d);
    assert_true(tune_prepare(d, base, "cl_shape=tpu", 0));
    expect_log("tuning cl_shape=tpu is neither gpu nor cpu: ignored");
    assert_null(strstr(g_all_log, "(tuning cl_shape)"));

    clReleaseMemObject(params);
    clReleaseProgram(prog);
    tensors_free(&t);
}

/* ---- golden files of the numpy reference (tests/golden/<case>/) ---- */

static float *read_npy_count(const char *dir, const char *file, size_t expect) {
    char path[1100], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    float *data = NULL;
    int ndim = 0;
    int64_t shape[8];
    if (npy_read(path, &data, &ndim, shape, err, sizeof err) != 0)
        fail_msg("%s", err);
    size_t n = 1;
    for (int k = 0; k < ndim; k++)
        n *= (size_t)shape[k];
    if (n != expect)
        fail_msg("%s: %zu values, expected %zu", path, n, expect);
    return data;
}

static int golden_case(const char *dir) {
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t jerr;
    json_t *cfg = json_load_file(path, 0, &jerr);
    if (!cfg)
        return 0; /* not a case directory */
    const char *pname = json_string_value(json_object_get(cfg, "preset"));
    const char *mode_s = json_string_value(json_object_get(cfg, "cnf_mode"));
    json_t *jd = json_object_get(cfg, "dims");
    double ratio = json_number_value(json_object_get(cfg, "radius_ratio"));
    if (!pname || !mode_s || json_array_size(jd) != 3)
        fail_msg("%s: missing preset, cnf_mode or dims", path);
    const preset *pr = find_preset(pname);
    int mode = strcmp(mode_s, "lipschitz") == 0 ? 1 : 0;
    int X = (int)json_integer_value(json_array_get(jd, 0));
    int Y = (int)json_integer_value(json_array_get(jd, 1));
    int Z = (int)json_integer_value(json_array_get(jd, 2));
    json_decref(cfg);

    int mx = X > Y ? (X > Z ? X : Z) : (Y > Z ? Y : Z);
    double r = fmin(fmax(mx * ratio, 1.0), 100.0);
    lattice L;
    memset(&L, 0, sizeof L);
    L.X = X, L.Y = Y, L.Z = Z, L.N = X * Y * Z, L.S = pr->S, L.E = 16;
    build_stencils(&L, r);
    L.states = read_npy_count(dir, "states.npy", (size_t)L.N * L.S);
    L.ext = read_npy_count(dir, "ext.npy", (size_t)X * Y * L.E);
    float *gcounts = read_npy_count(dir, "counts.npy", (size_t)L.N * 3);

    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    st_file wf;
    char err[512];
    if (st_read(path, &wf, err, sizeof err) != 0)
        fail_msg("%s", err);

    size_t n = (size_t)L.N * L.S;
    float *mine = malloc(n * sizeof *mine);
    int *counts = malloc((size_t)L.N * sizeof *counts);
    for (int b = 0; b < N_BANDS; b++) {
        moelat_expert_dims dims = make_dims(b, pr, mode);
        tensor_set t;
        tensors_alloc(plugin(b), &dims, &t);
        for (int i = 0; i < t.n; i++) {
            char name[192];
            snprintf(name, sizeof name, "%s_expert.%s", k_names[b], t.specs[i].suffix);
            const st_tensor *w = st_find(&wf, name);
            if (!w)
                fail_msg("%s: no tensor %s", path, name);
            if (w->numel != numel(&t.specs[i]))
                fail_msg("%s: %s has %zu values, the plugin declares %zu", path, name, w->numel,
                         numel(&t.specs[i]));
            for (int k = 0; k < t.specs[i].ndim; k++)
                if (w->shape[k] != t.specs[i].shape[k])
                    fail_msg("%s: %s dim %d is %lld, the plugin declares %d", path, name, k,
                             (long long)w->shape[k], t.specs[i].shape[k]);
            memcpy(t.data + t.offsets[i], w->data, w->numel * sizeof(float));
        }
        host_all(b, &dims, &t, &L, mine, counts);
        for (int i = 0; i < L.N; i++)
            if ((float)counts[i] != gcounts[(size_t)i * 3 + b])
                fail_msg("%s: cell %d has %d %s neighbours, the reference %g", dir, i, counts[i],
                         k_names[b], (double)gcounts[(size_t)i * 3 + b]);
        char file[64];
        snprintf(file, sizeof file, "expert_%s.npy", k_names[b]);
        float *ref = read_npy_count(dir, file, n);
        size_t where = 0;
        double diff = max_abs_diff(mine, ref, n, &where);
        double tol = (mode == 1 && b != B_LOCAL) ? 1e-4 : 1e-5;
        printf("# golden %s %s: max |host - reference| = %.3g (cell %zu, tolerance %g)\n", dir,
               k_names[b], diff, where / (size_t)L.S, tol);
        if (!(diff <= tol))
            fail_msg("%s: %s differs from the reference by %.3g at cell %zu value %zu "
                     "(host %g, reference %g)",
                     dir, k_names[b], diff, where / (size_t)L.S, where % (size_t)L.S,
                     (double)mine[where], (double)ref[where]);
        free(ref);
        tensors_free(&t);
    }
    free(mine);
    free(counts);
    free(gcounts);
    st_free(&wf);
    lattice_free(&L);
    return 1;
}

static void test_golden(void **state) {
    (void)state;
    const char *root = MOELAT_SOURCE_DIR "/tests/golden";
    DIR *d = opendir(root);
    if (!d) {
        printf("# %s: no golden files\n", root);
        skip();
    }
    int cases = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.')
            continue;
        char dir[900];
        snprintf(dir, sizeof dir, "%s/%.512s", root, ent->d_name);
        cases += golden_case(dir);
    }
    closedir(d);
    if (cases == 0)
        skip();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptors),
        cmocka_unit_test(test_tensor_layouts),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_cnf_modes_differ),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_cl_errors),
        cmocka_unit_test(test_cl_tuning),
        cmocka_unit_test(test_cl_local),
        cmocka_unit_test(test_cl_functional_euler),
        cmocka_unit_test(test_cl_functional_lipschitz),
        cmocka_unit_test(test_cl_functional_local_fit),
        cmocka_unit_test(test_cl_distant_euler),
        cmocka_unit_test(test_cl_distant_lipschitz),
    };
    /* MOELAT_EXPERTS_FILTER / MOELAT_EXPERTS_SKIP: cmocka test-name patterns
     * of the tests to run / to leave out, e.g. "test_cl_*". */
    const char *filter = getenv("MOELAT_EXPERTS_FILTER");
    if (filter)
        cmocka_set_test_filter(filter);
    const char *skip_filter = getenv("MOELAT_EXPERTS_SKIP");
    if (skip_filter)
        cmocka_set_skip_filter(skip_filter);
    return cmocka_run_group_tests(tests, setup_seed, teardown_plugins);
}
