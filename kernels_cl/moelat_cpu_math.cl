/* Helpers of the CPU-shaped kernels (OpenCL C 1.2), shared by the engine's
 * (moelat_step_cpu.cl) and the built-in experts' (experts/<band>/<band>_cpu.cl).
 *
 * Shape: one work-item computes MLC_V cells at once, one cell per vector
 * lane. Every vector of the model (a state, a hidden layer) is a private
 * array of mlc_f indexed by feature, so a dense layer is a chain of
 * scalar-weight times vector FMAs: each weight is read once for the
 * work-item's cells, in storage order, and no lane ever needs another's
 * value (no horizontal sums, no barriers, no local memory). The vector
 * width is explicit because PoCL's implicit vectorisation across
 * work-items gives up on loops with private arrays and on divergent
 * neighbour walks; lanes of cells whose band is empty or that lie past
 * the chunk compute on a copy of a valid cell and are masked on store.
 *
 * Built-ins take vector arguments only (min(int8, int) and the like are
 * valid OpenCL, but oclgrind 21.10 computed them wrong).
 *
 * The transcendental functions are written out (range reduction and
 * polynomials, selects instead of branches) so that they stay vector
 * code: a call of the built-in exp or erf on a vector may be split into
 * scalar library calls; divisions stay divisions (native_recip with a
 * Newton step made the functional kernel 20% slower on PoCL 3.1).
 * Absolute errors are below 4e-7 on the ranges the
 * model sees, well inside the 1e-5 the paths must agree to. */
#ifndef MOELAT_CPU_MATH_CL
#define MOELAT_CPU_MATH_CL

/* Cells per work-item: 8 by default; a build option may choose 4 or 16
 * (MOELAT_CL_OPTIONS=-DMLC_V=16). */
#ifndef MLC_V
#define MLC_V 8
#endif
#if MLC_V == 16
typedef float16 mlc_f;
typedef int16 mlc_i;
#define mlc_vload vload16
#define mlc_vload_i vload16
#define mlc_vstore vstore16
#define mlc_cvt_f convert_float16
#define mlc_cvt_i convert_int16
#define mlc_as_f as_float16
#elif MLC_V == 4
typedef float4 mlc_f;
typedef int4 mlc_i;
#define mlc_vload vload4
#define mlc_vload_i vload4
#define mlc_vstore vstore4
#define mlc_cvt_f convert_float4
#define mlc_cvt_i convert_int4
#define mlc_as_f as_float4
#else
#undef MLC_V
#define MLC_V 8
typedef float8 mlc_f;
typedef int8 mlc_i;
#define mlc_vload vload8
#define mlc_vload_i vload8
#define mlc_vstore vstore8
#define mlc_cvt_f convert_float8
#define mlc_cvt_i convert_int8
#define mlc_as_f as_float8
#endif

/* exp(x) for x in about [-87, 88]: x = n ln2 + r with |r| <= ln2 / 2
 * (Cody-Waite, two constants), a degree-6 polynomial for e^r, and 2^n
 * built in the exponent bits. Below -87 it returns 0, above 88 a large
 * finite value (no inf: callers add and divide by it safely). A NaN stays
 * NaN, as expf's does: clamp would turn it into a bound, and a softmax
 * over an overflowed score (inf - inf) would come out finite where the
 * host path's is not (MODEL.md's non-finite rule). */
inline mlc_f mlc_exp(mlc_f x) {
    mlc_f xc = clamp(x, (mlc_f)-87.0f, (mlc_f)88.0f);
    /* round to nearest by the 1.5 2^23 shift (one add and one subtract;
     * PoCL expands rint into a longer sequence) */
    mlc_f n = (fma(xc, (mlc_f)1.44269504088896341f, (mlc_f)12582912.0f)) - 12582912.0f;
    mlc_f r = fma(n, -0.693145751953125f, xc);
    r = fma(n, -1.428606765330187e-06f, r);
    mlc_f p = fma(fma(fma(fma(fma(1.3888889e-3f, r, 8.3333333e-3f), r, 4.1666667e-2f), r, 1.6666667e-1f), r, 0.5f),
                  r, 1.0f);
    p = fma(p, r, 1.0f);
    mlc_i e = (mlc_cvt_i(n) + 127) << 23;
    mlc_f y = p * mlc_as_f(e);
    y = select(y, (mlc_f)0.0f, (mlc_i)(x < -87.0f));
    return select(y, x, (mlc_i)isnan(x));
}

/* erf: the rational fit of moelat_helpers.cl's ml_erf, lane by lane. */
inline mlc_f mlc_erf(mlc_f x) {
    mlc_f c = clamp(x, (mlc_f)-3.925f, (mlc_f)3.925f);
    mlc_f u = c * c;
    mlc_f p = fma(fma(fma(fma(fma(2.030673613e-06f, u, 2.874633064e-04f), u, 3.875917523e-03f), u,
                          5.308306217e-02f), u, 1.929656863e-01f), u, 1.128378987f);
    mlc_f q = fma(fma(fma(fma(fma(3.802788706e-05f, u, 1.189613133e-03f), u, 1.518756710e-02f), u,
                          1.151642650e-01f), u, 5.043430328e-01f), u, 1.0f);
    return clamp(c * p / q, (mlc_f)-1.0f, (mlc_f)1.0f);
}

inline mlc_f mlc_gelu(mlc_f v) { return ML_GELU(v, mlc_erf); } /* moelat_helpers.cl's GELU */
inline mlc_f mlc_sigmoid(mlc_f v) { return 1.0f / (1.0f + mlc_exp(-v)); }
inline mlc_f mlc_tanh(mlc_f v) { return 1.0f - 2.0f / (mlc_exp(2.0f * v) + 1.0f); }

/* Never run: its required work-group size tells the host MLC_V. */
__attribute__((reqd_work_group_size(MLC_V, 1, 1))) __kernel void mlc_cells_per_item(void) {}

#define MLC_ACT_NONE 0
#define MLC_ACT_GELU 1
#define MLC_ACT_TANH 2
#define MLC_ACT_SIGMOID 3

inline mlc_f mlc_activate(mlc_f v, int act) {
    return act == MLC_ACT_GELU ? mlc_gelu(v) : act == MLC_ACT_TANH ? mlc_tanh(v)
                                         : act == MLC_ACT_SIGMOID ? mlc_sigmoid(v) : v;
}

/* out[o] = act(b[o] + W[o] . [in0, in1, in2]) for the lanes' cells; W is
 * [nout][n0 + n1 + n2] (PyTorch's Linear over a concatenation), b may be
 * 0. Four rows at a time: each input vector loaded once feeds four FMA
 * chains. */
inline void mlc_dense3(__global const float *W, __global const float *b, const mlc_f *in0, int n0,
                       const mlc_f *in1, int n1, const mlc_f *in2, int n2, mlc_f *out, int nout, int act) {
    const int ld = n0 + n1 + n2;
    int o = 0;
    for (; o + 4 <= nout; o += 4) {
        __global const float *w0 = W + (size_t)o * ld, *w1 = w0 + ld, *w2 = w1 + ld, *w3 = w2 + ld;
        mlc_f a0 = b ? b[o] : 0.0f, a1 = b ? b[o + 1] : 0.0f, a2 = b ? b[o + 2] : 0.0f, a3 = b ? b[o + 3] : 0.0f;
        for (int i = 0; i < n0; i++) {
            mlc_f v = in0[i];
            a0 = fma(w0[i], v, a0), a1 = fma(w1[i], v, a1), a2 = fma(w2[i], v, a2), a3 = fma(w3[i], v, a3);
        }
        for (int i = 0; i < n1; i++) {
            mlc_f v = in1[i];
            a0 = fma(w0[n0 + i], v, a0), a1 = fma(w1[n0 + i], v, a1);
            a2 = fma(w2[n0 + i], v, a2), a3 = fma(w3[n0 + i], v, a3);
        }
        for (int i = 0; i < n2; i++) {
            mlc_f v = in2[i];
            a0 = fma(w0[n0 + n1 + i], v, a0), a1 = fma(w1[n0 + n1 + i], v, a1);
            a2 = fma(w2[n0 + n1 + i], v, a2), a3 = fma(w3[n0 + n1 + i], v, a3);
        }
        out[o] = mlc_activate(a0, act), out[o + 1] = mlc_activate(a1, act);
        out[o + 2] = mlc_activate(a2, act), out[o + 3] = mlc_activate(a3, act);
    }
    for (; o < nout; o++) {
        __global const float *w = W + (size_t)o * ld;
        mlc_f a = b ? b[o] : 0.0f;
        for (int i = 0; i < n0; i++)
            a = fma(w[i], in0[i], a);
        for (int i = 0; i < n1; i++)
            a = fma(w[n0 + i], in1[i], a);
        for (int i = 0; i < n2; i++)
            a = fma(w[n0 + n1 + i], in2[i], a);
        out[o] = mlc_activate(a, act);
    }
}

inline void mlc_dense(__global const float *W, __global const float *b, const mlc_f *in, int nin, mlc_f *out,
                      int nout, int act) {
    mlc_dense3(W, b, in, nin, in, 0, in, 0, out, nout, act);
}

/* In-place LayerNorm over n features of each lane's cell, eps 1e-5. */
inline void mlc_layernorm(mlc_f *v, int n, __global const float *g, __global const float *b) {
    mlc_f mean = 0.0f, var = 0.0f;
    for (int i = 0; i < n; i++)
        mean += v[i];
    mean /= (float)n;
    for (int i = 0; i < n; i++) {
        mlc_f d = v[i] - mean;
        var = fma(d, d, var);
    }
    mlc_f inv = 1.0f / sqrt(var / (float)n + 1e-5f);
    for (int i = 0; i < n; i++)
        v[i] = fma((v[i] - mean) * inv, g[i], b[i]);
}

/* The lanes' cells: work-item w holds MLC_V consecutive cells of one row
 * of the chunk, row w / nxb (nxb = ceil(extent.x / MLC_V) work-items per
 * row), chunk x from (w % nxb) MLC_V. So the lanes' neighbours at one
 * offset are consecutive cells of one lattice row (contiguous loads from
 * feature-major buffers), and y, z are the same for every lane. A lane
 * past the row's end repeats its last cell (*in_chunk 0: never stored).
 * Sets the chunk cell ids c, the lattice x of every lane (cx, unclamped)
 * and the row's y and z. */
inline mlc_i mlc_row_cells(int w, int4 origin, int4 extent, mlc_i *cx, int *cy, int *cz, mlc_i *in_chunk) {
#if MLC_V == 16
    const mlc_i l = (mlc_i)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#elif MLC_V == 4
    const mlc_i l = (mlc_i)(0, 1, 2, 3);
#else
    const mlc_i l = (mlc_i)(0, 1, 2, 3, 4, 5, 6, 7);
#endif
    const int nxb = (extent.x + MLC_V - 1) / MLC_V;
    const int row = w / nxb;
    const mlc_i xc = (w % nxb) * MLC_V + l; /* chunk x */
    *in_chunk = xc < extent.x;
    *cx = origin.x + xc;
    *cy = origin.y + row % extent.y;
    *cz = origin.z + row / extent.y;
    return min(xc, (mlc_i)(extent.x - 1)) + extent.x * row;
}

/* Everything a CPU-shaped chunk kernel knows of its lanes: lattice x of
 * each (cx; y and z are the row's), lattice index (cidx, ci), chunk cell
 * (cc), whether the lane is stored (store: inside the chunk), whether
 * its band has neighbours (keep), and both as a lane mask (kv). */
typedef struct mlc_lanes {
    mlc_i cx, cidx, kv;
    int cy, cz;
    int ci[MLC_V], cc[MLC_V], store[MLC_V], keep[MLC_V];
} mlc_lanes;

inline void mlc_lanes_of(int w, int4 dims, int4 origin, int4 extent, __global const int *band_count,
                         mlc_lanes *L) {
    mlc_i inc;
    mlc_i c = mlc_row_cells(w, origin, extent, &L->cx, &L->cy, &L->cz, &inc);
    L->cidx = min(L->cx, (mlc_i)(origin.x + extent.x - 1)) + dims.x * (L->cy + dims.y * L->cz);
    mlc_vstore(L->cidx, 0, L->ci);
    mlc_vstore(c, 0, L->cc);
    mlc_vstore(inc, 0, L->store);
    for (int l = 0; l < MLC_V; l++)
        L->keep[l] = band_count[L->cc[l]] > 0;
    L->kv = (mlc_vload(0, L->keep) != 0) & inc;
}

/* Work-items of a chunk (ec_cpu_enqueue_cells computes the same). */
inline int mlc_items(int4 extent) { return (extent.x + MLC_V - 1) / MLC_V * extent.y * extent.z; }

/* v[f] for f < n: lane l reads src[idx[l] * ld + f] (a gather). */
inline void mlc_gather(__global const float *src, const int *idx, int ld, int n, mlc_f *v) {
    for (int f = 0; f < n; f++) {
        float t[MLC_V];
        for (int l = 0; l < MLC_V; l++)
            t[l] = src[(size_t)idx[l] * ld + f];
        v[f] = mlc_vload(0, t);
    }
}

/* dst[c[l] * ld + f] = v[f] for the lanes with store[l] != 0, zeros
 * where keep[l] is 0 (an empty band). */
inline void mlc_store_cells(__global float *dst, int ld, int n, const mlc_f *v, const int *c, const int *store,
                            const int *keep) {
    for (int f = 0; f < n; f++) {
        float t[MLC_V];
        mlc_vstore(v[f], 0, t);
        for (int l = 0; l < MLC_V; l++)
            if (store[l])
                dst[(size_t)c[l] * ld + f] = keep[l] ? t[l] : 0.0f;
    }
}

#endif
