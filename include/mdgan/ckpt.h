#ifndef MDGAN_CKPT_H
#define MDGAN_CKPT_H
// Networks in safetensors checkpoints (DESIGN.md section 5).
//
// A network's tensors are stored under "<prefix>.<state_dict key>" (prefix "G1", "G2",
// "D1", "D2"; "" gives the bare keys of the released PyTorch model), with PyTorch's
// int64 "<bn>.num_batches_tracked" beside every BatchNorm so that
// `model.load_state_dict(...)` accepts the file. With Adam, the moments are stored as
// "adam.<prefix>.<key>.exp_avg" / ".exp_avg_sq" and the step count in the metadata.
#include "mdgan/net.h"
#include "mdgan/safetensors.h"

#define CKPT_FORMAT "mdgan-ckpt-1"

typedef struct {
    Net *net;
    const char *prefix;
    int with_adam;
} CkptNet;

typedef struct {
    const char *key, *value;
} CkptMeta;

// Writes nets and metadata (plus "format") atomically to path.
int ckpt_save(const char *path, const CkptNet *nets, int nnets, const CkptMeta *meta, int nmeta);

// Fills net (already built for the wanted shape) from f. Every tensor the net has must
// be present with its exact shape, and no other tensor may stand under the prefix
// (a checkpoint for another shape has more or fewer layers): errors name the file and
// the tensor.
int ckpt_load_net(const StFile *f, Net *net, const char *prefix, int with_adam);

// Whether f holds a network under prefix ("" = bare keys): looks for its first conv.
int ckpt_has_net(const StFile *f, const char *prefix, NetKind kind);
// Width (ngf/ndf) from the first conv weight's output channels.
int ckpt_net_width(const StFile *f, const char *prefix, NetKind kind, int *nf);

// sha256 (hex) of a network's values: every parameter and running statistic in table
// order, little-endian float32, and the BatchNorm batch count. The same weights give
// the same digest whatever file (or copy, or re-save) they came from.
void ckpt_net_sha256(const Net *net, char hex[65]);

// A non-negative integer from the metadata; -1 with a message naming the file and key
// when it is missing or malformed.
long ckpt_meta_long(const StFile *f, const char *key);

// Builds and fills a generator (G1 or G2) for T frames of S x S from f, found under
// "G1."/"G2." or, failing that, bare keys; its width comes from the weights.
int ckpt_load_generator(Net *net, const StFile *f, NetKind kind, int T, int S);

#endif
