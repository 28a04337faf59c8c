// Stage II: one whole training step (D2 step on Y, Y1, Y2 with the ranking loss, then
// G2 against the updated D2) against PyTorch (tests/fixtures/stage2_step.safetensors,
// written by tests/make_fixtures.py), and the shapes stage2_init refuses.
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

static void test_pytorch_stage2_step(void **state) {
    (void)state;
    StFile f;
    fixture_open(&f, "stage2_step.safetensors");
    const int N = fixture_meta_i(&f, "N"), T = fixture_meta_i(&f, "T");
    const int H = fixture_meta_i(&f, "H"), W = fixture_meta_i(&f, "W");
    const float lambda_l1 = fixture_meta_f(&f, "lambda_l1"), lambda_rank = fixture_meta_f(&f, "lambda_rank");
    // the fixture must exercise both weights
    assert_true(lambda_l1 != 1.0f), assert_true(lambda_rank != 1.0f);
    Stage2 s;
    AdamConfig opt = ADAM_DEFAULTS;
    if (stage2_init(&s, N, T, H, W, fixture_meta_i(&f, "ngf"), fixture_meta_i(&f, "ndf"), lambda_l1, lambda_rank,
                    &opt, &opt, NULL) != 0)
        fail_msg("%s", mdgan_errmsg());
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
#define CMP_LOSS(NAME, MEMBER) fixture_compare_loss(&f, NAME, losses.MEMBER, TOL);
    STAGE2_LOSSES(CMP_LOSS)
#undef CMP_LOSS
#define CMP_NET(PREFIX, MEMBER) fixture_compare_net(&f, &s.MEMBER, PREFIX, TOL);
    STAGE2_NETS(CMP_NET)
#undef CMP_NET
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

// A shape the networks cannot be built for is refused with a message naming it;
// stage2_free after a failed init is harmless.
static void test_init_refuses(void **state) {
    (void)state;
    Stage2 s;
    AdamConfig opt = ADAM_DEFAULTS;
    assert_int_equal(stage2_init(&s, 2, 8, 16, 16, 4, 4, 1.0f, 1.0f, &opt, &opt, NULL), -1);
    assert_non_null(strstr(mdgan_errmsg(), "8 frames of 16x16"));
    stage2_free(&s);
    assert_int_equal(stage2_init(&s, 0, 8, 32, 32, 4, 4, 1.0f, 1.0f, &opt, &opt, NULL), -1);
    assert_non_null(strstr(mdgan_errmsg(), "batch size 0"));
    stage2_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pytorch_stage2_step),
        cmocka_unit_test(test_init_refuses),
    };
    return cmocka_run_group_tests_name("stage2", tests, NULL, NULL);
}
