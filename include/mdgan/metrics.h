#ifndef MDGAN_METRICS_H
#define MDGAN_METRICS_H
// Video quality metrics of a predicted clip against the real one (DESIGN.md section 6).
//
// Clips are (3, T, H, W) float in [-1, 1] (the library's image range) and are mapped to
// [0, 1] as (v + 1) / 2, in double. Frame 0 is the given photograph, so every metric
// runs over the predicted frames t = 1 .. T-1 (frames 2..T in the paper's numbering):
//   mse          mean over those frames of MSE_t, MSE_t = mean over (3, H, W) of (p - r)^2
//   psnr         mean over those frames of 10 log10(1 / MSE_t) (data range 1); a frame
//                with MSE_t <= 1e-10 scores METRICS_PSNR_MAX = 100 dB (10 log10(1/1e-10)),
//                so identical frames give a finite number instead of skimage's inf
//   ssim         mean over those frames and the 3 channels of SSIM (Wang et al. 2004):
//                Gaussian window sigma 1.5 truncated at 3.5 sigma (11 taps), K1 0.01,
//                K2 0.03, data range 1, population (co)variances, filtering with
//                'reflect' borders and the mean taken after cropping 5 pixels from
//                every border: skimage.metrics.structural_similarity(gaussian_weights=
//                True, sigma=1.5, use_sample_covariance=False, data_range=1) exactly
//   motion_pred  mean |Y_{t+1} - Y_t| over the pairs (t, t+1) of the evaluated frames,
//   motion_real  t = 1 .. T-2, over (3, H, W); 0 when T == 2 (no pair)
//   motion_ratio motion_pred / motion_real; when motion_real == 0 it is 1 if the
//                prediction is static too, else METRICS_RATIO_MAX; capped at
//                METRICS_RATIO_MAX so that it always fits in JSON
// Aggregates over clips (mean of the per-clip values) are the caller's.
// Results do not depend on the thread count: frames are computed independently and
// summed in frame order.

#define METRICS_PSNR_MAX 100.0
#define METRICS_RATIO_MAX 1e6
#define METRICS_MIN_SIZE 11   // the SSIM window: H and W must be at least this

typedef struct {
    double mse, psnr, ssim;
    double motion_pred, motion_real, motion_ratio;
} ClipMetrics;

// pred, real: (3, T, H, W) in [-1, 1]. Needs T >= 2 and H, W >= METRICS_MIN_SIZE.
int metrics_clip(ClipMetrics *m, const float *pred, const float *real, int T, int H, int W);
// The same, also giving per-frame values for t = 1 .. T-1 (arrays of T-1; any may be
// NULL): frame_mse[t-1] = MSE_t and so on.
int metrics_clip_frames(ClipMetrics *m, double *frame_mse, double *frame_psnr, double *frame_ssim,
                        const float *pred, const float *real, int T, int H, int W);

// One frame each, a and b (3, H, W) already in [0, 1]:
// SSIM averaged over the channels; NAN when H or W < METRICS_MIN_SIZE or out of memory.
double metrics_ssim_frame(const float *a, const float *b, int H, int W);
// 10 log10(1 / MSE), MSE over (3, H, W), METRICS_PSNR_MAX when MSE <= 1e-10.
double metrics_psnr_frame(const float *a, const float *b, int H, int W);

// Lower level, one channel (H, W) in double, any range (data range 1):
// work holds 7 * H * W doubles.
double metrics_ssim_channel(const double *x, const double *y, int H, int W, double *work);

// sum += m, field by field (for averages over clips).
void metrics_accumulate(ClipMetrics *sum, const ClipMetrics *m);
// every field *= k
void metrics_scale(ClipMetrics *m, double k);
// {"mse", "psnr", "ssim", "motion_pred", "motion_real", "motion_ratio"} as a new
// jansson object (json_t *; void * here so this header needs no jansson).
void *metrics_to_json(const ClipMetrics *m);

#endif
