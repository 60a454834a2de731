/* bench_gemm's pieces: the libraries behind one calling convention, the
 * FMA peak, the correctness check, and one measurement's protocol.
 *
 * Every GEMM here is row-major C (M, N) = op(A) op(B), alpha = 1, beta = 0:
 *   op(A) is (M, K): A is (M, K), lda = K if ta == 'N'; (K, M), lda = M if 'T'
 *   op(B) is (K, N): B is (K, N), ldb = N if tb == 'N'; (N, K), ldb = K if 'T'
 * with tight leading dimensions (ldc = N), as a training step calls it.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backprop.h"

/* ------------------------------------------------------------------ shapes */

typedef struct gemm_shape {
    const char *family; /* "square", "784x256", ...: one plot panel each */
    const char *op;     /* "NN", "fwd NT", "dX NN", "dW TN" */
    char ta, tb;        /* 'N' or 'T' */
    int M, N, K;
    int size;           /* the x axis of the plot: n for squares, the batch for MLP shapes */
} gemm_shape;

/* ------------------------------------------------------------------ libraries */

enum { LIB_MAX_THREADS = 256 };

typedef struct gemm_lib gemm_lib;
struct gemm_lib {
    const char *name;   /* column name: backprop, openblas, openblas-unset, ... */
    int available;      /* 0: reported as n/a */
    char info[512];     /* what was loaded and how it is configured (or why not) */
    /* Set the thread count for later calls; 0 on success. */
    int (*set_threads)(gemm_lib *lib, int n);
    /* Row-major C = op(A) op(B) (alpha 1, beta 0); 0 on success. */
    int (*sgemm)(gemm_lib *lib, char ta, char tb, int M, int N, int K,
                 const float *A, int lda, const float *B, int ldb, float *C, int ldc);
    /* Library state: dlopen handle and symbols, or backprop's contexts. */
    void *handle;
    void *fn_gemm, *fn_threads;
    bp_ctx *ctx;
    int threads;
    /* The other OpenBLAS configurations run in child processes (remote.c):
     * the pid and the pipes to it; remote is 0 in this process. */
    int remote, pid;
    FILE *to_child, *from_child;
};

/* Load one library by column name into *lib (available = 0 if it cannot be
 * loaded; info says why). The OpenBLAS and BLIS environments are described
 * in peers.c. */
void lib_open(gemm_lib *lib, const char *name);
void lib_close(gemm_lib *lib);

/* ------------------------------------------------------------------ FMA peak */

typedef struct fma_peak {
    double avx2, avx512; /* GFLOP/s over all threads; 0 if the CPU lacks the ISA */
} fma_peak;

/* The best of `reps` timings of independent FMA chains on n_threads
 * threads (an OpenMP region), each thread running for about `seconds`. */
fma_peak fma_peak_measure(int n_threads, int reps, double seconds);

/* ------------------------------------------------------------------ data and check */

typedef struct gemm_data {
    gemm_shape shape;
    int lda, ldb, ldc;
    float *A, *B, *C;
} gemm_data;

/* Allocate and fill A and B with a fixed pseudo-random pattern (the same in
 * every process) whose product every correct float GEMM computes exactly
 * (check.c); 0 on success, -1 if out of memory or K > 2^18. */
int data_create(gemm_data *d, const gemm_shape *s);
void data_free(gemm_data *d);

/* Check d->C against op(A) op(B) in double: element by element for small
 * problems, by a random-vector projection C t vs A (B t) for large ones.
 * Returns the largest absolute error: 0 for a correct result, infinity if
 * C held a NaN or infinity. */
double data_check(const gemm_data *d);

/* ------------------------------------------------------------------ measurement */

typedef struct bench_opts {
    int reps;           /* timed repetitions per library (medians are over these) */
    double min_seconds; /* each repetition lasts at least this long */
    double slow_seconds;/* a library whose one call takes longer gets slow_reps */
    int slow_reps;
} bench_opts;

typedef struct prep_result {
    int status;   /* PREP_OK, PREP_WRONG, PREP_FAILED */
    int calls;    /* calls per timed repetition */
    int reps;     /* repetitions this library will run */
    double err;   /* data_check's error (0: correct) */
} prep_result;

enum { PREP_OK = 0, PREP_WRONG = 1, PREP_FAILED = 2 };

/* Warm up lib on d with n_threads, check its result, and choose how many
 * calls one repetition takes. */
prep_result bench_prepare(gemm_lib *lib, gemm_data *d, int n_threads, const bench_opts *o);
/* One repetition: seconds per call. */
double bench_rep(gemm_lib *lib, gemm_data *d, int calls);

double now_seconds(void);

/* ------------------------------------------------------------------ child process */

/* Start this program again as `self_exe --serve openblas` with
 * OPENBLAS_L2_SIZE removed from its environment and OPENBLAS_CORETYPE
 * removed (coretype NULL) or set to coretype, and make *lib, column `name`,
 * a proxy to it (available = 0 if that fails). */
void remote_open(gemm_lib *lib, const char *self_exe, const char *name,
                 const char *coretype);
void remote_close(gemm_lib *lib);
prep_result remote_prepare(gemm_lib *lib, const gemm_shape *s, int n_threads,
                           const bench_opts *o);
double remote_rep(gemm_lib *lib, int calls);
void remote_finish(gemm_lib *lib);
/* The child's side: serve requests on stdin/stdout until EOF; exit code. */
int remote_serve(const char *lib_name);

#endif
