// Metrics against scikit-image (tests/fixtures/metrics.safetensors, written by
// tests/make_metric_fixtures.py) and simple properties.
#include "testutil.h"

#include <omp.h>

#include "mdgan/metrics.h"

// Absolute tolerance against skimage for MSE, PSNR (dB) and SSIM; the C code works in
// double like skimage does, so the real differences are ~1e-13.
#define TOL_SKIMAGE 1e-4

static double *fixture_f64(const StFile *f, const char *name, size_t numel) {
    const StTensor *t = st_get(f, name);
    if (!t) fail_msg("fixture %s has no tensor %s", f->path, name);
    if (t->dtype != ST_F64 || st_numel(t) != numel)
        fail_msg("fixture %s: tensor %s is not F64 with %zu elements", f->path, name, numel);
    double *p = malloc(numel * sizeof(double));
    assert_non_null(p);
    memcpy(p, t->data, numel * sizeof(double));
    return p;
}

static void track(double *maxerr, double got, double ref) {
    double e = fabs(got - ref);
    if (!(e <= *maxerr)) *maxerr = e;   // NaN sticks
}

static void test_vs_skimage(void **state) {
    (void)state;
    StFile f;
    fixture_open(&f, "metrics.safetensors");
    const char *ns = st_meta_get(&f, "nclips");
    assert_non_null(ns);
    int nclips = atoi(ns);
    assert_true(nclips >= 3);
    // per quantity: 0 mse, 1 psnr, 2 ssim, 3 motion_pred, 4 motion_real, 5 ratio,
    // 6 frame mse, 7 frame psnr, 8 frame ssim, 9 ssim/psnr through the float frame API
    static const char *const what[] = {"clip mse", "clip psnr", "clip ssim", "motion_pred",
                                       "motion_real", "motion_ratio", "frame mse", "frame psnr",
                                       "frame ssim", "float frame API (ssim, psnr)"};
    double err[10] = {0};
    for (int k = 0; k < nclips; k++) {
        char name[64];
        snprintf(name, sizeof name, "clip%d.pred", k);
        const StTensor *t = st_get(&f, name);
        assert_non_null(t);
        assert_int_equal(t->ndim, 4);
        assert_int_equal(t->shape[0], 3);
        int T = (int)t->shape[1], H = (int)t->shape[2], W = (int)t->shape[3];
        size_t n = 3 * (size_t)T * H * W, HW = (size_t)H * W;
        float *pred = fixture_f32(&f, name, n);
        snprintf(name, sizeof name, "clip%d.real", k);
        float *real = fixture_f32(&f, name, n);
        double *ref[4];
        static const char *const refname[] = {"frame_mse", "frame_psnr", "frame_ssim", "clip"};
        for (int r = 0; r < 4; r++) {
            snprintf(name, sizeof name, "clip%d.%s", k, refname[r]);
            ref[r] = fixture_f64(&f, name, r == 3 ? 6 : (size_t)(T - 1));
        }
        ClipMetrics m;
        double *fm = malloc(3 * (size_t)(T - 1) * sizeof(double));
        assert_int_equal(metrics_clip_frames(&m, fm, fm + (T - 1), fm + 2 * (T - 1), pred, real, T, H, W), 0);
        const double got[6] = {m.mse, m.psnr, m.ssim, m.motion_pred, m.motion_real, m.motion_ratio};
        for (int q = 0; q < 6; q++) track(&err[q], got[q], ref[3][q]);
        for (int i = 0; i < T - 1; i++)
            for (int r = 0; r < 3; r++) track(&err[6 + r], fm[r * (T - 1) + i], ref[r][i]);
        ClipMetrics m2;
        assert_int_equal(metrics_clip(&m2, pred, real, T, H, W), 0);
        assert_memory_equal(&m, &m2, sizeof m);
        printf("    clip%d (3,%d,%d,%d): ssim %.6f psnr %.4f mse %.6f motion ratio %.4f\n", k, T, H, W,
               m.ssim, m.psnr, m.mse, m.motion_ratio);

        // The float (3, H, W) frame API, frames converted to [0, 1] in float.
        float *a = malloc(3 * HW * sizeof(float)), *b = malloc(3 * HW * sizeof(float));
        for (int i = 0; i < T - 1; i++) {
            for (int c = 0; c < 3; c++)
                for (size_t j = 0; j < HW; j++) {
                    a[c * HW + j] = (pred[((size_t)c * T + i + 1) * HW + j] + 1.0f) / 2.0f;
                    b[c * HW + j] = (real[((size_t)c * T + i + 1) * HW + j] + 1.0f) / 2.0f;
                }
            track(&err[9], metrics_ssim_frame(a, b, H, W), ref[2][i]);
            track(&err[9], metrics_psnr_frame(a, b, H, W), ref[1][i]);
        }
        free(a);
        free(b);
        free(fm);
        for (int r = 0; r < 4; r++) free(ref[r]);
        free(pred);
        free(real);
    }
    st_close(&f);
    int bad = 0;
    for (int q = 0; q < 10; q++) {
        printf("    %-30s max abs err vs skimage %.3e (tol %.0e)\n", what[q], err[q], TOL_SKIMAGE);
        bad |= !(err[q] <= TOL_SKIMAGE);
    }
    if (bad) fail_msg("a metric differs from skimage by more than %.0e", TOL_SKIMAGE);
}

// ---------------------------------------------------------------------------
// Properties

// A smooth moving clip in [-0.5, 0.5] (so that offsets stay inside [-1, 1]).
static float *test_clip(int T, int H, int W, float phase) {
    float *x = malloc(3 * (size_t)T * H * W * sizeof(float));
    assert_non_null(x);
    for (int c = 0; c < 3; c++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++)
                    x[(((size_t)c * T + t) * H + h) * W + w] =
                        0.5f * sinf(0.3f * (float)(w + 2 * t) + 0.2f * (float)h * (float)(c + 1) + phase);
    return x;
}

static void test_identical_and_offset(void **state) {
    (void)state;
    const int T = 6, H = 16, W = 20;
    const size_t n = 3 * (size_t)T * H * W;
    float *real = test_clip(T, H, W, 0.0f);
    ClipMetrics m;
    assert_int_equal(metrics_clip(&m, real, real, T, H, W), 0);
    printf("    identical: ssim %.17g mse %g psnr %g ratio %g\n", m.ssim, m.mse, m.psnr, m.motion_ratio);
    assert_true(fabs(m.ssim - 1.0) < 1e-12);
    assert_true(m.mse == 0.0);
    assert_true(m.psnr == METRICS_PSNR_MAX);
    assert_true(m.motion_ratio == 1.0 && m.motion_pred == m.motion_real && m.motion_real > 0);

    // pred = real + 0.2 in [-1, 1] units = +0.1 in [0, 1]: MSE 0.01, PSNR 20 dB, same motion.
    float *pred = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) pred[i] = real[i] + 0.2f;
    assert_int_equal(metrics_clip(&m, pred, real, T, H, W), 0);
    printf("    offset 0.1: mse %.9f psnr %.6f ssim %.6f ratio %.9f\n", m.mse, m.psnr, m.ssim, m.motion_ratio);
    assert_true(fabs(m.mse - 0.01) < 1e-7);
    assert_true(fabs(m.psnr - 20.0) < 1e-4);
    assert_true(m.ssim < 1.0 && m.ssim > 0.5);
    assert_true(fabs(m.motion_ratio - 1.0) < 1e-5);
    free(pred);
    free(real);
}

static void test_motion(void **state) {
    (void)state;
    const int T = 5, H = 12, W = 12;
    const size_t HW = (size_t)H * W, n = 3 * (size_t)T * HW;
    float *real = test_clip(T, H, W, 0.3f);
    float *pred = malloc(n * sizeof(float)), *still = malloc(n * sizeof(float));
    // a static prediction: frame 0 everywhere
    for (int c = 0; c < 3; c++)
        for (int t = 0; t < T; t++)
            memcpy(pred + ((size_t)c * T + t) * HW, real + (size_t)c * T * HW, HW * sizeof(float));
    ClipMetrics m;
    assert_int_equal(metrics_clip(&m, pred, real, T, H, W), 0);
    printf("    static prediction: motion %g / %g, ratio %g\n", m.motion_pred, m.motion_real, m.motion_ratio);
    assert_true(m.motion_pred == 0.0 && m.motion_real > 0 && m.motion_ratio == 0.0);
    // both static: ratio 1; a static truth against a moving prediction: the cap
    memcpy(still, pred, n * sizeof(float));
    assert_int_equal(metrics_clip(&m, pred, still, T, H, W), 0);
    assert_true(m.motion_real == 0.0 && m.motion_ratio == 1.0);
    assert_int_equal(metrics_clip(&m, real, still, T, H, W), 0);
    assert_true(m.motion_ratio == METRICS_RATIO_MAX);
    // motion by hand: only frame 3 differs from frame 2, by +0.4 at one pixel of one
    // channel -> |dY| = 0.2 in [0, 1] units, counted in the pairs (2,3) and (3,4)
    memcpy(pred, still, n * sizeof(float));
    pred[((size_t)1 * T + 3) * HW + 7] += 0.4f;
    assert_int_equal(metrics_clip(&m, pred, still, T, H, W), 0);
    double want = 2 * 0.2 / (3.0 * (T - 2) * HW);
    printf("    one changed pixel: motion %.12g, by hand %.12g\n", m.motion_pred, want);
    assert_true(fabs(m.motion_pred - want) < 1e-9);
    // T = 2: one evaluated frame, no pair
    assert_int_equal(metrics_clip(&m, real, still, 2, H, W), 0);
    assert_true(m.motion_pred == 0.0 && m.motion_real == 0.0 && m.motion_ratio == 1.0);
    free(pred);
    free(still);
    free(real);
}

// The separable filter against a direct 11x11 window with mirrored indices.
static double ssim_naive(const double *x, const double *y, int H, int W) {
    double g[11], s = 0;
    for (int i = 0; i < 11; i++) s += g[i] = exp(-0.5 * (i - 5) * (i - 5) / 2.25);
    for (int i = 0; i < 11; i++) g[i] /= s;
    double sum = 0;
    for (int h = 5; h < H - 5; h++)
        for (int w = 5; w < W - 5; w++) {
            double ux = 0, uy = 0, uxx = 0, uyy = 0, uxy = 0;
            for (int i = -5; i <= 5; i++)
                for (int j = -5; j <= 5; j++) {
                    int hh = h + i, ww = w + j;   // inside the image for the cropped centre
                    double wt = g[i + 5] * g[j + 5], a = x[hh * W + ww], b = y[hh * W + ww];
                    ux += wt * a; uy += wt * b; uxx += wt * a * a; uyy += wt * b * b; uxy += wt * a * b;
                }
            double vx = uxx - ux * ux, vy = uyy - uy * uy, vxy = uxy - ux * uy;
            const double C1 = 1e-4, C2 = 9e-4;
            sum += (2 * ux * uy + C1) * (2 * vxy + C2) / ((ux * ux + uy * uy + C1) * (vx + vy + C2));
        }
    return sum / ((double)(H - 10) * (W - 10));
}

static void test_ssim_naive(void **state) {
    (void)state;
    const int H = 19, W = 23;
    double *x = malloc((size_t)H * W * sizeof(double)), *y = malloc((size_t)H * W * sizeof(double));
    double *work = malloc(7 * (size_t)H * W * sizeof(double));
    for (int i = 0; i < H * W; i++) {
        x[i] = 0.5 + 0.4 * sin(0.37 * i) * cos(0.11 * i);
        y[i] = x[i] + 0.1 * sin(1.3 * i);
    }
    // Only the cropped centre is averaged and every window of it lies inside the image,
    // so the border mode cannot matter here; the fixture test covers the borders.
    double fast = metrics_ssim_channel(x, y, H, W, work), slow = ssim_naive(x, y, H, W);
    printf("    ssim separable %.15f direct %.15f diff %.2e (tol 1e-12)\n", fast, slow, fabs(fast - slow));
    assert_true(fabs(fast - slow) < 1e-12);
    free(x);
    free(y);
    free(work);
}

static void test_threads_bitwise(void **state) {
    (void)state;
    const int T = 9, H = 16, W = 16;
    float *real = test_clip(T, H, W, 0.0f), *pred = test_clip(T, H, W, 0.4f);
    ClipMetrics m1, m2;
    double f1[3 * 8], f2[3 * 8];
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    assert_int_equal(metrics_clip_frames(&m1, f1, f1 + 8, f1 + 16, pred, real, T, H, W), 0);
    omp_set_num_threads(3);
    assert_int_equal(metrics_clip_frames(&m2, f2, f2 + 8, f2 + 16, pred, real, T, H, W), 0);
    omp_set_num_threads(saved);
    assert_memory_equal(&m1, &m2, sizeof m1);
    assert_memory_equal(f1, f2, sizeof f1);
    free(real);
    free(pred);
}

static void test_bad_shapes(void **state) {
    (void)state;
    float *x = test_clip(4, 12, 12, 0.0f);
    ClipMetrics m;
    static const int shapes[][3] = {{1, 12, 12}, {4, 10, 12}, {4, 12, 10}, {0, 12, 12}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        mdgan_errclear();
        int rc = metrics_clip(&m, x, x, shapes[i][0], shapes[i][1], shapes[i][2]);
        printf("    error: %s\n", mdgan_errmsg());
        assert_int_equal(rc, -1);
        char want[64];
        snprintf(want, sizeof want, "T=%d H=%d W=%d", shapes[i][0], shapes[i][1], shapes[i][2]);
        assert_non_null(strstr(mdgan_errmsg(), want));
    }
    assert_true(isnan(metrics_ssim_frame(x, x, 10, 12)));
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_skimage),
        cmocka_unit_test(test_identical_and_offset),
        cmocka_unit_test(test_motion),
        cmocka_unit_test(test_ssim_naive),
        cmocka_unit_test(test_threads_bitwise),
        cmocka_unit_test(test_bad_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
