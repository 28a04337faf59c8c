// Child processes of the coordinator (include/mdgan/supervise.h).
#include "mdgan/supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mdgan/error.h"

int child_start(Child *c, const char *name, char *const argv[], const char *log_path) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    int log_fd = -1;
    if (log_path && (log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        MDGAN_ERR("cannot open %s for the log of %s: %s", log_path, name, strerror(errno));
        return -1;
    }
    // The child writes errno here if exec fails; a successful exec closes it (CLOEXEC),
    // so the parent reads 0 bytes.
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        MDGAN_ERR("cannot start %s: pipe: %s", name, strerror(errno));
        if (log_fd >= 0) close(log_fd);
        return -1;
    }
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        MDGAN_ERR("cannot start %s: fork: %s", name, strerror(errno));
        close(pipefd[0]), close(pipefd[1]);
        if (log_fd >= 0) close(log_fd);
        return -1;
    }
    if (pid == 0) {
        int err = 0;
        // dies with the parent; if the parent is already gone, do not start at all
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) err = errno ? errno : ESRCH;
        if (!err && log_fd >= 0 && (dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0)) err = errno;
        if (!err) {
            execv(argv[0], argv);
            err = errno;
        }
        ssize_t w = write(pipefd[1], &err, sizeof err);
        (void)w;
        _exit(127);
    }
    close(pipefd[1]);
    if (log_fd >= 0) close(log_fd);
    int err = 0;
    ssize_t r;
    do r = read(pipefd[0], &err, sizeof err);
    while (r < 0 && errno == EINTR);
    close(pipefd[0]);
    if (r == (ssize_t)sizeof err) {
        waitpid(pid, NULL, 0);
        MDGAN_ERR("cannot run %s (%s): %s", name, argv[0], strerror(err));
        return -1;
    }
    c->pid = pid, c->running = 1;
    return 0;
}

int child_poll(Child *c) {
    if (!c->pid) return -1;
    if (!c->running) return 1;
    int st;
    pid_t r = waitpid(c->pid, &st, WNOHANG);
    if (r == 0) return 0;
    if (r < 0) {
        MDGAN_ERR("waitpid on %s (pid %d): %s", c->name, (int)c->pid, strerror(errno));
        return -1;
    }
    c->status = st, c->running = 0;
    return 1;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

int child_stop(Child *c, double grace_s) {
    if (!c->pid) return -1;
    if (child_poll(c) != 0) return 0;
    kill(c->pid, SIGTERM);
    for (int waited = 0; waited < (int)(grace_s * 1000); waited += 20) {
        if (child_poll(c) != 0) return 0;
        sleep_ms(20);
    }
    kill(c->pid, SIGKILL);
    int st;
    while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR) {}
    c->status = st, c->running = 0;
    return 0;
}

void child_describe(const Child *c, char *buf, size_t n) {
    if (!c->pid) snprintf(buf, n, "%s was not started", c->name);
    else if (c->running) snprintf(buf, n, "%s is running (pid %d)", c->name, (int)c->pid);
    else if (WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0) snprintf(buf, n, "%s exited normally", c->name);
    else if (WIFEXITED(c->status)) snprintf(buf, n, "%s exited with status %d", c->name, WEXITSTATUS(c->status));
    else if (WIFSIGNALED(c->status))
        snprintf(buf, n, "%s killed by SIG%s%s", c->name, sigabbrev_np(WTERMSIG(c->status)) ?
                 sigabbrev_np(WTERMSIG(c->status)) : "?", WCOREDUMP(c->status) ? " (core dumped)" : "");
    else snprintf(buf, n, "%s ended with wait status 0x%x", c->name, (unsigned)c->status);
}
