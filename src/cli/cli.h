/* The backprop tool's commands and what they share. The tool may print;
 * the library never does. */
#ifndef BP_CLI_H
#define BP_CLI_H

#include <stdio.h>

#include "args.h"
#include "backprop.h"

#define EXIT_USAGE 2
#define EXIT_INTERRUPTED 130
#define DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"

/* Print "backprop: WHAT: status: message" to stderr and return 1. */
int cli_fail(const char *what, bp_status status);

/* Load the training set (train) and the test set (test) that the options
 * name; either pointer may be NULL to skip it. n_targets is the MSE width
 * for CSV regression (0 for labels). Prints and returns non-zero on error. */
int cli_load_data(const cli_data *d, size_t n_targets, bp_dataset **train, bp_dataset **test);

int cli_train(const cli_args *a);
int cli_eval(const cli_args *a);
int cli_predict(const cli_args *a);
int cli_info(const cli_args *a);
int cli_bench(const cli_args *a);

/* One core's FP32 FMA peak in GFLOP/s for the ISA bp_ctx_isa() names,
 * measured now (about 0.2 s); 0 where there is no kernel for it. */
double cli_fma_peak(const char *isa);
int cli_plan(const cli_args *a);

/* Seconds on a monotonic clock. */
double cli_now(void);

#endif
