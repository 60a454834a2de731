/* bp_dataset_load_csv on arbitrary bytes. The first two bytes choose the
 * options: byte 0 bit 0 header, bit 1 no_labels, bits 2-4 the delimiter
 * (',' ';' tab ' ' '|' and three bad ones), bits 5-6 n_targets (0..3);
 * byte 1 the label column (signed, so -1 is the last). The rest is the
 * file. */
#include <stdlib.h>

#include <backprop.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[256];
    static const char delims[8] = {',', ';', '\t', ' ', '|', '.', '\n', '\0'};
    if (!path[0])
        fuzz_path("data.csv", path, sizeof path);
    if (size < 2)
        return 0;
    bp_csv_options opt;
    bp_csv_options_default(&opt);
    opt.header = data[0] & 1;
    opt.no_labels = (data[0] >> 1) & 1;
    opt.delimiter = delims[(data[0] >> 2) & 7];
    opt.n_targets = (data[0] >> 5) & 3;
    opt.label_column = (long)(int8_t)data[1];
    if (!fuzz_write(path, data + 2, size - 2))
        return 0;
    bp_dataset *ds = NULL;
    if (bp_dataset_load_csv(&ds, path, &opt) == BP_OK) {
        size_t n = bp_dataset_size(ds), f = bp_dataset_n_features(ds);
        const float *X = bp_dataset_features(ds);
        volatile float sink = X[0] + X[n * f - 1];
        (void)sink;
        if (n == 0 || f == 0 || (opt.no_labels && bp_dataset_labels(ds)) ||
            (!opt.no_labels && opt.n_targets && bp_dataset_n_targets(ds) != opt.n_targets))
            abort();
        bp_dataset_destroy(ds);
    } else if (ds != NULL || bp_last_error()[0] == '\0') {
        abort();
    }
    return 0;
}
