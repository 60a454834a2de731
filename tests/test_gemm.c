/* The GEMM engine (bpi_sgemm) and the public bp_sgemm against a naive
 * double-precision reference.
 *
 * Exactness: most cases fill A, B and C with integers in [-4, 4] and take
 * alpha, beta in {0, 1, -1, 0.5}. Every partial sum is then an integer below
 * 16 K + 4 < 2^24, every product with alpha or beta a multiple of 0.5 of the
 * same size, so float arithmetic is exact in any order and the engine must
 * equal the reference bit for bit (up to the sign of zero). Real-valued
 * fills are used only for the projection check of large sizes (tolerance
 * derived there) and for the thread-count check (compared with itself).
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bp_config.h"
#include "cpu.h"
#include "ctx.h"
#include "gemm.h"
#include "team.h"
#include "testutil.h"
#include "ukr.h"

#if BP_HAVE_OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------------------- helpers */

/* The kernel under test: main() runs the whole suite once for every kernel
 * this CPU supports (forked test processes inherit it). */
static const bpi_ukr *cur_ukr;

/* A matrix in memory: `lines` runs of `len` floats, ld apart (rows when
 * row-major, columns when column-major). Padding (ld > len) holds NaN. */
typedef struct stored {
    float *x;
    size_t lines, len, ld;
} stored;

/* What one GEMM call computes: op(A) M x K, op(B) K x N, C M x N. */
typedef struct spec {
    int col_major, trans_a, trans_b;
    size_t M, N, K;
    size_t pad;         /* ld = minimum + pad, for A, B and C */
    float alpha, beta;
} spec;

typedef struct problem {
    spec s;
    stored a, b, c;
    float *c_before;    /* copy of c.x before the call */
} problem;

enum fill { FILL_INT, FILL_REAL, FILL_NAN };

static const float scalars[4] = {0.0f, 1.0f, -1.0f, 0.5f};

static size_t smax(size_t a, size_t b) { return a > b ? a : b; }

/* Storage of X where op(X) is rows x cols (X transposed iff trans). */
static stored stored_new(int col_major, int trans, size_t rows, size_t cols, size_t pad)
{
    size_t xr = trans ? cols : rows, xc = trans ? rows : cols;
    stored s = {NULL, col_major ? xc : xr, col_major ? xr : xc, 0};
    s.ld = smax(s.len, 1) + pad;
    size_t n = smax(s.lines * s.ld, 1);
    s.x = malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(s.x);
    for (size_t i = 0; i < n; i++)
        s.x[i] = NAN;
    return s;
}

/* Fill the logical part (padding keeps its NaN). */
static void stored_fill(stored *s, tu_rng *rng, enum fill how)
{
    for (size_t l = 0; l < s->lines; l++)
        for (size_t e = 0; e < s->len; e++)
            s->x[l * s->ld + e] = how == FILL_INT ? tu_int_float(rng, -4, 4)
                                : how == FILL_REAL ? (float)tu_uniform(rng, -1.0, 1.0)
                                                   : NAN;
}

/* op(X)(r, c) of a matrix stored as s. */
static double op_at(const float *x, size_t ld, int col_major, int trans, size_t r, size_t c)
{
    if (trans) {
        size_t t = r;
        r = c;
        c = t;
    }
    return col_major ? x[r + c * ld] : x[r * ld + c];
}

static float *c_elem(const problem *p, float *x, size_t i, size_t j)
{
    return p->s.col_major ? &x[i + j * p->c.ld] : &x[i * p->c.ld + j];
}

static problem problem_new(const spec *s, tu_rng *rng, enum fill ab, enum fill c)
{
    problem p = {*s, {0}, {0}, {0}, NULL};
    p.a = stored_new(s->col_major, s->trans_a, s->M, s->K, s->pad);
    p.b = stored_new(s->col_major, s->trans_b, s->K, s->N, s->pad);
    p.c = stored_new(s->col_major, 0, s->M, s->N, s->pad);
    stored_fill(&p.a, rng, ab);
    stored_fill(&p.b, rng, ab);
    stored_fill(&p.c, rng, c);
    size_t bytes = smax(p.c.lines * p.c.ld, 1) * sizeof(float);
    p.c_before = malloc(bytes);
    ck_assert_ptr_nonnull(p.c_before);
    memcpy(p.c_before, p.c.x, bytes);
    return p;
}

static void problem_free(problem *p)
{
    free(p->a.x);
    free(p->b.x);
    free(p->c.x);
    free(p->c_before);
}

/* ref (M, N), row-major = alpha op(A) op(B) + beta C_before, in double;
 * beta == 0 ignores C_before (BLAS: it is not read). */
static double ref_elem(const problem *p, size_t i, size_t j)
{
    const spec *s = &p->s;
    double sum = 0.0;
    for (size_t k = 0; k < s->K; k++)
        sum += op_at(p->a.x, p->a.ld, s->col_major, s->trans_a, i, k) *
               op_at(p->b.x, p->b.ld, s->col_major, s->trans_b, k, j);
    double c0 = s->beta == 0.0f ? 0.0 : (double)*c_elem(p, p->c_before, i, j);
    return (s->alpha == 0.0f ? 0.0 : (double)s->alpha * sum) + (double)s->beta * c0;
}

static void describe(const spec *s, char *buf, size_t n)
{
    snprintf(buf, n, "%s tA=%d tB=%d M=%zu N=%zu K=%zu pad=%zu alpha=%g beta=%g",
             s->col_major ? "col" : "row", s->trans_a, s->trans_b, s->M, s->N, s->K,
             s->pad, (double)s->alpha, (double)s->beta);
}

/* C equals the reference exactly, and C's padding is bitwise unchanged.
 * Plain comparisons, one ck_assert at the end: each Check assertion costs a
 * write to the runner, far more than the comparison. */
static void check_exact(const problem *p, const char *what)
{
    char buf[200];
    size_t bad_i = SIZE_MAX, bad_j = 0, bad_line = SIZE_MAX;
    double want = 0.0, got = 0.0;
    for (size_t i = 0; i < p->s.M && bad_i == SIZE_MAX; i++) {
        for (size_t j = 0; j < p->s.N; j++) {
            want = ref_elem(p, i, j);
            got = *c_elem(p, p->c.x, i, j);
            if (got != want) {
                bad_i = i;
                bad_j = j;
                break;
            }
        }
    }
    for (size_t l = 0; l < p->c.lines && bad_line == SIZE_MAX; l++)
        if (memcmp(p->c.x + l * p->c.ld + p->c.len, p->c_before + l * p->c.ld + p->c.len,
                   (p->c.ld - p->c.len) * sizeof(float)) != 0)
            bad_line = l;
    if (bad_i == SIZE_MAX && bad_line == SIZE_MAX)
        return;
    describe(&p->s, buf, sizeof buf);
    ck_assert_msg(bad_i == SIZE_MAX, "%s: %s: C[%zu][%zu] = %.9g, want %.9g",
                  what, buf, bad_i, bad_j, got, want);
    ck_assert_msg(0, "%s: %s: padding of C line %zu changed", what, buf, bad_line);
}

static void run_engine(const bpi_gemm_env *env, problem *p)
{
    const spec *s = &p->s;
    ck_assert_int_eq(s->col_major, 0);
    bpi_sgemm(env, s->trans_a, s->trans_b, s->M, s->N, s->K, s->alpha,
              p->a.x, p->a.ld, p->b.x, p->b.ld, s->beta, p->c.x, p->c.ld);
}

/* Build, run on env, check exactly, free: integer data. */
static void engine_case(const bpi_gemm_env *env, const spec *s, tu_rng *rng, const char *what)
{
    problem p = problem_new(s, rng, FILL_INT, FILL_INT);
    run_engine(env, &p);
    check_exact(&p, what);
    problem_free(&p);
}

/* The blocking a context gets on a typical core (32 KiB / 1 MiB / 8 MiB),
 * so tests do not depend on this machine's caches. */
static bpi_gemm_blocking typical_blocking(void)
{
    bp_topology_info topo = {0};
    topo.l1d_bytes = 32 * 1024;
    topo.l2_bytes = 1024 * 1024;
    topo.l3_bytes = 8 * 1024 * 1024;
    bpi_gemm_blocking blk;
    bpi_gemm_blocking_init(&blk, cur_ukr, &topo);
    return blk;
}

/* An env as a context builds it: workspace of bpi_gemm_workspace_floats(). */
static bpi_gemm_env env_new(bpi_gemm_blocking blk, int n_threads)
{
    bpi_gemm_env env = {cur_ukr, blk, n_threads, NULL};
    size_t bytes = bpi_gemm_workspace_floats(cur_ukr, &blk, n_threads) * sizeof(float);
    bytes = (bytes + 63) / 64 * 64;
    env.workspace = aligned_alloc(64, bytes);
    ck_assert_ptr_nonnull(env.workspace);
    return env;
}

static bpi_gemm_env env_small(size_t mc, size_t kc, size_t nc, int n_threads)
{
    bpi_gemm_blocking blk = {mc, kc, nc};
    return env_new(blk, n_threads);
}

static void env_free(bpi_gemm_env *env)
{
    free(env->workspace);
    env->workspace = NULL;
}

/* ------------------------------------------------------- blocking, kernel */

static void check_blocking(const bpi_gemm_blocking *blk, const bpi_ukr *u)
{
    ck_assert_uint_ge(blk->kc, 64);
    ck_assert_uint_le(blk->kc, 1024);
    ck_assert_uint_ge(blk->mc, 32);
    ck_assert_uint_le(blk->mc, 1024);
    ck_assert_uint_ge(blk->nc, 256);
    ck_assert_uint_le(blk->nc, 8192);
    ck_assert_uint_eq(blk->mc % u->mr, 0);
    ck_assert_uint_eq(blk->nc % u->nr, 0);
}

START_TEST(test_blocking)
{
    const bpi_ukr *u = cur_ukr;
    ck_assert_ptr_nonnull(u);
    ck_assert(u->fn != NULL);
    ck_assert_uint_ge(u->mr, 1);
    ck_assert_uint_le(u->mr, BPI_UKR_MR_MAX);
    ck_assert_uint_ge(u->nr, 1);
    ck_assert_uint_le(u->nr, BPI_UKR_NR_MAX);

    /* Unknown caches (0) take the documented fallbacks 32 KiB / 1 MiB / 8 MiB. */
    bp_topology_info unknown = {0};
    bpi_gemm_blocking fallback, typical = typical_blocking();
    bpi_gemm_blocking_init(&fallback, u, &unknown);
    ck_assert_uint_eq(fallback.kc, typical.kc);
    ck_assert_uint_eq(fallback.mc, typical.mc);
    ck_assert_uint_eq(fallback.nc, typical.nc);
    check_blocking(&typical, u);
    /* KC: (MR + NR) KC 4 bytes within twice L1d. */
    ck_assert_uint_le((u->mr + u->nr) * typical.kc * 4, 2 * 32 * 1024);

    /* Absurd sizes clamp into range. */
    bp_topology_info tiny = {0}, huge = {0};
    tiny.l1d_bytes = tiny.l2_bytes = tiny.l3_bytes = 1024;
    huge.l1d_bytes = huge.l2_bytes = huge.l3_bytes = (size_t)1 << 40;
    bpi_gemm_blocking blk;
    bpi_gemm_blocking_init(&blk, u, &tiny);
    check_blocking(&blk, u);
    bpi_gemm_blocking_init(&blk, u, &huge);
    check_blocking(&blk, u);

    /* Workspace: at least an A block and a B micro-panel per thread. */
    size_t w1 = bpi_gemm_workspace_floats(u, &typical, 1);
    size_t w3 = bpi_gemm_workspace_floats(u, &typical, 3);
    ck_assert_uint_ge(w1, typical.mc * typical.kc + typical.kc * u->nr);
    ck_assert_uint_ge(w3 - w1, 2 * (typical.mc * typical.kc + typical.kc * u->nr));
    ck_assert_uint_eq(bpi_gemm_workspace_floats(u, &typical, 0), w1);
}
END_TEST

/* The kernel alone: one full tile against the reference, beta = 0 not
 * reading a NaN C, kc = 0 giving beta C. */
START_TEST(test_kernel)
{
    const bpi_ukr *u = cur_ukr;
    tu_rng rng;
    tu_seed(&rng, 1);
    size_t kc = 9, mr = u->mr, nr = u->nr, ldc = nr + 3;
    float a[BPI_UKR_MR_MAX * 9], b[9 * BPI_UKR_NR_MAX], c[BPI_UKR_MR_MAX * (BPI_UKR_NR_MAX + 3)];
    for (size_t i = 0; i < mr * kc; i++)
        a[i] = tu_int_float(&rng, -4, 4);
    for (size_t i = 0; i < kc * nr; i++)
        b[i] = tu_int_float(&rng, -4, 4);
    for (size_t i = 0; i < mr * ldc; i++)
        c[i] = NAN;
    u->fn(kc, a, b, c, ldc, 0.5f, 0.0f);
    for (size_t i = 0; i < mr; i++) {
        for (size_t j = 0; j < nr; j++) {
            double want = 0.0;
            for (size_t p = 0; p < kc; p++)
                want += (double)a[p * mr + i] * b[p * nr + j];
            ck_assert_msg(c[i * ldc + j] == 0.5 * want, "%s: c[%zu][%zu]", u->name, i, j);
            c[i * ldc + j] = 3.0f;
        }
        ck_assert(isnan(c[i * ldc + nr])); /* outside the tile: untouched */
    }
    u->fn(0, a, b, c, ldc, 1.0f, -1.0f);
    for (size_t i = 0; i < mr; i++)
        for (size_t j = 0; j < nr; j++)
            ck_assert(c[i * ldc + j] == -3.0f);
}
END_TEST

/* fn_direct_b (ukr.h) on B where it lies, rows ldb apart, gives fn's bits
 * on the packed copy of the same B, on real data (a different order of
 * the FMAs would show), for beta 0 (NaN in C not read) and not, and raises
 * the lanes to the tile's largest |C| (and never lowers them). */
START_TEST(test_kernel_direct_b)
{
    const bpi_ukr *u = cur_ukr;
    if (!u->fn_direct_b)
        return;
    tu_rng rng;
    tu_seed(&rng, 21);
    enum { KC = 37, LDB = BPI_UKR_NR_MAX + 5, LDC = BPI_UKR_NR_MAX + 3 };
    size_t mr = u->mr, nr = u->nr;
    float a[BPI_UKR_MR_MAX * KC], b[KC * BPI_UKR_NR_MAX], b_far[KC * LDB];
    float c_packed[BPI_UKR_MR_MAX * LDC], c_direct[BPI_UKR_MR_MAX * LDC];
    for (size_t i = 0; i < mr * KC; i++)
        a[i] = (float)tu_uniform(&rng, -1.0, 1.0);
    for (size_t p = 0; p < KC; p++)
        for (size_t j = 0; j < LDB; j++) {
            b_far[p * LDB + j] = j < nr ? (float)tu_uniform(&rng, -1.0, 1.0) : NAN;
            if (j < nr)
                b[p * nr + j] = b_far[p * LDB + j];
        }
    for (int round = 0; round < 2; round++) {
        float beta = round ? 0.75f : 0.0f;
        for (size_t i = 0; i < mr * LDC; i++)
            c_packed[i] = round ? (float)tu_uniform(&rng, -1.0, 1.0) : NAN;
        memcpy(c_direct, c_packed, sizeof c_packed);
        uint32_t lanes[16] = {0}, want = 0;
        lanes[3] = round ? 0u : 0x7f000000u; /* a larger start value stays */
        u->fn(KC, a, b, c_packed, LDC, -1.5f, beta);
        u->fn_direct_b(KC, a, b_far, LDB, c_direct, LDC, -1.5f, beta, lanes, NULL);
        ck_assert_msg(memcmp(c_packed, c_direct, sizeof c_packed) == 0,
                      "%s: direct B differs from packed (beta %g)", u->name, (double)beta);
        for (size_t i = 0; i < mr; i++)
            for (size_t j = 0; j < nr; j++)
                want = bpi_abs_bits(c_direct[i * LDC + j]) > want
                           ? bpi_abs_bits(c_direct[i * LDC + j]) : want;
        uint32_t got = 0;
        for (int l = 0; l < 16; l++)
            got = lanes[l] > got ? lanes[l] : got;
        ck_assert_uint_eq(got, round ? want : (want > 0x7f000000u ? want : 0x7f000000u));
        u->fn_direct_b(KC, a, b_far, LDB, c_direct, LDC, 1.0f, 1.0f, NULL, b_far); /* no lanes */
    }
}
END_TEST

/* n floats ending exactly where an inaccessible page begins, so that a
 * read past the end faults (masked loads must not touch what they mask
 * out). *base and *bytes describe the allocation, for guarded_free(). */
static float *guarded_floats(size_t n, void **base, size_t *bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (n * sizeof(float) + page - 1) / page * page;
    *bytes = data + page;
    ck_assert(posix_memalign(base, page, *bytes) == 0);
    ck_assert(mprotect((char *)*base + data, page, PROT_NONE) == 0);
    return (float *)(void *)((char *)*base + data) - n;
}

static void guarded_free(void *base, size_t bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    ck_assert(mprotect((char *)base + bytes - page, page, PROT_READ | PROT_WRITE) == 0);
    free(base);
}

/* The kernel's own packing routines (ukr.h; NULL ones are the engine's,
 * tested through every GEMM below): each against the definition, for
 * depths kc around the vector widths (tails) and leading dimensions that do
 * and do not share cache sets. The padding around dst must stay untouched,
 * and nothing beyond the source may be read (it ends at a guard page). */
START_TEST(test_pack)
{
    const bpi_ukr *u = cur_ukr;
    const struct { bpi_pack_fn fn; size_t R; int cols; const char *name; } packs[] = {
        {u->pack_a_rows, u->mr, 0, "pack_a_rows"}, {u->pack_a_cols, u->mr, 1, "pack_a_cols"},
        {u->pack_b_rows, u->nr, 0, "pack_b_rows"}, {u->pack_b_cols, u->nr, 1, "pack_b_cols"},
    };
    static const size_t kcs[] = {1, 3, 8, 15, 16, 17, 31, 33, 48, 208};
    static const size_t pads[] = {0, 1, 5, 1024};
    const size_t guard = 16;
    for (size_t k = 0; k < sizeof packs / sizeof packs[0]; k++) {
        if (!packs[k].fn)
            continue;
        size_t R = packs[k].R;
        for (size_t ki = 0; ki < sizeof kcs / sizeof kcs[0]; ki++)
            for (size_t pi = 0; pi < sizeof pads / sizeof pads[0]; pi++) {
                size_t kc = kcs[ki];
                /* cols: R lines of kc along p; rows: kc lines of R */
                size_t ld = (packs[k].cols ? kc : R) + pads[pi];
                size_t lines = packs[k].cols ? R : kc;
                /* the last line holds only what is read: R or kc floats */
                size_t n_x = (lines - 1) * ld + (packs[k].cols ? kc : R);
                void *x_base;
                size_t x_bytes;
                float *x = guarded_floats(n_x, &x_base, &x_bytes);
                float *dst = malloc(sizeof(float) * (kc * R + 2 * guard));
                ck_assert(dst);
                for (size_t i = 0; i < n_x; i++)
                    x[i] = (float)i;
                for (size_t i = 0; i < kc * R + 2 * guard; i++)
                    dst[i] = -1.0f;
                packs[k].fn(x, ld, kc, dst + guard);
                for (size_t p = 0; p < kc; p++)
                    for (size_t r = 0; r < R; r++) {
                        float want = packs[k].cols ? x[r * ld + p] : x[p * ld + r];
                        ck_assert_msg(dst[guard + p * R + r] == want,
                                      "%s %s kc %zu ld %zu: [%zu][%zu] = %g, want %g", u->name,
                                      packs[k].name, kc, ld, p, r, dst[guard + p * R + r], want);
                    }
                for (size_t i = 0; i < guard; i++)
                    ck_assert(dst[i] == -1.0f && dst[guard + kc * R + i] == -1.0f);
                guarded_free(x_base, x_bytes);
                free(dst);
            }
    }
}
END_TEST

/* ----------------------------------------------------------- engine shapes */

/* Every M in 1..2 MR, N in 1..2 NR, K in {1, 2, 7, 17}, all transposes;
 * (alpha, beta) cycling through all 16 pairs of {0, 1, -1, 0.5}. */
START_TEST(test_small_shapes)
{
    const bpi_ukr *u = cur_ukr;
    bpi_gemm_env env = env_new(typical_blocking(), 1);
    static const size_t ks[] = {1, 2, 7, 17};
    tu_rng rng;
    tu_seed(&rng, 2);
    size_t n = 0;
    for (size_t M = 1; M <= 2 * u->mr; M++)
        for (size_t N = 1; N <= 2 * u->nr; N++)
            for (size_t k = 0; k < 4; k++)
                for (int t = 0; t < 4; t++, n++) {
                    spec s = {0, t & 1, t >> 1, M, N, ks[k], n % 3,
                              scalars[(n / 4) % 4], scalars[n % 4]};
                    engine_case(&env, &s, &rng, "small");
                }
    env_free(&env);
}
END_TEST

/* Primes, 1x1x1 and padded leading dimensions (NaN in the padding would
 * show up in C), all transposes, all 16 (alpha, beta). */
START_TEST(test_primes_alpha_beta)
{
    bpi_gemm_env env = env_new(typical_blocking(), 1);
    static const size_t shapes[][3] = {{37, 53, 71}, {97, 13, 101}, {1, 1, 1}, {5, 3, 2}};
    tu_rng rng;
    tu_seed(&rng, 3);
    for (size_t sh = 0; sh < 4; sh++)
        for (int t = 0; t < 4; t++)
            for (int ab = 0; ab < 16; ab++) {
                spec s = {0, t & 1, t >> 1, shapes[sh][0], shapes[sh][1], shapes[sh][2],
                          (size_t)(ab % 3) * 5, scalars[ab / 4], scalars[ab % 4]};
                engine_case(&env, &s, &rng, "primes");
            }
    env_free(&env);
}
END_TEST

/* Small forced blocking: K = KC - 1, KC, KC + 1, several K blocks;
 * M = MC +- 1, N = NC +- 1, several blocks; also mc, nc that are not
 * multiples of MR, NR. On 1, 2 and 3 threads. */
START_TEST(test_forced_blocking)
{
    static const size_t blks[][3] = {{12, 16, 32}, {10, 7, 20}};
    tu_rng rng;
    tu_seed(&rng, 4);
    size_t n = 0;
    for (size_t bi = 0; bi < 2; bi++) {
        size_t mc = blks[bi][0], kc = blks[bi][1], nc = blks[bi][2];
        const size_t Ms[] = {mc - 1, mc, mc + 1, 2 * mc + 3};
        const size_t Ns[] = {nc - 1, nc, nc + 1, 2 * nc + 5};
        const size_t Ks[] = {kc - 1, kc, kc + 1, 3 * kc + 5};
        for (int th = 0; th < TU_N_THREAD_COUNTS; th++) {
            bpi_gemm_env env = env_small(mc, kc, nc, tu_thread_counts[th]);
            for (size_t i = 0; i < 4; i++)
                for (size_t j = 0; j < 4; j++)
                    for (size_t k = 0; k < 4; k++, n++) {
                        spec s = {0, (int)(n & 1), (int)((n >> 1) & 1), Ms[i], Ns[j], Ks[k],
                                  n % 2, scalars[n % 4], scalars[(n / 4) % 4]};
                        engine_case(&env, &s, &rng, "forced blocking");
                    }
            /* Big enough that the engine really uses the threads (12.6
             * MFLOP), with few K blocks: under valgrind every barrier of a
             * 2-thread team costs milliseconds of libgomp spinning. */
            spec big = {0, 1, 0, 300, 300, 70, 1, 0.5f, -1.0f};
            engine_case(&env, &big, &rng, "forced blocking, threaded");
            env_free(&env);
        }
    }
}
END_TEST

/* The typical blocking at its edges: K = KC +- 1, M = MC +- 1, N = NC +- 1. */
START_TEST(test_typical_blocking_edges)
{
    bpi_gemm_blocking blk = typical_blocking();
    tu_rng rng;
    tu_seed(&rng, 5);
    bpi_gemm_env env = env_new(blk, 2);
    for (size_t d = 0; d < 3; d++) {
        spec k_edge = {0, (int)(d & 1), 0, 9, 17, blk.kc - 1 + d, 1, 1.0f, 0.5f};
        engine_case(&env, &k_edge, &rng, "K edge");
    }
    spec mn_edges[] = {
        {0, 0, 1, blk.mc - 1, blk.nc + 1, 3, 0, -1.0f, 1.0f},
        {0, 1, 0, blk.mc + 1, blk.nc - 1, 2, 2, 0.5f, 0.0f},
    };
    for (size_t i = 0; i < 2; i++)
        engine_case(&env, &mn_edges[i], &rng, "M/N edge");
    env_free(&env);
}
END_TEST

/* beta = 0 overwrites a NaN C; alpha = 0 and K = 0 never read A or B. */
START_TEST(test_nan_and_zero)
{
    bpi_gemm_env env = env_new(typical_blocking(), 2);
    tu_rng rng;
    tu_seed(&rng, 6);
    for (int t = 0; t < 4; t++) {
        for (int a = 0; a < 4; a++) {
            spec s = {0, t & 1, t >> 1, 13, 29, 11, (size_t)t, scalars[a], 0.0f};
            problem p = problem_new(&s, &rng, FILL_INT, FILL_NAN);
            run_engine(&env, &p);
            check_exact(&p, "beta = 0, C NaN");
            problem_free(&p);
        }
        for (int b = 0; b < 4; b++) {
            spec s = {0, t & 1, t >> 1, 13, 29, 11, 1, 0.0f, scalars[b]};
            problem p = problem_new(&s, &rng, FILL_NAN, FILL_INT);
            run_engine(&env, &p);
            check_exact(&p, "alpha = 0, A and B NaN");
            problem_free(&p);
        }
    }
    /* K = 0: C = beta C; A and B are NULL. */
    for (int b = 0; b < 4; b++) {
        spec s = {0, 0, 0, 7, 9, 0, 2, 1.0f, scalars[b]};
        problem p = problem_new(&s, &rng, FILL_INT, b == 0 ? FILL_NAN : FILL_INT);
        bpi_sgemm(&env, 0, 0, 7, 9, 0, 1.0f, NULL, 1, NULL, 9, scalars[b], p.c.x, p.c.ld);
        check_exact(&p, "K = 0");
        problem_free(&p);
    }
    env_free(&env);
}
END_TEST

/* M = 0 or N = 0: C (and everything else) untouched. */
START_TEST(test_empty)
{
    bpi_gemm_env env = env_new(typical_blocking(), 2);
    float c[12];
    for (int i = 0; i < 12; i++)
        c[i] = (float)i;
    bpi_sgemm(&env, 0, 0, 0, 3, 4, 1.0f, NULL, 4, NULL, 3, 0.0f, c, 3);
    bpi_sgemm(&env, 1, 1, 4, 0, 4, 1.0f, NULL, 4, NULL, 4, 0.0f, c, 3);
    bpi_sgemm(&env, 0, 0, 0, 0, 0, 0.0f, NULL, 1, NULL, 1, 0.0f, NULL, 1);
    for (int i = 0; i < 12; i++)
        ck_assert(c[i] == (float)i);
    env_free(&env);
}
END_TEST

/* ------------------------------------------------------------ large sizes */

/* C = op(A) op(B) (alpha 1, beta 0) on real data in [-1, 1], checked by
 * y = C t against z = op(A) (op(B) t) in double for a random t.
 * Tolerance: each C_ij is a float sum of K products, in K blocks, so
 * |C_ij - exact| <= gamma * (|op(A)| |op(B)|)_ij with gamma = (K + blocks) u
 * / (1 - ...) <= 2 K u (u = 2^-24; the standard recursive-summation bound).
 * Hence |y_i - z_i| <= 2 K u sum_j (|op(A)| |op(B)|)_ij |t_j| + (double
 * rounding, ~1e-16 relative). A wrong or missing element shifts y_i by about
 * |C_ij t_j|, ~1e3 times this bound for K <= 700. */
static void projection_check(const bpi_gemm_env *env, const spec *s, tu_rng *rng)
{
    problem p = problem_new(s, rng, FILL_REAL, FILL_NAN);
    run_engine(env, &p);
    double *t = malloc(s->N * sizeof(double));
    double *bt = malloc(s->K * sizeof(double)), *abs_bt = malloc(s->K * sizeof(double));
    ck_assert(t && bt && abs_bt);
    for (size_t j = 0; j < s->N; j++)
        t[j] = tu_uniform(rng, -1.0, 1.0);
    for (size_t k = 0; k < s->K; k++) {
        bt[k] = abs_bt[k] = 0.0;
        for (size_t j = 0; j < s->N; j++) {
            double bkj = op_at(p.b.x, p.b.ld, 0, s->trans_b, k, j);
            bt[k] += bkj * t[j];
            abs_bt[k] += fabs(bkj) * fabs(t[j]);
        }
    }
    for (size_t i = 0; i < s->M; i++) {
        double y = 0.0, z = 0.0, bound = 0.0;
        for (size_t j = 0; j < s->N; j++)
            y += (double)p.c.x[i * p.c.ld + j] * t[j];
        for (size_t k = 0; k < s->K; k++) {
            double aik = op_at(p.a.x, p.a.ld, 0, s->trans_a, i, k);
            z += aik * bt[k];
            bound += fabs(aik) * abs_bt[k];
        }
        double tol = 2.0 * (double)s->K * 0x1p-24 * bound + 1e-12;
        if (!(fabs(y - z) <= tol))
            ck_assert_msg(0, "row %zu of %zux%zux%zu: |y - z| = %g > %g",
                          i, s->M, s->N, s->K, fabs(y - z), tol);
    }
    free(t);
    free(bt);
    free(abs_bt);
    problem_free(&p);
}

START_TEST(test_large_projection)
{
    bpi_gemm_env env = env_new(typical_blocking(), 2);
    tu_rng rng;
    tu_seed(&rng, 7);
    spec s1 = {0, 1, 1, 300, 500, 700, 3, 1.0f, 0.0f};
    spec s2 = {0, 0, 0, 1000, 1000, 300, 0, 1.0f, 0.0f};
    projection_check(&env, &s1, &rng);
    projection_check(&env, &s2, &rng);
    env_free(&env);
}
END_TEST

/* ------------------------------------------------------------- direct B */

/* Where B is read in place (op(B) = B and at most
 * BPI_GEMM_DIRECT_B_MAX_PANELS A micro-panels per strip) and where it is
 * packed (more rows), every element of C has the same bits: the first m
 * rows of a tall product (packed) against the product of just those rows
 * (in place), on real data, with several K blocks, a narrow last strip
 * (packed either way), an M edge, alpha and beta, abs-max scanning and 1-3
 * threads. (test_small_shapes checks the in-place path against the
 * reference, exactly.) */
START_TEST(test_direct_b_bits)
{
    const bpi_ukr *u = cur_ukr;
    tu_rng rng;
    tu_seed(&rng, 22);
    size_t tall = (BPI_GEMM_DIRECT_B_MAX_PANELS + 2) * u->mr + 3;
    const size_t ms[] = {1, u->mr, u->mr + 5, BPI_GEMM_DIRECT_B_MAX_PANELS * u->mr};
    const size_t ns[] = {2 * u->nr, 3 * u->nr + 7};
    bpi_gemm_blocking blk = {tall + u->mr, 24, 4 * u->nr}; /* K blocks of 24 */
    for (size_t ni = 0; ni < 2; ni++) {
        spec ts = {0, (int)ni, 0, tall, ns[ni], 61, 3, 0.5f, -1.0f};
        problem p = problem_new(&ts, &rng, FILL_REAL, FILL_REAL);
        bpi_gemm_env env1 = env_new(blk, 1);
        run_engine(&env1, &p);
        env_free(&env1);
        for (size_t mi = 0; mi < 4; mi++)
            for (int th = 0; th < TU_N_THREAD_COUNTS; th++) {
                size_t m = ms[mi], ldc = p.c.ld;
                float *c = malloc(m * ldc * sizeof *c);
                ck_assert_ptr_nonnull(c);
                memcpy(c, p.c_before, m * ldc * sizeof *c);
                bpi_gemm_env env = env_new(blk, tu_thread_counts[th]);
                uint32_t got = 0, want = 0;
                /* op(A)'s first m rows: A's first m rows, or columns (lda kept) */
                bpi_sgemm_absmax(&env, ts.trans_a, 0, m, ts.N, ts.K, ts.alpha, p.a.x, p.a.ld,
                                 p.b.x, p.b.ld, ts.beta, c, ldc, &got);
                env_free(&env);
                for (size_t i = 0; i < m; i++)
                    for (size_t j = 0; j < ts.N; j++)
                        want = bpi_abs_bits(p.c.x[i * ldc + j]) > want
                                   ? bpi_abs_bits(p.c.x[i * ldc + j]) : want;
                ck_assert_msg(memcmp(c, p.c.x, m * ldc * sizeof *c) == 0,
                              "m %zu, N %zu, tA %d, %d threads: rows differ from the tall "
                              "product's", m, ts.N, ts.trans_a, tu_thread_counts[th]);
                ck_assert_uint_eq(got, want);
                free(c);
            }
        problem_free(&p);
    }
}
END_TEST

/* ------------------------------------------------------ broadcast B^T */

/* The kernel whose fn_bcast_b counting_bcast() forwards to, and how many
 * tiles it computed (threads add to it). */
static const bpi_ukr *bcast_inner;
static long bcast_calls;

static void counting_bcast(size_t kc, size_t mv, const float *restrict a,
                           const float *restrict b, size_t ldb, size_t nb, float *restrict s,
                           size_t lds, float alpha, float beta)
{
    __atomic_fetch_add(&bcast_calls, 1, __ATOMIC_RELAXED);
    bcast_inner->fn_bcast_b(kc, mv, a, b, ldb, nb, s, lds, alpha, beta);
}

/* Where op(B) = B^T and a thread has 17..128 rows (or more when B is larger
 * than the cache share), the engine computes C transposed with fn_bcast_b
 * (gemm.c: bcast_rows). C is exact against the reference (integer data,
 * beta = 0 over NaN), and on real data has the bits of the packed paths
 * (the same kernel without fn_bcast_b), with the same abs-max, on 1-3
 * threads: M edges inside a vector, one to three row groups (the last
 * narrower), N below a tile and between tiles, several K blocks,
 * transposed A, C held in several passes when the thread's area is small
 * (the small blockings), and B too large for the cache share (3 groups).
 * The wrapper counts the tiles, so a case meant for this path cannot pass
 * without taking it. */
START_TEST(test_bcast_bits)
{
    const bpi_ukr *u = cur_ukr;
    if (!u->fn_bcast_b)
        return; /* the packed paths only: the other tests cover them */
    bpi_ukr counted = *u, plain = *u;
    counted.fn_bcast_b = counting_bcast;
    plain.fn_bcast_b = NULL;
    bcast_inner = u;
    tu_rng rng;
    tu_seed(&rng, 31);
    const bpi_gemm_blocking blks[3] = {{12, 48, 64}, {256, 48, 96}, typical_blocking()};
    const struct { size_t M, N, K; int trans_a, blk, used; } cases[] = {
        {17, 5, 1, 0, 0, 1},     /* one column short of a tile, K = 1 */
        {31, 47, 49, 1, 0, 1},
        {33, 13, 99, 0, 0, 1},   /* 3 K blocks */
        {48, 97, 100, 0, 0, 1},
        {64, 200, 97, 1, 0, 1},  /* room for one tile per pass over C */
        {63, 61, 150, 0, 1, 1},
        {100, 250, 99, 1, 1, 1}, /* 64 + 36 rows, passes of 96 columns */
        {128, 193, 60, 0, 1, 1},
        {150, 100, 99, 0, 1, 1}, /* B beyond the cache share: 3 groups */
        {40, 300, 600, 0, 2, 1},
        {129, 97, 300, 1, 2, 0}, /* packed on 1 thread, by bcast_rows when split */
    };
    const float ab[4][2] = {{1.0f, 0.0f}, {0.5f, -1.0f}, {-1.0f, 0.5f}, {1.0f, 1.0f}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int th = 0; th < TU_N_THREAD_COUNTS; th++) {
            spec s = {0, cases[k].trans_a, 1, cases[k].M, cases[k].N, cases[k].K, k % 3,
                      ab[k % 4][0], ab[k % 4][1]};
            char buf[200];
            describe(&s, buf, sizeof buf);
            bpi_gemm_env env = env_new(blks[cases[k].blk], tu_thread_counts[th]);
            /* exact */
            env.ukr = &counted;
            bcast_calls = 0;
            problem p = problem_new(&s, &rng, FILL_INT, s.beta == 0.0f ? FILL_NAN : FILL_INT);
            run_engine(&env, &p);
            check_exact(&p, "broadcast B^T");
            problem_free(&p);
            if (cases[k].used)
                ck_assert_msg(bcast_calls > 0, "%s, %d threads: fn_bcast_b not used", buf,
                              tu_thread_counts[th]);
            /* the packed paths' bits */
            p = problem_new(&s, &rng, FILL_REAL, FILL_REAL);
            size_t bytes = p.c.lines * p.c.ld * sizeof(float);
            float *want = malloc(bytes);
            ck_assert_ptr_nonnull(want);
            uint32_t want_max = 0, got_max = 0;
            env.ukr = &plain;
            bpi_sgemm_absmax(&env, s.trans_a, 1, s.M, s.N, s.K, s.alpha, p.a.x, p.a.ld, p.b.x,
                             p.b.ld, s.beta, p.c.x, p.c.ld, &want_max);
            memcpy(want, p.c.x, bytes);
            memcpy(p.c.x, p.c_before, bytes);
            env.ukr = &counted;
            bpi_sgemm_absmax(&env, s.trans_a, 1, s.M, s.N, s.K, s.alpha, p.a.x, p.a.ld, p.b.x,
                             p.b.ld, s.beta, p.c.x, p.c.ld, &got_max);
            ck_assert_msg(memcmp(want, p.c.x, bytes) == 0,
                          "%s, %d threads: C differs from the packed paths'", buf,
                          tu_thread_counts[th]);
            ck_assert_msg(got_max == want_max, "%s, %d threads: abs-max %#x, want %#x", buf,
                          tu_thread_counts[th], got_max, want_max);
            free(want);
            problem_free(&p);
            env.ukr = u;
            env_free(&env);
        }
}
END_TEST

/* ------------------------------------------------------------- threading */

/* C computed on 1 thread, then on every count in tu_thread_counts, on real
 * data (rounding differences would show): identical bytes. */
static void threads_bitwise(bpi_gemm_blocking blk, const spec *s, tu_rng *rng)
{
    problem p = problem_new(s, rng, FILL_REAL, FILL_REAL);
    size_t bytes = p.c.lines * p.c.ld * sizeof(float);
    float *first = malloc(bytes);
    ck_assert_ptr_nonnull(first);
    for (int th = 0; th < TU_N_THREAD_COUNTS; th++) {
        bpi_gemm_env env = env_new(blk, tu_thread_counts[th]);
        memcpy(p.c.x, p.c_before, bytes);
        run_engine(&env, &p);
        if (th == 0)
            memcpy(first, p.c.x, bytes);
        char buf[200];
        describe(s, buf, sizeof buf);
        ck_assert_msg(memcmp(first, p.c.x, bytes) == 0, "%s: %d threads differ from 1",
                      buf, tu_thread_counts[th]);
        env_free(&env);
    }
    free(first);
    problem_free(&p);
}

START_TEST(test_threads_bitwise)
{
    tu_rng rng;
    tu_seed(&rng, 8);
    bpi_gemm_blocking typical = typical_blocking(), small = {12, 48, 64};
    /* Shapes above the engine's threading threshold (0.6 MFLOP per
     * thread) except the first two; the small blocking gives several NC
     * and MC blocks and K blocks per call, but few (valgrind is slow). */
    const struct { spec s; int small; } cases[] = {
        {{0, 0, 0, 37, 53, 71, 1, 1.0f, 0.0f}, 0},
        {{0, 1, 1, 97, 13, 101, 0, -1.0f, 0.5f}, 1},
        {{0, 0, 1, 200, 300, 250, 2, 0.5f, 1.0f}, 0},   /* split over M */
        {{0, 0, 1, 200, 300, 250, 2, 0.5f, 1.0f}, 1},
        {{0, 1, 0, 6, 2100, 500, 0, 1.0f, -1.0f}, 0},   /* few rows: split over N */
        {{0, 0, 1, 64, 1000, 300, 0, 1.0f, 0.0f}, 0},   /* an MLP forward, split over N */
        /* N = 256 on 2 threads: 128 + 128 columns, a 32-wide strip inside each share */
        {{0, 0, 1, 64, 256, 200, 0, 1.0f, 0.0f}, 0},
        {{0, 1, 0, 300, 1000, 64, 1, 1.0f, 1.0f}, 0},   /* a weight gradient: strip groups */
        {{0, 0, 0, 161, 203, 199, 1, 1.0f, 0.5f}, 1},
        {{0, 1, 1, 161, 203, 199, 1, 1.0f, 0.5f}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        threads_bitwise(cases[i].small ? small : typical, &cases[i].s, &rng);
}
END_TEST

/* ------------------------------------------------------------ abs-max */

/* Largest |C| over the M x N result, as bits (the engine's encoding). */
static uint32_t naive_absmax(const problem *p)
{
    uint32_t m = 0;
    for (size_t i = 0; i < p->s.M; i++)
        for (size_t j = 0; j < p->s.N; j++) {
            uint32_t b = bpi_abs_bits(*c_elem(p, p->c.x, i, j));
            m = b > m ? b : m;
        }
    return m;
}

/* bpi_sgemm_absmax writes C bit for bit as bpi_sgemm does and raises
 * *absmax to exactly max |C| (never lowers it), on every path: several K
 * blocks (only the last is scanned), edge tiles, narrow strips, strip
 * groups, 1-3 threads, alpha = 0 and K = 0 (C = beta C), and results with
 * NaN and infinity, which sort above every finite value. Also as a team
 * of an enclosing parallel region. */
START_TEST(test_absmax)
{
    tu_rng rng;
    tu_seed(&rng, 12);
    bpi_gemm_blocking typical = typical_blocking(), small = {12, 48, 64};
    const struct { spec s; int small; enum fill ab; } cases[] = {
        {{0, 0, 1, 64, 300, 250, 0, 1.0f, 0.0f}, 1, FILL_REAL},   /* K blocks, edges */
        {{0, 1, 0, 300, 1000, 64, 1, 1.0f, 0.0f}, 0, FILL_REAL},  /* weight gradient */
        {{0, 1, 0, 37, 19, 5, 3, -2.0f, 0.5f}, 0, FILL_INT},      /* narrow, edge tiles */
        {{0, 0, 0, 9, 70, 33, 0, 1.0f, 1.0f}, 1, FILL_NAN},       /* NaN results */
        {{0, 0, 0, 13, 29, 11, 1, 0.0f, -0.5f}, 0, FILL_INT},     /* alpha = 0 */
        {{0, 0, 0, 13, 29, 0, 1, 1.0f, 0.0f}, 0, FILL_INT},       /* K = 0, beta = 0 */
        {{0, 0, 0, 13, 29, 0, 1, 1.0f, 1.0f}, 0, FILL_INT},       /* K = 0, beta = 1 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const spec *s = &cases[i].s;
        char buf[200];
        describe(s, buf, sizeof buf);
        problem p = problem_new(s, &rng, cases[i].ab, FILL_INT);
        size_t bytes = p.c.lines * p.c.ld * sizeof(float);
        float *plain = malloc(bytes);
        ck_assert_ptr_nonnull(plain);
        for (int th = 0; th < TU_N_THREAD_COUNTS; th++) {
            bpi_gemm_env env = env_new(cases[i].small ? small : typical, tu_thread_counts[th]);
            memcpy(p.c.x, p.c_before, bytes);
            run_engine(&env, &p);
            memcpy(plain, p.c.x, bytes);
            uint32_t want = naive_absmax(&p);
            memcpy(p.c.x, p.c_before, bytes);
            uint32_t got = 0;
            bpi_sgemm_absmax(&env, s->trans_a, s->trans_b, s->M, s->N, s->K, s->alpha, p.a.x,
                             p.a.ld, p.b.x, p.b.ld, s->beta, p.c.x, p.c.ld, &got);
            ck_assert_msg(memcmp(plain, p.c.x, bytes) == 0, "%s: C differs from bpi_sgemm",
                          buf);
            ck_assert_msg(got == want, "%s, %d threads: absmax %#x, want %#x", buf,
                          tu_thread_counts[th], got, want);
            if (cases[i].ab == FILL_NAN && s->alpha != 0.0f && s->K > 0)
                ck_assert_uint_ge(got, BPI_ABS_BITS_INF);
            /* only raised: a larger start value stays */
            memcpy(p.c.x, p.c_before, bytes);
            uint32_t high = 0x7f800001u;
            bpi_sgemm_absmax(&env, s->trans_a, s->trans_b, s->M, s->N, s->K, s->alpha, p.a.x,
                             p.a.ld, p.b.x, p.b.ld, s->beta, p.c.x, p.c.ld, &high);
            ck_assert_uint_eq(high, want > 0x7f800001u ? want : 0x7f800001u);
#if BP_HAVE_OPENMP
            /* as a team of tu_thread_counts[th] threads sharing *absmax */
            memcpy(p.c.x, p.c_before, bytes);
            uint32_t team_max = 0;
            bpi_barrier barrier;
#pragma omp parallel num_threads(tu_thread_counts[th])
            {
#pragma omp single
                bpi_barrier_init(&barrier, (unsigned)omp_get_num_threads());
                bpi_team team = {omp_get_thread_num(), omp_get_num_threads(), &barrier};
                bpi_sgemm_team_absmax(&env, &team, s->trans_a, s->trans_b, s->M, s->N, s->K,
                                      s->alpha, p.a.x, p.a.ld, p.b.x, p.b.ld, s->beta, p.c.x,
                                      p.c.ld, &team_max);
            }
            ck_assert_msg(team_max == want, "%s, team of %d: absmax %#x, want %#x", buf,
                          tu_thread_counts[th], team_max, want);
            ck_assert_msg(memcmp(plain, p.c.x, bytes) == 0, "%s: team's C differs", buf);
#endif
            env_free(&env);
        }
        free(plain);
        problem_free(&p);
    }
}
END_TEST

/* Wherever the largest |C| sits in a tile, it is found: op(A) row r (or
 * op(B) column c) scaled by 64 puts the maximum in row r (column c) of C,
 * for every row of an MR block and every column of an NR strip and its
 * 16-wide lanes, in full tiles and edge tiles alike. A scan that skipped a
 * row or a lane of the tile would miss it here. */
START_TEST(test_absmax_positions)
{
    tu_rng rng;
    tu_seed(&rng, 13);
    size_t mr = cur_ukr->mr, nr = cur_ukr->nr;
    bpi_gemm_env env = env_new(typical_blocking(), 1);
    spec s = {0, 1, 0, 2 * mr + 3, 2 * nr + 5, 7, 0, 1.0f, 0.0f}; /* TN, as dW */
    for (int by_col = 0; by_col < 2; by_col++) {
        size_t n = by_col ? s.N : s.M;
        for (size_t at = 0; at < n; at++) {
            problem p = problem_new(&s, &rng, FILL_INT, FILL_INT);
            for (size_t k = 0; k < s.K; k++) { /* A is (K, M), B is (K, N) */
                float *x = by_col ? &p.b.x[k * p.b.ld + at] : &p.a.x[k * p.a.ld + at];
                *x = *x == 0.0f ? 64.0f : 64.0f * *x;
            }
            uint32_t got = 0;
            bpi_sgemm_absmax(&env, s.trans_a, s.trans_b, s.M, s.N, s.K, s.alpha, p.a.x, p.a.ld,
                             p.b.x, p.b.ld, s.beta, p.c.x, p.c.ld, &got);
            uint32_t want = naive_absmax(&p);
            ck_assert_msg(got == want, "maximum in %s %zu: absmax %#x, want %#x",
                          by_col ? "column" : "row", at, got, want);
            problem_free(&p);
        }
    }
    env_free(&env);
}
END_TEST

/* The epilogue's post step in the tests: out = 3 C + (i N + j) element by
 * element (so a wrong block position changes the result), and a count of
 * the visits of every element (so a block run twice or skipped shows). */
typedef struct epi_probe {
    float *out;
    int *visits;
    size_t N;
} epi_probe;

static void probe_post(const void *ctx, const float *c, size_t ldc, size_t i0, size_t j0,
                       size_t h, size_t w)
{
    const epi_probe *p = ctx;
    for (size_t i = 0; i < h; i++)
        for (size_t j = 0; j < w; j++) {
            size_t at = (i0 + i) * p->N + j0 + j;
            p->out[at] = 3.0f * c[i * ldc + j] + (float)at;
            __atomic_fetch_add(&p->visits[at], 1, __ATOMIC_RELAXED);
        }
}

/* bpi_sgemm_epi with a seed and a post step gives the bits of seeding C by
 * hand, calling bpi_sgemm with beta = 1 and running the step over all of C
 * afterwards; the step sees every element once, and only final values.
 * C's old contents (NaN here) and beta do not matter with a seed. The row
 * sums of op(A) have the bits of a plain loop over each row (when the
 * product runs). Several K blocks, several NC blocks (A packed once per
 * block, summed once), edges, strip groups, 1-3 threads (split over rows
 * and over columns), a team, alpha = 0, K = 0. */
START_TEST(test_epilogue)
{
    tu_rng rng;
    tu_seed(&rng, 21);
    bpi_gemm_blocking typical = typical_blocking(), small = {12, 48, 64};
    const struct { spec s; int small; } cases[] = {
        {{0, 0, 1, 64, 300, 250, 0, 1.0f, 0.25f}, 1},  /* forward NT: K blocks, edges */
        {{0, 0, 0, 37, 100, 130, 2, 1.0f, 0.0f}, 1},   /* input gradient NN, padded ld */
        {{0, 1, 0, 300, 200, 64, 0, 1.0f, 0.0f}, 0},   /* one K block: strip groups */
        {{0, 0, 1, 5, 7, 3, 1, -2.0f, 0.5f}, 0},       /* edge tiles only */
        {{0, 0, 1, 13, 29, 11, 1, 0.0f, 0.5f}, 0},     /* alpha = 0 */
        {{0, 0, 1, 13, 29, 0, 1, 1.0f, 0.0f}, 0},      /* K = 0 */
        {{0, 1, 0, 96, 200, 64, 0, 1.0f, 0.0f}, 1},    /* weight gradient: NC blocks */
        {{0, 1, 0, 10, 100, 300, 1, 1.0f, 0.0f}, 1},   /* thin: split over columns */
        {{0, 1, 1, 16, 200, 500, 1, 1.0f, 0.0f}, 0},   /* few rows, K blocks, B packed:
                                                          A packed whole (deep_rows) */
        {{0, 1, 1, 100, 150, 300, 1, 1.0f, 0.0f}, 0},  /* C transposed (bcast_rows): */
        {{0, 0, 1, 40, 97, 130, 0, 1.0f, 0.5f}, 1},    /* two row groups; passes over C */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const spec *s = &cases[k].s;
        char buf[200];
        describe(s, buf, sizeof buf);
        problem p = problem_new(s, &rng, FILL_REAL, FILL_INT);
        size_t bytes = p.c.lines * p.c.ld * sizeof(float), mn = s->M * s->N;
        float *seed = malloc(s->N * sizeof *seed), *want_c = malloc(bytes);
        float *want_out = malloc(mn * sizeof(float)), *out = malloc(mn * sizeof(float));
        int *visits = malloc(mn * sizeof(int));
        float *want_sums = malloc(s->M * sizeof(float)), *sums = malloc(s->M * sizeof(float));
        ck_assert(seed && want_c && want_out && out && visits && want_sums && sums);
        tu_fill(&rng, seed, s->N, -4.0, 4.0);
        int runs = s->alpha != 0.0f && s->K > 0;
        for (size_t i = 0; i < s->M; i++) { /* op(A)(i, p) in order, from 0 */
            float sum = 0.0f;
            for (size_t p2 = 0; p2 < s->K; p2++)
                sum += s->trans_a ? p.a.x[p2 * p.a.ld + i] : p.a.x[i * p.a.ld + p2];
            want_sums[i] = sum;
        }
        for (int th = 0; th < TU_N_THREAD_COUNTS; th++) {
            bpi_gemm_env env = env_new(cases[k].small ? small : typical, tu_thread_counts[th]);
            /* by hand: seed, beta = 1, then the step over everything */
            memcpy(p.c.x, p.c_before, bytes);
            for (size_t i = 0; i < s->M; i++)
                memcpy(p.c.x + i * p.c.ld, seed, s->N * sizeof *seed);
            bpi_sgemm(&env, s->trans_a, s->trans_b, s->M, s->N, s->K, s->alpha, p.a.x, p.a.ld,
                      p.b.x, p.b.ld, 1.0f, p.c.x, p.c.ld);
            memcpy(want_c, p.c.x, bytes);
            memset(visits, 0, mn * sizeof(int));
            epi_probe probe = {want_out, visits, s->N};
            probe_post(&probe, p.c.x, p.c.ld, 0, 0, s->M, s->N);
            /* fused, C full of NaN */
            for (size_t i = 0; i < p.c.lines * p.c.ld; i++)
                p.c.x[i] = NAN;
            for (size_t i = 0; i < s->M; i++)
                for (size_t j = s->N; j < p.c.ld; j++)
                    p.c.x[i * p.c.ld + j] = want_c[i * p.c.ld + j]; /* padding kept */
            memset(visits, 0, mn * sizeof(int));
            probe.out = out;
            for (size_t i = 0; i < s->M; i++)
                sums[i] = NAN;
            bpi_gemm_epilogue epi = {seed, probe_post, &probe, runs ? sums : NULL, 0};
            bpi_sgemm_epi(&env, s->trans_a, s->trans_b, s->M, s->N, s->K, s->alpha, p.a.x,
                          p.a.ld, p.b.x, p.b.ld, s->beta, p.c.x, p.c.ld, NULL, &epi);
            ck_assert_msg(memcmp(want_c, p.c.x, bytes) == 0, "%s, %d threads: C differs", buf,
                          tu_thread_counts[th]);
            ck_assert_msg(memcmp(want_out, out, mn * sizeof(float)) == 0,
                          "%s, %d threads: the post step's output differs", buf,
                          tu_thread_counts[th]);
            for (size_t i = 0; i < mn; i++)
                ck_assert_msg(visits[i] == 1, "%s, %d threads: element %zu visited %d times",
                              buf, tu_thread_counts[th], i, visits[i]);
            if (runs)
                ck_assert_msg(memcmp(want_sums, sums, s->M * sizeof(float)) == 0,
                              "%s, %d threads: row sums of op(A) differ", buf,
                              tu_thread_counts[th]);
#if BP_HAVE_OPENMP
            /* as a team of an enclosing region, with and without the hint
             * that B's columns are owned by the threads (another grid where
             * op(B) = B^T is read in place: the same bits) */
            for (int owned = 0; owned < 2; owned++) {
                epi.b_owned = owned;
                for (size_t i = 0; i < s->M; i++)
                    for (size_t j = 0; j < s->N; j++)
                        p.c.x[i * p.c.ld + j] = NAN;
                memset(visits, 0, mn * sizeof(int));
                memset(out, 0, mn * sizeof(float));
                for (size_t i = 0; i < s->M; i++)
                    sums[i] = NAN;
                bpi_barrier barrier;
#pragma omp parallel num_threads(tu_thread_counts[th])
                {
#pragma omp single
                    bpi_barrier_init(&barrier, (unsigned)omp_get_num_threads());
                    bpi_team team = {omp_get_thread_num(), omp_get_num_threads(), &barrier};
                    bpi_sgemm_team_epi(&env, &team, s->trans_a, s->trans_b, s->M, s->N, s->K,
                                       s->alpha, p.a.x, p.a.ld, p.b.x, p.b.ld, s->beta, p.c.x,
                                       p.c.ld, NULL, &epi);
                }
                ck_assert_msg(memcmp(want_c, p.c.x, bytes) == 0,
                              "%s, team of %d, owned %d: C differs", buf, tu_thread_counts[th],
                              owned);
                ck_assert_msg(memcmp(want_out, out, mn * sizeof(float)) == 0,
                              "%s, team of %d: the post step's output differs", buf,
                              tu_thread_counts[th]);
                for (size_t i = 0; i < mn; i++)
                    ck_assert_msg(visits[i] == 1, "%s, team of %d: element %zu visited %d times",
                                  buf, tu_thread_counts[th], i, visits[i]);
                if (runs)
                    ck_assert_msg(memcmp(want_sums, sums, s->M * sizeof(float)) == 0,
                                  "%s, team of %d: row sums of op(A) differ", buf,
                                  tu_thread_counts[th]);
            }
#endif
            env_free(&env);
        }
        free(seed), free(want_c), free(want_out), free(out), free(visits);
        free(want_sums), free(sums);
        problem_free(&p);
    }
}
END_TEST

/* Called from inside a parallel region, each caller runs on its own thread
 * and gets the serial result. */
START_TEST(test_inside_parallel)
{
#if BP_HAVE_OPENMP
    tu_rng rng;
    tu_seed(&rng, 9);
    spec s = {0, 0, 1, 120, 150, 130, 1, 1.0f, 0.0f};
    problem p[2];
    bpi_gemm_env env[2];
    for (int i = 0; i < 2; i++) {
        p[i] = problem_new(&s, &rng, FILL_INT, FILL_INT);
        env[i] = env_new(typical_blocking(), 2);
    }
#pragma omp parallel for num_threads(2)
    for (int i = 0; i < 2; i++)
        run_engine(&env[i], &p[i]);
    for (int i = 0; i < 2; i++) {
        check_exact(&p[i], "inside a parallel region");
        env_free(&env[i]);
        problem_free(&p[i]);
    }
#endif
}
END_TEST

/* ------------------------------------------------------------ public API */

static void public_case(bp_ctx *ctx, const spec *s, tu_rng *rng)
{
    problem p = problem_new(s, rng, FILL_INT, FILL_INT);
    bp_status st = bp_sgemm(ctx, s->col_major ? BP_COL_MAJOR : BP_ROW_MAJOR,
                            s->trans_a ? BP_TRANS : BP_NO_TRANS,
                            s->trans_b ? BP_TRANS : BP_NO_TRANS, s->M, s->N, s->K,
                            s->alpha, p.a.x, p.a.ld, p.b.x, p.b.ld, s->beta, p.c.x, p.c.ld);
    ck_assert_msg(st == BP_OK, "bp_sgemm: %s", bp_last_error());
    check_exact(&p, ctx ? "bp_sgemm" : "bp_sgemm, NULL ctx");
    problem_free(&p);
}

START_TEST(test_public_layouts)
{
    bp_ctx *ctx = NULL;
    ck_assert_int_eq(bp_ctx_create(&ctx, 2), BP_OK);
    tu_rng rng;
    tu_seed(&rng, 10);
    for (int layout = 0; layout < 2; layout++)
        for (int t = 0; t < 4; t++)
            for (int use_ctx = 0; use_ctx < 2; use_ctx++) {
                spec s = {layout, t & 1, t >> 1, 13, 17, 19, (size_t)t, 0.5f, -1.0f};
                public_case(use_ctx ? ctx : NULL, &s, &rng);
                spec big = {layout, t & 1, t >> 1, 70, 90, 110, 1, 1.0f, 0.5f};
                public_case(use_ctx ? ctx : NULL, &big, &rng);
            }
    bp_ctx_destroy(ctx);
}
END_TEST

/* A and B may be NULL when not read, C when M or N is 0. */
START_TEST(test_public_null_allowed)
{
    float c[6] = {1, 2, 3, 4, 5, 6};
    ck_assert_int_eq(bp_sgemm(NULL, BP_ROW_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 2, 3, 4,
                              0.0f, NULL, 4, NULL, 3, 2.0f, c, 3), BP_OK);
    ck_assert(c[5] == 12.0f);
    ck_assert_int_eq(bp_sgemm(NULL, BP_COL_MAJOR, BP_TRANS, BP_TRANS, 2, 3, 0,
                              1.0f, NULL, 1, NULL, 3, 0.0f, c, 2), BP_OK);
    ck_assert(c[0] == 0.0f && c[5] == 0.0f);
    ck_assert_int_eq(bp_sgemm(NULL, BP_ROW_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 0, 3, 4,
                              1.0f, NULL, 4, NULL, 3, 0.0f, NULL, 3), BP_OK);
}
END_TEST

typedef struct bad_call {
    bp_layout layout;
    bp_transpose ta, tb;
    size_t M, N, K, lda, ldb, ldc;
    int null_a, null_b, null_c;
    const char *names;  /* the message must contain this */
} bad_call;

/* Baseline M = 3, N = 4, K = 5; each line breaks one thing. */
static const bad_call bad_calls[] = {
    {(bp_layout)100, BP_NO_TRANS, BP_NO_TRANS, 3, 4, 5, 5, 4, 4, 0, 0, 0, "layout"},
    {BP_ROW_MAJOR, (bp_transpose)0, BP_NO_TRANS, 3, 4, 5, 5, 4, 4, 0, 0, 0, "transA"},
    {BP_ROW_MAJOR, BP_NO_TRANS, (bp_transpose)113, 3, 4, 5, 5, 4, 4, 0, 0, 0, "transB"},
    {BP_ROW_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 3, 4, 5, 4, 4, 4, 0, 0, 0, "lda"},
    {BP_ROW_MAJOR, BP_TRANS, BP_NO_TRANS, 3, 4, 5, 2, 4, 4, 0, 0, 0, "lda"},
    {BP_ROW_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 3, 4, 5, 5, 3, 4, 0, 0, 0, "ldb"},
    {BP_ROW_MAJOR, BP_NO_TRANS, BP_TRANS, 3, 4, 5, 5, 4, 4, 0, 0, 0, "ldb"},
    {BP_ROW_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 3, 4, 5, 5, 4, 3, 0, 0, 0, "ldc"},
    {BP_COL_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 3, 4, 5, 2, 5, 3, 0, 0, 0, "lda"},
    {BP_COL_MAJOR, BP_TRANS, BP_NO_TRANS, 3, 4, 5, 4, 5, 3, 0, 0, 0, "lda"},
    {BP_COL_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 3, 4, 5, 3, 4, 3, 0, 0, 0, "ldb"},
    {BP_COL_MAJOR, BP_NO_TRANS, BP_TRANS, 3, 4, 5, 3, 3, 3, 0, 0, 0, "ldb"},
    {BP_COL_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 3, 4, 5, 3, 5, 2, 0, 0, 0, "ldc"},
    {BP_ROW_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 3, 4, 5, 5, 4, 4, 1, 0, 0, "A is NULL"},
    {BP_ROW_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 3, 4, 5, 5, 4, 4, 0, 1, 0, "B is NULL"},
    {BP_ROW_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 3, 4, 5, 5, 4, 4, 0, 0, 1, "C is NULL"},
    {BP_ROW_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 3, 4, 0, 5, 4, 0, 0, 0, 0, "ldc"},
    {BP_ROW_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 0, 4, 5, 0, 4, 4, 0, 0, 0, "lda"},
    /* Extents overflowing size_t. */
    {BP_ROW_MAJOR, BP_NO_TRANS, BP_NO_TRANS, SIZE_MAX / 2, 4, 5, 5, 4, 4, 0, 0, 0, "A overflows"},
    {BP_ROW_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 3, 4, 5, 5, SIZE_MAX / 3, 4, 0, 0, 0, "B overflows"},
    {BP_COL_MAJOR, BP_NO_TRANS, BP_NO_TRANS, 3, SIZE_MAX / 8, 5, 3, 5, 3, 0, 0, 0, "B overflows"},
};

START_TEST(test_public_invalid)
{
    bp_ctx *ctx = NULL;
    ck_assert_int_eq(bp_ctx_create(&ctx, 2), BP_OK);
    float a[64], b[64], c[64], c_before[64];
    for (int i = 0; i < 64; i++) {
        a[i] = b[i] = 1.0f;
        c[i] = c_before[i] = (float)i;
    }
    for (size_t i = 0; i < sizeof bad_calls / sizeof bad_calls[0]; i++) {
        const bad_call *bc = &bad_calls[i];
        bp_status st = bp_sgemm(i % 2 ? ctx : NULL, bc->layout, bc->ta, bc->tb,
                                bc->M, bc->N, bc->K, 1.0f, bc->null_a ? NULL : a, bc->lda,
                                bc->null_b ? NULL : b, bc->ldb, 0.0f,
                                bc->null_c ? NULL : c, bc->ldc);
        const char *msg = bp_last_error();
        ck_assert_msg(st == BP_EINVAL, "bad call %zu: status %d", i, (int)st);
        ck_assert_msg(msg && strstr(msg, bc->names), "bad call %zu: message '%s' lacks '%s'",
                      i, msg ? msg : "(null)", bc->names);
        ck_assert_msg(memcmp(c, c_before, sizeof c) == 0, "bad call %zu changed C", i);
    }
    bp_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------- dispatch */

/* Restores BP_ISA as the test found it. */
static void set_isa_env(const char *value)
{
    if (value)
        ck_assert_int_eq(setenv("BP_ISA", value, 1), 0);
    else
        ck_assert_int_eq(unsetenv("BP_ISA"), 0);
}

/* bp_ctx_create with BP_ISA = isa: its status, and the context's ISA. */
static bp_status ctx_with_isa(const char *isa, char *got, size_t n)
{
    char *saved = getenv("BP_ISA") ? strdup(getenv("BP_ISA")) : NULL;
    set_isa_env(isa);
    bp_ctx *ctx = NULL;
    bp_status st = bp_ctx_create(&ctx, 1);
    snprintf(got, n, "%s", st == BP_OK ? bp_ctx_isa(ctx) : "");
    bp_ctx_destroy(ctx);
    set_isa_env(saved);
    free(saved);
    return st;
}

/* BP_ISA picks any kernel this CPU runs, and refuses the others, unknown
 * names and ISAs of other architectures with BP_EUNSUPPORTED. */
START_TEST(test_dispatch_env)
{
    static const char *const isas[] = {"scalar", "avx2", "avx512", "neon"};
    char got[32];
    for (size_t i = 0; i < 4; i++) {
        int runs = 0;
        for (size_t k = 0; k < bpi_ukr_count(); k++)
            if (strcmp(bpi_ukr_at(k)->isa, isas[i]) == 0 && bpi_ukr_runs_here(bpi_ukr_at(k)))
                runs = 1;
        bp_status st = ctx_with_isa(isas[i], got, sizeof got);
        if (runs) {
            ck_assert_msg(st == BP_OK, "BP_ISA=%s: %s", isas[i], bp_last_error());
            ck_assert_str_eq(got, isas[i]);
        } else {
            ck_assert_int_eq(st, BP_EUNSUPPORTED);
            ck_assert_ptr_nonnull(strstr(bp_last_error(), isas[i]));
        }
    }
    ck_assert_int_eq(ctx_with_isa("sse9", got, sizeof got), BP_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "not an ISA name"));
    ck_assert_int_eq(ctx_with_isa("scalar", got, sizeof got), BP_OK);
    ck_assert_str_eq(got, "scalar");
}
END_TEST

/* The table: the scalar kernel last and always runnable; every kernel within
 * the MR/NR bounds. Without BP_ISA a context takes the first runnable one;
 * BP_EXPECT_ISA (set by CI runs under emulated CPUs) says which that is. */
START_TEST(test_dispatch_default)
{
    size_t n = bpi_ukr_count();
    ck_assert_uint_ge(n, 1);
    ck_assert_ptr_eq(bpi_ukr_at(n - 1), &bpi_ukr_scalar_4x8);
    ck_assert_ptr_null(bpi_ukr_at(n));
    ck_assert(bpi_ukr_runs_here(&bpi_ukr_scalar_4x8));
    const bpi_ukr *best = NULL;
    for (size_t k = 0; k < n; k++) {
        const bpi_ukr *u = bpi_ukr_at(k);
        ck_assert(u->mr >= 1 && u->mr <= BPI_UKR_MR_MAX);
        ck_assert(u->nr >= 1 && u->nr <= BPI_UKR_NR_MAX);
        if (!best && bpi_ukr_runs_here(u))
            best = u;
    }
    char got[32];
    ck_assert_int_eq(ctx_with_isa(NULL, got, sizeof got), BP_OK);
    ck_assert_str_eq(got, best->isa);
    ck_assert_str_eq(bp_ctx_isa(NULL), "");

    /* With the environment as the test runner set it (CI sets BP_ISA in
     * some runs): BP_ISA wins, and BP_EXPECT_ISA names the outcome. */
    const char *env_isa = getenv("BP_ISA");
    bp_ctx *ctx = NULL;
    ck_assert_msg(bp_ctx_create(&ctx, 1) == BP_OK, "%s", bp_last_error());
    snprintf(got, sizeof got, "%s", bp_ctx_isa(ctx));
    bp_ctx_destroy(ctx);
    if (env_isa && *env_isa)
        ck_assert_str_eq(got, env_isa);
    const char *expect = getenv("BP_EXPECT_ISA");
    if (expect && *expect)
        ck_assert_msg(strcmp(got, expect) == 0, "selected %s, expected %s", got, expect);
}
END_TEST

/* ------------------------------------------------------------------ main */

static Suite *gemm_suite(void)
{
    Suite *s = suite_create(cur_ukr->name);
    TCase *engine = tcase_create("engine");
    tcase_add_test(engine, test_blocking);
    tcase_add_test(engine, test_kernel);
    tcase_add_test(engine, test_kernel_direct_b);
    tcase_add_test(engine, test_pack);
    tcase_add_test(engine, test_small_shapes);
    tcase_add_test(engine, test_primes_alpha_beta);
    tcase_add_test(engine, test_typical_blocking_edges);
    tcase_add_test(engine, test_nan_and_zero);
    tcase_add_test(engine, test_empty);
    tcase_add_test(engine, test_absmax);
    tcase_add_test(engine, test_absmax_positions);
    tcase_add_test(engine, test_direct_b_bits);
    tcase_add_test(engine, test_bcast_bits);
    tcase_add_test(engine, test_epilogue);
    /* BP_TEST_QUICK: under an emulator (qemu's TCG runs AVX2 ~50x slower)
     * the large and multi-threaded cases would take minutes; the same
     * kernel runs them natively (BP_ISA, and the loop in main). */
    const char *quick = getenv("BP_TEST_QUICK");
    if (!quick || !*quick) {
        tcase_add_test(engine, test_forced_blocking);
        tcase_add_test(engine, test_large_projection);
        tcase_add_test(engine, test_threads_bitwise);
    }
    tcase_add_test(engine, test_inside_parallel);
    suite_add_tcase(s, engine);
    return s;
}

/* What does not depend on the kernel under test: once. */
static Suite *api_suite(void)
{
    Suite *s = suite_create("api");
    TCase *api = tcase_create("bp_sgemm");
    tcase_add_test(api, test_public_layouts);
    tcase_add_test(api, test_public_null_allowed);
    tcase_add_test(api, test_public_invalid);
    suite_add_tcase(s, api);
    TCase *dispatch = tcase_create("dispatch");
    tcase_add_test(dispatch, test_dispatch_env);
    tcase_add_test(dispatch, test_dispatch_default);
    suite_add_tcase(s, dispatch);
    return s;
}

/* Runs one suite; returns its number of failed tests. */
static int run_suite(Suite *suite)
{
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed;
}

/* The engine suite for every kernel this CPU runs (not only the one a
 * context would pick), one runner each (the tests read cur_ukr when they
 * run), then the API and dispatch suite. BP_TEST_ISA=<isa> limits the
 * engine suite to that kernel (CI under a slow emulator). */
int main(void)
{
    const char *only = getenv("BP_TEST_ISA");
    int failed = 0;
    for (size_t k = 0; k < bpi_ukr_count(); k++) {
        const bpi_ukr *u = bpi_ukr_at(k);
        int skip = only && *only && strcmp(only, u->isa) != 0;
        printf("test_gemm: kernel %s: %s\n", u->name,
               !bpi_ukr_runs_here(u) ? "not supported by this CPU"
               : skip ? "skipped (BP_TEST_ISA)" : "testing");
        fflush(stdout);
        if (!bpi_ukr_runs_here(u) || skip)
            continue;
        cur_ukr = u;
        failed += run_suite(gemm_suite());
    }
    failed += run_suite(api_suite());
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
