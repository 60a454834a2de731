/* The backward scheduler: plans on synthetic topologies (hwloc synthetic
 * strings and hand-made uneven ones) obey their invariants, and executing
 * them gives the same bits as the sequential backward on this machine. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_config.h"
#include "ctx.h"
#include "net.h"
#include "optim.h"
#include "sched.h"
#include "testutil.h"
#include "tu_suite.h"
#include "topo_desc.h"

#if BP_HAVE_HWLOC
#include <hwloc.h>
#endif
#if BP_HAVE_OPENMP
#include <omp.h>
#endif

#define OK(expr) ck_assert_msg((expr) == BP_OK, "%s: %s", #expr, bp_last_error())

static const char *synthetic[] = {
    "pack:1 l3:1(size=32MiB) l2:1(size=1MiB) l1d:1(size=48KiB) core:1 pu:1",  /* 1 core */
    "pack:1 l3:1(size=32MiB) l2:2(size=1MiB) l1d:1(size=48KiB) core:1 pu:1",  /* this VM */
    "pack:1 l3:1(size=32MiB) l2:8(size=1MiB) l1d:1(size=48KiB) core:1 pu:2",  /* 8 cores, one L3 */
    /* 2 packages x 2 NUMA nodes x 4 L3 groups x 8 cores */
    "pack:2 group:2 [numa(memory=32GiB)] l3:4(size=32MiB) l2:8(size=1MiB) l1d:1(size=48KiB) core:1 pu:2",
};
#define N_SYNTH (sizeof synthetic / sizeof synthetic[0])

/* Uneven: L3 domains of 3, 5 and 2 cores, the last on a second NUMA node. */
static void uneven(bpi_topo_desc *d)
{
    static const int l3_of[10] = {0, 0, 0, 1, 1, 1, 1, 1, 2, 2};
    bpi_topo_flat(d, 10);
    for (int c = 0; c < 10; c++) {
        d->cores[c].l3 = l3_of[c];
        d->cores[c].numa = l3_of[c] == 2;
        d->cores[c].package = l3_of[c] == 2;
    }
    d->n_l3 = 3;
    d->n_numa = d->n_packages = 2;
}

/* A build without hwloc cannot read synthetic strings (it says so); it
 * plans on flat machines of the same core counts instead. */
static bpi_topo_desc *topology(size_t which)
{
    static const int n_cores[N_SYNTH] = {1, 2, 8, 128};
    bpi_topo_desc *d = malloc(sizeof *d);
    ck_assert_ptr_nonnull(d);
    if (which < N_SYNTH && (bp_build_features() & BP_FEATURE_HWLOC))
        OK(bpi_topo_describe(d, synthetic[which], NULL, 1));
    else if (which < N_SYNTH) {
        ck_assert_int_eq(bpi_topo_describe(d, synthetic[which], NULL, 1), BP_EUNSUPPORTED);
        bpi_topo_flat(d, n_cores[which]);
    } else
        uneven(d);
    return d;
}

/* Every invariant a plan must keep. */
static void check_plan(const bpi_plan_input *in, const bpi_plan *p, const char *what)
{
    /* Groups: disjoint consecutive ranges covering the budget. */
    int next = 0;
    for (int g = 0; g < p->n_groups; g++) {
        ck_assert_msg(p->groups[g].first_thread == next && p->groups[g].n_threads >= 1,
                      "%s: group %d is [%d, +%d), expected to start at %d", what, g,
                      p->groups[g].first_thread, p->groups[g].n_threads, next);
        next += p->groups[g].n_threads;
    }
    ck_assert_msg(next == in->n_threads, "%s: groups hold %d threads of %d", what, next,
                  in->n_threads);
    /* No core oversubscribed: within the budget, one thread per core. */
    if (in->n_threads <= in->topo->n_cores) {
        char used[BPI_TOPO_MAX_CORES] = {0};
        for (int t = 0; t < in->n_threads; t++) {
            ck_assert_msg(!used[t % in->topo->n_cores], "%s: core %d used twice", what, t);
            used[t % in->topo->n_cores] = 1;
        }
    }
    /* Each task once, in its group's list. */
    int *seen = calloc((size_t)p->n_tasks, sizeof *seen);
    ck_assert_ptr_nonnull(seen);
    ck_assert_int_eq(p->start[p->n_groups + 1], p->n_tasks);
    for (int g = 0; g <= p->n_groups; g++)
        for (int k = p->start[g]; k < p->start[g + 1]; k++) {
            ck_assert_int_eq(p->tasks[p->order[k]].group, g);
            seen[p->order[k]]++;
        }
    for (int t = 0; t < p->n_tasks; t++)
        ck_assert_msg(seen[t] == 1, "%s: task %d listed %d times", what, t, seen[t]);
    free(seen);
    /* The joint list: all threads, after every group's last task. */
    const bpi_group *all = &p->groups[p->n_groups];
    ck_assert(all->first_thread == 0 && all->n_threads == in->n_threads);
    for (int k = p->start[p->n_groups]; k < p->n_tasks; k++) {
        const bpi_task *x = &p->tasks[p->order[k]];
        for (int y = 0; y < p->start[p->n_groups]; y++)
            ck_assert_msg(p->tasks[p->order[y]].end <= x->start,
                          "%s: joint task %d starts before a group's task %d ends", what,
                          p->order[k], p->order[y]);
    }
    /* Dependencies respected, in the predicted times and in each list's order. */
    for (int t = 0; t < p->n_tasks; t++) {
        const bpi_task *x = &p->tasks[t];
        for (int d = 0; d < x->n_deps; d++) {
            const bpi_task *y = &p->tasks[x->deps[d]];
            ck_assert_msg(y->end <= x->start, "%s: task %d starts before its dependency %d ends",
                          what, t, x->deps[d]);
        }
        if (x->kind == BPI_T_NORM)
            for (int k = 0; k < p->n_tasks; k++)
                if (p->tasks[k].kind == BPI_T_DW)
                    ck_assert(p->tasks[k].end <= x->start);
        /* The critical path is never starved: its tasks start the moment
         * their dependency ends, never waiting for an off-path task. */
        if (x->kind == BPI_T_ACT || x->kind == BPI_T_DX) {
            double ready = x->n_deps ? p->tasks[x->deps[0]].end : 0.0;
            ck_assert_msg(x->start == ready, "%s: critical task %d waited %g s", what, t,
                          x->start - ready);
            ck_assert_int_eq(x->group, 0);
        }
    }
    for (int g = 0; g <= p->n_groups; g++)
        for (int k = p->start[g] + 1; k < p->start[g + 1]; k++)
            ck_assert(p->tasks[p->order[k - 1]].start <= p->tasks[p->order[k]].start);
    /* Memory: each layer's parameters live where its gradients are made.
     * Each update runs where its gradient was made; with joint weight
     * gradients NORM (which waits for them all) and so every update are
     * joint, as a group's list may not wait for the joint one, which runs
     * after it: nothing in a group's list depends on a joint task. */
    int joint_dw = 0;
    for (int k = p->start[p->n_groups]; k < p->n_tasks; k++)
        joint_dw |= p->tasks[p->order[k]].kind == BPI_T_DW;
    for (int k = 0; k < p->start[p->n_groups]; k++) {
        const bpi_task *x = &p->tasks[p->order[k]];
        for (int d = 0; d < x->n_deps; d++)
            ck_assert_msg(p->tasks[x->deps[d]].group < p->n_groups,
                          "%s: task %d of group %d waits for joint task %d", what, p->order[k],
                          x->group, x->deps[d]);
        ck_assert(!(x->kind == BPI_T_NORM && joint_dw));
    }
    for (int i = 0; i < p->n_layers; i++) {
        int dw = bpi_plan_find(p, BPI_T_DW, i);
        ck_assert_int_ge(dw, 0);
        ck_assert_int_eq(p->layer_numa[i], p->groups[p->tasks[dw].group].numa);
        int up = bpi_plan_find(p, BPI_T_UPDATE, i);
        if (up >= 0)
            ck_assert_int_eq(p->tasks[up].group, joint_dw ? p->n_groups : p->tasks[dw].group);
    }
    ck_assert_msg(p->makespan <= p->sequential, "%s: plan %g s slower than sequential %g s",
                  what, p->makespan, p->sequential);
}

/* Many shapes and budgets on every topology; each plan built twice must be
 * identical. */
START_TEST(plans_keep_their_invariants)
{
    bpi_topo_desc *d = topology((size_t)_i);
    static const size_t widths[][5] = {{64, 64, 64, 10, 0}, {784, 256, 128, 100, 10},
                                       {1024, 1024, 1024, 1024, 10}, {4096, 4096, 4096, 10, 0},
                                       {3, 5, 0, 0, 0}};
    static const size_t batches[] = {1, 16, 64, 512};
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        size_t n = 0, n_in[4], n_out[4];
        while (n < 4 && widths[w][n + 1])
            n_in[n] = widths[w][n], n_out[n] = widths[w][n + 1], n++;
        for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++)
            for (int budget = 1; budget <= d->n_cores + 1; budget = budget * 2 + 1)
                for (int upd = 0; upd < 2; upd++) {
                    bpi_plan_input in = {d, budget, n, n_in, n_out, batches[b], upd, upd, 1};
                    bpi_plan p1, p2;
                    char what[160];
                    snprintf(what, sizeof what, "topology %d widths %zu batch %zu threads %d",
                             _i, w, batches[b], budget);
                    OK(bpi_plan_build(&in, &p1));
                    OK(bpi_plan_build(&in, &p2));
                    check_plan(&in, &p1, what);
                    ck_assert(p1.n_tasks == p2.n_tasks && p1.n_groups == p2.n_groups);
                    ck_assert_msg(memcmp(p1.tasks, p2.tasks, (size_t)p1.n_tasks * sizeof *p1.tasks) == 0 &&
                                  memcmp(p1.order, p2.order, (size_t)p1.n_tasks * sizeof *p1.order) == 0 &&
                                  memcmp(p1.groups, p2.groups, sizeof p1.groups) == 0,
                                  "%s: same input, different plan", what);
                    if (budget == 1)
                        ck_assert_int_eq(p1.n_groups, 1);
                    bpi_plan_free(&p1);
                    bpi_plan_free(&p2);
                }
    }
    free(d);
}
END_TEST

/* On a big server a 4 x 1024 MLP at batch 64 is worth splitting: the plan
 * uses more than one group, cut along L3 domains. */
START_TEST(big_server_splits_along_caches)
{
    bpi_topo_desc *d = topology(3);
    ck_assert_int_eq(d->n_cores, 128);
    if (!(bp_build_features() & BP_FEATURE_HWLOC)) {
        free(d); /* a flat machine: nothing to cut along */
        return;
    }
    ck_assert_int_eq(d->n_l3, 16);
    size_t n_in[4] = {1024, 1024, 1024, 1024}, n_out[4] = {1024, 1024, 1024, 1024};
    bpi_plan_input in = {d, 128, 4, n_in, n_out, 64, 0, 0, 1};
    bpi_plan p;
    OK(bpi_plan_build(&in, &p));
    ck_assert_int_ge(p.n_groups, 2);
    ck_assert(p.makespan < p.sequential);
    for (int g = 0; g < p.n_groups; g++) {
        /* A group never straddles a partial L3 domain. */
        int first = p.groups[g].first_thread, last = first + p.groups[g].n_threads - 1;
        ck_assert(first == 0 || d->cores[first].l3 != d->cores[first - 1].l3 ||
                  p.groups[g].n_threads == 1);
        (void)last;
    }
    bpi_plan_free(&p);
    free(d);
}
END_TEST

/* ------------------------------------------------------------ execution */

static bp_net *make_net(bp_ctx *ctx, size_t *widths, size_t n, size_t batch)
{
    bp_layer_spec layers[8];
    for (size_t i = 0; i < n; i++)
        layers[i] = (bp_layer_spec){widths[i + 1], i + 1 < n ? BP_ACT_GELU : BP_ACT_IDENTITY, 0};
    bp_net *net;
    OK(bp_net_create(&net, ctx, widths[0], n, layers, BP_HEAD_SOFTMAX_CE, batch));
    OK(bp_net_init(net, BP_INIT_XAVIER_UNIFORM, 3));
    return net;
}

/* Whether the net's plan runs the first layer's input gradient. */
static int plans_dx0(const bp_net *net)
{
    int dx0 = 0;
    for (int k = 0; net->sched && k < net->sched->plan.n_tasks; k++)
        dx0 |= net->sched->plan.tasks[k].kind == BPI_T_DX && net->sched->plan.tasks[k].layer == 0;
    return dx0;
}

/* A net to train: widths[0] inputs, n layers; with the first layer's input
 * gradient or not. */
typedef struct net_shape {
    size_t widths[6], n, batch;
    int input_grad;
} net_shape;

/* Two training steps with Adam; returns every parameter and gradient (and
 * the input gradient when asked for). */
static int last_run_pinned; /* run_steps' net bound its threads to cores */

static float *run_steps(const net_shape *sh, int threads, bp_backward_mode mode, int *scheduled,
                        int *joint, size_t *count)
{
    size_t B = sh->batch, n_x = B * sh->widths[0];
    bp_ctx *ctx;
    OK(bp_ctx_create(&ctx, threads));
    OK(bp_ctx_set_backward(ctx, mode));
    bp_net *net = make_net(ctx, (size_t *)sh->widths, sh->n, B);
    ck_assert_msg(!plans_dx0(net), "input gradient planned but not asked for");
    if (sh->input_grad) {
        OK(bp_net_set_input_grad(net, 1));
        ck_assert_msg(!net->sched || plans_dx0(net), "input gradient asked for but not planned");
    }
    *scheduled = net->sched != NULL;
    *joint = net->sched && bpi_plan_has_joint(&net->sched->plan);
    last_run_pinned = net->sched && net->sched->pin;
    bp_optim *opt;
    bp_optim_config cfg;
    OK(bp_optim_config_default(&cfg, BP_OPTIM_ADAM));
    OK(bp_optim_create(&opt, net, &cfg));
    float *X = malloc(n_x * sizeof *X);
    int32_t *y = malloc(B * sizeof *y);
    ck_assert(X && y);
    tu_rng r;
    tu_seed(&r, 4);
    tu_fill(&r, X, n_x, -1, 1);
    for (size_t i = 0; i < B; i++)
        y[i] = (int32_t)(tu_next(&r) % 10);
    float loss;
    for (int s = 0; s < 2; s++)
        OK(bp_train_step(net, opt, X, y, NULL, B, &loss));
    /* Gradients of the last step, then the parameters after it, then dX. */
    size_t total = 2 * net->block_floats + (sh->input_grad ? n_x : 0), at = 0;
    float *out = malloc(total * sizeof *out);
    ck_assert_ptr_nonnull(out);
    memcpy(out + at, net->grads, net->block_floats * sizeof *out), at += net->block_floats;
    memcpy(out + at, net->params, net->block_floats * sizeof *out), at += net->block_floats;
    if (sh->input_grad) {
        const float *dX;
        OK(bp_net_input_grad(net, 0, &dX, NULL, NULL));
        memcpy(out + at, dX, n_x * sizeof *out);
    }
    *count = total;
    free(X);
    free(y);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
    return out;
}

/* Both shapes on 1, 2 and (oversubscribed) 4 threads, sequential and
 * scheduled, against the 1-thread sequential run. The second shape (no
 * input gradient, the first layer's weight gradient last) is one where the
 * planner runs weight gradients jointly on this 2-core machine. */
START_TEST(scheduled_equals_sequential_bitwise)
{
    static const net_shape shapes[] = {{{96, 128, 128, 128, 10}, 4, 32, 1},
                                       {{256, 256, 256, 10}, 3, 32, 0}};
    int any_scheduled = 0, any_joint = 0;
    for (size_t k = 0; k < 2; k++) {
        int sched, joint;
        size_t n_ref, n;
        float *ref = run_steps(&shapes[k], 1, BP_BACKWARD_SEQUENTIAL, &sched, &joint, &n_ref);
        ck_assert(!sched);
        const int threads[] = {1, 2, 4};
        for (int m = 0; m < 2; m++)
            for (size_t t = 0; t < 3; t++) {
                float *got = run_steps(&shapes[k], threads[t],
                                       m ? BP_BACKWARD_SCHEDULED : BP_BACKWARD_SEQUENTIAL,
                                       &sched, &joint, &n);
                any_scheduled |= sched;
                any_joint |= joint;
                ck_assert(n == n_ref);
                ck_assert_msg(memcmp(ref, got, n * sizeof *got) == 0,
                              "shape %zu: %s backward on %d threads differs from 1-thread "
                              "sequential", k, m ? "scheduled" : "sequential", threads[t]);
                free(got);
            }
        free(ref);
    }
    /* The comparison means something only if some run used the plan (and
     * its joint list); on a 1-core machine, or without OpenMP (one thread),
     * nothing is scheduled. */
    bp_ctx *ctx;
    OK(bp_ctx_create(&ctx, 0));
    if (ctx->cores->n_cores >= 2 && (bp_build_features() & BP_FEATURE_OPENMP)) {
        ck_assert_msg(any_scheduled, "no configuration was scheduled on %d cores",
                      ctx->cores->n_cores);
        ck_assert_msg(any_joint, "no plan with a joint list ran on %d cores",
                      ctx->cores->n_cores);
    }
    bp_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------ the one-region step */

/* A net and optimizer on `threads` threads with the given backward mode,
 * with one batch of data (identical for every call). */
typedef struct trainer {
    bp_ctx *ctx;
    bp_net *net;
    bp_optim *opt;
    float X[32 * 256];
    int32_t y[32];
} trainer;

static void trainer_open(trainer *t, int threads, bp_backward_mode mode,
                         const bp_optim_config *cfg)
{
    static size_t widths[] = {256, 256, 256, 10}; /* planned (a joint list) on 2 cores */
    OK(bp_ctx_create(&t->ctx, threads));
    OK(bp_ctx_set_backward(t->ctx, mode));
    t->net = make_net(t->ctx, widths, 3, 32);
    OK(bp_optim_create(&t->opt, t->net, cfg));
    tu_rng r;
    tu_seed(&r, 11);
    tu_fill(&r, t->X, 32 * 256, -1, 1);
    for (size_t i = 0; i < 32; i++)
        t->y[i] = (int32_t)(tu_next(&r) % 10);
}

static void trainer_close(trainer *t)
{
    bp_optim_destroy(t->opt);
    bp_net_destroy(t->net);
    bp_ctx_destroy(t->ctx);
}

/* Parameters, optimizer state and step count, for "nothing changed". */
static float *trainer_state(const trainer *t, size_t *n)
{
    size_t block = t->net->block_floats;
    *n = (1 + t->opt->n_slots) * block + 1;
    float *out = malloc(*n * sizeof *out);
    ck_assert_ptr_nonnull(out);
    memcpy(out, t->net->params, block * sizeof *out);
    if (t->opt->n_slots)
        memcpy(out + block, t->opt->state, t->opt->n_slots * block * sizeof *out);
    out[*n - 1] = (float)t->opt->steps;
    return out;
}

/* Whether this machine runs plans at all (2+ cores, OpenMP). */
static int plans_run_here(void)
{
    bp_ctx *ctx;
    OK(bp_ctx_create(&ctx, 0));
    int yes = ctx->cores->n_cores >= 2 && (bp_build_features() & BP_FEATURE_OPENMP);
    bp_ctx_destroy(ctx);
    return yes;
}

/* Steps through the one-region path (2 threads, with the plan and with the
 * sequential backward) give the bits of the plain path on 1 thread, with
 * gradient clipping (whose norm is summed inside the region) and without,
 * for SGD with momentum and for Adam. */
START_TEST(one_region_step_equals_plain)
{
    bp_optim_config cfgs[3];
    OK(bp_optim_config_default(&cfgs[0], BP_OPTIM_SGD));
    cfgs[0].momentum = 0.9f;
    cfgs[1] = cfgs[0];
    cfgs[1].clip_norm = 0.05f; /* below the gradients' norm: it scales */
    OK(bp_optim_config_default(&cfgs[2], BP_OPTIM_ADAM));
    for (int c = 0; c < 3; c++) {
        for (int m = 0; m < 2; m++) {
            trainer ref, got;
            trainer_open(&ref, 1, BP_BACKWARD_SEQUENTIAL, &cfgs[c]);
            trainer_open(&got, 2, m ? BP_BACKWARD_SCHEDULED : BP_BACKWARD_SEQUENTIAL, &cfgs[c]);
            ck_assert(m == (got.net->sched != NULL) || !plans_run_here());
            float loss_ref, loss_got;
            for (int k = 0; k < 3; k++) {
                OK(bp_train_step(ref.net, ref.opt, ref.X, ref.y, NULL, 32, &loss_ref));
                OK(bp_train_step(got.net, got.opt, got.X, got.y, NULL, 32, &loss_got));
                ck_assert_msg(memcmp(&loss_ref, &loss_got, sizeof loss_ref) == 0,
                              "config %d mode %d step %d: loss %.9g against %.9g", c, m, k,
                              (double)loss_got, (double)loss_ref);
            }
            size_t n_ref, n_got;
            float *a = trainer_state(&ref, &n_ref), *b = trainer_state(&got, &n_got);
            ck_assert(n_ref == n_got);
            ck_assert_msg(memcmp(a, b, n_ref * sizeof *a) == 0, "config %d mode %d: state "
                          "differs", c, m);
            ck_assert_msg(memcmp(ref.net->grads, got.net->grads,
                                 ref.net->block_floats * sizeof(float)) == 0,
                          "config %d mode %d: gradients differ", c, m);
            ck_assert_uint_eq(ref.net->one_region_steps, 0); /* 1 thread: the plain step */
            if (bp_build_features() & BP_FEATURE_OPENMP)
                ck_assert_uint_eq(got.net->one_region_steps, 3);
            free(a);
            free(b);
            trainer_close(&ref);
            trainer_close(&got);
        }
    }
}
END_TEST

/* A step the one-region path refuses (2 threads, with the plan and with the
 * sequential backward) fails as the plain path does (1 thread; status and
 * message) and changes nothing: a NaN in the input (the loss is not
 * finite) and a learning rate that overflows the update. */
START_TEST(one_region_step_refuses_like_plain)
{
    bp_optim_config cfg;
    OK(bp_optim_config_default(&cfg, BP_OPTIM_SGD));
    cfg.momentum = 0.9f;
    for (int bad = 0; bad < 2; bad++) {
        if (bad == 1)
            cfg.lr = 3e38f;
        char msg[3][512];
        for (int m = 0; m < 3; m++) { /* plain; one region sequential; one region planned */
            trainer t;
            trainer_open(&t, m ? 2 : 1, m == 2 ? BP_BACKWARD_SCHEDULED : BP_BACKWARD_SEQUENTIAL,
                         &cfg);
            float loss = 0.0f;
            OK(bp_train_step(t.net, t.opt, t.X, t.y, NULL, 32, &loss)); /* momentum state */
            if (bad == 0)
                t.X[37] = NAN;
            size_t n, n_after;
            float *before = trainer_state(&t, &n);
            uint64_t one_region = t.net->one_region_steps;
            /* another message first, so a failure that sets none shows */
            ck_assert_int_eq(bp_train_step(NULL, t.opt, t.X, t.y, NULL, 32, &loss), BP_EINVAL);
            ck_assert_int_eq(bp_train_step(t.net, t.opt, t.X, t.y, NULL, 32, &loss),
                             BP_ENUMERIC);
            snprintf(msg[m], sizeof msg[m], "%s", bp_last_error());
            float *after = trainer_state(&t, &n_after);
            ck_assert(n == n_after);
            ck_assert_msg(memcmp(before, after, n * sizeof *after) == 0,
                          "case %d mode %d: a refused step changed the state", bad, m);
            if (m > 0 && (bp_build_features() & BP_FEATURE_OPENMP))
                ck_assert_uint_eq(t.net->one_region_steps, one_region + 1);
            free(before);
            free(after);
            trainer_close(&t);
        }
        ck_assert_msg(strstr(msg[0], bad ? "layer " : "input") != NULL, "%s", msg[0]);
        ck_assert_str_eq(msg[0], msg[1]);
        ck_assert_str_eq(msg[0], msg[2]);
    }
}
END_TEST

/* Rows for the epoch and evaluation tests: ROWS rows of 200 features in
 * [-1, 1], each with 10 targets in [0, 1] and a label in 0..9, from seed. */
enum { ROWS = 75 }; /* batches of 32, 32 and 11 rows */

static void fill_rows(uint64_t seed, float *X, float *T, int32_t *y)
{
    tu_rng r;
    tu_seed(&r, seed);
    tu_fill(&r, X, ROWS * 200, -1, 1);
    tu_fill(&r, T, ROWS * 10, 0, 1);
    for (size_t i = 0; i < ROWS; i++)
        y[i] = (int32_t)(tu_next(&r) % 10);
}

/* Parameters after one epoch of n rows (batches of 32, the last short) on
 * `threads` threads, labels (softmax-CE) or targets (MSE); *steps gets how
 * many steps ran in one region, which gathered their rows there. */
static float *epoch_params(int threads, bp_head head, const float *X, const int32_t *y,
                           const float *t, size_t n, uint64_t *steps, size_t *n_params)
{
    bp_ctx *ctx;
    OK(bp_ctx_create(&ctx, threads));
    bp_layer_spec layers[2] = {{64, BP_ACT_GELU, 0}, {10, BP_ACT_IDENTITY, 0}};
    bp_net *net;
    OK(bp_net_create(&net, ctx, 200, 2, layers, head, 32));
    OK(bp_net_init(net, BP_INIT_XAVIER_UNIFORM, 5));
    bp_optim_config cfg;
    OK(bp_optim_config_default(&cfg, BP_OPTIM_ADAM));
    bp_optim *opt;
    OK(bp_optim_create(&opt, net, &cfg));
    int ce = head == BP_HEAD_SOFTMAX_CE;
    bp_dataset *ds;
    OK(bp_dataset_create(&ds, n, 200, X, ce ? y : NULL, ce ? NULL : t, ce ? 0 : 10));
    float loss;
    OK(bp_train_epoch(net, opt, ds, 32, 3, 1, &loss));
    *steps = net->one_region_steps;
    *n_params = net->block_floats;
    float *out = malloc(*n_params * sizeof *out);
    ck_assert_ptr_nonnull(out);
    memcpy(out, net->params, *n_params * sizeof *out);
    bp_dataset_destroy(ds);
    bp_optim_destroy(opt);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
    return out;
}

/* An epoch on 2 threads, whose steps gather their shuffled rows inside
 * the step's region, ends with the bits of the 1-thread epoch, which
 * gathers before each plain step: with labels and with targets. */
START_TEST(one_region_epoch_gathers_like_plain)
{
    static float X[ROWS * 200], T[ROWS * 10];
    int32_t y[ROWS];
    fill_rows(31, X, T, y);
    bp_head heads[2] = {BP_HEAD_SOFTMAX_CE, BP_HEAD_MSE};
    for (int h = 0; h < 2; h++) {
        uint64_t steps_ref, steps_got;
        size_t n_ref, n_got;
        float *ref = epoch_params(1, heads[h], X, y, T, ROWS, &steps_ref, &n_ref);
        float *got = epoch_params(2, heads[h], X, y, T, ROWS, &steps_got, &n_got);
        ck_assert(n_ref == n_got);
        ck_assert_msg(memcmp(ref, got, n_ref * sizeof *ref) == 0, "head %d: parameters differ",
                      h);
        ck_assert_uint_eq(steps_ref, 0);
        if (bp_build_features() & BP_FEATURE_OPENMP)
            ck_assert_uint_eq(steps_got, 3); /* 32 + 32 + 11 rows */
        free(ref);
        free(got);
    }
}
END_TEST

/* One evaluation: a net of head `head` on `threads` threads over n rows of
 * X in batches of 32 (the last one short), with labels or targets. */
typedef struct eval_run {
    bp_status status;
    float loss, acc;
    char msg[512];
    float out[32 * 10]; /* the last batch's outputs, left in the net */
    size_t batch;       /* the net's batch after the pass */
    uint64_t one_region;
} eval_run;

static eval_run evaluate_once(int threads, bp_head head, size_t n_layers, const float *X,
                              const int32_t *y, const float *t, size_t n)
{
    bp_ctx *ctx;
    OK(bp_ctx_create(&ctx, threads));
    bp_layer_spec deep[3] = {{96, BP_ACT_TANH, 0}, {64, BP_ACT_GELU, 0},
                             {10, BP_ACT_IDENTITY, 0}};
    bp_layer_spec *layers = deep + 3 - n_layers; /* 1 layer: the output layer alone */
    bp_net *net;
    OK(bp_net_create(&net, ctx, 200, n_layers, layers, head, 32));
    OK(bp_net_init(net, BP_INIT_XAVIER_UNIFORM, 5));
    bp_dataset *ds;
    OK(bp_dataset_create(&ds, n, 200, X, head == BP_HEAD_SOFTMAX_CE ? y : NULL,
                         head == BP_HEAD_SOFTMAX_CE ? NULL : t,
                         head == BP_HEAD_SOFTMAX_CE ? 0 : 10));
    eval_run r;
    memset(&r, 0, sizeof r);
    /* another message first, so a failure that sets none shows */
    ck_assert_int_eq(bp_evaluate(NULL, ds, 32, NULL, NULL), BP_EINVAL);
    r.status = bp_evaluate(net, ds, 32, &r.loss, &r.acc);
    snprintf(r.msg, sizeof r.msg, "%s", bp_last_error());
    r.batch = net->batch;
    memcpy(r.out, net->layers[n_layers - 1].A, net->batch * 10 * sizeof(float));
    r.one_region = net->one_region_evals;
    bp_dataset_destroy(ds);
    bp_net_destroy(net);
    bp_ctx_destroy(ctx);
    return r;
}

/* bp_evaluate on 2 threads (one parallel region) gives the bits of the
 * plain pass on 1 thread for each head, with three layers and with one
 * (whose forward writes the outputs just counted), and where the loss is
 * not finite the same error, leaving the net at the failing batch as the
 * plain pass does. */
START_TEST(one_region_evaluate_equals_plain)
{
    static float X[ROWS * 200], T[ROWS * 10];
    int32_t y[ROWS];
    fill_rows(21, X, T, y);
    bp_head heads[3] = {BP_HEAD_SOFTMAX_CE, BP_HEAD_SIGMOID_BCE, BP_HEAD_MSE};
    for (int c = 0; c < 6; c++) {
        int h = c % 3;
        size_t n_layers = c < 3 ? 3 : 1;
        for (int bad = 0; bad < 2; bad++) {
            if (bad)
                X[40 * 200 + 7] = NAN; /* in the second batch */
            eval_run ref = evaluate_once(1, heads[h], n_layers, X, y, T, ROWS);
            eval_run got = evaluate_once(2, heads[h], n_layers, X, y, T, ROWS);
            if (bad)
                X[40 * 200 + 7] = 0.5f;
            ck_assert_int_eq(ref.status, (bad ? BP_ENUMERIC : BP_OK));
            ck_assert_int_eq(got.status, ref.status);
            ck_assert_uint_eq(got.batch, (bad ? 32 : 11));
            ck_assert_uint_eq(got.batch, ref.batch);
            ck_assert_msg(memcmp(got.out, ref.out, got.batch * 10 * sizeof(float)) == 0,
                          "head %d, %zu layers, case %d: last outputs differ", h, n_layers, bad);
            if (bad) {
                ck_assert_msg(strstr(ref.msg, "input") != NULL, "%s", ref.msg);
                ck_assert_str_eq(got.msg, ref.msg);
            } else {
                ck_assert_msg(memcmp(&got.loss, &ref.loss, sizeof ref.loss) == 0,
                              "head %d, %zu layers: loss %.9g against %.9g", h, n_layers,
                              (double)got.loss, (double)ref.loss);
                ck_assert_msg(memcmp(&got.acc, &ref.acc, sizeof ref.acc) == 0 ||
                                  (isnan(got.acc) && isnan(ref.acc) && h == 2),
                              "head %d, %zu layers: accuracy %.9g against %.9g", h, n_layers,
                              (double)got.acc, (double)ref.acc);
                ck_assert(h == 2 || (ref.acc > 0.0f && ref.acc < 1.0f)); /* something counted */
            }
            ck_assert_uint_eq(ref.one_region, 0); /* 1 thread: the plain pass */
            if (bp_build_features() & BP_FEATURE_OPENMP)
                ck_assert_uint_eq(got.one_region, 1);
        }
    }
}
END_TEST

/* The executor binds its threads to their cores while a plan runs. The
 * caller's thread is put back as it was, also when the plan had to move it
 * to another core; OpenMP's worker threads stay bound (once, not at every
 * step). */
START_TEST(binding_is_restored)
{
#if BP_HAVE_HWLOC
    hwloc_topology_t topo;
    ck_assert_int_eq(hwloc_topology_init(&topo), 0);
    ck_assert_int_eq(hwloc_topology_load(topo), 0);
    hwloc_bitmap_t before = hwloc_bitmap_alloc(), after = hwloc_bitmap_alloc();
    hwloc_bitmap_t mine = hwloc_bitmap_alloc();
    ck_assert_int_eq(hwloc_get_cpubind(topo, before, HWLOC_CPUBIND_THREAD), 0);
    static const net_shape shape = {{256, 256, 256, 10}, 3, 32, 0}; /* a joint list */
    int sched, joint;
    size_t n;
    free(run_steps(&shape, 2, BP_BACKWARD_SCHEDULED, &sched, &joint, &n));
    ck_assert_int_eq(hwloc_get_cpubind(topo, after, HWLOC_CPUBIND_THREAD), 0);
    ck_assert_msg(hwloc_bitmap_isequal(before, after), "the caller's binding changed");
    int n_pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    if (n_pus >= 2 && last_run_pinned) {
        /* On the last PU the caller is not on its plan's core (thread 0 runs
         * on the first core): the plan moves it there and back. */
        hwloc_obj_t last = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, (unsigned)n_pus - 1);
        ck_assert_int_eq(hwloc_set_cpubind(topo, last->cpuset, HWLOC_CPUBIND_THREAD), 0);
        ck_assert_int_eq(hwloc_get_cpubind(topo, mine, HWLOC_CPUBIND_THREAD), 0);
        free(run_steps(&shape, 2, BP_BACKWARD_SCHEDULED, &sched, &joint, &n));
        ck_assert_int_eq(hwloc_get_cpubind(topo, after, HWLOC_CPUBIND_THREAD), 0);
        ck_assert_msg(hwloc_bitmap_isequal(mine, after), "the caller's binding was not restored");
#if BP_HAVE_OPENMP
        int worker_pus = -1;
#pragma omp parallel num_threads(2)
        if (omp_get_thread_num() == 1) {
            hwloc_bitmap_t w = hwloc_bitmap_alloc();
            if (w && hwloc_get_cpubind(topo, w, HWLOC_CPUBIND_THREAD) == 0)
                worker_pus = hwloc_bitmap_weight(w);
            hwloc_bitmap_free(w);
        }
        ck_assert_msg(worker_pus == 1, "the worker thread is bound to %d PUs", worker_pus);
#endif
        ck_assert_int_eq(hwloc_set_cpubind(topo, before, HWLOC_CPUBIND_THREAD), 0);
    }
    hwloc_bitmap_free(before);
    hwloc_bitmap_free(after);
    hwloc_bitmap_free(mine);
    hwloc_topology_destroy(topo);
#endif
}
END_TEST

START_TEST(env_and_mode_controls)
{
    bp_ctx *ctx;
    setenv("BP_SCHED", "sequential", 1);
    OK(bp_ctx_create(&ctx, 2));
    ck_assert_int_eq(bp_ctx_backward(ctx), BP_BACKWARD_SEQUENTIAL);
    bp_ctx_destroy(ctx);
    setenv("BP_SCHED", "sometimes", 1);
    ck_assert_int_eq(bp_ctx_create(&ctx, 2), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "BP_SCHED"));
    unsetenv("BP_SCHED");
    OK(bp_ctx_create(&ctx, 2));
    ck_assert_int_eq(bp_ctx_backward(ctx), BP_BACKWARD_SCHEDULED);
    ck_assert_int_eq(bp_ctx_set_backward(ctx, (bp_backward_mode)7), BP_EINVAL);
    ck_assert_int_eq(bp_ctx_backward(ctx), BP_BACKWARD_SCHEDULED);
    bp_ctx_destroy(ctx);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("sched");
    TCase *plan = tcase_create("plan");
    tcase_set_timeout(plan, 120);
    tcase_add_loop_test(plan, plans_keep_their_invariants, 0, (int)N_SYNTH + 1);
    tcase_add_test(plan, big_server_splits_along_caches);
    suite_add_tcase(s, plan);
    TCase *run = tcase_create("run");
    tcase_set_timeout(run, 120);
    tcase_add_test(run, scheduled_equals_sequential_bitwise);
    tcase_add_test(run, env_and_mode_controls);
    tcase_add_test(run, binding_is_restored);
    tcase_add_test(run, one_region_step_equals_plain);
    tcase_add_test(run, one_region_step_refuses_like_plain);
    tcase_add_test(run, one_region_evaluate_equals_plain);
    tcase_add_test(run, one_region_epoch_gathers_like_plain);
    suite_add_tcase(s, run);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
