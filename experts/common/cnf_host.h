/* The CNF block of docs/MODEL.md on the host (the reference the OpenCL path of
 * cnf.cl must match). Used by the distant expert and inside the functional
 * expert. It computes in double (see cnf_host.c). */
#ifndef MOELAT_CNF_HOST_H
#define MOELAT_CNF_HOST_H

#include <stddef.h>

#include "cnf_tensors.h" /* enum cnf_tensor */
#include "expert_common.h"

/* Appends the CNF's specs; prefix ends with '.' or is "". */
void cnf_spec(ec_specs *s, const char *prefix, int S, int H);

/* Rejects H odd or floor(H/4) > S, K < 1, an unknown mode. */
int cnf_validate(int S, int H, int K, int mode, char *err, size_t errlen);

/* Floats of scratch cnf_host_run needs (it works in double inside). */
size_t cnf_scratch_floats(int S, int H);

/* out = v_K of docs/MODEL.md's CNF, from v_0 = x with neighbour mean m.
 * t points at the block's CNF_N_TENSORS tensors. out may not alias x or m. */
void cnf_host_run(const float *const *t, int S, int H, int K, int mode, const float *x,
                  const float *m, float *out, float *scratch);

#endif
