/* Gradient check: analytic gradients against central finite differences of
 * a double-precision evaluation of the same net. Slow by design (two forward
 * passes per checked entry); allocates its own double buffers. */
#include <math.h>
#include <stdlib.h>

#include "alloc.h"
#include "error.h"
#include "net.h"

typedef struct dnet {
    const bp_net *net;
    double *params;    /* block_floats, same layout as net->params */
    double *buf[2];    /* (B, max width) ping-pong activations */
} dnet;

static double dact(bp_activation act, double alpha, double z)
{
    switch (act) {
    case BP_ACT_RELU: return z > 0 ? z : 0;
    case BP_ACT_LEAKY_RELU: return z > 0 ? z : alpha * z;
    case BP_ACT_SIGMOID: return 1.0 / (1.0 + exp(-z));
    case BP_ACT_TANH: return tanh(z);
    case BP_ACT_GELU:
        return 0.5 * z * (1.0 + tanh(0.7978845608028654 * (z + 0.044715 * z * z * z)));
    case BP_ACT_IDENTITY: break;
    }
    return z;
}

/* Mean loss of the head on Y (B, n), in double. */
static double dloss(bp_head head, const double *Y, size_t B, size_t n, const int32_t *labels,
                    const float *targets)
{
    double total = 0.0;
    for (size_t b = 0; b < B; b++) {
        const double *y = Y + b * n;
        if (head == BP_HEAD_SOFTMAX_CE) {
            double m = y[0], s = 0.0;
            for (size_t j = 1; j < n; j++)
                m = y[j] > m ? y[j] : m;
            for (size_t j = 0; j < n; j++)
                s += exp(y[j] - m);
            total += m + log(s) - y[labels[b]];
            continue;
        }
        double row = 0.0;
        for (size_t j = 0; j < n; j++) {
            double t = targets[b * n + j];
            if (head == BP_HEAD_MSE)
                row += (y[j] - t) * (y[j] - t);
            else
                row += (y[j] > 0 ? y[j] : 0) - y[j] * t + log1p(exp(-fabs(y[j])));
        }
        total += row / (double)n;
    }
    return total / (double)B;
}

static double dforward_loss(const dnet *d, const float *X, size_t B, const int32_t *labels,
                            const float *targets)
{
    const bp_net *net = d->net;
    const double *in = NULL;
    size_t n_in = net->n_in;
    for (size_t i = 0; i < net->n_layers; i++) {
        const bpi_layer *L = &net->layers[i];
        const double *W = d->params + L->w_off, *bias = d->params + L->b_off;
        double *out = d->buf[i % 2];
        for (size_t b = 0; b < B; b++)
            for (size_t o = 0; o < L->n_out; o++) {
                double z = bias[o];
                for (size_t k = 0; k < n_in; k++)
                    z += (in ? in[b * n_in + k] : (double)X[b * n_in + k]) * W[o * n_in + k];
                out[b * L->n_out + o] = dact(L->act, L->alpha, z);
            }
        in = out;
        n_in = L->n_out;
    }
    return dloss(net->head, in, B, n_in, labels, targets);
}

static void check_tensor(dnet *d, const float *X, size_t B, const int32_t *labels,
                         const float *targets, double h, size_t off, size_t n, size_t max_n,
                         bp_gradcheck_result *r)
{
    size_t m = max_n == 0 || max_n > n ? n : max_n;
    r->n_checked = m;
    r->max_rel_error = r->max_abs_error = 0.0;
    for (size_t k = 0; k < m; k++) {
        size_t idx = off + k * n / m; /* spread evenly over the tensor */
        double saved = d->params[idx];
        d->params[idx] = saved + h;
        double lp = dforward_loss(d, X, B, labels, targets);
        d->params[idx] = saved - h;
        double lm = dforward_loss(d, X, B, labels, targets);
        d->params[idx] = saved;
        double fd = (lp - lm) / (2.0 * h);
        double g = d->net->grads[idx];
        double abs_err = fabs(g - fd);
        double scale = fmax(fmax(fabs(g), fabs(fd)), 1e-4);
        r->max_abs_error = fmax(r->max_abs_error, abs_err);
        r->max_rel_error = fmax(r->max_rel_error, abs_err / scale);
    }
}

static size_t max_width(const bp_net *net)
{
    size_t w = net->n_in;
    for (size_t i = 0; i < net->n_layers; i++)
        w = net->layers[i].n_out > w ? net->layers[i].n_out : w;
    return w;
}

bp_status bp_gradcheck(bp_net *net, const float *X, const int32_t *labels, const float *targets,
                       size_t B, double h, size_t max_per_tensor, bp_gradcheck_result *results,
                       size_t n_results)
{
    const char *fn = "bp_gradcheck";
    if (!net || !X || !results)
        return bpi_fail(BP_EINVAL, "%s: %s is NULL", fn, !net ? "net" : !X ? "X" : "results");
    if (B == 0 || B > net->max_batch)
        return bpi_fail(BP_EINVAL, "%s: batch B is %zu (expected 1..max_batch %zu)", fn, B,
                        net->max_batch);
    if (!(h > 0.0) || !isfinite(h))
        return bpi_fail(BP_EINVAL, "%s: step h is %g (expected finite > 0)", fn, h);
    if (n_results < 2 * net->n_layers)
        return bpi_fail(BP_EINVAL, "%s: results holds %zu entries, the net needs %zu", fn,
                        n_results, 2 * net->n_layers);
    BPI_TRY(bpi_check_targets(net, labels, targets, B, fn));

    bpi_net_forward(net, X, B);
    BPI_TRY(bpi_net_backward(net, labels, targets, NULL, fn));

    dnet d = {net, NULL, {NULL, NULL}};
    size_t w = max_width(net);
    d.params = bpi_alloc(net->block_floats * sizeof(double));
    d.buf[0] = bpi_alloc(B * w * sizeof(double));
    d.buf[1] = bpi_alloc(B * w * sizeof(double));
    if (!d.params || !d.buf[0] || !d.buf[1]) {
        bpi_free(d.params), bpi_free(d.buf[0]), bpi_free(d.buf[1]);
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate double buffers", fn);
    }
    for (size_t k = 0; k < net->block_floats; k++)
        d.params[k] = net->params[k];
    for (size_t i = 0; i < net->n_layers; i++) {
        const bpi_layer *L = &net->layers[i];
        bp_gradcheck_result *rw = &results[2 * i], *rb = &results[2 * i + 1];
        rw->layer = rb->layer = i;
        rw->which = BP_WEIGHT;
        rb->which = BP_BIAS;
        check_tensor(&d, X, B, labels, targets, h, L->w_off, L->n_out * L->n_in,
                     max_per_tensor, rw);
        check_tensor(&d, X, B, labels, targets, h, L->b_off, L->n_out, max_per_tensor, rb);
    }
    bpi_free(d.params), bpi_free(d.buf[0]), bpi_free(d.buf[1]);
    return BP_OK;
}
