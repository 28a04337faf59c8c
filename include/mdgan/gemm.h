#ifndef MDGAN_GEMM_H
#define MDGAN_GEMM_H
#include <stddef.h>
// The single-precision products of the convolutions, in our own AVX-512 kernels where
// the CPU has AVX-512, else through OpenBLAS.
//
// Why our own: the environment pins OpenBLAS to its Haswell (AVX2) kernels because its
// AVX-512 ones miscompute on this machine's CPU, and at the convolutions' shapes (a few
// dozen rows, a few hundred columns per tile) those kernels reach 75-85 GFLOP/s on one
// core where a plain AVX-512 register tile reaches 120-180 (bench_step --layers shows
// both in one run). Each call runs on the calling thread; the sum of every element
// runs along k in a fixed order, so the bits never depend on how the callers split work
// between threads.
//
// Every matrix is row-major, alpha is 1:
//   gemm_nn: C (M, N) = A (M, K) B (K, N) + beta C;  a_trans: A is given as its
//            transpose, a (K, M) array with leading dimension lda
//   gemm_nt: C (M, N) = A (M, K) B^T + beta C, B given as (N, K): both operands run
//            along k in memory (the weight gradients: sums over columns)
// beta 0 never reads C (it may hold NaN); beta 1 adds to it; other betas scale it.

// 1 when gemm_nn/gemm_nt run our kernels (AVX-512F with the OS saving its registers,
// and not switched off by gemm_use_own(0) or MDGAN_GEMM=openblas in the environment).
int gemm_own(void);
// Tests and benchmarks: 0 routes every call to OpenBLAS, 1 back to our kernels (where
// the CPU has them).
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
// Only on our kernels (gemm_own(), and for gemm_nn_packed_runs an A that was packed):
// the callers keep the copied column matrix for the other cases. The sums are those of
// gemm_nn_packed and gemm_nt on the same values, bit for bit.
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
