/* onednn_step: the training step of `backprop bench` built from oneDNN's
 * primitives through its C API, as a C programmer would build it without
 * backprop: the same MLP, batch, optimizer and thread count, and the same
 * JSON line (library "onednn").
 *
 * One step, for layers l = 0..L-1 with W_l (n_out, n_in), b_l (n_out):
 *   forward   Z_l = A_{l-1} W_l^T + b_l      inner product forward (with bias)
 *             A_l = relu(Z_l), in place      eltwise forward (hidden layers)
 *   head      P = softmax(Z_{L-1})           softmax forward
 *             dZ_{L-1} = (P - onehot) / B    plain C (loss: mean -log P[label])
 *   backward  dW_l, db_l = dZ_l^T A_{l-1}, sum_b dZ_l   inner product backward-weights
 *             dA_{l-1} = dZ_l W_l            inner product backward-data (l > 0 only:
 *                                            the input's gradient is not computed)
 *             dZ_{l-1} = dA_{l-1} [A_{l-1} > 0], in place   eltwise backward
 *   update    SGD p -= lr g, or Adam (PyTorch's formulas): plain C loops
 * Every primitive and every buffer is created once, before the timing; the
 * scratchpads are user-managed in one shared buffer.
 *
 * Formats: --format nc keeps every tensor plain (activations nc, weights oi);
 * --format any lets oneDNN choose the weights' layout per primitive. The
 * master weights then live in the layout the backward-weights primitive
 * writes dW in (so the update needs no reorder), and reorders created once
 * bring them to the forward's and backward-data's layouts each step (skipped
 * where the layouts agree). --format best (the default) times both briefly
 * and keeps the faster.
 *
 * --check compares, on a small net, dW and db of every layer and the loss
 * with backprop's (bp_net_forward/backward) from the same weights and data,
 * in both formats: exit 1 if any relative difference exceeds 1e-4.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <oneapi/dnnl/dnnl.h>

#include "backprop.h"

#define MAX_LAYERS 64

/* The FMA peak routine of `backprop bench` (src/cli/peak.c), which times
 * itself with cli_now(). */
double cli_fma_peak(const char *isa);
double cli_now(void);

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define CHECK(call)                                                                  \
    do {                                                                             \
        dnnl_status_t st_ = (call);                                                  \
        if (st_ != dnnl_success) {                                                   \
            fprintf(stderr, "onednn_step: %s failed (%d) at line %d\n", #call,      \
                    (int)st_, __LINE__);                                             \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

typedef struct prim {
    dnnl_primitive_t p;
    dnnl_memory_t scratch; /* user scratchpad, in the shared buffer */
} prim;

typedef struct layer {
    size_t n_in, n_out;
    int relu;
    prim fwd, relu_fwd, bwd_w, bwd_d, relu_bwd, reo_fwd, reo_bwd;
    /* master weights and their gradient (the backward-weights layout);
     * W_fwd / W_bwd are the master itself where the layouts agree */
    dnnl_memory_t W, dW, W_fwd, W_bwd, b, db;
    dnnl_memory_t Z;   /* (B, n_out): Z, then A = relu(Z) in place */
    dnnl_memory_t dZ;  /* (B, n_out): dL/dA, then dL/dZ in place */
    size_t w_floats;   /* of W and dW, with any padding */
    float *mW, *vW, *mb, *vb; /* Adam moments */
} layer;

typedef struct mlp {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    size_t L, B;
    int any;           /* weights' layout chosen by oneDNN */
    layer ly[MAX_LAYERS];
    dnnl_memory_t X, P;
    prim softmax;
    int32_t *labels;
    void *scratch_buf;
    size_t scratch_size;
    int adam;
    float lr;
    long t;            /* Adam steps done */
    float loss;
} mlp;

static void *xalloc(size_t bytes)
{
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "onednn_step: out of memory\n");
        exit(1);
    }
    memset(p, 0, (bytes + 63) / 64 * 64);
    return p;
}

static float *data_of(dnnl_memory_t m)
{
    void *h;
    CHECK(dnnl_memory_get_data_handle(m, &h));
    return h;
}

static dnnl_memory_desc_t md2(size_t rows, size_t cols, dnnl_format_tag_t tag)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {(dnnl_dim_t)rows, (dnnl_dim_t)cols};
    CHECK(dnnl_memory_desc_init_by_tag(&md, 2, dims, dnnl_f32, tag));
    return md;
}

static dnnl_memory_desc_t md1(size_t n)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {(dnnl_dim_t)n};
    CHECK(dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_x));
    return md;
}

/* A memory of descriptor md with its own zeroed, 64-byte aligned buffer. */
static dnnl_memory_t new_mem(mlp *n, const dnnl_memory_desc_t *md)
{
    dnnl_memory_t m;
    CHECK(dnnl_memory_create(&m, md, n->eng, xalloc(dnnl_memory_desc_get_size(md))));
    return m;
}

static dnnl_primitive_attr_t user_scratchpad(void)
{
    dnnl_primitive_attr_t attr;
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    return attr;
}

/* The primitive of a primitive descriptor; pd is kept by the caller when it
 * is a hint for a backward one. Its scratchpad memory is made later. */
static prim make_prim(mlp *n, dnnl_primitive_desc_t pd)
{
    prim r = {NULL, NULL};
    CHECK(dnnl_primitive_create(&r.p, pd));
    size_t need = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd,
                                            dnnl_query_scratchpad_md, 0));
    if (need > n->scratch_size)
        n->scratch_size = need;
    return r;
}

static dnnl_primitive_desc_t make_pd(mlp *n, const void *op_desc, const_dnnl_primitive_desc_t hint)
{
    dnnl_primitive_desc_t pd;
    dnnl_primitive_attr_t attr = user_scratchpad();
    CHECK(dnnl_primitive_desc_create(&pd, op_desc, attr, n->eng, hint));
    dnnl_primitive_attr_destroy(attr);
    return pd;
}

static void attach_scratch(mlp *n, prim *r)
{
    if (!r->p)
        return;
    const_dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_get_primitive_desc(r->p, &pd));
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    CHECK(dnnl_memory_create(&r->scratch, md, n->eng, n->scratch_buf));
}

/* A reorder from one layout of the weights to another (NULL primitive when
 * they are the same: the destination is then the source itself). */
static prim make_reorder(mlp *n, dnnl_memory_t from, const dnnl_memory_desc_t *to_md,
                         dnnl_memory_t *to)
{
    prim r = {NULL, NULL};
    const dnnl_memory_desc_t *from_md;
    CHECK(dnnl_memory_get_memory_desc(from, &from_md));
    if (dnnl_memory_desc_equal(from_md, to_md)) {
        *to = from;
        return r;
    }
    *to = new_mem(n, to_md);
    dnnl_primitive_desc_t pd;
    dnnl_primitive_attr_t attr = user_scratchpad();
    CHECK(dnnl_reorder_primitive_desc_create(&pd, from_md, n->eng, to_md, n->eng, attr));
    dnnl_primitive_attr_destroy(attr);
    r = make_prim(n, pd);
    dnnl_primitive_desc_destroy(pd);
    return r;
}

static void run(mlp *n, const prim *r, int nargs, dnnl_exec_arg_t *args)
{
    if (!r->p)
        return;
    args[nargs].arg = DNNL_ARG_SCRATCHPAD;
    args[nargs].memory = r->scratch;
    CHECK(dnnl_primitive_execute(r->p, n->stream, nargs + 1, args));
}

/* Copy a plain (rows, cols) or (rows) array into memory m of any layout, or
 * back (to_plain), through a one-off reorder (setup and checks only). */
static void plain_copy(mlp *n, dnnl_memory_t m, float *plain, size_t rows, size_t cols,
                       int to_plain)
{
    dnnl_memory_desc_t pmd = cols ? md2(rows, cols, dnnl_oi) : md1(rows);
    dnnl_memory_t pm;
    CHECK(dnnl_memory_create(&pm, &pmd, n->eng, plain));
    const dnnl_memory_desc_t *mmd;
    CHECK(dnnl_memory_get_memory_desc(m, &mmd));
    dnnl_primitive_desc_t pd;
    if (to_plain)
        CHECK(dnnl_reorder_primitive_desc_create(&pd, mmd, n->eng, &pmd, n->eng, NULL));
    else
        CHECK(dnnl_reorder_primitive_desc_create(&pd, &pmd, n->eng, mmd, n->eng, NULL));
    dnnl_primitive_t p;
    CHECK(dnnl_primitive_create(&p, pd));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, to_plain ? m : pm}, {DNNL_ARG_TO, to_plain ? pm : m}};
    CHECK(dnnl_primitive_execute(p, n->stream, 2, args));
    CHECK(dnnl_stream_wait(n->stream));
    dnnl_primitive_destroy(p);
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_destroy(pm);
}

/* The deterministic initial values shared with --check's backprop side. */
static float init_weight(size_t layer, size_t i, size_t n_in)
{
    return (float)(sin((double)i * 0.7 + (double)layer) * sqrt(6.0 / (double)n_in));
}
static float init_bias(size_t layer, size_t i)
{
    return (float)(0.01 * cos((double)i + (double)layer));
}
static float init_input(size_t i)
{
    return (float)(0.5 + 0.5 * sin((double)i * 0.37));
}

static void build_layer(mlp *n, size_t l, dnnl_primitive_desc_t *fwd_pd_out)
{
    layer *y = &n->ly[l];
    dnnl_format_tag_t wtag = n->any ? dnnl_format_tag_any : dnnl_oi;
    dnnl_memory_desc_t src = md2(n->B, y->n_in, dnnl_nc), dst = md2(n->B, y->n_out, dnnl_nc);
    dnnl_memory_desc_t w = md2(y->n_out, y->n_in, wtag), b = md1(y->n_out);
    dnnl_inner_product_desc_t d;
    CHECK(dnnl_inner_product_forward_desc_init(&d, dnnl_forward_training, &src, &w, &b, &dst));
    dnnl_primitive_desc_t fpd = make_pd(n, &d, NULL);
    y->fwd = make_prim(n, fpd);
    CHECK(dnnl_inner_product_backward_weights_desc_init(&d, &src, &w, &b, &dst));
    dnnl_primitive_desc_t wpd = make_pd(n, &d, fpd);
    y->bwd_w = make_prim(n, wpd);
    /* The master weights take the layout dW comes in. */
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_weights_md, 0);
    y->W = new_mem(n, wmd);
    y->dW = new_mem(n, wmd);
    y->w_floats = dnnl_memory_desc_get_size(wmd) / sizeof(float);
    y->reo_fwd = make_reorder(n, y->W, dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0),
                              &y->W_fwd);
    y->W_bwd = y->W;
    if (l > 0) {
        CHECK(dnnl_inner_product_backward_data_desc_init(&d, &src, &w, &dst));
        dnnl_primitive_desc_t dpd = make_pd(n, &d, fpd);
        y->bwd_d = make_prim(n, dpd);
        y->reo_bwd = make_reorder(n, y->W, dnnl_primitive_desc_query_md(dpd,
                                  dnnl_query_weights_md, 0), &y->W_bwd);
        dnnl_primitive_desc_destroy(dpd);
    }
    dnnl_primitive_desc_destroy(wpd);
    y->b = new_mem(n, &b);
    y->db = new_mem(n, &b);
    y->Z = new_mem(n, &dst);
    y->dZ = new_mem(n, &dst);
    if (y->relu) {
        dnnl_eltwise_desc_t e;
        CHECK(dnnl_eltwise_forward_desc_init(&e, dnnl_forward_training,
                                             dnnl_eltwise_relu_use_dst_for_bwd, &dst, 0, 0));
        dnnl_primitive_desc_t epd = make_pd(n, &e, NULL);
        y->relu_fwd = make_prim(n, epd);
        CHECK(dnnl_eltwise_backward_desc_init(&e, dnnl_eltwise_relu_use_dst_for_bwd, &dst, &dst,
                                              0, 0));
        dnnl_primitive_desc_t bpd = make_pd(n, &e, epd);
        y->relu_bwd = make_prim(n, bpd);
        dnnl_primitive_desc_destroy(bpd);
        dnnl_primitive_desc_destroy(epd);
    }
    if (n->adam) {
        y->mW = xalloc(y->w_floats * sizeof(float));
        y->vW = xalloc(y->w_floats * sizeof(float));
        y->mb = xalloc(y->n_out * sizeof(float));
        y->vb = xalloc(y->n_out * sizeof(float));
    }
    *fwd_pd_out = fpd;
}

static void set_initial(mlp *n)
{
    for (size_t l = 0; l < n->L; l++) {
        layer *y = &n->ly[l];
        float *w = xalloc(y->n_out * y->n_in * sizeof(float));
        for (size_t i = 0; i < y->n_out * y->n_in; i++)
            w[i] = init_weight(l, i, y->n_in);
        plain_copy(n, y->W, w, y->n_out, y->n_in, 0);
        free(w);
        float *b = data_of(y->b);
        for (size_t i = 0; i < y->n_out; i++)
            b[i] = init_bias(l, i);
    }
    float *x = data_of(n->X);
    for (size_t i = 0; i < n->B * n->ly[0].n_in; i++)
        x[i] = init_input(i);
    for (size_t i = 0; i < n->B; i++)
        n->labels[i] = (int32_t)((i * 7 + 3) % n->ly[n->L - 1].n_out);
}

static mlp *mlp_create(const size_t *widths, size_t L, size_t B, int any, int adam, float lr)
{
    mlp *n = calloc(1, sizeof *n);
    if (!n || L < 1 || L > MAX_LAYERS)
        exit(1);
    n->L = L, n->B = B, n->any = any, n->adam = adam, n->lr = lr;
    CHECK(dnnl_engine_create(&n->eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&n->stream, n->eng, dnnl_stream_default_flags));
    dnnl_memory_desc_t xmd = md2(B, widths[0], dnnl_nc), pmd = md2(B, widths[L], dnnl_nc);
    n->X = new_mem(n, &xmd);
    n->P = new_mem(n, &pmd);
    n->labels = xalloc(B * sizeof(int32_t));
    for (size_t l = 0; l < L; l++) {
        n->ly[l].n_in = widths[l];
        n->ly[l].n_out = widths[l + 1];
        n->ly[l].relu = l + 1 < L;
        dnnl_primitive_desc_t fpd;
        build_layer(n, l, &fpd);
        dnnl_primitive_desc_destroy(fpd);
    }
    dnnl_softmax_desc_t s;
    CHECK(dnnl_softmax_forward_desc_init(&s, dnnl_forward_training, &pmd, 1));
    dnnl_primitive_desc_t spd = make_pd(n, &s, NULL);
    n->softmax = make_prim(n, spd);
    dnnl_primitive_desc_destroy(spd);
    n->scratch_buf = xalloc(n->scratch_size ? n->scratch_size : 64);
    attach_scratch(n, &n->softmax);
    for (size_t l = 0; l < L; l++) {
        layer *y = &n->ly[l];
        prim *all[] = {&y->fwd, &y->relu_fwd, &y->bwd_w, &y->bwd_d, &y->relu_bwd, &y->reo_fwd,
                       &y->reo_bwd};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            attach_scratch(n, all[i]);
    }
    set_initial(n);
    return n;
}

static void forward(mlp *n)
{
    for (size_t l = 0; l < n->L; l++) {
        layer *y = &n->ly[l];
        dnnl_exec_arg_t a[5]; /* + the scratchpad */
        if (y->reo_fwd.p) {
            a[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, y->W};
            a[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, y->W_fwd};
            run(n, &y->reo_fwd, 2, a);
        }
        a[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, l ? n->ly[l - 1].Z : n->X};
        a[1] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, y->W_fwd};
        a[2] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, y->b};
        a[3] = (dnnl_exec_arg_t){DNNL_ARG_DST, y->Z};
        run(n, &y->fwd, 4, a);
        if (y->relu) {
            a[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, y->Z};
            a[1] = (dnnl_exec_arg_t){DNNL_ARG_DST, y->Z};
            run(n, &y->relu_fwd, 2, a);
        }
    }
}

/* Softmax, then dZ = (P - onehot) / B and the mean loss, in plain C. */
static void head(mlp *n)
{
    layer *last = &n->ly[n->L - 1];
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, last->Z}, {DNNL_ARG_DST, n->P}};
    run(n, &n->softmax, 2, a);
    CHECK(dnnl_stream_wait(n->stream));
    const float *P = data_of(n->P);
    float *dZ = data_of(last->dZ);
    size_t C = last->n_out;
    float inv = 1.0f / (float)n->B;
    double loss = 0.0;
    for (size_t b = 0; b < n->B; b++) {
        for (size_t j = 0; j < C; j++)
            dZ[b * C + j] = P[b * C + j] * inv;
        dZ[b * C + (size_t)n->labels[b]] -= inv;
        loss -= log(fmax(P[b * C + (size_t)n->labels[b]], 1e-30));
    }
    n->loss = (float)(loss / (double)n->B);
}

static void backward(mlp *n)
{
    for (size_t l = n->L; l-- > 0;) {
        layer *y = &n->ly[l];
        dnnl_exec_arg_t a[5];
        a[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, l ? n->ly[l - 1].Z : n->X};
        a[1] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, y->dZ};
        a[2] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_WEIGHTS, y->dW};
        a[3] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, y->db};
        run(n, &y->bwd_w, 4, a);
        if (l == 0)
            break; /* no gradient for the network's input */
        layer *prev = &n->ly[l - 1];
        if (y->reo_bwd.p) {
            a[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, y->W};
            a[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, y->W_bwd};
            run(n, &y->reo_bwd, 2, a);
        }
        a[0] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, y->dZ};
        a[1] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, y->W_bwd};
        a[2] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, prev->dZ};
        run(n, &y->bwd_d, 3, a);
        a[0] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, prev->dZ};
        a[1] = (dnnl_exec_arg_t){DNNL_ARG_DST, prev->Z};
        a[2] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, prev->dZ};
        run(n, &prev->relu_bwd, 3, a);
    }
    CHECK(dnnl_stream_wait(n->stream));
}

static void sgd(float *restrict p, const float *restrict g, size_t count, float lr)
{
#ifdef _OPENMP
#pragma omp parallel for simd schedule(static)
#endif
    for (size_t i = 0; i < count; i++)
        p[i] -= lr * g[i];
}

/* PyTorch's Adam (betas 0.9, 0.999, eps 1e-8), as backprop's. */
static void adam(float *restrict p, const float *restrict g, float *restrict m,
                 float *restrict v, size_t count, float lr, long t)
{
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float c1 = 1.0f - powf(b1, (float)(t + 1)), c2 = 1.0f - powf(b2, (float)(t + 1));
#ifdef _OPENMP
#pragma omp parallel for simd schedule(static)
#endif
    for (size_t i = 0; i < count; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        p[i] -= lr * (m[i] / c1) / (sqrtf(v[i] / c2) + eps);
    }
}

static void update(mlp *n)
{
    for (size_t l = 0; l < n->L; l++) {
        layer *y = &n->ly[l];
        if (n->adam) {
            adam(data_of(y->W), data_of(y->dW), y->mW, y->vW, y->w_floats, n->lr, n->t);
            adam(data_of(y->b), data_of(y->db), y->mb, y->vb, y->n_out, n->lr, n->t);
        } else {
            sgd(data_of(y->W), data_of(y->dW), y->w_floats, n->lr);
            sgd(data_of(y->b), data_of(y->db), y->n_out, n->lr);
        }
    }
    n->t++;
}

static void step(mlp *n)
{
    forward(n);
    head(n);
    backward(n);
    update(n);
}

static void mlp_destroy(mlp *n)
{
    /* Buffers are freed with the process: a benchmark makes one or two nets. */
    dnnl_stream_destroy(n->stream);
    dnnl_engine_destroy(n->eng);
    free(n);
}

/* ------------------------------------------------------------- the check */

static double max_abs(const float *a, size_t count)
{
    double m = 0.0;
    for (size_t i = 0; i < count; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

static double rel_diff(const float *a, const float *ref, size_t count, double *abs_out)
{
    double d = 0.0;
    for (size_t i = 0; i < count; i++)
        d = fmax(d, fabs((double)a[i] - (double)ref[i]));
    *abs_out = d;
    return d / fmax(max_abs(ref, count), 1e-12);
}

/* backprop's gradients on the same net, weights and batch. */
static bp_net *reference(const size_t *widths, size_t L, size_t B, const mlp *n,
                         bp_ctx **ctx_out)
{
    bp_ctx *ctx;
    bp_net *net;
    bp_layer_spec spec[MAX_LAYERS];
    for (size_t l = 0; l < L; l++)
        spec[l] = (bp_layer_spec){widths[l + 1], l + 1 < L ? BP_ACT_RELU : BP_ACT_IDENTITY, 0};
    if (bp_ctx_create(&ctx, 1) != BP_OK ||
        bp_net_create(&net, ctx, widths[0], L, spec, BP_HEAD_SOFTMAX_CE, B) != BP_OK) {
        fprintf(stderr, "onednn_step: backprop: %s\n", bp_last_error());
        exit(1);
    }
    for (size_t l = 0; l < L; l++) {
        size_t nw = widths[l] * widths[l + 1];
        float *w = xalloc(nw * sizeof(float));
        for (size_t i = 0; i < nw; i++)
            w[i] = init_weight(l, i, widths[l]);
        bp_net_set_param(net, l, BP_WEIGHT, w, nw);
        for (size_t i = 0; i < widths[l + 1]; i++)
            w[i] = init_bias(l, i);
        bp_net_set_param(net, l, BP_BIAS, w, widths[l + 1]);
        free(w);
    }
    float loss;
    if (bp_net_forward(net, data_of(n->X), B) != BP_OK ||
        bp_net_backward(net, n->labels, NULL, &loss) != BP_OK) {
        fprintf(stderr, "onednn_step: backprop: %s\n", bp_last_error());
        exit(1);
    }
    printf("check: loss onednn %.7f backprop %.7f\n", (double)n->loss, (double)loss);
    *ctx_out = ctx;
    return net;
}

static int check_format(int any)
{
    const size_t widths[] = {37, 29, 23, 10};
    const size_t L = 3, B = 12;
    mlp *n = mlp_create(widths, L, B, any, 0, 0.01f);
    forward(n);
    head(n);
    backward(n);
    bp_ctx *ctx;
    bp_net *net = reference(widths, L, B, n, &ctx);
    int bad = 0;
    for (size_t l = 0; l < L; l++) {
        layer *y = &n->ly[l];
        size_t nw = y->n_out * y->n_in;
        float *got = xalloc(nw * sizeof(float)), *ref = xalloc(nw * sizeof(float));
        double a, r;
        plain_copy(n, y->dW, got, y->n_out, y->n_in, 1);
        bp_net_get_grad(net, l, BP_WEIGHT, ref, nw);
        r = rel_diff(got, ref, nw, &a);
        printf("check %s: layer %zu dW max abs diff %.3g, relative %.3g\n", any ? "any" : "nc",
               l, a, r);
        bad |= !(r <= 1e-4);
        bp_net_get_grad(net, l, BP_BIAS, ref, y->n_out);
        r = rel_diff(data_of(y->db), ref, y->n_out, &a);
        printf("check %s: layer %zu db max abs diff %.3g, relative %.3g\n", any ? "any" : "nc",
               l, a, r);
        bad |= !(r <= 1e-4);
        free(got);
        free(ref);
    }
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
    mlp_destroy(n);
    return bad;
}

/* ------------------------------------------------------------- the bench */

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double quantile(const double *s, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)pos;
    return lo + 1 >= n ? s[n - 1] : s[lo] + (pos - (double)lo) * (s[lo + 1] - s[lo]);
}

/* Median milliseconds per step of `steps` timed steps after `warmup`;
 * sorted times in ms[]. */
static double time_steps(mlp *n, size_t warmup, size_t steps, double *ms)
{
    for (size_t i = 0; i < warmup + steps; i++) {
        double t0 = cli_now();
        step(n);
        double dt = cli_now() - t0;
        if (i >= warmup)
            ms[i - warmup] = dt * 1e3;
    }
    qsort(ms, steps, sizeof *ms, cmp_double);
    return quantile(ms, steps, 0.5);
}

static const char *isa_name(void)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return ((unsigned)isa & 0x20u) ? "avx512" : ((unsigned)isa & 0x7u) == 0x7u ? "avx2" : "other";
}

static int usage(void)
{
    fprintf(stderr,
            "usage: onednn_step [--in N] [--layers W1,W2,...] [--out N] [--batch N]\n"
            "                   [--threads N] [--steps S] [--warmup W] [--optimizer sgd|adam]\n"
            "                   [--format nc|any|best]\n"
            "       onednn_step --check\n");
    return 2;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || v == 0 || v > (1ull << 24))
        return 0;
    *out = (size_t)v;
    return 1;
}

int main(int argc, char **argv)
{
    size_t widths[MAX_LAYERS + 1] = {784, 256, 128, 100, 10}, n_hidden = 3, n_out = 10;
    size_t batch = 128, steps = 50, warmup = 5, threads = 1;
    int adam_opt = 1, check = 0;
    const char *format = "best";
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--check")) {
            check = 1;
            continue;
        }
        if (!v)
            return usage();
        i++;
        int ok = 1;
        if (!strcmp(o, "--in"))
            ok = parse_size(v, &widths[0]);
        else if (!strcmp(o, "--out"))
            ok = parse_size(v, &n_out);
        else if (!strcmp(o, "--batch"))
            ok = parse_size(v, &batch);
        else if (!strcmp(o, "--threads"))
            ok = parse_size(v, &threads);
        else if (!strcmp(o, "--steps"))
            ok = parse_size(v, &steps);
        else if (!strcmp(o, "--warmup"))
            ok = !strcmp(v, "0") ? (warmup = 0, 1) : parse_size(v, &warmup);
        else if (!strcmp(o, "--optimizer"))
            ok = !strcmp(v, "adam") ? (adam_opt = 1) : !strcmp(v, "sgd") ? (adam_opt = 0, 1) : 0;
        else if (!strcmp(o, "--format"))
            ok = !strcmp(v, "nc") || !strcmp(v, "any") || !strcmp(v, "best"), format = v;
        else if (!strcmp(o, "--layers")) {
            n_hidden = 0;
            for (const char *p = v; ok && *p; n_hidden++) {
                char buf[32];
                size_t len = strcspn(p, ",");
                ok = len > 0 && len < sizeof buf && n_hidden + 2 < MAX_LAYERS;
                if (ok) {
                    memcpy(buf, p, len);
                    buf[len] = '\0';
                    ok = parse_size(buf, &widths[1 + n_hidden]);
                }
                p += len + (p[len] == ',');
            }
        } else
            ok = 0;
        if (!ok)
            return usage();
    }
#ifdef _OPENMP
    omp_set_num_threads((int)threads);
#else
    threads = 1;
#endif
    if (check) {
        int bad = check_format(0) | check_format(1);
        printf("check: %s\n", bad ? "FAILED" : "ok: same gradients as backprop");
        return bad;
    }
    size_t L = n_hidden + 1;
    widths[L] = n_out;
    float lr = adam_opt ? 1e-3f : 0.01f;
    double *ms = xalloc(steps * sizeof *ms);
    /* --format best: a short trial of each, then the full run of the faster. */
    int any = !strcmp(format, "any");
    if (!strcmp(format, "best")) {
        size_t trial = steps < 10 ? steps : 10;
        mlp *a = mlp_create(widths, L, batch, 0, adam_opt, lr);
        double t_nc = time_steps(a, 2, trial, ms);
        mlp_destroy(a);
        mlp *b = mlp_create(widths, L, batch, 1, adam_opt, lr);
        double t_any = time_steps(b, 2, trial, ms);
        mlp_destroy(b);
        any = t_any < t_nc;
    }
    double peak = cli_fma_peak(isa_name()) * (double)threads;
    mlp *n = mlp_create(widths, L, batch, any, adam_opt, lr);
    double med = time_steps(n, warmup, steps, ms);
    double macs = 0.0;
    printf("{\"library\":\"onednn\",\"layers\":\"%zu", widths[0]);
    for (size_t l = 0; l < L; l++) {
        macs += (double)widths[l] * (double)widths[l + 1];
        printf("-%zu", widths[l + 1]);
    }
    double gflops = 6.0 * (double)batch * macs / (med * 1e-3) * 1e-9;
    printf("\",\"batch\":%zu,\"optimizer\":\"%s\",\"threads\":%zu,\"isa\":\"%s\","
           "\"format\":\"%s\",\"steps\":%zu,\"ms_per_step\":%.4f,\"p10\":%.4f,\"p90\":%.4f,"
           "\"samples_per_second\":%.1f,\"gflops\":%.4g,",
           batch, adam_opt ? "adam" : "sgd", threads, isa_name(), any ? "any" : "nc", steps,
           med, quantile(ms, steps, 0.1), quantile(ms, steps, 0.9),
           (double)batch / (med * 1e-3), gflops);
    if (peak > 0)
        printf("\"peak_gflops\":%.2f,\"percent_of_peak\":%.1f}\n", peak, 100.0 * gflops / peak);
    else
        printf("\"peak_gflops\":null,\"percent_of_peak\":null}\n");
    mlp_destroy(n);
    free(ms);
    return 0;
}
