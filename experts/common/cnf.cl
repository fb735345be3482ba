/* The CNF block of docs/MODEL.md on the device: one work-group of MOELAT_WG
 * lanes integrates one cell (cnf_wg_integrate). Shared by the functional
 * and distant experts (each is its own program, so these names only need
 * to be unique within one of them). Sizes come from the build options:
 * MOELAT_S, MOELAT_H_ode_hidden, MOELAT_CNF_STEPS, MOELAT_CNF_MODE and
 * MOELAT_WG. Tensor order is cnf_host.h's enum cnf_tensor, from index
 * `base` of toff. */
#ifndef MOELAT_CNF_CL
#define MOELAT_CNF_CL

#define CNF_S MOELAT_S
#define CNF_H MOELAT_H_ode_hidden

#define CNF_T_W0 0
#define CNF_T_B0 1
#define CNF_T_W3 2
#define CNF_T_B3 3
#define CNF_T_W5 4
#define CNF_T_B5 5
#define CNF_T_TIME_W 6
#define CNF_T_GAMMA 7
#define CNF_T_IN_G 8
#define CNF_T_IN_B 9
#define CNF_T_OUT_G 10
#define CNF_T_OUT_B 11
#define CNF_T_LAMBDA 13

#define CNF_P(i) (P + toff[base + (i)])

/* Vectors live in __local memory (work), lanes split every layer, and the
 * lanes of one call must all call every function below (barriers).
 *
 * Dense layers split each output's dot product over G lanes that read G
 * consecutive floats of the weight row: a warp then touches 32/G rows per
 * load instead of 32 (one row per lane, as ml_wg_dense_cat reads). That is
 * what bounds this block on a GPU: every FMA loads its weight (from L1: the
 * weights are shared by all cells), and a load costs about one L1
 * transaction per distinct line its warp touches. The G partial sums meet
 * in `part` (stride G + 1: the reading lanes hit distinct banks). */

/* Lanes per output for an input of nin values: enough inputs per lane to
 * amortise the partial-sum reduction, at most 8 (one 32-byte sector). */
#define CNF_SPLIT_RAW(nin) ((nin) >= 64 ? 8 : (nin) >= 16 ? 4 : (nin) >= 4 ? 2 : 1)
#define CNF_SPLIT(nin) (CNF_SPLIT_RAW(nin) < MOELAT_WG ? CNF_SPLIT_RAW(nin) : MOELAT_WG)
#define CNF_MAX(a, b) ((a) > (b) ? (a) : (b))
/* Partial sums of one dense layer of nin -> nout. */
#define CNF_PART_OF(nin, nout) ((nout) * (CNF_SPLIT(nin) + 1))
#define CNF_PART                                                                      \
    CNF_MAX(CNF_MAX(CNF_PART_OF(2 * CNF_S, CNF_H), CNF_PART_OF(CNF_H, CNF_H / 2)),   \
            CNF_PART_OF(CNF_H / 2, CNF_S))

/* work layout, in floats: u = LN_in([v, m]) (2S), h (H), h2 (H/2), f (S),
 * part; lipschitz adds the differences du, dh, dh2, df, their partial sums,
 * eps (S) and a second reduction row (MOELAT_WG). */
#define CNF_WO_U 0
#define CNF_WO_H (CNF_WO_U + 2 * CNF_S)
#define CNF_WO_H2 (CNF_WO_H + CNF_H)
#define CNF_WO_F (CNF_WO_H2 + CNF_H / 2)
#define CNF_WO_PART (CNF_WO_F + CNF_S)
#define CNF_WG_WORK_EULER (CNF_WO_PART + CNF_PART)
#define CNF_WO_DU CNF_WG_WORK_EULER
#define CNF_WO_DH (CNF_WO_DU + 2 * CNF_S)
#define CNF_WO_DH2 (CNF_WO_DH + CNF_H)
#define CNF_WO_DF (CNF_WO_DH2 + CNF_H / 2)
#define CNF_WO_DPART (CNF_WO_DF + CNF_S)
#define CNF_WO_EPS (CNF_WO_DPART + CNF_PART)
#define CNF_WO_RED2 (CNF_WO_EPS + CNF_S)
#if MOELAT_CNF_MODE == 1
#define CNF_WG_WORK (CNF_WO_RED2 + MOELAT_WG)
#else
#define CNF_WG_WORK CNF_WG_WORK_EULER
#endif

/* Cells a work-group may hold in the multi-cell block below. */
#define CNF_CELLS_MAX 4

/* out_t = act(W in_t + b) (+ T time on the first ntw outputs) for the T
 * cells (in_t = in + t * nin, out_t = out + t * nout), lanes over
 * (output, slice of G inputs), each weight read once for the cells. */
inline void cnf_wg_dense_cells(__global const float *W, __global const float *b, __local const float *in, int nin,
                               __local float *out, int nout, int gelu, __global const float *tw, int ntw,
                               float time, int T, __local float *part) {
    const int G = CNF_SPLIT(nin);
    int l = ml_lane(), g = l & (G - 1);
    for (int o = l / G; o < nout; o += MOELAT_WG / G) {
        __global const float *row = W + (size_t)o * nin;
        float acc[CNF_CELLS_MAX] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int i = g; i < nin; i += G) {
            float w = row[i];
            for (int t = 0; t < T; t++)
                acc[t] = fma(w, in[t * nin + i], acc[t]);
        }
        for (int t = 0; t < T; t++)
            part[(t * nout + o) * (G + 1) + g] = acc[t];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = l; k < T * nout; k += MOELAT_WG) {
        int o = k % nout;
        float acc = b[o];
        for (int j = 0; j < G; j++)
            acc += part[k * (G + 1) + j];
        if (o < ntw)
            acc = fma(tw[o], time, acc);
        out[k] = gelu ? ml_gelu(acc) : acc;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* out = act(W in + b) (+ T time on the first ntw outputs) for one cell. */
inline void cnf_wg_dense(__global const float *W, __global const float *b, __local const float *in,
                         int nin, __local float *out, int nout, int gelu, __global const float *tw,
                         int ntw, float time, __local float *part) {
    /* Not cnf_wg_dense_cells(..., 1, part): on NVIDIA's compiler that call
     * (its acc[] array and loops over T) made the whole functional kernel
     * 36% slower at S = 128 and 65% at S = 24 (tools/bench/NOTES.md item
     * 38), though the sums are the same. */
    const int G = CNF_SPLIT(nin);
    int l = ml_lane(), g = l & (G - 1);
    for (int o = l / G; o < nout; o += MOELAT_WG / G) {
        __global const float *row = W + (size_t)o * nin;
        float acc = 0.0f;
        for (int i = g; i < nin; i += G)
            acc = fma(row[i], in[i], acc);
        part[o * (G + 1) + g] = acc;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int o = l; o < nout; o += MOELAT_WG) {
        float acc = b[o];
        for (int j = 0; j < G; j++)
            acc += part[o * (G + 1) + j];
        if (o < ntw)
            acc = fma(tw[o], time, acc);
        out[o] = gelu ? ml_gelu(acc) : acc;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* Mean and 1/sqrt(var + 1e-5) of the n0 + n1 values [a0, a1] (two-pass, as
 * ml_wg_layernorm). */
inline float2 cnf_wg_ln_stats(__local const float *a0, int n0, __local const float *a1, int n1,
                              __local float *red) {
    int n = n0 + n1;
    float part = 0.0f;
    for (int i = ml_lane(); i < n; i += MOELAT_WG)
        part += i < n0 ? a0[i] : a1[i - n0];
    float mean = ml_wg_sum(part, red) / (float)n;
    part = 0.0f;
    for (int i = ml_lane(); i < n; i += MOELAT_WG) {
        float d = (i < n0 ? a0[i] : a1[i - n0]) - mean;
        part += d * d;
    }
    float inv = 1.0f / sqrt(ml_wg_sum(part, red) / (float)n + 1e-5f);
    return (float2)(mean, inv);
}

#if MOELAT_CNF_MODE == 1
/* The lipschitz mode needs d = f(t, v + eps) - f(t, v) with eps ~ 1e-4:
 * subtracting two float evaluations of f leaves three digits. Instead the
 * difference is carried through every layer next to the value (linear
 * layers map it exactly, LayerNorm and GELU have cancellation-free
 * difference forms), which is the same quantity to float rounding. */

/* (GELU(a), GELU(a + da) - GELU(a)). */
inline float2 cnf_gelu_diff(float a, float da) {
    float x = a * 0.70710678118654752f, h = da * 0.70710678118654752f;
    float e1 = erf(x + h);
    float derf;
    if (fabs(h) < 1e-2f) {
        /* erf(x + h) - erf(x) = 2/sqrt(pi) * integral of exp(-t^2) over
         * [x, x + h]; two-point Gauss-Legendre is exact to O(h^5). */
        float mid = x + 0.5f * h, hw = 0.28867513459481287f * h;
        float t1 = mid - hw, t2 = mid + hw;
        derf = h * 0.56418958354775629f * (exp(-t1 * t1) + exp(-t2 * t2));
    } else {
        derf = e1 - erf(x);
    }
    /* GELU(a + da) - GELU(a) = (da (1 + erf(x + h)) + a (erf(x + h) - erf(x))) / 2 */
    return (float2)(ml_gelu(a), 0.5f * (da * (1.0f + e1) + a * derf));
}

/* Both sums of a pair at once, in ml_wg_sum's two rounds and order. */
inline float2 cnf_wg_sum2(float a, float b, __local float *ra, __local float *rb) {
    int l = ml_lane();
    barrier(CLK_LOCAL_MEM_FENCE); /* a previous call may still read ra, rb */
    ra[l] = a;
    rb[l] = b;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (l < MOELAT_WG / ML_RED_RUN) {
        float sa = ra[l * ML_RED_RUN], sb = rb[l * ML_RED_RUN];
        for (int j = 1; j < ML_RED_RUN; j++) {
            sa += ra[l * ML_RED_RUN + j];
            sb += rb[l * ML_RED_RUN + j];
        }
        ra[l * ML_RED_RUN] = sa;
        rb[l * ML_RED_RUN] = sb;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float2 sum = (float2)(ra[0], rb[0]);
    for (int j = 1; j < MOELAT_WG / ML_RED_RUN; j++)
        sum += (float2)(ra[j * ML_RED_RUN], rb[j * ML_RED_RUN]);
    return sum;
}

/* The dense layer on the pair (in, din): out = act(W in + b) (+ T time),
 * dout = act(W (in + din) + b) - out (linear part W din, exact). */
inline void cnf_wg_dense_pair(__global const float *W, __global const float *b,
                              __local const float *in, __local const float *din, int nin,
                              __local float *out, __local float *dout, int nout, int gelu,
                              __global const float *tw, int ntw, float time, __local float *part,
                              __local float *dpart) {
    const int G = CNF_SPLIT(nin);
    int l = ml_lane(), g = l & (G - 1);
    for (int o = l / G; o < nout; o += MOELAT_WG / G) {
        __global const float *row = W + (size_t)o * nin;
        float acc = 0.0f, dacc = 0.0f;
        for (int i = g; i < nin; i += G) {
            float w = row[i];
            acc = fma(w, in[i], acc);
            dacc = fma(w, din[i], dacc);
        }
        part[o * (G + 1) + g] = acc;
        dpart[o * (G + 1) + g] = dacc;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int o = l; o < nout; o += MOELAT_WG) {
        float acc = b[o], dacc = 0.0f;
        for (int j = 0; j < G; j++) {
            acc += part[o * (G + 1) + j];
            dacc += dpart[o * (G + 1) + j];
        }
        if (o < ntw)
            acc = fma(tw[o], time, acc);
        if (gelu) {
            float2 r = cnf_gelu_diff(acc, dacc);
            acc = r.x;
            dacc = r.y;
        }
        out[o] = acc;
        dout[o] = dacc;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* LayerNorm of the pair: dst = LN([a0, a1]), ddst = LN([a0, a1] + [da0, 0])
 * - dst, from the mean's and variance's differences (no cancellation).
 * a1 has no difference.
 * May run in place (dst == a0, ddst == da0, n1 == 0): each lane reads and
 * writes only its own indices after the sums. Ends with a barrier. */
inline void cnf_wg_layernorm_pair(__local const float *a0, __local const float *da0, int n0,
                                  __local const float *a1, int n1, __local float *dst,
                                  __local float *ddst, __global const float *g,
                                  __global const float *b, __local float *red,
                                  __local float *red2) {
    int n = n0 + n1;
    float ps = 0.0f, pd = 0.0f;
    for (int i = ml_lane(); i < n; i += MOELAT_WG) {
        ps += i < n0 ? a0[i] : a1[i - n0];
        pd += i < n0 ? da0[i] : 0.0f;
    }
    float2 s = cnf_wg_sum2(ps, pd, red, red2) / (float)n;
    float mean = s.x, dmean = s.y;
    ps = 0.0f;
    pd = 0.0f;
    for (int i = ml_lane(); i < n; i += MOELAT_WG) {
        float c = (i < n0 ? a0[i] : a1[i - n0]) - mean;
        float dc = (i < n0 ? da0[i] : 0.0f) - dmean;
        ps += c * c;
        pd += (2.0f * c + dc) * dc; /* (c + dc)^2 - c^2 */
    }
    s = cnf_wg_sum2(ps, pd, red, red2) / (float)n;
    float var = s.x, dvar = s.y;
    float ra = sqrt(var + 1e-5f), rb = sqrt(var + dvar + 1e-5f);
    float inv = 1.0f / ra, inv2 = 1.0f / rb;
    float dinv = -dvar / (ra * rb * (ra + rb)); /* inv2 - inv */
    for (int i = ml_lane(); i < n; i += MOELAT_WG) {
        float c = (i < n0 ? a0[i] : a1[i - n0]) - mean;
        float dc = (i < n0 ? da0[i] : 0.0f) - dmean;
        ddst[i] = g[i] * (dc * inv2 + c * dinv);
        dst[i] = c * inv * g[i] + b[i];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}
#endif

/* Integrates the CNF block of docs/MODEL.md for one cell with the whole
 * work-group. v: S local floats, x on entry, v_K on return. m: S local
 * floats, the band's neighbour mean (fixed). work: CNF_WG_WORK local
 * floats of scratch; red: MOELAT_WG local floats. All lanes call it. */
inline void cnf_wg_integrate(__global const float *P, __global const int *toff, int base,
                             __local float *v, __local const float *m, __local float *work,
                             __local float *red) {
    __local float *u = work + CNF_WO_U;
    __local float *h = work + CNF_WO_H;
    __local float *h2 = work + CNF_WO_H2;
    __local float *f = work + CNF_WO_F;
    __local float *part = work + CNF_WO_PART;
    __global const float *gin = CNF_P(CNF_T_IN_G), *bin = CNF_P(CNF_T_IN_B);
    __global const float *gout = CNF_P(CNF_T_OUT_G), *bout = CNF_P(CNF_T_OUT_B);
    __global const float *tw = CNF_P(CNF_T_TIME_W);
    float damping = fabs(CNF_P(CNF_T_GAMMA)[0]);
    int l = ml_lane();
#if MOELAT_CNF_MODE == 1
    __local float *du = work + CNF_WO_DU;
    __local float *dh = work + CNF_WO_DH;
    __local float *dh2 = work + CNF_WO_DH2;
    __local float *df = work + CNF_WO_DF;
    __local float *dpart = work + CNF_WO_DPART;
    __local float *eps = work + CNF_WO_EPS;
    __local float *red2 = work + CNF_WO_RED2;
    float lambda = clamp(CNF_P(CNF_T_LAMBDA)[0], 0.1f, 1.0f);
    for (int s = l; s < CNF_S; s += MOELAT_WG)
        eps[s] = (s % 2) ? -1e-4f : 1e-4f;
    barrier(CLK_LOCAL_MEM_FENCE);
#endif
    for (int k = 0; k < MOELAT_CNF_STEPS; k++) {
        float time = (float)k / (float)MOELAT_CNF_STEPS;
#if MOELAT_CNF_MODE == 1
        /* f(t, v) and f(t, v + eps) - f(t, v), carried side by side. */
        cnf_wg_layernorm_pair(v, eps, CNF_S, m, CNF_S, u, du, gin, bin, red, red2);
        cnf_wg_dense_pair(CNF_P(CNF_T_W0), CNF_P(CNF_T_B0), u, du, 2 * CNF_S, h, dh, CNF_H, 1, tw,
                          0, time, part, dpart);
        cnf_wg_dense_pair(CNF_P(CNF_T_W3), CNF_P(CNF_T_B3), h, dh, CNF_H, h2, dh2, CNF_H / 2, 1,
                          tw, 0, time, part, dpart);
        cnf_wg_dense_pair(CNF_P(CNF_T_W5), CNF_P(CNF_T_B5), h2, dh2, CNF_H / 2, f, df, CNF_S, 0,
                          tw, CNF_H / 4, time, part, dpart);
        cnf_wg_layernorm_pair(f, df, CNF_S, f, 0, f, df, gout, bout, red, red2);
        /* Damping, the Lipschitz estimate and the step; lanes keep the
         * indices they wrote in the LayerNorm, so no barrier until v. */
        float num = 0.0f;
        for (int s = l; s < CNF_S; s += MOELAT_WG) {
            f[s] -= damping * v[s];
            float d = df[s] - damping * eps[s];
            num = fma(d, d, num);
        }
        num = ml_wg_sum(num, red);
        float lk = sqrt(num) / (1e-4f * sqrt((float)CNF_S) + 1e-8f);
        float dt = clamp(lambda / (lk + 1e-6f), 0.001f, 0.5f);
        for (int s = l; s < CNF_S; s += MOELAT_WG)
            v[s] = fma(dt, f[s], v[s]);
#else
        float2 st = cnf_wg_ln_stats(v, CNF_S, m, CNF_S, red);
        for (int i = l; i < 2 * CNF_S; i += MOELAT_WG)
            u[i] = ((i < CNF_S ? v[i] : m[i - CNF_S]) - st.x) * st.y * gin[i] + bin[i];
        barrier(CLK_LOCAL_MEM_FENCE);
        cnf_wg_dense(CNF_P(CNF_T_W0), CNF_P(CNF_T_B0), u, 2 * CNF_S, h, CNF_H, 1, tw, 0, time,
                     part);
        cnf_wg_dense(CNF_P(CNF_T_W3), CNF_P(CNF_T_B3), h, CNF_H, h2, CNF_H / 2, 1, tw, 0, time,
                     part);
        cnf_wg_dense(CNF_P(CNF_T_W5), CNF_P(CNF_T_B5), h2, CNF_H / 2, f, CNF_S, 0, tw, CNF_H / 4,
                     time, part);
        st = cnf_wg_ln_stats(f, CNF_S, f, 0, red);
        /* LN_out, damping and the Euler step fused: each lane owns its s. */
        float dt = 1.0f / (float)MOELAT_CNF_STEPS;
        for (int s = l; s < CNF_S; s += MOELAT_WG) {
            float fs = (f[s] - st.x) * st.y * gout[s] + bout[s] - damping * v[s];
            v[s] = fma(dt, fs, v[s]);
        }
#endif
        barrier(CLK_LOCAL_MEM_FENCE); /* v complete before the next LN_in reads it */
    }
}


/* ---- The block for up to CNF_CELLS_MAX cells per work-group (euler) ----
 * The same function as cnf_wg_integrate, for T cells at once: each dense
 * layer reads its weights once for the T cells (T sums per lane), and the
 * LayerNorm statistics of the T cells meet in one segmented reduction
 * (WG/T lanes per cell), so a step has the barriers of one cell. */
/* Work floats for T cells: u [T][2S], h [T][H], h2 [T][H/2], f [T][S],
 * the layers' partial sums, the T cells' statistics (2T) and sums (T). */
#if MOELAT_CNF_MODE == 1
#define CNF_CELLS_WORK(T) CNF_WG_WORK /* cell by cell */
#else
#define CNF_CELLS_WORK(T) ((T) * (CNF_WO_PART + CNF_PART) + 3 * (T))
#endif

/* Mean and 1/sqrt(var + 1e-5) of each cell's n0 + n1 values [a0_t, a1_t]
 * (a0_t = a0 + t * s0), two-pass as cnf_wg_ln_stats, into st[2t] and
 * st[2t + 1]; st[2T .. 3T) holds the segment sums. */
inline void cnf_wg_ln_stats_cells(__local const float *a0, int n0, int s0, __local const float *a1, int n1, int s1,
                                  int T, __local float *red, __local float *st) {
    int l = ml_lane(), seg = MOELAT_WG / T, t = l / seg, n = n0 + n1;
    __local float *sums = st + 2 * T;
    float part = 0.0f;
    for (int i = l % seg; i < n; i += seg)
        part += i < n0 ? a0[t * s0 + i] : a1[t * s1 + i - n0];
    ml_wg_seg_sum(part, T, red, sums);
    float mean = sums[t] / (float)n;
    if (l < T)
        st[2 * l] = sums[l] / (float)n;
    part = 0.0f;
    for (int i = l % seg; i < n; i += seg) {
        float d = (i < n0 ? a0[t * s0 + i] : a1[t * s1 + i - n0]) - mean;
        part += d * d;
    }
    ml_wg_seg_sum(part, T, red, sums);
    if (l < T)
        st[2 * l + 1] = 1.0f / sqrt(sums[l] / (float)n + 1e-5f);
    barrier(CLK_LOCAL_MEM_FENCE);
}


/* cnf_wg_integrate for T cells (1 <= T <= CNF_CELLS_MAX, T | MOELAT_WG):
 * v [T][S] in place, m [T][S]; work: CNF_CELLS_WORK(T) floats. The
 * lipschitz mode integrates the cells one by one. */
inline void cnf_wg_integrate_cells(__global const float *P, __global const int *toff, int base, __local float *v,
                                   __local const float *m, int T, __local float *work, __local float *red) {
#if MOELAT_CNF_MODE == 1
    for (int t = 0; t < T; t++) {
        cnf_wg_integrate(P, toff, base, v + t * CNF_S, m + t * CNF_S, work, red);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#else
    __local float *u = work;
    __local float *h = u + T * 2 * CNF_S;
    __local float *h2 = h + T * CNF_H;
    __local float *f = h2 + T * (CNF_H / 2);
    __local float *part = f + T * CNF_S;
    __local float *st = part + T * CNF_PART;
    __global const float *gin = CNF_P(CNF_T_IN_G), *bin = CNF_P(CNF_T_IN_B);
    __global const float *gout = CNF_P(CNF_T_OUT_G), *bout = CNF_P(CNF_T_OUT_B);
    __global const float *tw = CNF_P(CNF_T_TIME_W);
    float damping = fabs(CNF_P(CNF_T_GAMMA)[0]);
    int l = ml_lane();
    for (int k = 0; k < MOELAT_CNF_STEPS; k++) {
        float time = (float)k / (float)MOELAT_CNF_STEPS;
        cnf_wg_ln_stats_cells(v, CNF_S, CNF_S, m, CNF_S, CNF_S, T, red, st);
        for (int q = l; q < T * 2 * CNF_S; q += MOELAT_WG) {
            int t = q / (2 * CNF_S), i = q % (2 * CNF_S);
            float a = i < CNF_S ? v[t * CNF_S + i] : m[t * CNF_S + i - CNF_S];
            u[q] = (a - st[2 * t]) * st[2 * t + 1] * gin[i] + bin[i];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        cnf_wg_dense_cells(CNF_P(CNF_T_W0), CNF_P(CNF_T_B0), u, 2 * CNF_S, h, CNF_H, 1, tw, 0, time, T, part);
        cnf_wg_dense_cells(CNF_P(CNF_T_W3), CNF_P(CNF_T_B3), h, CNF_H, h2, CNF_H / 2, 1, tw, 0, time, T, part);
        cnf_wg_dense_cells(CNF_P(CNF_T_W5), CNF_P(CNF_T_B5), h2, CNF_H / 2, f, CNF_S, 0, tw, CNF_H / 4, time, T,
                           part);
        cnf_wg_ln_stats_cells(f, CNF_S, CNF_S, f, 0, 0, T, red, st);
        /* LN_out, damping and the Euler step fused: each lane owns its q. */
        float dt = 1.0f / (float)MOELAT_CNF_STEPS;
        for (int q = l; q < T * CNF_S; q += MOELAT_WG) {
            int t = q / CNF_S, s = q % CNF_S;
            float fs = (f[q] - st[2 * t]) * st[2 * t + 1] * gout[s] + bout[s] - damping * v[q];
            v[q] = fma(dt, fs, v[q]);
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* v complete before the next LN_in reads it */
    }
#endif
}

#endif
