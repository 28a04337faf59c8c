#include "mdgan/db.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mdgan/error.h"

// Schema migrations (freebsd/pkg pkgdb.c's db_upgrades): step N brings user_version
// from N-1 to N. Never edit a step that has shipped; append a new one.
static const DbMigration db_migrations[] = {
    {1,
     "PRAGMA application_id = 1835296622;\n"   // DB_APPLICATION_ID
     "CREATE TABLE runs (\n"
     "  id INTEGER PRIMARY KEY,\n"
     "  name TEXT NOT NULL UNIQUE CHECK (name <> ''),\n"
     "  config TEXT NOT NULL,\n"
     "  config_sha256 TEXT NOT NULL\n"
     "    CHECK (length(config_sha256) = 64 AND config_sha256 NOT GLOB '*[^0-9a-f]*'),\n"
     "  status TEXT NOT NULL\n"
     "    CHECK (status IN ('created','running','stopped','failed','done')),\n"
     "  pid INTEGER,\n"                         // the coordinator's, while one runs it
     "  created REAL NOT NULL,\n"
     "  updated REAL NOT NULL\n"
     ");\n"
     "CREATE TABLE stages (\n"
     "  id INTEGER PRIMARY KEY,\n"
     "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
     "  stage TEXT NOT NULL CHECK (stage <> ''),\n"
     "  status TEXT NOT NULL\n"
     "    CHECK (status IN ('pending','starting','running','stopped','failed','done')),\n"
     "  pid INTEGER,\n"
     "  step INTEGER NOT NULL DEFAULT 0 CHECK (step >= 0),\n"
     "  total_steps INTEGER NOT NULL DEFAULT 0 CHECK (total_steps >= 0),\n"
     "  rate REAL,\n"                           // steps per second
     "  heartbeat REAL,\n"
     "  restarts INTEGER NOT NULL DEFAULT 0 CHECK (restarts >= 0),\n"
     "  losses TEXT CHECK (losses IS NULL OR json_valid(losses)),\n"
     "  exit_status TEXT,\n"
     "  updated REAL NOT NULL,\n"
     "  UNIQUE (run_id, stage)\n"
     ");\n"
     "CREATE TABLE checkpoints (\n"
     "  id INTEGER PRIMARY KEY,\n"
     "  run_id INTEGER NOT NULL,\n"
     "  stage TEXT NOT NULL,\n"
     "  step INTEGER NOT NULL CHECK (step >= 0),\n"
     "  epoch INTEGER NOT NULL CHECK (epoch >= 0),\n"
     "  path TEXT NOT NULL CHECK (path <> ''),\n"
     "  bytes INTEGER NOT NULL CHECK (bytes >= 0),\n"
     "  sha256 TEXT NOT NULL CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),\n"
     "  valid INTEGER NOT NULL DEFAULT 1 CHECK (valid IN (0, 1)),\n"
     "  created REAL NOT NULL,\n"
     "  UNIQUE (run_id, stage, step),\n"
     "  FOREIGN KEY (run_id, stage) REFERENCES stages(run_id, stage) ON DELETE CASCADE\n"
     ");\n"
     "CREATE TABLE metrics (\n"
     "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
     "  stage TEXT NOT NULL,\n"
     "  step INTEGER NOT NULL CHECK (step >= 0),\n"
     "  name TEXT NOT NULL CHECK (name <> ''),\n"
     "  value REAL,\n"                          // NULL for NaN
     "  time REAL NOT NULL,\n"
     "  PRIMARY KEY (run_id, stage, step, name)\n"
     ") WITHOUT ROWID;\n"
     "CREATE INDEX metrics_run_time ON metrics(run_id, time);\n"
     "CREATE TABLE events (\n"
     "  id INTEGER PRIMARY KEY,\n"
     "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
     "  time REAL NOT NULL,\n"
     "  level TEXT NOT NULL CHECK (level IN ('info','warn','error')),\n"
     "  text TEXT NOT NULL\n"
     ");\n"
     "CREATE INDEX events_run ON events(run_id, id);\n"
     "CREATE TABLE jobs (\n"
     "  id INTEGER PRIMARY KEY,\n"
     "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
     "  kind TEXT NOT NULL CHECK (kind IN ('refine','predict')),\n"
     "  input TEXT NOT NULL,\n"
     "  output TEXT NOT NULL,\n"
     "  status TEXT NOT NULL CHECK (status IN ('running','done','failed')),\n"
     "  message TEXT,\n"
     "  created REAL NOT NULL,\n"
     "  finished REAL\n"
     ");\n"
     "CREATE INDEX jobs_run ON jobs(run_id, id);\n"},
    // what `mdgan run` was asked besides the config (stages, a given Base-Net), so that
    // `mdgan resume` does the same
    {2, "ALTER TABLE runs ADD COLUMN options TEXT CHECK (options IS NULL OR json_valid(options));\n"},
};
_Static_assert(sizeof db_migrations / sizeof db_migrations[0] == DB_SCHEMA_VERSION,
               "DB_SCHEMA_VERSION must be the number of migration steps");

// Prepared once at open; the order of the enum is the order of the table.
#define DB_STATEMENTS(X)                                                                      \
    X(BEGIN, "BEGIN IMMEDIATE")                                                               \
    X(COMMIT, "COMMIT")                                                                       \
    X(ROLLBACK, "ROLLBACK")                                                                   \
    X(RUN_INSERT, "INSERT INTO runs (name, config, config_sha256, status, created, updated) "  \
                  "VALUES (?1, ?2, ?3, 'created', ?4, ?4)")                                   \
    X(RUN_GET, "SELECT id, name, config, config_sha256, status, pid, created, updated, "      \
               "options FROM runs WHERE name = ?1")                                           \
    X(RUN_SET_OPTIONS, "UPDATE runs SET options = ?2, updated = ?3 WHERE id = ?1")            \
    X(RUN_SET_STATUS, "UPDATE runs SET status = ?2, updated = ?3 WHERE id = ?1")              \
    X(RUN_SET_PID, "UPDATE runs SET pid = ?2, updated = ?3 WHERE id = ?1")                    \
    X(RUN_TOUCH, "UPDATE runs SET updated = ?2 WHERE id = ?1")                                \
    X(RUNS_LIST,                                                                              \
      "SELECT r.id, r.name, r.status, r.pid, r.created, r.updated, s.stage, s.step, "         \
      "  lm.stage, lm.step, "                                                                 \
      "  CASE WHEN lm.run_id IS NOT NULL THEN "                                               \
      "    (SELECT json_group_object(m.name, m.value) FROM metrics m "                        \
      "     WHERE m.run_id = r.id AND m.stage = lm.stage AND m.step = lm.step "               \
      "       AND m.name NOT LIKE 'loss.%') END "                                             \
      "FROM runs r "                                                                          \
      "LEFT JOIN stages s ON s.id = (SELECT id FROM stages WHERE run_id = r.id "              \
      "                              ORDER BY total_steps > 0 DESC, updated DESC, id DESC "   \
      "                              LIMIT 1) "                                               \
      "LEFT JOIN metrics lm ON (lm.run_id, lm.stage, lm.step, lm.name) = "                    \
      "  (SELECT run_id, stage, step, name FROM metrics WHERE run_id = r.id "                 \
      "   AND name NOT LIKE 'loss.%' "                                                        \
      "   ORDER BY time DESC, step DESC LIMIT 1) "                                            \
      "ORDER BY r.created DESC, r.id DESC")                                                   \
    X(STAGE_PUT,                                                                              \
      "INSERT INTO stages (run_id, stage, status, pid, step, total_steps, rate, heartbeat, "  \
      "                    restarts, losses, exit_status, updated) "                          \
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "                           \
      "ON CONFLICT (run_id, stage) DO UPDATE SET status = excluded.status, "                  \
      "  pid = excluded.pid, step = excluded.step, total_steps = excluded.total_steps, "      \
      "  rate = excluded.rate, heartbeat = excluded.heartbeat, restarts = excluded.restarts, " \
      "  losses = excluded.losses, exit_status = excluded.exit_status, "                      \
      "  updated = excluded.updated")                                                         \
    X(STAGES_LIST, "SELECT stage, status, pid, step, total_steps, rate, heartbeat, restarts, " \
                   "losses, exit_status, updated FROM stages WHERE run_id = ?1 ORDER BY stage") \
    X(CKPT_ADD,                                                                               \
      "INSERT INTO checkpoints (run_id, stage, step, epoch, path, bytes, sha256, valid, "     \
      "                         created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8) "         \
      "ON CONFLICT (run_id, stage, step) DO UPDATE SET epoch = excluded.epoch, "              \
      "  path = excluded.path, bytes = excluded.bytes, sha256 = excluded.sha256, valid = 1, " \
      "  created = excluded.created RETURNING id")                                            \
    X(CKPTS_LIST, "SELECT id, stage, step, epoch, path, bytes, sha256, valid, created "       \
                  "FROM checkpoints WHERE run_id = ?1 AND stage = ?2 ORDER BY step DESC")     \
    X(CKPT_INVALIDATE, "UPDATE checkpoints SET valid = 0 WHERE id = ?1 RETURNING run_id")     \
    X(METRIC_ADD, "INSERT INTO metrics (run_id, stage, step, name, value, time) "             \
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (run_id, stage, step, name) "  \
                  "DO UPDATE SET value = excluded.value, time = excluded.time")               \
    X(METRICS_LIST, "SELECT stage, step, name, value FROM metrics WHERE run_id = ?1 "         \
                    "ORDER BY stage, name, step")                                             \
    X(EVENT_ADD, "INSERT INTO events (run_id, time, level, text) VALUES (?1, ?2, ?3, ?4)")    \
    X(EVENTS_LIST, "SELECT time, level, text FROM events WHERE run_id = ?1 ORDER BY id")      \
    X(JOB_ADD, "INSERT INTO jobs (run_id, kind, input, output, status, created) "             \
               "VALUES (?1, ?2, ?3, ?4, 'running', ?5)")                                      \
    X(JOB_FINISH, "UPDATE jobs SET status = ?2, message = ?3, finished = ?4 "                 \
                  "WHERE id = ?1 RETURNING run_id") \
    X(JOBS_LIST, "SELECT id, kind, input, output, status, message, created, finished "        \
                 "FROM jobs WHERE run_id = ?1 ORDER BY id")

enum {
#define DB_ENUM(name, sql) STMT_##name,
    DB_STATEMENTS(DB_ENUM)
#undef DB_ENUM
    STMT_COUNT
};

static const char *const db_sql[STMT_COUNT] = {
#define DB_SQL(name, sql) sql,
    DB_STATEMENTS(DB_SQL)
#undef DB_SQL
};

struct Db {
    sqlite3 *h;
    char *path;
    int readonly;
    int busy_ms;
    const DbMigration *extra;   // db_open_with's, for a reopen after the file moved
    int nextra;
    DbNoticeFn notice;
    void *notice_ctx;
    sqlite3_stmt *stmt[STMT_COUNT];
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// "<file>: <what>: <sqlite message>", taken before anything else can overwrite it.
static void db_err(const Db *db, const char *what) {
    MDGAN_ERR("%s: %s: %s", db->path, what, sqlite3_errmsg(db->h));
}

// ---- binding and stepping: every call checked

static int bind_text(Db *db, sqlite3_stmt *s, int i, const char *v) {
    int rc = v ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
    if (rc != SQLITE_OK) {
        db_err(db, "bind");
        return -1;
    }
    return 0;
}

static int bind_i64(Db *db, sqlite3_stmt *s, int i, int64_t v) {
    if (sqlite3_bind_int64(s, i, v) != SQLITE_OK) {
        db_err(db, "bind");
        return -1;
    }
    return 0;
}

// 0 (and NaN for a double) is bound as NULL: "none".
static int bind_i64_or_null(Db *db, sqlite3_stmt *s, int i, int64_t v) {
    if (v) return bind_i64(db, s, i, v);
    if (sqlite3_bind_null(s, i) != SQLITE_OK) {
        db_err(db, "bind");
        return -1;
    }
    return 0;
}

static int bind_double(Db *db, sqlite3_stmt *s, int i, double v) {
    int rc = isnan(v) ? sqlite3_bind_null(s, i) : sqlite3_bind_double(s, i, v);
    if (rc != SQLITE_OK) {
        db_err(db, "bind");
        return -1;
    }
    return 0;
}

static void stmt_reset(sqlite3_stmt *s) {
    if (!s) return;   // not prepared: a reopen after the file moved failed (its message was set)
    // The step's result was already checked; reset only repeats its error code.
    (void)sqlite3_reset(s);
    (void)sqlite3_clear_bindings(s);
}

// Steps a statement that returns no row (or one RETURNING row, *out receives its
// first column when out is not NULL). Returns 0, 1 when a RETURNING statement
// touched no row, -1 on error with the message "<file>: <what>: <sqlite>".
static int stmt_exec(Db *db, sqlite3_stmt *s, const char *what, int64_t *out) {
    int rc = sqlite3_step(s), ret = 0;
    if (rc == SQLITE_ROW) {
        if (out) *out = sqlite3_column_int64(s, 0);
        rc = sqlite3_step(s);   // a RETURNING statement completes on the next step
    } else if (rc == SQLITE_DONE && out) {
        ret = 1;
    }
    if (rc != SQLITE_DONE) {
        db_err(db, what);
        ret = -1;
    }
    stmt_reset(s);
    return ret;
}

static const char *col_text(sqlite3_stmt *s, int i) {
    return (const char *)sqlite3_column_text(s, i);
}

static double col_double_or_nan(sqlite3_stmt *s, int i) {
    return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : sqlite3_column_double(s, i);
}

// ---- transactions

static int db_relocate(Db *db);

static int tx_begin(Db *db, const char *what) {
    if (db->readonly) {
        MDGAN_ERR("%s: %s: the database was opened read-only", db->path, what);
        return -1;
    }
    int moved = 0;
    if (db->notice && db->h && sqlite3_file_control(db->h, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK && moved &&
        db_relocate(db) != 0)
        return -1;
    for (int waits = 1;; waits++) {
        int rc = sqlite3_step(db->stmt[STMT_BEGIN]);
        char buf[512];
        if (rc == SQLITE_DONE) {
            stmt_reset(db->stmt[STMT_BEGIN]);
            return 0;
        }
        if ((rc & 0xff) == SQLITE_BUSY && db->notice) {
            snprintf(buf, sizeof buf, "%s: %s: the database is locked by another process (its write lock held "
                     "for more than %d s, %d x busy_timeout)", db->path, what, waits * db->busy_ms / 1000, waits);
            stmt_reset(db->stmt[STMT_BEGIN]);
            if (db->notice(db->notice_ctx, DB_NOTICE_LOCKED, buf)) continue;
            MDGAN_ERR("%s", buf);
            return -1;
        }
        snprintf(buf, sizeof buf, "%s: cannot begin a write transaction", what);
        db_err(db, buf);
        stmt_reset(db->stmt[STMT_BEGIN]);
        return -1;
    }
}

// Keeps the message already set by the failed statement.
static void tx_rollback(Db *db) {
    if (sqlite3_get_autocommit(db->h)) return;   // SQLite already rolled back
    (void)sqlite3_step(db->stmt[STMT_ROLLBACK]);  // nothing more to do if even this fails
    stmt_reset(db->stmt[STMT_ROLLBACK]);
}

// Touches runs.updated of run_id (when > 0) and commits; rolls back on failure.
static int tx_commit(Db *db, int64_t run_id, const char *what) {
    if (run_id > 0) {
        sqlite3_stmt *t = db->stmt[STMT_RUN_TOUCH];
        if (bind_i64(db, t, 1, run_id) || bind_double(db, t, 2, now_s()) ||
            stmt_exec(db, t, what, NULL) != 0) {
            stmt_reset(t);
            tx_rollback(db);
            return -1;
        }
    }
    int rc = sqlite3_step(db->stmt[STMT_COMMIT]);
    if (rc != SQLITE_DONE) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s: commit", what);
        db_err(db, buf);
    }
    stmt_reset(db->stmt[STMT_COMMIT]);
    if (rc != SQLITE_DONE) {
        tx_rollback(db);
        return -1;
    }
    return 0;
}

// Fails the transaction: resets s, rolls back, returns -1.
static int tx_fail(Db *db, sqlite3_stmt *s) {
    if (s) stmt_reset(s);
    tx_rollback(db);
    return -1;
}

// ---- open

// One integer from a PRAGMA (or any single-value query).
static int query_int(Db *db, const char *sql, int64_t *out, const char *what) {
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->h, sql, -1, &s, NULL) != SQLITE_OK) {
        db_err(db, what);
        return -1;
    }
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(s, 0);
    else db_err(db, what);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int query_text(Db *db, const char *sql, char *out, size_t n, const char *what) {
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->h, sql, -1, &s, NULL) != SQLITE_OK) {
        db_err(db, what);
        return -1;
    }
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *t = col_text(s, 0);
        snprintf(out, n, "%s", t ? t : "");
    } else {
        db_err(db, what);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int db_exec(Db *db, const char *sql, const char *what) {
    char *msg = NULL;
    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        MDGAN_ERR("%s: %s: %s", db->path, what, msg ? msg : sqlite3_errmsg(db->h));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

// Applies steps[i] for every version above the current one, one BEGIN IMMEDIATE
// transaction each. The version is read again inside the transaction, so two
// writers opening a fresh file at once apply each step once.
static int db_migrate(Db *db, const DbMigration *steps, int nsteps) {
    for (int i = 0; i < nsteps; i++) {
        char what[64];
        snprintf(what, sizeof what, "migrating the schema to version %d", steps[i].version);
        if (db_exec(db, "BEGIN IMMEDIATE", what) != 0) return -1;
        int64_t v;
        if (query_int(db, "PRAGMA user_version", &v, what) != 0) goto fail;
        if (v >= steps[i].version) {
            if (db_exec(db, "COMMIT", what) != 0) goto fail;
            continue;
        }
        char setv[64];
        snprintf(setv, sizeof setv, "PRAGMA user_version = %d", steps[i].version);
        if (db_exec(db, steps[i].sql, what) != 0 || db_exec(db, setv, what) != 0 ||
            db_exec(db, "COMMIT", what) != 0)
            goto fail;
        continue;
    fail:
        if (!sqlite3_get_autocommit(db->h)) (void)sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

static int db_setup(Db *db, const DbMigration *extra, int nextra) {
    const int target = DB_SCHEMA_VERSION + nextra;
    for (int i = 0; i < nextra; i++)
        if (extra[i].version != DB_SCHEMA_VERSION + 1 + i || !extra[i].sql) {
            MDGAN_ERR("%s: extra migration %d has version %d, expected %d", db->path, i,
                      extra[i].version, DB_SCHEMA_VERSION + 1 + i);
            return -1;
        }
    if (sqlite3_extended_result_codes(db->h, 1) != SQLITE_OK ||
        sqlite3_busy_timeout(db->h, db->busy_ms) != SQLITE_OK) {
        db_err(db, "cannot configure the connection");
        return -1;
    }
    // Read before anything writes: a file that is not a database, or one of a newer
    // schema, is refused untouched.
    // One read transaction, so that a writer migrating the file meanwhile is seen
    // either not at all or completely.
    int64_t version, appid, nobjects;
    if (db_exec(db, "BEGIN", "cannot begin a read transaction") != 0) return -1;
    if (query_int(db, "PRAGMA user_version", &version, "cannot read the schema version") != 0 ||
        query_int(db, "PRAGMA application_id", &appid, "cannot read the application id") != 0 ||
        query_int(db, "SELECT count(*) FROM sqlite_schema", &nobjects, "cannot read the schema") != 0) {
        if (!sqlite3_get_autocommit(db->h)) (void)sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (db_exec(db, "COMMIT", "cannot end a read transaction") != 0) return -1;
    if ((version > 0 && appid != DB_APPLICATION_ID) || (version == 0 && nobjects > 0)) {
        MDGAN_ERR("%s is an SQLite database but not an mdgan one (application_id %lld, "
                  "user_version %lld); refusing to touch it",
                  db->path, (long long)appid, (long long)version);
        return -1;
    }
    if (version > target) {
        MDGAN_ERR("%s has schema version %lld, newer than this build's version %d: it was "
                  "written by a newer mdgan; refusing to open it",
                  db->path, (long long)version, target);
        return -1;
    }
    if (db->readonly && version < target) {
        if (version == 0)
            MDGAN_ERR("%s holds no mdgan schema yet (an empty database): nothing recorded",
                      db->path);
        else
            MDGAN_ERR("%s has schema version %lld, older than this build's version %d; a "
                      "read-only open does not migrate: let the coordinator (mdgan run or "
                      "resume) open it once",
                      db->path, (long long)version, target);
        return -1;
    }
    char mode[32];
    if (!db->readonly) {
        if (query_text(db, "PRAGMA journal_mode = WAL", mode, sizeof mode,
                       "cannot set journal_mode=WAL") != 0)
            return -1;
        if (strcmp(mode, "wal") != 0) {
            MDGAN_ERR("%s: journal_mode=WAL was refused (the mode is '%s'); the coordinator "
                      "needs WAL so that readers never block it",
                      db->path, mode);
            return -1;
        }
        if (db_exec(db, "PRAGMA synchronous = NORMAL", "cannot set synchronous=NORMAL") != 0)
            return -1;
    } else if (db_exec(db, "PRAGMA query_only = ON", "cannot set query_only") != 0) {
        return -1;
    }
    int64_t fk = 0;
    if (db_exec(db, "PRAGMA foreign_keys = ON", "cannot set foreign_keys=ON") != 0 ||
        query_int(db, "PRAGMA foreign_keys", &fk, "cannot read foreign_keys") != 0)
        return -1;
    if (fk != 1) {
        MDGAN_ERR("%s: foreign_keys=ON did not take (this SQLite lacks foreign keys)", db->path);
        return -1;
    }
    if (!db->readonly) {
        if (db_migrate(db, db_migrations, DB_SCHEMA_VERSION) != 0 ||
            db_migrate(db, extra, nextra) != 0)
            return -1;
    }
    for (int i = 0; i < STMT_COUNT; i++)
        if (sqlite3_prepare_v3(db->h, db_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &db->stmt[i],
                               NULL) != SQLITE_OK) {
            char what[96];
            snprintf(what, sizeof what, "cannot prepare statement %d", i);
            db_err(db, what);
            return -1;
        }
    return 0;
}

Db *db_open_with(const char *path, int readonly, const DbMigration *extra, int nextra) {
    Db *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) {
        MDGAN_ERR("%s: out of memory", path);
        free(db);
        return NULL;
    }
    db->readonly = readonly;
    db->busy_ms = DB_BUSY_TIMEOUT_MS;
    db->extra = extra, db->nextra = nextra;
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, &db->h, flags, NULL);
    if (rc != SQLITE_OK) {
        int e = db->h ? sqlite3_system_errno(db->h) : 0;
        MDGAN_ERR("cannot open database %s: %s%s%s%s", path,
                  db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc), e ? " (" : "",
                  e ? strerror(e) : "", e ? ")" : "");
        db_close(db);
        return NULL;
    }
    if (db_setup(db, extra, nextra) != 0) {
        db_close(db);
        return NULL;
    }
    return db;
}

Db *db_open(const char *path, int readonly) { return db_open_with(path, readonly, NULL, 0); }

static void db_close_handle(Db *db) {
    for (int i = 0; i < STMT_COUNT; i++) sqlite3_finalize(db->stmt[i]), db->stmt[i] = NULL;
    // sqlite3_close only fails with unfinalized statements, and all are finalized here.
    if (db->h) (void)sqlite3_close(db->h);
    db->h = NULL;
}

void db_close(Db *db) {
    if (!db) return;
    db_close_handle(db);
    free(db->path);
    free(db);
}

const char *db_path(const Db *db) { return db->path; }

int db_set_busy_timeout(Db *db, int ms) {
    if (sqlite3_busy_timeout(db->h, ms) != SQLITE_OK) {
        db_err(db, "cannot set busy_timeout");
        return -1;
    }
    db->busy_ms = ms;
    return 0;
}

void db_set_notice(Db *db, DbNoticeFn fn, void *ctx) { db->notice = fn, db->notice_ctx = ctx; }

// The file at db->path is no longer the one the connection has open: deleted, or
// another file renamed over it. The connection still reads the whole database (through
// its open files), so: the WAL goes into our own file and is emptied (a -wal left at
// the path must not be replayed into someone else's file), the content is copied out
// (VACUUM INTO a new file beside the path) and synced, the connection closed, and the
// copy renamed to the path if nothing is there, else to "<path>.saved-<pid>". Writing
// over the path is never done (renameat2 RENAME_NOREPLACE). The Db reopens the copy.
static int db_relocate(Db *db) {
    char *tmp = NULL, *dest = NULL, *side = NULL;
    int rc = -1, fd = -1;
    struct stat sb;
    if (asprintf(&tmp, "%s.recover-%ld", db->path, (long)getpid()) < 0) {
        MDGAN_ERR("%s: out of memory", db->path);
        return -1;
    }
    unlink(tmp);
    (void)sqlite3_exec(db->h, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);   // best effort
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db->h, "VACUUM INTO ?1", -1, &s, NULL) != SQLITE_OK || bind_text(db, s, 1, tmp) ||
        sqlite3_step(s) != SQLITE_DONE) {
        char what[256];
        snprintf(what, sizeof what, "the file was deleted or replaced, and copying the open database to %s failed",
                 tmp);
        db_err(db, what);
        sqlite3_finalize(s);
        unlink(tmp);
        goto out;
    }
    sqlite3_finalize(s);
    if ((fd = open(tmp, O_RDONLY | O_CLOEXEC)) < 0 || fsync(fd) != 0) {
        MDGAN_ERR("%s: cannot sync the copy of the database: %s", tmp, strerror(errno));
        goto out;
    }
    const int deleted = stat(db->path, &sb) != 0 && errno == ENOENT;
    db_close_handle(db);
    if (deleted) {   // what is left at the path is the old connection's -wal and -shm
        for (int k = 0; k < 2; k++)
            if (asprintf(&side, "%s-%s", db->path, k ? "shm" : "wal") >= 0) unlink(side), free(side), side = NULL;
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, db->path, RENAME_NOREPLACE) == 0) dest = strdup(db->path);
    }
    if (!dest && asprintf(&dest, "%s.saved-%ld", db->path, (long)getpid()) >= 0 &&
        renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RENAME_NOREPLACE) != 0)
        free(dest), dest = NULL;
    if (!dest) dest = tmp, tmp = NULL;   // no name could be taken: the Db goes on in the copy itself
    char *slash = strrchr(dest, '/'), *dir = slash ? strndup(dest, (size_t)(slash - dest)) : strdup(".");
    int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) (void)fsync(dfd), close(dfd);   // the copy is synced; its name is best effort
    free(dir);
    char text[2200];
    if (!strcmp(dest, db->path))
        snprintf(text, sizeof text, "%s was deleted while this process had it open: written back there from the open "
                 "connection", db->path);
    else
        snprintf(text, sizeof text, "%s was %s while this process had it open: the records go on in %s", db->path,
                 deleted ? "deleted" : "replaced by another file (that file is left alone)", dest);
    free(db->path);
    db->path = dest;
    if (sqlite3_open_v2(dest, &db->h, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        db_err(db, "cannot reopen the database");   // every later call fails naming it
        goto out;
    }
    if (db_setup(db, db->extra, db->nextra) != 0) goto out;
    db->notice(db->notice_ctx, DB_NOTICE_MOVED, text);
    rc = 0;
out:
    if (fd >= 0) close(fd);
    free(tmp);
    return rc;
}

// ---- runs

int db_run_create(Db *db, const char *name, const char *config, const char *config_sha256,
                  int64_t *id) {
    const char *what = "creating a run";
    if (tx_begin(db, what) != 0) return -1;
    sqlite3_stmt *s = db->stmt[STMT_RUN_INSERT];
    if (bind_text(db, s, 1, name) || bind_text(db, s, 2, config) ||
        bind_text(db, s, 3, config_sha256) || bind_double(db, s, 4, now_s()))
        return tx_fail(db, s);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
        if (sqlite3_extended_errcode(db->h) == SQLITE_CONSTRAINT_UNIQUE)
            MDGAN_ERR("run '%s' already exists in %s", name, db->path);
        else
            MDGAN_ERR("%s: creating run '%s': %s", db->path, name, sqlite3_errmsg(db->h));
        return tx_fail(db, s);
    }
    stmt_reset(s);
    int64_t rid = sqlite3_last_insert_rowid(db->h);
    if (tx_commit(db, 0, what) != 0) return -1;
    if (id) *id = rid;
    return 0;
}

static char *dup_col(sqlite3_stmt *s, int i) {
    const char *t = col_text(s, i);
    return strdup(t ? t : "");
}

int db_run_get(Db *db, const char *name, DbRun *out) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = db->stmt[STMT_RUN_GET];
    if (bind_text(db, s, 1, name)) {
        stmt_reset(s);
        return -1;
    }
    int rc = sqlite3_step(s), ret = 0;
    if (rc == SQLITE_ROW) {
        out->id = sqlite3_column_int64(s, 0);
        out->name = dup_col(s, 1);
        out->config = dup_col(s, 2);
        snprintf(out->config_sha256, sizeof out->config_sha256, "%s",
                 col_text(s, 3) ? col_text(s, 3) : "");
        out->status = dup_col(s, 4);
        out->pid = sqlite3_column_int(s, 5);
        out->created = sqlite3_column_double(s, 6);
        out->updated = sqlite3_column_double(s, 7);
        out->options = col_text(s, 8) ? strdup(col_text(s, 8)) : NULL;
        if (!out->name || !out->config || !out->status || (col_text(s, 8) && !out->options)) {
            MDGAN_ERR("%s: reading run '%s': out of memory", db->path, name);
            db_run_free(out);
            ret = -1;
        }
    } else if (rc == SQLITE_DONE) {
        MDGAN_ERR("no run named '%s' in %s", name, db->path);
        ret = 1;
    } else {
        db_err(db, "reading a run");
        ret = -1;
    }
    stmt_reset(s);
    return ret;
}

void db_run_free(DbRun *r) {
    free(r->name);
    free(r->config);
    free(r->status);
    free(r->options);
    r->name = r->config = r->status = r->options = NULL;
}

// An UPDATE of one run by id that must find it.
static int run_update(Db *db, int stmt, int64_t run_id, const char *text, int64_t num,
                      const char *what) {
    if (tx_begin(db, what) != 0) return -1;
    sqlite3_stmt *s = db->stmt[stmt];
    if (bind_i64(db, s, 1, run_id) ||
        (text ? bind_text(db, s, 2, text) : bind_i64_or_null(db, s, 2, num)) ||
        bind_double(db, s, 3, now_s()) || stmt_exec(db, s, what, NULL) != 0)
        return tx_fail(db, s);
    if (sqlite3_changes(db->h) != 1) {
        MDGAN_ERR("%s: %s: no run with id %lld", db->path, what, (long long)run_id);
        return tx_fail(db, NULL);
    }
    return tx_commit(db, 0, what);
}

int db_run_set_status(Db *db, int64_t run_id, const char *status) {
    if (!status) {
        MDGAN_ERR("%s: setting a run's status: no status given", db->path);
        return -1;
    }
    return run_update(db, STMT_RUN_SET_STATUS, run_id, status, 0, "setting a run's status");
}

int db_run_set_pid(Db *db, int64_t run_id, int pid) {
    return run_update(db, STMT_RUN_SET_PID, run_id, NULL, pid, "setting a run's pid");
}

int db_run_set_options(Db *db, int64_t run_id, const char *options_json) {
    return run_update(db, STMT_RUN_SET_OPTIONS, run_id, options_json, 0, "setting a run's options");
}

int db_runs_list(Db *db, DbRunFn fn, void *ctx) {
    sqlite3_stmt *s = db->stmt[STMT_RUNS_LIST];
    int rc, ret = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        DbRunRow r = {
            .id = sqlite3_column_int64(s, 0),
            .name = col_text(s, 1),
            .status = col_text(s, 2),
            .pid = sqlite3_column_int(s, 3),
            .created = sqlite3_column_double(s, 4),
            .updated = sqlite3_column_double(s, 5),
            .stage = col_text(s, 6),
            .step = sqlite3_column_int64(s, 7),
            .metrics_stage = col_text(s, 8),
            .metrics_step = sqlite3_column_int64(s, 9),
            .metrics = col_text(s, 10),
        };
        if ((ret = fn(&r, ctx)) != 0) break;
    }
    if (ret == 0 && rc != SQLITE_DONE) {
        db_err(db, "listing runs");
        ret = -1;
    }
    stmt_reset(s);
    return ret;
}

// ---- stages

int db_stage_put(Db *db, int64_t run_id, const DbStage *st) {
    const char *what = "recording a stage's state";
    if (tx_begin(db, what) != 0) return -1;
    sqlite3_stmt *s = db->stmt[STMT_STAGE_PUT];
    if (bind_i64(db, s, 1, run_id) || bind_text(db, s, 2, st->stage) ||
        bind_text(db, s, 3, st->status) || bind_i64_or_null(db, s, 4, st->pid) ||
        bind_i64(db, s, 5, st->step) || bind_i64(db, s, 6, st->total_steps) ||
        bind_double(db, s, 7, st->rate) ||
        bind_double(db, s, 8, st->heartbeat > 0 ? st->heartbeat : NAN) ||
        bind_i64(db, s, 9, st->restarts) || bind_text(db, s, 10, st->losses) ||
        bind_text(db, s, 11, st->exit_status) || bind_double(db, s, 12, now_s()))
        return tx_fail(db, s);
    char buf[160];
    snprintf(buf, sizeof buf, "recording stage '%.64s' of run %lld", st->stage ? st->stage : "",
             (long long)run_id);
    if (stmt_exec(db, s, buf, NULL) != 0) return tx_fail(db, s);
    return tx_commit(db, run_id, what);
}

int db_stages_list(Db *db, int64_t run_id, DbStageFn fn, void *ctx) {
    sqlite3_stmt *s = db->stmt[STMT_STAGES_LIST];
    if (bind_i64(db, s, 1, run_id)) {
        stmt_reset(s);
        return -1;
    }
    int rc, ret = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        DbStage st = {
            .stage = col_text(s, 0),
            .status = col_text(s, 1),
            .pid = sqlite3_column_int(s, 2),
            .step = sqlite3_column_int64(s, 3),
            .total_steps = sqlite3_column_int64(s, 4),
            .rate = col_double_or_nan(s, 5),
            .heartbeat = sqlite3_column_double(s, 6),
            .restarts = sqlite3_column_int(s, 7),
            .losses = col_text(s, 8),
            .exit_status = col_text(s, 9),
            .updated = sqlite3_column_double(s, 10),
        };
        if ((ret = fn(&st, ctx)) != 0) break;
    }
    if (ret == 0 && rc != SQLITE_DONE) {
        db_err(db, "listing stages");
        ret = -1;
    }
    stmt_reset(s);
    return ret;
}

// ---- checkpoints

int db_ckpt_add(Db *db, int64_t run_id, const DbCheckpoint *c, int64_t *id) {
    const char *what = "recording a checkpoint";
    if (tx_begin(db, what) != 0) return -1;
    sqlite3_stmt *s = db->stmt[STMT_CKPT_ADD];
    if (bind_i64(db, s, 1, run_id) || bind_text(db, s, 2, c->stage) ||
        bind_i64(db, s, 3, c->step) || bind_i64(db, s, 4, c->epoch) ||
        bind_text(db, s, 5, c->path) || bind_i64(db, s, 6, c->bytes) ||
        bind_text(db, s, 7, c->sha256) || bind_double(db, s, 8, now_s()))
        return tx_fail(db, s);
    char buf[200];
    snprintf(buf, sizeof buf, "recording checkpoint %.80s (run %lld, stage '%.32s', step %lld)",
             c->path ? c->path : "", (long long)run_id, c->stage ? c->stage : "",
             (long long)c->step);
    int64_t cid = 0;
    if (stmt_exec(db, s, buf, &cid) != 0) return tx_fail(db, s);
    if (tx_commit(db, run_id, what) != 0) return -1;
    if (id) *id = cid;
    return 0;
}

int db_ckpts_list(Db *db, int64_t run_id, const char *stage, DbCkptFn fn, void *ctx) {
    sqlite3_stmt *s = db->stmt[STMT_CKPTS_LIST];
    if (bind_i64(db, s, 1, run_id) || bind_text(db, s, 2, stage)) {
        stmt_reset(s);
        return -1;
    }
    int rc, ret = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        DbCheckpoint c = {
            .id = sqlite3_column_int64(s, 0),
            .stage = col_text(s, 1),
            .step = sqlite3_column_int64(s, 2),
            .epoch = sqlite3_column_int64(s, 3),
            .path = col_text(s, 4),
            .bytes = sqlite3_column_int64(s, 5),
            .sha256 = col_text(s, 6),
            .valid = sqlite3_column_int(s, 7),
            .created = sqlite3_column_double(s, 8),
        };
        if ((ret = fn(&c, ctx)) != 0) break;
    }
    if (ret == 0 && rc != SQLITE_DONE) {
        db_err(db, "listing checkpoints");
        ret = -1;
    }
    stmt_reset(s);
    return ret;
}

int db_ckpt_invalidate(Db *db, int64_t ckpt_id) {
    const char *what = "marking a checkpoint invalid";
    if (tx_begin(db, what) != 0) return -1;
    sqlite3_stmt *s = db->stmt[STMT_CKPT_INVALIDATE];
    int64_t run_id = 0;
    if (bind_i64(db, s, 1, ckpt_id)) return tx_fail(db, s);
    int rc = stmt_exec(db, s, what, &run_id);
    if (rc == 1) MDGAN_ERR("%s: %s: no checkpoint with id %lld", db->path, what, (long long)ckpt_id);
    if (rc != 0) return tx_fail(db, NULL);
    return tx_commit(db, run_id, what);
}

// ---- metrics

int db_metrics_add(Db *db, int64_t run_id, const char *stage, int64_t step, const DbMetric *m,
                   int n) {
    const char *what = "recording metrics";
    if (tx_begin(db, what) != 0) return -1;
    sqlite3_stmt *s = db->stmt[STMT_METRIC_ADD];
    double t = now_s();
    for (int i = 0; i < n; i++) {
        if (bind_i64(db, s, 1, run_id) || bind_text(db, s, 2, stage) || bind_i64(db, s, 3, step) ||
            bind_text(db, s, 4, m[i].name) || bind_double(db, s, 5, m[i].value) ||
            bind_double(db, s, 6, t))
            return tx_fail(db, s);
        char buf[200];
        snprintf(buf, sizeof buf, "recording metric '%.64s' (run %lld, stage '%.32s', step %lld)",
                 m[i].name ? m[i].name : "", (long long)run_id, stage ? stage : "",
                 (long long)step);
        if (stmt_exec(db, s, buf, NULL) != 0) return tx_fail(db, s);
    }
    return tx_commit(db, run_id, what);
}

int db_metrics_list(Db *db, int64_t run_id, DbMetricFn fn, void *ctx) {
    sqlite3_stmt *s = db->stmt[STMT_METRICS_LIST];
    if (bind_i64(db, s, 1, run_id)) {
        stmt_reset(s);
        return -1;
    }
    int rc, ret = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if ((ret = fn(col_text(s, 0), sqlite3_column_int64(s, 1), col_text(s, 2),
                      col_double_or_nan(s, 3), ctx)) != 0)
            break;
    if (ret == 0 && rc != SQLITE_DONE) {
        db_err(db, "listing metrics");
        ret = -1;
    }
    stmt_reset(s);
    return ret;
}

// ---- events

int db_event_add(Db *db, int64_t run_id, const char *level, const char *text) {
    const char *what = "recording an event";
    if (tx_begin(db, what) != 0) return -1;
    sqlite3_stmt *s = db->stmt[STMT_EVENT_ADD];
    char buf[160];
    snprintf(buf, sizeof buf, "recording an event of run %lld", (long long)run_id);
    if (bind_i64(db, s, 1, run_id) || bind_double(db, s, 2, now_s()) ||
        bind_text(db, s, 3, level) || bind_text(db, s, 4, text) || stmt_exec(db, s, buf, NULL) != 0)
        return tx_fail(db, s);
    return tx_commit(db, run_id, what);
}

int db_events_list(Db *db, int64_t run_id, DbEventFn fn, void *ctx) {
    sqlite3_stmt *s = db->stmt[STMT_EVENTS_LIST];
    if (bind_i64(db, s, 1, run_id)) {
        stmt_reset(s);
        return -1;
    }
    int rc, ret = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if ((ret = fn(sqlite3_column_double(s, 0), col_text(s, 1), col_text(s, 2), ctx)) != 0)
            break;
    if (ret == 0 && rc != SQLITE_DONE) {
        db_err(db, "listing events");
        ret = -1;
    }
    stmt_reset(s);
    return ret;
}

// ---- jobs

int db_jobs_list(Db *db, int64_t run_id, DbJobFn fn, void *ctx) {
    sqlite3_stmt *s = db->stmt[STMT_JOBS_LIST];
    if (bind_i64(db, s, 1, run_id)) {
        stmt_reset(s);
        return -1;
    }
    int rc, ret = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        DbJob j = {sqlite3_column_int64(s, 0), col_text(s, 1), col_text(s, 2), col_text(s, 3), col_text(s, 4),
                   col_text(s, 5), sqlite3_column_double(s, 6), sqlite3_column_double(s, 7)};
        if ((ret = fn(&j, ctx)) != 0) break;
    }
    if (ret == 0 && rc != SQLITE_DONE) {
        db_err(db, "listing jobs");
        ret = -1;
    }
    stmt_reset(s);
    return ret;
}

int db_job_add(Db *db, int64_t run_id, const char *kind, const char *input, const char *output,
               int64_t *id) {
    const char *what = "recording a job";
    if (tx_begin(db, what) != 0) return -1;
    sqlite3_stmt *s = db->stmt[STMT_JOB_ADD];
    char buf[160];
    snprintf(buf, sizeof buf, "recording a %.32s job of run %lld", kind ? kind : "",
             (long long)run_id);
    if (bind_i64(db, s, 1, run_id) || bind_text(db, s, 2, kind) || bind_text(db, s, 3, input) ||
        bind_text(db, s, 4, output) || bind_double(db, s, 5, now_s()) ||
        stmt_exec(db, s, buf, NULL) != 0)
        return tx_fail(db, s);
    int64_t jid = sqlite3_last_insert_rowid(db->h);
    if (tx_commit(db, run_id, what) != 0) return -1;
    if (id) *id = jid;
    return 0;
}

int db_job_finish(Db *db, int64_t job_id, const char *status, const char *message) {
    const char *what = "finishing a job";
    if (tx_begin(db, what) != 0) return -1;
    sqlite3_stmt *s = db->stmt[STMT_JOB_FINISH];
    int64_t run_id = 0;
    if (bind_i64(db, s, 1, job_id) || bind_text(db, s, 2, status) || bind_text(db, s, 3, message) ||
        bind_double(db, s, 4, now_s()))
        return tx_fail(db, s);
    int rc = stmt_exec(db, s, what, &run_id);
    if (rc == 1) MDGAN_ERR("%s: %s: no job with id %lld", db->path, what, (long long)job_id);
    if (rc != 0) return tx_fail(db, NULL);
    return tx_commit(db, run_id, what);
}

// ---- integrity

int db_integrity_check(Db *db) {
    sqlite3_stmt *s;
    char first[512] = "";
    int bad = 0, rc;
    if (sqlite3_prepare_v2(db->h, "PRAGMA integrity_check", -1, &s, NULL) != SQLITE_OK) {
        db_err(db, "integrity check");
        return -1;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *t = col_text(s, 0);
        if (t && strcmp(t, "ok") == 0) continue;
        if (!bad++) snprintf(first, sizeof first, "%s", t ? t : "(null)");
    }
    if (rc != SQLITE_DONE) {
        db_err(db, "integrity check");
        sqlite3_finalize(s);
        return -1;
    }
    sqlite3_finalize(s);
    if (bad) {
        MDGAN_ERR("%s: integrity check failed (%d problems), first: %s", db->path, bad, first);
        return -1;
    }
    if (sqlite3_prepare_v2(db->h, "PRAGMA foreign_key_check", -1, &s, NULL) != SQLITE_OK) {
        db_err(db, "foreign key check");
        return -1;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (!bad++)
            snprintf(first, sizeof first, "row %lld of %s refers to a missing row of %s",
                     (long long)sqlite3_column_int64(s, 1), col_text(s, 0), col_text(s, 2));
    if (rc != SQLITE_DONE) {
        db_err(db, "foreign key check");
        sqlite3_finalize(s);
        return -1;
    }
    sqlite3_finalize(s);
    if (bad) {
        MDGAN_ERR("%s: foreign key check failed (%d rows), first: %s", db->path, bad, first);
        return -1;
    }
    return 0;
}
