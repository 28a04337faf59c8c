// Clip metrics: MSE, PSNR, SSIM, motion energy (see include/mdgan/metrics.h).
//
// SSIM follows skimage.metrics.structural_similarity with gaussian_weights=True,
// sigma=1.5, use_sample_covariance=False, data_range=1, step by step:
//   ux = G*x, uy = G*y, uxx = G*(x x), uyy = G*(y y), uxy = G*(x y)
//   vx = uxx - ux^2, vy = uyy - uy^2, vxy = uxy - ux uy          (population moments)
//   S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2)),
//   C1 = (0.01)^2, C2 = (0.03)^2, SSIM = mean of S over the image minus a 5-pixel border.
// G is scipy.ndimage.gaussian_filter(sigma 1.5, truncate 3.5, mode 'reflect'): an
// 11-tap separable kernel applied along H and then along W, borders mirrored with the
// edge pixel repeated (d c b a | a b c d | d c b a). The kernel is normalised and the
// taps summed in the order scipy uses, so the result matches to rounding. (Every
// window centred in the cropped region lies inside the image, so the border mode
// cannot change the mean; it is kept as scipy's for the full SSIM map.)
#include "mdgan/metrics.h"

#include <jansson.h>

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "mdgan/error.h"

#define SSIM_R 5   // radius: int(3.5 * 1.5 + 0.5)

// scipy _gaussian_kernel1d: phi = exp(-0.5 / sigma^2 * x^2) / sum. g[j] is the weight
// at offset +-j. The sum is numpy's for 11 elements: eight partial sums paired as a
// tree, then the last three added in turn.
static void gaussian_taps(double g[SSIM_R + 1]) {
    const double sigma2 = 1.5 * 1.5;
    double phi[2 * SSIM_R + 1];
    for (int i = 0; i <= 2 * SSIM_R; i++) {
        double x = i - SSIM_R;
        phi[i] = exp(-0.5 / sigma2 * (x * x));
    }
    double s = ((phi[0] + phi[1]) + (phi[2] + phi[3])) + ((phi[4] + phi[5]) + (phi[6] + phi[7]));
    for (int i = 8; i <= 2 * SSIM_R; i++) s += phi[i];
    for (int j = 0; j <= SSIM_R; j++) g[j] = phi[SSIM_R + j] / s;
}

// 'reflect' index for i in [-n, 2n-1]
static inline int reflect(int i, int n) {
    if (i < 0) return -i - 1;
    if (i >= n) return 2 * n - 1 - i;
    return i;
}

// out = G * in over (H, W); tmp holds H * W. Each output is
// in[0] g0 + sum_{j=R..1} (in[-j] + in[+j]) g_j, scipy's order for symmetric kernels.
static void gaussian2d(double *out, const double *in, double *tmp, int H, int W, const double *g) {
    // along H (axis 0)
    for (int h = 0; h < H; h++) {
        double *o = tmp + (size_t)h * W;
        const double *c = in + (size_t)h * W;
        for (int w = 0; w < W; w++) o[w] = c[w] * g[0];
        for (int j = SSIM_R; j >= 1; j--) {
            const double *a = in + (size_t)reflect(h - j, H) * W;
            const double *b = in + (size_t)reflect(h + j, H) * W;
            for (int w = 0; w < W; w++) o[w] += (a[w] + b[w]) * g[j];
        }
    }
    // along W (axis 1)
    for (int h = 0; h < H; h++) {
        const double *t = tmp + (size_t)h * W;
        double *o = out + (size_t)h * W;
        for (int w = 0; w < W; w++) {
            double s = t[w] * g[0];
            for (int j = SSIM_R; j >= 1; j--) s += (t[reflect(w - j, W)] + t[reflect(w + j, W)]) * g[j];
            o[w] = s;
        }
    }
}

double metrics_ssim_channel(const double *x, const double *y, int H, int W, double *work) {
    if (H < METRICS_MIN_SIZE || W < METRICS_MIN_SIZE) return NAN;
    const size_t HW = (size_t)H * (size_t)W;
    double *ux = work, *uy = ux + HW, *uxx = uy + HW, *uyy = uxx + HW, *uxy = uyy + HW;
    double *prod = uxy + HW, *tmp = prod + HW;
    double g[SSIM_R + 1];
    gaussian_taps(g);
    gaussian2d(ux, x, tmp, H, W, g);
    gaussian2d(uy, y, tmp, H, W, g);
    for (size_t i = 0; i < HW; i++) prod[i] = x[i] * x[i];
    gaussian2d(uxx, prod, tmp, H, W, g);
    for (size_t i = 0; i < HW; i++) prod[i] = y[i] * y[i];
    gaussian2d(uyy, prod, tmp, H, W, g);
    for (size_t i = 0; i < HW; i++) prod[i] = x[i] * y[i];
    gaussian2d(uxy, prod, tmp, H, W, g);

    const double C1 = (0.01 * 1.0) * (0.01 * 1.0), C2 = (0.03 * 1.0) * (0.03 * 1.0);
    double sum = 0;
    for (int h = SSIM_R; h < H - SSIM_R; h++)
        for (int w = SSIM_R; w < W - SSIM_R; w++) {
            size_t i = (size_t)h * W + w;
            double vx = uxx[i] - ux[i] * ux[i];
            double vy = uyy[i] - uy[i] * uy[i];
            double vxy = uxy[i] - ux[i] * uy[i];
            double A1 = 2 * ux[i] * uy[i] + C1, A2 = 2 * vxy + C2;
            double B1 = ux[i] * ux[i] + uy[i] * uy[i] + C1, B2 = vx + vy + C2;
            sum += (A1 * A2) / (B1 * B2);
        }
    return sum / ((double)(H - 2 * SSIM_R) * (double)(W - 2 * SSIM_R));
}

static double psnr_from_mse(double mse) {
    return mse <= 1e-10 ? METRICS_PSNR_MAX : 10.0 * log10(1.0 / mse);
}

double metrics_ssim_frame(const float *a, const float *b, int H, int W) {
    if (H < METRICS_MIN_SIZE || W < METRICS_MIN_SIZE) return NAN;
    const size_t HW = (size_t)H * (size_t)W;
    double *buf = malloc(9 * HW * sizeof(double));
    if (!buf) return NAN;
    double *x = buf, *y = x + HW, *work = y + HW;
    double sum = 0;
    for (int c = 0; c < 3; c++) {
        for (size_t i = 0; i < HW; i++) {
            x[i] = a[(size_t)c * HW + i];
            y[i] = b[(size_t)c * HW + i];
        }
        sum += metrics_ssim_channel(x, y, H, W, work);
    }
    free(buf);
    return sum / 3;
}

double metrics_psnr_frame(const float *a, const float *b, int H, int W) {
    const size_t n = 3 * (size_t)H * (size_t)W;
    double sse = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        sse += d * d;
    }
    return psnr_from_mse(sse / (double)n);
}

int metrics_clip_frames(ClipMetrics *m, double *frame_mse, double *frame_psnr, double *frame_ssim,
                        const float *pred, const float *real, int T, int H, int W) {
    memset(m, 0, sizeof *m);
    if (T < 2 || H < METRICS_MIN_SIZE || W < METRICS_MIN_SIZE) {
        MDGAN_ERR("metrics need a clip of at least 2 frames of %dx%d pixels (the SSIM window), got "
                  "T=%d H=%d W=%d", METRICS_MIN_SIZE, METRICS_MIN_SIZE, T, H, W);
        return -1;
    }
    const int F = T - 1;                       // evaluated frames t = 1 .. T-1
    const size_t HW = (size_t)H * (size_t)W;
    const size_t per_thread = 9 * HW;          // x, y and the SSIM workspace
    const int nth = omp_get_max_threads();
    double *work = malloc((size_t)nth * per_thread * sizeof(double));
    double *fr = malloc(3 * (size_t)F * sizeof(double));
    if (!work || !fr) {
        free(work);
        free(fr);
        MDGAN_ERR("metrics: out of memory for a %dx%dx%d clip", T, H, W);
        return -1;
    }
    double *f_mse = fr, *f_psnr = fr + F, *f_ssim = fr + 2 * F;

    // Frames are independent; each one's sums run in a fixed order, so the values do
    // not depend on which thread computes them.
#pragma omp parallel for schedule(static)
    for (int f = 0; f < F; f++) {
        const int t = f + 1;
        double *x = work + (size_t)omp_get_thread_num() * per_thread, *y = x + HW, *ws = y + HW;
        double sse = 0, ssim = 0;
        for (int c = 0; c < 3; c++) {
            const size_t off = ((size_t)c * T + t) * HW;
            for (size_t i = 0; i < HW; i++) {
                x[i] = ((double)pred[off + i] + 1.0) / 2.0;
                y[i] = ((double)real[off + i] + 1.0) / 2.0;
                double d = x[i] - y[i];
                sse += d * d;
            }
            ssim += metrics_ssim_channel(x, y, H, W, ws);
        }
        f_mse[f] = sse / (3.0 * (double)HW);
        f_psnr[f] = psnr_from_mse(f_mse[f]);
        f_ssim[f] = ssim / 3;
    }

    for (int f = 0; f < F; f++) {
        m->mse += f_mse[f];
        m->psnr += f_psnr[f];
        m->ssim += f_ssim[f];
    }
    m->mse /= F;
    m->psnr /= F;
    m->ssim /= F;
    if (frame_mse) memcpy(frame_mse, f_mse, (size_t)F * sizeof(double));
    if (frame_psnr) memcpy(frame_psnr, f_psnr, (size_t)F * sizeof(double));
    if (frame_ssim) memcpy(frame_ssim, f_ssim, (size_t)F * sizeof(double));
    free(work);
    free(fr);

    // Motion energy over the pairs (t, t+1), t = 1 .. T-2; in [0, 1] units
    // |(a+1)/2 - (b+1)/2| = |a - b| / 2.
    if (T >= 3) {
        double sp = 0, sr = 0;
        for (int c = 0; c < 3; c++)
            for (int t = 1; t + 1 < T; t++) {
                const size_t a = ((size_t)c * T + t) * HW, b = a + HW;
                for (size_t i = 0; i < HW; i++) {
                    sp += fabs((double)pred[b + i] - (double)pred[a + i]);
                    sr += fabs((double)real[b + i] - (double)real[a + i]);
                }
            }
        const double n = 2.0 * 3.0 * (double)(T - 2) * (double)HW;
        m->motion_pred = sp / n;
        m->motion_real = sr / n;
    }
    if (m->motion_real > 0) m->motion_ratio = fmin(m->motion_pred / m->motion_real, METRICS_RATIO_MAX);
    else m->motion_ratio = m->motion_pred > 0 ? METRICS_RATIO_MAX : 1.0;
    return 0;
}

int metrics_clip(ClipMetrics *m, const float *pred, const float *real, int T, int H, int W) {
    return metrics_clip_frames(m, NULL, NULL, NULL, pred, real, T, H, W);
}

void metrics_accumulate(ClipMetrics *sum, const ClipMetrics *m) {
    sum->mse += m->mse, sum->psnr += m->psnr, sum->ssim += m->ssim;
    sum->motion_pred += m->motion_pred, sum->motion_real += m->motion_real, sum->motion_ratio += m->motion_ratio;
}

void metrics_scale(ClipMetrics *m, double k) {
    m->mse *= k, m->psnr *= k, m->ssim *= k, m->motion_pred *= k, m->motion_real *= k, m->motion_ratio *= k;
}

void *metrics_to_json(const ClipMetrics *m) {
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}", "mse", m->mse, "psnr", m->psnr, "ssim", m->ssim,
                     "motion_pred", m->motion_pred, "motion_real", m->motion_real, "motion_ratio", m->motion_ratio);
}
