// synth: spec validation (every bad field named), the folder layout, byte-identical
// files for the same spec whatever the thread count, plausible motion (frame-to-frame
// change clearly non-zero, no flicker, clouds continuing across the clips of a video),
// clips that differ, a dark horizon below the sky, and JPEG output.
#include "testutil.h"

#include <omp.h>

#include "mdgan/fileio.h"
#include "mdgan/image.h"
#include "mdgan/synth.h"

static char tmpdir[4096];

static int setup(void **state) {
    (void)state;
    make_tmpdir(tmpdir, sizeof tmpdir);
    return 0;
}
static int teardown(void **state) {
    (void)state;
    rm_rf(tmpdir);
    return 0;
}

static SynthSpec small_spec(void) {
    SynthSpec s = {.clips = 5, .frames = 6, .size = 24, .clips_per_video = 2, .seed = 7, .jpeg = 0};
    return s;
}

static void frame_path(char *out, size_t n, const char *root, int video, int clip, int t, const char *ext) {
    snprintf(out, n, "%s/video_%03d/clip_%03d/frame_%03d.%s", root, video, clip, t, ext);
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void expect_synth_error(const SynthSpec *s, const char *root, const char *field) {
    mdgan_errclear();
    assert_int_equal(synth_write(root, s), -1);
    printf("    %s -> %s\n", field, mdgan_errmsg());
    if (!strstr(mdgan_errmsg(), field)) fail_msg("message '%s' does not name %s", mdgan_errmsg(), field);
}

static void test_spec_errors(void **state) {
    (void)state;
    char root[4200];
    snprintf(root, sizeof root, "%s/bad", tmpdir);
    SynthSpec s = small_spec();
    s.clips = 0;
    expect_synth_error(&s, root, "clips");
    s = small_spec();
    s.frames = 1;
    expect_synth_error(&s, root, "frames");
    s = small_spec();
    s.size = 7;
    expect_synth_error(&s, root, "size");
    s.size = 1025;
    expect_synth_error(&s, root, "size");
    s = small_spec();
    s.clips_per_video = 0;
    expect_synth_error(&s, root, "clips_per_video");
    s = small_spec();
    expect_synth_error(&s, "", "output folder");
    assert_false(file_exists(root)); // nothing written for a bad spec

    // an output folder that cannot be created: under a regular file
    char file[4200], under[4300];
    snprintf(file, sizeof file, "%s/plainfile", tmpdir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(under, sizeof under, "%s/sub", file);
    expect_synth_error(&s, under, file);
}

// Every file of the small spec, read whole; compares two trees byte for byte.
static void expect_same_tree(const char *a, const char *b, const SynthSpec *s, const char *ext, int want_same) {
    int ndiff = 0, n = 0;
    for (int c = 0; c < s->clips; c++)
        for (int t = 0; t < s->frames; t++) {
            char pa[4300], pb[4300];
            frame_path(pa, sizeof pa, a, c / s->clips_per_video, c, t, ext);
            frame_path(pb, sizeof pb, b, c / s->clips_per_video, c, t, ext);
            unsigned char *ba, *bb;
            size_t la, lb;
            if (fio_read_all(pa, &ba, &la) != 0) fail_msg("%s", mdgan_errmsg());
            if (fio_read_all(pb, &bb, &lb) != 0) fail_msg("%s", mdgan_errmsg());
            ndiff += la != lb || memcmp(ba, bb, la) != 0;
            n++;
            free(ba);
            free(bb);
        }
    printf("    %s vs %s: %d of %d files differ\n", a + strlen(tmpdir), b + strlen(tmpdir), ndiff, n);
    if (want_same)
        assert_int_equal(ndiff, 0);
    else
        assert_int_equal(ndiff, n); // another seed: every frame differs
}

static void test_layout_and_determinism(void **state) {
    (void)state;
    SynthSpec s = small_spec();
    char a[4200], b[4200], c[4200];
    snprintf(a, sizeof a, "%s/a", tmpdir);
    snprintf(b, sizeof b, "%s/b/nested", tmpdir);
    snprintf(c, sizeof c, "%s/c", tmpdir);
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    assert_int_equal(synth_write(a, &s), 0);
    omp_set_num_threads(nt > 1 ? nt : 2);
    assert_int_equal(synth_write(b, &s), 0);
    omp_set_num_threads(nt);

    // 5 clips, 2 per video: video_000 {0,1}, video_001 {2,3}, video_002 {4}
    char p[4300];
    for (int clip = 0; clip < 5; clip++)
        for (int t = 0; t < 6; t++) {
            frame_path(p, sizeof p, a, clip / 2, clip, t, "png");
            if (!file_exists(p)) fail_msg("missing %s", p);
        }
    frame_path(p, sizeof p, a, 2, 5, 0, "png");
    assert_false(file_exists(p));
    frame_path(p, sizeof p, a, 0, 0, 6, "png");
    assert_false(file_exists(p));
    snprintf(p, sizeof p, "%s/video_003", a);
    assert_false(file_exists(p));

    expect_same_tree(a, b, &s, "png", 1);
    // a second run over an existing tree replaces the files with the same bytes
    assert_int_equal(synth_write(a, &s), 0);
    expect_same_tree(a, b, &s, "png", 1);
    s.seed = 8;
    assert_int_equal(synth_write(c, &s), 0);
    expect_same_tree(a, c, &s, "png", 0);
}

static void test_render_matches_file(void **state) {
    (void)state;
    SynthSpec s = small_spec();
    s.size = 20;
    char root[4200], p[4300];
    snprintf(root, sizeof root, "%s/r", tmpdir);
    assert_int_equal(synth_write(root, &s), 0);
    unsigned char *buf = malloc(20 * 20 * 3);
    assert_non_null(buf);
    for (int clip = 0; clip < s.clips; clip += 2) {
        int t = clip % s.frames;
        frame_path(p, sizeof p, root, clip / 2, clip, t, "png");
        Image im;
        if (image_load(&im, p) != 0) fail_msg("%s", mdgan_errmsg());
        assert_int_equal(im.w, 20);
        assert_int_equal(im.h, 20);
        synth_render(buf, &s, clip, t);
        assert_memory_equal(buf, im.rgb, 20 * 20 * 3);
        image_free(&im);
    }
    free(buf);
}

// mean |a - b| over all samples, in [0, 1] units
static double mad(const unsigned char *a, const unsigned char *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += abs((int)a[i] - (int)b[i]);
    return s / (double)n / 255.0;
}

static void test_motion_and_variety(void **state) {
    (void)state;
    // 10 clips over 4 videos (palettes and horizons differ), rendered as written
    SynthSpec s = {.clips = 10, .frames = 12, .size = 32, .clips_per_video = 3, .seed = 3, .jpeg = 0};
    const int S = s.size, T = s.frames, C = s.clips;
    size_t fs = (size_t)S * S * 3;
    unsigned char *v = malloc((size_t)C * T * fs);
    assert_non_null(v);
    for (int c = 0; c < C; c++)
        for (int t = 0; t < T; t++) synth_render(v + ((size_t)c * T + t) * fs, &s, c, t);
#define FRAME(c, t) (v + ((size_t)(c) * T + (t)) * fs)

    // motion: every step changes the picture, in a sane range, and evenly (no flicker:
    // no step more than 2.5x the clip's mean step)
    double mean_step[10];
    for (int c = 0; c < C; c++) {
        double sum = 0, mx = 0, mn = 1;
        for (int t = 0; t + 1 < T; t++) {
            double d = mad(FRAME(c, t), FRAME(c, t + 1), fs);
            sum += d;
            if (d > mx) mx = d;
            if (d < mn) mn = d;
        }
        mean_step[c] = sum / (T - 1);
        printf("    clip %d: mean |dY/dt| %.4f (min %.4f, max %.4f)\n", c, mean_step[c], mn, mx);
        if (!(mean_step[c] > 0.002 && mean_step[c] < 0.08))
            fail_msg("clip %d: mean step %.4f outside 0.002..0.08", c, mean_step[c]);
        if (!(mn > 0.0005)) fail_msg("clip %d: a still step (%.5f)", c, mn);
        if (!(mx <= 2.5 * mean_step[c])) fail_msg("clip %d: flicker (max step %.4f, mean %.4f)", c, mx, mean_step[c]);
    }
    // the clouds continue: last frame of a clip -> first of the next clip of the same
    // video is an ordinary step, not a cut
    for (int c = 0; c + 1 < C; c++) {
        if ((c + 1) % s.clips_per_video == 0) continue;
        double d = mad(FRAME(c, T - 1), FRAME(c + 1, 0), fs);
        double ref = 0.5 * (mean_step[c] + mean_step[c + 1]);
        printf("    clip %d -> %d: %.4f (steps %.4f)\n", c, c + 1, d, ref);
        if (!(d <= 2.5 * ref)) fail_msg("clip %d -> %d is a cut: %.4f vs steps %.4f", c, c + 1, d, ref);
    }
    // every two clips look different (first frames), a video's clips included
    double mind = 1;
    for (int a = 0; a < C; a++)
        for (int b = a + 1; b < C; b++) {
            double d = mad(FRAME(a, 0), FRAME(b, 0), fs);
            if (d < mind) mind = d;
        }
    printf("    smallest difference between two clips' first frames: %.4f\n", mind);
    assert_true(mind > 0.02);
    // a scene: land (bottom rows) darker than the sky (top half), every clip
    for (int c = 0; c < C; c++) {
        double top = 0, bot = 0;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S * 3; x++) {
                double u = FRAME(c, 0)[(size_t)y * S * 3 + x];
                if (y < S / 2) top += u;
                if (y >= S - 2) bot += u;
            }
        top /= (S / 2) * S * 3.0;
        bot /= 2 * S * 3.0;
        if (!(bot < 0.7 * top)) fail_msg("clip %d: bottom %.1f not darker than the sky %.1f", c, bot, top);
    }
#undef FRAME
    free(v);
}

static void test_jpeg(void **state) {
    (void)state;
    SynthSpec s = small_spec();
    s.clips = 2;
    s.jpeg = 1;
    char root[4200], p[4300];
    snprintf(root, sizeof root, "%s/j", tmpdir);
    assert_int_equal(synth_write(root, &s), 0);
    frame_path(p, sizeof p, root, 0, 0, 0, "png");
    assert_false(file_exists(p));
    unsigned char *buf = malloc((size_t)s.size * s.size * 3);
    assert_non_null(buf);
    for (int clip = 0; clip < 2; clip++)
        for (int t = 0; t < s.frames; t++) {
            frame_path(p, sizeof p, root, 0, clip, t, "jpg");
            Image im;
            if (image_load(&im, p) != 0) fail_msg("%s", mdgan_errmsg());
            synth_render(buf, &s, clip, t);
            double d = mad(buf, im.rgb, (size_t)s.size * s.size * 3);
            // JPEG q95 with 4:2:0 chroma on 24x24 frames with sharp silhouettes: a few levels
            if (!(d < 0.03)) fail_msg("%s differs from its rendering by %.4f (tol 0.03)", p, d);
            image_free(&im);
        }
    free(buf);
}

// The default data set's rendering (64 clips x 32 frames at 64x64) over the OpenMP
// threads: must take seconds, not minutes. Writing adds two fsyncs per file.
int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_layout_and_determinism),
        cmocka_unit_test(test_render_matches_file),
        cmocka_unit_test(test_motion_and_variety),
        cmocka_unit_test(test_jpeg),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
