// The control plane's messages and its stage-side client (include/mdgan/control.h).
#include "mdgan/control.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "mdgan/error.h"
#include "mdgan/train.h"
#include "mdgan/wire.h"

const char *control_type_name(int type) {
    switch (type) {
    case CTL_HELLO: return "HELLO";
    case CTL_PROGRESS: return "PROGRESS";
    case CTL_CHECKPOINT: return "CHECKPOINT";
    case CTL_EVAL: return "EVAL";
    case CTL_DONE: return "DONE";
    case CTL_ERROR: return "ERROR";
    case CTL_HEARTBEAT: return "HEARTBEAT";
    case CTL_STOP: return "STOP";
    default: return "unknown";
    }
}

// ---------------------------------------------------------------- schema

static int field_error(char *err, size_t errn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int field_error(char *err, size_t errn, const char *fmt, ...) {
    if (errn) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errn, fmt, ap);
        va_end(ap);
    }
    return WIRE_E_REQUEST;
}

// A count: an integer in [0, 2^53).
static int want_count(const json_t *o, const char *key, int type, char *err, size_t errn) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (json_int_t)1 << 53)
        return field_error(err, errn, "%s: '%s' must be a non-negative integer", control_type_name(type), key);
    return WIRE_OK;
}

static int want_text(const json_t *o, const char *key, int type, size_t maxlen, char *err, size_t errn) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > maxlen ||
        strlen(json_string_value(v)) != json_string_length(v))
        return field_error(err, errn, "%s: '%s' must be a non-empty string of at most %zu bytes without NUL",
                           control_type_name(type), key, maxlen);
    return WIRE_OK;
}

static int want_number(const json_t *o, const char *key, int type, char *err, size_t errn) {
    const json_t *v = json_object_get(o, key);
    if (!(json_is_number(v) && isfinite(json_number_value(v))) && !json_is_null(v))
        return field_error(err, errn, "%s: '%s' must be a finite number or null", control_type_name(type), key);
    return WIRE_OK;
}

// {name: number | null}, names 1..64 bytes, at most 64 of them.
static int want_numbers(const json_t *o, const char *key, int type, char *err, size_t errn) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_object(v) || json_object_size(v) > 64)
        return field_error(err, errn, "%s: '%s' must be an object of at most 64 numbers", control_type_name(type), key);
    const char *name;
    json_t *x;
    json_object_foreach((json_t *)v, name, x) {
        size_t len = strlen(name);
        if (len == 0 || len > 64 || !((json_is_number(x) && isfinite(json_number_value(x))) || json_is_null(x)))
            return field_error(err, errn, "%s: '%s' entry '%.64s' must be a finite number or null under a name of "
                               "1-64 bytes", control_type_name(type), key, name);
    }
    return WIRE_OK;
}

static int want_sha256(const json_t *o, const char *key, int type, char *err, size_t errn) {
    const char *s = json_string_value(json_object_get(o, key));
    if (!s || strlen(s) != 64 || strspn(s, "0123456789abcdef") != 64)
        return field_error(err, errn, "%s: '%s' must be 64 lowercase hex digits", control_type_name(type), key);
    return WIRE_OK;
}

// Each message type's required fields, in the order they are checked.
typedef enum { F_COUNT, F_TEXT, F_NUMBER, F_NUMBERS, F_SHA256 } FieldKind;
typedef struct {
    const char *key;
    FieldKind kind;
    size_t maxlen;   // F_TEXT
} Field;

static const Field HELLO_FIELDS[] = {{"stage", F_TEXT, 64}, {"pid", F_COUNT, 0}, {"run", F_TEXT, 255}, {0}};
static const Field PROGRESS_FIELDS[] = {{"step", F_COUNT, 0},  {"total_steps", F_COUNT, 0}, {"epoch", F_COUNT, 0},
                                        {"rate", F_NUMBER, 0}, {"losses", F_NUMBERS, 0},    {0}};
static const Field CHECKPOINT_FIELDS[] = {{"path", F_TEXT, 4096}, {"step", F_COUNT, 0},  {"epoch", F_COUNT, 0},
                                          {"sha256", F_SHA256, 0}, {"bytes", F_COUNT, 0}, {0}};
static const Field EVAL_FIELDS[] = {{"step", F_COUNT, 0}, {"metrics", F_NUMBERS, 0}, {0}};
static const Field DONE_FIELDS[] = {{"step", F_COUNT, 0}, {"total_steps", F_COUNT, 0}, {0}};
static const Field ERROR_FIELDS[] = {{"message", F_TEXT, 8192}, {0}};
static const Field NO_FIELDS[] = {{0}};   // HEARTBEAT, STOP: any object

// The fields of a type; NULL for a type that is not a control message.
static const Field *fields_of(int type) {
    switch (type) {
    case CTL_HELLO: return HELLO_FIELDS;
    case CTL_PROGRESS: return PROGRESS_FIELDS;
    case CTL_CHECKPOINT: return CHECKPOINT_FIELDS;
    case CTL_EVAL: return EVAL_FIELDS;
    case CTL_DONE: return DONE_FIELDS;
    case CTL_ERROR: return ERROR_FIELDS;
    case CTL_HEARTBEAT:
    case CTL_STOP: return NO_FIELDS;
    default: return NULL;
    }
}

static int check_field(const json_t *o, int type, const Field *f, char *err, size_t errn) {
    switch (f->kind) {
    case F_COUNT: return want_count(o, f->key, type, err, errn);
    case F_TEXT: return want_text(o, f->key, type, f->maxlen, err, errn);
    case F_NUMBER: return want_number(o, f->key, type, err, errn);
    case F_NUMBERS: return want_numbers(o, f->key, type, err, errn);
    case F_SHA256: return want_sha256(o, f->key, type, err, errn);
    }
    return WIRE_E_REQUEST;
}

int control_check(int type, const char *text, json_t **body, char *err, size_t errn) {
    *body = NULL;
    if (errn) err[0] = 0;
    const Field *fields = fields_of(type);
    if (!fields) {
        if (errn) snprintf(err, errn, "unknown control message type %d", type);
        return WIRE_E_TYPE;
    }
    json_error_t je;
    json_t *o = json_loads(text ? text : "", JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return field_error(err, errn, "%s: the text is not a JSON object (%s)", control_type_name(type),
                           o ? "another JSON value" : je.text);
    }
    for (const Field *f = fields; f->key; f++) {
        int st = check_field(o, type, f, err, errn);
        if (st != WIRE_OK) {
            json_decref(o);
            return st;
        }
    }
    *body = o;
    return WIRE_OK;
}

double control_heartbeat_interval(int heartbeat_s) {
    double s = heartbeat_s / 5.0;
    return s < 0.05 ? 0.05 : s > 5 ? 5 : s;
}

// ---------------------------------------------------------------- the client

typedef struct Pending {
    int type;
    char *text;
    struct Pending *next;
} Pending;

struct ControlClient {
    void *ctx, *sock;
    char endpoint[1024], identity[64];
    double interval;
    pthread_t thread;
    pthread_mutex_t mu;
    Pending *head, *tail;
    int queued;
    int quit;                   // under mu
    double flush_deadline;      // under mu
    volatile sig_atomic_t stop_requested;
    uint64_t next_id;
};

enum { CONTROL_MAX_QUEUED = 4096 };

// Drops the oldest PROGRESS (the newest says more), else the oldest message. Under mu.
static void drop_one(ControlClient *cc) {
    Pending *prev = NULL, *victim = cc->head;
    for (Pending *q = NULL, *p = cc->head; p; q = p, p = p->next)
        if (p->type == CTL_PROGRESS) {
            prev = q, victim = p;
            break;
        }
    if (prev) prev->next = victim->next;
    else cc->head = victim->next;
    if (cc->tail == victim) cc->tail = prev;
    free(victim->text);
    free(victim);
    cc->queued--;
}

void control_post(ControlClient *cc, int type, json_t *body) {
    if (!cc) {
        json_decref(body);
        return;
    }
    Pending *p = malloc(sizeof *p);
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(9)) : strdup("{}");
    json_decref(body);
    if (!p || !text || strlen(text) > WIRE_MAX_TEXT) {   // losing a report is better than stopping training
        free(p), free(text);
        return;
    }
    p->type = type, p->text = text, p->next = NULL;
    pthread_mutex_lock(&cc->mu);
    if (cc->queued >= CONTROL_MAX_QUEUED) drop_one(cc);
    if (cc->tail) cc->tail->next = p;
    else cc->head = p;
    cc->tail = p;
    cc->queued++;
    pthread_mutex_unlock(&cc->mu);
}

int control_stop_requested(const ControlClient *cc) { return cc && cc->stop_requested; }

// Sends the queue's head; 0 sent (or dropped as unsendable), 1 the peer's queue is
// full (try later). The message is taken off the queue before the send, so a post that
// drops a message meanwhile can never free it; on EAGAIN it goes back to the front.
static int send_head(ControlClient *cc) {
    pthread_mutex_lock(&cc->mu);
    Pending *p = cc->head;
    if (p) {
        cc->head = p->next;
        if (!cc->head) cc->tail = NULL;
        cc->queued--;
    }
    pthread_mutex_unlock(&cc->mu);
    if (!p) return 0;
    if (wire_send(cc->sock, NULL, 0, (uint16_t)p->type, 0, ++cc->next_id, p->text, NULL, 0, NULL) != 0 &&
        errno == EAGAIN) {
        pthread_mutex_lock(&cc->mu);
        p->next = cc->head;
        cc->head = p;
        if (!cc->tail) cc->tail = p;
        cc->queued++;
        pthread_mutex_unlock(&cc->mu);
        return 1;
    }
    free(p->text);
    free(p);
    return 0;
}

static void receive_one(ControlClient *cc) {
    WireMsg m;
    char why[256];
    WireLimits lim = {0};
    int st = wire_recv(cc->sock, 0, &lim, &m, why, sizeof why);
    if (st < 0) return;
    if (st != WIRE_OK) fprintf(stderr, "%s: malformed message from the coordinator ignored: %s\n", cc->identity, why);
    else if (m.status != WIRE_OK)
        fprintf(stderr, "%s: the coordinator refused a %s message: %s\n", cc->identity, control_type_name(m.type),
                m.text);
    else if (m.type == CTL_STOP) {
        cc->stop_requested = 1;
        fprintf(stderr, "%s: the coordinator asked to stop\n", cc->identity);
        train_request_stop(SIGTERM);
    }
    wire_msg_free(&m);
}

static void *client_thread(void *arg) {
    ControlClient *cc = arg;
    double last_beat = 0;
    for (;;) {
        pthread_mutex_lock(&cc->mu);
        const int quit = cc->quit, empty = cc->head == NULL;
        const double deadline = cc->flush_deadline;
        pthread_mutex_unlock(&cc->mu);
        if (quit && (empty || train_now() >= deadline)) break;
        zmq_pollitem_t it = {cc->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, empty ? 50 : 0) > 0 && (it.revents & ZMQ_POLLIN)) receive_one(cc);
        int full = 0;
        for (int k = 0; k < 64 && !full; k++) {
            pthread_mutex_lock(&cc->mu);
            int more = cc->head != NULL;
            pthread_mutex_unlock(&cc->mu);
            if (!more) break;
            full = send_head(cc);
        }
        if (full) usleep(20000);
        const double now = train_now();
        if (!quit && now - last_beat >= cc->interval) {
            wire_send(cc->sock, NULL, 0, CTL_HEARTBEAT, 0, ++cc->next_id, "{}", NULL, 0, NULL);
            last_beat = now;
        }
    }
    return NULL;
}

ControlClient *control_client_start(const char *endpoint, const char *identity, double interval_s,
                                    const char *server_key) {
    ControlClient *cc = calloc(1, sizeof *cc);
    if (!cc) {
        MDGAN_ERR("out of memory");
        return NULL;
    }
    snprintf(cc->endpoint, sizeof cc->endpoint, "%s", endpoint);
    snprintf(cc->identity, sizeof cc->identity, "%s", identity);
    cc->interval = interval_s;
    pthread_mutex_init(&cc->mu, NULL);
    const int timeout_ms = 100;
    if (!(cc->ctx = zmq_ctx_new()) || !(cc->sock = zmq_socket(cc->ctx, ZMQ_DEALER))) {
        MDGAN_ERR("cannot create the control socket: %s", zmq_strerror(errno));
        goto fail;
    }
    if (zmq_setsockopt(cc->sock, ZMQ_ROUTING_ID, identity, strlen(identity)) != 0 ||
        wire_socket_setup(cc->sock, endpoint, 0, 1000, server_key, "") != 0 ||
        zmq_setsockopt(cc->sock, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms) != 0) {
        if (!mdgan_errmsg()[0]) MDGAN_ERR("control socket options: %s", zmq_strerror(errno));
        goto fail;
    }
    if (zmq_connect(cc->sock, endpoint) != 0) {
        MDGAN_ERR("cannot connect to the coordinator at %s: %s", endpoint, zmq_strerror(errno));
        goto fail;
    }
    // SIGINT/SIGTERM stay with the main thread, whose blocking calls they interrupt
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int started = pthread_create(&cc->thread, NULL, client_thread, cc) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!started) {
        MDGAN_ERR("cannot start the control thread");
        goto fail;
    }
    return cc;
fail:
    if (cc->sock) zmq_close(cc->sock);
    if (cc->ctx) zmq_ctx_term(cc->ctx);
    pthread_mutex_destroy(&cc->mu);
    free(cc);
    return NULL;
}

void control_client_stop(ControlClient *cc, double flush_s) {
    if (!cc) return;
    pthread_mutex_lock(&cc->mu);
    cc->quit = 1;
    cc->flush_deadline = train_now() + flush_s;
    pthread_mutex_unlock(&cc->mu);
    pthread_join(cc->thread, NULL);
    // what zmq still holds gets the rest of the flush time to reach the coordinator
    int linger = (int)(flush_s * 1000);
    zmq_setsockopt(cc->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(cc->sock);
    zmq_ctx_term(cc->ctx);
    for (Pending *p = cc->head, *next; p; p = next) {
        next = p->next;
        free(p->text);
        free(p);
    }
    pthread_mutex_destroy(&cc->mu);
    free(cc);
}
