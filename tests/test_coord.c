// The coordinator end to end: real `mdgan run/resume/status/stop/refine` processes,
// the real stage executables, a real SQLite file, ipc sockets in the run folder.
#include <dirent.h>
#include <math.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdint.h>
#include <time.h>
#include <sys/inotify.h>
#include <zmq.h>

#include "mdgan/db.h"
#include "mdgan/fileio.h"
#include "mdgan/safetensors.h"
#include "mdgan/wire.h"
#include "testproc.h"

// One folder for the whole file: the data, the config, the database and every run.
static char root[1024], conf[1100], dbpath[1100], mdgan_bin[1100];

// Tiny models: both stages finish in seconds; frequent checkpoints give kills something
// to land on. coord.max_restarts is high so the kill test never runs out of restarts.
static int group_setup(void **state) {
    (void)state;
    make_tmpdir(root, sizeof root);
    snprintf(conf, sizeof conf, "%s/test.conf", root);
    snprintf(dbpath, sizeof dbpath, "%s/runs/mdgan.db", root);
    snprintf(mdgan_bin, sizeof mdgan_bin, "%s/mdgan", bin_dir());
    char out[4096], text[8192];
    if (run_cmd(out, sizeof out, "%s data synth --out %s/data --clips 12 --frames 8 --size 32 --per-video 2", mdgan_bin,
                root) != 0)
        fail_msg("synth: %s", out);
    snprintf(text, sizeof text,
             "[run]\ndir = %s/runs\nthreads = 1\n[data]\nroot = %s/data\nframes = 8\nsize = 32\nval_fraction = 0.2\n"
             "[base]\nngf = 8\nndf = 8\nbatch = 2\nepochs = 5\nckpt_every = 3\nsample_every = 6\nkeep = 3\n"
             "[refine]\nngf = 8\nndf = 8\nbatch = 2\nepochs = 4\nckpt_every = 3\nsample_every = 6\nkeep = 3\n"
             "[coord]\ndb = %s\nheartbeat_s = 10\nmax_restarts = 50\n",
             root, root, dbpath);
    write_text_file(conf, text);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    rm_rf(root);
    return 0;
}

// `mdgan ARGS --config conf`, output in out; the exit code.
static int mdgan(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int mdgan(char *out, size_t n, const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return run_cmd(out, n, "%s %s --config %s", mdgan_bin, args, conf);
}

static Db *open_ro(void) {
    Db *db = db_open(dbpath, 1);
    if (!db) fail_msg("%s", mdgan_errmsg());
    return db;
}

// ---- what the database says

typedef struct {
    char status[16];
    int pid;
    long step, total;
    int restarts;
} StageRow;

typedef struct {
    const char *want;
    StageRow *row;
    int found;
} StageFind;

static int find_stage(const DbStage *s, void *ctx) {
    StageFind *f = ctx;
    if (strcmp(s->stage, f->want) != 0) return 0;
    snprintf(f->row->status, sizeof f->row->status, "%s", s->status);
    f->row->pid = s->pid, f->row->step = s->step, f->row->total = s->total_steps, f->row->restarts = s->restarts;
    f->found = 1;
    return 1;
}

// The row of stage in run; 0 when there is none (yet).
static int stage_row(const char *run, const char *stage, StageRow *row) {
    memset(row, 0, sizeof *row);
    Db *db = db_open(dbpath, 1);
    if (!db) return 0;
    DbRun r;
    int found = 0;
    if (db_run_get(db, run, &r) == 0) {
        StageFind f = {stage, row, 0};
        db_stages_list(db, r.id, find_stage, &f);
        found = f.found;
        db_run_free(&r);
    }
    db_close(db);
    mdgan_errclear();
    return found;
}

static void run_status(const char *run, char *out, size_t n) {
    out[0] = 0;
    Db *db = db_open(dbpath, 1);
    if (!db) return;
    DbRun r;
    if (db_run_get(db, run, &r) == 0) {
        snprintf(out, n, "%s", r.status);
        db_run_free(&r);
    }
    db_close(db);
    mdgan_errclear();
}

typedef struct {
    char path[4096];
    long step;
    int n, checked;
} CkptCheck;

// Every valid checkpoint of the stage: its file's sha256 is the recorded one.
static int check_ckpt(const DbCheckpoint *c, void *ctx) {
    CkptCheck *k = ctx;
    k->n++;
    if (!c->valid || !exists("%s", c->path)) return 0;   // rotated away by [stage] keep
    char hex[65];
    assert_int_equal(fio_sha256_file(c->path, hex), 0);
    assert_string_equal(hex, c->sha256);
    if (!k->path[0]) snprintf(k->path, sizeof k->path, "%s", c->path), k->step = c->step;
    k->checked++;
    return 0;
}

// The newest recorded checkpoint of stage in run (checked against its file).
static void newest_ckpt(const char *run, const char *stage, char *out, size_t n) {
    Db *db = open_ro();
    DbRun r;
    assert_int_equal(db_run_get(db, run, &r), 0);
    CkptCheck k = {0};
    assert_int_equal(db_ckpts_list(db, r.id, stage, check_ckpt, &k), 0);
    if (!k.checked) fail_msg("run %s has no %s checkpoint", run, stage);
    snprintf(out, n, "%s", k.path);
    db_run_free(&r);
    db_close(db);
}

// Processes whose command line mentions the run folder (stages run with --config <it>/config.conf).
static int processes_of(const char *run) {
    char want[4400];
    snprintf(want, sizeof want, "%s/runs/%s/", root, run);
    DIR *d = opendir("/proc");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], buf[8192];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        for (size_t i = 0; i < len; i++)
            if (!buf[i]) buf[i] = ' ';
        buf[len] = 0;
        if (strstr(buf, want) && !strstr(buf, "test_coord")) n++;
    }
    if (d) closedir(d);
    return n;
}

static void wait_no_processes(const char *run, double seconds) {
    for (int i = 0; i < (int)(seconds * 20) && processes_of(run); i++) usleep(50000);
    assert_int_equal(processes_of(run), 0);
}

// ---- the reference: one uninterrupted run, shared by the tests that compare with it

static char ref_base[4096], ref_refine[4096];

static void reference_run(void) {
    if (ref_base[0]) return;
    char out[16384];
    int rc = mdgan(out, sizeof out, "run --name ref");
    if (rc != 0) fail_msg("mdgan run exited %d:\n%s", rc, out);
    newest_ckpt("ref", "base", ref_base, sizeof ref_base);
    newest_ckpt("ref", "refine", ref_refine, sizeof ref_refine);
}

typedef struct {
    int metrics_base, metrics_refine, losses, predict;
} MetricCount;

static int count_metric(const char *stage, int64_t step, const char *name, double value, void *ctx) {
    (void)step, (void)value;
    MetricCount *m = ctx;
    if (!strncmp(name, "loss.", 5)) m->losses++;
    else if (!strcmp(stage, "base") && !strcmp(name, "psnr")) m->metrics_base++;
    else if (!strcmp(stage, "refine") && !strcmp(name, "psnr")) m->metrics_refine++;
    else if (!strcmp(stage, "predict") && !strcmp(name, "y2.psnr")) m->predict++;
    return 0;
}

typedef struct {
    int started, done;
} EventCount;

static int count_event(double t, const char *level, const char *text, void *ctx) {
    (void)t, (void)level;
    EventCount *e = ctx;
    e->started += strstr(text, "started mdgan-") != NULL;
    e->done += strstr(text, ": done") != NULL;
    return 0;
}

// 1. The whole pipeline through `mdgan run`: rows and files.
static void test_pipeline_records_everything(void **state) {
    (void)state;
    reference_run();
    char status[32];
    run_status("ref", status, sizeof status);
    assert_string_equal(status, "done");
    StageRow b, r, s;
    assert_true(stage_row("ref", "base", &b) && stage_row("ref", "refine", &r) && stage_row("ref", "serve", &s));
    assert_string_equal(b.status, "done");
    assert_string_equal(r.status, "done");
    assert_string_equal(s.status, "stopped");
    // 10 clips in training (2 validation videos of 6), batch 2: 5 steps an epoch
    printf("    base %ld/%ld, refine %ld/%ld\n", b.step, b.total, r.step, r.total);
    assert_true(b.total > 0 && b.step == b.total && r.total > 0 && r.step == r.total);
    Db *db = open_ro();
    DbRun run;
    assert_int_equal(db_run_get(db, "ref", &run), 0);
    char hex[65];
    fio_sha256_hex(run.config, strlen(run.config), hex);
    assert_string_equal(hex, run.config_sha256);
    assert_non_null(strstr(run.config, "name = ref"));
    MetricCount m = {0};
    assert_int_equal(db_metrics_list(db, run.id, count_metric, &m), 0);
    printf("    metrics: %d base and %d refine validations, %d loss values, %d predict\n", m.metrics_base,
           m.metrics_refine, m.losses, m.predict);
    assert_true(m.metrics_base >= 2 && m.metrics_refine >= 2 && m.losses > 0 && m.predict == 1);
    EventCount e = {0};
    assert_int_equal(db_events_list(db, run.id, count_event, &e), 0);
    assert_int_equal(e.started, 3);   // base train, serve, refine train
    assert_int_equal(e.done, 1);
    CkptCheck k = {0};
    assert_int_equal(db_ckpts_list(db, run.id, "base", check_ckpt, &k), 0);
    assert_true(k.n >= 3 && k.checked == 3);   // keep = 3 files, every one recorded
    assert_int_equal(db_integrity_check(db), 0);
    db_run_free(&run);
    db_close(db);
    const char *files[] = {"config.conf", "report/index.html", "predict/eval_y1.json", "predict/eval_y2.json",
                           "predict/y2/contact_sheet.png", "logs/base.log", "logs/refine.log", "logs/serve.log",
                           "base_metrics.jsonl", "refine_metrics.jsonl"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (!exists("%s/runs/ref/%s", root, files[i])) fail_msg("runs/ref/%s is missing", files[i]);
    assert_int_equal(processes_of("ref"), 0);
    char out[8192];
    assert_int_equal(mdgan(out, sizeof out, "runs"), 0);
    assert_non_null(strstr(out, "ref "));
    assert_non_null(strstr(out, "done"));
    assert_non_null(strstr(out, "refine 20"));
    assert_int_equal(mdgan(out, sizeof out, "status ref --once"), 0);
    assert_non_null(strstr(out, "checkpoint: step"));
    assert_int_equal(mdgan(out, sizeof out, "resume ref"), 0);   // done: nothing to do
    assert_non_null(strstr(out, "nothing to resume"));
}

// ---- kills

// Kills a stage the moment it creates a checkpoint's temporary file (inotify), before
// the write's rename. 1 when the kill landed inside a write (the temporary is left).
static int kill_during_checkpoint_write(const char *run, double seconds) {
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/runs/%s/checkpoints", root, run);
    if (!wait_for_file(dir, 30)) return 0;
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    assert_true(fd >= 0);
    assert_true(inotify_add_watch(fd, dir, IN_CREATE) >= 0);
    int hit = 0;
    const double t0 = (double)time(NULL);
    while (!hit && (double)time(NULL) - t0 < seconds) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) continue;
        char buf[4096] __attribute__((aligned(8)));
        ssize_t len = read(fd, buf, sizeof buf);
        for (char *at = buf; len > 0 && at < buf + len && !hit;) {
            struct inotify_event *ev = (struct inotify_event *)at;
            const char *tmp = ev->len ? strstr(ev->name, ".safetensors.tmp.") : NULL;
            if (tmp) {
                const int pid = atoi(tmp + strlen(".safetensors.tmp."));
                if (pid > 0 && kill(pid, SIGKILL) == 0) {
                    usleep(100000);
                    hit = exists("%s/%s", dir, ev->name);
                    printf("    SIGKILL to pid %d while it wrote %s: %s\n", pid, ev->name,
                           hit ? "inside the write" : "the write had finished");
                    if (!hit) break;
                }
            }
            at += sizeof *ev + ev->len;
        }
    }
    close(fd);
    return hit;
}

// A run killed again and again: SIGKILL to the coordinator (then `mdgan resume`), to
// mdgan-base (train or serve) and to mdgan-refine (the coordinator restarts them), at
// moments drawn from the seed, the first of them inside a checkpoint write.
// killed[0..2] += the kills of the coordinator, of mdgan-base (train or serve) and of
// mdgan-refine (the kill inside a checkpoint write is not counted there).
static int killed_run(const char *name, unsigned seed, int nkills, int killed[3]) {
    char logpath[1300], cmd[8192];
    snprintf(logpath, sizeof logpath, "%s/%s.out", root, name);
    snprintf(cmd, sizeof cmd, "%s run --name %s --config %s >>%s 2>&1", mdgan_bin, name, conf, logpath);
    pid_t coord = spawn(cmd);
    srand(seed);
    int kills = 0, write_kills = 0;
    char status[32] = "";
    for (int round = 0; kills < nkills && round < 200; round++) {
        usleep(100000 + (useconds_t)(rand() % 600) * 1000);
        if (wait_child(coord, 0) != -1) {   // the coordinator ended: done, or resume it
            run_status(name, status, sizeof status);
            if (!strcmp(status, "done")) break;
            snprintf(cmd, sizeof cmd, "%s resume %s --config %s >>%s 2>&1", mdgan_bin, name, conf, logpath);
            coord = spawn(cmd);
            continue;
        }
        if (!write_kills) {   // the first kill: inside a checkpoint write (Stage I writes from the start)
            if (kill_during_checkpoint_write(name, 20)) write_kills++, kills++;
            continue;
        }
        // the victims take turns (starting where the seed says): the one whose turn it is
        // if it runs, else the next one in the turn that does (the coordinator always
        // does), so that stages are killed too when the run is quick
        const char *victims[] = {"refine", "base", "serve", "coordinator"};
        const char *v = "coordinator";
        StageRow row;
        // the last kill of a run is mdgan-refine's, the stage that runs last: wait for it
        if (kills == nkills - 1)
            for (int i = 0; i < 2400 && wait_child(coord, 0) == -1; i++) {
                if (stage_row(name, "refine", &row) && row.pid > 0 && !strcmp(row.status, "running")) break;
                usleep(50000);
            }
        for (int j = 0; j < 4; j++) {
            const char *c = kills == nkills - 1 ? victims[j] : victims[(seed + (unsigned)kills + (unsigned)j) % 4];
            if (!strcmp(c, "coordinator") || (stage_row(name, c, &row) && row.pid > 0 && !strcmp(row.status, "running"))) {
                v = c;
                break;
            }
        }
        killed[!strcmp(v, "coordinator") ? 0 : !strcmp(v, "refine") ? 2 : 1]++;
        if (!strcmp(v, "coordinator")) {
            kill(coord, SIGKILL);
            waitpid(coord, NULL, 0);
            printf("    kill %d: the coordinator\n", kills + 1);
            wait_no_processes(name, 60);   // its stages save their state and exit
            snprintf(cmd, sizeof cmd, "%s resume %s --config %s >>%s 2>&1", mdgan_bin, name, conf, logpath);
            coord = spawn(cmd);
        } else {
            printf("    kill %d: %s (pid %d, step %ld)\n", kills + 1, v, row.pid, row.step);
            kill(row.pid, SIGKILL);
        }
        kills++;
    }
    // left alone, the run finishes (a last coordinator may need starting)
    for (int i = 0; i < 3; i++) {
        int st = wait_child(coord, 240);
        if (st == -1) {
            stop_child(coord, SIGKILL);
            fail_msg("run %s did not finish (see %s)", name, logpath);
        }
        run_status(name, status, sizeof status);
        if (!strcmp(status, "done")) break;
        snprintf(cmd, sizeof cmd, "%s resume %s --config %s >>%s 2>&1", mdgan_bin, name, conf, logpath);
        coord = spawn(cmd);
    }
    if (strcmp(status, "done") != 0) fail_msg("run %s ended %s (see %s)", name, status, logpath);
    assert_int_equal(write_kills, 1);
    return kills;
}

// 2. Kills at random moments: every run finishes bit-identical to the uninterrupted one.
static void test_kills_then_resume_identical(void **state) {
    (void)state;
    reference_run();
    int total = 0, killed[3] = {0, 0, 0};
    for (unsigned seed = 1; seed <= 3; seed++) {
        char name[32], b[4096], r[4096];
        snprintf(name, sizeof name, "kill%u", seed);
        int k = killed_run(name, seed, 4, killed);
        total += k;
        newest_ckpt(name, "base", b, sizeof b);
        newest_ckpt(name, "refine", r, sizeof r);
        printf("    run %s: %d kills; final checkpoints against the uninterrupted run:\n", name, k);
        expect_same_checkpoint(b, ref_base);
        expect_same_checkpoint(r, ref_refine);
        assert_int_equal(processes_of(name), 0);
    }
    printf("    %d kills in all: the coordinator %d, mdgan-base %d, mdgan-refine %d, and 3 inside a checkpoint "
           "write\n", total, killed[0], killed[1], killed[2]);
    assert_true(total >= 10);
    for (int k = 0; k < 3; k++) assert_true(killed[k] >= 1);
    Db *db = open_ro();
    assert_int_equal(db_integrity_check(db), 0);
    db_close(db);
}

// Flips one byte in the middle of a file.
static void flip_byte(const char *path) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long at = ftell(f) / 2;
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
}

// Waits until stage's row reaches step (or the process ends); the step reached.
static long wait_step(const char *run, const char *stage, long step, pid_t coord, double seconds) {
    StageRow row = {0};
    for (int i = 0; i < (int)(seconds * 20); i++) {
        if (stage_row(run, stage, &row) && row.step >= step) break;
        if (wait_child(coord, 0) != -1) fail_msg("the coordinator of %s ended early", run);
        usleep(50000);
    }
    return row.step;
}

// 3a. A damaged newest checkpoint is found at resume, reported, and the one before it used.
static void test_damaged_checkpoint_skipped(void **state) {
    (void)state;
    reference_run();
    char cmd[8192], out[16384], newest[4096];
    snprintf(cmd, sizeof cmd, "%s run --name dmg --config %s >%s/dmg.out 2>&1", mdgan_bin, conf, root);
    pid_t coord = spawn(cmd);
    assert_true(wait_step("dmg", "base", 10, coord, 120) >= 10);
    assert_int_equal(mdgan(out, sizeof out, "stop dmg"), 0);
    assert_non_null(strstr(out, "stopped"));
    assert_true(WIFEXITED(wait_child(coord, 30)));
    newest_ckpt("dmg", "base", newest, sizeof newest);
    flip_byte(newest);
    int rc = mdgan(out, sizeof out, "resume dmg");
    if (rc != 0) fail_msg("resume exited %d:\n%s", rc, out);
    assert_non_null(strstr(out, "is damaged"));
    printf("    %s", strstr(out, "mdgan: warn"));
    char b[4096], r[4096];
    newest_ckpt("dmg", "base", b, sizeof b);
    newest_ckpt("dmg", "refine", r, sizeof r);
    expect_same_checkpoint(b, ref_base);
    expect_same_checkpoint(r, ref_refine);
}

// PRAGMA user_version of a database file, set first when set >= 0 (straight through
// SQLite, as another program would).
static int user_version(const char *path, int set) {
    sqlite3 *h;
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    char sql[64];
    if (set >= 0) {
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", set);
        assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    }
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

// 3b. A database of a newer schema is refused, untouched.
static void test_newer_database_refused(void **state) {
    (void)state;
    char dir[4096], db[4200], out[8192];
    make_tmpdir(dir, sizeof dir);
    snprintf(db, sizeof db, "%s/new.db", dir);
    Db *d = db_open(db, 0);
    assert_non_null(d);
    db_close(d);
    assert_int_equal(user_version(db, DB_SCHEMA_VERSION + 5), DB_SCHEMA_VERSION + 5);
    int rc = run_cmd(out, sizeof out, "%s runs --set coord.db=%s", mdgan_bin, db);
    printf("    %s", out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "newer"));
    rc = run_cmd(out, sizeof out, "%s run --config %s --set coord.db=%s --name x", mdgan_bin, conf, db);
    if (rc != 2 || !strstr(out, "newer")) fail_msg("mdgan run exited %d: %s", rc, out);
    assert_int_equal(user_version(db, -1), DB_SCHEMA_VERSION + 5);   // untouched
    rm_rf(dir);
}

// 3c. A second coordinator on a live run is refused, naming the pid; stop, then resume.
// (Stage I gets 60 epochs so that the run is still going when it is stopped.)
static void test_second_coordinator_refused(void **state) {
    (void)state;
    char cmd[8192], out[16384];
    snprintf(cmd, sizeof cmd, "%s run --name two --config %s --set base.epochs=60 >%s/two.out 2>&1", mdgan_bin, conf,
             root);
    pid_t coord = spawn(cmd);
    wait_step("two", "base", 1, coord, 60);
    int rc = mdgan(out, sizeof out, "resume two");
    printf("    %s", out);
    assert_int_equal(rc, 2);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %d", (int)coord);
    assert_non_null(strstr(out, pid));
    rc = mdgan(out, sizeof out, "run --name two");
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "exists already"));
    assert_int_equal(mdgan(out, sizeof out, "stop two"), 0);
    int st = wait_child(coord, 30);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 143);
    char status[32];
    run_status("two", status, sizeof status);
    assert_string_equal(status, "stopped");
    assert_int_equal(processes_of("two"), 0);
    assert_int_equal(mdgan(out, sizeof out, "resume two"), 0);
    run_status("two", status, sizeof status);
    assert_string_equal(status, "done");
}

// Malformed control messages, sent from outside to a live coordinator: logged and
// answered, and the run goes on to its end.
static void test_malformed_control_messages(void **state) {
    (void)state;
    char cmd[8192], out[8192], sock[1200];
    // Stage I runs long enough for the messages; "refine" has not connected yet (a second
    // peer under a connected stage's name would be turned away by the ROUTER)
    snprintf(cmd, sizeof cmd, "%s run --name ctl --config %s --set base.epochs=60 >%s/ctl.out 2>&1", mdgan_bin, conf,
             root);
    pid_t coord = spawn(cmd);
    snprintf(sock, sizeof sock, "ipc://%s/runs/ctl/sockets/control.sock", root);
    wait_step("ctl", "base", 1, coord, 60);
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER), *stranger = zmq_socket(ctx, ZMQ_DEALER);
    const int timeout = 5000, linger = 0;
    zmq_setsockopt(s, ZMQ_ROUTING_ID, "refine", 6);
    zmq_setsockopt(stranger, ZMQ_ROUTING_ID, "intruder", 8);
    for (int i = 0; i < 2; i++) {
        void *x = i ? stranger : s;
        zmq_setsockopt(x, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
        zmq_setsockopt(x, ZMQ_LINGER, &linger, sizeof linger);
        assert_int_equal(zmq_connect(x, sock), 0);
    }
    // a bad envelope, text that is not JSON, an unknown type, a PROGRESS with a string
    // step, and a well-formed CHECKPOINT outside the run folder, which is refused
    // (logged, not recorded) because "refine" is not running
    assert_int_equal(zmq_send(s, "garbage", 7, 0), 7);
    assert_int_equal(wire_send(s, NULL, 0, 3, 0, 1, "not json", NULL, 0, NULL), 0);
    assert_int_equal(wire_send(s, NULL, 0, 99, 0, 2, "{}", NULL, 0, NULL), 0);
    assert_int_equal(wire_send(s, NULL, 0, 2, 0, 3, "{\"step\": \"x\", \"total_steps\": 1, \"epoch\": 0, "
                               "\"rate\": 1, \"losses\": {}}", NULL, 0, NULL), 0);
    char text[512];
    snprintf(text, sizeof text, "{\"path\": \"/etc/passwd\", \"step\": 1, \"epoch\": 0, \"sha256\": \"%064d\", "
             "\"bytes\": 10}", 0);
    assert_int_equal(wire_send(s, NULL, 0, 3, 0, 4, text, NULL, 0, NULL), 0);
    assert_int_equal(wire_send(stranger, NULL, 0, 1, 0, 5, "{}", NULL, 0, NULL), 0);
    int errors = 0;
    for (int i = 0; i < 5; i++) {
        WireMsg m;
        char why[256];
        if (wire_recv(i < 4 ? s : stranger, 0, NULL, &m, why, sizeof why) != WIRE_OK) break;
        printf("    answered: %s (%s)\n", m.text, wire_status_name(m.status));
        errors += m.status != WIRE_OK;
        wire_msg_free(&m);
    }
    zmq_close(s);
    zmq_close(stranger);
    zmq_ctx_term(ctx);
    assert_int_equal(errors, 5);
    int st = wait_child(coord, 240);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char status[32];
    run_status("ctl", status, sizeof status);
    assert_string_equal(status, "done");
    Db *db = open_ro();
    DbRun r;
    assert_int_equal(db_run_get(db, "ctl", &r), 0);
    CkptCheck k = {0};
    db_ckpts_list(db, r.id, "refine", check_ckpt, &k);
    assert_int_equal(k.checked, 3);   // /etc/passwd was not recorded among them
    db_run_free(&r);
    db_close(db);
    assert_int_equal(run_cmd(out, sizeof out, "grep -c 'refused a control message\\|outside the run folder\\|unknown peer' "
                             "%s/ctl.out", root), 0);
    printf("    coordinator log lines about them: %s", out);
    assert_int_equal(atoi(out), 6);
}

// The visible text of a tmux pane, trailing blank lines dropped.
static void capture_pane(const char *session, char *out, size_t cap) {
    run_cmd(out, cap, "tmux capture-pane -p -t %s", session);
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ')) out[--n] = '\0';
}

static int pane_shows_live_base(const char *pane) {
    return strstr(pane, "run live: running") && strstr(pane, "base    running") && strstr(pane, "(live, every second");
}

// `mdgan status` in a real terminal (tmux): it redraws while the run goes on. The base
// stage is given far more epochs than the test lasts (it is stopped at the end), and the
// pane is polled rather than read after fixed sleeps: a tiny stage can finish in seconds.
static void test_status_live_in_tmux(void **state) {
    (void)state;
    if (system("command -v tmux >/dev/null 2>&1") != 0) {
        printf("    tmux is not installed: skipped\n");
        skip();
    }
    char cmd[8192], out[16384], first[16384];
    snprintf(cmd, sizeof cmd, "%s run --name live --config %s --set base.epochs=100000 >%s/live.out 2>&1", mdgan_bin,
             conf, root);
    pid_t coord = spawn(cmd);
    wait_step("live", "base", 2, coord, 60);
    char session[64];
    snprintf(session, sizeof session, "mdgan-test-%d", (int)getpid());
    assert_int_equal(run_cmd(out, sizeof out, "tmux new-session -d -s %s -x 160 -y 40 '%s status live --config %s'",
                             session, mdgan_bin, conf), 0);
    first[0] = '\0';
    for (int i = 0; i < 200 && !pane_shows_live_base(first); i++) {
        usleep(100000);
        capture_pane(session, first, sizeof first);
    }
    // the step and the clock move: wait for a redraw that differs from the first screen
    out[0] = '\0';
    for (int i = 0; i < 100; i++) {
        usleep(100000);
        capture_pane(session, out, sizeof out);
        if (pane_shows_live_base(out) && strcmp(first, out)) break;
    }
    run_cmd(NULL, 0, "tmux kill-session -t %s", session);
    printf("    first screen:\n%s\n    a later one:\n%s\n", first, out);
    assert_true(pane_shows_live_base(first));
    assert_true(pane_shows_live_base(out));
    assert_string_not_equal(first, out);
    assert_int_equal(mdgan(out, sizeof out, "stop live"), 0);
    wait_child(coord, 30);
}

typedef struct {
    int refine_done, predict_done;
} JobCount;

static int count_job(const DbJob *j, void *ctx) {
    JobCount *c = ctx;
    if (!strcmp(j->status, "done")) !strcmp(j->kind, "refine") ? c->refine_done++ : c->predict_done++;
    return 0;
}

// --detach returns at once; a Refine-Net trained on a given Base-Net; `mdgan refine`
// on the run's outputs is a job of the run.
static void test_detach_refine_only_and_refine_job(void **state) {
    (void)state;
    reference_run();
    char out[16384];
    int rc = mdgan(out, sizeof out, "run --name det --stages refine --base-checkpoint %s --detach", ref_base);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    assert_non_null(strstr(out, "det\n"));
    for (int i = 0; i < 1200; i++) {
        char status[32];
        run_status("det", status, sizeof status);
        if (strcmp(status, "running") != 0 && strcmp(status, "created") != 0) break;
        usleep(100000);
    }
    char status[32];
    run_status("det", status, sizeof status);
    assert_string_equal(status, "done");
    assert_true(exists("%s/runs/det/coord.log", root));
    StageRow b;
    assert_false(stage_row("det", "base", &b));   // no Stage I in this run
    // its Refine-Net learnt from the same G1 as ref's with the same seed: the same bits
    char r[4096];
    newest_ckpt("det", "refine", r, sizeof r);
    expect_same_checkpoint(r, ref_refine);
    rc = mdgan(out, sizeof out, "refine --run det --input %s/runs/ref/predict/y1 --out %s/refined", root, root);
    if (rc != 0 || !exists("%s/refined/contact_sheet.png", root)) fail_msg("mdgan refine exited %d: %s", rc, out);
    Db *db = open_ro();
    DbRun run;
    assert_int_equal(db_run_get(db, "det", &run), 0);
    JobCount jc = {0};
    assert_int_equal(db_jobs_list(db, run.id, count_job, &jc), 0);
    assert_int_equal(jc.refine_done, 1);
    assert_int_equal(jc.predict_done, 2);   // the run's own predictions: Y1 and Y2
    db_run_free(&run);
    db_close(db);
}

// Bad arguments: a clear message and exit 2.
static void test_bad_arguments(void **state) {
    (void)state;
    char out[8192];
    assert_int_equal(mdgan(out, sizeof out, "resume nosuch"), 2);
    assert_non_null(strstr(out, "no run named 'nosuch'"));
    assert_int_equal(mdgan(out, sizeof out, "status nosuch --once"), 2);
    assert_non_null(strstr(out, "nosuch"));
    assert_int_equal(mdgan(out, sizeof out, "run --stages refine"), 2);
    assert_non_null(strstr(out, "--base-checkpoint"));
    assert_int_equal(mdgan(out, sizeof out, "run --stages sideways"), 2);
    assert_int_equal(mdgan(out, sizeof out, "run --name '../x'"), 2);
    assert_non_null(strstr(out, "run name"));
    assert_int_equal(mdgan(out, sizeof out, "run --stages refine --base-checkpoint %s/nofile", root), 2);
    assert_non_null(strstr(out, "nofile"));
    assert_int_equal(mdgan(out, sizeof out, "refine --input %s --out %s/x", root, root), 2);
    assert_int_equal(mdgan(out, sizeof out, "runs extra"), 2);
    assert_int_equal(run_cmd(out, sizeof out, "%s runs --set coord.db=%s/none.db", mdgan_bin, root), 2);
    assert_non_null(strstr(out, "none.db"));
}

// A stage that exits 2 (its input is bad) fails the run at once: a restart would fail
// the same way.
static void test_bad_input_fails_without_restarts(void **state) {
    (void)state;
    char out[16384], empty[1200];
    snprintf(empty, sizeof empty, "%s/empty-data", root);
    mkdir(empty, 0755);
    int rc = mdgan(out, sizeof out, "run --name bad --set data.root=%s", empty);
    printf("%s", out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "not restarted: it exited with status 2"));
    assert_null(strstr(out, "restart 1 of"));
    char status[32];
    run_status("bad", status, sizeof status);
    assert_string_equal(status, "failed");
    StageRow b;
    assert_true(stage_row("bad", "base", &b));
    assert_string_equal(b.status, "failed");
    assert_int_equal(b.restarts, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_bad_input_fails_without_restarts),
        cmocka_unit_test(test_pipeline_records_everything),
        cmocka_unit_test(test_newer_database_refused),
        cmocka_unit_test(test_second_coordinator_refused),
        cmocka_unit_test(test_malformed_control_messages),
        cmocka_unit_test(test_damaged_checkpoint_skipped),
        cmocka_unit_test(test_detach_refine_only_and_refine_job),
        cmocka_unit_test(test_status_live_in_tmux),
        cmocka_unit_test(test_kills_then_resume_identical),
    };
    if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));   // e.g. TEST_FILTER='*kill*'
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
