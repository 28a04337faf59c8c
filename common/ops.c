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
#include <string.h>

// Below this many elements a parallel region costs more than it saves.
#define OPS_PAR_MIN 32768

// A channel's BatchNorm work is compiled for AVX-512, AVX2 and the baseline and picked at
// load time. Each clone does the same IEEE operations per element and per lane in the
// same order, so all three give the same bits; the clones only differ in how many lanes
// one instruction carries. (The clones are the channel functions, not the parallel
// loops: the loop bodies OpenMP outlines would not be cloned.)
#define OPS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// Double sums over BN_LANES interleaved lanes: lane j adds the elements j, j + BN_LANES,
// j + 2 BN_LANES, ... in order, and the lanes are added pairwise at the end (lane_fold).
// A fixed order, so deterministic, and one lane is one element of a vector: the sums run
// as whole vectors (GCC's vector extensions, split into the registers each clone has).
#define BN_LANES 16
#define ALWAYS_INLINE static inline __attribute__((always_inline))
typedef double DLanes __attribute__((vector_size(BN_LANES * sizeof(double))));
typedef float FLanes __attribute__((vector_size(BN_LANES * sizeof(float))));
typedef int ILanes __attribute__((vector_size(BN_LANES * sizeof(int))));
// FLanes at a float's alignment, to load and store lanes at any float. No function takes
// or returns a vector by value (the helpers below work through pointers): the baseline
// clone has no 64-byte registers, and a vector argument there would change the ABI.
typedef float FLanesAt __attribute__((vector_size(BN_LANES * sizeof(float)), aligned(sizeof(float)), may_alias));
#define LOAD_LANES(p) (*(const FLanesAt *)(p))
#define LANES_AT(p) (*(FLanesAt *)(p))
#define widen(v) __builtin_convertvector((v), DLanes)

ALWAYS_INLINE double lane_fold(const DLanes *a) {
    double l[BN_LANES];
    memcpy(l, a, sizeof l);
    for (int w = BN_LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) l[j] += l[j + w];
    return l[0];
}

// sum x over x[0..n)
ALWAYS_INLINE double sum_f32(const float *x, size_t n) {
    DLanes a = {0};
    size_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES) a += widen(LOAD_LANES(x + i));
    for (size_t j = 0; i + j < n; j++) a[j] += x[i + j];
    return lane_fold(&a);
}

// sum (x - m)^2
ALWAYS_INLINE double sumsq_centered(const float *x, size_t n, double m) {
    DLanes a = {0};
    size_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES) {
        const DLanes d = widen(LOAD_LANES(x + i)) - m;
        a += d * d;
    }
    for (size_t j = 0; i + j < n; j++) {
        const double d = x[i + j] - m;
        a[j] += d * d;
    }
    return lane_fold(&a);
}

// sum dy * (x - m)
ALWAYS_INLINE double dot_centered(const float *dy, const float *x, size_t n, double m) {
    DLanes a = {0};
    size_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES) a += widen(LOAD_LANES(dy + i)) * (widen(LOAD_LANES(x + i)) - m);
    for (size_t j = 0; i + j < n; j++) a[j] += (double)dy[i + j] * (x[i + j] - m);
    return lane_fold(&a);
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

// *v = where test > 0 then *v else *neg, lane by lane (a NaN test picks *neg, as
// `test > 0 ? v : neg`)
ALWAYS_INLINE void keep_positive(FLanes *v, const FLanes *test, const FLanes *neg) {
    const ILanes pos = *test > 0.0f;
    *v = (FLanes)(((ILanes)*v & pos) | ((ILanes)*neg & ~pos));
}

// act(v): ReLU gives +0, as relu_forward does, not slope 0's -0
ALWAYS_INLINE float act_scalar(float v, BnActKind kind, float slope) {
    switch (kind) {
    case BN_ACT_RELU: return v > 0 ? v : 0.0f;
    case BN_ACT_LRELU: return v > 0 ? v : v * slope;
    default: return v;
    }
}

// *v = act(*v), the same selects as act_scalar
ALWAYS_INLINE void act_lanes(FLanes *v, BnActKind kind, float slope) {
    const FLanes t = *v, neg = kind == BN_ACT_LRELU ? t * slope : (FLanes){0};
    if (kind != BN_ACT_NONE) keep_positive(v, &t, &neg);
}

// y = act((x - m) * sc + b) over one plane (y may be x)
ALWAYS_INLINE void bn_apply_as(float *y, const float *x, size_t S, float m, float sc, float b, BnActKind kind,
                               float slope) {
    size_t i = 0;
    for (; i + BN_LANES <= S; i += BN_LANES) {
        FLanes v = (LOAD_LANES(x + i) - m) * sc + b;
        act_lanes(&v, kind, slope);
        LANES_AT(y + i) = v;
    }
    for (; i < S; i++) y[i] = act_scalar((x[i] - m) * sc + b, kind, slope);
}

// one body per activation, each with its kind a constant
ALWAYS_INLINE void bn_apply(float *y, const float *x, size_t S, float m, float sc, float b, BnAct act) {
    switch (act.kind) {
    case BN_ACT_NONE: bn_apply_as(y, x, S, m, sc, b, BN_ACT_NONE, 0.0f); break;
    case BN_ACT_RELU: bn_apply_as(y, x, S, m, sc, b, BN_ACT_RELU, 0.0f); break;
    case BN_ACT_LRELU: bn_apply_as(y, x, S, m, sc, b, BN_ACT_LRELU, act.slope); break;
    }
}

OPS_CLONES static void bn_forward_train_channel(float *out, float *mean, float *rstd, float *running_mean,
                                                float *running_var, const float *inp, const float *gamma,
                                                const float *beta, int N, int C, size_t S, float momentum,
                                                float eps, BnAct act, int c) {
    const double cnt = (double)N * (double)S;
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

void batchnorm_forward_train(float *out, float *mean, float *rstd, float *running_mean,
                             float *running_var, const float *inp, const float *gamma,
                             const float *beta, int N, int C, size_t S, float momentum, float eps, BnAct act) {
#pragma omp parallel for schedule(static) if ((size_t)N * C * S >= OPS_PAR_MIN)
    for (int c = 0; c < C; c++)
        bn_forward_train_channel(out, mean, rstd, running_mean, running_var, inp, gamma, beta, N, C, S, momentum,
                                 eps, act, c);
}

OPS_CLONES static void bn_forward_eval_channel(float *out, const float *inp, const float *gamma, const float *beta,
                                               const float *running_mean, const float *running_var, int N, int C,
                                               size_t S, float eps, BnAct act, int c) {
    float rs = (float)(1.0 / sqrt((double)running_var[c] + (double)eps));
    const float mf = running_mean[c], sc = rs * gamma[c], b = beta[c];
    for (int n = 0; n < N; n++)
        bn_apply(out + ((size_t)n * C + c) * S, inp + ((size_t)n * C + c) * S, S, mf, sc, b, act);
}

void batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, int N, int C,
                            size_t S, float eps, BnAct act) {
#pragma omp parallel for schedule(static) if ((size_t)N * C * S >= OPS_PAR_MIN)
    for (int c = 0; c < C; c++)
        bn_forward_eval_channel(out, inp, gamma, beta, running_mean, running_var, N, C, S, eps, act, c);
}

// The gradient reaching BatchNorm's output from dout, the gradient of act's output
// (out = act(bn)): dout itself without an activation, else 0 + dout * act'(out), the
// exact bits that relu_backward / lrelu_backward accumulate into a zeroed buffer.
ALWAYS_INLINE float bn_dy(const float *dout, const float *out, size_t i, BnActKind kind, float slope) {
    switch (kind) {
    case BN_ACT_RELU: return 0.0f + (out[i] > 0 ? dout[i] : 0.0f);
    case BN_ACT_LRELU: return 0.0f + (out[i] > 0 ? dout[i] : dout[i] * slope);
    default: return dout[i];
    }
}

// bn_dy of BN_LANES elements from i
ALWAYS_INLINE void bn_dy_lanes(FLanes *y, const float *dout, const float *out, size_t i, BnActKind kind,
                               float slope) {
    const FLanes dy = LOAD_LANES(dout + i);
    *y = dy;
    if (kind == BN_ACT_NONE) return;
    const FLanes o = LOAD_LANES(out + i), neg = kind == BN_ACT_LRELU ? dy * slope : (FLanes){0};
    keep_positive(y, &o, &neg);
    *y = 0.0f + *y;
}

// sum dy and sum dy * (x - m) over one plane, each in sum_f32's / dot_centered's lanes
// and order (so the same doubles as those two passes), in one pass.
ALWAYS_INLINE void bn_plane_sums(const float *dout, const float *out, const float *x, size_t n, double m,
                                 BnActKind kind, float slope, double *sum, double *dot) {
    DLanes s = {0}, d = {0};
    size_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES) {
        FLanes yf;
        bn_dy_lanes(&yf, dout, out, i, kind, slope);
        const DLanes y = widen(yf);
        s += y;
        d += y * (widen(LOAD_LANES(x + i)) - m);
    }
    for (size_t j = 0; i + j < n; j++) {
        const float y = bn_dy(dout, out, i + j, kind, slope);
        s[j] += y;
        d[j] += (double)y * (x[i + j] - m);
    }
    *sum += lane_fold(&s);
    *dot += lane_fold(&d);
}

ALWAYS_INLINE void bn_backward_channel_as(float *dinp, float *dgamma, float *dbeta, const float *dout,
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
        size_t i = 0;
        for (; i + BN_LANES <= S; i += BN_LANES) {
            FLanes g;
            bn_dy_lanes(&g, dy, o, i, kind, slope);
            LANES_AT(dx + i) += (g - gm - (LOAD_LANES(x + i) - mf) * k) * sc;
        }
        for (; i < S; i++) dx[i] += (bn_dy(dy, o, i, kind, slope) - gm - (x[i] - mf) * k) * sc;
    }
}

// one body per activation, each with its kind a constant
OPS_CLONES static void bn_backward_channel(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                           const float *act_out, BnAct act, const float *inp, const float *mean,
                                           const float *rstd, const float *gamma, int N, int C, size_t S, int c) {
    switch (act.kind) {
    case BN_ACT_NONE:
        bn_backward_channel_as(dinp, dgamma, dbeta, dout, NULL, BN_ACT_NONE, 0.0f, inp, mean, rstd, gamma, N, C, S,
                               c);
        break;
    case BN_ACT_RELU:
        bn_backward_channel_as(dinp, dgamma, dbeta, dout, act_out, BN_ACT_RELU, 0.0f, inp, mean, rstd, gamma, N, C,
                               S, c);
        break;
    case BN_ACT_LRELU:
        bn_backward_channel_as(dinp, dgamma, dbeta, dout, act_out, BN_ACT_LRELU, act.slope, inp, mean, rstd, gamma,
                               N, C, S, c);
        break;
    }
}

void batchnorm_backward_act(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *act_out,
                            BnAct act, const float *inp, const float *mean, const float *rstd, const float *gamma,
                            int N, int C, size_t S) {
#pragma omp parallel for schedule(static) if ((size_t)N * C * S >= OPS_PAR_MIN)
    for (int c = 0; c < C; c++)
        bn_backward_channel(dinp, dgamma, dbeta, dout, act_out, act, inp, mean, rstd, gamma, N, C, S, c);
}

void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                        const float *mean, const float *rstd, const float *gamma, int N, int C, size_t S) {
    batchnorm_backward_act(dinp, dgamma, dbeta, dout, NULL, (BnAct){BN_ACT_NONE, 0.0f}, inp, mean, rstd, gamma, N, C,
                           S);
}

OPS_CLONES static void bn_backward_eval_channel(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                                const float *inp, const float *gamma, const float *running_mean,
                                                const float *running_var, int N, int C, size_t S, float eps, int c) {
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
    if (!dinp) return;
    const float sc = rs * gamma[c];
    for (int n = 0; n < N; n++) {
        size_t off = ((size_t)n * C + c) * S;
        const float *dy = dout + off;
        float *dx = dinp + off;
        size_t i = 0;
        for (; i + BN_LANES <= S; i += BN_LANES) LANES_AT(dx + i) += LOAD_LANES(dy + i) * sc;
        for (; i < S; i++) dx[i] += dy[i] * sc;
    }
}

void batchnorm_backward_eval(float *dinp, float *dgamma, float *dbeta, const float *dout,
                             const float *inp, const float *gamma, const float *running_mean,
                             const float *running_var, int N, int C, size_t S, float eps) {
#pragma omp parallel for schedule(static) if ((size_t)N * C * S >= OPS_PAR_MIN)
    for (int c = 0; c < C; c++)
        bn_backward_eval_channel(dinp, dgamma, dbeta, dout, inp, gamma, running_mean, running_var, N, C, S, eps, c);
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

// Element-wise kernels on spans of OPS_SPAN elements, one call per span on the threads
// of a parallel loop; the span functions are clones, like BatchNorm's channels. An
// element's result never depends on the span it falls in.
#define OPS_SPAN 4096
typedef void (*SpanFn)(float *out, const float *a, const float *b, size_t n, float s);

static void on_spans(SpanFn f, float *out, const float *a, const float *b, size_t n, float s, size_t par_min) {
    (void)par_min;   // read only by the pragma: a build without OpenMP (the fuzzers) ignores it
    const size_t nspan = (n + OPS_SPAN - 1) / OPS_SPAN;
#pragma omp parallel for schedule(static) if (n >= par_min)
    for (size_t k = 0; k < nspan; k++) {
        const size_t at = k * OPS_SPAN;
        f(out + at, a + at, b ? b + at : NULL, k + 1 < nspan ? OPS_SPAN : n - at, s);
    }
}

// out = x > 0 ? x : x * slope. (As a plain loop GCC keeps the branch, the multiply only
// on its side, and the loop stays scalar.)
OPS_CLONES static void lrelu_forward_span(float *out, const float *inp, const float *unused, size_t n, float slope) {
    (void)unused;
    size_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES) {
        FLanes v = LOAD_LANES(inp + i);
        act_lanes(&v, BN_ACT_LRELU, slope);
        LANES_AT(out + i) = v;
    }
    for (; i < n; i++) out[i] = act_scalar(inp[i], BN_ACT_LRELU, slope);
}

void lrelu_forward(float *out, const float *inp, size_t n, float slope) {
    on_spans(lrelu_forward_span, out, inp, NULL, n, slope, OPS_PAR_MIN);
}

// dinp += out > 0 ? dout : dout * slope (out = x > 0 ? x : slope * x: d/dx = out > 0 ? 1 : slope)
OPS_CLONES static void lrelu_backward_span(float *dinp, const float *dout, const float *out, size_t n, float slope) {
    size_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES) {
        FLanes g = LOAD_LANES(dout + i);
        const FLanes o = LOAD_LANES(out + i), neg = g * slope;
        keep_positive(&g, &o, &neg);
        LANES_AT(dinp + i) += g;
    }
    for (; i < n; i++) dinp[i] += out[i] > 0 ? dout[i] : dout[i] * slope;
}

void lrelu_backward(float *dinp, const float *dout, const float *out, size_t n, float slope) {
    on_spans(lrelu_backward_span, dinp, dout, out, n, slope, OPS_PAR_MIN);
}

// tanh of BN_LANES floats, in double: tanh|x| = 1 - 2 / (e^{2|x|} + 1), the sign put
// back, rounded to float once. e^y = 2^k e^r with k = round(y / ln 2) and r = y - k ln 2
// (ln 2 in two parts, the first with trailing zero bits, so k ln2_hi is exact), e^r by
// its Taylor series to r^13 (|r| <= ln2 / 2: the rest is below 1e-17 relative), 2^k put
// into the exponent bits. For |x| < 2^-10 the form 1 - 2/(e+1) cancels, so there tanh x
// = x - x^3/3 + 2x^5/15 (the next term is below 1e-17 relative). Past |x| = 9, tanh
// rounds to +-1 in float. glibc's tanhf is a scalar libm call (expm1f inside): 4% of a
// Stage I step.
ALWAYS_INLINE void tanh_lanes(float *out, const float *in) {
    typedef long long LLanes __attribute__((vector_size(BN_LANES * sizeof(long long))));
    const long long sign_bit = (long long)(1ull << 63);
    const DLanes x = widen(LOAD_LANES(in)), nine = (DLanes){0} + 9.0;
    DLanes ax = (DLanes)((LLanes)x & ~sign_bit);   // |x|, NaN kept
    const LLanes over = ax > 9.0, small = ax < 0x1p-10;
    ax = (DLanes)(((LLanes)ax & ~over) | ((LLanes)nine & over));
    const DLanes y = ax + ax;
    const LLanes k = __builtin_convertvector(y * 1.4426950408889634 + 0.5, LLanes);   // y >= 0: floor
    const DLanes kd = __builtin_convertvector(k, DLanes);
    const DLanes r = (y - kd * 0x1.62e42feep-1) - kd * 0x1.a39ef35793c76p-33;
    DLanes p = 1.0 + r * (1.0 / 13);
    for (int j = 12; j >= 1; j--) p = 1.0 + r * (1.0 / j) * p;   // e^r = 1 + r(1 + r/2(1 + r/3(...)))
    const DLanes e = p * (DLanes)((k + 1023) << 52);
    const DLanes big = 1.0 - 2.0 / (e + 1.0), x2 = x * x;
    const DLanes signed_big = (DLanes)((LLanes)big | ((LLanes)x & sign_bit));
    const DLanes series = x * (1.0 + x2 * (-1.0 / 3 + x2 * (2.0 / 15)));   // keeps -0
    const DLanes t = (DLanes)(((LLanes)series & small) | ((LLanes)signed_big & ~small));
    LANES_AT(out) = __builtin_convertvector(t, FLanes);
}

// in[0..n) in whole lanes, the last few through a padded copy: an element's bits never
// depend on where a thread's share of the array starts
OPS_CLONES static void tanh_span(float *out, const float *in, const float *unused, size_t n, float unused_s) {
    (void)unused, (void)unused_s;
    size_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES) tanh_lanes(out + i, in + i);
    if (i == n) return;
    float pad[BN_LANES] = {0};
    memcpy(pad, in + i, (n - i) * sizeof(float));
    tanh_lanes(pad, pad);
    memcpy(out + i, pad, (n - i) * sizeof(float));
}

void tanh_forward(float *out, const float *inp, size_t n) { on_spans(tanh_span, out, inp, NULL, n, 0.0f, OPS_PAR_MIN / 8); }

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
