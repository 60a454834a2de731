/* Loss heads on the last layer's output Y (B, n). */
#ifndef BP_HEAD_H
#define BP_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "backprop.h"

/* row_loss (B) = each sample's loss (the batch loss is their mean); when dY is
 * not NULL also dY (B, n) = dL/dY of the batch-mean loss.
 *   softmax-CE:  l_b = lse(Y_b) - Y_b[label_b];   dY = (softmax(Y) - onehot) / B
 *   MSE:         l_b = sum_j (Y_bj - T_bj)^2 / n;  dY = 2 (Y - T) / (B n)
 *   sigmoid-BCE: l_b = sum_j max(y,0) - y t + log(1 + e^-|y|) / n;  dY = (s(Y) - T) / (B n) */
void bpi_head_loss(bp_head head, const float *Y, size_t B, size_t n, const int32_t *labels,
                   const float *targets, double *row_loss, float *dY, int n_threads);

/* The same for rows [b0, b1) of the B: the loop body of bpi_head_loss, for
 * callers that split the rows among their own threads. */
void bpi_head_loss_rows(bp_head head, const float *Y, size_t B, size_t n, size_t b0,
                        size_t b1, const int32_t *labels, const float *targets,
                        double *row_loss, float *dY);
/* P (B, n) = softmax(Y) / sigmoid(Y) / Y, row by row. */
void bpi_head_output(bp_head head, const float *Y, size_t B, size_t n, float *P, int n_threads);

#endif
