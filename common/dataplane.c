// The data plane between Base-Net and Refine-Net (include/mdgan/dataplane.h).
#include "mdgan/dataplane.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "mdgan/ckpt.h"
#include "mdgan/error.h"
#include "mdgan/sha256.h"
#include "mdgan/train.h"

// ---------------------------------------------------------------- identity

void dataplane_identity(const Dataset *ds, DataIdentity *id) {
    memset(id, 0, sizeof *id);
    id->frames = ds->T, id->size = ds->H, id->clips = ds->nclips;
    Sha256 names;
    sha256_init(&names);
    for (int i = 0; i < ds->nclips; i++) {
        char line[1024];
        int n = snprintf(line, sizeof line, "%s/%s/%d\n", ds->clips[i].video, ds->clips[i].clip, ds->clips[i].window);
        sha256_update(&names, line, (size_t)(n < (int)sizeof line ? n : 0));
    }
    unsigned char d[32];
    sha256_final(&names, d);
    sha256_hex(id->clips_sha256, d);
    const size_t bytes = (size_t)ds->nclips * ds->T * ds->H * ds->W * 3;
    sha256(d, ds->cache, bytes);
    sha256_hex(id->data_sha256, d);
}

static json_t *identity_json(const DataIdentity *id, const char *g1_sha256) {
    return json_pack("{s:i, s:i, s:i, s:s, s:s, s:s}", "frames", id->frames, "size", id->size, "clips", id->clips,
                     "clips_sha256", id->clips_sha256, "data_sha256", id->data_sha256, "g1_sha256", g1_sha256);
}

// The first field in which the client's identity differs from ours, as a message.
static int identity_mismatch(const DpServer *srv, const char *text, char *why, size_t n) {
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j || !json_is_object(j)) {
        snprintf(why, n, "HELLO text is not a JSON object: %s", jerr.text);
        json_decref(j);
        return 1;
    }
    int rc = 0;
    const struct { const char *key; int ours; } ints[] = {
        {"frames", srv->id.frames}, {"size", srv->id.size}, {"clips", srv->id.clips}};
    for (size_t k = 0; k < 3 && !rc; k++) {
        json_t *v = json_object_get(j, ints[k].key);
        if (!json_is_integer(v) || json_integer_value(v) != ints[k].ours) {
            snprintf(why, n, "the dataset differs: %s is %lld on the refine side, %d on the base side", ints[k].key,
                     json_is_integer(v) ? (long long)json_integer_value(v) : -1LL, ints[k].ours);
            rc = 1;
        }
    }
    const struct { const char *key, *ours, *what; } strs[] = {
        {"clips_sha256", srv->id.clips_sha256, "the clip lists (video/clip names and windows) differ"},
        {"data_sha256", srv->id.data_sha256, "the decoded frames differ (same names, other pictures or size)"},
        {"g1_sha256", srv->g1_sha256, "this Base-Net serves another G1 than the one the refine run trained with"}};
    for (size_t k = 0; k < 3 && !rc; k++) {
        const char *v = json_string_value(json_object_get(j, strs[k].key));
        if (!v) {
            snprintf(why, n, "HELLO lacks '%s'", strs[k].key);
            rc = 1;
        } else if ((k < 2 || *v) && strcmp(v, strs[k].ours) != 0) {
            snprintf(why, n, "%s (%s %.12s... on the refine side, %.12s... here)", strs[k].what, strs[k].key, v,
                     strs[k].ours);
            rc = 1;
        }
    }
    json_decref(j);
    return rc;
}

int dataplane_endpoint(char *out, size_t n, const Config *c, const char *override) {
    char run_dir[2200];
    snprintf(run_dir, sizeof run_dir, "%s/%s", c->run.dir, c->run.name);
    return wire_endpoint(out, n, override ? override : c->transport.data_endpoint, run_dir, "data");
}

int dataplane_cap_frames(void *sock, size_t max_payload) {
    int64_t max = (int64_t)max_payload + WIRE_ENVELOPE_BYTES + WIRE_TENSOR_HEADER_BYTES + WIRE_MAX_TEXT;
    if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof max) != 0) {
        MDGAN_ERR("cannot set ZMQ_MAXMSGSIZE: %s", zmq_strerror(errno));
        return -1;
    }
    return 0;
}

int dataplane_ipc_claim(const char *endpoint) {
    const char *path = endpoint + 6;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) return 0; // wire_endpoint refuses it with the reason
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        MDGAN_ERR("cannot create a probe socket: %s", strerror(errno));
        return -1;
    }
    int live = connect(fd, (const struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    if (live) {
        MDGAN_ERR("another server is serving on %s: stop it first, or choose another transport.data_endpoint",
                  endpoint);
        return -1;
    }
    // only a socket is a stale socket: any other file at the path is somebody's
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
        MDGAN_ERR("%s: %s is there and is not a socket: choose another transport.data_endpoint", endpoint, path);
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        MDGAN_ERR("cannot remove the stale socket file %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- server

static void serve_log(const char *what, const char *why) { fprintf(stderr, "base serve: %s: %s\n", what, why); }

// Answers one BATCH request: Y from the dataset, Y1 from the producer; both handed to
// zmq without a copy.
static int serve_batch(DpServer *srv, void *sock, const WireMsg *m) {
    char why[256];
    const WireTensor *t = &m->t[0];
    uint32_t status = WIRE_E_REQUEST;
    if (m->ntensors != 1 || t->dtype != WIRE_I64 || t->ndim != 1) {
        snprintf(why, sizeof why, "BATCH wants one 1-D I64 tensor of clip indices, got %d tensor(s)%s", m->ntensors,
                 m->ntensors == 1 ? " of another dtype or rank" : "");
    } else if (t->shape[0] > srv->max_batch) {
        snprintf(why, sizeof why, "BATCH of %lld clips is more than the %d this server sends in one reply",
                 (long long)t->shape[0], srv->max_batch);
    } else {
        status = WIRE_OK;
    }
    const int n = status == WIRE_OK ? (int)t->shape[0] : 0;
    int idx[256];
    for (int i = 0; i < n && status == WIRE_OK; i++) {
        int64_t v;
        memcpy(&v, (const unsigned char *)t->data + 8 * i, 8);
        if (v < 0 || v >= srv->ds->nclips) {
            snprintf(why, sizeof why, "clip index %lld out of range (the dataset has %d clips)", (long long)v,
                     srv->ds->nclips);
            status = WIRE_E_REQUEST;
        }
        idx[i] = (int)v;
    }
    if (status != WIRE_OK) {
        srv->errors++;
        serve_log("bad BATCH request", why);
        return wire_send_error(sock, m->route, m->route_len, DP_BATCH, status, m->id, why);
    }
    const int T = srv->ds->T, S = srv->ds->H;
    const size_t clip = (size_t)3 * T * S * S;
    float *y = malloc((size_t)n * clip * sizeof(float)), *y1 = malloc((size_t)n * clip * sizeof(float));
    if (!y || !y1 || (dataset_batch(srv->ds, idx, n, y), srv->produce(srv->ctx, y, n, y1) != 0)) {
        free(y), free(y1);
        srv->errors++;
        snprintf(why, sizeof why, "Base-Net failed: %s", mdgan_errmsg()[0] ? mdgan_errmsg() : "out of memory");
        serve_log("BATCH", why);
        return wire_send_error(sock, m->route, m->route_len, DP_BATCH, WIRE_E_INTERNAL, m->id, why);
    }
    const WireTensor out[2] = {
        {.dtype = WIRE_F32, .ndim = 5, .shape = {n, 3, T, S, S}, .nbytes = (size_t)n * clip * sizeof(float), .data = y},
        {.dtype = WIRE_F32, .ndim = 5, .shape = {n, 3, T, S, S}, .nbytes = (size_t)n * clip * sizeof(float), .data = y1}};
    void **owned[2] = {(void **)&y, (void **)&y1};
    int rc = wire_send(sock, m->route, m->route_len, DP_BATCH, WIRE_OK, m->id, "", out, 2, owned);
    free(y), free(y1); // NULL when the send took them
    if (rc == 0) srv->served++;
    return rc;
}

static int serve_weights(DpServer *srv, void *sock, const WireMsg *m) {
    const Net *g = srv->g1;
    json_t *j = json_pack("{s:i, s:s, s:I}", "ngf", g->nf, "g1_sha256", srv->g1_sha256, "bn_batches",
                          (json_int_t)g->bn_batches);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    const WireTensor t[2] = {
        {.dtype = WIRE_F32, .ndim = 1, .shape = {(int64_t)g->nparams}, .nbytes = g->nparams * sizeof(float),
         .data = g->params},
        {.dtype = WIRE_F32, .ndim = 1, .shape = {(int64_t)g->nbuffers}, .nbytes = g->nbuffers * sizeof(float),
         .data = g->buffers}};
    int rc = text ? wire_send(sock, m->route, m->route_len, DP_WEIGHTS, WIRE_OK, m->id, text, t, 2, NULL) : -1;
    free(text);
    fprintf(stderr, "base serve: sent G1's weights (%zu parameters) to a Refine-Net\n", g->nparams);
    return rc;
}

static int serve_hello(DpServer *srv, void *sock, const WireMsg *m) {
    char why[512];
    if (identity_mismatch(srv, m->text, why, sizeof why)) {
        srv->errors++;
        serve_log("HELLO refused", why);
        return wire_send_error(sock, m->route, m->route_len, DP_HELLO, WIRE_E_MISMATCH, m->id, why);
    }
    json_t *j = json_pack("{s:s, s:s, s:i, s:s}", "g1_sha256", srv->g1_sha256, "checkpoint", srv->checkpoint,
                          "clips", srv->ds->nclips, "root", srv->ds->root);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    int rc = text ? wire_send(sock, m->route, m->route_len, DP_HELLO, WIRE_OK, m->id, text, NULL, 0, NULL) : -1;
    free(text);
    fprintf(stderr, "base serve: HELLO from a Refine-Net: same dataset (%d clips), G1 %.12s...\n", srv->ds->nclips,
            srv->g1_sha256);
    return rc;
}

int dataplane_serve(DpServer *srv, void *sock) {
    const int sigfd = train_signal_fd();
    zmq_pollitem_t items[2] = {{sock, 0, ZMQ_POLLIN, 0}, {NULL, sigfd, ZMQ_POLLIN, 0}};
    while (!train_stop_signal()) {
        int r = zmq_poll(items, sigfd >= 0 ? 2 : 1, 1000);
        if (r < 0) {
            if (errno == EINTR) continue;
            MDGAN_ERR("zmq_poll on the data socket failed: %s", zmq_strerror(errno));
            return -1;
        }
        if (!(items[0].revents & ZMQ_POLLIN)) continue;
        WireMsg m;
        char why[256];
        int st = wire_recv(sock, 1, &srv->lim, &m, why, sizeof why);
        if (st < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            MDGAN_ERR("receiving on the data socket failed: %s", zmq_strerror(errno));
            return -1;
        }
        int rc = 0;
        if (st != WIRE_OK) {
            srv->errors++;
            serve_log("malformed request", why);
            rc = wire_send_error(sock, m.route, m.route_len, m.type, (uint32_t)st, m.id, why);
        } else if (m.type == DP_HELLO) {
            rc = serve_hello(srv, sock, &m);
        } else if (m.type == DP_BATCH) {
            rc = serve_batch(srv, sock, &m);
        } else if (m.type == DP_WEIGHTS && srv->g1) {
            rc = serve_weights(srv, sock, &m);
        } else {
            srv->errors++;
            snprintf(why, sizeof why, "unknown request type %u (HELLO is %d, BATCH %d, WEIGHTS %d)", m.type, DP_HELLO,
                     DP_BATCH, DP_WEIGHTS);
            serve_log("bad request", why);
            rc = wire_send_error(sock, m.route, m.route_len, m.type, WIRE_E_TYPE, m.id, why);
        }
        // a reply that cannot go out (the peer is gone) is that peer's loss, not ours
        if (rc != 0) fprintf(stderr, "base serve: warning: reply not sent: %s\n", mdgan_errmsg());
        wire_msg_free(&m);
    }
    return 0;
}

// ---------------------------------------------------------------- client

#define DP_MAX_PENDING 64

typedef struct {
    uint64_t tag;
    int n, sent, done;
    int idx[256];
    WireMsg reply;
} DpPending;

struct DpClient {
    void *ctx, *sock, *mon;
    char endpoint[1024], mon_endpoint[64];
    char curve_server_key[128];
    DataIdentity id;
    char g1_sha256[65];
    int timeout_s, inflight;
    WireLimits lim;
    DpPending pend[DP_MAX_PENDING];   // in the order queued
    int npend;
    double wait_s;
    int reconnects;
    uint64_t hello_id;
    int handshake_failed;             // the monitor saw a ZMTP/CURVE handshake fail
};

static void client_close_socket(DpClient *c) {
    if (c->mon) zmq_close(c->mon), c->mon = NULL;
    if (c->sock) {
        zmq_socket_monitor(c->sock, NULL, 0);
        zmq_close(c->sock), c->sock = NULL;
    }
}

static int client_open_socket(DpClient *c) {
    static int serial;
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!c->sock) {
        MDGAN_ERR("cannot create a ZeroMQ socket: %s", zmq_strerror(errno));
        return -1;
    }
    if (wire_socket_setup(c->sock, c->endpoint, 0, 1000, c->curve_server_key, "") != 0 ||
        dataplane_cap_frames(c->sock, c->lim.max_payload) != 0)
        return -1;
    // ZMTP heartbeats: a tcp peer that vanishes without closing the connection still
    // shows as a disconnection after 10 s
    int ivl = 2000, hb_timeout = 10000;
    if (zmq_setsockopt(c->sock, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl) != 0 ||
        zmq_setsockopt(c->sock, ZMQ_HEARTBEAT_TIMEOUT, &hb_timeout, sizeof hb_timeout) != 0) {
        MDGAN_ERR("cannot set heartbeats on the data socket: %s", zmq_strerror(errno));
        return -1;
    }
    // a Base-Net that goes away shows as a DISCONNECTED event on this monitor
    snprintf(c->mon_endpoint, sizeof c->mon_endpoint, "inproc://dp-monitor-%d", serial++);
    const int events = ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                       ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (zmq_socket_monitor(c->sock, c->mon_endpoint, events) != 0 ||
        !(c->mon = zmq_socket(c->ctx, ZMQ_PAIR)) || zmq_connect(c->mon, c->mon_endpoint) != 0) {
        MDGAN_ERR("cannot monitor the data socket: %s", zmq_strerror(errno));
        return -1;
    }
    if (zmq_connect(c->sock, c->endpoint) != 0) {
        MDGAN_ERR("cannot connect to the Base-Net at %s: %s", c->endpoint, zmq_strerror(errno));
        return -1;
    }
    return 0;
}

// 1 when the monitor reported a disconnection (its two frames read off).
static int client_disconnected(DpClient *c) {
    int gone = 0;
    for (;;) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return gone;
        }
        if (zmq_msg_size(&ev) >= 2) {
            uint16_t e;
            memcpy(&e, zmq_msg_data(&ev), 2);
            gone |= e == ZMQ_EVENT_DISCONNECTED;
            if (e & (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH))
                c->handshake_failed = 1;
        }
        int more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        if (more) { // the endpoint frame
            zmq_msg_init(&ev);
            zmq_msg_recv(&ev, c->mon, 0);
            zmq_msg_close(&ev);
        }
    }
}

static int client_send_request(DpClient *c, DpPending *p) {
    int64_t idx[256];
    for (int i = 0; i < p->n; i++) idx[i] = p->idx[i];
    const WireTensor t = {.dtype = WIRE_I64, .ndim = 1, .shape = {p->n}, .nbytes = (size_t)p->n * 8, .data = idx};
    if (wire_send(c->sock, NULL, 0, DP_BATCH, WIRE_OK, p->tag, "", &t, 1, NULL) != 0) return -1;
    p->sent = 1;
    return 0;
}

// Sends queued requests while fewer than `inflight` are outstanding.
static int client_pump(DpClient *c) {
    int out = 0;
    for (int i = 0; i < c->npend; i++) out += c->pend[i].sent && !c->pend[i].done;
    for (int i = 0; i < c->npend && out < c->inflight; i++)
        if (!c->pend[i].sent) {
            if (client_send_request(c, &c->pend[i]) != 0) return -1;
            out++;
        }
    return 0;
}

// poll on the data socket, the monitor and the signal pipe: 1 data, 2 disconnected,
// 0 timeout, -1 signal or failure
static int client_poll(DpClient *c, int ms) {
    const int sigfd = train_signal_fd();
    zmq_pollitem_t items[3] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0}, {NULL, sigfd, ZMQ_POLLIN, 0}};
    int r = zmq_poll(items, sigfd >= 0 ? 3 : 2, ms);
    if (train_stop_signal()) {
        MDGAN_ERR("interrupted by signal %d while waiting for the Base-Net at %s", train_stop_signal(), c->endpoint);
        return -1;
    }
    if (r < 0) {
        if (errno == EINTR) return 0;
        MDGAN_ERR("zmq_poll on the data socket failed: %s", zmq_strerror(errno));
        return -1;
    }
    if ((items[1].revents & ZMQ_POLLIN) && client_disconnected(c)) return 2;
    return (items[0].revents & ZMQ_POLLIN) ? 1 : 0;
}

// One message off the data socket: a WireStatus, CLIENT_AGAIN (interrupted: poll again)
// or -1 with a message when the socket failed.
enum { CLIENT_AGAIN = -2 };
static int client_recv(DpClient *c, WireMsg *m, char *why, size_t n) {
    int st = wire_recv(c->sock, 0, &c->lim, m, why, n);
    if (st >= 0) return st;
    if (errno == EINTR || errno == EAGAIN) return CLIENT_AGAIN;
    MDGAN_ERR("receiving from the Base-Net at %s failed: %s", c->endpoint, zmq_strerror(errno));
    return -1;
}

// HELLO on a fresh socket, until a server answers or timeout_s passes. A mismatch is final.
static int client_hello(DpClient *c) {
    const double deadline = train_now() + c->timeout_s;
    json_t *j = identity_json(&c->id, c->g1_sha256);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        MDGAN_ERR("out of memory");
        return -1;
    }
    int rc = -1;
    for (;;) {
        client_close_socket(c);
        if (client_open_socket(c) != 0) break;
        const uint64_t id = ++c->hello_id;
        if (wire_send(c->sock, NULL, 0, DP_HELLO, WIRE_OK, id, text, NULL, 0, NULL) != 0) break;
        // one HELLO per socket: wait for it, start again on a disconnection (after a
        // pause, so that a peer that drops us at once is not hammered)
        int got = 0, dropped = 0;
        while (!got && train_now() < deadline) {
            int r = client_poll(c, 250);
            if (r < 0) goto out;
            if (r == 2) {
                dropped = 1;
                break;
            }
            if (r == 0) {
                const double waited = train_now() - (deadline - c->timeout_s);
                if ((int)waited / 10 != (int)(waited - 0.25) / 10)
                    fprintf(stderr, "refine: still waiting for a Base-Net at %s (%.0f of %d s)\n", c->endpoint, waited,
                            c->timeout_s);
                continue;
            }
            WireMsg m;
            char why[256];
            int st = client_recv(c, &m, why, sizeof why);
            if (st == CLIENT_AGAIN) continue;
            if (st < 0) goto out;
            if (st == WIRE_OK && m.type == DP_HELLO && m.id == id) {
                if (m.status != WIRE_OK) {
                    MDGAN_ERR("the Base-Net at %s refused this run: %s", c->endpoint, m.text);
                    wire_msg_free(&m);
                    goto out;
                }
                json_t *r_ = json_loads(m.text, 0, NULL);
                const char *g1 = json_string_value(json_object_get(r_, "g1_sha256"));
                if (!g1 || strlen(g1) != 64) {
                    MDGAN_ERR("the Base-Net at %s answered HELLO without its G1's sha256", c->endpoint);
                    json_decref(r_), wire_msg_free(&m);
                    goto out;
                }
                if (c->g1_sha256[0] && strcmp(c->g1_sha256, g1) != 0) { // the server agreed, but check
                    MDGAN_ERR("the Base-Net at %s serves G1 %.12s..., not the %.12s... this run trained with",
                              c->endpoint, g1, c->g1_sha256);
                    json_decref(r_), wire_msg_free(&m);
                    goto out;
                }
                snprintf(c->g1_sha256, sizeof c->g1_sha256, "%s", g1);
                json_decref(r_);
                got = 1;
            } else if (st != WIRE_OK) {
                fprintf(stderr, "refine: warning: malformed message from the Base-Net at %s: %s\n", c->endpoint, why);
            } // else: a late reply to an earlier socket's request cannot come here; anything else is dropped
            wire_msg_free(&m);
        }
        if (got) {
            rc = 0;
            break;
        }
        if (dropped) usleep(250000);
        if (train_now() >= deadline) {
            if (c->handshake_failed)
                MDGAN_ERR("the handshake with the Base-Net at %s failed for %d s (transport.timeout_s): with CURVE, "
                          "transport.curve_server_key must be that server's public key", c->endpoint, c->timeout_s);
            else
                MDGAN_ERR("no Base-Net answered at %s within %d s (transport.timeout_s): start `mdgan-base serve` "
                          "there, or give --base ENDPOINT", c->endpoint, c->timeout_s);
            break;
        }
    }
out:
    free(text);
    return rc;
}

DpClient *dataplane_connect(const char *endpoint, const DataIdentity *id, char *g1_sha256, int timeout_s,
                            int inflight, size_t max_payload, const char *curve_server_key) {
    DpClient *c = calloc(1, sizeof *c);
    if (!c || !(c->ctx = zmq_ctx_new())) {
        MDGAN_ERR("cannot create a ZeroMQ context");
        free(c);
        return NULL;
    }
    snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
    snprintf(c->curve_server_key, sizeof c->curve_server_key, "%s", curve_server_key ? curve_server_key : "");
    snprintf(c->g1_sha256, sizeof c->g1_sha256, "%s", g1_sha256);
    c->id = *id, c->timeout_s = timeout_s, c->inflight = inflight > 0 ? inflight : 1;
    c->lim.max_payload = max_payload;
    if (client_hello(c) != 0) {
        dataplane_close(c);
        return NULL;
    }
    memcpy(g1_sha256, c->g1_sha256, 65);
    return c;
}

void dataplane_close(DpClient *c) {
    if (!c) return;
    for (int i = 0; i < c->npend; i++) wire_msg_free(&c->pend[i].reply);
    client_close_socket(c);
    if (c->ctx) zmq_ctx_term(c->ctx);
    free(c);
}

int dataplane_request(DpClient *c, uint64_t tag, const int *idx, int n) {
    if (c->npend == DP_MAX_PENDING || n < 1 || n > 256) {
        MDGAN_ERR("data plane: cannot queue a request of %d clips (%d queued)", n, c->npend);
        return -1;
    }
    DpPending *p = &c->pend[c->npend++];
    memset(p, 0, sizeof *p);
    p->tag = tag, p->n = n;
    memcpy(p->idx, idx, (size_t)n * sizeof(int));
    return client_pump(c);
}

static DpPending *find_pending(DpClient *c, uint64_t tag) {
    for (int i = 0; i < c->npend; i++)
        if (c->pend[i].tag == tag) return &c->pend[i];
    return NULL;
}

// The server went away: wait for one, HELLO (same G1), re-send what was outstanding.
static int client_reconnect(DpClient *c) {
    int outstanding = 0;
    for (int i = 0; i < c->npend; i++) {
        if (c->pend[i].sent && !c->pend[i].done) outstanding++;
        if (!c->pend[i].done) c->pend[i].sent = 0;
    }
    fprintf(stderr, "\nrefine: the Base-Net at %s went away (%d request(s) in flight); waiting up to %d s for it "
            "to come back\n", c->endpoint, outstanding, c->timeout_s);
    if (client_hello(c) != 0) return -1;
    c->reconnects++;
    fprintf(stderr, "refine: the Base-Net is back (G1 %.12s...); re-sending %d request(s)\n", c->g1_sha256,
            outstanding);
    return client_pump(c);
}

int dataplane_wait(DpClient *c, uint64_t tag, float *y, float *y1) {
    DpPending *p = find_pending(c, tag);
    if (!p) {
        MDGAN_ERR("data plane: no request %llu was queued", (unsigned long long)tag);
        return -1;
    }
    const double t0 = train_now();
    double last_heard = t0;
    int rc = -1;
    if (client_pump(c) != 0) goto out;
    while (!p->done) {
        int r = client_poll(c, 500);
        if (r < 0) goto out;
        if (r == 2) {
            if (client_reconnect(c) != 0) goto out;
            last_heard = train_now();
            continue;
        }
        if (r == 0) {
            if (train_now() - last_heard > c->timeout_s) {
                MDGAN_ERR("the Base-Net at %s has not answered for %d s (transport.timeout_s)", c->endpoint,
                          c->timeout_s);
                goto out;
            }
            continue;
        }
        WireMsg m;
        char why[256];
        int st = client_recv(c, &m, why, sizeof why);
        if (st == CLIENT_AGAIN) continue;
        if (st < 0) goto out;
        last_heard = train_now();
        DpPending *q = st == WIRE_OK && m.type == DP_BATCH ? find_pending(c, m.id) : NULL;
        if (st != WIRE_OK) {
            MDGAN_ERR("malformed reply from the Base-Net at %s: %s", c->endpoint, why);
        } else if (m.status != WIRE_OK) {
            MDGAN_ERR("the Base-Net at %s answered request %llu with an error (%s): %s", c->endpoint,
                      (unsigned long long)m.id, wire_status_name(m.status), m.text);
        } else if (q && !q->done) {
            const int64_t shape[5] = {q->n, 3, c->id.frames, c->id.size, c->id.size};
            int ok = m.ntensors == 2;
            for (int k = 0; k < 2 && ok; k++)
                ok = m.t[k].dtype == WIRE_F32 && m.t[k].ndim == 5 && !memcmp(m.t[k].shape, shape, sizeof shape);
            if (!ok) {
                MDGAN_ERR("the Base-Net at %s answered request %llu with tensors of another shape than %d clips of "
                          "%d frames of %dx%d", c->endpoint, (unsigned long long)m.id, q->n, c->id.frames, c->id.size,
                          c->id.size);
            } else {
                q->reply = m, q->done = 1;
                if (client_pump(c) != 0) goto out;
                continue; // q owns the message now
            }
        } else {
            wire_msg_free(&m); // a duplicate (re-sent request answered twice): already have it
            continue;
        }
        wire_msg_free(&m);
        goto out;
    }
    memcpy(y, p->reply.t[0].data, p->reply.t[0].nbytes);
    memcpy(y1, p->reply.t[1].data, p->reply.t[1].nbytes);
    wire_msg_free(&p->reply);
    // drop the entry, keeping the queue order
    const int at = (int)(p - c->pend);
    memmove(&c->pend[at], &c->pend[at + 1], (size_t)(c->npend - at - 1) * sizeof c->pend[0]);
    c->npend--;
    rc = client_pump(c);
out:
    c->wait_s += train_now() - t0;
    return rc;
}

int dataplane_fetch_g1(DpClient *c, int T, int S, Net *g1) {
    memset(g1, 0, sizeof *g1);
    const uint64_t id = ++c->hello_id;
    if (wire_send(c->sock, NULL, 0, DP_WEIGHTS, WIRE_OK, id, "", NULL, 0, NULL) != 0) return -1;
    const double deadline = train_now() + c->timeout_s;
    while (train_now() < deadline) {
        int r = client_poll(c, 250);
        if (r < 0) return -1;
        if (r == 2) {
            MDGAN_ERR("the Base-Net at %s went away while sending G1's weights: start the run again", c->endpoint);
            return -1;
        }
        if (r == 0) continue;
        WireMsg m;
        char why[256];
        int st = client_recv(c, &m, why, sizeof why);
        if (st == CLIENT_AGAIN) continue;
        if (st < 0) return -1;
        if (st != WIRE_OK || m.type != DP_WEIGHTS || m.id != id) {
            wire_msg_free(&m); // nothing else is in flight: a stray message
            continue;
        }
        int rc = -1;
        json_t *j = m.status == WIRE_OK ? json_loads(m.text, 0, NULL) : NULL;
        const int ngf = (int)json_integer_value(json_object_get(j, "ngf"));
        const char *sha = json_string_value(json_object_get(j, "g1_sha256"));
        char got[65];
        if (m.status != WIRE_OK) {
            MDGAN_ERR("the Base-Net at %s did not send G1's weights (%s): %s", c->endpoint, wire_status_name(m.status),
                      m.text);
        } else if (ngf < 1 || ngf > 1024 || !sha || m.ntensors != 2 || net_init(g1, NET_G1, T, S, S, ngf, NULL) != 0) {
            MDGAN_ERR("the Base-Net at %s sent G1's weights in a form this version does not read", c->endpoint);
        } else if (m.t[0].nbytes != g1->nparams * sizeof(float) || m.t[1].nbytes != g1->nbuffers * sizeof(float)) {
            MDGAN_ERR("the Base-Net at %s sent %zu parameters for a G1 of width %d, which has %zu", c->endpoint,
                      m.t[0].nbytes / sizeof(float), ngf, g1->nparams);
        } else {
            memcpy(g1->params, m.t[0].data, m.t[0].nbytes);
            memcpy(g1->buffers, m.t[1].data, m.t[1].nbytes);
            g1->bn_batches = json_integer_value(json_object_get(j, "bn_batches"));
            ckpt_net_sha256(g1, got);
            if (strcmp(got, c->g1_sha256) != 0)
                MDGAN_ERR("G1's weights from the Base-Net at %s do not match the digest it announced (%.12s... vs "
                          "%.12s...)", c->endpoint, got, c->g1_sha256);
            else
                rc = 0;
        }
        json_decref(j);
        wire_msg_free(&m);
        if (rc != 0) net_free(g1);
        return rc;
    }
    MDGAN_ERR("the Base-Net at %s did not send G1's weights within %d s", c->endpoint, c->timeout_s);
    return -1;
}

double dataplane_wait_seconds(const DpClient *c) { return c->wait_s; }
int dataplane_reconnects(const DpClient *c) { return c->reconnects; }
