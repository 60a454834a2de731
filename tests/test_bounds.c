/* The optimizer's proof of a finite step from bounds (optim.c: the check
 * pass skipped for weight tensors when the backward's max |dW| and the last
 * write pass's maxima of p and state prove every new value finite).
 *
 * What must hold: the proof changes no bit of any result; it is used in
 * the plain training loop; every other write of parameters, state or
 * gradients withdraws it for the next step; and a step that does overflow
 * is refused, never written, whether the proof is available or not. The
 * counter opt->proven (internal) shows when the proof was used. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "net.h"
#include "optim.h"
#include "testutil.h"
#include "tu_suite.h"

#define N_IN 12
#define BATCH 9
#define N_LAYERS 3

static const bp_layer_spec specs[N_LAYERS] = {
    {16, BP_ACT_RELU, 0.0f}, {8, BP_ACT_RELU, 0.0f}, {5, BP_ACT_IDENTITY, 0.0f}};

typedef struct fx {
    bp_ctx *ctx;
    bp_net *net;
    bp_optim *opt;
    float X[BATCH * N_IN];
    int32_t labels[BATCH];
} fx;

static void fx_open(fx *f, const bp_optim_config *c, int n_threads, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    ck_assert_int_eq(bp_ctx_create(&f->ctx, n_threads), BP_OK);
    ck_assert_int_eq(bp_net_create(&f->net, f->ctx, N_IN, N_LAYERS, specs, BP_HEAD_SOFTMAX_CE,
                                   BATCH),
                     BP_OK);
    ck_assert_int_eq(bp_net_init(f->net, BP_INIT_HE_UNIFORM, 5), BP_OK);
    ck_assert_int_eq(bp_optim_create(&f->opt, f->net, c), BP_OK);
    tu_rng rng;
    tu_seed(&rng, seed);
    tu_fill(&rng, f->X, BATCH * N_IN, -1.0, 1.0);
    for (int b = 0; b < BATCH; b++)
        f->labels[b] = (int32_t)(tu_next(&rng) % 5);
}

static void fx_close(fx *f)
{
    bp_optim_destroy(f->opt);
    bp_net_destroy(f->net);
    bp_ctx_destroy(f->ctx);
}

static void forward_backward(fx *f)
{
    ck_assert_int_eq(bp_net_forward(f->net, f->X, BATCH), BP_OK);
    ck_assert_int_eq(bp_net_backward(f->net, f->labels, NULL, NULL), BP_OK);
}

/* All parameters of the net, in order. */
static size_t all_params(const bp_net *net, float *dst)
{
    size_t n = 0;
    for (size_t i = 0; i < bp_net_n_layers(net); i++) {
        bp_layer_spec s;
        ck_assert_int_eq(bp_net_layer(net, i, &s), BP_OK);
        size_t n_in = i == 0 ? bp_net_n_in(net) : specs[i - 1].n_out;
        ck_assert_int_eq(bp_net_get_param(net, i, BP_WEIGHT, dst + n, s.n_out * n_in), BP_OK);
        n += s.n_out * n_in;
        ck_assert_int_eq(bp_net_get_param(net, i, BP_BIAS, dst + n, s.n_out), BP_OK);
        n += s.n_out;
    }
    return n;
}

#define MAX_PARAMS 1024

/* type's defaults with lr, weight decay and (SGD) momentum set. */
static bp_optim_config config_with(bp_optim_type type, float lr, float weight_decay,
                                   float momentum)
{
    bp_optim_config c;
    bp_optim_config_default(&c, type);
    c.lr = lr;
    c.weight_decay = weight_decay;
    c.momentum = momentum;
    return c;
}

static bp_optim_config config(int kind)
{
    bp_optim_config c;
    switch (kind) {
    case 0: /* plain SGD with L2 */
        return config_with(BP_OPTIM_SGD, 0.1f, 0.01f, 0.0f);
    case 1: /* Nesterov momentum */
        c = config_with(BP_OPTIM_SGD, 0.05f, 0.0f, 0.9f);
        c.nesterov = 1;
        return c;
    case 2: /* Adam with L2 and clipping */
        c = config_with(BP_OPTIM_ADAM, 0.01f, 0.001f, 0.0f);
        c.clip_norm = 0.5f;
        return c;
    default: /* AdamW with its default decay */
        return config_with(BP_OPTIM_ADAMW, 0.01f, 0.01f, 0.0f);
    }
}

/* Two identical nets trained alike, except that one has its gradients
 * rewritten (with the same values) before every step, which withdraws the
 * proof: the same bits, and the proof used from the second step on in the
 * other, at 1 and 2 threads (the scheduled backward at 2). */
START_TEST(test_same_bits)
{
    for (int kind = 0; kind < 4; kind++) {
        for (int th = 1; th <= 2; th++) {
            bp_optim_config c = config(kind);
            fx a, b;
            fx_open(&a, &c, th, 7);
            fx_open(&b, &c, th, 7);
            static float g[MAX_PARAMS];
            const int steps = 6;
            for (int s = 0; s < steps; s++) {
                forward_backward(&a);
                forward_backward(&b);
                ck_assert_int_eq(bp_net_get_grad(b.net, 1, BP_WEIGHT, g, 8 * 16), BP_OK);
                ck_assert_int_eq(bp_net_set_grad(b.net, 1, BP_WEIGHT, g, 8 * 16), BP_OK);
                ck_assert_int_eq(bp_optim_step(a.opt), BP_OK);
                ck_assert_int_eq(bp_optim_step(b.opt), BP_OK);
            }
            static float pa[MAX_PARAMS], pb[MAX_PARAMS];
            size_t n = all_params(a.net, pa);
            ck_assert_uint_eq(all_params(b.net, pb), n);
            ck_assert_msg(memcmp(pa, pb, n * sizeof(float)) == 0,
                          "optimizer %d, %d threads: the proof changed the parameters", kind,
                          th);
            /* every weight tensor of steps 2.. proven; never in b */
            ck_assert_uint_eq(a.opt->proven, (uint64_t)N_LAYERS * (steps - 1));
            ck_assert_uint_eq(b.opt->proven, 0);
            fx_close(&a);
            fx_close(&b);
        }
    }
}
END_TEST

/* Proofs counted over one step. */
static uint64_t proven_in_step(fx *f, bp_status want)
{
    uint64_t before = f->opt->proven;
    ck_assert_int_eq(bp_optim_step(f->opt), want);
    return f->opt->proven - before;
}

/* `steps` good steps (the proof then in force), then a backward whose
 * gradients the test may tamper with. */
static void warm_up(fx *f, int steps)
{
    for (int s = 0; s < steps; s++) {
        forward_backward(f);
        ck_assert_int_eq(bp_optim_step(f->opt), BP_OK);
    }
    forward_backward(f);
}

/* The next step is refused, unproven, and writes no parameter. */
static void expect_refused(fx *f)
{
    static float before[MAX_PARAMS], after[MAX_PARAMS];
    size_t n = all_params(f->net, before);
    ck_assert_uint_eq(proven_in_step(f, BP_ENUMERIC), 0);
    ck_assert_uint_eq(all_params(f->net, after), n);
    ck_assert_msg(memcmp(before, after, n * sizeof(float)) == 0, "a refused step wrote");
}

/* SGD with lr 3 and weight decay 1 maps p to -2 p - 3 g: a parameter near
 * 2e38 then overflows. Written behind the optimizer's back after a proven
 * step, it must withdraw the proof (whose stale maxima would pass), so the
 * check pass sees it and the step is refused with nothing written. */
START_TEST(test_set_param_withdraws)
{
    bp_optim_config c = config_with(BP_OPTIM_SGD, 3.0f, 1.0f, 0.0f);
    fx f;
    fx_open(&f, &c, 2, 8);
    warm_up(&f, 3);
    static float w[8 * 16];
    ck_assert_int_eq(bp_net_get_param(f.net, 1, BP_WEIGHT, w, 8 * 16), BP_OK);
    w[5] = 2e38f;
    ck_assert_int_eq(bp_net_set_param(f.net, 1, BP_WEIGHT, w, 8 * 16), BP_OK);
    expect_refused(&f);
    /* a sane value back: unproven (the maxima are stale), then proven */
    w[5] = 0.5f;
    ck_assert_int_eq(bp_net_set_param(f.net, 1, BP_WEIGHT, w, 8 * 16), BP_OK);
    ck_assert_uint_eq(proven_in_step(&f, BP_OK), 0);
    forward_backward(&f);
    ck_assert_uint_eq(proven_in_step(&f, BP_OK), N_LAYERS);
    /* bp_net_init writes every parameter: no proof right after it */
    ck_assert_int_eq(bp_net_init(f.net, BP_INIT_XAVIER_UNIFORM, 3), BP_OK);
    forward_backward(&f);
    ck_assert_uint_eq(proven_in_step(&f, BP_OK), 0);
    fx_close(&f);
}
END_TEST

/* A momentum buffer set near FLT_MAX: v' = 0.9 v + g stays finite, p - 3 v'
 * does not. */
START_TEST(test_set_state_withdraws)
{
    bp_optim_config c = config_with(BP_OPTIM_SGD, 3.0f, 0.0f, 0.9f);
    fx f;
    fx_open(&f, &c, 1, 9);
    warm_up(&f, 3);
    static float v[16 * N_IN];
    ck_assert_int_eq(bp_optim_get_state(f.opt, 0, BP_WEIGHT, 0, v, 16 * N_IN), BP_OK);
    v[17] = 3e38f;
    ck_assert_int_eq(bp_optim_set_state(f.opt, 0, BP_WEIGHT, 0, v, 16 * N_IN), BP_OK);
    expect_refused(&f);
    static float v2[16 * N_IN];
    ck_assert_int_eq(bp_optim_get_state(f.opt, 0, BP_WEIGHT, 0, v2, 16 * N_IN), BP_OK);
    ck_assert_msg(memcmp(v, v2, sizeof v) == 0, "a refused step wrote the state");
    fx_close(&f);
}
END_TEST

/* A NaN gradient written after the backward: the GEMM's max |dW| no longer
 * describes it. */
START_TEST(test_set_grad_withdraws)
{
    bp_optim_config c = config(3); /* no clipping: its norm would see the NaN first */
    fx f;
    fx_open(&f, &c, 2, 10);
    warm_up(&f, 3);
    static float g[5 * 8];
    ck_assert_int_eq(bp_net_get_grad(f.net, 2, BP_WEIGHT, g, 5 * 8), BP_OK);
    g[3] = NAN;
    ck_assert_int_eq(bp_net_set_grad(f.net, 2, BP_WEIGHT, g, 5 * 8), BP_OK);
    expect_refused(&f);
    /* A new backward gives a new bound; the maxima of the last written
     * step still hold, since the refused one wrote nothing. */
    forward_backward(&f);
    ck_assert_uint_eq(proven_in_step(&f, BP_OK), N_LAYERS);
    fx_close(&f);
}
END_TEST

/* Two optimizers on one net: each one's steps write the parameters behind
 * the other's back. */
START_TEST(test_two_optimizers)
{
    bp_optim_config c = config(0);
    fx f;
    fx_open(&f, &c, 1, 11);
    bp_optim *other = NULL;
    bp_optim_config c2 = config(3);
    ck_assert_int_eq(bp_optim_create(&other, f.net, &c2), BP_OK);
    forward_backward(&f);
    ck_assert_uint_eq(proven_in_step(&f, BP_OK), 0);
    forward_backward(&f);
    ck_assert_uint_eq(proven_in_step(&f, BP_OK), N_LAYERS);
    forward_backward(&f);
    ck_assert_int_eq(bp_optim_step(other), BP_OK);
    ck_assert_uint_eq(other->proven, 0);
    forward_backward(&f);
    ck_assert_uint_eq(proven_in_step(&f, BP_OK), 0);
    bp_optim_destroy(other);
    fx_close(&f);
}
END_TEST

/* The proof's own arithmetic at its limit, with every bound valid: zero
 * inputs and negative biases before the ReLUs make every layer's input 0
 * and so every weight gradient exactly 0, while weight decay 101 at lr 1
 * multiplies each weight by -100 per step (SGD's L2 term p - lr wd p, or
 * AdamW's decoupled decay). From |p| = 5 the maxima run 5e2k; the proof
 * holds up to 5e34 (101 x 5e34 < 1e37) and the check pass then refuses
 * the next step (5e36 -> -5e38 overflows). A proof that left out the
 * decay would accept 5e36 (below 1e37) and write infinity. */
START_TEST(test_growth_to_overflow)
{
    for (int adamw = 0; adamw < 2; adamw++) {
        bp_optim_config c =
            config_with(adamw ? BP_OPTIM_ADAMW : BP_OPTIM_SGD, 1.0f, 101.0f, 0.0f);
        fx f;
        fx_open(&f, &c, 2, 12);
        memset(f.X, 0, sizeof f.X);
        static float w[16 * N_IN], minus1[16], p[MAX_PARAMS];
        for (size_t j = 0; j < 16 * N_IN; j++)
            w[j] = j % 2 ? 5.0f : -5.0f;
        size_t n_in = N_IN;
        for (size_t i = 0; i < N_LAYERS; i++) {
            ck_assert_int_eq(bp_net_set_param(f.net, i, BP_WEIGHT, w, specs[i].n_out * n_in),
                             BP_OK);
            n_in = specs[i].n_out;
        }
        for (int j = 0; j < 16; j++)
            minus1[j] = -1.0f;
        ck_assert_int_eq(bp_net_set_param(f.net, 0, BP_BIAS, minus1, 16), BP_OK);
        ck_assert_int_eq(bp_net_set_param(f.net, 1, BP_BIAS, minus1, 8), BP_OK);
        int proven_steps = 0, refused_at = -1;
        for (int s = 0; s < 30 && refused_at < 0; s++) {
            forward_backward(&f);
            uint64_t before = f.opt->proven;
            bp_status st = bp_optim_step(f.opt);
            ck_assert(st == BP_OK || st == BP_ENUMERIC);
            if (st == BP_ENUMERIC)
                refused_at = s;
            proven_steps += f.opt->proven - before == N_LAYERS;
            size_t n = all_params(f.net, p);
            for (size_t i = 0; i < n; i++)
                ck_assert_msg(isfinite(p[i]), "%s, step %d wrote a non-finite parameter",
                              adamw ? "AdamW" : "SGD", s);
        }
        /* steps 0..17 take 5 to 5e36 (step 0 has no maxima to prove from);
         * step 18 would overflow */
        ck_assert_int_eq(refused_at, 18);
        ck_assert_int_eq(proven_steps, 17);
        fx_close(&f);
    }
}
END_TEST

static Suite *bounds_suite(void)
{
    Suite *s = suite_create("bounds");
    TCase *tc = tcase_create("proof");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_same_bits);
    tcase_add_test(tc, test_set_param_withdraws);
    tcase_add_test(tc, test_set_state_withdraws);
    tcase_add_test(tc, test_set_grad_withdraws);
    tcase_add_test(tc, test_two_optimizers);
    tcase_add_test(tc, test_growth_to_overflow);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(bounds_suite());
}
