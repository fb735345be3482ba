/* Shared OpenCL C helpers (OpenCL C 1.2). The engine puts this file in front
 * of its own kernels and of every expert plugin's source, so plugins may use
 * everything here. Vectors passed by plain pointer are private arrays;
 * weights live in __global memory, stored [out][in] row-major as PyTorch's
 * Linear. */
#ifndef MOELAT_HELPERS_CL
#define MOELAT_HELPERS_CL

/* Exact (erf) GELU, as MODEL.md specifies. */
inline float ml_gelu(float v) { return 0.5f * v * (1.0f + erf(v * 0.70710678118654752f)); }

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

#endif
