#ifndef MDGAN_OPS_H
#define MDGAN_OPS_H
// Element-wise and normalisation kernels: BatchNorm3d, ReLU, LeakyReLU, tanh, sigmoid,
// and the in-place add of the U-Net skips.
//
// BatchNorm3d sees a (N, C, T, H, W) tensor as (N, C, S) with S = T*H*W; statistics are
// per channel over N*S values. Per-channel sums use double accumulators in a fixed order
// and OpenMP splits channels (static schedule), so the bits depend only on the inputs.
//
// Activation backward passes take the forward OUTPUT, not the input, so the forward may
// run in place (out == inp) and still be differentiated.
// Every backward ACCUMULATES (+=) into its gradients.

#include <stddef.h>

// ---------------------------------------------------------------- BatchNorm3d
// Training mode: normalise with the batch statistics (biased variance),
//   out = (x - mean) * rstd * gamma + beta,   rstd = 1 / sqrt(var + eps),
// save mean and rstd for the backward pass, and, when running_mean is not NULL, update
//   running_mean = (1 - momentum) * running_mean + momentum * mean
//   running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)
// (PyTorch: the running variance takes the UNBIASED batch variance; n = N*S).
// running_mean == NULL is "batch statistics" inference: normalise, touch no running state.
// out must not alias inp (the backward needs inp).
// act: the activation the output then goes through, in the same pass over the data
// (out = act(bn(x)), exactly the values relu_forward / lrelu_forward would give after
// it; the backward needs out and bn's input only).
typedef enum { BN_ACT_NONE, BN_ACT_RELU, BN_ACT_LRELU } BnActKind;
typedef struct {
    BnActKind kind;
    float slope; // BN_ACT_LRELU's negative slope
} BnAct;
void batchnorm_forward_train(float *out,              // (N, C, S)
                             float *mean,             // (C) saved
                             float *rstd,             // (C) saved
                             float *running_mean,     // (C) updated, or NULL
                             float *running_var,      // (C) updated, or NULL with running_mean
                             const float *inp,        // (N, C, S)
                             const float *gamma,      // (C)
                             const float *beta,       // (C)
                             int N, int C, size_t S, float momentum, float eps, BnAct act);

// Evaluation mode: out = (x - running_mean) / sqrt(running_var + eps) * gamma + beta.
void batchnorm_forward_eval(float *out,               // (N, C, S)
                            const float *inp,         // (N, C, S)
                            const float *gamma, const float *beta,                 // (C)
                            const float *running_mean, const float *running_var,   // (C)
                            int N, int C, size_t S, float eps, BnAct act);

// Backward of batchnorm_forward_train (batch statistics, whatever happened to the
// running ones). Any of dinp, dgamma, dbeta may be NULL to skip it.
void batchnorm_backward(float *dinp,                  // (N, C, S) +=
                        float *dgamma, float *dbeta,  // (C) +=
                        const float *dout,            // (N, C, S)
                        const float *inp,             // (N, C, S)
                        const float *mean, const float *rstd,   // (C) saved by the forward
                        const float *gamma,           // (C)
                        int N, int C, size_t S);

// The same through the activation fused into the forward: dout is the gradient of
// act_out = act(bn(x)) (the forward's out), and BatchNorm's own output gradient is
// taken from it on the fly (the bits relu_backward / lrelu_backward would give into a
// zeroed buffer). act_out may be NULL with BN_ACT_NONE.
void batchnorm_backward_act(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *act_out,
                            BnAct act, const float *inp, const float *mean, const float *rstd, const float *gamma,
                            int N, int C, size_t S);

// Backward of batchnorm_forward_eval (the statistics are constants).
void batchnorm_backward_eval(float *dinp,             // (N, C, S) +=
                             float *dgamma, float *dbeta,   // (C) +=
                             const float *dout,       // (N, C, S)
                             const float *inp,        // (N, C, S)
                             const float *gamma,      // (C)
                             const float *running_mean, const float *running_var,  // (C)
                             int N, int C, size_t S, float eps);

// Slow, obviously-right versions in double, one thread (for the tests).
void batchnorm_forward_train_naive(float *out, float *mean, float *rstd, float *running_mean,
                                   float *running_var, const float *inp, const float *gamma,
                                   const float *beta, int N, int C, size_t S, float momentum,
                                   float eps);
void batchnorm_backward_naive(float *dinp, float *dgamma, float *dbeta, const float *dout,
                              const float *inp, const float *mean, const float *rstd,
                              const float *gamma, int N, int C, size_t S);

// ---------------------------------------------------------------- activations
// All over n elements; out may equal inp. Backward: dinp += dout * f'(x), with f'
// written in terms of out = f(x).
void relu_forward(float *out, const float *inp, size_t n);
void relu_backward(float *dinp, const float *dout, const float *out, size_t n);
// out = x > 0 ? x : slope * x  (slope > 0, so out > 0 exactly when x > 0)
void lrelu_forward(float *out, const float *inp, size_t n, float slope);
void lrelu_backward(float *dinp, const float *dout, const float *out, size_t n, float slope);
void tanh_forward(float *out, const float *inp, size_t n);
void tanh_backward(float *dinp, const float *dout, const float *out, size_t n);
void sigmoid_forward(float *out, const float *inp, size_t n);
void sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n);

// y += x (the additive U-Net skips; the backward of y = a + b is a copy of dy to both).
void add_inplace(float *y, const float *x, size_t n);

#endif
