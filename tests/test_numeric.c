/* Numeric faults and the floating-point mode, on the public API:
 *  - a diverging step (a learning rate so large, or gradients so large,
 *    that a new parameter or optimizer state would be infinite or NaN) is
 *    refused with BP_ENUMERIC naming the layer and tensor, and changes
 *    nothing: parameters, every state slot and the step count keep their
 *    last good bits;
 *  - a NaN parameter that the forward pass hides (ReLU maps NaN to 0) is
 *    still caught by the step;
 *  - denormals: the library's kernels run with flush-to-zero and
 *    denormals-are-zero, so denormal inputs train exactly as zeros, the
 *    same bits for 1 and 2 threads; and the caller's floating-point mode
 *    (and that of OpenMP's pooled threads) is what it was afterwards. */
#include <backprop.h>
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#define FTZ_DAZ 0x8040u
#else
#define HAVE_MXCSR 0
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include "testutil.h"
#include "tu_suite.h"

#define N_IN 6
#define MAXB 8
#define MAXP 4096

static const bp_layer_spec g_layers[2] = {{5, BP_ACT_RELU, 0.0f}, {3, BP_ACT_IDENTITY, 0.0f}};

typedef struct snapshot {
    float p[MAXP];
    float s[2][MAXP];
    uint64_t steps;
} snapshot;

/* Every parameter and state slot, tensor after tensor. */
static void snap(const bp_net *net, const bp_optim *opt, snapshot *s)
{
    memset(s, 0, sizeof *s);
    size_t at = 0;
    for (size_t l = 0; l < bp_net_n_layers(net); l++)
        for (int w = 0; w < 2; w++) {
            const float *v;
            size_t rows, cols;
            ck_assert_int_eq(bp_net_param_view(net, l, (bp_tensor)w, &v, &rows, &cols), BP_OK);
            size_t n = rows * cols;
            ck_assert_uint_le(at + n, MAXP);
            memcpy(s->p + at, v, n * sizeof(float));
            for (size_t k = 0; opt && k < bp_optim_n_slots(opt); k++)
                ck_assert_int_eq(bp_optim_get_state(opt, l, (bp_tensor)w, k, s->s[k] + at, n),
                                 BP_OK);
            at += n;
        }
    s->steps = opt ? bp_optim_steps(opt) : 0;
}

static void expect_same(const snapshot *a, const snapshot *b)
{
    ck_assert_msg(memcmp(a->p, b->p, sizeof a->p) == 0, "parameters changed");
    ck_assert_msg(memcmp(a->s, b->s, sizeof a->s) == 0, "optimizer state changed");
    ck_assert_uint_eq(a->steps, b->steps);
}

static bp_net *make_net(bp_ctx *ctx, uint64_t seed)
{
    bp_net *net = NULL;
    ck_assert_int_eq(bp_net_create(&net, ctx, N_IN, 2, g_layers, BP_HEAD_MSE, MAXB), BP_OK);
    ck_assert_int_eq(bp_net_init(net, BP_INIT_HE_UNIFORM, seed), BP_OK);
    return net;
}

static void batch(float *X, float *T, uint64_t seed)
{
    tu_rng r;
    tu_seed(&r, seed);
    tu_fill(&r, X, MAXB * N_IN, -1, 1);
    tu_fill(&r, T, MAXB * 3, -1, 1);
}

/* ---------------------------------------------------- diverging steps */

START_TEST(test_sgd_huge_lr)
{
    bp_ctx *ctx;
    ck_assert_int_eq(bp_ctx_create(&ctx, 2), BP_OK);
    bp_net *net = make_net(ctx, 1);
    bp_optim_config cfg;
    ck_assert_int_eq(bp_optim_config_default(&cfg, BP_OPTIM_SGD), BP_OK);
    cfg.momentum = 0.9f;
    cfg.lr = 3e38f; /* finite, so the configuration is valid */
    bp_optim *opt;
    ck_assert_int_eq(bp_optim_create(&opt, net, &cfg), BP_OK);
    float X[MAXB * N_IN], T[MAXB * 3], loss = 42.0f;
    batch(X, T, 2);
    /* A gradient of 2 on a bias: lr g overflows float. */
    float g[3] = {0.0f, 2.0f, 0.0f};
    snapshot before, after;
    ck_assert_int_eq(bp_net_set_grad(net, 1, BP_BIAS, g, 3), BP_OK);
    snap(net, opt, &before);
    bp_status s = bp_optim_step(opt);
    ck_assert_int_eq(s, BP_ENUMERIC);
    ck_assert_msg(strstr(bp_last_error(), "layer 1 b[1]") != NULL, "%s", bp_last_error());
    snap(net, opt, &after);
    expect_same(&before, &after);
    /* Nothing was poisoned: the net still runs, and a sane rate trains. */
    ck_assert_int_eq(bp_net_forward(net, X, MAXB), BP_OK);
    ck_assert_int_eq(bp_net_backward(net, NULL, T, &loss), BP_OK);
    ck_assert(isfinite(loss));
    bp_optim *sane;
    cfg.lr = 0.01f;
    ck_assert_int_eq(bp_optim_create(&sane, net, &cfg), BP_OK);
    ck_assert_int_eq(bp_train_step(net, sane, X, NULL, T, MAXB, &loss), BP_OK);
    bp_optim_destroy(sane);
    /* Through bp_train_step: the first failing step (in the optimizer or,
     * once the weights are huge, in the forward pass) changes nothing. */
    s = BP_OK;
    for (int k = 0; k < 20 && s == BP_OK; k++) {
        snap(net, opt, &before);
        s = bp_train_step(net, opt, X, NULL, T, MAXB, &loss);
    }
    ck_assert_int_eq(s, BP_ENUMERIC);
    ck_assert_msg(strstr(bp_last_error(), "layer ") != NULL, "%s", bp_last_error());
    snap(net, opt, &after);
    expect_same(&before, &after);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
}
END_TEST

/* Adam's step is bounded by about lr, so a huge rate overflows the
 * parameters after a few steps: the failing one changes nothing. */
START_TEST(test_adam_diverges_over_steps)
{
    bp_ctx *ctx;
    ck_assert_int_eq(bp_ctx_create(&ctx, 1), BP_OK);
    bp_net *net = make_net(ctx, 3);
    bp_optim_config cfg;
    ck_assert_int_eq(bp_optim_config_default(&cfg, BP_OPTIM_ADAMW), BP_OK);
    cfg.lr = 1e37f; /* steps of about 1e37: overflow after a few dozen */
    cfg.weight_decay = 0.0f;
    bp_optim *opt;
    ck_assert_int_eq(bp_optim_create(&opt, net, &cfg), BP_OK);
    float X[MAXB * N_IN], T[MAXB * 3], loss;
    batch(X, T, 4);
    snapshot before, after;
    bp_status s = BP_OK;
    int steps = 0;
    for (; steps < 200 && s == BP_OK; steps++) {
        snap(net, opt, &before);
        /* Gradients straight from forward/backward: the loss itself may
         * overflow first, which is reported by the backward pass. */
        ck_assert_int_eq(bp_net_forward(net, X, MAXB), BP_OK);
        s = bp_net_backward(net, NULL, T, &loss);
        if (s == BP_OK)
            s = bp_optim_step(opt);
    }
    ck_assert_int_eq(s, BP_ENUMERIC);
    ck_assert_int_gt(steps, 1);
    ck_assert_msg(strstr(bp_last_error(), "layer ") != NULL, "%s", bp_last_error());
    snap(net, opt, &after);
    expect_same(&before, &after);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
}
END_TEST

/* Finite gradients whose squares overflow float: the norm (in double) is
 * finite, but Adam's second moment would become infinite. */
START_TEST(test_adam_second_moment_overflow)
{
    bp_ctx *ctx;
    ck_assert_int_eq(bp_ctx_create(&ctx, 2), BP_OK);
    bp_net *net = make_net(ctx, 5);
    bp_optim_config cfg;
    ck_assert_int_eq(bp_optim_config_default(&cfg, BP_OPTIM_ADAM), BP_OK);
    bp_optim *opt;
    ck_assert_int_eq(bp_optim_create(&opt, net, &cfg), BP_OK);
    float g[3] = {0.5f, -1e30f, 0.25f};
    ck_assert_int_eq(bp_net_set_grad(net, 1, BP_BIAS, g, 3), BP_OK);
    snapshot before, after;
    snap(net, opt, &before);
    ck_assert_int_eq(bp_optim_step(opt), BP_ENUMERIC);
    const char *msg = bp_last_error();
    ck_assert_msg(strstr(msg, "layer 1") && strstr(msg, "b[1]") &&
                  strstr(msg, "second moment"), "%s", msg);
    snap(net, opt, &after);
    expect_same(&before, &after);
    /* The same gradients on the first layer's weights: named there. */
    float zero[3] = {0, 0, 0};
    ck_assert_int_eq(bp_net_set_grad(net, 1, BP_BIAS, zero, 3), BP_OK);
    float gw[5 * N_IN];
    memset(gw, 0, sizeof gw);
    gw[7] = 3e21f; /* (1 - b2) g g = 9e39 */
    ck_assert_int_eq(bp_net_set_grad(net, 0, BP_WEIGHT, gw, 5 * N_IN), BP_OK);
    ck_assert_int_eq(bp_optim_step(opt), BP_ENUMERIC);
    ck_assert_msg(strstr(bp_last_error(), "layer 0 W[7]") != NULL, "%s", bp_last_error());
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
}
END_TEST

/* A NaN weight behind a ReLU: max(0, NaN) is 0 in our ReLU, so the loss and
 * the gradients are finite, yet the update would keep a NaN parameter. */
START_TEST(test_nan_parameter_hidden_by_relu)
{
    bp_ctx *ctx;
    ck_assert_int_eq(bp_ctx_create(&ctx, 1), BP_OK);
    bp_net *net = make_net(ctx, 6);
    float b0[5] = {0, 0, 0, 0, NAN};
    ck_assert_int_eq(bp_net_set_param(net, 0, BP_BIAS, b0, 5), BP_OK);
    bp_optim_config cfg;
    ck_assert_int_eq(bp_optim_config_default(&cfg, BP_OPTIM_SGD), BP_OK);
    bp_optim *opt;
    ck_assert_int_eq(bp_optim_create(&opt, net, &cfg), BP_OK);
    float X[MAXB * N_IN], T[MAXB * 3], loss = 0;
    batch(X, T, 7);
    snapshot before, after;
    snap(net, opt, &before);
    bp_status s = bp_train_step(net, opt, X, NULL, T, MAXB, &loss);
    ck_assert_int_eq(s, BP_ENUMERIC);
    ck_assert_msg(strstr(bp_last_error(), "layer 0") != NULL, "%s", bp_last_error());
    snap(net, opt, &after);
    expect_same(&before, &after);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
}
END_TEST

/* ---------------------------------------------------------- denormals */

#if HAVE_MXCSR
/* Does this CPU (or emulator) honour DAZ? valgrind does not. */
static int daz_works(void)
{
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | FTZ_DAZ);
    __asm__ __volatile__("" : : : "memory");
    volatile float tiny = 1e-40f, one = 1.0f, r;
    r = tiny * one;
    __asm__ __volatile__("" : : : "memory");
    _mm_setcsr(old);
    return r == 0.0f;
}
#endif

/* A training run of a few steps: the parameters afterwards. */
#define BIG_B 128
#define BIG_IN 64
#define BIG_H 256
static void train_big(int threads, const float *X, const float *T, float *params, size_t n)
{
    static const bp_layer_spec big[2] = {{BIG_H, BP_ACT_TANH, 0.0f}, {4, BP_ACT_IDENTITY, 0.0f}};
    bp_ctx *ctx;
    bp_net *net;
    bp_optim *opt;
    bp_optim_config cfg;
    ck_assert_int_eq(bp_ctx_create(&ctx, threads), BP_OK);
    ck_assert_int_eq(bp_net_create(&net, ctx, BIG_IN, 2, big, BP_HEAD_MSE, BIG_B), BP_OK);
    ck_assert_int_eq(bp_net_init(net, BP_INIT_XAVIER_UNIFORM, 9), BP_OK);
    /* Weights of the first layer scaled into the denormal range, too. */
    float *W = malloc(BIG_H * BIG_IN * sizeof(float));
    ck_assert_ptr_nonnull(W);
    ck_assert_int_eq(bp_net_get_param(net, 0, BP_WEIGHT, W, BIG_H * BIG_IN), BP_OK);
    for (int i = 0; i < BIG_H * BIG_IN; i += 3)
        W[i] *= 1e-39f;
    ck_assert_int_eq(bp_net_set_param(net, 0, BP_WEIGHT, W, BIG_H * BIG_IN), BP_OK);
    free(W);
    ck_assert_int_eq(bp_optim_config_default(&cfg, BP_OPTIM_ADAM), BP_OK);
    ck_assert_int_eq(bp_optim_create(&opt, net, &cfg), BP_OK);
    float loss;
    for (int s = 0; s < 3; s++)
        ck_assert_int_eq(bp_train_step(net, opt, X, NULL, T, BIG_B, &loss), BP_OK);
    size_t at = 0;
    for (size_t l = 0; l < 2; l++)
        for (int w = 0; w < 2; w++) {
            size_t k = w == 0 ? big[l].n_out * (l ? BIG_H : BIG_IN) : big[l].n_out;
            ck_assert_uint_le(at + k, n);
            ck_assert_int_eq(bp_net_get_param(net, l, (bp_tensor)w, params + at, k), BP_OK);
            at += k;
        }
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
}

#define N_BIG_PARAMS (BIG_H * BIG_IN + BIG_H + 4 * BIG_H + 4)

/* Outputs of a freshly initialised net (biases 0) on X. */
static void predict_big(int threads, const float *X, float *Y)
{
    static const bp_layer_spec big[2] = {{BIG_H, BP_ACT_TANH, 0.0f}, {4, BP_ACT_IDENTITY, 0.0f}};
    bp_ctx *ctx;
    bp_net *net;
    ck_assert_int_eq(bp_ctx_create(&ctx, threads), BP_OK);
    ck_assert_int_eq(bp_net_create(&net, ctx, BIG_IN, 2, big, BP_HEAD_MSE, BIG_B), BP_OK);
    ck_assert_int_eq(bp_net_init(net, BP_INIT_XAVIER_UNIFORM, 9), BP_OK);
    ck_assert_int_eq(bp_net_predict(net, X, BIG_B, Y), BP_OK);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
}

/* Every input denormal: with denormals-are-zero the net sees zeros, and
 * with zero biases every output is exactly 0 (without it, tiny non-zero
 * values come out: tanh keeps denormals). */
START_TEST(test_denormal_predict)
{
    static float X[BIG_B * BIG_IN], Y1[BIG_B * 4], Y2[BIG_B * 4];
    tu_rng r;
    tu_seed(&r, 13);
    for (int i = 0; i < BIG_B * BIG_IN; i++)
        X[i] = (float)tu_uniform(&r, 0.1, 1) * FLT_MIN * 0.5f;
    predict_big(1, X, Y1);
    predict_big(2, X, Y2);
    ck_assert_msg(memcmp(Y1, Y2, sizeof Y1) == 0, "1 and 2 threads differ on denormal data");
#if HAVE_MXCSR
    if (!daz_works()) {
        fprintf(stderr, "test_denormal_predict: this CPU (emulator) ignores DAZ: "
                        "flushing not checked\n");
        return;
    }
#endif
    for (int i = 0; i < BIG_B * 4; i++)
        ck_assert_msg(Y1[i] == 0.0f, "Y[%d] = %g: denormal inputs were not flushed", i,
                      (double)Y1[i]);
}
END_TEST

START_TEST(test_denormal_inputs)
{
    static float X[BIG_B * BIG_IN], X0[BIG_B * BIG_IN], T[BIG_B * 4];
    static float p1[N_BIG_PARAMS], p2[N_BIG_PARAMS], p0[N_BIG_PARAMS];
    tu_rng r;
    tu_seed(&r, 11);
    tu_fill(&r, X, BIG_B * BIG_IN, -1, 1);
    tu_fill(&r, T, BIG_B * 4, -1, 1);
    /* Every other input denormal; X0 has zeros there. */
    memcpy(X0, X, sizeof X);
    for (int i = 0; i < BIG_B * BIG_IN; i += 2) {
        X[i] = (float)tu_uniform(&r, -1, 1) * FLT_MIN * 0.5f;
        ck_assert(fpclassify(X[i]) == FP_SUBNORMAL || X[i] == 0.0f);
        X0[i] = 0.0f;
    }
    train_big(1, X, T, p1, N_BIG_PARAMS);
    train_big(2, X, T, p2, N_BIG_PARAMS);
    ck_assert_msg(memcmp(p1, p2, sizeof p1) == 0, "1 and 2 threads differ on denormal data");
    for (size_t i = 0; i < N_BIG_PARAMS; i++)
        ck_assert(isfinite(p1[i]));
#if HAVE_MXCSR
    if (!daz_works()) {
        fprintf(stderr, "test_denormal_inputs: this CPU (emulator) ignores DAZ: "
                        "zero-equivalence not checked\n");
        return;
    }
#endif
    train_big(1, X0, T, p0, N_BIG_PARAMS);
    ck_assert_msg(memcmp(p1, p0, sizeof p1) == 0,
                  "denormal inputs did not train exactly as zeros (flush-to-zero off?)");
}
END_TEST

#if HAVE_MXCSR
/* The MXCSR mode bits of every thread of an OpenMP team of n. */
static unsigned team_modes(int n)
{
    unsigned bits = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(n) reduction(| : bits)
    bits |= _mm_getcsr() & FTZ_DAZ;
#else
    (void)n;
    bits = _mm_getcsr() & FTZ_DAZ;
#endif
    return bits;
}
#endif

START_TEST(test_fp_mode_restored)
{
#if HAVE_MXCSR
    /* valgrind drops FTZ/DAZ from MXCSR writes: nothing to observe there. */
    unsigned probe = _mm_getcsr();
    _mm_setcsr(probe | FTZ_DAZ);
    int kept = (_mm_getcsr() & FTZ_DAZ) == FTZ_DAZ;
    _mm_setcsr(probe);
    if (!kept) {
        fprintf(stderr, "test_fp_mode_restored: MXCSR does not keep FTZ/DAZ here "
                        "(emulator): not checked\n");
        return;
    }
    float X[MAXB * N_IN], T[MAXB * 3], Y[MAXB * 3], loss;
    batch(X, T, 8);
    for (int callers_mode = 0; callers_mode < 2; callers_mode++) {
        unsigned old = _mm_getcsr();
        unsigned mine = callers_mode ? (old | FTZ_DAZ) : (old & ~FTZ_DAZ);
        _mm_setcsr(mine);
        bp_ctx *ctx;
        ck_assert_int_eq(bp_ctx_create(&ctx, 2), BP_OK);
        bp_net *net = make_net(ctx, 12);
        bp_optim_config cfg;
        bp_optim *opt;
        ck_assert_int_eq(bp_optim_config_default(&cfg, BP_OPTIM_ADAM), BP_OK);
        ck_assert_int_eq(bp_optim_create(&opt, net, &cfg), BP_OK);
        ck_assert_int_eq(bp_train_step(net, opt, X, NULL, T, MAXB, &loss), BP_OK);
        ck_assert_int_eq(bp_net_predict(net, X, MAXB, Y), BP_OK);
        static float A[300 * 300], B[300 * 300], C[300 * 300];
        for (int i = 0; i < 300 * 300; i++)
            A[i] = B[i] = 1e-3f * (float)(i % 7);
        ck_assert_int_eq(bp_sgemm(ctx, BP_ROW_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 300, 300, 300,
                                  1.0f, A, 300, B, 300, 0.0f, C, 300), BP_OK);
        /* A diverging step fails inside the check pass: restored too. */
        float huge[3] = {1e30f, 1e30f, 1e30f};
        ck_assert_int_eq(bp_net_set_grad(net, 1, BP_BIAS, huge, 3), BP_OK);
        ck_assert_int_eq(bp_optim_step(opt), BP_ENUMERIC);
        unsigned now = _mm_getcsr();
        ck_assert_msg((now & FTZ_DAZ) == (mine & FTZ_DAZ), "caller's MXCSR mode %#x became %#x",
                      mine, now);
        _mm_setcsr(old);
        /* OpenMP's pooled threads (the library ran on them) are back to
         * the mode they started with: off. */
        ck_assert_uint_eq(team_modes(2), 0);
        bp_optim_destroy(opt);
        bp_net_destroy(net);
        bp_ctx_destroy(ctx);
    }
#endif
}
END_TEST

int main(void)
{
    Suite *s = suite_create("numeric");
    TCase *tc = tcase_create("numeric");
    tcase_add_test(tc, test_sgd_huge_lr);
    tcase_add_test(tc, test_adam_diverges_over_steps);
    tcase_add_test(tc, test_adam_second_moment_overflow);
    tcase_add_test(tc, test_nan_parameter_hidden_by_relu);
    tcase_add_test(tc, test_denormal_inputs);
    tcase_add_test(tc, test_denormal_predict);
    tcase_add_test(tc, test_fp_mode_restored);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
