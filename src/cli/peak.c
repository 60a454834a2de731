/* The FP32 FMA peak of one core, measured in the same run as `backprop
 * bench` so that its percent_of_peak compares like with like (a VM's clock
 * and its load are not known in advance).
 *
 * The kernel runs independent FMA chains, acc = acc x + y: an FMA has about
 * 4 cycles of latency and two pipes issue one each per cycle, so at least 8
 * chains keep both busy; we run 16 (AVX-512, of 32 zmm registers) or 12
 * (AVX2, of 16 ymm registers). Each kernel is compiled for its ISA with a
 * target attribute, so the tool still runs on any x86-64; it is only called
 * for the ISA the library's context reports, which the CPU has.
 * GFLOP/s = 2 (multiply, add) x lanes x chains x iterations / seconds.
 */
#include <string.h>

#include "cli.h"

/* Read and written by the kernels: volatile accesses are side effects, so
 * the compiler can neither fold the loops away nor move them past the clock
 * reads. Different chain starts keep gcc from merging identical chains; x
 * just below 1 and y small keep every value bounded and normal. */
static volatile float peak_seed = 1.0f;
static volatile float peak_sink;

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#define CHAINS_512 16
#define CHAINS_256 12

__attribute__((target("avx512f"), noinline)) static void fma_chains_avx512(long iters)
{
    __m512 x = _mm512_set1_ps(0.999999f * peak_seed), y = _mm512_set1_ps(1e-6f * peak_seed);
    __m512 a[CHAINS_512];
    for (int c = 0; c < CHAINS_512; c++)
        a[c] = _mm512_set1_ps(peak_seed * (float)c);
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < CHAINS_512; c++) /* unrolled by gcc: a[] stays in registers */
            a[c] = _mm512_fmadd_ps(a[c], x, y);
    __m512 s = a[0];
    for (int c = 1; c < CHAINS_512; c++)
        s = _mm512_add_ps(s, a[c]);
    peak_sink = _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"), noinline)) static void fma_chains_avx2(long iters)
{
    __m256 x = _mm256_set1_ps(0.999999f * peak_seed), y = _mm256_set1_ps(1e-6f * peak_seed);
    __m256 a[CHAINS_256];
    for (int c = 0; c < CHAINS_256; c++)
        a[c] = _mm256_set1_ps(peak_seed * (float)c);
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < CHAINS_256; c++)
            a[c] = _mm256_fmadd_ps(a[c], x, y);
    __m256 s = a[0];
    for (int c = 1; c < CHAINS_256; c++)
        s = _mm256_add_ps(s, a[c]);
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    peak_sink = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] +
                lanes[7];
}

/* The best of `reps` runs of about 10 ms each: load from other processes
 * only lowers a run, so the best is the closest to the machine's peak. */
static double best_gflops(void (*kernel)(long), double flops_per_iter, int reps)
{
    long iters = 10000;
    double t;
    for (;;) {
        double t0 = cli_now();
        kernel(iters);
        t = cli_now() - t0;
        if (t >= 0.002 || iters > (1L << 40))
            break;
        iters *= 4;
    }
    iters = (long)((double)iters * 0.010 / (t > 0 ? t : 1e-9)) + 1;
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = cli_now();
        kernel(iters);
        double dt = cli_now() - t0;
        double g = dt > 0 ? flops_per_iter * (double)iters / dt * 1e-9 : 0.0;
        if (g > best)
            best = g;
    }
    return best;
}
#endif

double cli_fma_peak(const char *isa)
{
#if defined(__GNUC__) && defined(__x86_64__)
    if (!strcmp(isa, "avx512") && __builtin_cpu_supports("avx512f") != 0)
        return best_gflops(fma_chains_avx512, 2.0 * 16 * CHAINS_512, 20);
    if (!strcmp(isa, "avx2") && __builtin_cpu_supports("avx2") != 0 &&
        __builtin_cpu_supports("fma") != 0)
        return best_gflops(fma_chains_avx2, 2.0 * 8 * CHAINS_256, 20);
#else
    (void)isa;
    (void)peak_seed;
    (void)peak_sink;
#endif
    return 0.0; /* no FMA kernel for this ISA: percent_of_peak is null */
}
