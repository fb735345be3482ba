/* One band's batched backward (engine/src/backend/opencl/grad_cl.c): the expert's
 * backward_fn, from its "moelat.backward.cl/1" source, once per cell of a
 * chunk, as the host backward calls backward_cell.
 *
 * Built after backward_portable.h and the expert's source parts with
 *   ML_BWD_FN  the expert's backward function
 *   ML_NT      its tensor count
 *
 * One slot, a work-item or (with ML_BWD_LANES > 1, for an expert written
 * for lanes: MOELAT_BACKWARD_CL_COOPERATIVE) a work-group of that many
 * lanes, takes the chunk's cells slot, slot + n_slots, ... in order and
 * adds its weight gradients into its own row of slot_dw. No two slots
 * write the same float, within a slot each float has one lane
 * (backward_math.h's rules), and the slots are summed in slot order
 * afterwards (ml_bwd_commit), so two runs give the same bits (no float
 * atomics anywhere).
 *
 * Per cell: gather the band's in-lattice neighbours (stencil order) into the
 * slot's work area; dout = w_k g; call ML_BWD_FN; then
 *   dchunk[own cell] += dx             (the chunk's adjoint buffer)
 *   dedge[cell][stencil entry] = dn_j  (summed per target by ml_bwd_gather;
 *                                       with ML_MEAN_ONLY, the expert's
 *                                       MOELAT_BACKWARD_CL_MEAN_ONLY, one
 *                                       dedge[cell] for every entry)
 *   dw_gate[cell][band] = g . E_k      (the gate's adjoint reads it)
 *   dext_chunk[x, y] += dext           (cells of the input face)
 * With ML_PROJ = P (the expert's MOELAT_BACKWARD_CL_PROJECTED), the
 * expert reads each neighbour's W_p n_j from proj (the whole lattice's,
 * P values per cell at qoff in rows of q_stride) and gives back, instead
 * of dn_j, per cell dabs and dmean and per edge dproj_j:
 *   dedge[cell] = [dabs (S), dmean (S), dproj by stencil entry (n_off x P)]
 * which ml_bwd_gather_proj and ml_bwd_gather turn into neighbour adjoints.
 *
 * slot_work per slot, in floats: scratch (the expert's scratch_floats),
 * neighbours (n_off x S), their adjoint (n_off x S; not with ML_PROJ), out,
 * dout, dx (S each), dext and zeros (E each); with ML_PROJ then nproj, dproj
 * (n_off x P each), dabs and dmean (S each). */

#ifndef ML_BWD_FN
#error "ML_BWD_FN (the expert's backward function) must be defined"
#endif

/* The cell at offset o from (x, y, z), or -1 outside the lattice
 * (moelat_backward.cl's ml_bwd_at: the band's program is built without
 * that file). */
static int ml_bwd_band_at(int4 o, int x, int y, int z, int X, int Y, int Z) {
    const int nx = x + o.x, ny = y + o.y, nz = z + o.z;
    if (nx < 0 || ny < 0 || nz < 0 || nx >= X || ny >= Y || nz >= Z)
        return -1;
    return nx + X * (ny + Y * nz);
}

__kernel void ml_bwd_band(__global const float *state,     /* N x S: s_t */
                          __global const float *gin,       /* N x S: dL/ds_{t+1} */
                          __global const float *gate_w,    /* chunk cells x 3 */
                          __global const float *weights,   /* every weight, flat */
                          __global const int *tensor_off,  /* ML_NT offsets into weights */
                          __global const int *dims_in,     /* S, E, hidden[8], cnf_steps, cnf_mode */
                          __global const float *ext,       /* X x Y x E */
                          __global const int4 *offsets,    /* the band's stencil */
                          const int n_off, const int X, const int Y, const int Z,
                          const int c0, const int n_cells, /* chunk: cells [c0, c0 + n_cells) */
                          const int t0,                    /* first cell of dchunk */
                          const int n_slots, const int slot_floats, const int scratch_floats,
                          const int n_weights, const int band,
                          __global float *slot_dw,         /* n_slots x n_weights */
                          __global float *slot_work,       /* n_slots x slot_floats */
                          __global float *dchunk,          /* from cell t0: += dL/ds_t */
                          __global float *dedge,           /* n_cells x n_off x S */
                          __global float *dw_gate,         /* n_cells x 3 */
                          __global float *dext_chunk,      /* X x Y x E */
                          __global int *status,
                          __global const float *proj,      /* ML_PROJ: N x q_stride, W_p n of every cell */
                          const int q_stride, const int qoff) {
    const int slot = (int)(get_global_id(0) / BM_LANES);
    if (slot >= n_slots)
        return;
    moelat_expert_dims dims;
    dims.struct_size = 0;
#ifdef ML_DIMS
    /* The sizes as compile-time constants (the engine defines ML_DIMS as
     * S, E, hidden[0..7], cnf_steps, cnf_mode): every loop over them has a
     * known trip count once the expert's functions are inlined. */
    const int known[2 + MOELAT_MAX_HIDDEN + 2] = {ML_DIMS};
    (void)dims_in;
#else
    __global const int *known = dims_in;
#endif
    dims.state_size = known[0];
    dims.ext_size = known[1];
    for (int h = 0; h < MOELAT_MAX_HIDDEN; h++)
        dims.hidden[h] = known[2 + h];
    dims.cnf_steps = known[2 + MOELAT_MAX_HIDDEN];
    dims.cnf_mode = known[3 + MOELAT_MAX_HIDDEN];
    const int S = dims.state_size, E = dims.ext_size;

    __global const float *t[ML_NT];
    __global float *dt[ML_NT];
    __global float *mine = slot_dw + (size_t)slot * (size_t)n_weights;
    for (int k = 0; k < ML_NT; k++) {
        t[k] = weights + tensor_off[k];
        dt[k] = mine + tensor_off[k];
    }
    __global float *scratch = slot_work + (size_t)slot * (size_t)slot_floats;
    __global float *nb = scratch + scratch_floats;
#ifdef ML_PROJ /* the expert leaves dneighbours alone: no room for it */
    __global float *dnb = 0;
    __global float *out = nb + (size_t)n_off * S;
#else
    __global float *dnb = nb + (size_t)n_off * S;
    __global float *out = dnb + (size_t)n_off * S;
#endif
    __global float *dout = out + S;
    __global float *dx = dout + S;
    __global float *dext = dx + S;
    __global float *zeros = dext + E;
    BM_FOR(e, E)
        zeros[e] = 0.0f;
#ifdef ML_PROJ
    __global float *nproj = zeros + E;
    __global float *dproj = nproj + (size_t)n_off * ML_PROJ;
    __global float *dabs = dproj + (size_t)n_off * ML_PROJ;
    __global float *dmean = dabs + S;
#else
    (void)proj;
    (void)q_stride;
    (void)qoff;
#endif

    for (int c = slot; c < n_cells; c += n_slots) {
        const int i = c0 + c;
        const int x = i % X, y = (i / X) % Y, z = i / (X * Y);
        /* The in-lattice neighbours in stencil order, lane by state value
         * (every lane counts alike). */
        int count = 0;
        for (int j = 0; j < n_off; j++) {
            const int n = ml_bwd_band_at(offsets[j], x, y, z, X, Y, Z);
            if (n < 0)
                continue;
            const size_t at = (size_t)n;
            __global const float *src = state + at * S;
#ifdef ML_PROJ
            BM_FOR(s, S)
                nb[(size_t)count * S + s] = src[s];
            __global const float *ps = proj + at * q_stride + qoff;
            BM_FOR(p, ML_PROJ) {
                nproj[(size_t)count * ML_PROJ + p] = ps[p];
                dproj[(size_t)count * ML_PROJ + p] = 0.0f;
            }
#else
            BM_FOR(s, S) {
                nb[(size_t)count * S + s] = src[s];
                dnb[(size_t)count * S + s] = 0.0f;
            }
#endif
            count++;
        }
        if (count == 0) {
            BM_ONE dw_gate[(size_t)c * 3 + band] = 0.0f; /* an empty band is not run */
            continue;
        }
        const float w = gate_w[(size_t)c * 3 + band];
        __global const float *g = gin + (size_t)i * S;
        BM_FOR(s, S) {
            dout[s] = w * g[s];
            dx[s] = 0.0f;
        }
        BM_FOR(e, E)
            dext[e] = 0.0f;
#ifdef ML_PROJ
        BM_FOR(s, S) {
            dabs[s] = 0.0f;
            dmean[s] = 0.0f;
        }
#endif
        BM_SYNC;
        moelat_grad_cell cell;
        cell.dims = &dims;
        cell.tensors = t;
        cell.x = state + (size_t)i * S;
        cell.neighbours = nb;
        cell.count = count;
        cell.ext = z == 0 ? ext + ((size_t)x + (size_t)X * y) * E : zeros;
        cell.cell[0] = x;
        cell.cell[1] = y;
        cell.cell[2] = z;
        cell.out = out;
        cell.dout = dout;
        cell.dx = dx;
        cell.dneighbours = dnb;
        cell.dext = dext;
        cell.dtensors = dt;
        cell.scratch = scratch;
#ifdef ML_PROJ
        cell.nproj = nproj;
        cell.dproj = dproj;
        cell.dabs = dabs;
        cell.dmean = dmean;
#else
        cell.nproj = 0;
        cell.dproj = 0;
        cell.dabs = 0;
        cell.dmean = 0;
#endif
        if (ML_BWD_FN(&cell) != MOELAT_EXPERT_OK) {
            BM_ONE status[0] = 1;
            BM_SYNC;
            continue;
        }
        float d = 0.0f;
        for (int s = 0; s < S; s++)
            d += g[s] * out[s];
        __global float *own = dchunk + (size_t)(i - t0) * S;
        BM_FOR(s, S)
            own[s] += dx[s];
        BM_ONE dw_gate[(size_t)c * 3 + band] = d;
        if (z == 0)
            BM_FOR(e, E)
                dext_chunk[((size_t)x + (size_t)X * y) * E + e] += dext[e];
#if defined(ML_PROJ)
        {
            __global float *de = dedge + (size_t)c * (2 * S + (size_t)n_off * ML_PROJ);
            BM_FOR(s, S) {
                de[s] = dabs[s];
                de[S + s] = dmean[s];
            }
            de += 2 * S;
            count = 0;
            for (int j = 0; j < n_off; j++) {
                if (ml_bwd_band_at(offsets[j], x, y, z, X, Y, Z) < 0)
                    continue;
                BM_FOR(p, ML_PROJ)
                    de[(size_t)j * ML_PROJ + p] = dproj[(size_t)count * ML_PROJ + p];
                count++;
            }
        }
#elif defined(ML_MEAN_ONLY)
        /* Every neighbour got the same dL/dmean / count: one vector. */
        BM_FOR(s, S)
            dedge[(size_t)c * S + s] = dnb[s];
#else
        count = 0;
        for (int j = 0; j < n_off; j++) {
            if (ml_bwd_band_at(offsets[j], x, y, z, X, Y, Z) < 0)
                continue;
            __global float *de = dedge + ((size_t)c * n_off + j) * S;
            BM_FOR(s, S)
                de[s] = dnb[(size_t)count * S + s];
            count++;
        }
#endif
        BM_SYNC; /* the next cell's neighbours overwrite nb and dnb */
    }
}
