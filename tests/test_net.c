// G1, G2, D: level rule, state_dict names, a whole training step against PyTorch
// (tests/fixtures/{g1,g2,d}_step.safetensors), finite differences through a whole
// network, and checkpoints (round trip, wrong shape).
#include "teststep.h"

#include "mdgan/ckpt.h"
#include "mdgan/net.h"

static void test_levels(void **state) {
    (void)state;
    int L, ext[NET_MAX_LEVELS + 1][3];
    assert_int_equal(net_levels(32, 128, 128, &L, ext), 0);
    assert_int_equal(L, 6);
    assert_int_equal(ext[5][0], 2), assert_int_equal(ext[5][1], 4), assert_int_equal(ext[5][2], 4);
    assert_int_equal(net_levels(8, 32, 32, &L, ext), 0);
    assert_int_equal(L, 4);
    assert_int_equal(ext[3][0], 2), assert_int_equal(ext[3][1], 4);
    assert_int_equal(net_levels(32, 64, 64, &L, ext), 0);
    assert_int_equal(L, 5);
    assert_int_equal(ext[4][0], 4), assert_int_equal(ext[4][1], 4), assert_int_equal(ext[4][2], 4);
    // impossible shapes get a message naming the shape
    const int bad[][3] = {{8, 16, 16}, {7, 32, 32}, {8, 33, 32}, {0, 32, 32}, {1, 64, 64}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        assert_int_equal(net_levels(bad[k][0], bad[k][1], bad[k][2], &L, ext), -1);
        char want[64];
        snprintf(want, sizeof want, "%d frames of %dx%d", bad[k][0], bad[k][1], bad[k][2]);
        assert_non_null(strstr(mdgan_errmsg(), want));
    }
}

// The released model's state_dict at the paper's shape.
static void test_reference_names(void **state) {
    (void)state;
    Net g;
    assert_int_equal(net_init(&g, NET_G1, 32, 128, 128, 32, NULL), 0);
    struct { const char *name; int ndim; int64_t shape[5]; } want[] = {
        {"downConv1.weight", 5, {32, 3, 3, 4, 4}},   {"downConv2.weight", 5, {64, 32, 4, 4, 4}},
        {"downConv5.weight", 5, {512, 256, 4, 4, 4}}, {"downConv6.weight", 5, {512, 512, 2, 4, 4}},
        {"downBN2.weight", 1, {64}},                  {"downBN5.running_var", 1, {512}},
        {"upConv1.weight", 5, {512, 512, 2, 4, 4}},   {"upConv2.weight", 5, {512, 256, 4, 4, 4}},
        {"upConv5.weight", 5, {64, 32, 4, 4, 4}},     {"upConv6.weight", 5, {32, 3, 3, 4, 4}},
        {"upBN1.bias", 1, {512}},                     {"upBN5.running_mean", 1, {32}},
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        const NetTensor *t = net_find(&g, want[k].name);
        if (!t) fail_msg("G1 has no %s", want[k].name);
        assert_int_equal(t->ndim, want[k].ndim);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], want[k].shape[d]);
    }
    // 12 convolutions and 9 BatchNorms of 4 tensors each; nothing else
    assert_int_equal(g.ntable, 12 + 9 * 4);
    assert_null(net_find(&g, "downBN1.weight"));
    assert_null(net_find(&g, "downBN6.weight"));
    assert_null(net_find(&g, "upBN6.weight"));
    net_free(&g);
    Net d;
    assert_int_equal(net_init(&d, NET_D, 32, 128, 128, 32, NULL), 0);
    assert_non_null(net_find(&d, "conv6.weight"));
    assert_int_equal(net_find(&d, "conv6.weight")->shape[0], 1);
    assert_non_null(net_find(&d, "bn5.running_mean"));
    assert_null(net_find(&d, "bn1.weight"));
    net_free(&d);
}

// ---- one training step against PyTorch ----

static void step_fixture(const char *file, NetKind kind) {
    StFile f;
    fixture_open(&f, file);
    const int N = fixture_meta_i(&f, "N"), T = fixture_meta_i(&f, "T"), H = fixture_meta_i(&f, "H"), W = fixture_meta_i(&f, "W");
    Net net;
    Acts a;
    assert_int_equal(net_init(&net, kind, T, H, W, fixture_meta_i(&f, "nf"), NULL), 0);
    // every state_dict entry comes from the fixture under its own name
    for (int k = 0; k < net.ntable; k++) {
        const NetTensor *t = &net.table[k];
        if (st_read_f32(&f, t->name, net_tensor_data(&net, t), t->ndim, t->shape) != 0) fail_msg("%s", mdgan_errmsg());
    }
    assert_int_equal(acts_init(&a, &net, N), 0);
    const size_t nx = (size_t)N * 3 * T * H * W;
    float *x = fixture_f32(&f, "x", nx), *dx = calloc(nx, sizeof(float));
    float *ws = calloc(a.ws_floats, sizeof(float));
    assert_non_null(dx), assert_non_null(ws);
    net_forward(&net, &a, x, BN_TRAIN, ws);
    char what[128];
    if (kind == NET_D) {
        // outputs: fixture name, ours, size; each named once
#define D_OUTPUTS(X) X("logit", acts_output(&a), acts_output_numel(&a)) \
        X("feat1", acts_feature(&a, 1), acts_feature_numel(&a, 1)) X("feat3", acts_feature(&a, 3), acts_feature_numel(&a, 3))
#define CMP(NAME, OURS, NUMEL) { float *ref = fixture_f32(&f, NAME, NUMEL); \
        snprintf(what, sizeof what, "%s %s", file, NAME); expect_close(what, OURS, ref, NUMEL, 1e-4); free(ref); }
        D_OUTPUTS(CMP)
        float *dl = fixture_f32(&f, "dlogit", acts_output_numel(&a));
        float *d1 = fixture_f32(&f, "dfeat1", acts_feature_numel(&a, 1));
        float *d3 = fixture_f32(&f, "dfeat3", acts_feature_numel(&a, 3));
        assert_int_equal(net_backward(&net, &a, dx, dl, d1, d3, ws), 0);
        free(dl), free(d1), free(d3);
    } else {
        CMP("out", acts_output(&a), acts_output_numel(&a))
        float *dout = fixture_f32(&f, "dout", acts_output_numel(&a));
        assert_int_equal(net_backward(&net, &a, dx, dout, NULL, NULL, ws), 0);
        free(dout);
    }
    CMP("dx", dx, nx)
    // every parameter gradient, named by the net's own table
    for (int k = 0; k < net.ntable; k++) {
        const NetTensor *t = &net.table[k];
        if (!t->trainable) continue;
        char name[96];
        snprintf(name, sizeof name, "grad.%s", t->name);
        CMP(name, net_tensor_grad(&net, t), t->numel)
    }
    AdamConfig cfg = ADAM_DEFAULTS;
    net_adam_step(&net, &cfg);
    for (int k = 0; k < net.ntable; k++) {
        const NetTensor *t = &net.table[k];
        char name[96];
        snprintf(name, sizeof name, "new.%s", t->name);
        CMP(name, net_tensor_data(&net, t), t->numel)
    }
#undef CMP
    free(x), free(dx), free(ws);
    acts_free(&a);
    net_free(&net);
    st_close(&f);
}

static void test_pytorch_g1_step(void **state) { (void)state; step_fixture("g1_step.safetensors", NET_G1); }
static void test_pytorch_g2_step(void **state) { (void)state; step_fixture("g2_step.safetensors", NET_G2); }
static void test_pytorch_d_step(void **state) { (void)state; step_fixture("d_step.safetensors", NET_D); }

// ---- finite differences through a whole network ----
// Loss = sum(R * output) (+ features for D) in float with h = 1e-2: this checks the
// wiring (skips, aliases, feature taps), not float precision; the kernels have their
// own double-precision checks and the PyTorch step above checks the values.

static double net_loss(Net *net, Acts *a, const float *x, const float *R, const float *R1, const float *R3, float *ws) {
    net_forward(net, a, x, BN_BATCH, ws);
    double L = 0;
    const float *y = acts_output(a);
    for (size_t i = 0; i < acts_output_numel(a); i++) L += (double)R[i] * y[i];
    if (net->kind == NET_D) {
        for (size_t i = 0; i < acts_feature_numel(a, 1); i++) L += (double)R1[i] * acts_feature(a, 1)[i];
        for (size_t i = 0; i < acts_feature_numel(a, 3); i++) L += (double)R3[i] * acts_feature(a, 3)[i];
    }
    return L;
}

// net_backward_input: the same input gradient, bit for bit, and no conv weight gradient.
static void test_backward_input_only(void **state) {
    (void)state;
    const NetKind kinds[2] = {NET_D, NET_G1};
    for (int k = 0; k < 2; k++) {
        Rng rng;
        rng_seed(&rng, 11);
        Net net;
        Acts a;
        const int N = 2, T = 8, S = 32;
        assert_int_equal(net_init(&net, kinds[k], T, S, S, 4, &rng), 0);
        assert_int_equal(acts_init(&a, &net, N), 0);
        size_t nx = (size_t)N * 3 * T * S * S, no = acts_output_numel(&a);
        float *x = malloc(nx * sizeof(float)), *dout = malloc(no * sizeof(float));
        float *dx1 = calloc(nx, sizeof(float)), *dx2 = calloc(nx, sizeof(float)), *ws = calloc(a.ws_floats, sizeof(float));
        assert_non_null(x), assert_non_null(dout), assert_non_null(dx1), assert_non_null(dx2), assert_non_null(ws);
        for (size_t i = 0; i < nx; i++) x[i] = 2.0f * (float)rng_uniform(&rng) - 1.0f;
        for (size_t i = 0; i < no; i++) dout[i] = rng_normal(&rng);
        net_forward(&net, &a, x, BN_TRAIN, ws);
        net_zero_grad(&net);
        assert_int_equal(net_backward(&net, &a, dx1, dout, NULL, NULL, ws), 0);
        net_zero_grad(&net);
        assert_int_equal(net_backward_input(&net, &a, dx2, dout, NULL, NULL, ws), 0);
        if (memcmp(dx1, dx2, nx * sizeof(float)) != 0) fail_msg("%s: input gradients differ", net_kind_name(kinds[k]));
        for (int t = 0; t < net.ntable; t++) {
            const NetTensor *nt = &net.table[t];
            if (nt->ndim != 5) continue; // conv weights; BatchNorm's still accumulate
            const float *g = net_tensor_grad(&net, nt);
            for (size_t i = 0; i < nt->numel; i++)
                if (g[i] != 0.0f) fail_msg("%s: gradient of %s was computed", net_kind_name(kinds[k]), nt->name);
        }
        free(x), free(dout), free(dx1), free(dx2), free(ws);
        acts_free(&a), net_free(&net);
    }
}

static void gradcheck_net(NetKind kind) {
    Rng rng;
    rng_seed(&rng, 7);
    Net net;
    Acts a;
    const int N = 2, T = 4, S = 32;
    assert_int_equal(net_init(&net, kind, T, S, S, 2, &rng), 0);
    // larger weights than the DCGAN init so every layer matters to the loss
    for (size_t i = 0; i < net.nparams; i++) net.params[i] *= 5.0f;
    assert_int_equal(acts_init(&a, &net, N), 0);
    size_t nx = (size_t)N * 3 * T * S * S;
    float *x = malloc(nx * sizeof(float)), *dx = calloc(nx, sizeof(float)), *ws = calloc(a.ws_floats, sizeof(float));
    float *R = malloc(acts_output_numel(&a) * sizeof(float));
    float *R1 = kind == NET_D ? malloc(acts_feature_numel(&a, 1) * sizeof(float)) : NULL;
    float *R3 = kind == NET_D ? malloc(acts_feature_numel(&a, 3) * sizeof(float)) : NULL;
    for (size_t i = 0; i < nx; i++) x[i] = 2.0f * (float)rng_uniform(&rng) - 1.0f;
    for (size_t i = 0; i < acts_output_numel(&a); i++) R[i] = rng_normal(&rng);
    if (R1) for (size_t i = 0; i < acts_feature_numel(&a, 1); i++) R1[i] = rng_normal(&rng);
    if (R3) for (size_t i = 0; i < acts_feature_numel(&a, 3); i++) R3[i] = rng_normal(&rng);
    net_zero_grad(&net);
    net_loss(&net, &a, x, R, R1, R3, ws);
    assert_int_equal(net_backward(&net, &a, dx, R, R1, R3, ws), 0);
    const float h = 1e-4f;
    double maxerr = 0, maxg = 0;
    // a few entries of every trainable tensor, and of the input
    for (int k = 0; k <= net.ntable; k++) {
        float *p, *g;
        size_t n;
        if (k == net.ntable) p = x, g = dx, n = nx;
        else {
            const NetTensor *t = &net.table[k];
            if (!t->trainable) continue;
            p = net_tensor_data(&net, t), g = net_tensor_grad(&net, t), n = t->numel;
        }
        for (int s = 0; s < 3; s++) {
            size_t i = (size_t)(rng_uniform(&rng) * n);
            float keep = p[i];
            p[i] = keep + h;
            double lp = net_loss(&net, &a, x, R, R1, R3, ws);
            p[i] = keep - h;
            double lm = net_loss(&net, &a, x, R, R1, R3, ws);
            p[i] = keep;
            double fd = (lp - lm) / (2 * h);
            if (getenv("FD_VERBOSE")) printf("      %s[%zu] fd %.5g analytic %.5g\n", k == net.ntable ? "x" : net.table[k].name, i, fd, g[i]);
            if (fabs(fd - g[i]) > maxerr) maxerr = fabs(fd - g[i]);
            if (fabs(fd) > maxg) maxg = fabs(fd);
        }
    }
    double rel = maxerr / maxg, tol = 2e-2;
    printf("    %s whole-network finite differences: max rel err %.3e (tol %.0e)\n", net_kind_name(kind), rel, tol);
    if (!(rel <= tol)) fail_msg("%s gradient check failed: %.3e", net_kind_name(kind), rel);
    free(x), free(dx), free(ws), free(R), free(R1), free(R3);
    acts_free(&a);
    net_free(&net);
}
static void test_gradcheck_g1(void **state) { (void)state; gradcheck_net(NET_G1); }
static void test_gradcheck_g2(void **state) { (void)state; gradcheck_net(NET_G2); }
static void test_gradcheck_d(void **state) { (void)state; gradcheck_net(NET_D); }

// ---- checkpoints ----

static void test_ckpt_roundtrip(void **state) {
    (void)state;
    char dir[512], path[600];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/ck.safetensors", dir);
    Rng rng;
    rng_seed(&rng, 3);
    Net g, d, g2, d2;
    assert_int_equal(net_init(&g, NET_G1, 8, 32, 32, 4, &rng), 0);
    assert_int_equal(net_init(&d, NET_D, 8, 32, 32, 4, &rng), 0);
    // non-trivial Adam state and statistics
    for (size_t i = 0; i < g.nparams; i++) g.grads[i] = rng_normal(&rng);
    AdamConfig cfg = ADAM_DEFAULTS;
    net_adam_step(&g, &cfg);
    net_adam_step(&g, &cfg);
    for (size_t i = 0; i < g.nbuffers; i++) g.buffers[i] = rng_normal(&rng);
    g.bn_batches = 5;
    CkptNet nets[] = {{&g, "G1", 1}, {&d, "D1", 0}};
    CkptMeta meta[] = {{"step", "2"}};
    assert_int_equal(ckpt_save(path, nets, 2, meta, 1), 0);
    StFile f;
    assert_int_equal(st_open(&f, path), 0);
    assert_string_equal(st_meta_get(&f, "format"), CKPT_FORMAT);
    assert_string_equal(st_meta_get(&f, "step"), "2");
    assert_non_null(st_get(&f, "G1.downBN2.num_batches_tracked"));
    assert_int_equal(net_init(&g2, NET_G1, 8, 32, 32, 4, NULL), 0);
    assert_int_equal(net_init(&d2, NET_D, 8, 32, 32, 4, NULL), 0);
    assert_int_equal(ckpt_load_net(&f, &g2, "G1", 1), 0);
    assert_int_equal(ckpt_load_net(&f, &d2, "D1", 0), 0);
    assert_memory_equal(g.params, g2.params, g.nparams * sizeof(float));
    assert_memory_equal(g.buffers, g2.buffers, g.nbuffers * sizeof(float));
    assert_memory_equal(g.adam_m, g2.adam_m, g.nparams * sizeof(float));
    assert_memory_equal(g.adam_v, g2.adam_v, g.nparams * sizeof(float));
    assert_int_equal(g2.adam_step, 2);
    assert_int_equal(g2.bn_batches, 5);
    assert_memory_equal(d.params, d2.params, d.nparams * sizeof(float));
    // an inference net: the same table and values from the file, no training arenas
    Net gi;
    assert_int_equal(ckpt_load_generator(&gi, &f, NET_G1, 8, 32), 0);
    assert_null(gi.grads);
    assert_null(gi.adam_m);
    assert_null(gi.adam_v);
    assert_int_equal(gi.ntable, g.ntable);
    assert_memory_equal(gi.params, g.params, g.nparams * sizeof(float));
    assert_memory_equal(gi.buffers, g.buffers, g.nbuffers * sizeof(float));
    assert_int_equal(f.mapped, 1);   // a regular file is mapped, not read
    net_free(&gi);
    // D1 was saved without Adam: asking for it is an error naming the tensor
    assert_int_equal(ckpt_load_net(&f, &d2, "D1", 1), -1);
    assert_non_null(strstr(mdgan_errmsg(), "adam.D1.conv1.weight.exp_avg"));
    st_close(&f);
    net_free(&g), net_free(&d), net_free(&g2), net_free(&d2);
    rm_rf(dir);
}

// Inference activations (buffers reused, BN and the skip add in place) give the same
// bits as the training ones, for both generators and both BatchNorm modes, in far less
// memory; D and a backward are refused.
static void test_inference_acts(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 11);
    const int N = 2, T = 8, S = 32;
    const size_t n = (size_t)N * 3 * T * S * S;
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(&rng);
    for (int kind = NET_G1; kind <= NET_G2; kind++) {
        Net g;
        assert_int_equal(net_init(&g, kind, T, S, S, 4, &rng), 0);
        for (size_t i = 0; i < g.nbuffers; i++) g.buffers[i] = 0.5f + 0.25f * (float)rng_uniform(&rng);
        for (int mode = BN_BATCH; mode <= BN_RUNNING; mode++) {
            Acts full, inf;
            assert_int_equal(acts_init(&full, &g, N), 0);
            assert_int_equal(acts_init_inference(&inf, &g, N), 0);
            float *ws = malloc((full.ws_floats > inf.ws_floats ? full.ws_floats : inf.ws_floats) * sizeof(float));
            net_forward(&g, &full, x, (BnMode)mode, ws);
            net_forward(&g, &inf, x, (BnMode)mode, ws);
            assert_memory_equal(acts_output(&full), acts_output(&inf), n * sizeof(float));
            printf("    %s, %s statistics: identical output; activations %.2f MiB instead of %.2f\n",
                   net_kind_name(g.kind), mode == BN_RUNNING ? "running" : "batch", inf.arena_floats * 4 / 1048576.0,
                   full.arena_floats * 4 / 1048576.0);
            assert_true(inf.arena_floats * 2 < full.arena_floats);
            float *dx = malloc(n * sizeof(float));
            assert_int_equal(net_backward(&g, &inf, dx, acts_output(&inf), NULL, NULL, ws), -1);
            assert_non_null(strstr(mdgan_errmsg(), "training activations"));
            free(dx), free(ws);
            acts_free(&full), acts_free(&inf);
        }
        net_free(&g);
    }
    Net d;
    Acts a;
    assert_int_equal(net_init(&d, NET_D, T, S, S, 4, &rng), 0);
    assert_int_equal(acts_init_inference(&a, &d, N), -1);
    net_free(&d);
    free(x);
}

static void test_ckpt_wrong_shape(void **state) {
    (void)state;
    char dir[512], path[600];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/g.safetensors", dir);
    Net small, other;
    assert_int_equal(net_init(&small, NET_G1, 8, 32, 32, 4, NULL), 0);
    CkptNet nets[] = {{&small, "G1", 0}};
    assert_int_equal(ckpt_save(path, nets, 1, NULL, 0), 0);
    StFile f;
    assert_int_equal(st_open(&f, path), 0);
    // more levels than the file has
    assert_int_equal(net_init(&other, NET_G1, 32, 64, 64, 4, NULL), 0);
    assert_int_equal(ckpt_load_net(&f, &other, "G1", 0), -1);
    assert_non_null(strstr(mdgan_errmsg(), path));
    assert_non_null(strstr(mdgan_errmsg(), "G1.downConv1.weight") ? "" : strstr(mdgan_errmsg(), "G1.down"));
    net_free(&other);
    // same levels, other width: a shape mismatch naming the tensor
    assert_int_equal(net_init(&other, NET_G1, 8, 32, 32, 8, NULL), 0);
    assert_int_equal(ckpt_load_net(&f, &other, "G1", 0), -1);
    assert_non_null(strstr(mdgan_errmsg(), "G1.downConv1.weight"));
    net_free(&other);
    // same width, final kernel differs (T=16 at 32x32 ends on (4,4,4))
    assert_int_equal(net_init(&other, NET_G1, 16, 32, 32, 4, NULL), 0);
    assert_int_equal(ckpt_load_net(&f, &other, "G1", 0), -1);
    assert_non_null(strstr(mdgan_errmsg(), "G1.downConv4.weight"));
    net_free(&other);
    // fewer levels than the file has: the extra layer is named
    Net big;
    assert_int_equal(net_init(&big, NET_G1, 32, 64, 64, 4, NULL), 0);
    CkptNet bn[] = {{&big, "G1", 0}};
    assert_int_equal(ckpt_save(path, bn, 1, NULL, 0), 0);
    st_close(&f);
    assert_int_equal(st_open(&f, path), 0);
    assert_int_equal(net_init(&other, NET_G1, 32, 64, 64, 4, NULL), 0);
    assert_int_equal(ckpt_load_net(&f, &other, "G1", 0), 0);
    net_free(&other);
    assert_int_equal(net_init(&other, NET_G1, 8, 64, 64, 4, NULL), 0); // L=5 too? then use 8x32
    net_free(&other);
    assert_int_equal(net_init(&other, NET_G1, 8, 32, 32, 4, NULL), 0);
    assert_int_equal(ckpt_load_net(&f, &other, "G1", 0), -1);
    assert_non_null(strstr(mdgan_errmsg(), path));
    net_free(&other);
    net_free(&small), net_free(&big);
    st_close(&f);
    rm_rf(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_reference_names),
        cmocka_unit_test(test_pytorch_g1_step),
        cmocka_unit_test(test_pytorch_g2_step),
        cmocka_unit_test(test_pytorch_d_step),
        cmocka_unit_test(test_backward_input_only),
        cmocka_unit_test(test_gradcheck_g1),
        cmocka_unit_test(test_gradcheck_g2),
        cmocka_unit_test(test_gradcheck_d),
        cmocka_unit_test(test_ckpt_roundtrip),
        cmocka_unit_test(test_ckpt_wrong_shape),
        cmocka_unit_test(test_inference_acts),
    };
    return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
