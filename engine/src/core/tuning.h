/* The lattice's tuning knobs: moelat_config.tuning, a "key=value,..."
 * string, parsed once into this struct. The engine reads the struct; the
 * experts read their own keys from the string (moelat_cl_setup.tuning),
 * which the engine validates here all the same so that a typo is an error
 * at creation, not a silent default. */
#ifndef MOELAT_TUNING_H
#define MOELAT_TUNING_H

#include <stddef.h>

typedef struct ml_tuning {
    int agg_vector;        /* state values per work-item of ml_aggregate; 0 = engine's choice */
    int agg_absmean_all;   /* 1: every band's mean of |n_j|, also where an expert declines it */
    int work_group;        /* lanes per cell of the work-group kernels; 0 = engine's choice */
    int gate_cells;        /* cells per work-group the gate asks for; 0 = engine's choice */
    char cl_options[256];  /* extra compiler options for every program */
    int kernel_cache;      /* 1 (default): program binaries cached on disk */
    int upgrade_check;     /* 1 (default): batch mode starts with the sample check */
    int cl_shape;          /* -1 (default): by device type; 0: work-group kernels ("gpu");
                            * 1: CPU-shaped kernels ("cpu"); cl_shape.h, experts/common/cpu_shape.h */
    /* The batched backward (grad_cl.c). */
    int grad_device;       /* 1 (default): on the lattice's device when it has one; 0: on the host */
    int grad_slots;        /* weight-gradient slots (work-items or work-groups); 0 = engine's choice */
    int grad_lanes;        /* lanes per slot of a backward written for lanes; 0 = engine's choice */
    int grad_rows;         /* rows of X cells per backward chunk; 0 = from device memory */
    int grad_host_chunk;   /* -1 (default); n: chunk n's backward runs on the host (tests, diagnosis) */
    int grad_proj;         /* 1 (default): projected bands (MOELAT_BACKWARD_CL_PROJECTED) as declared; 0: off */
} ml_tuning;

/* The keys, comma-separated, for messages and help. */
extern const char ml_tuning_known_keys[];

/* Parses s (NULL or "" = every default; '\,' and '\\' inside a value are
 * a comma and a backslash, moelat/util.h). A key given twice takes its last
 * value (the CLI appends --tune after the environment). 0, or -1 with a
 * message naming the key and what it accepts; t holds the defaults then. */
int ml_tuning_parse(const char *s, ml_tuning *t, char *err, size_t errlen);

#endif
