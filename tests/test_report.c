// report: the HTML report of `mdgan report` on a real SQLite file and real run folders
// in a fresh temporary folder each: two runs (one with both stages and one still at
// Stage I, with HTML in its name), checkpoints, metrics with a NaN and unknown names,
// events with <script> in their text, contact sheets and GIFs written by image.h.
// Checked: what index.html says and escapes, the chart count, the copies (chart.js,
// the newest samples, prediction sheets), the refusals (unknown run, no Chart.js), a
// refresh over an old report, and, when chromium is installed, the page in a real
// headless browser: every chart drawn, no error on the console.
#include "testutil.h"

#include <dirent.h>

#include "mdgan/config.h"
#include "mdgan/db.h"
#include "mdgan/fileio.h"
#include "mdgan/image.h"
#include "mdgan/report.h"

#define CHROMIUM "/usr/bin/chromium"

// Names that must come out escaped wherever the page shows them.
static const char *RUN_A = "alpha";
static const char *RUN_B = "beta<i>&x";
static const char *EVIL_EVENT = "<script>alert(1)</script> & more";
static const char *EVIL_METRIC = "x</script><script>alert(2)</script>";

// Charts of the fixture: base 6 (D and G losses, PSNR, SSIM, L1, motion), refine 11
// (D, G, batch Gram losses, PSNR, SSIM, L1, motion, Gram, other losses, EVIL_METRIC and
// a name that is not UTF-8).
enum { FIXTURE_CHARTS = 17 };

enum { T = 4, S = 16 };

typedef struct {
    char dir[4096];
    char db[4200], runs[4200], out[4200];
} Fx;

static void fx_path(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fx_path(char *out, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= n) fail_msg("path too long");
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// noinline: inlined, gcc 12 takes the returned buffer for a pointer to the local
// variable that received it (-Wdangling-pointer).
__attribute__((noinline)) static char *slurp(const char *path) {
    unsigned char *buf;
    size_t n;
    if (fio_read_all(path, &buf, &n) != 0) fail_msg("%s", mdgan_errmsg());
    return (char *)buf;
}

static int same_bytes(const char *a, const char *b) {
    unsigned char *x, *y;
    size_t nx, ny;
    if (fio_read_all(a, &x, &nx) != 0) fail_msg("%s", mdgan_errmsg());
    if (fio_read_all(b, &y, &ny) != 0) fail_msg("%s", mdgan_errmsg());
    int same = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return same;
}

static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void expect_has(const char *page, const char *needle) {
    if (!strstr(page, needle)) fail_msg("index.html lacks '%s'", needle);
}

static void expect_msg_has(const char *needle) {
    const char *m = mdgan_errmsg();
    printf("    message: %s\n", m);
    if (!strstr(m, needle)) fail_msg("message lacks '%s': %s", needle, m);
}

// ---- the fixture

static Db *open_ok(const char *path) {
    Db *db = db_open(path, 0);
    if (!db) fail_msg("db_open %s: %s", path, mdgan_errmsg());
    return db;
}

static void ok(int rc, const char *what) {
    if (rc != 0) fail_msg("%s: %s", what, mdgan_errmsg());
}

static int64_t add_run(Db *db, const char *name, const char *run_dir) {
    Config c;
    config_defaults(&c);
    char set[4400];
    snprintf(set, sizeof set, "run.dir=%s", run_dir);
    ok(config_set(&c, set), "config_set");
    snprintf(set, sizeof set, "run.name=%s", name);
    ok(config_set(&c, set), "config_set");
    ok(config_set(&c, "data.size=16"), "config_set");
    ok(config_set(&c, "data.frames=4"), "config_set");
    char *text, sha[65];
    ok(config_to_text(&c, &text), "config_to_text");
    ok(config_sha256(&c, sha), "config_sha256");
    int64_t id;
    ok(db_run_create(db, name, text, sha, &id), "db_run_create");
    free(text);
    return id;
}

static void add_stage(Db *db, int64_t run, const char *stage, const char *status, int64_t step, const char *exit) {
    DbStage s = {.stage = stage, .status = status, .pid = 0, .step = step, .total_steps = 100, .rate = 1.5,
                 .heartbeat = 1.7e9, .restarts = exit ? 1 : 0, .exit_status = exit};
    ok(db_stage_put(db, run, &s), "db_stage_put");
}

static void add_ckpt(Db *db, int64_t run, const char *stage, int64_t step) {
    char path[64];
    snprintf(path, sizeof path, "checkpoints/%s_step_%08lld.safetensors", stage, (long long)step);
    DbCheckpoint c = {.stage = stage, .step = step, .epoch = step / 5, .path = path, .bytes = 123456,
                      .sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"};
    ok(db_ckpt_add(db, run, &c, NULL), "db_ckpt_add");
}

// Every name of names gets a value at each step, from a curve that depends on the name.
static void add_metrics(Db *db, int64_t run, const char *stage, const char *const *names, int n, int nsteps) {
    for (int s = 0; s < nsteps; s++) {
        DbMetric m[32];
        for (int i = 0; i < n; i++) m[i] = (DbMetric){names[i], 1.0 + 0.3 * i + 1.0 / (1.0 + s)};
        ok(db_metrics_add(db, run, stage, (int64_t)s * 10, m, n), "db_metrics_add");
    }
}

static void fill_video(float *v, int seed) {   // (3, T, S, S) in [-1, 1]
    for (int c = 0; c < 3; c++)
        for (int t = 0; t < T; t++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++)
                    v[(((size_t)c * T + t) * S + y) * S + x] =
                        (float)(((x + y + 3 * t + 5 * c + seed) % 16) / 7.5 - 1.0);
}

// A contact sheet (and its GIF) of nrows clips; zoom as the trainer enlarges frames
// (1: the unenlarged frames of an older trainer).
static void write_samples(const char *dir, const char *stage, long step, int nrows, int zoom, int gif, int seed) {
    float *v = malloc((size_t)nrows * 3 * T * S * S * sizeof(float));
    assert_non_null(v);
    const float *rows[8], *show[8];
    for (int r = 0; r < nrows; r++) {
        fill_video(v + (size_t)r * 3 * T * S * S, seed + r);
        rows[r] = v + (size_t)r * 3 * T * S * S;
    }
    float *big = NULL;
    ok(image_zoom_videos(show, &big, rows, nrows, T, S, S, zoom), "image_zoom_videos");
    char path[4400];
    fx_path(path, sizeof path, "%s/samples", dir);
    ok(fio_mkdir_p(path, 0755), "mkdir");
    fx_path(path, sizeof path, "%s/samples/%s_step_%08ld.png", dir, stage, step);
    ok(image_save_contact_sheet(path, show, nrows, T, S * zoom, S * zoom, 2), "contact sheet");
    fx_path(path, sizeof path, "%s/samples/%s_step_%08ld.gif", dir, stage, step);
    if (gif) ok(image_save_gif(path, show, nrows, T, S * zoom, S * zoom, 12), "gif");
    fx_path(path, sizeof path, "%s/samples/%s_metrics_step_%08ld.json", dir, stage, step);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"stage\": \"%s\", \"step\": %ld, \"val_clips\": 2, \"overall\": {\"y1\": {\"psnr\": 15.5, "
               "\"ssim\": 0.41, \"l1\": 0.25}, \"copy_first\": {\"psnr\": 20.8}, \"gram_y1\": 1.25}}\n",
            stage, step);
    fclose(f);
    free(big);
    free(v);
}

// sub: "y2" (a prediction beside the run) or "predict/y1" (the coordinator's).
static void write_prediction_sheet(const char *dir, const char *sub) {
    float v[3 * T * S * S];
    fill_video(v, 9);
    const float *rows[1] = {v};
    char path[4400];
    fx_path(path, sizeof path, "%s/%s", dir, sub);
    ok(fio_mkdir_p(path, 0755), "mkdir");
    fx_path(path, sizeof path, "%s/%s/contact_sheet.png", dir, sub);
    ok(image_save_contact_sheet(path, rows, 1, T, S, S, 2), "prediction sheet");
}

static const char *const BASE_NAMES[] = {"val_l1", "psnr", "ssim", "motion_ratio",
                                         "loss.d_real", "loss.d_fake", "loss.g_adv", "loss.g_l1"};
static const char *const REFINE_NAMES[] = {
    "val_l1", "psnr", "ssim", "motion_ratio", "y1_l1", "y1_psnr", "y1_ssim", "y1_motion_ratio", "gram_y1",
    "gram_y2", "loss.d_real", "loss.d_fake", "loss.d_rank", "loss.g_adv", "loss.g_l1", "loss.g_rank",
    "loss.batch_gram_y1", "loss.batch_gram_y2", "loss.extra"};

// Run A: base done (samples not enlarged: frames of 16 px), refine running after a
// restart, a NaN, a metric name with </script>, an event with <script>, a prediction
// sheet, the evaluation after training. Run B: base running with 128 px frames, fewer
// metrics, no GIF, the coordinator's prediction sheet.
// config_dir: the run.dir the snapshots name (the real folder, or a wrong one).
static void fx_make(Fx *fx, const char *config_dir) {
    make_tmpdir(fx->dir, sizeof fx->dir);
    fx_path(fx->db, sizeof fx->db, "%s/coord.db", fx->dir);
    fx_path(fx->runs, sizeof fx->runs, "%s/runs", fx->dir);
    fx_path(fx->out, sizeof fx->out, "%s/report", fx->dir);
    Db *db = open_ok(fx->db);
    const char *cdir = config_dir ? config_dir : fx->runs;
    int64_t a = add_run(db, RUN_A, cdir), b = add_run(db, RUN_B, cdir);
    ok(db_run_set_status(db, a, "running"), "status");
    add_stage(db, a, "base", "done", 100, "mdgan-base exited normally");
    add_stage(db, a, "refine", "running", 40, "mdgan-refine killed by SIGKILL");
    add_stage(db, b, "base", "running", 20, NULL);
    for (int s = 1; s <= 3; s++) add_ckpt(db, a, "base", s * 10);
    add_ckpt(db, a, "refine", 40);
    ok(db_ckpt_invalidate(db, 1), "invalidate");
    add_metrics(db, a, "base", BASE_NAMES, 8, 5);
    add_metrics(db, a, "refine", REFINE_NAMES, 19, 4);
    DbMetric odd[3] = {{"psnr", NAN}, {EVIL_METRIC, 0.5}, {"not\xffutf8", 0.25}};
    ok(db_metrics_add(db, a, "refine", 50, odd, 3), "NaN metric");
    DbMetric eval[4] = {{"y1.psnr", 17.25}, {"y1.ssim", 0.5}, {"y2.psnr", 18.5}, {"y2.ssim", NAN}};
    ok(db_metrics_add(db, a, REPORT_EVAL_STAGE, 40, eval, 4), "evaluation metrics");
    const char *const b_names[] = {"psnr", "loss.g_l1"};
    add_metrics(db, b, "base", b_names, 2, 3);
    ok(db_event_add(db, a, "info", "base started"), "event");
    ok(db_event_add(db, a, "warn", EVIL_EVENT), "event");
    ok(db_event_add(db, b, "error", "mdgan-base exited with status 1"), "event");
    db_close(db);

    char ra[4400], rb[4400];
    fx_path(ra, sizeof ra, "%s/%s", fx->runs, RUN_A);
    fx_path(rb, sizeof rb, "%s/%s", fx->runs, RUN_B);
    write_samples(ra, "base", 10, 4, 1, 1, 0);
    write_samples(ra, "base", 20, 4, 1, 1, 3);   // the newest: this one is shown
    write_samples(ra, "refine", 30, 6, 1, 1, 5);
    write_prediction_sheet(ra, "y2");
    write_prediction_sheet(rb, "predict/y1");
    write_samples(rb, "base", 20, 2, image_view_zoom(S), 0, 7);
}

static char *report_ok(const Fx *fx, const char *runs_dir, const char *const *names, int n) {
    Db *db = db_open(fx->db, 1);
    if (!db) fail_msg("db_open read-only: %s", mdgan_errmsg());
    int rc = report_write(db, names, n, runs_dir, fx->out);
    db_close(db);
    if (rc != 0) fail_msg("report_write: %s", mdgan_errmsg());
    char path[4400];
    fx_path(path, sizeof path, "%s/index.html", fx->out);
    return slurp(path);
}

static void expect_out_file(const Fx *fx, const char *rel) {
    char path[4400];
    fx_path(path, sizeof path, "%s/%s", fx->out, rel);
    if (!file_exists(path)) fail_msg("report lacks %s", rel);
}

// out_dir/rel is a copy of the run folder's file src_rel.
static void expect_copy(const Fx *fx, const char *rel, const char *run, const char *src_rel) {
    char a[4400], b[4400];
    fx_path(a, sizeof a, "%s/%s", fx->out, rel);
    fx_path(b, sizeof b, "%s/%s/%s", fx->runs, run, src_rel);
    expect_out_file(fx, rel);
    if (!same_bytes(a, b)) fail_msg("%s is not a copy of %s", a, b);
}

// ---- tests

static const char *const BOTH[] = {"alpha", "beta<i>&x"};

static void test_two_runs(void **state) {
    (void)state;
    Fx fx;
    fx_make(&fx, NULL);
    char *page = report_ok(&fx, NULL, BOTH, 2);
    expect_has(page, "<title>mdgan report: alpha, beta&lt;i&gt;&amp;x</title>");
    expect_has(page, "<h2 id=\"run-2\">Run beta&lt;i&gt;&amp;x</h2>");
    assert_null(strstr(page, "beta<i>"));
    expect_has(page, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more");
    assert_null(strstr(page, "<script>alert"));
    assert_int_equal(count_of(page, "</script>"), 3);   // chart.min.js, the data, the renderer
    expect_has(page, "x\\u003c/script\\u003e\\u003cscript\\u003ealert(2)");
    char want[64];
    snprintf(want, sizeof want, "data-charts-expected=\"%d\"", FIXTURE_CHARTS);
    expect_has(page, want);
    assert_int_equal(count_of(page, "<canvas id=\"chart-"), FIXTURE_CHARTS);
    expect_has(page, "[50,null]");   // the NaN: a gap
    expect_has(page, "\"not?utf8\"");
    // summary: statuses, steps, exit status, restarts
    expect_has(page, "<span class=\"st-running\">running</span>");
    expect_has(page, "40 / 100 (40%)");
    expect_has(page, "mdgan-refine killed by SIGKILL");
    // checkpoints: short sha, the invalidated one marked
    expect_has(page, ">ba7816bf8f01<");
    assert_int_equal(count_of(page, "<tr class=\"invalid\">"), 1);
    // the config snapshot, escaped
    expect_has(page, "name = beta&lt;i&gt;&amp;x");
    // nothing from the network
    assert_null(strstr(page, "src=\"http"));
    assert_null(strstr(page, "href=\"http"));
    assert_null(strstr(page, "url(http"));
    // copies: Chart.js, the newest samples, the prediction sheet
    char cj[4400];
    fx_path(cj, sizeof cj, "%s/chart.min.js", fx.out);
    assert_true(same_bytes(cj, REPORT_CHARTJS_PATH));
    expect_copy(&fx, "img/alpha_base.png", RUN_A, "samples/base_step_00000020.png");
    expect_copy(&fx, "img/alpha_base.gif", RUN_A, "samples/base_step_00000020.gif");
    expect_copy(&fx, "img/alpha_refine.png", RUN_A, "samples/refine_step_00000030.png");
    expect_copy(&fx, "img/alpha_refine.gif", RUN_A, "samples/refine_step_00000030.gif");
    expect_copy(&fx, "img/alpha_y2_sheet.png", RUN_A, "y2/contact_sheet.png");
    expect_copy(&fx, "img/beta_i__x_base.png", RUN_B, "samples/base_step_00000020.png");
    expect_has(page, "src=\"img/alpha_base.png\"");
    expect_has(page, "src=\"img/beta_i__x_base.png\"");
    assert_null(strstr(page, "beta_i__x_base.gif"));
    // frames of 16 px shown 8 times wider, nearest neighbour (sheet 4*16+3*2 = 70 px);
    // frames of 128 px as they are
    expect_has(page, "class=\"px\" width=\"560\"");
    expect_has(page, "alt=\"contact sheet\" width=\"518\">");
    expect_has(page, "copy first frame (baseline)");
    expect_copy(&fx, "img/beta_i__x_y1_sheet.png", RUN_B, "predict/y1/contact_sheet.png");
    // the evaluation after training: a table, not a chart
    expect_has(page, "<th>every validation clip (step 40)</th><th>psnr</th><th>ssim</th></tr>\n"
                     "<tr><td>y1</td><td class=\"num\">17.25</td><td class=\"num\">0.5</td></tr>\n"
                     "<tr><td>y2</td><td class=\"num\">18.5</td><td class=\"num\">-</td></tr>");
    assert_null(strstr(page, "\"predict: "));
    free(page);
    rm_rf(fx.dir);
}

static void test_runs_dir_override(void **state) {
    (void)state;
    Fx fx;
    fx_make(&fx, "/nonexistent/elsewhere");
    char *page = report_ok(&fx, fx.runs, BOTH, 2);
    expect_out_file(&fx, "img/alpha_refine.png");
    expect_has(page, "src=\"img/alpha_refine.png\"");
    free(page);
    // without the override the folders named by the snapshots are missing: still a page
    page = report_ok(&fx, NULL, BOTH, 1);
    expect_has(page, "/nonexistent/elsewhere/alpha <span class=\"warn\">(not found)</span>");
    expect_has(page, "No samples yet");
    assert_null(strstr(page, "src=\"img/"));
    free(page);
    rm_rf(fx.dir);
}

static void test_unknown_run_fails(void **state) {
    (void)state;
    Fx fx;
    fx_make(&fx, NULL);
    Db *db = db_open(fx.db, 1);
    assert_non_null(db);
    const char *names[] = {"alpha", "nosuch<run>"};
    assert_int_equal(report_write(db, names, 2, NULL, fx.out), -1);
    expect_msg_has("nosuch<run>");
    char path[4400];
    fx_path(path, sizeof path, "%s/index.html", fx.out);
    assert_false(file_exists(path));
    db_close(db);
    rm_rf(fx.dir);
}

static void test_empty_run(void **state) {
    (void)state;
    Fx fx;
    make_tmpdir(fx.dir, sizeof fx.dir);
    fx_path(fx.db, sizeof fx.db, "%s/coord.db", fx.dir);
    fx_path(fx.runs, sizeof fx.runs, "%s/runs", fx.dir);
    fx_path(fx.out, sizeof fx.out, "%s/out/deeper", fx.dir);
    Db *db = open_ok(fx.db);
    add_run(db, "fresh", fx.runs);
    db_close(db);
    const char *names[] = {"fresh"};
    char *page = report_ok(&fx, NULL, names, 1);
    expect_has(page, "data-charts-expected=\"0\"");
    expect_has(page, "No metrics recorded yet.");
    expect_has(page, "No stage has started.");
    expect_has(page, "<span class=\"st-created\">created</span>");
    expect_out_file(&fx, "chart.min.js");
    free(page);
    rm_rf(fx.dir);
}

static void test_missing_chartjs(void **state) {
    (void)state;
    Fx fx;
    fx_make(&fx, NULL);
    setenv("MDGAN_CHARTJS", "/nonexistent/chart.min.js", 1);
    Db *db = db_open(fx.db, 1);
    assert_non_null(db);
    int rc = report_write(db, BOTH, 1, NULL, fx.out);
    unsetenv("MDGAN_CHARTJS");
    db_close(db);
    assert_int_equal(rc, -1);
    expect_msg_has(REPORT_CHARTJS_PACKAGE);
    rm_rf(fx.dir);
}

// No temporary file is left in dir (a copy or page that was not renamed into place).
static void expect_no_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp")) fail_msg("temporary file left: %s/%s", dir, e->d_name);
    closedir(d);
}

// A second report over the first (the coordinator refreshes one during a run) shows the
// new newest sample and leaves no temporary behind.
static void test_refresh(void **state) {
    (void)state;
    Fx fx;
    fx_make(&fx, NULL);
    free(report_ok(&fx, NULL, BOTH, 2));
    char ra[4400];
    fx_path(ra, sizeof ra, "%s/%s", fx.runs, RUN_A);
    write_samples(ra, "base", 30, 4, 1, 1, 11);
    char *page = report_ok(&fx, NULL, BOTH, 2);
    expect_copy(&fx, "img/alpha_base.png", RUN_A, "samples/base_step_00000030.png");
    expect_has(page, "base at step 30");
    free(page);
    char img[4400];
    fx_path(img, sizeof img, "%s/img", fx.out);
    expect_no_temporaries(fx.out);
    expect_no_temporaries(img);
    rm_rf(fx.dir);
}

// ---- the page in a real browser

// The value of attribute attr="N" of the dumped <body>, or -1.
static int body_attr(const char *dom, const char *attr) {
    const char *body = strstr(dom, "<body");
    char pat[64];
    snprintf(pat, sizeof pat, " %s=\"", attr);
    const char *p = body ? strstr(body, pat) : NULL;
    const char *end = body ? strchr(body, '>') : NULL;
    return p && p < end ? atoi(p + strlen(pat)) : -1;
}

// Loads out_dir/index.html in headless chromium; 0 when every chart was drawn (body
// data-charts and the canvases Chart.js sized equal want) and the page wrote nothing to
// the console, else -1 with what went wrong in why.
static int browser_check(const Fx *fx, int want, char *why, size_t whyn) {
    char dom[4400], err[4400], cmd[16384];
    fx_path(dom, sizeof dom, "%s/dom.html", fx->dir);
    fx_path(err, sizeof err, "%s/chromium.log", fx->dir);
    fx_path(cmd, sizeof cmd,
            "timeout 60 " CHROMIUM " --headless --no-sandbox --disable-gpu --enable-logging=stderr --v=0 "
            "--user-data-dir='%s/chromium-profile' --virtual-time-budget=5000 --dump-dom 'file://%s/index.html' "
            ">'%s' 2>'%s'",
            fx->dir, fx->out, dom, err);
    int st = system(cmd);
    if (st != 0) {
        snprintf(why, whyn, "chromium failed (status %d); see %.200s", st, err);
        return -1;
    }
    char *d = slurp(dom), *e = slurp(err);
    int charts = body_attr(d, "data-charts"), drawn = count_of(d, "box-sizing: border-box");
    // Console lines of the page look like: [..:INFO:CONSOLE:4] "Uncaught ...", source: file:///...
    const char *console = strstr(e, "source: file://");
    const char *uncaught = strstr(e, "Uncaught");
    int rc = 0;
    if (charts != want || drawn != want) {
        snprintf(why, whyn, "data-charts=%d and %d drawn canvases, expected %d", charts, drawn, want);
        rc = -1;
    } else if (console || uncaught) {
        const char *at = uncaught ? uncaught : console;
        const char *line = at;
        while (line > e && line[-1] != '\n') line--;
        snprintf(why, whyn, "the page wrote to the console: %.300s", line);
        rc = -1;
    }
    printf("    chromium: data-charts=%d, %d canvases drawn, console %s\n", charts, drawn,
           console || uncaught ? "has messages" : "clean");
    free(d);
    free(e);
    return rc;
}

static void test_browser(void **state) {
    (void)state;
    if (access(CHROMIUM, X_OK) != 0) {
        printf("    skipped: %s is not installed\n", CHROMIUM);
        skip();
    }
    Fx fx;
    fx_make(&fx, NULL);
    free(report_ok(&fx, NULL, BOTH, 2));
    char why[600];
    if (browser_check(&fx, FIXTURE_CHARTS, why, sizeof why) != 0) fail_msg("%s", why);
    // The check can fail: without Chart.js no chart is drawn and the page says so on
    // the console.
    char cj[4400];
    fx_path(cj, sizeof cj, "%s/chart.min.js", fx.out);
    assert_int_equal(unlink(cj), 0);
    assert_int_equal(browser_check(&fx, FIXTURE_CHARTS, why, sizeof why), -1);
    printf("    without chart.min.js: %s\n", why);
    rm_rf(fx.dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_runs),
        cmocka_unit_test(test_runs_dir_override),
        cmocka_unit_test(test_unknown_run_fails),
        cmocka_unit_test(test_empty_run),
        cmocka_unit_test(test_missing_chartjs),
        cmocka_unit_test(test_refresh),
        cmocka_unit_test(test_browser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
