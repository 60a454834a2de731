/*
 * backprop over MPI: data-parallel training on a communicator.
 *
 * Installed only when the library is built with MPI (meson option mpi);
 * BP_FEATURE_MPI in bp_build_features() says so at run time. backprop.h
 * itself never includes mpi.h.
 *
 * The model: every rank holds the whole net and the whole dataset. A global
 * batch of `batch x shards` rows is cut into `shards` contiguous shards of
 * `batch` rows (the last global batch may be short: the shards are then cut
 * the same way and some get fewer rows, or none); shard s is computed by
 * rank s / (shards / ranks). Each shard's gradient (the gradient of the
 * mean loss over its rows) is weighted by rows_s / N, N the rows of the
 * global batch, and summed over shards: that is exactly the gradient of the
 * global mean loss. The optimizer then takes the same step on every rank.
 *
 * Two reductions:
 *  - default: MPI_Iallreduce(MPI_SUM) in place on the gradient block, one
 *    call per bucket of consecutive layers, started from inside the
 *    backward pass as soon as the bucket's last layer (in backward order)
 *    has its dW and db, so communication overlaps the rest of the backward.
 *    The result equals a 1-rank run with batch x ranks rows up to the order
 *    of the floating-point sums (the tests bound the relative difference).
 *  - exact: every shard's weighted gradient is gathered to every rank
 *    (MPI_Iallgather, per bucket, also overlapped) and summed in shard
 *    order. The result is bitwise independent of the number of ranks: any
 *    rank count dividing `shards` (1 included: one process computing the
 *    shards one after another) gives the same weights, bit for bit, with the
 *    same ISA (BP_ISA) on every rank. Compared with a run without shards
 *    (one GEMM over the whole global batch) it differs by rounding only.
 *
 * Every call below is collective over the communicator unless it says
 * otherwise: all ranks call it, in the same order, with the same arguments
 * except where noted. MPI is called from the thread that calls the library,
 * never inside an OpenMP region: MPI_THREAD_FUNNELED is enough.
 */
#ifndef BACKPROP_MPI_H
#define BACKPROP_MPI_H

#include <mpi.h>

#include "backprop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bp_mpi_options {
    int exact;           /* 1: fixed reduction order (gather, sum in shard order) */
    int shards;          /* shards per global batch: 0 = the rank count; exact
                            mode only: any multiple of the rank count */
    int overlap;         /* 1: start reductions during backward; 0: after it */
    size_t bucket_bytes; /* consecutive layers share one reduction up to this
                            many bytes of gradient (a bigger layer goes alone) */
    int layer_updates;   /* 1: update each layer as soon as its own reduction
                            is done, while the others are in flight (needs
                            clip_norm 0; bp_mpi_prepare then keeps a copy of
                            the parameters and optimizer state, to put a
                            refused step back); 0: update after all */
} bp_mpi_options;

/* Defaults: not exact, shards = ranks, overlap on, 64 KiB buckets, layer
 * updates on. Not collective. */
BP_API bp_status bp_mpi_options_default(bp_mpi_options *opt);

/* Train ctx's nets over `comm`: the library keeps a duplicate
 * (MPI_Comm_dup), freed by bp_ctx_destroy (which must then run before
 * MPI_Finalize). MPI must be initialised by the caller, at least
 * MPI_THREAD_FUNNELED. opt may be NULL (defaults); the ranks' options are
 * compared and any difference gives BP_EINVAL on every rank. Passing
 * MPI_COMM_NULL detaches the context (not collective). */
BP_API bp_status bp_ctx_set_comm(bp_ctx *ctx, MPI_Comm comm, const bp_mpi_options *opt);

/* Rank and size of ctx's communicator (0 and 1 without one). Not collective. */
BP_API bp_status bp_ctx_comm_rank(const bp_ctx *ctx, int *rank, int *size);

/* Make net (and opt, which may be NULL) the same on every rank and ready to
 * train over ctx's communicator: broadcasts rank 0's parameters, and with
 * opt its state and step count, then sets up the reduction buffers (all
 * allocation happens here, none in the training steps). Call it after
 * creating or loading the net and optimizer, before the first distributed
 * step; one net per context at a time (preparing another replaces it). */
BP_API bp_status bp_mpi_prepare(bp_net *net, bp_optim *opt);

/* With a communicator set and bp_mpi_prepare() done, bp_train_step,
 * bp_train_epoch and bp_train_epoch_progress train data-parallel:
 *  - bp_train_epoch*: `batch` is the per-shard batch and every rank passes
 *    the same whole dataset, seed and epoch; the order shuffled from (seed,
 *    epoch) is the same as without MPI; *mean_loss and the progress
 *    callback's batch loss are global means; the callback runs on every
 *    rank and must return the same value on all (e.g. reduce a stop flag).
 *  - bp_train_step: each rank passes its own B rows (B may differ between
 *    ranks); not with shards != ranks. *loss is the global mean.
 * A failure on one rank (e.g. a NaN in its loss) fails the step on every
 * rank, after the collectives complete: no rank hangs and no parameter
 * changes anywhere. */

/* Timings of the distributed steps since bp_mpi_prepare (per rank). */
typedef struct bp_mpi_stats {
    uint64_t steps;
    double compute_seconds; /* forward and backward, shard gradients included */
    double wait_seconds;    /* after the backward: waiting for the reductions
                               (and the exact mode's sums): communication the
                               overlap did not hide */
    double update_seconds;  /* the optimizer step */
    uint64_t reductions;    /* bucket reductions started */
    uint64_t layer_updates; /* layers updated as soon as their own reduction
                               was done (layer_updates option) */
} bp_mpi_stats;

/* Not collective. */
BP_API bp_status bp_mpi_get_stats(const bp_ctx *ctx, bp_mpi_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* BACKPROP_MPI_H */
