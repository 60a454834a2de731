/* Optimizer and schedule tests: one to three steps of every optimizer on a
 * tiny net, checked against the formulas documented above bp_optim_type and
 * bp_schedule in backprop.h, evaluated here in double.
 *
 * The net is n_in 3, layers {4, 2}: four tensors, in this order
 *   L0.W (4, 3)  L0.b (4)  L1.W (2, 4)  L1.b (2).
 * Parameters and gradients are written with bp_net_set_param/set_grad; no
 * forward or backward pass is involved.
 *
 * Tolerance. The library runs every update in float32, the reference in
 * double from the same float inputs. One update is a handful of roundings
 * (u = 6e-8 each) plus a sqrt and a division, so after three steps the
 * float result is within ~1e-6 of the double one relative to the tensor's
 * scale. RTOL = 1e-5 leaves headroom for reassociation (SIMD, a float
 * accumulated norm) yet is far below every effect the tests look for
 * (a weight-decay term lr*wd*p ~ 1e-3 relative, Adam's eps and bias
 * correction, clipping scales), so a wrong formula cannot pass. */
#include <backprop.h>
#include <check.h>
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tu_suite.h"

#define TU_PI 3.14159265358979323846
#define RTOL 1e-5
#define LR_RTOL 1e-6 /* one float rounding of a closed-form lr, plus cos/pow */

#define N_IN 3
#define N_T 4
#define MAXT 12
static const size_t t_layer[N_T] = {0, 0, 1, 1};
static const bp_tensor t_which[N_T] = {BP_WEIGHT, BP_BIAS, BP_WEIGHT, BP_BIAS};
static const size_t t_size[N_T] = {12, 4, 8, 2};
static const char *const t_name[N_T] = {"L0.W", "L0.b", "L1.W", "L1.b"};

/* The reference model: parameters, gradients and up to two state slots. */
typedef struct ref {
    double p[N_T][MAXT];
    double g[N_T][MAXT];
    double s[2][N_T][MAXT];
} ref;

typedef struct fx {
    bp_ctx *ctx;
    bp_net *net;
    bp_optim *opt;
} fx;

static void fx_open(fx *f)
{
    bp_layer_spec layers[2] = {{4, BP_ACT_TANH, 0.0f}, {2, BP_ACT_IDENTITY, 0.0f}};
    memset(f, 0, sizeof *f);
    ck_assert_int_eq(bp_ctx_create(&f->ctx, 1), BP_OK);
    ck_assert_int_eq(bp_net_create(&f->net, f->ctx, N_IN, 2, layers, BP_HEAD_MSE, 2),
                     BP_OK);
}

static void fx_close(fx *f)
{
    bp_optim_destroy(f->opt);
    bp_net_destroy(f->net);
    bp_ctx_destroy(f->ctx);
}

static void fx_optim(fx *f, const bp_optim_config *cfg)
{
    ck_assert_int_eq(bp_optim_create(&f->opt, f->net, cfg), BP_OK);
}

/* Random float-exact values in [lo, hi) into a tensor of doubles. */
static void fill_ref(tu_rng *rng, double *dst, size_t n, double lo, double hi)
{
    float tmp[MAXT];
    tu_fill(rng, tmp, n, lo, hi);
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[i];
}

static void push_params(fx *f, const ref *r)
{
    for (int k = 0; k < N_T; k++) {
        float tmp[MAXT];
        for (size_t i = 0; i < t_size[k]; i++)
            tmp[i] = (float)r->p[k][i];
        ck_assert_int_eq(bp_net_set_param(f->net, t_layer[k], t_which[k], tmp, t_size[k]),
                         BP_OK);
    }
}

static void push_grads(fx *f, const ref *r)
{
    for (int k = 0; k < N_T; k++) {
        float tmp[MAXT];
        for (size_t i = 0; i < t_size[k]; i++)
            tmp[i] = (float)r->g[k][i];
        ck_assert_int_eq(bp_net_set_grad(f->net, t_layer[k], t_which[k], tmp, t_size[k]),
                         BP_OK);
    }
}

/* New random params (in [-1, 1)) and grads (in [glo, ghi)); state zero. */
static void ref_init(ref *r, tu_rng *rng, double glo, double ghi)
{
    memset(r, 0, sizeof *r);
    for (int k = 0; k < N_T; k++) {
        fill_ref(rng, r->p[k], t_size[k], -1.0, 1.0);
        fill_ref(rng, r->g[k], t_size[k], glo, ghi);
    }
}

static void ref_new_grads(ref *r, tu_rng *rng, double lo, double hi)
{
    for (int k = 0; k < N_T; k++)
        fill_ref(rng, r->g[k], t_size[k], lo, hi);
}

/* The schedule, as documented above bp_schedule. */
static double ref_lr(const bp_optim_config *c, uint64_t t)
{
    double lr = c->lr;
    switch (c->schedule) {
    case BP_SCHED_CONSTANT:
        return lr;
    case BP_SCHED_STEP:
        return lr * pow((double)c->gamma, (double)(t / c->step_size));
    case BP_SCHED_COSINE: {
        uint64_t w = c->warmup_steps;
        if (t < w)
            return lr * (double)(t + 1) / (double)w;
        double span = c->total_steps > w ? (double)(c->total_steps - w) : 1.0;
        double q = fmin(1.0, (double)(t - w) / span);
        double mn = c->min_lr;
        return mn + (lr - mn) * (1.0 + cos(TU_PI * q)) / 2.0;
    }
    }
    ck_abort_msg("bad schedule in test");
    return 0;
}

/* One update, as documented above bp_optim_type; t = steps before this one. */
static void ref_step(ref *r, const bp_optim_config *c, uint64_t t)
{
    double lr = ref_lr(c, t), scale = 1.0;
    if (c->clip_norm > 0) {
        double ss = 0;
        for (int k = 0; k < N_T; k++)
            for (size_t i = 0; i < t_size[k]; i++)
                ss += r->g[k][i] * r->g[k][i];
        double n = sqrt(ss);
        if (n > c->clip_norm)
            scale = c->clip_norm / (n + 1e-6);
    }
    double mu = c->momentum, b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    double bc1 = 1.0 - pow(b1, (double)(t + 1)), bc2 = 1.0 - pow(b2, (double)(t + 1));
    for (int k = 0; k < N_T; k++) {
        double wd = t_which[k] == BP_WEIGHT ? c->weight_decay : 0.0;
        for (size_t i = 0; i < t_size[k]; i++) {
            double *p = &r->p[k][i], *s0 = &r->s[0][k][i], *s1 = &r->s[1][k][i];
            double g = r->g[k][i] * scale;
            if (c->type == BP_OPTIM_SGD) {
                double gp = g + wd * *p;
                if (mu == 0) {
                    *p -= lr * gp;
                } else {
                    *s0 = mu * *s0 + gp;
                    double d = c->nesterov ? gp + mu * *s0 : *s0;
                    *p -= lr * d;
                }
                continue;
            }
            if (c->type == BP_OPTIM_ADAMW) {
                *p -= lr * wd * *p;
            } else {
                g += wd * *p;
            }
            *s0 = b1 * *s0 + (1 - b1) * g;
            *s1 = b2 * *s1 + (1 - b2) * g * g;
            *p -= lr * (*s0 / bc1) / (sqrt(*s1 / bc2) + eps);
        }
    }
}

/* |got - exp| <= RTOL (|exp| + max |exp| over the tensor). */
static void expect_close(const char *what, const char *tn, const float *got,
                         const double *exp, size_t n)
{
    double scale = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(exp[i]));
    for (size_t i = 0; i < n; i++) {
        double tol = RTOL * (fabs(exp[i]) + scale) + 1e-30;
        ck_assert_msg(fabs((double)got[i] - exp[i]) <= tol,
                      "%s %s[%zu]: got %.9g, expected %.9g (tol %.3g)", what, tn, i,
                      (double)got[i], exp[i], tol);
    }
}

static void expect_params(fx *f, const ref *r)
{
    for (int k = 0; k < N_T; k++) {
        float got[MAXT];
        ck_assert_int_eq(bp_net_get_param(f->net, t_layer[k], t_which[k], got, t_size[k]),
                         BP_OK);
        expect_close("param", t_name[k], got, r->p[k], t_size[k]);
    }
}

static void expect_state(fx *f, const ref *r, size_t n_slots)
{
    static const char *const sn[2] = {"state slot 0", "state slot 1"};
    ck_assert_uint_eq(bp_optim_n_slots(f->opt), n_slots);
    for (size_t s = 0; s < n_slots; s++)
        for (int k = 0; k < N_T; k++) {
            float got[MAXT];
            ck_assert_int_eq(bp_optim_get_state(f->opt, t_layer[k], t_which[k], s, got,
                                                t_size[k]),
                             BP_OK);
            expect_close(sn[s], t_name[k], got, r->s[s][k], t_size[k]);
        }
}

/* Step the library and the reference once, checking params and state. */
static void step_both(fx *f, ref *r, const bp_optim_config *c, size_t n_slots)
{
    uint64_t t = bp_optim_steps(f->opt);
    push_grads(f, r);
    ck_assert_int_eq(bp_optim_step(f->opt), BP_OK);
    ck_assert_uint_eq(bp_optim_steps(f->opt), t + 1);
    ref_step(r, c, t);
    expect_params(f, r);
    expect_state(f, r, n_slots);
}

static bp_optim_config cfg_of(bp_optim_type type)
{
    bp_optim_config c;
    ck_assert_int_eq(bp_optim_config_default(&c, type), BP_OK);
    return c;
}

/* ------------------------------------------------------------- defaults */

START_TEST(test_config_defaults)
{
    static const bp_optim_type types[3] = {BP_OPTIM_SGD, BP_OPTIM_ADAM, BP_OPTIM_ADAMW};
    static const float lrs[3] = {0.01f, 0.001f, 0.001f};
    static const float wds[3] = {0.0f, 0.0f, 0.01f};
    for (int i = 0; i < 3; i++) {
        bp_optim_config c;
        memset(&c, 0xA5, sizeof c); /* every field must be written */
        ck_assert_int_eq(bp_optim_config_default(&c, types[i]), BP_OK);
        ck_assert_int_eq(c.type, types[i]);
        ck_assert_float_eq(c.lr, lrs[i]);
        ck_assert_float_eq(c.beta1, 0.9f);
        ck_assert_float_eq(c.beta2, 0.999f);
        ck_assert_float_eq(c.eps, 1e-8f);
        ck_assert_float_eq(c.weight_decay, wds[i]);
        ck_assert_float_eq(c.clip_norm, 0.0f);
        ck_assert_int_eq(c.schedule, BP_SCHED_CONSTANT);
        /* "lr 0.01 (SGD)": plain SGD, no momentum. */
        ck_assert_float_eq(c.momentum, 0.0f);
        ck_assert_int_eq(c.nesterov, 0);
        /* The defaults are a valid configuration. */
        fx f;
        fx_open(&f);
        fx_optim(&f, &c);
        ck_assert_uint_eq(bp_optim_steps(f.opt), 0);
        ck_assert_float_eq(bp_optim_lr(f.opt), lrs[i]);
        fx_close(&f);
    }
}
END_TEST

START_TEST(test_n_slots)
{
    fx f;
    fx_open(&f);
    bp_optim_config c = cfg_of(BP_OPTIM_SGD);
    fx_optim(&f, &c);
    ck_assert_uint_eq(bp_optim_n_slots(f.opt), 0);
    bp_optim_destroy(f.opt);
    c.momentum = 0.9f;
    fx_optim(&f, &c);
    ck_assert_uint_eq(bp_optim_n_slots(f.opt), 1);
    bp_optim_destroy(f.opt);
    c = cfg_of(BP_OPTIM_ADAM);
    fx_optim(&f, &c);
    ck_assert_uint_eq(bp_optim_n_slots(f.opt), 2);
    bp_optim_destroy(f.opt);
    c = cfg_of(BP_OPTIM_ADAMW);
    fx_optim(&f, &c);
    ck_assert_uint_eq(bp_optim_n_slots(f.opt), 2);
    /* State starts at zero. */
    for (size_t s = 0; s < 2; s++)
        for (int k = 0; k < N_T; k++) {
            float got[MAXT];
            memset(got, 0x7F, sizeof got);
            ck_assert_int_eq(bp_optim_get_state(f.opt, t_layer[k], t_which[k], s, got,
                                                t_size[k]),
                             BP_OK);
            for (size_t i = 0; i < t_size[k]; i++)
                ck_assert_msg(got[i] == 0.0f, "initial state slot %zu %s[%zu] = %g", s,
                              t_name[k], i, (double)got[i]);
        }
    fx_close(&f);
}
END_TEST

/* -------------------------------------------------------------------- SGD */

START_TEST(test_sgd_plain)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 11);
    fx_open(&f);
    ref_init(&r, &rng, -1.0, 1.0);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_SGD);
    c.lr = 0.1f;
    fx_optim(&f, &c);
    step_both(&f, &r, &c, 0);
    ref_new_grads(&r, &rng, -2.0, 2.0);
    step_both(&f, &r, &c, 0);
    fx_close(&f);
}
END_TEST

START_TEST(test_sgd_weight_decay)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 12);
    fx_open(&f);
    ref_init(&r, &rng, -1.0, 1.0);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_SGD);
    c.lr = 0.1f;
    c.weight_decay = 0.1f;
    fx_optim(&f, &c);
    /* Hand check of one weight and one bias before the general check:
     * w -= lr (g + wd w); b -= lr g (no decay on biases). */
    double w0 = r.p[0][0], gw = r.g[0][0], b0 = r.p[1][0], gb = r.g[1][0];
    step_both(&f, &r, &c, 0);
    float w, b[4];
    float wbuf[12];
    ck_assert_int_eq(bp_net_get_param(f.net, 0, BP_WEIGHT, wbuf, 12), BP_OK);
    ck_assert_int_eq(bp_net_get_param(f.net, 0, BP_BIAS, b, 4), BP_OK);
    w = wbuf[0];
    double lr = c.lr, wd = c.weight_decay;
    ck_assert_double_eq_tol(w, w0 - lr * (gw + wd * w0), 1e-6);
    ck_assert_double_eq_tol(b[0], b0 - lr * gb, 1e-6);
    ref_new_grads(&r, &rng, -1.0, 1.0);
    step_both(&f, &r, &c, 0);
    fx_close(&f);
}
END_TEST

START_TEST(test_sgd_momentum)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 13);
    fx_open(&f);
    ref_init(&r, &rng, -1.0, 1.0);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_SGD);
    c.lr = 0.05f;
    c.momentum = 0.9f;
    fx_optim(&f, &c);
    for (int s = 0; s < 3; s++) {
        step_both(&f, &r, &c, 1);
        ref_new_grads(&r, &rng, -1.0, 1.0);
    }
    fx_close(&f);
}
END_TEST

START_TEST(test_sgd_momentum_weight_decay)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 14);
    fx_open(&f);
    ref_init(&r, &rng, -1.0, 1.0);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_SGD);
    c.lr = 0.05f;
    c.momentum = 0.8f;
    c.weight_decay = 0.2f;
    fx_optim(&f, &c);
    for (int s = 0; s < 3; s++) {
        step_both(&f, &r, &c, 1);
        ref_new_grads(&r, &rng, -1.0, 1.0);
    }
    fx_close(&f);
}
END_TEST

START_TEST(test_sgd_nesterov)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 15);
    fx_open(&f);
    ref_init(&r, &rng, -1.0, 1.0);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_SGD);
    c.lr = 0.05f;
    c.momentum = 0.9f;
    c.nesterov = 1;
    fx_optim(&f, &c);
    /* First step by hand: v = g, p -= lr (g + mu g). */
    double p0 = r.p[2][3], g0 = r.g[2][3];
    step_both(&f, &r, &c, 1);
    float w[8];
    ck_assert_int_eq(bp_net_get_param(f.net, 1, BP_WEIGHT, w, 8), BP_OK);
    ck_assert_double_eq_tol(w[3], p0 - (double)c.lr * (g0 + (double)c.momentum * g0), 1e-6);
    for (int s = 0; s < 2; s++) {
        ref_new_grads(&r, &rng, -1.0, 1.0);
        step_both(&f, &r, &c, 1);
    }
    fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------- Adam */

START_TEST(test_adam)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 21);
    fx_open(&f);
    ref_init(&r, &rng, -1.0, 1.0);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_ADAM);
    c.lr = 0.01f;
    fx_optim(&f, &c);
    /* First step by hand: m = (1-b1) g, v = (1-b2) g^2, mhat/sqrt(vhat) = sign(g). */
    double p0 = r.p[0][4], g0 = r.g[0][4];
    step_both(&f, &r, &c, 2);
    float w[12];
    ck_assert_int_eq(bp_net_get_param(f.net, 0, BP_WEIGHT, w, 12), BP_OK);
    ck_assert_double_eq_tol(w[4], p0 - (double)c.lr * (g0 > 0 ? 1 : -1), 1e-6);
    for (int s = 0; s < 2; s++) {
        ref_new_grads(&r, &rng, -1.0, 1.0);
        step_both(&f, &r, &c, 2);
    }
    fx_close(&f);
}
END_TEST

/* Small gradients and a large eps, so eps changes the update by ~5%. */
START_TEST(test_adam_eps)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 22);
    fx_open(&f);
    ref_init(&r, &rng, -0.05, 0.05);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_ADAM);
    c.lr = 0.02f;
    c.beta1 = 0.8f;
    c.beta2 = 0.95f;
    c.eps = 1e-3f;
    fx_optim(&f, &c);
    for (int s = 0; s < 3; s++) {
        step_both(&f, &r, &c, 2);
        ref_new_grads(&r, &rng, -0.05, 0.05);
    }
    fx_close(&f);
}
END_TEST

START_TEST(test_adam_weight_decay)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 23);
    fx_open(&f);
    ref_init(&r, &rng, -0.5, 0.5);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_ADAM);
    c.lr = 0.01f;
    c.weight_decay = 0.5f;
    fx_optim(&f, &c);
    /* Hand check of the first moments: m = (1-b1)(g + wd p) on weights,
     * (1-b1) g on biases. */
    double mw = (1 - (double)c.beta1) * (r.g[0][1] + (double)c.weight_decay * r.p[0][1]);
    double mb = (1 - (double)c.beta1) * r.g[1][1];
    step_both(&f, &r, &c, 2);
    float m[12];
    ck_assert_int_eq(bp_optim_get_state(f.opt, 0, BP_WEIGHT, 0, m, 12), BP_OK);
    ck_assert_double_eq_tol(m[1], mw, 1e-6);
    ck_assert_int_eq(bp_optim_get_state(f.opt, 0, BP_BIAS, 0, m, 4), BP_OK);
    ck_assert_double_eq_tol(m[1], mb, 1e-6);
    for (int s = 0; s < 2; s++) {
        ref_new_grads(&r, &rng, -0.5, 0.5);
        step_both(&f, &r, &c, 2);
    }
    fx_close(&f);
}
END_TEST

START_TEST(test_adamw)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 24);
    fx_open(&f);
    ref_init(&r, &rng, -0.5, 0.5);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_ADAMW);
    c.lr = 0.05f;
    c.weight_decay = 0.3f;
    fx_optim(&f, &c);
    /* Hand check of step 1: w' = w (1 - lr wd) - lr sign(g); m from raw g. */
    double w0 = r.p[2][0], gw = r.g[2][0];
    double b0 = r.p[3][1], gb = r.g[3][1];
    step_both(&f, &r, &c, 2);
    float w[8], b[2], m[8];
    ck_assert_int_eq(bp_net_get_param(f.net, 1, BP_WEIGHT, w, 8), BP_OK);
    ck_assert_int_eq(bp_net_get_param(f.net, 1, BP_BIAS, b, 2), BP_OK);
    ck_assert_int_eq(bp_optim_get_state(f.opt, 1, BP_WEIGHT, 0, m, 8), BP_OK);
    double lr = c.lr, wd = c.weight_decay;
    ck_assert_double_eq_tol(w[0], w0 * (1 - lr * wd) - lr * (gw > 0 ? 1 : -1), 1e-6);
    ck_assert_double_eq_tol(b[1], b0 - lr * (gb > 0 ? 1 : -1), 1e-6);
    ck_assert_double_eq_tol(m[0], (1 - (double)c.beta1) * gw, 1e-7);
    for (int s = 0; s < 2; s++) {
        ref_new_grads(&r, &rng, -0.5, 0.5);
        step_both(&f, &r, &c, 2);
    }
    fx_close(&f);
}
END_TEST

/* The decoupled decay uses the scheduled lr_t, and bias correction uses
 * t = bp_optim_steps() (here 5 after bp_optim_set_steps). */
START_TEST(test_adamw_schedule_and_resume)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 25);
    fx_open(&f);
    ref_init(&r, &rng, -0.5, 0.5);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_ADAMW);
    c.lr = 0.1f;
    c.weight_decay = 0.2f;
    c.schedule = BP_SCHED_STEP;
    c.step_size = 2;
    c.gamma = 0.5f;
    fx_optim(&f, &c);
    /* Resume from a saved state: m in [-0.1, 0.1), v in [0, 0.05). */
    for (int k = 0; k < N_T; k++) {
        fill_ref(&rng, r.s[0][k], t_size[k], -0.1, 0.1);
        fill_ref(&rng, r.s[1][k], t_size[k], 0.0, 0.05);
        float tmp[MAXT];
        for (int s = 0; s < 2; s++) {
            for (size_t i = 0; i < t_size[k]; i++)
                tmp[i] = (float)r.s[s][k][i];
            ck_assert_int_eq(bp_optim_set_state(f.opt, t_layer[k], t_which[k], (size_t)s,
                                                tmp, t_size[k]),
                             BP_OK);
        }
    }
    ck_assert_int_eq(bp_optim_set_steps(f.opt, 5), BP_OK);
    ck_assert_uint_eq(bp_optim_steps(f.opt), 5);
    ck_assert_double_eq_tol(bp_optim_lr(f.opt), 0.1 * 0.25, 1e-8);
    step_both(&f, &r, &c, 2); /* t = 5: lr_t = lr / 4 */
    ref_new_grads(&r, &rng, -0.5, 0.5);
    step_both(&f, &r, &c, 2); /* t = 6: lr_t = lr / 8 */
    fx_close(&f);
}
END_TEST

/* --------------------------------------------------------------- clipping */

static double global_norm(const ref *r)
{
    double ss = 0;
    for (int k = 0; k < N_T; k++)
        for (size_t i = 0; i < t_size[k]; i++)
            ss += r->g[k][i] * r->g[k][i];
    return sqrt(ss);
}

/* The norm is global: most of it sits in L1.b, yet L0.W is scaled by the
 * same factor. SGD with lr 1 makes the update equal the clipped gradient. */
START_TEST(test_clip_triggers)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 31);
    fx_open(&f);
    ref_init(&r, &rng, -0.1, 0.1);
    r.g[3][0] = 3.0;
    r.g[3][1] = -4.0;
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_SGD);
    c.lr = 1.0f;
    c.clip_norm = 1.0f;
    fx_optim(&f, &c);
    double n = global_norm(&r);
    ck_assert(n > 5.0 && n < 5.1);
    double s = 1.0 / (n + 1e-6);
    double w0 = r.p[0][7], g0 = r.g[0][7];
    step_both(&f, &r, &c, 0);
    float w[12];
    ck_assert_int_eq(bp_net_get_param(f.net, 0, BP_WEIGHT, w, 12), BP_OK);
    ck_assert_double_eq_tol(w[7], w0 - s * g0, 1e-6);
    /* A second step with momentum and weight decay: clipping applies to the
     * raw gradient, before g + wd p. */
    bp_optim_destroy(f.opt);
    f.opt = NULL;
    c.lr = 0.1f;
    c.momentum = 0.5f;
    c.weight_decay = 0.1f;
    c.clip_norm = 0.5f;
    fx_optim(&f, &c);
    push_params(&f, &r);
    ref_new_grads(&r, &rng, -1.0, 1.0);
    ck_assert(global_norm(&r) > 0.5);
    step_both(&f, &r, &c, 1);
    ref_new_grads(&r, &rng, -1.0, 1.0);
    step_both(&f, &r, &c, 1);
    /* Tiny gradients (norm ~ 2e-4), so the + 1e-6 in the divisor is a 0.5%
     * effect, seen in the velocity (v = clipped g after one step). */
    bp_optim_destroy(f.opt);
    f.opt = NULL;
    c.weight_decay = 0.0f;
    c.clip_norm = 1e-4f;
    fx_optim(&f, &c);
    memset(r.s, 0, sizeof r.s);
    push_params(&f, &r);
    ref_new_grads(&r, &rng, -1e-4, 1e-4);
    n = global_norm(&r);
    ck_assert(n > 1e-4);
    double g1 = r.g[1][2];
    step_both(&f, &r, &c, 1);
    float v[4];
    ck_assert_int_eq(bp_optim_get_state(f.opt, 0, BP_BIAS, 0, v, 4), BP_OK);
    ck_assert_double_eq_tol(v[2], g1 * (double)c.clip_norm / (n + 1e-6), 1e-6 * fabs(g1));
    fx_close(&f);
}
END_TEST

START_TEST(test_clip_no_trigger)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 32);
    fx_open(&f);
    ref_init(&r, &rng, -0.2, 0.2);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_ADAM);
    c.lr = 0.01f;
    c.eps = 0.05f; /* so the update depends on |g|, and a rescale would show */
    double n = global_norm(&r);
    /* Just above the norm: nothing changes (no g *= clip / (n + 1e-6)). */
    c.clip_norm = (float)(n * 1.01);
    fx_optim(&f, &c);
    step_both(&f, &r, &c, 2);
    bp_optim_destroy(f.opt);
    f.opt = NULL;
    /* Also with SGD, where the update is g itself. */
    c = cfg_of(BP_OPTIM_SGD);
    c.lr = 1.0f;
    c.clip_norm = 100.0f;
    fx_optim(&f, &c);
    push_params(&f, &r);
    ref_new_grads(&r, &rng, -1.0, 1.0);
    step_both(&f, &r, &c, 0);
    fx_close(&f);
}
END_TEST

/* -------------------------------------------------------------- schedules */

static void expect_lr_at(fx *f, const bp_optim_config *c, uint64_t t)
{
    ck_assert_int_eq(bp_optim_set_steps(f->opt, t), BP_OK);
    ck_assert_uint_eq(bp_optim_steps(f->opt), t);
    double exp = ref_lr(c, t), got = bp_optim_lr(f->opt);
    ck_assert_msg(fabs(got - exp) <= LR_RTOL * ((double)c->lr + fabs(exp)),
                  "lr at t=%llu: got %.9g, expected %.9g", (unsigned long long)t, got, exp);
}

/* The update applied at step t has size lr_t: plain SGD, p -= lr_t g. */
static void expect_update_at(fx *f, const bp_optim_config *c, uint64_t t, tu_rng *rng)
{
    ref r;
    ref_init(&r, rng, -1.0, 1.0);
    push_params(f, &r);
    ck_assert_int_eq(bp_optim_set_steps(f->opt, t), BP_OK);
    step_both(f, &r, c, 0);
    ck_assert_uint_eq(bp_optim_steps(f->opt), t + 1);
}

START_TEST(test_sched_constant)
{
    fx f;
    tu_rng rng;
    tu_seed(&rng, 41);
    fx_open(&f);
    bp_optim_config c = cfg_of(BP_OPTIM_SGD);
    c.lr = 0.03f;
    fx_optim(&f, &c);
    static const uint64_t ts[] = {0, 1, 7, 1000, 123456789};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        expect_lr_at(&f, &c, ts[i]);
        ck_assert_float_eq(bp_optim_lr(f.opt), 0.03f);
    }
    expect_update_at(&f, &c, 0, &rng);
    expect_update_at(&f, &c, 999, &rng);
    fx_close(&f);
}
END_TEST

START_TEST(test_sched_step)
{
    fx f;
    tu_rng rng;
    tu_seed(&rng, 42);
    fx_open(&f);
    bp_optim_config c = cfg_of(BP_OPTIM_SGD);
    c.lr = 0.1f;
    c.schedule = BP_SCHED_STEP;
    c.step_size = 3;
    c.gamma = 0.5f;
    fx_optim(&f, &c);
    ck_assert_double_eq_tol(bp_optim_lr(f.opt), 0.1, 1e-8);
    static const uint64_t ts[] = {0, 1, 2, 3, 5, 6, 7, 29, 30};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        expect_lr_at(&f, &c, ts[i]);
    /* By hand: floor(7 / 3) = 2, 0.1 * 0.25. */
    ck_assert_int_eq(bp_optim_set_steps(f.opt, 7), BP_OK);
    ck_assert_double_eq_tol(bp_optim_lr(f.opt), 0.025, 1e-8);
    expect_update_at(&f, &c, 2, &rng); /* lr 0.1, and lr for t=3 is next */
    ck_assert_double_eq_tol(bp_optim_lr(f.opt), 0.05, 1e-8);
    expect_update_at(&f, &c, 7, &rng);
    fx_close(&f);
}
END_TEST

START_TEST(test_sched_cosine)
{
    fx f;
    tu_rng rng;
    tu_seed(&rng, 43);
    fx_open(&f);
    bp_optim_config c = cfg_of(BP_OPTIM_SGD);
    c.lr = 0.1f;
    c.schedule = BP_SCHED_COSINE;
    c.warmup_steps = 4;
    c.total_steps = 20;
    c.min_lr = 0.001f;
    fx_optim(&f, &c);
    static const uint64_t ts[] = {0, 1, 2, 3, 4, 5, 8, 12, 16, 19, 20, 21, 25, 1000000};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        expect_lr_at(&f, &c, ts[i]);
    /* By hand: warm-up ramp, peak, mid-cosine (q = 1/2), end, past the end. */
    double lr = c.lr, mn = c.min_lr;
    static const uint64_t ht[] = {0, 1, 3, 4, 12, 20, 25};
    const double hv[] = {lr / 4, lr / 2, lr, lr, mn + (lr - mn) / 2, mn, mn};
    for (size_t i = 0; i < sizeof ht / sizeof ht[0]; i++) {
        ck_assert_int_eq(bp_optim_set_steps(f.opt, ht[i]), BP_OK);
        ck_assert_msg(fabs(bp_optim_lr(f.opt) - hv[i]) <= 1e-7, "t=%llu: lr %.9g, want %.9g",
                      (unsigned long long)ht[i], (double)bp_optim_lr(f.opt), hv[i]);
    }
    /* q = 1/4: min + (lr - min)(1 + cos(pi/4))/2. */
    ck_assert_int_eq(bp_optim_set_steps(f.opt, 8), BP_OK);
    ck_assert_double_eq_tol(bp_optim_lr(f.opt), mn + (lr - mn) * (1 + sqrt(0.5)) / 2, 1e-7);
    /* The update sizes follow. */
    expect_update_at(&f, &c, 0, &rng);
    expect_update_at(&f, &c, 2, &rng);
    expect_update_at(&f, &c, 12, &rng);
    expect_update_at(&f, &c, 19, &rng);
    expect_update_at(&f, &c, 30, &rng);
    fx_close(&f);
}
END_TEST

/* Edge cases of the cosine schedule: no warm-up, and total == warm-up
 * (q's denominator is max(1, 0) = 1). */
START_TEST(test_sched_cosine_edges)
{
    fx f;
    fx_open(&f);
    bp_optim_config c = cfg_of(BP_OPTIM_ADAM);
    c.lr = 0.01f;
    c.schedule = BP_SCHED_COSINE;
    c.warmup_steps = 0;
    c.total_steps = 10;
    c.min_lr = 0.0f;
    fx_optim(&f, &c);
    static const uint64_t ts[] = {0, 1, 5, 9, 10, 11, UINT64_C(1) << 40};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        expect_lr_at(&f, &c, ts[i]);
    ck_assert_int_eq(bp_optim_set_steps(f.opt, 0), BP_OK);
    ck_assert_float_eq(bp_optim_lr(f.opt), 0.01f);
    bp_optim_destroy(f.opt);
    f.opt = NULL;
    c.warmup_steps = 3;
    c.total_steps = 3;
    c.min_lr = 0.002f;
    fx_optim(&f, &c);
    static const uint64_t ts2[] = {0, 1, 2, 3, 4, 100};
    for (size_t i = 0; i < sizeof ts2 / sizeof ts2[0]; i++)
        expect_lr_at(&f, &c, ts2[i]);
    ck_assert_int_eq(bp_optim_set_steps(f.opt, 4), BP_OK);
    ck_assert_float_eq_tol(bp_optim_lr(f.opt), 0.002f, 1e-9f);
    fx_close(&f);
}
END_TEST

/* ------------------------------------------------- counter and state I/O */

START_TEST(test_steps_counter)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 51);
    fx_open(&f);
    ref_init(&r, &rng, -1.0, 1.0);
    push_params(&f, &r);
    push_grads(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_ADAM);
    fx_optim(&f, &c);
    ck_assert_uint_eq(bp_optim_steps(f.opt), 0);
    for (uint64_t i = 1; i <= 4; i++) {
        ck_assert_int_eq(bp_optim_step(f.opt), BP_OK);
        ck_assert_uint_eq(bp_optim_steps(f.opt), i);
    }
    ck_assert_int_eq(bp_optim_set_steps(f.opt, 100), BP_OK);
    ck_assert_uint_eq(bp_optim_steps(f.opt), 100);
    ck_assert_int_eq(bp_optim_step(f.opt), BP_OK);
    ck_assert_uint_eq(bp_optim_steps(f.opt), 101);
    ck_assert_int_eq(bp_optim_set_steps(f.opt, 0), BP_OK);
    ck_assert_uint_eq(bp_optim_steps(f.opt), 0);
    fx_close(&f);
}
END_TEST

START_TEST(test_state_roundtrip)
{
    fx f;
    tu_rng rng;
    tu_seed(&rng, 52);
    fx_open(&f);
    bp_optim_config cs[2];
    cs[0] = cfg_of(BP_OPTIM_SGD);
    cs[0].momentum = 0.9f;
    cs[1] = cfg_of(BP_OPTIM_ADAM);
    for (int o = 0; o < 2; o++) {
        fx_optim(&f, &cs[o]);
        size_t ns = bp_optim_n_slots(f.opt);
        ck_assert_uint_eq(ns, (size_t)o + 1);
        float in[2][N_T][MAXT];
        for (size_t s = 0; s < ns; s++)
            for (int k = 0; k < N_T; k++) {
                tu_fill(&rng, in[s][k], t_size[k], 0.0, 3.0);
                ck_assert_int_eq(bp_optim_set_state(f.opt, t_layer[k], t_which[k], s,
                                                    in[s][k], t_size[k]),
                                 BP_OK);
            }
        /* Read back after all writes: no slot or tensor overwrote another. */
        for (size_t s = 0; s < ns; s++)
            for (int k = 0; k < N_T; k++) {
                float out[MAXT];
                ck_assert_int_eq(bp_optim_get_state(f.opt, t_layer[k], t_which[k], s, out,
                                                    t_size[k]),
                                 BP_OK);
                ck_assert_msg(memcmp(out, in[s][k], t_size[k] * sizeof(float)) == 0,
                              "state slot %zu of %s did not round-trip", s, t_name[k]);
            }
        bp_optim_destroy(f.opt);
        f.opt = NULL;
    }
    fx_close(&f);
}
END_TEST

/* A velocity written with set_state is the one the next step uses. */
START_TEST(test_state_set_used)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 53);
    fx_open(&f);
    ref_init(&r, &rng, -1.0, 1.0);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_SGD);
    c.lr = 0.1f;
    c.momentum = 0.7f;
    c.nesterov = 1;
    fx_optim(&f, &c);
    for (int k = 0; k < N_T; k++) {
        float tmp[MAXT];
        fill_ref(&rng, r.s[0][k], t_size[k], -2.0, 2.0);
        for (size_t i = 0; i < t_size[k]; i++)
            tmp[i] = (float)r.s[0][k][i];
        ck_assert_int_eq(bp_optim_set_state(f.opt, t_layer[k], t_which[k], 0, tmp, t_size[k]),
                         BP_OK);
    }
    step_both(&f, &r, &c, 1);
    fx_close(&f);
}
END_TEST

/* --------------------------------------------------- non-finite gradients */

static int ci_prefix(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++)
        if (tolower((unsigned char)*s) != tolower((unsigned char)*prefix))
            return 0;
    return 1;
}

static int ci_contains(const char *hay, const char *needle)
{
    for (; *hay; hay++)
        if (ci_prefix(hay, needle))
            return 1;
    return 0;
}

/* Some "layer" in msg is followed (after at most 3 non-digits, e.g. " ",
 * "=", " #", "[") by the number idx. */
static int names_layer(const char *msg, size_t idx)
{
    for (const char *p = msg; *p; p++) {
        if (tolower((unsigned char)p[0]) != 'l' || !ci_prefix(p, "layer"))
            continue;
        const char *q = p + 5;
        for (int skip = 0; skip < 3 && *q && !isdigit((unsigned char)*q); skip++)
            q++;
        if (!isdigit((unsigned char)*q))
            continue;
        unsigned long long v = strtoull(q, NULL, 10);
        if (v == idx)
            return 1;
    }
    return 0;
}

static int names_tensor(const char *msg, bp_tensor which)
{
    if (which == BP_WEIGHT)
        return ci_contains(msg, "weight") || strstr(msg, "dW") || strstr(msg, " W");
    return ci_contains(msg, "bias") || strstr(msg, "db") || strstr(msg, " b");
}

/* Everything the optimizer owns or touches, for bitwise comparison. */
typedef struct snap {
    float p[N_T][MAXT];
    float s[2][N_T][MAXT];
    uint64_t steps;
    float lr;
} snap;

static void take_snap(fx *f, snap *sn)
{
    memset(sn, 0, sizeof *sn);
    for (int k = 0; k < N_T; k++) {
        ck_assert_int_eq(bp_net_get_param(f->net, t_layer[k], t_which[k], sn->p[k], t_size[k]),
                         BP_OK);
        for (size_t s = 0; s < bp_optim_n_slots(f->opt); s++)
            ck_assert_int_eq(bp_optim_get_state(f->opt, t_layer[k], t_which[k], s,
                                                sn->s[s][k], t_size[k]),
                             BP_OK);
    }
    sn->steps = bp_optim_steps(f->opt);
    sn->lr = bp_optim_lr(f->opt);
}

static void expect_same_snap(fx *f, const snap *before)
{
    snap after;
    take_snap(f, &after);
    for (int k = 0; k < N_T; k++)
        ck_assert_msg(memcmp(before->p[k], after.p[k], t_size[k] * sizeof(float)) == 0,
                      "parameters of %s changed by a failed step", t_name[k]);
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < N_T; k++)
            ck_assert_msg(memcmp(before->s[s][k], after.s[s][k], t_size[k] * sizeof(float)) ==
                              0,
                          "state slot %d of %s changed by a failed step", s, t_name[k]);
    ck_assert_uint_eq(after.steps, before->steps);
    ck_assert_msg(memcmp(&after.lr, &before->lr, sizeof(float)) == 0, "lr changed");
}

/* Put `bad` into tensor k at index i of the reference grads, push them,
 * step, and check that nothing moved and the message names the tensor. */
static void expect_nonfinite_rejected(fx *f, ref *r, int k, size_t i, double bad)
{
    snap before;
    take_snap(f, &before);
    double keep = r->g[k][i];
    r->g[k][i] = bad;
    push_grads(f, r);
    r->g[k][i] = keep;
    ck_assert_int_eq(bp_optim_step(f->opt), BP_ENUMERIC);
    const char *msg = bp_last_error();
    ck_assert_ptr_nonnull(msg);
    ck_assert_msg(msg[0] != '\0', "empty message for BP_ENUMERIC");
    ck_assert_msg(names_layer(msg, t_layer[k]), "message does not name layer %zu: \"%s\"",
                  t_layer[k], msg);
    ck_assert_msg(names_tensor(msg, t_which[k]), "message does not name %s: \"%s\"",
                  t_which[k] == BP_WEIGHT ? "the weight" : "the bias", msg);
    expect_same_snap(f, &before);
}

/* NaN in the very last tensor (L1.b), after a good step: no partial update
 * of the tensors before it. Then a finite gradient steps normally. */
START_TEST(test_nonfinite_adam_nan)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 61);
    fx_open(&f);
    ref_init(&r, &rng, -1.0, 1.0);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_ADAM);
    c.lr = 0.01f;
    c.weight_decay = 0.1f;
    fx_optim(&f, &c);
    step_both(&f, &r, &c, 2);
    ref_new_grads(&r, &rng, -1.0, 1.0);
    expect_nonfinite_rejected(&f, &r, 3, 1, NAN);
    expect_nonfinite_rejected(&f, &r, 2, 5, -NAN);
    /* Recovery: the reference was not stepped either. */
    step_both(&f, &r, &c, 2);
    ck_assert_uint_eq(bp_optim_steps(f.opt), 2);
    fx_close(&f);
}
END_TEST

START_TEST(test_nonfinite_sgd_inf)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 62);
    fx_open(&f);
    ref_init(&r, &rng, -1.0, 1.0);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_SGD);
    c.lr = 0.1f;
    c.momentum = 0.9f;
    fx_optim(&f, &c);
    step_both(&f, &r, &c, 1);
    expect_nonfinite_rejected(&f, &r, 0, 5, INFINITY);
    expect_nonfinite_rejected(&f, &r, 1, 3, -INFINITY);
    bp_optim_destroy(f.opt);
    f.opt = NULL;
    /* Plain SGD (no state) and a scheduled lr. */
    c.momentum = 0.0f;
    c.schedule = BP_SCHED_STEP;
    c.step_size = 1;
    c.gamma = 0.9f;
    fx_optim(&f, &c);
    ck_assert_int_eq(bp_optim_set_steps(f.opt, 3), BP_OK);
    expect_nonfinite_rejected(&f, &r, 2, 0, NAN);
    fx_close(&f);
}
END_TEST

/* With clipping, an infinite norm must not turn into a scale of 0 (or a NaN
 * from Inf * 0) that is then applied: the step is still rejected. */
START_TEST(test_nonfinite_with_clipping)
{
    fx f;
    ref r;
    tu_rng rng;
    tu_seed(&rng, 63);
    fx_open(&f);
    ref_init(&r, &rng, -1.0, 1.0);
    push_params(&f, &r);
    bp_optim_config c = cfg_of(BP_OPTIM_ADAMW);
    c.clip_norm = 1.0f;
    fx_optim(&f, &c);
    step_both(&f, &r, &c, 2);
    expect_nonfinite_rejected(&f, &r, 2, 7, -INFINITY);
    expect_nonfinite_rejected(&f, &r, 0, 0, NAN);
    fx_close(&f);
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_config_defaults);
    tcase_add_test(tc, test_n_slots);
    suite_add_tcase(s, tc);

    tc = tcase_create("sgd");
    tcase_add_test(tc, test_sgd_plain);
    tcase_add_test(tc, test_sgd_weight_decay);
    tcase_add_test(tc, test_sgd_momentum);
    tcase_add_test(tc, test_sgd_momentum_weight_decay);
    tcase_add_test(tc, test_sgd_nesterov);
    suite_add_tcase(s, tc);

    tc = tcase_create("adam");
    tcase_add_test(tc, test_adam);
    tcase_add_test(tc, test_adam_eps);
    tcase_add_test(tc, test_adam_weight_decay);
    tcase_add_test(tc, test_adamw);
    tcase_add_test(tc, test_adamw_schedule_and_resume);
    suite_add_tcase(s, tc);

    tc = tcase_create("clip");
    tcase_add_test(tc, test_clip_triggers);
    tcase_add_test(tc, test_clip_no_trigger);
    suite_add_tcase(s, tc);

    tc = tcase_create("schedule");
    tcase_add_test(tc, test_sched_constant);
    tcase_add_test(tc, test_sched_step);
    tcase_add_test(tc, test_sched_cosine);
    tcase_add_test(tc, test_sched_cosine_edges);
    suite_add_tcase(s, tc);

    tc = tcase_create("state");
    tcase_add_test(tc, test_steps_counter);
    tcase_add_test(tc, test_state_roundtrip);
    tcase_add_test(tc, test_state_set_used);
    suite_add_tcase(s, tc);

    tc = tcase_create("nonfinite");
    tcase_add_test(tc, test_nonfinite_adam_nan);
    tcase_add_test(tc, test_nonfinite_sgd_inf);
    tcase_add_test(tc, test_nonfinite_with_clipping);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(optim_suite());
}
