/* The executor of backward plans (see sched.h). */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "bp_config.h"
#include "ctx.h"
#include "error.h"
#include "fpmode.h"
#include "net.h"
#include "sched.h"

#if BP_HAVE_OPENMP
#include <omp.h>
#endif
#if BP_HAVE_HWLOC
#include <hwloc.h>
#endif

/* ------------------------------------------------------------ pinning */

/* While a plan runs, thread t is bound to core t of the plan (its first PU),
 * so a group's threads stay on the caches the plan gave them. Not done when
 * the user placed OpenMP's threads (OMP_PLACES or OMP_PROC_BIND set): theirs
 * stands. Everything is allocated here, at set-up.
 * Each binding is a system call of 1-2 us on the development VMs (and
 * saving and restoring one two more), 4-5 us per step on the critical path
 * when every step bound and unbound both threads. So:
 *  - OpenMP's worker threads (tid > 0) are bound once and left bound, as
 *    OMP_PROC_BIND would leave them; each remembers its core (bound_pu)
 *    and later steps make no call. A worker that becomes another thread
 *    number, in another context's region, is bound again.
 *  - The calling thread (tid 0) is the user's: it is bound only when it
 *    runs on another core than its plan's, and its own binding is restored
 *    when the plan ends. */
typedef struct bpi_pinning {
#if BP_HAVE_HWLOC
    hwloc_topology_t topo;   /* the context's (not owned) */
    hwloc_bitmap_t *core;    /* per thread: the PU to bind to */
    hwloc_bitmap_t *saved;   /* per thread: its binding before the plan */
#endif
    int n;
} bpi_pinning;

static void pinning_free(bpi_pinning *p)
{
    if (!p)
        return;
#if BP_HAVE_HWLOC
    for (int t = 0; t < p->n; t++) {
        if (p->core && p->core[t])
            hwloc_bitmap_free(p->core[t]);
        if (p->saved && p->saved[t])
            hwloc_bitmap_free(p->saved[t]);
    }
    bpi_free(p->core);
    bpi_free(p->saved);
#endif
    bpi_free(p);
}

/* *out = NULL (and BP_OK) when pinning is not wanted or hwloc cannot do it;
 * BP_ENOMEM only when our own allocations fail, like every other set-up
 * allocation. */
static bp_status pinning_create(const bp_ctx *ctx, int n_threads, bpi_pinning **out)
{
    *out = NULL;
#if BP_HAVE_HWLOC
    const bpi_topo_desc *cores = ctx->cores;
    const char *places = getenv("OMP_PLACES"), *bind = getenv("OMP_PROC_BIND");
    if ((places && *places) || (bind && *bind) || !ctx->hwloc || !cores->from_hwloc ||
        n_threads > cores->n_cores)
        return BP_OK;
    bpi_pinning *p = bpi_alloc(sizeof *p);
    if (p) {
        p->n = n_threads;
        p->core = bpi_alloc_array((size_t)n_threads, sizeof *p->core);
        p->saved = bpi_alloc_array((size_t)n_threads, sizeof *p->saved);
    }
    if (!p || !p->core || !p->saved) {
        pinning_free(p);
        return bpi_fail(BP_ENOMEM, "bp_net_create: cannot allocate the thread pinning");
    }
    p->topo = (hwloc_topology_t)ctx->hwloc;
    int ok = 1;
    for (int t = 0; ok && t < n_threads; t++) {
        p->core[t] = hwloc_bitmap_alloc();
        p->saved[t] = hwloc_bitmap_alloc();
        ok = p->core[t] && p->saved[t] &&
             hwloc_bitmap_only(p->core[t], (unsigned)cores->cores[t].pu_os_index) == 0;
    }
    if (!ok) {
        pinning_free(p); /* hwloc could not: run unpinned */
        return BP_OK;
    }
    *out = p;
    return BP_OK;
#else
    (void)ctx, (void)n_threads;
    return BP_OK;
#endif
}

#if BP_HAVE_HWLOC
/* The PU this worker thread was bound to and left bound to; -1: none. */
static _Thread_local int bound_pu = -1;
#endif

/* Bind thread tid to its core; 1 if its old binding must be restored. */
static int pin(bpi_pinning *p, int tid)
{
#if BP_HAVE_HWLOC
    if (!p || tid >= p->n)
        return 0;
    int pu = (int)hwloc_bitmap_first(p->core[tid]);
    if (tid > 0) {
        if (bound_pu != pu && hwloc_set_cpubind(p->topo, p->core[tid], HWLOC_CPUBIND_THREAD) == 0)
            bound_pu = pu;
        return 0;
    }
    /* On Linux hwloc asks sched_getcpu, which makes no system call. */
    if (hwloc_get_last_cpu_location(p->topo, p->saved[tid], HWLOC_CPUBIND_THREAD) == 0 &&
        hwloc_bitmap_isequal(p->saved[tid], p->core[tid]))
        return 0;
    if (hwloc_get_cpubind(p->topo, p->saved[tid], HWLOC_CPUBIND_THREAD) != 0)
        return 0;
    return hwloc_set_cpubind(p->topo, p->core[tid], HWLOC_CPUBIND_THREAD) == 0;
#else
    (void)p, (void)tid;
    return 0;
#endif
}

static void unpin(bpi_pinning *p, int tid)
{
#if BP_HAVE_HWLOC
    hwloc_set_cpubind(p->topo, p->saved[tid], HWLOC_CPUBIND_THREAD);
#else
    (void)p, (void)tid;
#endif
}

/* ------------------------------------------------------------- set-up */

static bp_status plan_for(const bp_net *net, bpi_plan *plan)
{
    size_t *dims = bpi_alloc(2 * net->n_layers * sizeof *dims);
    const bpi_topo_desc *topo = net->ctx->cores;
    if (!dims)
        return bpi_fail(BP_ENOMEM, "bp_net_create: cannot allocate the planner's input");
    for (size_t i = 0; i < net->n_layers; i++)
        dims[i] = net->layers[i].n_in, dims[net->n_layers + i] = net->layers[i].n_out;
    /* Groups only when every thread has a core of its own: the executor's
     * threads wait for each other by spinning. */
    int own_cores = net->ctx->n_threads <= topo->n_cores;
    bpi_plan_input in = {topo, net->ctx->n_threads, net->n_layers, dims,
                         dims + net->n_layers, net->max_batch, net->want_input_grad, 0,
                         own_cores};
    bp_status s = bpi_plan_build(&in, plan);
    bpi_free(dims);
    return s;
}

/* An engine and a barrier per group, and for the joint group (all threads,
 * index n_groups) when its list is not empty. */
static bp_status alloc_groups(bpi_sched *s, const bp_net *net)
{
    const bpi_plan *p = &s->plan;
    s->n_envs = p->n_groups + bpi_plan_has_joint(p);
    s->envs = bpi_alloc_array((size_t)s->n_envs, sizeof *s->envs);
    s->barriers = bpi_alloc_array((size_t)s->n_envs, sizeof *s->barriers);
    s->done = bpi_alloc((size_t)p->n_tasks * sizeof *s->done);
    if (!s->envs || !s->barriers || !s->done)
        return bpi_fail(BP_ENOMEM, "bp_net_create: cannot allocate the scheduler");
    for (int g = 0; g < s->n_envs; g++) {
        bpi_gemm_env *e = &s->envs[g];
        *e = net->ctx->gemm;
        e->n_threads = p->groups[g].n_threads;
        size_t floats = bpi_gemm_workspace_floats(e->ukr, &e->blk, e->n_threads);
        e->workspace = bpi_alloc(floats * sizeof(float));
        if (!e->workspace)
            return bpi_fail(BP_ENOMEM, "bp_net_create: cannot allocate GEMM workspace for "
                                       "group %d", g);
        bpi_barrier_init(&s->barriers[g], (unsigned)p->groups[g].n_threads);
    }
    return BP_OK;
}

bp_status bpi_sched_create(bp_net *net, bpi_sched **out)
{
    *out = NULL;
    if (net->ctx->backward != BP_BACKWARD_SCHEDULED || net->ctx->n_threads < 2)
        return BP_OK;
    bpi_sched *s = bpi_alloc(sizeof *s);
    if (!s)
        return bpi_fail(BP_ENOMEM, "bp_net_create: cannot allocate the scheduler");
    bp_status st = plan_for(net, &s->plan);
    if (st == BP_OK && s->plan.n_groups < 2) {
        bpi_sched_destroy(s); /* the baseline won: nothing to schedule */
        return BP_OK;
    }
    if (st == BP_OK)
        st = alloc_groups(s, net);
    if (st != BP_OK) {
        bpi_sched_destroy(s);
        return st;
    }
    s->n_threads = net->ctx->n_threads;
    st = pinning_create(net->ctx, s->n_threads, &s->pin);
    if (st != BP_OK) {
        bpi_sched_destroy(s);
        return st;
    }
    *out = s;
    return BP_OK;
}

void bpi_sched_destroy(bpi_sched *s)
{
    if (!s)
        return;
    for (int g = 0; s->envs && g < s->n_envs; g++)
        bpi_free(s->envs[g].workspace);
    bpi_free(s->envs);
    bpi_free(s->barriers);
    bpi_free(s->done);
    pinning_free(s->pin);
    bpi_plan_free(&s->plan);
    bpi_free(s);
}

int bpi_sched_usable(const bpi_sched *s, const bp_net *net)
{
    return s && s->n_threads == net->ctx->n_threads &&
           net->ctx->backward == BP_BACKWARD_SCHEDULED;
}

/* ------------------------------------------------------------ the tasks */

/* Only the last layer's: every other layer's dZ comes out of the input
 * gradient of the layer above (bpi_net_input_grad_team), so its ACT task
 * has nothing left to do (act_fused). */
static int act_fused(const bp_net *net, int layer)
{
    return (size_t)layer + 1 < net->n_layers;
}

static void run_task(bp_net *net, bpi_sched *s, const bpi_team *team, int g, const bpi_task *t)
{
    switch (t->kind) {
    case BPI_T_ACT: bpi_net_act_backward_team(net, team, (size_t)t->layer); break;
    case BPI_T_DX: bpi_net_input_grad_team(net, &s->envs[g], team, (size_t)t->layer); break;
    case BPI_T_DW: bpi_net_weight_grad_team(net, &s->envs[g], team, (size_t)t->layer); break;
    case BPI_T_NORM:
    case BPI_T_UPDATE: break; /* planned only with updates, which run in bp_optim_step */
    }
}

/* Group g's list (g = n_groups: the joint one), on this thread as member
 * of the team. */
static void run_list(bp_net *net, bpi_sched *s, int tid, int g)
{
    const bpi_plan *p = &s->plan;
    bpi_team team = {tid - p->groups[g].first_thread, p->groups[g].n_threads, &s->barriers[g]};
    for (int k = p->start[g]; k < p->start[g + 1]; k++) {
        const bpi_task *t = &p->tasks[p->order[k]];
        for (int d = 0; d < t->n_deps; d++)
            bpi_wait_flag(&s->done[t->deps[d]]);
        /* A fused ACT is done when its one dependency, the DX above that
         * wrote its dZ, is: no work, no barrier. */
        if (t->kind == BPI_T_ACT && act_fused(net, t->layer)) {
            if (team.rank == 0)
                atomic_store_explicit(&s->done[p->order[k]], 1, memory_order_release);
            continue;
        }
        run_task(net, s, &team, g, t);
        bpi_barrier_wait(team.barrier); /* the whole team is done with it */
        if (team.rank == 0)
            atomic_store_explicit(&s->done[p->order[k]], 1, memory_order_release);
    }
}

/* Thread tid of the region: its group's list, then the joint list with
 * every other thread. A member may start its share of a joint task while
 * others still finish their lists: the engine splits the work without
 * waiting, and the task's barrier ends it. */
static void run_thread(bp_net *net, bpi_sched *s, int tid)
{
    const bpi_plan *p = &s->plan;
    int g = 0;
    while (g + 1 < p->n_groups && tid >= p->groups[g + 1].first_thread)
        g++;
    run_list(net, s, tid, g);
    run_list(net, s, tid, p->n_groups);
}

void bpi_sched_reset(bpi_sched *s)
{
    for (int k = 0; k < s->plan.n_tasks; k++)
        atomic_store_explicit(&s->done[k], 0, memory_order_relaxed);
}

int bpi_sched_enter(bpi_sched *s, int tid)
{
    return pin(s->pin, tid);
}

void bpi_sched_run(bp_net *net, bpi_sched *s, int tid)
{
    run_thread(net, s, tid);
}

void bpi_sched_leave(bpi_sched *s, int tid, int pinned)
{
    if (pinned)
        unpin(s->pin, tid);
}

int bpi_sched_backward(bp_net *net, bpi_sched *s)
{
    bpi_sched_reset(s);
    int nt = s->n_threads, ran = 0;
#if BP_HAVE_OPENMP
#pragma omp parallel num_threads(nt)
    {
        /* A region with fewer threads than the plan (nested in the caller's
         * region, or thread limits) cannot run it: nobody starts, and the
         * caller runs the sequential backward instead. */
        if (omp_get_num_threads() == nt) {
            int tid = omp_get_thread_num();
            int pinned = bpi_sched_enter(s, tid);
            bpi_fpmode fp = bpi_fpmode_enter(); /* as in every region: see fpmode.h */
            run_thread(net, s, tid);
            bpi_fpmode_leave(&fp);
            bpi_sched_leave(s, tid, pinned);
            if (tid == 0)
                ran = 1;
        }
    }
#else
    (void)net, (void)nt, (void)run_thread; /* never reached: threads >= 2 */
#endif
    return ran;
}
