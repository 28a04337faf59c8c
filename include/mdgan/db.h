#ifndef MDGAN_DB_H
#define MDGAN_DB_H
// The coordinator's SQLite database (coord.db, DESIGN.md section 5): runs, stages,
// checkpoints, metrics, events and jobs.
//
// One process writes it (the coordinator); `mdgan runs/status/report` open it
// read-only. At open: busy_timeout, WAL (the mode is read back: a writer refuses any
// other), synchronous=NORMAL, foreign_keys=ON (read back), then the schema
// migrations under PRAGMA user_version, one BEGIN IMMEDIATE transaction per step.
// A database of a newer schema is refused untouched; a read-only open never
// migrates and refuses an older schema. Every write is one BEGIN IMMEDIATE
// transaction. Every caller text is bound, never formatted into SQL.
//
// Functions return 0 on success and -1 (or NULL) with a message naming the file and
// sqlite3_errmsg through mdgan/error.h. A Db is for one thread at a time.
//
// Times are unix seconds (double, sub-second). Status texts are checked by the
// schema (a wrong one fails with "CHECK constraint failed"):
//   run:   created | running | stopped | failed | done
//   stage: pending | starting | running | stopped | failed | done
//   job:   running | done | failed          job kind: refine | predict
//   event level: info | warn | error

#include <stdint.h>

typedef struct Db Db;

// This build's schema version (the number of built-in migration steps).
#define DB_SCHEMA_VERSION 2
// PRAGMA application_id of an mdgan database ("mdgn").
#define DB_APPLICATION_ID 0x6d64676e

enum { DB_BUSY_TIMEOUT_MS = 5000 };

// Creates path (its folder must exist) when readonly is 0 and it is missing.
Db *db_open(const char *path, int readonly);
void db_close(Db *db);   // NULL is fine
const char *db_path(const Db *db);
// Replaces the busy timeout set at open (tests, or a caller that must not wait).
int db_set_busy_timeout(Db *db, int ms);

// What the owner of a read-write Db is told (db_set_notice), text naming the file:
//   DB_NOTICE_LOCKED  another process has held the write lock past busy_timeout; the
//                     handler returns 1 to wait another busy_timeout, 0 to fail the
//                     write as a Db without a handler does.
//   DB_NOTICE_MOVED   the file at the path was deleted or replaced (renamed over) while
//                     the Db had it open. Its content, read through the open connection,
//                     was written back to the path (deleted) or beside it as
//                     "<path>.saved-<pid>" (replaced: the other file is left alone), and
//                     the Db goes on in that file (db_path names it).
// With a handler, every write first checks that the file at the path is still the
// one open, so no transaction goes into a file that is no longer the database.
enum { DB_NOTICE_LOCKED = 1, DB_NOTICE_MOVED };
typedef int (*DbNoticeFn)(void *ctx, int kind, const char *text);
void db_set_notice(Db *db, DbNoticeFn fn, void *ctx);

// A migration step: sql brings the schema from version-1 to version.
typedef struct {
    int version;
    const char *sql;
} DbMigration;
// db_open with extra migration steps after the built-in ones (versions
// DB_SCHEMA_VERSION+1, +2, ... in order). For tests of the migration machinery.
Db *db_open_with(const char *path, int readonly, const DbMigration *extra, int nextra);

// ---- runs
// Creates a run in status "created"; a name already taken is refused ("run 'x'
// already exists in <file>"). config is the config snapshot text, config_sha256 its
// 64 lowercase hex digits. *id (may be NULL) receives the run's id.
int db_run_create(Db *db, const char *name, const char *config, const char *config_sha256,
                  int64_t *id);

typedef struct {
    int64_t id;
    char *name, *config, *status;   // owned; db_run_free
    char *options;                  // owned JSON object text, or NULL when none was set
    char config_sha256[65];
    int pid;                        // coordinator pid; 0 when none recorded
    double created, updated;
} DbRun;
// 0 found, 1 no such run (message set: "no run named 'x' in <file>"), -1 error.
int db_run_get(Db *db, const char *name, DbRun *out);
void db_run_free(DbRun *r);         // frees the strings, not r

int db_run_set_status(Db *db, int64_t run_id, const char *status);
int db_run_set_pid(Db *db, int64_t run_id, int pid);   // 0 clears it
// The run's options (a JSON object text: what the coordinator was asked besides the config).
int db_run_set_options(Db *db, int64_t run_id, const char *options_json);

// One row of `mdgan runs`. Pointers are valid only during the callback.
typedef struct {
    int64_t id;
    const char *name, *status;
    int pid;                    // 0 = none
    double created, updated;
    const char *stage;          // most recently updated stage that counts steps (else any);
                                // NULL when none
    int64_t step;               // that stage's step
    const char *metrics;        // JSON object {name: value} of the newest metrics step
                                // (any stage), NULL when none; NaN values are null.
                                // Names starting "loss." (training losses) are left out.
    const char *metrics_stage;  // that step's stage and number
    int64_t metrics_step;
} DbRunRow;
// Callbacks return 0 to go on; a non-zero value stops the listing and is returned.
typedef int (*DbRunFn)(const DbRunRow *r, void *ctx);
int db_runs_list(Db *db, DbRunFn fn, void *ctx);   // newest run first

// ---- stages (one row per run and stage name, e.g. "base", "refine")
typedef struct {
    const char *stage;
    const char *status;
    int pid;                    // 0 = none
    int64_t step, total_steps;
    double rate;                // steps per second; NaN = unknown
    double heartbeat;           // time of the stage's last message; 0 = none
    int restarts;
    const char *losses;         // JSON object text (checked by the schema) or NULL
    const char *exit_status;    // "mdgan-base killed by SIGKILL", or NULL
    double updated;             // set by the database; ignored by db_stage_put
} DbStage;
// Inserts or updates the stage's row with every field of s (an update, never a
// delete: the stage's checkpoints stay).
int db_stage_put(Db *db, int64_t run_id, const DbStage *s);
typedef int (*DbStageFn)(const DbStage *s, void *ctx);
int db_stages_list(Db *db, int64_t run_id, DbStageFn fn, void *ctx);   // by stage name

// ---- checkpoints (of a stage that has a row: db_stage_put first)
typedef struct {
    int64_t id;                 // set by the database
    const char *stage;
    int64_t step, epoch;
    const char *path;
    int64_t bytes;
    const char *sha256;         // 64 lowercase hex digits
    int valid;                  // set by the database (1 when recorded)
    double created;             // set by the database
} DbCheckpoint;
// Records a checkpoint; a second one of the same run, stage and step (rewritten
// after a resume) replaces the first and is valid again. *id may be NULL.
int db_ckpt_add(Db *db, int64_t run_id, const DbCheckpoint *c, int64_t *id);
typedef int (*DbCkptFn)(const DbCheckpoint *c, void *ctx);
// Every checkpoint of the stage (invalid ones too), newest (highest step) first.
int db_ckpts_list(Db *db, int64_t run_id, const char *stage, DbCkptFn fn, void *ctx);
// Marks a checkpoint invalid (its file failed its sha256); an unknown id is an error.
int db_ckpt_invalidate(Db *db, int64_t ckpt_id);

// ---- metrics: the name/value pairs of one step of one stage, in one transaction;
// a pair already recorded for that step is replaced. NaN is stored as NULL.
typedef struct {
    const char *name;
    double value;
} DbMetric;
int db_metrics_add(Db *db, int64_t run_id, const char *stage, int64_t step,
                   const DbMetric *m, int n);
typedef int (*DbMetricFn)(const char *stage, int64_t step, const char *name, double value,
                          void *ctx);
int db_metrics_list(Db *db, int64_t run_id, DbMetricFn fn, void *ctx);   // by stage, name, step

// ---- events
int db_event_add(Db *db, int64_t run_id, const char *level, const char *text);
typedef int (*DbEventFn)(double time, const char *level, const char *text, void *ctx);
int db_events_list(Db *db, int64_t run_id, DbEventFn fn, void *ctx);     // oldest first

// ---- jobs (refine/predict work outside training), created "running"
int db_job_add(Db *db, int64_t run_id, const char *kind, const char *input, const char *output,
               int64_t *id);
// status "done" or "failed"; message (may be NULL) says why it failed.
int db_job_finish(Db *db, int64_t job_id, const char *status, const char *message);

typedef struct {
    int64_t id;
    const char *kind, *input, *output, *status, *message;   // message NULL unless failed
    double created, finished;                               // finished 0 while running
} DbJob;
typedef int (*DbJobFn)(const DbJob *j, void *ctx);
int db_jobs_list(Db *db, int64_t run_id, DbJobFn fn, void *ctx);        // oldest first

// PRAGMA integrity_check is "ok" and PRAGMA foreign_key_check finds nothing; the
// message of a failure quotes the first problems.
int db_integrity_check(Db *db);

#endif
