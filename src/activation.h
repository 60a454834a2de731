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

#endif
