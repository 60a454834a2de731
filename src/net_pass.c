/* The forward and backward passes of the whole net. */
#include <math.h>
#include <string.h>

#include "activation.h"
#include "dense.h"
#include "error.h"
#include "head.h"
#include "net.h"
#include "sched.h"

/* ------------------------------------------------------------- checks */

static bp_status check_batch(const bp_net *net, const float *X, size_t B, const char *fn)
{
    if (!net)
        return bpi_fail(BP_EINVAL, "%s: net is NULL", fn);
    if (!X)
        return bpi_fail(BP_EINVAL, "%s: X is NULL", fn);
    if (B == 0 || B > net->max_batch)
        return bpi_fail(BP_EINVAL, "%s: batch B is %zu (expected 1..max_batch %zu)", fn, B,
                        net->max_batch);
    return BP_OK;
}

bp_status bpi_check_targets(const bp_net *net, const int32_t *labels, const float *targets,
                            size_t B, const char *fn)
{
    size_t n_out = net->layers[net->n_layers - 1].n_out;
    if (net->head == BP_HEAD_SOFTMAX_CE) {
        if (!labels || targets)
            return bpi_fail(BP_EINVAL, "%s: the softmax-CE head takes labels (non-NULL) and "
                                       "no targets (NULL)", fn);
        for (size_t b = 0; b < B; b++)
            if (labels[b] < 0 || (size_t)labels[b] >= n_out)
                return bpi_fail(BP_EINVAL, "%s: labels[%zu] is %d (expected 0..%zu)", fn, b,
                                (int)labels[b], n_out - 1);
        return BP_OK;
    }
    if (!targets || labels)
        return bpi_fail(BP_EINVAL, "%s: the %s head takes targets (non-NULL) and no labels "
                                   "(NULL)", fn, net->head == BP_HEAD_MSE ? "MSE" : "BCE");
    if (net->head == BP_HEAD_SIGMOID_BCE)
        for (size_t k = 0; k < B * n_out; k++)
            if (isfinite(targets[k]) && (targets[k] < 0.0f || targets[k] > 1.0f))
                return bpi_fail(BP_EINVAL, "%s: targets[%zu] is %g (BCE needs 0..1)", fn, k,
                                (double)targets[k]);
    return BP_OK;
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* Error path only: say where the first non-finite value appeared. */
bp_status bpi_net_loss_failure(const bp_net *net, const int32_t *labels, const float *targets,
                               const char *fn)
{
    size_t B = net->batch;
    (void)labels;
    if (!all_finite(net->x_last, B * net->n_in))
        return bpi_fail(BP_ENUMERIC, "%s: layer 0 input X holds NaN or infinity", fn);
    for (size_t i = 0; i < net->n_layers; i++) {
        const bpi_layer *L = &net->layers[i];
        if (!all_finite(L->W, L->n_out * L->n_in) || !all_finite(L->b, L->n_out))
            return bpi_fail(BP_ENUMERIC, "%s: layer %zu parameters hold NaN or infinity", fn, i);
        if (!all_finite(L->A, B * L->n_out))
            return bpi_fail(BP_ENUMERIC, "%s: layer %zu output is not finite (overflow)", fn, i);
    }
    if (targets && !all_finite(targets, B * net->layers[net->n_layers - 1].n_out))
        return bpi_fail(BP_ENUMERIC, "%s: the targets hold NaN or infinity", fn);
    return bpi_fail(BP_ENUMERIC, "%s: the loss is not finite (head %d)", fn, (int)net->head);
}

/* ------------------------------------------------------------ forward */

/* Layer L's activation, run in its forward GEMM's write-back. */
static bpi_act_fused act_forward(const bpi_layer *L)
{
    bpi_act_fused f = {L->act, L->alpha, L->Z, L->A, NULL, L->n_out};
    return f;
}

void bpi_net_forward(bp_net *net, const float *X, size_t B)
{
    const float *in = X;
    for (size_t i = 0; i < net->n_layers; i++) {
        bpi_layer *L = &net->layers[i];
        bpi_act_fused act = act_forward(L);
        bpi_dense_forward(&net->ctx->gemm, in, L->W, L->b, L->Z, B, L->n_in, L->n_out, &act);
        in = L->A;
    }
    net->batch = B;
    net->x_last = X;
}

void bpi_net_forward_team(bp_net *net, const bpi_team *team, const float *X, size_t B,
                          int training)
{
    const float *in = X;
    for (size_t i = 0; i < net->n_layers; i++) {
        bpi_layer *L = &net->layers[i];
        bpi_act_fused act = act_forward(L);
        bpi_dense_forward_team(&net->ctx->gemm, team, in, L->W, L->b, L->Z, B, L->n_in,
                               L->n_out, &act, training);
        bpi_barrier_wait(team->barrier); /* the next layer reads all of A */
        in = L->A;
    }
}

bp_status bp_net_forward(bp_net *net, const float *X, size_t B)
{
    BPI_TRY(check_batch(net, X, B, "bp_net_forward"));
    bpi_net_forward(net, X, B);
    return BP_OK;
}

bp_status bp_net_predict(bp_net *net, const float *X, size_t B, float *Y)
{
    BPI_TRY(check_batch(net, X, B, "bp_net_predict"));
    if (!Y)
        return bpi_fail(BP_EINVAL, "bp_net_predict: Y is NULL");
    bpi_net_forward(net, X, B);
    const bpi_layer *last = &net->layers[net->n_layers - 1];
    bpi_head_output(net->head, last->A, B, last->n_out, Y, net->ctx->n_threads);
    return BP_OK;
}

/* ----------------------------------------------------------- backward */

/* The batch loss: per-sample losses summed in sample order, so it does not
 * depend on the thread count. */
static double mean_row_loss(const double *row_loss, size_t B)
{
    double s = 0.0;
    for (size_t b = 0; b < B; b++)
        s += row_loss[b];
    return s / (double)B;
}

bp_status bpi_net_loss(bp_net *net, const int32_t *labels, const float *targets, double *loss,
                       const char *fn)
{
    const bpi_layer *last = &net->layers[net->n_layers - 1];
    bpi_head_loss(net->head, last->A, net->batch, last->n_out, labels, targets, net->row_loss,
                  NULL, net->ctx->n_threads);
    *loss = mean_row_loss(net->row_loss, net->batch);
    if (!isfinite(*loss))
        return bpi_net_loss_failure(net, labels, targets, fn);
    return BP_OK;
}

double bpi_net_loss_team(bp_net *net, const bpi_team *team, size_t B, const int32_t *labels,
                         const float *targets, int want_grad)
{
    bpi_layer *last = &net->layers[net->n_layers - 1];
    size_t lo, hi;
    /* rows split even when few: the other members would wait anyway */
    bpi_team_range(team, B, &lo, &hi);
    bpi_head_loss_rows(net->head, last->A, B, last->n_out, lo, hi, labels, targets,
                       net->row_loss, want_grad ? last->dA : NULL);
    bpi_barrier_wait(team->barrier);
    return mean_row_loss(net->row_loss, B);
}

bp_status bpi_net_backward(bp_net *net, const int32_t *labels, const float *targets,
                           float *loss, const char *fn)
{
    size_t B = net->batch;
    int nt = net->ctx->n_threads;
    bpi_layer *last = &net->layers[net->n_layers - 1];
    bpi_head_loss(net->head, last->A, B, last->n_out, labels, targets, net->row_loss, last->dA,
                  nt);
    double mean = mean_row_loss(net->row_loss, net->batch);
    if (!isfinite(mean))
        return bpi_net_loss_failure(net, labels, targets, fn);
    /* The weight-gradient GEMMs raise these (net.h). */
    net->grad_bound_valid = 0;
    memset(net->dW_absmax, 0, net->n_layers * sizeof *net->dW_absmax);
    /* The plan, unless someone listens for each layer's gradients (MPI's
     * all-reduce may only be started from this thread, between layers). */
    if (!net->grads_ready && bpi_sched_usable(net->sched, net) &&
        bpi_sched_backward(net, net->sched)) {
        net->grad_bound_valid = 1;
        if (loss)
            *loss = (float)mean;
        return BP_OK;
    }
    /* The last layer's dZ from the head's dA; every other layer's comes
     * with the input gradient of the layer above, in its write-back. */
    bpi_act_backward(last->act, last->alpha, last->Z, last->A, last->dA, last->dZ,
                     B * last->n_out, nt);
    for (size_t i = net->n_layers; i-- > 0;) {
        bpi_layer *L = &net->layers[i];
        const float *X = i > 0 ? net->layers[i - 1].A : net->x_last;
        float *dX = i > 0 ? net->layers[i - 1].dA : net->want_input_grad ? net->dX : NULL;
        bpi_act_fused below;
        if (i > 0)
            below = bpi_act_fused_backward(&net->layers[i - 1]);
        bpi_dense_backward(&net->ctx->gemm, L->dZ, X, L->W, L->dW, L->db, dX, B, L->n_in,
                           L->n_out, &net->dW_absmax[i], i > 0 ? &below : NULL);
        if (net->grads_ready)
            net->grads_ready(net->grads_ready_user, i);
    }
    net->grad_bound_valid = 1;
    if (loss)
        *loss = (float)mean;
    return BP_OK;
}

void bpi_net_act_backward_team(bp_net *net, const bpi_team *team, size_t layer)
{
    bpi_layer *L = &net->layers[layer];
    size_t lo, hi;
    bpi_team_range(team, net->batch * L->n_out, &lo, &hi);
    bpi_act_backward(L->act, L->alpha, L->Z + lo, L->A + lo, L->dA + lo, L->dZ + lo, hi - lo, 1);
}

void bpi_net_input_grad_team(bp_net *net, const bpi_gemm_env *env, const bpi_team *team,
                             size_t layer)
{
    bpi_layer *L = &net->layers[layer];
    if (layer == 0 && !net->want_input_grad)
        return;
    float *dX = layer > 0 ? net->layers[layer - 1].dA : net->dX;
    bpi_act_fused below;
    if (layer > 0)
        below = bpi_act_fused_backward(&net->layers[layer - 1]);
    bpi_dense_input_grad_team(env, team, L->dZ, L->W, dX, net->batch, L->n_in, L->n_out,
                              layer > 0 ? &below : NULL);
}

void bpi_net_weight_grad_team(bp_net *net, const bpi_gemm_env *env, const bpi_team *team,
                              size_t layer)
{
    bpi_layer *L = &net->layers[layer];
    const float *X = layer > 0 ? net->layers[layer - 1].A : net->x_last;
    bpi_dense_weight_grad_team(env, team, L->dZ, X, L->dW, L->db, net->batch, L->n_in, L->n_out,
                               &net->dW_absmax[layer]);
}

void bpi_net_backward_team(bp_net *net, const bpi_team *team)
{
    const bpi_gemm_env *gemm = &net->ctx->gemm;
    bpi_net_act_backward_team(net, team, net->n_layers - 1);
    bpi_barrier_wait(team->barrier);
    for (size_t i = net->n_layers; i-- > 0;) {
        bpi_net_weight_grad_team(net, gemm, team, i);
        bpi_net_input_grad_team(net, gemm, team, i);
        bpi_barrier_wait(team->barrier); /* the layer below reads dZ of all rows */
    }
}

bp_status bp_net_backward(bp_net *net, const int32_t *labels, const float *targets, float *loss)
{
    const char *fn = "bp_net_backward";
    if (!net)
        return bpi_fail(BP_EINVAL, "%s: net is NULL", fn);
    if (net->batch == 0)
        return bpi_fail(BP_ESTATE, "%s: no forward pass to go back through", fn);
    BPI_TRY(bpi_check_targets(net, labels, targets, net->batch, fn));
    return bpi_net_backward(net, labels, targets, loss, fn);
}

/* ------------------------------------------------- activations access */

static bp_status layer_view(const bp_net *net, size_t layer, const float **data, size_t *rows,
                            size_t *cols, const char *fn, const char *data_name)
{
    if (!net || !data)
        return bpi_fail(BP_EINVAL, "%s: %s is NULL", fn, !net ? "net" : data_name);
    if (layer >= net->n_layers)
        return bpi_fail(BP_EINVAL, "%s: layer %zu out of range (net has %zu)", fn, layer,
                        net->n_layers);
    if (net->batch == 0)
        return bpi_fail(BP_ESTATE, "%s: no forward pass yet", fn);
    (void)rows, (void)cols;
    return BP_OK;
}

bp_status bp_net_input_grad(const bp_net *net, size_t layer, const float **dX, size_t *rows,
                            size_t *cols)
{
    const char *fn = "bp_net_input_grad";
    BPI_TRY(layer_view(net, layer, dX, rows, cols, fn, "dX"));
    if (layer == 0 && !net->want_input_grad)
        return bpi_fail(BP_ESTATE, "%s: the network input gradient was not requested "
                                   "(bp_net_set_input_grad)", fn);
    *dX = layer == 0 ? net->dX : net->layers[layer - 1].dA;
    if (rows)
        *rows = net->batch;
    if (cols)
        *cols = net->layers[layer].n_in;
    return BP_OK;
}

bp_status bp_net_output(const bp_net *net, size_t layer, const float **A, size_t *rows,
                        size_t *cols)
{
    BPI_TRY(layer_view(net, layer, A, rows, cols, "bp_net_output", "A"));
    *A = net->layers[layer].A;
    if (rows)
        *rows = net->batch;
    if (cols)
        *cols = net->layers[layer].n_out;
    return BP_OK;
}
