/* bp_dataset_load_idx on arbitrary bytes. The first byte chooses:
 *   bit 0: a pair (images and labels; the next two bytes, little endian,
 *          give the length of the images part), else images alone;
 *   bit 1: the harness gzips each part (so the IDX parser behind zlib is
 *          reached with valid gzip), else the bytes are written as they
 *          are (raw IDX, or gzip streams the fuzzer mutates). */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <backprop.h>

#include "fuzz.h"

/* A gzip member of src into a malloc'ed buffer; NULL on failure. */
static unsigned char *gzip(const uint8_t *src, size_t n, size_t *out_n)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, (uLong)n) + 32;
    unsigned char *out = malloc(cap);
    if (out) {
        z.next_in = (Bytef *)(uintptr_t)src;
        z.avail_in = (uInt)n;
        z.next_out = out;
        z.avail_out = (uInt)cap;
        if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
            free(out);
            out = NULL;
        }
        *out_n = cap - z.avail_out;
    }
    deflateEnd(&z);
    return out;
}

static int put(const char *path, const uint8_t *data, size_t n, int compress)
{
    if (!compress)
        return fuzz_write(path, data, n);
    size_t zn = 0;
    unsigned char *z = gzip(data, n, &zn);
    int ok = z && fuzz_write(path, z, zn);
    free(z);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char img[256], lab[256];
    if (!img[0]) {
        fuzz_path("images", img, sizeof img);
        fuzz_path("labels", lab, sizeof lab);
    }
    if (size < 1)
        return 0;
    int pair = data[0] & 1, compress = data[0] & 2;
    data++, size--;
    size_t img_n = size;
    if (pair) {
        if (size < 2)
            return 0;
        img_n = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2, size -= 2;
        if (img_n > size)
            img_n = size;
    }
    if (!put(img, data, img_n, compress) ||
        (pair && !put(lab, data + img_n, size - img_n, compress)))
        return 0;
    bp_dataset *ds = NULL;
    if (bp_dataset_load_idx(&ds, img, pair ? lab : NULL) == BP_OK) {
        size_t n = bp_dataset_size(ds), f = bp_dataset_n_features(ds);
        const float *X = bp_dataset_features(ds);
        /* Touch the first and last value: the sizes must be real. */
        if (n == 0 || f == 0 || !(X[0] >= 0.0f && X[n * f - 1] <= 1.0f))
            abort();
        if (pair && bp_dataset_n_classes(ds) > 256)
            abort();
        bp_dataset_destroy(ds);
    } else if (ds != NULL || bp_last_error()[0] == '\0') {
        abort(); /* a failure leaves the out-pointer alone and says why */
    }
    return 0;
}
