/* The internal GEMM interface: everything above it (layers, the public
 * bp_sgemm) calls only this, so the engine behind it can change.
 *
 * Row-major only (the public wrapper maps column-major onto it by computing
 * C^T = op(B)^T op(A)^T):
 *   C (M, N) = alpha op(A) op(B) + beta C
 *   op(A) is (M, K): A is (M, K) with lda >= K if !transA, (K, M) with lda >= M if transA
 *   op(B) is (K, N): B is (K, N) with ldb >= N if !transB, (N, K) with ldb >= K if transB
 * BLAS semantics: beta == 0 overwrites C (NaN in C is not propagated);
 * alpha == 0 or K == 0 reads neither A nor B (C = beta C). M or N == 0: no-op.
 *
 * Threading: runs on env->n_threads threads (its own OpenMP parallel region
 * when called outside one). The result is bitwise identical for any thread
 * count: work is split over M and N in whole register blocks only, and each
 * element of C is always accumulated over K in the same order.
 *
 * Memory: never allocates; packing buffers come from env->workspace, sized
 * by bpi_gemm_workspace_floats() when the context was set up.
 */
#ifndef BP_GEMM_H
#define BP_GEMM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "backprop.h"
#include "ukr.h"

/* Cache blocking (in elements): KC rows of a packed B panel and columns of
 * a packed A block, MC rows of an A block, NC columns of a B panel. */
typedef struct bpi_gemm_blocking {
    size_t mc, kc, nc;
} bpi_gemm_blocking;

typedef struct bpi_gemm_env {
    const bpi_ukr *ukr;     /* the micro-kernel; blk and workspace derive from it */
    bpi_gemm_blocking blk;
    int n_threads;
    float *workspace;       /* bpi_gemm_workspace_floats(ukr, &blk, n_threads) floats,
                               64-byte aligned */
} bpi_gemm_env;

/* Derive blocking for kernel ukr from the (already clamped) cache sizes of
 * `topo`. */
void bpi_gemm_blocking_init(bpi_gemm_blocking *blk, const bpi_ukr *ukr,
                            const bp_topology_info *topo);

/* Floats of packing workspace the engine needs for n_threads threads. */
size_t bpi_gemm_workspace_floats(const bpi_ukr *ukr, const bpi_gemm_blocking *blk,
                                 int n_threads);

/* B is read in place instead of packed when a strip of it would serve at
 * most this many A micro-panels (gemm.c: use_direct_b). The bits of C do
 * not depend on it. */
#define BPI_GEMM_DIRECT_B_MAX_PANELS 8

void bpi_sgemm(const bpi_gemm_env *env, int transA, int transB,
               size_t M, size_t N, size_t K, float alpha,
               const float *A, size_t lda, const float *B, size_t ldb,
               float beta, float *C, size_t ldc);

/* bpi_sgemm that also raises *absmax to the largest |C| it writes, as the
 * bits of a float's magnitude (x's bits with the sign cleared: compared as
 * unsigned integers they order like |x|, and NaN and infinity sit at or
 * above 0x7f800000). Read in cache, tile by tile, just after each tile's
 * last K block, it costs a few vector operations per tile instead of a
 * pass over C: the optimizer proves its steps finite from it (optim.c).
 * Same bits of C as bpi_sgemm. */
void bpi_sgemm_absmax(const bpi_gemm_env *env, int transA, int transB, size_t M, size_t N,
                      size_t K, float alpha, const float *A, size_t lda, const float *B,
                      size_t ldb, float beta, float *C, size_t ldc, uint32_t *absmax);

/* The bits of |x| as above; NaN and infinity from BPI_ABS_BITS_INF up. */
#define BPI_ABS_BITS_INF 0x7f800000u
static inline uint32_t bpi_abs_bits(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b & 0x7fffffffu;
}

/* Work fused into the product, done by the thread that computes a block of
 * C while the block (or the packed A block) is in its cache, in place of
 * passes over whole arrays before or after the product (the dense layer's
 * bias, activations and bias gradient, dense.c):
 *   seed  NULL, or (N): before the first K block, each row of the block is
 *         set to seed[j0 .. j0 + w); C's old contents and beta are then not
 *         used: C = seed + alpha op(A) op(B), the bits of copying seed into
 *         every row of C and calling with beta = 1.
 *   post  NULL, or called once for each block of C when it is final: rows
 *         [i0, i0 + h) and columns [j0, j0 + w), c pointing at C[i0][j0].
 *         Blocks do not overlap and cover C; which thread runs a block and
 *         how C is cut into blocks depend on the blocking and the thread
 *         count, so post must give the same bits for any cut (element by
 *         element work does). It may not write C.
 *   a_sums NULL, or (M): a_sums[i] = the sum over p of op(A)(i, p), added
 *         in order p = 0, 1, ... from 0.0f (the bits of that loop), read
 *         from the packed A block. Only when the product runs (alpha != 0
 *         and K > 0); otherwise the caller sums.
 * And a hint for the thread grid, which never changes a bit:
 *   b_owned  op(B)'s columns are rewritten between products by the threads
 *         that compute the same columns of C (a layer's weights, which the
 *         one-region training step updates row share by row share, after
 *         the forward X W^T): split the columns when that reads B in place
 *         (gemm.c's thread_grid). */
typedef struct bpi_gemm_epilogue {
    const float *seed;
    void (*post)(const void *ctx, const float *c, size_t ldc, size_t i0, size_t j0, size_t h,
                 size_t w);
    const void *ctx;
    float *a_sums;
    int b_owned;
} bpi_gemm_epilogue;

/* bpi_sgemm_absmax (absmax may be NULL) with an epilogue (epi may be NULL). */
void bpi_sgemm_epi(const bpi_gemm_env *env, int transA, int transB, size_t M, size_t N,
                   size_t K, float alpha, const float *A, size_t lda, const float *B,
                   size_t ldb, float beta, float *C, size_t ldc, uint32_t *absmax,
                   const bpi_gemm_epilogue *epi);

/* The same product computed by every member of a team of threads of an
 * enclosing parallel region (team.h), with the team's own barriers: all
 * team->size members call it with the same arguments. env's workspace must
 * be sized for team->size threads; env->n_threads is not used. Same bits as
 * bpi_sgemm for any team size. */
struct bpi_team;
void bpi_sgemm_team(const bpi_gemm_env *env, const struct bpi_team *team, int transA,
                    int transB, size_t M, size_t N, size_t K, float alpha, const float *A,
                    size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);
/* ... and raising *absmax as bpi_sgemm_absmax does (atomically: members
 * share it). */
void bpi_sgemm_team_absmax(const bpi_gemm_env *env, const struct bpi_team *team, int transA,
                           int transB, size_t M, size_t N, size_t K, float alpha,
                           const float *A, size_t lda, const float *B, size_t ldb, float beta,
                           float *C, size_t ldc, uint32_t *absmax);
/* ... with an epilogue, as bpi_sgemm_epi. */
void bpi_sgemm_team_epi(const bpi_gemm_env *env, const struct bpi_team *team, int transA,
                        int transB, size_t M, size_t N, size_t K, float alpha, const float *A,
                        size_t lda, const float *B, size_t ldb, float beta, float *C,
                        size_t ldc, uint32_t *absmax, const bpi_gemm_epilogue *epi);
/* ... for a team whose members would otherwise wait at a barrier: unlike
 * bpi_sgemm_epi, which wakes a thread only for MIN_FLOPS_PER_THREAD of
 * work, it uses every member down to one C tile each (the rest return at
 * once). */
void bpi_sgemm_team_fit_epi(const bpi_gemm_env *env, const struct bpi_team *team, int transA,
                            int transB, size_t M, size_t N, size_t K, float alpha,
                            const float *A, size_t lda, const float *B, size_t ldb, float beta,
                            float *C, size_t ldc, uint32_t *absmax,
                            const bpi_gemm_epilogue *epi);

#endif
