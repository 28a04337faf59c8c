// bench_wire: the ZeroMQ tensor transport (common/wire.c) between two processes, with
// the data plane's tensor: a batch of clips F32 (B, 3, 32, 128, 128), 6.29 MB per clip.
//
// fork(): the child binds a ROUTER (it is the server, like mdgan-base serve), the
// parent connects a DEALER (like mdgan-refine train); each creates its own zmq context
// after the fork. For each transport (ipc:// in a fresh folder, tcp://127.0.0.1 on an
// ephemeral port) and batch (1, 4), three patterns:
//   reqrep  the parent asks (one I64 tensor: the batch size) and the child answers with
//           the batch, one request at a time: what the data plane does with inflight=1.
//           The child's wire_send copies the batch into the message (it lives in the
//           net's activations, as in the server).
//   oneway  the parent sends batches back to back (HWM 4 bounds the queue), copied
//           into the message by wire_send; the child receives and checks each; at the
//           end one small reply says how many arrived. Throughput with no round trips.
//   owned   the same as oneway, but each batch is a malloc'd buffer handed to
//           wire_send (no copy on the sending side; zmq frees it). The buffers are
//           filled before the clock starts, so this is the transport without the
//           producer.
// Every received message goes through wire_recv: all frames read, headers checked,
// CRC-32 over the payload, one copy into the WireMsg. GB/s counts payload bytes
// (decimal GB) of the batches only.
//
//   bench_wire [--quick] [--iters N] [--min-time S] [--warmup N] [--transports ipc,tcp]
//              [--batches 1,4]
// Prints readable lines and "RESULT side=wire ..." lines. Exit codes: 0 success,
// 1 runtime failure, 2 bad usage.
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zmq.h>

#include "mdgan/error.h"
#include "mdgan/wire.h"

static const char *PROG = "bench_wire";

enum { T_REQ = 1, T_DATA = 2, T_END = 3, T_QUIT = 4 };
enum { C = 3, T = 32, S = 128, MAX_BATCH = 4, HWM = 4 };
#define CLIP_FLOATS ((size_t)C * T * S * S)
#define CAP ((size_t)64 << 20)

typedef struct {
    int warmup, iters;
    double min_time;
    int ipc, tcp;
    int batch[2], nbatch;
} Opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static WireTensor batch_tensor(int b, float *data) {
    return (WireTensor){.dtype = WIRE_F32,
                        .ndim = 5,
                        .shape = {b, C, T, S, S},
                        .nbytes = (size_t)b * CLIP_FLOATS * sizeof(float),
                        .data = data};
}

static void fill(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (float)(i % 1021) * 0.001f - 0.5f;
}

// ---------------------------------------------------------------- the child: server

static int serve(void *sock) {
    float *batch = malloc((size_t)MAX_BATCH * CLIP_FLOATS * sizeof(float));
    if (!batch) {
        MDGAN_ERR("out of memory");
        return -1;
    }
    fill(batch, (size_t)MAX_BATCH * CLIP_FLOATS);
    WireLimits lim = {.max_payload = CAP};
    long received = 0;
    int rc = -1;
    for (;;) {
        WireMsg m;
        char err[256];
        int st = wire_recv(sock, 1, &lim, &m, err, sizeof err);
        if (st < 0) break;
        if (st != WIRE_OK) {
            fprintf(stderr, "%s server: bad message: %s\n", PROG, err);
            wire_send_error(sock, m.route, m.route_len, m.type, (uint32_t)st, m.id, err);
            wire_msg_free(&m);
            continue;
        }
        int ok = 0;
        if (m.type == T_REQ && m.ntensors == 1 && m.t[0].dtype == WIRE_I64 && m.t[0].nbytes == 8) {
            int64_t b;
            memcpy(&b, m.t[0].data, 8);
            if (b >= 1 && b <= MAX_BATCH) {
                WireTensor t = batch_tensor((int)b, batch);
                ok = wire_send(sock, m.route, m.route_len, T_DATA, 0, m.id, "", &t, 1, NULL) == 0;
            }
        } else if (m.type == T_DATA) {
            received++;
            ok = 1;
        } else if (m.type == T_END) {
            char text[64];
            snprintf(text, sizeof text, "{\"received\":%ld}", received);
            received = 0;
            ok = wire_send(sock, m.route, m.route_len, T_END, 0, m.id, text, NULL, 0, NULL) == 0;
        } else if (m.type == T_QUIT) {
            ok = wire_send(sock, m.route, m.route_len, T_QUIT, 0, m.id, "", NULL, 0, NULL) == 0;
            wire_msg_free(&m);
            rc = ok ? 0 : -1;
            break;
        }
        wire_msg_free(&m);
        if (!ok) break;
    }
    free(batch);
    return rc;
}

// Binds, writes the endpoint (NUL-terminated) to fd, serves until T_QUIT.
static int child_main(const char *bind_ep, int fd) {
    void *ctx = zmq_ctx_new();
    if (!ctx) {
        MDGAN_ERR("zmq_ctx_new: %s", zmq_strerror(errno));
        return -1;
    }
    int rc = -1;
    void *sock = zmq_socket(ctx, ZMQ_ROUTER);
    char ep[512];
    size_t sz = sizeof ep;
    if (!sock) {
        MDGAN_ERR("zmq_socket: %s", zmq_strerror(errno));
        goto out;
    }
    if (wire_socket_setup(sock, bind_ep, 1, HWM, "", "") != 0) goto out;
    if (zmq_setsockopt(sock, ZMQ_RCVTIMEO, &(int){60000}, sizeof(int)) != 0 || zmq_bind(sock, bind_ep) != 0 ||
        zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &sz) != 0) {
        MDGAN_ERR("bind %s: %s", bind_ep, zmq_strerror(errno));
        goto out;
    }
    size_t n = strlen(ep) + 1;
    if (write(fd, ep, n) != (ssize_t)n) {
        MDGAN_ERR("write to the parent: %s", strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;
    rc = serve(sock);
out:
    if (fd >= 0) close(fd);
    if (sock) zmq_close(sock);
    zmq_ctx_term(ctx);
    return rc;
}

// ---------------------------------------------------------------- the parent: client

typedef struct {
    const char *transport, *pattern;
    int batch, msgs;
    double seconds, median_ms;
} Result;

static int recv_ok(void *sock, WireMsg *m, uint16_t type) {
    WireLimits lim = {.max_payload = CAP};
    char err[256];
    int st = wire_recv(sock, 0, &lim, m, err, sizeof err);
    if (st < 0) return -1;
    if (st != WIRE_OK || m->status != 0 || m->type != type) {
        MDGAN_ERR("unexpected reply: status %d/%u type %u: %s %s", st, m->status, m->type, err, m->text ? m->text : "");
        wire_msg_free(m);
        return -1;
    }
    return 0;
}

static int one_request(void *sock, int b, uint64_t id) {
    int64_t n = b;
    WireTensor q = {.dtype = WIRE_I64, .ndim = 1, .shape = {1}, .nbytes = 8, .data = &n};
    if (wire_send(sock, NULL, 0, T_REQ, 0, id, "", &q, 1, NULL) != 0) return -1;
    WireMsg m;
    if (recv_ok(sock, &m, T_DATA) != 0) return -1;
    int ok = m.id == id && m.ntensors == 1 && m.t[0].nbytes == (size_t)b * CLIP_FLOATS * sizeof(float);
    wire_msg_free(&m);
    if (!ok) MDGAN_ERR("reply %llu has the wrong id or shape", (unsigned long long)id);
    return ok ? 0 : -1;
}

static int run_reqrep(void *sock, const Opts *o, int b, Result *r) {
    for (int i = 0; i < o->warmup; i++)
        if (one_request(sock, b, (uint64_t)i) != 0) return -1;
    int cap = 100000, n = 0;
    double *lat = malloc((size_t)cap * sizeof *lat);
    if (!lat) return -1;
    double t0 = now_s(), t = t0;
    while (n < cap && (n < o->iters || t - t0 < o->min_time)) {
        double s = now_s();
        if (one_request(sock, b, 1000 + (uint64_t)n) != 0) {
            free(lat);
            return -1;
        }
        t = now_s();
        lat[n++] = t - s;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    r->msgs = n;
    r->seconds = t - t0;
    r->median_ms = 1e3 * lat[n / 2];
    free(lat);
    return 0;
}

static int end_and_count(void *sock, long expect) {
    if (wire_send(sock, NULL, 0, T_END, 0, 1, "", NULL, 0, NULL) != 0) return -1;
    WireMsg m;
    if (recv_ok(sock, &m, T_END) != 0) return -1;
    long got = -1;
    if (sscanf(m.text, "{\"received\":%ld}", &got) != 1 || got != expect) {
        MDGAN_ERR("the server received %ld batches of %ld (%s)", got, expect, m.text);
        wire_msg_free(&m);
        return -1;
    }
    wire_msg_free(&m);
    return 0;
}

// One-way: copy mode (data borrowed, wire_send copies), or owned buffers prepared
// before the clock starts (exactly iters of them).
static int run_oneway(void *sock, const Opts *o, int b, int owned, float *src, Result *r) {
    WireTensor t = batch_tensor(b, src);
    for (int i = 0; i < o->warmup; i++)
        if (wire_send(sock, NULL, 0, T_DATA, 0, (uint64_t)i, "", &t, 1, NULL) != 0) return -1;
    if (end_and_count(sock, o->warmup) != 0) return -1;
    int n = 0;
    double t0, t1;
    if (!owned) {
        t0 = now_s();
        t1 = t0;
        while (n < o->iters || t1 - t0 < o->min_time) {
            if (wire_send(sock, NULL, 0, T_DATA, 0, (uint64_t)n, "", &t, 1, NULL) != 0) return -1;
            n++;
            t1 = now_s();
        }
    } else {
        n = o->iters;
        float **pool = calloc((size_t)n, sizeof *pool);
        if (!pool) return -1;
        for (int i = 0; i < n; i++) {
            pool[i] = malloc(t.nbytes);
            if (!pool[i]) {
                for (int j = 0; j < i; j++) free(pool[j]);
                free(pool);
                MDGAN_ERR("out of memory for %d owned batches", n);
                return -1;
            }
            memcpy(pool[i], src, t.nbytes);   // touched: no page faults inside the timing
        }
        t0 = now_s();
        int i = 0;
        for (; i < n; i++) {
            WireTensor ti = batch_tensor(b, pool[i]);
            void **own[1] = {(void **)&pool[i]};
            if (wire_send(sock, NULL, 0, T_DATA, 0, (uint64_t)i, "", &ti, 1, own) != 0) break;
        }
        for (int j = 0; j < n; j++) free(pool[j]);   // NULL for the ones zmq took
        free(pool);
        if (i < n) return -1;
    }
    if (end_and_count(sock, n) != 0) return -1;   // every batch received and checked
    t1 = now_s();
    r->msgs = n;
    r->seconds = t1 - t0;
    r->median_ms = 1e3 * r->seconds / n;   // one-way: mean time per batch
    return 0;
}

static void report(const Result *r) {
    double bytes = (double)r->batch * (double)CLIP_FLOATS * sizeof(float);
    double mps = r->msgs / r->seconds, gbs = mps * bytes / 1e9;
    printf("%-4s %-7s batch %d (%5.1f MB): %5d msgs in %6.2f s: %8.1f msgs/s %6.2f GB/s  %s %.2f ms\n", r->transport,
           r->pattern, r->batch, bytes / 1e6, r->msgs, r->seconds, mps, gbs,
           strcmp(r->pattern, "reqrep") ? "mean" : "median", r->median_ms);
    printf("RESULT side=wire transport=%s pattern=%s batch=%d bytes=%.0f msgs=%d seconds=%.4f msgs_per_s=%.2f "
           "gb_per_s=%.3f ms_per_msg=%.3f\n",
           r->transport, r->pattern, r->batch, bytes, r->msgs, r->seconds, mps, gbs, r->median_ms);
    fflush(stdout);
}

static int parent_main(const char *ep, const char *transport, const Opts *o) {
    void *ctx = zmq_ctx_new();
    if (!ctx) {
        MDGAN_ERR("zmq_ctx_new: %s", zmq_strerror(errno));
        return -1;
    }
    int rc = -1;
    float *src = malloc((size_t)MAX_BATCH * CLIP_FLOATS * sizeof(float));
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    if (!src || !sock) {
        MDGAN_ERR("out of memory or no socket");
        goto out;
    }
    fill(src, (size_t)MAX_BATCH * CLIP_FLOATS);
    if (wire_socket_setup(sock, ep, 0, HWM, "", "") != 0) goto out;
    if (zmq_setsockopt(sock, ZMQ_RCVTIMEO, &(int){60000}, sizeof(int)) != 0 || zmq_connect(sock, ep) != 0) {
        MDGAN_ERR("connect %s: %s", ep, zmq_strerror(errno));
        goto out;
    }
    for (int bi = 0; bi < o->nbatch; bi++) {
        int b = o->batch[bi];
        static const char *const pat[3] = {"reqrep", "oneway", "owned"};
        for (int p = 0; p < 3; p++) {
            Result r = {.transport = transport, .pattern = pat[p], .batch = b};
            int st = p == 0 ? run_reqrep(sock, o, b, &r) : run_oneway(sock, o, b, p == 2, src, &r);
            if (st != 0) {
                mdgan_errctx("%s %s batch %d", transport, pat[p], b);
                goto out;
            }
            report(&r);
        }
    }
    if (wire_send(sock, NULL, 0, T_QUIT, 0, 0, "", NULL, 0, NULL) != 0) goto out;
    WireMsg m;
    if (recv_ok(sock, &m, T_QUIT) != 0) goto out;
    wire_msg_free(&m);
    rc = 0;
out:
    free(src);
    if (sock) zmq_close(sock);
    zmq_ctx_term(ctx);
    return rc;
}

// "exited with status 1", "killed by SIGKILL"
static void describe_status(int st, char *out, size_t n) {
    if (WIFEXITED(st))
        snprintf(out, n, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(out, n, "killed by SIG%s", sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
    else
        snprintf(out, n, "status 0x%x", st);
}

static int run_transport(const char *transport, const char *bind_ep, const Opts *o) {
    int fds[2];
    if (pipe(fds) != 0) {
        MDGAN_ERR("pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        MDGAN_ERR("fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        int rc = child_main(bind_ep, fds[1]);
        if (rc != 0) mdgan_errprint("bench_wire server");
        _exit(rc == 0 ? 0 : 1);
    }
    close(fds[1]);
    char ep[512];
    size_t n = 0;
    while (n < sizeof ep) {
        ssize_t k = read(fds[0], ep + n, sizeof ep - n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        n += (size_t)k;
        if (memchr(ep, '\0', n)) break;
    }
    close(fds[0]);
    int rc = -1;
    if (n == 0 || !memchr(ep, '\0', n))
        MDGAN_ERR("the server process did not report its endpoint");
    else
        rc = parent_main(ep, transport, o);
    if (rc != 0) kill(pid, SIGTERM);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            MDGAN_ERR("waitpid: %s", strerror(errno));
            return -1;
        }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char how[64];
        describe_status(st, how, sizeof how);
        if (rc == 0) MDGAN_ERR("the %s server process %s", transport, how);
        else mdgan_errctx("(the %s server process %s)", transport, how);
        return -1;
    }
    return rc;
}

// Single-thread memcpy and crc32 of one batch of 4: what each copy and check costs here.
static void baselines(void) {
    size_t nb = (size_t)MAX_BATCH * CLIP_FLOATS * sizeof(float);
    unsigned char *a = malloc(nb), *b = malloc(nb);
    if (!a || !b) {
        free(a);
        free(b);
        return;
    }
    memset(a, 1, nb);
    memset(b, 2, nb);
    double best_cp = 1e9, best_crc = 1e9;
    volatile uLong sink = 0;
    for (int k = 0; k < 3; k++) {
        double t0 = now_s();
        memcpy(b, a, nb);
        double t1 = now_s();
        sink += crc32(0L, a, (uInt)nb);
        double t2 = now_s();
        if (t1 - t0 < best_cp) best_cp = t1 - t0;
        if (t2 - t1 < best_crc) best_crc = t2 - t1;
    }
    (void)sink;
    printf("baseline, one thread, %.1f MB: memcpy %.2f GB/s, zlib crc32 %.2f GB/s\n", nb / 1e6, nb / best_cp / 1e9,
           nb / best_crc / 1e9);
    printf("RESULT side=wire transport=none pattern=baseline memcpy_gb_per_s=%.3f crc32_gb_per_s=%.3f\n",
           nb / best_cp / 1e9, nb / best_crc / 1e9);
    free(a);
    free(b);
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: bench_wire [--quick] [--iters N] [--min-time S] [--warmup N] [--transports ipc,tcp]\n"
            "                  [--batches 1,4]\n"
            "  --iters N       timed messages at least (default 10; the owned pattern sends exactly N)\n"
            "  --min-time S    and keep timing reqrep/oneway until S seconds have passed (default 1)\n"
            "  --warmup N      untimed messages first (default 2)\n"
            "  --quick         --iters 3 --min-time 0 --warmup 1\n"
            "exit codes: 0 success, 1 runtime failure, 2 bad usage\n");
}

static int parse_batches(const char *s, Opts *o) {
    o->nbatch = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > MAX_BATCH || o->nbatch == 2) return -1;
        o->batch[o->nbatch++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return o->nbatch ? 0 : -1;
}

int main(int argc, char **argv) {
    Opts o = {.warmup = 2, .iters = 10, .min_time = 1.0, .ipc = 1, .tcp = 1, .batch = {1, 4}, .nbatch = 2};
    static const struct option lo[] = {{"quick", no_argument, 0, 'q'},       {"iters", required_argument, 0, 'i'},
                                       {"min-time", required_argument, 0, 'm'}, {"warmup", required_argument, 0, 'w'},
                                       {"transports", required_argument, 0, 't'},
                                       {"batches", required_argument, 0, 'b'}, {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'q': o.iters = 3, o.min_time = 0, o.warmup = 1; break;
        case 'i':
            o.iters = (int)strtol(optarg, &end, 10);
            if (*end || o.iters < 1 || o.iters > 10000) goto bad;
            break;
        case 'm':
            o.min_time = strtod(optarg, &end);
            if (*end || !(o.min_time >= 0) || o.min_time > 3600) goto bad;
            break;
        case 'w':
            o.warmup = (int)strtol(optarg, &end, 10);
            if (*end || o.warmup < 0 || o.warmup > 1000) goto bad;
            break;
        case 't':
            o.ipc = strstr(optarg, "ipc") != NULL;
            o.tcp = strstr(optarg, "tcp") != NULL;
            if (!o.ipc && !o.tcp) goto bad;
            break;
        case 'b':
            if (parse_batches(optarg, &o) != 0) goto bad;
            break;
        case 'h': usage(stdout); return MDGAN_EXIT_OK;
        default: goto bad;
        }
    }
    if (optind != argc) goto bad;

    double la[3] = {0};
    if (getloadavg(la, 3) < 0) la[0] = la[1] = la[2] = -1;
    printf("== bench_wire: ZeroMQ %d.%d.%d, two processes, tensor F32 (B, %d, %d, %d, %d); %d warm-up, >= %d timed "
           "messages and >= %.1f s each; load average %.2f %.2f %.2f\n",
           ZMQ_VERSION_MAJOR, ZMQ_VERSION_MINOR, ZMQ_VERSION_PATCH, C, T, S, S, o.warmup, o.iters, o.min_time, la[0],
           la[1], la[2]);
    baselines();
    char dir[] = "/tmp/bench-wire-XXXXXX";
    int rc = 0;
    if (o.ipc) {
        char ep[256];
        if (!mkdtemp(dir)) {
            MDGAN_ERR("mkdtemp: %s", strerror(errno));
            rc = -1;
        } else if (wire_endpoint(ep, sizeof ep, "", dir, "bench") != 0 || run_transport("ipc", ep, &o) != 0) {
            rc = -1;
        }
        if (dir[strlen(dir) - 1] != 'X') {
            char path[512];
            snprintf(path, sizeof path, "%s/sockets/bench.sock", dir);
            unlink(path);
            snprintf(path, sizeof path, "%s/sockets", dir);
            rmdir(path);
            rmdir(dir);
        }
    }
    if (rc == 0 && o.tcp && run_transport("tcp", "tcp://127.0.0.1:*", &o) != 0) rc = -1;
    if (rc != 0) {
        mdgan_errprint(PROG);
        return MDGAN_EXIT_RUNTIME;
    }
    if (getloadavg(la, 3) >= 0) printf("load average at end: %.2f %.2f %.2f\n", la[0], la[1], la[2]);
    return MDGAN_EXIT_OK;
bad:
    usage(stderr);
    return MDGAN_EXIT_USAGE;
}
