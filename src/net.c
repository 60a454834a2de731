/* Creating a net, its memory layout, and access to its tensors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "net.h"
#include "rng.h"
#include "sched.h"

static int valid_activation(bp_activation a)
{
    return a >= BP_ACT_IDENTITY && a <= BP_ACT_GELU;
}

static bp_status check_specs(size_t n_in, size_t n_layers, const bp_layer_spec *specs,
                             bp_head head, size_t max_batch)
{
    const char *fn = "bp_net_create";
    if (n_in == 0 || n_in > BPI_MAX_WIDTH)
        return bpi_fail(BP_EINVAL, "%s: n_in is %zu (expected 1..%zu)", fn, n_in, BPI_MAX_WIDTH);
    if (n_layers == 0 || n_layers > BPI_MAX_LAYERS)
        return bpi_fail(BP_EINVAL, "%s: n_layers is %zu (expected 1..%zu)", fn, n_layers,
                        BPI_MAX_LAYERS);
    if (!specs)
        return bpi_fail(BP_EINVAL, "%s: layers is NULL", fn);
    if (head < BP_HEAD_SOFTMAX_CE || head > BP_HEAD_SIGMOID_BCE)
        return bpi_fail(BP_EINVAL, "%s: head is %d (not a bp_head)", fn, (int)head);
    if (max_batch == 0 || max_batch > BPI_MAX_WIDTH)
        return bpi_fail(BP_EINVAL, "%s: max_batch is %zu (expected 1..%zu)", fn, max_batch,
                        BPI_MAX_WIDTH);
    for (size_t i = 0; i < n_layers; i++) {
        if (specs[i].n_out == 0 || specs[i].n_out > BPI_MAX_WIDTH)
            return bpi_fail(BP_EINVAL, "%s: layer %zu: n_out is %zu (expected 1..%zu)", fn, i,
                            specs[i].n_out, BPI_MAX_WIDTH);
        if (!valid_activation(specs[i].activation))
            return bpi_fail(BP_EINVAL, "%s: layer %zu: activation is %d (not a bp_activation)",
                            fn, i, (int)specs[i].activation);
        if (specs[i].activation == BP_ACT_LEAKY_RELU && !isfinite(specs[i].alpha))
            return bpi_fail(BP_EINVAL, "%s: layer %zu: leaky ReLU alpha is not finite", fn, i);
    }
    return BP_OK;
}

/* Sizes of the blocks, with every tensor starting on a 64-byte boundary.
 * Returns 0 on overflow. */
typedef struct net_sizes {
    size_t params;   /* floats in a parameter-shaped block */
    size_t acts;     /* floats in the activation block */
    size_t n_params; /* unpadded parameter count */
} net_sizes;

static int add_tensor(size_t *total, size_t rows, size_t cols)
{
    size_t n;
    return bpi_mul(rows, cols, &n) && bpi_add(*total, bpi_round_floats(n), total);
}

static int plan_sizes(bp_net *net, const bp_layer_spec *specs, net_sizes *sz)
{
    memset(sz, 0, sizeof *sz);
    size_t n_in = net->n_in, B = net->max_batch;
    for (size_t i = 0; i < net->n_layers; i++) {
        bpi_layer *L = &net->layers[i];
        L->n_in = n_in;
        L->n_out = specs[i].n_out;
        L->act = specs[i].activation;
        L->alpha = specs[i].activation == BP_ACT_LEAKY_RELU ? specs[i].alpha : 0.0f;
        L->w_off = sz->params;
        if (!add_tensor(&sz->params, L->n_out, L->n_in))
            return 0;
        L->b_off = sz->params;
        if (!add_tensor(&sz->params, L->n_out, 1))
            return 0;
        size_t wn = L->n_out * L->n_in; /* cannot overflow: checked above */
        if (!bpi_add(sz->n_params, wn + L->n_out, &sz->n_params))
            return 0;
        /* Z, dA, dZ, and A unless the activation is the identity. */
        int tensors = L->act == BP_ACT_IDENTITY ? 3 : 4;
        for (int t = 0; t < tensors; t++)
            if (!add_tensor(&sz->acts, B, L->n_out))
                return 0;
        n_in = L->n_out;
    }
    /* dX (B, n_in), batch_x (B, n_in), batch_targets (B, n_out). */
    size_t n_out = net->layers[net->n_layers - 1].n_out;
    return add_tensor(&sz->acts, B, net->n_in) && add_tensor(&sz->acts, B, net->n_in) &&
           add_tensor(&sz->acts, B, n_out);
}

/* Point every layer's views into the blocks. */
static void assign_views(bp_net *net)
{
    float *a = net->acts;
    size_t B = net->max_batch;
    for (size_t i = 0; i < net->n_layers; i++) {
        bpi_layer *L = &net->layers[i];
        size_t n = bpi_round_floats(B * L->n_out);
        L->W = net->params + L->w_off;
        L->b = net->params + L->b_off;
        L->dW = net->grads + L->w_off;
        L->db = net->grads + L->b_off;
        L->Z = a, a += n;
        if (L->act == BP_ACT_IDENTITY)
            L->A = L->Z;
        else
            L->A = a, a += n;
        L->dA = a, a += n;
        L->dZ = a, a += n;
    }
    net->dX = a, a += bpi_round_floats(B * net->n_in);
    net->batch_x = a, a += bpi_round_floats(B * net->n_in);
    net->batch_targets = a;
}

static int alloc_floats(float **p, size_t n)
{
    size_t bytes;
    if (!bpi_mul(n, sizeof(float), &bytes))
        return 0;
    *p = bpi_alloc(bytes);
    return *p != NULL;
}

bp_status bp_net_create(bp_net **out, bp_ctx *ctx, size_t n_in, size_t n_layers,
                        const bp_layer_spec *layers, bp_head head, size_t max_batch)
{
    const char *fn = "bp_net_create";
    if (!out)
        return bpi_fail(BP_EINVAL, "%s: net is NULL", fn);
    if (!ctx)
        return bpi_fail(BP_EINVAL, "%s: ctx is NULL", fn);
    BPI_TRY(check_specs(n_in, n_layers, layers, head, max_batch));

    bp_net *net = bpi_alloc(sizeof *net);
    if (!net)
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate the net", fn);
    net->ctx = ctx;
    net->n_in = n_in;
    net->n_layers = n_layers;
    net->max_batch = max_batch;
    net->head = head;
    net->layers = bpi_alloc_array(n_layers, sizeof *net->layers);
    net_sizes sz;
    if (!net->layers) {
        bp_net_destroy(net);
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate %zu layers", fn, n_layers);
    }
    if (!plan_sizes(net, layers, &sz)) {
        bp_net_destroy(net);
        return bpi_fail(BP_EINVAL, "%s: sizes overflow (n_in %zu, max_batch %zu)", fn, n_in,
                        max_batch);
    }
    net->n_params = sz.n_params;
    net->block_floats = sz.params;
    if (!alloc_floats(&net->params, sz.params) || !alloc_floats(&net->grads, sz.params) ||
        !alloc_floats(&net->acts, sz.acts) ||
        !(net->row_loss = bpi_alloc_array(max_batch, sizeof(double))) ||
        !(net->dW_absmax = bpi_alloc_array(n_layers, sizeof(uint32_t))) ||
        !(net->batch_labels = bpi_alloc_array(max_batch, sizeof(int32_t)))) {
        bp_net_destroy(net);
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate %zu parameter and %zu activation floats",
                        fn, sz.params, sz.acts);
    }
    assign_views(net);
    bp_status s = bpi_sched_create(net, &net->sched);
    if (s != BP_OK) {
        bp_net_destroy(net);
        return s;
    }
    *out = net;
    return BP_OK;
}

void bp_net_destroy(bp_net *net)
{
    if (!net)
        return;
    bpi_free(net->params);
    bpi_free(net->grads);
    bpi_free(net->acts);
    bpi_free(net->row_loss);
    bpi_free(net->dW_absmax);
    bpi_free(net->batch_labels);
    bpi_sched_destroy(net->sched);
    bpi_free(net->layers);
    bpi_free(net);
}

size_t bp_net_n_layers(const bp_net *net) { return net ? net->n_layers : 0; }
size_t bp_net_n_in(const bp_net *net) { return net ? net->n_in : 0; }
size_t bp_net_max_batch(const bp_net *net) { return net ? net->max_batch : 0; }
size_t bp_net_n_params(const bp_net *net) { return net ? net->n_params : 0; }
bp_head bp_net_head(const bp_net *net) { return net ? net->head : BP_HEAD_SOFTMAX_CE; }

size_t bp_net_n_out(const bp_net *net)
{
    return net ? net->layers[net->n_layers - 1].n_out : 0;
}

bp_status bp_net_layer(const bp_net *net, size_t layer, bp_layer_spec *spec)
{
    if (!net || !spec)
        return bpi_fail(BP_EINVAL, "bp_net_layer: %s is NULL", !net ? "net" : "spec");
    if (layer >= net->n_layers)
        return bpi_fail(BP_EINVAL, "bp_net_layer: layer %zu out of range (net has %zu)", layer,
                        net->n_layers);
    const bpi_layer *L = &net->layers[layer];
    spec->n_out = L->n_out;
    spec->activation = L->act;
    spec->alpha = L->alpha;
    return BP_OK;
}

/* ---------------------------------------------------------------- init */

bp_status bp_net_init(bp_net *net, bp_init init, uint64_t seed)
{
    if (!net)
        return bpi_fail(BP_EINVAL, "bp_net_init: net is NULL");
    if (init < BP_INIT_XAVIER_UNIFORM || init > BP_INIT_HE_NORMAL)
        return bpi_fail(BP_EINVAL, "bp_net_init: init is %d (not a bp_init)", (int)init);
    bpi_rng rng;
    bpi_rng_seed(&rng, seed);
    int uniform = init == BP_INIT_XAVIER_UNIFORM || init == BP_INIT_HE_UNIFORM;
    int xavier = init == BP_INIT_XAVIER_UNIFORM || init == BP_INIT_XAVIER_NORMAL;
    /* Layers in order, weights row by row: one stream defines the whole net. */
    for (size_t i = 0; i < net->n_layers; i++) {
        bpi_layer *L = &net->layers[i];
        double fan = xavier ? (double)(L->n_in + L->n_out) / 2.0 : (double)L->n_in;
        double var = 1.0 / fan; /* Glorot: 2/(in+out); He: 2/in */
        var *= xavier ? 1.0 : 2.0;
        double a = sqrt(3.0 * var); /* U(-a, a) has variance a^2 / 3 */
        double sd = sqrt(var);
        size_t n = L->n_out * L->n_in;
        for (size_t k = 0; k < n; k++)
            L->W[k] = (float)(uniform ? a * (2.0 * bpi_rng_uniform(&rng) - 1.0)
                                      : sd * bpi_rng_normal(&rng));
        memset(L->b, 0, L->n_out * sizeof(float));
    }
    bpi_net_params_written(net);
    return BP_OK;
}

/* ---------------------------------------------------------- tensor access */

bp_status bpi_net_tensor(const bp_net *net, size_t layer, bp_tensor which, const char *fn,
                         size_t *offset, size_t *count)
{
    if (!net)
        return bpi_fail(BP_EINVAL, "%s: net is NULL", fn);
    if (layer >= net->n_layers)
        return bpi_fail(BP_EINVAL, "%s: layer %zu out of range (net has %zu)", fn, layer,
                        net->n_layers);
    const bpi_layer *L = &net->layers[layer];
    if (which == BP_WEIGHT) {
        *offset = L->w_off;
        *count = L->n_out * L->n_in;
    } else if (which == BP_BIAS) {
        *offset = L->b_off;
        *count = L->n_out;
    } else {
        return bpi_fail(BP_EINVAL, "%s: which is %d (not a bp_tensor)", fn, (int)which);
    }
    return BP_OK;
}

/* Shared by the copy functions: validate and locate the tensor in `block`. */
static bp_status locate(const bp_net *net, size_t layer, bp_tensor which, const void *buf,
                        size_t count, const char *fn, size_t *offset)
{
    size_t n = 0;
    BPI_TRY(bpi_net_tensor(net, layer, which, fn, offset, &n));
    if (!buf)
        return bpi_fail(BP_EINVAL, "%s: buffer is NULL", fn);
    if (count != n)
        return bpi_fail(BP_EINVAL, "%s: layer %zu %s has %zu floats, count is %zu", fn, layer,
                        which == BP_WEIGHT ? "weight" : "bias", n, count);
    return BP_OK;
}

bp_status bp_net_get_param(const bp_net *net, size_t layer, bp_tensor which, float *dst,
                           size_t count)
{
    size_t off = 0;
    BPI_TRY(locate(net, layer, which, dst, count, "bp_net_get_param", &off));
    memcpy(dst, net->params + off, count * sizeof(float));
    return BP_OK;
}

bp_status bp_net_set_param(bp_net *net, size_t layer, bp_tensor which, const float *src,
                           size_t count)
{
    size_t off = 0;
    BPI_TRY(locate(net, layer, which, src, count, "bp_net_set_param", &off));
    memcpy(net->params + off, src, count * sizeof(float));
    bpi_net_params_written(net);
    return BP_OK;
}

bp_status bp_net_get_grad(const bp_net *net, size_t layer, bp_tensor which, float *dst,
                          size_t count)
{
    size_t off = 0;
    BPI_TRY(locate(net, layer, which, dst, count, "bp_net_get_grad", &off));
    memcpy(dst, net->grads + off, count * sizeof(float));
    return BP_OK;
}

bp_status bp_net_set_grad(bp_net *net, size_t layer, bp_tensor which, const float *src,
                          size_t count)
{
    size_t off = 0;
    BPI_TRY(locate(net, layer, which, src, count, "bp_net_set_grad", &off));
    memcpy(net->grads + off, src, count * sizeof(float));
    net->grad_bound_valid = 0;
    return BP_OK;
}

static bp_status view(const bp_net *net, const float *block, size_t layer, bp_tensor which,
                      const float **data, size_t *rows, size_t *cols, const char *fn)
{
    size_t off = 0, n = 0;
    BPI_TRY(bpi_net_tensor(net, layer, which, fn, &off, &n));
    if (!data)
        return bpi_fail(BP_EINVAL, "%s: data is NULL", fn);
    *data = block + off;
    if (rows)
        *rows = net->layers[layer].n_out;
    if (cols)
        *cols = which == BP_WEIGHT ? net->layers[layer].n_in : 1;
    return BP_OK;
}

bp_status bp_net_param_view(const bp_net *net, size_t layer, bp_tensor which,
                            const float **data, size_t *rows, size_t *cols)
{
    return view(net, net ? net->params : NULL, layer, which, data, rows, cols,
                "bp_net_param_view");
}

bp_status bp_net_grad_view(const bp_net *net, size_t layer, bp_tensor which,
                           const float **data, size_t *rows, size_t *cols)
{
    return view(net, net ? net->grads : NULL, layer, which, data, rows, cols,
                "bp_net_grad_view");
}

bp_status bp_net_set_input_grad(bp_net *net, int enable)
{
    if (!net)
        return bpi_fail(BP_EINVAL, "bp_net_set_input_grad: net is NULL");
    int want = enable != 0;
    if (want == net->want_input_grad)
        return BP_OK;
    /* The backward plan includes the first layer's input gradient or not:
     * plan again (all or nothing: on failure the net stays as it was). */
    bpi_sched *sched = NULL;
    net->want_input_grad = want;
    bp_status s = bpi_sched_create(net, &sched);
    if (s != BP_OK) {
        net->want_input_grad = !want;
        return s;
    }
    bpi_sched_destroy(net->sched);
    net->sched = sched;
    return BP_OK;
}
