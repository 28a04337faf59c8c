// wire: tensor messages over ZeroMQ (include/mdgan/wire.h, DESIGN.md section 4).
//
// Every field is encoded and decoded byte by byte in little-endian order: wire data is
// never cast to a struct, so alignment, padding and the host's byte order do not
// matter. A received message is checked whole (frame count, every header, every
// payload length and CRC) before a single payload byte is copied.
#include "mdgan/wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <zlib.h>
#include <zmq.h>

#include "mdgan/error.h"

static const unsigned char ENV_MAGIC[4] = {'M', 'D', 'G', 'E'};
static const unsigned char TEN_MAGIC[4] = {'M', 'D', 'G', 'T'};

// Frames one message can have: routing id, envelope, header + payload per tensor.
#define WIRE_MAX_FRAMES (2 + 2 * WIRE_MAX_TENSORS)

// ---------------------------------------------------------------- little-endian bytes

static void put_u16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint16_t get_u16(const unsigned char *p) { return (uint16_t)(p[0] | (unsigned)p[1] << 8); }
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

// ---------------------------------------------------------------- small helpers

static void errf(char *err, size_t errn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errn, const char *fmt, ...) {
    if (!err || !errn) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errn, fmt, ap);
    va_end(ap);
}

// "tensor 2: <reason>" in place (the reason came from a single-frame parser).
static void errprefix(char *err, size_t errn, const char *prefix) {
    if (!err || !errn) return;
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", err);
    snprintf(err, errn, "%s%s", prefix, tmp);
}

size_t wire_dtype_size(WireDtype d) {
    switch (d) {
    case WIRE_F32: return 4;
    case WIRE_U8: return 1;
    case WIRE_I64: return 8;
    }
    return 0;
}

static const char *dtype_name(unsigned d) {
    switch (d) {
    case WIRE_F32: return "F32";
    case WIRE_U8: return "U8";
    case WIRE_I64: return "I64";
    }
    return "?";
}

const char *wire_status_name(uint32_t status) {
    switch (status) {
    case WIRE_OK: return "ok";
    case WIRE_E_FRAMES: return "wrong frame count";
    case WIRE_E_MAGIC: return "bad magic";
    case WIRE_E_VERSION: return "unknown version";
    case WIRE_E_HEADER: return "malformed header";
    case WIRE_E_SIZE: return "byte count mismatch";
    case WIRE_E_CAP: return "over the size cap";
    case WIRE_E_CRC: return "CRC mismatch";
    case WIRE_E_TYPE: return "unknown request type";
    case WIRE_E_REQUEST: return "bad request";
    case WIRE_E_MISMATCH: return "peers disagree";
    case WIRE_E_INTERNAL: return "server failure";
    }
    return "unknown status";
}

// prod(shape) * dtype size into *out; -1 when it does not fit 64 bits (or size_t).
// The caller has checked every dim >= 1.
static int shape_bytes(WireDtype d, int ndim, const int64_t *shape, uint64_t *out) {
    uint64_t n = wire_dtype_size(d);
    for (int i = 0; i < ndim; i++) {
        uint64_t s = (uint64_t)shape[i];
        if (n > UINT64_MAX / s) return -1;
        n *= s;
    }
    if (n > SIZE_MAX) return -1;
    *out = n;
    return 0;
}

static void shape_str(char *out, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(out, n, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < n) snprintf(out + k, n - k, ")");
}

// zlib's crc32 takes a 32-bit length: feed a large payload in pieces.
static uint32_t payload_crc(const void *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    const Bytef *b = p;
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, k);
        b += k;
        n -= k;
    }
    return (uint32_t)c;
}

static void magic_str(char *out, size_t n, const unsigned char *p) {
    snprintf(out, n, "%02x %02x %02x %02x", p[0], p[1], p[2], p[3]);
}

// ---------------------------------------------------------------- encoders

void wire_encode_envelope(unsigned char *out, uint16_t type, uint32_t status, uint64_t id, uint32_t ntensors,
                          const char *text, size_t text_len) {
    memcpy(out, ENV_MAGIC, 4);
    put_u16(out + 4, WIRE_VERSION);
    put_u16(out + 6, type);
    put_u32(out + 8, status);
    put_u32(out + 12, ntensors);
    put_u64(out + 16, id);
    put_u32(out + 24, (uint32_t)text_len);
    put_u32(out + 28, 0);
    if (text_len) memcpy(out + WIRE_ENVELOPE_BYTES, text, text_len);
}

// Writes ndim as given (tests encode bad ones) but reads at most WIRE_MAX_NDIM dims.
void wire_encode_tensor_header(unsigned char *out, WireDtype dtype, int ndim, const int64_t *shape, size_t nbytes,
                               uint32_t crc) {
    memcpy(out, TEN_MAGIC, 4);
    put_u16(out + 4, WIRE_VERSION);
    out[6] = (unsigned char)dtype;
    out[7] = (unsigned char)ndim;
    for (int i = 0; i < WIRE_MAX_NDIM; i++)
        put_u64(out + 8 + 8 * i, (uint64_t)(i < ndim && shape ? shape[i] : 0));
    put_u64(out + 48, (uint64_t)nbytes);
    put_u32(out + 56, crc);
    put_u32(out + 60, 0);
}

// ---------------------------------------------------------------- parsers

int wire_parse_envelope(const void *buf, size_t len, WireMsg *m, char *err, size_t errn) {
    const unsigned char *p = buf;
    char mg[16];
    errf(err, errn, "%s", "");
    if (!p && len) {
        errf(err, errn, "envelope frame: NULL buffer of %zu bytes", len);
        return WIRE_E_INTERNAL;
    }
    if (len >= 4 && memcmp(p, ENV_MAGIC, 4) != 0) {
        magic_str(mg, sizeof mg, p);
        errf(err, errn, "bad magic in the envelope frame: %s, expected \"MDGE\"%s", mg,
             memcmp(p, TEN_MAGIC, 4) == 0 ? " (a tensor header where the envelope belongs)" : "");
        return WIRE_E_MAGIC;
    }
    if (len < WIRE_ENVELOPE_BYTES) {
        errf(err, errn, "truncated envelope frame: %zu bytes, the envelope header alone is %d", len,
             WIRE_ENVELOPE_BYTES);
        return WIRE_E_HEADER;
    }
    uint16_t version = get_u16(p + 4);
    if (version != WIRE_VERSION) {
        errf(err, errn, "envelope version %u, this build speaks version %d", version, WIRE_VERSION);
        return WIRE_E_VERSION;
    }
    m->type = get_u16(p + 6);
    m->id = get_u64(p + 16);
    uint32_t status = get_u32(p + 8), ntensors = get_u32(p + 12), text_len = get_u32(p + 24);
    uint32_t reserved = get_u32(p + 28);
    if (reserved != 0) {
        errf(err, errn, "envelope reserved field is 0x%08x, must be 0", reserved);
        return WIRE_E_HEADER;
    }
    if (ntensors > WIRE_MAX_TENSORS) {
        errf(err, errn, "envelope ntensors %u is more than %d", ntensors, WIRE_MAX_TENSORS);
        return WIRE_E_HEADER;
    }
    if (text_len > WIRE_MAX_TEXT) {
        errf(err, errn, "envelope text_len %u is more than %d", text_len, WIRE_MAX_TEXT);
        return WIRE_E_HEADER;
    }
    size_t have = len - WIRE_ENVELOPE_BYTES;
    if (text_len > have) {
        errf(err, errn, "envelope text_len %u goes beyond the frame (%zu bytes of text)", text_len, have);
        return WIRE_E_HEADER;
    }
    if (text_len < have) {
        errf(err, errn, "envelope frame has %zu bytes after its text (text_len %u)", have - text_len, text_len);
        return WIRE_E_HEADER;
    }
    m->status = status;
    m->ntensors = (int)ntensors;
    m->text_len = text_len;
    return WIRE_OK;
}

int wire_parse_tensor_header(const void *buf, size_t len, const WireLimits *lim, WireTensor *t, char *err,
                             size_t errn) {
    const unsigned char *p = buf;
    char mg[16], sh[160];
    memset(t, 0, sizeof *t);
    errf(err, errn, "%s", "");
    if (!p && len) {
        errf(err, errn, "tensor header frame: NULL buffer of %zu bytes", len);
        return WIRE_E_INTERNAL;
    }
    if (len >= 4 && memcmp(p, TEN_MAGIC, 4) != 0) {
        magic_str(mg, sizeof mg, p);
        errf(err, errn, "bad magic in the tensor header frame: %s, expected \"MDGT\"", mg);
        return WIRE_E_MAGIC;
    }
    if (len != WIRE_TENSOR_HEADER_BYTES) {
        errf(err, errn, "tensor header frame is %zu bytes, expected %d%s", len, WIRE_TENSOR_HEADER_BYTES,
             len < WIRE_TENSOR_HEADER_BYTES ? " (truncated)" : "");
        return WIRE_E_HEADER;
    }
    uint16_t version = get_u16(p + 4);
    if (version != WIRE_VERSION) {
        errf(err, errn, "tensor header version %u, this build speaks version %d", version, WIRE_VERSION);
        return WIRE_E_VERSION;
    }
    unsigned dtype = p[6], ndim = p[7];
    if (wire_dtype_size((WireDtype)dtype) == 0) {
        errf(err, errn, "tensor header dtype %u is unknown (1 F32, 2 U8, 3 I64)", dtype);
        return WIRE_E_HEADER;
    }
    if (ndim < 1 || ndim > WIRE_MAX_NDIM) {
        errf(err, errn, "tensor header ndim %u is not in 1..%d", ndim, WIRE_MAX_NDIM);
        return WIRE_E_HEADER;
    }
    int64_t shape[WIRE_MAX_NDIM];
    for (int i = 0; i < WIRE_MAX_NDIM; i++) {
        shape[i] = (int64_t)get_u64(p + 8 + 8 * i);
        if ((unsigned)i < ndim && shape[i] < 1) {
            errf(err, errn, "tensor header shape[%d] = %" PRId64 ", every dimension must be >= 1", i, shape[i]);
            return WIRE_E_HEADER;
        }
        if ((unsigned)i >= ndim && shape[i] != 0) {
            errf(err, errn, "tensor header shape[%d] = %" PRId64 " beyond ndim %u, must be 0", i, shape[i], ndim);
            return WIRE_E_HEADER;
        }
    }
    uint32_t reserved = get_u32(p + 60);
    if (reserved != 0) {
        errf(err, errn, "tensor header reserved field is 0x%08x, must be 0", reserved);
        return WIRE_E_HEADER;
    }
    uint64_t nbytes = get_u64(p + 48), want;
    shape_str(sh, sizeof sh, (int)ndim, shape);
    if (shape_bytes((WireDtype)dtype, (int)ndim, shape, &want) != 0) {
        errf(err, errn, "tensor header shape %s of %s overflows 64 bits of bytes", sh, dtype_name(dtype));
        return WIRE_E_SIZE;
    }
    if (nbytes != want) {
        errf(err, errn, "tensor header nbytes %" PRIu64 " does not match shape %s of %s (%" PRIu64 " bytes)", nbytes,
             sh, dtype_name(dtype), want);
        return WIRE_E_SIZE;
    }
    if (lim && nbytes > lim->max_payload) {
        errf(err, errn, "tensor of %" PRIu64 " bytes (shape %s) is over the cap of %zu bytes", nbytes, sh,
             lim->max_payload);
        return WIRE_E_CAP;
    }
    t->dtype = (WireDtype)dtype;
    t->ndim = (int)ndim;
    memcpy(t->shape, shape, sizeof shape);
    t->nbytes = (size_t)nbytes;
    t->crc = get_u32(p + 56);
    t->data = NULL;
    return WIRE_OK;
}

int wire_check_payload(const WireTensor *t, const void *payload, size_t len, uint32_t crc, char *err,
                       size_t errn) {
    errf(err, errn, "%s", "");
    if (len != t->nbytes) {
        errf(err, errn, "payload frame is %zu bytes, the header's nbytes says %zu", len, t->nbytes);
        return WIRE_E_SIZE;
    }
    if (!payload && len) {
        errf(err, errn, "payload frame: NULL buffer of %zu bytes", len);
        return WIRE_E_INTERNAL;
    }
    uint32_t got = payload_crc(payload, len);
    if (got != crc) {
        errf(err, errn, "payload CRC mismatch: the payload's CRC-32 is 0x%08x, the header says 0x%08x", got, crc);
        return WIRE_E_CRC;
    }
    return WIRE_OK;
}

void wire_msg_free(WireMsg *m) {
    if (!m) return;
    free(m->text);
    for (int i = 0; i < WIRE_MAX_TENSORS; i++) free(m->t[i].data);
    memset(m, 0, sizeof *m);
}

int wire_parse_frames(const void *const *frames, const size_t *lens, int nframes, const WireLimits *lim,
                      WireMsg *m, char *err, size_t errn) {
    memset(m, 0, sizeof *m);
    errf(err, errn, "%s", "");
    if (nframes < 1 || !frames || !lens) {
        errf(err, errn, "empty message: no envelope frame");
        return WIRE_E_FRAMES;
    }
    int st = wire_parse_envelope(frames[0], lens[0], m, err, errn);
    if (st != WIRE_OK) {
        m->ntensors = 0;
        m->text_len = 0;
        return st;
    }
    int n = m->ntensors;
    m->ntensors = 0;   // no tensor is m's until every check has passed
    if (nframes != 1 + 2 * n) {
        errf(err, errn, "message has %d frames; its envelope announces %d tensor%s, so %d frames", nframes, n,
             n == 1 ? "" : "s", 1 + 2 * n);
        return WIRE_E_FRAMES;
    }
    WireTensor t[WIRE_MAX_TENSORS];
    char prefix[48];
    for (int i = 0; i < n; i++) {
        st = wire_parse_tensor_header(frames[1 + 2 * i], lens[1 + 2 * i], lim, &t[i], err, errn);
        if (st == WIRE_OK) st = wire_check_payload(&t[i], frames[2 + 2 * i], lens[2 + 2 * i], t[i].crc, err, errn);
        if (st != WIRE_OK) {
            snprintf(prefix, sizeof prefix, "tensor %d of %d: ", i, n);
            errprefix(err, errn, prefix);
            return st;
        }
    }
    // Everything checked: now the copies, once each.
    m->text = malloc(m->text_len + 1);
    if (!m->text) goto oom;
    if (m->text_len) memcpy(m->text, (const unsigned char *)frames[0] + WIRE_ENVELOPE_BYTES, m->text_len);
    m->text[m->text_len] = '\0';
    for (int i = 0; i < n; i++) {
        t[i].data = malloc(t[i].nbytes);
        if (!t[i].data) {
            for (int j = 0; j < i; j++) free(t[j].data);
            goto oom;
        }
        memcpy(t[i].data, frames[2 + 2 * i], t[i].nbytes);
    }
    memcpy(m->t, t, (size_t)n * sizeof t[0]);
    m->ntensors = n;
    return WIRE_OK;
oom:
    free(m->text);
    m->text = NULL;
    errf(err, errn, "out of memory copying a message of %d tensors", n);
    return WIRE_E_INTERNAL;
}

// ---------------------------------------------------------------- receive

static int socket_type(void *sock, int *type) {
    size_t sz = sizeof *type;
    return zmq_getsockopt(sock, ZMQ_TYPE, type, &sz);
}

int wire_recv(void *sock, int router, const WireLimits *lim, WireMsg *m, char *err, size_t errn) {
    memset(m, 0, sizeof *m);
    errf(err, errn, "%s", "");
    int type;
    if (!sock || socket_type(sock, &type) != 0) {
        int e = sock ? errno : EINVAL;
        MDGAN_ERR("wire_recv: not a usable socket: %s", zmq_strerror(e));
        errno = e;
        return -1;
    }
    if (!!router != (type == ZMQ_ROUTER)) {
        MDGAN_ERR("wire_recv: router=%d on a socket of type %d (ROUTER is %d)", router, type, ZMQ_ROUTER);
        errno = EINVAL;
        return -1;
    }
    // Keep the frames a well-formed message can have; receive any others into a
    // scratch message and drop them, so the whole message leaves the socket.
    zmq_msg_t f[WIRE_MAX_FRAMES];
    int nkept = 0, total = 0, rc = -1;
    for (;;) {
        zmq_msg_t scratch, *dst = nkept < WIRE_MAX_FRAMES ? &f[nkept] : &scratch;
        if (zmq_msg_init(dst) != 0) {   // cannot fail in libzmq, checked all the same
            int e = errno;
            MDGAN_ERR("zmq_msg_init failed: %s", zmq_strerror(e));
            errno = e;
            goto out;
        }
        if (zmq_msg_recv(dst, sock, 0) < 0) {
            int e = errno;
            zmq_msg_close(dst);
            if (total > 0 && e == EINTR) continue;   // the rest of a message is there: finish it
            if (total == 0)
                MDGAN_ERR("receive failed: %s", zmq_strerror(e));
            else
                MDGAN_ERR("receive failed after frame %d of a message (the socket is unusable): %s", total,
                          zmq_strerror(e));
            errno = e;
            goto out;
        }
        int more = 0;
        size_t sz = sizeof more;
        if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) != 0) {
            int e = errno;
            zmq_msg_close(dst);
            MDGAN_ERR("zmq_getsockopt(ZMQ_RCVMORE) failed after frame %d: %s", total, zmq_strerror(e));
            errno = e;
            goto out;
        }
        total++;
        if (dst == &scratch)
            zmq_msg_close(&scratch);
        else
            nkept++;
        if (!more) break;
    }

    int base = router ? 1 : 0;
    if (router) {
        size_t rl = zmq_msg_size(&f[0]);
        if (rl == 0 || rl > WIRE_MAX_ROUTE) {
            errf(err, errn, "routing id frame of %zu bytes (1..%d expected)", rl, WIRE_MAX_ROUTE);
            rc = WIRE_E_FRAMES;
            goto out;
        }
        memcpy(m->route, zmq_msg_data(&f[0]), rl);
        m->route_len = rl;
    }
    unsigned char route[WIRE_MAX_ROUTE];
    size_t route_len = m->route_len;
    memcpy(route, m->route, route_len);
    if (total - base < 1) {
        errf(err, errn, "message has no envelope frame (only the routing id)");
        rc = WIRE_E_FRAMES;
    } else if (total > nkept) {
        char tmp[8];
        wire_parse_envelope(zmq_msg_data(&f[base]), zmq_msg_size(&f[base]), m, tmp, sizeof tmp);
        m->ntensors = 0;
        m->text_len = 0;
        errf(err, errn, "message has %d frames, more than the %d a message of %d tensors has", total - base,
             WIRE_MAX_FRAMES - 1, WIRE_MAX_TENSORS);
        rc = WIRE_E_FRAMES;
    } else {
        const void *ptr[WIRE_MAX_FRAMES];
        size_t len[WIRE_MAX_FRAMES];
        for (int i = base; i < nkept; i++) {
            ptr[i - base] = zmq_msg_data(&f[i]);
            len[i - base] = zmq_msg_size(&f[i]);
        }
        rc = wire_parse_frames(ptr, len, nkept - base, lim, m, err, errn);
    }
    memcpy(m->route, route, route_len);
    m->route_len = route_len;
out:
    for (int i = 0; i < nkept; i++) zmq_msg_close(&f[i]);
    return rc;
}

// ---------------------------------------------------------------- send

// An owned payload handed to zmq_msg_init_data. zmq calls its free function whenever
// it lets go of the frame: after the frame went out, when it drops or rolls back a
// queued frame, and from zmq_msg_close of a frame that was never sent. That last case
// is the trap (czmq issue 1748): closing an unsent frame would free the caller's
// buffer behind its back. So the free function does not decide alone: two references
// (zmq's and wire_send's) and a keep flag; wire_send sets keep once it knows how the
// send went, and whichever reference is released last frees the buffer, or not.
typedef struct {
    void *buf;
    atomic_int refs;   // 2 at creation: zmq's frame and wire_send
    atomic_int keep;   // 1: the buffer goes back to the caller; 0: free it
} WireHold;

static void hold_release(WireHold *h) {
    if (atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1) {
        if (!atomic_load_explicit(&h->keep, memory_order_acquire)) free(h->buf);
        free(h);
    }
}

static void hold_zmq_free(void *data, void *hint) {
    (void)data;
    hold_release(hint);
}

static int check_tensor(const WireTensor *t, int i) {
    char sh[160];
    if (wire_dtype_size(t->dtype) == 0) {
        MDGAN_ERR("wire_send: tensor %d has unknown dtype %d", i, (int)t->dtype);
        return -1;
    }
    if (t->ndim < 1 || t->ndim > WIRE_MAX_NDIM) {
        MDGAN_ERR("wire_send: tensor %d has ndim %d, not in 1..%d", i, t->ndim, WIRE_MAX_NDIM);
        return -1;
    }
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 1) {
            MDGAN_ERR("wire_send: tensor %d has shape[%d] = %" PRId64 ", must be >= 1", i, d, t->shape[d]);
            return -1;
        }
    uint64_t want;
    shape_str(sh, sizeof sh, t->ndim, t->shape);
    if (shape_bytes(t->dtype, t->ndim, t->shape, &want) != 0 || want != t->nbytes) {
        MDGAN_ERR("wire_send: tensor %d has nbytes %zu, shape %s of %s does not match", i, t->nbytes, sh,
                  dtype_name(t->dtype));
        return -1;
    }
    if (!t->data) {
        MDGAN_ERR("wire_send: tensor %d %s has no data", i, sh);
        return -1;
    }
    return 0;
}

static int send_impl(void *sock, const unsigned char *route, size_t route_len, uint16_t type, uint32_t status,
                     uint64_t id, const char *text, size_t text_len, const WireTensor *t, int n, void **owned[]) {
    int stype;
    if (!sock || socket_type(sock, &stype) != 0) {
        int e = sock ? errno : EINVAL;
        MDGAN_ERR("wire_send: not a usable socket: %s", zmq_strerror(e));
        errno = e;
        return -1;
    }
    errno = EINVAL;
    if ((stype == ZMQ_ROUTER) != (route != NULL)) {
        MDGAN_ERR("wire_send: %s", route ? "a routing id is only for a ROUTER socket" : "a ROUTER needs the peer's routing id");
        return -1;
    }
    if (route && (route_len < 1 || route_len > WIRE_MAX_ROUTE)) {
        MDGAN_ERR("wire_send: routing id of %zu bytes (1..%d)", route_len, WIRE_MAX_ROUTE);
        return -1;
    }
    if (n < 0 || n > WIRE_MAX_TENSORS || (n > 0 && !t)) {
        MDGAN_ERR("wire_send: %d tensors (0..%d)", n, WIRE_MAX_TENSORS);
        return -1;
    }
    if (text_len > WIRE_MAX_TEXT) {
        MDGAN_ERR("wire_send: text of %zu bytes is more than %d", text_len, WIRE_MAX_TEXT);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (check_tensor(&t[i], i) != 0) return -1;
        void *own = owned && owned[i] ? *owned[i] : NULL;
        if (own && own != t[i].data) {
            MDGAN_ERR("wire_send: owned buffer %d is not tensor %d's data", i, i);
            return -1;
        }
        for (int j = 0; own && j < i; j++)
            if (owned[j] && *owned[j] == own) {
                MDGAN_ERR("wire_send: tensors %d and %d hand over the same buffer", j, i);
                return -1;
            }
    }

    // Build every frame first: nothing is sent until nothing can fail but the send.
    zmq_msg_t f[WIRE_MAX_FRAMES];
    WireHold *hold[WIRE_MAX_TENSORS] = {0};
    int nf = 0, e = 0;
    if (route) {
        if (zmq_msg_init_size(&f[nf], route_len) != 0) goto build_fail;
        memcpy(zmq_msg_data(&f[nf]), route, route_len);
        nf++;
    }
    if (zmq_msg_init_size(&f[nf], WIRE_ENVELOPE_BYTES + text_len) != 0) goto build_fail;
    wire_encode_envelope(zmq_msg_data(&f[nf]), type, status, id, (uint32_t)n, text, text_len);
    nf++;
    for (int i = 0; i < n; i++) {
        if (zmq_msg_init_size(&f[nf], WIRE_TENSOR_HEADER_BYTES) != 0) goto build_fail;
        wire_encode_tensor_header(zmq_msg_data(&f[nf]), t[i].dtype, t[i].ndim, t[i].shape, t[i].nbytes,
                                  payload_crc(t[i].data, t[i].nbytes));
        nf++;
        if (owned && owned[i] && *owned[i]) {
            WireHold *h = malloc(sizeof *h);
            if (!h) {
                errno = ENOMEM;
                goto build_fail;
            }
            h->buf = t[i].data;
            atomic_init(&h->refs, 2);
            atomic_init(&h->keep, 1);
            if (zmq_msg_init_data(&f[nf], t[i].data, t[i].nbytes, hold_zmq_free, h) != 0) {
                free(h);   // zmq took nothing: its free function will never run
                goto build_fail;
            }
            hold[i] = h;
        } else {
            if (zmq_msg_init_size(&f[nf], t[i].nbytes) != 0) goto build_fail;
            memcpy(zmq_msg_data(&f[nf]), t[i].data, t[i].nbytes);
        }
        nf++;
    }

    int k = 0;
    for (; k < nf; k++) {
        int rc;
        do rc = zmq_msg_send(&f[k], sock, k + 1 < nf ? ZMQ_SNDMORE : 0);
        while (rc < 0 && errno == EINTR && k > 0);   // a message once begun is finished
        if (rc < 0) break;
    }
    if (k == nf) {
        for (int i = 0; i < n; i++)
            if (hold[i]) {
                atomic_store_explicit(&hold[i]->keep, 0, memory_order_release);
                hold_release(hold[i]);
                *owned[i] = NULL;
            }
        return 0;
    }

    // Frame k failed: it and the ones after it are still ours to close (an owned
    // payload among them comes back through hold_zmq_free with keep still 1).
    e = errno;
    for (int j = k; j < nf; j++) zmq_msg_close(&f[j]);
    if (k > 0) zmq_send(sock, NULL, 0, ZMQ_DONTWAIT);   // end the message (the last frame failed too); failure ignored
    int given = 0;
    for (int i = 0; i < n; i++) {
        if (!hold[i]) continue;
        // refs 1: zmq let go (never sent, rolled back): the caller keeps it. refs 2:
        // zmq still holds a queued frame and may read it: it is zmq's to free.
        if (atomic_load_explicit(&hold[i]->refs, memory_order_acquire) == 2) {
            atomic_store_explicit(&hold[i]->keep, 0, memory_order_release);
            *owned[i] = NULL;
            given++;
        }
        hold_release(hold[i]);
    }
    MDGAN_ERR("cannot send message type %u id %" PRIu64 " (%d tensors): frame %d of %d failed: %s%s", type, id, n,
              k + 1, nf, zmq_strerror(e),
              e == EHOSTUNREACH ? " (no peer with that routing id)"
              : e == EAGAIN     ? " (no peer, or its queue is full)"
                                : "");
    if (given) mdgan_errctx("%d owned buffer%s had been queued and stay%s with zmq", given, given == 1 ? "" : "s",
                            given == 1 ? "s" : "");
    errno = e;
    return -1;

build_fail:
    e = errno;
    for (int j = 0; j < nf; j++) zmq_msg_close(&f[j]);
    for (int i = 0; i < n; i++)
        if (hold[i]) hold_release(hold[i]);   // keep is 1: the caller's buffer stays
    MDGAN_ERR("cannot build message type %u id %" PRIu64 " (%d tensors): %s", type, id, n, zmq_strerror(e));
    errno = e;
    return -1;
}

int wire_send(void *sock, const unsigned char *route, size_t route_len, uint16_t type, uint32_t status,
              uint64_t id, const char *text, const WireTensor *t, int n, void **owned[]) {
    if (!text) text = "";
    return send_impl(sock, route, route_len, type, status, id, text, strlen(text), t, n, owned);
}

int wire_send_error(void *sock, const unsigned char *route, size_t route_len, uint16_t type, uint32_t status,
                    uint64_t id, const char *reason) {
    if (!reason) reason = "";
    size_t len = strlen(reason);
    if (len > WIRE_MAX_TEXT) len = WIRE_MAX_TEXT;   // an error reply goes out, cut if need be
    return send_impl(sock, route, route_len, type, status, id, reason, len, NULL, 0, NULL);
}

// ---------------------------------------------------------------- endpoints and security

int wire_endpoint(char *out, size_t n, const char *configured, const char *run_dir, const char *name) {
    if (!out || n == 0) {
        MDGAN_ERR("wire_endpoint: no output buffer");
        return -1;
    }
    out[0] = '\0';
    if (configured && configured[0]) {
        if (strlen(configured) >= n) {
            MDGAN_ERR("endpoint '%s' is longer than %zu bytes", configured, n - 1);
            return -1;
        }
        memcpy(out, configured, strlen(configured) + 1);
        return 0;
    }
    if (!run_dir || !run_dir[0]) {
        MDGAN_ERR("no endpoint configured and no run folder for an ipc:// socket");
        return -1;
    }
    if (!name || !name[0] || strchr(name, '/')) {
        MDGAN_ERR("socket name '%s' is empty or contains '/'", name ? name : "");
        return -1;
    }
    char dir[4096], path[4200];
    if ((size_t)snprintf(dir, sizeof dir, "%s/sockets", run_dir) >= sizeof dir) {
        MDGAN_ERR("run folder '%s' is too long for an ipc:// socket", run_dir);
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s.sock", dir, name);
    const size_t max_path = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    if (strlen(path) > max_path) {
        MDGAN_ERR("ipc socket path %s is %zu bytes, longer than the %zu a unix socket allows: use a shorter run.dir "
                  "or a tcp://127.0.0.1 endpoint (transport.data_endpoint / control_endpoint)",
                  path, strlen(path), max_path);
        return -1;
    }
    if (strlen(path) + 6 >= n) {
        MDGAN_ERR("endpoint ipc://%s does not fit %zu bytes", path, n);
        return -1;
    }
    // mkdir's mode is filtered by the umask, and an existing folder keeps its mode:
    // chmod states 0700 either way, so other users cannot reach the sockets.
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        MDGAN_ERR("cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(dir, &st) != 0) {
        MDGAN_ERR("cannot stat %s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        MDGAN_ERR("%s exists and is not a folder", dir);
        return -1;
    }
    if (chmod(dir, 0700) != 0) {
        MDGAN_ERR("cannot set mode 0700 on %s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(out, n, "ipc://%s", path);
    return 0;
}

// ipc://, inproc://, and tcp:// whose (destination) host is 127.x.x.x, localhost or [::1].
static int endpoint_is_local(const char *ep) {
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9)) return 1;
    if (strncmp(ep, "tcp://", 6) != 0) return 0;
    const char *host = ep + 6, *semi = strrchr(host, ';');   // "tcp://source;host:port"
    if (semi) host = semi + 1;
    const char *colon = strrchr(host, ':');
    if (!colon) return 0;
    size_t hl = (size_t)(colon - host);
    char h[64];
    if (hl == 0 || hl >= sizeof h) return 0;
    memcpy(h, host, hl);
    h[hl] = '\0';
    if (!strcmp(h, "[::1]") || !strcasecmp(h, "localhost")) return 1;
    struct in_addr a;
    if (inet_pton(AF_INET, h, &a) == 1) return (ntohl(a.s_addr) >> 24) == 127;
    return 0;
}

static int set_opt(void *sock, int opt, const char *name, const void *val, size_t len) {
    if (zmq_setsockopt(sock, opt, val, len) != 0) {
        MDGAN_ERR("zmq_setsockopt(%s) failed: %s", name, zmq_strerror(errno));
        return -1;
    }
    return 0;
}
#define SET_INT(sock, opt, v) set_opt(sock, opt, #opt, &(int){v}, sizeof(int))

static int z85_key_ok(const char *k, const char *what) {
    if (strlen(k) != 40) {
        MDGAN_ERR("%s is %zu characters, a CURVE key is 40 Z85 characters", what, strlen(k));
        return 0;
    }
    uint8_t bin[32];
    if (!zmq_z85_decode(bin, k)) {
        MDGAN_ERR("%s is not a Z85 CURVE key", what);
        return 0;
    }
    return 1;
}

int wire_socket_setup(void *sock, const char *endpoint, int server, int hwm, const char *curve_server_key,
                      const char *curve_secret_key) {
    if (!sock) {
        MDGAN_ERR("wire_socket_setup: no socket");
        return -1;
    }
    if (!endpoint || !endpoint[0]) {
        MDGAN_ERR("wire_socket_setup: empty endpoint");
        return -1;
    }
    if (hwm < 1) {
        MDGAN_ERR("%s: high-water mark %d, must be >= 1 (0 would leave the queue unbounded)", endpoint, hwm);
        return -1;
    }
    const char *pub = curve_server_key ? curve_server_key : "", *sec = curve_secret_key ? curve_secret_key : "";
    int curve = pub[0] || sec[0];
    if (!curve && !endpoint_is_local(endpoint)) {
        MDGAN_ERR("refusing endpoint %s without CURVE keys: unencrypted sockets may only use ipc:// or tcp:// on "
                  "127.x.x.x, localhost or [::1]; set transport.curve_server_key and transport.curve_secret_key",
                  endpoint);
        return -1;
    }
    if (SET_INT(sock, ZMQ_LINGER, 0) != 0 || SET_INT(sock, ZMQ_SNDHWM, hwm) != 0 ||
        SET_INT(sock, ZMQ_RCVHWM, hwm) != 0)
        goto fail;
    if (!curve) return 0;
    if (!zmq_has("curve")) {
        MDGAN_ERR("this libzmq has no CURVE support");
        goto fail;
    }
    if (server) {
        if (!sec[0]) {
            MDGAN_ERR("a CURVE server needs curve_secret_key");
            goto fail;
        }
        if (!z85_key_ok(sec, "curve_secret_key")) goto fail;
        if (pub[0]) {
            char derived[41];
            if (!z85_key_ok(pub, "curve_server_key")) goto fail;
            if (zmq_curve_public(derived, sec) != 0) {
                MDGAN_ERR("zmq_curve_public failed: %s", zmq_strerror(errno));
                goto fail;
            }
            if (strcmp(derived, pub) != 0) {
                MDGAN_ERR("curve_server_key is not the public key of curve_secret_key");
                goto fail;
            }
        }
        if (SET_INT(sock, ZMQ_CURVE_SERVER, 1) != 0 ||
            set_opt(sock, ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", sec, 40) != 0)
            goto fail;
    } else {
        if (!pub[0]) {
            MDGAN_ERR("a CURVE client needs curve_server_key");
            goto fail;
        }
        if (!z85_key_ok(pub, "curve_server_key")) goto fail;
        char my_pub[41], my_sec[41];
        if (zmq_curve_keypair(my_pub, my_sec) != 0) {
            MDGAN_ERR("zmq_curve_keypair failed: %s", zmq_strerror(errno));
            goto fail;
        }
        int rc = set_opt(sock, ZMQ_CURVE_SERVERKEY, "ZMQ_CURVE_SERVERKEY", pub, 40) != 0 ||
                 set_opt(sock, ZMQ_CURVE_PUBLICKEY, "ZMQ_CURVE_PUBLICKEY", my_pub, 40) != 0 ||
                 set_opt(sock, ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", my_sec, 40) != 0;
        explicit_bzero(my_sec, sizeof my_sec);
        if (rc) goto fail;
    }
    return 0;
fail:
    mdgan_errctx("socket for %s", endpoint);
    return -1;
}
