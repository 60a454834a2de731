/* The training loop's batch gather (src/train.c): rows order[start ..
 * start + B) of a dataset copied into the net's staging buffers, with
 * labels or targets, split over the context's threads once the batch is
 * large (BPI_PAR_MIN_ELEMS floats). Each row must be its own, whatever
 * the thread count and wherever the batch starts. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "net.h"
#include "parallel.h"
#include "testutil.h"
#include "train.h"
#include "tu_suite.h"

#define OK(expr) ck_assert_msg((expr) == BP_OK, "%s: %s", #expr, bp_last_error())

/* Gathers every batch of one shuffled epoch and checks it row by row. */
static void check_epoch(int n_threads, size_t n, size_t features, size_t batch, int targets)
{
    ck_assert_uint_ge(batch * features, BPI_PAR_MIN_ELEMS); /* the split path */
    float *X = malloc(n * features * sizeof *X);
    float *T = malloc(n * 3 * sizeof *T);
    int32_t *y = malloc(n * sizeof *y);
    ck_assert(X && T && y);
    for (size_t i = 0; i < n * features; i++)
        X[i] = (float)i; /* every element different */
    for (size_t i = 0; i < n * 3; i++)
        T[i] = -(float)i;
    for (size_t i = 0; i < n; i++)
        y[i] = (int32_t)(i % 5);
    bp_ctx *ctx;
    bp_net *net;
    bp_dataset *ds;
    bp_layer_spec layers[] = {{targets ? 3 : 5, BP_ACT_IDENTITY, 0}};
    OK(bp_ctx_create(&ctx, n_threads));
    OK(bp_net_create(&net, ctx, features, 1, layers,
                     targets ? BP_HEAD_MSE : BP_HEAD_SOFTMAX_CE, batch));
    OK(targets ? bp_dataset_create(&ds, n, features, X, NULL, T, 3)
               : bp_dataset_create(&ds, n, features, X, y, NULL, 0));
    bpi_train_shuffle(ds, 9, 1);
    for (size_t start = 0; start < n; start += batch) {
        size_t B = n - start < batch ? n - start : batch;
        memset(net->batch_x, 0xff, batch * features * sizeof(float));
        bpi_train_gather(net, ds, start, B);
        for (size_t k = 0; k < B; k++) {
            size_t r = ds->order[start + k];
            ck_assert_msg(memcmp(net->batch_x + k * features, X + r * features,
                                 features * sizeof(float)) == 0,
                          "%d threads: batch row %zu is not dataset row %zu", n_threads,
                          start + k, r);
            if (targets)
                ck_assert(memcmp(net->batch_targets + k * 3, T + r * 3, 3 * sizeof(float)) ==
                          0);
            else
                ck_assert_int_eq(net->batch_labels[k], y[r]);
        }
    }
    bp_dataset_destroy(ds);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
    free(y), free(T), free(X);
}

START_TEST(rows_land_in_place)
{
    /* 100 rows: the last batch is short (4 or 1 rows); 33 rows split
     * unevenly over 2 and 3 threads. */
    for (int t = 1; t <= 3; t++) {
        check_epoch(t, 100, 1024, 32, 0);
        check_epoch(t, 100, 1024, 32, 1);
        check_epoch(t, 100, 1000, 33, 0);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("gather");
    TCase *tc = tcase_create("gather");
    tcase_add_test(tc, rows_land_in_place);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
