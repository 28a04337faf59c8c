#ifndef MDGAN_DATAPLANE_H
#define MDGAN_DATAPLANE_H
// The data plane between Base-Net and Refine-Net (DESIGN.md section 4), on wire.h
// messages. mdgan-base serve binds a ROUTER; mdgan-refine train connects a DEALER.
//
//   HELLO   request text {"frames", "size", "clips", "clips_sha256", "data_sha256",
//           "g1_sha256" (the G1 the client trained against, "" when it has none yet)}
//           reply text {"g1_sha256", "checkpoint", "clips", "root"}; status
//           WIRE_E_MISMATCH and a message naming the field when the two disagree.
//   BATCH   request: one I64 tensor (n) of clip indices; reply: Y and Y1, F32
//           (n, 3, T, S, S) each. The request id is the client's tag, echoed.
//   WEIGHTS request: nothing; reply text {"ngf", "g1_sha256"} and two F32 tensors, G1's
//           parameters and its BatchNorm running statistics, in its table order.
// Any other type gets WIRE_E_TYPE; a malformed message its WireStatus; an index out
// of range WIRE_E_REQUEST. The server is stateless between requests, so a client may
// restart at any time, and a restarted server answers the same bytes.
#include <stddef.h>
#include <stdint.h>

#include "mdgan/config.h"
#include "mdgan/dataset.h"
#include "mdgan/net.h"
#include "mdgan/wire.h"

enum { DP_HELLO = 1, DP_BATCH = 2, DP_WEIGHTS = 3 };

// What both sides compare in HELLO: the clip list (names and windows) and the decoded
// frames of the dataset, as sha256 hex.
typedef struct {
    int frames, size, clips;
    char clips_sha256[65], data_sha256[65];
} DataIdentity;
void dataplane_identity(const Dataset *ds, DataIdentity *id);

// The data endpoint both sides use: `override` (--base) when given, else
// transport.data_endpoint, else ipc://<run.dir>/<run.name>/sockets/data.sock.
int dataplane_endpoint(char *out, size_t n, const Config *c, const char *override);

// A peer's frame larger than max_payload plus the largest envelope makes zmq drop that
// connection before it allocates the frame: set on every data-plane socket (a server,
// whose requests are small, passes 0).
int dataplane_cap_frames(void *sock, size_t max_payload);

// Before a server binds an ipc:// endpoint: refuses (-1, naming the pid-less peer) when a
// live server answers on that socket file, and removes a file a killed one left.
int dataplane_ipc_claim(const char *endpoint);

// ---- server ----
// Y1 for clips idx[0..n): y (n, 3, T, S, S) is filled already; write y1. 0 or -1.
typedef int (*DpProduce)(void *ctx, const float *y, int n, float *y1);

typedef struct {
    const Dataset *ds;
    DataIdentity id;
    const char *g1_sha256, *checkpoint;
    DpProduce produce;
    void *ctx;
    const Net *g1;               // for WEIGHTS
    WireLimits lim;
    int max_batch;               // largest n a request may ask for
    long served, errors;         // counters, for the log
} DpServer;

// Serves on the bound ROUTER `sock` until SIGINT/SIGTERM (train_signal_fd, which must
// be installed). Every bad request is answered and logged; the loop goes on. Returns
// 0 on a signal, -1 when the socket itself fails.
int dataplane_serve(DpServer *srv, void *sock);

// ---- client ----
typedef struct DpClient DpClient;

// Connects to endpoint and says HELLO (waiting up to timeout_s for a server).
// *g1_sha256 (65 bytes): in, the G1 the run trained against ("" = any); out, the
// server's. -1 with a message naming the endpoint and the mismatch.
DpClient *dataplane_connect(const char *endpoint, const DataIdentity *id, char *g1_sha256, int timeout_s,
                            int inflight, size_t max_payload, const char *curve_server_key);
void dataplane_close(DpClient *c);
// Queues a request for clips idx[0..n) under `tag` (a caller's unique number); it is
// sent at once while fewer than `inflight` requests are outstanding, else on the next
// wait. Requests are answered in the order they were queued.
int dataplane_request(DpClient *c, uint64_t tag, const int *idx, int n);
// Waits for the reply to `tag` (queued before) and copies Y and Y1 out. If the server
// goes away, says so, waits up to timeout_s for one to come back (HELLO again, same
// G1), re-sends every outstanding request and goes on. -1 with a message when the
// server is gone for good, answered an error, or a signal came (train_stop_signal).
int dataplane_wait(DpClient *c, uint64_t tag, float *y, float *y1);
// G1's weights from the server: builds *g1 (NET_G1 for T frames of S x S, the server's
// width) and checks them against the digest HELLO gave. No request may be in flight.
int dataplane_fetch_g1(DpClient *c, int T, int S, Net *g1);
// Seconds spent blocked in dataplane_wait, and the number of reconnections.
double dataplane_wait_seconds(const DpClient *c);
int dataplane_reconnects(const DpClient *c);

#endif
