/* The device backward ("moelat.backward.cl/1") against the host backward
 * ("moelat.backward.host/1") of the same expert: the same text compiled as
 * OpenCL C in float after moelat/backward_portable.h and as C in double.
 * For each built-in expert and the SDK example, at the debug and the
 * experiment preset's dims, random cells (x, neighbours, ext, weights,
 * dout) run through backward_fn on the device and backward_cell on the
 * host; out, dx, dneighbours, dext and every dtensor must agree within
 * TOL norm-wise per array: |dev - host|_2 <= TOL * max(|host|_2, FLOOR *
 * sqrt(n)). The floor sits above float32 rounding where a gradient sums
 * many terms of order 1 that cancel (the CNF's damping, a bias feeding a
 * softmax: analytically 0): such arrays are held to an absolute
 * TOL * FLOOR rms. The gate (ml_gate_f64, ml_gate_f64_bwd) the same way.
 * MOELAT_TEST_BWDCL_PERTURB=1 perturbs the device's dout to see the test
 * fail. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include"backend/opencl/cl_runtime.h" /* mlcl_embedded_source */
#include "core/embedded.h"
#include "core/gate.h"
#include "grad/grad.h"
#include "moelat/moelat.h"
#include"plugin/plugin_loader.h"
#include "base/rng.h"
#include "test_support.h"

#define TOL 1e-4
#define FLOOR 1e-1
#define CELLS 6
#define MAXN 12 /* neighbours of a cell: 1 .. MAXN */
#define MAXT 64 /* tensors of an expert */

#define CL_OK(call)                                                                      \
    do {                                                                                 \
        cl_int e_ = (call);                                                              \
        if (e_ != CL_SUCCESS)                                                            \
            fail_msg("%s failed: OpenCL error %d", #call, (int)e_);                      \
    } while (0)

typedef struct clenv {
    cl_device_id dev;
    cl_context ctx;
    cl_command_queue q;
} clenv;

static clenv g_cl;
static int g_cl_state; /* 0 not tried, 1 open, -1 no device */

static const clenv *cl_get(void) {
    if (g_cl_state != 0)
        return g_cl_state == 1 ? &g_cl : NULL;
    g_cl_state = -1;
    cl_platform_id plats[8];
    cl_uint np = 0;
    if (clGetPlatformIDs(8, plats, &np) != CL_SUCCESS)
        return NULL;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 1, &g_cl.dev, &nd) == CL_SUCCESS && nd) {
            cl_int err;
            g_cl.ctx = clCreateContext(NULL, 1, &g_cl.dev, NULL, NULL, &err);
            CL_OK(err);
            g_cl.q = clCreateCommandQueue(g_cl.ctx, g_cl.dev, 0, &err);
            CL_OK(err);
            g_cl_state = 1;
            break;
        }
    }
    return g_cl_state == 1 ? &g_cl : NULL;
}

/* ---- the device programs ---- */

/* One work-item per cell. The dims come in as ints: S, E, cnf_steps,
 * cnf_mode, hidden[8]. Each cell has its own slice of every buffer and its
 * own copy of the tensor gradients (tot floats), so nothing races. */
static const char k_expert_kernel[] =
    "#define MAXT 64\n"
    "__kernel void mlb_test(__global const int *dimv, __global const float *tens,\n"
    "                       __global const int *toff, int nt, int tot, __global float *dtens,\n"
    "                       __global const float *x, __global const float *nb,\n"
    "                       __global const int *cnt, int maxn, __global const float *ext,\n"
    "                       __global const float *dout, __global float *out, __global float *dx,\n"
    "                       __global float *dnb, __global float *dext, __global float *scratch,\n"
    "                       int scratch_n, __global int *rc) {\n"
    "    int i = get_global_id(0);\n"
    "    moelat_expert_dims d;\n"
    "    d.struct_size = sizeof d;\n"
    "    d.state_size = dimv[0];\n"
    "    d.ext_size = dimv[1];\n"
    "    d.cnf_steps = dimv[2];\n"
    "    d.cnf_mode = dimv[3];\n"
    "    for (int h = 0; h < MOELAT_MAX_HIDDEN; h++)\n"
    "        d.hidden[h] = dimv[4 + h];\n"
    "    int S = d.state_size, E = d.ext_size;\n"
    "    __global const float *tp[MAXT];\n"
    "    __global float *dp[MAXT];\n"
    "    for (int k = 0; k < nt; k++) {\n"
    "        tp[k] = tens + toff[k];\n"
    "        dp[k] = dtens + (size_t)i * tot + toff[k];\n"
    "    }\n"
    "    moelat_grad_cell c;\n"
    "    c.dims = &d;\n"
    "    c.tensors = tp;\n"
    "    c.x = x + (size_t)i * S;\n"
    "    c.neighbours = nb + (size_t)i * maxn * S;\n"
    "    c.count = cnt[i];\n"
    "    c.ext = ext + (size_t)i * E;\n"
    "    c.cell[0] = i; c.cell[1] = 0; c.cell[2] = 0;\n"
    "    c.out = out + (size_t)i * S;\n"
    "    c.dout = dout + (size_t)i * S;\n"
    "    c.dx = dx + (size_t)i * S;\n"
    "    c.dneighbours = dnb + (size_t)i * maxn * S;\n"
    "    c.dext = dext + (size_t)i * E;\n"
    "    c.dtensors = dp;\n"
    "    c.scratch = scratch + (size_t)i * scratch_n;\n"
    "    rc[i] = MLB_FN(&c);\n"
    "}\n";

static const char k_gate_kernel[] =
    "__kernel void mlb_gate_test(__global const float *tens, __global const int *toff,\n"
    "                            __global float *dtens, int S, int gh, __global const float *x,\n"
    "                            __global const float *nu, __global float *w,\n"
    "                            __global const float *dw, __global float *dx,\n"
    "                            __global float *dnu, __global float *scratch) {\n"
    "    __global const float *tp[GATE_N_TENSORS];\n"
    "    __global float *dp[GATE_N_TENSORS];\n"
    "    for (int k = 0; k < GATE_N_TENSORS; k++) {\n"
    "        tp[k] = tens + toff[k];\n"
    "        dp[k] = dtens + toff[k];\n"
    "    }\n"
    "    ml_gate_f64(tp, S, gh, x, nu, w, scratch);\n"
    "    ml_gate_f64_bwd(tp, dp, S, gh, w, dw, dx, dnu, scratch);\n"
    "}\n";

/* A CPU device compiles double happily, so the build alone would not see a
 * stray double: this scans the text the device compiles (comments and
 * #ifndef __OPENCL_VERSION__ blocks left out) for the word double and for
 * floating literals without an f suffix outside MLB_C(...). */
static void check_float_only(const char *what, const char *text) {
    int depth = 0, skip_at = 0; /* skip_at: the #if depth of a host-only block, 0 none */
    int in_comment = 0, line = 1;
    int cond_depth[64], ncond = 0; /* depths of #if(n)def __OPENCL_VERSION__ */
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char buf[1024];
        if (len >= sizeof buf)
            len = sizeof buf - 1;
        memcpy(buf, p, len);
        buf[len] = 0;
        /* comments out */
        for (char *c = buf; *c; c++) {
            if (in_comment) {
                if (c[0] == '*' && c[1] == '/') {
                    in_comment = 0;
                    c[0] = c[1] = ' ';
                } else {
                    *c = ' ';
                }
            } else if (c[0] == '/' && c[1] == '*') {
                in_comment = 1;
                c[0] = c[1] = ' ';
                c++;
            } else if (c[0] == '/' && c[1] == '/') {
                *c = 0;
                break;
            }
        }
        char *t = buf;
        while (*t == ' ' || *t == '\t')
            t++;
        if (*t == '#') {
            if (strncmp(t, "#if", 3) == 0) {
                depth++;
                int ocl = strstr(t, "__OPENCL_VERSION__") != NULL;
                if (ocl && ncond < 64)
                    cond_depth[ncond++] = depth;
                if (!skip_at && ocl && strncmp(t, "#ifndef", 7) == 0)
                    skip_at = depth;
                else if (!skip_at && ocl && strncmp(t, "#if !defined", 12) == 0)
                    skip_at = depth;
            } else if (strncmp(t, "#else", 5) == 0) {
                if (ncond && cond_depth[ncond - 1] == depth) {
                    if (skip_at == depth)
                        skip_at = 0;
                    else if (!skip_at)
                        skip_at = depth;
                }
            } else if (strncmp(t, "#endif", 6) == 0) {
                if (ncond && cond_depth[ncond - 1] == depth)
                    ncond--;
                if (skip_at == depth)
                    skip_at = 0;
                depth--;
            }
        } else if (!skip_at) {
            for (char *c = buf; *c; c++) {
                int word_start = c == buf || !(isalnum((unsigned char)c[-1]) || c[-1] == '_');
                if (word_start && strncmp(c, "double", 6) == 0 &&
                    !(isalnum((unsigned char)c[6]) || c[6] == '_'))
                    fail_msg("%s, line %d of its text: 'double' on the device: %s", what, line, buf);
                if (!isdigit((unsigned char)*c) || !word_start)
                    continue;
                char *q = c;
                int fp = 0;
                while (isdigit((unsigned char)*q))
                    q++;
                if (*q == '.') {
                    fp = 1;
                    q++;
                    while (isdigit((unsigned char)*q))
                        q++;
                }
                if ((*q == 'e' || *q == 'E') && (isdigit((unsigned char)q[1]) ||
                                                 ((q[1] == '-' || q[1] == '+') && isdigit((unsigned char)q[2])))) {
                    fp = 1;
                    q += 2;
                    while (isdigit((unsigned char)*q))
                        q++;
                }
                int wrapped = c - buf >= 6 && strncmp(c - 6, "MLB_C(", 6) == 0;
                if (fp && *q != 'f' && *q != 'F' && !wrapped)
                    fail_msg("%s, line %d of its text: a double literal on the device (use MLB_C): %s",
                             what, line, buf);
                c = q - 1;
            }
        }
        line++;
        p = end ? end + 1 : p + strlen(p);
    }
}

/* prelude + parts + kernel into one program; a failed build prints its log. */
static cl_program build(const clenv *e, const char *const *parts, const char *kernel,
                        const char *options, const char *what) {
    const char *texts[32];
    int n = 0;
    /* As the engine builds it: its helpers (ml_erf, which backward_math
     * uses on the device) ahead of everything. */
    texts[n++] = mlcl_embedded_source("moelat_helpers.cl");
    assert_non_null(texts[0]);
    texts[n++] = moelat_backward_portable_cl;
    for (int i = 0; parts[i]; i++) {
        assert_true(n < 30);
        check_float_only(what, parts[i]);
        texts[n++] = parts[i];
    }
    texts[n++] = kernel;
    cl_int err;
    cl_program p = clCreateProgramWithSource(e->ctx, (cl_uint)n, texts, NULL, &err);
    CL_OK(err);
    err = clBuildProgram(p, 1, &e->dev, options, NULL, NULL);
    size_t len = 0;
    clGetProgramBuildInfo(p, e->dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &len);
    char *log = malloc(len + 1);
    assert_non_null(log);
    log[0] = 0;
    clGetProgramBuildInfo(p, e->dev, CL_PROGRAM_BUILD_LOG, len, log, NULL);
    log[len] = 0;
    if (err != CL_SUCCESS) {
        fprintf(stderr, "build of %s failed (%d):\n%s\n", what, (int)err, log);
        free(log);
        fail_msg("the device backward of %s does not build", what);
    }
    /* PoCL's log is empty on a clean build: anything else is a warning. */
    for (char *c = log; *c; c++)
        if (strstr(c, "warning") == c) {
            fprintf(stderr, "build log of %s:\n%s\n", what, log);
            free(log);
            fail_msg("the device backward of %s builds with warnings", what);
        }
    free(log);
    return p;
}

static cl_mem buf(const clenv *e, size_t bytes, const void *init) {
    cl_int err;
    cl_mem m = clCreateBuffer(e->ctx, CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0),
                              bytes ? bytes : 4, (void *)init, &err);
    CL_OK(err);
    if (!init) {
        float zero = 0.0f;
        CL_OK(clEnqueueFillBuffer(e->q, m, &zero, sizeof zero, 0, bytes ? bytes : 4, 0, NULL, NULL));
    }
    return m;
}

static void get(const clenv *e, cl_mem m, size_t bytes, void *to) {
    CL_OK(clEnqueueReadBuffer(e->q, m, CL_TRUE, 0, bytes, to, 0, NULL, NULL));
}

/* ---- comparison ---- */

/* Fails with the array's name when the device's n floats differ from the
 * host's doubles by more than TOL norm-wise. Returns the relative error. */
static double compare(const char *what, const float *dev, const double *host, size_t n) {
    double e2 = 0.0, h2 = 0.0;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        double d = (double)dev[i] - host[i];
        finite &= isfinite(dev[i]) && isfinite(host[i]);
        e2 += d * d;
        h2 += host[i] * host[i];
    }
    double floor2 = FLOOR * FLOOR * (double)n;
    double rel = sqrt(e2 / (h2 > floor2 ? h2 : floor2));
    if (!finite || !(rel <= TOL))
        fail_msg("%s: device vs host relative error %.3g (tolerance %g) over %zu values, |host| %.3g",
                 what, rel, TOL, n, sqrt(h2));
    return rel;
}


/* ---- random inputs ---- */

static ml_rng g_rng;

static double normal(void) {
    double u1 = ml_rng_uniform(&g_rng), u2 = ml_rng_uniform(&g_rng);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

/* n floats of N(mean, sigma^2), rounded once: host and device read the
 * same values (the host as doubles). */
static void fill(float *v, size_t n, double mean, double sigma) {
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(mean + sigma * normal());
}

static double *widen(const float *v, size_t n) {
    double *d = malloc((n ? n : 1) * sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
    return d;
}

static size_t spec_count(const moelat_tensor_spec *s) {
    size_t n = 1;
    for (int d = 0; d < s->ndim; d++)
        n *= (size_t)s->shape[d];
    return n;
}

/* Weights near their init: matrices N(0, 1/fan_in), constants their value
 * plus N(0, 0.1^2) (gains near 1, biases near 0, alpha, beta, gamma...). */
static void fill_tensor(const moelat_tensor_spec *s, float *v) {
    size_t n = spec_count(s);
    if (s->ndim >= 2)
        fill(v, n, 0.0, 1.0 / sqrt((double)s->shape[s->ndim - 1]));
    else if (s->init == MOELAT_INIT_CONST)
        fill(v, n, s->value, 0.1);
    else
        fill(v, n, 0.0, 0.3);
}

/* ---- an expert ---- */

/* The dims the engine gives band expert desc under preset (lattice.c). */
static void preset_dims(const char *preset, const moelat_expert_descriptor *desc,
                        moelat_expert_dims *d) {
    moelat_config cfg = MOELAT_CONFIG_INIT;
    char err[256];
    assert_int_equal(moelat_config_preset(preset, &cfg, err, sizeof err), MOELAT_OK);
    memset(d, 0, sizeof *d);
    d->struct_size = sizeof *d;
    d->state_size = cfg.state_size;
    d->ext_size = MOELAT_EXT_SIZE;
    d->cnf_steps = cfg.cnf_steps;
    d->cnf_mode = MOELAT_CNF_EULER;
    for (int h = 0; h < MOELAT_MAX_HIDDEN && desc->hidden_names[h]; h++)
        d->hidden[h] = moelat_config_hidden(&cfg, desc->hidden_names[h], desc->hidden_defaults[h]);
}

static int perturbed(void) {
    const char *e = getenv("MOELAT_TEST_BWDCL_PERTURB");
    return e && atoi(e) != 0;
}

static void check_expert(const char *path, const char *preset) {
    const clenv *e = cl_get();
    if (!e)
        skip();
    ml_plugin pl;
    char err[512];
    if (ml_plugin_load_file(path, &pl, err, sizeof err) != 0)
        fail_msg("%s", err);
    const moelat_expert_descriptor *desc = pl.desc;
    const moelat_backward_host *bh = ml_plugin_extension(desc, MOELAT_EXT_BACKWARD_HOST);
    const moelat_backward_cl *bc = ml_plugin_extension(desc, MOELAT_EXT_BACKWARD_CL);
    assert_non_null(bh);
    if (!bc)
        fail_msg("expert %s has no %s", desc->name, MOELAT_EXT_BACKWARD_CL);
    assert_true(bc->struct_size >= sizeof *bc);
    assert_non_null(bc->source_parts);
    assert_non_null(bc->backward_fn);
    assert_non_null(bc->scratch_floats);

    moelat_expert_dims d;
    preset_dims(preset, desc, &d);
    if (desc->validate)
        assert_int_equal(desc->validate(&d, err, sizeof err), MOELAT_EXPERT_OK);
    const int S = d.state_size, E = d.ext_size;
    printf("# %s at %s: S %d E %d K %d hidden %d %d %d\n", desc->name, preset, S, E, d.cnf_steps,
           d.hidden[0], d.hidden[1], d.hidden[2]);

    /* The tensors, one block of tot floats. */
    int nt = desc->tensors(&d, NULL, 0);
    assert_true(nt > 0 && nt <= MAXT);
    moelat_tensor_spec *specs = calloc((size_t)nt, sizeof *specs);
    assert_non_null(specs);
    assert_int_equal(desc->tensors(&d, specs, nt), nt);
    int toff[MAXT];
    size_t tot = 0;
    for (int k = 0; k < nt; k++) {
        toff[k] = (int)tot;
        tot += spec_count(&specs[k]);
    }
    float *tens = malloc(tot * sizeof *tens);
    assert_non_null(tens);
    for (int k = 0; k < nt; k++)
        fill_tensor(&specs[k], tens + toff[k]);

    /* The cells. */
    int cnt[CELLS];
    for (int i = 0; i < CELLS; i++)
        cnt[i] = i == 0 ? 1 : (i == 1 ? MAXN : 1 + (int)(ml_rng_uniform(&g_rng) * MAXN));
    size_t nS = (size_t)CELLS * S, nN = (size_t)CELLS * MAXN * S, nE = (size_t)CELLS * E;
    float *x = malloc(nS * sizeof *x), *nb = malloc(nN * sizeof *nb), *ext = malloc(nE * sizeof *ext);
    float *dout = malloc(nS * sizeof *dout);
    assert_true(x && nb && ext && dout);
    fill(x, nS, 0.0, 0.5);
    fill(nb, nN, 0.0, 0.5);
    fill(ext, nE, 0.0, 1.0);
    fill(dout, nS, 0.0, 1.0);

    /* The device. */
    size_t scratch_n = bc->scratch_floats(&d, MAXN);
    char options[256];
    snprintf(options, sizeof options, "-DMLB_FN=%s", bc->backward_fn);
    char what[128];
    snprintf(what, sizeof what, "expert %s", desc->name);
    cl_program prog = build(e, bc->source_parts, k_expert_kernel, options, what);
    cl_int cerr;
    cl_kernel k = clCreateKernel(prog, "mlb_test", &cerr);
    CL_OK(cerr);
    int dimv[4 + MOELAT_MAX_HIDDEN] = {S, E, d.cnf_steps, d.cnf_mode};
    for (int h = 0; h < MOELAT_MAX_HIDDEN; h++)
        dimv[4 + h] = d.hidden[h];
    float *dout_dev = malloc(nS * sizeof *dout_dev);
    assert_non_null(dout_dev);
    memcpy(dout_dev, dout, nS * sizeof *dout);
    if (perturbed())
        dout_dev[0] += 1e-2f; /* the check must see this */
    cl_mem m_dimv = buf(e, sizeof dimv, dimv), m_tens = buf(e, tot * 4, tens),
           m_toff = buf(e, sizeof toff, toff), m_dtens = buf(e, CELLS * tot * 4, NULL),
           m_x = buf(e, nS * 4, x), m_nb = buf(e, nN * 4, nb), m_cnt = buf(e, sizeof cnt, cnt),
           m_ext = buf(e, nE * 4, ext), m_dout = buf(e, nS * 4, dout_dev), m_out = buf(e, nS * 4, NULL),
           m_dx = buf(e, nS * 4, NULL), m_dnb = buf(e, nN * 4, NULL), m_dext = buf(e, nE * 4, NULL),
           m_scr = buf(e, CELLS * scratch_n * 4, NULL), m_rc = buf(e, CELLS * sizeof(int), NULL);
    int maxn = MAXN, nt_i = nt, tot_i = (int)tot, scr_i = (int)scratch_n;
    cl_mem *mems[] = {&m_dimv, &m_tens, &m_toff, NULL, NULL, &m_dtens, &m_x, &m_nb, &m_cnt, NULL,
                      &m_ext, &m_dout, &m_out, &m_dx, &m_dnb, &m_dext, &m_scr, NULL, &m_rc};
    for (cl_uint a = 0; a < sizeof mems / sizeof mems[0]; a++) {
        if (mems[a])
            CL_OK(clSetKernelArg(k, a, sizeof(cl_mem), mems[a]));
        else
            CL_OK(clSetKernelArg(k, a, sizeof(int),
                                 a == 3 ? &nt_i : a == 4 ? &tot_i : a == 9 ? &maxn : &scr_i));
    }
    size_t global = CELLS;
    CL_OK(clEnqueueNDRangeKernel(e->q, k, 1, NULL, &global, NULL, 0, NULL, NULL));
    float *g_out = malloc(nS * 4), *g_dx = malloc(nS * 4), *g_dnb = malloc(nN * 4),
          *g_dext = malloc(nE * 4), *g_dtens = malloc(CELLS * tot * 4);
    int rc[CELLS];
    assert_true(g_out && g_dx && g_dnb && g_dext && g_dtens);
    get(e, m_out, nS * 4, g_out);
    get(e, m_dx, nS * 4, g_dx);
    get(e, m_dnb, nN * 4, g_dnb);
    get(e, m_dext, nE * 4, g_dext);
    get(e, m_dtens, CELLS * tot * 4, g_dtens);
    get(e, m_rc, sizeof rc, rc);

    /* The host, cell by cell, and the comparison. */
    double *t64 = widen(tens, tot);
    double *dt64 = malloc(tot * sizeof *dt64);
    double *scr = malloc(bh->scratch_doubles(&d, MAXN) * sizeof *scr);
    double *h_out = malloc(S * sizeof *h_out), *h_dx = malloc(S * sizeof *h_dx);
    double *h_dnb = malloc((size_t)MAXN * S * sizeof *h_dnb), *h_dext = malloc(E * sizeof *h_dext);
    assert_true(dt64 && scr && h_out && h_dx && h_dnb && h_dext);
    const double *tp[MAXT];
    double *dtp[MAXT];
    for (int t = 0; t < nt; t++) {
        tp[t] = t64 + toff[t];
        dtp[t] = dt64 + toff[t];
    }
    double worst = 0.0;
    char worst_at[400] = "";
    for (int i = 0; i < CELLS; i++) {
        assert_int_equal(rc[i], MOELAT_EXPERT_OK);
        double *x64 = widen(x + (size_t)i * S, S);
        double *nb64 = widen(nb + (size_t)i * MAXN * S, (size_t)cnt[i] * S);
        double *ext64 = widen(ext + (size_t)i * E, E);
        double *dout64 = widen(dout + (size_t)i * S, S);
        memset(dt64, 0, tot * sizeof *dt64);
        memset(h_dx, 0, S * sizeof *h_dx);
        memset(h_dnb, 0, (size_t)MAXN * S * sizeof *h_dnb);
        memset(h_dext, 0, E * sizeof *h_dext);
        moelat_grad_cell c = {
            .struct_size = sizeof c,
            .dims = &d,
            .tensors = tp,
            .x = x64,
            .neighbours = nb64,
            .count = cnt[i],
            .ext = ext64,
            .cell = {i, 0, 0},
            .out = h_out,
            .dout = dout64,
            .dx = h_dx,
            .dneighbours = h_dnb,
            .dext = h_dext,
            .dtensors = dtp,
            .scratch = scr,
        };
        assert_int_equal(bh->backward_cell(&c), MOELAT_EXPERT_OK);
        char name[400];
        double r;
#define CMP(label, devp, hostp, n)                                                       \
    do {                                                                                 \
        snprintf(name, sizeof name, "%s at %s, cell %d (%d neighbours): %s", desc->name, preset, \
                 i, cnt[i], label);                                                      \
        r = compare(name, devp, hostp, n);                                               \
        if (r > worst)                                                                   \
            snprintf(worst_at, sizeof worst_at, "%s", name);                             \
        worst = r > worst ? r : worst;                                                   \
    } while (0)
        CMP("out", g_out + (size_t)i * S, h_out, (size_t)S);
        CMP("dx", g_dx + (size_t)i * S, h_dx, (size_t)S);
        CMP("dneighbours", g_dnb + (size_t)i * MAXN * S, h_dnb, (size_t)MAXN * S);
        CMP("dext", g_dext + (size_t)i * E, h_dext, (size_t)E);
        for (int t = 0; t < nt; t++) {
            char label[140];
            snprintf(label, sizeof label, "d %s", specs[t].suffix);
            CMP(label, g_dtens + (size_t)i * tot + toff[t], dt64 + toff[t], spec_count(&specs[t]));
        }
#undef CMP
        free(x64);
        free(nb64);
        free(ext64);
        free(dout64);
    }
    printf("# %s at %s: worst relative error %.3g over %d cells (%s)\n", desc->name, preset, worst,
           CELLS, worst_at);

    cl_mem all[] = {m_dimv, m_tens, m_toff, m_dtens, m_x, m_nb, m_cnt, m_ext,
                    m_dout, m_out, m_dx, m_dnb, m_dext, m_scr, m_rc};
    for (size_t a = 0; a < sizeof all / sizeof all[0]; a++)
        clReleaseMemObject(all[a]);
    clReleaseKernel(k);
    clReleaseProgram(prog);
    free(t64);
    free(dt64);
    free(scr);
    free(h_out);
    free(h_dx);
    free(h_dnb);
    free(h_dext);
    free(g_out);
    free(g_dx);
    free(g_dnb);
    free(g_dext);
    free(g_dtens);
    free(dout_dev);
    free(x);
    free(nb);
    free(ext);
    free(dout);
    free(tens);
    free(specs);
    /* The plugin stays loaded: its texts and functions live in it. */
}

static char *builtin(const char *name) {
    static char path[1200];
    snprintf(path, sizeof path, "%s/moelat_expert_%s.so", ml_plugin_build_dir(), name);
    return path;
}

static void test_local(void **state) {
    (void)state;
    check_expert(builtin("local"), "debug");
    check_expert(builtin("local"), "experiment");
}

static void test_functional(void **state) {
    (void)state;
    check_expert(builtin("functional"), "debug");
    check_expert(builtin("functional"), "experiment");
}

static void test_distant(void **state) {
    (void)state;
    check_expert(builtin("distant"), "debug");
    check_expert(builtin("distant"), "experiment");
}

/* The SDK example (plugins/example), built in-tree by tests/grad.cmake. */
static void test_example(void **state) {
    (void)state;
    check_expert(MOELAT_TEST_BINARY_DIR "/plugins_grad/moelat_expert_diffusion.so", "debug");
    check_expert(MOELAT_TEST_BINARY_DIR "/plugins_grad/moelat_expert_diffusion.so", "experiment");
}

/* ---- the gate ---- */

static void check_gate(const char *preset) {
    const clenv *e = cl_get();
    if (!e)
        skip();
    moelat_config cfg = MOELAT_CONFIG_INIT;
    char err[256];
    assert_int_equal(moelat_config_preset(preset, &cfg, err, sizeof err), MOELAT_OK);
    const int S = cfg.state_size, gh = moelat_config_hidden(&cfg, "gate_hidden", 0);
    assert_true(gh > 0);
    moelat_tensor_spec specs[GATE_N_TENSORS];
    ml_gate_specs(S, gh, specs);
    int toff[GATE_N_TENSORS];
    size_t tot = 0;
    for (int k = 0; k < GATE_N_TENSORS; k++) {
        toff[k] = (int)tot;
        tot += spec_count(&specs[k]);
    }
    float *tens = malloc(tot * 4), *x = malloc(S * 4), *nu = malloc(S * 4), dw[MOELAT_BANDS];
    assert_true(tens && x && nu);
    for (int k = 0; k < GATE_N_TENSORS; k++)
        fill_tensor(&specs[k], tens + toff[k]);
    fill(x, S, 0.0, 0.5);
    fill(nu, S, 0.0, 0.3);
    fill(dw, MOELAT_BANDS, 0.0, 1.0);
    size_t scratch_n = ml_gate_f64_doubles(S, gh);
    float dw_dev[MOELAT_BANDS];
    memcpy(dw_dev, dw, sizeof dw);
    if (perturbed())
        dw_dev[0] += 1e-2f;

    cl_program prog = build(e, moelat_grad_gate_cl_parts, k_gate_kernel, "", "the gate");
    cl_int cerr;
    cl_kernel k = clCreateKernel(prog, "mlb_gate_test", &cerr);
    CL_OK(cerr);
    cl_mem m_tens = buf(e, tot * 4, tens), m_toff = buf(e, sizeof toff, toff),
           m_dtens = buf(e, tot * 4, NULL), m_x = buf(e, S * 4, x), m_nu = buf(e, S * 4, nu),
           m_w = buf(e, MOELAT_BANDS * 4, NULL), m_dw = buf(e, sizeof dw_dev, dw_dev),
           m_dx = buf(e, S * 4, NULL), m_dnu = buf(e, S * 4, NULL),
           m_scr = buf(e, scratch_n * 4, NULL);
    CL_OK(clSetKernelArg(k, 0, sizeof(cl_mem), &m_tens));
    CL_OK(clSetKernelArg(k, 1, sizeof(cl_mem), &m_toff));
    CL_OK(clSetKernelArg(k, 2, sizeof(cl_mem), &m_dtens));
    CL_OK(clSetKernelArg(k, 3, sizeof(int), &S));
    CL_OK(clSetKernelArg(k, 4, sizeof(int), &gh));
    CL_OK(clSetKernelArg(k, 5, sizeof(cl_mem), &m_x));
    CL_OK(clSetKernelArg(k, 6, sizeof(cl_mem), &m_nu));
    CL_OK(clSetKernelArg(k, 7, sizeof(cl_mem), &m_w));
    CL_OK(clSetKernelArg(k, 8, sizeof(cl_mem), &m_dw));
    CL_OK(clSetKernelArg(k, 9, sizeof(cl_mem), &m_dx));
    CL_OK(clSetKernelArg(k, 10, sizeof(cl_mem), &m_dnu));
    CL_OK(clSetKernelArg(k, 11, sizeof(cl_mem), &m_scr));
    size_t global = 1;
    CL_OK(clEnqueueNDRangeKernel(e->q, k, 1, NULL, &global, NULL, 0, NULL, NULL));
    float *g_dtens = malloc(tot * 4), *g_dx = malloc(S * 4), *g_dnu = malloc(S * 4), g_w[MOELAT_BANDS];
    assert_true(g_dtens && g_dx && g_dnu);
    get(e, m_dtens, tot * 4, g_dtens);
    get(e, m_dx, S * 4, g_dx);
    get(e, m_dnu, S * 4, g_dnu);
    get(e, m_w, sizeof g_w, g_w);

    double *t64 = widen(tens, tot), *x64 = widen(x, S), *nu64 = widen(nu, S), *dw64 = widen(dw, 3);
    double *dt64 = calloc(tot, sizeof *dt64), *dx64 = calloc(S, sizeof *dx64),
           *dnu64 = calloc(S, sizeof *dnu64), *scr = malloc(scratch_n * sizeof *scr), w64[MOELAT_BANDS];
    assert_true(dt64 && dx64 && dnu64 && scr);
    const double *tp[GATE_N_TENSORS];
    double *dtp[GATE_N_TENSORS];
    for (int t = 0; t < GATE_N_TENSORS; t++) {
        tp[t] = t64 + toff[t];
        dtp[t] = dt64 + toff[t];
    }
    ml_gate_f64(tp, S, gh, x64, nu64, w64, scr);
    ml_gate_f64_bwd(tp, dtp, S, gh, w64, dw64, dx64, dnu64, scr);
    char name[400];
    double worst = 0.0, r;
    snprintf(name, sizeof name, "gate at %s: w", preset);
    worst = compare(name, g_w, w64, MOELAT_BANDS);
    snprintf(name, sizeof name, "gate at %s: dx", preset);
    r = compare(name, g_dx, dx64, S);
    worst = r > worst ? r : worst;
    snprintf(name, sizeof name, "gate at %s: dnu", preset);
    r = compare(name, g_dnu, dnu64, S);
    worst = r > worst ? r : worst;
    for (int t = 0; t < GATE_N_TENSORS; t++) {
        snprintf(name, sizeof name, "gate at %.32s: d %.111s", preset, specs[t].suffix);
        r = compare(name, g_dtens + toff[t], dt64 + toff[t], spec_count(&specs[t]));
        worst = r > worst ? r : worst;
    }
    printf("# gate at %s: worst relative error %.3g\n", preset, worst);

    cl_mem all[] = {m_tens, m_toff, m_dtens, m_x, m_nu, m_w, m_dw, m_dx, m_dnu, m_scr};
    for (size_t a = 0; a < sizeof all / sizeof all[0]; a++)
        clReleaseMemObject(all[a]);
    clReleaseKernel(k);
    clReleaseProgram(prog);
    free(tens);
    free(x);
    free(nu);
    free(g_dtens);
    free(g_dx);
    free(g_dnu);
    free(t64);
    free(x64);
    free(nu64);
    free(dw64);
    free(dt64);
    free(dx64);
    free(dnu64);
    free(scr);
}

static void test_gate(void **state) {
    (void)state;
    check_gate("debug");
    check_gate("experiment");
}

int main(void) {
    ml_rng_seed(&g_rng, ts_seed());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local),   cmocka_unit_test(test_functional),
        cmocka_unit_test(test_distant), cmocka_unit_test(test_example),
        cmocka_unit_test(test_gate),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (g_cl_state == 1) {
        clReleaseCommandQueue(g_cl.q);
        clReleaseContext(g_cl.ctx);
    }
    return rc;
}
