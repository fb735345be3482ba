/* The optimizer on the device (backend/opencl/optim_cl.c): AdamW and SGD
 * over a flat float32 range, the mini-batch's gradient sum, the global
 * norm's sum of squares and the clip scaling.
 *
 * The updates repeat engine/src/train/optim.c's adamw_update and
 * sgd_update operation by operation, so that the device's weights and
 * moments equal the host's bit for bit: every scalar arrives already
 * rounded to float (train/optim_step.h computes them on the host), no
 * multiply-add may fuse (FP_CONTRACT OFF; the program is built without
 * -cl-mad-enable or fast-math), and the build asks for correctly rounded
 * division and sqrt where the device offers them. */
#pragma OPENCL FP_CONTRACT OFF

#ifdef ML_OPT_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double ml_acc; /* the host sums squares in double */
#else
typedef float ml_acc;  /* no fp64: the norm is float-rounded (optim_cl.c logs it) */
#endif

/* sum += g: one sample's gradient into the mini-batch's, in sample order
 * (the host's float sum, element by element). */
__kernel void ml_opt_accumulate(__global float *sum, __global const float *g, uint n) {
    uint i = get_global_id(0);
    if (i < n)
        sum[i] = sum[i] + g[i];
}

/* Block b's sum of squares, in index order (optim_step.h's order: the
 * host adds the ML_NORM_BLOCKS partial sums in block order). */
__kernel void ml_opt_sumsq(__global const float *g, uint n, uint block, __global ml_acc *partial) {
    uint b = get_global_id(0);
    ulong i0 = (ulong)b * block, i1 = i0 + block < n ? i0 + block : n;
    ml_acc s = 0;
    for (ulong i = i0; i < i1; i++)
        s += (ml_acc)g[i] * (ml_acc)g[i];
    partial[b] = s;
}

/* clip_grad_norm_'s scaling, by the host's float coefficient. */
__kernel void ml_opt_scale(__global float *g, uint n, float cf) {
    uint i = get_global_id(0);
    if (i < n)
        g[i] = g[i] * cf;
}

__kernel void ml_opt_adamw(__global float *p, __global const float *grad, __global float *m_buf,
                           __global float *v_buf, uint n, float decay, float b1, float b2, float one_b1,
                           float one_b2, float neg_step_size, float bc2_sqrt, float eps) {
    uint i = get_global_id(0);
    if (i >= n)
        return;
    float g = grad[i];
    float w = p[i] * decay;
    float m = m_buf[i] * b1;
    m = m + one_b1 * g;
    float v = v_buf[i] * b2;
    v = v + one_b2 * (g * g);
    m_buf[i] = m;
    v_buf[i] = v;
    float denom = sqrt(v) / bc2_sqrt + eps;
    p[i] = w + neg_step_size * (m / denom);
}

/* first: step 1, when the momentum buffer starts as the gradient. */
__kernel void ml_opt_sgd(__global float *p, __global const float *grad, __global float *m_buf, uint n, float wd,
                         float mom, float neg_lr, int first) {
    uint i = get_global_id(0);
    if (i >= n)
        return;
    float w = p[i];
    float d = grad[i];
    if (wd != 0)
        d = d + wd * w;
    if (mom != 0) {
        d = first ? d : m_buf[i] * mom + d;
        m_buf[i] = d;
    }
    p[i] = w + neg_lr * d;
}
