/* Operands for one shape, and the check that a library computed op(A) op(B).
 *
 * The operands are chosen so that any correct float GEMM gives the exact
 * product, whatever its summation order, blocking or use of FMA: every
 * element is k/4 with k in +-{1..8} (never 0, so no library can skip work on
 * zeros, and timing is as for any other data: there are no subnormals).
 * Products are then multiples of 2^-4 of size at most 4, and every partial
 * sum of K of them is a multiple of 2^-4 of size at most 4 K, which a float
 * (24-bit significand) holds exactly while 4 K <= 2^20, that is K <= 2^18.
 * So the check needs no tolerance: C must equal the reference exactly, and
 * a single wrong element fails it. (With general data the error bound of a
 * float GEMM, about K 2^-24 |A||B|, would be far larger than one wrong
 * element once projected onto a vector.)
 *
 * Small problems are compared element by element; large ones through a
 * vector t with entries in +-{1, 2}: C t against A (B t), all in double,
 * where these sums are exact too (below 2^53), in O(MK + KN + MN) instead of
 * O(MNK). A wrong element e changes (C t)_i by e t_i != 0.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* Element by element up to this many multiply-adds (about 50 ms in double). */
#define FULL_CHECK_MAX_MNK (1L << 25)
/* The largest K for which the data above give exact float results. */
#define EXACT_MAX_K (1 << 18)

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: a fixed, portable sequence for operands and t. */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* k/4 with k uniform in +-{1..8}: see the top of this file. */
static float rng_quarter(uint64_t *s)
{
    uint64_t r = rng_next(s);
    float v = (float)(1 + (r & 7)) * 0.25f;
    return (r & 8) ? -v : v;
}

static float *alloc_floats(size_t n)
{
    /* 64-byte aligned like a real training buffer; at least one element so
     * that a zero-sized operand is still a valid pointer. */
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, bytes);
}

int data_create(gemm_data *d, const gemm_shape *s)
{
    memset(d, 0, sizeof *d);
    d->shape = *s;
    if (s->K > EXACT_MAX_K)
        return -1;
    size_t M = (size_t)s->M, N = (size_t)s->N, K = (size_t)s->K;
    d->lda = s->ta == 'N' ? s->K : s->M;
    d->ldb = s->tb == 'N' ? s->N : s->K;
    d->ldc = s->N;
    d->A = alloc_floats(M * K);
    d->B = alloc_floats(K * N);
    d->C = alloc_floats(M * N);
    if (!d->A || !d->B || !d->C) {
        data_free(d);
        return -1;
    }
    uint64_t seed = 42u + 1000003u * (uint64_t)(s->M + 7 * s->N + 131 * s->K);
    for (size_t i = 0; i < M * K; i++)
        d->A[i] = rng_quarter(&seed);
    for (size_t i = 0; i < K * N; i++)
        d->B[i] = rng_quarter(&seed);
    memset(d->C, 0, M * N * sizeof(float));
    return 0;
}

void data_free(gemm_data *d)
{
    free(d->A);
    free(d->B);
    free(d->C);
    d->A = d->B = d->C = NULL;
}

/* op(A)(i, k) and op(B)(k, j) in row-major storage. */
static double op_a(const gemm_data *d, size_t i, size_t k)
{
    return d->shape.ta == 'N' ? d->A[i * (size_t)d->lda + k] : d->A[k * (size_t)d->lda + i];
}

static double op_b(const gemm_data *d, size_t k, size_t j)
{
    return d->shape.tb == 'N' ? d->B[k * (size_t)d->ldb + j] : d->B[j * (size_t)d->ldb + k];
}

/* |x - ref|, infinity where x is NaN (which compares false with anything). */
static double abs_err(double x, double ref)
{
    double e = fabs(x - ref);
    return e <= HUGE_VAL ? e : HUGE_VAL;
}

static double check_full(const gemm_data *d)
{
    size_t M = (size_t)d->shape.M, N = (size_t)d->shape.N, K = (size_t)d->shape.K;
    double worst = 0.0;
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double ref = 0.0;
            for (size_t k = 0; k < K; k++)
                ref += op_a(d, i, k) * op_b(d, k, j);
            double e = abs_err(d->C[i * (size_t)d->ldc + j], ref);
            if (e > worst)
                worst = e;
        }
    return worst;
}

static double check_projected(const gemm_data *d)
{
    size_t M = (size_t)d->shape.M, N = (size_t)d->shape.N, K = (size_t)d->shape.K;
    double *t = malloc(N * sizeof *t), *u = calloc(K, sizeof *u), *y = calloc(M, sizeof *y);
    double worst = HUGE_VAL;
    if (!t || !u || !y)
        goto out;
    uint64_t seed = 12345u;
    for (size_t j = 0; j < N; j++) {
        uint64_t r = rng_next(&seed);
        t[j] = (r & 1 ? 1.0 : 2.0) * (r & 2 ? -1.0 : 1.0);
    }
    /* u = op(B) t, then y = op(A) u, each walking its matrix along the
     * stored rows (a column walk of a 4096 x 4096 matrix misses the cache
     * on every element). */
    if (d->shape.tb == 'N') {
        for (size_t k = 0; k < K; k++)
            for (size_t j = 0; j < N; j++)
                u[k] += (double)d->B[k * (size_t)d->ldb + j] * t[j];
    } else {
        for (size_t j = 0; j < N; j++)
            for (size_t k = 0; k < K; k++)
                u[k] += (double)d->B[j * (size_t)d->ldb + k] * t[j];
    }
    if (d->shape.ta == 'N') {
        for (size_t i = 0; i < M; i++)
            for (size_t k = 0; k < K; k++)
                y[i] += (double)d->A[i * (size_t)d->lda + k] * u[k];
    } else {
        for (size_t k = 0; k < K; k++)
            for (size_t i = 0; i < M; i++)
                y[i] += (double)d->A[k * (size_t)d->lda + i] * u[k];
    }
    worst = 0.0;
    for (size_t i = 0; i < M; i++) {
        double ct = 0.0;
        for (size_t j = 0; j < N; j++)
            ct += (double)d->C[i * (size_t)d->ldc + j] * t[j];
        double e = abs_err(ct, y[i]);
        if (e > worst)
            worst = e;
    }
out:
    free(t);
    free(u);
    free(y);
    return worst;
}

double data_check(const gemm_data *d)
{
    double mnk = (double)d->shape.M * d->shape.N * d->shape.K;
    return mnk <= (double)FULL_CHECK_MAX_MNK ? check_full(d) : check_projected(d);
}
