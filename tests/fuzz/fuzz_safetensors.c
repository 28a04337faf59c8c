// libFuzzer target for the safetensors reader (common/safetensors.c) and the checkpoint
// loader on top of it (common/ckpt.c). Build and run: `make fuzz`.
//
// Input: the bytes of a file. The reader has no in-memory entry point, so the input is
// written to a file in a private temporary folder and opened with st_open, as every
// checkpoint and fixture is.
//
// Beyond "no crash, no leak, no UB" it aborts when an invariant fails:
//   - a refused file leaves a message naming it and a zeroed StFile;
//   - an accepted one: the bytes are the input's; every tensor has a known dtype,
//     0..8 dimensions, nbytes = numel x dtype size, lies inside the data area after
//     the header and overlaps no other; names are unique (st_get finds each) and never
//     __metadata__; the metadata is an object of strings (st_meta_get gives each);
//     st_read_f32 copies an F32 tensor exactly and refuses a wrong dtype, shape or name
//     with a message; written again with st_writer and read back, the file holds the
//     same tensors and metadata (the writer refuses only an empty name);
//   - the checkpoint loader: ckpt_has_net, ckpt_net_width and ckpt_meta_long on the
//     file; ckpt_load_net into a tiny G1 and D (T=4, 32x32, width 1) under "G1" or bare
//     keys, with and without Adam, fills every tensor from the file when it succeeds;
//     ckpt_load_generator when the file's width is at most FUZZ_MAX_WIDTH (a wider
//     one is built before its weights are checked: see README.md).
//
// Built with -DFUZZ_GENERATOR it writes the seed corpus instead (`make fuzz-corpus`):
// files made with st_writer and ckpt_save, and hand-written malformed ones.
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdgan/ckpt.h"
#include "mdgan/net.h"
#include "mdgan/rng.h"
#include "mdgan/safetensors.h"
#include "fuzzutil.h"

// The networks of the checkpoint checks: the smallest shape the builder allows.
#define FUZZ_T 4
#define FUZZ_S 32
#define FUZZ_MAX_WIDTH 4

#ifndef FUZZ_GENERATOR

static void check_refused(const StFile *f, const char *path) {
    CHECK_FAILED_WITH_MESSAGE();
    CHECK(strstr(mdgan_errmsg(), path) != NULL);
    CHECK(!f->path && !f->buf && !f->tensors && f->ntensors == 0 && !f->meta && !f->mapped);
}

static int cmp_data(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static void check_tensors(const StFile *f, const uint8_t *data, size_t size) {
    CHECK(f->size == size && memcmp(f->buf, data, size) == 0);
    uint64_t hlen;
    memcpy(&hlen, data, 8);
    CHECK(hlen <= size - 8);
    const unsigned char *area = f->buf + 8 + hlen, *end = f->buf + size;
    const StTensor **by = malloc((size_t)(f->ntensors + 1) * sizeof *by);
    CHECK(by != NULL);
    int n = 0;
    for (int i = 0; i < f->ntensors; i++) {
        const StTensor *t = &f->tensors[i];
        CHECK(t->name && strcmp(t->name, "__metadata__") != 0);
        CHECK(st_get(f, t->name) == t);
        CHECK(st_dtype_size(t->dtype) != 0 && t->ndim >= 0 && t->ndim <= ST_MAX_NDIM);
        size_t want = st_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++) {
            CHECK(t->shape[d] >= 0);
            CHECK(!__builtin_mul_overflow(want, (size_t)t->shape[d], &want));
        }
        CHECK(t->nbytes == want && t->nbytes == st_numel(t) * st_dtype_size(t->dtype));
        CHECK(t->data >= area && t->data <= end && t->nbytes <= (size_t)(end - t->data));
        if (t->nbytes) by[n++] = t;
    }
    qsort(by, (size_t)n, sizeof *by, cmp_data);
    for (int i = 1; i < n; i++) CHECK(by[i]->data >= by[i - 1]->data + by[i - 1]->nbytes);
    free(by);
    if (f->meta) {
        CHECK(json_is_object((json_t *)f->meta));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)f->meta, k, v) {
            CHECK(json_is_string(v));
            CHECK(st_meta_get(f, k) == json_string_value(v));
        }
    }
}

static void check_read_f32(const StFile *f) {
    for (int i = 0; i < f->ntensors; i++) {
        const StTensor *t = &f->tensors[i];
        float *dst = malloc(t->nbytes + sizeof(float));
        CHECK(dst != NULL);
        mdgan_errclear();
        int rc = st_read_f32(f, t->name, dst, t->ndim, t->shape);
        if (t->dtype == ST_F32) {
            CHECK(rc == 0 && memcmp(dst, t->data, t->nbytes) == 0);
        } else {
            CHECK(rc == -1);
            CHECK_FAILED_WITH_MESSAGE();
        }
        int64_t other[ST_MAX_NDIM + 1];
        memcpy(other, t->shape, sizeof t->shape);
        other[t->ndim] = 1;   // one more dimension: refused, and nothing copied
        if (t->ndim < ST_MAX_NDIM) {
            mdgan_errclear();
            CHECK(st_read_f32(f, t->name, dst, t->ndim + 1, other) == -1);
            CHECK_FAILED_WITH_MESSAGE();
        }
        free(dst);
    }
    mdgan_errclear();
    CHECK(st_read_f32(f, "no such tensor \x01", NULL, 0, NULL) == -1);
    CHECK_FAILED_WITH_MESSAGE();
}

// Written again by the writer and read back: the same tensors and metadata.
static void check_rewrite(const StFile *f, const char *out) {
    StWriter *w = st_writer_new();
    CHECK(w != NULL);
    for (int i = 0; i < f->ntensors; i++) {
        const StTensor *t = &f->tensors[i];
        mdgan_errclear();
        int rc = st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
        if (rc != 0) {   // what the writer may refuse that the reader takes
            CHECK(t->name[0] == '\0');
            CHECK_FAILED_WITH_MESSAGE();
            st_writer_free(w);
            return;
        }
    }
    size_t nmeta = f->meta ? json_object_size((json_t *)f->meta) : 0;
    if (f->meta) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)f->meta, k, v) CHECK(st_writer_meta(w, k, json_string_value(v)) == 0);
    }
    CHECK(st_writer_save(w, out) == 0);
    st_writer_free(w);
    StFile g;
    CHECK(st_open(&g, out) == 0);
    CHECK(g.ntensors == f->ntensors);
    for (int i = 0; i < f->ntensors; i++) {
        const StTensor *t = &f->tensors[i], *u = st_get(&g, t->name);
        CHECK(u && u->dtype == t->dtype && u->ndim == t->ndim && u->nbytes == t->nbytes);
        CHECK(memcmp(u->shape, t->shape, (size_t)t->ndim * sizeof *t->shape) == 0);
        CHECK(memcmp(u->data, t->data, t->nbytes) == 0);
    }
    if (nmeta) CHECK(g.meta && json_equal((json_t *)g.meta, (json_t *)f->meta));
    else CHECK(g.meta == NULL);
    st_close(&g);
}

// Every tensor of net is the file's tensor under prefix.
static void check_loaded(const StFile *f, const Net *net, const char *prefix) {
    for (int k = 0; k < net->ntable; k++) {
        const NetTensor *nt = &net->table[k];
        char name[160];
        snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", nt->name);
        const StTensor *t = st_get(f, name);
        CHECK(t && t->dtype == ST_F32 && t->nbytes == nt->numel * sizeof(float));
        CHECK(memcmp(net_tensor_data(net, nt), t->data, t->nbytes) == 0);
    }
}

static Net g1, d1;   // built at the first input, kept for the process

static void check_ckpt(const StFile *f) {
    if (!g1.table) {
        CHECK(net_init(&g1, NET_G1, FUZZ_T, FUZZ_S, FUZZ_S, 1, NULL) == 0);
        CHECK(net_init(&d1, NET_D, FUZZ_T, FUZZ_S, FUZZ_S, 1, NULL) == 0);
    }
    static const struct {
        Net *net;
        const char *prefix;
        NetKind kind;
    } nets[] = {{&g1, "G1", NET_G1}, {&g1, "", NET_G1}, {&d1, "D1", NET_D}};
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
        int has = ckpt_has_net(f, nets[i].prefix, nets[i].kind);
        int nf = -1;
        mdgan_errclear();
        if (ckpt_net_width(f, nets[i].prefix, nets[i].kind, &nf) == 0) CHECK(has && nf >= 1 && nf <= 4096);
        else CHECK_FAILED_WITH_MESSAGE();
        for (int adam = 0; adam < 2; adam++) {
            mdgan_errclear();
            if (ckpt_load_net(f, nets[i].net, nets[i].prefix, adam) == 0) {
                check_loaded(f, nets[i].net, nets[i].prefix);
                CHECK(!adam || nets[i].net->adam_step >= 0);
            } else {
                CHECK_FAILED_WITH_MESSAGE();
            }
        }
    }
    int nf;
    const char *prefix = ckpt_has_net(f, "G1", NET_G1) ? "G1" : "";
    if (ckpt_net_width(f, prefix, NET_G1, &nf) == 0 && nf <= FUZZ_MAX_WIDTH) {
        Net g;
        mdgan_errclear();
        if (ckpt_load_generator(&g, f, NET_G1, FUZZ_T, FUZZ_S) == 0) {
            CHECK(g.nf == nf && g.kind == NET_G1);
            check_loaded(f, &g, prefix);
            net_free(&g);
        } else {
            CHECK_FAILED_WITH_MESSAGE();
        }
    }
    mdgan_errclear();
    long step = ckpt_meta_long(f, "step");
    if (step < 0) CHECK(step == -1 && mdgan_errmsg()[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char in[4200], out[4200];
    fuzz_input_file(in, sizeof in, "in.safetensors", data, size);
    fuzz_tmp_path(out, sizeof out, "out.safetensors");
    StFile f;
    memset(&f, 0x55, sizeof f);
    mdgan_errclear();
    if (st_open(&f, in) != 0) {
        check_refused(&f, in);
        st_close(&f);
        return 0;
    }
    CHECK(f.path && strcmp(f.path, in) == 0 && f.size >= 8);
    check_tensors(&f, data, size);
    check_read_f32(&f);
    check_rewrite(&f, out);
    check_ckpt(&f);
    st_close(&f);
    CHECK(!f.buf && !f.tensors && f.ntensors == 0);
    return 0;
}

#else // FUZZ_GENERATOR: the seed corpus

static char gen_tmp[4200];

static int st_accepts(const char *path) {
    StFile f;
    int ok = st_open(&f, path) == 0;
    st_close(&f);
    return ok;
}

static void seed_file(const char *name, const char *path) { seed_write_file(name, path, st_accepts); }

// A hand-written file: header length hlen (-1: the header's), the header, ndata bytes.
static void seed_raw(const char *name, int64_t hlen, const char *header, size_t ndata) {
    size_t jl = strlen(header), n = 8 + jl + ndata;
    unsigned char *b = malloc(n);
    if (!b) exit(1);
    uint64_t h = hlen < 0 ? jl : (uint64_t)hlen;
    memcpy(b, &h, 8);
    memcpy(b + 8, header, jl);
    for (size_t i = 0; i < ndata; i++) b[8 + jl + i] = (unsigned char)(i * 7 + 1);
    if (fuzz_write_file(gen_tmp, b, n) != 0) exit(1);
    free(b);
    seed_file(name, gen_tmp);
}

static void seed_ckpt(const char *name, Net *net, const char *prefix, int with_adam) {
    const CkptNet nets[1] = {{net, prefix, with_adam}};
    const CkptMeta meta[2] = {{"step", "12"}, {"config_sha256", "ab"}};
    must(ckpt_save(gen_tmp, nets, 1, meta, 2) == 0);
    seed_file(name, gen_tmp);
}

#define E(x) "{\"w\":" x "}"
#define F32_2 "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

int main(int argc, char **argv) {
    seed_begin(argc, argv, "fuzz_safetensors_gen");
    fuzz_tmp_path(gen_tmp, sizeof gen_tmp, "seed.safetensors");

    // ---- written by the library's writers
    StWriter *w = st_writer_new();
    must(w && st_writer_save(w, gen_tmp) == 0);
    st_writer_free(w);
    seed_file("ok_empty", gen_tmp);
    static const float f6[6] = {1, -2, 0.5f, 3e-3f, 1e30f, -0.0f};
    static const unsigned char bytes[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const int64_t s23[2] = {2, 3}, s0[2] = {0, 3}, s4[1] = {4}, s2[1] = {2}, s16[1] = {16};
    w = st_writer_new();
    must(w && st_writer_add_f32(w, "w", 2, s23, f6) == 0 && st_writer_save(w, gen_tmp) == 0);
    st_writer_free(w);
    seed_file("ok_one_f32", gen_tmp);
    w = st_writer_new();
    must(w != NULL);
    must(st_writer_add(w, "f32", ST_F32, 1, s4, bytes) == 0 && st_writer_add(w, "f64", ST_F64, 1, s2, bytes) == 0);
    must(st_writer_add(w, "i64", ST_I64, 1, s2, bytes) == 0 && st_writer_add(w, "i32", ST_I32, 1, s4, bytes) == 0);
    must(st_writer_add(w, "u8", ST_U8, 1, s16, bytes) == 0 && st_writer_add(w, "f16", ST_F16, 1, s4, bytes) == 0);
    must(st_writer_add(w, "bf16", ST_BF16, 1, s4, bytes) == 0);
    must(st_writer_add(w, "scalar", ST_I64, 0, NULL, bytes) == 0);
    must(st_writer_add(w, "empty", ST_F32, 2, s0, NULL) == 0);
    must(st_writer_meta(w, "format", CKPT_FORMAT) == 0 && st_writer_meta(w, "step", "7") == 0);
    must(st_writer_meta(w, "note", "caf\xc3\xa9") == 0 && st_writer_save(w, gen_tmp) == 0);
    st_writer_free(w);
    seed_file("ok_all_dtypes_meta", gen_tmp);

    // ---- checkpoints of the networks the target loads into
    Net g1, d1;
    Rng r;
    rng_seed(&r, 9);
    must(net_init(&g1, NET_G1, FUZZ_T, FUZZ_S, FUZZ_S, 1, &r) == 0);
    must(net_init(&d1, NET_D, FUZZ_T, FUZZ_S, FUZZ_S, 1, &r) == 0);
    g1.adam_step = 12;
    seed_ckpt("ok_ckpt_g1_adam", &g1, "G1", 1);
    seed_ckpt("ok_ckpt_g1_bare", &g1, "", 0);
    seed_ckpt("ok_ckpt_d1", &d1, "D1", 0);
    net_free(&g1);
    net_free(&d1);

    // ---- hand-written: no padding, as a minimal Python writer does; then malformed
    seed_raw("ok_unpadded", -1, "{\"__metadata__\":{\"a\":\"b\"},\"w\":" F32_2 "}", 8);
    seed_raw("ok_trailing_bytes", -1, E(F32_2), 12);
    if (fuzz_write_file(gen_tmp, "\x10\0\0\0\0", 5) != 0) exit(1);
    seed_file("bad_file_5_bytes", gen_tmp);
    seed_raw("bad_header_empty", 0, "", 0);
    seed_raw("bad_header_past_eof", 100, "{}", 0);
    seed_raw("bad_header_absurd", 1LL << 40, "{}", 0);
    seed_raw("bad_not_json", -1, "{\"w\": {\"dtype\": \"F32\",", 8);
    seed_raw("bad_not_object", -1, "[1, 2]", 0);
    seed_raw("bad_duplicate_key", -1, "{\"w\":" F32_2 ",\"w\":" F32_2 "}", 8);
    seed_raw("bad_nul_in_key", -1, "{\"w\\u0000x\":" F32_2 "}", 8);
    seed_raw("bad_entry_not_object", -1, E("3"), 0);
    seed_raw("bad_no_dtype", -1, E("{\"shape\":[2],\"data_offsets\":[0,8]}"), 8);
    seed_raw("bad_no_offsets", -1, E("{\"dtype\":\"F32\",\"shape\":[2]}"), 8);
    seed_raw("bad_dtype_unknown", -1, E("{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}"), 2);
    seed_raw("bad_shape_9_dims", -1, E("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}"), 8);
    seed_raw("bad_shape_negative", -1, E("{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}"), 8);
    seed_raw("bad_shape_overflow", -1,
             E("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}"), 8);
    seed_raw("bad_shape_real", -1, E("{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}"), 8);
    seed_raw("bad_offsets_past_data", -1, E("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}"), 12);
    seed_raw("bad_offsets_reversed", -1, E("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}"), 16);
    seed_raw("bad_offsets_huge", -1, E("{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9223372036854775806,"
                                       "9223372036854775807]}"), 8);
    seed_raw("bad_byte_count", -1, E("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}"), 16);
    seed_raw("bad_overlap", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
    seed_raw("bad_meta_not_string", -1, "{\"__metadata__\":{\"step\":5}}", 0);
    seed_raw("bad_meta_not_object", -1, "{\"__metadata__\":\"x\"}", 0);
    return seed_end("fuzz_safetensors_gen");
}

#endif
