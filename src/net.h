/* The network: layers as views into three contiguous blocks (parameters,
 * gradients, activations), all sized and allocated by bp_net_create. */
#ifndef BP_NET_H
#define BP_NET_H

#include <stdint.h>

#include "backprop.h"
#include "dense.h"
#include "ctx.h"
#include "team.h"

/* Widths and depths above these are refused (by bp_net_create and the model
 * loader alike): no real MLP comes near, and they keep every size product
 * far from overflowing. */
#define BPI_MAX_WIDTH ((size_t)1 << 24)
#define BPI_MAX_LAYERS ((size_t)1 << 12)

typedef struct bpi_layer {
    size_t n_in, n_out;
    bp_activation act;
    float alpha;
    size_t w_off, b_off; /* float offsets of W and b in every parameter-shaped block */
    float *W, *b;        /* W (n_out, n_in), b (n_out) */
    float *dW, *db;      /* same shapes, in the gradient block */
    float *Z;            /* (max_batch, n_out) pre-activation */
    float *A;            /* (max_batch, n_out) output; == Z for identity */
    float *dA;           /* (max_batch, n_out) dL/dA: the input gradient of the next layer */
    float *dZ;           /* (max_batch, n_out) dL/dZ */
} bpi_layer;

/* Layer L's activation backward (dZ from dA), to run in the write-back of
 * the input-gradient GEMM of the layer above (dense.h). */
static inline bpi_act_fused bpi_act_fused_backward(const bpi_layer *L)
{
    bpi_act_fused f = {L->act, L->alpha, L->Z, L->A, L->dZ, L->n_out};
    return f;
}

/* Called by the backward pass as soon as layer `layer`'s dW and db are final
 * (layers come last to first), e.g. to start their all-reduce while the
 * rest of the backward pass runs. */
typedef void (*bpi_grads_ready_fn)(void *user, size_t layer);

struct bp_net {
    bp_ctx *ctx;
    size_t n_in, n_layers, max_batch;
    bp_head head;
    bpi_layer *layers;
    size_t n_params;         /* weights and biases, unpadded */
    size_t block_floats;     /* floats in a parameter-shaped block (tensors 64-byte aligned) */
    float *params;           /* parameter block */
    float *grads;            /* gradient block, same layout */
    float *acts;             /* activation block: Z, A, dA, dZ of every layer, then the rest */
    float *dX;               /* (max_batch, n_in) dL/dX of the network input */
    double *row_loss;        /* (max_batch) per-sample loss of the last backward */
    float *batch_x;          /* (max_batch, n_in) staging for bp_train_epoch / bp_evaluate */
    int32_t *batch_labels;   /* (max_batch) */
    float *batch_targets;    /* (max_batch, n_out) */
    size_t batch;            /* rows of the last forward, 0 before any */
    const float *x_last;     /* input of the last forward */
    int want_input_grad;
    struct bpi_sched *sched;         /* the backward plan, NULL: sequential */
    bpi_grads_ready_fn grads_ready;  /* NULL: nobody listens */
    void *grads_ready_user;
    /* What the optimizer may know without reading the blocks (optim.c):
     * dW_absmax[i], bits of max |dW_i| (bpi_abs_bits), written by the
     * weight-gradient GEMM of the last backward and valid while
     * grad_bound_valid (cleared by anything else writing gradients);
     * params_gen changes whenever the parameters are written. */
    uint32_t *dW_absmax;     /* (n_layers) */
    int grad_bound_valid;
    uint64_t params_gen;
    uint64_t one_region_steps; /* training steps run in one parallel region, for tests */
    uint64_t one_region_evals; /* bp_evaluate passes run in one region, for tests */
    bpi_barrier step_barrier;  /* all the context's threads, in that region (step.c) */
};

/* Every write of the parameter block calls this. */
static inline void bpi_net_params_written(bp_net *net)
{
    net->params_gen++;
}

/* Validate (layer, which) and return the tensor's float offset and size. */
bp_status bpi_net_tensor(const bp_net *net, size_t layer, bp_tensor which,
                         const char *fn, size_t *offset, size_t *count);

/* Forward and backward without argument checks (callers have checked). */
void bpi_net_forward(bp_net *net, const float *X, size_t B);
bp_status bpi_net_backward(bp_net *net, const int32_t *labels, const float *targets,
                           float *loss, const char *fn);
/* Loss of the last forward without computing gradients. */
bp_status bpi_net_loss(bp_net *net, const int32_t *labels, const float *targets,
                       double *loss, const char *fn);
/* Steps by the threads of one parallel region (step.c, evaluate.c), each
 * member of team calling: the forward, ending at a barrier (net->batch and
 * net->x_last are the caller's to set; `training`: the step's update
 * follows, by the threads that own each weight's rows, so the GEMMs split
 * to keep those rows on their threads, gemm.h's b_owned); the loss of the B rows just
 * forwarded and, with want_grad, the last layer's dA, returning the mean
 * loss on every member. On a non-finite loss, bpi_net_loss_failure gives
 * the error (run it on one thread). */
struct bpi_team;
void bpi_net_forward_team(bp_net *net, const struct bpi_team *team, const float *X, size_t B,
                          int training);
double bpi_net_loss_team(bp_net *net, const struct bpi_team *team, size_t B,
                         const int32_t *labels, const float *targets, int want_grad);
/* One layer's backward steps by a team, no barrier at the end: its dZ from
 * its dA (needed for the last layer only: every other layer's comes with
 * the input gradient of the layer above); its input gradient dX (the layer
 * below's dA, its dZ fused in; nothing for layer 0 unless the input
 * gradient is wanted); its weight and bias gradients. The backward plan's
 * tasks (sched_exec.c) and bpi_net_backward_team run these. */
void bpi_net_act_backward_team(bp_net *net, const struct bpi_team *team, size_t layer);
void bpi_net_input_grad_team(bp_net *net, const bpi_gemm_env *env, const struct bpi_team *team,
                             size_t layer);
void bpi_net_weight_grad_team(bp_net *net, const bpi_gemm_env *env,
                              const struct bpi_team *team, size_t layer);
/* The sequential backward (bpi_net_backward's loop, the loss's dA already
 * filled) with each GEMM on the whole team, ending at a barrier. */
void bpi_net_backward_team(bp_net *net, const struct bpi_team *team);
bp_status bpi_net_loss_failure(const bp_net *net, const int32_t *labels, const float *targets,
                               const char *fn);
/* Check labels/targets against the net's head for a batch of B rows. */
bp_status bpi_check_targets(const bp_net *net, const int32_t *labels, const float *targets,
                            size_t B, const char *fn);

#endif
