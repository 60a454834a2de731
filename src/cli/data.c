/* Finding and loading the datasets the options name. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_fail(const char *what, bp_status status)
{
    fprintf(stderr, "backprop: %s: %s: %s\n", what, bp_status_str(status), bp_last_error());
    return 1;
}

/* DIR/NAME.gz if it exists, else DIR/NAME (whose absence the reader reports). */
static void idx_path(char *out, size_t size, const char *dir, const char *name)
{
    snprintf(out, size, "%s/%s.gz", dir, name);
    if (access(out, R_OK) != 0)
        snprintf(out, size, "%s/%s", dir, name);
}

static int load_idx(const char *dir, const char *prefix, bp_dataset **ds)
{
    char images[4096], labels[4096], name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    idx_path(images, sizeof images, dir, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    idx_path(labels, sizeof labels, dir, name);
    bp_status s = bp_dataset_load_idx(ds, images, labels);
    if (s != BP_OK) {
        if (s == BP_EIO && !strcmp(dir, DEFAULT_DATA_DIR))
            fprintf(stderr, "backprop: Fashion-MNIST not found: apt-get install "
                            "dataset-fashion-mnist, or give --data DIR\n");
        return cli_fail("loading data", s);
    }
    return 0;
}

static int load_csv(const cli_data *d, const char *path, size_t n_targets, bp_dataset **ds)
{
    bp_csv_options o;
    bp_csv_options_default(&o);
    o.header = d->csv_header;
    o.label_column = d->label_column;
    o.n_targets = n_targets;
    bp_status s = bp_dataset_load_csv(ds, path, &o);
    return s == BP_OK ? 0 : cli_fail("loading data", s);
}

int cli_load_data(const cli_data *d, size_t n_targets, bp_dataset **train, bp_dataset **test)
{
    const char *dir = d->dir ? d->dir : DEFAULT_DATA_DIR;
    int csv = d->train_csv || d->test_csv;
    if (train && (csv ? load_csv(d, d->train_csv, n_targets, train) : load_idx(dir, "train", train)))
        return 1;
    if (test && (csv ? load_csv(d, d->test_csv, n_targets, test) : load_idx(dir, "t10k", test))) {
        if (train)
            bp_dataset_destroy(*train), *train = NULL;
        return 1;
    }
    return 0;
}
