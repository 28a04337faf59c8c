#ifndef MDGAN_LOSS_H
#define MDGAN_LOSS_H
// Losses of DESIGN.md section 3: BCE from logits, mean L1, Gram matrices of D2's
// features, their L1 distances and the ranking loss.
// Loss values are summed in double in a fixed order and returned as float.
// Backward passes ACCUMULATE (+=) scale * dL/dinput; scale carries the loss weight and
// its sign (D2 plays the ranking loss with -lambda, G2 with +lambda).

#include <stddef.h>

// ---------------------------------------------------------------- BCE and L1
// mean over n of BCE(sigmoid(x), t) for one target t (0 or 1 here), in the stable form
//   max(x, 0) - x * t + log1p(exp(-|x|))
float bce_logits_forward(const float *logits, float target, size_t n);
// dlogits += scale * (sigmoid(x) - t) / n
void bce_logits_backward(float *dlogits, const float *logits, float target, size_t n, float scale);

// mean over n of |a - b|
float l1_forward(const float *a, const float *b, size_t n);
// da += scale * sign(a - b) / n, sign(0) = 0 as PyTorch
void l1_backward(float *da, const float *a, const float *b, size_t n, float scale);

// ---------------------------------------------------------------- Gram matrices
// A feature map (N, C, T, H, W) is, per sample, an M x S matrix with M = C*T, S = H*W.
// g = x x^T / (M*S), its upper half computed by OpenBLAS (ssyrk and sgemm, in the two
// units rank_loss_features runs on two threads, so the same bits) and mirrored, so g is
// exactly symmetric. Call these outside any OpenMP parallel region.
void gram_forward(float *g,        // (N, M, M)
                  const float *x,  // (N, M, S)
                  int N, int M, size_t S);
// dx += (dg + dg^T) x / (M*S). One sgemm when dg is exactly symmetric (as every dg
// from the distance below is), two otherwise.
void gram_backward(float *dx,       // (N, M, S) +=
                   const float *dg, // (N, M, M)
                   const float *x,  // (N, M, S)
                   int N, int M, size_t S);
void gram_forward_naive(float *g, const float *x, int N, int M, size_t S);
void gram_backward_naive(float *dx, const float *dg, const float *x, int N, int M, size_t S);

// d[n] = sum_ij |ga[n,i,j] - gb[n,i,j]|
void gram_l1_distance(float *d,                        // (N)
                      const float *ga, const float *gb, // (N, M, M)
                      int N, int M);
// dga += dd[n] * sign(ga - gb), dgb -= dd[n] * sign(ga - gb); either may be NULL.
void gram_l1_distance_backward(float *dga, float *dgb,         // (N, M, M) +=
                               const float *dd,                // (N)
                               const float *ga, const float *gb, int N, int M);

// L_rank = mean over n of softplus(d2[n] - d1[n]) = -log(e^-d2 / (e^-d2 + e^-d1)),
// d2 = d(Y2, Y), d1 = d(Y1, Y).
float rank_loss(const float *d2, const float *d1, int N);
// dd2 += scale * sigmoid(d2 - d1) / N, dd1 -= the same; either may be NULL.
void rank_loss_backward(float *dd2, float *dd1, const float *d2, const float *d1, int N,
                        float scale);

// ---------------------------------------------------------------- the whole D2 ranking term
// Feature layer l (0: after conv1, 1: after conv3) has shape (N, C[l], T[l], H[l], W[l])
// for each of the three inputs of D2, indexed [Y, Y1, Y2].
typedef struct {
    int N;
    int C[2], T[2], H[2], W[2];
} RankShape;

// The distance of the ranking loss (config key refine.rank_form), per sample, with
// |.|_1 the entrywise L1 norm and g_l the Gram matrix of feature layer l:
//   RANK_PAPER    d(A, Y) = sum_l |g_l(A) - g_l(Y)|_1
//   RANK_BOUNDED  d(A, Y) = sum_l |g_l(A) - g_l(Y)|_1 / (|g_l(Y)|_1 + RANK_BOUNDED_EPS)
// The bounded form does not change when D2 scales its features (a Gram scales by the
// square of the factor, numerator and denominator alike), so D2 cannot raise the loss
// by inflating them; its gradient includes the denominator's dependence on Y. The eps
// only keeps an all-zero g_l(Y) finite; it is far below any real |g_l(Y)|_1.
typedef enum { RANK_PAPER, RANK_BOUNDED } RankForm;
#define RANK_BOUNDED_EPS 1e-12
// "paper" / "bounded" <-> RankForm. rank_form_parse: -1 with a message naming the
// allowed values for any other text.
int rank_form_parse(const char *name, RankForm *form);
const char *rank_form_name(RankForm form);

// Floats of workspace rank_loss_features needs: the six Gram matrices of every sample,
// 64 rows of a gradient Gram per thread and six coefficients per sample:
// N*(3*(M0^2 + M1^2) + 6) + CONV_MAX_THREADS*64*max(M0, M1) with M_l = C[l]*T[l] (either
// form; the rows of threads not in use are never touched).
size_t rank_loss_workspace_floats(const RankShape *s);

// Returns L_rank = mean_n softplus(d(Y2,Y)[n] - d(Y1,Y)[n]) with d of the given form.
// dist, if not NULL, receives d(Y1,Y) in dist[0..N) and d(Y2,Y) in dist[N..2N).
// For every non-NULL dfeat[l][k] (dfeat itself may be NULL), accumulates
//   dfeat[l][k] += scale * dL_rank / dfeat[l][k].
// The Gram products run on OpenMP threads in units fixed by the shape (half a Gram's
// upper triangle, 64 rows of an input gradient), each with one-threaded products, so
// the result does not depend on the thread count. Not from inside an OpenMP region.
float rank_loss_features(float *dfeat[2][3],          // [layer][Y, Y1, Y2] each (N, C, T, H, W) +=, nullable
                         float *dist,                  // (2, N) or NULL
                         const float *feat[2][3],      // [layer][Y, Y1, Y2] each (N, C, T, H, W)
                         const RankShape *s, RankForm form, float scale,
                         float *ws);                   // rank_loss_workspace_floats(s)

#endif
