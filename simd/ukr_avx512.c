/* AVX-512F micro-kernel, 8 x 48: C (8, 48) = alpha A (8, kc) B (kc, 48) + beta C.
 *
 * Register budget (32 zmm of 16 floats): a C tile of MR rows x NV vectors
 * needs MR NV accumulators, plus NV vectors of the B row and one broadcast
 * of a[i] (two when the compiler overlaps consecutive rows). About three
 * quarters of the file for accumulators is 24:
 *   8 x 48 (NV 3): 24 acc + 3 B + 1-2 broadcasts = 28-29 registers
 *  12 x 32 (NV 2): 24 acc + 2 B + 1-2 broadcasts = 27-28
 *  14 x 32 (NV 2): 28 acc + 2 B + 1-2 broadcasts = 31-32 (no slack)
 * Each k step issues MR NV FMAs against NV + MR loads (B vectors and
 * broadcasts): 24 / 11 for 8x48, 24 / 14 for 12x32, so 8x48 leaves the load
 * ports the most room, and two FMA ports need >= 2 x 4 (latency) = 8
 * independent accumulators, which 24 give three times over. MR = 8 divides
 * the batch sizes MLPs use (32..512), so the skinny forward product has no
 * M edge at all. Measured (1 thread, this VM, kc as the engine chooses):
 * see the table in gemm.c.
 *
 * Accumulation: acc[i][v] = fma(a[i][p], b[p][v], acc[i][v]) for p = 0, 1,
 * ... in order, one rounding per step; the write-back is
 * fma(alpha, acc, beta * c) (alpha * acc when beta == 0, C not read). */
#include <immintrin.h>
#include <stddef.h>

#include "ukr.h"

#define MR 8
#define NV 3
#define VL 16
#define NR (NV * VL)

static void ukr_avx512(size_t kc, const float *restrict a, const float *restrict b,
                       float *restrict c, size_t ldc, float alpha, float beta)
{
    __m512 acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[i][v] = _mm512_setzero_ps();

    /* One rank-1 update per p; unrolled by 4 to amortise the loop and let
     * loads of the next step issue under the FMAs of this one. */
#pragma GCC unroll 4
    for (size_t p = 0; p < kc; p++) {
        __m512 bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            bv[v] = _mm512_loadu_ps(b + v * VL);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
        a += MR;
        b += NR;
    }

    __m512 va = _mm512_set1_ps(alpha);
    if (beta == 0.0f) {
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                _mm512_storeu_ps(c + i * ldc + v * VL, _mm512_mul_ps(va, acc[i][v]));
    } else {
        __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                float *ci = c + i * ldc + v * VL;
                __m512 bc = _mm512_mul_ps(vb, _mm512_loadu_ps(ci));
                _mm512_storeu_ps(ci, _mm512_fmadd_ps(va, acc[i][v], bc));
            }
    }
}

const bpi_ukr bpi_ukr_avx512_8x48 = {
    .name = "avx512_8x48",
    .isa = "avx512",
    .mr = MR,
    .nr = NR,
    .fn = ukr_avx512,
};
