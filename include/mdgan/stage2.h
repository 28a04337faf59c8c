#ifndef MDGAN_STAGE2_H
#define MDGAN_STAGE2_H
// Stage II (Refine-Net): G2 and D2 with their losses (DESIGN.md section 3). G1 is
// frozen: its clip Y1 comes in with the real clip Y.
//   Y2 = G2(Y1)
//   D2: BCE(D2(Y), 1) + BCE(D2(Y2), 0) - lambda_rank * L_rank
//   G2: BCE(D2(Y2), 1) + lambda_l1 * mean|Y - Y2| + lambda_rank * L_rank
//   L_rank = mean_n softplus(d(Y2, Y) - d(Y1, Y)), d = the Gram L1 distance over D2's
//   features after conv1 and conv3, in the form rank_form (loss.h: RANK_PAPER, or
//   RANK_BOUNDED with each layer's distance divided by |g(Y)|_1).
// One step updates D2 (which judges Y, Y1 and Y2, in that order, with shared weights),
// then G2 against the updated D2 (which judges the three again, in the same order).
#include "mdgan/adam.h"
#include "mdgan/loss.h"
#include "mdgan/net.h"

typedef struct {
    int N, T, H, W;
    float lambda_l1, lambda_rank;
    RankForm rank_form;       // the distance of L_rank (refine.rank_form)
    AdamConfig opt_g, opt_d;
    Net g, d;
    Acts ag;                  // G2 at batch N
    Acts ad[3];               // D2 on [Y, Y1, Y2]: each call's activations for its backward
    Acts ainf;                // G2 at batch 1 (inference)
    RankShape rank;           // D2's two feature layers at batch N
    float *ws;                // vol2col workspace shared by every layer and call
    float *rank_ws;           // rank_loss_features workspace
    float *dfeat[2][3];       // gradients of D2's features [layer][Y, Y1, Y2]
    float *dlogit[3];         // (N) gradients of D2's logits for [Y, Y1, Y2]
    float *dy2;               // (N, 3, T, H, W) gradient at G2's output
} Stage2;

typedef struct {
    float d_real, d_fake;     // BCE(D2(Y), 1), BCE(D2(Y2), 0)
    float d_rank;             // L_rank as D2 saw it in its step
    float g_adv, g_l1, g_rank; // G2's three terms (before their lambdas)
} Stage2Losses;

// Builds G2 (ngf) and D2 (ndf) for clips of T x H x W, batch N; weights from rng
// (NULL: zeros, for a checkpoint to fill). rank_form: RANK_PAPER or RANK_BOUNDED (from
// the config: rank_form_parse(cfg.refine.rank_form, &form)).
int stage2_init(Stage2 *s, int N, int T, int H, int W, int ngf, int ndf, float lambda_l1, float lambda_rank,
                RankForm rank_form, const AdamConfig *opt_g, const AdamConfig *opt_d, Rng *rng);
void stage2_free(Stage2 *s);

// One training step on real clips y and G1's clips y1 (both (N, 3, T, H, W) in [-1, 1]).
void stage2_step(Stage2 *s, const float *y, const float *y1, Stage2Losses *out);

// G2's output of the last step (N, 3, T, H, W).
const float *stage2_output(const Stage2 *s);

// G2's refinement (1, 3, T, H, W) of one clip y1, BatchNorm on running statistics;
// the pointer stays valid until the next call.
const float *stage2_predict(Stage2 *s, const float *y1);

#endif
