// Child processes of the coordinator, with real processes: exit statuses and signals
// in words, exec failures reported, logs appended, a stop that escalates to SIGKILL,
// and a child that dies with its parent.
#include "testproc.h"

#include "mdgan/fileio.h"
#include "mdgan/supervise.h"

static char tmp[512];

static int setup(void **state) {
    (void)state;
    make_tmpdir(tmp, sizeof tmp);
    return 0;
}
static int teardown(void **state) {
    (void)state;
    rm_rf(tmp);
    return 0;
}

// Polls until the child has ended (at most 10 s).
static void wait_end(Child *c) {
    for (int i = 0; i < 1000 && child_poll(c) == 0; i++) usleep(10000);
    assert_int_equal(child_poll(c), 1);
}

static void test_exit_and_signal_in_words(void **state) {
    (void)state;
    char log[600], msg[256];
    snprintf(log, sizeof log, "%s/child.log", tmp);
    Child c;
    char *const ok[] = {"/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2", NULL};
    assert_int_equal(child_start(&c, "mdgan-base", ok, log), 0);
    wait_end(&c);
    child_describe(&c, msg, sizeof msg);
    assert_string_equal(msg, "mdgan-base exited normally");
    char *const three[] = {"/bin/sh", "-c", "exit 3", NULL};
    assert_int_equal(child_start(&c, "mdgan-refine", three, log), 0);
    wait_end(&c);
    child_describe(&c, msg, sizeof msg);
    assert_string_equal(msg, "mdgan-refine exited with status 3");
    char *const sleeper[] = {"/bin/sleep", "30", NULL};
    assert_int_equal(child_start(&c, "mdgan-refine", sleeper, NULL), 0);
    child_describe(&c, msg, sizeof msg);
    assert_non_null(strstr(msg, "mdgan-refine is running (pid "));
    kill(c.pid, SIGKILL);
    wait_end(&c);
    child_describe(&c, msg, sizeof msg);
    printf("    %s\n", msg);
    assert_string_equal(msg, "mdgan-refine killed by SIGKILL");
    // both streams went to the log, appended
    unsigned char *text;
    size_t n;
    assert_int_equal(fio_read_all(log, &text, &n), 0);
    assert_non_null(strstr((char *)text, "to-stdout"));
    assert_non_null(strstr((char *)text, "to-stderr"));
    free(text);
}

static void test_exec_failure_reported(void **state) {
    (void)state;
    Child c;
    char *const argv[] = {"/nonexistent/mdgan-base", "train", NULL};
    assert_int_equal(child_start(&c, "mdgan-base", argv, NULL), -1);
    printf("    %s\n", mdgan_errmsg());
    assert_non_null(strstr(mdgan_errmsg(), "/nonexistent/mdgan-base"));
    assert_non_null(strstr(mdgan_errmsg(), "No such file"));
    char log[600];
    snprintf(log, sizeof log, "%s/no/such/folder/x.log", tmp);
    char *const sh[] = {"/bin/sh", "-c", "true", NULL};
    assert_int_equal(child_start(&c, "mdgan-base", sh, log), -1);
    assert_non_null(strstr(mdgan_errmsg(), "no/such/folder/x.log"));
}

// A child that ignores SIGTERM is killed after the grace period.
static void test_stop_escalates(void **state) {
    (void)state;
    Child c;
    char *const stubborn[] = {"/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.1; done", NULL};
    assert_int_equal(child_start(&c, "stubborn", stubborn, NULL), 0);
    usleep(200000);
    assert_int_equal(child_stop(&c, 0.3), 0);
    char msg[256];
    child_describe(&c, msg, sizeof msg);
    printf("    %s\n", msg);
    assert_string_equal(msg, "stubborn killed by SIGKILL");
    char *const polite[] = {"/bin/sleep", "30", NULL};
    assert_int_equal(child_start(&c, "polite", polite, NULL), 0);
    assert_int_equal(child_stop(&c, 5), 0);
    child_describe(&c, msg, sizeof msg);
    assert_string_equal(msg, "polite killed by SIGTERM");
}

// state of a pid from /proc: 0 gone (or a zombie), 1 alive
static int alive(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *close_paren = strrchr(buf, ')');
    return close_paren && close_paren[1] == ' ' && close_paren[2] != 'Z' && close_paren[2] != 'X';
}

// The coordinator dies (SIGKILL): its child gets SIGTERM and ends too.
static void test_child_dies_with_parent(void **state) {
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t middle = fork();
    assert_true(middle >= 0);
    if (middle == 0) {
        Child c;
        char *const sleeper[] = {"/bin/sleep", "60", NULL};
        if (child_start(&c, "sleeper", sleeper, NULL) != 0) _exit(1);
        ssize_t w = write(p[1], &c.pid, sizeof c.pid);
        (void)w;
        pause();
        _exit(0);
    }
    pid_t grandchild = 0;
    assert_int_equal(read(p[0], &grandchild, sizeof grandchild), (ssize_t)sizeof grandchild);
    close(p[0]), close(p[1]);
    assert_true(alive(grandchild));
    kill(middle, SIGKILL);
    waitpid(middle, NULL, 0);
    int gone = 0;
    for (int i = 0; i < 500 && !gone; i++) {
        gone = !alive(grandchild);
        if (!gone) usleep(10000);
    }
    printf("    the child (pid %d) of a SIGKILLed parent %s\n", (int)grandchild, gone ? "ended" : "still runs");
    if (!gone) kill(grandchild, SIGKILL);
    assert_true(gone);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_and_signal_in_words),
        cmocka_unit_test(test_exec_failure_reported),
        cmocka_unit_test(test_stop_escalates),
        cmocka_unit_test(test_child_dies_with_parent),
    };
    return cmocka_run_group_tests_name("supervise", tests, setup, teardown);
}
