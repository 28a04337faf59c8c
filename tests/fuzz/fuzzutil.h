#ifndef MDGAN_FUZZUTIL_H
#define MDGAN_FUZZUTIL_H
// Shared by the libFuzzer targets in tests/fuzz/ (see README.md there): the invariant
// check, a reader over the input bytes, a private temporary folder for the targets
// that go through files, and the seed writer of the generator builds
// (-DFUZZ_GENERATOR, `make fuzz-corpus`).
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mdgan/error.h"

// A broken invariant aborts, which libFuzzer reports as a crash with the input.
#define CHECK(x)                                                                          \
    do {                                                                                  \
        if (!(x)) {                                                                       \
            fprintf(stderr, "%s:%d: invariant failed: %s (last message: %s)\n", __FILE__, \
                    __LINE__, #x, mdgan_errmsg());                                        \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

// A library call that returned -1 left a message; one that returned 0 is checked by
// the caller.
#define CHECK_FAILED_WITH_MESSAGE() CHECK(mdgan_errmsg()[0] != '\0')

// ---- the input as a stream: past its end every byte reads as 0
typedef struct {
    const uint8_t *p;
    size_t n;
} FuzzIn;

static inline unsigned fuzz_u8(FuzzIn *in) {
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}

// Up to want bytes (fewer at the end); *len gets the count.
static inline const uint8_t *fuzz_bytes(FuzzIn *in, size_t want, size_t *len) {
    const uint8_t *p = in->p;
    *len = want < in->n ? want : in->n;
    in->p += *len;
    in->n -= *len;
    return p;
}

// ---- files

// This process's own folder under $TMPDIR (or /tmp), made at the first call and
// removed at exit. A crash leaves it behind: mdgan-fuzz-* in /tmp.
static char fuzz_tmp[4096];

static inline int fuzz_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)ftw;
    if (flag == FTW_DP || flag == FTW_D) return rmdir(path) != 0 && errno != ENOENT;
    return unlink(path) != 0 && errno != ENOENT;
}

// rm -rf path without following symbolic links; 0 when path is gone.
static inline int fuzz_rmtree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (nftw(path, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) return -1;
    return lstat(path, &st) == 0 ? -1 : 0;
}

static inline void fuzz_tmp_remove(void) {
    if (fuzz_tmp[0]) fuzz_rmtree(fuzz_tmp);
}

static inline const char *fuzz_tmpdir(void) {
    if (!fuzz_tmp[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fuzz_tmp, sizeof fuzz_tmp, "%s/mdgan-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fuzz_tmp)) {
            fprintf(stderr, "fuzz: cannot create a folder %s: %s\n", fuzz_tmp, strerror(errno));
            abort();
        }
        atexit(fuzz_tmp_remove);
    }
    return fuzz_tmp;
}

// out = fuzz_tmpdir()/name
static inline void fuzz_tmp_path(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", fuzz_tmpdir(), name);
}

static inline int fuzz_write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = (n == 0 || fwrite(p, 1, n, f) == n);
    return fclose(f) == 0 && ok ? 0 : -1;
}

// The input as the file fuzz_tmpdir()/name, whose path goes to out: for the parsers
// that read files.
static inline void fuzz_input_file(char *out, size_t n, const char *name, const uint8_t *data, size_t size) {
    fuzz_tmp_path(out, n, name);
    CHECK(fuzz_write_file(out, data, size) == 0);
}

// Whole file (caller frees); NULL when it cannot be read.
static inline unsigned char *fuzz_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *p = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap) {
            unsigned char *q = realloc(p, cap = cap ? 2 * cap : 4096);
            if (!q) break;
            p = q;
        }
        size_t r = fread(p + *n, 1, cap - *n, f);
        *n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad || !p) {
        free(p);
        return NULL;
    }
    return p;
}

// ---- the generator builds: `fuzz_NAME_gen DIR` writes the seed corpus into DIR

#ifdef FUZZ_GENERATOR
static const char *seed_dir;
static int seeds_written;

// A seed named ok_* must be accepted by the target's parser and a bad_* one refused
// (so each bad seed is the kind it says, not an accident of the generator); accepted
// is what the caller's parser said. Exits on a mismatch or a write error.
static inline void seed_write(const char *name, const void *p, size_t n, int accepted) {
    if (accepted != (strncmp(name, "ok_", 3) == 0)) {
        fprintf(stderr, "fuzz gen: seed %s is %s: %s\n", name, accepted ? "accepted" : "refused", mdgan_errmsg());
        exit(1);
    }
    printf("  %-34s %s\n", name, accepted ? "accepted" : mdgan_errmsg());
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", seed_dir, name);
    if (fuzz_write_file(path, p, n) != 0) {
        fprintf(stderr, "fuzz gen: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    seeds_written++;
}

// The file at path as a seed; accepts says whether the target's parser takes it.
static inline void seed_write_file(const char *name, const char *path, int (*accepts)(const char *path)) {
    size_t n;
    unsigned char *b = fuzz_read_file(path, &n);
    if (!b) {
        fprintf(stderr, "fuzz gen: cannot read %s\n", path);
        exit(1);
    }
    mdgan_errclear();
    seed_write(name, b, n, accepts(path));
    free(b);
}

// A writer of the library failed: the generator stops with its message.
static inline void must(int ok) {
    if (!ok) {
        fprintf(stderr, "fuzz gen: %s\n", mdgan_errmsg()[0] ? mdgan_errmsg() : "failed");
        exit(1);
    }
}

// main's start: the usage, then the folder.
static inline void seed_begin(int argc, char **argv, const char *prog) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR   (writes the seed corpus into DIR)\n", prog);
        exit(2);
    }
    seed_dir = argv[1];
    if (mkdir(seed_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "%s: cannot create %s: %s\n", prog, seed_dir, strerror(errno));
        exit(1);
    }
}

static inline int seed_end(const char *prog) {
    printf("%s: wrote %d seeds into %s\n", prog, seeds_written, seed_dir);
    return 0;
}
#endif

#endif
