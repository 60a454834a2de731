/* backprop bench: training throughput of an MLP on random data, as one JSON
 * line, comparable with perf/torch_step.py and perf/onednn_step.c (the same
 * keys, the same FLOP count).
 *
 * The net is n_in -> hidden (ReLU) ... -> n_out with a softmax cross-entropy
 * head; X is uniform in [0, 1), labels uniform in [0, n_out). Each step is
 * bp_train_step (forward, backward, update), timed alone after --warmup
 * untimed steps. FLOPs per step are counted as 6 B sum(n_in n_out): two for
 * each multiply-add of the forward GEMM, the input-gradient GEMM and the
 * weight-gradient GEMM of every layer (the first layer's input gradient is
 * not computed, but the count is the same for every library). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* A value of the sorted array at fraction q, interpolated between ranks. */
static double quantile(const double *sorted, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)pos;
    if (lo + 1 >= n)
        return sorted[n - 1];
    return sorted[lo] + (pos - (double)lo) * (sorted[lo + 1] - sorted[lo]);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static const char *optim_name(const bp_optim_config *c)
{
    if (c->type == BP_OPTIM_ADAM)
        return "adam";
    if (c->type == BP_OPTIM_ADAMW)
        return "adamw";
    return c->momentum > 0 ? (c->nesterov ? "nesterov" : "momentum") : "sgd";
}

/* Random batch from a 64-bit LCG: no I/O, the same data on every run. */
static void fill_batch(float *X, int32_t *labels, size_t B, size_t n_in, size_t n_out)
{
    uint64_t s = 0x9E3779B97F4A7C15u;
    for (size_t i = 0; i < B * n_in; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        X[i] = (float)(s >> 40) / 16777216.0f;
    }
    for (size_t b = 0; b < B; b++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        labels[b] = (int32_t)((s >> 33) % n_out);
    }
}

typedef struct bench_run {
    bp_ctx *ctx;
    bp_net *net;
    bp_optim *opt;
    float *X;
    int32_t *labels;
    double *ms;
} bench_run;

static void bench_free(bench_run *r)
{
    bp_optim_destroy(r->opt);
    bp_net_destroy(r->net);
    bp_ctx_destroy(r->ctx);
    free(r->X);
    free(r->labels);
    free(r->ms);
}

static int bench_setup(const cli_args *a, bench_run *r)
{
    bp_layer_spec specs[CLI_MAX_LAYERS + 1];
    size_t n = 0;
    for (size_t i = 0; i < a->n_hidden; i++)
        specs[n++] = (bp_layer_spec){a->hidden[i], a->activation, a->alpha};
    specs[n++] = (bp_layer_spec){a->bench_out, BP_ACT_IDENTITY, 0.0f};
    bp_status s = bp_ctx_create(&r->ctx, a->threads);
    if (s != BP_OK)
        return cli_fail("context", s);
    s = bp_net_create(&r->net, r->ctx, a->bench_in, n, specs, BP_HEAD_SOFTMAX_CE, a->batch);
    if (s == BP_OK)
        s = bp_net_init(r->net, a->init, a->seed);
    if (s != BP_OK)
        return cli_fail("net", s);
    s = bp_optim_create(&r->opt, r->net, &a->optim);
    if (s != BP_OK)
        return cli_fail("optimizer", s);
    r->X = malloc(a->batch * a->bench_in * sizeof *r->X);
    r->labels = malloc(a->batch * sizeof *r->labels);
    r->ms = malloc(a->bench_steps * sizeof *r->ms);
    if (!r->X || !r->labels || !r->ms)
        return cli_fail("bench", BP_ENOMEM);
    fill_batch(r->X, r->labels, a->batch, a->bench_in, a->bench_out);
    return 0;
}

static int run_steps(const cli_args *a, bench_run *r)
{
    for (size_t i = 0; i < a->bench_warmup + a->bench_steps; i++) {
        double t0 = cli_now();
        bp_status s = bp_train_step(r->net, r->opt, r->X, r->labels, NULL, a->batch, NULL);
        double dt = cli_now() - t0;
        if (s != BP_OK)
            return cli_fail("train step", s);
        if (i >= a->bench_warmup)
            r->ms[i - a->bench_warmup] = dt * 1e3;
    }
    return 0;
}

static void print_json(const cli_args *a, const bench_run *r, double peak_1)
{
    size_t S = a->bench_steps;
    qsort(r->ms, S, sizeof *r->ms, cmp_double);
    double med = quantile(r->ms, S, 0.5);
    double macs = 0.0; /* sum of n_in n_out over the layers */
    size_t prev = a->bench_in;
    printf("{\"library\":\"backprop\",\"layers\":\"%zu", a->bench_in);
    for (size_t i = 0; i <= a->n_hidden; i++) {
        size_t w = i < a->n_hidden ? a->hidden[i] : a->bench_out;
        macs += (double)prev * (double)w;
        prev = w;
        printf("-%zu", w);
    }
    int threads = bp_ctx_threads(r->ctx);
    double gflops = 6.0 * (double)a->batch * macs / (med * 1e-3) * 1e-9;
    double peak = peak_1 * threads;
    printf("\",\"batch\":%zu,\"optimizer\":\"%s\",\"threads\":%d,\"isa\":\"%s\","
           "\"steps\":%zu,\"ms_per_step\":%.4f,\"p10\":%.4f,\"p90\":%.4f,"
           "\"samples_per_second\":%.1f,\"gflops\":%.4g,",
           a->batch, optim_name(&a->optim), threads, bp_ctx_isa(r->ctx), S, med,
           quantile(r->ms, S, 0.1), quantile(r->ms, S, 0.9), (double)a->batch / (med * 1e-3),
           gflops);
    if (peak > 0)
        printf("\"peak_gflops\":%.2f,\"percent_of_peak\":%.1f}\n", peak, 100.0 * gflops / peak);
    else
        printf("\"peak_gflops\":null,\"percent_of_peak\":null}\n");
}

int cli_bench(const cli_args *a)
{
    bench_run r;
    memset(&r, 0, sizeof r);
    int rc = bench_setup(a, &r);
    if (rc == 0) {
        /* The single-core FMA peak, times the threads, in this same run. */
        double peak_1 = cli_fma_peak(bp_ctx_isa(r.ctx));
        rc = run_steps(a, &r);
        if (rc == 0)
            print_json(a, &r, peak_1);
    }
    bench_free(&r);
    return rc;
}
