#ifndef MDGAN_TESTSTEP_H
#define MDGAN_TESTSTEP_H
// Helpers of the whole-step tests against PyTorch fixtures (test_net, test_stage1,
// test_stage2): metadata, loading a net from "<prefix>.<state_dict key>" tensors,
// comparing the updated state and the loss values.
#include "testutil.h"

#include "mdgan/net.h"

static inline int fixture_meta_i(const StFile *f, const char *k) {
    const char *v = st_meta_get(f, k);
    if (!v) fail_msg("fixture %s: no metadata %s", f->path, k);
    return atoi(v);
}

static inline float fixture_meta_f(const StFile *f, const char *k) {
    const char *v = st_meta_get(f, k);
    if (!v) fail_msg("fixture %s: no metadata %s", f->path, k);
    return strtof(v, NULL);
}

// Every state_dict entry of net from the fixture's "<prefix>.<name>".
static inline void fixture_load_net(const StFile *f, Net *net, const char *prefix) {
    for (int k = 0; k < net->ntable; k++) {
        const NetTensor *t = &net->table[k];
        char name[96];
        snprintf(name, sizeof name, "%s.%s", prefix, t->name);
        if (st_read_f32(f, name, net_tensor_data(net, t), t->ndim, t->shape) != 0) fail_msg("%s", mdgan_errmsg());
    }
}

// Every state entry (weights, BN affine, running statistics) against
// "new.<prefix>.<name>". After one Adam step a weight has moved by about
// lr * sign(g), so these mostly check the sign and the bias-corrected step; a gradient
// within rounding of 0 could flip it (the fixture writer prints the smallest |g|).
static inline void fixture_compare_net(const StFile *f, const Net *net, const char *prefix, double tol) {
    for (int k = 0; k < net->ntable; k++) {
        const NetTensor *t = &net->table[k];
        char name[96];
        snprintf(name, sizeof name, "new.%s.%s", prefix, t->name);
        float *ref = fixture_f32(f, name, t->numel);
        expect_close(name, net_tensor_data(net, t), ref, t->numel, tol);
        free(ref);
    }
}

// A scalar loss against the fixture's one-element tensor `name`, relative error.
static inline void fixture_compare_loss(const StFile *f, const char *name, float got, double tol) {
    float *ref = fixture_f32(f, name, 1);
    double e = fabs((double)got - ref[0]) / fabs((double)ref[0]);
    printf("    %-40s %.7f vs %.7f rel err %.3e (tol %.0e)\n", name, got, ref[0], e, tol);
    if (!(e <= tol)) fail_msg("%s: %.7f, PyTorch %.7f", name, got, ref[0]);
    free(ref);
}

#endif
