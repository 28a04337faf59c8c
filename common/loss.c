// Losses: BCE from logits, mean L1, Gram matrices, their L1 distances and the ranking
// loss of the Refine-Net (DESIGN.md section 3).
// Sums are double and in a fixed order (L1 splits into a fixed number of chunks, not
// into one chunk per thread), so the bits do not depend on the thread count.
// The Gram products (OpenBLAS's ssyrk and sgemm, our gemm_nn) run one-threaded, each
// from serial code or from one thread of the ranking term's units: never from inside
// another OpenMP region.
#include "mdgan/loss.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "mdgan/conv.h"
#include "mdgan/error.h"
#include "mdgan/gemm.h"

// softplus(z) = log(1 + e^z) without overflow
static double softplus(double z) { return (z > 0 ? z : 0) + log1p(exp(-fabs(z))); }

static double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

// ---------------------------------------------------------------- BCE and L1

float bce_logits_forward(const float *logits, float target, size_t n) {
    double t = target, sum = 0;
    for (size_t i = 0; i < n; i++) {
        double x = logits[i];
        sum += (x > 0 ? x : 0) - x * t + log1p(exp(-fabs(x)));
    }
    return (float)(sum / (double)n);
}

void bce_logits_backward(float *dlogits, const float *logits, float target, size_t n, float scale) {
    // L = mean_i [max(x,0) - x t + log1p(e^-|x|)]: dL/dx_i = (sigmoid(x_i) - t) / n
    for (size_t i = 0; i < n; i++)
        dlogits[i] += (float)((double)scale * (sigmoid(logits[i]) - target) / (double)n);
}

// A fixed number of partial sums, whatever the thread count.
#define L1_CHUNKS 64

float l1_forward(const float *a, const float *b, size_t n) {
    double part[L1_CHUNKS];
    const size_t chunk = (n + L1_CHUNKS - 1) / L1_CHUNKS;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int k = 0; k < L1_CHUNKS; k++) {
        size_t lo = (size_t)k * chunk, hi = lo + chunk < n ? lo + chunk : n;
        double s = 0;
        for (size_t i = lo; i < hi; i++) s += fabs((double)a[i] - (double)b[i]);
        part[k] = s;
    }
    double sum = 0;
    for (int k = 0; k < L1_CHUNKS; k++) sum += part[k];
    return (float)(sum / (double)n);
}

void l1_backward(float *da, const float *a, const float *b, size_t n, float scale) {
    // L = mean |a - b|: dL/da = sign(a - b) / n
    const float g = (float)((double)scale / (double)n);
#pragma omp parallel for simd schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) da[i] += a[i] > b[i] ? g : a[i] < b[i] ? -g : 0.0f;
}

// ---------------------------------------------------------------- Gram matrices

// One of the two units of g's upper half (g = alpha x x^T): unit 0 its first h rows
// (their diagonal block by ssyrk, the rest of the rows by sgemm), unit 1 the diagonal
// block of the other rows. h = 0.293 M (M (1 - 1/sqrt 2), whole panels of 8) gives the
// two about equal work: h^2/2 + h (M - h) = (M - h)^2 / 2.
static void gram_upper_half(float *g, const float *x, int M, size_t S, int unit) {
    const float alpha = (float)(1.0 / ((double)M * (double)S));
    const int h = (int)(0.2929 * M) / 8 * 8;
    if (unit == 0) {
        if (h == 0) return;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, h, (int)S, alpha, x, (int)S, 0.0f, g, M);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, h, M - h, (int)S, alpha, x, (int)S, x + (size_t)h * S,
                    (int)S, 0.0f, g + h, M);
    } else {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, M - h, (int)S, alpha, x + (size_t)h * S, (int)S, 0.0f,
                    g + (size_t)h * M + h, M);
    }
}

// The lower half of g from its upper half, so that g is exactly symmetric.
static void gram_mirror(float *g, int M) {
    for (int i = 1; i < M; i++)
        for (int j = 0; j < i; j++) g[(size_t)i * M + j] = g[(size_t)j * M + i];
}

void gram_forward(float *g, const float *x, int N, int M, size_t S) {
    const size_t MM = (size_t)M * M, MS = (size_t)M * S;
    for (int n = 0; n < N; n++) {
        // the ranking term's two units one after the other, so the same bits as there
        float *gn = g + (size_t)n * MM;
        for (int unit = 0; unit < 2; unit++) gram_upper_half(gn, x + (size_t)n * MS, M, S, unit);
        gram_mirror(gn, M);
    }
}

static int is_symmetric(const float *a, int M) {
    for (int i = 1; i < M; i++)
        for (int j = 0; j < i; j++)
            if (a[(size_t)i * M + j] != a[(size_t)j * M + i]) return 0;
    return 1;
}

void gram_backward(float *dx, const float *dg, const float *x, int N, int M, size_t S) {
    // forward: g = x x^T / (M S) => dL/dx = (dg + dg^T) x / (M S)
    const size_t MM = (size_t)M * M, MS = (size_t)M * S;
    const float alpha = (float)(1.0 / ((double)M * (double)S));
    for (int n = 0; n < N; n++) {
        const float *dgn = dg + (size_t)n * MM, *xn = x + (size_t)n * MS;
        float *dxn = dx + (size_t)n * MS;
        if (is_symmetric(dgn, M)) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, (int)S, M, 2.0f * alpha, dgn, M,
                        xn, (int)S, 1.0f, dxn, (int)S);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, (int)S, M, alpha, dgn, M, xn,
                        (int)S, 1.0f, dxn, (int)S);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, (int)S, M, alpha, dgn, M, xn,
                        (int)S, 1.0f, dxn, (int)S);
        }
    }
}

void gram_forward_naive(float *g, const float *x, int N, int M, size_t S) {
    for (int n = 0; n < N; n++)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < M; j++) {
                const float *xi = x + ((size_t)n * M + i) * S, *xj = x + ((size_t)n * M + j) * S;
                double s = 0;
                for (size_t k = 0; k < S; k++) s += (double)xi[k] * xj[k];
                g[((size_t)n * M + i) * M + j] = (float)(s / ((double)M * S));
            }
}

void gram_backward_naive(float *dx, const float *dg, const float *x, int N, int M, size_t S) {
    for (int n = 0; n < N; n++)
        for (int i = 0; i < M; i++)
            for (size_t k = 0; k < S; k++) {
                // dL/dx[i,k] = sum_j (dg[i,j] + dg[j,i]) x[j,k] / (M S)
                double s = 0;
                for (int j = 0; j < M; j++) {
                    double sym = (double)dg[((size_t)n * M + i) * M + j] + dg[((size_t)n * M + j) * M + i];
                    s += sym * x[((size_t)n * M + j) * S + k];
                }
                dx[((size_t)n * M + i) * S + k] += (float)(s / ((double)M * S));
            }
}

void gram_l1_distance(float *d, const float *ga, const float *gb, int N, int M) {
    const size_t MM = (size_t)M * M;
    for (int n = 0; n < N; n++) {
        const float *a = ga + (size_t)n * MM, *b = gb + (size_t)n * MM;
        double s = 0;
        for (size_t i = 0; i < MM; i++) s += fabs((double)a[i] - (double)b[i]);
        d[n] = (float)s;
    }
}

void gram_l1_distance_backward(float *dga, float *dgb, const float *dd, const float *ga,
                               const float *gb, int N, int M) {
    // d = sum |ga - gb|: dd/dga = sign(ga - gb) = -dd/dgb, sign(0) = 0
    const size_t MM = (size_t)M * M;
    for (int n = 0; n < N; n++) {
        const float *a = ga + (size_t)n * MM, *b = gb + (size_t)n * MM;
        const float g = dd[n];
        for (size_t i = 0; i < MM; i++) {
            float sg = a[i] > b[i] ? g : a[i] < b[i] ? -g : 0.0f;
            if (dga) dga[(size_t)n * MM + i] += sg;
            if (dgb) dgb[(size_t)n * MM + i] -= sg;
        }
    }
}

float rank_loss(const float *d2, const float *d1, int N) {
    double s = 0;
    for (int n = 0; n < N; n++) s += softplus((double)d2[n] - (double)d1[n]);
    return (float)(s / N);
}

void rank_loss_backward(float *dd2, float *dd1, const float *d2, const float *d1, int N,
                        float scale) {
    // L = mean softplus(d2 - d1): dL/dd2 = sigmoid(d2 - d1) / N = -dL/dd1
    for (int n = 0; n < N; n++) {
        float g = (float)((double)scale * sigmoid((double)d2[n] - (double)d1[n]) / N);
        if (dd2) dd2[n] += g;
        if (dd1) dd1[n] -= g;
    }
}

// ---------------------------------------------------------------- the whole D2 ranking term

static size_t rank_M(const RankShape *s, int l) { return (size_t)s->C[l] * s->T[l]; }
static size_t rank_S(const RankShape *s, int l) { return (size_t)s->H[l] * s->W[l]; }

// The Gram products are cut into units of one thread each, fixed by the shape (so the
// bits do not depend on the thread count): an item's forward in two units of about
// equal work, its backward in blocks of RANK_ROWS rows of dX. As whole items (six a
// sample, three of them 16 times the others' work at the paper's shape) two threads
// took 2 of the 3 large ones, and the generator's step, whose one large item is
// Y2's first layer, ran its backward on one thread.
enum { RANK_ROWS = 64 };

// Workspace layout: the Gram of every (sample, layer, input), then the rows of one
// gradient Gram per thread (CONV_MAX_THREADS x RANK_ROWS rows; only those of threads in
// use are touched), then the three gradient coefficients of every (sample, layer).
static size_t rank_grams_per_sample(const RankShape *s) {
    return 3 * (rank_M(s, 0) * rank_M(s, 0) + rank_M(s, 1) * rank_M(s, 1));
}
static size_t rank_mx(const RankShape *s) { return rank_M(s, 0) > rank_M(s, 1) ? rank_M(s, 0) : rank_M(s, 1); }
static size_t rank_dg_rows_floats(const RankShape *s) { return (size_t)RANK_ROWS * rank_mx(s); }
static float *rank_gram(const RankShape *s, float *ws, int n, int l, int k) {
    const size_t m0 = rank_M(s, 0) * rank_M(s, 0);
    return ws + (size_t)n * rank_grams_per_sample(s) + (l ? 3 * m0 : 0) + (size_t)k * rank_M(s, l) * rank_M(s, l);
}

size_t rank_loss_workspace_floats(const RankShape *s) {
    return (size_t)s->N * rank_grams_per_sample(s) + (size_t)CONV_MAX_THREADS * rank_dg_rows_floats(s) +
           (size_t)s->N * 6;
}

int rank_form_parse(const char *name, RankForm *form) {
    if (!strcmp(name, "paper")) *form = RANK_PAPER;
    else if (!strcmp(name, "bounded")) *form = RANK_BOUNDED;
    else {
        MDGAN_ERR("unknown ranking-loss form '%s': expected paper or bounded", name);
        return -1;
    }
    return 0;
}

const char *rank_form_name(RankForm form) { return form == RANK_BOUNDED ? "bounded" : "paper"; }

// sign(a - b) as 1, -1 or 0 without a branch: the signs of Gram differences are as good
// as random, and the mispredicted branches of `a > b ? c : a < b ? -c : 0` made the
// gradient Grams 3.7% of a Stage II step at the CPU shape on one thread (now 0.5%).
static inline float sign_diff(float a, float b) { return (float)(a > b) - (float)(a < b); }

// count entries of Y's gradient Gram, scaled: d = -c0 sign(g1 - gy) - c1 sign(g2 - gy)
// (+ c2 sign(gy) for the bounded form).
#define LOSS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
LOSS_CLONES static void rank_dgram_y(float *restrict dG, const float *restrict g1, const float *restrict g2,
                                     const float *restrict gy, const float *c, float scale, int bounded,
                                     size_t count) {
    const float c0 = c[0], c1 = c[1], c2 = bounded ? c[2] : 0.0f;
#pragma omp simd
    for (size_t e = 0; e < count; e++)
        dG[e] = scale *
                (-(c0 * sign_diff(g1[e], gy[e])) - c1 * sign_diff(g2[e], gy[e]) + c2 * sign_diff(gy[e], 0.0f));
}

// count entries of Yk's gradient Gram (k = 1, 2), scaled: d = ck sign(gk - gy).
LOSS_CLONES static void rank_dgram_k(float *restrict dG, const float *restrict gk, const float *restrict gy, float ck,
                                     float scale, size_t count) {
#pragma omp simd
    for (size_t e = 0; e < count; e++) dG[e] = scale * (ck * sign_diff(gk[e], gy[e]));
}

float rank_loss_features(float *dfeat[2][3], float *dist, const float *feat[2][3],
                         const RankShape *s, RankForm form, float scale, float *ws) {
    // Items (sample n, layer l, input k) are independent: the Gram matrices, then the
    // gradients, run on every thread in units cut from the items (see RANK_ROWS), each
    // with its own buffers and one-threaded products (the same calls on any thread
    // count, so the same bits); the scalar part between them runs over the samples in
    // order.
    const int N = s->N, items = N * 6;
    float *dG0 = ws + (size_t)N * rank_grams_per_sample(s),
          *coef = dG0 + (size_t)CONV_MAX_THREADS * rank_dg_rows_floats(s);
    int want_grad = 0;
    if (dfeat)
        for (int l = 0; l < 2; l++)
            for (int k = 0; k < 3; k++) want_grad |= dfeat[l][k] != NULL;

#pragma omp parallel num_threads(conv_threads())
    {
#pragma omp for schedule(dynamic)
        for (int u = 0; u < 2 * items; u++) {
            const int i = u / 2, n = i / 6, l = i / 3 % 2, k = i % 3, M = (int)rank_M(s, l);
            const size_t S = rank_S(s, l);
            gram_upper_half(rank_gram(s, ws, n, l, k), feat[l][k] + (size_t)n * M * S, M, S, u % 2);
        }
#pragma omp for schedule(static)
        for (int i = 0; i < items; i++)
            gram_mirror(rank_gram(s, ws, i / 6, i / 3 % 2, i % 3), (int)rank_M(s, i / 3 % 2));
    }

    double loss = 0;
    for (int n = 0; n < N; n++) {
        // Per layer: a = |g(Y1) - g(Y)|_1, b = |g(Y2) - g(Y)|_1, and the divisor den
        // (1 for the paper form, |g(Y)|_1 + eps for the bounded one);
        // d1 = d(Y1, Y) = sum_l a_l / den_l, d2 = d(Y2, Y) = sum_l b_l / den_l.
        double a[2], b[2], den[2], d1 = 0, d2 = 0;
        for (int l = 0; l < 2; l++) {
            const int M = (int)rank_M(s, l);
            const size_t MM = (size_t)M * M;
            const float *gy = rank_gram(s, ws, n, l, 0);
            float fa, fb;
            gram_l1_distance(&fa, rank_gram(s, ws, n, l, 1), gy, 1, M);
            gram_l1_distance(&fb, rank_gram(s, ws, n, l, 2), gy, 1, M);
            a[l] = fa, b[l] = fb, den[l] = 1;
            if (form == RANK_BOUNDED) {
                double norm = 0;
                for (size_t i = 0; i < MM; i++) norm += fabs((double)gy[i]);
                den[l] = norm + RANK_BOUNDED_EPS;
            }
            d1 += a[l] / den[l];
            d2 += b[l] / den[l];
        }
        if (dist) {
            dist[n] = (float)d1;
            dist[N + n] = (float)d2;
        }
        loss += softplus(d2 - d1);
        // dL/dd2 = g2, dL/dd1 = g1 = -g2 (one sample's share of the mean);
        // d_l(A, Y) = |g(A) - g(Y)|_1 / den_l: dd/dg(A) = sign(g(A) - g(Y)) / den_l, and
        // with the bounded form Y is in the divisor too: d/dg(Y) of (g1 a + g2 b) / den
        // = -(g1 a + g2 b) / den^2 * sign(g(Y)), sign(0) = 0
        const double g2 = (double)scale * sigmoid(d2 - d1) / N, g1 = -g2;
        for (int l = 0; l < 2; l++) {
            float *c = coef + ((size_t)n * 2 + l) * 3;
            c[0] = (float)(g1 / den[l]), c[1] = (float)(g2 / den[l]);
            c[2] = (float)(-(g1 * a[l] + g2 * b[l]) / (den[l] * den[l]));
        }
    }
    if (!want_grad) return (float)(loss / N);

    // dL/dx = (dG + dG^T) x / (M S) = 2 dG x / (M S): the Grams are exactly symmetric
    // (mirrored), so is dG, an elementwise function of them; a unit makes its rows of
    // dG, scaled, and adds their product with x into its rows of dX
    const int blocks = (int)((rank_mx(s) + RANK_ROWS - 1) / RANK_ROWS);
#pragma omp parallel for schedule(dynamic) num_threads(conv_threads())
    for (int u = 0; u < items * blocks; u++) {
        const int b = u / items, i = u % items, n = i / 6, l = i / 3 % 2, k = i % 3, M = (int)rank_M(s, l);
        const int r0 = b * RANK_ROWS, r1 = r0 + RANK_ROWS < M ? r0 + RANK_ROWS : M;
        if (!dfeat[l][k] || r0 >= M) continue;
        const size_t S = rank_S(s, l), off = (size_t)n * M * S, at = (size_t)r0 * M, count = (size_t)(r1 - r0) * M;
        const float *c = coef + ((size_t)n * 2 + l) * 3, *gy = rank_gram(s, ws, n, l, 0) + at;
        float *dG = dG0 + (size_t)omp_get_thread_num() * rank_dg_rows_floats(s);
        const float two_alpha = (float)(2.0 / ((double)M * (double)S));
        if (k == 0) // Y appears in both distances, as the second argument
            rank_dgram_y(dG, rank_gram(s, ws, n, l, 1) + at, rank_gram(s, ws, n, l, 2) + at, gy, c, two_alpha,
                         form == RANK_BOUNDED, count);
        else
            rank_dgram_k(dG, rank_gram(s, ws, n, l, k) + at, gy, c[k - 1], two_alpha, count);
        gemm_nn(r1 - r0, (int)S, M, dG, M, 0, feat[l][k] + off, (int)S, 1.0f, dfeat[l][k] + off + (size_t)r0 * S,
                (int)S);
    }
    return (float)(loss / N);
}
