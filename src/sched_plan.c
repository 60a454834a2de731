/* The backward planner (see sched_plan.h): build the task graph, simulate it
 * on candidate partitions of the threads with the cost model, keep the
 * fastest. Pure: no I/O, no global state; allocation only for the result. */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "sched_plan.h"

/* A partition of threads [0, T) into consecutive groups; group 0 runs the
 * critical path. */
typedef struct partition {
    int n;
    int first[BPI_SCHED_MAX_GROUPS], size[BPI_SCHED_MAX_GROUPS];
} partition;

/* A scheduled plan must beat the baseline by this much to be chosen: below
 * it the model's error is larger than the gain. */
#define MIN_GAIN 1.03

/* Joint weight gradients tried: those that become ready only as the
 * critical path ends (the first layer's, sometimes the second's). */
#define MAX_JOINT 2

static const bpi_core *core_of(const bpi_plan_input *in, int thread)
{
    return &in->topo->cores[thread % in->topo->n_cores];
}

/* ------------------------------------------------------------ the graph */

static int add_task(bpi_plan *p, bpi_task_kind kind, int layer, int dep0, int dep1)
{
    bpi_task *t = &p->tasks[p->n_tasks];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->layer = layer;
    t->deps[0] = dep0;
    t->deps[1] = dep1;
    t->n_deps = (dep0 >= 0) + (dep1 >= 0);
    if (dep0 < 0 && dep1 >= 0)
        t->deps[0] = dep1, t->deps[1] = -1;
    return p->n_tasks++;
}

/* Tasks in creation order, which is topological: for i = last..0 ACT_i, DX_i,
 * DW_i; then NORM and UPDATE_i. */
static void build_graph(const bpi_plan_input *in, bpi_plan *p)
{
    int L = (int)in->n_layers, prev_dx = -1;
    for (int i = L - 1; i >= 0; i--) {
        int act = add_task(p, BPI_T_ACT, i, prev_dx, -1);
        prev_dx = i > 0 || in->input_grad ? add_task(p, BPI_T_DX, i, act, -1) : -1;
        add_task(p, BPI_T_DW, i, act, -1);
    }
    if (!in->with_update)
        return;
    int norm = add_task(p, BPI_T_NORM, -1, -1, -1); /* deps: every DW, implicit */
    for (int i = L - 1; i >= 0; i--)
        add_task(p, BPI_T_UPDATE, i, norm, bpi_plan_find(p, BPI_T_DX, i));
}

int bpi_plan_find(const bpi_plan *p, bpi_task_kind kind, int layer)
{
    for (int t = 0; t < p->n_tasks; t++)
        if (p->tasks[t].kind == kind && p->tasks[t].layer == layer)
            return t;
    return -1;
}

/* ------------------------------------------------------------ the costs */

static double task_cost(const bpi_plan_input *in, const bpi_task *t, const bpi_group *g)
{
    if (t->kind == BPI_T_NORM)
        return 1e-6;
    size_t n_in = in->n_in[t->layer], n_out = in->n_out[t->layer], B = in->batch;
    switch (t->kind) {
    case BPI_T_ACT: /* all but the last layer's run in the DX above's write-back */
        return (size_t)t->layer + 1 < in->n_layers ? 0.0
                                                    : bpi_cost_stream(16.0 * (double)(B * n_out), g);
    case BPI_T_DX: return bpi_cost_gemm(B, n_in, n_out, g);
    case BPI_T_DW:
        return bpi_cost_gemm(n_out, n_in, B, g) + bpi_cost_stream(4.0 * (double)(B * n_out), g);
    case BPI_T_UPDATE: return bpi_cost_stream(28.0 * (double)(n_out * n_in + n_out), g);
    case BPI_T_NORM: break;
    }
    return 0.0;
}

/* ------------------------------------------------------- the simulation */

/* groups[0 .. n) from the partition, groups[n] all threads (joint). */
static void describe_groups(const bpi_plan_input *in, const partition *part, bpi_plan *p)
{
    p->n_groups = part->n;
    for (int g = 0; g <= part->n; g++) {
        bpi_group *G = &p->groups[g];
        G->first_thread = g < part->n ? part->first[g] : 0;
        G->n_threads = g < part->n ? part->size[g] : in->n_threads;
        G->numa = core_of(in, G->first_thread)->numa;
        char l3[BPI_TOPO_MAX_CORES] = {0}, numa[BPI_TOPO_MAX_CORES] = {0};
        char pack[BPI_TOPO_MAX_CORES] = {0};
        G->n_l3 = G->n_numa = G->n_packages = 0;
        for (int t = G->first_thread; t < G->first_thread + G->n_threads; t++) {
            const bpi_core *c = core_of(in, t);
            G->n_l3 += !l3[c->l3], l3[c->l3] = 1;
            G->n_numa += !numa[c->numa], numa[c->numa] = 1;
            G->n_packages += !pack[c->package], pack[c->package] = 1;
        }
    }
}

static double dep_ready(const bpi_plan *p, const bpi_task *t)
{
    double ready = 0.0;
    if (t->kind == BPI_T_NORM) {
        for (int k = 0; k < p->n_tasks; k++)
            if (p->tasks[k].kind == BPI_T_DW && p->tasks[k].end > ready)
                ready = p->tasks[k].end;
    }
    for (int d = 0; d < t->n_deps; d++)
        if (p->tasks[t->deps[d]].end > ready)
            ready = p->tasks[t->deps[d]].end;
    return ready;
}

static void place(const bpi_plan_input *in, bpi_plan *p, bpi_task *t, int g, double *free_at)
{
    t->group = g;
    t->cost = task_cost(in, t, &p->groups[g]);
    double ready = dep_ready(p, t);
    t->start = ready > free_at[g] ? ready : free_at[g];
    t->end = t->start + t->cost;
    free_at[g] = t->end;
}

/* List scheduling: the critical path on group 0 first (it depends on nothing
 * else), then each DW on the group where it finishes earliest, but for the
 * last n_joint DW (the first layers'), which go to the joint list; NORM on
 * group 0 and each UPDATE where its DW ran, or all of them joint when any
 * DW is. Joint tasks start when every group is done. Returns the makespan. */
static double simulate(const bpi_plan_input *in, const partition *part, int n_joint,
                       bpi_plan *p)
{
    double free_at[BPI_SCHED_MAX_GROUPS + 1] = {0};
    int joint = part->n, n_dw = 0;
    describe_groups(in, part, p);
    for (int k = 0; k < p->n_tasks; k++) {
        p->tasks[k].end = 0.0;
        n_dw += p->tasks[k].kind == BPI_T_DW;
    }
    for (int k = 0; k < p->n_tasks; k++)
        if (p->tasks[k].kind == BPI_T_ACT || p->tasks[k].kind == BPI_T_DX)
            place(in, p, &p->tasks[k], 0, free_at);
    for (int k = 0, dw = 0; k < p->n_tasks; k++) {
        bpi_task *t = &p->tasks[k];
        if (t->kind != BPI_T_DW || dw++ >= n_dw - n_joint)
            continue;
        int best = 0;
        double best_end = 0.0;
        for (int g = 0; g < p->n_groups; g++) {
            double ready = dep_ready(p, t);
            double start = ready > free_at[g] ? ready : free_at[g];
            double end = start + task_cost(in, t, &p->groups[g]);
            if (g == 0 || end < best_end)
                best = g, best_end = end;
        }
        place(in, p, t, best, free_at);
    }
    for (int g = 0; g < part->n; g++)
        free_at[joint] = free_at[g] > free_at[joint] ? free_at[g] : free_at[joint];
    for (int k = 0, dw = 0; k < p->n_tasks; k++)
        if (p->tasks[k].kind == BPI_T_DW && dw++ >= n_dw - n_joint)
            place(in, p, &p->tasks[k], joint, free_at);
    for (int k = 0; k < p->n_tasks; k++) {
        bpi_task *t = &p->tasks[k];
        if (t->kind == BPI_T_NORM)
            place(in, p, t, n_joint ? joint : 0, free_at);
        else if (t->kind == BPI_T_UPDATE)
            place(in, p, t,
                  n_joint ? joint : p->tasks[bpi_plan_find(p, BPI_T_DW, t->layer)].group,
                  free_at);
    }
    double makespan = 0.0;
    for (int k = 0; k < p->n_tasks; k++)
        makespan = p->tasks[k].end > makespan ? p->tasks[k].end : makespan;
    return makespan;
}

/* ------------------------------------------------------- the candidates */

/* Maximal runs of consecutive threads sharing the id at `field` of bpi_core. */
static int domain_partition(const bpi_plan_input *in, size_t field, partition *part)
{
    part->n = 0;
    for (int t = 0; t < in->n_threads; t++) {
        int id = *(const int *)((const char *)core_of(in, t) + field);
        int prev = t ? *(const int *)((const char *)core_of(in, t - 1) + field) : -1;
        if (t == 0 || id != prev) {
            if (part->n == BPI_SCHED_MAX_GROUPS)
                return 0;
            part->first[part->n] = t;
            part->size[part->n++] = 0;
        }
        part->size[part->n - 1]++;
    }
    return part->n >= 2;
}

static int two_way(int T, int k, partition *part)
{
    if (k < 1 || k >= T)
        return 0;
    *part = (partition){2, {0, k}, {k, T - k}};
    return 1;
}

static int same_partition(const partition *a, const partition *b)
{
    if (a->n != b->n)
        return 0;
    for (int g = 0; g < a->n; g++)
        if (a->first[g] != b->first[g] || a->size[g] != b->size[g])
            return 0;
    return 1;
}

/* Every candidate, the baseline first; duplicates removed. */
static int candidates(const bpi_plan_input *in, partition *out, int cap)
{
    int T = in->n_threads, n = 0;
    out[n++] = (partition){1, {0}, {T}};
    if (!in->allow_groups || T < 2)
        return n;
    partition c;
    const size_t levels[] = {offsetof(bpi_core, package), offsetof(bpi_core, numa),
                             offsetof(bpi_core, l3), offsetof(bpi_core, l2)};
    const int splits[] = {1, T / 4, T / 2, (3 * T) / 4, T - 1};
    for (size_t k = 0; k < sizeof levels / sizeof levels[0] + sizeof splits / sizeof splits[0]; k++) {
        int ok = k < 4 ? domain_partition(in, levels[k], &c) : two_way(T, splits[k - 4], &c);
        int dup = 0;
        for (int j = 0; ok && j < n; j++)
            dup |= same_partition(&out[j], &c);
        if (ok && !dup && n < cap)
            out[n++] = c;
    }
    return n;
}

/* ----------------------------------------------------------- the result */

/* Each group's tasks by predicted start, ties by index: a topological order
 * in which no group can wait on a task queued behind its own. */
static void group_orders(bpi_plan *p)
{
    int at = 0;
    for (int g = 0; g <= p->n_groups; g++) {
        p->start[g] = at;
        for (int k = 0; k < p->n_tasks; k++)
            if (p->tasks[k].group == g)
                p->order[at++] = k;
        for (int i = p->start[g] + 1; i < at; i++) /* insertion sort: stable */
            for (int j = i; j > p->start[g]; j--) {
                const bpi_task *a = &p->tasks[p->order[j - 1]], *b = &p->tasks[p->order[j]];
                if (a->start <= b->start)
                    break;
                int tmp = p->order[j];
                p->order[j] = p->order[j - 1];
                p->order[j - 1] = tmp;
            }
    }
    p->start[p->n_groups + 1] = at;
}

static bp_status check_input(const bpi_plan_input *in)
{
    if (!in || !in->topo || !in->n_in || !in->n_out)
        return bpi_fail(BP_EINVAL, "planner: NULL input");
    if (in->n_threads < 1 || in->topo->n_cores < 1)
        return bpi_fail(BP_EINVAL, "planner: %d threads on %d cores", in->n_threads,
                        in->topo->n_cores);
    if (in->n_layers < 1 || in->n_layers > 4096 || in->batch < 1)
        return bpi_fail(BP_EINVAL, "planner: %zu layers, batch %zu", in->n_layers, in->batch);
    return BP_OK;
}

bp_status bpi_plan_build(const bpi_plan_input *in, bpi_plan *plan)
{
    BPI_TRY(check_input(in));
    memset(plan, 0, sizeof *plan);
    size_t max_tasks = 4 * in->n_layers + 1;
    plan->tasks = bpi_alloc(max_tasks * sizeof *plan->tasks);
    plan->order = bpi_alloc(max_tasks * sizeof *plan->order);
    plan->layer_numa = bpi_alloc(in->n_layers * sizeof *plan->layer_numa);
    if (!plan->tasks || !plan->order || !plan->layer_numa) {
        bpi_plan_free(plan);
        return bpi_fail(BP_ENOMEM, "planner: cannot allocate the plan");
    }
    plan->n_layers = (int)in->n_layers;
    build_graph(in, plan);

    partition cand[16];
    int n_cand = candidates(in, cand, 16), best = 0, best_joint = 0;
    double best_time = 0.0;
    for (int c = 0; c < n_cand; c++)
        for (int j = 0; j <= (c ? MAX_JOINT : 0) && (size_t)j <= in->n_layers; j++) {
            double t = simulate(in, &cand[c], j, plan);
            if (c == 0)
                plan->sequential = best_time = t;
            else if (t * MIN_GAIN < plan->sequential && t < best_time)
                best = c, best_joint = j, best_time = t;
        }
    plan->makespan = simulate(in, &cand[best], best_joint, plan);
    group_orders(plan);
    for (int i = 0; i < plan->n_layers; i++)
        plan->layer_numa[i] = plan->groups[plan->tasks[bpi_plan_find(plan, BPI_T_DW, i)].group].numa;
    return BP_OK;
}

void bpi_plan_free(bpi_plan *plan)
{
    if (!plan)
        return;
    bpi_free(plan->tasks);
    bpi_free(plan->order);
    bpi_free(plan->layer_numa);
    plan->tasks = NULL;
    plan->order = plan->layer_numa = NULL;
}
