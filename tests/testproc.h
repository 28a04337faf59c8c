#ifndef MDGAN_TESTPROC_H
#define MDGAN_TESTPROC_H
// Helpers of the tests that run the real executables as processes: background
// children that are always killed and reaped, waiting for files, and comparing two
// checkpoints tensor by tensor.
#include <signal.h>

#include "testutil.h"

static inline int exists(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int exists(const char *fmt, ...) {
    char p[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, sizeof p, fmt, ap);
    va_end(ap);
    struct stat st;
    return stat(p, &st) == 0;
}

// Starts `sh -c "exec <cmd>"` in the background; returns its pid.
static inline pid_t spawn(const char *cmd) {
    char full[8300];
    snprintf(full, sizeof full, "exec %s", cmd);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    return pid;
}

// Waits up to seconds for path to exist; 1 when it does.
static inline int wait_for_file(const char *path, double seconds) {
    for (int i = 0; i < (int)(seconds * 100); i++) {
        if (exists("%s", path)) return 1;
        usleep(10000);
    }
    return exists("%s", path);
}

// Waits up to seconds for a child to exit (0: looks once); its wait status, or -1 (still
// running).
static inline int wait_child(pid_t pid, double seconds) {
    int status;
    for (int i = 0;; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0 || i >= (int)(seconds * 100)) return -1;
        usleep(10000);
    }
}

// Sends sig and reaps the child (SIGKILL after 10 s if it is still there); its status.
static inline int stop_child(pid_t pid, int sig) {
    if (pid <= 0) return -1;
    kill(pid, sig);
    int status = wait_child(pid, 10);
    if (status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    return status;
}

// Starts a server (`mdgan-base serve ...`, cmd with its redirections) whose standard
// output goes to ready_file, and waits up to 30 s for its line "serving ENDPOINT"; the
// endpoint goes to ep. Fails the test, naming log, if the server exits or never serves.
static inline pid_t spawn_server(const char *cmd, const char *ready_file, const char *log, char *ep, size_t epn) {
    unlink(ready_file);
    pid_t pid = spawn(cmd);
    for (int i = 0; i < 3000; i++) {
        char buf[4096];
        size_t n = 0;
        FILE *f = fopen(ready_file, "r");
        if (f) {
            n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
        }
        buf[n] = '\0';
        const char *p = strstr(buf, "serving ");
        if (p && strchr(p, '\n')) {
            snprintf(ep, epn, "%.*s", (int)strcspn(p + 8, "\n"), p + 8);
            return pid;
        }
        if (wait_child(pid, 0.01) != -1) fail_msg("the server exited before it served (log %s)", log);
    }
    stop_child(pid, SIGKILL);
    fail_msg("the server did not start within 30 s (log %s)", log);
    return -1;
}

// Every tensor of a equals b's bit for bit, and the step and RNG state agree.
static inline void expect_same_checkpoint(const char *a, const char *b) {
    StFile fa, fb;
    if (st_open(&fa, a) != 0 || st_open(&fb, b) != 0) fail_msg("%s", mdgan_errmsg());
    assert_int_equal(fa.ntensors, fb.ntensors);
    size_t bytes = 0;
    for (int i = 0; i < fa.ntensors; i++) {
        const StTensor *ta = &fa.tensors[i], *tb = st_get(&fb, ta->name);
        if (!tb) fail_msg("%s lacks %s", b, ta->name);
        assert_int_equal(ta->nbytes, tb->nbytes);
        if (memcmp(ta->data, tb->data, ta->nbytes) != 0) fail_msg("tensor %s differs between %s and %s", ta->name, a, b);
        bytes += ta->nbytes;
    }
    assert_string_equal(st_meta_get(&fa, "step"), st_meta_get(&fb, "step"));
    assert_string_equal(st_meta_get(&fa, "rng"), st_meta_get(&fb, "rng"));
    printf("    %d tensors (%zu bytes) identical\n", fa.ntensors, bytes);
    st_close(&fa), st_close(&fb);
}

#endif
