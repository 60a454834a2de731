/* Standardisation statistics: applied to every split, and carried in the
 * model file's metadata so eval and predict transform inputs the same way. */
#ifndef BP_CLI_STATS_H
#define BP_CLI_STATS_H

#include "backprop.h"

#define META_MEAN "standardize.mean"
#define META_STD "standardize.std"

/* Apply (x - mean) / std to each non-NULL dataset. */
bp_status cli_standardize_all(const float *mean, const float *std, size_t n_features,
                              bp_dataset *a, bp_dataset *b, bp_dataset *c);

/* Metadata pairs for the statistics (none when mean is NULL), values
 * malloc'ed: returns the number of pairs written into meta (<= cap). */
size_t cli_stats_meta(const float *mean, const float *std, size_t n, bp_kv *meta, size_t cap);
void cli_stats_meta_free(bp_kv *meta, size_t n_meta);

/* Find the statistics in a model's metadata: 1 with *mean, *std malloc'ed
 * (n floats each), 0 when absent, -1 when present but malformed. */
int cli_stats_from_meta(const bp_kv *meta, size_t n_meta, size_t n, float **mean, float **std);

#endif
