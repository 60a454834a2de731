/* Portable scalar micro-kernel, 4 x 8, plain C11.
 *
 * Why 4 x 8: 32 accumulators fit the 16 SSE registers of baseline x86-64 as
 * 8 vectors of 4 (gcc -O3 vectorizes the j loop) with room for the B row and
 * the broadcast of a[i], and stay in registers on aarch64 too. Measured on
 * the dev VM (Xeon, gcc 12 -O3, kc = 256, in L1): 4x8 22 GFLOPS, 2x16 22,
 * 8x4 19, 4x4 18, 6x8 5 and 8x8 7 (spills); clang 14 -O3 gives 14-24 for
 * all of them. The SIMD kernels in this directory replace it where the CPU
 * allows.
 *
 * -ffp-contract=off (project-wide) keeps a*b + c as two roundings, so the
 * result is the same with every compiler and on every architecture.
 */
#include <stddef.h>

#include "ukr.h"

#define MR 4
#define NR 8

/* C (4, 8) = alpha a (4, kc) b (kc, 8) + beta C.
 * a[p*4 + i], b[p*8 + j], c[i*ldc + j]; beta == 0 never reads C. */
static void ukr_scalar_4x8(size_t kc, const float *restrict a,
                           const float *restrict b, float *restrict c,
                           size_t ldc, float alpha, float beta)
{
    float acc[MR][NR] = {{0.0f}};

    /* acc[i][j] = sum_p a[i][p] b[p][j], p increasing: a rank-1 update per p. */
    for (size_t p = 0; p < kc; p++) {
        for (size_t i = 0; i < MR; i++) {
            float a_ip = a[p * MR + i];
            for (size_t j = 0; j < NR; j++)
                acc[i][j] += a_ip * b[p * NR + j];
        }
    }

    if (beta == 0.0f) {
        for (size_t i = 0; i < MR; i++)
            for (size_t j = 0; j < NR; j++)
                c[i * ldc + j] = alpha * acc[i][j];
    } else {
        for (size_t i = 0; i < MR; i++)
            for (size_t j = 0; j < NR; j++)
                c[i * ldc + j] = alpha * acc[i][j] + beta * c[i * ldc + j];
    }
}

const bpi_ukr bpi_ukr_scalar_4x8 = {
    .name = "scalar_4x8",
    .isa = "scalar",
    .mr = MR,
    .nr = NR,
    .fn = ukr_scalar_4x8,
};
