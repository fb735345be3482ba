/* The engine's own kernels of one batched step (after moelat_helpers.cl):
 *   ml_row_prefix    inclusive prefix sums along x of n and |n|, per row
 *   ml_aggregate     per-band mean of n_j and of |n_j|, counts, and nu
 *   ml_gate_combine  the gate, x' = x + sum_k w_k E_k, and the finite check
 * Compile-time: MOELAT_S (state size), MOELAT_GH (gate hidden size),
 * MOELAT_WG (lanes per work-group), ML_GATE_CELLS (the gate's cells per
 * work-group the host asks for), MOELAT_LOCAL_MEM (the device's local
 * memory in bytes). Chunk cell c is ml_chunk_cell(c, ...).
 *
 * Aggregation by row prefix sums. For one row offset (dy, dz) the stencil's
 * dx values of a band form contiguous runs (the band is a shell of
 * Euclidean length, and d grows with |dx|), so a band's sum over one row is
 * a difference of two prefix sums instead of a read per neighbour. The host
 * builds the run table from the stencil itself (one classification, the
 * reference's): rows[r] = (dy, dz, first, end) indexes segs[first..end);
 * segs[first] = (dx0 - 1, -1) is the row's starting endpoint, and every
 * later entry (dx, band) closes a run ending at dx that belongs to band
 * (-1: a gap, e.g. the cell itself). Runs of neighbouring bands share their
 * endpoints, so a row costs one prefix read per endpoint. Clipping at the
 * lattice edge is a clamp of each endpoint x + dx to [-1, X-1] (P[-1] = 0):
 * the clipped run's sum and count fall out of the same difference. */

/* Prefix sums along x of one row and one s per work-item, s fastest, so a
 * warp's loads and stores are consecutive floats, for rows [rows.x,
 * rows.y) (row = y + Y z: the rows a step's chunks can read). Each row's
 * prefix covers the whole row, whatever chunks the step has. No barriers:
 * the tail of the last work-group returns early. */
__kernel void ml_row_prefix(__global const float *states, int4 dims, int2 rows, __global float *pre_n,
                            __global float *pre_a) {
    size_t g = get_global_id(0) + (size_t)rows.x * MOELAT_S;
    if (g >= (size_t)rows.y * MOELAT_S)
        return;
    int s = (int)(g % MOELAT_S);
    size_t row = g / MOELAT_S;
    size_t at = row * dims.x * MOELAT_S + s;
    float p = 0.0f, a = 0.0f;
    for (int x = 0; x < dims.x; x++, at += MOELAT_S) {
        float v = states[at];
        p += v;
        a += fabs(v);
        pre_n[at] = p;
        pre_a[at] = a;
    }
}

/* Aggregation works on ML_AGG_V consecutive state values per work-item
 * (the host passes 4 when S is a multiple of 4, else 1; MOELAT_AGG_VECTOR
 * tunes it): the kernel's time follows its instructions per endpoint (the
 * table read, the clamp, the address, the branches; tools/bench/NOTES.md
 * items 20-24), which a vector of values shares. ml_aggf is floatV. */
#ifndef ML_AGG_V
#define ML_AGG_V 1
#endif
#if ML_AGG_V == 1
typedef float ml_aggf;
#define ML_AGG_LOAD(p) (*(p))
#define ML_AGG_STORE(v, p) (*(p) = (v))
#define ML_AGG_FINITE(v) isfinite(v)
#elif ML_AGG_V == 4 || ML_AGG_V == 8 || ML_AGG_V == 16
#define ML_PASTE(a, b) a##b
#define ML_PASTE_X(a, b) ML_PASTE(a, b) /* expands b first */
#define ML_WITH_V(name) ML_PASTE_X(name, ML_AGG_V) /* float4, vload4, ... */
typedef ML_WITH_V(float) ml_aggf;
#define ML_AGG_LOAD(p) ML_WITH_V(vload)(0, (p))
#define ML_AGG_STORE(v, p) ML_WITH_V(vstore)((v), 0, (p))
#define ML_AGG_FINITE(v) all(isfinite(v))
#else
#error "ML_AGG_V must be 1, 4, 8 or 16"
#endif

/* Band sums read neighbour by neighbour (lanes over s): for bands the run
 * table cannot express, every band when the prefix buffers are absent, and
 * a band whose prefix sums came out non-finite (a NaN or Inf earlier in a
 * row poisons every later prefix of it, while the reference sees it only
 * in the runs that hold it). */
inline void ml_band_direct(__global const float *states, int4 dims, int4 cell, __global const int4 *off, int n_off,
                           int s, ml_aggf *sum, ml_aggf *abs_sum, int *count) {
    ml_aggf t = 0.0f, ta = 0.0f;
    int c = 0;
    for (int j = 0; j < n_off; j++) {
        int n = ml_neighbour_index(dims, cell, off[j]);
        if (n < 0)
            continue;
        ml_aggf v = ML_AGG_LOAD(states + (size_t)n * MOELAT_S + s);
        t += v;
        ta += fabs(v);
        c++;
    }
    *sum = t;
    *abs_sum = ta;
    *count = c;
}

/* One work-item per (chunk cell, ML_AGG_V values s .. s + V - 1), s
 * fastest: the lanes of a warp read consecutive floats of the prefix rows.
 * direct: bit k set when band k is summed neighbour by neighbour from off_k
 * instead of the run table. absmask: bit k set when band k's mean of |n_j|
 * is wanted (its expert reads it); the other bands' are neither summed nor
 * written, which saves the |n| prefix reads at their endpoints. No
 * barriers: work-items past n_cells * S / V return early. */
__kernel void ml_aggregate(__global const float *states, __global const float *pre_n, __global const float *pre_a,
                           __global const int4 *rows, int n_rows, __global const int2 *segs, int4 dims,
                           int4 origin, int4 extent, int n_cells, int direct, int absmask,
                           __global const int4 *off0, int n0,
                           __global const int4 *off1, int n1,
                           __global const int4 *off2, int n2,
                           __global float *mean0, __global float *mean1, __global float *mean2,
                           __global float *abs0, __global float *abs1, __global float *abs2,
                           __global int *cnt0, __global int *cnt1, __global int *cnt2,
                           __global float *nu) {
    size_t g = get_global_id(0);
    if (g >= (size_t)n_cells * (MOELAT_S / ML_AGG_V))
        return;
    int c = (int)(g / (MOELAT_S / ML_AGG_V)), s = (int)(g % (MOELAT_S / ML_AGG_V)) * ML_AGG_V;
    int4 cell = ml_chunk_cell(c, origin, extent);
    int last = dims.x - 1;
    /* Three scalars per band, not arrays: a band index from the table
     * would make a private array dynamically indexed (spilled). */
    ml_aggf sum0 = 0.0f, sum1 = 0.0f, sum2 = 0.0f, as0 = 0.0f, as1 = 0.0f, as2 = 0.0f;
    int c0 = 0, c1 = 0, c2 = 0;
    for (int r = 0; r < n_rows; r++) {
        int4 row = rows[r];
        int y = cell.y + row.x, z = cell.z + row.y;
        if (y < 0 || y >= dims.y || z < 0 || z >= dims.z)
            continue;
        size_t first = ((size_t)z * dims.y + y) * dims.x;
        __global const float *pn = pre_n + first * MOELAT_S + s;
        __global const float *pa = pre_a + first * MOELAT_S + s;
        int e = clamp(cell.x + segs[row.z].x, -1, last);
        ml_aggf q = e >= 0 ? ML_AGG_LOAD(pn + (size_t)e * MOELAT_S) : 0.0f;
        /* The |n| prefix at endpoint qa_e (-2: none read yet), read only
         * for runs of an absmask band: at both ends of such a run, the
         * start read again unless the previous run ended there too. */
        ml_aggf qa = 0.0f;
        int qa_e = -2;
        for (int j = row.z + 1; j < row.w; j++) {
            int2 sg = segs[j];
            int e2 = clamp(cell.x + sg.x, -1, last);
            if (e2 == e)
                continue; /* clipped away: empty run, the endpoint stays */
            ml_aggf q2 = ML_AGG_LOAD(pn + (size_t)e2 * MOELAT_S);
            if (sg.y >= 0) {
                /* Not checked for NaN or Inf here: a sum is finite only
                 * if each of its differences is, so the band is checked
                 * once, at the end (per endpoint the checks cost more
                 * than the reads). */
                ml_aggf d = q2 - q, da = 0.0f;
                if ((absmask >> sg.y) & 1) {
                    if (qa_e != e)
                        qa = e >= 0 ? ML_AGG_LOAD(pa + (size_t)e * MOELAT_S) : 0.0f;
                    ml_aggf qa2 = ML_AGG_LOAD(pa + (size_t)e2 * MOELAT_S);
                    da = qa2 - qa;
                    qa = qa2;
                    qa_e = e2;
                }
                int n = e2 - e;
                if (sg.y == 0) {
                    sum0 += d;
                    as0 += da;
                    c0 += n;
                } else if (sg.y == 1) {
                    sum1 += d;
                    as1 += da;
                    c1 += n;
                } else {
                    sum2 += d;
                    as2 += da;
                    c2 += n;
                }
            }
            e = e2;
            q = q2;
        }
    }
    if ((direct & 1) || !ML_AGG_FINITE(sum0) || !ML_AGG_FINITE(as0))
        ml_band_direct(states, dims, cell, off0, n0, s, &sum0, &as0, &c0);
    if ((direct & 2) || !ML_AGG_FINITE(sum1) || !ML_AGG_FINITE(as1))
        ml_band_direct(states, dims, cell, off1, n1, s, &sum1, &as1, &c1);
    if ((direct & 4) || !ML_AGG_FINITE(sum2) || !ML_AGG_FINITE(as2))
        ml_band_direct(states, dims, cell, off2, n2, s, &sum2, &as2, &c2);
    size_t at = (size_t)c * MOELAT_S + s;
    float inv0 = c0 > 0 ? 1.0f / (float)c0 : 0.0f;
    float inv1 = c1 > 0 ? 1.0f / (float)c1 : 0.0f;
    float inv2 = c2 > 0 ? 1.0f / (float)c2 : 0.0f;
    ML_AGG_STORE(sum0 * inv0, mean0 + at);
    ML_AGG_STORE(sum1 * inv1, mean1 + at);
    ML_AGG_STORE(sum2 * inv2, mean2 + at);
    if (absmask & 1)
        ML_AGG_STORE(as0 * inv0, abs0 + at);
    if (absmask & 2)
        ML_AGG_STORE(as1 * inv1, abs1 + at);
    if (absmask & 4)
        ML_AGG_STORE(as2 * inv2, abs2 + at);
    int all = c0 + c1 + c2;
    ML_AGG_STORE(all > 0 ? (sum0 + sum1 + sum2) / (float)all : (ml_aggf)0.0f, nu + at);
    if (s == 0) {
        cnt0[c] = c0;
        cnt1[c] = c1;
        cnt2[c] = c2;
    }
}

/* The gate's cells per work-group, ML_GATE_T: the host's ML_GATE_CELLS (4
 * unless knob MOELAT_GATE_CELLS says otherwise), halved until the kernel's
 * local arrays fit the device. With T > 1 the gate's two dense layers read
 * each weight once for the T cells (one cell per group reads them once per
 * cell, as the per-cell tails did before NOTES items 29 and 33) and the T
 * cells share one cell's barriers. The host reads the choice back from
 * ml_gate_cells_per_group and launches ceil(n_cells / T) groups. */
#ifndef ML_GATE_CELLS
#define ML_GATE_CELLS 1
#endif
#define ML_GATE_LOCAL(T) \
    ((T) * (3 * MOELAT_S + MOELAT_GH + 4 + ML_DENSE_PART(MOELAT_GH)) + MOELAT_WG + 3 * (T))
#define ML_GATE_T ML_GATE_CELLS
#if defined(MOELAT_LOCAL_MEM) && ML_GATE_T > 2 && ML_GATE_LOCAL(ML_GATE_T) * 4 > MOELAT_LOCAL_MEM
#undef ML_GATE_T
#define ML_GATE_T 2
#endif
#if defined(MOELAT_LOCAL_MEM) && ML_GATE_T > 1 && ML_GATE_LOCAL(ML_GATE_T) * 4 > MOELAT_LOCAL_MEM
#undef ML_GATE_T
#define ML_GATE_T 1
#endif

/* Never run: its required size tells the host ML_GATE_T. */
__kernel __attribute__((reqd_work_group_size(ML_GATE_T, 1, 1))) void ml_gate_cells_per_group(void) {}

#if ML_GATE_T == 1
/* One work-group of MOELAT_WG lanes per chunk cell (global = n_cells * WG).
 * Gate tensors live in one buffer; g_* are their offsets in floats. The
 * cell's vectors live in __local memory: lanes share the LayerNorm
 * statistics (work-group sums), the hidden units (lanes over outputs) and the
 * three logits (work-group sums), then write x' with lanes over s. check[0]
 * counts cells whose x' holds a non-finite value and check[1] keeps the
 * lowest such lattice index (the host initialises it to INT_MAX): the
 * step's finite check without another pass over the states. */
__kernel __attribute__((reqd_work_group_size(MOELAT_WG, 1, 1))) void
ml_gate_combine(__global const float *states, __global float *next, int4 dims, int4 origin, int4 extent,
                int n_cells, __global const float *nu, __global const float *out0, __global const float *out1,
                __global const float *out2, __global const int *cnt0, __global const int *cnt1,
                __global const int *cnt2, __global const float *gate, int g_w0, int g_b0, int g_w2, int g_b2,
                int g_ln_w, int g_ln_b, __global int *check, __global float *route) {
    __local float lx[MOELAT_S];
    __local float lin[2 * MOELAT_S]; /* [LN_g(x), nu] */
    __local float lh[MOELAT_GH];
    __local float red[MOELAT_WG];
    __local float dpart[ML_DENSE_PART(MOELAT_GH)];
    int c = get_group_id(0);
    int l = ml_lane();
    /* global is exactly n_cells work-groups: every lane reaches every
     * barrier; the guard only protects against a wrong launch. */
    int live = c < n_cells;
    int cc = live ? c : 0;
    int4 cell = ml_chunk_cell(cc, origin, extent);
    size_t i = (size_t)ml_cell_index(dims, cell);
    size_t base = (size_t)cc * MOELAT_S;
    ml_wg_load(lx, states + i * MOELAT_S, MOELAT_S);

    float part = 0.0f;
    for (int s = l; s < MOELAT_S; s += MOELAT_WG)
        part += lx[s];
    float mean = ml_wg_sum(part, red) / (float)MOELAT_S;
    part = 0.0f;
    for (int s = l; s < MOELAT_S; s += MOELAT_WG) {
        float d = lx[s] - mean;
        part += d * d;
    }
    float inv = 1.0f / sqrt(ml_wg_sum(part, red) / (float)MOELAT_S + 1e-5f);
    __global const float *lw = gate + g_ln_w, *lb = gate + g_ln_b;
    for (int s = l; s < MOELAT_S; s += MOELAT_WG) {
        lin[s] = (lx[s] - mean) * inv * lw[s] + lb[s];
        lin[MOELAT_S + s] = nu[base + s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    ml_wg_dense_split(gate + g_w0, gate + g_b0, lin, 2 * MOELAT_S, lh, MOELAT_GH, ML_ACT_GELU, dpart);

    __global const float *W2 = gate + g_w2, *b2 = gate + g_b2;
    float p0 = 0.0f, p1 = 0.0f, p2 = 0.0f;
    for (int h = l; h < MOELAT_GH; h += MOELAT_WG) {
        float a = lh[h];
        p0 = fma(W2[h], a, p0);
        p1 = fma(W2[MOELAT_GH + h], a, p1);
        p2 = fma(W2[2 * MOELAT_GH + h], a, p2);
    }
    float z0 = ml_wg_sum(p0, red) + b2[0];
    float z1 = ml_wg_sum(p1, red) + b2[1];
    float z2 = ml_wg_sum(p2, red) + b2[2];
    float m = fmax(z0, fmax(z1, z2));
    z0 = exp(z0 - m);
    z1 = exp(z1 - m);
    z2 = exp(z2 - m);
    float total = z0 + z1 + z2;
    /* Routing statistics: the cell's three gate weights (route[i*3 + k],
     * lattice order), read back by the host at the step's end. */
    if (live && l == 0) {
        route[i * 3] = z0 / total;
        route[i * 3 + 1] = z1 / total;
        route[i * 3 + 2] = z2 / total;
    }
    /* An empty band's expert did not run: its E_k is zero, and its output
     * buffer (stale or NaN) is never read. */
    float w0 = cnt0[cc] > 0 ? z0 / total : 0.0f;
    float w1 = cnt1[cc] > 0 ? z1 / total : 0.0f;
    float w2 = cnt2[cc] > 0 ? z2 / total : 0.0f;
    float bad = 0.0f;
    for (int s = l; s < MOELAT_S && live; s += MOELAT_WG) {
        float r = lx[s];
        if (w0 != 0.0f)
            r += w0 * out0[base + s];
        if (w1 != 0.0f)
            r += w1 * out1[base + s];
        if (w2 != 0.0f)
            r += w2 * out2[base + s];
        next[i * MOELAT_S + s] = r;
        if (!isfinite(r))
            bad = 1.0f;
    }
    if (ml_wg_max(bad, red) > 0.0f && l == 0) {
        atomic_inc(&check[0]);
        atomic_min(&check[1], (int)i);
    }
}

#else
/* ML_GATE_T chunk cells per work-group (global = ceil(n_cells / T) * WG),
 * the same function as above: the LayerNorm's statistics and the finite
 * check sum over each cell's segment of WG / T lanes, the dense layers
 * (ml_wg_dense_cells) read each weight once for the T cells, and the
 * cell's segment writes its x'. A tail group's missing cells repeat the
 * last cell and write nothing. */
__kernel __attribute__((reqd_work_group_size(MOELAT_WG, 1, 1))) void
ml_gate_combine(__global const float *states, __global float *next, int4 dims, int4 origin, int4 extent,
                int n_cells, __global const float *nu, __global const float *out0, __global const float *out1,
                __global const float *out2, __global const int *cnt0, __global const int *cnt1,
                __global const int *cnt2, __global const float *gate, int g_w0, int g_b0, int g_w2, int g_b2,
                int g_ln_w, int g_ln_b, __global int *check, __global float *route) {
    __local float lx[ML_GATE_T * MOELAT_S];
    __local float ln[ML_GATE_T * MOELAT_S]; /* LN_g(x), in place */
    __local float lnu[ML_GATE_T * MOELAT_S];
    __local float lh[ML_GATE_T * MOELAT_GH];
    __local float lz[ML_GATE_T * 4]; /* the three logits of each cell */
    __local float red[MOELAT_WG];
    __local float st[3 * ML_GATE_T];
    __local float dpart[ML_GATE_T * ML_DENSE_PART(MOELAT_GH)];
    const int l = ml_lane(), seg = MOELAT_WG / ML_GATE_T, t = l / seg;
    const int c0 = (int)get_group_id(0) * ML_GATE_T;
    for (int k = l; k < ML_GATE_T * MOELAT_S; k += MOELAT_WG) {
        int cc = min(c0 + k / MOELAT_S, n_cells - 1), s = k % MOELAT_S;
        size_t i = (size_t)ml_cell_index(dims, ml_chunk_cell(cc, origin, extent));
        lx[k] = ln[k] = states[i * MOELAT_S + s];
        lnu[k] = nu[(size_t)cc * MOELAT_S + s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    ml_wg_layernorm_cells(ln, MOELAT_S, ML_GATE_T, gate + g_ln_w, gate + g_ln_b, red, st);
    ml_wg_dense_cells(gate + g_w0, gate + g_b0, ln, MOELAT_S, MOELAT_S, lnu, MOELAT_S, MOELAT_S, lnu, 0, 0, lh,
                      MOELAT_GH, MOELAT_GH, ML_ACT_GELU, ML_GATE_T, dpart);
    ml_wg_dense_cells(gate + g_w2, gate + g_b2, lh, MOELAT_GH, MOELAT_GH, lh, 0, 0, lh, 0, 0, lz, 3, 4, ML_ACT_NONE,
                      ML_GATE_T, dpart);

    const int c = c0 + t, live = c < n_cells, cc = live ? c : n_cells - 1;
    size_t i = (size_t)ml_cell_index(dims, ml_chunk_cell(cc, origin, extent));
    size_t base = (size_t)cc * MOELAT_S;
    float z0 = lz[4 * t], z1 = lz[4 * t + 1], z2 = lz[4 * t + 2];
    float m = fmax(z0, fmax(z1, z2));
    z0 = exp(z0 - m);
    z1 = exp(z1 - m);
    z2 = exp(z2 - m);
    float total = z0 + z1 + z2;
    if (live && l % seg == 0) { /* routing statistics, as above */
        route[i * 3] = z0 / total;
        route[i * 3 + 1] = z1 / total;
        route[i * 3 + 2] = z2 / total;
    }
    float w0 = cnt0[cc] > 0 ? z0 / total : 0.0f;
    float w1 = cnt1[cc] > 0 ? z1 / total : 0.0f;
    float w2 = cnt2[cc] > 0 ? z2 / total : 0.0f;
    __local const float *x = lx + t * MOELAT_S;
    float bad = 0.0f;
    for (int s = l % seg; s < MOELAT_S && live; s += seg) {
        float r = x[s];
        if (w0 != 0.0f)
            r += w0 * out0[base + s];
        if (w1 != 0.0f)
            r += w1 * out1[base + s];
        if (w2 != 0.0f)
            r += w2 * out2[base + s];
        next[i * MOELAT_S + s] = r;
        if (!isfinite(r))
            bad = 1.0f;
    }
    ml_wg_seg_sum(bad, ML_GATE_T, red, st);
    if (l < ML_GATE_T && st[l] > 0.0f) {
        atomic_inc(&check[0]);
        atomic_min(&check[1], ml_cell_index(dims, ml_chunk_cell(c0 + l, origin, extent)));
    }
}
#endif
