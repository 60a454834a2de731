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
#include <stdint.h>
#include <string.h>

#include "ukr.h"

#define MR 6
#define NV 2
#define VL 8
#define NR (NV * VL)

/* The first nv of the NV vectors of columns: the full tile, and the narrow
 * one for a last strip of 8 columns or fewer (see ukr_avx512.c). */
static inline __attribute__((always_inline)) void
ukr_cols(size_t kc, const float *restrict a, const float *restrict b, float *restrict c,
         size_t ldc, float alpha, float beta, const int nv, uint32_t *restrict lanes)
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
                acc[i][v] = _mm256_mul_ps(va, acc[i][v]);
    } else {
        __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                __m256 bc = _mm256_mul_ps(vb, _mm256_loadu_ps(c + i * ldc + v * VL));
                acc[i][v] = _mm256_fmadd_ps(va, acc[i][v], bc);
            }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            _mm256_storeu_ps(c + i * ldc + v * VL, acc[i][v]);
    if (lanes) { /* ukr.h's fn_absmax: vector v holds columns 8v..8v+7, lanes 8v.. */
        __m256i sign_off = _mm256_set1_epi32(0x7fffffff);
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            __m256i m = _mm256_loadu_si256((const __m256i *)(const void *)(lanes + v * VL));
#pragma GCC unroll 16
            for (int i = 0; i < MR; i++)
                m = _mm256_max_epu32(
                    m, _mm256_and_si256(_mm256_castps_si256(acc[i][v]), sign_off));
            _mm256_storeu_si256((__m256i *)(void *)(lanes + v * VL), m);
        }
    }
}

static void ukr_avx2(size_t kc, const float *restrict a, const float *restrict b,
                     float *restrict c, size_t ldc, float alpha, float beta)
{
    ukr_cols(kc, a, b, c, ldc, alpha, beta, NV, NULL);
}

static void ukr_avx2_absmax(size_t kc, const float *restrict a, const float *restrict b,
                            float *restrict c, size_t ldc, float alpha, float beta,
                            uint32_t *restrict lanes)
{
    ukr_cols(kc, a, b, c, ldc, alpha, beta, NV, lanes);
}

static void ukr_avx2_8(size_t kc, const float *restrict a, const float *restrict b,
                       float *restrict c, size_t ldc, float alpha, float beta)
{
    ukr_cols(kc, a, b, c, ldc, alpha, beta, 1, NULL);
}

/* ------------------------------------------------------------ packing */

/* Rows ahead that the copies below prefetch. The source rows of a B strip
 * are ldb apart, often a multiple of 4 KiB (a layer 1024 or 4096 wide), so
 * the hardware prefetchers, which stay within a page, leave every row a
 * miss, and such rows all fall into one 8-way L1 set: the prefetch asks
 * for L2, where a 16 KiB stride still spreads them over 4 sets. Measured
 * (64x1024x1024 and 32x4096x4096 NN, Zen 1, 1 thread): 8, 16 and 32 rows
 * ahead all gain 5-12 %; 16 is the middle. */
#define PREFETCH_ROWS 16

/* Copies (ukr.h's "rows"): dst[p*R + r] = x[p*ld + r]. */
static void pack_b_rows(const float *restrict x, size_t ld, size_t kc, float *restrict dst)
{
    for (size_t p = 0; p < kc; p++, x += ld, dst += NR) {
        if (p + PREFETCH_ROWS < kc)
            _mm_prefetch((const char *)(x + PREFETCH_ROWS * ld), _MM_HINT_T1);
        _mm256_storeu_ps(dst, _mm256_loadu_ps(x));
        _mm256_storeu_ps(dst + VL, _mm256_loadu_ps(x + VL));
    }
}

/* MR = 6 floats a row: a 4-float and a 2-float move, so nothing is read
 * or written beyond the 6. */
static void pack_a_rows(const float *restrict x, size_t ld, size_t kc, float *restrict dst)
{
    for (size_t p = 0; p < kc; p++, x += ld, dst += MR) {
        _mm_storeu_ps(dst, _mm_loadu_ps(x));
        _mm_storel_pi((__m64 *)(void *)(dst + 4), _mm_loadl_pi(_mm_setzero_ps(),
                                                              (const __m64 *)(const void *)(x + 4)));
    }
}

/* r[q] = column q of the 8 x 8 block whose row i is r[i] on entry:
 * 2 x 2 blocks (unpack), 4 x 4 (shuffle), then the 128-bit halves. */
static inline void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[c + 4] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

/* Transposes (ukr.h's "cols"): dst[p*R + r] = x[r*ld + p] for r < R, in
 * groups of 8 lines (R = 16: two; R = MR = 6: one, lines 6 and 7 zero and
 * not stored), 8 x 8 blocks read along p, one vector per line. The last
 * kc % 8 columns are copied to a zeroed block first, so nothing beyond kc
 * is read (a masked load would do, but qemu's TCG reads all its lanes). */
static inline void pack_cols(const float *restrict x, size_t ld, size_t kc,
                             float *restrict dst, int R)
{
    for (int g = 0; g < R; g += 8) {
        int lines = R - g < 8 ? R - g : 8;
        const float *xg = x + (size_t)g * ld;
        for (size_t p0 = 0; p0 < kc; p0 += 8) {
            size_t n = kc - p0 < 8 ? kc - p0 : 8;
            __m256 r[8];
            if (n == 8) {
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++)
                    r[i] = i < lines ? _mm256_loadu_ps(xg + (size_t)i * ld + p0)
                                     : _mm256_setzero_ps();
            } else {
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) {
                    float tail[8] = {0};
                    if (i < lines)
                        memcpy(tail, xg + (size_t)i * ld + p0, n * sizeof(float));
                    r[i] = _mm256_loadu_ps(tail);
                }
            }
            transpose8(r);
            float *d = dst + p0 * (size_t)R + g;
            if (lines == 8) {
                for (size_t q = 0; q < n; q++)
                    _mm256_storeu_ps(d + q * (size_t)R, r[q]);
            } else { /* 6 lines: 4 + 2 floats, nothing beyond the panel */
                for (size_t q = 0; q < n; q++) {
                    _mm_storeu_ps(d + q * (size_t)R, _mm256_castps256_ps128(r[q]));
                    _mm_storel_pi((__m64 *)(void *)(d + q * (size_t)R + 4),
                                  _mm256_extractf128_ps(r[q], 1));
                }
            }
        }
    }
}

static void pack_b_cols(const float *restrict x, size_t ld, size_t kc, float *restrict dst)
{
    pack_cols(x, ld, kc, dst, NR);
}

static void pack_a_cols(const float *restrict x, size_t ld, size_t kc, float *restrict dst)
{
    pack_cols(x, ld, kc, dst, MR);
}

const bpi_ukr bpi_ukr_avx2_6x16 = {
    .name = "avx2_6x16",
    .isa = "avx2",
    .mr = MR,
    .nr = NR,
    .fn = ukr_avx2,
    .fn_absmax = ukr_avx2_absmax,
    .narrow_w = VL,
    .narrow = {ukr_avx2_8},
    .pack_a_rows = pack_a_rows,
    .pack_a_cols = pack_a_cols,
    .pack_b_rows = pack_b_rows,
    .pack_b_cols = pack_b_cols,
};
