#ifndef MDGAN_FAULTUTIL_H
#define MDGAN_FAULTUTIL_H
// Helpers of the fault matrix (tests/faults/, issue 9): one folder per test program
// with tiny synthetic data, a config and the database, runs of the real `mdgan`
// coordinator, and the checks every case ends with: the message, the run's end, and
// that no checkpoint or database row was lost or corrupted.
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <time.h>

#include "mdgan/db.h"
#include "mdgan/fileio.h"
#include "testproc.h"

// The folder of this program's runs: data/, test.conf, db/mdgan.db, runs/<name>/.
static struct {
    char root[1024], conf[1100], db[1100], mdgan[1100];
} F;

// Polls cond every 50 ms for up to seconds; its last value.
#define WAIT_UNTIL(seconds, cond)                                                  \
    ({                                                                             \
        int ok_ = 0;                                                               \
        for (int i_ = 0; i_ <= (int)((seconds) * 20) && !(ok_ = (cond)); i_++)     \
            usleep(50000);                                                         \
        ok_;                                                                       \
    })

// Tiny models (both stages train in a second or two), checkpoints every 3 steps, the
// database beside the runs' folder (so run.dir can be put on a file system of its own).
static inline void fault_setup(void) {
    make_tmpdir(F.root, sizeof F.root);
    snprintf(F.conf, sizeof F.conf, "%s/test.conf", F.root);
    snprintf(F.db, sizeof F.db, "%s/db/mdgan.db", F.root);
    snprintf(F.mdgan, sizeof F.mdgan, "%s/mdgan", bin_dir());
    struct rlimit no_core = {0, 0};   // a crash case must not leave core files behind
    setrlimit(RLIMIT_CORE, &no_core);
    char out[4096];
    if (run_cmd(out, sizeof out, "%s data synth --out %s/data --clips 12 --frames 8 --size 32 --per-video 2", F.mdgan,
                F.root) != 0)
        fail_msg("synth: %s", out);
    FILE *f = fopen(F.conf, "w");
    assert_non_null(f);
    fprintf(f,
            "[run]\ndir = %s/runs\nthreads = 1\n[data]\nroot = %s/data\nframes = 8\nsize = 32\nval_fraction = 0.2\n"
            "[base]\nngf = 8\nndf = 8\nbatch = 2\nepochs = 5\nckpt_every = 3\nsample_every = 6\nkeep = 3\n"
            "[refine]\nngf = 8\nndf = 8\nbatch = 2\nepochs = 4\nckpt_every = 3\nsample_every = 6\nkeep = 3\n"
            "[coord]\ndb = %s\nheartbeat_s = 10\nmax_restarts = 50\n",
            F.root, F.root, F.db);
    fclose(f);
}

// Processes (not this one) whose command line holds needle, each sent sig unless it is 0.
static inline int procs_with(const char *needle, int sig) {
    DIR *d = opendir("/proc");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        const int pid = atoi(e->d_name);
        char path[64], cmd[8192];
        snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
        FILE *f = pid > 0 && pid != getpid() ? fopen(path, "r") : NULL;
        if (!f) continue;
        size_t len = fread(cmd, 1, sizeof cmd - 1, f);
        fclose(f);
        for (size_t i = 0; i < len; i++) cmd[i] = cmd[i] ? cmd[i] : ' ';
        cmd[len] = 0;
        if (!strstr(cmd, needle)) continue;
        n++;
        if (sig) kill(pid, sig);
    }
    if (d) closedir(d);
    return n;
}

// Waits until no process runs in a run's folder (its stages have saved and ended).
// The pid of a process that has exited (and been reaped).
static inline pid_t dead_pid(void) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    assert_true(pid > 0);
    waitpid(pid, NULL, 0);
    return pid;
}

static inline void expect_stages_gone(const char *run) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/runs/%s/", F.root, run);
    if (!WAIT_UNTIL(60, procs_with(dir, 0) == 0)) fail_msg("processes of %s are still running", dir);
}

static inline void fault_teardown(void) {
    procs_with(F.root, SIGKILL);
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
    char cmd[2400];
    // a case that failed half-way may leave a folder immutable or mounted over
    snprintf(cmd, sizeof cmd, "chattr -R -i %s >/dev/null 2>&1; grep -o ' %s[^ ]*' /proc/mounts | sort -r | "
             "xargs -r -n1 umount -l >/dev/null 2>&1", F.root, F.root);
    if (system(cmd) == -1) print_message("could not run: %s\n", cmd);
    if (!getenv("FAULT_KEEP")) rm_rf(F.root);
    else printf("kept %s\n", F.root);
}

static inline int fault_group_teardown(void **state) {
    (void)state;
    fault_teardown();
    return 0;
}

// A program's main: its cases (TEST_FILTER='*lock*' runs some), setup, the teardown.
static inline int fault_main(const char *name, const struct CMUnitTest *tests, size_t n, CMFixtureFunction setup) {
    if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
    return _cmocka_run_group_tests(name, tests, n, setup, fault_group_teardown);
}

// "<bin>/mdgan ARGS --config test.conf" (ARGS from fmt) into cmd.
static inline void mdgan_line(char *cmd, size_t n, const char *fmt, va_list ap) {
    char args[4096];
    vsnprintf(args, sizeof args, fmt, ap);
    if (snprintf(cmd, n, "%s %s --config %s", F.mdgan, args, F.conf) >= (int)n) fail_msg("command too long: %s", args);
}

// `mdgan ARGS` in the foreground, its output in out; the exit code.
static inline int mdgan(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline int mdgan(char *out, size_t n, const char *fmt, ...) {
    char cmd[6000];
    va_list ap;
    va_start(ap, fmt);
    mdgan_line(cmd, sizeof cmd, fmt, ap), va_end(ap);
    return run_cmd(out, n, "%s", cmd);
}

// The same in the background, its output appended to <root>/<log>; its pid.
static inline pid_t mdgan_bg(const char *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline pid_t mdgan_bg(const char *log, const char *fmt, ...) {
    char cmd[6000], full[8192];
    va_list ap;
    va_start(ap, fmt);
    mdgan_line(cmd, sizeof cmd, fmt, ap), va_end(ap);
    snprintf(full, sizeof full, "%s >>%s/%s 2>&1", cmd, F.root, log);
    return spawn(full);
}

// A program's group setup: its folder, and the uninterrupted run "ref" (`mdgan run
// --name ref REF_ARGS`) its cases end like.
static inline int fault_group_setup(const char *ref_args) {
    fault_setup();
    char out[16384];
    int rc = mdgan(out, sizeof out, "run --name ref %s", ref_args);
    if (rc != 0) fail_msg("the reference run exited %d:\n%s", rc, out);
    return 0;
}

// Waits for a background coordinator; its exit code (-1: killed after seconds).
static inline int mdgan_wait(pid_t pid, double seconds) {
    int st = wait_child(pid, seconds);
    if (st == -1) {
        stop_child(pid, SIGKILL);
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// ---- the database, straight through SQLite (read-only, as `mdgan status` would)

// The first column of the first row of a query on db as text; 1 when there was one.
static inline int sql_text(const char *db, char *out, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline int sql_text(const char *db, char *out, size_t n, const char *fmt, ...) {
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    out[0] = 0;
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    int row = 0;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK && sqlite3_busy_timeout(h, 2000) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        snprintf(out, n, "%s", t ? (const char *)t : "");
        row = 1;
    }
    sqlite3_finalize(s);
    sqlite3_close(h);
    return row;
}

// A stage's row: its status ("" when there is none) and step.
static inline long stage_of(const char *run, const char *stage, char *status, size_t n) {
    char step[32];
    sql_text(F.db, status, n, "SELECT s.status FROM stages s JOIN runs r ON r.id = s.run_id WHERE r.name = '%s' AND "
             "s.stage = '%s'", run, stage);
    sql_text(F.db, step, sizeof step, "SELECT s.step FROM stages s JOIN runs r ON r.id = s.run_id WHERE r.name = '%s' "
             "AND s.stage = '%s'", run, stage);
    return atol(step);
}

// The pid of a stage that runs and has reached step; 0 otherwise.
static inline int running_pid(const char *run, const char *stage, long step) {
    char status[32], pid[32];
    if (stage_of(run, stage, status, sizeof status) < step || strcmp(status, "running")) return 0;
    sql_text(F.db, pid, sizeof pid, "SELECT s.pid FROM stages s JOIN runs r ON r.id = s.run_id WHERE r.name = '%s' AND "
             "s.stage = '%s'", run, stage);
    return atoi(pid);
}

static inline void expect_run_status(const char *run, const char *want) {
    char status[32];
    sql_text(F.db, status, sizeof status, "SELECT status FROM runs WHERE name = '%s'", run);
    if (strcmp(status, want)) fail_msg("run %s is '%s', expected '%s'", run, status, want);
}

// The newest valid checkpoint of a stage that the database records.
static inline void newest_recorded(const char *db, const char *run, const char *stage, char *out, size_t n) {
    if (!sql_text(db, out, n, "SELECT c.path FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.name = '%s' "
                  "AND c.stage = '%s' AND c.valid = 1 ORDER BY c.step DESC LIMIT 1", run, stage))
        fail_msg("%s records no valid %s checkpoint of run %s", db, stage, run);
}

// ---- nothing lost

// In the run folder dir: every checkpoint file verifies against its sidecar and the
// database db records it (valid, the same sha256); one without any sidecar (a kill
// between a checkpoint's rename and its sidecar, or inside the removal of an old one)
// is either not recorded or matches its row; every valid row whose file is still there (the stage keeps its
// newest few) has the file's sha256; no temporary is left in checkpoints/ or samples/;
// PRAGMA integrity_check and the foreign keys are fine. Returns the number of files.
// Set around a check made while a fault may still stand in the way of cleaning up: a
// write that failed in a folder made immutable cannot remove its temporary there (the
// next stage's start does; the check after the resume allows none).
static int fault_temps_allowed;
static inline int expect_nothing_lost(const char *db, const char *run, const char *dir) {
    Db *d = db_open(db, 1);
    if (!d || db_integrity_check(d) != 0) fail_msg("%s", mdgan_errmsg());
    db_close(d);
    char sub[1300], path[1600], hex[65], got[80];
    int files = 0;
    snprintf(sub, sizeof sub, "%s/checkpoints", dir);
    DIR *dd = opendir(sub);
    for (struct dirent *e; dd && (e = readdir(dd));) {
        const char *nm = e->d_name, *dot = strrchr(nm, '.');
        snprintf(path, sizeof path, "%s/%s", sub, nm);
        if (strstr(nm, ".tmp.")) {
            if (!fault_temps_allowed) fail_msg("a temporary is left: %s", path);
            printf("    %s: a temporary of the failed write (removed at the next start)\n", nm);
            continue;
        }
        if (!dot || strcmp(dot, ".safetensors")) continue;
        if (!exists("%s.sha256", path)) {
            // a commit cut short (never recorded), or a rotation (sidecar first): whole
            const int rec = sql_text(db, got, sizeof got, "SELECT sha256 FROM checkpoints WHERE path = '%s' AND "
                                     "valid = 1", path);
            if (rec && (fio_sha256_file(path, hex) != 0 || strcmp(hex, got)))
                fail_msg("%s has no sidecar and does not match its row", path);
            printf("    %s: no sidecar, %s\n", nm, rec ? "matches its row (a rotation cut short)" :
                   "not recorded (a commit cut short)");
            continue;
        }
        if (fio_verify_sha256_sidecar_hex(path, hex) != 0) fail_msg("%s", mdgan_errmsg());
        if (!sql_text(db, got, sizeof got, "SELECT c.sha256 || ' ' || c.valid FROM checkpoints c JOIN runs r ON "
                      "r.id = c.run_id WHERE r.name = '%s' AND c.path = '%s'", run, path))
            fail_msg("%s is not recorded in %s", path, db);
        char want[80];
        snprintf(want, sizeof want, "%s 1", hex);
        if (strcmp(got, want)) fail_msg("%s: the database has '%s', the file '%s'", path, got, want);
        files++;
    }
    if (dd) closedir(dd);
    snprintf(sub, sizeof sub, "%s/samples", dir);
    dd = opendir(sub);
    for (struct dirent *e; dd && (e = readdir(dd));)
        if (strstr(e->d_name, ".tmp.") && !fault_temps_allowed) fail_msg("a temporary is left: %s/%s", sub, e->d_name);
    if (dd) closedir(dd);
    sqlite3 *h;
    sqlite3_stmt *s;
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT c.path, c.sha256 FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE "
             "r.name = '%s' AND c.valid = 1", run);
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *p = (const char *)sqlite3_column_text(s, 0), *sha = (const char *)sqlite3_column_text(s, 1);
        rows++;
        if (!exists("%s", p)) continue;
        if (fio_sha256_file(p, hex) != 0 || strcmp(hex, sha)) fail_msg("%s does not match its row", p);
    }
    sqlite3_finalize(s);
    sqlite3_close(h);
    printf("    %d checkpoint files, each verified and recorded; %d valid rows; integrity_check ok\n", files, rows);
    assert_true(files > 0);
    return files;
}

// The first line of a file that holds needle, printed; 0 when there is none.
static inline int show_line(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    char line[8192];
    int found = 0;
    while (f && !found && fgets(line, sizeof line, f))
        if (strstr(line, needle)) found = 1, printf("    > %s", line);
    if (f) fclose(f);
    return found;
}

// Fails unless the file holds needle.
static inline void expect_line(const char *path, const char *needle) {
    if (!show_line(path, needle)) {
        char cmd[2200];
        snprintf(cmd, sizeof cmd, "tail -n 30 %s", path);
        if (system(cmd) == -1) print_message("cannot show %s\n", path);
        fail_msg("%s has no line with '%s'", path, needle);
    }
}

// `mdgan resume run` (extra --set ...) to its end; fails unless the run is done.
static inline void resume_to_done(const char *db, const char *run, const char *extra) {
    char out[32768];
    int rc = mdgan(out, sizeof out, "resume %s %s", run, extra ? extra : "");
    if (rc != 0) fail_msg("mdgan resume %s exited %d:\n%s", run, rc, out);
    char status[32];
    sql_text(db, status, sizeof status, "SELECT status FROM runs WHERE name = '%s'", run);
    if (strcmp(status, "done")) fail_msg("run %s is '%s' after mdgan resume:\n%s", run, status, out);
    printf("    mdgan resume %s: done\n", run);
}

// Waits for the background coordinator of a case, its output in <root>/<log> (path
// receives where); fails unless it exited want.
static inline void expect_exit(pid_t coord, const char *log, int want, char *path, size_t n) {
    const int rc = mdgan_wait(coord, 120);
    snprintf(path, n, "%s/%s", F.root, log);
    if (rc != want) fail_msg("the coordinator exited %d, expected %d (see %s)", rc, want, path);
}

// Nothing of a run under <root>/runs is lost (expect_nothing_lost).
static inline void expect_run_sound(const char *run) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/runs/%s", F.root, run);
    expect_nothing_lost(F.db, run, dir);
}

static inline void expect_same_as(const char *db, const char *run, const char *ref, int refine);

// The end of a case: the run is done, nothing of it is lost, and its final checkpoints
// are ref's (refine: Stage II's too).
static inline void expect_done_like(const char *run, const char *ref, int refine) {
    expect_run_status(run, "done");
    expect_run_sound(run);
    expect_same_as(F.db, run, ref, refine);
}

// The final checkpoints of run equal the uninterrupted run ref's, tensor for tensor.
static inline void expect_same_as(const char *db, const char *run, const char *ref, int refine) {
    for (int k = 0; k < 1 + refine; k++) {
        const char *stage = k ? "refine" : "base";
        char a[4096], b[4096];
        newest_recorded(db, run, stage, a, sizeof a);
        newest_recorded(F.db, ref, stage, b, sizeof b);
        expect_same_checkpoint(a, b);
    }
}

#endif
