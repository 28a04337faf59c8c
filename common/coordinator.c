// The coordinator: runs, their stage processes and the control plane (include/mdgan/coordinator.h).
#include "mdgan/coordinator.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "mdgan/control.h"
#include "mdgan/db.h"
#include "mdgan/error.h"
#include "mdgan/fileio.h"
#include "mdgan/report.h"
#include "mdgan/safetensors.h"
#include "mdgan/supervise.h"
#include "mdgan/train.h"
#include "mdgan/wire.h"

#define PATHN 4096

// The processes of a run. Training stages and the Base-Net's server each have a row
// in the stages table under their name.
enum { P_BASE, P_SERVE, P_REFINE, NPROC };
static const char *const proc_stage[NPROC] = {"base", "serve", "refine"};
static const char *const proc_prog[NPROC] = {"mdgan-base", "mdgan-base", "mdgan-refine"};

typedef struct {
    Child child;
    int active;               // started, not yet reaped
    int hello, done;          // HELLO / DONE since it was started
    double last_msg;          // monotonic time of its last message (or of its start)
    double last_db;           // last write of its row
    int restarts;             // in all (the stages table)
    int restarts_here;        // by this coordinator: coord.max_restarts bounds these
    int stop_sent;
    char status[16];          // the stages table's status
    long step, total;
    double rate;
    char *losses;             // JSON text of the last PROGRESS losses
    char exit_status[512];
    char error[1024];         // its last ERROR message
} Proc;

typedef struct {
    Config cfg;
    char *cfg_text;
    char cfg_sha[65];
    char name[128], run_dir[PATHN], cfg_path[PATHN + 32], endpoint[PATHN], bindir[PATHN];
    char base_ckpt[PATHN];    // --base-checkpoint, absolute ("" = the run's own Base-Net)
    int want_base, want_refine;
    Db *db;
    int64_t run_id;
    void *zctx, *router;
    Proc p[NPROC];
    int lock_fd;
    int stopping;             // a signal (or a lost server) asked the run to stop
    int serve_failed;         // the Base-Net's server failed past its restarts
    int report_warned;
    long refused;             // control messages refused so far
    char why[1600];           // the last stage failure, for the run's own message
    int started_fd;           // --detach: written once the first stage runs, then closed
    Progress view;            // the coordinator's own progress line
    double last_view;
    char db_note[2400];       // a notice of the database, for the events once it can be written
} Coord;

// ---------------------------------------------------------------- small helpers

static void coord_log(Coord *C, const char *level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// An event: into the database and on stderr. The error message of the caller is kept.
static void coord_log(Coord *C, const char *level, const char *fmt, ...) {
    char text[2048], saved[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    snprintf(saved, sizeof saved, "%s", mdgan_errmsg());
    const int plain = !strcmp(level, "info");
    progress_note(&C->view, "mdgan: %s%s%s", plain ? "" : level, plain ? "" : ": ", text);
    if (C->db && db_event_add(C->db, C->run_id, level, text) != 0)
        fprintf(stderr, "mdgan: warning: cannot record an event: %s\n", mdgan_errmsg());
    mdgan_errclear();
    if (saved[0]) MDGAN_ERR("%s", saved);
}

int coord_bindir(char *out, size_t n) {
    char exe[PATHN];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) {
        MDGAN_ERR("cannot find this executable's folder (/proc/self/exe): %s", strerror(errno));
        return -1;
    }
    exe[len] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(out, n, "%s", exe);
    return 0;
}

// An absolute form of path (made absolute against the working folder when it does not exist yet).
static void absolute_path(char *out, size_t n, const char *path) {
    char buf[PATH_MAX];
    if (realpath(path, buf)) {
        snprintf(out, n, "%s", buf);
    } else if (path[0] == '/') {
        snprintf(out, n, "%s", path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, ".");
        if (snprintf(out, n, "%s/%s", cwd, path) >= (int)n) out[n - 1] = 0;   // the caller's length check catches it
    }
}

// A config text field from a longer path; -1 naming the key when it does not fit.
static int set_field(char *dst, size_t n, const char *src, const char *key) {
    size_t len = strlen(src);
    if (len >= n) {
        MDGAN_ERR("%s: '%s' is longer than the %zu bytes the config allows", key, src, n - 1);
        return -1;
    }
    memcpy(dst, src, len + 1);
    return 0;
}

static int load_where(Config *c, const CoordWhere *w) {
    config_defaults(c);
    if (w->config_path && config_load(c, w->config_path) != 0) return -1;
    for (int i = 0; i < w->nsets; i++)
        if (config_set(c, w->sets[i]) != 0) return -1;
    return config_validate(c);
}

// Opens the database of c (its folder made), read-only for the commands that only look.
static Db *open_db(const Config *c, int readonly) {
    if (readonly) {
        struct stat sb;
        if (stat(c->coord.db, &sb) != 0) {
            MDGAN_ERR("no database at %s (coord.db): no run was started with this config; set --set coord.db=FILE",
                      c->coord.db);
            return NULL;
        }
        return db_open(c->coord.db, 1);
    }
    char dir[PATHN];
    snprintf(dir, sizeof dir, "%s", c->coord.db);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        if (fio_mkdir_p(dir, 0755) != 0) return NULL;
    }
    return db_open(c->coord.db, 0);
}

static int pid_alive(int pid) { return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM); }

// /proc/<pid>/cmdline mentions want (a program name): the pid is still one of ours.
static int pid_runs(int pid, const char *want) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    for (ssize_t i = 0; i < n; i++)
        if (!buf[i]) buf[i] = ' ';
    buf[n] = 0;
    return strstr(buf, want) != NULL;
}

// ---------------------------------------------------------------- one coordinator per run

// flock on <run>/coord.lock, with our pid inside for the message of the next one.
static int lock_run(Coord *C) {
    char path[PATHN + 16];
    snprintf(path, sizeof path, "%s/coord.lock", C->run_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        MDGAN_ERR("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = "";
        // the holder writes its pid right after it took the lock: give it a moment
        for (int i = 0; i < 50 && atoi(buf) <= 0; i++) {
            ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
            buf[n > 0 ? n : 0] = 0;
            if (atoi(buf) <= 0) usleep(20000);
        }
        close(fd);
        MDGAN_ERR("run '%s' is already run by the coordinator with pid %d (%s): wait for it, or stop it with "
                  "`mdgan stop %s`", C->name, atoi(buf), path, C->name);
        return -1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, len, 0) != len) {
        MDGAN_ERR("cannot write %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    C->lock_fd = fd;
    return 0;
}

// ---------------------------------------------------------------- stage rows

static void proc_put(Coord *C, int k) {
    Proc *p = &C->p[k];
    DbStage s = {.stage = proc_stage[k],
                 .status = p->status,
                 .pid = p->active ? (int)p->child.pid : 0,
                 .step = p->step,
                 .total_steps = p->total,
                 .rate = p->rate,
                 .heartbeat = p->last_msg > 0 ? (double)time(NULL) : 0,
                 .restarts = p->restarts,
                 .losses = p->losses,
                 .exit_status = p->exit_status[0] ? p->exit_status : NULL};
    if (db_stage_put(C->db, C->run_id, &s) != 0) fprintf(stderr, "mdgan: warning: %s\n", mdgan_errmsg());
    p->last_db = train_now();
}

static void proc_status(Coord *C, int k, const char *status) {
    snprintf(C->p[k].status, sizeof C->p[k].status, "%s", status);
    proc_put(C, k);
}

typedef struct {
    Coord *C;
    int k;
} StageLoad;

// The rows of an earlier coordinator of the run: steps, restarts, status.
static int load_stage_row(const DbStage *s, void *ctx) {
    Coord *C = ctx;
    for (int k = 0; k < NPROC; k++) {
        if (strcmp(s->stage, proc_stage[k]) != 0) continue;
        Proc *p = &C->p[k];
        snprintf(p->status, sizeof p->status, "%s", s->status);
        p->step = s->step, p->total = s->total_steps, p->rate = s->rate, p->restarts = s->restarts;
        free(p->losses);
        p->losses = s->losses ? strdup(s->losses) : NULL;
        snprintf(p->exit_status, sizeof p->exit_status, "%s", s->exit_status ? s->exit_status : "");
        p->child.pid = s->pid;   // the earlier coordinator's child, maybe still ending
    }
    return 0;
}

// ---------------------------------------------------------------- checkpoints

typedef struct {
    DbCheckpoint c;
    char path[PATHN], sha[65];
} CkptRow;

typedef struct {
    CkptRow *rows;
    int n, cap;
} CkptList;

static int collect_ckpt(const DbCheckpoint *c, void *ctx) {
    CkptList *l = ctx;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        CkptRow *r = realloc(l->rows, (size_t)cap * sizeof *r);
        if (!r) return -1;
        l->rows = r, l->cap = cap;
    }
    CkptRow *r = &l->rows[l->n++];
    r->c = *c;
    snprintf(r->path, sizeof r->path, "%s", c->path);
    snprintf(r->sha, sizeof r->sha, "%s", c->sha256);
    r->c.path = r->path, r->c.sha256 = r->sha, r->c.stage = NULL;
    return 0;
}

static int ckpt_known(const CkptList *l, long step) {
    for (int i = 0; i < l->n; i++)
        if (l->rows[i].c.step == step) return 1;
    return 0;
}

// The temporaries of writes killed before their rename (a checkpoint's, its sidecar's, a
// sample's) of stage: never a checkpoint nor a sample. Only those of writers no longer
// alive, as a stage's own start removes them.
static void remove_dead_temps(Coord *C, const char *stage) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s_", stage);
    for (int sub = 0; sub < 2; sub++) {
        char dir[PATHN + 16];
        snprintf(dir, sizeof dir, "%s/%s", C->run_dir, sub ? "samples" : "checkpoints");
        const int n = train_remove_stale_temps(dir, prefix);
        if (n) coord_log(C, "info", "removed %d temporary file(s) of %s in %s, left by writes that were killed", n,
                         stage, dir);
    }
}

// Checkpoint files of stage in the run folder that the database does not know: written
// while no coordinator listened (a stage saves its state when its coordinator dies).
// Each that verifies against its sidecar and names this run and stage is recorded.
static void adopt_checkpoints(Coord *C, const char *stage) {
    remove_dead_temps(C, stage);
    char dir[PATHN + 16];
    snprintf(dir, sizeof dir, "%s/checkpoints", C->run_dir);
    DIR *d = opendir(dir);
    if (!d) return;
    CkptList known = {0};
    db_ckpts_list(C->db, C->run_id, stage, collect_ckpt, &known);
    char prefix[64];
    const size_t plen = (size_t)snprintf(prefix, sizeof prefix, "%s_step_", stage);
    for (struct dirent *e; (e = readdir(d));) {
        const char *nm = e->d_name;
        char *end;
        if (strncmp(nm, prefix, plen) != 0 || strstr(nm, ".tmp.")) continue;
        long step = strtol(nm + plen, &end, 10);
        if (end == nm + plen || strcmp(end, ".safetensors") != 0 || step < 0 || ckpt_known(&known, step)) continue;
        char path[PATHN * 2], hex[65];
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        if (!fio_path_within(path, C->run_dir)) {   // a link out of the run folder
            coord_log(C, "warn", "%s lies outside the run folder %s: not used", path, C->run_dir);
            continue;
        }
        // no sidecar at all: its writer was killed between the rename and the sidecar;
        // a checkpoint is renamed only once written and synced, so the file is whole
        char side[PATHN * 2 + 8];
        snprintf(side, sizeof side, "%s.sha256", path);
        const int unsealed = access(side, F_OK) != 0 && errno == ENOENT;
        if (!unsealed && fio_verify_sha256_sidecar_hex(path, hex) != 0) {
            coord_log(C, "warn", "%s is not recorded and does not verify against its sidecar: not used (%s)", path,
                      mdgan_errmsg());
            continue;
        }
        StFile f = {0};
        if (st_open(&f, path) != 0) continue;
        const char *run = st_meta_get(&f, "run"), *st = st_meta_get(&f, "stage"), *ep = st_meta_get(&f, "epoch");
        const char *sp = st_meta_get(&f, "step");
        int ours = run && st && !strcmp(run, C->name) && !strcmp(st, stage) && sp && strtol(sp, NULL, 10) == step;
        long epoch = ep ? strtol(ep, NULL, 10) : 0;
        st_close(&f);
        struct stat sb;
        if (!ours || stat(path, &sb) != 0) continue;
        if (unsealed && fio_write_sha256_sidecar(path, hex) != 0) {
            coord_log(C, "warn", "%s has no sidecar, and writing it failed: not used (%s)", path, mdgan_errmsg());
            continue;
        }
        DbCheckpoint c = {.stage = stage, .step = step, .epoch = epoch, .path = path, .bytes = sb.st_size, .sha256 = hex};
        if (db_ckpt_add(C->db, C->run_id, &c, NULL) == 0)
            coord_log(C, "info", "recorded %s, which its stage wrote but did not report%s", path,
                      unsealed ? " (it was killed before the checkpoint's sidecar: written now)" : "");
    }
    closedir(d);
    free(known.rows);
}

// The newest checkpoint of stage whose file matches the sha256 recorded when it was
// written. A damaged one is marked invalid and reported, one that is gone (the stage
// keeps only its newest few) marked invalid quietly. 0 found, 1 none, -1 error.
static int pick_checkpoint(Coord *C, const char *stage, char *out, size_t n) {
    CkptList l = {0};
    if (db_ckpts_list(C->db, C->run_id, stage, collect_ckpt, &l) != 0) {
        free(l.rows);
        return -1;
    }
    int rc = 1;
    for (int i = 0; i < l.n && rc == 1; i++) {
        const CkptRow *r = &l.rows[i];
        if (!r->c.valid) continue;
        struct stat sb;
        char hex[65];
        if (stat(r->path, &sb) != 0) {
            db_ckpt_invalidate(C->db, r->c.id);
            continue;
        }
        if (!fio_path_within(r->path, C->run_dir)) {
            coord_log(C, "warn", "the database names %s checkpoint %s outside the run folder %s: not used", stage,
                      r->path, C->run_dir);
            db_ckpt_invalidate(C->db, r->c.id);
            continue;
        }
        if (fio_sha256_file(r->path, hex) != 0 || strcmp(hex, r->sha) != 0) {
            coord_log(C, "warn", "%s checkpoint %s (step %lld) is damaged: its sha256 is %.16s..., recorded %.16s...; "
                      "using the one before it", stage, r->path, (long long)r->c.step, hex, r->sha);
            db_ckpt_invalidate(C->db, r->c.id);
            continue;
        }
        snprintf(out, n, "%s", r->path);
        rc = 0;
    }
    free(l.rows);
    return rc;
}

// ---------------------------------------------------------------- the control plane

static int proc_of_route(const WireMsg *m) {
    for (int k = 0; k < NPROC; k++)
        if (m->route_len == strlen(proc_stage[k]) && !memcmp(m->route, proc_stage[k], m->route_len)) return k;
    return -1;
}

static char *json_text(const json_t *j) { return json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)); }

static long jlong(const json_t *o, const char *key) { return (long)json_integer_value(json_object_get(o, key)); }

// A {name: number|null} object as metrics rows of one step, names prefixed.
static void record_numbers(Coord *C, const char *stage, long step, const json_t *obj, const char *prefix) {
    DbMetric m[64];
    char names[64][80];
    int n = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        if (n == 64) break;
        snprintf(names[n], sizeof names[n], "%s%s", prefix, key);
        m[n].name = names[n];
        m[n].value = json_is_number(v) ? json_number_value(v) : NAN;
        n++;
    }
    if (n && db_metrics_add(C->db, C->run_id, stage, step, m, n) != 0)
        fprintf(stderr, "mdgan: warning: %s\n", mdgan_errmsg());
}

static void refresh_report(Coord *C);

static void on_checkpoint(Coord *C, int k, const json_t *b) {
    char path[PATHN * 2];
    const char *rel = json_string_value(json_object_get(b, "path"));
    snprintf(path, sizeof path, rel[0] == '/' ? "%s" : "%s/%s", rel[0] == '/' ? rel : C->run_dir, rel);
    // the file may be gone already when the message is read late (the stage keeps its
    // newest few): recorded all the same, and marked invalid when a resume looks for it
    if (!fio_path_within(path, C->run_dir)) {
        coord_log(C, "warn", "%s reported checkpoint '%s', which lies outside the run folder: not recorded",
                  proc_stage[k], rel);
        return;
    }
    char abs[PATHN];
    absolute_path(abs, sizeof abs, path);
    DbCheckpoint c = {.stage = proc_stage[k], .step = jlong(b, "step"), .epoch = jlong(b, "epoch"), .path = abs,
                      .bytes = jlong(b, "bytes"), .sha256 = json_string_value(json_object_get(b, "sha256"))};
    if (db_ckpt_add(C->db, C->run_id, &c, NULL) != 0) fprintf(stderr, "mdgan: warning: %s\n", mdgan_errmsg());
}

// A bad or unexpected message: answered, and logged (a flood of them only now and
// then, so it cannot fill the database).
static void refuse(Coord *C, const WireMsg *m, uint32_t status, const char *who, const char *why) {
    if (++C->refused <= 20 || C->refused % 1000 == 0)
        coord_log(C, "warn", "refused a control message from %s: %s%s", who, why,
                  C->refused == 20 ? " (further ones are logged once in 1000)" : "");
    wire_send_error(C->router, m->route, m->route_len, m->type, status, m->id, why);
}

static void handle_message(Coord *C, const WireMsg *m) {
    const int k = proc_of_route(m);
    char why[512];
    if (k < 0) {
        char who[300];
        snprintf(who, sizeof who, "an unknown peer '%.*s'", (int)m->route_len, m->route);
        refuse(C, m, WIRE_E_REQUEST, who, "unknown peer name");
        return;
    }
    if (m->ntensors > 0) {
        refuse(C, m, WIRE_E_FRAMES, proc_stage[k], "control messages carry no tensors");
        return;
    }
    json_t *b;
    int st = control_check(m->type, m->text, &b, why, sizeof why);
    if (st != WIRE_OK) {
        refuse(C, m, (uint32_t)st, proc_stage[k], why);
        return;
    }
    Proc *p = &C->p[k];
    // A stage's name is known to anyone who can reach the socket: what arrives under
    // the name of a stage with no process of this coordinator's running (Stage II's
    // while Stage I trains, or one already reaped: reap reads what it sent before it
    // exited) comes from someone else, or from the earlier coordinator's stage still
    // ending, whose checkpoints are adopted from its folder instead.
    if (!p->active) {
        char who[64];
        snprintf(who, sizeof who, "%s, which is not running", proc_stage[k]);
        refuse(C, m, WIRE_E_REQUEST, who, "no process of this stage is running: ignored");
        json_decref(b);
        return;
    }
    p->last_msg = train_now();
    switch (m->type) {
    case CTL_HELLO: {
        const int pid = (int)jlong(b, "pid");
        if (p->active && pid != p->child.pid)
            coord_log(C, "warn", "%s says it is pid %d, but the coordinator started pid %d", proc_stage[k], pid,
                      (int)p->child.pid);
        p->hello = 1;
        proc_status(C, k, "running");
        break;
    }
    case CTL_PROGRESS:
        p->step = jlong(b, "step"), p->total = jlong(b, "total_steps");
        p->rate = json_is_number(json_object_get(b, "rate")) ? json_number_value(json_object_get(b, "rate")) : NAN;
        free(p->losses);
        p->losses = json_text(json_object_get(b, "losses"));
        record_numbers(C, proc_stage[k], p->step, json_object_get(b, "losses"), "loss.");
        proc_put(C, k);
        break;
    case CTL_CHECKPOINT: on_checkpoint(C, k, b); break;
    case CTL_EVAL:
        record_numbers(C, proc_stage[k], jlong(b, "step"), json_object_get(b, "metrics"), "");
        refresh_report(C);
        break;
    case CTL_DONE: p->done = 1; break;
    case CTL_ERROR:
        snprintf(p->error, sizeof p->error, "%s", json_string_value(json_object_get(b, "message")));
        coord_log(C, "error", "%s: %s", proc_stage[k], p->error);
        break;
    default:   // HEARTBEAT; the row's heartbeat time every few seconds
        if (train_now() - p->last_db > 5) proc_put(C, k);
        break;
    }
    json_decref(b);
}

// The database's notices: another process holds its lock past busy_timeout (the
// coordinator waits: a dropped row would be a lost checkpoint or status), or its file
// was deleted or replaced and was recovered (an event once it can be written).
static int on_db_notice(void *ctx, int kind, const char *text) {
    Coord *C = ctx;
    progress_note(&C->view, "mdgan: warning: %s%s", text,
                  kind == DB_NOTICE_LOCKED ? ": waiting for it (nothing is dropped; the stages go on)" : "");
    if (kind == DB_NOTICE_MOVED) snprintf(C->db_note, sizeof C->db_note, "%s", text);
    return 1;
}

// Reads what has arrived on the control socket, waiting up to wait_ms for the first
// message (or the signal pipe).
static void pump(Coord *C, int wait_ms) {
    if (C->db_note[0]) {
        char note[sizeof C->db_note];
        snprintf(note, sizeof note, "%s", C->db_note);
        C->db_note[0] = 0;
        if (db_event_add(C->db, C->run_id, "warn", note) != 0)
            fprintf(stderr, "mdgan: warning: cannot record an event: %s\n", mdgan_errmsg());
    }
    const int sigfd = train_signal_fd();
    zmq_pollitem_t it[2] = {{C->router, 0, ZMQ_POLLIN, 0}, {NULL, sigfd, ZMQ_POLLIN, 0}};
    if (zmq_poll(it, sigfd >= 0 ? 2 : 1, wait_ms) <= 0) return;
    if (sigfd >= 0 && (it[1].revents & ZMQ_POLLIN)) {
        char buf[16];
        while (read(sigfd, buf, sizeof buf) > 0) {}
    }
    WireLimits lim = {.max_payload = 0};
    for (int i = 0; i < 1000; i++) {
        zmq_pollitem_t r = {C->router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&r, 1, 0) <= 0) break;
        WireMsg m;
        char why[256];
        int st = wire_recv(C->router, 1, &lim, &m, why, sizeof why);
        if (st < 0) break;
        if (st != WIRE_OK) {
            int k = proc_of_route(&m);
            refuse(C, &m, (uint32_t)st, k >= 0 ? proc_stage[k] : "an unknown peer", why);
        } else {
            handle_message(C, &m);
        }
        wire_msg_free(&m);
    }
}

static int bind_control(Coord *C) {
    if (wire_endpoint(C->endpoint, sizeof C->endpoint, C->cfg.transport.control_endpoint, C->run_dir, "control") != 0)
        return -1;
    if (!(C->zctx = zmq_ctx_new()) || !(C->router = zmq_socket(C->zctx, ZMQ_ROUTER))) {
        MDGAN_ERR("cannot create the control socket: %s", zmq_strerror(errno));
        return -1;
    }
    const int mandatory = 1, timeout = 1000;
    const int64_t max_frame = WIRE_ENVELOPE_BYTES + WIRE_MAX_TEXT;   // a control message is an envelope only
    if (wire_socket_setup(C->router, C->endpoint, 1, 10000, C->cfg.transport.curve_server_key,
                          C->cfg.transport.curve_secret_key) != 0 ||
        zmq_setsockopt(C->router, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof mandatory) != 0 ||
        zmq_setsockopt(C->router, ZMQ_SNDTIMEO, &timeout, sizeof timeout) != 0 ||
        zmq_setsockopt(C->router, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame) != 0)
        return -1;
    // a stale socket file of a dead coordinator of this run (the run's lock is ours);
    // any other file there is not ours to remove, and the bind fails naming it
    struct stat sb;
    if (!strncmp(C->endpoint, "ipc://", 6) && lstat(C->endpoint + 6, &sb) == 0 && S_ISSOCK(sb.st_mode))
        unlink(C->endpoint + 6);
    if (zmq_bind(C->router, C->endpoint) != 0) {
        MDGAN_ERR("cannot bind the control endpoint %s: %s", C->endpoint, zmq_strerror(errno));
        return -1;
    }
    size_t len = sizeof C->endpoint;
    zmq_getsockopt(C->router, ZMQ_LAST_ENDPOINT, C->endpoint, &len);
    return 0;
}

// ---------------------------------------------------------------- processes

// --detach: the process that started us may return now.
static void signal_started(Coord *C) {
    if (C->started_fd < 0) return;
    ssize_t w = write(C->started_fd, "started\n", 8);
    (void)w;
    close(C->started_fd);
    C->started_fd = -1;
}

static int start_proc(Coord *C, int k, const char *checkpoint) {
    Proc *p = &C->p[k];
    char prog[PATHN + 32], log[PATHN + 32], logdir[PATHN + 8];
    snprintf(prog, sizeof prog, "%s/%s", C->bindir, proc_prog[k]);
    snprintf(logdir, sizeof logdir, "%s/logs", C->run_dir);
    snprintf(log, sizeof log, "%s/%s.log", logdir, proc_stage[k]);
    if (fio_mkdir_p(logdir, 0755) != 0) return -1;
    char *argv[16];
    int n = 0;
    argv[n++] = prog;
    if (k == P_SERVE) {
        argv[n++] = "serve";
        argv[n++] = "--checkpoint";
        argv[n++] = (char *)checkpoint;
    } else {
        argv[n++] = "train";
        if (checkpoint) argv[n++] = "--resume", argv[n++] = (char *)checkpoint;
    }
    argv[n++] = "--config", argv[n++] = C->cfg_path;
    argv[n++] = "--control", argv[n++] = C->endpoint;
    argv[n] = NULL;
    p->hello = p->done = p->stop_sent = 0;
    p->error[0] = p->exit_status[0] = 0;
    if (child_start(&p->child, proc_prog[k], argv, log) != 0) {
        snprintf(p->exit_status, sizeof p->exit_status, "%s", mdgan_errmsg());
        proc_status(C, k, "failed");
        return -1;
    }
    p->active = 1;
    p->last_msg = train_now();
    proc_status(C, k, "starting");
    if (k == P_SERVE)
        coord_log(C, "info", "%s: started %s serve (pid %d) with %s; log %s", proc_stage[k], proc_prog[k],
                  (int)p->child.pid, checkpoint, log);
    else
        coord_log(C, "info", "%s: started %s train (pid %d)%s%s; log %s", proc_stage[k], proc_prog[k],
                  (int)p->child.pid, checkpoint ? " from " : "", checkpoint ? checkpoint : "", log);
    signal_started(C);
    return 0;
}

static void send_stop(Coord *C, int k) {
    Proc *p = &C->p[k];
    if (!p->active || p->stop_sent) return;
    p->stop_sent = 1;
    const char *id = proc_stage[k];
    if (!p->hello || wire_send(C->router, (const unsigned char *)id, strlen(id), CTL_STOP, 0, 0, "{}", NULL, 0, NULL) != 0)
        kill(p->child.pid, SIGTERM);   // not connected (yet): the signal does the same
}

// The process ended: 1 it finished its work, 0 stopped as asked, -1 failed. Messages it
// sent before it exited are read first.
static int reap(Coord *C, int k) {
    Proc *p = &C->p[k];
    pump(C, 100);
    pump(C, 0);
    p->active = 0;
    child_describe(&p->child, p->exit_status, sizeof p->exit_status);
    const int st = p->child.status;
    const int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    // Ctrl-C reaches the whole process group: a stage may end on it before the
    // coordinator's own loop has seen the same signal
    const int asked = p->stop_sent || C->stopping || train_stop_signal();
    if (code == 0 && (k == P_SERVE || p->done)) {
        proc_status(C, k, k == P_SERVE ? "stopped" : "done");
        return 1;
    }
    if (asked && (code == 0 || code == 130 || code == 143 || (WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM))) {
        proc_status(C, k, "stopped");
        coord_log(C, "info", "%s: stopped (%s)", proc_stage[k], p->exit_status);
        return 0;
    }
    proc_status(C, k, "failed");
    snprintf(C->why, sizeof C->why, "%s failed: %s%s%s", proc_stage[k], p->exit_status, p->error[0] ? ": " : "",
             p->error);
    coord_log(C, "error", "%s", C->why);
    return -1;
}

// After a failure: start it again from its last good checkpoint if the config allows.
static int restart_proc(Coord *C, int k, const char *serve_ckpt) {
    Proc *p = &C->p[k];
    const int st = p->child.status;
    // what it wrote before it died (and did not report) is recorded, restarted or not
    if (k != P_SERVE) adopt_checkpoints(C, proc_stage[k]);
    if (WIFEXITED(st) && WEXITSTATUS(st) == MDGAN_EXIT_USAGE) {   // bad input or config: it would fail again
        coord_log(C, "error", "%s: not restarted: it exited with status 2 (bad usage or input, see %s/logs/%s.log)",
                  proc_stage[k], C->run_dir, proc_stage[k]);
        return -1;
    }
    if (!C->cfg.coord.restart || p->restarts_here >= C->cfg.coord.max_restarts) {
        coord_log(C, "error", "%s: not restarted (%s; %d restart%s by this coordinator)", proc_stage[k],
                  C->cfg.coord.restart ? "coord.max_restarts reached" : "coord.restart is false", p->restarts_here,
                  p->restarts_here == 1 ? "" : "s");
        return -1;
    }
    p->restarts++, p->restarts_here++;
    char ckpt[PATHN] = "";
    int have = k == P_SERVE ? 0 : pick_checkpoint(C, proc_stage[k], ckpt, sizeof ckpt);
    if (have < 0) return -1;
    coord_log(C, "warn", "%s: restart %d of %d, from %s", proc_stage[k], p->restarts_here, C->cfg.coord.max_restarts,
              k == P_SERVE ? serve_ckpt : have == 0 ? ckpt : "the beginning (no checkpoint yet)");
    return start_proc(C, k, k == P_SERVE ? serve_ckpt : have == 0 ? ckpt : NULL);
}

// A process silent past coord.heartbeat_s is hung: it is killed, and reaped as failed.
static void check_silence(Coord *C, int k) {
    Proc *p = &C->p[k];
    const double silent = train_now() - p->last_msg;
    if (!p->active || silent <= C->cfg.coord.heartbeat_s) return;
    coord_log(C, "error", "%s (pid %d) silent for %.0f s (coord.heartbeat_s %d): killing it", proc_stage[k],
              (int)p->child.pid, silent, C->cfg.coord.heartbeat_s);
    kill(p->child.pid, SIGKILL);
    p->last_msg = train_now();   // one kill; the reap follows
}

// The coordinator's own line: each active stage's step, rate and ETA.
static void show_progress(Coord *C) {
    const double now = train_now();
    if (now - C->last_view < (C->view.tty ? 1.0 : 30.0)) return;
    C->last_view = now;
    char line[512];
    int at = 0;
    for (int k = 0; k < NPROC; k++) {
        const Proc *p = &C->p[k];
        if (!p->active || k == P_SERVE || !p->total || at >= (int)sizeof line) continue;
        char eta[32] = "?";
        if (p->rate > 0 && p->total > p->step) format_duration(eta, sizeof eta, (p->total - p->step) / p->rate);
        at += snprintf(line + at, sizeof line - at, "%s%s step %ld/%ld, %.2f steps/s, ETA %s", at ? "; " : "",
                       proc_stage[k], p->step, p->total, p->rate > 0 ? p->rate : 0.0, eta);
    }
    if (!at) return;
    if (C->view.tty) {
        fprintf(stderr, "\r\033[K%s", line);
        C->view.line_open = 1;
    } else {
        fprintf(stderr, "%s\n", line);
    }
}

// Runs process k (and the server beside a Refine-Net) until its work is done. 0 done,
// 1 stopped by a signal, -1 failed past its restarts.
static int supervise(Coord *C, int k, const char *checkpoint, const char *serve_ckpt) {
    if (start_proc(C, k, checkpoint) != 0) return -1;
    for (;;) {
        pump(C, 200);
        show_progress(C);
        if (train_stop_signal() && !C->stopping) {
            C->stopping = 1;
            coord_log(C, "info", "stopping: each stage writes a checkpoint and exits");
            for (int j = 0; j < NPROC; j++) send_stop(C, j);
        }
        if (serve_ckpt && !C->stopping && C->p[P_SERVE].active && child_poll(&C->p[P_SERVE].child) == 1) {
            if (reap(C, P_SERVE) != 0 && restart_proc(C, P_SERVE, serve_ckpt) != 0) {
                send_stop(C, k);
                C->stopping = C->serve_failed = 1;
            }
        }
        if (child_poll(&C->p[k].child) == 1) {
            int r = reap(C, k);
            if (r == 1) return 0;
            if (C->serve_failed) return -1;
            if (r == 0 || C->stopping) return 1;
            if (restart_proc(C, k, NULL) != 0) return -1;
        }
        check_silence(C, k);
        if (serve_ckpt) check_silence(C, P_SERVE);
    }
}

// ---------------------------------------------------------------- phases

static void refresh_report(Coord *C) {
    char out[PATHN + 16];
    snprintf(out, sizeof out, "%s/report", C->run_dir);
    const char *runs[1] = {C->name};
    if (report_write(C->db, runs, 1, C->cfg.run.dir, out) != 0 && !C->report_warned) {
        C->report_warned = 1;
        coord_log(C, "warn", "the report could not be written: %s", mdgan_errmsg());
    }
    mdgan_errclear();
}

// Trains stage k (P_BASE or P_REFINE) from its newest good checkpoint, unless done.
static int phase_train(Coord *C, int k, const char *serve_ckpt) {
    if (!strcmp(C->p[k].status, "done")) return 0;
    adopt_checkpoints(C, proc_stage[k]);
    char ckpt[PATHN];
    int have = pick_checkpoint(C, proc_stage[k], ckpt, sizeof ckpt);
    if (have < 0) return -1;
    return supervise(C, k, have == 0 ? ckpt : NULL, serve_ckpt);
}

// Waits until process k ends (after a STOP); hung ones are killed by check_silence.
static void wait_ended(Coord *C, int k) {
    while (C->p[k].active) {
        pump(C, 100);
        if (child_poll(&C->p[k].child) == 1) reap(C, k);
        else check_silence(C, k);
    }
}

// The server is up once it says HELLO (its socket is bound). 0, 1 stopped, -1 failed.
static int wait_serving(Coord *C, const char *ckpt) {
    while (!C->p[P_SERVE].hello) {
        pump(C, 200);
        if (train_stop_signal()) {
            C->stopping = 1;
            send_stop(C, P_SERVE);
            wait_ended(C, P_SERVE);
            return 1;
        }
        if (child_poll(&C->p[P_SERVE].child) == 1 && reap(C, P_SERVE) != 1 && restart_proc(C, P_SERVE, ckpt) != 0)
            return -1;
        check_silence(C, P_SERVE);
    }
    return 0;
}

// The Base-Net the Refine-Net learns from: --base-checkpoint, else the run's newest.
static int base_for_refine(Coord *C, char *out, size_t n) {
    if (C->base_ckpt[0]) {
        snprintf(out, n, "%s", C->base_ckpt);
        return 0;
    }
    if (pick_checkpoint(C, "base", out, n) == 0) return 0;
    MDGAN_ERR("run '%s' has no Base-Net checkpoint that verifies to train its Refine-Net from", C->name);
    return -1;
}

static int phase_refine(Coord *C) {
    if (!strcmp(C->p[P_REFINE].status, "done")) return 0;
    char base[PATHN];
    if (base_for_refine(C, base, sizeof base) != 0) return -1;
    if (start_proc(C, P_SERVE, base) != 0) return -1;
    int r = wait_serving(C, base);
    if (r == 0) r = phase_train(C, P_REFINE, base);
    send_stop(C, P_SERVE);
    wait_ended(C, P_SERVE);
    return r;
}

// Runs a command of the predict phase to its end (its output into logs/predict.log).
static int run_job(Coord *C, const char *kind, const char *input, const char *output, char *const argv[]) {
    char log[PATHN + 32];
    snprintf(log, sizeof log, "%s/logs/predict.log", C->run_dir);
    int64_t job = 0;
    if (kind && db_job_add(C->db, C->run_id, kind, input, output, &job) != 0) return -1;
    Child ch;
    if (child_start(&ch, argv[0], argv, log) != 0) {
        if (job) db_job_finish(C->db, job, "failed", mdgan_errmsg());
        return -1;
    }
    while (child_poll(&ch) == 0) {
        pump(C, 200);
        if (train_stop_signal()) {
            child_stop(&ch, 10);
            break;
        }
    }
    char how[256];
    child_describe(&ch, how, sizeof how);
    const int ok = WIFEXITED(ch.status) && WEXITSTATUS(ch.status) == 0;
    if (job) db_job_finish(C->db, job, ok ? "done" : "failed", ok ? NULL : how);
    if (!ok) MDGAN_ERR("%s: %s (see %s)", argv[0], how, log);
    return ok ? 0 : -1;
}

// The validation videos, from the newest metrics file of a stage's evaluation.
static int validation_videos(Coord *C, const char *stage, json_t **videos) {
    char dir[PATHN + 16], best[300] = "", prefix[64];
    snprintf(dir, sizeof dir, "%s/samples", C->run_dir);
    const size_t plen = (size_t)snprintf(prefix, sizeof prefix, "%s_metrics_step_", stage);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (!strncmp(e->d_name, prefix, plen) && strcmp(e->d_name, best) > 0) snprintf(best, sizeof best, "%s", e->d_name);
    if (d) closedir(d);
    if (!best[0]) {
        MDGAN_ERR("no %s evaluation in %s to take the validation clips from", stage, dir);
        return -1;
    }
    char path[PATHN * 2];
    snprintf(path, sizeof path, "%s/%s", dir, best);
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    json_t *clips = json_object_get(doc, "clips");
    *videos = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(clips, i, c) {
        const char *v = json_string_value(json_object_get(c, "video"));
        int seen = 0;
        for (size_t j = 0; v && j < json_array_size(*videos); j++)
            seen |= !strcmp(json_string_value(json_array_get(*videos, j)), v);
        if (v && !seen && !strchr(v, '/') && strcmp(v, "..") && strcmp(v, ".")) json_array_append_new(*videos, json_string(v));
    }
    json_decref(doc);
    if (json_array_size(*videos) == 0) {
        json_decref(*videos);
        MDGAN_ERR("%s lists no validation clips", path);
        return -1;
    }
    return 0;
}

// predict/real/<video> -> <data.root>/<video> for each validation video.
static int link_validation(Coord *C, const json_t *videos, const char *real) {
    if (fio_mkdir_p(real, 0755) != 0) return -1;
    size_t i;
    json_t *v;
    json_array_foreach(videos, i, v) {
        char link[PATHN * 2], target[PATHN * 2];
        snprintf(link, sizeof link, "%s/%s", real, json_string_value(v));
        snprintf(target, sizeof target, "%s/%s", C->cfg.data.root, json_string_value(v));
        unlink(link);
        if (symlink(target, link) != 0) {
            MDGAN_ERR("cannot link %s to %s: %s", link, target, strerror(errno));
            return -1;
        }
    }
    return 0;
}

// eval_<which>.json's overall numbers as metrics "<which>.<name>" of stage "predict".
static void record_eval(Coord *C, const char *json_path, const char *which, long step) {
    json_error_t je;
    json_t *doc = json_load_file(json_path, 0, &je);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s.", which);
    if (json_is_object(json_object_get(doc, "overall")))
        record_numbers(C, "predict", step, json_object_get(doc, "overall"), prefix);
    json_decref(doc);
}

// After training: the validation clips through both stages, and their metrics.
static int phase_predict(Coord *C) {
    char base[PATHN], refine[PATHN] = "", pdir[PATHN + 16], real[PATHN + 32], y1[PATHN + 32], y2[PATHN + 32];
    if (base_for_refine(C, base, sizeof base) != 0) return -1;
    if (C->want_refine && pick_checkpoint(C, "refine", refine, sizeof refine) != 0) {
        MDGAN_ERR("run '%s' has no Refine-Net checkpoint that verifies", C->name);
        return -1;
    }
    json_t *videos;
    if (validation_videos(C, C->want_refine ? "refine" : "base", &videos) != 0) return -1;
    snprintf(pdir, sizeof pdir, "%s/predict", C->run_dir);
    snprintf(real, sizeof real, "%s/real", pdir);
    snprintf(y1, sizeof y1, "%s/y1", pdir);
    snprintf(y2, sizeof y2, "%s/y2", pdir);
    int rc = link_validation(C, videos, real);
    coord_log(C, "info", "predicting the %zu validation video(s) through %s", json_array_size(videos),
              C->want_refine ? "both stages" : "the Base-Net");
    json_decref(videos);
    if (rc != 0) return -1;
    char prog_base[PATHN + 32], prog_refine[PATHN + 32], prog_coord[PATHN + 32], threads[16], frames[16];
    snprintf(prog_base, sizeof prog_base, "%s/mdgan-base", C->bindir);
    snprintf(prog_refine, sizeof prog_refine, "%s/mdgan-refine", C->bindir);
    snprintf(prog_coord, sizeof prog_coord, "%s/mdgan", C->bindir);
    snprintf(threads, sizeof threads, "%d", C->cfg.run.threads);
    snprintf(frames, sizeof frames, "%d", C->cfg.data.frames);
    char *infer1[] = {prog_base, "infer", "--checkpoint", base, "--data", real, "--out", y1, "--threads", threads, NULL};
    if (run_job(C, "predict", real, y1, infer1) != 0) return -1;
    char *infer2[] = {prog_refine, "infer", "--checkpoint", refine, "--input", y1, "--out", y2, "--threads", threads, NULL};
    if (C->want_refine && run_job(C, "predict", y1, y2, infer2) != 0) return -1;
    const long step = C->want_refine ? C->p[P_REFINE].step : C->p[P_BASE].step;
    for (int w = 0; w < 1 + C->want_refine; w++) {
        const char *which = w ? "y2" : "y1";
        char json[PATHN + 32];
        snprintf(json, sizeof json, "%s/eval_%s.json", pdir, which);
        char *eval[] = {prog_coord, "eval", "--pred", w ? y2 : y1, "--real", real, "--frames", frames,
                        "--json", json, "--threads", threads, NULL};
        if (run_job(C, NULL, NULL, NULL, eval) != 0) return -1;
        record_eval(C, json, which, step);
    }
    return 0;
}

// ---------------------------------------------------------------- a run from start to end

static void coord_free(Coord *C) {
    for (int k = 0; k < NPROC; k++) free(C->p[k].losses);
    if (C->router) zmq_close(C->router);
    if (C->zctx) zmq_ctx_term(C->zctx);
    db_close(C->db);
    free(C->cfg_text);
    if (C->lock_fd > 0) close(C->lock_fd);
    if (C->started_fd >= 0) close(C->started_fd);
}

// Where to look: the stages' outputs of a finished run.
static void print_outputs(Coord *C) {
    printf("run %s: %s\n", C->name, C->run_dir);
    printf("  report:        %s/report/index.html\n", C->run_dir);
    printf("  videos:        %s/predict/y1/<video>/<clip>/ (Stage I)%s\n", C->run_dir,
           C->want_refine ? ", predict/y2/ (Stage II)" : "");
    printf("  contact sheet: %s/predict/%s/contact_sheet.png\n", C->run_dir, C->want_refine ? "y2" : "y1");
    printf("  samples:       %s/samples/ (per evaluation: contact sheet .png and .gif)\n", C->run_dir);
    printf("  metrics:       %s/predict/eval_y1.json%s, %s/*_metrics.jsonl\n", C->run_dir,
           C->want_refine ? ", eval_y2.json" : "", C->run_dir);
    printf("  checkpoints:   %s/checkpoints/\n", C->run_dir);
    for (int w = 0; w < 1 + C->want_refine; w++) {
        char path[PATHN + 32];
        snprintf(path, sizeof path, "%s/predict/eval_y%d.json", C->run_dir, w + 1);
        json_t *doc = json_load_file(path, 0, NULL), *o = json_object_get(doc, "overall");
        if (o)
            printf("  %s on the validation clips: PSNR %.2f dB, SSIM %.4f, motion ratio %.3f (%lld clips)\n",
                   w ? "Y2 (Stage II)" : "Y1 (Stage I) ", json_number_value(json_object_get(o, "psnr")),
                   json_number_value(json_object_get(o, "ssim")), json_number_value(json_object_get(o, "motion_ratio")),
                   (long long)json_integer_value(json_object_get(doc, "clips_evaluated")));
        json_decref(doc);
    }
    fflush(stdout);
}

// Runs the phases the run still needs; the exit code.
static int go(Coord *C) {
    train_install_signals();
    progress_init(&C->view, "mdgan", 0, 0, 0);
    db_set_notice(C->db, on_db_notice, C);
    if (bind_control(C) != 0 || db_run_set_pid(C->db, C->run_id, (int)getpid()) != 0 ||
        db_run_set_status(C->db, C->run_id, "running") != 0)
        return MDGAN_EXIT_RUNTIME;
    // also of a stage that is done and never starts again to remove them
    remove_dead_temps(C, proc_stage[P_BASE]);
    remove_dead_temps(C, proc_stage[P_REFINE]);
    int r = 0;
    if (C->want_base) r = phase_train(C, P_BASE, NULL);
    if (r == 0 && C->want_refine) r = phase_refine(C);
    if (r == 0) {
        signal_started(C);
        r = phase_predict(C);
        if (train_stop_signal()) r = 1;   // a stop cuts the predictions short; resume redoes them
        else if (r != 0) coord_log(C, "error", "predicting the validation clips failed: %s", mdgan_errmsg());
    }
    const char *status = r == 0 ? "done" : r == 1 ? "stopped" : "failed";
    if (C->view.line_open) fputc('\n', stderr), C->view.line_open = 0;
    coord_log(C, r < 0 ? "error" : "info", "run %s: %s", C->name, status);
    db_run_set_status(C->db, C->run_id, status);
    db_run_set_pid(C->db, C->run_id, 0);
    refresh_report(C);   // with the run's final status
    if (strcmp(db_path(C->db), C->cfg.coord.db) != 0)
        fprintf(stderr, "mdgan: the records of run %s are in %s now (%s was replaced): give `--set coord.db=%s` to "
                "mdgan runs, status, report and resume\n", C->name, db_path(C->db), C->cfg.coord.db, db_path(C->db));
    if (r == 0) print_outputs(C);
    else if (r == 1) fprintf(stderr, "mdgan: continue it with `mdgan resume %s`\n", C->name);
    else fprintf(stderr, "mdgan: see %s/logs/ and `mdgan status %s`; `mdgan resume %s` continues it\n", C->run_dir,
                 C->name, C->name);
    if (r == 1) return train_signal_exit_code(train_stop_signal()) ? train_signal_exit_code(train_stop_signal()) : 143;
    if (r < 0) {
        char cause[1600];
        snprintf(cause, sizeof cause, "%s", C->why[0] ? C->why : mdgan_errmsg());
        MDGAN_ERR("run '%s' failed%s%s", C->name, cause[0] ? ": " : "", cause);
    }
    return r == 0 ? MDGAN_EXIT_OK : MDGAN_EXIT_RUNTIME;
}

// --detach: the coordinator goes on in a child of its own session, its output in
// coord.log; this process returns once the first stage has started.
static int detach_and_go(Coord *C) {
    char log[PATHN + 16];
    snprintf(log, sizeof log, "%s/coord.log", C->run_dir);
    const char *db_path = C->cfg.coord.db;
    db_close(C->db);   // an SQLite connection must not cross a fork
    C->db = NULL;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        MDGAN_ERR("pipe: %s", strerror(errno));
        return MDGAN_EXIT_RUNTIME;
    }
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        MDGAN_ERR("fork: %s", strerror(errno));
        return MDGAN_EXIT_RUNTIME;
    }
    if (pid == 0) {
        close(pfd[0]);
        setsid();
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644), nul = open("/dev/null", O_RDONLY);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        if (nul >= 0) dup2(nul, 0);
        C->started_fd = pfd[1];
        int rc = (C->db = db_open(db_path, 0)) ? go(C) : MDGAN_EXIT_RUNTIME;
        if (rc != 0 && mdgan_errmsg()[0]) fprintf(stderr, "mdgan: %s\n", mdgan_errmsg());
        coord_free(C);
        _exit(rc);
    }
    close(pfd[1]);
    close(C->lock_fd);   // the child holds the lock now
    C->lock_fd = -1;
    char buf[16] = "";
    ssize_t n;
    do n = read(pfd[0], buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    close(pfd[0]);
    if (n <= 0) {
        int st;
        waitpid(pid, &st, 0);
        MDGAN_ERR("the coordinator of run '%s' ended before its first stage started (see %s)", C->name, log);
        return MDGAN_EXIT_RUNTIME;
    }
    printf("%s\n", C->name);
    fprintf(stderr, "mdgan: run %s goes on in the background (coordinator pid %d, log %s);\n"
            "       watch it with `mdgan status %s`, stop it with `mdgan stop %s`\n", C->name, (int)pid, log, C->name,
            C->name);
    return MDGAN_EXIT_OK;
}

static int write_snapshot(Coord *C) {
    snprintf(C->cfg_path, sizeof C->cfg_path, "%s/config.conf", C->run_dir);
    const void *bufs[1] = {C->cfg_text};
    const size_t lens[1] = {strlen(C->cfg_text)};
    return fio_write_atomic(C->cfg_path, bufs, lens, 1);
}

static int parse_stages(Coord *C, const char *stages) {
    if (!stages || !strcmp(stages, "all")) C->want_base = C->want_refine = 1;
    else if (!strcmp(stages, "base")) C->want_base = 1;
    else if (!strcmp(stages, "refine")) C->want_refine = 1;
    else {
        MDGAN_ERR("--stages: '%s' is not base, refine or all", stages);
        return -1;
    }
    return 0;
}

static int name_taken(Coord *C, const char *name) {
    DbRun r;
    int got = db_run_get(C->db, name, &r);
    if (got == 0) db_run_free(&r);
    mdgan_errclear();
    char dir[PATHN * 2];
    snprintf(dir, sizeof dir, "%s/%s", C->cfg.run.dir, name);
    struct stat sb;
    return got == 0 || stat(dir, &sb) == 0;
}

// The stage rows of the processes this run will have, so `mdgan status` lists them.
static void put_pending(Coord *C) {
    for (int k = 0; k < NPROC; k++) {
        if ((k == P_BASE && !C->want_base) || (k != P_BASE && !C->want_refine)) continue;
        if (!C->p[k].status[0]) snprintf(C->p[k].status, sizeof C->p[k].status, "pending");
        proc_put(C, k);
    }
}

static int run_name_ok(const char *name) {
    return name[0] && strlen(name) < 100 && strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                        "0123456789._-") == strlen(name) && name[0] != '.';
}

int coord_run(const CoordRunArgs *a) {
    Coord *C = calloc(1, sizeof *C);
    if (!C) return MDGAN_ERR("out of memory"), MDGAN_EXIT_RUNTIME;
    C->started_fd = -1;
    int rc = MDGAN_EXIT_USAGE;
    if (load_where(&C->cfg, &a->where) != 0 || parse_stages(C, a->stages) != 0) goto done;
    if (a->base_checkpoint && (C->want_base || !C->want_refine)) {
        MDGAN_ERR("--base-checkpoint trains a Refine-Net on a given Base-Net: use it with --stages refine");
        goto done;
    }
    if (!C->want_base && !a->base_checkpoint) {
        MDGAN_ERR("--stages refine needs --base-checkpoint FILE (the Base-Net to refine)");
        goto done;
    }
    if (a->base_checkpoint) {
        if (fio_verify_sha256_sidecar(a->base_checkpoint) != 0) {
            StFile f = {0};
            if (st_open(&f, a->base_checkpoint) != 0) goto done;   // names the file and what is wrong
            st_close(&f);
            mdgan_errclear();
        }
        absolute_path(C->base_ckpt, sizeof C->base_ckpt, a->base_checkpoint);
    }
    snprintf(C->bindir, sizeof C->bindir, "%s", a->bindir);
    // the snapshot names absolute folders, so a resume from anywhere finds them
    Config *c = &C->cfg;
    rc = MDGAN_EXIT_RUNTIME;
    if (fio_mkdir_p(c->run.dir, 0755) != 0) goto done;
    char tmp[PATHN];
    absolute_path(tmp, sizeof tmp, c->run.dir);
    if (set_field(c->run.dir, sizeof c->run.dir, tmp, "run.dir") != 0) goto done;
    absolute_path(tmp, sizeof tmp, c->data.root);
    if (set_field(c->data.root, sizeof c->data.root, tmp, "data.root") != 0) goto done;
    absolute_path(tmp, sizeof tmp, c->coord.db);
    rc = MDGAN_EXIT_USAGE;   // a database that is not ours, or newer, is the user's to fix
    if (set_field(c->coord.db, sizeof c->coord.db, tmp, "coord.db") != 0 || !(C->db = open_db(c, 0))) goto done;
    const char *want = a->name ? a->name : c->run.name;
    if (!run_name_ok(want)) {
        MDGAN_ERR("run name '%s' must be 1-99 letters, digits, '.', '_' or '-', not starting with '.'", want);
        goto done;
    }
    snprintf(C->name, sizeof C->name, "%s", want);
    // The run's row first: of two coordinators that start a run of one name at once,
    // SQLite gives it to one; and one killed before the folder exists leaves a run that
    // `mdgan resume` starts (making the folder), never a folder no run owns.
    for (int i = 2;; i++) {
        if (!name_taken(C, C->name)) {
            rc = MDGAN_EXIT_RUNTIME;
            if (set_field(c->run.name, sizeof c->run.name, C->name, "run.name") != 0 ||
                config_to_text(c, &C->cfg_text) != 0)
                goto done;
            fio_sha256_hex(C->cfg_text, strlen(C->cfg_text), C->cfg_sha);
            if (db_run_create(C->db, C->name, C->cfg_text, C->cfg_sha, &C->run_id) == 0) break;
            if (!strstr(mdgan_errmsg(), "already exists")) goto done;
            free(C->cfg_text);
            C->cfg_text = NULL;
        }
        rc = MDGAN_EXIT_USAGE;
        if (a->name) {
            MDGAN_ERR("a run named '%s' exists already (in %s or %s/%s): `mdgan resume %s` continues it, or choose "
                      "another --name", want, c->coord.db, c->run.dir, want, want);
            goto done;
        }
        snprintf(C->name, sizeof C->name, "%s-%d", want, i);
    }
    mdgan_errclear();
    snprintf(C->run_dir, sizeof C->run_dir, "%s/%s", c->run.dir, C->name);
    rc = MDGAN_EXIT_RUNTIME;
    json_t *opt = json_pack("{s:s, s:s?}", "stages", a->stages ? a->stages : "all", "base_checkpoint",
                            C->base_ckpt[0] ? C->base_ckpt : NULL);
    char *opt_text = json_text(opt);
    json_decref(opt);
    int ok = db_run_set_options(C->db, C->run_id, opt_text) == 0 && fio_mkdir_p(C->run_dir, 0755) == 0;
    free(opt_text);
    if (!ok) goto done;
    if (lock_run(C) != 0) {   // `mdgan resume` of it, meanwhile
        rc = MDGAN_EXIT_USAGE;
        goto done;
    }
    if (write_snapshot(C) != 0) goto done;
    put_pending(C);
    coord_log(C, "info", "run %s created in %s (config sha256 %.12s..., stages %s)", C->name, C->run_dir, C->cfg_sha,
              a->stages ? a->stages : "all");
    rc = a->detach ? detach_and_go(C) : go(C);
done:
    coord_free(C);
    free(C);
    return rc;
}

// Stage processes of an earlier coordinator that are still ending (they save their
// state when they lose it): waited for, then killed, so two never write one run.
static void wait_stale_stages(Coord *C) {
    for (int k = 0; k < NPROC; k++) {
        const int pid = C->p[k].child.pid;
        C->p[k].child.pid = 0;
        if (!pid_alive(pid) || !pid_runs(pid, proc_prog[k])) continue;
        coord_log(C, "info", "%s: waiting for pid %d of the previous coordinator to end", proc_stage[k], pid);
        const double t0 = train_now();
        while (pid_alive(pid) && pid_runs(pid, proc_prog[k]) && train_now() - t0 < 60) usleep(100000);
        if (pid_alive(pid) && pid_runs(pid, proc_prog[k])) {
            coord_log(C, "warn", "%s: pid %d did not end within 60 s: killed", proc_stage[k], pid);
            kill(pid, SIGKILL);
            while (pid_alive(pid) && pid_runs(pid, proc_prog[k])) usleep(50000);
        }
    }
}

// The sets of a resume that may change a run: how it is watched and connected.
static int apply_resume_sets(Config *c, const CoordWhere *w) {
    for (int i = 0; i < w->nsets; i++) {
        const char *s = w->sets[i];
        if (!strncmp(s, "transport.", 10) || !strncmp(s, "coord.", 6) || !strncmp(s, "run.threads=", 12))
            if (config_set(c, s) != 0) return -1;
    }
    return config_validate(c);
}

int coord_resume(const char *run, const CoordRunArgs *a) {
    Coord *C = calloc(1, sizeof *C);
    if (!C) return MDGAN_ERR("out of memory"), MDGAN_EXIT_RUNTIME;
    C->started_fd = -1;
    int rc = MDGAN_EXIT_USAGE;
    Config where;
    DbRun r = {0};
    if (load_where(&where, &a->where) != 0 || !(C->db = open_db(&where, 0))) goto done;
    int got = db_run_get(C->db, run, &r);
    if (got != 0) {
        if (got == 1) MDGAN_ERR("no run named '%s' in %s (`mdgan runs` lists them)", run, where.coord.db);
        rc = got == 1 ? MDGAN_EXIT_USAGE : MDGAN_EXIT_RUNTIME;
        goto done;
    }
    C->run_id = r.id;
    snprintf(C->name, sizeof C->name, "%s", r.name);
    snprintf(C->bindir, sizeof C->bindir, "%s", a->bindir);
    config_defaults(&C->cfg);
    if (config_parse(&C->cfg, r.config, "the run's config snapshot") != 0 || apply_resume_sets(&C->cfg, &a->where) != 0)
        goto done;
    // the run folder: where the snapshot says, else under this command's run.dir
    struct stat sb;
    snprintf(C->run_dir, sizeof C->run_dir, "%s/%s", C->cfg.run.dir, C->name);
    if (stat(C->run_dir, &sb) != 0) {
        char moved[PATHN];
        absolute_path(moved, sizeof moved, where.run.dir);
        if (snprintf(C->run_dir, sizeof C->run_dir, "%s/%s", moved, C->name) >= (int)sizeof C->run_dir) {
            MDGAN_ERR("run.dir %s is too long", moved);
            goto done;
        }
        if (stat(C->run_dir, &sb) == 0) {
            if (set_field(C->cfg.run.dir, sizeof C->cfg.run.dir, moved, "run.dir") != 0) goto done;
        } else if (!strcmp(r.status, "created")) {
            // its coordinator died between recording the run and making its folder
            snprintf(C->run_dir, sizeof C->run_dir, "%s/%s", C->cfg.run.dir, C->name);
            if (fio_mkdir_p(C->run_dir, 0755) != 0) goto done;
        } else {
            MDGAN_ERR("run '%s' has no folder: neither %s/%s nor %s exists (give --set run.dir=DIR, the folder that "
                      "holds it)", C->name, C->cfg.run.dir, C->name, C->run_dir);
            goto done;
        }
    }
    json_t *opt = json_loads(r.options ? r.options : "{}", 0, NULL);
    const char *stages = json_string_value(json_object_get(opt, "stages"));
    const char *bck = json_string_value(json_object_get(opt, "base_checkpoint"));
    snprintf(C->base_ckpt, sizeof C->base_ckpt, "%s", bck ? bck : "");
    int bad = parse_stages(C, stages);
    json_decref(opt);
    if (bad) goto done;
    if (!strcmp(r.status, "done")) {
        fprintf(stderr, "mdgan: run %s is done; nothing to resume (`mdgan report %s` shows it)\n", C->name, C->name);
        rc = MDGAN_EXIT_OK;
        goto done;
    }
    rc = MDGAN_EXIT_RUNTIME;
    if (lock_run(C) != 0) {
        rc = MDGAN_EXIT_USAGE;
        goto done;
    }
    if (config_to_text(&C->cfg, &C->cfg_text) != 0 || write_snapshot(C) != 0) goto done;
    db_stages_list(C->db, C->run_id, load_stage_row, C);
    wait_stale_stages(C);
    for (int k = 0; k < NPROC; k++)   // what was running is not any more
        if (!strcmp(C->p[k].status, "running") || !strcmp(C->p[k].status, "starting")) proc_status(C, k, "stopped");
    put_pending(C);
    coord_log(C, "info", "resuming run %s (it was %s)", C->name, r.status);
    rc = a->detach ? detach_and_go(C) : go(C);
done:
    db_run_free(&r);
    coord_free(C);
    free(C);
    return rc;
}

// ---------------------------------------------------------------- looking at runs

static void format_time(char *out, size_t n, double t) {
    if (t <= 0) {
        snprintf(out, n, "-");
        return;
    }
    time_t s = (time_t)t;
    struct tm tm;
    localtime_r(&s, &tm);
    strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm);
}

// The numbers of a JSON object text as "name value, ..." (at most max of them).
static void format_numbers(char *out, size_t n, const char *json, const char *const *only, int max) {
    out[0] = 0;
    json_t *o = json ? json_loads(json, 0, NULL) : NULL;
    const char *key;
    json_t *v;
    int at = 0, shown = 0;
    json_object_foreach(o, key, v) {
        // a wanted name, or one of its kind ("y2.psnr" for "psnr")
        int want = !only;
        const char *dot = strrchr(key, '.');
        for (int i = 0; only && only[i]; i++) want |= !strcmp(key, only[i]) || (dot && !strcmp(dot + 1, only[i]));
        if (!want || shown == max || at >= (int)n) continue;
        if (json_is_number(v)) at += snprintf(out + at, n - at, "%s%s %.4g", at ? ", " : "", key, json_number_value(v));
        else at += snprintf(out + at, n - at, "%s%s -", at ? ", " : "", key);
        shown++;
    }
    json_decref(o);
    if (!at) snprintf(out, n, "-");
}

// The commands that only look: where the database is (--config, --set), opened read-only.
static Db *open_where_readonly(const CoordWhere *w, Config *c) {
    return load_where(c, w) == 0 ? open_db(c, 1) : NULL;
}

// The folder of a recorded run, from its config snapshot: <run.dir>/<name>.
static int snapshot_run_dir(const DbRun *r, char *out, size_t n) {
    Config rc;
    config_defaults(&rc);
    if (config_parse(&rc, r->config, "the run's config snapshot") != 0) return -1;
    if (snprintf(out, n, "%s/%s", rc.run.dir, r->name) >= (int)n) {
        MDGAN_ERR("the folder of run '%s' (%s/%s) is too long", r->name, rc.run.dir, r->name);
        return -1;
    }
    return 0;
}

static int print_run_row(const DbRunRow *r, void *ctx) {
    (void)ctx;
    static const char *const val[] = {"psnr", "ssim", "val_l1", "motion_ratio", NULL};
    char created[32], updated[32], metrics[256], stage[96];
    format_time(created, sizeof created, r->created);
    format_time(updated, sizeof updated, r->updated);
    format_numbers(metrics, sizeof metrics, r->metrics, val, 4);   // predict's y1.* and y2.* too
    if (r->stage) snprintf(stage, sizeof stage, "%s %lld", r->stage, (long long)r->step);
    else snprintf(stage, sizeof stage, "-");
    char mstage[96] = "";
    if (r->metrics) snprintf(mstage, sizeof mstage, " (%s step %lld)", r->metrics_stage, (long long)r->metrics_step);
    printf("%-20s %-8s %-16s %-19s %-19s %s%s\n", r->name, r->status, stage, created, updated, metrics, mstage);
    return 0;
}

int coord_runs(const CoordWhere *w) {
    Config c;
    Db *db = open_where_readonly(w, &c);
    if (!db) return MDGAN_EXIT_USAGE;
    printf("%-20s %-8s %-16s %-19s %-19s %s\n", "NAME", "STATUS", "STAGE STEP", "STARTED", "UPDATED",
           "LAST VALIDATION");
    int rc = db_runs_list(db, print_run_row, NULL);
    db_close(db);
    return rc == 0 ? MDGAN_EXIT_OK : MDGAN_EXIT_RUNTIME;
}

typedef struct {
    Db *db;
    int64_t run_id;
    FILE *out;
    int running;
} StatusCtx;

static int newest_ckpt(const DbCheckpoint *c, void *ctx) {
    DbCheckpoint *best = ctx;
    if (!c->valid) return 0;
    *best = *c;
    best->path = strdup(c->path);
    return 1;   // newest first: the first valid one
}

static int print_stage(const DbStage *s, void *ctx) {
    StatusCtx *x = ctx;
    char eta[32] = "-", rate[32] = "-", losses[512], beat[32] = "-";
    const int live = !strcmp(s->status, "running") || !strcmp(s->status, "starting");
    x->running |= live;
    if (isfinite(s->rate) && s->rate > 0) {
        snprintf(rate, sizeof rate, "%.2f/s", s->rate);
        if (s->total_steps > s->step && live) format_duration(eta, sizeof eta, (s->total_steps - s->step) / s->rate);
    }
    if (s->heartbeat > 0 && live) snprintf(beat, sizeof beat, "%.0f s ago", difftime(time(NULL), (time_t)s->heartbeat));
    format_numbers(losses, sizeof losses, s->losses, NULL, 8);
    DbCheckpoint ck = {0};
    db_ckpts_list(x->db, x->run_id, s->stage, newest_ckpt, &ck);
    char pid[16] = "-";
    if (s->pid) snprintf(pid, sizeof pid, "%d", s->pid);
    char steps[48];
    snprintf(steps, sizeof steps, "%lld/%lld", (long long)s->step, (long long)s->total_steps);
    fprintf(x->out, "  %-7s %-8s pid %-8s step %-13s %-9s ETA %-9s restarts %d  heard %s\n", s->stage, s->status, pid,
            strcmp(s->stage, "serve") ? steps : "-", rate, eta, s->restarts, beat);
    if (strcmp(s->stage, "serve") != 0) fprintf(x->out, "          losses: %s\n", losses);
    if (ck.path) fprintf(x->out, "          checkpoint: step %lld, %s\n", (long long)ck.step, ck.path);
    if (s->exit_status && !live) fprintf(x->out, "          ended: %s\n", s->exit_status);
    free((char *)ck.path);
    return 0;
}

typedef struct {
    char lines[6][600];
    int n;
} LastEvents;

static int keep_event(double t, const char *level, const char *text, void *ctx) {
    LastEvents *e = ctx;
    char when[32];
    format_time(when, sizeof when, t);
    if (e->n == 6) memmove(e->lines[0], e->lines[1], sizeof e->lines[0] * 5), e->n = 5;
    snprintf(e->lines[e->n++], sizeof e->lines[0], "%s %-5s %.540s", when + 11, level, text);
    return 0;
}

// One screen of the run's state; 1 while it runs, 0 when it does not, -1 on error.
static int print_status(Db *db, const char *name, FILE *out) {
    DbRun r;
    int got = db_run_get(db, name, &r);
    if (got != 0) return -1;
    char created[32], updated[32];
    format_time(created, sizeof created, r.created);
    format_time(updated, sizeof updated, r.updated);
    const int alive = r.pid && pid_alive(r.pid);
    fprintf(out, "run %s: %s%s (started %s, updated %s)", r.name, r.status,
            !strcmp(r.status, "running") && !alive ? " (its coordinator is gone: `mdgan resume` it)" : "", created,
            updated);
    if (alive) fprintf(out, ", coordinator pid %d", r.pid);
    fprintf(out, "\n");
    StatusCtx x = {db, r.id, out, 0};
    db_stages_list(db, r.id, print_stage, &x);
    LastEvents ev = {0};
    db_events_list(db, r.id, keep_event, &ev);
    fprintf(out, "  events:\n");
    for (int i = 0; i < ev.n; i++) fprintf(out, "    %s\n", ev.lines[i]);
    const int running = !strcmp(r.status, "running") && alive;
    db_run_free(&r);
    return running;
}

int coord_status(const CoordWhere *w, const char *run, int live) {
    Config c;
    Db *db = open_where_readonly(w, &c);
    if (!db) return MDGAN_EXIT_USAGE;
    train_install_signals();
    int rc = MDGAN_EXIT_OK;
    for (;;) {
        // the whole screen is drawn into memory first, then written at once
        char *buf = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&buf, &len);
        int st = mem ? print_status(db, run, mem) : -1;
        if (mem) fclose(mem);
        if (st < 0) {
            free(buf);
            rc = strstr(mdgan_errmsg(), "no run named") ? MDGAN_EXIT_USAGE : MDGAN_EXIT_RUNTIME;
            break;
        }
        if (live) fputs("\033[H\033[2J", stdout);
        fwrite(buf, 1, len, stdout);
        free(buf);
        if (live && st == 1) {
            char now[32];
            format_time(now, sizeof now, (double)time(NULL));
            printf("\n(live, every second, %s; Ctrl-C leaves)\n", now + 11);
        }
        fflush(stdout);
        if (!live || st == 0 || train_stop_signal()) break;
        for (int i = 0; i < 10 && !train_stop_signal(); i++) usleep(100000);
        if (train_stop_signal()) break;
    }
    db_close(db);
    return rc;
}

int coord_stop(const CoordWhere *w, const char *run, double wait_s) {
    Config c;
    Db *db = open_where_readonly(w, &c);
    if (!db) return MDGAN_EXIT_USAGE;
    DbRun r;
    int got = db_run_get(db, run, &r);
    if (got != 0) {
        db_close(db);
        return got == 1 ? MDGAN_EXIT_USAGE : MDGAN_EXIT_RUNTIME;
    }
    int rc = MDGAN_EXIT_OK;
    if (!r.pid || !pid_alive(r.pid) || !pid_runs(r.pid, "mdgan")) {
        printf("run %s is not running (status %s)\n", r.name, r.status);
    } else if (kill(r.pid, SIGTERM) != 0) {
        MDGAN_ERR("cannot signal the coordinator of run '%s' (pid %d): %s", r.name, r.pid, strerror(errno));
        rc = MDGAN_EXIT_RUNTIME;
    } else {
        fprintf(stderr, "mdgan: asked the coordinator of %s (pid %d) to stop; each stage writes a checkpoint\n",
                r.name, r.pid);
        const double t0 = train_now();
        while (pid_alive(r.pid) && pid_runs(r.pid, "mdgan") && train_now() - t0 < wait_s) usleep(100000);
        if (pid_alive(r.pid) && pid_runs(r.pid, "mdgan")) {
            MDGAN_ERR("the coordinator of run '%s' (pid %d) has not stopped within %.0f s; it goes on stopping "
                      "(`mdgan status %s`)", r.name, r.pid, wait_s, r.name);
            rc = MDGAN_EXIT_RUNTIME;
        } else {
            DbRun after;
            if (db_run_get(db, run, &after) == 0) {
                printf("run %s: %s (`mdgan resume %s` continues it)\n", after.name, after.status, after.name);
                db_run_free(&after);
            }
        }
    }
    db_run_free(&r);
    db_close(db);
    return rc;
}

int coord_report(const CoordWhere *w, const char *const *runs, int nruns, const char *out_dir) {
    Config c;
    Db *db = open_where_readonly(w, &c);
    if (!db) return MDGAN_EXIT_USAGE;
    char def[PATHN * 2];
    if (!out_dir) {
        DbRun r;
        char dir[PATHN * 2 - 16];
        int got = db_run_get(db, runs[0], &r), bad = got == 0 && snapshot_run_dir(&r, dir, sizeof dir) != 0;
        if (got == 0) db_run_free(&r);
        if (got != 0 || bad) {
            db_close(db);
            return bad ? MDGAN_EXIT_RUNTIME : MDGAN_EXIT_USAGE;
        }
        snprintf(def, sizeof def, "%s/report", dir);
        out_dir = def;
    }
    int rc = report_write(db, runs, nruns, NULL, out_dir);
    db_close(db);
    if (rc != 0) return strstr(mdgan_errmsg(), "no run named") ? MDGAN_EXIT_USAGE : MDGAN_EXIT_RUNTIME;
    printf("report: %s/index.html\n", out_dir);
    return MDGAN_EXIT_OK;
}

// The run of a checkpoint, from its metadata.
static int ckpt_run_name(const char *path, char *out, size_t n) {
    StFile f = {0};
    if (st_open(&f, path) != 0) return -1;
    const char *run = st_meta_get(&f, "run");
    snprintf(out, n, "%s", run ? run : "");
    st_close(&f);
    return 0;
}

int coord_refine(const CoordWhere *w, const char *run, const char *checkpoint, const char *input,
                 const char *out, const char *bindir) {
    Config c;
    if (load_where(&c, w) != 0) return MDGAN_EXIT_USAGE;
    Coord *C = calloc(1, sizeof *C);
    if (!C) return MDGAN_ERR("out of memory"), MDGAN_EXIT_RUNTIME;
    C->started_fd = -1;
    C->cfg = c;
    int rc = MDGAN_EXIT_USAGE;
    char ckpt[PATHN] = "", name[128] = "";
    struct stat sb;
    if (stat(input, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        MDGAN_ERR("--input %s is not a folder of clips", input);
        goto done;
    }
    if (checkpoint) {
        if (ckpt_run_name(checkpoint, name, sizeof name) != 0) goto done;
        absolute_path(ckpt, sizeof ckpt, checkpoint);
    } else {
        snprintf(name, sizeof name, "%s", run);
    }
    // the job is the run's when the database knows it (a checkpoint of elsewhere has none)
    DbRun r = {0};
    struct stat dbs;
    if (name[0] && stat(c.coord.db, &dbs) == 0 && (C->db = open_db(&c, 0)) && db_run_get(C->db, name, &r) == 0) {
        C->run_id = r.id;
        snprintf(C->name, sizeof C->name, "%s", r.name);
        int bad = snapshot_run_dir(&r, C->run_dir, sizeof C->run_dir) != 0;
        db_run_free(&r);
        if (bad) {
            rc = MDGAN_EXIT_RUNTIME;
            goto done;
        }
    } else if (run) {
        if (!mdgan_errmsg()[0]) MDGAN_ERR("no run named '%s' in %s", run, c.coord.db);
        goto done;
    }
    mdgan_errclear();
    if (!checkpoint && pick_checkpoint(C, "refine", ckpt, sizeof ckpt) != 0) {
        if (!mdgan_errmsg()[0]) MDGAN_ERR("run '%s' has no Refine-Net checkpoint that verifies", run);
        goto done;
    }
    char prog[PATHN + 32], threads[16];
    snprintf(prog, sizeof prog, "%s/mdgan-refine", bindir);
    snprintf(threads, sizeof threads, "%d", c.run.threads);
    char *argv[] = {prog, "infer", "--checkpoint", ckpt, "--input", (char *)input, "--out", (char *)out,
                    "--threads", threads, NULL};
    int64_t job = 0;
    rc = MDGAN_EXIT_RUNTIME;
    if (C->db && C->run_id && db_job_add(C->db, C->run_id, "refine", input, out, &job) != 0) goto done;
    if (!job) fprintf(stderr, "mdgan: %s belongs to no run of %s: the job is not recorded\n", ckpt, c.coord.db);
    Child ch;
    if (child_start(&ch, "mdgan-refine", argv, NULL) != 0) goto done;
    int st;
    while (waitpid(ch.pid, &st, 0) < 0 && errno == EINTR) {}
    ch.status = st, ch.running = 0;
    char how[256];
    child_describe(&ch, how, sizeof how);
    const int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (job) db_job_finish(C->db, job, ok ? "done" : "failed", ok ? NULL : how);
    if (!ok) {
        MDGAN_ERR("%s", how);
        rc = WIFEXITED(st) && WEXITSTATUS(st) == 2 ? MDGAN_EXIT_USAGE : MDGAN_EXIT_RUNTIME;
        goto done;
    }
    rc = MDGAN_EXIT_OK;
done:
    coord_free(C);
    free(C);
    return rc;
}
