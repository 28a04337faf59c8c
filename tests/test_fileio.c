// fileio: whole-file reads, atomic durable writes (and that a failed write leaves the
// old file alone), sha256 against the FIPS 180-2 vectors, mkdir -p, sha256 sidecars.
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>

#include "mdgan/fileio.h"

// Content of path must be exactly (data, n).
static void expect_file(const char *path, const void *data, size_t n) {
    unsigned char *buf;
    size_t len;
    if (fio_read_all(path, &buf, &len) != 0) fail_msg("%s", mdgan_errmsg());
    assert_int_equal(len, n);
    assert_memory_equal(buf, data, n);
    free(buf);
}

// The message (printed once) must contain needle.
static void msg_has(const char *m, const char *needle) {
    static char shown[1024];
    if (strcmp(shown, m) != 0) printf("    message: %s\n", m);
    snprintf(shown, sizeof shown, "%s", m);
    if (!strstr(m, needle)) fail_msg("message lacks '%s': %s", needle, m);
}
static void expect_msg_has(const char *needle) { msg_has(mdgan_errmsg(), needle); }

// No "*.tmp.*" file may be left behind in dir.
static void expect_no_temp(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) fail_msg("temporary file left behind: %s/%s", dir, e->d_name);
    closedir(d);
}

static void test_sha256_vectors(void **state) {
    (void)state;
    char hex[65];
    fio_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    fio_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    fio_sha256_hex(two, strlen(two), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

// One million 'a' spans many 64 KiB read chunks, the last one partial.
static void test_sha256_file_streams(void **state) {
    (void)state;
    char dir[4096], path[4200], hex[65];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/a.bin", dir);
    size_t n = 1000000;
    char *a = malloc(n);
    assert_non_null(a);
    memset(a, 'a', n);
    write_bytes_file(path, a, n);
    assert_int_equal(fio_sha256_file(path, hex), 0);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
    snprintf(path, sizeof path, "%s/missing.bin", dir);
    assert_int_equal(fio_sha256_file(path, hex), -1);
    expect_msg_has(path);
    rm_rf(dir);
}

static void test_read_all_roundtrip(void **state) {
    (void)state;
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.bin", dir);
    const void *bufs[3] = {"hello ", "", "world"};
    size_t lens[3] = {6, 0, 5};
    assert_int_equal(fio_write_atomic(path, bufs, lens, 3), 0);
    unsigned char *buf;
    size_t len;
    assert_int_equal(fio_read_all(path, &buf, &len), 0);
    assert_int_equal(len, 11);
    assert_string_equal((char *)buf, "hello world");   // NUL past the end
    free(buf);
    // An empty file reads as an empty, NUL-terminated buffer.
    assert_int_equal(fio_write_atomic(path, bufs, lens, 0), 0);
    assert_int_equal(fio_read_all(path, &buf, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(buf[0], 0);
    free(buf);
    expect_no_temp(dir);
    rm_rf(dir);
}

static void test_read_all_missing(void **state) {
    (void)state;
    unsigned char *buf = (unsigned char *)"x";
    size_t len = 7;
    assert_int_equal(fio_read_all("/nonexistent/mdgan/file.bin", &buf, &len), -1);
    assert_null(buf);
    assert_int_equal(len, 0);
    expect_msg_has("/nonexistent/mdgan/file.bin");
    expect_msg_has(strerror(ENOENT));
    assert_int_equal(fio_read_all("/", &buf, &len), -1);   // a folder
    expect_msg_has(strerror(EISDIR));
}

static void test_write_atomic_replaces(void **state) {
    (void)state;
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/f.txt", dir);
    write_bytes_file(path, "old content", 11);
    const void *b[1] = {"new"};
    size_t l[1] = {3};
    assert_int_equal(fio_write_atomic(path, b, l, 1), 0);
    expect_file(path, "new", 3);
    expect_no_temp(dir);
    rm_rf(dir);
}

// The no-fsync variant (images): the same replace, the same errors.
static void test_write_replace(void **state) {
    (void)state;
    char dir[4096], path[4200], missing[4200];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/f.png", dir);
    snprintf(missing, sizeof missing, "%s/missing/f.png", dir);
    write_bytes_file(path, "old content", 11);
    const void *b[2] = {"ne", "w"};
    size_t l[2] = {2, 1};
    assert_int_equal(fio_write_replace(path, b, l, 2), 0);
    expect_file(path, "new", 3);
    expect_no_temp(dir);
    assert_int_equal(fio_write_replace(missing, b, l, 2), -1);
    expect_msg_has(missing);
    rm_rf(dir);
}

static void test_write_atomic_missing_folder(void **state) {
    (void)state;
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/missing/f.txt", dir);
    const void *b[1] = {"new"};
    size_t l[1] = {3};
    assert_int_equal(fio_write_atomic(path, b, l, 1), -1);
    expect_msg_has(path);
    expect_msg_has(strerror(ENOENT));
    assert_int_equal(access(path, F_OK), -1);
    rm_rf(dir);
}

// Root ignores folder modes, so under root the write runs in a child that has
// dropped to uid/gid 65534 (nobody); the child sends back its message.
static void test_write_atomic_unwritable_folder(void **state) {
    (void)state;
    char dir[4096], path[4200], msg[1024] = "";
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/f.txt", dir);
    write_bytes_file(path, "old content", 11);
    assert_int_equal(chmod(dir, 0555), 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(77);
        const void *b[1] = {"new"};
        size_t l[1] = {3};
        int rc = fio_write_atomic(path, b, l, 1);
        const char *m = mdgan_errmsg();
        ssize_t w = write(fds[1], m, strlen(m));
        _exit(rc == -1 && w >= 0 ? 0 : 1);
    }
    close(fds[1]);
    ssize_t r = read(fds[0], msg, sizeof msg - 1);
    msg[r > 0 ? r : 0] = '\0';
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    chmod(dir, 0755);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77) {
        rm_rf(dir);
        print_message("    cannot drop root privileges: skipped\n");
        skip();
    }
    assert_int_equal(WEXITSTATUS(st), 0);   // the write returned -1
    msg_has(msg, path);
    msg_has(msg, strerror(EACCES));
    expect_file(path, "old content", 11);
    expect_no_temp(dir);
    rm_rf(dir);
}

// The write itself fails half way (file size limit, which binds root too): the
// half-written temporary goes and the old file stays.
static void test_write_atomic_write_fails(void **state) {
    (void)state;
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/f.txt", dir);
    write_bytes_file(path, "old content", 11);
    size_t n = 1 << 16;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'x', n);
    const void *b[3] = {"head", big, big};
    size_t l[3] = {4, n, n};

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 10000;
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);   // get EFBIG instead of dying
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = fio_write_atomic(path, b, l, 3);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);

    assert_int_equal(rc, -1);
    expect_msg_has(path);
    expect_msg_has(strerror(EFBIG));
    expect_file(path, "old content", 11);
    expect_no_temp(dir);
    free(big);
    rm_rf(dir);
}

// rename fails (the target is a non-empty folder): the temporary goes, the folder stays.
static void test_write_atomic_rename_fails(void **state) {
    (void)state;
    char dir[4096], path[4200], inner[4300];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/target", dir);
    snprintf(inner, sizeof inner, "%s/keep", path);
    assert_int_equal(mkdir(path, 0755), 0);
    write_bytes_file(inner, "keep", 4);
    const void *b[1] = {"new"};
    size_t l[1] = {3};
    assert_int_equal(fio_write_atomic(path, b, l, 1), -1);
    expect_msg_has("cannot rename");
    expect_msg_has(path);
    expect_file(inner, "keep", 4);
    expect_no_temp(dir);
    rm_rf(dir);
}

static void test_mkdir_p(void **state) {
    (void)state;
    char dir[4096], path[4200], file[4200];
    struct stat st;
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    assert_int_equal(fio_mkdir_p(path, 0755), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(fio_mkdir_p(path, 0755), 0);   // exists already
    snprintf(path, sizeof path, "%s/a/d/", dir);      // trailing slash
    assert_int_equal(fio_mkdir_p(path, 0755), 0);
    assert_int_equal(stat(path, &st), 0);
    // A file in the way, at the end and in the middle.
    snprintf(file, sizeof file, "%s/a/file", dir);
    write_bytes_file(file, "x", 1);
    assert_int_equal(fio_mkdir_p(file, 0755), -1);
    expect_msg_has(file);
    snprintf(path, sizeof path, "%s/a/file/sub", dir);
    assert_int_equal(fio_mkdir_p(path, 0755), -1);
    expect_msg_has(file);
    assert_int_equal(fio_mkdir_p("", 0755), -1);
    rm_rf(dir);
}

static void test_sidecar_roundtrip(void **state) {
    (void)state;
    char dir[4096], path[4200], side[4300], expect[200], out[4096];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    snprintf(side, sizeof side, "%s.sha256", path);
    write_bytes_file(path, "abc", 3);
    assert_int_equal(fio_write_sha256_sidecar(path, NULL), 0);
    snprintf(expect, sizeof expect,
             "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  ckpt.safetensors\n");
    expect_file(side, expect, strlen(expect));
    assert_int_equal(fio_verify_sha256_sidecar(path), 0);
    // The coreutils tool agrees with the format.
    int rc = run_cmd(out, sizeof out, "cd '%s' && sha256sum -c ckpt.safetensors.sha256", dir);
    printf("    sha256sum -c: %s", out);
    assert_int_equal(rc, 0);
    expect_no_temp(dir);
    rm_rf(dir);
}

static void test_sidecar_flipped_byte(void **state) {
    (void)state;
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    unsigned char data[1000];
    for (int i = 0; i < 1000; i++) data[i] = (unsigned char)(i * 7);
    write_bytes_file(path, data, sizeof data);
    assert_int_equal(fio_write_sha256_sidecar(path, NULL), 0);
    data[517] ^= 0x10;
    write_bytes_file(path, data, sizeof data);
    assert_int_equal(fio_verify_sha256_sidecar(path), -1);
    expect_msg_has(path);
    expect_msg_has("sha256 mismatch");
    rm_rf(dir);
}

static void test_sidecar_bad(void **state) {
    (void)state;
    char dir[4096], path[4200], side[4300];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    snprintf(side, sizeof side, "%s.sha256", path);
    write_bytes_file(path, "abc", 3);
    assert_int_equal(fio_verify_sha256_sidecar(path), -1);   // no sidecar
    expect_msg_has(side);
    write_bytes_file(side, "ba7816bf  ckpt.safetensors\n", 27);     // short digest
    assert_int_equal(fio_verify_sha256_sidecar(path), -1);
    expect_msg_has(side);
    expect_msg_has("not a sha256sum line");
    const char *other = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  other.bin\n";
    write_bytes_file(side, other, strlen(other));
    assert_int_equal(fio_verify_sha256_sidecar(path), -1);
    expect_msg_has("other.bin");
    // Upper-case digest and binary-mode marker are what sha256sum also accepts.
    const char *up = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD *ckpt.safetensors\n";
    write_bytes_file(side, up, strlen(up));
    assert_int_equal(fio_verify_sha256_sidecar(path), 0);
    rm_rf(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_sha256_file_streams),
        cmocka_unit_test(test_read_all_roundtrip),
        cmocka_unit_test(test_read_all_missing),
        cmocka_unit_test(test_write_atomic_replaces),
        cmocka_unit_test(test_write_replace),
        cmocka_unit_test(test_write_atomic_missing_folder),
        cmocka_unit_test(test_write_atomic_unwritable_folder),
        cmocka_unit_test(test_write_atomic_write_fails),
        cmocka_unit_test(test_write_atomic_rename_fails),
        cmocka_unit_test(test_mkdir_p),
        cmocka_unit_test(test_sidecar_roundtrip),
        cmocka_unit_test(test_sidecar_flipped_byte),
        cmocka_unit_test(test_sidecar_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
