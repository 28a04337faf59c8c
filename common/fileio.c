#include "mdgan/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mdgan/error.h"
#include "mdgan/sha256.h"

int fio_read_all(const char *path, unsigned char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        MDGAN_ERR("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        MDGAN_ERR("cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        MDGAN_ERR("cannot read %s: %s", path, strerror(EISDIR));
        close(fd);
        return -1;
    }
    // Room for the whole regular file plus slack, so the read that sees EOF does not
    // force a reallocation; files of unknown size (pipes, /proc) grow by doubling.
    size_t cap = (size_t)st.st_size + 4096, n = 0;
    unsigned char *p = malloc(cap);
    if (!p) goto oom;
    for (;;) {
        if (n + 1 == cap) {
            unsigned char *q = realloc(p, cap * 2);
            if (!q) goto oom;
            p = q;
            cap *= 2;
        }
        ssize_t r = read(fd, p + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            MDGAN_ERR("cannot read %s: %s", path, strerror(errno));
            free(p);
            close(fd);
            return -1;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);   // read-only: nothing to lose
    p[n] = 0;
    *buf = p;
    *len = n;
    return 0;
oom:
    MDGAN_ERR("cannot read %s: out of memory for %lld bytes", path, (long long)st.st_size);
    free(p);
    close(fd);
    return -1;
}

// writev until every byte is out; retries on EINTR and short writes. Consumes iov.
static int writev_all(int fd, struct iovec *iov, int n) {
    for (;;) {
        while (n > 0 && iov->iov_len == 0) iov++, n--;
        if (n == 0) return 0;
        ssize_t r = writev(fd, iov, n < IOV_MAX ? n : IOV_MAX);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) {   // cannot happen for a regular file; never spin
            errno = EIO;
            return -1;
        }
        size_t k = (size_t)r;
        while (k > 0 && k >= iov->iov_len) k -= iov->iov_len, iov++, n--;
        if (k > 0) {
            iov->iov_base = (char *)iov->iov_base + k;
            iov->iov_len -= k;
        }
    }
}

// Folder holding path ("." for a bare name), in a fresh string.
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static const char *base_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static int write_replace(const char *path, const void *const *bufs, const size_t *lens, int nbufs, int durable);

int fio_write_atomic(const char *path, const void *const *bufs, const size_t *lens, int nbufs) {
    return write_replace(path, bufs, lens, nbufs, 1);
}

int fio_write_replace(const char *path, const void *const *bufs, const size_t *lens, int nbufs) {
    return write_replace(path, bufs, lens, nbufs, 0);
}

static int write_replace(const char *path, const void *const *bufs, const size_t *lens, int nbufs, int durable) {
    char *tmp = NULL, *dir = NULL;
    struct iovec *iov = NULL;
    int fd = -1, rc = -1;
    if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0) {
        tmp = NULL;
        MDGAN_ERR("cannot write %s: out of memory", path);
        goto out;
    }
    iov = malloc((size_t)(nbufs > 0 ? nbufs : 1) * sizeof *iov);
    if (!iov) {
        MDGAN_ERR("cannot write %s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < nbufs; i++) iov[i] = (struct iovec){(void *)bufs[i], lens[i]};

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        MDGAN_ERR("cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (writev_all(fd, iov, nbufs) != 0) {
        MDGAN_ERR("cannot write %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (durable && fsync(fd) != 0) {
        MDGAN_ERR("cannot fsync %s: %s", tmp, strerror(errno));
        goto fail;
    }
    int cr = close(fd);
    fd = -1;
    if (cr != 0) {
        MDGAN_ERR("cannot close %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        MDGAN_ERR("cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    if (!durable) {
        rc = 0;
        goto out;
    }
    // The rename is only durable once the folder entry is on disk.
    dir = dir_of(path);
    int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd < 0 || fsync(dfd) != 0) {
        MDGAN_ERR("wrote %s but cannot fsync its folder %s: %s", path, dir ? dir : "?",
                  dir ? strerror(errno) : "out of memory");
        if (dfd >= 0) close(dfd);
        goto out;
    }
    close(dfd);
    rc = 0;
    goto out;
fail:
    if (fd >= 0) close(fd);
    fd = -1;
    unlink(tmp);
out:
    free(iov);
    free(tmp);
    free(dir);
    return rc;
}

void fio_sha256_hex(const void *buf, size_t n, char hex[65]) {
    unsigned char d[32];
    sha256(d, buf, n);
    sha256_hex(hex, d);
}

int fio_sha256_file(const char *path, char hex[65]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        MDGAN_ERR("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    Sha256 st;
    sha256_init(&st);
    unsigned char chunk[1 << 16];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0) {
            if (errno == EINTR) continue;
            MDGAN_ERR("cannot read %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (r == 0) break;
        sha256_update(&st, chunk, (size_t)r);
    }
    close(fd);
    unsigned char d[32];
    sha256_final(&st, d);
    sha256_hex(hex, d);
    return 0;
}

int fio_mkdir_p(const char *path, mode_t mode) {
    if (!*path) {
        MDGAN_ERR("cannot create a folder with an empty name");
        return -1;
    }
    char *p = strdup(path);
    if (!p) {
        MDGAN_ERR("cannot create folder %s: out of memory", path);
        return -1;
    }
    // Create each prefix ending before a '/', then the whole path.
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            MDGAN_ERR("cannot create folder %s: %s", p, strerror(errno));
            free(p);
            return -1;
        }
        *s = c;
        if (c == '\0') break;
    }
    free(p);
    // EEXIST above may have been a file: insist on a folder at the end.
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        MDGAN_ERR("cannot create folder %s: %s", path, strerror(ENOTDIR));
        return -1;
    }
    return 0;
}

int fio_path_within(const char *path, const char *dir) {
    char rd[PATH_MAX], head[PATH_MAX], real[PATH_MAX], tail[PATH_MAX] = "", t[PATH_MAX];
    if (!realpath(dir, rd) || snprintf(head, sizeof head, "%s", path) >= (int)sizeof head) return 0;
    // the longest part of path that exists, resolved; what follows it as written
    while (!realpath(head[0] ? head : ".", real)) {
        char *slash = strrchr(head, '/');
        const char *last = slash ? slash + 1 : head;
        if (errno != ENOENT || !strcmp(last, ".") || !strcmp(last, "..") || !head[0]) return 0;
        if (*last) {
            if (snprintf(t, sizeof t, "/%s%s", last, tail) >= (int)sizeof t) return 0;
            memcpy(tail, t, strlen(t) + 1);
        }
        if (slash == head) head[1] = 0;
        else if (slash) *slash = 0;
        else head[0] = 0;
    }
    if (snprintf(t, sizeof t, "%s%s", strcmp(real, "/") ? real : "", tail) >= (int)sizeof t) return 0;
    const size_t n = strlen(rd);
    return strncmp(t, rd, n) == 0 && (t[n] == 0 || t[n] == '/' || !strcmp(rd, "/"));
}

int fio_write_sha256_sidecar(const char *path, char hex_out[65]) {
    char hex[65], *side = NULL, *line = NULL;
    if (fio_sha256_file(path, hex) != 0) return -1;
    if (hex_out) memcpy(hex_out, hex, sizeof hex);
    if (asprintf(&side, "%s.sha256", path) < 0) side = NULL;
    if (asprintf(&line, "%s  %s\n", hex, base_of(path)) < 0) line = NULL;
    int rc = -1;
    if (!side || !line) {
        MDGAN_ERR("cannot write the checksum of %s: out of memory", path);
    } else {
        const void *b[1] = {line};
        size_t l[1] = {strlen(line)};
        rc = fio_write_atomic(side, b, l, 1);
    }
    free(side);
    free(line);
    return rc;
}

int fio_verify_sha256_sidecar(const char *path) {
    char hex[65];
    return fio_verify_sha256_sidecar_hex(path, hex);
}

int fio_verify_sha256_sidecar_hex(const char *path, char hex[65]) {
    char *side = NULL;
    unsigned char *txt = NULL;
    size_t n;
    int rc = -1;
    if (asprintf(&side, "%s.sha256", path) < 0) {
        MDGAN_ERR("cannot verify %s: out of memory", path);
        return -1;
    }
    if (fio_read_all(side, &txt, &n) != 0) {
        mdgan_errctx("no checksum for %s", path);
        goto out;
    }
    // "<64 hex>  <name>\n" (" *" instead of two spaces is sha256sum's binary mode).
    const char *s = (const char *)txt, *base = base_of(path);
    size_t h = strspn(s, "0123456789abcdefABCDEF"), bl = strlen(base);
    if (h != 64 || s[64] != ' ' || (s[65] != ' ' && s[65] != '*')) {
        MDGAN_ERR("%s: not a sha256sum line (\"<64 hex digits>  <file name>\")", side);
        goto out;
    }
    const char *name = s + 66;
    size_t nl = strcspn(name, "\n");
    if (nl != bl || memcmp(name, base, bl) != 0) {
        MDGAN_ERR("%s: checksum is for '%.*s', not for '%s'", side, (int)nl, name, base);
        goto out;
    }
    if (fio_sha256_file(path, hex) != 0) goto out;
    if (strncasecmp(hex, s, 64) != 0) {
        MDGAN_ERR("%s: sha256 mismatch (file has %s, %s says %.64s): the file is corrupt "
                  "or was changed", path, hex, side, s);
        goto out;
    }
    rc = 0;
out:
    free(txt);
    free(side);
    return rc;
}
