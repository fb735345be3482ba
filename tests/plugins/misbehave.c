/* Test plugins that misbehave at one cell, (2, 1, 3): built twice, as
 * test_nan (writes a NaN there) and test_fail (returns an error there);
 * every other cell gets out = x. */
#include <math.h>
#include <string.h>

#include "moelat/expert_abi.h"

void tp_base(moelat_expert_descriptor *d, const char *name);

static moelat_expert_descriptor desc;

static int misbehave_cell(const moelat_host_cell *c) {
    memcpy(c->out, c->x, (size_t)c->dims->state_size * sizeof(float));
    if (c->cell[0] == 2 && c->cell[1] == 1 && c->cell[2] == 3) {
#ifdef MISBEHAVE_FAIL
        return MOELAT_EXPERT_ERROR;
#else
        c->out[1] = NAN;
#endif
    }
    return MOELAT_EXPERT_OK;
}

MOELAT_EXPORT const moelat_expert_descriptor *MOELAT_EXPERT_ENTRY(const moelat_host_services *host) {
    (void)host;
#ifdef MISBEHAVE_FAIL
    tp_base(&desc, "test_fail");
#else
    tp_base(&desc, "test_nan");
#endif
    desc.host_cell = misbehave_cell;
    return &desc;
}
