// The fault matrix, processes and sockets: a stage that hangs (SIGSTOP) past
// coord.heartbeat_s, one that crashes again and again, SIGKILL while a stage writes a
// sample, the data endpoint's ipc socket or tcp port already taken, and two
// coordinators started on one run at the same moment. Each run ends (on its own or by
// `mdgan resume`) with the weights of an uninterrupted run.
#include <netinet/in.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "faults/faultutil.h"
#include "mdgan/train.h"

// Stage I only, long enough for the faults to land mid-run.
#define BASE_ONLY "--stages base --set base.epochs=10"

static int group_setup(void **state) { return (void)state, fault_group_setup(BASE_ONLY); }

// Watches dir for events of mask on names that hold part; stops the writer (the pid of
// the name's ".tmp.<pid>", else the running stage's) and sends it sig if the write has
// not ended yet (unfinished(dir, name)), else lets it go on to the next one. 1 when the
// signal landed inside a write.
static int kill_mid_write(const char *run, const char *dir, uint32_t mask, const char *part,
                          int (*unfinished)(const char *dir, const char *name), int sig, double seconds) {
    if (!WAIT_UNTIL(30, exists("%s", dir))) return 0;
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    assert_true(fd >= 0);
    assert_true(inotify_add_watch(fd, dir, mask) >= 0);
    int hit = 0, tries = 0;
    const double t0 = train_now();
    while (!hit && train_now() - t0 < seconds) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) continue;
        char buf[4096] __attribute__((aligned(8)));
        ssize_t len = read(fd, buf, sizeof buf);
        for (char *at = buf; len > 0 && at < buf + len && !hit;) {
            const struct inotify_event *ev = (const struct inotify_event *)at;
            at += sizeof *ev + ev->len;
            const char *tmp = ev->len && strstr(ev->name, part) ? strstr(ev->name, ".tmp.") : NULL;
            const int pid = !ev->len || !strstr(ev->name, part) ? 0 : tmp ? atoi(tmp + 5) : running_pid(run, "base", 0);
            if (pid <= 0 || kill(pid, SIGSTOP) != 0) continue;
            tries++;
            if (unfinished(dir, ev->name)) {
                kill(pid, sig);
                kill(pid, SIGCONT);
                hit = 1;
                printf("    SIG%s to pid %d inside the write of %s (try %d)\n", sigabbrev_np(sig), pid, ev->name, tries);
            } else {
                kill(pid, SIGCONT);
            }
        }
    }
    close(fd);
    return hit;
}

// A sample's temporary is still there: the write is not done.
static int temporary_left(const char *dir, const char *name) { return exists("%s/%s", dir, name); }

// A checkpoint has its name but not yet its sidecar: the commit is not done. (The
// sidecar's own rename holds ".safetensors" too: never a hit, its commit is done.)
static int no_sidecar_yet(const char *dir, const char *name) {
    const size_t n = strlen(name);
    if (n >= 7 && strcmp(name + n - 7, ".sha256") == 0) return 0;
    return !exists("%s/%s.sha256", dir, name);
}

// A checkpoint's sidecar is in place: committed, and maybe not yet reported.
static int committed(const char *dir, const char *name) { return (void)dir, (void)name, 1; }

// SIGSTOP to Stage I once it has a checkpoint: with coord.heartbeat_s 2 the coordinator
// kills it after 2 s of silence and restarts it from its newest checkpoint.
static void test_stage_hangs_past_heartbeat(void **state) {
    (void)state;
    pid_t coord = mdgan_bg("hang.out", "run --name hang " BASE_ONLY " --set coord.heartbeat_s=2");
    int pid = 0;
    if (!WAIT_UNTIL(60, (pid = running_pid("hang", "base", 4)) > 0)) fail_msg("Stage I did not run");
    assert_int_equal(kill(pid, SIGSTOP), 0);
    const double t0 = train_now();
    printf("    SIGSTOP to mdgan-base (pid %d)\n", pid);
    int again = 0;
    if (!WAIT_UNTIL(30, (again = running_pid("hang", "base", 0)) > 0 && again != pid))
        fail_msg("the hung stage was not restarted");
    printf("    restarted as pid %d after %.1f s\n", again, train_now() - t0);
    char log[1200];
    expect_exit(coord, "hang.out", 0, log, sizeof log);
    expect_line(log, "silent for");
    expect_line(log, "killed by SIGKILL");
    expect_line(log, "restart 1 of");
    expect_done_like("hang", "ref", 0);
}

// SIGABRT (an abort; ASan would catch a SIGSEGV and exit 1) to Stage I three times,
// each once it has gone 3 steps further, the third the moment a checkpoint's sidecar
// is in place (before the stage can report it): with
// coord.max_restarts 2 the third crash fails the run, and that checkpoint is recorded
// all the same; `mdgan resume` (a new coordinator, a new count) ends the run.
static void test_stage_crashes_repeatedly(void **state) {
    (void)state;
    pid_t coord = mdgan_bg("crash.out", "run --name crash " BASE_ONLY " --set coord.max_restarts=2");
    int last = 0;
    long step = 0;
    char status[32], dir[1200];
    for (int k = 0; k < 3; k++) {
        int pid = 0;
        if (!WAIT_UNTIL(60, (pid = running_pid("crash", "base", step + 3)) > 0 && pid != last))
            fail_msg("Stage I did not run again after crash %d", k);
        step = stage_of("crash", "base", status, sizeof status);
        last = pid;
        if (k < 2) {
            assert_int_equal(kill(pid, SIGABRT), 0);
            printf("    crash %d: SIGABRT to mdgan-base (pid %d) at step %ld\n", k + 1, pid, step);
            continue;
        }
        snprintf(dir, sizeof dir, "%s/runs/crash/checkpoints", F.root);
        if (!kill_mid_write("crash", dir, IN_MOVED_TO, ".safetensors.sha256", committed, SIGABRT, 60))
            fail_msg("no crash landed right after a checkpoint's commit");
    }
    char log[1200];
    expect_exit(coord, "crash.out", 1, log, sizeof log);
    expect_line(log, "killed by SIGABRT");
    expect_line(log, "restart 2 of 2");
    expect_line(log, "coord.max_restarts reached");
    expect_run_status("crash", "failed");
    expect_run_sound("crash");
    resume_to_done(F.db, "crash", NULL);
    expect_done_like("crash", "ref", 0);
}

// A stage SIGKILLed while it writes a sample: the coordinator restarts it, the
// evaluation of that step is made again, and nothing half-written is left.
static void test_sigkill_during_sample_write(void **state) {
    (void)state;
    pid_t coord = mdgan_bg("smp.out", "run --name smp " BASE_ONLY " --set base.sample_every=3");
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/runs/smp/samples", F.root);
    if (!kill_mid_write("smp", dir, IN_CREATE, "g.tmp.", temporary_left, SIGKILL, 60))   // .png.tmp. or .gif.tmp.
        fail_msg("no kill landed inside a sample write");
    char log[1200];
    expect_exit(coord, "smp.out", 0, log, sizeof log);
    expect_line(log, "killed by SIGKILL");
    expect_done_like("smp", "ref", 0);
    // every evaluation of the log has its contact sheet and GIF, whole
    char path[1400], line[4096];
    snprintf(path, sizeof path, "%s/runs/smp/base_metrics.jsonl", F.root);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        const long step = atol(line + strlen("{\"step\": "));
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof path, "%s/base_step_%08ld.%s", dir, step, k ? "gif" : "png");
            unsigned char *b;
            size_t len;
            if (fio_read_all(path, &b, &len) != 0) fail_msg("%s", mdgan_errmsg());
            if (len < 8 || memcmp(b, k ? "GIF89a" : "\x89PNG\r\n\x1a\n", k ? 6 : 8)) fail_msg("%s is not whole", path);
            free(b);
        }
        n++;
    }
    fclose(f);
    printf("    %d evaluations, each with its contact sheet and GIF\n", n);
}

// A stage SIGKILLed between a checkpoint's rename and its sidecar: the coordinator
// finds the checkpoint whole (it is renamed only once written and synced), writes its
// sidecar, records it and restarts the stage from it.
static void test_sigkill_before_checkpoint_sidecar(void **state) {
    (void)state;
    pid_t coord = mdgan_bg("seal.out", "run --name seal " BASE_ONLY);
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/runs/seal/checkpoints", F.root);
    if (!WAIT_UNTIL(60, running_pid("seal", "base", 0) > 0)) fail_msg("Stage I did not run");
    if (!kill_mid_write("seal", dir, IN_MOVED_TO, ".safetensors", no_sidecar_yet, SIGKILL, 60))
        fail_msg("no kill landed between a rename and its sidecar");
    char log[1200];
    expect_exit(coord, "seal.out", 0, log, sizeof log);
    expect_line(log, "killed before the checkpoint's sidecar: written now");
    expect_done_like("seal", "ref", 0);
}

// The uninterrupted run of both stages, for the cases that reach Stage II.
static void full_reference(void) {
    char st[32], out[16384];
    if (sql_text(F.db, st, sizeof st, "SELECT status FROM runs WHERE name = 'ref2'") && !strcmp(st, "done")) return;
    int rc = mdgan(out, sizeof out, "run --name ref2");
    if (rc != 0) fail_msg("the reference run exited %d:\n%s", rc, out);
}

// The run fails at Stage II's start: the server exits 2 (bad input) and is not
// restarted. Once the endpoint is free, `mdgan resume` ends the run.
static void expect_serve_refused(const char *run, pid_t coord, const char *log, const char *why, int squatter) {
    char path[1200];
    const int rc = mdgan_wait(coord, 120);
    close(squatter);
    snprintf(path, sizeof path, "%s/%s", F.root, log);
    if (rc != 1) fail_msg("the coordinator exited %d, expected 1 (see %s)", rc, path);
    expect_line(path, why);
    expect_line(path, "serve: not restarted: it exited with status 2");
    expect_run_status(run, "failed");
    expect_run_sound(run);
    resume_to_done(F.db, run, NULL);
    expect_done_like(run, "ref2", 1);
}

// Another process listens on the run's data socket (ipc) when the Base-Net's server
// starts. The socket file it leaves behind when it closes is stale: the next server
// removes it.
static void test_data_socket_in_use(void **state) {
    (void)state;
    full_reference();
    pid_t coord = mdgan_bg("ipc.out", "run --name ipc");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char sock[1200];
    snprintf(sock, sizeof sock, "%s/runs/ipc/sockets/data.sock", F.root);
    assert_true(strlen(sock) < sizeof sa.sun_path);
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    if (!WAIT_UNTIL(60, running_pid("ipc", "base", 1) > 0)) fail_msg("Stage I did not run");
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    printf("    another process listens on %s\n", sa.sun_path);
    expect_serve_refused("ipc", coord, "ipc.out", "another server is serving on ipc://", fd);
}

// Another process listens on the tcp port of transport.data_endpoint.
static void test_data_port_in_use(void **state) {
    (void)state;
    full_reference();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    printf("    another process listens on 127.0.0.1:%d\n", ntohs(sa.sin_port));
    pid_t coord = mdgan_bg("tcp.out", "run --name tcp --set transport.data_endpoint=tcp://127.0.0.1:%d",
                           ntohs(sa.sin_port));
    expect_serve_refused("tcp", coord, "tcp.out", "Address already in use", fd);
}

// Starts `mdgan ARGS` twice at the same moment: both children wait on one pipe, and
// closing it lets both exec at once. pids[2]; the logs <root>/<log>.0 and .1.
static void mdgan_twice(pid_t pids[2], const char *log, const char *args, const char *second) {
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    for (int k = 0; k < 2; k++) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "exec %s %s %s --config %s >%s/%s.%d 2>&1", F.mdgan, args, k ? second : "", F.conf,
                 F.root, log, k);
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            close(gate[1]);
            char c;
            while (read(gate[0], &c, 1) > 0) {}
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
    }
    close(gate[0]);
    close(gate[1]);   // both go
}

// Of two coordinators started together exactly one runs the run, to its end; the other
// is refused (exit 2), naming why, and starts nothing.
static void expect_one_ran(const char *run, pid_t pids[2], const char *log) {
    int rc[2];
    for (int k = 0; k < 2; k++) rc[k] = mdgan_wait(pids[k], 120);
    printf("    exit codes %d and %d\n", rc[0], rc[1]);
    if (!((rc[0] == 0 && rc[1] == 2) || (rc[0] == 2 && rc[1] == 0))) fail_msg("expected one 0 and one 2");
    const int loser = rc[0] == 2 ? 0 : 1;
    char path[1200], pid[32];
    snprintf(path, sizeof path, "%s/%s.%d", F.root, log, loser);
    snprintf(pid, sizeof pid, "pid %d", (int)pids[!loser]);
    if (!show_line(path, pid)) expect_line(path, "exists already");
    assert_false(show_line(path, "started mdgan-"));
    char n[32], sha[80], file[65];
    sql_text(F.db, n, sizeof n, "SELECT count(*) FROM runs WHERE name = '%s'", run);
    assert_int_equal(atoi(n), 1);
    // the stages ran with the snapshot the database holds, the winner's
    sql_text(F.db, sha, sizeof sha, "SELECT config_sha256 FROM runs WHERE name = '%s'", run);
    snprintf(path, sizeof path, "%s/runs/%s/config.conf", F.root, run);
    assert_int_equal(fio_sha256_file(path, file), 0);
    assert_string_equal(sha, file);
    expect_done_like(run, "ref", 0);
}

// `mdgan run --name` twice at once (the second with another schedule, which shows in
// the snapshot), then (after a stop) `mdgan resume` twice at once.
static void test_two_coordinators_at_once(void **state) {
    (void)state;
    pid_t pids[2];
    mdgan_twice(pids, "two-run", "run --name two " BASE_ONLY, "--set base.keep=4");
    expect_one_ran("two", pids, "two-run");
    pid_t coord = mdgan_bg("two2.out", "run --name two2 " BASE_ONLY);
    if (!WAIT_UNTIL(60, running_pid("two2", "base", 3) > 0)) fail_msg("Stage I of two2 did not run");
    char out[4096];
    assert_int_equal(mdgan(out, sizeof out, "stop two2"), 0);
    assert_int_equal(mdgan_wait(coord, 60), 143);
    expect_run_status("two2", "stopped");
    mdgan_twice(pids, "two-resume", "resume two2", "");
    expect_one_ran("two2", pids, "two-resume");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stage_hangs_past_heartbeat),
        cmocka_unit_test(test_stage_crashes_repeatedly),
        cmocka_unit_test(test_sigkill_during_sample_write),
        cmocka_unit_test(test_sigkill_before_checkpoint_sidecar),
        cmocka_unit_test(test_data_socket_in_use),
        cmocka_unit_test(test_data_port_in_use),
        cmocka_unit_test(test_two_coordinators_at_once),
    };
    return fault_main("test_fault_stage", tests, sizeof tests / sizeof tests[0], group_setup);
}
