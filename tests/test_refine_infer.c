// bin/mdgan-refine infer, run as a real process on a folder of PNG and JPEG clips
// (tests/fixtures/refine_input, written by tests/make_fixtures.py), against PyTorch's
// refined clips quantised to 8 bits as the PNG writer does (refine_expected): every
// output frame within one level; the contact sheet; clips skipped with a warning; and
// every bad input getting one clear line and exit code 2.
#include "testutil.h"

#include <dirent.h>

#include "mdgan/image.h"

#define T_ 8
#define S_ 32
#define TIMEOUT "timeout 300 " // no run may hang the suite

static char tmp[512];
static char out[65536];

static int setup(void **state) {
    (void)state;
    make_tmpdir(tmp, sizeof tmp);
    return 0;
}
static int teardown(void **state) {
    (void)state;
    rm_rf(tmp);
    return 0;
}

// Runs `mdgan-refine ARGS`, output in `out`.
static int refine(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int refine(const char *fmt, ...) {
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return run_cmd(out, sizeof out, TIMEOUT "%s/mdgan-refine %s", bin_dir(), args);
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) fail_msg("command failed: %s", cmd);
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

// ---------------------------------------------------------------- the expected clips

typedef struct {
    int n;
    char key[16][64];            // "<video>/<clip>/<window>"
    char names[16][T_][32];      // output file names of each window's frames
} Windows;

static void read_windows(const StFile *f, Windows *w) {
    const char *list = st_meta_get(f, "windows");
    if (!list) fail_msg("%s: no metadata 'windows'", f->path);
    memset(w, 0, sizeof *w);
    for (const char *p = list; *p && w->n < 16; w->n++) {
        size_t len = strcspn(p, ",");
        snprintf(w->key[w->n], sizeof w->key[0], "%.*s", (int)len, p);
        char mk[96];
        snprintf(mk, sizeof mk, "%s/names", w->key[w->n]);
        const char *names = st_meta_get(f, mk);
        if (!names) fail_msg("%s: no metadata '%s'", f->path, mk);
        for (int t = 0; t < T_; t++) {
            size_t nl = strcspn(names, ",");
            snprintf(w->names[w->n][t], sizeof w->names[0][0], "%.*s", (int)nl, names);
            names += nl + (names[nl] == ',');
        }
        p += len + (p[len] == ',');
    }
    assert_int_equal(w->n, 5);
}

// The fixture's u8 frames (T, H, W, 3) of `key` + suffix.
static const unsigned char *expected_u8(const StFile *f, const char *key, const char *suffix) {
    char name[128];
    snprintf(name, sizeof name, "%s/%s", key, suffix);
    const StTensor *t = st_get(f, name);
    if (!t || t->dtype != ST_U8 || st_numel(t) != (size_t)T_ * S_ * S_ * 3) fail_msg("fixture has no u8 clip %s", name);
    return t->data;
}

// Differences of one image against a reference, in 8-bit levels.
typedef struct {
    int max;
    size_t differ, total;
} LevelDiff;

static void diff_levels(LevelDiff *d, const unsigned char *got, const unsigned char *ref, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int e = abs((int)got[i] - (int)ref[i]);
        if (e > d->max) d->max = e;
        d->differ += e != 0;
    }
    d->total += n;
}

// Every refined frame under dir against PyTorch's (`which`: y_running or y_batch),
// within one level; every output clip folder holds exactly its windows' frames.
static void outputs_match(const char *dir, const char *which) {
    char path[4096];
    fixture_path(path, sizeof path, "refine_expected.safetensors");
    StFile f;
    if (st_open(&f, path) != 0) fail_msg("%s", mdgan_errmsg());
    Windows w;
    read_windows(&f, &w);
    LevelDiff d = {0};
    for (int k = 0; k < w.n; k++) {
        const unsigned char *ref = expected_u8(&f, w.key[k], which);
        char folder[4096];
        snprintf(folder, sizeof folder, "%s/%.*s", dir, (int)(strrchr(w.key[k], '/') - w.key[k]), w.key[k]);
        for (int t = 0; t < T_; t++) {
            char png[8192];
            snprintf(png, sizeof png, "%s/%s", folder, w.names[k][t]);
            Image img = {0};
            if (image_load(&img, png) != 0) fail_msg("output frame missing or unreadable: %s", mdgan_errmsg());
            if (img.w != S_ || img.h != S_) fail_msg("%s is %dx%d, expected %dx%d", png, img.w, img.h, S_, S_);
            diff_levels(&d, img.rgb, ref + (size_t)t * S_ * S_ * 3, (size_t)S_ * S_ * 3);
            image_free(&img);
        }
    }
    printf("    %-10s %zu samples of %d windows: max difference %d level%s, %.3f%% differ (tol 1 level)\n", which,
           d.total, w.n, d.max, d.max == 1 ? "" : "s", 100.0 * d.differ / d.total);
    if (d.max > 1) fail_msg("refined frames differ from PyTorch's by %d levels", d.max);
    // exactly the used frames: 2 trailing frames of vid_a/clip_2 and vid_b/clip_jpg are not
    // refined, vid_b/clip_1 has two windows
    static const struct { const char *clip; int files; } folders[] = {
        {"vid_a/clip_1", 8}, {"vid_a/clip_2", 8}, {"vid_b/clip_1", 16}, {"vid_b/clip_jpg", 8}};
    for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++) {
        char folder[4096];
        snprintf(folder, sizeof folder, "%s/%s", dir, folders[i].clip);
        if (count_files(folder) != folders[i].files)
            fail_msg("%s holds %d files, expected %d", folder, count_files(folder), folders[i].files);
    }
    st_close(&f);
}

// The contact sheet: the first 4 windows, each input row above its refined row, 32-pixel
// frames enlarged 4 times (nearest neighbour), 2-pixel gaps.
static void sheet_matches(const char *dir, const char *which) {
    char path[4096];
    fixture_path(path, sizeof path, "refine_expected.safetensors");
    StFile f;
    if (st_open(&f, path) != 0) fail_msg("%s", mdgan_errmsg());
    Windows w;
    read_windows(&f, &w);
    const int zoom = 4, Z = S_ * zoom, gap = 2, rows = 8;
    char png[4200];
    snprintf(png, sizeof png, "%s/contact_sheet.png", dir);
    Image sheet = {0};
    if (image_load(&sheet, png) != 0) fail_msg("%s", mdgan_errmsg());
    if (sheet.w != T_ * Z + (T_ - 1) * gap || sheet.h != rows * Z + (rows - 1) * gap)
        fail_msg("contact sheet is %dx%d, expected %dx%d", sheet.w, sheet.h, T_ * Z + (T_ - 1) * gap,
                 rows * Z + (rows - 1) * gap);
    LevelDiff din = {0}, dout = {0};
    unsigned char *tile = malloc((size_t)S_ * S_ * 3);
    assert_non_null(tile);
    for (int r = 0; r < rows; r++) {
        const unsigned char *ref = expected_u8(&f, w.key[r / 2], r % 2 ? which : "input_u8");
        for (int t = 0; t < T_; t++) {
            // every enlarged pixel of the tile must be its source pixel: compare each of
            // the zoom x zoom copies
            for (int dy = 0; dy < zoom; dy++)
                for (int dx = 0; dx < zoom; dx++) {
                    for (int y = 0; y < S_; y++)
                        for (int x = 0; x < S_; x++)
                            memcpy(tile + ((size_t)y * S_ + x) * 3,
                                   sheet.rgb + ((size_t)(r * (Z + gap) + y * zoom + dy) * sheet.w +
                                                (size_t)t * (Z + gap) + x * zoom + dx) * 3, 3);
                    diff_levels(r % 2 ? &dout : &din, tile, ref + (size_t)t * S_ * S_ * 3, (size_t)S_ * S_ * 3);
                }
        }
    }
    printf("    contact sheet %dx%d: input rows max difference %d, refined rows %d (tol 0 and 1)\n", sheet.w, sheet.h,
           din.max, dout.max);
    if (din.max != 0 || dout.max > 1) fail_msg("contact sheet tiles differ from the clips");
    free(tile);
    image_free(&sheet);
    st_close(&f);
}

// The JPEG clip decodes here as the fixture writer (PIL) decoded it: otherwise the
// comparison of its refined frames would measure the decoders, not G2.
static void test_jpeg_decodes_alike(void **state) {
    (void)state;
    char path[4096];
    fixture_path(path, sizeof path, "refine_expected.safetensors");
    StFile f;
    if (st_open(&f, path) != 0) fail_msg("%s", mdgan_errmsg());
    const unsigned char *ref = expected_u8(&f, "vid_b/clip_jpg/0", "input_u8");
    LevelDiff d = {0};
    for (int t = 0; t < T_; t++) {
        char jpg[4200];
        fixture_path(path, sizeof path, "refine_input/vid_b/clip_jpg");
        snprintf(jpg, sizeof jpg, "%s/%d.jpg", path, t + 1);
        Image img = {0};
        if (image_load(&img, jpg) != 0) fail_msg("%s", mdgan_errmsg());
        assert_int_equal(img.w, S_), assert_int_equal(img.h, S_);
        diff_levels(&d, img.rgb, ref + (size_t)t * S_ * S_ * 3, (size_t)S_ * S_ * 3);
        image_free(&img);
    }
    printf("    JPEG frames vs the fixture writer's decoder: max difference %d\n", d.max);
    if (d.max != 0)
        fail_msg("this libjpeg decodes the JPEG clip differently (by %d levels): regenerate the fixtures", d.max);
    st_close(&f);
}

// ---------------------------------------------------------------- runs

static void test_help(void **state) {
    (void)state;
    assert_int_equal(refine("--help"), 0);
    assert_non_null(strstr(out, "mdgan-refine infer --checkpoint FILE --input DIR --out DIR"));
    assert_non_null(strstr(out, "mdgan-refine train"));
    assert_int_equal(refine("infer --help"), 0);
    assert_non_null(strstr(out, "--bn MODE"));
    assert_int_equal(refine("train --help"), 0);
    assert_non_null(strstr(out, "mdgan-refine train"));
    assert_null(strstr(out, "mdgan-refine infer"));
    assert_int_equal(refine("frobnicate"), 2);
    assert_int_equal(refine("%s", ""), 2); // no command: the usage on stderr
}

// Bare keys; frames from the weights, size from the input; running statistics.
static void test_refine_running(void **state) {
    (void)state;
    char ck[4096], in[4096], o[1024];
    fixture_path(ck, sizeof ck, "refine_g2.safetensors");
    fixture_path(in, sizeof in, "refine_input");
    snprintf(o, sizeof o, "%s/running", tmp);
    int rc = refine("infer --checkpoint %s --input %s --out %s --threads 2", ck, in, o);
    if (rc != 0) fail_msg("infer exited %d: %s", rc, out);
    assert_non_null(strstr(out, "wrote 5 refined clips of 8 frames (32x32)"));
    assert_null(strstr(out, "skipped"));
    outputs_match(o, "y_running");
    sheet_matches(o, "y_running");
}

// G2.* in an mdgan checkpoint (beside D2.*), shape given, batch statistics.
static void test_refine_batch_from_checkpoint(void **state) {
    (void)state;
    char ck[4096], in[4096], o[1024];
    fixture_path(ck, sizeof ck, "refine_g2_ckpt.safetensors");
    fixture_path(in, sizeof in, "refine_input");
    snprintf(o, sizeof o, "%s/batch", tmp);
    int rc = refine("infer --checkpoint %s --input %s --out %s --frames 8 --size 32 --bn batch --threads 1", ck, in, o);
    if (rc != 0) fail_msg("infer exited %d: %s", rc, out);
    outputs_match(o, "y_batch");
    sheet_matches(o, "y_batch");
}

// A clip of `n` frames under dir, copies of the fixture's vid_a/clip_1 frames.
static void copy_frames(const char *dir, int n) {
    char src[4096];
    fixture_path(src, sizeof src, "refine_input/vid_a/clip_1");
    sh("mkdir -p '%s'", dir);
    for (int i = 0; i < n; i++) sh("cp '%s/frame_%05d.png' '%s/'", src, i, dir);
}

static void write_png(const char *path, int w, int h) {
    Image img = {w, h, malloc((size_t)w * h * 3)};
    assert_non_null(img.rgb);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) img.rgb[i] = (unsigned char)(i * 7);
    if (image_save_png(&img, path) != 0) fail_msg("%s", mdgan_errmsg());
    image_free(&img);
}

// Bad clips among good ones: each skipped with a warning naming it, the good ones
// refined as before, nothing written for the bad ones.
static void test_skipped_clips(void **state) {
    (void)state;
    char ck[4096], in[1024], o[1024], d[1200];
    fixture_path(ck, sizeof ck, "refine_g2.safetensors");
    fixture_path(d, sizeof d, "refine_input");
    snprintf(in, sizeof in, "%s/in", tmp);
    snprintf(o, sizeof o, "%s/skip_out", tmp);
    sh("cp -r '%s' '%s'", d, in);
    snprintf(d, sizeof d, "%s/vid_c/short", in); // too few frames
    copy_frames(d, 5);
    snprintf(d, sizeof d, "%s/vid_c/mixed", in); // one frame of another size
    copy_frames(d, 7);
    sh("rm -f '%s/frame_00002.png'", d);
    char p[1400];
    snprintf(p, sizeof p, "%s/frame_00002.png", d);
    write_png(p, 40, 40);
    snprintf(p, sizeof p, "%s/frame_00007.png", d);
    write_png(p, 32, 32);
    snprintf(d, sizeof d, "%s/vid_c/corrupt", in); // a truncated frame
    copy_frames(d, 8);
    sh("head -c 100 '%s/frame_00004.png' > '%s/x' && mv '%s/x' '%s/frame_00003.png'", d, d, d, d);
    snprintf(d, sizeof d, "%s/vid_a/clash", in); // two inputs, one output name
    copy_frames(d, 8);
    char jpg[4096];
    fixture_path(jpg, sizeof jpg, "refine_input/vid_b/clip_jpg/1.jpg");
    sh("cp '%s' '%s/frame_00003.jpg'", jpg, d);

    int rc = refine("infer --checkpoint %s --input %s --out %s", ck, in, o);
    printf("%s", out);
    if (rc != 0) fail_msg("infer exited %d", rc);
    static const char *const warn[] = {
        "skipping clip vid_c/short: ", "has 5 frames, fewer than T=8",
        "skipping clip vid_c/mixed: ", "skipping clip vid_c/corrupt: ", "corrupt/frame_00003.png",
        "mdgan-refine: warning: skipping clip vid_a/clash: frames ",
        "would both be written as frame_00003.png", "skipped 4 clip folders"};
    for (size_t i = 0; i < sizeof warn / sizeof warn[0]; i++)
        if (!strstr(out, warn[i])) fail_msg("output lacks '%s'", warn[i]);
    assert_non_null(strstr(out, "wrote 5 refined clips"));
    outputs_match(o, "y_running");
    static const char *const none[] = {"vid_c", "vid_a/clash"};
    for (size_t i = 0; i < 2; i++) {
        char q[1400];
        struct stat st;
        snprintf(q, sizeof q, "%s/%s", o, none[i]);
        if (stat(q, &st) == 0) fail_msg("%s was written for a skipped clip", q);
    }
}

// Input frames of another size: refused by default, resized with --size.
static void test_other_size_input(void **state) {
    (void)state;
    char ck[4096], in[1024], d[1200], o[1200];
    fixture_path(ck, sizeof ck, "refine_g2.safetensors");
    snprintf(in, sizeof in, "%s/in64", tmp);
    snprintf(d, sizeof d, "%s/v/c", in);
    sh("mkdir -p '%s'", d);
    for (int t = 0; t < 8; t++) {
        char p[1400];
        snprintf(p, sizeof p, "%s/f%d.png", d, t);
        write_png(p, 64, 64);
    }
    snprintf(o, sizeof o, "%s/o64", tmp);
    assert_int_equal(refine("infer --checkpoint %s --input %s --out %s", ck, in, o), 2);
    printf("    %s", out);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "G2 was built for 8 frames of 32x32"));
    assert_non_null(strstr(out, "give --size 32 to resize them"));
    int rc = refine("infer --checkpoint %s --input %s --out %s --size 32", ck, in, o);
    if (rc != 0) fail_msg("infer --size 32 exited %d: %s", rc, out);
    char p[1400];
    snprintf(p, sizeof p, "%s/v/c/f7.png", o);
    Image img = {0};
    if (image_load(&img, p) != 0) fail_msg("%s", mdgan_errmsg());
    assert_int_equal(img.w, 32), assert_int_equal(img.h, 32);
    image_free(&img);
}

// ---------------------------------------------------------------- bad inputs

// Exit code `code`, exactly one line of output, naming `needle`. In args, %1$s is the
// good checkpoint, %2$s the good input, %3$s the temporary folder.
static void expect_bad_code(int code, const char *needle, const char *fmt_args) {
    char ck[4096], in[4096], args[16384];
    fixture_path(ck, sizeof ck, "refine_g2.safetensors");
    fixture_path(in, sizeof in, "refine_input");
    snprintf(args, sizeof args, fmt_args, ck, in, tmp);
    int rc = refine("infer %s", args);
    printf("    exit %d: %s", rc, out);
    assert_int_equal(rc, code);
    assert_int_equal(count_lines(out), 1);
    if (!strstr(out, needle)) fail_msg("message does not name '%s': %s", needle, out);
}
static void expect_bad(const char *needle, const char *fmt_args) { expect_bad_code(2, needle, fmt_args); }

static void test_bad_checkpoint(void **state) {
    (void)state;
    char good[4096], p[1024];
    fixture_path(good, sizeof good, "refine_g2.safetensors");
    expect_bad("nothere.safetensors", "--checkpoint %3$s/nothere.safetensors --input %2$s --out %3$s/o");
    sh("head -c 5000 '%s' > '%s/trunc.safetensors'", good, tmp);
    expect_bad("trunc.safetensors", "--checkpoint %3$s/trunc.safetensors --input %2$s --out %3$s/o");
    char ex[4096], args[8192];
    fixture_path(ex, sizeof ex, "gram_rank.safetensors");
    snprintf(args, sizeof args, "--checkpoint %s --input %%2$s --out %%3$s/o", ex);
    expect_bad("holds no G2 generator", args);
    // weights that cannot be a G2 for any shape: a lone first convolution
    StWriter *w = st_writer_new();
    assert_non_null(w);
    float wt[4 * 3 * 3 * 4 * 4] = {0};
    const int64_t shape[5] = {4, 3, 3, 4, 4};
    assert_int_equal(st_writer_add_f32(w, "downConv1.weight", 5, shape, wt), 0);
    snprintf(p, sizeof p, "%s/lone.safetensors", tmp);
    assert_int_equal(st_writer_save(w, p), 0);
    st_writer_free(w);
    expect_bad("lone.safetensors: cannot tell what clips G2 was built for",
               "--checkpoint %3$s/lone.safetensors --input %2$s --out %3$s/o");
    // shapes the weights were not built for
    expect_bad("refine_g2.safetensors: G2 was built for 8 frames of 32x32 (the kernel of downConv4.weight says so), "
               "not for --frames 16", "--checkpoint %1$s --input %2$s --out %3$s/o --frames 16");
    expect_bad("not for --size 64", "--checkpoint %1$s --input %2$s --out %3$s/o --size 64");
}

static void test_bad_input(void **state) {
    (void)state;
    expect_bad("input /nonexistent/clips is not a folder", "--checkpoint %1$s --input /nonexistent/clips --out %3$s/o");
    expect_bad("dataset root /nonexistent/clips",
               "--checkpoint %1$s --input /nonexistent/clips --out %3$s/o --size 32");
    sh("mkdir -p '%s/empty/v/c'", tmp);
    expect_bad("no frames in input", "--checkpoint %1$s --input %3$s/empty --out %3$s/o");
    expect_bad("is the input folder", "--checkpoint %1$s --input %2$s --out %2$s");
    // only unusable clips: the warning, then the error naming the root (exit 2)
    char d[1200];
    snprintf(d, sizeof d, "%s/onlyshort/v/c", tmp);
    copy_frames(d, 3);
    char ck[4096];
    fixture_path(ck, sizeof ck, "refine_g2.safetensors");
    assert_int_equal(refine("infer --checkpoint %s --input %s/onlyshort --out %s/o", ck, tmp, tmp), 2);
    printf("    exit 2: %s", out);
    assert_non_null(strstr(out, "skipping clip v/c"));
    assert_non_null(strstr(out, "no usable clip in dataset root"));
    // only a clip folder this command skips itself (two frames for one output name)
    snprintf(d, sizeof d, "%s/onlyclash/v/c", tmp);
    copy_frames(d, 8);
    char jpg[4096];
    fixture_path(jpg, sizeof jpg, "refine_input/vid_b/clip_jpg/1.jpg");
    sh("cp '%s' '%s/frame_00005.jpg'", jpg, d);
    assert_int_equal(refine("infer --checkpoint %s --input %s/onlyclash --out %s/o", ck, tmp, tmp), 2);
    printf("    exit 2: %s", out);
    assert_non_null(strstr(out, "would both be written as frame_00005.png"));
    assert_non_null(strstr(out, "onlyclash could be refined: every clip folder was skipped"));
    // an output folder that cannot be made: a runtime failure (exit 1) naming it
    sh("touch '%s/afile'", tmp);
    expect_bad_code(1, "afile", "--checkpoint %1$s --input %2$s --out %3$s/afile/o");
}

static void test_bad_arguments(void **state) {
    (void)state;
    expect_bad("--frames", "--checkpoint %1$s --input %2$s --out %3$s/o --frames 0");
    expect_bad("--size", "--checkpoint %1$s --input %2$s --out %3$s/o --size abc");
    expect_bad("--bn", "--checkpoint %1$s --input %2$s --out %3$s/o --bn sometimes");
    expect_bad("--threads", "--checkpoint %1$s --input %2$s --out %3$s/o --threads -1");
    expect_bad("infer needs --checkpoint, --input and --out", "--checkpoint %1$s --input %2$s");
    expect_bad("--bogus", "--checkpoint %1$s --input %2$s --out %3$s/o --bogus");
    expect_bad("--frames needs a value", "--checkpoint %1$s --input %2$s --out %3$s/o --frames");
    expect_bad("unexpected argument 'extra'", "--checkpoint %1$s --input %2$s --out %3$s/o extra");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_jpeg_decodes_alike),
        cmocka_unit_test(test_refine_running),
        cmocka_unit_test(test_refine_batch_from_checkpoint),
        cmocka_unit_test(test_skipped_clips),
        cmocka_unit_test(test_other_size_input),
        cmocka_unit_test(test_bad_checkpoint),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests_name("refine infer", tests, setup, teardown);
}
