// Stage I: one whole training step (D1 step, then G1 against the updated D1) against
// PyTorch (tests/fixtures/stage1_step.safetensors, written by tests/make_fixtures.py),
// and the shapes stage1_init refuses.
#include "teststep.h"

#include "mdgan/stage1.h"

// Values are float32 through several networks: 1e-4 of the largest magnitude, as the
// single-network step tests in test_net.c.
#define TOL 1e-4

// The two nets of a Stage1, as (fixture prefix, Net member).
#define STAGE1_NETS(X) X("G1", g) X("D1", d)
// The losses, as (fixture name, Stage1Losses member).
#define STAGE1_LOSSES(X) X("loss_d_real", d_real) X("loss_d_fake", d_fake) \
    X("loss_g_adv", g_adv) X("loss_g_l1", g_l1)

static void test_pytorch_stage1_step(void **state) {
    (void)state;
    StFile f;
    fixture_open(&f, "stage1_step.safetensors");
    const int N = fixture_meta_i(&f, "N"), T = fixture_meta_i(&f, "T");
    const int H = fixture_meta_i(&f, "H"), W = fixture_meta_i(&f, "W");
    const float lambda_l1 = fixture_meta_f(&f, "lambda_l1");
    assert_true(lambda_l1 != 1.0f); // the fixture must exercise the weight
    Stage1 s;
    AdamConfig opt = ADAM_DEFAULTS;
    if (stage1_init(&s, N, T, H, W, fixture_meta_i(&f, "ngf"), fixture_meta_i(&f, "ndf"), lambda_l1, &opt, &opt,
                    NULL) != 0)
        fail_msg("%s", mdgan_errmsg());
#define LOAD(PREFIX, MEMBER) fixture_load_net(&f, &s.MEMBER, PREFIX);
    STAGE1_NETS(LOAD)
#undef LOAD
    const size_t ny = (size_t)N * 3 * T * H * W;
    float *y = fixture_f32(&f, "y", ny);

    Stage1Losses losses;
    stage1_step(&s, y, &losses);

    // G1's output of the step: nothing after the G1 forward writes to it
    float *y1 = fixture_f32(&f, "y1", ny);
    assert_int_equal(acts_output_numel(&s.ag), ny);
    expect_close("y1", acts_output(&s.ag), y1, ny, TOL);
    free(y1);
#define CMP_LOSS(NAME, MEMBER) fixture_compare_loss(&f, NAME, losses.MEMBER, TOL);
    STAGE1_LOSSES(CMP_LOSS)
#undef CMP_LOSS

#define CMP_NET(PREFIX, MEMBER) fixture_compare_net(&f, &s.MEMBER, PREFIX, TOL);
    STAGE1_NETS(CMP_NET)
#undef CMP_NET
    // one Adam step each; D1 ran three training-mode forwards (Y, Y1 for its own step,
    // Y1 again for G1's), G1 one: PyTorch's num_batches_tracked
    assert_int_equal(s.g.adam_step, 1), assert_int_equal(s.d.adam_step, 1);
    assert_int_equal(s.g.bn_batches, 1), assert_int_equal(s.d.bn_batches, 3);

    free(y);
    stage1_free(&s);
    st_close(&f);
}

// A shape the networks cannot be built for, and an empty batch, are refused with a
// message naming them; stage1_free after a failed init is harmless.
static void test_init_refuses(void **state) {
    (void)state;
    Stage1 s;
    AdamConfig opt = ADAM_DEFAULTS;
    assert_int_equal(stage1_init(&s, 2, 8, 16, 16, 4, 4, 1.0f, &opt, &opt, NULL), -1);
    assert_non_null(strstr(mdgan_errmsg(), "8 frames of 16x16"));
    stage1_free(&s);
    assert_int_equal(stage1_init(&s, 0, 8, 32, 32, 4, 4, 1.0f, &opt, &opt, NULL), -1);
    assert_non_null(strstr(mdgan_errmsg(), "batch size 0"));
    stage1_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pytorch_stage1_step),
        cmocka_unit_test(test_init_refuses),
    };
    return cmocka_run_group_tests_name("stage1", tests, NULL, NULL);
}
