/* The IDX reader's two ways through a gzip file (src/idx.c): inflated
 * whole by libdeflate when the file is a plausible single gzip member whose
 * trailer agrees with the IDX header, else streamed through zlib. Both must
 * give the same dataset; the counter bpi_idx_fast_loads (internal) shows
 * which way a file went. Fixtures are written with zlib (gzopen), and a
 * second member or a changed trailer is made by hand. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "backprop.h"
#include "bp_config.h"
#include "dataset.h"
#include "testutil.h"
#include "tu_suite.h"

static char dir[] = "/tmp/bp_idx_paths_XXXXXX";

static const char *at(const char *name)
{
    static char path[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/%s", dir, name);
    return path[k];
}

static void setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    strcpy(dir, "/tmp/bp_idx_paths_XXXXXX");
}

/* An IDX image file of n images of rows x cols random bytes (the seed
 * picks them), which deflate barely shrinks. */
static unsigned char *idx_images(size_t n, size_t rows, size_t cols, uint64_t seed, size_t *bytes)
{
    tu_rng rng;
    tu_seed(&rng, seed);
    size_t data = n * rows * cols;
    unsigned char *b = malloc(16 + data);
    ck_assert_ptr_nonnull(b);
    const size_t dims[3] = {n, rows, cols};
    b[0] = b[1] = 0, b[2] = 0x08, b[3] = 3;
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 4; i++)
            b[4 + 4 * d + i] = (unsigned char)(dims[d] >> (24 - 8 * i));
    for (size_t k = 0; k < data; k++)
        b[16 + k] = (unsigned char)(tu_next(&rng) >> 56);
    *bytes = 16 + data;
    return b;
}

static unsigned char *idx_labels(size_t n, size_t *bytes)
{
    unsigned char *b = malloc(8 + n);
    ck_assert_ptr_nonnull(b);
    b[0] = b[1] = 0, b[2] = 0x08, b[3] = 1;
    for (int i = 0; i < 4; i++)
        b[4 + i] = (unsigned char)(n >> (24 - 8 * i));
    for (size_t k = 0; k < n; k++)
        b[8 + k] = (unsigned char)(k % 10);
    *bytes = 8 + n;
    return b;
}

static void write_plain(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* One gzip member per piece: bytes [cut[i], cut[i + 1]) of b. */
static void write_gz_members(const char *path, const unsigned char *b, const size_t *cut,
                             int pieces)
{
    for (int i = 0; i < pieces; i++) {
        gzFile g = gzopen(path, i == 0 ? "wb" : "ab");
        ck_assert_ptr_nonnull(g);
        unsigned len = (unsigned)(cut[i + 1] - cut[i]);
        ck_assert_int_eq(gzwrite(g, b + cut[i], len), (int)len);
        ck_assert_int_eq(gzclose(g), Z_OK);
    }
}

static void write_gz(const char *path, const unsigned char *b, size_t n)
{
    const size_t cut[2] = {0, n};
    write_gz_members(path, b, cut, 1);
}

/* A copy of the file at `from`, written to `to`, with the lowest bit of
 * its byte `back` bytes before the end flipped (a gzip trailer: 8 for the
 * CRC, 4 for the length). */
static void write_flipped(const char *from, const char *to, size_t back)
{
    size_t n = 0;
    unsigned char *b = tu_read_file(from, &n);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_ge(n, back);
    b[n - back] ^= 0x01;
    write_plain(to, b, n);
    free(b);
}

/* Loads images (and labels) and checks the dataset against the bytes;
 * returns how many files took the libdeflate path. */
static unsigned long load_same(const char *images, const char *labels,
                               const unsigned char *img, size_t n, size_t features)
{
    unsigned long before = bpi_idx_fast_loads();
    bp_dataset *ds = NULL;
    ck_assert_msg(bp_dataset_load_idx(&ds, images, labels) == BP_OK, "%s", bp_last_error());
    ck_assert_uint_eq(bp_dataset_size(ds), n);
    ck_assert_uint_eq(bp_dataset_n_features(ds), features);
    const float *X = bp_dataset_features(ds);
    for (size_t k = 0; k < n * features; k++)
        ck_assert_msg(X[k] == (float)img[16 + k] / 255.0f, "feature %zu", k);
    const int32_t *y = bp_dataset_labels(ds);
    for (size_t k = 0; k < n; k++)
        ck_assert_int_eq(y[k], (int32_t)(k % 10));
    bp_dataset_destroy(ds);
    return bpi_idx_fast_loads() - before;
}

/* A single-member gzip pair: libdeflate's path for both files when it is
 * built in, zlib's otherwise; the same features either way. */
START_TEST(single_member_takes_the_fast_path)
{
    size_t ib, lb;
    unsigned char *img = idx_images(300, 28, 28, 37, &ib), *lab = idx_labels(300, &lb);
    write_gz(at("img.gz"), img, ib);
    write_gz(at("lab.gz"), lab, lb);
    write_plain(at("lab"), lab, lb);
    ck_assert_uint_eq(load_same(at("img.gz"), at("lab.gz"), img, 300, 784),
                      BP_HAVE_LIBDEFLATE ? 2u : 0u);
    unsigned long inplace = bpi_idx_inplace_loads();
    ck_assert_uint_eq(load_same(at("img.gz"), at("lab"), img, 300, 784),
                      BP_HAVE_LIBDEFLATE ? 1u : 0u);
    /* The images were decompressed inside the dataset's features and
     * widened in place (load_same checked every value). */
    ck_assert_uint_eq(bpi_idx_inplace_loads() - inplace, BP_HAVE_LIBDEFLATE ? 1u : 0u);
    free(img), free(lab);
}
END_TEST

/* Images decompressed inside the new dataset, then a labels file whose
 * gzip CRC is wrong, which only shows after its data: the load fails, and
 * the dataset holding the images' bytes is freed (ASan and valgrind runs
 * see any leak) without touching the caller's pointer. Then the same
 * images load with good labels. */
START_TEST(inplace_images_then_bad_labels)
{
    size_t ib, lb;
    unsigned char *img = idx_images(120, 28, 28, 5, &ib), *lab = idx_labels(120, &lb);
    write_gz(at("img.gz"), img, ib);
    write_gz(at("lab.gz"), lab, lb);
    write_plain(at("lab"), lab, lb);
    write_flipped(at("lab.gz"), at("badcrc.gz"), 8);
    unsigned long inplace = bpi_idx_inplace_loads();
    bp_dataset *ds = (bp_dataset *)(uintptr_t)1; /* must stay as it is */
    ck_assert_int_eq(bp_dataset_load_idx(&ds, at("img.gz"), at("badcrc.gz")), BP_EFORMAT);
    ck_assert_ptr_eq(ds, (bp_dataset *)(uintptr_t)1);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "badcrc.gz"));
    ck_assert_uint_eq(bpi_idx_inplace_loads() - inplace, BP_HAVE_LIBDEFLATE ? 1u : 0u);
    ck_assert_uint_eq(load_same(at("img.gz"), at("lab"), img, 120, 784),
                      BP_HAVE_LIBDEFLATE ? 1u : 0u);
    free(img), free(lab);
}
END_TEST

/* Two members (as `cat a.gz b.gz` makes): libdeflate stops after the first,
 * so the file goes through zlib, which reads both. The cut falls inside
 * the header, inside the data, and right after the header. */
START_TEST(multi_member_streams)
{
    size_t ib, lb;
    unsigned char *img = idx_images(50, 10, 10, 37, &ib), *lab = idx_labels(50, &lb);
    write_plain(at("lab"), lab, lb);
    const size_t cuts[] = {7, 16, 2000};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        const size_t cut[3] = {0, cuts[c], ib};
        write_gz_members(at("multi.gz"), img, cut, 2);
        ck_assert_uint_eq(load_same(at("multi.gz"), at("lab"), img, 50, 100), 0u);
    }
    free(img), free(lab);
}
END_TEST

/* Deflate shrinks a constant image file about 1000-fold: past the fast
 * path's plausibility bound, so it streams (and still loads). */
START_TEST(implausible_ratio_streams)
{
    size_t ib, lb;
    unsigned char *img = idx_images(200, 64, 64, 1, &ib), *lab = idx_labels(200, &lb);
    memset(img + 16, 9, ib - 16);
    write_gz(at("flat.gz"), img, ib);
    write_plain(at("lab"), lab, lb);
    size_t gz_bytes = 0;
    unsigned char *gz = tu_read_file(at("flat.gz"), &gz_bytes);
    ck_assert_ptr_nonnull(gz);
    ck_assert_msg(ib / gz_bytes > 64, "fixture compresses only %zu:1", ib / gz_bytes);
    ck_assert_uint_eq(load_same(at("flat.gz"), at("lab"), img, 200, 4096), 0u);
    free(gz), free(img), free(lab);
}
END_TEST

/* A trailer whose length field disagrees with the header: the fast path
 * refuses it, and zlib's check of the same field names the fault. The CRC
 * is left intact, so only the length is wrong. */
START_TEST(wrong_trailer_length_is_refused)
{
    size_t ib, lb;
    unsigned char *img = idx_images(40, 8, 8, 37, &ib), *lab = idx_labels(40, &lb);
    write_gz(at("img.gz"), img, ib);
    write_plain(at("lab"), lab, lb);
    write_flipped(at("img.gz"), at("isize.gz"), 4);
    unsigned long before = bpi_idx_fast_loads();
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_load_idx(&ds, at("isize.gz"), at("lab")), BP_EFORMAT);
    ck_assert_ptr_null(ds);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "isize.gz"));
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "corrupt gzip stream"));
    ck_assert_uint_eq(bpi_idx_fast_loads(), before);
    free(img), free(lab);
}
END_TEST

/* A header declaring more data than the member holds, with the trailer
 * agreeing with the header (the file lies consistently): libdeflate finds
 * the stream short, and zlib, checking the trailer against what it
 * inflated, names the length check. */
START_TEST(consistent_lie_streams_and_fails)
{
    size_t ib, lb;
    unsigned char *img = idx_images(40, 8, 8, 37, &ib), *lab = idx_labels(40, &lb);
    img[7] = 41; /* 41 images declared, 40 present */
    write_gz(at("short.gz"), img, ib);
    write_plain(at("lab"), lab, lb);
    size_t n = 0;
    unsigned char *gz = tu_read_file(at("short.gz"), &n);
    ck_assert_ptr_nonnull(gz);
    uint32_t want = (uint32_t)(ib + 64);
    for (int i = 0; i < 4; i++)
        gz[n - 4 + i] = (unsigned char)(want >> (8 * i));
    write_plain(at("short.gz"), gz, n);
    unsigned long before = bpi_idx_fast_loads();
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_load_idx(&ds, at("short.gz"), NULL), BP_EFORMAT);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "incorrect length check"));
    ck_assert_uint_eq(bpi_idx_fast_loads(), before);
    free(gz), free(img), free(lab);
}
END_TEST

/* Bytes after a complete member that end like its trailer (a copy of the
 * length field): the length agrees, but libdeflate leaves them unread, so
 * the file streams and zlib reports them as trailing bytes. */
START_TEST(trailing_bytes_after_the_member_are_refused)
{
    size_t ib;
    unsigned char *img = idx_images(40, 8, 8, 3, &ib);
    write_gz(at("img.gz"), img, ib);
    size_t n = 0;
    unsigned char *gz = tu_read_file(at("img.gz"), &n);
    ck_assert_ptr_nonnull(gz);
    unsigned char *more = malloc(n + 4);
    ck_assert_ptr_nonnull(more);
    memcpy(more, gz, n);
    memcpy(more + n, gz + n - 4, 4);
    write_plain(at("tail.gz"), more, n + 4);
    unsigned long before = bpi_idx_fast_loads();
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_load_idx(&ds, at("tail.gz"), NULL), BP_EFORMAT);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "trailing bytes after the gzip stream"));
    ck_assert_uint_eq(bpi_idx_fast_loads(), before);
    free(more), free(gz), free(img);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("idx_paths");
    TCase *tc = tcase_create("paths");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, single_member_takes_the_fast_path);
    tcase_add_test(tc, inplace_images_then_bad_labels);
    tcase_add_test(tc, multi_member_streams);
    tcase_add_test(tc, implausible_ratio_streams);
    tcase_add_test(tc, wrong_trailer_length_is_refused);
    tcase_add_test(tc, consistent_lie_streams_and_fails);
    tcase_add_test(tc, trailing_bytes_after_the_member_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
