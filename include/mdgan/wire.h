#ifndef MDGAN_WIRE_H
#define MDGAN_WIRE_H
// Messages over ZeroMQ (DESIGN.md section 4): one envelope frame, then per tensor a
// header frame and a payload frame. Used by the data plane (mdgan-base serve <->
// mdgan-refine train) and the control plane (stages <-> coordinator).
//
// Envelope frame, little-endian, WIRE_ENVELOPE_BYTES + text_len bytes:
//   0  magic "MDGE"   4  u16 version (WIRE_VERSION)   6  u16 type
//   8  u32 status (0 = ok, else a WireStatus)        12  u32 ntensors (<= WIRE_MAX_TENSORS)
//   16 u64 request id                                 24  u32 text_len (<= WIRE_MAX_TEXT)
//   28 u32 reserved (0)                               32  text_len bytes of UTF-8 text
// The text is an error message on an error reply and a small JSON object elsewhere
// (HELLO, control messages); it is not NUL-terminated on the wire.
//
// Tensor header frame, little-endian, exactly WIRE_TENSOR_HEADER_BYTES:
//   0  magic "MDGT"   4  u16 version   6  u8 dtype (WireDtype)   7  u8 ndim (1..5)
//   8  i64 shape[5] (unused entries 0)   48  u64 nbytes   56  u32 crc32 (zlib) of the
//   payload   60  u32 reserved (0)
// Payload frame: exactly nbytes bytes, nbytes = prod(shape) * dtype size.
//
// Ownership: a WireMsg owns its text and its tensors' data once received; a send
// borrows nothing after it returns unless the signature says it takes the buffer.
#include <stddef.h>
#include <stdint.h>

#define WIRE_VERSION 1
#define WIRE_ENVELOPE_BYTES 32
#define WIRE_TENSOR_HEADER_BYTES 64
#define WIRE_MAX_TENSORS 8
#define WIRE_MAX_TEXT 65536
#define WIRE_MAX_NDIM 5
#define WIRE_MAX_ROUTE 255   // a ROUTER routing id is at most 255 bytes

typedef enum { WIRE_F32 = 1, WIRE_U8 = 2, WIRE_I64 = 3 } WireDtype;

// Status of an error reply: what was wrong with the request.
typedef enum {
    WIRE_OK = 0,
    WIRE_E_FRAMES = 1,     // wrong frame count / RCVMORE
    WIRE_E_MAGIC = 2,      // bad magic
    WIRE_E_VERSION = 3,    // unknown version
    WIRE_E_HEADER = 4,     // malformed header: dtype, ndim, shape, reserved, text length
    WIRE_E_SIZE = 5,       // byte count does not match the shape or the payload frame
    WIRE_E_CAP = 6,        // over the configured size cap
    WIRE_E_CRC = 7,        // CRC mismatch
    WIRE_E_TYPE = 8,       // unknown request type (the protocol's, not the wire's)
    WIRE_E_REQUEST = 9,    // a well-formed request the server cannot answer (bad index ...)
    WIRE_E_MISMATCH = 10,  // HELLO: the peers disagree (dataset, model)
    WIRE_E_INTERNAL = 11,  // the server failed (out of memory ...)
} WireStatus;

typedef struct {
    WireDtype dtype;
    int ndim;
    int64_t shape[WIRE_MAX_NDIM];
    size_t nbytes;
    void *data;            // owned by the WireMsg after wire_recv (NULL when nbytes == 0)
    uint32_t crc;          // the header's CRC-32 after parsing; wire_send ignores it (computes its own)
} WireTensor;

typedef struct {
    uint16_t type;
    uint32_t status;
    uint64_t id;
    char *text;            // NUL-terminated copy of the envelope text (owned; "" when none)
    size_t text_len;
    int ntensors;
    WireTensor t[WIRE_MAX_TENSORS];
    unsigned char route[WIRE_MAX_ROUTE];   // ROUTER side: the sender's routing id
    size_t route_len;
} WireMsg;

typedef struct {
    size_t max_payload;    // cap on one tensor payload in bytes (transport.max_message_mb)
} WireLimits;

// ---- parsing (no sockets; what the receiver and the fuzz target run) ----
// Each returns WIRE_OK or a WireStatus, and writes a one-line reason into err (err may
// be NULL when errn is 0; "" on success). The parsers never read past len, never
// trust a field before checking it, and never assert.
// lim NULL: no size cap (the shape and byte-count checks still apply).
//
// wire_parse_envelope fills m's type, status, id, ntensors and text_len only: it
// allocates nothing (the text is the frame's bytes from WIRE_ENVELOPE_BYTES on).
// m->type and m->id are set as soon as the magic, version and length check out, so
// a caller can answer a request whose later fields are bad.
int wire_parse_envelope(const void *buf, size_t len, WireMsg *m, char *err, size_t errn);
// Fills *t (data NULL, crc the header's) on success; *t is zeroed on failure.
int wire_parse_tensor_header(const void *buf, size_t len, const WireLimits *lim, WireTensor *t, char *err,
                             size_t errn);
// Payload against a parsed header: length, then CRC.
int wire_check_payload(const WireTensor *t, const void *payload, size_t len, uint32_t crc, char *err,
                       size_t errn);
// Whole message from frames already in memory (what wire_recv does after reading the
// frames off the socket): frames[0] the envelope, then header/payload pairs. *m is
// overwritten. Every header, length and CRC is checked before anything is copied; on
// success m owns copies of the text and payloads (free with wire_msg_free), on
// failure m owns nothing (ntensors 0, text NULL) but keeps type and id when the
// envelope got that far.
int wire_parse_frames(const void *const *frames, const size_t *lens, int nframes, const WireLimits *lim,
                      WireMsg *m, char *err, size_t errn);

// Encoders for tests and the fuzz corpus: fill out (WIRE_ENVELOPE_BYTES + text_len /
// WIRE_TENSOR_HEADER_BYTES bytes).
void wire_encode_envelope(unsigned char *out, uint16_t type, uint32_t status, uint64_t id, uint32_t ntensors,
                          const char *text, size_t text_len);
void wire_encode_tensor_header(unsigned char *out, WireDtype dtype, int ndim, const int64_t *shape, size_t nbytes,
                               uint32_t crc);
size_t wire_dtype_size(WireDtype d);   // 0 for an unknown dtype

// ---- sockets ----
// Receives one whole message. router != 0: the first frame is the peer's routing id
// (kept in m->route; the socket must be a ROUTER, and must not be one otherwise).
// Every frame of the message is read off the socket whatever happens, so a bad
// message never leaves the socket mid-message. *m is overwritten: free a previous
// message first. A malformed message is never copied; the zmq frames are released.
// Returns WIRE_OK, a WireStatus (malformed: err says why, m->id and m->type are the
// envelope's when it parsed, so the caller can answer), or -1 when the socket itself
// failed or was interrupted (errno kept; EINTR, EAGAIN on a receive timeout).
int wire_recv(void *sock, int router, const WireLimits *lim, WireMsg *m, char *err, size_t errn);
void wire_msg_free(WireMsg *m);   // frees text and payloads; leaves {0}; NULL-safe

// Sends an envelope and n tensors (header + payload each). Payloads are sent without a
// copy: *owned[i], when owned is not NULL and owned[i] is not NULL, is malloc'd memory
// that the send takes (zmq frees it once it is on the wire); the caller's pointer is
// set to NULL only when the send succeeded (on failure the caller still owns it).
// Tensors whose owned entry is NULL are copied into the message (small ones).
// An owned buffer must be t[i].data itself, and no buffer may be given twice.
// route/route_len: on a ROUTER, the peer to send to (required there, NULL otherwise).
// Blocking (or ZMQ_SNDTIMEO) sends; every frame is built before the first is sent, so
// no allocation can fail half-way through a message.
// Returns 0, or -1 with a message (mdgan/error.h) naming the failure, errno kept
// (EAGAIN: no peer / queue full within ZMQ_SNDTIMEO; EHOSTUNREACH: unknown route on
// a ZMQ_ROUTER_MANDATORY socket; EINTR before the first frame; ETERM).
// Ownership on failure: every buffer zmq has let go of stays the caller's (pointer
// untouched) -- that is every buffer of a message that failed at its first frame,
// the usual case. Only when a frame fails after earlier frames were queued can zmq
// still hold an earlier owned payload; that buffer is then zmq's (it frees it, the
// caller's pointer is set to NULL): the caller owns exactly the non-NULL pointers.
// The socket is never left mid-message: a failure after the first frame ends the
// message with an empty frame, which zmq drops or the peer rejects as malformed.
int wire_send(void *sock, const unsigned char *route, size_t route_len, uint16_t type, uint32_t status,
              uint64_t id, const char *text, const WireTensor *t, int n, void **owned[]);
// An error reply: status and the reason as text, no tensors.
int wire_send_error(void *sock, const unsigned char *route, size_t route_len, uint16_t type, uint32_t status,
                    uint64_t id, const char *reason);

// ---- endpoints and security ----
// The endpoint to use: `configured` when not empty, else "ipc://<run_dir>/sockets/<name>.sock"
// with the sockets folder created mode 0700. -1 when the path does not fit an ipc
// endpoint (the kernel's limit of about 107 bytes: the message says so and suggests a
// shorter run.dir or a tcp:// endpoint).
int wire_endpoint(char *out, size_t n, const char *configured, const char *run_dir, const char *name);
// Socket options every mdgan socket gets: LINGER 0, SNDHWM/RCVHWM hwm (>= 1), and CURVE
// when the keys are not empty (server: its secret key and CURVE_SERVER, and when
// curve_server_key is given too it must be that secret key's public key; client: the
// server's public key and a fresh keypair of its own; keys are 40 Z85 characters).
// Refuses (-1, a clear message naming the endpoint) without keys any endpoint but
// ipc://, inproc:// and tcp:// on 127.x.x.x, localhost or [::1]. It does not bind or
// connect: the caller does, after this call (CURVE options must precede connect).
// CURVE encrypts and authenticates the server; clients are not authenticated (no ZAP
// handler): anyone holding the server's public key may connect.
int wire_socket_setup(void *sock, const char *endpoint, int server, int hwm, const char *curve_server_key,
                      const char *curve_secret_key);

const char *wire_status_name(uint32_t status);   // "bad magic", "CRC mismatch", ...

#endif
