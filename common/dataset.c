#include "mdgan/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "mdgan/error.h"
#include "mdgan/image.h"
#include "mdgan/rng.h"

// ---------------------------------------------------------------------------
// Names

static int is_digit(char c) { return c >= '0' && c <= '9'; }

int dataset_name_cmp(const char *a, const char *b) {
    const char *a0 = a, *b0 = b;
    while (*a && *b) {
        if (is_digit(*a) && is_digit(*b)) {
            // compare the numbers: skip leading zeros, then the longer run is larger,
            // then digit by digit (so runs of any length work, no overflow)
            while (*a == '0') a++;
            while (*b == '0') b++;
            size_t la = 0, lb = 0;
            while (is_digit(a[la])) la++;
            while (is_digit(b[lb])) lb++;
            if (la != lb) return la < lb ? -1 : 1;
            int c = memcmp(a, b, la);
            if (c) return c < 0 ? -1 : 1;
            a += la;
            b += lb;
        } else {
            unsigned char ca = (unsigned char)*a, cb = (unsigned char)*b;
            if (ca != cb) return ca < cb ? -1 : 1;
            a++;
            b++;
        }
    }
    if (*a || *b) return *a ? 1 : -1;
    int c = strcmp(a0, b0); // equal as numbers ("01" vs "1"): keep the order total
    return c < 0 ? -1 : c > 0;
}

int dataset_is_frame_name(const char *name) {
    if (!name || name[0] == '.') return 0;
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    return !strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg");
}

static int name_qsort_cmp(const void *a, const void *b) {
    return dataset_name_cmp(*(const char *const *)a, *(const char *const *)b);
}

static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static void free_names(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

enum { LIST_DIRS, LIST_FRAMES };

// Names of the non-hidden entries of dir that are folders (LIST_DIRS) or regular
// frame files (LIST_FRAMES), following symlinks, in natural order. *names is never
// NULL on success.
static int list_dir(const char *dir, int kind, char ***names, int *n) {
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        MDGAN_ERR("cannot read folder %s: %s", dir, strerror(errno));
        return -1;
    }
    char **v = malloc(sizeof *v);
    int cnt = 0, cap = 1;
    if (!v) goto oom;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno) {
                MDGAN_ERR("cannot read folder %s: %s", dir, strerror(errno));
                goto fail;
            }
            break;
        }
        if (e->d_name[0] == '.') continue; // hidden, "." and ".."
        if (kind == LIST_FRAMES && !dataset_is_frame_name(e->d_name)) continue;
        char *full = path_join(dir, e->d_name);
        if (!full) goto oom;
        struct stat st;
        int ok = stat(full, &st) == 0 && (kind == LIST_DIRS ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
        free(full);
        if (!ok) continue; // broken link, socket, a file among the folders...
        if (cnt == cap) {
            if (cap > INT32_MAX / 2) goto oom;
            char **w = realloc(v, (size_t)cap * 2 * sizeof *v);
            if (!w) goto oom;
            v = w;
            cap *= 2;
        }
        if (!(v[cnt] = str_dup(e->d_name))) goto oom;
        cnt++;
    }
    closedir(d);
    qsort(v, (size_t)cnt, sizeof *v, name_qsort_cmp);
    *names = v;
    *n = cnt;
    return 0;
oom:
    MDGAN_ERR("out of memory listing folder %s", dir);
fail:
    free_names(v, cnt);
    closedir(d);
    return -1;
}

int dataset_list_frames(const char *dir, char ***paths, int *n) {
    char **names;
    int cnt;
    if (list_dir(dir, LIST_FRAMES, &names, &cnt) != 0) return -1;
    for (int i = 0; i < cnt; i++) {
        char *p = path_join(dir, names[i]);
        if (!p) {
            free_names(names, cnt);
            MDGAN_ERR("out of memory listing folder %s", dir);
            return -1;
        }
        free(names[i]);
        names[i] = p;
    }
    *paths = names;
    *n = cnt;
    return 0;
}

// ---------------------------------------------------------------------------
// Open

// One clip folder found while scanning, before decoding.
typedef struct {
    int video;      // index into the scan's video names
    char *clip;     // folder name
    char **frames;  // (nframes) full paths, natural order
    int nframes;
    int nwin;       // floor(nframes / T), 0 when skipped before decoding
    size_t slot;    // first cache slot of its windows
    char *warn;     // the warning line when skipped (NULL when usable)
    int reason;     // SKIP_*
} Cand;

enum { SKIP_NONE, SKIP_FEW, SKIP_BAD, SKIP_SIZE, SKIP_OTHER };

static void cand_free(Cand *c) {
    free(c->clip);
    free_names(c->frames, c->nframes);
    free(c->warn);
}

// "mdgan: warning: skipping clip VIDEO/CLIP: <reason>" as a malloc'd line (NULL on OOM;
// the caller then still skips the clip, silently).
static char *warn_line(const char *video, const char *clip, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static char *warn_line(const char *video, const char *clip, const char *fmt, ...) {
    char reason[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    size_t n = strlen(video) + strlen(clip) + strlen(reason) + 64;
    char *s = malloc(n);
    if (s) snprintf(s, n, "mdgan: warning: skipping clip %s/%s: %s", video, clip, reason);
    return s;
}

// Decodes the nwin*T used frames of one clip into cache slots [c->slot, c->slot+nwin).
// On bad data sets c->warn and c->reason and returns -1. Runs on an OpenMP worker:
// touches nothing shared but its own slots.
static int cand_decode(Cand *c, const char *video, unsigned char *cache, int T, int H, int W) {
    size_t fbytes = (size_t)H * W * 3;
    int nuse = c->nwin * T;
    int w0 = 0, h0 = 0;
    for (int f = 0; f < nuse; f++) {
        const char *path = c->frames[f];
        Image img = {0}, rs = {0};
        if (image_load(&img, path) != 0) {
            c->reason = SKIP_BAD;
            c->warn = warn_line(video, c->clip, "%s", mdgan_errmsg());
            return -1;
        }
        if (f == 0) {
            w0 = img.w;
            h0 = img.h;
        } else if (img.w != w0 || img.h != h0) {
            c->reason = SKIP_SIZE;
            c->warn = warn_line(video, c->clip, "frame %s is %dx%d but the clip's first frame %s is %dx%d",
                                path, img.w, img.h, c->frames[0], w0, h0);
            image_free(&img);
            return -1;
        }
        unsigned char *dst = cache + (c->slot * (size_t)T + (size_t)f) * fbytes;
        if (img.w == W && img.h == H) {
            memcpy(dst, img.rgb, fbytes);
        } else {
            if (image_resize(&rs, &img, W, H) != 0) {
                c->reason = SKIP_OTHER;
                c->warn = warn_line(video, c->clip, "cannot resize %s: %s", path, mdgan_errmsg());
                image_free(&img);
                return -1;
            }
            memcpy(dst, rs.rgb, fbytes);
            image_free(&rs);
        }
        image_free(&img);
    }
    return 0;
}

void dataset_close(Dataset *ds) {
    if (!ds) return;
    free(ds->root);
    if (ds->clips)
        for (int i = 0; i < ds->nclips; i++) {
            free(ds->clips[i].video);
            free(ds->clips[i].clip);
            free(ds->clips[i].first_frame);
        }
    free(ds->clips);
    free_names(ds->videos, ds->nvideos);
    free(ds->clip_video);
    free(ds->cache);
    memset(ds, 0, sizeof *ds);
}

int dataset_open(Dataset *ds, const char *root, int T, int H, int W, DatasetProgress cb, void *ctx) {
    memset(ds, 0, sizeof *ds);
    if (!root || !*root) {
        MDGAN_ERR("dataset root is empty");
        return -1;
    }
    if (T < 1 || H < 1 || W < 1 || H > IMAGE_MAX_SIDE || W > IMAGE_MAX_SIDE) {
        MDGAN_ERR("dataset %s: bad clip shape T=%d H=%d W=%d (T >= 1, H and W in 1..%d)", root, T, H, W,
                  IMAGE_MAX_SIDE);
        return -1;
    }
    struct stat st;
    if (stat(root, &st) != 0) {
        MDGAN_ERR("dataset root %s: %s", root, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        MDGAN_ERR("dataset root %s is not a folder", root);
        return -1;
    }

    int rc = -1;
    char **vnames = NULL;
    int nv = 0, ncand = 0, candcap = 0;
    Cand *cand = NULL;
    unsigned char *cache = NULL;
    int *vused = NULL;

    // -- scan: videos, clips, frames (serial; cheap next to decoding)
    if (list_dir(root, LIST_DIRS, &vnames, &nv) != 0) goto done;
    for (int v = 0; v < nv; v++) {
        char *vdir = path_join(root, vnames[v]);
        if (!vdir) goto oom;
        char **cnames;
        int nc;
        if (list_dir(vdir, LIST_DIRS, &cnames, &nc) != 0) {
            // a whole unreadable video: say so and go on, as for a bad clip
            fprintf(stderr, "mdgan: warning: skipping video %s: %s\n", vnames[v], mdgan_errmsg());
            free(vdir);
            continue;
        }
        for (int k = 0; k < nc; k++) {
            if (ncand == candcap) {
                int cap = candcap ? candcap * 2 : 16;
                Cand *nw = realloc(cand, (size_t)cap * sizeof *cand);
                if (!nw) {
                    free_names(cnames, nc);
                    free(vdir);
                    goto oom;
                }
                cand = nw;
                candcap = cap;
            }
            Cand *c = &cand[ncand++];
            memset(c, 0, sizeof *c);
            c->video = v;
            c->clip = cnames[k];
            cnames[k] = NULL;
            char *cdir = path_join(vdir, c->clip);
            if (!cdir) {
                free_names(cnames, nc);
                free(vdir);
                goto oom;
            }
            if (dataset_list_frames(cdir, &c->frames, &c->nframes) != 0) {
                c->reason = SKIP_OTHER;
                c->warn = warn_line(vnames[v], c->clip, "%s", mdgan_errmsg());
            } else if (c->nframes < T) {
                c->reason = SKIP_FEW;
                c->warn = warn_line(vnames[v], c->clip, "%s has %d frame%s, fewer than T=%d", cdir,
                                    c->nframes, c->nframes == 1 ? "" : "s", T);
            } else {
                c->nwin = c->nframes / T;
            }
            free(cdir);
        }
        free_names(cnames, nc);
        free(vdir);
    }
    if (ncand == 0) {
        MDGAN_ERR("no clip folders in dataset root %s (expected %s/<video>/<clip>/<frame>.png or .jpg)",
                  root, root);
        goto done;
    }

    // -- one cache slot per window of every candidate; compacted after decoding
    size_t nslots = 0;
    for (int i = 0; i < ncand; i++) {
        cand[i].slot = nslots;
        nslots += (size_t)cand[i].nwin;
    }
    size_t fbytes = (size_t)H * W * 3;
    if (nslots > 0) {
        if (nslots > INT32_MAX || (double)nslots * T * (double)fbytes > (double)SIZE_MAX / 2) {
            MDGAN_ERR("dataset %s: %zu clips of %dx%dx%d do not fit in memory", root, nslots, T, H, W);
            goto done;
        }
        cache = malloc(nslots * (size_t)T * fbytes);
        if (!cache) {
            MDGAN_ERR("dataset %s: out of memory for the decoded cache (%zu clips of %dx%dx%d, %.1f MiB)",
                      root, nslots, T, H, W, (double)nslots * T * fbytes / 1048576.0);
            goto done;
        }
    }

    // -- decode: each candidate writes only its own slots and its own warning, so the
    // result is the same for any thread count and schedule
    int ndone = 0;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < ncand; i++) {
        if (cand[i].nwin > 0 && cand_decode(&cand[i], vnames[cand[i].video], cache, T, H, W) != 0)
            cand[i].nwin = 0;
        if (cb) {
            #pragma omp critical(dataset_progress)
            {
                ndone++;
                cb(ctx, ndone, ncand);
            }
        }
    }

    // -- warnings in clip order, counts, compaction
    int nfew = 0, nbad = 0, nsize = 0, nother = 0, nclips = 0;
    for (int i = 0; i < ncand; i++) {
        Cand *c = &cand[i];
        if (c->nwin == 0) {
            if (c->warn) fprintf(stderr, "%s\n", c->warn);
            ds->skipped_clips++;
            nfew += c->reason == SKIP_FEW;
            nbad += c->reason == SKIP_BAD;
            nsize += c->reason == SKIP_SIZE;
            nother += c->reason == SKIP_OTHER || c->reason == SKIP_NONE;
        } else {
            size_t wbytes = (size_t)T * fbytes;
            if ((size_t)nclips != c->slot)
                memmove(cache + (size_t)nclips * wbytes, cache + c->slot * wbytes, (size_t)c->nwin * wbytes);
            nclips += c->nwin;
        }
    }
    if (nclips == 0) {
        MDGAN_ERR("no usable clip in dataset root %s: all %d clip folders skipped (%d with fewer than T=%d "
                  "frames, %d with an unreadable or corrupt frame, %d with frames of mixed sizes, %d "
                  "with an unreadable folder or another error; see the warnings above)",
                  root, ncand, nfew, T, nbad, nsize, nother);
        goto done;
    }
    if ((size_t)nclips < nslots) { // give back the skipped clips' room
        unsigned char *shrunk = realloc(cache, (size_t)nclips * T * fbytes);
        if (shrunk) cache = shrunk;
    }

    // -- the index: clips (windows), videos with a usable window
    vused = calloc((size_t)nv, sizeof *vused);
    ds->clips = calloc((size_t)nclips, sizeof *ds->clips);
    ds->clip_video = malloc((size_t)nclips * sizeof *ds->clip_video);
    ds->videos = calloc((size_t)nv, sizeof *ds->videos);
    ds->root = str_dup(root);
    if (!vused || !ds->clips || !ds->clip_video || !ds->videos || !ds->root) goto oom;
    for (int i = 0; i < ncand; i++)
        if (cand[i].nwin > 0) vused[cand[i].video] = 1;
    for (int v = 0; v < nv; v++) {
        if (!vused[v]) continue;
        vused[v] = ds->nvideos + 1; // 1-based index into ds->videos
        ds->videos[ds->nvideos++] = vnames[v];
        vnames[v] = NULL;
    }
    for (int i = 0, j = 0; i < ncand; i++) {
        Cand *c = &cand[i];
        for (int w = 0; w < c->nwin; w++, j++) {
            DatasetClip *dc = &ds->clips[j];
            ds->clip_video[j] = vused[c->video] - 1;
            dc->window = w;
            dc->video = str_dup(ds->videos[vused[c->video] - 1]);
            dc->clip = str_dup(c->clip);
            dc->first_frame = str_dup(c->frames[(size_t)w * T]);
            ds->nclips = j + 1; // so that dataset_close frees what is filled
            if (!dc->video || !dc->clip || !dc->first_frame) goto oom;
        }
    }
    ds->nclips = nclips;
    ds->T = T;
    ds->H = H;
    ds->W = W;
    ds->cache = cache;
    cache = NULL;
    rc = 0;
    goto done;

oom:
    MDGAN_ERR("dataset %s: out of memory", root);
done:
    free(cache);
    free(vused);
    for (int i = 0; i < ncand; i++) cand_free(&cand[i]);
    free(cand);
    free_names(vnames, nv);
    if (rc != 0) {
        int skipped = ds->skipped_clips;
        dataset_close(ds);
        ds->skipped_clips = skipped;
    }
    return rc;
}

// ---------------------------------------------------------------------------
// Split and batches

static int int_cmp(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int dataset_split(const Dataset *ds, double val_fraction, uint64_t seed, int **train, int *ntrain,
                  int **val, int *nval) {
    *train = *val = NULL;
    *ntrain = *nval = 0;
    if (!(val_fraction >= 0.0 && val_fraction <= 1.0)) {
        MDGAN_ERR("val_fraction %g is not in [0, 1]", val_fraction);
        return -1;
    }
    int nv = ds->nvideos;
    int nvv = (int)lround(val_fraction * nv);
    if (val_fraction > 0 && nv >= 2 && nvv < 1) nvv = 1;
    if (nvv > nv - 1) nvv = nv - 1;
    if (nvv < 0) nvv = 0;

    int *perm = malloc((size_t)(nv > 0 ? nv : 1) * sizeof *perm);
    char *isval = calloc((size_t)(nv > 0 ? nv : 1), 1);
    int *tr = malloc((size_t)(ds->nclips > 0 ? ds->nclips : 1) * sizeof *tr);
    int *va = malloc((size_t)(ds->nclips > 0 ? ds->nclips : 1) * sizeof *va);
    if (!perm || !isval || !tr || !va) {
        free(perm);
        free(isval);
        free(tr);
        free(va);
        MDGAN_ERR("dataset %s: out of memory splitting %d clips", ds->root ? ds->root : "?", ds->nclips);
        return -1;
    }
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < nv; i++) perm[i] = i;
    for (int i = nv - 1; i > 0; i--) { // Fisher-Yates
        int j = (int)rng_below(&r, (uint64_t)i + 1);
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < nvv; i++) isval[perm[i]] = 1;
    int nt = 0, nvc = 0;
    for (int i = 0; i < ds->nclips; i++) {
        if (isval[ds->clip_video[i]])
            va[nvc++] = i;
        else
            tr[nt++] = i;
    }
    // already ascending (clips are scanned in order); sorting states the contract
    qsort(tr, (size_t)nt, sizeof *tr, int_cmp);
    qsort(va, (size_t)nvc, sizeof *va, int_cmp);
    free(perm);
    free(isval);
    *train = tr;
    *ntrain = nt;
    *val = va;
    *nval = nvc;
    return 0;
}

void dataset_clip(const Dataset *ds, int idx, float *out) {
    // u8 -> [-1, 1] exactly as image_to_chw computes it
    float lut[256];
    for (int u = 0; u < 256; u++) lut[u] = u / 127.5f - 1.0f;
    size_t THW = (size_t)ds->T * ds->H * ds->W;
    const unsigned char *src = ds->cache + (size_t)idx * THW * 3; // (T, H, W, 3)
    for (size_t p = 0; p < THW; p++) {
        out[p] = lut[src[3 * p]];
        out[THW + p] = lut[src[3 * p + 1]];
        out[2 * THW + p] = lut[src[3 * p + 2]];
    }
}

void dataset_batch(const Dataset *ds, const int *idx, int n, float *out) {
    size_t clip = (size_t)3 * ds->T * ds->H * ds->W;
    for (int i = 0; i < n; i++) dataset_clip(ds, idx[i], out + (size_t)i * clip);
}

void dataset_progress_stderr(void *ctx, int done, int total) {
    (void)ctx;
    if (done == total || done % 64 == 0) fprintf(stderr, "\rdecoding clips: %d/%d", done, total);
    if (done == total) fputc('\n', stderr);
}

int dataset_first_frame_size(const char *root, int *size, char *path, size_t pathn) {
    struct stat st;
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        MDGAN_ERR("input %s is not a folder (expected %s/<video>/<clip>/<frame>.png or .jpg)", root, root);
        return -1;
    }
    char **videos, **clips, **frames, first[8192] = "";
    int nv, nc, nf;
    if (list_dir(root, LIST_DIRS, &videos, &nv) != 0) return -1;
    for (int v = 0; v < nv && !first[0]; v++) {
        char *vdir = path_join(root, videos[v]);
        if (!vdir || list_dir(vdir, LIST_DIRS, &clips, &nc) != 0) { // dataset_open says why
            free(vdir);
            continue;
        }
        for (int c = 0; c < nc && !first[0]; c++) {
            char *cdir = path_join(vdir, clips[c]);
            if (cdir && dataset_list_frames(cdir, &frames, &nf) == 0) {
                if (nf > 0) snprintf(first, sizeof first, "%s", frames[0]);
                free_names(frames, nf);
            }
            free(cdir);
        }
        free_names(clips, nc);
        free(vdir);
    }
    free_names(videos, nv);
    if (!first[0]) {
        MDGAN_ERR("no frames in input %s (expected %s/<video>/<clip>/<frame>.png or .jpg)", root, root);
        return -1;
    }
    if (path) snprintf(path, pathn, "%s", first);
    Image img = {0};
    int rc = image_load(&img, first);
    if (rc == 0) *size = img.w < img.h ? img.w : img.h;
    image_free(&img);
    return rc;
}
