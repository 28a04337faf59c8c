#ifndef MDGAN_RNG_H
#define MDGAN_RNG_H
// Deterministic random numbers: xoshiro256** seeded through splitmix64. The whole state
// is four words, saved in checkpoints so that a resumed run draws what the
// uninterrupted run would have drawn.
#include <stdint.h>

typedef struct { uint64_t s[4]; } Rng;

void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);
double rng_uniform(Rng *r);               // [0, 1)
float rng_normal(Rng *r);                 // N(0, 1), Box-Muller (one draw per call)
uint64_t rng_below(Rng *r, uint64_t n);   // uniform in [0, n), unbiased
// Text form for checkpoint metadata: four 16-digit hex words.
void rng_format(const Rng *r, char out[68]);
int rng_parse(Rng *r, const char *text);  // -1 with a message when malformed

#endif
