/* backprop: the command-line tool. Until the dataset readers land, `train`
 * fits a built-in synthetic problem (a three-arm spiral). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backprop.h"

#define EXIT_USAGE 2

static int fail(const char *what, bp_status s)
{
    fprintf(stderr, "backprop: %s: %s: %s\n", what, bp_status_str(s), bp_last_error());
    return EXIT_FAILURE;
}

static int parse_long(const char *opt, const char *text, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "backprop: %s expects an integer in %ld..%ld, got '%s'\n", opt, lo, hi,
                text);
        return 0;
    }
    *out = v;
    return 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Three interleaved spiral arms in the plane, n points per arm, a little noise
 * from a fixed LCG so the problem is the same everywhere. */
static void make_spiral(size_t per_arm, float *X, int32_t *y)
{
    uint64_t s = 42;
    for (size_t arm = 0; arm < 3; arm++)
        for (size_t i = 0; i < per_arm; i++) {
            size_t k = arm * per_arm + i;
            double r = (double)i / (double)per_arm;
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            double noise = ((double)(s >> 11) * 0x1.0p-53 - 0.5) * 0.2;
            double t = 4.0 * (double)arm + 4.0 * r + noise;
            X[2 * k] = (float)(r * sin(t));
            X[2 * k + 1] = (float)(r * cos(t));
            y[k] = (int32_t)arm;
        }
}

static void usage_train(FILE *f)
{
    fprintf(f, "usage: backprop train [--epochs N] [--threads N] [--seed N]\n"
               "Trains a 2-64-64-3 MLP (ReLU, softmax cross-entropy, Adam) on a built-in\n"
               "three-arm spiral and reports loss and accuracy per epoch.\n");
}

static int cmd_train(int argc, char **argv)
{
    long epochs = 30, threads = 0, seed = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage_train(stdout);
            return 0;
        }
        long *dst = !strcmp(a, "--epochs") ? &epochs : !strcmp(a, "--threads") ? &threads
                  : !strcmp(a, "--seed") ? &seed : NULL;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "backprop train: %s '%s'\n", dst ? "missing value for" : "unknown option", a);
            usage_train(stderr);
            return EXIT_USAGE;
        }
        if (!parse_long(a, argv[++i], dst == &threads ? 0 : 1, 1000000, dst))
            return EXIT_USAGE;
    }
    enum { PER_ARM = 1000, N = 3 * PER_ARM, BATCH = 64 };
    static float X[N * 2];
    static int32_t y[N];
    make_spiral(PER_ARM, X, y);

    bp_ctx *ctx = NULL;
    bp_net *net = NULL;
    bp_optim *opt = NULL;
    bp_dataset *ds = NULL;
    bp_optim_config cfg;
    bp_layer_spec layers[] = {{64, BP_ACT_RELU, 0}, {64, BP_ACT_RELU, 0}, {3, BP_ACT_IDENTITY, 0}};
    bp_status s;
    int rc = EXIT_FAILURE;
    if ((s = bp_ctx_create(&ctx, (int)threads)) != BP_OK) { fail("context", s); goto out; }
    if ((s = bp_net_create(&net, ctx, 2, 3, layers, BP_HEAD_SOFTMAX_CE, BATCH)) != BP_OK ||
        (s = bp_net_init(net, BP_INIT_HE_UNIFORM, (uint64_t)seed)) != BP_OK) {
        fail("net", s);
        goto out;
    }
    bp_optim_config_default(&cfg, BP_OPTIM_ADAM);
    cfg.lr = 0.01f;
    if ((s = bp_optim_create(&opt, net, &cfg)) != BP_OK) { fail("optimizer", s); goto out; }
    if ((s = bp_dataset_create(&ds, N, 2, X, y, NULL, 0)) != BP_OK) { fail("dataset", s); goto out; }
    printf("backprop %s: spiral, %d samples, 2-64-64-3, %d threads\n", bp_version_string(), N,
           bp_ctx_threads(ctx));
    for (long e = 0; e < epochs; e++) {
        float loss, eval_loss, acc;
        double t0 = now();
        if ((s = bp_train_epoch(net, opt, ds, BATCH, (uint64_t)seed, (uint64_t)e, &loss)) != BP_OK) {
            fail("training", s);
            goto out;
        }
        double dt = now() - t0;
        if ((s = bp_evaluate(net, ds, BATCH, &eval_loss, &acc)) != BP_OK) { fail("evaluate", s); goto out; }
        printf("epoch %3ld  train loss %.4f  accuracy %.4f  %.3f s  %.0f samples/s\n", e + 1,
               (double)loss, (double)acc, dt, N / dt);
    }
    rc = 0;
out:
    bp_dataset_destroy(ds);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
    return rc;
}

static int cmd_info(void)
{
    bp_ctx *ctx;
    bp_topology_info t;
    bp_status s = bp_ctx_create(&ctx, 0);
    if (s != BP_OK)
        return fail("context", s);
    bp_ctx_topology(ctx, &t);
    printf("backprop %s\nthreads: %d\ntopology (%s): %d packages, %d NUMA nodes, %d cores, %d PUs\n"
           "caches used: L1d %zu KiB, L2 %zu KiB (%d cores each), L3 %zu KiB (%d cores each)\n",
           bp_version_string(), bp_ctx_threads(ctx), t.hwloc_used ? "hwloc" : "fallback",
           t.n_packages, t.n_numa_nodes, t.n_cores, t.n_pus, t.l1d_bytes / 1024,
           t.l2_bytes / 1024, t.cores_per_l2, t.l3_bytes / 1024, t.cores_per_l3);
    bp_ctx_destroy(ctx);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: backprop <command> [options]\n"
               "commands:\n"
               "  train   train an MLP (see backprop train --help)\n"
               "  info    library version, threads and the machine's topology\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("backprop %s\n", bp_version_string());
        return 0;
    }
    if (!strcmp(argv[1], "train"))
        return cmd_train(argc - 2, argv + 2);
    if (!strcmp(argv[1], "info"))
        return argc == 2 ? cmd_info() : (usage(stderr), EXIT_USAGE);
    fprintf(stderr, "backprop: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
