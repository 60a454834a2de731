/* OpenMP in one place. Loops marked BPI_OMP_FOR split their iterations into
 * fixed static chunks; each iteration writes only its own outputs, so the
 * result does not depend on the number of threads. Small loops stay on the
 * calling thread: a parallel region costs a few microseconds. */
#ifndef BP_PARALLEL_H
#define BP_PARALLEL_H

#include "bp_config.h"

/* Below this many elements of element-wise work, one thread is faster. */
#define BPI_PAR_MIN_ELEMS 32768

#define BPI_PRAGMA(x) _Pragma(#x)
#if BP_HAVE_OPENMP
#define BPI_OMP_FOR(n_threads, work) \
    BPI_PRAGMA(omp parallel for num_threads(n_threads) if ((work) >= BPI_PAR_MIN_ELEMS) schedule(static))
#else
/* Serial build: evaluate nothing, but keep the arguments "used". */
#define BPI_OMP_FOR(n_threads, work) (void)sizeof(n_threads), (void)sizeof(work);
#endif

#endif
