/* Shared OpenCL C helpers (OpenCL C 1.2). The engine puts this file in front
 * of its own kernels and of every expert plugin's source, so plugins may use
 * everything here. Vectors passed by plain pointer are private arrays;
 * weights live in __global memory, stored [out][in] row-major as PyTorch's
 * Linear. */
#ifndef MOELAT_HELPERS_CL
#define MOELAT_HELPERS_CL

/* erf as x P(x^2) / Q(x^2) on [-3.925, 3.925], a rational fit of this
 * project (absolute error below 3.5e-7 in float32). The fit is 1 + 1 ulp at
 * 3.925, where erf rounds to 1 in float, so clamping its result to [-1, 1]
 * makes erf exactly +-1 beyond (GELU's tail v (1 + erf) / 2 is 0, not v
 * times the fit's error). Branch-free on purpose: GELU runs for every
 * hidden unit of every edge of the functional expert; the OpenCL built-in
 * branches per value on NVIDIA, and a select around the division made that
 * expert 18% slower there (tools/bench/NOTES.md). */
inline float ml_erf(float x) {
    float c = clamp(x, -3.925f, 3.925f);
    float u = c * c;
    float p = fma(fma(fma(fma(fma(2.030673613e-06f, u, 2.874633064e-04f), u, 3.875917523e-03f), u,
                          5.308306217e-02f), u, 1.929656863e-01f), u, 1.128378987f);
    float q = fma(fma(fma(fma(fma(3.802788706e-05f, u, 1.189613133e-03f), u, 1.518756710e-02f), u,
                          1.151642650e-01f), u, 5.043430328e-01f), u, 1.0f);
    return clamp(c * p / q, -1.0f, 1.0f);
}

/* tanh from one exp and one division, branch-free (absolute error about
 * 3e-7; exp overflows to inf for large x, giving 1, and underflows to 0
 * for very negative x, giving -1). */
inline float ml_tanh(float x) { return 1.0f - 2.0f / (exp(2.0f * x) + 1.0f); }

/* GELU, 0.5 v (1 + erf(v / sqrt 2)) (docs/MODEL.md): the device's one
 * definition, for float here and for the CPU-shaped kernels' vectors
 * (moelat_cpu_math.cl's mlc_gelu), each with its erf. The host's is
 * engine/sdk/backward_math.c's bm_gelu, which on the device is this. */
#define ML_GELU(v, erf_fn) (0.5f * (v) * (1.0f + erf_fn((v) * 0.70710678118654752f)))
inline float ml_gelu(float v) { return ML_GELU(v, ml_erf); }

inline float ml_sigmoid(float v) { return 1.0f / (1.0f + exp(-v)); }

/* out[o] = b[o] + sum_i W[o][i] in[i]; b may be 0 (no bias). */
inline void ml_dense(__global const float *W, __global const float *b, const float *in, int nin,
                     float *out, int nout) {
    for (int o = 0; o < nout; o++) {
        float acc = b ? b[o] : 0.0f;
        __global const float *row = W + (size_t)o * nin;
        for (int i = 0; i < nin; i++)
            acc = fma(row[i], in[i], acc);
        out[o] = acc;
    }
}

/* Adds W[:, col0 : col0 + nin] in to out: the part of a dense layer that
 * multiplies one slice of a concatenated input. ld is W's row length. */
inline void ml_dense_slice_acc(__global const float *W, int ld, int col0, const float *in,
                               int nin, float *out, int nout) {
    for (int o = 0; o < nout; o++) {
        float acc = out[o];
        __global const float *row = W + (size_t)o * ld + col0;
        for (int i = 0; i < nin; i++)
            acc = fma(row[i], in[i], acc);
        out[o] = acc;
    }
}

/* In-place LayerNorm over n values, eps 1e-5, weight g and bias b. */
inline void ml_layernorm(float *v, int n, __global const float *g, __global const float *b) {
    float mean = 0.0f;
    for (int i = 0; i < n; i++)
        mean += v[i];
    mean /= (float)n;
    float var = 0.0f;
    for (int i = 0; i < n; i++) {
        float d = v[i] - mean;
        var += d * d;
    }
    var /= (float)n;
    float inv = 1.0f / sqrt(var + 1e-5f);
    for (int i = 0; i < n; i++)
        v[i] = (v[i] - mean) * inv * g[i] + b[i];
}

/* Stencil iteration with boundary clipping. dims = (X, Y, Z, 0); cell =
 * (x, y, z, 0); off = (dx, dy, dz, 0). Returns the neighbour's linear index
 * x + X*(y + Y*z), or -1 when the offset leaves the lattice (open
 * boundaries: no neighbour). */
inline int ml_neighbour_index(int4 dims, int4 cell, int4 off) {
    int4 n = cell + off;
    if (n.x < 0 || n.y < 0 || n.z < 0 || n.x >= dims.x || n.y >= dims.y || n.z >= dims.z)
        return -1;
    return n.x + dims.x * (n.y + dims.y * n.z);
}

/* Lattice coordinates of chunk cell c (see moelat_cl_chunk). */
inline int4 ml_chunk_cell(int c, int4 origin, int4 extent) {
    return (int4)(origin.x + c % extent.x, origin.y + (c / extent.x) % extent.y,
                  origin.z + c / (extent.x * extent.y), 0);
}

inline int ml_cell_index(int4 dims, int4 cell) { return cell.x + dims.x * (cell.y + dims.y * cell.z); }

/* ---- Work-group helpers ----------------------------------------------
 * Batched kernels run one work-group of MOELAT_WG work-items ("lanes") per
 * cell: every lane of a small lattice has work, and vectors of a cell live
 * in __local memory instead of large private arrays. MOELAT_WG is a power of
 * two set by the engine's build options (moelat_cl_setup.work_group). Every
 * lane must call these helpers: they hold barriers. */
#ifndef MOELAT_WG
#define MOELAT_WG 64
#endif

#define ML_ACT_NONE 0
#define ML_ACT_GELU 1
#define ML_ACT_TANH 2
#define ML_ACT_SIGMOID 3

/* A lane's index, 0 .. MOELAT_WG - 1. Masked (ML_LANE_MASK 1, which the
 * engine sets on NVIDIA from 64 lanes: batch.c's lane_mask_option), the
 * index carries its range into the compiler: on the H200 at experiment 40^3 the local
 * expert ran 0.87 -> 0.78 ms with it, and together with functional_edges'
 * addressing the functional kernels 5.80 -> 5.10 ms, the step 9.50 ->
 * 8.74 (tools/bench/NOTES.md item 42); the sums are the same. Unmasked
 * elsewhere: PoCL 3.1 computes some kernels wrong with the mask (the CNF
 * at 32 lanes, the functional expert at 3 cells per group; oclgrind and
 * the H200 run them right). */
#ifndef ML_LANE_MASK
#define ML_LANE_MASK 0
#endif
#if ML_LANE_MASK
inline int ml_lane(void) { return (int)(get_local_id(0) & (MOELAT_WG - 1)); }
#else
inline int ml_lane(void) { return (int)get_local_id(0); }
#endif

inline float ml_activate(float v, int act) {
    return act == ML_ACT_GELU ? ml_gelu(v) : act == ML_ACT_TANH ? tanh(v) : act == ML_ACT_SIGMOID ? ml_sigmoid(v) : v;
}

/* Work-group reductions in two rounds instead of a tree: after one
 * barrier, lanes 0 .. WG/R - 1 each fold a run of R values, and after a
 * second every lane folds the WG/R run results itself (broadcast reads).
 * Three barriers per reduction instead of log2(WG) + 2; the order is
 * fixed, so the result is reproducible. Measured in tools/bench/NOTES.md
 * (item 25). */
#define ML_RED_RUN (MOELAT_WG >= 8 ? 8 : MOELAT_WG)
#define ML_WG_REDUCE(OP)                                                      \
    int l = ml_lane();                                                        \
    barrier(CLK_LOCAL_MEM_FENCE); /* a previous call may still read red */   \
    red[l] = v;                                                               \
    barrier(CLK_LOCAL_MEM_FENCE);                                             \
    if (l < MOELAT_WG / ML_RED_RUN) {                                         \
        float a = red[l * ML_RED_RUN];                                        \
        for (int j = 1; j < ML_RED_RUN; j++)                                  \
            a = OP(a, red[l * ML_RED_RUN + j]);                               \
        red[l * ML_RED_RUN] = a;                                              \
    }                                                                         \
    barrier(CLK_LOCAL_MEM_FENCE);                                             \
    float a = red[0];                                                         \
    for (int j = 1; j < MOELAT_WG / ML_RED_RUN; j++)                          \
        a = OP(a, red[j * ML_RED_RUN]);                                       \
    return a;
#define ML_ADD(a, b) ((a) + (b))

/* Sum of every lane's v, returned to every lane. red: MOELAT_WG floats of
 * scratch. The order is fixed, so the result is reproducible. */
inline float ml_wg_sum(float v, __local float *red) { ML_WG_REDUCE(ML_ADD) }

/* Largest of every lane's v, returned to every lane. */
inline float ml_wg_max(float v, __local float *red) { ML_WG_REDUCE(fmax) }

/* Copies n floats from global to local memory; visible to all lanes after. */
inline void ml_wg_load(__local float *dst, __global const float *src, int n) {
    for (int i = ml_lane(); i < n; i += MOELAT_WG)
        dst[i] = src[i];
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* out = act(W [in0, in1, in2] + b), lanes over outputs: the dense layer of
 * a concatenated input (n1 or n2 may be 0). W is [nout][n0 + n1 + n2]
 * row-major; b may be 0. The inputs must be complete (barrier) before the
 * call; out is complete for all lanes after it. */
inline void ml_wg_dense_cat(__global const float *W, __global const float *b, __local const float *in0, int n0,
                            __local const float *in1, int n1, __local const float *in2, int n2,
                            __local float *out, int nout, int act) {
    int ld = n0 + n1 + n2;
    for (int o = ml_lane(); o < nout; o += MOELAT_WG) {
        __global const float *row = W + (size_t)o * ld;
        float acc = b ? b[o] : 0.0f;
        for (int i = 0; i < n0; i++)
            acc = fma(row[i], in0[i], acc);
        for (int i = 0; i < n1; i++)
            acc = fma(row[n0 + i], in1[i], acc);
        for (int i = 0; i < n2; i++)
            acc = fma(row[n0 + n1 + i], in2[i], acc);
        out[o] = ml_activate(acc, act);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* Lanes per output row in the split dense layers below. */
#if MOELAT_WG >= 8
#define ML_DG 8
#else
#define ML_DG MOELAT_WG
#endif
/* Floats of __local scratch ml_wg_dense_cat_split needs for nout outputs. */
#define ML_DENSE_PART(nout) ((nout) * (ML_DG + 1))

/* ml_wg_dense_cat with ML_DG lanes per output row, each reading every
 * ML_DG-th weight: a group of lanes reads a contiguous run of the row, so
 * a wavefront's load touches a few cache lines instead of one per lane (a
 * lane per output reads rows ld floats apart). The partial sums meet in
 * part (ML_DENSE_PART(nout) floats; the pad keeps the group writes and the
 * per-output reads free of bank conflicts) and are added in a fixed order,
 * so the result is reproducible. Same contract as ml_wg_dense_cat. */
inline void ml_wg_dense_cat_split(__global const float *W, __global const float *b, __local const float *in0,
                                  int n0, __local const float *in1, int n1, __local const float *in2, int n2,
                                  __local float *out, int nout, int act, __local float *part) {
    const int ld = n0 + n1 + n2;
    const int l = ml_lane(), g = l % ML_DG;
    for (int o = l / ML_DG; o < nout; o += MOELAT_WG / ML_DG) {
        __global const float *row = W + (size_t)o * ld;
        float acc = 0.0f;
        for (int i = g; i < n0; i += ML_DG)
            acc = fma(row[i], in0[i], acc);
        for (int i = g; i < n1; i += ML_DG)
            acc = fma(row[n0 + i], in1[i], acc);
        for (int i = g; i < n2; i += ML_DG)
            acc = fma(row[n0 + n1 + i], in2[i], acc);
        part[o * (ML_DG + 1) + g] = acc;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int o = l; o < nout; o += MOELAT_WG) {
        float acc = b ? b[o] : 0.0f;
        for (int j = 0; j < ML_DG; j++)
            acc += part[o * (ML_DG + 1) + j];
        out[o] = ml_activate(acc, act);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

inline void ml_wg_dense_split(__global const float *W, __global const float *b, __local const float *in, int nin,
                              __local float *out, int nout, int act, __local float *part) {
    ml_wg_dense_cat_split(W, b, in, nin, in, 0, in, 0, out, nout, act, part);
}

inline void ml_wg_dense(__global const float *W, __global const float *b, __local const float *in, int nin,
                        __local float *out, int nout, int act) {
    ml_wg_dense_cat(W, b, in, nin, in, 0, in, 0, out, nout, act);
}

/* ---- Several cells per work-group ----
 * Kernels that hold T cells in one work-group (T dividing MOELAT_WG for
 * the segmented sums, at most ML_DENSE_CELLS_MAX for the dense layers)
 * read each weight once for the T cells and pay one cell's barriers. */

/* Sum over each cell's segment of lanes (WG/T lanes, T | WG) of v, into
 * out[t]; every lane sees all T sums after it. red: MOELAT_WG floats. */
inline void ml_wg_seg_sum(float v, int T, __local float *red, __local float *out) {
    int l = ml_lane(), seg = MOELAT_WG / T;
    barrier(CLK_LOCAL_MEM_FENCE); /* a previous call may still read red, out */
    red[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (l < T) {
        float a = red[l * seg];
        for (int j = 1; j < seg; j++)
            a += red[l * seg + j];
        out[l] = a;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* out[t so + o] = act(b[o] + W [in0_t, in1_t, in2_t]) for T cells t
 * (in0_t = in0 + t * s0 holds n0 values, likewise in1 and in2; n1 or n2
 * may be 0), ML_DG lanes per weight row as ml_wg_dense_cat_split, each
 * weight read once for the T cells. A lane's slice and the final sum run
 * in ml_wg_dense_cat_split's order, so each cell's outputs are bitwise
 * its. part: T * ML_DENSE_PART(nout) floats. Inputs complete before the
 * call; out complete for all lanes after it. */
#define ML_DENSE_CELLS_MAX 16
inline void ml_wg_dense_cells(__global const float *W, __global const float *b, __local const float *in0, int n0,
                              int s0, __local const float *in1, int n1, int s1, __local const float *in2, int n2,
                              int s2, __local float *out, int nout, int so, int act, int T, __local float *part) {
    const int ld = n0 + n1 + n2;
    const int l = ml_lane(), g = l % ML_DG;
    for (int o = l / ML_DG; o < nout; o += MOELAT_WG / ML_DG) {
        __global const float *row = W + (size_t)o * ld;
        float acc[ML_DENSE_CELLS_MAX];
        for (int t = 0; t < T; t++)
            acc[t] = 0.0f;
        for (int i = g; i < n0; i += ML_DG) {
            float w = row[i];
            for (int t = 0; t < T; t++)
                acc[t] = fma(w, in0[t * s0 + i], acc[t]);
        }
        for (int i = g; i < n1; i += ML_DG) {
            float w = row[n0 + i];
            for (int t = 0; t < T; t++)
                acc[t] = fma(w, in1[t * s1 + i], acc[t]);
        }
        for (int i = g; i < n2; i += ML_DG) {
            float w = row[n0 + n1 + i];
            for (int t = 0; t < T; t++)
                acc[t] = fma(w, in2[t * s2 + i], acc[t]);
        }
        for (int t = 0; t < T; t++)
            part[(t * nout + o) * (ML_DG + 1) + g] = acc[t];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = l; k < T * nout; k += MOELAT_WG) {
        int t = k / nout, o = k % nout;
        float acc = b ? b[o] : 0.0f;
        for (int j = 0; j < ML_DG; j++)
            acc += part[k * (ML_DG + 1) + j];
        out[t * so + o] = ml_activate(acc, act);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* In-place LayerNorm of T cells' n values each (v [T][n]), eps 1e-5,
 * weight g, bias b; two-pass statistics over each cell's segment of lanes.
 * st: 3 T floats of scratch. */
inline void ml_wg_layernorm_cells(__local float *v, int n, int T, __global const float *g, __global const float *b,
                                  __local float *red, __local float *st) {
    int l = ml_lane(), seg = MOELAT_WG / T, t = l / seg;
    __local float *mean = st, *inv = st + T, *sums = st + 2 * T;
    float part = 0.0f;
    for (int i = l % seg; i < n; i += seg)
        part += v[t * n + i];
    ml_wg_seg_sum(part, T, red, sums);
    if (l < T)
        mean[l] = sums[l] / (float)n;
    float m = sums[t] / (float)n;
    part = 0.0f;
    for (int i = l % seg; i < n; i += seg) {
        float d = v[t * n + i] - m;
        part += d * d;
    }
    ml_wg_seg_sum(part, T, red, sums);
    if (l < T)
        inv[l] = 1.0f / sqrt(sums[l] / (float)n + 1e-5f);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = l; k < T * n; k += MOELAT_WG) {
        int c = k / n, i = k % n;
        v[k] = (v[k] - mean[c]) * inv[c] * g[i] + b[i];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* In-place LayerNorm of n local values, eps 1e-5, weight g, bias b. */
inline void ml_wg_layernorm(__local float *v, int n, __global const float *g, __global const float *b,
                            __local float *red) {
    float part = 0.0f;
    for (int i = ml_lane(); i < n; i += MOELAT_WG)
        part += v[i];
    float mean = ml_wg_sum(part, red) / (float)n;
    part = 0.0f;
    for (int i = ml_lane(); i < n; i += MOELAT_WG) {
        float d = v[i] - mean;
        part += d * d;
    }
    float inv = 1.0f / sqrt(ml_wg_sum(part, red) / (float)n + 1e-5f);
    for (int i = ml_lane(); i < n; i += MOELAT_WG)
        v[i] = (v[i] - mean) * inv * g[i] + b[i];
    barrier(CLK_LOCAL_MEM_FENCE);
}

#endif
