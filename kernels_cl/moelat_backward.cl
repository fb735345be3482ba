/* The engine's part of the batched backward (engine/src/backend/opencl/grad_cl.c): the
 * gate forward and adjoint, the gather of neighbour adjoints and the
 * commit of a chunk. Built after backward_portable.h and the gate's
 * portable source (ml_gate_f64 / ml_gate_f64_bwd, float here) with
 *   ML_GH  the gate's hidden size
 *
 * A chunk is a run of whole rows, cells [c0, c0 + n_cells). Its results
 * go to chunk-private buffers (dchunk over planes the chunk's cells and
 * their neighbours cover, from cell t0; dext_chunk; the slots' weight
 * gradients) and only ml_bwd_commit, one launch, adds them to the step's
 * and the run's totals: a chunk whose device work fails half-way leaves
 * nothing behind and is redone on the host. Every sum runs in a fixed
 * order; there are no float atomics. */

/* The cell at offset o from (x, y, z), or -1 outside the lattice. */
static int ml_bwd_at(int4 o, int x, int y, int z, int X, int Y, int Z) {
    const int nx = x + o.x, ny = y + o.y, nz = z + o.z;
    if (nx < 0 || ny < 0 || nz < 0 || nx >= X || ny >= Y || nz >= Z)
        return -1;
    return nx + X * (ny + Y * nz);
}

/* nu of cell (x, y, z): the mean of every neighbour of every band (all
 * three stencils, concatenated in offsets), into nu; returns the count.
 * With lanes, lane by state value, each value's sum in stencil order. */
static int ml_bwd_nu(__global const float *state, __global const int4 *offsets, int n_off, int X, int Y, int Z,
                     int x, int y, int z, int S, __global float *nu) {
    int total = 0;
#if BM_LANES > 1
    BM_FOR(s, S) {
        float acc = 0.0f;
        for (int j = 0; j < n_off; j++) {
            const int at = ml_bwd_at(offsets[j], x, y, z, X, Y, Z);
            if (at >= 0)
                acc += state[(size_t)at * S + s];
        }
        nu[s] = acc;
    }
    for (int j = 0; j < n_off; j++) /* the count, in every lane */
        total += ml_bwd_at(offsets[j], x, y, z, X, Y, Z) >= 0;
#else
    for (int s = 0; s < S; s++)
        nu[s] = 0.0f;
    for (int j = 0; j < n_off; j++) {
        const int at = ml_bwd_at(offsets[j], x, y, z, X, Y, Z);
        if (at < 0)
            continue;
        __global const float *src = state + (size_t)at * S;
        for (int s = 0; s < S; s++)
            nu[s] += src[s];
        total++;
    }
#endif
    if (total > 0)
        BM_FOR(s, S)
            nu[s] /= (float)total;
    BM_SYNC;
    return total;
}

/* The chunk-local index of the cell that saw (x, y, z) at offset d (the
 * stencil is symmetric: it is (x, y, z) - d), or -1 when that cell is
 * outside the lattice or the chunk [c0, c0 + n_cells). */
static int ml_bwd_source(int4 d, int x, int y, int z, int X, int Y, int Z, int c0, int n_cells) {
    const int sx = x - d.x, sy = y - d.y, sz = z - d.z;
    if (sx < 0 || sy < 0 || sz < 0 || sx >= X || sy >= Y || sz >= Z)
        return -1;
    const int c = sx + X * (sy + Y * sz) - c0;
    return c >= 0 && c < n_cells ? c : -1;
}

/* Per slot work area of the gate kernels, in floats: the gate's scratch,
 * nu, dnu, dx (S each), w and dw (3 each). */
#define ML_GATE_WORK(S, scratch) ((scratch) + 3 * (S) + 6)

static void ml_bwd_gate_tensors(__global const float *weights, __global const int *tensor_off,
                                __global float *mine, __global const float **t, __global float **dt) {
    for (int k = 0; k < GATE_N_TENSORS; k++) {
        t[k] = weights + tensor_off[k];
        if (dt)
            dt[k] = mine + tensor_off[k];
    }
}

/* The gate's weights w (n_cells x 3) of the chunk's cells: the band
 * kernels scale their adjoint by them. One slot (a work-item, or a
 * work-group of ML_BWD_LANES) per slot row. */
__kernel void ml_bwd_gate_fwd(__global const float *state, __global const float *weights,
                              __global const int *tensor_off, __global const int4 *offsets, const int n_off,
                              const int X, const int Y, const int Z, const int S, const int c0,
                              const int n_cells, const int n_slots, const int slot_floats,
                              const int scratch_floats, __global float *slot_work, __global float *gate_w) {
    const int slot = (int)(get_global_id(0) / BM_LANES);
    if (slot >= n_slots)
        return;
    __global const float *t[GATE_N_TENSORS];
    ml_bwd_gate_tensors(weights, tensor_off, 0, t, 0);
    __global float *scratch = slot_work + (size_t)slot * (size_t)slot_floats;
    __global float *nu = scratch + scratch_floats, *w = nu + 3 * S;
    for (int c = slot; c < n_cells; c += n_slots) {
        const int i = c0 + c;
        const int x = i % X, y = (i / X) % Y, z = i / (X * Y);
        ml_bwd_nu(state, offsets, n_off, X, Y, Z, x, y, z, S, nu);
        ml_gate_f64(t, S, ML_GH, state + (size_t)i * S, nu, w, scratch);
        BM_FOR(k, 3)
            gate_w[(size_t)c * 3 + k] = w[k];
        BM_SYNC;
    }
}

/* The gate's adjoint from dw (n_cells x 3, the band kernels' g . E_k):
 * dchunk[own] += dx, dnu[c] = dL/dnu / (neighbour count), which every
 * neighbour receives (ml_bwd_gather), and the gate's weight gradients into
 * the slot's row. */
__kernel void ml_bwd_gate(__global const float *state, __global const float *weights,
                          __global const int *tensor_off, __global const int4 *offsets, const int n_off,
                          const int X, const int Y, const int Z, const int S, const int c0, const int n_cells,
                          const int t0, const int n_slots, const int slot_floats, const int scratch_floats,
                          const int n_weights, __global const float *dw_gate, __global float *slot_dw,
                          __global float *slot_work, __global float *dchunk, __global float *dnu_out) {
    const int slot = (int)(get_global_id(0) / BM_LANES);
    if (slot >= n_slots)
        return;
    __global const float *t[GATE_N_TENSORS];
    __global float *dt[GATE_N_TENSORS];
    ml_bwd_gate_tensors(weights, tensor_off, slot_dw + (size_t)slot * (size_t)n_weights, t, dt);
    __global float *scratch = slot_work + (size_t)slot * (size_t)slot_floats;
    __global float *nu = scratch + scratch_floats, *dnu = nu + S, *dx = dnu + S, *w = dx + S, *dw = w + 3;
    for (int c = slot; c < n_cells; c += n_slots) {
        const int i = c0 + c;
        const int x = i % X, y = (i / X) % Y, z = i / (X * Y);
        const int total = ml_bwd_nu(state, offsets, n_off, X, Y, Z, x, y, z, S, nu);
        ml_gate_f64(t, S, ML_GH, state + (size_t)i * S, nu, w, scratch);
        BM_FOR(k, 3)
            dw[k] = dw_gate[(size_t)c * 3 + k];
        BM_FOR(s, S) {
            dnu[s] = 0.0f;
            dx[s] = 0.0f;
        }
        BM_SYNC;
        ml_gate_f64_bwd(t, dt, S, ML_GH, w, dw, dx, dnu, scratch);
        __global float *own = dchunk + (size_t)(i - t0) * S;
        __global float *dn = dnu_out + (size_t)c * S;
        BM_FOR(s, S) {
            own[s] += dx[s];
            dn[s] = total > 0 ? dnu[s] / (float)total : 0.0f;
        }
        BM_SYNC;
    }
}

/* Projected bands (MOELAT_BACKWARD_CL_PROJECTED; ml_bwd_band's ML_PROJ):
 * proj_info holds per band P, the offset of W_p's first element in the
 * flat weights (its tensor's plus proj_col), W_p's row length and the
 * band's first column in the rows of q_stride values (proj, Q); P = 0 for
 * a band that is not projected. */
#define ML_PI_P(pi, k) (pi)[4 * (k)]
#define ML_PI_W(pi, k) (pi)[4 * (k) + 1]
#define ML_PI_LD(pi, k) (pi)[4 * (k) + 2]
#define ML_PI_Q(pi, k) (pi)[4 * (k) + 3]

/* The projected band column q belongs to, or -1. */
static int ml_proj_band(__global const int *pi, int q) {
    for (int k = 0; k < 3; k++)
        if (q >= ML_PI_Q(pi, k) && q < ML_PI_Q(pi, k) + ML_PI_P(pi, k))
            return k;
    return -1;
}

static float ml_sign(float v) { return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f); }

/* W_p n of every cell of the lattice, once per reverse step: proj[i][q]
 * for the projected bands' columns q. One work-item per value. */
__kernel void ml_bwd_project(__global const float *state, __global const float *weights, __global const int *pi,
                             const int q_stride, const int S, const int N, __global float *proj) {
    const size_t gid = get_global_id(0);
    if (gid >= (size_t)N * q_stride)
        return;
    const int q = (int)(gid % q_stride), i = (int)(gid / q_stride), k = ml_proj_band(pi, q);
    if (k < 0)
        return;
    __global const float *w = weights + ML_PI_W(pi, k) + (size_t)(q - ML_PI_Q(pi, k)) * ML_PI_LD(pi, k);
    __global const float *n = state + (size_t)i * S;
    float acc = 0.0f;
    for (int s = 0; s < S; s++)
        acc += w[s] * n[s];
    proj[gid] = acc;
}

/* Per target cell of the chunk, the sum of dL/d(W_p n_j) over the edges
 * that read it (Q, n_targets x q_stride, stencil order): the gather's
 * W_p^T Q and ml_bwd_proj_dw's weight gradient read it. */
__kernel void ml_bwd_gather_proj(__global const float *dedge0, __global const int4 *off0, const int n0,
                                 __global const float *dedge1, __global const int4 *off1, const int n1,
                                 __global const float *dedge2, __global const int4 *off2, const int n2,
                                 __global const int *pi, const int q_stride, const int X, const int Y, const int Z,
                                 const int S, const int c0, const int n_cells, const int t0, const int n_targets,
                                 __global float *Q) {
    const size_t gid = get_global_id(0);
    if (gid >= (size_t)n_targets * q_stride)
        return;
    const int q = (int)(gid % q_stride), i = t0 + (int)(gid / q_stride), k = ml_proj_band(pi, q);
    float acc = 0.0f;
    if (k >= 0) {
        const int x = i % X, y = (i / X) % Y, z = i / (X * Y);
        __global const float *dedge = k == 0 ? dedge0 : k == 1 ? dedge1 : dedge2;
        __global const int4 *off = k == 0 ? off0 : k == 1 ? off1 : off2;
        const int cnt = k == 0 ? n0 : k == 1 ? n1 : n2, P = ML_PI_P(pi, k), p = q - ML_PI_Q(pi, k);
        const size_t per = 2 * (size_t)S + (size_t)cnt * P;
        for (int j = 0; j < cnt; j++) {
            const int c = ml_bwd_source(off[j], x, y, z, X, Y, Z, c0, n_cells);
            if (c >= 0)
                acc += dedge[(size_t)c * per + 2 * S + (size_t)j * P + p];
        }
    }
    Q[gid] = acc;
}

/* The same sums with one work-item per target cell, for CPU devices: the
 * stencil walk and its bounds checks once per cell and band instead of
 * once per value (as ml_bwd_gather_cells). The same sums in the same order. */
__kernel void ml_bwd_gather_proj_cells(__global const float *dedge0, __global const int4 *off0, const int n0,
                                       __global const float *dedge1, __global const int4 *off1, const int n1,
                                       __global const float *dedge2, __global const int4 *off2, const int n2,
                                       __global const int *pi, const int q_stride, const int X, const int Y,
                                       const int Z, const int S, const int c0, const int n_cells, const int t0,
                                       const int n_targets, __global float *Q) {
    const int t = (int)get_global_id(0);
    if (t >= n_targets)
        return;
    const int i = t0 + t;
    const int x = i % X, y = (i / X) % Y, z = i / (X * Y);
    __global float *qt = Q + (size_t)t * q_stride;
    for (int q = 0; q < q_stride; q++)
        qt[q] = 0.0f;
    for (int k = 0; k < 3; k++) {
        const int P = ML_PI_P(pi, k);
        if (P == 0)
            continue;
        __global const float *dedge = k == 0 ? dedge0 : k == 1 ? dedge1 : dedge2;
        __global const int4 *off = k == 0 ? off0 : k == 1 ? off1 : off2;
        const int cnt = k == 0 ? n0 : k == 1 ? n1 : n2;
        const size_t per = 2 * (size_t)S + (size_t)cnt * P;
        __global float *dst = qt + ML_PI_Q(pi, k);
        for (int j = 0; j < cnt; j++) {
            const int c = ml_bwd_source(off[j], x, y, z, X, Y, Z, c0, n_cells);
            if (c < 0)
                continue;
            __global const float *src = dedge + (size_t)c * per + 2 * S + (size_t)j * P;
            for (int p = 0; p < P; p++)
                dst[p] += src[p];
        }
    }
}

/* W_p's weight gradient from the chunk: sum over its targets t of
 * Q[t] (x) n_t, in target order, added to slot row 0 (ml_bwd_commit then
 * sums the slots into dw). One work-item per element of W_p's S columns. */
__kernel void ml_bwd_proj_dw(__global const float *Q, __global const int *pi, const int q_stride,
                             __global const float *state, const int S, const int t0, const int n_targets,
                             __global float *slot_dw) {
    const size_t gid = get_global_id(0);
    if (gid >= (size_t)q_stride * S)
        return;
    const int q = (int)(gid / S), s = (int)(gid % S), k = ml_proj_band(pi, q);
    if (k < 0)
        return;
    float acc = 0.0f;
    for (int t = 0; t < n_targets; t++)
        acc += Q[(size_t)t * q_stride + q] * state[(size_t)(t0 + t) * S + s];
    slot_dw[ML_PI_W(pi, k) + (size_t)(q - ML_PI_Q(pi, k)) * ML_PI_LD(pi, k) + s] += acc;
}

/* Neighbour adjoints of the chunk's cells, gathered by their targets: the
 * stencil is symmetric, so the cells that saw target i at stencil entry j
 * are i - offset_j. One work-item per (target cell, state value), targets
 * from cell t0 (planes the chunk's neighbours reach). Bands in order, each
 * entry in stencil order, then the gate's nu over all entries. */
__kernel void ml_bwd_gather(__global const float *dedge0, __global const int4 *off0, const int n0,
                            __global const float *dedge1, __global const int4 *off1, const int n1,
                            __global const float *dedge2, __global const int4 *off2, const int n2,
                            const int mean_only, /* bit k: band k's dedge holds one vector per cell */
                            __global const float *dnu, __global const int4 *off_all, const int n_all,
                            const int X, const int Y, const int Z, const int S, const int c0,
                            const int n_cells, const int t0, const int n_targets, __global float *dchunk,
                            __global const int *pi, const int q_stride, __global const float *Q,
                            __global const float *weights, __global const float *state) {
    const size_t gid = get_global_id(0);
    if (gid >= (size_t)n_targets * S)
        return;
    const int s = (int)(gid % S), i = t0 + (int)(gid / S);
    const int x = i % X, y = (i / X) % Y, z = i / (X * Y);
    __global const float *dedge[3] = {dedge0, dedge1, dedge2};
    __global const int4 *off[3] = {off0, off1, off2};
    const int n[3] = {n0, n1, n2};
    float acc = 0.0f;
    for (int k = 0; k < 4; k++) {
        __global const int4 *o = k < 3 ? off[k] : off_all;
        const int cnt = k < 3 ? n[k] : n_all;
        if (k < 3 && ML_PI_P(pi, k) > 0) {
            /* sign(n_i) dabs + dmean of every cell that read i, then W_p^T Q */
            const int P = ML_PI_P(pi, k);
            const size_t per = 2 * (size_t)S + (size_t)cnt * P;
            const float sg = ml_sign(state[(size_t)i * S + s]);
            for (int j = 0; j < cnt; j++) {
                const int c = ml_bwd_source(o[j], x, y, z, X, Y, Z, c0, n_cells);
                if (c >= 0)
                    acc += sg * dedge[k][(size_t)c * per + s] + dedge[k][(size_t)c * per + S + s];
            }
            __global const float *w = weights + ML_PI_W(pi, k) + s;
            __global const float *qt = Q + (size_t)(i - t0) * q_stride + ML_PI_Q(pi, k);
            for (int p = 0; p < P; p++)
                acc += w[(size_t)p * ML_PI_LD(pi, k)] * qt[p];
            continue;
        }
        for (int j = 0; j < cnt; j++) {
            const int c = ml_bwd_source(o[j], x, y, z, X, Y, Z, c0, n_cells);
            if (c < 0)
                continue;
            if (k == 3 || (mean_only >> k & 1))
                acc += (k < 3 ? dedge[k] : dnu)[(size_t)c * S + s];
            else
                acc += dedge[k][((size_t)c * cnt + j) * S + s];
        }
    }
    dchunk[gid] += acc;
}

/* The same gather with one work-item per target cell and its S values in
 * a private array (MOELAT_S): the stencil walk and its bounds checks once
 * per cell instead of once per value, for CPU devices (a GPU keeps the
 * kernel above: NVIDIA's compiler has miscompiled large private arrays,
 * tools/bench/NOTES.md). The same sums in the same order. */
__kernel void ml_bwd_gather_cells(__global const float *dedge0, __global const int4 *off0, const int n0,
                                  __global const float *dedge1, __global const int4 *off1, const int n1,
                                  __global const float *dedge2, __global const int4 *off2, const int n2,
                                  const int mean_only, __global const float *dnu, __global const int4 *off_all,
                                  const int n_all, const int X, const int Y, const int Z, const int S,
                                  const int c0, const int n_cells, const int t0, const int n_targets,
                                  __global float *dchunk, __global const int *pi, const int q_stride,
                                  __global const float *Q, __global const float *weights,
                                  __global const float *state) {
    const int t = (int)get_global_id(0);
    if (t >= n_targets)
        return;
    const int i = t0 + t;
    const int x = i % X, y = (i / X) % Y, z = i / (X * Y);
    __global const float *dedge[3] = {dedge0, dedge1, dedge2};
    __global const int4 *off[3] = {off0, off1, off2};
    const int n[3] = {n0, n1, n2};
    float acc[MOELAT_S];
    for (int s = 0; s < MOELAT_S; s++)
        acc[s] = 0.0f;
    for (int k = 0; k < 4; k++) {
        __global const int4 *o = k < 3 ? off[k] : off_all;
        const int cnt = k < 3 ? n[k] : n_all;
        if (k < 3 && ML_PI_P(pi, k) > 0) { /* as ml_bwd_gather's projected bands */
            const int P = ML_PI_P(pi, k);
            const size_t per = 2 * (size_t)S + (size_t)cnt * P;
            __global const float *own = state + (size_t)i * S;
            for (int j = 0; j < cnt; j++) {
                const int c = ml_bwd_source(o[j], x, y, z, X, Y, Z, c0, n_cells);
                if (c < 0)
                    continue;
                __global const float *src = dedge[k] + (size_t)c * per;
                for (int s = 0; s < MOELAT_S; s++)
                    acc[s] += ml_sign(own[s]) * src[s] + src[S + s];
            }
            __global const float *qt = Q + (size_t)t * q_stride + ML_PI_Q(pi, k);
            for (int s = 0; s < MOELAT_S; s++) {
                __global const float *w = weights + ML_PI_W(pi, k) + s;
                for (int p = 0; p < P; p++)
                    acc[s] += w[(size_t)p * ML_PI_LD(pi, k)] * qt[p];
            }
            continue;
        }
        for (int j = 0; j < cnt; j++) {
            const int c = ml_bwd_source(o[j], x, y, z, X, Y, Z, c0, n_cells);
            if (c < 0)
                continue;
            __global const float *src = k == 3 ? dnu + (size_t)c * S
                                        : (mean_only >> k & 1) ? dedge[k] + (size_t)c * S
                                                               : dedge[k] + ((size_t)c * cnt + j) * S;
            for (int s = 0; s < MOELAT_S; s++)
                acc[s] += src[s];
        }
    }
    __global float *dst = dchunk + (size_t)t * S;
    for (int s = 0; s < MOELAT_S; s++)
        dst[s] += acc[s];
}

/* The chunk's commit, one launch: work-items [0, n_weights) sum the slots
 * in slot order into dw; the next n_vals add dchunk into the step's dacc
 * (from cell t0); the next n_ext add dext_chunk into dext. */
__kernel void ml_bwd_commit(__global const float *slot_dw, const int n_slots, const int n_weights,
                            __global float *dw, __global const float *dchunk, const int t0, const int S,
                            const int n_vals, __global float *dacc, __global const float *dext_chunk,
                            const int n_ext, __global float *dext) {
    size_t id = get_global_id(0);
    if (id < (size_t)n_weights) {
        float sum = 0.0f;
        for (int k = 0; k < n_slots; k++)
            sum += slot_dw[(size_t)k * n_weights + id];
        dw[id] += sum;
        return;
    }
    id -= (size_t)n_weights;
    if (id < (size_t)n_vals) {
        dacc[(size_t)t0 * S + id] += dchunk[id];
        return;
    }
    id -= (size_t)n_vals;
    if (id < (size_t)n_ext)
        dext[id] += dext_chunk[id];
}

/* dL/ds_t = dL/ds_{t+1} + the step's adjoint contributions: gin += dacc,
 * so the adjoint stays on the device from one reverse step to the next. */
__kernel void ml_bwd_accumulate(__global float *gin, __global const float *dacc, const int n) {
    const int i = get_global_id(0);
    if (i < n)
        gin[i] += dacc[i];
}
