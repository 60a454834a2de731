#include <math.h>

#include "rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void bpi_rng_seed(bpi_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t bpi_rng_next(bpi_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double bpi_rng_uniform(bpi_rng *rng)
{
    return (double)(bpi_rng_next(rng) >> 11) * 0x1.0p-53;
}

uint64_t bpi_rng_below(bpi_rng *rng, uint64_t n)
{
    /* Reject the top (2^64 mod n) values so every residue is equally likely. */
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t r = bpi_rng_next(rng);
        if (r >= threshold)
            return r % n;
    }
}

/* ln x = e ln 2 + ln m with x = m 2^e, m in [sqrt(1/2), sqrt(2)), and
 * ln m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m - 1)/(m + 1),
 * |s| < 0.172: 12 terms reach below 2^-53. frexp and the arithmetic are
 * exact or correctly rounded IEEE operations, so every platform agrees. */
double bpi_log(double x)
{
    int e;
    double m = frexp(x, &e);
    if (m < 0.70710678118654752440) {
        m *= 2.0;
        e -= 1;
    }
    double s = (m - 1.0) / (m + 1.0);
    double s2 = s * s;
    double sum = 0.0;
    for (int k = 23; k >= 1; k -= 2)
        sum = sum * s2 + 1.0 / k;
    return 0.69314718055994530942 * e + 2.0 * s * sum;
}

double bpi_rng_normal(bpi_rng *rng)
{
    for (;;) {
        double u = 2.0 * bpi_rng_uniform(rng) - 1.0;
        double v = 2.0 * bpi_rng_uniform(rng) - 1.0;
        double s = u * u + v * v;
        if (s > 0.0 && s < 1.0)
            return u * sqrt(-2.0 * bpi_log(s) / s);
    }
}
