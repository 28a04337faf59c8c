// Stage II as its own process: a real `mdgan-base serve` and a real `mdgan-refine
// train` over a real ZeroMQ socket, on synthetic clips at a tiny shape.
//   - a run whose Base-Net is SIGKILLed mid-run and restarted, and a run that is itself
//     SIGKILLed and resumed, both end bit-identical to one never interrupted;
//   - the serving process answers malformed requests with an error and goes on;
//   - HELLO refuses another dataset; --base-outputs trains from clips on disk and names
//     a missing pair.
#include "testproc.h"

#include <zlib.h>
#include <zmq.h>

#include "mdgan/ckpt.h"
#include "mdgan/fileio.h"
#include "mdgan/train.h"
#include "mdgan/wire.h"

static char tmp[512], data[600], other[600], base_ckpt[1200], endpoint[700];
static char out[65536];

#define TINY "--set data.frames=8 --set data.size=32 --set base.ngf=4 --set base.ndf=4 --set base.batch=2 " \
             "--set refine.ngf=4 --set refine.ndf=4 --set refine.batch=2 --set refine.lr=1e-3 " \
             "--set run.threads=2 --set data.val_fraction=0.2 --set base.lr=1e-3 --set transport.timeout_s=20"

static pid_t server = -1;

// Starts mdgan-base serve of checkpoint ck on endpoint ep for root; waits until it
// says it serves.
static pid_t start_server_at(const char *ck, const char *ep, const char *root, const char *log) {
    char cmd[8192], ready[4096], served[256];
    snprintf(ready, sizeof ready, "%s.ready", log);
    snprintf(cmd, sizeof cmd, "%s/mdgan-base serve --checkpoint %s --set data.root=%s "
             "--set transport.data_endpoint=%s >%s 2>>%s", bin_dir(), ck, root, ep, ready, log);
    return spawn_server(cmd, ready, log, served, sizeof served);
}

static pid_t start_server(const char *root, const char *log) { return start_server_at(base_ckpt, endpoint, root, log); }

static int setup(void **state) {
    (void)state;
    make_tmpdir(tmp, sizeof tmp);
    snprintf(data, sizeof data, "%s/data", tmp);
    snprintf(other, sizeof other, "%s/other", tmp);
    snprintf(endpoint, sizeof endpoint, "ipc://%s/data.sock", tmp);
    int rc = run_cmd(out, sizeof out, "%s/mdgan data synth --out %s --clips 10 --frames 8 --size 32 --per-video 2 && "
                     "%s/mdgan data synth --out %s --clips 10 --frames 8 --size 32 --per-video 2 --seed 7 && "
                     "%s/mdgan-base train " TINY " --set data.root=%s --set run.dir=%s --set run.name=base --steps 6 "
                     "--set base.ckpt_every=3",
                     bin_dir(), data, bin_dir(), other, bin_dir(), data, tmp);
    if (rc != 0) {
        fprintf(stderr, "setup failed (%d): %s\n", rc, out);
        return -1;
    }
    snprintf(base_ckpt, sizeof base_ckpt, "%s/base/checkpoints/base_step_00000006.safetensors", tmp);
    char log[700];
    snprintf(log, sizeof log, "%s/serve.log", tmp);
    server = start_server(data, log);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    stop_child(server, SIGTERM);
    rm_rf(tmp);
    return 0;
}

// mdgan-refine train against the server, in the foreground.
static int refine(const char *run, const char *extra) {
    return run_cmd(out, sizeof out, "%s/mdgan-refine train " TINY " --set data.root=%s --set run.dir=%s "
                   "--set run.name=%s --set transport.data_endpoint=%s %s", bin_dir(), data, tmp, run, endpoint, extra);
}

#define SCHED "--set refine.ckpt_every=3 --set refine.sample_every=6"

static void ckpt_of(char *p, size_t n, const char *run, long step) {
    snprintf(p, n, "%s/%s/checkpoints/refine_step_%08ld.safetensors", tmp, run, step);
}

// The uninterrupted reference run "straightN", trained once to N steps; its last checkpoint.
static void reference(long steps, char *ckpt, size_t n) {
    char run[64], extra[256];
    snprintf(run, sizeof run, "straight%ld", steps);
    ckpt_of(ckpt, n, run, steps);
    if (exists("%s", ckpt)) return;
    snprintf(extra, sizeof extra, "--steps %ld " SCHED, steps);
    int rc = refine(run, extra);
    if (rc != 0) fail_msg("refine train exited %d:\n%s", rc, out);
}

static void test_trains_with_outputs(void **state) {
    (void)state;
    char path[1300];
    reference(12, path, sizeof path);
    const char *done = strstr(out, "step 12/12 done");
    if (!done) fail_msg("no summary:\n%s", out);
    printf("    %.*s\n", (int)strcspn(done, "\n"), done);
    assert_non_null(strstr(out, "waited for the Base-Net"));
    assert_non_null(strstr(out, "G2 starts from the served G1's weights"));
    assert_non_null(strstr(out, "d(Y1,Y)"));
    const char *kinds[] = {"png", "gif", "json"};
    for (int s = 0; s <= 12; s += 6)
        for (int k = 0; k < 3; k++)
            if (!exists("%s/straight12/samples/%s_%08d.%s", tmp, k == 2 ? "refine_metrics_step" : "refine_step", s,
                        kinds[k]))
                fail_msg("missing refine sample %s at step %d", kinds[k], s);
    unsigned char *log;
    size_t n;
    char jsonl[1300];
    snprintf(jsonl, sizeof jsonl, "%s/straight12/refine_metrics.jsonl", tmp);
    if (fio_read_all(jsonl, &log, &n) != 0) fail_msg("%s", mdgan_errmsg());
    // Y2's metrics, Y1's beside them, the validation Gram distances and the ranking term
    const char *keys[] = {"\"psnr\"", "\"y1_psnr\"", "\"gram_y1\"", "\"gram_y2\"", "\"g_rank\"", "\"d_rank\""};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        if (!strstr((char *)log, keys[k])) fail_msg("%s lacks %s:\n%s", jsonl, keys[k], log);
    free(log);
    // the checkpoint records the G1 it trained against: the digest of G1's weights
    StFile f, fb;
    Net g = {0};
    char g1[65];
    if (st_open(&fb, base_ckpt) != 0 || ckpt_load_generator(&g, &fb, NET_G1, 8, 32) != 0) fail_msg("%s", mdgan_errmsg());
    ckpt_net_sha256(&g, g1);
    net_free(&g);
    st_close(&fb);
    if (st_open(&f, path) != 0) fail_msg("%s", mdgan_errmsg());
    assert_string_equal(st_meta_get(&f, "g1_sha256"), g1);
    assert_non_null(st_get(&f, "G2.downConv1.weight"));
    assert_non_null(st_get(&f, "adam.D2.conv1.weight.exp_avg"));
    st_close(&f);
}

// mdgan-refine train of run `run` for `steps` steps in the background (output in
// log), once its checkpoint of wait_step is complete (sidecar written); its pid.
static pid_t spawn_refine(const char *run, long steps, long wait_step, char *log, size_t logn) {
    char cmd[4096], ck[1300], side[1400];
    snprintf(log, logn, "%s/%s.log", tmp, run);
    ckpt_of(ck, sizeof ck, run, wait_step);
    snprintf(side, sizeof side, "%s.sha256", ck);
    snprintf(cmd, sizeof cmd, "%s/mdgan-refine train " TINY " --set data.root=%s --set run.dir=%s --set run.name=%s "
             "--set transport.data_endpoint=%s --steps %ld " SCHED " >%s 2>&1", bin_dir(), data, tmp, run, endpoint,
             steps, log);
    pid_t pid = spawn(cmd);
    if (!wait_for_file(side, 120)) {
        stop_child(pid, SIGKILL);
        fail_msg("no step-%ld checkpoint (log %s)", wait_step, log);
    }
    return pid;
}

// The Base-Net dies mid-run and comes back: Refine-Net waits, re-sends what was in
// flight, and ends where the uninterrupted run does.
static void test_base_killed_and_restarted(void **state) {
    (void)state;
    char a[1300], b[1300];
    reference(12, a, sizeof a);
    char log[700], slog[700];
    snprintf(slog, sizeof slog, "%s/serve2.log", tmp);
    pid_t pid = spawn_refine("srvkill", 12, 3, log, sizeof log);
    int st = stop_child(server, SIGKILL);
    server = -1;
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    usleep(1500000); // the trainer notices and waits
    server = start_server(data, slog);
    st = wait_child(pid, 240);
    if (st == -1) stop_child(pid, SIGKILL);
    unsigned char *text;
    size_t n;
    if (fio_read_all(log, &text, &n) != 0) fail_msg("%s", mdgan_errmsg());
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) fail_msg("refine train ended with status %d:\n%s", st, text);
    const char *gone = strstr((char *)text, "went away");
    if (!gone) fail_msg("the trainer did not say the Base-Net went away:\n%s", text);
    printf("    %.*s\n", (int)strcspn(gone, "\n"), gone);
    assert_non_null(strstr((char *)text, "is back"));
    assert_non_null(strstr((char *)text, "1 reconnection"));
    free(text);
    ckpt_of(b, sizeof b, "srvkill", 12);
    expect_same_checkpoint(a, b);
}

// Refine-Net is SIGKILLed mid-run and resumed (the Base-Net goes on serving).
static void test_refine_killed_and_resumed(void **state) {
    (void)state;
    char log[700];
    pid_t pid = spawn_refine("killed", 100000, 6, log, sizeof log);
    usleep(30000); // mid-step, or mid-evaluation
    int st = stop_child(pid, SIGKILL);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    char latest[2048], dir[1100];
    snprintf(dir, sizeof dir, "%s/killed/checkpoints", tmp);
    assert_int_equal(train_ckpt_latest(latest, sizeof latest, dir, "refine"), 0);
    StFile f;
    if (st_open(&f, latest) != 0) fail_msg("%s", mdgan_errmsg());
    const long target = atol(st_meta_get(&f, "step")) + 4;
    st_close(&f);
    int rc = run_cmd(out, sizeof out, "%s/mdgan-refine train --resume %s/killed --steps %ld", bin_dir(), tmp, target);
    if (rc != 0) fail_msg("resume exited %d:\n%s", rc, out);
    const char *resumed = strstr(out, "resumed from");
    assert_non_null(resumed);
    printf("    killed, then %.*s, to step %ld\n", (int)strcspn(resumed, "\n"), resumed, target);
    char a[1300], b[1300];
    reference(target, a, sizeof a);
    ckpt_of(b, sizeof b, "killed", target);
    expect_same_checkpoint(a, b);
    // and the metrics logs hold the same lines, byte for byte
    snprintf(a, sizeof a, "%s/straight%ld/refine_metrics.jsonl", tmp, target);
    snprintf(b, sizeof b, "%s/killed/refine_metrics.jsonl", tmp);
    unsigned char *la, *lb;
    size_t na, nb;
    if (fio_read_all(a, &la, &na) != 0 || fio_read_all(b, &lb, &nb) != 0) fail_msg("%s", mdgan_errmsg());
    if (na != nb || memcmp(la, lb, na) != 0) fail_msg("metrics logs differ:\n%s\n--- resumed:\n%s", la, lb);
    printf("    refine_metrics.jsonl identical (%zu bytes)\n", na);
    free(la), free(lb);
}

// A resumed run meets a Base-Net that serves another G1 (an earlier checkpoint): refused.
static void test_resume_refuses_other_g1(void **state) {
    (void)state;
    char ck12[1300], ep2[700], log[700], ck3[1200];
    reference(12, ck12, sizeof ck12);
    snprintf(ep2, sizeof ep2, "ipc://%s/other_g1.sock", tmp);
    snprintf(log, sizeof log, "%s/serve_g1at3.log", tmp);
    snprintf(ck3, sizeof ck3, "%s/base/checkpoints/base_step_00000003.safetensors", tmp);
    pid_t pid = start_server_at(ck3, ep2, data, log);
    int rc = run_cmd(out, sizeof out, "%s/mdgan-refine train --resume %s --steps 13 --set transport.data_endpoint=%s",
                     bin_dir(), ck12, ep2);
    stop_child(pid, SIGTERM);
    printf("    %s", strstr(out, "refused") ? strstr(out, "refused") : out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "another G1"));
}

// Raw messages to the real server: each malformed one gets an error reply naming what
// was wrong, and a good request after it is served.
static void test_server_answers_bad_requests(void **state) {
    (void)state;
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, tmo = 20000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    assert_int_equal(zmq_connect(s, endpoint), 0);
    unsigned char env[WIRE_ENVELOPE_BYTES], hdr[WIRE_TENSOR_HEADER_BYTES];
    int64_t idx[2] = {0, 1}, bad_idx[1] = {99999};
    const int64_t shape2[1] = {2}, shape1[1] = {1};
    const WireLimits lim = {(size_t)1 << 30};
    struct {
        const char *what;
        uint32_t status;
    } cases[] = {{"bad magic", WIRE_E_MAGIC},       {"unknown type", WIRE_E_TYPE}, {"CRC mismatch", WIRE_E_CRC},
                 {"missing payload", WIRE_E_FRAMES}, {"index out of range", WIRE_E_REQUEST}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        wire_encode_envelope(env, k == 1 ? 77 : 2, 0, 100 + k, 1, NULL, 0);
        if (k == 0) env[0] = 'X';
        const int64_t *shape = k == 4 ? shape1 : shape2;
        const void *payload = k == 4 ? (const void *)bad_idx : (const void *)idx;
        size_t bytes = k == 4 ? 8 : 16;
        wire_encode_tensor_header(hdr, WIRE_I64, 1, shape, bytes, k == 2 ? 12345 : crc32(0, payload, (unsigned)bytes));
        zmq_send(s, env, sizeof env, ZMQ_SNDMORE);
        if (k == 3) {
            zmq_send(s, hdr, sizeof hdr, 0);
        } else {
            zmq_send(s, hdr, sizeof hdr, ZMQ_SNDMORE);
            zmq_send(s, payload, bytes, 0);
        }
        WireMsg m;
        char err[256];
        int st = wire_recv(s, 0, &lim, &m, err, sizeof err);
        if (st != WIRE_OK) fail_msg("%s: no well-formed reply (%d: %s)", cases[k].what, st, err);
        printf("    %-20s -> %s: %s\n", cases[k].what, wire_status_name(m.status), m.text);
        assert_int_equal(m.status, cases[k].status);
        assert_true(m.text_len > 0);
        wire_msg_free(&m);
    }
    // and then a good one
    const WireTensor t = {.dtype = WIRE_I64, .ndim = 1, .shape = {2}, .nbytes = 16, .data = idx};
    assert_int_equal(wire_send(s, NULL, 0, 2, 0, 7, "", &t, 1, NULL), 0);
    WireMsg m;
    char err[256];
    assert_int_equal(wire_recv(s, 0, &lim, &m, err, sizeof err), WIRE_OK);
    assert_int_equal(m.status, 0);
    assert_int_equal(m.id, 7);
    assert_int_equal(m.ntensors, 2);
    assert_int_equal(m.t[1].shape[0], 2);
    assert_int_equal(m.t[1].nbytes, (size_t)2 * 3 * 8 * 32 * 32 * 4);
    wire_msg_free(&m);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

// A Base-Net over other clips is refused at HELLO, with the reason on both sides.
static void test_hello_refuses_other_dataset(void **state) {
    (void)state;
    int rc = run_cmd(out, sizeof out, "%s/mdgan-refine train " TINY " --set data.root=%s --set run.dir=%s "
                     "--set run.name=mismatch --set transport.data_endpoint=%s --steps 2", bin_dir(), other, tmp,
                     endpoint);
    printf("    %s", strstr(out, "refused") ? strstr(out, "refused") : out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "refused this run"));
    assert_non_null(strstr(out, "differ"));
}

// No server at all: a clear message naming the endpoint after transport.timeout_s.
static void test_no_server_times_out(void **state) {
    (void)state;
    int rc = run_cmd(out, sizeof out, "%s/mdgan-refine train " TINY " --set data.root=%s --set run.dir=%s "
                     "--set run.name=noserver --set transport.data_endpoint=ipc://%s/nobody.sock "
                     "--set transport.timeout_s=1 --steps 2", bin_dir(), data, tmp, tmp);
    printf("    %s", strstr(out, "no Base-Net") ? strstr(out, "no Base-Net") : out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "nobody.sock"));
}

// --base-outputs: Y1 clips on disk, paired by <video>/<clip>; a missing one is named.
static void test_base_outputs(void **state) {
    (void)state;
    int rc = run_cmd(out, sizeof out, "%s/mdgan-base infer --checkpoint %s --data %s --out %s/y1", bin_dir(), base_ckpt,
                     data, tmp);
    if (rc != 0) fail_msg("infer exited %d:\n%s", rc, out);
    // refine.init = g1 needs G1's weights, which a folder of clips does not have
    rc = run_cmd(out, sizeof out, "%s/mdgan-refine train " TINY " --set data.root=%s --set run.dir=%s "
                 "--set run.name=fromdisk0 --base-outputs %s/y1 --steps 4", bin_dir(), data, tmp, tmp);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "give --init-g2 FILE"));
    rc = run_cmd(out, sizeof out, "%s/mdgan-refine train " TINY " --set data.root=%s --set run.dir=%s "
                 "--set run.name=fromdisk --base-outputs %s/y1 --init-g2 %s --steps 4", bin_dir(), data, tmp, tmp,
                 base_ckpt);
    if (rc != 0) fail_msg("refine from disk exited %d:\n%s", rc, out);
    assert_non_null(strstr(out, "step 4/4 done"));
    assert_true(exists("%s/fromdisk/checkpoints/refine_step_00000004.safetensors", tmp));
    // take one clip away: the pair is named
    rc = run_cmd(out, sizeof out, "rm -rf %s/y1/video_001/clip_002 && %s/mdgan-refine train " TINY
                 " --set data.root=%s --set run.dir=%s --set run.name=fromdisk2 --base-outputs %s/y1 --steps 2 "
                 "--set refine.init=random",
                 tmp, bin_dir(), data, tmp, tmp);
    printf("    %s", out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "video_001/clip_002"));
}

// --init-g2: a fresh run's G2 starts from G1's weights (it has G1's layers); a file
// without a generator is refused naming it.
static void test_init_g2(void **state) {
    (void)state;
    char extra[1400];
    snprintf(extra, sizeof extra, "--steps 1 --init-g2 %s", base_ckpt);
    int rc = refine("initg2", extra);
    if (rc != 0) fail_msg("refine --init-g2 exited %d:\n%s", rc, out);
    assert_non_null(strstr(out, "G2 starts from the G1 weights"));
    const char *v = strstr(out, "step 0 validation");
    assert_non_null(v);
    printf("    %.*s\n", (int)strcspn(v, "\n"), v);
    // the default (refine.init = g1) took the same weights from the server: the step-0
    // evaluations agree to the byte, and differ from a random start's
    char a[1300], b[1300], c[1300];
    reference(12, a, sizeof a);
    assert_int_equal(refine("random0", "--steps 1 --set refine.init=random"), 0);
    snprintf(a, sizeof a, "%s/straight12/refine_metrics.jsonl", tmp);
    snprintf(b, sizeof b, "%s/initg2/refine_metrics.jsonl", tmp);
    snprintf(c, sizeof c, "%s/random0/refine_metrics.jsonl", tmp);
    unsigned char *la, *lb, *lc;
    size_t na, nb, nc;
    if (fio_read_all(a, &la, &na) != 0 || fio_read_all(b, &lb, &nb) != 0 || fio_read_all(c, &lc, &nc) != 0)
        fail_msg("%s", mdgan_errmsg());
    size_t first = strcspn((char *)la, "\n");
    if (strncmp((char *)la, (char *)lb, first + 1) != 0) fail_msg("step 0 differs:\n%.*s\n%s", (int)first, la, lb);
    assert_true(strncmp((char *)la, (char *)lc, first + 1) != 0);
    free(la), free(lb), free(lc);
    snprintf(extra, sizeof extra, "--steps 1 --init-g2 %s/data.sock.missing", tmp);
    rc = refine("initg2bad", extra);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "data.sock.missing"));
}

// SIGTERM while the Base-Net is gone: the trainer stops waiting, saves the state it has
// (no step half done) and exits 143; a resume against a Base-Net that is back goes on.
static void test_sigterm_while_waiting(void **state) {
    (void)state;
    char log[700], slog[700];
    snprintf(slog, sizeof slog, "%s/serve3.log", tmp);
    pid_t pid = spawn_refine("sigterm", 100000, 3, log, sizeof log);
    stop_child(server, SIGKILL);
    server = -1;
    usleep(1500000);
    int st = stop_child(pid, SIGTERM);
    server = start_server(data, slog);
    unsigned char *text;
    size_t n;
    if (fio_read_all(log, &text, &n) != 0) fail_msg("%s", mdgan_errmsg());
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 143)) fail_msg("status %d, expected exit 143:\n%s", st, text);
    assert_non_null(strstr((char *)text, "went away"));
    free(text);
    char dir[1100], latest[2048];
    snprintf(dir, sizeof dir, "%s/sigterm/checkpoints", tmp);
    assert_int_equal(train_ckpt_latest(latest, sizeof latest, dir, "refine"), 0);
    printf("    exit 143 while waiting; newest checkpoint %s\n", strrchr(latest, '/') + 1);
    int rc = run_cmd(out, sizeof out, "%s/mdgan-refine train --resume %s/sigterm --steps 14", bin_dir(), tmp);
    if (rc != 0) fail_msg("resume exited %d:\n%s", rc, out);
}

// A run trained from --base-outputs is not resumed from a Base-Net (other inputs).
static void test_resume_keeps_y1_source(void **state) {
    (void)state;
    if (!exists("%s/fromdisk/checkpoints", tmp)) skip();
    int rc = run_cmd(out, sizeof out, "%s/mdgan-refine train --resume %s/fromdisk --steps 6", bin_dir(), tmp);
    printf("    %s", out + (strlen(out) > 200 ? strlen(out) - 200 : 0));
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "trained from --base-outputs"));
}

// A second server on a live server's socket is refused, and the first goes on serving.
static void test_second_server_refused(void **state) {
    (void)state;
    int rc = run_cmd(out, sizeof out, "timeout 60 %s/mdgan-base serve --checkpoint %s --set data.root=%s "
                     "--set transport.data_endpoint=%s", bin_dir(), base_ckpt, data, endpoint);
    printf("    %s", out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "another server is serving"));
    rc = refine("afterdup", "--steps 2");
    if (rc != 0) fail_msg("the first server no longer serves (%d):\n%s", rc, out);
}

// CURVE over tcp loopback: a client with the server's public key trains; one with
// another key is told the handshake failed (not that no server answered).
static void test_curve_over_tcp(void **state) {
    (void)state;
    char pub[41], sec[41], other[41], other_sec[41];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    assert_int_equal(zmq_curve_keypair(other, other_sec), 0);
    // '#' or ';' would read as a comment in a config file; --set takes them verbatim
    char cmd[4096], ready[700], log[700];
    snprintf(ready, sizeof ready, "%s/curve.ready", tmp);
    snprintf(log, sizeof log, "%s/curve.log", tmp);
    snprintf(cmd, sizeof cmd, "%s/mdgan-base serve --checkpoint %s --set data.root=%s "
             "--set transport.data_endpoint=tcp://127.0.0.1:* '--set=transport.curve_server_key=%s' "
             "'--set=transport.curve_secret_key=%s' >%s 2>%s", bin_dir(), base_ckpt, data, pub, sec, ready, log);
    char ep[256];
    pid_t pid = spawn_server(cmd, ready, log, ep, sizeof ep);
    printf("    CURVE server on %s\n", ep);
    char extra[1024];
    snprintf(extra, sizeof extra, "--steps 2 --base %s '--set=transport.curve_server_key=%s'", ep, pub);
    int rc = refine("curve", extra);
    if (rc != 0) {
        stop_child(pid, SIGKILL);
        fail_msg("refine over CURVE exited %d:\n%s", rc, out);
    }
    snprintf(extra, sizeof extra, "--steps 2 --base %s '--set=transport.curve_server_key=%s' "
             "--set transport.timeout_s=2", ep, other);
    rc = refine("curvebad", extra);
    stop_child(pid, SIGTERM);
    printf("    %s", strstr(out, "handshake") ? strstr(out, "handshake") : out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "handshake"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trains_with_outputs),
        cmocka_unit_test(test_base_killed_and_restarted),
        cmocka_unit_test(test_refine_killed_and_resumed),
        cmocka_unit_test(test_resume_refuses_other_g1),
        cmocka_unit_test(test_server_answers_bad_requests),
        cmocka_unit_test(test_hello_refuses_other_dataset),
        cmocka_unit_test(test_no_server_times_out),
        cmocka_unit_test(test_base_outputs),
        cmocka_unit_test(test_init_g2),
        cmocka_unit_test(test_resume_keeps_y1_source),
        cmocka_unit_test(test_sigterm_while_waiting),
        cmocka_unit_test(test_second_server_refused),
        cmocka_unit_test(test_curve_over_tcp),
    };
    return cmocka_run_group_tests_name("refine_train", tests, setup, teardown);
}
