/* The GEMM engine: BLIS/Goto loops around a micro-kernel (see gemm.h for the
 * contract, ukr.h for the kernels).
 *
 *   C (M, N) = alpha op(A) (M, K) op(B) (K, N) + beta C      (row-major)
 *
 *   for jc in 0..N step NC:                    columns of C
 *     for ic in this thread's rows step MC:    rows of C
 *       for pc in 0..K step KC:                K block (beta on the first only)
 *         pack op(A)(ic:ic+MC, pc:pc+KC) -> packed_a, MR-tall micro-panels (L2)
 *         for jr in this thread's NR strips of jc:jc+NC:
 *           pack op(B)(pc:pc+KC, jr:jr+NR) -> strip, one micro-panel     (L1)
 *           for ir in 0..MC step MR:
 *             micro-kernel: C(ic+ir, jr) (MR, NR) = alpha a b + beta_k C
 * (When K is a single block, groups of strips are packed together and the
 * ir loop runs outside the strips of a group: see gemm_thread. When a strip
 * serves few micro-panels and op(B) = B, it is not packed at all: the
 * kernel reads B in place, see use_direct_b. When a thread's rows are one
 * row block, K spans several blocks and op(B) = B^T, all of its A is packed
 * first and the strips go outside the K blocks: see deep_rows. When op(B) =
 * B^T and a thread has 17..128 rows, or more and B exceeds the cache, no
 * strip is packed: the kernel's fn_bcast_b computes C transposed, reading
 * B's rows in place; see bcast_rows.)
 *
 * Unlike BLIS there is no B panel shared in L3: each B micro-panel is packed
 * by the thread that uses it, just before its MC / MR kernel calls, so it is
 * written into L1 and read from there, and threads never wait for each other
 * (no barriers). The price is packing B once per MC block of rows instead of
 * once: ceil(M / MC) times, against MC / MR >= 32 kernel calls per packing.
 * For the skinny products of MLP training (M = batch <= MC) B is packed
 * exactly once either way.
 *
 * Why each element's bits are independent of tiling and thread count: its
 * value is alpha * (sum over p of one K block, p increasing) combined with C
 * by the kernel, once per K block in increasing pc. KC is fixed by the env,
 * edge tiles go through the same kernel (into a local tile), and threads only
 * choose which tiles they compute, never how.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "bp_config.h"
#include "fpmode.h"
#include "gemm.h"
#include "parallel.h"
#include "team.h"
#include "ukr.h"

#if BP_HAVE_OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------ blocking */

/* Used when the topology reports 0 (unknown): a typical x86 core. */
#define FALLBACK_L1D_BYTES ((size_t)32 * 1024)
#define FALLBACK_L2_BYTES ((size_t)1024 * 1024)
#define FALLBACK_L3_BYTES ((size_t)8 * 1024 * 1024)

/* Sane ranges: below them loop overhead dominates, above them a wrong
 * cache size (VMs report 508 MB L3s) would blow up the workspace. */
#define KC_MIN 64
#define KC_MAX 1024
#define MC_MIN 32
#define MC_MAX 1024
#define NC_MIN 256
#define NC_MAX 8192
/* KC is a multiple of a 64-byte cache line of floats, so every packed
 * micro-panel (kc * MR or kc * NR floats) starts on a line when MR, NR are
 * even. */
#define KC_MULTIPLE 16

static size_t size_min(size_t a, size_t b) { return a < b ? a : b; }
static size_t size_max(size_t a, size_t b) { return a > b ? a : b; }
static size_t ceil_div(size_t a, size_t b) { return a / b + (a % b != 0); }

/* v clamped to [lo, hi], then rounded down to a multiple of m (m <= lo),
 * or up by one m if rounding fell below lo. */
static size_t clamp_multiple(size_t v, size_t lo, size_t hi, size_t m)
{
    v = size_min(size_max(v, lo), hi);
    v = v / m * m;
    return v < lo ? v + m : v;
}

static size_t cache_or(size_t bytes, size_t fallback)
{
    return bytes != 0 ? bytes : fallback;
}

void bpi_gemm_blocking_init(bpi_gemm_blocking *blk, const bpi_ukr *ukr,
                            const bp_topology_info *topo)
{
    size_t l1d = cache_or(topo ? topo->l1d_bytes : 0, FALLBACK_L1D_BYTES);
    size_t l2 = cache_or(topo ? topo->l2_bytes : 0, FALLBACK_L2_BYTES);
    size_t l3 = cache_or(topo ? topo->l3_bytes : 0, FALLBACK_L3_BYTES);
    size_t f = sizeof(float);

    /* KC: per k step the kernel reads one column of the A micro-panel
     * (MR x KC) and one row of the B micro-panel (KC x NR). Both fitting L1d,
     * (MR + NR) KC 4 <= L1d, was the classic rule, but each kernel call also
     * loads and stores its MR x NR tile of C once per K block, from L2 or L3;
     * twice as deep amortises that, and the B micro-panel then streams from
     * L2 beside the A block (224 bytes per k step per 12 cycles of FMAs for
     * 8x48, far below L2's bandwidth):
     *   (MR + NR) KC 4 <= 2 L1d.
     * 48 KiB, 8x48 (AVX-512): 98304 / 224 = 438 -> 432; 6x16: 1123 -> 1024
     * (KC_MAX); 32 KiB, 4x8: 1365 -> 1024. Measured, AVX-512, 1 thread,
     * GFLOP/s at KC 208 / 432 / 512 (MC 1024 / 600 / 512): 64x4096x4096 NT
     * 91 / 98 / 100, 256x1024x1024 NT 135 / 138 / 140, 1024x1024x512 TN
     * 122 / 125 / 131, 2048^3 NN 116 / 128 / 126, 64x1024x1024 NN 123 / 118
     * / 111 (a shared, loaded VM: +-5 %). */
    blk->kc = clamp_multiple(2 * l1d / (f * (ukr->mr + ukr->nr)), KC_MIN, KC_MAX,
                             KC_MULTIPLE);
    /* MC: the packed A block (MC x KC) is read once per B strip, and B is
     * packed once per MC rows, so a taller block packs B less often: the
     * block fills L2,  MC KC 4 <= L2. What must stay cached is the strip
     * (KC NR, reused by every A micro-panel) and the micro-panel in use; the
     * rest of A may stream from L3, MR KC floats per MR NR KC FMAs. Half of
     * L2, the classic rule, left Zen 1 (512 KiB L2, KC 736) with MC 84,
     * packing B twice for a batch of 128 and four times for 256. Measured
     * there (1 thread, medians of 7 alternating runs on a noisy VM), MC 174
     * against 84: 128x4096x4096 NN +7 %, NT +14 %, 256x1024x1024 NN and NT
     * +3 %, 2048^3 NN +4 %; a training step of 1024-1024-1024-1024-10 at
     * batch 256 +14 % (11 runs).
     *   512 KiB, KC 736: 524288 / 2944 = 178 -> 174;
     *   2 MiB, KC 432: 1213 -> 1024 (MC_MAX; not yet measured on AVX-512). */
    blk->mc = clamp_multiple(l2 / (f * blk->kc), MC_MIN, MC_MAX, ukr->mr);
    /* NC: the A block is packed once per NC columns, and the C block
     * (MC x NC) is read and written once per K block. The rule of BLIS's
     * shared B panel (KC x NC in half of L3, KC NC 4 <= L3 / 2) still bounds
     * it: 32 MiB, KC 432: 16777216 / 1728 -> 8160 (NC_MAX, a multiple of
     * NR), so the A block of an MLP layer is packed once. */
    blk->nc = clamp_multiple(l3 / 2 / (f * blk->kc), NC_MIN, NC_MAX, ukr->nr);
}

/* Largest block the engine accepts from a hand-built env, so the packing
 * sizes below cannot overflow. */
#define BLOCK_LIMIT ((size_t)1 << 16)

/* The blocking the loops really use: mc a multiple of MR, nc of NR, all
 * in [1, BLOCK_LIMIT] (a hand-built env may hold anything). */
static bpi_gemm_blocking effective_blocking(const bpi_gemm_blocking *blk,
                                            const bpi_ukr *ukr)
{
    bpi_gemm_blocking e;
    e.kc = size_min(size_max(blk->kc, 1), BLOCK_LIMIT);
    e.mc = ceil_div(size_min(size_max(blk->mc, 1), BLOCK_LIMIT), ukr->mr) * ukr->mr;
    e.nc = ceil_div(size_min(size_max(blk->nc, 1), BLOCK_LIMIT), ukr->nr) * ukr->nr;
    return e;
}

/* Workspace layout, in floats, each part starting 64-byte aligned, per
 * thread:
 *   packed_a  (MC, KC)       the thread's A block
 *   strip     (KC, NR)       the B micro-panel it is working on
 *   spare     (MC, KC)       room for a whole-K A (deep_rows)
 * The first two make the area that strip groups fill (group_floats). */
static size_t group_floats(const bpi_gemm_blocking *e, const bpi_ukr *ukr)
{
    return bpi_round_floats(e->mc * e->kc) + bpi_round_floats(e->kc * ukr->nr);
}

static size_t thread_floats(const bpi_gemm_blocking *e, const bpi_ukr *ukr)
{
    return group_floats(e, ukr) + bpi_round_floats(e->mc * e->kc);
}

size_t bpi_gemm_workspace_floats(const bpi_ukr *ukr, const bpi_gemm_blocking *blk,
                                 int n_threads)
{
    bpi_gemm_blocking e = effective_blocking(blk, ukr);
    size_t threads = n_threads > 1 ? (size_t)n_threads : 1;
    size_t total;
    if (!bpi_mul(threads, thread_floats(&e, ukr), &total))
        return SIZE_MAX; /* the caller's byte count overflows too and fails */
    return total;
}

/* ------------------------------------------------------------- packing */

/* Everything one call needs, shared read-only by its threads. */
typedef struct gemm_job {
    const bpi_ukr *ukr;
    bpi_gemm_blocking blk;      /* effective */
    int trans_a, trans_b;
    size_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    size_t lda, ldb, ldc;
    float *C;
    float *workspace;           /* n_threads areas of thread_floats() */
    size_t t_stride;
    uint32_t *absmax;           /* NULL, or raised to max |C| (bpi_sgemm_absmax) */
    const bpi_gemm_epilogue *epi; /* NULL, or the work fused into C's write-back */
} gemm_job;

/* Pack a kc x w piece of a matrix X viewed as X(p, r) (p along K, r along M
 * or N) into one micro-panel dst (kc, R): dst[p*R + r] = X(p0+p, r0+r) for
 * r < w, 0 for w <= r < R. The padding only feeds tile entries that
 * edge_tile() discards, but zeros there keep NaN, denormals and stale data
 * out of the kernel's arithmetic.
 *   r_contiguous:  X(p, r) = x[p*ld + r]    (op(B) = B, op(A) = A^T)
 *   otherwise:     X(p, r) = x[r*ld + p]    (op(B) = B^T, op(A) = A)
 * Full panels (w == R) go to the kernel's own routine when it has one
 * (ukr.h); this portable one packs everything else. */
static void pack_micro_panel(const float *x, size_t ld, int r_contiguous,
                             size_t p0, size_t kc, size_t r0, size_t w,
                             size_t R, bpi_pack_fn fast, float *restrict dst)
{
    if (w == R && fast) {
        fast(r_contiguous ? x + p0 * ld + r0 : x + r0 * ld + p0, ld, kc, dst);
        return;
    }
    if (r_contiguous) {
        for (size_t p = 0; p < kc; p++) {
            const float *src = x + (p0 + p) * ld + r0;
            for (size_t r = 0; r < w; r++)
                dst[p * R + r] = src[r];
        }
    } else {
        /* A transpose: read along p, the contiguous direction of the source,
         * 8 lines r at a time, so each p writes 8 adjacent floats (32 bytes,
         * a vector store after gcc's SLP vectorisation) instead of 8 floats
         * on 8 different cache lines. */
        size_t r8 = w / 8 * 8;
        for (size_t r = 0; r < r8; r += 8) {
            const float *s0 = x + (r0 + r) * ld + p0;
            float *d = dst + r;
            for (size_t p = 0; p < kc; p++) {
                float *dp = d + p * R;
                dp[0] = s0[p];
                dp[1] = s0[ld + p];
                dp[2] = s0[2 * ld + p];
                dp[3] = s0[3 * ld + p];
                dp[4] = s0[4 * ld + p];
                dp[5] = s0[5 * ld + p];
                dp[6] = s0[6 * ld + p];
                dp[7] = s0[7 * ld + p];
            }
        }
        for (size_t r = r8; r < w; r++) {
            const float *src = x + (r0 + r) * ld + p0;
            for (size_t p = 0; p < kc; p++)
                dst[p * R + r] = src[p];
        }
    }
    if (w < R)
        for (size_t p = 0; p < kc; p++)
            for (size_t r = w; r < R; r++)
                dst[p * R + r] = 0.0f;
}

/* The B micro-panel op(B)(pc:pc+kc, j0:j0+w) (w <= NR) as (kc, NR). */
static void pack_b_strip(const gemm_job *job, size_t pc, size_t kc, size_t j0, size_t w,
                         float *strip)
{
    const bpi_ukr *u = job->ukr;
    pack_micro_panel(job->B, job->ldb, !job->trans_b, pc, kc, j0, w, u->nr,
                     job->trans_b ? u->pack_b_cols : u->pack_b_rows, strip);
}

/* Floats the packed A block of mc rows and kc columns takes, rounded up
 * so that what follows it starts 64-byte aligned. */
static size_t a_block_floats(const gemm_job *job, size_t mc, size_t kc)
{
    size_t mr = job->ukr->mr;
    return bpi_round_floats(ceil_div(mc, mr) * mr * kc);
}

/* The A block op(A)(ic:ic+mc, pc:pc+kc) as ceil(mc/MR) micro-panels, each
 * (kc, MR) at packed_a + ip * kc * MR. */
static void pack_a_block(const gemm_job *job, size_t ic, size_t mc, size_t pc,
                         size_t kc, float *packed_a)
{
    const bpi_ukr *u = job->ukr;
    bpi_pack_fn fast = job->trans_a ? u->pack_a_rows : u->pack_a_cols;
    for (size_t i0 = 0; i0 < mc; i0 += u->mr)
        pack_micro_panel(job->A, job->lda, job->trans_a, pc, kc, ic + i0,
                         size_min(u->mr, mc - i0), u->mr, fast, packed_a + i0 * kc);
}

/* ------------------------------------------------------ macro-kernel */

/* An edge tile (h <= MR rows, w <= NR columns of C, not both full): the
 * kernel runs on a full local MR x NR tile holding a copy of C (zeros
 * beyond h, w), and the h x w part is copied back. The kernel thus does the
 * very arithmetic it does on a full tile, whatever that is (an FMA kernel
 * may combine alpha and beta differently from this file). beta == 0: C is
 * neither read nor copied. fn is the kernel or one of its narrow variants
 * (columns beyond its width are not computed, and not copied: w <= them);
 * b_ld != 0 means b is B in place, rows b_ld apart (fn_direct_b: w == NR). */
static void edge_tile(const bpi_ukr *ukr, bpi_ukr_fn fn, size_t kc, const float *a,
                      const float *b, size_t b_ld, float *c, size_t ldc, size_t h, size_t w,
                      float alpha, float beta)
{
    _Alignas(BPI_ALIGN) float tile[BPI_UKR_MR_MAX * BPI_UKR_NR_MAX];
    size_t nr = ukr->nr;
    if (beta != 0.0f) {
        memset(tile, 0, sizeof(float) * ukr->mr * nr);
        for (size_t i = 0; i < h; i++)
            memcpy(tile + i * nr, c + i * ldc, sizeof(float) * w);
    }
    if (b_ld)
        ukr->fn_direct_b(kc, a, b, b_ld, tile, nr, alpha, beta, NULL, NULL);
    else
        fn(kc, a, b, tile, nr, alpha, beta);
    for (size_t i = 0; i < h; i++)
        memcpy(c + i * ldc, tile + i * nr, sizeof(float) * w);
}

/* One tile of h x w: the full kernel, or for a narrow last strip the
 * narrowest variant that covers w columns, straight into C when the tile
 * is exactly that wide and MR tall. */
static void tile_kernel(const bpi_ukr *ukr, size_t kc, const float *a, const float *b,
                        float *c, size_t ldc, size_t h, size_t w, float alpha, float beta)
{
    bpi_ukr_fn fn = ukr->fn;
    size_t width = ukr->nr;
    if (w < ukr->nr && ukr->narrow_w) {
        size_t i = (w + ukr->narrow_w - 1) / ukr->narrow_w - 1;
        if (i < 3 && ukr->narrow[i]) {
            fn = ukr->narrow[i];
            width = (i + 1) * ukr->narrow_w;
        }
    }
    if (h == ukr->mr && w == width)
        fn(kc, a, b, c, ldc, alpha, beta);
    else
        edge_tile(ukr, fn, kc, a, b, 0, c, ldc, h, w, alpha, beta);
}

/* Raise lanes[l] to the largest bpi_abs_bits() among the elements of the
 * h x w tile at c in columns j with j % 16 == l (any split works: only
 * the maximum over all lanes is used). Run just after the kernel wrote the
 * tile, so it reads L1. The 16 lanes are one vector register: a max per
 * 16 floats and no reduction per row or tile, which made a first version
 * cost 5 % of the kernels' time on batch-128 weight gradients. */
#define ABSMAX_LANES 16
BPI_VECTOR_CLONES
static void tile_absmax(const float *c, size_t ldc, size_t h, size_t w,
                        uint32_t lanes[ABSMAX_LANES])
{
    uint32_t m[ABSMAX_LANES];
    memcpy(m, lanes, sizeof m);
    for (size_t i = 0; i < h; i++) {
        const float *row = c + i * ldc;
        size_t j = 0;
        for (; j + ABSMAX_LANES <= w; j += ABSMAX_LANES)
            for (size_t l = 0; l < ABSMAX_LANES; l++) {
                uint32_t b = bpi_abs_bits(row[j + l]);
                m[l] = b > m[l] ? b : m[l];
            }
        for (size_t l = 0; j < w; j++, l++) {
            uint32_t b = bpi_abs_bits(row[j]);
            m[l] = b > m[l] ? b : m[l];
        }
    }
    memcpy(lanes, m, sizeof m);
}

static uint32_t lanes_max(const uint32_t lanes[ABSMAX_LANES])
{
    uint32_t m = 0;
    for (size_t l = 0; l < ABSMAX_LANES; l++)
        m = lanes[l] > m ? lanes[l] : m;
    return m;
}

/* C(ic:ic+mc, j0:j0+n) (mc, n <= n_strips NR), at c = &C[ic][j0], from
 * packed_a (ceil(mc/MR) micro-panels of (kc, MR)) and the B micro-panels
 * at panel ((kc, NR) each, the last one n - (n_strips - 1) NR wide). Rows
 * outside, strips inside: each A micro-panel stays in L1 while the strips
 * stream from L2, and C is written row band by row band. With one strip
 * (deep K) that strip stays in L1 and the A block streams instead.
 * b_ld != 0: panel is B itself at (pc, j0), rows b_ld apart, and n a
 * multiple of NR (fn_direct_b); the first row of micro-panels fetches
 * each strip's successor into L2, the last strip's being pf_after (NULL:
 * none), so that B's far-apart rows come from memory once, ahead of use. */
static uint32_t macro_kernel(const gemm_job *job, size_t mc, size_t n, size_t kc,
                             const float *packed_a, const float *panel, size_t b_ld, float *c,
                             float beta, int scan, const float *pf_after)
{
    uint32_t lanes[ABSMAX_LANES] = {0};
    const bpi_ukr *ukr = job->ukr;
    size_t mr = ukr->mr, nr = ukr->nr, ldc = job->ldc;
    for (size_t i0 = 0; i0 < mc; i0 += mr) {
        size_t h = size_min(mr, mc - i0);
        const float *a = packed_a + i0 * kc;
        for (size_t j = 0; j < n; j += nr) {
            size_t w = size_min(nr, n - j);
            const float *b = b_ld ? panel + j : panel + j * kc;
            float *tile = c + i0 * ldc + j;
            int full = h == mr && w == nr;
            if (b_ld) {
                if (full)
                    ukr->fn_direct_b(kc, a, b, b_ld, tile, ldc, job->alpha, beta,
                                     scan ? lanes : NULL,
                                     i0 > 0 ? NULL : j + nr < n ? b + nr : pf_after);
                else
                    edge_tile(ukr, ukr->fn, kc, a, b, b_ld, tile, ldc, h, w, job->alpha, beta);
                if (scan && !full)
                    tile_absmax(tile, ldc, h, w, lanes);
            } else if (full && scan && ukr->fn_absmax) {
                ukr->fn_absmax(kc, a, b, tile, ldc, job->alpha, beta, lanes);
            } else {
                if (full)
                    ukr->fn(kc, a, b, tile, ldc, job->alpha, beta);
                else
                    tile_kernel(ukr, kc, a, b, tile, ldc, h, w, job->alpha, beta);
                if (scan)
                    tile_absmax(tile, ldc, h, w, lanes);
            }
        }
    }
    return lanes_max(lanes);
}

/* ------------------------------------------------------------ threads */

/* Work below this many flops per thread does not pay for waking a thread:
 * with no barriers inside the engine, the cost of a second thread is the
 * fork/join of one OpenMP region, a few microseconds. Measured first on an
 * Intel VM (crossover near 0.3 MFLOP in all); on the Zen 5 VMs, whose
 * paravirtualised fork/join costs more and whose kernel is faster (median
 * GFLOP/s of 15 runs, 1 against 2 threads): 64^3 (0.52 MFLOP) 177 / 100,
 * 80^3 (1.0) 185 / 159, 32x128x128 NT (1.0) 151 / 135, 96^3 (1.8) 195 /
 * 241, 16x256x256 NN (2.1) 194 / 218: the crossover lies near 1.3 MFLOP,
 * so 0.6 MFLOP per thread. */
#define MIN_FLOPS_PER_THREAD 0.6e6

/* Part `idx` of `units` split into `parts` nearly equal ranges [*lo, *hi). */
static void split_range(size_t units, size_t parts, size_t idx, size_t *lo, size_t *hi)
{
    size_t q = units / parts, r = units % parts;
    *lo = idx * q + size_min(idx, r);
    *hi = *lo + q + (idx < r);
}

/* Threads split C's columns in units of the kernel's narrow width when it
 * has narrow variants (AVX-512: 16), else of whole strips: N = 256 on 2
 * threads then splits 128 + 128 (48 + 48 + 32 each) instead of 144 + 112
 * (three strips against two and a 16-wide one), and the narrow kernels
 * compute each element exactly as the full one does, so the bits do not
 * depend on where the split falls. */
static size_t col_unit(const bpi_ukr *ukr)
{
    return ukr->narrow_w ? ukr->narrow_w : ukr->nr;
}

/* Thread tj of tn: columns [*lo, *hi) of an NC block nc wide. */
static void split_cols(const bpi_ukr *ukr, size_t nc, size_t tn, size_t tj, size_t *lo,
                       size_t *hi)
{
    size_t unit = col_unit(ukr);
    split_range(ceil_div(nc, unit), tn, tj, lo, hi);
    *lo = size_min(*lo * unit, nc);
    *hi = size_min(*hi * unit, nc);
}

/* Threads worth using: at most max_threads (env's, whose workspace is
 * sized for them, or a team's), at most one per C tile, and when each must
 * be woken by a fork (forked), at least MIN_FLOPS_PER_THREAD each. */
static int threads_for(int max_threads, const gemm_job *job, int forked)
{
    if (max_threads <= 1)
        return 1;
    double flops = 2.0 * (double)job->M * (double)job->N * (double)job->K;
    double by_work = flops / MIN_FLOPS_PER_THREAD;
    double tiles = (double)ceil_div(job->M, job->ukr->mr) *
                   (double)ceil_div(size_min(job->N, job->blk.nc), job->ukr->nr);
    double n = (double)max_threads;
    if (forked && by_work < n)
        n = by_work;
    if (tiles < n)
        n = tiles;
    return n < 1.0 ? 1 : (int)n;
}

/* Whether all of op(B) fits the share of L3 the blocking gives a B panel
 * (KC NC floats): beyond it, B streams from memory. */
static int b_fits_cache(const gemm_job *job)
{
    return (double)job->K * (double)job->N <= (double)job->blk.kc * (double)job->blk.nc;
}

/* B is read in place, not packed, when the kernel can (fn_direct_b), op(B)
 * = B (a strip is NR floats of each of kc rows of B) and the strip serves
 * few A micro-panels: a packed strip is written once and then read mc / MR
 * times, so for a skinny M (the input gradient at training batches) the
 * copy costs more than the kernels' strided reads. Up to
 * BPI_GEMM_DIRECT_B_MAX_PANELS panels, except that from 5 on rows of B a
 * multiple of 4 KiB apart are packed when B would stay in cache (within
 * the KC NC share of L3): they fall into so few cache sets that the strip
 * does not stay in L2 from one panel to the next (64x1024x1024 NN, below).
 * A larger B streams from memory either way, and in place it streams once
 * (64x4096x4096 NN 158 -> 164 GFLOP/s on 1 thread, 300 -> 308 on 2,
 * medians of 5 alternating runs). Measured
 * (AVX-512 8x48, this Zen 5 VM, 1 thread, GFLOP/s packed -> in place, NN):
 * 16x512x512 139 -> 195, 32x784x256 163 -> 202, 32x4096x4096 127 -> 154,
 * 64x512x512 189 -> 207, 64x1024x1024 184 -> 177; at 16 panels (M = 128)
 * 128x784x256 201 -> 216 but 128x1024x1024 203 -> 188. */
static int use_direct_b(const gemm_job *job, size_t mc)
{
    size_t panels = ceil_div(mc, job->ukr->mr);
    return job->ukr->fn_direct_b && !job->trans_b &&
           (panels <= 4 || (panels <= BPI_GEMM_DIRECT_B_MAX_PANELS &&
                            (job->ldb % 1024 != 0 || !b_fits_cache(job))));
}

/* Arrange nt threads as a tm x tn grid: tm split the rows of C (whole MR
 * blocks), tn the NR strips of each NC block. A thread packs the A blocks
 * of its rows and the B strips of its columns (a B strip once per MC block
 * of its rows, or not at all when it reads B in place), so a split over
 * rows makes every thread pack all of B and a split over columns all of A.
 * The grid minimises the busiest thread's time, estimated in cycles for one
 * NC block: MR NR K / 32 per tile (the FMAs of an AVX-512 kernel near peak)
 * and K / 4 per row or column packed (about what packing streams). Packing
 * weighs most when one operand is
 * skinny: 16x512x512 NN, split over rows, had both threads pack all of B
 * and ran 1.34x faster on 2 threads than on 1; over columns it runs ~1.9x.
 * Ties keep the first factorisation tried: rows first when there are more
 * row blocks than strips. All threads compute the same grid; the grid
 * never changes a result bit. */
static int use_bcast(const gemm_job *job, size_t rows);

static void thread_grid(const gemm_job *job, size_t nt, size_t *tm, size_t *tn)
{
    size_t mr = job->ukr->mr, nr = job->ukr->nr, K = job->K;
    size_t m_units = ceil_div(job->M, mr);
    size_t unit = col_unit(job->ukr);
    size_t n_units = ceil_div(size_min(job->N, job->blk.nc), unit);
    size_t n_strips = ceil_div(size_min(job->N, job->blk.nc), nr);
    /* B read in place (fn_direct_b, or bcast_rows for op(B) = B^T) costs
     * nothing beside the kernels while it comes from cache; when it exceeds
     * the share of L3 the blocking gives a B panel (KC NC), every row group
     * of threads streams it from memory, which costs like packing:
     * 64x4096x4096 NN on 2 threads ran 324 GFLOP/s split over columns, 246
     * over rows. Counting bcast_rows as packing kept the forward products
     * of training batches split over columns, each thread packing its half
     * of W for all the rows; over rows, each reads all of W in place for
     * half of them. On 2 threads (medians of 5 alternating runs, GFLOP/s):
     * 128x256x784 NT 332 -> 358, 256x1024x1024 NT 358 -> 363; training
     * steps of 1024-1024-1024-1024-10 at batch 256 +2.5 % (SGD, 7 runs),
     * +3.3 % (Adam), of 784-256-128-100-10 at batch 128 +2.1 %. */
    /* Weights the threads update row share by row share (b_owned) and
     * read in place for all rows, when there are more of them than inputs
     * (N > M): split over rows, every thread would read all of W, pulling
     * the other threads' shares across caches, and each update would then
     * invalidate the copies; split over columns, each reads and writes only
     * its own share, and the smaller X crosses instead. These VMs put each
     * core in an L3 domain of its own: two threads taking turns on a
     * 128 KiB buffer, one reading it, the other rewriting it, read at
     * 6.6 GB/s and rewrote at about 10 ns a line more than alone.
     * 784-256-128-100-10 at batch 128, 2 threads, 128x256x784 NT over
     * columns instead of rows, 5 alternating runs: the whole step
     * 0.545 -> 0.520 ms (Adam), 0.561 -> 0.517 ms (SGD); its update
     * 91 -> 48 us (Adam), as fast as bp_optim_step on its own. Where W would
     * be packed instead (256x1024x1024 NT: too many rows for bcast_rows),
     * the split over columns lost 0.11 ms of a 12.7 ms step. */
    if (job->epi && job->epi->b_owned && job->N > job->M && n_strips >= nt &&
        (use_bcast(job, job->M) || use_direct_b(job, job->M))) {
        *tm = 1;
        *tn = nt;
        return;
    }
    int b_cached = b_fits_cache(job);
    double best = -1.0;
    *tm = nt;
    *tn = 1;
    for (size_t i = 1; i <= nt; i++) {
        size_t m = m_units >= n_strips ? nt + 1 - i : i; /* preferred first */
        if (nt % m != 0)
            continue;
        size_t n = nt / m;
        double rows = (double)(ceil_div(m_units, m) * mr);
        /* the strips of a thread's columns, a narrow one counted as a full
         * one (its kernel calls cost nearly as much) */
        double strips = (double)ceil_div(ceil_div(n_units, n) * unit, nr);
        double mc_blocks = (double)ceil_div((size_t)rows, job->blk.mc);
        double tiles = rows / (double)mr * strips;
        int in_place = use_direct_b(job, (size_t)rows) || use_bcast(job, (size_t)rows);
        double b_cost = in_place && (m == 1 || b_cached) ? 0.0 : strips * (double)nr * mc_blocks;
        double cost = tiles * (double)(mr * nr) * (double)K / 32.0 +
                      (double)K * (rows + b_cost) / 4.0;
        if (best < 0.0 || cost < best) {
            best = cost;
            *tm = m;
            *tn = n;
        }
    }
}

/* *p = max(*p, v), shared by the threads of one call. */
static void atomic_max(uint32_t *p, uint32_t v)
{
    uint32_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v > cur &&
           !__atomic_compare_exchange_n(p, &cur, v, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* Rows [0, h) of the C block at c, w wide, set to seed[0, w). */
static void seed_rows(const float *restrict seed, float *restrict c, size_t ldc, size_t h,
                      size_t w)
{
    for (size_t i = 0; i < h; i++)
        for (size_t j = 0; j < w; j++) /* a loop, not a memcpy call per 16-float row */
            c[i * ldc + j] = seed[j];
}

/* s[r] += panel[p MR + r] for p in order: MR independent sums side by side
 * along the micro-panel's contiguous direction, with MR a constant so the
 * loop over r is a vector operation (padding rows of an edge panel are
 * zeros, summed and not kept). */
#define PANEL_SUMS(MRC)                                                           \
    static void panel_sums_##MRC(const float *restrict panel, size_t kc, float *restrict s) \
    {                                                                             \
        for (size_t p = 0; p < kc; p++)                                           \
            for (size_t r = 0; r < MRC; r++)                                      \
                s[r] += panel[p * MRC + r];                                       \
    }
PANEL_SUMS(4)
PANEL_SUMS(6)
PANEL_SUMS(8)

static void panel_sums_any(const float *restrict panel, size_t kc, size_t mr, float *restrict s)
{
    for (size_t p = 0; p < kc; p++)
        for (size_t r = 0; r < mr; r++)
            s[r] += panel[p * mr + r];
}

/* Rows of the tallest panel add_a_sums() takes: a kernel's MR or a
 * broadcast group's padded rows (4 vectors of at most 16 floats). */
#define PANEL_ROWS_MAX 64

/* a_sums[0, mc) over the K block just packed (packed_a: ceil(mc/mr)
 * panels (kc, mr), mr <= PANEL_ROWS_MAX: the kernel's MR, or one group of
 * bcast_rows), continuing the sums of earlier K blocks: each row's floats
 * are added one by one in K order, as a plain loop over the row would. Run
 * by one thread per row block, once per K block. */
static void add_a_sums(const float *packed_a, size_t mc, size_t kc, size_t mr, int first,
                       float *a_sums)
{
    for (size_t i0 = 0; i0 < mc; i0 += mr) {
        const float *panel = packed_a + i0 * kc;
        size_t h = size_min(mr, mc - i0);
        float s[PANEL_ROWS_MAX] = {0};
        for (size_t r = 0; r < h; r++)
            s[r] = first ? 0.0f : a_sums[i0 + r];
        switch (mr) { /* the kernels' MR: scalar 4, AVX2 6, NEON and AVX-512 8; else a group */
        case 4: panel_sums_4(panel, kc, s); break;
        case 6: panel_sums_6(panel, kc, s); break;
        case 8: panel_sums_8(panel, kc, s); break;
        default: panel_sums_any(panel, kc, mr, s); break;
        }
        for (size_t r = 0; r < h; r++)
            a_sums[i0 + r] = s[r];
    }
}

/* Floats of A packed whole (every K block of mc rows) plus one strip. */
static size_t deep_floats(const gemm_job *job, size_t mc)
{
    size_t kc_max = job->blk.kc, total = 0;
    for (size_t pc = 0; pc < job->K; pc += kc_max)
        total += a_block_floats(job, mc, size_min(kc_max, job->K - pc));
    return total + bpi_round_floats(kc_max * job->ukr->nr);
}

/* A thread's rows [ic, ic + mc), one row block, against its columns
 * [j_lo, j_hi) when K spans several blocks and op(B) = B^T (the skinny
 * forward X W^T at a training batch): every K block of those rows is
 * packed first (the workspace's spare area holds them), then the strips go
 * outside and the K blocks inside, so each strip, NR rows of the stored B,
 * is read along those rows through all of K in one go rather than a
 * KC-long piece per pass over all strips. (With op(B) = B a strip is NR
 * columns, and the K-block order lets neighbouring strips share each
 * row's cache lines: 128x1024x1024 NN on 2 threads ran 0.96x as fast this
 * way.) Measured (1 thread, medians of 3 alternating runs):
 * 64x4096x4096 NT 150 -> 155 GFLOP/s, 64x1024x1024 NT 180 -> 184; on 2
 * threads 298 -> 306 and 341 -> 349; shapes whose B stays cached
 * (128x256x784, 256x1024x1024 NT) unchanged. Each element still gets its
 * K blocks in increasing order from the same kernel calls, so C has the
 * bits of the loop in gemm_thread_body. sums: this thread keeps the
 * epilogue's a_sums for these rows. Returns the tiles' abs-max bits. */
static uint32_t deep_rows(const gemm_job *job, size_t ic, size_t mc, size_t j_lo,
                          size_t j_hi, int sums, float *packed_a)
{
    size_t mr = job->ukr->mr, nr = job->ukr->nr, kc_max = job->blk.kc;
    const float *seed = job->epi ? job->epi->seed : NULL;
    float *a_sums = job->epi ? job->epi->a_sums : NULL;
    size_t off = 0;
    for (size_t pc = 0; pc < job->K; pc += kc_max) {
        size_t kc = size_min(kc_max, job->K - pc);
        pack_a_block(job, ic, mc, pc, kc, packed_a + off);
        if (a_sums && sums)
            add_a_sums(packed_a + off, mc, kc, mr, pc == 0, a_sums + ic);
        off += a_block_floats(job, mc, kc);
    }
    float *strip = packed_a + off;
    uint32_t absmax = 0;
    for (size_t j0 = j_lo; j0 < j_hi; j0 += nr) {
        size_t w = size_min(nr, j_hi - j0);
        float *c = job->C + ic * job->ldc + j0;
        if (seed)
            seed_rows(seed + j0, c, job->ldc, mc, w);
        const float *a = packed_a;
        for (size_t pc = 0; pc < job->K; pc += kc_max) {
            size_t kc = size_min(kc_max, job->K - pc);
            float beta = pc == 0 && !seed ? job->beta : 1.0f;
            pack_b_strip(job, pc, kc, j0, w, strip);
            int scan = job->absmax && pc + kc >= job->K; /* |C| final after the last */
            uint32_t m = macro_kernel(job, mc, w, kc, a, strip, 0, c, beta, scan, NULL);
            absmax = m > absmax ? m : absmax;
            a += a_block_floats(job, mc, kc);
        }
    }
    return absmax;
}

/* Rows of C one broadcast tile covers at most (fn_bcast_b: 4 vectors). */
static size_t bcast_group_rows(const bpi_ukr *ukr)
{
    return 4 * ukr->bcast_vl;
}

/* The group of a thread's m rows starting at row g0: h rows, one tile's
 * height at most, in mv vectors of the kernel, padded to mp rows, computed
 * nb columns at a time. */
typedef struct bcast_group {
    size_t h, mv, mp, nb;
} bcast_group;

static bcast_group bcast_group_at(const bpi_ukr *ukr, size_t m, size_t g0)
{
    bcast_group g;
    g.h = size_min(bcast_group_rows(ukr), m - g0);
    g.mv = ceil_div(g.h, ukr->bcast_vl);
    g.mp = g.mv * ukr->bcast_vl;
    g.nb = ukr->bcast_nb[g.mv - 1];
    return g;
}

/* m rows padded group by group: the height of bcast_rows' transposed C. */
static size_t bcast_padded(const bpi_ukr *ukr, size_t m)
{
    size_t full = m / bcast_group_rows(ukr) * bcast_group_rows(ukr);
    return full + (m > full ? bcast_group_at(ukr, m, full).mp : 0);
}

/* Columns per pass of W over all row groups: their tiles' widths (6, 8,
 * 12, 16 for AVX-512) all divide it, and its KC-deep piece of W (166 KB)
 * stays in L2 from one group to the next. */
#define BCAST_W_CHUNK 96

/* Columns of C that bcast_rows() holds transposed in the thread's area
 * beside the packed op(A) of m rows: a multiple of the tile width (one
 * group) or of BCAST_W_CHUNK, 0 if not even one fits. */
static size_t bcast_chunk(const gemm_job *job, size_t m)
{
    size_t mp = bcast_padded(job->ukr, m);
    size_t unit = m > bcast_group_rows(job->ukr) ? BCAST_W_CHUNK
                                                 : bcast_group_at(job->ukr, m, 0).nb;
    size_t a_floats = bpi_round_floats(mp * job->blk.kc);
    if (job->t_stride <= a_floats)
        return 0;
    return (job->t_stride - a_floats) / mp / unit * unit;
}

/* A thread's rows [ic, ic + m) against its columns [j_lo, j_hi) with op(B)
 * = B^T (the forward X W^T at a training batch): the kernel's fn_bcast_b
 * computes C transposed into the thread's area, broadcasting W's elements
 * from W's own rows, so W is read in place and never packed (the packing,
 * a transpose, took 27 % of 64x4096x4096 NT). Per K block, op(A) is packed
 * (kc, mp) per group of up to 64 rows, and each group's tiles get that
 * block's sum, combined as the kernels combine it; a pass of
 * BCAST_W_CHUNK columns of W serves every group before the next. After the
 * last block the columns are copied into C. Same K blocks, same FMAs, same
 * write-back: C gets the bits of the loop in gemm_thread_body. sums: this
 * thread keeps the epilogue's a_sums for these rows. Returns the abs-max
 * bits of what it wrote. */
static uint32_t bcast_rows(const gemm_job *job, size_t ic, size_t m, size_t j_lo, size_t j_hi,
                           int sums, float *area)
{
    const bpi_ukr *u = job->ukr;
    size_t kc_max = job->blk.kc, ldc = job->ldc, ldb = job->ldb;
    size_t mp = bcast_padded(u, m), chunk = bcast_chunk(job, m);
    size_t step = m > bcast_group_rows(u) ? BCAST_W_CHUNK : chunk;
    const float *seed = job->epi ? job->epi->seed : NULL;
    float *a_sums = job->epi ? job->epi->a_sums : NULL;
    float *xp = area, *st = area + bpi_round_floats(mp * kc_max);
    uint32_t lanes[ABSMAX_LANES] = {0};
    for (size_t c0 = j_lo; c0 < j_hi; c0 += chunk) {
        size_t cw = size_min(chunk, j_hi - c0);
        float *c = job->C + ic * ldc + c0;
        /* st (cw, mp) = C^T or the seed: row i of C at t[i] (the groups before
         * the last are full), the last group's padding 0 */
        if (seed || job->beta != 0.0f)
            for (size_t j = 0; j < cw; j++) {
                float *t = st + j * mp;
                for (size_t i = 0; i < m; i++)
                    t[i] = seed ? seed[c0 + j] : c[i * ldc + j];
                for (size_t i = m; i < mp; i++)
                    t[i] = 0.0f;
            }
        for (size_t pc = 0; pc < job->K; pc += kc_max) {
            size_t kc = size_min(kc_max, job->K - pc);
            float beta = pc == 0 && !seed ? job->beta : 1.0f;
            /* group g's (kc, mp_g) at xp + kc g0 (groups before it are full) */
            for (size_t g0 = 0; g0 < m; g0 += bcast_group_rows(u)) {
                bcast_group g = bcast_group_at(u, m, g0);
                float *xg = xp + kc * g0;
                if (!job->trans_a && u->bcast_pack_a)
                    u->bcast_pack_a(job->A + (ic + g0) * job->lda + pc, job->lda, kc, g.h, g.mp,
                                    xg);
                else
                    pack_micro_panel(job->A, job->lda, job->trans_a, pc, kc, ic + g0, g.h,
                                     g.mp, NULL, xg);
                if (a_sums && sums && c0 == j_lo)
                    add_a_sums(xg, g.h, kc, g.mp, pc == 0, a_sums + ic + g0);
            }
            for (size_t w0 = 0; w0 < cw; w0 += step) {
                size_t w_hi = size_min(cw, w0 + step);
                for (size_t g0 = 0; g0 < m; g0 += bcast_group_rows(u)) {
                    bcast_group g = bcast_group_at(u, m, g0);
                    for (size_t j = w0; j < w_hi; j += g.nb)
                        u->fn_bcast_b(kc, g.mv, xp + kc * g0, job->B + (c0 + j) * ldb + pc, ldb,
                                      size_min(g.nb, w_hi - j), st + j * mp + g0, mp,
                                      job->alpha, beta);
                }
            }
        }
        if (u->bcast_unpack_c) {
            u->bcast_unpack_c(st, mp, m, cw, c, ldc);
        } else {
            for (size_t i = 0; i < m; i++) {
                float *row = c + i * ldc;
                for (size_t j = 0; j < cw; j++)
                    row[j] = st[j * mp + i];
            }
        }
        if (job->absmax)
            tile_absmax(c, ldc, m, cw, lanes);
    }
    return lanes_max(lanes);
}

/* Whether a thread's rows go through bcast_rows(): op(B) = B^T, more rows
 * than one vector (at 16 or fewer half of a 4 x 6 tile's FMAs would be
 * padding, and the 1 x 16 tile lost to the packed path: 16x1024x1024 NT
 * 0.92x), and at most two groups of rows unless B streams from memory
 * (with B cached, packing it pays for itself from M = 256 on: 256x128x256
 * NT 0.95x, 256x1024x1024 1.00x). Measured against the packed paths (1
 * thread, medians of 5 alternating runs, GFLOP/s): 64x4096x4096 155 ->
 * 199, 32x4096x4096 120 -> 200, 64x1024x1024 187 -> 213, 64x256x784 184
 * -> 206, 24x100x128 104 -> 136, 128x1024x1024 196 -> 206, 512x4096x4096
 * 188 -> 198; 2 threads: 64x4096x4096 287 -> 412, 64x256x784 333 -> 368,
 * 128x256x784 352 -> 364. */
static int use_bcast(const gemm_job *job, size_t rows)
{
    const bpi_ukr *u = job->ukr;
    return u->fn_bcast_b && job->trans_b && rows > u->bcast_vl &&
           (rows <= 2 * bcast_group_rows(u) || !b_fits_cache(job)) && bcast_chunk(job, rows) > 0;
}

/* Thread tid of nt: the whole loop nest, on its share of the tiles, with
 * its own packing buffers; no thread waits for another. */
static void gemm_thread_body(const gemm_job *job, size_t tid, size_t nt);

/* Every path into the engine runs the loop nest here, on each of its
 * threads, with flush-to-zero on (and the thread's mode restored after). */
static void gemm_thread(const gemm_job *job, size_t tid, size_t nt)
{
    bpi_fpmode fp = bpi_fpmode_enter();
    gemm_thread_body(job, tid, nt);
    bpi_fpmode_leave(&fp);
}

static void gemm_thread_body(const gemm_job *job, size_t tid, size_t nt)
{
    const bpi_gemm_blocking *blk = &job->blk;
    uint32_t absmax = 0;
    size_t mr = job->ukr->mr, nr = job->ukr->nr;
    size_t tm, tn;
    thread_grid(job, nt, &tm, &tn);
    size_t ti = tid / tn, tj = tid % tn;
    float *packed_a = job->workspace + tid * job->t_stride;
    const float *seed = job->epi ? job->epi->seed : NULL;
    void (*post)(const void *, const float *, size_t, size_t, size_t, size_t, size_t) =
        job->epi ? job->epi->post : NULL;
    /* With several K blocks the strips go one at a time (below), and the
     * post step then runs on all of this thread's columns of a row block
     * at once, just after its last K block, rather than on NR-wide pieces,
     * whose short rows cost more in loop overhead than the cache saves
     * (the activation forward of 128x784 -> 256 on Zen 1: 0.9 % of a
     * training step on NR-wide pieces, 0.7 % on bands). With one K block
     * it runs on each group of strips, which is wide. */
    int band_post = post && job->K > blk->kc;
    float *a_sums = job->epi ? job->epi->a_sums : NULL;

    size_t mu_lo, mu_hi; /* this thread's rows, in MR blocks */
    split_range(ceil_div(job->M, mr), tm, ti, &mu_lo, &mu_hi);
    size_t row_lo = mu_lo * mr, row_hi = size_min(job->M, mu_hi * mr);
    size_t rows = row_hi > row_lo ? row_hi - row_lo : 0;
    int deep = rows > 0 && rows <= blk->mc && job->K > blk->kc && job->trans_b &&
               deep_floats(job, rows) <= job->t_stride;
    int bcast = use_bcast(job, rows);

    for (size_t jc = 0; jc < job->N; jc += blk->nc) {
        size_t nc = size_min(blk->nc, job->N - jc);
        size_t lo, hi; /* this thread's columns of the NC block */
        split_cols(job->ukr, nc, tn, tj, &lo, &hi);
        size_t n_strips = ceil_div(hi - lo, nr), j_lo = jc + lo, j_hi = jc + hi;
        if ((bcast || deep) && lo < hi) { /* the thread's rows as one band */
            int sums = jc == 0 && tj == 0;
            uint32_t m = bcast ? bcast_rows(job, row_lo, rows, j_lo, j_hi, sums, packed_a)
                               : deep_rows(job, row_lo, rows, j_lo, j_hi, sums, packed_a);
            absmax = m > absmax ? m : absmax;
            if (post)
                post(job->epi->ctx, job->C + row_lo * job->ldc + j_lo, job->ldc, row_lo, j_lo,
                     rows, j_hi - j_lo);
            continue;
        }
        for (size_t ic = row_lo; ic < row_hi && lo < hi; ic += blk->mc) {
            size_t mc = size_min(blk->mc, row_hi - ic);
            int direct = use_direct_b(job, mc);
            for (size_t pc = 0; pc < job->K; pc += blk->kc) {
                size_t kc = size_min(blk->kc, job->K - pc);
                /* beta scales C once; later K blocks add to it. A seed
                 * replaces C, and the first block adds to the seed. */
                float beta = pc == 0 && !seed ? job->beta : 1.0f;
                /* The B strips go behind the A block. When all of K is one
                 * block (the weight gradient, K = batch), C is written just
                 * once, and as many strips as the thread's area holds (MC KC
                 * + KC NR floats) are packed together, so that C is written
                 * in long row bands rather than one NR-wide piece per row
                 * and page: 4096x4096x32 TN 46 -> 120 GFLOP/s, 1024x1024x32
                 * 85 -> 136. With several K blocks one strip at a time is
                 * better (64x1024x1024 NN/NT 8-10 %, 64x4096^2 NT 20 %). */
                size_t a_used = a_block_floats(job, mc, kc);
                float *panel = packed_a + a_used;
                size_t group = job->K <= blk->kc
                                   ? (group_floats(blk, job->ukr) - a_used) / (kc * nr) : 1;
                pack_a_block(job, ic, mc, pc, kc, packed_a);
                /* The threads of a row block all pack it: the first sums. */
                if (a_sums && jc == 0 && tj == 0)
                    add_a_sums(packed_a, mc, kc, mr, pc == 0, a_sums + ic);
                for (size_t jp = 0; jp < n_strips; jp += group) {
                    size_t jp_hi = size_min(n_strips, jp + group);
                    size_t j0 = j_lo + jp * nr;
                    size_t n = size_min(j_lo + jp_hi * nr, j_hi) - j0;
                    /* In place: the full strips; a narrow last one is
                     * packed (its rows end before NR). */
                    size_t n_direct = direct ? n / nr * nr : 0;
                    for (size_t s = jp + n_direct / nr; s < jp_hi; s++)
                        pack_b_strip(job, pc, kc, j_lo + s * nr,
                                     size_min(nr, j_hi - (j_lo + s * nr)),
                                     panel + (s - jp) * kc * nr);
                    float *c = job->C + ic * job->ldc + j0;
                    if (seed && pc == 0)
                        seed_rows(seed + j0, c, job->ldc, mc, n);
                    /* |C| is final after the last K block */
                    int scan = job->absmax && pc + kc >= job->K;
                    uint32_t m = 0;
                    if (n_direct) {
                        /* after the last strip: the next full one here or,
                         * from the next K block when it is as deep (the
                         * kernel fetches kc rows), the first */
                        const float *next = NULL;
                        if (j0 + n_direct + nr <= j_hi)
                            next = job->B + pc * job->ldb + j0 + n_direct;
                        else if (job->K - (pc + kc) >= kc && j_lo + nr <= j_hi)
                            next = job->B + (pc + kc) * job->ldb + j_lo;
                        m = macro_kernel(job, mc, n_direct, kc, packed_a,
                                         job->B + pc * job->ldb + j0, job->ldb, c, beta, scan,
                                         next);
                    }
                    if (n_direct < n) {
                        uint32_t e = macro_kernel(job, mc, n - n_direct, kc, packed_a,
                                                  panel + n_direct * kc, 0, c + n_direct, beta,
                                                  scan, NULL);
                        m = e > m ? e : m;
                    }
                    absmax = m > absmax ? m : absmax;
                    if (pc + kc >= job->K && post && !band_post)
                        post(job->epi->ctx, c, job->ldc, ic, j0, mc, n);
                }
            }
            if (band_post)
                post(job->epi->ctx, job->C + ic * job->ldc + j_lo, job->ldc, ic, j_lo, mc,
                     j_hi - j_lo);
        }
    }
    if (job->absmax)
        atomic_max(job->absmax, absmax);
}

/* ------------------------------------------------------------- driver */

/* Rows [lo, hi) of C (M, N) when the whole product is zero (alpha == 0 or
 * K == 0): C = beta C, or the seed; beta == 0 writes zeros without reading
 * C. Then *absmax (if not NULL) is raised to max |C| and the post step runs
 * on these rows. (The epilogue's a_sums are the caller's then: gemm.h.) */
static void scale_c(size_t lo, size_t hi, size_t N, float beta, float *C, size_t ldc,
                    uint32_t *absmax, const bpi_gemm_epilogue *epi)
{
    if (hi <= lo)
        return;
    const float *seed = epi ? epi->seed : NULL;
    uint32_t lanes[ABSMAX_LANES] = {0};
    for (size_t i = lo; i < hi; i++) {
        float *row = C + i * ldc;
        if (seed)
            memcpy(row, seed, sizeof(float) * N);
        else if (beta == 0.0f)
            memset(row, 0, sizeof(float) * N);
        else if (beta != 1.0f)
            for (size_t j = 0; j < N; j++)
                row[j] = beta * row[j];
        if (absmax)
            tile_absmax(row, ldc, 1, N, lanes);
    }
    if (absmax)
        atomic_max(absmax, lanes_max(lanes));
    if (epi && epi->post)
        epi->post(epi->ctx, C + lo * ldc, ldc, lo, 0, hi - lo, N);
}

/* The job of one call: operands, blocking and the packing buffers in env's
 * workspace (an A block and a B strip per thread). */
static gemm_job make_job(const bpi_gemm_env *env, int transA, int transB, size_t M, size_t N,
                         size_t K, float alpha, const float *A, size_t lda, const float *B,
                         size_t ldb, float beta, float *C, size_t ldc)
{
    gemm_job job = {
        .ukr = env->ukr,
        .trans_a = transA != 0, .trans_b = transB != 0,
        .M = M, .N = N, .K = K, .alpha = alpha, .beta = beta,
        .A = A, .B = B, .lda = lda, .ldb = ldb, .ldc = ldc, .C = C,
    };
    job.blk = effective_blocking(&env->blk, job.ukr);
    job.workspace = env->workspace;
    job.t_stride = thread_floats(&job.blk, job.ukr);
    return job;
}

void bpi_sgemm(const bpi_gemm_env *env, int transA, int transB,
               size_t M, size_t N, size_t K, float alpha,
               const float *A, size_t lda, const float *B, size_t ldb,
               float beta, float *C, size_t ldc)
{
    bpi_sgemm_absmax(env, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

void bpi_sgemm_absmax(const bpi_gemm_env *env, int transA, int transB, size_t M, size_t N,
                      size_t K, float alpha, const float *A, size_t lda, const float *B,
                      size_t ldb, float beta, float *C, size_t ldc, uint32_t *absmax)
{
    bpi_sgemm_epi(env, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, absmax,
                  NULL);
}

void bpi_sgemm_epi(const bpi_gemm_env *env, int transA, int transB, size_t M, size_t N,
                   size_t K, float alpha, const float *A, size_t lda, const float *B,
                   size_t ldb, float beta, float *C, size_t ldc, uint32_t *absmax,
                   const bpi_gemm_epilogue *epi)
{
    if (M == 0 || N == 0)
        return;
    if (alpha == 0.0f || K == 0) {
        scale_c(0, M, N, beta, C, ldc, absmax, epi);
        return;
    }

    gemm_job job = make_job(env, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    job.absmax = absmax;
    job.epi = epi;
    int n_threads = threads_for(env->n_threads, &job, 1);
#if BP_HAVE_OPENMP
    /* Inside someone's parallel region: their threads are busy, run here. */
    if (n_threads > 1 && !omp_in_parallel()) {
#pragma omp parallel num_threads(n_threads)
        gemm_thread(&job, (size_t)omp_get_thread_num(), (size_t)omp_get_num_threads());
        return;
    }
#else
    (void)n_threads;
#endif
    gemm_thread(&job, 0, 1);
}

void bpi_sgemm_team(const bpi_gemm_env *env, const bpi_team *team, int transA, int transB,
                    size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                    const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
    bpi_sgemm_team_epi(env, team, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                       NULL, NULL);
}

void bpi_sgemm_team_absmax(const bpi_gemm_env *env, const bpi_team *team, int transA,
                           int transB, size_t M, size_t N, size_t K, float alpha,
                           const float *A, size_t lda, const float *B, size_t ldb, float beta,
                           float *C, size_t ldc, uint32_t *absmax)
{
    bpi_sgemm_team_epi(env, team, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                       absmax, NULL);
}

/* fit: only as many members as threads_for() gives the product without
 * a fork; otherwise all of them. */
static void team_epi(const bpi_gemm_env *env, const bpi_team *team, int fit, int transA,
                     int transB, size_t M, size_t N, size_t K, float alpha, const float *A,
                     size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc,
                     uint32_t *absmax, const bpi_gemm_epilogue *epi)
{
    if (team->size <= 1) { /* on the calling thread: the plain engine does that */
        bpi_sgemm_epi(env, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, absmax,
                      epi);
        return;
    }
    if (M == 0 || N == 0)
        return;
    if (alpha == 0.0f || K == 0) {
        size_t lo, hi; /* rows of C, one range per member */
        split_range(M, (size_t)team->size, (size_t)team->rank, &lo, &hi);
        scale_c(lo, hi, N, beta, C, ldc, absmax, epi);
        return;
    }
    gemm_job job = make_job(env, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    job.absmax = absmax;
    job.epi = epi;
    int n = fit ? threads_for(team->size, &job, 0) : team->size;
    if (team->rank < n)
        gemm_thread(&job, (size_t)team->rank, (size_t)n);
}

void bpi_sgemm_team_epi(const bpi_gemm_env *env, const bpi_team *team, int transA,
                        int transB, size_t M, size_t N, size_t K, float alpha, const float *A,
                        size_t lda, const float *B, size_t ldb, float beta, float *C,
                        size_t ldc, uint32_t *absmax, const bpi_gemm_epilogue *epi)
{
    team_epi(env, team, 0, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, absmax,
             epi);
}

void bpi_sgemm_team_fit_epi(const bpi_gemm_env *env, const bpi_team *team, int transA,
                            int transB, size_t M, size_t N, size_t K, float alpha,
                            const float *A, size_t lda, const float *B, size_t ldb, float beta,
                            float *C, size_t ldc, uint32_t *absmax,
                            const bpi_gemm_epilogue *epi)
{
    team_epi(env, team, 1, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, absmax,
             epi);
}
