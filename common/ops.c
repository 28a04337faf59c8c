// BatchNorm3d and the element-wise activations.
// BatchNorm: one channel per OpenMP iteration (static schedule); each channel's sums run
// over n then s in a fixed order into double accumulators, so results do not depend on
// the thread count. The element-wise kernels have no reductions at all.
// `simd` only on element-wise loops without reductions or libm calls: each element is
// computed by the same IEEE operations as in scalar code (no contraction under -std=c11),
// so vectorising changes no bits; it also turns the sign tests into blends instead of
// branches that mispredict on random signs.
#include "mdgan/ops.h"

#include <math.h>

// Below this many elements a parallel region costs more than it saves.
#define OPS_PAR_MIN 32768

// Sum of x[0..n) in double over four interleaved lanes: a fixed order (so deterministic)
// that still lets the compiler keep several additions in flight.
static double sum_f32(const float *x, size_t n) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a0 += x[i];
        a1 += x[i + 1];
        a2 += x[i + 2];
        a3 += x[i + 3];
    }
    for (; i < n; i++) a0 += x[i];
    return (a0 + a1) + (a2 + a3);
}

// sum (x - m)^2
static double sumsq_centered(const float *x, size_t n, double m) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        double d0 = x[i] - m, d1 = x[i + 1] - m, d2 = x[i + 2] - m, d3 = x[i + 3] - m;
        a0 += d0 * d0;
        a1 += d1 * d1;
        a2 += d2 * d2;
        a3 += d3 * d3;
    }
    for (; i < n; i++) {
        double d = x[i] - m;
        a0 += d * d;
    }
    return (a0 + a1) + (a2 + a3);
}

// sum dy * (x - m)
static double dot_centered(const float *dy, const float *x, size_t n, double m) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a0 += (double)dy[i] * (x[i] - m);
        a1 += (double)dy[i + 1] * (x[i + 1] - m);
        a2 += (double)dy[i + 2] * (x[i + 2] - m);
        a3 += (double)dy[i + 3] * (x[i + 3] - m);
    }
    for (; i < n; i++) a0 += (double)dy[i] * (x[i] - m);
    return (a0 + a1) + (a2 + a3);
}

// ---------------------------------------------------------------- BatchNorm3d

// PyTorch's running-statistics update; cnt = N*S values per channel.
static void running_update(float *running_mean, float *running_var, int c, double mean, double var,
                           double cnt, float momentum) {
    // n / (n - 1) is undefined for a single value; PyTorch refuses to train on that,
    // here the biased variance is kept rather than writing inf into the state.
    double unbiased = cnt > 1 ? var * cnt / (cnt - 1) : var;
    double mo = momentum;
    running_mean[c] = (float)(mo * mean + (1 - mo) * running_mean[c]);
    running_var[c] = (float)(mo * unbiased + (1 - mo) * running_var[c]);
}

// y = act((x - m) * sc + b) over one plane: one loop per activation so that each
// vectorizes (and ReLU gives +0, as relu_forward does, not slope 0's -0).
static inline void bn_apply(float *restrict y, const float *restrict x, size_t S, float m, float sc, float b,
                            BnAct act) {
    switch (act.kind) {
    case BN_ACT_NONE:
#pragma omp simd
        for (size_t i = 0; i < S; i++) y[i] = (x[i] - m) * sc + b;
        break;
    case BN_ACT_RELU:
#pragma omp simd
        for (size_t i = 0; i < S; i++) {
            const float v = (x[i] - m) * sc + b;
            y[i] = v > 0 ? v : 0.0f;
        }
        break;
    case BN_ACT_LRELU:
#pragma omp simd
        for (size_t i = 0; i < S; i++) {
            const float v = (x[i] - m) * sc + b;
            y[i] = v > 0 ? v : v * act.slope;
        }
        break;
    }
}

void batchnorm_forward_train(float *out, float *mean, float *rstd, float *running_mean,
                             float *running_var, const float *inp, const float *gamma,
                             const float *beta, int N, int C, size_t S, float momentum, float eps, BnAct act) {
    const double cnt = (double)N * (double)S;
#pragma omp parallel for schedule(static) if ((size_t)N * C * S >= OPS_PAR_MIN)
    for (int c = 0; c < C; c++) {
        double sum = 0;
        for (int n = 0; n < N; n++) sum += sum_f32(inp + ((size_t)n * C + c) * S, S);
        double m = sum / cnt;
        double ss = 0;
        for (int n = 0; n < N; n++) ss += sumsq_centered(inp + ((size_t)n * C + c) * S, S, m);
        double var = ss / cnt;  // biased: the one used to normalise
        float rs = (float)(1.0 / sqrt(var + (double)eps));
        mean[c] = (float)m;
        rstd[c] = rs;
        // out = act((x - mean) * rstd * gamma + beta)
        const float mf = (float)m, sc = rs * gamma[c], b = beta[c];
        for (int n = 0; n < N; n++)
            bn_apply(out + ((size_t)n * C + c) * S, inp + ((size_t)n * C + c) * S, S, mf, sc, b, act);
        if (running_mean) running_update(running_mean, running_var, c, m, var, cnt, momentum);
    }
}

void batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, int N, int C,
                            size_t S, float eps, BnAct act) {
#pragma omp parallel for schedule(static) if ((size_t)N * C * S >= OPS_PAR_MIN)
    for (int c = 0; c < C; c++) {
        float rs = (float)(1.0 / sqrt((double)running_var[c] + (double)eps));
        const float mf = running_mean[c], sc = rs * gamma[c], b = beta[c];
        for (int n = 0; n < N; n++)
            bn_apply(out + ((size_t)n * C + c) * S, inp + ((size_t)n * C + c) * S, S, mf, sc, b, act);
    }
}

// The gradient reaching BatchNorm's output from dout, the gradient of act's output
// (out = act(bn)): dout itself without an activation, else 0 + dout * act'(out), the
// exact bits that relu_backward / lrelu_backward accumulate into a zeroed buffer.
static inline float bn_dy(const float *dout, const float *out, size_t i, BnActKind kind, float slope) {
    switch (kind) {
    case BN_ACT_RELU: return 0.0f + (out[i] > 0 ? dout[i] : 0.0f);
    case BN_ACT_LRELU: return 0.0f + (out[i] > 0 ? dout[i] : dout[i] * slope);
    default: return dout[i];
    }
}

// sum dy and sum dy * (x - m) over one plane, each in sum_f32's / dot_centered's lanes
// and order (so the same doubles as those two passes), in one pass.
static inline void bn_plane_sums(const float *dout, const float *out, const float *x, size_t n, double m,
                                 BnActKind kind, float slope, double *sum, double *dot) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float y0 = bn_dy(dout, out, i, kind, slope), y1 = bn_dy(dout, out, i + 1, kind, slope);
        const float y2 = bn_dy(dout, out, i + 2, kind, slope), y3 = bn_dy(dout, out, i + 3, kind, slope);
        s0 += y0, s1 += y1, s2 += y2, s3 += y3;
        d0 += (double)y0 * (x[i] - m);
        d1 += (double)y1 * (x[i + 1] - m);
        d2 += (double)y2 * (x[i + 2] - m);
        d3 += (double)y3 * (x[i + 3] - m);
    }
    for (; i < n; i++) {
        const float y = bn_dy(dout, out, i, kind, slope);
        s0 += y;
        d0 += (double)y * (x[i] - m);
    }
    *sum += (s0 + s1) + (s2 + s3);
    *dot += (d0 + d1) + (d2 + d3);
}

static inline void bn_backward_channel(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                       const float *act_out, BnActKind kind, float slope, const float *inp,
                                       const float *mean, const float *rstd, const float *gamma, int N, int C,
                                       size_t S, int c) {
    const double cnt = (double)N * (double)S;
    // forward: y = xhat * gamma + beta, xhat = (x - mean) * rstd, mean and rstd from the batch
    double m = mean[c], rs = rstd[c];
    double sum_dy = 0, dot = 0;  // sum dy, sum dy * (x - mean)
    for (int n = 0; n < N; n++) {
        size_t off = ((size_t)n * C + c) * S;
        bn_plane_sums(dout + off, act_out ? act_out + off : NULL, inp + off, S, m, kind, slope, &sum_dy, &dot);
    }
    if (dbeta) dbeta[c] += (float)sum_dy;
    if (dgamma) dgamma[c] += (float)(dot * rs);  // sum dy * xhat
    if (!dinp) return;
    // dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))
    //    = gamma * rstd * (dy - mean(dy) - (x - mean) * k),  k = rstd^2 * mean(dy * (x - mean))
    const float mf = (float)m, gm = (float)(sum_dy / cnt), k = (float)(dot * rs * rs / cnt);
    const float sc = rstd[c] * gamma[c];
    for (int n = 0; n < N; n++) {
        size_t off = ((size_t)n * C + c) * S;
        const float *x = inp + off, *dy = dout + off, *o = act_out ? act_out + off : NULL;
        float *dx = dinp + off;
#pragma omp simd
        for (size_t i = 0; i < S; i++) dx[i] += (bn_dy(dy, o, i, kind, slope) - gm - (x[i] - mf) * k) * sc;
    }
}

void batchnorm_backward_act(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *act_out,
                            BnAct act, const float *inp, const float *mean, const float *rstd, const float *gamma,
                            int N, int C, size_t S) {
    // one call per activation with a constant kind, so that each inlines into its own loops
#pragma omp parallel for schedule(static) if ((size_t)N * C * S >= OPS_PAR_MIN)
    for (int c = 0; c < C; c++) {
        switch (act.kind) {
        case BN_ACT_NONE:
            bn_backward_channel(dinp, dgamma, dbeta, dout, NULL, BN_ACT_NONE, 0.0f, inp, mean, rstd, gamma, N, C, S,
                                c);
            break;
        case BN_ACT_RELU:
            bn_backward_channel(dinp, dgamma, dbeta, dout, act_out, BN_ACT_RELU, 0.0f, inp, mean, rstd, gamma, N, C,
                                S, c);
            break;
        case BN_ACT_LRELU:
            bn_backward_channel(dinp, dgamma, dbeta, dout, act_out, BN_ACT_LRELU, act.slope, inp, mean, rstd, gamma,
                                N, C, S, c);
            break;
        }
    }
}

void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                        const float *mean, const float *rstd, const float *gamma, int N, int C, size_t S) {
    batchnorm_backward_act(dinp, dgamma, dbeta, dout, NULL, (BnAct){BN_ACT_NONE, 0.0f}, inp, mean, rstd, gamma, N, C,
                           S);
}

void batchnorm_backward_eval(float *dinp, float *dgamma, float *dbeta, const float *dout,
                             const float *inp, const float *gamma, const float *running_mean,
                             const float *running_var, int N, int C, size_t S, float eps) {
#pragma omp parallel for schedule(static) if ((size_t)N * C * S >= OPS_PAR_MIN)
    for (int c = 0; c < C; c++) {
        // forward: y = (x - running_mean) * rs * gamma + beta, rs constant
        float rs = (float)(1.0 / sqrt((double)running_var[c] + (double)eps));
        double sum_dy = 0, dot = 0;
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * S;
            if (dbeta) sum_dy += sum_f32(dout + off, S);
            if (dgamma) dot += dot_centered(dout + off, inp + off, S, running_mean[c]);
        }
        if (dbeta) dbeta[c] += (float)sum_dy;
        if (dgamma) dgamma[c] += (float)(dot * rs);
        if (!dinp) continue;
        const float sc = rs * gamma[c];
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * S;
            const float *dy = dout + off;
            float *dx = dinp + off;
#pragma omp simd
            for (size_t i = 0; i < S; i++) dx[i] += dy[i] * sc;
        }
    }
}

void batchnorm_forward_train_naive(float *out, float *mean, float *rstd, float *running_mean,
                                   float *running_var, const float *inp, const float *gamma,
                                   const float *beta, int N, int C, size_t S, float momentum,
                                   float eps) {
    for (int c = 0; c < C; c++) {
        double sum = 0, ss = 0, cnt = (double)N * S;
        for (int n = 0; n < N; n++)
            for (size_t i = 0; i < S; i++) sum += inp[((size_t)n * C + c) * S + i];
        double m = sum / cnt;
        for (int n = 0; n < N; n++)
            for (size_t i = 0; i < S; i++) {
                double d = inp[((size_t)n * C + c) * S + i] - m;
                ss += d * d;
            }
        double var = ss / cnt, rs = 1.0 / sqrt(var + eps);
        for (int n = 0; n < N; n++)
            for (size_t i = 0; i < S; i++) {
                size_t j = ((size_t)n * C + c) * S + i;
                out[j] = (float)((inp[j] - m) * rs * gamma[c] + beta[c]);
            }
        mean[c] = (float)m;
        rstd[c] = (float)rs;
        if (running_mean) {
            running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
            running_var[c] = (float)((1.0 - momentum) * running_var[c] +
                                     momentum * (cnt > 1 ? ss / (cnt - 1) : var));
        }
    }
}

void batchnorm_backward_naive(float *dinp, float *dgamma, float *dbeta, const float *dout,
                              const float *inp, const float *mean, const float *rstd,
                              const float *gamma, int N, int C, size_t S) {
    for (int c = 0; c < C; c++) {
        double cnt = (double)N * S, sdy = 0, sdyx = 0;  // sum dy, sum dy * xhat
        for (int n = 0; n < N; n++)
            for (size_t i = 0; i < S; i++) {
                size_t j = ((size_t)n * C + c) * S + i;
                sdy += dout[j];
                sdyx += dout[j] * ((inp[j] - (double)mean[c]) * rstd[c]);
            }
        if (dbeta) dbeta[c] += (float)sdy;
        if (dgamma) dgamma[c] += (float)sdyx;
        if (!dinp) continue;
        for (int n = 0; n < N; n++)
            for (size_t i = 0; i < S; i++) {
                size_t j = ((size_t)n * C + c) * S + i;
                double xhat = (inp[j] - (double)mean[c]) * rstd[c];
                dinp[j] += (float)((double)gamma[c] * rstd[c] * (dout[j] - sdy / cnt - xhat * sdyx / cnt));
            }
    }
}

// ---------------------------------------------------------------- activations

void relu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= OPS_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0 ? inp[i] : 0.0f;
}

void relu_backward(float *dinp, const float *dout, const float *out, size_t n) {
    // out = max(x, 0): d/dx = [x > 0] = [out > 0] (0 at x = 0, as PyTorch)
#pragma omp parallel for simd schedule(static) if (n >= OPS_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        dinp[i] += out[i] > 0 ? dout[i] : 0.0f;
}

void lrelu_forward(float *out, const float *inp, size_t n, float slope) {
#pragma omp parallel for simd schedule(static) if (n >= OPS_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0 ? inp[i] : inp[i] * slope;
}

void lrelu_backward(float *dinp, const float *dout, const float *out, size_t n, float slope) {
    // out = x > 0 ? x : slope * x: d/dx = out > 0 ? 1 : slope
#pragma omp parallel for simd schedule(static) if (n >= OPS_PAR_MIN)
    for (size_t i = 0; i < n; i++) dinp[i] += out[i] > 0 ? dout[i] : dout[i] * slope;
}

void tanh_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static) if (n >= OPS_PAR_MIN / 8)
    for (size_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
}

void tanh_backward(float *dinp, const float *dout, const float *out, size_t n) {
    // out = tanh(x): d/dx = 1 - out^2
#pragma omp parallel for simd schedule(static) if (n >= OPS_PAR_MIN)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}

// 1 / (1 + e^-x) without overflowing e^-x for large negative x.
static inline float sigmoidf_stable(float x) {
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

void sigmoid_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static) if (n >= OPS_PAR_MIN / 8)
    for (size_t i = 0; i < n; i++) out[i] = sigmoidf_stable(inp[i]);
}

void sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n) {
    // out = sigmoid(x): d/dx = out * (1 - out)
#pragma omp parallel for simd schedule(static) if (n >= OPS_PAR_MIN)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * (1.0f - out[i]) * out[i];
}

void add_inplace(float *y, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= OPS_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
