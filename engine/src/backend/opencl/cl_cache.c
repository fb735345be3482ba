/* On-disk cache of program binaries. An entry is <dir>/<hex>.bin where hex
 * is the XXH3-128 of everything that decides the binary (source, options,
 * device, driver, platform). The file is a 32-byte header followed by the
 * driver's binary:
 *   bytes 0-7    magic "MLCLBIN\0"
 *   bytes 8-11   format version (little endian)
 *   bytes 12-15  zero
 *   bytes 16-23  payload length (little endian)
 *   bytes 24-31  XXH64 of the payload, seed 0 (little endian)
 * so that a truncated or damaged file is noticed before the driver sees it. */
#include"backend/opencl/cl_runtime.h"
#include "base/environment.h"

#include"base/atomic_file.h"
#include "base/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#define CACHE_MAGIC "MLCLBIN"
#define CACHE_VERSION 1u
#define CACHE_HEADER 32
/* A driver binary this large is surely a damaged length field. */
#define CACHE_MAX_PAYLOAD ((uint64_t)1 << 31)

static atomic_uint g_hits, g_misses, g_corrupt, g_stores;

void mlcl_cache_stats_get(mlcl_cache_stats *s) {
    s->hits = atomic_load(&g_hits);
    s->misses = atomic_load(&g_misses);
    s->corrupt = atomic_load(&g_corrupt);
    s->stores = atomic_load(&g_stores);
}

void mlcl_cache_stats_reset(void) {
    atomic_store(&g_hits, 0);
    atomic_store(&g_misses, 0);
    atomic_store(&g_corrupt, 0);
    atomic_store(&g_stores, 0);
}

void mlcl_cache_count_hit(void) { atomic_fetch_add(&g_hits, 1); }
void mlcl_cache_count_miss(void) { atomic_fetch_add(&g_misses, 1); }

void mlcl_cache_count_rejected(const char *path, const char *why) {
    atomic_fetch_add(&g_corrupt, 1);
    ML_WARN("kernel_cache", "cache entry %s rejected (%s); building from source", path, why);
}

const char *mlcl_cache_dir(char *buf, size_t len) { return ml_env_cache_dir(buf, len); }

static int mkdir_parents(const char *path) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return -1;
    struct stat st;
    if (stat(tmp, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static void hash_str(XXH3_state_t *st, const char *s) {
    /* The terminating NUL keeps ("ab","c") and ("a","bc") apart. */
    s = s ? s : "";
    XXH3_128bits_update(st, s, strlen(s) + 1);
}

int mlcl_cache_entry_path(const mlcl_device_info *dev, const char *source, const char *options,
                          char *path, size_t len) {
    char dir[4096];
    if (!mlcl_cache_dir(dir, sizeof dir)) {
        ML_WARN("kernel_cache", "no cache directory (neither XDG_CACHE_HOME nor HOME set); "
                                "kernel cache off");
        return -1;
    }
    if (mkdir_parents(dir) != 0) {
        ML_WARN("kernel_cache", "cannot create cache directory %s: %s; kernel cache off", dir,
                strerror(errno));
        return -1;
    }
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return -1;
    XXH3_128bits_reset(st);
    hash_str(st, source);
    hash_str(st, options);
    hash_str(st, dev->name);
    hash_str(st, dev->driver_version);
    hash_str(st, dev->platform_version);
    XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    int n = snprintf(path, len, "%s/%016llx%016llx.bin", dir, (unsigned long long)h.high64,
                     (unsigned long long)h.low64);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

static void put_le(unsigned char *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int mlcl_cache_read(const char *path, unsigned char **payload, size_t *len) {
    *payload = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        char why[256];
        snprintf(why, sizeof why, "cannot open: %s", strerror(errno));
        mlcl_cache_count_rejected(path, why);
        return -1;
    }
    const char *why = NULL;
    unsigned char hdr[CACHE_HEADER];
    unsigned char *data = NULL;
    uint64_t n = 0;
    if (fread(hdr, 1, sizeof hdr, f) != sizeof hdr) {
        why = "shorter than its header";
    } else if (memcmp(hdr, CACHE_MAGIC, 8) != 0) {
        why = "bad magic";
    } else if (get_le(hdr + 8, 4) != CACHE_VERSION) {
        why = "unknown format version";
    } else if ((n = get_le(hdr + 16, 8)) == 0 || n > CACHE_MAX_PAYLOAD) {
        why = "implausible payload length";
    } else if (!(data = malloc((size_t)n))) {
        why = "out of memory";
    } else if (fread(data, 1, (size_t)n, f) != (size_t)n) {
        why = "truncated payload";
    } else if (fgetc(f) != EOF) {
        why = "trailing bytes after the payload";
    } else if (XXH64(data, (size_t)n, 0) != get_le(hdr + 24, 8)) {
        why = "checksum mismatch";
    }
    fclose(f);
    if (why) {
        free(data);
        mlcl_cache_count_rejected(path, why);
        return -1;
    }
    *payload = data;
    *len = (size_t)n;
    return 1;
}

void mlcl_cache_write(const char *path, const unsigned char *payload, size_t len) {
    unsigned char hdr[CACHE_HEADER] = {0};
    memcpy(hdr, CACHE_MAGIC, 8);
    put_le(hdr + 8, CACHE_VERSION, 4);
    put_le(hdr + 16, len, 8);
    put_le(hdr + 24, XXH64(payload, len, 0), 8);

    char err[512];
    atomic_file af;
    if (atomic_open(&af, path, err, sizeof err) != 0) {
        ML_WARN("kernel_cache", "cannot store %s: %s", path, err);
        return;
    }
    if (fwrite(hdr, 1, sizeof hdr, af.fp) != sizeof hdr ||
        fwrite(payload, 1, len, af.fp) != len) {
        ML_WARN("kernel_cache", "cannot store %s: write failed: %s", path, strerror(errno));
        atomic_abort(&af);
        return;
    }
    if (atomic_commit(&af, err, sizeof err) != 0) {
        ML_WARN("kernel_cache", "cannot store %s: %s", path, err);
        return;
    }
    atomic_fetch_add(&g_stores, 1);
    ML_DEBUG("kernel_cache", "stored %s (%zu bytes)", path, len);
}
