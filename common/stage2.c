#include "mdgan/stage2.h"

#include <stdlib.h>
#include <string.h>

#include "mdgan/error.h"

enum { Y_REAL, Y_BASE, Y_REFINED }; // D2's three inputs: Y, Y1, Y2

int stage2_init(Stage2 *s, int N, int T, int H, int W, int ngf, int ndf, float lambda_l1, float lambda_rank,
                RankForm rank_form, const AdamConfig *opt_g, const AdamConfig *opt_d, Rng *rng) {
    memset(s, 0, sizeof *s);
    if (rank_form != RANK_PAPER && rank_form != RANK_BOUNDED) {
        MDGAN_ERR("Stage II: ranking-loss form %d is neither RANK_PAPER nor RANK_BOUNDED", (int)rank_form);
        return -1;
    }
    s->N = N, s->T = T, s->H = H, s->W = W;
    s->lambda_l1 = lambda_l1, s->lambda_rank = lambda_rank, s->rank_form = rank_form;
    s->opt_g = *opt_g, s->opt_d = *opt_d;
    if (net_init(&s->g, NET_G2, T, H, W, ngf, rng) != 0 || net_init(&s->d, NET_D, T, H, W, ndf, rng) != 0 ||
        acts_init(&s->ag, &s->g, N) != 0 || acts_init_inference(&s->ainf, &s->g, 1) != 0) {
        stage2_free(s);
        return -1;
    }
    for (int k = 0; k < 3; k++)
        if (acts_init(&s->ad[k], &s->d, N) != 0) {
            stage2_free(s);
            return -1;
        }
    int shape[5];
    s->rank.N = N;
    for (int l = 0; l < 2; l++) {
        acts_feature_shape(&s->ad[0], l == 0 ? 1 : 3, shape);
        s->rank.C[l] = shape[1], s->rank.T[l] = shape[2], s->rank.H[l] = shape[3], s->rank.W[l] = shape[4];
    }
    size_t ws = s->ag.ws_floats > s->ad[0].ws_floats ? s->ag.ws_floats : s->ad[0].ws_floats;
    int ok = (s->ws = malloc(ws * sizeof(float))) != NULL;
    ok = ok && (s->rank_ws = malloc(rank_loss_workspace_floats(&s->rank) * sizeof(float))) != NULL;
    ok = ok && (s->dy2 = malloc((size_t)N * 3 * T * H * W * sizeof(float))) != NULL;
    for (int k = 0; k < 3 && ok; k++) {
        ok = (s->dlogit[k] = malloc((size_t)N * sizeof(float))) != NULL;
        for (int l = 0; l < 2 && ok; l++)
            ok = (s->dfeat[l][k] = malloc(acts_feature_numel(&s->ad[0], l == 0 ? 1 : 3) * sizeof(float))) != NULL;
    }
    if (!ok) {
        MDGAN_ERR("out of memory for Stage II buffers (batch %d, %d frames of %dx%d)", N, T, H, W);
        stage2_free(s);
        return -1;
    }
    return 0;
}

void stage2_free(Stage2 *s) {
    acts_free(&s->ag), acts_free(&s->ainf);
    for (int k = 0; k < 3; k++) {
        acts_free(&s->ad[k]);
        free(s->dlogit[k]);
        for (int l = 0; l < 2; l++) free(s->dfeat[l][k]);
    }
    net_free(&s->g), net_free(&s->d);
    free(s->ws), free(s->rank_ws), free(s->dy2);
    memset(s, 0, sizeof *s);
}

// D2 on [Y, Y1, Y2] in that order (training mode: each call updates the running
// statistics, as three calls of the PyTorch module do); the feature pointers for the
// ranking loss.
static void judge_three(Stage2 *s, const float *const inputs[3], const float *feat[2][3]) {
    for (int k = 0; k < 3; k++) {
        net_forward(&s->d, &s->ad[k], inputs[k], BN_TRAIN, s->ws);
        feat[0][k] = acts_feature(&s->ad[k], 1);
        feat[1][k] = acts_feature(&s->ad[k], 3);
    }
}

// The feature gradients of inputs [k0, k1) zeroed (the generator's step uses only Y2's:
// zeroing all three was two thirds wasted, 8 MB a step at the CPU shape).
static void zero_feature_grads(Stage2 *s, int k0, int k1) {
    for (int l = 0; l < 2; l++)
        for (int k = k0; k < k1; k++)
            memset(s->dfeat[l][k], 0, acts_feature_numel(&s->ad[k], l == 0 ? 1 : 3) * sizeof(float));
}

void stage2_step(Stage2 *s, const float *y, const float *y1, Stage2Losses *out) {
    const int N = s->N;
    const size_t n = (size_t)N * 3 * s->T * s->H * s->W;
    net_forward(&s->g, &s->ag, y1, BN_TRAIN, s->ws);
    const float *y2 = acts_output(&s->ag);
    const float *const inputs[3] = {y, y1, y2};
    const float *feat[2][3];

    // D2 step (Y2 is a constant here): BCE(D2(Y), 1) + BCE(D2(Y2), 0) - lambda_rank * L_rank
    judge_three(s, inputs, feat);
    out->d_real = bce_logits_forward(acts_output(&s->ad[Y_REAL]), 1.0f, N);
    out->d_fake = bce_logits_forward(acts_output(&s->ad[Y_REFINED]), 0.0f, N);
    zero_feature_grads(s, 0, 3);
    out->d_rank = rank_loss_features(s->dfeat, NULL, feat, &s->rank, s->rank_form, -s->lambda_rank, s->rank_ws);
    for (int k = 0; k < 3; k++) memset(s->dlogit[k], 0, (size_t)N * sizeof(float));
    bce_logits_backward(s->dlogit[Y_REAL], acts_output(&s->ad[Y_REAL]), 1.0f, N, 1.0f);
    bce_logits_backward(s->dlogit[Y_REFINED], acts_output(&s->ad[Y_REFINED]), 0.0f, N, 1.0f);
    net_zero_grad(&s->d);
    for (int k = 0; k < 3; k++) // D2's logit on Y1 is not in its loss: only the features pass gradients
        net_backward(&s->d, &s->ad[k], NULL, s->dlogit[k], s->dfeat[0][k], s->dfeat[1][k], s->ws);
    net_adam_step(&s->d, &s->opt_d);

    // G2 step against the updated D2: BCE(D2(Y2), 1) + lambda_l1 * L1 + lambda_rank * L_rank
    judge_three(s, inputs, feat);
    out->g_adv = bce_logits_forward(acts_output(&s->ad[Y_REFINED]), 1.0f, N);
    out->g_l1 = l1_forward(y2, y, n);
    float *dfeat_y2_only[2][3] = {{NULL, NULL, s->dfeat[0][Y_REFINED]}, {NULL, NULL, s->dfeat[1][Y_REFINED]}};
    zero_feature_grads(s, Y_REFINED, Y_REFINED + 1);
    out->g_rank = rank_loss_features(dfeat_y2_only, NULL, feat, &s->rank, s->rank_form, s->lambda_rank,
                                    s->rank_ws);
    memset(s->dlogit[Y_REFINED], 0, (size_t)N * sizeof(float));
    bce_logits_backward(s->dlogit[Y_REFINED], acts_output(&s->ad[Y_REFINED]), 1.0f, N, 1.0f);
    memset(s->dy2, 0, n * sizeof(float));
    net_backward_input(&s->d, &s->ad[Y_REFINED], s->dy2, s->dlogit[Y_REFINED], s->dfeat[0][Y_REFINED],
                       s->dfeat[1][Y_REFINED], s->ws);
    l1_backward(s->dy2, y2, y, n, s->lambda_l1);
    net_zero_grad(&s->g);
    net_backward(&s->g, &s->ag, NULL, s->dy2, NULL, NULL, s->ws);
    net_adam_step(&s->g, &s->opt_g);
}

const float *stage2_output(const Stage2 *s) { return acts_output(&s->ag); }

const float *stage2_predict(Stage2 *s, const float *y1) {
    net_forward(&s->g, &s->ainf, y1, BN_RUNNING, s->ws);
    return acts_output(&s->ainf);
}
