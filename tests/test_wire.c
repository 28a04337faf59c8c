// wire: the ZeroMQ tensor transport. First the parsers on frames in memory: the
// byte layout of both headers, a bit-exact round trip, and every malformed kind from
// one table (each must give its WireStatus and a reason naming the field, and leave
// the WireMsg owning nothing). Then real sockets, ROUTER <-> DEALER over ipc:// (in a
// fresh folder) and tcp://127.0.0.1 (ephemeral port): an echo server thread answers
// each malformed raw multipart message from the same table with wire_send_error and
// serves the next good request; zero-copy ownership when the send succeeds and when
// it really fails; CURVE; the refusal of a non-loopback tcp:// without keys;
// wire_endpoint's 0700 folder and its unix-socket path limit.
#include "testutil.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/un.h>
#include <time.h>
#include <zlib.h>
#include <zmq.h>

#include "mdgan/wire.h"

enum { T_ECHO = 7, T_QUIT = 99 };
static const char GOOD_TEXT[] = "{\"clip\":7}";
static const uint64_t GOOD_ID = 42;
#define CAP (1u << 20)   // the echo server's and the parse tests' payload cap

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

// ---------------------------------------------------------------- the good message

// f32 (2,3,4,5) with NaN, -0 and denormals among ordinary values; u8 (7,11) of every
// residue; i64 (3) at both ends of the range. Fresh malloc'd data each call.
static void good_tensors(WireTensor t[3]) {
    memset(t, 0, 3 * sizeof *t);
    t[0] = (WireTensor){.dtype = WIRE_F32, .ndim = 4, .shape = {2, 3, 4, 5}, .nbytes = 120 * 4};
    t[1] = (WireTensor){.dtype = WIRE_U8, .ndim = 2, .shape = {7, 11}, .nbytes = 77};
    t[2] = (WireTensor){.dtype = WIRE_I64, .ndim = 1, .shape = {3}, .nbytes = 24};
    float *f = malloc(t[0].nbytes);
    unsigned char *u = malloc(t[1].nbytes);
    int64_t *q = malloc(t[2].nbytes);
    assert_true(f && u && q);
    for (int i = 0; i < 120; i++) f[i] = (float)i * 0.37f - 5.0f;
    uint32_t bits[3] = {0x7fc00123u, 0x80000000u, 0x00000001u};   // NaN with payload, -0, denormal
    memcpy(&f[7], &bits[0], 4);
    memcpy(&f[8], &bits[1], 4);
    memcpy(&f[9], &bits[2], 4);
    for (int i = 0; i < 77; i++) u[i] = (unsigned char)(i * 13 + 255);
    q[0] = -1;
    q[1] = INT64_MIN;
    q[2] = INT64_MAX;
    t[0].data = f;
    t[1].data = u;
    t[2].data = q;
}

static void tensors_free(WireTensor *t, int n) {
    for (int i = 0; i < n; i++) free(t[i].data);
}

static uint32_t crc_of(const void *p, size_t n) { return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n); }

// ---------------------------------------------------------------- frames in memory

#define NF_MAX 40
typedef struct {
    unsigned char *f[NF_MAX];
    size_t len[NF_MAX];
    int n;
} Frames;

static void frames_add(Frames *F, const void *p, size_t n) {
    assert_true(F->n < NF_MAX);
    F->f[F->n] = malloc(n ? n : 1);
    assert_non_null(F->f[F->n]);
    if (n) memcpy(F->f[F->n], p, n);
    F->len[F->n++] = n;
}

static void frames_free(Frames *F) {
    for (int i = 0; i < F->n; i++) free(F->f[i]);
    memset(F, 0, sizeof *F);
}

// The good message as raw frames, made with the encoders.
static void frames_good(Frames *F) {
    memset(F, 0, sizeof *F);
    WireTensor t[3];
    good_tensors(t);
    size_t tl = strlen(GOOD_TEXT);
    unsigned char env[WIRE_ENVELOPE_BYTES + 64];
    wire_encode_envelope(env, T_ECHO, 0, GOOD_ID, 3, GOOD_TEXT, tl);
    frames_add(F, env, WIRE_ENVELOPE_BYTES + tl);
    for (int i = 0; i < 3; i++) {
        unsigned char h[WIRE_TENSOR_HEADER_BYTES];
        wire_encode_tensor_header(h, t[i].dtype, t[i].ndim, t[i].shape, t[i].nbytes, crc_of(t[i].data, t[i].nbytes));
        frames_add(F, h, sizeof h);
        frames_add(F, t[i].data, t[i].nbytes);
    }
    tensors_free(t, 3);
}

static void poke16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void poke32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> 8 * i);
}
static void poke64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> 8 * i);
}

// Frame index of tensor i's header and payload.
#define HDR(i) (1 + 2 * (i))
#define PAY(i) (2 + 2 * (i))

// ---- the malformed kinds: each mutates the good frames
static void mut_frames_none(Frames *F) {
    frames_free(F);
}
static void mut_frames_missing_payload(Frames *F) {
    free(F->f[--F->n]);
}
static void mut_frames_missing_tensor(Frames *F) {
    free(F->f[--F->n]);
    free(F->f[--F->n]);
}
static void mut_frames_extra(Frames *F) {
    frames_add(F, "x", 1);
}
static void mut_frames_30(Frames *F) {
    while (F->n < 30) frames_add(F, "junk", 4);
}
static void mut_env_empty(Frames *F) {
    F->len[0] = 0;
}
static void mut_env_magic(Frames *F) {
    F->f[0][3] = 'X';
}
static void mut_env_tensor_magic(Frames *F) {
    memcpy(F->f[0], "MDGT", 4);
}
static void mut_env_version(Frames *F) {
    poke16(F->f[0] + 4, WIRE_VERSION + 1);
}
static void mut_env_truncated(Frames *F) {
    F->len[0] = 20;
}
static void mut_env_reserved(Frames *F) {
    poke32(F->f[0] + 28, 1);
}
static void mut_env_ntensors(Frames *F) {
    poke32(F->f[0] + 12, WIRE_MAX_TENSORS + 1);
}
static void mut_env_text_beyond(Frames *F) {
    poke32(F->f[0] + 24, (uint32_t)strlen(GOOD_TEXT) + 1);
}
static void mut_env_text_trailing(Frames *F) {
    poke32(F->f[0] + 24, (uint32_t)strlen(GOOD_TEXT) - 1);
}
static void mut_env_text_huge(Frames *F) {
    poke32(F->f[0] + 24, WIRE_MAX_TEXT + 1);
}
static void mut_hdr_magic(Frames *F) {
    F->f[HDR(1)][0] = 'm';
}
static void mut_hdr_version(Frames *F) {
    poke16(F->f[HDR(1)] + 4, 0);
}
static void mut_hdr_dtype(Frames *F) {
    F->f[HDR(1)][6] = 9;
}
static void mut_hdr_ndim0(Frames *F) {
    F->f[HDR(1)][7] = 0;
}
static void mut_hdr_ndim6(Frames *F) {
    F->f[HDR(1)][7] = 6;
}
static void mut_hdr_shape_zero(Frames *F) {
    poke64(F->f[HDR(1)] + 8 + 8 * 1, 0);
}
static void mut_hdr_shape_negative(Frames *F) {
    poke64(F->f[HDR(1)] + 8, (uint64_t)-7);
}
static void mut_hdr_shape_unused(Frames *F) {
    poke64(F->f[HDR(1)] + 8 + 8 * 4, 1);   // tensor 1 has ndim 2: shape[4] must be 0
}
static void mut_hdr_reserved(Frames *F) {
    poke32(F->f[HDR(1)] + 60, 5);
}
static void mut_hdr_truncated(Frames *F) {
    F->len[HDR(1)] = WIRE_TENSOR_HEADER_BYTES - 1;
}
static void mut_hdr_long(Frames *F) {
    unsigned char h[WIRE_TENSOR_HEADER_BYTES + 1] = {0};
    memcpy(h, F->f[HDR(1)], WIRE_TENSOR_HEADER_BYTES);
    free(F->f[HDR(1)]);
    F->f[HDR(1)] = malloc(sizeof h);
    assert_non_null(F->f[HDR(1)]);
    memcpy(F->f[HDR(1)], h, sizeof h);
    F->len[HDR(1)] = sizeof h;
}
static void mut_hdr_nbytes(Frames *F) {
    poke64(F->f[HDR(0)] + 48, 120 * 4 + 4);
}
static void mut_hdr_overflow(Frames *F) {
    poke64(F->f[HDR(0)] + 8, 1ull << 40);
    poke64(F->f[HDR(0)] + 16, 1ull << 40);
}
static void mut_payload_short(Frames *F) {
    F->len[PAY(2)]--;
}
static void mut_payload_crc(Frames *F) {
    F->f[PAY(0)][5] ^= 0x10;
}
static void mut_hdr_crc(Frames *F) {
    poke32(F->f[HDR(2)] + 56, 0xdeadbeef);
}
// tensor 0 replaced by a valid F32 (300000) of 1.2 MB: over CAP (1 MiB)
static void mut_over_cap(Frames *F) {
    size_t nb = 300000 * 4;
    float *big = calloc(300000, 4);
    assert_non_null(big);
    unsigned char h[WIRE_TENSOR_HEADER_BYTES];
    wire_encode_tensor_header(h, WIRE_F32, 1, (int64_t[]){300000}, nb, crc_of(big, nb));
    memcpy(F->f[HDR(0)], h, sizeof h);
    free(F->f[PAY(0)]);
    F->f[PAY(0)] = (unsigned char *)big;
    F->len[PAY(0)] = nb;
}

// name, status, words the reason must contain, envelope parsed (the reply carries
// the request's id), also sent raw over the socket.
#define BAD_CASES(X)                                                                   \
    X(frames_none, WIRE_E_FRAMES, "no envelope", NULL, 0, 0)                           \
    X(frames_missing_payload, WIRE_E_FRAMES, "6 frames", "3 tensors", 1, 1)            \
    X(frames_missing_tensor, WIRE_E_FRAMES, "5 frames", "7 frames", 1, 1)              \
    X(frames_extra, WIRE_E_FRAMES, "8 frames", "3 tensors", 1, 1)                      \
    X(frames_30, WIRE_E_FRAMES, "30 frames", NULL, 1, 1)                               \
    X(env_empty, WIRE_E_HEADER, "truncated envelope", "0 bytes", 0, 1)                 \
    X(env_magic, WIRE_E_MAGIC, "magic", "envelope", 0, 1)                              \
    X(env_tensor_magic, WIRE_E_MAGIC, "magic", "tensor header where", 0, 1)            \
    X(env_version, WIRE_E_VERSION, "envelope version 2", NULL, 0, 1)                   \
    X(env_truncated, WIRE_E_HEADER, "truncated envelope", "20 bytes", 0, 1)            \
    X(env_reserved, WIRE_E_HEADER, "envelope reserved", NULL, 1, 1)                    \
    X(env_ntensors, WIRE_E_HEADER, "ntensors 9", NULL, 1, 1)                           \
    X(env_text_beyond, WIRE_E_HEADER, "text_len 11 goes beyond", NULL, 1, 1)           \
    X(env_text_trailing, WIRE_E_HEADER, "text_len 9", "after its text", 1, 1)          \
    X(env_text_huge, WIRE_E_HEADER, "text_len 65537", NULL, 1, 1)                      \
    X(hdr_magic, WIRE_E_MAGIC, "magic in the tensor header", "tensor 1", 1, 1)         \
    X(hdr_version, WIRE_E_VERSION, "tensor header version 0", "tensor 1", 1, 1)        \
    X(hdr_dtype, WIRE_E_HEADER, "dtype 9", "tensor 1", 1, 1)                           \
    X(hdr_ndim0, WIRE_E_HEADER, "ndim 0", "tensor 1", 1, 1)                            \
    X(hdr_ndim6, WIRE_E_HEADER, "ndim 6", "tensor 1", 1, 1)                            \
    X(hdr_shape_zero, WIRE_E_HEADER, "shape[1] = 0", "tensor 1", 1, 1)                 \
    X(hdr_shape_negative, WIRE_E_HEADER, "shape[0] = -7", "tensor 1", 1, 1)            \
    X(hdr_shape_unused, WIRE_E_HEADER, "shape[4] = 1 beyond ndim 2", "tensor 1", 1, 1) \
    X(hdr_reserved, WIRE_E_HEADER, "tensor header reserved", "tensor 1", 1, 1)         \
    X(hdr_truncated, WIRE_E_HEADER, "63 bytes, expected 64 (truncated)", "tensor 1", 1, 1) \
    X(hdr_long, WIRE_E_HEADER, "65 bytes, expected 64", "tensor 1", 1, 1)              \
    X(hdr_nbytes, WIRE_E_SIZE, "nbytes 484 does not match shape (2, 3, 4, 5)", "tensor 0", 1, 1) \
    X(hdr_overflow, WIRE_E_SIZE, "overflows", "tensor 0", 1, 1)                        \
    X(payload_short, WIRE_E_SIZE, "payload frame is 23 bytes", "tensor 2", 1, 1)       \
    X(payload_crc, WIRE_E_CRC, "CRC mismatch", "tensor 0", 1, 1)                       \
    X(hdr_crc, WIRE_E_CRC, "header says 0xdeadbeef", "tensor 2", 1, 1)                 \
    X(over_cap, WIRE_E_CAP, "over the cap of 1048576", "tensor 0", 1, 1)

typedef struct {
    const char *name;
    void (*mutate)(Frames *);
    int status;
    const char *needle, *needle2;
    int env_ok, over_socket;
} BadCase;

#define AS_ENTRY(name, st, n1, n2, env, sock) {#name, mut_##name, st, n1, n2, env, sock},
static const BadCase bad_cases[] = {BAD_CASES(AS_ENTRY)};
#define NBAD ((int)(sizeof bad_cases / sizeof bad_cases[0]))

static void expect_reason(const char *what, const char *reason, const BadCase *c) {
    printf("    %-24s %-20s %s\n", what, wire_status_name((uint32_t)c->status), reason);
    if (!strstr(reason, c->needle)) fail_msg("%s: reason '%s' lacks '%s'", c->name, reason, c->needle);
    if (c->needle2 && !strstr(reason, c->needle2)) fail_msg("%s: reason '%s' lacks '%s'", c->name, reason, c->needle2);
    assert_int_equal(count_lines(reason), 0);
}

static int parse(const Frames *F, size_t cap, WireMsg *m, char *err, size_t errn) {
    WireLimits lim = {.max_payload = cap};
    return wire_parse_frames((const void *const *)F->f, F->len, F->n, &lim, m, err, errn);
}

// ---------------------------------------------------------------- parse-level tests

// The byte layout of the spec, field by field (little-endian at the documented offsets).
static void test_encode_layout(void **state) {
    (void)state;
    unsigned char e[WIRE_ENVELOPE_BYTES + 3];
    wire_encode_envelope(e, 0x0102, 0x0a0b0c0d, 0x1122334455667788ull, 5, "abc", 3);
    static const unsigned char want_env[] = {'M', 'D', 'G', 'E', 1, 0, 0x02, 0x01, 0x0d, 0x0c, 0x0b, 0x0a,
                                             5,   0,   0,   0,   0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
                                             3,   0,   0,   0,   0,    0,    0,    0,    'a',  'b',  'c'};
    assert_memory_equal(e, want_env, sizeof want_env);
    unsigned char h[WIRE_TENSOR_HEADER_BYTES];
    wire_encode_tensor_header(h, WIRE_I64, 2, (int64_t[]){3, 0x0102030405ll}, 0xa1b2c3d4e5ull, 0xcafef00d);
    static const unsigned char want_h[WIRE_TENSOR_HEADER_BYTES] = {
        'M', 'D', 'G', 'T', 1, 0, 3, 2,                 // magic, version, dtype, ndim
        3, 0, 0, 0, 0, 0, 0, 0,                         // shape[0]
        0x05, 0x04, 0x03, 0x02, 0x01, 0, 0, 0,          // shape[1]
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   // shape[2..4]
        0xe5, 0xd4, 0xc3, 0xb2, 0xa1, 0, 0, 0,          // nbytes
        0x0d, 0xf0, 0xfe, 0xca, 0, 0, 0, 0};            // crc, reserved
    assert_memory_equal(h, want_h, sizeof want_h);
    assert_int_equal(wire_dtype_size(WIRE_F32), 4);
    assert_int_equal(wire_dtype_size(WIRE_U8), 1);
    assert_int_equal(wire_dtype_size(WIRE_I64), 8);
    assert_int_equal(wire_dtype_size((WireDtype)0), 0);
    assert_int_equal(wire_dtype_size((WireDtype)4), 0);
}

// The good frames parse; fields and data come back bit-exact and owned by the message.
static void test_parse_roundtrip(void **state) {
    (void)state;
    Frames F;
    frames_good(&F);
    WireMsg m;
    char err[256];
    int st = parse(&F, CAP, &m, err, sizeof err);
    if (st != WIRE_OK) fail_msg("good message rejected: %s", err);
    assert_string_equal(err, "");
    assert_int_equal(m.type, T_ECHO);
    assert_int_equal(m.status, 0);
    assert_int_equal(m.id, GOOD_ID);
    assert_int_equal(m.text_len, strlen(GOOD_TEXT));
    assert_string_equal(m.text, GOOD_TEXT);
    assert_int_equal(m.ntensors, 3);
    WireTensor ref[3];
    good_tensors(ref);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(m.t[i].dtype, ref[i].dtype);
        assert_int_equal(m.t[i].ndim, ref[i].ndim);
        assert_memory_equal(m.t[i].shape, ref[i].shape, sizeof ref[i].shape);
        assert_int_equal(m.t[i].nbytes, ref[i].nbytes);
        assert_int_equal(m.t[i].crc, crc_of(ref[i].data, ref[i].nbytes));
        assert_memory_equal(m.t[i].data, ref[i].data, ref[i].nbytes);
        // a copy the message owns, not a pointer into the frames
        assert_true((unsigned char *)m.t[i].data != F.f[PAY(i)]);
    }
    frames_free(&F);   // the message outlives its frames
    assert_memory_equal(m.t[0].data, ref[0].data, ref[0].nbytes);
    tensors_free(ref, 3);
    wire_msg_free(&m);
    assert_null(m.text);
    assert_int_equal(m.ntensors, 0);
    wire_msg_free(&m);     // twice is fine ({0} after the first)
    wire_msg_free(NULL);

    // no text and no tensors: text is an owned ""
    unsigned char e[WIRE_ENVELOPE_BYTES];
    wire_encode_envelope(e, 3, WIRE_E_CRC, 9, 0, NULL, 0);
    const void *fr[1] = {e};
    size_t ln[1] = {sizeof e};
    assert_int_equal(wire_parse_frames(fr, ln, 1, NULL, &m, err, sizeof err), WIRE_OK);
    assert_non_null(m.text);
    assert_string_equal(m.text, "");
    assert_int_equal(m.status, WIRE_E_CRC);
    assert_int_equal(m.ntensors, 0);
    wire_msg_free(&m);
}

// The single-frame parsers on their own, as the fuzz target runs them.
static void test_single_frame_parsers(void **state) {
    (void)state;
    Frames F;
    frames_good(&F);
    WireMsg m;
    memset(&m, 0, sizeof m);
    char err[256];
    assert_int_equal(wire_parse_envelope(F.f[0], F.len[0], &m, err, sizeof err), WIRE_OK);
    assert_int_equal(m.ntensors, 3);
    assert_int_equal(m.text_len, strlen(GOOD_TEXT));
    assert_null(m.text);   // allocates nothing
    WireTensor t;
    WireLimits lim = {.max_payload = CAP};
    assert_int_equal(wire_parse_tensor_header(F.f[HDR(0)], F.len[HDR(0)], &lim, &t, err, sizeof err), WIRE_OK);
    assert_int_equal(t.nbytes, 480);
    assert_null(t.data);
    assert_int_equal(wire_check_payload(&t, F.f[PAY(0)], F.len[PAY(0)], t.crc, err, sizeof err), WIRE_OK);
    assert_int_equal(wire_check_payload(&t, F.f[PAY(0)], 479, t.crc, err, sizeof err), WIRE_E_SIZE);
    printf("    %s\n", err);
    assert_non_null(strstr(err, "479"));
    assert_int_equal(wire_check_payload(&t, F.f[PAY(0)], 480, t.crc ^ 1, err, sizeof err), WIRE_E_CRC);
    printf("    %s\n", err);
    // the envelope parser on a header frame and the other way round
    assert_int_equal(wire_parse_envelope(F.f[HDR(0)], F.len[HDR(0)], &m, err, sizeof err), WIRE_E_MAGIC);
    assert_int_equal(wire_parse_tensor_header(F.f[0], F.len[0], &lim, &t, err, sizeof err), WIRE_E_MAGIC);
    // failure zeroes the tensor
    assert_int_equal(t.nbytes, 0);
    assert_int_equal(t.ndim, 0);
    // the cap is inclusive: exactly the cap passes, one byte less fails
    lim.max_payload = 480;
    assert_int_equal(wire_parse_tensor_header(F.f[HDR(0)], F.len[HDR(0)], &lim, &t, err, sizeof err), WIRE_OK);
    lim.max_payload = 479;
    assert_int_equal(wire_parse_tensor_header(F.f[HDR(0)], F.len[HDR(0)], &lim, &t, err, sizeof err), WIRE_E_CAP);
    // a short frame is never read past its end (ASan would see it): 0..63 bytes
    for (size_t n = 0; n < WIRE_TENSOR_HEADER_BYTES; n++) {
        unsigned char *p = malloc(n ? n : 1);
        assert_non_null(p);
        memcpy(p, F.f[HDR(0)], n);
        assert_int_not_equal(wire_parse_tensor_header(n ? p : NULL, n, &lim, &t, err, sizeof err), WIRE_OK);
        if (n < WIRE_ENVELOPE_BYTES) {
            memcpy(p, F.f[0], n);
            assert_int_not_equal(wire_parse_envelope(n ? p : NULL, n, &m, err, sizeof err), WIRE_OK);
        }
        free(p);
    }
    frames_free(&F);
}

// Every malformed kind of the table: its status, a reason naming the field, nothing
// owned by the message, and the request's id kept once the envelope parsed.
static void test_parse_malformed(void **state) {
    (void)state;
    for (int i = 0; i < NBAD; i++) {
        const BadCase *c = &bad_cases[i];
        Frames F;
        frames_good(&F);
        c->mutate(&F);
        WireMsg m;
        char err[256];
        int st = parse(&F, CAP, &m, err, sizeof err);
        if (st != c->status)
            fail_msg("%s: status %d (%s), expected %d (%s): %s", c->name, st, wire_status_name((uint32_t)st),
                     c->status, wire_status_name((uint32_t)c->status), err);
        expect_reason(c->name, err, c);
        assert_null(m.text);
        assert_int_equal(m.ntensors, 0);
        for (int k = 0; k < WIRE_MAX_TENSORS; k++) assert_null(m.t[k].data);
        if (c->env_ok) {
            assert_int_equal(m.id, GOOD_ID);
            assert_int_equal(m.type, T_ECHO);
        }
        wire_msg_free(&m);
        frames_free(&F);
    }
}

// A reason is cut to the buffer, never written past it; no buffer at all is fine.
static void test_err_buffer_bounds(void **state) {
    (void)state;
    Frames F;
    frames_good(&F);
    mut_hdr_nbytes(&F);
    WireMsg m;
    char err[16];
    memset(err, 'Z', sizeof err);
    assert_int_equal(parse(&F, CAP, &m, err, 8), WIRE_E_SIZE);
    assert_int_equal(strlen(err), 7);
    for (size_t i = 8; i < sizeof err; i++) assert_int_equal(err[i], 'Z');
    assert_int_equal(parse(&F, CAP, &m, NULL, 0), WIRE_E_SIZE);
    frames_free(&F);
}

static void test_status_names(void **state) {
    (void)state;
    for (uint32_t s = WIRE_OK; s <= WIRE_E_INTERNAL; s++) {
        const char *n = wire_status_name(s);
        assert_non_null(n);
        assert_string_not_equal(n, "unknown status");
        for (uint32_t r = WIRE_OK; r < s; r++) assert_string_not_equal(n, wire_status_name(r));
    }
    assert_string_equal(wire_status_name(WIRE_E_CRC), "CRC mismatch");
    assert_string_equal(wire_status_name(12), "unknown status");
    assert_string_equal(wire_status_name(0xffffffffu), "unknown status");
}

// ---------------------------------------------------------------- sockets

static void *ctx_new(void) {
    void *ctx = zmq_ctx_new();
    assert_non_null(ctx);
    return ctx;
}

static void set_int(void *s, int opt, int v) {
    if (zmq_setsockopt(s, opt, &v, sizeof v) != 0) fail_msg("zmq_setsockopt(%d): %s", opt, zmq_strerror(errno));
}

static void last_endpoint(void *s, char *out, size_t n) {
    size_t sz = n;
    if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, out, &sz) != 0) fail_msg("ZMQ_LAST_ENDPOINT: %s", zmq_strerror(errno));
}

// The echo server: a ROUTER served from a thread. It answers every malformed message
// with wire_send_error, echoes a good one (handing the received buffers back to zmq
// without a copy), and stops on T_QUIT or a 10 s silence.
typedef struct {
    void *sock;
    pthread_t th;
    WireLimits lim;
    int served, errors, running;
    int last_error;   // WireStatus of the last malformed request
    char fail[512];
    char ep[512];     // the bound endpoint (ephemeral port resolved)
} Echo;

static void *echo_main(void *arg) {
    Echo *e = arg;
    for (;;) {
        WireMsg m;
        char err[512];
        int st = wire_recv(e->sock, 1, &e->lim, &m, err, sizeof err);
        if (st < 0) {
            snprintf(e->fail, sizeof e->fail, "server receive: %s", mdgan_errmsg());
            break;
        }
        if (st != WIRE_OK) {
            e->errors++;
            e->last_error = st;
            int rc = wire_send_error(e->sock, m.route, m.route_len, m.type, (uint32_t)st, m.id, err);
            wire_msg_free(&m);
            if (rc != 0) {
                snprintf(e->fail, sizeof e->fail, "server error reply: %s", mdgan_errmsg());
                break;
            }
            continue;
        }
        if (m.type == T_QUIT) {
            int rc = wire_send(e->sock, m.route, m.route_len, T_QUIT, 0, m.id, "bye", NULL, 0, NULL);
            if (rc != 0) snprintf(e->fail, sizeof e->fail, "server quit reply: %s", mdgan_errmsg());
            wire_msg_free(&m);
            break;
        }
        void **own[WIRE_MAX_TENSORS];
        for (int i = 0; i < m.ntensors; i++) own[i] = &m.t[i].data;
        int rc = wire_send(e->sock, m.route, m.route_len, m.type, 0, m.id, m.text, m.t, m.ntensors, own);
        if (rc != 0) {
            snprintf(e->fail, sizeof e->fail, "server echo: %s", mdgan_errmsg());
            wire_msg_free(&m);
            break;
        }
        for (int i = 0; i < m.ntensors; i++)
            if (m.t[i].data) {
                snprintf(e->fail, sizeof e->fail, "server echo: owned buffer %d not handed over", i);
                break;
            }
        e->served++;
        wire_msg_free(&m);
    }
    return NULL;
}

static void echo_start(Echo *e, void *ctx, const char *bind_ep, size_t cap, const char *pub, const char *sec) {
    memset(e, 0, sizeof *e);
    e->lim.max_payload = cap;
    e->sock = zmq_socket(ctx, ZMQ_ROUTER);
    assert_non_null(e->sock);
    if (wire_socket_setup(e->sock, bind_ep, 1, 8, pub, sec) != 0) fail_msg("server setup: %s", mdgan_errmsg());
    set_int(e->sock, ZMQ_RCVTIMEO, 10000);
    if (zmq_bind(e->sock, bind_ep) != 0) fail_msg("bind %s: %s", bind_ep, zmq_strerror(errno));
    last_endpoint(e->sock, e->ep, sizeof e->ep);
    // from here on the socket is the thread's (pthread_create is the memory barrier)
    assert_int_equal(pthread_create(&e->th, NULL, echo_main, e), 0);
    e->running = 1;
}

static void *client_new(void *ctx, const char *ep, const char *pub, int rcvtimeo_ms) {
    void *c = zmq_socket(ctx, ZMQ_DEALER);
    assert_non_null(c);
    if (wire_socket_setup(c, ep, 0, 8, pub, "") != 0) fail_msg("client setup: %s", mdgan_errmsg());
    set_int(c, ZMQ_RCVTIMEO, rcvtimeo_ms);
    if (zmq_connect(c, ep) != 0) fail_msg("connect %s: %s", ep, zmq_strerror(errno));
    return c;
}

// Sends T_QUIT from cli, waits for the server's "bye", joins the thread and closes
// the server's socket; fails on anything the server thread reported.
static void echo_stop(Echo *e, void *cli) {
    WireMsg m;
    char err[256];
    if (wire_send(cli, NULL, 0, T_QUIT, 0, 1, "", NULL, 0, NULL) != 0) fail_msg("quit: %s", mdgan_errmsg());
    int st = wire_recv(cli, 0, NULL, &m, err, sizeof err);
    if (st != WIRE_OK) fail_msg("quit reply: %d %s %s", st, err, mdgan_errmsg());
    assert_int_equal(m.type, T_QUIT);
    assert_string_equal(m.text, "bye");
    wire_msg_free(&m);
    assert_int_equal(pthread_join(e->th, NULL), 0);
    e->running = 0;
    assert_int_equal(zmq_close(e->sock), 0);
    if (e->fail[0]) fail_msg("%s", e->fail);
}

// One good request (tensors owned by the send where mask has their bit) and its echo,
// bit-exact.
static void roundtrip(void *cli, uint64_t id, unsigned mask) {
    WireTensor t[3], ref[3];
    good_tensors(t);
    good_tensors(ref);
    void **own[3];
    for (int i = 0; i < 3; i++) own[i] = (mask >> i & 1) ? &t[i].data : NULL;
    if (wire_send(cli, NULL, 0, T_ECHO, 0, id, GOOD_TEXT, t, 3, own) != 0) fail_msg("send: %s", mdgan_errmsg());
    for (int i = 0; i < 3; i++) {
        if (mask >> i & 1)
            assert_null(t[i].data);   // handed to zmq, which frees it
        else
            assert_memory_equal(t[i].data, ref[i].data, ref[i].nbytes);   // borrowed, untouched
    }
    WireMsg m;
    char err[256];
    WireLimits lim = {.max_payload = CAP};
    int st = wire_recv(cli, 0, &lim, &m, err, sizeof err);
    if (st != WIRE_OK) fail_msg("echo of request %llu: %d %s %s", (unsigned long long)id, st, err, mdgan_errmsg());
    assert_int_equal(m.type, T_ECHO);
    assert_int_equal(m.status, 0);
    assert_int_equal(m.id, id);
    assert_string_equal(m.text, GOOD_TEXT);
    assert_int_equal(m.route_len, 0);
    assert_int_equal(m.ntensors, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(m.t[i].dtype, ref[i].dtype);
        assert_int_equal(m.t[i].ndim, ref[i].ndim);
        assert_memory_equal(m.t[i].shape, ref[i].shape, sizeof ref[i].shape);
        assert_int_equal(m.t[i].nbytes, ref[i].nbytes);
        assert_memory_equal(m.t[i].data, ref[i].data, ref[i].nbytes);
    }
    wire_msg_free(&m);
    tensors_free(t, 3);   // the owned ones are NULL by now
    tensors_free(ref, 3);
}

static void send_raw(void *cli, const Frames *F) {
    for (int i = 0; i < F->n; i++)
        if (zmq_send(cli, F->f[i], F->len[i], i + 1 < F->n ? ZMQ_SNDMORE : 0) < 0)
            fail_msg("raw send frame %d: %s", i, zmq_strerror(errno));
}

// Every malformed kind as raw frames: an error reply with its status and reason, then
// a good request served correctly.
static void echo_suite(const char *bind_ep) {
    void *ctx = ctx_new();
    Echo e;
    echo_start(&e, ctx, bind_ep, CAP, "", "");
    printf("    server on %s\n", e.ep);
    void *cli = client_new(ctx, e.ep, "", 5000);
    roundtrip(cli, 1, 0);
    roundtrip(cli, 2, 7);
    int sent_bad = 0;
    for (int i = 0; i < NBAD; i++) {
        const BadCase *c = &bad_cases[i];
        if (!c->over_socket) continue;
        Frames F;
        frames_good(&F);
        c->mutate(&F);
        send_raw(cli, &F);
        frames_free(&F);
        sent_bad++;
        WireMsg m;
        char err[256];
        int st = wire_recv(cli, 0, NULL, &m, err, sizeof err);
        if (st != WIRE_OK) fail_msg("%s: reply: %d %s %s", c->name, st, err, mdgan_errmsg());
        if ((int)m.status != c->status)
            fail_msg("%s: reply status %u (%s), expected %d: %s", c->name, m.status, wire_status_name(m.status),
                     c->status, m.text);
        expect_reason(c->name, m.text, c);
        assert_int_equal(m.ntensors, 0);
        if (c->env_ok) {
            assert_int_equal(m.id, GOOD_ID);
            assert_int_equal(m.type, T_ECHO);
        }
        wire_msg_free(&m);
        roundtrip(cli, 100 + (uint64_t)i, (unsigned)i & 7);
    }
    echo_stop(&e, cli);
    printf("    served %d good requests, answered %d malformed ones\n", e.served, e.errors);
    assert_int_equal(e.errors, sent_bad);
    assert_int_equal(e.served, 2 + sent_bad);
    assert_int_equal(zmq_close(cli), 0);
    assert_int_equal(zmq_ctx_term(ctx), 0);
}

static void test_socket_ipc(void **state) {
    (void)state;
    char dir[4096], ep[256];
    make_tmpdir(dir, sizeof dir);
    if (wire_endpoint(ep, sizeof ep, "", dir, "data") != 0) fail_msg("%s", mdgan_errmsg());
    echo_suite(ep);
    rm_rf(dir);
}

static void test_socket_tcp(void **state) {
    (void)state;
    echo_suite("tcp://127.0.0.1:*");
}

// glibc's count of bytes in mmap'd blocks: with a fixed mmap threshold every large
// buffer is one block, so a buffer nobody frees shows up here.
static size_t mapped_bytes(void) { return mallinfo2().hblkhd; }

static int wait_mapped_at_most(size_t limit, double seconds) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (int i = 0; i < (int)(seconds * 100); i++) {
        if (mapped_bytes() <= limit) return 1;
        nanosleep(&ts, NULL);
    }
    return mapped_bytes() <= limit;
}

#define BIG_N ((size_t)8 << 20)   // floats: 32 MiB
static float *big_new(void) {
    float *p = malloc(BIG_N * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < BIG_N; i++) p[i] = (float)(i % 65521) * 0.5f;
    return p;
}
static void big_check(const float *p) {
    for (size_t i = 0; i < BIG_N; i++)
        if (p[i] != (float)(i % 65521) * 0.5f) fail_msg("big buffer differs at %zu", i);
}
static WireTensor big_tensor(float *p) {
    return (WireTensor){.dtype = WIRE_F32, .ndim = 2, .shape = {8, 1 << 20}, .nbytes = BIG_N * 4, .data = p};
}

// An owned 32 MiB buffer: the send nulls the caller's pointer, the echo comes back
// bit-exact, and once everything is done the buffer is really gone (zmq freed it).
static void test_owned_buffer_freed(void **state) {
    (void)state;
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);   // fixed: no dynamic threshold, every big buffer is mmap'd
    char dir[4096], ep[256];
    make_tmpdir(dir, sizeof dir);
    assert_int_equal(wire_endpoint(ep, sizeof ep, "", dir, "own"), 0);
    void *ctx = ctx_new();
    Echo e;
    echo_start(&e, ctx, ep, 64u << 20, "", "");
    void *cli = client_new(ctx, e.ep, "", 10000);
    roundtrip(cli, 1, 0);   // connections and their buffers settle before the baseline
    size_t before = mapped_bytes();
    for (int round = 0; round < 3; round++) {
        float *big = big_new();
        // the measure sees the buffer (else the check below could not fail)
        if (!UNDER_ASAN) assert_true(mapped_bytes() >= before + BIG_N * 4);
        WireTensor t = big_tensor(big);
        void **own[1] = {(void **)&big};
        if (wire_send(cli, NULL, 0, T_ECHO, 0, 7, "", &t, 1, own) != 0) fail_msg("%s", mdgan_errmsg());
        assert_null(big);
        WireMsg m;
        char err[256];
        WireLimits lim = {.max_payload = 64u << 20};
        int st = wire_recv(cli, 0, &lim, &m, err, sizeof err);
        if (st != WIRE_OK) fail_msg("echo: %s %s", err, mdgan_errmsg());
        assert_int_equal(m.ntensors, 1);
        assert_int_equal(m.t[0].nbytes, BIG_N * 4);
        big_check(m.t[0].data);
        wire_msg_free(&m);
    }
    if (UNDER_ASAN) {
        printf("    (mapped-bytes check skipped under ASan; LeakSanitizer checks the frees at exit)\n");
    } else {
        // 3 x 32 MiB sent by the client plus 3 x 32 MiB echoed by the server were owned
        // sends: all must be unmapped again; 8 MiB slack for zmq's own buffers.
        int ok = wait_mapped_at_most(before + (8u << 20), 5.0);
        printf("    mapped bytes: %zu before, %zu after (3 x 32 MiB sent each way)\n", before, mapped_bytes());
        if (!ok) fail_msg("owned buffers were not freed: %zu bytes still mapped", mapped_bytes() - before);
    }
    echo_stop(&e, cli);
    assert_int_equal(zmq_close(cli), 0);
    assert_int_equal(zmq_ctx_term(ctx), 0);
    rm_rf(dir);
}

// Real send failures leave the owned buffer with the caller, untouched and not freed:
// a DEALER with no connection (EAGAIN at once with ZMQ_SNDTIMEO 0), and a ROUTER with
// ZMQ_ROUTER_MANDATORY sending to a routing id nobody has (EHOSTUNREACH). The frames
// with the owned payload are built (zmq_msg_init_data) before the first is sent, so
// zmq_msg_close runs the free callback on them: the trap of czmq issue 1748.
// Afterwards the same socket sends the same buffer whole: no half message was left.
static void test_send_failure_keeps_buffer(void **state) {
    (void)state;
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    char dir[4096], ep[256];
    make_tmpdir(dir, sizeof dir);
    assert_int_equal(wire_endpoint(ep, sizeof ep, "", dir, "fail"), 0);
    void *ctx = ctx_new();

    // (a) a DEALER that is not connected to anything
    void *cli = zmq_socket(ctx, ZMQ_DEALER);
    assert_non_null(cli);
    assert_int_equal(wire_socket_setup(cli, ep, 0, 8, "", ""), 0);
    set_int(cli, ZMQ_SNDTIMEO, 0);
    set_int(cli, ZMQ_RCVTIMEO, 10000);
    float *big = big_new();
    float *const orig = big;
    size_t with_big = mapped_bytes();
    if (!UNDER_ASAN) assert_true(with_big >= BIG_N * 4);
    WireTensor t[3];
    good_tensors(t);   // t[0] small F32, owned too: its frame is built and closed as well
    WireTensor ts[2] = {big_tensor(big), t[0]};
    void *small = t[0].data;
    void **own[2] = {(void **)&big, &small};
    errno = 0;
    int rc = wire_send(cli, NULL, 0, T_ECHO, 0, 5, "", ts, 2, own);
    int e = errno;
    printf("    unconnected DEALER: rc %d errno %s: %s\n", rc, strerror(e), mdgan_errmsg());
    assert_int_equal(rc, -1);
    assert_int_equal(e, EAGAIN);
    assert_ptr_equal(big, orig);   // still the caller's
    assert_ptr_equal(small, t[0].data);
    assert_non_null(strstr(mdgan_errmsg(), "frame 1 of 5"));
    big_check(big);   // a freed (unmapped) buffer would fault here, or ASan would report it
    if (!UNDER_ASAN) assert_true(mapped_bytes() >= with_big);

    // now connected: the same buffers go out whole, and only this message arrives
    Echo s;
    echo_start(&s, ctx, ep, 64u << 20, "", "");
    set_int(cli, ZMQ_SNDTIMEO, 5000);
    if (zmq_connect(cli, s.ep) != 0) fail_msg("connect: %s", zmq_strerror(errno));
    if (wire_send(cli, NULL, 0, T_ECHO, 0, 6, "", ts, 2, own) != 0) fail_msg("%s", mdgan_errmsg());
    assert_null(big);
    assert_null(small);
    WireMsg m;
    char err[256];
    WireLimits lim = {.max_payload = 64u << 20};
    int st = wire_recv(cli, 0, &lim, &m, err, sizeof err);
    if (st != WIRE_OK) fail_msg("echo: %s %s", err, mdgan_errmsg());
    assert_int_equal(m.id, 6);
    assert_int_equal(m.ntensors, 2);
    big_check(m.t[0].data);
    WireTensor ref[3];
    good_tensors(ref);
    assert_memory_equal(m.t[1].data, ref[0].data, ref[0].nbytes);
    tensors_free(ref, 3);
    wire_msg_free(&m);
    free(t[1].data);
    free(t[2].data);
    echo_stop(&s, cli);
    assert_int_equal(s.errors, 0);   // no stray frames of the failed attempt arrived
    assert_int_equal(s.served, 1);

    // (b) a ROUTER, mandatory routing, an unknown peer
    void *r = zmq_socket(ctx, ZMQ_ROUTER);
    assert_non_null(r);
    assert_int_equal(wire_socket_setup(r, "inproc://mandatory", 1, 8, "", ""), 0);
    set_int(r, ZMQ_ROUTER_MANDATORY, 1);
    assert_int_equal(zmq_bind(r, "inproc://mandatory"), 0);
    big = big_new();
    float *const orig2 = big;
    WireTensor tb = big_tensor(big);
    void **own1[1] = {(void **)&big};
    errno = 0;
    rc = wire_send(r, (const unsigned char *)"nobody", 6, T_ECHO, 0, 8, "", &tb, 1, own1);
    e = errno;
    printf("    ROUTER_MANDATORY, unknown peer: rc %d errno %s: %s\n", rc, strerror(e), mdgan_errmsg());
    assert_int_equal(rc, -1);
    assert_int_equal(e, EHOSTUNREACH);
    assert_ptr_equal(big, orig2);
    assert_non_null(strstr(mdgan_errmsg(), "routing id"));
    big_check(big);
    free(big);   // ours to free: a second free by zmq would abort (glibc) or be reported (ASan)

    // misuse is refused before anything is built: the owned pointer must be the data
    float *other = malloc(16);
    assert_non_null(other);
    WireTensor tm = {.dtype = WIRE_F32, .ndim = 1, .shape = {4}, .nbytes = 16, .data = other};
    float *wrong = malloc(16);
    assert_non_null(wrong);
    void **ownw[1] = {(void **)&wrong};
    assert_int_equal(wire_send(r, (const unsigned char *)"x", 1, 1, 0, 1, "", &tm, 1, ownw), -1);
    assert_non_null(strstr(mdgan_errmsg(), "not tensor 0's data"));
    assert_non_null(wrong);
    // a tensor whose nbytes does not match its shape never goes on the wire
    tm.nbytes = 12;
    assert_int_equal(wire_send(r, (const unsigned char *)"x", 1, 1, 0, 1, "", &tm, 1, NULL), -1);
    assert_non_null(strstr(mdgan_errmsg(), "nbytes 12"));
    // a ROUTER needs a route, a DEALER must not get one
    tm.nbytes = 16;
    assert_int_equal(wire_send(r, NULL, 0, 1, 0, 1, "", &tm, 1, NULL), -1);
    assert_int_equal(wire_send(cli, (const unsigned char *)"x", 1, 1, 0, 1, "", &tm, 1, NULL), -1);
    free(other);
    free(wrong);

    assert_int_equal(zmq_close(r), 0);
    assert_int_equal(zmq_close(cli), 0);
    assert_int_equal(zmq_ctx_term(ctx), 0);
    rm_rf(dir);
}

// CURVE over tcp loopback with keys from zmq_curve_keypair: the round trip works, and
// a client without keys or with another server key gets no answer at all.
static void test_curve(void **state) {
    (void)state;
    if (!zmq_has("curve")) skip();
    char pub[41], sec[41], other_pub[41], other_sec[41];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    assert_int_equal(zmq_curve_keypair(other_pub, other_sec), 0);
    void *ctx = ctx_new();

    // key checks first
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    assert_non_null(s);
    assert_int_equal(wire_socket_setup(s, "tcp://127.0.0.1:*", 1, 8, other_pub, sec), -1);
    printf("    %s\n", mdgan_errmsg());
    assert_non_null(strstr(mdgan_errmsg(), "not the public key"));
    assert_int_equal(wire_socket_setup(s, "tcp://127.0.0.1:*", 1, 8, pub, ""), -1);
    assert_non_null(strstr(mdgan_errmsg(), "curve_secret_key"));
    assert_int_equal(wire_socket_setup(s, "tcp://127.0.0.1:*", 1, 8, "", "tooshort"), -1);
    assert_non_null(strstr(mdgan_errmsg(), "40 Z85"));
    assert_int_equal(wire_socket_setup(s, "tcp://127.0.0.1:*", 0, 8, "", sec), -1);
    assert_non_null(strstr(mdgan_errmsg(), "needs curve_server_key"));
    char bad[41];
    memcpy(bad, pub, 41);
    bad[3] = ' ';   // not a Z85 character
    assert_int_equal(wire_socket_setup(s, "tcp://127.0.0.1:*", 0, 8, bad, ""), -1);
    assert_non_null(strstr(mdgan_errmsg(), "not a Z85"));
    assert_int_equal(zmq_close(s), 0);

    Echo e;
    echo_start(&e, ctx, "tcp://127.0.0.1:*", CAP, pub, sec);
    int mech = -1;
    size_t sz = sizeof mech;
    printf("    CURVE server on %s\n", e.ep);
    void *cli = client_new(ctx, e.ep, pub, 5000);
    assert_int_equal(zmq_getsockopt(cli, ZMQ_MECHANISM, &mech, &sz), 0);
    assert_int_equal(mech, ZMQ_CURVE);
    roundtrip(cli, 1, 5);
    roundtrip(cli, 2, 0);

    // no keys, and the wrong server key: the handshake fails, no reply comes
    void *plain = client_new(ctx, e.ep, "", 700);
    void *wrong = client_new(ctx, e.ep, other_pub, 700);
    void *socks[2] = {plain, wrong};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(wire_send(socks[i], NULL, 0, T_ECHO, 0, 3, "", NULL, 0, NULL), 0);   // queued
        WireMsg m;
        char err[128];
        errno = 0;
        assert_int_equal(wire_recv(socks[i], 0, NULL, &m, err, sizeof err), -1);
        assert_int_equal(errno, EAGAIN);
        printf("    %s client: no reply (%s)\n", i ? "wrong-key" : "plain", mdgan_errmsg());
        assert_int_equal(zmq_close(socks[i]), 0);
    }
    roundtrip(cli, 4, 2);
    echo_stop(&e, cli);
    assert_int_equal(e.served, 3);
    assert_int_equal(zmq_close(cli), 0);
    assert_int_equal(zmq_ctx_term(ctx), 0);
}

// Without keys, anything but ipc/inproc and loopback tcp is refused by the setup
// itself, with the endpoint in the message, before any connect (none happens: the
// socket has no last endpoint). With keys the same endpoint is accepted (and, here,
// never connected either).
static void test_refuse_non_loopback(void **state) {
    (void)state;
    void *ctx = ctx_new();
    static const char *const refused[] = {
        "tcp://10.1.2.3:5555",  "tcp://0.0.0.0:5555",           "tcp://*:5555",
        "tcp://eth0:5555",      "tcp://127.0.0.1;10.1.2.3:5555", "tcp://127.0.0.1.example.com:1",
        "tcp://[::]:5555",      "tcp://[::ffff:10.1.2.3]:1",     "tcp://localhost.example.com:1",
        "tcp://127.0.0.1",      "ws://127.0.0.1:5555",           "udp://10.1.2.3:5555",
    };
    static const char *const accepted[] = {
        "tcp://127.0.0.1:5555", "tcp://127.9.8.7:1", "tcp://localhost:5555", "tcp://LOCALHOST:*",
        "tcp://[::1]:5555",     "tcp://127.0.0.1:*", "ipc:///tmp/x.sock",    "inproc://x",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        void *s = zmq_socket(ctx, i % 2 ? ZMQ_ROUTER : ZMQ_DEALER);
        assert_non_null(s);
        mdgan_errclear();
        assert_int_equal(wire_socket_setup(s, refused[i], i % 2, 8, "", ""), -1);
        const char *msg = mdgan_errmsg();
        if (i == 0) printf("    %s\n", msg);
        if (!strstr(msg, refused[i])) fail_msg("message for %s does not name it: %s", refused[i], msg);
        if (!strstr(msg, "CURVE")) fail_msg("message for %s does not say CURVE: %s", refused[i], msg);
        char last[256] = "?";
        last_endpoint(s, last, sizeof last);
        assert_string_equal(last, "");
        assert_int_equal(zmq_close(s), 0);
    }
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        void *s = zmq_socket(ctx, ZMQ_DEALER);
        assert_non_null(s);
        if (wire_socket_setup(s, accepted[i], 0, 8, NULL, NULL) != 0)
            fail_msg("%s refused: %s", accepted[i], mdgan_errmsg());
        int v = -1;
        size_t sz = sizeof v;
        assert_int_equal(zmq_getsockopt(s, ZMQ_LINGER, &v, &sz), 0);
        assert_int_equal(v, 0);
        assert_int_equal(zmq_getsockopt(s, ZMQ_SNDHWM, &v, &sz), 0);
        assert_int_equal(v, 8);
        assert_int_equal(zmq_getsockopt(s, ZMQ_RCVHWM, &v, &sz), 0);
        assert_int_equal(v, 8);
        assert_int_equal(zmq_close(s), 0);
    }
    if (zmq_has("curve")) {
        char pub[41], sec[41];
        assert_int_equal(zmq_curve_keypair(pub, sec), 0);
        void *s = zmq_socket(ctx, ZMQ_DEALER);
        assert_non_null(s);
        if (wire_socket_setup(s, "tcp://10.1.2.3:5555", 0, 8, pub, "") != 0) fail_msg("%s", mdgan_errmsg());
        char last[256] = "?";
        last_endpoint(s, last, sizeof last);
        assert_string_equal(last, "");
        assert_int_equal(zmq_close(s), 0);
    }
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    assert_non_null(s);
    assert_int_equal(wire_socket_setup(s, "tcp://127.0.0.1:1", 0, 0, "", ""), -1);
    assert_non_null(strstr(mdgan_errmsg(), "high-water mark 0"));
    assert_int_equal(zmq_close(s), 0);
    assert_int_equal(zmq_ctx_term(ctx), 0);
}

static int mode_of(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) fail_msg("stat %s: %s", path, strerror(errno));
    return (int)(st.st_mode & 07777);
}

// wire_endpoint: a configured endpoint as is; else ipc://<run>/sockets/<name>.sock with
// the folder mode 0700 whatever the umask and whatever mode it had; a socket path of
// exactly the unix limit binds, one byte more is refused (with advice, creating nothing).
static void test_endpoint(void **state) {
    (void)state;
    char dir[4096], ep[512], want[4200], sock_dir[4200];
    make_tmpdir(dir, sizeof dir);
    snprintf(sock_dir, sizeof sock_dir, "%s/sockets", dir);

    assert_int_equal(wire_endpoint(ep, sizeof ep, "tcp://127.0.0.1:7000", dir, "data"), 0);
    assert_string_equal(ep, "tcp://127.0.0.1:7000");
    assert_int_equal(access(sock_dir, F_OK), -1);   // nothing created for a configured endpoint

    mode_t old = umask(0277);   // would leave the folder 0500 without the chmod
    int rc = wire_endpoint(ep, sizeof ep, "", dir, "data");
    umask(old);
    if (rc != 0) fail_msg("%s", mdgan_errmsg());
    snprintf(want, sizeof want, "ipc://%s/sockets/data.sock", dir);
    assert_string_equal(ep, want);
    assert_int_equal(mode_of(sock_dir), 0700);
    assert_int_equal(chmod(sock_dir, 0755), 0);   // an existing folder is tightened too
    assert_int_equal(wire_endpoint(ep, sizeof ep, NULL, dir, "ctl"), 0);
    assert_int_equal(mode_of(sock_dir), 0700);

    assert_int_equal(wire_endpoint(ep, 20, "", dir, "data"), -1);   // output too small
    assert_int_equal(wire_endpoint(ep, sizeof ep, "", dir, "a/b"), -1);
    assert_int_equal(wire_endpoint(ep, sizeof ep, "", "", "data"), -1);

    // the limit: strlen(sun_path) <= 107. "<dir>/<pad>/sockets/x.sock"
    const size_t limit = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    size_t fixed = strlen(dir) + 1 + strlen("/sockets/x.sock");
    if (fixed + 1 >= limit) fail_msg("temporary folder %s is too long for this test (set TMPDIR=/tmp)", dir);
    for (int extra = 0; extra <= 1; extra++) {
        char run[4300];
        size_t pad = limit - fixed + (size_t)extra;
        char name[128];
        assert_true(pad < sizeof name);
        memset(name, 'p', pad);
        name[pad] = '\0';
        snprintf(run, sizeof run, "%s/%s", dir, name);
        assert_int_equal(mkdir(run, 0700), 0);
        rc = wire_endpoint(ep, sizeof ep, "", run, "x");
        if (!extra) {
            if (rc != 0) fail_msg("path of exactly %zu bytes refused: %s", limit, mdgan_errmsg());
            assert_int_equal(strlen(ep) - 6, limit);
            void *ctx = ctx_new();
            void *s = zmq_socket(ctx, ZMQ_ROUTER);
            assert_non_null(s);
            if (zmq_bind(s, ep) != 0) fail_msg("bind %s: %s", ep, zmq_strerror(errno));
            assert_int_equal(zmq_close(s), 0);
            assert_int_equal(zmq_ctx_term(ctx), 0);
        } else {
            assert_int_equal(rc, -1);
            const char *msg = mdgan_errmsg();
            printf("    %s\n", msg);
            assert_non_null(strstr(msg, "108 bytes"));
            assert_non_null(strstr(msg, "run.dir"));
            assert_non_null(strstr(msg, "tcp://127.0.0.1"));
            assert_int_equal(count_lines(msg), 0);
            char sd[4400];
            snprintf(sd, sizeof sd, "%s/sockets", run);
            assert_int_equal(access(sd, F_OK), -1);   // refused before creating anything
        }
    }
    rm_rf(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_layout),
        cmocka_unit_test(test_parse_roundtrip),
        cmocka_unit_test(test_single_frame_parsers),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_err_buffer_bounds),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_socket_ipc),
        cmocka_unit_test(test_socket_tcp),
        cmocka_unit_test(test_owned_buffer_freed),
        cmocka_unit_test(test_send_failure_keeps_buffer),
        cmocka_unit_test(test_curve),
        cmocka_unit_test(test_refuse_non_loopback),
        cmocka_unit_test(test_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
