/* The PNG loss curve of `moelat-engine train` (cairo). */
#ifndef MOELAT_LOSS_PLOT_H
#define MOELAT_LOSS_PLOT_H

#include <stddef.h>

/* Training losses at train_x (samples seen) and validation losses at
 * val_x, on a log scale; non-finite or non-positive values leave gaps.
 * Written atomically. Returns 0, or -1 with err set. */
int loss_plot_write(const char *path, const char *title, const double *train_x, const double *train_y, int n_train,
                    const double *val_x, const double *val_y, int n_val, char *err, size_t errlen);

#endif
