// The fault matrix, the database: locked by another process past busy_timeout, deleted
// or replaced while a run goes on, and the coordinator SIGKILLed inside a write
// transaction. Each run ends (on its own or by `mdgan resume`) with the weights of an
// uninterrupted run, every checkpoint recorded with its sha256, and a sound database.
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>

#include "faults/faultutil.h"

static int group_setup(void **state) { return (void)state, fault_group_setup(""); }

static long count(const char *db, const char *what, const char *run) {
    char n[32];
    sql_text(db, n, sizeof n, "SELECT count(*) FROM %s x JOIN runs r ON r.id = x.run_id WHERE r.name = '%s'", what, run);
    return atol(n);
}

// Each evaluation line of a stage's metrics log has its validation metrics in the database.
static void expect_every_evaluation_recorded(const char *db, const char *run, const char *stage) {
    char path[1300], n[32], cmd[1400], out[64];
    snprintf(path, sizeof path, "%s/runs/%s/%s_metrics.jsonl", F.root, run, stage);
    snprintf(cmd, sizeof cmd, "wc -l < %s", path);
    assert_int_equal(run_cmd(out, sizeof out, "%s", cmd), 0);
    sql_text(db, n, sizeof n, "SELECT count(DISTINCT m.step) FROM metrics m JOIN runs r ON r.id = m.run_id WHERE "
             "r.name = '%s' AND m.stage = '%s' AND m.name = 'psnr'", run, stage);
    printf("    %s: %ld evaluations in %s_metrics.jsonl, %ld in the database\n", stage, atol(out), stage, atol(n));
    assert_int_equal(atol(out), atol(n));
}

// A second process holds BEGIN EXCLUSIVE on the database for hold_s seconds.
static pid_t hold_lock(double hold_s) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sqlite3 *h;
        char ok = 0;
        if (sqlite3_open_v2(F.db, &h, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK && sqlite3_busy_timeout(h, 10000) == 0 &&
            sqlite3_exec(h, "BEGIN EXCLUSIVE", NULL, NULL, NULL) == SQLITE_OK)
            ok = 1;
        if (write(p[1], &ok, 1) != 1 || !ok) _exit(1);
        usleep((useconds_t)(hold_s * 1e6));
        _exit(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : 1);
    }
    close(p[1]);
    char ok = 0;
    assert_int_equal(read(p[0], &ok, 1), 1);
    close(p[0]);
    assert_true(ok);
    return pid;
}

// Locked for 7 s, longer than the coordinator's busy_timeout (5 s), while Stage I
// writes its checkpoints and ends: the coordinator says so, waits, and records
// everything once the lock is gone: as many checkpoint rows as the uninterrupted run
// has (one per checkpoint ever written), every evaluation, and Stage II trained on the
// final Base-Net (its weights are the reference's).
static void test_database_locked_past_busy_timeout(void **state) {
    (void)state;
    pid_t coord = mdgan_bg("lock.out", "run --name lock");
    if (!WAIT_UNTIL(60, count(F.db, "checkpoints", "lock") >= 1)) fail_msg("no checkpoint was recorded");
    pid_t holder = hold_lock(7);
    printf("    another process holds BEGIN EXCLUSIVE on %s for 7 s\n", F.db);
    int st = wait_child(holder, 30);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char log[1200];
    expect_exit(coord, "lock.out", 0, log, sizeof log);
    expect_line(log, "database is locked");
    expect_done_like("lock", "ref", 1);
    printf("    %ld checkpoint rows, the uninterrupted run %ld\n", count(F.db, "checkpoints", "lock"),
           count(F.db, "checkpoints", "ref"));
    assert_int_equal(count(F.db, "checkpoints", "lock"), count(F.db, "checkpoints", "ref"));
    expect_every_evaluation_recorded(F.db, "lock", "base");
    expect_every_evaluation_recorded(F.db, "lock", "refine");
}

// Stops the coordinator of a run once its Refine-Net runs, SIGKILLs it, and waits for
// its stages to save their state and end.
static void kill_coordinator_in_stage_two(pid_t coord, const char *run) {
    if (!WAIT_UNTIL(120, running_pid(run, "refine", 1) > 0 || wait_child(coord, 0) != -1))
        fail_msg("the Refine-Net of %s did not start", run);
    kill(coord, SIGKILL);
    waitpid(coord, NULL, 0);
    expect_stages_gone(run);
}

// Deleted (with its -wal and -shm, as `rm mdgan.db*` does) once Stage I has a
// checkpoint: the coordinator writes the database back from its open connection and
// goes on; killed later, `mdgan resume` finds the run in it.
static void test_database_deleted(void **state) {
    (void)state;
    pid_t coord = mdgan_bg("del.out", "run --name del");
    if (!WAIT_UNTIL(60, count(F.db, "checkpoints", "del") >= 1)) fail_msg("no checkpoint was recorded");
    const long rows = count(F.db, "checkpoints", "del");
    char path[1200], log[1200];
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s%s", F.db, (const char *[]){"", "-wal", "-shm"}[k]);
        unlink(path);
    }
    printf("    deleted %s (and -wal, -shm) with %ld checkpoint row(s) of run del in it\n", F.db, rows);
    snprintf(log, sizeof log, "%s/del.out", F.root);
    if (!WAIT_UNTIL(60, show_line(log, "was deleted"))) fail_msg("the coordinator did not notice (see %s)", log);
    kill_coordinator_in_stage_two(coord, "del");
    // temporaries of writes whose writer died, of the stage that is done (which never
    // starts again to remove them) as well: the resume removes them all
    const pid_t dead = dead_pid();
    const char *temps[] = {"checkpoints/base_step_00000002.safetensors.sha256.tmp",
                           "checkpoints/refine_step_00000001.safetensors.tmp", "samples/base_step_00000002.png.tmp"};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/runs/del/%s.%d", F.root, temps[k], (int)dead);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fclose(f);
    }
    printf("    planted 3 temporaries of pid %d, which has exited\n", (int)dead);
    resume_to_done(F.db, "del", NULL);
    expect_done_like("del", "ref", 1);
}

// Replaced by another file (here an older copy of the same database, as restoring a
// backup would do): that file is left alone, the run's records go on in a copy beside
// it, which the coordinator names; `mdgan resume --set coord.db=COPY` ends the run.
static void test_database_replaced(void **state) {
    (void)state;
    char old[1200], saved[1300], out[4096], before[65], after[65];
    snprintf(old, sizeof old, "%s.old", F.db);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(F.db, &h), SQLITE_OK);
    char sql[1300];
    snprintf(sql, sizeof sql, "VACUUM INTO '%s'", old);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_int_equal(fio_sha256_file(old, before), 0);
    pid_t coord = mdgan_bg("rep.out", "run --name rep");
    if (!WAIT_UNTIL(60, count(F.db, "checkpoints", "rep") >= 1)) fail_msg("no checkpoint was recorded");
    assert_int_equal(rename(old, F.db), 0);
    printf("    replaced %s by an older copy of it\n", F.db);
    char log[1200];
    snprintf(log, sizeof log, "%s/rep.out", F.root);
    if (!WAIT_UNTIL(60, show_line(log, "was replaced by another file"))) fail_msg("the coordinator did not notice (see %s)", log);
    kill_coordinator_in_stage_two(coord, "rep");
    assert_int_equal(run_cmd(out, sizeof out, "ls -d %s.saved-* | head -n 1", F.db), 0);
    snprintf(saved, sizeof saved, "%.*s", (int)strcspn(out, "\n"), out);
    printf("    the run's records went on in %s\n", saved);
    char set[1400];
    snprintf(set, sizeof set, "--set coord.db=%s", saved);
    resume_to_done(saved, "rep", set);
    assert_int_equal(fio_sha256_file(F.db, after), 0);
    assert_string_equal(before, after);   // the file put in its place is untouched
    assert_int_equal(count(F.db, "runs", "rep"), 0);
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/runs/rep", F.root);
    expect_nothing_lost(saved, "rep", dir);
    expect_same_as(saved, "rep", "ref", 1);
}

// 1 when some connection holds the database's write lock (a transaction is open).
static int write_locked(void) {
    sqlite3 *h;
    if (sqlite3_open_v2(F.db, &h, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) return 0;
    int rc = sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK) sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(h);
    return rc == SQLITE_BUSY;
}

// SIGKILLs the coordinator inside a write transaction: on a write to the -wal it is
// stopped, and killed if it then holds the write lock (else let go, for the next one).
// after: writes to skip first. 1 when the kill landed inside a transaction.
static int kill_inside_transaction(pid_t coord, int after, double seconds) {
    char wal[1200];
    snprintf(wal, sizeof wal, "%s-wal", F.db);
    if (!WAIT_UNTIL(30, exists("%s", wal))) return 0;
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    assert_true(fd >= 0);
    assert_true(inotify_add_watch(fd, wal, IN_MODIFY) >= 0);
    int hit = 0, seen = 0;
    const time_t t0 = time(NULL);
    while (!hit && time(NULL) - t0 < seconds && wait_child(coord, 0) == -1) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) continue;
        char buf[4096] __attribute__((aligned(8)));
        while (read(fd, buf, sizeof buf) > 0) {}
        if (seen++ < after) continue;
        kill(coord, SIGSTOP);
        if (write_locked()) {
            kill(coord, SIGKILL);
            hit = 1;
        } else {
            kill(coord, SIGCONT);
        }
    }
    close(fd);
    if (hit) waitpid(coord, NULL, 0);
    return hit;
}

// Killed inside a transaction three times, at the 2nd, 10th and 30th write of a
// coordinator (counted once Stage I runs, then from each resume's start); each time
// resumed. The transaction is rolled back, nothing committed
// is lost, and the checkpoints its stages wrote meanwhile are recorded at resume.
static void test_sigkill_inside_transaction(void **state) {
    (void)state;
    const int after[] = {2, 10, 30};
    pid_t coord = mdgan_bg("tx.out", "run --name tx");
    if (!WAIT_UNTIL(60, running_pid("tx", "base", 1) > 0)) fail_msg("Stage I of run tx did not start");
    int kills = 0;
    for (int k = 0; k < 3; k++) {
        if (!kill_inside_transaction(coord, after[k], 60)) break;
        kills++;
        printf("    kill %d: SIGKILL to the coordinator while it held the write lock (after %d writes)\n", kills,
               after[k]);
        expect_stages_gone("tx");   // they save their state: SIGTERM when it dies
        coord = mdgan_bg("tx.out", "resume tx");
    }
    const int rc = mdgan_wait(coord, 120);
    char status[32];
    sql_text(F.db, status, sizeof status, "SELECT status FROM runs WHERE name = 'tx'");
    if (strcmp(status, "done")) resume_to_done(F.db, "tx", NULL);
    else assert_int_equal(rc, 0);
    assert_true(kills >= 2);
    expect_done_like("tx", "ref", 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_database_locked_past_busy_timeout),
        cmocka_unit_test(test_database_deleted),
        cmocka_unit_test(test_database_replaced),
        cmocka_unit_test(test_sigkill_inside_transaction),
    };
    return fault_main("test_fault_db", tests, sizeof tests / sizeof tests[0], group_setup);
}
