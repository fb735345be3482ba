/* Shared parts of the test plugins: a minimal valid descriptor that each
 * plugin then breaks in exactly one way. Not exported (hidden visibility). */
#include <string.h>

#include "moelat/expert_abi.h"

void tp_base(moelat_expert_descriptor *d, const char *name);

static int tp_tensors(const moelat_expert_dims *dims, moelat_tensor_spec *out, int cap) {
    if (cap >= 1) {
        memset(&out[0], 0, sizeof out[0]);
        strcpy(out[0].suffix, "scale");
        out[0].ndim = 1;
        out[0].shape[0] = dims->state_size;
        out[0].init = MOELAT_INIT_CONST;
        out[0].value = 1.0f;
    }
    return 1;
}

static size_t tp_scratch(const moelat_expert_dims *dims, int max_neighbours) {
    (void)dims;
    (void)max_neighbours;
    return 0;
}

/* The identity: out = x, which a test can check exactly. */
static int tp_host_cell(const moelat_host_cell *cell) {
    memcpy(cell->out, cell->x, (size_t)cell->dims->state_size * sizeof(float));
    return MOELAT_EXPERT_OK;
}

void tp_base(moelat_expert_descriptor *d, const char *name) {
    memset(d, 0, sizeof *d);
    d->abi_major = MOELAT_EXPERT_ABI_MAJOR;
    d->abi_minor = MOELAT_EXPERT_ABI_MINOR;
    d->struct_size = sizeof *d;
    d->name = name;
    d->version = "0.0.1";
    d->description = "test plugin: copies x to out";
    d->hidden_names[0] = "h";
    d->hidden_defaults[0] = 4;
    d->tensors = tp_tensors;
    d->host_scratch_floats = tp_scratch;
    d->host_cell = tp_host_cell;
}
