/* AVX2 + FMA micro-kernel, 6 x 16: C (6, 16) = alpha A (6, kc) B (kc, 16) + beta C.
 *
 * Register budget (16 ymm of 8 floats): MR rows x NV vectors of C need
 * MR NV accumulators, plus NV vectors of the B row and one broadcast of
 * a[i]. Three quarters of the file is 12 accumulators:
 *   6 x 16 (NV 2): 12 acc + 2 B + 1 broadcast = 15 registers (the classic)
 *   4 x 24 (NV 3): 12 acc + 3 B + 1 broadcast = 16 (no room for a second
 *                  broadcast in flight)
 *   8 x 8  (NV 1):  8 acc + 1 B + 1 broadcast, too few accumulators for 2
 *                  FMA ports x 4 cycles of latency plus the loads
 * 6 x 16 does 12 FMAs per 2 + 6 = 8 loads per k step.
 *
 * Accumulation: acc[i][v] = fma(a[i][p], b[p][v], acc[i][v]) for p = 0, 1,
 * ... in order, one rounding per step; the write-back is
 * fma(alpha, acc, beta * c) (alpha * acc when beta == 0, C not read). */
#include <immintrin.h>
#include <stddef.h>

#include "ukr.h"

#define MR 6
#define NV 2
#define VL 8
#define NR (NV * VL)

/* The first nv of the NV vectors of columns: the full tile, and the narrow
 * one for a last strip of 8 columns or fewer (see ukr_avx512.c). */
static inline __attribute__((always_inline)) void
ukr_cols(size_t kc, const float *restrict a, const float *restrict b, float *restrict c,
         size_t ldc, float alpha, float beta, const int nv)
{
    __m256 acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            acc[i][v] = _mm256_setzero_ps();

    /* One rank-1 update per p, unrolled by 4 (see ukr_avx512.c). */
#pragma GCC unroll 4
    for (size_t p = 0; p < kc; p++) {
        __m256 bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            bv[v] = _mm256_loadu_ps(b + v * VL);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
        }
        a += MR;
        b += NR;
    }

    __m256 va = _mm256_set1_ps(alpha);
    if (beta == 0.0f) {
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                _mm256_storeu_ps(c + i * ldc + v * VL, _mm256_mul_ps(va, acc[i][v]));
    } else {
        __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                float *ci = c + i * ldc + v * VL;
                __m256 bc = _mm256_mul_ps(vb, _mm256_loadu_ps(ci));
                _mm256_storeu_ps(ci, _mm256_fmadd_ps(va, acc[i][v], bc));
            }
    }
}

static void ukr_avx2(size_t kc, const float *restrict a, const float *restrict b,
                     float *restrict c, size_t ldc, float alpha, float beta)
{
    ukr_cols(kc, a, b, c, ldc, alpha, beta, NV);
}

static void ukr_avx2_8(size_t kc, const float *restrict a, const float *restrict b,
                       float *restrict c, size_t ldc, float alpha, float beta)
{
    ukr_cols(kc, a, b, c, ldc, alpha, beta, 1);
}

const bpi_ukr bpi_ukr_avx2_6x16 = {
    .name = "avx2_6x16",
    .isa = "avx2",
    .mr = MR,
    .nr = NR,
    .fn = ukr_avx2,
    .narrow_w = VL,
    .narrow = {ukr_avx2_8},
};
