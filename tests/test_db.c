// db: the coordinator's SQLite database on real files in a fresh folder each: the
// schema and its version, WAL and foreign keys really on, migrations (rows kept, a
// failing step rolled back), refusals (newer schema, read-only of a missing or older
// database, duplicate run, foreign key, not a database), the API round trip, the
// integrity check, and a writer with a reader and a second writer at once.
//
// What the library did is checked through a second, plain sqlite3 connection where
// that is possible, so the test does not only read back through the code under test.
#include "testutil.h"

#include <pthread.h>
#include <sqlite3.h>
#include <time.h>

#include "mdgan/db.h"
#include "mdgan/fileio.h"

static const char *SHA_A = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
static const char *SHA_B = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static void expect_msg_has(const char *needle) {
    const char *m = mdgan_errmsg();
    if (!strstr(m, needle)) fail_msg("message lacks '%s': %s", needle, m);
}
static void show_msg(void) { printf("    message: %s\n", mdgan_errmsg()); }

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// ---- a plain sqlite3 connection beside the library's

static sqlite3 *raw_open(const char *path) {
    sqlite3 *h;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        fail_msg("raw open %s: %s", path, sqlite3_errmsg(h));
    sqlite3_busy_timeout(h, 2000);
    return h;
}

static void raw_exec(sqlite3 *h, const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(h, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("raw '%s': %s", sql, msg);
}

static int64_t raw_int(sqlite3 *h, const char *sql) {
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) != SQLITE_OK)
        fail_msg("raw prepare '%s': %s", sql, sqlite3_errmsg(h));
    if (sqlite3_step(s) != SQLITE_ROW) fail_msg("raw '%s': no row: %s", sql, sqlite3_errmsg(h));
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

// First column of the first row as text ("" for NULL), into out.
static void raw_text(sqlite3 *h, const char *sql, char *out, size_t n) {
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) != SQLITE_OK)
        fail_msg("raw prepare '%s': %s", sql, sqlite3_errmsg(h));
    if (sqlite3_step(s) != SQLITE_ROW) fail_msg("raw '%s': no row: %s", sql, sqlite3_errmsg(h));
    const unsigned char *t = sqlite3_column_text(s, 0);
    snprintf(out, n, "%s", t ? (const char *)t : "");
    sqlite3_finalize(s);
}

static int64_t path_int(const char *path, const char *sql) {
    sqlite3 *h = raw_open(path);
    int64_t v = raw_int(h, sql);
    sqlite3_close(h);
    return v;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void sha_of(const char *path, char hex[65]) {
    if (fio_sha256_file(path, hex) != 0) fail_msg("%s", mdgan_errmsg());
}

typedef struct {
    char dir[4096];
    char path[4200];
} Tmp;

static void tmp_db(Tmp *t) {
    make_tmpdir(t->dir, sizeof t->dir);
    snprintf(t->path, sizeof t->path, "%s/coord.db", t->dir);
}

static Db *open_ok(const char *path, int readonly) {
    Db *db = db_open(path, readonly);
    if (!db) fail_msg("db_open %s: %s", path, mdgan_errmsg());
    return db;
}

static int64_t new_run(Db *db, const char *name) {
    int64_t id = 0;
    if (db_run_create(db, name, "[train]\nsteps = 10\n", SHA_A, &id) != 0)
        fail_msg("db_run_create: %s", mdgan_errmsg());
    assert_true(id > 0);
    return id;
}

static void put_stage(Db *db, int64_t run, const char *stage, const char *status, int64_t step) {
    DbStage s = {.stage = stage, .status = status, .pid = 1234, .step = step, .total_steps = 1000,
                 .rate = 2.5, .heartbeat = 1.7e9, .losses = "{\"g\":0.5,\"d\":1.25}"};
    if (db_stage_put(db, run, &s) != 0) fail_msg("db_stage_put: %s", mdgan_errmsg());
}

// ---- schema, WAL, foreign keys

static void test_open_creates_schema(void **state) {
    (void)state;
    Tmp t;
    tmp_db(&t);
    Db *db = open_ok(t.path, 0);
    int64_t run = new_run(db, "first");
    sqlite3 *h = raw_open(t.path);
    assert_int_equal(raw_int(h, "PRAGMA user_version"), DB_SCHEMA_VERSION);
    assert_int_equal(raw_int(h, "PRAGMA application_id"), DB_APPLICATION_ID);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name "
                                "IN ('runs','stages','checkpoints','metrics','events','jobs')"),
                     6);
    // journal_mode=WAL is recorded in the file: another connection reads it back.
    char mode[16];
    raw_text(h, "PRAGMA journal_mode", mode, sizeof mode);
    assert_string_equal(mode, "wal");
    char wal[4300];
    snprintf(wal, sizeof wal, "%s-wal", t.path);
    assert_true(file_exists(wal));
    int64_t nobj = raw_int(h, "SELECT count(*) FROM sqlite_schema");
    sqlite3_close(h);
    db_close(db);

    // Reopening changes nothing and keeps the rows.
    db = open_ok(t.path, 0);
    DbRun r;
    assert_int_equal(db_run_get(db, "first", &r), 0);
    assert_int_equal(r.id, run);
    db_run_free(&r);
    db_close(db);
    db = open_ok(t.path, 1);
    db_close(db);
    assert_int_equal(path_int(t.path, "PRAGMA user_version"), DB_SCHEMA_VERSION);
    assert_int_equal(path_int(t.path, "SELECT count(*) FROM sqlite_schema"), nobj);
    assert_int_equal(path_int(t.path, "SELECT count(*) FROM runs"), 1);
    rm_rf(t.dir);
}

// The mode read back after PRAGMA journal_mode=WAL decides: an in-memory database
// answers "memory", and a writer refuses it.
static void test_writer_refuses_non_wal(void **state) {
    (void)state;
    assert_null(db_open(":memory:", 0));
    show_msg();
    expect_msg_has(":memory:");
    expect_msg_has("'memory'");
    expect_msg_has("WAL");
}

// foreign_keys=ON really holds on the library's connection: rows that refer to a
// missing run or stage are refused, and nothing is written.
static void test_foreign_keys_enforced(void **state) {
    (void)state;
    Tmp t;
    tmp_db(&t);
    Db *db = open_ok(t.path, 0);
    int64_t run = new_run(db, "r");
    DbCheckpoint c = {.stage = "base", .step = 10, .epoch = 1, .path = "/x/base_step_10.safetensors",
                      .bytes = 100, .sha256 = SHA_A};
    assert_int_equal(db_ckpt_add(db, run + 100, &c, NULL), -1);   // no such run
    show_msg();
    expect_msg_has("FOREIGN KEY constraint failed");
    expect_msg_has(t.path);
    assert_int_equal(db_ckpt_add(db, run, &c, NULL), -1);         // run, but no stage row
    expect_msg_has("FOREIGN KEY constraint failed");
    DbMetric m = {"psnr", 20};
    assert_int_equal(db_metrics_add(db, run + 100, "base", 10, &m, 1), -1);
    expect_msg_has("FOREIGN KEY");
    assert_int_equal(db_event_add(db, run + 100, "info", "x"), -1);
    expect_msg_has("FOREIGN KEY");
    assert_int_equal(db_job_add(db, run + 100, "refine", "in", "out", NULL), -1);
    expect_msg_has("FOREIGN KEY");
    DbStage s = {.stage = "base", .status = "running"};
    assert_int_equal(db_stage_put(db, run + 100, &s), -1);
    expect_msg_has("FOREIGN KEY");
    db_close(db);
    assert_int_equal(path_int(t.path, "SELECT (SELECT count(*) FROM checkpoints) + "
                                      "(SELECT count(*) FROM metrics) + (SELECT count(*) FROM events) + "
                                      "(SELECT count(*) FROM jobs) + (SELECT count(*) FROM stages)"),
                     0);
    rm_rf(t.dir);
}

// ---- versions and migrations

static void test_newer_version_refused(void **state) {
    (void)state;
    Tmp t;
    tmp_db(&t);
    db_close(open_ok(t.path, 0));
    sqlite3 *h = raw_open(t.path);
    raw_exec(h, "PRAGMA user_version = 7");
    sqlite3_close(h);
    char before[65], after[65];
    sha_of(t.path, before);
    for (int ro = 0; ro <= 1; ro++) {
        mdgan_errclear();
        assert_null(db_open(t.path, ro));
        show_msg();
        expect_msg_has(t.path);
        expect_msg_has("schema version 7");
        char v[32];
        snprintf(v, sizeof v, "version %d", DB_SCHEMA_VERSION);
        expect_msg_has(v);
        expect_msg_has("newer");
    }
    sha_of(t.path, after);
    assert_string_equal(before, after);
    assert_int_equal(path_int(t.path, "PRAGMA user_version"), 7);
    rm_rf(t.dir);
}

static void test_readonly_missing_and_empty(void **state) {
    (void)state;
    Tmp t;
    tmp_db(&t);
    assert_null(db_open(t.path, 1));
    show_msg();
    expect_msg_has(t.path);
    expect_msg_has("No such file or directory");
    assert_false(file_exists(t.path));   // a reader never creates the file
    // An SQLite file without mdgan's schema (version 0): nothing to read.
    sqlite3 *h;
    assert_int_equal(sqlite3_open(t.path, &h), SQLITE_OK);
    raw_exec(h, "PRAGMA user_version = 0; VACUUM");
    sqlite3_close(h);
    assert_null(db_open(t.path, 1));
    show_msg();
    expect_msg_has(t.path);
    expect_msg_has("no mdgan schema");
    rm_rf(t.dir);
}

// A reader of a current database reads, and refuses every write.
static void test_readonly_refuses_writes(void **state) {
    (void)state;
    Tmp t;
    tmp_db(&t);
    Db *w = open_ok(t.path, 0);
    int64_t run = new_run(w, "r");
    db_close(w);
    Db *r = open_ok(t.path, 1);
    DbRun got;
    assert_int_equal(db_run_get(r, "r", &got), 0);
    db_run_free(&got);
    assert_int_equal(db_event_add(r, run, "info", "no"), -1);
    expect_msg_has("read-only");
    assert_int_equal(db_run_create(r, "s", "", SHA_A, NULL), -1);
    expect_msg_has("read-only");
    db_close(r);
    assert_int_equal(path_int(t.path, "SELECT count(*) FROM events"), 0);
    rm_rf(t.dir);
}

static const DbMigration ADD_NOTE[] = {
    {DB_SCHEMA_VERSION + 1, "ALTER TABLE runs ADD COLUMN note TEXT;\n"
                            "UPDATE runs SET note = 'migrated';"},
};

// From this build's schema to one more step: rows are kept, the step runs once, a
// reader at the older build's version is refused, and the older build then refuses
// the newer file.
static void test_migration_keeps_rows(void **state) {
    (void)state;
    Tmp t;
    tmp_db(&t);
    Db *db = open_ok(t.path, 0);
    int64_t run = new_run(db, "kept");
    put_stage(db, run, "base", "running", 10);
    DbCheckpoint c = {.stage = "base", .step = 10, .epoch = 0, .path = "/x/a", .bytes = 5, .sha256 = SHA_A};
    assert_int_equal(db_ckpt_add(db, run, &c, NULL), 0);
    db_close(db);

    // A reader that expects the next version refuses to migrate.
    assert_null(db_open_with(t.path, 1, ADD_NOTE, 1));
    show_msg();
    expect_msg_has("older");
    assert_int_equal(path_int(t.path, "PRAGMA user_version"), DB_SCHEMA_VERSION);

    db = db_open_with(t.path, 0, ADD_NOTE, 1);
    if (!db) fail_msg("migration: %s", mdgan_errmsg());
    db_close(db);
    db = db_open_with(t.path, 0, ADD_NOTE, 1);   // again: the ALTER must not run twice
    if (!db) fail_msg("reopen after migration: %s", mdgan_errmsg());
    DbRun r;
    assert_int_equal(db_run_get(db, "kept", &r), 0);
    assert_int_equal(r.id, run);
    db_run_free(&r);
    db_close(db);
    sqlite3 *h = raw_open(t.path);
    assert_int_equal(raw_int(h, "PRAGMA user_version"), DB_SCHEMA_VERSION + 1);
    char note[32];
    raw_text(h, "SELECT note FROM runs WHERE name = 'kept'", note, sizeof note);
    assert_string_equal(note, "migrated");
    assert_int_equal(raw_int(h, "SELECT count(*) FROM checkpoints"), 1);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM stages"), 1);
    sqlite3_close(h);

    assert_null(db_open(t.path, 0));
    show_msg();
    char v[64];
    snprintf(v, sizeof v, "schema version %d", DB_SCHEMA_VERSION + 1);
    expect_msg_has(v);
    rm_rf(t.dir);
}

// A step whose SQL fails half-way leaves the version, the schema and the rows as
// they were: the step is one transaction.
static void test_failed_migration_rolls_back(void **state) {
    (void)state;
    Tmp t;
    tmp_db(&t);
    Db *db = open_ok(t.path, 0);
    new_run(db, "kept");
    db_close(db);
    const DbMigration bad[] = {
        {DB_SCHEMA_VERSION + 1, "CREATE TABLE extra (x);\n"
                                "INSERT INTO extra VALUES (1);\n"
                                "DELETE FROM runs;\n"
                                "INSERT INTO no_such_table VALUES (1);"},
    };
    assert_null(db_open_with(t.path, 0, bad, 1));
    show_msg();
    expect_msg_has(t.path);
    char v[64];
    snprintf(v, sizeof v, "version %d", DB_SCHEMA_VERSION + 1);
    expect_msg_has(v);
    expect_msg_has("no such table: no_such_table");
    sqlite3 *h = raw_open(t.path);
    assert_int_equal(raw_int(h, "PRAGMA user_version"), DB_SCHEMA_VERSION);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM sqlite_schema WHERE name = 'extra'"), 0);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM runs"), 1);
    sqlite3_close(h);
    db_close(open_ok(t.path, 0));   // still a good database for this build
    rm_rf(t.dir);
}

// ---- the API

typedef struct {
    int n;
    DbRunRow row;        // the first row's scalars (its pointers die with the callback)
    char name[64], status[16], stage[32], metrics[256], metrics_stage[32];
} RunsSeen;

static int runs_cb(const DbRunRow *r, void *ctx) {
    RunsSeen *s = ctx;
    if (s->n++ == 0) {
        s->row = *r;
        snprintf(s->name, sizeof s->name, "%s", r->name);
        snprintf(s->status, sizeof s->status, "%s", r->status);
        snprintf(s->stage, sizeof s->stage, "%s", r->stage ? r->stage : "(null)");
        snprintf(s->metrics, sizeof s->metrics, "%s", r->metrics ? r->metrics : "(null)");
        snprintf(s->metrics_stage, sizeof s->metrics_stage, "%s",
                 r->metrics_stage ? r->metrics_stage : "(null)");
    }
    return 0;
}

typedef struct {
    int n;
    int64_t id[8], step[8];
    int valid[8];
    char sha[8][65];
} CkptsSeen;

static int ckpts_cb(const DbCheckpoint *c, void *ctx) {
    CkptsSeen *s = ctx;
    if (s->n < 8) {
        s->id[s->n] = c->id;
        s->step[s->n] = c->step;
        s->valid[s->n] = c->valid;
        snprintf(s->sha[s->n], 65, "%s", c->sha256);
    }
    s->n++;
    return 0;
}

typedef struct {
    int n;
    DbStage st[4];
    char stage[4][16], status[4][16], losses[4][64], exit_status[4][64];
} StagesSeen;

static int stages_cb(const DbStage *s, void *ctx) {
    StagesSeen *v = ctx;
    if (v->n < 4) {
        v->st[v->n] = *s;
        snprintf(v->stage[v->n], 16, "%s", s->stage);
        snprintf(v->status[v->n], 16, "%s", s->status);
        snprintf(v->losses[v->n], 64, "%s", s->losses ? s->losses : "(null)");
        snprintf(v->exit_status[v->n], 64, "%s", s->exit_status ? s->exit_status : "(null)");
    }
    v->n++;
    return 0;
}

typedef struct {
    int n;
    char line[8][96];
} LinesSeen;

static int metrics_cb(const char *stage, int64_t step, const char *name, double value, void *ctx) {
    LinesSeen *v = ctx;
    if (v->n < 8) snprintf(v->line[v->n], 96, "%s %lld %s %g", stage, (long long)step, name, value);
    v->n++;
    return 0;
}

static int events_cb(double time, const char *level, const char *text, void *ctx) {
    LinesSeen *v = ctx;
    assert_true(time > 1.6e9);
    if (v->n < 8) snprintf(v->line[v->n], 96, "%s %s", level, text);
    v->n++;
    return 0;
}

static int stop_cb(const DbCheckpoint *c, void *ctx) {
    (void)c;
    (*(int *)ctx)++;
    return 42;
}

static void test_round_trip(void **state) {
    (void)state;
    Tmp t;
    tmp_db(&t);
    Db *db = open_ok(t.path, 0);
    // Text that would break SQL if it were formatted in: bound, it is stored verbatim.
    const char *evil = "x'); DROP TABLE runs; --";
    const char *config = "[run]\nname = \"it's\"\n";
    int64_t run = 0;
    assert_int_equal(db_run_create(db, evil, config, SHA_B, &run), 0);
    int64_t other = new_run(db, "older");
    DbRun r;
    assert_int_equal(db_run_get(db, evil, &r), 0);
    assert_int_equal(r.id, run);
    assert_string_equal(r.name, evil);
    assert_string_equal(r.config, config);
    assert_string_equal(r.config_sha256, SHA_B);
    assert_string_equal(r.status, "created");
    assert_int_equal(r.pid, 0);
    assert_true(r.created > 1.6e9 && r.updated >= r.created);
    double created = r.created;
    db_run_free(&r);
    assert_int_equal(db_run_get(db, "nobody", &r), 1);
    expect_msg_has("no run named 'nobody'");
    expect_msg_has(t.path);

    assert_int_equal(db_run_set_status(db, run, "running"), 0);
    assert_int_equal(db_run_set_pid(db, run, 4321), 0);
    assert_int_equal(db_run_set_status(db, run, "exploded"), -1);   // not a status
    show_msg();
    expect_msg_has("CHECK constraint failed");
    assert_int_equal(db_run_set_status(db, run + 100, "running"), -1);
    expect_msg_has("no run with id");
    assert_int_equal(db_run_get(db, evil, &r), 0);
    assert_string_equal(r.status, "running");
    assert_int_equal(r.pid, 4321);
    assert_true(r.updated >= created);
    db_run_free(&r);

    // Stages: an insert, then an update of every field.
    put_stage(db, run, "base", "running", 10);
    DbStage s = {.stage = "refine", .status = "starting", .rate = NAN};
    assert_int_equal(db_stage_put(db, run, &s), 0);
    s = (DbStage){.stage = "base", .status = "failed", .pid = 0, .step = 120, .total_steps = 1000,
                  .rate = 3.0, .heartbeat = 1.8e9, .restarts = 2, .losses = "{\"g\":0.25}",
                  .exit_status = "mdgan-base killed by SIGKILL"};
    assert_int_equal(db_stage_put(db, run, &s), 0);
    s.losses = "{not json";
    assert_int_equal(db_stage_put(db, run, &s), -1);
    expect_msg_has("CHECK constraint failed");
    StagesSeen sv = {0};
    assert_int_equal(db_stages_list(db, run, stages_cb, &sv), 0);
    assert_int_equal(sv.n, 2);
    assert_string_equal(sv.stage[0], "base");
    assert_string_equal(sv.status[0], "failed");
    assert_int_equal(sv.st[0].pid, 0);
    assert_int_equal(sv.st[0].step, 120);
    assert_int_equal(sv.st[0].total_steps, 1000);
    assert_true(sv.st[0].rate == 3.0);
    assert_true(sv.st[0].heartbeat == 1.8e9);
    assert_int_equal(sv.st[0].restarts, 2);
    assert_string_equal(sv.losses[0], "{\"g\":0.25}");
    assert_string_equal(sv.exit_status[0], "mdgan-base killed by SIGKILL");
    assert_string_equal(sv.stage[1], "refine");
    assert_true(isnan(sv.st[1].rate));
    assert_string_equal(sv.losses[1], "(null)");

    // Checkpoints: newest first, invalidation, a rewrite of the same step.
    int64_t ids[3];
    for (int i = 0; i < 3; i++) {
        char path[64];
        snprintf(path, sizeof path, "/runs/r/checkpoints/base_step_%d.safetensors", (i + 1) * 100);
        DbCheckpoint c = {.stage = "base", .step = (i + 1) * 100, .epoch = i, .path = path,
                          .bytes = 1000 + i, .sha256 = i == 1 ? SHA_B : SHA_A};
        assert_int_equal(db_ckpt_add(db, run, &c, &ids[i]), 0);
    }
    DbCheckpoint bad = {.stage = "base", .step = 400, .epoch = 3, .path = "/p", .bytes = 1,
                        .sha256 = "not-a-digest"};
    assert_int_equal(db_ckpt_add(db, run, &bad, NULL), -1);
    expect_msg_has("CHECK constraint failed");
    assert_int_equal(db_ckpt_invalidate(db, ids[2]), 0);
    assert_int_equal(db_ckpt_invalidate(db, ids[2] + 100), -1);
    expect_msg_has("no checkpoint with id");
    CkptsSeen cv = {0};
    assert_int_equal(db_ckpts_list(db, run, "base", ckpts_cb, &cv), 0);
    assert_int_equal(cv.n, 3);
    assert_int_equal(cv.step[0], 300);
    assert_int_equal(cv.step[1], 200);
    assert_int_equal(cv.step[2], 100);
    assert_int_equal(cv.valid[0], 0);
    assert_int_equal(cv.valid[1], 1);
    assert_string_equal(cv.sha[1], SHA_B);
    assert_string_equal(cv.sha[2], SHA_A);
    DbCheckpoint again = {.stage = "base", .step = 300, .epoch = 2, .path = "/runs/r/again",
                          .bytes = 7, .sha256 = SHA_B};
    int64_t again_id = 0;
    assert_int_equal(db_ckpt_add(db, run, &again, &again_id), 0);
    assert_int_equal(again_id, ids[2]);
    cv = (CkptsSeen){0};
    assert_int_equal(db_ckpts_list(db, run, "base", ckpts_cb, &cv), 0);
    assert_int_equal(cv.n, 3);
    assert_int_equal(cv.valid[0], 1);
    assert_string_equal(cv.sha[0], SHA_B);
    cv = (CkptsSeen){0};
    assert_int_equal(db_ckpts_list(db, run, "refine", ckpts_cb, &cv), 0);
    assert_int_equal(cv.n, 0);
    int calls = 0;   // a callback's non-zero stops the listing and is returned
    assert_int_equal(db_ckpts_list(db, run, "base", stop_cb, &calls), 42);
    assert_int_equal(calls, 1);

    // Metrics: two steps, NaN kept as NaN, a repeated pair replaced.
    DbMetric m100[] = {{"psnr_y1", 20.5}, {"ssim_y1", 0.5}};
    DbMetric m200[] = {{"psnr_y1", 22.0}, {"ssim_y1", NAN}, {"psnr_y2", 23.0}};
    DbMetric dup[] = {{"psnr_y1", 21.0}, {"psnr_y1", 21.5}};
    assert_int_equal(db_metrics_add(db, run, "base", 100, m100, 2), 0);
    assert_int_equal(db_metrics_add(db, run, "base", 100, dup, 2), 0);
    assert_int_equal(db_metrics_add(db, run, "refine", 200, m200, 3), 0);   // the newest
    DbMetric noname[] = {{"ok_name", 1.0}, {NULL, 2.0}};   // the second fails: neither is kept
    assert_int_equal(db_metrics_add(db, run, "base", 300, noname, 2), -1);
    expect_msg_has("NOT NULL constraint failed");
    LinesSeen mv = {0};
    assert_int_equal(db_metrics_list(db, run, metrics_cb, &mv), 0);
    assert_int_equal(mv.n, 5);
    assert_string_equal(mv.line[0], "base 100 psnr_y1 21.5");
    assert_string_equal(mv.line[1], "base 100 ssim_y1 0.5");
    assert_string_equal(mv.line[2], "refine 200 psnr_y1 22");
    assert_string_equal(mv.line[3], "refine 200 psnr_y2 23");
    assert_string_equal(mv.line[4], "refine 200 ssim_y1 nan");

    // Events and jobs.
    assert_int_equal(db_event_add(db, run, "info", "base started"), 0);
    assert_int_equal(db_event_add(db, run, "warn", evil), 0);
    assert_int_equal(db_event_add(db, run, "loud", "x"), -1);
    expect_msg_has("CHECK constraint failed");
    LinesSeen ev = {0};
    assert_int_equal(db_events_list(db, run, events_cb, &ev), 0);
    assert_int_equal(ev.n, 2);
    assert_string_equal(ev.line[0], "info base started");
    assert_string_equal(ev.line[1], "warn x'); DROP TABLE runs; --");
    int64_t job = 0;
    assert_int_equal(db_job_add(db, run, "refine", "/in/y1", "/out/y2", &job), 0);
    assert_true(job > 0);
    assert_int_equal(db_job_add(db, run, "train", "/in", "/out", NULL), -1);
    expect_msg_has("CHECK constraint failed");
    assert_int_equal(db_job_finish(db, job, "failed", "mdgan-refine exited with status 1"), 0);
    assert_int_equal(db_job_finish(db, job + 100, "done", NULL), -1);
    expect_msg_has("no job with id");

    // The `mdgan runs` listing: newest run first, its latest stage and metrics step.
    RunsSeen rv = {0};
    assert_int_equal(db_runs_list(db, runs_cb, &rv), 0);
    assert_int_equal(rv.n, 2);
    assert_string_equal(rv.name, "older");   // created after the evil one
    assert_int_equal(rv.row.id, other);
    assert_string_equal(rv.stage, "(null)");
    assert_string_equal(rv.metrics, "(null)");
    db_close(db);

    // A second look from a reader: the evil run's listing row.
    sqlite3 *h = raw_open(t.path);
    raw_exec(h, "UPDATE runs SET created = 0 WHERE name = 'older'");   // the evil run first
    sqlite3_close(h);
    db = open_ok(t.path, 1);
    rv = (RunsSeen){0};
    assert_int_equal(db_runs_list(db, runs_cb, &rv), 0);
    assert_int_equal(rv.n, 2);
    assert_string_equal(rv.name, evil);
    assert_string_equal(rv.status, "running");
    assert_int_equal(rv.row.pid, 4321);
    assert_string_equal(rv.stage, "base");   // updated last
    assert_int_equal(rv.row.step, 120);
    assert_string_equal(rv.metrics_stage, "refine");
    assert_int_equal(rv.row.metrics_step, 200);
    assert_string_equal(rv.metrics, "{\"psnr_y1\":22.0,\"psnr_y2\":23.0,\"ssim_y1\":null}");
    db_close(db);

    h = raw_open(t.path);
    char txt[128];
    raw_text(h, "SELECT status || '|' || message || '|' || (finished >= created) FROM jobs", txt,
             sizeof txt);
    assert_string_equal(txt, "failed|mdgan-refine exited with status 1|1");
    assert_int_equal(raw_int(h, "SELECT count(*) FROM runs"), 2);
    // runs.updated follows the run's last write (the event after the pid).
    assert_int_equal(raw_int(h, "SELECT (SELECT updated FROM runs WHERE id = (SELECT run_id FROM jobs)) "
                                ">= (SELECT max(time) FROM events)"),
                     1);
    sqlite3_close(h);
    rm_rf(t.dir);
}

static void test_duplicate_run_refused(void **state) {
    (void)state;
    Tmp t;
    tmp_db(&t);
    Db *db = open_ok(t.path, 0);
    new_run(db, "a");
    int64_t id = -7;
    assert_int_equal(db_run_create(db, "a", "other", SHA_B, &id), -1);
    show_msg();
    expect_msg_has("run 'a' already exists in");
    expect_msg_has(t.path);
    assert_int_equal(id, -7);
    // The failed transaction was rolled back: the next write works.
    new_run(db, "b");
    db_close(db);
    assert_int_equal(path_int(t.path, "SELECT count(*) FROM runs"), 2);
    assert_int_equal(path_int(t.path, "SELECT count(*) FROM runs WHERE config = 'other'"), 0);
    rm_rf(t.dir);
}

static void test_integrity_check(void **state) {
    (void)state;
    Tmp t;
    tmp_db(&t);
    Db *db = open_ok(t.path, 0);
    int64_t run = new_run(db, "r");
    put_stage(db, run, "base", "running", 1);
    assert_int_equal(db_event_add(db, run, "info", "hello"), 0);
    if (db_integrity_check(db) != 0) fail_msg("%s", mdgan_errmsg());
    // An orphan row slipped in by a connection without foreign keys is found.
    sqlite3 *h = raw_open(t.path);
    raw_exec(h, "PRAGMA foreign_keys = OFF; INSERT INTO events (run_id, time, level, text) "
                "VALUES (999, 0, 'info', 'orphan')");
    sqlite3_close(h);
    assert_int_equal(db_integrity_check(db), -1);
    show_msg();
    expect_msg_has(t.path);
    expect_msg_has("foreign key check failed");
    expect_msg_has("events");
    db_close(db);
    rm_rf(t.dir);
}

// ---- a writer and a reader, and a second writer

typedef struct {
    Db *w;
    int64_t run;
    int calls, write_rc;
} ReadWhileWrite;

// Inside the reader's open read transaction the writer commits: under WAL it does
// not wait for the reader (in a rollback journal it could not commit until the
// reader finished, and would fail after its short busy timeout).
static int read_while_write_cb(const DbRunRow *r, void *ctx) {
    (void)r;
    ReadWhileWrite *x = ctx;
    if (x->calls++ == 0) x->write_rc = db_event_add(x->w, x->run, "info", "while reading");
    return 0;
}

static void test_writer_and_reader(void **state) {
    (void)state;
    Tmp t;
    tmp_db(&t);
    Db *w = open_ok(t.path, 0);
    int64_t run = new_run(w, "one");
    Db *r = open_ok(t.path, 1);
    RunsSeen rv = {0};
    assert_int_equal(db_runs_list(r, runs_cb, &rv), 0);
    assert_int_equal(rv.n, 1);                       // the reader sees the committed row
    new_run(w, "two");
    rv = (RunsSeen){0};
    assert_int_equal(db_runs_list(r, runs_cb, &rv), 0);
    assert_int_equal(rv.n, 2);                       // and the next one
    assert_string_equal(rv.name, "two");

    assert_int_equal(db_set_busy_timeout(w, 100), 0);
    ReadWhileWrite x = {.w = w, .run = run};
    assert_int_equal(db_runs_list(r, read_while_write_cb, &x), 0);
    if (x.write_rc != 0) fail_msg("write during a read: %s", mdgan_errmsg());
    assert_int_equal(x.calls, 2);
    db_close(r);
    db_close(w);
    assert_int_equal(path_int(t.path, "SELECT count(*) FROM events"), 1);
    rm_rf(t.dir);
}

typedef struct {
    const char *path;
    int hold_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int locked;
} Holder;

// Takes the write lock on its own connection, says so, holds it, then commits.
static void *hold_lock(void *arg) {
    Holder *hd = arg;
    sqlite3 *h;
    if (sqlite3_open_v2(hd->path, &h, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(h, "BEGIN IMMEDIATE; INSERT INTO events (run_id, time, level, text) "
                        "SELECT id, 0, 'info', 'holder' FROM runs", NULL, NULL, NULL) != SQLITE_OK)
        hd->hold_ms = -1;
    pthread_mutex_lock(&hd->mu);
    hd->locked = 1;
    pthread_cond_signal(&hd->cv);
    pthread_mutex_unlock(&hd->mu);
    if (hd->hold_ms > 0) {
        struct timespec ts = {hd->hold_ms / 1000, (long)(hd->hold_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if (sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) hd->hold_ms = -2;
    }
    sqlite3_close(h);
    return NULL;
}

static void test_second_writer_waits(void **state) {
    (void)state;
    Tmp t;
    tmp_db(&t);
    Db *w = open_ok(t.path, 0);
    int64_t run = new_run(w, "r");
    // Another writer holds the lock for 300 ms: this one waits (busy_timeout 5 s)
    // and then succeeds.
    Holder hd = {.path = t.path, .hold_ms = 300, .mu = PTHREAD_MUTEX_INITIALIZER,
                 .cv = PTHREAD_COND_INITIALIZER};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hold_lock, &hd), 0);
    pthread_mutex_lock(&hd.mu);
    while (!hd.locked) pthread_cond_wait(&hd.cv, &hd.mu);
    pthread_mutex_unlock(&hd.mu);
    double t0 = mono_s();
    int rc = db_event_add(w, run, "info", "after the wait");
    double waited = mono_s() - t0;
    pthread_join(th, NULL);
    assert_true(hd.hold_ms > 0);   // the holder really held the lock and committed
    if (rc != 0) fail_msg("second writer: %s", mdgan_errmsg());
    printf("    second writer waited %.3f s for the lock\n", waited);
    assert_true(waited > 0.2);

    // With a short timeout and a lock that is never released in time: a clear error.
    sqlite3 *h = raw_open(t.path);
    raw_exec(h, "BEGIN IMMEDIATE");
    assert_int_equal(db_set_busy_timeout(w, 150), 0);
    t0 = mono_s();
    assert_int_equal(db_event_add(w, run, "info", "never"), -1);
    waited = mono_s() - t0;
    show_msg();
    expect_msg_has(t.path);
    expect_msg_has("database is locked");
    assert_true(waited > 0.1);
    raw_exec(h, "COMMIT");
    sqlite3_close(h);
    assert_int_equal(db_event_add(w, run, "info", "lock gone"), 0);   // the Db is still usable
    db_close(w);
    assert_int_equal(path_int(t.path, "SELECT count(*) FROM events"), 3);   // holder, after, gone
    rm_rf(t.dir);
}

// ---- bad input

static void test_bad_paths(void **state) {
    (void)state;
    Tmp t;
    tmp_db(&t);
    char path[4300];
    snprintf(path, sizeof path, "%s/no/such/folder/coord.db", t.dir);
    assert_null(db_open(path, 0));
    show_msg();
    expect_msg_has(path);
    expect_msg_has("No such file or directory");

    // Garbage: refused, and left exactly as it was, with no journal files beside it.
    unsigned char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 7919u >> 3);
    const void *bufs[] = {junk};
    size_t lens[] = {sizeof junk};
    assert_int_equal(fio_write_atomic(t.path, bufs, lens, 1), 0);
    char before[65], after[65];
    sha_of(t.path, before);
    for (int ro = 0; ro <= 1; ro++) {
        mdgan_errclear();
        assert_null(db_open(t.path, ro));
        show_msg();
        expect_msg_has(t.path);
        expect_msg_has("file is not a database");
    }
    sha_of(t.path, after);
    assert_string_equal(before, after);
    const char *suffix[] = {"-wal", "-shm", "-journal"};
    for (int i = 0; i < 3; i++) {
        char p[4300];
        snprintf(p, sizeof p, "%s%s", t.path, suffix[i]);
        if (file_exists(p)) fail_msg("%s was created", p);
    }

    // Another program's SQLite database is not taken over.
    char foreign[4300];
    snprintf(foreign, sizeof foreign, "%s/other.db", t.dir);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(foreign, &h), SQLITE_OK);
    raw_exec(h, "CREATE TABLE runs (x)");
    sqlite3_close(h);
    sha_of(foreign, before);
    assert_null(db_open(foreign, 0));
    show_msg();
    expect_msg_has(foreign);
    expect_msg_has("not an mdgan one");
    sha_of(foreign, after);
    assert_string_equal(before, after);
    rm_rf(t.dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_creates_schema),
        cmocka_unit_test(test_writer_refuses_non_wal),
        cmocka_unit_test(test_foreign_keys_enforced),
        cmocka_unit_test(test_newer_version_refused),
        cmocka_unit_test(test_readonly_missing_and_empty),
        cmocka_unit_test(test_readonly_refuses_writes),
        cmocka_unit_test(test_migration_keeps_rows),
        cmocka_unit_test(test_failed_migration_rolls_back),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_duplicate_run_refused),
        cmocka_unit_test(test_integrity_check),
        cmocka_unit_test(test_writer_and_reader),
        cmocka_unit_test(test_second_writer_waits),
        cmocka_unit_test(test_bad_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
