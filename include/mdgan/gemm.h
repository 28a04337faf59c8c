#ifndef MDGAN_GEMM_H
#define MDGAN_GEMM_H
#include <stddef.h>
// The single-precision products of the convolutions, in our own kernels where the CPU
// has AVX-512 or AVX2 with FMA, else through OpenBLAS.
//
// Why our own: they read a convolution's column matrix in place, as runs of the input's
// lines (GemmRuns below), and add its adjoint straight into the input, where OpenBLAS
// needs the matrix copied out first; and on a CPU with AVX-512 whose OpenBLAS must be
// pinned to its Haswell (AVX2) kernels (its AVX-512 ones miscompute there), those reach
// 75-85 GFLOP/s on one core at the convolutions' shapes where a plain AVX-512 register
// tile reaches 120-180 (bench_step --layers shows both in one run). Each call runs on
// the calling thread; the sum of every element runs along k in a fixed order, so the
// bits never depend on how the callers split work between threads. gemm_nn's sums are
// the same fused multiply-adds on both instruction sets (the same bits); gemm_nt runs
// our kernel on AVX-512 only (gemm_nt_own), OpenBLAS's sgemm on AVX2.
//
// Every matrix is row-major, alpha is 1:
//   gemm_nn: C (M, N) = A (M, K) B (K, N) + beta C;  a_trans: A is given as its
//            transpose, a (K, M) array with leading dimension lda
//   gemm_nt: C (M, N) = A (M, K) B^T + beta C, B given as (N, K): both operands run
//            along k in memory (the weight gradients: sums over columns)
// beta 0 never reads C (it may hold NaN); beta 1 adds to it; other betas scale it.

// Which kernels run: the best the CPU has (with the OS saving its registers), unless
// MDGAN_GEMM in the environment says openblas, or avx2 on a CPU with AVX-512.
typedef enum { GEMM_OPENBLAS = 0, GEMM_AVX2 = 2, GEMM_AVX512 = 3 } GemmKernels;
GemmKernels gemm_kernels(void);
// 1 when gemm_nn runs our kernels (gemm_kernels() is not GEMM_OPENBLAS); gemm_nt_own:
// when gemm_nt does too (GEMM_AVX512: on AVX2 OpenBLAS's sgemm is faster there).
int gemm_own(void);
int gemm_nt_own(void);
// Tests and benchmarks: route every call to these kernels; returns 0 (and changes
// nothing) when the CPU does not have them.
int gemm_use_kernels(GemmKernels k);
// 0: every call to OpenBLAS; 1: back to the best kernels the CPU has.
void gemm_use_own(int on);

void gemm_nn(int M, int N, int K, const float *A, int lda, int a_trans, const float *B, int ldb, float beta, float *C,
             int ldc);
void gemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

// A packed once for many gemm_nn calls on its rows (the convolutions' weights, shared
// by every tile of a call): gemm_pack_a lays A (M, K) (a_trans: given as (K, M)) out in
// buf, gemm_packed_floats(M, K) floats; it is an `omp for` (call it inside a parallel
// region, or outside one to pack on one thread). It returns 0 when our kernels do not
// run or buf is NULL (nothing packed). gemm_nn_packed then computes C (rows, N) =
// A[m0 .. m0+rows) B + beta C, from the packed A when m0 is a multiple of the panel
// height (8), else (and when nothing was packed) as gemm_nn on A itself.
typedef struct {
    const float *p; // NULL: nothing packed
    int K, Mpad;    // Mpad: the rows rounded up to whole panels
} GemmPacked;
size_t gemm_packed_floats(int M, int K);
int gemm_pack_a(GemmPacked *pa, float *buf, int M, int K, const float *A, int lda, int a_trans);
void gemm_nn_packed(const GemmPacked *pa, int m0, int rows, int N, const float *A, int lda, int a_trans,
                    const float *B, int ldb, float beta, float *C, int ldc);
// One block of k of that product, so that a caller can build B a block of rows at a
// time (a deep layer's column tile is megabytes; a slab of GEMM_KC rows stays in L2):
// C (rows, N) = A[m0 .. m0+rows, k0 .. k0+kc) B + beta C for k0 == 0, += for the
// blocks after it, with kc = min(GEMM_KC, K - k0), k0 a multiple of GEMM_KC, A not
// transposed, B the (kc, N) slab. Called for k0 = 0, GEMM_KC, ... in order, the sums
// are gemm_nn_packed's, bit for bit, on our kernels (except for products of at most
// four rows from an A not packed, which one call sums over all of k at once).
enum { GEMM_KC = 256 };
void gemm_nn_packed_slab(const GemmPacked *pa, int m0, int rows, int k0, int N, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc);

// An operand read in place as runs of 16 floats (the convolutions' column matrix, read
// straight from the phase-split input lines instead of copied out first): element
// (i, j) of a (rows, cols) matrix is base[row[i] + run[j / 16] + j % 16]. Runs are
// whole vectors; the last run of a row may be short (only its first cols % 16 floats
// are read).
typedef struct {
    const float *base;
    const ptrdiff_t *row, *run;
} GemmRuns;
// Only on our kernels (gemm_own(); gemm_nt_own() for gemm_nt_runs; an A that was
// packed for gemm_nn_packed_runs): the callers keep the copied column matrix for the
// other cases. The sums are those of gemm_nn_packed and gemm_nt on the same values, bit
// for bit, except on AVX2 for products of at most 32 k, which gemm_nn and
// gemm_nn_packed give to OpenBLAS (its sums differ; ours from runs still skip a copy).
//   gemm_nn_packed_runs: C (rows, N) = A[m0 .. m0+rows) B + beta C, B (pa->K, N) as runs
//   gemm_nt_runs:        C (M, N) = A B^T + beta C, A (M, K) as runs, B (N, K) in place
void gemm_nn_packed_runs(const GemmPacked *pa, int m0, int rows, int N, const GemmRuns *b, float beta, float *C,
                         int ldc);
void gemm_nt_runs(int M, int N, int K, const GemmRuns *a, const float *B, int ldb, float beta, float *C, int ldc);
// gemm_nn_packed_into_runs: C += A[m0 .. m0+rows) B, C (rows, N) as runs (c->row[i] for
// row m0 + i), B (pa->K, N) in place. Rows of C may overlap: each element gets its terms
// row after row, in a fixed order (the adjoint of the column matrix, col2vol, summed in
// place).
void gemm_nn_packed_into_runs(const GemmPacked *pa, int m0, int rows, int N, const float *B, int ldb,
                              const GemmRuns *c);

#endif
