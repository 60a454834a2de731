/* Optimizer internals shared with the training loop. */
#ifndef BP_OPTIM_H
#define BP_OPTIM_H

#include "backprop.h"

struct bp_optim {
    bp_net *net;
    bp_optim_config cfg;
    uint64_t steps;       /* updates applied so far */
    size_t n_slots;       /* state tensors per parameter */
    float *state;         /* n_slots parameter-shaped blocks, one after another */
    double *partials;     /* per-chunk sums of squares for the gradient norm */
    size_t n_chunks;
};

/* Learning rate at step t under cfg's schedule. */
double bpi_schedule_lr(const bp_optim_config *cfg, uint64_t t);
/* Check a schedule's fields; fn names the caller in the message. */
bp_status bpi_schedule_check(const bp_optim_config *cfg, const char *fn);

#endif
