/* Data-parallel training over MPI (see include/backprop_mpi.h for the
 * model): shards of every global batch, gradients weighted by rows and
 * reduced per bucket of layers from inside the backward pass, the exact
 * (fixed-order) mode, and the collective checks that turn a failure on one
 * rank into the same failure on every rank instead of a hang.
 *
 * MPI is only called from the thread that called the library and never
 * inside an OpenMP region: the grads_ready hook defers a bucket's start to
 * the end of the backward when it is called from a parallel region. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "alloc.h"
#include "backprop_mpi.h"
#include "bp_config.h"
#include "ctx.h"
#include "dataset.h"
#include "dist.h"
#include "error.h"
#include "net.h"
#include "optim.h"
#include "parallel.h"
#include "train.h"

#if BP_HAVE_OPENMP
#include <omp.h>
#endif

#define DEFAULT_BUCKET_BYTES ((size_t)64 * 1024)
/* Largest count handed to one MPI call (counts are int). */
#define MAX_COUNT ((size_t)1 << 30)

/* Consecutive layers lo..hi whose gradients form one float range of the
 * gradient block (layer i's dW, db and padding run from w_off[i] to
 * w_off[i + 1]), reduced by one non-blocking collective. */
typedef struct bucket {
    size_t lo, hi;
    size_t off, n;
} bucket;

struct bpi_dist {
    MPI_Comm comm;
    int rank, size;
    bp_mpi_options opt;
    int shards, local;        /* shards per global batch, shards per rank */
    /* set up by bp_mpi_prepare for one net */
    bp_net *net;
    size_t net_floats, net_layers;
    bucket *buckets;          /* in backward order: bucket 0 holds the last layer */
    size_t n_buckets;
    size_t *bucket_of;        /* layer -> bucket */
    MPI_Request *reqs;        /* per bucket */
    unsigned char *summed;    /* per bucket, this step: 1 = exact mode's sum done,
                                 2 = its layers updated */
    float *send, *recv;       /* exact: (local, bucket) and (shards, bucket) per bucket */
    float *snap;              /* layer updates: (1 + snap_slots) x net_floats, the values
                                 they overwrote (see bpi_optim_layerwise_update) */
    size_t snap_slots;
    double *loss_send;        /* local shard losses x rows, then the status */
    double *loss_recv;        /* size x (local + 1) */
    /* the step in progress */
    int shard;                /* local shard being computed */
    float scale;              /* its rows / global rows */
    size_t pending;           /* layers 0..pending-1 of this shard are not ready */
    size_t next_bucket;       /* buckets before it are started */
    int err;                  /* first MPI error of the step */
    bp_mpi_stats stats;
};

static double seconds(void) { return MPI_Wtime(); }

static bp_status mpi_fail(int err, const char *fn, const char *call)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, text, &len) != MPI_SUCCESS)
        len = 0;
    text[len] = '\0';
    return bpi_fail(BP_EIO, "%s: %s failed: %s", fn, call, text);
}

/* ---------------------------------------------------------- the context */

static void release_net(bpi_dist *d)
{
    bpi_free(d->buckets);
    bpi_free(d->bucket_of);
    bpi_free(d->reqs);
    bpi_free(d->summed);
    bpi_free(d->send);
    bpi_free(d->recv);
    bpi_free(d->loss_send);
    bpi_free(d->loss_recv);
    bpi_free(d->snap);
    d->snap = NULL;
    d->buckets = NULL, d->bucket_of = NULL, d->reqs = NULL, d->summed = NULL, d->send = d->recv = NULL;
    d->loss_send = d->loss_recv = NULL;
    d->net = NULL;
    d->n_buckets = 0;
}

void bpi_dist_free(bpi_dist *d)
{
    if (!d)
        return;
    release_net(d);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized)
        MPI_Comm_free(&d->comm);
    bpi_free(d);
}

bp_status bp_mpi_options_default(bp_mpi_options *opt)
{
    if (!opt)
        return bpi_fail(BP_EINVAL, "bp_mpi_options_default: opt is NULL");
    memset(opt, 0, sizeof *opt);
    opt->overlap = 1;
    opt->bucket_bytes = DEFAULT_BUCKET_BYTES;
    opt->layer_updates = 1;
    return BP_OK;
}

/* Collective: every rank passes its local status and n values. Fails on
 * every rank if any rank failed (with the worst status, naming the rank) or
 * if the values differ between ranks (BP_EINVAL naming `what`). */
#define AGREE_MAX 8
static bp_status agree(const bpi_dist *d, bp_status local, const int64_t *v, int n,
                       const char *what, const char *fn)
{
    /* max of v and of ~v (= ~min v): equal everywhere iff max == min. */
    int64_t buf[2 + 2 * AGREE_MAX];
    buf[0] = (int64_t)local;
    buf[1] = local != BP_OK ? d->rank : -1;
    for (int i = 0; i < n; i++) {
        buf[2 + i] = v[i];
        buf[2 + n + i] = ~v[i];
    }
    int err = MPI_Allreduce(MPI_IN_PLACE, buf, 2 + 2 * n, MPI_INT64_T, MPI_MAX, d->comm);
    if (err != MPI_SUCCESS)
        return mpi_fail(err, fn, "MPI_Allreduce");
    if (local != BP_OK)
        return local;
    if (buf[0] != BP_OK)
        return bpi_fail((bp_status)buf[0], "%s: rank %lld failed (%s): see its message", fn,
                        (long long)buf[1], bp_status_str((bp_status)buf[0]));
    for (int i = 0; i < n; i++)
        if (buf[2 + i] != ~buf[2 + n + i])
            return bpi_fail(BP_EINVAL, "%s: the ranks disagree on %s", fn, what);
    return BP_OK;
}

static bp_status check_options(const bp_mpi_options *o, int size, int *shards, const char *fn)
{
    if (o->exact != 0 && o->exact != 1)
        return bpi_fail(BP_EINVAL, "%s: exact is %d (expected 0 or 1)", fn, o->exact);
    if (o->overlap != 0 && o->overlap != 1)
        return bpi_fail(BP_EINVAL, "%s: overlap is %d (expected 0 or 1)", fn, o->overlap);
    if (o->layer_updates != 0 && o->layer_updates != 1)
        return bpi_fail(BP_EINVAL, "%s: layer_updates is %d (expected 0 or 1)", fn,
                        o->layer_updates);
    if (o->shards < 0 || o->shards > 1 << 20)
        return bpi_fail(BP_EINVAL, "%s: shards is %d (expected 0..2^20)", fn, o->shards);
    *shards = o->shards ? o->shards : size;
    if (*shards % size != 0)
        return bpi_fail(BP_EINVAL, "%s: shards is %d, not a multiple of the %d ranks", fn,
                        *shards, size);
    if (*shards != size && !o->exact)
        return bpi_fail(BP_EINVAL, "%s: shards (%d) differ from the ranks (%d): exact mode "
                                   "only", fn, *shards, size);
    return BP_OK;
}

bp_status bp_ctx_set_comm(bp_ctx *ctx, MPI_Comm comm, const bp_mpi_options *opt)
{
    const char *fn = "bp_ctx_set_comm";
    if (!ctx)
        return bpi_fail(BP_EINVAL, "%s: ctx is NULL", fn);
    if (comm == MPI_COMM_NULL) {
        bpi_dist_free(ctx->dist);
        ctx->dist = NULL;
        return BP_OK;
    }
    int initialized = 0, finalized = 0, level = MPI_THREAD_SINGLE;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized)
        return bpi_fail(BP_ESTATE, "%s: MPI is not initialised (or already finalized)", fn);
    MPI_Query_thread(&level);
    if (level < MPI_THREAD_FUNNELED)
        return bpi_fail(BP_ESTATE, "%s: MPI was initialised with MPI_THREAD_SINGLE: the library "
                                   "needs MPI_THREAD_FUNNELED (MPI_Init_thread)", fn);
    bp_mpi_options o;
    bp_mpi_options_default(&o);
    if (opt)
        o = *opt;
    if (o.bucket_bytes == 0)
        o.bucket_bytes = DEFAULT_BUCKET_BYTES;
    bpi_dist *d = bpi_alloc(sizeof *d);
    if (!d)
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate the MPI state", fn);
    int err = MPI_Comm_dup(comm, &d->comm);
    if (err != MPI_SUCCESS) {
        bpi_free(d);
        return mpi_fail(err, fn, "MPI_Comm_dup");
    }
    /* Errors come back as codes: the library never aborts. */
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    d->opt = o;
    bp_status s = check_options(&o, d->size, &d->shards, fn);
    int64_t v[5] = {o.exact, o.shards, o.overlap, (int64_t)o.bucket_bytes, o.layer_updates};
    s = agree(d, s, v, 5, "the MPI options (exact, shards, overlap, bucket_bytes, "
                          "layer_updates)", fn);
    if (s != BP_OK) {
        bpi_dist_free(d);
        return s;
    }
    d->local = d->shards / d->size;
    bpi_dist_free(ctx->dist);
    ctx->dist = d;
    return BP_OK;
}

bp_status bp_ctx_comm_rank(const bp_ctx *ctx, int *rank, int *size)
{
    if (!ctx || !rank || !size)
        return bpi_fail(BP_EINVAL, "bp_ctx_comm_rank: %s is NULL",
                        !ctx ? "ctx" : !rank ? "rank" : "size");
    *rank = ctx->dist ? ctx->dist->rank : 0;
    *size = ctx->dist ? ctx->dist->size : 1;
    return BP_OK;
}

bp_status bp_mpi_get_stats(const bp_ctx *ctx, bp_mpi_stats *stats)
{
    if (!ctx || !stats)
        return bpi_fail(BP_EINVAL, "bp_mpi_get_stats: %s is NULL", !ctx ? "ctx" : "stats");
    if (!ctx->dist)
        return bpi_fail(BP_ESTATE, "bp_mpi_get_stats: the context has no communicator");
    *stats = ctx->dist->stats;
    return BP_OK;
}

/* ---------------------------------------------------------- preparing */

/* Layer i's float range in the gradient block: dW, db and the padding
 * after them, up to the next layer's dW. */
static size_t layer_end(const bp_net *net, size_t i)
{
    return i + 1 < net->n_layers ? net->layers[i + 1].w_off : net->block_floats;
}

/* Buckets walk the layers backwards, adding a layer while the bucket stays
 * within bucket_bytes (a layer alone may exceed it). */
static void plan_buckets(bpi_dist *d, const bp_net *net)
{
    size_t cap = d->opt.bucket_bytes / sizeof(float), k = 0;
    for (size_t i = net->n_layers; i-- > 0;) {
        size_t lo = net->layers[i].w_off, n = layer_end(net, i) - lo;
        bucket *b = &d->buckets[k];
        if (b->n > 0 && b->n + n > cap)
            b = &d->buckets[++k];
        if (b->n == 0)
            b->hi = i;
        b->lo = i;
        b->off = lo;
        b->n += n;
        d->bucket_of[i] = k;
    }
    d->n_buckets = k + 1;
}

static bp_status bcast(void *p, size_t n, MPI_Datatype type, size_t size, MPI_Comm comm,
                       const char *fn)
{
    char *c = p;
    for (size_t done = 0; done < n;) {
        size_t m = n - done < MAX_COUNT ? n - done : MAX_COUNT;
        int err = MPI_Bcast(c + done * size, (int)m, type, 0, comm);
        if (err != MPI_SUCCESS)
            return mpi_fail(err, fn, "MPI_Bcast");
        done += m;
    }
    return BP_OK;
}

/* n x size zeroed bytes, or NULL (also when n x size overflows). */
static void *alloc_n(size_t n, size_t size)
{
    size_t bytes;
    return bpi_mul(n, size, &bytes) && bytes ? bpi_alloc(bytes) : NULL;
}

static bp_status alloc_net(bpi_dist *d, const bp_net *net, const bp_optim *opt, const char *fn)
{
    size_t L = net->n_layers, S = (size_t)d->shards, F = net->block_floats;
    d->buckets = alloc_n(L, sizeof *d->buckets);
    d->bucket_of = alloc_n(L, sizeof *d->bucket_of);
    d->reqs = alloc_n(L, sizeof *d->reqs);
    d->summed = alloc_n(L, sizeof *d->summed);
    d->loss_send = alloc_n((size_t)d->local + 1, sizeof(double));
    d->loss_recv = alloc_n(S + (size_t)d->size, sizeof(double));
    if (!d->buckets || !d->bucket_of || !d->reqs || !d->summed || !d->loss_send || !d->loss_recv)
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate the reduction plan", fn);
    plan_buckets(d, net);
    for (size_t k = 0; k < d->n_buckets; k++)
        if (d->buckets[k].n > MAX_COUNT / S)
            return bpi_fail(BP_EUNSUPPORTED, "%s: layer %zu's gradient (%zu floats) times %zu "
                                             "shards exceeds one MPI message", fn,
                            d->buckets[k].lo, d->buckets[k].n, S);
    if (d->opt.exact) {
        d->send = alloc_n(F, (size_t)d->local * sizeof(float));
        d->recv = alloc_n(F, S * sizeof(float));
        if (!d->send || !d->recv)
            return bpi_fail(BP_ENOMEM, "%s: cannot allocate %zu x %zu floats of gather buffers",
                            fn, S + (size_t)d->local, F);
    }
    if (opt && d->opt.layer_updates && opt->cfg.clip_norm == 0.0f) {
        d->snap = alloc_n(F, (1 + opt->n_slots) * sizeof(float));
        if (!d->snap)
            return bpi_fail(BP_ENOMEM, "%s: cannot allocate %zu x %zu floats for layer updates "
                                       "(layer_updates 0 does without)", fn, 1 + opt->n_slots, F);
        d->snap_slots = opt->n_slots;
    }
    return BP_OK;
}

bp_status bp_mpi_prepare(bp_net *net, bp_optim *opt)
{
    const char *fn = "bp_mpi_prepare";
    if (!net)
        return bpi_fail(BP_EINVAL, "%s: net is NULL", fn);
    bpi_dist *d = net->ctx->dist;
    if (!d)
        return bpi_fail(BP_ESTATE, "%s: the net's context has no communicator "
                                   "(bp_ctx_set_comm)", fn);
    bp_status s = BP_OK;
    if (opt && opt->net != net)
        s = bpi_fail(BP_EINVAL, "%s: opt was created for another net", fn);
    /* The same architecture and optimizer everywhere, or nothing moves. */
    int64_t v[5] = {(int64_t)net->n_in, (int64_t)net->n_layers, (int64_t)net->block_floats,
                    opt ? (int64_t)opt->n_slots : -1, opt ? (int64_t)opt->cfg.type : -1};
    BPI_TRY(agree(d, s, v, 5, "the net's architecture or the optimizer", fn));
    bpi_net_params_written(net);
    BPI_TRY(bcast(net->params, net->block_floats, MPI_FLOAT, sizeof(float), d->comm, fn));
    if (opt) {
        bpi_optim_state_written(opt);
        BPI_TRY(bcast(opt->state, opt->n_slots * net->block_floats, MPI_FLOAT, sizeof(float),
                      d->comm, fn));
        BPI_TRY(bcast(&opt->steps, 1, MPI_UINT64_T, sizeof(uint64_t), d->comm, fn));
    }
    release_net(d);
    s = alloc_net(d, net, opt, fn);
    if (s != BP_OK) {
        release_net(d);
        return s;
    }
    d->net = net;
    d->net_floats = net->block_floats;
    d->net_layers = net->n_layers;
    memset(&d->stats, 0, sizeof d->stats);
    return BP_OK;
}

static bp_status check_prepared(const bpi_dist *d, const bp_net *net, const char *fn)
{
    if (d->net != net || d->net_floats != net->block_floats || d->net_layers != net->n_layers)
        return bpi_fail(BP_ESTATE, "%s: call bp_mpi_prepare for this net before training it "
                                   "over MPI", fn);
    return BP_OK;
}

/* ------------------------------------------------------------ the step */

/* MPI may be called here: not from inside an OpenMP region. */
static int may_call_mpi(void)
{
#if BP_HAVE_OPENMP
    return !omp_in_parallel();
#else
    return 1;
#endif
}

/* Start the next bucket's reduction. An error is reported by the wait
 * (the request stays MPI_REQUEST_NULL and d->err keeps the code). */
static void start_next(bpi_dist *d)
{
    size_t k = d->next_bucket++, S = (size_t)d->shards, local = (size_t)d->local;
    const bucket *b = &d->buckets[k];
    int err;
    if (d->opt.exact)
        err = MPI_Iallgather(d->send + local * b->off, (int)(local * b->n), MPI_FLOAT,
                             d->recv + S * b->off, (int)(local * b->n), MPI_FLOAT, d->comm,
                             &d->reqs[k]);
    else
        err = MPI_Iallreduce(MPI_IN_PLACE, d->net->grads + b->off, (int)b->n, MPI_FLOAT,
                             MPI_SUM, d->comm, &d->reqs[k]);
    if (err != MPI_SUCCESS && d->err == MPI_SUCCESS)
        d->err = err;
    d->stats.reductions++;
}

/* Open MPI's non-blocking collectives progress only inside MPI calls: test
 * the ones in flight between layers. */
static void progress(bpi_dist *d)
{
    for (size_t k = 0; k < d->next_bucket; k++)
        if (d->reqs[k] != MPI_REQUEST_NULL) {
            int done = 0;
            MPI_Test(&d->reqs[k], &done, MPI_STATUS_IGNORE);
        }
}

/* dst = scale * src, or in place (dst == src) */
static void scale_floats(float *dst, const float *src, size_t n, float scale, int nt)
{
    BPI_OMP_FOR(nt, n)
    for (size_t i = 0; i < n; i++)
        dst[i] = scale * src[i];
}

/* The grads_ready hook: layer `layer` of the current shard is final.
 * Weight it by rows / N (into the send buffer in exact mode) and, on the
 * rank's last shard, start the reductions whose layers are all ready, in
 * bucket order (the same order on every rank). */
static void layer_ready(void *user, size_t layer)
{
    bpi_dist *d = user;
    bp_net *net = d->net;
    size_t off = net->layers[layer].w_off, n = layer_end(net, layer) - off;
    const bucket *b = &d->buckets[d->bucket_of[layer]];
    float *g = net->grads + off;
    if (d->opt.exact) {
        float *dst = d->send + (size_t)d->local * b->off + (size_t)d->shard * b->n +
                     (off - b->off);
        scale_floats(dst, g, n, d->scale, net->ctx->n_threads);
    } else if (d->scale != 1.0f) {
        scale_floats(g, g, n, d->scale, net->ctx->n_threads);
    }
    if (layer < d->pending)
        d->pending = layer;
    if (d->shard != d->local - 1 || !d->opt.overlap || !may_call_mpi())
        return;
    while (d->next_bucket < d->n_buckets && d->buckets[d->next_bucket].lo >= d->pending)
        start_next(d);
    progress(d);
}

static void step_begin(bpi_dist *d)
{
    for (size_t k = 0; k < d->n_buckets; k++) {
        d->reqs[k] = MPI_REQUEST_NULL;
        d->summed[k] = 0;
    }
    d->next_bucket = 0;
    d->err = MPI_SUCCESS;
}

/* Local shard j of the step: rows rows of X (rows may be 0, and a failure
 * on this rank, `status`, skips the computation), weighted by rows / N.
 * Whatever happens, every layer is handed to layer_ready, with a zero
 * gradient where nothing was computed, so the collectives all start. */
static bp_status shard_run(bpi_dist *d, int j, const float *X, const int32_t *labels,
                           const float *targets, size_t rows, size_t N, bp_status status,
                           const char *fn)
{
    bp_net *net = d->net;
    double t0 = seconds();
    d->shard = j;
    d->pending = net->n_layers;
    d->loss_send[j] = 0.0;
    if (rows > 0 && status == BP_OK) {
        float loss = 0.0f;
        d->scale = (float)((double)rows / (double)N);
        bpi_net_forward(net, X, rows);
        net->grads_ready = layer_ready;
        net->grads_ready_user = d;
        status = bpi_net_backward(net, labels, targets, &loss, fn);
        net->grads_ready = NULL;
        net->grads_ready_user = NULL;
        d->loss_send[j] = (double)loss * (double)rows;
    }
    /* Whatever ran here, the reduction (and the zeros below) rewrite the
     * gradients: the backward's max |dW| no longer bounds them. */
    net->grad_bound_valid = 0;
    if (d->pending > 0) {
        /* Nothing (more) to contribute from this shard: zeros. */
        size_t end = layer_end(net, d->pending - 1);
        memset(net->grads, 0, end * sizeof(float));
        d->scale = 0.0f;
        d->loss_send[j] = 0.0;
        for (size_t i = d->pending; i-- > 0;)
            layer_ready(d, i);
    }
    d->stats.compute_seconds += seconds() - t0;
    return status;
}

/* Exact mode: g = shard 0 + shard 1 + ... in shard order, every element on
 * its own, so the bits depend on nothing but the shards. */
static void sum_shards(bpi_dist *d, size_t k)
{
    const bucket *b = &d->buckets[k];
    size_t S = (size_t)d->shards, n = b->n;
    const float *r = d->recv + S * b->off;
    float *g = d->net->grads + b->off;
    BPI_OMP_FOR(d->net->ctx->n_threads, n * S)
    for (size_t i = 0; i < n; i++) {
        float sum = r[i];
        for (size_t s = 1; s < S; s++)
            sum += r[s * n + i];
        g[i] = sum;
    }
    d->summed[k] |= 1;
}

/* The gathered losses and statuses: any rank's failure fails the step
 * everywhere; else *total = the sum of the shards' losses x rows, in shard
 * order. */
static bp_status gathered(const bpi_dist *d, double *total, const char *fn)
{
    size_t per = (size_t)d->local + 1;
    *total = 0.0;
    for (int r = 0; r < d->size; r++) {
        const double *x = d->loss_recv + (size_t)r * per;
        if (x[d->local] != 0.0)
            return bpi_fail((bp_status)x[d->local], "%s: rank %d failed this step (%s): see "
                            "its message; no parameter changed", fn, r,
                            bp_status_str((bp_status)x[d->local]));
        for (int j = 0; j < d->local; j++)
            *total += x[j];
    }
    return BP_OK;
}

/* Bucket k's gradients are final (summed, in exact mode): update its
 * layers, unless an earlier one failed (then only the sums are done). */
static bp_status bucket_arrived(bpi_dist *d, bp_optim *opt, size_t k, bp_status s,
                                double *update_seconds, const char *fn)
{
    if (d->opt.exact && !(d->summed[k] & 1))
        sum_shards(d, k);
    if (!opt || s != BP_OK || (d->summed[k] & 2))
        return s;
    double t = seconds();
    const bucket *b = &d->buckets[k];
    for (size_t i = b->hi + 1; i-- > b->lo;) {
        s = bpi_optim_layerwise_update(opt, i, d->snap, fn);
        d->stats.layer_updates += s == BP_OK;
        if (s != BP_OK) { /* layer i is as it was: put back the ones after it */
            for (size_t r = i + 1; r <= b->hi; r++)
                bpi_optim_layerwise_restore(opt, r, d->snap);
            break;
        }
    }
    if (s == BP_OK)
        d->summed[k] |= 2;
    *update_seconds += seconds() - t;
    return s;
}

/* Start what the backward did not, gather the losses and statuses, and as
 * each bucket's reduction completes sum its shards (exact mode) and, with
 * layer updates, update its layers at once; else update after all.
 * *loss: the global mean. */
static bp_status step_finish(bpi_dist *d, bp_optim *opt, size_t N, bp_status local,
                             float *loss, const char *fn)
{
    double t0 = seconds(), upd = 0.0, total = 0.0;
    size_t per = (size_t)d->local + 1;
    while (d->next_bucket < d->n_buckets)
        start_next(d);
    d->loss_send[d->local] = (double)local;
    MPI_Request lreq = MPI_REQUEST_NULL;
    int err = d->err;
    if (err == MPI_SUCCESS)
        err = MPI_Iallgather(d->loss_send, (int)per, MPI_DOUBLE, d->loss_recv, (int)per,
                             MPI_DOUBLE, d->comm, &lreq);
    /* Whether every rank's shards went through, before anything changes
     * (it comes as soon as the last rank's backward ends). */
    if (err == MPI_SUCCESS)
        err = MPI_Wait(&lreq, MPI_STATUS_IGNORE);
    bp_status s = local;
    if (err == MPI_SUCCESS && s == BP_OK)
        s = gathered(d, &total, fn);
    bp_optim *layerwise = NULL;
    if (s == BP_OK && opt && d->snap && bpi_optim_layerwise_ok(opt, d->snap_slots)) {
        layerwise = opt;
        bpi_optim_layerwise_begin(opt);
    }
    /* In bucket order (the order they were started, so the order they
     * finish in, mostly): the last layers first. Every request is waited
     * for, whatever failed. */
    for (size_t k = 0; k < d->n_buckets; k++) {
        int e = MPI_Wait(&d->reqs[k], MPI_STATUS_IGNORE);
        if (err == MPI_SUCCESS)
            err = e;
        if (err == MPI_SUCCESS)
            s = bucket_arrived(d, layerwise, k, s, &upd, fn);
    }
    if (err != MPI_SUCCESS && s == BP_OK)
        s = mpi_fail(err, fn, "waiting for the gradient reduction");
    double t1 = seconds();
    d->stats.wait_seconds += t1 - t0 - upd;
    if (layerwise && s != BP_OK) {
        /* All or nothing: put back the layers already updated. */
        for (size_t k = 0; k < d->n_buckets; k++)
            if (d->summed[k] & 2)
                for (size_t i = d->buckets[k].lo; i <= d->buckets[k].hi; i++)
                    bpi_optim_layerwise_restore(opt, i, d->snap);
    }
    if (s != BP_OK)
        return s;
    if (layerwise)
        bpi_optim_layerwise_end(opt);
    else
        s = bp_optim_step(opt);
    d->stats.update_seconds += upd + (seconds() - t1);
    d->stats.steps++;
    if (loss)
        *loss = (float)(total / (double)N);
    return s;
}

/* ------------------------------------------------- the training calls */

bp_status bpi_dist_step(bp_net *net, bp_optim *opt, const float *X, const int32_t *labels,
                        const float *targets, size_t B, float *loss, const char *fn)
{
    bpi_dist *d = net->ctx->dist;
    bp_status s = check_prepared(d, net, fn);
    if (s == BP_OK && d->local != 1)
        s = bpi_fail(BP_EINVAL, "%s: %d shards on %d ranks: use bp_train_epoch", fn, d->shards,
                     d->size);
    if (s == BP_OK && !X)
        s = bpi_fail(BP_EINVAL, "%s: X is NULL", fn);
    if (s == BP_OK && (B == 0 || B > net->max_batch))
        s = bpi_fail(BP_EINVAL, "%s: batch B is %zu (expected 1..max_batch %zu)", fn, B,
                     net->max_batch);
    if (s == BP_OK)
        s = bpi_check_targets(net, labels, targets, B, fn);
    /* The global batch N = the sum of the ranks' B, and everyone's checks. */
    int64_t v[2] = {s == BP_OK ? (int64_t)B : 0, s != BP_OK};
    int err = MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT64_T, MPI_SUM, d->comm);
    if (err != MPI_SUCCESS)
        return mpi_fail(err, fn, "MPI_Allreduce");
    if (s != BP_OK)
        return s;
    if (v[1] != 0)
        return bpi_fail(BP_EINVAL, "%s: %lld rank(s) rejected their arguments: see their "
                                   "messages", fn, (long long)v[1]);
    step_begin(d);
    s = shard_run(d, 0, X, labels, targets, B, (size_t)v[0], BP_OK, fn);
    return step_finish(d, opt, (size_t)v[0], s, loss, fn);
}

bp_status bpi_dist_epoch(bp_net *net, bp_optim *opt, bp_dataset *ds, size_t batch,
                         uint64_t seed, uint64_t epoch, float *mean_loss,
                         bp_progress_fn progress_fn, void *user, size_t *batches_done,
                         const char *fn)
{
    bpi_dist *d = net->ctx->dist;
    bp_status s = check_prepared(d, net, fn);
    if (s == BP_OK)
        s = bpi_train_check_data(net, ds, batch, fn);
    size_t G = 0;
    if (s == BP_OK && !bpi_mul(batch, (size_t)d->shards, &G))
        s = bpi_fail(BP_EINVAL, "%s: batch %zu x %d shards overflows", fn, batch, d->shards);
    int64_t v[4] = {s == BP_OK ? (int64_t)ds->n : 0, (int64_t)batch, (int64_t)seed,
                    (int64_t)epoch};
    BPI_TRY(agree(d, s, v, 4, "the dataset size, batch, seed or epoch", fn));
    bpi_train_shuffle(ds, seed, epoch);
    size_t n_batches = (ds->n + G - 1) / G, done = 0, seen = 0;
    double total = 0.0;
    for (size_t start = 0; start < ds->n; start += G) {
        size_t N = ds->n - start < G ? ds->n - start : G;
        bp_status local = BP_OK;
        step_begin(d);
        for (int j = 0; j < d->local; j++) {
            /* Global shard r * local + j: rows [lo, hi) of this global batch. */
            size_t sh = (size_t)d->rank * (size_t)d->local + (size_t)j;
            size_t lo = sh * batch < N ? sh * batch : N;
            size_t rows = N - lo < batch ? N - lo : batch;
            if (rows > 0)
                bpi_train_gather(net, ds, start + lo, rows);
            local = shard_run(d, j, net->batch_x, ds->labels ? net->batch_labels : NULL,
                              ds->labels ? NULL : net->batch_targets, rows, N, local, fn);
        }
        float loss = 0.0f;
        s = step_finish(d, opt, N, local, &loss, fn);
        if (s != BP_OK)
            return s;
        total += (double)loss * (double)N;
        seen += N;
        done++;
        if (progress_fn && progress_fn(user, done, n_batches, loss) != 0)
            break;
    }
    if (batches_done)
        *batches_done = done;
    if (mean_loss)
        *mean_loss = seen ? (float)(total / (double)seen) : 0.0f;
    return BP_OK;
}
