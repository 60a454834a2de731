/* In-memory datasets: features plus int labels or float targets. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "dataset.h"
#include "error.h"
#include "rng.h"

bp_status bpi_dataset_alloc(bp_dataset **out, size_t n, size_t n_features, size_t n_targets,
                            const char *fn)
{
    size_t x_bytes, t_bytes = 0, o_bytes, tmp;
    if (!bpi_mul(n, n_features, &tmp) || !bpi_mul(tmp, sizeof(float), &x_bytes) ||
        !bpi_mul(n, n_targets, &tmp) || !bpi_mul(tmp, sizeof(float), &t_bytes) ||
        !bpi_mul(n, sizeof(size_t), &o_bytes))
        return bpi_fail(BP_EINVAL, "%s: sizes overflow (n %zu, n_features %zu, n_targets %zu)",
                        fn, n, n_features, n_targets);
    bp_dataset *ds = bpi_alloc(sizeof *ds);
    if (!ds)
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate the dataset", fn);
    ds->n = n;
    ds->n_features = n_features;
    ds->n_targets = n_targets;
    ds->X = bpi_alloc(x_bytes);
    ds->order = bpi_alloc(o_bytes);
    if (n_targets == 0)
        ds->labels = bpi_alloc(n * sizeof(int32_t));
    else
        ds->targets = bpi_alloc(t_bytes);
    if (!ds->X || !ds->order || (!ds->labels && !ds->targets)) {
        bp_dataset_destroy(ds);
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate %zu bytes of data", fn, x_bytes + t_bytes);
    }
    *out = ds;
    return BP_OK;
}

bp_status bpi_dataset_alloc_unlabelled(bp_dataset **out, size_t n, size_t n_features,
                                       const char *fn)
{
    BPI_TRY(bpi_dataset_alloc(out, n, n_features, 0, fn));
    bpi_free((*out)->labels);
    (*out)->labels = NULL;
    return BP_OK;
}

bp_status bp_dataset_create(bp_dataset **out, size_t n, size_t n_features, const float *X,
                            const int32_t *labels, const float *targets, size_t n_targets)
{
    const char *fn = "bp_dataset_create";
    if (!out || !X)
        return bpi_fail(BP_EINVAL, "%s: %s is NULL", fn, !out ? "ds" : "X");
    if (n == 0 || n_features == 0)
        return bpi_fail(BP_EINVAL, "%s: %s is 0", fn, n == 0 ? "n" : "n_features");
    if ((labels != NULL) == (targets != NULL))
        return bpi_fail(BP_EINVAL, "%s: give exactly one of labels and targets", fn);
    if (targets && n_targets == 0)
        return bpi_fail(BP_EINVAL, "%s: n_targets is 0 with targets given", fn);
    if (labels && n_targets != 0)
        return bpi_fail(BP_EINVAL, "%s: n_targets must be 0 with labels", fn);
    /* Allocate first: it checks the sizes for overflow before the labels
     * are read, so an absurd n never makes us read past the caller's array. */
    bp_dataset *ds;
    BPI_TRY(bpi_dataset_alloc(&ds, n, n_features, n_targets, fn));
    for (size_t i = 0; labels && i < n; i++)
        if (labels[i] < 0) {
            bp_dataset_destroy(ds);
            return bpi_fail(BP_EINVAL, "%s: labels[%zu] is %d (expected >= 0)", fn, i,
                            (int)labels[i]);
        }
    memcpy(ds->X, X, n * n_features * sizeof(float));
    if (labels)
        memcpy(ds->labels, labels, n * sizeof(int32_t));
    else
        memcpy(ds->targets, targets, n * n_targets * sizeof(float));
    *out = ds;
    return BP_OK;
}

void bp_dataset_destroy(bp_dataset *ds)
{
    if (!ds)
        return;
    bpi_free(ds->X);
    bpi_free(ds->labels);
    bpi_free(ds->targets);
    bpi_free(ds->order);
    bpi_free(ds);
}

size_t bp_dataset_size(const bp_dataset *ds) { return ds ? ds->n : 0; }
size_t bp_dataset_n_features(const bp_dataset *ds) { return ds ? ds->n_features : 0; }
const float *bp_dataset_features(const bp_dataset *ds) { return ds ? ds->X : NULL; }
const int32_t *bp_dataset_labels(const bp_dataset *ds) { return ds ? ds->labels : NULL; }
const float *bp_dataset_targets(const bp_dataset *ds) { return ds ? ds->targets : NULL; }

size_t bp_dataset_n_targets(const bp_dataset *ds) { return ds ? ds->n_targets : 0; }

size_t bp_dataset_n_classes(const bp_dataset *ds)
{
    if (!ds || !ds->labels)
        return 0;
    int32_t top = 0;
    for (size_t i = 0; i < ds->n; i++)
        top = ds->labels[i] > top ? ds->labels[i] : top;
    return (size_t)top + 1;
}

/* Copy rows `rows[0..n)` of src into a new dataset. */
static bp_status subset(const bp_dataset *src, const size_t *rows, size_t n, bp_dataset **out,
                        const char *fn)
{
    bp_dataset *ds;
    if (src->labels || src->targets)
        BPI_TRY(bpi_dataset_alloc(&ds, n, src->n_features, src->n_targets, fn));
    else
        BPI_TRY(bpi_dataset_alloc_unlabelled(&ds, n, src->n_features, fn));
    size_t nf = src->n_features, nt = src->n_targets;
    for (size_t k = 0; k < n; k++) {
        size_t r = rows[k];
        memcpy(ds->X + k * nf, src->X + r * nf, nf * sizeof(float));
        if (src->labels)
            ds->labels[k] = src->labels[r];
        else if (src->targets)
            memcpy(ds->targets + k * nt, src->targets + r * nt, nt * sizeof(float));
    }
    *out = ds;
    return BP_OK;
}

bp_status bp_dataset_split(const bp_dataset *ds, double fraction, uint64_t seed,
                           bp_dataset **train, bp_dataset **validation)
{
    const char *fn = "bp_dataset_split";
    if (!ds || !train || !validation)
        return bpi_fail(BP_EINVAL, "%s: %s is NULL", fn,
                        !ds ? "ds" : !train ? "train" : "validation");
    if (!(fraction > 0.0 && fraction < 1.0))
        return bpi_fail(BP_EINVAL, "%s: fraction is %g (expected 0 < fraction < 1)", fn, fraction);
    size_t n_val = (size_t)floor(fraction * (double)ds->n + 0.5);
    if (n_val == 0 || n_val >= ds->n)
        return bpi_fail(BP_EINVAL, "%s: fraction %g of %zu rows leaves an empty part", fn,
                        fraction, ds->n);
    /* The permutation goes through ds->order's twin: a private copy, so ds
     * (const) is not touched. */
    size_t *perm = bpi_alloc(ds->n * sizeof(size_t));
    if (!perm)
        return bpi_fail(BP_ENOMEM, "%s: cannot allocate the permutation", fn);
    bpi_rng rng;
    bpi_rng_seed(&rng, seed);
    for (size_t i = 0; i < ds->n; i++)
        perm[i] = i;
    for (size_t i = ds->n - 1; i > 0; i--) {
        size_t j = (size_t)bpi_rng_below(&rng, (uint64_t)i + 1);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    bp_dataset *tr = NULL, *va = NULL;
    bp_status s = subset(ds, perm, ds->n - n_val, &tr, fn);
    if (s == BP_OK)
        s = subset(ds, perm + (ds->n - n_val), n_val, &va, fn);
    bpi_free(perm);
    if (s != BP_OK) {
        bp_dataset_destroy(tr);
        return s;
    }
    *train = tr;
    *validation = va;
    return BP_OK;
}

bp_status bp_dataset_feature_stats(const bp_dataset *ds, float *mean, float *std,
                                   size_t n_features)
{
    const char *fn = "bp_dataset_feature_stats";
    if (!ds || !mean || !std)
        return bpi_fail(BP_EINVAL, "%s: %s is NULL", fn, !ds ? "ds" : !mean ? "mean" : "std");
    if (n_features != ds->n_features)
        return bpi_fail(BP_EINVAL, "%s: n_features is %zu, the dataset has %zu", fn, n_features,
                        ds->n_features);
    /* Two passes in double, rows in order: exact enough and reproducible. */
    for (size_t j = 0; j < n_features; j++) {
        double s = 0.0, ss = 0.0;
        for (size_t i = 0; i < ds->n; i++)
            s += ds->X[i * n_features + j];
        double m = s / (double)ds->n;
        for (size_t i = 0; i < ds->n; i++) {
            double d = ds->X[i * n_features + j] - m;
            ss += d * d;
        }
        double sd = sqrt(ss / (double)ds->n);
        mean[j] = (float)m;
        std[j] = sd < 1e-6 ? 1.0f : (float)sd;
    }
    return BP_OK;
}

bp_status bp_dataset_standardize(bp_dataset *ds, const float *mean, const float *std,
                                 size_t n_features)
{
    const char *fn = "bp_dataset_standardize";
    if (!ds || !mean || !std)
        return bpi_fail(BP_EINVAL, "%s: %s is NULL", fn, !ds ? "ds" : !mean ? "mean" : "std");
    if (n_features != ds->n_features)
        return bpi_fail(BP_EINVAL, "%s: n_features is %zu, the dataset has %zu", fn, n_features,
                        ds->n_features);
    for (size_t j = 0; j < n_features; j++)
        if (!isfinite(mean[j]) || !isfinite(std[j]) || !(std[j] > 0.0f))
            return bpi_fail(BP_EINVAL, "%s: feature %zu: mean %g, std %g (need finite, std > 0)",
                            fn, j, (double)mean[j], (double)std[j]);
    for (size_t i = 0; i < ds->n; i++)
        for (size_t j = 0; j < n_features; j++)
            ds->X[i * n_features + j] = (ds->X[i * n_features + j] - mean[j]) / std[j];
    return BP_OK;
}
