// 3-D convolution as vol2col + sgemm, and the transposed convolution as its adjoint.
// Per sample n, with Ck = C*kT*kH*kW and L = oT*oH*oW:
//   col (Ck, L) = vol2col(x_n)         col[(c,kt,kh,kw), (ot,oh,ow)] = x_n[c, ot*sT-pT+kt, ...]
//   conv:    y_n (K, L)  = W (K, Ck) col
//   adjoint: col = W^T y_n, then x_n += col2vol(col)
// (tiled, see "tiles" below). Where output lines are whole vectors, our kernels read col
// in place from the input lines split into stride phases and add W^T y_n straight into
// them, instead of copying col out and back (see "the column matrix read in place").
#include "mdgan/conv.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "mdgan/error.h"
#include "mdgan/gemm.h"

enum { CONV_MAX_KERNEL = 64 }; // taps along one axis (the loops keep one offset per tap)

static int out_extent(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }

static int shape_check(const ConvShape *s) {
    const int v[] = {s->N, s->C, s->T, s->H, s->W, s->K, s->oT, s->oH, s->oW,
                     s->kT, s->kH, s->kW, s->sT, s->sH, s->sW};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] <= 0) {
            MDGAN_ERR("convolution shape N=%d C=%d K=%d in (%d,%d,%d) out (%d,%d,%d) kernel (%d,%d,%d) "
                      "stride (%d,%d,%d) is empty or invalid", s->N, s->C, s->K, s->T, s->H, s->W,
                      s->oT, s->oH, s->oW, s->kT, s->kH, s->kW, s->sT, s->sH, s->sW);
            return -1;
        }
    if (s->kT > CONV_MAX_KERNEL || s->kH > CONV_MAX_KERNEL || s->kW > CONV_MAX_KERNEL) {
        MDGAN_ERR("convolution kernel (%d,%d,%d) is larger than %d along an axis", s->kT, s->kH, s->kW,
                  CONV_MAX_KERNEL);
        return -1;
    }
    if (s->pT < 0 || s->pH < 0 || s->pW < 0 || s->pT >= s->kT || s->pH >= s->kH || s->pW >= s->kW) {
        MDGAN_ERR("convolution padding (%d,%d,%d) must be >= 0 and smaller than the kernel (%d,%d,%d)",
                  s->pT, s->pH, s->pW, s->kT, s->kH, s->kW);
        return -1;
    }
    return 0;
}

static void fill_geometry(ConvShape *s, const int k[3], const int stride[3], const int pad[3]) {
    s->kT = k[0]; s->kH = k[1]; s->kW = k[2];
    s->sT = stride[0]; s->sH = stride[1]; s->sW = stride[2];
    s->pT = pad[0]; s->pH = pad[1]; s->pW = pad[2];
}

int conv3d_shape(ConvShape *s, int N, int C, int K, int T, int H, int W,
                 const int k[3], const int stride[3], const int pad[3]) {
    memset(s, 0, sizeof *s);
    fill_geometry(s, k, stride, pad);
    s->N = N; s->C = C; s->K = K; s->T = T; s->H = H; s->W = W;
    if (stride[0] <= 0 || stride[1] <= 0 || stride[2] <= 0) {
        MDGAN_ERR("convolution stride (%d,%d,%d) must be positive", stride[0], stride[1], stride[2]);
        return -1;
    }
    s->oT = out_extent(T, k[0], stride[0], pad[0]);
    s->oH = out_extent(H, k[1], stride[1], pad[1]);
    s->oW = out_extent(W, k[2], stride[2], pad[2]);
    if (T + 2 * pad[0] < k[0] || H + 2 * pad[1] < k[1] || W + 2 * pad[2] < k[2]) s->oT = 0;
    return shape_check(s);
}

int conv_transpose3d_shape(ConvShape *s, int N, int in_ch, int out_ch, int iT, int iH, int iW,
                           const int k[3], const int stride[3], const int pad[3]) {
    memset(s, 0, sizeof *s);
    fill_geometry(s, k, stride, pad);
    s->N = N; s->K = in_ch; s->C = out_ch; s->oT = iT; s->oH = iH; s->oW = iW;
    s->T = (iT - 1) * stride[0] - 2 * pad[0] + k[0];
    s->H = (iH - 1) * stride[1] - 2 * pad[1] + k[1];
    s->W = (iW - 1) * stride[2] - 2 * pad[2] + k[2];
    if (shape_check(s) != 0) return -1;
    // The volume must map back onto exactly this column extent, or the pair is not adjoint.
    if (out_extent(s->T, k[0], stride[0], pad[0]) != iT || out_extent(s->H, k[1], stride[1], pad[1]) != iH ||
        out_extent(s->W, k[2], stride[2], pad[2]) != iW) {
        MDGAN_ERR("transposed convolution (%d,%d,%d) -> (%d,%d,%d) is not invertible", iT, iH, iW, s->T, s->H,
                  s->W);
        return -1;
    }
    return 0;
}

static size_t kvol(const ConvShape *s) { return (size_t)s->kT * s->kH * s->kW; }
static size_t vol_plane(const ConvShape *s) { return (size_t)s->T * s->H * s->W; }
static size_t col_plane(const ConvShape *s) { return (size_t)s->oT * s->oH * s->oW; }

size_t conv_volume_numel(const ConvShape *s) { return (size_t)s->N * s->C * vol_plane(s); }
size_t conv_column_numel(const ConvShape *s) { return (size_t)s->N * s->K * col_plane(s); }
size_t conv_weight_numel(const ConvShape *s) { return (size_t)s->K * s->C * kvol(s); }

// ---- tiles ----
// The column matrix of one sample is never built whole: it is cut into tiles of whole
// output lines (q = ot*oH + oh, oW columns each) small enough to stay in cache. The
// work is split into items that write disjoint outputs and run on OpenMP threads, each
// with its own tile of the workspace and a single-threaded sgemm (cli_set_threads gives
// OpenBLAS one thread), so one thread pool does everything. Item and tile boundaries
// depend on the shape only, never on the thread count, so every output element sums
// its terms in the same order with any number of threads. (One exception: the column
// gather's forward, whose columns and output channels share no sum, may be cut by the
// thread count; see gather_cut.)

// TILE_FLOATS: a tile's target size (256 KiB, about half an L2). Column-gather tiles
// keep MIN_COLS columns even when that makes them larger (up to BIG_TILE_FLOATS, and
// never fewer than FEW_COLS): each sgemm call re-packs W, so a tile of a few dozen
// columns spends a good part of its time packing (512 columns took the 16->32 layer's
// forward from 20 to 18 ms at T=32 64x64 batch 4). GATHER_ITEMS, K_BLOCK and
// CUT_MIN_COLS: when a forward's tiles make fewer than GATHER_ITEMS items, how it is
// cut further (gather_cut; into blocks of output channels only from 2 * K_BLOCK of them).
enum { TILE_FLOATS = 1 << 16, ROW_GROUPS = 16, MIN_COLS = 512, FEW_COLS = 64, BIG_TILE_FLOATS = 1 << 20, K_BLOCK = 64,
       GATHER_ITEMS = 4, CUT_MIN_COLS = 128 };

static size_t lines_total(const ConvShape *s) { return (size_t)s->oT * s->oH; }

// Output lines per tile when a tile holds `rows` rows.
static size_t tile_lines(const ConvShape *s, size_t rows) {
    size_t lines = TILE_FLOATS / (rows * (size_t)s->oW);
    if (lines < 1) lines = 1;
    return lines < lines_total(s) ? lines : lines_total(s);
}

// End of the tile of `lines` lines that starts at line q0 (the last tile may be short).
static size_t tile_end(const ConvShape *s, size_t q0, size_t lines) {
    return q0 + lines < lines_total(s) ? q0 + lines : lines_total(s);
}

// Lines per column-gather tile: cache-sized, but MIN_COLS columns at least (FEW_COLS
// when MIN_COLS would exceed BIG_TILE_FLOATS).
static size_t gather_lines(const ConvShape *s) {
    const size_t rows = (size_t)s->C * kvol(s);
    size_t cols = rows * MIN_COLS <= BIG_TILE_FLOATS ? MIN_COLS : BIG_TILE_FLOATS / rows;
    if (cols < FEW_COLS) cols = FEW_COLS;
    size_t lines = tile_lines(s, rows), least = (cols + s->oW - 1) / s->oW;
    if (least > lines_total(s)) least = lines_total(s);
    return lines > least ? lines : least;
}

static size_t line_floats(const ConvShape *s);

// A thread's part of the workspace: a tile, then scratch for copying it from or adding
// it back to the input (a region of split lines, see vol2col_tile_ld).
static size_t tile_part(const ConvShape *s) {
    size_t widest = (size_t)s->C * kvol(s) * gather_lines(s) * s->oW; // every other tile is smaller
    return widest > TILE_FLOATS ? widest : TILE_FLOATS;
}
static size_t v2c_region_floats(const ConvShape *s);
// Whole cache lines, so that every thread's tile starts as aligned as the workspace
// (a tile 16 bytes off a line made the 32->64 layer's weight gradient 40% slower).
static size_t tile_floats(const ConvShape *s) {
    const size_t n = tile_part(s) + v2c_region_floats(s);
    return (n + 15) / 16 * 16;
}

// Weight gradients small enough (K*Ck floats at most SMALL_DW_FLOATS) are summed by
// columns instead: DW_SPLITS items per sample, each with its own partial dW.
enum { SMALL_DW_FLOATS = 1 << 16, DW_SPLITS = 8 };

static size_t dw_floats(const ConvShape *s) { return (size_t)s->K * s->C * kvol(s); }
static int dw_by_columns(const ConvShape *s) { return dw_floats(s) <= SMALL_DW_FLOATS; }

static size_t gather_tiles(const ConvShape *s) { return (lines_total(s) + gather_lines(s) - 1) / gather_lines(s); }
static int dw_splits(const ConvShape *s) {
    return gather_tiles(s) < DW_SPLITS ? (int)gather_tiles(s) : DW_SPLITS;
}

// The workspace: a tile per thread, then the small weight gradients' partials, then
// the packed weights, then the batched weight gradients' copy of dY (batched_at).
static size_t partials_floats(const ConvShape *s) {
    return dw_by_columns(s) ? (size_t)s->N * dw_splits(s) * dw_floats(s) : 0;
}
static float *partials_at(const ConvShape *s, float *ws) { return ws + CONV_MAX_THREADS * tile_floats(s); }

// The weights packed once per call for every tile's product (gemm_pack_a): W (K, Ck)
// for the column gather, W^T (Ck, K) for the scatter.
// Only weights of up to PACKED_W_MAX floats: a copy of the largest ones (33 MB at the
// paper's shape) would weigh on inference's memory, and their layers have so few
// columns that each tile's item packs rows no other item packs anyway.
enum { PACKED_W_MAX = 1 << 22 };
static size_t packed_w_floats(const ConvShape *s) {
    const int Ck = s->C * (int)kvol(s);
    size_t a = gemm_packed_floats(s->K, Ck), b = gemm_packed_floats(Ck, s->K), n = a > b ? a : b;
    return n <= PACKED_W_MAX ? n : 0;
}
static float *packed_w(const ConvShape *s, float *ws) {
    return packed_w_floats(s) ? partials_at(s, ws) + partials_floats(s) : NULL;
}

// Weight gradients of layers with few output columns per sample (the 64->128 layer at
// T=32 64x64 has 64): a sum over one sample's columns is too short for the dot-sum
// kernel (its reduction and the load and store of dW outweigh 64 multiply-adds), so a
// row group sums the columns of several samples in one product, k = samples x columns.
// Their vol2col tiles lie side by side (row stride samples x columns) and colside is
// copied once per call into the same order, (K, N*L). Used when one tile holds a
// sample's every line; DW_BATCH_COLS: below this many columns a sample is batched.
enum { DW_BATCH_COLS = 256 };
static int whole_volume(const ConvShape *s);
static int dw_row_group(const ConvShape *s) {
    const int Ck = s->C * (int)kvol(s);
    return (Ck + ROW_GROUPS - 1) / ROW_GROUPS;
}
static int dw_samples_per_tile(const ConvShape *s) {
    if (whole_volume(s) || dw_by_columns(s) || s->N < 2 || col_plane(s) >= DW_BATCH_COLS) return 1;
    const size_t group = (size_t)dw_row_group(s);
    if (tile_lines(s, group) < lines_total(s)) return 1;
    size_t per = tile_part(s) / (group * col_plane(s));
    return per < 2 ? 1 : per < (size_t)s->N ? (int)per : s->N;
}
static size_t batched_floats(const ConvShape *s) {
    return dw_samples_per_tile(s) > 1 ? (size_t)s->K * s->N * col_plane(s) : 0;
}
static float *batched_at(const ConvShape *s, float *ws) {
    return partials_at(s, ws) + partials_floats(s) + packed_w_floats(s);
}

size_t conv_workspace_floats(const ConvShape *s) {
    return CONV_MAX_THREADS * tile_floats(s) + partials_floats(s) + packed_w_floats(s) + batched_floats(s);
}

int conv_threads(void) {
    int nt = omp_get_max_threads();
    // see cli_set_threads: only the pthreads build has a pool that would compete
    if (openblas_get_parallel() == 1 && openblas_get_num_threads() > 1) openblas_set_num_threads(1);
    return nt < CONV_MAX_THREADS ? nt : CONV_MAX_THREADS;
}

// ---- lines split into stride phases ----
// An input line row[0..W) is split into its sW stride phases, each with kW zeros on
// both sides: phase m holds row[j*sW + m] at line_pad(s) + j. The tap kw (offset
// d = kw - pW = sh*sW + m, 0 <= m < sW) reads row[i*sW + d] = phase m at line_pad + i + sh
// for output column i: one contiguous run of oW floats for every tap, the padding
// zeros already in place, whatever the stride. So a line is split once and serves all
// kW taps (the rows (c, kt, kh, 0..kW-1) of the column matrix are consecutive), and the
// bookkeeping of a line (its input row, whether it is padding) is paid once per kW rows.

static size_t line_pad(const ConvShape *s) { return (size_t)s->kW; }
static size_t phase_len(const ConvShape *s) { return (size_t)(s->W + s->sW - 1) / s->sW + 2 * line_pad(s); }
static size_t line_floats(const ConvShape *s) { return (size_t)s->sW * phase_len(s); }

// Tap kw's offset d = kw - pW as sh*sW + m with 0 <= m < sW: its phase m and shift sh.
static int tap_phase(const ConvShape *s, int kw, int *sh) {
    const int d = kw - s->pW, m = ((d % s->sW) + s->sW) % s->sW;
    *sh = (d - m) / s->sW;
    return m;
}

// Where tap kw starts in the split line.
static size_t tap_start(const ConvShape *s, int kw) {
    int sh;
    const int m = tap_phase(s, kw, &sh);
    return (size_t)m * phase_len(s) + line_pad(s) + (size_t)(ptrdiff_t)sh;
}

// Writes the data positions only: the rest of the buffer stays as zeroed once.
static inline void split_line(float *restrict ph, const float *restrict row, const ConvShape *s) {
    const size_t len = phase_len(s), pad = line_pad(s);
    const int W = s->W, st = s->sW;
    if (st == 1) {
        memcpy(ph + pad, row, sizeof(float) * (size_t)W);
    } else if (st == 2) {
        float *restrict e = ph + pad, *restrict o = ph + len + pad;
        for (int j = 0; j < W / 2; j++) e[j] = row[2 * j], o[j] = row[2 * j + 1];
        if (W & 1) e[W / 2] = row[W - 1];
    } else {
        for (int m = 0; m < st; m++)
            for (int j = 0; m + j * st < W; j++) ph[m * len + pad + j] = row[m + j * st];
    }
}

// The adjoint: row[0..W) += the data positions of the split line ph.
static inline void add_split_line(float *restrict row, const float *restrict ph, const ConvShape *s) {
    const size_t len = phase_len(s), pad = line_pad(s);
    const int W = s->W, st = s->sW;
    if (st == 1) {
        for (int j = 0; j < W; j++) row[j] += ph[pad + j];
    } else if (st == 2) {
        const float *restrict e = ph + pad, *restrict o = ph + len + pad;
        for (int j = 0; j < W / 2; j++) row[2 * j] += e[j], row[2 * j + 1] += o[j];
        if (W & 1) row[W - 1] += e[W / 2];
    } else {
        for (int m = 0; m < st; m++)
            for (int j = 0; m + j * st < W; j++) row[m + j * st] += ph[m * len + pad + j];
    }
}

// A run of n floats copied (or added): the deep layers' runs are a line of 4, 8 or 16
// outputs, and a libc call per run cost as much as the copy (a third of vol2col at the
// 32->64 layer); with the size known, each is a few inline vector moves.
static inline void copy_run(float *restrict dst, const float *restrict src, size_t n) {
    switch (n) {
    case 4: memcpy(dst, src, 4 * sizeof(float)); break;
    case 8: memcpy(dst, src, 8 * sizeof(float)); break;
    case 16: memcpy(dst, src, 16 * sizeof(float)); break;
    default: memcpy(dst, src, n * sizeof(float));
    }
}
static inline void add_run(float *restrict dst, const float *restrict src, size_t n) {
    switch (n) {
    case 4: for (int i = 0; i < 4; i++) dst[i] += src[i]; break;
    case 8: for (int i = 0; i < 8; i++) dst[i] += src[i]; break;
    case 16: for (int i = 0; i < 16; i++) dst[i] += src[i]; break;
    default: for (size_t i = 0; i < n; i++) dst[i] += src[i];
    }
}

// ---- the column matrix read in place ----
// Where each output line is whole vectors (oW a multiple of 16), our kernels read the
// column matrix straight from the input lines split into stride phases (a "region":
// the lines a tile reaches, split once) instead of from a copied column tile: a row
// (c, kt, kh, kw) of the tile is, line by line, a run of oW floats at tap_start(kw) of
// the split line (it, ih), and a column tile is 8 to 64 times the region's size
// (kernel volume / stride volume). Region layout: [c][tt][hh][line_floats], tt =
// (ot - ot0)*sT + kt over the tile's first output slice ot0, hh = oh*sH + kh (the
// input line ih = hh - pH, so padding lines are zero lines in place); so element
// (r, column of line q at ow) is at row[r] + run[q's run] + ow % 16, the GemmRuns of
// gemm.h. The values are those vol2col copies, the products the same, bit for bit;
// the adjoint adds each tap into the split line in turn (col2vol sums a line's taps
// first), so its sums run in another, equally fixed order.

typedef struct {
    int ot0, used, hh0, hlines;
} Window;

// The part of the input a tile [q0, q1) reaches: slices ot0*sT - pT + [0, used) and
// padded lines hh [hh0, hh0 + hlines) of each (all of them when the tile spans
// several output slices). The region holds just those: [c][tt][hh - hh0][line].
static Window tile_window(const ConvShape *s, size_t q0, size_t q1) {
    Window win;
    win.ot0 = (int)(q0 / s->oH);
    const int ot1 = (int)((q1 - 1) / s->oH);
    win.used = (ot1 - win.ot0) * s->sT + s->kT;
    const int first = ot1 == win.ot0 ? (int)(q0 % s->oH) : 0, last = ot1 == win.ot0 ? (int)((q1 - 1) % s->oH) : s->oH - 1;
    win.hh0 = first * s->sH, win.hlines = (last - first) * s->sH + s->kH;
    return win;
}

// One channel's part of a region: the window's lines of channel xc split (zero lines
// for padding), or all zeros when xc is NULL.
static void window_fill(float *region, const float *xc, const ConvShape *s, const Window *win) {
    const size_t lf = line_floats(s), slice_floats = (size_t)win->hlines * lf;
    for (int tt = 0; tt < win->used; tt++) {
        const int it = win->ot0 * s->sT - s->pT + tt;
        float *slice = region + (size_t)tt * slice_floats;
        memset(slice, 0, sizeof(float) * slice_floats);
        if (!xc || it < 0 || it >= s->T) continue;
        for (int hh = win->hh0; hh < win->hh0 + win->hlines; hh++) {
            const int ih = hh - s->pH;
            if (ih >= 0 && ih < s->H)
                split_line(slice + (size_t)(hh - win->hh0) * lf, xc + ((size_t)it * s->H + ih) * s->W, s);
        }
    }
}

// The largest region of `channels` channels over the tiles of `lines` lines.
static size_t region_floats(const ConvShape *s, size_t lines, int channels) {
    size_t most = 0;
    for (size_t q0 = 0; q0 < lines_total(s); q0 += lines) {
        const Window win = tile_window(s, q0, tile_end(s, q0, lines));
        const size_t n = (size_t)win.used * (size_t)win.hlines;
        if (n > most) most = n;
    }
    return (size_t)channels * most * line_floats(s);
}

static int runs_on = 1;
void conv_use_runs(int on) { __atomic_store_n(&runs_on, on, __ATOMIC_RELAXED); }

// When the column matrix of tiles of `lines` lines is read in place, with regions of
// `channels` channels: the floats of the largest region, where a thread's part puts the
// offset table next (rows, then one run per 16 columns, as ptrdiff_t, from the first
// 64-byte boundary: a thread's part need not be aligned for them). 0 when the copied
// path runs instead: not our kernels, lines that are not whole vectors, or a region
// and its table larger than a thread's part.
static size_t runs_region(const ConvShape *s, size_t lines, int channels) {
    if (!__atomic_load_n(&runs_on, __ATOMIC_RELAXED) || !gemm_own() || s->oW % 16 != 0) return 0;
    const size_t region = region_floats(s, lines, channels);
    const size_t rows = (size_t)channels * kvol(s), runs = lines * (size_t)s->oW / 16 + 1;
    const size_t part = region + 16 + (rows + runs) * (sizeof(ptrdiff_t) / sizeof(float));
    return part <= tile_floats(s) ? region : 0;
}

// The region at part for channels [c0, c1) of sample x and the tile [q0, q1), with its
// offsets: b->row[i] for rows c0*kvol + i, b->run[j] for the tile's runs of 16 columns.
// split: the input lines split into it (zero lines for padding); else all zeros, for a
// product to add into (region_add_back then adds it to the volume). The offsets go
// past part + table_at (runs_region: past the largest region).
static void region_fill(GemmRuns *b, float *part, size_t table_at, const float *x, const ConvShape *s, int c0, int c1,
                        size_t q0, size_t q1, int split) {
    const size_t lf = line_floats(s);
    const Window win = tile_window(s, q0, q1);
    const size_t slice_floats = (size_t)win.hlines * lf;
    float *region = part;
    ptrdiff_t *row = (ptrdiff_t *)(((uintptr_t)(part + table_at) + 63) & ~(uintptr_t)63);
    ptrdiff_t *run = row + (size_t)(c1 - c0) * kvol(s);
    for (int c = c0; c < c1; c++)
        window_fill(region + (size_t)(c - c0) * win.used * slice_floats, split ? x + (size_t)c * vol_plane(s) : NULL,
                    s, &win);
    int r = 0;
    for (int c = 0; c < c1 - c0; c++)
        for (int kt = 0; kt < s->kT; kt++)
            for (int kh = 0; kh < s->kH; kh++)
                for (int kw = 0; kw < s->kW; kw++)
                    row[r++] = (ptrdiff_t)((((size_t)c * win.used + (size_t)kt) * win.hlines + (size_t)kh) * lf +
                                           tap_start(s, kw));
    const size_t cols = (q1 - q0) * (size_t)s->oW;
    for (size_t j = 0; j * 16 < cols; j++) {
        const size_t q = q0 + j * 16 / (size_t)s->oW, ow0 = j * 16 % (size_t)s->oW;
        const int ot = (int)(q / (size_t)s->oH), oh = (int)(q % (size_t)s->oH);
        run[j] = (ptrdiff_t)(((size_t)(ot - win.ot0) * s->sT * win.hlines + (size_t)(oh * s->sH - win.hh0)) * lf + ow0);
    }
    b->base = region, b->row = row, b->run = run;
}

// x[c0..c1) += the region's lines (the data positions of each split line, padding
// lines and padding positions dropped): the adjoint of region_fill's split.
static void region_add_back(float *x, const float *region, const ConvShape *s, int c0, int c1, size_t q0, size_t q1) {
    const size_t lf = line_floats(s);
    const Window win = tile_window(s, q0, q1);
    for (int c = c0; c < c1; c++)
        for (int tt = 0; tt < win.used; tt++) {
            const int it = win.ot0 * s->sT - s->pT + tt;
            if (it < 0 || it >= s->T) continue;
            const float *slice = region + ((size_t)(c - c0) * win.used + (size_t)tt) * win.hlines * lf;
            for (int hh = win.hh0; hh < win.hh0 + win.hlines; hh++) {
                const int ih = hh - s->pH;
                if (ih < 0 || ih >= s->H) continue;
                add_split_line(x + (((size_t)c * s->T + it) * s->H + ih) * s->W, slice + (size_t)(hh - win.hh0) * lf,
                               s);
            }
        }
}

// ---- the column matrix copied ----
// col[r - r0][(q - q0)*oW + ow] = x[c, ot*sT-pT+kt, oh*sH-pH+kh, ow*sW-pW+kw] for rows
// r = (c, kt, kh, kw) in [r0, r1) and lines q = (ot, oh) in [q0, q1); zero outside x.
// Rows are ld floats apart (ld >= the tile's columns: vol2col_tile gives ld = columns).
// Channel by channel, the lines the tile reaches are split once into a region (as the
// in-place path reads them, padding lines zero), and every row is then runs of oW
// floats copied from it with no bounds to test. Splitting each line for each (kt, kh)
// that reads it instead was 35-40% of vol2col at the 32->64 layer (8-float lines).
// The region covers at most v2c_slices(s) output slices (a first layer's whole channel
// would be megabytes): a longer tile is copied in parts of that many slices.
// scratch: v2c_region_floats(s).
enum { V2C_REGION_FLOATS = 1 << 15 };
static size_t span_lines(const ConvShape *s) { return (size_t)(s->oH - 1) * s->sH + s->kH; }
static int v2c_slices(const ConvShape *s) {
    const size_t per_slice = span_lines(s) * line_floats(s);
    int n = 1;
    while (n < s->oT && ((size_t)n * s->sT + s->kT) * per_slice <= V2C_REGION_FLOATS) n++;
    return n;
}
static size_t v2c_region_floats(const ConvShape *s) {
    return ((size_t)(v2c_slices(s) - 1) * s->sT + s->kT) * span_lines(s) * line_floats(s);
}

// The runs of one channel c's rows [ra, rb) of a tile (rows r0.., ld apart; its lines
// from q0, this part's from qa to qb) against that channel's region for win: copied
// out of the region (vol2col) or, the adjoint, added into it (col2vol).
static inline __attribute__((always_inline)) void channel_runs(float *col, size_t ld, float *region, const ConvShape *s,
                                                                const Window *win, int ra, int rb, int r0, size_t q0,
                                                                size_t qa, size_t qb, int adjoint) {
    const size_t lf = line_floats(s), oW = (size_t)s->oW, slice_floats = (size_t)win->hlines * lf;
    const int ot0 = (int)(qa / s->oH), ot1 = (int)((qb - 1) / s->oH);
    for (int r = ra; r < rb;) {
        // the rows of one (kt, kh): taps kw0 .. kw1-1, each line's taps together
        const int kw0 = r % s->kW, first = r - kw0, kw1 = rb - first < s->kW ? rb - first : s->kW;
        const int kh = (first / s->kW) % s->kH, kt = first / (s->kW * s->kH) % s->kT;
        size_t start[CONV_MAX_KERNEL];
        for (int kw = kw0; kw < kw1; kw++) start[kw - kw0] = tap_start(s, kw);
        for (int ot = ot0; ot <= ot1; ot++) {
            const int oh0 = ot == ot0 ? (int)(qa % s->oH) : 0;
            const int oh1 = ot == ot1 ? (int)((qb - 1) % s->oH) : s->oH - 1;
            const float *first_line = region + ((size_t)(ot - win->ot0) * s->sT + kt) * slice_floats +
                                      ((size_t)(oh0 * s->sH + kh) - win->hh0) * lf;
            // tap by tap, line by line: the taps of one phase overlap in a split line (a
            // float apart), and an add right after the one before it on the same line
            // would wait for that store each time
            for (int k = 0; k < kw1 - kw0; k++) {
                float *line = (float *)first_line + start[k];
                float *tile = col + (size_t)(r - r0 + k) * ld + ((size_t)ot * s->oH + (size_t)oh0 - q0) * oW;
                for (int oh = oh0; oh <= oh1; oh++, line += (size_t)s->sH * lf, tile += oW) {
                    if (adjoint)
                        add_run(line, tile, oW);
                    else
                        copy_run(tile, line, oW);
                }
            }
        }
        r = first + kw1;
    }
}

// The end of the part of a tile's lines from qa that one region covers.
static size_t v2c_part_end(const ConvShape *s, size_t qa, size_t q1) {
    const size_t end = (qa / s->oH + (size_t)v2c_slices(s)) * s->oH;
    return end < q1 ? end : q1;
}

// Cloned for AVX-512 and AVX2 (where the CPU has them): a run of 8 or 16 floats is then
// one or two moves each way (on AVX-512, 3-4% of the 32->64 layer's forward against the
// baseline's 16-byte moves).
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
vol2col_tile_ld(float *col, size_t ld, const float *x, const ConvShape *s, int r0, int r1, size_t q0, size_t q1,
                float *scratch) {
    const int kv = (int)kvol(s);
    for (size_t qa = q0, qb; qa < q1; qa = qb) {
        qb = v2c_part_end(s, qa, q1);
        const Window win = tile_window(s, qa, qb);
        for (int c = r0 / kv; c * kv < r1; c++) {
            window_fill(scratch, x + (size_t)c * vol_plane(s), s, &win);
            channel_runs(col, ld, scratch, s, &win, c * kv > r0 ? c * kv : r0, (c + 1) * kv < r1 ? (c + 1) * kv : r1,
                         r0, q0, qa, qb, 0);
        }
    }
}

static void vol2col_tile(float *col, const float *x, const ConvShape *s, int r0, int r1, size_t q0, size_t q1,
                         float *scratch) {
    vol2col_tile_ld(col, (q1 - q0) * s->oW, x, s, r0, r1, q0, q1, scratch);
}

// x[c0..c1) += col2vol(col) for the tile's lines [q0, q1); col holds the rows of
// channels [c0, c1) (the adjoint of vol2col_tile): each channel's runs are added into a
// zeroed region, tap by tap in row order, and the region then into x (region_add_back).
// Adding each line's taps straight into x instead (through a slot per tap) was 40% of
// the 32->64 layer's input gradient, against 60% for its product.
// scratch: v2c_region_floats(s).
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
col2vol_tile_add(float *x, const float *col, const ConvShape *s, int c0, int c1, size_t q0, size_t q1, float *scratch) {
    const int kv = (int)kvol(s);
    const size_t ld = (q1 - q0) * s->oW;
    for (size_t qa = q0, qb; qa < q1; qa = qb) {
        qb = v2c_part_end(s, qa, q1);
        const Window win = tile_window(s, qa, qb);
        for (int c = c0; c < c1; c++) {
            window_fill(scratch, NULL, s, &win);
            channel_runs((float *)col, ld, scratch, s, &win, c * kv, (c + 1) * kv, c0 * kv, q0, qa, qb, 1);
            region_add_back(x, scratch, s, c, c + 1, qa, qb);
        }
    }
}

// ---- whole-volume convolutions ----
// When the kernel covers the whole (unpadded) input, the output is one point and the
// column of sample n is its volume as it lies in memory (row (c, kt, kh, kw) is
// x[c, kt, kh, kw]): the batch is a plain product of (N, Ck) by (Ck, K), with no
// column matrix. (MD-GAN's last encoder layer, the first decoder layer and D's output.)
// Each of the three products is cut into WHOLE_PARTS fixed column ranges of its result,
// one sgemm each, so every element has the same sum on any thread count.
enum { WHOLE_PARTS = 8 };

static int whole_volume(const ConvShape *s) {
    return s->kT == s->T && s->kH == s->H && s->kW == s->W && s->pT == 0 && s->pH == 0 && s->pW == 0;
}

// out (N, K) = vol (N, Ck) W^T + beta out
static void whole_forward(float *out, float beta, const float *vol, const float *w, const ConvShape *s) {
    const int Ck = s->C * (int)kvol(s), parts = s->K < WHOLE_PARTS ? s->K : WHOLE_PARTS;
#pragma omp parallel for schedule(static) num_threads(conv_threads())
    for (int i = 0; i < parts; i++) {
        const int k0 = s->K * i / parts, k1 = s->K * (i + 1) / parts;
        gemm_nt(s->N, k1 - k0, Ck, vol, Ck, w + (size_t)k0 * Ck, Ck, beta, out + k0, s->K);
    }
}

// dW (K, Ck) += colside^T (K, N) vol (N, Ck), or vol (N, Ck) += colside (N, K) W (K, Ck)
// when dw is NULL.
static void whole_backward(float *dw, float *vol_out, const float *colside, const float *vol, const float *w,
                           const ConvShape *s) {
    const int Ck = s->C * (int)kvol(s), parts = Ck < WHOLE_PARTS ? Ck : WHOLE_PARTS;
#pragma omp parallel for schedule(static) num_threads(conv_threads())
    for (int i = 0; i < parts; i++) {
        const int r0 = Ck * i / parts, r1 = Ck * (i + 1) / parts;
        if (dw)
            gemm_nn(s->K, r1 - r0, s->N, colside, s->K, 1, vol + r0, Ck, 1.0f, dw + r0, Ck);
        else
            gemm_nn(s->N, r1 - r0, s->K, colside, s->K, 0, w + r0, Ck, 1.0f, vol_out + r0, Ck);
    }
}

// x > 0 ? x : slope x over `rows` rows of `cols` columns, ld apart.
static void lrelu_rows(float *p, size_t ld, int rows, int cols, float slope) {
    for (int r = 0; r < rows; r++) {
        float *restrict q = p + (size_t)r * ld;
        for (int j = 0; j < cols; j++) q[j] = q[j] > 0 ? q[j] : q[j] * slope;
    }
}

// ---- the three kinds of work ----

// How the column gather cuts a forward into items (sample, tile, block of output
// channels) when its tiles alone make fewer than GATHER_ITEMS of them and do not share
// out evenly over the threads: a deep layer at batch 1, whose sample is one tile (the
// 128->256 layer at the paper's shape: 8192 rows, 256 columns). Each item builds its
// own tile GEMM_KC rows at a time, a slab in L2, and multiplies it by its channels'
// rows of W. One thread: the whole tile, one item. More: narrower tiles, one a thread,
// while each keeps CUT_MIN_COLS columns (4 strips of the register tile), else blocks of
// output channels, one a thread, each building the same slabs. (Blocks of 64 channels
// that shared a whole tile built beforehand read its 8 MB back from L3 for every block:
// that forward ran at 72-77% of OpenBLAS's sgemm on one thread, one item 87-95%; on two
// threads 4.1-4.6 ms, a tile a thread 3.9-4.0; at 256->512, 32 columns, 2.5-2.9 ms, a
// block a thread 2.2-2.4.) No sum runs across columns or channels, so the cut may follow
// the thread count: every element is the same sum, in the same order, on any.
typedef struct {
    size_t lines, tiles; // lines per tile, tiles per sample
    int kb, kblocks;     // output channels per block, blocks
} GatherCut;

static GatherCut gather_cut(const ConvShape *s, int threads) {
    GatherCut c = {gather_lines(s), 0, s->K, 1};
    c.tiles = (lines_total(s) + c.lines - 1) / c.lines;
    const long items = (long)s->N * (long)c.tiles;
    if (threads < 2 || items >= GATHER_ITEMS || items % threads == 0) return c;
    if (lines_total(s) * s->oW >= (size_t)threads * CUT_MIN_COLS) {
        c.lines = (lines_total(s) + threads - 1) / threads;
        c.tiles = (lines_total(s) + c.lines - 1) / c.lines;
    } else if (s->K >= 2 * K_BLOCK) {
        c.kb = ((s->K + threads - 1) / threads + 7) / 8 * 8; // whole panels of the register tile
        c.kblocks = (s->K + c.kb - 1) / c.kb;
    }
    return c;
}

// Column gather: out_n[k-block, tile] = W[k-block, :] vol2col(vol_n)[:, tile], + beta * out.
// Items (gather_cut) write disjoint parts of out, each building its own tile.
// lrelu: NULL, or the slope of a LeakyReLU applied to each item's block of out right
// after its product, while it is in cache (the separate passes over the first layers'
// 8 MB outputs were 4% of a Stage I step's profile on 2 threads).
static void gather_columns(float *out, float beta, const float *vol, const float *w, const ConvShape *s, float *ws,
                           const float *lrelu) {
    if (whole_volume(s)) {
        whole_forward(out, beta, vol, w, s);
        if (lrelu) lrelu_rows(out, (size_t)s->K, s->N, s->K, *lrelu);
        return;
    }
    const int Ck = s->C * (int)kvol(s), L = (int)col_plane(s);
    const int threads = conv_threads();
    const GatherCut cut = gather_cut(s, threads);
    const size_t lines = cut.lines, tiles = cut.tiles;
    const int kb = cut.kb, kblocks = cut.kblocks;
    const long items = (long)s->N * (long)tiles * kblocks;
    const size_t table_at = runs_region(s, lines, s->C);
#pragma omp parallel num_threads(threads)
    {
        GemmPacked pw; // each thread's view of the one packed W
        gemm_pack_a(&pw, packed_w(s, ws), s->K, Ck, w, Ck, 0);
        float *own = ws + (size_t)omp_get_thread_num() * tile_floats(s);
#pragma omp for schedule(static)
        for (long i = 0; i < items; i++) {
            float *col = own;
            const int n = (int)(i / ((long)tiles * kblocks)), k0 = (int)(i % kblocks) * kb;
            const int k1 = k0 + kb < s->K ? k0 + kb : s->K;
            const size_t q0 = (size_t)(i / kblocks % (long)tiles) * lines, q1 = tile_end(s, q0, lines);
            int cols = (int)((q1 - q0) * s->oW);
            const float *xn = vol + (size_t)n * s->C * vol_plane(s);
            float *dst = out + ((size_t)n * s->K + k0) * L + q0 * s->oW;
            if (table_at && pw.p) {
                GemmRuns b;
                region_fill(&b, col, table_at, xn, s, 0, s->C, q0, q1, 1);
                gemm_nn_packed_runs(&pw, k0, k1 - k0, cols, &b, beta, dst, L);
            } else {
                // a deep layer's tile (Ck rows in the thousands) would be megabytes, built
                // into memory and read back: it is built and multiplied GEMM_KC rows at a
                // time instead, a slab in L2 (the product's own blocks of k: same sums)
                for (int r0 = 0; r0 < Ck; r0 += GEMM_KC) {
                    const int r1 = r0 + GEMM_KC < Ck ? r0 + GEMM_KC : Ck;
                    vol2col_tile(col, xn, s, r0, r1, q0, q1, col + tile_part(s));
                    gemm_nn_packed_slab(&pw, k0, k1 - k0, r0, cols, w, Ck, col, cols, beta, dst, L);
                }
            }
            if (lrelu) lrelu_rows(dst, (size_t)L, k1 - k0, cols, *lrelu);
        }
    }
}

// dW (K, Ck) += the sum of `items` partials dW^T (Ck, K), nd = Ck*K floats apart: each
// element starts from dW and adds the partials in item order (the same order on any
// thread count). In blocks of up to PARTIAL_ROWS rows of dW^T summed in a small buffer: along
// a row of a partial the reads are contiguous, and each row of dW gets PARTIAL_ROWS
// contiguous floats; an element at a time read every partial 4*K bytes apart, a cache
// line an element (the 16->32 layer at the CPU shape: 16 partials of 128 KiB).
enum { PARTIAL_ROWS = 16, PARTIAL_BLOCK_FLOATS = 1 << 12 };
static void add_partials_transposed(float *dw, const float *partials, long items, int Ck, int K) {
    const size_t nd = (size_t)Ck * K;
    const int fit = PARTIAL_BLOCK_FLOATS / K, rows = fit < 1 ? 1 : fit < PARTIAL_ROWS ? fit : PARTIAL_ROWS;
    const int blocks = (Ck + rows - 1) / rows;
#pragma omp parallel for schedule(static) num_threads(conv_threads())
    for (int b = 0; b < blocks; b++) {
        float acc[PARTIAL_BLOCK_FLOATS];
        const int r0 = b * rows, r1 = r0 + rows < Ck ? r0 + rows : Ck;
        if (fit < 1) {   // a row of dW^T wider than the buffer: one element at a time
            for (int r = r0; r < r1; r++)
                for (int k = 0; k < K; k++) {
                    float sum = dw[(size_t)k * Ck + r];
                    for (long i = 0; i < items; i++) sum += partials[(size_t)i * nd + (size_t)r * K + k];
                    dw[(size_t)k * Ck + r] = sum;
                }
            continue;
        }
        for (int k = 0; k < K; k++)
            for (int r = r0; r < r1; r++) acc[(size_t)(r - r0) * K + k] = dw[(size_t)k * Ck + r];
        for (long i = 0; i < items; i++) {
            const float *p = partials + (size_t)i * nd + (size_t)r0 * K;
            for (size_t e = 0; e < (size_t)(r1 - r0) * K; e++) acc[e] += p[e];
        }
        for (int k = 0; k < K; k++)
            for (int r = r0; r < r1; r++) dw[(size_t)k * Ck + r] = acc[(size_t)(r - r0) * K + k];
    }
}

// Lines of a piece of a column-gather tile for OpenBLAS's gemm_nt: NT_PIECE_FLOATS at
// most (512 KiB, a Zen 1 or Zen 3 core's L2), a line at least. Written by vol2col and read
// back by OpenBLAS's packing, a whole tile of 2 MB (the 16->32 layer at the CPU shape)
// went through L3 twice: on a Zen 1 that dW ran at 60-74% of sgemm on 2 threads, 96-110%
// in pieces of 512 KiB, and 73-88% in pieces of 256 KiB (more calls, each re-packing dY).
enum { NT_PIECE_FLOATS = 1 << 17 };
static size_t nt_piece_lines(const ConvShape *s) {
    const size_t lines = NT_PIECE_FLOATS / ((size_t)s->C * kvol(s) * s->oW);
    return lines > 0 ? lines : 1;
}

// Weight gradient of a small dW by columns: item (n, part) sums its run of column-gather
// tiles of sample n (in pieces, nt_piece_lines, on OpenBLAS's gemm_nt) into its own
// partial dW^T (Ck, K); the partials are then added to dW in
// item order, so each element's sum has the same order on any thread count. Rows of
// vol2col are never split, so each sgemm has all Ck columns of dW (a row-grouped sgemm
// of a first layer has a dozen).
static void gather_weight_grad_by_columns(float *dw, const float *colside, const float *vol, const ConvShape *s,
                                          float *ws) {
    const int Ck = s->C * (int)kvol(s), L = (int)col_plane(s), per = dw_splits(s);
    const size_t lines = gather_lines(s), tiles = gather_tiles(s), nd = dw_floats(s);
    const long items = (long)s->N * per;
    float *partials = partials_at(s, ws);
    const size_t table_at = gemm_nt_own() ? runs_region(s, lines, s->C) : 0; // (gemm_nt_runs)
    const size_t nt_lines = nt_piece_lines(s);
#pragma omp parallel for schedule(static) num_threads(conv_threads())
    for (long i = 0; i < items; i++) {
        float *col = ws + (size_t)omp_get_thread_num() * tile_floats(s);
        const int n = (int)(i / per), part = (int)(i % per);
        const size_t t0 = tiles * part / per, t1 = tiles * (part + 1) / per;
        const float *xn = vol + (size_t)n * s->C * vol_plane(s);
        for (size_t t = t0; t < t1; t++) {
            const size_t q0 = t * lines, q1 = tile_end(s, q0, lines);
            const int cols = (int)((q1 - q0) * s->oW);
            const float *dy = colside + (size_t)n * s->K * L + q0 * s->oW;
            float *part_dw = partials + (size_t)i * nd;
            // the partial as dW^T (Ck, K) = col colside^T: OpenBLAS runs this orientation
            // about 15% faster than (K, Ck) for these shapes
            if (table_at) {
                GemmRuns a;
                region_fill(&a, col, table_at, xn, s, 0, s->C, q0, q1, 1);
                gemm_nt_runs(Ck, s->K, cols, &a, dy, L, t == t0 ? 0.0f : 1.0f, part_dw, s->K);
            } else {   // OpenBLAS's gemm_nt, on pieces of the tile that stay in L2
                for (size_t p0 = q0; p0 < q1; p0 += nt_lines) {
                    const size_t p1 = p0 + nt_lines < q1 ? p0 + nt_lines : q1;
                    const int pcols = (int)((p1 - p0) * s->oW);
                    vol2col_tile(col, xn, s, 0, Ck, p0, p1, col + tile_part(s));
                    gemm_nt(Ck, s->K, pcols, col, pcols, dy + (p0 - q0) * s->oW, L, t == t0 && p0 == q0 ? 0.0f : 1.0f,
                            part_dw, s->K);
                }
            }
        }
    }
    add_partials_transposed(dw, partials, items, Ck, s->K);
}

// A weight gradient's product over a tile of few columns (the deep layers at batch 1:
// 16 columns a sample at the paper's shape) runs as outer products, dW += dY col^T
// with col transposed, rather than as dot products 16 long: each costs a reduction
// across lanes and a load and store of dW for 16 multiply-adds. DW_OUTER_COLS: the
// most columns so run (1 thread: 64 columns 3.3 -> 2.5 ms, 128 columns 5.5 -> 3.8-5.1
// ms, 1024-column layers in tiles of 256 12.3 -> 10.0 ms; 512 was slower on 2048
// columns); the transposed copy sits after the tile. Only against our dot kernels
// (gemm_nt_own: AVX-512): OpenBLAS's gemm_nt has no such reductions.
enum { DW_OUTER_COLS = 256, TRANSPOSE_BLOCK = 16 };

// dst (cols, rows) = src (rows, cols)^T, in blocks of TRANSPOSE_BLOCK rows: a row at a
// time would store to every column's row of dst, a page apart for the deep layers'
// 1024-row groups, and the stores would evict each other from L1. Within a block, 8x8
// squares go through registers (8 loads, 24 shuffles, 8 stores): one element at a time
// this copy was a sixth of the 64->128 layer's weight gradient at the CPU shape (1
// thread: 1.89-2.03 ms, 1.69 with no copy at all, 1.83-1.86 with the squares). The
// same values either way: the product's bits do not change.
__attribute__((target("avx2"))) static void transpose_8x8(float *restrict dst, size_t ldd, const float *restrict src,
                                                         size_t lds) {
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds);
    for (int i = 0; i < 8; i += 2) {   // per 128-bit half: (a0 b0 a1 b1), (a2 b2 a3 b3)
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {   // (a0 b0 c0 d0), (a1 b1 c1 d1), (a2 ...), (a3 ...)
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {   // column i from the low halves, column i + 4 the high
        _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
    }
}

// Only the AVX-512 dot kernels' callers transpose (dw_outer): AVX2 is there. Groups of
// more than SQUARES_MAX_ROWS rows stay one element at a time: there the squares were
// slower (the paper's 128->256 layer, 512 rows: 6.2 -> 7.3 ms), dst's rows 2-4 KiB
// apart falling into few cache sets.
enum { SQUARES_MAX_ROWS = 256 };
static void transpose_tile(float *restrict dst, const float *restrict src, int rows, int cols) {
    const int cols8 = rows <= SQUARES_MAX_ROWS ? cols & ~7 : 0;
    for (int r0 = 0; r0 < rows; r0 += TRANSPOSE_BLOCK) {
        const int r1 = r0 + TRANSPOSE_BLOCK < rows ? r0 + TRANSPOSE_BLOCK : rows, r8 = r0 + ((r1 - r0) & ~7);
        for (int j = 0; j < cols8; j += 8)
            for (int r = r0; r < r8; r += 8)
                transpose_8x8(dst + (size_t)j * rows + r, (size_t)rows, src + (size_t)r * cols + j, (size_t)cols);
        for (int j = 0; j < cols; j++)   // what the squares leave: the block's last rows, the last columns
            for (int r = j < cols8 ? r8 : r0; r < r1; r++) dst[(size_t)j * rows + r] = src[(size_t)r * cols + j];
    }
}
static int dw_outer(const ConvShape *s, int rows, int cols) {
    return gemm_nt_own() && cols <= DW_OUTER_COLS && 2 * (size_t)rows * (size_t)cols <= tile_part(s);
}

// dW[:, rows] (ldw apart) += dY (K, cols; ldy apart) col^T, col the (rows, cols) tile:
// as outer products on col transposed next to itself where cols are few, else as dot
// products.
static void dw_product(const ConvShape *s, int rows, int cols, const float *dy, int ldy, float *col, float *dw,
                       int ldw) {
    if (dw_outer(s, rows, cols)) {
        float *colt = col + (size_t)rows * cols;
        transpose_tile(colt, col, rows, cols);
        gemm_nn(s->K, rows, cols, dy, ldy, 0, colt, rows, 1.0f, dw, ldw);
    } else {
        gemm_nt(s->K, rows, cols, dy, ldy, col, cols, 1.0f, dw, ldw);
    }
}

// Weight gradient: dW (K, Ck) += sum_n colside_n (K, L) vol2col(vol_n)^T. Items are
// fixed groups of rows of vol2col (columns of dW); each sums over samples and tiles
// in order.
static void gather_weight_grad(float *dw, const float *colside, const float *vol, const ConvShape *s, float *ws) {
    if (whole_volume(s)) {
        whole_backward(dw, NULL, colside, vol, NULL, s);
        return;
    }
    if (dw_by_columns(s)) {
        gather_weight_grad_by_columns(dw, colside, vol, s, ws);
        return;
    }
    const int Ck = s->C * (int)kvol(s), L = (int)col_plane(s);
    const int group = dw_row_group(s), groups = (Ck + group - 1) / group;
    const size_t lines = tile_lines(s, (size_t)group);
    const int per_tile = dw_samples_per_tile(s);
    if (per_tile > 1) {
        // dW (K, Ck) += dYcat (K, N*L) colcat^T: dYcat row k = the samples' rows k side
        // by side; a row group's product covers per_tile samples (fixed blocks, in order)
        float *dycat = batched_at(s, ws);
        const size_t ldy = (size_t)s->N * L;
#pragma omp parallel num_threads(conv_threads())
        {
#pragma omp for schedule(static)
            for (int k = 0; k < s->K; k++)
                for (int n = 0; n < s->N; n++)
                    memcpy(dycat + (size_t)k * ldy + (size_t)n * L, colside + ((size_t)n * s->K + k) * L,
                           sizeof(float) * (size_t)L);
#pragma omp for schedule(static)
            for (int g = 0; g < groups; g++) {
                float *col = ws + (size_t)omp_get_thread_num() * tile_floats(s);
                const int r0 = g * group, r1 = r0 + group < Ck ? r0 + group : Ck;
                for (int n0 = 0; n0 < s->N; n0 += per_tile) {
                    const int nb = n0 + per_tile < s->N ? per_tile : s->N - n0;
                    const size_t ld = (size_t)nb * L;
                    for (int j = 0; j < nb; j++)
                        vol2col_tile_ld(col + (size_t)j * L, ld, vol + (size_t)(n0 + j) * s->C * vol_plane(s), s, r0,
                                        r1, 0, lines_total(s), col + tile_part(s));
                    dw_product(s, r1 - r0, (int)ld, dycat + (size_t)n0 * L, (int)ldy, col, dw + r0, Ck);
                }
            }
        }
        return;
    }
#pragma omp parallel for schedule(static) num_threads(conv_threads())
    for (int g = 0; g < groups; g++) {
        float *col = ws + (size_t)omp_get_thread_num() * tile_floats(s);
        int r0 = g * group, r1 = r0 + group < Ck ? r0 + group : Ck;
        for (int n = 0; n < s->N; n++)
            for (size_t q0 = 0; q0 < lines_total(s); q0 += lines) {
                size_t q1 = tile_end(s, q0, lines);
                int cols = (int)((q1 - q0) * s->oW);
                const float *dy = colside + (size_t)n * s->K * L + q0 * s->oW;
                vol2col_tile(col, vol + (size_t)n * s->C * vol_plane(s), s, r0, r1, q0, q1, col + tile_part(s));
                dw_product(s, r1 - r0, cols, dy, L, col, dw + r0, Ck);
            }
    }
}

// Scatter: vol_n += col2vol(W^T colside_n). Items (sample, channel group) write
// disjoint channels; within one, tiles and taps come in a fixed order.
static void scatter(float *vol, const float *colside, const float *w, const ConvShape *s, float *ws) {
    if (whole_volume(s)) {
        whole_backward(NULL, vol, colside, NULL, w, s);
        return;
    }
    const int kv = (int)kvol(s), Ck = s->C * kv, L = (int)col_plane(s);
    // Channels per group: about 256 rows of vol2col, but 8 groups or more (one per
    // channel when C < 8) so that even one sample keeps several threads busy.
    int per = 256 / kv < s->C / 8 ? 256 / kv : s->C / 8;
    if (per < 1) per = 1;
    const int groups = (s->C + per - 1) / per;
    const size_t lines = tile_lines(s, (size_t)per * kv);
    const long items = (long)s->N * groups;
    // in place: the product added into a region of the group's channels, then the
    // region added to the volume (kv % 8: each group's rows start a panel of W^T)
    const size_t table_at = kv % 8 == 0 ? runs_region(s, lines, per) : 0;
#pragma omp parallel num_threads(conv_threads())
    {
        GemmPacked pw; // W^T (Ck, K), packed once
        gemm_pack_a(&pw, packed_w(s, ws), Ck, s->K, w, Ck, 1);
#pragma omp for schedule(static)
        for (long i = 0; i < items; i++) {
            float *col = ws + (size_t)omp_get_thread_num() * tile_floats(s);
            int n = (int)(i / groups), c0 = (int)(i % groups) * per, c1 = c0 + per < s->C ? c0 + per : s->C;
            float *xn = vol + (size_t)n * s->C * vol_plane(s);
            for (size_t q0 = 0; q0 < lines_total(s); q0 += lines) {
                const size_t q1 = tile_end(s, q0, lines);
                const int cols = (int)((q1 - q0) * s->oW);
                const float *dy = colside + (size_t)n * s->K * L + q0 * s->oW;
                if (table_at && pw.p) {
                    GemmRuns c;
                    region_fill(&c, col, table_at, NULL, s, c0, c1, q0, q1, 0);
                    gemm_nn_packed_into_runs(&pw, c0 * kv, (c1 - c0) * kv, cols, dy, L, &c);
                    region_add_back(xn, col, s, c0, c1, q0, q1);
                } else {
                    // col (rows of channels c0..c1, cols) = W[:, rows]^T (.., K) colside_n[:, tile]
                    gemm_nn_packed(&pw, c0 * kv, (c1 - c0) * kv, cols, w, Ck, 1, dy, L, 0.0f, col, cols);
                    col2vol_tile_add(xn, col, s, c0, c1, q0, q1, col + tile_part(s));
                }
            }
        }
    }
}

void conv3d_forward(float *out, const float *inp, const float *w, const ConvShape *s, float *ws) {
    gather_columns(out, 0.0f, inp, w, s, ws, NULL); // y = W vol2col(x)
}

void conv3d_forward_lrelu(float *out, const float *inp, const float *w, const ConvShape *s, float *ws, float slope) {
    gather_columns(out, 0.0f, inp, w, s, ws, &slope);
}

void conv3d_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                     const ConvShape *s, float *ws) {
    if (dw) gather_weight_grad(dw, dout, inp, s, ws); // dW += dy vol2col(x)^T
    if (dinp) scatter(dinp, dout, w, s, ws);          // dx += col2vol(W^T dy)
}

void conv_transpose3d_forward(float *out, const float *inp, const float *w, const ConvShape *s, float *ws) {
    memset(out, 0, sizeof(float) * conv_volume_numel(s));
    scatter(out, inp, w, s, ws); // x = col2vol(W^T y)
}

void conv_transpose3d_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                               const ConvShape *s, float *ws) {
    if (dinp) gather_columns(dinp, 1.0f, dout, w, s, ws, NULL); // dy += W vol2col(dx)
    if (dw) gather_weight_grad(dw, inp, dout, s, ws);     // dW += y vol2col(dx)^T
}

// ---- naive reference: the definition, one output element at a time ----

void conv3d_forward_naive(float *out, const float *inp, const float *w, const ConvShape *s) {
    memset(out, 0, sizeof(float) * conv_column_numel(s));
    CONV_TAPS(s, vi, ci, wi, out[ci] += inp[vi] * w[wi]);
}

void conv3d_backward_naive(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                           const ConvShape *s) {
    CONV_TAPS(s, vi, ci, wi, {
        if (dinp) dinp[vi] += dout[ci] * w[wi];
        if (dw) dw[wi] += dout[ci] * inp[vi];
    });
}

void conv_transpose3d_forward_naive(float *out, const float *inp, const float *w, const ConvShape *s) {
    memset(out, 0, sizeof(float) * conv_volume_numel(s));
    CONV_TAPS(s, vi, ci, wi, out[vi] += inp[ci] * w[wi]);
}

void conv_transpose3d_backward_naive(float *dinp, float *dw, const float *dout, const float *inp,
                                     const float *w, const ConvShape *s) {
    CONV_TAPS(s, vi, ci, wi, {
        if (dinp) dinp[ci] += dout[vi] * w[wi];
        if (dw) dw[wi] += dout[vi] * inp[ci];
    });
}
