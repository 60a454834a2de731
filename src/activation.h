/* Activation functions, forward and backward, on n contiguous elements. */
#ifndef BP_ACTIVATION_H
#define BP_ACTIVATION_H

#include <math.h>
#include <stddef.h>

#include "backprop.h"

/* sigmoid: s(z) = 1 / (1 + e^-z), computed without overflow for either sign. */
static inline float bpi_sigmoidf(float z)
{
    if (z >= 0.0f)
        return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}

/* A = f(Z); Z and A are (n). In place (A == Z) is allowed. */
void bpi_act_forward(bp_activation act, float alpha, const float *Z, float *A, size_t n,
                     int n_threads);
/* dZ = dA * f'(Z), using A = f(Z) where cheaper; all (n). */
void bpi_act_backward(bp_activation act, float alpha, const float *Z, const float *A,
                      const float *dA, float *dZ, size_t n, int n_threads);

/* The same on the calling thread alone (no parallel region), on an h x w
 * block of rows with their own strides: the GEMM write-back runs these on
 * each block of C it finishes. Same bits as the functions above for any
 * cut of the elements into blocks. Backward: Z, A and dZ rows are ld
 * apart, dA rows ldda. */
void bpi_act_forward_block(bp_activation act, float alpha, const float *Z, size_t ldz,
                           float *A, size_t lda, size_t h, size_t w);
void bpi_act_backward_block(bp_activation act, float alpha, const float *Z, const float *A,
                            size_t ld, const float *dA, size_t ldda, float *dZ, size_t h,
                            size_t w);

#endif
