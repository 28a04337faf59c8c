// libFuzzer target for the image loader (common/image.c): PNG and JPEG through libpng
// and libjpeg with our error handling, and anything else (GIF, which the loader does
// not decode, truncated or foreign files) refused. Build and run: `make fuzz`.
//
// Input: the bytes of a file. image_load takes a path, so the input is written to a
// file in a private temporary folder, as every frame on disk is read.
//
// Beyond "no crash, no leak, no UB" it aborts when an invariant fails:
//   - a refusal leaves a message naming the file and an empty Image; a file with
//     neither signature is refused as such;
//   - an accepted image has sides in 1..IMAGE_MAX_SIDE and w x h x 3 readable bytes;
//     up to FUZZ_MAX_PIXELS it is also written as PNG and read back to the same
//     pixels, and resized (image_resize, image_fit_square, as the dataset and predict
//     do) to the asked size.
//
// Built with -DFUZZ_GENERATOR it writes the seed corpus instead (`make fuzz-corpus`):
// PNG, JPEG and GIF files from the library's writers and from libpng/libjpeg directly
// (palette, grey, 16-bit, alpha, tRNS, interlaced, progressive, CMYK), and damaged ones.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdgan/image.h"
#include "fuzzutil.h"

#define FUZZ_MAX_PIXELS (256 * 256)

#ifndef FUZZ_GENERATOR

static int has_signature(const uint8_t *d, size_t n) {
    static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return (n >= 8 && !memcmp(d, png, 8)) || (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF);
}

static void check_image(const Image *img, int w, int h) {
    CHECK(img->w == w && img->h == h && img->rgb != NULL);
    unsigned sum = 0;   // every byte read: AddressSanitizer checks the buffer's size
    for (size_t i = 0; i < (size_t)w * h * 3; i++) sum += img->rgb[i];
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char in[4200], out[4200];
    fuzz_input_file(in, sizeof in, "in.img", data, size);
    fuzz_tmp_path(out, sizeof out, "out.png");
    Image img = {-1, -1, NULL};
    mdgan_errclear();
    if (image_load(&img, in) != 0) {
        CHECK_FAILED_WITH_MESSAGE();
        CHECK(strstr(mdgan_errmsg(), in) != NULL);
        CHECK(img.w == 0 && img.h == 0 && img.rgb == NULL);
        CHECK(has_signature(data, size) || strstr(mdgan_errmsg(), "not a PNG or JPEG") ||
              strstr(mdgan_errmsg(), "empty file"));
        return 0;
    }
    CHECK(has_signature(data, size));
    CHECK(img.w >= 1 && img.h >= 1 && img.w <= IMAGE_MAX_SIDE && img.h <= IMAGE_MAX_SIDE);
    check_image(&img, img.w, img.h);
    if ((size_t)img.w * img.h <= FUZZ_MAX_PIXELS) {
        Image back;
        CHECK(image_save_png(&img, out) == 0 && image_load(&back, out) == 0);
        check_image(&back, img.w, img.h);
        CHECK(memcmp(back.rgb, img.rgb, (size_t)img.w * img.h * 3) == 0);
        image_free(&back);
        Image rs, sq;
        const int rw = 1 + data[size - 1] % 40, rh = 1 + data[size / 2] % 40;
        CHECK(image_resize(&rs, &img, rw, rh) == 0);
        check_image(&rs, rw, rh);
        image_free(&rs);
        CHECK(image_fit_square(&sq, &img, 16) == 0);
        check_image(&sq, 16, 16);
        image_free(&sq);
    }
    image_free(&img);
    CHECK(img.rgb == NULL && img.w == 0);
    return 0;
}

#else // FUZZ_GENERATOR: the seed corpus

#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>

static char gen_tmp[4200];

static int image_accepts(const char *path) {
    Image img;
    int ok = image_load(&img, path) == 0;
    image_free(&img);
    return ok;
}

// The file at gen_tmp as a seed: its first n bytes (all when n is 0), byte flip
// flipped when it is inside.
static void seed_file(const char *name, size_t n, size_t flip) {
    size_t len;
    unsigned char *b = fuzz_read_file(gen_tmp, &len);
    must(b != NULL);
    if (n && n < len) len = n;
    if (flip < len) b[flip] ^= 0x5a;
    must(fuzz_write_file(gen_tmp, b, len) == 0);
    free(b);
    seed_write_file(name, gen_tmp, image_accepts);
}

// A w x h gradient with some structure, so the encoders have something to code.
static void gradient(Image *img, int w, int h) {
    img->w = w, img->h = h;
    img->rgb = malloc((size_t)w * h * 3);
    must(img->rgb != NULL);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *p = img->rgb + ((size_t)y * w + x) * 3;
            p[0] = (unsigned char)(x * 255 / (w > 1 ? w - 1 : 1));
            p[1] = (unsigned char)(y * 255 / (h > 1 ? h - 1 : 1));
            p[2] = (unsigned char)((x ^ y) * 37);
        }
}

// A PNG of any colour type and depth, written with libpng itself (image_save_png
// writes 8-bit RGB only).
static void write_png_kind(int w, int h, int color, int depth, int interlace, int trns) {
    FILE *f = fopen(gen_tmp, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    must(f && png && info);
    if (setjmp(png_jmpbuf(png))) must(0);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_color pal[16];
    for (int i = 0; i < 16; i++) pal[i] = (png_color){(png_byte)(i * 16), (png_byte)(255 - i * 16), (png_byte)(i * 5)};
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_PLTE(png, info, pal, 16);
    png_byte alpha[2] = {0, 128};
    png_color_16 key = {0, 1, 1, 1, 1};
    if (trns) png_set_tRNS(png, info, alpha, color == PNG_COLOR_TYPE_PALETTE ? 2 : 0, &key);
    png_write_info(png, info);
    const int channels = color == PNG_COLOR_TYPE_RGB ? 3 : color == PNG_COLOR_TYPE_RGB_ALPHA ? 4
                         : color == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    const size_t rowbytes = ((size_t)w * channels * depth + 7) / 8;
    png_bytep row = calloc(rowbytes, 1);
    must(row != NULL);
    const int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (int y = 0; y < h; y++) {
            for (size_t i = 0; i < rowbytes; i++) row[i] = (png_byte)(i * 13 + (size_t)y * 7 + (depth < 8 ? 0 : 1));
            if (color == PNG_COLOR_TYPE_PALETTE && depth == 8)
                for (size_t i = 0; i < rowbytes; i++) row[i] &= 15;
            png_write_row(png, row);
        }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    must(fclose(f) == 0);
}

// A JPEG with libjpeg itself: grey, progressive or CMYK, which image_save_jpeg does
// not write.
static void write_jpeg_kind(int w, int h, J_COLOR_SPACE cs, int progressive) {
    const int comps = cs == JCS_GRAYSCALE ? 1 : cs == JCS_CMYK ? 4 : 3;
    FILE *f = fopen(gen_tmp, "wb");
    must(f != NULL);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h;
    c.input_components = comps, c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 75, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    JSAMPLE *row = malloc((size_t)w * comps);
    must(row != NULL);
    while (c.next_scanline < c.image_height) {
        for (int i = 0; i < w * comps; i++) row[i] = (JSAMPLE)(i * 9 + (int)c.next_scanline * 5);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    must(fclose(f) == 0);
}

int main(int argc, char **argv) {
    seed_begin(argc, argv, "fuzz_image_gen");
    fuzz_tmp_path(gen_tmp, sizeof gen_tmp, "seed.img");
    Image img;

    // ---- the library's writers
    static const int sizes[][2] = {{1, 1}, {3, 5}, {16, 16}, {33, 17}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char name[64];
        gradient(&img, sizes[i][0], sizes[i][1]);
        must(image_save_png(&img, gen_tmp) == 0);
        snprintf(name, sizeof name, "ok_png_%dx%d", sizes[i][0], sizes[i][1]);
        seed_file(name, 0, SIZE_MAX);
        must(image_save_jpeg(&img, gen_tmp, i % 2 ? 95 : 20) == 0);
        snprintf(name, sizeof name, "ok_jpeg_%dx%d", sizes[i][0], sizes[i][1]);
        seed_file(name, 0, SIZE_MAX);
        image_free(&img);
    }
    float clip[3 * 2 * 4 * 6];   // (3, T=2, H=4, W=6)
    for (size_t i = 0; i < sizeof clip / sizeof clip[0]; i++) clip[i] = (float)(i % 17) / 8.0f - 1.0f;
    const float *videos[1] = {clip};
    must(image_save_gif(gen_tmp, videos, 1, 2, 4, 6, 10) == 0);
    seed_file("bad_gif_animated", 0, SIZE_MAX);   // the loader decodes PNG and JPEG only

    // ---- PNG kinds through libpng
    static const struct {
        const char *name;
        int w, h, color, depth, interlace, trns;
    } pngs[] = {
        {"ok_png_palette_trns", 5, 3, PNG_COLOR_TYPE_PALETTE, 8, PNG_INTERLACE_NONE, 1},
        {"ok_png_palette_4bit", 9, 4, PNG_COLOR_TYPE_PALETTE, 4, PNG_INTERLACE_NONE, 0},
        {"ok_png_gray_1bit", 7, 7, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, 0},
        {"ok_png_gray16_interlaced_trns", 6, 5, PNG_COLOR_TYPE_GRAY, 16, PNG_INTERLACE_ADAM7, 1},
        {"ok_png_gray_alpha", 4, 4, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE, 0},
        {"ok_png_rgba16_interlaced", 5, 6, PNG_COLOR_TYPE_RGB_ALPHA, 16, PNG_INTERLACE_ADAM7, 0},
        {"ok_png_rgb16_trns", 3, 2, PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_NONE, 1},
    };
    for (size_t i = 0; i < sizeof pngs / sizeof pngs[0]; i++) {
        write_png_kind(pngs[i].w, pngs[i].h, pngs[i].color, pngs[i].depth, pngs[i].interlace, pngs[i].trns);
        seed_file(pngs[i].name, 0, SIZE_MAX);
    }

    // ---- JPEG kinds through libjpeg
    write_jpeg_kind(9, 7, JCS_GRAYSCALE, 0);
    seed_file("ok_jpeg_gray", 0, SIZE_MAX);
    write_jpeg_kind(19, 11, JCS_RGB, 1);
    seed_file("ok_jpeg_progressive", 0, SIZE_MAX);
    write_jpeg_kind(8, 8, JCS_CMYK, 0);
    seed_file("bad_jpeg_cmyk", 0, SIZE_MAX);

    // ---- damaged
    gradient(&img, 16, 16);
    must(image_save_png(&img, gen_tmp) == 0);
    seed_file("bad_png_truncated", 60, SIZE_MAX);
    must(image_save_png(&img, gen_tmp) == 0);
    seed_file("bad_png_ihdr_crc", 0, 29);
    must(image_save_png(&img, gen_tmp) == 0);
    seed_file("bad_png_signature_only", 8, SIZE_MAX);
    must(image_save_jpeg(&img, gen_tmp, 80) == 0);
    seed_file("bad_jpeg_truncated", 300, SIZE_MAX);
    must(image_save_jpeg(&img, gen_tmp, 80) == 0);
    seed_file("bad_jpeg_soi_only", 3, SIZE_MAX);
    image_free(&img);
    must(fuzz_write_file(gen_tmp, "BM\x36\0\0\0", 6) == 0);
    seed_file("bad_bmp", 0, SIZE_MAX);
    return seed_end("fuzz_image_gen");
}

#endif
