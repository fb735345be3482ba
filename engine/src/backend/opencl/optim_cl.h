/* The optimizer on an OpenCL device: AdamW or SGD over n float32 values
 * in device buffers (kernels_cl/moelat_optim.cl), with the moments kept on
 * the device. It knows nothing of lattices: the backend's glue
 * (backend_cl_optim.c) copies the lattice's parameter blocks in and out of
 * `w`, and the tests drive it on bare buffers against optim.c.
 *
 * A step is: the gradient sum in `g` (written, or accumulated from device
 * buffers), ml_optim_cl_norm (its global L2 norm, read by the host, which
 * decides clipping), ml_optim_cl_update (clip scaling, then the update of
 * w, m and v by the host's scalars). Every call returns the OpenCL code of
 * its first failing command; the caller names what failed. */
#ifndef MOELAT_OPTIM_CL_H
#define MOELAT_OPTIM_CL_H

#include <stddef.h>

#include "backend/opencl/cl_runtime.h"
#include "train/optim_step.h"

typedef struct ml_optim_cl {
    mlcl_context *ctx; /* the caller's, outliving this */
    cl_command_queue q;
    int kind;          /* moelat_optimizer_kind */
    size_t n;
    int fp64;          /* the norm's partial sums are double */
    int exact;         /* the device divides and takes sqrt correctly rounded */
    cl_program prog;
    cl_kernel k_accumulate, k_sumsq, k_scale, k_adamw, k_sgd;
    cl_mem w, g, m, v; /* weights, gradient sum, moments (v: AdamW only) */
    cl_mem partial;    /* ML_NORM_BLOCKS partial sums of squares */
} ml_optim_cl;

/* The buffers a caller reads or writes whole. */
typedef enum ml_optim_buf { ML_OPT_W, ML_OPT_G, ML_OPT_M, ML_OPT_V } ml_optim_buf;

/* Builds the program and allocates the buffers (moments zero) on ctx's
 * device, commands going to q; 0, or -1 with why. */
int ml_optim_cl_create(mlcl_context *ctx, cl_command_queue q, int kind, size_t n, ml_optim_cl **out, char *why,
                       size_t whylen);
void ml_optim_cl_destroy(ml_optim_cl *o);

/* Blocking copies of a whole buffer from or to the host. */
cl_int ml_optim_cl_write(ml_optim_cl *o, ml_optim_buf which, const float *src);
cl_int ml_optim_cl_read(ml_optim_cl *o, ml_optim_buf which, float *dst);
/* g = 0, and g += src (n floats of a device buffer of o's context). */
cl_int ml_optim_cl_zero_grad(ml_optim_cl *o);
cl_int ml_optim_cl_add_grad(ml_optim_cl *o, cl_mem src);
/* The global L2 norm of g, summed in optim_step.h's order. */
cl_int ml_optim_cl_norm(ml_optim_cl *o, double *norm);
/* g *= clip when clip < 1, then one AdamW or SGD update of w (and m, v)
 * by s; enqueued, not waited for. */
cl_int ml_optim_cl_update(ml_optim_cl *o, const ml_optim_scalars *s, float clip);

#endif
