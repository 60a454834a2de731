/* The libraries bench_gemm compares, behind one row-major calling convention.
 *
 * backprop is linked; the peers are not: each is dlopen'ed at run time with
 * RTLD_LOCAL | RTLD_DEEPBIND, so OpenBLAS and BLIS, which both define
 * cblas_sgemm (and the Fortran BLAS), each bind their own calls to their own
 * code, and a machine without a peer still builds and runs the benchmark.
 *
 * Best configuration of each peer (see perf/README.md):
 * - OpenBLAS: the OpenMP build if installed (else the pthread one), threads
 *   by openblas_set_num_threads. It reads OPENBLAS_CORETYPE and
 *   OPENBLAS_L2_SIZE when it loads; bench_gemm measures it with the
 *   environment as it stands here, and with both unset in a child process
 *   (remote.c), since a process cannot load it twice with two environments.
 * - BLIS 0.9 (Debian): picks a kernel set from CPUID and does not know new
 *   CPUs; BLIS_ARCH_TYPE selects one. In 0.9's arch_t enumeration 0 is skx
 *   (AVX-512): checked here, 0 reports "skx" from bli_arch_string() and runs
 *   512x512x512 at 142 GFLOP/s against 78 for the auto-detected "haswell"
 *   (1 and 2, knl and knc, abort). We set 0 when the CPU has AVX-512F and the
 *   user has not set BLIS_ARCH_TYPE; BLIS reads it at its first call.
 * - oneDNN: dnnl_sgemm is row-major already; it runs on OpenMP's thread
 *   count, which this program (not the library under test) may set.
 */
#define _GNU_SOURCE /* RTLD_DEEPBIND */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench.h"

/* CBLAS enumerations (the values every CBLAS uses). */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

/* The peers' prototypes, written here because their headers need not be
 * installed to build. blasint is int in Debian's OpenBLAS and BLIS BLAS. */
typedef void (*cblas_sgemm_fn)(int order, int ta, int tb, int M, int N, int K,
                               float alpha, const float *A, int lda,
                               const float *B, int ldb, float beta, float *C, int ldc);
/* oneapi/dnnl/dnnl.h: dnnl_status_t dnnl_sgemm(char transa, char transb,
 * dnnl_dim_t M, N, K, float alpha, const float *A, dnnl_dim_t lda, B, ldb,
 * float beta, float *C, ldc), row-major, dnnl_dim_t = int64_t, 0 = success. */
typedef int (*dnnl_sgemm_fn)(char ta, char tb, int64_t M, int64_t N, int64_t K,
                             float alpha, const float *A, int64_t lda,
                             const float *B, int64_t ldb, float beta, float *C,
                             int64_t ldc);
typedef void (*openblas_threads_fn)(int n);
typedef void (*blis_threads_fn)(int64_t n); /* dim_t is 64-bit */
typedef char *(*openblas_str_fn)(void);
typedef int (*blis_arch_id_fn)(void);
typedef void (*blis_init_fn)(void);
typedef const char *(*blis_arch_str_fn)(int id);
typedef struct { int major, minor, patch; const char *hash; } dnnl_version_t;
typedef const dnnl_version_t *(*dnnl_version_fn)(void);
typedef int (*dnnl_isa_fn)(void);

/* dlsym returns void *; ISO C has no conversion to a function pointer, POSIX
 * guarantees the representation: copy the bytes. */
#define FN(type, ptr) fn_cast_##type(ptr)
#define DEFINE_FN_CAST(type) \
    static type fn_cast_##type(void *p) { type f; memcpy(&f, &p, sizeof f); return f; }
DEFINE_FN_CAST(cblas_sgemm_fn)
DEFINE_FN_CAST(dnnl_sgemm_fn)
DEFINE_FN_CAST(openblas_threads_fn)
DEFINE_FN_CAST(blis_threads_fn)
DEFINE_FN_CAST(openblas_str_fn)
DEFINE_FN_CAST(blis_arch_id_fn)
DEFINE_FN_CAST(blis_init_fn)
DEFINE_FN_CAST(blis_arch_str_fn)
DEFINE_FN_CAST(dnnl_version_fn)
DEFINE_FN_CAST(dnnl_isa_fn)

static void set_omp_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

/* ------------------------------------------------------------------ backprop */

static int bp_threads(gemm_lib *lib, int n)
{
    set_omp_threads(n);
    if (lib->ctx && lib->threads == n)
        return 0;
    if (lib->ctx)
        bp_ctx_destroy(lib->ctx);
    lib->ctx = NULL;
    if (bp_ctx_create(&lib->ctx, n) != BP_OK)
        return -1;
    lib->threads = n;
    return 0;
}

static int bp_gemm(gemm_lib *lib, char ta, char tb, int M, int N, int K,
                   const float *A, int lda, const float *B, int ldb, float *C, int ldc)
{
    bp_status st = bp_sgemm(lib->ctx, BP_ROW_MAJOR, ta == 'T' ? BP_TRANS : BP_NO_TRANS,
                            tb == 'T' ? BP_TRANS : BP_NO_TRANS, (size_t)M, (size_t)N,
                            (size_t)K, 1.0f, A, (size_t)lda, B, (size_t)ldb, 0.0f, C,
                            (size_t)ldc);
    return st == BP_OK ? 0 : -1;
}

static void open_backprop(gemm_lib *lib)
{
    lib->set_threads = bp_threads;
    lib->sgemm = bp_gemm;
    lib->available = 1;
    snprintf(lib->info, sizeof lib->info, "backprop %s (linked)", bp_version_string());
}

/* ------------------------------------------------------------------ dlopen helpers */

/* Multi-arch library directories to look in before the loader's own search
 * (which finds whatever the alternatives system points libopenblas.so.0 at). */
static const char *const lib_dirs[] = {
    "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
};

/* Try `override` (an environment variable naming a path), then each
 * lib_dirs/sub for sub in subs, then each bare soname. */
static void *open_first(const char *override, const char *const *subs, size_t n_subs,
                        const char *const *sonames, size_t n_sonames,
                        char *path, size_t path_size)
{
    const char *o = getenv(override);
    if (o && *o) {
        snprintf(path, path_size, "%s", o);
        return dlopen(o, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    }
    for (size_t i = 0; i < n_subs; i++)
        for (size_t d = 0; d < sizeof lib_dirs / sizeof lib_dirs[0]; d++) {
            snprintf(path, path_size, "%s/%s", lib_dirs[d], subs[i]);
            void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
            if (h)
                return h;
        }
    for (size_t i = 0; i < n_sonames; i++) {
        snprintf(path, path_size, "%s", sonames[i]);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        if (h)
            return h;
    }
    return NULL;
}

static void *sym(gemm_lib *lib, const char *name)
{
    return lib->handle ? dlsym(lib->handle, name) : NULL;
}

/* ------------------------------------------------------------------ CBLAS peers */

static int cblas_gemm(gemm_lib *lib, char ta, char tb, int M, int N, int K,
                      const float *A, int lda, const float *B, int ldb, float *C, int ldc)
{
    FN(cblas_sgemm_fn, lib->fn_gemm)(CBLAS_ROW_MAJOR,
                                     ta == 'T' ? CBLAS_TRANS : CBLAS_NO_TRANS,
                                     tb == 'T' ? CBLAS_TRANS : CBLAS_NO_TRANS,
                                     M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
    return 0;
}

static int openblas_threads(gemm_lib *lib, int n)
{
    /* The OpenMP build also calls omp_set_num_threads itself. */
    set_omp_threads(n);
    FN(openblas_threads_fn, lib->fn_threads)(n);
    lib->threads = n;
    return 0;
}

static void open_openblas(gemm_lib *lib)
{
    static const char *const subs[] = {
        "openblas-openmp/libopenblas.so.0", "openblas-pthread/libopenblas.so.0",
    };
    static const char *const sonames[] = { "libopenblas.so.0" };
    char path[256];
    lib->handle = open_first("BENCH_OPENBLAS_LIB", subs, 2, sonames, 1, path, sizeof path);
    lib->fn_gemm = sym(lib, "cblas_sgemm");
    lib->fn_threads = sym(lib, "openblas_set_num_threads");
    void *corename = sym(lib, "openblas_get_corename");
    void *config = sym(lib, "openblas_get_config");
    if (!lib->fn_gemm || !lib->fn_threads) {
        snprintf(lib->info, sizeof lib->info, "n/a: no OpenBLAS (%s)",
                 lib->handle ? "symbols missing" : "libopenblas.so.0 not found");
        return;
    }
    lib->set_threads = openblas_threads;
    lib->sgemm = cblas_gemm;
    lib->available = 1;
    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    snprintf(lib->info, sizeof lib->info,
             "%s: %s, core %s; OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s",
             path, config ? FN(openblas_str_fn, config)() : "?",
             corename ? FN(openblas_str_fn, corename)() : "?",
             ct ? ct : "(unset)", l2 ? l2 : "(unset)");
}

static int blis_threads(gemm_lib *lib, int n)
{
    set_omp_threads(n);
    FN(blis_threads_fn, lib->fn_threads)(n);
    lib->threads = n;
    return 0;
}

static void open_blis(gemm_lib *lib)
{
    static const char *const subs[] = {
        "blis-openmp/libblis.so.4", "blis-pthread/libblis.so.4",
        "blis-openmp/libblis.so.3", "blis-pthread/libblis.so.3",
    };
    static const char *const sonames[] = { "libblis.so.4", "libblis.so.3" };
    char path[256];
    /* Before BLIS's first call, which is when it reads the variable. 0 is
     * only safe where AVX-512 runs (skx kernels). */
    const char *arch_note = "BLIS_ARCH_TYPE as set";
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if (!getenv("BLIS_ARCH_TYPE") && __builtin_cpu_supports("avx512f") != 0) {
        setenv("BLIS_ARCH_TYPE", "0", 1);
        arch_note = "BLIS_ARCH_TYPE=0 set by bench_gemm";
    }
#endif
    if (!getenv("BLIS_ARCH_TYPE"))
        arch_note = "BLIS_ARCH_TYPE unset (CPUID)";
    lib->handle = open_first("BENCH_BLIS_LIB", subs, 4, sonames, 2, path, sizeof path);
    lib->fn_gemm = sym(lib, "cblas_sgemm");
    lib->fn_threads = sym(lib, "bli_thread_set_num_threads");
    void *arch_id = sym(lib, "bli_arch_query_id"), *arch_str = sym(lib, "bli_arch_string");
    void *init = sym(lib, "bli_init");
    if (!lib->fn_gemm || !lib->fn_threads || !init) {
        snprintf(lib->info, sizeof lib->info, "n/a: no BLIS (%s)",
                 lib->handle ? "symbols missing" : "libblis.so.4 not found");
        return;
    }
    /* Before any query: with BLIS_ARCH_TYPE set, BLIS 0.9 looks the id up in
     * its kernel table, which bli_init fills, and aborts if it is empty. */
    FN(blis_init_fn, init)();
    lib->set_threads = blis_threads;
    lib->sgemm = cblas_gemm;
    lib->available = 1;
    const char *arch = "?";
    if (arch_id && arch_str)
        arch = FN(blis_arch_str_fn, arch_str)(FN(blis_arch_id_fn, arch_id)());
    snprintf(lib->info, sizeof lib->info, "%s: kernels for %s; %s (BLIS_ARCH_TYPE=%s)",
             path, arch, arch_note, getenv("BLIS_ARCH_TYPE") ? getenv("BLIS_ARCH_TYPE") : "");
}

/* ------------------------------------------------------------------ oneDNN */

static int dnnl_threads(gemm_lib *lib, int n)
{
    set_omp_threads(n);
    lib->threads = n;
    return 0;
}

static int dnnl_gemm(gemm_lib *lib, char ta, char tb, int M, int N, int K,
                     const float *A, int lda, const float *B, int ldb, float *C, int ldc)
{
    return FN(dnnl_sgemm_fn, lib->fn_gemm)(ta, tb, M, N, K, 1.0f, A, lda, B, ldb,
                                           0.0f, C, ldc) == 0 ? 0 : -1;
}

static const char *dnnl_isa_name(int isa)
{
    /* dnnl_cpu_isa_t values of oneDNN 2.x and 3.x. */
    switch (isa) {
    case 0x7: return "avx2";
    case 0x27: return "avx512_core";
    case 0x67: return "avx512_core_vnni";
    case 0xe7: return "avx512_core_bf16";
    case 0x1e7: return "avx512_core_fp16";
    case 0x3e7: case 0xfe7: return "avx512_core_amx";
    default: return "other";
    }
}

static void open_onednn(gemm_lib *lib)
{
    static const char *const sonames[] = { "libdnnl.so.3", "libdnnl.so.2" };
    char path[256];
    lib->handle = open_first("BENCH_ONEDNN_LIB", NULL, 0, sonames, 2, path, sizeof path);
    lib->fn_gemm = sym(lib, "dnnl_sgemm");
    void *version = sym(lib, "dnnl_version"), *isa = sym(lib, "dnnl_get_effective_cpu_isa");
    if (!lib->fn_gemm) {
        snprintf(lib->info, sizeof lib->info, "n/a: no oneDNN (%s)",
                 lib->handle ? "symbols missing" : "libdnnl.so.3/.2 not found");
        return;
    }
    lib->set_threads = dnnl_threads;
    lib->sgemm = dnnl_gemm;
    lib->available = 1;
    const dnnl_version_t *v = version ? FN(dnnl_version_fn, version)() : NULL;
    int i = isa ? FN(dnnl_isa_fn, isa)() : -1;
    snprintf(lib->info, sizeof lib->info,
             "%s: oneDNN %d.%d.%d, dnnl_sgemm (row-major), ISA %s (0x%x), threads by "
             "omp_set_num_threads", path, v ? v->major : 0, v ? v->minor : 0,
             v ? v->patch : 0, dnnl_isa_name(i), (unsigned)i);
}

/* ------------------------------------------------------------------ entry */

void lib_open(gemm_lib *lib, const char *name)
{
    memset(lib, 0, sizeof *lib);
    lib->name = name;
    if (!strcmp(name, "backprop"))
        open_backprop(lib);
    else if (!strcmp(name, "openblas"))
        open_openblas(lib);
    else if (!strcmp(name, "blis"))
        open_blis(lib);
    else if (!strcmp(name, "onednn"))
        open_onednn(lib);
    else
        snprintf(lib->info, sizeof lib->info, "n/a: unknown library");
}

void lib_close(gemm_lib *lib)
{
    if (lib->ctx)
        bp_ctx_destroy(lib->ctx);
    /* Peers stay loaded: their OpenMP thread pools and atexit handlers may
     * still refer to their code until the process ends. */
    lib->ctx = NULL;
    lib->available = 0;
}
