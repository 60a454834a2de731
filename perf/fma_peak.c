/* The machine's FP32 FMA peak, measured rather than taken from a data sheet
 * (a VM's clock and the AVX-512 width of its cores are not known in advance).
 *
 * Each thread runs `chains` independent FMA dependency chains, acc = acc x + y.
 * An FMA has a latency of about 4 cycles and 2 FMA pipes issue one each per
 * cycle, so at least 8 chains are needed to keep both pipes full: we use 16
 * with AVX-512 (of 32 zmm registers) and 12 with AVX2 (of 16 ymm registers,
 * leaving room for x and y). Each kernel is compiled for its ISA with a
 * target attribute, so the rest of bench_gemm stays generic and runs on any
 * x86-64; the ISA is checked with __builtin_cpu_supports before the call.
 *
 * GFLOP/s = 2 (multiply, add) x lanes (8 or 16) x chains x iterations x
 * threads / wall time between two barriers around the kernels.
 */
#include <math.h>
#include <stddef.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench.h"

/* Read by the kernels and written by them: a volatile access is a side
 * effect, so the compiler can neither fold the kernels into constants nor
 * move them across the clock reads around them. */
static volatile float fma_seed = 1.0f;
static volatile float fma_sink;

#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_X86_KERNELS 1
#include <immintrin.h>

/* Every chain starts from a different value: identical chains would be
 * merged into one by common-subexpression elimination (gcc does), leaving
 * a single latency-bound chain. x close to 1 and y small keep acc bounded
 * (it tends to y / (1 - x)) and far from subnormals, whose slow path would
 * spoil the timing. */
#define CHAIN_START(i) (fma_seed * (float)(i))

__attribute__((target("avx512f"), noinline)) static float fma_avx512(long iters)
{
    __m512 x = _mm512_set1_ps(0.999999f * fma_seed), y = _mm512_set1_ps(1e-6f * fma_seed);
    __m512 a0 = _mm512_set1_ps(CHAIN_START(0)), a1 = _mm512_set1_ps(CHAIN_START(1)),
           a2 = _mm512_set1_ps(CHAIN_START(2)), a3 = _mm512_set1_ps(CHAIN_START(3)),
           a4 = _mm512_set1_ps(CHAIN_START(4)), a5 = _mm512_set1_ps(CHAIN_START(5)),
           a6 = _mm512_set1_ps(CHAIN_START(6)), a7 = _mm512_set1_ps(CHAIN_START(7)),
           a8 = _mm512_set1_ps(CHAIN_START(8)), a9 = _mm512_set1_ps(CHAIN_START(9)),
           a10 = _mm512_set1_ps(CHAIN_START(10)), a11 = _mm512_set1_ps(CHAIN_START(11)),
           a12 = _mm512_set1_ps(CHAIN_START(12)), a13 = _mm512_set1_ps(CHAIN_START(13)),
           a14 = _mm512_set1_ps(CHAIN_START(14)), a15 = _mm512_set1_ps(CHAIN_START(15));
    for (long i = 0; i < iters; i++) {
        a0 = _mm512_fmadd_ps(a0, x, y);   a1 = _mm512_fmadd_ps(a1, x, y);
        a2 = _mm512_fmadd_ps(a2, x, y);   a3 = _mm512_fmadd_ps(a3, x, y);
        a4 = _mm512_fmadd_ps(a4, x, y);   a5 = _mm512_fmadd_ps(a5, x, y);
        a6 = _mm512_fmadd_ps(a6, x, y);   a7 = _mm512_fmadd_ps(a7, x, y);
        a8 = _mm512_fmadd_ps(a8, x, y);   a9 = _mm512_fmadd_ps(a9, x, y);
        a10 = _mm512_fmadd_ps(a10, x, y); a11 = _mm512_fmadd_ps(a11, x, y);
        a12 = _mm512_fmadd_ps(a12, x, y); a13 = _mm512_fmadd_ps(a13, x, y);
        a14 = _mm512_fmadd_ps(a14, x, y); a15 = _mm512_fmadd_ps(a15, x, y);
    }
    /* Use every chain, so none is dead code. */
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9),
                                                     _mm512_add_ps(a10, a11)),
                                       _mm512_add_ps(_mm512_add_ps(a12, a13),
                                                     _mm512_add_ps(a14, a15))));
    fma_sink = _mm512_reduce_add_ps(s);
    return fma_sink;
}
enum { AVX512_FLOPS_PER_ITER = 2 * 16 * 16 };

__attribute__((target("avx2,fma"), noinline)) static float fma_avx2(long iters)
{
    __m256 x = _mm256_set1_ps(0.999999f * fma_seed), y = _mm256_set1_ps(1e-6f * fma_seed);
    __m256 a0 = _mm256_set1_ps(CHAIN_START(0)), a1 = _mm256_set1_ps(CHAIN_START(1)),
           a2 = _mm256_set1_ps(CHAIN_START(2)), a3 = _mm256_set1_ps(CHAIN_START(3)),
           a4 = _mm256_set1_ps(CHAIN_START(4)), a5 = _mm256_set1_ps(CHAIN_START(5)),
           a6 = _mm256_set1_ps(CHAIN_START(6)), a7 = _mm256_set1_ps(CHAIN_START(7)),
           a8 = _mm256_set1_ps(CHAIN_START(8)), a9 = _mm256_set1_ps(CHAIN_START(9)),
           a10 = _mm256_set1_ps(CHAIN_START(10)), a11 = _mm256_set1_ps(CHAIN_START(11));
    for (long i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, x, y);   a1 = _mm256_fmadd_ps(a1, x, y);
        a2 = _mm256_fmadd_ps(a2, x, y);   a3 = _mm256_fmadd_ps(a3, x, y);
        a4 = _mm256_fmadd_ps(a4, x, y);   a5 = _mm256_fmadd_ps(a5, x, y);
        a6 = _mm256_fmadd_ps(a6, x, y);   a7 = _mm256_fmadd_ps(a7, x, y);
        a8 = _mm256_fmadd_ps(a8, x, y);   a9 = _mm256_fmadd_ps(a9, x, y);
        a10 = _mm256_fmadd_ps(a10, x, y); a11 = _mm256_fmadd_ps(a11, x, y);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    fma_sink = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] +
               lanes[7];
    return fma_sink;
}
enum { AVX2_FLOPS_PER_ITER = 2 * 8 * 12 };
#endif

typedef float (*fma_kernel)(long iters);

/* Wall time of `iters` iterations of k on every one of n_threads threads,
 * from a barrier before to a barrier after. */
static double time_threads(fma_kernel k, long iters, int n_threads)
{
    double t0 = 0.0, t1 = 0.0;
#ifdef _OPENMP
#pragma omp parallel num_threads(n_threads)
    {
#pragma omp barrier
#pragma omp master
        t0 = now_seconds();
        float r = k(iters);
#pragma omp barrier
#pragma omp master
        {
            t1 = now_seconds();
            fma_sink = r;
        }
    }
#else
    (void)n_threads;
    t0 = now_seconds();
    fma_sink = k(iters);
    t1 = now_seconds();
#endif
    return t1 - t0;
}

static double peak_of(fma_kernel k, double flops_per_iter, int n_threads, int reps,
                      double seconds)
{
    /* Calibrate on one thread: a short run gives iterations per second. */
    long iters = 100000;
    double t = time_threads(k, iters, 1);
    while (t < 0.005) {
        iters *= 4;
        t = time_threads(k, iters, 1);
    }
    iters = (long)ceil(iters * seconds / t);
    double best = 0.0;
    /* The best, not the median: noise from other processes only lowers it. */
    for (int r = 0; r < reps; r++) {
        double dt = time_threads(k, iters, n_threads);
        double g = flops_per_iter * (double)iters * n_threads / dt * 1e-9;
        if (g > best)
            best = g;
    }
    return best;
}

fma_peak fma_peak_measure(int n_threads, int reps, double seconds)
{
    fma_peak p = { 0.0, 0.0 };
#ifndef _OPENMP
    if (n_threads > 1)
        return p; /* no threads to measure with */
#endif
#ifdef HAVE_X86_KERNELS
    if (__builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("fma") != 0)
        p.avx2 = peak_of(fma_avx2, AVX2_FLOPS_PER_ITER, n_threads, reps, seconds);
    if (__builtin_cpu_supports("avx512f") != 0)
        p.avx512 = peak_of(fma_avx512, AVX512_FLOPS_PER_ITER, n_threads, reps, seconds);
#else
    (void)n_threads; (void)reps; (void)seconds; (void)peak_of;
#endif
    return p;
}
