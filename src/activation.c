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

/* One loop nest per activation, so that each inner loop is a plain loop
 * the compiler vectorises (ReLU, leaky ReLU and identity entirely; the
 * others around their libm calls), for AVX-512 and AVX2 too where gcc
 * clones them (parallel.h: same bits), with the choice of activation made
 * once per block rather than per row. The expressions are act_one's and
 * dact_one's, element by element: a result does not depend on how the
 * elements are cut into blocks, so the GEMM write-back (gemm.h's epilogue)
 * may run them block by block and give the bits of one pass over all. */
#define ACT_LOOP(body)                                  \
    do {                                                \
        for (size_t r = 0; r < h; r++) {                \
            const float *Zr = Z + r * ldz;              \
            float *Ar = A + r * lda;                    \
            (void)Zr, (void)Ar;                         \
            for (size_t i = 0; i < w; i++) {            \
                body;                                   \
            }                                           \
        }                                               \
    } while (0)

/* Static, as every clone set must be: gcc's dispatcher of an external
 * function would be exported from the shared library. */
BPI_VECTOR_CLONES
static void act_forward_block(bp_activation act, float alpha, const float *Z, size_t ldz,
                              float *A, size_t lda, size_t h, size_t w)
{
    switch (act) {
    case BP_ACT_IDENTITY:
        if (A != Z)
            ACT_LOOP(Ar[i] = Zr[i]);
        return;
    case BP_ACT_RELU:
        ACT_LOOP(float z = Zr[i]; Ar[i] = z > 0.0f ? z : 0.0f);
        return;
    case BP_ACT_LEAKY_RELU:
        ACT_LOOP(float z = Zr[i]; Ar[i] = z > 0.0f ? z : alpha * z);
        return;
    default:
        ACT_LOOP(Ar[i] = act_one(act, alpha, Zr[i]));
        return;
    }
}

/* The backward's rows: Z, A and dZ share the stride ld, dA has its own. */
#define DACT_LOOP(body)                                                 \
    do {                                                                \
        for (size_t r = 0; r < h; r++) {                                \
            const float *restrict Zr = Z + r * ld, *restrict Ar = A + r * ld; \
            const float *restrict dAr = dA + r * ldda;                  \
            float *restrict dZr = dZ + r * ld;                          \
            (void)Zr, (void)Ar;                                         \
            for (size_t i = 0; i < w; i++) {                            \
                body;                                                   \
            }                                                           \
        }                                                               \
    } while (0)

BPI_VECTOR_CLONES
static void act_backward_block(bp_activation act, float alpha, const float *Z, const float *A,
                               size_t ld, const float *dA, size_t ldda, float *dZ, size_t h,
                               size_t w)
{
    switch (act) {
    case BP_ACT_IDENTITY:
        DACT_LOOP(dZr[i] = dAr[i] * 1.0f);
        return;
    case BP_ACT_RELU:
        DACT_LOOP(dZr[i] = dAr[i] * (Zr[i] > 0.0f ? 1.0f : 0.0f));
        return;
    case BP_ACT_LEAKY_RELU:
        DACT_LOOP(dZr[i] = dAr[i] * (Zr[i] > 0.0f ? 1.0f : alpha));
        return;
    case BP_ACT_SIGMOID:
        DACT_LOOP(float a = Ar[i]; dZr[i] = dAr[i] * (a * (1.0f - a)));
        return;
    case BP_ACT_TANH:
        DACT_LOOP(float a = Ar[i]; dZr[i] = dAr[i] * (1.0f - a * a));
        return;
    default:
        DACT_LOOP(dZr[i] = dAr[i] * dact_one(act, alpha, Zr[i], Ar[i]));
        return;
    }
}

void bpi_act_forward_block(bp_activation act, float alpha, const float *Z, size_t ldz,
                           float *A, size_t lda, size_t h, size_t w)
{
    act_forward_block(act, alpha, Z, ldz, A, lda, h, w);
}

void bpi_act_backward_block(bp_activation act, float alpha, const float *Z, const float *A,
                            size_t ld, const float *dA, size_t ldda, float *dZ, size_t h,
                            size_t w)
{
    act_backward_block(act, alpha, Z, A, ld, dA, ldda, dZ, h, w);
}

/* The whole arrays on n_threads threads: one block row per fixed chunk. */
#define ACT_CHUNK 4096

void bpi_act_forward(bp_activation act, float alpha, const float *Z, float *A, size_t n,
                     int n_threads)
{
    size_t chunks = (n + ACT_CHUNK - 1) / ACT_CHUNK;
    BPI_OMP_FOR(n_threads, n)
    for (size_t c = 0; c < chunks; c++) {
        size_t lo = c * ACT_CHUNK, len = n - lo < ACT_CHUNK ? n - lo : ACT_CHUNK;
        bpi_act_forward_block(act, alpha, Z + lo, len, A + lo, len, 1, len);
    }
}

void bpi_act_backward(bp_activation act, float alpha, const float *Z, const float *A,
                      const float *dA, float *dZ, size_t n, int n_threads)
{
    size_t chunks = (n + ACT_CHUNK - 1) / ACT_CHUNK;
    BPI_OMP_FOR(n_threads, n)
    for (size_t c = 0; c < chunks; c++) {
        size_t lo = c * ACT_CHUNK, len = n - lo < ACT_CHUNK ? n - lo : ACT_CHUNK;
        bpi_act_backward_block(act, alpha, Z + lo, A + lo, len, dA + lo, len, dZ + lo, 1, len);
    }
}
