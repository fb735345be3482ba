/* The optimizer on an OpenCL device (optim_cl.h). */
#include "backend/opencl/optim_cl.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

#define OPT_LOG "train"

void ml_optim_cl_destroy(ml_optim_cl *o) {
    if (!o)
        return;
    if (o->q)
        clFinish(o->q);
    cl_kernel ks[] = {o->k_accumulate, o->k_sumsq, o->k_scale, o->k_adamw, o->k_sgd};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        if (ks[i])
            clReleaseKernel(ks[i]);
    if (o->prog)
        clReleaseProgram(o->prog);
    cl_mem ms[] = {o->w, o->g, o->m, o->v, o->partial};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        mlcl_release_buffer(ms[i]);
    free(o);
}

/* A new buffer of zeros (the fill enqueued). */
static cl_mem zeroed(ml_optim_cl *o, size_t bytes, cl_int *rc) {
    if (*rc != CL_SUCCESS)
        return NULL;
    cl_mem m = mlcl_create_buffer(o->ctx, CL_MEM_READ_WRITE, bytes, NULL, rc);
    const float zero = 0.0f;
    if (*rc == CL_SUCCESS)
        *rc = clEnqueueFillBuffer(o->q, m, &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
    return m;
}

int ml_optim_cl_create(mlcl_context *ctx, cl_command_queue q, int kind, size_t n, ml_optim_cl **out, char *why,
                       size_t whylen) {
    *out = NULL;
    if (n == 0 || n > UINT_MAX) {
        snprintf(why, whylen, "the device optimizer takes 1 to %u values, not %zu", UINT_MAX, n);
        return -1;
    }
    const char *src = mlcl_embedded_source("moelat_optim.cl");
    if (!src) {
        snprintf(why, whylen, "moelat_optim.cl is missing from this build");
        return -1;
    }
    ml_optim_cl *o = calloc(1, sizeof *o);
    if (!o) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    o->ctx = ctx;
    o->q = q;
    o->kind = kind;
    o->n = n;
    o->fp64 = ctx->info.fp64;
    /* OpenCL 1.2 allows 2.5 ulp for float division and 3 for sqrt unless
     * the program asks for correct rounding, which a device may not offer. */
    cl_device_fp_config fp = 0;
    cl_int rc = clGetDeviceInfo(ctx->info.device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL);
    o->exact = rc == CL_SUCCESS && (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT);
    char opts[160];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2%s%s", o->exact ? " -cl-fp32-correctly-rounded-divide-sqrt" : "",
             o->fp64 ? " -D ML_OPT_FP64" : "");
    if (mlcl_build_program(ctx, "moelat_optim.cl", src, opts, &o->prog, why, whylen) != 0) {
        ml_optim_cl_destroy(o);
        return -1;
    }
    const char *names[5] = {"ml_opt_accumulate", "ml_opt_sumsq", "ml_opt_scale", "ml_opt_adamw", "ml_opt_sgd"};
    cl_kernel *ks[5] = {&o->k_accumulate, &o->k_sumsq, &o->k_scale, &o->k_adamw, &o->k_sgd};
    for (int i = 0; i < 5; i++) {
        *ks[i] = clCreateKernel(o->prog, names[i], &rc);
        if (rc != CL_SUCCESS) {
            snprintf(why, whylen, "creating kernel %s: %s", names[i], mlcl_error_name(rc));
            ml_optim_cl_destroy(o);
            return -1;
        }
    }
    size_t bytes = n * sizeof(float);
    o->w = zeroed(o, bytes, &rc);
    o->g = zeroed(o, bytes, &rc);
    o->m = zeroed(o, bytes, &rc);
    if (kind == MOELAT_OPT_ADAMW)
        o->v = zeroed(o, bytes, &rc);
    o->partial = zeroed(o, ML_NORM_BLOCKS * sizeof(double), &rc);
    if (rc == CL_SUCCESS)
        rc = clFinish(q);
    if (rc != CL_SUCCESS) {
        snprintf(why, whylen, "allocating the optimizer's 4 buffers of %zu floats: %s", n, mlcl_error_name(rc));
        ml_optim_cl_destroy(o);
        return -1;
    }
    if (!o->exact)
        ML_WARN(OPT_LOG, "device '%s' does not divide and take sqrt correctly rounded: its optimizer steps may "
                "differ from the host's in the last bits", ctx->info.name);
    if (!o->fp64)
        ML_INFO(OPT_LOG, "device '%s' has no fp64: the gradient norm is summed in float there", ctx->info.name);
    *out = o;
    return 0;
}

static cl_mem buf_of(ml_optim_cl *o, ml_optim_buf which) {
    return which == ML_OPT_W ? o->w : which == ML_OPT_G ? o->g : which == ML_OPT_M ? o->m : o->v;
}

cl_int ml_optim_cl_write(ml_optim_cl *o, ml_optim_buf which, const float *src) {
    cl_mem m = buf_of(o, which);
    return m ? clEnqueueWriteBuffer(o->q, m, CL_TRUE, 0, o->n * sizeof(float), src, 0, NULL, NULL)
             : CL_INVALID_MEM_OBJECT;
}

cl_int ml_optim_cl_read(ml_optim_cl *o, ml_optim_buf which, float *dst) {
    cl_mem m = buf_of(o, which);
    return m ? clEnqueueReadBuffer(o->q, m, CL_TRUE, 0, o->n * sizeof(float), dst, 0, NULL, NULL)
             : CL_INVALID_MEM_OBJECT;
}

#define ARG(k, i, v) (rc == CL_SUCCESS ? (rc = clSetKernelArg((k), (i), sizeof(v), &(v))) : rc)

static cl_int launch(ml_optim_cl *o, cl_kernel k, size_t global) {
    return mlcl_enqueue_kernel(o->q, k, 1, &global, NULL, 0, NULL, NULL);
}

cl_int ml_optim_cl_zero_grad(ml_optim_cl *o) {
    const float zero = 0.0f;
    return clEnqueueFillBuffer(o->q, o->g, &zero, sizeof zero, 0, o->n * sizeof(float), 0, NULL, NULL);
}

cl_int ml_optim_cl_add_grad(ml_optim_cl *o, cl_mem src) {
    cl_int rc = CL_SUCCESS;
    cl_uint n = (cl_uint)o->n;
    ARG(o->k_accumulate, 0, o->g);
    ARG(o->k_accumulate, 1, src);
    ARG(o->k_accumulate, 2, n);
    return rc == CL_SUCCESS ? launch(o, o->k_accumulate, o->n) : rc;
}

cl_int ml_optim_cl_norm(ml_optim_cl *o, double *norm) {
    cl_int rc = CL_SUCCESS;
    cl_uint n = (cl_uint)o->n, block = (cl_uint)ml_norm_block(o->n);
    cl_uint blocks = (n + block - 1) / block;
    ARG(o->k_sumsq, 0, o->g);
    ARG(o->k_sumsq, 1, n);
    ARG(o->k_sumsq, 2, block);
    ARG(o->k_sumsq, 3, o->partial);
    if (rc == CL_SUCCESS)
        rc = launch(o, o->k_sumsq, blocks);
    double part[ML_NORM_BLOCKS];
    float fpart[ML_NORM_BLOCKS];
    if (rc == CL_SUCCESS)
        rc = clEnqueueReadBuffer(o->q, o->partial, CL_TRUE, 0, blocks * (o->fp64 ? sizeof(double) : sizeof(float)),
                                 o->fp64 ? (void *)part : (void *)fpart, 0, NULL, NULL);
    if (rc != CL_SUCCESS)
        return rc;
    double s = 0;
    for (cl_uint b = 0; b < blocks; b++)
        s += o->fp64 ? part[b] : (double)fpart[b];
    *norm = sqrt(s);
    return CL_SUCCESS;
}

cl_int ml_optim_cl_update(ml_optim_cl *o, const ml_optim_scalars *s, float clip) {
    cl_int rc = CL_SUCCESS;
    cl_uint n = (cl_uint)o->n;
    if (clip < 1) {
        ARG(o->k_scale, 0, o->g);
        ARG(o->k_scale, 1, n);
        ARG(o->k_scale, 2, clip);
        if (rc == CL_SUCCESS)
            rc = launch(o, o->k_scale, o->n);
    }
    cl_kernel k = s->kind == MOELAT_OPT_ADAMW ? o->k_adamw : o->k_sgd;
    if (s->kind != o->kind)
        return CL_INVALID_VALUE;
    ARG(k, 0, o->w);
    ARG(k, 1, o->g);
    ARG(k, 2, o->m);
    if (s->kind == MOELAT_OPT_ADAMW) {
        ARG(k, 3, o->v); ARG(k, 4, n); ARG(k, 5, s->decay); ARG(k, 6, s->b1); ARG(k, 7, s->b2);
        ARG(k, 8, s->one_b1); ARG(k, 9, s->one_b2); ARG(k, 10, s->neg_step_size); ARG(k, 11, s->bc2_sqrt);
        ARG(k, 12, s->eps);
    } else {
        cl_int first = s->first;
        ARG(k, 3, n); ARG(k, 4, s->wd); ARG(k, 5, s->mom); ARG(k, 6, s->neg_lr); ARG(k, 7, first);
    }
    return rc == CL_SUCCESS ? launch(o, k, o->n) : rc;
}
