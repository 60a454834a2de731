/* OpenMP in one place. Loops marked BPI_OMP_FOR split their iterations into
 * fixed static chunks; each iteration writes only its own outputs, so the
 * result does not depend on the number of threads. Small loops stay on the
 * calling thread: a parallel region costs a few microseconds. Every thread
 * runs its share with flush-to-zero on and its own mode restored after
 * (fpmode.h), the one-iteration guard loop doing enter and leave. */
#ifndef BP_PARALLEL_H
#define BP_PARALLEL_H

#include "bp_config.h"
#include "fpmode.h"

/* Below this many elements of element-wise work, one thread is faster. */
#define BPI_PAR_MIN_ELEMS 32768

#define BPI_PRAGMA(x) _Pragma(#x)
#if BP_HAVE_OPENMP
#include <omp.h>
#define BPI_OMP_FOR(n_threads, work)                                                    \
    BPI_PRAGMA(omp parallel num_threads(n_threads) if ((work) >= BPI_PAR_MIN_ELEMS))     \
    for (bpi_fpmode bpi_fp_ = bpi_fpmode_enter(); bpi_fp_.once; bpi_fpmode_leave(&bpi_fp_)) \
    BPI_PRAGMA(omp for schedule(static))
/* A region in which each thread runs the statement once, knowing its
 * number tid of nt: for loops that choose each thread's share themselves. */
#define BPI_OMP_EACH(n_threads, work, tid, nt)                                        \
    BPI_PRAGMA(omp parallel num_threads(n_threads) if ((work) >= BPI_PAR_MIN_ELEMS))     \
    for (bpi_fpmode bpi_fp_ = bpi_fpmode_enter(); bpi_fp_.once; bpi_fpmode_leave(&bpi_fp_)) \
    for (int tid = omp_get_thread_num(), nt = omp_get_num_threads(), bpi_once_ = 1;      \
         bpi_once_; bpi_once_ = 0, (void)tid, (void)nt)
#else
/* Serial build: evaluate nothing, but keep the arguments "used". */
#define BPI_OMP_FOR(n_threads, work) (void)sizeof(n_threads), (void)sizeof(work); \
    for (bpi_fpmode bpi_fp_ = bpi_fpmode_enter(); bpi_fp_.once; bpi_fpmode_leave(&bpi_fp_))
#define BPI_OMP_EACH(n_threads, work, tid, nt) (void)sizeof(n_threads), (void)sizeof(work); \
    for (bpi_fpmode bpi_fp_ = bpi_fpmode_enter(); bpi_fp_.once; bpi_fpmode_leave(&bpi_fp_)) \
    for (int tid = 0, nt = 1, bpi_once_ = 1; bpi_once_; bpi_once_ = 0, (void)tid, (void)nt)
#endif

/* Element-wise hot loops (the optimizer updates and checks) are compiled
 * for the baseline ISA and, on x86-64 with gcc, also for AVX2 and AVX-512,
 * the dynamic loader picking the best the CPU has (an ifunc), as the GEMM
 * kernels' dispatch does. The loops have no floating-point reductions
 * across elements (integer maxima, which are exact in any order, are fine)
 * and no FMA contraction (-ffp-contract=off), so every version gives the
 * same bits. Put it on a function that holds no OpenMP region. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define BPI_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef BPI_VECTOR_CLONES
#define BPI_VECTOR_CLONES
#endif

#endif
