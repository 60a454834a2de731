/* Finding and loading the datasets the options name. */
#include <stdio.h>
#include <string.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The error line, with a message that may come from another thread. */
static int fail_msg(const char *what, bp_status status, const char *msg)
{
    fprintf(stderr, "backprop: %s: %s: %s\n", what, bp_status_str(status), msg);
    return 1;
}

int cli_fail(const char *what, bp_status status)
{
    return fail_msg(what, status, bp_last_error());
}

/* DIR/NAME.gz if it exists, else DIR/NAME (whose absence the reader reports). */
static void idx_path(char *out, size_t size, const char *dir, const char *name)
{
    snprintf(out, size, "%s/%s.gz", dir, name);
    if (access(out, R_OK) != 0)
        snprintf(out, size, "%s/%s", dir, name);
}

/* One IDX pair, DIR/PREFIX-{images-idx3,labels-idx1}-ubyte[.gz]; on failure
 * the status and the library's message (per thread) are kept in the job. */
typedef struct idx_job {
    const char *dir, *prefix;
    bp_dataset **ds;
    bp_status status;
    char msg[1024];
} idx_job;

static int idx_job_run(void *arg)
{
    idx_job *j = arg;
    char images[4096], labels[4096], name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", j->prefix);
    idx_path(images, sizeof images, j->dir, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", j->prefix);
    idx_path(labels, sizeof labels, j->dir, name);
    j->status = bp_dataset_load_idx(j->ds, images, labels);
    if (j->status != BP_OK)
        snprintf(j->msg, sizeof j->msg, "%s", bp_last_error());
    return 0;
}

static int idx_job_report(const idx_job *j)
{
    if (j->status == BP_OK)
        return 0;
    if (j->status == BP_EIO && !strcmp(j->dir, DEFAULT_DATA_DIR))
        fprintf(stderr, "backprop: Fashion-MNIST not found: apt-get install "
                        "dataset-fashion-mnist, or give --data DIR\n");
    return fail_msg("loading data", j->status, j->msg);
}

/* The training and test sets side by side, the test set on a thread of
 * its own: each load is one thread's decompression and conversion
 * (Fashion-MNIST: 0.10-0.15 s and 0.03-0.05 s on the development VMs),
 * so the smaller one hides behind the larger. Sequential when no thread
 * can be started. The training set's error is reported first. */
static int load_idx_pair(const char *dir, bp_dataset **train, bp_dataset **test)
{
    idx_job tr = {dir, "train", train, BP_OK, ""}, te = {dir, "t10k", test, BP_OK, ""};
    thrd_t th;
    int threaded = thrd_create(&th, idx_job_run, &te) == thrd_success;
    idx_job_run(&tr);
    if (threaded)
        thrd_join(th, NULL);
    else
        idx_job_run(&te);
    if (idx_job_report(&tr) || idx_job_report(&te)) {
        if (tr.status == BP_OK)
            bp_dataset_destroy(*train), *train = NULL;
        if (te.status == BP_OK)
            bp_dataset_destroy(*test), *test = NULL;
        return 1;
    }
    return 0;
}

static int load_idx(const char *dir, const char *prefix, bp_dataset **ds)
{
    idx_job j = {dir, prefix, ds, BP_OK, ""};
    idx_job_run(&j);
    return idx_job_report(&j);
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
    if (train && test && !csv)
        return load_idx_pair(dir, train, test);
    if (train && (csv ? load_csv(d, d->train_csv, n_targets, train) : load_idx(dir, "train", train)))
        return 1;
    if (test && (csv ? load_csv(d, d->test_csv, n_targets, test) : load_idx(dir, "t10k", test))) {
        if (train)
            bp_dataset_destroy(*train), *train = NULL;
        return 1;
    }
    return 0;
}
