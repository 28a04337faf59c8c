// mdgan-base train / infer and mdgan eval as real processes on synthetic clips:
// loss falls and every output is written; a SIGKILLed run resumed ends bit-identical
// to one never interrupted; SIGTERM stops cleanly; damaged checkpoints, bad configs
// and bad data get clear errors.
#include "testproc.h"

#include "mdgan/fileio.h"
#include "mdgan/train.h"

#include "mdgan/error.h"

static char tmp[512], data[600];
static char out[65536];

// Tiny and fast: 8 frames of 32x32, widths 4, batch 2; 10 clips in 5 videos.
#define TINY "--set data.frames=8 --set data.size=32 --set base.ngf=4 --set base.ndf=4 --set base.batch=2 " \
             "--set run.threads=2 --set data.val_fraction=0.2 --set base.lr=1e-3"

static int setup(void **state) {
    (void)state;
    make_tmpdir(tmp, sizeof tmp);
    snprintf(data, sizeof data, "%s/data", tmp);
    int rc = run_cmd(out, sizeof out, "%s/mdgan data synth --out %s --clips 10 --frames 8 --size 32 --per-video 2",
                     bin_dir(), data);
    if (rc != 0) {
        fprintf(stderr, "data synth failed (%d): %s\n", rc, out);
        return -1;
    }
    return 0;
}
static int teardown(void **state) {
    (void)state;
    rm_rf(tmp);
    return 0;
}

// Runs train with extra arguments; returns the exit code, output in `out`.
static int train(const char *run, const char *extra) {
    return run_cmd(out, sizeof out, "%s/mdgan-base train " TINY " --set data.root=%s --set run.dir=%s "
                   "--set run.name=%s %s", bin_dir(), data, tmp, run, extra);
}

static double jsonl_val_l1(const char *path, int last) {
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("no %s", path);
    char line[1024];
    double v = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"val_l1\": ");
        if (p) {
            v = atof(p + 10);
            if (!last) break;
        }
    }
    fclose(f);
    return v;
}

static void test_trains_and_writes_outputs(void **state) {
    (void)state;
    int rc = train("fresh", "--steps 24 --set base.ckpt_every=8 --set base.sample_every=12 --set base.keep=2");
    if (rc != 0) fail_msg("train exited %d:\n%s", rc, out);
    printf("%s", strstr(out, "step 24/24 done") ? strstr(out, "step 24/24 done") : out);
    // checkpoints every 8 steps, the newest 2 kept, each with its sha256
    assert_true(exists("%s/fresh/checkpoints/base_step_00000024.safetensors", tmp));
    assert_true(exists("%s/fresh/checkpoints/base_step_00000024.safetensors.sha256", tmp));
    assert_true(exists("%s/fresh/checkpoints/base_step_00000016.safetensors", tmp));
    assert_false(exists("%s/fresh/checkpoints/base_step_00000008.safetensors", tmp));
    assert_false(exists("%s/fresh/checkpoints/base_step_00000008.safetensors.sha256", tmp));
    // samples and metrics at steps 0, 12, 24
    const char *kinds[] = {"png", "gif", "json"};
    for (int s = 0; s <= 24; s += 12)
        for (int k = 0; k < 3; k++)
            if (!exists("%s/fresh/samples/%s_%08d.%s", tmp, k == 2 ? "base_metrics_step" : "base_step", s, kinds[k]))
                fail_msg("missing sample %s at step %d", kinds[k], s);
    // the validation L1 falls
    char jsonl[1024];
    snprintf(jsonl, sizeof jsonl, "%s/fresh/base_metrics.jsonl", tmp);
    double first = jsonl_val_l1(jsonl, 0), last = jsonl_val_l1(jsonl, 1);
    printf("    validation L1: step 0 %.4f, step 24 %.4f\n", first, last);
    assert_true(first > 0);
    assert_true(last < first);
    // the progress line has a rate and an ETA
    assert_non_null(strstr(out, "clips/s"));
    assert_non_null(strstr(out, "ETA"));
}

static void test_kill_and_resume_is_exact(void **state) {
    (void)state;
    // A run without an end, SIGKILLed mid-step some time after its step-6 checkpoint.
    char run_dir[1024], ck6[1200], log[1200];
    snprintf(run_dir, sizeof run_dir, "%s/killed", tmp);
    snprintf(ck6, sizeof ck6, "%s/checkpoints/base_step_00000006.safetensors.sha256", run_dir);
    snprintf(log, sizeof log, "%s/killed.log", tmp);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s/mdgan-base train " TINY " --set data.root=%s --set run.dir=%s --set run.name=killed "
             "--steps 100000 --set base.ckpt_every=3 --set base.sample_every=3 >%s 2>&1", bin_dir(), data, tmp, log);
    pid_t pid = spawn(cmd);
    for (int i = 0; i < 6000 && !exists("%s", ck6); i++) usleep(10000);
    assert_true(exists("%s", ck6));
    usleep(7000); // somewhere in step 7 or later: mid-step
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    // However far it got, resume it to a few steps past its newest checkpoint, and run
    // the same number of steps in one go for reference.
    char latest[2048], ckpt_dir[1100];
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s/checkpoints", run_dir);
    assert_int_equal(train_ckpt_latest(latest, sizeof latest, ckpt_dir, "base"), 0);
    StFile f;
    if (st_open(&f, latest) != 0) fail_msg("%s", mdgan_errmsg());
    const long target = atol(st_meta_get(&f, "step")) + 4;
    st_close(&f);
    char steps[128];
    snprintf(steps, sizeof steps, "--steps %ld --set base.ckpt_every=3 --set base.sample_every=3", target);
    int rc = train("straight", steps);
    if (rc != 0) fail_msg("train exited %d:\n%s", rc, out);
    rc = run_cmd(out, sizeof out, "%s/mdgan-base train --resume %s --steps %ld", bin_dir(), run_dir, target);
    if (rc != 0) fail_msg("resume exited %d:\n%s", rc, out);
    const char *resumed = strstr(out, "resumed from");
    assert_non_null(resumed);
    printf("    killed mid-run, then %.*s, to step %ld\n", (int)strcspn(resumed, "\n"), resumed, target);
    char a[1200], b[1200];
    snprintf(a, sizeof a, "%s/straight/checkpoints/base_step_%08ld.safetensors", tmp, target);
    snprintf(b, sizeof b, "%s/checkpoints/base_step_%08ld.safetensors", run_dir, target);
    expect_same_checkpoint(a, b);
    // and the metrics log holds each evaluation once, as the uninterrupted run's does:
    // the lines the lost part wrote are dropped on resume, a missing one is redone
    snprintf(a, sizeof a, "%s/straight/base_metrics.jsonl", tmp);
    snprintf(b, sizeof b, "%s/base_metrics.jsonl", run_dir);
    unsigned char *la, *lb;
    size_t na, nb;
    if (fio_read_all(a, &la, &na) != 0 || fio_read_all(b, &lb, &nb) != 0) fail_msg("%s", mdgan_errmsg());
    if (na != nb || memcmp(la, lb, na) != 0) fail_msg("metrics logs differ:\n%s\n--- resumed:\n%s", la, lb);
    free(la), free(lb);
}

// The bits do not depend on the thread count: 5 steps on 1 thread, resumed on 3 threads
// to step 10, end where 10 steps on 2 threads do.
static void test_resume_on_other_threads(void **state) {
    (void)state;
    int rc = train("threads_ref", "--steps 10 --set base.sample_every=100");
    if (rc != 0) fail_msg("train exited %d:\n%s", rc, out);
    rc = train("threads", "--steps 5 --set base.sample_every=100 --set run.threads=1");
    if (rc != 0) fail_msg("train exited %d:\n%s", rc, out);
    rc = run_cmd(out, sizeof out, "%s/mdgan-base train --resume %s/threads --set run.threads=3 --steps 10", bin_dir(),
                 tmp);
    if (rc != 0) fail_msg("resume on 3 threads exited %d:\n%s", rc, out);
    char a[1200], b[1200];
    snprintf(a, sizeof a, "%s/threads_ref/checkpoints/base_step_00000010.safetensors", tmp);
    snprintf(b, sizeof b, "%s/threads/checkpoints/base_step_00000010.safetensors", tmp);
    expect_same_checkpoint(a, b);
}

// The metrics log on resume: later steps and a cut-short last line go, the rest stays.
// A run begun by an older version kept its metrics log as metrics.jsonl: resume renames
// it and goes on appending there.
static void test_resume_renames_legacy_log(void **state) {
    (void)state;
    int rc = train("legacy", "--steps 4 --set base.sample_every=2");
    if (rc != 0) fail_msg("train exited %d:\n%s", rc, out);
    char a[1200], b[1200];
    snprintf(a, sizeof a, "%s/legacy/base_metrics.jsonl", tmp);
    snprintf(b, sizeof b, "%s/legacy/metrics.jsonl", tmp);
    assert_int_equal(rename(a, b), 0);
    rc = run_cmd(out, sizeof out, "%s/mdgan-base train --resume %s/legacy --steps 6", bin_dir(), tmp);
    if (rc != 0) fail_msg("resume exited %d:\n%s", rc, out);
    assert_non_null(strstr(out, "renamed"));
    assert_true(exists("%s", a));
    assert_false(exists("%s", b));
    assert_true(jsonl_val_l1(a, 0) > 0);
}

static void test_log_truncate(void **state) {
    (void)state;
    char path[1200];
    snprintf(path, sizeof path, "%s/truncate.jsonl", tmp);
    const char *text = "{\"step\": 0, \"val_l1\": 0.5}\n{\"step\": 3, \"val_l1\": 0.4}\n"
                       "{\"step\": 6, \"val_l1\": 0.3}\nnot a step line\n{\"step\": 9, \"val_l1\": 0.2}\n"
                       "{\"step\": 12, \"val";
    const char *want = "{\"step\": 0, \"val_l1\": 0.5}\n{\"step\": 3, \"val_l1\": 0.4}\n"
                       "{\"step\": 6, \"val_l1\": 0.3}\nnot a step line\n";
    const void *bufs[1] = {text};
    size_t len = strlen(text);
    assert_int_equal(fio_write_atomic(path, bufs, &len, 1), 0);
    long last = 0;
    assert_int_equal(train_log_truncate(path, 6, &last), 0);
    assert_int_equal(last, 6);
    unsigned char *got;
    size_t n;
    assert_int_equal(fio_read_all(path, &got, &n), 0);
    assert_string_equal((const char *)got, want);
    free(got);
    // nothing after step 9: untouched; a missing file is no error
    assert_int_equal(train_log_truncate(path, 9, &last), 0);
    assert_int_equal(last, 6);
    snprintf(path, sizeof path, "%s/no-such.jsonl", tmp);
    assert_int_equal(train_log_truncate(path, 3, &last), 0);
    assert_int_equal(last, -1);
    // an empty log stays empty; one cut-short line goes
    const char *cases[2] = {"", "{\"step\": 3, \"val_l1\""};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/short%d.jsonl", tmp, i);
        len = strlen(cases[i]);
        bufs[0] = cases[i];
        assert_int_equal(fio_write_atomic(path, bufs, &len, 1), 0);
        assert_int_equal(train_log_truncate(path, 9, &last), 0);
        assert_int_equal(last, -1);
        assert_int_equal(fio_read_all(path, &got, &n), 0);
        assert_int_equal(n, 0);
        free(got);
    }
}

static void test_sigterm_stops_with_checkpoint(void **state) {
    (void)state;
    char log[1200], cmd[4096];
    snprintf(log, sizeof log, "%s/term.log", tmp);
    snprintf(cmd, sizeof cmd, "%s/mdgan-base train " TINY " --set data.root=%s --set run.dir=%s --set run.name=term "
             "--steps 100000 --set base.ckpt_every=100000 --set base.sample_every=100000 >%s 2>&1", bin_dir(), data, tmp, log);
    pid_t pid = spawn(cmd);
    // wait until it trains (the first progress line), then ask it to stop
    for (int i = 0; i < 6000; i++) {
        FILE *f = fopen(log, "r");
        size_t n = f ? fread(out, 1, sizeof out - 1, f) : 0;
        if (f) fclose(f);
        out[n] = '\0';
        if (strstr(out, "step 10/")) break;
        usleep(10000);
    }
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 143);
    FILE *f = fopen(log, "r");
    size_t n = fread(out, 1, sizeof out - 1, f);
    fclose(f);
    out[n] = '\0';
    assert_non_null(strstr(out, "stopped by signal"));
    const char *p = strstr(out, "checkpoint: ");
    assert_non_null(p);
    char path[1024];
    sscanf(p + 12, "%1023s", path);
    printf("    stopped with %s\n", path);
    StFile ck;
    assert_int_equal(st_open(&ck, path), 0);
    assert_true(atol(st_meta_get(&ck, "step")) >= 10);
    st_close(&ck);
}

static void test_resume_skips_damaged_checkpoint(void **state) {
    (void)state;
    int rc = train("damaged", "--steps 6 --set base.ckpt_every=3 --set base.sample_every=100");
    if (rc != 0) fail_msg("train exited %d:\n%s", rc, out);
    // flip one byte of the newest checkpoint: its sha256 no longer verifies
    char path[1024];
    snprintf(path, sizeof path, "%s/damaged/checkpoints/base_step_00000006.safetensors", tmp);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, -5, SEEK_END);
    int c = fgetc(f);
    fseek(f, -5, SEEK_END);
    fputc(c ^ 0x40, f);
    fclose(f);
    // (--steps 4: a run past step 6 would write a good step-6 checkpoint over the damaged one)
    rc = run_cmd(out, sizeof out, "%s/mdgan-base train --resume %s/damaged --steps 4", bin_dir(), tmp);
    if (rc != 0) fail_msg("resume exited %d:\n%s", rc, out);
    assert_non_null(strstr(out, "warning: skipping checkpoint"));
    assert_non_null(strstr(out, "base_step_00000006.safetensors"));
    assert_non_null(strstr(out, "at step 3"));
    // naming the damaged file directly is an error, not a silent load
    rc = run_cmd(out, sizeof out, "%s/mdgan-base train --resume %s --steps 8", bin_dir(), path);
    printf("    %s", out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, path));
}

static void test_bad_config_and_data(void **state) {
    (void)state;
    char conf[1024];
    snprintf(conf, sizeof conf, "%s/bad.conf", tmp);
    FILE *f = fopen(conf, "w");
    fputs("[run]\nseed = 3\n\n[base]\nbatch = 2\nlearning_rate = 0.1\n", f);
    fclose(f);
    int rc = run_cmd(out, sizeof out, "%s/mdgan-base train --config %s", bin_dir(), conf);
    printf("    %s", out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "bad.conf:6"));
    assert_non_null(strstr(out, "learning_rate"));
    rc = train("x", "--set base.batch=two");
    printf("    %s", out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "base.batch"));
    rc = train("x", "--set base.batch=64");
    printf("    %s", out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "fewer than one batch"));
    // an empty data root
    char empty[1024];
    snprintf(empty, sizeof empty, "%s/empty", tmp);
    mkdir(empty, 0755);
    rc = run_cmd(out, sizeof out, "%s/mdgan-base train " TINY " --set data.root=%s --set run.dir=%s", bin_dir(), empty, tmp);
    printf("    %s", out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, empty));
    // resuming with a config that changes the model is refused, naming the key
    rc = run_cmd(out, sizeof out, "%s/mdgan-base train " TINY " --set data.root=%s --set run.dir=%s --set run.name=fresh "
                 "--set base.ngf=8 --config /dev/null --resume %s/fresh", bin_dir(), data, tmp, tmp);
    printf("    %s", out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "ngf"));
    // a fresh run never overwrites a run folder that has checkpoints
    rc = train("fresh", "--steps 2");
    printf("    %s", out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "already holds base checkpoints"));
}

static void test_corrupt_frame_skips_clip(void **state) {
    (void)state;
    char copy[1024], frame[1200];
    snprintf(copy, sizeof copy, "%s/data_bad", tmp);
    assert_int_equal(run_cmd(out, sizeof out, "cp -r %s %s", data, copy), 0);
    snprintf(frame, sizeof frame, "%s/video_001/clip_002/frame_003.png", copy);
    assert_int_equal(truncate(frame, 60), 0);
    int rc = run_cmd(out, sizeof out, "%s/mdgan-base train " TINY " --set data.root=%s --set run.dir=%s "
                     "--set run.name=badframe --steps 2", bin_dir(), copy, tmp);
    if (rc != 0) fail_msg("train exited %d:\n%s", rc, out);
    assert_non_null(strstr(out, "warning: skipping clip video_001/clip_002"));
    assert_non_null(strstr(out, "frame_003.png"));
    assert_non_null(strstr(out, "(1 skipped)"));
}

static void test_infer_and_eval(void **state) {
    (void)state;
    char ck[1024], y1[1024], json[1024];
    snprintf(ck, sizeof ck, "%s/fresh/checkpoints/base_step_00000024.safetensors", tmp);
    snprintf(y1, sizeof y1, "%s/y1", tmp);
    snprintf(json, sizeof json, "%s/eval.json", tmp);
    int rc = run_cmd(out, sizeof out, "%s/mdgan-base infer --checkpoint %s --data %s --out %s", bin_dir(), ck, data, y1);
    if (rc != 0) fail_msg("infer exited %d:\n%s", rc, out);
    assert_true(exists("%s/video_000/clip_000/frame_00007.png", y1));
    assert_true(exists("%s/video_004/clip_009/frame_00000.png", y1));
    rc = run_cmd(out, sizeof out, "%s/mdgan eval --pred %s --real %s --frames 8 --json %s", bin_dir(), y1, data, json);
    if (rc != 0) fail_msg("eval exited %d:\n%s", rc, out);
    assert_non_null(strstr(out, "overall (10 clips"));
    assert_true(exists("%s", json));
    // a clip against itself: perfect scores
    rc = run_cmd(out, sizeof out, "%s/mdgan eval --pred %s --real %s --frames 8", bin_dir(), data, data);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "SSIM 1.0000 motion ratio 1.000"));
    // a prediction with no real counterpart is named
    rc = run_cmd(out, sizeof out, "mkdir -p %s/extra/clip_x && cp %s/video_000/clip_000/*.png %s/extra/clip_x/ && "
                 "%s/mdgan eval --pred %s --real %s --frames 8", y1, y1, y1, bin_dir(), y1, data);
    printf("    %s", out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "extra/clip_x"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trains_and_writes_outputs),
        cmocka_unit_test(test_kill_and_resume_is_exact),
        cmocka_unit_test(test_resume_on_other_threads),
        cmocka_unit_test(test_log_truncate),
        cmocka_unit_test(test_resume_renames_legacy_log),
        cmocka_unit_test(test_sigterm_stops_with_checkpoint),
        cmocka_unit_test(test_resume_skips_damaged_checkpoint),
        cmocka_unit_test(test_bad_config_and_data),
        cmocka_unit_test(test_corrupt_frame_skips_clip),
        cmocka_unit_test(test_infer_and_eval),
    };
    return cmocka_run_group_tests_name("base_train", tests, setup, teardown);
}
