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
#include "train.h"

static bp_status check_pair(const bp_net *net, const bp_optim *opt, const char *fn)
{
    if (!net || !opt)
        return bpi_fail(BP_EINVAL, "%s: %s is NULL", fn, !net ? "net" : "opt");
    if (opt->net != net)
        return bpi_fail(BP_EINVAL, "%s: opt was created for another net", fn);
    return BP_OK;
}

/* forward, backward, update: on any failure no parameter has changed. */
static bp_status step(bp_net *net, bp_optim *opt, const float *X, const int32_t *labels,
                      const float *targets, size_t B, float *loss, const char *fn)
{
    bp_status s;
    if (bpi_step_one_region(net, opt, X, labels, targets, B, loss, &s, fn))
        return s;
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
    return step(net, opt, X, labels, targets, B, loss, fn);
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

/* Copy rows order[start .. start+B) into the net's staging buffers. */
void bpi_train_gather(bp_net *net, const bp_dataset *ds, size_t start, size_t B)
{
    size_t nf = ds->n_features, nt = ds->n_targets;
    /* Rows from anywhere in the dataset: each copy waits on memory, and
     * the other threads would only wait for the forward's first GEMM. */
    BPI_OMP_FOR(net->ctx->n_threads, B * nf)
    for (size_t k = 0; k < B; k++) {
        size_t r = ds->order[start + k];
        memcpy(net->batch_x + k * nf, ds->X + r * nf, nf * sizeof(float));
        if (ds->labels)
            net->batch_labels[k] = ds->labels[r];
        else
            memcpy(net->batch_targets + k * nt, ds->targets + r * nt, nt * sizeof(float));
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
        bpi_train_gather(net, ds, start, B);
        float loss;
        s = step(net, opt, net->batch_x, ds->labels ? net->batch_labels : NULL,
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

/* Correct predictions in the last forward of B rows starting at row `start`. */
static double count_correct(const bp_net *net, const bp_dataset *ds, size_t start, size_t B)
{
    const bpi_layer *last = &net->layers[net->n_layers - 1];
    size_t n = last->n_out;
    double correct = 0.0;
    for (size_t b = 0; b < B; b++) {
        const float *y = last->A + b * n;
        if (net->head == BP_HEAD_SOFTMAX_CE) {
            size_t best = 0;
            for (size_t j = 1; j < n; j++)
                best = y[j] > y[best] ? j : best;
            correct += best == (size_t)ds->labels[start + b];
        } else {
            const float *t = ds->targets + (start + b) * n;
            for (size_t j = 0; j < n; j++)
                correct += ((y[j] > 0.0f) == (t[j] >= 0.5f)) / (double)n;
        }
    }
    return correct;
}

bp_status bp_evaluate(bp_net *net, const bp_dataset *ds, size_t batch, float *loss,
                      float *accuracy)
{
    const char *fn = "bp_evaluate";
    if (!net)
        return bpi_fail(BP_EINVAL, "%s: net is NULL", fn);
    BPI_TRY(bpi_train_check_data(net, ds, batch, fn));
    double total = 0.0, correct = 0.0;
    for (size_t start = 0; start < ds->n; start += batch) {
        size_t B = ds->n - start < batch ? ds->n - start : batch;
        bpi_net_forward(net, ds->X + start * ds->n_features, B);
        double l;
        BPI_TRY(bpi_net_loss(net, ds->labels ? ds->labels + start : NULL,
                             ds->targets ? ds->targets + start * ds->n_targets : NULL, &l, fn));
        total += l * (double)B;
        if (net->head != BP_HEAD_MSE)
            correct += count_correct(net, ds, start, B);
    }
    if (loss)
        *loss = (float)(total / (double)ds->n);
    if (accuracy)
        *accuracy = net->head == BP_HEAD_MSE ? NAN : (float)(correct / (double)ds->n);
    return BP_OK;
}
