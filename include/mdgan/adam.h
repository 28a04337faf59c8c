#ifndef MDGAN_ADAM_H
#define MDGAN_ADAM_H
// Adam, as torch.optim.Adam (torch 1.13, single-tensor path, no weight decay, no amsgrad):
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   bc1 = 1 - beta1^t, bc2 = 1 - beta2^t              (double, as PyTorch's Python side)
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)  (float per element)
// Defaults for MD-GAN: lr 2e-4, betas (0.5, 0.999), eps 1e-8.

#include <stddef.h>

typedef struct {
    // double, as PyTorch's Python floats: 1 - 0.999f^t differs from 1 - 0.999^t by 1e-5 relative
    double lr, beta1, beta2, eps;
} AdamConfig;

#define ADAM_DEFAULTS ((AdamConfig){.lr = 2e-4, .beta1 = 0.5, .beta2 = 0.999, .eps = 1e-8})

// One step over n parameters; step counts from 1 (the first update is step 1).
// m and v start at zero. Element-wise, so OpenMP cannot change the result.
void adam_step(float *params,        // (n) updated
               const float *grads,   // (n)
               float *m, float *v,   // (n) first and second moments, updated
               size_t n, long step, const AdamConfig *c);

#endif
