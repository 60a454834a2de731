/* Helpers shared by the test suites: a deterministic RNG independent of the
 * library's, and comparisons that report where they failed. */
#ifndef BP_TESTUTIL_H
#define BP_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

typedef struct tu_rng { uint64_t s; } tu_rng;

void tu_seed(tu_rng *r, uint64_t seed);
uint64_t tu_next(tu_rng *r);
/* Uniform in [lo, hi). */
double tu_uniform(tu_rng *r, double lo, double hi);
/* Integer-valued float in [lo, hi] (exact in float, for exact GEMM checks). */
float tu_int_float(tu_rng *r, int lo, int hi);
void tu_fill(tu_rng *r, float *x, size_t n, double lo, double hi);

/* Thread counts to try: 1, 2 and (oversubscribed) 3. */
#define TU_N_THREAD_COUNTS 3
extern const int tu_thread_counts[TU_N_THREAD_COUNTS];

#endif
