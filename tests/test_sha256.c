// SHA-256: both block functions (the CPU's SHA instructions and portable C) give
// libsodium's digest, for every length across the padding's edges, fed whole or in
// pieces of any size.
#include "testutil.h"

#include <sodium.h>

#include "mdgan/sha256.h"

static unsigned char *random_bytes(size_t n, uint32_t seed) {
    unsigned char *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (unsigned char)(seed >> 24);
    }
    return p;
}

static void expect_sodium(const unsigned char *data, size_t n, const unsigned char got[32], const char *how) {
    unsigned char want[32];
    crypto_hash_sha256(want, data, n);
    if (memcmp(got, want, 32) != 0) {
        char g[65], w[65];
        sha256_hex(g, got), sha256_hex(w, want);
        fail_msg("%s, %zu bytes (%s block function): %s, libsodium %s", how, n,
                 sha256_uses_cpu() ? "SHA instructions" : "portable", g, w);
    }
}

// FIPS 180-4's examples ("abc" and the 448-bit message) and the empty message.
static void test_known_digests(void **state) {
    (void)state;
    const char *msg[] = {"", "abc", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"};
    const char *want[] = {"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"};
    for (int pass = 0; pass < 2; pass++) {
        sha256_force_portable(pass);
        for (int i = 0; i < 3; i++) {
            unsigned char d[32];
            char hex[65];
            sha256(d, msg[i], strlen(msg[i]));
            sha256_hex(hex, d);
            assert_string_equal(hex, want[i]);
        }
    }
    sha256_force_portable(0);
}

// Every length from 0 to 1100 bytes (the 55/56/64-byte padding edges of many blocks),
// whole and in pieces of 1, 7, 63, 64 and 65 bytes, on both block functions.
static void test_lengths_and_pieces(void **state) {
    (void)state;
    unsigned char *data = random_bytes(1100, 7);
    const size_t pieces[] = {1, 7, 63, 64, 65};
    for (int pass = 0; pass < 2; pass++) {
        sha256_force_portable(pass);
        for (size_t n = 0; n <= 1100; n++) {
            unsigned char d[32];
            sha256(d, data, n);
            expect_sodium(data, n, d, "whole");
            for (size_t k = 0; k < sizeof pieces / sizeof *pieces; k++) {
                Sha256 s;
                sha256_init(&s);
                for (size_t at = 0; at < n; at += pieces[k])
                    sha256_update(&s, data + at, n - at < pieces[k] ? n - at : pieces[k]);
                sha256_final(&s, d);
                expect_sodium(data, n, d, "in pieces");
            }
        }
    }
    sha256_force_portable(0);
    printf("    lengths 0..1100, whole and in 5 piece sizes: libsodium's digests (%s)\n",
           sha256_uses_cpu() ? "SHA instructions and portable C" : "portable C twice: this CPU has no SHA instructions");
    free(data);
}

// A large buffer (many blocks in one call) and one fed in uneven pieces.
static void test_large(void **state) {
    (void)state;
    const size_t n = (5u << 20) + 13;
    unsigned char *data = random_bytes(n, 99);
    for (int pass = 0; pass < 2; pass++) {
        sha256_force_portable(pass);
        unsigned char d[32];
        sha256(d, data, n);
        expect_sodium(data, n, d, "whole");
        Sha256 s;
        sha256_init(&s);
        for (size_t at = 0, step = 1; at < n; at += step, step = step * 3 % 100003 + 1)
            sha256_update(&s, data + at, n - at < step ? n - at : step);
        sha256_final(&s, d);
        expect_sodium(data, n, d, "in uneven pieces");
    }
    sha256_force_portable(0);
    free(data);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_digests),
        cmocka_unit_test(test_lengths_and_pieces),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
