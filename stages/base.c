// mdgan-base: Stage I of MD-GAN, the Base-Net.
//   train  G1/D1 on time-lapse clips, with checkpoints, samples and exact resume
//   infer  write G1's clip for every clip of a dataset (the Y1 that Refine-Net refines)
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mdgan/ckpt.h"
#include "mdgan/cli.h"
#include "mdgan/config.h"
#include "mdgan/dataset.h"
#include "mdgan/error.h"
#include "mdgan/fileio.h"
#include "mdgan/image.h"
#include "mdgan/loss.h"
#include "mdgan/metrics.h"
#include "mdgan/stage1.h"
#include "mdgan/train.h"

static const char *PROG = "mdgan-base";
#define STAGE "base"
#define SAMPLE_CLIPS 4

static void usage(FILE *out) {
    fprintf(out,
            "usage: mdgan-base COMMAND [options]\n"
            "\n"
            "Stage I of MD-GAN: the Base-Net generator G1 and its discriminator D1.\n"
            "\n"
            "mdgan-base train [--config FILE] [--set section.key=value ...] [--resume CKPT|DIR]\n"
            "                 [--steps N] [--minutes M] [--log-every N]\n"
            "  Trains G1/D1 on [data] root with the [base] settings of the config (default:\n"
            "  built-in defaults, see pipeline.conf). Writes into <run.dir>/<run.name>/:\n"
            "    checkpoints/base_step_N.safetensors (+ .sha256), the newest [base] keep kept\n"
            "    samples/step_N.png (contact sheet: real row above generated row), step_N.gif,\n"
            "    samples/metrics_step_N.json, and metrics.jsonl (one line per evaluation)\n"
            "  --resume CKPT|DIR  continue exactly from a checkpoint (or the newest that verifies\n"
            "                     in a run folder); without --config the checkpoint's own config is\n"
            "                     used. Only epochs, ckpt_every, sample_every, keep and\n"
            "                     run.threads may change (results do not depend on threads).\n"
            "  --steps N          stop after N steps in all (default: [base] epochs)\n"
            "  --minutes M        stop after M minutes of training, with a checkpoint\n"
            "  --log-every N      progress line every N steps when stderr is not a terminal (10)\n"
            "  SIGINT/SIGTERM stop after the current step with a checkpoint (exit 130/143).\n"
            "\n"
            "mdgan-base infer --checkpoint FILE --data DIR --out DIR [--frames T] [--size S]\n"
            "                 [--bn running|batch] [--threads N]\n"
            "  Writes G1's clip for every T-frame window of every clip of DIR (layout\n"
            "  DIR/<video>/<clip>/<frame>.png|jpg) to OUT/<video>/<clip>/frame_NNNNN.png, window w\n"
            "  as frames w*T .. w*T+T-1, so OUT has the layout and windows of DIR.\n"
            "\n"
            "exit codes: 0 success, 1 runtime failure, 2 bad usage or input, 130/143 stopped by a signal\n");
}

// ---------------------------------------------------------------- train

typedef struct {
    const char *config_path;
    const char *sets[256];
    int nsets;
    const char *resume;
    long max_steps;
    double minutes;
    long log_every;
} TrainArgs;

typedef struct {
    Config cfg;
    char cfg_text_sha[65];
    char *cfg_text;
    char run_dir[2048], ckpt_dir[2100], sample_dir[2100], metrics_path[2100];
    Dataset ds;
    int *train, ntrain, *val, nval;
    Stage1 s;
    Rng rng;
    long step, steps_per_epoch, total_steps;
    float *batch;                   // (N, 3, T, H, W)
    ClipMetrics baseline;           // copy-first on the validation clips
    double baseline_l1;
    Stage1Losses last;
    Progress prog;
} Trainer;

// Keys that may differ between a checkpoint's config and the resumed run's: they change
// how long, how often or how fast, never what is computed (every kernel splits its work
// by shape, never by thread count, so the bits do not depend on run.threads).
static int key_may_change(const char *section, const char *line) {
    static const char *const keys[][2] = {{"[base]", "epochs ="}, {"[base]", "ckpt_every ="},
                                          {"[base]", "sample_every ="}, {"[base]", "keep ="},
                                          {"[run]", "threads ="}};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        if (!strcmp(section, keys[k][0]) && !strncmp(line, keys[k][1], strlen(keys[k][1]))) return 1;
    return 0;
}

// Compares canonical config texts line by line; -1 naming the first differing key.
static int config_compatible(const char *stored, const char *now, const char *ckpt) {
    const char *a = stored, *b = now;
    char section[64] = "";
    while (*a || *b) {
        size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (*a == '[') snprintf(section, sizeof section, "%.*s", (int)la, a);
        int same = la == lb && !strncmp(a, b, la);
        if (!same && !(key_may_change(section, a) && key_may_change(section, b))) {
            MDGAN_ERR("%s was trained with '%s %.*s' but this run has '%.*s': resume with the same config "
                      "(or without --config to use the checkpoint's)", ckpt, section, (int)la, a, (int)lb, b);
            return -1;
        }
        a += la + (a[la] == '\n'), b += lb + (b[lb] == '\n');
    }
    return 0;
}

// Data order of an epoch: a permutation of the training clips seeded by (seed, epoch),
// so the order at any step follows from the step alone (resume needs no data state).
static void epoch_order(int *order, const int *train, int n, uint64_t seed, long epoch) {
    Rng r;
    rng_seed(&r, seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1)));
    memcpy(order, train, n * sizeof(int));
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(&r, (uint64_t)i + 1), t = order[i];
        order[i] = order[j], order[j] = t;
    }
}

static void on_decode(void *ctx, int done, int total) {
    (void)ctx;
    if (done == total || done % 64 == 0) fprintf(stderr, "\rdecoding clips: %d/%d", done, total);
    if (done == total) fputc('\n', stderr);
}

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

// Validation: G1 (running BatchNorm statistics) on every validation clip; metrics
// per clip and overall, the contact sheet and GIF of the first SAMPLE_CLIPS clips.
static int evaluate(Trainer *tr, int write_samples) {
    const Config *c = &tr->cfg;
    const int T = c->data.frames, S = c->data.size;
    const size_t clip = (size_t)3 * T * S * S;
    int k = tr->nval < SAMPLE_CLIPS ? tr->nval : SAMPLE_CLIPS;
    float *real = malloc(clip * sizeof(float)), *keep = malloc((size_t)2 * (k ? k : 1) * clip * sizeof(float));
    if (!real || !keep) {
        free(real), free(keep);
        MDGAN_ERR("out of memory for validation");
        return -1;
    }
    json_t *clips = json_array();
    ClipMetrics sum = {0}, m;
    double l1_sum = 0;
    for (int i = 0; i < tr->nval; i++) {
        const DatasetClip *dc = &tr->ds.clips[tr->val[i]];
        dataset_clip(&tr->ds, tr->val[i], real);
        const float *pred = stage1_predict(&tr->s, real);
        double l1 = l1_forward(pred, real, clip);
        metrics_clip(&m, pred, real, T, S, S);
        l1_sum += l1;
        metrics_accumulate(&sum, &m);
        json_t *jc = metrics_json(l1, &m);
        json_object_set_new(jc, "video", json_string(dc->video));
        json_object_set_new(jc, "clip", json_string(dc->clip));
        json_object_set_new(jc, "window", json_integer(dc->window));
        json_array_append_new(clips, jc);
        if (i < k) {
            memcpy(keep + (size_t)(2 * i) * clip, real, clip * sizeof(float));
            memcpy(keep + (size_t)(2 * i + 1) * clip, pred, clip * sizeof(float));
        }
    }
    free(real);
    metrics_scale(&sum, 1.0 / tr->nval);
    double l1 = l1_sum / tr->nval;
    int rc = 0;
    char path[2300];
    if (write_samples && k > 0) {
        const float *rows[2 * SAMPLE_CLIPS];
        for (int i = 0; i < 2 * k; i++) rows[i] = keep + (size_t)i * clip;
        snprintf(path, sizeof path, "%s/step_%08ld.png", tr->sample_dir, tr->step);
        if (image_save_contact_sheet(path, rows, 2 * k, T, S, S, 2) != 0) rc = -1;
        snprintf(path, sizeof path, "%s/step_%08ld.gif", tr->sample_dir, tr->step);
        if (rc == 0 && image_save_gif(path, rows, 2 * k, T, S, S, 12) != 0) rc = -1;
    }
    free(keep);
    json_t *doc = json_pack("{s:i, s:i, s:o, s:o, s:o}", "step", (json_int_t)tr->step, "val_clips", tr->nval,
                            "model", metrics_json(l1, &sum), "copy_first", metrics_json(tr->baseline_l1, &tr->baseline),
                            "clips", clips);
    snprintf(path, sizeof path, "%s/metrics_step_%08ld.json", tr->sample_dir, tr->step);
    if (rc == 0) rc = json_write(path, doc);
    json_decref(doc);
    if (rc != 0) return -1;
    // one line per evaluation, appended, for curves
    FILE *f = fopen(tr->metrics_path, "a");
    if (!f) {
        MDGAN_ERR("cannot append to %s", tr->metrics_path);
        return -1;
    }
    fprintf(f, "{\"step\": %ld, \"val_l1\": %.6f, \"psnr\": %.4f, \"ssim\": %.5f, \"motion_ratio\": %.4f, "
               "\"d_real\": %.5f, \"d_fake\": %.5f, \"g_adv\": %.5f, \"g_l1\": %.5f}\n",
            tr->step, l1, sum.psnr, sum.ssim, sum.motion_ratio, tr->last.d_real, tr->last.d_fake, tr->last.g_adv,
            tr->last.g_l1);
    if (fclose(f) != 0) {
        MDGAN_ERR("cannot write %s", tr->metrics_path);
        return -1;
    }
    progress_note(&tr->prog, "%s: step %ld validation (%d clips): L1 %.4f PSNR %.2f SSIM %.4f motion ratio %.3f "
                  "(copy-first: L1 %.4f PSNR %.2f SSIM %.4f)%s%s", STAGE, tr->step, tr->nval, l1, sum.psnr, sum.ssim,
                  sum.motion_ratio, tr->baseline_l1, tr->baseline.psnr, tr->baseline.ssim,
                  write_samples && k ? "; samples " : "", write_samples && k ? tr->sample_dir : "");
    return 0;
}

// The copy-first baseline: every frame is the given first frame.
static int baseline(Trainer *tr) {
    const int T = tr->cfg.data.frames, S = tr->cfg.data.size;
    const size_t clip = (size_t)3 * T * S * S;
    float *real = malloc(clip * sizeof(float)), *copy = malloc(clip * sizeof(float));
    if (!real || !copy) {
        free(real), free(copy);
        MDGAN_ERR("out of memory");
        return -1;
    }
    ClipMetrics m;
    for (int i = 0; i < tr->nval; i++) {
        dataset_clip(&tr->ds, tr->val[i], real);
        stage1_repeat_first_frame(copy, real, 1, T, S, S);
        tr->baseline_l1 += l1_forward(copy, real, clip) / tr->nval;
        metrics_clip(&m, copy, real, T, S, S);
        metrics_accumulate(&tr->baseline, &m);
    }
    metrics_scale(&tr->baseline, 1.0 / tr->nval);
    free(real), free(copy);
    return 0;
}

// eval_due: an evaluation follows this checkpoint (a resume from it redoes the
// evaluation when the crash came before its line reached metrics.jsonl).
static int save_checkpoint(Trainer *tr, char *path, size_t n, int eval_due) {
    train_ckpt_path(path, n, tr->ckpt_dir, STAGE, tr->step);
    char step[32], epoch[32], batch[32], rng[68], frames[16], size[16], seed[32], threads[16], created[32];
    snprintf(step, sizeof step, "%ld", tr->step);
    snprintf(epoch, sizeof epoch, "%ld", tr->step / tr->steps_per_epoch);
    snprintf(batch, sizeof batch, "%ld", tr->step % tr->steps_per_epoch);
    rng_format(&tr->rng, rng);
    snprintf(frames, sizeof frames, "%d", tr->cfg.data.frames);
    snprintf(size, sizeof size, "%d", tr->cfg.data.size);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)tr->cfg.run.seed);
    snprintf(threads, sizeof threads, "%d", tr->cfg.run.threads);
    time_t now = time(NULL);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    // the last step's losses (9 digits: floats read back exactly), for the metrics log
    char losses[80];
    snprintf(losses, sizeof losses, "%.9g %.9g %.9g %.9g", tr->last.d_real, tr->last.d_fake, tr->last.g_adv,
             tr->last.g_l1);
    const CkptMeta meta[] = {
        {"run", tr->cfg.run.name}, {"stage", STAGE},      {"step", step},       {"epoch", epoch},
        {"batch", batch},          {"rng", rng},          {"config_sha256", tr->cfg_text_sha},
        {"config", tr->cfg_text},  {"frames", frames},    {"size", size},       {"seed", seed},
        {"threads", threads},      {"created", created},  {"losses", losses},
        {"eval_due", eval_due ? "1" : "0"},
    };
    const CkptNet nets[] = {{&tr->s.g, "G1", 1}, {&tr->s.d, "D1", 1}};
    if (ckpt_save(path, nets, 2, meta, (int)(sizeof meta / sizeof meta[0])) != 0) return -1;
    return train_ckpt_commit(path, tr->ckpt_dir, STAGE, tr->cfg.base.keep);
}

static long meta_long(const StFile *f, const char *key) {
    const char *v = st_meta_get(f, key);
    char *end;
    long x = v ? strtol(v, &end, 10) : -1;
    if (!v || *end || x < 0) {
        MDGAN_ERR("%s: metadata '%s' is missing or malformed", f->path, key);
        return -1;
    }
    return x;
}

static int parse_train_args(TrainArgs *a, int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 's'},
        {"resume", required_argument, 0, 'r'}, {"steps", required_argument, 0, 'n'},
        {"minutes", required_argument, 0, 'm'}, {"log-every", required_argument, 0, 'l'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
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
        default: MDGAN_ERR("train: unknown option '%s' (see mdgan-base --help)", argv[optind - 1]); return -1;
        }
    }
    if (optind < argc) {
        MDGAN_ERR("train: unexpected argument '%s'", argv[optind]);
        return -1;
    }
    return 0;
}

// Config from --config (or the resumed checkpoint's own) and --set; resume state.
static int setup_config(Trainer *tr, const TrainArgs *a, StFile *ck, char *ckpath, size_t ckn) {
    Config *c = &tr->cfg;
    config_defaults(c);
    if (a->resume) {
        if (train_ckpt_resolve(ckpath, ckn, a->resume, STAGE) != 0 || st_open(ck, ckpath) != 0) return -1;
        const char *stored = st_meta_get(ck, "config");
        if (!stored || !st_meta_get(ck, "stage") || strcmp(st_meta_get(ck, "stage"), STAGE) != 0) {
            MDGAN_ERR("%s is not a Stage I (base) training checkpoint", ckpath);
            return -1;
        }
        if (!a->config_path && config_parse(c, stored, ckpath) != 0) return -1;
    }
    if (a->config_path && config_load(c, a->config_path) != 0) return -1;
    for (int i = 0; i < a->nsets; i++)
        if (config_set(c, a->sets[i]) != 0) return -1;
    if (config_validate(c) != 0) return -1;
    if (config_to_text(c, &tr->cfg_text) != 0) return -1;
    fio_sha256_hex(tr->cfg_text, strlen(tr->cfg_text), tr->cfg_text_sha);
    if (a->resume && config_compatible(st_meta_get(ck, "config"), tr->cfg_text, ckpath) != 0) return -1;
    return 0;
}

static int cmd_train(int argc, char **argv) {
    TrainArgs a = {0};
    if (parse_train_args(&a, argc, argv) != 0) return MDGAN_EXIT_USAGE;
    Trainer *tr = calloc(1, sizeof *tr);
    if (!tr) {
        MDGAN_ERR("out of memory");
        return MDGAN_EXIT_RUNTIME;
    }
    StFile ck = {0};
    char ckpath[4096] = "";
    int rc = MDGAN_EXIT_USAGE;
    int *order = NULL;
    long logged = -1;           // last step in metrics.jsonl, on resume
    int eval_due_at_resume = 0; // the checkpoint resumed from was followed by an evaluation
    if (setup_config(tr, &a, &ck, ckpath, sizeof ckpath) != 0) goto done;
    const Config *c = &tr->cfg;
    const int T = c->data.frames, S = c->data.size, N = c->base.batch;
    cli_set_threads(c->run.threads);

    snprintf(tr->run_dir, sizeof tr->run_dir, "%s/%s", c->run.dir, c->run.name);
    snprintf(tr->ckpt_dir, sizeof tr->ckpt_dir, "%s/checkpoints", tr->run_dir);
    snprintf(tr->sample_dir, sizeof tr->sample_dir, "%s/samples", tr->run_dir);
    snprintf(tr->metrics_path, sizeof tr->metrics_path, "%s/metrics.jsonl", tr->run_dir);
    if (!a.resume) {
        // a fresh run never overwrites another run's checkpoints
        char latest[4096];
        if (train_ckpt_latest(latest, sizeof latest, tr->ckpt_dir, STAGE) == 0) {
            MDGAN_ERR("run folder %s already holds checkpoints (%s): resume it with --resume %s, or choose "
                      "another run.name", tr->run_dir, latest, tr->run_dir);
            goto done;
        }
        mdgan_errclear();
    }
    rc = MDGAN_EXIT_RUNTIME;
    if (fio_mkdir_p(tr->ckpt_dir, 0755) != 0 || fio_mkdir_p(tr->sample_dir, 0755) != 0) goto done;

    rc = MDGAN_EXIT_USAGE;
    fprintf(stderr, "%s: reading %s (%d frames of %dx%d)\n", STAGE, c->data.root, T, S, S);
    if (dataset_open(&tr->ds, c->data.root, T, S, S, isatty(2) ? on_decode : NULL, NULL) != 0) goto done;
    if (dataset_split(&tr->ds, c->data.val_fraction, c->run.seed, &tr->train, &tr->ntrain, &tr->val, &tr->nval) != 0)
        goto done;
    fprintf(stderr, "%s: %d clips from %d videos (%d skipped): %d for training, %d for validation\n", STAGE,
            tr->ds.nclips, tr->ds.nvideos, tr->ds.skipped_clips, tr->ntrain, tr->nval);
    if (tr->ntrain < N) {
        MDGAN_ERR("%s has %d training clips, fewer than one batch of %d (lower base.batch or data.val_fraction)",
                  c->data.root, tr->ntrain, N);
        goto done;
    }
    rc = MDGAN_EXIT_RUNTIME;
    rng_seed(&tr->rng, c->run.seed);
    const AdamConfig og = {c->base.lr, c->base.beta1, c->base.beta2, 1e-8};
    if (stage1_init(&tr->s, N, T, S, S, c->base.ngf, c->base.ndf, (float)c->base.lambda_l1, &og, &og, &tr->rng) != 0)
        goto done;
    tr->steps_per_epoch = tr->ntrain / N;
    tr->total_steps = tr->steps_per_epoch * c->base.epochs;
    if (a.max_steps && a.max_steps < tr->total_steps) tr->total_steps = a.max_steps;
    if (a.resume) {
        rc = MDGAN_EXIT_USAGE;
        long step = meta_long(&ck, "step");
        if (step < 0 || rng_parse(&tr->rng, st_meta_get(&ck, "rng")) != 0 ||
            ckpt_load_net(&ck, &tr->s.g, "G1", 1) != 0 || ckpt_load_net(&ck, &tr->s.d, "D1", 1) != 0)
            goto done;
        tr->step = step;
        const char *due = st_meta_get(&ck, "eval_due"); // absent in older checkpoints
        eval_due_at_resume = due ? !strcmp(due, "1") : step % c->base.sample_every == 0;
        const char *losses = st_meta_get(&ck, "losses"); // absent in older checkpoints: zeros
        if (losses && sscanf(losses, "%f %f %f %f", &tr->last.d_real, &tr->last.d_fake, &tr->last.g_adv,
                             &tr->last.g_l1) != 4)
            memset(&tr->last, 0, sizeof tr->last);
        fprintf(stderr, "%s: resumed from %s at step %ld\n", STAGE, ckpath, step);
        st_close(&ck);
        rc = MDGAN_EXIT_RUNTIME;
        if (train_log_truncate(tr->metrics_path, step, &logged) != 0) goto done;
    }
    tr->batch = malloc((size_t)N * 3 * T * S * S * sizeof(float));
    order = malloc((size_t)tr->ntrain * sizeof(int));
    if (!tr->batch || !order) {
        MDGAN_ERR("out of memory for a batch");
        goto done;
    }
    train_install_signals();
    progress_init(&tr->prog, STAGE, tr->step, tr->total_steps, a.log_every);
    if (tr->nval > 0) {
        if (baseline(tr) != 0) goto done;
        // the evaluation due at the resumed step is missing when the crash came between
        // the checkpoint and the end of the evaluation
        int due = !a.resume || (logged < tr->step && eval_due_at_resume);
        if (due && evaluate(tr, 1) != 0) goto done;
    }
    const double t0 = train_now();
    if (a.minutes > 0) tr->prog.deadline = t0 + a.minutes * 60;
    long order_epoch = -1;
    int stop = 0, saved = 0;
    char path[4096] = "";
    while (tr->step < tr->total_steps && !stop) {
        long epoch = tr->step / tr->steps_per_epoch, b = tr->step % tr->steps_per_epoch;
        if (epoch != order_epoch) epoch_order(order, tr->train, tr->ntrain, c->run.seed, epoch), order_epoch = epoch;
        dataset_batch(&tr->ds, order + b * N, N, tr->batch);
        stage1_step(&tr->s, tr->batch, &tr->last);
        tr->step++;
        const Stage1Losses *l = &tr->last;
        if (!isfinite(l->d_real + l->d_fake + l->g_adv + l->g_l1)) {
            MDGAN_ERR("training diverged at step %ld (D %g + %g, G adv %g, L1 %g); the last good checkpoint is "
                      "kept in %s", tr->step, l->d_real, l->d_fake, l->g_adv, l->g_l1, tr->ckpt_dir);
            goto done;
        }
        progress_step(&tr->prog, tr->step, (int)(epoch + 1), c->base.epochs, N,
                      "D %.3f  G adv %.3f  L1 %.4f", l->d_real + l->d_fake, l->g_adv, l->g_l1);
        const int sig = train_stop_signal();
        const int out_of_time = a.minutes > 0 && train_now() - t0 >= a.minutes * 60;
        stop = sig || out_of_time;
        saved = 0;
        const int eval_due =
            tr->nval > 0 && (tr->step % c->base.sample_every == 0 || tr->step == tr->total_steps || stop);
        if (tr->step % c->base.ckpt_every == 0 || tr->step == tr->total_steps || stop) {
            if (save_checkpoint(tr, path, sizeof path, eval_due) != 0) goto done;
            saved = 1;
        }
        if (eval_due && evaluate(tr, 1) != 0) goto done;
        if (sig) progress_note(&tr->prog, "%s: stopped by signal %d after step %ld", STAGE, sig, tr->step);
        else if (out_of_time) progress_note(&tr->prog, "%s: %.1f minutes of training done", STAGE, a.minutes);
    }
    if (!saved && tr->step > 0 && save_checkpoint(tr, path, sizeof path, 0) != 0) goto done;
    if (tr->step == 0) train_ckpt_latest(path, sizeof path, tr->ckpt_dir, STAGE);
    progress_note(&tr->prog, "%s: step %ld/%ld done\n  checkpoint: %s\n  samples:    %s/step_%08ld.png (.gif)\n"
                  "  metrics:    %s/metrics_step_%08ld.json and %s", STAGE, tr->step, tr->total_steps, path,
                  tr->sample_dir, tr->step, tr->sample_dir, tr->step, tr->metrics_path);
    rc = train_stop_signal() == SIGINT ? 130 : train_stop_signal() == SIGTERM ? 143 : MDGAN_EXIT_OK;
done:
    st_close(&ck);
    free(order);
    free(tr->batch), free(tr->train), free(tr->val), free(tr->cfg_text);
    stage1_free(&tr->s);
    dataset_close(&tr->ds);
    free(tr);
    return rc;
}

// ---------------------------------------------------------------- infer

static int cmd_infer(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *out = NULL;
    int frames = 0, size = 0, threads = 0;
    BnMode bn = BN_RUNNING;
    static const struct option opts[] = {
        {"checkpoint", required_argument, 0, 'c'}, {"data", required_argument, 0, 'd'},
        {"out", required_argument, 0, 'o'},        {"frames", required_argument, 0, 'T'},
        {"size", required_argument, 0, 'S'},       {"bn", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 'j'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int opt;
    optind = 1, opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': ckpt = optarg; break;
        case 'd': data = optarg; break;
        case 'o': out = optarg; break;
        case 'T': if (cli_int("--frames", optarg, 1, 1024, &frames) != 0) return MDGAN_EXIT_USAGE; break;
        case 'S': if (cli_int("--size", optarg, 8, 4096, &size) != 0) return MDGAN_EXIT_USAGE; break;
        case 'j': if (cli_int("--threads", optarg, 1, 1024, &threads) != 0) return MDGAN_EXIT_USAGE; break;
        case 'b': if (cli_bn_mode(optarg, &bn) != 0) return MDGAN_EXIT_USAGE; break;
        case 'h': usage(stdout); return MDGAN_EXIT_OK;
        case ':': MDGAN_ERR("infer: option %s needs a value", argv[optind - 1]); return MDGAN_EXIT_USAGE;
        default: MDGAN_ERR("infer: unknown option '%s' (see mdgan-base --help)", argv[optind - 1]); return MDGAN_EXIT_USAGE;
        }
    }
    if (optind < argc || !ckpt || !data || !out) {
        MDGAN_ERR("infer needs --checkpoint, --data and --out (see mdgan-base --help)");
        return MDGAN_EXIT_USAGE;
    }
    cli_set_threads(threads);
    int rc = MDGAN_EXIT_USAGE;
    StFile f = {0};
    Net g = {0};
    Acts acts = {0};
    Dataset ds = {0};
    float *y = NULL, *x = NULL, *ws = NULL;
    if (st_open(&f, ckpt) != 0) goto done;
    if (!frames) frames = (int)meta_long(&f, "frames");
    if (!size) size = (int)meta_long(&f, "size");
    if (frames <= 0 || size <= 0) {
        MDGAN_ERR("%s does not say its frames and size: give --frames and --size", ckpt);
        goto done;
    }
    const int T = frames, S = size;
    if (ckpt_load_generator(&g, &f, NET_G1, T, S) != 0) goto done;
    if (dataset_open(&ds, data, T, S, S, isatty(2) ? on_decode : NULL, NULL) != 0) goto done;
    rc = MDGAN_EXIT_RUNTIME;
    const size_t clip = (size_t)3 * T * S * S;
    if (acts_init(&acts, &g, 1) != 0) goto done;
    y = malloc(clip * sizeof(float)), x = malloc(clip * sizeof(float));
    ws = malloc(acts.ws_floats * sizeof(float));
    if (!y || !x || !ws) {
        MDGAN_ERR("out of memory");
        goto done;
    }
    Progress p;
    progress_init(&p, "infer", 0, ds.nclips, 10);
    for (int i = 0; i < ds.nclips; i++) {
        const DatasetClip *dc = &ds.clips[i];
        dataset_clip(&ds, i, y);
        stage1_repeat_first_frame(x, y, 1, T, S, S);
        net_forward(&g, &acts, x, bn, ws);
        const float *y1 = acts_output(&acts);
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s/%s", out, dc->video, dc->clip);
        if (fio_mkdir_p(dir, 0755) != 0 || image_save_frames(dir, "frame_", 5, (long)dc->window * T, y1, T, S, S) != 0)
            goto done;
        progress_step(&p, i + 1, 1, 1, 1, "%s/%s", dc->video, dc->clip);
    }
    progress_note(&p, "wrote %d clips of %d frames (%dx%d) to %s", ds.nclips, T, S, S, out);
    rc = MDGAN_EXIT_OK;
done:
    free(y), free(x), free(ws);
    acts_free(&acts);
    net_free(&g);
    dataset_close(&ds);
    st_close(&f);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return MDGAN_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    int rc;
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return MDGAN_EXIT_OK;
    } else if (!strcmp(cmd, "train")) {
        rc = cmd_train(argc - 1, argv + 1);
    } else if (!strcmp(cmd, "infer")) {
        rc = cmd_infer(argc - 1, argv + 1);
    } else {
        fprintf(stderr, "%s: unknown command '%s' (see mdgan-base --help)\n", PROG, cmd);
        return MDGAN_EXIT_USAGE;
    }
    if ((rc == MDGAN_EXIT_USAGE || rc == MDGAN_EXIT_RUNTIME) && mdgan_errmsg()[0]) mdgan_errprint(PROG);
    return rc;
}
