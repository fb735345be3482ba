/* gemm_probe: times CLBlast's SGEMM on the one dense product of a step that
 * is a plain GEMM, the functional expert's per-step projection
 * (N cells x S) times (S x 2 hd + md), for each preset's default lattice, so
 * that it can be set against the engine's own projection kernel (the "pre"
 * column of `moelat-engine bench`). The per-edge layers, where the FLOPs
 * are, are fused with their gather, GELU and softmax and are no GEMM: see
 * tools/bench/NOTES.md.
 *
 * usage: gemm_probe [device index, default 0 = first GPU, else first device]
 */
#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <clblast_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <CL/cl.h>

typedef struct gemm_case {
    const char *preset;
    int n, s, p; /* cells, state size, projection width 2 hd + md */
} gemm_case;

static const gemm_case cases[] = {
    {"debug 15^3", 3375, 24, 2 * 12 + 8},
    {"debug 30^3", 27000, 24, 2 * 12 + 8},
    {"experiment 40^3", 64000, 64, 2 * 32 + 16},
    {"optimized 100^3", 1000000, 128, 2 * 64 + 32},
};

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int pick_device(int want, cl_device_id *out, char *name, size_t len) {
    cl_platform_id plats[8];
    cl_uint np = 0;
    if (clGetPlatformIDs(8, plats, &np) != CL_SUCCESS || np == 0)
        return -1;
    cl_device_id all[32];
    int n = 0, first_gpu = -1;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, (cl_uint)(32 - n), all + n, &nd) != CL_SUCCESS)
            continue;
        for (cl_uint d = 0; d < nd; d++) {
            cl_device_type t;
            clGetDeviceInfo(all[n + d], CL_DEVICE_TYPE, sizeof t, &t, NULL);
            if (first_gpu < 0 && (t & CL_DEVICE_TYPE_GPU))
                first_gpu = n + (int)d;
        }
        n += (int)nd;
    }
    int i = want >= 0 ? want : (first_gpu >= 0 ? first_gpu : 0);
    if (i >= n)
        return -1;
    *out = all[i];
    clGetDeviceInfo(*out, CL_DEVICE_NAME, len, name, NULL);
    return 0;
}

int main(int argc, char **argv) {
    int want = argc > 1 ? atoi(argv[1]) : -1;
    cl_device_id dev;
    char name[256] = "";
    if (pick_device(want, &dev, name, sizeof name) != 0) {
        fprintf(stderr, "gemm_probe: no OpenCL device %d\n", want);
        return 1;
    }
    cl_int rc;
    cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &rc);
    if (rc != CL_SUCCESS) {
        fprintf(stderr, "gemm_probe: clCreateContext on %s failed (%d)\n", name, rc);
        return 1;
    }
    cl_command_queue q = clCreateCommandQueue(ctx, dev, 0, &rc);
    if (rc != CL_SUCCESS) {
        fprintf(stderr, "gemm_probe: clCreateCommandQueue on %s failed (%d)\n", name, rc);
        return 1;
    }
    printf("device: %s\n%-18s %10s %6s %6s %10s %10s\n", name, "case", "N", "S", "P", "ms", "GFLOP/s");
    int status = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const gemm_case *g = &cases[c];
        size_t na = (size_t)g->n * g->s, nb = (size_t)g->p * g->s, nc = (size_t)g->n * g->p;
        float *host = malloc(na * sizeof(float));
        if (!host)
            return 1;
        for (size_t i = 0; i < na; i++)
            host[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        cl_int e1, e2, e3;
        cl_mem a = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, na * sizeof(float), host, &e1);
        cl_mem b = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, nb * sizeof(float), host, &e2);
        cl_mem out = clCreateBuffer(ctx, CL_MEM_READ_WRITE, nc * sizeof(float), NULL, &e3);
        free(host);
        if (e1 != CL_SUCCESS || e2 != CL_SUCCESS || e3 != CL_SUCCESS) {
            fprintf(stderr, "gemm_probe: buffers for %s failed (%d %d %d)\n", g->preset, e1, e2, e3);
            return 1;
        }
        /* C (N x P) = A (N x S) B^T, B = the weights [P][S] row-major, as
         * the engine stores a Linear's weight. */
        double best = 1e30;
        for (int rep = 0; rep < 6; rep++) {
            double t0 = now_ms();
            CLBlastStatusCode st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes,
                                                (size_t)g->n, (size_t)g->p, (size_t)g->s, 1.0f, a, 0, (size_t)g->s,
                                                b, 0, (size_t)g->s, 0.0f, out, 0, (size_t)g->p, &q, NULL);
            if (st != CLBlastSuccess || clFinish(q) != CL_SUCCESS) {
                fprintf(stderr, "gemm_probe: CLBlastSgemm for %s failed (%d)\n", g->preset, (int)st);
                status = 1;
                break;
            }
            double dt = now_ms() - t0;
            if (rep > 0 && dt < best) /* the first call tunes/compiles */
                best = dt;
        }
        if (best < 1e30)
            printf("%-18s %10d %6d %6d %10.3f %10.1f\n", g->preset, g->n, g->s, g->p, best,
                   2.0 * g->n * g->s * g->p / (best * 1e6));
        clReleaseMemObject(a);
        clReleaseMemObject(b);
        clReleaseMemObject(out);
    }
    clReleaseCommandQueue(q);
    clReleaseContext(ctx);
    return status;
}
