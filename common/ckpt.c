#include "mdgan/ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdgan/error.h"
#include "mdgan/sha256.h"

static void key(char *out, size_t n, const char *prefix, const char *name, const char *suffix) {
    snprintf(out, n, "%s%s%s%s", prefix, *prefix ? "." : "", name, suffix);
}

static int is_running_var(const NetTensor *t) {
    size_t n = strlen(t->name);
    return n > 12 && !strcmp(t->name + n - 12, ".running_var");
}

int ckpt_save(const char *path, const CkptNet *nets, int nnets, const CkptMeta *meta, int nmeta) {
    StWriter *w = st_writer_new();
    if (!w) return -1;
    char name[160], val[64];
    int rc = st_writer_meta(w, "format", CKPT_FORMAT);
    for (int k = 0; k < nmeta && rc == 0; k++) rc = st_writer_meta(w, meta[k].key, meta[k].value);
    for (int m = 0; m < nnets && rc == 0; m++) {
        const Net *net = nets[m].net;
        const char *pre = nets[m].prefix;
        for (int k = 0; k < net->ntable && rc == 0; k++) {
            const NetTensor *t = &net->table[k];
            key(name, sizeof name, pre, t->name, "");
            rc = st_writer_add_f32(w, name, t->ndim, t->shape, net_tensor_data(net, t));
            if (rc == 0 && is_running_var(t)) {
                char bn[64];
                snprintf(bn, sizeof bn, "%.*s.num_batches_tracked", (int)(strlen(t->name) - 12), t->name);
                key(name, sizeof name, pre, bn, "");
                rc = st_writer_add(w, name, ST_I64, 0, NULL, &net->bn_batches);
            }
        }
        if (!nets[m].with_adam) continue;
        for (int k = 0; k < net->ntable && rc == 0; k++) {
            const NetTensor *t = &net->table[k];
            if (!t->trainable) continue;
            char base[128];
            key(base, sizeof base, pre, t->name, "");
            snprintf(name, sizeof name, "adam.%s.exp_avg", base);
            rc = st_writer_add_f32(w, name, t->ndim, t->shape, net->adam_m + t->offset);
            snprintf(name, sizeof name, "adam.%s.exp_avg_sq", base);
            if (rc == 0) rc = st_writer_add_f32(w, name, t->ndim, t->shape, net->adam_v + t->offset);
        }
        snprintf(name, sizeof name, "adam.%s.step", pre);
        snprintf(val, sizeof val, "%ld", net->adam_step);
        if (rc == 0) rc = st_writer_meta(w, name, val);
    }
    if (rc == 0) rc = st_writer_save(w, path);
    st_writer_free(w);
    return rc;
}

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

// Tensor k of the net's table (and its Adam moments when with_adam) from f.
static int load_table_entry(const StFile *f, Net *net, const char *prefix, int with_adam, int k) {
    char name[160];
    const NetTensor *t = &net->table[k];
    key(name, sizeof name, prefix, t->name, "");
    if (!st_get(f, name)) {
        MDGAN_ERR("%s: has no tensor '%s' that %s for %d frames of %dx%d (width %d) needs: the checkpoint "
                  "is for another shape or network", f->path, name, net_kind_name(net->kind), net->T, net->H, net->W,
                  net->nf);
        return -1;
    }
    if (st_read_f32(f, name, net_tensor_data(net, t), t->ndim, t->shape) != 0) return -1;
    if (with_adam && t->trainable) {
        char base[128];
        key(base, sizeof base, prefix, t->name, "");
        snprintf(name, sizeof name, "adam.%s.exp_avg", base);
        if (st_read_f32(f, name, net->adam_m + t->offset, t->ndim, t->shape) != 0) return -1;
        snprintf(name, sizeof name, "adam.%s.exp_avg_sq", base);
        if (st_read_f32(f, name, net->adam_v + t->offset, t->ndim, t->shape) != 0) return -1;
    }
    return 0;
}

int ckpt_load_net(const StFile *f, Net *net, const char *prefix, int with_adam) {
    // The tensors are independent copies out of the page cache: two threads read a
    // 149 MB generator in 20 ms where one takes 35. The error is the first tensor's.
    MdganLoopError err = MDGAN_LOOP_ERROR_INIT;
#pragma omp parallel for schedule(dynamic)
    for (int k = 0; k < net->ntable; k++) {
        if (mdgan_loop_skip(&err, k)) continue;
        if (load_table_entry(f, net, prefix, with_adam, k) != 0) mdgan_loop_fail(&err, k);
    }
    if (mdgan_loop_error(&err) != 0) return -1;
    char name[160];
    const char *kind = net_kind_name(net->kind);
    // Anything else under the prefix means a different architecture (more levels).
    char pre[64];
    snprintf(pre, sizeof pre, "%s%s", prefix, *prefix ? "." : "");
    net->bn_batches = 0;
    for (int k = 0; k < f->ntensors; k++) {
        const StTensor *st = &f->tensors[k];
        if (!starts_with(st->name, pre)) continue;
        const char *rest = st->name + strlen(pre);
        // a bare file may sit beside prefixed networks: those are not ours
        if (!*prefix && (starts_with(rest, "G1.") || starts_with(rest, "G2.") || starts_with(rest, "D1.") ||
                         starts_with(rest, "D2.") || starts_with(rest, "adam.")))
            continue;
        const char *dot = strrchr(rest, '.');
        if (dot && !strcmp(dot, ".num_batches_tracked")) {
            if (st->dtype == ST_I64 && st_numel(st) == 1) {
                int64_t v;
                memcpy(&v, st->data, sizeof v);
                if (v > net->bn_batches) net->bn_batches = v;
            }
            continue;
        }
        if (!net_find(net, rest)) {
            MDGAN_ERR("%s: tensor '%s' does not belong to %s for %d frames of %dx%d: the checkpoint is for "
                      "another shape (frames/size) or network", f->path, st->name, kind, net->T, net->H, net->W);
            return -1;
        }
    }
    if (with_adam) {
        snprintf(name, sizeof name, "adam.%s.step", prefix);
        const char *v = st_meta_get(f, name);
        char *end = NULL;
        long step = v ? strtol(v, &end, 10) : -1;
        if (!v || *end || step < 0) {
            MDGAN_ERR("%s: metadata '%s' is missing or not a step count", f->path, name);
            return -1;
        }
        net->adam_step = step;
    }
    return 0;
}

static const char *first_conv(NetKind kind) { return kind == NET_D ? "conv1.weight" : "downConv1.weight"; }

int ckpt_has_net(const StFile *f, const char *prefix, NetKind kind) {
    char name[160];
    key(name, sizeof name, prefix, first_conv(kind), "");
    return st_get(f, name) != NULL;
}

int ckpt_net_width(const StFile *f, const char *prefix, NetKind kind, int *nf) {
    char name[160];
    key(name, sizeof name, prefix, first_conv(kind), "");
    const StTensor *t = st_get(f, name);
    if (!t) {
        MDGAN_ERR("%s: no tensor '%s'", f->path, name);
        return -1;
    }
    if (t->ndim != 5 || t->shape[1] != 3 || t->shape[0] < 1 || t->shape[0] > 4096) {
        MDGAN_ERR("%s: tensor '%s' is not a first convolution from 3 channels (ndim %d)", f->path, name, t->ndim);
        return -1;
    }
    *nf = (int)t->shape[0];
    return 0;
}

// Loads a generator of `kind` from f into net, under prefix "G1"/"G2" or bare keys.
int ckpt_load_generator(Net *net, const StFile *f, NetKind kind, int T, int S) {
    const char *prefix = kind == NET_G1 ? "G1" : "G2";
    if (!ckpt_has_net(f, prefix, kind)) prefix = "";
    if (!ckpt_has_net(f, prefix, kind)) {
        MDGAN_ERR("%s: holds no %s generator (no '%s.downConv1.weight' nor bare 'downConv1.weight')", f->path,
                  net_kind_name(kind), net_kind_name(kind));
        return -1;
    }
    int nf;
    if (ckpt_net_width(f, prefix, kind, &nf) != 0) return -1;
    if (net_init_inference(net, kind, T, S, S, nf) != 0) return -1;
    if (ckpt_load_net(f, net, prefix, 0) != 0) {
        net_free(net);
        return -1;
    }
    return 0;
}

long ckpt_meta_long(const StFile *f, const char *key) {
    const char *v = st_meta_get(f, key);
    char *end;
    long x = v ? strtol(v, &end, 10) : -1;
    if (!v || *end || x < 0) {
        MDGAN_ERR("%s: metadata '%s' is missing or malformed", f->path, key);
        return -1;
    }
    return x;
}

void ckpt_net_sha256(const Net *net, char hex[65]) {
    Sha256 h;
    sha256_init(&h);
    sha256_update(&h, net->params, net->nparams * sizeof(float));
    sha256_update(&h, net->buffers, net->nbuffers * sizeof(float));
    sha256_update(&h, &net->bn_batches, sizeof net->bn_batches);
    unsigned char d[32];
    sha256_final(&h, d);
    sha256_hex(hex, d);
}
