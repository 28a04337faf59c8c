// The HTML report of `mdgan report` (include/mdgan/report.h).
//
// report_write reads everything it shows first (database rows, then the run folders'
// samples, copied into out_dir/img), then builds the chart data as JSON with jansson
// and the page as one string, and writes index.html last, atomically.
#include "mdgan/report.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "mdgan/config.h"
#include "mdgan/error.h"
#include "mdgan/fileio.h"
#include "mdgan/image.h"

// Events shown per run: the newest ones; a run restarting in a loop must not make a page
// a browser chokes on.
enum { REPORT_MAX_EVENTS = 2000, REPORT_MAX_STAGES = 16, SHEET_GAP = 2 };

// ---------------------------------------------------------------- text buffer

typedef struct {
    char *s;
    size_t len, cap;
    int oom;   // an append failed: the text is incomplete
} Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void buf_puts(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        buf_put(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf_put(b, big, (size_t)n);
    free(big);
}

// Text for an element or a quoted attribute; NULL is the empty text.
static void buf_html(Buf *b, const char *s) {
    if (!s) return;
    for (const char *p = s; *p; p++) {
        const char *e = NULL;
        switch (*p) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&quot;"; break;
        case '\'': e = "&#39;"; break;
        default: break;
        }
        if (e) buf_puts(b, e);
        else buf_put(b, p, 1);
    }
}

// ---------------------------------------------------------------- small helpers

// arr grown to hold n + 1 elements of elem bytes (doubling *cap); NULL when out of
// memory, arr then still being the caller's.
static void *arr_reserve(void *arr, size_t n, size_t *cap, size_t elem) {
    if (n < *cap) return arr;
    size_t c = *cap ? 2 * *cap : 16;
    void *p = realloc(arr, c * elem);
    if (p) *cap = c;
    return p;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int path_fmt(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int path_fmt(char *out, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= n) {
        MDGAN_ERR("path too long: %.200s...", out);
        return -1;
    }
    return 0;
}

// "2024-05-01 14:03:12 CEST" in local time; "-" for no time (0 or NaN).
static void fmt_time(char *out, size_t n, double t) {
    struct tm tm;
    time_t s = (time_t)t;
    if (!(t > 0) || !localtime_r(&s, &tm) || strftime(out, n, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
        snprintf(out, n, "-");
}

static void fmt_bytes(char *out, size_t n, int64_t bytes) {
    if (bytes < 10000) snprintf(out, n, "%lld B", (long long)bytes);
    else if (bytes < 1000000) snprintf(out, n, "%.1f kB", (double)bytes / 1e3);
    else snprintf(out, n, "%.1f MB", (double)bytes / 1e6);
}

// base and refine first (the order of the pipeline), any other stage after, by name.
static int stage_cmp(const char *a, const char *b) {
    int ra = !strcmp(a, "base") ? 0 : !strcmp(a, "refine") ? 1 : 2;
    int rb = !strcmp(b, "base") ? 0 : !strcmp(b, "refine") ? 1 : 2;
    return ra != rb ? ra - rb : strcmp(a, b);
}

// A file-name-safe form of a name (letters, digits, '.', '-', '_'; others become '_').
static void safe_name(char *out, size_t n, const char *s) {
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++)
        out[i] = isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-' || s[i] == '_' ? s[i] : '_';
    out[i] = '\0';
    if (out[0] == '.' || !out[0]) out[0] = '_';   // no hidden files, no empty names
}

// ---------------------------------------------------------------- what a run holds

typedef struct {
    char *stage, *status, *exit_status;
    int pid, restarts;
    int64_t step, total_steps;
    double rate, heartbeat, updated;
} RepStage;

typedef struct {
    char *stage, *path, *sha256;
    int64_t step, epoch, bytes;
    int valid;
    double created;
} RepCkpt;

typedef struct {
    char *stage, *name;
    int64_t step;
    double value;   // NaN: recorded as NULL
} RepMetric;

// One (stage, name) curve: metrics[first .. first + count).
typedef struct {
    const char *stage, *name;
    size_t first, count;
} RepSeries;

typedef struct {
    double time;
    char *level, *text;
} RepEvent;

// The newest samples of one stage in a run folder.
typedef struct {
    char stage[64];
    char digits[24];          // the step as written in the file names
    int64_t step;
    char png_src[4096];       // newest samples/<stage>_step_N.png
    char png[512], gif[512];  // copies, relative to out_dir ("" when missing)
    int png_w, gif_w;         // natural widths (0 unknown)
    json_t *overall;          // "overall" of samples/<stage>_metrics_step_N.json, or NULL
    int val_clips;
} RepSamples;

typedef struct {
    DbRun run;
    Config cfg;
    char cfg_err[512];   // "" when the config snapshot parsed
    char dir[4096];      // the run folder
    int dir_found;
    char stem[160];      // file-name-safe run name for the copied images
    RepStage *stages;
    size_t nstages, cap_stages;
    RepCkpt *ckpts;
    size_t nckpts, cap_ckpts;
    RepMetric *metrics;
    size_t nmetrics, cap_metrics;
    RepSeries *series;
    size_t nseries, cap_series;
    RepEvent *events;
    size_t nevents, cap_events;
    size_t events_dropped;   // older events beyond REPORT_MAX_EVENTS
    RepSamples samples[REPORT_MAX_STAGES];
    int nsamples;
    char pred[2][512];   // copies of [predict/]y1/, y2/contact_sheet.png ("" when absent)
    int pred_w[2];
} RepRun;

static void rep_run_free(RepRun *r) {
    for (size_t i = 0; i < r->nstages; i++) {
        free(r->stages[i].stage);
        free(r->stages[i].status);
        free(r->stages[i].exit_status);
    }
    for (size_t i = 0; i < r->nckpts; i++) {
        free(r->ckpts[i].stage);
        free(r->ckpts[i].path);
        free(r->ckpts[i].sha256);
    }
    for (size_t i = 0; i < r->nmetrics; i++) {
        free(r->metrics[i].stage);
        free(r->metrics[i].name);
    }
    for (size_t i = 0; i < r->nevents; i++) {
        free(r->events[i].level);
        free(r->events[i].text);
    }
    for (int i = 0; i < r->nsamples; i++) json_decref(r->samples[i].overall);
    free(r->stages);
    free(r->ckpts);
    free(r->metrics);
    free(r->series);
    free(r->events);
    db_run_free(&r->run);
}

// ---------------------------------------------------------------- reading the database

static int oom_in(const char *run, const char *what) {
    MDGAN_ERR("out of memory reading the %s of run '%s'", what, run);
    return -1;
}

static int on_stage(const DbStage *s, void *ctx) {
    RepRun *r = ctx;
    RepStage *v = arr_reserve(r->stages, r->nstages, &r->cap_stages, sizeof *v);
    if (!v) return oom_in(r->run.name, "stages");
    r->stages = v;
    RepStage *d = &v[r->nstages];
    *d = (RepStage){.pid = s->pid, .restarts = s->restarts, .step = s->step, .total_steps = s->total_steps,
                    .rate = s->rate, .heartbeat = s->heartbeat, .updated = s->updated};
    d->stage = strdup(s->stage);
    d->status = strdup(s->status);
    d->exit_status = dup_or_null(s->exit_status);
    r->nstages++;   // counted before the check, so rep_run_free releases what was copied
    if (!d->stage || !d->status || (s->exit_status && !d->exit_status)) return oom_in(r->run.name, "stages");
    return 0;
}

static int on_ckpt(const DbCheckpoint *c, void *ctx) {
    RepRun *r = ctx;
    RepCkpt *v = arr_reserve(r->ckpts, r->nckpts, &r->cap_ckpts, sizeof *v);
    if (!v) return oom_in(r->run.name, "checkpoints");
    r->ckpts = v;
    RepCkpt *d = &v[r->nckpts++];
    *d = (RepCkpt){.step = c->step, .epoch = c->epoch, .bytes = c->bytes, .valid = c->valid, .created = c->created};
    d->stage = strdup(c->stage);
    d->path = strdup(c->path);
    d->sha256 = strdup(c->sha256);
    if (!d->stage || !d->path || !d->sha256) return oom_in(r->run.name, "checkpoints");
    return 0;
}

static int on_metric(const char *stage, int64_t step, const char *name, double value, void *ctx) {
    RepRun *r = ctx;
    RepMetric *v = arr_reserve(r->metrics, r->nmetrics, &r->cap_metrics, sizeof *v);
    if (!v) return oom_in(r->run.name, "metrics");
    r->metrics = v;
    RepMetric *d = &v[r->nmetrics++];
    *d = (RepMetric){.stage = strdup(stage), .name = strdup(name), .step = step, .value = value};
    if (!d->stage || !d->name) return oom_in(r->run.name, "metrics");
    return 0;
}

static int on_event(double time, const char *level, const char *text, void *ctx) {
    RepRun *r = ctx;
    RepEvent *v = arr_reserve(r->events, r->nevents, &r->cap_events, sizeof *v);
    if (!v) return oom_in(r->run.name, "events");
    r->events = v;
    RepEvent *d = &v[r->nevents++];
    *d = (RepEvent){.time = time, .level = strdup(level), .text = strdup(text ? text : "")};
    if (!d->level || !d->text) return oom_in(r->run.name, "events");
    return 0;
}

// Keeps the newest REPORT_MAX_EVENTS (the list comes oldest first).
static void trim_events(RepRun *r) {
    if (r->nevents <= REPORT_MAX_EVENTS) return;
    size_t drop = r->nevents - REPORT_MAX_EVENTS;
    for (size_t i = 0; i < drop; i++) {
        free(r->events[i].level);
        free(r->events[i].text);
    }
    memmove(r->events, r->events + drop, REPORT_MAX_EVENTS * sizeof *r->events);
    r->nevents = REPORT_MAX_EVENTS;
    r->events_dropped = drop;
}

static int metric_cmp(const void *pa, const void *pb) {
    const RepMetric *a = pa, *b = pb;
    int c = stage_cmp(a->stage, b->stage);
    if (!c) c = strcmp(a->name, b->name);
    if (!c) c = (a->step > b->step) - (a->step < b->step);
    return c;
}

// Sorts the metrics by stage, name, step (whatever order the query gave) and cuts
// them into one series per (stage, name).
static int index_series(RepRun *r) {
    if (r->nmetrics) qsort(r->metrics, r->nmetrics, sizeof *r->metrics, metric_cmp);
    for (size_t i = 0; i < r->nmetrics; i++) {
        const RepMetric *m = &r->metrics[i];
        RepSeries *last = r->nseries ? &r->series[r->nseries - 1] : NULL;
        if (last && !strcmp(last->stage, m->stage) && !strcmp(last->name, m->name)) {
            last->count++;
            continue;
        }
        RepSeries *v = arr_reserve(r->series, r->nseries, &r->cap_series, sizeof *v);
        if (!v) return oom_in(r->run.name, "metrics");
        r->series = v;
        v[r->nseries++] = (RepSeries){.stage = m->stage, .name = m->name, .first = i, .count = 1};
    }
    return 0;
}

// The config snapshot gives the run folder and the frame size; one that does not parse
// is shown as it is, and only fails the report when the folder has to come from it.
static int parse_config(RepRun *r, const char *runs_dir) {
    char what[300];
    snprintf(what, sizeof what, "config snapshot of run '%s'", r->run.name);
    config_defaults(&r->cfg);
    if (config_parse(&r->cfg, r->run.config ? r->run.config : "", what) != 0) {
        if (!runs_dir) {
            mdgan_errctx("cannot find the run folder of run '%s'", r->run.name);
            return -1;
        }
        snprintf(r->cfg_err, sizeof r->cfg_err, "%s", mdgan_errmsg());
        mdgan_errclear();
        return path_fmt(r->dir, sizeof r->dir, "%s/%s", runs_dir, r->run.name);
    }
    return path_fmt(r->dir, sizeof r->dir, "%s/%s", runs_dir ? runs_dir : r->cfg.run.dir, r->cfg.run.name);
}

static int load_run(Db *db, const char *name, const char *runs_dir, RepRun *r) {
    int rc = db_run_get(db, name, &r->run);
    if (rc != 0) return -1;   // 1: "no run named 'x' in <file>" is the message
    if (parse_config(r, runs_dir) != 0) return -1;
    struct stat st;
    r->dir_found = stat(r->dir, &st) == 0 && S_ISDIR(st.st_mode);
    if (db_stages_list(db, r->run.id, on_stage, r) != 0 || db_metrics_list(db, r->run.id, on_metric, r) != 0 ||
        db_events_list(db, r->run.id, on_event, r) != 0) {
        mdgan_errctx("report of run '%s'", name);
        return -1;
    }
    for (size_t i = 0; i < r->nstages; i++)
        if (db_ckpts_list(db, r->run.id, r->stages[i].stage, on_ckpt, r) != 0) {
            mdgan_errctx("report of run '%s'", name);
            return -1;
        }
    trim_events(r);
    return index_series(r);
}

// Image file names stay unique even when two run names map to the same safe name.
static void assign_stems(RepRun *runs, int nruns) {
    for (int i = 0; i < nruns; i++) safe_name(runs[i].stem, sizeof runs[i].stem, runs[i].run.name);
    for (int i = 0; i < nruns; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(runs[i].stem, runs[j].stem)) {
                for (int k = 0; k < nruns; k++) snprintf(runs[k].stem, sizeof runs[k].stem, "run%d", k + 1);
                return;
            }
}

// ---------------------------------------------------------------- files

// Copies src to dst through a temporary name and a rename (fio_write_atomic), unless dst
// already holds the same bytes: a refresh every few minutes rewrites nothing that did
// not change.
static int copy_file(const char *src, const char *dst) {
    unsigned char *a, *b;
    size_t na, nb;
    if (fio_read_all(src, &a, &na) != 0) return -1;
    struct stat st;
    if (stat(dst, &st) == 0 && (size_t)st.st_size == na && fio_read_all(dst, &b, &nb) == 0) {
        int same = nb == na && memcmp(a, b, na) == 0;
        free(b);
        if (same) {
            free(a);
            return 0;
        }
    }
    mdgan_errclear();
    const void *bufs[1] = {a};
    const size_t lens[1] = {na};
    int rc = fio_write_atomic(dst, bufs, lens, 1);
    free(a);
    if (rc != 0) mdgan_errctx("copying %s", src);
    return rc;
}

// Width and height from a PNG's IHDR or a GIF's logical screen; -1 (no message) when
// the file is neither or unreadable: the page then shows the image at its own size.
static int image_file_size(const char *path, int *w, int *h) {
    unsigned char hd[24];
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(hd, 1, sizeof hd, f);
    fclose(f);
    if (n >= 24 && !memcmp(hd, "\x89PNG\r\n\x1a\n", 8) && !memcmp(hd + 12, "IHDR", 4)) {
        *w = (int)((unsigned)hd[16] << 24 | (unsigned)hd[17] << 16 | (unsigned)hd[18] << 8 | hd[19]);
        *h = (int)((unsigned)hd[20] << 24 | (unsigned)hd[21] << 16 | (unsigned)hd[22] << 8 | hd[23]);
    } else if (n >= 10 && !memcmp(hd, "GIF8", 4)) {
        *w = hd[6] | hd[7] << 8;
        *h = hd[8] | hd[9] << 8;
    } else {
        return -1;
    }
    return *w > 0 && *h > 0 ? 0 : -1;
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// Copies a run folder's file to out_dir/img/<name>; rel receives "img/<name>" and *w the
// image's width.
static int copy_image(const char *src, const char *out_dir, const char *name, char *rel, size_t reln, int *w) {
    char dst[4600];
    if (path_fmt(rel, reln, "img/%s", name) != 0 || path_fmt(dst, sizeof dst, "%s/%s", out_dir, rel) != 0)
        return -1;
    if (copy_file(src, dst) != 0) return -1;
    int h;
    if (image_file_size(dst, w, &h) != 0) *w = 0;
    return 0;
}

// ---------------------------------------------------------------- samples

// "<stage>_step_<digits>.png": 1 with the stage and the digits, 0 for any other name.
static int parse_sheet_name(const char *fname, char *stage, size_t stagen, char *digits, size_t digitsn) {
    size_t n = strlen(fname);
    if (n < 5 || strcmp(fname + n - 4, ".png")) return 0;
    const char *mark = NULL;
    for (const char *p = strstr(fname, "_step_"); p; p = strstr(p + 1, "_step_")) mark = p;
    if (!mark || mark == fname) return 0;
    const char *d = mark + 6, *end = fname + n - 4;
    size_t nd = (size_t)(end - d);
    if (nd == 0 || nd >= digitsn || nd > 18) return 0;
    for (const char *p = d; p < end; p++)
        if (!isdigit((unsigned char)*p)) return 0;
    size_t ns = (size_t)(mark - fname);
    if (ns >= stagen) return 0;
    memcpy(stage, fname, ns);
    stage[ns] = '\0';
    memcpy(digits, d, nd);
    digits[nd] = '\0';
    return 1;
}

static RepSamples *samples_slot(RepRun *r, const char *stage) {
    for (int i = 0; i < r->nsamples; i++)
        if (!strcmp(r->samples[i].stage, stage)) return &r->samples[i];
    if (r->nsamples == REPORT_MAX_STAGES) return NULL;
    RepSamples *s = &r->samples[r->nsamples++];
    memset(s, 0, sizeof *s);
    snprintf(s->stage, sizeof s->stage, "%s", stage);
    s->step = -1;
    return s;
}

static int samples_cmp(const void *a, const void *b) {
    return stage_cmp(((const RepSamples *)a)->stage, ((const RepSamples *)b)->stage);
}

// The newest contact sheet of every stage in <run folder>/samples, in stage order.
static int find_samples(RepRun *r) {
    char dir[4200];
    if (path_fmt(dir, sizeof dir, "%s/samples", r->dir) != 0) return -1;
    DIR *d = opendir(dir);
    if (!d) return 0;   // no samples yet
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        char stage[64], digits[24];
        if (!parse_sheet_name(e->d_name, stage, sizeof stage, digits, sizeof digits)) continue;
        int64_t step = strtoll(digits, NULL, 10);
        RepSamples *s = samples_slot(r, stage);
        if (!s || step <= s->step) continue;
        s->step = step;
        snprintf(s->digits, sizeof s->digits, "%s", digits);
        rc = path_fmt(s->png_src, sizeof s->png_src, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(r->samples, (size_t)r->nsamples, sizeof r->samples[0], samples_cmp);
    return rc;
}

// "overall" and "val_clips" of the step's metrics file; a missing or unreadable one
// only leaves the table out (the curves have the same numbers).
static void load_sample_metrics(RepRun *r, RepSamples *s) {
    char path[4400];
    if (path_fmt(path, sizeof path, "%s/samples/%s_metrics_step_%s.json", r->dir, s->stage, s->digits) != 0) {
        mdgan_errclear();
        return;
    }
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc) return;
    json_t *overall = json_object_get(doc, "overall");
    if (json_is_object(overall)) s->overall = json_incref(overall);
    json_t *vc = json_object_get(doc, "val_clips");
    s->val_clips = json_is_integer(vc) ? (int)json_integer_value(vc) : 0;
    json_decref(doc);
}

static int copy_samples(RepRun *r, const char *out_dir) {
    for (int i = 0; i < r->nsamples; i++) {
        RepSamples *s = &r->samples[i];
        char safe[64], name[300], gif_src[4200];
        safe_name(safe, sizeof safe, s->stage);
        snprintf(name, sizeof name, "%s_%s.png", r->stem, safe);
        if (copy_image(s->png_src, out_dir, name, s->png, sizeof s->png, &s->png_w) != 0) return -1;
        size_t n = strlen(s->png_src);
        snprintf(gif_src, sizeof gif_src, "%.*s.gif", (int)(n - 4), s->png_src);
        snprintf(name, sizeof name, "%s_%s.gif", r->stem, safe);
        if (is_file(gif_src) && copy_image(gif_src, out_dir, name, s->gif, sizeof s->gif, &s->gif_w) != 0)
            return -1;
        load_sample_metrics(r, s);
    }
    return 0;
}

// y<N>/contact_sheet.png of the run folder, or predict/y<N>/ (where the coordinator's
// evaluation after training writes them).
static int copy_predictions(RepRun *r, const char *out_dir) {
    for (int k = 0; k < 2; k++) {
        char src[4200], name[300];
        if (path_fmt(src, sizeof src, "%s/predict/y%d/contact_sheet.png", r->dir, k + 1) != 0) return -1;
        if (!is_file(src) && path_fmt(src, sizeof src, "%s/y%d/contact_sheet.png", r->dir, k + 1) != 0) return -1;
        if (!is_file(src)) continue;
        snprintf(name, sizeof name, "%s_y%d_sheet.png", r->stem, k + 1);
        if (copy_image(src, out_dir, name, r->pred[k], sizeof r->pred[k], &r->pred_w[k]) != 0) return -1;
    }
    return 0;
}

static int collect_images(RepRun *r, const char *out_dir) {
    if (!r->dir_found) return 0;
    if (find_samples(r) != 0 || copy_samples(r, out_dir) != 0 || copy_predictions(r, out_dir) != 0) {
        mdgan_errctx("report of run '%s'", r->run.name);
        return -1;
    }
    return 0;
}

// The side of one frame of a contact sheet of width w: T frames and T-1 gaps in a row
// (a sheet of an older trainer was not enlarged, so the width says more than the
// config); the config's data.size times the zoom the trainer applies when the width
// does not divide so (a prediction sheet may show fewer frames).
static int sheet_frame_side(const RepRun *r, int w) {
    if (r->cfg_err[0]) return 0;   // unknown: shown as it is
    const int T = r->cfg.data.frames, S = r->cfg.data.size;
    if (w > 0 && T > 0 && (w + SHEET_GAP) % T == 0 && (w + SHEET_GAP) / T > SHEET_GAP)
        return (w + SHEET_GAP) / T - SHEET_GAP;
    return S * image_view_zoom(S);
}

// How many times wider the page shows a sheet so a frame is at least
// IMAGE_VIEW_MIN_SIDE pixels (nearest neighbour, CSS image-rendering: pixelated).
static int sheet_scale(int frame_side) {
    if (frame_side <= 0 || frame_side >= IMAGE_VIEW_MIN_SIDE) return 1;
    return (IMAGE_VIEW_MIN_SIDE + frame_side - 1) / frame_side;
}

// ---------------------------------------------------------------- chart model

// A chart of named metrics; names in legend order. Validation metrics of refine are
// Y2's under the plain names and Y1's under y1_, so each chart shows Y1 beside Y2.
typedef struct {
    const char *key, *title, *ylabel;
    const char *names[4];
} MetricGroup;

static const MetricGroup GROUPS[] = {
    {"loss.d", "discriminator losses", "loss", {"loss.d_real", "loss.d_fake", "loss.d_rank"}},
    {"loss.g", "generator losses", "loss", {"loss.g_adv", "loss.g_l1", "loss.g_rank"}},
    {"loss.batch_gram", "batch Gram distances (training)", "distance", {"loss.batch_gram_y1", "loss.batch_gram_y2"}},
    {"psnr", "PSNR (validation)", "PSNR (dB)", {"y1_psnr", "psnr"}},
    {"ssim", "SSIM (validation)", "SSIM", {"y1_ssim", "ssim"}},
    {"l1", "L1 (validation)", "mean |Y - real|", {"y1_l1", "val_l1"}},
    {"motion", "motion ratio (validation)", "motion / real motion", {"y1_motion_ratio", "motion_ratio"}},
    {"gram", "Gram distance to real (validation)", "distance", {"gram_y1", "gram_y2"}},
};
enum { NGROUPS = sizeof GROUPS / sizeof GROUPS[0] };

// The known group of a name and its place in the legend, or -1.
static int group_of(const char *name, int *rank) {
    for (int g = 0; g < NGROUPS; g++)
        for (int k = 0; k < 4 && GROUPS[g].names[k]; k++)
            if (!strcmp(GROUPS[g].names[k], name)) {
                *rank = k;
                return g;
            }
    return -1;
}

// The rest of a name that names an output, "y<N>_rest" or "y<N>.rest" (y1_psnr,
// y2.ssim), else NULL.
static const char *output_rest(const char *name) {
    if (name[0] != 'y' || !isdigit((unsigned char)name[1])) return NULL;
    const char *p = name + 1;
    while (isdigit((unsigned char)*p)) p++;
    return (*p == '_' || *p == '.') && p[1] ? p + 1 : NULL;
}

// The chart of a name no group knows: other losses share one; any other name shares
// one with its output forms (y1_foo and y2.foo beside foo). Points into name or a literal.
static const char *generic_key(const char *name) {
    if (!strncmp(name, "loss.", 5)) return "loss.*";
    const char *rest = output_rest(name);
    return rest ? rest : name;
}

typedef struct {
    const char *stage;   // borrowed from a run's metrics
    int group;           // GROUPS index, -1 generic
    const char *key;     // generic: generic_key of its names
    const char **names;  // union over the runs, legend order
    size_t nnames, cap;
} RepChart;

typedef struct {
    RepChart *v;
    size_t n, cap;
} ChartList;

static void charts_free(ChartList *cl) {
    for (size_t i = 0; i < cl->n; i++) free(cl->v[i].names);
    free(cl->v);
}

static RepChart *chart_for(ChartList *cl, const char *stage, const char *name) {
    int rank, g = group_of(name, &rank);
    const char *key = g >= 0 ? GROUPS[g].key : generic_key(name);
    for (size_t i = 0; i < cl->n; i++)
        if (!strcmp(cl->v[i].stage, stage) && cl->v[i].group == g && !strcmp(cl->v[i].key, key)) return &cl->v[i];
    RepChart *v = arr_reserve(cl->v, cl->n, &cl->cap, sizeof *v);
    if (!v) return NULL;
    cl->v = v;
    v[cl->n] = (RepChart){.stage = stage, .group = g, .key = key};
    return &v[cl->n++];
}

static int chart_add_name(RepChart *c, const char *name) {
    for (size_t i = 0; i < c->nnames; i++)
        if (!strcmp(c->names[i], name)) return 0;
    const char **v = arr_reserve(c->names, c->nnames, &c->cap, sizeof *v);
    if (!v) return -1;
    c->names = v;
    v[c->nnames++] = name;
    return 0;
}

static int name_cmp(const void *pa, const void *pb) {
    const char *a = *(const char *const *)pa, *b = *(const char *const *)pb;
    int ra = 99, rb = 99;
    group_of(a, &ra);
    group_of(b, &rb);
    return ra != rb ? ra - rb : strcmp(a, b);
}

static int chart_cmp(const void *pa, const void *pb) {
    const RepChart *a = pa, *b = pb;
    int c = stage_cmp(a->stage, b->stage);
    if (c) return c;
    int ga = a->group < 0 ? NGROUPS : a->group, gb = b->group < 0 ? NGROUPS : b->group;
    return ga != gb ? ga - gb : strcmp(a->key, b->key);
}

// One chart per (stage, group) that any run recorded a row for, in page order; the
// evaluation after training is one step, a table (html_eval_table), not curves.
static int build_charts(const RepRun *runs, int nruns, ChartList *cl) {
    for (int r = 0; r < nruns; r++)
        for (size_t i = 0; i < runs[r].nseries; i++) {
            const RepSeries *s = &runs[r].series[i];
            if (!strcmp(s->stage, REPORT_EVAL_STAGE)) continue;
            RepChart *c = chart_for(cl, s->stage, s->name);
            if (!c || chart_add_name(c, s->name) != 0) {
                MDGAN_ERR("out of memory building the charts");
                return -1;
            }
        }
    if (cl->n) qsort(cl->v, cl->n, sizeof *cl->v, chart_cmp);
    for (size_t i = 0; i < cl->n; i++) qsort(cl->v[i].names, cl->v[i].nnames, sizeof *cl->v[i].names, name_cmp);
    return 0;
}

static const RepSeries *series_find(const RepRun *r, const char *stage, const char *name) {
    for (size_t i = 0; i < r->nseries; i++)
        if (!strcmp(r->series[i].stage, stage) && !strcmp(r->series[i].name, name)) return &r->series[i];
    return NULL;
}

// The legend text of a curve within its chart: which output (Y1, Y2) or which loss.
static void series_label(char *out, size_t n, const char *stage, const char *name) {
    int rank, g = group_of(name, &rank);
    const char *rest = output_rest(name);
    if (!strncmp(name, "loss.", 5)) snprintf(out, n, "%s", name + 5);
    else if (!strncmp(name, "gram_y", 6)) snprintf(out, n, "Y%s", name + 6);
    else if (rest) snprintf(out, n, "Y%.*s", (int)(rest - 1 - (name + 1)), name + 1);
    else if (g >= 0 && !strcmp(stage, "base")) snprintf(out, n, "Y1");
    else if (g >= 0 && !strcmp(stage, "refine")) snprintf(out, n, "Y2");
    else snprintf(out, n, "%s", name);
}

static json_t *points_json(const RepRun *r, const RepSeries *s) {
    json_t *pts = json_array();
    for (size_t i = 0; pts && i < s->count; i++) {
        const RepMetric *m = &r->metrics[s->first + i];
        // jansson has no NaN or infinity: null, a gap in the curve
        json_t *y = isfinite(m->value) ? json_real(m->value) : json_null();
        if (json_array_append_new(pts, json_pack("[Io]", (json_int_t)m->step, y)) != 0) {
            json_decref(pts);
            return NULL;
        }
    }
    return pts;
}

// A JSON string of s; bytes that are not UTF-8 (a name from elsewhere, or one cut short
// by a buffer) become '?' instead of failing the whole page.
static json_t *jstr(const char *s) {
    json_t *j = json_string(s);
    char *c = j ? NULL : strdup(s);
    if (!c) return j;
    for (char *p = c; *p; p++)
        if ((unsigned char)*p >= 0x80) *p = '?';
    j = json_string(c);
    free(c);
    return j;
}

static json_t *chart_json(const RepChart *c, const RepRun *runs, int nruns) {
    char title[400], label[400], full[600];
    const char *ylabel = c->group >= 0 ? GROUPS[c->group].ylabel : !strcmp(c->key, "loss.*") ? "loss" : c->key;
    snprintf(title, sizeof title, "%s: %s", c->stage,
             c->group >= 0 ? GROUPS[c->group].title : !strcmp(c->key, "loss.*") ? "other losses" : c->key);
    json_t *sets = json_array();
    for (int r = 0; sets && r < nruns; r++)
        for (size_t k = 0; k < c->nnames; k++) {
            const RepSeries *s = series_find(&runs[r], c->stage, c->names[k]);
            if (!s) continue;
            series_label(label, sizeof label, c->stage, c->names[k]);
            if (nruns > 1) snprintf(full, sizeof full, "%s: %s", runs[r].run.name, label);
            else snprintf(full, sizeof full, "%s", label);
            json_t *d = json_pack("{s:o, s:o, s:i, s:i, s:o*}", "label", jstr(full), "name", jstr(c->names[k]),
                                  "run", r, "series", (int)k, "data", points_json(&runs[r], s));
            if (!d || !json_object_get(d, "data") || json_array_append_new(sets, d) != 0) {
                json_decref(sets);
                return NULL;
            }
        }
    return sets ? json_pack("{s:o, s:o, s:o, s:o}", "stage", jstr(c->stage), "title", jstr(title), "ylabel",
                            jstr(ylabel), "datasets", sets)
                : NULL;
}

// {"runs": [names], "charts": [{stage, title, ylabel, datasets: [{label, run, series,
// data: [[step, value|null], ...]}]}]} as text that cannot end its <script>: every '<'
// (and '>', '&') is written as a \u escape, which JSON.parse reads back the same.
static char *charts_data_text(const ChartList *cl, const RepRun *runs, int nruns) {
    json_t *doc = json_pack("{s:[], s:[]}", "runs", "charts");
    json_t *jr = doc ? json_object_get(doc, "runs") : NULL, *jc = doc ? json_object_get(doc, "charts") : NULL;
    for (int r = 0; doc && r < nruns; r++)
        if (json_array_append_new(jr, jstr(runs[r].run.name)) != 0) goto fail;
    for (size_t i = 0; doc && i < cl->n; i++) {
        json_t *c = chart_json(&cl->v[i], runs, nruns);
        if (!c || json_array_append_new(jc, c) != 0) goto fail;
    }
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(7)) : NULL;
    json_decref(doc);
    if (!text) goto oom;
    Buf b = {0};
    for (const char *p = text; *p; p++) {
        if (*p == '<') buf_puts(&b, "\\u003c");
        else if (*p == '>') buf_puts(&b, "\\u003e");
        else if (*p == '&') buf_puts(&b, "\\u0026");
        else buf_put(&b, p, 1);
    }
    free(text);
    if (b.oom) {
        free(b.s);
        goto oom;
    }
    return b.s;
fail:
    json_decref(doc);
oom:
    MDGAN_ERR("out of memory building the chart data");
    return NULL;
}

// ---------------------------------------------------------------- the page

static const char PAGE_CSS[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2329;background:#f6f7f9;"
    "margin:0 auto;padding:12px 28px 40px;max-width:1500px}\n"
    "h1{font-size:24px;margin:12px 0 4px}h2{font-size:19px;border-bottom:2px solid #d5dae0;padding-bottom:4px;"
    "margin:34px 0 10px}h3{font-size:16px;margin:22px 0 8px}h4{font-size:14px;margin:14px 0 6px}\n"
    ".meta{color:#5b6570;margin:0 0 8px}nav a{margin-right:14px}\n"
    "table{border-collapse:collapse;margin:6px 0 12px;background:#fff}th,td{border:1px solid #d5dae0;"
    "padding:3px 9px;text-align:left;vertical-align:top}th{background:#eceff3;font-weight:600}\n"
    "td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.mono,span.mono{"
    "font-family:ui-monospace,monospace;font-size:12px}td.text{white-space:pre-wrap;word-break:break-word}\n"
    ".st-running,.st-starting{color:#0a5fb4;font-weight:600}.st-done{color:#187a36;font-weight:600}"
    ".st-failed{color:#b3261e;font-weight:600}.st-stopped{color:#8a5a00;font-weight:600}\n"
    "tr.invalid td{color:#b3261e;text-decoration:line-through}tr.lv-warn td{background:#fff7e0}"
    "tr.lv-error td{background:#fdeaea}\n"
    ".charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}\n"
    ".chart{position:relative;height:320px;background:#fff;border:1px solid #d5dae0;border-radius:4px;"
    "padding:8px}\n"
    ".media{overflow-x:auto;background:#fff;border:1px solid #d5dae0;border-radius:4px;padding:8px;"
    "margin:0 0 10px}\n"
    ".media img{display:block;max-width:none}.media img.px{image-rendering:crisp-edges;"
    "image-rendering:pixelated}\nfigure{margin:0 0 12px}figcaption{color:#5b6570;margin:4px 0}\n"
    "pre{background:#fff;border:1px solid #d5dae0;padding:8px 10px;overflow:auto;max-height:520px;"
    "font-size:12px}\n.note{color:#5b6570;font-style:italic}.warn{color:#8a5a00}\n";

// Draws every chart of the data with Chart.js and tells the count in body
// data-charts. A chart with curves of several runs has one colour per run and one dash
// pattern per curve; a chart of one run, one colour per curve. The legend's sample is a
// line (point style 'line', 30 px) with the curve's dash.
static const char PAGE_JS[] =
    "(function () {\n"
    "  'use strict';\n"
    "  var data = JSON.parse(document.getElementById('report-data').textContent);\n"
    "  if (typeof Chart === 'undefined') {\n"
    "    document.getElementById('charts-note').textContent = 'chart.min.js did not load: no charts.';\n"
    "    console.error('mdgan report: Chart.js (chart.min.js) did not load');\n"
    "    return;\n"
    "  }\n"
    "  var palette = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2',\n"
    "                 '#17becf', '#7f7f7f', '#bcbd22'];\n"
    "  var dashes = [[], [6, 4], [2, 3], [10, 3, 2, 3], [1, 4]];\n"
    "  // The legend's point-style items take the point's style, which has no dash.\n"
    "  function dashedLabels(chart) {\n"
    "    var items = Chart.defaults.plugins.legend.labels.generateLabels(chart);\n"
    "    items.forEach(function (it) {\n"
    "      var d = chart.data.datasets[it.datasetIndex];\n"
    "      it.lineDash = d.borderDash;\n"
    "      it.lineWidth = 2;\n"
    "    });\n"
    "    return items;\n"
    "  }\n"
    "  var made = 0;\n"
    "  data.charts.forEach(function (c, i) {\n"
    "    var runs = {};\n"
    "    c.datasets.forEach(function (d) { runs[d.run] = true; });\n"
    "    var many = Object.keys(runs).length > 1;\n"
    "    var sets = c.datasets.map(function (d) {\n"
    "      var colour = palette[(many ? d.run : d.series) % palette.length];\n"
    "      return {\n"
    "        label: d.label,\n"
    "        data: d.data.map(function (p) { return {x: p[0], y: p[1]}; }),\n"
    "        borderColor: colour, backgroundColor: colour, borderWidth: 1.8,\n"
    "        borderDash: many ? dashes[d.series % dashes.length] : [],\n"
    "        pointRadius: d.data.length > 60 ? 0 : 2.5, pointHoverRadius: 4,\n"
    "        spanGaps: false, tension: 0\n"
    "      };\n"
    "    });\n"
    "    new Chart(document.getElementById('chart-' + i), {\n"
    "      type: 'line',\n"
    "      data: {datasets: sets},\n"
    "      options: {\n"
    "        animation: false, responsive: true, maintainAspectRatio: false,\n"
    "        interaction: {mode: 'nearest', axis: 'x', intersect: false},\n"
    "        plugins: {\n"
    "          title: {display: true, text: c.title, font: {size: 14}},\n"
    "          legend: {position: 'bottom', labels: {usePointStyle: true, pointStyle: 'line', pointStyleWidth: 30,\n"
    "                               generateLabels: dashedLabels}}\n"
    "        },\n"
    "        scales: {\n"
    "          x: {type: 'linear', title: {display: true, text: 'step'}},\n"
    "          y: {title: {display: true, text: c.ylabel}}\n"
    "        }\n"
    "      }\n"
    "    });\n"
    "    made++;\n"
    "  });\n"
    "  document.body.setAttribute('data-charts', String(made));\n"
    "})();\n";

static void html_status(Buf *b, const char *status) {
    buf_puts(b, "<span class=\"st-");
    buf_html(b, status);
    buf_puts(b, "\">");
    buf_html(b, status);
    buf_puts(b, "</span>");
}

static void html_time_cell(Buf *b, double t) {
    char s[64];
    fmt_time(s, sizeof s, t);
    buf_puts(b, "<td class=\"num\">");
    buf_html(b, s);
    buf_puts(b, "</td>");
}

static void html_head(Buf *b, const RepRun *runs, int nruns, size_t ncharts) {
    buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>mdgan report: ");
    for (int r = 0; r < nruns; r++) {
        if (r) buf_puts(b, ", ");
        buf_html(b, runs[r].run.name);
    }
    buf_puts(b, "</title>\n<style>\n");
    buf_puts(b, PAGE_CSS);
    buf_puts(b, "</style>\n<script src=\"chart.min.js\"></script>\n</head>\n");
    buf_printf(b, "<body data-charts-expected=\"%zu\">\n<h1>mdgan report: ", ncharts);
    for (int r = 0; r < nruns; r++) {
        if (r) buf_puts(b, ", ");
        buf_html(b, runs[r].run.name);
    }
    buf_puts(b, "</h1>\n");
}

static void html_intro(Buf *b, Db *db, const RepRun *runs, int nruns) {
    char now[64];
    fmt_time(now, sizeof now, (double)time(NULL));
    buf_puts(b, "<p class=\"meta\">written ");
    buf_html(b, now);
    buf_puts(b, " from <span class=\"mono\">");
    buf_html(b, db_path(db));
    buf_puts(b, "</span></p>\n<nav><a href=\"#summary\">summary</a><a href=\"#curves\">curves</a>");
    for (int r = 0; r < nruns; r++) {
        buf_printf(b, "<a href=\"#run-%d\">", r + 1);
        buf_html(b, runs[r].run.name);
        buf_puts(b, "</a>");
    }
    buf_puts(b, "</nav>\n");
}

static void html_stage_row(Buf *b, const RepStage *s) {
    buf_puts(b, "<tr><td>");
    buf_html(b, s->stage);
    buf_puts(b, "</td><td>");
    html_status(b, s->status);
    buf_printf(b, "</td><td class=\"num\">%lld / %lld", (long long)s->step, (long long)s->total_steps);
    if (s->total_steps > 0) buf_printf(b, " (%.0f%%)", 100.0 * (double)s->step / (double)s->total_steps);
    buf_puts(b, "</td><td class=\"num\">");
    if (isfinite(s->rate) && s->rate > 0) buf_printf(b, "%.3g", s->rate);
    else buf_puts(b, "-");
    buf_puts(b, "</td>");
    html_time_cell(b, s->heartbeat);
    buf_printf(b, "<td class=\"num\">%d</td><td>", s->restarts);
    buf_html(b, s->exit_status ? s->exit_status : "-");
    buf_puts(b, "</td>");
    html_time_cell(b, s->updated);
    buf_puts(b, "</tr>\n");
}

static void html_run_summary(Buf *b, const RepRun *r) {
    buf_puts(b, "<h3>");
    buf_html(b, r->run.name);
    buf_puts(b, "</h3>\n<table><tr><th>status</th><th>created</th><th>updated</th><th>run folder</th></tr>\n<tr><td>");
    html_status(b, r->run.status);
    buf_puts(b, "</td>");
    html_time_cell(b, r->run.created);
    html_time_cell(b, r->run.updated);
    buf_puts(b, "<td class=\"mono\">");
    buf_html(b, r->dir);
    if (!r->dir_found) buf_puts(b, " <span class=\"warn\">(not found)</span>");
    buf_puts(b, "</td></tr></table>\n");
    if (!r->nstages) {
        buf_puts(b, "<p class=\"note\">No stage has started.</p>\n");
        return;
    }
    buf_puts(b, "<table><tr><th>stage</th><th>status</th><th>step / total</th><th>steps/s</th>"
                "<th>heartbeat</th><th>restarts</th><th>exit status</th><th>updated</th></tr>\n");
    for (size_t i = 0; i < r->nstages; i++) html_stage_row(b, &r->stages[i]);
    buf_puts(b, "</table>\n");
}

// A canvas per chart, grouped under a heading per stage (ids chart-0, chart-1, ... in
// the order of the chart data).
static void html_curves(Buf *b, const ChartList *cl) {
    buf_puts(b, "<h2 id=\"curves\">Training curves</h2>\n<p class=\"note\" id=\"charts-note\">");
    if (!cl->n) buf_puts(b, "No metrics recorded yet.");
    buf_puts(b, "</p>\n");
    for (size_t i = 0; i < cl->n; i++) {
        if (i == 0 || strcmp(cl->v[i].stage, cl->v[i - 1].stage)) {
            if (i) buf_puts(b, "</div>\n");
            buf_puts(b, "<h3>");
            buf_html(b, cl->v[i].stage);
            buf_puts(b, "</h3>\n<div class=\"charts\">\n");
        }
        buf_printf(b, "<div class=\"chart\"><canvas id=\"chart-%zu\"></canvas></div>\n", i);
    }
    if (cl->n) buf_puts(b, "</div>\n");
}

// An image copied into img/, nearest-neighbour enlarged by k when its frames are small.
static void html_image(Buf *b, const char *rel, int w, int k, const char *alt) {
    buf_puts(b, "<div class=\"media\"><img src=\"");
    buf_html(b, rel);
    buf_puts(b, "\" alt=\"");
    buf_html(b, alt);
    buf_puts(b, "\"");
    if (k > 1) buf_puts(b, " class=\"px\"");
    if (w > 0) buf_printf(b, " width=\"%d\"", w * k);
    buf_puts(b, "></div>\n");
}

// Columns of metric tables: the usual metrics first, in this order, then the others.
static const char *const METRIC_COLS[] = {"psnr", "ssim", "l1", "mse", "motion_ratio"};
enum { NMETRIC_COLS = sizeof METRIC_COLS / sizeof METRIC_COLS[0] };

static int metric_col_rank(const char *name) {
    for (int i = 0; i < NMETRIC_COLS; i++)
        if (!strcmp(METRIC_COLS[i], name)) return i;
    return NMETRIC_COLS;
}

// Insertion sort (a handful of names): by metric_col_rank, else as found.
static void sort_metric_cols(const char **cols, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && metric_col_rank(cols[j]) < metric_col_rank(cols[j - 1]); j--) {
            const char *t = cols[j];
            cols[j] = cols[j - 1];
            cols[j - 1] = t;
        }
}

static void html_metric_value(Buf *b, json_t *v) {
    if (json_is_number(v)) buf_printf(b, "<td class=\"num\">%.4g</td>", json_number_value(v));
    else buf_puts(b, "<td class=\"num\">-</td>");
}

// The overall validation numbers of the shown step: a row per output (y1, y2, and the
// copy-first baseline), then any plain numbers (the Gram distances) in a line.
static void html_sample_metrics(Buf *b, const RepSamples *s) {
    const char *const *cols = METRIC_COLS;   // the same columns for every output
    const char *key;
    json_t *v;
    buf_printf(b, "<table><tr><th>step %lld (%d validation clips)</th>", (long long)s->step, s->val_clips);
    for (int c = 0; c < NMETRIC_COLS; c++) buf_printf(b, "<th>%s</th>", cols[c]);
    buf_puts(b, "</tr>\n");
    json_object_foreach(s->overall, key, v) {
        if (!json_is_object(v)) continue;
        buf_puts(b, "<tr><td>");
        buf_html(b, !strcmp(key, "copy_first") ? "copy first frame (baseline)" : key);
        buf_puts(b, "</td>");
        for (int c = 0; c < NMETRIC_COLS; c++) html_metric_value(b, json_object_get(v, cols[c]));
        buf_puts(b, "</tr>\n");
    }
    buf_puts(b, "</table>\n");
    int first = 1;
    json_object_foreach(s->overall, key, v) {
        if (!json_is_number(v)) continue;
        buf_puts(b, first ? "<p>" : ", ");
        buf_html(b, key);
        buf_printf(b, " %.4g", json_number_value(v));
        first = 0;
    }
    if (!first) buf_puts(b, "</p>\n");
}

static void html_samples(Buf *b, const RepRun *r) {
    buf_puts(b, "<h3>Samples</h3>\n");
    if (!r->nsamples) {
        buf_puts(b, "<p class=\"note\">No samples yet in <span class=\"mono\">");
        buf_html(b, r->dir);
        buf_puts(b, "/samples</span>.</p>\n");
        return;
    }
    for (int i = 0; i < r->nsamples; i++) {
        const RepSamples *s = &r->samples[i];
        const int k = sheet_scale(sheet_frame_side(r, s->png_w));
        buf_puts(b, "<h4>");
        buf_html(b, s->stage);
        buf_printf(b, " at step %lld</h4>\n<figure>", (long long)s->step);
        html_image(b, s->png, s->png_w, k, "contact sheet");
        buf_puts(b, "<figcaption>contact sheet: per validation clip a row each of real, Y1");
        if (strcmp(s->stage, "base")) buf_puts(b, ", Y2");
        buf_puts(b, " (frames left to right)</figcaption></figure>\n");
        if (s->gif[0]) {
            buf_puts(b, "<figure>");
            html_image(b, s->gif, s->gif_w, k, "animation");
            buf_puts(b, "<figcaption>animation: the same clips side by side</figcaption></figure>\n");
        }
        if (s->overall) html_sample_metrics(b, s);
    }
}

// The newest finite value of a series, or NaN.
static double series_last(const RepRun *r, const RepSeries *s) {
    for (size_t i = s->count; i-- > 0;)
        if (isfinite(r->metrics[s->first + i].value)) return r->metrics[s->first + i].value;
    return NAN;
}

// "<output>.<metric>": the output's length (0 when there is no '.') and the metric.
static const char *eval_split(const char *name, size_t *plen) {
    const char *dot = strchr(name, '.');
    *plen = dot ? (size_t)(dot - name) : 0;
    return dot ? dot + 1 : name;
}

// The value of output row (plen characters of row) and metric col, NaN when none.
static double eval_value(const RepRun *r, const RepSeries *const *ev, int n, const char *row, size_t plen,
                         const char *col) {
    for (int i = 0; i < n; i++) {
        size_t pl;
        const char *c = eval_split(ev[i]->name, &pl);
        if (pl == plen && !strncmp(ev[i]->name, row, plen) && !strcmp(c, col)) return series_last(r, ev[i]);
    }
    return NAN;
}

// The evaluation after training (stage REPORT_EVAL_STAGE, names "<output>.<metric>"): a
// row per output, a column per metric.
static void html_eval_table(Buf *b, const RepRun *r) {
    const RepSeries *ev[64];
    const char *cols[64], *rows[64];
    size_t plens[64];
    int n = 0, ncols = 0, nrows = 0;
    for (size_t i = 0; i < r->nseries && n < 64; i++)
        if (!strcmp(r->series[i].stage, REPORT_EVAL_STAGE)) ev[n++] = &r->series[i];
    if (!n) return;
    for (int i = 0; i < n; i++) {
        size_t pl;
        const char *col = eval_split(ev[i]->name, &pl);
        int c = 0, k = 0;
        while (c < ncols && strcmp(cols[c], col)) c++;
        if (c == ncols) cols[ncols++] = col;
        while (k < nrows && (plens[k] != pl || strncmp(rows[k], ev[i]->name, pl))) k++;
        if (k == nrows) {
            rows[nrows] = ev[i]->name;
            plens[nrows++] = pl;
        }
    }
    sort_metric_cols(cols, ncols);
    buf_printf(b, "<table><tr><th>every validation clip (step %lld)</th>", (long long)r->metrics[ev[0]->first].step);
    for (int c = 0; c < ncols; c++) {
        buf_puts(b, "<th>");
        buf_html(b, cols[c]);
        buf_puts(b, "</th>");
    }
    buf_puts(b, "</tr>\n");
    for (int k = 0; k < nrows; k++) {
        char label[128];
        snprintf(label, sizeof label, "%.*s", (int)plens[k], rows[k]);
        buf_puts(b, "<tr><td>");
        buf_html(b, plens[k] ? label : "-");
        buf_puts(b, "</td>");
        for (int c = 0; c < ncols; c++) {
            double v = eval_value(r, ev, n, rows[k], plens[k], cols[c]);
            if (isfinite(v)) buf_printf(b, "<td class=\"num\">%.4g</td>", v);
            else buf_puts(b, "<td class=\"num\">-</td>");
        }
        buf_puts(b, "</tr>\n");
    }
    buf_puts(b, "</table>\n");
}

static int has_eval(const RepRun *r) {
    for (size_t i = 0; i < r->nseries; i++)
        if (!strcmp(r->series[i].stage, REPORT_EVAL_STAGE)) return 1;
    return 0;
}

static void html_predictions(Buf *b, const RepRun *r) {
    if (!r->pred[0][0] && !r->pred[1][0] && !has_eval(r)) return;
    buf_puts(b, "<h3>Predictions</h3>\n");
    html_eval_table(b, r);
    for (int k = 0; k < 2; k++) {
        if (!r->pred[k][0]) continue;
        buf_puts(b, "<figure>");
        html_image(b, r->pred[k], r->pred_w[k], sheet_scale(sheet_frame_side(r, r->pred_w[k])), "prediction sheet");
        buf_puts(b, k ? "<figcaption>Y2 contact sheet (Stage II): per clip, its Y1 input above the refined Y2"
                        "</figcaption></figure>\n"
                      : "<figcaption>Y1 contact sheet (Stage I)</figcaption></figure>\n");
    }
}

static void html_config(Buf *b, const RepRun *r) {
    buf_puts(b, "<h3>Configuration</h3>\n");
    if (r->cfg_err[0]) {
        buf_puts(b, "<p class=\"warn\">");
        buf_html(b, r->cfg_err);
        buf_puts(b, "</p>\n");
    }
    buf_puts(b, "<details open><summary>config snapshot, sha256 <span class=\"mono\">");
    buf_html(b, r->run.config_sha256);
    buf_puts(b, "</span></summary><pre>");
    buf_html(b, r->run.config);
    buf_puts(b, "</pre></details>\n");
}

static void html_ckpt_row(Buf *b, const RepCkpt *c) {
    char size[32], created[64];
    fmt_bytes(size, sizeof size, c->bytes);
    fmt_time(created, sizeof created, c->created);
    buf_printf(b, "<tr%s><td>", c->valid ? "" : " class=\"invalid\"");
    buf_html(b, c->stage);
    buf_printf(b, "</td><td class=\"num\">%lld</td><td class=\"num\">%lld</td><td class=\"num\" title=\"%lld bytes\">",
               (long long)c->step, (long long)c->epoch, (long long)c->bytes);
    buf_html(b, size);
    buf_puts(b, "</td><td class=\"mono\" title=\"");
    buf_html(b, c->sha256);
    buf_printf(b, "\">%.12s</td><td>%s</td><td class=\"num\">", c->sha256, c->valid ? "yes" : "no");
    buf_html(b, created);
    buf_puts(b, "</td><td class=\"mono\">");
    buf_html(b, c->path);
    buf_puts(b, "</td></tr>\n");
}

static void html_ckpts(Buf *b, const RepRun *r) {
    buf_puts(b, "<h3>Checkpoints</h3>\n");
    if (!r->nckpts) {
        buf_puts(b, "<p class=\"note\">None recorded.</p>\n");
        return;
    }
    buf_puts(b, "<table><tr><th>stage</th><th>step</th><th>epoch</th><th>size</th><th>sha256</th><th>valid</th>"
                "<th>created</th><th>path</th></tr>\n");
    for (size_t i = 0; i < r->nckpts; i++) html_ckpt_row(b, &r->ckpts[i]);
    buf_puts(b, "</table>\n");
}

static void html_events(Buf *b, const RepRun *r) {
    buf_puts(b, "<h3>Events</h3>\n");
    if (!r->nevents) {
        buf_puts(b, "<p class=\"note\">None recorded.</p>\n");
        return;
    }
    if (r->events_dropped) buf_printf(b, "<p class=\"note\">%zu older events not shown.</p>\n", r->events_dropped);
    buf_puts(b, "<table><tr><th>time</th><th>level</th><th>text</th></tr>\n");
    for (size_t i = 0; i < r->nevents; i++) {
        const RepEvent *e = &r->events[i];
        buf_puts(b, "<tr class=\"lv-");
        buf_html(b, e->level);
        buf_puts(b, "\">");
        html_time_cell(b, e->time);
        buf_puts(b, "<td>");
        buf_html(b, e->level);
        buf_puts(b, "</td><td class=\"text\">");
        buf_html(b, e->text);
        buf_puts(b, "</td></tr>\n");
    }
    buf_puts(b, "</table>\n");
}

static void html_run_details(Buf *b, const RepRun *r, int index) {
    buf_printf(b, "<h2 id=\"run-%d\">Run ", index + 1);
    buf_html(b, r->run.name);
    buf_puts(b, "</h2>\n");
    html_samples(b, r);
    html_predictions(b, r);
    html_config(b, r);
    html_ckpts(b, r);
    html_events(b, r);
}

static int build_page(Buf *b, Db *db, const RepRun *runs, int nruns, const ChartList *cl, const char *data) {
    html_head(b, runs, nruns, cl->n);
    html_intro(b, db, runs, nruns);
    buf_puts(b, "<h2 id=\"summary\">Summary</h2>\n");
    for (int r = 0; r < nruns; r++) html_run_summary(b, &runs[r]);
    html_curves(b, cl);
    for (int r = 0; r < nruns; r++) html_run_details(b, &runs[r], r);
    buf_puts(b, "<script type=\"application/json\" id=\"report-data\">");
    buf_puts(b, data);
    buf_puts(b, "</script>\n<script>\n");
    buf_puts(b, PAGE_JS);
    buf_puts(b, "</script>\n</body>\n</html>\n");
    if (b->oom) {
        MDGAN_ERR("out of memory writing the report page");
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- report_write

static int copy_chartjs(const char *out_dir) {
    const char *src = getenv("MDGAN_CHARTJS");
    if (!src || !*src) src = REPORT_CHARTJS_PATH;
    if (!is_file(src)) {
        MDGAN_ERR("Chart.js not found at %s: install the Debian package %s (apt-get install %s)", src,
                  REPORT_CHARTJS_PACKAGE, REPORT_CHARTJS_PACKAGE);
        return -1;
    }
    char dst[4200];
    if (path_fmt(dst, sizeof dst, "%s/chart.min.js", out_dir) != 0) return -1;
    if (copy_file(src, dst) != 0) {
        mdgan_errctx("copying Chart.js of package %s", REPORT_CHARTJS_PACKAGE);
        return -1;
    }
    return 0;
}

static int make_out_dirs(const char *out_dir) {
    char img[4200];
    if (path_fmt(img, sizeof img, "%s/img", out_dir) != 0) return -1;
    if (fio_mkdir_p(out_dir, 0755) != 0 || fio_mkdir_p(img, 0755) != 0) {
        mdgan_errctx("report folder");
        return -1;
    }
    return 0;
}

static int write_index(Db *db, const RepRun *runs, int nruns, const char *out_dir) {
    ChartList cl = {0};
    Buf page = {0};
    char *data = NULL, path[4200];
    int rc = -1;
    if (build_charts(runs, nruns, &cl) != 0 || !(data = charts_data_text(&cl, runs, nruns)) ||
        build_page(&page, db, runs, nruns, &cl, data) != 0 ||
        path_fmt(path, sizeof path, "%s/index.html", out_dir) != 0)
        goto out;
    const void *bufs[1] = {page.s};
    const size_t lens[1] = {page.len};
    rc = fio_write_atomic(path, bufs, lens, 1);
out:
    free(data);
    free(page.s);
    charts_free(&cl);
    return rc;
}

int report_write(Db *db, const char *const *runs, int nruns, const char *runs_dir, const char *out_dir) {
    if (!db || !runs || nruns < 1 || !out_dir || !*out_dir) {
        MDGAN_ERR("report: no database, run name or output folder given");
        return -1;
    }
    for (int i = 0; i < nruns; i++)
        if (!runs[i] || !*runs[i]) {
            MDGAN_ERR("report: run name %d is empty", i + 1);
            return -1;
        }
    RepRun *rr = calloc((size_t)nruns, sizeof *rr);
    if (!rr) {
        MDGAN_ERR("report: out of memory for %d runs", nruns);
        return -1;
    }
    int rc = 0, loaded = 0;
    for (; rc == 0 && loaded < nruns; loaded++) rc = load_run(db, runs[loaded], runs_dir, &rr[loaded]);
    if (rc == 0) {
        assign_stems(rr, nruns);
        rc = make_out_dirs(out_dir);
    }
    for (int i = 0; rc == 0 && i < nruns; i++) rc = collect_images(&rr[i], out_dir);
    if (rc == 0) rc = copy_chartjs(out_dir);
    if (rc == 0) rc = write_index(db, rr, nruns, out_dir);
    for (int i = 0; i < loaded; i++) rep_run_free(&rr[i]);
    free(rr);
    return rc;
}
