/* The dense layer's three GEMMs and its bias work, forward beside backward. */
#ifndef BP_DENSE_H
#define BP_DENSE_H

#include <stddef.h>

#include "gemm.h"

/* X is (B, n_in), W is (n_out, n_in), b is (n_out); Z is (B, n_out).
 * Z = X W^T + b                                        (GEMM NT) */
void bpi_dense_forward(const bpi_gemm_env *gemm, const float *X, const float *W,
                       const float *b, float *Z, size_t B, size_t n_in, size_t n_out);

/* dZ is (B, n_out), X is (B, n_in), W is (n_out, n_in).
 * dW (n_out, n_in) = dZ^T X                            (GEMM TN)
 * db (n_out)       = sum over the batch of dZ
 * dX (B, n_in)     = dZ W, skipped when dX is NULL     (GEMM NN)
 * *dW_absmax (if not NULL) is raised to max |dW| (bpi_sgemm_absmax). */
void bpi_dense_backward(const bpi_gemm_env *gemm, const float *dZ, const float *X,
                        const float *W, float *dW, float *db, float *dX, size_t B,
                        size_t n_in, size_t n_out, uint32_t *dW_absmax);

/* The same two halves of the backward, run by a team of threads of an
 * enclosing parallel region (every member calls; see team.h):
 * dX (B, n_in) = dZ W, and dW = dZ^T X with db = colsum dZ. */
struct bpi_team;
void bpi_dense_input_grad_team(const bpi_gemm_env *gemm, const struct bpi_team *team,
                               const float *dZ, const float *W, float *dX, size_t B,
                               size_t n_in, size_t n_out);
void bpi_dense_weight_grad_team(const bpi_gemm_env *gemm, const struct bpi_team *team,
                                const float *dZ, const float *X, float *dW, float *db,
                                size_t B, size_t n_in, size_t n_out, uint32_t *dW_absmax);

#endif
