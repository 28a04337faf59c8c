// image: PNG/JPEG round trips, every PNG flavour (written here with libpng directly),
// bad files (return -1, name the file, libraries print nothing), resize against
// hand-computed box-filter and PyTorch bilinear values, CHW conversion, contact
// sheet and animated GIF read back with giflib.
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <gif_lib.h>
#include <jpeglib.h>
#include <omp.h>
#include <png.h>
#include <zlib.h>

#include "mdgan/fileio.h"
#include "mdgan/image.h"

static char tmpdir[4096];

static int setup(void **state) {
    (void)state;
    make_tmpdir(tmpdir, sizeof tmpdir);
    return 0;
}
static int teardown(void **state) {
    (void)state;
    rm_rf(tmpdir);
    return 0;
}

static void tpath(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmpdir, name); }

static uint64_t rng_state = 88172645463325252ull;
static unsigned rnd(void) { // xorshift64
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state >> 32);
}

static Image rand_image(int w, int h) {
    Image im = {w, h, malloc((size_t)w * h * 3)};
    assert_non_null(im.rgb);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) im.rgb[i] = (unsigned char)(rnd() & 255);
    return im;
}

static Image const_image(int w, int h, unsigned char r, unsigned char g, unsigned char b) {
    Image im = {w, h, malloc((size_t)w * h * 3)};
    assert_non_null(im.rgb);
    for (size_t p = 0; p < (size_t)w * h; p++) {
        im.rgb[3 * p] = r;
        im.rgb[3 * p + 1] = g;
        im.rgb[3 * p + 2] = b;
    }
    return im;
}

// A photo-like image: smooth gradients plus a little texture (JPEG's home ground).
static Image smooth_image(int w, int h) {
    Image im = {w, h, malloc((size_t)w * h * 3)};
    assert_non_null(im.rgb);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *p = im.rgb + ((size_t)y * w + x) * 3;
            p[0] = (unsigned char)(40 + 150 * x / w);
            p[1] = (unsigned char)(60 + 120 * y / h);
            p[2] = (unsigned char)(128 + 60 * sin(x * 0.2) * cos(y * 0.15));
        }
    return im;
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    assert_true(len >= 0);
    rewind(f);
    unsigned char *p = malloc((size_t)len + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

// No "<name>.tmp.*" left behind by an atomic write.
static void assert_no_tmp_files(void) {
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) fail_msg("temporary file left behind: %s", e->d_name);
    closedir(d);
}

// ---------------------------------------------------------------------------
// libpng writer for the PNG flavours: rows are raw PNG rows of the given format.

typedef struct {
    int color_type, bit_depth, interlace;
    const png_color *palette;
    int npalette;
    const png_byte *trns; // palette alpha, or NULL
    int ntrns;
} PngSpec;

static void write_png_raw(const char *path, int w, int h, const PngSpec *s, unsigned char **rows) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    assert_non_null(png);
    png_infop info = png_create_info_struct(png);
    assert_non_null(info);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng failed writing test file %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, s->bit_depth, s->color_type, s->interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (s->palette) png_set_PLTE(png, info, s->palette, s->npalette);
    if (s->trns) png_set_tRNS(png, info, s->trns, s->ntrns, NULL);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    assert_int_equal(fclose(f), 0);
}

static unsigned char **alloc_rows(int h, size_t rowbytes) {
    unsigned char **rows = malloc((size_t)h * sizeof *rows);
    assert_non_null(rows);
    for (int y = 0; y < h; y++) {
        rows[y] = calloc(rowbytes, 1);
        assert_non_null(rows[y]);
    }
    return rows;
}
static void free_rows(unsigned char **rows, int h) {
    for (int y = 0; y < h; y++) free(rows[y]);
    free(rows);
}

static void load_ok(Image *im, const char *path, int w, int h) {
    if (image_load(im, path) != 0) fail_msg("image_load %s: %s", path, mdgan_errmsg());
    assert_int_equal(im->w, w);
    assert_int_equal(im->h, h);
    assert_non_null(im->rgb);
}

// ---------------------------------------------------------------------------

static void test_png_roundtrip_exact(void **state) {
    (void)state;
    char path[4200];
    tpath(path, sizeof path, "rt.png");
    Image a = rand_image(37, 23), b;
    assert_int_equal(image_save_png(&a, path), 0);
    load_ok(&b, path, 37, 23);
    assert_memory_equal(a.rgb, b.rgb, (size_t)37 * 23 * 3);
    // Overwriting an existing file goes through the same rename.
    image_free(&b);
    Image c = rand_image(5, 9);
    assert_int_equal(image_save_png(&c, path), 0);
    load_ok(&b, path, 5, 9);
    assert_memory_equal(c.rgb, b.rgb, (size_t)5 * 9 * 3);
    assert_no_tmp_files();
    image_free(&a);
    image_free(&b);
    image_free(&c);
    assert_null(c.rgb);
    assert_int_equal(c.w, 0);
    image_free(NULL);
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// The writer's bands (a deflate stream per 64 rows, each its own IDAT chunk), read back
// by libpng, and checked by hand: every chunk's CRC, the IDAT data one zlib stream that
// inflates (adler32 included) to exactly h filtered rows; a file's bytes the same on 1
// and 2 threads.
static void test_png_bands(void **state) {
    (void)state;
    const int sizes[][2] = {{1, 1}, {1, 64}, {3, 65}, {200, 129}, {64, 300}};
    char path[4200];
    tpath(path, sizeof path, "bands.png");
    const int saved = omp_get_max_threads();
    for (int k = 0; k < 5; k++) {
        const int w = sizes[k][0], h = sizes[k][1];
        Image a = rand_image(w, h), b;
        unsigned char *first = NULL;
        size_t nfirst = 0;
        for (int t = 1; t <= 2; t++) {
            omp_set_num_threads(t);
            assert_int_equal(image_save_png(&a, path), 0);
            load_ok(&b, path, w, h);
            assert_memory_equal(a.rgb, b.rgb, (size_t)w * h * 3);
            image_free(&b);
            unsigned char *f;
            size_t n;
            assert_int_equal(fio_read_all(path, &f, &n), 0);
            if (t == 1) {
                first = f, nfirst = n;
                continue;
            }
            assert_int_equal(n, nfirst);
            assert_memory_equal(f, first, n);
            free(f);
        }
        unsigned char *z = malloc(nfirst), *rows = malloc((size_t)h * (3 * w + 1) + 1);
        assert_non_null(z), assert_non_null(rows);
        size_t nz = 0, at = 8;
        int idats = 0;
        while (at + 12 <= nfirst) {
            const uint32_t len = be32(first + at);
            assert_true(at + 12 + len <= nfirst);
            const uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), first + at + 4, len + 4);
            assert_int_equal(be32(first + at + 8 + len), crc);
            if (!memcmp(first + at + 4, "IDAT", 4)) memcpy(z + nz, first + at + 8, len), nz += len, idats++;
            at += 12 + len;
        }
        assert_int_equal(at, nfirst);
        assert_int_equal(idats, (h + 63) / 64);
        uLongf nrows = (uLongf)h * (3 * w + 1) + 1;
        assert_int_equal(uncompress(rows, &nrows, z, (uLong)nz), Z_OK);
        assert_int_equal(nrows, (uLongf)h * (3 * w + 1));
        free(z), free(rows), free(first);
        image_free(&a);
    }
    omp_set_num_threads(saved);
}

static double mean_abs_diff(const Image *a, const Image *b) {
    double s = 0;
    size_t n = (size_t)a->w * a->h * 3;
    for (size_t i = 0; i < n; i++) s += abs((int)a->rgb[i] - (int)b->rgb[i]);
    return s / n;
}

static void test_jpeg_roundtrip_close(void **state) {
    (void)state;
    char path[4200];
    tpath(path, sizeof path, "rt.jpg");
    Image a = smooth_image(64, 48), b;
    assert_int_equal(image_save_jpeg(&a, path, 95), 0);
    load_ok(&b, path, 64, 48);
    double d = mean_abs_diff(&a, &b);
    printf("    JPEG q95 64x48 smooth: mean |diff| %.3f (tol 2.0)\n", d);
    assert_true(d <= 2.0);
    image_free(&b);
    // Lower quality: still the same picture, bigger error, smaller file.
    char path2[4200];
    tpath(path2, sizeof path2, "rt50.jpg");
    assert_int_equal(image_save_jpeg(&a, path2, 50), 0);
    load_ok(&b, path2, 64, 48);
    double d50 = mean_abs_diff(&a, &b);
    printf("    JPEG q50: mean |diff| %.3f (tol 6.0)\n", d50);
    assert_true(d50 <= 6.0);
    image_free(&b);
    // A file named .png holding JPEG data: magic bytes decide, not the name.
    char path3[4200];
    tpath(path3, sizeof path3, "really_a_jpeg.png");
    assert_int_equal(rename(path, path3), 0);
    load_ok(&b, path3, 64, 48);
    image_free(&b);
    // Bad quality is refused and named.
    assert_int_equal(image_save_jpeg(&a, path, 0), -1);
    assert_non_null(strstr(mdgan_errmsg(), path));
    assert_int_equal(image_save_jpeg(&a, path, 101), -1);
    assert_no_tmp_files();
    image_free(&a);
}

static void test_png_16bit(void **state) {
    (void)state;
    char path[4200];
    tpath(path, sizeof path, "rgb16.png");
    const int w = 19, h = 7;
    PngSpec s = {PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_NONE, NULL, 0, NULL, 0};
    unsigned char **rows = alloc_rows(h, (size_t)w * 6);
    uint16_t *vals = malloc((size_t)w * h * 3 * sizeof *vals);
    assert_non_null(vals);
    for (int i = 0; i < w * h * 3; i++) {
        // Every corner case: 0, 65535, exact multiples of 257, and arbitrary values.
        uint16_t v = i == 0 ? 0 : i == 1 ? 65535 : i % 3 == 0 ? (uint16_t)(257 * (rnd() & 255)) : (uint16_t)rnd();
        vals[i] = v;
        int y = i / (w * 3), k = i % (w * 3);
        rows[y][2 * k] = (unsigned char)(v >> 8); // PNG is big-endian
        rows[y][2 * k + 1] = (unsigned char)(v & 255);
    }
    write_png_raw(path, w, h, &s, rows);
    Image im;
    load_ok(&im, path, w, h);
    int maxerr = 0;
    for (int i = 0; i < w * h * 3; i++) {
        int expect = (int)floor(vals[i] * 255.0 / 65535.0 + 0.5);
        int e = abs((int)im.rgb[i] - expect);
        if (e > maxerr) maxerr = e;
        if (vals[i] % 257 == 0) assert_int_equal(im.rgb[i], vals[i] / 257);
    }
    printf("    16-bit PNG: max |u8 - round(v*255/65535)| = %d (tol 1; 0 for v = 257k)\n", maxerr);
    assert_true(maxerr <= 1);
    free(vals);
    free_rows(rows, h);
    image_free(&im);
}

static void test_png_palette(void **state) {
    (void)state;
    const png_color pal[5] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {17, 34, 51}, {250, 251, 252}};
    const png_byte trns[5] = {255, 0, 128, 255, 7};
    const int w = 11, h = 5;
    for (int depth = 4; depth <= 8; depth += 4)
        for (int with_trns = 0; with_trns < 2; with_trns++) {
            char path[4200], name[64];
            snprintf(name, sizeof name, "pal%d_%d.png", depth, with_trns);
            tpath(path, sizeof path, name);
            PngSpec s = {PNG_COLOR_TYPE_PALETTE, depth, PNG_INTERLACE_NONE, pal, 5,
                         with_trns ? trns : NULL, with_trns ? 5 : 0};
            unsigned char **rows = alloc_rows(h, (size_t)w);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    int ix = (x + 2 * y) % 5;
                    if (depth == 8) rows[y][x] = (unsigned char)ix;
                    else rows[y][x / 2] |= (unsigned char)(ix << (x % 2 ? 0 : 4));
                }
            write_png_raw(path, w, h, &s, rows);
            Image im;
            load_ok(&im, path, w, h);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    const png_color *c = &pal[(x + 2 * y) % 5];
                    const unsigned char *p = im.rgb + ((size_t)y * w + x) * 3;
                    assert_int_equal(p[0], c->red);
                    assert_int_equal(p[1], c->green);
                    assert_int_equal(p[2], c->blue);
                }
            free_rows(rows, h);
            image_free(&im);
        }
}

static void test_png_gray(void **state) {
    (void)state;
    const int w = 13, h = 6;
    char path[4200];
    // 8-bit gray.
    tpath(path, sizeof path, "gray8.png");
    PngSpec s8 = {PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, NULL, 0, NULL, 0};
    unsigned char **rows = alloc_rows(h, (size_t)w);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) rows[y][x] = (unsigned char)(rnd() & 255);
    write_png_raw(path, w, h, &s8, rows);
    Image im;
    load_ok(&im, path, w, h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) assert_int_equal(im.rgb[((size_t)y * w + x) * 3 + c], rows[y][x]);
    image_free(&im);
    free_rows(rows, h);
    // 1-bit gray: 0 -> 0, 1 -> 255.
    tpath(path, sizeof path, "gray1.png");
    PngSpec s1 = {PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, NULL, 0, NULL, 0};
    rows = alloc_rows(h, (size_t)(w + 7) / 8);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if ((x + y) % 3 == 0) rows[y][x / 8] |= (unsigned char)(0x80 >> (x % 8));
    write_png_raw(path, w, h, &s1, rows);
    load_ok(&im, path, w, h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                assert_int_equal(im.rgb[((size_t)y * w + x) * 3 + c], (x + y) % 3 == 0 ? 255 : 0);
    image_free(&im);
    free_rows(rows, h);
    // 16-bit gray + alpha: alpha dropped, gray scaled.
    tpath(path, sizeof path, "graya16.png");
    PngSpec sga = {PNG_COLOR_TYPE_GRAY_ALPHA, 16, PNG_INTERLACE_NONE, NULL, 0, NULL, 0};
    rows = alloc_rows(h, (size_t)w * 4);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            rows[y][4 * x] = rows[y][4 * x + 1] = (unsigned char)(x * 19 + y); // v = 257 * g
            rows[y][4 * x + 2] = (unsigned char)(rnd() & 255);                 // alpha
            rows[y][4 * x + 3] = (unsigned char)(rnd() & 255);
        }
    write_png_raw(path, w, h, &sga, rows);
    load_ok(&im, path, w, h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                assert_int_equal(im.rgb[((size_t)y * w + x) * 3 + c], x * 19 + y);
    image_free(&im);
    free_rows(rows, h);
}

static void test_png_rgba_and_interlaced(void **state) {
    (void)state;
    const int w = 17, h = 10;
    for (int interlace = 0; interlace < 2; interlace++) {
        char path[4200];
        tpath(path, sizeof path, interlace ? "rgba_adam7.png" : "rgba.png");
        PngSpec s = {PNG_COLOR_TYPE_RGBA, 8, interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                     NULL, 0, NULL, 0};
        unsigned char **rows = alloc_rows(h, (size_t)w * 4);
        for (int y = 0; y < h; y++)
            for (int i = 0; i < w * 4; i++) rows[y][i] = (unsigned char)(rnd() & 255);
        write_png_raw(path, w, h, &s, rows);
        Image im;
        load_ok(&im, path, w, h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++) // alpha dropped, never composited
                    assert_int_equal(im.rgb[((size_t)y * w + x) * 3 + c], rows[y][4 * x + c]);
        image_free(&im);
        free_rows(rows, h);
    }
}

// Grayscale JPEG written with libjpeg directly: loads as R = G = B.
static void test_jpeg_gray(void **state) {
    (void)state;
    const int w = 40, h = 24;
    char path[4200];
    tpath(path, sizeof path, "gray.jpg");
    unsigned char *g = malloc((size_t)w * h);
    assert_non_null(g);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) g[y * w + x] = (unsigned char)(50 + 4 * x + 2 * y);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = w;
    c.image_height = h;
    c.input_components = 1;
    c.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 95, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = g + (size_t)c.next_scanline * w;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    assert_int_equal(fclose(f), 0);
    Image im;
    load_ok(&im, path, w, h);
    double s = 0;
    for (int p = 0; p < w * h; p++) {
        assert_int_equal(im.rgb[3 * p], im.rgb[3 * p + 1]);
        assert_int_equal(im.rgb[3 * p], im.rgb[3 * p + 2]);
        s += abs((int)im.rgb[3 * p] - (int)g[p]);
    }
    printf("    gray JPEG q95: mean |diff| %.3f (tol 1.5)\n", s / (w * h));
    assert_true(s / (w * h) <= 1.5);
    image_free(&im);
    free(g);
}

// ---------------------------------------------------------------------------
// Bad files. Each must return -1, leave {0}, name the file in one line, and make
// neither libpng nor libjpeg print anything (stderr is captured around the call).

static void append_chunk(unsigned char *buf, size_t *n, const char *type, const unsigned char *data,
                         uint32_t len) {
    unsigned char *p = buf + *n;
    p[0] = (unsigned char)(len >> 24);
    p[1] = (unsigned char)(len >> 16);
    p[2] = (unsigned char)(len >> 8);
    p[3] = (unsigned char)len;
    memcpy(p + 4, type, 4);
    if (len) memcpy(p + 8, data, len);
    uint32_t crc = (uint32_t)crc32(0, p + 4, 4 + len);
    p[8 + len] = (unsigned char)(crc >> 24);
    p[9 + len] = (unsigned char)(crc >> 16);
    p[10 + len] = (unsigned char)(crc >> 8);
    p[11 + len] = (unsigned char)crc;
    *n += 12 + len;
}

// Offset of the first IDAT chunk's data in a PNG file.
static size_t find_idat(const unsigned char *b, size_t n) {
    for (size_t i = 8; i + 8 < n; i++)
        if (memcmp(b + i, "IDAT", 4) == 0) return i + 4;
    fail_msg("no IDAT in test PNG");
    return 0;
}

// Points fd 2 at a file; returns the saved stderr for stderr_capture_end.
static int stderr_capture_begin(const char *file) {
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_true(dup2(fd, 2) >= 0);
    close(fd);
    return saved;
}
// Restores stderr; returns how many bytes were written to it meanwhile.
static long long stderr_capture_end(int saved, const char *file) {
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    return (long long)st.st_size;
}

static void test_bad_files(void **state) {
    (void)state;
    char good_png[4200], good_jpg[4200], stderr_file[4200];
    tpath(good_png, sizeof good_png, "good.png");
    tpath(good_jpg, sizeof good_jpg, "good.jpg");
    tpath(stderr_file, sizeof stderr_file, "stderr.txt");
    // The capture itself must see what a library would print.
    int saved0 = stderr_capture_begin(stderr_file);
    fputs("libfoo warning\n", stderr);
    assert_int_equal(stderr_capture_end(saved0, stderr_file), 15);
    Image src = smooth_image(64, 48);
    assert_int_equal(image_save_png(&src, good_png), 0);
    assert_int_equal(image_save_jpeg(&src, good_jpg, 90), 0);
    size_t npng, njpg;
    unsigned char *png = read_bytes(good_png, &npng);
    unsigned char *jpg = read_bytes(good_jpg, &njpg);

    enum { MISSING, EMPTY, TRUNC_PNG, TRUNC_PNG_HEADER, NO_IEND, CORRUPT_PNG, BAD_CRC, TRUNC_JPG, CORRUPT_JPG,
           TEXT_PNG, DIRECTORY, HUGE_PNG, HUGE_JPG, TINY, HUGE_CHUNK, NCASES };
    static const char *names[NCASES] = {"missing.png", "empty.png", "trunc.png", "trunc_header.png",
                                        "noiend.png", "corrupt.png", "badcrc.png", "trunc.jpg", "corrupt.jpg",
                                        "x.png", "adir.png", "huge.png", "huge.jpg", "tiny.jpg",
                                        "hugechunk.png"};
    static const char *expect[NCASES] = {"No such file", "empty", "truncated", "truncated",
                                         "truncated", "corrupt", "CRC error", "Premature end", "Huffman",
                                         "not a PNG or JPEG", "not a regular file", "20000x10",
                                         "20000x8", "not a PNG or JPEG",
                                         "chunk zTXt at byte 33 says 1950701684 bytes"};
    for (int k = 0; k < NCASES; k++) {
        char path[4200];
        tpath(path, sizeof path, names[k]);
        switch (k) {
        case MISSING: break;
        case EMPTY: write_bytes_file(path, "", 0); break;
        case TRUNC_PNG: write_bytes_file(path, png, npng / 2); break;
        case TRUNC_PNG_HEADER: write_bytes_file(path, png, 20); break;
        case NO_IEND: write_bytes_file(path, png, npng - 12); break; // all pixels, no IEND chunk
        case CORRUPT_PNG: { // one flipped byte inside IDAT: the chunk CRC catches it
            unsigned char *b = malloc(npng);
            assert_non_null(b);
            memcpy(b, png, npng);
            b[find_idat(b, npng) + 40] ^= 0x55;
            write_bytes_file(path, b, npng);
            free(b);
            break;
        }
        case BAD_CRC: { // IHDR's CRC (bytes 29..32) off by one bit
            unsigned char *b = malloc(npng);
            assert_non_null(b);
            memcpy(b, png, npng);
            b[32] ^= 1;
            write_bytes_file(path, b, npng);
            free(b);
            break;
        }
        case TRUNC_JPG: { // cut halfway through the entropy-coded data after SOS
            size_t sos = 2;
            while (sos + 1 < njpg && !(jpg[sos] == 0xFF && jpg[sos + 1] == 0xDA)) sos++;
            assert_true(sos + 100 < njpg);
            write_bytes_file(path, jpg, sos + (njpg - sos) / 2);
            break;
        }
        case CORRUPT_JPG: { // Huffman table counts summing past 256: a damaged header
            // (damage inside the entropy-coded data is not always detectable in JPEG)
            unsigned char *b = malloc(njpg);
            assert_non_null(b);
            memcpy(b, jpg, njpg);
            size_t i = 2;
            while (i + 21 < njpg && !(b[i] == 0xFF && b[i + 1] == 0xC4)) i++;
            assert_true(i + 21 < njpg);
            memset(b + i + 5, 0xFF, 16); // after marker, length (2) and class/id (1)
            write_bytes_file(path, b, njpg);
            free(b);
            break;
        }
        case TEXT_PNG: write_bytes_file(path, "hello, I am not a picture\n", 26); break;
        case DIRECTORY: assert_int_equal(mkdir(path, 0755), 0); break;
        case HUGE_PNG: { // a valid header claiming 20000x10, a stub IDAT
            unsigned char b[64];
            size_t n = 8;
            memcpy(b, "\x89PNG\r\n\x1a\n", 8);
            const unsigned char ihdr[13] = {0, 0, 0x4e, 0x20, 0, 0, 0, 10, 8, 2, 0, 0, 0};
            append_chunk(b, &n, "IHDR", ihdr, 13);
            append_chunk(b, &n, "IDAT", (const unsigned char *)"\x78\x9c", 2); // png_read_info stops here
            append_chunk(b, &n, "IEND", NULL, 0);
            write_bytes_file(path, b, n);
            break;
        }
        case HUGE_JPG: { // a real 20000x8 JPEG
            Image big = const_image(20000, 8, 10, 20, 30);
            assert_int_equal(image_save_jpeg(&big, path, 50), 0);
            image_free(&big);
            break;
        }
        case TINY: write_bytes_file(path, "\xFF\xD8", 2); break; // shorter than any signature
        case HUGE_CHUNK: { // the fuzzer's find: a zTXt whose length field says 1.9 GB,
            // which libpng allocated before reading (no rlimit here to prove it: the
            // message, naming the chunk, says the loader refused it before libpng did)
            size_t n = 33 + 8 + 16;
            unsigned char *b = malloc(n);
            assert_non_null(b);
            memcpy(b, png, 33); // signature and IHDR
            memcpy(b + 33, "\x74\x45\x58\x74zTXt", 8);
            memset(b + 41, 'S', 16);
            write_bytes_file(path, b, n);
            free(b);
            break;
        }
        }
        int saved = stderr_capture_begin(stderr_file);
        mdgan_errclear();
        Image im = {7, 7, (unsigned char *)1}; // garbage in: must come back {0}
        int rc = image_load(&im, path);
        long long printed = stderr_capture_end(saved, stderr_file);
        printf("    %-18s rc %d, stderr %lld bytes: %s\n", names[k], rc, printed, mdgan_errmsg());
        assert_int_equal(rc, -1);
        assert_null(im.rgb);
        assert_int_equal(im.w, 0);
        assert_int_equal(im.h, 0);
        if (!strstr(mdgan_errmsg(), path)) fail_msg("message does not name %s: %s", path, mdgan_errmsg());
        if (!strstr(mdgan_errmsg(), expect[k]))
            fail_msg("%s: message lacks \"%s\": %s", names[k], expect[k], mdgan_errmsg());
        assert_int_equal(count_lines(mdgan_errmsg()), 0);
        if (printed != 0) fail_msg("%s: a library printed %lld bytes on stderr", names[k], printed);
    }
    // The untouched originals still load.
    Image ok;
    load_ok(&ok, good_png, 64, 48);
    image_free(&ok);
    load_ok(&ok, good_jpg, 64, 48);
    image_free(&ok);
    free(png);
    free(jpg);
    image_free(&src);
}

static void test_save_errors(void **state) {
    (void)state;
    char path[4200];
    tpath(path, sizeof path, "no/such/folder/out.png");
    Image a = rand_image(4, 4);
    assert_int_equal(image_save_png(&a, path), -1);
    printf("    %s\n", mdgan_errmsg());
    assert_non_null(strstr(mdgan_errmsg(), path));
    assert_int_equal(image_save_jpeg(&a, path, 90), -1);
    assert_non_null(strstr(mdgan_errmsg(), path));
    Image empty = {0};
    tpath(path, sizeof path, "empty_image.png");
    assert_int_equal(image_save_png(&empty, path), -1);
    assert_non_null(strstr(mdgan_errmsg(), path));
    assert_int_equal(access(path, F_OK), -1); // nothing written
    image_free(&a);
}

// ---------------------------------------------------------------------------
// Resize

static void assert_constant(const Image *im, const unsigned char rgb[3]) {
    for (size_t p = 0; p < (size_t)im->w * im->h; p++)
        for (int c = 0; c < 3; c++)
            if (im->rgb[3 * p + c] != rgb[c])
                fail_msg("%dx%d: pixel %zu channel %d is %d, expected constant %d", im->w, im->h, p, c,
                         im->rgb[3 * p + c], rgb[c]);
}

static void test_resize_constant(void **state) {
    (void)state;
    static const int sizes[][4] = {{64, 48, 32, 24}, {37, 23, 10, 7},  {100, 100, 33, 31},
                                   {7, 5, 30, 22},   {3, 3, 128, 128}, {50, 9, 13, 40},
                                   {1, 1, 5, 3},     {129, 129, 128, 128}};
    const unsigned char col[3] = {201, 17, 128};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        Image a = const_image(sizes[k][0], sizes[k][1], col[0], col[1], col[2]), b;
        assert_int_equal(image_resize(&b, &a, sizes[k][2], sizes[k][3]), 0);
        assert_int_equal(b.w, sizes[k][2]);
        assert_int_equal(b.h, sizes[k][3]);
        assert_constant(&b, col);
        image_free(&a);
        image_free(&b);
    }
    // Extremes stay exact too.
    for (int v = 0; v <= 255; v += 255) {
        const unsigned char c3[3] = {(unsigned char)v, (unsigned char)v, (unsigned char)v};
        Image a = const_image(97, 61, c3[0], c3[1], c3[2]), b;
        assert_int_equal(image_resize(&b, &a, 29, 17), 0);
        assert_constant(&b, c3);
        image_free(&b);
        assert_int_equal(image_resize(&b, &a, 200, 150), 0);
        assert_constant(&b, c3);
        image_free(&a);
        image_free(&b);
    }
}

static void test_resize_block_means(void **state) {
    (void)state;
    for (int trial = 0; trial < 20; trial++) {
        Image a = rand_image(4, 4), b;
        assert_int_equal(image_resize(&b, &a, 2, 2), 0);
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 2; x++)
                for (int c = 0; c < 3; c++) {
                    int s = 0;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) s += a.rgb[((2 * y + dy) * 4 + 2 * x + dx) * 3 + c];
                    // The exact mean s/4, rounded half up.
                    assert_int_equal(b.rgb[(y * 2 + x) * 3 + c], (s + 2) / 4);
                }
        image_free(&a);
        image_free(&b);
    }
}

// 3 -> 2 with fractional coverage: out0 = (p0 + p1/2) / 1.5, out1 = (p1/2 + p2) / 1.5.
// (PyTorch's mode='area' is adaptive average pooling and would give 45, 135 here.)
static void test_resize_fractional_box(void **state) {
    (void)state;
    Image a = {3, 1, malloc(9)}, b;
    assert_non_null(a.rgb);
    const unsigned char v[3] = {0, 90, 180};
    for (int x = 0; x < 3; x++) a.rgb[3 * x] = a.rgb[3 * x + 1] = a.rgb[3 * x + 2] = v[x];
    assert_int_equal(image_resize(&b, &a, 2, 1), 0);
    assert_int_equal(b.rgb[0], 30);
    assert_int_equal(b.rgb[3], 150);
    image_free(&b);
    // The same along the other axis (a 1x3 column).
    a.w = 1;
    a.h = 3;
    assert_int_equal(image_resize(&b, &a, 1, 2), 0);
    assert_int_equal(b.rgb[0], 30);
    assert_int_equal(b.rgb[3], 150);
    image_free(&a);
    image_free(&b);
}

static void test_resize_preserves_mean(void **state) {
    (void)state;
    static const int sizes[][4] = {{97, 61, 20, 13}, {37, 23, 10, 7}, {128, 96, 45, 33}, {50, 50, 49, 3}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        Image a = rand_image(sizes[k][0], sizes[k][1]), b;
        assert_int_equal(image_resize(&b, &a, sizes[k][2], sizes[k][3]), 0);
        for (int c = 0; c < 3; c++) {
            double ma = 0, mb = 0;
            for (int p = 0; p < a.w * a.h; p++) ma += a.rgb[3 * p + c];
            for (int p = 0; p < b.w * b.h; p++) mb += b.rgb[3 * p + c];
            ma /= a.w * a.h;
            mb /= b.w * b.h;
            if (c == 0)
                printf("    %dx%d -> %dx%d: mean %.4f -> %.4f (diff %.4f, tol 0.5)\n", a.w, a.h, b.w,
                       b.h, ma, mb, mb - ma);
            assert_true(fabs(ma - mb) <= 0.5);
        }
        image_free(&a);
        image_free(&b);
    }
}

// Bilinear, align_corners=False, against PyTorch:
// F.interpolate([0,100], 4) = [0, 25, 75, 100];
// F.interpolate([10,20,40,80,160], 8) = [10, 14.375, 21.25, 33.75, 52.5, 77.5, 125, 160].
static void test_resize_bilinear_torch(void **state) {
    (void)state;
    struct {
        int n, m;
        unsigned char in[5], out[8];
    } cases[] = {{2, 4, {0, 100}, {0, 25, 75, 100}},
                 {5, 8, {10, 20, 40, 80, 160}, {10, 14, 21, 34, 53, 78, 125, 160}}}; // half up
    for (int k = 0; k < 2; k++)
        for (int axis = 0; axis < 2; axis++) {
            int n = cases[k].n, m = cases[k].m;
            Image a = {axis ? 1 : n, axis ? n : 1, malloc((size_t)n * 3)}, b;
            assert_non_null(a.rgb);
            for (int i = 0; i < n; i++)
                for (int c = 0; c < 3; c++) a.rgb[3 * i + c] = cases[k].in[i];
            assert_int_equal(image_resize(&b, &a, axis ? 1 : m, axis ? m : 1), 0);
            for (int i = 0; i < m; i++)
                for (int c = 0; c < 3; c++) assert_int_equal(b.rgb[3 * i + c], cases[k].out[i]);
            image_free(&a);
            image_free(&b);
        }
    // Equal size is an exact copy; bad targets are refused.
    Image a = rand_image(9, 4), b;
    assert_int_equal(image_resize(&b, &a, 9, 4), 0);
    assert_memory_equal(a.rgb, b.rgb, 9 * 4 * 3);
    image_free(&b);
    assert_int_equal(image_resize(&b, &a, 0, 4), -1);
    assert_null(b.rgb);
    assert_int_equal(image_resize(&b, &a, 4, IMAGE_MAX_SIDE + 1), -1);
    image_free(&a);
}

static void test_fit_square(void **state) {
    (void)state;
    // 7x4 landscape: the centred 4x4 square is columns 1..4; same size = exact crop.
    Image a = rand_image(7, 4), b;
    assert_int_equal(image_fit_square(&b, &a, 4), 0);
    assert_int_equal(b.w, 4);
    assert_int_equal(b.h, 4);
    for (int y = 0; y < 4; y++) assert_memory_equal(b.rgb + y * 4 * 3, a.rgb + (y * 7 + 1) * 3, 4 * 3);
    image_free(&b);
    image_free(&a);
    // 6x10 portrait: rows 2..7; shrink to 3x3 = 2x2 block means of the crop.
    a = rand_image(6, 10);
    assert_int_equal(image_fit_square(&b, &a, 3), 0);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 3; x++)
            for (int c = 0; c < 3; c++) {
                int s = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) s += a.rgb[((2 + 2 * y + dy) * 6 + 2 * x + dx) * 3 + c];
                assert_int_equal(b.rgb[(y * 3 + x) * 3 + c], (s + 2) / 4);
            }
    image_free(&b);
    // Constant photo to a bigger square stays constant.
    image_free(&a);
    const unsigned char col[3] = {3, 140, 250};
    a = const_image(40, 25, col[0], col[1], col[2]);
    assert_int_equal(image_fit_square(&b, &a, 64), 0);
    assert_constant(&b, col);
    image_free(&b);
    assert_int_equal(image_fit_square(&b, &a, 0), -1);
    image_free(&a);
}

// ---------------------------------------------------------------------------

static void test_chw_roundtrip(void **state) {
    (void)state;
    // 256 x 2: every u8 value in every channel, channels shifted so they differ.
    Image a = {256, 2, malloc(256 * 2 * 3)}, b;
    assert_non_null(a.rgb);
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 256; x++)
            for (int c = 0; c < 3; c++) a.rgb[((y * 256) + x) * 3 + c] = (unsigned char)((x + 85 * c + y) & 255);
    float *chw = malloc(3 * 2 * 256 * sizeof(float));
    assert_non_null(chw);
    image_to_chw(chw, &a);
    // Layout and value: out[c][y][x] = u8 / 127.5 - 1.
    assert_true(chw[0] == -1.0f);                                         // c0 y0 x0 = 0
    assert_true(fabsf(chw[1 * 512 + 0 * 256 + 10] - ((10 + 85) / 127.5f - 1.0f)) == 0.0f);
    assert_true(fabsf(chw[2 * 512 + 1 * 256 + 3] - (((3 + 170 + 1) & 255) / 127.5f - 1.0f)) == 0.0f);
    float lo = 1, hi = -1;
    for (int i = 0; i < 3 * 512; i++) {
        if (chw[i] < lo) lo = chw[i];
        if (chw[i] > hi) hi = chw[i];
    }
    assert_true(lo == -1.0f && hi == 1.0f);
    assert_int_equal(image_from_chw(&b, chw, 2, 256), 0);
    assert_memory_equal(a.rgb, b.rgb, 256 * 2 * 3);
    image_free(&b);
    // Clamping and NaN.
    float odd[3] = {-3.0f, 7.0f, NAN};
    assert_int_equal(image_from_chw(&b, odd, 1, 1), 0);
    assert_int_equal(b.rgb[0], 0);
    assert_int_equal(b.rgb[1], 255);
    assert_int_equal(b.rgb[2], 0);
    image_free(&b);
    assert_int_equal(image_u8_from_float(0.0f), 128); // 127.5 rounds half up
    assert_int_equal(image_from_chw(&b, chw, 0, 5), -1);
    free(chw);
    image_free(&a);
}

// A (3, T, H, W) video whose value encodes (video, t, y, x, c), as u8/127.5 - 1.
static unsigned char vid_u8(int n, int t, int y, int x, int c) {
    return (unsigned char)((n * 61 + t * 37 + y * 11 + x * 5 + c * 83) & 255);
}
static float *make_video(int n, int T, int H, int W) {
    float *v = malloc((size_t)3 * T * H * W * sizeof(float));
    assert_non_null(v);
    for (int c = 0; c < 3; c++)
        for (int t = 0; t < T; t++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    v[(((size_t)c * T + t) * H + y) * W + x] = vid_u8(n, t, y, x, c) / 127.5f - 1.0f;
    return v;
}

static void test_contact_sheet(void **state) {
    (void)state;
    const int N = 2, T = 3, H = 4, W = 5, gap = 2;
    float *v[2] = {make_video(0, T, H, W), make_video(1, T, H, W)};
    Image s;
    assert_int_equal(image_contact_sheet(&s, (const float *const *)v, N, T, H, W, gap), 0);
    assert_int_equal(s.w, T * W + (T - 1) * gap); // 19
    assert_int_equal(s.h, N * H + (N - 1) * gap); // 10
    // Every tile pixel in place, every gap pixel white.
    for (int y = 0; y < s.h; y++)
        for (int x = 0; x < s.w; x++) {
            int n = y / (H + gap), ty = y % (H + gap), t = x / (W + gap), tx = x % (W + gap);
            for (int c = 0; c < 3; c++) {
                int got = s.rgb[((size_t)y * s.w + x) * 3 + c];
                int want = (ty < H && tx < W) ? vid_u8(n, t, ty, tx, c) : 255;
                if (got != want) fail_msg("sheet (%d,%d) c%d: %d, expected %d", x, y, c, got, want);
            }
        }
    // The one named in the brief: video 1, frame 2, pixel (y 1, x 3).
    const unsigned char *p = s.rgb + ((size_t)(1 * (H + gap) + 1) * s.w + 2 * (W + gap) + 3) * 3;
    assert_int_equal(p[0], vid_u8(1, 2, 1, 3, 0));
    char path[4200];
    tpath(path, sizeof path, "sheet.png");
    assert_int_equal(image_save_png(&s, path), 0);
    image_free(&s);
    assert_int_equal(image_contact_sheet(&s, (const float *const *)v, N, T, H, W, -1), -1);
    assert_int_equal(image_contact_sheet(&s, (const float *const *)v, 0, T, H, W, 0), -1);
    free(v[0]);
    free(v[1]);
}

// A sheet drawn row by row, enlarged by 3, the last of its three rows cut off and only
// the first 2 of 3 frames shown: the same bytes as image_contact_sheet of the videos
// enlarged beforehand and cut to 2 frames.
static void test_sheet_canvas(void **state) {
    (void)state;
    const int T = 3, H = 4, W = 5, gap = 2, zoom = 3, Ts = 2;
    float *v[2] = {make_video(0, T, H, W), make_video(1, T, H, W)};
    SheetCanvas c;
    assert_int_equal(sheet_canvas_init(&c, 3, Ts, H, W, zoom, gap), 0);
    assert_int_equal(c.img.w, Ts * W * zoom + (Ts - 1) * gap);
    assert_int_equal(c.img.h, 3 * H * zoom + 2 * gap);
    sheet_canvas_draw(&c, 1, v[1], T);
    sheet_canvas_draw(&c, 0, v[0], T);
    sheet_canvas_keep_rows(&c, 2);
    float *big[2], *head[2];
    const size_t zh = (size_t)H * zoom * W * zoom;
    for (int n = 0; n < 2; n++) {
        big[n] = malloc((size_t)3 * T * zh * sizeof(float));
        head[n] = malloc((size_t)3 * Ts * zh * sizeof(float));
        assert_non_null(big[n]);
        assert_non_null(head[n]);
        image_upscale_nearest(big[n], v[n], 3, T, H, W, zoom);
        for (int ch = 0; ch < 3; ch++)
            memcpy(head[n] + ch * Ts * zh, big[n] + ch * T * zh, Ts * zh * sizeof(float));
    }
    Image want;
    assert_int_equal(image_contact_sheet(&want, (const float *const *)head, 2, Ts, H * zoom, W * zoom, gap), 0);
    assert_int_equal(c.img.w, want.w);
    assert_int_equal(c.img.h, want.h);
    assert_memory_equal(c.img.rgb, want.rgb, (size_t)want.w * want.h * 3);
    image_free(&want);
    sheet_canvas_free(&c);
    assert_null(c.img.rgb);
    // bad shapes and sizes: -1, nothing allocated
    assert_int_equal(sheet_canvas_init(&c, 0, T, H, W, 1, gap), -1);
    assert_int_equal(sheet_canvas_init(&c, 2, T, H, W, 0, gap), -1);
    assert_int_equal(sheet_canvas_init(&c, 2, T, H, W, 1, -1), -1);
    assert_int_equal(sheet_canvas_init(&c, 2, 1000, H, W, 20, gap), -1); // 100000 pixels wide
    assert_null(c.img.rgb);
    for (int n = 0; n < 2; n++) free(big[n]), free(head[n]), free(v[n]);
}

static void test_gif(void **state) {
    (void)state;
    const int N = 2, T = 4, H = 8, W = 6, delay = 7;
    // Video 0: smooth random-ish content; video 1: a constant colour on the cube,
    // changing per frame, which must come back exactly.
    static const unsigned char cube[4][3] = {{51, 85, 204}, {255, 43, 0}, {0, 0, 0}, {153, 213, 102}};
    float *v[2] = {make_video(0, T, H, W), malloc((size_t)3 * T * H * W * sizeof(float))};
    assert_non_null(v[1]);
    for (int c = 0; c < 3; c++)
        for (int t = 0; t < T; t++)
            for (int p = 0; p < H * W; p++)
                v[1][((size_t)c * T + t) * H * W + p] = cube[t][c] / 127.5f - 1.0f;
    char path[4200];
    tpath(path, sizeof path, "clips.gif");
    assert_int_equal(image_save_gif(path, (const float *const *)v, N, T, H, W, delay), 0);
    assert_no_tmp_files();
    size_t n;
    unsigned char *bytes = read_bytes(path, &n);
    assert_true(n > 6);
    assert_memory_equal(bytes, "GIF89a", 6);
    free(bytes);

    int err = 0;
    GifFileType *g = DGifOpenFileName(path, &err);
    if (!g) fail_msg("giflib cannot open %s: %s", path, GifErrorString(err));
    assert_int_equal(DGifSlurp(g), GIF_OK);
    printf("    GIF %zu bytes: %dx%d, %d frames\n", n, g->SWidth, g->SHeight, g->ImageCount);
    assert_int_equal(g->ImageCount, T);
    assert_int_equal(g->SWidth, N * W + (N - 1) * IMAGE_GIF_GAP);
    assert_int_equal(g->SHeight, H);
    assert_non_null(g->SColorMap);
    // Loop forever: NETSCAPE2.0 block followed by sub-block {1, 0, 0}.
    int loop = 0;
    const SavedImage *f0 = &g->SavedImages[0];
    for (int i = 0; i + 1 < f0->ExtensionBlockCount; i++) {
        const ExtensionBlock *e = &f0->ExtensionBlocks[i];
        if (e->Function == APPLICATION_EXT_FUNC_CODE && e->ByteCount == 11 &&
            memcmp(e->Bytes, "NETSCAPE2.0", 11) == 0) {
            const ExtensionBlock *d = &f0->ExtensionBlocks[i + 1];
            loop = d->ByteCount == 3 && d->Bytes[0] == 1 && d->Bytes[1] == 0 && d->Bytes[2] == 0;
        }
    }
    assert_true(loop);
    for (int t = 0; t < T; t++) {
        GraphicsControlBlock gcb;
        assert_int_equal(DGifSavedExtensionToGCB(g, t, &gcb), GIF_OK);
        assert_int_equal(gcb.DelayTime, delay);
        const SavedImage *im = &g->SavedImages[t];
        assert_int_equal(im->ImageDesc.Width, g->SWidth);
        assert_int_equal(im->ImageDesc.Height, H);
        const ColorMapObject *cm = im->ImageDesc.ColorMap ? im->ImageDesc.ColorMap : g->SColorMap;
        double err0 = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < g->SWidth; x++) {
                const GifColorType *col = &cm->Colors[im->RasterBits[y * g->SWidth + x]];
                const unsigned char got[3] = {col->Red, col->Green, col->Blue};
                for (int c = 0; c < 3; c++) {
                    if (x < W) {
                        err0 += abs((int)got[c] - (int)vid_u8(0, t, y, x, c));
                    } else if (x < W + IMAGE_GIF_GAP) {
                        assert_int_equal(got[c], 255); // white gap
                    } else if (got[c] != cube[t][c]) {
                        fail_msg("frame %d (%d,%d) c%d: %d, expected cube colour %d", t, x, y, c,
                                 got[c], cube[t][c]);
                    }
                }
            }
        err0 /= H * W * 3;
        if (t == 0) printf("    dithered clip: mean |diff| %.2f (tol 30; cube steps 51/42.5)\n", err0);
        assert_true(err0 <= 30.0);
    }
    assert_int_equal(DGifCloseFile(g, &err), GIF_OK);
    // Bad arguments are refused and named.
    assert_int_equal(image_save_gif(path, (const float *const *)v, N, T, H, W, -1), -1);
    assert_non_null(strstr(mdgan_errmsg(), path));
    assert_int_equal(image_save_gif(path, (const float *const *)v, N, 0, H, W, 5), -1);
    assert_non_null(strstr(mdgan_errmsg(), path));
    free(v[0]);
    free(v[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_roundtrip_exact),
        cmocka_unit_test(test_png_bands),
        cmocka_unit_test(test_jpeg_roundtrip_close),
        cmocka_unit_test(test_png_16bit),
        cmocka_unit_test(test_png_palette),
        cmocka_unit_test(test_png_gray),
        cmocka_unit_test(test_png_rgba_and_interlaced),
        cmocka_unit_test(test_jpeg_gray),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_save_errors),
        cmocka_unit_test(test_resize_constant),
        cmocka_unit_test(test_resize_block_means),
        cmocka_unit_test(test_resize_fractional_box),
        cmocka_unit_test(test_resize_preserves_mean),
        cmocka_unit_test(test_resize_bilinear_torch),
        cmocka_unit_test(test_fit_square),
        cmocka_unit_test(test_chw_roundtrip),
        cmocka_unit_test(test_contact_sheet),
        cmocka_unit_test(test_sheet_canvas),
        cmocka_unit_test(test_gif),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
