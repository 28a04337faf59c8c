// Our sgemm kernels (see include/mdgan/gemm.h for why), in AVX-512 and in AVX2 with
// FMA, and the OpenBLAS fallback. The file is built for the baseline x86-64 like the
// rest; only the kernels carry target("avx512f") or target("avx2,fma"), and they run
// only after the CPU (and its OS) said it has them. The walks over blocks, strips and
// panels are plain C, shared by both; they call one register tile per call.
//
// gemm_nn: the classic register tile. A is packed, per block of KC values of k, into
// panels of MR rows laid out k-major (ap[k*MR + m]), so that one broadcast per row and
// two loads of B's row k feed MR x NR = 8 x 32 accumulators (16 zmm registers). B is
// read in place: a strip of NR columns and KC rows (32 KiB) stays in L1 while every
// panel of A's chunk passes over it. C is written once per k-block, plain when it is
// the first block and beta is 0, added otherwise. A convolution packs its weights once
// per call (gemm_pack_a) for all its tiles: with a few dozen columns a tile, packing
// them per tile cost a quarter of the product. AVX2 has 16 registers of 8 floats, so
// its tile computes the same 8 x 32 block in blocks of at most 12 sums (6 rows x 16
// columns, 2 rows x 32: micro_nn_body_avx2): every element's sum is the same chain of
// fused multiply-adds along k, so both kernels give the same bits.
//
// The same tile reads B as runs of 16 floats from anywhere (GemmRuns: the column
// matrix of a convolution read in place) or adds its result into C as runs (the
// column matrix's adjoint), specialized from one body at compile time.
//
// gemm_nt (B given as (N, K): the weight gradients, sums along the columns), on AVX-512
// only: both operands run along k in memory, so each element of C is a dot product: a
// 4 x 4 block of C keeps 16 vector sums fed by 4 rows of A and 4 of B, reduced across
// lanes at the end. (Transposing one operand into panels for the tile above cost more
// than it saved: a pass over the column tile per call.) On AVX2 the same walk with a
// 4 x 2 block (8 sums of 8 lanes, 16 registers) reached 50-60 GFLOP/s on one core where
// OpenBLAS reached 65-85 on the same weight gradients, so there gemm_nt is OpenBLAS's.
#include "mdgan/gemm.h"

#include <cblas.h>
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

// MIN_K: below a few dozen k per element, C's traffic (read and written per block)
// outweighs the products and OpenBLAS's beta-scaled kernels do better (the whole-volume
// weight gradients, k = the batch).
// SHORT_K: at most this many k in a block, panels_times_b walks C row-panel by
// row-panel (see there).
enum { MR = 8, NR = 32, KC = GEMM_KC, MCHUNK = 64, MIN_K = 16, SHORT_K = 32, PF_TILES = 2, STRIP_SET_FLOATS = 1024 };

static int kernels = -1; // a GemmKernels; -1: not decided yet

// The panels of rows m0.. of a packed A for its block of k at k0 (gemm_pack_a's layout:
// block k0 starts at k0 * Mpad, its panels kc = min(KC, K - k0) long each).
static inline const float *packed_block(const GemmPacked *pa, int m0, int k0) {
    const int kc = pa->K - k0 < KC ? pa->K - k0 : KC;
    return pa->p + (size_t)k0 * pa->Mpad + (size_t)m0 * kc;
}

// The best kernels the CPU has (libgcc also checks that the OS saves the registers).
static GemmKernels cpu_kernels(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return GEMM_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return GEMM_AVX2;
#endif
    return GEMM_OPENBLAS;
}

GemmKernels gemm_kernels(void) {
    int k = __atomic_load_n(&kernels, __ATOMIC_RELAXED);
    if (k < 0) {
        const char *env = getenv("MDGAN_GEMM");
        k = cpu_kernels();
        if (env && strcmp(env, "openblas") == 0) k = GEMM_OPENBLAS;
        else if (env && strcmp(env, "avx2") == 0 && k == GEMM_AVX512) k = GEMM_AVX2;
        __atomic_store_n(&kernels, k, __ATOMIC_RELAXED);
    }
    return (GemmKernels)k;
}

int gemm_own(void) { return gemm_kernels() != GEMM_OPENBLAS; }

int gemm_nt_own(void) { return gemm_kernels() == GEMM_AVX512; }

// (gemm_kernels() has decided by the time a product runs)
static inline int on_avx512(void) { return __atomic_load_n(&kernels, __ATOMIC_RELAXED) == GEMM_AVX512; }

int gemm_use_kernels(GemmKernels k) {
    if (k > cpu_kernels()) return 0; // (a CPU with AVX-512F has AVX2 and FMA too)
    __atomic_store_n(&kernels, (int)k, __ATOMIC_RELAXED);
    return 1;
}

void gemm_use_own(int on) { gemm_use_kernels(on ? cpu_kernels() : GEMM_OPENBLAS); }

// C (M, N) *= beta, for the betas other than 0 and 1.
static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) C[(size_t)m * ldc + n] *= beta;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX __attribute__((target("avx")))

// dst[k*8 + m] = A[m][k] for 8 rows of A (row stride lda) and k in [0, kc): 8 x 8 blocks
// transposed in registers (the weights of the deep layers, too large to pack once per
// call, are packed per product; element by element that took most of their forward).
AVX static void pack_8_rows(float *restrict dst, const float *src, int lda, int kc) {
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 r[8], t[8];
        for (int m = 0; m < 8; m++) r[m] = _mm256_loadu_ps(src + (size_t)m * lda + k);
        for (int m = 0; m < 8; m += 2)
            t[m] = _mm256_unpacklo_ps(r[m], r[m + 1]), t[m + 1] = _mm256_unpackhi_ps(r[m], r[m + 1]);
        // t[0] = a0 b0 a1 b1 | a4 b4 a5 b5 (rows a, b = 0, 1), t[1] = a2 b2 a3 b3 | a6 b6 a7 b7, ...
        for (int m = 0; m < 8; m += 4) {
            r[m] = _mm256_shuffle_ps(t[m], t[m + 2], _MM_SHUFFLE(1, 0, 1, 0));     // k0 of 4 rows | k4
            r[m + 1] = _mm256_shuffle_ps(t[m], t[m + 2], _MM_SHUFFLE(3, 2, 3, 2)); // k1 | k5
            r[m + 2] = _mm256_shuffle_ps(t[m + 1], t[m + 3], _MM_SHUFFLE(1, 0, 1, 0)); // k2 | k6
            r[m + 3] = _mm256_shuffle_ps(t[m + 1], t[m + 3], _MM_SHUFFLE(3, 2, 3, 2)); // k3 | k7
        }
        // r[j] (rows 0-3) and r[4 + j] (rows 4-7) hold k = j in their low halves, j + 4 in their high
        for (int j = 0; j < 4; j++) {
            _mm256_storeu_ps(dst + (size_t)(k + j) * MR, _mm256_permute2f128_ps(r[j], r[4 + j], 0x20));
            _mm256_storeu_ps(dst + (size_t)(k + j + 4) * MR, _mm256_permute2f128_ps(r[j], r[4 + j], 0x31));
        }
    }
    for (; k < kc; k++)
        for (int m = 0; m < 8; m++) dst[(size_t)k * MR + m] = src[(size_t)m * lda + k];
}

// A's rows m0 .. m0+rows-1, k0 .. k0+kc-1, as panels of MR rows (zeros past rows).
static void pack_a(float *restrict ap, const float *A, int lda, int a_trans, int m0, int rows, int k0, int kc) {
    const int panels = (rows + MR - 1) / MR;
    for (int p = 0; p < panels; p++) {
        float *dst = ap + (size_t)p * kc * MR;
        const int r0 = m0 + p * MR, nr = rows - p * MR < MR ? rows - p * MR : MR;
        if (a_trans && nr == MR) { // A(r, k) = A[k*lda + r]: each k is a contiguous run of rows
            // a whole panel's row is one copy of 8 floats (one element at a time, this
            // pack was a quarter of the 256->512 layer's input gradient at the paper's
            // shape: 8.4-8.8 -> 6.3-6.5 ms on one thread)
            for (int k = 0; k < kc; k++) memcpy(dst + (size_t)k * MR, A + (size_t)(k0 + k) * lda + r0, MR * sizeof(float));
        } else if (a_trans) {
            for (int k = 0; k < kc; k++) {
                const float *src = A + (size_t)(k0 + k) * lda + r0;
                int m = 0;
                for (; m < nr; m++) dst[(size_t)k * MR + m] = src[m];
                for (; m < MR; m++) dst[(size_t)k * MR + m] = 0.0f;
            }
        } else if (nr == MR) {
            pack_8_rows(dst, A + (size_t)r0 * lda + k0, lda, kc);
        } else {
            for (int m = 0; m < MR; m++) {
                if (m < nr) {
                    const float *src = A + (size_t)(r0 + m) * lda + k0;
                    for (int k = 0; k < kc; k++) dst[(size_t)k * MR + m] = src[k];
                } else {
                    for (int k = 0; k < kc; k++) dst[(size_t)k * MR + m] = 0.0f;
                }
            }
        }
    }
}

// ---- the AVX-512 tiles

static inline __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

// C[0..rows) x [0..ncols) (ncols <= NR) = or += the panel ap (kc x MR) times B's strip.
// The one register tile behind three callers, specialized at compile time:
// - B in place (boff NULL): row k of the strip at B + k*ldb; or as runs: its first 16
//   columns at B + boff[k], the next 16 at b1 + boff[k];
// - C in place (crow NULL): row m at C + m*ldc; or as runs, added to: row m's halves at
//   C + crow[m] and c1 + crow[m].
AVX512 static inline __attribute__((always_inline)) void
micro_nn_body(int kc, const float *restrict ap, const float *B, int ldb, const ptrdiff_t *restrict boff,
              const float *b1, float *C, int ldc, const ptrdiff_t *crow, float *c1, int rows, int ncols, int add) {
    const __mmask16 k0 = lanes(ncols), k1 = lanes(ncols - 16);
    __m512 c[MR][2];
    for (int m = 0; m < MR; m++) c[m][0] = c[m][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m512 b0v, b1v;
        if (boff) {
            const ptrdiff_t o = boff[k];
            b0v = _mm512_maskz_loadu_ps(k0, B + o), b1v = _mm512_maskz_loadu_ps(k1, b1 + o);
        } else {
            const float *b = B + (size_t)k * ldb;
            b0v = _mm512_maskz_loadu_ps(k0, b), b1v = _mm512_maskz_loadu_ps(k1, b + 16);
        }
        const float *a = ap + (size_t)k * MR;
#pragma GCC unroll 8
        for (int m = 0; m < MR; m++) {
            const __m512 am = _mm512_set1_ps(a[m]);
            c[m][0] = _mm512_fmadd_ps(am, b0v, c[m][0]);
            c[m][1] = _mm512_fmadd_ps(am, b1v, c[m][1]);
        }
    }
    // rows of C as runs may overlap (taps of one input line): each row is loaded after
    // the store of the row before it
    for (int m = 0; m < rows; m++) {
        float *cm0 = crow ? C + crow[m] : C + (size_t)m * ldc, *cm1 = crow ? c1 + crow[m] : cm0 + 16;
        __m512 v0 = c[m][0], v1 = c[m][1];
        if (add) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(k0, cm0), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(k1, cm1), v1);
        }
        _mm512_mask_storeu_ps(cm0, k0, v0);
        _mm512_mask_storeu_ps(cm1, k1, v1);
    }
}

AVX512 static void micro_nn_512(int kc, const float *restrict ap, const float *restrict B, int ldb, float *restrict C,
                                int ldc, int rows, int ncols, int add) {
    micro_nn_body(kc, ap, B, ldb, NULL, NULL, C, ldc, NULL, NULL, rows, ncols, add);
}
AVX512 static void micro_nn_runs_512(int kc, const float *restrict ap, const ptrdiff_t *boff, const float *b0,
                                     const float *b1, float *restrict C, int ldc, int rows, int ncols, int add) {
    micro_nn_body(kc, ap, b0, 0, boff, b1, C, ldc, NULL, NULL, rows, ncols, add);
}
AVX512 static void micro_nn_into_runs_512(int kc, const float *restrict ap, const float *restrict B, int ldb, float *c0,
                                          float *c1, const ptrdiff_t *crow, int rows, int ncols) {
    micro_nn_body(kc, ap, B, ldb, NULL, NULL, c0, 0, crow, c1, rows, ncols, 1);
}

// C (M, N) = or += A B for M <= FEW_ROWS (a batch of one to four samples through the
// whole-volume layers: a vector times a matrix). The register tile would compute 8
// rows for each of these and walk B in strips of 32 columns down all of k (a new page
// every row for the deep layers' 16 MiB weights); here every row of B is read once, in
// blocks of STRIP floats, into FEW_ROWS x STRIP/16 sums. Each element sums along k in
// order.
enum { FEW_ROWS = 4, STRIP = 64 };
AVX512 static void few_rows_512(int M, int N, int K, const float *A, int lda, int a_trans, const float *B, int ldb,
                                int add, float *C, int ldc) {
    for (int j0 = 0; j0 < N; j0 += STRIP) {
        __mmask16 mk[STRIP / 16];
        for (int v = 0; v < STRIP / 16; v++) mk[v] = lanes(N - j0 - 16 * v);
        __m512 c[FEW_ROWS][STRIP / 16];
        for (int m = 0; m < FEW_ROWS; m++)
            for (int v = 0; v < STRIP / 16; v++) c[m][v] = _mm512_setzero_ps();
        for (int k = 0; k < K; k++) {
            const float *b = B + (size_t)k * ldb + j0;
            __m512 bv[STRIP / 16];
            for (int v = 0; v < STRIP / 16; v++) bv[v] = _mm512_maskz_loadu_ps(mk[v], b + 16 * v);
            for (int m = 0; m < M && m < FEW_ROWS; m++) {
                const __m512 am = _mm512_set1_ps(a_trans ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k]);
                for (int v = 0; v < STRIP / 16; v++) c[m][v] = _mm512_fmadd_ps(am, bv[v], c[m][v]);
            }
        }
        for (int m = 0; m < M; m++)
            for (int v = 0; v < STRIP / 16; v++) {
                float *cm = C + (size_t)m * ldc + j0 + 16 * v;
                __m512 r = c[m][v];
                if (add) r = _mm512_add_ps(_mm512_maskz_loadu_ps(mk[v], cm), r);
                _mm512_mask_storeu_ps(cm, mk[v], r);
            }
    }
}

// gemm_nt's tile: C[i][j] (i < mr, j < nr, both <= 4) = or += sum_k A[i][k] B[j][k], as 16
// vector sums of 16 lanes each, reduced across lanes together at the end. a[i]: row i
// of A (rows past mr repeat row 0 and are not stored); with run (A as runs), A[i][k] is
// a[i][run[k / 16] + k % 16], else a[i][k]. (Written out by hand: with arrays of
// vectors the compiler kept the sums in memory, at half this rate.)
AVX512 static inline __attribute__((always_inline)) void
micro_nt_body(int K, const float *const a[4], const ptrdiff_t *run, const float *B, int ldb, float *C, int ldc,
              int mr, int nr, int add) {
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
    const float *b0 = B, *b1 = B + (nr > 1 ? ldb : 0), *b2 = B + (nr > 2 ? 2 * (size_t)ldb : 0),
                *b3 = B + (nr > 3 ? 3 * (size_t)ldb : 0);
    __m512 s[4][4];
    for (int i = 0; i < 4; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = _mm512_setzero_ps();
    __m512 x0, x1, x2, x3, y;
    ptrdiff_t ak;
#define NT_ROW(j, bj, LOAD)                                                                                            \
    y = LOAD(bj + k);                                                                                                  \
    s[0][j] = _mm512_fmadd_ps(x0, y, s[0][j]), s[1][j] = _mm512_fmadd_ps(x1, y, s[1][j]);                              \
    s[2][j] = _mm512_fmadd_ps(x2, y, s[2][j]), s[3][j] = _mm512_fmadd_ps(x3, y, s[3][j]);
#define NT_STEP(LOAD)                                                                                                  \
    ak = run ? run[k / 16] : k;                                                                                        \
    x0 = LOAD(a0 + ak), x1 = LOAD(a1 + ak), x2 = LOAD(a2 + ak), x3 = LOAD(a3 + ak);                                    \
    NT_ROW(0, b0, LOAD) NT_ROW(1, b1, LOAD) NT_ROW(2, b2, LOAD) NT_ROW(3, b3, LOAD)
    int k = 0;
    for (; k + 16 <= K; k += 16) { NT_STEP(_mm512_loadu_ps) }
    if (k < K) {
        const __mmask16 mk = lanes(K - k);
#define NT_TAIL(p) _mm512_maskz_loadu_ps(mk, p)
        NT_STEP(NT_TAIL)
#undef NT_TAIL
    }
#undef NT_STEP
#undef NT_ROW
    // the 16 sums at once: out[4i + j] = the sum of the lanes of s[i][j], by a tree of
    // shuffles and adds (16 separate lane reductions cost more than the products when
    // k is short)
    __m512 q[4];
    for (int i = 0; i < 4; i++) {
        // per 128-bit lane: pairs, then the lane's four partial sums of s[i][0..3]
        __m512 p01 = _mm512_add_ps(_mm512_unpacklo_ps(s[i][0], s[i][1]), _mm512_unpackhi_ps(s[i][0], s[i][1]));
        __m512 p23 = _mm512_add_ps(_mm512_unpacklo_ps(s[i][2], s[i][3]), _mm512_unpackhi_ps(s[i][2], s[i][3]));
        q[i] = _mm512_add_ps(_mm512_shuffle_ps(p01, p23, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(p01, p23, _MM_SHUFFLE(3, 2, 3, 2)));
    }
    // across the four 128-bit lanes: lanes (0+1, 2+3) of q0 and q1, then of q2 and q3
    const int even = _MM_SHUFFLE(2, 0, 2, 0), odd = _MM_SHUFFLE(3, 1, 3, 1);
    __m512 t01 = _mm512_add_ps(_mm512_shuffle_f32x4(q[0], q[1], even), _mm512_shuffle_f32x4(q[0], q[1], odd));
    __m512 t23 = _mm512_add_ps(_mm512_shuffle_f32x4(q[2], q[3], even), _mm512_shuffle_f32x4(q[2], q[3], odd));
    __m512 out = _mm512_add_ps(_mm512_shuffle_f32x4(t01, t23, even), _mm512_shuffle_f32x4(t01, t23, odd));
    _Alignas(64) float v[16];
    _mm512_store_ps(v, out);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float *c = C + (size_t)i * ldc + j;
            *c = add ? *c + v[4 * i + j] : v[4 * i + j];
        }
}

AVX512 static void micro_nt_512(int K, const float *const a[4], const float *B, int ldb, float *C, int ldc, int mr,
                                int nr, int add) {
    micro_nt_body(K, a, NULL, B, ldb, C, ldc, mr, nr, add);
}
AVX512 static void micro_nt_runs_512(int K, const float *const a[4], const ptrdiff_t *run, const float *B, int ldb,
                                     float *C, int ldc, int mr, int nr, int add) {
    micro_nt_body(K, a, run, B, ldb, C, ldc, mr, nr, add);
}

// ---- the AVX2 tiles: the same sums as the AVX-512 ones (see the top of the file)

// The first n of 8 lanes, as a mask of maskload/maskstore (lanes past it are neither
// read nor written, so they may lie past the end of an array).
AVX2 static inline __m256i lanes8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// One block of micro_nn_body's tile on AVX2: rows r0 .. r0+R-1 of the panel (those
// below `rows` stored) times vectors v0 .. v0+V-1 of the strip's four of 8 columns,
// R x V <= 12 sums in registers (R, V are constants where it is inlined). whole: the
// vectors are whole, so no lane is masked.
AVX2 static inline __attribute__((always_inline)) void
avx2_block(int kc, const float *restrict ap, const float *B, int ldb, const ptrdiff_t *restrict boff, const float *b1,
           float *C, int ldc, const ptrdiff_t *crow, float *c1, int rows, int add, int whole, const __m256i mk[4],
           int r0, int R, int v0, int V) {
    __m256 c[6][4];
    for (int i = 0; i < R; i++)
        for (int v = 0; v < V; v++) c[i][v] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const float *p0 = boff ? B + boff[k] : B + (size_t)k * ldb, *p1 = boff ? b1 + boff[k] : p0 + 16;
        __m256 b[4];
        for (int v = 0; v < V; v++) {
            const int u = v0 + v;
            const float *p = u < 2 ? p0 + 8 * u : p1 + 8 * (u - 2);
            b[v] = whole ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mk[u]);
            // in a register: GCC would fold the load into each of its multiply-adds,
            // more loads a k than two load ports feed
            __asm__("" : "+x"(b[v]));
        }
        for (int i = 0; i < R; i++) {
            const __m256 a = _mm256_broadcast_ss(ap + (size_t)k * MR + r0 + i);
            for (int v = 0; v < V; v++) c[i][v] = _mm256_fmadd_ps(a, b[v], c[i][v]);
        }
    }
    // row after row, each loaded after the store of the one before (see micro_nn_body)
    for (int i = 0; i < R && r0 + i < rows; i++) {
        const int m = r0 + i;
        float *cm0 = crow ? C + crow[m] : C + (size_t)m * ldc, *cm1 = crow ? c1 + crow[m] : cm0 + 16;
        for (int v = 0; v < V; v++) {
            const int u = v0 + v;
            float *dst = u < 2 ? cm0 + 8 * u : cm1 + 8 * (u - 2);
            __m256 x = c[i][v];
            if (add) x = _mm256_add_ps(whole ? _mm256_loadu_ps(dst) : _mm256_maskload_ps(dst, mk[u]), x);
            if (whole) _mm256_storeu_ps(dst, x);
            else _mm256_maskstore_ps(dst, mk[u], x);
        }
    }
}

// micro_nn_body on AVX2, as blocks of its tile. C as runs: rows two at a time, all
// columns each (2 x 4 vectors), so that rows are added in order as micro_nn_body adds
// them (the runs of rows may overlap); B as runs likewise (faster so: the 16->32
// forward 15.5 against 18.9 ms on one thread). Both in place: rows 0-5 in halves of 16
// columns (6 x 2 vectors: with 12 sums, each multiply-add's result is needed 6
// instructions later, past the latency of two pipes; alone, products of the deep
// layers' sizes ran at 58-68 GFLOP/s with 8 sums, 74-90 with 12), then rows 6-7.
// whole: ncols is 16 or 32, so no lane is masked.
AVX2 static inline __attribute__((always_inline)) void
micro_nn_body_avx2(int kc, const float *restrict ap, const float *B, int ldb, const ptrdiff_t *restrict boff,
                   const float *b1, float *C, int ldc, const ptrdiff_t *crow, float *c1, int rows, int ncols, int add,
                   int whole) {
    __m256i mk[4];
    for (int v = 0; v < 4; v++) mk[v] = lanes8(whole ? 8 : ncols - 8 * v);
#define BLOCK(r0, R, v0, V) avx2_block(kc, ap, B, ldb, boff, b1, C, ldc, crow, c1, rows, add, whole, mk, r0, R, v0, V)
    const int two = ncols > 16; // both halves of the strip
    if (crow || boff || rows <= 2) {
        for (int r = 0; r < rows; r += 2)
            if (two) BLOCK(r, 2, 0, 4);
            else BLOCK(r, 2, 0, 2);
        return;
    }
    BLOCK(0, 6, 0, 2);
    if (two) BLOCK(0, 6, 2, 2);
    if (rows > 6) {
        if (two) BLOCK(6, 2, 0, 4);
        else BLOCK(6, 2, 0, 2);
    }
#undef BLOCK
}

// ncols of 16 and 32 (whole runs or strips) each get a body without masks.
#define AVX2_BY_WIDTH(ncols, body_call)                                                                                \
    do {                                                                                                               \
        if ((ncols) == NR) {                                                                                           \
            const int w_ = NR, whole_ = 1;                                                                             \
            body_call;                                                                                                 \
        } else if ((ncols) == 16) {                                                                                    \
            const int w_ = 16, whole_ = 1;                                                                             \
            body_call;                                                                                                 \
        } else {                                                                                                       \
            const int w_ = (ncols), whole_ = 0;                                                                        \
            body_call;                                                                                                 \
        }                                                                                                              \
    } while (0)

AVX2 static void micro_nn_avx2(int kc, const float *restrict ap, const float *restrict B, int ldb, float *restrict C,
                               int ldc, int rows, int ncols, int add) {
    AVX2_BY_WIDTH(ncols, micro_nn_body_avx2(kc, ap, B, ldb, NULL, NULL, C, ldc, NULL, NULL, rows, w_, add, whole_));
}
AVX2 static void micro_nn_runs_avx2(int kc, const float *restrict ap, const ptrdiff_t *boff, const float *b0,
                                    const float *b1, float *restrict C, int ldc, int rows, int ncols, int add) {
    AVX2_BY_WIDTH(ncols, micro_nn_body_avx2(kc, ap, b0, 0, boff, b1, C, ldc, NULL, NULL, rows, w_, add, whole_));
}
AVX2 static void micro_nn_into_runs_avx2(int kc, const float *restrict ap, const float *restrict B, int ldb, float *c0,
                                         float *c1, const ptrdiff_t *crow, int rows, int ncols) {
    AVX2_BY_WIDTH(ncols, micro_nn_body_avx2(kc, ap, B, ldb, NULL, NULL, c0, 0, crow, c1, rows, w_, 1, whole_));
}
#undef AVX2_BY_WIDTH

// few_rows_512 on AVX2, k outermost: for each chunk of FEW_COLS columns, every row k
// of B adds its run of FEW_COLS floats, times A's values, into sums kept in L1 (at most
// FEW_ROWS x 4 KiB). Each sum is the same chain of fused multiply-adds along k from 0
// as in registers, so the bits are few_rows_512's. (Blocks of 16 columns in registers,
// the way AVX-512 does it with 64, read B as one cache line a row, rows ldb apart: the
// 512->512 layer's one-point input gradient at the paper's shape, B = its 33 MB of
// weights in rows 64 KiB apart, took 18-21 ms on a Zen 1 core, runs of 4 KiB 3.2 ms;
// its forward reads the same weights in 6.)
enum { FEW_COLS = 1024 };
AVX2 static void few_rows_avx2(int M, int N, int K, const float *A, int lda, int a_trans, const float *B, int ldb,
                               int add, float *C, int ldc) {
    _Alignas(64) float sums[FEW_ROWS][FEW_COLS];
    const int rows = M < FEW_ROWS ? M : FEW_ROWS;
    for (int j0 = 0; j0 < N; j0 += FEW_COLS) {
        const int cols = N - j0 < FEW_COLS ? N - j0 : FEW_COLS, whole = cols & ~7;
        const __m256i tail = lanes8(cols - whole);
        for (int m = 0; m < rows; m++) memset(sums[m], 0, sizeof(float) * (size_t)((cols + 7) & ~7));
        for (int k = 0; k < K; k++) {
            const float *b = B + (size_t)k * ldb + j0;
            for (int m = 0; m < rows; m++) {
                const __m256 am = _mm256_broadcast_ss(a_trans ? A + (size_t)k * lda + m : A + (size_t)m * lda + k);
                float *sm = sums[m];
                int j = 0;
                for (; j < whole; j += 8)
                    _mm256_store_ps(sm + j, _mm256_fmadd_ps(am, _mm256_loadu_ps(b + j), _mm256_load_ps(sm + j)));
                if (j < cols)
                    _mm256_store_ps(sm + j, _mm256_fmadd_ps(am, _mm256_maskload_ps(b + j, tail), _mm256_load_ps(sm + j)));
            }
        }
        for (int m = 0; m < rows; m++) {
            float *cm = C + (size_t)m * ldc + j0;
            for (int j = 0; j < cols; j++) cm[j] = add ? cm[j] + sums[m][j] : sums[m][j];
        }
    }
}

// ---- one tile per call, on the kernels gemm_kernels() chose

static void micro_nn(int kc, const float *restrict ap, const float *restrict B, int ldb, float *restrict C, int ldc,
                     int rows, int ncols, int add) {
    if (on_avx512()) micro_nn_512(kc, ap, B, ldb, C, ldc, rows, ncols, add);
    else micro_nn_avx2(kc, ap, B, ldb, C, ldc, rows, ncols, add);
}
static void micro_nn_runs(int kc, const float *restrict ap, const ptrdiff_t *boff, const float *b0, const float *b1,
                          float *restrict C, int ldc, int rows, int ncols, int add) {
    if (on_avx512()) micro_nn_runs_512(kc, ap, boff, b0, b1, C, ldc, rows, ncols, add);
    else micro_nn_runs_avx2(kc, ap, boff, b0, b1, C, ldc, rows, ncols, add);
}
static void micro_nn_into_runs(int kc, const float *restrict ap, const float *restrict B, int ldb, float *c0,
                               float *c1, const ptrdiff_t *crow, int rows, int ncols) {
    if (on_avx512()) micro_nn_into_runs_512(kc, ap, B, ldb, c0, c1, crow, rows, ncols);
    else micro_nn_into_runs_avx2(kc, ap, B, ldb, c0, c1, crow, rows, ncols);
}
static void few_rows_gemm(int M, int N, int K, const float *A, int lda, int a_trans, const float *B, int ldb, int add,
                          float *C, int ldc) {
    if (on_avx512()) few_rows_512(M, N, K, A, lda, a_trans, B, ldb, add, C, ldc);
    else few_rows_avx2(M, N, K, A, lda, a_trans, B, ldb, add, C, ldc);
}

// ---- the walks over blocks, strips and panels

// C's tile at rows r0.., columns j0.. (where inside rows x N) asked into L1: a product
// of few k added to C is bound by C's traffic, and the walk reaches rows a page apart
// (a row of a deep layer's dW is 64 KiB) in runs too short for the hardware
// prefetchers. PF_TILES: how many tiles ahead the walk asks. Inlined into the walks on
// purpose: as a function of its own GCC found it const and dropped its calls.
static inline __attribute__((always_inline)) void prefetch_c_tile(const float *C, int ldc, int rows, int N, int r0,
                                                                  int j0) {
    if (r0 >= rows || j0 >= N) return;
    for (int m = r0; m < (r0 + MR < rows ? r0 + MR : rows); m++) {
        __builtin_prefetch(C + (size_t)m * ldc + j0, 0, 3);
        if (j0 + 16 < N) __builtin_prefetch(C + (size_t)m * ldc + j0 + 16, 0, 3);
    }
}

// Where a walk that reads B's strip once per panel reads it from (*ld its row stride):
// B itself, or the strip (kc rows of ncols <= NR floats) copied out NR floats a row to
// dst when the walk has more than one panel and rows of B lie a multiple of 4 KiB apart
// (STRIP_SET_FLOATS; a layer's dY read in place, 16 KiB a row at 16->32): such rows fall in
// one set of L1, which holds 8 of them, so each panel read the strip from L2 again (the
// 16->32 layer's input gradient ran at 35 GFLOP/s on AVX2, 65 with the copy, OpenBLAS
// 47). On the column tiles (rows a tile's width apart) it gained nothing measurable.
// (A whole strip's rows are copied at their constant size, inline: as a memcpy of
// variable size GCC made each `rep movsq`, whose start-up on 128 bytes took half of the
// paper shape's first-layer input gradient: 58.8 -> 26.0 ms on one thread.)
static const float *strip_of_b(float *restrict dst, const float *B, int ldb, int kc, int ncols, int panels, int *ld) {
    *ld = ldb;
    if (panels < 2 || ldb % STRIP_SET_FLOATS != 0) return B;
    if (ncols == NR)
        for (int k = 0; k < kc; k++) memcpy(dst + (size_t)k * NR, B + (size_t)k * ldb, NR * sizeof(float));
    else
        for (int k = 0; k < kc; k++) memcpy(dst + (size_t)k * NR, B + (size_t)k * ldb, (size_t)ncols * sizeof(float));
    *ld = NR;
    return dst;
}

// One block of k: C's first `rows` rows, strips of NR columns, each strip over every
// panel of ap (the panels of those rows for this block).
static void panels_times_b(int rows, int N, int kc, const float *ap, const float *B, int ldb, int add, float *C,
                           int ldc) {
    const int panels = (rows + MR - 1) / MR;
    if (kc <= SHORT_K) {
        // few k: C's traffic outweighs B's, so each panel's rows of C are walked
        // along, B's strips re-read from cache (the same tiles, the same sums)
        for (int p = 0; p < panels; p++) {
            const int r0 = p * MR, nr = rows - r0 < MR ? rows - r0 : MR;
            for (int j0 = 0; j0 < N; j0 += NR) {
                if (add) {
                    const int pj = j0 + PF_TILES * NR;
                    prefetch_c_tile(C, ldc, rows, N, pj < N ? r0 : r0 + MR, pj < N ? pj : pj - N);
                }
                micro_nn(kc, ap + (size_t)p * kc * MR, B + j0, ldb, C + (size_t)r0 * ldc + j0, ldc, nr,
                         N - j0 < NR ? N - j0 : NR, add);
            }
        }
        return;
    }
    _Alignas(64) float strip[KC * NR];
    for (int j0 = 0; j0 < N; j0 += NR) {
        const int ncols = N - j0 < NR ? N - j0 : NR;
        int ldbj;
        const float *bj = strip_of_b(strip, B + j0, ldb, kc, ncols, panels, &ldbj);
        for (int p = 0; p < panels; p++) {
            const int r0 = p * MR, nr = rows - r0 < MR ? rows - r0 : MR;
            if (add) prefetch_c_tile(C, ldc, rows, N, r0 + PF_TILES * MR, j0);
            micro_nn(kc, ap + (size_t)p * kc * MR, bj, ldbj, C + (size_t)r0 * ldc + j0, ldc, nr, ncols, add);
        }
    }
}

// panels_times_b on B as runs, rows k0 .. k0+kc of it.
static void panels_times_runs(int rows, int N, int kc, const float *ap, const GemmRuns *b, int k0, int add,
                              float *C, int ldc) {
    const int panels = (rows + MR - 1) / MR;
    for (int j0 = 0; j0 < N; j0 += NR) {
        const int ncols = N - j0 < NR ? N - j0 : NR;
        const float *b0 = b->base + b->run[j0 / 16], *b1 = ncols > 16 ? b->base + b->run[j0 / 16 + 1] : b0;
        for (int p = 0; p < panels; p++) {
            const int r0 = p * MR, nr = rows - r0 < MR ? rows - r0 : MR;
            micro_nn_runs(kc, ap + (size_t)p * kc * MR, b->row + k0, b0, b1, C + (size_t)r0 * ldc + j0, ldc, nr,
                          ncols, add);
        }
    }
}

// C (M, N) = or += A B. Chunks of MCHUNK rows of A, blocks of KC of k, strips of NR
// columns, panels of MR rows, in that order: every element's sum runs over k in order,
// block after block.
static void own_gemm(int M, int N, int K, const float *A, int lda, int a_trans, const float *B, int ldb,
                     int first_add, float *C, int ldc) {
    if (M <= FEW_ROWS) {
        few_rows_gemm(M, N, K, A, lda, a_trans, B, ldb, first_add, C, ldc);
        return;
    }
    _Alignas(64) float ap[MCHUNK * KC];
    for (int m0 = 0; m0 < M; m0 += MCHUNK) {
        const int rows = M - m0 < MCHUNK ? M - m0 : MCHUNK;
        for (int k0 = 0; k0 < K; k0 += KC) {
            const int kc = K - k0 < KC ? K - k0 : KC;
            pack_a(ap, A, lda, a_trans, m0, rows, k0, kc);
            panels_times_b(rows, N, kc, ap, B + (size_t)k0 * ldb, ldb, first_add || k0 > 0, C + (size_t)m0 * ldc, ldc);
        }
    }
}

// C (as runs) += panels ap (rows, kc) times B's rows k0 .. k0+kc.
static void panels_into_runs(int rows, int N, int kc, const float *ap, const float *B, int ldb,
                             const GemmRuns *c) {
    const int panels = (rows + MR - 1) / MR;
    _Alignas(64) float strip[KC * NR];
    for (int j0 = 0; j0 < N; j0 += NR) {
        const int ncols = N - j0 < NR ? N - j0 : NR;
        float *c0 = (float *)c->base + c->run[j0 / 16], *c1 = ncols > 16 ? (float *)c->base + c->run[j0 / 16 + 1] : c0;
        int ldbj;
        const float *bj = strip_of_b(strip, B + j0, ldb, kc, ncols, panels, &ldbj);
        for (int p = 0; p < panels; p++) {
            const int r0 = p * MR, nr = rows - r0 < MR ? rows - r0 : MR;
            micro_nn_into_runs(kc, ap + (size_t)p * kc * MR, bj, ldbj, c0, c1, c->row + r0, nr, ncols);
        }
    }
}

// The same sums on an A packed once (gemm_pack_a), rows m0 .. m0+rows-1 of it. B is
// B (ldb) in place or, when br is set, the runs br; C is C (ldc) or, when cr is set,
// the runs cr added to.
static void own_gemm_packed(const GemmPacked *pa, int m0, int rows, int N, const float *B, int ldb,
                            const GemmRuns *br, int first_add, float *C, int ldc, const GemmRuns *cr) {
    for (int k0 = 0; k0 < pa->K; k0 += KC) {
        const int kc = pa->K - k0 < KC ? pa->K - k0 : KC;
        const float *ap = packed_block(pa, m0, k0);
        if (br)
            panels_times_runs(rows, N, kc, ap, br, k0, first_add || k0 > 0, C, ldc);
        else if (cr)
            panels_into_runs(rows, N, kc, ap, B + (size_t)k0 * ldb, ldb, cr);
        else
            panels_times_b(rows, N, kc, ap, B + (size_t)k0 * ldb, ldb, first_add || k0 > 0, C, ldc);
    }
}

// C (M, N) = or += A B^T, A in place (ar NULL) or as runs. The operand with more rows
// is walked once in the outer loop, the other re-read from cache; each element is one
// sum along k whatever the order.
static void own_nt(int M, int N, int K, const float *A, int lda, const GemmRuns *ar, const float *B, int ldb,
                   int add, float *C, int ldc) {
#define NT_TILE(m0, n0)                                                                                                \
    do {                                                                                                               \
        const int mr = M - (m0) < 4 ? M - (m0) : 4, nr = N - (n0) < 4 ? N - (n0) : 4;                                  \
        const float *a[4];                                                                                             \
        for (int i = 0; i < 4; i++) {                                                                                  \
            const int m = (m0) + (i < mr ? i : 0);                                                                     \
            a[i] = ar ? ar->base + ar->row[m] : A + (size_t)m * lda;                                                   \
        }                                                                                                              \
        if (ar)                                                                                                        \
            micro_nt_runs_512(K, a, ar->run, B + (size_t)(n0) * ldb, ldb, C + (size_t)(m0) * ldc + (n0), ldc, mr,      \
                              nr, add);                                                                                \
        else                                                                                                           \
            micro_nt_512(K, a, B + (size_t)(n0) * ldb, ldb, C + (size_t)(m0) * ldc + (n0), ldc, mr, nr, add);          \
    } while (0)
    if (M >= N) {
        for (int m0 = 0; m0 < M; m0 += 4)
            for (int n0 = 0; n0 < N; n0 += 4) NT_TILE(m0, n0);
    } else {
        for (int n0 = 0; n0 < N; n0 += 4)
            for (int m0 = 0; m0 < M; m0 += 4) NT_TILE(m0, n0);
    }
#undef NT_TILE
}
#else
static void own_gemm(int M, int N, int K, const float *A, int lda, int a_trans, const float *B, int ldb, int first_add,
                     float *C, int ldc) {
    (void)M, (void)N, (void)K, (void)A, (void)lda, (void)a_trans, (void)B, (void)ldb, (void)first_add, (void)C,
        (void)ldc;
    abort(); // gemm_own() is 0 here
}
static void own_nt(int M, int N, int K, const float *A, int lda, const GemmRuns *ar, const float *B, int ldb, int add,
                   float *C, int ldc) {
    (void)M, (void)N, (void)K, (void)A, (void)lda, (void)ar, (void)B, (void)ldb, (void)add, (void)C, (void)ldc;
    abort();
}
static void own_gemm_packed(const GemmPacked *pa, int m0, int rows, int N, const float *B, int ldb,
                            const GemmRuns *br, int first_add, float *C, int ldc, const GemmRuns *cr) {
    (void)pa, (void)m0, (void)rows, (void)N, (void)B, (void)ldb, (void)br, (void)first_add, (void)C, (void)ldc,
        (void)cr;
    abort();
}
static void pack_a(float *restrict ap, const float *A, int lda, int a_trans, int m0, int rows, int k0, int kc) {
    (void)ap, (void)A, (void)lda, (void)a_trans, (void)m0, (void)rows, (void)k0, (void)kc;
    abort();
}
static void panels_times_b(int rows, int N, int kc, const float *ap, const float *B, int ldb, int add, float *C,
                           int ldc) {
    (void)rows, (void)N, (void)kc, (void)ap, (void)B, (void)ldb, (void)add, (void)C, (void)ldc;
    abort();
}
#endif

// Whether gemm_nn and gemm_nn_packed run our kernels on a product of K terms: not
// below MIN_K, and on AVX2 not up to SHORT_K either (the decoder's last layer and D's
// first input gradient at the paper's shape, K = 32: 33-35 ms against OpenBLAS's 28).
// The products from or into runs stay ours: they skip the column matrix's copy.
static int own_k(int K) { return gemm_own() && K >= MIN_K && (K > SHORT_K || on_avx512()); }

// beta 0 or 1 say whether the first k-block adds to C; other betas scale C first. K = 0
// leaves beta C.
static int prepare_c(int M, int N, int K, float beta, float *C, int ldc) {
    if (beta != 0.0f && beta != 1.0f) scale_c(M, N, beta, C, ldc);
    if (K == 0 && beta == 0.0f)
        for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc, 0, (size_t)N * sizeof(float));
    return beta != 0.0f;
}

void gemm_nn(int M, int N, int K, const float *A, int lda, int a_trans, const float *B, int ldb, float beta, float *C,
             int ldc) {
    if (M <= 0 || N <= 0) return;
    if (!own_k(K)) {
        cblas_sgemm(CblasRowMajor, a_trans ? CblasTrans : CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb,
                    beta, C, ldc);
        return;
    }
    int add = prepare_c(M, N, K, beta, C, ldc);
    own_gemm(M, N, K, A, lda, a_trans, B, ldb, add, C, ldc);
}

void gemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (!gemm_nt_own() || K < MIN_K) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int add = prepare_c(M, N, K, beta, C, ldc);
    own_nt(M, N, K, A, lda, NULL, B, ldb, add, C, ldc);
}

size_t gemm_packed_floats(int M, int K) { return (size_t)((M + MR - 1) / MR * MR) * (size_t)(K > 0 ? K : 0); }

int gemm_pack_a(GemmPacked *pa, float *buf, int M, int K, const float *A, int lda, int a_trans) {
    pa->p = NULL, pa->K = K, pa->Mpad = (M + MR - 1) / MR * MR;
    if (!buf || !gemm_own() || K < MIN_K || M <= 0) return 0;
    pa->p = buf;
    // blocks of KC of k, each the panels of all rows (block k0 starts at k0 * Mpad): the
    // panels are independent, so the threads of the caller's team share them
    const int panels = pa->Mpad / MR, blocks = (K + KC - 1) / KC;
#pragma omp for schedule(static)
    for (int i = 0; i < blocks * panels; i++) {
        const int k0 = i / panels * KC, kc = K - k0 < KC ? K - k0 : KC, m0 = i % panels * MR;
        pack_a(buf + (size_t)k0 * pa->Mpad + (size_t)m0 * kc, A, lda, a_trans, m0, M - m0 < MR ? M - m0 : MR, k0, kc);
    }
    return 1;
}

void gemm_nn_packed_slab(const GemmPacked *pa, int m0, int rows, int k0, int N, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc) {
    if (rows <= 0 || N <= 0) return;
    if (k0 >= pa->K) { // K = 0: C = beta C
        if (k0 == 0) prepare_c(rows, N, 0, beta, C, ldc);
        return;
    }
    const int kc = pa->K - k0 < KC ? pa->K - k0 : KC;
    const float *a = A + (size_t)m0 * lda + k0;
    if (!own_k(pa->K)) { // gemm_nn's OpenBLAS route: its own sums, slab after slab
        gemm_nn(rows, N, kc, a, lda, 0, B, ldb, k0 == 0 ? beta : 1.0f, C, ldc);
        return;
    }
    const int add = k0 == 0 ? prepare_c(rows, N, pa->K, beta, C, ldc) : 1;
    if (pa->p && m0 % MR == 0)
        panels_times_b(rows, N, kc, packed_block(pa, m0, k0), B, ldb, add, C, ldc);
    else // gemm_nn's own blocks of k are these slabs
        own_gemm(rows, N, kc, a, lda, 0, B, ldb, add, C, ldc);
}

void gemm_nn_packed(const GemmPacked *pa, int m0, int rows, int N, const float *A, int lda, int a_trans,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    if (rows <= 0 || N <= 0) return;
    if (!pa->p || !own_k(pa->K) || m0 % MR != 0) {
        const float *a = a_trans ? A + m0 : A + (size_t)m0 * lda;
        gemm_nn(rows, N, pa->K, a, lda, a_trans, B, ldb, beta, C, ldc);
        return;
    }
    int add = prepare_c(rows, N, pa->K, beta, C, ldc);
    own_gemm_packed(pa, m0, rows, N, B, ldb, NULL, add, C, ldc, NULL);
}

void gemm_nn_packed_runs(const GemmPacked *pa, int m0, int rows, int N, const GemmRuns *b, float beta, float *C,
                         int ldc) {
    if (rows <= 0 || N <= 0) return;
    if (!pa->p || !gemm_own() || m0 % MR != 0) abort(); // the callers check: a bug, not an input
    int add = prepare_c(rows, N, pa->K, beta, C, ldc);
    own_gemm_packed(pa, m0, rows, N, NULL, 0, b, add, C, ldc, NULL);
}

void gemm_nt_runs(int M, int N, int K, const GemmRuns *a, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (!gemm_nt_own() || K < MIN_K) abort(); // the callers check
    int add = prepare_c(M, N, K, beta, C, ldc);
    own_nt(M, N, K, NULL, 0, a, B, ldb, add, C, ldc);
}

void gemm_nn_packed_into_runs(const GemmPacked *pa, int m0, int rows, int N, const float *B, int ldb,
                              const GemmRuns *c) {
    if (rows <= 0 || N <= 0 || pa->K <= 0) return;
    if (!pa->p || !gemm_own() || m0 % MR != 0) abort(); // the callers check
    own_gemm_packed(pa, m0, rows, N, B, ldb, NULL, 1, NULL, 0, c);
}
