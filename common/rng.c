#include "mdgan/rng.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mdgan/error.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void rng_seed(Rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next(Rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(Rng *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

float rng_normal(Rng *r) {
    // 1 - u keeps the logarithm finite
    double u1 = 1.0 - rng_uniform(r), u2 = rng_uniform(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t rng_below(Rng *r, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, x; // reject the biased tail
    do x = rng_next(r); while (x >= limit);
    return x % n;
}

void rng_format(const Rng *r, char out[68]) {
    snprintf(out, 68, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, r->s[0], r->s[1], r->s[2], r->s[3]);
}

int rng_parse(Rng *r, const char *text) {
    if (!text || strlen(text) != 64) {
        MDGAN_ERR("RNG state '%s' is not 64 hex digits", text ? text : "(missing)");
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        uint64_t v = 0;
        for (int j = 0; j < 16; j++) {
            char c = text[i * 16 + j];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0) {
                MDGAN_ERR("RNG state '%s' is not 64 hex digits", text);
                return -1;
            }
            v = v << 4 | (uint64_t)d;
        }
        r->s[i] = v;
    }
    return 0;
}
