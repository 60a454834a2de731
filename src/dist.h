/* Data-parallel training over MPI (src/mpi.c), seen from the rest of the
 * library. Only built with MPI (BP_HAVE_MPI); ctx->dist is NULL otherwise
 * and whenever the context has no communicator. */
#ifndef BP_DIST_H
#define BP_DIST_H

#include "backprop.h"

typedef struct bpi_dist bpi_dist;

void bpi_dist_free(bpi_dist *d);

/* bp_train_step and bp_train_epoch(_progress) on a context with a
 * communicator; net and opt are a checked pair, the rest is checked here
 * (collectively, so that a bad argument on one rank fails every rank). */
bp_status bpi_dist_step(bp_net *net, bp_optim *opt, const float *X, const int32_t *labels,
                        const float *targets, size_t B, float *loss, const char *fn);
bp_status bpi_dist_epoch(bp_net *net, bp_optim *opt, bp_dataset *ds, size_t batch,
                         uint64_t seed, uint64_t epoch, float *mean_loss,
                         bp_progress_fn progress, void *user, size_t *batches_done,
                         const char *fn);

#endif
