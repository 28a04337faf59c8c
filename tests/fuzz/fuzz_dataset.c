// libFuzzer target for the dataset walker and loader (common/dataset.c) on odd trees.
// Build and run: `make fuzz` (its warnings go to stderr, which the run closes).
//
// Input: 4 bytes T, H, W (1 + b % 3, 1 + b % 8, 1 + b % 8) and flags (the split's
// validation fraction), then at most FUZZ_MAX_OPS operations that build a tree under a
// fresh folder, the dataset root. Each is an op byte (low 3 bits the kind, the next 3
// a name suffix: none .png .jpg .jpeg .PNG .JpEg .gif, or a leading '.'), the index of
// the parent folder (modulo the folders made so far; 0 is the root), a name (a length
// byte modulo 16, then raw bytes: any byte but '/' and NUL, so names need not be UTF-8),
// and then by kind:
//   0, 1  a folder
//   2-4   a file, then a content byte: 0 empty, 1 a 4x4 PNG, 2 a 3x5 PNG, 3 a 4x4 JPEG,
//         4 a GIF, 5 a truncated PNG (then a length byte), 6 raw bytes (a length byte,
//         then the bytes), 7 a 1x1 PNG
//   5, 6  a symbolic link, then a target byte: 0 a folder (then its index), 1 an entry
//         made before (then its index), 2 itself, 3 "..", 4 ".", 5 a missing path,
//         6 a name in the same folder (then a name as above: it may be made later, so
//         links can form loops)
//   7     a FIFO
// Targets never leave the tree. Failed operations (a name made twice) are ignored.
//
// On the tree: dataset_open (with a progress callback), dataset_first_frame_size,
// dataset_list_frames on every folder, dataset_split, dataset_clip on every clip, and
// dataset_name_cmp on the names; then the tree is removed. Beyond "no crash, no leak,
// no UB, no hang" it aborts when an invariant fails:
//   - a refusal has a message naming the root and leaves the Dataset empty but for
//     skipped_clips; progress counts 1, 2, ... up to its total;
//   - an accepted dataset: every video has a clip, videos in strict natural order,
//     clips in (video, clip, window) order with windows 0, 1, ... of each clip, each
//     first frame a frame file under root/video/clip/, the cache readable and every
//     value in [-1, 1]; the split puts every clip on one side and no video on both;
//   - a folder's frames in natural order, each dir/name with a frame name;
//   - dataset_name_cmp is a total order (antisymmetric, 0 only for equal names).
//
// Built with -DFUZZ_GENERATOR it writes the seed corpus instead (`make fuzz-corpus`).
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mdgan/dataset.h"
#include "mdgan/image.h"
#include "fuzzutil.h"

#define FUZZ_MAX_OPS 48
#define FUZZ_MAX_DIRS 16
#define FUZZ_MAX_NODES 64

// ---- the file contents a tree can use, made once with the library's writers
typedef struct {
    unsigned char *p;
    size_t n;
} Blob;
enum { C_EMPTY, C_PNG4, C_PNG35, C_JPEG4, C_GIF, C_TRUNC, C_RAW, C_PNG1, NCONTENT };
static Blob content[NCONTENT];

static void make_blob(Blob *b, const char *path) {
    b->p = fuzz_read_file(path, &b->n);
    CHECK(b->p != NULL);
}

static void make_contents(void) {
    if (content[C_PNG4].p) return;
    char path[4200];
    fuzz_tmp_path(path, sizeof path, "template");
    static const int sz[][2] = {[C_PNG4] = {4, 4}, [C_PNG35] = {3, 5}, [C_JPEG4] = {4, 4}, [C_PNG1] = {1, 1}};
    for (int k = 0; k < NCONTENT; k++) {
        if (!sz[k][0]) continue;
        Image img = {sz[k][0], sz[k][1], malloc((size_t)sz[k][0] * sz[k][1] * 3)};
        CHECK(img.rgb != NULL);
        for (int i = 0; i < img.w * img.h * 3; i++) img.rgb[i] = (unsigned char)(i * 41 + k);
        CHECK((k == C_JPEG4 ? image_save_jpeg(&img, path, 90) : image_save_png(&img, path)) == 0);
        image_free(&img);
        make_blob(&content[k], path);
    }
    float clip[3 * 2 * 4 * 4];
    for (size_t i = 0; i < sizeof clip / sizeof clip[0]; i++) clip[i] = (float)(i % 9) / 4.0f - 1.0f;
    const float *videos[1] = {clip};
    CHECK(image_save_gif(path, videos, 1, 2, 4, 4, 10) == 0);
    make_blob(&content[C_GIF], path);
    unlink(path);
}

// ---- the tree
typedef struct {
    char root[4200];
    int T, H, W;
    double val_fraction;
    char *dirs[FUZZ_MAX_DIRS];   // dirs[0] = root
    int ndirs;
    char *nodes[FUZZ_MAX_NODES]; // every entry made, in order
    int nnodes;
    char *names[FUZZ_MAX_NODES]; // their last components
} Tree;

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    CHECK(p != NULL);
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

// A name from the input: a length byte, bytes with '/' and NUL replaced, the suffix.
static void read_name(FuzzIn *in, int suffix, char *out, size_t outn) {
    static const char *const sfx[8] = {"", ".png", ".jpg", ".jpeg", ".PNG", ".JpEg", ".gif", ""};
    size_t len;
    const uint8_t *b = fuzz_bytes(in, fuzz_u8(in) % 16, &len);
    size_t k = 0;
    if (suffix == 7) out[k++] = '.';
    for (size_t i = 0; i < len; i++) out[k++] = (b[i] == '/' || b[i] == 0) ? '_' : (char)b[i];
    if (k == 0) out[k++] = 'e';
    snprintf(out + k, outn - k, "%s", sfx[suffix]);
    if (!strcmp(out, ".") || !strcmp(out, "..")) snprintf(out, outn, "dots");
}

static void add_node(Tree *t, char *path, const char *name) {
    if (t->nnodes == FUZZ_MAX_NODES) {
        free(path);
        return;
    }
    t->names[t->nnodes] = strdup(name);
    CHECK(t->names[t->nnodes] != NULL);
    t->nodes[t->nnodes++] = path;
}

static void make_file(FuzzIn *in, const char *path) {
    unsigned kind = fuzz_u8(in) % NCONTENT;
    const void *p = content[kind].p;
    size_t n = content[kind].n;
    if (kind == C_TRUNC) {
        p = content[C_PNG4].p;
        n = fuzz_u8(in) % content[C_PNG4].n;
    } else if (kind == C_RAW) {
        p = fuzz_bytes(in, fuzz_u8(in), &n);
    }
    // never through an entry made before (a FIFO there would block the write)
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return;
    CHECK(n == 0 || write(fd, p, n) == (ssize_t)n);
    CHECK(close(fd) == 0);
}

static void make_link(Tree *t, FuzzIn *in, const char *path, const char *name) {
    char target[4200], other[64];
    switch (fuzz_u8(in) % 7) {
    case 0: snprintf(target, sizeof target, "%s", t->dirs[fuzz_u8(in) % t->ndirs]); break;
    case 1:
        if (!t->nnodes) return;
        snprintf(target, sizeof target, "%s", t->nodes[fuzz_u8(in) % t->nnodes]);
        break;
    case 2: snprintf(target, sizeof target, "%s", name); break;
    case 3: snprintf(target, sizeof target, ".."); break;
    case 4: snprintf(target, sizeof target, "."); break;
    case 5: snprintf(target, sizeof target, "%s/missing/frame.png", t->root); break;
    default:
        read_name(in, fuzz_u8(in) % 8, other, sizeof other);
        snprintf(target, sizeof target, "%s", other);
        break;
    }
    symlink(target, path);
}

// Builds the tree the input describes under t->root (made fresh).
static void tree_build(Tree *t, FuzzIn *in) {
    t->T = 1 + (int)(fuzz_u8(in) % 3);
    t->H = 1 + (int)(fuzz_u8(in) % 8);
    t->W = 1 + (int)(fuzz_u8(in) % 8);
    static const double fractions[4] = {0, 0.2, 0.5, 1};
    t->val_fraction = fractions[fuzz_u8(in) % 4];
    CHECK(fuzz_rmtree(t->root) == 0 && mkdir(t->root, 0755) == 0);
    t->dirs[0] = strdup(t->root);
    CHECK(t->dirs[0] != NULL);
    t->ndirs = 1;
    for (int op = 0; op < FUZZ_MAX_OPS && in->n; op++) {
        unsigned b = fuzz_u8(in), kind = b & 7;
        const char *parent = t->dirs[fuzz_u8(in) % t->ndirs];
        char name[64];
        read_name(in, (int)(b >> 3) & 7, name, sizeof name);
        char *path = join(parent, name);
        if (kind <= 1) {
            if (mkdir(path, 0755) == 0 && t->ndirs < FUZZ_MAX_DIRS) {
                t->dirs[t->ndirs] = strdup(path);
                CHECK(t->dirs[t->ndirs] != NULL);
                t->ndirs++;
            }
        } else if (kind <= 4) {
            make_file(in, path);
        } else if (kind <= 6) {
            make_link(t, in, path, name);
        } else {
            mkfifo(path, 0644);
        }
        add_node(t, path, name);
    }
}

static void tree_free(Tree *t) {
    for (int i = 0; i < t->ndirs; i++) free(t->dirs[i]);
    for (int i = 0; i < t->nnodes; i++) free(t->nodes[i]), free(t->names[i]);
    t->ndirs = t->nnodes = 0;
}

#ifndef FUZZ_GENERATOR

typedef struct {
    int last, total;
} Progress;

static void on_progress(void *ctx, int done, int total) {
    Progress *p = ctx;
    CHECK(done == p->last + 1 && done <= total && (p->total == 0 || total == p->total));
    p->last = done, p->total = total;
}

static void check_refused(const Dataset *ds, const Tree *t) {
    CHECK_FAILED_WITH_MESSAGE();
    CHECK(strstr(mdgan_errmsg(), t->root) != NULL);
    CHECK(!ds->root && !ds->clips && !ds->videos && !ds->clip_video && !ds->cache);
    CHECK(ds->nclips == 0 && ds->nvideos == 0 && ds->skipped_clips >= 0);
}

static void check_split(const Dataset *ds, double fraction) {
    int *tr, *va, ntr, nva;
    CHECK(dataset_split(ds, fraction, 7, &tr, &ntr, &va, &nva) == 0 && tr && va);
    CHECK(ntr + nva == ds->nclips);
    char *side = calloc((size_t)ds->nvideos, 1);   // 1 train, 2 validation
    CHECK(side != NULL);
    for (int i = 0; i < ntr; i++) {
        CHECK(tr[i] >= 0 && tr[i] < ds->nclips && (i == 0 || tr[i] > tr[i - 1]));
        side[ds->clip_video[tr[i]]] |= 1;
    }
    for (int i = 0; i < nva; i++) {
        CHECK(va[i] >= 0 && va[i] < ds->nclips && (i == 0 || va[i] > va[i - 1]));
        side[ds->clip_video[va[i]]] |= 2;
    }
    for (int v = 0; v < ds->nvideos; v++) CHECK(side[v] == 1 || side[v] == 2);
    CHECK(ntr >= 1);
    if (fraction > 0 && ds->nvideos >= 2) CHECK(nva >= 1);
    if (fraction == 0 || ds->nvideos == 1) CHECK(nva == 0);
    free(side);
    free(tr);
    free(va);
}

static void check_accepted(const Dataset *ds, const Tree *t) {
    CHECK(ds->root && !strcmp(ds->root, t->root) && ds->T == t->T && ds->H == t->H && ds->W == t->W);
    CHECK(ds->nclips >= 1 && ds->nvideos >= 1 && ds->skipped_clips >= 0);
    CHECK(ds->clips && ds->videos && ds->clip_video && ds->cache);
    for (int v = 1; v < ds->nvideos; v++) CHECK(dataset_name_cmp(ds->videos[v - 1], ds->videos[v]) < 0);
    int *used = calloc((size_t)ds->nvideos, sizeof *used);
    const size_t n = (size_t)3 * t->T * t->H * t->W;
    float *clip = malloc(n * sizeof *clip);
    CHECK(used && clip);
    for (int i = 0; i < ds->nclips; i++) {
        const DatasetClip *c = &ds->clips[i];
        const int v = ds->clip_video[i];
        CHECK(v >= 0 && v < ds->nvideos && !strcmp(c->video, ds->videos[v]) && c->window >= 0);
        used[v] = 1;
        if (i > 0) {
            const DatasetClip *p = &ds->clips[i - 1];
            const int pv = ds->clip_video[i - 1], same = pv == v && !strcmp(p->clip, c->clip);
            CHECK(pv <= v);
            CHECK(same ? c->window == p->window + 1 : c->window == 0);
            if (pv == v && !same) CHECK(dataset_name_cmp(p->clip, c->clip) < 0);
        } else {
            CHECK(c->window == 0);
        }
        char *dir = join(ds->root, c->video), *cdir = join(dir, c->clip);
        const size_t lc = strlen(cdir);
        CHECK(!strncmp(c->first_frame, cdir, lc) && c->first_frame[lc] == '/');
        CHECK(dataset_is_frame_name(c->first_frame + lc + 1) && !strchr(c->first_frame + lc + 1, '/'));
        free(dir), free(cdir);
        dataset_clip(ds, i, clip);
        for (size_t k = 0; k < n; k++) CHECK(clip[k] >= -1.0f && clip[k] <= 1.0f);
    }
    for (int v = 0; v < ds->nvideos; v++) CHECK(used[v]);
    free(used);
    free(clip);
    check_split(ds, t->val_fraction);
}

static void check_listings(const Tree *t) {
    for (int d = 0; d < t->ndirs; d++) {
        char **paths;
        int n;
        mdgan_errclear();
        if (dataset_list_frames(t->dirs[d], &paths, &n) != 0) {
            CHECK_FAILED_WITH_MESSAGE();
            continue;
        }
        const size_t ld = strlen(t->dirs[d]);
        for (int i = 0; i < n; i++) {
            CHECK(!strncmp(paths[i], t->dirs[d], ld) && paths[i][ld] == '/');
            CHECK(dataset_is_frame_name(paths[i] + ld + 1));
            if (i) CHECK(dataset_name_cmp(paths[i - 1] + ld + 1, paths[i] + ld + 1) < 0);
        }
        for (int i = 0; i < n; i++) free(paths[i]);
        free(paths);
    }
}

static void check_name_order(const Tree *t) {
    for (int i = 0; i < t->nnodes; i++)
        for (int j = 0; j < t->nnodes; j++) {
            const char *a = t->names[i], *b = t->names[j];
            const int ab = dataset_name_cmp(a, b);
            CHECK(ab >= -1 && ab <= 1 && ab == -dataset_name_cmp(b, a));
            CHECK((ab == 0) == (strcmp(a, b) == 0));
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    make_contents();
    static Tree t;
    fuzz_tmp_path(t.root, sizeof t.root, "tree");
    FuzzIn in = {data, size};
    tree_build(&t, &in);

    Dataset ds;
    Progress pr = {0, 0};
    mdgan_errclear();
    if (dataset_open(&ds, t.root, t.T, t.H, t.W, on_progress, &pr) == 0) check_accepted(&ds, &t);
    else check_refused(&ds, &t);
    CHECK(pr.last == pr.total);
    dataset_close(&ds);

    int side = -1;
    char first[8192];
    mdgan_errclear();
    if (dataset_first_frame_size(t.root, &side, first, sizeof first) == 0) {
        CHECK(side >= 1 && side <= IMAGE_MAX_SIDE);
        const char *base = strrchr(first, '/');
        CHECK(base && dataset_is_frame_name(base + 1) && !strncmp(first, t.root, strlen(t.root)));
    } else {
        CHECK_FAILED_WITH_MESSAGE();
    }
    check_listings(&t);
    check_name_order(&t);
    CHECK(fuzz_rmtree(t.root) == 0);
    tree_free(&t);
    return 0;
}

#else // FUZZ_GENERATOR: the seed corpus

typedef struct {
    unsigned char b[4096];
    size_t n;
} Seed;

static void put(Seed *s, unsigned v) {
    if (s->n == sizeof s->b) exit(1);
    s->b[s->n++] = (unsigned char)v;
}

static void put_name(Seed *s, const char *name) {
    put(s, (unsigned)strlen(name));
    while (*name) put(s, (unsigned char)*name++);
}

static void begin(Seed *s, int T, int H, int W, int fraction) {
    s->n = 0;
    put(s, (unsigned)T - 1), put(s, (unsigned)H - 1), put(s, (unsigned)W - 1), put(s, (unsigned)fraction);
}

enum { S_NONE, S_PNG, S_JPG, S_JPEG, S_PNG_UPPER, S_JPEG_MIXED, S_GIF, S_HIDDEN };

static void op_dir(Seed *s, int parent, const char *name) {
    put(s, 0), put(s, (unsigned)parent), put_name(s, name);
}

static void op_file(Seed *s, int parent, const char *name, int suffix, int kind) {
    put(s, 2 | (unsigned)suffix << 3), put(s, (unsigned)parent), put_name(s, name), put(s, (unsigned)kind);
    if (kind == C_TRUNC) put(s, 40);
    if (kind == C_RAW) put(s, 3), put(s, 0x89), put(s, 'P'), put(s, 'N');
}

// Frames 0..n-1 of one clip folder.
static void op_frames(Seed *s, int parent, int n, int kind) {
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "%d", i);
        op_file(s, parent, name, kind == C_JPEG4 ? S_JPG : S_PNG, kind);
    }
}

static void op_link(Seed *s, int parent, const char *name, int target, int arg) {
    put(s, 5), put(s, (unsigned)parent), put_name(s, name), put(s, (unsigned)target);
    if (target <= 1) put(s, (unsigned)arg);
}

static void op_link_name(Seed *s, int parent, const char *name, const char *to) {
    put(s, 5), put(s, (unsigned)parent), put_name(s, name), put(s, 6), put(s, S_NONE), put_name(s, to);
}

static void emit(const char *name, const Seed *s) {
    static Tree t;
    fuzz_tmp_path(t.root, sizeof t.root, "tree");
    FuzzIn in = {s->b, s->n};
    tree_build(&t, &in);
    Dataset ds;
    mdgan_errclear();
    int accepted = dataset_open(&ds, t.root, t.T, t.H, t.W, NULL, NULL) == 0;
    dataset_close(&ds);
    fuzz_rmtree(t.root);
    tree_free(&t);
    seed_write(name, s->b, s->n, accepted);
}

int main(int argc, char **argv) {
    seed_begin(argc, argv, "fuzz_dataset_gen");
    make_contents();
    Seed s;
    // dirs are numbered as made: 0 the root, then 1, 2, ...
    begin(&s, 3, 4, 4, 1);   // two videos of two clips of 3 frames
    op_dir(&s, 0, "v1"), op_dir(&s, 0, "v2"), op_dir(&s, 1, "c1"), op_dir(&s, 1, "c2"), op_dir(&s, 2, "c1");
    op_frames(&s, 3, 3, C_PNG4), op_frames(&s, 4, 3, C_JPEG4), op_frames(&s, 5, 4, C_PNG4);
    emit("ok_two_videos", &s);

    begin(&s, 2, 8, 6, 2);   // resized, windows, natural order 2 < 10, a skipped clip
    op_dir(&s, 0, "video"), op_dir(&s, 1, "clip"), op_dir(&s, 1, "short");
    op_file(&s, 2, "2", S_PNG, C_PNG4), op_file(&s, 2, "10", S_PNG_UPPER, C_PNG4);
    op_file(&s, 2, "1", S_JPEG_MIXED, C_PNG4);
    op_file(&s, 2, "notes", S_NONE, C_RAW), op_file(&s, 2, "x", S_HIDDEN, C_PNG4), op_file(&s, 3, "0", S_PNG, C_PNG4);
    emit("ok_windows_natural_order", &s);

    begin(&s, 1, 2, 2, 3);   // symlinks: a looping video, a clip linked twice, a frame link chain
    op_dir(&s, 0, "v"), op_dir(&s, 1, "c"), op_frames(&s, 2, 2, C_PNG1);
    op_link(&s, 0, "loop", 4, 0);            // root/loop -> . (the root again)
    op_link(&s, 1, "again", 0, 2);           // v/again -> v/c
    op_link(&s, 2, "self", 2, 0);            // a link to itself
    op_link_name(&s, 2, "a.png", "b.png");   // a.png -> b.png -> a.png
    op_link_name(&s, 2, "b.png", "a.png");
    op_link(&s, 2, "gone.png", 5, 0);
    op_link(&s, 2, "up", 3, 0);
    op_link(&s, 2, "f.png", 1, 2);           // -> the first frame
    emit("ok_symlinks", &s);

    begin(&s, 1, 3, 3, 0);   // names that are not UTF-8, an empty file among good frames
    op_dir(&s, 0, "\xff\xfe"), op_dir(&s, 1, "caf\xe9"), op_file(&s, 2, "\x80\x81", S_PNG, C_PNG4);
    op_dir(&s, 1, "empty"), op_file(&s, 3, "0", S_PNG, C_EMPTY);
    emit("ok_non_utf8_names", &s);

    begin(&s, 2, 4, 4, 1);   // every clip bad: empty, truncated, GIF, mixed sizes, a FIFO
    op_dir(&s, 0, "v"), op_dir(&s, 1, "empty"), op_dir(&s, 1, "trunc"), op_dir(&s, 1, "gif"), op_dir(&s, 1, "mixed");
    op_dir(&s, 1, "fifo");
    op_frames(&s, 2, 2, C_EMPTY), op_frames(&s, 3, 2, C_TRUNC), op_file(&s, 4, "0", S_GIF, C_GIF);
    op_file(&s, 4, "1", S_PNG, C_GIF), op_file(&s, 4, "2", S_PNG, C_GIF), op_file(&s, 5, "0", S_PNG, C_PNG4);
    op_file(&s, 5, "1", S_PNG, C_PNG35), op_file(&s, 6, "0", S_PNG, C_PNG4);
    put(&s, 7 | S_PNG << 3), put(&s, 6), put_name(&s, "1");
    emit("bad_every_clip_skipped", &s);

    begin(&s, 1, 4, 4, 0);
    emit("bad_empty_root", &s);
    begin(&s, 1, 4, 4, 0);   // files where folders belong
    op_file(&s, 0, "0", S_PNG, C_PNG4), op_dir(&s, 0, "v"), op_file(&s, 1, "1", S_PNG, C_PNG4);
    emit("bad_files_not_folders", &s);
    return seed_end("fuzz_dataset_gen");
}

#endif
