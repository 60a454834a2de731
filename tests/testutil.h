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

/* The whole file at path in a malloc'd buffer (one spare byte), its size in
 * *size; NULL if it cannot be opened or read. */
unsigned char *tu_read_file(const char *path, size_t *size);
/* How many entries of directory dir have `part` in their name; -1 if dir
 * cannot be opened. */
int tu_count_named(const char *dir, const char *part);

/* Thread counts to try: 1, 2 and (oversubscribed) 3. */
#define TU_N_THREAD_COUNTS 3
extern const int tu_thread_counts[TU_N_THREAD_COUNTS];

#endif
