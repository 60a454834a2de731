/* The net's API: version, context, layout, initialisation, tensor access,
 * prediction, datasets, and the views of activations and input gradients. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <backprop.h>

#include "testutil.h"
#include "tu_suite.h"

#define OK(expr) ck_assert_msg((expr) == BP_OK, "%s: %s", #expr, bp_last_error())

START_TEST(version_matches_header)
{
    ck_assert_uint_eq(bp_version(), BP_VERSION);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", BP_VERSION_MAJOR, BP_VERSION_MINOR, BP_VERSION_PATCH);
    ck_assert_str_eq(bp_version_string(), want);
}
END_TEST

START_TEST(context_threads_and_topology)
{
    bp_ctx *ctx;
    bp_topology_info t;
    OK(bp_ctx_create(&ctx, 3));
    /* Without OpenMP every context runs on one thread, as documented. */
    int openmp = (bp_build_features() & BP_FEATURE_OPENMP) != 0;
    ck_assert_int_eq(bp_ctx_threads(ctx), openmp ? 3 : 1);
    OK(bp_ctx_set_threads(ctx, 1));
    ck_assert_int_eq(bp_ctx_threads(ctx), 1);
    OK(bp_ctx_topology(ctx, &t));
    ck_assert_int_eq(t.hwloc_used != 0 && !(bp_build_features() & BP_FEATURE_HWLOC), 0);
    /* Sane after clamping, whatever the machine (or valgrind) reports. */
    ck_assert_int_ge(t.n_cores, 1);
    ck_assert_int_ge(t.n_pus, t.n_cores);
    ck_assert_int_ge(t.n_packages, 1);
    ck_assert_int_ge(t.n_numa_nodes, 1);
    ck_assert(t.l1d_bytes >= 8192 && t.l1d_bytes <= 262144);
    ck_assert(t.l2_bytes >= 131072 && t.l2_bytes <= (16u << 20));
    ck_assert(t.l3_bytes >= (1u << 20) && t.l3_bytes <= (256u << 20));
    bp_ctx_destroy(ctx);
    OK(bp_ctx_create(&ctx, 0));
    ck_assert_int_ge(bp_ctx_threads(ctx), 1);
    bp_ctx_destroy(ctx);
}
END_TEST

static bp_net *make_net(bp_ctx *ctx, bp_head head)
{
    bp_net *net;
    bp_layer_spec layers[] = {{5, BP_ACT_LEAKY_RELU, 0.2f}, {3, BP_ACT_SIGMOID, 0}};
    OK(bp_net_create(&net, ctx, 4, 2, layers, head, 6));
    return net;
}

START_TEST(shape_queries)
{
    bp_ctx *ctx;
    OK(bp_ctx_create(&ctx, 1));
    bp_net *net = make_net(ctx, BP_HEAD_MSE);
    ck_assert_uint_eq(bp_net_n_layers(net), 2);
    ck_assert_uint_eq(bp_net_n_in(net), 4);
    ck_assert_uint_eq(bp_net_n_out(net), 3);
    ck_assert_uint_eq(bp_net_max_batch(net), 6);
    ck_assert_int_eq(bp_net_head(net), BP_HEAD_MSE);
    ck_assert_uint_eq(bp_net_n_params(net), 5 * 4 + 5 + 3 * 5 + 3);
    bp_layer_spec sp;
    OK(bp_net_layer(net, 0, &sp));
    ck_assert_uint_eq(sp.n_out, 5);
    ck_assert_int_eq(sp.activation, BP_ACT_LEAKY_RELU);
    ck_assert(sp.alpha == 0.2f);
    const float *w;
    size_t rows, cols;
    OK(bp_net_param_view(net, 1, BP_WEIGHT, &w, &rows, &cols));
    ck_assert(rows == 3 && cols == 5);
    ck_assert_msg(((uintptr_t)w & 63) == 0, "weights not 64-byte aligned");
    OK(bp_net_grad_view(net, 1, BP_BIAS, &w, &rows, &cols));
    ck_assert(rows == 3 && cols == 1);
    ck_assert_msg(((uintptr_t)w & 63) == 0, "bias gradient not 64-byte aligned");
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
}
END_TEST

START_TEST(param_and_grad_round_trip)
{
    bp_ctx *ctx;
    OK(bp_ctx_create(&ctx, 1));
    bp_net *net = make_net(ctx, BP_HEAD_MSE);
    float w[15], back[15];
    for (int i = 0; i < 15; i++)
        w[i] = (float)i * 0.25f - 1.0f;
    OK(bp_net_set_param(net, 1, BP_WEIGHT, w, 15));
    OK(bp_net_get_param(net, 1, BP_WEIGHT, back, 15));
    ck_assert(memcmp(w, back, sizeof w) == 0);
    const float *view;
    OK(bp_net_param_view(net, 1, BP_WEIGHT, &view, NULL, NULL));
    ck_assert(memcmp(w, view, sizeof w) == 0);
    OK(bp_net_set_grad(net, 1, BP_WEIGHT, w, 15));
    OK(bp_net_get_grad(net, 1, BP_WEIGHT, back, 15));
    ck_assert(memcmp(w, back, sizeof w) == 0);
    /* Other tensors untouched. */
    float b[3];
    OK(bp_net_get_param(net, 1, BP_BIAS, b, 3));
    ck_assert(b[0] == 0 && b[1] == 0 && b[2] == 0);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
}
END_TEST

/* Initialisation: reproducible from the seed, different across seeds, with
 * the documented range / variance, biases zero. */
START_TEST(init_distributions)
{
    bp_ctx *ctx;
    bp_net *net, *net2;
    enum { IN = 300, OUT = 200 };
    bp_layer_spec layers[] = {{OUT, BP_ACT_RELU, 0}};
    OK(bp_ctx_create(&ctx, 1));
    OK(bp_net_create(&net, ctx, IN, 1, layers, BP_HEAD_MSE, 1));
    OK(bp_net_create(&net2, ctx, IN, 1, layers, BP_HEAD_MSE, 1));
    static float w[IN * OUT], w2[IN * OUT];
    float bias[OUT];
    struct { bp_init init; double var; int uniform; } cases[] = {
        {BP_INIT_XAVIER_UNIFORM, 2.0 / (IN + OUT), 1}, {BP_INIT_XAVIER_NORMAL, 2.0 / (IN + OUT), 0},
        {BP_INIT_HE_UNIFORM, 2.0 / IN, 1}, {BP_INIT_HE_NORMAL, 2.0 / IN, 0}};
    for (size_t c = 0; c < 4; c++) {
        OK(bp_net_init(net, cases[c].init, 99));
        OK(bp_net_init(net2, cases[c].init, 99));
        OK(bp_net_get_param(net, 0, BP_WEIGHT, w, IN * OUT));
        OK(bp_net_get_param(net2, 0, BP_WEIGHT, w2, IN * OUT));
        ck_assert_msg(memcmp(w, w2, sizeof w) == 0, "init %zu not reproducible", c);
        OK(bp_net_get_param(net, 0, BP_BIAS, bias, OUT));
        for (int j = 0; j < OUT; j++)
            ck_assert(bias[j] == 0.0f);
        double mean = 0, var = 0, bound = sqrt(3 * cases[c].var), maxabs = 0;
        for (int i = 0; i < IN * OUT; i++)
            mean += w[i], var += (double)w[i] * w[i], maxabs = fmax(maxabs, fabs(w[i]));
        mean /= IN * OUT;
        var = var / (IN * OUT) - mean * mean;
        /* 60000 samples: the sample variance is within ~1% (sd ~0.6% for a
         * normal, less for a uniform); 3% is > 4 sigma. */
        ck_assert_msg(fabs(var / cases[c].var - 1) < 0.03, "init %zu: var %g want %g", c, var,
                      cases[c].var);
        ck_assert_msg(fabs(mean) < 4 * sqrt(cases[c].var / (IN * OUT)), "init %zu: mean %g", c, mean);
        if (cases[c].uniform)
            ck_assert_msg(maxabs <= bound, "init %zu: |w| %g above bound %g", c, maxabs, bound);
        else
            ck_assert_msg(maxabs > bound, "init %zu: normal never exceeds %g", c, bound);
        OK(bp_net_init(net2, cases[c].init, 100));
        OK(bp_net_get_param(net2, 0, BP_WEIGHT, w2, IN * OUT));
        ck_assert_msg(memcmp(w, w2, sizeof w) != 0, "init %zu: seed ignored", c);
    }
    bp_net_destroy(net);
    bp_net_destroy(net2);
    bp_ctx_destroy(ctx);
}
END_TEST

/* predict: the head's output on a forward pass, checked by hand on a
 * 1-layer identity net where Y = X W^T + b is easy to compute. */
START_TEST(predict_applies_head)
{
    bp_ctx *ctx;
    OK(bp_ctx_create(&ctx, 1));
    bp_head heads[] = {BP_HEAD_SOFTMAX_CE, BP_HEAD_MSE, BP_HEAD_SIGMOID_BCE};
    const float W[6] = {1, -2, 0.5f, 3, 0, -1}; /* (3, 2) */
    const float b[3] = {0.1f, -0.2f, 0.3f};
    const float X[4] = {1, 2, -1, 0.5f};        /* (2, 2) */
    for (int h = 0; h < 3; h++) {
        bp_net *net;
        bp_layer_spec layer = {3, BP_ACT_IDENTITY, 0};
        OK(bp_net_create(&net, ctx, 2, 1, &layer, heads[h], 2));
        OK(bp_net_set_param(net, 0, BP_WEIGHT, W, 6));
        OK(bp_net_set_param(net, 0, BP_BIAS, b, 3));
        float Y[6];
        OK(bp_net_predict(net, X, 2, Y));
        for (int r = 0; r < 2; r++) {
            double z[3], s = 0;
            for (int j = 0; j < 3; j++) {
                z[j] = b[j] + X[2 * r] * W[2 * j] + X[2 * r + 1] * W[2 * j + 1];
                s += exp(z[j]);
            }
            for (int j = 0; j < 3; j++) {
                double want = heads[h] == BP_HEAD_SOFTMAX_CE ? exp(z[j]) / s
                            : heads[h] == BP_HEAD_MSE ? z[j] : 1 / (1 + exp(-z[j]));
                ck_assert_msg(fabs(Y[3 * r + j] - want) < 1e-6 * (1 + fabs(want)),
                              "head %d row %d col %d: %g want %g", h, r, j, (double)Y[3 * r + j], want);
            }
        }
        const float *A;
        size_t rows, cols;
        OK(bp_net_output(net, 0, &A, &rows, &cols));
        ck_assert(rows == 2 && cols == 3);
        bp_net_destroy(net);
    }
    bp_ctx_destroy(ctx);
}
END_TEST

START_TEST(input_grad_views)
{
    bp_ctx *ctx;
    OK(bp_ctx_create(&ctx, 1));
    bp_net *net = make_net(ctx, BP_HEAD_MSE);
    OK(bp_net_init(net, BP_INIT_XAVIER_UNIFORM, 1));
    float X[3 * 4], T[3 * 3];
    tu_rng r;
    tu_seed(&r, 5);
    tu_fill(&r, X, 12, -1, 1);
    tu_fill(&r, T, 9, 0, 1);
    const float *dX;
    size_t rows, cols;
    OK(bp_net_forward(net, X, 3));
    OK(bp_net_backward(net, NULL, T, NULL));
    ck_assert_int_eq(bp_net_input_grad(net, 0, &dX, &rows, &cols), BP_ESTATE);
    OK(bp_net_input_grad(net, 1, &dX, &rows, &cols));
    ck_assert(rows == 3 && cols == 5);
    OK(bp_net_set_input_grad(net, 1));
    OK(bp_net_forward(net, X, 3));
    float loss;
    OK(bp_net_backward(net, NULL, T, &loss));
    ck_assert(isfinite(loss) && loss > 0);
    OK(bp_net_input_grad(net, 0, &dX, &rows, &cols));
    ck_assert(rows == 3 && cols == 4);
    double norm = 0;
    for (int i = 0; i < 12; i++)
        norm += fabs(dX[i]);
    ck_assert_msg(norm > 0, "input gradient is all zero");
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
}
END_TEST

START_TEST(dataset_copies_and_views)
{
    float X[6] = {1, 2, 3, 4, 5, 6};
    int32_t y[3] = {0, 1, 2};
    bp_dataset *ds;
    OK(bp_dataset_create(&ds, 3, 2, X, y, NULL, 0));
    X[0] = 100, y[0] = 9; /* the dataset holds its own copy */
    ck_assert_uint_eq(bp_dataset_size(ds), 3);
    ck_assert_uint_eq(bp_dataset_n_features(ds), 2);
    ck_assert(bp_dataset_features(ds)[0] == 1.0f);
    ck_assert_int_eq(bp_dataset_labels(ds)[0], 0);
    ck_assert_ptr_null(bp_dataset_targets(ds));
    bp_dataset_destroy(ds);
}
END_TEST

/* train_epoch replays: the same (seed, epoch) gives the same result, and a
 * different epoch gives a different order (so a different result). */
START_TEST(epoch_order_replays)
{
    enum { N = 50, D = 3 };
    float X[N * D];
    int32_t y[N];
    tu_rng r;
    tu_seed(&r, 8);
    tu_fill(&r, X, N * D, -1, 1);
    for (int i = 0; i < N; i++)
        y[i] = (int32_t)(tu_next(&r) % 2);
    bp_ctx *ctx;
    bp_dataset *ds;
    OK(bp_ctx_create(&ctx, 1));
    OK(bp_dataset_create(&ds, N, D, X, y, NULL, 0));
    float result[3][8 * D];
    uint64_t epochs[3] = {4, 4, 5};
    for (int run = 0; run < 3; run++) {
        bp_net *net;
        bp_optim *opt;
        bp_optim_config cfg;
        bp_layer_spec layers[] = {{8, BP_ACT_TANH, 0}, {2, BP_ACT_IDENTITY, 0}};
        OK(bp_net_create(&net, ctx, D, 2, layers, BP_HEAD_SOFTMAX_CE, 16));
        OK(bp_net_init(net, BP_INIT_XAVIER_UNIFORM, 2));
        OK(bp_optim_config_default(&cfg, BP_OPTIM_SGD));
        cfg.lr = 0.5f;
        OK(bp_optim_create(&opt, net, &cfg));
        float loss;
        OK(bp_train_epoch(net, opt, ds, 16, 3, epochs[run], &loss));
        ck_assert_uint_eq(bp_optim_steps(opt), (N + 15) / 16);
        OK(bp_net_get_param(net, 0, BP_WEIGHT, result[run], 8 * D));
        bp_optim_destroy(opt);
        bp_net_destroy(net);
    }
    ck_assert(memcmp(result[0], result[1], sizeof result[0]) == 0);
    ck_assert(memcmp(result[0], result[2], sizeof result[0]) != 0);
    bp_dataset_destroy(ds);
    bp_ctx_destroy(ctx);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("net");
    TCase *tc = tcase_create("net");
    tcase_add_test(tc, version_matches_header);
    tcase_add_test(tc, context_threads_and_topology);
    tcase_add_test(tc, shape_queries);
    tcase_add_test(tc, param_and_grad_round_trip);
    tcase_add_test(tc, init_distributions);
    tcase_add_test(tc, predict_applies_head);
    tcase_add_test(tc, input_grad_views);
    tcase_add_test(tc, dataset_copies_and_views);
    tcase_add_test(tc, epoch_order_replays);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
