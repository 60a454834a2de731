/* The backward planner: a pure function from (topology, thread budget, layer
 * shapes, batch) to a plan saying which group of cores runs each task of
 * one backward pass (and optimizer update), in which order.
 *
 * Tasks of layer i (last to first):
 *   ACT_i     dZ_i = dA_i * act'(Z_i)                       (critical path;
 *             for all but the last layer it runs in DX_{i+1}'s write-back
 *             (dense.h), and the task costs and does nothing)
 *   DX_i      dA_{i-1} = dZ_i W_i          (GEMM NN)         (critical path;
 *             skipped for layer 0 unless the input gradient is wanted)
 *   DW_i      dW_i = dZ_i^T A_{i-1} (GEMM TN), db_i = colsum dZ_i,
 *             and layer i's share of the gradient norm    (off the path)
 *   NORM      the global gradient check and norm, after every DW
 *   UPDATE_i  the optimizer on layer i, after NORM and DX_i (which reads
 *             W_i), on the group that ran DW_i while dW_i is in its cache
 * Dependencies: ACT_i <- DX_{i+1}; DX_i <- ACT_i; DW_i <- ACT_i;
 * NORM <- all DW; UPDATE_i <- NORM, DX_i.
 *
 * The executor (sched_exec.c) runs ACT, DX and DW by the plan; NORM and
 * UPDATE are modelled (with_update) but the update still runs in
 * bp_optim_step on all threads: the model charges an update on a small group
 * its smaller memory bandwidth, and fusing it is the next step.
 *
 * Groups are disjoint ranges of the region's threads, cut along the cache
 * domains hwloc reports; group 0 runs the critical path. Once every group
 * has worked through its list, all threads together (the "joint" group,
 * index n_groups) run the joint list: the weight gradients of the first
 * layers, which become ready only when the critical path ends and would
 * otherwise leave all groups but one idle (and then NORM and every UPDATE).
 * Several partitions, each with 0, 1 or 2 joint weight gradients, are
 * simulated with the cost model (sched_cost.c) and the fastest wins; the
 * single group of all threads (the sequential baseline) is always a
 * candidate, so a plan is never predicted slower than it. */
#ifndef BP_SCHED_PLAN_H
#define BP_SCHED_PLAN_H

#include <stddef.h>

#include "backprop.h"
#include "topo_desc.h"

#define BPI_SCHED_MAX_GROUPS 64

typedef enum bpi_task_kind { BPI_T_ACT, BPI_T_DX, BPI_T_DW, BPI_T_NORM, BPI_T_UPDATE } bpi_task_kind;

typedef struct bpi_task {
    bpi_task_kind kind;
    int layer;               /* -1 for NORM */
    int group;               /* n_groups: joint, on all threads */
    int n_deps;
    int deps[2];             /* task indices; NORM's dependencies are all DW tasks */
    double cost;             /* predicted seconds on its group */
    double start, end;       /* predicted */
} bpi_task;

typedef struct bpi_group {
    int first_thread, n_threads; /* threads [first, first + n) of the region */
    int numa;                    /* NUMA node of its first core */
    int n_l3, n_numa, n_packages; /* domains it spans */
} bpi_group;

typedef struct bpi_plan_input {
    const bpi_topo_desc *topo;
    int n_threads;               /* budget: thread t runs on core t mod n_cores */
    size_t n_layers;
    const size_t *n_in, *n_out;  /* per layer */
    size_t batch;
    int input_grad;              /* run DX_0 */
    int with_update;             /* plan NORM and UPDATE tasks */
    int allow_groups;            /* 0: only the sequential baseline */
} bpi_plan_input;

typedef struct bpi_plan {
    int n_layers, n_tasks, n_groups;
    bpi_task *tasks;             /* n_tasks, in a valid (topological) order */
    bpi_group groups[BPI_SCHED_MAX_GROUPS + 1]; /* [n_groups]: all threads (joint) */
    int *order;                  /* tasks of group g: order[start[g] .. start[g + 1]),
                                    g = n_groups the joint list (may be empty) */
    int start[BPI_SCHED_MAX_GROUPS + 2];
    int *layer_numa;             /* NUMA node for each layer's parameters and state */
    double makespan;             /* predicted seconds of this plan */
    double sequential;           /* predicted seconds of the baseline */
} bpi_plan;

/* Build *plan (its arrays allocated here; free with bpi_plan_free). */
bp_status bpi_plan_build(const bpi_plan_input *in, bpi_plan *plan);
void bpi_plan_free(bpi_plan *plan);

/* Whether the plan has a joint list (tasks all threads run at the end). */
static inline int bpi_plan_has_joint(const bpi_plan *plan)
{
    return plan->start[plan->n_groups + 1] > plan->start[plan->n_groups];
}

/* Index of task (kind, layer) in plan->tasks, or -1. */
int bpi_plan_find(const bpi_plan *plan, bpi_task_kind kind, int layer);

/* The cost model (sched_cost.c): predicted seconds of a GEMM (M, N, K) and
 * of a pass streaming `bytes` through memory, on group g's threads. */
double bpi_cost_gemm(size_t M, size_t N, size_t K, const bpi_group *g);
double bpi_cost_stream(double bytes, const bpi_group *g);

#endif
