// mdgan: the user's front door.
//   run, resume, runs, status, stop, refine, report: the coordinator (common/coordinator.c)
//   predict  a photo -> a time-lapse clip with a trained or converted Base-Net,
//            optionally refined by a Refine-Net
//   data     synth: procedural sky time-lapse clips in the dataset layout
//   eval     metrics of predicted clips against real ones
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mdgan/ckpt.h"
#include "mdgan/cli.h"
#include "mdgan/coordinator.h"
#include "mdgan/dataset.h"
#include "mdgan/error.h"
#include "mdgan/fileio.h"
#include "mdgan/image.h"
#include "mdgan/mem.h"
#include "mdgan/metrics.h"
#include "mdgan/net.h"
#include "mdgan/synth.h"
#include "mdgan/train.h"
#include <jansson.h>

static const char *PROG = "mdgan";

static void usage(FILE *out) {
    fprintf(out,
            "usage: mdgan COMMAND [options]\n"
            "\n"
            "commands:\n"
            "  run       train a model: Stage I, then Stage II against it, predictions, a report\n"
            "  resume    continue an interrupted run exactly where it stopped\n"
            "  runs      list the runs of the database\n"
            "  status    one run's stages: progress, rate, ETA, losses, checkpoints (live)\n"
            "  stop      stop a run cleanly (each stage writes a checkpoint)\n"
            "  refine    refine a folder of Base-Net clips with a run's Refine-Net\n"
            "  report    an HTML report of one or more runs (curves, samples, config, events)\n"
            "  predict   generate a time-lapse clip from one photo\n"
            "  data      synth: write procedural sky time-lapse clips\n"
            "  eval      metrics of predicted clips against the real ones\n"
            "\n"
            "Every run command takes --config FILE and --set section.key=value (any number) for\n"
            "where the database (coord.db) and the runs (run.dir) live; built-in defaults:\n"
            "runs/mdgan.db and runs/.\n"
            "\n"
            "mdgan run [CONFIG] [--set k=v ...] [--name NAME] [--stages base|refine|all]\n"
            "          [--base-checkpoint FILE] [--detach]\n"
            "  Creates a run (its config snapshot and sha256 in SQLite, its folder\n"
            "  <run.dir>/<NAME>), trains Stage I (mdgan-base train), then Stage II (mdgan-base\n"
            "  serve + mdgan-refine train over ZeroMQ), predicts the validation clips through both\n"
            "  stages with their metrics, and writes the report <run folder>/report/index.html.\n"
            "  The coordinator watches the stages over its control socket, restarts a failed or\n"
            "  silent one from its last good checkpoint ([coord] restart, max_restarts,\n"
            "  heartbeat_s), and records checkpoints, metrics and events.\n"
            "  --name NAME        default run.name; when taken, run.name-2, -3, ...\n"
            "  --stages S         base: Stage I only; refine: Stage II on --base-checkpoint FILE\n"
            "  --detach           return once the stages run; the coordinator's log is\n"
            "                     <run folder>/coord.log\n"
            "  SIGINT/SIGTERM stop every stage with a checkpoint (exit 130/143).\n"
            "\n"
            "mdgan resume RUN [--set k=v ...] [--detach]\n"
            "  Continues RUN from each stage's newest checkpoint whose sha256 matches the one\n"
            "  recorded (a damaged one is reported and the one before it used), with the run's\n"
            "  own config snapshot; --set may change only transport.*, coord.* and run.threads.\n"
            "  A moved run is found under --set run.dir=DIR.\n"
            "\n"
            "mdgan runs                 name, status, stage and step, times, last validation metrics\n"
            "mdgan status RUN [--once]  each stage: status, pid, step, rate, ETA, losses, newest\n"
            "                           checkpoint, restarts; the last events. On a terminal it\n"
            "                           redraws every second while the run goes on.\n"
            "mdgan stop RUN [--wait S]  asks RUN's coordinator to stop (each stage writes a\n"
            "                           checkpoint) and waits up to S seconds (default 600)\n"
            "mdgan refine (--run RUN | --checkpoint FILE) --input DIR --out DIR\n"
            "  Refines Base-Net clips (DIR/<video>/<clip>/<frame>.png) with RUN's newest\n"
            "  Refine-Net checkpoint, or FILE; recorded as a job of the run.\n"
            "mdgan report RUN [RUN ...] [--out DIR]\n"
            "  A self-contained folder (default <first run's folder>/report) with index.html:\n"
            "  loss and validation curves (runs overlaid), the newest contact sheets and GIFs,\n"
            "  the config, checkpoints and events. Opens offline in a browser.\n"
            "\n"
            "mdgan predict --checkpoint FILE [--refine FILE] --image IMG --out DIR\n"
            "              [--frames T] [--size S] [--bn running|batch] [--raw FILE] [--threads N]\n"
            "  --checkpoint FILE  safetensors with G1.* tensors (an mdgan checkpoint) or the bare\n"
            "                     state_dict keys of the released PyTorch model (downConv1.weight, ...)\n"
            "  --refine FILE      safetensors with a Refine-Net (G2.* or bare keys); without it, G2.*\n"
            "                     tensors in --checkpoint are used when present\n"
            "  --image IMG        PNG or JPEG photo; centre-cropped to a square and resized to S x S\n"
            "  --out DIR          writes DIR/frame_000.png ... and DIR/contact_sheet.png\n"
            "  --frames T         frames to generate (default: the checkpoint's, else 32)\n"
            "  --size S           frame size (default: the checkpoint's, else 128)\n"
            "  --bn MODE          BatchNorm statistics: running (default) or batch (as the released\n"
            "                     code ran at test time)\n"
            "  --raw FILE         also write the clip as little-endian float32 (1, 3, T, S, S) in [-1, 1]\n"
            "  --threads N        threads (default: all cores)\n"
            "\n"
            "mdgan data synth --out DIR [--clips N] [--frames T] [--size S] [--per-video K]\n"
            "                 [--seed K] [--jpeg]\n"
            "  Writes DIR/video_NNN/clip_NNN/frame_NNN.png: drifting multi-octave clouds over a sky\n"
            "  gradient, a horizon silhouette and slow light change; K consecutive clips per video\n"
            "  (defaults: 64 clips, 32 frames, 64x64, 4 per video, seed 1)\n"
            "\n"
            "mdgan eval --pred DIR --real DIR [--frames T] [--size S] [--json FILE]\n"
            "  Pairs the T-frame windows of DIR trees with the same <video>/<clip> layout (as\n"
            "  mdgan-base infer writes) and reports, over frames 2..T in [0,1]: MSE, PSNR, SSIM\n"
            "  (11x11 Gaussian, sigma 1.5) and the motion-energy ratio, per clip and overall.\n"
            "  S defaults to the size of the predicted frames; T to 32.\n"
            "\n"
            "exit codes: 0 success, 1 runtime failure, 2 bad usage or input\n");
}

typedef struct {
    const char *checkpoint, *refine, *image, *out, *raw;
    int frames, size, threads;
    BnMode bn;
} PredictArgs;

static int meta_int(const StFile *f, const char *key, int *out) {
    const char *v = st_meta_get(f, key);
    if (!v) return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < 1 || x > 1 << 20) return 0;
    *out = (int)x;
    return 1;
}

static int write_outputs(const PredictArgs *a, const float *y1, const float *y2) {
    const int T = a->frames, S = a->size;
    const float *y = y2 ? y2 : y1;
    if (fio_mkdir_p(a->out, 0755) != 0) return -1;
    // contact sheet: the Base-Net clip, and under it the refined one
    char path[4096];
    const float *rows[2] = {y1, y2};
    snprintf(path, sizeof path, "%s/contact_sheet.png", a->out);
    const ImageSheet sheet = {path, rows, y2 ? 2 : 1, 2};
    if (image_save_frames_and_sheet(a->out, "frame_", 3, 0, y, T, S, S, &sheet) != 0) return -1;
    if (a->raw) {
        const void *bufs[1] = {y};
        const size_t lens[1] = {(size_t)3 * T * S * S * sizeof(float)};
        if (fio_write_atomic(a->raw, bufs, lens, 1) != 0) return -1;
    }
    return 0;
}

static int cmd_predict(int argc, char **argv) {
    PredictArgs a = {.bn = BN_RUNNING};
    static const struct option opts[] = {
        {"checkpoint", required_argument, 0, 'c'}, {"refine", required_argument, 0, 'r'},
        {"image", required_argument, 0, 'i'},      {"out", required_argument, 0, 'o'},
        {"frames", required_argument, 0, 'T'},     {"size", required_argument, 0, 'S'},
        {"bn", required_argument, 0, 'b'},         {"raw", required_argument, 0, 'w'},
        {"threads", required_argument, 0, 'j'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': a.checkpoint = optarg; break;
        case 'r': a.refine = optarg; break;
        case 'i': a.image = optarg; break;
        case 'o': a.out = optarg; break;
        case 'w': a.raw = optarg; break;
        case 'T': if (cli_int("--frames", optarg, 1, 1024, &a.frames) != 0) return MDGAN_EXIT_USAGE; break;
        case 'S': if (cli_int("--size", optarg, 8, 4096, &a.size) != 0) return MDGAN_EXIT_USAGE; break;
        case 'j': if (cli_int("--threads", optarg, 1, 1024, &a.threads) != 0) return MDGAN_EXIT_USAGE; break;
        case 'b': if (cli_bn_mode(optarg, &a.bn) != 0) return MDGAN_EXIT_USAGE; break;
        case 'h': usage(stdout); return MDGAN_EXIT_OK;
        case ':': MDGAN_ERR("predict: option %s needs a value", argv[optind - 1]); return MDGAN_EXIT_USAGE;
        default: MDGAN_ERR("predict: unknown option '%s' (see mdgan --help)", argv[optind - 1]); return MDGAN_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        MDGAN_ERR("predict: unexpected argument '%s'", argv[optind]);
        return MDGAN_EXIT_USAGE;
    }
    if (!a.checkpoint || !a.image || !a.out) {
        MDGAN_ERR("predict needs --checkpoint, --image and --out (see mdgan --help)");
        return MDGAN_EXIT_USAGE;
    }
    cli_set_threads(a.threads);

    int rc = MDGAN_EXIT_USAGE;
    StFile ck = {0}, rf = {0};
    Image photo = {0}, fitted = {0};
    Net g1 = {0}, g2 = {0};
    Acts a1 = {0}, a2 = {0};
    float *x = NULL, *ws = NULL;
    int have_g2 = 0;
    const double t0 = train_now();
    if (st_open(&ck, a.checkpoint) != 0) goto done;
    if (!a.frames && !meta_int(&ck, "frames", &a.frames)) a.frames = 32;
    if (!a.size && !meta_int(&ck, "size", &a.size)) a.size = 128;
    int L, ext[NET_MAX_LEVELS + 1][3];
    if (net_levels(a.frames, a.size, a.size, &L, ext) != 0) goto done;
    if (image_load(&photo, a.image) != 0 || image_fit_square(&fitted, &photo, a.size) != 0) goto done;
    if (ckpt_load_generator(&g1, &ck, NET_G1, a.frames, a.size) != 0) goto done;
    // G2 is loaded once G1 has run, into G1's memory (mem_free_big keeps it); its file is
    // opened now, so that one that is not there fails before any work
    const StFile *g2_file = NULL;
    if (a.refine) {
        if (st_open(&rf, a.refine) != 0) goto done;
        g2_file = &rf;
    } else if (ckpt_has_net(&ck, "G2", NET_G2)) {
        g2_file = &ck;
    }
    rc = MDGAN_EXIT_RUNTIME;
    const int T = a.frames, S = a.size;
    if (acts_init_inference(&a1, &g1, 1) != 0) goto done;
    const size_t clip = (size_t)3 * T * S * S;
    x = malloc(clip * sizeof(float));
    size_t wsn = a1.ws_floats;
    ws = mem_alloc_big(wsn * sizeof(float));
    if (!x || !ws) {
        MDGAN_ERR("out of memory for a %d-frame %dx%d clip", T, S, S);
        goto done;
    }
    // The photo repeated T times: x[c][t] = photo[c]
    image_to_chw(x, &fitted);
    for (int c = 2; c >= 0; c--)
        for (int t = T - 1; t >= 0; t--)
            memmove(x + ((size_t)c * T + t) * S * S, x + (size_t)c * S * S, (size_t)S * S * sizeof(float));
    const double t1 = train_now();
    net_forward(&g1, &a1, x, a.bn, ws);
    const double t2 = train_now();
    float *y1 = x;   // the input is not needed any more
    memcpy(y1, acts_output(&a1), clip * sizeof(float));
    acts_free(&a1);
    net_free(&g1);
    double load_g2 = 0;
    if (g2_file) {
        rc = MDGAN_EXIT_USAGE;   // a file that holds no G2 of this shape is bad input
        if (ckpt_load_generator(&g2, g2_file, NET_G2, a.frames, a.size) != 0) goto done;
        rc = MDGAN_EXIT_RUNTIME;
        have_g2 = 1;
        load_g2 = train_now() - t2;
        if (acts_init_inference(&a2, &g2, 1) != 0) goto done;
        if (a2.ws_floats > wsn) {
            mem_free_big(ws);
            wsn = a2.ws_floats;
            if (!(ws = mem_alloc_big(wsn * sizeof(float)))) {
                MDGAN_ERR("out of memory for G2's workspace (%.1f MiB)", (double)wsn * 4 / 1048576.0);
                goto done;
            }
        }
        net_forward(&g2, &a2, y1, a.bn, ws);
    }
    const double t3 = train_now();
    if (write_outputs(&a, y1, have_g2 ? acts_output(&a2) : NULL) != 0) goto done;
    fprintf(stderr, "predict: load %.3f s, G1 %.3f s, G2 %.3f s, write %.3f s\n", t1 - t0 + load_g2, t2 - t1,
            t3 - t2 - load_g2, train_now() - t3);
    printf("wrote %d frames of %dx%d to %s/frame_000.png .. frame_%03d.png%s\n", T, S, S, a.out, T - 1,
           have_g2 ? " (refined by G2)" : "");
    printf("contact sheet: %s/contact_sheet.png\n", a.out);
    if (a.raw) printf("raw float32 (1, 3, %d, %d, %d): %s\n", T, S, S, a.raw);
    rc = MDGAN_EXIT_OK;
done:
    free(x), mem_free_big(ws);
    acts_free(&a1), acts_free(&a2);
    net_free(&g1), net_free(&g2);
    image_free(&photo), image_free(&fitted);
    st_close(&ck), st_close(&rf);
    return rc;
}


static int cmd_data(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "synth") != 0) {
        MDGAN_ERR("data: the only subcommand is 'synth' (see mdgan --help)");
        return MDGAN_EXIT_USAGE;
    }
    SynthSpec spec;
    synth_spec_default(&spec);
    const char *out = NULL;
    int seed = -1, threads = 0;
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},    {"clips", required_argument, 0, 'n'},
        {"frames", required_argument, 0, 'T'}, {"size", required_argument, 0, 'S'},
        {"per-video", required_argument, 0, 'k'}, {"seed", required_argument, 0, 's'},
        {"jpeg", no_argument, 0, 'J'},         {"threads", required_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    int opt;
    optind = 1, opterr = 0;
    while ((opt = getopt_long(argc - 1, argv + 1, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'o': out = optarg; break;
        case 'n': if (cli_int("--clips", optarg, 1, 1000000, &spec.clips) != 0) return MDGAN_EXIT_USAGE; break;
        case 'T': if (cli_int("--frames", optarg, 2, 4096, &spec.frames) != 0) return MDGAN_EXIT_USAGE; break;
        case 'S': if (cli_int("--size", optarg, 8, 1024, &spec.size) != 0) return MDGAN_EXIT_USAGE; break;
        case 'k': if (cli_int("--per-video", optarg, 1, 1000000, &spec.clips_per_video) != 0) return MDGAN_EXIT_USAGE; break;
        case 's': if (cli_int("--seed", optarg, 0, 2147483647, &seed) != 0) return MDGAN_EXIT_USAGE; break;
        case 'j': if (cli_int("--threads", optarg, 1, 1024, &threads) != 0) return MDGAN_EXIT_USAGE; break;
        case 'J': spec.jpeg = 1; break;
        case 'h': usage(stdout); return MDGAN_EXIT_OK;
        case ':': MDGAN_ERR("data synth: option %s needs a value", argv[optind]); return MDGAN_EXIT_USAGE;
        default: MDGAN_ERR("data synth: unknown option '%s' (see mdgan --help)", argv[optind]); return MDGAN_EXIT_USAGE;
        }
    }
    if (!out) {
        MDGAN_ERR("data synth needs --out DIR");
        return MDGAN_EXIT_USAGE;
    }
    if (seed >= 0) spec.seed = (uint64_t)seed;
    cli_set_threads(threads);
    if (synth_write(out, &spec) != 0) return MDGAN_EXIT_RUNTIME;
    printf("wrote %d clips of %d frames (%dx%d) in %d videos to %s\n", spec.clips, spec.frames, spec.size, spec.size,
           (spec.clips + spec.clips_per_video - 1) / spec.clips_per_video, out);
    return MDGAN_EXIT_OK;
}

static int cmd_eval(int argc, char **argv) {
    const char *pred = NULL, *real = NULL, *json_path = NULL;
    int T = 32, S = 0, threads = 0;
    static const struct option opts[] = {
        {"pred", required_argument, 0, 'p'},   {"real", required_argument, 0, 'r'},
        {"frames", required_argument, 0, 'T'}, {"size", required_argument, 0, 'S'},
        {"json", required_argument, 0, 'J'},   {"threads", required_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    int opt;
    optind = 1, opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'p': pred = optarg; break;
        case 'r': real = optarg; break;
        case 'J': json_path = optarg; break;
        case 'T': if (cli_int("--frames", optarg, 2, 4096, &T) != 0) return MDGAN_EXIT_USAGE; break;
        case 'S': if (cli_int("--size", optarg, 11, 4096, &S) != 0) return MDGAN_EXIT_USAGE; break;
        case 'j': if (cli_int("--threads", optarg, 1, 1024, &threads) != 0) return MDGAN_EXIT_USAGE; break;
        case 'h': usage(stdout); return MDGAN_EXIT_OK;
        case ':': MDGAN_ERR("eval: option %s needs a value", argv[optind - 1]); return MDGAN_EXIT_USAGE;
        default: MDGAN_ERR("eval: unknown option '%s' (see mdgan --help)", argv[optind - 1]); return MDGAN_EXIT_USAGE;
        }
    }
    if (optind < argc || !pred || !real) {
        MDGAN_ERR("eval needs --pred DIR and --real DIR (see mdgan --help)");
        return MDGAN_EXIT_USAGE;
    }
    cli_set_threads(threads);
    if (!S && dataset_first_frame_size(pred, &S, NULL, 0) != 0) return MDGAN_EXIT_USAGE;
    Dataset dp = {0}, dr = {0};
    int rc = MDGAN_EXIT_USAGE;
    float *a = NULL, *b = NULL;
    json_t *clips = json_array();
    if (dataset_open(&dp, pred, T, S, S, NULL, NULL) != 0 || dataset_open(&dr, real, T, S, S, NULL, NULL) != 0) goto done;
    const size_t clip = (size_t)3 * T * S * S;
    a = malloc(clip * sizeof(float)), b = malloc(clip * sizeof(float));
    if (!a || !b) {
        MDGAN_ERR("out of memory");
        rc = MDGAN_EXIT_RUNTIME;
        goto done;
    }
    ClipMetrics sum = {0}, m;
    int paired = 0, j = 0;
    // both lists are sorted by (video, clip, window): walk them together
    for (int i = 0; i < dp.nclips; i++) {
        const DatasetClip *p = &dp.clips[i];
        int c = 1;
        while (j < dr.nclips) {
            const DatasetClip *r = &dr.clips[j];
            c = dataset_name_cmp(r->video, p->video);
            if (!c) c = dataset_name_cmp(r->clip, p->clip);
            if (!c) c = (r->window > p->window) - (r->window < p->window);
            if (c >= 0) break;
            j++;
        }
        if (c != 0) {
            MDGAN_ERR("%s/%s/%s (window %d) has no real counterpart in %s", pred, p->video, p->clip, p->window, real);
            goto done;
        }
        dataset_clip(&dp, i, a);
        dataset_clip(&dr, j, b);
        if (metrics_clip(&m, a, b, T, S, S) != 0) goto done;
        metrics_accumulate(&sum, &m);
        json_t *jc = metrics_to_json(&m);
        json_object_set_new(jc, "video", json_string(p->video));
        json_object_set_new(jc, "clip", json_string(p->clip));
        json_object_set_new(jc, "window", json_integer(p->window));
        json_array_append_new(clips, jc);
        printf("%s/%s window %d: MSE %.5f PSNR %.2f SSIM %.4f motion ratio %.3f\n", p->video, p->clip, p->window,
               m.mse, m.psnr, m.ssim, m.motion_ratio);
        paired++;
    }
    metrics_scale(&sum, 1.0 / paired);
    printf("overall (%d clips, %d frames of %dx%d): MSE %.5f PSNR %.2f SSIM %.4f motion ratio %.3f\n", paired, T, S,
           S, sum.mse, sum.psnr, sum.ssim, sum.motion_ratio);
    rc = MDGAN_EXIT_RUNTIME;
    if (json_path) {
        json_t *doc = json_pack("{s:s, s:s, s:i, s:i, s:i, s:o, s:O}", "pred", pred, "real", real, "frames", T, "size",
                                S, "clips_evaluated", paired, "overall", metrics_to_json(&sum), "clips", clips);
        char *text = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        json_decref(doc);
        if (!text) goto done;
        const void *bufs[1] = {text};
        const size_t lens[1] = {strlen(text)};
        int w = fio_write_atomic(json_path, bufs, lens, 1);
        free(text);
        if (w != 0) goto done;
        printf("metrics: %s\n", json_path);
    }
    rc = MDGAN_EXIT_OK;
done:
    json_decref(clips);
    free(a), free(b);
    dataset_close(&dp), dataset_close(&dr);
    return rc;
}

// ---------------------------------------------------------------- the coordinator's commands

// Options every coordinator command takes, with its own (val >= 256) after them.
// Returns -1 to go on, else the exit code. Positional arguments are left in
// argv[optind..argc).
static int parse_coord_opts(int argc, char **argv, CoordWhere *w, const struct option *own,
                            int (*handle)(void *ctx, int opt, const char *arg), void *ctx, int min_pos, int max_pos) {
    struct option opts[24];
    int n = 0;
    opts[n++] = (struct option){"config", required_argument, 0, 'c'};
    opts[n++] = (struct option){"set", required_argument, 0, 's'};
    opts[n++] = (struct option){"help", no_argument, 0, 'h'};
    for (int k = 0; own && own[k].name && n < 23; k++) opts[n++] = own[k];
    opts[n] = (struct option){0, 0, 0, 0};
    int opt;
    optind = 1, opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': w->config_path = optarg; break;
        case 's':
            if (w->nsets == 256) {
                MDGAN_ERR("too many --set options");
                return MDGAN_EXIT_USAGE;
            }
            w->sets[w->nsets++] = optarg;
            break;
        case 'h': usage(stdout); return MDGAN_EXIT_OK;
        case ':': MDGAN_ERR("%s: option %s needs a value", argv[0], argv[optind - 1]); return MDGAN_EXIT_USAGE;
        case '?': MDGAN_ERR("%s: unknown option '%s' (see mdgan --help)", argv[0], argv[optind - 1]); return MDGAN_EXIT_USAGE;
        default:
            if (!handle || handle(ctx, opt, optarg) != 0) return MDGAN_EXIT_USAGE;
        }
    }
    const int npos = argc - optind;
    if (npos < min_pos || npos > max_pos) {
        if (npos > max_pos) MDGAN_ERR("%s: unexpected argument '%s' (see mdgan --help)", argv[0], argv[optind + max_pos]);
        else MDGAN_ERR("%s needs %s (see mdgan --help)", argv[0], min_pos == 1 ? "a run name" : "more arguments");
        return MDGAN_EXIT_USAGE;
    }
    return -1;
}

static int run_opt(void *ctx, int opt, const char *arg) {
    CoordRunArgs *a = ctx;
    switch (opt) {
    case 256: a->name = arg; return 0;
    case 257: a->stages = arg; return 0;
    case 258: a->base_checkpoint = arg; return 0;
    case 259: a->detach = 1; return 0;
    }
    return -1;
}

static const struct option RUN_OPTS[] = {{"name", required_argument, 0, 256},
                                         {"stages", required_argument, 0, 257},
                                         {"base-checkpoint", required_argument, 0, 258},
                                         {"detach", no_argument, 0, 259},
                                         {0, 0, 0, 0}};

static int cmd_run(int argc, char **argv) {
    CoordRunArgs a = {0};
    char bindir[4096];
    int rc = parse_coord_opts(argc, argv, &a.where, RUN_OPTS, run_opt, &a, 0, 1);
    if (rc >= 0) return rc;
    if (optind < argc) {
        if (a.where.config_path) {
            MDGAN_ERR("run: give the config once (CONFIG or --config)");
            return MDGAN_EXIT_USAGE;
        }
        a.where.config_path = argv[optind];
    }
    if (coord_bindir(bindir, sizeof bindir) != 0) return MDGAN_EXIT_RUNTIME;
    a.bindir = bindir;
    return coord_run(&a);
}

static int cmd_resume(int argc, char **argv) {
    CoordRunArgs a = {0};
    char bindir[4096];
    static const struct option own[] = {{"detach", no_argument, 0, 259}, {0, 0, 0, 0}};
    int rc = parse_coord_opts(argc, argv, &a.where, own, run_opt, &a, 1, 1);
    if (rc >= 0) return rc;
    if (coord_bindir(bindir, sizeof bindir) != 0) return MDGAN_EXIT_RUNTIME;
    a.bindir = bindir;
    return coord_resume(argv[optind], &a);
}

static int cmd_runs(int argc, char **argv) {
    CoordWhere w = {0};
    int rc = parse_coord_opts(argc, argv, &w, NULL, NULL, NULL, 0, 0);
    return rc >= 0 ? rc : coord_runs(&w);
}

static int status_opt(void *ctx, int opt, const char *arg) {
    (void)arg;
    int *live = ctx;
    if (opt == 256) *live = 0;
    else if (opt == 257) *live = 1;
    else return -1;
    return 0;
}

static int cmd_status(int argc, char **argv) {
    CoordWhere w = {0};
    int live = isatty(1);
    static const struct option own[] = {{"once", no_argument, 0, 256}, {"live", no_argument, 0, 257}, {0, 0, 0, 0}};
    int rc = parse_coord_opts(argc, argv, &w, own, status_opt, &live, 1, 1);
    return rc >= 0 ? rc : coord_status(&w, argv[optind], live);
}

static int stop_opt(void *ctx, int opt, const char *arg) {
    int v;
    if (opt != 256 || cli_int("--wait", arg, 1, 86400, &v) != 0) return -1;
    *(double *)ctx = v;
    return 0;
}

static int cmd_stop(int argc, char **argv) {
    CoordWhere w = {0};
    double wait_s = 600;
    static const struct option own[] = {{"wait", required_argument, 0, 256}, {0, 0, 0, 0}};
    int rc = parse_coord_opts(argc, argv, &w, own, stop_opt, &wait_s, 1, 1);
    return rc >= 0 ? rc : coord_stop(&w, argv[optind], wait_s);
}

typedef struct {
    const char *run, *checkpoint, *input, *out;
} RefineOpts;

static int refine_opt(void *ctx, int opt, const char *arg) {
    RefineOpts *r = ctx;
    switch (opt) {
    case 256: r->run = arg; return 0;
    case 257: r->checkpoint = arg; return 0;
    case 258: r->input = arg; return 0;
    case 259: r->out = arg; return 0;
    }
    return -1;
}

static int cmd_refine(int argc, char **argv) {
    CoordWhere w = {0};
    RefineOpts r = {0};
    static const struct option own[] = {{"run", required_argument, 0, 256}, {"checkpoint", required_argument, 0, 257},
                                        {"input", required_argument, 0, 258}, {"out", required_argument, 0, 259},
                                        {0, 0, 0, 0}};
    int rc = parse_coord_opts(argc, argv, &w, own, refine_opt, &r, 0, 0);
    if (rc >= 0) return rc;
    if (!r.run == !r.checkpoint || !r.input || !r.out) {
        MDGAN_ERR("refine needs one of --run RUN or --checkpoint FILE, and --input DIR --out DIR (see mdgan --help)");
        return MDGAN_EXIT_USAGE;
    }
    char bindir[4096];
    if (coord_bindir(bindir, sizeof bindir) != 0) return MDGAN_EXIT_RUNTIME;
    return coord_refine(&w, r.run, r.checkpoint, r.input, r.out, bindir);
}

static int report_opt(void *ctx, int opt, const char *arg) {
    if (opt != 256) return -1;
    *(const char **)ctx = arg;
    return 0;
}

static int cmd_report(int argc, char **argv) {
    CoordWhere w = {0};
    const char *out = NULL;
    static const struct option own[] = {{"out", required_argument, 0, 256}, {0, 0, 0, 0}};
    int rc = parse_coord_opts(argc, argv, &w, own, report_opt, &out, 1, 64);
    if (rc >= 0) return rc;
    return coord_report(&w, (const char *const *)argv + optind, argc - optind, out);
}

int main(int argc, char **argv) {
    static const CliCommand commands[] = {
        {"run", cmd_run},
        {"resume", cmd_resume},
        {"runs", cmd_runs},
        {"status", cmd_status},
        {"stop", cmd_stop},
        {"refine", cmd_refine},
        {"report", cmd_report},
        {"predict", cmd_predict},
        {"data", cmd_data},
        {"eval", cmd_eval},
        {NULL, NULL},
    };
    return cli_main(PROG, argc, argv, commands, usage);
}
