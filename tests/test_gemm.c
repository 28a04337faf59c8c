// gemm_nn and gemm_nt (common/gemm.c): our AVX-512 and AVX2 kernels (each that the CPU
// has) and the OpenBLAS route against a double-precision loop, over shapes that hit
// every edge of the register tiles (rows past a panel of 8, columns past a strip of 32
// or a vector of 16, k past a block of 256 or a vector of 16, one to four rows, past the few-row kernel's chunks of columns), A given
// plain or transposed, and beta 0 (C holding NaN, which must not be read), 1 and 0.5;
// the packed product whole and slab by slab.
#include "testutil.h"

#include <math.h>

#include "mdgan/gemm.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

typedef struct { int M, N, K; } Shape;
static const Shape shapes[] = {
    {1, 1, 1},    {3, 5, 7},     {8, 32, 256},  {9, 33, 257},  {17, 70, 600}, {16, 512, 144},
    {64, 31, 15}, {7, 16, 1},    {130, 17, 40}, {5, 100, 513}, {2, 3, 0},     {66, 48, 16},
    {1, 70, 300}, {4, 33, 40},   {3, 200, 16}, // a few rows: the vector-times-matrix kernel
    {2, 1100, 40}, {4, 2053, 33},                // ... past its chunks of columns, short last ones
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

// C = A B (+ beta C0) in double; A(m, k) = a_trans ? A[k*lda + m] : A[m*lda + k]; B as
// (K, N) (nt 0) or (N, K) (nt 1).
static void reference(const Shape *s, const float *A, int lda, int a_trans, const float *B, int ldb, int nt,
                      float beta, const float *C0, float *C, int ldc) {
    for (int m = 0; m < s->M; m++)
        for (int n = 0; n < s->N; n++) {
            double sum = 0;
            for (int k = 0; k < s->K; k++) {
                double a = a_trans ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k];
                double b = nt ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n];
                sum += a * b;
            }
            C[(size_t)m * ldc + n] = (float)(beta != 0.0f ? sum + (double)beta * C0[(size_t)m * ldc + n] : sum);
        }
}

static void check(const char *route, const char *what, int si, const float *got, const float *ref, const Shape *s,
                  int ldc) {
    for (int m = 0; m < s->M; m++)
        for (int n = 0; n < s->N; n++) {
            float g = got[(size_t)m * ldc + n], r = ref[(size_t)m * ldc + n];
            // float sums of K terms of size <= 1: K * 2^-23 relative to the sum of |terms|
            double tol = 1e-6 * (s->K + 4);
            if (!(fabs((double)g - r) <= tol))
                fail_msg("%s %s shape %d (%d,%d,%d): C[%d][%d] = %.9g, expected %.9g", route, what, si, s->M, s->N,
                         s->K, m, n, g, r);
        }
    // the padding columns past N (ldc > N) are never written
    for (int m = 0; m < s->M; m++)
        for (int n = s->N; n < ldc; n++)
            if (got[(size_t)m * ldc + n] != -7.0f) fail_msg("%s %s shape %d wrote past column N", route, what, si);
}

static const char *route_name(void) {
    const GemmKernels k = gemm_kernels();
    return k == GEMM_AVX512 ? "avx512" : k == GEMM_AVX2 ? "avx2" : "openblas";
}

// own: on the kernel set the caller chose (gemm_use_kernels), else on OpenBLAS and
// back to our best kernels after
static void run_all(int own) {
    if (!own) gemm_use_own(0);
    const char *route = route_name();
    const float betas[] = {0.0f, 1.0f, 0.5f};
    for (int si = 0; si < NSHAPES; si++) {
        const Shape *s = &shapes[si];
        const int lda_n = s->K + 3, lda_t = s->M + 5, ldb_nn = s->N + 2, ldb_nt = s->K + 1, ldc = s->N + 3;
        size_t na = (size_t)(s->M + 8) * (s->K + 8), nb = (size_t)(s->K + 8) * (s->N + 8), nc = (size_t)s->M * ldc;
        float *A = malloc(na * sizeof(float)), *B = malloc(nb * sizeof(float));
        float *C0 = malloc(nc * sizeof(float)), *C = malloc(nc * sizeof(float)), *R = malloc(nc * sizeof(float));
        assert_true(A && B && C0 && C && R);
        for (size_t i = 0; i < na; i++) A[i] = frand();
        for (size_t i = 0; i < nb; i++) B[i] = frand();
        for (int bi = 0; bi < 3; bi++)
            for (int kind = 0; kind < 3; kind++) { // nn, nn with A transposed, nt
                const float beta = betas[bi];
                for (size_t i = 0; i < nc; i++) C0[i] = (int)(i % ldc) >= s->N ? -7.0f : beta == 0.0f ? NAN : frand();
                memcpy(C, C0, nc * sizeof(float));
                memcpy(R, C0, nc * sizeof(float));
                char what[64];
                snprintf(what, sizeof what, "%s beta %.1f", kind == 0 ? "nn" : kind == 1 ? "nn(A^T)" : "nt", beta);
                if (kind < 2) {
                    int lda = kind ? lda_t : lda_n;
                    gemm_nn(s->M, s->N, s->K, A, lda, kind, B, ldb_nn, beta, C, ldc);
                    reference(s, A, lda, kind, B, ldb_nn, 0, beta, C0, R, ldc);
                } else {
                    gemm_nt(s->M, s->N, s->K, A, lda_n, B, ldb_nt, beta, C, ldc);
                    reference(s, A, lda_n, 0, B, ldb_nt, 1, beta, C0, R, ldc);
                }
                check(route, what, si, C, R, s, ldc);
            }
        free(A); free(B); free(C0); free(C); free(R);
    }
    if (!own) gemm_use_own(1);
}

// gemm_nn_packed on an A packed once: C computed in row pieces [0, 8), [8, 11) and
// [11, M) (11 is not a panel start: the fallback on A itself), plain and transposed A.
static void run_packed(int own) {
    if (!own) gemm_use_own(0);
    for (int si = 0; si < NSHAPES; si++) {
        const Shape *s = &shapes[si];
        const int ldb = s->N + 2, ldc = s->N + 3;
        size_t na = (size_t)(s->M + 8) * (s->K + 8), nb = (size_t)(s->K + 8) * (s->N + 8), nc = (size_t)s->M * ldc;
        float *A = malloc(na * sizeof(float)), *B = malloc(nb * sizeof(float)), *C = malloc(nc * sizeof(float));
        float *R = malloc(nc * sizeof(float)), *buf = malloc((gemm_packed_floats(s->M, s->K) + 1) * sizeof(float));
        assert_true(A && B && C && R && buf);
        for (size_t i = 0; i < na; i++) A[i] = frand();
        for (size_t i = 0; i < nb; i++) B[i] = frand();
        for (int tr = 0; tr < 2; tr++) {
            const int lda = tr ? s->M + 5 : s->K + 3;
            for (size_t i = 0; i < nc; i++) C[i] = R[i] = (int)(i % ldc) >= s->N ? -7.0f : NAN;
            GemmPacked pa;
            int packed = gemm_pack_a(&pa, buf, s->M, s->K, A, lda, tr);
            assert_int_equal(packed, own && gemm_own() && s->K >= 16);
            const int cut[4] = {0, s->M < 8 ? s->M : 8, s->M < 11 ? s->M : 11, s->M};
            for (int c = 0; c < 3; c++)
                gemm_nn_packed(&pa, cut[c], cut[c + 1] - cut[c], s->N, A, lda, tr, B, ldb, 0.0f,
                               C + (size_t)cut[c] * ldc, ldc);
            reference(s, A, lda, tr, B, ldb, 0, 0.0f, R, R, ldc);
            check(route_name(), tr ? "packed(A^T)" : "packed", si, C, R, s, ldc);
        }
        free(A); free(B); free(C); free(R); free(buf);
    }
    if (!own) gemm_use_own(1);
}

// gemm_nn_packed_slab over slabs of GEMM_KC rows of B, in order, with beta 0 and 1:
// within tolerance of the double loop on both routes and, on ours, the bits of one
// gemm_nn_packed call (the fallback on A itself for the piece [11, M) too, except for
// pieces of at most four rows there, which one call sums over all of k at once).
static void run_slabs(int own) {
    if (!own) gemm_use_own(0);
    for (int si = 0; si < NSHAPES; si++) {
        const Shape *s = &shapes[si];
        const int lda = s->K + 3, ldb = s->N + 2, ldc = s->N + 3;
        size_t na = (size_t)(s->M + 8) * (s->K + 8), nb = (size_t)(s->K + 8) * (s->N + 8), nc = (size_t)s->M * ldc;
        float *A = malloc(na * sizeof(float)), *B = malloc(nb * sizeof(float)), *C = malloc(nc * sizeof(float));
        float *C1 = malloc(nc * sizeof(float)), *C0 = malloc(nc * sizeof(float)), *R = malloc(nc * sizeof(float));
        float *buf = malloc((gemm_packed_floats(s->M, s->K) + 1) * sizeof(float));
        assert_true(A && B && C && C1 && C0 && R && buf);
        for (size_t i = 0; i < na; i++) A[i] = frand();
        for (size_t i = 0; i < nb; i++) B[i] = frand();
        GemmPacked pa;
        gemm_pack_a(&pa, buf, s->M, s->K, A, lda, 0);
        for (int add = 0; add < 2; add++) {
            for (size_t i = 0; i < nc; i++) C0[i] = (int)(i % ldc) >= s->N ? -7.0f : add ? frand() : NAN;
            memcpy(C, C0, nc * sizeof(float));
            memcpy(C1, C0, nc * sizeof(float));
            const int cut[4] = {0, s->M < 8 ? s->M : 8, s->M < 11 ? s->M : 11, s->M};
            for (int c = 0; c < 3; c++) {
                const int rows = cut[c + 1] - cut[c];
                float *cc = C + (size_t)cut[c] * ldc;
                for (int k0 = 0; k0 == 0 || k0 < s->K; k0 += GEMM_KC)
                    gemm_nn_packed_slab(&pa, cut[c], rows, k0, s->N, A, lda, B + (size_t)k0 * ldb, ldb,
                                        add ? 1.0f : 0.0f, cc, ldc);
                gemm_nn_packed(&pa, cut[c], rows, s->N, A, lda, 0, B, ldb, add ? 1.0f : 0.0f,
                               C1 + (size_t)cut[c] * ldc, ldc);
                if (own && gemm_own() && s->K >= 16 && (rows > 4 || (pa.p && cut[c] % 8 == 0)))
                    for (int m = cut[c]; m < cut[c + 1]; m++)
                        if (memcmp(C + (size_t)m * ldc, C1 + (size_t)m * ldc, sizeof(float) * (size_t)s->N) != 0)
                            fail_msg("slabs shape %d (%d,%d,%d) beta %d: row %d differs from one product", si, s->M,
                                     s->N, s->K, add, m);
            }
            reference(s, A, lda, 0, B, ldb, 0, add ? 1.0f : 0.0f, C0, R, ldc);
            check(route_name(), add ? "slabs beta 1" : "slabs beta 0", si, C, R, s, ldc);
        }
        free(A); free(B); free(C); free(C1); free(C0); free(R); free(buf);
    }
    if (!own) gemm_use_own(1);
}

// The operands read as runs of 16 floats (GemmRuns): gemm_nn_packed_runs and
// gemm_nt_runs give the bits of gemm_nn_packed and gemm_nt on the same values copied
// out; gemm_nn_packed_into_runs adds A B into rows that overlap (rows 4 apart start 1
// float apart), which a double-precision sum checks, and leaves the gaps between runs
// alone. Row and run offsets are uneven, runs have gaps between them.
enum { RUN_GAP = 5 };
static void make_runs(ptrdiff_t *row, int rows, ptrdiff_t *run, int cols, int overlap, size_t *extent) {
    const int nruns = (cols + 15) / 16;
    const ptrdiff_t stride = (ptrdiff_t)nruns * (16 + RUN_GAP) + 3;
    for (int j = 0; j < nruns; j++) run[j] = (ptrdiff_t)j * (16 + RUN_GAP);
    for (int i = 0; i < rows; i++) row[i] = overlap ? (i / 4) * stride + i % 4 : i * stride + i % 3;
    *extent = (size_t)(rows + 1) * (size_t)stride + 16;
}
static float run_at(const float *base, const ptrdiff_t *row, const ptrdiff_t *run, int i, int j) {
    return base[row[i] + run[j / 16] + j % 16];
}

static void runs_on(void) {
    for (int si = 0; si < NSHAPES; si++) {
        const Shape *s = &shapes[si];
        if (s->K < 16) continue; // below that the callers copy (OpenBLAS's route)
        const int M = s->M, N = s->N, K = s->K, big = (M > K ? M : K) + 1;
        ptrdiff_t *row = malloc(sizeof(ptrdiff_t) * big), *run = malloc(sizeof(ptrdiff_t) * (big / 16 + N / 16 + 2));
        float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *Bt = malloc(sizeof(float) * N * K);
        float *C1 = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N);
        float *buf = malloc(sizeof(float) * gemm_packed_floats(M, K));
        assert_true(row && run && A && B && Bt && C1 && C2 && buf);
        for (int i = 0; i < K * N; i++) Bt[i] = frand();
        GemmPacked pa;
        size_t extent;
        // nn: B (K, N) as runs
        make_runs(row, K, run, N, 0, &extent);
        float *base = malloc(sizeof(float) * extent);
        assert_non_null(base);
        for (size_t i = 0; i < extent; i++) base[i] = frand();
        for (int k = 0; k < K; k++)
            for (int n = 0; n < N; n++) B[k * N + n] = run_at(base, row, run, k, n);
        for (int i = 0; i < M * K; i++) A[i] = frand();
        assert_int_equal(gemm_pack_a(&pa, buf, M, K, A, K, 0), 1);
        for (int add = 0; add < 2; add++) {
            for (int i = 0; i < M * N; i++) C1[i] = C2[i] = add ? (float)i : NAN;
            gemm_nn_packed(&pa, 0, M, N, A, K, 0, B, N, add ? 1.0f : 0.0f, C1, N);
            GemmRuns b = {base, row, run};
            gemm_nn_packed_runs(&pa, 0, M, N, &b, add ? 1.0f : 0.0f, C2, N);
            // (on AVX2 gemm_nn_packed gives products of at most 32 k to OpenBLAS)
            if ((gemm_kernels() == GEMM_AVX512 || K > 32) && memcmp(C1, C2, sizeof(float) * M * N) != 0)
                fail_msg("nn runs shape %d beta %d: bits differ", si, add);
        }
        free(base);
        // nt: A (M, K) as runs, B (N, K) in place (our dot kernels: AVX-512 only)
        make_runs(row, M, run, K, 0, &extent);
        base = malloc(sizeof(float) * extent);
        assert_non_null(base);
        for (size_t i = 0; i < extent; i++) base[i] = frand();
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) A[m * K + k] = run_at(base, row, run, m, k);
        for (int i = 0; i < M * N; i++) C1[i] = C2[i] = NAN;
        gemm_nt(M, N, K, A, K, Bt, K, 0.0f, C1, N);
        GemmRuns a = {base, row, run};
        if (gemm_nt_own()) {
            gemm_nt_runs(M, N, K, &a, Bt, K, 0.0f, C2, N);
            if (memcmp(C1, C2, sizeof(float) * M * N) != 0) fail_msg("nt runs shape %d: bits differ", si);
        }
        free(base);
        // into runs: C (M, N) as overlapping runs, += A B
        make_runs(row, M, run, N, 1, &extent);
        base = malloc(sizeof(float) * extent);
        double *want = malloc(sizeof(double) * extent);
        assert_true(base && want);
        for (size_t i = 0; i < extent; i++) want[i] = base[i] = frand();
        for (int i = 0; i < K * N; i++) B[i] = frand();
        assert_int_equal(gemm_pack_a(&pa, buf, M, K, A, K, 0), 1); // A as the nt part left it
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double sum = 0;
                for (int k = 0; k < K; k++) sum += (double)A[m * K + k] * B[k * N + n];
                want[row[m] + run[n / 16] + n % 16] += sum;
            }
        GemmRuns c = {base, row, run};
        gemm_nn_packed_into_runs(&pa, 0, M, N, B, N, &c);
        for (size_t i = 0; i < extent; i++)
            if (!(fabs(base[i] - want[i]) <= 1e-5 * (K + 4) * (M / 4 + 2)))
                fail_msg("into runs shape %d: element %zu = %.9g, expected %.9g", si, i, base[i], want[i]);
        free(base); free(want);
        free(row); free(run); free(A); free(B); free(Bt); free(C1); free(C2); free(buf);
    }
}

// Each of our kernel sets the CPU has (valgrind has AVX2 but not AVX-512); the AVX2 ones
// give gemm_nn the same bits as the AVX-512 ones.
static const GemmKernels own_sets[] = {GEMM_AVX512, GEMM_AVX2};

static void test_own_kernels(void **state) {
    (void)state;
    int ran = 0;
    for (int i = 0; i < 2; i++) {
        if (!gemm_use_kernels(own_sets[i])) continue;
        run_all(1);
        run_packed(1);
        run_slabs(1);
        ran++;
    }
    gemm_use_own(1);
    if (!ran) skip(); // neither AVX-512 nor AVX2 here: the OpenBLAS route is what runs
}

static void test_runs(void **state) {
    (void)state;
    int ran = 0;
    for (int i = 0; i < 2; i++)
        if (gemm_use_kernels(own_sets[i])) runs_on(), ran++;
    gemm_use_own(1);
    if (!ran) skip(); // the runs exist only on our kernels
}

// gemm_nn on AVX2 and on AVX-512: the same fused multiply-adds in the same order, so
// the same bits, for every form (plain, A transposed, packed, B as runs).
static void test_kernel_sets_same_bits(void **state) {
    (void)state;
    if (!gemm_use_kernels(GEMM_AVX512)) skip(); // only a CPU with both can compare them
    enum { M = 70, N = 77, K = 600 };
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C[2];
    float *buf = malloc(sizeof(float) * gemm_packed_floats(M, K));
    C[0] = malloc(sizeof(float) * M * N), C[1] = malloc(sizeof(float) * M * N);
    assert_true(A && B && C[0] && C[1] && buf);
    for (int i = 0; i < M * K; i++) A[i] = frand();
    for (int i = 0; i < K * N; i++) B[i] = frand();
    for (int form = 0; form < 4; form++) {
        for (int set = 0; set < 2; set++) {
            assert_int_equal(gemm_use_kernels(own_sets[set]), 1);
            for (int i = 0; i < M * N; i++) C[set][i] = (float)(i % 7);
            GemmPacked pa;
            if (form == 0) gemm_nn(M, N, K, A, K, 0, B, N, 1.0f, C[set], N);
            if (form == 1) gemm_nn(M, N, K / 10, A, M, 1, B, N, 0.0f, C[set], N); // A^T (K/10, M)
            if (form >= 2) assert_int_equal(gemm_pack_a(&pa, buf, M, K, A, K, 0), 1);
            if (form == 2) gemm_nn_packed(&pa, 0, M, N, A, K, 0, B, N, 1.0f, C[set], N);
            if (form == 3) { // B as runs of 16 with gaps: the rows of B with N padded to 80
                ptrdiff_t row[K], run[5];
                for (int k = 0; k < K; k++) row[k] = (ptrdiff_t)k * N;
                for (int j = 0; j < 5; j++) run[j] = 16 * j;
                GemmRuns b = {B, row, run};
                gemm_nn_packed_runs(&pa, 0, M, N - 13, &b, 0.0f, C[set], N);
            }
        }
        if (memcmp(C[0], C[1], sizeof(float) * M * N) != 0) fail_msg("form %d: AVX2 and AVX-512 bits differ", form);
    }
    gemm_use_own(1);
    free(A); free(B); free(C[0]); free(C[1]); free(buf);
}

static void test_openblas_route(void **state) {
    (void)state;
    run_all(0);
    run_packed(0);
    run_slabs(0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_kernels),
        cmocka_unit_test(test_openblas_route),
        cmocka_unit_test(test_runs),
        cmocka_unit_test(test_kernel_sets_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
