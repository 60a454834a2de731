/* Optimizers: SGD (momentum, Nesterov, L2), Adam, AdamW, gradient clipping.
 * The update formulas are spelled out in backprop.h above bp_optim_type. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "gemm.h"
#include "net.h"
#include "optim.h"
#include "parallel.h"
#include "team.h"

/* Floats per partial sum of the gradient norm: a fixed chunking, so the sum
 * is the same for any thread count. */
#define NORM_CHUNK 4096

bp_status bp_optim_config_default(bp_optim_config *cfg, bp_optim_type type)
{
    if (!cfg)
        return bpi_fail(BP_EINVAL, "bp_optim_config_default: cfg is NULL");
    if (type < BP_OPTIM_SGD || type > BP_OPTIM_ADAMW)
        return bpi_fail(BP_EINVAL, "bp_optim_config_default: type is %d (not a bp_optim_type)",
                        (int)type);
    memset(cfg, 0, sizeof *cfg);
    cfg->type = type;
    cfg->lr = type == BP_OPTIM_SGD ? 0.01f : 0.001f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-8f;
    cfg->weight_decay = type == BP_OPTIM_ADAMW ? 0.01f : 0.0f;
    cfg->schedule = BP_SCHED_CONSTANT;
    cfg->gamma = 0.1f;
    return BP_OK;
}

static int finite_nonneg(float x) { return isfinite(x) && x >= 0.0f; }

static bp_status check_config(const bp_optim_config *c, const char *fn)
{
    if (c->type < BP_OPTIM_SGD || c->type > BP_OPTIM_ADAMW)
        return bpi_fail(BP_EINVAL, "%s: type is %d (not a bp_optim_type)", fn, (int)c->type);
    if (!finite_nonneg(c->lr))
        return bpi_fail(BP_EINVAL, "%s: lr is %g (expected finite >= 0)", fn, (double)c->lr);
    if (!finite_nonneg(c->weight_decay))
        return bpi_fail(BP_EINVAL, "%s: weight_decay is %g (expected finite >= 0)", fn,
                        (double)c->weight_decay);
    if (!finite_nonneg(c->clip_norm))
        return bpi_fail(BP_EINVAL, "%s: clip_norm is %g (expected finite >= 0)", fn,
                        (double)c->clip_norm);
    if (c->type == BP_OPTIM_SGD) {
        if (!finite_nonneg(c->momentum) || c->momentum >= 1.0f)
            return bpi_fail(BP_EINVAL, "%s: momentum is %g (expected 0 <= mu < 1)", fn,
                            (double)c->momentum);
        if (c->nesterov && c->momentum == 0.0f)
            return bpi_fail(BP_EINVAL, "%s: nesterov needs momentum > 0", fn);
    } else {
        if (!finite_nonneg(c->beta1) || c->beta1 >= 1.0f)
            return bpi_fail(BP_EINVAL, "%s: beta1 is %g (expected 0 <= beta1 < 1)", fn,
                            (double)c->beta1);
        if (!finite_nonneg(c->beta2) || c->beta2 >= 1.0f)
            return bpi_fail(BP_EINVAL, "%s: beta2 is %g (expected 0 <= beta2 < 1)", fn,
                            (double)c->beta2);
        if (!isfinite(c->eps) || c->eps <= 0.0f)
            return bpi_fail(BP_EINVAL, "%s: eps is %g (expected > 0)", fn, (double)c->eps);
    }
    return bpi_schedule_check(c, fn);
}

bp_status bp_optim_create(bp_optim **out, bp_net *net, const bp_optim_config *cfg)
{
    const char *fn = "bp_optim_create";
    if (!out || !net || !cfg)
        return bpi_fail(BP_EINVAL, "%s: %s is NULL", fn, !out ? "opt" : !net ? "net" : "cfg");
    BPI_TRY(check_config(cfg, fn));
    bp_optim *opt = bpi_alloc(sizeof *opt);
    if (!opt)
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate the optimizer", fn);
    opt->net = net;
    opt->cfg = *cfg;
    opt->n_slots = cfg->type != BP_OPTIM_SGD ? 2 : cfg->momentum > 0.0f ? 1 : 0;
    opt->n_chunks = (net->block_floats + NORM_CHUNK - 1) / NORM_CHUNK;
    /* The update's work list: NORM_CHUNK pieces of each tensor, so one
     * parallel loop runs the check (or the write) of every tensor. */
    for (size_t i = 0; i < net->n_layers; i++) {
        const bpi_layer *L = &net->layers[i];
        opt->n_work += (L->n_out * L->n_in + NORM_CHUNK - 1) / NORM_CHUNK +
                       (L->n_out + NORM_CHUNK - 1) / NORM_CHUNK;
    }
    opt->work = bpi_alloc_array(opt->n_work, sizeof *opt->work);
    size_t n_partials = opt->n_chunks > opt->n_work ? opt->n_chunks : opt->n_work;
    opt->partials = bpi_alloc_array(n_partials, sizeof(double));
    opt->chunk_max = bpi_alloc_array(opt->n_work, 3 * sizeof(uint32_t));
    opt->weight_max = bpi_alloc_array(net->n_layers, 3 * sizeof(uint32_t));
    opt->layer_proven = bpi_alloc_array(net->n_layers, 1);
    for (size_t i = 0, k = 0; opt->work && i < net->n_layers; i++) {
        const bpi_layer *L = &net->layers[i];
        for (int weight = 1; weight >= 0; weight--) {
            size_t n = weight ? L->n_out * L->n_in : L->n_out;
            for (size_t lo = 0; lo < n; lo += NORM_CHUNK)
                opt->work[k++] = (bpi_update_chunk){weight ? L->w_off : L->b_off, lo,
                                                    lo + NORM_CHUNK < n ? lo + NORM_CHUNK : n,
                                                    i, weight};
        }
    }
    size_t bytes = opt->n_slots * net->block_floats * sizeof(float);
    if (opt->n_slots)
        opt->state = bpi_alloc(bytes);
    if (!opt->partials || !opt->work || !opt->chunk_max || !opt->weight_max ||
        !opt->layer_proven ||
        (opt->n_slots && !opt->state)) {
        bp_optim_destroy(opt);
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate %zu bytes of optimizer state", fn, bytes);
    }
    *out = opt;
    return BP_OK;
}

void bp_optim_destroy(bp_optim *opt)
{
    if (!opt)
        return;
    bpi_free(opt->state);
    bpi_free(opt->partials);
    bpi_free(opt->work);
    bpi_free(opt->chunk_max);
    bpi_free(opt->weight_max);
    bpi_free(opt->layer_proven);
    bpi_free(opt);
}

/* -------------------------------------------------------------- norm */

/* Sum of squares of every gradient (padding is zero), in fixed chunks, each
 * summed in NORM_LANES interleaved partial sums combined in lane order: a
 * fixed order (the same bits for any thread count) that vectorises, where
 * one running sum would wait for every addition. */
#define NORM_LANES 16
/* This thread's share of the chunks (partials[c]); any split of the chunks
 * among threads gives the same partials. */
void bpi_optim_norm_part(bp_optim *opt, int tid, int nt)
{
    const float *g = opt->net->grads;
    size_t n = opt->net->block_floats, c0, c1;
    bpi_team t = {tid, nt, NULL};
    bpi_team_range(&t, opt->n_chunks, &c0, &c1);
    for (size_t c = c0; c < c1; c++) {
        size_t i = c * NORM_CHUNK, end = (c + 1) * NORM_CHUNK < n ? (c + 1) * NORM_CHUNK : n;
        double lane[NORM_LANES] = {0};
        for (; i + NORM_LANES <= end; i += NORM_LANES)
            for (size_t k = 0; k < NORM_LANES; k++)
                lane[k] += (double)g[i + k] * g[i + k];
        for (size_t k = 0; i < end; i++, k++)
            lane[k] += (double)g[i] * g[i];
        double s = 0.0;
        for (size_t k = 0; k < NORM_LANES; k++)
            s += lane[k];
        opt->partials[c] = s;
    }
}

double bpi_optim_norm_total(const bp_optim *opt)
{
    double total = 0.0;
    for (size_t c = 0; c < opt->n_chunks; c++)
        total += opt->partials[c];
    return total;
}

static double grad_sum_squares(bp_optim *opt)
{
    BPI_OMP_EACH(opt->net->ctx->n_threads, opt->net->block_floats, tid, nt)
    bpi_optim_norm_part(opt, tid, nt);
    return bpi_optim_norm_total(opt);
}

/* Error path only: name the first gradient entry of layer i that is NaN or
 * infinite; BP_OK if there is none. */
static bp_status nonfinite_grad_layer(const bp_net *net, size_t i, const char *fn)
{
    const bpi_layer *L = &net->layers[i];
    for (size_t k = 0; k < L->n_out * L->n_in; k++)
        if (!isfinite(L->dW[k]))
            return bpi_fail(BP_ENUMERIC, "%s: layer %zu weight gradient dW[%zu] is not finite",
                            fn, i, k);
    for (size_t k = 0; k < L->n_out; k++)
        if (!isfinite(L->db[k]))
            return bpi_fail(BP_ENUMERIC, "%s: layer %zu bias gradient db[%zu] is not finite", fn,
                            i, k);
    return BP_OK;
}

/* The same over every layer, first layer first. */
static bp_status nonfinite_grad(const bp_net *net, const char *fn)
{
    for (size_t i = 0; i < net->n_layers; i++)
        BPI_TRY(nonfinite_grad_layer(net, i, fn));
    return BP_OK;
}

/* ------------------------------------------------------------ updates */


/* The new values of one element. The check pass and the write pass both
 * call these, so what is checked is exactly what gets written. */

/* SGD: p -= lr (momentum/Nesterov of g + wd p); *v is the velocity (has_v). */
static inline float sgd_one(const update_args *u, float mu, int nesterov, int has_v, float p,
                            float g, float *v)
{
    float gi = g * u->scale + u->wd * p;
    if (has_v) {
        *v = mu * *v + gi;
        gi = nesterov ? gi + mu * *v : *v;
    }
    return p - u->lr * gi;
}

/* Adam, computed as PyTorch does (step_size m / (sqrt(v) / sqrt(c2) + eps)). */
static inline float adam_one(const update_args *u, float p, float g, float *m, float *v)
{
    if (u->decay != 0.0f)
        p -= u->decay * p;
    float gi = g * u->scale + u->wd * p;
    *m = u->b1 * *m + (1.0f - u->b1) * gi;
    *v = u->b2 * *v + (1.0f - u->b2) * gi * gi;
    return p - u->step_size * *m / (sqrtf(*v) * u->inv_sqrt_c2 + u->eps);
}

/* NaN or infinity, from the bits (cheap and vectorisable). */
static inline unsigned nonfinite(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return (b & 0x7f800000u) == 0x7f800000u;
}

/* One tensor's pointers and the arguments for it (no decay on biases). */
typedef struct tensor_update {
    update_args u;
    float *p, *s0, *s1;
    const float *g;
    int sgd, has_v, nesterov;
    float mu;
} tensor_update;

static tensor_update tensor_at(bp_optim *opt, update_args u, size_t off, int decay_ok)
{
    bp_net *net = opt->net;
    tensor_update t;
    if (!decay_ok)
        u.wd = u.decay = 0.0f;
    t.u = u;
    t.p = net->params + off;
    t.g = net->grads + off;
    t.s0 = opt->n_slots > 0 ? opt->state + off : NULL;
    t.s1 = opt->n_slots > 1 ? opt->state + net->block_floats + off : NULL;
    t.sgd = opt->cfg.type == BP_OPTIM_SGD;
    t.has_v = t.s0 != NULL;
    t.nesterov = opt->cfg.nesterov;
    t.mu = opt->cfg.momentum;
    return t;
}

/* Check pass over entries [lo, hi): 1 if any new parameter or state value
 * would be NaN or infinite. Reads only. SGD's new values are computed
 * exactly (a few multiplications). Adam's division and square root would
 * double the cost of a step, so they are bounded instead: the step term
 * q = step_size m / (sqrt(v) c + eps) has |q| <= step_size |m| / eps (the
 * denominator is at least eps), so with |p'| and that bound below 1e38
 * (FLT_MAX is 3.4e38, far above any rounding) p' - q is finite. Only a
 * stretch where the bound cannot tell is computed exactly. Locals, not
 * t's fields, in the loops: a float store could alias them. */
BPI_VECTOR_CLONES
static unsigned would_fail(const tensor_update *t, size_t lo, size_t hi)
{
    const update_args u = t->u;
    const float *p = t->p, *g = t->g, *s0 = t->s0, *s1 = t->s1;
    unsigned bad = 0;
    if (t->sgd) {
        const float mu = t->mu;
        const int has_v = t->has_v, nesterov = t->nesterov;
        for (size_t i = lo; i < hi; i++) {
            float v = has_v ? s0[i] : 0.0f;
            float pn = sgd_one(&u, mu, nesterov, has_v, p[i], g[i], &v);
            bad |= nonfinite(pn) | nonfinite(v);
        }
        return bad;
    }
    const float inv_eps = 1.0f / u.eps, limit = 1e38f;
    for (size_t i = lo; i < hi; i++) {
        float pd = u.decay != 0.0f ? p[i] - u.decay * p[i] : p[i];
        float gi = g[i] * u.scale + u.wd * pd;
        float m = u.b1 * s0[i] + (1.0f - u.b1) * gi;
        float v = u.b2 * s1[i] + (1.0f - u.b2) * gi * gi;
        float q_bound = u.step_size * fabsf(m) * inv_eps;
        bad |= nonfinite(v) | !(fabsf(pd) < limit) | !(q_bound < limit);
    }
    if (!bad)
        return 0;
    for (size_t i = lo; i < hi; i++) { /* rare: exactly */
        float m = s0[i], v = s1[i];
        float pn = adam_one(&u, p[i], g[i], &m, &v);
        bad = nonfinite(pn) | nonfinite(m) | nonfinite(v);
        if (bad)
            return 1;
    }
    return 0;
}

static inline uint32_t max_bits(uint32_t m, float x)
{
    uint32_t b = bpi_abs_bits(x);
    return b > m ? b : m;
}

/* The write pass over entries [lo, hi) (locals: see would_fail); mx gets
 * the bits of max |p|, |s0|, |s1| written (0 for absent state), for the
 * next step's proof: in registers, free beside the memory traffic. */
BPI_VECTOR_CLONES
static void update_range(const tensor_update *t, size_t lo, size_t hi, uint32_t mx[3])
{
    const update_args u = t->u;
    float *restrict p = t->p, *restrict s0 = t->s0, *restrict s1 = t->s1;
    const float *restrict g = t->g;
    uint32_t m0 = 0, m1 = 0, m2 = 0;
    if (t->sgd) {
        const float mu = t->mu;
        const int has_v = t->has_v, nesterov = t->nesterov;
        if (!has_v) {
            for (size_t i = lo; i < hi; i++) {
                float pn = sgd_one(&u, mu, nesterov, 0, p[i], g[i], NULL);
                p[i] = pn;
                m0 = max_bits(m0, pn);
            }
        } else {
            for (size_t i = lo; i < hi; i++) {
                float v = s0[i];
                float pn = sgd_one(&u, mu, nesterov, 1, p[i], g[i], &v);
                p[i] = pn, s0[i] = v;
                m0 = max_bits(m0, pn), m1 = max_bits(m1, v);
            }
        }
    } else {
        for (size_t i = lo; i < hi; i++) {
            float m = s0[i], v = s1[i];
            float pn = adam_one(&u, p[i], g[i], &m, &v);
            p[i] = pn, s0[i] = m, s1[i] = v;
            m0 = max_bits(m0, pn), m1 = max_bits(m1, m), m2 = max_bits(m2, v);
        }
    }
    mx[0] = m0, mx[1] = m1, mx[2] = m2;
}

/* The float whose bits bpi_abs_bits gave. */
static float from_bits(uint32_t b)
{
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* Whether every new value of a weight tensor is certainly finite, from
 * bounds alone: |dW| <= G (the weight-gradient GEMM's by-product) and the
 * maxima mx of |p|, |s0|, |s1| the last write pass left. Each new value is
 * a short chain of float operations on those; the chain's magnitude,
 * bounded in double with every term's absolute value, staying below 1e37
 * (FLT_MAX is 3.4e38; rounding adds a relative 1e-7 per operation) keeps
 * every intermediate finite. Adam's step term is bounded as in would_fail.
 * Biases are not proven: their check is n_out floats. */
static int weight_step_proven(const tensor_update *t, uint32_t g_bits, const uint32_t mx[3])
{
    const update_args *u = &t->u;
    const double lim = 1e37;
    if (g_bits >= BPI_ABS_BITS_INF) /* NaN or infinite */
        return 0;
    double G = from_bits(g_bits), P = from_bits(mx[0]);
    if (t->sgd) {
        double gi = G * fabs(u->scale) + fabs(u->wd) * P, step = gi;
        if (t->has_v) {
            double v = fabs(t->mu) * from_bits(mx[1]) + gi;
            if (!(v < lim))
                return 0;
            step = t->nesterov ? gi + fabs(t->mu) * v : v;
        }
        return gi < lim && P + fabs(u->lr) * step < lim;
    }
    double pd = P * (1.0 + fabs(u->decay));
    double gi = G * fabs(u->scale) + fabs(u->wd) * pd;
    double m = fabs(u->b1) * from_bits(mx[1]) + fabs(1.0 - u->b1) * gi;
    double v = fabs(u->b2) * from_bits(mx[2]) + fabs(1.0 - u->b2) * gi * gi;
    double sm = fabs(u->step_size) * m;
    return gi < lim && m < lim && v < lim && sm < lim && pd + sm / u->eps < lim;
}

/* Error path only: name the first entry whose update is not finite. */
static bp_status diverged(const tensor_update *t, size_t layer, int weight, size_t n,
                          const char *fn)
{
    size_t k = 0;
    while (k + 1 < n && !would_fail(t, k, k + 1))
        k++;
    float m = t->s0 ? t->s0[k] : 0.0f, v = t->s1 ? t->s1[k] : 0.0f;
    float p = t->sgd ? sgd_one(&t->u, t->mu, t->nesterov, t->has_v, t->p[k], t->g[k], &m)
                     : adam_one(&t->u, t->p[k], t->g[k], &m, &v);
    const char *what = nonfinite(p) ? "the parameter" : t->sgd ? "the velocity"
                     : nonfinite(m) ? "the first moment" : "the second moment";
    return bpi_fail(BP_ENUMERIC, "%s: layer %zu %s[%zu]: the update (lr %g) would make %s "
                    "%s (diverging); the step was not applied", fn, layer,
                    weight ? "W" : "b", k, (double)t->u.lr, what,
                    p != p || m != m || v != v ? "NaN" : "infinite");
}

static update_args step_args(const bp_optim *opt, double sum_squares)
{
    const bp_optim_config *c = &opt->cfg;
    update_args u;
    memset(&u, 0, sizeof u);
    double lr = bpi_schedule_lr(c, opt->steps);
    u.lr = (float)lr;
    u.scale = 1.0f;
    if (c->clip_norm > 0.0f) {
        double norm = sqrt(sum_squares);
        if (norm > c->clip_norm)
            u.scale = (float)(c->clip_norm / (norm + 1e-6));
    }
    u.wd = c->type == BP_OPTIM_ADAMW ? 0.0f : c->weight_decay;
    u.decay = c->type == BP_OPTIM_ADAMW ? (float)(lr * c->weight_decay) : 0.0f;
    u.b1 = c->beta1;
    u.b2 = c->beta2;
    u.eps = c->eps;
    double t = (double)opt->steps + 1.0;
    u.step_size = (float)(lr / (1.0 - pow(c->beta1, t)));
    u.inv_sqrt_c2 = (float)(1.0 / sqrt(1.0 - pow(c->beta2, t)));
    u.n_threads = opt->net->ctx->n_threads;
    return u;
}

/* The thread of nt that checks and updates work chunk k: every tensor's
 * chunks in nt runs of (nearly) equal length, in order, rather than one
 * static split of the whole list. Thread t then updates the t-th share of
 * each weight matrix's rows, which is the share it just wrote of dW when
 * the weight-gradient GEMM split rows, and the one it reads next in the
 * forward when that splits columns (the rows of W): the lines stay in its
 * caches instead of crossing to the other core's. Each chunk's values
 * depend only on the chunk, so any assignment gives the same bits. */
static int chunk_thread(const bp_optim *opt, size_t k, int nt)
{
    const bpi_update_chunk *c = &opt->work[k];
    const bpi_layer *L = &opt->net->layers[c->layer];
    size_t n = c->weight ? L->n_out * L->n_in : L->n_out;
    size_t chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    return (int)(c->lo / NORM_CHUNK * (size_t)nt / chunks);
}

/* A diverging step (its new parameters or state overflowing to infinity or
 * NaN) is refused before anything is written: one read-only pass computes
 * every new value, the second writes them; each pass is one parallel loop
 * over the chunks of every tensor. A failure is blamed on the gradient
 * when one is not finite.
 * The read-only pass costs as much memory traffic as the write pass (it
 * reads p, g and the state), and for wide layers both stream from memory:
 * 13 % of a 4096-wide step. So a weight tensor skips it when bounds prove
 * its step finite: the gradient's max |dW| from the backward's GEMM, and
 * the maxima of p and state left by this optimizer's last write pass, if
 * nothing else has written them since (net->params_gen,
 * bpi_optim_state_written, net->grad_bound_valid).
 * The phases below are run by bp_optim_step, each pass in a parallel
 * region of its own, and by the one-region training step (step.c), whose
 * threads wait at a barrier between them. */

bp_status bpi_optim_prepare(bp_optim *opt, double sum_squares, const char *fn)
{
    bp_net *net = opt->net;
    /* The norm is for clipping only: a NaN or infinite gradient makes some
     * new value NaN or infinite, which the check pass finds anyway. */
    if (opt->cfg.clip_norm > 0.0f && !isfinite(sum_squares)) {
        bp_status s = nonfinite_grad(net, fn);
        return s != BP_OK ? s : bpi_fail(BP_ENUMERIC, "%s: the gradient norm overflows", fn);
    }
    update_args u = step_args(opt, sum_squares);
    opt->step_args = u;
    int bounds = opt->bounds_valid && opt->bounds_gen == net->params_gen &&
                 net->grad_bound_valid;
    for (size_t i = 0; i < net->n_layers; i++) {
        tensor_update t = tensor_at(opt, u, net->layers[i].w_off, 1);
        opt->layer_proven[i] =
            bounds && weight_step_proven(&t, net->dW_absmax[i], &opt->weight_max[3 * i]);
        opt->proven += opt->layer_proven[i];
    }
    return BP_OK;
}

void bpi_optim_check_part(bp_optim *opt, int tid, int nt)
{
    const bpi_update_chunk *work = opt->work;
    for (size_t k = 0; k < opt->n_work; k++) {
        if (chunk_thread(opt, k, nt) != tid)
            continue;
        tensor_update t = tensor_at(opt, opt->step_args, work[k].off, work[k].weight);
        opt->partials[k] = work[k].weight && opt->layer_proven[work[k].layer]
                               ? 0.0
                               : (double)would_fail(&t, work[k].lo, work[k].hi);
    }
}

int bpi_optim_check_failed(const bp_optim *opt)
{
    for (size_t k = 0; k < opt->n_work; k++)
        if (opt->partials[k] != 0.0)
            return 1;
    return 0;
}

bp_status bpi_optim_refusal(bp_optim *opt, const char *fn)
{
    const bpi_update_chunk *work = opt->work;
    for (size_t k = 0; k < opt->n_work; k++) {
        if (opt->partials[k] == 0.0)
            continue;
        BPI_TRY(nonfinite_grad(opt->net, fn));
        const bpi_layer *L = &opt->net->layers[work[k].layer];
        tensor_update t = tensor_at(opt, opt->step_args, work[k].off, work[k].weight);
        return diverged(&t, work[k].layer, work[k].weight,
                        work[k].weight ? L->n_out * L->n_in : L->n_out, fn);
    }
    return BP_OK;
}

void bpi_optim_write_part(bp_optim *opt, int tid, int nt)
{
    const bpi_update_chunk *work = opt->work;
    for (size_t k = 0; k < opt->n_work; k++) {
        if (chunk_thread(opt, k, nt) != tid)
            continue;
        tensor_update t = tensor_at(opt, opt->step_args, work[k].off, work[k].weight);
        update_range(&t, work[k].lo, work[k].hi, &opt->chunk_max[3 * k]);
    }
}

void bpi_optim_finish(bp_optim *opt)
{
    bp_net *net = opt->net;
    /* The weights' maxima per layer, for the next step's proof. */
    memset(opt->weight_max, 0, 3 * net->n_layers * sizeof *opt->weight_max);
    for (size_t k = 0; k < opt->n_work; k++)
        if (opt->work[k].weight)
            for (int j = 0; j < 3; j++) {
                uint32_t *w = &opt->weight_max[3 * opt->work[k].layer + j];
                uint32_t c = opt->chunk_max[3 * k + j];
                *w = c > *w ? c : *w;
            }
    bpi_net_params_written(net);
    opt->bounds_gen = net->params_gen;
    opt->bounds_valid = 1;
    opt->steps++;
}

bp_status bp_optim_step(bp_optim *opt)
{
    const char *fn = "bp_optim_step";
    if (!opt)
        return bpi_fail(BP_EINVAL, "%s: opt is NULL", fn);
    size_t work = opt->net->block_floats;
    int n_threads = opt->net->ctx->n_threads;
    BPI_TRY(bpi_optim_prepare(opt, opt->cfg.clip_norm > 0.0f ? grad_sum_squares(opt) : 0.0,
                              fn));
    BPI_OMP_EACH(n_threads, work, tid, nt)
    bpi_optim_check_part(opt, tid, nt);
    if (bpi_optim_check_failed(opt))
        return bpi_optim_refusal(opt, fn);
    BPI_OMP_EACH(n_threads, work, tid, nt)
    bpi_optim_write_part(opt, tid, nt);
    bpi_optim_finish(opt);
    return BP_OK;
}

/* ---------------------------------------------- layer by layer (MPI) */

/* bp_optim_step's refusal of a bad step is all-or-nothing, yet each layer
 * is updated as soon as its gradient is final, before the later layers'
 * gradients are known. So each layer's write pass also saves the values it
 * overwrites into a snapshot (parameter and state blocks at the same
 * offsets), and a later failure puts the written layers back from it.
 * Saving costs the same memory traffic as bp_optim_step's separate
 * read-only check pass, which it replaces, and the new values are computed
 * by the same functions, so the bits are bp_optim_step's. Global-norm
 * clipping needs every gradient first: not here. */

int bpi_optim_layerwise_ok(const bp_optim *opt, size_t snap_slots)
{
    return opt->cfg.clip_norm == 0.0f && opt->n_slots <= snap_slots;
}

void bpi_optim_layerwise_begin(bp_optim *opt)
{
    /* these steps write no bounds (the snapshot already costs a pass) */
    bpi_optim_state_written(opt);
    bpi_net_params_written(opt->net);
    opt->step_args = step_args(opt, 0.0);
}

/* Entries [lo, hi) of one tensor: the old values copied to the snapshot
 * (snap + k block for state slot k - 1), then update_range's write pass,
 * whose maxima tell whether it wrote a NaN or infinity (their bits sort
 * above every finite value's). In pieces of NORM_CHUNK floats, so both
 * passes run in L1 and L2 and each is a vectorised loop. */
static unsigned update_saving(const tensor_update *t, size_t lo, size_t hi, float *snap,
                              size_t block)
{
    size_t bytes = (hi - lo) * sizeof(float);
    memcpy(snap + lo, t->p + lo, bytes);
    if (t->s0)
        memcpy(snap + block + lo, t->s0 + lo, bytes);
    if (t->s1)
        memcpy(snap + 2 * block + lo, t->s1 + lo, bytes);
    uint32_t mx[3];
    update_range(t, lo, hi, mx);
    return mx[0] >= BPI_ABS_BITS_INF || mx[1] >= BPI_ABS_BITS_INF || mx[2] >= BPI_ABS_BITS_INF;
}

/* snap: the snapshot block's floats at this tensor's offset. */
static int tensor_update_saving(bp_optim *opt, const tensor_update *t, size_t n, float *snap)
{
    size_t chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK, block = opt->net->block_floats;
    BPI_OMP_FOR(t->u.n_threads, n)
    for (size_t c = 0; c < chunks; c++) {
        size_t hi = (c + 1) * NORM_CHUNK < n ? (c + 1) * NORM_CHUNK : n;
        opt->partials[c] = (double)update_saving(t, c * NORM_CHUNK, hi, snap, block);
    }
    for (size_t c = 0; c < chunks; c++)
        if (opt->partials[c] != 0.0)
            return 1;
    return 0;
}

/* Floats [off, off + n) of the parameter and state blocks back from snap. */
static void restore_range(bp_optim *opt, size_t off, size_t n, const float *snap)
{
    size_t block = opt->net->block_floats;
    memcpy(opt->net->params + off, snap + off, n * sizeof(float));
    for (size_t k = 0; k < opt->n_slots; k++)
        memcpy(opt->state + k * block + off, snap + (k + 1) * block + off, n * sizeof(float));
}

void bpi_optim_layerwise_restore(bp_optim *opt, size_t layer, const float *snap)
{
    const bpi_layer *L = &opt->net->layers[layer];
    restore_range(opt, L->w_off, L->n_out * L->n_in, snap);
    restore_range(opt, L->b_off, L->n_out, snap);
}

bp_status bpi_optim_layerwise_update(bp_optim *opt, size_t layer, float *snap, const char *fn)
{
    const bpi_layer *L = &opt->net->layers[layer];
    tensor_update w = tensor_at(opt, opt->step_args, L->w_off, 1);
    tensor_update b = tensor_at(opt, opt->step_args, L->b_off, 0);
    size_t nw = L->n_out * L->n_in;
    /* What was written goes back first (W alone if W failed: b's snapshot
     * is not this step's), so that the diagnosis sees the old values. */
    int w_failed = tensor_update_saving(opt, &w, nw, snap + L->w_off);
    if (w_failed)
        restore_range(opt, L->w_off, nw, snap);
    else if (tensor_update_saving(opt, &b, L->n_out, snap + L->b_off))
        bpi_optim_layerwise_restore(opt, layer, snap);
    else
        return BP_OK;
    BPI_TRY(nonfinite_grad_layer(opt->net, layer, fn));
    return w_failed ? diverged(&w, layer, 1, nw, fn) : diverged(&b, layer, 0, L->n_out, fn);
}

void bpi_optim_layerwise_end(bp_optim *opt)
{
    opt->steps++;
}

/* ------------------------------------------------------- state access */

float bp_optim_lr(const bp_optim *opt)
{
    return opt ? (float)bpi_schedule_lr(&opt->cfg, opt->steps) : 0.0f;
}

uint64_t bp_optim_steps(const bp_optim *opt)
{
    return opt ? opt->steps : 0;
}

bp_status bp_optim_set_steps(bp_optim *opt, uint64_t steps)
{
    if (!opt)
        return bpi_fail(BP_EINVAL, "bp_optim_set_steps: opt is NULL");
    opt->steps = steps;
    return BP_OK;
}

size_t bp_optim_n_slots(const bp_optim *opt)
{
    return opt ? opt->n_slots : 0;
}

static bp_status locate_state(const bp_optim *opt, size_t layer, bp_tensor which, size_t slot,
                              const void *buf, size_t count, const char *fn, float **where)
{
    if (!opt)
        return bpi_fail(BP_EINVAL, "%s: opt is NULL", fn);
    size_t off = 0, n = 0;
    BPI_TRY(bpi_net_tensor(opt->net, layer, which, fn, &off, &n));
    if (slot >= opt->n_slots)
        return bpi_fail(BP_EINVAL, "%s: slot %zu out of range (optimizer has %zu)", fn, slot,
                        opt->n_slots);
    if (!buf)
        return bpi_fail(BP_EINVAL, "%s: buffer is NULL", fn);
    if (count != n)
        return bpi_fail(BP_EINVAL, "%s: layer %zu tensor has %zu floats, count is %zu", fn, layer,
                        n, count);
    *where = opt->state + slot * opt->net->block_floats + off;
    return BP_OK;
}

bp_status bp_optim_get_state(const bp_optim *opt, size_t layer, bp_tensor which, size_t slot,
                             float *dst, size_t count)
{
    float *src = NULL;
    BPI_TRY(locate_state(opt, layer, which, slot, dst, count, "bp_optim_get_state", &src));
    memcpy(dst, src, count * sizeof(float));
    return BP_OK;
}

bp_status bp_optim_set_state(bp_optim *opt, size_t layer, bp_tensor which, size_t slot,
                             const float *src, size_t count)
{
    float *dst = NULL;
    BPI_TRY(locate_state(opt, layer, which, slot, src, count, "bp_optim_set_state", &dst));
    memcpy(dst, src, count * sizeof(float));
    bpi_optim_state_written(opt);
    return BP_OK;
}

bp_status bp_optim_config_get(const bp_optim *opt, bp_optim_config *cfg)
{
    if (!opt || !cfg)
        return bpi_fail(BP_EINVAL, "bp_optim_config_get: %s is NULL", !opt ? "opt" : "cfg");
    *cfg = opt->cfg;
    return BP_OK;
}
