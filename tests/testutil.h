#ifndef MDGAN_TESTUTIL_H
#define MDGAN_TESTUTIL_H
// Shared helpers for the cmocka test programs: fixture loading, tolerance
// comparisons that print their figure, and running the real executables.

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "mdgan/error.h"
#include "mdgan/safetensors.h"

// Folder of the committed fixtures: $MDGAN_FIXTURES, else tests/fixtures.
static inline const char *fixtures_dir(void) {
    const char *d = getenv("MDGAN_FIXTURES");
    return d && *d ? d : "tests/fixtures";
}

// Folder of the executables under test: $MDGAN_BINDIR, else bin.
static inline const char *bin_dir(void) {
    const char *d = getenv("MDGAN_BINDIR");
    return d && *d ? d : "bin";
}

// Writes n bytes to path (created or truncated), or fails the test naming the file.
static inline void write_bytes_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    if ((n && fwrite(data, 1, n, f) != n) | (fclose(f) != 0)) fail_msg("cannot write %s", path);
}
static inline void write_text_file(const char *path, const char *text) {
    write_bytes_file(path, text, strlen(text));
}

static inline void fixture_path(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", fixtures_dir(), name);
}

// Opens a fixture or fails the test with the library's message.
static inline void fixture_open(StFile *f, const char *name) {
    char path[4096];
    fixture_path(path, sizeof path, name);
    if (st_open(f, path) != 0) fail_msg("cannot open fixture: %s", mdgan_errmsg());
}

// Copy of an F32 tensor of a fixture (caller frees); fails the test when absent
// or when its element count differs from expect_numel (0 = any).
static inline float *fixture_f32(const StFile *f, const char *name, size_t expect_numel) {
    const StTensor *t = st_get(f, name);
    if (!t) fail_msg("fixture %s has no tensor %s", f->path, name);
    if (t->dtype != ST_F32) fail_msg("fixture %s: tensor %s is not F32", f->path, name);
    size_t n = st_numel(t);
    if (expect_numel && n != expect_numel)
        fail_msg("fixture %s: tensor %s has %zu elements, expected %zu", f->path, name, n, expect_numel);
    float *p = malloc(n ? n * sizeof(float) : 1);
    assert_non_null(p);
    memcpy(p, t->data, n * sizeof(float));
    return p;
}

// Relative error normalised by the reference's largest magnitude:
// max_i |got_i - ref_i| / max(max_i |ref_i|, 1e-12). Element-wise relative error
// is meaningless for entries near zero (a gradient is full of them).
static inline double max_rel_err(const float *got, const float *ref, size_t n) {
    double maxdiff = 0, maxref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (!(d <= maxdiff)) maxdiff = d; // NaN propagates as the max
        if (fabs((double)ref[i]) > maxref) maxref = fabs((double)ref[i]);
    }
    return maxdiff / (maxref > 1e-12 ? maxref : 1e-12);
}

static inline double max_abs_err(const float *got, const float *ref, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

// Prints the figure and fails when it exceeds tol (or is NaN).
static inline void expect_close(const char *what, const float *got, const float *ref, size_t n,
                                double tol) {
    double e = max_rel_err(got, ref, n);
    printf("    %-40s max rel err %.3e (tol %.0e)\n", what, e, tol);
    if (!(e <= tol)) fail_msg("%s: max relative error %.3e exceeds %.0e", what, e, tol);
}

// Runs a shell command, captures stdout+stderr (truncated to outsz) and returns
// the exit status (or -1 when it died by a signal, printing which).
static inline int run_cmd(char *out, size_t outsz, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[8300];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) fail_msg("popen failed: %s", cmd);
    size_t len = 0;
    if (out && outsz) out[0] = '\0';
    char buf[4096];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, p)) > 0) {
        if (out && len + 1 < outsz) {
            size_t k = r < outsz - 1 - len ? r : outsz - 1 - len;
            memcpy(out + len, buf, k);
            len += k;
            out[len] = '\0';
        }
    }
    int st = pclose(p);
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) printf("    command died by signal %d: %s\n", WTERMSIG(st), cmd);
    return -1;
}

// A fresh temporary folder (caller owns; remove with rm_rf).
static inline void make_tmpdir(char *out, size_t n) {
    snprintf(out, n, "%s/mdgan-test-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(out)) fail_msg("mkdtemp failed");
}

static inline void rm_rf(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) print_message("could not remove %s\n", dir);
}

// Counts the lines of s (a message that must be "one clear line" has one).
static inline int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

#endif
