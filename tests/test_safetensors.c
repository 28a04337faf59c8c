// safetensors: writer/reader round trip of every dtype (scalar, empty, metadata), the
// exact bytes of a small file, a file written the way Python's safetensors or a hand
// script writes it, one test per malformed header (st_open fails AND the message
// names the file and the tensor), st_read_f32 checks, writer rejections.
#include "testutil.h"

#include <dirent.h>

#include "mdgan/fileio.h"

static char g_dir[4096];   // one temporary folder for the whole program

static int setup(void **state) {
    (void)state;
    make_tmpdir(g_dir, sizeof g_dir);
    return 0;
}
static int teardown(void **state) {
    (void)state;
    rm_rf(g_dir);
    return 0;
}

static void tmp_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_dir, name); }

// A safetensors file written by hand: length, header exactly as given (no padding,
// like a minimal Python writer), then ndata bytes 0, 1, 2, ...
static void write_raw_st(const char *path, uint64_t hlen, const char *header, size_t ndata) {
    size_t jl = strlen(header), n = 8 + jl + ndata;
    unsigned char *b = malloc(n);
    assert_non_null(b);
    memcpy(b, &hlen, 8);
    memcpy(b + 8, header, jl);
    for (size_t i = 0; i < ndata; i++) b[8 + jl + i] = (unsigned char)i;
    write_bytes_file(path, b, n);
    free(b);
}

static void msg_has(const char *needle) {
    const char *m = mdgan_errmsg();
    if (!strstr(m, needle)) fail_msg("message lacks '%s': %s", needle, m);
}

// ---------------------------------------------------------------------------------
// Round trips

static void test_roundtrip_dtypes(void **state) {
    (void)state;
    char path[4200];
    tmp_path(path, sizeof path, "rt.safetensors");
    float f32[6] = {1.5f, -2.25f, 3e-8f, 0.0f, -0.0f, 1e30f};
    double f64[3] = {3.141592653589793, -1e-300, 2.0};
    int64_t i64 = -1234567890123LL;   // a scalar, like num_batches_tracked
    int32_t i32[8] = {1, -2, 3, -4, 5, -6, 7, 2147483647};
    uint8_t u8[5] = {0, 1, 127, 128, 255};
    uint16_t f16[3] = {0x3c00, 0xc000, 0x7bff};   // 1, -2, 65504 as raw half bits
    uint16_t bf16[2] = {0x3f80, 0xbf80};          // 1, -1
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s222[3] = {2, 2, 2}, s5[1] = {5}, s21[2] = {2, 1},
            s03[2] = {0, 3};

    StWriter *w = st_writer_new();
    assert_non_null(w);
    assert_int_equal(st_writer_add_f32(w, "downConv1.weight", 2, s23, f32), 0);
    assert_int_equal(st_writer_add(w, "adam.f64", ST_F64, 1, s3, f64), 0);
    assert_int_equal(st_writer_add(w, "downBN2.num_batches_tracked", ST_I64, 0, NULL, &i64), 0);
    assert_int_equal(st_writer_add(w, "i32", ST_I32, 3, s222, i32), 0);
    assert_int_equal(st_writer_add(w, "u8", ST_U8, 1, s5, u8), 0);
    assert_int_equal(st_writer_add(w, "f16", ST_F16, 1, s3, f16), 0);
    assert_int_equal(st_writer_add(w, "bf16", ST_BF16, 2, s21, bf16), 0);
    assert_int_equal(st_writer_add_f32(w, "empty", 2, s03, NULL), 0);
    assert_int_equal(st_writer_meta(w, "step", "41"), 0);
    assert_int_equal(st_writer_meta(w, "step", "42"), 0);   // the last value wins
    assert_int_equal(st_writer_meta(w, "run", "demo \"quoted\" ünïcode"), 0);
    assert_int_equal(st_writer_save(w, path), 0);
    st_writer_free(w);

    StFile f;
    if (st_open(&f, path) != 0) fail_msg("%s", mdgan_errmsg());
    assert_int_equal(f.ntensors, 8);
    // The data area starts at a multiple of 8 and the padding is spaces.
    uint64_t hlen;
    memcpy(&hlen, f.buf, 8);
    assert_int_equal((8 + hlen) % 8, 0);
    assert_int_equal(f.buf[8 + hlen - 1] == ' ' || f.buf[8 + hlen - 1] == '}', 1);
    // Header order = insertion order, and the data is laid out in that order.
    const char *order[8] = {"downConv1.weight", "adam.f64", "downBN2.num_batches_tracked", "i32",
                            "u8", "f16", "bf16", "empty"};
    const unsigned char *at = f.buf + 8 + hlen;
    for (int i = 0; i < 8; i++) {
        assert_string_equal(f.tensors[i].name, order[i]);
        assert_ptr_equal(f.tensors[i].data, at);
        at += f.tensors[i].nbytes;
    }
    assert_ptr_equal(at, f.buf + f.size);

    const StTensor *t = st_get(&f, "downConv1.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    assert_int_equal(st_numel(t), 6);
    assert_memory_equal(t->data, f32, sizeof f32);
    float back[6];
    assert_int_equal(st_read_f32(&f, "downConv1.weight", back, 2, s23), 0);
    assert_memory_equal(back, f32, sizeof f32);

    t = st_get(&f, "adam.f64");
    assert_int_equal(t->dtype, ST_F64);
    assert_memory_equal(t->data, f64, sizeof f64);
    t = st_get(&f, "downBN2.num_batches_tracked");
    assert_int_equal(t->dtype, ST_I64);
    assert_int_equal(t->ndim, 0);
    assert_int_equal(st_numel(t), 1);
    assert_int_equal(t->nbytes, 8);
    assert_memory_equal(t->data, &i64, 8);
    t = st_get(&f, "i32");
    assert_int_equal(t->dtype, ST_I32);
    assert_int_equal(t->ndim, 3);
    assert_memory_equal(t->data, i32, sizeof i32);
    t = st_get(&f, "u8");
    assert_int_equal(t->dtype, ST_U8);
    assert_memory_equal(t->data, u8, sizeof u8);
    t = st_get(&f, "f16");
    assert_int_equal(t->dtype, ST_F16);
    assert_memory_equal(t->data, f16, sizeof f16);
    t = st_get(&f, "bf16");
    assert_int_equal(t->dtype, ST_BF16);
    assert_memory_equal(t->data, bf16, sizeof bf16);
    t = st_get(&f, "empty");
    assert_int_equal(st_numel(t), 0);
    assert_int_equal(t->nbytes, 0);

    assert_string_equal(st_meta_get(&f, "step"), "42");
    assert_string_equal(st_meta_get(&f, "run"), "demo \"quoted\" ünïcode");
    assert_null(st_meta_get(&f, "absent"));
    mdgan_errclear();
    assert_null(st_get(&f, "absent"));
    assert_string_equal(mdgan_errmsg(), "");   // st_get sets no error
    st_close(&f);
    st_close(&f);   // idempotent
}

// The exact bytes of a tiny file: key order, compact JSON, space padding.
static void test_writer_exact_bytes(void **state) {
    (void)state;
    char path[4200];
    tmp_path(path, sizeof path, "exact.safetensors");
    float x[2] = {1.0f, -2.0f};
    int64_t s2[1] = {2};
    StWriter *w = st_writer_new();
    assert_int_equal(st_writer_meta(w, "format", "pt"), 0);
    assert_int_equal(st_writer_add_f32(w, "x", 1, s2, x), 0);
    assert_int_equal(st_writer_save(w, path), 0);
    st_writer_free(w);

    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t jl = strlen(json), hl = (jl + 7) / 8 * 8;
    unsigned char expect[256];
    uint64_t h64 = hl;
    memcpy(expect, &h64, 8);
    memcpy(expect + 8, json, jl);
    memset(expect + 8 + jl, ' ', hl - jl);
    memcpy(expect + 8 + hl, x, 8);
    unsigned char *got;
    size_t n;
    assert_int_equal(fio_read_all(path, &got, &n), 0);
    assert_int_equal(n, 8 + hl + 8);
    assert_memory_equal(got, expect, n);
    free(got);
}

// A writer with no tensors and no metadata writes "{}" padded to 8: still a valid file.
static void test_writer_empty(void **state) {
    (void)state;
    char path[4200];
    tmp_path(path, sizeof path, "empty.safetensors");
    StWriter *w = st_writer_new();
    assert_int_equal(st_writer_save(w, path), 0);
    st_writer_free(w);
    StFile f;
    if (st_open(&f, path) != 0) fail_msg("%s", mdgan_errmsg());
    assert_int_equal(f.ntensors, 0);
    assert_null(f.meta);
    assert_int_equal(f.size, 16);
    st_close(&f);
}

// More tensors than one writev call takes (IOV_MAX = 1024 on Linux).
static void test_writer_many_tensors(void **state) {
    (void)state;
    char path[4200], name[32];
    tmp_path(path, sizeof path, "many.safetensors");
    enum { NT = 2500 };
    float *v = malloc(NT * 3 * sizeof *v);
    assert_non_null(v);
    for (int i = 0; i < NT * 3; i++) v[i] = (float)i;
    int64_t s3[1] = {3};
    StWriter *w = st_writer_new();
    for (int i = 0; i < NT; i++) {
        snprintf(name, sizeof name, "t%d", i);
        assert_int_equal(st_writer_add_f32(w, name, 1, s3, v + 3 * i), 0);
    }
    assert_int_equal(st_writer_save(w, path), 0);
    st_writer_free(w);
    StFile f;
    if (st_open(&f, path) != 0) fail_msg("%s", mdgan_errmsg());
    assert_int_equal(f.ntensors, NT);
    float got[3];
    for (int i = 0; i < NT; i += 97) {
        snprintf(name, sizeof name, "t%d", i);
        assert_int_equal(st_read_f32(&f, name, got, 1, s3), 0);
        assert_memory_equal(got, v + 3 * i, sizeof got);
    }
    st_close(&f);
    free(v);
}

// Saving over an existing checkpoint replaces it and leaves no temporary behind.
static void test_writer_replaces(void **state) {
    (void)state;
    char path[4200];
    tmp_path(path, sizeof path, "replace.safetensors");
    float a = 1.0f, b = 2.0f;
    for (int k = 0; k < 2; k++) {
        StWriter *w = st_writer_new();
        assert_int_equal(st_writer_add_f32(w, k ? "b" : "a", 0, NULL, k ? &b : &a), 0);
        assert_int_equal(st_writer_save(w, path), 0);
        st_writer_free(w);
    }
    StFile f;
    if (st_open(&f, path) != 0) fail_msg("%s", mdgan_errmsg());
    assert_null(st_get(&f, "a"));
    assert_non_null(st_get(&f, "b"));
    st_close(&f);
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) fail_msg("temporary left behind: %s", e->d_name);
    closedir(d);
}

// As Python writes it: default json.dumps spacing, no padding (header length odd, so
// the data is unaligned), keys not in data order, metadata first.
static void test_python_style_file(void **state) {
    (void)state;
    char path[4200];
    tmp_path(path, sizeof path, "py.safetensors");
    const char *h = "{\"__metadata__\": {\"format\": \"pt\"}, "
                    "\"step\": {\"dtype\": \"I64\", \"shape\": [], \"data_offsets\": [8, 16]}, "
                    "\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}";
    size_t jl = strlen(h);
    assert_int_equal(jl % 2, 1);
    float w[2] = {0.5f, -3.0f};
    int64_t step = 7;
    unsigned char b[512];
    uint64_t h64 = jl;
    memcpy(b, &h64, 8);
    memcpy(b + 8, h, jl);
    memcpy(b + 8 + jl, w, 8);
    memcpy(b + 8 + jl + 8, &step, 8);
    write_bytes_file(path, b, 8 + jl + 16);

    StFile f;
    if (st_open(&f, path) != 0) fail_msg("%s", mdgan_errmsg());
    assert_int_equal(f.ntensors, 2);
    assert_string_equal(st_meta_get(&f, "format"), "pt");
    float got[2];
    int64_t s2[1] = {2};
    assert_int_equal(st_read_f32(&f, "w", got, 1, s2), 0);
    assert_memory_equal(got, w, sizeof w);
    const StTensor *t = st_get(&f, "step");
    assert_int_equal(t->ndim, 0);
    int64_t s;
    memcpy(&s, t->data, 8);
    assert_int_equal(s, 7);
    st_close(&f);
}

// ---------------------------------------------------------------------------------
// One test per malformed file: st_open returns -1, leaves the struct zeroed, and the
// message names the file, the tensor at fault (if any), and what is wrong.

typedef struct {
    const char *name;     // test name
    int64_t hlen;         // header length to write; -1 = strlen(header)
    const char *header;   // NULL: write raw[0..nraw) instead of a file
    size_t ndata;         // data bytes after the header
    const char *tensor;   // must appear as 'tensor' in the message, or NULL
    const char *what;     // must appear in the message
    size_t nraw;
} BadCase;

#define E(x) "{\"w\":" x "}"
#define F32_2 "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"
static const BadCase BAD[] = {
    {"reject_empty_file", 0, NULL, 0, NULL, "too short", 0},
    {"reject_short_file", 0, NULL, 0, NULL, "too short", 5},
    {"reject_header_past_eof", 100, "{}", 0, NULL, "runs past the end", 0},
    {"reject_header_absurd", 1LL << 40, "{}", 0, NULL, "absurd", 0},
    {"reject_not_json", -1, "{\"w\": {\"dtype\": \"F32\",", 8, NULL, "not valid JSON: ", 0},
    {"reject_not_object", -1, "[1, 2]", 0, NULL, "not a JSON object", 0},
    {"reject_duplicate_key", -1, "{\"w\":" F32_2 ",\"w\":" F32_2 "}", 8, NULL, "duplicate", 0},
    {"reject_entry_not_object", -1, E("3"), 0, "w", "not a JSON object", 0},
    {"reject_no_dtype", -1, E("{\"shape\":[2],\"data_offsets\":[0,8]}"), 8, "w", "\"dtype\"", 0},
    {"reject_no_shape", -1, E("{\"dtype\":\"F32\",\"data_offsets\":[0,8]}"), 8, "w", "\"shape\"", 0},
    {"reject_no_offsets", -1, E("{\"dtype\":\"F32\",\"shape\":[2]}"), 8, "w", "\"data_offsets\"", 0},
    {"reject_dtype_not_string", -1, E("{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}"), 8, "w",
     "\"dtype\" is not a string", 0},
    {"reject_shape_not_array", -1, E("{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}"), 8,
     "w", "\"shape\" is not an array", 0},
    {"reject_shape_not_integer", -1, E("{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,8]}"),
     8, "w", "shape[1] is not an integer", 0},
    {"reject_offsets_one_value", -1, E("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}"), 8,
     "w", "\"data_offsets\" is not", 0},
    {"reject_offsets_not_integer", -1, E("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}"),
     8, "w", "\"data_offsets\" is not", 0},
    {"reject_unknown_dtype", -1, E("{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}"), 2, "w",
     "unsupported dtype 'BOOL'", 0},
    {"reject_ndim_over_8", -1,
     E("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}"), 8, "w",
     "9 dimensions", 0},
    {"reject_negative_dim", -1, E("{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}"), 8, "w",
     "negative", 0},
    {"reject_shape_overflow", -1,
     E("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}"), 8, "w",
     "too large", 0},
    {"reject_offsets_past_data", -1, E("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}"),
     12, "w", "data_offsets [8, 16]", 0},
    {"reject_offsets_reversed", -1, E("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}"), 16,
     "w", "data_offsets [8, 0]", 0},
    {"reject_offsets_negative", -1, E("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}"), 16,
     "w", "data_offsets [-8, 0]", 0},
    {"reject_byte_count", -1, E("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}"), 16, "w",
     "needs 12", 0},
    {"reject_overlap", -1,
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "w", "overlap", 0},
    {"reject_meta_not_string", -1, "{\"__metadata__\":{\"step\":5}}", 0, "step", "not a string", 0},
    {"reject_meta_not_object", -1, "{\"__metadata__\":\"x\"}", 0, NULL, "__metadata__ is not", 0},
};

static void test_reject(void **state) {
    const BadCase *c = *state;
    char path[4200], file[64];
    // Not the test's name: the message must say what is wrong, not echo the path.
    snprintf(file, sizeof file, "bad%d.safetensors", (int)(c - BAD));
    tmp_path(path, sizeof path, file);
    if (c->header)
        write_raw_st(path, c->hlen < 0 ? strlen(c->header) : (uint64_t)c->hlen, c->header, c->ndata);
    else
        write_bytes_file(path, "\x10\0\0\0\0", c->nraw);
    StFile f;
    memset(&f, 0x55, sizeof f);
    mdgan_errclear();
    assert_int_equal(st_open(&f, path), -1);
    printf("    message: %s\n", mdgan_errmsg());
    msg_has(path);
    msg_has(c->what);
    if (c->tensor) {
        char q[128];
        snprintf(q, sizeof q, "'%s'", c->tensor);
        msg_has(q);
    }
    assert_null(f.buf);
    assert_null(f.tensors);
    assert_int_equal(f.ntensors, 0);
    st_close(&f);
}

static void test_open_missing(void **state) {
    (void)state;
    StFile f;
    assert_int_equal(st_open(&f, "/nonexistent/x.safetensors"), -1);
    msg_has("/nonexistent/x.safetensors");
    msg_has("No such file");
}

// ---------------------------------------------------------------------------------
// st_read_f32

static void test_read_f32_checks(void **state) {
    (void)state;
    char path[4200], expect[4600];
    tmp_path(path, sizeof path, "model.safetensors");
    int64_t s8[5] = {8, 4, 4, 4, 4}, s16[5] = {16, 4, 4, 4, 4}, s2[1] = {2};
    float *wt = calloc(8 * 4 * 4 * 4 * 4, sizeof *wt);
    double d2[2] = {1, 2};
    StWriter *w = st_writer_new();
    assert_int_equal(st_writer_add_f32(w, "downConv2.weight", 5, s8, wt), 0);
    assert_int_equal(st_writer_add(w, "downBN2.running_var", ST_F64, 1, s2, d2), 0);
    assert_int_equal(st_writer_save(w, path), 0);
    st_writer_free(w);
    StFile f;
    if (st_open(&f, path) != 0) fail_msg("%s", mdgan_errmsg());
    float *dst = malloc(16 * 4 * 4 * 4 * 4 * sizeof *dst);

    assert_int_equal(st_read_f32(&f, "downConv2.weight", dst, 5, s16), -1);
    snprintf(expect, sizeof expect,
             "%s: tensor 'downConv2.weight' has shape [8, 4, 4, 4, 4], the model expects "
             "[16, 4, 4, 4, 4]", path);
    printf("    message: %s\n", mdgan_errmsg());
    assert_string_equal(mdgan_errmsg(), expect);

    assert_int_equal(st_read_f32(&f, "downConv2.weight", dst, 4, s8), -1);   // ndim differs
    msg_has("has shape [8, 4, 4, 4, 4], the model expects [8, 4, 4, 4]");

    float two[2];
    assert_int_equal(st_read_f32(&f, "downBN2.running_var", two, 1, s2), -1);
    printf("    message: %s\n", mdgan_errmsg());
    msg_has(path);
    msg_has("'downBN2.running_var' has dtype F64, the model expects F32");

    assert_int_equal(st_read_f32(&f, "upConv1.weight", two, 1, s2), -1);
    msg_has(path);
    msg_has("no tensor 'upConv1.weight'");

    assert_int_equal(st_read_f32(&f, "downConv2.weight", dst, 5, s8), 0);
    st_close(&f);
    free(dst);
    free(wt);
}

// ---------------------------------------------------------------------------------
// Writer rejections

static void test_writer_rejects(void **state) {
    (void)state;
    float x[2] = {0};
    int64_t s2[1] = {2}, neg[2] = {2, -1}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 2};
    StWriter *w = st_writer_new();
    assert_int_equal(st_writer_add_f32(w, "conv1.weight", 1, s2, x), 0);
    assert_int_equal(st_writer_add_f32(w, "conv1.weight", 1, s2, x), -1);
    msg_has("'conv1.weight'");
    msg_has("twice");
    assert_int_equal(st_writer_add_f32(w, "n", 2, neg, x), -1);
    msg_has("'n'");
    msg_has("negative");
    assert_int_equal(st_writer_add_f32(w, "nine", 9, nine, x), -1);
    msg_has("'nine'");
    assert_int_equal(st_writer_add_f32(w, "__metadata__", 1, s2, x), -1);
    assert_int_equal(st_writer_add_f32(w, "", 1, s2, x), -1);
    assert_int_equal(st_writer_add_f32(w, "bad\xff", 1, s2, x), -1);
    assert_int_equal(st_writer_add_f32(w, "nodata", 1, s2, NULL), -1);
    msg_has("'nodata'");
    assert_int_equal(st_writer_add(w, "dt", (StDtype)99, 1, s2, x), -1);
    assert_int_equal(st_writer_meta(w, "k", "bad\xff"), -1);
    msg_has("'k'");

    // Only the first tensor made it in.
    char path[4200];
    tmp_path(path, sizeof path, "rejects.safetensors");
    assert_int_equal(st_writer_save(w, path), 0);
    StFile f;
    if (st_open(&f, path) != 0) fail_msg("%s", mdgan_errmsg());
    assert_int_equal(f.ntensors, 1);
    st_close(&f);

    tmp_path(path, sizeof path, "no/such/folder/x.safetensors");
    assert_int_equal(st_writer_save(w, path), -1);
    msg_has(path);
    st_writer_free(w);
    st_writer_free(NULL);
}

int main(void) {
    enum { NBAD = sizeof BAD / sizeof BAD[0] };
    const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_roundtrip_dtypes),
        cmocka_unit_test(test_writer_exact_bytes),
        cmocka_unit_test(test_writer_empty),
        cmocka_unit_test(test_writer_many_tensors),
        cmocka_unit_test(test_writer_replaces),
        cmocka_unit_test(test_python_style_file),
        cmocka_unit_test(test_open_missing),
        cmocka_unit_test(test_read_f32_checks),
        cmocka_unit_test(test_writer_rejects),
    };
    enum { NFIXED = sizeof fixed / sizeof fixed[0] };
    struct CMUnitTest tests[NFIXED + NBAD];
    memcpy(tests, fixed, sizeof fixed);
    for (int i = 0; i < NBAD; i++)
        tests[NFIXED + i] = (struct CMUnitTest){
            .name = BAD[i].name, .test_func = test_reject, .initial_state = (void *)&BAD[i]};
    return cmocka_run_group_tests(tests, setup, teardown);
}
