#ifndef MDGAN_IMAGE_H
#define MDGAN_IMAGE_H
// Images: PNG/JPEG in, PNG/JPEG/animated GIF out, resizing, and the conversion to and
// from the library's float layout (CHW, values in [-1, 1]).
//
// An Image owns its pixels: 8-bit RGB, row-major, no padding. Every function that
// fills an Image allocates img->rgb (release with image_free) and leaves {0} on
// failure; an Image passed as output is overwritten, not freed first.
// All functions return 0, or -1 with a message through mdgan/error.h that names the
// file at fault. The libraries never print: their messages go into that message.

#include <stddef.h>

// Largest width or height image_load and image_resize accept: a frame bigger than
// this is a mistake (or a decompression bomb), not a photo we mean to shrink.
#define IMAGE_MAX_SIDE 16384
// Largest side the writers accept (GIF and PNG headers hold 16 bits comfortably;
// JPEG stops at 65500 and says so itself).
#define IMAGE_MAX_OUT_SIDE 65535

typedef struct {
    int w, h;
    unsigned char *rgb; // (h, w, 3)
} Image;

// PNG or JPEG, told apart by their magic bytes (never by the extension).
// PNG: any bit depth, palette, gray, with or without alpha or tRNS, interlaced or
// not -> RGB8 (16-bit samples scaled to 8 with rounding; alpha dropped, not
// composited; gamma and colour profiles ignored).
// JPEG: YCbCr or grayscale -> RGB8; CMYK/YCCK is refused. libjpeg warnings (corrupt
// or truncated data) are errors: a silently grey-filled frame would poison training.
// Errors name the path: missing or unreadable file, empty file, not PNG/JPEG,
// truncated or corrupt data, a side > IMAGE_MAX_SIDE.
int image_load(Image *img, const char *path);

// Atomic writes: "<path>.tmp.<pid>" in the same folder, fsync, rename over path,
// fsync the folder. On failure path is untouched (or, if only the final folder
// fsync failed, complete but maybe not durable).
int image_save_png(const Image *img, const char *path);
int image_save_jpeg(const Image *img, const char *path, int quality); // quality 1..100

void image_free(Image *img); // NULL-safe; leaves {0}

// Resize to w x h, each axis on its own:
//   shrinking: area averaging, the exact box filter: output pixel i covers source
//     interval [i*s, (i+1)*s), s = src/dst, and each source pixel weighs by the
//     length of its overlap (fractional coverage included), divided by s;
//   enlarging: bilinear with half-pixel centres (PyTorch align_corners=False):
//     x = (i + 0.5) * src/dst - 0.5 clamped below at 0, neighbours clamped at the edge;
//   equal: a copy.
// Computed in float, rounded half up to u8. dst must not be src.
int image_resize(Image *dst, const Image *src, int w, int h);

// Centre crop to the largest square (the odd pixel, if any, goes to the right /
// bottom margin), then image_resize to size x size: what predict does to a photo.
int image_fit_square(Image *dst, const Image *src, int size);

// out[c][y][x] = rgb[y][x][c] / 127.5 - 1
void image_to_chw(float *out,              // (3, h, w)
                  const Image *img);
// rgb[y][x][c] = round((chw[c][y][x] + 1) * 127.5) clamped to 0..255 (NaN -> 0).
// Exact inverse of image_to_chw for every u8 value.
int image_from_chw(Image *img, const float *chw, // (3, h, w)
                   int h, int w);

// One u8 sample from a float in [-1, 1], as image_from_chw does it.
unsigned char image_u8_from_float(float v);

// Contact sheet: one row per video, one column per frame, `gap` white pixels between
// tiles (none around the border):
//   out->w = T*W + (T-1)*gap,  out->h = nvideos*H + (nvideos-1)*gap.
int image_contact_sheet(Image *out,
                        const float *const *videos, // nvideos x (3, T, H, W) in [-1, 1]
                        int nvideos, int T, int H, int W, int gap);

// The same sheet drawn a row at a time, as the clips come (refine infer draws each clip
// once it is refined rather than keeping its frames to the end): the white canvas for
// up to `rows` rows of T frames of H x W, each pixel enlarged to zoom x zoom; a row
// drawn from frames 0 .. min(T, Tv)-1 of a (3, Tv, H, W) video; keep_rows cuts the
// sheet to its first rows. sheet_canvas_init returns -1 (with a message) on a bad shape,
// a side over IMAGE_MAX_OUT_SIDE or no memory.
typedef struct {
    Image img;
    int rows, T, H, W, zoom, gap;
} SheetCanvas;
int sheet_canvas_init(SheetCanvas *c, int rows, int T, int H, int W, int zoom, int gap);
void sheet_canvas_draw(SheetCanvas *c, int row, const float *video, int Tv);
void sheet_canvas_keep_rows(SheetCanvas *c, int rows);
void sheet_canvas_free(SheetCanvas *c);

// Animated GIF89a, looping forever (NETSCAPE2.0), T frames of delay_cs centiseconds.
// With nvideos > 1 the clips play side by side, IMAGE_GIF_GAP white columns apart:
//   width = nvideos*W + (nvideos-1)*IMAGE_GIF_GAP, height = H.
// One global palette: the fixed 6x7x6 RGB cube (252 colours; levels of green
// round(k*255/6), of red and blue k*51) with a 4x4 ordered (Bayer) dither, which is
// deterministic and does not crawl between frames. A colour on the cube, white and
// black included, comes back exactly.
#define IMAGE_GIF_GAP 2
int image_save_gif(const char *path,
                   const float *const *videos, // nvideos x (3, T, H, W) in [-1, 1]
                   int nvideos, int T, int H, int W, int delay_cs);

// Nearest-neighbour enlargement by k of every frame of a clip, so small frames can be
// judged by eye: out[c][t][y][x] = in[c][t][y / k][x / k].
void image_upscale_nearest(float *out,      // (C, T, H*k, W*k)
                           const float *in, // (C, T, H, W)
                           int C, int T, int H, int W, int k);

// Frames smaller than IMAGE_VIEW_MIN_SIDE pixels are enlarged on contact sheets and GIFs,
// so that a 32x32 clip can be judged by eye: the factor for frames of side S.
#define IMAGE_VIEW_MIN_SIDE 128
int image_view_zoom(int S);
// out[i] = videos[i] (3, T, H, W) enlarged by zoom into one buffer, *buf (caller frees;
// NULL when zoom is 1 and out[i] = videos[i]). -1 when out of memory.
int image_zoom_videos(const float **out, float **buf, const float *const *videos, int nvideos, int T, int H, int W,
                      int zoom);

// image_contact_sheet written to path as PNG.
int image_save_contact_sheet(const char *path, const float *const *videos, int nvideos, int T, int H, int W, int gap);
// Frame t of video (3, T, H, W) in [-1, 1] -> DIR/<prefix><first + t>.png, the number
// zero-padded to `digits`, for t = 0..T-1 (each file written atomically).
int image_save_frames(const char *dir, const char *prefix, int digits, long first, const float *video, int T, int H,
                      int W);
// The same, and a contact sheet of the given clips (each (3, T, H, W)) written at once
// beside the frames (sheet NULL: frames only).
typedef struct {
    const char *path;
    const float *const *videos;
    int nvideos, gap;
} ImageSheet;
int image_save_frames_and_sheet(const char *dir, const char *prefix, int digits, long first, const float *video, int T,
                                int H, int W, const ImageSheet *sheet);
// Frame t -> DIR/names[t] (each a file name with its extension, written as PNG).
int image_save_frames_named(const char *dir, char *const *names, const float *video, int T, int H, int W);

#endif
