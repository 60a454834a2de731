/* Error handling of every public function: bad input is rejected with the
 * documented status, a message from bp_last_error() that is new, non-empty
 * and names a function, and the caller's data (inputs, outputs, the net's
 * parameters and gradients, the optimizer's state) is left bitwise
 * unchanged.
 *
 * EXPECT_ERR first provokes a different, known failure ("the primer") so a
 * function that fails without recording its own message is caught: the
 * message must differ from the primer's. Argument hints are matched
 * case-insensitively and accept alternatives ("lr|learning"), so the tests
 * check that the message names the culprit without fixing its wording. */
#include <backprop.h>
#include <check.h>
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tu_suite.h"

/* ---------------------------------------------------------------- helpers */

static int ci_prefix(const char *s, const char *prefix, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)s[i]) != tolower((unsigned char)prefix[i]) || !s[i])
            return 0;
    return 1;
}

static int ci_contains_n(const char *hay, const char *needle, size_t n)
{
    for (; *hay; hay++)
        if (ci_prefix(hay, needle, n))
            return 1;
    return 0;
}

/* hint is "a|b|c": true if msg contains any alternative. */
static int mentions(const char *msg, const char *hint)
{
    while (*hint) {
        const char *bar = strchr(hint, '|');
        size_t n = bar ? (size_t)(bar - hint) : strlen(hint);
        if (n > 0 && ci_contains_n(msg, hint, n))
            return 1;
        if (!bar)
            break;
        hint = bar + 1;
    }
    return 0;
}

static char g_primer[1024];
static int g_alt_primer; /* set while testing the primer's own function */

static void prime(void)
{
    bp_status s = g_alt_primer ? bp_ctx_topology(NULL, NULL)
                               : bp_optim_config_default(NULL, BP_OPTIM_SGD);
    ck_assert_msg(s == BP_EINVAL, "primer call returned %d", (int)s);
    const char *m = bp_last_error();
    ck_assert_ptr_nonnull(m);
    snprintf(g_primer, sizeof g_primer, "%s", m);
}

static void expect_err_(bp_status got, bp_status want1, bp_status want2, const char *call,
                        const char *hint, int line)
{
    ck_assert_msg(got == want1 || got == want2, "line %d: %s returned %d (%s), expected %s",
                  line, call, (int)got, bp_status_str(got), bp_status_str(want1));
    const char *m = bp_last_error();
    ck_assert_msg(m != NULL, "line %d: %s: bp_last_error() is NULL", line, call);
    ck_assert_msg(m[0] != '\0', "line %d: %s: empty message", line, call);
    ck_assert_msg(strcmp(m, g_primer) != 0,
                  "line %d: %s: failed without recording a message (still \"%s\")", line, call,
                  m);
    ck_assert_msg(strstr(m, "bp_") != NULL, "line %d: %s: message names no function: \"%s\"",
                  line, call, m);
    if (hint)
        ck_assert_msg(mentions(m, hint), "line %d: %s: message \"%s\" does not mention %s", line,
                      call, m, hint);
}

/* The call must fail with `st`; hint (or NULL) must appear in the message. */
#define EXPECT_ERR(call, st, hint)                                  \
    do {                                                            \
        prime();                                                    \
        bp_status s_ = (call);                                      \
        expect_err_(s_, (st), (st), #call, (hint), __LINE__);       \
    } while (0)
/* Either of two statuses (e.g. BP_EINVAL or BP_ENOMEM for a huge size). */
#define EXPECT_ERR2(call, st1, st2, hint)                           \
    do {                                                            \
        prime();                                                    \
        bp_status s_ = (call);                                      \
        expect_err_(s_, (st1), (st2), #call, (hint), __LINE__);     \
    } while (0)
#define EXPECT_OK(call)                                                                  \
    do {                                                                                 \
        bp_status s_ = (call);                                                           \
        ck_assert_msg(s_ == BP_OK, "%s returned %s: %s", #call, bp_status_str(s_),       \
                      bp_last_error());                                                  \
    } while (0)

/* A distinct address standing for "an out-parameter the call must not
 * write": failing calls leave *out as it was. */
static char g_sentinel_obj;
#define SENT(T) ((T *)(void *)&g_sentinel_obj)

#define N_IN 3
#define N_OUT 3
#define MAXB 4
#define MAXP 64 /* floats of all parameters of the test nets (31) */

typedef struct fx {
    bp_ctx *ctx;
    bp_net *ce;  /* softmax-CE: 3 -> 4 relu -> 3 */
    bp_net *mse; /* same shape, MSE head */
    bp_net *bce; /* same shape, BCE head */
} fx;

static const bp_layer_spec g_layers[2] = {{4, BP_ACT_RELU, 0.0f}, {N_OUT, BP_ACT_IDENTITY, 0.0f}};

static bp_net *make_net(bp_ctx *ctx, bp_head head, uint64_t seed)
{
    bp_net *net = NULL;
    EXPECT_OK(bp_net_create(&net, ctx, N_IN, 2, g_layers, head, MAXB));
    EXPECT_OK(bp_net_init(net, BP_INIT_XAVIER_UNIFORM, seed));
    /* Non-zero biases too, so "unchanged" means something. */
    float b0[4] = {0.1f, -0.2f, 0.3f, 0.05f}, b1[N_OUT] = {0.01f, 0.02f, -0.03f};
    EXPECT_OK(bp_net_set_param(net, 0, BP_BIAS, b0, 4));
    EXPECT_OK(bp_net_set_param(net, 1, BP_BIAS, b1, N_OUT));
    return net;
}

static void fx_open(fx *f)
{
    memset(f, 0, sizeof *f);
    EXPECT_OK(bp_ctx_create(&f->ctx, 1));
    f->ce = make_net(f->ctx, BP_HEAD_SOFTMAX_CE, 1);
    f->mse = make_net(f->ctx, BP_HEAD_MSE, 2);
    f->bce = make_net(f->ctx, BP_HEAD_SIGMOID_BCE, 3);
}

static void fx_close(fx *f)
{
    bp_net_destroy(f->ce);
    bp_net_destroy(f->mse);
    bp_net_destroy(f->bce);
    bp_ctx_destroy(f->ctx);
}

/* All parameters (grads = 0) or gradients (grads = 1) of the net, in
 * tensor order, into dst[MAXP]; returns the count. */
static size_t snap_net(const bp_net *net, float *dst, int grads)
{
    size_t off = 0;
    memset(dst, 0, MAXP * sizeof(float));
    for (size_t l = 0; l < bp_net_n_layers(net); l++) {
        bp_layer_spec sp;
        EXPECT_OK(bp_net_layer(net, l, &sp));
        size_t n_in = l == 0 ? bp_net_n_in(net) : 0;
        if (l > 0) {
            bp_layer_spec prev;
            EXPECT_OK(bp_net_layer(net, l - 1, &prev));
            n_in = prev.n_out;
        }
        size_t nw = sp.n_out * n_in;
        ck_assert(off + nw + sp.n_out <= MAXP);
        if (grads) {
            EXPECT_OK(bp_net_get_grad(net, l, BP_WEIGHT, dst + off, nw));
            EXPECT_OK(bp_net_get_grad(net, l, BP_BIAS, dst + off + nw, sp.n_out));
        } else {
            EXPECT_OK(bp_net_get_param(net, l, BP_WEIGHT, dst + off, nw));
            EXPECT_OK(bp_net_get_param(net, l, BP_BIAS, dst + off + nw, sp.n_out));
        }
        off += nw + sp.n_out;
    }
    return off;
}

#define EXPECT_NET_SAME(net, before, grads)                                               \
    do {                                                                                  \
        float after_[MAXP];                                                               \
        size_t n_ = snap_net((net), after_, (grads));                                     \
        ck_assert_msg(memcmp((before), after_, n_ * sizeof(float)) == 0,                  \
                      "line %d: %s of the net changed by a failed call", __LINE__,        \
                      (grads) ? "gradients" : "parameters");                              \
    } while (0)

#define EXPECT_BYTES_SAME(a, b, n, what) \
    ck_assert_msg(memcmp((a), (b), (n)) == 0, "line %d: %s changed by a failed call", __LINE__, what)

static const float g_X[MAXB * N_IN] = {0.5f, -1.0f, 2.0f, 1.5f, 0.25f, -0.75f,
                                       -2.0f, 1.0f, 0.0f, 0.3f, 0.6f, -0.9f};
static const int32_t g_labels[MAXB] = {0, 2, 1, 2};
static const float g_T[MAXB * N_OUT] = {0.1f, 0.9f, 0.5f, 1.0f, 0.0f, 0.3f,
                                        0.7f, 0.2f, 0.4f, 0.0f, 1.0f, 0.6f};

/* ------------------------------------------------------ status and errors */

START_TEST(test_status_str)
{
    static const bp_status all[] = {BP_OK,      BP_EINVAL,       BP_ENOMEM, BP_EIO, BP_EFORMAT,
                                    BP_ENUMERIC, BP_EUNSUPPORTED, BP_ESTATE};
    size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++) {
        const char *s = bp_status_str(all[i]);
        ck_assert_msg(s != NULL && s[0] != '\0', "bp_status_str(%d) empty", (int)all[i]);
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(strcmp(s, bp_status_str(all[j])) != 0,
                          "bp_status_str(%d) == bp_status_str(%d) = \"%s\"", (int)all[i],
                          (int)all[j], s);
    }
    static const int unknown[] = {99, -1, (int)BP_ESTATE + 1, INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = bp_status_str((bp_status)unknown[i]);
        ck_assert_msg(s != NULL && s[0] != '\0' && strlen(s) < 200,
                      "bp_status_str(%d) is not a sane string", unknown[i]);
        ck_assert_msg(strcmp(s, bp_status_str(BP_OK)) != 0,
                      "bp_status_str(%d) claims success", unknown[i]);
    }
}
END_TEST

static void *thread_fresh(void *arg)
{
    char *out = arg;
    const char *m = bp_last_error();
    /* "Empty string if none" in a thread that never failed. */
    snprintf(out, 256, "%s", m ? m : "(NULL)");
    bp_status s = bp_ctx_set_threads(NULL, 1);
    snprintf(out + 256, 256, "%d|%s", (int)s, bp_last_error());
    return NULL;
}

/* The message is per thread: a new thread starts with "", and its failure
 * does not overwrite the main thread's message. */
START_TEST(test_last_error_per_thread)
{
    ck_assert_int_eq(bp_optim_config_default(NULL, BP_OPTIM_ADAM), BP_EINVAL);
    char mine[512];
    snprintf(mine, sizeof mine, "%s", bp_last_error());
    ck_assert(mine[0] != '\0');
    char out[512] = {0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, thread_fresh, out), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(out[0] == '\0', "new thread's bp_last_error() is \"%s\", not \"\"", out);
    ck_assert_msg(strncmp(out + 256, "1|", 2) == 0 && out[258] != '\0',
                  "failure in the thread gave \"%s\"", out + 256);
    ck_assert_str_eq(bp_last_error(), mine);
}
END_TEST

/* ----------------------------------------------------------------- context */

START_TEST(test_ctx)
{
    bp_ctx *ctx = SENT(bp_ctx);
    EXPECT_ERR(bp_ctx_create(NULL, 1), BP_EINVAL, "ctx");
    EXPECT_ERR(bp_ctx_create(&ctx, -1), BP_EINVAL, "n_threads|thread");
    ck_assert_ptr_eq(ctx, SENT(bp_ctx));
    EXPECT_ERR(bp_ctx_create(&ctx, INT_MIN), BP_EINVAL, "n_threads|thread");
    ck_assert_ptr_eq(ctx, SENT(bp_ctx));
    bp_ctx_destroy(NULL);

    EXPECT_OK(bp_ctx_create(&ctx, 2));
    int before = bp_ctx_threads(ctx);
    EXPECT_ERR(bp_ctx_set_threads(NULL, 1), BP_EINVAL, "ctx");
    EXPECT_ERR(bp_ctx_set_threads(ctx, 0), BP_EINVAL, "n_threads|thread");
    EXPECT_ERR(bp_ctx_set_threads(ctx, -3), BP_EINVAL, "n_threads|thread");
    ck_assert_int_eq(bp_ctx_threads(ctx), before);

    bp_topology_info info, copy;
    memset(&info, 0x5A, sizeof info);
    memcpy(&copy, &info, sizeof info);
    EXPECT_ERR(bp_ctx_topology(NULL, &info), BP_EINVAL, "ctx");
    EXPECT_BYTES_SAME(&info, &copy, sizeof info, "info");
    EXPECT_ERR(bp_ctx_topology(ctx, NULL), BP_EINVAL, "info");
    bp_ctx_destroy(ctx);
}
END_TEST

/* Getters that cannot return a status: a NULL handle must not crash and
 * gives the neutral value. (Not spelled out in the header; a crash here is
 * reported as a robustness issue.) */
START_TEST(test_getters_null)
{
    ck_assert_int_le(bp_ctx_threads(NULL), 0);
    ck_assert_uint_eq(bp_net_n_layers(NULL), 0);
    ck_assert_uint_eq(bp_net_n_in(NULL), 0);
    ck_assert_uint_eq(bp_net_n_out(NULL), 0);
    ck_assert_uint_eq(bp_net_max_batch(NULL), 0);
    ck_assert_uint_eq(bp_net_n_params(NULL), 0);
    (void)bp_net_head(NULL);
    (void)bp_optim_lr(NULL);
    ck_assert_uint_eq(bp_optim_steps(NULL), 0);
    ck_assert_uint_eq(bp_optim_n_slots(NULL), 0);
    ck_assert_uint_eq(bp_dataset_size(NULL), 0);
    ck_assert_uint_eq(bp_dataset_n_features(NULL), 0);
    ck_assert_ptr_null(bp_dataset_features(NULL));
    ck_assert_ptr_null(bp_dataset_labels(NULL));
    ck_assert_ptr_null(bp_dataset_targets(NULL));
    bp_net_destroy(NULL);
    bp_optim_destroy(NULL);
    bp_dataset_destroy(NULL);
    bp_ctx_destroy(NULL);
}
END_TEST

/* ---------------------------------------------------------- bp_net_create */

START_TEST(test_net_create_null)
{
    bp_ctx *ctx;
    EXPECT_OK(bp_ctx_create(&ctx, 1));
    bp_layer_spec layers[2], copy[2];
    memcpy(layers, g_layers, sizeof layers);
    memcpy(copy, layers, sizeof copy);
    bp_net *net = SENT(bp_net);
    EXPECT_ERR(bp_net_create(NULL, ctx, 3, 2, layers, BP_HEAD_MSE, 4), BP_EINVAL, "net");
    EXPECT_ERR(bp_net_create(&net, NULL, 3, 2, layers, BP_HEAD_MSE, 4), BP_EINVAL, "ctx");
    ck_assert_ptr_eq(net, SENT(bp_net));
    EXPECT_ERR(bp_net_create(&net, ctx, 3, 2, NULL, BP_HEAD_MSE, 4), BP_EINVAL, "layers");
    ck_assert_ptr_eq(net, SENT(bp_net));
    EXPECT_BYTES_SAME(layers, copy, sizeof layers, "layers");
    bp_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_net_create_zero)
{
    bp_ctx *ctx;
    EXPECT_OK(bp_ctx_create(&ctx, 1));
    bp_layer_spec layers[2], copy[2];
    memcpy(layers, g_layers, sizeof layers);
    memcpy(copy, layers, sizeof copy);
    bp_net *net = SENT(bp_net);
    EXPECT_ERR(bp_net_create(&net, ctx, 0, 2, layers, BP_HEAD_MSE, 4), BP_EINVAL, "n_in");
    EXPECT_ERR(bp_net_create(&net, ctx, 3, 0, layers, BP_HEAD_MSE, 4), BP_EINVAL, "n_layers|layers");
    EXPECT_ERR(bp_net_create(&net, ctx, 3, 2, layers, BP_HEAD_MSE, 0), BP_EINVAL, "max_batch|batch");
    layers[0].n_out = 0;
    memcpy(copy, layers, sizeof copy);
    EXPECT_ERR(bp_net_create(&net, ctx, 3, 2, layers, BP_HEAD_MSE, 4), BP_EINVAL, "n_out");
    EXPECT_BYTES_SAME(layers, copy, sizeof layers, "layers");
    layers[0].n_out = 4;
    layers[1].n_out = 0;
    EXPECT_ERR(bp_net_create(&net, ctx, 3, 2, layers, BP_HEAD_SOFTMAX_CE, 4), BP_EINVAL, "n_out");
    ck_assert_ptr_eq(net, SENT(bp_net));
    bp_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_net_create_enums)
{
    bp_ctx *ctx;
    EXPECT_OK(bp_ctx_create(&ctx, 1));
    bp_layer_spec layers[2];
    bp_net *net = SENT(bp_net);
    memcpy(layers, g_layers, sizeof layers);
    layers[1].activation = (bp_activation)99;
    EXPECT_ERR(bp_net_create(&net, ctx, 3, 2, layers, BP_HEAD_MSE, 4), BP_EINVAL, "activation");
    layers[1].activation = (bp_activation)-1;
    EXPECT_ERR(bp_net_create(&net, ctx, 3, 2, layers, BP_HEAD_MSE, 4), BP_EINVAL, "activation");
    memcpy(layers, g_layers, sizeof layers);
    layers[0].activation = (bp_activation)(BP_ACT_GELU + 1);
    EXPECT_ERR(bp_net_create(&net, ctx, 3, 2, layers, BP_HEAD_MSE, 4), BP_EINVAL, "activation");
    memcpy(layers, g_layers, sizeof layers);
    EXPECT_ERR(bp_net_create(&net, ctx, 3, 2, layers, (bp_head)99, 4), BP_EINVAL, "head");
    EXPECT_ERR(bp_net_create(&net, ctx, 3, 2, layers, (bp_head)-1, 4), BP_EINVAL, "head");
    ck_assert_ptr_eq(net, SENT(bp_net));
    bp_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_net_create_leaky_alpha)
{
    bp_ctx *ctx;
    EXPECT_OK(bp_ctx_create(&ctx, 1));
    bp_layer_spec layers[2];
    bp_net *net = SENT(bp_net);
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        memcpy(layers, g_layers, sizeof layers);
        layers[0].activation = BP_ACT_LEAKY_RELU;
        layers[0].alpha = bad[i];
        EXPECT_ERR(bp_net_create(&net, ctx, 3, 2, layers, BP_HEAD_MSE, 4), BP_EINVAL, "alpha");
        ck_assert_ptr_eq(net, SENT(bp_net));
    }
    /* alpha is ignored by other activations, so a NaN there is fine. */
    memcpy(layers, g_layers, sizeof layers);
    layers[0].alpha = NAN;
    layers[1].alpha = INFINITY;
    EXPECT_OK(bp_net_create(&net, ctx, 3, 2, layers, BP_HEAD_MSE, 4));
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
}
END_TEST

/* Sizes whose products overflow size_t (or are absurdly large): rejected
 * with BP_EINVAL or BP_ENOMEM, never a crash or a tiny allocation. */
START_TEST(test_net_create_overflow)
{
    bp_ctx *ctx;
    EXPECT_OK(bp_ctx_create(&ctx, 1));
    bp_net *net = SENT(bp_net);
    bp_layer_spec l1[1] = {{4, BP_ACT_RELU, 0.0f}};
    EXPECT_ERR2(bp_net_create(&net, ctx, SIZE_MAX / 2, 1, l1, BP_HEAD_MSE, 4), BP_EINVAL,
                BP_ENOMEM, NULL);
    EXPECT_ERR2(bp_net_create(&net, ctx, SIZE_MAX, 1, l1, BP_HEAD_MSE, 1), BP_EINVAL,
                BP_ENOMEM, NULL);
    EXPECT_ERR2(bp_net_create(&net, ctx, 3, 1, l1, BP_HEAD_MSE, SIZE_MAX), BP_EINVAL,
                BP_ENOMEM, NULL);
    EXPECT_ERR2(bp_net_create(&net, ctx, 3, 1, l1, BP_HEAD_MSE, SIZE_MAX / 4), BP_EINVAL,
                BP_ENOMEM, NULL);
    bp_layer_spec l2[2] = {{SIZE_MAX / 2, BP_ACT_RELU, 0.0f}, {4, BP_ACT_IDENTITY, 0.0f}};
    EXPECT_ERR2(bp_net_create(&net, ctx, 3, 2, l2, BP_HEAD_MSE, 4), BP_EINVAL, BP_ENOMEM, NULL);
    l2[0].n_out = SIZE_MAX / 3;
    EXPECT_ERR2(bp_net_create(&net, ctx, 3, 2, l2, BP_HEAD_MSE, 4), BP_EINVAL, BP_ENOMEM, NULL);
    /* 2^62 floats: no overflow in the float count, but 2^64 bytes. */
    l2[0].n_out = (size_t)1 << 31;
    EXPECT_ERR2(bp_net_create(&net, ctx, (size_t)1 << 31, 2, l2, BP_HEAD_MSE, 4), BP_EINVAL,
                BP_ENOMEM, NULL);
    /* (A size that fits size_t but cannot be allocated is not tried: ASan
     * aborts on allocations over 1 TiB unless allocator_may_return_null=1,
     * and with vm.overcommit_memory=1 it might even succeed.) */
    ck_assert_ptr_eq(net, SENT(bp_net));
    bp_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------- net, other calls */

START_TEST(test_net_layer_init)
{
    fx f;
    fx_open(&f);
    bp_layer_spec sp, spc;
    memset(&sp, 0x33, sizeof sp);
    memcpy(&spc, &sp, sizeof sp);
    EXPECT_ERR(bp_net_layer(NULL, 0, &sp), BP_EINVAL, "net");
    EXPECT_ERR(bp_net_layer(f.ce, 2, &sp), BP_EINVAL, "layer");
    EXPECT_ERR(bp_net_layer(f.ce, SIZE_MAX, &sp), BP_EINVAL, "layer");
    EXPECT_BYTES_SAME(&sp, &spc, sizeof sp, "spec");
    EXPECT_ERR(bp_net_layer(f.ce, 0, NULL), BP_EINVAL, "spec");

    float before[MAXP];
    snap_net(f.ce, before, 0);
    EXPECT_ERR(bp_net_init(NULL, BP_INIT_HE_NORMAL, 1), BP_EINVAL, "net");
    EXPECT_ERR(bp_net_init(f.ce, (bp_init)99, 1), BP_EINVAL, "init");
    EXPECT_ERR(bp_net_init(f.ce, (bp_init)-1, 1), BP_EINVAL, "init");
    EXPECT_ERR(bp_net_init(f.ce, (bp_init)(BP_INIT_HE_NORMAL + 1), 1), BP_EINVAL, "init");
    EXPECT_NET_SAME(f.ce, before, 0);

    EXPECT_ERR(bp_net_set_input_grad(NULL, 1), BP_EINVAL, "net");
    fx_close(&f);
}
END_TEST

START_TEST(test_predict_forward)
{
    fx f;
    fx_open(&f);
    float X[MAXB * N_IN + N_IN], Xc[MAXB * N_IN + N_IN];
    memcpy(X, g_X, sizeof g_X);
    memcpy(X + MAXB * N_IN, g_X, N_IN * sizeof(float));
    memcpy(Xc, X, sizeof X);
    float Y[(MAXB + 1) * N_OUT], Yc[(MAXB + 1) * N_OUT];
    memset(Y, 0x7B, sizeof Y);
    memcpy(Yc, Y, sizeof Y);
    float before[MAXP];
    snap_net(f.ce, before, 0);

    EXPECT_ERR(bp_net_predict(NULL, X, 2, Y), BP_EINVAL, "net");
    EXPECT_ERR(bp_net_predict(f.ce, NULL, 2, Y), BP_EINVAL, "X");
    EXPECT_ERR(bp_net_predict(f.ce, X, 2, NULL), BP_EINVAL, "Y");
    EXPECT_ERR(bp_net_predict(f.ce, X, 0, Y), BP_EINVAL, "B");
    EXPECT_ERR(bp_net_predict(f.ce, X, MAXB + 1, Y), BP_EINVAL, "B|max_batch");
    EXPECT_ERR(bp_net_predict(f.ce, X, SIZE_MAX, Y), BP_EINVAL, "B|max_batch");
    EXPECT_BYTES_SAME(Y, Yc, sizeof Y, "Y");

    EXPECT_ERR(bp_net_forward(NULL, X, 2), BP_EINVAL, "net");
    EXPECT_ERR(bp_net_forward(f.ce, NULL, 2), BP_EINVAL, "X");
    EXPECT_ERR(bp_net_forward(f.ce, X, 0), BP_EINVAL, "B");
    EXPECT_ERR(bp_net_forward(f.ce, X, MAXB + 1), BP_EINVAL, "B|max_batch");
    EXPECT_BYTES_SAME(X, Xc, sizeof X, "X");
    EXPECT_NET_SAME(f.ce, before, 0);
    fx_close(&f);
}
END_TEST

START_TEST(test_backward_state)
{
    fx f;
    fx_open(&f);
    float loss = 42.0f;
    float g0[MAXP];
    snap_net(f.ce, g0, 1);
    EXPECT_ERR(bp_net_backward(NULL, g_labels, NULL, &loss), BP_EINVAL, "net");
    /* Before any forward: out of order. */
    EXPECT_ERR(bp_net_backward(f.ce, g_labels, NULL, &loss), BP_ESTATE, NULL);
    EXPECT_ERR(bp_net_backward(f.mse, NULL, g_T, &loss), BP_ESTATE, NULL);
    /* A failed forward does not make backward legal. */
    EXPECT_ERR(bp_net_forward(f.bce, g_X, 0), BP_EINVAL, "B");
    EXPECT_ERR(bp_net_backward(f.bce, NULL, g_T, &loss), BP_ESTATE, NULL);
    ck_assert_float_eq(loss, 42.0f);
    EXPECT_NET_SAME(f.ce, g0, 1);
    fx_close(&f);
}
END_TEST

START_TEST(test_backward_labels_targets)
{
    fx f;
    fx_open(&f);
    const size_t B = 3;
    float loss;
    /* softmax-CE: a good backward first, so gradients are non-zero. */
    EXPECT_OK(bp_net_forward(f.ce, g_X, B));
    EXPECT_OK(bp_net_backward(f.ce, g_labels, NULL, NULL));
    float g0[MAXP];
    snap_net(f.ce, g0, 1);
    loss = 42.0f;
    int32_t lab[MAXB], labc[MAXB];
    memcpy(lab, g_labels, sizeof lab);
    EXPECT_ERR(bp_net_backward(f.ce, NULL, NULL, &loss), BP_EINVAL, "labels");
    EXPECT_ERR(bp_net_backward(f.ce, lab, g_T, &loss), BP_EINVAL, "targets|labels");
    EXPECT_ERR(bp_net_backward(f.ce, NULL, g_T, &loss), BP_EINVAL, "labels|targets");
    static const int32_t bad[] = {-1, N_OUT, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(lab, g_labels, sizeof lab);
        lab[B - 1] = bad[i]; /* the last row: no partial work may leak out */
        memcpy(labc, lab, sizeof lab);
        EXPECT_ERR(bp_net_backward(f.ce, lab, NULL, &loss), BP_EINVAL, "label");
        EXPECT_BYTES_SAME(lab, labc, sizeof lab, "labels");
    }
    ck_assert_float_eq(loss, 42.0f);
    EXPECT_NET_SAME(f.ce, g0, 1);
    /* Still usable: the good call works after the failures. */
    EXPECT_OK(bp_net_backward(f.ce, g_labels, NULL, &loss));

    /* MSE and BCE take targets, not labels. */
    bp_net *tn[2] = {f.mse, f.bce};
    for (int k = 0; k < 2; k++) {
        EXPECT_OK(bp_net_forward(tn[k], g_X, B));
        EXPECT_OK(bp_net_backward(tn[k], NULL, g_T, NULL));
        snap_net(tn[k], g0, 1);
        loss = 42.0f;
        EXPECT_ERR(bp_net_backward(tn[k], g_labels, NULL, &loss), BP_EINVAL, "targets|labels");
        EXPECT_ERR(bp_net_backward(tn[k], g_labels, g_T, &loss), BP_EINVAL, "labels|targets");
        EXPECT_ERR(bp_net_backward(tn[k], NULL, NULL, &loss), BP_EINVAL, "targets");
        ck_assert_float_eq(loss, 42.0f);
        EXPECT_NET_SAME(tn[k], g0, 1);
    }
    fx_close(&f);
}
END_TEST

START_TEST(test_input_grad_output)
{
    fx f;
    fx_open(&f);
    EXPECT_OK(bp_net_forward(f.ce, g_X, 2));
    EXPECT_OK(bp_net_backward(f.ce, g_labels, NULL, NULL));
    const float *dX = (const float *)SENT(float);
    size_t rows = 777, cols = 888;
    EXPECT_ERR(bp_net_input_grad(NULL, 1, &dX, &rows, &cols), BP_EINVAL, "net");
    EXPECT_ERR(bp_net_input_grad(f.ce, 1, NULL, &rows, &cols), BP_EINVAL, "dX|data");
    EXPECT_ERR(bp_net_input_grad(f.ce, 2, &dX, &rows, &cols), BP_EINVAL, "layer");
    EXPECT_ERR(bp_net_input_grad(f.ce, SIZE_MAX, &dX, &rows, &cols), BP_EINVAL, "layer");
    /* Layer 0 was not enabled: either status is a fair reading. */
    EXPECT_ERR2(bp_net_input_grad(f.ce, 0, &dX, &rows, &cols), BP_EINVAL, BP_ESTATE,
                "input_grad|layer 0|enable");
    ck_assert_ptr_eq(dX, SENT(float));
    ck_assert_uint_eq(rows, 777);
    ck_assert_uint_eq(cols, 888);
    /* Legal once enabled (and after a new backward). */
    EXPECT_OK(bp_net_set_input_grad(f.ce, 1));
    EXPECT_OK(bp_net_forward(f.ce, g_X, 2));
    EXPECT_OK(bp_net_backward(f.ce, g_labels, NULL, NULL));
    EXPECT_OK(bp_net_input_grad(f.ce, 0, &dX, &rows, &cols));
    ck_assert_uint_eq(rows, 2);
    ck_assert_uint_eq(cols, N_IN);

    const float *A = (const float *)SENT(float);
    rows = 777;
    cols = 888;
    EXPECT_ERR(bp_net_output(NULL, 0, &A, &rows, &cols), BP_EINVAL, "net");
    EXPECT_ERR(bp_net_output(f.ce, 0, NULL, &rows, &cols), BP_EINVAL, "A|data");
    EXPECT_ERR(bp_net_output(f.ce, 2, &A, &rows, &cols), BP_EINVAL, "layer");
    ck_assert_ptr_eq(A, SENT(float));
    ck_assert_uint_eq(rows, 777);
    ck_assert_uint_eq(cols, 888);
    fx_close(&f);
}
END_TEST

typedef bp_status (*get_fn)(const bp_net *, size_t, bp_tensor, float *, size_t);
typedef bp_status (*set_fn)(bp_net *, size_t, bp_tensor, const float *, size_t);

/* count: 0, one short, one over, and the other tensor's size. */
static void check_get(get_fn fn, const char *name, bp_net *net)
{
    float dst[MAXP + 8], copy[MAXP + 8];
    memset(dst, 0x44, sizeof dst);
    memcpy(copy, dst, sizeof dst);
    (void)name;
    EXPECT_ERR(fn(NULL, 0, BP_WEIGHT, dst, 12), BP_EINVAL, "net");
    EXPECT_ERR(fn(net, 0, BP_WEIGHT, NULL, 12), BP_EINVAL, "dst|buffer|NULL");
    EXPECT_ERR(fn(net, 2, BP_WEIGHT, dst, 12), BP_EINVAL, "layer");
    EXPECT_ERR(fn(net, SIZE_MAX, BP_BIAS, dst, 4), BP_EINVAL, "layer");
    EXPECT_ERR(fn(net, 0, (bp_tensor)99, dst, 12), BP_EINVAL, "which|tensor");
    EXPECT_ERR(fn(net, 0, (bp_tensor)-1, dst, 12), BP_EINVAL, "which|tensor");
    EXPECT_ERR(fn(net, 0, BP_WEIGHT, dst, 0), BP_EINVAL, "count");
    EXPECT_ERR(fn(net, 0, BP_WEIGHT, dst, 11), BP_EINVAL, "count");
    EXPECT_ERR(fn(net, 0, BP_WEIGHT, dst, 13), BP_EINVAL, "count");
    EXPECT_ERR(fn(net, 0, BP_WEIGHT, dst, 4), BP_EINVAL, "count");
    EXPECT_ERR(fn(net, 1, BP_BIAS, dst, 12), BP_EINVAL, "count");
    EXPECT_ERR(fn(net, 1, BP_BIAS, dst, SIZE_MAX), BP_EINVAL, "count");
    EXPECT_BYTES_SAME(dst, copy, sizeof dst, "dst");
}

static void check_set(set_fn fn, bp_net *net, int grads)
{
    float src[MAXP + 8], copy[MAXP + 8], before[MAXP];
    for (size_t i = 0; i < MAXP + 8; i++)
        src[i] = 100.0f + (float)i;
    memcpy(copy, src, sizeof src);
    snap_net(net, before, grads);
    EXPECT_ERR(fn(NULL, 0, BP_WEIGHT, src, 12), BP_EINVAL, "net");
    EXPECT_ERR(fn(net, 0, BP_WEIGHT, NULL, 12), BP_EINVAL, "src|buffer|NULL");
    EXPECT_ERR(fn(net, 2, BP_WEIGHT, src, 12), BP_EINVAL, "layer");
    EXPECT_ERR(fn(net, 0, (bp_tensor)99, src, 12), BP_EINVAL, "which|tensor");
    EXPECT_ERR(fn(net, 0, BP_WEIGHT, src, 0), BP_EINVAL, "count");
    EXPECT_ERR(fn(net, 0, BP_WEIGHT, src, 11), BP_EINVAL, "count");
    EXPECT_ERR(fn(net, 0, BP_WEIGHT, src, 13), BP_EINVAL, "count");
    EXPECT_ERR(fn(net, 0, BP_BIAS, src, 12), BP_EINVAL, "count");
    EXPECT_ERR(fn(net, 1, BP_BIAS, src, 4), BP_EINVAL, "count");
    EXPECT_BYTES_SAME(src, copy, sizeof src, "src");
    EXPECT_NET_SAME(net, before, grads);
}

START_TEST(test_param_grad_access)
{
    fx f;
    fx_open(&f);
    EXPECT_OK(bp_net_forward(f.ce, g_X, 2));
    EXPECT_OK(bp_net_backward(f.ce, g_labels, NULL, NULL));
    check_get(bp_net_get_param, "get_param", f.ce);
    check_get(bp_net_get_grad, "get_grad", f.ce);
    check_set(bp_net_set_param, f.ce, 0);
    check_set(bp_net_set_grad, f.ce, 1);
    fx_close(&f);
}
END_TEST

START_TEST(test_views)
{
    fx f;
    fx_open(&f);
    typedef bp_status (*view_fn)(const bp_net *, size_t, bp_tensor, const float **, size_t *,
                                 size_t *);
    view_fn fns[2] = {bp_net_param_view, bp_net_grad_view};
    for (int k = 0; k < 2; k++) {
        const float *d = (const float *)SENT(float);
        size_t rows = 777, cols = 888;
        EXPECT_ERR(fns[k](NULL, 0, BP_WEIGHT, &d, &rows, &cols), BP_EINVAL, "net");
        EXPECT_ERR(fns[k](f.ce, 0, BP_WEIGHT, NULL, &rows, &cols), BP_EINVAL, "data");
        EXPECT_ERR(fns[k](f.ce, 2, BP_WEIGHT, &d, &rows, &cols), BP_EINVAL, "layer");
        EXPECT_ERR(fns[k](f.ce, 0, (bp_tensor)99, &d, &rows, &cols), BP_EINVAL, "which|tensor");
        ck_assert_ptr_eq(d, SENT(float));
        ck_assert_uint_eq(rows, 777);
        ck_assert_uint_eq(cols, 888);
        /* rows/cols may be NULL. */
        EXPECT_OK(fns[k](f.ce, 1, BP_BIAS, &d, NULL, NULL));
        ck_assert_ptr_nonnull(d);
    }
    fx_close(&f);
}
END_TEST

/* -------------------------------------------------------------- optimizer */

START_TEST(test_optim_config_default)
{
    bp_optim_config c, cc;
    memset(&c, 0x66, sizeof c);
    memcpy(&cc, &c, sizeof c);
    g_alt_primer = 1; /* the usual primer is this very call */
    EXPECT_ERR(bp_optim_config_default(NULL, BP_OPTIM_SGD), BP_EINVAL, "cfg");
    EXPECT_ERR(bp_optim_config_default(&c, (bp_optim_type)99), BP_EINVAL, "type");
    EXPECT_ERR(bp_optim_config_default(&c, (bp_optim_type)-1), BP_EINVAL, "type");
    g_alt_primer = 0;
    EXPECT_BYTES_SAME(&c, &cc, sizeof c, "cfg");
}
END_TEST

START_TEST(test_optim_create_null)
{
    fx f;
    fx_open(&f);
    bp_optim_config c;
    EXPECT_OK(bp_optim_config_default(&c, BP_OPTIM_ADAM));
    bp_optim *opt = SENT(bp_optim);
    EXPECT_ERR(bp_optim_create(NULL, f.ce, &c), BP_EINVAL, "opt");
    EXPECT_ERR(bp_optim_create(&opt, NULL, &c), BP_EINVAL, "net");
    EXPECT_ERR(bp_optim_create(&opt, f.ce, NULL), BP_EINVAL, "cfg");
    ck_assert_ptr_eq(opt, SENT(bp_optim));
    fx_close(&f);
}
END_TEST

/* Each bad configuration, built from a valid one by one change. */
static void expect_bad_cfg(bp_net *net, const bp_optim_config *c, const char *hint, int line)
{
    bp_optim_config copy;
    memcpy(&copy, c, sizeof copy);
    bp_optim *opt = SENT(bp_optim);
    prime();
    bp_status s = bp_optim_create(&opt, net, c);
    char what[64];
    snprintf(what, sizeof what, "bp_optim_create (config at line %d)", line);
    expect_err_(s, BP_EINVAL, BP_EINVAL, what, hint, line);
    ck_assert_msg(opt == SENT(bp_optim), "line %d: *opt written by a failed create", line);
    ck_assert_msg(memcmp(&copy, c, sizeof copy) == 0, "line %d: cfg changed", line);
}

#define BAD_CFG(base, field_assign, hint)          \
    do {                                           \
        bp_optim_config c_ = (base);               \
        c_.field_assign;                           \
        expect_bad_cfg(f.ce, &c_, hint, __LINE__); \
    } while (0)

START_TEST(test_optim_create_bad_config)
{
    fx f;
    fx_open(&f);
    bp_optim_config sgd, adam, adamw;
    EXPECT_OK(bp_optim_config_default(&sgd, BP_OPTIM_SGD));
    EXPECT_OK(bp_optim_config_default(&adam, BP_OPTIM_ADAM));
    EXPECT_OK(bp_optim_config_default(&adamw, BP_OPTIM_ADAMW));
    BAD_CFG(sgd, type = (bp_optim_type)99, "type");
    BAD_CFG(sgd, schedule = (bp_schedule)99, "schedule");
    BAD_CFG(adam, schedule = (bp_schedule)-1, "schedule");
    BAD_CFG(sgd, lr = -0.01f, "lr");
    BAD_CFG(adam, lr = -1e-6f, "lr");
    BAD_CFG(adam, beta1 = -0.1f, "beta1|beta");
    BAD_CFG(adam, beta1 = 1.0f, "beta1|beta");
    BAD_CFG(adamw, beta1 = 1.5f, "beta1|beta");
    BAD_CFG(adam, beta2 = -0.001f, "beta2|beta");
    BAD_CFG(adam, beta2 = 1.0f, "beta2|beta");
    BAD_CFG(adamw, beta2 = 1.0f, "beta2|beta");
    BAD_CFG(adam, eps = -1e-8f, "eps");
    BAD_CFG(adamw, eps = -1.0f, "eps");
    BAD_CFG(sgd, nesterov = 1, "nesterov|momentum");
    {
        bp_optim_config c = sgd;
        c.schedule = BP_SCHED_STEP;
        c.gamma = 0.5f;
        c.step_size = 0;
        expect_bad_cfg(f.ce, &c, "step_size", __LINE__);
        c.type = BP_OPTIM_ADAM;
        expect_bad_cfg(f.ce, &c, "step_size", __LINE__);
    }
    {
        bp_optim_config c = adamw;
        c.schedule = BP_SCHED_COSINE;
        c.warmup_steps = 10;
        c.total_steps = 9;
        expect_bad_cfg(f.ce, &c, "total_steps|warmup", __LINE__);
        c.warmup_steps = UINT64_MAX;
        c.total_steps = 0;
        expect_bad_cfg(f.ce, &c, "total_steps|warmup", __LINE__);
    }
    /* The boundaries themselves are valid (eps = 0 is not tested: the
     * header leaves it open, and rejecting it avoids 0/0). */
    bp_optim *opt;
    bp_optim_config c = adam;
    c.beta1 = 0.0f;
    c.beta2 = 0.0f;
    c.lr = 0.0f;
    EXPECT_OK(bp_optim_create(&opt, f.ce, &c));
    bp_optim_destroy(opt);
    c = sgd;
    c.momentum = 0.5f;
    c.nesterov = 1;
    c.schedule = BP_SCHED_COSINE;
    c.warmup_steps = 5;
    c.total_steps = 5;
    EXPECT_OK(bp_optim_create(&opt, f.ce, &c));
    bp_optim_destroy(opt);
    c = sgd;
    c.schedule = BP_SCHED_STEP;
    c.step_size = 1;
    c.gamma = 0.1f;
    EXPECT_OK(bp_optim_create(&opt, f.ce, &c));
    bp_optim_destroy(opt);
    fx_close(&f);
}
END_TEST

/* Beyond the header's explicit list: non-finite hyper-parameters would
 * silently turn every parameter into NaN, so they must be rejected too. */
START_TEST(test_optim_create_nonfinite_config)
{
    fx f;
    fx_open(&f);
    bp_optim_config sgd, adam;
    EXPECT_OK(bp_optim_config_default(&sgd, BP_OPTIM_SGD));
    EXPECT_OK(bp_optim_config_default(&adam, BP_OPTIM_ADAM));
    BAD_CFG(sgd, lr = NAN, "lr");
    BAD_CFG(adam, lr = INFINITY, "lr");
    BAD_CFG(adam, beta1 = NAN, "beta1|beta");
    BAD_CFG(adam, eps = NAN, "eps");
    fx_close(&f);
}
END_TEST

typedef struct ostate {
    float s[2][MAXP];
    uint64_t steps;
} ostate;

/* All state slots of the optimizer on the 3-4-3 net, in tensor order. */
static void snap_opt(const bp_optim *opt, ostate *o)
{
    static const size_t sz[4] = {12, 4, 12, 3};
    memset(o, 0, sizeof *o);
    for (size_t s = 0; s < bp_optim_n_slots(opt); s++) {
        size_t off = 0;
        for (int k = 0; k < 4; k++) {
            EXPECT_OK(bp_optim_get_state(opt, (size_t)k / 2, (bp_tensor)(k % 2), s,
                                         o->s[s] + off, sz[k]));
            off += sz[k];
        }
    }
    o->steps = bp_optim_steps(opt);
}

#define EXPECT_OPT_SAME(opt, before)                                                   \
    do {                                                                               \
        ostate a_;                                                                     \
        snap_opt((opt), &a_);                                                          \
        ck_assert_msg(memcmp(&a_, (before), sizeof a_) == 0,                           \
                      "line %d: optimizer state or step count changed by a failed call", \
                      __LINE__);                                                       \
    } while (0)

START_TEST(test_optim_calls)
{
    fx f;
    fx_open(&f);
    bp_optim_config c;
    EXPECT_OK(bp_optim_config_default(&c, BP_OPTIM_ADAM));
    bp_optim *opt;
    EXPECT_OK(bp_optim_create(&opt, f.ce, &c));
    EXPECT_OK(bp_train_step(f.ce, opt, g_X, g_labels, NULL, 3, NULL));
    ostate before;
    snap_opt(opt, &before);
    float pbefore[MAXP];
    snap_net(f.ce, pbefore, 0);

    EXPECT_ERR(bp_optim_step(NULL), BP_EINVAL, "opt");
    EXPECT_ERR(bp_optim_set_steps(NULL, 3), BP_EINVAL, "opt");

    float buf[16], bufc[16];
    memset(buf, 0x21, sizeof buf);
    memcpy(bufc, buf, sizeof buf);
    EXPECT_ERR(bp_optim_get_state(NULL, 0, BP_WEIGHT, 0, buf, 12), BP_EINVAL, "opt");
    EXPECT_ERR(bp_optim_get_state(opt, 0, BP_WEIGHT, 0, NULL, 12), BP_EINVAL, "dst|buffer|NULL");
    EXPECT_ERR(bp_optim_get_state(opt, 2, BP_WEIGHT, 0, buf, 12), BP_EINVAL, "layer");
    EXPECT_ERR(bp_optim_get_state(opt, 0, (bp_tensor)99, 0, buf, 12), BP_EINVAL, "which|tensor");
    EXPECT_ERR(bp_optim_get_state(opt, 0, BP_WEIGHT, 2, buf, 12), BP_EINVAL, "slot");
    EXPECT_ERR(bp_optim_get_state(opt, 0, BP_WEIGHT, SIZE_MAX, buf, 12), BP_EINVAL, "slot");
    EXPECT_ERR(bp_optim_get_state(opt, 0, BP_WEIGHT, 0, buf, 11), BP_EINVAL, "count");
    EXPECT_ERR(bp_optim_get_state(opt, 0, BP_BIAS, 1, buf, 12), BP_EINVAL, "count");
    EXPECT_ERR(bp_optim_get_state(opt, 0, BP_BIAS, 1, buf, 0), BP_EINVAL, "count");
    EXPECT_BYTES_SAME(buf, bufc, sizeof buf, "dst");

    for (int i = 0; i < 16; i++)
        buf[i] = (float)i;
    memcpy(bufc, buf, sizeof buf);
    EXPECT_ERR(bp_optim_set_state(NULL, 0, BP_WEIGHT, 0, buf, 12), BP_EINVAL, "opt");
    EXPECT_ERR(bp_optim_set_state(opt, 0, BP_WEIGHT, 0, NULL, 12), BP_EINVAL, "src|buffer|NULL");
    EXPECT_ERR(bp_optim_set_state(opt, 2, BP_WEIGHT, 0, buf, 12), BP_EINVAL, "layer");
    EXPECT_ERR(bp_optim_set_state(opt, 1, (bp_tensor)99, 0, buf, 12), BP_EINVAL, "which|tensor");
    EXPECT_ERR(bp_optim_set_state(opt, 0, BP_WEIGHT, 2, buf, 12), BP_EINVAL, "slot");
    EXPECT_ERR(bp_optim_set_state(opt, 1, BP_WEIGHT, 1, buf, 13), BP_EINVAL, "count");
    EXPECT_ERR(bp_optim_set_state(opt, 1, BP_BIAS, 0, buf, 4), BP_EINVAL, "count");
    EXPECT_BYTES_SAME(buf, bufc, sizeof buf, "src");
    EXPECT_OPT_SAME(opt, &before);
    EXPECT_NET_SAME(f.ce, pbefore, 0);
    bp_optim_destroy(opt);

    /* Plain SGD has no slots at all: slot 0 is out of range. */
    EXPECT_OK(bp_optim_config_default(&c, BP_OPTIM_SGD));
    EXPECT_OK(bp_optim_create(&opt, f.ce, &c));
    ck_assert_uint_eq(bp_optim_n_slots(opt), 0);
    EXPECT_ERR(bp_optim_get_state(opt, 0, BP_WEIGHT, 0, buf, 12), BP_EINVAL, "slot");
    EXPECT_ERR(bp_optim_set_state(opt, 0, BP_WEIGHT, 0, buf, 12), BP_EINVAL, "slot");
    bp_optim_destroy(opt);
    /* SGD momentum has one: slot 1 is out of range. */
    c.momentum = 0.9f;
    EXPECT_OK(bp_optim_create(&opt, f.ce, &c));
    EXPECT_ERR(bp_optim_get_state(opt, 0, BP_BIAS, 1, buf, 4), BP_EINVAL, "slot");
    bp_optim_destroy(opt);
    fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------ train step */

START_TEST(test_train_step_args)
{
    fx f;
    fx_open(&f);
    bp_optim_config c;
    EXPECT_OK(bp_optim_config_default(&c, BP_OPTIM_SGD));
    c.momentum = 0.9f;
    bp_optim *opt, *opt_mse;
    EXPECT_OK(bp_optim_create(&opt, f.ce, &c));
    EXPECT_OK(bp_optim_create(&opt_mse, f.mse, &c));
    EXPECT_OK(bp_train_step(f.ce, opt, g_X, g_labels, NULL, 2, NULL));
    ostate ob;
    snap_opt(opt, &ob);
    float pb[MAXP];
    snap_net(f.ce, pb, 0);
    float loss = 42.0f;
    int32_t lab[MAXB];

    EXPECT_ERR(bp_train_step(NULL, opt, g_X, g_labels, NULL, 2, &loss), BP_EINVAL, "net");
    EXPECT_ERR(bp_train_step(f.ce, NULL, g_X, g_labels, NULL, 2, &loss), BP_EINVAL, "opt");
    EXPECT_ERR(bp_train_step(f.ce, opt, NULL, g_labels, NULL, 2, &loss), BP_EINVAL, "X");
    EXPECT_ERR(bp_train_step(f.ce, opt, g_X, g_labels, NULL, 0, &loss), BP_EINVAL, "B");
    EXPECT_ERR(bp_train_step(f.ce, opt, g_X, g_labels, NULL, MAXB + 1, &loss), BP_EINVAL,
               "B|max_batch");
    EXPECT_ERR(bp_train_step(f.ce, opt, g_X, NULL, NULL, 2, &loss), BP_EINVAL, "labels");
    EXPECT_ERR(bp_train_step(f.ce, opt, g_X, g_labels, g_T, 2, &loss), BP_EINVAL,
               "labels|targets");
    memcpy(lab, g_labels, sizeof lab);
    lab[1] = -1;
    EXPECT_ERR(bp_train_step(f.ce, opt, g_X, lab, NULL, 2, &loss), BP_EINVAL, "label");
    lab[1] = N_OUT;
    EXPECT_ERR(bp_train_step(f.ce, opt, g_X, lab, NULL, 2, &loss), BP_EINVAL, "label");
    ck_assert_float_eq(loss, 42.0f);
    EXPECT_NET_SAME(f.ce, pb, 0);
    EXPECT_OPT_SAME(opt, &ob);

    /* MSE net: labels instead of targets. */
    snap_net(f.mse, pb, 0);
    snap_opt(opt_mse, &ob);
    EXPECT_ERR(bp_train_step(f.mse, opt_mse, g_X, g_labels, NULL, 2, &loss), BP_EINVAL,
               "targets|labels");
    EXPECT_ERR(bp_train_step(f.mse, opt_mse, g_X, NULL, NULL, 2, &loss), BP_EINVAL, "targets");
    EXPECT_NET_SAME(f.mse, pb, 0);
    EXPECT_OPT_SAME(opt_mse, &ob);
    bp_optim_destroy(opt);
    bp_optim_destroy(opt_mse);
    fx_close(&f);
}
END_TEST

/* Returns the index of the layer named by "layer N" in msg, or -1. */
static long named_layer(const char *msg)
{
    for (const char *p = msg; *p; p++) {
        if (!ci_prefix(p, "layer", 5))
            continue;
        const char *q = p + 5;
        for (int skip = 0; skip < 3 && *q && !isdigit((unsigned char)*q); skip++)
            q++;
        if (isdigit((unsigned char)*q))
            return strtol(q, NULL, 10);
    }
    return -1;
}

/* Non-finite values in the forward pass: the step is refused, nothing of
 * the net or optimizer moves, and the message names the first layer whose
 * output was not finite. */
START_TEST(test_train_step_nonfinite)
{
    fx f;
    fx_open(&f);
    bp_layer_spec id[2] = {{4, BP_ACT_IDENTITY, 0.0f}, {N_OUT, BP_ACT_IDENTITY, 0.0f}};
    bp_net *net;
    EXPECT_OK(bp_net_create(&net, f.ctx, N_IN, 2, id, BP_HEAD_MSE, MAXB));
    EXPECT_OK(bp_net_init(net, BP_INIT_XAVIER_NORMAL, 9));
    bp_optim_config c;
    EXPECT_OK(bp_optim_config_default(&c, BP_OPTIM_ADAM));
    bp_optim *opt;
    EXPECT_OK(bp_optim_create(&opt, net, &c));
    EXPECT_OK(bp_train_step(net, opt, g_X, NULL, g_T, 3, NULL));
    ostate ob;
    float pb[MAXP];
    float loss = 42.0f;

    /* NaN in X: layer 0 is the first non-finite one. */
    float X[MAXB * N_IN], Xc[MAXB * N_IN];
    memcpy(X, g_X, sizeof X);
    X[4] = NAN;
    memcpy(Xc, X, sizeof X);
    snap_opt(opt, &ob);
    snap_net(net, pb, 0);
    EXPECT_ERR(bp_train_step(net, opt, X, NULL, g_T, 3, &loss), BP_ENUMERIC, "layer");
    ck_assert_msg(named_layer(bp_last_error()) == 0, "expected layer 0 named: \"%s\"",
                  bp_last_error());
    EXPECT_BYTES_SAME(X, Xc, sizeof X, "X");
    EXPECT_NET_SAME(net, pb, 0);
    EXPECT_OPT_SAME(opt, &ob);

    /* Layer 0 finite (|A0| ~ 1e20), layer 1 overflows: W1 = 1e30. */
    float W1[N_OUT * 4];
    for (int i = 0; i < N_OUT * 4; i++)
        W1[i] = 1e30f;
    EXPECT_OK(bp_net_set_param(net, 1, BP_WEIGHT, W1, N_OUT * 4));
    float W0[4 * N_IN];
    for (int i = 0; i < 4 * N_IN; i++)
        W0[i] = 1e20f;
    EXPECT_OK(bp_net_set_param(net, 0, BP_WEIGHT, W0, 4 * N_IN));
    float Xp[MAXB * N_IN];
    for (int i = 0; i < MAXB * N_IN; i++)
        Xp[i] = 1.0f;
    snap_opt(opt, &ob);
    snap_net(net, pb, 0);
    EXPECT_ERR(bp_train_step(net, opt, Xp, NULL, g_T, 2, &loss), BP_ENUMERIC, "layer");
    ck_assert_msg(named_layer(bp_last_error()) == 1, "expected layer 1 named: \"%s\"",
                  bp_last_error());
    EXPECT_NET_SAME(net, pb, 0);
    EXPECT_OPT_SAME(opt, &ob);
    ck_assert_float_eq(loss, 42.0f);

    /* The same through forward + backward directly. */
    EXPECT_OK(bp_net_forward(net, Xp, 2));
    EXPECT_ERR(bp_net_backward(net, NULL, g_T, &loss), BP_ENUMERIC, "layer");
    ck_assert_msg(named_layer(bp_last_error()) == 1, "expected layer 1 named: \"%s\"",
                  bp_last_error());
    EXPECT_NET_SAME(net, pb, 0);

    /* Softmax-CE too: overflowing logits in the last layer. */
    bp_net *ce;
    EXPECT_OK(bp_net_create(&ce, f.ctx, N_IN, 2, id, BP_HEAD_SOFTMAX_CE, MAXB));
    EXPECT_OK(bp_net_set_param(ce, 0, BP_WEIGHT, W0, 4 * N_IN));
    EXPECT_OK(bp_net_set_param(ce, 1, BP_WEIGHT, W1, N_OUT * 4));
    bp_optim *opt2;
    EXPECT_OK(bp_optim_create(&opt2, ce, &c));
    snap_net(ce, pb, 0);
    snap_opt(opt2, &ob);
    EXPECT_ERR(bp_train_step(ce, opt2, Xp, g_labels, NULL, 2, &loss), BP_ENUMERIC, "layer");
    EXPECT_NET_SAME(ce, pb, 0);
    EXPECT_OPT_SAME(opt2, &ob);
    bp_optim_destroy(opt2);
    bp_net_destroy(ce);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    fx_close(&f);
}
END_TEST

/* ----------------------------------------------------------------- dataset */

START_TEST(test_dataset_create)
{
    float X[8 * N_IN], Xc[8 * N_IN], T[8 * N_OUT], Tc[8 * N_OUT];
    int32_t L[8], Lc[8];
    for (int i = 0; i < 8 * N_IN; i++)
        X[i] = (float)i;
    for (int i = 0; i < 8 * N_OUT; i++)
        T[i] = 0.5f;
    for (int i = 0; i < 8; i++)
        L[i] = i % N_OUT;
    memcpy(Xc, X, sizeof X);
    memcpy(Tc, T, sizeof T);
    memcpy(Lc, L, sizeof L);
    bp_dataset *ds = SENT(bp_dataset);
    EXPECT_ERR(bp_dataset_create(NULL, 8, N_IN, X, L, NULL, 0), BP_EINVAL, "ds");
    EXPECT_ERR(bp_dataset_create(&ds, 8, N_IN, NULL, L, NULL, 0), BP_EINVAL, "X");
    EXPECT_ERR(bp_dataset_create(&ds, 0, N_IN, X, L, NULL, 0), BP_EINVAL, "n");
    EXPECT_ERR(bp_dataset_create(&ds, 8, 0, X, L, NULL, 0), BP_EINVAL, "n_features");
    EXPECT_ERR(bp_dataset_create(&ds, 8, N_IN, X, L, T, N_OUT), BP_EINVAL, "labels|targets");
    EXPECT_ERR(bp_dataset_create(&ds, 8, N_IN, X, NULL, NULL, 0), BP_EINVAL, "labels|targets");
    EXPECT_ERR(bp_dataset_create(&ds, 8, N_IN, X, NULL, NULL, N_OUT), BP_EINVAL,
               "labels|targets");
    EXPECT_ERR(bp_dataset_create(&ds, 8, N_IN, X, NULL, T, 0), BP_EINVAL, "n_targets");
    EXPECT_ERR(bp_dataset_create(&ds, 8, N_IN, X, L, NULL, N_OUT), BP_EINVAL, "n_targets");
    /* Overflowing sizes must be caught before X is read. */
    EXPECT_ERR2(bp_dataset_create(&ds, SIZE_MAX / 2, 4, X, L, NULL, 0), BP_EINVAL, BP_ENOMEM,
                NULL);
    EXPECT_ERR2(bp_dataset_create(&ds, 4, SIZE_MAX / 2, X, L, NULL, 0), BP_EINVAL, BP_ENOMEM,
                NULL);
    EXPECT_ERR2(bp_dataset_create(&ds, SIZE_MAX / 8, 1, X, NULL, T, 4), BP_EINVAL, BP_ENOMEM,
                NULL);
    EXPECT_ERR2(bp_dataset_create(&ds, 2, 1, X, NULL, T, SIZE_MAX / 2), BP_EINVAL, BP_ENOMEM,
                NULL);
    ck_assert_ptr_eq(ds, SENT(bp_dataset));
    EXPECT_BYTES_SAME(X, Xc, sizeof X, "X");
    EXPECT_BYTES_SAME(T, Tc, sizeof T, "targets");
    EXPECT_BYTES_SAME(L, Lc, sizeof L, "labels");
}
END_TEST

typedef struct dsfx {
    bp_dataset *lab;    /* labels, N_IN features */
    bp_dataset *tgt;    /* targets (N_OUT), N_IN features */
    bp_dataset *wide;   /* labels, N_IN + 1 features */
    bp_dataset *tgt2;   /* targets (N_OUT + 1), N_IN features */
    bp_dataset *badlab; /* labels all == N_OUT */
} dsfx;

static void ds_open(dsfx *d)
{
    float X[8 * (N_IN + 1)], T[8 * (N_OUT + 1)];
    int32_t L[8], BL[8];
    tu_rng rng;
    tu_seed(&rng, 77);
    tu_fill(&rng, X, 8 * (N_IN + 1), -1.0, 1.0);
    tu_fill(&rng, T, 8 * (N_OUT + 1), 0.0, 1.0);
    for (int i = 0; i < 8; i++) {
        L[i] = i % N_OUT;
        BL[i] = N_OUT;
    }
    EXPECT_OK(bp_dataset_create(&d->lab, 8, N_IN, X, L, NULL, 0));
    EXPECT_OK(bp_dataset_create(&d->tgt, 8, N_IN, X, NULL, T, N_OUT));
    EXPECT_OK(bp_dataset_create(&d->wide, 8, N_IN + 1, X, L, NULL, 0));
    EXPECT_OK(bp_dataset_create(&d->tgt2, 8, N_IN, X, NULL, T, N_OUT + 1));
    EXPECT_OK(bp_dataset_create(&d->badlab, 8, N_IN, X, BL, NULL, 0));
}

static void ds_close(dsfx *d)
{
    bp_dataset_destroy(d->lab);
    bp_dataset_destroy(d->tgt);
    bp_dataset_destroy(d->wide);
    bp_dataset_destroy(d->tgt2);
    bp_dataset_destroy(d->badlab);
}

START_TEST(test_train_epoch_args)
{
    fx f;
    dsfx d;
    fx_open(&f);
    ds_open(&d);
    bp_optim_config c;
    EXPECT_OK(bp_optim_config_default(&c, BP_OPTIM_ADAM));
    bp_optim *oce, *omse;
    EXPECT_OK(bp_optim_create(&oce, f.ce, &c));
    EXPECT_OK(bp_optim_create(&omse, f.mse, &c));
    ostate ob;
    float pb[MAXP];
    snap_opt(oce, &ob);
    snap_net(f.ce, pb, 0);
    float ml = 42.0f;
    EXPECT_ERR(bp_train_epoch(NULL, oce, d.lab, 2, 1, 0, &ml), BP_EINVAL, "net");
    EXPECT_ERR(bp_train_epoch(f.ce, NULL, d.lab, 2, 1, 0, &ml), BP_EINVAL, "opt");
    EXPECT_ERR(bp_train_epoch(f.ce, oce, NULL, 2, 1, 0, &ml), BP_EINVAL, "ds");
    EXPECT_ERR(bp_train_epoch(f.ce, oce, d.lab, 0, 1, 0, &ml), BP_EINVAL, "batch");
    EXPECT_ERR(bp_train_epoch(f.ce, oce, d.lab, MAXB + 1, 1, 0, &ml), BP_EINVAL,
               "batch|max_batch");
    EXPECT_ERR(bp_train_epoch(f.ce, oce, d.wide, 2, 1, 0, &ml), BP_EINVAL,
               "n_features|n_in|features|width");
    EXPECT_ERR(bp_train_epoch(f.ce, oce, d.tgt, 2, 1, 0, &ml), BP_EINVAL, "labels|targets");
    EXPECT_ERR(bp_train_epoch(f.ce, oce, d.badlab, 2, 1, 0, &ml), BP_EINVAL, "label");
    EXPECT_NET_SAME(f.ce, pb, 0);
    EXPECT_OPT_SAME(oce, &ob);

    snap_opt(omse, &ob);
    snap_net(f.mse, pb, 0);
    EXPECT_ERR(bp_train_epoch(f.mse, omse, d.lab, 2, 1, 0, &ml), BP_EINVAL, "labels|targets");
    EXPECT_ERR(bp_train_epoch(f.mse, omse, d.tgt2, 2, 1, 0, &ml), BP_EINVAL,
               "n_targets|n_out|targets");
    EXPECT_NET_SAME(f.mse, pb, 0);
    EXPECT_OPT_SAME(omse, &ob);
    ck_assert_float_eq(ml, 42.0f);
    /* The good call works. */
    EXPECT_OK(bp_train_epoch(f.mse, omse, d.tgt, 3, 1, 0, &ml));
    bp_optim_destroy(oce);
    bp_optim_destroy(omse);
    ds_close(&d);
    fx_close(&f);
}
END_TEST

START_TEST(test_evaluate_args)
{
    fx f;
    dsfx d;
    fx_open(&f);
    ds_open(&d);
    float pb[MAXP];
    snap_net(f.ce, pb, 0);
    float loss = 42.0f, acc = 43.0f;
    EXPECT_ERR(bp_evaluate(NULL, d.lab, 2, &loss, &acc), BP_EINVAL, "net");
    EXPECT_ERR(bp_evaluate(f.ce, NULL, 2, &loss, &acc), BP_EINVAL, "ds");
    EXPECT_ERR(bp_evaluate(f.ce, d.lab, 0, &loss, &acc), BP_EINVAL, "batch");
    EXPECT_ERR(bp_evaluate(f.ce, d.lab, MAXB + 1, &loss, &acc), BP_EINVAL, "batch|max_batch");
    EXPECT_ERR(bp_evaluate(f.ce, d.wide, 2, &loss, &acc), BP_EINVAL,
               "n_features|n_in|features|width");
    EXPECT_ERR(bp_evaluate(f.ce, d.tgt, 2, &loss, &acc), BP_EINVAL, "labels|targets");
    EXPECT_ERR(bp_evaluate(f.ce, d.badlab, 2, &loss, &acc), BP_EINVAL, "label");
    EXPECT_ERR(bp_evaluate(f.mse, d.lab, 2, &loss, &acc), BP_EINVAL, "labels|targets");
    EXPECT_ERR(bp_evaluate(f.mse, d.tgt2, 2, &loss, &acc), BP_EINVAL, "n_targets|n_out|targets");
    EXPECT_ERR(bp_evaluate(f.bce, d.lab, 2, &loss, &acc), BP_EINVAL, "labels|targets");
    ck_assert_float_eq(loss, 42.0f);
    ck_assert_float_eq(acc, 43.0f);
    EXPECT_NET_SAME(f.ce, pb, 0);
    /* Either output may be NULL. */
    EXPECT_OK(bp_evaluate(f.ce, d.lab, 3, NULL, NULL));
    EXPECT_OK(bp_evaluate(f.ce, d.lab, 3, &loss, NULL));
    EXPECT_OK(bp_evaluate(f.ce, d.lab, 3, NULL, &acc));
    ds_close(&d);
    fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------- gradcheck */

START_TEST(test_gradcheck_args)
{
    fx f;
    fx_open(&f);
    bp_gradcheck_result r[5], rc[5];
    memset(r, 0x39, sizeof r);
    memcpy(rc, r, sizeof r);
    float pb[MAXP];
    snap_net(f.ce, pb, 0);
    EXPECT_ERR(bp_gradcheck(NULL, g_X, g_labels, NULL, 2, 1e-3, 0, r, 4), BP_EINVAL, "net");
    EXPECT_ERR(bp_gradcheck(f.ce, NULL, g_labels, NULL, 2, 1e-3, 0, r, 4), BP_EINVAL, "X");
    EXPECT_ERR(bp_gradcheck(f.ce, g_X, g_labels, NULL, 2, 1e-3, 0, NULL, 4), BP_EINVAL,
               "results");
    EXPECT_ERR(bp_gradcheck(f.ce, g_X, g_labels, NULL, 2, 1e-3, 0, r, 3), BP_EINVAL,
               "n_results|results");
    EXPECT_ERR(bp_gradcheck(f.ce, g_X, g_labels, NULL, 2, 1e-3, 0, r, 0), BP_EINVAL,
               "n_results|results");
    EXPECT_ERR(bp_gradcheck(f.ce, g_X, g_labels, NULL, 0, 1e-3, 0, r, 4), BP_EINVAL, "B");
    EXPECT_ERR(bp_gradcheck(f.ce, g_X, g_labels, NULL, MAXB + 1, 1e-3, 0, r, 4), BP_EINVAL,
               "B|max_batch");
    EXPECT_ERR(bp_gradcheck(f.ce, g_X, g_labels, NULL, 2, 0.0, 0, r, 4), BP_EINVAL, "h");
    EXPECT_ERR(bp_gradcheck(f.ce, g_X, g_labels, NULL, 2, -1e-5, 0, r, 4), BP_EINVAL, "h");
    EXPECT_ERR(bp_gradcheck(f.ce, g_X, g_labels, NULL, 2, NAN, 0, r, 4), BP_EINVAL, "h");
    EXPECT_ERR(bp_gradcheck(f.ce, g_X, NULL, NULL, 2, 1e-3, 0, r, 4), BP_EINVAL, "labels");
    EXPECT_ERR(bp_gradcheck(f.ce, g_X, g_labels, g_T, 2, 1e-3, 0, r, 4), BP_EINVAL,
               "labels|targets");
    int32_t lab[MAXB];
    memcpy(lab, g_labels, sizeof lab);
    lab[0] = N_OUT;
    EXPECT_ERR(bp_gradcheck(f.ce, g_X, lab, NULL, 2, 1e-3, 0, r, 4), BP_EINVAL, "label");
    EXPECT_ERR(bp_gradcheck(f.mse, g_X, g_labels, NULL, 2, 1e-3, 0, r, 4), BP_EINVAL,
               "targets|labels");
    EXPECT_BYTES_SAME(r, rc, sizeof r, "results");
    EXPECT_NET_SAME(f.ce, pb, 0);
    fx_close(&f);
}
END_TEST

/* -------------------------------------------------------------------- GEMM */

START_TEST(test_sgemm_args)
{
    float A[64], B[64], C[64], Cc[64];
    for (int i = 0; i < 64; i++) {
        A[i] = (float)(i % 7);
        B[i] = (float)(i % 5);
        C[i] = (float)i;
    }
    memcpy(Cc, C, sizeof C);
    const bp_layout RM = BP_ROW_MAJOR, CM = BP_COL_MAJOR;
    const bp_transpose N = BP_NO_TRANS, T = BP_TRANS;
    /* M 4, N 5, K 3. Row-major minima: lda K (N) / M (T), ldb N (N) / K (T),
     * ldc N. Column-major: lda M (N) / K (T), ldb K (N) / N (T), ldc M. */
    EXPECT_ERR(bp_sgemm(NULL, RM, N, N, 4, 5, 3, 1.0f, NULL, 3, B, 5, 0.0f, C, 5), BP_EINVAL, "A");
    EXPECT_ERR(bp_sgemm(NULL, RM, N, N, 4, 5, 3, 1.0f, A, 3, NULL, 5, 0.0f, C, 5), BP_EINVAL, "B");
    EXPECT_ERR(bp_sgemm(NULL, RM, N, N, 4, 5, 3, 1.0f, A, 3, B, 5, 0.0f, NULL, 5), BP_EINVAL, "C");
    EXPECT_ERR(bp_sgemm(NULL, (bp_layout)99, N, N, 4, 5, 3, 1.0f, A, 3, B, 5, 0.0f, C, 5),
               BP_EINVAL, "layout");
    EXPECT_ERR(bp_sgemm(NULL, RM, (bp_transpose)99, N, 4, 5, 3, 1.0f, A, 3, B, 5, 0.0f, C, 5),
               BP_EINVAL, "trans");
    EXPECT_ERR(bp_sgemm(NULL, RM, N, (bp_transpose)0, 4, 5, 3, 1.0f, A, 3, B, 5, 0.0f, C, 5),
               BP_EINVAL, "trans");
    EXPECT_ERR(bp_sgemm(NULL, RM, N, N, 4, 5, 3, 1.0f, A, 2, B, 5, 0.0f, C, 5), BP_EINVAL, "lda");
    EXPECT_ERR(bp_sgemm(NULL, RM, T, N, 4, 5, 3, 1.0f, A, 3, B, 5, 0.0f, C, 5), BP_EINVAL, "lda");
    EXPECT_ERR(bp_sgemm(NULL, RM, N, N, 4, 5, 3, 1.0f, A, 3, B, 4, 0.0f, C, 5), BP_EINVAL, "ldb");
    EXPECT_ERR(bp_sgemm(NULL, RM, N, T, 4, 5, 3, 1.0f, A, 3, B, 2, 0.0f, C, 5), BP_EINVAL, "ldb");
    EXPECT_ERR(bp_sgemm(NULL, RM, N, N, 4, 5, 3, 1.0f, A, 3, B, 5, 0.0f, C, 4), BP_EINVAL, "ldc");
    EXPECT_ERR(bp_sgemm(NULL, CM, N, N, 4, 5, 3, 1.0f, A, 3, B, 3, 0.0f, C, 4), BP_EINVAL, "lda");
    EXPECT_ERR(bp_sgemm(NULL, CM, N, N, 4, 5, 3, 1.0f, A, 4, B, 2, 0.0f, C, 4), BP_EINVAL, "ldb");
    EXPECT_ERR(bp_sgemm(NULL, CM, N, N, 4, 5, 3, 1.0f, A, 4, B, 3, 0.0f, C, 3), BP_EINVAL, "ldc");
    EXPECT_ERR(bp_sgemm(NULL, CM, T, T, 4, 5, 3, 1.0f, A, 2, B, 5, 0.0f, C, 4), BP_EINVAL, "lda");
    EXPECT_BYTES_SAME(C, Cc, sizeof C, "C");
    /* The same minima are fine. */
    EXPECT_OK(bp_sgemm(NULL, RM, N, N, 4, 5, 3, 1.0f, A, 3, B, 5, 0.0f, C, 5));
}
END_TEST

static Suite *errors_suite(void)
{
    Suite *s = suite_create("errors");
    TCase *tc = tcase_create("status");
    tcase_add_test(tc, test_status_str);
    tcase_add_test(tc, test_last_error_per_thread);
    suite_add_tcase(s, tc);

    tc = tcase_create("ctx");
    tcase_add_test(tc, test_ctx);
    tcase_add_test(tc, test_getters_null);
    suite_add_tcase(s, tc);

    tc = tcase_create("net_create");
    tcase_add_test(tc, test_net_create_null);
    tcase_add_test(tc, test_net_create_zero);
    tcase_add_test(tc, test_net_create_enums);
    tcase_add_test(tc, test_net_create_leaky_alpha);
    tcase_add_test(tc, test_net_create_overflow);
    suite_add_tcase(s, tc);

    tc = tcase_create("net");
    tcase_add_test(tc, test_net_layer_init);
    tcase_add_test(tc, test_predict_forward);
    tcase_add_test(tc, test_backward_state);
    tcase_add_test(tc, test_backward_labels_targets);
    tcase_add_test(tc, test_input_grad_output);
    tcase_add_test(tc, test_param_grad_access);
    tcase_add_test(tc, test_views);
    suite_add_tcase(s, tc);

    tc = tcase_create("optim");
    tcase_add_test(tc, test_optim_config_default);
    tcase_add_test(tc, test_optim_create_null);
    tcase_add_test(tc, test_optim_create_bad_config);
    tcase_add_test(tc, test_optim_create_nonfinite_config);
    tcase_add_test(tc, test_optim_calls);
    suite_add_tcase(s, tc);

    tc = tcase_create("train");
    tcase_add_test(tc, test_train_step_args);
    tcase_add_test(tc, test_train_step_nonfinite);
    tcase_add_test(tc, test_dataset_create);
    tcase_add_test(tc, test_train_epoch_args);
    tcase_add_test(tc, test_evaluate_args);
    tcase_add_test(tc, test_gradcheck_args);
    suite_add_tcase(s, tc);

    tc = tcase_create("sgemm");
    tcase_add_test(tc, test_sgemm_args);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(errors_suite());
}
