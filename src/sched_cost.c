/* The planner's cost model: predicted seconds for a GEMM or a streaming
 * pass on a group of threads. Absolute numbers matter less than ratios: the
 * planner compares partitions of one machine.
 *
 * GEMM (M, N, K) on p threads = max(compute, memory) + synchronisation:
 *  compute = 2MNK / (p peak eff), eff = 0.96 k/(k+2) m/(m+2) n/(n+2) for
 *            the thread's share (m, n) of C (the larger dimension is split):
 *            small per-thread blocks spend more on packing, edges and loops.
 *            Fitted (least squares on log time) to 48 timings of bp_sgemm
 *            on this Zen 5 VM (2026-12-05, B read in place for skinny NN):
 *            NN B x n x n (the input gradient) and TN n x n x B (the weight
 *            gradient) for n = 256, 512, 1024 and B = 16..128 at 1 and 2
 *            threads, all within 15 %. The engine now runs such products
 *            at 0.8-0.99 of peak on one thread (16x512x512 NN 0.78, TN
 *            0.88); the previous fit, 0.9 k/(k+8) m/(m+12) n/(n+12) against
 *            a 200 GFLOP/s peak, made them look twice as slow as they are,
 *            and every split into groups look worse than it is;
 *  memory  = bytes / bandwidth: A, B and C once, plus the smaller operand
 *            copied into every further L3 domain of the group; bandwidth
 *            STREAM_PER_CORE per thread, at most NUMA_BANDWIDTH per node;
 *  sync    = a team picking the product up (for the sequential backward
 *            the fork and join of its parallel region: 2 us of the fitted
 *            6 us on 2 threads are that, on this paravirtualised guest),
 *            two team barriers per K block of 512, each log2(p) hops, plus
 *            CROSS_PACKAGE when the group spans packages.
 * The constants are those of the AVX-512 engine on the EPYC development
 * VMs for the single-domain terms (within ~20% on the MLP shapes of
 * perf/bench_gemm), and textbook figures for the multi-socket terms, which
 * these 2-core VMs cannot measure: those predictions are simulated, not
 * measured. What drives the plans is the shape of the model: a small GEMM
 * spread over many threads and domains stops scaling, so two GEMMs side by
 * side on half the threads each beat one after the other on all. */
#include <math.h>

#include "sched_plan.h"

#define PEAK_PER_CORE 211.8e9 /* flop/s: the measured AVX-512 FMA peak of a core */
#define STREAM_PER_CORE 12e9  /* bytes/s one core reads and writes */
#define NUMA_BANDWIDTH 40e9   /* bytes/s one NUMA node's memory gives */
#define BARRIER_HOP 0.5e-6    /* seconds per log2 step of a barrier */
#define CROSS_PACKAGE 3e-6    /* seconds added to a barrier spanning sockets */
#define TEAM_START 5e-6       /* a team picking up a task */

static double bandwidth(const bpi_group *g)
{
    double by_cores = g->n_threads * STREAM_PER_CORE;
    double by_nodes = (g->n_numa > 0 ? g->n_numa : 1) * NUMA_BANDWIDTH;
    return by_cores < by_nodes ? by_cores : by_nodes;
}

static double barrier(const bpi_group *g)
{
    if (g->n_threads <= 1)
        return 0.0;
    return BARRIER_HOP * ceil(log2((double)g->n_threads)) +
           (g->n_packages > 1 ? CROSS_PACKAGE : 0.0);
}

double bpi_cost_gemm(size_t M, size_t N, size_t K, const bpi_group *g)
{
    if (M == 0 || N == 0 || K == 0)
        return 0.0;
    double p = g->n_threads > 1 ? g->n_threads : 1;
    double m = (double)M, n = (double)N, k = (double)K;
    if (m >= n)
        m = fmax(1.0, m / p);
    else
        n = fmax(1.0, n / p);
    double eff = 0.96 * k / (k + 2.0) * m / (m + 2.0) * n / (n + 2.0);
    double compute = 2.0 * (double)M * (double)N * k / (p * PEAK_PER_CORE * eff);
    double a = (double)M * k, b = k * (double)N, c = (double)M * (double)N;
    double copies = (g->n_l3 > 1 ? g->n_l3 - 1 : 0) * (a < b ? a : b);
    double memory = 4.0 * (a + b + c + copies) / bandwidth(g);
    double sync = g->n_threads > 1 ? TEAM_START + 2.0 * ceil(k / 512.0) * barrier(g) : 0.0;
    return (compute > memory ? compute : memory) + sync;
}

double bpi_cost_stream(double bytes, const bpi_group *g)
{
    return bytes / bandwidth(g) + barrier(g);
}
