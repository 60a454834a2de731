/* backprop train: data, net, optimizer, the epoch loop with its progress
 * bar, metrics, checkpoints and Ctrl-C. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "dist.h"
#include "stats.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Everything one training run holds, freed in one place. */
typedef struct run {
    const cli_args *a;
    bp_ctx *ctx;
    bp_dataset *train, *val, *test;
    bp_net *net;
    bp_optim *opt;
    uint64_t seed, first_epoch;
    float *mean, *std;       /* standardisation, or NULL */
    FILE *metrics;
} run;

static void run_free(run *r)
{
    if (r->metrics)
        fclose(r->metrics);
    free(r->mean);
    free(r->std);
    bp_optim_destroy(r->opt);
    bp_net_destroy(r->net);
    bp_dataset_destroy(r->train);
    bp_dataset_destroy(r->val);
    bp_dataset_destroy(r->test);
    bp_ctx_destroy(r->ctx);
}

/* ------------------------------------------------------------ set-up */

static int setup_data(run *r)
{
    const cli_args *a = r->a;
    bp_dataset *full = NULL;
    if (cli_load_data(&a->data, a->data.n_targets, &full, &r->test))
        return 1;
    if (a->val_split > 0) {
        bp_status s = bp_dataset_split(full, a->val_split, r->seed, &r->train, &r->val);
        bp_dataset_destroy(full);
        if (s != BP_OK)
            return cli_fail("--val-split", s);
    } else {
        r->train = full;
    }
    if (bp_dataset_n_features(r->train) != bp_dataset_n_features(r->test)) {
        fprintf(stderr, "backprop: training data has %zu features, test data %zu\n",
                bp_dataset_n_features(r->train), bp_dataset_n_features(r->test));
        return 1;
    }
    size_t nf = bp_dataset_n_features(r->train);
    bp_status s = BP_OK;
    if (!r->mean && a->standardize) {
        /* Statistics from the training split only (a checkpoint brings its own). */
        r->mean = malloc(nf * sizeof *r->mean);
        r->std = malloc(nf * sizeof *r->std);
        if (!r->mean || !r->std)
            return cli_fail("standardize", BP_ENOMEM);
        s = bp_dataset_feature_stats(r->train, r->mean, r->std, nf);
    }
    if (s == BP_OK && r->mean)
        s = cli_standardize_all(r->mean, r->std, nf, r->train, r->val, r->test);
    return s == BP_OK ? 0 : cli_fail("standardize", s);
}

static size_t n_outputs(const run *r)
{
    if (r->a->data.n_targets)
        return r->a->data.n_targets;
    size_t a = bp_dataset_n_classes(r->train), b = bp_dataset_n_classes(r->test);
    return a > b ? a : b;
}

/* --resume: the checkpoint decides the architecture, seed and position. */
static int resume_model(run *r)
{
    const cli_args *a = r->a;
    bp_model_info info;
    bp_kv *meta = NULL;
    size_t n_meta = 0;
    bp_status s = bp_model_load(a->resume, r->ctx, a->batch, &r->net, &r->opt, &info, &meta,
                                &n_meta);
    if (s != BP_OK)
        return cli_fail("--resume", s);
    int stats = cli_stats_from_meta(meta, n_meta, bp_net_n_in(r->net), &r->mean, &r->std);
    bp_kv_free(meta, n_meta);
    if (stats < 0) {
        fprintf(stderr, "backprop: %s: malformed standardisation metadata\n", a->resume);
        return 1;
    }
    if (!r->opt) {
        fprintf(stderr, "backprop: %s holds no optimizer state: cannot resume\n", a->resume);
        return 1;
    }
    r->seed = info.seed;
    r->first_epoch = info.epoch;
    return 0;
}

static int check_resumed(const run *r)
{
    if (bp_net_n_in(r->net) == bp_dataset_n_features(r->train))
        return 0;
    fprintf(stderr, "backprop: %s takes %zu inputs, the data has %zu features\n", r->a->resume,
            bp_net_n_in(r->net), bp_dataset_n_features(r->train));
    return 1;
}

static int new_model(run *r)
{
    const cli_args *a = r->a;
    bp_layer_spec layers[CLI_MAX_LAYERS + 1];
    for (size_t i = 0; i < a->n_hidden; i++)
        layers[i] = (bp_layer_spec){a->hidden[i], a->activation, a->alpha};
    layers[a->n_hidden] = (bp_layer_spec){n_outputs(r), BP_ACT_IDENTITY, 0};
    bp_head head = a->data.n_targets ? BP_HEAD_MSE : BP_HEAD_SOFTMAX_CE;
    bp_status s = bp_net_create(&r->net, r->ctx, bp_dataset_n_features(r->train),
                                a->n_hidden + 1, layers, head, a->batch);
    if (s == BP_OK)
        s = bp_net_init(r->net, a->init, r->seed);
    if (s != BP_OK)
        return cli_fail("creating the net", s);
    bp_optim_config cfg = a->optim;
    size_t global = a->batch * (a->mpi_shards ? a->mpi_shards : (size_t)cli_dist_size());
    size_t per_epoch = (bp_dataset_size(r->train) + global - 1) / global;
    if (cfg.schedule == BP_SCHED_COSINE && cfg.total_steps == 0)
        cfg.total_steps = a->epochs * per_epoch; /* the whole run */
    s = bp_optim_create(&r->opt, r->net, &cfg);
    return s == BP_OK ? 0 : cli_fail("creating the optimizer", s);
}

/* ---------------------------------------------------------- progress */

typedef struct bar {
    int on;
    uint64_t epoch, epochs;
    size_t batch, n;
    double start, last_draw;
} bar;

static int progress(void *user, size_t done, size_t n_batches, float loss)
{
    bar *b = user;
    double t = cli_now();
    if (b->on && (t - b->last_draw > 0.1 || done == n_batches)) {
        enum { WIDTH = 30 };
        int fill = (int)(WIDTH * done / n_batches);
        double elapsed = t - b->start;
        double rate = (double)(done * b->batch) / (elapsed > 0 ? elapsed : 1e-9);
        double eta = elapsed / (double)done * (double)(n_batches - done);
        fprintf(stderr, "\repoch %llu/%llu [%.*s%*s] %zu/%zu  loss %.4f  %.0f samples/s  ETA %.1fs ",
                (unsigned long long)b->epoch, (unsigned long long)b->epochs, fill,
                "##############################", WIDTH - fill, "", done, n_batches,
                (double)loss, rate, eta);
        b->last_draw = t;
    }
    return cli_dist_any(interrupted);
}

/* ------------------------------------------------------------ epochs */

static void json_number(FILE *f, const char *key, double v)
{
    if (isfinite(v))
        fprintf(f, ", \"%s\": %.6g", key, v);
    else
        fprintf(f, ", \"%s\": null", key);
}

static int save(const run *r, uint64_t epochs_done)
{
    if (!r->a->save || cli_dist_rank() != 0)
        return 0;
    bp_kv meta[4];
    size_t n = cli_stats_meta(r->mean, r->std, bp_net_n_in(r->net), meta, 4);
    bp_status s = bp_model_save(r->a->save, r->net, r->opt, r->seed, epochs_done, meta, n);
    cli_stats_meta_free(meta, n);
    return s == BP_OK ? 0 : cli_fail("saving", s);
}

typedef struct epoch_result {
    float train_loss, eval_loss, eval_acc;
    double seconds;
    size_t batches;
} epoch_result;

static int one_epoch(run *r, uint64_t e, bar *b, epoch_result *out)
{
    size_t n = bp_dataset_size(r->train);
    b->epoch = e + 1;
    b->start = cli_now();
    b->last_draw = 0;
    bp_status s = bp_train_epoch_progress(r->net, r->opt, r->train, r->a->batch, r->seed, e,
                                          &out->train_loss, progress, b, &out->batches);
    out->seconds = cli_now() - b->start;
    if (b->on)
        fputc('\n', stderr);
    if (s != BP_OK)
        return cli_fail("training", s);
    (void)n;
    const bp_dataset *eval = r->val ? r->val : r->test;
    s = bp_evaluate(r->net, eval, r->a->batch, &out->eval_loss, &out->eval_acc);
    return s == BP_OK ? 0 : cli_fail("evaluating", s);
}

static void report(const run *r, uint64_t e, const epoch_result *x)
{
    const char *on = r->val ? "val" : "test";
    double rate = (double)bp_dataset_size(r->train) / x->seconds;
    if (cli_dist_rank() != 0)
        return;
    printf("epoch %3llu  train loss %.4f  %s loss %.4f  %s accuracy %.4f  %.2f s  %.0f samples/s\n",
           (unsigned long long)e + 1, (double)x->train_loss, on, (double)x->eval_loss, on,
           (double)x->eval_acc, x->seconds, rate);
    fflush(stdout);
    if (!r->metrics)
        return;
    fprintf(r->metrics, "{\"epoch\": %llu", (unsigned long long)e + 1);
    json_number(r->metrics, "train_loss", x->train_loss);
    json_number(r->metrics, r->val ? "val_loss" : "test_loss", x->eval_loss);
    json_number(r->metrics, r->val ? "val_accuracy" : "test_accuracy", x->eval_acc);
    json_number(r->metrics, "epoch_seconds", x->seconds);
    json_number(r->metrics, "samples_per_second", rate);
    fputs("}\n", r->metrics);
    fflush(r->metrics);
}

/* The final test figures. `last` is the epoch just run, or NULL: when it
 * evaluated the test set itself (no validation split), its figures are
 * those of these very weights, and a second pass would only repeat them. */
static int finish(run *r, const epoch_result *last)
{
    float loss, acc;
    if (last && !r->val) {
        loss = last->eval_loss;
        acc = last->eval_acc;
    } else {
        bp_status s = bp_evaluate(r->net, r->test, r->a->batch, &loss, &acc);
        if (s != BP_OK)
            return cli_fail("evaluating", s);
    }
    if (cli_dist_rank() != 0)
        return 0;
    cli_dist_report(r->ctx);
    printf("final test loss %.4f  test accuracy %.4f\n", (double)loss, (double)acc);
    if (r->metrics && r->val) {
        fprintf(r->metrics, "{\"final\": true");
        json_number(r->metrics, "test_loss", loss);
        json_number(r->metrics, "test_accuracy", acc);
        fputs("}\n", r->metrics);
    }
    return 0;
}

static int train_loop(run *r)
{
    const cli_args *a = r->a;
    bar b = {isatty(STDERR_FILENO) && a->progress != 0 && cli_dist_rank() == 0, 0, a->epochs,
             a->batch * (a->mpi_shards ? a->mpi_shards : (size_t)cli_dist_size()), 0, 0, 0};
    epoch_result x;
    memset(&x, 0, sizeof x);
    for (uint64_t e = r->first_epoch; e < a->epochs; e++) {
        if (one_epoch(r, e, &b, &x))
            return 1;
        if (interrupted) {
            /* The epoch is incomplete: the checkpoint records the epochs
             * completed, so --resume replays this one from its start. */
            if (cli_dist_rank() == 0)
                fprintf(stderr, "backprop: interrupted after %zu batches of epoch %llu\n",
                        x.batches, (unsigned long long)e + 1);
            if (save(r, e))
                return 1;
            if (a->save && cli_dist_rank() == 0)
                fprintf(stderr, "backprop: checkpoint saved to %s\n", a->save);
            return EXIT_INTERRUPTED;
        }
        report(r, e, &x);
        if (save(r, e + 1))
            return 1;
    }
    return finish(r, r->first_epoch < a->epochs ? &x : NULL);
}

int cli_train(const cli_args *a)
{
    run r;
    memset(&r, 0, sizeof r);
    r.a = a;
    r.seed = a->seed;
    int rc = 1;
    bp_status s = bp_ctx_create(&r.ctx, a->threads);
    if (s != BP_OK) {
        cli_fail("context", s);
        goto out;
    }
    /* Under MPI only rank 0 prints, writes metrics and saves. */
    if (a->metrics && cli_dist_rank() == 0 &&
        !(r.metrics = fopen(a->metrics, a->resume ? "a" : "w"))) {
        perror(a->metrics);
        goto out;
    }
    /* A checkpoint first: its seed also fixes the validation split. */
    if (a->resume ? resume_model(&r) || setup_data(&r) || check_resumed(&r)
                  : setup_data(&r) || new_model(&r))
        goto out;
    if (cli_dist_setup(r.ctx, r.net, r.opt, a))
        goto out;
    if (cli_dist_rank() == 0)
        printf("backprop %s: %zu training samples, %zu inputs, %zu layers, %zu parameters, "
               "%d threads\n", bp_version_string(), bp_dataset_size(r.train),
               bp_net_n_in(r.net), bp_net_n_layers(r.net), bp_net_n_params(r.net),
               bp_ctx_threads(r.ctx));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    rc = train_loop(&r);
out:
    run_free(&r);
    return rc;
}
