// Stage II: one whole training step (D2 step on Y, Y1, Y2 with the ranking loss, then
// G2 against the updated D2) against PyTorch, for both forms of the ranking distance
// (tests/fixtures/stage2_step.safetensors: paper, stage2_step_bounded.safetensors:
// bounded; written by tests/make_fixtures.py), and what stage2_init refuses.
#include "teststep.h"

#include "mdgan/stage2.h"

// float32 through G2 and six D2 calls and the Gram matrices: 1e-4 of the largest
// magnitude, as the other step tests.
#define TOL 1e-4

// The two nets of a Stage2, as (fixture prefix, Net member).
#define STAGE2_NETS(X) X("G2", g) X("D2", d)
// The losses, as (fixture name, Stage2Losses member).
#define STAGE2_LOSSES(X) X("loss_d_real", d_real) X("loss_d_fake", d_fake) X("loss_d_rank", d_rank) \
    X("loss_g_adv", g_adv) X("loss_g_l1", g_l1) X("loss_g_rank", g_rank)

// Largest relative error of every state entry of net against "new.<prefix>.<name>"
// (fixture_compare_net has already failed the test on any entry over the tolerance).
static double worst_net_err(const StFile *f, const Net *net, const char *prefix) {
    double worst = 0;
    for (int k = 0; k < net->ntable; k++) {
        const NetTensor *t = &net->table[k];
        char name[96];
        snprintf(name, sizeof name, "new.%s.%s", prefix, t->name);
        float *ref = fixture_f32(f, name, t->numel);
        worst = fmax(worst, max_rel_err(net_tensor_data(net, t), ref, t->numel));
        free(ref);
    }
    return worst;
}

static double rel(double got, double ref) { return fabs(got - ref) / fabs(ref); }

// One whole step of the given form against its fixture; *d_rank gets PyTorch's L_rank
// of the D2 step (so that the caller can see the two fixtures differ).
static void stage2_step_matches(const char *fixture, RankForm form, float *d_rank) {
    StFile f;
    fixture_open(&f, fixture);
    const char *mform = st_meta_get(&f, "rank_form");
    if (strcmp(mform ? mform : "paper", rank_form_name(form)) != 0)
        fail_msg("fixture %s is for rank_form %s, not %s", fixture, mform ? mform : "paper", rank_form_name(form));
    const int N = fixture_meta_i(&f, "N"), T = fixture_meta_i(&f, "T");
    const int H = fixture_meta_i(&f, "H"), W = fixture_meta_i(&f, "W");
    const float lambda_l1 = fixture_meta_f(&f, "lambda_l1"), lambda_rank = fixture_meta_f(&f, "lambda_rank");
    // the fixture must exercise both weights
    assert_true(lambda_l1 != 1.0f), assert_true(lambda_rank != 1.0f);
    Stage2 s;
    AdamConfig opt = ADAM_DEFAULTS;
    if (stage2_init(&s, N, T, H, W, fixture_meta_i(&f, "ngf"), fixture_meta_i(&f, "ndf"), lambda_l1, lambda_rank,
                    form, &opt, &opt, NULL) != 0)
        fail_msg("%s", mdgan_errmsg());
    assert_int_equal(s.rank_form, form);
#define LOAD(PREFIX, MEMBER) fixture_load_net(&f, &s.MEMBER, PREFIX);
    STAGE2_NETS(LOAD)
#undef LOAD
    const size_t ny = (size_t)N * 3 * T * H * W;
    float *y = fixture_f32(&f, "y", ny), *y1 = fixture_f32(&f, "y1", ny);

    Stage2Losses losses;
    stage2_step(&s, y, y1, &losses);

    float *y2 = fixture_f32(&f, "y2", ny);
    expect_close("y2", stage2_output(&s), y2, ny, TOL);
    free(y2);
    double worst_loss = 0, worst_state = 0;
#define CMP_LOSS(NAME, MEMBER)                                     \
    {                                                              \
        fixture_compare_loss(&f, NAME, losses.MEMBER, TOL);        \
        float *r = fixture_f32(&f, NAME, 1);                       \
        worst_loss = fmax(worst_loss, rel(losses.MEMBER, r[0]));   \
        free(r);                                                   \
    }
    STAGE2_LOSSES(CMP_LOSS)
#undef CMP_LOSS
#define CMP_NET(PREFIX, MEMBER)                                                \
    fixture_compare_net(&f, &s.MEMBER, PREFIX, TOL);                           \
    worst_state = fmax(worst_state, worst_net_err(&f, &s.MEMBER, PREFIX));
    STAGE2_NETS(CMP_NET)
#undef CMP_NET
    printf("    %s form: max rel err of the six losses %.3e, of every updated G2/D2 tensor %.3e (tol %.0e)\n",
           rank_form_name(form), worst_loss, worst_state, TOL);
    float *r = fixture_f32(&f, "loss_d_rank", 1);
    *d_rank = r[0];
    free(r);
    // one Adam step each; D2 ran six training-mode forwards (Y, Y1, Y2 for its own
    // step, the three again for G2's), G2 one: PyTorch's num_batches_tracked
    assert_int_equal(s.g.adam_step, 1), assert_int_equal(s.d.adam_step, 1);
    assert_int_equal(s.g.bn_batches, 1), assert_int_equal(s.d.bn_batches, 6);

    // inference runs on running statistics at batch 1 and gives a clip in [-1, 1]
    const float *p = stage2_predict(&s, y1);
    for (size_t i = 0; i < ny / N; i++)
        if (!(p[i] >= -1.0f && p[i] <= 1.0f)) fail_msg("prediction %zu is %g", i, p[i]);

    free(y), free(y1);
    stage2_free(&s);
    st_close(&f);
}

static void test_pytorch_stage2_step(void **state) {
    (void)state;
    float paper, bounded;
    stage2_step_matches("stage2_step.safetensors", RANK_PAPER, &paper);
    stage2_step_matches("stage2_step_bounded.safetensors", RANK_BOUNDED, &bounded);
    // the two fixtures start from the same nets and clips: their ranking losses must
    // differ, or the bounded comparison would not tell the forms apart
    printf("    L_rank of the D2 step: paper %.6f, bounded %.6f\n", paper, bounded);
    assert_true(rel(bounded, paper) > 0.01);
}

// A shape the networks cannot be built for is refused with a message naming it;
// stage2_free after a failed init is harmless.
static void test_init_refuses(void **state) {
    (void)state;
    Stage2 s;
    AdamConfig opt = ADAM_DEFAULTS;
    assert_int_equal(stage2_init(&s, 2, 8, 16, 16, 4, 4, 1.0f, 1.0f, RANK_PAPER, &opt, &opt, NULL), -1);
    assert_non_null(strstr(mdgan_errmsg(), "8 frames of 16x16"));
    stage2_free(&s);
    assert_int_equal(stage2_init(&s, 0, 8, 32, 32, 4, 4, 1.0f, 1.0f, RANK_BOUNDED, &opt, &opt, NULL), -1);
    assert_non_null(strstr(mdgan_errmsg(), "batch size 0"));
    stage2_free(&s);
    assert_int_equal(stage2_init(&s, 2, 8, 32, 32, 4, 4, 1.0f, 1.0f, (RankForm)7, &opt, &opt, NULL), -1);
    assert_non_null(strstr(mdgan_errmsg(), "ranking-loss form 7"));
    stage2_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pytorch_stage2_step),
        cmocka_unit_test(test_init_refuses),
    };
    return cmocka_run_group_tests_name("stage2", tests, NULL, NULL);
}
