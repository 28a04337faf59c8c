// libFuzzer target for the wire parsers (common/wire.c): what a receiver runs on the
// frames a peer sent. Build and run: `make fuzz FUZZ_SECONDS=30` (clang,
// -fsanitize=fuzzer,address,undefined).
//
// Input: byte 0 picks the payload cap (1 << (b & 31) bytes; bit 7 set: no cap, lim
// NULL), then frames, each a u16 little-endian length and that many bytes (a length
// past the end takes what is left; fewer than 2 bytes left end the list; at most
// FUZZ_MAX_FRAMES frames). Each frame is copied to its own malloc of exactly its
// length, so AddressSanitizer sees any read past a frame.
//
// Run on every input: wire_parse_frames, then wire_parse_envelope and
// wire_parse_tensor_header on every frame and wire_check_payload on every
// header/next-frame pair. Beyond "no crash, no leak, no UB" it checks invariants and
// aborts when one fails: a status in range; a reason on every failure and none on
// success; a failed parse owns nothing; an accepted message re-encodes to exactly its
// input frames, with nbytes = prod(shape) * dtype size within the cap, payloads equal
// to their frames and their CRC.
//
// Built with -DFUZZ_GENERATOR instead, it is the generator of the committed seed
// corpus (`make fuzz-corpus`): `fuzz_wire_gen DIR` writes valid messages made with the
// encoders and one file per malformed kind.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "mdgan/wire.h"

#define FUZZ_MAX_FRAMES 40

static uint32_t crc_of(const void *p, size_t n) {
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

// The input format above: the limits and up to FUZZ_MAX_FRAMES frames, each in its own
// malloc (free with frames_free). -1 when out of memory.
static int split_frames(const uint8_t *data, size_t size, WireLimits *lim, const WireLimits **limp,
                        unsigned char **fr, size_t *len, int *nframes) {
    int n = 0;
    lim->max_payload = (size_t)1 << (data[0] & 31);
    *limp = (data[0] & 0x80) ? NULL : lim;
    size_t pos = 1;
    while (n < FUZZ_MAX_FRAMES && size - pos >= 2) {
        size_t l = (size_t)data[pos] | (size_t)data[pos + 1] << 8;
        pos += 2;
        if (l > size - pos) l = size - pos;
        fr[n] = malloc(l ? l : 1);
        if (!fr[n]) {
            while (n > 0) free(fr[--n]);
            return -1;
        }
        memcpy(fr[n], data + pos, l);
        len[n++] = l;
        pos += l;
    }
    *nframes = n;
    return 0;
}

static void frames_free(unsigned char **fr, int n) {
    for (int i = 0; i < n; i++) free(fr[i]);
}

#ifndef FUZZ_GENERATOR

#include "fuzzutil.h"

static void check_err(int st, const char *err, size_t errn) {
    CHECK(st >= WIRE_OK && st <= WIRE_E_INTERNAL);
    CHECK(memchr(err, '\0', errn) != NULL);
    CHECK(st == WIRE_OK ? err[0] == '\0' : err[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    WireLimits lim;
    const WireLimits *limp;
    unsigned char *fr[FUZZ_MAX_FRAMES];
    size_t len[FUZZ_MAX_FRAMES];
    int n;
    CHECK(split_frames(data, size, &lim, &limp, fr, len, &n) == 0);

    char err[256];
    WireMsg m;
    int st = wire_parse_frames((const void *const *)fr, len, n, limp, &m, err, sizeof err);
    check_err(st, err, sizeof err);
    if (st == WIRE_OK) {
        CHECK(n == 1 + 2 * m.ntensors);
        CHECK(m.ntensors >= 0 && m.ntensors <= WIRE_MAX_TENSORS);
        CHECK(m.text != NULL && m.text_len <= WIRE_MAX_TEXT && m.text[m.text_len] == '\0');
        CHECK(len[0] == WIRE_ENVELOPE_BYTES + m.text_len);
        unsigned char *env = malloc(WIRE_ENVELOPE_BYTES + m.text_len);
        CHECK(env != NULL);
        wire_encode_envelope(env, m.type, m.status, m.id, (uint32_t)m.ntensors, m.text, m.text_len);
        CHECK(memcmp(env, fr[0], len[0]) == 0);
        free(env);
        for (int i = 0; i < m.ntensors; i++) {
            const WireTensor *t = &m.t[i];
            size_t want = wire_dtype_size(t->dtype);
            CHECK(want != 0 && t->ndim >= 1 && t->ndim <= WIRE_MAX_NDIM);
            for (int d = 0; d < t->ndim; d++) {
                CHECK(t->shape[d] >= 1);
                want *= (size_t)t->shape[d];   // bounded by the frame length checked below
            }
            for (int d = t->ndim; d < WIRE_MAX_NDIM; d++) CHECK(t->shape[d] == 0);
            CHECK(t->nbytes == want && t->nbytes == len[2 + 2 * i]);
            CHECK(!limp || t->nbytes <= limp->max_payload);
            CHECK(t->data != NULL && memcmp(t->data, fr[2 + 2 * i], t->nbytes) == 0);
            CHECK(t->crc == crc_of(t->data, t->nbytes));
            unsigned char h[WIRE_TENSOR_HEADER_BYTES];
            wire_encode_tensor_header(h, t->dtype, t->ndim, t->shape, t->nbytes, t->crc);
            CHECK(len[1 + 2 * i] == sizeof h && memcmp(h, fr[1 + 2 * i], sizeof h) == 0);
        }
    } else {
        CHECK(m.text == NULL && m.ntensors == 0);
        for (int i = 0; i < WIRE_MAX_TENSORS; i++) CHECK(m.t[i].data == NULL);
    }
    wire_msg_free(&m);

    for (int i = 0; i < n; i++) {
        WireMsg e;
        memset(&e, 0, sizeof e);
        st = wire_parse_envelope(fr[i], len[i], &e, err, sizeof err);
        check_err(st, err, sizeof err);
        CHECK(e.text == NULL);
        if (st == WIRE_OK) CHECK(len[i] == WIRE_ENVELOPE_BYTES + e.text_len && e.ntensors <= WIRE_MAX_TENSORS);
        WireTensor t;
        st = wire_parse_tensor_header(fr[i], len[i], limp, &t, err, sizeof err);
        check_err(st, err, sizeof err);
        CHECK(t.data == NULL);
        if (st == WIRE_OK && i + 1 < n) {
            st = wire_check_payload(&t, fr[i + 1], len[i + 1], t.crc, err, sizeof err);
            check_err(st, err, sizeof err);
            CHECK(st == WIRE_OK || st == WIRE_E_SIZE || st == WIRE_E_CRC);
        }
    }
    frames_free(fr, n);
    return 0;
}

#else // FUZZ_GENERATOR: the seed corpus

#include <errno.h>
#include <sys/stat.h>

typedef struct {
    unsigned char b[1 << 16];
    size_t n;
} Seed;

static const char *outdir;
static int written;

static void seed_begin(Seed *s, unsigned char capbyte) {
    s->n = 0;
    s->b[s->n++] = capbyte;
}

static void seed_frame(Seed *s, const void *p, size_t n) {
    if (s->n + 2 + n > sizeof s->b || n > 0xffff) {
        fprintf(stderr, "fuzz_wire_gen: seed too large\n");
        exit(1);
    }
    s->b[s->n++] = (unsigned char)n;
    s->b[s->n++] = (unsigned char)(n >> 8);
    if (n) memcpy(s->b + s->n, p, n);
    s->n += n;
}

// A seed named ok_* must parse, a bad_* one must not (so each bad seed is the kind it
// says, not an accident of the generator).
static void seed_write(const Seed *s, const char *name) {
    WireLimits lim;
    const WireLimits *limp;
    unsigned char *fr[FUZZ_MAX_FRAMES];
    size_t len[FUZZ_MAX_FRAMES];
    int n;
    char err[256];
    WireMsg m;
    if (split_frames(s->b, s->n, &lim, &limp, fr, len, &n) != 0) exit(1);
    int st = wire_parse_frames((const void *const *)fr, len, n, limp, &m, err, sizeof err);
    wire_msg_free(&m);
    frames_free(fr, n);
    if ((st == WIRE_OK) != (strncmp(name, "ok_", 3) == 0)) {
        fprintf(stderr, "fuzz_wire_gen: seed %s parses as %s: %s\n", name, wire_status_name((uint32_t)st), err);
        exit(1);
    }
    printf("  %-26s %-20s %s\n", name, wire_status_name((uint32_t)st), err);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", outdir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s->b, 1, s->n, f) != s->n || fclose(f) != 0) {
        fprintf(stderr, "fuzz_wire_gen: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    written++;
}

// A tensor of the message under construction, with data from the index.
typedef struct {
    WireDtype dtype;
    int ndim;
    int64_t shape[WIRE_MAX_NDIM];
} Spec;

typedef struct {
    unsigned char env[WIRE_ENVELOPE_BYTES + 256];
    size_t env_len;
    unsigned char hdr[WIRE_MAX_TENSORS][WIRE_TENSOR_HEADER_BYTES];
    size_t hdr_len[WIRE_MAX_TENSORS];
    unsigned char pay[WIRE_MAX_TENSORS][2048];
    size_t pay_len[WIRE_MAX_TENSORS];
    int n;
} Msg;

static void msg_make(Msg *m, uint16_t type, uint32_t status, uint64_t id, const char *text, const Spec *sp, int n) {
    memset(m, 0, sizeof *m);
    size_t tl = strlen(text);
    wire_encode_envelope(m->env, type, status, id, (uint32_t)n, text, tl);
    m->env_len = WIRE_ENVELOPE_BYTES + tl;
    m->n = n;
    for (int i = 0; i < n; i++) {
        size_t nb = wire_dtype_size(sp[i].dtype);
        for (int d = 0; d < sp[i].ndim; d++) nb *= (size_t)sp[i].shape[d];
        if (nb > sizeof m->pay[i]) {
            fprintf(stderr, "fuzz_wire_gen: tensor too large\n");
            exit(1);
        }
        for (size_t k = 0; k < nb; k++) m->pay[i][k] = (unsigned char)(k * 31 + (size_t)i * 7 + 1);
        m->pay_len[i] = nb;
        wire_encode_tensor_header(m->hdr[i], sp[i].dtype, sp[i].ndim, sp[i].shape, nb, crc_of(m->pay[i], nb));
        m->hdr_len[i] = WIRE_TENSOR_HEADER_BYTES;
    }
}

static void msg_write(const Msg *m, unsigned char capbyte, const char *name) {
    Seed s;
    seed_begin(&s, capbyte);
    seed_frame(&s, m->env, m->env_len);
    for (int i = 0; i < m->n; i++) {
        seed_frame(&s, m->hdr[i], m->hdr_len[i]);
        seed_frame(&s, m->pay[i], m->pay_len[i]);
    }
    seed_write(&s, name);
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

#define CAP_1M 20   // capbyte: 1 << 20 bytes

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_wire_gen DIR   (writes the seed corpus into DIR)\n");
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "fuzz_wire_gen: cannot create %s: %s\n", outdir, strerror(errno));
        return 1;
    }
    static const Spec three[3] = {
        {WIRE_F32, 4, {2, 3, 2, 2}}, {WIRE_U8, 2, {7, 11}}, {WIRE_I64, 1, {3}}};
    static const Spec clip = {WIRE_F32, 5, {1, 3, 2, 4, 4}};
    Msg m;

    // ---- valid messages
    msg_make(&m, 1, 0, 0, "", NULL, 0);
    msg_write(&m, CAP_1M, "ok_empty");
    msg_make(&m, 1, 0, 1, "{\"frames\":32,\"size\":128,\"clips\":48}", NULL, 0);
    msg_write(&m, CAP_1M, "ok_hello_text");
    msg_make(&m, 2, WIRE_E_CRC, 77, "tensor 0 of 2: payload CRC mismatch", NULL, 0);
    msg_write(&m, CAP_1M, "ok_error_reply");
    msg_make(&m, 7, 0, 42, "{\"clip\":7}", three, 3);
    msg_write(&m, CAP_1M, "ok_three_tensors");
    msg_write(&m, 0x80, "ok_three_tensors_nocap");
    msg_make(&m, 2, 0, 5, "", &clip, 1);
    msg_write(&m, CAP_1M, "ok_clip_5d");
    msg_write(&m, 7, "bad_clip_over_cap");   // 384 bytes, cap 128
    static const Spec exact = {WIRE_U8, 5, {2, 2, 2, 2, 8}};
    msg_make(&m, 2, 0, 6, "", &exact, 1);
    msg_write(&m, 7, "ok_exactly_the_cap");   // 128 bytes, cap 128
    for (int d = WIRE_F32; d <= WIRE_I64; d++) {
        Spec one = {(WireDtype)d, 1, {5}};
        char name[64];
        msg_make(&m, 3, 0, (uint64_t)d, "", &one, 1);
        snprintf(name, sizeof name, "ok_one_%s", d == WIRE_F32 ? "f32" : d == WIRE_U8 ? "u8" : "i64");
        msg_write(&m, CAP_1M, name);
    }
    Spec eight[WIRE_MAX_TENSORS];
    for (int i = 0; i < WIRE_MAX_TENSORS; i++) eight[i] = (Spec){(WireDtype)(1 + i % 3), 1 + i % 5, {1, 2, 1, 2, 1}};
    msg_make(&m, 2, 0, 8, "max", eight, WIRE_MAX_TENSORS);
    msg_write(&m, CAP_1M, "ok_eight_tensors");

    // ---- malformed: frame counts
    Seed s;
    seed_begin(&s, CAP_1M);
    seed_write(&s, "bad_no_frames");
    msg_make(&m, 7, 0, 42, "{\"clip\":7}", three, 3);
    m.n = 2;
    seed_begin(&s, CAP_1M);
    seed_frame(&s, m.env, m.env_len);
    for (int i = 0; i < 2; i++) {
        seed_frame(&s, m.hdr[i], m.hdr_len[i]);
        seed_frame(&s, m.pay[i], m.pay_len[i]);
    }
    seed_frame(&s, m.hdr[2], m.hdr_len[2]);   // header without its payload
    seed_write(&s, "bad_missing_payload");
    msg_make(&m, 7, 0, 42, "{\"clip\":7}", three, 3);
    seed_begin(&s, CAP_1M);
    seed_frame(&s, m.env, m.env_len);
    for (int i = 0; i < 3; i++) {
        seed_frame(&s, m.hdr[i], m.hdr_len[i]);
        seed_frame(&s, m.pay[i], m.pay_len[i]);
    }
    seed_frame(&s, "extra", 5);
    seed_write(&s, "bad_extra_frame");

    // ---- malformed: the envelope (each from the three-tensor message)
#define ENV_CASE(name, stmt)                                  \
    do {                                                      \
        msg_make(&m, 7, 0, 42, "{\"clip\":7}", three, 3);     \
        stmt;                                                 \
        msg_write(&m, CAP_1M, name);                          \
    } while (0)
    ENV_CASE("bad_env_magic", m.env[0] = 'X');
    ENV_CASE("bad_env_version", poke16(m.env + 4, 2));
    ENV_CASE("bad_env_truncated", m.env_len = 20);
    ENV_CASE("bad_env_empty", m.env_len = 0);
    ENV_CASE("bad_env_reserved", poke32(m.env + 28, 1));
    ENV_CASE("bad_env_ntensors", poke32(m.env + 12, WIRE_MAX_TENSORS + 1));
    ENV_CASE("bad_env_text_beyond", poke32(m.env + 24, 11));
    ENV_CASE("bad_env_text_trailing", poke32(m.env + 24, 9));
    ENV_CASE("bad_env_text_huge", poke32(m.env + 24, WIRE_MAX_TEXT + 1));
    ENV_CASE("bad_env_tensor_magic", memcpy(m.env, "MDGT", 4));

    // ---- malformed: a tensor header or payload (tensor 1 unless said)
    ENV_CASE("bad_hdr_magic", m.hdr[1][0] = 'm');
    ENV_CASE("bad_hdr_version", poke16(m.hdr[1] + 4, 0));
    ENV_CASE("bad_hdr_dtype", m.hdr[1][6] = 9);
    ENV_CASE("bad_hdr_ndim0", m.hdr[1][7] = 0);
    ENV_CASE("bad_hdr_ndim6", m.hdr[1][7] = 6);
    ENV_CASE("bad_hdr_shape_zero", poke64(m.hdr[1] + 16, 0));
    ENV_CASE("bad_hdr_shape_negative", poke64(m.hdr[1] + 8, (uint64_t)-7));
    ENV_CASE("bad_hdr_shape_unused", poke64(m.hdr[1] + 40, 1));
    ENV_CASE("bad_hdr_reserved", poke32(m.hdr[1] + 60, 5));
    ENV_CASE("bad_hdr_truncated", m.hdr_len[1] = 63);
    ENV_CASE("bad_hdr_nbytes", poke64(m.hdr[0] + 48, 100));
    ENV_CASE("bad_hdr_overflow", (poke64(m.hdr[0] + 8, 1ull << 40), poke64(m.hdr[0] + 16, 1ull << 40)));
    ENV_CASE("bad_payload_short", m.pay_len[2]--);
    ENV_CASE("bad_payload_long", m.pay_len[2]++);
    ENV_CASE("bad_payload_crc", m.pay[0][3] ^= 0x40);
    ENV_CASE("bad_hdr_crc", poke32(m.hdr[2] + 56, 0xdeadbeef));
    msg_make(&m, 7, 0, 42, "{\"clip\":7}", three, 3);
    msg_write(&m, 4, "bad_over_cap");   // cap 16 bytes: tensor 0 (96 bytes) is over
    printf("fuzz_wire_gen: wrote %d seeds into %s\n", written, outdir);
    return 0;
}

#endif
