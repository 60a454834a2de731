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

void bpi_act_forward(bp_activation act, float alpha, const float *Z, float *A, size_t n,
                     int n_threads)
{
    if (act == BP_ACT_IDENTITY && A == Z)
        return;
    BPI_OMP_FOR(n_threads, n)
    for (size_t i = 0; i < n; i++)
        A[i] = act_one(act, alpha, Z[i]);
}

void bpi_act_backward(bp_activation act, float alpha, const float *Z, const float *A,
                      const float *dA, float *dZ, size_t n, int n_threads)
{
    BPI_OMP_FOR(n_threads, n)
    for (size_t i = 0; i < n; i++)
        dZ[i] = dA[i] * dact_one(act, alpha, Z[i], A[i]);
}
