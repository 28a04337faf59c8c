#ifndef MDGAN_CONTROL_H
#define MDGAN_CONTROL_H
// The control plane (DESIGN.md section 4): the coordinator binds a ROUTER; each stage
// process connects a DEALER whose routing id is its stage name ("base", "refine",
// "serve") and reports what it does. Every message is a wire.h envelope without
// tensors whose text is one JSON object:
//
//   stage -> coordinator
//   HELLO       {"stage": s, "pid": n, "run": s}                 once, at start
//   PROGRESS    {"step": n, "total_steps": n, "epoch": n, "rate": x, "losses": {name: x}}
//   CHECKPOINT  {"path": s, "step": n, "epoch": n, "sha256": hex64, "bytes": n}
//   EVAL        {"step": n, "metrics": {name: x}}                 validation metrics
//   DONE        {"step": n, "total_steps": n}                     the work is finished
//   ERROR       {"message": s}                                    before a failing exit
//   HEARTBEAT   {}                                                every interval, from a thread
//   coordinator -> stage
//   STOP        {}            write a checkpoint and exit (as on SIGTERM)
//
// Paths are relative to the run folder (or absolute inside it). A malformed message is
// answered with a wire error reply and logged, never trusted.
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

enum {
    CTL_HELLO = 1,
    CTL_PROGRESS = 2,
    CTL_CHECKPOINT = 3,
    CTL_EVAL = 4,
    CTL_DONE = 5,
    CTL_ERROR = 6,
    CTL_HEARTBEAT = 7,
    CTL_STOP = 16,
};

const char *control_type_name(int type);   // "HELLO" ... ; "unknown" otherwise

// Checks a received message's text against its type's schema (required fields and
// their types, numbers finite or null, sha256 hex, non-negative steps). Returns
// WIRE_OK with *body the parsed object (the caller's to json_decref), or WIRE_E_TYPE /
// WIRE_E_REQUEST with err saying which field is wrong.
int control_check(int type, const char *text, json_t **body, char *err, size_t errn);

// ---- the stage side: a DEALER owned by a thread, so heartbeats go on while the
// stage decodes data, waits for a peer or evaluates. STOP from the coordinator calls
// train_request_stop(SIGTERM).
typedef struct ControlClient ControlClient;

// Connects to endpoint as `identity`; heartbeats every interval_s seconds. server_key:
// the coordinator's CURVE public key ("" = none). NULL with a message on failure.
ControlClient *control_client_start(const char *endpoint, const char *identity, double interval_s,
                                    const char *server_key);
// Queues a message; takes body (a JSON object). Never blocks; a full queue drops the
// oldest PROGRESS first. NULL cc does nothing (a stage run by hand).
void control_post(ControlClient *cc, int type, json_t *body);
// Sends what is queued (up to flush_s seconds), stops the thread and closes. NULL-safe.
void control_client_stop(ControlClient *cc, double flush_s);
// A STOP has arrived.
int control_stop_requested(const ControlClient *cc);

// The heartbeat interval a stage uses for coord.heartbeat_s: a fifth of it, in
// [0.05, 5] seconds, so several beats fit in the coordinator's timeout.
double control_heartbeat_interval(int heartbeat_s);

#endif
