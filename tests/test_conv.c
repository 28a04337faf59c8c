// conv3d and conv_transpose3d: fast vs naive, central finite differences in double,
// and PyTorch fixtures (tests/fixtures/conv3d.safetensors, conv_transpose3d.safetensors).
#include "testutil.h"

#include <omp.h>

#include "mdgan/conv.h"
#include "mdgan/gemm.h"
#include "mdgan/ops.h"

static uint64_t rng_state = 88172645463325252ull;
static float frand(void) { // xorshift64, uniform in [-1, 1)
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static float *rand_buf(size_t n) {
    float *p = malloc(n * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}
static float *zero_buf(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

typedef struct { int N, C, K, T, H, W, k[3], s[3], p[3]; } Case;
// Odd sizes, per-axis strides and paddings, and the MD-GAN layer geometries.
static const Case cases[] = {
    {2, 3, 5, 5, 7, 6, {3, 4, 2}, {1, 2, 3}, {1, 1, 0}},
    {1, 2, 3, 7, 5, 9, {2, 3, 3}, {2, 1, 2}, {0, 2, 1}},
    {2, 4, 6, 4, 8, 8, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}},
    {2, 3, 4, 8, 16, 16, {3, 4, 4}, {1, 2, 2}, {1, 1, 1}},
    {3, 5, 2, 2, 4, 4, {2, 4, 4}, {1, 1, 1}, {0, 0, 0}},
    {1, 1, 1, 3, 3, 3, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))
// Shapes large enough that the kernels cut the column matrix into many tiles, split
// rows into groups and channels into groups (too large for the finite differences).
static const Case tiled_cases[] = {
    {2, 8, 6, 8, 40, 40, {3, 4, 4}, {1, 2, 2}, {1, 1, 1}},  // gather tiles of 26 lines, the last short; 16 row groups
    {1, 128, 2, 2, 4, 34, {2, 4, 4}, {1, 2, 2}, {0, 1, 1}}, // one line is larger than a tile
    {3, 7, 5, 6, 9, 70, {3, 3, 5}, {2, 1, 3}, {1, 0, 2}},   // uneven groups and tiles, odd strides
    {2, 24, 160, 4, 8, 8, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}}, // blocks of 64, 64, 32 output channels
    {4, 128, 128, 4, 4, 4, {4, 4, 4}, {1, 1, 1}, {0, 0, 0}}, // whole volume (G's last encoder layer)
    {3, 128, 1, 4, 4, 4, {4, 4, 4}, {1, 1, 1}, {0, 0, 0}},   // whole volume, one output channel (D's last)
    {2, 9, 11, 2, 3, 5, {2, 3, 5}, {2, 1, 3}, {0, 0, 0}},    // whole volume, odd sizes and strides
    {3, 64, 128, 8, 8, 8, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}},  // dW of 3 samples' 64 columns in one product
    {17, 16, 80, 8, 8, 8, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}},  // ... 16 samples a product, then the 17th alone
    {1, 64, 80, 4, 4, 8, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}},   // dW of one sample's 16 columns as outer products
    {1, 1, 2, 16, 64, 40, {2, 2, 2}, {1, 2, 2}, {0, 0, 0}},  // tiles of 409 lines copied 9 slices at a time
    // one tile a sample, cut by the thread count (gather_cut): 2 threads a tile of 128
    // columns each, 3 threads blocks of 48, 48, 40 channels; then 32 columns, too few to
    // cut, so 2 threads take blocks of 72 and 64 channels
    {1, 32, 136, 8, 16, 16, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}},
    {1, 16, 136, 4, 8, 8, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}},
    // output lines of whole vectors (oW 16 or 32): the column matrix read in place
    {2, 16, 16, 8, 32, 32, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}}, // MD-GAN's 16->32 layer, tiles of two output slices
    {2, 2, 20, 5, 12, 32, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}},  // stride 1; tiles of 37 lines cut slices anywhere
    {1, 3, 130, 4, 6, 48, {2, 3, 5}, {1, 2, 3}, {1, 1, 1}},  // stride 3 along W; blocks of 64, 64, 2 channels
    {2, 9, 20, 40, 10, 31, {2, 4, 4}, {1, 2, 1}, {0, 1, 2}}, // the adjoint in place: stride 1, tiles cut slices
    {1, 16, 24, 3, 4, 49, {2, 2, 6}, {1, 1, 3}, {0, 0, 1}},  // ... stride 3, two channels a group
    {2, 1, 4100, 2, 2, 3, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}}, // dW partials' rows wider than their summing buffer
};
// The first of tiled_cases that read the column matrix in place (see test_runs_same_bits).
enum { FIRST_RUNS_CASE = 13 };
#define NTILED ((int)(sizeof tiled_cases / sizeof tiled_cases[0]))

static void make_shape(ConvShape *s, const Case *c) {
    assert_int_equal(conv3d_shape(s, c->N, c->C, c->K, c->T, c->H, c->W, c->k, c->s, c->p), 0);
}

// Fast kernels against the naive loops, forward and backward, both directions.
static void check_fast_vs_naive(const Case *cs, int ncases, const char *table) {
    for (int ci = 0; ci < ncases; ci++) {
        ConvShape s;
        make_shape(&s, &cs[ci]);
        size_t nv = conv_volume_numel(&s), nc = conv_column_numel(&s), nw = conv_weight_numel(&s);
        float *x = rand_buf(nv), *w = rand_buf(nw), *dy = rand_buf(nc), *ws = zero_buf(conv_workspace_floats(&s));
        float *y1 = zero_buf(nc), *y2 = zero_buf(nc), *dx1 = zero_buf(nv), *dx2 = zero_buf(nv);
        float *dw1 = zero_buf(nw), *dw2 = zero_buf(nw);
        char what[64];
        conv3d_forward(y1, x, w, &s, ws);
        conv3d_forward_naive(y2, x, w, &s);
        snprintf(what, sizeof what, "%s case %d conv3d y", table, ci);
        expect_close(what, y1, y2, nc, 1e-5);
        conv3d_backward(dx1, dw1, dy, x, w, &s, ws);
        conv3d_backward_naive(dx2, dw2, dy, x, w, &s);
        snprintf(what, sizeof what, "%s case %d conv3d dx", table, ci);
        expect_close(what, dx1, dx2, nv, 1e-5);
        snprintf(what, sizeof what, "%s case %d conv3d dw", table, ci);
        expect_close(what, dw1, dw2, nw, 1e-5);
        // transposed: column side in, volume side out
        float *u = rand_buf(nc), *du = rand_buf(nv), *z1 = zero_buf(nv), *z2 = zero_buf(nv);
        float *dz1 = zero_buf(nc), *dz2 = zero_buf(nc);
        memset(dw1, 0, nw * sizeof(float));
        memset(dw2, 0, nw * sizeof(float));
        conv_transpose3d_forward(z1, u, w, &s, ws);
        conv_transpose3d_forward_naive(z2, u, w, &s);
        snprintf(what, sizeof what, "%s case %d convT y", table, ci);
        expect_close(what, z1, z2, nv, 1e-5);
        conv_transpose3d_backward(dz1, dw1, du, u, w, &s, ws);
        conv_transpose3d_backward_naive(dz2, dw2, du, u, w, &s);
        snprintf(what, sizeof what, "%s case %d convT dx", table, ci);
        expect_close(what, dz1, dz2, nc, 1e-5);
        snprintf(what, sizeof what, "%s case %d convT dw", table, ci);
        expect_close(what, dw1, dw2, nw, 1e-5);
        free(x); free(w); free(dy); free(ws); free(y1); free(y2); free(dx1); free(dx2); free(dw1); free(dw2);
        free(u); free(du); free(z1); free(z2); free(dz1); free(dz2);
    }
}

static void test_fast_matches_naive(void **state) {
    (void)state;
    check_fast_vs_naive(cases, NCASES, "small");
    check_fast_vs_naive(tiled_cases, NTILED, "tiled");
}

// Tiles and work items depend on the shape only (but for the forward's, whose columns and
// channels share no sum), so 1, 2 and 3 threads give the same bits.
static void test_same_bits_any_threads(void **state) {
    (void)state;
    int saved = omp_get_max_threads();
    for (int ci = 0; ci < NTILED; ci++) {
        ConvShape s;
        make_shape(&s, &tiled_cases[ci]);
        size_t nv = conv_volume_numel(&s), nc = conv_column_numel(&s), nw = conv_weight_numel(&s);
        float *x = rand_buf(nv), *w = rand_buf(nw), *dy = rand_buf(nc), *ws = zero_buf(conv_workspace_floats(&s));
        float *out[3][6];
        for (int t = 0; t < 3; t++) {
            omp_set_num_threads(t + 1);
            float *y = zero_buf(nc), *dx = zero_buf(nv), *dw = zero_buf(nw);
            float *z = zero_buf(nv), *dz = zero_buf(nc), *dwt = zero_buf(nw);
            conv3d_forward(y, x, w, &s, ws);
            conv3d_backward(dx, dw, dy, x, w, &s, ws);
            conv_transpose3d_forward(z, dy, w, &s, ws);
            conv_transpose3d_backward(dz, dwt, x, dy, w, &s, ws);
            float *o[6] = {y, dx, dw, z, dz, dwt};
            memcpy(out[t], o, sizeof o);
        }
        omp_set_num_threads(saved);
        const size_t n[6] = {nc, nv, nw, nv, nc, nw};
        for (int t = 1; t < 3; t++)
            for (int k = 0; k < 6; k++)
                if (memcmp(out[0][k], out[t][k], n[k] * sizeof(float)) != 0)
                    fail_msg("tiled case %d output %d: %d threads differ from 1 thread", ci, k, t + 1);
        for (int t = 0; t < 3; t++)
            for (int k = 0; k < 6; k++) free(out[t][k]);
        free(x); free(w); free(dy); free(ws);
    }
}

// Reading the column matrix in place (the runs) gives the bits of copying it out: the
// same values, the same products in the same order. Forward and weight gradient of
// both directions (the paths that gather columns).
static void test_runs_same_bits(void **state) {
    (void)state;
    if (!gemm_own()) skip(); // only our kernels read the column matrix in place
    for (int ci = FIRST_RUNS_CASE; ci < NTILED; ci++) {
        ConvShape s;
        make_shape(&s, &tiled_cases[ci]);
        size_t nv = conv_volume_numel(&s), nc = conv_column_numel(&s), nw = conv_weight_numel(&s);
        float *x = rand_buf(nv), *w = rand_buf(nw), *dy = rand_buf(nc), *ws = zero_buf(conv_workspace_floats(&s));
        float *out[2][4];
        for (int runs = 0; runs < 2; runs++) {
            conv_use_runs(runs);
            float *y = zero_buf(nc), *dw = zero_buf(nw), *dz = zero_buf(nc), *dwt = zero_buf(nw);
            conv3d_forward(y, x, w, &s, ws);
            conv3d_backward(NULL, dw, dy, x, w, &s, ws);
            conv_transpose3d_backward(dz, dwt, x, dy, w, &s, ws);
            float *o[4] = {y, dw, dz, dwt};
            memcpy(out[runs], o, sizeof o);
        }
        conv_use_runs(1);
        const size_t n[4] = {nc, nw, nc, nw};
        const char *name[4] = {"conv3d y", "conv3d dw", "convT dx", "convT dw"};
        for (int k = 0; k < 4; k++) {
            if (memcmp(out[0][k], out[1][k], n[k] * sizeof(float)) != 0)
                fail_msg("tiled case %d %s: in place differs from copied columns", ci, name[k]);
            free(out[0][k]), free(out[1][k]);
        }
        free(x); free(w); free(dy); free(ws);
    }
}

// The LeakyReLU applied inside the forward gives the bits of a separate lrelu_forward,
// on every tiled shape (copied columns, columns in place, whole volumes).
static void test_forward_lrelu_same_bits(void **state) {
    (void)state;
    for (int ci = 0; ci < NTILED; ci++) {
        ConvShape s;
        make_shape(&s, &tiled_cases[ci]);
        size_t nv = conv_volume_numel(&s), nc = conv_column_numel(&s), nw = conv_weight_numel(&s);
        float *x = rand_buf(nv), *w = rand_buf(nw), *ws = zero_buf(conv_workspace_floats(&s));
        float *y = zero_buf(nc), *z = zero_buf(nc);
        conv3d_forward(y, x, w, &s, ws);
        lrelu_forward(y, y, nc, 0.2f);
        conv3d_forward_lrelu(z, x, w, &s, ws, 0.2f);
        if (memcmp(y, z, nc * sizeof(float)) != 0) fail_msg("tiled case %d: fused LeakyReLU differs", ci);
        free(x); free(w); free(ws); free(y); free(z);
    }
}

// Backward accumulates: a second call adds the same gradient again.
static void test_backward_accumulates(void **state) {
    (void)state;
    ConvShape s;
    make_shape(&s, &cases[0]);
    size_t nv = conv_volume_numel(&s), nc = conv_column_numel(&s), nw = conv_weight_numel(&s);
    float *x = rand_buf(nv), *w = rand_buf(nw), *dy = rand_buf(nc), *ws = zero_buf(conv_workspace_floats(&s));
    float *dx = zero_buf(nv), *dw = zero_buf(nw), *dx2 = zero_buf(nv), *dw2 = zero_buf(nw);
    conv3d_backward(dx, dw, dy, x, w, &s, ws);
    conv3d_backward(dx2, dw2, dy, x, w, &s, ws);
    conv3d_backward(dx2, dw2, dy, x, w, &s, ws);
    for (size_t i = 0; i < nv; i++) dx[i] *= 2;
    for (size_t i = 0; i < nw; i++) dw[i] *= 2;
    expect_close("conv3d dx accumulates", dx2, dx, nv, 1e-6);
    expect_close("conv3d dw accumulates", dw2, dw, nw, 1e-6);
    free(x); free(w); free(dy); free(ws); free(dx); free(dw); free(dx2); free(dw2);
}

// ---- central finite differences, in double ----
// The loss is sum(R * f(x, w)) with f the convolution (or its transpose) evaluated in
// double from its definition, so the differences carry no float32 noise; the analytic
// gradients come from the fast float kernels.

static double loss_double(const ConvShape *s, int transpose, const double *x, const double *w, const float *R) {
    double L = 0;
    size_t nout = transpose ? conv_volume_numel(s) : conv_column_numel(s);
    double *y = calloc(nout, sizeof(double));
    assert_non_null(y);
    if (!transpose) { CONV_TAPS(s, vi, ci, wi, y[ci] += x[vi] * w[wi]); }
    else { CONV_TAPS(s, vi, ci, wi, y[vi] += x[ci] * w[wi]); }
    for (size_t i = 0; i < nout; i++) L += R[i] * y[i];
    free(y);
    return L;
}

static void gradcheck(int transpose) {
    const double h = 1e-3, tol = 1e-4; // linear in x and w: the difference quotient is exact up to rounding
    for (int ci = 0; ci < NCASES; ci++) {
        ConvShape s;
        make_shape(&s, &cases[ci]);
        size_t nin = transpose ? conv_column_numel(&s) : conv_volume_numel(&s);
        size_t nout = transpose ? conv_volume_numel(&s) : conv_column_numel(&s);
        size_t nw = conv_weight_numel(&s);
        float *x = rand_buf(nin), *w = rand_buf(nw), *R = rand_buf(nout), *ws = zero_buf(conv_workspace_floats(&s));
        float *dx = zero_buf(nin), *dw = zero_buf(nw);
        if (transpose) conv_transpose3d_backward(dx, dw, R, x, w, &s, ws);
        else conv3d_backward(dx, dw, R, x, w, &s, ws);
        double *xd = malloc(nin * sizeof(double)), *wd = malloc(nw * sizeof(double));
        assert_non_null(xd); assert_non_null(wd);
        for (size_t i = 0; i < nin; i++) xd[i] = x[i];
        for (size_t i = 0; i < nw; i++) wd[i] = w[i];
        // every weight, and up to 64 input elements spread over the tensor
        double maxerr = 0, maxg = 0;
        for (int pass = 0; pass < 2; pass++) {
            double *p = pass ? wd : xd;
            const float *g = pass ? dw : dx;
            size_t n = pass ? nw : nin, step = pass ? 1 : (n / 64 > 0 ? n / 64 : 1);
            for (size_t i = 0; i < n; i += step) {
                double keep = p[i];
                p[i] = keep + h;
                double lp = loss_double(&s, transpose, xd, wd, R);
                p[i] = keep - h;
                double lm = loss_double(&s, transpose, xd, wd, R);
                p[i] = keep;
                double fd = (lp - lm) / (2 * h);
                if (fabs(fd - g[i]) > maxerr) maxerr = fabs(fd - g[i]);
                if (fabs(fd) > maxg) maxg = fabs(fd);
            }
        }
        double rel = maxerr / (maxg > 1e-12 ? maxg : 1e-12);
        printf("    %s case %d: finite-difference max rel err %.3e (tol %.0e)\n",
               transpose ? "convT" : "conv3d", ci, rel, tol);
        if (!(rel <= tol)) fail_msg("gradient check failed: %.3e", rel);
        free(x); free(w); free(R); free(ws); free(dx); free(dw); free(xd); free(wd);
    }
}
static void test_gradcheck_conv3d(void **state) { (void)state; gradcheck(0); }
static void test_gradcheck_conv_transpose3d(void **state) { (void)state; gradcheck(1); }

// ---- PyTorch fixtures ----

static void parse3(const StFile *f, const char *key, int out[3]) {
    const char *v = st_meta_get(f, key);
    if (!v || sscanf(v, "%d,%d,%d", &out[0], &out[1], &out[2]) != 3) fail_msg("fixture %s: metadata %s", f->path, key);
}

static void fixture_case(const StFile *f, const char *c, int transpose) {
    char name[64];
    int stride[3], pad[3];
    snprintf(name, sizeof name, "%s.stride", c);
    parse3(f, name, stride);
    snprintf(name, sizeof name, "%s.padding", c);
    parse3(f, name, pad);
    snprintf(name, sizeof name, "%s.x", c);
    const StTensor *tx = st_get(f, name);
    snprintf(name, sizeof name, "%s.w", c);
    const StTensor *tw = st_get(f, name);
    if (!tx || !tw || tx->ndim != 5 || tw->ndim != 5) fail_msg("fixture %s case %s: x or w missing", f->path, c);
    const int k[3] = {(int)tw->shape[2], (int)tw->shape[3], (int)tw->shape[4]};
    ConvShape s;
    if (transpose)
        assert_int_equal(conv_transpose3d_shape(&s, (int)tx->shape[0], (int)tw->shape[0], (int)tw->shape[1],
                                                (int)tx->shape[2], (int)tx->shape[3], (int)tx->shape[4], k, stride, pad), 0);
    else
        assert_int_equal(conv3d_shape(&s, (int)tx->shape[0], (int)tx->shape[1], (int)tw->shape[0], (int)tx->shape[2],
                                      (int)tx->shape[3], (int)tx->shape[4], k, stride, pad), 0);
    size_t nin = transpose ? conv_column_numel(&s) : conv_volume_numel(&s);
    size_t nout = transpose ? conv_volume_numel(&s) : conv_column_numel(&s);
    size_t nw = conv_weight_numel(&s);
    // One table names every tensor once: fixture name, element count, where ours is.
    float *x, *w, *dy, *ws = zero_buf(conv_workspace_floats(&s));
    float *y = zero_buf(nout), *dx = zero_buf(nin), *dw = zero_buf(nw);
    snprintf(name, sizeof name, "%s.x", c); x = fixture_f32(f, name, nin);
    snprintf(name, sizeof name, "%s.w", c); w = fixture_f32(f, name, nw);
    snprintf(name, sizeof name, "%s.dy", c); dy = fixture_f32(f, name, nout);
    if (transpose) {
        conv_transpose3d_forward(y, x, w, &s, ws);
        conv_transpose3d_backward(dx, dw, dy, x, w, &s, ws);
    } else {
        conv3d_forward(y, x, w, &s, ws);
        conv3d_backward(dx, dw, dy, x, w, &s, ws);
    }
#define CONV_FIXTURE_TENSORS(X) X(y, nout) X(dx, nin) X(dw, nw)
#define COMPARE(T, NUMEL)                                                    \
    {                                                                        \
        snprintf(name, sizeof name, "%s.%s", c, #T);                         \
        float *ref = fixture_f32(f, name, NUMEL);                            \
        char what[96];                                                       \
        snprintf(what, sizeof what, "%s %s", transpose ? "convT" : "conv3d", name); \
        expect_close(what, T, ref, NUMEL, 1e-4);                             \
        free(ref);                                                           \
    }
    CONV_FIXTURE_TENSORS(COMPARE)
#undef COMPARE
    free(x); free(w); free(dy); free(ws); free(y); free(dx); free(dw);
}

static void test_pytorch_conv3d(void **state) {
    (void)state;
    StFile f;
    fixture_open(&f, "conv3d.safetensors");
    fixture_case(&f, "a", 0);
    fixture_case(&f, "b", 0);
    st_close(&f);
}

static void test_pytorch_conv_transpose3d(void **state) {
    (void)state;
    StFile f;
    fixture_open(&f, "conv_transpose3d.safetensors");
    fixture_case(&f, "a", 1);
    fixture_case(&f, "b", 1);
    fixture_case(&f, "c", 1);
    st_close(&f);
}

static void test_bad_shapes(void **state) {
    (void)state;
    ConvShape s;
    const int k4[3] = {4, 4, 4}, s2[3] = {2, 2, 2}, p1[3] = {1, 1, 1}, p0[3] = {0, 0, 0}, s0[3] = {1, 0, 1};
    assert_int_equal(conv3d_shape(&s, 1, 3, 4, 1, 1, 1, k4, s2, p0), -1); // kernel larger than input
    assert_non_null(strstr(mdgan_errmsg(), "empty"));
    assert_int_equal(conv3d_shape(&s, 1, 3, 4, 8, 8, 8, k4, s0, p1), -1);
    assert_non_null(strstr(mdgan_errmsg(), "stride"));
    assert_int_equal(conv3d_shape(&s, 0, 3, 4, 8, 8, 8, k4, s2, p1), -1);
    const int p4[3] = {4, 0, 0};
    assert_int_equal(conv3d_shape(&s, 1, 3, 4, 8, 8, 8, k4, s2, p4), -1);
    assert_non_null(strstr(mdgan_errmsg(), "padding"));
    assert_int_equal(conv_transpose3d_shape(&s, 1, 4, 3, 4, 4, 4, k4, s2, p1), 0);
    assert_int_equal(s.T, 8);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_matches_naive),
        cmocka_unit_test(test_same_bits_any_threads),
        cmocka_unit_test(test_runs_same_bits),
        cmocka_unit_test(test_forward_lrelu_same_bits),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_gradcheck_conv3d),
        cmocka_unit_test(test_gradcheck_conv_transpose3d),
        cmocka_unit_test(test_pytorch_conv3d),
        cmocka_unit_test(test_pytorch_conv_transpose3d),
        cmocka_unit_test(test_bad_shapes),
    };
    return cmocka_run_group_tests_name("conv", tests, NULL, NULL);
}
