#ifndef MDGAN_CONV_H
#define MDGAN_CONV_H
// 3-D convolution and its adjoint, the transposed convolution, as vol2col + sgemm.
//
// One shape describes both, from the convolution's point of view:
//   "volume" side: (N, C, T, H, W)      conv input  / transposed-conv output
//   "column" side: (N, K, oT, oH, oW)   conv output / transposed-conv input
//   weight:        (K, C, kT, kH, kW)   Conv3d(C -> K) stores (OC=K, IC=C, ...);
//                                       ConvTranspose3d(K -> C) stores (IC=K, OC=C, ...):
//                                       the same array, which is why one shape serves both.
// No biases: MD-GAN has none.

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int N;
    int C, T, H, W;        // volume side
    int K, oT, oH, oW;     // column side
    int kT, kH, kW;
    int sT, sH, sW;
    int pT, pH, pW;
} ConvShape;

// Conv3d(C -> K) over a (N, C, T, H, W) input. Returns -1 (with a message) when the
// output would be empty or a size is not positive.
int conv3d_shape(ConvShape *s, int N, int C, int K, int T, int H, int W,
                 const int k[3], const int stride[3], const int pad[3]);
// ConvTranspose3d(in_ch -> out_ch) over a (N, in_ch, iT, iH, iW) input; the output
// extent is (i - 1) * stride - 2 * pad + k per axis.
int conv_transpose3d_shape(ConvShape *s, int N, int in_ch, int out_ch, int iT, int iH, int iW,
                           const int k[3], const int stride[3], const int pad[3]);

size_t conv_volume_numel(const ConvShape *s);   // N*C*T*H*W
size_t conv_column_numel(const ConvShape *s);   // N*K*oT*oH*oW
size_t conv_weight_numel(const ConvShape *s);   // K*C*kT*kH*kW
// Floats of workspace one call needs: a cache-sized tile for each of up to
// CONV_MAX_THREADS threads (only the tiles of threads in use are touched); one buffer
// of the largest size serves every layer of a network. More threads than
// CONV_MAX_THREADS work, the convolutions just use no more than that.
enum { CONV_MAX_THREADS = 32 };

// Threads for an OpenMP loop whose items call one-threaded OpenBLAS (the convolutions,
// the ranking loss): at most CONV_MAX_THREADS, and OpenBLAS's own pthreads pool set to
// one thread if something raised it. Called by the thread that starts the loop.
int conv_threads(void);
// Tests and benchmarks: 0 makes every convolution copy its column tiles out (vol2col)
// even where our kernels can read them in place from the split input lines, 1 (the
// default) lets them.
void conv_use_runs(int on);
size_t conv_workspace_floats(const ConvShape *s);

// out = conv(inp, w)
void conv3d_forward(float *out,          // (N, K, oT, oH, oW)
                    const float *inp,    // (N, C, T, H, W)
                    const float *w,      // (K, C, kT, kH, kW)
                    const ConvShape *s, float *ws);
// out = LeakyReLU(conv(inp, w)) with the given slope, the same bits as conv3d_forward
// then lrelu_forward, in one pass
void conv3d_forward_lrelu(float *out, const float *inp, const float *w, const ConvShape *s, float *ws, float slope);
// dinp += dL/dinp, dw += dL/dw (either may be NULL to skip it)
void conv3d_backward(float *dinp, float *dw,
                     const float *dout,  // (N, K, oT, oH, oW)
                     const float *inp, const float *w, const ConvShape *s, float *ws);

// out = conv^T(inp, w): the adjoint of conv3d_forward in its input.
void conv_transpose3d_forward(float *out,        // (N, C, T, H, W)
                              const float *inp,  // (N, K, oT, oH, oW)
                              const float *w,    // (K, C, kT, kH, kW)
                              const ConvShape *s, float *ws);
void conv_transpose3d_backward(float *dinp, float *dw,
                               const float *dout,  // (N, C, T, H, W)
                               const float *inp, const float *w, const ConvShape *s, float *ws);

// The definition, one tap at a time (used by the naive kernels and the tests):
// visits every (n, k, c, output position, kernel tap) whose input tap is inside the volume,
// passing the flat indices of the volume element, the column element and the weight.
#define CONV_TAPS(s, VI, CI, WI, BODY)                                                           \
    for (int n = 0; n < (s)->N; n++)                                                                     \
        for (int k = 0; k < (s)->K; k++)                                                                 \
            for (int c = 0; c < (s)->C; c++)                                                             \
                for (int ot = 0; ot < (s)->oT; ot++)                                                     \
                    for (int oh = 0; oh < (s)->oH; oh++)                                                 \
                        for (int ow = 0; ow < (s)->oW; ow++)                                             \
                            for (int kt = 0; kt < (s)->kT; kt++)                                         \
                                for (int kh = 0; kh < (s)->kH; kh++)                                     \
                                    for (int kw = 0; kw < (s)->kW; kw++) {                               \
                                        int it = ot * (s)->sT - (s)->pT + kt;                            \
                                        int ih = oh * (s)->sH - (s)->pH + kh;                            \
                                        int iw = ow * (s)->sW - (s)->pW + kw;                            \
                                        if (it < 0 || it >= (s)->T || ih < 0 || ih >= (s)->H || iw < 0 || \
                                            iw >= (s)->W)                                                \
                                            continue;                                                    \
                                        size_t VI = ((((size_t)n * (s)->C + c) * (s)->T + it) * (s)->H + ih) * \
                                                        (s)->W + iw;                                     \
                                        size_t CI = ((((size_t)n * (s)->K + k) * (s)->oT + ot) * (s)->oH + oh) * \
                                                        (s)->oW + ow;                                    \
                                        size_t WI = ((((size_t)k * (s)->C + c) * (s)->kT + kt) * (s)->kH + kh) * \
                                                        (s)->kW + kw;                                    \
                                        BODY;                                                            \
                                    }

// Direct loops, slow and obviously right, for the tests.
void conv3d_forward_naive(float *out, const float *inp, const float *w, const ConvShape *s);
void conv3d_backward_naive(float *dinp, float *dw, const float *dout, const float *inp,
                           const float *w, const ConvShape *s);
void conv_transpose3d_forward_naive(float *out, const float *inp, const float *w, const ConvShape *s);
void conv_transpose3d_backward_naive(float *dinp, float *dw, const float *dout, const float *inp,
                                     const float *w, const ConvShape *s);

#endif
