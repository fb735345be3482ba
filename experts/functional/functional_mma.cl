/* The functional expert's edge walk on NVIDIA tensor cores (FN_MMA, chosen
 * in functional.cl: sm_80 or later, hd a multiple of 16, md of 8). Joined
 * after functional.cl, whose macros and fn_edges_cell it serves.
 *
 * The walk's arithmetic is t_j = C h_j + d for the edges j of a cell
 * (C [md][hd]), which the portable loop does as md x hd multiply-adds per
 * edge against local memory. Here a warp takes 32 edges at a time (each
 * lane finds its next edge as before) and forms T = H C^T + d with
 * mma.sync m16n8k8 in TF32, two tiles of 16 edges, the hidden units as K
 * and the md outputs as N. TF32 keeps 10 mantissa bits, so every operand
 * is split, a = a_hi + a_lo with a_hi its top 19 bits, and a product
 * summed as a_lo b_hi + a_hi b_lo + a_hi b_hi (the "3xTF32" split; the
 * dropped a_lo b_lo is 2^-22 of the product, and a_lo keeps its own top
 * bits only), which keeps t_j within about 1e-6 relative of the portable
 * sums: the batch-against-host checks read the same differences with
 * either walk (tools/bench/NOTES.md item 43).
 *
 * Fragment layouts are PTX's for m16n8k8 .tf32 (lane = 4 g + q):
 *   A (16 x 8):  a0 (g, q), a1 (g + 8, q), a2 (g, q + 4), a3 (g + 8, q + 4)
 *   B (8 x 8):   b0 (q, g), b1 (q + 4, g)
 *   D (16 x 8):  d0 (g, 2q), d1 (g, 2q + 1), d2 (g + 8, 2q), d3 (g + 8, 2q + 1)
 * The K order inside a tile is free as long as A and B agree: k-block
 * (p, s) maps slot q to hidden unit 16 p + 4 q + 2 s and slot q + 4 to
 * the unit after it, so a lane reads four consecutive units of an edge's
 * projection row (one 128-bit load per 16 units) and of a row of C.
 *
 * A lane thus holds the hidden units 16 p + 4 q .. + 3 of rows g and
 * g + 8 of each tile: it runs their GELU, keeps the softmax-weighted sum
 * of those units only, and the four lanes of a quad (same g) share each
 * edge's e_j through two butterfly shuffles, so their running max and sum
 * agree bitwise (only q = 0 reports the sum). NVIDIA's OpenCL has no
 * subgroups: the warp votes, shuffles and mma are inline PTX. The tiles
 * run one at a time (FN_MMA_TA 1, at hd = 64) or both together (2, at
 * hd <= 32).
 *
 * FN_MMA_EMULATE (a build option for CPU drivers, e.g. PoCL) replaces the
 * PTX with work-group code through local memory, with the warp vote widened
 * to the whole group so that its barriers are uniform: slow, but it runs
 * the same fragment bookkeeping, so the layouts above are tested where no
 * tensor core is. */

#if FN_MMA

#define FN_MMA_NT (FN_MD / 8)  /* n-tiles of 8 outputs */
#define FN_MMA_KP (FN_HD / 16) /* 16-unit blocks of K: two k-blocks each */
#define FN_MMA_HV (FN_HD / 4)  /* hidden units per lane and row */
/* Tiles per pass (1 or 2): 2 shares each C fragment's loads and split
 * between the warp's two tiles and gives the tensor cores two independent
 * chains, for twice the h values in registers. Measured on the H200
 * (tools/bench/NOTES.md item 44): 2 faster at hd = 32 (experiment 40^3
 * functional 4.64 -> 4.54 ms), 1 at hd = 64 (optimized 100^3 2095 against
 * 2284 ms with 2). */
#ifndef FN_MMA_TA
#if FN_HD <= 32
#define FN_MMA_TA 2
#else
#define FN_MMA_TA 1
#endif
#endif

/* The walk's GELU: (FN_MMA_FAST_GELU 1, the default) ml_gelu's rational
 * fit with its 1/sqrt(2) and 1/2 folded into the coefficients and the
 * division as a hardware reciprocal (the fit's 3.5e-7 dominates the
 * reciprocal's rounding): a few instructions fewer, where GELU is most
 * of the walk's instructions once the products run on tensor cores; or
 * ml_gelu itself (-DFN_MMA_FAST_GELU=0). With the tanh below: experiment
 * 40^3 functional 4.87 -> 4.64 ms, optimized 100^3 2185 -> 2095 ms on the
 * H200, the checks' differences unchanged (NOTES item 44). */
#ifndef FN_MMA_FAST_GELU
#define FN_MMA_FAST_GELU 1
#endif
#ifndef FN_MMA_FAST_TANH
#define FN_MMA_FAST_TANH 1
#endif
#if FN_MMA_FAST_GELU
inline float fn_mma_gelu(float v) {
    float c = clamp(v, -5.5507882f, 5.5507882f); /* 3.925 sqrt(2), ml_erf's clamp */
    float w = c * c;
    float p = fma(fma(fma(fma(fma(4.487197132e-08f, w, 1.270420333e-05f), w, 3.425859455e-04f), w,
                          9.383848307e-03f), w, 6.822367266e-02f), w, 7.978844335e-01f);
    float r = fma(fma(fma(fma(fma(1.188371471e-06f, w, 7.435082081e-05f), w, 1.898445888e-03f), w,
                          2.879106625e-02f), w, 2.521715164e-01f), w, 1.0f);
    float e = clamp(c * p * native_recip(r), -1.0f, 1.0f);
    float h = 0.5f * v;
    return fma(h, e, h);
}
#define FN_MMA_GELU(v) fn_mma_gelu(v)
#else
#define FN_MMA_GELU(v) ml_gelu(v)
#endif

/* The walk's tanh: (FN_MMA_FAST_TANH 1, the default) ml_tanh's division
 * as a hardware reciprocal (1 - 2 / (exp(2x) + 1): the reciprocal of inf
 * is 0 and of 1 is 1, so both tails stay exact), or ml_tanh (0). */
#if FN_MMA_FAST_TANH
#define FN_MMA_TANH(x) (1.0f - 2.0f * native_recip(exp(2.0f * (x)) + 1.0f))
#else
#define FN_MMA_TANH(x) ml_tanh(x)
#endif

/* a_hi: the top 19 bits (sign, exponent, 10 mantissa bits), which TF32
 * reads exactly; a_lo = a - a_hi is exact in FP32 and is cut to its own
 * top 19 bits, so that every operand is a TF32 value (what the tensor
 * core does with low bits set is not PTX's to promise). a_hi + a_lo then
 * holds a to about 21 bits. */
inline uint fn_tf32_hi(float a) { return as_uint(a) & 0xffffe000u; }
inline uint fn_tf32_lo(float a) { return as_uint(a - as_float(as_uint(a) & 0xffffe000u)) & 0xffffe000u; }

#if !defined(FN_MMA_EMULATE) || !FN_MMA_EMULATE

inline int fn_warp_any(int p) {
    int r;
    asm volatile("{\n\t.reg .pred q, v;\n\tsetp.ne.s32 q, %1, 0;\n\t"
                 "vote.sync.any.pred v, q, 0xffffffff;\n\tselp.s32 %0, 1, 0, v;\n\t}"
                 : "=r"(r)
                 : "r"(p));
    return r;
}

inline int fn_shfl_idx(int v, int src) {
    int r;
    asm volatile("shfl.sync.idx.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(r) : "r"(v), "r"(src));
    return r;
}

inline float fn_shfl_xor(float v, int mask) {
    int r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(r) : "r"(as_int(v)), "r"(mask));
    return as_float(r);
}

/* d = A B + c for one m16n8k8 tile (operands in the layouts above). */
#define FN_MMA_TILE(d, a, b0, b1)                                                                          \
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "                                     \
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};"                     \
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                                          \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(d[0]), "f"(d[1]),      \
                   "f"(d[2]), "f"(d[3]))


#else /* FN_MMA_EMULATE: the warp operations through local memory */

/* Its local memory (functional.cl's FN_MMA_SCRATCH floats): per lane 4 A
 * words and 2 B words, then at 10 WG one word for votes and shuffles. */
inline int fn_emu_any(int p, __local float *sx) {
    const int lane = ml_lane();
    barrier(CLK_LOCAL_MEM_FENCE);
    sx[10 * MOELAT_WG + lane] = p ? 1.0f : 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    int any = 0;
    for (int l = 0; l < MOELAT_WG; l++)
        any |= sx[10 * MOELAT_WG + l] != 0.0f;
    return any;
}

inline uint fn_emu_shfl(uint v, int src_lane, __local float *sx) {
    const int lane = ml_lane();
    barrier(CLK_LOCAL_MEM_FENCE);
    sx[10 * MOELAT_WG + lane] = as_float(v);
    barrier(CLK_LOCAL_MEM_FENCE);
    return as_uint(sx[10 * MOELAT_WG + (lane & ~31) + src_lane]);
}

/* The tile's D as each lane's share of A B + C, A and B gathered from the
 * warp's lanes by their fragment positions (TF32 operands: floats with
 * their low 13 bits zero). */
inline void fn_emu_mma(float *d, const uint *a, uint b0, uint b1, __local float *sx) {
    const int lane = ml_lane(), base = lane & ~31, g = (lane & 31) >> 2, q = lane & 3;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int r = 0; r < 4; r++)
        sx[r * MOELAT_WG + lane] = as_float(a[r]);
    sx[4 * MOELAT_WG + lane] = as_float(b0);
    sx[5 * MOELAT_WG + lane] = as_float(b1);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int r = 0; r < 4; r++) {
        int row = g + (r >= 2 ? 8 : 0), col = 2 * q + (r & 1);
        float acc = d[r];
        for (int k = 0; k < 8; k++) {
            /* A (row, k): lane 4 (row % 8) + k % 4, word (row >= 8) + 2 (k >= 4) */
            float av = sx[((row >= 8) + 2 * (k >= 4)) * MOELAT_WG + base + 4 * (row % 8) + k % 4];
            /* B (k, col): lane 4 col + k % 4, word b0 or b1 */
            float bv = sx[(4 + (k >= 4)) * MOELAT_WG + base + 4 * col + k % 4];
            acc = fma(av, bv, acc);
        }
        d[r] = acc;
    }
}

#define fn_warp_any(p) fn_emu_any((p), sx)
#define fn_shfl_idx(v, src) ((int)fn_emu_shfl((uint)(v), (src), sx))
#define fn_shfl_xor(v, mask) as_float(fn_emu_shfl(as_uint(v), (ml_lane() & 31) ^ (mask), sx))
#define FN_MMA_TILE(d, a, b0, b1) fn_emu_mma(d, a, b0, b1, sx)

#endif

/* The walk of fn_edges_cell for this lane: offsets k = lane, lane + WG, ...
 * up to n_walk, neighbours outside the lattice skipped. Returns the lane's
 * running max of e_j in *lmax_out and its sum of exp(e_j - max) in
 * *lsum_out (0 but on quad lane 0: the quad's four lanes share their
 * edges), and writes its row hrow [hd] of sum exp(e_j - max) h_j (zero at
 * the units other lanes of its quad hold). sx: FN_MMA_SCRATCH floats of
 * local memory for the emulation, unused on the device. Not inline:
 * functional.cl declares it before this file defines it. */
void fn_mma_walk(int n_walk, __global const int4 *offsets, int4 dims, int4 cell,
                        __global const float *proj, __local const float *qx, __local const float *C,
                        __local const float *dq, __local const float *a2, float e0, float *lmax_out,
                        float *lsum_out, __local float *hrow, __local float *sx) {
    const int lane = ml_lane();
    const int g = (lane & 31) >> 2, q = lane & 3;
    __local const float4 *qx4 = (__local const float4 *)qx;
    __local const float4 *c4 = (__local const float4 *)C;
    float lmax = -INFINITY, lsum = 0.0f;
    float hb[FN_MMA_HV];
#pragma unroll
    for (int m = 0; m < FN_MMA_HV; m++)
        hb[m] = 0.0f;
    /* This lane's accumulator columns 8 nt + 2 q (+ 1): their bias d and
     * attention weights a_2. */
    float dcol[FN_MMA_NT][2], acol[FN_MMA_NT][2];
#pragma unroll
    for (int nt = 0; nt < FN_MMA_NT; nt++) {
        dcol[nt][0] = dq[8 * nt + 2 * q];
        dcol[nt][1] = dq[8 * nt + 2 * q + 1];
        acol[nt][0] = a2[8 * nt + 2 * q];
        acol[nt][1] = a2[8 * nt + 2 * q + 1];
    }
    int k = lane;
    for (;;) {
        int j = -1;
        for (; k < n_walk; k += MOELAT_WG)
            if ((j = ml_neighbour_index(dims, cell, offsets[k])) >= 0)
                break;
        k += MOELAT_WG; /* past the edge found (or past the end) */
        if (!fn_warp_any(j >= 0))
            break;
        /* Tiles 0 and 1 (rows: the edges of warp lanes 16 mt + g and
         * 16 mt + g + 8), FN_MMA_TA at a time. */
        for (int m0 = 0; m0 < 2; m0 += FN_MMA_TA) {
            int jr[FN_MMA_TA][2];
            float hv[FN_MMA_TA][2][FN_MMA_HV]; /* h of rows g, g + 8: the lane's units */
#pragma unroll
            for (int u = 0; u < FN_MMA_TA; u++) {
#pragma unroll
                for (int r = 0; r < 2; r++)
                    jr[u][r] = fn_shfl_idx(j, 16 * (m0 + u) + g + 8 * r);
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    __global const float4 *pr = (__global const float4 *)(proj + (size_t)max(jr[u][r], 0) * FN_PW);
#pragma unroll
                    for (int p = 0; p < FN_MMA_KP; p++) {
                        float4 v = jr[u][r] >= 0 ? pr[4 * p + q] + qx4[4 * p + q] : (float4)(0.0f);
                        hv[u][r][4 * p + 0] = FN_MMA_GELU(v.x);
                        hv[u][r][4 * p + 1] = FN_MMA_GELU(v.y);
                        hv[u][r][4 * p + 2] = FN_MMA_GELU(v.z);
                        hv[u][r][4 * p + 3] = FN_MMA_GELU(v.w);
                    }
                }
            }
            float acc[FN_MMA_TA][FN_MMA_NT][4];
#pragma unroll
            for (int u = 0; u < FN_MMA_TA; u++)
#pragma unroll
                for (int nt = 0; nt < FN_MMA_NT; nt++) {
                    acc[u][nt][0] = acc[u][nt][2] = dcol[nt][0];
                    acc[u][nt][1] = acc[u][nt][3] = dcol[nt][1];
                }
#pragma unroll
            for (int p = 0; p < FN_MMA_KP; p++) {
                /* k-blocks (p, 0) and (p, 1): units 16 p + 4 q + 2 s (+ 1) */
                uint ah[FN_MMA_TA][2][4], al[FN_MMA_TA][2][4];
#pragma unroll
                for (int u = 0; u < FN_MMA_TA; u++)
#pragma unroll
                    for (int s = 0; s < 2; s++) {
                        float x0 = hv[u][0][4 * p + 2 * s], x1 = hv[u][1][4 * p + 2 * s];
                        float x2 = hv[u][0][4 * p + 2 * s + 1], x3 = hv[u][1][4 * p + 2 * s + 1];
                        ah[u][s][0] = fn_tf32_hi(x0);
                        ah[u][s][1] = fn_tf32_hi(x1);
                        ah[u][s][2] = fn_tf32_hi(x2);
                        ah[u][s][3] = fn_tf32_hi(x3);
                        al[u][s][0] = fn_tf32_lo(x0);
                        al[u][s][1] = fn_tf32_lo(x1);
                        al[u][s][2] = fn_tf32_lo(x2);
                        al[u][s][3] = fn_tf32_lo(x3);
                    }
#pragma unroll
                for (int nt = 0; nt < FN_MMA_NT; nt++) {
                    /* C row 8 nt + g, units 16 p + 4 q .. + 3, split once
                     * for the FN_MMA_TA tiles. */
                    float4 cv = c4[(8 * nt + g) * (FN_HD / 4) + 4 * p + q];
                    uint bh0 = fn_tf32_hi(cv.x), bh1 = fn_tf32_hi(cv.y);
                    uint bh2 = fn_tf32_hi(cv.z), bh3 = fn_tf32_hi(cv.w);
                    uint bl0 = fn_tf32_lo(cv.x), bl1 = fn_tf32_lo(cv.y);
                    uint bl2 = fn_tf32_lo(cv.z), bl3 = fn_tf32_lo(cv.w);
#pragma unroll
                    for (int u = 0; u < FN_MMA_TA; u++) {
                        /* The small products first. */
                        FN_MMA_TILE(acc[u][nt], al[u][0], bh0, bh1);
                        FN_MMA_TILE(acc[u][nt], ah[u][0], bl0, bl1);
                        FN_MMA_TILE(acc[u][nt], ah[u][0], bh0, bh1);
                        FN_MMA_TILE(acc[u][nt], al[u][1], bh2, bh3);
                        FN_MMA_TILE(acc[u][nt], ah[u][1], bl2, bl3);
                        FN_MMA_TILE(acc[u][nt], ah[u][1], bh2, bh3);
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < FN_MMA_TA; u++) {
                /* e_j = a_2 . tanh(t_j) + a_2b: the lane's columns, then
                 * the quad's sum (the same sum, bitwise, in its four
                 * lanes). */
                float er[2] = {0.0f, 0.0f};
#pragma unroll
                for (int nt = 0; nt < FN_MMA_NT; nt++)
#pragma unroll
                    for (int r = 0; r < 2; r++) {
                        er[r] = fma(acol[nt][0], FN_MMA_TANH(acc[u][nt][2 * r]), er[r]);
                        er[r] = fma(acol[nt][1], FN_MMA_TANH(acc[u][nt][2 * r + 1]), er[r]);
                    }
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    er[r] += fn_shfl_xor(er[r], 1);
                    er[r] += fn_shfl_xor(er[r], 2);
                    er[r] += e0;
                }
                /* Online softmax over the lane's rows, as the portable walk. */
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    if (jr[u][r] >= 0) {
                        float nm = fmax(lmax, er[r]);
                        float sc = exp(lmax - nm);
                        float w = exp(er[r] - nm);
                        lmax = nm;
                        lsum = fma(lsum, sc, w);
                        if (sc != 1.0f) {
#pragma unroll
                            for (int m = 0; m < FN_MMA_HV; m++)
                                hb[m] *= sc;
                        }
#pragma unroll
                        for (int m = 0; m < FN_MMA_HV; m++)
                            hb[m] = fma(w, hv[u][r][m], hb[m]);
                    }
                }
            }
        }
    }
    for (int i = 0; i < FN_HD; i++)
        hrow[i] = 0.0f;
#pragma unroll
    for (int p = 0; p < FN_MMA_KP; p++)
#pragma unroll
        for (int c = 0; c < 4; c++)
            hrow[16 * p + 4 * q + c] = hb[4 * p + c];
    *lmax_out = lmax;
    *lsum_out = q == 0 ? lsum : 0.0f;
}

#endif
