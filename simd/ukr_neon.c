/* aarch64 Advanced SIMD micro-kernel, 8 x 12:
 * C (8, 12) = alpha A (8, kc) B (kc, 12) + beta C.
 *
 * Register budget (32 q registers of 4 floats): MR rows x NV vectors of C
 * need MR NV accumulators; the by-element FMA (fmla v.4s, v.4s, v.s[lane])
 * takes a[i] straight from a lane, so A costs MR / 4 registers instead of
 * MR broadcasts. Three quarters of the file is 24 accumulators:
 *   8 x 12 (NV 3): 24 acc + 3 B + 2 A = 29 registers
 *  12 x 8  (NV 2): 24 acc + 2 B + 3 A = 29 (fewer B loads, more A)
 *   8 x 16 (NV 4): 32 acc, does not fit
 * 8 x 12 does 24 FMAs per 5 loads per k step; MR = 8 divides the batch
 * sizes MLPs use.
 *
 * Accumulation: acc[i][v] = fma(a[i][p], b[p][v], acc[i][v]) for p = 0, 1,
 * ... in order, one rounding per step; the write-back is
 * fma(alpha, acc, beta * c) (alpha * acc when beta == 0, C not read). */
#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>

#include "ukr.h"

#define MR 8
#define NV 3
#define VL 4
#define NR (NV * VL)

/* acc[i][0..NV) += lane l of a_q times the B row; vfmaq_laneq_f32 needs a
 * constant lane, hence a macro rather than a loop over l. */
#define ROW(i, a_q, l)                                              \
    do {                                                            \
        _Pragma("GCC unroll 4")                                     \
        for (int v = 0; v < NV; v++)                                \
            acc[i][v] = vfmaq_laneq_f32(acc[i][v], bv[v], a_q, l);  \
    } while (0)

/* The tile, and with lanes (fn_absmax of ukr.h) the abs-max of what it
 * wrote: vector v holds columns 4v..4v+3, so lanes 4v..4v+3, raised from
 * the registers instead of reading the tile back. */
static inline __attribute__((always_inline)) void
ukr_tile(size_t kc, const float *restrict a, const float *restrict b, float *restrict c,
         size_t ldc, float alpha, float beta, uint32_t *restrict lanes)
{
    float32x4_t acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[i][v] = vdupq_n_f32(0.0f);

#pragma GCC unroll 4
    for (size_t p = 0; p < kc; p++) {
        float32x4_t bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            bv[v] = vld1q_f32(b + v * VL);
        float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
        ROW(0, a0, 0);
        ROW(1, a0, 1);
        ROW(2, a0, 2);
        ROW(3, a0, 3);
        ROW(4, a1, 0);
        ROW(5, a1, 1);
        ROW(6, a1, 2);
        ROW(7, a1, 3);
        a += MR;
        b += NR;
    }

    float32x4_t va = vdupq_n_f32(alpha);
    if (beta == 0.0f) {
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[i][v] = vmulq_f32(va, acc[i][v]);
    } else {
        float32x4_t vb = vdupq_n_f32(beta);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                float32x4_t bc = vmulq_f32(vb, vld1q_f32(c + i * ldc + v * VL));
                acc[i][v] = vfmaq_f32(bc, va, acc[i][v]);
            }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            vst1q_f32(c + i * ldc + v * VL, acc[i][v]);
    if (lanes) {
        uint32x4_t sign_off = vdupq_n_u32(0x7fffffffu);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            uint32x4_t m = vld1q_u32(lanes + v * VL);
#pragma GCC unroll 16
            for (int i = 0; i < MR; i++)
                m = vmaxq_u32(m, vandq_u32(vreinterpretq_u32_f32(acc[i][v]), sign_off));
            vst1q_u32(lanes + v * VL, m);
        }
    }
}

static void ukr_neon(size_t kc, const float *restrict a, const float *restrict b,
                     float *restrict c, size_t ldc, float alpha, float beta)
{
    ukr_tile(kc, a, b, c, ldc, alpha, beta, NULL);
}

static void ukr_neon_absmax(size_t kc, const float *restrict a, const float *restrict b,
                            float *restrict c, size_t ldc, float alpha, float beta,
                            uint32_t *restrict lanes)
{
    ukr_tile(kc, a, b, c, ldc, alpha, beta, lanes);
}

const bpi_ukr bpi_ukr_neon_8x12 = {
    .name = "neon_8x12",
    .isa = "neon",
    .mr = MR,
    .nr = NR,
    .fn = ukr_neon,
    .fn_absmax = ukr_neon_absmax,
};
