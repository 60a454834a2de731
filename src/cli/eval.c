/* backprop eval and predict: a saved model on a test set or on new rows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "stats.h"

/* A loaded model and its input transform. */
typedef struct loaded {
    bp_ctx *ctx;
    bp_net *net;
    float *mean, *std;
} loaded;

static void loaded_free(loaded *m)
{
    free(m->mean);
    free(m->std);
    bp_net_destroy(m->net);
    bp_ctx_destroy(m->ctx);
}

static int load_model(const cli_args *a, loaded *m)
{
    memset(m, 0, sizeof *m);
    bp_kv *meta = NULL;
    size_t n_meta = 0;
    bp_status s = bp_ctx_create(&m->ctx, a->threads);
    if (s != BP_OK)
        return cli_fail("context", s);
    s = bp_model_load(a->model, m->ctx, a->batch, &m->net, NULL, NULL, &meta, &n_meta);
    if (s != BP_OK)
        return cli_fail("loading the model", s);
    int stats = cli_stats_from_meta(meta, n_meta, bp_net_n_in(m->net), &m->mean, &m->std);
    bp_kv_free(meta, n_meta);
    if (stats < 0) {
        fprintf(stderr, "backprop: %s: malformed standardisation metadata\n", a->model);
        return 1;
    }
    return 0;
}

/* The data must have the model's width; then the model's transform applies. */
static int prepare(const loaded *m, bp_dataset *ds, const char *what)
{
    size_t nf = bp_dataset_n_features(ds);
    if (nf != bp_net_n_in(m->net)) {
        fprintf(stderr, "backprop: %s has %zu features, the model takes %zu\n", what, nf,
                bp_net_n_in(m->net));
        return 1;
    }
    bp_status s = m->mean ? bp_dataset_standardize(ds, m->mean, m->std, nf) : BP_OK;
    return s == BP_OK ? 0 : cli_fail("standardize", s);
}

/* Counts[true][predicted] over ds, row by row through bp_net_predict. */
static int confusion(const loaded *m, const bp_dataset *ds, size_t batch, size_t *counts)
{
    size_t k = bp_net_n_out(m->net), nf = bp_dataset_n_features(ds), n = bp_dataset_size(ds);
    float *P = malloc(batch * k * sizeof *P);
    if (!P)
        return cli_fail("confusion matrix", BP_ENOMEM);
    const int32_t *y = bp_dataset_labels(ds);
    for (size_t start = 0; start < n; start += batch) {
        size_t B = n - start < batch ? n - start : batch;
        bp_status s = bp_net_predict(m->net, bp_dataset_features(ds) + start * nf, B, P);
        if (s != BP_OK) {
            free(P);
            return cli_fail("predicting", s);
        }
        for (size_t b = 0; b < B; b++) {
            size_t best = 0;
            for (size_t j = 1; j < k; j++)
                best = P[b * k + j] > P[b * k + best] ? j : best;
            if ((size_t)y[start + b] < k)
                counts[(size_t)y[start + b] * k + best]++;
        }
    }
    free(P);
    return 0;
}

static void print_confusion(const size_t *counts, size_t k)
{
    printf("confusion matrix (rows: true class, columns: predicted)\n      ");
    for (size_t j = 0; j < k; j++)
        printf(" %6zu", j);
    putchar('\n');
    for (size_t i = 0; i < k; i++) {
        printf("%6zu", i);
        for (size_t j = 0; j < k; j++)
            printf(" %6zu", counts[i * k + j]);
        putchar('\n');
    }
}

int cli_eval(const cli_args *a)
{
    loaded m;
    bp_dataset *test = NULL;
    size_t *counts = NULL;
    int rc = 1;
    if (load_model(a, &m))
        goto out;
    size_t n_targets = bp_net_head(m.net) == BP_HEAD_SOFTMAX_CE ? 0 : bp_net_n_out(m.net);
    if (cli_load_data(&a->data, n_targets, NULL, &test) || prepare(&m, test, "the test set"))
        goto out;
    float loss, acc;
    bp_status s = bp_evaluate(m.net, test, a->batch, &loss, &acc);
    if (s != BP_OK) {
        cli_fail("evaluating", s);
        goto out;
    }
    printf("%zu samples  loss %.4f  accuracy %.4f\n", bp_dataset_size(test), (double)loss,
           (double)acc);
    if (bp_net_head(m.net) == BP_HEAD_SOFTMAX_CE) {
        size_t k = bp_net_n_out(m.net);
        counts = calloc(k * k, sizeof *counts);
        if (!counts || confusion(&m, test, a->batch, counts))
            goto out;
        print_confusion(counts, k);
    }
    rc = 0;
out:
    free(counts);
    bp_dataset_destroy(test);
    loaded_free(&m);
    return rc;
}

static int load_inputs(const cli_args *a, bp_dataset **ds)
{
    bp_status s;
    if (a->images) {
        s = bp_dataset_load_idx(ds, a->images, NULL);
    } else {
        bp_csv_options o;
        bp_csv_options_default(&o);
        o.header = a->data.csv_header;
        o.label_column = a->data.label_column;
        o.no_labels = a->no_labels;
        s = bp_dataset_load_csv(ds, a->input_csv, &o);
    }
    return s == BP_OK ? 0 : cli_fail("loading inputs", s);
}

/* One line per row: the class, or the head's outputs. */
static void write_rows(FILE *out, const float *P, size_t B, size_t k, int classes)
{
    for (size_t b = 0; b < B; b++) {
        const float *p = P + b * k;
        if (classes) {
            size_t best = 0;
            for (size_t j = 1; j < k; j++)
                best = p[j] > p[best] ? j : best;
            fprintf(out, "%zu\n", best);
            continue;
        }
        for (size_t j = 0; j < k; j++)
            fprintf(out, j ? ",%.9g" : "%.9g", (double)p[j]);
        fputc('\n', out);
    }
}

int cli_predict(const cli_args *a)
{
    loaded m;
    bp_dataset *in = NULL;
    float *P = NULL;
    FILE *out = stdout;
    int rc = 1;
    if (load_model(a, &m) || load_inputs(a, &in) || prepare(&m, in, "the input"))
        goto out;
    if (a->output && !(out = fopen(a->output, "w"))) {
        perror(a->output);
        out = stdout;
        goto out;
    }
    size_t k = bp_net_n_out(m.net), nf = bp_dataset_n_features(in), n = bp_dataset_size(in);
    int classes = bp_net_head(m.net) == BP_HEAD_SOFTMAX_CE && !a->probabilities;
    if (!(P = malloc(a->batch * k * sizeof *P))) {
        cli_fail("predict", BP_ENOMEM);
        goto out;
    }
    for (size_t start = 0; start < n; start += a->batch) {
        size_t B = n - start < a->batch ? n - start : a->batch;
        bp_status s = bp_net_predict(m.net, bp_dataset_features(in) + start * nf, B, P);
        if (s != BP_OK) {
            cli_fail("predicting", s);
            goto out;
        }
        write_rows(out, P, B, k, classes);
    }
    rc = 0;
out:
    if (out != stdout && fclose(out) != 0) {
        perror(a->output);
        rc = 1;
    }
    free(P);
    bp_dataset_destroy(in);
    loaded_free(&m);
    return rc;
}
