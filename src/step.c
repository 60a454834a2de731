/* One training step (forward, loss, scheduled backward, update) in one
 * OpenMP parallel region.
 *
 * The plain step opens a region per forward GEMM, one for the backward
 * plan and two for the update passes: six per step on 784-256-128-100-10
 * at 2 threads, each costing 3.1-3.5 us to fork and join on the Zen 5 VMs
 * (an empty region, measured) against 0.5-0.7 us for a spinning barrier
 * (team.c) between the phases here. The phases and their order are the
 * plain step's, and so is every bit (no result depends on how the work is
 * split): the backward runs the same plan and the update the same chunks
 * (optim.h's phases). Work the plain step keeps on one thread, because
 * waking another would cost more than it saves, is split here, where the
 * other threads would only wait at the next barrier: the small forward
 * GEMMs (bpi_sgemm_team_fit_epi) and the loss head's rows. On
 * 784-256-128-100-10 at 2 threads the loss went from 15.5 to 5.5 us (with
 * one exp per element instead of two, head.c), and the wait for the last
 * layer's forward (128x10x100, one thread's work in the plain step) from
 * 7 us to none measurable; +5 % samples/s over the region alone.
 *
 * An epoch's step also gathers its shuffled rows into the staging buffers
 * there, each thread its share, instead of in a region of their own
 * before it (train.c).
 *
 * The backward is the plan when there is one for this thread count, else
 * the sequential backward with each GEMM on all the threads. Taken on 2 or
 * more threads when nobody listens for each layer's gradients (MPI); the
 * plain step otherwise. */
#include <math.h>
#include <string.h>

#include "bp_config.h"
#include "fpmode.h"
#include "net.h"
#include "optim.h"
#include "sched.h"
#include "step.h"
#include "team.h"
#include "train.h"

#if BP_HAVE_OPENMP
#include <omp.h>
#endif

/* What the threads tell each other, and the caller, through memory. */
typedef struct step_state {
    double loss;       /* mean loss, on every thread alike */
    bp_status prepare; /* the update's arguments (thread 0) */
    int ran;
} step_state;

#if BP_HAVE_OPENMP
/* The update of the gradients just computed: optim.h's phases, a barrier
 * wherever one thread's part must see every other's. */
static void update(bp_optim *opt, const bpi_team *team, step_state *st, const char *fn)
{
    double sum_squares = 0.0;
    if (opt->cfg.clip_norm > 0.0f) {
        bpi_optim_norm_part(opt, team->rank, team->size);
        bpi_barrier_wait(team->barrier);
        sum_squares = bpi_optim_norm_total(opt);
    }
    if (team->rank == 0) {
        opt->net->grad_bound_valid = 1; /* the backward's GEMMs raised dW_absmax */
        st->prepare = bpi_optim_prepare(opt, sum_squares, fn);
    }
    bpi_barrier_wait(team->barrier);
    if (st->prepare != BP_OK)
        return;
    bpi_optim_check_part(opt, team->rank, team->size);
    bpi_barrier_wait(team->barrier);
    if (!bpi_optim_check_failed(opt))
        bpi_optim_write_part(opt, team->rank, team->size);
}

/* Thread tid's whole step. */
static void run(bp_net *net, bp_optim *opt, const bpi_rows *rows, const float *X,
                const int32_t *labels, const float *targets, size_t B, step_state *st,
                int tid, int nt, const char *fn)
{
    bpi_sched *s = bpi_sched_usable(net->sched, net) ? net->sched : NULL;
    bpi_team team = {tid, nt, &net->step_barrier};
    int pinned = s ? bpi_sched_enter(s, tid) : 0;
    bpi_fpmode fp = bpi_fpmode_enter(); /* as in every region: see fpmode.h */
    if (rows) {
        size_t lo, hi;
        bpi_team_range(&team, B, &lo, &hi);
        bpi_train_gather_rows(net, rows->ds, rows->start, lo, hi);
        bpi_barrier_wait(team.barrier); /* the forward reads every row */
    }
    bpi_net_forward_team(net, &team, X, B, 1);
    double loss = bpi_net_loss_team(net, &team, B, labels, targets, 1);
    if (tid == 0)
        st->loss = loss;
    if (isfinite(loss)) { /* the same verdict on every thread */
        if (s) {
            bpi_sched_run(net, s, tid);
            bpi_barrier_wait(team.barrier); /* every gradient is final */
        } else {
            bpi_net_backward_team(net, &team);
        }
        update(opt, &team, st, fn);
    }
    bpi_fpmode_leave(&fp);
    if (s)
        bpi_sched_leave(s, tid, pinned);
}
#endif

int bpi_step_one_region(bp_net *net, bp_optim *opt, const bpi_rows *rows, const float *X,
                        const int32_t *labels, const float *targets, size_t B, float *loss,
                        bp_status *status, const char *fn)
{
#if BP_HAVE_OPENMP
    int nt = net->ctx->n_threads;
    if (nt < 2 || net->grads_ready || omp_in_parallel())
        return 0;
    /* what the plain forward and backward set before and after */
    net->batch = B;
    net->x_last = X;
    net->grad_bound_valid = 0;
    memset(net->dW_absmax, 0, net->n_layers * sizeof *net->dW_absmax);
    if (bpi_sched_usable(net->sched, net))
        bpi_sched_reset(net->sched);
    bpi_barrier_init(&net->step_barrier, (unsigned)nt); /* nobody waits in it now */
    step_state st = {0.0, BP_OK, 0};
#pragma omp parallel num_threads(nt)
    {
        /* Fewer threads than asked for (thread limits): nobody starts, and
         * the caller takes the plain step, which copes. */
        if (omp_get_num_threads() == nt) {
            int tid = omp_get_thread_num();
            run(net, opt, rows, X, labels, targets, B, &st, tid, nt, fn);
            if (tid == 0)
                st.ran = 1;
        }
    }
    if (!st.ran)
        return 0;
    net->one_region_steps++;
    if (!isfinite(st.loss)) {
        *status = bpi_net_loss_failure(net, labels, targets, fn);
        return 1;
    }
    if (loss)
        *loss = (float)st.loss;
    if (st.prepare != BP_OK)
        *status = st.prepare;
    else if (bpi_optim_check_failed(opt))
        *status = bpi_optim_refusal(opt, fn);
    else {
        bpi_optim_finish(opt);
        *status = BP_OK;
    }
    return 1;
#else
    (void)net, (void)opt, (void)rows, (void)X, (void)labels, (void)targets, (void)B;
    (void)loss, (void)status, (void)fn;
    return 0;
#endif
}
