#include "mdgan/image.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gif_lib.h>
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "mdgan/error.h"
#include "mdgan/fileio.h"
#include "mdgan/mem.h"

// ---------------------------------------------------------------------------
// Growable memory buffer: every encoder writes into one, then one atomic write
// puts it on disk, so a failed encode never leaves a half file behind.

typedef struct {
    unsigned char *p;
    size_t n, cap;
} MemBuf;

static int membuf_append(MemBuf *m, const void *data, size_t n) {
    if (n > SIZE_MAX - m->n) return -1;
    if (m->n + n > m->cap) {
        size_t cap = m->cap ? m->cap : 65536;
        while (cap < m->n + n) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        unsigned char *q = realloc(m->p, cap);
        if (!q) return -1;
        m->p = q;
        m->cap = cap;
    }
    memcpy(m->p + m->n, data, n);
    m->n += n;
    return 0;
}

// ---------------------------------------------------------------------------
// Files

// One buffer to disk through fileio's durable replace (tmp, fsync, rename, fsync dir).
// Images can be made again: replaced atomically, not fsync'ed (fileio.h).
static int write_atomic(const char *path, const void *buf, size_t n) {
    const void *bufs[1] = {buf};
    return fio_write_replace(path, bufs, &n, 1);
}

// Whole file into memory. Images are read at most a few MB at a time; the 1 GiB cap
// only keeps a wrong path (a disk image, a device) from eating the machine.
static int read_whole(const char *path, unsigned char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        MDGAN_ERR("cannot open image %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        MDGAN_ERR("cannot stat image %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        MDGAN_ERR("image %s is not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_size == 0) {
        MDGAN_ERR("image %s is an empty file", path);
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > ((uint64_t)1 << 30)) {
        MDGAN_ERR("image %s is too large (%lld bytes)", path, (long long)st.st_size);
        close(fd);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *p = malloc(n);
    if (!p) {
        MDGAN_ERR("out of memory reading image %s (%zu bytes)", path, n);
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            MDGAN_ERR("cannot read image %s: %s", path, strerror(errno));
            free(p);
            close(fd);
            return -1;
        }
        if (r == 0) break; // shrank under us: decode what is there, the decoder judges
        got += (size_t)r;
    }
    close(fd);
    if (got == 0) {
        free(p);
        MDGAN_ERR("image %s is an empty file", path);
        return -1;
    }
    *buf = p;
    *len = got;
    return 0;
}

// ---------------------------------------------------------------------------
// PNG

typedef struct {
    const unsigned char *p; // the whole file
    size_t n, pos;
    char msg[256];          // libpng's last error text
} PngIo;

static void png_error_cb(png_structp png, png_const_charp msg) {
    PngIo *io = png_get_error_ptr(png);
    snprintf(io->msg, sizeof io->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg) {
    // Ancillary-chunk trouble (bad gamma, iCCP, CRC of a text chunk): the pixels are
    // fine, and the library must not print.
    (void)png;
    (void)msg;
}

static void png_read_cb(png_structp png, png_bytep out, size_t n) {
    PngIo *io = png_get_io_ptr(png);
    if (n > io->n - io->pos) png_error(png, "unexpected end of file (truncated)");
    memcpy(out, io->p + io->pos, n);
    io->pos += n;
}

// libpng allocates an ancillary chunk's buffer (tEXt, zTXt, iTXt, eXIf, ...) from its
// length field before it reads the bytes, and its chunk size limit does not cover
// those chunks: a 107-byte file whose zTXt claims 1.9 GB asked for 1.9 GB (found by
// tests/fuzz/fuzz_image). The whole file is in memory, so each chunk's length is
// checked against the bytes left before libpng sees it; what libpng then allocates
// for a chunk is bounded by the file's size.
static int png_chunks_fit(const char *path, const unsigned char *buf, size_t len) {
    size_t pos = 8;
    while (len - pos >= 8) {
        uint32_t n = (uint32_t)buf[pos] << 24 | (uint32_t)buf[pos + 1] << 16 |
                     (uint32_t)buf[pos + 2] << 8 | buf[pos + 3];
        char type[5];
        for (int i = 0; i < 4; i++) {
            unsigned char c = buf[pos + 4 + i];
            type[i] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ? (char)c : '?';
        }
        type[4] = 0;
        size_t left = len - pos - 8;
        if (n > left || left - n < 4) {   // 4: the chunk's CRC
            MDGAN_ERR("corrupt or truncated PNG %s: chunk %s at byte %zu says %u bytes, %zu left "
                      "in the file",
                      path, type, pos, n, left);
            return -1;
        }
        if (!memcmp(type, "IEND", 4)) return 0;
        pos += 8 + (size_t)n + 4;
    }
    return 0;   // no IEND: libpng reports the cut file
}

static int png_decode(Image *img, const char *path, const unsigned char *buf, size_t len) {
    if (png_chunks_fit(path, buf, len) != 0) return -1;
    PngIo io = {.p = buf, .n = len};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, png_error_cb, png_warning_cb);
    if (!png) {
        MDGAN_ERR("out of memory decoding PNG %s", path);
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        MDGAN_ERR("out of memory decoding PNG %s", path);
        return -1;
    }
    // Written between setjmp and a possible longjmp, hence volatile.
    unsigned char *volatile rgb = NULL; // (h, w, 3)
    png_bytep *volatile rows = NULL;    // (h)
    volatile int rc = -1;
    png_uint_32 w = 0, h = 0;
    if (setjmp(png_jmpbuf(png))) {
        MDGAN_ERR("corrupt or truncated PNG %s: %s", path, io.msg);
        goto done;
    }
    png_set_read_fn(png, &io, png_read_cb);
    png_read_info(png, info);
    int bit_depth, color_type, interlace;
    if (!png_get_IHDR(png, info, &w, &h, &bit_depth, &color_type, &interlace, NULL, NULL)) {
        MDGAN_ERR("corrupt PNG %s: no image header", path);
        goto done;
    }
    if (w < 1 || h < 1 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE) {
        MDGAN_ERR("PNG %s is %ux%u: each side must be 1..%d", path, (unsigned)w, (unsigned)h,
                  IMAGE_MAX_SIDE);
        goto done;
    }
    // Everything to 8-bit RGB. tRNS would become an alpha channel through the
    // palette/gray expansion, so it is stripped along with a real alpha channel.
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16) png_set_scale_16(png); // rounds (v * 255 / 65535); strip_16 would truncate
    if ((color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_strip_alpha(png);
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_bit_depth(png, info) != 8 || png_get_channels(png, info) != 3 ||
        png_get_rowbytes(png, info) != (size_t)w * 3) {
        MDGAN_ERR("PNG %s: unsupported layout (bit depth %d, colour type %d)", path, bit_depth,
                  color_type);
        goto done;
    }
    rgb = malloc((size_t)w * h * 3);
    rows = malloc((size_t)h * sizeof(png_bytep));
    if (!rgb || !rows) {
        MDGAN_ERR("out of memory decoding PNG %s (%ux%u)", path, (unsigned)w, (unsigned)h);
        goto done;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = rgb + (size_t)y * w * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL); // reaching IEND is what tells a complete file from a cut one
    rc = 0;
done:
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    if (rc == 0) {
        img->w = (int)w;
        img->h = (int)h;
        img->rgb = rgb;
    } else {
        free(rgb);
    }
    return rc;
}

// PNG writing, our own encoder (libpng reads). A PNG's pixels are one zlib stream of
// filtered rows. The rows go in bands of PNG_BAND_ROWS, each deflated on its own (raw
// deflate ended at a byte boundary by a sync flush, the last band by the final block)
// and written as its own IDAT chunk: concatenated, the bands are one valid deflate
// stream, so a large image (refine infer's 4158x1038 contact sheet) compresses on every
// thread. The bands follow from the height alone, so a file's bytes do not depend on the
// thread count. Inside a parallel region (frames written on every thread) an image's
// bands run in turn on its own thread.
//
// Settings: the Sub filter, zlib level 1 and Huffman codes only. After the Sub filter a
// photo has few long matches; on the 33 PNGs of a predict at 128x128 this took 0.06 s
// with the frames on 2 threads against 0.09 s at level 3 and 0.43 s with libpng's
// defaults (level 6, adaptive filters), a 128x128 frame 0.56 ms against 0.70 with string
// matches, and 9% smaller. With Huffman codes only a band loses no match by starting
// afresh: predict's 33 files took 1680685 bytes this way, 1681986 through libpng.
#define PNG_BAND_ROWS 64

typedef struct {
    unsigned char *z;   // the band's raw deflate bytes
    size_t nz;
    uLong adler;        // adler32 of its filtered rows
    size_t nraw;
} PngBand;

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

// rows [y0, y1) Sub-filtered (each byte minus the one 3 to its left) and deflated
static int png_band(PngBand *band, const Image *img, int y0, int y1, int last) {
    const size_t row = (size_t)img->w * 3, line = row + 1;
    band->nraw = (size_t)(y1 - y0) * line;
    unsigned char *raw = malloc(band->nraw);
    if (!raw) return -1;
    for (int y = y0; y < y1; y++) {
        const unsigned char *src = img->rgb + (size_t)y * row;
        unsigned char *dst = raw + (size_t)(y - y0) * line;
        dst[0] = 1;   // filter type Sub
        memcpy(dst + 1, src, 3);   // a row holds at least one pixel
        for (size_t x = 3; x < row; x++) dst[1 + x] = (unsigned char)(src[x] - src[x - 3]);
    }
    band->adler = adler32(1L, raw, (uInt)band->nraw);
    z_stream zs = {0};
    int rc = -1;
    if (deflateInit2(&zs, 1, Z_DEFLATED, -15, 8, Z_HUFFMAN_ONLY) != Z_OK) goto done;
    const size_t cap = deflateBound(&zs, (uLong)band->nraw) + 16;   // + the sync flush's empty block
    band->z = malloc(cap);
    if (!band->z) goto end;
    zs.next_in = raw, zs.avail_in = (uInt)band->nraw;
    zs.next_out = band->z, zs.avail_out = (uInt)cap;
    const int zr = deflate(&zs, last ? Z_FINISH : Z_SYNC_FLUSH);
    if ((last ? zr == Z_STREAM_END : zr == Z_OK) && zs.avail_in == 0) {
        band->nz = cap - zs.avail_out;
        rc = 0;
    }
end:
    deflateEnd(&zs);
done:
    free(raw);
    return rc;
}

int image_save_png(const Image *img, const char *path) {
    if (!img || !img->rgb || img->w < 1 || img->h < 1 || img->w > IMAGE_MAX_OUT_SIDE ||
        img->h > IMAGE_MAX_OUT_SIDE) {
        MDGAN_ERR("cannot write PNG %s: bad image (%dx%d)", path, img ? img->w : 0, img ? img->h : 0);
        return -1;
    }
    const int nb = (img->h + PNG_BAND_ROWS - 1) / PNG_BAND_ROWS;
    PngBand *bands = calloc((size_t)nb, sizeof *bands);
    unsigned char *file = NULL;
    int failed = 0, rc = -1;
    if (!bands) {
        MDGAN_ERR("out of memory encoding PNG %s (%dx%d)", path, img->w, img->h);
        return -1;
    }
#pragma omp parallel for schedule(dynamic) if (nb > 1)
    for (int b = 0; b < nb; b++) {
        const int y1 = (b + 1) * PNG_BAND_ROWS < img->h ? (b + 1) * PNG_BAND_ROWS : img->h;
        if (png_band(&bands[b], img, b * PNG_BAND_ROWS, y1, b == nb - 1) != 0) {
#pragma omp atomic write
            failed = 1;
        }
    }
    if (failed) {
        MDGAN_ERR("out of memory encoding PNG %s (%dx%d)", path, img->w, img->h);
        goto done;
    }
    // signature, IHDR, an IDAT per band (the zlib header in the first, the adler32 of all
    // the filtered rows after the last), IEND; a chunk is length, type, data, CRC of type
    // and data
    size_t total = 8 + 25 + 12, at = 0;
    for (int b = 0; b < nb; b++) total += 12 + bands[b].nz;
    total += 2 + 4;
    if (!(file = malloc(total))) {
        MDGAN_ERR("out of memory encoding PNG %s (%dx%d)", path, img->w, img->h);
        goto done;
    }
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(file, sig, 8), at = 8;
    unsigned char ihdr[13];
    put_be32(ihdr, (uint32_t)img->w), put_be32(ihdr + 4, (uint32_t)img->h);
    ihdr[8] = 8, ihdr[9] = 2, ihdr[10] = ihdr[11] = ihdr[12] = 0;   // 8-bit RGB, deflate, no interlace
    uLong adler = 1L;
    for (int b = -1; b <= nb; b++) {
        const char *type = b < 0 ? "IHDR" : b < nb ? "IDAT" : "IEND";
        unsigned char *chunk = file + at;
        size_t n = 0;
        memcpy(chunk + 4, type, 4);
        if (b < 0) memcpy(chunk + 8, ihdr, 13), n = 13;
        if (b == 0) chunk[8] = 0x78, chunk[9] = 0x01, n = 2;   // deflate, 32 KiB window, level "fastest"
        if (b >= 0 && b < nb) {
            memcpy(chunk + 8 + n, bands[b].z, bands[b].nz), n += bands[b].nz;
            adler = adler32_combine(adler, bands[b].adler, (z_off_t)bands[b].nraw);
        }
        if (b == nb - 1) put_be32(chunk + 8 + n, (uint32_t)adler), n += 4;
        put_be32(chunk, (uint32_t)n);
        put_be32(chunk + 8 + n, (uint32_t)crc32(crc32(0L, Z_NULL, 0), chunk + 4, (uInt)(n + 4)));
        at += 12 + n;
    }
    rc = write_atomic(path, file, at);
done:
    for (int b = 0; b < nb; b++) free(bands[b].z);
    free(bands);
    free(file);
    return rc;
}

// ---------------------------------------------------------------------------
// JPEG

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} JpegErr;

static void jpeg_error_exit_cb(j_common_ptr cinfo) {
    JpegErr *e = (JpegErr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jb, 1);
}

// Level -1 is a warning, and every libjpeg warning means damaged data (premature end
// of file, corrupt entropy data, extraneous bytes): the decoder would carry on and
// fill the rest grey. Make them errors. Levels >= 0 are trace messages: drop them.
static void jpeg_emit_message_cb(j_common_ptr cinfo, int level) {
    if (level < 0) jpeg_error_exit_cb(cinfo);
}

static void jpeg_output_message_cb(j_common_ptr cinfo) { (void)cinfo; } // never print

static void jpeg_err_init(JpegErr *e) {
    jpeg_std_error(&e->pub);
    e->pub.error_exit = jpeg_error_exit_cb;
    e->pub.emit_message = jpeg_emit_message_cb;
    e->pub.output_message = jpeg_output_message_cb;
    e->msg[0] = '\0';
}

static int jpeg_decode(Image *img, const char *path, const unsigned char *buf, size_t len) {
    struct jpeg_decompress_struct cinfo;
    JpegErr jerr;
    jpeg_err_init(&jerr);
    cinfo.err = &jerr.pub;
    unsigned char *volatile rgb = NULL; // (h, w, 3)
    volatile int rc = -1;
    volatile int created = 0;
    int w = 0, h = 0;
    if (setjmp(jerr.jb)) {
        MDGAN_ERR("corrupt or truncated JPEG %s: %s", path, jerr.msg);
        goto done;
    }
    jpeg_create_decompress(&cinfo);
    created = 1;
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.image_width < 1 || cinfo.image_height < 1 || cinfo.image_width > IMAGE_MAX_SIDE ||
        cinfo.image_height > IMAGE_MAX_SIDE) {
        MDGAN_ERR("JPEG %s is %ux%u: each side must be 1..%d", path, (unsigned)cinfo.image_width,
                  (unsigned)cinfo.image_height, IMAGE_MAX_SIDE);
        goto done;
    }
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        MDGAN_ERR("JPEG %s is CMYK: not supported (convert it to RGB)", path);
        goto done;
    }
    cinfo.out_color_space = JCS_RGB; // YCbCr and grayscale both convert
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3 || cinfo.output_width != cinfo.image_width ||
        cinfo.output_height != cinfo.image_height) {
        MDGAN_ERR("JPEG %s: unsupported layout (%d components)", path, cinfo.output_components);
        goto done;
    }
    w = (int)cinfo.output_width;
    h = (int)cinfo.output_height;
    rgb = malloc((size_t)w * h * 3);
    if (!rgb) {
        MDGAN_ERR("out of memory decoding JPEG %s (%dx%d)", path, w, h);
        goto done;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = rgb + (size_t)cinfo.output_scanline * w * 3;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
            MDGAN_ERR("corrupt or truncated JPEG %s: no data at row %u", path,
                      (unsigned)cinfo.output_scanline);
            goto done;
        }
    }
    jpeg_finish_decompress(&cinfo);
    rc = 0;
done:
    if (created) jpeg_destroy_decompress(&cinfo);
    if (rc == 0) {
        img->w = w;
        img->h = h;
        img->rgb = rgb;
    } else {
        free(rgb);
    }
    return rc;
}

int image_save_jpeg(const Image *img, const char *path, int quality) {
    if (!img || !img->rgb || img->w < 1 || img->h < 1 || img->w > IMAGE_MAX_OUT_SIDE ||
        img->h > IMAGE_MAX_OUT_SIDE) {
        MDGAN_ERR("cannot write JPEG %s: bad image (%dx%d)", path, img ? img->w : 0, img ? img->h : 0);
        return -1;
    }
    if (quality < 1 || quality > 100) {
        MDGAN_ERR("cannot write JPEG %s: quality %d is not in 1..100", path, quality);
        return -1;
    }
    struct jpeg_compress_struct cinfo;
    JpegErr jerr;
    jpeg_err_init(&jerr);
    cinfo.err = &jerr.pub;
    // libjpeg keeps mem pointing at its current malloc'd buffer, also after an error.
    unsigned char *mem = NULL;
    unsigned long memsize = 0;
    volatile int created = 0;
    if (setjmp(jerr.jb)) {
        if (created) jpeg_destroy_compress(&cinfo);
        free(mem);
        MDGAN_ERR("cannot encode JPEG %s: %s", path, jerr.msg);
        return -1;
    }
    jpeg_create_compress(&cinfo);
    created = 1;
    jpeg_mem_dest(&cinfo, &mem, &memsize);
    cinfo.image_width = (JDIMENSION)img->w;
    cinfo.image_height = (JDIMENSION)img->h;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = img->rgb + (size_t)cinfo.next_scanline * img->w * 3;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    int rc = write_atomic(path, mem, (size_t)memsize);
    free(mem);
    return rc;
}

// ---------------------------------------------------------------------------
// Load

int image_load(Image *img, const char *path) {
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    img->w = img->h = 0;
    img->rgb = NULL;
    unsigned char *buf;
    size_t len;
    if (read_whole(path, &buf, &len) != 0) return -1;
    int rc;
    if (len >= 8 && memcmp(buf, png_sig, 8) == 0) {
        rc = png_decode(img, path, buf, len);
    } else if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) {
        rc = jpeg_decode(img, path, buf, len);
    } else {
        MDGAN_ERR("%s is not a PNG or JPEG image (%zu bytes, no PNG or JPEG signature)", path, len);
        rc = -1;
    }
    free(buf);
    return rc;
}

void image_free(Image *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

// ---------------------------------------------------------------------------
// Resize

// Per-axis filter taps: output i reads source start[i] .. start[i]+count[i]-1 with
// weights w[i*maxtaps + k].
typedef struct {
    int *start, *count;
    float *w;
    int maxtaps;
} Taps;

static void taps_free(Taps *t) {
    free(t->start);
    free(t->count);
    free(t->w);
}

static int taps_make(Taps *t, int src, int dst) {
    // Shrinking by s = src/dst covers at most ceil(s) + 1 source pixels.
    t->maxtaps = dst < src ? (src + dst - 1) / dst + 1 : 2;
    t->start = malloc((size_t)dst * sizeof(int));
    t->count = malloc((size_t)dst * sizeof(int));
    t->w = calloc((size_t)dst * t->maxtaps, sizeof(float));
    if (!t->start || !t->count || !t->w) {
        taps_free(t);
        return -1;
    }
    for (int i = 0; i < dst; i++) {
        float *wi = t->w + (size_t)i * t->maxtaps;
        if (dst < src) {
            // Exact box filter in integers, lengths in units of 1/dst source pixels:
            // output i covers [i*src, (i+1)*src), source j covers [j*dst, (j+1)*dst);
            // weight = overlap / src, so the weights of one output sum to exactly 1.
            int64_t lo = (int64_t)i * src, hi = (int64_t)(i + 1) * src;
            int j0 = (int)(lo / dst), j1 = (int)((hi - 1) / dst);
            t->start[i] = j0;
            t->count[i] = j1 - j0 + 1;
            for (int j = j0; j <= j1; j++) {
                int64_t a = lo > (int64_t)j * dst ? lo : (int64_t)j * dst;
                int64_t b = hi < (int64_t)(j + 1) * dst ? hi : (int64_t)(j + 1) * dst;
                wi[j - j0] = (float)((double)(b - a) / src);
            }
        } else if (dst > src) {
            // PyTorch bilinear, align_corners=False: x = (i + 0.5) * src/dst - 0.5,
            // negative x clamped to 0, the right neighbour clamped to the last pixel.
            double x = ((double)i + 0.5) * src / dst - 0.5;
            if (x < 0) x = 0;
            int i0 = (int)x;
            if (i0 > src - 1) i0 = src - 1;
            double l = x - i0;
            t->start[i] = i0;
            if (i0 + 1 < src) {
                t->count[i] = 2;
                wi[0] = (float)(1.0 - l);
                wi[1] = (float)l;
            } else {
                t->count[i] = 1;
                wi[0] = 1.0f;
            }
        } else {
            t->start[i] = i;
            t->count[i] = 1;
            wi[0] = 1.0f;
        }
    }
    return 0;
}

static unsigned char u8_round(float v) { // round half up, clamped
    if (!(v > 0.0f)) return 0;
    if (v >= 255.0f) return 255;
    return (unsigned char)(int)(v + 0.5f);
}

// Resize the source rectangle (x0, y0, cw, ch) to w x h: rows first, then columns.
static int resize_rect(Image *dst, const Image *src, int x0, int y0, int cw, int ch, int w, int h) {
    dst->w = dst->h = 0;
    dst->rgb = NULL;
    Taps tx = {0}, ty = {0};
    unsigned char *out = malloc((size_t)w * h * 3);
    float *tmp = malloc((size_t)ch * w * 3 * sizeof(float)); // (ch, w, 3): rows resized horizontally
    if (!out || !tmp || taps_make(&tx, cw, w) != 0 || taps_make(&ty, ch, h) != 0) {
        MDGAN_ERR("out of memory resizing a %dx%d image to %dx%d", src->w, src->h, w, h);
        free(out);
        free(tmp);
        taps_free(&tx);
        taps_free(&ty);
        return -1;
    }
    for (int y = 0; y < ch; y++) {
        const unsigned char *srow = src->rgb + ((size_t)(y0 + y) * src->w + x0) * 3;
        float *trow = tmp + (size_t)y * w * 3;
        for (int x = 0; x < w; x++) {
            const float *wx = tx.w + (size_t)x * tx.maxtaps;
            const unsigned char *s = srow + (size_t)tx.start[x] * 3;
            float r = 0, g = 0, b = 0;
            for (int k = 0; k < tx.count[x]; k++) {
                r += wx[k] * s[3 * k];
                g += wx[k] * s[3 * k + 1];
                b += wx[k] * s[3 * k + 2];
            }
            trow[3 * x] = r;
            trow[3 * x + 1] = g;
            trow[3 * x + 2] = b;
        }
    }
    for (int y = 0; y < h; y++) {
        const float *wy = ty.w + (size_t)y * ty.maxtaps;
        unsigned char *orow = out + (size_t)y * w * 3;
        for (int i = 0; i < w * 3; i++) {
            float acc = 0;
            for (int k = 0; k < ty.count[y]; k++)
                acc += wy[k] * tmp[(size_t)(ty.start[y] + k) * w * 3 + i];
            orow[i] = u8_round(acc);
        }
    }
    free(tmp);
    taps_free(&tx);
    taps_free(&ty);
    dst->w = w;
    dst->h = h;
    dst->rgb = out;
    return 0;
}

static int check_src(const Image *src, const char *what) {
    if (!src || !src->rgb || src->w < 1 || src->h < 1 || src->w > IMAGE_MAX_SIDE ||
        src->h > IMAGE_MAX_SIDE) {
        MDGAN_ERR("%s: bad source image (%dx%d)", what, src ? src->w : 0, src ? src->h : 0);
        return -1;
    }
    return 0;
}

int image_resize(Image *dst, const Image *src, int w, int h) {
    dst->w = dst->h = 0;
    dst->rgb = NULL;
    if (check_src(src, "image_resize") != 0) return -1;
    if (w < 1 || h < 1 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE) {
        MDGAN_ERR("image_resize: target size %dx%d not in 1..%d", w, h, IMAGE_MAX_SIDE);
        return -1;
    }
    return resize_rect(dst, src, 0, 0, src->w, src->h, w, h);
}

int image_fit_square(Image *dst, const Image *src, int size) {
    dst->w = dst->h = 0;
    dst->rgb = NULL;
    if (check_src(src, "image_fit_square") != 0) return -1;
    if (size < 1 || size > IMAGE_MAX_SIDE) {
        MDGAN_ERR("image_fit_square: size %d not in 1..%d", size, IMAGE_MAX_SIDE);
        return -1;
    }
    int side = src->w < src->h ? src->w : src->h;
    return resize_rect(dst, src, (src->w - side) / 2, (src->h - side) / 2, side, side, size, size);
}

// ---------------------------------------------------------------------------
// Float layout

unsigned char image_u8_from_float(float v) {
    // In double, so that (u/127.5f - 1 + 1) * 127.5 lands within 1e-5 of u: exact inverse.
    double x = ((double)v + 1.0) * 127.5;
    if (!(x > 0.0)) return 0; // NaN too
    if (x >= 255.0) return 255;
    return (unsigned char)(int)(x + 0.5);
}

void image_to_chw(float *out, const Image *img) {
    size_t hw = (size_t)img->h * img->w;
    for (size_t p = 0; p < hw; p++)
        for (int c = 0; c < 3; c++) out[c * hw + p] = img->rgb[3 * p + c] / 127.5f - 1.0f;
}

int image_from_chw(Image *img, const float *chw, int h, int w) {
    img->w = img->h = 0;
    img->rgb = NULL;
    if (h < 1 || w < 1 || h > IMAGE_MAX_OUT_SIDE || w > IMAGE_MAX_OUT_SIDE) {
        MDGAN_ERR("image_from_chw: size %dx%d not in 1..%d", w, h, IMAGE_MAX_OUT_SIDE);
        return -1;
    }
    size_t hw = (size_t)h * w;
    unsigned char *rgb = malloc(hw * 3);
    if (!rgb) {
        MDGAN_ERR("out of memory for a %dx%d image", w, h);
        return -1;
    }
    for (size_t p = 0; p < hw; p++)
        for (int c = 0; c < 3; c++) rgb[3 * p + c] = image_u8_from_float(chw[c * hw + p]);
    img->w = w;
    img->h = h;
    img->rgb = rgb;
    return 0;
}

// ---------------------------------------------------------------------------
// Contact sheet and GIF

static int check_videos(const char *what, const float *const *videos, int nvideos, int T, int H,
                        int W) {
    if (!videos || nvideos < 1 || T < 1 || H < 1 || W < 1) {
        MDGAN_ERR("%s: bad video batch (n=%d, T=%d, H=%d, W=%d)", what, nvideos, T, H, W);
        return -1;
    }
    for (int n = 0; n < nvideos; n++)
        if (!videos[n]) {
            MDGAN_ERR("%s: video %d is NULL", what, n);
            return -1;
        }
    return 0;
}

// Frame t of a (3, T, H, W) video into an RGB canvas (cw pixels wide) at (ox, oy),
// each pixel a zoom x zoom block (nearest neighbour): one source line converted once,
// then copied to its zoom lines.
static void blit_frame(unsigned char *canvas, int cw, int ox, int oy, const float *video, int T, int t, int H, int W,
                       int zoom) {
    const size_t hw = (size_t)H * W, chan = (size_t)T * hw, line = (size_t)W * zoom * 3;
    const float *f = video + (size_t)t * hw;
    for (int y = 0; y < H; y++) {
        unsigned char *row = canvas + ((size_t)(oy + y * zoom) * cw + ox) * 3;
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                const unsigned char u = image_u8_from_float(f[c * chan + (size_t)y * W + x]);
                for (int j = 0; j < zoom; j++) row[3 * ((size_t)x * zoom + j) + c] = u;
            }
        for (int j = 1; j < zoom; j++) memcpy(row + (size_t)j * cw * 3, row, line);
    }
}

int sheet_canvas_init(SheetCanvas *c, int rows, int T, int H, int W, int zoom, int gap) {
    memset(c, 0, sizeof *c);
    if (rows < 1 || T < 1 || H < 1 || W < 1 || zoom < 1) {
        MDGAN_ERR("contact sheet: bad shape (rows=%d, T=%d, H=%d, W=%d, zoom=%d)", rows, T, H, W, zoom);
        return -1;
    }
    if (gap < 0) {
        MDGAN_ERR("contact sheet: gap %d is negative", gap);
        return -1;
    }
    const int64_t ow = (int64_t)T * W * zoom + (int64_t)(T - 1) * gap;
    const int64_t oh = (int64_t)rows * H * zoom + (int64_t)(rows - 1) * gap;
    if (ow > IMAGE_MAX_OUT_SIDE || oh > IMAGE_MAX_OUT_SIDE) {
        MDGAN_ERR("contact sheet would be %lldx%lld: each side must be <= %d", (long long)ow, (long long)oh,
                  IMAGE_MAX_OUT_SIDE);
        return -1;
    }
    // on huge pages: refine infer's sheet is 13 MB, 3200 first-touch faults in 4 KiB pages
    unsigned char *rgb = mem_alloc_big((size_t)ow * oh * 3);
    if (!rgb) {
        MDGAN_ERR("out of memory for a %lldx%lld contact sheet", (long long)ow, (long long)oh);
        return -1;
    }
    memset(rgb, 255, (size_t)ow * oh * 3);
    *c = (SheetCanvas){{(int)ow, (int)oh, rgb}, rows, T, H, W, zoom, gap};
    return 0;
}

void sheet_canvas_draw(SheetCanvas *c, int row, const float *video, int Tv) {
    if (!c->img.rgb || row < 0 || row >= c->rows) return; // never past the canvas
    const int step = c->H * c->zoom + c->gap, T = c->T < Tv ? c->T : Tv;
    // refine infer's 8 rows of 32 128x128 frames: a row's frames on every thread
#pragma omp parallel for schedule(static) if ((int64_t)T * c->H * c->W * c->zoom * c->zoom >= (1 << 18))
    for (int t = 0; t < T; t++)
        blit_frame(c->img.rgb, c->img.w, t * (c->W * c->zoom + c->gap), row * step, video, Tv, t, c->H, c->W,
                   c->zoom);
}

void sheet_canvas_keep_rows(SheetCanvas *c, int rows) {
    if (rows >= 1 && rows < c->rows) {
        c->rows = rows;
        c->img.h = rows * c->H * c->zoom + (rows - 1) * c->gap; // rows below the new height go unread
    }
}

void sheet_canvas_free(SheetCanvas *c) {
    free(c->img.rgb);
    memset(c, 0, sizeof *c);
}

int image_contact_sheet(Image *out, const float *const *videos, int nvideos, int T, int H, int W,
                        int gap) {
    out->w = out->h = 0;
    out->rgb = NULL;
    if (check_videos("contact sheet", videos, nvideos, T, H, W) != 0) return -1;
    SheetCanvas c;
    if (sheet_canvas_init(&c, nvideos, T, H, W, 1, gap) != 0) return -1;
    // (inside the frame writers' parallel loop, as predict's sheet is, each row's frames
    // stay on the caller's thread: nested regions run on one)
    for (int n = 0; n < nvideos; n++) sheet_canvas_draw(&c, n, videos[n], T);
    *out = c.img;
    return 0;
}

// The fixed 6x7x6 cube: red and blue levels k*51, green round(k*255/6).
enum { GIF_R = 6, GIF_G = 7, GIF_B = 6 };

// 4x4 Bayer matrix: thresholds (2B+1)/32 in (0, 1).
static const int bayer4[4][4] = {{0, 8, 2, 10}, {12, 4, 14, 6}, {3, 11, 1, 9}, {15, 7, 13, 5}};

// Ordered dither of one sample to one of L levels: floor(u*(L-1)/255 + (2B+1)/32),
// in integers so the result is exact. A sample on a level (u*(L-1)/255 within
// 1/64 of an integer, which the rounded green levels are) keeps it.
static int dither_level(int u, int L, int bayer) {
    int q = (32 * u * (L - 1) + 255 * (2 * bayer + 1)) / (32 * 255);
    return q > L - 1 ? L - 1 : q;
}

static int gif_write_cb(GifFileType *gif, const GifByteType *data, int n) {
    MemBuf *m = gif->UserData;
    if (n < 0 || membuf_append(m, data, (size_t)n) != 0) return 0;
    return n;
}

int image_save_gif(const char *path, const float *const *videos, int nvideos, int T, int H, int W,
                   int delay_cs) {
    if (check_videos("GIF", videos, nvideos, T, H, W) != 0) {
        mdgan_errctx("cannot write %s", path);
        return -1;
    }
    if (delay_cs < 0 || delay_cs > 65535) {
        MDGAN_ERR("cannot write GIF %s: delay %d cs not in 0..65535", path, delay_cs);
        return -1;
    }
    int64_t gw = (int64_t)nvideos * W + (int64_t)(nvideos - 1) * IMAGE_GIF_GAP;
    if (gw > IMAGE_MAX_OUT_SIDE || H > IMAGE_MAX_OUT_SIDE) {
        MDGAN_ERR("cannot write GIF %s: %lldx%d frames are too large (max side %d)", path,
                  (long long)gw, H, IMAGE_MAX_OUT_SIDE);
        return -1;
    }
    int fw = (int)gw;
    size_t npix = (size_t)fw * H;
    unsigned char *canvas = malloc(npix * 3); // (H, fw, 3)
    GifPixelType *idx = malloc(npix);         // (H, fw)
    ColorMapObject *cmap = GifMakeMapObject(256, NULL);
    MemBuf out = {0};
    GifFileType *gif = NULL;
    int rc = -1, gerr = 0;
    if (!canvas || !idx || !cmap) {
        MDGAN_ERR("out of memory writing GIF %s", path);
        goto done;
    }
    memset(canvas, 255, npix * 3); // the white gaps between clips
    for (int i = 0; i < 256; i++) {
        GifColorType *col = &cmap->Colors[i];
        if (i < GIF_R * GIF_G * GIF_B) {
            int r = i / (GIF_G * GIF_B), g = i / GIF_B % GIF_G, b = i % GIF_B;
            col->Red = (GifByteType)(r * 255 / (GIF_R - 1));
            col->Green = (GifByteType)((g * 255 + (GIF_G - 1) / 2) / (GIF_G - 1));
            col->Blue = (GifByteType)(b * 255 / (GIF_B - 1));
        } else {
            col->Red = col->Green = col->Blue = 0; // unused
        }
    }
    gif = EGifOpen(&out, gif_write_cb, &gerr);
    if (!gif) {
        MDGAN_ERR("cannot write GIF %s: %s", path, GifErrorString(gerr));
        goto done;
    }
    EGifSetGifVersion(gif, true); // GIF89a: needed for the delay and loop extensions
    if (EGifPutScreenDesc(gif, fw, H, 8, 0, cmap) == GIF_ERROR) goto gif_fail;
    // NETSCAPE2.0 application extension: sub-block 1, loop count 0 = forever.
    static const unsigned char loop[3] = {1, 0, 0};
    if (EGifPutExtensionLeader(gif, APPLICATION_EXT_FUNC_CODE) == GIF_ERROR ||
        EGifPutExtensionBlock(gif, 11, "NETSCAPE2.0") == GIF_ERROR ||
        EGifPutExtensionBlock(gif, 3, loop) == GIF_ERROR || EGifPutExtensionTrailer(gif) == GIF_ERROR)
        goto gif_fail;
    GraphicsControlBlock gcb = {.DisposalMode = DISPOSE_DO_NOT, .UserInputFlag = false,
                                .DelayTime = delay_cs, .TransparentColor = NO_TRANSPARENT_COLOR};
    GifByteType ext[4];
    size_t extlen = EGifGCBToExtension(&gcb, ext);
    for (int t = 0; t < T; t++) {
        for (int n = 0; n < nvideos; n++)
            blit_frame(canvas, fw, n * (W + IMAGE_GIF_GAP), 0, videos[n], T, t, H, W, 1);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < fw; x++) {
                size_t p = (size_t)y * fw + x;
                int b4 = bayer4[y & 3][x & 3];
                int r = dither_level(canvas[3 * p], GIF_R, b4);
                int g = dither_level(canvas[3 * p + 1], GIF_G, b4);
                int b = dither_level(canvas[3 * p + 2], GIF_B, b4);
                idx[p] = (GifPixelType)((r * GIF_G + g) * GIF_B + b);
            }
        if (EGifPutExtension(gif, GRAPHICS_EXT_FUNC_CODE, (int)extlen, ext) == GIF_ERROR ||
            EGifPutImageDesc(gif, 0, 0, fw, H, false, NULL) == GIF_ERROR)
            goto gif_fail;
        for (int y = 0; y < H; y++)
            if (EGifPutLine(gif, idx + (size_t)y * fw, fw) == GIF_ERROR) goto gif_fail;
    }
    {
        int e = 0;
        int ok = EGifCloseFile(gif, &e); // frees gif whatever happens
        gif = NULL;
        if (ok == GIF_ERROR) {
            MDGAN_ERR("cannot encode GIF %s: %s", path, GifErrorString(e));
            goto done;
        }
    }
    rc = write_atomic(path, out.p, out.n);
    goto done;
gif_fail:
    MDGAN_ERR("cannot encode GIF %s: %s", path, GifErrorString(gif->Error));
done:
    if (gif) EGifCloseFile(gif, &gerr);
    GifFreeMapObject(cmap);
    free(out.p);
    free(idx);
    free(canvas);
    return rc;
}

// How frame t is named: names[t] when names is set, else <prefix><first + t> with the
// number zero-padded to digits; ".png" is part of names[t] but added to the numbered.
typedef struct {
    const char *prefix;
    int digits;
    long first;
    char *const *names;
} FrameNames;

// Frame t of the clip, or (job -1) the whole contact sheet.
static int save_frame_job(int job, const char *dir, const FrameNames *nm, const float *video, int T, int H, int W,
                          const ImageSheet *sheet) {
    if (job < 0) return image_save_contact_sheet(sheet->path, sheet->videos, sheet->nvideos, T, H, W, sheet->gap);
    const size_t plane = (size_t)H * W;
    float *frame = malloc(3 * plane * sizeof(float));
    if (!frame) {
        MDGAN_ERR("out of memory writing frames to %s", dir);
        return -1;
    }
    for (int c = 0; c < 3; c++) memcpy(frame + c * plane, video + ((size_t)c * T + job) * plane, plane * sizeof(float));
    char path[8192];
    if (nm->names) snprintf(path, sizeof path, "%s/%s", dir, nm->names[job]);
    else snprintf(path, sizeof path, "%s/%s%0*ld.png", dir, nm->prefix, nm->digits, nm->first + job);
    Image img = {0};
    int rc = image_from_chw(&img, frame, H, W) != 0 || image_save_png(&img, path) != 0 ? -1 : 0;
    image_free(&img);
    free(frame);
    return rc;
}

static int save_frames(const char *dir, const FrameNames *nm, const float *video, int T, int H, int W,
                       const ImageSheet *sheet) {
    // frames are independent: encoded on every thread (PNG compression was most of a
    // predict's writing); the sheet, the largest image, is the first job, so that it is
    // encoded beside the frames rather than after them.
    const int first_job = sheet ? -1 : 0;
    MdganLoopError err = MDGAN_LOOP_ERROR_INIT;
#pragma omp parallel for schedule(dynamic)
    for (int job = first_job; job < T; job++) {
        if (mdgan_loop_skip(&err, job)) continue;
        if (save_frame_job(job, dir, nm, video, T, H, W, sheet) != 0) mdgan_loop_fail(&err, job);
    }
    return mdgan_loop_error(&err);
}

int image_save_frames(const char *dir, const char *prefix, int digits, long first, const float *video, int T, int H,
                      int W) {
    return image_save_frames_and_sheet(dir, prefix, digits, first, video, T, H, W, NULL);
}

int image_save_frames_and_sheet(const char *dir, const char *prefix, int digits, long first, const float *video, int T,
                                int H, int W, const ImageSheet *sheet) {
    const FrameNames nm = {prefix, digits, first, NULL};
    return save_frames(dir, &nm, video, T, H, W, sheet);
}

int image_save_frames_named(const char *dir, char *const *names, const float *video, int T, int H, int W) {
    const FrameNames nm = {NULL, 0, 0, names};
    return save_frames(dir, &nm, video, T, H, W, NULL);
}

void image_upscale_nearest(float *out, const float *in, int C, int T, int H, int W, int k) {
    const size_t ow = (size_t)W * k;
    for (size_t plane = 0; plane < (size_t)C * T; plane++)
        for (int y = 0; y < H; y++) {
            const float *src = in + (plane * H + y) * W;
            float *row = out + (plane * H * k + (size_t)y * k) * ow;
            for (int x = 0; x < W; x++)
                for (int j = 0; j < k; j++) row[(size_t)x * k + j] = src[x];
            for (int j = 1; j < k; j++) memcpy(row + j * ow, row, ow * sizeof(float));
        }
}

int image_view_zoom(int S) { return S >= IMAGE_VIEW_MIN_SIDE ? 1 : (IMAGE_VIEW_MIN_SIDE + S - 1) / S; }

int image_zoom_videos(const float **out, float **buf, const float *const *videos, int nvideos, int T, int H, int W,
                      int zoom) {
    *buf = NULL;
    const size_t big = (size_t)3 * T * H * W * zoom * zoom;
    if (zoom > 1 && !(*buf = malloc((size_t)nvideos * big * sizeof(float)))) {
        MDGAN_ERR("out of memory enlarging %d clips of %d frames of %dx%d by %d", nvideos, T, H, W, zoom);
        return -1;
    }
    for (int i = 0; i < nvideos; i++) {
        out[i] = videos[i];
        if (*buf) {
            image_upscale_nearest(*buf + (size_t)i * big, videos[i], 3, T, H, W, zoom);
            out[i] = *buf + (size_t)i * big;
        }
    }
    return 0;
}

int image_save_contact_sheet(const char *path, const float *const *videos, int nvideos, int T, int H, int W, int gap) {
    Image sheet = {0};
    int rc = image_contact_sheet(&sheet, videos, nvideos, T, H, W, gap) != 0 || image_save_png(&sheet, path) != 0 ? -1 : 0;
    image_free(&sheet);
    return rc;
}
