/* The functional band's device backward with a work-group per cell: the
 * kernel named by its "moelat.backward.cl/1" band_kernel, built after
 * functional_backward.c (whose per-cell phases it calls) when the engine
 * defines ML_BWD_WG (lanes per group). Same arguments, same results and
 * the same contract as the engine's ml_bwd_band
 * (kernels_cl/moelat_backward_band.cl), but work-group g (of n_slots
 * groups) takes cells g, g + n_slots, ... and owns row g of slot_dw.
 *
 * Per cell, the edges (stencil entries of the band) are spread over the
 * lanes and recomputed rather than stored:
 *   1. neighbour count, act and mean (lanes over state values); the gate
 *      g and the edge layers' x columns px, pa (lane 0, scalar);
 *   2. edge forward, lane by lane over entries lane, lane + WG, ...: e_j
 *      and m_j, an online softmax per lane (running max, sum and sum of
 *      w_j m_j); the lanes meet in a fixed order: max, sum, M;
 *   3. the GRU, the CNF and the result layer forward and reverse, and the
 *      gate's reverse (lane 0, scalar: functional_backward.c's phases),
 *      giving dL/dM, dL/dact and dL/dmean;
 *   4. edge reverse in tiles of WG entries, one per lane: the edge is
 *      recomputed, its adjoint written to dedge (each lane its own
 *      entry), its per-edge vectors staged in local rows; then the lanes
 *      take the weight gradients' elements and sum the tile's edges in
 *      entry order into the group's row (no two lanes write one float);
 *   5. the edge layers' x columns and biases from the per-cell sums of
 *      their adjoints (lanes over elements), and the cell's results.
 * Every sum runs in a fixed order, so two runs give the same bits. */

#ifdef ML_BWD_WG

#define FNB_ARG0(a, ...) a
#define FNB_ARG1(a, b, ...) b
#define FNB_ARG2(a, b, c, ...) c
#define FNB_ARG3(a, b, c, d, ...) d
#define FNB_APPLY(m, ...) m(__VA_ARGS__)
#define FNB_S FNB_APPLY(FNB_ARG0, ML_DIMS)
#define FNB_E FNB_APPLY(FNB_ARG1, ML_DIMS)
#define FNB_HD FNB_APPLY(FNB_ARG2, ML_DIMS)
#define FNB_MD FNB_APPLY(FNB_ARG3, ML_DIMS)
#define FNB_WG ML_BWD_WG
/* Lane rows padded by one float: lanes walking their own rows at the
 * same column hit different banks. */
#define FNB_HS (FNB_HD + 1)
#define FNB_MS (FNB_MD + 1)
#define FNB_A0 (FNB_MD + FNB_S) /* row length of attention_network.0 */
/* Elements a tile's weight gradients update (step 4). */
#define FNB_TILE_ELEMS (FNB_HD * FNB_S + FNB_MD * FNB_HD + FNB_MD * FNB_MD + 3 * FNB_MD + FNB_HD + 1)

/* Edge j's forward for one lane: zm = MC0 [n_j, .] + px into zm, GELU's
 * Phi(zm) into cdf, m_j into m, tanh(AT0 [m_j, .] + pa) into ta; returns
 * e_j. */
static float fnb_edge_fwd(__global const float *weights, __global const int *toff, __global const float *n,
                          __local const float *px, __local const float *pa, __local float *zm, __local float *cdf,
                          __local float *m, __local float *ta) {
    __global const float *W0 = weights + toff[F_MC0_W], *W2 = weights + toff[F_MC2_W];
    __global const float *B2 = weights + toff[F_MC2_B], *A0 = weights + toff[F_AT0_W];
    __global const float *A2 = weights + toff[F_AT2_W];
    for (int o = 0; o < FNB_HD; o++) {
        __global const float *row = W0 + o * 2 * FNB_S;
        float acc = 0.0f;
        for (int i = 0; i < FNB_S; i++)
            acc += row[i] * n[i];
        acc += px[o];
        zm[o] = acc;
        cdf[o] = bm_gelu_cdf(acc);
    }
    for (int k = 0; k < FNB_MD; k++) {
        __global const float *row = W2 + k * FNB_HD;
        float acc = 0.0f;
        for (int o = 0; o < FNB_HD; o++)
            acc += row[o] * (zm[o] * cdf[o]);
        m[k] = B2[k] + acc;
    }
    float e = 0.0f;
    for (int k = 0; k < FNB_MD; k++) {
        __global const float *row = A0 + k * FNB_A0;
        float acc = 0.0f;
        for (int i = 0; i < FNB_MD; i++)
            acc += row[i] * m[i];
        const float v = tanh(pa[k] + acc);
        ta[k] = v;
        e += A2[k] * v;
    }
    return weights[toff[F_AT2_B]] + e;
}

/* The state row of the cell at offset o from (x, y, z), or -1 outside. */
static int fnb_neighbour(int4 o, int x, int y, int z, int X, int Y, int Z) {
    const int nx = x + o.x, ny = y + o.y, nz = z + o.z;
    if (nx < 0 || ny < 0 || nz < 0 || nx >= X || ny >= Y || nz >= Z)
        return -1;
    return nx + X * (ny + Y * nz);
}

#define FNB_SYNC barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)

/* What lane 0's per-cell phases read: the cell, its tensors and their
 * gradients (the group's row), and the phases' vectors in the group's
 * work area. Built inside each lane-0 block, so that nothing private
 * lives across a barrier but indices and pointers every lane computes
 * alike. */
typedef struct fnb_lane0 {
    moelat_expert_dims dims;
    __global const float *t[ML_NT];
    __global float *dt[ML_NT];
    moelat_grad_cell cell;
    fn_fwd w;
    fn_bwd b;
} fnb_lane0;

static void fnb_lane0_init(fnb_lane0 *l, __global const float *weights, __global const int *toff,
                           __global float *mine, __global float *scratch, __global const float *xs,
                           __global const float *ext, int n, int x, int y, int z, __global float *out,
                           __global const float *dout, __global float *dx, __global float *dext) {
    const int known[2 + MOELAT_MAX_HIDDEN + 2] = {ML_DIMS};
    l->dims.struct_size = 0;
    l->dims.state_size = known[0];
    l->dims.ext_size = known[1];
    for (int h = 0; h < MOELAT_MAX_HIDDEN; h++)
        l->dims.hidden[h] = known[2 + h];
    l->dims.cnf_steps = known[2 + MOELAT_MAX_HIDDEN];
    l->dims.cnf_mode = known[3 + MOELAT_MAX_HIDDEN];
    for (int k = 0; k < ML_NT; k++) {
        l->t[k] = weights + toff[k];
        l->dt[k] = mine + toff[k];
    }
    __global float *at = scratch;
    fn_layout_cell(&l->dims, &l->w, &at);
    fn_bwd_layout_cell(&l->dims, &l->b, &at);
    moelat_grad_cell *c = &l->cell;
    c->dims = &l->dims;
    c->tensors = l->t;
    c->x = xs;
    c->neighbours = 0;
    c->count = n;
    c->ext = ext;
    c->cell[0] = x;
    c->cell[1] = y;
    c->cell[2] = z;
    c->out = out;
    c->dout = dout;
    c->dx = dx;
    c->dneighbours = 0;
    c->dext = dext;
    c->dtensors = l->dt;
    c->scratch = scratch;
}

__kernel __attribute__((reqd_work_group_size(FNB_WG, 1, 1))) void
fn_bwd_band_wg(__global const float *state, __global const float *gin, __global const float *gate_w,
               __global const float *weights, __global const int *tensor_off, __global const int *dims_in,
               __global const float *ext, __global const int4 *offsets, const int n_off, const int X, const int Y,
               const int Z, const int c0, const int n_cells, const int t0, const int n_slots, const int slot_floats,
               const int scratch_floats, const int n_weights, const int band, __global float *slot_dw,
               __global float *slot_work, __global float *dchunk, __global float *dedge, __global float *dw_gate,
               __global float *dext_chunk, __global int *status) {
    const int lane = (int)get_local_id(0), grp = (int)get_group_id(0);
    (void)dims_in;
    (void)status; /* the phases cannot fail */
    if (grp >= n_slots)
        return;
    /* Lane rows of the tile's edges: zm then GELU(zm), Phi(zm) then
     * dL/dhid, m_j, tanh, dL/d tanh-input (the running sum of w_j m_j in
     * step 2), dL/dm_j; dL/de_j and the neighbour's row. */
    __local float hidr[FNB_WG * FNB_HS], dhidr[FNB_WG * FNB_HS];
    __local float mr[FNB_WG * FNB_MS], tar[FNB_WG * FNB_MS], dtar[FNB_WG * FNB_MS], dmr[FNB_WG * FNB_MS];
    __local float der[FNB_WG], red[FNB_WG], red2[FNB_WG];
    __local int idx[FNB_WG];
    /* The cell's vectors. */
    __local float px[FNB_HD], pa[FNB_MD], dM[FNB_MD], sta[FNB_MD], shid[FNB_HD];
    __local float dact[FNB_S], dmean[FNB_S];
    __local float cellv[4]; /* max and sum of the softmax, dM . M */
    __local int count_l;

    const int S = FNB_S, E = FNB_E;
    __global float *mine = slot_dw + (size_t)grp * (size_t)n_weights;
#define FNB_W(k) (weights + tensor_off[k])
#define FNB_DW(k) (mine + tensor_off[k])
    /* The group's work area: the per-cell phases' vectors (fnb_lane0),
     * then (where the engine's kernel keeps them) out, dout, dx, dext
     * and zeros; and the ones every lane reads. */
    __global float *scratch = slot_work + (size_t)grp * (size_t)slot_floats;
    __global float *act, *mean, *gpx, *gpa, *gM, *gdM, *gdact, *gdmean;
    {
        fn_fwd w;
        fn_bwd b;
        moelat_expert_dims dims;
        const int known[2 + MOELAT_MAX_HIDDEN + 2] = {ML_DIMS};
        dims.state_size = known[0];
        dims.ext_size = known[1];
        for (int h = 0; h < MOELAT_MAX_HIDDEN; h++)
            dims.hidden[h] = known[2 + h];
        dims.cnf_steps = known[2 + MOELAT_MAX_HIDDEN];
        dims.cnf_mode = known[3 + MOELAT_MAX_HIDDEN];
        __global float *at = scratch;
        fn_layout_cell(&dims, &w, &at);
        fn_bwd_layout_cell(&dims, &b, &at);
        act = w.act;
        mean = w.mean;
        gpx = w.px;
        gpa = w.pa;
        gM = w.M;
        gdM = b.dM;
        gdact = b.dact;
        gdmean = b.dmean;
    }
    __global float *out = scratch + scratch_floats + 2 * (size_t)n_off * S;
    __global float *dout = out + S, *dx = dout + S, *dext = dx + S, *zeros = dext + E;
    for (int e = lane; e < E; e += FNB_WG)
        zeros[e] = 0.0f;
    __global const float *W0 = FNB_W(F_MC0_W), *W2 = FNB_W(F_MC2_W), *A0 = FNB_W(F_AT0_W), *A2 = FNB_W(F_AT2_W);

    for (int c = grp; c < n_cells; c += n_slots) {
        const int i = c0 + c;
        const int x = i % X, y = (i / X) % Y, z = i / (X * Y);
        __global const float *xs = state + (size_t)i * S;
        __global const float *g = gin + (size_t)i * S;

        /* 1. Count, act and mean; dout, dx, dext. */
        int mycount = 0;
        for (int j = lane; j < n_off; j += FNB_WG)
            mycount += fnb_neighbour(offsets[j], x, y, z, X, Y, Z) >= 0;
        idx[lane] = mycount;
        FNB_SYNC;
        if (lane == 0) {
            int total = 0;
            for (int l = 0; l < FNB_WG; l++)
                total += idx[l];
            count_l = total;
        }
        FNB_SYNC;
        const int n = count_l;
        if (n == 0) {
            if (lane == 0)
                dw_gate[(size_t)c * 3 + band] = 0.0f; /* an empty band is not run */
            continue;
        }
        const float wk = gate_w[(size_t)c * 3 + band];
        for (int s = lane; s < S; s += FNB_WG) {
            float a = 0.0f, m = 0.0f;
            for (int j = 0; j < n_off; j++) {
                const int nb = fnb_neighbour(offsets[j], x, y, z, X, Y, Z);
                if (nb < 0)
                    continue;
                const float v = state[(size_t)nb * S + s];
                a += fabs(v);
                m += v;
            }
            act[s] = a / n;
            mean[s] = m / n;
            dout[s] = wk * g[s];
            dx[s] = 0.0f;
        }
        for (int e = lane; e < E; e += FNB_WG)
            dext[e] = 0.0f;
        FNB_SYNC;

        __global const float *cext = z == 0 ? ext + ((size_t)x + (size_t)X * y) * E : zeros;
        if (lane == 0) {
            fnb_lane0 l;
            fnb_lane0_init(&l, weights, tensor_off, mine, scratch, xs, cext, n, x, y, z, out, dout, dx, dext);
            fn_fwd_gate(&l.cell, &l.w);
        }
        FNB_SYNC;
        for (int o = lane; o < FNB_HD; o += FNB_WG)
            px[o] = gpx[o];
        for (int k = lane; k < FNB_MD; k += FNB_WG)
            pa[k] = gpa[k];
        FNB_SYNC;

        /* 2. Edge forward: the lane's online softmax of e_j over its
         * entries, with the running sum of w_j m_j in its dtar row. */
        __local float *zm = hidr + lane * FNB_HS, *cdf = dhidr + lane * FNB_HS;
        __local float *m = mr + lane * FNB_MS, *ta = tar + lane * FNB_MS, *macc = dtar + lane * FNB_MS;
        float mx = -INFINITY, sm = 0.0f;
        for (int k = 0; k < FNB_MD; k++)
            macc[k] = 0.0f;
        for (int j = lane; j < n_off; j += FNB_WG) {
            const int nb = fnb_neighbour(offsets[j], x, y, z, X, Y, Z);
            if (nb < 0)
                continue;
            const float e = fnb_edge_fwd(weights, tensor_off, state + (size_t)nb * S, px, pa, zm, cdf, m, ta);
            if (e > mx) {
                const float r = exp(mx - e); /* 0 on the first edge */
                sm = sm * r + 1.0f;
                for (int k = 0; k < FNB_MD; k++)
                    macc[k] = macc[k] * r + m[k];
                mx = e;
            } else {
                const float p = exp(e - mx);
                sm += p;
                for (int k = 0; k < FNB_MD; k++)
                    macc[k] += p * m[k];
            }
        }
        red[lane] = mx;
        red2[lane] = sm;
        FNB_SYNC;
        if (lane == 0) {
            float MX = -INFINITY;
            for (int l = 0; l < FNB_WG; l++)
                MX = red2[l] > 0.0f && red[l] > MX ? red[l] : MX;
            float SUM = 0.0f;
            for (int l = 0; l < FNB_WG; l++) {
                const float r = red2[l] > 0.0f ? exp(red[l] - MX) : 0.0f;
                red[l] = r;
                SUM += red2[l] * r;
            }
            cellv[0] = MX;
            cellv[1] = SUM;
        }
        FNB_SYNC;
        for (int k = lane; k < FNB_MD; k += FNB_WG) {
            float acc = 0.0f;
            for (int l = 0; l < FNB_WG; l++)
                acc += red[l] * dtar[l * FNB_MS + k];
            gM[k] = acc / cellv[1];
        }
        FNB_SYNC;

        /* 3. The per-cell layers, forward and reverse, and the gate's
         * reverse: dL/dM, dL/dact, dL/dmean. */
        if (lane == 0) {
            fnb_lane0 l;
            fnb_lane0_init(&l, weights, tensor_off, mine, scratch, xs, cext, n, x, y, z, out, dout, dx, dext);
            l.w.g = bm_sigmoid(l.w.gl[0]); /* as fn_fwd_gate left it */
            fn_fwd_tail(&l.cell, &l.w, out);
            fn_bwd_tail(&l.cell, &l.w, &l.b);
            fn_bwd_gate(&l.cell, &l.w, &l.b);
            float dmm = 0.0f;
            for (int k = 0; k < FNB_MD; k++)
                dmm += l.b.dM[k] * l.w.M[k];
            cellv[2] = dmm;
        }
        FNB_SYNC;
        for (int k = lane; k < FNB_MD; k += FNB_WG) {
            dM[k] = gdM[k];
            sta[k] = 0.0f;
        }
        for (int o = lane; o < FNB_HD; o += FNB_WG)
            shid[o] = 0.0f;
        for (int s = lane; s < S; s += FNB_WG) {
            dact[s] = gdact[s];
            dmean[s] = gdmean[s];
        }
        FNB_SYNC;
        const float MX = cellv[0], SUM = cellv[1], DMM = cellv[2];

        /* 4. Edge reverse, a tile of FNB_WG entries at a time. */
        __local float *dta = dtar + lane * FNB_MS, *dm = dmr + lane * FNB_MS;
        for (int j0 = 0; j0 < n_off; j0 += FNB_WG) {
            const int j = j0 + lane;
            const int nb = j < n_off ? fnb_neighbour(offsets[j], x, y, z, X, Y, Z) : -1;
            idx[lane] = nb;
            /* An entry outside the lattice (or past the stencil) runs
             * the same code on the cell's own row with weight 0: every
             * adjoint it stages is then 0. */
            __global const float *nv = state + (size_t)(nb >= 0 ? nb : i) * S;
            const float e = fnb_edge_fwd(weights, tensor_off, nv, px, pa, zm, cdf, m, ta);
            const float a = nb >= 0 ? exp(e - MX) / SUM : 0.0f;
            float da = 0.0f;
            for (int k = 0; k < FNB_MD; k++)
                da += dM[k] * m[k];
            const float de = a * (da - DMM);
            der[lane] = de;
            for (int k = 0; k < FNB_MD; k++)
                dta[k] = A2[k] * de * (1.0f - ta[k] * ta[k]);
            for (int q = 0; q < FNB_MD; q++) {
                float acc = a * dM[q];
                for (int k = 0; k < FNB_MD; k++)
                    acc += A0[k * FNB_A0 + q] * dta[k];
                dm[q] = acc;
            }
            /* zm and cdf become GELU(zm) and dL/dzm. */
            for (int o = 0; o < FNB_HD; o++) {
                float acc = 0.0f;
                for (int k = 0; k < FNB_MD; k++)
                    acc += W2[k * FNB_HD + o] * dm[k];
                const float v = zm[o], p = cdf[o];
                cdf[o] = acc * bm_gelu_grad_cdf(v, p);
                zm[o] = v * p;
            }
            if (nb >= 0) {
                __global float *dn = dedge + ((size_t)c * n_off + j) * S;
                for (int s = 0; s < S; s++) {
                    float acc = 0.0f;
                    for (int o = 0; o < FNB_HD; o++)
                        acc += W0[o * 2 * FNB_S + s] * cdf[o];
                    const float v = nv[s];
                    const float sg = v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
                    dn[s] = acc + dact[s] * sg + dmean[s];
                }
            }
            FNB_SYNC;
            /* The tile's weight gradients, each element's sum over the
             * tile's entries in order; one loop over the elements of
             * every tensor (and the per-cell sums of dL/dta and dL/dhid). */
            for (int el = lane; el < FNB_TILE_ELEMS; el += FNB_WG) {
                float acc = 0.0f;
                int r = el;
                if (r < FNB_HD * FNB_S) {
                    const int o = r / FNB_S, q = r % FNB_S;
                    for (int e = 0; e < FNB_WG; e++)
                        if (idx[e] >= 0)
                            acc += dhidr[e * FNB_HS + o] * state[(size_t)idx[e] * S + q];
                    FNB_DW(F_MC0_W)[o * 2 * FNB_S + q] += acc;
                } else if ((r -= FNB_HD * FNB_S) < FNB_MD * FNB_HD) {
                    const int k = r / FNB_HD, o = r % FNB_HD;
                    for (int e = 0; e < FNB_WG; e++)
                        acc += dmr[e * FNB_MS + k] * hidr[e * FNB_HS + o];
                    FNB_DW(F_MC2_W)[k * FNB_HD + o] += acc;
                } else if ((r -= FNB_MD * FNB_HD) < FNB_MD * FNB_MD) {
                    const int k = r / FNB_MD, q = r % FNB_MD;
                    for (int e = 0; e < FNB_WG; e++)
                        acc += dtar[e * FNB_MS + k] * mr[e * FNB_MS + q];
                    FNB_DW(F_AT0_W)[k * FNB_A0 + q] += acc;
                } else if ((r -= FNB_MD * FNB_MD) < FNB_MD) {
                    for (int e = 0; e < FNB_WG; e++)
                        acc += der[e] * tar[e * FNB_MS + r];
                    FNB_DW(F_AT2_W)[r] += acc;
                } else if ((r -= FNB_MD) < FNB_MD) {
                    for (int e = 0; e < FNB_WG; e++)
                        acc += dmr[e * FNB_MS + r];
                    FNB_DW(F_MC2_B)[r] += acc;
                } else if ((r -= FNB_MD) < FNB_MD) {
                    for (int e = 0; e < FNB_WG; e++)
                        acc += dtar[e * FNB_MS + r];
                    sta[r] += acc;
                } else if ((r -= FNB_MD) < FNB_HD) {
                    for (int e = 0; e < FNB_WG; e++)
                        acc += dhidr[e * FNB_HS + r];
                    shid[r] += acc;
                } else {
                    for (int e = 0; e < FNB_WG; e++)
                        acc += der[e];
                    FNB_DW(F_AT2_B)[0] += acc;
                }
            }
            FNB_SYNC;
        }

        /* 5. The edge layers' x columns and biases, from the sums over
         * edges; then the cell's results. */
        for (int el = lane; el < FNB_MD * FNB_S; el += FNB_WG) {
            const int k = el / FNB_S, q = el % FNB_S;
            FNB_DW(F_AT0_W)[k * FNB_A0 + FNB_MD + q] += sta[k] * xs[q];
        }
        for (int el = lane; el < FNB_HD * FNB_S; el += FNB_WG) {
            const int o = el / FNB_S, q = el % FNB_S;
            FNB_DW(F_MC0_W)[o * 2 * FNB_S + FNB_S + q] += shid[o] * xs[q];
        }
        for (int k = lane; k < FNB_MD; k += FNB_WG)
            FNB_DW(F_AT0_B)[k] += sta[k];
        for (int o = lane; o < FNB_HD; o += FNB_WG)
            FNB_DW(F_MC0_B)[o] += shid[o];
        __global float *own = dchunk + (size_t)(i - t0) * S;
        for (int s = lane; s < S; s += FNB_WG) {
            float acc = dx[s];
            for (int k = 0; k < FNB_MD; k++)
                acc += A0[k * FNB_A0 + FNB_MD + s] * sta[k];
            for (int o = 0; o < FNB_HD; o++)
                acc += W0[o * 2 * FNB_S + FNB_S + s] * shid[o];
            own[s] += acc;
        }
        if (z == 0)
            for (int e = lane; e < E; e += FNB_WG)
                dext_chunk[((size_t)x + (size_t)X * y) * E + e] += dext[e];
        if (lane == 0) {
            float d = 0.0f;
            for (int s = 0; s < S; s++)
                d += g[s] * out[s];
            dw_gate[(size_t)c * 3 + band] = d;
        }
        FNB_SYNC;
    }
}

#endif /* ML_BWD_WG */
