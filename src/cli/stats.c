#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

bp_status cli_standardize_all(const float *mean, const float *std, size_t n_features,
                              bp_dataset *a, bp_dataset *b, bp_dataset *c)
{
    bp_dataset *all[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (all[i]) {
            bp_status s = bp_dataset_standardize(all[i], mean, std, n_features);
            if (s != BP_OK)
                return s;
        }
    return BP_OK;
}

/* n floats as comma-separated hexadecimal floats: exact in both directions. */
static char *encode(const float *x, size_t n)
{
    size_t cap = n * 20 + 1, len = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, i ? ",%a" : "%a", (double)x[i]);
    return s;
}

static int decode(const char *s, size_t n, float *x)
{
    for (size_t i = 0; i < n; i++) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || !isfinite(v) || *end != (i + 1 < n ? ',' : '\0'))
            return 0;
        x[i] = (float)v;
        s = end + (i + 1 < n);
    }
    return 1;
}

size_t cli_stats_meta(const float *mean, const float *std, size_t n, bp_kv *meta, size_t cap)
{
    if (!mean || cap < 2)
        return 0;
    char *m = encode(mean, n), *d = encode(std, n);
    if (!m || !d) {
        free(m), free(d);
        return 0;
    }
    meta[0] = (bp_kv){META_MEAN, m};
    meta[1] = (bp_kv){META_STD, d};
    return 2;
}

void cli_stats_meta_free(bp_kv *meta, size_t n_meta)
{
    for (size_t i = 0; i < n_meta; i++)
        free((char *)meta[i].value);
}

static const char *find(const bp_kv *meta, size_t n_meta, const char *key)
{
    for (size_t i = 0; i < n_meta; i++)
        if (!strcmp(meta[i].key, key))
            return meta[i].value;
    return NULL;
}

int cli_stats_from_meta(const bp_kv *meta, size_t n_meta, size_t n, float **mean, float **std)
{
    const char *m = find(meta, n_meta, META_MEAN), *d = find(meta, n_meta, META_STD);
    if (!m && !d)
        return 0;
    *mean = malloc(n * sizeof **mean);
    *std = malloc(n * sizeof **std);
    if (m && d && *mean && *std && decode(m, n, *mean) && decode(d, n, *std))
        return 1;
    free(*mean), free(*std);
    *mean = *std = NULL;
    return -1;
}
