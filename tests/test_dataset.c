// dataset: natural name order, opening a synthetic tree (counts, windows, values equal
// to the decoded and resized PNGs, thread-count independence, progress), ignored
// files, the split by video (disjoint, deterministic, fraction, edge cases), bad data
// (corrupt frame, too few frames, mixed sizes: clip skipped with one warning naming the
// file; empty, missing or file root and nothing usable: -1 naming root), JPEG frames,
// and the real clips of ../shared/data/real when present.
#include "testutil.h"

#include <fcntl.h>
#include <omp.h>

#include "mdgan/dataset.h"
#include "mdgan/image.h"
#include "mdgan/synth.h"

static char tmpdir[1024];

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

// A fresh folder under tmpdir.
static void subdir(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", tmpdir, name);
    rm_rf(out);
    if (mkdir(out, 0755) != 0) fail_msg("mkdir %s failed", out);
}

static void mkdirs(const char *p) {
    char cmd[2100];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", p);
    if (system(cmd) != 0) fail_msg("%s failed", cmd);
}

static void write_const_png(const char *path, int w, int h, unsigned char r, unsigned char g, unsigned char b) {
    Image im = {w, h, malloc((size_t)w * h * 3)};
    assert_non_null(im.rgb);
    for (size_t p = 0; p < (size_t)w * h; p++) {
        im.rgb[3 * p] = r;
        im.rgb[3 * p + 1] = g;
        im.rgb[3 * p + 2] = b;
    }
    if (image_save_png(&im, path) != 0) fail_msg("%s", mdgan_errmsg());
    image_free(&im);
}

static void synth_tree(const char *root, int clips, int frames, int size, int cpv, int jpeg) {
    SynthSpec s = {.clips = clips, .frames = frames, .size = size, .clips_per_video = cpv, .seed = 11, .jpeg = jpeg};
    if (synth_write(root, &s) != 0) fail_msg("synth: %s", mdgan_errmsg());
}

// dataset_open with stderr captured into err (NUL-terminated).
static int open_capture(Dataset *ds, const char *root, int T, int H, int W, char *err, size_t errsz) {
    char path[1200];
    snprintf(path, sizeof path, "%s/stderr.txt", tmpdir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    int rc = dataset_open(ds, root, T, H, W, NULL, NULL);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(err, 1, errsz - 1, f);
    err[n] = '\0';
    fclose(f);
    if (n) printf("    stderr: %s", err);
    return rc;
}

static void expect_contains(const char *what, const char *s, const char *needle) {
    if (!strstr(s, needle)) fail_msg("%s '%s' does not contain '%s'", what, s, needle);
}

// ---------------------------------------------------------------------------

static void test_name_order(void **state) {
    (void)state;
    const char *sorted[] = {"", "0.png", "01.png", "1.png", "2.png", "10.png", "10a.png", "11.png",
                            "100.png", "a", "a2", "a10", "a10b", "b", "frame_2", "frame_010",
                            "x99999999999999999999", "x100000000000000000000"};
    int n = (int)(sizeof sorted / sizeof *sorted);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            int c = dataset_name_cmp(sorted[i], sorted[j]);
            int want = (i > j) - (i < j);
            if (c != want)
                fail_msg("dataset_name_cmp(\"%s\", \"%s\") = %d, want %d", sorted[i], sorted[j], c, want);
        }
    // zero-padded names of one width: the same order as strcmp
    assert_true(dataset_name_cmp("frame_009.png", "frame_010.png") < 0);
    assert_true(strcmp("frame_009.png", "frame_010.png") < 0);

    assert_true(dataset_is_frame_name("a.png"));
    assert_true(dataset_is_frame_name("a.PNG"));
    assert_true(dataset_is_frame_name("b.Jpg"));
    assert_true(dataset_is_frame_name("c.jpeg"));
    assert_true(dataset_is_frame_name("c.JPEG"));
    assert_false(dataset_is_frame_name(".a.png"));
    assert_false(dataset_is_frame_name("a.png.txt"));
    assert_false(dataset_is_frame_name("png"));
    assert_false(dataset_is_frame_name(".png"));
    assert_false(dataset_is_frame_name("a.gif"));
}

static void test_open_synth(void **state) {
    (void)state;
    char root[1200];
    subdir(root, sizeof root, "synth");
    // 6 clips of 9 frames, 2 per video -> 3 videos; T=4 -> 2 windows per clip
    synth_tree(root, 6, 9, 16, 2, 0);
    Dataset ds;
    char err[4096];
    assert_int_equal(open_capture(&ds, root, 4, 16, 16, err, sizeof err), 0);
    assert_string_equal(err, ""); // no warnings
    assert_int_equal(ds.nclips, 12);
    assert_int_equal(ds.nvideos, 3);
    assert_int_equal(ds.skipped_clips, 0);
    assert_int_equal(ds.T, 4);
    assert_string_equal(ds.root, root);
    assert_string_equal(ds.videos[0], "video_000");
    assert_string_equal(ds.videos[2], "video_002");
    for (int i = 0; i < 12; i++) {
        char clip[32], first[1600];
        snprintf(clip, sizeof clip, "clip_%03d", i / 2);
        assert_string_equal(ds.clips[i].clip, clip);
        assert_string_equal(ds.clips[i].video, ds.videos[i / 4]);
        assert_int_equal(ds.clip_video[i], i / 4);
        assert_int_equal(ds.clips[i].window, i % 2);
        snprintf(first, sizeof first, "%s/video_%03d/clip_%03d/frame_%03d.png", root, i / 4, i / 2, 4 * (i % 2));
        assert_string_equal(ds.clips[i].first_frame, first);
    }

    // values: every window equals image_to_chw of its PNG frames, exactly; all in [-1, 1]
    size_t THW = (size_t)4 * 16 * 16;
    float *x = malloc(3 * THW * sizeof *x), *ref = malloc(3 * 16 * 16 * sizeof *ref);
    assert_non_null(x);
    assert_non_null(ref);
    for (int i = 0; i < 12; i++) {
        dataset_clip(&ds, i, x);
        for (size_t p = 0; p < 3 * THW; p++)
            if (!(x[p] >= -1.0f && x[p] <= 1.0f)) fail_msg("clip %d: value %g outside [-1, 1]", i, x[p]);
        for (int t = 0; t < 4; t++) {
            char path[1600];
            snprintf(path, sizeof path, "%s/video_%03d/clip_%03d/frame_%03d.png", root, i / 4, i / 2, 4 * (i % 2) + t);
            Image im;
            if (image_load(&im, path) != 0) fail_msg("%s", mdgan_errmsg());
            image_to_chw(ref, &im);
            for (int c = 0; c < 3; c++)
                for (int p = 0; p < 16 * 16; p++)
                    if (x[(size_t)c * THW + (size_t)t * 256 + p] != ref[c * 256 + p])
                        fail_msg("clip %d frame %d channel %d pixel %d: %g, PNG says %g", i, t, c, p,
                                 x[(size_t)c * THW + (size_t)t * 256 + p], ref[c * 256 + p]);
            image_free(&im);
        }
    }
    // a known pixel, by hand: clip 5 (clip_002, window 1), t=2 -> frame_006.png, (y=3, x=7)
    {
        char path[1600];
        snprintf(path, sizeof path, "%s/video_001/clip_002/frame_006.png", root);
        Image im;
        assert_int_equal(image_load(&im, path), 0);
        dataset_clip(&ds, 5, x);
        const unsigned char *px = im.rgb + (3 * 16 + 7) * 3;
        for (int c = 0; c < 3; c++) assert_true(x[(size_t)c * THW + 2 * 256 + 3 * 16 + 7] == px[c] / 127.5f - 1.0f);
        image_free(&im);
    }

    // a batch is its clips back to back
    int idx[3] = {7, 0, 11};
    float *b = malloc(3 * 3 * THW * sizeof *b);
    assert_non_null(b);
    dataset_batch(&ds, idx, 3, b);
    for (int k = 0; k < 3; k++) {
        dataset_clip(&ds, idx[k], x);
        assert_memory_equal(b + (size_t)k * 3 * THW, x, 3 * THW * sizeof *x);
    }
    free(b);
    free(x);
    free(ref);
    dataset_close(&ds);
    assert_null(ds.clips);
    dataset_close(&ds); // twice is fine
}

static void test_resize_and_threads(void **state) {
    (void)state;
    char root[1200];
    subdir(root, sizeof root, "synth");
    synth_tree(root, 4, 6, 24, 2, 0);
    // 12 x 8 (W x H): area averaging on both axes, exactly image_resize of the PNG
    int nt = omp_get_max_threads();
    Dataset d1, d2;
    omp_set_num_threads(1);
    assert_int_equal(dataset_open(&d1, root, 3, 8, 12, NULL, NULL), 0);
    omp_set_num_threads(nt > 1 ? nt : 2);
    assert_int_equal(dataset_open(&d2, root, 3, 8, 12, NULL, NULL), 0);
    omp_set_num_threads(nt);
    assert_int_equal(d1.nclips, 8);
    assert_int_equal(d2.nclips, 8);
    assert_memory_equal(d1.cache, d2.cache, (size_t)8 * 3 * 8 * 12 * 3);
    for (int i = 0; i < 8; i += 3) {
        for (int t = 0; t < 3; t++) {
            char path[1600];
            snprintf(path, sizeof path, "%s/video_%03d/clip_%03d/frame_%03d.png", root, i / 4, i / 2, 3 * (i % 2) + t);
            Image im, rs;
            assert_int_equal(image_load(&im, path), 0);
            assert_int_equal(image_resize(&rs, &im, 12, 8), 0);
            assert_memory_equal(d1.cache + ((size_t)i * 3 + t) * 8 * 12 * 3, rs.rgb, 8 * 12 * 3);
            image_free(&im);
            image_free(&rs);
        }
    }
    dataset_close(&d1);
    dataset_close(&d2);
}

typedef struct {
    int calls, last_done, last_total, bad;
} Prog;

static void prog_cb(void *ctx, int done, int total) {
    Prog *p = ctx;
    if (done != p->last_done + 1 || (p->calls && total != p->last_total) || done > total) p->bad++;
    p->calls++;
    p->last_done = done;
    p->last_total = total;
}

static void test_progress(void **state) {
    (void)state;
    char root[1200], p[1600];
    subdir(root, sizeof root, "prog");
    synth_tree(root, 5, 4, 8, 2, 0);
    snprintf(p, sizeof p, "%s/video_002/clip_004/frame_003.png", root);
    assert_int_equal(unlink(p), 0); // one clip too short: still counted as done
    Prog pr = {0};
    Dataset ds;
    assert_int_equal(dataset_open(&ds, root, 4, 8, 8, prog_cb, &pr), 0);
    printf("    %d progress calls, last %d/%d\n", pr.calls, pr.last_done, pr.last_total);
    assert_int_equal(pr.bad, 0);
    assert_int_equal(pr.calls, 5);
    assert_int_equal(pr.last_done, 5);
    assert_int_equal(pr.last_total, 5);
    assert_int_equal(ds.nclips, 4);
    assert_int_equal(ds.skipped_clips, 1);
    dataset_close(&ds);
}

// Natural frame order, extensions in any case, JPEG among PNG, and everything that is
// not a frame ignored: hidden entries, other files, files outside clip folders.
static void test_natural_order_and_ignored(void **state) {
    (void)state;
    char root[1200], clip[1600], p[2000];
    subdir(root, sizeof root, "nat");
    snprintf(clip, sizeof clip, "%s/cam/day1", root);
    mkdirs(clip);
    // frames 1..12: frame k is the constant grey 20k
    for (int k = 1; k <= 10; k++) {
        snprintf(p, sizeof p, "%s/%d.png", clip, k);
        write_const_png(p, 6, 6, (unsigned char)(20 * k), (unsigned char)(20 * k), (unsigned char)(20 * k));
    }
    snprintf(p, sizeof p, "%s/11.PNG", clip);
    write_const_png(p, 6, 6, 220, 220, 220);
    {
        Image im = {6, 6, malloc(6 * 6 * 3)};
        assert_non_null(im.rgb);
        memset(im.rgb, 240, 6 * 6 * 3);
        snprintf(p, sizeof p, "%s/12.JpG", clip);
        assert_int_equal(image_save_jpeg(&im, p, 95), 0);
        image_free(&im);
    }
    // ignored: a hidden corrupt "frame", a text file, a corrupt .gif; a hidden video
    // full of garbage; plain files in root and in the video folder
    snprintf(p, sizeof p, "%s/.0.png", clip);
    write_text_file(p, "not a png");
    snprintf(p, sizeof p, "%s/notes.txt", clip);
    write_text_file(p, "hello");
    snprintf(p, sizeof p, "%s/thumb.gif", clip);
    write_text_file(p, "GIF89a junk");
    snprintf(p, sizeof p, "%s/.trash/c", root);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/.trash/c/1.png", root);
    write_text_file(p, "junk");
    snprintf(p, sizeof p, "%s/README.md", root);
    write_text_file(p, "# data\n");
    snprintf(p, sizeof p, "%s/cam/info.json", root);
    write_text_file(p, "{}");

    Dataset ds;
    char err[4096];
    assert_int_equal(open_capture(&ds, root, 12, 6, 6, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(ds.nclips, 1);
    assert_int_equal(ds.nvideos, 1);
    assert_int_equal(ds.skipped_clips, 0);
    assert_string_equal(ds.videos[0], "cam");
    assert_string_equal(ds.clips[0].clip, "day1");
    snprintf(p, sizeof p, "%s/1.png", clip);
    assert_string_equal(ds.clips[0].first_frame, p);
    for (int t = 0; t < 12; t++) {
        int want = 20 * (t + 1), got = ds.cache[(size_t)t * 6 * 6 * 3 + 7];
        if (abs(got - want) > (t == 11 ? 2 : 0)) // the JPEG may be off by a level or two
            fail_msg("frame %d has grey %d, want %d: frames out of natural order", t, got, want);
    }
    dataset_close(&ds);

    // the same through dataset_list_frames
    char **paths;
    int n;
    assert_int_equal(dataset_list_frames(clip, &paths, &n), 0);
    assert_int_equal(n, 12);
    snprintf(p, sizeof p, "%s/10.png", clip);
    assert_string_equal(paths[9], p);
    snprintf(p, sizeof p, "%s/12.JpG", clip);
    assert_string_equal(paths[11], p);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    snprintf(p, sizeof p, "%s/nope", root);
    assert_int_equal(dataset_list_frames(p, &paths, &n), -1);
    expect_contains("message", mdgan_errmsg(), p);
}

// ---------------------------------------------------------------------------
// Split

static void check_split(const Dataset *ds, const int *tr, int nt, const int *va, int nv) {
    assert_int_equal(nt + nv, ds->nclips);
    char *side = calloc((size_t)ds->nvideos, 1); // 1 train, 2 val
    char *seen = calloc((size_t)ds->nclips, 1);
    assert_non_null(side);
    assert_non_null(seen);
    for (int i = 0; i < nt; i++) {
        if (i) assert_true(tr[i] > tr[i - 1]);
        assert_true(tr[i] >= 0 && tr[i] < ds->nclips);
        seen[tr[i]]++;
        side[ds->clip_video[tr[i]]] |= 1;
    }
    for (int i = 0; i < nv; i++) {
        if (i) assert_true(va[i] > va[i - 1]);
        assert_true(va[i] >= 0 && va[i] < ds->nclips);
        seen[va[i]]++;
        side[ds->clip_video[va[i]]] |= 2;
    }
    for (int i = 0; i < ds->nclips; i++) assert_int_equal(seen[i], 1);
    for (int v = 0; v < ds->nvideos; v++)
        if (side[v] == 3) fail_msg("video %s is on both sides", ds->videos[v]);
    free(side);
    free(seen);
}

static int split_nval_videos(const Dataset *ds, double frac, uint64_t seed, int **va_out, int *nv_out) {
    int *tr, *va, nt, nv;
    if (dataset_split(ds, frac, seed, &tr, &nt, &va, &nv) != 0) fail_msg("%s", mdgan_errmsg());
    check_split(ds, tr, nt, va, nv);
    assert_non_null(tr);
    assert_non_null(va);
    int nvid = 0;
    for (int i = 0; i < nv; i++)
        if (i == 0 || ds->clip_video[va[i]] != ds->clip_video[va[i - 1]]) nvid++;
    free(tr);
    if (va_out) {
        *va_out = va;
        *nv_out = nv;
    } else {
        free(va);
    }
    return nvid;
}

static void test_split(void **state) {
    (void)state;
    char root[1200];
    subdir(root, sizeof root, "split");
    // 10 videos of 2 clips of 4 frames; T=2 -> 4 windows per video, 40 in all
    synth_tree(root, 20, 4, 8, 2, 0);
    Dataset ds;
    assert_int_equal(dataset_open(&ds, root, 2, 8, 8, NULL, NULL), 0);
    assert_int_equal(ds.nvideos, 10);
    assert_int_equal(ds.nclips, 40);

    int *va1, *va2, n1, n2;
    assert_int_equal(split_nval_videos(&ds, 0.3, 5, &va1, &n1), 3);
    assert_int_equal(n1, 12); // all 4 windows of each of the 3 videos
    assert_int_equal(split_nval_videos(&ds, 0.3, 5, &va2, &n2), 3);
    assert_int_equal(n1, n2);
    assert_memory_equal(va1, va2, (size_t)n1 * sizeof *va1); // deterministic
    free(va2);
    int differs = 0; // other seeds choose other videos
    for (uint64_t seed = 6; seed < 12; seed++) {
        assert_int_equal(split_nval_videos(&ds, 0.3, seed, &va2, &n2), 3);
        differs += memcmp(va1, va2, (size_t)n1 * sizeof *va1) != 0;
        free(va2);
    }
    free(va1);
    printf("    6 other seeds: %d chose other validation videos\n", differs);
    assert_true(differs >= 3);

    assert_int_equal(split_nval_videos(&ds, 0.0, 5, NULL, NULL), 0);
    assert_int_equal(split_nval_videos(&ds, 0.01, 5, NULL, NULL), 1);  // at least one
    assert_int_equal(split_nval_videos(&ds, 0.14, 5, NULL, NULL), 1);  // round(1.4)
    assert_int_equal(split_nval_videos(&ds, 0.16, 5, NULL, NULL), 2);  // round(1.6)
    assert_int_equal(split_nval_videos(&ds, 0.5, 5, NULL, NULL), 5);
    assert_int_equal(split_nval_videos(&ds, 0.97, 5, NULL, NULL), 9);  // one left for training
    assert_int_equal(split_nval_videos(&ds, 1.0, 5, NULL, NULL), 9);

    const double bad[] = {-0.1, 1.5, NAN};
    for (int i = 0; i < 3; i++) {
        int *tr, *va, nt, nv;
        mdgan_errclear();
        assert_int_equal(dataset_split(&ds, bad[i], 1, &tr, &nt, &va, &nv), -1);
        expect_contains("message", mdgan_errmsg(), "val_fraction");
    }
    dataset_close(&ds);

    // one video: everything is training, whatever the fraction
    subdir(root, sizeof root, "split1");
    synth_tree(root, 3, 2, 8, 3, 0);
    assert_int_equal(dataset_open(&ds, root, 2, 8, 8, NULL, NULL), 0);
    assert_int_equal(ds.nvideos, 1);
    assert_int_equal(split_nval_videos(&ds, 0.5, 5, NULL, NULL), 0);
    int *tr, *va, nt, nv;
    assert_int_equal(dataset_split(&ds, 0.5, 5, &tr, &nt, &va, &nv), 0);
    assert_int_equal(nt, 3);
    assert_int_equal(nv, 0);
    free(tr);
    free(va);
    dataset_close(&ds);

    // two videos, a small fraction: one each
    subdir(root, sizeof root, "split2");
    synth_tree(root, 4, 2, 8, 2, 0);
    assert_int_equal(dataset_open(&ds, root, 2, 8, 8, NULL, NULL), 0);
    assert_int_equal(split_nval_videos(&ds, 0.1, 5, NULL, NULL), 1);
    assert_int_equal(split_nval_videos(&ds, 0.9, 5, NULL, NULL), 1);
    dataset_close(&ds);
}

// ---------------------------------------------------------------------------
// Bad data

static int has_clip(const Dataset *ds, const char *clip) {
    for (int i = 0; i < ds->nclips; i++)
        if (!strcmp(ds->clips[i].clip, clip)) return 1;
    return 0;
}

static void test_corrupt_frame(void **state) {
    (void)state;
    char root[1200], p[1600], q[1600];
    subdir(root, sizeof root, "corrupt");
    synth_tree(root, 6, 8, 16, 2, 0);
    // a PNG cut in half, and a "PNG" that is text, in two clips
    snprintf(p, sizeof p, "%s/video_001/clip_002/frame_003.png", root);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(truncate(p, st.st_size / 2), 0);
    snprintf(q, sizeof q, "%s/video_002/clip_005/frame_006.png", root);
    write_text_file(q, "this is not an image");

    Dataset ds;
    char err[8192];
    assert_int_equal(open_capture(&ds, root, 4, 16, 16, err, sizeof err), 0);
    assert_int_equal(ds.skipped_clips, 2);
    assert_int_equal(ds.nclips, 4 * 2);
    assert_int_equal(ds.nvideos, 3);
    assert_false(has_clip(&ds, "clip_002"));
    assert_false(has_clip(&ds, "clip_005"));
    assert_true(has_clip(&ds, "clip_003"));
    // one line per skipped clip, in clip order, naming the clip and the file
    assert_int_equal(count_lines(err), 2);
    expect_contains("stderr", err, "mdgan: warning: skipping clip video_001/clip_002: ");
    expect_contains("stderr", err, p);
    expect_contains("stderr", err, "mdgan: warning: skipping clip video_002/clip_005: ");
    expect_contains("stderr", err, q);
    assert_true(strstr(err, p) < strstr(err, q));
    // the others still load, with their own pixels
    assert_string_equal(ds.clips[4].clip, "clip_003");
    dataset_close(&ds);
}

static void test_too_few_frames(void **state) {
    (void)state;
    char root[1200], p[1600], cdir[1600];
    subdir(root, sizeof root, "few");
    synth_tree(root, 4, 5, 8, 2, 0);
    // clip_001: 3 frames left (< T=4); the others have 5: one window, one frame unused
    for (int t = 3; t < 5; t++) {
        snprintf(p, sizeof p, "%s/video_000/clip_001/frame_%03d.png", root, t);
        assert_int_equal(unlink(p), 0);
    }
    // an empty clip folder
    snprintf(cdir, sizeof cdir, "%s/video_001/clip_empty", root);
    mkdirs(cdir);
    Dataset ds;
    char err[8192];
    assert_int_equal(open_capture(&ds, root, 4, 8, 8, err, sizeof err), 0);
    assert_int_equal(ds.skipped_clips, 2);
    assert_int_equal(ds.nclips, 3);
    assert_false(has_clip(&ds, "clip_001"));
    assert_int_equal(count_lines(err), 2);
    snprintf(p, sizeof p, "%s/video_000/clip_001 has 3 frames, fewer than T=4", root);
    expect_contains("stderr", err, "mdgan: warning: skipping clip video_000/clip_001: ");
    expect_contains("stderr", err, p);
    snprintf(p, sizeof p, "%.1500s has 0 frames, fewer than T=4", cdir);
    expect_contains("stderr", err, p);
    dataset_close(&ds);
}

static void test_mixed_sizes(void **state) {
    (void)state;
    char root[1200], p[1600], first[1600];
    subdir(root, sizeof root, "mixed");
    synth_tree(root, 2, 4, 16, 2, 0);
    snprintf(p, sizeof p, "%s/video_000/clip_001/frame_002.png", root);
    write_const_png(p, 20, 12, 1, 2, 3);
    snprintf(first, sizeof first, "%s/video_000/clip_001/frame_000.png", root);
    Dataset ds;
    char err[8192];
    assert_int_equal(open_capture(&ds, root, 4, 16, 16, err, sizeof err), 0);
    assert_int_equal(ds.skipped_clips, 1);
    assert_int_equal(ds.nclips, 1);
    assert_int_equal(count_lines(err), 1);
    expect_contains("stderr", err, "mdgan: warning: skipping clip video_000/clip_001: ");
    expect_contains("stderr", err, p);
    expect_contains("stderr", err, "20x12");
    expect_contains("stderr", err, first);
    expect_contains("stderr", err, "16x16");
    dataset_close(&ds);
}

static void test_bad_roots(void **state) {
    (void)state;
    char root[1200], p[1600], err[8192];
    Dataset ds;

    // missing
    snprintf(root, sizeof root, "%s/does-not-exist", tmpdir);
    mdgan_errclear();
    assert_int_equal(dataset_open(&ds, root, 4, 8, 8, NULL, NULL), -1);
    printf("    %s\n", mdgan_errmsg());
    expect_contains("message", mdgan_errmsg(), root);
    assert_null(ds.clips);
    assert_null(ds.cache);

    // a file
    snprintf(root, sizeof root, "%s/plain", tmpdir);
    write_text_file(root, "x");
    assert_int_equal(dataset_open(&ds, root, 4, 8, 8, NULL, NULL), -1);
    printf("    %s\n", mdgan_errmsg());
    expect_contains("message", mdgan_errmsg(), root);
    expect_contains("message", mdgan_errmsg(), "not a folder");

    // empty; then with a video folder but no clip folders
    subdir(root, sizeof root, "empty");
    assert_int_equal(dataset_open(&ds, root, 4, 8, 8, NULL, NULL), -1);
    printf("    %s\n", mdgan_errmsg());
    expect_contains("message", mdgan_errmsg(), root);
    expect_contains("message", mdgan_errmsg(), "no clip folders");
    snprintf(p, sizeof p, "%s/vid", root);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/vid/0.png", root); // frames one level too high
    write_const_png(p, 4, 4, 0, 0, 0);
    assert_int_equal(dataset_open(&ds, root, 1, 8, 8, NULL, NULL), -1);
    expect_contains("message", mdgan_errmsg(), "no clip folders");

    // nothing usable: every clip too short or corrupt
    subdir(root, sizeof root, "allbad");
    synth_tree(root, 3, 3, 8, 1, 0);
    snprintf(p, sizeof p, "%s/video_002/clip_002/frame_001.png", root);
    write_text_file(p, "garbage");
    mdgan_errclear();
    assert_int_equal(open_capture(&ds, root, 4, 8, 8, err, sizeof err), -1);
    printf("    %s\n", mdgan_errmsg());
    expect_contains("message", mdgan_errmsg(), root);
    expect_contains("message", mdgan_errmsg(), "all 3 clip folders skipped");
    expect_contains("message", mdgan_errmsg(), "3 with fewer than T=4 frames");
    assert_int_equal(count_lines(mdgan_errmsg()), 0);
    assert_int_equal(count_lines(err), 3);
    assert_int_equal(ds.skipped_clips, 3);
    assert_null(ds.clips);
    assert_int_equal(open_capture(&ds, root, 3, 8, 8, err, sizeof err), 0); // T=3: two clips are fine
    assert_int_equal(ds.nclips, 2);
    assert_int_equal(ds.skipped_clips, 1);
    dataset_close(&ds);
    // the corrupt one alone
    snprintf(p, sizeof p, "%s/video_000", root);
    rm_rf(p);
    snprintf(p, sizeof p, "%s/video_001", root);
    rm_rf(p);
    assert_int_equal(open_capture(&ds, root, 3, 8, 8, err, sizeof err), -1);
    expect_contains("message", mdgan_errmsg(), "1 with an unreadable or corrupt frame");

    // bad shapes
    subdir(root, sizeof root, "shape");
    assert_int_equal(dataset_open(&ds, root, 0, 8, 8, NULL, NULL), -1);
    expect_contains("message", mdgan_errmsg(), "T=0");
    assert_int_equal(dataset_open(&ds, root, 2, 8, 0, NULL, NULL), -1);
    expect_contains("message", mdgan_errmsg(), "W=0");
}

static void test_jpeg_frames(void **state) {
    (void)state;
    char rp[1200], rj[1200];
    subdir(rp, sizeof rp, "png");
    subdir(rj, sizeof rj, "jpg");
    synth_tree(rp, 3, 4, 32, 3, 0);
    synth_tree(rj, 3, 4, 32, 3, 1);
    Dataset dp, dj;
    assert_int_equal(dataset_open(&dp, rp, 4, 16, 16, NULL, NULL), 0);
    assert_int_equal(dataset_open(&dj, rj, 4, 16, 16, NULL, NULL), 0);
    assert_int_equal(dj.nclips, 3);
    assert_non_null(strstr(dj.clips[0].first_frame, "frame_000.jpg"));
    size_t n = (size_t)3 * 4 * 16 * 16 * 3;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += abs((int)dp.cache[i] - (int)dj.cache[i]);
    s /= (double)n * 255.0;
    printf("    JPEG vs PNG frames after 2x area shrink: mean |diff| %.4f (tol 0.02)\n", s);
    assert_true(s < 0.02);
    dataset_close(&dp);
    dataset_close(&dj);
}

// The project's real development clips, when this checkout sits beside them.
static void test_real_data(void **state) {
    (void)state;
    const char *root = getenv("MDGAN_REAL_DATA");
    if (!root || !*root) root = "../shared/data/real";
    struct stat st;
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        printf("    %s absent: skipped\n", root);
        skip();
    }
    Dataset ds;
    double t0 = omp_get_wtime();
    if (dataset_open(&ds, root, 32, 64, 64, NULL, NULL) != 0) fail_msg("%s", mdgan_errmsg());
    double dt = omp_get_wtime() - t0;
    printf("    %s: %d clips of %d videos at T=32 64x64 decoded in %.2f s on %d threads\n", root, ds.nclips,
           ds.nvideos, dt, omp_get_max_threads());
    assert_int_equal(ds.nclips, 41);
    assert_int_equal(ds.skipped_clips, 0);
    int *tr, *va, nt, nv;
    assert_int_equal(dataset_split(&ds, 0.2, 1, &tr, &nt, &va, &nv), 0);
    check_split(&ds, tr, nt, va, nv);
    printf("    split 0.2: %d train, %d validation clips\n", nt, nv);
    free(tr);
    free(va);
    dataset_close(&ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_order),
        cmocka_unit_test(test_open_synth),
        cmocka_unit_test(test_resize_and_threads),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_natural_order_and_ignored),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_corrupt_frame),
        cmocka_unit_test(test_too_few_frames),
        cmocka_unit_test(test_mixed_sizes),
        cmocka_unit_test(test_bad_roots),
        cmocka_unit_test(test_jpeg_frames),
        cmocka_unit_test(test_real_data),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
