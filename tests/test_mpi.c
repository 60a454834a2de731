/* Data-parallel training over MPI, run under mpirun with 1, 2 or 3 ranks
 * (tests/meson.build). Every rank also computes the single-process
 * reference itself (a context without communicator, or on MPI_COMM_SELF),
 * so each comparison is local. A plain program, not Check: Check's fork
 * mode and MPI do not mix. Prints one line per check on rank 0 and exits
 * non-zero on the first failure of any rank. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "backprop.h"
#include "backprop_mpi.h"
#include "testutil.h"

#define N_ROWS 203   /* not a multiple of any global batch: short last batches */
#define N_FEAT 6
#define N_CLASS 3
#define BATCH 8      /* per shard */
#define EPOCHS 3

/* The tolerance of the default (all-reduce) mode: the relative distance
 * ||w_P - w_1|| / ||w_1|| after EPOCHS epochs (about 40 steps) of Adam.
 * Measured: about 1e-7 (see the test output); the bound leaves room for
 * other GEMM kernels and blockings. */
#define TOL_REL 1e-5

static int rank, size;
static int failures;

static void check(int ok, const char *what)
{
    int all = ok;
    MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    if (!ok)
        fprintf(stderr, "rank %d: FAIL: %s\n", rank, what);
    if (rank == 0)
        printf("%s: %s (%d ranks)\n", all ? "ok" : "FAIL", what, size);
    fflush(stdout);
    failures += !all;
}

static void ok_status(bp_status s, const char *what)
{
    if (s != BP_OK) {
        fprintf(stderr, "rank %d: %s: %s: %s\n", rank, what, bp_status_str(s), bp_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

/* --------------------------------------------------------------- fixtures */

static bp_dataset *make_data(void)
{
    static float X[N_ROWS * N_FEAT];
    static int32_t y[N_ROWS];
    tu_rng r;
    tu_seed(&r, 7);
    for (size_t i = 0; i < N_ROWS; i++) {
        float *x = X + i * N_FEAT;
        tu_fill(&r, x, N_FEAT, -1, 1);
        y[i] = (x[0] + x[1] * x[2] > 0) + (x[3] > 0.3f);
    }
    bp_dataset *ds = NULL;
    ok_status(bp_dataset_create(&ds, N_ROWS, N_FEAT, X, y, NULL, 0), "dataset");
    return ds;
}

typedef struct model {
    bp_ctx *ctx;
    bp_net *net;
    bp_optim *opt;
} model;

/* A 6-16-12-3 net on its own context; comm MPI_COMM_NULL: no MPI. */
static model make_model(MPI_Comm comm, const bp_mpi_options *o, size_t max_batch,
                        uint64_t seed, bp_optim_type type)
{
    model m = {0};
    bp_layer_spec layers[] = {{16, BP_ACT_TANH, 0}, {12, BP_ACT_RELU, 0},
                              {N_CLASS, BP_ACT_IDENTITY, 0}};
    bp_optim_config cfg;
    ok_status(bp_ctx_create(&m.ctx, 1), "ctx");
    if (comm != MPI_COMM_NULL)
        ok_status(bp_ctx_set_comm(m.ctx, comm, o), "set_comm");
    ok_status(bp_net_create(&m.net, m.ctx, N_FEAT, 3, layers, BP_HEAD_SOFTMAX_CE, max_batch),
              "net");
    ok_status(bp_net_init(m.net, BP_INIT_HE_UNIFORM, seed), "init");
    ok_status(bp_optim_config_default(&cfg, type), "config");
    cfg.lr = type == BP_OPTIM_SGD ? 0.05f : 0.01f;
    cfg.momentum = type == BP_OPTIM_SGD ? 0.9f : 0.0f;
    ok_status(bp_optim_create(&m.opt, m.net, &cfg), "optim");
    if (comm != MPI_COMM_NULL)
        ok_status(bp_mpi_prepare(m.net, m.opt), "prepare");
    return m;
}

static void free_model(model *m)
{
    bp_optim_destroy(m->opt);
    bp_net_destroy(m->net);
    bp_ctx_destroy(m->ctx);
}

/* All parameters, layer by layer, W then b. */
static size_t params(const bp_net *net, float *out)
{
    size_t k = 0;
    for (size_t i = 0; i < bp_net_n_layers(net); i++) {
        bp_layer_spec spec;
        bp_net_layer(net, i, &spec);
        size_t n_in = i ? 0 : bp_net_n_in(net);
        if (i) {
            bp_layer_spec prev;
            bp_net_layer(net, i - 1, &prev);
            n_in = prev.n_out;
        }
        ok_status(bp_net_get_param(net, i, BP_WEIGHT, out + k, spec.n_out * n_in), "get W");
        k += spec.n_out * n_in;
        ok_status(bp_net_get_param(net, i, BP_BIAS, out + k, spec.n_out), "get b");
        k += spec.n_out;
    }
    return k;
}

#define MAXP 1024
static double rel_distance(const bp_net *a, const bp_net *b, double *max_abs)
{
    float pa[MAXP], pb[MAXP];
    size_t n = params(a, pa);
    params(b, pb);
    double d = 0, w = 0;
    *max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)pa[i] - pb[i];
        d += e * e;
        w += (double)pb[i] * pb[i];
        *max_abs = fabs(e) > *max_abs ? fabs(e) : *max_abs;
    }
    return sqrt(d / w);
}

static int bitwise_equal(const bp_net *a, const bp_net *b)
{
    float pa[MAXP], pb[MAXP];
    size_t n = params(a, pa);
    params(b, pb);
    return memcmp(pa, pb, n * sizeof(float)) == 0;
}

/* Every rank holds rank 0's parameters, bit for bit. */
static int replicas_equal(const bp_net *net)
{
    float p[MAXP], p0[MAXP];
    size_t n = params(net, p);
    memcpy(p0, p, n * sizeof(float));
    MPI_Bcast(p0, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
    return memcmp(p, p0, n * sizeof(float)) == 0;
}

static void train(model *m, bp_dataset *ds, size_t batch, float *loss)
{
    for (int e = 0; e < EPOCHS; e++)
        ok_status(bp_train_epoch(m->net, m->opt, ds, batch, 11, (uint64_t)e, loss), "epoch");
}

/* ------------------------------------------------------------------ tests */

static void test_broadcast(void)
{
    /* Each rank initialises with its own seed: rank 0's weights win. */
    model m = make_model(MPI_COMM_WORLD, NULL, BATCH, 100 + (uint64_t)rank, BP_OPTIM_ADAM);
    model ref = make_model(MPI_COMM_NULL, NULL, BATCH, 100, BP_OPTIM_ADAM);
    check(bitwise_equal(m.net, ref.net), "broadcast: every rank holds rank 0's initial weights");
    free_model(&m);
    free_model(&ref);
}

static void test_equivalence(bp_optim_type type, size_t bucket_bytes, int overlap)
{
    bp_dataset *ds = make_data();
    bp_mpi_options o;
    bp_mpi_options_default(&o);
    o.bucket_bytes = bucket_bytes;
    o.overlap = overlap;
    model m = make_model(MPI_COMM_WORLD, &o, BATCH, 5, type);
    model ref = make_model(MPI_COMM_NULL, NULL, BATCH * (size_t)size, 5, type);
    float loss = 0, ref_loss = 0;
    train(&m, ds, BATCH, &loss);
    train(&ref, ds, BATCH * (size_t)size, &ref_loss);
    double max_abs = 0, rel = rel_distance(m.net, ref.net, &max_abs);
    char what[200];
    snprintf(what, sizeof what, "all-reduce (%s, buckets %zu B, overlap %d) vs 1 process: "
             "relative distance %.2e, max |dw| %.2e (tolerance %.0e), loss %.6f vs %.6f",
             type == BP_OPTIM_SGD ? "SGD momentum" : "Adam", bucket_bytes, overlap, rel,
             max_abs, TOL_REL, (double)loss, (double)ref_loss);
    check(rel <= TOL_REL && fabs((double)loss - ref_loss) <= 1e-5 * fabs((double)ref_loss),
          what);
    check(replicas_equal(m.net), "all-reduce: the ranks' weights are bitwise identical");
    bp_mpi_stats st;
    ok_status(bp_mpi_get_stats(m.ctx, &st), "stats");
    check(st.steps == EPOCHS * ((N_ROWS + BATCH * (size_t)size - 1) / (BATCH * (size_t)size)),
          "stats count every step");
    free_model(&m);
    free_model(&ref);
    bp_dataset_destroy(ds);
}

/* Exact mode: P ranks and one process computing the same shards one after
 * another (on MPI_COMM_SELF) give the same bits. */
static void test_exact(int shards, int overlap, size_t bucket_bytes)
{
    bp_dataset *ds = make_data();
    bp_mpi_options o, o1;
    bp_mpi_options_default(&o);
    o.exact = 1;
    o.shards = shards;
    o.overlap = overlap;
    o.bucket_bytes = bucket_bytes;
    o1 = o;
    o1.overlap = 1;
    o1.bucket_bytes = 0;
    model m = make_model(MPI_COMM_WORLD, &o, BATCH, 9, BP_OPTIM_ADAM);
    model one = make_model(MPI_COMM_SELF, &o1, BATCH, 9, BP_OPTIM_ADAM);
    model ref = make_model(MPI_COMM_NULL, NULL, BATCH * (size_t)shards, 9, BP_OPTIM_ADAM);
    float loss = 0, one_loss = 0, ref_loss = 0;
    train(&m, ds, BATCH, &loss);
    train(&one, ds, BATCH, &one_loss);
    train(&ref, ds, BATCH * (size_t)shards, &ref_loss);
    double max_abs = 0, rel = rel_distance(m.net, ref.net, &max_abs);
    char what[200];
    snprintf(what, sizeof what, "exact, %d shards (overlap %d, buckets %zu B): bitwise equal "
             "to 1 process with %d shards; loss equal", shards, overlap, bucket_bytes, shards);
    check(bitwise_equal(m.net, one.net) && loss == one_loss, what);
    snprintf(what, sizeof what, "exact, %d shards vs 1 process without shards: relative "
             "distance %.2e (tolerance %.0e)", shards, rel, TOL_REL);
    check(rel <= TOL_REL, what);
    free_model(&m);
    free_model(&one);
    free_model(&ref);
    bp_dataset_destroy(ds);
}

/* bp_train_step: each rank its own rows, different counts per rank. */
static void test_step(void)
{
    bp_dataset *ds = make_data();
    const float *X = bp_dataset_features(ds);
    const int32_t *y = bp_dataset_labels(ds);
    size_t total = 0, mine = 0, before = 0;
    for (int r = 0; r < size; r++) {
        size_t b = 3 + 2 * (size_t)r;
        if (r < rank)
            before += b;
        if (r == rank)
            mine = b;
        total += b;
    }
    model m = make_model(MPI_COMM_WORLD, NULL, 16, 3, BP_OPTIM_SGD);
    model ref = make_model(MPI_COMM_NULL, NULL, 64, 3, BP_OPTIM_SGD);
    float loss = 0, ref_loss = 0;
    for (int step = 0; step < 5; step++) {
        size_t at = (size_t)step * total;
        ok_status(bp_train_step(m.net, m.opt, X + (at + before) * N_FEAT, y + at + before, NULL,
                                mine, &loss), "step");
        ok_status(bp_train_step(ref.net, ref.opt, X + at * N_FEAT, y + at, NULL, total,
                                &ref_loss), "reference step");
    }
    double max_abs = 0, rel = rel_distance(m.net, ref.net, &max_abs);
    char what[200];
    snprintf(what, sizeof what, "bp_train_step with %zu rows on this rank, %zu in all: "
             "relative distance %.2e, loss %.6f vs %.6f", mine, total, rel, (double)loss,
             (double)ref_loss);
    check(rel <= TOL_REL && fabs((double)loss - ref_loss) <= 1e-5 * fabs((double)ref_loss),
          what);
    free_model(&m);
    free_model(&ref);
    bp_dataset_destroy(ds);
}

/* A NaN on the last rank only: every rank fails the step with BP_ENUMERIC
 * (no hang) and no parameter changes anywhere. A bad batch size on one rank:
 * every rank fails. */
static void test_failures(void)
{
    bp_dataset *ds = make_data();
    float X[4 * N_FEAT];
    memcpy(X, bp_dataset_features(ds), sizeof X);
    const int32_t *y = bp_dataset_labels(ds);
    if (rank == size - 1)
        X[5] = NAN;
    model m = make_model(MPI_COMM_WORLD, NULL, 16, 3, BP_OPTIM_ADAM);
    model ref = make_model(MPI_COMM_NULL, NULL, 16, 3, BP_OPTIM_ADAM);
    float loss = 0;
    bp_status s = bp_train_step(m.net, m.opt, X, y, NULL, 4, &loss);
    check(s == BP_ENUMERIC && bitwise_equal(m.net, ref.net) && bp_optim_steps(m.opt) == 0,
          "a NaN on one rank fails the step on every rank; nothing changes");
    if (rank == 0 && size > 1)
        printf("   rank 0 says: %s\n", bp_last_error());
    X[5] = 0.5f;
    s = bp_train_step(m.net, m.opt, X, y, NULL, rank == size - 1 ? 0 : 4, &loss);
    check(s == BP_EINVAL, "a bad batch size on one rank fails the step on every rank");
    s = bp_train_step(m.net, m.opt, X, y, NULL, 4, &loss);
    check(s == BP_OK && replicas_equal(m.net), "the next good step works");
    free_model(&m);
    free_model(&ref);

    /* Options that differ between ranks are refused everywhere. */
    bp_ctx *ctx = NULL;
    ok_status(bp_ctx_create(&ctx, 1), "ctx");
    bp_mpi_options o;
    bp_mpi_options_default(&o);
    o.exact = rank == size - 1 && size > 1;
    s = bp_ctx_set_comm(ctx, MPI_COMM_WORLD, &o);
    check(size == 1 ? s == BP_OK : s == BP_EINVAL, "options differing between ranks: BP_EINVAL");
    o.exact = 0;
    o.shards = 2 * size;
    s = bp_ctx_set_comm(ctx, MPI_COMM_WORLD, &o);
    check(s == BP_EINVAL, "shards != ranks without exact mode: BP_EINVAL");
    bp_ctx_destroy(ctx);
    bp_dataset_destroy(ds);
}

/* Layer updates (each layer updated as soon as its own reduction is done)
 * give the same bits as one update after all reductions, in both modes. */
static void test_layer_updates(bp_optim_type type, int exact)
{
    bp_dataset *ds = make_data();
    bp_mpi_options o;
    bp_mpi_options_default(&o);
    o.exact = exact;
    o.bucket_bytes = 64; /* one bucket per layer */
    model m = make_model(MPI_COMM_WORLD, &o, BATCH, 4, type);
    o.layer_updates = 0;
    model after = make_model(MPI_COMM_WORLD, &o, BATCH, 4, type);
    float loss = 0, after_loss = 0;
    train(&m, ds, BATCH, &loss);
    train(&after, ds, BATCH, &after_loss);
    bp_mpi_stats st, st_after;
    ok_status(bp_mpi_get_stats(m.ctx, &st), "stats");
    ok_status(bp_mpi_get_stats(after.ctx, &st_after), "stats");
    char what[200];
    snprintf(what, sizeof what, "layer updates (%s, %s): bitwise equal to updating after all "
             "reductions; %llu layer updates in %llu steps",
             type == BP_OPTIM_SGD ? "SGD momentum" : "Adam", exact ? "exact" : "all-reduce",
             (unsigned long long)st.layer_updates, (unsigned long long)st.steps);
    check(bitwise_equal(m.net, after.net) && loss == after_loss &&
          st.layer_updates == 3 * st.steps && st_after.layer_updates == 0, what);
    free_model(&m);
    free_model(&after);
    bp_dataset_destroy(ds);
}

/* All parameters and optimizer state of every layer (the 6-16-12-3 net). */
static size_t snapshot(const model *m, float *out)
{
    static const size_t n_in[3] = {N_FEAT, 16, 12};
    size_t k = params(m->net, out);
    for (size_t i = 0; i < bp_net_n_layers(m->net); i++) {
        bp_layer_spec spec;
        bp_net_layer(m->net, i, &spec);
        for (size_t slot = 0; slot < bp_optim_n_slots(m->opt); slot++) {
            ok_status(bp_optim_get_state(m->opt, i, BP_WEIGHT, slot, out + k,
                                         spec.n_out * n_in[i]), "get state W");
            k += spec.n_out * n_in[i];
            ok_status(bp_optim_get_state(m->opt, i, BP_BIAS, slot, out + k, spec.n_out),
                      "get state b");
            k += spec.n_out;
        }
    }
    return k;
}

/* A step whose update diverges only in the first layer, the last one to be
 * updated: the layers updated before it are put back, so nothing changes,
 * and the refusal is the same on every rank. Adam's first moment of one
 * weight of layer 0 is set to 3e38 with the second moment 0: that weight's
 * step m / (sqrt(v) + eps) overflows; the forward pass does not see it. */
static void test_layer_update_refused(void)
{
    bp_dataset *ds = make_data();
    const float *X = bp_dataset_features(ds);
    const int32_t *y = bp_dataset_labels(ds);
    bp_mpi_options o;
    bp_mpi_options_default(&o);
    o.bucket_bytes = 64;
    model m = make_model(MPI_COMM_WORLD, &o, 16, 3, BP_OPTIM_ADAM);
    ok_status(bp_train_step(m.net, m.opt, X, y, NULL, 4, NULL), "first step");
    float m0[16 * N_FEAT], v0[16 * N_FEAT], m0_kept;
    ok_status(bp_optim_get_state(m.opt, 0, BP_WEIGHT, 0, m0, 16 * N_FEAT), "get m");
    ok_status(bp_optim_get_state(m.opt, 0, BP_WEIGHT, 1, v0, 16 * N_FEAT), "get v");
    m0_kept = m0[0];
    m0[0] = 3e38f, v0[0] = 0.0f;
    ok_status(bp_optim_set_state(m.opt, 0, BP_WEIGHT, 0, m0, 16 * N_FEAT), "set m");
    ok_status(bp_optim_set_state(m.opt, 0, BP_WEIGHT, 1, v0, 16 * N_FEAT), "set v");
    static float before[4 * MAXP], now[4 * MAXP];
    size_t n = snapshot(&m, before);
    bp_mpi_stats st0, st1;
    ok_status(bp_mpi_get_stats(m.ctx, &st0), "stats");
    bp_status s = bp_train_step(m.net, m.opt, X + 4 * N_FEAT, y + 4, NULL, 4, NULL);
    ok_status(bp_mpi_get_stats(m.ctx, &st1), "stats");
    snapshot(&m, now);
    char what[300];
    snprintf(what, sizeof what, "a step diverging in layer 0 after layers 2 and 1 were updated "
             "(%llu layer updates): BP_ENUMERIC, parameters and state as before (%s)",
             (unsigned long long)(st1.layer_updates - st0.layer_updates),
             rank == 0 ? bp_last_error() : "");
    check(s == BP_ENUMERIC && st1.layer_updates - st0.layer_updates == 2 &&
          memcmp(before, now, n * sizeof(float)) == 0 && bp_optim_steps(m.opt) == 1, what);
    m0[0] = m0_kept;
    ok_status(bp_optim_set_state(m.opt, 0, BP_WEIGHT, 0, m0, 16 * N_FEAT), "reset m");
    s = bp_train_step(m.net, m.opt, X + 4 * N_FEAT, y + 4, NULL, 4, NULL);
    check(s == BP_OK && bp_optim_steps(m.opt) == 2 && replicas_equal(m.net),
          "after the refused step, the next one works");
    free_model(&m);
    bp_dataset_destroy(ds);
}

int main(int argc, char **argv)
{
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    test_broadcast();
    test_equivalence(BP_OPTIM_ADAM, 0, 1);
    test_equivalence(BP_OPTIM_SGD, 64, 1);      /* one bucket per layer */
    test_equivalence(BP_OPTIM_ADAM, 1 << 20, 0); /* one bucket, after the backward */
    test_exact(size, 1, 0);
    test_exact(size, 0, 64);
    test_exact(2 * size, 1, 64);
    test_step();
    test_failures();
    test_layer_updates(BP_OPTIM_ADAM, 0);
    test_layer_updates(BP_OPTIM_SGD, 1);
    test_layer_update_refused();
    MPI_Finalize();
    return failures ? 1 : 0;
}
