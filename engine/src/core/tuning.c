/* Parsing of the tuning string (tuning.h). Switches accept 0/1/on/off
 * everywhere, so that one knob never reads "0" as on and another as off. */
#include "core/tuning.h"

#include "moelat/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char ml_tuning_known_keys[] =
    "agg_vector, agg_absmean, work_group, gate_cells, cl_options, kernel_cache, upgrade_check, "
    "functional_gemm, functional_cells, functional_split, distant_cells, local_cells, cl_shape, "
    "grad_device, grad_slots, grad_lanes, grad_rows, grad_host_chunk, grad_proj";

/* 1, 0, or -1 when v is not a switch value. */
static int parse_switch(const char *v) {
    if (strcmp(v, "1") == 0 || strcmp(v, "on") == 0)
        return 1;
    if (strcmp(v, "0") == 0 || strcmp(v, "off") == 0)
        return 0;
    return -1;
}

/* A whole number in [lo, hi], or -1. */
static int parse_int(const char *v, int lo, int hi) {
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < lo || n > hi)
        return -1;
    return (int)n;
}

static int one_of(int v, const int *allowed, int n) {
    for (int i = 0; i < n; i++)
        if (v == allowed[i])
            return 1;
    return 0;
}

static int bad(char *err, size_t errlen, const char *key, const char *val, const char *want) {
    snprintf(err, errlen, "tuning: %s=%s: expected %s", key, val, want);
    return -1;
}

static int set_key(ml_tuning *t, const char *key, const char *val, char *err, size_t errlen) {
    static const int pow2_cells[] = {1, 2, 4};
    static const int vectors[] = {1, 4, 8, 16};
    int n;
    if (strcmp(key, "agg_vector") == 0) {
        if ((n = parse_int(val, 1, 16)) < 0 || !one_of(n, vectors, 4))
            return bad(err, errlen, key, val, "1, 4, 8 or 16");
        t->agg_vector = n;
    } else if (strcmp(key, "agg_absmean") == 0) {
        if (strcmp(val, "all") != 0 && strcmp(val, "declared") != 0)
            return bad(err, errlen, key, val, "'all' or 'declared'");
        t->agg_absmean_all = strcmp(val, "all") == 0;
    } else if (strcmp(key, "work_group") == 0) {
        if ((n = parse_int(val, 32, 256)) < 0 || (n & (n - 1)) != 0)
            return bad(err, errlen, key, val, "a power of two from 32 to 256");
        t->work_group = n;
    } else if (strcmp(key, "gate_cells") == 0) {
        if ((n = parse_int(val, 1, 4)) < 0 || !one_of(n, pow2_cells, 3))
            return bad(err, errlen, key, val, "1, 2 or 4");
        t->gate_cells = n;
    } else if (strcmp(key, "cl_options") == 0) {
        if (strlen(val) >= sizeof t->cl_options)
            return bad(err, errlen, key, val, "at most 255 characters");
        snprintf(t->cl_options, sizeof t->cl_options, "%s", val);
    } else if (strcmp(key, "kernel_cache") == 0 || strcmp(key, "upgrade_check") == 0 ||
               strcmp(key, "functional_split") == 0) {
        if ((n = parse_switch(val)) < 0)
            return bad(err, errlen, key, val, "0, 1, on or off");
        if (key[0] == 'k')
            t->kernel_cache = n;
        else if (key[0] == 'u')
            t->upgrade_check = n;
    } else if (strcmp(key, "functional_gemm") == 0) {
        if (strcmp(val, "clblast") != 0 && strcmp(val, "kernel") != 0)
            return bad(err, errlen, key, val, "'clblast' or 'kernel'");
    } else if (strcmp(key, "functional_cells") == 0) {
        if (parse_int(val, 1, 16) < 0)
            return bad(err, errlen, key, val, "a whole number from 1 to 16");
    } else if (strcmp(key, "distant_cells") == 0 || strcmp(key, "local_cells") == 0) {
        if ((n = parse_int(val, 1, 4)) < 0 || !one_of(n, pow2_cells, 3))
            return bad(err, errlen, key, val, "1, 2 or 4");
    } else if (strcmp(key, "cl_shape") == 0) {
        if (strcmp(val, "gpu") != 0 && strcmp(val, "cpu") != 0)
            return bad(err, errlen, key, val, "'gpu' or 'cpu'");
        t->cl_shape = strcmp(val, "cpu") == 0;
    } else if (strcmp(key, "grad_device") == 0) {
        if ((n = parse_switch(val)) < 0)
            return bad(err, errlen, key, val, "0, 1, on or off");
        t->grad_device = n;
    } else if (strcmp(key, "grad_slots") == 0) {
        if ((n = parse_int(val, 1, 1 << 20)) < 0)
            return bad(err, errlen, key, val, "a whole number from 1 to 1048576");
        t->grad_slots = n;
    } else if (strcmp(key, "grad_lanes") == 0) {
        static const int pow2_lanes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
        if ((n = parse_int(val, 1, 256)) < 0 || !one_of(n, pow2_lanes, 9))
            return bad(err, errlen, key, val, "a power of two from 1 to 256");
        t->grad_lanes = n;
    } else if (strcmp(key, "grad_rows") == 0) {
        if ((n = parse_int(val, 1, 1 << 20)) < 0)
            return bad(err, errlen, key, val, "a whole number from 1 to 1048576");
        t->grad_rows = n;
    } else if (strcmp(key, "grad_host_chunk") == 0) {
        if ((n = parse_int(val, 0, 1 << 20)) < 0)
            return bad(err, errlen, key, val, "a chunk number from 0");
        t->grad_host_chunk = n;
    } else if (strcmp(key, "grad_proj") == 0) {
        if ((n = parse_switch(val)) < 0)
            return bad(err, errlen, key, val, "0, 1, on or off");
        t->grad_proj = n;
    } else {
        snprintf(err, errlen, "tuning: unknown key '%.64s' (known: %s)", key, ml_tuning_known_keys);
        return -1;
    }
    return 0;
}

static void set_defaults(ml_tuning *t) {
    memset(t, 0, sizeof *t);
    t->kernel_cache = 1;
    t->upgrade_check = 1;
    t->cl_shape = -1;
    t->grad_device = 1;
    t->grad_host_chunk = -1;
    t->grad_proj = 1;
}

/* The entry at p, up to the first comma not escaped by a backslash, into
 * item (cap bytes) with '\,' and '\\' unescaped (moelat/util.h); returns
 * where the next entry starts. *too_long when it did not fit. */
static const char *next_entry(const char *p, char *item, size_t cap, int *too_long) {
    size_t n = 0;
    *too_long = 0;
    while (*p && *p != ',') {
        char c = *p;
        if (c == '\\' && (p[1] == ',' || p[1] == '\\'))
            c = *++p;
        if (n + 1 < cap)
            item[n++] = c;
        else
            *too_long = 1;
        p++;
    }
    item[n] = '\0';
    return *p == ',' ? p + 1 : p;
}

int ml_tuning_parse(const char *s, ml_tuning *t, char *err, size_t errlen) {
    set_defaults(t);
    if (!s)
        return 0;
    for (const char *p = s; *p;) {
        char item[512];
        int too_long;
        const char *entry = p;
        p = next_entry(p, item, sizeof item, &too_long);
        if (too_long) {
            snprintf(err, errlen, "tuning: entry '%.40s...' is too long", entry);
            goto fail;
        }
        if (!item[0])
            continue;
        char *eq = strchr(item, '=');
        if (!eq || eq == item) {
            snprintf(err, errlen, "tuning: entry '%s' is not key=value (known keys: %s)", item,
                     ml_tuning_known_keys);
            goto fail;
        }
        *eq = '\0';
        if (set_key(t, item, eq + 1, err, errlen) != 0)
            goto fail;
    }
    return 0;
fail:
    set_defaults(t);
    return -1;
}

moelat_status moelat_tuning_check(const char *tuning, char *err, size_t errlen) {
    ml_tuning t;
    char dummy[2];
    if (!err) {
        err = dummy;
        errlen = sizeof dummy;
    }
    return ml_tuning_parse(tuning, &t, err, errlen) == 0 ? MOELAT_OK : MOELAT_ERR_INVALID;
}

int moelat_tuning_value(const char *tuning, const char *key, char *buf, size_t cap) {
    int found = 0;
    if (buf && cap)
        buf[0] = '\0';
    if (!key)
        return 0;
    size_t klen = strlen(key);
    for (const char *p = tuning ? tuning : ""; *p;) {
        char item[1024];
        int too_long;
        p = next_entry(p, item, sizeof item, &too_long);
        if (strncmp(item, key, klen) == 0 && item[klen] == '=') {
            found = 1; /* a later setting wins */
            if (buf && cap)
                snprintf(buf, cap, "%s", item + klen + 1);
        }
    }
    return found;
}

moelat_status moelat_tuning_append(char *buf, size_t cap, const char *key, const char *value) {
    if (!buf || !key || !*key || strpbrk(key, "=,\\") || !value)
        return MOELAT_ERR_INVALID;
    size_t at = strnlen(buf, cap);
    if (at >= cap)
        return MOELAT_ERR_INVALID;
    size_t need = at + (at ? 1 : 0) + strlen(key) + 1;
    for (const char *v = value; *v; v++)
        need += *v == ',' || *v == '\\' ? 2 : 1;
    if (need + 1 > cap)
        return MOELAT_ERR_INVALID;
    char *o = buf + at;
    if (at)
        *o++ = ',';
    o += sprintf(o, "%s=", key);
    for (const char *v = value; *v; v++) {
        if (*v == ',' || *v == '\\')
            *o++ = '\\';
        *o++ = *v;
    }
    *o = '\0';
    return MOELAT_OK;
}
