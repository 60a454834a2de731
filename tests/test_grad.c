/* Gradients of the whole net against an independent double-precision
 * reference written here with plain loops.
 *
 *  1. The reference (forward, the three heads' losses as backprop.h defines
 *     them, analytic backward for all six activations) is itself checked
 *     against central finite differences of its own double loss.
 *  2. The library's loss, layer outputs, dW, db and dL/dA_{i-1} of every layer
 *     (dL/dX included) are compared with the reference for every activation x
 *     head on small nets with odd widths and one medium net, batch 1 and 7.
 *  3. bp_gradcheck() reports small errors for smooth activations, fills every
 *     result and leaves the parameters bitwise unchanged.
 *  4. Loss and gradients are bitwise the same with 1, 2 and 3 threads.
 *
 * The largest error measured against the reference is printed on one line
 * ("test_grad: largest gradient error vs double reference ...").
 */
#include <backprop.h>
#include <check.h>
#include "testutil.h"
#include "tu_suite.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 4
#define N_ACTS 6
#define N_HEADS 3
#define LEAKY_ALPHA 0.1f

static const bp_activation all_acts[N_ACTS] = {
    BP_ACT_IDENTITY, BP_ACT_RELU, BP_ACT_LEAKY_RELU,
    BP_ACT_SIGMOID, BP_ACT_TANH, BP_ACT_GELU};
static const char *const act_names[N_ACTS] = {
    "identity", "relu", "leaky_relu", "sigmoid", "tanh", "gelu"};
static const bp_head all_heads[N_HEADS] = {
    BP_HEAD_SOFTMAX_CE, BP_HEAD_MSE, BP_HEAD_SIGMOID_BCE};
static const char *const head_names[N_HEADS] = {"softmax_ce", "mse", "sigmoid_bce"};

/* An architecture: n_in inputs, then the widths of n_layers dense layers. */
typedef struct arch {
    size_t n_in;
    size_t n_layers;
    size_t width[MAX_LAYERS];
} arch;

/* Small nets with odd widths, including width-1 layers and a 1-wide input,
 * and one medium net whose GEMMs span several register blocks. */
static const arch small_archs[] = {
    {3, 1, {1}},
    {5, 1, {7}},
    {1, 2, {13, 3}},
    {7, 3, {5, 1, 3}},
    {13, 3, {3, 7, 5}},
    {5, 4, {7, 13, 3, 5}},
    {37, 3, {67, 129, 11}},
};
#define N_SMALL_ARCHS (sizeof small_archs / sizeof small_archs[0])

static const size_t batches[] = {1, 7};
#define N_BATCHES (sizeof batches / sizeof batches[0])

static size_t layer_in(const arch *a, size_t i) { return i == 0 ? a->n_in : a->width[i - 1]; }
static size_t arch_out(const arch *a) { return a->width[a->n_layers - 1]; }

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    ck_assert_msg(p != NULL, "out of memory");
    return p;
}

/* ------------------------------------------------------------- reference */

/* sqrt(2 / pi): M_PI is not ISO C. */
#define GELU_C 0.79788456080286535587989211986876
#define GELU_K 0.044715

/* f(z) for each activation; the formulas of backprop.h. */
static double act_f(bp_activation a, double alpha, double z)
{
    switch (a) {
    case BP_ACT_IDENTITY: return z;
    case BP_ACT_RELU: return z > 0 ? z : 0.0;
    case BP_ACT_LEAKY_RELU: return z > 0 ? z : alpha * z;
    case BP_ACT_SIGMOID: return 1.0 / (1.0 + exp(-z));
    case BP_ACT_TANH: return tanh(z);
    case BP_ACT_GELU: return 0.5 * z * (1.0 + tanh(GELU_C * (z + GELU_K * z * z * z)));
    }
    return NAN;
}

/* f'(z). GELU: with u = c (z + k z^3), t = tanh u,
 * f'(z) = (1 + t) / 2 + z/2 (1 - t^2) c (1 + 3 k z^2). */
static double act_df(bp_activation a, double alpha, double z)
{
    switch (a) {
    case BP_ACT_IDENTITY: return 1.0;
    case BP_ACT_RELU: return z > 0 ? 1.0 : 0.0;
    case BP_ACT_LEAKY_RELU: return z > 0 ? 1.0 : alpha;
    case BP_ACT_SIGMOID: {
        double s = 1.0 / (1.0 + exp(-z));
        return s * (1.0 - s);
    }
    case BP_ACT_TANH: {
        double t = tanh(z);
        return 1.0 - t * t;
    }
    case BP_ACT_GELU: {
        double t = tanh(GELU_C * (z + GELU_K * z * z * z));
        return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_K * z * z);
    }
    }
    return NAN;
}

static int act_has_kink(bp_activation a)
{
    return a == BP_ACT_RELU || a == BP_ACT_LEAKY_RELU;
}

static double sigmoid_d(double y)
{
    if (y >= 0)
        return 1.0 / (1.0 + exp(-y));
    double e = exp(y);
    return e / (1.0 + e);
}

/* One problem in double: parameters, data, and everything forward and
 * backward produce. A[0] is X; A[i+1] = act(Z[i]) is layer i's output;
 * dA[i] = dL/dA[i], so dA[0] = dL/dX. */
typedef struct ref_problem {
    arch a;
    bp_activation act;
    double alpha;
    bp_head head;
    size_t B;
    double *W[MAX_LAYERS], *b[MAX_LAYERS];
    const int32_t *labels; /* softmax-CE */
    double *T;             /* MSE, BCE: (B, n_out) */
    double *A[MAX_LAYERS + 1], *Z[MAX_LAYERS];
    double *dW[MAX_LAYERS], *db[MAX_LAYERS], *dA[MAX_LAYERS + 1];
    /* Magnitudes: the same backward on absolute values (see ref_backward). */
    double *mW[MAX_LAYERS], *mb[MAX_LAYERS], *mA[MAX_LAYERS + 1];
} ref_problem;

static void ref_alloc(ref_problem *p)
{
    const arch *a = &p->a;
    p->A[0] = xcalloc(p->B * a->n_in, sizeof(double));
    p->dA[0] = xcalloc(p->B * a->n_in, sizeof(double));
    p->mA[0] = xcalloc(p->B * a->n_in, sizeof(double));
    for (size_t i = 0; i < a->n_layers; i++) {
        size_t ni = layer_in(a, i), no = a->width[i];
        p->W[i] = xcalloc(no * ni, sizeof(double));
        p->dW[i] = xcalloc(no * ni, sizeof(double));
        p->b[i] = xcalloc(no, sizeof(double));
        p->db[i] = xcalloc(no, sizeof(double));
        p->Z[i] = xcalloc(p->B * no, sizeof(double));
        p->A[i + 1] = xcalloc(p->B * no, sizeof(double));
        p->dA[i + 1] = xcalloc(p->B * no, sizeof(double));
        p->mW[i] = xcalloc(no * ni, sizeof(double));
        p->mb[i] = xcalloc(no, sizeof(double));
        p->mA[i + 1] = xcalloc(p->B * no, sizeof(double));
    }
    p->T = xcalloc(p->B * arch_out(a), sizeof(double));
}

static void ref_free(ref_problem *p)
{
    for (size_t i = 0; i < p->a.n_layers; i++) {
        free(p->W[i]); free(p->dW[i]); free(p->b[i]); free(p->db[i]);
        free(p->Z[i]); free(p->A[i + 1]); free(p->dA[i + 1]);
        free(p->mW[i]); free(p->mb[i]); free(p->mA[i + 1]);
    }
    free(p->A[0]); free(p->dA[0]); free(p->mA[0]); free(p->T);
}

/* Z_i = A_{i-1} W_i^T + b_i; A_i = act(Z_i). */
static void ref_forward(ref_problem *p)
{
    for (size_t i = 0; i < p->a.n_layers; i++) {
        size_t ni = layer_in(&p->a, i), no = p->a.width[i];
        for (size_t r = 0; r < p->B; r++)
            for (size_t j = 0; j < no; j++) {
                double z = p->b[i][j];
                for (size_t k = 0; k < ni; k++)
                    z += p->A[i][r * ni + k] * p->W[i][j * ni + k];
                p->Z[i][r * no + j] = z;
                p->A[i + 1][r * no + j] = act_f(p->act, p->alpha, z);
            }
    }
}

/* The head's mean loss on Y = A[L] (backprop.h). */
static double ref_loss(const ref_problem *p)
{
    size_t n = arch_out(&p->a), L = p->a.n_layers;
    const double *Y = p->A[L];
    double sum = 0;
    for (size_t r = 0; r < p->B; r++) {
        const double *y = Y + r * n;
        if (p->head == BP_HEAD_SOFTMAX_CE) {
            /* -log softmax(y)[l] = logsumexp(y) - y[l] */
            double m = y[0], s = 0;
            for (size_t j = 1; j < n; j++) m = y[j] > m ? y[j] : m;
            for (size_t j = 0; j < n; j++) s += exp(y[j] - m);
            sum += m + log(s) - y[p->labels[r]];
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            double t = p->T[r * n + j], v = y[j];
            if (p->head == BP_HEAD_MSE)
                sum += (v - t) * (v - t);
            else /* -(t log s(v) + (1-t) log(1-s(v))) = max(v,0) - v t + log1p(e^-|v|) */
                sum += (v > 0 ? v : 0.0) - v * t + log1p(exp(-fabs(v)));
        }
    }
    return p->head == BP_HEAD_SOFTMAX_CE ? sum / (double)p->B : sum / (double)(p->B * n);
}

/* dL/dY of the head: softmax-CE (p - onehot) / B; MSE 2 (Y - T) / (B n);
 * BCE (s(Y) - T) / (B n). Its magnitude mY is the same with |terms| added
 * instead of subtracted: (p + onehot) / B, 2 (|Y| + |T|) / (B n),
 * (s(Y) + T) / (B n). */
static void ref_head_grad(ref_problem *p)
{
    size_t n = arch_out(&p->a), L = p->a.n_layers;
    const double *Y = p->A[L];
    double *dY = p->dA[L], *mY = p->mA[L];
    for (size_t r = 0; r < p->B; r++) {
        const double *y = Y + r * n;
        if (p->head == BP_HEAD_SOFTMAX_CE) {
            double m = y[0], s = 0;
            for (size_t j = 1; j < n; j++) m = y[j] > m ? y[j] : m;
            for (size_t j = 0; j < n; j++) s += exp(y[j] - m);
            for (size_t j = 0; j < n; j++) {
                double pj = exp(y[j] - m) / s, hot = j == (size_t)p->labels[r] ? 1.0 : 0.0;
                dY[r * n + j] = (pj - hot) / (double)p->B;
                mY[r * n + j] = (pj + hot) / (double)p->B;
            }
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            double t = p->T[r * n + j], v = y[j];
            double g = p->head == BP_HEAD_MSE ? 2.0 * (v - t) : sigmoid_d(v) - t;
            double mg = p->head == BP_HEAD_MSE ? 2.0 * (fabs(v) + fabs(t)) : sigmoid_d(v) + t;
            dY[r * n + j] = g / (double)(p->B * n);
            mY[r * n + j] = mg / (double)(p->B * n);
        }
    }
}

/* One layer's backward: dZ = dA_i * f'(Z_i); dW_i = dZ^T A_{i-1};
 * db_i = sum_r dZ; dA_{i-1} = dZ W_i. With absolute values (mag = 1) it
 * gives the magnitudes: every sum of the true backward with its terms
 * replaced by their absolute values. */
static void ref_layer_backward(ref_problem *p, size_t i, int mag, const double *dA_out,
                               double *dW, double *db, double *dA_in)
{
    size_t ni = layer_in(&p->a, i), no = p->a.width[i];
    double *dZ = xcalloc(p->B * no, sizeof(double));
    for (size_t e = 0; e < p->B * no; e++) {
        double d = act_df(p->act, p->alpha, p->Z[i][e]);
        dZ[e] = dA_out[e] * (mag ? fabs(d) : d);
    }
    for (size_t j = 0; j < no; j++) {
        double s = 0;
        for (size_t r = 0; r < p->B; r++) s += dZ[r * no + j];
        db[j] = s;
        for (size_t k = 0; k < ni; k++) {
            double w = 0;
            for (size_t r = 0; r < p->B; r++) {
                double x = p->A[i][r * ni + k];
                w += dZ[r * no + j] * (mag ? fabs(x) : x);
            }
            dW[j * ni + k] = w;
        }
    }
    for (size_t r = 0; r < p->B; r++)
        for (size_t k = 0; k < ni; k++) {
            double s = 0;
            for (size_t j = 0; j < no; j++) {
                double w = p->W[i][j * ni + k];
                s += dZ[r * no + j] * (mag ? fabs(w) : w);
            }
            dA_in[r * ni + k] = s;
        }
    free(dZ);
}

/* The gradients (dW, db, dA) and their magnitudes (mW, mb, mA). */
static void ref_backward(ref_problem *p)
{
    ref_head_grad(p);
    for (size_t i = p->a.n_layers; i-- > 0;) {
        ref_layer_backward(p, i, 0, p->dA[i + 1], p->dW[i], p->db[i], p->dA[i]);
        ref_layer_backward(p, i, 1, p->mA[i + 1], p->mW[i], p->mb[i], p->mA[i]);
    }
}

/* Smallest |z| over the pre-activations of kinked activations (+inf if none). */
static double ref_kink_margin(const ref_problem *p)
{
    double m = INFINITY;
    if (!act_has_kink(p->act))
        return m;
    for (size_t i = 0; i < p->a.n_layers; i++)
        for (size_t e = 0; e < p->B * p->a.width[i]; e++)
            m = fabs(p->Z[i][e]) < m ? fabs(p->Z[i][e]) : m;
    return m;
}

/* ------------------------------------------------------- random problems */

/* The same problem in float, as handed to the library. */
typedef struct float_problem {
    float *W[MAX_LAYERS], *b[MAX_LAYERS], *X, *T;
    int32_t *labels;
} float_problem;

static void float_free(float_problem *f, size_t n_layers)
{
    for (size_t i = 0; i < n_layers; i++) { free(f->W[i]); free(f->b[i]); }
    free(f->X); free(f->T); free(f->labels);
}

/* Random float parameters and data, copied exactly into the double problem.
 * Weights U(-1.5a, 1.5a) with the Xavier a = sqrt(6 / (n_in + n_out)) (a
 * little larger than usual so the nonlinearities bend), biases U(-0.5, 0.5),
 * X U(-1.5, 1.5), labels uniform, MSE targets U(-1, 1), BCE targets U(0, 1)
 * with some exact 0s and 1s. */
static void make_problem(ref_problem *p, float_problem *f, uint64_t seed)
{
    tu_rng rng;
    tu_seed(&rng, seed);
    const arch *a = &p->a;
    size_t n_out = arch_out(a);
    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < a->n_layers; i++) {
        size_t ni = layer_in(a, i), no = a->width[i];
        double lim = 1.5 * sqrt(6.0 / (double)(ni + no));
        f->W[i] = xcalloc(no * ni, sizeof(float));
        f->b[i] = xcalloc(no, sizeof(float));
        tu_fill(&rng, f->W[i], no * ni, -lim, lim);
        tu_fill(&rng, f->b[i], no, -0.5, 0.5);
        for (size_t e = 0; e < no * ni; e++) p->W[i][e] = f->W[i][e];
        for (size_t e = 0; e < no; e++) p->b[i][e] = f->b[i][e];
    }
    f->X = xcalloc(p->B * a->n_in, sizeof(float));
    tu_fill(&rng, f->X, p->B * a->n_in, -1.5, 1.5);
    for (size_t e = 0; e < p->B * a->n_in; e++) p->A[0][e] = f->X[e];
    f->labels = xcalloc(p->B, sizeof(int32_t));
    for (size_t r = 0; r < p->B; r++) f->labels[r] = (int32_t)(tu_next(&rng) % n_out);
    p->labels = f->labels;
    f->T = xcalloc(p->B * n_out, sizeof(float));
    for (size_t e = 0; e < p->B * n_out; e++) {
        if (p->head == BP_HEAD_MSE)
            f->T[e] = (float)tu_uniform(&rng, -1.0, 1.0);
        else {
            uint64_t k = tu_next(&rng) % 4;
            f->T[e] = k == 0 ? 0.0f : k == 1 ? 1.0f : (float)tu_uniform(&rng, 0.0, 1.0);
        }
        p->T[e] = f->T[e];
    }
}

/* Builds a problem whose kinked pre-activations are all at least `margin`
 * away from 0 (so float and double, and finite differences, stay on the same
 * side of every kink), trying successive seeds. Returns the seed used. */
static uint64_t make_smooth_problem(ref_problem *p, float_problem *f, uint64_t seed,
                                    double margin)
{
    for (int attempt = 0; attempt < 1000; attempt++, seed += 0x1000) {
        make_problem(p, f, seed);
        ref_forward(p);
        if (ref_kink_margin(p) >= margin)
            return seed;
        float_free(f, p->a.n_layers);
    }
    ck_abort_msg("no problem without ReLU kinks found");
    return 0;
}

static void problem_init(ref_problem *p, const arch *a, bp_activation act,
                         bp_head head, size_t B)
{
    memset(p, 0, sizeof *p);
    p->a = *a;
    p->act = act;
    p->alpha = LEAKY_ALPHA; /* the float the library gets, exactly */
    p->head = head;
    p->B = B;
    ref_alloc(p);
}

static void describe(char *buf, size_t size, const ref_problem *p, uint64_t seed)
{
    int n = snprintf(buf, size, "act=%s head=%s B=%zu n_in=%zu widths=",
                     act_names[p->act], head_names[p->head], p->B, p->a.n_in);
    for (size_t i = 0; i < p->a.n_layers && n > 0 && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, "%s%zu", i ? "," : "", p->a.width[i]);
    if (n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, " seed=%#llx", (unsigned long long)seed);
}

/* --------------------------------------- 1. the reference vs its own FD */

/* Central differences in double with h = 1e-6. Truncation error is
 * h^2 |L'''| / 6 ~ 1e-13; rounding error is about eps |L| / h ~ 1e-10 |L|.
 * So |analytic - fd| <= 1e-6 max(|analytic|, |fd|) + 1e-9 max(1, |L|):
 * the 1e-9 floor is ten times the rounding error for entries whose gradient
 * is nearly zero. ReLU problems keep every pre-activation >= 1e-3 away from
 * its kink, far beyond what a 1e-6 step can move it. */
#define FD_H 1e-6
#define FD_RTOL 1e-6
#define FD_ATOL 1e-9

static double fd_at(ref_problem *p, double *x)
{
    double save = *x;
    *x = save + FD_H;
    ref_forward(p);
    double lp = ref_loss(p);
    *x = save - FD_H;
    ref_forward(p);
    double lm = ref_loss(p);
    *x = save;
    return (lp - lm) / (2 * FD_H);
}

/* Checks the analytic gradient g (n entries) of parameter/input x by FD;
 * returns the worst relative error |g - fd| / max(|g|, |fd|) over entries
 * with |g| >= 1e-4 (below, the 1e-10 rounding of the FD itself dominates). */
static double fd_check_tensor(ref_problem *p, double *x, const double *g, size_t n,
                              double loss, const char *what, size_t layer, const char *desc)
{
    double worst = 0;
    for (size_t e = 0; e < n; e++) {
        double fd = fd_at(p, x + e);
        double d = fabs(g[e] - fd), m = fmax(fabs(g[e]), fabs(fd));
        ck_assert_msg(d <= FD_RTOL * m + FD_ATOL * fmax(1.0, fabs(loss)),
                      "reference %s of layer %zu [%zu]: analytic %.17g, fd %.17g (%s)",
                      what, layer, e, g[e], fd, desc);
        if (m >= 1e-4)
            worst = fmax(worst, d / m);
    }
    return worst;
}

START_TEST(test_reference_vs_fd)
{
    static const arch fd_archs[] = {{4, 1, {3}}, {3, 2, {5, 3}}, {5, 4, {3, 7, 1, 5}}};
    double worst = 0;
    for (size_t ia = 0; ia < sizeof fd_archs / sizeof fd_archs[0]; ia++)
        for (size_t iact = 0; iact < N_ACTS; iact++)
            for (size_t ih = 0; ih < N_HEADS; ih++) {
                ref_problem p;
                float_problem f;
                char desc[160];
                problem_init(&p, &fd_archs[ia], all_acts[iact], all_heads[ih], 3);
                uint64_t seed = make_smooth_problem(&p, &f, 0xF00D + 977 * ia + 31 * iact + ih,
                                                    1e-3);
                describe(desc, sizeof desc, &p, seed);
                ref_forward(&p);
                double loss = ref_loss(&p);
                ref_backward(&p);
                for (size_t i = 0; i < p.a.n_layers; i++) {
                    size_t ni = layer_in(&p.a, i), no = p.a.width[i];
                    worst = fmax(worst, fd_check_tensor(&p, p.W[i], p.dW[i], no * ni, loss,
                                                        "dW", i, desc));
                    worst = fmax(worst, fd_check_tensor(&p, p.b[i], p.db[i], no, loss,
                                                        "db", i, desc));
                }
                worst = fmax(worst, fd_check_tensor(&p, p.A[0], p.dA[0], p.B * p.a.n_in, loss,
                                                    "dX", 0, desc));
                ref_free(&p);
                float_free(&f, fd_archs[ia].n_layers);
            }
    printf("test_grad: reference vs central differences (h=%g): largest relative error %.3g (entries >= 1e-4)\n",
           FD_H, worst);
    fflush(stdout);
}
END_TEST

/* -------------------------------------------------- running the library */

/* What the library produced for one problem. dX[i] = dL/d(input of layer i). */
typedef struct lib_result {
    float loss;
    float *dW[MAX_LAYERS], *db[MAX_LAYERS], *dX[MAX_LAYERS], *A[MAX_LAYERS];
} lib_result;

static void lib_result_free(lib_result *r, size_t n_layers)
{
    for (size_t i = 0; i < n_layers; i++) {
        free(r->dW[i]); free(r->db[i]); free(r->dX[i]); free(r->A[i]);
    }
}

#define CHECK_BP(call)                                                         \
    do {                                                                       \
        bp_status st_ = (call);                                                \
        ck_assert_msg(st_ == BP_OK, "%s: %s (%s)", #call, bp_status_str(st_),  \
                      bp_last_error());                                        \
    } while (0)

static bp_net *lib_net(bp_ctx *ctx, const arch *a, bp_activation act, bp_head head,
                       size_t max_batch, const float_problem *f)
{
    bp_layer_spec spec[MAX_LAYERS];
    for (size_t i = 0; i < a->n_layers; i++) {
        spec[i].n_out = a->width[i];
        spec[i].activation = act;
        spec[i].alpha = LEAKY_ALPHA; /* set on every layer: ignored unless leaky */
    }
    bp_net *net = NULL;
    CHECK_BP(bp_net_create(&net, ctx, a->n_in, a->n_layers, spec, head, max_batch));
    for (size_t i = 0; i < a->n_layers; i++) {
        size_t ni = layer_in(a, i), no = a->width[i];
        CHECK_BP(bp_net_set_param(net, i, BP_WEIGHT, f->W[i], no * ni));
        CHECK_BP(bp_net_set_param(net, i, BP_BIAS, f->b[i], no));
    }
    return net;
}

/* forward + backward with input gradients on; copies out everything. */
static void lib_run(bp_net *net, const arch *a, bp_head head, size_t B,
                    const float_problem *f, lib_result *r)
{
    memset(r, 0, sizeof *r);
    CHECK_BP(bp_net_set_input_grad(net, 1));
    CHECK_BP(bp_net_forward(net, f->X, B));
    const int32_t *labels = head == BP_HEAD_SOFTMAX_CE ? f->labels : NULL;
    const float *targets = head == BP_HEAD_SOFTMAX_CE ? NULL : f->T;
    r->loss = NAN;
    CHECK_BP(bp_net_backward(net, labels, targets, &r->loss));
    for (size_t i = 0; i < a->n_layers; i++) {
        size_t ni = layer_in(a, i), no = a->width[i], rows = 0, cols = 0;
        const float *view = NULL;
        r->dW[i] = xcalloc(no * ni, sizeof(float));
        r->db[i] = xcalloc(no, sizeof(float));
        r->dX[i] = xcalloc(B * ni, sizeof(float));
        r->A[i] = xcalloc(B * no, sizeof(float));
        CHECK_BP(bp_net_get_grad(net, i, BP_WEIGHT, r->dW[i], no * ni));
        CHECK_BP(bp_net_get_grad(net, i, BP_BIAS, r->db[i], no));
        CHECK_BP(bp_net_input_grad(net, i, &view, &rows, &cols));
        ck_assert_msg(view != NULL && rows == B && cols == ni,
                      "bp_net_input_grad(layer %zu): %zu x %zu, expected %zu x %zu",
                      i, rows, cols, B, ni);
        memcpy(r->dX[i], view, B * ni * sizeof(float));
        CHECK_BP(bp_net_output(net, i, &view, &rows, &cols));
        ck_assert_msg(view != NULL && rows == B && cols == no,
                      "bp_net_output(layer %zu): %zu x %zu, expected %zu x %zu",
                      i, rows, cols, B, no);
        memcpy(r->A[i], view, B * no * sizeof(float));
    }
}

/* ------------------------------------- 2. the library vs the reference */

/* Tolerance. The library runs in float32: every operation rounds
 * (u = 2^-24 ~ 6e-8 relative) and a sum of K terms carries an error of about
 * sqrt(K) u (at worst K u) times the sum of the terms' MAGNITUDES, not times
 * the sum itself. Cancellation is common here: the head gradient p - onehot,
 * s(Y) - T or Y - T is small where the net fits, and dX, db sum terms of
 * both signs. So the scale of each gradient tensor is its magnitude tensor M
 * (the reference backward run on absolute values, starting from the head's
 * |terms| (p + onehot)/B, 2(|Y| + |T|)/(B n), (s(Y) + T)/(B n)), which is
 * >= |ref| entrywise; it is what the float error is proportional to. The
 * criterion per tensor is
 *     |lib - ref| <= ATOL * max M + RTOL * |ref|
 * with ATOL = 1e-5 and RTOL = 1e-4: K <= 129, up to 4 layers, plus the
 * float rounding of the forward pass and of exp/tanh give ~1e-7..1e-6
 * (measured: < 1e-6 of max M), leaving an order of magnitude or more,
 * while any wrong formula (a missed factor, 1/B vs 1/(B n), a wrong
 * derivative, a leaky slope on plain ReLU) is off by far more. The layer
 * outputs use the same criterion with M = |ref|. */
#define LIB_RTOL 1e-4
#define LIB_ATOL 1e-5
/* The loss is a single float computed from float outputs: a few ulps. */
#define LOSS_RTOL 1e-5
#define LOSS_ATOL 1e-6
/* Problems keep kinked pre-activations this far from 0, two orders above
 * the float rounding of Z (~sqrt(K) u times terms of ~0.1: < 1e-6), so float
 * and double agree on which side of every kink each unit is. */
#define KINK_MARGIN 1e-4

static double g_max_norm_err;   /* max over tensors of max|lib - ref| / max M */
static double g_max_rel_err;    /* max |lib - ref| / |ref| over entries >= 1% of max|ref| */
static char g_worst_case[256];
static int g_n_fail;
static char g_first_fail[1024];

static void record_failure(const char *msg)
{
    if (g_n_fail < 40)
        printf("FAIL %s\n", msg);
    if (g_n_fail == 0)
        snprintf(g_first_fail, sizeof g_first_fail, "%s", msg);
    g_n_fail++;
}

/* Compares one tensor; records a failure naming its largest difference. */
/* mag = NULL: the magnitude is |ref| (layer outputs). */
static void compare_tensor(const char *what, size_t layer, const float *lib, const double *ref,
                           const double *mag, size_t n, const char *desc)
{
    double maxref = 0, maxmag = 0, maxdiff = 0, excess = 0, rel = 0;
    size_t at = 0, worst = 0;
    for (size_t e = 0; e < n; e++) {
        maxref = fmax(maxref, fabs(ref[e]));
        maxmag = fmax(maxmag, mag ? mag[e] : fabs(ref[e]));
    }
    for (size_t e = 0; e < n; e++) {
        double d = fabs((double)lib[e] - ref[e]);
        double tol = LIB_ATOL * maxmag + LIB_RTOL * fabs(ref[e]);
        if (!(d <= maxdiff)) { maxdiff = d; at = e; } /* NaN counts as worst */
        if (!(d <= tol) && (excess == 0 || d - tol > excess)) {
            excess = isnan(d) ? INFINITY : d - tol;
            worst = e;
        }
        if (fabs(ref[e]) >= 0.01 * maxref && maxref > 0)
            rel = fmax(rel, d / fabs(ref[e]));
    }
    if (mag) {
        double norm = maxmag > 0 ? maxdiff / maxmag : maxdiff;
        if (norm > g_max_norm_err) {
            g_max_norm_err = norm;
            snprintf(g_worst_case, sizeof g_worst_case, "%s layer %zu, %s", what, layer, desc);
        }
        g_max_rel_err = fmax(g_max_rel_err, rel);
    }
    if (excess > 0) {
        char msg[512];
        snprintf(msg, sizeof msg,
                 "%s of layer %zu: entry [%zu] lib %.9g ref %.9g; largest |lib-ref| %.3g at "
                 "[%zu], max|ref| %.3g, max M %.3g (%s)",
                 what, layer, worst, (double)lib[worst], ref[worst], maxdiff, at, maxref, maxmag,
                 desc);
        record_failure(msg);
    }
}

static void compare_problem(const ref_problem *p, const lib_result *r, const char *desc)
{
    double loss = ref_loss(p);
    if (!(fabs((double)r->loss - loss) <= LOSS_ATOL + LOSS_RTOL * fabs(loss))) {
        char msg[512];
        snprintf(msg, sizeof msg, "loss: lib %.9g ref %.9g (%s)", (double)r->loss, loss, desc);
        record_failure(msg);
    }
    for (size_t i = 0; i < p->a.n_layers; i++) {
        size_t ni = layer_in(&p->a, i), no = p->a.width[i];
        compare_tensor("output A", i, r->A[i], p->A[i + 1], NULL, p->B * no, desc);
        compare_tensor("dW", i, r->dW[i], p->dW[i], p->mW[i], no * ni, desc);
        compare_tensor("db", i, r->db[i], p->db[i], p->mb[i], no, desc);
        compare_tensor("input grad dL/dA_in", i, r->dX[i], p->dA[i], p->mA[i], p->B * ni, desc);
    }
}

static int same_result(const lib_result *x, const lib_result *y, const arch *a, size_t B)
{
    if (memcmp(&x->loss, &y->loss, sizeof(float)) != 0)
        return 0;
    for (size_t i = 0; i < a->n_layers; i++) {
        size_t ni = layer_in(a, i), no = a->width[i];
        if (memcmp(x->dW[i], y->dW[i], no * ni * sizeof(float)) != 0 ||
            memcmp(x->db[i], y->db[i], no * sizeof(float)) != 0 ||
            memcmp(x->dX[i], y->dX[i], B * ni * sizeof(float)) != 0)
            return 0;
    }
    return 1;
}

START_TEST(test_library_vs_reference)
{
    bp_ctx *ctx = NULL;
    CHECK_BP(bp_ctx_create(&ctx, 2));
    size_t n_cases = 0;
    for (size_t iact = 0; iact < N_ACTS; iact++)
        for (size_t ih = 0; ih < N_HEADS; ih++)
            for (size_t ia = 0; ia < N_SMALL_ARCHS; ia++)
                for (size_t ib = 0; ib < N_BATCHES; ib++) {
                    const arch *a = &small_archs[ia];
                    ref_problem p;
                    float_problem f;
                    char desc[160];
                    problem_init(&p, a, all_acts[iact], all_heads[ih], batches[ib]);
                    uint64_t seed = make_smooth_problem(
                        &p, &f, 0xB0B0 + 1000003 * iact + 10007 * ih + 101 * ia + ib,
                        KINK_MARGIN);
                    describe(desc, sizeof desc, &p, seed);
                    ref_forward(&p);
                    ref_backward(&p);

                    /* max_batch above B: a batch smaller than the net's maximum. */
                    bp_net *net = lib_net(ctx, a, p.act, p.head, p.B + 2, &f);
                    lib_result r, again;
                    lib_run(net, a, p.head, p.B, &f, &r);
                    compare_problem(&p, &r, desc);
                    /* A second pass gives the same bits: gradients are
                     * overwritten, not accumulated. */
                    lib_run(net, a, p.head, p.B, &f, &again);
                    if (!same_result(&r, &again, a, p.B)) {
                        char msg[256];
                        snprintf(msg, sizeof msg, "second forward+backward differs (%s)", desc);
                        record_failure(msg);
                    }
                    lib_result_free(&r, a->n_layers);
                    lib_result_free(&again, a->n_layers);
                    bp_net_destroy(net);
                    ref_free(&p);
                    float_free(&f, a->n_layers);
                    n_cases++;
                }
    bp_ctx_destroy(ctx);
    printf("test_grad: largest gradient error vs double reference over %zu nets "
           "(6 activations x 3 heads): max|lib-ref| / max M per tensor = %.3g "
           "(%s); elementwise |lib-ref|/|ref| (entries >= 1%% of max) = %.3g\n",
           n_cases, g_max_norm_err, g_worst_case, g_max_rel_err);
    fflush(stdout);
    ck_assert_msg(g_n_fail == 0, "%d mismatches vs reference; first: %s", g_n_fail,
                  g_first_fail);
}
END_TEST

/* ------------------------------------------------------ 3. bp_gradcheck */

/* The library's float gradients against its own double finite differences.
 * For smooth activations the float gradients are within ~1e-6 of the double
 * ones relative to the tensor's magnitudes (measured above), and h = 1e-5
 * in double adds ~1e-10; bp_gradcheck divides by max(|g|, |fd|, 1e-4), so
 * an absolute float error of ~1e-8 on a tiny entry weighs up to 1e-4.
 * 1e-3 leaves a margin of ten over that. */
#define GC_BOUND 1e-3

START_TEST(test_gradcheck)
{
    static const arch gc_archs[] = {{4, 2, {5, 3}}, {3, 3, {7, 5, 3}}};
    static const bp_activation smooth[] = {BP_ACT_TANH, BP_ACT_SIGMOID, BP_ACT_GELU};
    bp_ctx *ctx = NULL;
    CHECK_BP(bp_ctx_create(&ctx, 2));
    double worst = 0;
    for (size_t ia = 0; ia < sizeof gc_archs / sizeof gc_archs[0]; ia++)
        for (size_t is = 0; is < sizeof smooth / sizeof smooth[0]; is++)
            for (size_t ih = 0; ih < N_HEADS; ih++) {
                const arch *a = &gc_archs[ia];
                ref_problem p;
                float_problem f;
                char desc[160];
                problem_init(&p, a, smooth[is], all_heads[ih], 5);
                uint64_t seed = 0x6C6C + 7919 * ia + 131 * is + ih;
                make_problem(&p, &f, seed);
                describe(desc, sizeof desc, &p, seed);
                bp_net *net = lib_net(ctx, a, p.act, p.head, p.B, &f);
                const int32_t *labels = p.head == BP_HEAD_SOFTMAX_CE ? f.labels : NULL;
                const float *targets = p.head == BP_HEAD_SOFTMAX_CE ? NULL : f.T;
                bp_gradcheck_result res[2 * MAX_LAYERS];
                /* max_per_tensor 0 checks every entry; 3 at most three. */
                for (size_t limit = 0; limit <= 3; limit += 3) {
                    memset(res, 0xA5, sizeof res);
                    CHECK_BP(bp_gradcheck(net, f.X, labels, targets, p.B, 1e-5, limit, res,
                                          2 * a->n_layers));
                    for (size_t i = 0; i < a->n_layers; i++)
                        for (size_t w = 0; w < 2; w++) {
                            const bp_gradcheck_result *g = &res[2 * i + w];
                            size_t count = w == 0 ? a->width[i] * layer_in(a, i) : a->width[i];
                            size_t expect = limit == 0 || limit > count ? count : limit;
                            ck_assert_msg(g->layer == i && g->which == (w ? BP_BIAS : BP_WEIGHT),
                                          "result %zu names layer %zu tensor %d (%s)",
                                          2 * i + w, g->layer, (int)g->which, desc);
                            ck_assert_msg(g->n_checked > 0 && g->n_checked <= expect,
                                          "layer %zu %s: n_checked %zu, expected 1..%zu (%s)",
                                          i, w ? "b" : "W", g->n_checked, expect, desc);
                            if (limit == 0)
                                ck_assert_msg(g->n_checked == count,
                                              "layer %zu %s: n_checked %zu of %zu with "
                                              "max_per_tensor 0 (%s)",
                                              i, w ? "b" : "W", g->n_checked, count, desc);
                            ck_assert_msg(g->max_rel_error >= 0 && g->max_rel_error < GC_BOUND &&
                                          g->max_abs_error >= 0,
                                          "layer %zu %s: max_rel_error %.3g (bound %g), "
                                          "max_abs_error %.3g (%s)",
                                          i, w ? "b" : "W", g->max_rel_error, GC_BOUND,
                                          g->max_abs_error, desc);
                            worst = fmax(worst, g->max_rel_error);
                        }
                }
                /* Parameters bitwise unchanged. */
                for (size_t i = 0; i < a->n_layers; i++) {
                    size_t ni = layer_in(a, i), no = a->width[i];
                    float *W = xcalloc(no * ni, sizeof(float)), *b = xcalloc(no, sizeof(float));
                    CHECK_BP(bp_net_get_param(net, i, BP_WEIGHT, W, no * ni));
                    CHECK_BP(bp_net_get_param(net, i, BP_BIAS, b, no));
                    ck_assert_msg(memcmp(W, f.W[i], no * ni * sizeof(float)) == 0 &&
                                      memcmp(b, f.b[i], no * sizeof(float)) == 0,
                                  "bp_gradcheck changed the parameters of layer %zu (%s)", i,
                                  desc);
                    free(W);
                    free(b);
                }
                bp_net_destroy(net);
                ref_free(&p);
                float_free(&f, a->n_layers);
            }
    bp_ctx_destroy(ctx);
    printf("test_grad: bp_gradcheck largest max_rel_error (tanh, sigmoid, gelu) = %.3g\n", worst);
    fflush(stdout);
}
END_TEST

/* ------------------------------------------- 4. bitwise across threads */

/* 3 layers of width 200 on 200 inputs, batch 64: every GEMM is big enough
 * to be split across threads. Gradients, input gradients and the loss must
 * not depend on the thread count. */
START_TEST(test_threads_bitwise)
{
    static const arch big = {200, 3, {200, 200, 200}};
    static const struct { bp_activation act; bp_head head; } cfg[] = {
        {BP_ACT_GELU, BP_HEAD_SOFTMAX_CE},
        {BP_ACT_RELU, BP_HEAD_MSE},
        {BP_ACT_TANH, BP_HEAD_SIGMOID_BCE},
    };
    const size_t B = 64;
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        ref_problem p;
        float_problem f;
        problem_init(&p, &big, cfg[c].act, cfg[c].head, B);
        make_problem(&p, &f, 0x7E7E + c);
        lib_result r[TU_N_THREAD_COUNTS];
        for (int t = 0; t < TU_N_THREAD_COUNTS; t++) {
            bp_ctx *ctx = NULL;
            CHECK_BP(bp_ctx_create(&ctx, tu_thread_counts[t]));
            if (c == 0) /* without OpenMP every context runs 1 thread: say so */
                printf("test_grad: %d thread(s) requested, context runs %d\n",
                       tu_thread_counts[t], bp_ctx_threads(ctx));
            bp_net *net = lib_net(ctx, &big, cfg[c].act, cfg[c].head, B, &f);
            lib_run(net, &big, cfg[c].head, B, &f, &r[t]);
            bp_net_destroy(net);
            bp_ctx_destroy(ctx);
            if (t == 0)
                continue;
            ck_assert_msg(memcmp(&r[0].loss, &r[t].loss, sizeof(float)) == 0,
                          "%s/%s: loss %.9g with 1 thread, %.9g with %d", act_names[cfg[c].act],
                          head_names[cfg[c].head], (double)r[0].loss, (double)r[t].loss,
                          tu_thread_counts[t]);
            for (size_t i = 0; i < big.n_layers; i++) {
                size_t ni = layer_in(&big, i), no = big.width[i];
                ck_assert_msg(memcmp(r[0].dW[i], r[t].dW[i], no * ni * sizeof(float)) == 0,
                              "%s/%s: dW of layer %zu differs between 1 and %d threads",
                              act_names[cfg[c].act], head_names[cfg[c].head], i,
                              tu_thread_counts[t]);
                ck_assert_msg(memcmp(r[0].db[i], r[t].db[i], no * sizeof(float)) == 0,
                              "%s/%s: db of layer %zu differs between 1 and %d threads",
                              act_names[cfg[c].act], head_names[cfg[c].head], i,
                              tu_thread_counts[t]);
                ck_assert_msg(memcmp(r[0].dX[i], r[t].dX[i], B * ni * sizeof(float)) == 0,
                              "%s/%s: input grad of layer %zu differs between 1 and %d threads",
                              act_names[cfg[c].act], head_names[cfg[c].head], i,
                              tu_thread_counts[t]);
            }
        }
        for (int t = 0; t < TU_N_THREAD_COUNTS; t++)
            lib_result_free(&r[t], big.n_layers);
        ref_free(&p);
        float_free(&f, big.n_layers);
    }
}
END_TEST

static Suite *grad_suite(void)
{
    Suite *s = suite_create("grad");
    TCase *tc = tcase_create("grad");
    tcase_add_test(tc, test_reference_vs_fd);
    tcase_add_test(tc, test_library_vs_reference);
    tcase_add_test(tc, test_gradcheck);
    tcase_add_test(tc, test_threads_bitwise);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(grad_suite());
}
