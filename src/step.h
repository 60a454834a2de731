/* The training step in one parallel region (step.c). */
#ifndef BP_STEP_H
#define BP_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "backprop.h"

/* Forward, loss, backward and update of one batch of B rows (arguments
 * checked by the caller) in one OpenMP parallel region, with the plain
 * step's results, bits and errors. Returns 0 without doing anything when
 * it cannot run (see step.c): the caller then takes the plain step. */
/* A batch to gather first: positions start .. start+B of ds's order. */
typedef struct bpi_rows {
    const bp_dataset *ds;
    size_t start;
} bpi_rows;

/* With rows (may be NULL), X, labels and targets are the net's staging
 * buffers, which the region fills from them before the forward. */
int bpi_step_one_region(bp_net *net, bp_optim *opt, const bpi_rows *rows, const float *X,
                        const int32_t *labels, const float *targets, size_t B, float *loss,
                        bp_status *status, const char *fn);

#endif
