// The fault matrix, files: the disk fills up while a checkpoint is written, and the
// checkpoint folder becomes unwritable while a run goes on. Each time the stage fails
// naming the file and the cause, the coordinator restarts it once, then marks the run
// failed; once the fault is gone `mdgan resume` ends it where an uninterrupted run ends.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include "faults/faultutil.h"

// Stage I only, long enough for a fault to land mid-run; every checkpoint kept (a
// rotation would free the space the disk-full case takes away) and no samples between
// the first and the last step.
#define SCHEDULE "--stages base --set base.epochs=10 --set base.keep=100 --set base.sample_every=1000"

static int group_setup(void **state) { return (void)state, fault_group_setup(SCHEDULE); }

static long recorded_checkpoints(const char *run) {
    char n[32];
    sql_text(F.db, n, sizeof n, "SELECT count(*) FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.name = '%s'",
             run);
    return atol(n);
}

// The run fails (the stage once, then its one restart), saying why in log; then the
// fault is undone and `mdgan resume` ends the run as the reference ended.
static void expect_failed_then_resumed(const char *run, const char *dir, pid_t coord, const char *log, const char *why,
                                       void (*undo)(const char *), const char *undo_arg) {
    const int rc = mdgan_wait(coord, 120);
    undo(undo_arg);
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", F.root, log);
    if (rc != 1) fail_msg("the coordinator exited %d, expected 1 (see %s)", rc, path);
    expect_line(path, why);
    expect_line(path, "checkpoints/base_step_");
    expect_line(path, "coord.max_restarts reached");
    expect_run_status(run, "failed");
    fault_temps_allowed = 1; // the failed write's temporary may be there until the next start
    expect_nothing_lost(F.db, run, dir);   // what was written before the fault
    fault_temps_allowed = 0;
    resume_to_done(F.db, run, NULL);
    expect_nothing_lost(F.db, run, dir);
    expect_same_as(F.db, run, "ref", 0);
}

static void remove_file(const char *path) { assert_int_equal(unlink(path), 0); }

// Disk full: run.dir on a 64 MiB tmpfs; once the first checkpoint is recorded, a file
// takes all but 1 MiB of it, less than one checkpoint (2.3 MB) and more than the logs
// need. The next checkpoint write meets ENOSPC.
static void test_disk_full_during_checkpoint(void **state) {
    (void)state;
    char dir[1200], run_dir[1300], filler[1300];
    snprintf(dir, sizeof dir, "%s/full", F.root);
    assert_int_equal(mkdir(dir, 0755), 0);
    if (mount("tmpfs", dir, "tmpfs", 0, "size=64m") != 0) {
        printf("    cannot mount a tmpfs here (%s): skipped\n", strerror(errno));
        skip();
    }
    snprintf(run_dir, sizeof run_dir, "%s/full", dir);
    snprintf(filler, sizeof filler, "%s/filler", dir);
    pid_t coord = mdgan_bg("full.out", "run --name full " SCHEDULE " --set run.dir=%s --set coord.max_restarts=1", dir);
    if (!WAIT_UNTIL(60, recorded_checkpoints("full") >= 1)) fail_msg("no checkpoint was recorded");
    struct statvfs vfs;
    const off_t leave = 1 << 20;
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0644), err = -1;
    assert_true(fd >= 0);
    // the stage writes meanwhile: what was free a moment ago may be taken by the time
    // the filler asks for it, so measure again and retry
    for (int i = 0; i < 50 && err != 0; i++) {
        assert_int_equal(statvfs(dir, &vfs), 0);
        const off_t avail = (off_t)vfs.f_bavail * (off_t)vfs.f_frsize;
        err = avail > leave ? posix_fallocate(fd, 0, avail - leave) : ENOSPC;
        if (err) usleep(20000);
    }
    assert_int_equal(err, 0);
    close(fd);
    assert_int_equal(statvfs(dir, &vfs), 0);
    printf("    %s: %.1f MiB free after the filler\n", dir, (double)vfs.f_bavail * vfs.f_frsize / 1048576.0);
    expect_failed_then_resumed("full", run_dir, coord, "full.out", "No space left on device", remove_file, filler);
}

// Made unwritable: root ignores file modes, so the folder is made immutable
// (FS_IMMUTABLE_FL, chattr +i: no entry can be created, renamed or removed in it), or,
// where the file system has no such flag, mounted over read-only (EROFS). The test
// first checks that a file really cannot be created there.
static int immutable(const char *dir, int on) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY), flags = 0, rc = -1;
    if (fd >= 0 && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
        flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
        rc = ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    if (fd >= 0) close(fd);
    return rc;
}

static int readonly_mounted;

static void make_writable(const char *dir) {
    if (readonly_mounted) assert_int_equal(umount2(dir, MNT_DETACH), 0);
    else assert_int_equal(immutable(dir, 0), 0);
    readonly_mounted = 0;
}

static void test_checkpoint_folder_unwritable(void **state) {
    (void)state;
    char dir[1300], probe[1400];
    snprintf(dir, sizeof dir, "%s/runs/ro/checkpoints", F.root);
    pid_t coord = mdgan_bg("ro.out", "run --name ro " SCHEDULE " --set coord.max_restarts=1");
    if (!WAIT_UNTIL(60, recorded_checkpoints("ro") >= 1)) fail_msg("no checkpoint was recorded");
    const char *how = "FS_IMMUTABLE_FL (chattr +i)", *why = "Operation not permitted";
    if (immutable(dir, 1) != 0) {
        printf("    chattr +i: %s; a read-only bind mount instead\n", strerror(errno));
        if (mount(dir, dir, NULL, MS_BIND, NULL) != 0 ||
            mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0) {
            printf("    cannot bind-mount here either (%s): skipped\n", strerror(errno));
            stop_child(coord, SIGTERM);
            skip();
        }
        readonly_mounted = 1;
        how = "a read-only bind mount", why = "Read-only file system";
    }
    snprintf(probe, sizeof probe, "%s/probe", dir);
    int fd = open(probe, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) fail_msg("%s did not stop root from creating %s", how, probe);
    printf("    %s made unwritable by %s: creating a file there fails with '%s'\n", dir, how, strerror(errno));
    char run_dir[1300];
    snprintf(run_dir, sizeof run_dir, "%s/runs/ro", F.root);
    expect_failed_then_resumed("ro", run_dir, coord, "ro.out", why, make_writable, dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disk_full_during_checkpoint),
        cmocka_unit_test(test_checkpoint_folder_unwritable),
    };
    return fault_main("test_fault_disk", tests, sizeof tests / sizeof tests[0], group_setup);
}
