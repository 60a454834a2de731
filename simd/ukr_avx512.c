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
#include <stdint.h>

#include "ukr.h"

#define MR 8
#define NV 3
#define VL 16
#define NR (NV * VL)

/* Fetch the C tile (rows of nv vectors) into L1 before the k loop: its
 * lines come from L2 or beyond (C is read and written once per K block),
 * and the write-back's loads (beta != 0) or stores' ownership requests
 * (beta == 0) would otherwise each wait for a miss after the last FMA.
 * The loop's thousands of cycles hide the fetches. Measured (medians of 3
 * alternating runs, 1 thread): 2048^3 NN +4 %, 512x4096x4096 NN +4 %,
 * 4096x4096x512 TN +5 %, 256x784x256 TN +5 %, 512x256x784 NT +0 %; on 2
 * threads 2048^3 NN +5 %, 4096x4096x512 TN +4 %. (The AVX2 kernel's tiles,
 * 6 lines each, gained nothing from the same.) */
static inline __attribute__((always_inline)) void prefetch_tile(const float *c, size_t ldc,
                                                               const int nv)
{
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            _mm_prefetch((const char *)(c + i * ldc + v * VL), _MM_HINT_T0);
        /* the row's last line when the tile does not start on one */
        _mm_prefetch((const char *)(c + i * ldc + nv * VL - 1), _MM_HINT_T0);
    }
}

/* The first nv of the NV vectors of columns (nv a constant after inlining):
 * the full tile (nv = NV) and the narrow ones for the last strip of an N
 * that is not a multiple of 48, which would otherwise compute 48 columns to
 * keep 16 or 32. B's packed rows stay NR wide; each kept element gets the
 * same FMAs in the same order as in the full tile. Row p of B is at
 * b + p ldb: ldb = NR for a packed micro-panel, B's own leading dimension
 * for fn_direct_b (the same arithmetic on the same values, so the same
 * bits). */
static inline __attribute__((always_inline)) void
ukr_cols(size_t kc, const float *restrict a, const float *restrict b, size_t ldb,
         float *restrict c, size_t ldc, float alpha, float beta, const int nv,
         uint32_t *restrict lanes, const float *pf)
{
    __m512 acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            acc[i][v] = _mm512_setzero_ps();
    prefetch_tile(c, ldc, nv);

    /* One rank-1 update per p; unrolled by 4 to amortise the loop and let
     * loads of the next step issue under the FMAs of this one. */
#pragma GCC unroll 4
    for (size_t p = 0; p < kc; p++) {
        __m512 bv[NV];
        if (pf) {
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                _mm_prefetch((const char *)(pf + v * VL), _MM_HINT_T1);
            pf += ldb;
        }
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            bv[v] = _mm512_loadu_ps(b + v * VL);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
        a += MR;
        b += ldb;
    }

    __m512 va = _mm512_set1_ps(alpha);
    if (beta == 0.0f) {
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                acc[i][v] = _mm512_mul_ps(va, acc[i][v]);
    } else {
        __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                __m512 bc = _mm512_mul_ps(vb, _mm512_loadu_ps(c + i * ldc + v * VL));
                acc[i][v] = _mm512_fmadd_ps(va, acc[i][v], bc);
            }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            _mm512_storeu_ps(c + i * ldc + v * VL, acc[i][v]);
    if (lanes) { /* ukr.h's fn_absmax: the written values' magnitudes, lane by lane */
        __m512i sign_off = _mm512_set1_epi32(0x7fffffff);
        __m512i m = _mm512_loadu_si512(lanes);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                m = _mm512_max_epu32(
                    m, _mm512_and_si512(_mm512_castps_si512(acc[i][v]), sign_off));
        _mm512_storeu_si512(lanes, m);
    }
}

static void ukr_avx512(size_t kc, const float *restrict a, const float *restrict b,
                       float *restrict c, size_t ldc, float alpha, float beta)
{
    ukr_cols(kc, a, b, NR, c, ldc, alpha, beta, NV, NULL, NULL);
}

static void ukr_avx512_absmax(size_t kc, const float *restrict a, const float *restrict b,
                              float *restrict c, size_t ldc, float alpha, float beta,
                              uint32_t *restrict lanes)
{
    ukr_cols(kc, a, b, NR, c, ldc, alpha, beta, NV, lanes, NULL);
}

/* ukr.h's fn_direct_b: B's rows read in place, ldb apart. */
static void ukr_avx512_direct(size_t kc, const float *restrict a, const float *restrict b,
                              size_t ldb, float *restrict c, size_t ldc, float alpha, float beta,
                              uint32_t *restrict lanes, const float *pf)
{
    ukr_cols(kc, a, b, ldb, c, ldc, alpha, beta, NV, lanes, pf);
}

static void ukr_avx512_16(size_t kc, const float *restrict a, const float *restrict b,
                          float *restrict c, size_t ldc, float alpha, float beta)
{
    ukr_cols(kc, a, b, NR, c, ldc, alpha, beta, 1, NULL, NULL);
}

static void ukr_avx512_32(size_t kc, const float *restrict a, const float *restrict b,
                          float *restrict c, size_t ldc, float alpha, float beta)
{
    ukr_cols(kc, a, b, NR, c, ldc, alpha, beta, 2, NULL, NULL);
}

/* ---------------------------------------------- broadcast B (ukr.h's fn_bcast_b) */

/* Columns of a broadcast tile for mv vectors of rows: mv nb accumulators,
 * about three quarters of the file (24), plus mv vectors of A and one
 * broadcast: 4 x 6 (29 registers), 3 x 8 (28), 2 x 12 (27), 1 x 16 (18:
 * more columns would need more row pointers than there are general
 * registers). Per k step mv vector loads and NB broadcasts feed mv NB FMAs:
 * 10 loads per 24 FMAs at 4 x 6, near the 8 x 48 kernel's 11. */
#define BCAST_NB(mv) ((mv) == 4 ? 6 : (mv) == 3 ? 8 : (mv) == 2 ? 12 : 16)

static inline __attribute__((always_inline)) void
bcast_tile(size_t kc, const float *restrict a, const float *restrict b, size_t ldb, size_t nb,
           float *restrict s, size_t lds, float alpha, float beta, const int mv, const int NB)
{
    const float *row[16];
#pragma GCC unroll 16
    for (int j = 0; j < NB; j++) /* columns beyond nb repeat the last: computed, not kept */
        row[j] = b + ((size_t)j < nb ? (size_t)j : nb - 1) * ldb;
    __m512 acc[16][4];
#pragma GCC unroll 16
    for (int j = 0; j < NB; j++)
#pragma GCC unroll 4
        for (int v = 0; v < mv; v++)
            acc[j][v] = _mm512_setzero_ps();
    for (size_t p = 0; p < kc; p++) {
        /* The next tile's columns, one line of each row per 16 k steps,
         * into L2: each of B's rows is read a KC-long piece at a time, too
         * short for the hardware prefetchers. 64x4096x4096 NT, 1 thread,
         * medians of 5 alternating runs: 157 GFLOP/s without, 168 with
         * this tile's rows 128 floats ahead, 192 with the next tile's
         * into L1, 199 into L2. */
        if (p % 16 == 0)
#pragma GCC unroll 16
            for (int j = 0; j < NB; j++) /* past B's last row on the last tile: an
                                            address only (a prefetch never faults) */
                _mm_prefetch((const char *)((uintptr_t)(row[j] + p) +
                                            (uintptr_t)NB * ldb * sizeof(float)),
                             _MM_HINT_T1);
        __m512 av[4];
#pragma GCC unroll 4
        for (int v = 0; v < mv; v++)
            av[v] = _mm512_loadu_ps(a + v * VL);
#pragma GCC unroll 16
        for (int j = 0; j < NB; j++) {
            __m512 bj = _mm512_set1_ps(row[j][p]);
#pragma GCC unroll 4
            for (int v = 0; v < mv; v++)
                acc[j][v] = _mm512_fmadd_ps(av[v], bj, acc[j][v]);
        }
        a += mv * VL;
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
    for (int j = 0; j < NB; j++) {
        if ((size_t)j >= nb)
            break;
#pragma GCC unroll 4
        for (int v = 0; v < mv; v++) {
            float *t = s + (size_t)j * lds + v * VL;
            __m512 r = beta == 0.0f ? _mm512_mul_ps(va, acc[j][v])
                                    : _mm512_fmadd_ps(va, acc[j][v],
                                                      _mm512_mul_ps(vb, _mm512_loadu_ps(t)));
            _mm512_storeu_ps(t, r);
        }
    }
}

static void bcast_avx512(size_t kc, size_t mv, const float *restrict a, const float *restrict b,
                         size_t ldb, size_t nb, float *restrict s, size_t lds, float alpha,
                         float beta)
{
    switch (mv) {
    case 4: bcast_tile(kc, a, b, ldb, nb, s, lds, alpha, beta, 4, BCAST_NB(4)); break;
    case 3: bcast_tile(kc, a, b, ldb, nb, s, lds, alpha, beta, 3, BCAST_NB(3)); break;
    case 2: bcast_tile(kc, a, b, ldb, nb, s, lds, alpha, beta, 2, BCAST_NB(2)); break;
    default: bcast_tile(kc, a, b, ldb, nb, s, lds, alpha, beta, 1, BCAST_NB(1)); break;
    }
}

/* ------------------------------------------------------------ packing */

/* Copies (ukr.h's "rows"): dst[p*R + r] = x[p*ld + r], R = 8 or 48, one
 * vector load and store per 8 or 16 floats. */
static void pack_b_rows(const float *restrict x, size_t ld, size_t kc, float *restrict dst)
{
    for (size_t p = 0; p < kc; p++, x += ld, dst += NR)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            _mm512_storeu_ps(dst + v * VL, _mm512_loadu_ps(x + v * VL));
}

static void pack_a_rows(const float *restrict x, size_t ld, size_t kc, float *restrict dst)
{
    for (size_t p = 0; p < kc; p++, x += ld, dst += MR)
        _mm256_storeu_ps(dst, _mm256_loadu_ps(x));
}

/* r[q] = column q of the 16 x 16 block whose row i is r[i] on entry. Four
 * rounds, each halving the distance between the elements a vector holds:
 * 2 x 2 blocks within 128-bit lanes (unpack), 4 x 4 (shuffle_ps), then
 * lanes across the 4-row groups and the 8-row halves (shuffle_f32x4). */
static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4i + c], lane L: rows 4i..4i+3 of column 4L + c */
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    /* t[c]:   rows 0-3 col c, 0-3 col 8+c, 4-7 col c, 4-7 col 8+c; t[4+c] the
     * same for columns 4+c, 12+c; t[8+c], t[12+c] for rows 8-15 */
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
        t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
    }
#pragma GCC unroll 8
    for (int c = 0; c < 8; c++) { /* t[c] holds columns c and 8 + c */
        r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
        r[c + 8] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
    }
}

/* out[q] = column q of the 16 x 16 block s[i*ld + q], with half the
 * shuffles of transpose16() (the packing of W^T is shuffle-bound, and
 * 512-bit shuffles have one port): 128-bit broadcast loads merged under
 * masks (load ports, and either vector port for the merge) gather, in lane
 * k of v[4m + c], row 4k + c's columns 4m..4m+3; one in-lane 4 x 4
 * transpose per column chunk m then leaves rows 4k..4k+3 of column 4m + c
 * in lane k. Measured, 48 x 208 strips, ld 1040: 0.30 -> 0.24 cycles per
 * float (at ld 1024 both ~0.29: the 16 rows then share one L1 set). */
static inline void load_transposed16(const float *s, size_t ld, __m512 out[16])
{
#pragma GCC unroll 4
    for (int m = 0; m < 4; m++) {
        __m512 v[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const float *p = s + (size_t)c * ld + 4 * m;
            __m512 x = _mm512_broadcast_f32x4(_mm_loadu_ps(p));
            x = _mm512_mask_broadcast_f32x4(x, 0x00F0, _mm_loadu_ps(p + 4 * ld));
            x = _mm512_mask_broadcast_f32x4(x, 0x0F00, _mm_loadu_ps(p + 8 * ld));
            v[c] = _mm512_mask_broadcast_f32x4(x, (__mmask16)0xF000, _mm_loadu_ps(p + 12 * ld));
        }
        __m512 t0 = _mm512_unpacklo_ps(v[0], v[1]), t1 = _mm512_unpackhi_ps(v[0], v[1]);
        __m512 t2 = _mm512_unpacklo_ps(v[2], v[3]), t3 = _mm512_unpackhi_ps(v[2], v[3]);
        out[4 * m] = _mm512_shuffle_ps(t0, t2, 0x44);
        out[4 * m + 1] = _mm512_shuffle_ps(t0, t2, 0xEE);
        out[4 * m + 2] = _mm512_shuffle_ps(t1, t3, 0x44);
        out[4 * m + 3] = _mm512_shuffle_ps(t1, t3, 0xEE);
    }
}

/* The first n lanes of a vector (n <= 16): masked loads and stores of a
 * last, partial block of 16. */
static inline __mmask16 first_lanes(size_t n)
{
    return n >= VL ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

/* Transposes (ukr.h's "cols"): dst[p*R + r] = x[r*ld + p] for p < kc and r
 * < h, zero for h <= r < R (R a multiple of 16): 16 x 16 blocks read along p
 * (16 cache lines, one vector each) and written as 16 vectors, in place of
 * R scattered scalar stores per p. The last kc % 16 columns go through
 * masked loads that read nothing beyond kc. */
static inline __attribute__((always_inline)) void
pack_transposed(const float *restrict x, size_t ld, size_t kc, size_t h, size_t R,
                float *restrict dst)
{
    for (size_t i0 = 0; i0 < R; i0 += VL) {
        size_t rows = h > i0 ? (h - i0 < VL ? h - i0 : VL) : 0;
        const float *xi = x + i0 * ld;
        for (size_t p0 = 0; p0 < kc; p0 += VL) {
            size_t left = kc - p0;
            __m512 r[VL];
            if (left >= VL && rows == VL) {
                load_transposed16(xi + p0, ld, r);
            } else {
                __mmask16 m = first_lanes(left);
#pragma GCC unroll 16
                for (size_t q = 0; q < VL; q++)
                    r[q] = q < rows ? _mm512_maskz_loadu_ps(m, xi + q * ld + p0)
                                    : _mm512_setzero_ps();
                transpose16(r);
            }
            float *d = dst + p0 * R + i0;
            if (left >= VL) { /* the common case, unrolled */
#pragma GCC unroll 16
                for (size_t q = 0; q < VL; q++)
                    _mm512_storeu_ps(d + q * R, r[q]);
            } else {
                for (size_t q = 0; q < left; q++)
                    _mm512_storeu_ps(d + q * R, r[q]);
            }
        }
    }
}

/* B's transposed micro-panel: NR rows, three 16-row groups. */
static void pack_b_cols(const float *restrict x, size_t ld, size_t kc, float *restrict dst)
{
    pack_transposed(x, ld, kc, NR, NR, dst);
}

/* The same for A (R = MR = 8) without pack_b_cols' 16-row transpose, half of
 * whose rows would be zeros: each 128-bit lane of v[r] holds four columns
 * of row r, and two rounds within lanes (unpack, shuffle_ps) leave in lane
 * k of s[c] rows 0-3 and of s[4 + c] rows 4-7 of column 4k + c; one
 * two-source permute per pair of lanes then puts a column's 8 rows in each
 * 256-bit half. 32 shuffles per 16 columns (with the extracts of the high
 * halves) and 8 loads, against 64 and 16. Measured alone (this Zen 5 VM,
 * a 128 x 784 X in K blocks of 432): 11.3 -> 8.2 us. */
static void pack_a_cols(const float *restrict x, size_t ld, size_t kc, float *restrict dst)
{
    /* [a lane L, b lane L, a lane L + 1, b lane L + 1] for L = 0, 2 */
    const __m512i lanes01 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21,
                                              22, 23);
    const __m512i lanes23 = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28,
                                              29, 30, 31);
    for (size_t p0 = 0; p0 < kc; p0 += 16, dst += 16 * MR) {
        size_t left = kc - p0, n = left < 16 ? left : 16;
        __mmask16 m = first_lanes(left);
        __m512 v[MR], t[MR], s[MR];
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++)
            v[r] = _mm512_maskz_loadu_ps(m, x + (size_t)r * ld + p0);
#pragma GCC unroll 4
        for (int i = 0; i < MR / 2; i++) {
            t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) { /* rows 0-3, rows 4-7 */
            s[4 * h] = _mm512_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
            s[4 * h + 1] = _mm512_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
            s[4 * h + 2] = _mm512_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
            s[4 * h + 3] = _mm512_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
        }
        __m256 col[16];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512 lo = _mm512_permutex2var_ps(s[c], lanes01, s[4 + c]); /* columns c, 4 + c */
            __m512 hi = _mm512_permutex2var_ps(s[c], lanes23, s[4 + c]); /* 8 + c, 12 + c */
            col[c] = _mm512_castps512_ps256(lo);
            col[4 + c] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(lo), 1));
            col[8 + c] = _mm512_castps512_ps256(hi);
            col[12 + c] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(hi), 1));
        }
        if (n == 16) {
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++)
                _mm256_storeu_ps(dst + q * MR, col[q]);
        } else {
            for (size_t q = 0; q < n; q++)
                _mm256_storeu_ps(dst + q * MR, col[q]);
        }
    }
}

/* ukr.h's bcast_pack_a: op(A) = A's rows [0, h) packed (kc, mp) for
 * fn_bcast_b, rows h..mp zero. */
static void bcast_pack_a(const float *restrict x, size_t ld, size_t kc, size_t h, size_t mp,
                         float *restrict dst)
{
    pack_transposed(x, ld, kc, h, mp, dst);
}

/* ukr.h's bcast_unpack_c: c[i ldc + j] = s[j lds + i] for i < h, j < w,
 * 16 x 16 blocks transposed in registers. */
static void bcast_unpack_c(const float *restrict s, size_t lds, size_t h, size_t w,
                           float *restrict c, size_t ldc)
{
    for (size_t j0 = 0; j0 < w; j0 += VL) {
        size_t cols = w - j0 < VL ? w - j0 : VL;
        __mmask16 cm = first_lanes(cols);
        for (size_t i0 = 0; i0 < h; i0 += VL) {
            size_t rows = h - i0 < VL ? h - i0 : VL;
            __m512 r[VL];
            for (size_t q = 0; q < VL; q++) /* lds >= the padded rows: a full vector */
                r[q] = q < cols ? _mm512_loadu_ps(s + (j0 + q) * lds + i0) : _mm512_setzero_ps();
            transpose16(r);
            for (size_t q = 0; q < rows; q++)
                _mm512_mask_storeu_ps(c + (i0 + q) * ldc + j0, cm, r[q]);
        }
    }
}

const bpi_ukr bpi_ukr_avx512_8x48 = {
    .name = "avx512_8x48",
    .isa = "avx512",
    .mr = MR,
    .nr = NR,
    .fn = ukr_avx512,
    .fn_absmax = ukr_avx512_absmax,
    .fn_direct_b = ukr_avx512_direct,
    .narrow_w = VL,
    .narrow = {ukr_avx512_16, ukr_avx512_32},
    .pack_a_rows = pack_a_rows,
    .pack_a_cols = pack_a_cols,
    .pack_b_rows = pack_b_rows,
    .pack_b_cols = pack_b_cols,
    .fn_bcast_b = bcast_avx512,
    .bcast_pack_a = bcast_pack_a,
    .bcast_unpack_c = bcast_unpack_c,
    .bcast_vl = VL,
    .bcast_nb = {BCAST_NB(1), BCAST_NB(2), BCAST_NB(3), BCAST_NB(4)},
};
