/* FP32 peak probe: each work-item runs ML_PEAK_ITERS rounds of 8 independent
 * float4 FMA chains (2 FLOPs per lane per FMA), so the FMA pipes, not
 * latency, bound it. The result is stored so nothing is optimised away. */
#ifndef ML_PEAK_ITERS
#define ML_PEAK_ITERS 512
#endif

__kernel void ml_peak_fma(__global float *out, float a, float b) {
    float4 x0 = (float4)(get_global_id(0), 1.0f, 2.0f, 3.0f) * 1e-9f;
    float4 x1 = x0 + 0.1f, x2 = x0 + 0.2f, x3 = x0 + 0.3f;
    float4 x4 = x0 + 0.4f, x5 = x0 + 0.5f, x6 = x0 + 0.6f, x7 = x0 + 0.7f;
    for (int i = 0; i < ML_PEAK_ITERS; i++) {
        x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b);
        x4 = fma(x4, a, b); x5 = fma(x5, a, b); x6 = fma(x6, a, b); x7 = fma(x7, a, b);
    }
    float4 s = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
    out[get_global_id(0)] = s.x + s.y + s.z + s.w;
}
