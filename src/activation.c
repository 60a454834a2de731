#include <math.h>

#include "activation.h"
#include "parallel.h"

/* gelu: f(z) = z/2 (1 + t), t = tanh(c (z + k z^3)), c = sqrt(2/pi), k = 0.044715
 *       f'(z) = (1 + t)/2 + z/2 (1 - t^2) c (1 + 3 k z^2) */
#define GELU_C 0.7978845608028654f
#define GELU_K 0.044715f

static inline float act_one(bp_activation act, float alpha, float z)
{
    switch (act) {
    case BP_ACT_RELU: return z > 0.0f ? z : 0.0f;
    case BP_ACT_LEAKY_RELU: return z > 0.0f ? z : alpha * z;
    case BP_ACT_SIGMOID: return bpi_sigmoidf(z);
    case BP_ACT_TANH: return tanhf(z);
    case BP_ACT_GELU: return 0.5f * z * (1.0f + tanhf(GELU_C * (z + GELU_K * z * z * z)));
    case BP_ACT_IDENTITY: break;
    }
    return z;
}

/* f'(z), given z and a = f(z). */
static inline float dact_one(bp_activation act, float alpha, float z, float a)
{
    switch (act) {
    case BP_ACT_RELU: return z > 0.0f ? 1.0f : 0.0f;
    case BP_ACT_LEAKY_RELU: return z > 0.0f ? 1.0f : alpha;
    case BP_ACT_SIGMOID: return a * (1.0f - a);
    case BP_ACT_TANH: return 1.0f - a * a;
    case BP_ACT_GELU: {
        float t = tanhf(GELU_C * (z + GELU_K * z * z * z));
        return 0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_K * z * z);
    }
    case BP_ACT_IDENTITY: break;
    }
    return 1.0f;
}

/* One loop per activation, so that each is a plain loop the compiler
 * vectorises (ReLU, leaky ReLU and identity entirely; the others around
 * their libm calls). The expressions are act_one's and dact_one's. */
#define ACT_LOOP(body)                                  \
    do {                                                \
        BPI_OMP_FOR(n_threads, n)                       \
        for (size_t i = 0; i < n; i++) {                \
            body;                                       \
        }                                               \
    } while (0)

void bpi_act_forward(bp_activation act, float alpha, const float *Z, float *A, size_t n,
                     int n_threads)
{
    switch (act) {
    case BP_ACT_IDENTITY:
        if (A != Z)
            ACT_LOOP(A[i] = Z[i]);
        return;
    case BP_ACT_RELU:
        ACT_LOOP(float z = Z[i]; A[i] = z > 0.0f ? z : 0.0f);
        return;
    case BP_ACT_LEAKY_RELU:
        ACT_LOOP(float z = Z[i]; A[i] = z > 0.0f ? z : alpha * z);
        return;
    default:
        ACT_LOOP(A[i] = act_one(act, alpha, Z[i]));
        return;
    }
}

void bpi_act_backward(bp_activation act, float alpha, const float *restrict Z,
                      const float *restrict A, const float *restrict dA, float *restrict dZ,
                      size_t n, int n_threads)
{
    switch (act) {
    case BP_ACT_IDENTITY:
        ACT_LOOP(dZ[i] = dA[i] * 1.0f);
        return;
    case BP_ACT_RELU:
        ACT_LOOP(dZ[i] = dA[i] * (Z[i] > 0.0f ? 1.0f : 0.0f));
        return;
    case BP_ACT_LEAKY_RELU:
        ACT_LOOP(dZ[i] = dA[i] * (Z[i] > 0.0f ? 1.0f : alpha));
        return;
    case BP_ACT_SIGMOID:
        ACT_LOOP(float a = A[i]; dZ[i] = dA[i] * (a * (1.0f - a)));
        return;
    case BP_ACT_TANH:
        ACT_LOOP(float a = A[i]; dZ[i] = dA[i] * (1.0f - a * a));
        return;
    default:
        ACT_LOOP(dZ[i] = dA[i] * dact_one(act, alpha, Z[i], A[i]));
        return;
    }
}
