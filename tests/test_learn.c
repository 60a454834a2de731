/* Learning: the net actually fits problems, and training is reproducible
 * bit for bit across runs and thread counts. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <backprop.h>

#include "testutil.h"
#include "tu_suite.h"

#define OK(expr) ck_assert_msg((expr) == BP_OK, "%s: %s", #expr, bp_last_error())

/* XOR: 4 points, 2-8-1 with tanh and a sigmoid-BCE head. */
START_TEST(xor_reaches_100_percent)
{
    static const float X[8] = {0, 0, 0, 1, 1, 0, 1, 1};
    static const float T[4] = {0, 1, 1, 0};
    bp_ctx *ctx;
    bp_net *net;
    bp_optim *opt;
    bp_dataset *ds;
    bp_optim_config cfg;
    bp_layer_spec layers[] = {{8, BP_ACT_TANH, 0}, {1, BP_ACT_IDENTITY, 0}};
    OK(bp_ctx_create(&ctx, 1));
    OK(bp_net_create(&net, ctx, 2, 2, layers, BP_HEAD_SIGMOID_BCE, 4));
    OK(bp_net_init(net, BP_INIT_XAVIER_UNIFORM, 7));
    OK(bp_optim_config_default(&cfg, BP_OPTIM_ADAM));
    cfg.lr = 0.05f;
    OK(bp_optim_create(&opt, net, &cfg));
    OK(bp_dataset_create(&ds, 4, 2, X, NULL, T, 1));
    float loss = 0, acc = 0;
    for (int e = 0; e < 500; e++)
        OK(bp_train_epoch(net, opt, ds, 4, 1, (uint64_t)e, &loss));
    OK(bp_evaluate(net, ds, 4, &loss, &acc));
    ck_assert_msg(acc == 1.0f, "XOR accuracy %g, loss %g", (double)acc, (double)loss);
    ck_assert_msg(loss < 0.05f, "XOR loss %g", (double)loss);
    float P[4];
    OK(bp_net_predict(net, X, 4, P));
    for (int i = 0; i < 4; i++)
        ck_assert_msg((P[i] > 0.5f) == (T[i] > 0.5f), "point %d: p=%g", i, (double)P[i]);
    bp_dataset_destroy(ds);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
}
END_TEST

/* 10 Gaussian blobs in 8 dimensions, centres on a scaled simplex-like grid:
 * separable, but not trivially (sd 0.6 around centres 3 apart). */
enum { BLOB_K = 10, BLOB_D = 8, BLOB_PER = 200, BLOB_N = BLOB_K * BLOB_PER };

static void make_blobs(uint64_t seed, float *X, int32_t *y)
{
    tu_rng r;
    tu_seed(&r, 1234);
    float centres[BLOB_K][BLOB_D];
    for (int k = 0; k < BLOB_K; k++)
        for (int d = 0; d < BLOB_D; d++)
            centres[k][d] = (float)tu_uniform(&r, -3, 3);
    tu_seed(&r, seed);
    for (int i = 0; i < BLOB_N; i++) {
        int k = i % BLOB_K;
        y[i] = k;
        for (int d = 0; d < BLOB_D; d++) {
            /* Box-Muller in the test, independent of the library's RNG. */
            double u1 = tu_uniform(&r, 1e-12, 1), u2 = tu_uniform(&r, 0, 1);
            double g = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
            X[i * BLOB_D + d] = centres[k][d] + (float)(0.6 * g);
        }
    }
}

START_TEST(blobs_reach_95_percent)
{
    static float Xtr[BLOB_N * BLOB_D], Xte[BLOB_N * BLOB_D];
    static int32_t ytr[BLOB_N], yte[BLOB_N];
    make_blobs(1, Xtr, ytr);
    make_blobs(2, Xte, yte);
    bp_ctx *ctx;
    bp_net *net;
    bp_optim *opt;
    bp_dataset *tr, *te;
    bp_optim_config cfg;
    bp_layer_spec layers[] = {{32, BP_ACT_RELU, 0}, {BLOB_K, BP_ACT_IDENTITY, 0}};
    OK(bp_ctx_create(&ctx, 2));
    OK(bp_net_create(&net, ctx, BLOB_D, 2, layers, BP_HEAD_SOFTMAX_CE, 32));
    OK(bp_net_init(net, BP_INIT_HE_NORMAL, 3));
    OK(bp_optim_config_default(&cfg, BP_OPTIM_SGD));
    cfg.lr = 0.05f;
    cfg.momentum = 0.9f;
    OK(bp_optim_create(&opt, net, &cfg));
    OK(bp_dataset_create(&tr, BLOB_N, BLOB_D, Xtr, ytr, NULL, 0));
    OK(bp_dataset_create(&te, BLOB_N, BLOB_D, Xte, yte, NULL, 0));
    float loss, acc;
    for (int e = 0; e < 15; e++)
        OK(bp_train_epoch(net, opt, tr, 32, 9, (uint64_t)e, &loss));
    OK(bp_evaluate(net, te, 32, &loss, &acc));
    ck_assert_msg(acc > 0.95f, "held-out blob accuracy %g (loss %g)", (double)acc, (double)loss);
    bp_dataset_destroy(tr);
    bp_dataset_destroy(te);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
}
END_TEST

/* Train a net wide enough for both threads to work, return all parameters. */
static float *train_and_dump(int n_threads, bp_optim_type type, size_t *n_out)
{
    enum { D = 40, N = 600, B = 64 };
    static float X[N * D];
    static int32_t y[N];
    tu_rng r;
    tu_seed(&r, 77);
    tu_fill(&r, X, N * D, -1, 1);
    for (int i = 0; i < N; i++)
        y[i] = (int32_t)(tu_next(&r) % 7);
    bp_ctx *ctx;
    bp_net *net;
    bp_optim *opt;
    bp_dataset *ds;
    bp_optim_config cfg;
    bp_layer_spec layers[] = {{300, BP_ACT_GELU, 0}, {200, BP_ACT_TANH, 0}, {7, BP_ACT_IDENTITY, 0}};
    OK(bp_ctx_create(&ctx, n_threads));
    OK(bp_net_create(&net, ctx, D, 3, layers, BP_HEAD_SOFTMAX_CE, B));
    OK(bp_net_init(net, BP_INIT_XAVIER_NORMAL, 5));
    OK(bp_optim_config_default(&cfg, type));
    cfg.clip_norm = 1.0f;
    cfg.weight_decay = 1e-3f;
    OK(bp_optim_create(&opt, net, &cfg));
    OK(bp_dataset_create(&ds, N, D, X, y, NULL, 0));
    float loss;
    for (int e = 0; e < 2; e++)
        OK(bp_train_epoch(net, opt, ds, B, 11, (uint64_t)e, &loss));
    size_t total = bp_net_n_params(net), at = 0;
    float *out = malloc(total * sizeof *out);
    ck_assert_ptr_nonnull(out);
    for (size_t i = 0; i < 3; i++) {
        const float *w, *b;
        size_t rows, cols;
        OK(bp_net_param_view(net, i, BP_WEIGHT, &w, &rows, &cols));
        memcpy(out + at, w, rows * cols * sizeof *w), at += rows * cols;
        OK(bp_net_param_view(net, i, BP_BIAS, &b, &rows, NULL));
        memcpy(out + at, b, rows * sizeof *b), at += rows;
    }
    ck_assert_uint_eq(at, total);
    *n_out = total;
    bp_dataset_destroy(ds);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
    return out;
}

START_TEST(same_seed_same_bits_any_threads)
{
    bp_optim_type type = _i == 0 ? BP_OPTIM_SGD : BP_OPTIM_ADAMW;
    size_t n1, n1b, n2, n3;
    float *w1 = train_and_dump(1, type, &n1);
    float *w1b = train_and_dump(1, type, &n1b);
    float *w2 = train_and_dump(2, type, &n2);
    float *w3 = train_and_dump(3, type, &n3);
    ck_assert(n1 == n2 && n1 == n3 && n1 == n1b);
    ck_assert_msg(memcmp(w1, w1b, n1 * sizeof *w1) == 0, "two 1-thread runs differ");
    ck_assert_msg(memcmp(w1, w2, n1 * sizeof *w1) == 0, "1 and 2 threads differ");
    ck_assert_msg(memcmp(w1, w3, n1 * sizeof *w1) == 0, "1 and 3 threads differ");
    /* And training moved the weights at all. */
    bp_ctx *ctx;
    bp_net *net;
    bp_layer_spec layers[] = {{300, BP_ACT_GELU, 0}, {200, BP_ACT_TANH, 0}, {7, BP_ACT_IDENTITY, 0}};
    OK(bp_ctx_create(&ctx, 1));
    OK(bp_net_create(&net, ctx, 40, 3, layers, BP_HEAD_SOFTMAX_CE, 64));
    OK(bp_net_init(net, BP_INIT_XAVIER_NORMAL, 5));
    const float *w0;
    OK(bp_net_param_view(net, 0, BP_WEIGHT, &w0, NULL, NULL));
    ck_assert_msg(memcmp(w0, w1, 300 * 40 * sizeof *w0) != 0, "training changed nothing");
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
    free(w1), free(w1b), free(w2), free(w3);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("learn");
    TCase *tc = tcase_create("learn");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, xor_reaches_100_percent);
    tcase_add_test(tc, blobs_reach_95_percent);
    tcase_add_loop_test(tc, same_seed_same_bits_any_threads, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
