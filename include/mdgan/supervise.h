#ifndef MDGAN_SUPERVISE_H
#define MDGAN_SUPERVISE_H
// Child processes of the coordinator (DESIGN.md section 4): started with fork + exec,
// their pid kept, reaped with waitpid, their end reported in words ("mdgan-refine
// killed by SIGKILL", not "status 9"). A child dies with its parent
// (PR_SET_PDEATHSIG), so no stage trains on unsupervised when the coordinator is gone.
#include <stddef.h>
#include <sys/types.h>

typedef struct {
    char name[64];      // for messages, e.g. "mdgan-refine"
    pid_t pid;          // 0 when none was started
    int running;
    int status;         // waitpid status once it ended
} Child;

// Starts argv[0] (a path; argv ends with NULL) as name. Its stdout and stderr are
// appended to log_path (NULL: inherited). On the parent's death the child gets
// SIGTERM. -1 with a message naming the program when it cannot be started (exec
// failures included: they are reported back through a close-on-exec pipe).
int child_start(Child *c, const char *name, char *const argv[], const char *log_path);
// Without blocking: 1 when the child has ended (status kept), 0 while it runs, -1 on error.
int child_poll(Child *c);
// SIGTERM, then SIGKILL after grace_s seconds; reaps it. 0, or -1 if none ran.
int child_stop(Child *c, double grace_s);
// "NAME exited normally", "NAME exited with status 2", "NAME killed by SIGKILL",
// "NAME is running (pid N)".
void child_describe(const Child *c, char *buf, size_t n);

#endif
