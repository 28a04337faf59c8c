// gemm_nn and gemm_nt (common/gemm.c): our AVX-512 kernels and the OpenBLAS route
// against a double-precision loop, over shapes that hit every edge of the register
// tiles (rows past a panel of 8, columns past a strip of 32 or a vector of 16, k past a
// block of 256 or a vector of 16), A given plain or transposed, and beta 0 (C holding
// NaN, which must not be read), 1 and 0.5.
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

static void run_all(int own) {
    gemm_use_own(own);
    const char *route = own ? "own" : "openblas";
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
    gemm_use_own(1);
}

// gemm_nn_packed on an A packed once: C computed in row pieces [0, 8), [8, 11) and
// [11, M) (11 is not a panel start: the fallback on A itself), plain and transposed A.
static void run_packed(int own) {
    gemm_use_own(own);
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
            check(own ? "own" : "openblas", tr ? "packed(A^T)" : "packed", si, C, R, s, ldc);
        }
        free(A); free(B); free(C); free(R); free(buf);
    }
    gemm_use_own(1);
}

static void test_own_kernels(void **state) {
    (void)state;
    gemm_use_own(1);
    if (!gemm_own()) skip(); // no AVX-512 here (or under valgrind): the OpenBLAS route is what runs
    run_all(1);
    run_packed(1);
}

static void test_openblas_route(void **state) {
    (void)state;
    run_all(0);
    run_packed(0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_kernels),
        cmocka_unit_test(test_openblas_route),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
