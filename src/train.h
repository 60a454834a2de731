/* The training loop's pieces shared with the distributed loop (src/mpi.c). */
#ifndef BP_TRAIN_H
#define BP_TRAIN_H

#include "backprop.h"

/* ds->order for (seed, epoch): identity, then a Fisher-Yates shuffle from a
 * generator seeded with both; nothing else decides it. */
void bpi_train_shuffle(bp_dataset *ds, uint64_t seed, uint64_t epoch);
/* Copy rows order[start .. start+B) into the net's staging buffers; the
 * part [lo, hi) of them, for one thread of a region. */
void bpi_train_gather(bp_net *net, const bp_dataset *ds, size_t start, size_t B);
void bpi_train_gather_rows(bp_net *net, const bp_dataset *ds, size_t start, size_t lo,
                           size_t hi);
/* The dataset must fit the net (width, labels or targets) and batch its max_batch. */
bp_status bpi_train_check_data(const bp_net *net, const bp_dataset *ds, size_t batch,
                               const char *fn);

#endif
