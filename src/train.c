/* Training helpers: one step, one epoch over a dataset, evaluation. */
#include <math.h>
#include <string.h>

#include "bp_config.h"
#include "dataset.h"
#include "dist.h"
#include "error.h"
#include "net.h"
#include "optim.h"
#include "parallel.h"
#include "rng.h"
#include "step.h"
#include "team.h"
#include "train.h"

static bp_status check_pair(const bp_net *net, const bp_optim *opt, const char *fn)
{
    if (!net || !opt)
        return bpi_fail(BP_EINVAL, "%s: %s is NULL", fn, !net ? "net" : "opt");
    if (opt->net != net)
        return bpi_fail(BP_EINVAL, "%s: opt was created for another net", fn);
    return BP_OK;
}

/* forward, backward, update: on any failure no parameter has changed.
 * With `rows`, X, labels and targets are the net's staging buffers, to be
 * filled from those dataset rows first. */
static bp_status step(bp_net *net, bp_optim *opt, const bpi_rows *rows, const float *X,
                      const int32_t *labels, const float *targets, size_t B, float *loss,
                      const char *fn)
{
    bp_status s;
    if (bpi_step_one_region(net, opt, rows, X, labels, targets, B, loss, &s, fn))
        return s;
    if (rows)
        bpi_train_gather(net, rows->ds, rows->start, B);
    bpi_net_forward(net, X, B);
    BPI_TRY(bpi_net_backward(net, labels, targets, loss, fn));
    return bp_optim_step(opt);
}

bp_status bp_train_step(bp_net *net, bp_optim *opt, const float *X, const int32_t *labels,
                        const float *targets, size_t B, float *loss)
{
    const char *fn = "bp_train_step";
    BPI_TRY(check_pair(net, opt, fn));
#if BP_HAVE_MPI
    if (net->ctx->dist)
        return bpi_dist_step(net, opt, X, labels, targets, B, loss, fn);
#endif
    if (!X)
        return bpi_fail(BP_EINVAL, "%s: X is NULL", fn);
    if (B == 0 || B > net->max_batch)
        return bpi_fail(BP_EINVAL, "%s: batch B is %zu (expected 1..max_batch %zu)", fn, B,
                        net->max_batch);
    BPI_TRY(bpi_check_targets(net, labels, targets, B, fn));
    return step(net, opt, NULL, X, labels, targets, B, loss, fn);
}

/* The dataset must fit the net: width, and labels or targets as the head wants. */
bp_status bpi_train_check_data(const bp_net *net, const bp_dataset *ds, size_t batch,
                               const char *fn)
{
    if (!ds)
        return bpi_fail(BP_EINVAL, "%s: ds is NULL", fn);
    if (batch == 0 || batch > net->max_batch)
        return bpi_fail(BP_EINVAL, "%s: batch is %zu (expected 1..max_batch %zu)", fn, batch,
                        net->max_batch);
    if (!ds->labels && !ds->targets)
        return bpi_fail(BP_EINVAL, "%s: the dataset is unlabelled (no labels nor targets)", fn);
    if (ds->n_features != net->n_in)
        return bpi_fail(BP_EINVAL, "%s: dataset has %zu features, the net takes %zu", fn,
                        ds->n_features, net->n_in);
    size_t n_out = net->layers[net->n_layers - 1].n_out;
    if (ds->targets && ds->n_targets != n_out)
        return bpi_fail(BP_EINVAL, "%s: dataset has %zu targets per row, the net outputs %zu",
                        fn, ds->n_targets, n_out);
    return bpi_check_targets(net, ds->labels, ds->targets, ds->n, fn);
}

/* The epoch's order depends only on (seed, epoch): identity, then a
 * Fisher-Yates shuffle from a generator seeded with both. */
void bpi_train_shuffle(bp_dataset *ds, uint64_t seed, uint64_t epoch)
{
    bpi_rng rng;
    bpi_rng_seed(&rng, seed ^ (0x9E3779B97F4A7C15ull * (epoch + 1)));
    for (size_t i = 0; i < ds->n; i++)
        ds->order[i] = i;
    for (size_t i = ds->n - 1; i > 0; i--) {
        size_t j = (size_t)bpi_rng_below(&rng, (uint64_t)i + 1);
        size_t t = ds->order[i];
        ds->order[i] = ds->order[j];
        ds->order[j] = t;
    }
}

/* Rows [lo, hi) of the batch that starts at position `start` of the
 * epoch's order, into the net's staging buffers. The rows come from
 * anywhere in the dataset, so each copy waits on memory: the next row's
 * lines are requested while this one is copied. On Fashion-MNIST (128 rows
 * of 3136 bytes from 188 MB, 2 threads, a region of its own) a batch took
 * 31-32 us without and 24 us with (2 runs each; fetching 2, 4 or 8 rows
 * ahead did no better). */
void bpi_train_gather_rows(bp_net *net, const bp_dataset *ds, size_t start, size_t lo,
                           size_t hi)
{
    size_t nf = ds->n_features, nt = ds->n_targets;
    for (size_t k = lo; k < hi; k++) {
        if (k + 1 < hi) {
            const char *next = (const char *)(ds->X + ds->order[start + k + 1] * nf);
            for (size_t at = 0; at < nf * sizeof(float); at += 64)
                __builtin_prefetch(next + at);
        }
        size_t r = ds->order[start + k];
        memcpy(net->batch_x + k * nf, ds->X + r * nf, nf * sizeof(float));
        if (ds->labels)
            net->batch_labels[k] = ds->labels[r];
        else
            memcpy(net->batch_targets + k * nt, ds->targets + r * nt, nt * sizeof(float));
    }
}

void bpi_train_gather(bp_net *net, const bp_dataset *ds, size_t start, size_t B)
{
    /* the other threads would only wait for the forward's first GEMM */
    BPI_OMP_EACH(net->ctx->n_threads, B * ds->n_features, tid, nt)
    {
        bpi_team team = {tid, nt, NULL};
        size_t lo, hi;
        bpi_team_range(&team, B, &lo, &hi);
        bpi_train_gather_rows(net, ds, start, lo, hi);
    }
}

static bp_status epoch_run(bp_net *net, bp_optim *opt, bp_dataset *ds, size_t batch,
                           uint64_t seed, uint64_t epoch, float *mean_loss,
                           bp_progress_fn progress, void *user, size_t *batches_done,
                           const char *fn)
{
    BPI_TRY(check_pair(net, opt, fn));
#if BP_HAVE_MPI
    if (net->ctx->dist)
        return bpi_dist_epoch(net, opt, ds, batch, seed, epoch, mean_loss, progress, user,
                              batches_done, fn);
#endif
    BPI_TRY(bpi_train_check_data(net, ds, batch, fn));
    bpi_train_shuffle(ds, seed, epoch);
    size_t n_batches = (ds->n + batch - 1) / batch, done = 0, seen = 0;
    double total = 0.0;
    bp_status s = BP_OK;
    for (size_t start = 0; start < ds->n; start += batch) {
        size_t B = ds->n - start < batch ? ds->n - start : batch;
        float loss;
        bpi_rows rows = {ds, start};
        s = step(net, opt, &rows, net->batch_x, ds->labels ? net->batch_labels : NULL,
                 ds->labels ? NULL : net->batch_targets, B, &loss, fn);
        if (s != BP_OK)
            break;
        total += (double)loss * (double)B;
        seen += B;
        done++;
        if (progress && progress(user, done, n_batches, loss) != 0)
            break;
    }
    if (s != BP_OK)
        return s;
    if (batches_done)
        *batches_done = done;
    if (mean_loss)
        *mean_loss = seen ? (float)(total / (double)seen) : 0.0f;
    return BP_OK;
}

bp_status bp_train_epoch(bp_net *net, bp_optim *opt, bp_dataset *ds, size_t batch,
                         uint64_t seed, uint64_t epoch, float *mean_loss)
{
    return epoch_run(net, opt, ds, batch, seed, epoch, mean_loss, NULL, NULL, NULL,
                     "bp_train_epoch");
}

bp_status bp_train_epoch_progress(bp_net *net, bp_optim *opt, bp_dataset *ds, size_t batch,
                                  uint64_t seed, uint64_t epoch, float *mean_loss,
                                  bp_progress_fn progress, void *user, size_t *batches_done)
{
    return epoch_run(net, opt, ds, batch, seed, epoch, mean_loss, progress, user,
                     batches_done, "bp_train_epoch_progress");
}
