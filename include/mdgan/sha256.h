// SHA-256 (FIPS 180-4): the digests of checkpoints, their sidecars, G1 and the data.
// Blocks go through the CPU's SHA instructions where it has them (about 5x libsodium's
// portable code: a 603 MB paper-shape checkpoint hashed in about 0.3 s instead of 1.5),
// else through portable C; both give the same digest, which tests check against
// libsodium's.
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t bytes;          // hashed so far
    unsigned char buf[64];   // a block not yet full
    size_t fill;
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t n);
void sha256_final(Sha256 *s, unsigned char digest[32]);
void sha256(unsigned char digest[32], const void *data, size_t n);
// 64 lowercase hex digits and a NUL.
void sha256_hex(char hex[65], const unsigned char digest[32]);

// Which block function runs: 1 the SHA instructions, 0 portable C. Tests force the
// portable one (0) to check both; -1 restores the choice by the CPU.
int sha256_uses_cpu(void);
void sha256_force_portable(int on);
