// The control plane: every message's schema, and the stage-side client against a real
// ROUTER over ipc (its queue, heartbeats, STOP).
#include <signal.h>
#include <zmq.h>

#include "mdgan/control.h"
#include "mdgan/train.h"
#include "mdgan/wire.h"
#include "testutil.h"

static void check_schema(int type, const char *text, int want, const char *why_part) {
    json_t *body;
    char why[256];
    int st = control_check(type, text, &body, why, sizeof why);
    if (st != want) fail_msg("%s %s: status %d (%s), expected %d", control_type_name(type), text, st, why, want);
    if (st == WIRE_OK) {
        assert_non_null(body);
        json_decref(body);
    } else {
        assert_null(body);
        if (why_part && !strstr(why, why_part)) fail_msg("reason '%s' lacks '%s'", why, why_part);
    }
}

static const char *SHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void test_schema(void **state) {
    (void)state;
    char ok_ckpt[512], bad_sha[512];
    snprintf(ok_ckpt, sizeof ok_ckpt,
             "{\"path\": \"checkpoints/base_step_1.safetensors\", \"step\": 1, \"epoch\": 0, \"sha256\": \"%s\", "
             "\"bytes\": 100}", SHA);
    snprintf(bad_sha, sizeof bad_sha, "{\"path\": \"x\", \"step\": 1, \"epoch\": 0, \"sha256\": \"%.63sG\", \"bytes\": 1}",
             SHA);
    check_schema(CTL_HELLO, "{\"stage\": \"base\", \"pid\": 12, \"run\": \"r\"}", WIRE_OK, NULL);
    check_schema(CTL_HELLO, "{\"stage\": \"\", \"pid\": 12, \"run\": \"r\"}", WIRE_E_REQUEST, "'stage'");
    check_schema(CTL_HELLO, "{\"stage\": \"base\", \"pid\": -1, \"run\": \"r\"}", WIRE_E_REQUEST, "'pid'");
    check_schema(CTL_PROGRESS, "{\"step\": 3, \"total_steps\": 9, \"epoch\": 0, \"rate\": 1.5, \"losses\": {\"a\": 1, "
                 "\"b\": null}}", WIRE_OK, NULL);
    check_schema(CTL_PROGRESS, "{\"step\": 3.5, \"total_steps\": 9, \"epoch\": 0, \"rate\": 1, \"losses\": {}}",
                 WIRE_E_REQUEST, "'step'");
    check_schema(CTL_PROGRESS, "{\"step\": 3, \"total_steps\": 9, \"epoch\": 0, \"rate\": \"fast\", \"losses\": {}}",
                 WIRE_E_REQUEST, "'rate'");
    check_schema(CTL_PROGRESS, "{\"step\": 3, \"total_steps\": 9, \"epoch\": 0, \"rate\": 1, \"losses\": {\"a\": \"x\"}}",
                 WIRE_E_REQUEST, "'losses'");
    check_schema(CTL_PROGRESS, "{\"step\": 3, \"total_steps\": 9, \"epoch\": 0, \"rate\": 1, \"losses\": [1]}",
                 WIRE_E_REQUEST, "'losses'");
    check_schema(CTL_CHECKPOINT, ok_ckpt, WIRE_OK, NULL);
    check_schema(CTL_CHECKPOINT, bad_sha, WIRE_E_REQUEST, "'sha256'");
    check_schema(CTL_CHECKPOINT, "{\"path\": \"x\", \"step\": 1, \"epoch\": 0, \"bytes\": 1}", WIRE_E_REQUEST, "'sha256'");
    check_schema(CTL_EVAL, "{\"step\": 0, \"metrics\": {\"psnr\": 20.5, \"motion_ratio\": null}}", WIRE_OK, NULL);
    check_schema(CTL_EVAL, "{\"step\": 0}", WIRE_E_REQUEST, "'metrics'");
    check_schema(CTL_DONE, "{\"step\": 5, \"total_steps\": 5}", WIRE_OK, NULL);
    check_schema(CTL_ERROR, "{\"message\": \"disk full\"}", WIRE_OK, NULL);
    check_schema(CTL_ERROR, "{\"message\": 3}", WIRE_E_REQUEST, "'message'");
    check_schema(CTL_HEARTBEAT, "{}", WIRE_OK, NULL);
    check_schema(CTL_STOP, "{}", WIRE_OK, NULL);
    // not an object, truncated, duplicate keys, an unknown type
    check_schema(CTL_HEARTBEAT, "[]", WIRE_E_REQUEST, "not a JSON object");
    check_schema(CTL_HEARTBEAT, "{\"a\": ", WIRE_E_REQUEST, "not a JSON object");
    check_schema(CTL_DONE, "{\"step\": 1, \"step\": 2, \"total_steps\": 2}", WIRE_E_REQUEST, NULL);
    check_schema(CTL_HEARTBEAT, "", WIRE_E_REQUEST, NULL);
    check_schema(42, "{}", WIRE_E_TYPE, "unknown control message type 42");
    // a name with a NUL inside its JSON escape (the parser refuses it already)
    check_schema(CTL_HELLO, "{\"stage\": \"ba\\u0000se\", \"pid\": 1, \"run\": \"r\"}", WIRE_E_REQUEST, NULL);
}

// A real ROUTER and the client thread: messages arrive in order under the stage's
// name, heartbeats keep coming, and STOP sets the stop flag as SIGTERM would.
static void test_client_against_router(void **state) {
    (void)state;
    char dir[4096], ep[4200];
    make_tmpdir(dir, sizeof dir);
    snprintf(ep, sizeof ep, "ipc://%s/control.sock", dir);
    void *ctx = zmq_ctx_new(), *router = zmq_socket(ctx, ZMQ_ROUTER);
    const int timeout = 5000, linger = 0;
    zmq_setsockopt(router, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_bind(router, ep), 0);
    train_install_signals();
    ControlClient *cc = control_client_start(ep, "refine", 0.05, "");
    assert_non_null(cc);
    control_post(cc, CTL_HELLO, json_pack("{s:s, s:i, s:s}", "stage", "refine", "pid", 7, "run", "r"));
    for (int i = 0; i < 3; i++)
        control_post(cc, CTL_PROGRESS, json_pack("{s:i, s:i, s:i, s:f, s:{}}", "step", i, "total_steps", 3, "epoch", 0,
                                                 "rate", 1.0, "losses"));
    int got[8] = {0}, order_ok = 1;
    long last_step = -1;
    for (int n = 0; n < 12; n++) {
        WireMsg m;
        char why[256];
        assert_int_equal(wire_recv(router, 1, NULL, &m, why, sizeof why), WIRE_OK);
        assert_int_equal(m.route_len, 6);
        assert_memory_equal(m.route, "refine", 6);
        json_t *b;
        assert_int_equal(control_check(m.type, m.text, &b, why, sizeof why), WIRE_OK);
        if (m.type == CTL_PROGRESS) {
            long step = (long)json_integer_value(json_object_get(b, "step"));
            order_ok &= step == last_step + 1;
            last_step = step;
        }
        if (m.type < 8) got[m.type]++;
        json_decref(b);
        wire_msg_free(&m);
    }
    assert_int_equal(got[CTL_HELLO], 1);
    assert_int_equal(got[CTL_PROGRESS], 3);
    assert_true(order_ok);
    assert_true(got[CTL_HEARTBEAT] >= 8);
    assert_int_equal(train_stop_signal(), 0);
    assert_int_equal(wire_send(router, (const unsigned char *)"refine", 6, CTL_STOP, 0, 1, "{}", NULL, 0, NULL), 0);
    for (int i = 0; i < 100 && !train_stop_signal(); i++) usleep(20000);
    assert_int_equal(train_stop_signal(), SIGTERM);
    assert_true(control_stop_requested(cc));
    // what is posted last is still delivered by the stop's flush
    control_post(cc, CTL_DONE, json_pack("{s:i, s:i}", "step", 3, "total_steps", 3));
    control_client_stop(cc, 2.0);
    int done = 0;
    for (int n = 0; n < 200 && !done; n++) {
        WireMsg m;
        char why[256];
        if (wire_recv(router, 1, NULL, &m, why, sizeof why) != WIRE_OK) break;
        done = m.type == CTL_DONE;
        wire_msg_free(&m);
    }
    assert_true(done);
    control_post(NULL, CTL_DONE, json_object());   // a stage run by hand: nothing happens
    zmq_close(router);
    zmq_ctx_term(ctx);
    rm_rf(dir);
}

static void test_bad_endpoint(void **state) {
    (void)state;
    ControlClient *cc = control_client_start("tcp://10.1.2.3:5555", "base", 1, "");
    assert_null(cc);
    assert_non_null(strstr(mdgan_errmsg(), "tcp://10.1.2.3:5555"));
    cc = control_client_start("nonsense", "base", 1, "");
    assert_null(cc);
    assert_non_null(strstr(mdgan_errmsg(), "nonsense"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema),
        cmocka_unit_test(test_client_against_router),
        cmocka_unit_test(test_bad_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
