// The training loop both stages share (include/mdgan/trainer.h).
#include "mdgan/trainer.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mdgan/cli.h"
#include "mdgan/control.h"
#include "mdgan/dataplane.h"
#include "mdgan/error.h"
#include "mdgan/fileio.h"
#include "mdgan/image.h"
#include "mdgan/loss.h"
#include "mdgan/metrics.h"
#include "mdgan/stage1.h"

typedef struct {
    const TrainStage *st;
    void *self;
    Config cfg;
    TrainSchedule sch;
    char cfg_text_sha[65];
    char *cfg_text;
    char run_dir[2048], ckpt_dir[2100], sample_dir[2100], metrics_path[2100];
    Dataset ds;
    DataIdentity data_id;       // what the checkpoints say the stage trains on
    int *train, ntrain, *val, nval;
    BatchOrder order;
    Rng rng;
    long step, total_steps;
    ClipMetrics baseline;       // copy-first on the validation clips
    double baseline_l1;
    float losses[TRAIN_MAX_LOSSES];
    Progress prog;
    ControlClient *control;     // the coordinator's control plane (NULL: run by hand)
    double last_report;         // when PROGRESS was last posted
} Loop;

// ---------------------------------------------------------------- options

int trainer_parse_args(TrainArgs *a, int argc, char **argv, const TrainExtraOpts *extra, void (*usage)(FILE *)) {
    static const struct option common[] = {
        {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 's'},
        {"resume", required_argument, 0, 'r'}, {"steps", required_argument, 0, 'n'},
        {"minutes", required_argument, 0, 'm'}, {"log-every", required_argument, 0, 'l'},
        {"control", required_argument, 0, 'C'}, {"help", no_argument, 0, 'h'}};
    struct option opts[32];
    int nopts = 0;
    for (size_t k = 0; k < sizeof common / sizeof common[0]; k++) opts[nopts++] = common[k];
    for (int k = 0; extra && extra->opts[k].name && nopts < 31; k++) opts[nopts++] = extra->opts[k];
    memset(&opts[nopts], 0, sizeof opts[nopts]);
    int opt, v;
    optind = 1, opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': a->config_path = optarg; break;
        case 's':
            if (a->nsets == (int)(sizeof a->sets / sizeof a->sets[0])) {
                MDGAN_ERR("too many --set options");
                return -1;
            }
            a->sets[a->nsets++] = optarg;
            break;
        case 'r': a->resume = optarg; break;
        case 'C': a->control = optarg; break;
        case 'n': if (cli_int("--steps", optarg, 1, 2000000000, &v) != 0) return -1; a->max_steps = v; break;
        case 'l': if (cli_int("--log-every", optarg, 1, 1000000, &v) != 0) return -1; a->log_every = v; break;
        case 'm': {
            char *end;
            a->minutes = strtod(optarg, &end);
            if (*end || !(a->minutes > 0) || a->minutes > 1e7) {
                MDGAN_ERR("--minutes: '%s' is not a positive number", optarg);
                return -1;
            }
            break;
        }
        case 'h': usage(stdout); exit(MDGAN_EXIT_OK);
        case ':': MDGAN_ERR("train: option %s needs a value", argv[optind - 1]); return -1;
        case '?': MDGAN_ERR("train: unknown option '%s' (see --help)", argv[optind - 1]); return -1;
        default:
            if (!extra || extra->parse(a->stage_args, opt, optarg) != 0) return -1;
        }
    }
    if (optind < argc) {
        MDGAN_ERR("train: unexpected argument '%s'", argv[optind]);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- configuration

// Keys that may differ between a checkpoint's config and the resumed run's: they change
// how long, how often, how fast or where, never what this stage computes (every kernel
// splits its work by shape, never by thread count, so run.threads does not show in the
// bits). The other stage's section, the transport and the coordinator do not either.
static int key_may_change(const TrainStage *st, const char *section, const char *line) {
    static const char *const schedule[] = {"epochs =", "ckpt_every =", "sample_every =", "keep ="};
    if (!strcmp(section, st->other_section) || !strcmp(section, "[transport]") || !strcmp(section, "[coord]"))
        return 1;
    // where the run folder lives may move with it (mdgan resume --set run.dir=...)
    if (!strcmp(section, "[run]")) return !strncmp(line, "threads =", 9) || !strncmp(line, "dir =", 5);
    if (strcmp(section, st->section) != 0) return 0;
    for (size_t k = 0; k < sizeof schedule / sizeof schedule[0]; k++)
        if (!strncmp(line, schedule[k], strlen(schedule[k]))) return 1;
    return 0;
}

// Compares canonical config texts line by line (both list every key in one order);
// -1 naming the first differing key that matters.
static int config_compatible(const TrainStage *st, const char *stored, const char *now, const char *ckpt) {
    const char *a = stored, *b = now;
    char section[64] = "";
    while (*a || *b) {
        size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (*a == '[') snprintf(section, sizeof section, "%.*s", (int)la, a);
        int same = la == lb && !strncmp(a, b, la);
        if (!same && !(key_may_change(st, section, a) && key_may_change(st, section, b))) {
            MDGAN_ERR("%s was trained with '%s %.*s' but this run has '%.*s': resume with the same config "
                      "(or without --config to use the checkpoint's)", ckpt, section, (int)la, a, (int)lb, b);
            return -1;
        }
        a += la + (a[la] == '\n'), b += lb + (b[lb] == '\n');
    }
    return 0;
}

int trainer_load_config(Config *c, const char *config_path, const char *const *sets, int nsets, const StFile *ck,
                        const char *ckpath) {
    config_defaults(c);
    const char *stored = ck ? st_meta_get(ck, "config") : NULL;
    if (ck && !stored) {
        MDGAN_ERR("%s holds no training configuration (metadata 'config')", ckpath);
        return -1;
    }
    if (!config_path && stored && config_parse(c, stored, ckpath) != 0) return -1;
    if (config_path && config_load(c, config_path) != 0) return -1;
    for (int i = 0; i < nsets; i++)
        if (config_set(c, sets[i]) != 0) return -1;
    return config_validate(c);
}

int trainer_metadata_place(const char *ckpath, const char *what, const char *path) {
    char real[PATH_MAX], home[PATH_MAX];
    const char *slash = realpath(ckpath, real) ? strrchr(real, '/') : NULL;
    if (slash && slash - real > 12 && !strncmp(slash - 12, "/checkpoints", 12)) {
        snprintf(home, sizeof home, "%.*s", (int)(slash - 12 - real), real);
        if (fio_path_within(path, home)) return 0;
        MDGAN_ERR("%s: its metadata's config puts %s at %s, outside the run folder the checkpoint lies in (%s); a "
                  "checkpoint is not trusted with places: give --config FILE, or --set them", ckpath, what, path, home);
    } else {
        MDGAN_ERR("%s: its metadata's config puts %s at %s, and the checkpoint lies in no <run>/checkpoints/ folder; "
                  "a checkpoint is not trusted with places: give --config FILE, or --set them", ckpath, what, path);
    }
    return -1;
}

int trainer_set_given(const char *const *sets, int nsets, const char *key) {
    for (int i = 0; i < nsets; i++)
        if (!strncmp(sets[i], key, strlen(key)) && sets[i][strlen(key)] == '=') return 1;
    return 0;
}

static int setup_config(Loop *lp, const TrainArgs *a, StFile *ck, char *ckpath, size_t ckn) {
    const TrainStage *st = lp->st;
    if (a->resume) {
        if (train_ckpt_resolve(ckpath, ckn, a->resume, st->name) != 0 || st_open(ck, ckpath) != 0) return -1;
        const char *stage = st_meta_get(ck, "stage");
        if (!st_meta_get(ck, "config") || !stage || strcmp(stage, st->name) != 0) {
            MDGAN_ERR("%s is not a %s training checkpoint (its stage is '%s')", ckpath, st->name,
                      stage ? stage : "none");
            return -1;
        }
    }
    if (trainer_load_config(&lp->cfg, a->config_path, a->sets, a->nsets, a->resume ? ck : NULL, ckpath) != 0)
        return -1;
    // the folder this stage writes into, when only the checkpoint's metadata names it
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", lp->cfg.run.dir, lp->cfg.run.name);
    if (a->resume && !a->config_path && !trainer_set_given(a->sets, a->nsets, "run.dir") &&
        !trainer_set_given(a->sets, a->nsets, "run.name") &&
        trainer_metadata_place(ckpath, "the run folder (run.dir, run.name)", dir) != 0)
        return -1;
    if (config_to_text(&lp->cfg, &lp->cfg_text) != 0) return -1;
    fio_sha256_hex(lp->cfg_text, strlen(lp->cfg_text), lp->cfg_text_sha);
    if (a->resume) {
        // the stored text in this version's canonical form (a checkpoint of an older
        // version lacks later keys: their defaults), so lines compare key by key
        Config stored;
        char *stored_text;
        config_defaults(&stored);
        if (config_parse(&stored, st_meta_get(ck, "config"), ckpath) != 0 || config_to_text(&stored, &stored_text) != 0)
            return -1;
        int rc = config_compatible(st, stored_text, lp->cfg_text, ckpath);
        free(stored_text);
        if (rc != 0) return -1;
    }
    st->schedule(&lp->cfg, &lp->sch);
    return 0;
}

// ---------------------------------------------------------------- outputs

static int json_write(const char *path, json_t *j) {
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
    if (!text) {
        MDGAN_ERR("cannot encode %s", path);
        return -1;
    }
    size_t len = strlen(text);
    char *nl = realloc(text, len + 2);
    if (!nl) {
        free(text);
        MDGAN_ERR("out of memory writing %s", path);
        return -1;
    }
    nl[len] = '\n';
    const void *bufs[1] = {nl};
    const size_t lens[1] = {len + 1};
    int rc = fio_write_atomic(path, bufs, lens, 1);
    free(nl);
    return rc;
}

// The metrics object with the mean L1 beside them.
static json_t *metrics_json(double l1, const ClipMetrics *m) {
    json_t *j = metrics_to_json(m);
    json_object_set_new(j, "l1", json_real(l1));
    return j;
}

// The copy-first baseline: every frame is the given first frame.
static int baseline(Loop *lp) {
    const int T = lp->cfg.data.frames, S = lp->cfg.data.size;
    const size_t clip = (size_t)3 * T * S * S;
    float *real = malloc(clip * sizeof(float)), *copy = malloc(clip * sizeof(float));
    if (!real || !copy) {
        free(real), free(copy);
        MDGAN_ERR("out of memory");
        return -1;
    }
    ClipMetrics m;
    for (int i = 0; i < lp->nval; i++) {
        dataset_clip(&lp->ds, lp->val[i], real);
        stage1_repeat_first_frame(copy, real, 1, T, S, S);
        lp->baseline_l1 += l1_forward(copy, real, clip) / lp->nval;
        metrics_clip(&m, copy, real, T, S, S);
        metrics_accumulate(&lp->baseline, &m);
    }
    metrics_scale(&lp->baseline, 1.0 / lp->nval);
    free(real), free(copy);
    return 0;
}


// Validation: every validation clip through the stage; metrics per output and clip,
// the mean over clips; the contact sheet (rows: real, then each output) and GIF of the
// first clips; one line in the metrics log.
static int evaluate(Loop *lp) {
    const TrainStage *st = lp->st;
    const Config *c = &lp->cfg;
    const int T = c->data.frames, S = c->data.size, K = st->noutputs, rows_per = 1 + K;
    const size_t clip = (size_t)3 * T * S * S;
    const int k = lp->nval < TRAIN_SAMPLE_CLIPS ? lp->nval : TRAIN_SAMPLE_CLIPS;
    float *real = malloc(clip * sizeof(float)), *keep = malloc((size_t)rows_per * (k ? k : 1) * clip * sizeof(float));
    if (!real || !keep) {
        free(real), free(keep);
        MDGAN_ERR("out of memory for validation");
        return -1;
    }
    json_t *clips = json_array();
    ClipMetrics sum[TRAIN_MAX_OUTPUTS] = {0}, m;
    double l1_sum[TRAIN_MAX_OUTPUTS] = {0}, extra_sum[TRAIN_MAX_EXTRAS] = {0};
    int rc = 0;
    for (int i = 0; i < lp->nval && rc == 0; i++) {
        const DatasetClip *dc = &lp->ds.clips[lp->val[i]];
        const float *out[TRAIN_MAX_OUTPUTS];
        double extras[TRAIN_MAX_EXTRAS] = {0};
        if (st->eval(lp->self, lp->val[i], real, out, extras) != 0) {
            rc = -1;
            break;
        }
        json_t *jc = json_pack("{s:s, s:s, s:i}", "video", dc->video, "clip", dc->clip, "window", dc->window);
        for (int o = 0; o < K; o++) {
            double l1 = l1_forward(out[o], real, clip);
            metrics_clip(&m, out[o], real, T, S, S);
            l1_sum[o] += l1;
            metrics_accumulate(&sum[o], &m);
            json_object_set_new(jc, st->output_names[o], metrics_json(l1, &m));
        }
        for (int e = 0; e < st->nextras; e++) {
            extra_sum[e] += extras[e];
            json_object_set_new(jc, st->extra_names[e], json_real(extras[e]));
        }
        json_array_append_new(clips, jc);
        if (i < k) {
            memcpy(keep + (size_t)(rows_per * i) * clip, real, clip * sizeof(float));
            for (int o = 0; o < K; o++) memcpy(keep + (size_t)(rows_per * i + 1 + o) * clip, out[o], clip * sizeof(float));
        }
    }
    free(real);
    if (rc != 0) {
        free(keep);
        json_decref(clips);
        return -1;
    }
    json_t *overall = json_object();
    for (int o = 0; o < K; o++) {
        metrics_scale(&sum[o], 1.0 / lp->nval);
        l1_sum[o] /= lp->nval;
        json_object_set_new(overall, st->output_names[o], metrics_json(l1_sum[o], &sum[o]));
    }
    for (int e = 0; e < st->nextras; e++) {
        extra_sum[e] /= lp->nval;
        json_object_set_new(overall, st->extra_names[e], json_real(extra_sum[e]));
    }
    json_object_set_new(overall, "copy_first", metrics_json(lp->baseline_l1, &lp->baseline));
    char path[2400];
    const int zoom = image_view_zoom(S), ZS = S * zoom;
    float *big = NULL;
    const float *rows[(1 + TRAIN_MAX_OUTPUTS) * TRAIN_SAMPLE_CLIPS], *clips_kept[(1 + TRAIN_MAX_OUTPUTS) * TRAIN_SAMPLE_CLIPS];
    for (int i = 0; i < rows_per * k; i++) clips_kept[i] = keep + (size_t)i * clip;
    if (k > 0 && image_zoom_videos(rows, &big, clips_kept, rows_per * k, T, S, S, zoom) != 0) rc = -1;
    if (k > 0 && rc == 0) {
        snprintf(path, sizeof path, "%s/%s_step_%08ld.png", lp->sample_dir, st->name, lp->step);
        if (image_save_contact_sheet(path, rows, rows_per * k, T, ZS, ZS, 2) != 0) rc = -1;
        snprintf(path, sizeof path, "%s/%s_step_%08ld.gif", lp->sample_dir, st->name, lp->step);
        if (rc == 0 && image_save_gif(path, rows, rows_per * k, T, ZS, ZS, 12) != 0) rc = -1;
    }
    free(big);
    free(keep);
    json_t *doc = json_pack("{s:s, s:i, s:i, s:o, s:o}", "stage", st->name, "step", (json_int_t)lp->step,
                            "val_clips", lp->nval, "overall", overall, "clips", clips);
    snprintf(path, sizeof path, "%s/%s_metrics_step_%08ld.json", lp->sample_dir, st->name, lp->step);
    if (rc == 0) rc = json_write(path, doc);
    json_decref(doc);
    if (rc != 0) return -1;

    // One line per evaluation, appended, for curves: the stage's own output first under
    // plain names, the other outputs prefixed with their name, then the extras and the
    // last step's losses. Every number comes from the checkpointed state, so a resumed
    // run writes the same bytes.
    FILE *f = fopen(lp->metrics_path, "a");
    if (!f) {
        MDGAN_ERR("cannot append to %s", lp->metrics_path);
        return -1;
    }
    const ClipMetrics *own = &sum[K - 1];
    fprintf(f, "{\"step\": %ld, \"val_l1\": %.6f, \"psnr\": %.4f, \"ssim\": %.5f, \"motion_ratio\": %.4f", lp->step,
            l1_sum[K - 1], own->psnr, own->ssim, own->motion_ratio);
    for (int o = 0; o < K - 1; o++)
        fprintf(f, ", \"%s_l1\": %.6f, \"%s_psnr\": %.4f, \"%s_ssim\": %.5f, \"%s_motion_ratio\": %.4f",
                st->output_names[o], l1_sum[o], st->output_names[o], sum[o].psnr, st->output_names[o], sum[o].ssim,
                st->output_names[o], sum[o].motion_ratio);
    for (int e = 0; e < st->nextras; e++) fprintf(f, ", \"%s\": %.6g", st->extra_names[e], extra_sum[e]);
    for (int l = 0; l < st->nlosses; l++) fprintf(f, ", \"%s\": %.5f", st->loss_names[l], lp->losses[l]);
    fprintf(f, "}\n");
    if (fclose(f) != 0) {
        MDGAN_ERR("cannot write %s", lp->metrics_path);
        return -1;
    }
    if (lp->control) {
        json_t *m = json_pack("{s:f, s:f, s:f, s:f}", "val_l1", l1_sum[K - 1], "psnr", own->psnr, "ssim", own->ssim,
                              "motion_ratio", own->motion_ratio);
        char key[80];
        for (int o = 0; o < K - 1; o++) {
            const char *on = st->output_names[o];
            snprintf(key, sizeof key, "%s_l1", on), json_object_set_new(m, key, json_real(l1_sum[o]));
            snprintf(key, sizeof key, "%s_psnr", on), json_object_set_new(m, key, json_real(sum[o].psnr));
            snprintf(key, sizeof key, "%s_ssim", on), json_object_set_new(m, key, json_real(sum[o].ssim));
            snprintf(key, sizeof key, "%s_motion_ratio", on), json_object_set_new(m, key, json_real(sum[o].motion_ratio));
        }
        for (int e = 0; e < st->nextras; e++) json_object_set_new(m, st->extra_names[e], json_real(extra_sum[e]));
        // a NaN (no motion in a real clip) is reported as null
        const char *name;
        json_t *v;
        json_object_foreach(m, name, v) if (!isfinite(json_real_value(v))) json_object_set_new(m, name, json_null());
        control_post(lp->control, CTL_EVAL, json_pack("{s:I, s:o}", "step", (json_int_t)lp->step, "metrics", m));
    }
    char line[1024];
    int at = snprintf(line, sizeof line, "%s: step %ld validation (%d clips):", st->name, lp->step, lp->nval);
    for (int o = K - 1; o >= 0 && at < (int)sizeof line; o--)
        at += snprintf(line + at, sizeof line - at, "%s %s L1 %.4f PSNR %.2f SSIM %.4f motion ratio %.3f",
                       o == K - 1 ? "" : ";", st->output_names[o], l1_sum[o], sum[o].psnr, sum[o].ssim,
                       sum[o].motion_ratio);
    for (int e = 0; e < st->nextras && at < (int)sizeof line; e++)
        at += snprintf(line + at, sizeof line - at, " %s %.4g", st->extra_names[e], extra_sum[e]);
    progress_note(&lp->prog, "%s (copy-first: L1 %.4f PSNR %.2f SSIM %.4f); samples %s", line, lp->baseline_l1,
                  lp->baseline.psnr, lp->baseline.ssim, lp->sample_dir);
    return 0;
}

// CHECKPOINT to the coordinator: the path in the run folder and the sha256 its
// sidecar got (hex, from the commit).
static void report_checkpoint(Loop *lp, const char *path, const char *hex) {
    if (!lp->control) return;
    struct stat sb;
    if (stat(path, &sb) != 0) return;
    const char *rel = strrchr(path, '/');
    char relpath[300];
    snprintf(relpath, sizeof relpath, "checkpoints/%s", rel ? rel + 1 : path);
    control_post(lp->control, CTL_CHECKPOINT,
                 json_pack("{s:s, s:I, s:I, s:s, s:I}", "path", relpath, "step", (json_int_t)lp->step, "epoch",
                           (json_int_t)(lp->step / lp->order.steps_per_epoch), "sha256", hex, "bytes",
                           (json_int_t)sb.st_size));
}

// PROGRESS to the coordinator, at most once a second and at every checkpoint step.
static void report_progress(Loop *lp, int force) {
    const double now = train_now();
    if (!lp->control || (!force && now - lp->last_report < 1.0)) return;
    lp->last_report = now;
    const double dt = now - lp->prog.t_start;
    json_t *losses = json_object();
    for (int l = 0; l < lp->st->nlosses; l++)
        json_object_set_new(losses, lp->st->loss_names[l], isfinite(lp->losses[l]) ? json_real(lp->losses[l]) : json_null());
    control_post(lp->control, CTL_PROGRESS,
                 json_pack("{s:I, s:I, s:I, s:f, s:o}", "step", (json_int_t)lp->step, "total_steps",
                           (json_int_t)lp->total_steps, "epoch", (json_int_t)(lp->step / lp->order.steps_per_epoch),
                           "rate", dt > 0 ? (lp->step - lp->prog.first_step) / dt : 0.0, "losses", losses));
}

// eval_due: an evaluation follows this checkpoint (a resume from it redoes the
// evaluation when the crash came before its line reached the metrics log).
static int save_checkpoint(Loop *lp, char *path, size_t n, int eval_due) {
    const TrainStage *st = lp->st;
    train_ckpt_path(path, n, lp->ckpt_dir, st->name, lp->step);
    char step[32], epoch[32], batch[32], rng[68], frames[16], size[16], seed[32], threads[16], created[32];
    const long spe = lp->order.steps_per_epoch;
    snprintf(step, sizeof step, "%ld", lp->step);
    snprintf(epoch, sizeof epoch, "%ld", lp->step / spe);
    snprintf(batch, sizeof batch, "%ld", lp->step % spe);
    rng_format(&lp->rng, rng);
    snprintf(frames, sizeof frames, "%d", lp->cfg.data.frames);
    snprintf(size, sizeof size, "%d", lp->cfg.data.size);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)lp->cfg.run.seed);
    snprintf(threads, sizeof threads, "%d", lp->cfg.run.threads);
    time_t now = time(NULL);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    // the last step's losses (9 digits: floats read back exactly), for the metrics log
    char losses[TRAIN_MAX_LOSSES * 18] = "";
    for (int l = 0, at = 0; l < st->nlosses; l++)
        at += snprintf(losses + at, sizeof losses - at, "%s%.9g", l ? " " : "", lp->losses[l]);
    char clips[16];
    snprintf(clips, sizeof clips, "%d", lp->data_id.clips);
    CkptMeta meta[18 + TRAIN_MAX_META] = {
        {"run", lp->cfg.run.name}, {"stage", st->name},    {"step", step},       {"epoch", epoch},
        {"batch", batch},          {"rng", rng},           {"config_sha256", lp->cfg_text_sha},
        {"config", lp->cfg_text},  {"frames", frames},     {"size", size},       {"seed", seed},
        {"threads", threads},      {"created", created},   {"losses", losses},
        {"eval_due", eval_due ? "1" : "0"},                {"data_clips", clips},
        {"clips_sha256", lp->data_id.clips_sha256},        {"data_sha256", lp->data_id.data_sha256},
    };
    int nmeta = 18, nextra = 0;
    CkptNet nets[4];
    int nnets = st->save(lp->self, nets, meta + nmeta, &nextra);
    if (nnets < 0) return -1;
    if (ckpt_save(path, nets, nnets, meta, nmeta + nextra) != 0) return -1;
    char sha256[65];
    if (train_ckpt_commit(path, lp->ckpt_dir, st->name, lp->sch.keep, sha256) != 0) return -1;
    report_checkpoint(lp, path, sha256);
    return 0;
}

// The losses of the checkpoint's last step (zeros when an older file lacks them).
static void load_losses(Loop *lp, const StFile *ck) {
    const char *s = st_meta_get(ck, "losses");
    memset(lp->losses, 0, sizeof lp->losses);
    for (int l = 0; s && l < lp->st->nlosses; l++) {
        char *end;
        lp->losses[l] = strtof(s, &end);
        if (end == s) {
            memset(lp->losses, 0, sizeof lp->losses);
            return;
        }
        s = end;
    }
}

// A resumed stage trains on the data its checkpoint was trained on: a clip that
// disappeared or was damaged (skipped by the reading, which names the file), or one
// that was added, would give another data order and other weights. A checkpoint of an
// older version does not say.
static int same_data(const Loop *lp, const StFile *ck, const char *ckpath) {
    const char *clips = st_meta_get(ck, "clips_sha256"), *data = st_meta_get(ck, "data_sha256");
    const char *then = st_meta_get(ck, "data_clips");
    const char *what = !clips || !data                               ? NULL
                       : strcmp(clips, lp->data_id.clips_sha256) != 0 ? "another list of clips"
                       : strcmp(data, lp->data_id.data_sha256) != 0   ? "the same clips with other pictures"
                                                                      : NULL;
    if (!what) return 0;
    MDGAN_ERR("data.root %s is not the data %s was trained on: %s (%d clips now, %d clip folders skipped while "
              "reading: the warnings before this name the files; %s clips then): put the data back, or start a new "
              "run", lp->cfg.data.root, ckpath, what, lp->ds.nclips, lp->ds.skipped_clips, then ? then : "?");
    return -1;
}

// ---------------------------------------------------------------- the loop

int trainer_run(const TrainStage *st, const TrainArgs *a) {
    Loop *lp = calloc(1, sizeof *lp);
    if (!lp) {
        MDGAN_ERR("out of memory");
        return MDGAN_EXIT_RUNTIME;
    }
    lp->st = st;
    StFile ck = {0};
    char ckpath[4096] = "";
    int rc = MDGAN_EXIT_USAGE;
    int *idx = NULL;
    long logged = -1;           // last step in the metrics log, on resume
    int eval_due_at_resume = 0; // the checkpoint resumed from was followed by an evaluation
    if (setup_config(lp, a, &ck, ckpath, sizeof ckpath) != 0) goto done;
    const Config *c = &lp->cfg;
    const int T = c->data.frames, S = c->data.size, N = lp->sch.batch;
    cli_set_threads(c->run.threads);

    snprintf(lp->run_dir, sizeof lp->run_dir, "%s/%s", c->run.dir, c->run.name);
    snprintf(lp->ckpt_dir, sizeof lp->ckpt_dir, "%s/checkpoints", lp->run_dir);
    snprintf(lp->sample_dir, sizeof lp->sample_dir, "%s/samples", lp->run_dir);
    snprintf(lp->metrics_path, sizeof lp->metrics_path, "%s/%s_metrics.jsonl", lp->run_dir, st->name);
    if (!a->resume) {
        // a fresh run never overwrites another run's checkpoints
        char latest[4096];
        if (train_ckpt_latest(latest, sizeof latest, lp->ckpt_dir, st->name) == 0) {
            MDGAN_ERR("run folder %s already holds %s checkpoints (%s): resume it with --resume %s, or choose "
                      "another run.name", lp->run_dir, st->name, latest, lp->run_dir);
            goto done;
        }
        mdgan_errclear();
    }
    if (a->control) {
        // heartbeats start before the dataset is read, which may take long
        lp->control = control_client_start(a->control, st->name, control_heartbeat_interval(c->coord.heartbeat_s),
                                           c->transport.curve_server_key);
        if (!lp->control) goto done;
        control_post(lp->control, CTL_HELLO,
                     json_pack("{s:s, s:i, s:s}", "stage", st->name, "pid", (int)getpid(), "run", c->run.name));
    }
    rc = MDGAN_EXIT_RUNTIME;
    if (fio_mkdir_p(lp->ckpt_dir, 0755) != 0 || fio_mkdir_p(lp->sample_dir, 0755) != 0) goto done;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s_", st->name);
    const int stale = train_remove_stale_temps(lp->ckpt_dir, prefix) + train_remove_stale_temps(lp->sample_dir, prefix);
    if (stale) fprintf(stderr, "%s: removed %d temporary file(s) left by writes that were killed\n", st->name, stale);
    train_ckpt_rotate(lp->ckpt_dir, st->name, lp->sch.keep, 1);   // one a kill cut short

    rc = MDGAN_EXIT_USAGE;
    fprintf(stderr, "%s: reading %s (%d frames of %dx%d)\n", st->name, c->data.root, T, S, S);
    if (dataset_open(&lp->ds, c->data.root, T, S, S, isatty(2) ? dataset_progress_stderr : NULL, NULL) != 0) goto done;
    if (dataset_split(&lp->ds, c->data.val_fraction, c->run.seed, &lp->train, &lp->ntrain, &lp->val, &lp->nval) != 0)
        goto done;
    fprintf(stderr, "%s: %d clips from %d videos (%d skipped): %d for training, %d for validation\n", st->name,
            lp->ds.nclips, lp->ds.nvideos, lp->ds.skipped_clips, lp->ntrain, lp->nval);
    dataplane_identity(&lp->ds, &lp->data_id);
    if (a->resume && same_data(lp, &ck, ckpath) != 0) goto done;
    if (lp->ntrain < N) {
        MDGAN_ERR("%s has %d training clips, fewer than one batch of %d (lower %.*s.batch or data.val_fraction)",
                  c->data.root, lp->ntrain, N, (int)strlen(st->section) - 2, st->section + 1);
        goto done;
    }
    rc = MDGAN_EXIT_RUNTIME;
    if (batch_order_init(&lp->order, lp->train, lp->ntrain, N, c->run.seed) != 0) goto done;
    rng_seed(&lp->rng, c->run.seed);
    const TrainEnv env = {c, &lp->ds, lp->val, lp->nval, &lp->order, lp->run_dir, a->stage_args, a->resume != NULL};
    if (!(lp->self = st->create(&env, &lp->rng))) {
        // a bad peer or input is the user's to fix; a failed allocation is not
        rc = strstr(mdgan_errmsg(), "out of memory") ? MDGAN_EXIT_RUNTIME : MDGAN_EXIT_USAGE;
        goto done;
    }
    lp->total_steps = lp->order.steps_per_epoch * lp->sch.epochs;
    if (a->max_steps && a->max_steps < lp->total_steps) lp->total_steps = a->max_steps;
    if (a->resume) {
        rc = MDGAN_EXIT_USAGE;
        long step = ckpt_meta_long(&ck, "step");
        if (step < 0 || rng_parse(&lp->rng, st_meta_get(&ck, "rng")) != 0 || st->load(lp->self, &ck) != 0) goto done;
        lp->step = step;
        const char *due = st_meta_get(&ck, "eval_due"); // absent in older checkpoints
        eval_due_at_resume = due ? !strcmp(due, "1") : step % lp->sch.sample_every == 0;
        load_losses(lp, &ck);
        fprintf(stderr, "%s: resumed from %s at step %ld\n", st->name, ckpath, step);
        st_close(&ck);
        rc = MDGAN_EXIT_RUNTIME;
        // a run begun by an older version kept its log under another name
        char legacy[2200];
        struct stat sb;
        if (st->legacy_log && stat(lp->metrics_path, &sb) != 0 &&
            (snprintf(legacy, sizeof legacy, "%s/%s", lp->run_dir, st->legacy_log), stat(legacy, &sb) == 0)) {
            if (rename(legacy, lp->metrics_path) != 0) {
                MDGAN_ERR("cannot rename %s to %s: %s", legacy, lp->metrics_path, strerror(errno));
                goto done;
            }
            fprintf(stderr, "%s: renamed %s to %s (the name of this version)\n", st->name, legacy, lp->metrics_path);
        }
        if (train_log_truncate(lp->metrics_path, step, &logged) != 0) goto done;
    }
    train_install_signals(); // before start: a signal while it waits for a peer stops it
    rc = MDGAN_EXIT_USAGE;
    if (st->start && st->start(lp->self) != 0) goto done;
    rc = MDGAN_EXIT_RUNTIME;
    if (!(idx = malloc((size_t)N * sizeof(int)))) {
        MDGAN_ERR("out of memory for a batch");
        goto done;
    }
    progress_init(&lp->prog, st->name, lp->step, lp->total_steps, a->log_every);
    if (lp->nval > 0) {
        if (baseline(lp) != 0) goto done;
        // the evaluation due at the resumed step is missing when the crash came between
        // the checkpoint and the end of the evaluation
        int due = !a->resume || (logged < lp->step && eval_due_at_resume);
        if (due && evaluate(lp) != 0) goto done;
    }
    const double t0 = train_now();
    if (a->minutes > 0) lp->prog.deadline = t0 + a->minutes * 60;
    int stop = 0, saved = 0;
    char path[4096] = "";
    int failed = 0; // a step or an evaluation failed (a peer gone for good): save, then exit 1
    while (lp->step < lp->total_steps && !stop && !train_stop_signal()) {
        batch_order_get(&lp->order, lp->step, idx);
        if (st->step(lp->self, lp->step, idx, lp->losses) != 0) {
            // nothing of this step happened (a stage's step fails before it changes its
            // models): the state is the one after lp->step steps, and resume redoes it
            failed = !train_stop_signal();
            break;
        }
        lp->step++;
        double total = 0;
        for (int l = 0; l < st->nlosses; l++) total += lp->losses[l];
        if (!isfinite(total)) {
            MDGAN_ERR("training diverged at step %ld (a loss is %g); the last good checkpoint is kept in %s",
                      lp->step, total, lp->ckpt_dir);
            goto done;
        }
        char desc[512];
        st->describe(lp->self, lp->losses, desc, sizeof desc);
        progress_step(&lp->prog, lp->step, (int)(lp->step - 1) / (int)lp->order.steps_per_epoch + 1, lp->sch.epochs,
                      N, "%s", desc);
        report_progress(lp, lp->step % lp->sch.ckpt_every == 0 || lp->step == lp->total_steps);
        const int sig = train_stop_signal();
        const int out_of_time = a->minutes > 0 && train_now() - t0 >= a->minutes * 60;
        stop = sig || out_of_time;
        saved = 0;
        // A signal evaluates only on schedule, so a run stopped and resumed logs what an
        // uninterrupted one does; the end of the budget (--minutes) is the run's end.
        const int eval_due =
            lp->nval > 0 && (lp->step % lp->sch.sample_every == 0 || lp->step == lp->total_steps || out_of_time);
        if (lp->step % lp->sch.ckpt_every == 0 || lp->step == lp->total_steps || stop) {
            if (save_checkpoint(lp, path, sizeof path, eval_due) != 0) goto done;
            saved = 1;
        }
        if (eval_due && evaluate(lp) != 0) {
            failed = !train_stop_signal();
            break;
        }
        if (sig) progress_note(&lp->prog, "%s: stopped by signal %d after step %ld", st->name, sig, lp->step);
        else if (out_of_time) progress_note(&lp->prog, "%s: %.1f minutes of training done", st->name, a->minutes);
    }
    if (!saved && lp->step > 0) {
        // stopped before a step (a signal or a failure while waiting for data), or resumed
        // at the end: the state is the one at lp->step, saved unless that checkpoint is
        // there already; the failure's message is kept
        char why[1024];
        snprintf(why, sizeof why, "%s", mdgan_errmsg());
        train_ckpt_path(path, sizeof path, lp->ckpt_dir, st->name, lp->step);
        if (fio_verify_sha256_sidecar(path) != 0 && save_checkpoint(lp, path, sizeof path, 0) != 0) goto done;
        mdgan_errclear();
        if (failed) {
            MDGAN_ERR("%s (the state after step %ld is saved in %s: resume it)", why, lp->step, path);
            goto done;
        }
    } else if (failed) {
        goto done;
    }
    if (!path[0]) train_ckpt_latest(path, sizeof path, lp->ckpt_dir, st->name);
    char summary[256] = "";
    if (st->summary) st->summary(lp->self, summary, sizeof summary);
    progress_note(&lp->prog, "%s: step %ld/%ld done%s%s\n  checkpoint: %s\n  samples:    %s/%s_step_%08ld.png (.gif)\n"
                  "  metrics:    %s/%s_metrics_step_%08ld.json and %s", st->name, lp->step, lp->total_steps,
                  summary[0] ? "; " : "", summary, path, lp->sample_dir, st->name, lp->step, lp->sample_dir,
                  st->name, lp->step, lp->metrics_path);
    rc = train_signal_exit_code(train_stop_signal());
    report_progress(lp, 1);
    if (rc == MDGAN_EXIT_OK && lp->step >= lp->total_steps)
        control_post(lp->control, CTL_DONE,
                     json_pack("{s:I, s:I}", "step", (json_int_t)lp->step, "total_steps", (json_int_t)lp->total_steps));
done:
    // whatever failed, a stop that a signal asked for exits as one
    if (rc != MDGAN_EXIT_OK && train_stop_signal()) rc = train_signal_exit_code(train_stop_signal());
    if (rc != MDGAN_EXIT_OK && !train_stop_signal() && lp->control)
        control_post(lp->control, CTL_ERROR, json_pack("{s:s}", "message", mdgan_errmsg()[0] ? mdgan_errmsg() : "failed"));
    control_client_stop(lp->control, 2.0);
    st_close(&ck);
    free(idx);
    if (lp->self) st->destroy(lp->self);
    batch_order_free(&lp->order);
    free(lp->train), free(lp->val), free(lp->cfg_text);
    dataset_close(&lp->ds);
    free(lp);
    return rc;
}
