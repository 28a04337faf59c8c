// mdgan: the user's front door. For now: predict (a photo -> a time-lapse clip with a
// trained or converted Base-Net, optionally refined by a Refine-Net).
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdgan/ckpt.h"
#include "mdgan/cli.h"
#include "mdgan/error.h"
#include "mdgan/fileio.h"
#include "mdgan/image.h"
#include "mdgan/net.h"

static const char *PROG = "mdgan";

static void usage(FILE *out) {
    fprintf(out,
            "usage: mdgan COMMAND [options]\n"
            "\n"
            "commands:\n"
            "  predict   generate a time-lapse clip from one photo\n"
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

// Loads a generator of `kind` from f into net, under prefix "G1"/"G2" or bare keys.
static int load_generator(Net *net, const StFile *f, NetKind kind, int T, int S) {
    const char *prefix = kind == NET_G1 ? "G1" : "G2";
    if (!ckpt_has_net(f, prefix, kind)) prefix = "";
    if (!ckpt_has_net(f, prefix, kind)) {
        MDGAN_ERR("%s: holds no %s generator (no '%s.downConv1.weight' nor bare 'downConv1.weight')", f->path,
                  net_kind_name(kind), net_kind_name(kind));
        return -1;
    }
    int nf;
    if (ckpt_net_width(f, prefix, kind, &nf) != 0) return -1;
    if (net_init(net, kind, T, S, S, nf, NULL) != 0) return -1;
    if (ckpt_load_net(f, net, prefix, 0) != 0) {
        net_free(net);
        return -1;
    }
    return 0;
}

static int write_outputs(const PredictArgs *a, const float *y1, const float *y2) {
    const int T = a->frames, S = a->size;
    const float *y = y2 ? y2 : y1;
    if (fio_mkdir_p(a->out, 0755) != 0) return -1;
    char path[4096];
    float *frame = malloc((size_t)3 * S * S * sizeof(float));
    if (!frame) {
        MDGAN_ERR("out of memory");
        return -1;
    }
    Image img = {0};
    for (int t = 0; t < T; t++) {
        for (int c = 0; c < 3; c++)
            memcpy(frame + (size_t)c * S * S, y + ((size_t)c * T + t) * S * S, (size_t)S * S * sizeof(float));
        snprintf(path, sizeof path, "%s/frame_%03d.png", a->out, t);
        if (image_from_chw(&img, frame, S, S) != 0 || image_save_png(&img, path) != 0) {
            free(frame), image_free(&img);
            return -1;
        }
        image_free(&img);
    }
    free(frame);
    // contact sheet: the Base-Net clip, and under it the refined one
    const float *rows[2] = {y1, y2};
    snprintf(path, sizeof path, "%s/contact_sheet.png", a->out);
    if (image_contact_sheet(&img, rows, y2 ? 2 : 1, T, S, S, 2) != 0 || image_save_png(&img, path) != 0) {
        image_free(&img);
        return -1;
    }
    image_free(&img);
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
        case 'b':
            if (!strcmp(optarg, "running")) a.bn = BN_RUNNING;
            else if (!strcmp(optarg, "batch")) a.bn = BN_BATCH;
            else {
                MDGAN_ERR("--bn: '%s' is not 'running' or 'batch'", optarg);
                return MDGAN_EXIT_USAGE;
            }
            break;
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
    if (st_open(&ck, a.checkpoint) != 0) goto done;
    if (!a.frames && !meta_int(&ck, "frames", &a.frames)) a.frames = 32;
    if (!a.size && !meta_int(&ck, "size", &a.size)) a.size = 128;
    int L, ext[NET_MAX_LEVELS + 1][3];
    if (net_levels(a.frames, a.size, a.size, &L, ext) != 0) goto done;
    if (image_load(&photo, a.image) != 0 || image_fit_square(&fitted, &photo, a.size) != 0) goto done;
    if (load_generator(&g1, &ck, NET_G1, a.frames, a.size) != 0) goto done;
    if (a.refine) {
        if (st_open(&rf, a.refine) != 0 || load_generator(&g2, &rf, NET_G2, a.frames, a.size) != 0) goto done;
        have_g2 = 1;
    } else if (ckpt_has_net(&ck, "G2", NET_G2)) {
        if (load_generator(&g2, &ck, NET_G2, a.frames, a.size) != 0) goto done;
        have_g2 = 1;
    }
    rc = MDGAN_EXIT_RUNTIME;
    const int T = a.frames, S = a.size;
    if (acts_init(&a1, &g1, 1) != 0 || (have_g2 && acts_init(&a2, &g2, 1) != 0)) goto done;
    size_t wsn = a1.ws_floats > a2.ws_floats ? a1.ws_floats : a2.ws_floats;
    x = malloc((size_t)3 * T * S * S * sizeof(float));
    ws = malloc(wsn * sizeof(float));
    if (!x || !ws) {
        MDGAN_ERR("out of memory for a %d-frame %dx%d clip", T, S, S);
        goto done;
    }
    // The photo repeated T times: x[c][t] = photo[c]
    image_to_chw(x, &fitted);
    for (int c = 2; c >= 0; c--)
        for (int t = T - 1; t >= 0; t--)
            memmove(x + ((size_t)c * T + t) * S * S, x + (size_t)c * S * S, (size_t)S * S * sizeof(float));
    net_forward(&g1, &a1, x, a.bn, ws);
    if (have_g2) net_forward(&g2, &a2, acts_output(&a1), a.bn, ws);
    if (write_outputs(&a, acts_output(&a1), have_g2 ? acts_output(&a2) : NULL) != 0) goto done;
    printf("wrote %d frames of %dx%d to %s/frame_000.png .. frame_%03d.png%s\n", T, S, S, a.out, T - 1,
           have_g2 ? " (refined by G2)" : "");
    printf("contact sheet: %s/contact_sheet.png\n", a.out);
    if (a.raw) printf("raw float32 (1, 3, %d, %d, %d): %s\n", T, S, S, a.raw);
    rc = MDGAN_EXIT_OK;
done:
    free(x), free(ws);
    acts_free(&a1), acts_free(&a2);
    net_free(&g1), net_free(&g2);
    image_free(&photo), image_free(&fitted);
    st_close(&ck), st_close(&rf);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return MDGAN_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return MDGAN_EXIT_OK;
    }
    if (!strcmp(cmd, "predict")) {
        int rc = cmd_predict(argc - 1, argv + 1);
        if (rc != MDGAN_EXIT_OK) mdgan_errprint(PROG);
        return rc;
    }
    fprintf(stderr, "%s: unknown command '%s' (see mdgan --help)\n", PROG, cmd);
    return MDGAN_EXIT_USAGE;
}
