#ifndef MDGAN_CONFIG_H
#define MDGAN_CONFIG_H
// The run configuration: pipeline.conf (INI, parsed with inih) plus --set overrides.
//
// One table, CONFIG_KEYS below, lists every key once: section, key, type, range and
// default. Parsing, --set, the defaults, the canonical text and the tests all walk
// that table; there is no per-key code. Adding a key = a field in Config + one row.
//
// File syntax: `[section]`, `key = value`, comments are whole lines starting with
// '#' or ';', and inline comments from a '#' or ';' that follows whitespace (so
// `key =  # note` sets an empty value; a string cannot start with '#' or ';').
// Leading whitespace on a line is ignored (no multi-line values).
// Lines are limited to CONFIG_MAX_LINE characters, room for the longest value (a
// path) and its key. Strings are taken verbatim (no quotes, no escapes). Every error
// names FILE:LINE (or the --set argument) and the key.

#include <limits.h>   // INT_MAX in CONFIG_KEYS
#include <stddef.h>
#include <stdint.h>

typedef struct {
    struct { char name[128]; char dir[1024]; uint64_t seed; int threads; } run;
    struct { char root[1024]; int frames; int size; double val_fraction; } data;
    struct {
        int ngf, ndf, batch, epochs;
        double lr, beta1, beta2, lambda_l1;
        int ckpt_every, sample_every, keep;
    } base;
    struct {
        int ngf, ndf, batch, epochs;
        double lr, beta1, beta2, lambda_l1, lambda_rank;
        char rank_form[16];                                 // "paper" or "bounded" (loss.h RankForm)
        char init[16];                                      // G2's start: "g1" (G1's weights) or "random"
        int ckpt_every, sample_every, keep;
    } refine;
    struct {
        char data_endpoint[512], control_endpoint[512];   // "" = ipc:// socket in the run dir
        int inflight;                                       // batch requests in flight (credits)
        int max_message_mb;                                 // cap on one tensor payload
        int timeout_s;                                      // Refine-Net's wait for a Base-Net that is gone
        char curve_server_key[128], curve_secret_key[128];  // Z85, 40 characters; "" = none
    } transport;
    struct { char db[1024]; int heartbeat_s; int restart; int max_restarts; } coord;
} Config;

typedef enum { CFG_INT, CFG_U64, CFG_DOUBLE, CFG_STR, CFG_BOOL } ConfigType;

// Range flags: the bounds are inclusive unless marked open.
enum { CFG_CLOSED = 0, CFG_LO_OPEN = 1, CFG_HI_OPEN = 2 };

// X(section, key, type, lo, hi, range flags, default text)
// int: lo..hi (hi = INT_MAX: no upper bound); double: lo..hi (hi = HUGE_VAL: none);
// uint64 / string / bool ignore lo, hi; a string's cap is its array size - 1. A string
// with a fixed set of values (refine.rank_form) is checked by config_validate.
// Defaults are text, parsed by the same code as a file, so a default can never be
// out of its own range (test_config checks each one).
#define CONFIG_KEYS(X) \
    X(run, name,                 CFG_STR,    0, 0,        CFG_CLOSED,  "default") \
    X(run, dir,                  CFG_STR,    0, 0,        CFG_CLOSED,  "runs") \
    X(run, seed,                 CFG_U64,    0, 0,        CFG_CLOSED,  "1") \
    X(run, threads,              CFG_INT,    1, 1024,     CFG_CLOSED,  "2") \
    X(data, root,                CFG_STR,    0, 0,        CFG_CLOSED,  "data/synth") \
    X(data, frames,              CFG_INT,    2, 4096,     CFG_CLOSED,  "16") \
    X(data, size,                CFG_INT,    16, 4096,    CFG_CLOSED,  "32") \
    X(data, val_fraction,        CFG_DOUBLE, 0, 1,        CFG_HI_OPEN, "0.2") \
    X(base, ngf,                 CFG_INT,    1, 1024,     CFG_CLOSED,  "16") \
    X(base, ndf,                 CFG_INT,    1, 1024,     CFG_CLOSED,  "16") \
    X(base, batch,               CFG_INT,    1, 65536,    CFG_CLOSED,  "4") \
    X(base, epochs,              CFG_INT,    1, 1000000,  CFG_CLOSED,  "200") \
    X(base, lr,                  CFG_DOUBLE, 0, 1,        CFG_LO_OPEN, "2e-4") \
    X(base, beta1,               CFG_DOUBLE, 0, 1,        CFG_HI_OPEN, "0.5") \
    X(base, beta2,               CFG_DOUBLE, 0, 1,        CFG_HI_OPEN, "0.999") \
    X(base, lambda_l1,           CFG_DOUBLE, 0, 1e6,      CFG_CLOSED,  "100") \
    X(base, ckpt_every,          CFG_INT,    1, INT_MAX,  CFG_CLOSED,  "200") \
    X(base, sample_every,        CFG_INT,    1, INT_MAX,  CFG_CLOSED,  "200") \
    X(base, keep,                CFG_INT,    1, 1000,     CFG_CLOSED,  "3") \
    X(refine, ngf,               CFG_INT,    1, 1024,     CFG_CLOSED,  "16") \
    X(refine, ndf,               CFG_INT,    1, 1024,     CFG_CLOSED,  "16") \
    X(refine, batch,             CFG_INT,    1, 256,      CFG_CLOSED,  "4") \
    X(refine, epochs,            CFG_INT,    1, 1000000,  CFG_CLOSED,  "60") \
    X(refine, lr,                CFG_DOUBLE, 0, 1,        CFG_LO_OPEN, "2e-4") \
    X(refine, beta1,             CFG_DOUBLE, 0, 1,        CFG_HI_OPEN, "0.5") \
    X(refine, beta2,             CFG_DOUBLE, 0, 1,        CFG_HI_OPEN, "0.999") \
    X(refine, lambda_l1,         CFG_DOUBLE, 0, 1e6,      CFG_CLOSED,  "100") \
    X(refine, lambda_rank,       CFG_DOUBLE, 0, 1e6,      CFG_CLOSED,  "1") \
    X(refine, rank_form,         CFG_STR,    0, 0,        CFG_CLOSED,  "bounded") \
    X(refine, init,              CFG_STR,    0, 0,        CFG_CLOSED,  "g1") \
    X(refine, ckpt_every,        CFG_INT,    1, INT_MAX,  CFG_CLOSED,  "200") \
    X(refine, sample_every,      CFG_INT,    1, INT_MAX,  CFG_CLOSED,  "200") \
    X(refine, keep,              CFG_INT,    1, 1000,     CFG_CLOSED,  "3") \
    X(transport, data_endpoint,  CFG_STR,    0, 0,        CFG_CLOSED,  "") \
    X(transport, control_endpoint, CFG_STR,  0, 0,        CFG_CLOSED,  "") \
    X(transport, inflight,       CFG_INT,    1, 32,       CFG_CLOSED,  "2") \
    X(transport, max_message_mb, CFG_INT,    1, 65536,    CFG_CLOSED,  "256") \
    X(transport, timeout_s,      CFG_INT,    1, 86400,    CFG_CLOSED,  "60") \
    X(transport, curve_server_key, CFG_STR,  0, 0,        CFG_CLOSED,  "") \
    X(transport, curve_secret_key, CFG_STR,  0, 0,        CFG_CLOSED,  "") \
    X(coord, db,                 CFG_STR,    0, 0,        CFG_CLOSED,  "runs/mdgan.db") \
    X(coord, heartbeat_s,        CFG_INT,    1, 86400,    CFG_CLOSED,  "30") \
    X(coord, restart,            CFG_BOOL,   0, 1,        CFG_CLOSED,  "true") \
    X(coord, max_restarts,       CFG_INT,    0, 1000,     CFG_CLOSED,  "3")

typedef struct {
    const char *section, *key;
    ConfigType type;
    size_t offset;       // of the field in Config
    size_t size;         // of the field (a string holds size - 1 characters)
    double lo, hi;
    int range;           // CFG_CLOSED | CFG_LO_OPEN | CFG_HI_OPEN
    const char *def;     // default, as text
} ConfigKey;

// Longest line of a config file (after leading whitespace and an inline comment are
// cut): a 1023-character path and its key with room to spare. Lines longer than
// inih's own buffer reach it without their value (config.c, parse_reader).
#define CONFIG_MAX_LINE 2048

// The table (in CONFIG_KEYS order); *n = number of keys.
const ConfigKey *config_keys(int *n);
// The row of section.key, or NULL (sets no error).
const ConfigKey *config_find(const char *section, const char *key);

void config_defaults(Config *c);
// Applies the keys of FILE over *c (start from config_defaults). On error *c is
// unchanged and the message is "FILE:LINE: ...": unknown section [x], unknown key
// 'k' in [s], key 'k' outside a section, duplicate key, bad value 'v' for s.k:
// expected ..., line too long, syntax error.
int config_load(Config *c, const char *path);
// The same over text in memory; name stands for the file in messages (e.g. a run's
// stored config text).
int config_parse(Config *c, const char *text, const char *name);
// One "section.key=value" (from --set); errors start with "--set ASSIGNMENT: ".
int config_set(Config *c, const char *assignment);
// Per-key ranges again (the struct may have been edited in code), the strings with a
// fixed set of values (refine.rank_form: paper or bounded), and cross-field
// checks: data.size even, a network shape that frames x size allows, both CURVE keys
// or none, CURVE keys for an endpoint other than ipc:// or loopback tcp://, a tensor
// of one batch within transport.max_message_mb, non-empty names and paths.
int config_validate(const Config *c);
// Canonical INI text of every value (malloc'd, caller frees): table order, one
// "key = value" per line, doubles in the shortest form that reads back to the same
// bits, bools as true/false. Comments and spacing of the source do not show, so
// the sha256 of this text identifies the configuration. transport.curve_secret_key is
// always written empty: the text goes into checkpoints, and a secret must not.
int config_to_text(const Config *c, char **text);
// hex = lowercase sha256 of config_to_text (65 bytes with the NUL).
int config_sha256(const Config *c, char hex[65]);

#endif
