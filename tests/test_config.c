// Config: the key table, file errors with their line, --set, validation, the canonical
// text round trip and the shipped pipeline.conf.
#include "testutil.h"

#include "mdgan/config.h"

static char tmpdir[4096];

static int setup(void **state) {
    (void)state;
    make_tmpdir(tmpdir, sizeof tmpdir);
    return 0;
}
static int teardown(void **state) {
    (void)state;
    rm_rf(tmpdir);
    return 0;
}

// Fails unless rc is -1 and the message contains every given fragment.
static void expect_error(int rc, const char *frag1, const char *frag2) {
    const char *msg = mdgan_errmsg();
    printf("    error: %s\n", msg);
    if (rc != -1) fail_msg("expected -1, got %d (wanted an error with '%s')", rc, frag1);
    if (frag1 && !strstr(msg, frag1)) fail_msg("message '%s' lacks '%s'", msg, frag1);
    if (frag2 && !strstr(msg, frag2)) fail_msg("message '%s' lacks '%s'", msg, frag2);
    assert_int_equal(count_lines(msg), 0);
}

// Loads text from a real file over the defaults.
static int load_text(Config *c, const char *text, char *path, size_t pathn) {
    snprintf(path, pathn, "%s/test.conf", tmpdir);
    write_text_file(path, text);
    config_defaults(c);
    mdgan_errclear();
    return config_load(c, path);
}

// Field-by-field equality over the table (padding and bytes after a string's NUL
// do not count).
static int config_equal(const Config *a, const Config *b, char *which, size_t n) {
    int nk;
    const ConfigKey *keys = config_keys(&nk);
    for (int i = 0; i < nk; i++) {
        const ConfigKey *k = &keys[i];
        const char *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
        int same = 1;
        switch (k->type) {
        case CFG_INT: case CFG_BOOL: same = *(const int *)fa == *(const int *)fb; break;
        case CFG_U64: same = *(const uint64_t *)fa == *(const uint64_t *)fb; break;
        case CFG_DOUBLE: same = memcmp(fa, fb, sizeof(double)) == 0; break;
        case CFG_STR: same = strcmp(fa, fb) == 0; break;
        }
        if (!same) {
            snprintf(which, n, "%s.%s", k->section, k->key);
            return 0;
        }
    }
    return 1;
}

// ---------------------------------------------------------------------------

// Every default parses through --set and the whole default config validates.
static void test_defaults(void **state) {
    (void)state;
    int nk;
    const ConfigKey *keys = config_keys(&nk);
    assert_true(nk >= 40);
    Config c;
    config_defaults(&c);
    for (int i = 0; i < nk; i++) {
        char a[1200];
        snprintf(a, sizeof a, "%s.%s=%s", keys[i].section, keys[i].key, keys[i].def);
        if (config_set(&c, a) != 0) fail_msg("default %s does not parse: %s", a, mdgan_errmsg());
        assert_ptr_equal(config_find(keys[i].section, keys[i].key), &keys[i]);
    }
    if (config_validate(&c) != 0) fail_msg("defaults do not validate: %s", mdgan_errmsg());
    assert_string_equal(c.run.name, "default");
    assert_int_equal(c.data.frames, 16);
    assert_int_equal(c.data.size, 32);
    assert_true(c.base.lr == 2e-4 && c.refine.lambda_rank == 1.0 && c.coord.restart == 1);
    assert_true(c.run.seed == 1);
    assert_string_equal(c.refine.rank_form, "bounded");
    assert_int_equal(c.transport.timeout_s, 60);
    assert_null(config_find("base", "lambda_rank"));
    assert_null(config_find("nope", "ngf"));
}

// The table's ranges, walked: each bound is accepted, one step past it refused.
static void test_ranges_from_table(void **state) {
    (void)state;
    int nk, checked = 0;
    const ConfigKey *keys = config_keys(&nk);
    for (int i = 0; i < nk; i++) {
        const ConfigKey *k = &keys[i];
        Config c;
        config_defaults(&c);
        char a[256];
        if (k->type == CFG_INT) {
            snprintf(a, sizeof a, "%s.%s=%.0f", k->section, k->key, k->lo);
            assert_int_equal(config_set(&c, a), 0);
            snprintf(a, sizeof a, "%s.%s=%.0f", k->section, k->key, k->lo - 1);
            expect_error(config_set(&c, a), "bad value", k->key);
            snprintf(a, sizeof a, "%s.%s=%.0f", k->section, k->key, k->hi);
            assert_int_equal(config_set(&c, a), 0);
            snprintf(a, sizeof a, "%s.%s=%.0f", k->section, k->key, k->hi + 1);
            expect_error(config_set(&c, a), "bad value", k->key);
            checked++;
        } else if (k->type == CFG_DOUBLE) {
            snprintf(a, sizeof a, "%s.%s=%.17g", k->section, k->key, k->lo);
            int rc = config_set(&c, a);
            if (k->range & CFG_LO_OPEN) expect_error(rc, "bad value", "(");
            else assert_int_equal(rc, 0);
            snprintf(a, sizeof a, "%s.%s=%.17g", k->section, k->key, k->hi);
            rc = config_set(&c, a);
            if (k->range & CFG_HI_OPEN) expect_error(rc, "bad value", ")");
            else assert_int_equal(rc, 0);
            snprintf(a, sizeof a, "%s.%s=%.17g", k->section, k->key, k->lo - 1e-3);
            expect_error(config_set(&c, a), "bad value", k->key);
            snprintf(a, sizeof a, "%s.%s=%.17g", k->section, k->key, k->hi * 1.001 + 1e-3);
            expect_error(config_set(&c, a), "bad value", k->key);
            checked++;
        } else if (k->type == CFG_STR) {
            size_t n = k->size;   // one character too many
            char *v = malloc(n + 1), *s = malloc(n + 200);
            memset(v, 'a', n);
            v[n] = '\0';
            snprintf(s, n + 200, "%s.%s=%s", k->section, k->key, v);
            expect_error(config_set(&c, s), "too long", k->key);
            v[n - 1] = '\0';   // exactly the cap
            snprintf(s, n + 200, "%s.%s=%s", k->section, k->key, v);
            assert_int_equal(config_set(&c, s), 0);
            assert_int_equal(strlen((char *)&c + k->offset), n - 1);
            free(v);
            free(s);
            checked++;
        }
    }
    printf("    %d ranged keys checked at both bounds\n", checked);
}

static void test_number_parsing(void **state) {
    (void)state;
    Config c;
    config_defaults(&c);
    static const char *const bad[] = {
        "base.batch=abc", "base.batch=", "base.batch=4x", "base.batch=1.5", "base.batch=0x10",
        "base.batch=99999999999999999999", "base.batch=-", "run.seed=-1", "run.seed=+1",
        "run.seed=18446744073709551616", "base.lr=nan", "base.lr=inf", "base.lr=1e999",
        "base.lr=2e-4x", "base.lr=", "coord.restart=maybe", "coord.restart=2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mdgan_errclear();
        char want[128];
        snprintf(want, sizeof want, "--set %s: ", bad[i]);
        expect_error(config_set(&c, bad[i]), want, "expected");
    }
    Config d;
    config_defaults(&d);
    char which[64];
    assert_true(config_equal(&c, &d, which, sizeof which));   // failures changed nothing

    assert_int_equal(config_set(&c, "run.seed=18446744073709551615"), 0);
    assert_true(c.run.seed == UINT64_MAX);
    assert_int_equal(config_set(&c, "base.batch=+8"), 0);
    assert_int_equal(c.base.batch, 8);
    assert_int_equal(config_set(&c, "base.lr=1E-3"), 0);
    assert_true(c.base.lr == 1e-3);
    static const struct { const char *v; int want; } bools[] = {
        {"true", 1}, {"false", 0}, {"yes", 1}, {"no", 0}, {"1", 1}, {"0", 0}, {"TRUE", 1}, {"No", 0}};
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        char a[64];
        snprintf(a, sizeof a, "coord.restart=%s", bools[i].v);
        assert_int_equal(config_set(&c, a), 0);
        assert_int_equal(c.coord.restart, bools[i].want);
    }
    expect_error(config_set(&c, "base.batch=abc"), "bad value 'abc' for base.batch: expected an integer", NULL);
    expect_error(config_set(&c, "base.lr=0"), "bad value '0' for base.lr: expected a number in (0, 1]", NULL);
}

// ---------------------------------------------------------------------------
// Files

static void test_file_errors(void **state) {
    (void)state;
    static const struct { const char *text; int line; const char *frag; } cases[] = {
        {"[base]\nngf = 8\nbogus = 1\n", 3, "unknown key 'bogus' in [base]"},
        {"[run]\nname = x\n\n[foo]\n", 4, "unknown section [foo]"},
        {"[foo]\na = 1\n", 1, "unknown section [foo]"},
        {"# comment\n\n[base]\nbatch = abc\n", 4, "bad value 'abc' for base.batch: expected an integer"},
        {"[base]\nbatch = 0\n", 2, "bad value '0' for base.batch"},
        {"seed = 3\n[run]\n", 1, "key 'seed' outside a section"},
        {"[run]\nseed = 1\nthreads = 2\nseed = 2\n", 4, "duplicate key 'seed' in [run] (first set on line 2)"},
        {"[run]\nseed = 1\n[data]\nframes = 8\n[run]\nseed = 2\n", 6, "duplicate key 'seed' in [run]"},
        {"[run]\nseed\n", 2, "syntax error"},
        {"[run\nseed = 1\n", 1, "syntax error"},
        {"[base]\nlr = 0.5\nlr = 0.7 ; again\n", 3, "duplicate key 'lr'"},
        // two problems: the earlier line is reported, whichever kind it is
        {"[run]\nseed = x\nnonsense line\n", 2, "bad value 'x' for run.seed"},
        {"[run]\nnonsense line\nseed = x\n", 2, "syntax error"},
        {"[data]\nroot = a ; comment\nframes = 8 # comment\nsize = 33.0\n", 4, "bad value '33.0' for data.size"},
        {"[coord]\nrestart = maybe\n", 2, "bad value 'maybe' for coord.restart: expected true/false"},
    };
    char path[4200];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Config c, d;
        int rc = load_text(&c, cases[i].text, path, sizeof path);
        char want[4300];
        snprintf(want, sizeof want, "%s:%d: ", path, cases[i].line);
        expect_error(rc, want, cases[i].frag);
        config_defaults(&d);
        char which[64];
        if (!config_equal(&c, &d, which, sizeof which))
            fail_msg("a failed load changed %s (case %zu)", which, i);
    }
}

// Found by tests/fuzz/fuzz_config: a UTF-8 byte order mark hid the [section] of the
// first line from the check at its header, so an unknown one was reported at its first
// key's line, with its control characters in the message.
static void test_bom_section(void **state) {
    (void)state;
    char path[4200], want[4300];
    Config c;
    int rc = load_text(&c, "\xef\xbb\xbf[\tun]\nname = bom\n", path, sizeof path);
    snprintf(want, sizeof want, "%s:1: unknown section [?un]", path);
    expect_error(rc, want, NULL);
    assert_int_equal(load_text(&c, "\xef\xbb\xbf  [run]\nname = bom\n", path, sizeof path), 0);
    assert_string_equal(c.run.name, "bom");
}

static void test_file_limits(void **state) {
    (void)state;
    char path[4200], want[4300];
    Config c;
    // missing file, a folder, a NUL byte
    config_defaults(&c);
    expect_error(config_load(&c, "/nonexistent/mdgan.conf"), "cannot open config /nonexistent/mdgan.conf", NULL);
    expect_error(config_load(&c, tmpdir), "cannot read config", tmpdir);
    snprintf(path, sizeof path, "%s/nul.conf", tmpdir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite("[run]\nseed = 1\0\n", 1, 16, f), 16);
    assert_int_equal(fclose(f), 0);
    snprintf(want, sizeof want, "%s:2: NUL byte", path);
    expect_error(config_load(&c, path), want, NULL);

    // Lines longer than inih's 200-byte buffer load: a 1000-character path in a file,
    // and one given with --set comes back from the snapshot's text (found by
    // tests/fuzz/fuzz_config: a run's config.conf of a long --set path did not read back).
    static char text[3 * CONFIG_MAX_LINE], val[CONFIG_MAX_LINE + 2];
    memset(val, 'd', 1000);
    val[1000] = '\0';
    snprintf(text, sizeof text, "[run]\ndir = %s   # a note\nseed = 5\n", val);
    assert_int_equal(load_text(&c, text, path, sizeof path), 0);
    assert_string_equal(c.run.dir, val);
    assert_int_equal((int)c.run.seed, 5);
    Config d;
    config_defaults(&d);
    snprintf(text, sizeof text, "transport.data_endpoint=ipc:///%0500d", 1);
    assert_int_equal(config_set(&d, text), 0);
    snprintf(text, sizeof text, "data.root=/%0900d", 2);
    assert_int_equal(config_set(&d, text), 0);
    char *snap;
    assert_int_equal(config_to_text(&d, &snap), 0);
    Config e;
    config_defaults(&e);
    assert_int_equal(config_parse(&e, snap, "snapshot"), 0);
    assert_string_equal(e.transport.data_endpoint, d.transport.data_endpoint);
    assert_string_equal(e.data.root, d.data.root);
    free(snap);
    // A line of CONFIG_MAX_LINE characters is read (here: a value too long for its key);
    // one more is a line too long; so is a key longer than inih's buffer.
    size_t vlen = CONFIG_MAX_LINE - strlen("dir = ");
    memset(val, 'd', vlen);
    val[vlen] = '\0';
    snprintf(text, sizeof text, "[run]\ndir = %s\n", val);
    snprintf(want, sizeof want, "%s:2: value for run.dir is too long", path);
    expect_error(load_text(&c, text, path, sizeof path), want, NULL);
    snprintf(text, sizeof text, "[run]\n\ndir = %sX\nseed = 5\n", val);
    snprintf(want, sizeof want, "%s:3: line too long (%d characters, at most %d)", path, CONFIG_MAX_LINE + 1,
             CONFIG_MAX_LINE);
    expect_error(load_text(&c, text, path, sizeof path), want, NULL);
    memset(val, 'k', 300);
    val[300] = '\0';
    snprintf(text, sizeof text, "[run]\n%s = 1\n", val);
    snprintf(want, sizeof want, "%s:2: line too long for its key or section", path);
    int rc = load_text(&c, text, path, sizeof path);
    expect_error(rc, want, NULL);
}

static void test_comments_and_blanks(void **state) {
    (void)state;
    const char *text =
        "# a comment\n"
        "; another\n"
        "\n"
        "   \n"
        "[run]\r\n"
        "  name = exp-1   # trailing comment\r\n"
        "\tseed=42 ; semicolon comment\n"
        "dir = /tmp/runs#not-a-comment\n"
        "\n"
        "    # indented comment\n"
        "[transport]\n"
        "data_endpoint = tcp://127.0.0.1:5555\n"
        "control_endpoint =   # empty, then a comment\n"
        "[base]\n"
        "    lr = 1e-3\n"       // indented: a key, not a continuation of the line before
        "  beta1 = 0.9\n";
    char path[4200];
    Config c;
    if (load_text(&c, text, path, sizeof path) != 0) fail_msg("%s", mdgan_errmsg());
    assert_string_equal(c.run.name, "exp-1");
    assert_true(c.run.seed == 42);
    assert_string_equal(c.run.dir, "/tmp/runs#not-a-comment");
    assert_string_equal(c.transport.data_endpoint, "tcp://127.0.0.1:5555");
    assert_string_equal(c.transport.control_endpoint, "");
    assert_true(c.base.lr == 1e-3 && c.base.beta1 == 0.9);
    assert_int_equal(c.run.threads, 2);   // untouched keys keep their defaults
    assert_int_equal(config_validate(&c), 0);
    // An empty file changes nothing.
    Config d;
    assert_int_equal(load_text(&c, "", path, sizeof path), 0);
    config_defaults(&d);
    char which[64];
    assert_true(config_equal(&c, &d, which, sizeof which));
}

static void test_set(void **state) {
    (void)state;
    char path[4200];
    Config c;
    assert_int_equal(load_text(&c, "[base]\nbatch = 8\n", path, sizeof path), 0);
    assert_int_equal(c.base.batch, 8);
    assert_int_equal(config_set(&c, "base.batch=2"), 0);           // --set wins over the file
    assert_int_equal(c.base.batch, 2);
    assert_int_equal(config_set(&c, "  base . batch =  3 "), 0);   // blanks around parts
    assert_int_equal(c.base.batch, 3);
    assert_int_equal(config_set(&c, "base.batch=5"), 0);           // the last --set wins
    assert_int_equal(c.base.batch, 5);
    assert_int_equal(config_set(&c, "run.name=a=b"), 0);           // value keeps later '='
    assert_string_equal(c.run.name, "a=b");
    assert_int_equal(config_set(&c, "transport.data_endpoint="), 0);
    assert_string_equal(c.transport.data_endpoint, "");
    assert_int_equal(config_set(&c, "run.dir=/data/x.y"), 0);
    assert_string_equal(c.run.dir, "/data/x.y");

    expect_error(config_set(&c, "base.batch=x"), "--set base.batch=x: bad value 'x' for base.batch", NULL);
    expect_error(config_set(&c, "base.batch"), "--set base.batch: expected section.key=value", NULL);
    expect_error(config_set(&c, "batch=3"), "--set batch=3: expected section.key=value", NULL);
    expect_error(config_set(&c, "foo.batch=3"), "--set foo.batch=3: unknown section [foo]", NULL);
    expect_error(config_set(&c, "base.bogus=3"), "--set base.bogus=3: unknown key 'bogus' in [base]", NULL);
    expect_error(config_set(&c, "base.lambda_rank=1"), "unknown key 'lambda_rank' in [base]", NULL);
    // strings that would not read back the same from the config text
    expect_error(config_set(&c, "run.name=a # b"), "--set run.name=a # b: value for run.name", "comment");
    expect_error(config_set(&c, "run.name=#x"), "value for run.name has '#' or ';' at its start", NULL);
    expect_error(config_set(&c, "run.name=a\tb\n"), "control character", NULL);
    assert_int_equal(c.base.batch, 5);
    assert_string_equal(c.run.name, "a=b");
}

// ---------------------------------------------------------------------------

static void test_validate(void **state) {
    (void)state;
    static const struct { const char *set1, *set2, *frag; } cases[] = {
        {"data.size=34", NULL, "impossible network shape"},
        {"data.size=33", NULL, "data.size = 33 must be even"},
        {"data.frames=6", NULL, "data.frames = 6 with data.size = 32"},
        {"data.frames=2", NULL, "impossible network shape"},
        {"data.size=24", NULL, "impossible network shape"},
        {"run.name=", NULL, "run.name must not be empty"},
        {"run.name=a/b", NULL, "run.name = 'a/b' must be a plain name"},
        {"data.root=", NULL, "data.root must not be empty"},
        {"transport.curve_secret_key=rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", NULL,
         "transport.curve_secret_key is set without transport.curve_server_key"},
        {"transport.curve_server_key=short", "transport.curve_secret_key=short", "not a CURVE key"},
        {"transport.data_endpoint=tcp://0.0.0.0:5555", NULL, "transport.data_endpoint = 'tcp://0.0.0.0:5555' is not a local endpoint"},
        {"transport.control_endpoint=udp://x", NULL, "transport.control_endpoint = 'udp://x': expected an ipc:// or tcp://"},
        {"refine.batch=64", "data.size=1024", "transport.max_message_mb = 256 is smaller than one batch tensor"},
        // a string with a fixed set of values: exact, lower case
        {"refine.rank_form=sometimes", NULL,
         "refine.rank_form = 'sometimes' is not a ranking-loss form: expected paper or bounded"},
        {"refine.rank_form=Paper", NULL, "refine.rank_form = 'Paper' is not a ranking-loss form"},
        {"refine.rank_form=", NULL, "refine.rank_form = '' is not a ranking-loss form: expected paper or bounded"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Config c;
        config_defaults(&c);
        if (config_set(&c, cases[i].set1) != 0) fail_msg("%s", mdgan_errmsg());
        if (cases[i].set2 && config_set(&c, cases[i].set2) != 0) fail_msg("%s", mdgan_errmsg());
        expect_error(config_validate(&c), cases[i].frag, NULL);
    }
    // valid non-default shapes and a remote endpoint with CURVE keys
    Config c;
    config_defaults(&c);
    assert_int_equal(config_set(&c, "data.frames=32"), 0);
    assert_int_equal(config_set(&c, "data.size=64"), 0);
    assert_int_equal(config_validate(&c), 0);
    assert_int_equal(config_set(&c, "data.size=40"), 0);   // 20 -> 10 -> 5: two levels
    assert_int_equal(config_validate(&c), 0);
    assert_int_equal(config_set(&c, "transport.data_endpoint=tcp://10.0.0.2:5555"), 0);
    assert_int_equal(config_set(&c, "transport.curve_server_key=rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"), 0);
    assert_int_equal(config_set(&c, "transport.curve_secret_key=JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"), 0);
    if (config_validate(&c) != 0) fail_msg("%s", mdgan_errmsg());
    // one data-plane request holds at most 256 clips; 32 requests in flight at most
    expect_error(config_set(&c, "refine.batch=257"), "bad value '257' for refine.batch: expected an integer in [1, 256]",
                 NULL);
    expect_error(config_set(&c, "transport.inflight=33"), "for transport.inflight: expected an integer in [1, 32]", NULL);
    // the secret key stays out of the canonical text (it goes into checkpoints)
    char *text;
    assert_int_equal(config_to_text(&c, &text), 0);
    assert_null(strstr(text, "JTKVSB"));
    assert_non_null(strstr(text, "curve_secret_key =\n"));
    free(text);
    // a client needs only the server's public key
    assert_int_equal(config_set(&c, "transport.curve_secret_key="), 0);
    if (config_validate(&c) != 0) fail_msg("%s", mdgan_errmsg());
    // both ranking-loss forms validate
    for (int i = 0; i < 2; i++) {
        config_defaults(&c);
        if (config_set(&c, i ? "refine.rank_form=bounded" : "refine.rank_form=paper") != 0)
            fail_msg("%s", mdgan_errmsg());
        if (config_validate(&c) != 0) fail_msg("%s", mdgan_errmsg());
    }
    // A struct edited in code is range-checked again.
    config_defaults(&c);
    c.base.lr = 0;
    expect_error(config_validate(&c), "base.lr is out of range: expected a number in (0, 1]", NULL);
    config_defaults(&c);
    c.coord.restart = 7;
    expect_error(config_validate(&c), "coord.restart is out of range", NULL);
    config_defaults(&c);
    c.refine.beta2 = 1.0;
    expect_error(config_validate(&c), "refine.beta2 is out of range: expected a number in [0, 1)", NULL);
    config_defaults(&c);
    memset(c.run.dir, 'x', sizeof c.run.dir);   // no NUL
    expect_error(config_validate(&c), "run.dir is out of range", NULL);
    config_defaults(&c);
    strcpy(c.refine.rank_form, "bound");
    expect_error(config_validate(&c), "refine.rank_form = 'bound'", "expected paper or bounded");
    config_defaults(&c);
    c.transport.timeout_s = 0;
    expect_error(config_validate(&c), "transport.timeout_s is out of range: expected an integer in [1, 86400]", NULL);
}

// The keys added for Stage II and its transport: from a file, from --set, and the
// bounds of transport.timeout_s.
static void test_refine_keys(void **state) {
    (void)state;
    char path[4200];
    Config c;
    if (load_text(&c, "[refine]\nrank_form = bounded   # scale-free\n[transport]\ntimeout_s = 5\n", path,
                  sizeof path) != 0)
        fail_msg("%s", mdgan_errmsg());
    assert_string_equal(c.refine.rank_form, "bounded");
    assert_int_equal(c.transport.timeout_s, 5);
    assert_int_equal(config_validate(&c), 0);
    // a bad form in a file loads (it is a string) and is refused by validation
    assert_int_equal(load_text(&c, "[refine]\nrank_form = l2\n", path, sizeof path), 0);
    expect_error(config_validate(&c), "refine.rank_form = 'l2' is not a ranking-loss form", NULL);
    config_defaults(&c);
    assert_int_equal(config_set(&c, "transport.timeout_s=86400"), 0);
    assert_int_equal(c.transport.timeout_s, 86400);
    expect_error(config_set(&c, "transport.timeout_s=86401"), "bad value '86401' for transport.timeout_s",
                 "expected an integer in [1, 86400]");
    expect_error(config_set(&c, "transport.timeout_s=0"), "bad value '0' for transport.timeout_s", NULL);
    expect_error(config_set(&c, "transport.timeout_s=1.5"), "bad value '1.5' for transport.timeout_s", NULL);
    assert_int_equal(c.transport.timeout_s, 86400);
    // both keys are in the canonical text, so they count in the config hash
    char *text;
    assert_int_equal(config_to_text(&c, &text), 0);
    assert_non_null(strstr(text, "\nrank_form = bounded\n"));
    assert_non_null(strstr(text, "\ntimeout_s = 86400\n"));
    free(text);
    char h1[65], h2[65];
    assert_int_equal(config_sha256(&c, h1), 0);
    assert_int_equal(config_set(&c, "refine.rank_form=paper"), 0);
    assert_int_equal(config_sha256(&c, h2), 0);
    assert_string_not_equal(h1, h2);
}

// text -> struct -> text is the identity, for the defaults and for awkward values.
static void test_text_round_trip(void **state) {
    (void)state;
    Config c;
    config_defaults(&c);
    static const char *const sets[] = {
        "base.lr=0.1", "refine.lr=1e-300", "base.beta2=0.30000000000000004", "data.val_fraction=0",
        "base.lambda_l1=123456.789", "refine.lambda_rank=0", "run.seed=18446744073709551615",
        "run.name=x;y", "run.dir=/a b/c#d", "coord.restart=no",
        "transport.control_endpoint=ipc:///tmp/x.sock", "data.root=a#b;c"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        if (config_set(&c, sets[i]) != 0) fail_msg("%s", mdgan_errmsg());
    for (int round = 0; round < 2; round++) {
        Config *src = &c, def;
        if (round == 1) {
            config_defaults(&def);
            src = &def;
        }
        char *text;
        assert_int_equal(config_to_text(src, &text), 0);
        if (round == 0) printf("%s", text);
        Config back;
        memset(&back, 0x5a, sizeof back);
        config_defaults(&back);
        if (config_parse(&back, text, "<text>") != 0) fail_msg("%s", mdgan_errmsg());
        char which[64];
        if (!config_equal(src, &back, which, sizeof which)) fail_msg("round trip changed %s", which);
        char *text2;
        assert_int_equal(config_to_text(&back, &text2), 0);
        assert_string_equal(text, text2);
        if (round == 1) {
            assert_non_null(strstr(text, "\n[base]\n"));
            assert_non_null(strstr(text, "lr = 0.0002\n"));   // shortest form, not 0.00020000000000000001
            assert_non_null(strstr(text, "restart = true\n"));
            assert_non_null(strstr(text, "data_endpoint =\n"));
        }
        free(text);
        free(text2);
    }
    // The hash ignores comments and spacing, and sees every value.
    char h1[65], h2[65], h3[65], path[4200];
    config_defaults(&c);
    assert_int_equal(config_sha256(&c, h1), 0);
    assert_int_equal(strlen(h1), 64);
    assert_int_equal(load_text(&c, "# just a comment\n[base]\n   lr   =   0.0002   ; same value\n", path, sizeof path), 0);
    assert_int_equal(config_sha256(&c, h2), 0);
    assert_string_equal(h1, h2);
    assert_int_equal(config_set(&c, "run.seed=2"), 0);
    assert_int_equal(config_sha256(&c, h3), 0);
    assert_string_not_equal(h1, h3);
}

// The shipped pipeline.conf: lists every key in its section, loads, validates and
// equals the built-in defaults.
static void test_pipeline_conf(void **state) {
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/../../pipeline.conf", fixtures_dir());
    Config c, d;
    memset(&c, 0, sizeof c);
    config_defaults(&c);
    if (config_load(&c, path) != 0) fail_msg("%s", mdgan_errmsg());
    if (config_validate(&c) != 0) fail_msg("%s", mdgan_errmsg());
    config_defaults(&d);
    char which[64];
    if (!config_equal(&c, &d, which, sizeof which))
        fail_msg("pipeline.conf differs from the built-in default of %s", which);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int nk;
    const ConfigKey *keys = config_keys(&nk);
    int *found = calloc((size_t)nk, sizeof *found);
    char line[1024], section[64] = "";
    while (fgets(line, sizeof line, f)) {
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '[') {
            sscanf(s, "[%63[^]]", section);
            continue;
        }
        for (int i = 0; i < nk; i++) {
            size_t kl = strlen(keys[i].key);
            if (!strcmp(section, keys[i].section) && !strncmp(s, keys[i].key, kl) &&
                (s[kl] == ' ' || s[kl] == '='))
                found[i]++;
        }
    }
    fclose(f);
    for (int i = 0; i < nk; i++)
        if (found[i] != 1) fail_msg("pipeline.conf lists %s.%s %d times", keys[i].section, keys[i].key, found[i]);
    free(found);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_ranges_from_table),
        cmocka_unit_test(test_number_parsing),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_bom_section),
        cmocka_unit_test(test_file_limits),
        cmocka_unit_test(test_comments_and_blanks),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_refine_keys),
        cmocka_unit_test(test_text_round_trip),
        cmocka_unit_test(test_pipeline_conf),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
