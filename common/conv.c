// 3-D convolution as vol2col + sgemm, and the transposed convolution as its adjoint.
// Per sample n, with Ck = C*kT*kH*kW and L = oT*oH*oW:
//   col (Ck, L) = vol2col(x_n)         col[(c,kt,kh,kw), (ot,oh,ow)] = x_n[c, ot*sT-pT+kt, ...]
//   conv:    y_n (K, L)  = W (K, Ck) col
//   adjoint: col = W^T y_n, then x_n += col2vol(col)
// OpenMP splits vol2col/col2vol over rows or channels; sgemm is threaded by OpenBLAS
// outside any parallel region, so the two never nest.
#include "mdgan/conv.h"

#include <cblas.h>
#include <string.h>

#include "mdgan/error.h"

static int out_extent(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }

static int shape_check(const ConvShape *s) {
    const int v[] = {s->N, s->C, s->T, s->H, s->W, s->K, s->oT, s->oH, s->oW,
                     s->kT, s->kH, s->kW, s->sT, s->sH, s->sW};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] <= 0) {
            MDGAN_ERR("convolution shape N=%d C=%d K=%d in (%d,%d,%d) out (%d,%d,%d) kernel (%d,%d,%d) "
                      "stride (%d,%d,%d) is empty or invalid", s->N, s->C, s->K, s->T, s->H, s->W,
                      s->oT, s->oH, s->oW, s->kT, s->kH, s->kW, s->sT, s->sH, s->sW);
            return -1;
        }
    if (s->pT < 0 || s->pH < 0 || s->pW < 0 || s->pT >= s->kT || s->pH >= s->kH || s->pW >= s->kW) {
        MDGAN_ERR("convolution padding (%d,%d,%d) must be >= 0 and smaller than the kernel (%d,%d,%d)",
                  s->pT, s->pH, s->pW, s->kT, s->kH, s->kW);
        return -1;
    }
    return 0;
}

static void fill_geometry(ConvShape *s, const int k[3], const int stride[3], const int pad[3]) {
    s->kT = k[0]; s->kH = k[1]; s->kW = k[2];
    s->sT = stride[0]; s->sH = stride[1]; s->sW = stride[2];
    s->pT = pad[0]; s->pH = pad[1]; s->pW = pad[2];
}

int conv3d_shape(ConvShape *s, int N, int C, int K, int T, int H, int W,
                 const int k[3], const int stride[3], const int pad[3]) {
    memset(s, 0, sizeof *s);
    fill_geometry(s, k, stride, pad);
    s->N = N; s->C = C; s->K = K; s->T = T; s->H = H; s->W = W;
    if (stride[0] <= 0 || stride[1] <= 0 || stride[2] <= 0) {
        MDGAN_ERR("convolution stride (%d,%d,%d) must be positive", stride[0], stride[1], stride[2]);
        return -1;
    }
    s->oT = out_extent(T, k[0], stride[0], pad[0]);
    s->oH = out_extent(H, k[1], stride[1], pad[1]);
    s->oW = out_extent(W, k[2], stride[2], pad[2]);
    if (T + 2 * pad[0] < k[0] || H + 2 * pad[1] < k[1] || W + 2 * pad[2] < k[2]) s->oT = 0;
    return shape_check(s);
}

int conv_transpose3d_shape(ConvShape *s, int N, int in_ch, int out_ch, int iT, int iH, int iW,
                           const int k[3], const int stride[3], const int pad[3]) {
    memset(s, 0, sizeof *s);
    fill_geometry(s, k, stride, pad);
    s->N = N; s->K = in_ch; s->C = out_ch; s->oT = iT; s->oH = iH; s->oW = iW;
    s->T = (iT - 1) * stride[0] - 2 * pad[0] + k[0];
    s->H = (iH - 1) * stride[1] - 2 * pad[1] + k[1];
    s->W = (iW - 1) * stride[2] - 2 * pad[2] + k[2];
    if (shape_check(s) != 0) return -1;
    // The volume must map back onto exactly this column extent, or the pair is not adjoint.
    if (out_extent(s->T, k[0], stride[0], pad[0]) != iT || out_extent(s->H, k[1], stride[1], pad[1]) != iH ||
        out_extent(s->W, k[2], stride[2], pad[2]) != iW) {
        MDGAN_ERR("transposed convolution (%d,%d,%d) -> (%d,%d,%d) is not invertible", iT, iH, iW, s->T, s->H,
                  s->W);
        return -1;
    }
    return 0;
}

static size_t kvol(const ConvShape *s) { return (size_t)s->kT * s->kH * s->kW; }
static size_t vol_plane(const ConvShape *s) { return (size_t)s->T * s->H * s->W; }
static size_t col_plane(const ConvShape *s) { return (size_t)s->oT * s->oH * s->oW; }

size_t conv_volume_numel(const ConvShape *s) { return (size_t)s->N * s->C * vol_plane(s); }
size_t conv_column_numel(const ConvShape *s) { return (size_t)s->N * s->K * col_plane(s); }
size_t conv_weight_numel(const ConvShape *s) { return (size_t)s->K * s->C * kvol(s); }
size_t conv_workspace_floats(const ConvShape *s) { return (size_t)s->C * kvol(s) * col_plane(s); }

// The range [lo, hi) of output positions o whose input o*stride - pad + k lies in [0, in).
static inline void valid_range(int *lo, int *hi, int out, int in, int stride, int pad, int k) {
    int a = pad - k; // need o*stride >= pad - k
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    int b = in - 1 + pad - k; // need o*stride <= in - 1 + pad - k
    *hi = b < 0 ? 0 : b / stride + 1;
    if (*hi > out) *hi = out;
    if (*lo > *hi) *lo = *hi;
}

// col (C*kvol, L) from one sample x (C, T, H, W).
static void vol2col(float *col, const float *x, const ConvShape *s) {
    const int rows = s->C * s->kT * s->kH * s->kW;
    const size_t L = col_plane(s);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        int kw = r % s->kW, kh = (r / s->kW) % s->kH, kt = (r / (s->kW * s->kH)) % s->kT;
        int c = r / (s->kW * s->kH * s->kT);
        const float *xc = x + (size_t)c * vol_plane(s);
        float *dst = col + (size_t)r * L;
        int wlo, whi;
        valid_range(&wlo, &whi, s->oW, s->W, s->sW, s->pW, kw);
        for (int ot = 0; ot < s->oT; ot++) {
            int it = ot * s->sT - s->pT + kt;
            for (int oh = 0; oh < s->oH; oh++, dst += s->oW) {
                int ih = oh * s->sH - s->pH + kh;
                if (it < 0 || it >= s->T || ih < 0 || ih >= s->H) {
                    memset(dst, 0, sizeof(float) * s->oW);
                    continue;
                }
                const float *xrow = xc + ((size_t)it * s->H + ih) * s->W;
                for (int ow = 0; ow < wlo; ow++) dst[ow] = 0.0f;
                if (s->sW == 1 && whi > wlo)
                    memcpy(dst + wlo, xrow + (wlo - s->pW + kw), sizeof(float) * (whi - wlo));
                else
                    for (int ow = wlo; ow < whi; ow++) dst[ow] = xrow[ow * s->sW - s->pW + kw];
                for (int ow = whi; ow < s->oW; ow++) dst[ow] = 0.0f;
            }
        }
    }
}

// x (C, T, H, W) += col2vol(col). Parallel over channels: the rows of one channel
// write only into that channel, so no two threads touch the same element, and each
// element receives its contributions in a fixed order (deterministic).
static void col2vol_add(float *x, const float *col, const ConvShape *s) {
    const size_t L = col_plane(s);
    const int kv = s->kT * s->kH * s->kW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < s->C; c++) {
        float *xc = x + (size_t)c * vol_plane(s);
        for (int k = 0; k < kv; k++) {
            int kw = k % s->kW, kh = (k / s->kW) % s->kH, kt = k / (s->kW * s->kH);
            const float *src = col + ((size_t)c * kv + k) * L;
            int wlo, whi;
            valid_range(&wlo, &whi, s->oW, s->W, s->sW, s->pW, kw);
            for (int ot = 0; ot < s->oT; ot++) {
                int it = ot * s->sT - s->pT + kt;
                for (int oh = 0; oh < s->oH; oh++, src += s->oW) {
                    int ih = oh * s->sH - s->pH + kh;
                    if (it < 0 || it >= s->T || ih < 0 || ih >= s->H) continue;
                    float *xrow = xc + ((size_t)it * s->H + ih) * s->W;
                    for (int ow = wlo; ow < whi; ow++) xrow[ow * s->sW - s->pW + kw] += src[ow];
                }
            }
        }
    }
}

void conv3d_forward(float *out, const float *inp, const float *w, const ConvShape *s, float *ws) {
    const int Ck = s->C * (int)kvol(s), L = (int)col_plane(s);
    for (int n = 0; n < s->N; n++) {
        vol2col(ws, inp + (size_t)n * s->C * vol_plane(s), s);
        // y_n (K, L) = W (K, Ck) col (Ck, L)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->K, L, Ck, 1.0f, w, Ck, ws, L, 0.0f,
                    out + (size_t)n * s->K * L, L);
    }
}

void conv3d_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                     const ConvShape *s, float *ws) {
    const int Ck = s->C * (int)kvol(s), L = (int)col_plane(s);
    for (int n = 0; n < s->N; n++) {
        const float *dy = dout + (size_t)n * s->K * L;
        if (dw) {
            // y = W col  =>  dW += dy col^T
            vol2col(ws, inp + (size_t)n * s->C * vol_plane(s), s);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->K, Ck, L, 1.0f, dy, L, ws, L, 1.0f, dw, Ck);
        }
        if (dinp) {
            // dcol = W^T dy, then scatter back through the vol2col map
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Ck, L, s->K, 1.0f, w, Ck, dy, L, 0.0f, ws, L);
            col2vol_add(dinp + (size_t)n * s->C * vol_plane(s), ws, s);
        }
    }
}

void conv_transpose3d_forward(float *out, const float *inp, const float *w, const ConvShape *s, float *ws) {
    const int Ck = s->C * (int)kvol(s), L = (int)col_plane(s);
    memset(out, 0, sizeof(float) * conv_volume_numel(s));
    for (int n = 0; n < s->N; n++) {
        // x_n = col2vol(W^T y_n)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Ck, L, s->K, 1.0f, w, Ck,
                    inp + (size_t)n * s->K * L, L, 0.0f, ws, L);
        col2vol_add(out + (size_t)n * s->C * vol_plane(s), ws, s);
    }
}

void conv_transpose3d_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                               const ConvShape *s, float *ws) {
    const int Ck = s->C * (int)kvol(s), L = (int)col_plane(s);
    for (int n = 0; n < s->N; n++) {
        // x_n = col2vol(W^T y_n)  =>  dcol = vol2col(dx_n); dy_n += W dcol; dW += y_n dcol^T
        vol2col(ws, dout + (size_t)n * s->C * vol_plane(s), s);
        if (dinp)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->K, L, Ck, 1.0f, w, Ck, ws, L, 1.0f,
                        dinp + (size_t)n * s->K * L, L);
        if (dw)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->K, Ck, L, 1.0f, inp + (size_t)n * s->K * L, L,
                        ws, L, 1.0f, dw, Ck);
    }
}

// ---- naive reference: the definition, one output element at a time ----

void conv3d_forward_naive(float *out, const float *inp, const float *w, const ConvShape *s) {
    memset(out, 0, sizeof(float) * conv_column_numel(s));
    CONV_TAPS(s, vi, ci, wi, out[ci] += inp[vi] * w[wi]);
}

void conv3d_backward_naive(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                           const ConvShape *s) {
    CONV_TAPS(s, vi, ci, wi, {
        if (dinp) dinp[vi] += dout[ci] * w[wi];
        if (dw) dw[wi] += dout[ci] * inp[vi];
    });
}

void conv_transpose3d_forward_naive(float *out, const float *inp, const float *w, const ConvShape *s) {
    memset(out, 0, sizeof(float) * conv_volume_numel(s));
    CONV_TAPS(s, vi, ci, wi, out[vi] += inp[ci] * w[wi]);
}

void conv_transpose3d_backward_naive(float *dinp, float *dw, const float *dout, const float *inp,
                                     const float *w, const ConvShape *s) {
    CONV_TAPS(s, vi, ci, wi, {
        if (dinp) dinp[ci] += dout[vi] * w[wi];
        if (dw) dw[wi] += dout[vi] * inp[ci];
    });
}
