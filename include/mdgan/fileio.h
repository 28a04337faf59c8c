#ifndef MDGAN_FILEIO_H
#define MDGAN_FILEIO_H
// Whole-file reads, durable atomic writes and sha256 digests.
//
// Every function returns 0 on success and -1 with a message (naming the path and
// strerror) through mdgan/error.h on failure.

#include <stddef.h>
#include <sys/types.h>

// Reads the whole file into a fresh buffer (caller frees). The buffer holds one
// extra byte set to 0 past *len, so a text file can be used as a C string.
int fio_read_all(const char *path, unsigned char **buf, size_t *len);

// Writes the concatenation of bufs[0..nbufs) (lens[i] bytes each) to path so that
// after a crash path holds either the old content or the complete new one:
// write "<path>.tmp.<pid>" in the same folder, fsync it, rename it over path, fsync
// the folder. On failure before the rename the temporary is removed and an existing
// path is untouched; if only the final folder fsync fails the new content is in
// place but may not survive a power loss (still reported as -1).
// Not for two threads of one process writing the same path at once.
int fio_write_atomic(const char *path, const void *const *bufs, const size_t *lens, int nbufs);
// The same temporary name and rename, without the two fsyncs: a reader never sees half
// a file, but a power loss may lose it. For outputs that can be made again (frames,
// contact sheets, GIFs): two fsyncs per frame were half of a whole `mdgan predict`.
int fio_write_replace(const char *path, const void *const *bufs, const size_t *lens, int nbufs);

// SHA-256 as 64 lowercase hex digits plus NUL.
void fio_sha256_hex(const void *buf, size_t n, char hex[65]);
int fio_sha256_file(const char *path, char hex[65]);   // streams the file

// mkdir -p: creates path and its missing parents; an existing folder is fine.
int fio_mkdir_p(const char *path, mode_t mode);

// 1 when path resolves (symlinks followed) to dir or to a place below it, else 0. The
// last components of path may not exist (yet): they are taken as written, and then may
// not be "." or "..". For paths taken from outside input (a message, a checkpoint's
// metadata, the database) before anything is opened there.
int fio_path_within(const char *path, const char *dir);

// "<path>.sha256" in sha256sum format ("<hex>  <basename>\n", so `sha256sum -c`
// accepts it), written atomically. hex (may be NULL) receives the digest written.
int fio_write_sha256_sidecar(const char *path, char hex[65]);
// 0 when path's digest matches its sidecar; -1 when the sidecar is missing,
// malformed, names another file, or the digest differs.
int fio_verify_sha256_sidecar(const char *path);
// The same, handing back the digest that verified (lowercase).
int fio_verify_sha256_sidecar_hex(const char *path, char hex[65]);

#endif
