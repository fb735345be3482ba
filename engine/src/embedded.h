/* Text files embedded at build time (cmake/MoelatEmbed.cmake). */
#ifndef MOELAT_EMBEDDED_H
#define MOELAT_EMBEDDED_H

struct ml_embedded_file {
    const char *name; /* base name, e.g. "moelat_helpers.cl" */
    const char *text;
};

/* The engine's kernels_cl/ sources, NULL-terminated. */
extern const struct ml_embedded_file ml_kernels_cl[];
extern const int ml_kernels_cl_count;

#endif
