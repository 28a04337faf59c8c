// G1, G2 and D: construction, parameter table, forward and backward.
// Layer numbering follows the released model: encoder layers j = 1..L (downConv j),
// decoder layers i = 1..L (upConv i), where upConv i is the transpose of downConv L+1-i
// and (for i < L) its output is added to the output of encoder layer L-i.
#include "mdgan/net.h"

#include "mdgan/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdgan/error.h"
#include "mdgan/ops.h"

#define BN_MOMENTUM 0.1f
#define BN_EPS 1e-5f
#define LRELU_SLOPE 0.2f

static size_t volume(const int e[3]) { return (size_t)e[0] * e[1] * e[2]; }

int net_levels(int T, int H, int W, int *L, int ext[NET_MAX_LEVELS + 1][3]) {
    if (T < 1 || H < 2 || W < 2 || H % 2 || W % 2) {
        MDGAN_ERR("cannot build the networks for %d frames of %dx%d: frames must be >= 1 and the "
                  "height and width even", T, H, W);
        return -1;
    }
    int t = T, h = H / 2, w = W / 2, n_down = 0;
    ext[0][0] = T, ext[0][1] = H, ext[0][2] = W;
    ext[1][0] = t, ext[1][1] = h, ext[1][2] = w;
    // Halve (t, h, w) with k4 s2 p1 convolutions while every axis halves exactly and
    // the spatial extent stays >= 4; the last layer then covers what remains.
    while (t % 2 == 0 && h % 2 == 0 && w % 2 == 0 && h / 2 >= 4 && w / 2 >= 4 && n_down + 2 < NET_MAX_LEVELS) {
        t /= 2, h /= 2, w /= 2;
        n_down++;
        ext[1 + n_down][0] = t, ext[1 + n_down][1] = h, ext[1 + n_down][2] = w;
    }
    if (n_down < 2) {
        MDGAN_ERR("cannot build the networks for %d frames of %dx%d: the encoder must halve frames, "
                  "height/2 and width/2 at least twice down to a spatial size >= 4 (e.g. 8 frames of 32x32, "
                  "32 frames of 64x64 or 128x128)", T, H, W);
        return -1;
    }
    *L = n_down + 2;
    ext[*L][0] = ext[*L][1] = ext[*L][2] = 1;
    return 0;
}

const char *net_kind_name(NetKind kind) { return kind == NET_G1 ? "G1" : kind == NET_G2 ? "G2" : "D"; }

// Adds a tensor to the table and returns its offset in its arena.
static size_t add_tensor(Net *net, size_t *used, int trainable, int ndim, const int64_t *shape, const char *fmt,
                         int idx, const char *suffix) {
    NetTensor *t = &net->table[net->ntable++];
    snprintf(t->name, sizeof t->name, fmt, idx, suffix);
    t->ndim = ndim;
    t->numel = 1;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d], t->numel *= (size_t)shape[d];
    t->trainable = trainable;
    t->offset = *used;
    *used += t->numel;
    return t->offset;
}

static void add_conv(Net *net, NetLayer *ly, size_t *np, const char *fmt, int idx, int d0, int d1, const int k[3]) {
    const int64_t shape[5] = {d0, d1, k[0], k[1], k[2]};
    ly->w = add_tensor(net, np, 1, 5, shape, fmt, idx, "weight");
}

static void add_bn(Net *net, NetLayer *ly, size_t *np, size_t *nb, const char *fmt, int idx, int C) {
    const int64_t shape[1] = {C};
    ly->has_bn = 1;
    ly->gamma = add_tensor(net, np, 1, 1, shape, fmt, idx, "weight");
    ly->beta = add_tensor(net, np, 1, 1, shape, fmt, idx, "bias");
    ly->rmean = add_tensor(net, nb, 0, 1, shape, fmt, idx, "running_mean");
    ly->rvar = add_tensor(net, nb, 0, 1, shape, fmt, idx, "running_var");
}

// The layers, the tensor table and the arenas; training adds gradients and Adam moments.
static int net_build(Net *net, NetKind kind, int T, int H, int W, int nf, int training) {
    memset(net, 0, sizeof *net);
    if (nf < 1 || nf > 4096) {
        MDGAN_ERR("network width %d is out of range (1..4096)", nf);
        return -1;
    }
    int L;
    if (net_levels(T, H, W, &L, net->ext) != 0) return -1;
    net->kind = kind, net->T = T, net->H = H, net->W = W, net->nf = nf, net->L = L;
    net->ch[0] = 3;
    for (int j = 1; j < L; j++) net->ch[j] = nf * (j - 1 < 4 ? 1 << (j - 1) : 16);
    net->ch[L] = kind == NET_D ? 1 : net->ch[L - 1];
    for (int j = 1; j <= L; j++) {
        int(*g)[3] = net->geom[j];
        if (j == 1) { // k(3,4,4) s(1,2,2) p(1,1,1)
            g[0][0] = 3, g[0][1] = 4, g[0][2] = 4, g[1][0] = 1, g[1][1] = 2, g[1][2] = 2;
            g[2][0] = g[2][1] = g[2][2] = 1;
        } else if (j < L) { // k4 s2 p1
            g[0][0] = g[0][1] = g[0][2] = 4, g[1][0] = g[1][1] = g[1][2] = 2, g[2][0] = g[2][1] = g[2][2] = 1;
        } else { // the whole remaining extent, s1 p0
            for (int a = 0; a < 3; a++) g[0][a] = net->ext[L - 1][a], g[1][a] = 1, g[2][a] = 0;
        }
    }
    net->table = calloc((size_t)4 * 6 * (NET_MAX_LEVELS + 1), sizeof(NetTensor));
    if (!net->table) {
        MDGAN_ERR("out of memory building %s", net_kind_name(kind));
        return -1;
    }
    size_t np = 0, nb = 0;
    // state_dict order of the released model: downConv*, downBN*, upConv*, upBN*
    const int is_g = kind != NET_D;
    for (int j = 1; j <= L; j++) {
        net->down[j].in_ch = net->ch[j - 1], net->down[j].out_ch = net->ch[j];
        add_conv(net, &net->down[j], &np, is_g ? "downConv%d.%s" : "conv%d.%s", j, net->ch[j], net->ch[j - 1],
                 net->geom[j][0]);
    }
    for (int j = 2; j < L; j++) add_bn(net, &net->down[j], &np, &nb, is_g ? "downBN%d.%s" : "bn%d.%s", j, net->ch[j]);
    if (is_g) {
        for (int i = 1; i <= L; i++) {
            int j = L + 1 - i; // mirrored encoder layer; ConvTranspose3d weight (in, out, k)
            net->up[i].in_ch = net->ch[j], net->up[i].out_ch = net->ch[j - 1];
            add_conv(net, &net->up[i], &np, "upConv%d.%s", i, net->ch[j], net->ch[j - 1], net->geom[j][0]);
            // G2 drops the skips onto encoder layers 1 and 2 (decoder layers L-1 and L-2)
            net->skip[i] = i < L && !(kind == NET_G2 && (i == L - 1 || i == L - 2));
        }
        for (int i = 1; i < L; i++) add_bn(net, &net->up[i], &np, &nb, "upBN%d.%s", i, net->ch[L - i]);
    }
    net->nparams = np, net->nbuffers = nb;
    // inference fills every value from a file: malloc, nothing written before that
    net->params = training ? mem_calloc_big(np, sizeof(float)) : mem_alloc_big(np * sizeof(float));
    net->buffers = training ? calloc(nb ? nb : 1, sizeof(float)) : malloc((nb ? nb : 1) * sizeof(float));
    if (training) {
        net->grads = mem_calloc_big(np, sizeof(float));
        net->adam_m = mem_calloc_big(np, sizeof(float));
        net->adam_v = mem_calloc_big(np, sizeof(float));
    }
    if (!net->params || !net->buffers || (training && (!net->grads || !net->adam_m || !net->adam_v))) {
        MDGAN_ERR("out of memory for %zu parameters of %s", np, net_kind_name(kind));
        net_free(net);
        return -1;
    }
    return 0;
}

int net_init_inference(Net *net, NetKind kind, int T, int H, int W, int nf) {
    return net_build(net, kind, T, H, W, nf, 0);
}

int net_init(Net *net, NetKind kind, int T, int H, int W, int nf, Rng *rng) {
    if (net_build(net, kind, T, H, W, nf, 1) != 0) return -1;
    for (int k = 0; k < net->ntable; k++) {
        const NetTensor *t = &net->table[k];
        float *p = net_tensor_data(net, t);
        const char *field = strrchr(t->name, '.') + 1;
        int is_bn = strstr(t->name, "BN") || strncmp(t->name, "bn", 2) == 0;
        for (size_t e = 0; e < t->numel; e++) {
            if (!strcmp(field, "running_var")) p[e] = 1.0f;
            else if (!rng || !strcmp(field, "bias") || !strcmp(field, "running_mean")) p[e] = 0.0f;
            else if (is_bn) p[e] = 1.0f + 0.02f * rng_normal(rng);
            else p[e] = 0.02f * rng_normal(rng);
        }
    }
    return 0;
}

void net_free(Net *net) {
    mem_free_big(net->params), mem_free_big(net->grads), mem_free_big(net->adam_m), mem_free_big(net->adam_v);
    free(net->buffers);
    free(net->table);
    memset(net, 0, sizeof *net);
}

const NetTensor *net_find(const Net *net, const char *name) {
    for (int k = 0; k < net->ntable; k++)
        if (!strcmp(net->table[k].name, name)) return &net->table[k];
    return NULL;
}

float *net_tensor_data(const Net *net, const NetTensor *t) {
    return (t->trainable ? net->params : net->buffers) + t->offset;
}

float *net_tensor_grad(const Net *net, const NetTensor *t) {
    return t->trainable ? net->grads + t->offset : NULL;
}

void net_zero_grad(Net *net) { memset(net->grads, 0, net->nparams * sizeof(float)); }

void net_adam_step(Net *net, const AdamConfig *cfg) {
    net->adam_step++;
    adam_step(net->params, net->grads, net->adam_m, net->adam_v, net->nparams, net->adam_step, cfg);
}

// ---------------------------------------------------------------- activations

// Encoder layers with a LeakyReLU: every one of D's but the last; G's between 1 and L.
static int enc_has_act(const Net *net, int j) {
    return j < net->L && (net->kind == NET_D || j > 1);
}

typedef struct { float **ptr; size_t n; } Slot;

// What both kinds of activations start with: the batch, every layer's convolution
// shape, and the largest vol2col workspace one of them needs.
static int acts_shapes(Acts *a, const Net *net, int N) {
    memset(a, 0, sizeof *a);
    if (N < 1) {
        MDGAN_ERR("batch size %d must be >= 1", N);
        return -1;
    }
    a->net = net, a->N = N;
    for (int j = 1; j <= net->L; j++) {
        if (conv3d_shape(&a->conv[j], N, net->ch[j - 1], net->ch[j], net->ext[j - 1][0], net->ext[j - 1][1],
                         net->ext[j - 1][2], net->geom[j][0], net->geom[j][1], net->geom[j][2]) != 0)
            return -1;
        size_t ws = conv_workspace_floats(&a->conv[j]);
        if (ws > a->ws_floats) a->ws_floats = ws;
    }
    return 0;
}

int acts_init(Acts *a, const Net *net, int N) {
    if (acts_shapes(a, net, N) != 0) return -1;
    const int L = net->L;
    Slot fwd[8 * (NET_MAX_LEVELS + 1)], bwd[8 * (NET_MAX_LEVELS + 1)];
    int nf = 0, nbk = 0;
    for (int j = 1; j <= L; j++) {
        size_t n = (size_t)N * net->ch[j] * volume(net->ext[j]);
        fwd[nf++] = (Slot){&a->enc_conv[j], n};
        if (net->down[j].has_bn) fwd[nf++] = (Slot){&a->enc_out[j], n};
        bwd[nbk++] = (Slot){&a->denc_out[j], n};
        if (enc_has_act(net, j)) bwd[nbk++] = (Slot){&a->denc_conv[j], n};
        if (net->down[j].has_bn) {
            fwd[nf++] = (Slot){&a->bn_mean[0][j], (size_t)net->ch[j]};
            fwd[nf++] = (Slot){&a->bn_rstd[0][j], (size_t)net->ch[j]};
        }
    }
    if (net->kind != NET_D) {
        for (int i = 1; i <= L; i++) {
            int C = net->ch[L - i];
            size_t n = (size_t)N * C * volume(net->ext[L - i]);
            fwd[nf++] = (Slot){&a->dec_conv[i], n};
            bwd[nbk++] = (Slot){&a->ddec_conv[i], n};
            if (i < L) {
                fwd[nf++] = (Slot){&a->dec_relu[i], n};
                if (net->skip[i]) fwd[nf++] = (Slot){&a->dec_out[i], n};
                bwd[nbk++] = (Slot){&a->ddec_out[i], n};
                fwd[nf++] = (Slot){&a->bn_mean[1][i], (size_t)C};
                fwd[nf++] = (Slot){&a->bn_rstd[1][i], (size_t)C};
            }
        }
    }
    size_t total = 0;
    for (int k = 0; k < nf; k++) total += fwd[k].n;
    size_t grad_total = 0;
    for (int k = 0; k < nbk; k++) grad_total += bwd[k].n;
    a->arena = mem_alloc_big((total + grad_total) * sizeof(float));
    if (!a->arena) {
        MDGAN_ERR("out of memory: activations of %s at batch %d need %.1f MiB", net_kind_name(net->kind), N,
                  (double)(total + grad_total) * 4 / 1048576.0);
        return -1;
    }
    a->arena_floats = total + grad_total;
    float *p = a->arena;
    for (int k = 0; k < nf; k++) *fwd[k].ptr = p, p += fwd[k].n;
    a->grad_begin = p, a->grad_floats = grad_total;
    for (int k = 0; k < nbk; k++) *bwd[k].ptr = p, p += bwd[k].n;
    // Aliases: where a layer has no BN, its output is its conv output (any activation runs
    // in place); where it has no activation, its conv gradient is its output gradient.
    for (int j = 1; j <= L; j++) {
        if (!net->down[j].has_bn) a->enc_out[j] = a->enc_conv[j];
        if (!enc_has_act(net, j)) a->denc_conv[j] = a->denc_out[j];
    }
    if (net->kind != NET_D) {
        for (int i = 1; i < L; i++)
            if (!net->skip[i]) a->dec_out[i] = a->dec_relu[i];
        a->dec_out[L] = a->dec_conv[L]; // tanh in place
    }
    return 0;
}

// Inference keeps only what is read later: the encoder outputs a skip adds back, and two
// buffers the other layers take turns in (a layer's input is always the other one).
// BatchNorm, the activations and the skip add run in place, so each layer is one buffer.
int acts_init_inference(Acts *a, const Net *net, int N) {
    memset(a, 0, sizeof *a);   // acts_free is safe whatever fails
    if (net->kind == NET_D) {
        MDGAN_ERR("acts_init_inference is for the generators (D's features are read after its forward)");
        return -1;
    }
    if (acts_shapes(a, net, N) != 0) return -1;
    a->inference = 1;
    const int L = net->L;
    // keep[j]: encoder output j is added back by decoder layer L-j
    int keep[NET_MAX_LEVELS + 1] = {0};
    for (int i = 1; i < L; i++)
        if (net->skip[i]) keep[L - i] = 1;
    size_t kept = 0, turn = 0, stats = 0;
    for (int j = 1; j <= L; j++) {
        size_t n = (size_t)N * net->ch[j] * volume(net->ext[j]);
        if (keep[j]) kept += n;
        else if (n > turn) turn = n;
        stats += 2 * (size_t)net->ch[j];
    }
    for (int i = 1; i <= L; i++) {
        size_t n = (size_t)N * net->ch[L - i] * volume(net->ext[L - i]);
        if (n > turn) turn = n;
        stats += 2 * (size_t)net->ch[L - i];
    }
    const size_t total = kept + 2 * turn + stats;
    if (!(a->arena = mem_alloc_big(total * sizeof(float)))) {
        MDGAN_ERR("out of memory: inference activations of %s at batch %d need %.1f MiB", net_kind_name(net->kind), N,
                  (double)total * 4 / 1048576.0);
        return -1;
    }
    a->arena_floats = total;
    float *kp = a->arena, *buf[2] = {a->arena + kept, a->arena + kept + turn}, *st = a->arena + kept + 2 * turn;
    int k = 0;   // layers in order, encoder then decoder: layer k writes buf[k % 2] unless kept
    for (int j = 1; j <= L; j++, k++) {
        float *out = buf[k % 2];
        if (keep[j]) out = kp, kp += (size_t)N * net->ch[j] * volume(net->ext[j]);
        a->enc_conv[j] = a->enc_out[j] = out;
        a->bn_mean[0][j] = st, st += net->ch[j];
        a->bn_rstd[0][j] = st, st += net->ch[j];
    }
    for (int i = 1; i <= L; i++, k++) {
        a->dec_conv[i] = a->dec_relu[i] = a->dec_out[i] = buf[k % 2];
        a->bn_mean[1][i] = st, st += net->ch[L - i];
        a->bn_rstd[1][i] = st, st += net->ch[L - i];
    }
    return 0;
}

void acts_free(Acts *a) {
    mem_free_big(a->arena);
    memset(a, 0, sizeof *a);
}

const float *acts_output(const Acts *a) {
    return a->net->kind == NET_D ? a->enc_conv[a->net->L] : a->dec_out[a->net->L];
}

size_t acts_output_numel(const Acts *a) {
    const Net *net = a->net;
    return net->kind == NET_D ? (size_t)a->N : (size_t)a->N * 3 * net->T * net->H * net->W;
}

const float *acts_feature(const Acts *a, int which) { return a->enc_out[which]; }

size_t acts_feature_numel(const Acts *a, int which) {
    return (size_t)a->N * a->net->ch[which] * volume(a->net->ext[which]);
}

void acts_feature_shape(const Acts *a, int which, int shape[5]) {
    shape[0] = a->N, shape[1] = a->net->ch[which];
    for (int d = 0; d < 3; d++) shape[2 + d] = a->net->ext[which][d];
}

static void bn_forward(Net *net, float *out, float *mean, float *rstd, const float *in, const NetLayer *ly, int N,
                       int C, size_t S, BnMode mode, BnAct act) {
    const float *gamma = net->params + ly->gamma, *beta = net->params + ly->beta;
    float *rm = net->buffers + ly->rmean, *rv = net->buffers + ly->rvar;
    if (mode == BN_RUNNING)
        batchnorm_forward_eval(out, in, gamma, beta, rm, rv, N, C, S, BN_EPS, act);
    else
        batchnorm_forward_train(out, mean, rstd, mode == BN_TRAIN ? rm : NULL, mode == BN_TRAIN ? rv : NULL, in,
                                gamma, beta, N, C, S, BN_MOMENTUM, BN_EPS, act);
}

void net_forward(Net *net, Acts *a, const float *x, BnMode mode, float *ws) {
    const int L = net->L, N = a->N;
    a->input = x, a->mode = mode, a->forward_done = 1;
    if (mode == BN_TRAIN) net->bn_batches++;
    const float *in = x;
    for (int j = 1; j <= L; j++) {
        const NetLayer *ly = &net->down[j];
        size_t S = volume(net->ext[j]);
        // the activation is applied in the BatchNorm's pass where there is one, else in
        // the convolution's (enc_out is enc_conv then)
        const BnAct act = {enc_has_act(net, j) ? BN_ACT_LRELU : BN_ACT_NONE, LRELU_SLOPE};
        if (!ly->has_bn && act.kind != BN_ACT_NONE)
            conv3d_forward_lrelu(a->enc_out[j], in, net->params + ly->w, &a->conv[j], ws, LRELU_SLOPE);
        else
            conv3d_forward(a->enc_conv[j], in, net->params + ly->w, &a->conv[j], ws);
        if (ly->has_bn)
            bn_forward(net, a->enc_out[j], a->bn_mean[0][j], a->bn_rstd[0][j], a->enc_conv[j], ly, N, ly->out_ch, S,
                       mode, act);
        in = a->enc_out[j];
    }
    if (net->kind == NET_D) return;
    for (int i = 1; i <= L; i++) {
        const NetLayer *ly = &net->up[i];
        size_t S = volume(net->ext[L - i]), n = (size_t)N * ly->out_ch * S;
        conv_transpose3d_forward(a->dec_conv[i], in, net->params + ly->w, &a->conv[L + 1 - i], ws);
        if (i == L) {
            tanh_forward(a->dec_conv[i], a->dec_conv[i], n);
            break;
        }
        bn_forward(net, a->dec_relu[i], a->bn_mean[1][i], a->bn_rstd[1][i], a->dec_conv[i], ly, N, ly->out_ch, S,
                   mode, (BnAct){BN_ACT_RELU, 0.0f});
        if (net->skip[i]) {
            if (a->dec_out[i] != a->dec_relu[i]) memcpy(a->dec_out[i], a->dec_relu[i], n * sizeof(float));
            add_inplace(a->dec_out[i], a->enc_out[L - i], n);
        }
        in = a->dec_out[i];
    }
}

// dconv += BN_backward(act_backward(dout)), the activation's derivative taken inside
// BatchNorm's backward (no pass of its own, no scratch buffer).
static void bn_act_backward(Net *net, Acts *a, float *dconv, const float *dout, const float *out, const float *conv,
                            const float *mean, const float *rstd, const NetLayer *ly, size_t S, int leaky) {
    const BnAct act = {leaky ? BN_ACT_LRELU : BN_ACT_RELU, leaky ? LRELU_SLOPE : 0.0f};
    batchnorm_backward_act(dconv, net->grads + ly->gamma, net->grads + ly->beta, dout, out, act, conv, mean, rstd,
                           net->params + ly->gamma, a->N, ly->out_ch, S);
}

static int backward(Net *net, Acts *a, float *dx, const float *dout, const float *dfeat1, const float *dfeat3,
                    float *ws, int weight_grads) {
    const int L = net->L, N = a->N;
    if (a->inference) {
        MDGAN_ERR("%s backward needs training activations (acts_init), not inference ones", net_kind_name(net->kind));
        return -1;
    }
    if (!a->forward_done || a->mode == BN_RUNNING) {
        MDGAN_ERR("%s backward needs a forward pass with batch statistics first", net_kind_name(net->kind));
        return -1;
    }
    memset(a->grad_begin, 0, a->grad_floats * sizeof(float));
    if (net->kind == NET_D) {
        memcpy(a->denc_out[L], dout, (size_t)N * sizeof(float));
        if (dfeat1) add_inplace(a->denc_out[1], dfeat1, acts_feature_numel(a, 1));
        if (dfeat3) add_inplace(a->denc_out[3], dfeat3, acts_feature_numel(a, 3));
    } else {
        // y = tanh(convT_L(...))
        tanh_backward(a->ddec_conv[L], dout, a->dec_out[L], acts_output_numel(a));
        for (int i = L; i >= 1; i--) {
            const NetLayer *ly = &net->up[i];
            if (i < L) {
                size_t S = volume(net->ext[L - i]), n = (size_t)N * ly->out_ch * S;
                // out_i = relu(bn(conv_i)) [+ enc_{L-i}]: the add copies the gradient to both
                if (net->skip[i]) add_inplace(a->denc_out[L - i], a->ddec_out[i], n);
                bn_act_backward(net, a, a->ddec_conv[i], a->ddec_out[i], a->dec_relu[i], a->dec_conv[i],
                                a->bn_mean[1][i], a->bn_rstd[1][i], ly, S, 0);
            }
            const float *in = i > 1 ? a->dec_out[i - 1] : a->enc_out[L];
            float *din = i > 1 ? a->ddec_out[i - 1] : a->denc_out[L];
            conv_transpose3d_backward(din, weight_grads ? net->grads + ly->w : NULL, a->ddec_conv[i], in,
                                      net->params + ly->w, &a->conv[L + 1 - i], ws);
        }
    }
    for (int j = L; j >= 1; j--) {
        const NetLayer *ly = &net->down[j];
        size_t S = volume(net->ext[j]), n = (size_t)N * ly->out_ch * S;
        if (ly->has_bn)
            bn_act_backward(net, a, a->denc_conv[j], a->denc_out[j], a->enc_out[j], a->enc_conv[j], a->bn_mean[0][j],
                            a->bn_rstd[0][j], ly, S, 1);
        else if (enc_has_act(net, j))
            lrelu_backward(a->denc_conv[j], a->denc_out[j], a->enc_out[j], n, LRELU_SLOPE);
        const float *in = j > 1 ? a->enc_out[j - 1] : a->input;
        float *din = j > 1 ? a->denc_out[j - 1] : dx;
        conv3d_backward(din, weight_grads ? net->grads + ly->w : NULL, a->denc_conv[j], in, net->params + ly->w,
                        &a->conv[j], ws);
    }
    return 0;
}

int net_backward(Net *net, Acts *a, float *dx, const float *dout, const float *dfeat1, const float *dfeat3,
                 float *ws) {
    return backward(net, a, dx, dout, dfeat1, dfeat3, ws, 1);
}

int net_backward_input(Net *net, Acts *a, float *dx, const float *dout, const float *dfeat1, const float *dfeat3,
                       float *ws) {
    return backward(net, a, dx, dout, dfeat1, dfeat3, ws, 0);
}

int net_copy_weights(Net *dst, const Net *src) {
    for (int k = 0; k < dst->ntable; k++) {
        const NetTensor *t = &dst->table[k], *u = net_find(src, t->name);
        if (!u || u->numel != t->numel) {
            MDGAN_ERR("cannot start %s from %s: no tensor '%s' of %zu values there", net_kind_name(dst->kind),
                      net_kind_name(src->kind), t->name, t->numel);
            return -1;
        }
        memcpy(net_tensor_data(dst, t), net_tensor_data(src, u), t->numel * sizeof(float));
    }
    dst->bn_batches = src->bn_batches;
    return 0;
}
