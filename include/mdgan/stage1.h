#ifndef MDGAN_STAGE1_H
#define MDGAN_STAGE1_H
// Stage I (Base-Net): G1 and D1 with their losses (DESIGN.md section 3).
//   D1: BCE(D1(Y), 1) + BCE(D1(Y1), 0)
//   G1: BCE(D1(Y1), 1) + lambda_l1 * mean|Y - Y1|,   Y1 = G1(X), X = Y's first frame x T
// One step updates D1, then G1 against the updated D1 (the usual alternating GAN step).
#include "mdgan/adam.h"
#include "mdgan/net.h"

typedef struct {
    int N, T, H, W;
    float lambda_l1;
    AdamConfig opt_g, opt_d;
    Net g, d;
    Acts ag;                 // G1 at batch N (training)
    Acts ad;                 // D1's activations: on Y, then on Y1 (each call's backward runs before the next call)
    Acts ainf;               // G1 at batch 1 (inference on validation clips)
    float *ws;               // vol2col workspace shared by every layer and call
    float *x;                // (N, 3, T, H, W) the first frame repeated
    float *dy1;              // (N, 3, T, H, W) gradient at G1's output
    float *dlogit;           // (N)
    float *x1;               // (1, 3, T, H, W) inference input
} Stage1;

typedef struct {
    float d_real, d_fake;    // the two halves of the D1 loss
    float g_adv, g_l1;       // G1's adversarial and L1 terms (before lambda)
} Stage1Losses;

// Builds G1 (ngf) and D1 (ndf) for clips of T x H x W, batch N; weights from rng.
int stage1_init(Stage1 *s, int N, int T, int H, int W, int ngf, int ndf, float lambda_l1,
                const AdamConfig *opt_g, const AdamConfig *opt_d, Rng *rng);
void stage1_free(Stage1 *s);

// x (N, 3, T, H, W) = y's first frame, repeated T times.
void stage1_repeat_first_frame(float *x, const float *y, int N, int T, int H, int W);

// One training step on real clips y (N, 3, T, H, W) in [-1, 1].
void stage1_step(Stage1 *s, const float *y, Stage1Losses *out);

// G1's prediction (1, 3, T, H, W) from clip y's first frame, BatchNorm on running
// statistics; the pointer stays valid until the next call.
const float *stage1_predict(Stage1 *s, const float *y);

#endif
