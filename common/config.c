// pipeline.conf and --set: every key is one row of CONFIG_KEYS (include/mdgan/config.h);
// parsing, overrides, defaults and the canonical text walk that table.
//
// inih does the INI syntax. We feed it through our own line reader, which
//   - counts lines, so a handler error knows its line (inih only returns the line of
//     the first error, and the Debian build has no line numbers in the handler),
//   - drops leading whitespace, so an indented line is never glued to the previous
//     key as a multi-line value,
//   - refuses lines longer than inih's buffer instead of letting inih split them,
//   - reports an unknown [section] at its header, even when it holds no keys.
#include "mdgan/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "mdgan/error.h"
#include "mdgan/loss.h"
#include "mdgan/sha256.h"

// ---------------------------------------------------------------------------
// The table

// Each row's C type must match its ConfigType; a mismatch is a compile error.
#define CFG_CTYPE_CFG_INT    int: 1
#define CFG_CTYPE_CFG_BOOL   int: 1
#define CFG_CTYPE_CFG_U64    uint64_t: 1
#define CFG_CTYPE_CFG_DOUBLE double: 1
#define CFG_CTYPE_CFG_STR    char *: 1
#define CFG_TYPECHECK(sec, key, type, lo, hi, range, def)                                  \
    _Static_assert(_Generic(((Config *)0)->sec.key, CFG_CTYPE_##type, default: 0),        \
                   #sec "." #key " has the wrong C type for " #type);
CONFIG_KEYS(CFG_TYPECHECK)

#define CFG_ROW(sec, key, type, lo, hi, range, def)                                         \
    {#sec, #key, type, offsetof(Config, sec.key), sizeof(((Config *)0)->sec.key), (lo), (hi), \
     (range), def},
static const ConfigKey key_table[] = {CONFIG_KEYS(CFG_ROW)};
enum { NKEYS = sizeof key_table / sizeof key_table[0] };

const ConfigKey *config_keys(int *n) {
    *n = NKEYS;
    return key_table;
}

const ConfigKey *config_find(const char *section, const char *key) {
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(key_table[i].section, section) && !strcmp(key_table[i].key, key))
            return &key_table[i];
    return NULL;
}

static bool section_known(const char *section) {
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(key_table[i].section, section)) return true;
    return false;
}

// ---------------------------------------------------------------------------
// Values: text -> field, with the range of the row. err gets the reason only;
// callers add where it came from.

static void range_text(char *out, size_t n, const ConfigKey *k) {
    if (k->type == CFG_INT) {
        if (k->hi >= INT_MAX) snprintf(out, n, "an integer >= %.0f", k->lo);
        else snprintf(out, n, "an integer in [%.0f, %.0f]", k->lo, k->hi);
    } else if (k->type == CFG_DOUBLE) {
        snprintf(out, n, "a number in %c%g, %g%c", (k->range & CFG_LO_OPEN) ? '(' : '[', k->lo,
                 k->hi, (k->range & CFG_HI_OPEN) ? ')' : ']');
    } else if (k->type == CFG_U64) {
        snprintf(out, n, "an unsigned integer below 2^64");
    } else if (k->type == CFG_BOOL) {
        snprintf(out, n, "true/false, yes/no or 1/0");
    } else {
        snprintf(out, n, "a string of at most %zu characters", k->size - 1);
    }
}

static bool double_in_range(const ConfigKey *k, double v) {
    bool lo_ok = (k->range & CFG_LO_OPEN) ? v > k->lo : v >= k->lo;
    bool hi_ok = (k->range & CFG_HI_OPEN) ? v < k->hi : v <= k->hi;
    return isfinite(v) && lo_ok && hi_ok;
}

// Optional sign then decimal digits only: strtol alone would accept leading blanks
// and, for the unsigned case, a minus sign that wraps around.
static bool all_digits(const char *s, bool sign_ok) {
    if (sign_ok && (*s == '-' || *s == '+')) s++;
    if (!*s) return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return false;
    return true;
}

// A string must read back the same from config_to_text: no control characters, and
// no '#' or ';' first or after whitespace (the file syntax reads those as a comment;
// e.g. a CURVE key that starts with '#' cannot be used: generate another).
static const char *string_problem(const char *v) {
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) return "contains a control character";
        if ((*p == '#' || *p == ';') && (p == v || isspace((unsigned char)p[-1])))
            return "has '#' or ';' at its start or after a space, which a config file reads as a comment";
    }
    if (*v && (isspace((unsigned char)v[0]) || isspace((unsigned char)v[strlen(v) - 1])))
        return "starts or ends with whitespace";
    return NULL;
}

// A user's text as quoted in a message: at most max characters, control characters
// as '?', so that an error stays one readable line.
static void shown(char *out, size_t n, const char *s, size_t max) {
    size_t i = 0;
    for (; s[i] && i < max && i + 4 < n; i++)
        out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    out[i] = '\0';
    if (s[i] && i + 4 <= n) strcpy(out + i, "...");
}

static int key_set(Config *c, const ConfigKey *k, const char *v, char *err, size_t errn) {
    char *field = (char *)c + k->offset;
    char want[128];
    errno = 0;
    switch (k->type) {
    case CFG_INT: {
        if (!all_digits(v, true)) goto bad;
        long x = strtol(v, NULL, 10);
        if (errno == ERANGE || x < (long)k->lo || x > (long)k->hi) goto bad;
        *(int *)field = (int)x;
        return 0;
    }
    case CFG_U64: {
        if (!all_digits(v, false)) goto bad;
        unsigned long long x = strtoull(v, NULL, 10);
        if (errno == ERANGE) goto bad;
        *(uint64_t *)field = (uint64_t)x;
        return 0;
    }
    case CFG_DOUBLE: {
        char *end;
        if (!*v || isspace((unsigned char)*v)) goto bad;
        double x = strtod(v, &end);
        if (*end || errno == ERANGE || !double_in_range(k, x)) goto bad;
        *(double *)field = x;
        return 0;
    }
    case CFG_BOOL: {
        static const char *const yes[] = {"true", "yes", "1"}, *const no[] = {"false", "no", "0"};
        for (int i = 0; i < 3; i++) {
            if (!strcasecmp(v, yes[i])) { *(int *)field = 1; return 0; }
            if (!strcasecmp(v, no[i])) { *(int *)field = 0; return 0; }
        }
        goto bad;
    }
    case CFG_STR: {
        size_t len = strlen(v);
        if (len >= k->size) {
            snprintf(err, errn, "value for %s.%s is too long (%zu characters, at most %zu)",
                     k->section, k->key, len, k->size - 1);
            return -1;
        }
        const char *why = string_problem(v);
        if (why) {
            snprintf(err, errn, "value for %s.%s %s", k->section, k->key, why);
            return -1;
        }
        memset(field, 0, k->size);
        memcpy(field, v, len);
        return 0;
    }
    }
bad:
    range_text(want, sizeof want, k);
    char vs[100];
    shown(vs, sizeof vs, v, 80);
    snprintf(err, errn, "bad value '%s' for %s.%s: expected %s", vs, k->section, k->key, want);
    return -1;
}

void config_defaults(Config *c) {
    memset(c, 0, sizeof *c);
    char err[256];
    for (int i = 0; i < NKEYS; i++)
        if (key_set(c, &key_table[i], key_table[i].def, err, sizeof err) != 0) {
            // A compiled-in default outside its own range is a bug in CONFIG_KEYS
            // (test_config parses every default), not a user error.
            fprintf(stderr, "mdgan: bad built-in default: %s\n", err);
            abort();
        }
}

// ---------------------------------------------------------------------------
// Files

typedef struct {
    Config cfg;              // work copy: the caller's struct changes only on success
    const char *name;        // file name for messages
    const char *text;        // whole input, NUL-terminated
    size_t pos;
    int lineno;              // line last handed to inih (inih handles one line per read)
    int err_line;
    char err[700];           // first error only; inih keeps going after one
    int seen_line[NKEYS];    // line of each key's first assignment, 0 = not yet
    // The value of a line longer than inih's buffer, handed to the handler past inih
    // (see parse_reader); has_long while inih carries the line with LONG_MARK instead.
    char long_value[CONFIG_MAX_LINE + 1];
    int has_long;
} Parse;

// What inih gets in place of a long value: a control character, which no value may
// hold (string_problem refuses them), so it cannot be confused with one.
#define LONG_MARK "\x01"

// The value of "key = value" or "key: value" (inih splits at the first '=' or ':') in
// line[0, full), trimmed as inih trims it; NULL when the line has no separator.
static const char *value_of(const char *line, size_t full, size_t *sep, size_t *len) {
    size_t i = 0;
    while (i < full && line[i] != '=' && line[i] != ':') i++;
    if (i == full) return NULL;
    *sep = i;
    size_t a = i + 1, b = full;
    while (a < b && isspace((unsigned char)line[a])) a++;
    while (b > a && isspace((unsigned char)line[b - 1])) b--;
    *len = b - a;
    return line + a;
}

__attribute__((format(printf, 2, 3))) static void parse_error(Parse *p, const char *fmt, ...) {
    if (p->err[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    p->err_line = p->lineno;
}

// fgets-like reader for inih over p->text.
static char *parse_reader(char *str, int num, void *stream) {
    Parse *p = stream;
    if (!p->text[p->pos]) return NULL;
    const char *line = p->text + p->pos;
    const char *nl = strchr(line, '\n');
    size_t full = nl ? (size_t)(nl - line) : strlen(line);
    p->pos += full + (nl ? 1 : 0);
    p->lineno++;
    // A UTF-8 byte order mark before the first line (inih would skip it) goes here, so
    // that a [section] on that line is checked like any other.
    if (p->lineno == 1 && full >= 3 && !memcmp(line, "\xef\xbb\xbf", 3)) line += 3, full -= 3;
    while (full && (*line == ' ' || *line == '\t')) line++, full--;
    if (full && (line[0] == '#' || line[0] == ';')) full = 0;   // a comment line, of any length
    // An inline comment starts at '#' or ';' after whitespace (as in Python's
    // configparser), so "key =  # note" is an empty value; inih itself knows only ';'.
    if (full && line[0] != '[')
        for (size_t i = 1; i < full; i++)
            if ((line[i] == '#' || line[i] == ';') && isspace((unsigned char)line[i - 1])) {
                full = i;
                break;
            }
    if (full > CONFIG_MAX_LINE) {
        parse_error(p, "line too long (%zu characters, at most %d)", full, CONFIG_MAX_LINE);
        snprintf(str, (size_t)num, "\n");
        return str;
    }
    // inih's line buffer is fixed when it is built (Debian's libinih: 200 bytes, room
    // for 197 characters and "\r\n\0"), while a path may take a thousand, and the
    // run's snapshot must read back whatever --set accepted. A longer line reaches inih
    // as "key=" LONG_MARK, its value kept here for the handler.
    size_t sep, vlen;
    const char *v;
    if (full + 3 > (size_t)num && line[0] != '[' && (v = value_of(line, full, &sep, &vlen)) &&
        sep + sizeof LONG_MARK + 3 <= (size_t)num) {
        memcpy(p->long_value, v, vlen);
        p->long_value[vlen] = '\0';
        p->has_long = 1;
        memcpy(str, line, sep);
        snprintf(str + sep, (size_t)num - sep, "=%s\n", LONG_MARK);
        return str;
    }
    if (full + 3 > (size_t)num) {
        parse_error(p, "line too long for its key or section (%zu characters, at most %d)", full, num - 3);
        snprintf(str, (size_t)num, "\n");
        return str;
    }
    memcpy(str, line, full);
    str[full] = '\n';
    str[full + 1] = '\0';
    if (line[0] == '[') {
        const char *close = memchr(line, ']', full);
        if (close) {
            char sec[256];
            size_t n = (size_t)(close - line - 1);
            if (n >= sizeof sec) n = sizeof sec - 1;
            memcpy(sec, line + 1, n);
            sec[n] = '\0';
            char ss[80];
            shown(ss, sizeof ss, sec, 60);
            if (!section_known(sec)) parse_error(p, "unknown section [%s]", ss);
        }
    }
    return str;
}

static int parse_handler(void *user, const char *section, const char *key, const char *value) {
    Parse *p = user;
    if (p->has_long && !strcmp(value, LONG_MARK)) value = p->long_value;
    p->has_long = 0;
    char name[80];   // the key as quoted in messages (the section is checked in the reader)
    shown(name, sizeof name, key, 60);
    if (!*section) {
        parse_error(p, "key '%s' outside a section", name);
        return 0;
    }
    const ConfigKey *k = config_find(section, key);
    if (!k) {
        char ss[80];
        shown(ss, sizeof ss, section, 60);
        if (section_known(section)) parse_error(p, "unknown key '%s' in [%s]", name, section);
        else parse_error(p, "unknown section [%s]", ss);
        return 0;
    }
    int idx = (int)(k - key_table);
    if (p->seen_line[idx]) {
        parse_error(p, "duplicate key '%s' in [%s] (first set on line %d)", name, section,
                    p->seen_line[idx]);
        return 0;
    }
    p->seen_line[idx] = p->lineno;
    char err[400];
    if (key_set(&p->cfg, k, value, err, sizeof err) != 0) {
        parse_error(p, "%s", err);
        return 0;
    }
    return 1;
}

int config_parse(Config *c, const char *text, const char *name) {
    Parse *p = calloc(1, sizeof *p);
    if (!p) {
        MDGAN_ERR("%s: out of memory", name);
        return -1;
    }
    p->cfg = *c;
    p->name = name;
    p->text = text;
    int r = ini_parse_stream(parse_reader, p, parse_handler, p);
    int rc = 0;
    // The earliest problem wins: inih's own syntax errors carry no message of ours.
    if (r > 0 && (!p->err[0] || r < p->err_line)) {
        MDGAN_ERR("%s:%d: syntax error (expected [section] or key = value)", name, r);
        rc = -1;
    } else if (p->err[0]) {
        MDGAN_ERR("%s:%d: %s", name, p->err_line, p->err);
        rc = -1;
    } else if (r != 0) {
        MDGAN_ERR("%s: cannot parse (inih returned %d)", name, r);
        rc = -1;
    }
    if (rc == 0) *c = p->cfg;
    free(p);
    return rc;
}

int config_load(Config *c, const char *path) {
    enum { MAX_BYTES = 1 << 20 };
    FILE *f = fopen(path, "rb");
    if (!f) {
        MDGAN_ERR("cannot open config %s: %s", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(MAX_BYTES + 1);
    if (!buf) {
        fclose(f);
        MDGAN_ERR("%s: out of memory", path);
        return -1;
    }
    size_t n = fread(buf, 1, MAX_BYTES + 1, f);
    int rerr = ferror(f) ? errno : 0;
    if (fclose(f) != 0 && !rerr) rerr = errno;
    if (rerr) {
        MDGAN_ERR("cannot read config %s: %s", path, strerror(rerr));
        free(buf);
        return -1;
    }
    if (n > MAX_BYTES) {
        MDGAN_ERR("config %s is larger than %d bytes", path, MAX_BYTES);
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    const char *nul = memchr(buf, '\0', n);
    if (nul) {
        int line = 1;
        for (const char *q = buf; q < nul; q++) line += *q == '\n';
        MDGAN_ERR("%s:%d: NUL byte in a text file", path, line);
        free(buf);
        return -1;
    }
    int rc = config_parse(c, buf, path);
    free(buf);
    return rc;
}

static void trim(char *s) {
    size_t a = 0, n = strlen(s);
    while (a < n && isspace((unsigned char)s[a])) a++;
    while (n > a && isspace((unsigned char)s[n - 1])) n--;
    memmove(s, s + a, n - a);
    s[n - a] = '\0';
}

int config_set(Config *c, const char *assignment) {
    char as[140];   // the argument as quoted in messages
    shown(as, sizeof as, assignment, 120);
    size_t len = strlen(assignment);
    char *buf = malloc(len + 1);
    if (!buf) {
        MDGAN_ERR("--set %s: out of memory", as);
        return -1;
    }
    memcpy(buf, assignment, len + 1);
    char *eq = strchr(buf, '=');
    char *dot = eq ? memchr(buf, '.', (size_t)(eq - buf)) : NULL;
    int rc = -1;
    if (!eq || !dot) {
        MDGAN_ERR("--set %s: expected section.key=value", as);
        goto out;
    }
    *eq = '\0';
    *dot = '\0';
    char *section = buf, *key = dot + 1, *value = eq + 1;
    trim(section);
    trim(key);
    trim(value);
    const ConfigKey *k = config_find(section, key);
    if (!k) {
        char ss[80], ks[80];
        shown(ss, sizeof ss, section, 60);
        shown(ks, sizeof ks, key, 60);
        if (section_known(section)) MDGAN_ERR("--set %s: unknown key '%s' in [%s]", as, ks, ss);
        else MDGAN_ERR("--set %s: unknown section [%s]", as, ss);
        goto out;
    }
    char err[400];
    if (key_set(c, k, value, err, sizeof err) != 0) {
        MDGAN_ERR("--set %s: %s", as, err);
        goto out;
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

// ---------------------------------------------------------------------------
// Validation

static bool z85_key(const char *s) {
    static const char z85[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              ".-:+=^!/*?&<>()[]{}@%$#";
    if (strlen(s) != 40) return false;
    for (; *s; s++)
        if (!strchr(z85, *s)) return false;
    return true;
}

// "" (default ipc:// in the run dir), ipc://, or tcp:// on the loopback need no keys.
static bool endpoint_local(const char *e) {
    static const char *const ok[] = {"ipc://", "tcp://127.0.0.1:", "tcp://localhost:", "tcp://[::1]:"};
    if (!*e) return true;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strncmp(e, ok[i], strlen(ok[i]))) return true;
    return false;
}

static int check_endpoint(const Config *c, const char *key, const char *e) {
    if (*e && strncmp(e, "ipc://", 6) && strncmp(e, "tcp://", 6)) {
        MDGAN_ERR("transport.%s = '%s': expected an ipc:// or tcp:// endpoint (or empty)", key, e);
        return -1;
    }
    if (!endpoint_local(e) && !c->transport.curve_server_key[0]) {
        MDGAN_ERR("transport.%s = '%s' is not a local endpoint: set transport.curve_server_key "
                  "and transport.curve_secret_key (CURVE) to use it", key, e);
        return -1;
    }
    return 0;
}

int config_validate(const Config *c) {
    char want[128];
    for (int i = 0; i < NKEYS; i++) {
        const ConfigKey *k = &key_table[i];
        const char *field = (const char *)c + k->offset;
        bool ok = true;
        if (k->type == CFG_INT) ok = *(const int *)field >= k->lo && *(const int *)field <= k->hi;
        if (k->type == CFG_BOOL) ok = *(const int *)field == 0 || *(const int *)field == 1;
        if (k->type == CFG_DOUBLE) ok = double_in_range(k, *(const double *)field);
        if (k->type == CFG_STR) ok = memchr(field, '\0', k->size) && !string_problem(field);
        if (!ok) {
            range_text(want, sizeof want, k);
            MDGAN_ERR("%s.%s is out of range: expected %s", k->section, k->key, want);
            return -1;
        }
    }
    static const struct { const char *what; size_t off; } nonempty[] = {
        {"run.name", offsetof(Config, run.name)}, {"run.dir", offsetof(Config, run.dir)},
        {"data.root", offsetof(Config, data.root)}, {"coord.db", offsetof(Config, coord.db)}};
    for (size_t i = 0; i < sizeof nonempty / sizeof nonempty[0]; i++)
        if (!*((const char *)c + nonempty[i].off)) {
            MDGAN_ERR("%s must not be empty", nonempty[i].what);
            return -1;
        }
    RankForm form;
    if (rank_form_parse(c->refine.rank_form, &form) != 0) {
        char vs[100];
        shown(vs, sizeof vs, c->refine.rank_form, 40);
        MDGAN_ERR("refine.rank_form = '%s' is not a ranking-loss form: expected paper or bounded", vs);
        return -1;
    }
    if (strcmp(c->refine.init, "g1") != 0 && strcmp(c->refine.init, "random") != 0) {
        char vs[100];
        shown(vs, sizeof vs, c->refine.init, 40);
        MDGAN_ERR("refine.init = '%s' is not a way to start G2: expected g1 or random", vs);
        return -1;
    }
    // The run name becomes a folder name under run.dir.
    if (strchr(c->run.name, '/') || !strcmp(c->run.name, ".") || !strcmp(c->run.name, "..")) {
        MDGAN_ERR("run.name = '%s' must be a plain name (no '/', not . or ..)", c->run.name);
        return -1;
    }
    if (c->data.size % 2) {
        MDGAN_ERR("data.size = %d must be even", c->data.size);
        return -1;
    }
    // The levels rule of the network builder (see the brief): after conv1 the extent is
    // (T, S/2, S/2) and a stride-2 level needs even extents and S/2 >= 4 after it; the
    // nets need two levels, i.e. T % 4 == 0, S % 8 == 0 and S >= 32.
    int t = c->data.frames, h = c->data.size / 2, levels = 0;
    while (t % 2 == 0 && h % 2 == 0 && h / 2 >= 4) t /= 2, h /= 2, levels++;
    if (levels < 2) {
        MDGAN_ERR("data.frames = %d with data.size = %d gives an impossible network shape (%d "
                  "stride-2 level%s, 2 needed: frames a multiple of 4, size a multiple of 8 and >= 32)",
                  c->data.frames, c->data.size, levels, levels == 1 ? "" : "s");
        return -1;
    }
    // The client (refine) needs only the server's public key; the server both.
    const char *sk = c->transport.curve_server_key, *sec = c->transport.curve_secret_key;
    if (*sec && !*sk) {
        MDGAN_ERR("transport.curve_secret_key is set without transport.curve_server_key (the server's public key)");
        return -1;
    }
    if ((*sk && !z85_key(sk)) || (*sec && !z85_key(sec))) {
        MDGAN_ERR("transport.%s is not a CURVE key (40 Z85 characters)",
                  z85_key(sk) ? "curve_secret_key" : "curve_server_key");
        return -1;
    }
    if (check_endpoint(c, "data_endpoint", c->transport.data_endpoint) != 0 ||
        check_endpoint(c, "control_endpoint", c->transport.control_endpoint) != 0)
        return -1;
    // One batch tensor (Y or Y1) of the refine stage crosses the data plane whole.
    uint64_t bytes = (uint64_t)c->refine.batch * 3 * (uint64_t)c->data.frames *
                     (uint64_t)c->data.size * (uint64_t)c->data.size * sizeof(float);
    if (bytes > ((uint64_t)c->transport.max_message_mb << 20)) {
        MDGAN_ERR("transport.max_message_mb = %d is smaller than one batch tensor (%.1f MiB = "
                  "refine.batch %d x 3 x data.frames %d x data.size %d^2 x 4 bytes)",
                  c->transport.max_message_mb, (double)bytes / (1 << 20), c->refine.batch,
                  c->data.frames, c->data.size);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Canonical text

typedef struct { char *buf; size_t len, cap; bool oom; } Text;

__attribute__((format(printf, 2, 3))) static void text_add(Text *t, const char *fmt, ...) {
    if (t->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) { t->oom = true; return; }
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->len + (size_t)n + 1) cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) { t->oom = true; return; }
        t->buf = b;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

// Shortest %.*g that strtod reads back to the same double (17 digits always do).
static void format_double(char *out, size_t n, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

int config_to_text(const Config *c, char **text) {
    Text t = {0};
    *text = NULL;
    for (int i = 0; i < NKEYS; i++) {
        const ConfigKey *k = &key_table[i];
        const char *field = (const char *)c + k->offset;
        if (i == 0 || strcmp(k->section, key_table[i - 1].section))
            text_add(&t, "%s[%s]\n", i ? "\n" : "", k->section);
        switch (k->type) {
        case CFG_INT: text_add(&t, "%s = %d\n", k->key, *(const int *)field); break;
        case CFG_BOOL: text_add(&t, "%s = %s\n", k->key, *(const int *)field ? "true" : "false"); break;
        case CFG_U64: text_add(&t, "%s = %" PRIu64 "\n", k->key, *(const uint64_t *)field); break;
        case CFG_DOUBLE: {
            char num[40];
            format_double(num, sizeof num, *(const double *)field);
            text_add(&t, "%s = %s\n", k->key, num);
            break;
        }
        case CFG_STR:
            // A secret never leaves the process in the canonical text (it is stored in
            // checkpoints and hashed); the serving side takes it from its own config.
            if (k->offset == offsetof(Config, transport.curve_secret_key)) field = "";
            // Bounded: a struct edited in code may lack its NUL.
            if (*field) text_add(&t, "%s = %.*s\n", k->key, (int)strnlen(field, k->size), field);
            else text_add(&t, "%s =\n", k->key);
            break;
        }
    }
    if (t.oom) {
        free(t.buf);
        MDGAN_ERR("config text: out of memory");
        return -1;
    }
    *text = t.buf;
    return 0;
}

int config_sha256(const Config *c, char hex[65]) {
    char *text;
    if (config_to_text(c, &text) != 0) return -1;
    unsigned char h[32];
    sha256(h, text, strlen(text));
    free(text);
    sha256_hex(hex, h);
    return 0;
}
