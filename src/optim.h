/* Optimizer internals shared with the training loop. */
#ifndef BP_OPTIM_H
#define BP_OPTIM_H

#include "backprop.h"

/* The arguments of one step's updates. */
typedef struct update_args {
    float lr;          /* lr_t of this step */
    float wd;          /* L2 term added to the gradient (0 for biases and AdamW) */
    float decay;       /* AdamW: p -= decay p, decay = lr_t wd (0 otherwise) */
    float scale;       /* gradient clipping factor (1 = none) */
    float b1, b2, eps;
    float step_size;   /* Adam: lr_t / (1 - b1^(t+1)) */
    float inv_sqrt_c2; /* Adam: 1 / sqrt(1 - b2^(t+1)) */
    int n_threads;
} update_args;

/* One piece of the update work: entries [lo, hi) of the tensor at float
 * offset off of the parameter-shaped blocks (W or b of `layer`). */
typedef struct bpi_update_chunk {
    size_t off, lo, hi;
    size_t layer;
    int weight;
} bpi_update_chunk;

struct bp_optim {
    bp_net *net;
    bp_optim_config cfg;
    uint64_t steps;       /* updates applied so far */
    size_t n_slots;       /* state tensors per parameter */
    float *state;         /* n_slots parameter-shaped blocks, one after another */
    double *partials;     /* per chunk: sums of squares for the gradient norm, or
                             the check pass's failure flags (per work chunk) */
    size_t n_chunks;      /* chunks of the whole block, for the norm */
    bpi_update_chunk *work; /* every tensor cut into chunks, layer by layer */
    size_t n_work;
    update_args step_args; /* the layer-by-layer step in progress */
    /* Bounds the write pass leaves behind, to prove the next step finite
     * without reading the blocks (see bp_optim_step): per work chunk, then
     * per layer, the bits (bpi_abs_bits) of max |p|, |s0|, |s1| of the
     * weights. Valid while bounds_valid and net->params_gen == bounds_gen. */
    uint32_t *chunk_max;   /* (n_work, 3) */
    uint32_t *weight_max;  /* (n_layers, 3) */
    unsigned char *layer_proven; /* (n_layers) this step's proofs */
    int bounds_valid;
    uint64_t bounds_gen;
    uint64_t proven;       /* weight tensors whose check pass was skipped, for tests */
};

/* Every write of the optimizer state other than a step calls this. */
static inline void bpi_optim_state_written(bp_optim *opt)
{
    opt->bounds_valid = 0;
}

/* Learning rate at step t under cfg's schedule. */
double bpi_schedule_lr(const bp_optim_config *cfg, uint64_t t);
/* Check a schedule's fields; fn names the caller in the message. */
bp_status bpi_schedule_check(const bp_optim_config *cfg, const char *fn);

/* bp_optim_step in phases (optim.c), for a caller that runs the passes on
 * the threads of its own parallel region (step.c): thread tid of nt runs
 * each *_part, and every part of a phase must be done before the next
 * phase starts.
 *   norm (clipping only): norm_part on every thread, then norm_total;
 *   prepare(sum of squares, or 0 without clipping): this step's arguments
 *     and proofs; fails only on a non-finite norm;
 *   check_part on every thread, then check_failed on any: if 1, refusal
 *     gives the step's error and nothing has been written;
 *   write_part on every thread, then finish (on one) counts the step. */
void bpi_optim_norm_part(bp_optim *opt, int tid, int nt);
double bpi_optim_norm_total(const bp_optim *opt);
bp_status bpi_optim_prepare(bp_optim *opt, double sum_squares, const char *fn);
void bpi_optim_check_part(bp_optim *opt, int tid, int nt);
int bpi_optim_check_failed(const bp_optim *opt);
bp_status bpi_optim_refusal(bp_optim *opt, const char *fn);
void bpi_optim_write_part(bp_optim *opt, int tid, int nt);
void bpi_optim_finish(bp_optim *opt);

/* Layer-by-layer updates, for MPI's overlap of the update with the other
 * layers' reductions (see optim.c): possible without global-norm clipping
 * and with a snapshot of (1 + snap_slots) x block_floats floats. begin,
 * then each layer's update (in any order; on failure the layer is left as
 * it was and the caller restores the layers it updated before), then end
 * (counts the step). */
int bpi_optim_layerwise_ok(const bp_optim *opt, size_t snap_slots);
void bpi_optim_layerwise_begin(bp_optim *opt);
bp_status bpi_optim_layerwise_update(bp_optim *opt, size_t layer, float *snap, const char *fn);
void bpi_optim_layerwise_restore(bp_optim *opt, size_t layer, const float *snap);
void bpi_optim_layerwise_end(bp_optim *opt);

#endif
