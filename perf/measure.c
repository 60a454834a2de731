/* One library on one shape: warm up, check, calibrate, then timed repetitions.
 *
 * bench_gemm alternates libraries repetition by repetition (A B C D, A B C D,
 * ...), so a burst of load from another process hits all of them alike
 * instead of one library's whole series; the medians over repetitions then
 * drop most of that noise.
 */
#include <math.h>
#include <time.h>

#include "bench.h"

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double time_calls(gemm_lib *lib, gemm_data *d, int calls)
{
    const gemm_shape *s = &d->shape;
    double t0 = now_seconds();
    for (int c = 0; c < calls; c++)
        lib->sgemm(lib, s->ta, s->tb, s->M, s->N, s->K, d->A, d->lda, d->B, d->ldb, d->C,
                   d->ldc);
    return now_seconds() - t0;
}

prep_result bench_prepare(gemm_lib *lib, gemm_data *d, int n_threads, const bench_opts *o)
{
    prep_result r = { PREP_FAILED, 0, 0, HUGE_VAL };
    const gemm_shape *s = &d->shape;
    if (!lib->available || lib->set_threads(lib, n_threads) != 0)
        return r;
    /* NaN in C: a library that leaves part of C unwritten, or reads C
     * although beta = 0, fails the check. */
    size_t mn = (size_t)s->M * (size_t)s->N;
    for (size_t i = 0; i < mn; i++)
        d->C[i] = NAN;
    /* The first call is also the warm-up (page faults, packing buffers,
     * thread pool start-up); it is never timed. */
    if (lib->sgemm(lib, s->ta, s->tb, s->M, s->N, s->K, d->A, d->lda, d->B, d->ldb, d->C,
                   d->ldc) != 0)
        return r;
    r.err = data_check(d);
    if (r.err != 0.0) {
        r.status = PREP_WRONG;
        return r;
    }
    r.status = PREP_OK;
    /* Calls per repetition: enough to last min_seconds. A library slower
     * than slow_seconds a call runs one call per repetition and fewer
     * repetitions, so that a slow kernel cannot stretch a run for hours. */
    double t = time_calls(lib, d, 1);
    if (t >= o->slow_seconds) {
        r.calls = 1;
        r.reps = o->slow_reps < o->reps ? o->slow_reps : o->reps;
        return r;
    }
    int n = 1;
    while (t < o->min_seconds / 4) {
        n *= 4;
        t = time_calls(lib, d, n);
    }
    double calls = ceil(n * o->min_seconds / t);
    r.calls = calls < 1.0 ? 1 : (int)calls;
    r.reps = o->reps;
    return r;
}

double bench_rep(gemm_lib *lib, gemm_data *d, int calls)
{
    return time_calls(lib, d, calls) / calls;
}
