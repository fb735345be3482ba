/* Functional expert, batched: one work-group of MOELAT_WG lanes per FN_T
 * chunk cells (one unless tuned, see FN_T below).
 *
 Once per step, the per-cell projections of every state n_i: a row of
 * FN_PW = 2 hd + md floats per cell in the proj buffer,
 *   [ W_n n_i (hd) | W_x n_i (hd) | A_x n_i (md) ]
 * (W_n, W_x: the n_j and x columns of message_creator.0; A_x: the x
 * columns of attention_network.0; their biases are added by the reader),
 * that is proj [N][PW] = states [N][S] x Wp^T with Wp [PW][S] the three
 * blocks packed by functional_prepare: one SGEMM (CLBlast on GPUs, see
 * functional_expert.c) or functional_project. functional_prepare also
 * writes the step's constants after the N rows: C = A_m W_2 [md][hd] and
 * c = A_m b_2 [md] (A_m: the m columns of attention_network.0, W_2 and
 * b_2: message_creator.2). An edge then costs only the add and GELU of
 * h_j = GELU(Pn_j + W_x x) and one small layer, because the message layer
 * W_2 is linear and the softmax weights sum to one:
 *   e_j = a_2 . tanh(C h_j + c + A_x x + a_b) + a_2b
 *   M   = sum_j softmax_j(e_j) (W_2 h_j + b_2) = W_2 (sum_j a_j h_j) + b_2
 * (about a third fewer multiply-adds per edge than forming m_j).
 *
 * functional_output does everything else for its chunk cells in one
 * kernel, their vectors in __local memory:
 *   1. edges, cell by cell: each lane walks the edges lane, lane + WG, ...
 *      with no barrier: h_j in registers, e_j, and its own online softmax
 *      (running max, sum and sum of w_j h_j); the lanes' sums then meet
 *      once, rescaled to the common max, and M = W_2 H + b_2;
 *   2. gate g and the GRU for all the cells, split-row dense layers
 *      (ml_wg_dense_cells: 8 lanes per weight row, coalesced reads, each
 *      weight read once for the cells);
 *   3. the CNF (cnf_wg_integrate_cells for the cells at once where the
 *      layout fits, else cnf_wg_integrate cell by cell), the result layer.
 * Phase 1's local arrays and those of phases 2-3 share memory, and so do
 * phase 2's and the CNF's (see the layout below).
 *
 * Or the same phases in two kernels (FN_SPLIT, the default up to S = 64):
 * functional_edges runs phase 1, one cell per work-group, and writes each
 * cell's M to the chunk's scratch; functional_tails runs phases 2-3 for
 * FN_T cells per group. The phases are the inline functions below, shared
 * by both forms, so the two compute the same floats. Tensor indices match
 * functional_expert.c's enum. */

#define FN_S MOELAT_S
#define FN_E MOELAT_E
#define FN_HD MOELAT_H_hd
#define FN_MD MOELAT_H_md

#define FN_G0_W 0
#define FN_G0_B 1
#define FN_G2_W 2
#define FN_G2_B 3
#define FN_MC0_W 4
#define FN_MC0_B 5
#define FN_MC2_W 6
#define FN_MC2_B 7
#define FN_AT0_W 8
#define FN_AT0_B 9
#define FN_AT2_W 10
#define FN_AT2_B 11
#define FN_UG_W 12
#define FN_UG_B 13
#define FN_RG_W 14
#define FN_RG_B 15
#define FN_CN_W 16
#define FN_CN_B 17
#define FN_CNF 18
#define FN_RP0_W 32
#define FN_RP0_B 33
#define FN_RP1_G 34
#define FN_RP1_B 35
#define FN_P(i) (P + toff[i])

/* The edge walk on tensor cores (functional_mma.cl): on NVIDIA from sm_80
 * (MOELAT_NV_SM, which the engine defines from the device's compute
 * capability) where the layers fit its tiles (hd % 16, md % 8: the
 * experiment and optimized presets, not debug's hd = 12). -DFN_MMA=0
 * keeps the portable loop there; -DFN_MMA=1 -DFN_MMA_EMULATE=1 runs the
 * tensor-core form's bookkeeping on any device (a test on PoCL). */
#ifndef FN_MMA
#if defined(MOELAT_NV_SM) && MOELAT_NV_SM >= 80 && FN_HD % 16 == 0 && FN_MD % 8 == 0 && MOELAT_WG % 32 == 0
#define FN_MMA 1
#else
#define FN_MMA 0
#endif
#endif
#if FN_MMA && (FN_HD % 16 != 0 || FN_MD % 8 != 0 || MOELAT_WG % 32 != 0)
#error "FN_MMA needs hd % 16 == 0, md % 8 == 0 and a multiple of 32 lanes"
#endif
#if FN_MMA && defined(FN_MMA_EMULATE) && FN_MMA_EMULATE
#define FN_MMA_SCRATCH (11 * MOELAT_WG)
#else
#define FN_MMA_SCRATCH 0
#endif

/* Projection floats per cell; after the N cells' rows the step's
 * constants: C [md][hd], then c [md]. */
#define FN_PW (2 * FN_HD + FN_MD)
#define FN_CONSTS (FN_MD * (FN_HD + 1))

/* Sizes rounded up to 4 floats: every local region starts 16-byte aligned,
 * so that runs of 4 weights can load as one 128-bit access. */
#define FN_A4(n) (((n) + 3) / 4 * 4)
#define FN_MAX(a, b) ((a) > (b) ? (a) : (b))

/* A lane's sum of w_j h_j lives in registers when hd is small, beyond
 * FN_HB_PRIVATE_MAX floats in the lane's row of local memory (which the
 * lanes' sums meet in anyway). */
#ifndef FN_HB_PRIVATE_MAX
#define FN_HB_PRIVATE_MAX 32
#endif
#define FN_HB_PRIVATE (FN_HD <= FN_HB_PRIVATE_MAX)
/* Rows of hd + 1 floats: a lane walking its row and lanes reading one
 * column hit distinct banks. */
#define FN_HS (FN_HD + 1)
/* Column sums of the rows: NPC slices of the lanes per column. */
#define FN_NPC (MOELAT_WG >= FN_HD ? MOELAT_WG / FN_HD : 1)

/* One kernel or two (FN_SPLIT; see functional_edges below). FN_SPLIT_KNOB
 * comes from the plugin (its tuning key functional_split, -1 when
 * unset). Unset: two kernels up to S = 64, where the edge walk runs
 * faster alone at one cell per group than inside the fused kernel (whose
 * one cell per group at S = 24 also leaves its tails latency-bound); one
 * kernel above, where at S = 128 the edges alone lose to the fused
 * kernel's four cells per group (measured in tools/bench/NOTES.md
 * item 41: split faster at S = 24 and 64, slower at 128). */
#if defined(FN_SPLIT_KNOB) && FN_SPLIT_KNOB >= 0
#define FN_SPLIT FN_SPLIT_KNOB
#elif FN_S <= 64
#define FN_SPLIT 1
#else
#define FN_SPLIT 0
#endif

/* Cells per work-group. With FN_T > 1 the dense layers of phases 2-3 read
 * each weight once for FN_T cells (one work-group per cell reads them once
 * per cell: bound by L2 traffic at 40^3, see tools/bench/NOTES.md), and
 * the edge phases of the T cells run one after the other. FN_CELLS comes
 * from the plugin (its tuning key functional_cells, 0 when unset).
 * Unset: 4 cells for S >= 48, else 1, fewer where the device's local
 * memory is too small (below FN_LOCAL); measured in tools/bench/NOTES.md
 * items 13 and 26: the dense layers' weight reads pay for it at S = 64
 * and, since the edge loop no longer tiles through local memory, at
 * S = 128; at S = 24 the cells are too few for the fused kernel. With two
 * kernels FN_T is the tails kernel's (4 unless tuned) and the edge
 * kernel takes one cell per group. The host reads the choice from
 * functional_cells_per_group. */
#if defined(FN_CELLS) && FN_CELLS > 0
#define FN_T FN_CELLS
#elif FN_S >= 48 || FN_SPLIT
#define FN_T 4 /* lowered below to what the device's local memory holds */
#define FN_T_AUTO 1
#else
#define FN_T 1
#endif

/* Local layout in floats. Persistent: red, then per cell x [T][S],
 * M [T][md], ext [T][E] and the gate g [T]. */
#define FN_O_RED 0
#define FN_O_X (FN_O_RED + FN_A4(MOELAT_WG))
#define FN_O_M (FN_O_X + FN_A4(FN_T * FN_S))
#define FN_O_EXT (FN_O_M + FN_A4(FN_T * FN_MD))
#define FN_O_G (FN_O_EXT + FN_A4(FN_T * FN_E))
#define FN_O_U (FN_O_G + FN_A4(FN_T))
/* Phase 1 (edges), from FN_O_U: C [md][hd] (rows 16-byte aligned when
 * hd % 4 == 0), W_x x, d = c + A_x x + a_b, attention_network.2's
 * weights, the lanes' rows [WG][hd + 1], the column partial sums
 * [NPC][hd], H = sum_j a_j h_j. */
#define FN_O_C FN_O_U
#define FN_O_QX (FN_O_C + FN_A4(FN_MD * FN_HD))
#define FN_O_DQ (FN_O_QX + FN_A4(FN_HD))
#define FN_O_A2 (FN_O_DQ + FN_A4(FN_MD))
#define FN_O_ROWS (FN_O_A2 + FN_A4(FN_MD))
#define FN_O_CPART (FN_O_ROWS + FN_A4(FN_MAX(MOELAT_WG * FN_HS, ML_DENSE_PART(FN_MD))))
#define FN_O_H (FN_O_CPART + FN_A4(FN_NPC * FN_HD))
#define FN_O_MMAX (FN_O_H + FN_A4(FN_HD)) /* the emulated tensor-core walk's scratch */
#define FN_END1 (FN_O_MMAX + FN_A4(FN_MMA_SCRATCH))
/* Phases 2-3, from FN_O_U, per cell [T][n]: cand (then the result
 * layer's output) and rin = [(1 - g) gnn, g cnf], which live through both
 * phases; then a scratch region that three short-lived sets take in turn:
 *   phase 2: act, gate hidden, z, rr (then rr * x) and the dense layers'
 *            partial sums;
 *   the CNF: its v, neighbour means and work;
 *   the result layer: its partial sums.
 * Overlaying them (NOTES item 37) takes experiment's footprint from 28 KB
 * to 18 KB per group (the functional kernel 5% faster at 40^3). A barrier separates each set's last read from the next
 * set's first write. Build option -DFN_NO_ALIAS=1 lays them end to end
 * instead, to time the two. */
#define FN_O_CAND FN_O_U
#define FN_O_RIN (FN_O_CAND + FN_A4(FN_T * FN_S))
#define FN_O_SCRATCH (FN_O_RIN + FN_A4(FN_T * 2 * FN_S))
#define FN_O_ACT FN_O_SCRATCH
#define FN_O_HG (FN_O_ACT + FN_A4(FN_T * FN_S))
#define FN_O_Z (FN_O_HG + FN_A4(FN_T * (FN_S / 2)))
#define FN_O_RR (FN_O_Z + FN_A4(FN_T * FN_S))
#define FN_O_DPART (FN_O_RR + FN_A4(FN_T * FN_S))
#define FN_DPART_SIZE FN_A4(FN_T * ML_DENSE_PART(FN_S)) /* widest layer: S outputs */
#define FN_END_GRU (FN_O_DPART + FN_DPART_SIZE)
/* The CNF's cells at once (cnf_wg_integrate_cells: a power of two up to
 * CNF_CELLS_MAX, euler) up to S = 64, else one by one (FN_CNF_T 1). Measured
 * on the H200 (NOTES items 29 and 38): at S = 64 the cells at once are 7%
 * faster, at S = 128 29% slower (the kernel's register budget, which the
 * edge loop shares, seems to follow it). Build option -DFN_CNF_ONE_BY_ONE=1
 * asks for one by one, -DFN_CNF_AT_ONCE=1 for at once where it fits, to
 * time the two. */
#if MOELAT_CNF_MODE == 0 && (FN_T == 2 || FN_T == 4) && !defined(FN_CNF_ONE_BY_ONE) && \
    (FN_S <= 64 || defined(FN_CNF_AT_ONCE))
#define FN_CNF_T FN_T
#else
#define FN_CNF_T 1
#endif
#define FN_CNF_WORK (FN_CNF_T > 1 ? CNF_CELLS_WORK(FN_CNF_T) : CNF_WG_WORK)
#if defined(FN_NO_ALIAS) && FN_NO_ALIAS
#define FN_O_V FN_END_GRU
#else
#define FN_O_V FN_O_SCRATCH
#endif
#define FN_O_MEAN (FN_O_V + FN_A4(FN_CNF_T * FN_S))
#define FN_O_WORK (FN_O_MEAN + FN_A4(FN_CNF_T * FN_S))
#define FN_END_CNF (FN_O_WORK + FN_A4(FN_CNF_WORK))
#if defined(FN_NO_ALIAS) && FN_NO_ALIAS
#define FN_O_RPART FN_O_DPART
#else
#define FN_O_RPART FN_O_SCRATCH
#endif
#define FN_END2 FN_MAX(FN_MAX(FN_END_GRU, FN_END_CNF), FN_O_RPART + FN_DPART_SIZE)
#define FN_LOCAL FN_MAX(FN_END1, FN_END2)

/* The layout above follows FN_T and FN_CNF_T (macros expand where they
 * are used). Where it does not fit the device's local memory the CNF goes
 * cell by cell first, then an automatic FN_T halves until it fits: at
 * S = 160 four cells need 50 KB, more than NVIDIA's 48. */
#if defined(MOELAT_LOCAL_MEM) && FN_LOCAL * 4 > MOELAT_LOCAL_MEM && FN_CNF_T > 1
#undef FN_CNF_T
#define FN_CNF_T 1
#endif
#if defined(FN_T_AUTO) && defined(MOELAT_LOCAL_MEM) && FN_LOCAL * 4 > MOELAT_LOCAL_MEM
#undef FN_T
#define FN_T 2
#if FN_LOCAL * 4 > MOELAT_LOCAL_MEM
#undef FN_T
#define FN_T 1
#endif
#endif

/* Never run: their required work-group sizes tell the host FN_T and
 * FN_SPLIT + 1 (CL_KERNEL_COMPILE_WORK_GROUP_SIZE), the compile-time
 * choices the host's launches depend on. */
__attribute__((reqd_work_group_size(FN_T, 1, 1))) __kernel void functional_cells_per_group(void) {}
__attribute__((reqd_work_group_size(FN_SPLIT + 1, 1, 1))) __kernel void functional_kernel_count(void) {}

/* Cells side by side in a functional_edges work-group (split form only):
 * FN_EC cells of MOELAT_WG lanes each, every one with its own copy of
 * phase 1's local memory. FN_EDGE_CELLS is a build option
 * (MOELAT_CL_OPTIONS=-DFN_EDGE_CELLS=n); it needs the masked lane index
 * (moelat_helpers.cl's ML_LANE_MASK, set on NVIDIA from 64 lanes) and is
 * 1 without it. Two cells per group did not pay at experiment 40^3 on
 * the H200 (NOTES item 42), so the default is 1. The host reads the
 * choice from functional_edge_cells_per_group. */
#if defined(FN_EDGE_CELLS) && FN_EDGE_CELLS > 0 && ML_LANE_MASK
#define FN_EC FN_EDGE_CELLS
#else
#define FN_EC 1
#endif
__attribute__((reqd_work_group_size(FN_EC, 1, 1))) __kernel void functional_edge_cells_per_group(void) {}
/* 2 when the edge walk runs on tensor cores (FN_MMA), else 1: for the
 * host's log. */
__attribute__((reqd_work_group_size(FN_MMA + 1, 1, 1))) __kernel void functional_edge_walk_form(void) {}

/* Row o of the packed projection weights Wp [PW][S] (see the header). */
inline __global const float *fn_proj_row(__global const float *P, __global const int *toff, int o) {
    if (o < FN_HD)
        return FN_P(FN_MC0_W) + (size_t)o * (2 * FN_S);
    if (o < 2 * FN_HD)
        return FN_P(FN_MC0_W) + (size_t)(o - FN_HD) * (2 * FN_S) + FN_S;
    return FN_P(FN_AT0_W) + (size_t)(o - 2 * FN_HD) * (FN_MD + FN_S) + FN_MD;
}

/* Per step, one work-item per value: the constants C = A_m W_2 and
 * c = A_m b_2 into proj after the N rows, then Wp [PW][S] into wp. Per
 * step, not once, because the engine may rewrite the weights between
 * steps (set_weights, resume) without preparing the expert again. */
__kernel void functional_prepare(__global const float *P, __global const int *toff, int n_total,
                                 __global float *proj, __global float *wp) {
    size_t t = get_global_id(0);
    if (t < FN_CONSTS) {
        /* item (q, i) of C, or (q, hd) of c */
        int q = (int)(t / (FN_HD + 1)), i = (int)(t % (FN_HD + 1));
        __global const float *am = FN_P(FN_AT0_W) + (size_t)q * (FN_MD + FN_S);
        __global const float *w2 = i < FN_HD ? FN_P(FN_MC2_W) + i : FN_P(FN_MC2_B);
        int ld = i < FN_HD ? FN_HD : 1;
        float acc = 0.0f;
        for (int r = 0; r < FN_MD; r++)
            acc = fma(am[r], w2[r * ld], acc);
        size_t consts = (size_t)n_total * FN_PW;
        proj[consts + (i < FN_HD ? (size_t)q * FN_HD + i : (size_t)FN_MD * FN_HD + q)] = acc;
    } else if (t < FN_CONSTS + (size_t)FN_PW * FN_S) {
        t -= FN_CONSTS;
        wp[t] = fn_proj_row(P, toff, (int)(t / FN_S))[t % FN_S];
    }
}

/* proj [N][PW] = states x Wp^T without CLBlast: one work-item per (cell,
 * output). */
__kernel void functional_project(__global const float *states, int n_total, __global const float *wp,
                                 __global float *proj) {
    size_t id = get_global_id(0);
    if (id >= (size_t)n_total * FN_PW)
        return;
    size_t i = id / FN_PW;
    __global const float *n = states + i * FN_S;
    __global const float *row = wp + (id % FN_PW) * FN_S;
    float acc = 0.0f;
    for (int s = 0; s < FN_S; s++)
        acc = fma(row[s], n[s], acc);
    proj[id] = acc;
}

#if FN_HB_PRIVATE
#define FN_HB(i) hb[i]
#else
#define FN_HB(i) hrow[i]
#endif

/* t_r = fma(C[q + r][i], h_i, t_r) for the four rows q .. q + 3 at hidden
 * unit i; c4_r: those rows as float4 (hd % 4 == 0). */
#define FN_DOT4(i4, comp, k)                                                  \
    do {                                                                      \
        t0 = fma(r0.comp, h[4 * (i4) + (k)], t0);                             \
        t1 = fma(r1.comp, h[4 * (i4) + (k)], t1);                             \
        t2 = fma(r2.comp, h[4 * (i4) + (k)], t2);                             \
        t3 = fma(r3.comp, h[4 * (i4) + (k)], t3);                             \
    } while (0)

/* ---- The phases as functions of the work-group (every lane calls them:
 * they hold barriers). lm: the group's local memory in the layout above.
 * A cell past the chunk (the last group's tail) or with an empty band
 * writes nothing or zeros, but goes through every barrier with no edges
 * (no lane returns early: a return before barriers is fragile in
 * work-group compilers such as PoCL's). */

/* Cell slot ct <- chunk cell cg (clamped into the chunk): its state x and
 * its external inputs (zero off the input face). No barrier. */
inline void fn_load_cell(int ct, int cg, __global const float *states, int4 dims, int4 origin, int4 extent,
                         int n_cells, __global const float *ext, int has_ext, __local float *lm) {
    const int lane = ml_lane();
    const int4 cell = ml_chunk_cell(min(cg, n_cells - 1), origin, extent);
    __global const float *xg = states + (size_t)ml_cell_index(dims, cell) * FN_S;
    for (int s = lane; s < FN_S; s += MOELAT_WG)
        lm[FN_O_X + ct * FN_S + s] = xg[s];
    bool on_face = has_ext && cell.z == 0;
    for (int i = lane; i < FN_E; i += MOELAT_WG)
        lm[FN_O_EXT + ct * FN_E + i] = on_face ? ext[(size_t)(cell.x + dims.x * cell.y) * FN_E + i] : 0.0f;
}

/* Phase 1's step constants into local memory: C and attention_network.2's
 * weights. Read after fn_edges_cell's first barrier. */
inline void fn_edges_begin(__global const float *proj, int n_total, __global const float *P,
                           __global const int *toff, __local float *lm) {
    const int lane = ml_lane();
    __global const float *consts = proj + (size_t)n_total * FN_PW;
    for (int t = lane; t < FN_MD * FN_HD; t += MOELAT_WG)
        lm[FN_O_C + t] = consts[t];
    for (int q = lane; q < FN_MD; q += MOELAT_WG)
        lm[FN_O_A2 + q] = FN_P(FN_AT2_W)[q];
}

#if FN_MMA
void fn_mma_walk(int n_walk, __global const int4 *offsets, int4 dims, int4 cell, __global const float *proj,
                 __local const float *qx, __local const float *C, __local const float *dq,
                 __local const float *a2, float e0, float *lmax_out, float *lsum_out, __local float *hrow,
                 __local float *sx);
#endif

/* Phase 1 for chunk cell cg: its edges, walked by all lanes, into
 * M = W_2 (sum_j a_j h_j) + b_2 (md floats, complete for all lanes after
 * the call). */
inline void fn_edges_cell(int cg, __global const int4 *offsets, int n_offsets, int4 dims, int4 origin,
                          int4 extent, int n_cells, __global const int *band_count, __global const float *proj,
                          __global const float *P, __global const int *toff, __local float *lm,
                          __local float *M) {
    const int lane = ml_lane();
    const int n_total = dims.x * dims.y * dims.z;
    __global const float *consts = proj + (size_t)n_total * FN_PW;
    __local float *red = lm + FN_O_RED;
    __local float *C = lm + FN_O_C;
    __local float *qx = lm + FN_O_QX;
    __local float *dq = lm + FN_O_DQ;
    __local float *a2 = lm + FN_O_A2;
    __local float *rows = lm + FN_O_ROWS;
    __local float *cpart = lm + FN_O_CPART;
    __local float *H = lm + FN_O_H;
    const float e0 = FN_P(FN_AT2_B)[0];
    const int c = min(cg, n_cells - 1);
#ifdef FN_TIME_NO_EDGES /* a timing switch (NOTES item 36): the tails alone, wrong outputs */
    const int n_walk = 0;
#else
    const int n_walk = cg < n_cells && band_count[c] > 0 ? n_offsets : 0;
#endif
    const int4 cell = ml_chunk_cell(c, origin, extent);
    const int ci = ml_cell_index(dims, cell);
    {
        /* The biases of message_creator.0 and attention_network.0 join
         * here: Pn_j + qx = W_n n_j + W_x x + b. */
        __global const float *px = proj + (size_t)ci * FN_PW + FN_HD;
        __global const float *pa = px + FN_HD;
        for (int i = lane; i < FN_HD; i += MOELAT_WG)
            qx[i] = px[i] + FN_P(FN_MC0_B)[i];
        for (int q = lane; q < FN_MD; q += MOELAT_WG)
            dq[q] = consts[FN_MD * FN_HD + q] + pa[q] + FN_P(FN_AT0_B)[q];
        /* Also orders the previous cell's last reads of qx and dq before
         * these writes' readers, and the caller's writes of x and ext
         * before phase 2's reads. */
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float lmax = -INFINITY; /* this lane's running max of e_j */
    float lsum = 0.0f;      /* its sum of exp(e_j - lmax) */
#if FN_MMA
    __local float *hrow = rows + lane * FN_HS;
    fn_mma_walk(n_walk, offsets, dims, cell, proj, qx, C, dq, a2, e0, &lmax, &lsum, hrow, lm + FN_O_MMAX);
#else
#if FN_HB_PRIVATE
    float hb[FN_HD];        /* its sum of exp(e_j - lmax) h_j */
#else
    __local float *hrow = rows + lane * FN_HS;
#endif
#pragma unroll
    for (int i = 0; i < FN_HD; i++)
        FN_HB(i) = 0.0f;
    /* Each lane walks its offsets k = lane, lane + WG, ... and skips
     * ahead past neighbours outside the lattice before the body, so
     * that a wavefront runs the body with every lane that still has an
     * edge (with a plain `continue` the lanes of a missing neighbour sit
     * out that pass; NOTES item 28). Same edges per lane in the same order. */
    for (int k = lane;; k += MOELAT_WG) {
        int j = -1;
        for (; k < n_walk; k += MOELAT_WG)
            if ((j = ml_neighbour_index(dims, cell, offsets[k])) >= 0)
                break;
        if (j < 0)
            break;
        /* h_j = GELU(Pn_j + W_x x) */
        float h[FN_HD];
        __global const float *pj = proj + (size_t)j * FN_PW;
#if FN_HD % 4 == 0 && FN_PW % 4 == 0
        /* Rows start 16-byte aligned: 128-bit loads. */
        __global const float4 *pj4 = (__global const float4 *)pj;
        __local const float4 *qx4 = (__local const float4 *)qx;
#pragma unroll
        for (int i4 = 0; i4 < FN_HD / 4; i4++) {
            float4 v = pj4[i4] + qx4[i4];
            h[4 * i4 + 0] = ml_gelu(v.x);
            h[4 * i4 + 1] = ml_gelu(v.y);
            h[4 * i4 + 2] = ml_gelu(v.z);
            h[4 * i4 + 3] = ml_gelu(v.w);
        }
#else
#pragma unroll
        for (int i = 0; i < FN_HD; i++)
            h[i] = ml_gelu(pj[i] + qx[i]);
#endif
        /* e_j = a_2 . tanh(C h_j + d) + a_2b, four rows of C at a time
         * (four independent sums per lane). */
        float e = e0;
        int q = 0;
#if FN_HD % 4 == 0
        for (; q + 4 <= FN_MD; q += 4) {
            __local const float4 *c4 = (__local const float4 *)(C + q * FN_HD);
            float t0 = dq[q], t1 = dq[q + 1], t2 = dq[q + 2], t3 = dq[q + 3];
#pragma unroll
            for (int i4 = 0; i4 < FN_HD / 4; i4++) {
                float4 r0 = c4[i4], r1 = c4[FN_HD / 4 + i4];
                float4 r2 = c4[2 * (FN_HD / 4) + i4], r3 = c4[3 * (FN_HD / 4) + i4];
                FN_DOT4(i4, x, 0);
                FN_DOT4(i4, y, 1);
                FN_DOT4(i4, z, 2);
                FN_DOT4(i4, w, 3);
            }
            e = fma(a2[q], ml_tanh(t0), e);
            e = fma(a2[q + 1], ml_tanh(t1), e);
            e = fma(a2[q + 2], ml_tanh(t2), e);
            e = fma(a2[q + 3], ml_tanh(t3), e);
        }
#endif
        for (; q < FN_MD; q++) {
            __local const float *cr = C + q * FN_HD;
            float t = dq[q];
#pragma unroll
            for (int i = 0; i < FN_HD; i++)
                t = fma(cr[i], h[i], t);
            e = fma(a2[q], ml_tanh(t), e);
        }
        /* Online softmax of this lane's edges. */
        float nm = fmax(lmax, e);
        float sc = exp(lmax - nm); /* 0 on the lane's first edge, else mostly 1 */
        float w = exp(e - nm);
        lmax = nm;
        lsum = fma(lsum, sc, w);
        if (sc != 1.0f) {
#pragma unroll
            for (int i = 0; i < FN_HD; i++)
                FN_HB(i) *= sc;
        }
#pragma unroll
        for (int i = 0; i < FN_HD; i++)
            FN_HB(i) = fma(w, h[i], FN_HB(i));
    }
#endif /* FN_MMA */
    /* The lanes' sums rescaled to the common max meet in the rows. */
    float gmax = ml_wg_max(lmax, red);
    float f = lmax == -INFINITY ? 0.0f : exp(lmax - gmax);
    float total = ml_wg_sum(lsum * f, red);
#if FN_HB_PRIVATE && !FN_MMA
    for (int i = 0; i < FN_HD; i++)
        rows[lane * FN_HS + i] = hb[i] * f;
#else
    for (int i = 0; i < FN_HD; i++)
        hrow[i] *= f;
#endif
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int t = lane; t < FN_NPC * FN_HD; t += MOELAT_WG) {
        int i = t % FN_HD, part = t / FN_HD;
        float sum = 0.0f;
        for (int r = part; r < MOELAT_WG; r += FN_NPC)
            sum += rows[r * FN_HS + i];
        cpart[t] = sum;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    /* No edge (an empty band): H = 0 and the output is masked. */
    float inv = total > 0.0f ? 1.0f / total : 0.0f;
    for (int i = lane; i < FN_HD; i += MOELAT_WG) {
        float sum = 0.0f;
        for (int p = 0; p < FN_NPC; p++)
            sum += cpart[p * FN_HD + i];
        H[i] = sum * inv;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    /* M = W_2 H + b_2; the rows are free for the partial sums. The
     * call ends with a barrier. */
    ml_wg_dense_split(FN_P(FN_MC2_W), FN_P(FN_MC2_B), H, FN_HD, M, FN_MD, ML_ACT_NONE, rows);
}

/* Phases 2-3 for the group's FN_T cells (chunk cells c0 ..), whose x,
 * ext and M are in local memory (complete: barrier before the call):
 * E_F into out. */
inline void fn_tails(int c0, int n_cells, __global const int *band_count, __global const float *band_mean,
                     __global const float *band_absmean, __global const float *P, __global const int *toff,
                     __global float *out, __local float *lm) {
    const int lane = ml_lane();
    __local float *red = lm + FN_O_RED;
    __local float *xs = lm + FN_O_X;
    __local float *Ms = lm + FN_O_M;
    __local float *exs = lm + FN_O_EXT;
    __local float *gs = lm + FN_O_G;
    __local float *act = lm + FN_O_ACT;
    __local float *hg = lm + FN_O_HG;
    __local float *z = lm + FN_O_Z;
    __local float *rr = lm + FN_O_RR;
    __local float *cand = lm + FN_O_CAND;
    __local float *rin = lm + FN_O_RIN;
    __local float *v = lm + FN_O_V;
    __local float *mean = lm + FN_O_MEAN;
    __local float *work = lm + FN_O_WORK;
    __local float *dpart = lm + FN_O_DPART;
    for (int k = lane; k < FN_T * FN_S; k += MOELAT_WG) {
        int c = min(c0 + k / FN_S, n_cells - 1);
        act[k] = band_absmean[(size_t)c * FN_S + k % FN_S];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    /* g = sigma(L(S/2->1)(GELU(L(2S->S/2)([x, act])))) */
    ml_wg_dense_cells(FN_P(FN_G0_W), FN_P(FN_G0_B), xs, FN_S, FN_S, act, FN_S, FN_S, act, 0, 0, hg, FN_S / 2, FN_S / 2,
                   ML_ACT_GELU, FN_T, dpart);
    ml_wg_dense_cells(FN_P(FN_G2_W), FN_P(FN_G2_B), hg, FN_S / 2, FN_S / 2, hg, 0, 0, hg, 0, 0, gs, 1, 1,
                   ML_ACT_SIGMOID, FN_T, dpart);
    /* z, rr from [x, M, ext]; cand from [rr * x, M, ext]. */
    ml_wg_dense_cells(FN_P(FN_UG_W), FN_P(FN_UG_B), xs, FN_S, FN_S, Ms, FN_MD, FN_MD, exs, FN_E, FN_E, z, FN_S, FN_S,
                   ML_ACT_SIGMOID, FN_T, dpart);
    ml_wg_dense_cells(FN_P(FN_RG_W), FN_P(FN_RG_B), xs, FN_S, FN_S, Ms, FN_MD, FN_MD, exs, FN_E, FN_E, rr, FN_S, FN_S,
                   ML_ACT_SIGMOID, FN_T, dpart);
    for (int k = lane; k < FN_T * FN_S; k += MOELAT_WG)
        rr[k] *= xs[k];
    barrier(CLK_LOCAL_MEM_FENCE);
    ml_wg_dense_cells(FN_P(FN_CN_W), FN_P(FN_CN_B), rr, FN_S, FN_S, Ms, FN_MD, FN_MD, exs, FN_E, FN_E, cand, FN_S,
                   FN_S, ML_ACT_TANH, FN_T, dpart);
    for (int k = lane; k < FN_T * FN_S; k += MOELAT_WG) {
        float g = gs[k / FN_S];
        rin[(k / FN_S) * 2 * FN_S + k % FN_S] = (1.0f - g) * ((1.0f - z[k]) * xs[k] + z[k] * cand[k]);
    }
    /* The CNF's arrays overlay z (read just above) and phase 2's others. */
    barrier(CLK_LOCAL_MEM_FENCE);

    /* ---- 3. CNF and E_F = GELU(LN(L(2S->S)([(1 - g) gnn, g cnf]))) ---- */
#if FN_CNF_T > 1
    for (int k = lane; k < FN_T * FN_S; k += MOELAT_WG) {
        mean[k] = band_mean[(size_t)min(c0 + k / FN_S, n_cells - 1) * FN_S + k % FN_S];
        v[k] = xs[k];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    cnf_wg_integrate_cells(P, toff, FN_CNF, v, mean, FN_T, work, red);
    for (int k = lane; k < FN_T * FN_S; k += MOELAT_WG)
        rin[(k / FN_S) * 2 * FN_S + FN_S + k % FN_S] = gs[k / FN_S] * v[k];
    barrier(CLK_LOCAL_MEM_FENCE);
#else
    for (int ct = 0; ct < FN_T; ct++) {
        const int c = min(c0 + ct, n_cells - 1);
        for (int s = lane; s < FN_S; s += MOELAT_WG) {
            mean[s] = band_mean[(size_t)c * FN_S + s];
            v[s] = xs[ct * FN_S + s];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        cnf_wg_integrate(P, toff, FN_CNF, v, mean, work, red);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int s = lane; s < FN_S; s += MOELAT_WG)
            rin[ct * 2 * FN_S + FN_S + s] = gs[ct] * v[s];
        /* The next cell's v and mean are written after this barrier. */
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#endif
    /* Its partial sums overlay the CNF's arrays, read before the barrier
     * that ends the CNF block above. */
    ml_wg_dense_cells(FN_P(FN_RP0_W), FN_P(FN_RP0_B), rin, 2 * FN_S, 2 * FN_S, rin, 0, 0, rin, 0, 0, cand, FN_S,
                   FN_S, ML_ACT_NONE, FN_T, lm + FN_O_RPART);
    for (int ct = 0; ct < FN_T; ct++)
        ml_wg_layernorm(cand + ct * FN_S, FN_S, FN_P(FN_RP1_G), FN_P(FN_RP1_B), red);
    for (int k = lane; k < FN_T * FN_S; k += MOELAT_WG) {
        int c = c0 + k / FN_S;
        if (c < n_cells)
            out[(size_t)c * FN_S + k % FN_S] = band_count[c] > 0 ? ml_gelu(cand[k]) : 0.0f;
    }
}

/* The whole expert in one kernel (FN_SPLIT 0): FN_T chunk cells per
 * work-group (cells g T .. g T + T - 1 of group g), their edges cell by
 * cell, then their tails at once; writes chunk->out. The required size
 * lets the compiler budget registers for exactly MOELAT_WG lanes. */
__attribute__((reqd_work_group_size(MOELAT_WG, 1, 1)))
__kernel void functional_output(
    __global const float *states, __global const int4 *offsets, int n_offsets, int4 dims,
    int4 origin, int4 extent, int n_cells, __global const int *band_count,
    __global const float *band_mean, __global const float *band_absmean,
    __global const float *ext, int has_ext, __global const float *proj, __global const float *P,
    __global const int *toff, __global float *out) {
    __local float lm[FN_LOCAL] __attribute__((aligned(16)));
    const int c0 = (int)get_group_id(0) * FN_T;
    fn_edges_begin(proj, dims.x * dims.y * dims.z, P, toff, lm);
    for (int ct = 0; ct < FN_T; ct++) {
        fn_load_cell(ct, c0 + ct, states, dims, origin, extent, n_cells, ext, has_ext, lm);
        fn_edges_cell(c0 + ct, offsets, n_offsets, dims, origin, extent, n_cells, band_count, proj, P, toff, lm,
                      lm + FN_O_M + ct * FN_MD);
    }
    /* Phase 1's memory is free from here. */
#ifdef FN_TIME_EDGES_ONLY
    /* A timing switch (NOTES item 36): phase 1 alone, M as the output. */
    for (int k = ml_lane(); k < FN_T * FN_MD; k += MOELAT_WG)
        if (c0 + k / FN_MD < n_cells)
            out[(size_t)(c0 + k / FN_MD) * FN_S + k % FN_MD] = lm[FN_O_M + k];
    return;
#endif
    fn_tails(c0, n_cells, band_count, band_mean, band_absmean, P, toff, out, lm);
}

/* The expert in two kernels (FN_SPLIT 1): functional_edges, FN_EC chunk
 * cells per work-group (1 unless built otherwise), writes each cell's M
 * (md floats) to the chunk's scratch mbuf; functional_tails then runs phases 2-3 for FN_T cells per
 * work-group. Apart, the edge walk keeps one cell per group (its best:
 * more cells per group walk one after the other) while the tails take
 * several (each weight read once for them, one cell's barriers). */
__attribute__((reqd_work_group_size(MOELAT_WG * FN_EC, 1, 1)))
__kernel void functional_edges(__global const float *states, __global const int4 *offsets, int n_offsets,
                               int4 dims, int4 origin, int4 extent, int n_cells, __global const int *band_count,
                               __global const float *proj, __global const float *P, __global const int *toff,
                               __global float *mbuf) {
    __local float lm_cells[FN_EC * FN_END1] __attribute__((aligned(16)));
    /* This lane's cell in the group and its memory (FN_END1: a multiple
     * of 4 floats). Even at FN_EC = 1 this form is kept: addressing the
     * local memory through this base instead of the array itself took
     * the kernel from 5.77 to 5.10 ms at experiment 40^3 on the H200
     * with the masked lane index (NOTES item 42; neither alone did). */
    const int part = (int)get_local_id(0) / MOELAT_WG;
    __local float *lm = lm_cells + part * FN_END1;
    const int c = (int)get_group_id(0) * FN_EC + part;
    fn_edges_begin(proj, dims.x * dims.y * dims.z, P, toff, lm);
    fn_edges_cell(c, offsets, n_offsets, dims, origin, extent, n_cells, band_count, proj, P, toff, lm,
                  lm + FN_O_M);
    for (int q = ml_lane(); q < FN_MD; q += MOELAT_WG)
        if (c < n_cells)
            mbuf[(size_t)c * FN_MD + q] = lm[FN_O_M + q];
}

__attribute__((reqd_work_group_size(MOELAT_WG, 1, 1)))
__kernel void functional_tails(__global const float *states, int4 dims, int4 origin, int4 extent, int n_cells,
                               __global const int *band_count, __global const float *band_mean,
                               __global const float *band_absmean, __global const float *ext, int has_ext,
                               __global const float *mbuf, __global const float *P, __global const int *toff,
                               __global float *out) {
    __local float lm[FN_END2] __attribute__((aligned(16)));
    const int c0 = (int)get_group_id(0) * FN_T;
    for (int ct = 0; ct < FN_T; ct++)
        fn_load_cell(ct, c0 + ct, states, dims, origin, extent, n_cells, ext, has_ext, lm);
    for (int k = ml_lane(); k < FN_T * FN_MD; k += MOELAT_WG)
        lm[FN_O_M + k] = mbuf[(size_t)min(c0 + k / FN_MD, n_cells - 1) * FN_MD + k % FN_MD];
    barrier(CLK_LOCAL_MEM_FENCE);
    fn_tails(c0, n_cells, band_count, band_mean, band_absmean, P, toff, out, lm);
}
