#include <threads.h>
#include <time.h>

#include "team.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* Spin this many times (~30 us) before sleeping: long enough to catch a
 * dependency finishing on another core, short enough not to burn the core
 * when the thread we wait for is not running (a shared, oversubscribed
 * machine): yielding does not give the core away under Linux's CFS, a
 * short sleep does. */
#define SPINS_BEFORE_SLEEP 1024
#define SLEEP_NS 20000

static void relax(unsigned *spins)
{
    if (++*spins < SPINS_BEFORE_SLEEP) {
        CPU_RELAX();
        return;
    }
    struct timespec nap = {0, SLEEP_NS};
    thrd_sleep(&nap, NULL);
}

void bpi_barrier_init(bpi_barrier *b, unsigned size)
{
    atomic_init(&b->arrived, 0);
    atomic_init(&b->generation, 0);
    b->size = size;
}

void bpi_barrier_wait(bpi_barrier *b)
{
    if (b->size <= 1)
        return;
    unsigned gen = atomic_load_explicit(&b->generation, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) + 1 == b->size) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->generation, 1, memory_order_release);
        return;
    }
    unsigned spins = 0;
    while (atomic_load_explicit(&b->generation, memory_order_acquire) == gen)
        relax(&spins);
}

void bpi_wait_flag(const atomic_int *flag)
{
    unsigned spins = 0;
    while (!atomic_load_explicit(flag, memory_order_acquire))
        relax(&spins);
}
