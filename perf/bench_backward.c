/* bench_backward: the scheduled backward against the sequential one (each
 * GEMM on all threads, in graph order: what PyTorch CPU and llm.c do), side
 * by side in one run, alternating, medians of repeated runs; and, with
 * --simulate, the planner's predicted makespans on big synthetic servers,
 * which this 2-core machine cannot measure.
 *
 *   bench_backward [--threads 1,2] [--reps 7] [--quick] [--simulate]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backprop.h"
#include "ctx.h"
#include "net.h"
#include "sched.h"
#include "sched_plan.h"
#include "topo_desc.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Seconds per backward, timed over at least 20 ms. */
static double time_backward(bp_net *net, const int32_t *labels, int iters)
{
    double t0 = now();
    for (int i = 0; i < iters; i++)
        if (bp_net_backward(net, labels, NULL, NULL) != BP_OK) {
            fprintf(stderr, "backward failed: %s\n", bp_last_error());
            exit(1);
        }
    return (now() - t0) / iters;
}

typedef struct shape { size_t width, depth, batch; } shape;

static void measure(const shape *s, int threads, int reps)
{
    bp_ctx *ctx;
    bp_net *net;
    if (bp_ctx_create(&ctx, threads) != BP_OK)
        exit(1);
    bp_layer_spec layers[16];
    for (size_t i = 0; i < s->depth; i++)
        layers[i] = (bp_layer_spec){i + 1 < s->depth ? s->width : 10, BP_ACT_RELU, 0};
    if (bp_net_create(&net, ctx, s->width, s->depth, layers, BP_HEAD_SOFTMAX_CE, s->batch) != BP_OK ||
        bp_net_init(net, BP_INIT_HE_UNIFORM, 1) != BP_OK) {
        fprintf(stderr, "net: %s\n", bp_last_error());
        exit(1);
    }
    float *X = malloc(s->batch * s->width * sizeof *X);
    int32_t *y = malloc(s->batch * sizeof *y);
    for (size_t i = 0; i < s->batch * s->width; i++)
        X[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < s->batch; i++)
        y[i] = (int32_t)(i % 10);
    bp_net_forward(net, X, s->batch);
    int groups = net->sched ? net->sched->plan.n_groups : 1;
    /* Calibrate the iteration count on the sequential path. */
    bp_ctx_set_backward(ctx, BP_BACKWARD_SEQUENTIAL);
    int iters = 1;
    while (time_backward(net, y, iters) * iters < 0.02 && iters < 1 << 20)
        iters *= 2;
    double seq[32], sch[32];
    for (int r = 0; r < reps; r++) {
        bp_ctx_set_backward(ctx, BP_BACKWARD_SEQUENTIAL);
        seq[r] = time_backward(net, y, iters);
        bp_ctx_set_backward(ctx, BP_BACKWARD_SCHEDULED);
        sch[r] = time_backward(net, y, iters);
    }
    qsort(seq, (size_t)reps, sizeof *seq, cmp_double);
    qsort(sch, (size_t)reps, sizeof *sch, cmp_double);
    double a = seq[reps / 2], b = sch[reps / 2];
    printf("| %5zu x %zu | %5zu | %d | %9.3f | %9.3f | %5.2fx | %d |\n", s->width, s->depth,
           s->batch, threads, a * 1e3, b * 1e3, a / b, groups);
    fflush(stdout);
    free(X), free(y);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
}

static void simulate(const char *name, const char *synthetic, const shape *shapes, size_t n)
{
    bpi_topo_desc *d = malloc(sizeof *d);
    if (!d || bpi_topo_describe(d, synthetic, NULL, 1) != BP_OK) {
        fprintf(stderr, "topology %s: %s\n", name, bp_last_error());
        exit(1);
    }
    printf("\nSIMULATED (planner + cost model, not measured): %s, %d cores, %d L3 domains\n",
           name, d->n_cores, d->n_l3);
    printf("| MLP | batch | threads | sequential us | scheduled us | predicted gain | groups |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (size_t k = 0; k < n; k++) {
        size_t n_in[16], n_out[16];
        for (size_t i = 0; i < shapes[k].depth; i++)
            n_in[i] = shapes[k].width, n_out[i] = i + 1 < shapes[k].depth ? shapes[k].width : 10;
        bpi_plan_input in = {d, d->n_cores, shapes[k].depth, n_in, n_out, shapes[k].batch, 0, 0, 1};
        bpi_plan p;
        if (bpi_plan_build(&in, &p) != BP_OK)
            exit(1);
        printf("| %zu x %zu | %zu | %d | %.1f | %.1f | %.2fx | %d |\n", shapes[k].width,
               shapes[k].depth, shapes[k].batch, d->n_cores, p.sequential * 1e6,
               p.makespan * 1e6, p.sequential / p.makespan, p.n_groups);
        bpi_plan_free(&p);
    }
    free(d);
}

int main(int argc, char **argv)
{
    int reps = 7, quick = 0, sim = 0, thread_list[8] = {1, 2}, n_threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--simulate"))
            sim = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            n_threads = 0;
            for (char *t = strtok(argv[++i], ","); t && n_threads < 8; t = strtok(NULL, ","))
                thread_list[n_threads++] = atoi(t);
        } else {
            fprintf(stderr, "usage: %s [--threads 1,2] [--reps N] [--quick] [--simulate]\n",
                    argv[0]);
            return 2;
        }
    }
    reps = reps < 1 ? 1 : reps > 31 ? 31 : reps;
    static const shape full[] = {
        {256, 3, 16}, {256, 3, 64}, {256, 3, 512}, {256, 8, 16}, {256, 8, 64},
        {512, 3, 16}, {512, 3, 64}, {512, 5, 32}, {512, 8, 64}, {512, 3, 512},
        {1024, 3, 16}, {1024, 3, 64}, {1024, 5, 128}, {1024, 8, 256}, {1024, 3, 512},
        {2048, 3, 64}, {2048, 3, 256}, {4096, 3, 16}, {4096, 3, 64}, {4096, 3, 512}};
    static const shape small[] = {{256, 3, 16}, {256, 8, 64}, {512, 3, 64}, {1024, 3, 64}};
    const shape *shapes = quick ? small : full;
    size_t n = quick ? sizeof small / sizeof *small : sizeof full / sizeof *full;
    if (sim) {
        static const shape big[] = {{1024, 4, 64}, {1024, 4, 256}, {4096, 4, 64}, {512, 8, 32},
                                    {2048, 6, 128}};
        simulate("2 x 64-core EPYC (2 packages x 4 NUMA x 2 L3 x 8 cores)",
                 "pack:2 group:4 [numa(memory=32GiB)] l3:2(size=32MiB) l2:8(size=1MiB) "
                 "l1d:1(size=48KiB) core:1 pu:2", big, sizeof big / sizeof *big);
        simulate("2 x 28-core Xeon (2 packages, one L3 each)",
                 "pack:2 [numa(memory=96GiB)] l3:1(size=40MiB) l2:28(size=2MiB) "
                 "l1d:1(size=48KiB) core:1 pu:2", big, sizeof big / sizeof *big);
        return 0;
    }
    printf("MEASURED on this machine: backward pass (ACT, dX, dW, db of every layer), "
           "median of %d runs, ms\n", reps);
    printf("| MLP (width x depth) | batch | threads | sequential | scheduled | speed-up | groups |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (int t = 0; t < n_threads; t++)
        for (size_t k = 0; k < n; k++)
            measure(&shapes[k], thread_list[t], reps);
    return 0;
}
