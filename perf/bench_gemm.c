/* bench_gemm: bp_sgemm against OpenBLAS, BLIS and oneDNN, side by side.
 *
 * For each shape and thread count, every library is warmed up and checked,
 * then timed in alternation (A B C D, A B C D, ...) for R repetitions, each
 * at least --min-time long; the table gives medians in GFLOP/s = 2 M N K /
 * seconds per call, backprop's share of the measured AVX-512 FMA peak at the
 * same thread count, and its ratio to the fastest peer. See perf/README.md.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

enum { MAX_LIBS = 6, MAX_THREAD_COUNTS = 16, MAX_REPS = 1000, MAX_SHAPES = 128 };

/* Column order of the table and the CSV. The three OpenBLAS columns are one
 * library in three configurations (see open_libs). */
static const char *const lib_names[MAX_LIBS] = {
    "backprop", "openblas", "openblas-unset", "openblas-skx", "blis", "onednn",
};
static const char *const lib_short[MAX_LIBS] = {
    "backprop", "openblas", "obl-unset", "obl-skx", "blis", "onednn",
};
enum { LIB_BACKPROP = 0, LIB_OPENBLAS = 1, LIB_OPENBLAS_UNSET = 2, LIB_OPENBLAS_SKX = 3 };

typedef struct options {
    int threads[MAX_THREAD_COUNTS], n_threads;
    int quick;
    const char *shapes; /* square, mlp, all */
    const char *csv;    /* NULL: no CSV */
    const char *only;   /* comma-separated library names, NULL: all */
    bench_opts bench;
} options;

/* One library's result on one shape and thread count. */
typedef struct cell {
    int status;              /* PREP_OK, PREP_WRONG, PREP_FAILED; -1: not run */
    double med, p10, p90;    /* GFLOP/s */
    double err;
} cell;

/* ------------------------------------------------------------------ shapes */

static int add_shape(gemm_shape *v, int n, const char *family, const char *op, char ta,
                     char tb, int M, int N, int K, int size)
{
    gemm_shape s = { family, op, ta, tb, M, N, K, size };
    v[n] = s;
    return n + 1;
}

/* The three GEMMs of a dense layer X (B, n_in) -> Z (B, n_out), W (n_out, n_in):
 *   forward         Z  = X W^T    NT  M = B,     N = n_out, K = n_in
 *   input gradient  dX = dZ W     NN  M = B,     N = n_in,  K = n_out
 *   weight gradient dW = dZ^T X   TN  M = n_out, N = n_in,  K = B */
static int add_layer(gemm_shape *v, int n, const char *family, int batch, int n_in,
                     int n_out)
{
    n = add_shape(v, n, family, "fwd NT", 'N', 'T', batch, n_out, n_in, batch);
    n = add_shape(v, n, family, "dX NN", 'N', 'N', batch, n_in, n_out, batch);
    return add_shape(v, n, family, "dW TN", 'T', 'N', n_out, n_in, batch, batch);
}

static int make_shapes(gemm_shape *v, const options *o)
{
    static const int squares[] = { 64, 128, 256, 512, 1024, 2048 };
    static const int batches[] = { 32, 64, 128, 256, 512 };
    static const struct { const char *family; int n_in, n_out; } layers[] = {
        { "784x256", 784, 256 }, { "1024x1024", 1024, 1024 }, { "4096x4096", 4096, 4096 },
    };
    int n = 0;
    int sq = strcmp(o->shapes, "mlp") != 0, mlp = strcmp(o->shapes, "square") != 0;
    if (o->quick) {
        /* A smoke test: every transpose pair and both code paths of a
         * blocked GEMM (one block, several) in a few seconds. */
        if (sq) {
            n = add_shape(v, n, "square", "NN", 'N', 'N', 64, 64, 64, 64);
            n = add_shape(v, n, "square", "NN", 'N', 'N', 256, 256, 256, 256);
        }
        if (mlp)
            n = add_layer(v, n, "1024x1024", 64, 1024, 1024);
        return n;
    }
    for (size_t i = 0; sq && i < sizeof squares / sizeof squares[0]; i++)
        n = add_shape(v, n, "square", "NN", 'N', 'N', squares[i], squares[i], squares[i],
                      squares[i]);
    for (size_t l = 0; mlp && l < sizeof layers / sizeof layers[0]; l++)
        for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++)
            n = add_layer(v, n, layers[l].family, batches[b], layers[l].n_in,
                          layers[l].n_out);
    return n;
}

/* ------------------------------------------------------------------ options */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: bench_gemm [options]\n"
        "  --threads LIST   comma-separated thread counts (default: 1,<cores>)\n"
        "  --reps R         timed repetitions per library and shape (default 7)\n"
        "  --min-time S     seconds each repetition lasts at least (default 0.02)\n"
        "  --quick          a few shapes, 3 repetitions: a smoke test\n"
        "  --shapes WHICH   square, mlp or all (default all)\n"
        "  --csv FILE       write the results as CSV (default bench_gemm.csv; '' for none)\n"
        "  --only LIBS      comma-separated subset of backprop,openblas,blis,onednn\n"
        "                   (openblas selects all three OpenBLAS columns)\n"
        "Exit status: 0, or 1 if backprop computed a wrong result or failed, 2 on usage.\n");
}

static int parse_threads(const char *s, options *o)
{
    o->n_threads = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int t = atoi(tok);
        if (t < 1 || t > LIB_MAX_THREADS || o->n_threads == MAX_THREAD_COUNTS)
            return -1;
        o->threads[o->n_threads++] = t;
    }
    return o->n_threads > 0 ? 0 : -1;
}

/* Every name in the --only list must be a column's. */
static int check_only(const char *list)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int known = 0;
        for (int l = 0; l < MAX_LIBS; l++)
            known |= !strcmp(tok, lib_names[l]);
        if (!known) {
            fprintf(stderr, "bench_gemm: --only: unknown library %s\n", tok);
            return -1;
        }
    }
    return 0;
}

/* 0 on success, 1 if --help was asked, -1 on a bad option. */
static int parse_options(int argc, char **argv, options *o)
{
    int cores = 1;
    bp_ctx *ctx = NULL;
    if (bp_ctx_create(&ctx, 0) == BP_OK) {
        cores = bp_ctx_threads(ctx);
        bp_ctx_destroy(ctx);
    }
    o->threads[0] = 1;
    o->threads[1] = cores;
    o->n_threads = cores > 1 ? 2 : 1;
    o->quick = 0;
    o->shapes = "all";
    o->csv = "bench_gemm.csv";
    o->only = NULL;
    o->bench.reps = 7;
    o->bench.min_seconds = 0.02;
    /* A call this slow (backprop's scalar kernel on the largest shapes)
     * is timed once per repetition, 3 repetitions. */
    o->bench.slow_seconds = 0.5;
    o->bench.slow_reps = 3;
    int reps_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            return 1;
        } else if (!strcmp(a, "--quick")) {
            o->quick = 1;
        } else if (!v) {
            fprintf(stderr, "bench_gemm: unknown option or missing value: %s\n", a);
            return -1;
        } else if (!strcmp(a, "--threads")) {
            if (parse_threads(v, o) != 0) {
                fprintf(stderr, "bench_gemm: bad --threads %s\n", v);
                return -1;
            }
            i++;
        } else if (!strcmp(a, "--reps")) {
            o->bench.reps = atoi(v);
            reps_given = 1;
            if (o->bench.reps < 1 || o->bench.reps > MAX_REPS) {
                fprintf(stderr, "bench_gemm: --reps must be 1..%d\n", MAX_REPS);
                return -1;
            }
            i++;
        } else if (!strcmp(a, "--min-time")) {
            o->bench.min_seconds = atof(v);
            if (!(o->bench.min_seconds > 0.0 && o->bench.min_seconds < 100.0)) {
                fprintf(stderr, "bench_gemm: bad --min-time %s\n", v);
                return -1;
            }
            i++;
        } else if (!strcmp(a, "--shapes")) {
            if (strcmp(v, "square") && strcmp(v, "mlp") && strcmp(v, "all")) {
                fprintf(stderr, "bench_gemm: --shapes takes square, mlp or all\n");
                return -1;
            }
            o->shapes = v;
            i++;
        } else if (!strcmp(a, "--csv")) {
            o->csv = *v ? v : NULL;
            i++;
        } else if (!strcmp(a, "--only")) {
            if (check_only(v) != 0)
                return -1;
            o->only = v;
            i++;
        } else {
            fprintf(stderr, "bench_gemm: unknown option %s\n", a);
            return -1;
        }
    }
    if (o->quick && !reps_given)
        o->bench.reps = 3;
    return 0;
}

/* Is library `name` selected by --only? "openblas" selects every
 * openblas-* column. */
static int selected(const options *o, const char *name)
{
    if (!o->only)
        return 1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", o->only);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
        if (!strcmp(tok, name) || (!strcmp(tok, "openblas") && !strncmp(name, "openblas-", 9)))
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ statistics */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank quantile q of sorted v[0..n). */
static double quantile(const double *v, int n, double q)
{
    return v[(int)floor(q * (n - 1) + 0.5)];
}

/* ------------------------------------------------------------------ one row */

static prep_result prepare(gemm_lib *lib, gemm_data *d, int threads, const bench_opts *o)
{
    if (lib->remote)
        return remote_prepare(lib, &d->shape, threads, o);
    return bench_prepare(lib, d, threads, o);
}

static double rep(gemm_lib *lib, gemm_data *d, int calls)
{
    return lib->remote ? remote_rep(lib, calls) : bench_rep(lib, d, calls);
}

/* Measure every library on d at `threads`, alternating repetitions. */
static void measure_row(gemm_lib *libs, gemm_data *d, int threads, const bench_opts *o,
                        cell *cells)
{
    prep_result pr[MAX_LIBS];
    static double gf[MAX_LIBS][MAX_REPS];
    int max_reps = 0;
    double flops = 2.0 * d->shape.M * d->shape.N * d->shape.K;
    for (int l = 0; l < MAX_LIBS; l++) {
        cells[l].status = -1;
        if (!libs[l].available)
            continue;
        pr[l] = prepare(&libs[l], d, threads, o);
        cells[l].status = pr[l].status;
        cells[l].err = pr[l].err;
        if (pr[l].status == PREP_OK && pr[l].reps > max_reps)
            max_reps = pr[l].reps;
    }
    for (int r = 0; r < max_reps; r++)
        for (int l = 0; l < MAX_LIBS; l++) {
            if (cells[l].status != PREP_OK || r >= pr[l].reps)
                continue;
            /* Each library sets its thread count again: OpenBLAS's call
             * also changes OpenMP's, which oneDNN follows. */
            if (!libs[l].remote)
                libs[l].set_threads(&libs[l], threads);
            double sec = rep(&libs[l], d, pr[l].calls);
            gf[l][r] = sec > 0.0 ? flops / sec * 1e-9 : NAN;
        }
    for (int l = 0; l < MAX_LIBS; l++) {
        if (cells[l].status != PREP_OK)
            continue;
        int n = pr[l].reps;
        qsort(gf[l], (size_t)n, sizeof gf[l][0], cmp_double);
        cells[l].med = quantile(gf[l], n, 0.5);
        cells[l].p10 = quantile(gf[l], n, 0.1);
        cells[l].p90 = quantile(gf[l], n, 0.9);
        if (isnan(cells[l].med)) /* the child stopped answering mid-row */
            cells[l].status = PREP_FAILED;
    }
}

/* The fastest peer with a correct result, or -1. */
static int best_peer(const cell *cells)
{
    int best = -1;
    for (int l = 1; l < MAX_LIBS; l++)
        if (cells[l].status == PREP_OK && (best < 0 || cells[l].med > cells[best].med))
            best = l;
    return best;
}

static const char *cell_text(const cell *c, char *buf, size_t size)
{
    if (c->status == PREP_OK)
        snprintf(buf, size, "%.1f", c->med);
    else if (c->status == PREP_WRONG)
        snprintf(buf, size, "WRONG");
    else
        snprintf(buf, size, "n/a");
    return buf;
}

static void shape_label(const gemm_shape *s, char *buf, size_t size)
{
    if (!strcmp(s->family, "square"))
        snprintf(buf, size, "square %d", s->size);
    else
        snprintf(buf, size, "%s B=%d", s->family, s->size);
}

static void print_header(void)
{
    printf("%-16s %-6s %5s %5s %5s %3s", "shape", "op", "M", "N", "K", "thr");
    for (int l = 0; l < MAX_LIBS; l++)
        printf(" %9s", lib_short[l]);
    printf(" %7s %7s  %s\n", "bp%peak", "bp/best", "best peer");
}

static void print_row(const gemm_shape *s, int threads, const cell *cells, double peak)
{
    char label[64], buf[32];
    shape_label(s, label, sizeof label);
    printf("%-16s %-6s %5d %5d %5d %3d", label, s->op, s->M, s->N, s->K, threads);
    for (int l = 0; l < MAX_LIBS; l++)
        printf(" %9s", cell_text(&cells[l], buf, sizeof buf));
    const cell *bp = &cells[LIB_BACKPROP];
    int b = best_peer(cells);
    if (bp->status == PREP_OK && peak > 0.0)
        printf(" %6.1f%%", 100.0 * bp->med / peak);
    else
        printf(" %7s", "-");
    if (bp->status == PREP_OK && b >= 0)
        printf(" %7.2f", bp->med / cells[b].med);
    else
        printf(" %7s", "-");
    printf("  %s\n", b >= 0 ? lib_names[b] : "-");
    fflush(stdout);
}

static void csv_header(FILE *f)
{
    fprintf(f, "family,shape,op,ta,tb,M,N,K,size,threads");
    for (int l = 0; l < MAX_LIBS; l++)
        fprintf(f, ",%s_gflops,%s_p10,%s_p90,%s_status", lib_names[l], lib_names[l],
                lib_names[l], lib_names[l]);
    fprintf(f, ",peak_avx512_gflops,peak_avx2_gflops,backprop_pct_peak,"
               "backprop_vs_best_peer,best_peer\n");
}

static void csv_row(FILE *f, const gemm_shape *s, int threads, const cell *cells,
                    fma_peak pk)
{
    char label[64];
    shape_label(s, label, sizeof label);
    fprintf(f, "%s,%s,%s,%c,%c,%d,%d,%d,%d,%d", s->family, label, s->op, s->ta, s->tb,
            s->M, s->N, s->K, s->size, threads);
    for (int l = 0; l < MAX_LIBS; l++) {
        const cell *c = &cells[l];
        if (c->status == PREP_OK)
            fprintf(f, ",%.3f,%.3f,%.3f,ok", c->med, c->p10, c->p90);
        else
            fprintf(f, ",,,,%s", c->status == PREP_WRONG ? "WRONG" : "n/a");
    }
    fprintf(f, ",%.1f,%.1f", pk.avx512, pk.avx2);
    const cell *bp = &cells[LIB_BACKPROP];
    int b = best_peer(cells);
    double peak = pk.avx512 > 0.0 ? pk.avx512 : pk.avx2;
    if (bp->status == PREP_OK && peak > 0.0)
        fprintf(f, ",%.2f", 100.0 * bp->med / peak);
    else
        fprintf(f, ",");
    if (bp->status == PREP_OK && b >= 0)
        fprintf(f, ",%.4f", bp->med / cells[b].med);
    else
        fprintf(f, ",");
    fprintf(f, ",%s\n", b >= 0 ? lib_names[b] : "");
    fflush(f);
}

/* ------------------------------------------------------------------ main */

static void self_path(const char *argv0, char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n > 0)
        buf[n] = '\0';
    else
        snprintf(buf, size, "%s", argv0);
}

/* Other processes' load shows as slow and erratic rows (with OpenMP, one
 * descheduled thread stalls every barrier): say so up front. */
static void warn_if_busy(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double load = 0.0;
    if (!f)
        return;
    if (fscanf(f, "%lf", &load) == 1 && load > 0.5)
        printf("WARNING: load average %.2f before starting: other processes compete for "
               "the cores and the results will be noisy\n", load);
    fclose(f);
}

static void not_run(gemm_lib *lib, const char *name, const char *why)
{
    memset(lib, 0, sizeof *lib);
    lib->name = name;
    snprintf(lib->info, sizeof lib->info, "%s", why);
}

/* OpenBLAS's AVX-512 kernels need F, BW, DQ and VL. */
static int cpu_has_skx(void)
{
#if defined(__GNUC__) && defined(__x86_64__)
    return __builtin_cpu_supports("avx512f") != 0 && __builtin_cpu_supports("avx512bw") != 0 &&
           __builtin_cpu_supports("avx512dq") != 0 && __builtin_cpu_supports("avx512vl") != 0;
#else
    return 0;
#endif
}

/* OpenBLAS in three configurations, each only where it differs from the
 * others: "openblas" with the environment as it stands (in this process);
 * "openblas-unset" with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed, if
 * the environment sets either; "openblas-skx" with OPENBLAS_CORETYPE=SkylakeX
 * (its AVX-512 kernels), if the CPU has AVX-512 and the environment does not
 * already select them: OpenBLAS 0.3.21 does not recognise every AVX-512 CPU
 * and then falls back to old SSE3 (Prescott) kernels. */
static void open_libs(gemm_lib *libs, const options *o, const char *argv0)
{
    const char *core = getenv("OPENBLAS_CORETYPE");
    int env_sets_openblas = core || getenv("OPENBLAS_L2_SIZE");
    char self[1024];
    self_path(argv0, self, sizeof self);
    for (int l = 0; l < MAX_LIBS; l++) {
        if (!selected(o, lib_names[l]))
            not_run(&libs[l], lib_names[l], "not selected (--only)");
        else if (l == LIB_OPENBLAS_UNSET && !env_sets_openblas)
            not_run(&libs[l], lib_names[l], "not run: neither OPENBLAS_CORETYPE nor "
                    "OPENBLAS_L2_SIZE is set, so the openblas column is this configuration");
        else if (l == LIB_OPENBLAS_UNSET)
            remote_open(&libs[l], self, lib_names[l], NULL);
        else if (l == LIB_OPENBLAS_SKX && !cpu_has_skx())
            not_run(&libs[l], lib_names[l], "not run: the CPU lacks AVX-512 F/BW/DQ/VL");
        else if (l == LIB_OPENBLAS_SKX && core && !strcmp(core, "SkylakeX"))
            not_run(&libs[l], lib_names[l], "not run: the environment already sets "
                    "OPENBLAS_CORETYPE=SkylakeX (the openblas column)");
        else if (l == LIB_OPENBLAS_SKX)
            remote_open(&libs[l], self, lib_names[l], "SkylakeX");
        else
            lib_open(&libs[l], lib_names[l]);
    }
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--serve"))
        return remote_serve(argv[2]);
    options o;
    int p = parse_options(argc, argv, &o);
    if (p != 0) {
        usage(p > 0 ? stdout : stderr);
        return p > 0 ? 0 : 2;
    }
    double t_start = now_seconds();

    gemm_lib libs[MAX_LIBS];
    open_libs(libs, &o, argv[0]);
    printf("bench_gemm: row-major C = op(A) op(B), alpha 1, beta 0; medians of %d "
           "repetitions of >= %.0f ms (3 repetitions of 1 call when a call takes > %.1f s)\n",
           o.bench.reps, o.bench.min_seconds * 1e3, o.bench.slow_seconds);
    for (int l = 0; l < MAX_LIBS; l++)
        printf("  %-14s %s\n", lib_names[l], libs[l].info);

    warn_if_busy();
    fma_peak peaks[MAX_THREAD_COUNTS];
    printf("FMA peak (best of 20 runs of 10 ms of independent FMA chains):\n");
    for (int t = 0; t < o.n_threads; t++) {
        peaks[t] = fma_peak_measure(o.threads[t], 20, 0.01);
        printf("  %d thread%s: AVX2 %.1f GFLOP/s, AVX-512 %.1f GFLOP/s\n", o.threads[t],
               o.threads[t] > 1 ? "s" : "", peaks[t].avx2, peaks[t].avx512);
    }
    printf("\n");

    FILE *csv = NULL;
    if (o.csv) {
        csv = fopen(o.csv, "w");
        if (!csv)
            fprintf(stderr, "bench_gemm: cannot write %s; no CSV\n", o.csv);
        else
            csv_header(csv);
    }

    static gemm_shape shapes[MAX_SHAPES];
    int n_shapes = make_shapes(shapes, &o);
    int bp_bad = 0, n_wrong = 0, obl_fastest[MAX_LIBS] = { 0 };
    print_header();
    for (int s = 0; s < n_shapes; s++) {
        gemm_data d;
        if (data_create(&d, &shapes[s]) != 0) {
            fprintf(stderr, "bench_gemm: out of memory for %dx%dx%d\n", shapes[s].M,
                    shapes[s].N, shapes[s].K);
            return 1;
        }
        for (int t = 0; t < o.n_threads; t++) {
            cell cells[MAX_LIBS];
            measure_row(libs, &d, o.threads[t], &o.bench, cells);
            double peak = peaks[t].avx512 > 0.0 ? peaks[t].avx512 : peaks[t].avx2;
            print_row(&shapes[s], o.threads[t], cells, peak);
            if (csv)
                csv_row(csv, &shapes[s], o.threads[t], cells, peaks[t]);
            for (int l = 0; l < MAX_LIBS; l++)
                if (cells[l].status == PREP_WRONG) {
                    n_wrong++;
                    fprintf(stderr, "bench_gemm: WRONG: %s on %s %dx%dx%d, %d threads: "
                            "largest error %.3g (exact result expected)\n", lib_names[l], shapes[s].op,
                            shapes[s].M, shapes[s].N, shapes[s].K, o.threads[t],
                            cells[l].err);
                }
            if (libs[LIB_BACKPROP].available && cells[LIB_BACKPROP].status != PREP_OK)
                bp_bad = 1;
            int fo = -1; /* the fastest OpenBLAS configuration on this row */
            for (int l = LIB_OPENBLAS; l <= LIB_OPENBLAS_SKX; l++)
                if (cells[l].status == PREP_OK && (fo < 0 || cells[l].med > cells[fo].med))
                    fo = l;
            if (fo >= 0)
                obl_fastest[fo]++;
        }
        for (int l = 0; l < MAX_LIBS; l++)
            if (libs[l].remote && libs[l].available)
                remote_finish(&libs[l]);
        data_free(&d);
    }
    if (obl_fastest[LIB_OPENBLAS] + obl_fastest[LIB_OPENBLAS_UNSET] +
        obl_fastest[LIB_OPENBLAS_SKX] > 0) {
        printf("\nFastest OpenBLAS configuration, rows won:");
        for (int l = LIB_OPENBLAS; l <= LIB_OPENBLAS_SKX; l++)
            printf(" %s %d%s", lib_names[l], obl_fastest[l], l < LIB_OPENBLAS_SKX ? "," : "\n");
    }
    if (n_wrong)
        printf("\n%d WRONG result%s: see the messages above\n", n_wrong, n_wrong > 1 ? "s" : "");
    if (csv) {
        fclose(csv);
        printf("CSV: %s\n", o.csv);
    }
    printf("elapsed %.0f s\n", now_seconds() - t_start);

    for (int l = 0; l < MAX_LIBS; l++) {
        if (libs[l].remote)
            remote_close(&libs[l]);
        else
            lib_close(&libs[l]);
    }
    return bp_bad ? 1 : 0;
}
