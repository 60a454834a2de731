#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "bp_config.h"
#include "cpu.h"
#include "ctx.h"
#include "dist.h"
#include "error.h"
#include "topo_desc.h"

#if BP_HAVE_OPENMP
#include <omp.h>
#endif

/* Upper bound on threads: far above any machine, low enough that per-thread
 * workspace sizes cannot overflow. */
#define BPI_MAX_THREADS 4096

static int default_threads(const bp_topology_info *topo)
{
#if BP_HAVE_OPENMP
    /* One thread per core: SMT siblings only compete for the FMA units. */
    int n = topo->n_cores;
    return n >= 1 ? n : 1;
#else
    (void)topo;
    return 1;
#endif
}

/* (Re)allocate the GEMM workspace for n_threads; on failure ctx is unchanged. */
static bp_status set_workspace(bp_ctx *ctx, int n_threads, const char *fn)
{
    size_t floats = bpi_gemm_workspace_floats(ctx->gemm.ukr, &ctx->gemm.blk, n_threads);
    size_t bytes;
    if (!bpi_mul(floats, sizeof(float), &bytes))
        return bpi_fail(BP_ENOMEM, "%s: GEMM workspace size overflows", fn);
    float *ws = bpi_alloc(bytes ? bytes : BPI_ALIGN);
    if (!ws)
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate %zu bytes of GEMM workspace", fn, bytes);
    bpi_free(ctx->gemm.workspace);
    ctx->gemm.workspace = ws;
    ctx->gemm.n_threads = n_threads;
    ctx->n_threads = n_threads;
    return BP_OK;
}

/* BP_SCHED=sequential|auto; unset means auto (scheduled). */
static bp_status backward_from_env(bp_backward_mode *mode)
{
    const char *v = getenv("BP_SCHED");
    *mode = BP_BACKWARD_SCHEDULED;
    if (!v || !*v || !strcmp(v, "auto"))
        return BP_OK;
    if (!strcmp(v, "sequential")) {
        *mode = BP_BACKWARD_SEQUENTIAL;
        return BP_OK;
    }
    return bpi_fail(BP_EINVAL, "bp_ctx_create: BP_SCHED is '%s' (expected sequential or auto)",
                    v);
}

bp_status bp_ctx_create(bp_ctx **out, int n_threads)
{
    if (!out)
        return bpi_fail(BP_EINVAL, "bp_ctx_create: ctx is NULL");
    if (n_threads < 0 || n_threads > BPI_MAX_THREADS)
        return bpi_fail(BP_EINVAL, "bp_ctx_create: n_threads is %d (expected 0..%d)",
                        n_threads, BPI_MAX_THREADS);
    const bpi_ukr *ukr;
    BPI_TRY(bpi_ukr_choose(&ukr, "bp_ctx_create"));
    bp_backward_mode backward;
    BPI_TRY(backward_from_env(&backward));
    bp_ctx *ctx = bpi_alloc(sizeof *ctx);
    if (!ctx)
        return bpi_fail(BP_ENOMEM, "bp_ctx_create: cannot allocate the context");
    ctx->hwloc = bpi_hwloc_load();
    bpi_topology_detect(&ctx->topo, ctx->hwloc);
    ctx->backward = backward;
    ctx->cores = bpi_alloc(sizeof *ctx->cores);
    if (!ctx->cores) {
        bpi_hwloc_unload(ctx->hwloc);
        bpi_free(ctx);
        return bpi_fail(BP_ENOMEM, "bp_ctx_create: cannot allocate the core list");
    }
    if (!ctx->hwloc || bpi_topo_describe_loaded(ctx->cores, ctx->hwloc) != BP_OK)
        bpi_topo_flat(ctx->cores, ctx->topo.n_cores); /* planning still works, flat */
    ctx->gemm.ukr = ukr;
    bpi_gemm_blocking_init(&ctx->gemm.blk, ukr, &ctx->topo);
#if !BP_HAVE_OPENMP
    n_threads = 1;
#endif
    if (n_threads == 0)
        n_threads = default_threads(&ctx->topo);
    bp_status s = set_workspace(ctx, n_threads, "bp_ctx_create");
    if (s != BP_OK) {
        bpi_hwloc_unload(ctx->hwloc);
        bpi_free(ctx->cores);
        bpi_free(ctx);
        return s;
    }
    *out = ctx;
    return BP_OK;
}

void bp_ctx_destroy(bp_ctx *ctx)
{
    if (!ctx)
        return;
#if BP_HAVE_MPI
    bpi_dist_free(ctx->dist);
#endif
    bpi_free(ctx->gemm.workspace);
    bpi_free(ctx->cores);
    bpi_hwloc_unload(ctx->hwloc);
    bpi_free(ctx);
}

int bp_ctx_threads(const bp_ctx *ctx)
{
    return ctx ? ctx->n_threads : 0;
}

bp_status bp_ctx_set_threads(bp_ctx *ctx, int n_threads)
{
    if (!ctx)
        return bpi_fail(BP_EINVAL, "bp_ctx_set_threads: ctx is NULL");
    if (n_threads < 1 || n_threads > BPI_MAX_THREADS)
        return bpi_fail(BP_EINVAL, "bp_ctx_set_threads: n_threads is %d (expected 1..%d)",
                        n_threads, BPI_MAX_THREADS);
#if !BP_HAVE_OPENMP
    n_threads = 1;
#endif
    if (n_threads == ctx->n_threads)
        return BP_OK;
    return set_workspace(ctx, n_threads, "bp_ctx_set_threads");
}

bp_status bp_ctx_topology(const bp_ctx *ctx, bp_topology_info *info)
{
    if (!ctx || !info)
        return bpi_fail(BP_EINVAL, "bp_ctx_topology: %s is NULL", !ctx ? "ctx" : "info");
    *info = ctx->topo;
    return BP_OK;
}

const char *bp_ctx_isa(const bp_ctx *ctx)
{
    return ctx ? ctx->gemm.ukr->isa : "";
}

bp_status bp_ctx_set_backward(bp_ctx *ctx, bp_backward_mode mode)
{
    if (!ctx)
        return bpi_fail(BP_EINVAL, "bp_ctx_set_backward: ctx is NULL");
    if (mode != BP_BACKWARD_SEQUENTIAL && mode != BP_BACKWARD_SCHEDULED)
        return bpi_fail(BP_EINVAL, "bp_ctx_set_backward: mode is %d (not a bp_backward_mode)",
                        (int)mode);
    ctx->backward = mode;
    return BP_OK;
}

bp_backward_mode bp_ctx_backward(const bp_ctx *ctx)
{
    return ctx ? ctx->backward : BP_BACKWARD_SEQUENTIAL;
}
