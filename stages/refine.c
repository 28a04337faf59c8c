// mdgan-refine: Stage II of MD-GAN, the Refine-Net.
//   train  G2/D2 on (Y, Y1) from a serving Base-Net or Base-Net clips on disk (the loop
//          is common/trainer.c)
//   infer  refine every clip of a folder of Base-Net outputs through G2
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mdgan/ckpt.h"
#include "mdgan/cli.h"
#include "mdgan/dataset.h"
#include "mdgan/error.h"
#include "mdgan/train_stages.h"
#include "mdgan/fileio.h"
#include "mdgan/image.h"
#include "mdgan/mem.h"
#include "mdgan/net.h"
#include "mdgan/train.h"

static const char *PROG = "mdgan-refine";
#define SHEET_CLIPS 4        // clips on the contact sheet
#define SHEET_GAP 2

static void usage_train(FILE *out) {
    fprintf(out,
            "mdgan-refine train [--config FILE] [--set section.key=value ...] [--resume CKPT|DIR]\n"
            "                   [--base ENDPOINT | --base-outputs DIR] [--init-g2 FILE]\n"
            "                   [--steps N] [--minutes M]\n"
            "                   [--log-every N] [--control ENDPOINT]\n"
            "  Trains G2/D2 with the [refine] settings: Y2 = G2(Y1); D2 judges Y, Y1 and Y2 with\n"
            "  shared weights; G2's loss is adversarial + lambda_l1 * L1 + lambda_rank * the\n"
            "  ranking loss on Gram matrices of D2's conv1/conv3 features (refine.rank_form).\n"
            "  Y and Y1 come from a serving Base-Net (`mdgan-base serve`), which the run asks for\n"
            "  its batches ahead of time (transport.inflight); if the Base-Net goes away the run\n"
            "  says so, waits up to transport.timeout_s, re-sends what was in flight and goes on.\n"
            "  Writes into <run.dir>/<run.name>/:\n"
            "    checkpoints/refine_step_N.safetensors (+ .sha256): G2, D2, both Adam states\n"
            "    samples/refine_step_N.png (rows per clip: Y, Y1, Y2), .gif,\n"
            "    samples/refine_metrics_step_N.json (Y1 and Y2 against Y, Gram distances),\n"
            "    refine_metrics.jsonl (a line per evaluation)\n"
            "  --base ENDPOINT       the Base-Net's data endpoint (default: transport.data_endpoint,\n"
            "                        else ipc://<run.dir>/<run.name>/sockets/data.sock)\n"
            "  --base-outputs DIR    train from Y1 clips on disk instead (as `mdgan-base infer`\n"
            "                        writes them), paired with [data] root by <video>/<clip>\n"
            "  --init-g2 FILE        start G2 from the G1 (or G2) weights of FILE instead of random\n"
            "                        ones (G2 has G1's layers); ignored when resuming\n"
            "  --resume CKPT|DIR     continue exactly from a checkpoint (or the newest that verifies\n"
            "                        in a run folder); without --config the checkpoint's own config\n"
            "                        is used\n"
            "  --steps N / --minutes M / --log-every N / --control ENDPOINT   as mdgan-base train\n"
            "  SIGINT/SIGTERM stop after the current step with a checkpoint (exit 130/143).\n");
}

static void usage_infer(FILE *out) {
    fprintf(out,
            "mdgan-refine infer --checkpoint FILE --input DIR --out DIR [--frames T] [--size S]\n"
            "                   [--bn running|batch] [--threads N]\n"
            "  Refines every clip of DIR through G2: Base-Net outputs (mdgan-base infer writes\n"
            "  them) or any clips in the layout DIR/<video>/<clip>/<frame>.png|jpg.\n"
            "  --checkpoint FILE  safetensors with G2.* tensors (an mdgan checkpoint) or the bare\n"
            "                     state_dict keys of the released PyTorch G2 (downConv1.weight, ...);\n"
            "                     the width ngf comes from the weights\n"
            "  --input DIR        frames are taken in natural name order (2.png before 10.png); each\n"
            "                     clip folder is cut into windows of T frames (the F mod T frames left\n"
            "                     over are not refined) and every frame is resized to S x S. A clip\n"
            "                     with an unreadable frame, fewer than T frames or frames of mixed\n"
            "                     sizes is skipped with a warning that names it.\n"
            "  --out DIR          OUT/<video>/<clip>/<name>.png for every refined input frame\n"
            "                     <name>.png|jpg|jpeg: the input's file name, extension .png, PNG\n"
            "                     content (frame_00001.jpg -> frame_00001.png); and\n"
            "                     OUT/contact_sheet.png: the first %d clips, each input row above its\n"
            "                     refined row, frames under %d pixels enlarged (nearest neighbour)\n"
            "  --frames T         frames per clip; default and only value: what G2 was built for\n"
            "                     (its last convolution's kernel fixes frames and size)\n"
            "  --size S           frame size (default: the shorter side of the input's first frame);\n"
            "                     must be what G2 was built for: give it to resize other inputs\n"
            "  --bn MODE          BatchNorm statistics: running (default) or batch (the clip's own, as\n"
            "                     the released code ran at test time)\n"
            "  --threads N        threads (default: all cores)\n",
            SHEET_CLIPS, IMAGE_VIEW_MIN_SIDE);
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: mdgan-refine COMMAND [options]\n"
            "\n"
            "Stage II of MD-GAN: the Refine-Net generator G2 and its discriminator D2.\n"
            "Every command answers --help.\n"
            "\n");
    usage_train(out);
    fputc('\n', out);
    usage_infer(out);
    fprintf(out, "\nexit codes: 0 success, 1 runtime failure, 2 bad usage or input, 130/143 stopped by a signal\n");
}

// ---------------------------------------------------------------- train

enum { OPT_BASE = 256, OPT_BASE_OUTPUTS, OPT_INIT_G2 };

static int parse_train_opt(void *stage_args, int opt, const char *arg) {
    RefineArgs *r = stage_args;
    if (opt == OPT_BASE) r->base_endpoint = arg;
    else if (opt == OPT_BASE_OUTPUTS) r->base_outputs = arg;
    else if (opt == OPT_INIT_G2) r->init_g2 = arg;
    else return -1;
    return 0;
}

static int cmd_train(int argc, char **argv) {
    static const struct option opts[] = {{"base", required_argument, 0, OPT_BASE},
                                         {"base-outputs", required_argument, 0, OPT_BASE_OUTPUTS},
                                         {"init-g2", required_argument, 0, OPT_INIT_G2},
                                         {0, 0, 0, 0}};
    const TrainExtraOpts extra = {opts, parse_train_opt};
    RefineArgs ra = {0};
    TrainArgs a = {.stage_args = &ra};
    if (trainer_parse_args(&a, argc, argv, &extra, usage_train) != 0) return MDGAN_EXIT_USAGE;
    if (ra.base_endpoint && ra.base_outputs) {
        MDGAN_ERR("train: --base and --base-outputs exclude each other (Y1 comes from one place)");
        return MDGAN_EXIT_USAGE;
    }
    return trainer_run(&TRAIN_STAGE_REFINE, &a);
}

// ---------------------------------------------------------------- infer

// The clip shape G2's weights were built for. The encoder's last convolution covers
// the extent left after conv1 and L-2 halvings, so its kernel is
// (T / 2^(L-2), S / 2^(L-1), S / 2^(L-1)): the weights fix T and S exactly.
static int g2_weights_shape(const StFile *f, int *T, int *S, char *last, size_t lastn) {
    const char *prefix = ckpt_has_net(f, "G2", NET_G2) ? "G2." : ckpt_has_net(f, "", NET_G2) ? "" : NULL;
    if (!prefix) {
        MDGAN_ERR("%s: holds no G2 generator (no 'G2.downConv1.weight' nor bare 'downConv1.weight')", f->path);
        return -1;
    }
    char name[64];
    int L = 1;
    for (; L < NET_MAX_LEVELS; L++) {
        snprintf(name, sizeof name, "%sdownConv%d.weight", prefix, L + 1);
        if (!st_get(f, name)) break;
    }
    snprintf(last, lastn, "%sdownConv%d.weight", prefix, L);
    const StTensor *t = st_get(f, last);
    int Lw = 0, ext[NET_MAX_LEVELS + 1][3];
    long tt = 0, ss = 0;
    if (L >= 4 && t->ndim == 5 && t->shape[2] >= 1 && t->shape[2] <= 4096 && t->shape[3] >= 1 &&
        t->shape[3] <= 4096 && t->shape[3] == t->shape[4]) {
        tt = (long)t->shape[2] << (L - 2), ss = (long)t->shape[3] << (L - 1);
        if (tt > 4096 || ss > 4096 || net_levels((int)tt, (int)ss, (int)ss, &Lw, ext) != 0) Lw = 0;
    }
    if (Lw != L) {
        MDGAN_ERR("%s: cannot tell what clips G2 was built for: its last convolution '%s' (of %d) does not "
                  "end an encoder of this network", f->path, last, L);
        return -1;
    }
    *T = (int)tt, *S = (int)ss;
    return 0;
}

static void free_names(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

// The output names of a clip folder's frames: each input file name with its extension
// replaced by .png. -1 (and *clash set to the two inputs) when two used frames would
// get one name (e.g. 7.jpg and 7.png).
static int output_names(char **paths, int n, char ***out, int *clash_a, int *clash_b) {
    *out = calloc((size_t)(n ? n : 1), sizeof **out);
    if (!*out) return -2;
    for (int i = 0; i < n; i++) {
        const char *base = strrchr(paths[i], '/');
        base = base ? base + 1 : paths[i];
        const char *dot = strrchr(base, '.');
        size_t stem = dot ? (size_t)(dot - base) : strlen(base);
        if (!((*out)[i] = malloc(stem + 5))) return -2;
        memcpy((*out)[i], base, stem);
        memcpy((*out)[i] + stem, ".png", 5);
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (!strcmp((*out)[i], (*out)[j])) {
                *clash_a = i, *clash_b = j;
                return -1;
            }
    return 0;
}

static int cmd_infer(int argc, char **argv) {
    CliInferArgs a;
    int rc = cli_parse_infer(&a, argc, argv, "input", PROG, usage_infer);
    if (rc >= 0) return rc;
    cli_set_threads(a.threads);

    rc = MDGAN_EXIT_USAGE;
    StFile f = {0};
    Net g = {0};
    Acts acts = {0};
    Dataset ds = {0};
    float *x = NULL, *ws = NULL;
    SheetCanvas sheet = {0};
    char **frames = NULL, **names = NULL;
    int nframes = 0, nnames = 0, folder_ok = 0, nsheet = 0, refined = 0, skipped = 0;
    double forward_s = 0;
    const char *cur_video = NULL, *cur_clip = NULL;

    // -- the shape: G2's weights fix it; the input's frames must have it, or --size says
    // to resize them
    int Tw, Sw;
    char last[80], first[4096] = "";
    if (st_open(&f, a.checkpoint) != 0 || g2_weights_shape(&f, &Tw, &Sw, last, sizeof last) != 0) goto done;
    const int T = a.frames ? a.frames : Tw;
    int S = a.size;
    if (!S && dataset_first_frame_size(a.input, &S, first, sizeof first) != 0) goto done;
    if (T != Tw || S != Sw) {
        char what[4400];
        if (T != Tw) snprintf(what, sizeof what, "for --frames %d", T);
        else if (a.size) snprintf(what, sizeof what, "for --size %d", S);
        else snprintf(what, sizeof what, "for the input's frames of %dx%d (%s): give --size %d to resize them", S, S,
                      first, Sw);
        MDGAN_ERR("%s: G2 was built for %d frames of %dx%d (the kernel of %s says so), not %s", a.checkpoint, Tw, Sw,
                  Sw, last, what);
        goto done;
    }
    if (ckpt_load_generator(&g, &f, NET_G2, T, S) != 0) goto done;
    struct stat si, so;
    if (stat(a.out, &so) == 0 && stat(a.input, &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
        MDGAN_ERR("--out %s is the input folder: the refined frames would overwrite the input's", a.out);
        goto done;
    }
    if (dataset_open(&ds, a.input, T, S, S, isatty(STDERR_FILENO) ? dataset_progress_stderr : NULL, NULL) != 0)
        goto done;

    // -- refine every window
    rc = MDGAN_EXIT_RUNTIME;
    const size_t clip = (size_t)3 * T * S * S;
    const int zoom = image_view_zoom(S);
    // the sheet shows as many frames as a PNG row can hold
    const int fit = (IMAGE_MAX_OUT_SIDE + SHEET_GAP) / (S * zoom + SHEET_GAP), Ts = T < fit ? T : fit;
    // rows [input 0, refined 0, input 1, ...], each drawn as its clip is refined: the
    // frames of the first clips are not kept to the end (they were 50 MB of floats)
    const int sheet_rows = 2 * (ds.nclips < SHEET_CLIPS ? ds.nclips : SHEET_CLIPS);
    if (sheet_rows && sheet_canvas_init(&sheet, sheet_rows, Ts, S, S, zoom, SHEET_GAP) != 0) goto done;
    if (acts_init_inference(&acts, &g, 1) != 0) goto done;
    x = malloc(clip * sizeof(float));
    ws = malloc(acts.ws_floats * sizeof(float));
    if (!x || !ws) {
        MDGAN_ERR("out of memory for a %d-frame %dx%d clip", T, S, S);
        goto done;
    }
    if (fio_mkdir_p(a.out, 0755) != 0) goto done;
    Progress p;
    progress_init(&p, "refine", 0, ds.nclips, 10);
    for (int i = 0; i < ds.nclips; i++) {
        const DatasetClip *dc = &ds.clips[i];
        char in_dir[4096], out_dir[4096];
        snprintf(in_dir, sizeof in_dir, "%s/%s/%s", a.input, dc->video, dc->clip);
        snprintf(out_dir, sizeof out_dir, "%s/%s/%s", a.out, dc->video, dc->clip);
        if (!cur_video || strcmp(cur_video, dc->video) || strcmp(cur_clip, dc->clip)) {
            // a new clip folder: its frames as the dataset reader listed them, and their names
            free_names(frames, nframes), free_names(names, nnames);
            frames = names = NULL, nframes = nnames = 0;
            cur_video = dc->video, cur_clip = dc->clip;
            if (dataset_list_frames(in_dir, &frames, &nframes) != 0) goto done;
            int ca = 0, cb = 0;
            nnames = nframes / T * T; // the frames the windows use
            int named = output_names(frames, nnames, &names, &ca, &cb);
            if (named == -2) {
                MDGAN_ERR("out of memory");
                goto done;
            }
            folder_ok = named == 0;
            if (!folder_ok) {
                progress_note(&p, "%s: warning: skipping clip %s/%s: frames %s and %s would both be written as %s",
                              PROG, dc->video, dc->clip, frames[ca], frames[cb], names[ca]);
                skipped++;
            }
            if (folder_ok && fio_mkdir_p(out_dir, 0755) != 0) goto done;
        }
        const long f0 = (long)dc->window * T;
        if (f0 + T > nframes || strcmp(frames[f0], dc->first_frame) != 0) {
            MDGAN_ERR("input %s changed while it was read (window %d no longer starts at %s)", in_dir, dc->window,
                      dc->first_frame);
            goto done;
        }
        if (folder_ok) {
            dataset_clip(&ds, i, x);
            const double t0 = train_now();
            net_forward(&g, &acts, x, a.bn, ws);
            forward_s += train_now() - t0;
            const float *y2 = acts_output(&acts);
            if (image_save_frames_named(out_dir, names + f0, y2, T, S, S) != 0) goto done;
            for (int r = 0; r < 2 && nsheet < sheet_rows; r++) sheet_canvas_draw(&sheet, nsheet++, r ? y2 : x, T);
            refined++;
        }
        progress_step(&p, i + 1, 1, 1, 1, "%s/%s window %d", dc->video, dc->clip, dc->window);
    }
    if (refined == 0) {
        MDGAN_ERR("no clip of %s could be refined: every clip folder was skipped (see the warnings above)", a.input);
        rc = MDGAN_EXIT_USAGE;
        goto done;
    }
    char sheet_path[4200];
    snprintf(sheet_path, sizeof sheet_path, "%s/contact_sheet.png", a.out);
    sheet_canvas_keep_rows(&sheet, nsheet);
    if (image_save_png(&sheet.img, sheet_path) != 0) goto done;
    progress_note(&p, "refine: %d of %d windows in %.1f s (G2's forwards %.2f s)", refined, ds.nclips,
                  train_now() - p.t_start, forward_s);
    printf("wrote %d refined clip%s of %d frames (%dx%d) to %s/<video>/<clip>/ (the input's frame names, as .png)\n",
           refined, refined == 1 ? "" : "s", T, S, S, a.out);
    if (ds.skipped_clips + skipped)
        printf("skipped %d clip folder%s (see the warnings)\n", ds.skipped_clips + skipped,
               ds.skipped_clips + skipped == 1 ? "" : "s");
    printf("contact sheet: %s\n", sheet_path);
    rc = MDGAN_EXIT_OK;
done:
    free_names(frames, nframes), free_names(names, nnames);
    sheet_canvas_free(&sheet);
    free(x), free(ws);
    acts_free(&acts);
    net_free(&g);
    dataset_close(&ds);
    st_close(&f);
    return rc;
}

int main(int argc, char **argv) {
    static const CliCommand commands[] = {
        {"train", cmd_train},
        {"infer", cmd_infer},
        {NULL, NULL},
    };
    return cli_main(PROG, argc, argv, commands, usage);
}
