// bin/mdgan predict, run as a real process: outputs against PyTorch (fixtures written
// by tests/make_fixtures.py with the reference model), and every bad input getting one
// clear line on stderr and exit code 2.
#include "testutil.h"

static char tmp[512];
static char out[16384];

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

static float *read_raw(const char *path, size_t n) {
    float *p = malloc(n * sizeof(float));
    assert_non_null(p);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("no raw output %s", path);
    size_t got = fread(p, sizeof(float), n + 1, f);
    fclose(f);
    if (got != n) fail_msg("%s holds %zu floats, expected %zu", path, got, n);
    return p;
}

// Runs predict on the fixture photo and compares --raw with the PyTorch output `expect`.
static void predict_matches(const char *ckpt, const char *extra, const char *expect) {
    char ck[4096], img[4096], exp_path[4096], raw[1024], dir[1024];
    fixture_path(ck, sizeof ck, ckpt);
    fixture_path(img, sizeof img, "predict_input.png");
    fixture_path(exp_path, sizeof exp_path, "predict_expected.safetensors");
    snprintf(raw, sizeof raw, "%s/%s.raw", tmp, expect);
    snprintf(dir, sizeof dir, "%s/%s", tmp, expect);
    int rc = run_cmd(out, sizeof out, "%s/mdgan predict --checkpoint %s --image %s --out %s --frames 8 --size 32 "
                     "--raw %s --threads 2 %s", bin_dir(), ck, img, dir, raw, extra);
    if (rc != 0) fail_msg("predict exited %d: %s", rc, out);
    StFile f;
    assert_int_equal(st_open(&f, exp_path), 0);
    const size_t n = (size_t)3 * 8 * 32 * 32;
    float *ref = fixture_f32(&f, expect, n), *got = read_raw(raw, n);
    double e = max_abs_err(got, ref, n);
    printf("    predict %-28s vs PyTorch %-10s max abs err %.3e (tol 1e-4)\n", ckpt, expect, e);
    if (!(e <= 1e-4)) fail_msg("predict differs from PyTorch by %.3e", e);
    // the frames and the contact sheet are real PNGs
    char png[1200];
    struct stat st;
    for (int t = 0; t < 8; t++) {
        snprintf(png, sizeof png, "%s/frame_%03d.png", dir, t);
        assert_int_equal(stat(png, &st), 0);
    }
    snprintf(png, sizeof png, "%s/contact_sheet.png", dir);
    assert_int_equal(stat(png, &st), 0);
    free(ref), free(got);
    st_close(&f);
}

static void test_running_stats(void **state) { (void)state; predict_matches("predict_g1.safetensors", "", "y_running"); }
static void test_batch_stats(void **state) { (void)state; predict_matches("predict_g1.safetensors", "--bn batch", "y_batch"); }
static void test_refined(void **state) { (void)state; predict_matches("predict_g1g2.safetensors", "", "y2_running"); }

static void test_help(void **state) {
    (void)state;
    assert_int_equal(run_cmd(out, sizeof out, "%s/mdgan --help", bin_dir()), 0);
    assert_non_null(strstr(out, "predict"));
    assert_int_equal(run_cmd(out, sizeof out, "%s/mdgan predict --help", bin_dir()), 0);
    assert_int_equal(run_cmd(out, sizeof out, "%s/mdgan-base --help", bin_dir()), 0);
    assert_int_equal(run_cmd(out, sizeof out, "%s/mdgan-refine --help", bin_dir()), 0);
    assert_int_equal(run_cmd(out, sizeof out, "%s/mdgan frobnicate", bin_dir()), 2);
}

// Writes the first `keep` bytes of src (or `text` when src is NULL) to dst.
static void make_file(const char *dst, const char *src, long keep, const char *text) {
    FILE *o = fopen(dst, "wb");
    assert_non_null(o);
    if (src) {
        FILE *i = fopen(src, "rb");
        assert_non_null(i);
        for (long k = 0; k < keep; k++) {
            int c = fgetc(i);
            if (c == EOF) break;
            fputc(c, o);
        }
        fclose(i);
    } else {
        fputs(text, o);
    }
    fclose(o);
}

// Each bad input: exit code 2, exactly one line on stderr+stdout, naming `needle`.
static void expect_bad(const char *needle, const char *fmt_args) {
    char ck[4096], img[4096];
    fixture_path(ck, sizeof ck, "predict_g1.safetensors");
    fixture_path(img, sizeof img, "predict_input.png");
    char args[8192];
    // fmt_args may use %1$s for the good checkpoint and %2$s for the good image
    snprintf(args, sizeof args, fmt_args, ck, img, tmp);
    int rc = run_cmd(out, sizeof out, "%s/mdgan predict %s", bin_dir(), args);
    printf("    exit %d: %s", rc, out);
    assert_int_equal(rc, 2);
    assert_int_equal(count_lines(out), 1);
    if (!strstr(out, needle)) fail_msg("message does not name '%s': %s", needle, out);
}

static void test_bad_image(void **state) {
    (void)state;
    char p[1024], good[4096];
    fixture_path(good, sizeof good, "predict_input.png");
    snprintf(p, sizeof p, "%s/missing.png", tmp);
    expect_bad("missing.png", "--checkpoint %1$s --image %3$s/missing.png --out %3$s/o --frames 8 --size 32");
    snprintf(p, sizeof p, "%s/trunc.png", tmp);
    make_file(p, good, 100, NULL);
    expect_bad("trunc.png", "--checkpoint %1$s --image %3$s/trunc.png --out %3$s/o --frames 8 --size 32");
    snprintf(p, sizeof p, "%s/notes.png", tmp);
    make_file(p, NULL, 0, "these are not pixels\n");
    expect_bad("notes.png", "--checkpoint %1$s --image %3$s/notes.png --out %3$s/o --frames 8 --size 32");
    snprintf(p, sizeof p, "%s/empty.jpg", tmp);
    make_file(p, NULL, 0, "");
    expect_bad("empty.jpg", "--checkpoint %1$s --image %3$s/empty.jpg --out %3$s/o --frames 8 --size 32");
}

static void test_bad_checkpoint(void **state) {
    (void)state;
    char p[1024], good[4096];
    fixture_path(good, sizeof good, "predict_g1.safetensors");
    snprintf(p, sizeof p, "%s/trunc.safetensors", tmp);
    make_file(p, good, 5000, NULL);
    expect_bad("trunc.safetensors", "--checkpoint %3$s/trunc.safetensors --image %2$s --out %3$s/o --frames 8 --size 32");
    expect_bad("nothere.safetensors", "--checkpoint %3$s/nothere.safetensors --image %2$s --out %3$s/o");
    // a checkpoint for another shape: 32 frames of 64x64 has one level more, so its
    // downConv4 is a k4 s2 layer where the file's is the final (2,4,4) one
    expect_bad("downConv4.weight", "--checkpoint %1$s --image %2$s --out %3$s/o --frames 32 --size 64");
    expect_bad("downConv4.weight", "--checkpoint %1$s --image %2$s --out %3$s/o --frames 16 --size 32");
    // a safetensors file that holds no generator
    char ex[4096];
    fixture_path(ex, sizeof ex, "gram_rank.safetensors");
    char args[8192];
    snprintf(args, sizeof args, "--checkpoint %s --image %%2$s --out %%3$s/o --frames 8 --size 32", ex);
    expect_bad("no G1 generator", args);
    // --refine: a file that is not there fails before any work; one without a G2 once
    // G1 has run (G2 is loaded into G1's memory), still with exit 2 and nothing written
    expect_bad("nothere.safetensors", "--checkpoint %1$s --refine %3$s/nothere.safetensors --image %2$s --out %3$s/o_r "
               "--frames 8 --size 32");
    snprintf(args, sizeof args, "--checkpoint %%1$s --refine %s --image %%2$s --out %%3$s/o_r --frames 8 --size 32", ex);
    expect_bad("no G2 generator", args);
    char outdir[1100];
    snprintf(outdir, sizeof outdir, "%s/o_r", tmp);
    if (access(outdir, F_OK) == 0) fail_msg("%s was created by a predict that failed", outdir);
}

static void test_bad_arguments(void **state) {
    (void)state;
    expect_bad("cannot build the networks for 8 frames of 16x16",
               "--checkpoint %1$s --image %2$s --out %3$s/o --frames 8 --size 16");
    expect_bad("7 frames", "--checkpoint %1$s --image %2$s --out %3$s/o --frames 7 --size 32");
    expect_bad("--frames", "--checkpoint %1$s --image %2$s --out %3$s/o --frames 0 --size 32");
    expect_bad("--size", "--checkpoint %1$s --image %2$s --out %3$s/o --frames 8 --size abc");
    expect_bad("--bn", "--checkpoint %1$s --image %2$s --out %3$s/o --bn sometimes");
    expect_bad("--image", "--checkpoint %1$s --out %3$s/o");
    expect_bad("--bogus", "--checkpoint %1$s --image %2$s --out %3$s/o --bogus");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_running_stats),
        cmocka_unit_test(test_batch_stats),
        cmocka_unit_test(test_refined),
        cmocka_unit_test(test_bad_image),
        cmocka_unit_test(test_bad_checkpoint),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests_name("predict", tests, setup, teardown);
}
