/* The dense layer's three GEMMs and its bias work, forward beside backward. */
#ifndef BP_DENSE_H
#define BP_DENSE_H

#include <stddef.h>

#include "backprop.h"
#include "gemm.h"

/* An activation run in a GEMM's write-back, on a layer's (B, n) arrays
 * with row stride ld = n: forward A = f(Z); backward dZ = dA f'(Z) (with
 * A = f(Z)), dA being the GEMM's C. Same bits as bpi_act_forward and
 * bpi_act_backward over the whole arrays. */
typedef struct bpi_act_fused {
    bp_activation act;
    float alpha;
    const float *Z;
    float *A;             /* forward: written; backward: read */
    float *dZ;            /* backward: written */
    size_t ld;
} bpi_act_fused;

/* X is (B, n_in), W is (n_out, n_in), b is (n_out); Z is (B, n_out).
 * Z = X W^T + b                                        (GEMM NT)
 * and A = f(Z) when act is not NULL (act->A is (B, n_out), act->ld n_out). */
void bpi_dense_forward(const bpi_gemm_env *gemm, const float *X, const float *W,
                       const float *b, float *Z, size_t B, size_t n_in, size_t n_out,
                       const bpi_act_fused *act);
/* The same, run by a team of threads of an enclosing parallel region (every
 * member calls, see team.h; bpi_sgemm_team_fit_epi), no barrier at the
 * end. w_owned: W is updated next by the threads that own its rows (the
 * training step; gemm.h's b_owned). */
struct bpi_team;
void bpi_dense_forward_team(const bpi_gemm_env *gemm, const struct bpi_team *team,
                            const float *X, const float *W, const float *b, float *Z, size_t B,
                            size_t n_in, size_t n_out, const bpi_act_fused *act, int w_owned);

/* dZ is (B, n_out), X is (B, n_in), W is (n_out, n_in).
 * dW (n_out, n_in) = dZ^T X                            (GEMM TN)
 * db (n_out)       = sum over the batch of dZ
 * dX (B, n_in)     = dZ W, skipped when dX is NULL     (GEMM NN)
 *                    and, when below is not NULL, the activation backward of
 *                    the layer below (whose dA is dX): below->dZ (B, n_in)
 * *dW_absmax (if not NULL) is raised to max |dW| (bpi_sgemm_absmax). */
void bpi_dense_backward(const bpi_gemm_env *gemm, const float *dZ, const float *X,
                        const float *W, float *dW, float *db, float *dX, size_t B,
                        size_t n_in, size_t n_out, uint32_t *dW_absmax,
                        const bpi_act_fused *below);

/* The same two halves of the backward, run by a team of threads of an
 * enclosing parallel region (every member calls; see team.h):
 * dX (B, n_in) = dZ W (with the layer below's activation backward, as
 * above), and dW = dZ^T X with db = colsum dZ. */
void bpi_dense_input_grad_team(const bpi_gemm_env *gemm, const struct bpi_team *team,
                               const float *dZ, const float *W, float *dX, size_t B,
                               size_t n_in, size_t n_out, const bpi_act_fused *below);
void bpi_dense_weight_grad_team(const bpi_gemm_env *gemm, const struct bpi_team *team,
                                const float *dZ, const float *X, float *dW, float *db,
                                size_t B, size_t n_in, size_t n_out, uint32_t *dW_absmax);

#endif
