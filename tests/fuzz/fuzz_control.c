// libFuzzer target for the control plane's messages (common/control.c): what the
// coordinator runs on a message a stage sent. Build and run: `make fuzz`.
//
// Input: a u16 little-endian message type, then the text (any bytes, NULs included).
//
// Run on every input, as the coordinator's pump does: the text is put in a real
// envelope (wire_encode_envelope), parsed back with wire_parse_frames under the
// coordinator's limits (no tensor payloads), and control_check runs on the parsed
// message's text; control_check also runs on the input's text directly. Beyond "no
// crash, no leak, no UB" it aborts when an invariant fails:
//   - both calls agree (status, reason, body), and the envelope round-trips;
//   - a failure has a reason and no body, WIRE_E_TYPE exactly for an unknown type;
//   - an accepted body is an object whose required fields have the types the protocol
//     promises (checked here from control.h's table, not from control.c's), and it
//     survives being sent again: json_dumps, control_check, the same text.
//
// Built with -DFUZZ_GENERATOR it writes the seed corpus instead (`make fuzz-corpus`).
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdgan/control.h"
#include "mdgan/wire.h"
#include "fuzzutil.h"

#ifndef FUZZ_GENERATOR

// The input format: type, then text as a NUL-terminated copy (text_len bytes, which
// may hold NULs of their own). NULL when out of memory.
static char *split_input(const uint8_t *data, size_t size, int *type, size_t *text_len) {
    *type = size >= 2 ? data[0] | data[1] << 8 : 0;
    size_t n = size >= 2 ? size - 2 : 0;
    char *text = malloc(n + 1);
    if (!text) return NULL;
    if (n) memcpy(text, data + 2, n);
    text[n] = '\0';
    *text_len = n;
    return text;
}

// control.h's schema, restated: 'c' a count in [0, 2^53], 't' a string of 1..max
// bytes without NUL, 'n' a finite number or null, 'N' an object of at most 64 of
// those under names of 1-64 bytes, 'h' 64 lowercase hex digits.
typedef struct {
    const char *key;
    char kind;
    size_t max;
} Want;

static const Want *schema_of(int type) {
    static const Want hello[] = {{"stage", 't', 64}, {"pid", 'c', 0}, {"run", 't', 255}, {0}};
    static const Want progress[] = {{"step", 'c', 0}, {"total_steps", 'c', 0}, {"epoch", 'c', 0},
                                    {"rate", 'n', 0}, {"losses", 'N', 0},      {0}};
    static const Want checkpoint[] = {{"path", 't', 4096}, {"step", 'c', 0}, {"epoch", 'c', 0},
                                      {"sha256", 'h', 0},  {"bytes", 'c', 0}, {0}};
    static const Want eval[] = {{"step", 'c', 0}, {"metrics", 'N', 0}, {0}};
    static const Want done[] = {{"step", 'c', 0}, {"total_steps", 'c', 0}, {0}};
    static const Want error[] = {{"message", 't', 8192}, {0}};
    static const Want none[] = {{0}};
    switch (type) {
    case CTL_HELLO: return hello;
    case CTL_PROGRESS: return progress;
    case CTL_CHECKPOINT: return checkpoint;
    case CTL_EVAL: return eval;
    case CTL_DONE: return done;
    case CTL_ERROR: return error;
    case CTL_HEARTBEAT:
    case CTL_STOP: return none;
    default: return NULL;
    }
}

static int finite_or_null(const json_t *v) {
    return json_is_null(v) || (json_is_number(v) && isfinite(json_number_value(v)));
}

static void check_field(const json_t *o, const Want *w) {
    const json_t *v = json_object_get(o, w->key);
    CHECK(v != NULL);
    switch (w->kind) {
    case 'c':
        CHECK(json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= (json_int_t)1 << 53);
        break;
    case 't':
        CHECK(json_is_string(v) && json_string_length(v) >= 1 && json_string_length(v) <= w->max);
        CHECK(strlen(json_string_value(v)) == json_string_length(v));
        break;
    case 'n': CHECK(finite_or_null(v)); break;
    case 'N': {
        CHECK(json_is_object(v) && json_object_size(v) <= 64);
        const char *name;
        json_t *x;
        json_object_foreach((json_t *)v, name, x) {
            CHECK(strlen(name) >= 1 && strlen(name) <= 64);
            CHECK(finite_or_null(x));
        }
        break;
    }
    case 'h': {
        const char *s = json_string_value(v);
        CHECK(s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64);
        break;
    }
    default: CHECK(0);
    }
}

// One control_check with the invariants that hold for any input; returns the status.
static int check_one(int type, const char *text, json_t **body, char *why, size_t whyn) {
    int st = control_check(type, text, body, why, whyn);
    CHECK(memchr(why, '\0', whyn) != NULL);
    const Want *schema = schema_of(type);
    CHECK(strcmp(control_type_name(type), "unknown") == 0 ? !schema : schema != NULL);
    if (st != WIRE_OK) {
        CHECK(*body == NULL && why[0] != '\0');
        CHECK(st == (schema ? WIRE_E_REQUEST : WIRE_E_TYPE));
        return st;
    }
    CHECK(schema && why[0] == '\0' && json_is_object(*body));
    for (const Want *w = schema; w->key; w++) check_field(*body, w);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int type;
    size_t text_len;
    char *text = split_input(data, size, &type, &text_len);
    CHECK(text != NULL);

    char why[512];
    json_t *body;
    int st = check_one(type, text, &body, why, sizeof why);

    // The same text as the coordinator receives it: an envelope off the socket.
    if (text_len <= WIRE_MAX_TEXT && type <= 0xffff) {
        unsigned char *env = malloc(WIRE_ENVELOPE_BYTES + text_len);
        CHECK(env != NULL);
        wire_encode_envelope(env, (uint16_t)type, 0, 7, 0, text, text_len);
        const void *frames[1] = {env};
        const size_t lens[1] = {WIRE_ENVELOPE_BYTES + text_len};
        const WireLimits lim = {.max_payload = 0};
        WireMsg m;
        char werr[256];
        CHECK(wire_parse_frames(frames, lens, 1, &lim, &m, werr, sizeof werr) == WIRE_OK);
        CHECK(m.type == type && m.ntensors == 0 && m.text_len == text_len && !memcmp(m.text, text, text_len));
        char why2[512];
        json_t *body2;
        int st2 = check_one(m.type, m.text, &body2, why2, sizeof why2);
        CHECK(st2 == st && strcmp(why2, why) == 0);
        CHECK(st != WIRE_OK || json_equal(body, body2));
        json_decref(body2);
        wire_msg_free(&m);
        free(env);
    }

    // An accepted body sent again (as a stage would) is accepted as the same object.
    if (st == WIRE_OK) {
        char *again = json_dumps(body, JSON_COMPACT);
        CHECK(again != NULL);
        json_t *body3;
        CHECK(check_one(type, again, &body3, why, sizeof why) == WIRE_OK);
        CHECK(json_equal(body, body3));
        char *twice = json_dumps(body3, JSON_COMPACT);
        CHECK(twice && strcmp(again, twice) == 0);
        free(twice);
        free(again);
        json_decref(body3);
    }
    json_decref(body);
    free(text);
    return 0;
}

#else // FUZZ_GENERATOR: the seed corpus

static void seed(const char *name, int type, const char *text) {
    size_t n = strlen(text);
    unsigned char *b = malloc(n + 2);
    if (!b) exit(1);
    b[0] = (unsigned char)type;
    b[1] = (unsigned char)(type >> 8);
    memcpy(b + 2, text, n);
    json_t *body;
    char why[512];
    int accepted = control_check(type, text, &body, why, sizeof why) == WIRE_OK;
    json_decref(body);
    mdgan_seterr_at(__FILE__, __LINE__, "%s", why);
    seed_write(name, b, n + 2, accepted);
    free(b);
}

#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// Each message type's valid seeds as trainer.c posts them, then the malformed ones.
static const struct {
    const char *name;
    int type;
    const char *text;
} SEEDS[] = {
    {"ok_hello", CTL_HELLO, "{\"stage\":\"base\",\"pid\":4242,\"run\":\"sky1\"}"},
    {"ok_progress", CTL_PROGRESS,
     "{\"step\":120,\"total_steps\":2400,\"epoch\":3,\"rate\":1.25,\"losses\":{\"g_l1\":0.31,\"g_adv\":0.7,"
     "\"d\":null}}"},
    {"ok_progress_null_rate", CTL_PROGRESS,
     "{\"step\":0,\"total_steps\":1,\"epoch\":0,\"rate\":null,\"losses\":{}}"},
    {"ok_checkpoint", CTL_CHECKPOINT,
     "{\"path\":\"checkpoints/base_step_00000200.safetensors\",\"step\":200,\"epoch\":4,\"sha256\":\"" SHA
     "\",\"bytes\":1048576}"},
    {"ok_checkpoint_absolute", CTL_CHECKPOINT,
     "{\"path\":\"/runs/sky1/checkpoints/x.safetensors\",\"step\":1,\"epoch\":0,\"sha256\":\"" SHA
     "\",\"bytes\":0}"},
    {"ok_eval", CTL_EVAL, "{\"step\":200,\"metrics\":{\"val_l1\":0.2,\"psnr\":20.5,\"ssim\":0.53,"
     "\"motion_ratio\":null}}"},
    {"ok_done", CTL_DONE, "{\"step\":2400,\"total_steps\":2400}"},
    {"ok_error", CTL_ERROR, "{\"message\":\"cannot write checkpoints/x: No space left on device\"}"},
    {"ok_heartbeat", CTL_HEARTBEAT, "{}"},
    {"ok_stop", CTL_STOP, "{}"},
    {"ok_extra_fields", CTL_DONE, "{\"step\":1,\"total_steps\":2,\"note\":[1,2,{\"a\":\"b\"}]}"},
    {"ok_unicode", CTL_ERROR, "{\"message\":\"caf\\u00e9 \\ud83d\\ude00 \xc3\xa9\"}"},
    {"ok_step_2p53", CTL_DONE, "{\"step\":9007199254740992,\"total_steps\":0}"},
    {"bad_unknown_type", 42, "{}"},
    {"bad_type_zero", 0, "{}"},
    {"bad_empty_text", CTL_HEARTBEAT, ""},
    {"bad_array", CTL_HEARTBEAT, "[]"},
    {"bad_truncated", CTL_HELLO, "{\"stage\":\"base\",\"pid\":"},
    {"bad_duplicate_key", CTL_DONE, "{\"step\":1,\"step\":2,\"total_steps\":2}"},
    {"bad_nul_escape", CTL_HELLO, "{\"stage\":\"ba\\u0000se\",\"pid\":1,\"run\":\"r\"}"},
    {"bad_empty_stage", CTL_HELLO, "{\"stage\":\"\",\"pid\":1,\"run\":\"r\"}"},
    {"bad_negative_pid", CTL_HELLO, "{\"stage\":\"base\",\"pid\":-1,\"run\":\"r\"}"},
    {"bad_step_real", CTL_PROGRESS, "{\"step\":3.5,\"total_steps\":9,\"epoch\":0,\"rate\":1,\"losses\":{}}"},
    {"bad_step_2p53_plus", CTL_DONE, "{\"step\":9007199254740993,\"total_steps\":0}"},
    {"bad_rate_string", CTL_PROGRESS, "{\"step\":3,\"total_steps\":9,\"epoch\":0,\"rate\":\"fast\",\"losses\":{}}"},
    {"bad_rate_huge", CTL_PROGRESS, "{\"step\":3,\"total_steps\":9,\"epoch\":0,\"rate\":1e999,\"losses\":{}}"},
    {"bad_losses_array", CTL_PROGRESS, "{\"step\":3,\"total_steps\":9,\"epoch\":0,\"rate\":1,\"losses\":[1]}"},
    {"bad_losses_string", CTL_PROGRESS,
     "{\"step\":3,\"total_steps\":9,\"epoch\":0,\"rate\":1,\"losses\":{\"a\":\"x\"}}"},
    {"bad_losses_empty_name", CTL_PROGRESS,
     "{\"step\":3,\"total_steps\":9,\"epoch\":0,\"rate\":1,\"losses\":{\"\":1}}"},
    {"bad_sha_upper", CTL_CHECKPOINT,
     "{\"path\":\"x\",\"step\":1,\"epoch\":0,\"sha256\":\"0123456789ABCDEF0123456789abcdef0123456789abcdef"
     "0123456789abcdef\",\"bytes\":1}"},
    {"bad_sha_missing", CTL_CHECKPOINT, "{\"path\":\"x\",\"step\":1,\"epoch\":0,\"bytes\":1}"},
    {"bad_metrics_missing", CTL_EVAL, "{\"step\":0}"},
    {"bad_message_number", CTL_ERROR, "{\"message\":3}"},
    {"bad_not_utf8", CTL_ERROR, "{\"message\":\"\xff\xfe\"}"},
    {"bad_trailing", CTL_HEARTBEAT, "{} {}"},
};

int main(int argc, char **argv) {
    seed_begin(argc, argv, "fuzz_control_gen");
    for (size_t i = 0; i < sizeof SEEDS / sizeof SEEDS[0]; i++) seed(SEEDS[i].name, SEEDS[i].type, SEEDS[i].text);
    return seed_end("fuzz_control_gen");
}

#endif
