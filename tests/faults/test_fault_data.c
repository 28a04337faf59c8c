// The fault matrix, inputs: a dataset file truncated or deleted while Stage I trains,
// and checkpoints whose metadata (or whose link) points outside their run folder.
#include <fcntl.h>
#include <jansson.h>

#include "faults/faultutil.h"

#define BASE_ONLY "--stages base --set base.epochs=10"

static int group_setup(void **state) { return (void)state, fault_group_setup(BASE_ONLY); }

static void copy_file(const char *from, const char *to) {
    unsigned char *b;
    size_t n;
    if (fio_read_all(from, &b, &n) != 0) fail_msg("%s", mdgan_errmsg());
    const void *bufs[1] = {b};
    assert_int_equal(fio_write_replace(to, bufs, &n, 1), 0);
    free(b);
}

// A frame truncated to half (round 1), then another deleted (round 2), each while Stage
// I trains: the running stage goes on (its clips are decoded in memory), and when it is
// SIGKILLed the restarted one reads the data again, skips the clip naming the file, and
// refuses to resume on other data than its checkpoint's (exit 2: not restarted). With
// the file put back, `mdgan resume` ends the run as the uninterrupted one.
static void test_dataset_file_damaged_mid_epoch(void **state) {
    (void)state;
    const char *victims[2] = {"video_000/clip_000/frame_003.png", "video_001/clip_002/frame_005.png"};
    char log[1200], stage_log[1200], out[4096];
    snprintf(stage_log, sizeof stage_log, "%s/runs/data/logs/base.log", F.root);
    // a copy of the data (the same clips): a failure here cannot damage the other cases'
    assert_int_equal(run_cmd(out, sizeof out, "cp -r %s/data %s/data2", F.root, F.root), 0);
    pid_t coord = mdgan_bg("data.out", "run --name data " BASE_ONLY " --set data.root=%s/data2", F.root);
    long step = 0;
    for (int k = 0; k < 2; k++) {
        char path[1200], backup[1300], status[32];
        int pid = 0;
        if (!WAIT_UNTIL(60, (pid = running_pid("data", "base", step + 3)) > 0)) fail_msg("Stage I did not run");
        snprintf(path, sizeof path, "%s/data2/%s", F.root, victims[k]);
        snprintf(backup, sizeof backup, "%s/backup.png", F.root);
        copy_file(path, backup);
        struct stat sb;
        assert_int_equal(stat(path, &sb), 0);
        assert_int_equal(k ? unlink(path) : truncate(path, sb.st_size / 2), 0);
        step = stage_of("data", "base", status, sizeof status);
        printf("    %s %s at step %ld\n", k ? "deleted" : "truncated to half", victims[k], step);
        if (!WAIT_UNTIL(30, stage_of("data", "base", status, sizeof status) >= step + 2))
            fail_msg("the running stage stopped");
        printf("    the running stage went on to step %ld; SIGKILL to it\n", stage_of("data", "base", status, sizeof status));
        kill(pid, SIGKILL);
        expect_exit(coord, "data.out", 1, log, sizeof log);
        char clip[64];
        snprintf(clip, sizeof clip, "skipping clip %.*s", (int)(strrchr(victims[k], '/') - victims[k]), victims[k]);
        expect_line(stage_log, clip);
        expect_line(log, "is not the data");
        expect_line(log, "base: not restarted: it exited with status 2");
        expect_run_status("data", "failed");
        expect_run_sound("data");
        copy_file(backup, path);   // the data is put back
        step = stage_of("data", "base", status, sizeof status);
        if (k == 0) coord = mdgan_bg("data.out", "resume data");
    }
    resume_to_done(F.db, "data", NULL);
    expect_done_like("data", "ref", 0);
}

// ---- checkpoints whose metadata points outside their run folder

// A copy of checkpoint src at dst whose metadata has key = value (its sidecar too).
static void craft(const char *src, const char *dst, const char *key, const char *value) {
    unsigned char *b;
    size_t n;
    if (fio_read_all(src, &b, &n) != 0) fail_msg("%s", mdgan_errmsg());
    uint64_t hlen;
    memcpy(&hlen, b, 8);
    json_error_t je;
    json_t *h = json_loadb((const char *)b + 8, hlen, 0, &je);
    assert_non_null(h);
    json_object_set_new(json_object_get(h, "__metadata__"), key, json_string(value));
    char *text = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    uint64_t len = strlen(text);
    const void *bufs[3] = {&len, text, b + 8 + hlen};
    const size_t lens[3] = {8, len, n - 8 - hlen};
    char dir[1300];
    snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(dst, '/') - dst), dst);
    assert_int_equal(fio_mkdir_p(dir, 0755), 0);
    assert_int_equal(fio_write_atomic(dst, bufs, lens, 3), 0);
    assert_int_equal(fio_write_sha256_sidecar(dst, NULL), 0);
    free(text), free(b);
}

// A copy of config text with the line "key = ..." of [section] replaced (caller frees).
static char *config_edit(const char *text, const char *section, const char *key, const char *value) {
    char head[128], want[128], *out = malloc(strlen(text) + strlen(value) + 256);
    snprintf(head, sizeof head, "[%s]\n", section);
    snprintf(want, sizeof want, "\n%s =", key);   // "key =" when empty
    const char *sec = strstr(text, head), *line = sec ? strstr(sec, want) : NULL;
    assert_non_null(line);
    line++;
    sprintf(out, "%.*s%s = %s%s", (int)(line - text), text, key, value, strchr(line, '\n'));
    return out;
}

// A copy of ckpt at dst whose config has [section] key = value.
static void craft_config(const char *ckpt, const char *dst, const char *section, const char *key, const char *value) {
    StFile f;
    if (st_open(&f, ckpt) != 0) fail_msg("%s", mdgan_errmsg());
    char *cfg = config_edit(st_meta_get(&f, "config"), section, key, value);
    st_close(&f);
    craft(ckpt, dst, "config", cfg);
    free(cfg);
}

// A checkpoint's metadata puts the run folder outside the folder it lies in (here
// <root>/elsewhere/evil): `mdgan-base train --resume` without --config refuses it and
// creates nothing there. A server whose checkpoint's config binds its data socket
// outside the run folder, over a file, is refused, and the file is kept; so is a server
// told (--set) to bind over that file.
static void test_checkpoint_metadata_points_outside(void **state) {
    (void)state;
    char ref[4096], dst[1300], out[16384], elsewhere[1200], precious[1200], ep[1400];
    newest_recorded(F.db, "ref", "base", ref, sizeof ref);
    snprintf(elsewhere, sizeof elsewhere, "%s/elsewhere", F.root);
    snprintf(dst, sizeof dst, "%s/victim/checkpoints/base_step_00000050.safetensors", F.root);
    craft_config(ref, dst, "run", "dir", elsewhere);
    craft_config(dst, dst, "run", "name", "evil");
    int rc = run_cmd(out, sizeof out, "%s/mdgan-base train --resume %s --steps 52", bin_dir(), dst);
    printf("    %s", out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "outside the run folder"));
    assert_non_null(strstr(out, elsewhere));
    assert_false(exists("%s", elsewhere));
    rc = run_cmd(out, sizeof out, "%s/mdgan-base train --resume %s/victim --steps 52", bin_dir(), F.root);
    assert_int_equal(rc, 2);
    assert_false(exists("%s", elsewhere));

    snprintf(precious, sizeof precious, "%s/precious.txt", F.root);
    FILE *f = fopen(precious, "w");
    assert_non_null(f);
    fputs("not a socket\n", f);
    fclose(f);
    snprintf(ep, sizeof ep, "ipc://%s", precious);
    snprintf(dst, sizeof dst, "%s/runs/ref/checkpoints/base_step_00000051.safetensors", F.root);
    craft_config(ref, dst, "transport", "data_endpoint", ep);
    rc = run_cmd(out, sizeof out, "timeout 30 %s/mdgan-base serve --checkpoint %s", bin_dir(), dst);
    printf("    %s", strstr(out, "mdgan-base:") ? strstr(out, "mdgan-base:") : out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "transport.data_endpoint"));
    assert_true(exists("%s", precious));
    rc = run_cmd(out, sizeof out, "timeout 30 %s/mdgan-base serve --checkpoint %s --set transport.data_endpoint=%s",
                 bin_dir(), ref, ep);
    printf("    %s", strstr(out, "mdgan-base:") ? strstr(out, "mdgan-base:") : out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "is not a socket"));
    assert_true(exists("%s", precious));
    unlink(dst);
    snprintf(ep, sizeof ep, "%s.sha256", dst);
    unlink(ep);
}

// A link in a run's checkpoints folder to a checkpoint outside it that names the run
// in its metadata: `mdgan resume` neither records nor opens it, and goes on from the
// run's own newest checkpoint.
static void test_checkpoint_link_out_of_run_folder(void **state) {
    (void)state;
    char out[4096], ref[4096], outside[1300], link[1300];
    pid_t coord = mdgan_bg("link.out", "run --name link " BASE_ONLY);
    if (!WAIT_UNTIL(60, running_pid("link", "base", 4) > 0)) fail_msg("Stage I did not run");
    assert_int_equal(mdgan(out, sizeof out, "stop link"), 0);
    assert_int_equal(mdgan_wait(coord, 60), 143);
    newest_recorded(F.db, "ref", "base", ref, sizeof ref);
    snprintf(outside, sizeof outside, "%s/outside/base_step_00000099.safetensors", F.root);
    craft(ref, outside, "run", "link");
    snprintf(link, sizeof link, "%s/runs/link/checkpoints/base_step_00000099.safetensors", F.root);
    assert_int_equal(symlink(outside, link), 0);
    char side[1400], side_to[1400];
    snprintf(side, sizeof side, "%s.sha256", link);
    snprintf(side_to, sizeof side_to, "%s.sha256", outside);
    assert_int_equal(symlink(side_to, side), 0);
    int rc = mdgan(out, sizeof out, "resume link");
    if (rc != 0) fail_msg("mdgan resume exited %d:\n%s", rc, out);
    const char *warn = strstr(out, "lies outside the run folder");
    assert_non_null(warn);
    printf("    > %.*s\n", (int)strcspn(warn, "\n"), warn);
    char got[64];
    assert_false(sql_text(F.db, got, sizeof got, "SELECT id FROM checkpoints WHERE path LIKE '%%step_00000099%%'"));
    unlink(link), unlink(side);
    expect_done_like("link", "ref", 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dataset_file_damaged_mid_epoch),
        cmocka_unit_test(test_checkpoint_metadata_points_outside),
        cmocka_unit_test(test_checkpoint_link_out_of_run_folder),
    };
    return fault_main("test_fault_data", tests, sizeof tests / sizeof tests[0], group_setup);
}
