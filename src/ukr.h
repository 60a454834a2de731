/* GEMM micro-kernels: the one per-architecture piece of the GEMM engine.
 *
 * A micro-kernel computes one MR x NR tile of C from packed operands:
 *
 *   C (MR, NR) = alpha * A_p (MR, kc) * B_p (kc, NR) + beta * C
 *
 *   a: packed A micro-panel, column after column: a[p*MR + i] = A_p[i][p]
 *   b: packed B micro-panel, row after row:       b[p*NR + j] = B_p[p][j]
 *   c: the tile, row-major with row stride ldc:   c[i*ldc + j]
 *
 * Contract every kernel keeps (the framework in gemm.c relies on it):
 *  - Each element's sum over p is accumulated in increasing p from 0.0f,
 *    then combined with C by the same expression for every element, so a
 *    result depends only on the data, never on where the tile sits or how
 *    many threads ran (the framework computes edge tiles with the same
 *    kernel into a local tile).
 *  - beta == 0: C is overwritten and never read (NaN in C does not leak).
 *  - kc may be 0 (the sums are then 0); a and b need no alignment beyond
 *    float's, but the framework passes 64-byte aligned panels.
 *  - No allocation, no global state: kernels run concurrently on threads.
 *
 * Adding an ISA: write simd/ukr_<isa>.c (compiled with that ISA's target
 * flags, see meson.build) defining a `const bpi_ukr bpi_ukr_<isa>_<MR>x<NR>`
 * descriptor, declare it below, and add it to the dispatch table in cpu.c
 * with the CPU feature it needs. The loops and packing take MR and NR from
 * the descriptor and need no change. MR and NR must not exceed
 * BPI_UKR_MR_MAX and BPI_UKR_NR_MAX (they size the local edge tile).
 */
#ifndef BP_UKR_H
#define BP_UKR_H

#include <stddef.h>
#include <stdint.h>

#include "bp_config.h"

/* Bounds on the register block of any kernel: 16 x 48 covers AVX-512's
 * 8x48 / 14x32, AVX2's 6x16 and NEON's 8x12 with room to spare. */
#define BPI_UKR_MR_MAX 16
#define BPI_UKR_NR_MAX 48

/* C (MR, NR) = alpha a (MR, kc) b (kc, NR) + beta C; layouts above. */
typedef void (*bpi_ukr_fn)(size_t kc, const float *restrict a,
                           const float *restrict b, float *restrict c,
                           size_t ldc, float alpha, float beta);

/* fn that also raises lanes[l] (16 of them) to the largest |x| (as float
 * bits with the sign cleared, compared as unsigned) among the tile's
 * written values x in columns j with j % 16 == l: gemm.c's abs-max of C
 * without reading the tile back. */
typedef void (*bpi_ukr_absmax_fn)(size_t kc, const float *restrict a,
                                  const float *restrict b, float *restrict c, size_t ldc,
                                  float alpha, float beta, uint32_t *restrict lanes);

/* fn reading B where it lies instead of from a packed micro-panel: row p
 * of the kc x NR block is b[p*ldb .. p*ldb + NR) (op(B) = B, a full strip),
 * and lanes, when not NULL, are raised as fn_absmax raises them. pf, when
 * not NULL, is another kc x NR block of B, rows ldb apart (the next
 * strip), fetched into L2 a row per k step: B's rows are far apart, and the
 * hardware prefetchers do not follow a few lines per row. Each
 * element gets fn's FMAs in fn's order, so the bits are fn's. gemm.c uses
 * it when a strip would serve so few A micro-panels (a skinny M: the input
 * gradient at small batches) that copying it costs more than reading it
 * strided saves. */
typedef void (*bpi_ukr_direct_fn)(size_t kc, const float *restrict a,
                                  const float *restrict b, size_t ldb,
                                  float *restrict c, size_t ldc, float alpha,
                                  float beta, uint32_t *restrict lanes, const float *pf);

/* A tile of C computed transposed, for a skinny op(A) against a large
 * op(B) = B^T whose packing would cost more than the product (the forward
 * X W^T at a training batch with W streaming from memory): vectors run along
 * C's rows and B's elements are broadcast from B's own rows, so B is never
 * packed. For mv vectors of rows (1..4, mv VL rows of C) and nb columns
 * (nb <= bcast_nb[mv - 1]):
 *   a: op(A) packed (kc, mv VL): a[p mv VL + i] = op(A)(i, p)
 *   b: column j of the tile is b[j ldb + p] for p < kc (row j of the stored B)
 *   s: the tile transposed, s[j lds + i]: s = alpha a b + beta s
 * with each element's FMAs in increasing p from 0.0f and fn's write-back,
 * fma(alpha, sum, beta s) (alpha sum when beta == 0, s not read), so its
 * bits are fn's for the same K blocks. */
typedef void (*bpi_ukr_bcast_fn)(size_t kc, size_t mv, const float *restrict a,
                                 const float *restrict b, size_t ldb, size_t nb,
                                 float *restrict s, size_t lds, float alpha, float beta);

/* Packing of one full micro-panel of R = MR (A) or NR (B) lines, kc deep
 * (the layouts above): dst[p*R + r] = X(p, r) for p < kc, r < R, where
 *   "rows": X(p, r) = x[p*ld + r]   (op(A) = A^T, op(B) = B: a copy)
 *   "cols": X(p, r) = x[r*ld + p]   (op(A) = A, op(B) = B^T: a transpose)
 * A kernel file may supply its own (with its ISA's vectors); NULL means the
 * framework's portable routine. Packing only moves floats, so any routine
 * gives the same bits. Edge panels (fewer than R lines) always take the
 * portable routine. */
typedef void (*bpi_pack_fn)(const float *restrict x, size_t ld, size_t kc,
                            float *restrict dst);

/* A kernel descriptor: what the framework needs to drive a kernel. */
typedef struct bpi_ukr {
    const char *name;   /* "<isa>_<MR>x<NR>", e.g. "scalar_4x8" */
    const char *isa;    /* "scalar", "avx2", "avx512", "neon" (BP_ISA's names) */
    size_t mr, nr;      /* register block: rows and columns of the C tile */
    bpi_ukr_fn fn;
    bpi_ukr_absmax_fn fn_absmax;  /* optional (NULL: gemm.c reads the tile back) */
    bpi_ukr_direct_fn fn_direct_b; /* optional (NULL: B is always packed; AVX2's
                                      6x16 has none: on Zen 5 under BP_ISA=avx2 it
                                      lost 30 % on 24x1024x1024 NN) */
    /* Optional narrow variants, for the last strip of an N that is not a
     * multiple of NR: narrow[i] computes only columns [0, (i + 1) narrow_w)
     * of the tile, from the same packed panels (B's rows still NR wide),
     * each element exactly as fn does. NULL (and narrow_w 0): fn on a local
     * tile. */
    size_t narrow_w;
    bpi_ukr_fn narrow[3];
    bpi_pack_fn pack_a_rows, pack_a_cols;  /* R = MR; NULL: portable */
    bpi_pack_fn pack_b_rows, pack_b_cols;  /* R = NR; NULL: portable */
    bpi_ukr_bcast_fn fn_bcast_b; /* optional (NULL: B^T is always packed) */
    /* With fn_bcast_b, optional (NULL: portable loops): op(A) = A's rows
     * [0, h) packed (kc, mp), dst[p mp + i] = x[i ld + p], rows h..mp zero;
     * and the tile copied out, c[i ldc + j] = s[j lds + i] for i < h, j < w
     * (s's columns hold whole vectors: lds >= h rounded up to bcast_vl). */
    void (*bcast_pack_a)(const float *restrict x, size_t ld, size_t kc, size_t h, size_t mp,
                         float *restrict dst);
    void (*bcast_unpack_c)(const float *restrict s, size_t lds, size_t h, size_t w,
                           float *restrict c, size_t ldc);
    size_t bcast_vl;             /* floats per vector of fn_bcast_b (<= 16: gemm.c's
                                    panels of 4 vectors hold at most 64 rows) */
    size_t bcast_nb[4];          /* its widest tile for mv = 1..4 */
} bpi_ukr;

/* Portable C kernel (simd/ukr_scalar.c): always built, runs anywhere. */
extern const bpi_ukr bpi_ukr_scalar_4x8;
#if BP_HAVE_AVX2
extern const bpi_ukr bpi_ukr_avx2_6x16;     /* simd/ukr_avx2.c, AVX2 + FMA */
#endif
#if BP_HAVE_AVX512
extern const bpi_ukr bpi_ukr_avx512_8x48;   /* simd/ukr_avx512.c, AVX-512F */
#endif
#if BP_HAVE_NEON
extern const bpi_ukr bpi_ukr_neon_8x12;     /* simd/ukr_neon.c, aarch64 ASIMD */
#endif

#endif
