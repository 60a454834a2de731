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

/* Spin (pausing) for up to SPIN_NS of wall time, then sleep in short naps.
 * Long enough to catch a dependency finishing on another core: the waits
 * of a plan are about one GEMM long, tens to hundreds of microseconds, and
 * sleeping costs far more than asked on a paravirtualised guest (a 20 us
 * nap took 93 us on the Zen 5 VMs: a scheduled backward of 512 x 3 at
 * batch 64 that slept after 1024 pauses, 19 us, lost 100 us in naps and
 * ran at 0.76x the sequential backward, 1.01x once it spun). Short enough
 * not to burn a core for long when the thread we wait for is not running
 * (a shared machine): yielding does not give the core away under Linux's
 * CFS, a nap does. The clock is read once per SPIN_CHECK pauses. */
#define SPIN_NS 1000000LL
#define SPIN_CHECK 64
#define SLEEP_NS 20000

typedef struct backoff {
    unsigned spins;
    long long since; /* ns, when spinning began (0: not yet read) */
} backoff;

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void relax(backoff *b)
{
    if (++b->spins % SPIN_CHECK != 0) {
        CPU_RELAX();
        return;
    }
    long long t = now_ns();
    if (b->since == 0)
        b->since = t;
    if (t - b->since < SPIN_NS) {
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
    backoff off = {0, 0};
    while (atomic_load_explicit(&b->generation, memory_order_acquire) == gen)
        relax(&off);
}

void bpi_wait_flag(const atomic_int *flag)
{
    backoff off = {0, 0};
    while (!atomic_load_explicit(flag, memory_order_acquire))
        relax(&off);
}
