#ifndef MDGAN_NET_H
#define MDGAN_NET_H
// The MD-GAN networks (DESIGN.md section 2): G1 (3-D U-Net with additive skips), G2 (G1
// without the two outermost skips) and the discriminator D (used as D1 and D2).
//
// A Net owns the parameters and everything that lives as long as they do: one arena
// each for parameters, gradients, Adam m, Adam v, and one for the BatchNorm running
// statistics. A table names every tensor with its PyTorch state_dict key. Activations
// live in an Acts, one per (net, batch size) use: D2 judges Y, Y1 and Y2 with the same
// weights but keeps three Acts, since the backward needs each call's activations.
#include <stddef.h>
#include <stdint.h>

#include "mdgan/adam.h"
#include "mdgan/conv.h"
#include "mdgan/rng.h"

#define NET_MAX_LEVELS 12

typedef enum { NET_G1, NET_G2, NET_D } NetKind;

// How BatchNorm normalises in a forward pass.
typedef enum {
    BN_TRAIN,    // batch statistics, running statistics updated (training)
    BN_BATCH,    // batch statistics, running statistics untouched (inference option)
    BN_RUNNING,  // running statistics (inference default)
} BnMode;

typedef struct {
    char name[48];      // state_dict key, e.g. "downBN2.running_mean"
    int ndim;
    int64_t shape[5];
    size_t numel;
    size_t offset;      // into params (trainable) or buffers (running statistics)
    int trainable;
} NetTensor;

typedef struct {
    int in_ch, out_ch;  // BN channels = out_ch of the conv before it
    size_t w;           // offset of the conv weight in params
    int has_bn;         // BN after this layer
    size_t gamma, beta; // offsets in params
    size_t rmean, rvar; // offsets in buffers
} NetLayer;

typedef struct {
    NetKind kind;
    int T, H, W;                          // input extent
    int nf;                               // ngf or ndf
    int L;                                // conv layers in the encoder
    int ch[NET_MAX_LEVELS + 1];           // ch[j]: channels after encoder layer j, ch[0] = 3
    int ext[NET_MAX_LEVELS + 1][3];       // extent after encoder layer j, ext[0] = (T, H, W)
    int geom[NET_MAX_LEVELS + 1][3][3];   // kernel, stride, padding of encoder layer j
    NetLayer down[NET_MAX_LEVELS + 1];    // 1..L
    NetLayer up[NET_MAX_LEVELS + 1];      // 1..L (G only)
    int skip[NET_MAX_LEVELS + 1];         // up layer i adds encoder output L-i (G only)

    float *params;   // trainable, in table order
    float *grads;    // same layout
    float *adam_m, *adam_v;
    size_t nparams;
    float *buffers;  // BN running mean/var
    size_t nbuffers;
    NetTensor *table;
    int ntable;
    long adam_step;  // Adam steps taken (1-based t of the next step is adam_step + 1)
    int64_t bn_batches; // training-mode forwards: PyTorch's num_batches_tracked
} Net;

// Derives the level count and extents from (T, H, W); -1 with a message naming the
// shape when it cannot be built.
int net_levels(int T, int H, int W, int *L, int ext[NET_MAX_LEVELS + 1][3]);

// Builds a net, parameters initialised DCGAN-style from rng (conv weights N(0, 0.02),
// BN gamma N(1, 0.02), beta 0, running mean 0, running var 1); rng may be NULL to
// leave everything zero (a checkpoint fills it).
int net_init(Net *net, NetKind kind, int T, int H, int W, int nf, Rng *rng);
// The same layers and tensor table for inference: parameters and BN buffers only (no
// gradients, no Adam moments: NULL), their values unset until a checkpoint fills them
// all (ckpt_load_net without Adam). net_forward is all it may run.
int net_init_inference(Net *net, NetKind kind, int T, int H, int W, int nf);
void net_free(Net *net);
const char *net_kind_name(NetKind kind); // "G1", "G2", "D"

const NetTensor *net_find(const Net *net, const char *name);
// Pointer to a named tensor's values (params or buffers), its gradient (NULL for buffers).
float *net_tensor_data(const Net *net, const NetTensor *t);
float *net_tensor_grad(const Net *net, const NetTensor *t);
void net_zero_grad(Net *net);
// Every tensor of dst (parameters and running statistics, not Adam's moments) from the
// tensor of src with the same name and shape (G2 from G1: G2 has G1's layers); -1
// naming the first tensor src lacks.
int net_copy_weights(Net *dst, const Net *src);
// One Adam step over every trainable parameter with net->grads (t = ++adam_step).
void net_adam_step(Net *net, const AdamConfig *cfg);

typedef struct {
    const Net *net;
    int N;
    ConvShape conv[NET_MAX_LEVELS + 1];   // encoder layer j (decoder layer i uses conv[L+1-i])
    float *arena;
    size_t arena_floats;
    // encoder: conv output, and the layer output (aliases conv where no BN/activation)
    float *enc_conv[NET_MAX_LEVELS + 1], *enc_out[NET_MAX_LEVELS + 1];
    float *denc_conv[NET_MAX_LEVELS + 1], *denc_out[NET_MAX_LEVELS + 1];
    // decoder: convT output, after BN+ReLU, after the skip add (aliases relu without a skip)
    float *dec_conv[NET_MAX_LEVELS + 1], *dec_relu[NET_MAX_LEVELS + 1], *dec_out[NET_MAX_LEVELS + 1];
    float *ddec_conv[NET_MAX_LEVELS + 1], *ddec_out[NET_MAX_LEVELS + 1];
    float *bn_mean[2][NET_MAX_LEVELS + 1], *bn_rstd[2][NET_MAX_LEVELS + 1]; // [0] encoder, [1] decoder
    float *grad_begin; size_t grad_floats;   // the activation-gradient part of the arena
    const float *input;              // borrowed at forward, used by the backward
    BnMode mode;                     // of the last forward
    int forward_done;
    size_t ws_floats;                // vol2col workspace one call needs
    int inference;                   // acts_init_inference: forward only
} Acts;

int acts_init(Acts *a, const Net *net, int N);
// Activations for net_forward alone (G1, G2): the encoder outputs the skips read, and
// two buffers every other layer takes turns in, so a generator's forward holds about a
// third of what training keeps. Bitwise the same outputs; no backward.
int acts_init_inference(Acts *a, const Net *net, int N);
void acts_free(Acts *a);

// Output of the last forward: G -> (N, 3, T, H, W) in [-1, 1]; D -> logits (N).
const float *acts_output(const Acts *a);
// D only: features after conv1 and conv3 (post-activation) for the Gram matrices.
const float *acts_feature(const Acts *a, int which /* 1 or 3 */);
size_t acts_output_numel(const Acts *a);
size_t acts_feature_numel(const Acts *a, int which);
void acts_feature_shape(const Acts *a, int which, int shape[5]);

// Forward pass of x (N, 3, T, H, W). ws: workspace of at least acts->ws_floats.
void net_forward(Net *net, Acts *a, const float *x, BnMode mode, float *ws);
// Backward of the last forward (BN_TRAIN or BN_BATCH): gradients of the parameters
// accumulate into net->grads; dx (N, 3, T, H, W) += input gradient when not NULL.
// dout: gradient of the output (G: (N,3,T,H,W); D: (N) logits). For D, dfeat1 and
// dfeat3 (nullable) are gradients of the two features.
int net_backward(Net *net, Acts *a, float *dx, const float *dout, const float *dfeat1,
                 const float *dfeat3, float *ws);
// The same without the convolution weight gradients (about a third of the work), for a
// network that only passes gradients through, as D does in the generator's step; the
// BatchNorm parameter gradients still accumulate into net->grads.
int net_backward_input(Net *net, Acts *a, float *dx, const float *dout, const float *dfeat1,
                       const float *dfeat3, float *ws);

#endif
