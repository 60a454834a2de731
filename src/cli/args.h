/* The command line: parsed into a plain struct by a pure function (no I/O,
 * no allocation, no exit), so it can be tested and fuzzed on its own. */
#ifndef BP_CLI_ARGS_H
#define BP_CLI_ARGS_H

#include <stddef.h>
#include <stdint.h>

#include "backprop.h"

#define CLI_MAX_LAYERS 64

typedef enum cli_command {
    CLI_NONE = 0, CLI_HELP, CLI_VERSION, CLI_TRAIN, CLI_EVAL, CLI_PREDICT, CLI_INFO, CLI_PLAN, CLI_BENCH
} cli_command;

/* Where the data comes from: a folder of the four IDX files, or CSV files. */
typedef struct cli_data {
    const char *dir;          /* --data (default the Fashion-MNIST package) */
    const char *train_csv;    /* --train-csv */
    const char *test_csv;     /* --test-csv */
    int csv_header;           /* --csv-header */
    long label_column;        /* --label-column (default -1: last) */
    size_t n_targets;         /* --targets K: regression on K float columns */
} cli_data;

typedef struct cli_args {
    cli_command command;
    int help;                 /* --help given to the command */
    cli_data data;
    /* model */
    size_t hidden[CLI_MAX_LAYERS];
    size_t n_hidden;
    bp_activation activation;
    float alpha;              /* leaky ReLU slope */
    bp_init init;
    /* optimizer */
    bp_optim_config optim;
    /* training */
    size_t batch;
    uint64_t epochs;
    int threads;              /* 0: one per core */
    uint64_t seed;
    double val_split;         /* 0: evaluate on the test set each epoch */
    int standardize;
    const char *save;
    const char *resume;
    const char *metrics;
    int mpi_exact;            /* --mpi-exact: fixed-order reduction */
    size_t mpi_shards;        /* --mpi-shards: 0 = the rank count */
    int progress;             /* -1 auto (on a terminal), 0 off, 1 on */
    /* eval / predict */
    const char *model;
    const char *images;       /* predict: IDX images */
    const char *input_csv;    /* predict: CSV rows */
    int no_labels;            /* predict: the CSV has no label column */
    const char *output;       /* predict: CSV output (default stdout) */
    int probabilities;        /* predict: print the head's outputs, not the class */
    /* bench */
    size_t bench_in, bench_out;       /* --in, --out: input width and classes */
    size_t bench_steps, bench_warmup; /* --steps timed, --warmup untimed */
    /* plan */
    size_t plan_in, plan_out;  /* --in, --out: the MLP's input width and classes */
    const char *topology;      /* --topology: an hwloc synthetic string */
    const char *topology_xml;  /* --topology-xml: an hwloc XML file */
} cli_args;

/* Fill *a with the defaults (MLP 784-256-128-100-10 on Fashion-MNIST, ReLU,
 * softmax cross-entropy, Adam lr 1e-3, batch 128, 10 epochs, seed 1). */
void cli_defaults(cli_args *a);

/* Parse argv[1..argc). Returns 0 on success, or -1 with a one-line message
 * in err (usage error: exit code 2). Pointers in *a point into argv. */
int cli_parse(int argc, char **argv, cli_args *a, char *err, size_t err_size);

/* The usage text of a command (CLI_NONE: the overview). */
const char *cli_usage(cli_command command);

#endif
