// libFuzzer target for the config parser and the --set syntax (common/config.c).
// Build and run: `make fuzz`.
//
// Input: byte 0 picks the syntax. Odd: the rest is a list of --set arguments, one a
// line, applied in turn with config_set. Even: the rest is a config file, parsed from
// memory with config_parse (up to a NUL) and, when byte 0 & 15 is 2, also read
// with config_load from a file in a private temporary folder.
//
// Beyond "no crash, no leak, no UB" it aborts when an invariant fails:
//   - a refusal leaves the Config as it was and a one-line message (no control
//     characters) that starts with the file's name and a line number within the file,
//     or with "--set ";
//   - config_load and config_parse agree on the same text (status, message, values);
//   - an accepted Config's canonical text (config_to_text) parses back to the same
//     values (the CURVE secret, never written, aside) and the same text, and its
//     "key = value" lines given as --set arguments give them too; config_validate
//     answers 0 or -1 with a message; config_sha256 gives 64 hex digits.
//
// Built with -DFUZZ_GENERATOR it writes the seed corpus instead (`make fuzz-corpus`).
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdgan/config.h"
#include "fuzzutil.h"

#define NAME "fuzz.conf"   // config_parse's name for the text

// config_set on each line of text in turn; 0 when every one is accepted. A refused
// one is shown to refused (may be NULL) with the Config from before it.
static int apply_sets(Config *c, char *text, size_t n, void (*refused)(const Config *c, const Config *before)) {
    int all = 1;
    for (char *line = text, *end = text + n; line <= end;) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        if (nl) *nl = '\0';
        Config before = *c;
        mdgan_errclear();
        if (config_set(c, line) != 0) {
            all = 0;
            if (refused) refused(c, &before);
        }
        if (!nl) break;
        *nl = '\n';
        line = nl + 1;
    }
    return all ? 0 : -1;
}

#ifndef FUZZ_GENERATOR

// The input's text as a NUL-terminated copy (it may hold NULs of its own).
static char *input_text(const uint8_t *data, size_t size, size_t *n) {
    *n = size > 1 ? size - 1 : 0;
    char *t = malloc(*n + 1);
    if (!t) return NULL;
    if (*n) memcpy(t, data + 1, *n);
    t[*n] = '\0';
    return t;
}

// Field by field from the key table (a struct copy need not copy padding, so no
// memcmp of the whole): 1 when a and b hold the same values; skip: a key not compared.
static int same_values(const Config *a, const Config *b, const ConfigKey *skip) {
    int nk;
    const ConfigKey *k = config_keys(&nk);
    for (int i = 0; i < nk; i++) {
        if (&k[i] == skip) continue;
        const char *x = (const char *)a + k[i].offset, *y = (const char *)b + k[i].offset;
        if (k[i].type == CFG_STR ? strncmp(x, y, k[i].size) != 0 : memcmp(x, y, k[i].size) != 0) return 0;
    }
    return 1;
}

static void check_message(const char *prefix, size_t nlines) {
    const char *m = mdgan_errmsg();
    CHECK(m[0] != '\0');
    for (const char *p = m; *p; p++) CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    size_t lp = strlen(prefix);
    CHECK(strncmp(m, prefix, lp) == 0);
    if (nlines && m[lp] == ':' && isdigit((unsigned char)m[lp + 1])) {
        long line = strtol(m + lp + 1, NULL, 10);
        CHECK(line >= 1 && (size_t)line <= nlines);
    }
}

// A refused --set leaves the Config as it was and says so.
static void check_set_refused(const Config *c, const Config *before) {
    check_message("--set ", 0);
    CHECK(same_values(c, before, NULL));
}

// The invariants of an accepted Config.
static void check_accepted(const Config *c) {
    const ConfigKey *secret = config_find("transport", "curve_secret_key");
    CHECK(secret != NULL);
    char *text;
    CHECK(config_to_text(c, &text) == 0 && text);
    Config d;
    config_defaults(&d);
    CHECK(config_parse(&d, text, "canonical") == 0);
    CHECK(same_values(c, &d, secret));
    CHECK(((const char *)&d + secret->offset)[0] == '\0');
    char *again;
    CHECK(config_to_text(&d, &again) == 0 && strcmp(text, again) == 0);
    free(again);

    // each "key = value" of the text as "section.key=value"
    Config e;
    config_defaults(&e);
    char section[64] = "", *copy = strdup(text);
    CHECK(copy != NULL);
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '[') {
            snprintf(section, sizeof section, "%.*s", (int)strcspn(line + 1, "]"), line + 1);
            continue;
        }
        char *eq = strstr(line, " =");
        CHECK(eq != NULL);
        char set[2048];
        snprintf(set, sizeof set, "%s.%.*s=%s", section, (int)(eq - line), line, eq[2] ? eq + 3 : "");
        CHECK(config_set(&e, set) == 0);
    }
    free(copy);
    CHECK(same_values(&d, &e, NULL));
    free(text);

    mdgan_errclear();
    if (config_validate(c) != 0) CHECK_FAILED_WITH_MESSAGE();
    char hex[65];
    CHECK(config_sha256(c, hex) == 0 && strlen(hex) == 64 && strspn(hex, "0123456789abcdef") == 64);
}

static size_t count_lines(const char *t, size_t n) {
    size_t lines = 1;
    for (size_t i = 0; i < n; i++) lines += t[i] == '\n';
    return lines;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t n;
    char *text = input_text(data, size, &n);
    CHECK(text != NULL);
    Config defaults, c;
    config_defaults(&defaults);
    c = defaults;
    if (size && (data[0] & 1)) {
        Config step = defaults;
        int rc = apply_sets(&step, text, n, check_set_refused);
        if (rc == 0) check_accepted(&step);
        free(text);
        return 0;
    }

    // From memory (the text up to a NUL), then, for an input that asks (byte 0 & 15
    // is 2), from a file: config_load's 1 MB buffer costs ten parses under ASan.
    mdgan_errclear();
    int rm = config_parse(&c, text, NAME);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", mdgan_errmsg());
    if (rm != 0) {
        check_message(NAME, count_lines(text, n));
        CHECK(same_values(&c, &defaults, NULL));
    } else {
        CHECK(msg[0] == '\0');
        check_accepted(&c);
    }
    int has_nul = strlen(text) != n;
    if (size && (data[0] & 15) == 2) {
        char path[4200];
        fuzz_input_file(path, sizeof path, NAME, (const uint8_t *)text, n);
        Config f = defaults;
        mdgan_errclear();
        int rc = config_load(&f, path);
        if (rc != 0) {
            check_message(path, count_lines(text, n));
            CHECK(same_values(&f, &defaults, NULL));
        }
        if (!has_nul) {   // the same text: the same answer
            CHECK(rc == rm && same_values(&f, &c, NULL));
            CHECK(rc == 0 || strcmp(mdgan_errmsg() + strlen(path), msg + strlen(NAME)) == 0);
        } else {
            CHECK(rc == -1 && strstr(mdgan_errmsg(), "NUL byte"));
        }
    }
    free(text);
    return 0;
}

#else // FUZZ_GENERATOR: the seed corpus

static char gen_tmp[4200];

// mode (byte 0) even: the bytes are a file (read with config_load), odd: --set lines.
static void seed_bytes(const char *name, int mode, const char *text, size_t n) {
    char *b = malloc(n + 2);
    if (!b) exit(1);
    b[0] = (char)mode;
    memcpy(b + 1, text, n);
    b[n + 1] = '\0';
    Config c;
    config_defaults(&c);
    mdgan_errclear();
    int rc;
    if (mode & 1) {
        rc = apply_sets(&c, b + 1, n, NULL);
    } else {
        if (fuzz_write_file(gen_tmp, text, n) != 0) exit(1);
        rc = config_load(&c, gen_tmp);
    }
    seed_write(name, b, n + 1, rc == 0);
    free(b);
}

static void seed(const char *name, int mode, const char *text) { seed_bytes(name, mode, text, strlen(text)); }

int main(int argc, char **argv) {
    seed_begin(argc, argv, "fuzz_config_gen");
    fuzz_tmp_path(gen_tmp, sizeof gen_tmp, NAME);
    size_t n;
    unsigned char *pipeline = fuzz_read_file("pipeline.conf", &n);
    if (!pipeline) {
        fprintf(stderr, "fuzz_config_gen: run me from the repository (pipeline.conf)\n");
        return 1;
    }
    char *pc = realloc(pipeline, n + 1);
    if (!pc) return 1;
    pc[n] = '\0';
    seed("ok_pipeline_conf", 2, pc);
    free(pc);
    Config c;
    config_defaults(&c);
    char *text;
    if (config_to_text(&c, &text) != 0) return 1;
    seed("ok_canonical_defaults", 0, text);
    free(text);

    // ---- files
    seed("ok_empty", 0, "");
    seed("ok_comments", 0, "# a comment\n; another\n\n[run]\nname = sky1   # inline\nseed = 7 ; also inline\n");
    seed("ok_indented_crlf", 0, "  [data]\r\n\tframes = 8\r\n  size = 64\r\n");
    seed("ok_bom", 2, "\xef\xbb\xbf[run]\nname = bom\n");
    seed("ok_all_types", 0, "[run]\nseed = 18446744073709551615\n[base]\nlr = 1e-3\n[coord]\nrestart = No\n"
                            "[transport]\ndata_endpoint = tcp://127.0.0.1:5555\n");
    seed("ok_empty_value", 0, "[transport]\ncurve_server_key =\n");
    seed("ok_utf8_name", 0, "[run]\nname = caf\xc3\xa9-\xff\n");
    seed("ok_colon", 0, "[run]\nname: colon\n");
    seed("bad_unknown_section", 0, "[nope]\n");
    seed("bad_unknown_key", 0, "[run]\nnope = 1\n");
    seed("bad_key_outside", 0, "name = x\n");
    seed("bad_duplicate", 0, "[run]\nname = a\n\n[run]\nname = b\n");
    seed("bad_int", 0, "[data]\nframes = 8x\n");
    seed("bad_int_range", 0, "[data]\nframes = 1\n");
    seed("bad_int_overflow", 0, "[run]\nthreads = 99999999999999999999\n");
    seed("bad_u64_negative", 0, "[run]\nseed = -1\n");
    seed("bad_u64_overflow", 0, "[run]\nseed = 18446744073709551616\n");
    seed("bad_double_nan", 0, "[base]\nlr = nan\n");
    seed("bad_double_inf", 0, "[base]\nlambda_l1 = inf\n");
    seed("bad_double_open", 0, "[base]\nlr = 0\n");
    seed("bad_double_hex", 0, "[base]\nlr = 0x1p-3z\n");
    seed("bad_bool", 0, "[coord]\nrestart = maybe\n");
    seed("bad_string_long", 0, "[refine]\nrank_form = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n");
    char longline[CONFIG_MAX_LINE + 100];   // a line one past CONFIG_MAX_LINE
    snprintf(longline, sizeof longline, "[data]\nroot = %0*d\n", CONFIG_MAX_LINE + 1 - 7, 7);
    seed("bad_line_long", 0, longline);
    snprintf(longline, sizeof longline, "[data]\nroot = /%0900d\n[run]\nname = x\n", 3);
    seed("ok_long_path", 0, longline);   // a line past inih's own 200-byte buffer
    seed("bad_no_equals", 0, "[run]\nname\n");
    seed("bad_open_bracket", 0, "[run\nname = x\n");
    seed("bad_empty_section", 0, "[]\nname = x\n");
    seed("bad_bom_unknown_section", 2, "\xef\xbb\xbf[\tun]\nname = bom\n");   // found by fuzzing
    seed("bad_control_char", 0, "[run]\nname = a\x01z\n");
    static const char nul[] = "[run]\nname = a\0b\n";
    seed_bytes("bad_nul_byte", 2, nul, sizeof nul - 1);

    // ---- --set lists
    seed("ok_set_one", 1, "run.name=sky1");
    seed("ok_set_several", 1, "data.frames=8\ndata.size=64\nbase.lr=1e-4\ncoord.restart=false");
    seed("ok_set_spaces", 1, "  data . size =  64  ");
    seed("ok_set_empty_string", 1, "transport.data_endpoint=");
    seed("ok_set_equals_in_value", 1, "run.name=a=b");
    seed("bad_set_no_dot", 1, "name=1");
    seed("bad_set_no_equals", 1, "run.name");
    seed("bad_set_unknown_key", 1, "run.nokey=1");
    seed("bad_set_unknown_section", 1, "nosec.key=1");
    seed("bad_set_range", 1, "base.keep=0");
    seed("bad_set_comment_start", 1, "run.name=#x");
    seed("bad_set_empty", 1, "");
    return seed_end("fuzz_config_gen");
}

#endif
