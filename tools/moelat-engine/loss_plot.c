/* The loss curve of `train` as a PNG: training loss per mini-batch (thin)
 * and validation loss per epoch (thick, with points), log-scaled y axis,
 * drawn with cairo, which also writes the PNG. The picture is written to a
 * temporary file beside the target and renamed over it, so a reader never
 * sees half a picture. */
#include "loss_plot.h"

#ifdef MOELAT_HAVE_CAIRO
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { W = 800, H = 500, LEFT = 80, RIGHT = 30, TOP = 40, BOTTOM = 60 };

typedef struct frame {
    double x0, x1;  /* samples seen */
    double ly0, ly1; /* log10 loss */
} frame;

static double px(const frame *f, double x) { return LEFT + (x - f->x0) / (f->x1 - f->x0) * (W - LEFT - RIGHT); }
static double py(const frame *f, double loss) {
    double l = log10(loss > 1e-30 ? loss : 1e-30);
    return H - BOTTOM - (l - f->ly0) / (f->ly1 - f->ly0) * (H - TOP - BOTTOM);
}

static void extend(frame *f, const double *x, const double *y, int n) {
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i]) || y[i] <= 0)
            continue;
        double l = log10(y[i]);
        if (l < f->ly0)
            f->ly0 = l;
        if (l > f->ly1)
            f->ly1 = l;
        if (x[i] > f->x1)
            f->x1 = x[i];
    }
}

static void curve(cairo_t *cr, const frame *f, const double *x, const double *y, int n, double width,
                  int points) {
    cairo_set_line_width(cr, width);
    int open = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i]) || y[i] <= 0) {
            open = 0;
            continue;
        }
        if (open)
            cairo_line_to(cr, px(f, x[i]), py(f, y[i]));
        else
            cairo_move_to(cr, px(f, x[i]), py(f, y[i]));
        open = 1;
    }
    cairo_stroke(cr);
    if (points)
        for (int i = 0; i < n; i++)
            if (isfinite(y[i]) && y[i] > 0) {
                cairo_arc(cr, px(f, x[i]), py(f, y[i]), 3.5, 0, 2 * M_PI);
                cairo_fill(cr);
            }
}

static void text(cairo_t *cr, double x, double y, const char *s, double align) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - align * e.width, y);
    cairo_show_text(cr, s);
}

static void axes(cairo_t *cr, const frame *f, const char *title) {
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, LEFT, TOP, W - LEFT - RIGHT, H - TOP - BOTTOM);
    cairo_stroke(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 12);
    char buf[64];
    /* Decades on the y axis, light grid lines. */
    for (int d = (int)ceil(f->ly0); d <= (int)floor(f->ly1); d++) {
        double y = py(f, pow(10, d));
        cairo_set_source_rgb(cr, 0.85, 0.85, 0.85);
        cairo_move_to(cr, LEFT, y);
        cairo_line_to(cr, W - RIGHT, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        snprintf(buf, sizeof buf, "1e%d", d);
        text(cr, LEFT - 6, y + 4, buf, 1.0);
    }
    for (int k = 0; k <= 4; k++) {
        double x = f->x0 + (f->x1 - f->x0) * k / 4;
        snprintf(buf, sizeof buf, "%.0f", x);
        text(cr, px(f, x), H - BOTTOM + 18, buf, 0.5);
    }
    text(cr, (LEFT + W - RIGHT) / 2.0, H - 15, "samples seen", 0.5);
    cairo_save(cr);
    cairo_translate(cr, 22, (TOP + H - BOTTOM) / 2.0);
    cairo_rotate(cr, -M_PI / 2);
    text(cr, 0, 0, "loss (MSE of the output face)", 0.5);
    cairo_restore(cr);
    cairo_set_font_size(cr, 14);
    text(cr, (LEFT + W - RIGHT) / 2.0, TOP - 14, title, 0.5);
}

static void legend(cairo_t *cr) {
    cairo_set_font_size(cr, 12);
    cairo_set_source_rgb(cr, 0.2, 0.4, 0.8);
    cairo_set_line_width(cr, 1);
    cairo_move_to(cr, W - RIGHT - 170, TOP + 18);
    cairo_line_to(cr, W - RIGHT - 140, TOP + 18);
    cairo_stroke(cr);
    text(cr, W - RIGHT - 134, TOP + 22, "training (batch)", 0);
    cairo_set_source_rgb(cr, 0.85, 0.3, 0.1);
    cairo_set_line_width(cr, 2.5);
    cairo_move_to(cr, W - RIGHT - 170, TOP + 38);
    cairo_line_to(cr, W - RIGHT - 140, TOP + 38);
    cairo_stroke(cr);
    text(cr, W - RIGHT - 134, TOP + 42, "validation (epoch)", 0);
}

int loss_plot_write(const char *path, const char *title, const double *train_x, const double *train_y, int n_train,
                    const double *val_x, const double *val_y, int n_val, char *err, size_t errlen) {
    frame f = {0, 1, INFINITY, -INFINITY};
    extend(&f, train_x, train_y, n_train);
    extend(&f, val_x, val_y, n_val);
    if (!isfinite(f.ly0)) {
        f.ly0 = -1;
        f.ly1 = 0;
    }
    f.ly0 = floor(f.ly0 * 4) / 4 - 0.05;
    f.ly1 = ceil(f.ly1 * 4) / 4 + 0.05;
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = cairo_create(s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    axes(cr, &f, title);
    cairo_rectangle(cr, LEFT, TOP, W - LEFT - RIGHT, H - TOP - BOTTOM);
    cairo_clip(cr);
    cairo_set_source_rgb(cr, 0.2, 0.4, 0.8);
    curve(cr, &f, train_x, train_y, n_train, 1.0, 0);
    cairo_set_source_rgb(cr, 0.85, 0.3, 0.1);
    curve(cr, &f, val_x, val_y, n_val, 2.5, 1);
    cairo_reset_clip(cr);
    legend(cr);
    cairo_status_t cs = cairo_status(cr);
    cairo_destroy(cr);
    char tmp[4200];
    int rc = -1;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        snprintf(err, errlen, "%s: path too long", path);
    else if (cs != CAIRO_STATUS_SUCCESS)
        snprintf(err, errlen, "%s: drawing failed: %s", path, cairo_status_to_string(cs));
    else if ((cs = cairo_surface_write_to_png(s, tmp)) != CAIRO_STATUS_SUCCESS)
        snprintf(err, errlen, "%s: cannot write the PNG: %s", path, cairo_status_to_string(cs));
    else if (rename(tmp, path) != 0)
        snprintf(err, errlen, "%s: cannot rename %s over it", path, tmp);
    else
        rc = 0;
    if (rc != 0)
        unlink(tmp);
    cairo_surface_destroy(s);
    return rc;
}

#else /* !MOELAT_HAVE_CAIRO */
#include <stdio.h>

int loss_plot_write(const char *path, const char *title, const double *train_x, const double *train_y, int n_train,
                    const double *val_x, const double *val_y, int n_val, char *err, size_t errlen) {
    (void)title, (void)train_x, (void)train_y, (void)n_train, (void)val_x, (void)val_y, (void)n_val;
    snprintf(err, errlen, "%s: this moelat-engine was built without cairo (Debian: libcairo2-dev)", path);
    return -1;
}
#endif
