/* Atomic file output: data goes to a temporary file in the same directory,
 * is flushed and fsynced, then renamed over the final name, so a reader
 * never sees a half-written file under that name. */
#ifndef MOELAT_ATOMIC_FILE_H
#define MOELAT_ATOMIC_FILE_H

#include <stdio.h>
#include <stddef.h>

typedef struct atomic_file {
    FILE *fp;
    char final_path[4096];
    char tmp_path[4096];
} atomic_file;

/* Saves replace only regular files: a target that exists and is anything
 * else (device, FIFO, socket, directory) is refused with its type named, a
 * read-only one is refused, and a symbolic link is followed so that its
 * target is replaced (atomically, in the target's directory) and the link
 * kept. The replacement keeps the replaced file's permissions. */
int atomic_open(atomic_file *af, const char *path, char *err, size_t errlen);
/* The checks of atomic_open without writing anything: 0 when a save to
 * path would be allowed (its directory exists and is writable). */
int atomic_check_target(const char *path, char *err, size_t errlen);

/* fflush + fsync + rename; on any failure removes the temporary file. */
int atomic_commit(atomic_file *af, char *err, size_t errlen);
/* Drops the temporary file. */
void atomic_abort(atomic_file *af);
/* Ends a write: atomic_commit, or when write_failed (errno says why)
 * atomic_abort with "<path>: cannot write temporary file ..." in err and
 * -1. */
int atomic_finish(atomic_file *af, int write_failed, const char *path, char *err, size_t errlen);
/* Writes a whole buffer atomically. */
int atomic_write_file(const char *path, const void *data, size_t len, char *err, size_t errlen);

#endif
