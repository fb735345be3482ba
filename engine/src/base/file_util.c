#include"base/file_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

void ml_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int ml_host_is_big_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 0;
}

void ml_swap32(void *p, size_t count) {
    unsigned char *b = p;
    for (size_t i = 0; i < count; i++, b += 4) {
        unsigned char t0 = b[0], t1 = b[1];
        b[0] = b[3];
        b[1] = b[2];
        b[2] = t1;
        b[3] = t0;
    }
}

const char *ml_file_type_name(unsigned mode) {
    return S_ISDIR(mode)    ? "a directory"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
           : S_ISFIFO(mode) ? "a FIFO"
           : S_ISSOCK(mode) ? "a socket"
           : S_ISLNK(mode)  ? "a symbolic link"
           : S_ISREG(mode)  ? "a regular file"
                            : "a special file";
}

/* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
 * forever, before the type could be checked. A regular file ignores the
 * flag; it is cleared anyway so that reads behave as usual. */
FILE *ml_open_regular(const char *path, size_t *size, char *err, size_t errlen) {
    if (!path || !*path) {
        ml_errf(err, errlen, "empty file name");
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        ml_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        ml_errf(err, errlen, "%s: cannot inspect: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        ml_errf(err, errlen, "%s: is %s, not a regular file", path, ml_file_type_name(st.st_mode));
        close(fd);
        return NULL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        ml_errf(err, errlen, "%s: cannot clear O_NONBLOCK: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        ml_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    *size = (size_t)st.st_size;
    return fp;
}

char *ml_read_regular(const char *path, size_t *len, char *err, size_t errlen) {
    size_t size;
    FILE *fp = ml_open_regular(path, &size, err, errlen);
    if (!fp)
        return NULL;
    char *buf = malloc(size + 1);
    if (!buf) {
        ml_errf(err, errlen, "%s: out of memory reading %zu bytes", path, size);
        fclose(fp);
        return NULL;
    }
    size_t got = fread(buf, 1, size, fp);
    int bad = ferror(fp) || got != size;
    fclose(fp);
    if (bad) {
        ml_errf(err, errlen, "%s: read error (expected %zu bytes, got %zu)", path, size, got);
        free(buf);
        return NULL;
    }
    buf[size] = '\0';
    *len = size;
    return buf;
}
