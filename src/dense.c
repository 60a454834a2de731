#include <string.h>

#include "activation.h"
#include "dense.h"
#include "parallel.h"
#include "team.h"

/* The activation forward on a finished block of Z (gemm.h's post step):
 * A = f(Z) row by row while the block is in cache. */
static void act_forward_block(const void *ctx, const float *z, size_t ldz, size_t i0,
                              size_t j0, size_t h, size_t w)
{
    const bpi_act_fused *f = ctx;
    bpi_act_forward_block(f->act, f->alpha, z, ldz, f->A + i0 * f->ld + j0, f->ld, h, w);
}

void bpi_dense_forward(const bpi_gemm_env *gemm, const float *X, const float *W,
                       const float *b, float *Z, size_t B, size_t n_in, size_t n_out,
                       const bpi_act_fused *act)
{
    /* Z = b + X W^T: the bias seeds each block of Z (beta = 1 on it), and
     * A = f(Z) follows each finished block, so neither is a pass of its own. */
    bpi_gemm_epilogue epi = {b, act ? act_forward_block : NULL, act, NULL, 0};
    bpi_sgemm_epi(gemm, 0, 1, B, n_out, n_in, 1.0f, X, n_in, W, n_in, 1.0f, Z, n_out, NULL,
                  &epi);
}

void bpi_dense_forward_team(const bpi_gemm_env *gemm, const bpi_team *team, const float *X,
                            const float *W, const float *b, float *Z, size_t B, size_t n_in,
                            size_t n_out, const bpi_act_fused *act, int w_owned)
{
    bpi_gemm_epilogue epi = {b, act ? act_forward_block : NULL, act, NULL, w_owned};
    bpi_sgemm_team_fit_epi(gemm, team, 0, 1, B, n_out, n_in, 1.0f, X, n_in, W, n_in, 1.0f, Z,
                           n_out, NULL, &epi);
}

/* The activation backward of the layer below on a finished block of its
 * dA (the input gradient just computed): dZ = dA f'(Z). */
static void act_backward_block(const void *ctx, const float *da, size_t lda, size_t i0,
                               size_t j0, size_t h, size_t w)
{
    const bpi_act_fused *f = ctx;
    size_t at = i0 * f->ld + j0;
    bpi_act_backward_block(f->act, f->alpha, f->Z + at, f->A + at, f->ld, da, lda, f->dZ + at,
                           h, w);
}

void bpi_dense_backward(const bpi_gemm_env *gemm, const float *dZ, const float *X,
                        const float *W, float *dW, float *db, float *dX, size_t B,
                        size_t n_in, size_t n_out, uint32_t *dW_absmax,
                        const bpi_act_fused *below)
{
    /* db = column sums of dZ, summed from dZ^T's packed blocks by the
     * weight-gradient GEMM (its A), batch rows in order (B >= 1 and alpha
     * 1: the product runs). */
    bpi_gemm_epilogue sums = {NULL, NULL, NULL, db, 0};
    bpi_sgemm_epi(gemm, 1, 0, n_out, n_in, B, 1.0f, dZ, n_out, X, n_in, 0.0f, dW, n_in,
                  dW_absmax, &sums);
    if (dX) {
        bpi_gemm_epilogue epi = {NULL, below ? act_backward_block : NULL, below, NULL, 0};
        bpi_sgemm_epi(gemm, 0, 0, B, n_in, n_out, 1.0f, dZ, n_out, W, n_in, 0.0f, dX, n_in,
                      NULL, &epi);
    }
}

void bpi_dense_input_grad_team(const bpi_gemm_env *gemm, const bpi_team *team, const float *dZ,
                               const float *W, float *dX, size_t B, size_t n_in, size_t n_out,
                               const bpi_act_fused *below)
{
    bpi_gemm_epilogue epi = {NULL, below ? act_backward_block : NULL, below, NULL, 0};
    bpi_sgemm_team_epi(gemm, team, 0, 0, B, n_in, n_out, 1.0f, dZ, n_out, W, n_in, 0.0f, dX,
                       n_in, NULL, &epi);
}

void bpi_dense_weight_grad_team(const bpi_gemm_env *gemm, const bpi_team *team,
                                const float *dZ, const float *X, float *dW, float *db,
                                size_t B, size_t n_in, size_t n_out, uint32_t *dW_absmax)
{
    bpi_gemm_epilogue sums = {NULL, NULL, NULL, db, 0};
    bpi_sgemm_team_epi(gemm, team, 1, 0, n_out, n_in, B, 1.0f, dZ, n_out, X, n_in, 0.0f, dW,
                       n_in, dW_absmax, &sums);
}
