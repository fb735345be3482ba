/* What diffusion_expert.c and diffusion_backward.c share. Plain C and
 * OpenCL C alike: the device backward is built from it. */
#ifndef DIFFUSION_H
#define DIFFUSION_H

enum { T_D, N_TENSORS }; /* declaration order of the tensors */

#ifndef __OPENCL_VERSION__
/* The backward extensions ("moelat.backward.host/1", "moelat.backward.cl/1")
 * named id, or NULL (diffusion_backward.c). */
const void *diffusion_backward_extension(const char *id);
#endif

#endif
