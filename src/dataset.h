#ifndef BP_DATASET_H
#define BP_DATASET_H

#include "backprop.h"

struct bp_dataset {
    size_t n, n_features, n_targets; /* n_targets 0: int labels */
    float *X;          /* (n, n_features) */
    int32_t *labels;   /* (n) or NULL */
    float *targets;    /* (n, n_targets) or NULL; both NULL: unlabelled */
    size_t *order;     /* (n) the current epoch's permutation */
};

/* A dataset with uninitialised (zeroed) storage for the readers to fill:
 * labels when n_targets is 0, else n_targets floats per row. Sizes are
 * checked for overflow; fn names the caller in messages. */
bp_status bpi_dataset_alloc(bp_dataset **ds, size_t n, size_t n_features, size_t n_targets,
                            const char *fn);

/* Same, with no labels nor targets (features only, for prediction). */
bp_status bpi_dataset_alloc_unlabelled(bp_dataset **ds, size_t n, size_t n_features,
                                       const char *fn);

/* IDX files the reader inflated whole with libdeflate (src/idx.c), for the
 * tests that check which path a file took; never moves without libdeflate. */
unsigned long bpi_idx_fast_loads(void);
/* Of those, the image files decompressed inside the dataset's own feature
 * memory (no buffers of their own). */
unsigned long bpi_idx_inplace_loads(void);

#endif
