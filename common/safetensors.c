#include "mdgan/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mdgan/error.h"
#include "mdgan/fileio.h"

// Tensor bytes and the header length are little-endian on disk and are used in place.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors.c assumes a little-endian host");

// The limit the reference implementation (safetensors' Rust crate) applies.
#define ST_MAX_HEADER 100000000ull

static const struct { const char *name; size_t size; } DT[] = {
    [ST_F32] = {"F32", 4}, [ST_F64] = {"F64", 8}, [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4},
    [ST_U8] = {"U8", 1},   [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
};
#define ST_NDTYPES ((int)(sizeof DT / sizeof DT[0]))

const char *st_dtype_name(StDtype dt) { return (unsigned)dt < ST_NDTYPES ? DT[dt].name : "?"; }
size_t st_dtype_size(StDtype dt) { return (unsigned)dt < ST_NDTYPES ? DT[dt].size : 0; }

// "[8, 4, 4]" ("[]" for a scalar) into out.
static const char *fmt_shape(char *out, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(out, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(out + k, n - k, "]");
    return out;
}

// numel * dtype size, or -1 on overflow of size_t.
static int shape_nbytes(size_t *nbytes, StDtype dt, int ndim, const int64_t *shape) {
    size_t n = DT[dt].size;
    for (int i = 0; i < ndim; i++)
        if ((uint64_t)shape[i] > SIZE_MAX || __builtin_mul_overflow(n, (size_t)shape[i], &n)) return -1;
    *nbytes = n;
    return 0;
}

size_t st_numel(const StTensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

// ---------------------------------------------------------------------------------
// Reader

// Fills t from one header entry; data_size is the size of the data area.
static int parse_entry(StTensor *t, const char *path, const char *name, json_t *v,
                       const unsigned char *data, size_t data_size) {
    if (!json_is_object(v)) {
        MDGAN_ERR("%s: tensor '%s': header entry is not a JSON object", path, name);
        return -1;
    }
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!dt || !shape || !offs) {
        MDGAN_ERR("%s: tensor '%s': header entry has no \"%s\"", path, name,
                  !dt ? "dtype" : !shape ? "shape" : "data_offsets");
        return -1;
    }
    if (!json_is_string(dt)) {
        MDGAN_ERR("%s: tensor '%s': \"dtype\" is not a string", path, name);
        return -1;
    }
    int d = 0;
    while (d < ST_NDTYPES && strcmp(DT[d].name, json_string_value(dt)) != 0) d++;
    if (d == ST_NDTYPES) {
        MDGAN_ERR("%s: tensor '%s': unsupported dtype '%s' (known: F32 F64 I64 I32 U8 F16 BF16)",
                  path, name, json_string_value(dt));
        return -1;
    }
    t->dtype = (StDtype)d;

    if (!json_is_array(shape)) {
        MDGAN_ERR("%s: tensor '%s': \"shape\" is not an array", path, name);
        return -1;
    }
    if (json_array_size(shape) > ST_MAX_NDIM) {
        MDGAN_ERR("%s: tensor '%s': shape has %zu dimensions, at most %d are supported", path, name,
                  json_array_size(shape), ST_MAX_NDIM);
        return -1;
    }
    t->ndim = (int)json_array_size(shape);
    for (int i = 0; i < t->ndim; i++) {
        json_t *s = json_array_get(shape, (size_t)i);
        if (!json_is_integer(s)) {
            MDGAN_ERR("%s: tensor '%s': shape[%d] is not an integer", path, name, i);
            return -1;
        }
        t->shape[i] = json_integer_value(s);
        if (t->shape[i] < 0) {
            MDGAN_ERR("%s: tensor '%s': shape[%d] is negative (%lld)", path, name, i,
                      (long long)t->shape[i]);
            return -1;
        }
    }
    size_t expect;
    char sh[256];
    if (shape_nbytes(&expect, t->dtype, t->ndim, t->shape) != 0) {
        MDGAN_ERR("%s: tensor '%s': shape %s is too large", path, name,
                  fmt_shape(sh, sizeof sh, t->ndim, t->shape));
        return -1;
    }

    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !json_is_integer(json_array_get(offs, 0)) || !json_is_integer(json_array_get(offs, 1))) {
        MDGAN_ERR("%s: tensor '%s': \"data_offsets\" is not [begin, end] integers", path, name);
        return -1;
    }
    json_int_t b = json_integer_value(json_array_get(offs, 0));
    json_int_t e = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || e < b) {
        MDGAN_ERR("%s: tensor '%s': data_offsets [%lld, %lld] are not a range", path, name, b, e);
        return -1;
    }
    if ((uint64_t)e > data_size) {
        MDGAN_ERR("%s: tensor '%s': data_offsets [%lld, %lld] run past the data area of %zu "
                  "bytes (truncated file?)", path, name, b, e, data_size);
        return -1;
    }
    t->nbytes = (size_t)(e - b);
    t->data = data + b;
    if (t->nbytes != expect) {
        MDGAN_ERR("%s: tensor '%s': data_offsets give %zu bytes, shape %s of %s needs %zu", path,
                  name, t->nbytes, fmt_shape(sh, sizeof sh, t->ndim, t->shape), DT[d].name, expect);
        return -1;
    }
    return 0;
}

static int cmp_by_data(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data ? 1 : 0;
}

// Tensors must not share bytes (empty tensors own none).
static int check_overlap(const StFile *f, const unsigned char *data) {
    const StTensor **by = malloc((size_t)(f->ntensors ? f->ntensors : 1) * sizeof *by);
    if (!by) {
        MDGAN_ERR("%s: out of memory", f->path);
        return -1;
    }
    int n = 0;
    for (int i = 0; i < f->ntensors; i++)
        if (f->tensors[i].nbytes) by[n++] = &f->tensors[i];
    qsort(by, (size_t)n, sizeof *by, cmp_by_data);
    for (int i = 1; i < n; i++) {
        const StTensor *p = by[i - 1], *q = by[i];
        if (q->data < p->data + p->nbytes) {
            MDGAN_ERR("%s: tensors '%s' [%td, %td] and '%s' [%td, %td] overlap", f->path, p->name,
                      p->data - data, p->data + p->nbytes - data, q->name, q->data - data,
                      q->data + q->nbytes - data);
            free(by);
            return -1;
        }
    }
    free(by);
    return 0;
}

// A regular file is mapped read-only and its descriptor kept: a reader touches only the
// tensors it uses (inference reads G1's weights, not the Adam moments beside them), large
// ones pread straight into place, small ones copied from the mapping. Checkpoints are
// replaced by rename, never rewritten in place, so the mapping stays valid while the
// file is open (a file truncated under a reader would fault it). Other files (a pipe)
// are read whole.
static int load_file(const char *path, unsigned char **buf, size_t *size, int *mapped, int *fd_out) {
    *mapped = 0, *fd_out = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        MDGAN_ERR("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        MDGAN_ERR("cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size < 8) {
        close(fd);
        return fio_read_all(path, buf, size);   // its messages, and short files below
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        close(fd);
        return fio_read_all(path, buf, size);
    }
    *buf = m, *size = (size_t)sb.st_size, *mapped = 1, *fd_out = fd;   // kept for st_read_f32's pread
    return 0;
}

void st_close(StFile *f) {
    for (int i = 0; i < f->ntensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    if (f->mapped) {
        munmap(f->buf, f->size);
        if (f->fd >= 0) close(f->fd);
    } else {
        free(f->buf);
    }
    free(f->path);
    json_decref((json_t *)f->meta);
    memset(f, 0, sizeof *f);
}

int st_open(StFile *f, const char *path) {
    StFile g = {0};
    json_t *root = NULL;
    memset(f, 0, sizeof *f);
    if (!(g.path = strdup(path))) {
        MDGAN_ERR("%s: out of memory", path);
        return -1;
    }
    if (load_file(path, &g.buf, &g.size, &g.mapped, &g.fd) != 0) goto fail;
    if (g.size < 8) {
        MDGAN_ERR("%s: file is %zu bytes, too short for a safetensors file (8-byte header "
                  "length first)", path, g.size);
        goto fail;
    }
    uint64_t hlen;
    memcpy(&hlen, g.buf, 8);
    if (hlen > ST_MAX_HEADER) {
        MDGAN_ERR("%s: header length %llu is absurd (limit %llu): not a safetensors file?", path,
                  (unsigned long long)hlen, ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > g.size - 8) {
        MDGAN_ERR("%s: header length %llu runs past the end of the %zu-byte file (truncated?)",
                  path, (unsigned long long)hlen, g.size);
        goto fail;
    }
    json_error_t je;
    root = json_loadb((const char *)g.buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        MDGAN_ERR("%s: header is not valid JSON: %s (header byte %d)", path, je.text, je.position);
        goto fail;
    }
    if (!json_is_object(root)) {
        MDGAN_ERR("%s: header is not a JSON object", path);
        goto fail;
    }
    const unsigned char *data = g.buf + 8 + hlen;
    size_t data_size = g.size - 8 - (size_t)hlen;
    if (!(g.tensors = calloc(json_object_size(root) + 1, sizeof *g.tensors))) {
        MDGAN_ERR("%s: out of memory", path);
        goto fail;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) {
                MDGAN_ERR("%s: __metadata__ is not a JSON object", path);
                goto fail;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv)) {
                    MDGAN_ERR("%s: __metadata__ value of '%s' is not a string", path, mk);
                    goto fail;
                }
            }
            g.meta = json_incref(v);
            continue;
        }
        StTensor *t = &g.tensors[g.ntensors];
        if (!(t->name = strdup(key))) {
            MDGAN_ERR("%s: out of memory", path);
            goto fail;
        }
        g.ntensors++;
        if (parse_entry(t, path, key, v, data, data_size) != 0) goto fail;
    }
    if (check_overlap(&g, data) != 0) goto fail;
    json_decref(root);
    *f = g;
    return 0;
fail:
    json_decref(root);
    st_close(&g);
    return -1;
}

const StTensor *st_get(const StFile *f, const char *name) {
    for (int i = 0; i < f->ntensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta_get(const StFile *f, const char *key) {
    return f->meta ? json_string_value(json_object_get((json_t *)f->meta, key)) : NULL;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22   // Linux 5.14
#endif

// A large tensor of a mapped file is faulted in with one call rather than page by page
// by the copy (an older kernel refuses the advice: the copy then faults as before).
static void prefault(const StFile *f, const StTensor *t) {
    if (!f->mapped || t->nbytes < (64u << 10)) return;
    const long page = sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)t->data & ~(uintptr_t)(page - 1), hi = (uintptr_t)t->data + t->nbytes;
    madvise((void *)lo, hi - lo, MADV_POPULATE_READ);
}

int st_read_f32(const StFile *f, const char *name, float *dst, int ndim, const int64_t *shape) {
    const StTensor *t = st_get(f, name);
    if (!t) {
        MDGAN_ERR("%s: no tensor '%s'", f->path, name);
        return -1;
    }
    if (t->dtype != ST_F32) {
        MDGAN_ERR("%s: tensor '%s' has dtype %s, the model expects F32", f->path, name,
                  DT[t->dtype].name);
        return -1;
    }
    if (t->ndim != ndim || memcmp(t->shape, shape, (size_t)ndim * sizeof *shape) != 0) {
        char a[256], b[256];
        MDGAN_ERR("%s: tensor '%s' has shape %s, the model expects %s", f->path, name,
                  fmt_shape(a, sizeof a, t->ndim, t->shape), fmt_shape(b, sizeof b, ndim, shape));
        return -1;
    }
    if (f->mapped && f->fd >= 0 && t->nbytes >= (64u << 10)) {
        // straight from the page cache into place: no page of the mapping is touched
        size_t done = 0;
        const off_t at = (off_t)(t->data - f->buf);
        while (done < t->nbytes) {
            ssize_t r = pread(f->fd, (char *)dst + done, t->nbytes - done, at + (off_t)done);
            if (r <= 0) {
                if (r < 0 && errno == EINTR) continue;
                break;
            }
            done += (size_t)r;
        }
        if (done == t->nbytes) return 0;
    }
    prefault(f, t);
    memcpy(dst, t->data, t->nbytes);
    return 0;
}

// ---------------------------------------------------------------------------------
// Writer

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_NDIM];
    size_t nbytes;
    const void *data;   // borrowed
} StEntry;

struct StWriter {
    StEntry *e;
    int n, cap;
    json_t *meta;       // object of strings
};

StWriter *st_writer_new(void) {
    StWriter *w = calloc(1, sizeof *w);
    if (w && !(w->meta = json_object())) {
        free(w);
        w = NULL;
    }
    if (!w) MDGAN_ERR("safetensors writer: out of memory");
    return w;
}

void st_writer_free(StWriter *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    json_decref(w->meta);
    free(w);
}

int st_writer_add(StWriter *w, const char *name, StDtype dt, int ndim, const int64_t *shape,
                  const void *data) {
    json_t *utf8 = json_string(name);   // NULL when not valid UTF-8
    json_decref(utf8);
    if (!*name || !utf8 || strcmp(name, "__metadata__") == 0) {
        MDGAN_ERR("tensor name '%s' is not allowed (empty, not UTF-8 or reserved)", name);
        return -1;
    }
    if ((unsigned)dt >= ST_NDTYPES) {
        MDGAN_ERR("tensor '%s': unknown dtype %d", name, (int)dt);
        return -1;
    }
    if (ndim < 0 || ndim > ST_MAX_NDIM) {
        MDGAN_ERR("tensor '%s': %d dimensions, 0 to %d are supported", name, ndim, ST_MAX_NDIM);
        return -1;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) {
            MDGAN_ERR("tensor '%s': shape[%d] is negative (%lld)", name, i, (long long)shape[i]);
            return -1;
        }
    size_t nbytes;
    if (shape_nbytes(&nbytes, dt, ndim, shape) != 0) {
        MDGAN_ERR("tensor '%s': shape is too large", name);
        return -1;
    }
    if (nbytes && !data) {
        MDGAN_ERR("tensor '%s': no data", name);
        return -1;
    }
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0) {
            MDGAN_ERR("tensor '%s' is added twice", name);
            return -1;
        }
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        StEntry *e = realloc(w->e, (size_t)cap * sizeof *e);
        if (!e) {
            MDGAN_ERR("tensor '%s': out of memory", name);
            return -1;
        }
        w->e = e;
        w->cap = cap;
    }
    StEntry *e = &w->e[w->n];
    *e = (StEntry){.name = strdup(name), .dtype = dt, .ndim = ndim, .nbytes = nbytes, .data = data};
    if (!e->name) {
        MDGAN_ERR("tensor '%s': out of memory", name);
        return -1;
    }
    if (ndim) memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
    w->n++;
    return 0;
}

int st_writer_add_f32(StWriter *w, const char *name, int ndim, const int64_t *shape,
                      const float *data) {
    return st_writer_add(w, name, ST_F32, ndim, shape, data);
}

int st_writer_meta(StWriter *w, const char *key, const char *value) {
    if (json_object_set_new(w->meta, key, json_string(value)) != 0) {
        MDGAN_ERR("metadata '%s': key or value is not valid UTF-8 (or out of memory)", key);
        return -1;
    }
    return 0;
}

// {"__metadata__": {...}, "name": {"dtype", "shape", "data_offsets"}, ...} in order.
static json_t *build_header(const StWriter *w) {
    json_t *root = json_object();
    if (!root) return NULL;
    if (json_object_size(w->meta) && json_object_set(root, "__metadata__", w->meta) != 0) goto fail;
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const StEntry *e = &w->e[i];
        json_t *shape = json_array();
        for (int d = 0; d < e->ndim; d++) json_array_append_new(shape, json_integer(e->shape[d]));
        if (!shape || json_array_size(shape) != (size_t)e->ndim) {
            json_decref(shape);
            goto fail;
        }
        json_t *ent = json_pack("{s:s, s:o, s:[I, I]}", "dtype", DT[e->dtype].name, "shape", shape,
                                "data_offsets", (json_int_t)off, (json_int_t)(off + e->nbytes));
        if (!ent || json_object_set_new(root, e->name, ent) != 0) goto fail;
        off += e->nbytes;
    }
    return root;
fail:
    json_decref(root);
    return NULL;
}

int st_writer_save(StWriter *w, const char *path) {
    json_t *root = build_header(w);
    char *js = root ? json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT) : NULL;
    json_decref(root);
    unsigned char *hdr = NULL;
    const void **bufs = NULL;
    size_t *lens = NULL;
    int rc = -1;
    if (!js) {
        MDGAN_ERR("cannot write %s: out of memory for the header", path);
        return -1;
    }
    // Pad with spaces (valid JSON whitespace) so the data area, which starts after the
    // 8-byte length and the header, is 8-byte aligned as safetensors does.
    size_t jlen = strlen(js), hlen = (jlen + 7) & ~(size_t)7;
    hdr = malloc(8 + hlen);
    bufs = malloc((size_t)(w->n + 1) * sizeof *bufs);
    lens = malloc((size_t)(w->n + 1) * sizeof *lens);
    if (!hdr || !bufs || !lens) {
        MDGAN_ERR("cannot write %s: out of memory", path);
        goto out;
    }
    uint64_t h64 = hlen;
    memcpy(hdr, &h64, 8);
    memcpy(hdr + 8, js, jlen);
    memset(hdr + 8 + jlen, ' ', hlen - jlen);
    bufs[0] = hdr;
    lens[0] = 8 + hlen;
    for (int i = 0; i < w->n; i++) {
        bufs[i + 1] = w->e[i].data;
        lens[i + 1] = w->e[i].nbytes;
    }
    rc = fio_write_atomic(path, bufs, lens, w->n + 1);
out:
    free(js);
    free(hdr);
    free(bufs);
    free(lens);
    return rc;
}
