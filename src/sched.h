/* The scheduled backward pass: a plan (sched_plan.h) for a net on its
 * context's threads, and the executor that runs it in one OpenMP parallel
 * region, groups of threads working through their task lists and waiting on
 * each other through per-task flags. */
#ifndef BP_SCHED_H
#define BP_SCHED_H

#include <stdatomic.h>

#include "gemm.h"
#include "sched_plan.h"
#include "team.h"

struct bp_net;

typedef struct bpi_sched {
    bpi_plan plan;
    int n_threads;           /* the context's thread count the plan was made for */
    int n_envs;              /* groups, and the joint one when it has tasks */
    bpi_gemm_env *envs;      /* per group: the GEMM engine on that group's threads */
    bpi_barrier *barriers;   /* per group */
    atomic_int *done;        /* per task */
    struct bpi_pinning *pin; /* binding each thread to its core, or NULL */
} bpi_sched;

/* Plan the backward of `net` on its context's threads (at set-up: this
 * allocates). On a plan that is just the sequential baseline, or when the
 * context asks for the sequential backward, *sched is left empty. */
bp_status bpi_sched_create(struct bp_net *net, bpi_sched **sched);
void bpi_sched_destroy(bpi_sched *sched);

/* Whether the plan can run now (it was made for the current thread count). */
int bpi_sched_usable(const bpi_sched *sched, const struct bp_net *net);

/* Run ACT, DX and DW of every layer by the plan, for the batch of the last
 * forward, dA of the last layer already filled. Same bits as the
 * sequential backward. Returns 0 if it could not run (the region got fewer
 * threads than planned): the caller then runs the sequential backward. */
int bpi_sched_backward(struct bp_net *net, bpi_sched *sched);

/* bpi_sched_backward's pieces, for a caller that runs the plan inside a
 * parallel region of its own with exactly sched->n_threads threads
 * (step.c): reset before the region; in it, thread tid calls enter (which
 * binds it to its core; returns whether to unbind), run (which returns
 * when the thread's task lists are done: the caller's barrier then ends
 * the backward), and leave at the region's end. */
void bpi_sched_reset(bpi_sched *sched);
int bpi_sched_enter(bpi_sched *sched, int tid);
void bpi_sched_run(struct bp_net *net, bpi_sched *sched, int tid);
void bpi_sched_leave(bpi_sched *sched, int tid, int pinned);

#endif
