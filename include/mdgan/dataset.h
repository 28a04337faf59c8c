#ifndef MDGAN_DATASET_H
#define MDGAN_DATASET_H
// Training data in the Sky Time-lapse layout: root/<video>/<clip>/<frame>.{png,jpg,jpeg}.
//
// - Entries whose name starts with '.' are ignored at every level; so are plain files
//   in root and in a video folder, and files in a clip folder whose extension is not
//   .png, .jpg or .jpeg (any case). Symbolic links are followed.
// - Names (videos, clips, frames) are ordered by dataset_name_cmp: "natural" order, in
//   which runs of digits compare as numbers, so "2.png" < "10.png". For zero-padded
//   names of one width, as the Sky Time-lapse dataset has, that is strcmp order.
// - A clip of F frames gives floor(F / T) non-overlapping windows, frames
//   [w*T, (w+1)*T); the F mod T trailing frames are not used (nor read).
// - Every used frame is decoded once at open (OpenMP over clips; the result does not
//   depend on the thread count), resized to W x H with image_resize (area averaging
//   when shrinking) and kept as uint8 in one cache; batches are read from it.
// - Bad data never aborts the open: a clip with an unreadable or corrupt frame, fewer
//   than T frames, or frames of different sizes is skipped with one line on stderr,
//     mdgan: warning: skipping clip VIDEO/CLIP: <reason naming the file or folder>
//   (printed after decoding, in clip order) and counted in skipped_clips.
//   A missing root, a root that is not a folder, or a root without a single usable
//   clip is an error (-1, the message names root and, for the last, why clips were
//   skipped).

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *video, *clip;      // folder names
    char *first_frame;       // path of the window's first frame (for messages and outputs)
    int window;              // index of this T-frame window within its clip
} DatasetClip;

typedef struct {
    char *root;
    int T, H, W;
    int nclips;
    DatasetClip *clips;      // (nclips) usable windows, sorted by (video, clip, window)
    int nvideos;
    char **videos;           // (nvideos) names of the videos with a usable window, sorted
    int *clip_video;         // (nclips) index into videos
    unsigned char *cache;    // (nclips, T, H, W, 3) uint8, decoded once at open
    int skipped_clips;       // clip folders skipped (corrupt frame, too few frames, mixed sizes)
} Dataset;

// Progress while decoding: done of total clip folders decoded (frames of skipped or
// too-short clips count as done at once). Called from inside an OpenMP critical
// section, from any thread, done increasing by one per call up to total. May be NULL.
typedef void (*DatasetProgress)(void *ctx, int done, int total);
// The shorter side of the first frame (natural order) of the first clip folder under
// root/<video>/<clip>/ that holds one, and that frame's path (path may be NULL): the
// size of a folder of clips. -1 with a message naming root (or the frame) otherwise.
int dataset_first_frame_size(const char *root, int *size, char *path, size_t pathn);
// A DatasetProgress that rewrites "decoding clips: done/total" on stderr (for a terminal).
void dataset_progress_stderr(void *ctx, int done, int total);

// Fills *ds (overwritten, not freed first). On failure *ds is all {0} except
// skipped_clips, which still counts the clips that were skipped. T >= 1, H and W in
// 1..IMAGE_MAX_SIDE. Memory: nclips * T * H * W * 3 bytes of cache.
int dataset_open(Dataset *ds, const char *root, int T, int H, int W, DatasetProgress cb, void *ctx);
void dataset_close(Dataset *ds); // NULL-safe; leaves {0}

// Deterministic train/validation split BY VIDEO: the video indices 0..nvideos-1 (names
// sorted) are shuffled by Fisher-Yates with the library's Rng seeded with `seed`; the
// first nval_videos of them are validation, where
//   nval_videos = round(val_fraction * nvideos), raised to 1 when val_fraction > 0
//   and nvideos >= 2, and lowered to nvideos - 1 so that training keeps a video.
// With one video, or val_fraction 0, everything is training and *nval = 0.
// *train and *val are malloc'd (never NULL, even when empty; caller frees) clip
// indices in ascending order; every clip is on exactly one side and no video on both.
// val_fraction must be in [0, 1]: -1 with a message naming val_fraction otherwise.
int dataset_split(const Dataset *ds, double val_fraction, uint64_t seed, int **train, int *ntrain,
                  int **val, int *nval);

// Clip idx (0 <= idx < nclips) as float in [-1, 1]: out[c][t][y][x] = u8 / 127.5 - 1,
// the same values image_to_chw gives for the resized frame.
void dataset_clip(const Dataset *ds, int idx,
                  float *out); // (3, T, H, W)
// n clips back to back.
void dataset_batch(const Dataset *ds, const int *idx, int n,
                   float *out); // (n, 3, T, H, W)

// Natural order of names: runs of ASCII digits compare by numeric value (any length;
// leading zeros ignored), everything else bytewise; names that compare equal that way
// ("01" and "1") fall back to strcmp, so the order is total. strcmp-like result.
int dataset_name_cmp(const char *a, const char *b);
// 1 when name is a frame file name: not hidden, ends in .png, .jpg or .jpeg (any case).
int dataset_is_frame_name(const char *name);
// The frames of one clip folder as full paths ("dir/name"), in dataset_name_cmp order
// of their names. *paths is malloc'd (free each, then the array; never NULL on success).
// -1 with a message naming dir when it cannot be read.
int dataset_list_frames(const char *dir, char ***paths, int *n);

#endif
