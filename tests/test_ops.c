// ops (BatchNorm3d, activations), loss (BCE, L1, Gram, ranking) and adam:
// fast vs naive, central finite differences against double-precision forwards written
// here, thread-count determinism, PyTorch fixtures (tests/fixtures/bn3d_train,
// bn3d_eval, gram_rank, gram_rank_bounded .safetensors) and Adam against a double reference and torch.
//
// Finite differences: each loss L = sum_i w_i f(x)_i is evaluated in double from the
// same float inputs, with central differences of step FD_H. Truncation (h^2 f''') and
// rounding (1e-16 L / h) are both below 1e-8 here, so the tolerance FD_TOL = 1e-4
// (max error / max |reference|) measures the float kernels' own rounding (~1e-6) with a
// wide margin while catching any wrong term. Inputs of kinked functions (relu, |.|)
// are kept at least FD_GAP away from the kink, far beyond FD_H.
#include "testutil.h"

#include <omp.h>

#include "mdgan/adam.h"
#include "mdgan/loss.h"
#include "mdgan/conv.h"
#include "mdgan/ops.h"

static const BnAct NO_ACT = {BN_ACT_NONE, 0.0f};

#define FD_H 1e-5
#define FD_TOL 1e-4
#define FD_GAP 0.05f
#define NAIVE_TOL 1e-5   // fast vs naive kernels (float vs double accumulation order)
#define FIXTURE_TOL 1e-4 // vs PyTorch

// ---------------------------------------------------------------- helpers

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { // xorshift64, uniform in [-1, 1)
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static float *alloc_f32(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}
static double *alloc_f64(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    assert_non_null(p);
    return p;
}
// uniform in [lo, hi)
static float *rand_buf(size_t n, float lo, float hi) {
    float *p = alloc_f32(n);
    for (size_t i = 0; i < n; i++) p[i] = lo + (frand() * 0.5f + 0.5f) * (hi - lo);
    return p;
}
// |x| in [FD_GAP, 1], random sign: away from the kinks at 0
static float *rand_away(size_t n) {
    float *p = alloc_f32(n);
    for (size_t i = 0; i < n; i++) {
        float u = frand();
        p[i] = (u < 0 ? -1.0f : 1.0f) * (FD_GAP + fabsf(u) * (1.0f - FD_GAP));
    }
    return p;
}
static double *to_f64(const float *x, size_t n) {
    double *d = alloc_f64(n);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

// fd[i] = scale * dL/dp[i] by central differences, p perturbed in place and restored.
static void fd_grad(float *fd, double *p, size_t n, double (*loss)(void *), void *ctx, double scale) {
    for (size_t i = 0; i < n; i++) {
        double save = p[i];
        p[i] = save + FD_H;
        double lp = loss(ctx);
        p[i] = save - FD_H;
        double lm = loss(ctx);
        p[i] = save;
        fd[i] = (float)(scale * (lp - lm) / (2 * FD_H));
    }
}

// Compares an analytic float gradient with the FD one of loss over the double copy p.
static void check_fd(const char *what, const float *analytic, double *p, size_t n,
                     double (*loss)(void *), void *ctx, double scale) {
    float *fd = alloc_f32(n);
    fd_grad(fd, p, n, loss, ctx, scale);
    expect_close(what, analytic, fd, n, FD_TOL);
    free(fd);
}

static double worst_err; // largest error of any fixture comparison, printed at the end

// ---------------------------------------------------------------- BatchNorm3d

typedef struct {
    int N, C;
    size_t S;
    int train;
    double eps;
    double *x, *gamma, *beta, *w, *rm, *rv; // w = upstream gradient
} BnCtx;

// L = sum w * BN(x), in double
static double bn_loss(void *p) {
    BnCtx *b = p;
    double L = 0, cnt = (double)b->N * b->S;
    for (int c = 0; c < b->C; c++) {
        double m = 0, var = 0;
        if (b->train) {
            for (int n = 0; n < b->N; n++)
                for (size_t i = 0; i < b->S; i++) m += b->x[((size_t)n * b->C + c) * b->S + i];
            m /= cnt;
            for (int n = 0; n < b->N; n++)
                for (size_t i = 0; i < b->S; i++) {
                    double d = b->x[((size_t)n * b->C + c) * b->S + i] - m;
                    var += d * d;
                }
            var /= cnt;
        } else {
            m = b->rm[c];
            var = b->rv[c];
        }
        double rs = 1 / sqrt(var + b->eps);
        for (int n = 0; n < b->N; n++)
            for (size_t i = 0; i < b->S; i++) {
                size_t j = ((size_t)n * b->C + c) * b->S + i;
                L += b->w[j] * ((b->x[j] - m) * rs * b->gamma[c] + b->beta[c]);
            }
    }
    return L;
}

static void bn_gradcheck(int train, int N, int C, size_t S) {
    size_t n = (size_t)N * C * S;
    float *x = rand_buf(n, -2, 3), *gamma = rand_buf(C, 0.5f, 1.5f), *beta = rand_buf(C, -1, 1);
    float *dy = rand_buf(n, -1, 1), *rm = rand_buf(C, -0.5f, 0.5f), *rv = rand_buf(C, 0.5f, 2);
    float *y = alloc_f32(n), *mean = alloc_f32(C), *rstd = alloc_f32(C);
    float *dx = alloc_f32(n), *dg = alloc_f32(C), *db = alloc_f32(C);
    const float eps = 1e-5f;
    if (train) {
        batchnorm_forward_train(y, mean, rstd, NULL, NULL, x, gamma, beta, N, C, S, 0.1f, eps, NO_ACT);
        batchnorm_backward(dx, dg, db, dy, x, mean, rstd, gamma, N, C, S);
    } else {
        batchnorm_forward_eval(y, x, gamma, beta, rm, rv, N, C, S, eps, NO_ACT);
        batchnorm_backward_eval(dx, dg, db, dy, x, gamma, rm, rv, N, C, S, eps);
    }
    BnCtx b = {N, C, S, train, eps, to_f64(x, n), to_f64(gamma, C), to_f64(beta, C),
               to_f64(dy, n), to_f64(rm, C), to_f64(rv, C)};
    // the forward itself, against the double one (w = one-hot would be slow: use L)
    double L = 0;
    for (size_t i = 0; i < n; i++) L += (double)dy[i] * y[i];
    double Lref = bn_loss(&b);
    printf("    BN %s N=%d C=%d S=%zu: forward sum rel err %.3e\n", train ? "train" : "eval", N, C, S,
           fabs(L - Lref) / fabs(Lref));
    assert_true(fabs(L - Lref) <= 1e-5 * fabs(Lref) + 1e-5);
    char what[64];
    snprintf(what, sizeof what, "BN %s dx", train ? "train" : "eval");
    check_fd(what, dx, b.x, n, bn_loss, &b, 1);
    snprintf(what, sizeof what, "BN %s dgamma", train ? "train" : "eval");
    check_fd(what, dg, b.gamma, C, bn_loss, &b, 1);
    snprintf(what, sizeof what, "BN %s dbeta", train ? "train" : "eval");
    check_fd(what, db, b.beta, C, bn_loss, &b, 1);
    free(b.x); free(b.gamma); free(b.beta); free(b.w); free(b.rm); free(b.rv);
    free(x); free(gamma); free(beta); free(dy); free(rm); free(rv); free(y); free(mean); free(rstd);
    free(dx); free(dg); free(db);
}

static void test_bn_train_gradcheck(void **state) {
    (void)state;
    bn_gradcheck(1, 3, 5, 7);
    bn_gradcheck(1, 1, 2, 13); // one sample: the statistics come from S alone
}

static void test_bn_eval_gradcheck(void **state) {
    (void)state;
    bn_gradcheck(0, 3, 5, 7);
}

// Fast (OpenMP, lane sums) against naive (double, one thread), including the running
// statistics, accumulation into non-zero gradients and NULL gradient pointers.
static void test_bn_fast_matches_naive(void **state) {
    (void)state;
    const int shapes[][3] = {{3, 5, 37}, {2, 4, 5001}}; // the second passes the OpenMP threshold
    for (int k = 0; k < 2; k++) {
        int N = shapes[k][0], C = shapes[k][1];
        size_t S = (size_t)shapes[k][2], n = (size_t)N * C * S;
        float *x = rand_buf(n, -1, 4), *gamma = rand_buf(C, 0.5f, 1.5f), *beta = rand_buf(C, -1, 1);
        float *dy = rand_buf(n, -1, 1), *rm1 = rand_buf(C, -1, 1), *rv1 = rand_buf(C, 0.5f, 2);
        float *rm2 = alloc_f32(C), *rv2 = alloc_f32(C);
        memcpy(rm2, rm1, C * sizeof(float));
        memcpy(rv2, rv1, C * sizeof(float));
        float *y1 = alloc_f32(n), *y2 = alloc_f32(n), *m1 = alloc_f32(C), *m2 = alloc_f32(C);
        float *r1 = alloc_f32(C), *r2 = alloc_f32(C);
        float *dx1 = rand_buf(n, -1, 1), *dx2 = alloc_f32(n), *dg1 = rand_buf(C, -1, 1), *dg2 = alloc_f32(C);
        float *db1 = rand_buf(C, -1, 1), *db2 = alloc_f32(C), *dg3 = alloc_f32(C);
        memcpy(dx2, dx1, n * sizeof(float));
        memcpy(dg2, dg1, C * sizeof(float));
        memcpy(db2, db1, C * sizeof(float));
        memcpy(dg3, dg1, C * sizeof(float));
        batchnorm_forward_train(y1, m1, r1, rm1, rv1, x, gamma, beta, N, C, S, 0.1f, 1e-5f, NO_ACT);
        batchnorm_forward_train_naive(y2, m2, r2, rm2, rv2, x, gamma, beta, N, C, S, 0.1f, 1e-5f);
        expect_close("BN fast/naive y", y1, y2, n, NAIVE_TOL);
        expect_close("BN fast/naive mean", m1, m2, C, NAIVE_TOL);
        expect_close("BN fast/naive rstd", r1, r2, C, NAIVE_TOL);
        expect_close("BN fast/naive running_mean", rm1, rm2, C, NAIVE_TOL);
        expect_close("BN fast/naive running_var", rv1, rv2, C, NAIVE_TOL);
        batchnorm_backward(dx1, dg1, db1, dy, x, m1, r1, gamma, N, C, S);
        batchnorm_backward_naive(dx2, dg2, db2, dy, x, m2, r2, gamma, N, C, S);
        expect_close("BN fast/naive dx (accumulated)", dx1, dx2, n, NAIVE_TOL);
        expect_close("BN fast/naive dgamma (accumulated)", dg1, dg2, C, NAIVE_TOL);
        expect_close("BN fast/naive dbeta (accumulated)", db1, db2, C, NAIVE_TOL);
        batchnorm_backward(NULL, dg3, NULL, dy, x, m1, r1, gamma, N, C, S);
        expect_close("BN dgamma alone (dinp, dbeta NULL)", dg3, dg1, C, 0);
        free(x); free(gamma); free(beta); free(dy); free(rm1); free(rv1); free(rm2); free(rv2);
        free(y1); free(y2); free(m1); free(m2); free(r1); free(r2);
        free(dx1); free(dx2); free(dg1); free(dg2); free(db1); free(db2); free(dg3);
    }
}

// running_mean == NULL ("batch statistics" inference) normalises like training and
// writes no running state.
static void test_bn_batch_stats_inference(void **state) {
    (void)state;
    int N = 2, C = 3;
    size_t S = 11, n = (size_t)N * C * S;
    float *x = rand_buf(n, -1, 1), *g = rand_buf(C, 0.5f, 1.5f), *b = rand_buf(C, -1, 1);
    float *y1 = alloc_f32(n), *y2 = alloc_f32(n), *m = alloc_f32(C), *r = alloc_f32(C);
    float rm[3] = {0.25f, 0.5f, 0.75f}, rv[3] = {1, 2, 3}, rm0[3], rv0[3];
    memcpy(rm0, rm, sizeof rm);
    memcpy(rv0, rv, sizeof rv);
    batchnorm_forward_train(y1, m, r, rm, rv, x, g, b, N, C, S, 0.1f, 1e-5f, NO_ACT);
    batchnorm_forward_train(y2, m, r, NULL, NULL, x, g, b, N, C, S, 0.1f, 1e-5f, NO_ACT);
    expect_close("BN batch-stats y == train y", y2, y1, n, 0);
    assert_true(memcmp(rm, rm0, sizeof rm) != 0); // the first call did update
    // and the eval path with the batch's own statistics gives the same output
    float var[3];
    for (int c = 0; c < C; c++) var[c] = 1.0f / (r[c] * r[c]) - 1e-5f;
    batchnorm_forward_eval(y2, x, g, b, m, var, N, C, S, 1e-5f, NO_ACT);
    expect_close("BN eval with batch stats == train y", y2, y1, n, 1e-5);
    free(x); free(g); free(b); free(y1); free(y2); free(m); free(r);
}

// The activation fused into BatchNorm's pass gives exactly the bits of relu_forward /
// lrelu_forward run after it, in training and evaluation mode (NaN, +-0 included).
static void test_bn_fused_activation(void **state) {
    (void)state;
    int N = 2, C = 3;
    size_t S = 257, n = (size_t)N * C * S;
    float *x = rand_buf(n, -2, 2), *g = rand_buf(C, -1.5f, 1.5f), *b = rand_buf(C, -1, 1);
    x[5] = NAN, x[6] = 0.0f, x[7] = -0.0f;
    float *sep = alloc_f32(n), *fused = alloc_f32(n), *m = alloc_f32(C), *r = alloc_f32(C);
    float rm[3] = {0.25f, -0.5f, 0.75f}, rv[3] = {1, 2, 3};
    const BnAct acts[2] = {{BN_ACT_RELU, 0.0f}, {BN_ACT_LRELU, 0.2f}};
    for (int k = 0; k < 2; k++)
        for (int eval = 0; eval < 2; eval++) {
            if (eval) {
                batchnorm_forward_eval(sep, x, g, b, rm, rv, N, C, S, 1e-5f, NO_ACT);
                batchnorm_forward_eval(fused, x, g, b, rm, rv, N, C, S, 1e-5f, acts[k]);
            } else {
                batchnorm_forward_train(sep, m, r, NULL, NULL, x, g, b, N, C, S, 0.1f, 1e-5f, NO_ACT);
                batchnorm_forward_train(fused, m, r, NULL, NULL, x, g, b, N, C, S, 0.1f, 1e-5f, acts[k]);
            }
            if (k == 0) relu_forward(sep, sep, n);
            else lrelu_forward(sep, sep, n, 0.2f);
            assert_memory_equal(fused, sep, n * sizeof(float));
        }
    free(x); free(g); free(b); free(sep); free(fused); free(m); free(r);
}

// The backward through the fused activation gives exactly the bits of relu_backward /
// lrelu_backward into a zeroed buffer followed by batchnorm_backward.
static void test_bn_fused_activation_backward(void **state) {
    (void)state;
    int N = 2, C = 3;
    size_t S = 4099, n = (size_t)N * C * S; // odd, and over BatchNorm's OpenMP threshold
    float *x = rand_buf(n, -2, 2), *g = rand_buf(C, -1.5f, 1.5f), *b = rand_buf(C, -1, 1);
    float *da = rand_buf(n, -1, 1), *out = alloc_f32(n), *m = alloc_f32(C), *r = alloc_f32(C);
    float *dy = alloc_f32(n), *dx1 = rand_buf(n, -1, 1), *dx2 = alloc_f32(n);
    memcpy(dx2, dx1, n * sizeof(float));
    const BnAct acts[2] = {{BN_ACT_RELU, 0.0f}, {BN_ACT_LRELU, 0.2f}};
    for (int k = 0; k < 2; k++) {
        float dg1[3] = {0.5f, 0, 0}, db1[3] = {0, -1, 0}, dg2[3], db2[3];
        memcpy(dg2, dg1, sizeof dg1), memcpy(db2, db1, sizeof db1);
        batchnorm_forward_train(out, m, r, NULL, NULL, x, g, b, N, C, S, 0.1f, 1e-5f, acts[k]);
        memset(dy, 0, n * sizeof(float));
        if (k == 0) relu_backward(dy, da, out, n);
        else lrelu_backward(dy, da, out, n, 0.2f);
        batchnorm_backward(dx1, dg1, db1, dy, x, m, r, g, N, C, S);
        batchnorm_backward_act(dx2, dg2, db2, da, out, acts[k], x, m, r, g, N, C, S);
        assert_memory_equal(dx2, dx1, n * sizeof(float));
        assert_memory_equal(dg2, dg1, sizeof dg1);
        assert_memory_equal(db2, db1, sizeof db1);
    }
    free(x); free(g); free(b); free(da); free(out); free(m); free(r); free(dy); free(dx1); free(dx2);
}

// BatchNorm's sums in the order ops.c documents, written out in scalar code here: 16
// double lanes per plane, lane j adding the elements j, j + 16, ... in turn, the lanes
// added pairwise (l[j] += l[j + 8], then + 4, + 2, + 1), the planes' sums added in
// order of n. Whichever clone (AVX-512, AVX2, baseline) the CPU runs must give these
// bits; `valgrind` (no AVX-512) runs the AVX2 clone.
#define REF_LANES 16
static double ref_lane_sum(const float *a, const float *b, size_t S, double m, int kind) {
    double l[REF_LANES] = {0};
    for (size_t i = 0; i < S; i++) {
        const double d = a[i] - m; // kind 0: a; 1: (a - m)^2; 2: b * (a - m)
        l[i % REF_LANES] += kind == 0 ? (double)a[i] : kind == 1 ? d * d : (double)b[i] * d;
    }
    for (int w = REF_LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) l[j] += l[j + w];
    return l[0];
}

static void test_bn_lane_order(void **state) {
    (void)state;
    const int shapes[][3] = {{3, 2, 37}, {2, 4, 5001}}; // lanes and a tail; over the OpenMP threshold
    for (int k = 0; k < 2; k++) {
        const int N = shapes[k][0], C = shapes[k][1];
        const size_t S = (size_t)shapes[k][2], n = (size_t)N * C * S;
        // Multiples of 2^-10 in [-1, 1], whose sums are exact, and in each plane two pairs
        // +-B that cancel exactly in this order and in no other: 2^60 at elements 0 and
        // 16 (lane 0 in turn; with 8 or 32 lanes the values between are lost to it), and
        // 2^50 as the last element of lanes 1 and 9 (the first pair the fold adds; added
        // in turn, lanes 0 and 2-8 would be lost to it).
        float *x = rand_buf(n, -1, 1), *dy = rand_buf(n, -1, 1), *g = rand_buf(C, 0.5f, 1.5f);
        float *b = rand_buf(C, -1, 1), *y = alloc_f32(n), *m = alloc_f32(C), *r = alloc_f32(C);
        float *dx = alloc_f32(n), *dg = alloc_f32(C), *db = alloc_f32(C);
        for (size_t i = 0; i < n; i++) x[i] = roundf(x[i] * 1024) / 1024, dy[i] = roundf(dy[i] * 1024) / 1024;
        const size_t last1 = 1 + (S - 2) / REF_LANES * REF_LANES, last9 = 9 + (S - 10) / REF_LANES * REF_LANES;
        for (size_t p = 0; p < (size_t)N * C; p++) {
            float *xp = x + p * S, *dp = dy + p * S;
            xp[0] = dp[0] = 0x1p60f, xp[16] = dp[16] = -0x1p60f;
            xp[last1] = dp[last1] = 0x1p50f, xp[last9] = dp[last9] = -0x1p50f;
        }
        batchnorm_forward_train(y, m, r, NULL, NULL, x, g, b, N, C, S, 0.1f, 1e-5f, NO_ACT);
        batchnorm_backward(dx, dg, db, dy, x, m, r, g, N, C, S);
        const double cnt = (double)N * (double)S;
        for (int c = 0; c < C; c++) {
            double sum = 0, ss = 0, sdy = 0, dot = 0;
            for (int q = 0; q < N; q++) sum += ref_lane_sum(x + ((size_t)q * C + c) * S, NULL, S, 0, 0);
            const double mean = sum / cnt;
            for (int q = 0; q < N; q++) ss += ref_lane_sum(x + ((size_t)q * C + c) * S, NULL, S, mean, 1);
            const float rstd = (float)(1.0 / sqrt(ss / cnt + 1e-5));
            for (int q = 0; q < N; q++) {
                const size_t off = ((size_t)q * C + c) * S;
                sdy += ref_lane_sum(dy + off, NULL, S, 0, 0);
                dot += ref_lane_sum(x + off, dy + off, S, mean, 2);
            }
            const float mf = (float)mean, dbf = (float)sdy, dgf = (float)(dot * rstd);
            assert_memory_equal(&m[c], &mf, sizeof mf);
            assert_memory_equal(&r[c], &rstd, sizeof rstd);
            assert_memory_equal(&db[c], &dbf, sizeof dbf);
            assert_memory_equal(&dg[c], &dgf, sizeof dgf);
        }
        free(x); free(dy); free(g); free(b); free(y); free(m); free(r); free(dx); free(dg); free(db);
    }
}

// tanh_forward's own tanh (16 lanes in double): within 1 ulp of tanh in double rounded
// to float, over [-12, 12], near 0 and the series' edge 2^-10, at 9 where it stops, and
// +-0, +-inf, NaN, subnormals; an element's bits the same on 1-3 threads and wherever
// it sits in the array (the last few go through a padded copy).
static void test_tanh(void **state) {
    (void)state;
    const size_t n = 20011;
    float *x = alloc_f32(n), *y = alloc_f32(n), *y2 = alloc_f32(n + 1);
    for (size_t i = 0; i < n; i++) {
        const float u = frand();
        x[i] = i % 4 == 0 ? 12 * u : i % 4 == 1 ? u * 0x1p-9f : i % 4 == 2 ? ldexpf(u, -(int)(i % 140)) : 9 + u * 1e-3f;
    }
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 0x1p-10f, -0x1p-10f, 0x1p-149f, -0x1p-140f, 9.0f,
                             -9.0f, 1e-7f, 0.5f, -0.55f, 88.0f, -1e30f};
    memcpy(x, special, sizeof special);
    tanh_forward(y, x, n);
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        const float ref = (float)tanh((double)x[i]);
        if (isnan(ref)) {
            assert_true(isnan(y[i]));
            continue;
        }
        if (!signbit(y[i]) != !signbit(ref)) fail_msg("tanh(%a) = %a, tanh in double %a", x[i], y[i], ref);
        int32_t a, b;
        memcpy(&a, &y[i], 4), memcpy(&b, &ref, 4);
        const int ulps = abs(a - b);
        if (ulps > 1) fail_msg("tanh(%a) = %a, tanh in double %a: %d ulp", x[i], y[i], ref, ulps);
        worst = ulps > worst ? ulps : worst;
    }
    printf("    tanh_forward within %d ulp of tanh in double (%zu values)\n", worst, n);
    const int saved = omp_get_max_threads();
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        tanh_forward(y2 + 1, x, n);
        assert_memory_equal(y2 + 1, y, n * sizeof(float));
        for (size_t off = 1; off < 40; off += 7) {   // the same elements at other offsets
            tanh_forward(y2, x + off, n - off);
            assert_memory_equal(y2, y + off, (n - off) * sizeof(float));
        }
    }
    omp_set_num_threads(saved);
    free(x), free(y), free(y2);
}

// Same bits with 1, 2 and 3 threads (bit-exact resume depends on it).
static void test_deterministic_across_threads(void **state) {
    (void)state;
    int N = 2, C = 5;
    size_t S = 7001, n = (size_t)N * C * S; // over the OpenMP thresholds of BN and L1
    float *x = rand_buf(n, -1, 2), *g = rand_buf(C, 0.5f, 1.5f), *b = rand_buf(C, -1, 1);
    float *dy = rand_buf(n, -1, 1), *x2 = rand_buf(n, -1, 1);
    float *ref[4] = {0}, *out[4];
    float refl = 0;
    int saved = omp_get_max_threads();
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        for (int k = 0; k < 4; k++) out[k] = alloc_f32(k == 0 || k == 3 ? n : 3 * (size_t)C);
        float *mean = out[1], *rstd = out[1] + C, *rm = out[2], *rv = out[2] + C;
        batchnorm_forward_train(out[0], mean, rstd, rm, rv, x, g, b, N, C, S, 0.1f, 1e-5f, NO_ACT);
        batchnorm_backward(out[3], out[2] + 2 * C, out[1] + 2 * C, dy, x, mean, rstd, g, N, C, S);
        float l = l1_forward(x, x2, n);
        if (t == 1) {
            memcpy(ref, out, sizeof out);
            refl = l;
            continue;
        }
        assert_memory_equal(out[0], ref[0], n * sizeof(float));
        assert_memory_equal(out[1], ref[1], 3 * (size_t)C * sizeof(float));
        assert_memory_equal(out[2], ref[2], 3 * (size_t)C * sizeof(float));
        assert_memory_equal(out[3], ref[3], n * sizeof(float));
        assert_memory_equal(&l, &refl, sizeof l);
        for (int k = 0; k < 4; k++) free(out[k]);
    }
    omp_set_num_threads(saved);
    printf("    BN train fwd/bwd and L1 identical with 1, 2, 3 threads\n");
    for (int k = 0; k < 4; k++) free(ref[k]);
    free(x); free(g); free(b); free(dy); free(x2);
}

// ---------------------------------------------------------------- activations

typedef struct {
    double *x, *w;
    size_t n;
    double (*f)(double);
} ActCtx;
static double act_loss(void *p) {
    ActCtx *a = p;
    double L = 0;
    for (size_t i = 0; i < a->n; i++) L += a->w[i] * a->f(a->x[i]);
    return L;
}
static double relu_d(double x) { return x > 0 ? x : 0; }
static double lrelu_d(double x) { return x > 0 ? x : 0.2 * x; }
static double tanh_d(double x) { return tanh(x); }
static double sigmoid_d(double x) { return 1 / (1 + exp(-x)); }
static void lrelu02_forward(float *out, const float *inp, size_t n) { lrelu_forward(out, inp, n, 0.2f); }
static void lrelu02_backward(float *dinp, const float *dout, const float *out, size_t n) {
    lrelu_backward(dinp, dout, out, n, 0.2f);
}

static void test_activation_gradcheck(void **state) {
    (void)state;
    const struct {
        const char *name;
        void (*fwd)(float *, const float *, size_t);
        void (*bwd)(float *, const float *, const float *, size_t);
        double (*f)(double);
    } acts[] = {
        {"relu", relu_forward, relu_backward, relu_d},
        {"lrelu 0.2", lrelu02_forward, lrelu02_backward, lrelu_d},
        {"tanh", tanh_forward, tanh_backward, tanh_d},
        {"sigmoid", sigmoid_forward, sigmoid_backward, sigmoid_d},
    };
    size_t n = 203;
    for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++) {
        float *x = rand_away(n), *dy = rand_buf(n, -1, 1), *y = alloc_f32(n), *dx = alloc_f32(n);
        for (size_t i = 0; i < n; i++) x[i] *= 3; // into tanh's and sigmoid's tails
        memcpy(y, x, n * sizeof(float));
        acts[k].fwd(y, y, n); // in place: the backward must only need the output
        ActCtx a = {to_f64(x, n), to_f64(dy, n), n, acts[k].f};
        for (size_t i = 0; i < n; i++)
            if (fabs(y[i] - acts[k].f(x[i])) > 1e-6) fail_msg("%s(%g) = %g", acts[k].name, x[i], y[i]);
        acts[k].bwd(dx, dy, y, n);
        char what[64];
        snprintf(what, sizeof what, "%s dx (from output)", acts[k].name);
        check_fd(what, dx, a.x, n, act_loss, &a, 1);
        free(a.x); free(a.w); free(x); free(dy); free(y); free(dx);
    }
    // sigmoid far out in both tails stays finite and exact
    float big[4] = {-200, -90, 90, 200}, sb[4];
    sigmoid_forward(sb, big, 4);
    assert_true(sb[0] == 0 && sb[1] >= 0 && sb[1] < 1e-38f && sb[2] == 1 && sb[3] == 1);
    float s[5] = {1, -2, 3, 0, 5}, t[5] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    add_inplace(s, t, 5);
    assert_true(s[0] == 1.5f && s[1] == -1.5f && s[4] == 5.5f);
}

// ---------------------------------------------------------------- BCE and L1

typedef struct {
    double *x, *b;
    size_t n;
    double t;
} VecCtx;
static double bce_loss(void *p) {
    VecCtx *v = p;
    double L = 0;
    for (size_t i = 0; i < v->n; i++) L += -(v->t * log(sigmoid_d(v->x[i])) + (1 - v->t) * log(1 - sigmoid_d(v->x[i])));
    return L / v->n;
}
static double l1_loss(void *p) {
    VecCtx *v = p;
    double L = 0;
    for (size_t i = 0; i < v->n; i++) L += fabs(v->x[i] - v->b[i]);
    return L / v->n;
}

static void test_bce_gradcheck(void **state) {
    (void)state;
    size_t n = 13;
    float *x = rand_buf(n, -6, 6);
    for (int t = 0; t <= 1; t++) {
        float *dx = alloc_f32(n);
        VecCtx v = {to_f64(x, n), NULL, n, t};
        float L = bce_logits_forward(x, (float)t, n);
        double Lref = bce_loss(&v);
        printf("    BCE target %d: loss %.7f, ref %.7f\n", t, L, Lref);
        assert_true(fabs(L - Lref) <= 1e-6 * fabs(Lref));
        bce_logits_backward(dx, x, (float)t, n, 1.7f);
        check_fd(t ? "BCE(x, 1) dx, scale 1.7" : "BCE(x, 0) dx, scale 1.7", dx, v.x, n, bce_loss, &v, 1.7);
        free(v.x); free(dx);
    }
    // the stable form: no overflow for huge logits
    float big[4] = {-1e4f, -100, 100, 1e4f};
    assert_true(fabsf(bce_logits_forward(big, 1, 4) - (1e4f + 100) / 4) < 1e-2f);
    assert_true(fabsf(bce_logits_forward(big, 0, 4) - (1e4f + 100) / 4) < 1e-2f);
    float d[4] = {0};
    bce_logits_backward(d, big, 1, 4, 1);
    assert_true(d[0] == -0.25f && d[3] == 0 && isfinite(d[1]));
    free(x);
}

static void test_l1_gradcheck(void **state) {
    (void)state;
    size_t n = 101;
    float *b = rand_buf(n, -1, 1), *a = rand_away(n), *da = alloc_f32(n);
    for (size_t i = 0; i < n; i++) a[i] += b[i]; // |a - b| >= FD_GAP
    VecCtx v = {to_f64(a, n), to_f64(b, n), n, 0};
    float L = l1_forward(a, b, n);
    double Lref = l1_loss(&v);
    printf("    L1 loss %.7f, ref %.7f\n", L, Lref);
    assert_true(fabs(L - Lref) <= 1e-6 * Lref);
    l1_backward(da, a, b, n, -0.8f);
    check_fd("L1 da, scale -0.8", da, v.x, n, l1_loss, &v, -0.8);
    // sign(0) = 0, as PyTorch
    float z = 0, dz = 0;
    l1_backward(&dz, &z, &z, 1, 1);
    assert_true(dz == 0);
    free(v.x); free(v.b); free(a); free(b); free(da);
}

// ---------------------------------------------------------------- Gram, distance, rank

// double Gram of one (M, S) sample
static void gram_d(double *g, const double *x, int M, size_t S) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < M; j++) {
            double s = 0;
            for (size_t k = 0; k < S; k++) s += x[(size_t)i * S + k] * x[(size_t)j * S + k];
            g[(size_t)i * M + j] = s / ((double)M * S);
        }
}

typedef struct {
    int N, M;
    size_t S;
    double *x, *w, *g;
} GramCtx;
static double gram_loss(void *p) {
    GramCtx *c = p;
    double L = 0;
    size_t MM = (size_t)c->M * c->M;
    for (int n = 0; n < c->N; n++) {
        gram_d(c->g, c->x + (size_t)n * c->M * c->S, c->M, c->S);
        for (size_t i = 0; i < MM; i++) L += c->w[(size_t)n * MM + i] * c->g[i];
    }
    return L;
}

static void test_gram(void **state) {
    (void)state;
    int N = 2, M = 7;
    size_t S = 15, nx = (size_t)N * M * S, ng = (size_t)N * M * M;
    float *x = rand_buf(nx, -1, 1), *g1 = alloc_f32(ng), *g2 = alloc_f32(ng);
    gram_forward(g1, x, N, M, S);
    gram_forward_naive(g2, x, N, M, S);
    expect_close("gram fast/naive", g1, g2, ng, NAIVE_TOL);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < M; j++)
                assert_true(g1[((size_t)n * M + i) * M + j] == g1[((size_t)n * M + j) * M + i]);
    // both backward paths: a general dg (two sgemm) and a symmetric one (one sgemm)
    for (int sym = 0; sym <= 1; sym++) {
        float *dg = rand_buf(ng, -1, 1), *dx1 = rand_buf(nx, -1, 1), *dx2 = alloc_f32(nx), *dx3 = alloc_f32(nx);
        memcpy(dx2, dx1, nx * sizeof(float));
        if (sym)
            for (int n = 0; n < N; n++)
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < i; j++)
                        dg[((size_t)n * M + i) * M + j] = dg[((size_t)n * M + j) * M + i];
        gram_backward(dx1, dg, x, N, M, S);
        gram_backward_naive(dx2, dg, x, N, M, S);
        expect_close(sym ? "gram_backward fast/naive, symmetric dg" : "gram_backward fast/naive, general dg",
                     dx1, dx2, nx, NAIVE_TOL);
        gram_backward(dx3, dg, x, N, M, S);
        GramCtx c = {N, M, S, to_f64(x, nx), to_f64(dg, ng), alloc_f64((size_t)M * M)};
        check_fd(sym ? "gram dx, symmetric dg" : "gram dx, general dg", dx3, c.x, nx, gram_loss, &c, 1);
        free(c.x); free(c.w); free(c.g); free(dg); free(dx1); free(dx2); free(dx3);
    }
    free(x); free(g1); free(g2);
}

typedef struct {
    int N, M;
    double *a, *b, *w;
} DistCtx;
static double dist_loss(void *p) {
    DistCtx *c = p;
    double L = 0;
    size_t MM = (size_t)c->M * c->M;
    for (int n = 0; n < c->N; n++)
        for (size_t i = 0; i < MM; i++) L += c->w[n] * fabs(c->a[n * MM + i] - c->b[n * MM + i]);
    return L;
}

static void test_gram_distance_gradcheck(void **state) {
    (void)state;
    int N = 3, M = 5;
    size_t ng = (size_t)N * M * M;
    float *gb = rand_buf(ng, -1, 1), *ga = rand_away(ng), *dd = rand_buf(N, -1, 1), *d = alloc_f32(N);
    for (size_t i = 0; i < ng; i++) ga[i] += gb[i];
    float *dga = alloc_f32(ng), *dgb = alloc_f32(ng);
    gram_l1_distance(d, ga, gb, N, M);
    for (int n = 0; n < N; n++) {
        double s = 0;
        for (size_t i = 0; i < (size_t)M * M; i++) s += fabs((double)ga[n * M * M + i] - gb[n * M * M + i]);
        assert_true(fabs(d[n] - s) <= 1e-6 * s);
    }
    gram_l1_distance_backward(dga, dgb, dd, ga, gb, N, M);
    DistCtx c = {N, M, to_f64(ga, ng), to_f64(gb, ng), to_f64(dd, N)};
    check_fd("gram distance dga", dga, c.a, ng, dist_loss, &c, 1);
    check_fd("gram distance dgb", dgb, c.b, ng, dist_loss, &c, 1);
    free(c.a); free(c.b); free(c.w); free(ga); free(gb); free(dd); free(d); free(dga); free(dgb);
}

typedef struct {
    int N;
    double *d2, *d1;
} RankCtx;
static double rank_loss_d(void *p) {
    RankCtx *c = p;
    double L = 0;
    // the definition, -log(e^-d2 / (e^-d2 + e^-d1)); fine for |d| of order 1
    for (int n = 0; n < c->N; n++) L += -log(exp(-c->d2[n]) / (exp(-c->d2[n]) + exp(-c->d1[n])));
    return L / c->N;
}

static void test_rank_loss_gradcheck(void **state) {
    (void)state;
    int N = 5;
    float *d2 = rand_buf(N, 0, 3), *d1 = rand_buf(N, 0, 3), *dd2 = alloc_f32(N), *dd1 = alloc_f32(N);
    RankCtx c = {N, to_f64(d2, N), to_f64(d1, N)};
    float L = rank_loss(d2, d1, N);
    double Lref = rank_loss_d(&c);
    printf("    rank loss %.7f, ref %.7f\n", L, Lref);
    assert_true(fabs(L - Lref) <= 1e-6 * Lref);
    rank_loss_backward(dd2, dd1, d2, d1, N, 0.6f);
    check_fd("rank loss dd2, scale 0.6", dd2, c.d2, N, rank_loss_d, &c, 0.6);
    check_fd("rank loss dd1, scale 0.6", dd1, c.d1, N, rank_loss_d, &c, 0.6);
    // stable for a huge gap, where the definition overflows
    float a = 1e4f, b = 0;
    assert_true(fabsf(rank_loss(&a, &b, 1) - 1e4f) < 1e-2f && rank_loss(&b, &a, 1) == 0);
    free(c.d2); free(c.d1); free(d2); free(d1); free(dd2); free(dd1);
}

// the whole ranking term in double: feats[l][k] double copies
typedef struct {
    RankShape s;
    RankForm form;
    double *f[2][3];
    double *g[3];
} RankFeatCtx;
static double rank_feat_loss(void *p) {
    RankFeatCtx *c = p;
    double L = 0;
    for (int n = 0; n < c->s.N; n++) {
        double d[3] = {0, 0, 0}; // d[1] = d(Y1,Y), d[2] = d(Y2,Y)
        for (int l = 0; l < 2; l++) {
            int M = c->s.C[l] * c->s.T[l];
            size_t S = (size_t)c->s.H[l] * c->s.W[l];
            for (int k = 0; k < 3; k++) gram_d(c->g[k], c->f[l][k] + (size_t)n * M * S, M, S);
            double den = 1; // bounded: the layer's distance over |g(Y)|_1 (+ eps)
            if (c->form == RANK_BOUNDED) {
                den = RANK_BOUNDED_EPS;
                for (size_t i = 0; i < (size_t)M * M; i++) den += fabs(c->g[0][i]);
            }
            for (int k = 1; k < 3; k++) {
                double a = 0;
                for (size_t i = 0; i < (size_t)M * M; i++) a += fabs(c->g[k][i] - c->g[0][i]);
                d[k] += a / den;
            }
        }
        double z = d[2] - d[1];
        L += (z > 0 ? z : 0) + log1p(exp(-fabs(z)));
    }
    return L / c->s.N;
}

// Smallest distance to a kink of |.|: |g(Yk)_ij - g(Y)_ij| over both layers, k = 1, 2,
// and for the bounded form also |g(Y)_ij| (its L1 norm is the divisor).
static double rank_feat_gap(RankFeatCtx *c) {
    double gap = INFINITY;
    for (int n = 0; n < c->s.N; n++)
        for (int l = 0; l < 2; l++) {
            int M = c->s.C[l] * c->s.T[l];
            size_t S = (size_t)c->s.H[l] * c->s.W[l];
            for (int k = 0; k < 3; k++) gram_d(c->g[k], c->f[l][k] + (size_t)n * M * S, M, S);
            for (size_t i = 0; i < (size_t)M * M; i++) {
                for (int k = 1; k < 3; k++) gap = fmin(gap, fabs(c->g[k][i] - c->g[0][i]));
                if (c->form == RANK_BOUNDED) gap = fmin(gap, fabs(c->g[0][i]));
            }
        }
    return gap;
}

// rank_loss_features of one form against central differences of the double loss above,
// every gradient row with scale -0.7 (as D2 plays it), one row left NULL.
static void rank_features_gradcheck(RankForm form) {
    RankShape s = {.N = 2, .C = {3, 4}, .T = {2, 1}, .H = {3, 2}, .W = {5, 3}};
    const float scale = -0.7f; // as D2 plays it: -lambda
    float *feat[2][3], *dfeat[2][3];
    RankFeatCtx c = {.s = s, .form = form};
    size_t numel[2], Mmax = 6;
    for (int k = 0; k < 3; k++) c.g[k] = alloc_f64(Mmax * Mmax);
    // FD moves one x by h, which moves a Gram entry by at most h (2 max|x| + h) / (M S)
    // <= 4 h / 24 (|x| < 1.9, M S >= 24). The kinks of |.| must be far beyond that (and
    // beyond float rounding of the entries, ~1e-7) or a sign flips: redraw until the
    // smallest distance to a kink is 100 times larger (deterministic: fixed seed).
    const double move = 4 * FD_H / 24;
    double gap = 0;
    for (int attempt = 0; attempt < 100 && !(gap > 100 * move); attempt++) {
        if (attempt)
            for (int l = 0; l < 2; l++)
                for (int k = 0; k < 3; k++) {
                    free(feat[l][k]); free(dfeat[l][k]); free(c.f[l][k]);
                }
        for (int l = 0; l < 2; l++) {
            numel[l] = (size_t)s.N * s.C[l] * s.T[l] * s.H[l] * s.W[l];
            feat[l][0] = rand_buf(numel[l], -1, 1);
            for (int k = 1; k < 3; k++) { // Y1, Y2 = Y + noise (0.9, 0.6) as the fixture
                feat[l][k] = rand_buf(numel[l], -1, 1);
                for (size_t i = 0; i < numel[l]; i++)
                    feat[l][k][i] = feat[l][0][i] + (k == 1 ? 0.9f : 0.6f) * feat[l][k][i];
            }
            for (int k = 0; k < 3; k++) {
                dfeat[l][k] = rand_buf(numel[l], -1, 1); // accumulates on top of this
                c.f[l][k] = to_f64(feat[l][k], numel[l]);
            }
        }
        gap = rank_feat_gap(&c);
    }
    printf("    %s form: smallest distance to a kink %.3e (FD moves entries by < %.1e)\n", rank_form_name(form), gap,
           move);
    assert_true(gap > 100 * move);

    float *before[2][3];
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 3; k++) {
            before[l][k] = alloc_f32(numel[l]);
            memcpy(before[l][k], dfeat[l][k], numel[l] * sizeof(float));
        }
    float *ws = alloc_f32(rank_loss_workspace_floats(&s));
    // every sample's six Grams (M = 6 and 4) and 6 coefficients, 64 rows of a gradient Gram per thread
    assert_int_equal(rank_loss_workspace_floats(&s), (size_t)s.N * (3 * (36 + 16) + 6) + CONV_MAX_THREADS * 64 * 6);
    float dist[4];
    const float *cfeat[2][3] = {{feat[0][0], feat[0][1], feat[0][2]}, {feat[1][0], feat[1][1], feat[1][2]}};
    float *grads[2][3] = {{dfeat[0][0], dfeat[0][1], dfeat[0][2]}, {dfeat[1][0], NULL, dfeat[1][2]}};
    float L = rank_loss_features(grads, dist, cfeat, &s, form, scale, ws);
    double Lref = rank_feat_loss(&c);
    printf("    rank_loss_features (%s) L %.7f ref %.7f, d(Y1,Y) %.4f %.4f, d(Y2,Y) %.4f %.4f\n", rank_form_name(form),
           L, Lref, dist[0], dist[1], dist[2], dist[3]);
    assert_true(fabs(L - Lref) <= 1e-5 * Lref);
    // the loss without gradients (dfeat NULL) is the same number
    assert_true(rank_loss_features(NULL, NULL, cfeat, &s, form, scale, ws) == L);
    const char *names[2][3] = {{"feat1 Y", "feat1 Y1", "feat1 Y2"}, {"feat3 Y", "feat3 Y1", "feat3 Y2"}};
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 3; k++) {
            if (!grads[l][k]) continue;
            for (size_t i = 0; i < numel[l]; i++) dfeat[l][k][i] -= before[l][k][i];
            char what[80];
            snprintf(what, sizeof what, "rank %s d%s, scale -0.7", rank_form_name(form), names[l][k]);
            check_fd(what, dfeat[l][k], c.f[l][k], numel[l], rank_feat_loss, &c, scale);
        }
    // the row that had no gradient pointer was left alone
    expect_close("untouched dfeat3 Y1 (NULL pointer)", dfeat[1][1], before[1][1], numel[1], 0);

    // D2 inflating its features (all three inputs by 3 in both layers, Grams by 9):
    // the bounded loss stays, the paper loss grows with the Gram distances.
    float *big[2][3];
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 3; k++) {
            big[l][k] = alloc_f32(numel[l]);
            for (size_t i = 0; i < numel[l]; i++) big[l][k][i] = 3.0f * feat[l][k][i];
        }
    const float *cbig[2][3] = {{big[0][0], big[0][1], big[0][2]}, {big[1][0], big[1][1], big[1][2]}};
    float dbig[4];
    float Lbig = rank_loss_features(NULL, dbig, cbig, &s, form, scale, ws);
    double dmax = 0;
    for (int i = 0; i < 4; i++) dmax = fmax(dmax, fabs((double)dbig[i] - dist[i]) / fabs((double)dist[i]));
    printf("    features x3: L %.7f (was %.7f), distances change by up to %.3g relative\n", Lbig, L, dmax);
    if (form == RANK_BOUNDED) {
        assert_true(fabs((double)Lbig - L) <= 1e-5 * L && dmax <= 1e-5);
    } else {
        assert_true(dmax > 7 && dmax < 9); // 9 d - d = 8 d
    }
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 3; k++) {
            free(feat[l][k]); free(dfeat[l][k]); free(before[l][k]); free(c.f[l][k]); free(big[l][k]);
        }
    for (int k = 0; k < 3; k++) free(c.g[k]);
    free(ws);
}

// dfeat[l][k] += scale dL_rank/dfeat[l][k] in double, from the definition: per sample,
// d_k = sum_l |g_l(Yk) - g_l(Y)|_1 / den_l, L = softplus(d2 - d1) / N, and through
// g = x x^T / (M S): dL/dx = (dL/dg + dL/dg^T) x / (M S).
static void rank_feat_grad_d(double *dx[2][3], const RankFeatCtx *c, double scale) {
    for (int n = 0; n < c->s.N; n++) {
        double d[3] = {0, 0, 0}, den[2], a[2][3];
        for (int pass = 0; pass < 2; pass++) // 0: the distances, 1: the gradients
            for (int l = 0; l < 2; l++) {
                const int M = c->s.C[l] * c->s.T[l];
                const size_t S = (size_t)c->s.H[l] * c->s.W[l], MM = (size_t)M * M;
                for (int k = 0; k < 3; k++) gram_d(c->g[k], c->f[l][k] + (size_t)n * M * S, M, S);
                if (pass == 0) {
                    den[l] = 1;
                    if (c->form == RANK_BOUNDED) {
                        den[l] = RANK_BOUNDED_EPS;
                        for (size_t i = 0; i < MM; i++) den[l] += fabs(c->g[0][i]);
                    }
                    for (int k = 1; k < 3; k++) {
                        a[l][k] = 0;
                        for (size_t i = 0; i < MM; i++) a[l][k] += fabs(c->g[k][i] - c->g[0][i]);
                        d[k] += a[l][k] / den[l];
                    }
                    continue;
                }
                const double z = d[2] - d[1], g2 = scale / (1 + exp(-z)) / c->s.N, gk[3] = {0, -g2, g2};
                double *dg = alloc_f64(MM);
                for (int k = 0; k < 3; k++) {
                    for (size_t i = 0; i < MM; i++) {
                        double v = 0;
                        for (int j = 1; j < 3; j++) {
                            const double sg = (c->g[j][i] > c->g[0][i]) - (c->g[j][i] < c->g[0][i]);
                            if (k == j) v += gk[j] / den[l] * sg;
                            if (k == 0) v -= gk[j] / den[l] * sg;
                        }
                        if (k == 0 && c->form == RANK_BOUNDED)
                            v -= (gk[1] * a[l][1] + gk[2] * a[l][2]) / (den[l] * den[l]) *
                                 ((c->g[0][i] > 0) - (c->g[0][i] < 0));
                        dg[i] = v;
                    }
                    const double *x = c->f[l][k] + (size_t)n * M * S;
                    double *out = dx[l][k] + (size_t)n * M * S;
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < M; j++) {
                            const double w = (dg[(size_t)i * M + j] + dg[(size_t)j * M + i]) / ((double)M * S);
                            for (size_t t = 0; t < S; t++) out[(size_t)i * S + t] += w * x[(size_t)j * S + t];
                        }
                }
                free(dg);
            }
    }
}

// Grams of 136 and 80 rows: the forward in its two units (h = 32 and 16 rows), the
// backward in blocks of 64 rows, the last short: the same bits on 1, 2 and 3 threads,
// and the gradients of the definition in double.
static void test_rank_loss_features_blocks(void **state) {
    (void)state;
    RankShape s = {.N = 2, .C = {17, 20}, .T = {8, 4}, .H = {3, 2}, .W = {5, 3}};
    RankFeatCtx c = {.s = s, .form = RANK_BOUNDED};
    float *feat[2][3], *out[3][2][3], dist[3][4], L[3];
    double *want[2][3];
    size_t numel[2];
    for (int k = 0; k < 3; k++) c.g[k] = alloc_f64(136 * 136);
    for (int l = 0; l < 2; l++) {
        numel[l] = (size_t)s.N * s.C[l] * s.T[l] * s.H[l] * s.W[l];
        feat[l][0] = rand_buf(numel[l], -1, 1);
        for (int k = 1; k < 3; k++) {
            feat[l][k] = rand_buf(numel[l], -1, 1);
            for (size_t i = 0; i < numel[l]; i++) feat[l][k][i] = feat[l][0][i] + (k == 1 ? 0.9f : 0.6f) * feat[l][k][i];
        }
        for (int k = 0; k < 3; k++) {
            c.f[l][k] = to_f64(feat[l][k], numel[l]);
            want[l][k] = alloc_f64(numel[l]);
        }
    }
    rank_feat_grad_d(want, &c, -0.7);
    float *ws = alloc_f32(rank_loss_workspace_floats(&s));
    const float *cfeat[2][3] = {{feat[0][0], feat[0][1], feat[0][2]}, {feat[1][0], feat[1][1], feat[1][2]}};
    const int saved = omp_get_max_threads();
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(t + 1);
        for (int l = 0; l < 2; l++)
            for (int k = 0; k < 3; k++) out[t][l][k] = alloc_f32(numel[l]);
        L[t] = rank_loss_features(out[t], dist[t], cfeat, &s, RANK_BOUNDED, -0.7f, ws);
    }
    omp_set_num_threads(saved);
    for (int t = 1; t < 3; t++) {
        assert_true(L[t] == L[0]);
        assert_memory_equal(dist[t], dist[0], sizeof dist[0]);
        for (int l = 0; l < 2; l++)
            for (int k = 0; k < 3; k++)
                if (memcmp(out[t][l][k], out[0][l][k], numel[l] * sizeof(float)) != 0)
                    fail_msg("rank gradient of layer %d input %d: %d threads differ from 1", l, k, t + 1);
    }
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 3; k++) {
            double worst = 0, top = 0;
            for (size_t i = 0; i < numel[l]; i++) {
                worst = fmax(worst, fabs(out[0][l][k][i] - want[l][k][i]));
                top = fmax(top, fabs(want[l][k][i]));
            }
            printf("    rank blocks: layer %d input %d: max |grad| %.3e, max error %.3e\n", l, k, top, worst);
            assert_true(top > 0 && worst <= 1e-4 * top);
        }
    for (int t = 0; t < 3; t++)
        for (int l = 0; l < 2; l++)
            for (int k = 0; k < 3; k++) free(out[t][l][k]);
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 3; k++) free(feat[l][k]), free(c.f[l][k]), free(want[l][k]);
    for (int k = 0; k < 3; k++) free(c.g[k]);
    free(ws);
}

static void test_rank_loss_features_gradcheck(void **state) {
    (void)state;
    rank_features_gradcheck(RANK_PAPER);
}

static void test_rank_loss_features_bounded_gradcheck(void **state) {
    (void)state;
    rank_features_gradcheck(RANK_BOUNDED);
    // the form's names, as the config spells them
    RankForm f;
    assert_int_equal(rank_form_parse("bounded", &f), 0);
    assert_int_equal(f, RANK_BOUNDED);
    assert_int_equal(rank_form_parse("paper", &f), 0);
    assert_int_equal(f, RANK_PAPER);
    assert_string_equal(rank_form_name(RANK_BOUNDED), "bounded");
    assert_string_equal(rank_form_name(RANK_PAPER), "paper");
    assert_int_equal(rank_form_parse("Bounded", &f), -1);
    assert_non_null(strstr(mdgan_errmsg(), "expected paper or bounded"));
}

// ---------------------------------------------------------------- PyTorch fixtures

// Tensors compared with bn3d_train: fixture name, our buffer, element count.
#define BN_TRAIN_COMPARE(X)                 \
    X(y, y, n)                              \
    X(dx, dx, n)                            \
    X(dweight, dgamma, C)                   \
    X(dbias, dbeta, C)                      \
    X(running_mean_out, rmean, C)           \
    X(running_var_out, rvar, C)
#define BN_EVAL_COMPARE(X) \
    X(y, y, n)             \
    X(dx, dx, n)           \
    X(dweight, dgamma, C)  \
    X(dbias, dbeta, C)

#define COMPARE_ONE(file, f, name, buf, count)                                \
    do {                                                                      \
        float *ref = fixture_f32(&f, #name, count);                           \
        expect_close(file " " #name, buf, ref, count, FIXTURE_TOL);           \
        double e = max_rel_err(buf, ref, count);                              \
        if (e > worst_err) worst_err = e;                                     \
        free(ref);                                                            \
    } while (0)

static void read_or_fail(const StFile *f, const char *name, float *dst, int ndim, const int64_t *shape) {
    if (st_read_f32(f, name, dst, ndim, shape) != 0) fail_msg("%s", mdgan_errmsg());
}

static void test_fixture_bn3d(void **state) {
    (void)state;
    const int N = 2, C = 3;
    const size_t S = 3 * 4 * 5, n = (size_t)N * C * S;
    const int64_t xs[5] = {2, 3, 3, 4, 5}, cs[1] = {3};
    for (int train = 1; train >= 0; train--) {
        StFile f;
        fixture_open(&f, train ? "bn3d_train.safetensors" : "bn3d_eval.safetensors");
        float *x = alloc_f32(n), *dy = alloc_f32(n), *y = alloc_f32(n), *dx = alloc_f32(n);
        float gamma[3], beta[3], rmean[3], rvar[3], mean[3], rstd[3], dgamma[3] = {0}, dbeta[3] = {0};
        read_or_fail(&f, "x", x, 5, xs);
        read_or_fail(&f, "dy", dy, 5, xs);
        read_or_fail(&f, "weight", gamma, 1, cs);
        read_or_fail(&f, "bias", beta, 1, cs);
        read_or_fail(&f, train ? "running_mean_in" : "running_mean", rmean, 1, cs);
        read_or_fail(&f, train ? "running_var_in" : "running_var", rvar, 1, cs);
        const char *meps = st_meta_get(&f, "eps"), *mmom = st_meta_get(&f, "momentum");
        float eps = meps ? strtof(meps, NULL) : 1e-5f, mom = mmom ? strtof(mmom, NULL) : 0.1f;
        assert_true(eps == 1e-5f && mom == 0.1f);
        if (train) {
            batchnorm_forward_train(y, mean, rstd, rmean, rvar, x, gamma, beta, N, C, S, mom, eps, NO_ACT);
            batchnorm_backward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, N, C, S);
#define X(name, buf, count) COMPARE_ONE("bn3d_train", f, name, buf, count);
            BN_TRAIN_COMPARE(X)
#undef X
        } else {
            batchnorm_forward_eval(y, x, gamma, beta, rmean, rvar, N, C, S, eps, NO_ACT);
            batchnorm_backward_eval(dx, dgamma, dbeta, dy, x, gamma, rmean, rvar, N, C, S, eps);
#define X(name, buf, count) COMPARE_ONE("bn3d_eval", f, name, buf, count);
            BN_EVAL_COMPARE(X)
#undef X
        }
        st_close(&f);
        free(x); free(dy); free(y); free(dx);
    }
}

// gram_rank: inputs feat{1,3}_{y,y1,y2}; loss.backward() of L_rank, so scale 1.
#define GRAM_RANK_COMPARE(X)             \
    X(d_y1, dist, N)                     \
    X(d_y2, dist + N, N)                 \
    X(loss, &loss, 1)                    \
    X(gram1_y, gram1, (size_t)N * M0 * M0) \
    X(dfeat1_y, df[0][0], n0)            \
    X(dfeat1_y1, df[0][1], n0)           \
    X(dfeat1_y2, df[0][2], n0)           \
    X(dfeat3_y, df[1][0], n1)            \
    X(dfeat3_y1, df[1][1], n1)           \
    X(dfeat3_y2, df[1][2], n1)

// One gram_rank fixture (gram_rank: the paper form; gram_rank_bounded: the same inputs
// with the bounded form, which its metadata "form" must say).
static void fixture_gram_rank(const char *fixture, RankForm form) {
    RankShape s = {.N = 2, .C = {3, 5}, .T = {4, 2}, .H = {5, 3}, .W = {6, 3}};
    const int N = s.N, M0 = s.C[0] * s.T[0];
    const int64_t sh[2][5] = {{2, 3, 4, 5, 6}, {2, 5, 2, 3, 3}};
    const size_t n0 = 2 * 3 * 4 * 5 * 6, n1 = 2 * 5 * 2 * 3 * 3;
    const char *fname[2][3] = {{"feat1_y", "feat1_y1", "feat1_y2"}, {"feat3_y", "feat3_y1", "feat3_y2"}};
    StFile f;
    fixture_open(&f, fixture);
    const char *mform = st_meta_get(&f, "form");
    if (form == RANK_BOUNDED && !(mform && !strcmp(mform, "bounded")))
        fail_msg("fixture %s does not say form=bounded", fixture);
    float *feat[2][3], *df[2][3];
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 3; k++) {
            feat[l][k] = alloc_f32(l ? n1 : n0);
            df[l][k] = alloc_f32(l ? n1 : n0);
            read_or_fail(&f, fname[l][k], feat[l][k], 5, sh[l]);
        }
    const float *cfeat[2][3] = {{feat[0][0], feat[0][1], feat[0][2]}, {feat[1][0], feat[1][1], feat[1][2]}};
    float *ws = alloc_f32(rank_loss_workspace_floats(&s)), *gram1 = alloc_f32((size_t)N * M0 * M0);
    float dist[4];
    float loss = rank_loss_features(df, dist, cfeat, &s, form, 1.0f, ws);
    gram_forward(gram1, feat[0][0], N, M0, (size_t)s.H[0] * s.W[0]);
#define X(name, buf, count)                                             \
    do {                                                                \
        char what[96];                                                  \
        snprintf(what, sizeof what, "%s %s", fixture, #name);           \
        float *ref = fixture_f32(&f, #name, count);                     \
        expect_close(what, buf, ref, count, FIXTURE_TOL);               \
        worst_err = fmax(worst_err, max_rel_err(buf, ref, count));      \
        free(ref);                                                      \
    } while (0);
    GRAM_RANK_COMPARE(X)
#undef X
    st_close(&f);
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 3; k++) {
            free(feat[l][k]); free(df[l][k]);
        }
    free(ws); free(gram1);
    printf("    worst fixture error so far %.3e\n", worst_err);
}

static void test_fixture_gram_rank(void **state) {
    (void)state;
    fixture_gram_rank("gram_rank.safetensors", RANK_PAPER);
}

static void test_fixture_gram_rank_bounded(void **state) {
    (void)state;
    fixture_gram_rank("gram_rank_bounded.safetensors", RANK_BOUNDED);
}

// ---------------------------------------------------------------- Adam

// The textbook formula in double over several steps, with gradients from 1e-9 to 10
// and zeros (where eps dominates the denominator).
static void test_adam_double_reference(void **state) {
    (void)state;
    const size_t n = 1001;
    const int steps = 5;
    AdamConfig c = ADAM_DEFAULTS;
    c.lr = 0.01; // parameter changes well above the float resolution of p
    float *p = alloc_f32(n), *m = alloc_f32(n), *v = alloc_f32(n), *g = alloc_f32(n);
    double *pd = alloc_f64(n), *md = alloc_f64(n), *vd = alloc_f64(n);
    float *pf = alloc_f32(n), *mf = alloc_f32(n), *vf = alloc_f32(n);
    for (int t = 1; t <= steps; t++) {
        for (size_t i = 0; i < n; i++) {
            double mag = pow(10.0, -9.0 + 10.0 * (double)i / (n - 1));
            g[i] = (i % 17 == 3 && t == 2) ? 0.0f : (float)(frand() * mag);
        }
        adam_step(p, g, m, v, n, t, &c);
        double bc1 = 1 - pow(c.beta1, t), bc2 = 1 - pow(c.beta2, t);
        for (size_t i = 0; i < n; i++) {
            md[i] = c.beta1 * md[i] + (1 - c.beta1) * g[i];
            vd[i] = c.beta2 * vd[i] + (1 - c.beta2) * (double)g[i] * g[i];
            pd[i] -= c.lr / bc1 * md[i] / (sqrt(vd[i]) / sqrt(bc2) + c.eps);
        }
    }
    for (size_t i = 0; i < n; i++) {
        pf[i] = (float)pd[i];
        mf[i] = (float)md[i];
        vf[i] = (float)vd[i];
    }
    // m and v: a few float roundings per step; p starts at 0 so its error is relative
    // to the steps themselves
    expect_close("adam m vs double", m, mf, n, 1e-6);
    expect_close("adam v vs double", v, vf, n, 1e-6);
    expect_close("adam p vs double", p, pf, n, 1e-6);
    free(p); free(m); free(v); free(g); free(pd); free(md); free(vd); free(pf); free(mf); free(vf);
}

// torch.optim.Adam(lr=2e-4, betas=(0.5, 0.999), eps=1e-8), 3 steps, torch 1.13 on this
// machine's AVX2 kernels (printed with float.hex()): the result must match bit for bit.
static void test_adam_matches_torch(void **state) {
    (void)state;
    float p[8] = {-0x1.f276a8p-2f, -0x1.35281ap-1f, -0x1.1dbecap-1f, 0x1.55c5bep-1f,
                  -0x1.944e5ep-3f, 0x1.f15a42p+0f, -0x1.66d5f2p+0f, -0x1.866de4p-1f};
    const float g[3][8] = {
        {0x1.751b5ep-19f, 0x1.4058bcp-10f, -0x1.139e8cp-5f, -0x1.ee1c5ep-1f, -0x1.4befbcp+0f,
         -0x1.3625ccp-26f, 0x1.28f502p-4f, -0x1.32d896p-2f},
        {0x0.0p+0f, -0x1.5bbf8cp-11f, 0x1.b29c8ep-6f, -0x1.90e7e6p+0f, -0x1.068218p+4f,
         -0x1.4467ccp-31f, 0x1.d287bap-4f, -0x1.9811b4p-1f},
        {-0x1.16397ap-20f, 0x1.5f83dcp-11f, -0x1.2326b6p-6f, 0x1.b9b9c8p-2f, 0x1.8d583cp+3f,
         0x1.150f04p-24f, -0x1.1d31e2p+0f, -0x1.4a27c0p+1f}};
    const float p_ref[8] = {-0x1.f2bd8ep-2f, -0x1.354c38p-1f, -0x1.1da2f4p-1f, 0x1.56039ep-1f,
                            -0x1.9392aap-3f, 0x1.f15d34p+0f, -0x1.66e4cap+0f, -0x1.861b0ep-1f};
    const float m_ref[8] = {-0x1.6eaf2cp-23f, 0x1.51d074p-12f, -0x1.a74f6ap-8f, -0x1.2f9218p-2f,
                            0x1.f1da98p+0f, 0x1.006840p-25f, -0x1.09f9d0p-1f, -0x1.86c0bcp+0f};
    const float v_ref[8] = {0x1.3c90c0p-47f, 0x1.4704dep-29f, 0x1.205cacp-19f, 0x1.d35938p-9f,
                            0x1.b2f7aep-2f, 0x1.4b124ep-58f, 0x1.4a1df0p-10f, 0x1.e378aep-8f};
    float m[8] = {0}, v[8] = {0};
    AdamConfig c = ADAM_DEFAULTS;
    for (int t = 0; t < 3; t++) adam_step(p, g[t], m, v, 8, t + 1, &c);
    expect_close("adam p vs torch (bit-exact)", p, p_ref, 8, 0);
    expect_close("adam exp_avg vs torch (bit-exact)", m, m_ref, 8, 0);
    expect_close("adam exp_avg_sq vs torch (bit-exact)", v, v_ref, 8, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn_train_gradcheck),
        cmocka_unit_test(test_bn_eval_gradcheck),
        cmocka_unit_test(test_bn_fast_matches_naive),
        cmocka_unit_test(test_bn_batch_stats_inference),
        cmocka_unit_test(test_bn_fused_activation),
        cmocka_unit_test(test_bn_fused_activation_backward),
        cmocka_unit_test(test_bn_lane_order),
        cmocka_unit_test(test_tanh),
        cmocka_unit_test(test_deterministic_across_threads),
        cmocka_unit_test(test_activation_gradcheck),
        cmocka_unit_test(test_bce_gradcheck),
        cmocka_unit_test(test_l1_gradcheck),
        cmocka_unit_test(test_gram),
        cmocka_unit_test(test_gram_distance_gradcheck),
        cmocka_unit_test(test_rank_loss_gradcheck),
        cmocka_unit_test(test_rank_loss_features_gradcheck),
        cmocka_unit_test(test_rank_loss_features_bounded_gradcheck),
        cmocka_unit_test(test_rank_loss_features_blocks),
        cmocka_unit_test(test_fixture_bn3d),
        cmocka_unit_test(test_fixture_gram_rank),
        cmocka_unit_test(test_fixture_gram_rank_bounded),
        cmocka_unit_test(test_adam_double_reference),
        cmocka_unit_test(test_adam_matches_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
