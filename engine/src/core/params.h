/* Parameter blocks: the learnable tensors of one expert or of the gate,
 * stored contiguously in declaration order under a name prefix
 * ("local_expert.", "gating_network.", ...). Weights files hold every block
 * of a lattice. */
#ifndef MOELAT_PARAMS_H
#define MOELAT_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "moelat/expert_abi.h"
#include "moelat/moelat.h"

typedef struct ml_param_block {
    char prefix[64];
    int n_tensors;
    moelat_tensor_spec *specs;
    uint64_t *offsets;   /* in floats, into data */
    float **tensors;     /* data + offsets[i] */
    float *data;
    size_t n_floats;
} ml_param_block;

size_t ml_spec_numel(const moelat_tensor_spec *spec);

/* Allocates a block for n specs (copied). Values are zero until init. */
int ml_params_create(ml_param_block *b, const char *prefix, const moelat_tensor_spec *specs,
                     int n);
void ml_params_free(ml_param_block *b);

/* Applies each spec's init rule with the engine's generator (rng.h). */
void ml_params_init_default(ml_param_block *b, uint64_t seed);

/* Writes every tensor of the blocks to a safetensors file (atomic). */
int ml_params_save(const char *path, ml_param_block *const *blocks, int n_blocks, char *err,
                   size_t errlen);

/* Reads a safetensors file into the blocks. Either every tensor loads or
 * nothing changes: a missing or extra tensor, a wrong shape is an error
 * naming the file and the tensor. A scalar reads from shape [] or [1]. */
moelat_status ml_params_load(const char *path, ml_param_block *const *blocks, int n_blocks, char *err,
                             size_t errlen);

/* XXH64-free digest of all values (FNV-1a over the bytes), for checkpoints. */
uint64_t ml_params_digest(ml_param_block *const *blocks, int n_blocks);

#endif
