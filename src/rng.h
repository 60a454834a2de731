/* The library's random numbers: xoshiro256** (Blackman & Vigna) seeded
 * through splitmix64. Only integer and correctly rounded IEEE arithmetic is
 * used (no libm), so a seed gives the same stream on every platform. */
#ifndef BP_RNG_H
#define BP_RNG_H

#include <stdint.h>

typedef struct bpi_rng {
    uint64_t s[4];
} bpi_rng;

void bpi_rng_seed(bpi_rng *rng, uint64_t seed);
uint64_t bpi_rng_next(bpi_rng *rng);
/* Uniform double in [0, 1) with 53 random bits. */
double bpi_rng_uniform(bpi_rng *rng);
/* Uniform integer in [0, n), n >= 1, without modulo bias. */
uint64_t bpi_rng_below(bpi_rng *rng, uint64_t n);
/* Standard normal (Marsaglia's polar method). */
double bpi_rng_normal(bpi_rng *rng);
/* Natural logarithm of a finite x > 0 from +, *, / only (see rng.c). */
double bpi_log(double x);

#endif
