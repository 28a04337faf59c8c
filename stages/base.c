// mdgan-base: Stage I of MD-GAN, the Base-Net.
//   train  G1/D1 on time-lapse clips, with checkpoints, samples and exact resume
//   infer  write G1's clip for every clip of a dataset (the Y1 that Refine-Net refines)
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "mdgan/ckpt.h"
#include "mdgan/cli.h"
#include "mdgan/config.h"
#include "mdgan/dataplane.h"
#include "mdgan/dataset.h"
#include "mdgan/error.h"
#include "mdgan/fileio.h"
#include "mdgan/image.h"
#include "mdgan/stage1.h"
#include "mdgan/train_stages.h"
#include "mdgan/wire.h"
#include "mdgan/control.h"

static const char *PROG = "mdgan-base";

static void usage(FILE *out) {
    fprintf(out,
            "usage: mdgan-base COMMAND [options]\n"
            "\n"
            "Stage I of MD-GAN: the Base-Net generator G1 and its discriminator D1.\n"
            "\n"
            "mdgan-base train [--config FILE] [--set section.key=value ...] [--resume CKPT|DIR]\n"
            "                 [--steps N] [--minutes M] [--log-every N] [--control ENDPOINT]\n"
            "  Trains G1/D1 on [data] root with the [base] settings of the config (default:\n"
            "  built-in defaults, see pipeline.conf). Writes into <run.dir>/<run.name>/:\n"
            "    checkpoints/base_step_N.safetensors (+ .sha256), the newest [base] keep kept\n"
            "    samples/base_step_N.png (contact sheet: each real clip above G1's), .gif,\n"
            "    samples/base_metrics_step_N.json, and base_metrics.jsonl (a line per evaluation)\n"
            "  --resume CKPT|DIR  continue exactly from a checkpoint (or the newest that verifies\n"
            "                     in a run folder); without --config the checkpoint's own config is\n"
            "                     used. Only [base] epochs, ckpt_every, sample_every, keep,\n"
            "                     run.threads, run.dir, [refine], [transport] and [coord] may change.\n"
            "  --steps N          stop after N steps in all (default: [base] epochs)\n"
            "  --minutes M        stop after M minutes of training, with a checkpoint\n"
            "  --log-every N      progress line every N steps when stderr is not a terminal (10)\n"
            "  --control ENDPOINT report to the coordinator's control socket there (HELLO,\n"
            "                     PROGRESS, CHECKPOINT, EVAL, DONE, ERROR, heartbeats); its STOP\n"
            "                     acts as SIGTERM. `mdgan run` sets it.\n"
            "  SIGINT/SIGTERM stop after the current step with a checkpoint (exit 130/143).\n"
            "\n"
            "mdgan-base serve --checkpoint FILE [--config FILE] [--set section.key=value ...]\n"
            "                 [--control ENDPOINT]\n"
            "  Serves G1 to Refine-Net over ZeroMQ: loads G1 from FILE and the clips of [data]\n"
            "  (the config defaults to the checkpoint's own), binds transport.data_endpoint\n"
            "  (empty: ipc://<run.dir>/<run.name>/sockets/data.sock; tcp://127.0.0.1:* picks a\n"
            "  port), prints 'serving ENDPOINT' on stdout, and answers batch requests with the\n"
            "  real clips Y and G1's clips Y1 until SIGINT/SIGTERM (exit 130/143). --control as for\n"
            "  train (HELLO once the socket is bound).\n"
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

static int cmd_train(int argc, char **argv) {
    TrainArgs a = {0};
    if (trainer_parse_args(&a, argc, argv, NULL, usage) != 0) return MDGAN_EXIT_USAGE;
    return trainer_run(&TRAIN_STAGE_BASE, &a);
}

// ---------------------------------------------------------------- infer

static int cmd_infer(int argc, char **argv) {
    CliInferArgs a;
    int rc = cli_parse_infer(&a, argc, argv, "data", PROG, usage);
    if (rc >= 0) return rc;
    const char *ckpt = a.checkpoint, *data = a.input, *out = a.out;
    int frames = a.frames, size = a.size, threads = a.threads;
    const BnMode bn = a.bn;
    cli_set_threads(threads);
    rc = MDGAN_EXIT_USAGE;
    StFile f = {0};
    Net g = {0};
    Acts acts = {0};
    Dataset ds = {0};
    float *y = NULL, *x = NULL, *ws = NULL;
    if (st_open(&f, ckpt) != 0) goto done;
    if (!frames) frames = (int)ckpt_meta_long(&f, "frames");
    if (!size) size = (int)ckpt_meta_long(&f, "size");
    if (frames <= 0 || size <= 0) {
        MDGAN_ERR("%s does not say its frames and size: give --frames and --size", ckpt);
        goto done;
    }
    const int T = frames, S = size;
    if (ckpt_load_generator(&g, &f, NET_G1, T, S) != 0) goto done;
    if (dataset_open(&ds, data, T, S, S, isatty(2) ? dataset_progress_stderr : NULL, NULL) != 0) goto done;
    rc = MDGAN_EXIT_RUNTIME;
    const size_t clip = (size_t)3 * T * S * S;
    if (acts_init_inference(&acts, &g, 1) != 0) goto done;
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

// ---------------------------------------------------------------- serve

// G1 on running statistics for batches of any size up to max_batch (one Acts per size
// seen, as the convolutions' tiling, and so the bits, follow the shape).
typedef struct {
    Net g;
    Acts acts[8];
    int nacts;
    float *ws, *x;
    size_t ws_floats;
    int T, S;
} G1Server;

static int g1_produce(void *ctx, const float *y, int n, float *y1) {
    G1Server *g = ctx;
    Acts *a = NULL;
    for (int k = 0; k < g->nacts && !a; k++)
        if (g->acts[k].N == n) a = &g->acts[k];
    if (!a) {
        if (g->nacts == 8) acts_free(&g->acts[--g->nacts]);
        a = &g->acts[g->nacts];
        if (acts_init_inference(a, &g->g, n) != 0) return -1;
        g->nacts++;
        if (a->ws_floats > g->ws_floats) {
            float *ws = realloc(g->ws, a->ws_floats * sizeof(float));
            if (!ws) return -1;
            g->ws = ws, g->ws_floats = a->ws_floats;
        }
    }
    const size_t clip = (size_t)3 * g->T * g->S * g->S;
    float *x = realloc(g->x, (size_t)n * clip * sizeof(float));
    if (!x) return -1;
    g->x = x;
    stage1_repeat_first_frame(x, y, n, g->T, g->S, g->S);
    net_forward(&g->g, a, x, BN_RUNNING, g->ws);
    memcpy(y1, acts_output(a), (size_t)n * clip * sizeof(float));
    return 0;
}

// With the checkpoint's own config the server binds where that config says: an ipc
// socket (its file is made, a stale one removed) must then lie in the checkpoint's run
// folder, unless --set names it.
static int serve_place_ok(const Config *c, const char *ckpt, const char *const *sets, int nsets) {
    const char *ep = c->transport.data_endpoint;
    if (trainer_set_given(sets, nsets, "transport.data_endpoint")) return 0;
    if (ep[0]) return strncmp(ep, "ipc://", 6) ? 0 : trainer_metadata_place(ckpt, "transport.data_endpoint", ep + 6);
    if (trainer_set_given(sets, nsets, "run.dir") || trainer_set_given(sets, nsets, "run.name")) return 0;
    char dir[2200];
    snprintf(dir, sizeof dir, "%s/%s", c->run.dir, c->run.name);
    return trainer_metadata_place(ckpt, "the run folder of the data socket (run.dir, run.name)", dir);
}

static int cmd_serve(int argc, char **argv) {
    const char *ckpt = NULL, *config_path = NULL, *sets[256], *control = NULL;
    int nsets = 0;
    static const struct option opts[] = {{"checkpoint", required_argument, 0, 'k'},
                                         {"config", required_argument, 0, 'c'},
                                         {"set", required_argument, 0, 's'},
                                         {"control", required_argument, 0, 'C'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int opt;
    optind = 1, opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'k': ckpt = optarg; break;
        case 'c': config_path = optarg; break;
        case 'C': control = optarg; break;
        case 's':
            if (nsets == 256) {
                MDGAN_ERR("too many --set options");
                return MDGAN_EXIT_USAGE;
            }
            sets[nsets++] = optarg;
            break;
        case 'h': usage(stdout); return MDGAN_EXIT_OK;
        case ':': MDGAN_ERR("serve: option %s needs a value", argv[optind - 1]); return MDGAN_EXIT_USAGE;
        default: MDGAN_ERR("serve: unknown option '%s' (see mdgan-base --help)", argv[optind - 1]); return MDGAN_EXIT_USAGE;
        }
    }
    if (optind < argc || !ckpt) {
        MDGAN_ERR("serve needs --checkpoint FILE (see mdgan-base --help)");
        return MDGAN_EXIT_USAGE;
    }
    int rc = MDGAN_EXIT_USAGE;
    StFile f = {0};
    Config c;
    Dataset ds = {0};
    G1Server g = {0};
    void *zctx = NULL, *sock = NULL;
    ControlClient *cc = NULL;
    char g1_sha[65], endpoint[1100];
    if (st_open(&f, ckpt) != 0 || trainer_load_config(&c, config_path, sets, nsets, st_meta_get(&f, "config") ? &f : NULL, ckpt) != 0)
        goto done;
    if (!config_path && st_meta_get(&f, "config") && serve_place_ok(&c, ckpt, sets, nsets) != 0) goto done;
    cli_set_threads(c.run.threads);
    // heartbeats while G1 and the clips load; HELLO once the socket is bound
    if (control && !(cc = control_client_start(control, "serve", control_heartbeat_interval(c.coord.heartbeat_s),
                                               c.transport.curve_server_key)))
        goto done;
    const int T = c.data.frames, S = c.data.size;
    g.T = T, g.S = S;
    if (ckpt_load_generator(&g.g, &f, NET_G1, T, S) != 0) goto done;
    st_close(&f);
    ckpt_net_sha256(&g.g, g1_sha);
    fprintf(stderr, "base serve: reading %s (%d frames of %dx%d)\n", c.data.root, T, S, S);
    if (dataset_open(&ds, c.data.root, T, S, S, isatty(2) ? dataset_progress_stderr : NULL, NULL) != 0) goto done;
    if (dataplane_endpoint(endpoint, sizeof endpoint, &c, NULL) != 0) goto done;
    rc = MDGAN_EXIT_RUNTIME;
    train_install_signals();
    if (!(zctx = zmq_ctx_new()) || !(sock = zmq_socket(zctx, ZMQ_ROUTER))) {
        MDGAN_ERR("cannot create a ZeroMQ socket: %s", zmq_strerror(errno));
        goto done;
    }
    rc = MDGAN_EXIT_USAGE;
    if (c.transport.curve_server_key[0] && !c.transport.curve_secret_key[0]) {
        MDGAN_ERR("transport.curve_server_key is set but transport.curve_secret_key is not: the serving side "
                  "needs the secret key of the pair");
        goto done;
    }
    // requests are small (clip indices, a HELLO): a peer's larger frame is cut off
    if (wire_socket_setup(sock, endpoint, 1, 1000, c.transport.curve_server_key, c.transport.curve_secret_key) != 0 ||
        dataplane_cap_frames(sock, 0) != 0)
        goto done;
    if (strncmp(endpoint, "ipc://", 6) == 0 && dataplane_ipc_claim(endpoint) != 0) goto done;
    if (zmq_bind(sock, endpoint) != 0) {
        MDGAN_ERR("cannot bind the data endpoint %s: %s", endpoint, zmq_strerror(errno));
        goto done;
    }
    size_t len = sizeof endpoint;
    zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, endpoint, &len); // the port a tcp://...:* bind chose
    DpServer srv = {.ds = &ds, .g1_sha256 = g1_sha, .checkpoint = ckpt, .produce = g1_produce, .ctx = &g, .g1 = &g.g};
    dataplane_identity(&ds, &srv.id);
    srv.lim.max_payload = (size_t)c.transport.max_message_mb << 20;
    srv.max_batch = c.refine.batch; // the G1 memory a reply may take: the refine batch of this config
    printf("serving %s\n", endpoint); // on stdout, for whoever started us
    fflush(stdout);
    fprintf(stderr, "base serve: G1 of %s (sha256 %.12s...) for %d clips on %s; SIGTERM stops\n", ckpt, g1_sha,
            ds.nclips, endpoint);
    control_post(cc, CTL_HELLO, json_pack("{s:s, s:i, s:s}", "stage", "serve", "pid", (int)getpid(), "run", c.run.name));
    rc = MDGAN_EXIT_RUNTIME;
    if (dataplane_serve(&srv, sock) != 0) goto done;
    fprintf(stderr, "base serve: stopped by signal %d after %ld replies (%ld bad requests answered)\n",
            train_stop_signal(), srv.served, srv.errors);
    rc = train_signal_exit_code(train_stop_signal());
done:
    if (rc != MDGAN_EXIT_OK && !train_stop_signal())
        control_post(cc, CTL_ERROR, json_pack("{s:s}", "message", mdgan_errmsg()[0] ? mdgan_errmsg() : "failed"));
    control_client_stop(cc, 2.0);
    if (sock) zmq_close(sock);
    if (zctx) zmq_ctx_term(zctx);
    for (int k = 0; k < g.nacts; k++) acts_free(&g.acts[k]);
    free(g.ws), free(g.x);
    net_free(&g.g);
    dataset_close(&ds);
    st_close(&f);
    return rc;
}

int main(int argc, char **argv) {
    static const CliCommand commands[] = {
        {"train", cmd_train},
        {"serve", cmd_serve},
        {"infer", cmd_infer},
        {NULL, NULL},
    };
    return cli_main(PROG, argc, argv, commands, usage);
}
