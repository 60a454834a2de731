/* Teams: a group of threads of one parallel region that work together on a
 * task (a GEMM, an element-wise pass) and wait for each other at their own
 * barrier, while other groups of the same region run other tasks. */
#ifndef BP_TEAM_H
#define BP_TEAM_H

#include <stdatomic.h>

/* A reusable barrier for `size` threads: the last to arrive bumps the
 * generation that the others spin on. Spinning backs off to short sleeps
 * so oversubscribed runs (more threads than cores) still progress. */
typedef struct bpi_barrier {
    atomic_uint arrived;
    atomic_uint generation;
    unsigned size;
} bpi_barrier;

typedef struct bpi_team {
    int rank, size;          /* this thread's index in the team, the team's size */
    bpi_barrier *barrier;    /* shared by the team */
} bpi_team;

void bpi_barrier_init(bpi_barrier *b, unsigned size);
void bpi_barrier_wait(bpi_barrier *b);

/* Spin until *flag is non-zero (acquire), backing off like the barrier. */
void bpi_wait_flag(const atomic_int *flag);

/* Part `rank` of [0, n) split into `size` nearly equal ranges. */
static inline void bpi_team_range(const bpi_team *t, size_t n, size_t *lo, size_t *hi)
{
    size_t q = n / (size_t)t->size, r = n % (size_t)t->size, k = (size_t)t->rank;
    *lo = k * q + (k < r ? k : r);
    *hi = *lo + q + (k < r);
}

#endif
