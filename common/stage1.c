#include "mdgan/stage1.h"

#include <stdlib.h>
#include <string.h>

#include "mdgan/error.h"
#include "mdgan/loss.h"

int stage1_init(Stage1 *s, int N, int T, int H, int W, int ngf, int ndf, float lambda_l1,
                const AdamConfig *opt_g, const AdamConfig *opt_d, Rng *rng) {
    memset(s, 0, sizeof *s);
    s->N = N, s->T = T, s->H = H, s->W = W;
    s->lambda_l1 = lambda_l1, s->opt_g = *opt_g, s->opt_d = *opt_d;
    if (net_init(&s->g, NET_G1, T, H, W, ngf, rng) != 0 || net_init(&s->d, NET_D, T, H, W, ndf, rng) != 0 ||
        acts_init(&s->ag, &s->g, N) != 0 || acts_init(&s->ad, &s->d, N) != 0 ||
        acts_init_inference(&s->ainf, &s->g, 1) != 0) {
        stage1_free(s);
        return -1;
    }
    size_t ws = s->ag.ws_floats > s->ad.ws_floats ? s->ag.ws_floats : s->ad.ws_floats;
    size_t clip = (size_t)3 * T * H * W;
    s->ws = malloc(ws * sizeof(float));
    s->x = malloc((size_t)N * clip * sizeof(float));
    s->dy1 = malloc((size_t)N * clip * sizeof(float));
    s->dlogit = malloc((size_t)N * sizeof(float));
    s->x1 = malloc(clip * sizeof(float));
    if (!s->ws || !s->x || !s->dy1 || !s->dlogit || !s->x1) {
        MDGAN_ERR("out of memory for Stage I buffers (batch %d, %d frames of %dx%d)", N, T, H, W);
        stage1_free(s);
        return -1;
    }
    return 0;
}

void stage1_free(Stage1 *s) {
    acts_free(&s->ag), acts_free(&s->ad), acts_free(&s->ainf);
    net_free(&s->g), net_free(&s->d);
    free(s->ws), free(s->x), free(s->dy1), free(s->dlogit), free(s->x1);
    memset(s, 0, sizeof *s);
}

void stage1_repeat_first_frame(float *x, const float *y, int N, int T, int H, int W) {
    const size_t plane = (size_t)H * W;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < 3; c++) {
            const float *first = y + (((size_t)n * 3 + c) * T) * plane;
            float *dst = x + (((size_t)n * 3 + c) * T) * plane;
            for (int t = 0; t < T; t++) memcpy(dst + (size_t)t * plane, first, plane * sizeof(float));
        }
}

void stage1_step(Stage1 *s, const float *y, Stage1Losses *out) {
    const int N = s->N;
    const size_t n = (size_t)N * 3 * s->T * s->H * s->W;
    stage1_repeat_first_frame(s->x, y, N, s->T, s->H, s->W);
    net_forward(&s->g, &s->ag, s->x, BN_TRAIN, s->ws);
    const float *y1 = acts_output(&s->ag);

    // D1 step: real clips toward 1, generated toward 0 (Y1 is a constant here). The two
    // terms are separate calls (separate BatchNorm batches), so each call's backward
    // runs right after it and one set of activations serves both: the same arithmetic
    // in the same order as two sets (running statistics real then generated, gradients
    // real then generated), with D1's activations held once.
    net_zero_grad(&s->d);
    net_forward(&s->d, &s->ad, y, BN_TRAIN, s->ws);
    out->d_real = bce_logits_forward(acts_output(&s->ad), 1.0f, N);
    memset(s->dlogit, 0, N * sizeof(float));
    bce_logits_backward(s->dlogit, acts_output(&s->ad), 1.0f, N, 1.0f);
    net_backward(&s->d, &s->ad, NULL, s->dlogit, NULL, NULL, s->ws);
    net_forward(&s->d, &s->ad, y1, BN_TRAIN, s->ws);
    out->d_fake = bce_logits_forward(acts_output(&s->ad), 0.0f, N);
    memset(s->dlogit, 0, N * sizeof(float));
    bce_logits_backward(s->dlogit, acts_output(&s->ad), 0.0f, N, 1.0f);
    net_backward(&s->d, &s->ad, NULL, s->dlogit, NULL, NULL, s->ws);
    net_adam_step(&s->d, &s->opt_d);

    // G1 step against the updated D1: BCE(D1(Y1), 1) + lambda * mean|Y1 - Y|
    net_forward(&s->d, &s->ad, y1, BN_TRAIN, s->ws);
    out->g_adv = bce_logits_forward(acts_output(&s->ad), 1.0f, N);
    out->g_l1 = l1_forward(y1, y, n);
    memset(s->dlogit, 0, N * sizeof(float));
    bce_logits_backward(s->dlogit, acts_output(&s->ad), 1.0f, N, 1.0f);
    memset(s->dy1, 0, n * sizeof(float));
    // only dL/dY1 is needed from D1 here (its gradients are zeroed before its next step)
    net_backward_input(&s->d, &s->ad, s->dy1, s->dlogit, NULL, NULL, s->ws);
    l1_backward(s->dy1, y1, y, n, s->lambda_l1);
    net_zero_grad(&s->g);
    net_backward(&s->g, &s->ag, NULL, s->dy1, NULL, NULL, s->ws);
    net_adam_step(&s->g, &s->opt_g);
}

const float *stage1_predict(Stage1 *s, const float *y) {
    stage1_repeat_first_frame(s->x1, y, 1, s->T, s->H, s->W);
    net_forward(&s->g, &s->ainf, s->x1, BN_RUNNING, s->ws);
    return acts_output(&s->ainf);
}
